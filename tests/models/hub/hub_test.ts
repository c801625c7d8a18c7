import { assert, SHARED } from "../../_assert.ts";
import { readFolder, startHubServer } from "../../_hub_server.ts";
import {
  downloadModel,
  hubCacheDir,
  hubDownload,
  HubError,
  listRepoFiles,
  snapshotDownload,
} from "../../../models/hub/hub.ts";

const GPT2 = `${SHARED}/fixtures/hf-reference/gpt2`;
const ID = "fledge-test/tiny-gpt2";
const TOKEN = "hf_SecretTestToken123";
const files = await readFolder(GPT2);

async function withHub(
  opts: Parameters<typeof startHubServer>[0],
  fn: (hub: ReturnType<typeof startHubServer>, cache: string) => Promise<void>,
): Promise<void> {
  const hub = startHubServer(opts);
  const cache = await Deno.makeTempDir({ prefix: "fledge-hub-" });
  try {
    await fn(hub, cache);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

const base = (hub: { url: string }, cache: string) => ({
  repo_id: ID,
  endpoint: hub.url,
  cache_dir: cache,
  token: false as const,
  offline: false,
  progress: false,
});

async function rejects(p: Promise<unknown>, check: (e: unknown) => boolean): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(check(e), `unexpected error: ${e instanceof Error ? e.stack : e}`);
    return e as Error;
  }
  throw new assert.AssertionError({ message: "expected a rejection" });
}

const isHub = (kind: string) => (e: unknown) => e instanceof HubError && e.kind === kind;

Deno.test("hubDownload() fetches cold into the huggingface_hub cache layout", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const cfg = await hubDownload({ ...base(hub, cache), filename: "config.json" });
    const st = await hubDownload({ ...base(hub, cache), filename: "model.safetensors" });
    const lora = await hubDownload({ ...base(hub, cache), filename: "lora/adapter_config.json" });
    const commit = hub.commitOf(ID);
    const storage = `${cache}/models--fledge-test--tiny-gpt2`;
    assert.equal(cfg, `${storage}/snapshots/${commit}/config.json`);
    assert.equal(lora, `${storage}/snapshots/${commit}/lora/adapter_config.json`);
    assert.equal((await Deno.readTextFile(`${storage}/refs/main`)).trim(), commit);
    assert.deepEqual(await Deno.readFile(cfg), files["config.json"]);
    assert.deepEqual(await Deno.readFile(st), files["model.safetensors"]);
    assert.deepEqual(await Deno.readFile(lora), files["lora/adapter_config.json"]);
    // Relative symlinks into blobs/, named by the ETag (sha256 for the LFS file).
    const link = await Deno.readLink(st);
    assert.match(link, /^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    assert.match(await Deno.readLink(lora), /^\.\.\/\.\.\/\.\.\/blobs\/[0-9a-f]{40}$/);
    const blobs = [...Deno.readDirSync(`${storage}/blobs`)].map((e) => e.name);
    assert.equal(blobs.length, 3);
    assert.ok(!blobs.some((b) => b.endsWith(".incomplete")));
    // The LFS file went through the CDN redirect.
    assert.ok(hub.requests.some((r) => r.server === "cdn" && r.method === "GET"));
  });
});

Deno.test("hubDownload() serves a warm cache without any request", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const first = await hubDownload({ ...base(hub, cache), filename: "model.safetensors" });
    const n = hub.requests.length;
    assert.ok(n >= 2);
    const second = await hubDownload({ ...base(hub, cache), filename: "model.safetensors" });
    assert.equal(second, first);
    assert.equal(hub.requests.length, n, "a cached file must not cause a request");
    // A pinned commit works from the cache too.
    await hubDownload({ ...base(hub, cache), filename: "model.safetensors", revision: hub.commitOf(ID) });
    assert.equal(hub.requests.length, n);
  });
});

