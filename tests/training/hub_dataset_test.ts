/**
 * A hub dataset id as the dataset of train / sft / dpo (TRL's `--dataset_name trl-lib/Capybara`),
 * against the local mock hub: its data files downloaded into the hub cache, the config folder
 * picked with `dataset_config`, then read offline; one-line errors for what cannot be read.
 */
import { join } from "node:path";
import { assert } from "../_assert.ts";
import { type MockFiles, startHubServer } from "../_hub_server.ts";
import { isHubDatasetId, resolveDataset } from "../../data/hub_datasets.ts";
import { HubError } from "../../models/hub/hub.ts";
import { cliProcess } from "../cli/_cli.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { saveModel } from "../../models/save.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { createBackend } from "../../kernels/backend.ts";

const enc = (s: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(s);
const lines = (rows: Record<string, unknown>[]) => enc(rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
async function gz(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return await new Response(new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"))).bytes();
}
const docs = (tag: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ text: `${tag} package ${i} does a thing` }));
const pairs = Array.from(
  { length: 6 },
  (_, i) => ({ prompt: `Q${i} word`, chosen: " yes", rejected: " no" }),
);

const datasets: Record<string, MockFiles> = {
  "org/docs": {
    "README.md": enc("---\nlicense: mit\n---\n# docs"),
    ".gitattributes": enc("*.parquet filter=lfs"),
    "data/train-00000-of-00002.jsonl.gz": await gz(lines(docs("first", 12))),
    "data/train-00001-of-00002.jsonl.gz": await gz(lines(docs("second", 4))),
    "data/validation.jsonl": lines(docs("held", 3)),
  },
  "org/multi": {
    "a/train.jsonl": lines(docs("alpha", 5)),
    "b/train.jsonl": lines(docs("beta", 7)),
  },
  "org/script": { "script.py": enc("import datasets"), "README.md": enc("# a loading script") },
  "org/pairs": { "train.jsonl.gz": await gz(lines(pairs)) },
};

const hub = startHubServer({ datasets });
const cache = await Deno.makeTempDir({ prefix: "fledge-hubdata-" });
// the runs are subprocesses with the hub's address in their environment (this process's is shared
// with the test files running beside it); direct calls pass it as options
const env = {
  HF_ENDPOINT: hub.url,
  HF_HUB_CACHE: cache,
  HF_HUB_DISABLE_PROGRESS_BARS: "1",
  HF_HUB_OFFLINE: undefined,
  HF_TOKEN: undefined,
};
const o = { endpoint: hub.url, cache_dir: cache, token: false as const, offline: false, progress: false };

Deno.test("a hub dataset id downloads its data files (not the card), read offline from the cache next time", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-hubrun-" });
  try {
    const flags = {
      model: "tiny",
      model_config:
        '{"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}',
      dataset_name: "org/docs", // TRL's name
      backend: "cpu",
      max_seq_length: "16",
      per_device_train_batch_size: "2",
      max_steps: "1",
      eval_strategy: "steps",
      eval_steps: "1",
      save_strategy: "no",
    };
    const args = (out: string) => [
      "train",
      ...Object.entries({ ...flags, output_dir: join(dir, out) }).flatMap(([k, v]) => [`--${k}`, v]),
    ];
    const r = await cliProcess(args("run"), env);
    assert.equal(r.code, 0, r.err);
    const commit = hub.commitOf("org/docs");
    const fetched = hub.requests.filter((q) => q.method === "GET" && q.path.includes("/resolve/"))
      .map((q) => q.path.replace(`/datasets/org/docs/resolve/${commit}/`, "")).sort();
    assert.deepEqual(fetched, [
      "data/train-00000-of-00002.jsonl.gz",
      "data/train-00001-of-00002.jsonl.gz",
      "data/validation.jsonl",
    ]);
    // the run keeps the id, not the cache path
    assert.match(await Deno.readTextFile(join(dir, "run", "config.yaml")), /^dataset: org\/docs$/m);
    const n = hub.requests.length;
    const local = await resolveDataset("org/docs", { ...o, offline: true });
    assert.equal(local, join(cache, "datasets--org--docs", "snapshots", commit));
    const again = await cliProcess(args("again"), { ...env, HF_HUB_OFFLINE: "1" });
    assert.equal(again.code, 0, again.err);
    assert.equal(hub.requests.length, n, "offline: no request");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dataset_config picks a config folder; without it the configs are listed, and a script dataset is named", async () => {
  await assert.rejects(resolveDataset("org/multi", { ...o, subject: "Cannot train" }), {
    name: "RangeError",
    message:
      "Cannot train: hub dataset org/multi keeps its data in configs (a, b); choose one with dataset_config (--dataset_config a)",
  });
  const b = await resolveDataset("org/multi", { ...o, config: "b" });
  assert.deepEqual([...Deno.readDirSync(b)].map((e) => e.name), ["train.jsonl"]);
  assert.equal(
    (await Deno.readTextFile(join(b, "train.jsonl"))).split("\n")[0],
    '{"text":"beta package 0 does a thing"}',
  );
  assert.ok(!hub.requests.some((q) => q.path.endsWith("a/train.jsonl")), "config a not fetched");
  await assert.rejects(resolveDataset("org/multi", { ...o, config: "c" }), {
    message: /hub dataset org\/multi has no config "c"; its configs are a, b$/,
  });
  await assert.rejects(resolveDataset("org/script", o), {
    message:
      /hub dataset org\/script has no data files fledge reads .*a dataset made by a loading script must be converted first$/,
  });
  // a local path with dataset_config: refused, not ignored
  await assert.rejects(resolveDataset(cache, { ...o, config: "b" }), {
    message: /dataset_config "b" picks a folder of a hub dataset/,
  });
  // neither a local path nor a hub dataset
  await assert.rejects(resolveDataset("org/nothing", o), (e: Error) => {
    assert.ok(e instanceof HubError && e.kind === "not_found");
    assert.match(
      e.message,
      /^Cannot find dataset org\/nothing: it is not a local path, and the hub has no dataset of that id/,
    );
    return true;
  });
  // a missing local file is not asked of the hub
  assert.equal(isHubDatasetId("data/train.jsonl"), false);
  assert.equal(isHubDatasetId("trl-lib/Capybara"), true);
  await assert.rejects(resolveDataset("data/train.jsonl", o), {
    name: "NotFound",
    message: /data\/train\.jsonl does not exist/,
  });
  // the hub unreachable and nothing cached: one line
  const closed = startHubServer({});
  const url = closed.url;
  await closed.close();
  await assert.rejects(
    resolveDataset("org/unseen", { ...o, endpoint: url, max_retries: 0 }),
    (e: Error) => {
      assert.ok(e instanceof HubError);
      assert.match(e.message, /no snapshot of dataset org\/unseen is cached$/);
      assert.ok(!e.message.includes("\n"));
      return true;
    },
  );
});

Deno.test("dpo reads its pairs from a hub dataset id too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-hubdpo-" });
  try {
    const tok = await trainBpeTokenizer(["Q0 Q1 Q2 Q3 Q4 Q5 word yes no"], { vocab_size: 270 });
    const mc = presetConfig("tiny", {
      vocab_size: 270,
      hidden_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 32,
      max_position_embeddings: 32,
    });
    await saveModel(Transformer.init(mc, await createBackend("cpu")), join(dir, "base"));
    await tok.save(join(dir, "base"));
    const r = await cliProcess([
      "dpo",
      "--model",
      join(dir, "base"),
      "--dataset",
      "org/pairs",
      "--output_dir",
      join(dir, "run"),
      "--backend",
      "cpu",
      "--max_length",
      "16",
      "--per_device_train_batch_size",
      "2",
      "--max_steps",
      "1",
      "--save_strategy",
      "no",
      "--lora",
      '{"r": 2}',
    ], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^trained 1 DPO steps? in /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hub dataset: cleanup", async () => {
  await hub.close();
  await Deno.remove(cache, { recursive: true });
});
