/**
 * Import by URL: the working tree served over HTTP on 127.0.0.1, and a script in an empty folder
 * (no deno.json, no lockfile) that imports `http://127.0.0.1:PORT/mod.ts` and trains the tiny preset
 * for a few steps. This is how a user without a checkout runs fledge, so any module that reads a
 * file beside itself from disk, or names a bare specifier, fails here.
 * @module
 */
import { extname, join, normalize } from "node:path";
import { assert, ROOT } from "./_assert.ts";

const CONTENT_TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".yaml": "text/yaml; charset=utf-8",
  ".yml": "text/yaml; charset=utf-8",
  ".wgsl": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
};

/** Serve `ROOT` read-only on 127.0.0.1 (port 0); every request path and status is logged. */
function serveRepo(log: { path: string; status: number }[]): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    const rel = normalize(path).replace(/^\/+/, "");
    let status = 200;
    try {
      if (rel.startsWith("..") || rel.split("/").some((p) => p.startsWith("."))) status = 403;
      else {
        const body = await Deno.readFile(join(ROOT, rel));
        const type = CONTENT_TYPES[extname(rel)] ?? "application/octet-stream";
        log.push({ path, status });
        return new Response(body, { headers: { "content-type": type } });
      }
    } catch {
      status = 404;
    }
    log.push({ path, status });
    return new Response(`${status} ${path}\n`, { status });
  });
}

/** Remove what the subprocess cached for `origin` (host_PORTn folders) under DENO_DIR, leaving the rest. */
async function forgetRemoteCache(port: number): Promise<void> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  })
    .output();
  if (!r.success) return;
  const info = JSON.parse(new TextDecoder().decode(r.stdout)) as Record<string, string>;
  for (const dir of [info.modulesCache, info.typescriptCache]) {
    if (!dir) continue;
    await Deno.remove(join(dir, "http", `127.0.0.1_PORT${port}`), { recursive: true }).catch(() => {});
  }
}

Deno.test("mod.ts imported by URL from an empty folder trains the tiny preset", async () => {
  const log: { path: string; status: number }[] = [];
  const server = serveRepo(log);
  const port = server.addr.port;
  const dir = await Deno.makeTempDir({ prefix: "fledge-url-" });
  try {
    const docs = Array.from(
      { length: 24 },
      (_, i) => JSON.stringify({ text: `package ${i} provides a small tool for task number ${i % 5}` }),
    );
    await Deno.writeTextFile(join(dir, "train.jsonl"), docs.join("\n") + "\n");
    // Every public entry (deno.json "exports") must load by URL, not only the root.
    const entries = Object.values(
      JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).exports as Record<string, string>,
    ).map((p) => `http://127.0.0.1:${port}/${p.replace(/^\.\//, "")}`);
    await Deno.writeTextFile(
      join(dir, "train.ts"),
      `import { getTrainingArgs, runTraining } from "http://127.0.0.1:${port}/mod.ts";
for (const entry of ${JSON.stringify(entries)}) await import(entry);
const config = getTrainingArgs({
  model: "tiny",
  dataset: "train.jsonl",
  output_dir: "run",
  backend: "auto",
  learning_rate: 1e-3,
  max_steps: 3,
  logging_steps: 1,
  max_seq_length: 16,
  per_device_train_batch_size: 2,
  save_strategy: "no",
});
const r = await runTraining(config, { progress: false });
console.log(JSON.stringify({ steps: r.metrics_summary.global_step, loss_history: r.loss_history }));
`,
    );
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        // -A would also allow every import host; name the one this test serves instead.
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-sys",
        `--allow-net=127.0.0.1:${port}`,
        `--allow-import=127.0.0.1:${port}`,
        "--no-lock",
        "--no-config",
        "train.ts",
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout), err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, `exit ${r.code}\n${err}`);
    const result = JSON.parse(out.trim().split("\n").at(-1)!);
    assert.equal(result.steps, 3, out);
    assert.equal(result.loss_history.length, 3, out);
    assert.ok(result.loss_history.every((l: number) => Number.isFinite(l) && l > 0), out);
    const missing = log.filter((l) => l.status !== 200);
    assert.deepEqual(missing, [], "every module the import graph named was served");
    assert.ok(log.some((l) => l.path === "/mod.ts"), "mod.ts came over HTTP");
    await Deno.stat(join(dir, "run", "model", "model.safetensors"));
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
    await forgetRemoteCache(port);
  }
});