Deno.test("hubDownload() resumes a cut download with a Range request", async () => {
  const cut = { file: "model.safetensors", after: 5000, times: 1 };
  await withHub({ models: { [ID]: files }, cut }, async (hub, cache) => {
    const path = await hubDownload({ ...base(hub, cache), filename: "model.safetensors" });
    assert.deepEqual(await Deno.readFile(path), files["model.safetensors"]);
    const gets = hub.requests.filter((r) => r.server === "cdn" && r.method === "GET");
    assert.deepEqual(gets.map((r) => r.range), [null, "bytes=5000-"]);
  });
});

/** Run `fn` with the environment variables `env` set, restoring them after. */
async function withEnv(env: Record<string, string>, fn: () => Promise<void>): Promise<void> {
  const old = Object.fromEntries(Object.keys(env).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  try {
    await fn();
  } finally {
    for (const [k, v] of Object.entries(old)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

Deno.test("hubDownload() gives up on a stalled body after HF_HUB_DOWNLOAD_TIMEOUT and resumes it", async () => {
  const stall = { file: "model.safetensors", after: 5000, times: 1 };
  await withEnv({ HF_HUB_DOWNLOAD_TIMEOUT: "0.3" }, async () => {
    await withHub({ models: { [ID]: files }, stall }, async (hub, cache) => {
      const t0 = Date.now();
      const path = await hubDownload({ ...base(hub, cache), filename: "model.safetensors" });
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
      assert.deepEqual(await Deno.readFile(path), files["model.safetensors"]);
      const gets = hub.requests.filter((r) => r.server === "cdn" && r.method === "GET");
      assert.deepEqual(gets.map((r) => r.range), [null, "bytes=5000-"]);
    });
  });
});

Deno.test("hubDownload() stops after max_retries stalls with one line that keeps the partial file", async () => {
  const stall = { file: "model.safetensors", after: 4096, times: 9 };
  await withEnv({ HF_HUB_DOWNLOAD_TIMEOUT: "0.2" }, async () => {
    await withHub({ models: { [ID]: files }, stall }, async (hub, cache) => {
      const opts = { ...base(hub, cache), filename: "model.safetensors", max_retries: 1 };
      const e = await rejects(hubDownload(opts), isHub("connection"));
      assert.ok(!e.message.includes("\n"), e.message);
      assert.match(e.message, /after 8192 of \d+ bytes \(no data for 0\.2 s \(HF_HUB_DOWNLOAD_TIMEOUT\)\)/);
      assert.match(e.message, /resumes/);
      assert.deepEqual(
        hub.requests.filter((r) => r.server === "cdn" && r.method === "GET").map((r) => r.range),
        [null, "bytes=4096-"],
      );
    });
  });
});

Deno.test("hub calls retry 429 and 5xx answers, waiting as Retry-After says", async () => {
  await withHub(
    { models: { [ID]: files }, fail: { status: 503, times: 2, retry_after: "0" } },
    async (hub, cache) => {
      const path = await hubDownload({ ...base(hub, cache), filename: "config.json" });
      assert.deepEqual(await Deno.readFile(path), files["config.json"]);
      assert.equal(hub.requests.filter((r) => r.method === "HEAD").length, 3);
    },
  );
  await withHub(
    { models: { [ID]: files }, fail: { status: 429, times: 1, retry_after: "1" } },
    async (hub, cache) => {
      const t0 = Date.now();
      const listing = await listRepoFiles(ID, base(hub, cache));
      assert.ok(listing.files.includes("config.json"));
      assert.ok(Date.now() - t0 >= 900, `Retry-After: 1 was not honoured (${Date.now() - t0} ms)`);
    },
  );
  // after max_retries the one-line http error names the status; 404 is never retried
  await withHub(
    { models: { [ID]: files }, fail: { status: 500, times: 9, retry_after: "0" } },
    async (hub, cache) => {
      const e = await rejects(
        hubDownload({ ...base(hub, cache), filename: "config.json", max_retries: 2 }),
        isHub("http"),
      );
      assert.match(e.message, /answered 500/);
      assert.equal(hub.requests.length, 3);
    },
  );
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    await rejects(hubDownload({ ...base(hub, cache), filename: "nope.json" }), isHub("not_found"));
    assert.equal(hub.requests.length, 1);
  });
});

Deno.test("snapshotDownload() uses the cached snapshot when the hub answers 5xx, not when it answers 401", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const opts = { ...base(hub, cache), allow_patterns: ["config.json"] };
    const first = await snapshotDownload(ID, opts);
    await withHub({ models: { [ID]: files }, fail: { status: 500, times: 99, on: "api" } }, async (down) => {
      assert.equal(await snapshotDownload(ID, { ...opts, endpoint: down.url, max_retries: 0 }), first);
    });
    await withHub(
      { models: { [ID]: files }, fail: { status: 429, times: 99, retry_after: "0" } },
      async (down) => {
        assert.equal(await snapshotDownload(ID, { ...opts, endpoint: down.url, max_retries: 1 }), first);
      },
    );
    await withHub({ models: { [ID]: files }, token: TOKEN }, async (locked) => {
      await rejects(snapshotDownload(ID, { ...opts, endpoint: locked.url }), isHub("unauthorized"));
    });
  });
});

