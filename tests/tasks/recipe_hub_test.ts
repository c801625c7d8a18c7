/**
 * The recipes' hub path end to end against a local mock hub (tests/_hub_server.ts): `cli.ts recipe`
 * as a subprocess with `HF_ENDPOINT` at the mock and every cache in a temporary folder trains a
 * tiny hub model (`--model test-org/tiny-llama`) on the hub datasets (cnn_dailymail, wmt14, sst2 in
 * their parquet layouts) on a tiny budget, with no Debian base model; then runs again offline from
 * the cache with the server gone; and with the server gone and empty caches fails in one line.
 */
import { join } from "node:path";
// deno-lint-ignore no-import-prefix
import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
import { assert } from "../_assert.ts";
import { assertFails, cliProcess, type CliRun } from "../cli/_cli.ts";
import { type MockFiles, readFolder, startHubServer } from "../_hub_server.ts";
import { createBackend } from "../../kernels/backend.ts";
import { presetConfig } from "../../models/config.ts";
import { saveModel } from "../../models/save.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { Transformer } from "../../models/transformer.ts";

const MODEL = "test-org/tiny-llama";

// ---------------------------------------------------------------- the datasets (real-looking text)

const pick = <T>(xs: readonly T[], i: number): T => xs[i % xs.length];

const CITIES = ["Atlanta", "Boston", "Denver", "Seattle", "Chicago", "Miami", "Dallas"];
const EVENTS = [
  ["a new bridge will open next month", "the project cost more than planned"],
  ["the city library will stay open longer", "volunteers helped to sort the books"],
  ["a storm closed several schools", "no one was hurt, police said"],
  ["the local team won the championship", "fans filled the streets until midnight"],
  ["a water main broke downtown", "repairs are expected to take two days"],
  ["the museum found a lost painting", "experts say it is worth millions"],
];
/** `abisee/cnn_dailymail` 3.0.0 rows: `{ article, highlights, id }`. */
const cnnRows = (from: number, n: number) =>
  Array.from({ length: n }, (_, k) => {
    const i = from + k, city = pick(CITIES, i), [what, more] = pick(EVENTS, i * 5 + 1);
    return {
      article: `${city} (CNN) -- Officials in ${city} said on Tuesday that ${what}. ` +
        `The mayor spoke to reporters in the morning. ${more[0].toUpperCase()}${more.slice(1)}. ` +
        `More details are expected later this week.`,
      highlights: `${city} officials say ${what} .\n${more[0].toUpperCase()}${more.slice(1)} .`,
      id: (0xa000 + i).toString(16).padStart(40, "0"),
    };
  });

const SUBJECTS = [
  ["The man", "Der Mann"],
  ["The woman", "Die Frau"],
  ["The child", "Das Kind"],
  ["My friend", "Mein Freund"],
  ["The teacher", "Der Lehrer"],
];
const VERBS = [["reads", "liest"], ["buys", "kauft"], ["sees", "sieht"], ["likes", "mag"]];
const OBJECTS = [
  ["a book", "ein Buch"],
  ["the newspaper", "die Zeitung"],
  ["a red apple", "einen roten Apfel"],
  ["the old house", "das alte Haus"],
  ["a small dog", "einen kleinen Hund"],
];
/** `wmt/wmt14` de-en rows: `{ translation: { de, en } }`. */
const wmtRows = (from: number, n: number) =>
  Array.from({ length: n }, (_, k) => {
    const i = from + k, [se, sd] = pick(SUBJECTS, i), [ve, vd] = pick(VERBS, i * 3 + 1);
    const [oe, od] = pick(OBJECTS, i * 7 + 2);
    return { de: `${sd} ${vd} ${od} am Morgen.`, en: `${se} ${ve} ${oe} in the morning.` };
  });

