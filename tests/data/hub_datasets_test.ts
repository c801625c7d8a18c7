import { assert } from "../_assert.ts";
// deno-lint-ignore no-import-prefix
import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
import { type MockFiles, startHubServer } from "../_hub_server.ts";
import { loadCnnDailymail, loadHubDataset, loadSst2, loadWmt14 } from "../../data/hub_datasets.ts";
import { hubDownload, HubError } from "../../models/hub/hub.ts";

const text = (name: string, data: string[]) => ({ name, data, type: "STRING" as const });
const bytes = (b: ArrayBuffer) => new Uint8Array(b);

function cnnShard(from: number, n: number): Uint8Array {
  const ids = Array.from({ length: n }, (_, i) => from + i);
  return bytes(parquetWriteBuffer({
    columnData: [
      text("article", ids.map((i) => `Article number ${i}. `.repeat(20))),
      text("highlights", ids.map((i) => `Summary ${i}.`)),
      text("id", ids.map((i) => `id${i}`)),
    ],
  }));
}

const wmt = (pairs: [string, string][], [a, b] = ["de", "en"]) =>
  bytes(parquetWriteBuffer({
    columnData: [{ name: "translation", data: pairs.map(([x, y]) => ({ [a]: x, [b]: y })) }],
    schema: [
      { name: "schema", num_children: 1 },
      { name: "translation", num_children: 2, repetition_type: "OPTIONAL" },
      { name: a, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: b, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
    ],
  }));

const sst = (rows: [string, number][]) =>
  bytes(parquetWriteBuffer({
    columnData: [
      text("sentence", rows.map((r) => r[0])),
      { name: "label", data: BigInt64Array.from(rows.map((r) => BigInt(r[1]))), type: "INT64" },
      { name: "idx", data: Int32Array.from(rows.map((_, i) => i)), type: "INT32" },
    ],
  }));

const datasets: Record<string, MockFiles> = {
  "abisee/cnn_dailymail": {
    "README.md": new TextEncoder().encode("# cnn"),
    "3.0.0/train-00000-of-00002.parquet": cnnShard(0, 30),
    "3.0.0/train-00001-of-00002.parquet": cnnShard(30, 20),
    "3.0.0/validation-00000-of-00001.parquet": cnnShard(100, 5),
    "1.0.0/train-00000-of-00001.parquet": cnnShard(200, 3),
  },
  "wmt/wmt14": {
    "de-en/train-00000-of-00001.parquet": wmt([["Hallo Welt", "Hello world"], [
      "Guten Morgen",
      "Good morning",
    ]]),
    "fr-en/train-00000-of-00001.parquet": wmt([["bonjour", "hello"]], ["fr", "en"]),
    "cs-en/train-00000-of-00001.parquet": wmt([["ahoj", "hi"]]),
  },
  "nyu-mll/glue": {
    "sst2/train-00000-of-00001.parquet": sst([["a gorgeous film", 1], ["dull", 0], ["fine", 1]]),
    "sst2/validation-00000-of-00001.parquet": sst([["meh", 0]]),
    "cola/train-00000-of-00001.parquet": sst([["x", 1]]),
  },
};

async function withHub(
  opts: { cut?: { file: string; after: number; times: number } },
  fn: (hub: ReturnType<typeof startHubServer>, o: Record<string, unknown>) => Promise<void>,
): Promise<void> {
  const hub = startHubServer({ datasets, ...opts });
  const cache = await Deno.makeTempDir({ prefix: "fledge-hubds-" });
  try {
    await fn(hub, { endpoint: hub.url, cache_dir: cache, token: false, offline: false, progress: false });
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

Deno.test("loadCnnDailymail() downloads cold, then reads a warm cache with no request", async () => {
  await withHub({}, async (hub, o) => {
    const train = await loadCnnDailymail({ ...o, split: "train" });
    assert.equal(train.length, 50);
    assert.deepEqual(Object.keys(train[0]), ["article", "highlights", "id"]);
    assert.equal(train[49].highlights, "Summary 49.");
    assert.ok(hub.requests.some((r) => r.path === "/api/datasets/abisee/cnn_dailymail/revision/main"));
    // Only the requested config and split were fetched, at the commit the listing resolved.
    const fetched = hub.requests.filter((r) => r.method === "HEAD").map((r) => r.path);
    const commit = hub.commitOf("abisee/cnn_dailymail");
    assert.deepEqual(fetched, [
      `/datasets/abisee/cnn_dailymail/resolve/${commit}/3.0.0/train-00000-of-00002.parquet`,
      `/datasets/abisee/cnn_dailymail/resolve/${commit}/3.0.0/train-00001-of-00002.parquet`,
    ]);
    const n = hub.requests.length;
    const again = await loadCnnDailymail({ ...o, split: "train", max_samples: 35 });
    assert.equal(hub.requests.length, n, "a cached split must not cause a request");
    assert.deepEqual(again, train.slice(0, 35));
    const forced = await loadCnnDailymail({ ...o, split: "train", force_download: true });
    assert.ok(hub.requests.length > n, "force_download asks the hub even for a cached split");
    assert.deepEqual(forced, train);
    const shuffled = await loadCnnDailymail({
      ...o,
      split: "train",
      shuffle: true,
      seed: 3,
      max_samples: 10,
    });
    assert.equal(shuffled.length, 10);
    assert.notDeepEqual(shuffled, train.slice(0, 10));
  });
});

Deno.test("loadHubDataset() takes every shard from the commit it listed when the branch moved since a partial download", async () => {
  await withHub({}, async (hub, o) => {
    const id = "abisee/cnn_dailymail";
    // an interrupted run cached only shard 0 of main's first commit
    await hubDownload({
      ...o,
      repo_id: id,
      repo_type: "dataset",
      filename: "3.0.0/train-00000-of-00002.parquet",
    });
    const next = hub.update(id, {
      ...datasets[id],
      "3.0.0/train-00000-of-00002.parquet": cnnShard(1000, 3),
      "3.0.0/train-00001-of-00002.parquet": cnnShard(1003, 2),
    }, "dataset");
    const rows = await loadCnnDailymail({ ...o, split: "train" });
    assert.deepEqual(rows.map((r) => r.id), ["id1000", "id1001", "id1002", "id1003", "id1004"]);
    const storage = `${o.cache_dir}/datasets--abisee--cnn_dailymail`;
    assert.equal((await Deno.readTextFile(`${storage}/refs/main`)).trim(), next);
    // the next load is served by the cache at the new commit, with no request
    const n = hub.requests.length;
    assert.equal((await loadCnnDailymail({ ...o, split: "train" })).length, 5);
    assert.equal(hub.requests.length, n);
  });
});

Deno.test("loadCnnDailymail() resumes a shard cut off half way", async () => {
  const file = "3.0.0/validation-00000-of-00001.parquet";
  const half = datasets["abisee/cnn_dailymail"][file].length >> 1;
  await withHub({ cut: { file, after: half, times: 1 } }, async (hub, o) => {
    const rows = await loadCnnDailymail({ ...o, split: "validation" });
    assert.deepEqual(rows.map((r) => r.id), ["id100", "id101", "id102", "id103", "id104"]);
    const gets = hub.requests.filter((r) => r.server === "cdn" && r.method === "GET").map((r) => r.range);
    assert.deepEqual(gets, [null, `bytes=${half}-`]);
  });
});

Deno.test("hub datasets offline: a cached split loads, a missing one says so", async () => {
  await withHub({}, async (hub, o) => {
    await loadSst2({ ...o, split: "train" });
    const n = hub.requests.length;
    const rows = await loadSst2({ ...o, split: "train", offline: true });
    assert.deepEqual(rows[0], { sentence: "a gorgeous film", label: 1, idx: 0 });
    await assert.rejects(loadSst2({ ...o, split: "validation", offline: true }), (e) => {
      assert.ok(e instanceof HubError && e.kind === "offline", String(e));
      assert.match(e.message, /nyu-mll\/glue config "sst2" split "validation"/);
      return true;
    });
    assert.equal(hub.requests.length, n);
  });
});

Deno.test("hub datasets name the splits and configs that exist", async () => {
  await withHub({}, async (_hub, o) => {
    await assert.rejects(loadSst2({ ...o, split: "test" }), {
      name: "RangeError",
      message: /split "test" of dataset nyu-mll\/glue: the splits of config "sst2" are train, validation/,
    });
    await assert.rejects(loadHubDataset("nyu-mll/glue", { ...o, config: "mnli" }), {
      name: "RangeError",
      message: /config "mnli" has no parquet files; the configs are cola, sst2/,
    });
    await assert.rejects(loadWmt14({ ...o, language_pair: "xx-en" as "de-en" }), { name: "TypeError" });
  });
});

Deno.test("loadWmt14() flattens the translation struct", async () => {
  await withHub({}, async (_hub, o) => {
    assert.deepEqual(await loadWmt14({ ...o, split: "train" }), [
      { de: "Hallo Welt", en: "Hello world" },
      { de: "Guten Morgen", en: "Good morning" },
    ]);
    assert.deepEqual(
      await loadWmt14({ ...o, language_pair: "fr-en", columns: ["fr"], rename: { fr: "src" } }),
      [
        { src: "bonjour" },
      ],
    );
    // A shard whose struct lacks the pair's language is named, not silently emptied.
    await assert.rejects(loadWmt14({ ...o, language_pair: "cs-en" }), {
      name: "TypeError",
      message: /wmt\/wmt14 cs-en: a translation is \{"de":"ahoj","en":"hi"\}/,
    });
  });
});

Deno.test("hub datasets read the same layout from a local path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-localds-" });
  try {
    for (const [name, data] of Object.entries(datasets["abisee/cnn_dailymail"])) {
      await Deno.mkdir(`${dir}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeFile(`${dir}/${name}`, data);
    }
    const rows = await loadCnnDailymail({
      path: dir,
      split: "validation",
      columns: ["id"],
      rename: { id: "key" },
    });
    assert.deepEqual(rows.map((r) => r.key), ["id100", "id101", "id102", "id103", "id104"]);
    assert.equal((await loadCnnDailymail({ path: dir, config: "1.0.0" })).length, 3);
    await assert.rejects(loadCnnDailymail({ path: dir, seed: 3 }), {
      name: "TypeError",
      message: /seed orders the shuffle, and shuffle is off/,
    });
    await assert.rejects(loadCnnDailymail({ path: dir, revision: "v2", force_download: true }), {
      name: "RangeError",
      message:
        /from path .*: it is a local folder, read as it is, and revision, force_download are for the hub .*; drop them/,
    });
    await assert.rejects(loadCnnDailymail({ path: dir, split: "test" }), {
      name: "RangeError",
      message: /the splits of config "3\.0\.0" are train, validation/,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