Deno.test("two downloads of one blob at once into one cache both succeed, and the file is fetched once", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const opts = { ...base(hub, cache), filename: "model.safetensors" };
    const [a, b, folder] = await Promise.all([
      hubDownload(opts),
      hubDownload(opts),
      snapshotDownload(ID, { ...base(hub, cache), allow_patterns: ["model.safetensors"] }),
    ]);
    for (const p of [a, b, `${folder}/model.safetensors`]) {
      assert.deepEqual(await Deno.readFile(p), files["model.safetensors"]);
    }
    const gets = hub.requests.filter((r) => r.server === "cdn" && r.method === "GET");
    assert.equal(gets.length, 1, JSON.stringify(gets));
    const storage = `${cache}/models--fledge-test--tiny-gpt2`;
    assert.deepEqual(
      [...Deno.readDirSync(`${storage}/blobs`)].map((e) => e.name).filter((n) => !/^[0-9a-f]+$/.test(n)),
      [],
    );
    // the lock (huggingface_hub's .locks/<repo>/<etag>.lock) is gone once the download ends
    assert.deepEqual([...Deno.readDirSync(`${cache}/.locks/models--fledge-test--tiny-gpt2`)], []);
  });
});

Deno.test("a blob lock left by a dead download elsewhere is refused once its file stops growing, naming the lock", async () => {
  // (a lock of another host, or of a restarted container's same pid, had been waited for without end)
  await withEnv({ HF_HUB_DOWNLOAD_TIMEOUT: "0.1" }, async () => {
    await withHub({ models: { [ID]: files } }, async (hub, cache) => {
      const opts = { ...base(hub, cache), filename: "model.safetensors" };
      const storage = `${cache}/models--fledge-test--tiny-gpt2`;
      await hubDownload(opts);
      const [etag] = [...Deno.readDirSync(`${storage}/blobs`)].map((e) => e.name)
        .filter((n) => Deno.statSync(`${storage}/blobs/${n}`).size === files["model.safetensors"].length);
      await Deno.remove(`${storage}/blobs/${etag}`);
      const lock = `${cache}/.locks/models--fledge-test--tiny-gpt2/${etag}.lock`;
      const left = { pid: 1, host: "elsewhere", started: "2026-12-01T00:00:00.000Z", command: "download" };
      await Deno.writeTextFile(lock, JSON.stringify(left) + "\n");
      const e = await rejects(hubDownload(opts), (e) => e instanceof Deno.errors.Busy);
      assert.match(e.message, /in use by pid 1 \(download\) on host elsewhere/);
      assert.ok(
        e.message.endsWith(`has not grown for 1.2 s: if no other download of this file runs, remove ${lock}`),
        e.message,
      );
      await Deno.remove(lock);
      assert.deepEqual(await Deno.readFile(await hubDownload(opts)), files["model.safetensors"]);
    });
  });
});