const GOOD = ["gorgeous", "witty", "moving", "charming", "brilliant", "warm"];
const BAD = ["dull", "tedious", "clumsy", "lifeless", "forgettable", "shrill"];
const TAILS = [
  "with a fine cast",
  "that runs too long",
  "about a family in crisis",
  "from a first-time director",
];
/** `nyu-mll/glue` sst2 rows: `[sentence, label]`, label 0 / 1 (the test split: -1, hidden). */
const sstRows = (from: number, n: number, hidden = false): [string, number][] =>
  Array.from({ length: n }, (_, k) => {
    const i = from + k, good = i % 2 === 0;
    const adj = pick(good ? GOOD : BAD, i >> 1);
    return [
      `a ${adj} , ${pick(good ? GOOD : BAD, (i >> 1) + 2)} film ${pick(TAILS, i)} `,
      hidden ? -1 : +good,
    ];
  });

const str = (name: string, data: string[]) => ({ name, data, type: "STRING" as const });
const parquet = (...a: Parameters<typeof parquetWriteBuffer>) => new Uint8Array(parquetWriteBuffer(...a));
const cnnFile = (rows: ReturnType<typeof cnnRows>) =>
  parquet({
    columnData: [
      str("article", rows.map((r) => r.article)),
      str("highlights", rows.map((r) => r.highlights)),
      str("id", rows.map((r) => r.id)),
    ],
  });
