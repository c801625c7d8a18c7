/**
 * evaluation/task_eval.ts baselines, computed on the Debian validation splits, against the numbers
 * in ../shared/datasets/debian/README.md (computed there by other code).
 */
import { loadTaskData } from "../../data/task_data.ts";
import { evaluateTask, taskBaselines } from "../../evaluation/task_eval.ts";
import {
  leadBaseline,
  leadOracle,
  summarizationMetrics,
  translationMetrics,
} from "../../evaluation/task_metrics.ts";
import { presetConfig } from "../../models/config.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { Transformer } from "../../models/transformer.ts";
import { assert, assertClose } from "../_assert.ts";
import { cpu } from "../_check.ts";

Deno.test("the lead-6 baseline reproduces the README's ROUGE on the Debian summarization validation split", async () => {
  const d = await loadTaskData("summarization");
  const b = taskBaselines("summarization", d.validation)["lead-6"];
  // The README prints two decimals, cut rather than rounded (23.3882 -> 23.38, 8.9874 -> 8.98).
  const cut = (x: number) => Math.floor(x * 100) / 100;
  assert.deepEqual([cut(b.rouge1), cut(b.rouge2), cut(b.rougeL)], [23.38, 8.98, 21.46]);
});

Deno.test("leadOracle() picks the document's lead closest to the reference by ROUGE-L, the shortest on ties", async () => {
  const doc = "tool for correcting bit errors in an AES key schedule and more words after it";
  assert.equal(leadOracle(doc, "tool for correcting bit errors"), "tool for correcting bit errors");
  assert.equal(leadOracle(doc, "correcting errors in AES keys"), "tool for correcting bit errors in an AES");
  // nothing shared: every lead scores 0, so the one-word lead
  assert.equal(leadOracle(doc, "unrelated"), "tool");
  assert.equal(leadOracle(doc, "schedule", 4), "tool");
  assert.equal(leadOracle("", "x"), "");
  // a count that slice() would misread (-1 kept all words but one) is refused
  for (const n of [0, -1, 2.5]) {
    assert.throws(() => leadOracle(doc, "x", n), {
      name: "RangeError",
      message: /leadOracle: max_words .* >= 1/,
    });
    assert.throws(() => leadBaseline(doc, n), { name: "RangeError", message: /leadBaseline: words .* >= 1/ });
  }
  // On the Debian validation split it is an upper bound of every lead-k (k <= 15): each example's best.
  const d = await loadTaskData("summarization");
  const v = d.validation.slice(0, 300), refs = v.map((e) => e.target);
  const oracle = summarizationMetrics(v.map((e) => leadOracle(e.source, e.target)), refs).rougeL;
  for (const k of [4, 8, 12, 15]) {
    const lead = v.map((e) => e.source.split(/\s+/).filter(Boolean).slice(0, k).join(" "));
    assert(oracle > summarizationMetrics(lead, refs).rougeL + 5, `lead-${k}`);
  }
});

Deno.test("the majority baselines reproduce the README's accuracies (binary 51.10, sections 11.48)", async () => {
  for (
    const [task, name, acc] of [["classification-binary", "majority (other)", 51.1], [
      "classification",
      "majority (libs)",
      11.48,
    ]] as const
  ) {
    const d = await loadTaskData("classification", { debian_task: task });
    const b = taskBaselines("classification", d.validation, {
      train_targets: d.train.map((e) => e.target),
      labels: d.labels,
    });
    assert.deepEqual(Object.keys(b), [name]);
    assertClose(b[name].accuracy, acc, { atol: 0.005 });
  }
});

Deno.test("the identity baseline scores the English source as the German translation (sacreBLEU 13a; the README's BLEU 11.91)", async () => {
  const d = await loadTaskData("translation");
  const b = taskBaselines("translation", d.validation).identity;
  // The README's 11.91 splits every punctuation character (\w+|[^\w\s]); sacreBLEU's 13a keeps
  // some joined (URLs, decimals), so the two differ a little on the same hypotheses.
  assert.ok(b.bleu > 10 && b.bleu < 14, JSON.stringify(b));
  assert.equal(b.bleu_debian.toFixed(2), "11.91", "the README's identity BLEU, its tokens and no smoothing");
  assert.ok(b.chrf > 0 && b["chrf++"] > 0);
  console.log(
    `  identity baseline, sacreBLEU 13a: BLEU ${b.bleu.toFixed(2)}, chrF ${b.chrf.toFixed(2)}, chrF++ ${
      b["chrf++"].toFixed(2)
    }`,
  );
});

