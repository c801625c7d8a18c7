/**
 * The recipes end to end on a tiny budget (a tiny Debian base model in a temporary cache, a few
 * steps, a few validation examples): each writes its run folder with metrics next to the
 * baselines; `cli eval` on the saved run reproduces the metrics; one-line errors before training.
 */
import { join, relative } from "node:path";
import { assert, SHARED } from "../_assert.ts";
import { assertFails, cliProcess } from "../cli/_cli.ts";
import { tinyRecipe } from "./_recipe.ts";
import { evalOptions, freeRunDir, resolveRecipe, sftDataset } from "../../tasks/_recipe.ts";
import { loadTokenizer, type Tokenizer } from "../../models/tokenizer/tokenizer.ts";

const cache = await Deno.makeTempDir({ prefix: "fledge-recipe-cache-" });

/** A recipe on a tiny budget into `out`, base models cached for this file. */
const recipe = (name: string, out: string, extra: string[] = []) => tinyRecipe(name, out, cache, extra);

for (
  const [name, head, baseline] of [
    ["summarization", "rougeL", "lead-6"],
    ["translation", "bleu", "identity"],
    ["sst2", "accuracy", null],
    ["debian-sections", "accuracy", null],
  ] as const
) {
  Deno.test(`recipe ${name} writes its run folder and cli eval reproduces its metrics`, async () => {
    const root = await Deno.makeTempDir({ prefix: `fledge-recipe-${name}-` });
    const out = join(root, "run");
    try {
      const r = await recipe(name, out);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out.trim(), out, "the recipe ends by printing its run folder");
      assert.match(r.err, /fledge: base model: /);
      for (
        const f of [
          "recipe.yaml",
          "predictions.jsonl",
          "metrics.json",
          "report.md",
          "metrics.svg",
          "model/config.json",
        ]
      ) {
        await Deno.stat(join(out, f));
      }
      // the saved model names its tokenizer's special ids (not the tiny preset's), for generate and exports
      const tok = await loadTokenizer(join(out, "model"));
      for (const f of ["config.json", "generation_config.json"]) {
        const c = JSON.parse(await Deno.readTextFile(join(out, "model", f)));
        assert.deepEqual([c.bos_token_id, c.eos_token_id, c.pad_token_id], [
          tok.bos_token_id,
          tok.eos_token_id,
          tok.pad_token_id,
        ], f);
      }
      const metrics = JSON.parse(await Deno.readTextFile(join(out, "metrics.json")));
      assert.equal(metrics.n, 6);
      assert.ok(typeof metrics[head] === "number", JSON.stringify(metrics));
      const bname = baseline ?? Object.keys(metrics.baselines)[0];
      assert.ok(typeof metrics.baselines[bname][head] === "number", JSON.stringify(metrics.baselines));
      if (name === "sst2") {
        assert.match(Object.keys(metrics.baselines)[0], /^majority \((other|games)\)$/);
        // generation flags would be ignored by label scoring: refused
        const g = await cliProcess(["eval", "--model", out, "--num_beams", "4", "--json"], {
          FLEDGE_CACHE_DIR: cache,
        });
        assert.equal(g.code, 2, g.err);
        assert.match(g.err, /^fledge: eval: --num_beams is for generation \(summarization, translation\);/m);
        // a file in the Debian format (labels 0 / 1) is scored with the run's label names, which
        // recipe.yaml saves; a run saved without them reads them from its data again
        const data = join(root, "six.jsonl");
        const ids = new Set(
          (await Deno.readTextFile(join(out, "predictions.jsonl"))).trim().split("\n").map((l) =>
            JSON.parse(l).id
          ),
        );
        const rows =
          (await Deno.readTextFile(join(SHARED, "datasets/debian/classification-binary/validation.jsonl")))
            .split("\n").filter((l) => l && ids.has(JSON.parse(l).id));
        assert.equal(rows.length, 6);
        await Deno.writeTextFile(data, rows.join("\n") + "\n");
        const saved = join(out, "recipe.yaml");
        assert.match(await Deno.readTextFile(saved), /^label_names:\n {2}- other\n {2}- games$/m);
        const { baselines: _b, wall_seconds: _w, base_model: _m, ...reported } = metrics;
        const onFile = await cliProcess(["eval", "--model", out, "--data", data, "--json"], {});
        assert.equal(onFile.code, 0, onFile.err);
        assert.deepEqual(JSON.parse(onFile.out), reported, "the validation records as --data");
        await Deno.writeTextFile(
          saved,
          (await Deno.readTextFile(saved)).replace(/^label_names:\n( {2}- .*\n)+/m, "label_names: null\n"),
        );
        const older = await cliProcess(["eval", "--model", out, "--data", data, "--json"], {
          FLEDGE_CACHE_DIR: cache,
        });
        assert.equal(older.code, 0, older.err);
        assert.deepEqual(JSON.parse(older.out), reported, "a run saved without label_names");
        // --max_samples reaches past the run's max_eval_samples (6)
        const more = await cliProcess(["eval", "--model", out, "--max_samples", "8", "--json"], {
          FLEDGE_CACHE_DIR: cache,
        });
        assert.equal(more.code, 0, more.err);
        assert.equal(JSON.parse(more.out).n, 8);
      }
      // config.yaml names the cap the run trained under, as recipe.yaml does (it had said null)
      assert.match(await Deno.readTextFile(join(out, "config.yaml")), /^max_train_samples: 24$/m);
      if (name === "summarization") {
        // offline (no --model): trained on extractive lead-oracle targets, as recipe.yaml records
        assert.match(r.err, /training on lead-oracle targets \(the first k words, median k \d+\)/);
        assert.match(await Deno.readTextFile(join(out, "recipe.yaml")), /^train_targets: lead_oracle$/m);
      }
      if (name === "translation") {
        // offline: distilled from the word-for-word dictionary translation of each train source
        assert.match(
          r.err,
          /training on word-for-word targets \(a \d+-word dictionary learned from the train pairs\)/,
        );
        assert.match(await Deno.readTextFile(join(out, "recipe.yaml")), /^train_targets: word_dictionary$/m);
        // one pair per paragraph (line), and each line translated on its own at evaluation, which
        // recipe.yaml records for cli eval
        assert.match(r.err, /training on \d+ line pairs from 24 pairs \(split_lines/);
        assert.match(await Deno.readTextFile(join(out, "recipe.yaml")), /^split_lines: true$/m);
        // cli eval --split_lines on a model folder and a data file; refused for another task
        const data = join(SHARED, "datasets/debian/translation/validation.jsonl");
        const args = ["eval", "--model", join(out, "model"), "--data", data, "--max_samples", "3", "--json"];
        const lines = await cliProcess([...args, "--task", "translation", "--split_lines"], {});
        assert.equal(lines.code, 0, lines.err);
        assert.equal(JSON.parse(lines.out).n, 3);
        const bad = await cliProcess([...args, "--task", "summarization", "--split_lines"], {});
        assert.notEqual(bad.code, 0);
        assert.match(bad.err, /eval: --split_lines is for translation only, not summarization/);
        // --no_split_lines turns the run's split_lines off, and an eval job's split_lines: false too
        const run = ["eval", "--model", out, "--max_samples", "3", "--json"];
        const file = (name: string) => join(root, `${name}.jsonl`);
        const predicted = async (name: string) =>
          (await Deno.readTextFile(file(name))).trim().split("\n").map((l) => JSON.parse(l).prediction);
        const [split, whole] = await Promise.all([
          cliProcess([...run, "--predictions", file("split")], { FLEDGE_CACHE_DIR: cache }),
          cliProcess([...run, "--no_split_lines", "--predictions", file("whole")], {
            FLEDGE_CACHE_DIR: cache,
          }),
        ]);
        assert.equal(split.code, 0, split.err);
        assert.equal(whole.code, 0, whole.err);
        assert.notDeepEqual(
          await predicted("whole"),
          await predicted("split"),
          "whole sources translate otherwise",
        );
        const url = `kv:${join(root, "queue.sqlite")}`;
        await Deno.writeTextFile(
          join(root, "eval.yaml"),
          `kind: eval\nconfig:\n  model: ${out}\n  max_samples: 3\n  split_lines: false\n  predictions: ${
            file("queue")
          }\n`,
        );
        const sub = await cliProcess(["queue", "submit", "--queue", url, "-c", join(root, "eval.yaml")]);
        assert.equal(sub.code, 0, sub.err);
        const w = await cliProcess(["queue", "work", "--queue", url, "--once"], { FLEDGE_CACHE_DIR: cache });
        assert.equal(w.code, 0, w.err);
        const jobs = JSON.parse((await cliProcess(["queue", "results", "--queue", url, "--json"])).out);
        assert.deepEqual(
          jobs[0].result,
          JSON.parse(whole.out),
          "the queue's eval job with split_lines: false",
        );
        assert.deepEqual(await predicted("queue"), await predicted("whole"));
        // --predictions never overwrites a file
        assertFails(
          await cliProcess([...run, "--predictions", file("whole")]),
          2,
          /eval: --predictions .*whole\.jsonl exists; give a new file \(it is never overwritten\)/,
        );
        // the column mapping needs --data; --model and --recipe exclude each other
        assertFails(
          await cliProcess(["eval", "--model", out, "--source_column", "x"]),
          2,
          /eval: --source_column maps the columns of --data; add --data FILE/,
        );
        assertFails(
          await cliProcess(["eval", "--model", out, "--recipe", "translation"]),
          2,
          /eval: give one of --model DIR .* or --recipe NAME/,
        );
        // fairseq's length limit is saved for cli eval, whose flags reach the generation loop
        assert.match(await Deno.readTextFile(join(out, "recipe.yaml")), /^max_len_a: 1.5\nmax_len_b: 20$/m);
        const noA = await cliProcess([...args, "--task", "translation", "--max_len_b", "2"], {});
        assert.notEqual(noA.code, 0);
        assert.match(noA.err, /max_len_b 2 needs max_len_a/);
      }
      const preds = (await Deno.readTextFile(join(out, "predictions.jsonl"))).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      assert.equal(preds.length, 6);
      const report = await Deno.readTextFile(join(out, "report.md"));
      assert.match(report, new RegExp(head));
      // five examples shown of the six scored (it said "5 of 5"), and no README target: that one is on
      // the whole validation split, not on six of its examples
      assert.match(report, /^## Examples \(5 of 6\)$/m);
      assert.doesNotMatch(report, /README/);
      // the saved run, evaluated again, gives the same numbers
      const e = await cliProcess(["eval", "--model", out, "--json"], { FLEDGE_CACHE_DIR: cache });
      assert.equal(e.code, 0, e.err);
      assert.match(
        e.err,
        /^eval \w+: (\d+) \/ \1 (examples|lines) \(100%\), .* in /m,
        "a progress line (it had run silent)",
      );
      const again = JSON.parse(e.out);
      const { baselines: _b, wall_seconds: _w, base_model: _m, ...reported } = metrics;
      assert.deepEqual(again, reported);
      // and exported to ONNX, run by onnxruntime, it gives them too
      const o = await cliProcess(["eval", "--model", out, "--json", "--backend", "onnx"], {
        FLEDGE_CACHE_DIR: cache,
      });
      assert.equal(o.code, 0, o.err);
      assert.deepEqual(JSON.parse(o.out), reported, "eval --backend onnx");
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}

Deno.test("train_targets auto: teacher targets for offline summarization and translation, the references otherwise", () => {
  const t = (flat: Record<string, unknown>) =>
    resolveRecipe({ name: "x", train_targets: "auto", ...flat }).settings.train_targets;
  assert.equal(t({ task: "summarization" }), "lead_oracle");
  assert.equal(t({ task: "summarization", model: "Qwen/Qwen2.5-0.5B" }), "reference");
  assert.equal(t({ task: "translation" }), "word_dictionary");
  assert.equal(t({ task: "translation", model: "Qwen/Qwen2.5-0.5B" }), "reference");
  assert.equal(t({ task: "classification" }), "reference");
  assert.equal(t({ task: "summarization", train_targets: "reference" }), "reference");
  assert.throws(
    () => t({ task: "summarization", train_targets: "oracle" }),
    /train_targets must be reference, lead_oracle, word_dictionary or auto/,
  );
  assert.throws(
    () => t({ task: "summarization", train_targets: "word_dictionary" }),
    /train_targets word_dictionary is for translation only; use reference for summarization/,
  );
});

Deno.test("split_lines and word_dictionary are checked: translation only, known fields, valid values", () => {
  const r = (flat: Record<string, unknown>) =>
    resolveRecipe({ name: "x", task: "translation", train_targets: "word_dictionary", ...flat }).settings;
  assert.equal(r({ split_lines: true }).split_lines, true);
  assert.deepEqual(r({ word_dictionary: { one_to_one: true, max_words: 50 } }).word_dictionary, {
    one_to_one: true,
    max_words: 50,
  });
  assert.throws(
    () => r({ task: "summarization", split_lines: true }),
    /split_lines is for translation only; set it to false for summarization/,
  );
  assert.throws(() => r({ split_lines: "yes" }), /split_lines must be true or false, got "yes"/);
  assert.throws(
    () => r({ word_dictionary: { one_to_1: true } }),
    /word_dictionary has no field one_to_1; use max_words, min_dice or one_to_one/,
  );
  assert.throws(
    () => r({ word_dictionary: { min_dice: 3 } }),
    /word_dictionary.min_dice must be in \[0, 1\], got 3/,
  );
  assert.throws(() => r({ word_dictionary: [] }), /word_dictionary must be an object/);
  assert.throws(
    () => r({ word_dictionary: { one_to_one: "yes" } }),
    /word_dictionary.one_to_one must be true or false, got "yes"/,
  );
  assert.throws(
    () => r({ word_dictionary: { max_words: 2.5 } }),
    /word_dictionary.max_words must be a whole number/,
  );
});

Deno.test("max_len_a and max_len_b (fairseq's length limit) are checked and reach the evaluation's generation", () => {
  const r = (flat: Record<string, unknown>) =>
    resolveRecipe({ name: "x", task: "translation", train_targets: "word_dictionary", ...flat }).settings;
  const gen = evalOptions(r({ max_len_a: 1.5, max_len_b: 20 }), null).generation!;
  assert.equal(gen.max_len_a, 1.5);
  assert.equal(gen.max_len_b, 20);
  assert.equal(evalOptions(r({}), null).generation!.max_len_a, null);
  assert.throws(() => r({ max_len_a: -1 }), /max_len_a must be a number >= 0 or null, got -1/);
  assert.throws(() => r({ max_len_a: 1, max_len_b: 2.5 }), /max_len_b must be an integer >= 0, got 2.5/);
  assert.throws(() => r({ max_len_b: 20 }), /max_len_b 20 needs max_len_a/);
});

Deno.test("a recipe refuses the training fields it would ignore, and reads the SFT loss fields", () => {
  const r = (flat: Record<string, unknown>) => resolveRecipe({ name: "x", task: "classification", ...flat });
  assert.throws(
    () => r({ beta: 0.5, loss_type: "ipo" }),
    /^RangeError: Cannot run recipe \(recipe config\): beta 0\.5, loss_type "ipo" are DPO settings; remove them \(a recipe fine-tunes with SFT\)$/,
  );
  assert.throws(
    () => r({ tokenizer: "gpt2" }),
    /tokenizer "gpt2" is not read by a recipe; remove it \(a recipe uses its model's tokenizer/,
  );
  assert.throws(
    () => r({ num_beams: 4, max_new_tokens: 8 }),
    /max_new_tokens, num_beams are for generation \(summarization, translation\), and classification scores each label's likelihood; remove them/,
  );
  // spelt out at their defaults they are refused too, as train and sft refuse them (they had passed)
  assert.throws(
    () => r({ beta: 0.1, dataset_text_field: "text" }),
    /beta 0\.1 is a DPO setting; remove it .*dataset_text_field "text" is not read by a recipe/,
  );
  r({ num_beams: 1 }); // the recipe's own setting at its default passes
  // what the Trainer refuses, and a seed the PRNG cannot take, are refused here: before the data and
  // the base model's minutes of pre-training (they had been refused after them)
  assert.throws(
    () => r({ fp16: true }),
    /^RangeError: Cannot run recipe \(recipe config\): fp16: the Trainer computes in float32/,
  );
  assert.throws(
    () => r({ seed: 2 ** 32 }),
    /recipe config: seed: must be >= 0 and <= 4294967295, got 4294967296/,
  );
  resolveRecipe({ name: "x", task: "translation", num_beams: 4, length_penalty: 0.6 });
  assert.throws(
    () => resolveRecipe({ name: "x", task: "summarization", length_penalty: 0.6 }),
    /length_penalty is for beam search, and num_beams is 1; set num_beams > 1 or remove it/,
  );
  // completion_only_loss and assistant_only_loss reach the SFT rows
  const tok = {
    encode: (s: string) => [...s].map((c) => c.charCodeAt(0)),
    decode: (ids: ArrayLike<number>) => String.fromCharCode(...Array.from(ids)),
    applyChatTemplate: () => ({ text: "", ids: [] }),
    chat_template: null,
    special_token_ids: [36],
    eos_token_id: 36,
    pad_token_id: 36,
    idToToken: (id: number) => String.fromCharCode(id),
    tokenToId: (t: string) => t.charCodeAt(0),
  } as unknown as Tokenizer;
  const trained = (flat: Record<string, unknown>) => {
    const { settings, training } = r({ packing: false, max_seq_length: 32, ...flat });
    const ds = sftDataset([{ source: "ab", target: "c" }], settings, training, tok, "t").dataset;
    return [...ds.labels([0])].filter((l) => l !== -100).length;
  };
  // "ab\nLabel: c$": 11 tokens, of which the answer " c" and the EOS are 3
  assert.equal(trained({}), 3, "completion only by default (TRL)");
  assert.equal(trained({ completion_only_loss: false }), 11, "prompt and completion");
  // packing cuts a long example by its strategy: bfd truncates it, bfd_split splits it into rows,
  // wrapped wraps it (each had truncated it first, so all three gave the same rows)
  const rows = (packing_strategy: string, extra: Record<string, unknown> = {}) => {
    const { settings, training } = r({ packing: true, packing_strategy, max_seq_length: 8, ...extra });
    const built = sftDataset([{ source: "abcdefgh", target: "c" }], settings, training, tok, "t");
    return [built.dataset.num_blocks, built.truncated];
  };
  // bfd keeps the first 8 tokens: the answer past them trains nothing, and is refused as padding refuses it
  assert.throws(() => rows("bfd"), /t:1: no token is trained once cut to max_length 8 \(of 18\)/);
  assert.deepEqual(rows("bfd", { completion_only_loss: false }), [1, 1], "the prompt's tokens train");
  assert.deepEqual(rows("bfd_split"), [3, 1], "18 tokens in rows of 8");
  assert.deepEqual(rows("wrapped")[0], 3);
  assert.throws(
    () => trained({ assistant_only_loss: true }),
    /assistant_only_loss needs conversational rows/,
  );
});

Deno.test("a recipe's Trainer evaluates ROUGE during training and tracks it as metric_for_best_model", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-metric-" });
  try {
    const out = join(root, "run");
    const r = await recipe("summarization", out, [
      "--eval_strategy",
      "steps",
      "--eval_steps",
      "1",
      "--metric_for_best_model",
      "rougeL",
      "--metric_samples",
      "3",
    ]);
    assert.equal(r.code, 0, r.err);
    const logs = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    const evals = logs.filter((l) => "eval_rougeL" in l);
    assert.equal(evals.length, 2, JSON.stringify(logs));
    for (const e of evals) {
      for (const k of ["eval_rouge1", "eval_rouge2", "eval_rougeLsum", "eval_loss"]) assert.ok(k in e, k);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a recipe asked to overwrite or resume uses runs/<name> itself, not the next free runs/<name>-N", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "fledge-recipe-cwd-" });
  try {
    const run = (extra: string[] = []) => tinyRecipe("sst2", null, cache, extra, cwd);
    assert.equal((await run()).out.trim(), "runs/sst2");
    assert.equal((await run()).out.trim(), "runs/sst2-2", "a second run never overwrites the first");
    const over = await run(["--overwrite_output_dir", "true"]);
    assert.equal(over.code, 0, over.err);
    assert.equal(over.out.trim(), "runs/sst2", "overwrite_output_dir: runs/sst2 itself");
    // a run that fails on its data leaves no empty runs/sst2-3 behind for the next to skip
    const bad = await run(["--dataset", join(cwd, "nope.jsonl")]);
    assert.equal(bad.code, 2, bad.err);
    assert.equal(await Deno.stat(join(cwd, "runs", "sst2-3")).then(() => true, () => false), false);
    // two runs started together take two folders (both took runs/<name>, and one failed on its lock)
    const both = await Promise.all([freeRunDir(join(cwd, "runs", "x")), freeRunDir(join(cwd, "runs", "x"))]);
    assert.deepEqual(both.map((d) => relative(cwd, d)).sort(), ["runs/x", "runs/x-2"]);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("recipes refuse bad input in one line before training", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-bad-" });
  try {
    const file = join(root, "pairs.jsonl");
    await Deno.writeTextFile(file, '{"english": "a", "de": "b"}\n');
    let r = await recipe("translation", join(root, "a"), ["--dataset", file]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^fledge: Cannot load translation data .*pairs\.jsonl.*column/m);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    // a single file has no validation split: the way out named
    await Deno.writeTextFile(file, '{"en": "a", "de": "b"}\n');
    assertFails(
      await recipe("translation", join(root, "a1"), ["--dataset", file]),
      2,
      /has no validation examples; add --eval_file FILE, or give --dataset a folder with train\.\* and validation\.\* files$/,
    );
    // fields that would be ignored are refused before training: a Debian field on a local folder, a
    // hub config on the Debian data, the word dictionary without its teacher, metric rows nothing
    // scores; so are values generate() would refuse only after training
    for (
      const [name, extra, re] of [
        ["translation", ["--dataset", root, "--level", "short"], /level is for Debian translation only/],
        ["summarization", ["--dataset_config", "bogus"], /dataset_config is for hub datasets only/],
        [
          "summarization",
          ["--word_dictionary", '{"max_words": 5}'],
          /word_dictionary shapes the word-for-word teacher, and train_targets is lead_oracle/,
        ],
        [
          "summarization",
          ["--metric_samples", "5"],
          /metric_samples is how many validation rows score rouge1/,
        ],
        ["summarization", ["--png", "maybe"], /png must be true or false, got "maybe"/],
        ["summarization", ["--repetition_penalty", "0"], /repetition_penalty: must be > 0/],
        [
          "sst2",
          ["--prompt_style", "chat"],
          /prompt_style chat needs a chat template, and the tokenizer of .* has none/,
        ],
      ] as const
    ) {
      const bad = await recipe(name, join(root, "f"), [...extra]);
      assert.equal(bad.code, 2, bad.err);
      assert.match(bad.err.trimEnd().split("\n").at(-1)!, new RegExp(`^fledge: .*${re.source}`));
      assert.doesNotMatch(bad.err, /^\s+at /m, "no stack trace");
      await assert.rejects(
        Deno.stat(join(root, "f")),
        Deno.errors.NotFound,
        `${extra.join(" ")}: nothing written`,
      );
    }
    // a --config file that is not YAML: one line with its file, line and column
    await Deno.writeTextFile(join(root, "bad.yaml"), "max_steps: 3\n[a, b\n");
    assertFails(
      await recipe("sst2", join(root, "a2"), ["--config", join(root, "bad.yaml")]),
      2,
      /recipe: cannot parse --config .*bad\.yaml:2:1: .*; fix the YAML$/,
    );
    // a misspelt field in it: the file and a did-you-mean, as the flag gets (it had named getTrainingArgs)
    await Deno.writeTextFile(join(root, "typo.yaml"), "num_beam: 2\n");
    assertFails(
      await recipe("sst2", join(root, "a3"), ["--config", join(root, "typo.yaml")]),
      2,
      /recipe: .*typo\.yaml: unknown field num_beam; did you mean num_beams\?/,
    );
    const noTok = join(root, "model");
    await Deno.mkdir(noTok);
    await Deno.writeTextFile(join(noTok, "config.json"), "{}");
    r = await recipe("sst2", join(root, "b"), ["--model", noTok]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /has no tokenizer/);
    r = await recipe("sst2", join(root, "b2"), ["--model", noTok, "--base_model", "{}"]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /--base_model shapes the Debian base model, which --model .* replaces; drop one/);
    // a folder holding a file a recipe writes (a user's metrics.json) is refused, and the file kept
    const mine = join(root, "mine");
    await Deno.mkdir(mine);
    await Deno.writeTextFile(join(mine, "metrics.json"), '{"mine": 1}');
    // before reading data or pre-training a base model (with an empty cache it had pre-trained first)
    const empty = join(root, "empty-cache");
    r = await tinyRecipe("sst2", mine, empty);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /mine already holds a run \(metrics\.json\); .*set overwrite_output_dir: true/);
    assert.doesNotMatch(r.err, /base model|pre-train/);
    assert.equal(await Deno.readTextFile(join(mine, "metrics.json")), '{"mine": 1}');
    await assert.rejects(Deno.stat(join(empty, "base-models")), Deno.errors.NotFound);
    // packed rows whose label was cut off trained nothing (padded ones were refused): refused the same way
    r = await recipe("sst2", join(root, "pk"), ["--max_seq_length", "24", "--packing", "true"]);
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /Cannot build an SFT example from sst2 train:\d+: no token is trained once cut to max_length 24/,
    );
    // a recipe is its task: sst2 ran summarization under a classification title
    r = await recipe("sst2", join(root, "t"), ["--task", "summarization"]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /Cannot run the sst2 recipe as "summarization": it is a classification recipe/);
    r = await recipe("summarization", join(root, "c"), ["--num_beams", "0"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /num_beams must be a positive integer/);
    r = await recipe("translation", join(root, "d"), ["--train_targets", "lead_oracle"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /train_targets lead_oracle is for summarization only/);
    // generation past the model's positions is refused before training, not after it
    r = await recipe("translation", join(root, "e"), ["--max_new_tokens", "250"]);
    assert.notEqual(r.code, 0);
    assert.match(
      r.err,
      /Cannot run the translation recipe: its longest validation prompt has \d+ tokens \(max_source_tokens \d+ and the prompt format\), so max_new_tokens 250 would run past the model's max_position_embeddings 256; set --max_new_tokens \d+ or a smaller --max_source_tokens/,
    );
    await assert.rejects(
      Deno.stat(join(root, "e", "config.yaml")),
      Deno.errors.NotFound,
      "no Trainer was made",
    );
    assert.equal(r.err.trim().split("\n").filter((l) => /Cannot run/.test(l)).length, 1);
    // a folder of split files: an empty validation split, a label outside the set, a corrupt parquet
    const split = async (name: string, files: Record<string, string | Uint8Array>) => {
      const dir = join(root, name);
      await Deno.mkdir(dir);
      for (const [f, data] of Object.entries(files)) {
        if (typeof data === "string") await Deno.writeTextFile(join(dir, f), data);
        else await Deno.writeFile(join(dir, f), data);
      }
      return dir;
    };
    const row = (text: string, label: string) => JSON.stringify({ text, label }) + "\n";
    const cases: [string, Record<string, string | Uint8Array>, RegExp][] = [
      [
        "empty",
        { "train.jsonl": row("a game", "games"), "validation.jsonl": "" },
        /split "validation": the validation split has no records/,
      ],
      [
        "labels",
        {
          "train.jsonl": row("a game", "games") + row("a lib", "other"),
          "validation.jsonl": row("x", "fish"),
        },
        /fish.*(games|other)/,
      ],
      ["parquet", {
        "train.parquet": new Uint8Array([80, 65, 82, 49, 0, 1, 2]),
        "validation.parquet": new Uint8Array(3),
      }, /parquet/],
    ];
    for (const [name, files, want] of cases) {
      const dir = await split(name, files);
      r = await recipe("sst2", join(root, `out-${name}`), [
        "--dataset",
        dir,
        "--label_names",
        '["other", "games"]',
      ]);
      assert.equal(r.code, 2, `${name}: ${r.err}`);
      assert.match(r.err, want, name);
      assert.equal(r.err.trim().split("\n").filter((l) => l.startsWith("fledge: Cannot")).length, 1, r.err);
      await assert.rejects(
        () => Deno.stat(join(root, `out-${name}`)),
        Deno.errors.NotFound,
        "nothing trained",
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(cache, { recursive: true });
  } catch { /* already gone */ }
});
