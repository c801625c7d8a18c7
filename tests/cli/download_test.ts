/**
 * `deno task cli download` through `main()` against the mock hub (named by HF_ENDPOINT, set for
 * the duration of each test): cold download, patterns, revision, --verify, errors.
 */
import { join } from "node:path";
import { assert, SHARED } from "../_assert.ts";
import { type MockFiles, startHubServer } from "../_hub_server.ts";
import { assertFails, cli, type CliRun } from "./_cli.ts";

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

/** Set environment variables for the duration of `fn` (undefined: unset), then restore them. */
async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void>): Promise<void> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const set = (k: string, v: string | undefined) => v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  for (const [k, v] of Object.entries(vars)) set(k, v);
  try {
    await fn();
  } finally {
    for (const [k, v] of Object.entries(before)) set(k, v);
  }
}

async function withHub(
  hubOpts: Parameters<typeof startHubServer>[0],
  fn: (
    run: (args: string[]) => Promise<CliRun>,
    cache: string,
    hub: ReturnType<typeof startHubServer>,
  ) => Promise<void>,
): Promise<void> {
  const hub = startHubServer(hubOpts);
  const cache = await Deno.makeTempDir({ prefix: "fledge-dl-cache-" });
  const run = (args: string[]) => cli(["download", ...args, "--cache_dir", cache]);
  try {
    await withEnv(
      {
        HF_ENDPOINT: hub.url,
        HF_TOKEN: undefined,
        HF_HUB_OFFLINE: undefined,
        HF_HUB_DISABLE_PROGRESS_BARS: "1",
      },
      () => fn(run, cache, hub),
    );
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

/** Run and assert exit code 0. */
async function ok(run: (args: string[]) => Promise<CliRun>, args: string[]): Promise<CliRun> {
  const r = await run(args);
  assert.equal(r.code, 0, r.err);
  return r;
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("download downloads cold into --output: the model files only, byte for byte", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run) => {
    const output = await Deno.makeTempDir({ prefix: "fledge-dl-out-" });
    try {
      const { out, err } = await ok(run, ["--model", ID, "--output", output]);
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

Deno.test("download honours --allow-patterns (repeated and comma-separated), --revision and underscores", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run, cache, hub) => {
    const { out, err } = await ok(run, [
      "--model",
      ID,
      "--allow_patterns",
      "config.json,README.md",
      "--quiet",
    ]);
    assert.equal(err, "");
    const snapshot = out.trim();
    assert.ok(snapshot.startsWith(join(cache, "models--fledge-test--tiny-llama", "snapshots")), snapshot);
    assert.deepEqual(names(snapshot), ["README.md", "config.json"]);
    const output = await Deno.makeTempDir({ prefix: "fledge-dl-out-" });
    try {
      const commit = hub.commitOf(ID);
      const r = await ok(run, [
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
      // patterns that pick nothing are refused, nothing made (it had said "0 files" and exited 0)
      const none = await run(["--model", ID, "--allow_patterns", "config.jsn", "--output", `${output}-none`]);
      assert.equal(none.code, 2, none.err);
      assert.match(none.err, /no file matches allow_patterns config\.jsn; fix the patterns/);
      assert.equal(await Deno.stat(`${output}-none`).catch(() => null), null);
    } finally {
      await Deno.remove(output, { recursive: true });
    }
  });
});

Deno.test("download --verify catches a file tampered with in the cache", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run) => {
    const snapshot = (await ok(run, ["--model", ID, "--quiet"])).out.trim();
    const blob = await Deno.realPath(join(snapshot, "model.safetensors"));
    const bytes = await Deno.readFile(blob);
    bytes[bytes.length - 1] ^= 0x55;
    await Deno.writeFile(blob, bytes);
    // Without --verify the cached (tampered) copy is served as is...
    const output = await Deno.makeTempDir({ prefix: "fledge-dl-out-" });
    try {
      await ok(run, ["--model", ID, "--output", output, "--quiet"]);
      assert.notDeepEqual(await Deno.readFile(join(output, "model.safetensors")), files["model.safetensors"]);
      // An existing --output is never overwritten unasked.
      assertFails(
        await run(["--model", ID, "--output", output, "--verify"]),
        2,
        /already holds config\.json, .*model\.safetensors.*--overwrite_output_dir/,
      );
      // ...with --verify it is caught, named, and deleted so the next run fetches it again.
      assertFails(
        await run(["--model", ID, "--output", output, "--verify", "--overwrite_output_dir"]),
        1,
        /model\.safetensors: its sha256 is [0-9a-f]{64} but the hub announced/,
      );
      const again = await ok(run, ["--model", ID, "--output", output, "--verify", "--overwrite_output_dir"]);
      assert.match(again.err, /, verified\n$/);
      assert.deepEqual(await Deno.readFile(join(output, "model.safetensors")), files["model.safetensors"]);
    } finally {
      await Deno.remove(output, { recursive: true });
    }
  });
});

Deno.test("download --force_download fetches a cached file again (the index error's advice had named no flag)", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run, _cache, hub) => {
    const snapshot = (await ok(run, ["--model", ID, "--quiet"])).out.trim();
    const blob = await Deno.realPath(join(snapshot, "model.safetensors"));
    const bytes = await Deno.readFile(blob);
    bytes[bytes.length - 1] ^= 0x55;
    await Deno.writeFile(blob, bytes);
    // the weights are an LFS file: their bytes come from the CDN
    const gets = () => hub.requests.filter((r) => r.method === "GET" && r.server === "cdn").length;
    const before = gets();
    await ok(run, ["--model", ID, "--quiet"]); // cached: not fetched
    assert.equal(gets(), before);
    await ok(run, ["--model", ID, "--quiet", "--force-download"]);
    assert.ok(gets() > before);
    assert.deepEqual(await Deno.readFile(join(snapshot, "model.safetensors")), files["model.safetensors"]);
  });
});

