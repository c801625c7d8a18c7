/**
 * A hub dataset id as the dataset of train / sft / dpo (TRL's `--dataset_name trl-lib/Capybara`),
 * against the local mock hub: its data files downloaded into the hub cache, the config folder
 * picked with `dataset_config`, then read offline; one-line errors for what cannot be read.
 */
import { join } from "node:path";
import { assert } from "../_assert.ts";
import { type MockFiles, startHubServer } from "../_hub_server.ts";
import { isHubDatasetId, resolveDataset } from "../../data/hub_datasets.ts";
import { findSplitFiles } from "../../data/readers.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { splitFiles, trainSplitFiles } from "../../training/_run_data.ts";
import { HubError } from "../../models/hub/hub.ts";
import { assertFails, cliProcess } from "../cli/_cli.ts";
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
  { length: 30 },
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
  // HuggingFaceH4/ultrachat_200k's layout: the card names the splits (by file name, train_sft and
  // train_gen would both be "train")
  "org/chat": {
    "README.md": enc(
      "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train_sft\n    path: data/train_sft-*\n" +
        "  - split: test_sft\n    path: data/test_sft-*\n  - split: train_gen\n    path: data/train_gen-*\n" +
        "- config_name: small\n  data_files: data/train_sft-00000-of-00002.jsonl\n---\n# chat",
    ),
    "data/train_sft-00000-of-00002.jsonl": lines(docs("sft0", 4)),
    "data/train_sft-00001-of-00002.jsonl": lines(docs("sft1", 4)),
    "data/test_sft-00000-of-00001.jsonl": lines(docs("tsft", 2)),
    "data/train_gen-00000-of-00001.jsonl": lines(docs("gen", 9)),
  },
  // trl-lib/Capybara's: train and test, with a LICENSE beside data/
  "org/capy": {
    "LICENSE.txt": enc("Apache 2.0"),
    "data/train-00000-of-00001.jsonl": lines(docs("capy", 10)),
    "data/test-00000-of-00001.jsonl": lines(docs("capytest", 2)),
  },
  // a card config naming no files: the default layout's (data/), not every data file of the repo
  "org/bare": {
    "README.md": enc("---\nconfigs:\n- config_name: default\n---\n"),
    "LICENSE.txt": enc("MIT"),
    "data/train.jsonl": lines(docs("bare", 3)),
    "big/other-0.jsonl": lines(docs("other", 3)),
  },
  // files named for a split below data/ (HF's **/train* patterns find them)
  "org/lang": {
    "data/en/train.jsonl": lines(docs("en", 2)),
    "data/fr/train.jsonl": lines(docs("fr", 3)),
  },
  // yahma/alpaca-cleaned's: one file named for no split
  "org/alpaca": { "alpaca_data_cleaned.json": enc(JSON.stringify(docs("alp", 3))) },
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

