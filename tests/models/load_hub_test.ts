/**
 * loadModel() through the mock hub: a cold load, a warm one with no request, and a corrupt
 * safetensors header giving a clear error and leaving no broken weights in the cache.
 */
import { loadModel } from "../../models/pretrained.ts";
import { readFolder, startHubServer } from "../_hub_server.ts";
import { assert, SHARED } from "../_assert.ts";
import { cpu } from "../_check.ts";

const ID = "fledge-test/tiny-llama";

async function withHub(
  files: Record<string, Uint8Array>,
  fn: (hub: ReturnType<typeof startHubServer>, cache: string) => Promise<void>,
) {
  const hub = startHubServer({ models: { [ID]: files } });
  const cache = await Deno.makeTempDir({ prefix: "fledge-load-hub-" });
  try {
    await fn(hub, cache);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

const storageFiles = (cache: string) => {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      if (e.isDirectory) walk(`${d}/${e.name}`);
      else out.push(`${d}/${e.name}`.slice(cache.length + 1));
    }
  };
  walk(cache);
  return out;
};

Deno.test("loadModel() from the hub: cold download, then a warm cache that makes no request", async () => {
  const files = await readFolder(`${SHARED}/fixtures/hf-reference/llama`);
  await withHub(files, async (hub, cache) => {
    const be = await cpu();
    const opts = { backend: be, endpoint: hub.url, cache_dir: cache };
    const a = await loadModel(ID, opts);
    const n = hub.requests.length;
    assert.ok(n > 0);
    const b = await loadModel(ID, { ...opts, offline: true });
    assert.equal(hub.requests.length, n, "offline load from the cache");
    assert.deepEqual(
      await b.p("layers.1.mlp.down.weight").toArray(),
      await a.p("layers.1.mlp.down.weight").toArray(),
    );
    a.dispose();
    b.dispose();
  });
});

Deno.test("loadModel() from the hub: a corrupt safetensors header is a clear error and is evicted from the cache", async () => {
  const files = await readFolder(`${SHARED}/fixtures/hf-reference/llama`);
  const broken = files["model.safetensors"].slice();
  new DataView(broken.buffer).setBigUint64(0, 1n << 40n, true); // header length far past the file
  await withHub({ ...files, "model.safetensors": broken }, async (hub, cache) => {
    const be = await cpu();
    let err: unknown;
    try {
      await loadModel(ID, { backend: be, endpoint: hub.url, cache_dir: cache });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof SyntaxError, String(err));
    assert.match((err as Error).message, /model\.safetensors/);
    assert.equal((err as Error).message.includes("\n    at "), false);
    const left = storageFiles(cache);
    const sha = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", broken)))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.ok(!left.some((f) => /snapshots\/[^/]+\/model\.safetensors$/.test(f)), left.join());
    assert.ok(!left.some((f) => f.endsWith(`blobs/${sha}`)), "the broken blob is gone");
    assert.ok(left.some((f) => f.endsWith("config.json")), "the good files stay cached");
  });
});