Deno.test("two processes downloading one blob into one cache both succeed, and the file is fetched once", async () => {
  const hubUrl = new URL("../../../models/hub/hub.ts", import.meta.url).href;
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const code = `import { hubDownload } from "${hubUrl}";
      console.log(await hubDownload(${
      JSON.stringify({ ...base(hub, cache), filename: "model.safetensors" })
    }));`;
    const run = () => new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped" }).output();
    const outs = await Promise.all([run(), run()]);
    for (const o of outs) {
      assert.ok(o.success);
      assert.deepEqual(
        await Deno.readFile(new TextDecoder().decode(o.stdout).trim()),
        files["model.safetensors"],
      );
    }
    assert.equal(hub.requests.filter((r) => r.server === "cdn" && r.method === "GET").length, 1);
  });
});

Deno.test("hubDownload() keeps the partial file when retries run out, and the next call resumes it", async () => {
  const cut = { file: "model.safetensors", after: 4096, times: 1 };
  await withHub({ models: { [ID]: files }, cut }, async (hub, cache) => {
    const opts = { ...base(hub, cache), filename: "model.safetensors", max_retries: 0 };
    const e = await rejects(hubDownload(opts), isHub("connection"));
    assert.match(e.message, /4096 of \d+ bytes/);
    assert.match(e.message, /resumes/);
    const storage = `${cache}/models--fledge-test--tiny-gpt2`;
    const partial = [...Deno.readDirSync(`${storage}/blobs`)].map((x) => x.name);
    assert.equal(partial.length, 1);
    assert.match(partial[0], /^[0-9a-f]{64}\.incomplete$/);
    assert.equal(Deno.statSync(`${storage}/blobs/${partial[0]}`).size, 4096);
    assert.ok(!(await exists(`${storage}/snapshots/${hub.commitOf(ID)}/model.safetensors`)));
    const path = await hubDownload(opts);
    assert.deepEqual(await Deno.readFile(path), files["model.safetensors"]);
    assert.equal(hub.requests.filter((r) => r.server === "cdn").at(-1)?.range, "bytes=4096-");
  });
});

Deno.test("hubDownload() explains 401 and 403 without ever showing the token", async () => {
  await withHub({ models: { [ID]: files }, token: TOKEN }, async (hub, cache) => {
    const e401 = await rejects(
      hubDownload({ ...base(hub, cache), filename: "config.json" }),
      isHub("unauthorized"),
    );
    assert.equal((e401 as HubError).status, 401);
    assert.match(e401.message, /no token was sent/);
    assert.match(e401.message, /HF_TOKEN/);
    const wrong = "hf_WrongTokenValue999";
    const e403 = await rejects(
      hubDownload({ ...base(hub, cache), filename: "config.json", token: wrong }),
      isHub("unauthorized"),
    );
    assert.equal((e403 as HubError).status, 403);
    assert.match(e403.message, /lacks access/);
    assert.ok(!JSON.stringify([e403.message, e403.stack]).includes(wrong));
    const ok = await hubDownload({ ...base(hub, cache), filename: "model.safetensors", token: TOKEN });
    assert.ok(!ok.includes(TOKEN));
    // The token goes to the hub, never to the CDN (another origin).
    assert.ok(hub.requests.filter((r) => r.server === "hub").at(-1)?.authorization);
    assert.ok(hub.requests.filter((r) => r.server === "cdn").every((r) => !r.authorization));
  });
});

Deno.test("hubDownload() errors never contain HF_TOKEN", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const all: unknown[] = [];
    const calls = [
      () => hubDownload({ ...base(hub, cache), filename: "missing.json", token: TOKEN }),
      () =>
        hubDownload({
          ...base(hub, cache),
          repo_id: "nobody/nothing",
          filename: "config.json",
          token: TOKEN,
        }),
      () =>
        hubDownload({
          ...base(hub, cache),
          endpoint: `${hub.url}/${TOKEN}`,
          filename: "config.json",
          token: TOKEN,
        }),
      () => hubDownload({ ...base(hub, cache), filename: "x.json", token: TOKEN, offline: true }),
      () => listRepoFiles("nobody/nothing", { ...base(hub, cache), token: TOKEN }),
    ];
    for (const c of calls) await c().catch((e) => all.push(e));
    assert.equal(all.length, calls.length);
    for (const e of all) {
      const text = JSON.stringify([(e as Error).message, (e as Error).stack, e]);
      assert.ok(!text.includes(TOKEN), text);
    }
  });
});

