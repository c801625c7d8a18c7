/**
 * `cli eval` on recipes' saved runs and on model folders (tiny budgets, as recipe_test.ts): a data
 * file or folder read as the run read its data, `--split`, a QLoRA run's 4-bit base, and beam
 * settings under `--num_beams 1`.
 */
import { join, relative } from "node:path";
import { assert, ROOT, SHARED } from "../_assert.ts";
import { assertFails, cliProcess } from "../cli/_cli.ts";
import { tinyRecipe } from "./_recipe.ts";

const cache = await Deno.makeTempDir({ prefix: "fledge-recipe-eval-cache-" });

/** A recipe on a tiny budget into `out`, base models cached for this file. */
const recipe = (name: string, out: string, extra: string[] = []) => tinyRecipe(name, out, cache, extra);

Deno.test("cli eval scores a model folder on a data file with --task", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-eval-" });
  try {
    const out = join(root, "run");
    // --label_names as a comma list, as cli eval takes it; 8-way Debian texts as more "other"
    // examples, then the classes balanced (extra_train, balance_classes)
    const r = await recipe("sst2", out, [
      "--label_names",
      "other, games",
      "--extra_train",
      '{"debian_task": "classification", "label": "other", "max_samples": 10}',
      "--balance_classes",
      "true",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.err,
      /training on 34 examples: 10 other examples from Debian classification .* train added/,
    );
    const bal = r.err.match(
      /balance_classes: (\d+) copies of smaller classes' examples \((\w+) (\d+), (\w+) (\d+)\)/,
    )!;
    assert.ok(bal, r.err);
    assert.deepEqual([[bal[2], bal[4]].sort(), bal[3], 34 + Number(bal[1])], [
      ["games", "other"],
      bal[5],
      2 * Number(bal[3]),
    ]);
    const report = await Deno.readTextFile(join(out, "report.md"));
    assert.match(report, new RegExp(`train examples trained on \\| ${2 * Number(bal[3])}`));
    assert.match(
      await Deno.readTextFile(join(out, "recipe.yaml")),
      /^label_names:\n {2}- other\n {2}- games$/m,
    );
    // the Debian data has no split but train and validation: --split says so, and what to give
    assertFails(
      await cliProcess(["eval", "--model", out, "--split", "test"]),
      2,
      /eval: --split test names a split of the run's dataset, and the Debian data has train and validation files only; give the examples as --data FILE/,
    );
    // its validation split is what it scores anyway (it had been refused too)
    const val = await cliProcess(["eval", "--model", out, "--split", "validation", "--json"]);
    assert.equal(val.code, 0, val.err);
    assert.deepEqual(
      JSON.parse(val.out),
      JSON.parse((await cliProcess(["eval", "--model", out, "--json"])).out),
    );
    const file = join(root, "rows.jsonl");
    await Deno.writeTextFile(
      file,
      [
        '{"text": "A puzzle game for kids.", "label": 1}',
        '{"text": "A C library for parsing XML.", "label": 0}',
      ].join("\n") +
        "\n",
    );
    const e = await cliProcess([
      "eval",
      "--task",
      "classification",
      "--model",
      join(out, "model"),
      "--data",
      file,
      "--label_names",
      "other, games", // trimmed: " games" would score a space token first
      "--json",
    ]);
    assert.equal(e.code, 0, e.err);
    const m = JSON.parse(e.out);
    assert.equal(m.n, 2);
    assert.ok([0, 50, 100].includes(m.accuracy), e.out);
    // a model of 128 positions scores a 300-word text: a model folder's 160 source tokens are cut to
    // fit it, unless --max_source_tokens says otherwise
    const small = join(root, "small");
    await Deno.mkdir(small);
    for await (const f of Deno.readDir(join(out, "model"))) {
      await Deno.copyFile(join(out, "model", f.name), join(small, f.name));
    }
    const cfg = JSON.parse(await Deno.readTextFile(join(small, "config.json")));
    await Deno.writeTextFile(
      join(small, "config.json"),
      JSON.stringify({ ...cfg, max_position_embeddings: 128 }),
    );
    const long = join(root, "long.jsonl");
    await Deno.writeTextFile(long, JSON.stringify({ text: "a game of cards ".repeat(75), label: 1 }) + "\n");
    const flags = ["--task", "classification", "--label_names", "other,games", "--data", long, "--json"];
    const fit = await cliProcess(["eval", "--model", small, ...flags]);
    assert.equal(fit.code, 0, fit.err);
    assert.equal(JSON.parse(fit.out).n, 1);
    assert.match(
      fit.err,
      /eval: sources cut to \d+ tokens \(not 160\) so that the prompts and the labels fit the model's 128 positions/,
    );
    const given = await cliProcess(["eval", "--model", small, ...flags, "--max_source_tokens", "160"]);
    assert.equal(given.code, 2, given.err);
    assert.match(given.err, /exceeds max_position_embeddings 128/);
    // the model folder's generation_config.json is read as generate reads it: every id an eos stops
    // each answer after one token, as --max_new_tokens 1 does; a key generate refuses is refused
    const docs = join(root, "docs.jsonl");
    await Deno.writeTextFile(
      docs,
      JSON.stringify({ document: "A tool to count words in files.", summary: "word counter" }) + "\n",
    );
    const gen = ["--task", "summarization", "--data", docs, "--json", "--predictions"];
    const before = await cliProcess(["eval", "--model", small, ...gen, join(root, "p0.jsonl")]);
    assert.equal(before.code, 0, before.err);
    const once = await cliProcess([
      "eval",
      "--model",
      small,
      ...gen,
      join(root, "p1.jsonl"),
      "--max_new_tokens",
      "1",
    ]);
    assert.equal(once.code, 0, once.err);
    const gcFile = join(small, "generation_config.json");
    const gc = JSON.parse(await Deno.readTextFile(gcFile));
    await Deno.writeTextFile(
      gcFile,
      JSON.stringify({ ...gc, eos_token_id: Array.from({ length: cfg.vocab_size }, (_, i) => i) }),
    );
    const stops = await cliProcess(["eval", "--model", small, ...gen, join(root, "p2.jsonl")]);
    assert.equal(stops.code, 0, stops.err);
    const preds = async (f: string) =>
      (await Deno.readTextFile(join(root, f))).trim().split("\n").map((l) => JSON.parse(l).prediction);
    assert.deepEqual(await preds("p2.jsonl"), await preds("p1.jsonl"));
    assert.notDeepEqual(
      await preds("p0.jsonl"),
      await preds("p1.jsonl"),
      "a longer answer without the eos list",
    );
    await Deno.writeTextFile(gcFile, JSON.stringify({ ...gc, num_beam_groups: 4 }));
    const refused = await cliProcess(["eval", "--model", small, ...gen, join(root, "p3.jsonl")]);
    assert.equal(refused.code, 2, refused.err);
    assert.match(refused.err, /generation_config\.json: 1 problem:.*num_beam_groups: 4 is not supported/s);
    await Deno.writeTextFile(gcFile, JSON.stringify(gc));
    // a folder without a validation split, an empty file: said as eval reads them (it spoke of a "train" split)
    await Deno.mkdir(join(root, "nosplit"));
    await Deno.writeTextFile(join(root, "empty.jsonl"), "");
    for (
      const [data, re] of [
        [join(root, "nosplit"), /eval: --data .*nosplit holds no validation split file/],
        [join(root, "empty.jsonl"), /eval: --data .*empty\.jsonl is empty; give a file with records/],
      ] as const
    ) {
      const r = await cliProcess(["eval", "--model", small, "--task", "summarization", "--data", data]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, re);
    }
    // a run's recipe.yaml is checked as a recipe config is: a hand-edited value is one line naming it
    const saved = await Deno.readTextFile(join(out, "recipe.yaml"));
    await Deno.writeTextFile(
      join(out, "recipe.yaml"),
      saved.replace(/^max_eval_samples: .*$/m, "max_eval_samples: -1"),
    );
    assertFails(
      await cliProcess(["eval", "--model", out, "--json"]),
      2,
      /run\/recipe\.yaml\): max_eval_samples must be a positive integer or null/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli eval reads --data as its run read its data: direction, a folder's validation split or --split, absolute paths", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-data-" });
  try {
    // a local folder of pairs, given relative to the working folder, read German -> English
    const pairs = join(root, "pairs");
    await Deno.mkdir(pairs);
    for (const [split, n] of [["train", 24], ["validation", 6]] as const) {
      const rows = (await Deno.readTextFile(join(SHARED, `datasets/debian/translation/${split}.jsonl`)))
        .split("\n");
      await Deno.writeTextFile(join(pairs, `${split}.jsonl`), rows.slice(0, n).join("\n") + "\n");
    }
    const out = join(root, "run");
    const r = await recipe("translation", out, [
      "--dataset",
      relative(ROOT, pairs),
      "--translation_direction",
      "de-en",
      "--seed",
      "7",
    ]);
    assert.equal(r.code, 0, r.err);
    const saved = await Deno.readTextFile(join(out, "recipe.yaml"));
    assert.match(saved, new RegExp(`^dataset: ${pairs}$`, "m"), "the path made absolute");
    assert.match(saved, /^seed: 7$/m);
    // the report is titled by its direction, and compares with no README target (that one is en -> de)
    const report = await Deno.readTextFile(join(out, "report.md"));
    assert.match(report, /^# Translation: German -> English/m);
    assert.doesNotMatch(report, /README/);
    const { baselines: _b, wall_seconds: _w, base_model: _m, ...reported } = JSON.parse(
      await Deno.readTextFile(join(out, "metrics.json")),
    );
    for (const data of [[], ["--data", pairs], ["--data", join(pairs, "validation.jsonl")]]) {
      const e = await cliProcess(["eval", "--model", out, ...data, "--json"], { FLEDGE_CACHE_DIR: cache });
      assert.equal(e.code, 0, e.err);
      assert.deepEqual(JSON.parse(e.out), reported, data.join(" ") || "the run's data");
    }
    // --split scores another split of the folder, as its file alone scores
    const val = (await Deno.readTextFile(join(pairs, "validation.jsonl"))).trim().split("\n");
    await Deno.writeTextFile(join(pairs, "test.jsonl"), val.slice(3).join("\n") + "\n");
    const scored = [];
    for (
      const data of [["--data", pairs, "--split", "test"], ["--data", join(pairs, "test.jsonl")], [
        "--split",
        "test",
      ]]
    ) {
      const e = await cliProcess(["eval", "--model", out, ...data, "--json"]);
      assert.equal(e.code, 0, e.err);
      scored.push(JSON.parse(e.out));
    }
    assert.equal(scored[0].n, 3);
    assert.deepEqual(scored[0], scored[1]);
    assert.deepEqual(scored[0], scored[2], "the run's own folder, its test split");
    // a folder of the test split alone (its columns read from it: "could not find split train" had)
    const only = join(root, "test-only");
    await Deno.mkdir(only);
    await Deno.copyFile(join(pairs, "test.jsonl"), join(only, "test.jsonl"));
    const alone = await cliProcess(["eval", "--model", out, "--data", only, "--split", "test", "--json"]);
    assert.equal(alone.code, 0, alone.err);
    assert.deepEqual(JSON.parse(alone.out), scored[0]);
    for (
      const [args, re] of [
        [["--data", pairs, "--split", "dev"], /holds no dev split file .*; its splits: [a-z, ]*test/],
        [
          ["--data", join(pairs, "test.jsonl"), "--split", "test"],
          /--split test names a split of a folder, and --data .*test\.jsonl is one file/,
        ],
        [
          ["--split", "dev"],
          /could not find split "dev" in \S+pairs: the splits are test, train, validation/,
        ],
      ] as const
    ) assertFails(await cliProcess(["eval", "--model", out, ...args]), 2, re);
    // a run on a file with an eval_file has no other split to score: said so
    const fileRun = join(root, "file-run");
    const fr = await recipe("translation", fileRun, [
      "--dataset",
      join(pairs, "train.jsonl"),
      "--eval_file",
      join(pairs, "validation.jsonl"),
    ]);
    assert.equal(fr.code, 0, fr.err);
    assertFails(
      await cliProcess(["eval", "--model", fileRun, "--split", "test"]),
      2,
      /--split test names a split of the run's dataset, and the run scored its eval_file \S+validation\.jsonl; give the examples as --data FILE/,
    );
    // a dataset name is not a file
    assertFails(
      await cliProcess(["eval", "--model", out, "--data", "debian"]),
      2,
      /eval: --data debian does not exist; give a \.jsonl, \.csv or \.parquet file, or a folder/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli eval of a QLoRA run scores on the 4-bit base the run trained, as the run scored", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-qlora-" });
  try {
    const out = join(root, "run");
    const r = await recipe("sst2", out, ["--quantization", '{"load_in_4bit": true}', "--lora", '{"r": 4}']);
    assert.equal(r.code, 0, r.err);
    const e = await cliProcess(["eval", "--model", out, "--predictions", join(root, "again.jsonl")]);
    assert.equal(e.code, 0, e.err);
    const scores = async (f: string) =>
      (await Deno.readTextFile(f)).trim().split("\n").map((l) => JSON.parse(l).scores);
    // it loaded the base in f32 under the adapter: other scores, without a word
    assert.deepEqual(await scores(join(root, "again.jsonl")), await scores(join(out, "predictions.jsonl")));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli eval --num_beams 1 on a beam-search run decodes greedily, and says the run's beam settings do not apply", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-beams-" });
  try {
    const out = join(root, "run");
    const r = await recipe("summarization", out, ["--num_beams", "2", "--length_penalty", "2"]);
    assert.equal(r.code, 0, r.err);
    const e = await cliProcess(["eval", "--model", out, "--num_beams", "1", "--json"], {
      FLEDGE_CACHE_DIR: cache,
    });
    assert.equal(e.code, 0, e.err);
    assert.match(e.err, /eval: --num_beams 1 decodes greedily, without the run's length_penalty 2/);
    assert.equal(JSON.parse(e.out).n, 6);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(cache, { recursive: true });
  } catch { /* already gone */ }
});