const wmtFile = (pairs: ReturnType<typeof wmtRows>) =>
  parquet({
    columnData: [{ name: "translation", data: pairs }],
    schema: [
      { name: "schema", num_children: 1 },
      { name: "translation", num_children: 2, repetition_type: "OPTIONAL" },
      { name: "de", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "en", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
    ],
  });
const sstFile = (rows: [string, number][]) =>
  parquet({
    columnData: [
      str("sentence", rows.map((r) => r[0])),
      { name: "label", data: BigInt64Array.from(rows.map((r) => BigInt(r[1]))), type: "INT64" },
      { name: "idx", data: Int32Array.from(rows.map((_, i) => i)), type: "INT32" },
    ],
  });

const DATASETS: Record<string, MockFiles> = {
  "abisee/cnn_dailymail": {
    "3.0.0/train-00000-of-00001.parquet": cnnFile(cnnRows(0, 30)),
    "3.0.0/validation-00000-of-00001.parquet": cnnFile(cnnRows(100, 8)),
    "3.0.0/test-00000-of-00001.parquet": cnnFile(cnnRows(200, 4)),
  },
  "wmt/wmt14": {
    "de-en/train-00000-of-00001.parquet": wmtFile(wmtRows(0, 40)),
    "de-en/validation-00000-of-00001.parquet": wmtFile(wmtRows(100, 8)),
    "de-en/test-00000-of-00001.parquet": wmtFile(wmtRows(200, 4)),
  },
  "nyu-mll/glue": {
    "sst2/train-00000-of-00001.parquet": sstFile(sstRows(0, 40)),
    "sst2/validation-00000-of-00001.parquet": sstFile(sstRows(100, 8)),
    "sst2/test-00000-of-00001.parquet": sstFile(sstRows(200, 6, true)),
  },
};

// ---------------------------------------------------------------- the model repo

/** A tiny llama (random weights) and a BPE tokenizer trained on the datasets' text, as hub files. */
async function tinyModelRepo(): Promise<MockFiles> {
  const texts = [
    ...cnnRows(0, 60).flatMap((r) => [r.article, r.highlights]),
    ...wmtRows(0, 100).flatMap((r) => [r.en, r.de]),
    ...sstRows(0, 60).map((r) => r[0]),
  ];
  const tok = await trainBpeTokenizer(texts, { vocab_size: 320 });
  const dir = await Deno.makeTempDir({ prefix: "fledge-recipe-hub-model-" });
  try {
    const be = await createBackend("cpu");
    const model = Transformer.init(
      presetConfig("tiny", { vocab_size: 320, max_position_embeddings: 256, num_hidden_layers: 1 }),
      be,
    );
    await saveModel(model, dir);
    model.dispose();
    await tok.save(dir);
    return await readFolder(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const REPO = await tinyModelRepo();

// ---------------------------------------------------------------- running the recipes

/** Hub and fledge caches shared by the tests of this file (the offline run reads what the others cached). */
const root = await Deno.makeTempDir({ prefix: "fledge-recipe-hub-" });
const cacheEnv = {
  HF_HOME: join(root, "hf-home"),
  HF_HUB_CACHE: join(root, "hf-hub"),
  FLEDGE_CACHE_DIR: join(root, "fledge"),
};

/** `cli.ts recipe <name> --model MODEL --dataset <dataset>` on a tiny budget, into `out`. */
async function recipe(
  name: string,
  dataset: string,
  out: string,
  env: Record<string, string | undefined>,
  extra: string[] = [],
): Promise<CliRun> {
  // deno-fmt-ignore
  return await cliProcess([
    "recipe", name, "--model", MODEL, "--dataset", dataset,
    "--max_train_samples", "16", "--max_eval_samples", "4", "--max_steps", "2",
    "--per_device_train_batch_size", "4", "--max_seq_length", "128", "--max_source_tokens", "40",
    ...(name === "sst2" ? [] : ["--max_new_tokens", "4"]), "--output_dir", out, ...extra,
  ], { HF_TOKEN: undefined, HF_HUB_OFFLINE: undefined, HF_HUB_DISABLE_PROGRESS_BARS: "1", ...env });
}

/** Assert a finished run: its folder, `n` evaluated examples, the task's metric, no Debian base model. */
async function assertRun(
  r: CliRun,
  out: string,
  head: string,
  dataset: RegExp,
): Promise<Record<string, unknown>> {
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.trim(), out, "the recipe ends by printing its run folder");
  assert.doesNotMatch(r.err, /base model:/, "the given --model is used, nothing is pre-trained");
  assert.match(r.err, dataset);
  for (const f of ["recipe.yaml", "predictions.jsonl", "metrics.json", "report.md"]) {
    await Deno.stat(join(out, f));
  }
  const metrics = JSON.parse(await Deno.readTextFile(join(out, "metrics.json")));
  assert.equal(metrics.n, 4);
  assert.ok(typeof metrics[head] === "number", JSON.stringify(metrics));
  assert.ok(
    String(metrics.base_model).startsWith(join(cacheEnv.HF_HUB_CACHE, "models--test-org--tiny-llama")),
    metrics.base_model,
  );
  const preds = (await Deno.readTextFile(join(out, "predictions.jsonl"))).trim().split("\n");
  assert.equal(preds.length, 4);
  assert.match(await Deno.readTextFile(join(out, "report.md")), new RegExp(head));
  return metrics;
}

/** A local port nothing listens on (a stopped hub). */
function deadEndpoint(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return `http://127.0.0.1:${port}`;
}

async function withHub(fn: (url: string) => Promise<void>): Promise<void> {
  const hub = startHubServer({ models: { [MODEL]: REPO }, datasets: DATASETS });
  try {
    await fn(hub.url);
  } finally {
    await hub.close();
  }
}

Deno.test("recipe summarization trains a hub model on cnn_dailymail from the hub, with LoRA", async () => {
  await withHub(async (url) => {
    const out = join(root, "summarization");
    const r = await recipe("summarization", "cnn_dailymail", out, { ...cacheEnv, HF_ENDPOINT: url }, [
      "--lora",
      '{"r": 4}',
    ]);
    const metrics = await assertRun(r, out, "rougeL", /hub dataset abisee\/cnn_dailymail 3\.0\.0/);
    const adapter = JSON.parse(await Deno.readTextFile(join(out, "adapter", "adapter_config.json")));
    assert.equal(adapter.r, 4);
    assert.equal(adapter.base_model_name_or_path, "test-org/tiny-llama", "PEFT finds the base by this id");
    // the saved run (base model in the hub cache + adapter), evaluated again, gives the same numbers
    const e = await cliProcess(["eval", "--model", out, "--json"], { ...cacheEnv, HF_HUB_OFFLINE: "1" });
    assert.equal(e.code, 0, e.err);
    const { baselines: _b, wall_seconds: _w, base_model: _m, ...reported } = metrics;
    assert.deepEqual(JSON.parse(e.out), reported);
    // ... and on the dataset's test split (the 4 rows the mock serves there), as eval:cnn --split test
    const t = await cliProcess(["eval", "--model", out, "--split", "test", "--json"], {
      ...cacheEnv,
      HF_ENDPOINT: url,
    });
    assert.equal(t.code, 0, t.err);
    assert.equal(JSON.parse(t.out).n, 4);
  });
});

Deno.test("recipe translation trains a hub model on wmt14 from the hub", async () => {
  await withHub(async (url) => {
    const out = join(root, "translation");
    const r = await recipe("translation", "wmt14", out, { ...cacheEnv, HF_ENDPOINT: url });
    const m = await assertRun(r, out, "bleu", /hub dataset wmt\/wmt14 de-en \(en -> de\)/);
    assert.ok(typeof m.chrf === "number");
  });
});

Deno.test("recipe sst2 trains a hub model on glue sst2 from the hub", async () => {
  await withHub(async (url) => {
    const out = join(root, "sst2");
    const r = await recipe("sst2", "sst2", out, { ...cacheEnv, HF_ENDPOINT: url });
    const m = await assertRun(r, out, "accuracy", /hub dataset nyu-mll\/glue sst2.*2 labels/);
    assert.ok(typeof m.macro_f1 === "number");
    const preds = (await Deno.readTextFile(join(out, "predictions.jsonl"))).trim().split("\n");
    for (const p of preds.map((l) => JSON.parse(l))) {
      assert.ok(["negative", "positive"].includes(p.prediction), JSON.stringify(p));
      assert.ok(["negative", "positive"].includes(p.reference), JSON.stringify(p));
    }
  });
});

Deno.test("recipe sst2 runs again with HF_HUB_OFFLINE=1 and the hub gone, from the cache", async () => {
  // The caches the test above filled; nothing answers at HF_ENDPOINT.
  const out = join(root, "sst2-offline");
  const r = await recipe("sst2", "sst2", out, {
    ...cacheEnv,
    HF_ENDPOINT: deadEndpoint(),
    HF_HUB_OFFLINE: "1",
  });
  await assertRun(r, out, "accuracy", /hub dataset nyu-mll\/glue sst2/);
});

/** Empty caches under `root/<name>` and a hub that does not answer. */
const unreachable = (name: string) => ({
  HF_HOME: join(root, name, "hf-home"),
  HF_HUB_CACHE: join(root, name, "hf-hub"),
  FLEDGE_CACHE_DIR: join(root, name, "fledge"),
  HF_ENDPOINT: deadEndpoint(),
  HF_HUB_DISABLE_PROGRESS_BARS: undefined,
});

Deno.test("recipe with the hub unreachable and empty caches fails in one line naming the dataset", async () => {
  const env = unreachable("no-hub-data");
  const out = join(root, "no-hub-data", "run");
  const r = await recipe("sst2", "sst2", out, env);
  assertFails(
    r,
    1,
    /nyu-mll\/glue.*the hub could not be reached \(fetch failed: .*Connection refused.*Debian data offline/,
  );
  assert.ok(r.err.includes(`HF_ENDPOINT (now ${env.HF_ENDPOINT})`), r.err);
  await assert.rejects(Deno.stat(join(out, "metrics.json")));
});

Deno.test("recipe with the hub unreachable and empty caches fails in one line naming the model", async () => {
  // The Debian data loads offline (one status line); the model download then fails.
  const env = unreachable("no-hub-model");
  const out = join(root, "no-hub-model", "run");
  const r = await recipe("sst2", "debian", out, env);
  assert.equal(r.code, 1, r.err);
  const lines = r.err.trimEnd().split("\n");
  assert.match(lines[0], /^fledge: sst2: Debian classification-binary/);
  assert.equal(lines.length, 2, r.err);
  assert.match(lines[1], /^fledge: Cannot reach the Hugging Face hub for model test-org\/tiny-llama\b/);
  assert.ok(lines[1].includes(`HF_ENDPOINT (now ${env.HF_ENDPOINT})`), r.err);
  assert.doesNotMatch(r.err, /base model:/);
  await assert.rejects(Deno.stat(join(out, "metrics.json")));
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(root, { recursive: true });
  } catch { /* already gone */ }
});