Deno.test("a hub dataset id downloads its card and data files, read offline from the cache next time", async () => {
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
    assert.doesNotMatch(
      r.err,
      /evaluation (holds out|uses the test split)/,
      "org/docs has a validation split",
    );
    // the commit read is said, to pin it (dataset_revision)
    assert.match(r.err, new RegExp(`dataset org/docs: commit ${hub.commitOf("org/docs")} of the hub`));
    const commit = hub.commitOf("org/docs");
    const fetched = hub.requests.filter((q) => q.method === "GET" && q.path.includes("/resolve/"))
      .map((q) => q.path.replace(`/datasets/org/docs/resolve/${commit}/`, "")).sort();
    assert.deepEqual(fetched, [
      "README.md", // the card, which would name the splits
      "data/train-00000-of-00002.jsonl.gz",
      "data/train-00001-of-00002.jsonl.gz",
      "data/validation.jsonl",
    ]);
    // the run keeps the id, not the cache path
    assert.match(await Deno.readTextFile(join(dir, "run", "config.yaml")), /^dataset: org\/docs$/m);
    const n = hub.requests.length;
    const local = await resolveDataset("org/docs", { ...o, offline: true });
    assert.deepEqual(local, { path: join(cache, "datasets--org--docs", "snapshots", commit), config: null });
    const again = await cliProcess(args("again"), { ...env, HF_HUB_OFFLINE: "1" });
    assert.equal(again.code, 0, again.err);
    assert.equal(hub.requests.length, n, "offline: no request");
    // a message names the dataset by its id, not by its snapshot in the cache
    const bad = await cliProcess([
      ...args("bad"),
      "--dataset_train_split",
      "foo",
      "--dataset_revision",
      commit,
    ], {
      ...env,
      HF_HUB_OFFLINE: "1",
    });
    assertFails(
      bad,
      2,
      /Cannot read dataset org\/docs: dataset_train_split "foo" is not one of its splits \(train, validation\)/,
    );
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
  const { path: b } = await resolveDataset("org/multi", { ...o, config: "b" });
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
      /hub dataset org\/script has no data files fledge reads .*a dataset made by a loading script, or saved with save_to_disk \(\.arrow\), must be converted first/,
  });
  // a local path with dataset_config: refused, not ignored
  await assert.rejects(resolveDataset(cache, { ...o, config: "b" }), {
    message:
      /dataset config "b" names a config of a dataset card \(README\.md configs:\), and \S+ is a local path without one/,
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
      assert.match(
        e.message,
        /^Cannot find dataset org\/unseen: it is not a local path, and cannot reach .*; no snapshot of it is cached$/,
      );
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
      "--eval_strategy",
      "steps",
      "--eval_steps",
      "1",
    ], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^trained 1 DPO steps? in /);
    // the held-out rows are said aloud, as SFT says them (DPO had held them out silently)
    assert.match(r.err, /evaluation holds out a stable 10% of org\/pairs, which does not train/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a card's configs name the splits (ultrachat's train_sft), the test split evaluates, and stray files are no data", async () => {
  const chat = await resolveDataset("org/chat", o);
  assert.equal(chat.config, "default");
  assert.deepEqual(Object.keys(findSplitFiles(chat.path, { config: chat.config })), [
    "test_sft",
    "train_gen",
    "train_sft",
  ]);
  const base = getTrainingArgs({ dataset: chat.path, dataset_config: chat.config });
  // TRL's dataset_train_split picks train_sft; the default "train" is not there (it had been train_sft + train_gen)
  assert.throws(
    () => trainSplitFiles(base),
    /has no train split \(its splits: test_sft, train_gen, train_sft\); set dataset_train_split to one of them/,
  );
  const sft = splitFiles({ ...base, dataset_train_split: "train_sft", dataset_test_split: "test_sft" });
  assert.deepEqual(sft.train!.map((f) => f.split("/").pop()), [
    "train_sft-00000-of-00002.jsonl",
    "train_sft-00001-of-00002.jsonl",
  ]);
  assert.deepEqual([sft.eval_split, sft.validation!.length], ["test_sft", 1]);
  assert.throws(
    () => splitFiles({ ...base, dataset_test_split: "validation" }),
    /dataset_test_split "validation" is not one of its splits \(test_sft, train_gen, train_sft\); fix dataset_test_split/,
  );
  // another config of the card: only its files are fetched
  const n = hub.requests.length;
  const small = await resolveDataset("org/chat", { ...o, config: "small" });
  assert.equal(small.config, "small");
  assert.deepEqual(Object.keys(findSplitFiles(small.path, { config: "small" })), ["train"]);
  assert.ok(hub.requests.slice(n).every((q) => !q.path.includes("train_gen")));
  // run_clm's --dataset_config_name is the flag's other name
  const out = await Deno.makeTempDir({ prefix: "fledge-hubsmall-" });
  const run = await cliProcess([
    "train",
    ...Object.entries({
      model: "tiny",
      model_config:
        '{"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}',
      dataset: "org/chat",
      dataset_config_name: "small",
      output_dir: join(out, "run"),
      max_seq_length: "16",
      max_steps: "1",
      save_strategy: "no",
      backend: "cpu",
    }).flatMap(([k, v]) => [`--${k}`, v]),
  ], env);
  await Deno.remove(out, { recursive: true });
  assert.equal(run.code, 0, run.err);
  // data inspect reads a hub id as the runs do
  const seen = await cliProcess(["data", "inspect", "org/chat", "--dataset_config", "small", "--json"], env);
  assert.equal(seen.code, 0, seen.err);
  assert.equal(JSON.parse(seen.out).path, "org/chat", "the id, not its snapshot in the cache");
  assert.deepEqual(
    JSON.parse(seen.out).splits.map((x: { name: string; records: number }) => [x.name, x.records]),
    [
      ["train", 4],
    ],
  );
  // a config that takes one shard of two serves offline (the completeness check had refused it)
  assert.deepEqual(await resolveDataset("org/chat", { ...o, config: "small", offline: true }), small);
  const before = hub.requests.length;
  const bare = await resolveDataset("org/bare", o);
  assert.deepEqual(
    hub.requests.slice(before).filter((q) => q.method === "GET" && q.path.includes("/resolve/"))
      .map((q) => q.path.replace(/^.*\/resolve\/[0-9a-f]{40}\//, "")).sort(),
    ["README.md", "data/train.jsonl"],
  );
  assert.deepEqual(Object.keys(findSplitFiles(bare.path, { config: bare.config })), ["train"]);
  await assert.rejects(resolveDataset("org/chat", { ...o, config: "large" }), {
    message: /its card has no config "large"; its configs are default, small$/,
  });
  // HF calls a repo without configs' one config "default" (it had been refused as a config that is not there)
  assert.equal(
    (await resolveDataset("org/capy", { ...o, config: "default" })).path,
    (await resolveDataset("org/capy", o)).path,
  );
  // trl-lib/Capybara: data/ is read past a LICENSE.txt (it had been the only "split"), and test evaluates (TRL's default)
  const capy = await resolveDataset("org/capy", o);
  const cs = splitFiles(getTrainingArgs({ dataset: capy.path }));
  assert.deepEqual([cs.train!.length, cs.eval_split], [1, "test"]);
  // a repo of one file named for no split is its train split (HF reads yahma/alpaca-cleaned so)
  const alp = await resolveDataset("org/alpaca", o);
  assert.equal(splitFiles(getTrainingArgs({ dataset: alp.path })).train!.length, 1);
});