Deno.test("hubDownload() names the repo and the file on 404", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const e = await rejects(hubDownload({ ...base(hub, cache), filename: "nope.json" }), isHub("not_found"));
    assert.match(e.message, /file "nope\.json" does not exist in model fledge-test\/tiny-gpt2/);
    const r = await rejects(
      hubDownload({ ...base(hub, cache), repo_id: "nobody/nothing", filename: "config.json" }),
      isHub("not_found"),
    );
    assert.match(r.message, /nobody\/nothing/);
    assert.match(r.message, /config\.json/);
    const v = await rejects(
      hubDownload({ ...base(hub, cache), filename: "config.json", revision: "v9" }),
      isHub("not_found"),
    );
    assert.match(v.message, /revision "v9" does not exist/);
  });
});

Deno.test("hubDownload() refuses a truncated file and keeps only the partial blob", async () => {
  const announce = { "model.safetensors": files["model.safetensors"].length + 100 };
  await withHub({ models: { [ID]: files }, announce }, async (hub, cache) => {
    const e = await rejects(
      hubDownload({ ...base(hub, cache), filename: "model.safetensors", max_retries: 1 }),
      isHub("truncated"),
    );
    assert.match(e.message, /announced \d+/);
    const storage = `${cache}/models--fledge-test--tiny-gpt2`;
    assert.ok(!(await exists(`${storage}/snapshots/${hub.commitOf(ID)}/model.safetensors`)));
    const blobs = [...Deno.readDirSync(`${storage}/blobs`)].map((x) => x.name);
    assert.ok(blobs.every((b) => b.endsWith(".incomplete")), blobs.join());
  });
});

Deno.test("hubDownload() deletes a blob whose sha256 does not match", async () => {
  await withHub({ models: { [ID]: files }, corrupt: ["model.safetensors"] }, async (hub, cache) => {
    const e = await rejects(
      hubDownload({ ...base(hub, cache), filename: "model.safetensors" }),
      isHub("checksum"),
    );
    assert.match(e.message, /sha256/);
    const storage = `${cache}/models--fledge-test--tiny-gpt2`;
    assert.deepEqual([...Deno.readDirSync(`${storage}/blobs`)], []);
    assert.ok(!(await exists(`${storage}/snapshots`)));
  });
});

Deno.test("hubDownload() offline: a hit needs no network, a miss says what is missing", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    await hubDownload({ ...base(hub, cache), filename: "config.json" });
    const n = hub.requests.length;
    const hit = await hubDownload({ ...base(hub, cache), filename: "config.json", offline: true });
    assert.deepEqual(await Deno.readFile(hit), files["config.json"]);
    const miss = await rejects(
      hubDownload({ ...base(hub, cache), filename: "model.safetensors", local_files_only: true }),
      isHub("offline"),
    );
    assert.match(miss.message, /model\.safetensors/);
    assert.match(miss.message, /HF_HUB_OFFLINE/);
    assert.equal(hub.requests.length, n);
    await rejects(snapshotDownload("other/repo", { ...base(hub, cache), offline: true }), isHub("offline"));
  });
});

Deno.test("hubDownload() refuses file names that leave the repo folder", async () => {
  await withHub({ models: { [ID]: { ...files, "../evil.json": new Uint8Array(1) } } }, async (hub, cache) => {
    for (
      const filename of [
        "../evil.json",
        "/etc/passwd",
        "a\\..\\b",
        "lora/../../x",
        "C:evil",
        "./config.json",
        "",
      ]
    ) {
      await rejects(hubDownload({ ...base(hub, cache), filename }), (e) => e instanceof RangeError);
    }
    assert.equal(hub.requests.length, 0);
    // A hostile listing is refused too.
    const e = await rejects(snapshotDownload(ID, base(hub, cache)), (e) => e instanceof RangeError);
    assert.match(e.message, /\.\.\/evil\.json/);
    await rejects(
      hubDownload({ ...base(hub, cache), filename: "x", revision: "../main" }),
      (e) => e instanceof RangeError,
    );
  });
});