Deno.test("download --cache_dir naming a file is one line (it had been a raw 'Not a directory (os error 20)')", async () => {
  const file = await Deno.makeTempFile();
  try {
    for (const dir of [file, join(file, "hub")]) {
      assertFails(
        await cli(["download", "--model", ID, "--cache_dir", dir]),
        2,
        /^fledge: .*Cannot use the hub cache .*(it is a file, not a folder|a folder above it is a file); give a folder/,
      );
    }
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("download turns a 404 into one line naming the repo, exit code 2", async () => {
  const files = await repoFiles();
  await withHub({ models: { [ID]: files } }, async (run) => {
    assertFails(
      await run(["--model", "fledge-test/no-such-model"]),
      2,
      /^fledge: download: .*fledge-test\/no-such-model/,
    );
    assertFails(await run(["--model", ID, "--revision", "v9"]), 2, /v9/);
  });
});

Deno.test("download rejects bad flags in one line and prints usage with --help", async () => {
  const { out } = await cli(["download", "--help"]);
  assert.match(out, /^usage: deno task cli download --model ID/);
  for (
    const f of ["--model", "--output", "--revision", "--verify", "--allow_patterns", "--cache_dir", "--quiet"]
  ) {
    assert.ok(out.includes(f), f);
  }
  for (
    const [args, re] of [
      [["--model"], /download: --model needs a value/],
      [["--model", "a/b", "--bogus"], /unknown flag --bogus/],
      [["--model", "a/b", "--verify=yes"], /--verify takes no value/],
      [["--output", "x"], /download: missing --model/],
      [["--model", "a/b", "--allow-patterns", "x,,y"], /empty pattern/],
      [["--model", "not a valid id"], /neither an existing local folder nor a hub id/],
      // settings a local folder would ignore
      [
        ["--model", ".", "--verify", "--revision", "v2"],
        /Cannot download \.: it is a local folder, read as it is, and revision, verify are for the hub .*; drop them/,
      ],
      [
        ["--model", ".", "--allow_patterns", "*.json"],
        /it is a local folder, read as it is, and allow_patterns pick what is copied into output, which is not set/,
      ],
      [
        ["--model", "a/b", "--overwrite_output_dir"],
        /overwrite_output_dir is for output, which is not set; drop it/,
      ],
    ] as const
  ) {
    assertFails(await cli(["download", ...args]), 2, re);
  }
});