Deno.test("evaluateTask() keeps every line of a translation (long descriptions are one paragraph per line) and one line of a summary", async () => {
  const text = "Dieses Paket enthält die Bibliothek.\nEs ist ein Werkzeug.\nThis package provides a tool.\n";
  const tok = await trainBpeTokenizer([text.repeat(20)], { vocab_size: 300 });
  const model = Transformer.init(presetConfig("tiny", { vocab_size: 300 }), await cpu(), { seed: 3 });
  const examples = Array.from(
    { length: 16 },
    (_, i) => ({ source: `This package provides tool ${i}.`, target: "x" }),
  );
  const generation = { do_sample: true, seed: 1, max_new_tokens: 60 };
  const run = (task: "translation" | "summarization") =>
    evaluateTask(model, tok, task, examples, { generation, batch_size: 16 });
  const translated = (await run("translation")).predictions.map((p) => p.prediction);
  const summarized = (await run("summarization")).predictions.map((p) => p.prediction);
  assert.ok(translated.some((p) => p.includes("\n")), "the sampled texts hold line breaks");
  assert.ok(summarized.every((p) => !p.includes("\n")));
  // the caller's first_line and onProgress win over the task's
  let calls = 0;
  const first = await evaluateTask(model, tok, "translation", examples, {
    generation: { ...generation, first_line: true, onProgress: () => calls++ },
    batch_size: 16,
  });
  assert.deepEqual(
    first.predictions.map((p) => p.prediction),
    translated.map((p) => p.split("\n")[0].trim()),
    "first_line: true keeps each translation's first line",
  );
  assert.equal(calls, 1, "generation.onProgress, once a batch");
  model.dispose();
});

Deno.test("evaluateTask({ split_lines }) translates each line on its own and joins the translations line by line", async () => {
  const text = "Dieses Paket enthält die Bibliothek.\nEs ist ein Werkzeug.\nThis package provides a tool.\n";
  const tok = await trainBpeTokenizer([text.repeat(20)], { vocab_size: 300 });
  const model = Transformer.init(presetConfig("tiny", { vocab_size: 300 }), await cpu(), { seed: 3 });
  const docs = [
    { source: "This package provides a tool.\nIt is a library.", target: "Dieses Paket.\nEs ist." },
    { source: "A tool.", target: "Ein Werkzeug." },
    { source: "The library.\n\nThe tool.", target: "Die Bibliothek.\n\nDas Werkzeug." },
  ];
  const generation = { max_new_tokens: 8 };
  const split = await evaluateTask(model, tok, "translation", docs, {
    generation,
    split_lines: true,
    batch_size: 2,
  });
  // the same as each line evaluated as an example of its own (one line each), joined
  const lines = ["This package provides a tool.", "It is a library.", "A tool.", "The library.", "The tool."];
  const one =
    (await evaluateTask(model, tok, "summarization", lines.map((l) => ({ source: l, target: "x" })), {
      generation,
      // the summarization format would differ: give the translation prompt explicitly
      prompt: { format: { template: "Translate English to German: {source}\nGerman:" } },
    })).predictions.map((p) => p.prediction);
  assert.ok(one.every((p) => p.length > 0), JSON.stringify(one));
  assert.deepEqual(split.predictions.map((p) => p.prediction), [
    `${one[0]}\n${one[1]}`,
    one[2],
    `${one[3]}\n\n${one[4]}`,
  ]);
  assert.equal(split.metrics.n, 3);
  await assert.rejects(
    () => evaluateTask(model, tok, "summarization", docs, { generation, split_lines: true }),
    /Cannot evaluate summarization with split_lines: it is for translation only/,
  );
  model.dispose();
});

Deno.test("bleu_debian tokenizes as Python's \\w+|[^\\w\\s] (Unicode letters) without smoothing", () => {
  // "für" is one token (JavaScript's ASCII \w would make f, ü, r): 4/5 unigrams, 3/4 bigrams,
  // 2/3 trigrams and 1/2 4-grams match, the geometric mean (0.2)^(1/4)
  const m = translationMetrics(["für das Paket ist gut"], ["fär das Paket ist gut"]);
  assertClose(m.bleu_debian, 100 * 0.2 ** 0.25, { atol: 1e-3 });
  // "-" and "." are tokens of their own
  assert.equal(translationMetrics(["die GUI-Bibliothek."], ["die GUI - Bibliothek ."]).bleu_debian, 100);
  // no smoothing: no 4-gram match gives 0 (sacreBLEU's exp smoothing gives more than 0)
  const z = translationMetrics(["a b c d"], ["a b c e"]);
  assert.equal(z.bleu_debian, 0);
  assert.ok(z.bleu > 0);
});