Deno.test("a hub endpoint that is not an http(s) URL is named with its source (it was a bare 'Invalid URL')", async () => {
  for (const endpoint of ["notaurl", "huggingface.co", "ftp://x"]) {
    await assert.rejects(
      () => hubDownload({ repo_id: ID, filename: "config.json", endpoint, cache_dir: "/nonexistent" }),
      {
        name: "TypeError",
        message: new RegExp(
          `the hub endpoint "${endpoint}" \\(the endpoint option\\): it is not an http\\(s\\) URL`,
        ),
      },
    );
  }
});

Deno.test("hubDownload() reports an unreachable hub and mentions offline mode", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const cache = await Deno.makeTempDir();
  try {
    const e = await rejects(
      hubDownload({
        repo_id: ID,
        filename: "config.json",
        endpoint: `http://127.0.0.1:${port}`,
        cache_dir: cache,
        offline: false,
        max_retries: 0,
      }),
      isHub("connection"),
    );
    assert.match(e.message, /HF_HUB_OFFLINE=1/);
    // a mistyped local path reads as a hub id: the message says the path is not a folder either
    const opts = { endpoint: `http://127.0.0.1:${port}`, cache_dir: cache, offline: false, max_retries: 0 };
    const typo = await rejects(snapshotDownload("tests/nope", opts), isHub("connection"));
    assert.match(
      typo.message,
      /\(tests\/nope is not a local folder either, though tests\/ is: check the path\)$/,
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("hubDownload() uses a local folder given as repo_id", async () => {
  const path = await hubDownload({ repo_id: GPT2, filename: "lora/adapter_config.json" });
  assert.equal(Deno.realPathSync(path), Deno.realPathSync(`${GPT2}/lora/adapter_config.json`));
  await rejects(hubDownload({ repo_id: GPT2, filename: "nope.json" }), isHub("not_found"));
  assert.equal(hubCacheDir({ cache_dir: "/x" }), "/x");
});

Deno.test("snapshotDownload() lists through the API and fetches matching files once", async () => {
  await withHub({
    datasets: {
      "org/data": {
        "cfg/train-00000-of-00001.parquet": files["model.safetensors"],
        "README.md": new Uint8Array([35]),
      },
    },
  }, async (hub, cache) => {
    const opts = { ...base(hub, cache), repo_type: "dataset" as const, allow_patterns: ["cfg/*"] };
    const dir = await snapshotDownload("org/data", opts);
    assert.equal(dir, `${cache}/datasets--org--data/snapshots/${hub.commitOf("org/data")}`);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["cfg"]);
    assert.ok(hub.requests.some((r) => r.path === "/api/datasets/org/data/revision/main"));
    assert.ok(hub.requests.some((r) => r.path.startsWith("/datasets/org/data/resolve/")));
    const n = hub.requests.length;
    assert.equal(await snapshotDownload("org/data", opts), dir);
    assert.equal(hub.requests.length, n + 1, "only the listing is requested again");
    assert.equal(await snapshotDownload("org/data", { ...opts, offline: true }), dir);
    const listing = await listRepoFiles("org/data", opts);
    assert.deepEqual(listing.files, ["README.md", "cfg/train-00000-of-00001.parquet"]);
  });
});

Deno.test("downloadModel() fetches the shards an index names, top level only, never consolidated or original/ weights", async () => {
  const enc = (t: string) => new TextEncoder().encode(t);
  const weights = (n: number) => new Uint8Array(1000 + n).fill(n);
  const mistral = {
    "config.json": enc("{}"),
    "tokenizer.json": enc("{}"),
    "README.md": enc("# m"),
    "consolidated.safetensors": weights(1),
    "original/consolidated.safetensors": weights(2),
    "model-00001-of-00002.safetensors": weights(3),
    "model-00002-of-00002.safetensors": weights(4),
    "model.safetensors.index.json": enc(JSON.stringify({
      weight_map: {
        a: "model-00001-of-00002.safetensors",
        b: "model-00002-of-00002.safetensors",
        c: "model-00001-of-00002.safetensors",
      },
    })),
    "sub/config.json": enc("{}"),
  };
  await withHub({ models: { "org/mistral": mistral, [ID]: files } }, async (hub, cache) => {
    const o = { endpoint: hub.url, cache_dir: cache, token: false as const, offline: false, progress: false };
    const out = `${cache}/out`;
    await downloadModel("org/mistral", { ...o, output: out });
    const want = [
      "config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "tokenizer.json",
    ];
    assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name).sort(), want);
    const cdn = hub.requests.filter((r) => r.server === "cdn" && r.method === "GET");
    assert.equal(cdn.length, 2, JSON.stringify(cdn));
    // without an index: model.safetensors alone (not the fixture's other cases.safetensors)
    const gpt2 = await downloadModel(ID, o);
    assert.ok(await exists(`${gpt2}/model.safetensors`));
    assert.ok(!(await exists(`${gpt2}/cases.safetensors`)));
    assert.ok(!(await exists(`${gpt2}/lora`)));
  });
});

