/** `fledge download` against the mock hub: cold download, patterns, revision, --verify, errors. */
import { join } from "node:path";
import { downloadCli } from "../../cli/download.ts";
import { HubError } from "../../models/hub/hub.ts";
import { assert, SHARED } from "../_assert.ts";
import { type MockFiles, startHubServer } from "../_hub_server.ts";

const ID = "fledge-test/tiny-llama";
const LLAMA = `${SHARED}/fixtures/hf-reference/llama`;

async function repoFiles(): Promise<MockFiles> {
  const files: MockFiles = {};
  for (const f of ["config.json", "generation_config.json", "model.safetensors"]) {
    files[f] = await Deno.readFile(join(LLAMA, f));
  }
  files["tokenizer.json"] = new TextEncoder().encode('{"version":"1.0"}\n');
  files["README.md"] = new TextEncoder().encode("# not a model file\n");
  return files;
}

async function withHub(
  hubOpts: Parameters<typeof startHubServer>[0],
  fn: (
    run: (args: string[]) => Promise<{ out: string; err: string }>,
    cache: string,
    hub: ReturnType<typeof startHubServer>,
  ) => Promise<void>,
): Promise<void> {
  const hub = startHubServer(hubOpts);
  const cache = await Deno.makeTempDir({ prefix: "fledge-dl-cache-" });
  const run = async (args: string[]) => {
    let out = "", err = "";
    await downloadCli([...args, "--cache-dir", cache], {
      stdout: (s) => out += s,
      stderr: (s) => err += s,
      hub: { endpoint: hub.url, token: false, offline: false, progress: false },
    });
    return { out, err };
  };
  try {
    await fn(run, cache, hub);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

async function rejects(p: Promise<unknown>, check: (e: Error) => boolean): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error && check(e), `unexpected error: ${e instanceof Error ? e.stack : e}`);
    return e as Error;
  }
  throw new assert.AssertionError({ message: "expected a rejection" });
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("downloadCli() downloads cold into --output: the model files only, byte for byte", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run) => {
    const output = await Deno.makeTempDir({ prefix: "fledge-dl-out-" });
    try {
      const { out, err } = await run(["--model", ID, "--output", output]);
      assert.equal(out, output + "\n");
      assert.match(err, /^download: 4 files \(0\.\d MB\) of fledge-test\/tiny-llama in [\d.]+ s\n$/);
      assert.deepEqual(names(output), [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
      ]);
      for (const f of names(output)) {
        assert.deepEqual(await Deno.readFile(join(output, f)), files[f], f);
        assert.ok(!(await Deno.lstat(join(output, f))).isSymlink, `${f} is a copy`);
      }
    } finally {
      await Deno.remove(output, { recursive: true });
    }
  });
});

Deno.test("downloadCli() honours --allow-patterns (repeated and comma-separated), --revision and underscores", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run, cache, hub) => {
    const { out } = await run(["--model", ID, "--allow_patterns", "config.json,README.md", "--quiet"]);
    const snapshot = out.trim();
    assert.ok(snapshot.startsWith(join(cache, "models--fledge-test--tiny-llama", "snapshots")), snapshot);
    assert.deepEqual(names(snapshot), ["README.md", "config.json"]);
    const output = await Deno.makeTempDir({ prefix: "fledge-dl-out-" });
    try {
      const commit = hub.commitOf(ID);
      const r = await run([
        "--model",
        ID,
        "--revision",
        commit,
        "--allow-patterns",
        "*.json",
        "--allow-patterns=tokenizer.*",
        "--output",
        output,
      ]);
      assert.match(r.err, new RegExp(`^download: 3 files .* of ${ID}@${commit} in`));
      assert.deepEqual(names(output), ["config.json", "generation_config.json", "tokenizer.json"]);
    } finally {
      await Deno.remove(output, { recursive: true });
    }
  });
});

Deno.test("downloadCli() --verify catches a file tampered with in the cache", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run) => {
    const snapshot = (await run(["--model", ID, "--quiet"])).out.trim();
    const blob = await Deno.realPath(join(snapshot, "model.safetensors"));
    const bytes = await Deno.readFile(blob);
    bytes[bytes.length - 1] ^= 0x55;
    await Deno.writeFile(blob, bytes);
    // Without --verify the cached (tampered) copy is served as is...
    const output = await Deno.makeTempDir({ prefix: "fledge-dl-out-" });
    try {
      await run(["--model", ID, "--output", output, "--quiet"]);
      assert.notDeepEqual(await Deno.readFile(join(output, "model.safetensors")), files["model.safetensors"]);
      // ...with --verify it is caught, named, and deleted so the next run fetches it again.
      const e = await rejects(
        run(["--model", ID, "--output", output, "--verify"]),
        (e) => e instanceof HubError && e.kind === "checksum",
      );
      assert.ok(!e.message.includes("\n"), e.message);
      assert.match(e.message, /model\.safetensors: its sha256 is [0-9a-f]{64} but the hub announced/);
      const again = await run(["--model", ID, "--output", output, "--verify"]);
      assert.match(again.err, /, verified\n$/);
      assert.deepEqual(await Deno.readFile(join(output, "model.safetensors")), files["model.safetensors"]);
    } finally {
      await Deno.remove(output, { recursive: true });
    }
  });
});

Deno.test("downloadCli() turns a 404 into a one-line RangeError naming the repo", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run) => {
    const e = await rejects(run(["--model", "fledge-test/no-such-model"]), (e) => e instanceof RangeError);
    assert.ok(!e.message.includes("\n"), e.message);
    assert.ok(e.message.startsWith("download: "), e.message);
    assert.match(e.message, /fledge-test\/no-such-model/);
    assert.ok(e.cause instanceof HubError && e.cause.kind === "not_found");
    const r = await rejects(run(["--model", ID, "--revision", "v9"]), (e) => e instanceof RangeError);
    assert.ok(!r.message.includes("\n") && /v9/.test(r.message), r.message);
  });
});

Deno.test("downloadCli() rejects bad flags in one line and prints usage with --help", async () => {
  let out = "";
  await downloadCli(["--help"], { stdout: (s) => out += s });
  for (const f of ["--model", "--output", "--revision", "--verify", "--allow-patterns"]) {
    assert.ok(out.includes(f), f);
  }
  for (
    const [args, cls, re] of [
      [["--model"], RangeError, /download: .*--model/],
      [["--model", "a/b", "--bogus"], RangeError, /bogus/],
      [["--output", "x"], TypeError, /--model is required/],
      [["--model", "a/b", "--allow-patterns", "x,,y"], RangeError, /empty pattern/],
      [["--model", "not a valid id"], TypeError, /neither an existing local folder nor a hub id/],
    ] as const
  ) {
    const e = await rejects(downloadCli([...args]), (e) => e instanceof cls);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), e.message);
  }
});