Deno.test("a cached config missing a shard is refused offline (a download cut short), not read as whole", async () => {
  const c2 = await Deno.makeTempDir({ prefix: "fledge-hubpart-" });
  try {
    const cut = startHubServer({
      datasets: { "org/chat": datasets["org/chat"] },
      cut: { file: "data/train_sft-00001-of-00002.jsonl", after: 10, times: 99 },
    });
    await assert.rejects(
      resolveDataset("org/chat", { ...o, endpoint: cut.url, cache_dir: c2, max_retries: 0 }),
    );
    await cut.close();
    await assert.rejects(resolveDataset("org/chat", { ...o, cache_dir: c2, offline: true }), {
      message:
        /the cache lacks 1 of the 2 shards of data\/train_sft of dataset org\/chat .*run once with network access/,
    });
  } finally {
    await Deno.remove(c2, { recursive: true });
  }
});

Deno.test("dataset_revision reads the commit a run began with after the branch moved; a local path refuses it", async () => {
  const first = hub.commitOf("org/pairs");
  const moved = hub.update("org/pairs", { "train.jsonl": lines(pairs.slice(0, 3)) }, "dataset");
  const now = await resolveDataset("org/pairs", o);
  assert.ok(now.path.endsWith(moved));
  const pinned = await resolveDataset("org/pairs", { ...o, revision: first });
  assert.ok(pinned.path.endsWith(first));
  assert.deepEqual([...Deno.readDirSync(pinned.path)].map((e) => e.name), ["train.jsonl.gz"]);
  const dir = await Deno.makeTempDir({ prefix: "fledge-hubrev-" });
  try {
    await Deno.writeTextFile(join(dir, "d.jsonl"), '{"text": "a b"}\n');
    const r = await cliProcess([
      "train",
      "--model",
      "tiny",
      "--dataset",
      join(dir, "d.jsonl"),
      "--dataset_revision",
      first,
      "--output_dir",
      join(dir, "run"),
      "--max_steps",
      "1",
      "--max_seq_length",
      "16",
    ], env);
    assertFails(
      r,
      2,
      /dataset_revision [0-9a-f]{40} is for a hub dataset, and \S+d\.jsonl is a local path; drop dataset_revision/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("offline and unreachable: a config not cached is named so, a stale cache is said aloud; data/en/train.jsonl is train", async () => {
  await resolveDataset("org/multi", { ...o, config: "b" });
  await assert.rejects(resolveDataset("org/multi", { ...o, config: "a", offline: true }), {
    message:
      /config "a" of hub dataset org\/multi is not in the cache \(cached: b\); run once with network access$/,
  });
  const closed = startHubServer({});
  const url = closed.url;
  await closed.close();
  const notes: string[] = [];
  const r = await resolveDataset("org/multi", {
    ...o,
    config: "b",
    endpoint: url,
    max_retries: 0,
    log: (l) => void notes.push(l),
  });
  assert.ok(r.path.endsWith("/b"));
  assert.match(
    notes.join("\n"),
    /^the hub could not be reached \(connection\); dataset org\/multi is read from the cache, commit [0-9a-f]{40}/,
  );
  const lang = await resolveDataset("org/lang", o);
  const s = splitFiles(getTrainingArgs({ dataset: lang.path }));
  assert.deepEqual(s.train!.map((f) => f.split("/").slice(-2).join("/")), [
    "en/train.jsonl",
    "fr/train.jsonl",
  ]);
});

Deno.test("hub dataset: cleanup", async () => {
  await hub.close();
  await Deno.remove(cache, { recursive: true });
});