Deno.test("downloadModel() copies the model files to output and verify catches a corrupt blob", async () => {
  await withHub({ models: { [ID]: files } }, async (hub, cache) => {
    const out = await Deno.makeTempDir();
    try {
      const dir = await downloadModel(ID, { ...base(hub, cache), output: out, verify: true });
      assert.equal(dir, out);
      const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
      // Top-level model files only: not lora/ or dora/ adapters, nor the cases.safetensors test data.
      assert.deepEqual(names, ["config.json", "generation_config.json", "model.safetensors"]);
      assert.ok(!(await Deno.lstat(`${out}/model.safetensors`)).isSymlink);
      const snap = await downloadModel(ID, base(hub, cache));
      const blob = await Deno.realPath(`${snap}/config.json`);
      await Deno.writeTextFile(blob, "{}");
      const e = await rejects(downloadModel(ID, { ...base(hub, cache), verify: true }), isHub("checksum"));
      assert.match(e.message, /config\.json/);
      // The bad blob is gone, so the next download fetches it again.
      await downloadModel(ID, { ...base(hub, cache), verify: true });
      assert.deepEqual(await Deno.readFile(`${snap}/config.json`), files["config.json"]);
      // a file as output is refused, even with overwrite_output_dir (it had become a model folder)
      const notes = `${out}/notes.txt`;
      await Deno.writeTextFile(notes, "mine\n");
      for (const overwrite_output_dir of [false, true]) {
        const e = await rejects(
          downloadModel(ID, { ...base(hub, cache), output: notes, overwrite_output_dir }),
          (e) => e instanceof TypeError,
        );
        assert.match(e.message, /notes\.txt: it is a file, and output is a folder; choose a folder/);
      }
      assert.equal(await Deno.readTextFile(notes), "mine\n");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  });
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("hub calls honour HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE and HF_TOKEN from the environment", async () => {
  const hubUrl = new URL("../../../models/hub/hub.ts", import.meta.url).href;
  const code = `
    import { hubCacheDir, hubDownload, isOfflineMode } from "${hubUrl}";
    console.log(JSON.stringify({ cache: hubCacheDir(), offline: isOfflineMode() }));
    try {
      await hubDownload({ repo_id: "org/private", filename: "config.json" });
    } catch (e) {
      console.log(e.kind, e.message, e.stack);
    }`;
  const run = async (env: Record<string, string>) => {
    const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], env, clearEnv: true })
      .output();
    return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  };
  const a = await run({
    HF_HUB_CACHE: "/tmp/fledge-env-cache",
    HF_HUB_OFFLINE: "1",
    HF_TOKEN: TOKEN,
    HOME: "/nonexistent",
  });
  assert.match(a, /"cache":"\/tmp\/fledge-env-cache","offline":true/);
  assert.match(a, /^offline Cannot get model org\/private file "config\.json"/m);
  assert.ok(!a.includes(TOKEN), a);
  const b = await run({ HF_HOME: "/tmp/fledge-env-home", HF_HUB_OFFLINE: "0", HOME: "/nonexistent" });
  assert.match(b, /"cache":"\/tmp\/fledge-env-home\/hub","offline":false/);
  const c = await run({ HOME: "/home/someone", HF_HUB_OFFLINE: "true" });
  assert.match(c, /"cache":"\/home\/someone\/\.cache\/huggingface\/hub","offline":true/);
  // HF_ENDPOINT and HF_TOKEN reach a hub that requires the token.
  await withHub({ models: { "org/private": files }, token: TOKEN }, async (hub, cache) => {
    const d = await run({
      HF_ENDPOINT: hub.url,
      HF_TOKEN: TOKEN,
      HF_HUB_CACHE: cache,
      HF_HUB_DISABLE_PROGRESS_BARS: "1",
    });
    assert.ok(!d.includes("Cannot"), d);
    assert.deepEqual(
      await Deno.readFile(
        `${cache}/models--org--private/snapshots/${hub.commitOf("org/private")}/config.json`,
      ),
      files["config.json"],
    );
    assert.ok(hub.requests.every((r) => r.authorization));
  });
});

Deno.test("hub calls send the token hf auth login saved (HF_HOME/token, HF_TOKEN_PATH), HF_TOKEN first, and honour HUGGINGFACE_HUB_CACHE", async () => {
  const hubUrl = new URL("../../../models/hub/hub.ts", import.meta.url).href;
  const code = `
    import { hubCacheDir, hubDownload } from "${hubUrl}";
    console.log(JSON.stringify({ cache: hubCacheDir() }));
    try {
      await hubDownload({ repo_id: "org/private", filename: "config.json" });
      console.log("fetched");
    } catch (e) {
      console.log(e.kind, e.message);
    }`;
  const run = async (env: Record<string, string>) => {
    const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], env, clearEnv: true })
      .output();
    return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  };
  const home = await Deno.makeTempDir({ prefix: "fledge-hf-home-" });
  try {
    await Deno.writeTextFile(`${home}/token`, `${TOKEN}\n`);
    await Deno.writeTextFile(`${home}/other-token`, "hf_WrongToken\n");
    await withHub({ models: { "org/private": files }, token: TOKEN }, async (hub, cache) => {
      const env = { HF_ENDPOINT: hub.url, HF_HUB_DISABLE_PROGRESS_BARS: "1", HOME: "/nonexistent" };
      // the saved token, from HF_HOME/token (the cache from the legacy HUGGINGFACE_HUB_CACHE)
      const a = await run({ ...env, HF_HOME: home, HUGGINGFACE_HUB_CACHE: cache });
      assert.match(a, new RegExp(`"cache":"${cache}"[\\s\\S]*^fetched$`, "m"));
      assert.ok(hub.requests.length > 0 && hub.requests.every((r) => r.authorization));
      // HF_TOKEN_PATH names another file: its (wrong) token is sent, and refused
      const b = await run({
        ...env,
        HF_HOME: home,
        HF_HUB_CACHE: `${cache}/b`,
        HF_TOKEN_PATH: `${home}/other-token`,
      });
      assert.match(b, /^unauthorized .*the token lacks access/m);
      // HF_TOKEN wins over the file; HF_HUB_CACHE over HUGGINGFACE_HUB_CACHE
      const c = await run({
        ...env,
        HF_TOKEN: TOKEN,
        HF_TOKEN_PATH: `${home}/other-token`,
        HF_HUB_CACHE: `${cache}/c`,
        HUGGINGFACE_HUB_CACHE: `${cache}/legacy`,
      });
      assert.match(c, new RegExp(`"cache":"${cache}/c"[\\s\\S]*^fetched$`, "m"));
      assert.ok(!a.includes(TOKEN) && !b.includes("hf_WrongToken") && !c.includes(TOKEN));
    });
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
