import { join } from "node:path";
import { type Backend, createBackend } from "../../kernels/backend.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { presetConfig, withTokenIds } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { readJsonl } from "../../data/jsonl.ts";
import { buildTextDatasets, TextDataset } from "../../data/text_dataset.ts";
import { padExamples } from "../../data/packing.ts";
import { RowDataset } from "../../data/row_dataset.ts";
import { getTrainingArgs, type TrainingConfig } from "../../training/config.ts";
import { createTrainer, NonFiniteError } from "../../training/trainer.ts";
import { tokenIdNotes } from "../../training/_trainer_check.ts";
import { mul } from "../../kernels/elementwise.ts";
import { noGrad } from "../../kernels/autograd.ts";
import { loadAdapter } from "../../training/peft.ts";
import { assert, assertAllClose, SHARED, SLOW } from "../_assert.ts";
import { backends, cpu as cpuBackend } from "../_check.ts";

import { trainerFixture } from "./_trainer.ts";

const { mc, bytes, train, evalSet, run } = trainerFixture;

const f32 = (xs: number[]) => Array.from(Float32Array.from(xs));

for (const be of await backends()) {
  Deno.test(`resume_from_checkpoint continues bit-identically (${be.name}, accumulation 2, warmup + cosine)`, async () => {
    const base = { max_steps: 8, save_strategy: "steps" as const, save_steps: 4 };
    const straightDir = await Deno.makeTempDir(), splitDir = await Deno.makeTempDir();
    const straight = await run(be, { ...base, output_dir: straightDir });
    const first = await run(be, { ...base, output_dir: splitDir }, {
      hooks: {
        on_step_end: ({ state }) => state.global_step === 4 ? { should_training_stop: true } : undefined,
      },
    });
    assert.equal(first.result.loss_history.length, 4);
    // A fresh model with other weights: everything must come from the checkpoint.
    const second = await run(be, { ...base, output_dir: splitDir, resume_from_checkpoint: true }, {
      seed: 99,
    });
    const a = f32(straight.result.loss_history),
      b = f32([...first.result.loss_history, ...second.result.loss_history]);
    console.log(`${be.name}: straight ${a.map((x) => x.toFixed(6)).join(" ")}`);
    assert.equal(a.length, 8);
    for (let i = 0; i < 8; i++) {
      assert.ok(a[i] === b[i], `step ${i + 1}: straight ${a[i]} vs resumed ${b[i]}`);
    }
    assert.deepEqual(f32(second.result.grad_norm_history), f32(straight.result.grad_norm_history.slice(4)));
    for (const [name, t] of straight.model.params) {
      const x = await t.toArray(), y = await second.model.params.get(name)!.toArray();
      assert.ok(x.every((v, i) => v === y[i]), `final ${name} differs`);
    }
    // metrics.jsonl of the resumed run holds all 8 steps, in order
    const lines = (await Deno.readTextFile(join(splitDir, "metrics.jsonl"))).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.deepEqual(lines.filter((r) => "loss" in r).map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    straight.model.dispose();
    first.model.dispose();
    second.model.dispose();
    await Deno.remove(straightDir, { recursive: true });
    await Deno.remove(splitDir, { recursive: true });
  });
}

for (const be of (await backends()).filter((b) => b.gpu)) {
  Deno.test(`each step is submitted before the next is recorded, not at the next log (${be.name})`, async () => {
    const dir = await Deno.makeTempDir();
    const gpu = be.gpu!, start = gpu.stats.submits, submitted: number[] = [];
    // one log (one readback) at the end: without pacing, the host would record all 6 steps first
    const { model } = await run(be, { output_dir: dir, max_steps: 6, logging_steps: 6 }, {
      hooks: { on_step_end: () => void submitted.push(gpu.stats.submits - start) },
    });
    submitted.forEach((n, k) => assert.ok(n >= k, `at the end of step ${k + 1}: ${n} submits, want >= ${k}`));
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("gradient accumulation 2 x batch 2 equals batch 4 up to f32 noise (cpu)", async () => {
  const be = await cpuBackend();
  const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const acc = await run(be, { output_dir: dirs[0], max_steps: 6 });
  const big = await run(be, {
    output_dir: dirs[1],
    max_steps: 6,
    per_device_train_batch_size: 4,
    gradient_accumulation_steps: 1,
  });
  const cmp = assertAllClose(acc.result.loss_history, big.result.loss_history, { rtol: 1e-5, atol: 0 });
  console.log(`accumulation vs one batch: max relative loss difference ${cmp.maxRel.toExponential(2)}`);
  assertAllClose(acc.result.grad_norm_history, big.result.grad_norm_history, { rtol: 1e-4, atol: 0 });
  for (const [name, t] of acc.model.params) {
    assertAllClose(t.data, big.model.params.get(name)!.data, { atol: 1e-5, rtol: 1e-4, msg: name });
  }
  for (const d of dirs) await Deno.remove(d, { recursive: true });
});

Deno.test("early stopping ends training after early_stopping_patience evaluations without improvement", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  const { result } = await run(be, {
    output_dir: dir,
    max_steps: 20,
    learning_rate: 0, // the eval loss never improves after the first evaluation
    lr_scheduler_type: "constant",
    warmup_steps: 0,
    eval_strategy: "steps",
    eval_steps: 1,
    early_stopping_patience: 2,
  }, { eval: true });
  assert.equal(result.metrics_summary.global_step, 3);
  assert.equal(result.loss_history.length, 3);
  assert.equal(result.best_epoch, 4 / 500); // the first evaluation, after 4 of 500 blocks
  assert.ok(Math.abs(result.final_perplexity - Math.exp(result.metrics_summary.eval_loss!)) < 1e-9);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("compute_metrics adds eval_ metrics that metric_for_best_model and early stopping track", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  const scores = [50, 70, 60, 65, 40];
  let calls = 0;
  const config = getTrainingArgs({
    output_dir: dir,
    max_steps: 20,
    per_device_train_batch_size: 2,
    logging_steps: 1,
    save_strategy: "no",
    eval_strategy: "steps",
    eval_steps: 1,
    metric_for_best_model: "rougeL",
    early_stopping_patience: 3,
  });
  assert.equal(config.greater_is_better, true, "HF: higher is better unless the name ends with loss");
  const model = Transformer.init(mc, be, { seed: 3 });
  const evals: Record<string, number>[] = [];
  const trainer = createTrainer({
    model,
    config,
    train_dataset: train,
    eval_dataset: evalSet,
    progress: false,
    compute_metrics: (m) => {
      assert.equal(m, model);
      return Promise.resolve({ rougeL: scores[calls++] });
    },
    hooks: { on_evaluate: (_ctx, m) => void evals.push(m) },
  });
  await trainer.train();
  // best 70 at the second evaluation; three without improvement (60, 65, 40) stop the run
  assert.equal(calls, 5);
  assert.deepEqual(evals.map((m) => m.eval_rougeL), scores);
  assert.ok(evals.every((m) => typeof m.eval_loss === "number"));
  assert.equal(trainer.state.best_metric, 70);
  assert.equal(trainer.state.best_step, 2);
  trainer.dispose();
  // a metric nothing computes is refused up front; one compute_metrics does not return, at the evaluation
  assert.throws(
    () => createTrainer({ model, config, train_dataset: train, eval_dataset: evalSet, progress: false }),
    /not rougeL; pass compute_metrics that returns it/,
  );
  const bad = createTrainer({
    model,
    config: { ...config, output_dir: `${dir}/b` },
    train_dataset: train,
    eval_dataset: evalSet,
    progress: false,
    compute_metrics: () => Promise.resolve({ bleu: 1 }),
  });
  await assert.rejects(
    () => bad.train(),
    /metric_for_best_model "rougeL": the evaluation gave eval_loss, eval_perplexity, eval_bleu; .*compute_metrics/,
  );
  bad.dispose();
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("hooks run in HF callback order and can stop training", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  const events: string[] = [];
  const { result } = await run(be, {
    output_dir: dir,
    max_steps: 3,
    eval_strategy: "steps",
    eval_steps: 1,
    save_strategy: "steps",
    save_steps: 2,
  }, {
    eval: true,
    hooks: {
      on_train_begin: ({ state }) => void events.push(`begin@${state.global_step}`),
      on_step_end: ({ state }) => void events.push(`step@${state.global_step}`),
      on_log: (_, r) => void events.push(`log@${r.step}`),
      on_evaluate: (_, m) => void events.push(`evaluate@${m.step}`),
      on_save: ({ state }, path) => {
        events.push(`save@${state.global_step}:${path.slice(dir.length + 1)}`);
        return { should_training_stop: true };
      },
      on_train_end: ({ state }) => void events.push(`end@${state.global_step}`),
    },
  });
  assert.deepEqual(events, [
    "begin@0",
    "step@1",
    "log@1",
    "evaluate@1",
    "step@2",
    "log@2",
    "evaluate@2",
    "save@2:checkpoints/step-2",
    "end@2",
  ]);
  assert.equal(result.checkpoint_path, join(dir, "checkpoints", "step-2"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a run writes config.yaml, metrics.jsonl (HF log_history keys), model/, report.md, curves.svg", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  const { result } = await run(be, {
    output_dir: dir,
    max_steps: 4,
    logging_steps: 2,
    eval_strategy: "steps",
    eval_steps: 2,
  }, { eval: true });
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assert.deepEqual(names, ["config.yaml", "curves.svg", "metrics.jsonl", "model", "report.md"]);
  assert.ok(Deno.statSync(join(dir, "model", "model.safetensors")).isFile);
  const recs = (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.deepEqual(recs.map((r) => Object.keys(r).sort().join()), [
    "epoch,grad_norm,learning_rate,loss,step",
    "epoch,eval_loss,eval_perplexity,eval_runtime,step",
    "epoch,grad_norm,learning_rate,loss,step",
    "epoch,eval_loss,eval_perplexity,eval_runtime,step",
    "epoch,step,train_loss,train_runtime,train_steps_per_second",
  ]);
  assert.deepEqual(recs.map((r) => r.step), [2, 2, 4, 4, 4]);
  assert.deepEqual(result.loss_history, [recs[0].loss, recs[2].loss]);
  assert.equal(recs[4].train_loss, (recs[0].loss + recs[2].loss) / 2);
  assert.equal(recs[2].learning_rate, 0); // HF logs the rate after the scheduler step: cosine ends at 0
  const report = await Deno.readTextFile(join(dir, "report.md"));
  assert.match(report, /\| eval_loss \| \d\.\d{4} \|/);
  assert.match(await Deno.readTextFile(join(dir, "curves.svg")), /<svg/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("num_train_epochs sets the steps: ceil(epochs * updates per epoch), updates never cross an epoch", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  const small = new TextDataset(bytes.subarray(0, 80), { block_size: 8 }); // 10 blocks: 3 updates of 4, 4, 2 blocks
  const config = getTrainingArgs({
    output_dir: dir,
    num_train_epochs: 1.5,
    per_device_train_batch_size: 2,
    gradient_accumulation_steps: 2,
    logging_strategy: "epoch",
    save_strategy: "no",
  });
  const seen: number[] = [];
  const trainer = createTrainer({
    model: Transformer.init(mc, be),
    config,
    train_dataset: small,
    progress: false,
    hooks: { on_step_end: ({ state }) => void seen.push(state.num_input_tokens_seen) },
  });
  assert.equal(trainer.updatesPerEpoch(), 3);
  const r = await trainer.train();
  assert.equal(r.metrics_summary.global_step, 5);
  assert.deepEqual(seen, [32, 64, 80, 112, 144]);
  assert.equal(r.loss_history.length, 2); // end of epoch 1, and the last step
  assert.equal(trainer.state.data_position.epoch, 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("createTrainer() rejects block_size over max_position_embeddings, naming both", async () => {
  const be = await cpuBackend();
  const long = new TextDataset(bytes.subarray(0, 200), { block_size: 32, source: "long.jsonl" });
  assert.throws(
    () =>
      createTrainer({
        model: Transformer.init(mc, be),
        config: getTrainingArgs({ output_dir: "unused" }),
        train_dataset: long,
      }),
    (e: Error) =>
      e instanceof RangeError &&
      /block_size 32 exceeds the model's max_position_embeddings 16/.test(e.message),
  );
  const wide = new TextDataset(Int32Array.from({ length: 64 }, (_, i) => i), {
    block_size: 8,
    source: "wide.jsonl",
  });
  assert.throws(
    () => createTrainer({ model: Transformer.init(mc, be), config: getTrainingArgs(), train_dataset: wide }),
    /token id 63 of wide\.jsonl is outside the model's vocabulary \[0, 32\)/,
  );
});

Deno.test("an unwritable output_dir fails before training and leaves nothing behind", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "file"), "");
  let steps = 0;
  const trainer = createTrainer({
    model: Transformer.init(mc, be),
    config: getTrainingArgs({ output_dir: join(dir, "file", "run"), max_steps: 2 }),
    train_dataset: train,
    progress: false,
    hooks: { on_step_end: () => void steps++ },
  });
  await assert.rejects(() => trainer.train(), /Cannot train: output_dir .*file\/run is not writable/);
  assert.equal(steps, 0);
  const onFile = createTrainer({ // (it had said "not writable (File exists (os error 17): mkdir ...)")
    model: Transformer.init(mc, be),
    config: getTrainingArgs({ output_dir: join(dir, "file"), max_steps: 2 }),
    train_dataset: train,
    progress: false,
  });
  await assert.rejects(
    () => onFile.train(),
    /^TypeError: Cannot train: output_dir \S+file is a file, not a folder; choose a folder$/,
  );
  if (Deno.uid() !== 0) {
    await Deno.mkdir(join(dir, "locked"), { mode: 0o500 });
    const t2 = createTrainer({
      model: Transformer.init(mc, be),
      config: getTrainingArgs({ output_dir: join(dir, "locked", "run"), max_steps: 2 }),
      train_dataset: train,
      progress: false,
    });
    await assert.rejects(() => t2.train(), /is not writable/);
    assert.deepEqual([...Deno.readDirSync(join(dir, "locked"))], []);
    await Deno.chmod(join(dir, "locked"), 0o700);
  }
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
    "file",
    ...(Deno.uid() !== 0 ? ["locked"] : []),
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an output_dir holding a run is refused unless overwrite_output_dir or a resume", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  await run(be, { output_dir: dir, max_steps: 1 });
  await assert.rejects(
    () => run(be, { output_dir: dir, max_steps: 1 }),
    /already holds a run \(model, metrics\.jsonl, report\.md, curves\.svg, config\.yaml\); set overwrite_output_dir: true/,
  );
  const again = await run(be, { output_dir: dir, max_steps: 2, overwrite_output_dir: true });
  assert.equal(again.result.loss_history.length, 2);
  await assert.rejects(
    () => run(be, { output_dir: dir, max_steps: 3, resume_from_checkpoint: true }),
    /Cannot resume: no complete checkpoint in .*checkpoints/,
  );
  // a damaged checkpoint is named with what is wrong (the message had named no file)
  await run(be, {
    output_dir: dir,
    max_steps: 1,
    save_strategy: "steps",
    save_steps: 1,
    overwrite_output_dir: true,
  });
  const weights = join(dir, "checkpoints", "step-1", "model.safetensors");
  await Deno.truncate(weights, 100);
  await assert.rejects(
    () =>
      run(be, {
        output_dir: dir,
        max_steps: 2,
        save_strategy: "steps",
        save_steps: 1,
        resume_from_checkpoint: true,
      }),
    /no complete checkpoint in \S+checkpoints \(step-1: .+\); restore one, or start the run again/,
  );
  await assert.rejects( // (it had said "trainer_state.json is missing")
    () => run(be, { output_dir: dir, max_steps: 2, resume_from_checkpoint: join(dir, "nope") }),
    /Cannot resume from checkpoint \S+nope: it does not exist; pick another/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name:
    "SLOW: the tiny preset trains on Debian documents to a validation loss clearly below the unigram entropy",
  ignore: !SLOW,
  async fn() {
    const be = await createBackend("auto");
    const docs = async (split: string, n: number) =>
      (await readJsonl(`${SHARED}/datasets/debian/summarization/${split}.jsonl`, { max_samples: n }))
        .map((r) => r.document as string);
    const trainDocs = await docs("train", 6000), validDocs = await docs("validation", 150);
    const tokenizer = await trainBpeTokenizer(trainDocs.slice(0, 4000), {
      vocab_size: 512,
      special_tokens: ["<|endoftext|>"],
    });
    const T = 64;
    const trainSet = buildTextDatasets(trainDocs, { tokenizer, block_size: T, source: "debian train" }).train;
    const validSet =
      buildTextDatasets(validDocs, { tokenizer, block_size: T, source: "debian validation" }).train;
    const counts = new Float64Array(512);
    for (const id of trainSet.ids) counts[id]++;
    const n = trainSet.ids.length;
    const unigram = -counts.reduce((s, c) => (c ? s + (c / n) * Math.log(c / n) : s), 0);
    const dir = await Deno.makeTempDir();
    const trainer = createTrainer({
      model: Transformer.init(presetConfig("tiny", { vocab_size: 512 }), be, { seed: 1337 }),
      config: getTrainingArgs({
        output_dir: dir,
        max_steps: 300,
        per_device_train_batch_size: 8,
        learning_rate: 3e-3,
        lr_scheduler_type: "cosine",
        warmup_steps: 10,
        weight_decay: 0.1,
        adam_beta2: 0.95,
        logging_steps: 50,
        eval_strategy: "steps",
        eval_steps: 150,
        save_strategy: "no",
      }),
      train_dataset: trainSet,
      eval_dataset: validSet,
      tokenizer,
    });
    const r = await trainer.train();
    const ev = r.metrics_summary.eval_loss!;
    console.log(
      `${be.name} (${be.adapter}): validation loss ${ev.toFixed(4)} nats vs unigram entropy ${
        unigram.toFixed(4)
      } ` +
        `nats after ${r.metrics_summary.global_step} steps in ${r.training_time.toFixed(0)}s`,
    );
    assert.ok(
      ev < unigram - 0.5,
      `validation loss ${ev} is not clearly below the unigram entropy ${unigram}`,
    );
    trainer.dispose();
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("createTrainer() refuses weights it cannot update (f16 / 4-bit) and an adapter with nothing to train", async () => {
  const be = await cpuBackend();
  const half = Transformer.init(mc, be);
  const w = half.params.get("layers.0.attn.q.weight")!;
  const h = be.fromArray(await w.toArray(), w.shape, "f16");
  h.name = w.name;
  half.params.set(w.name, h);
  w.dispose();
  assert.throws(
    () => createTrainer({ model: half, config: getTrainingArgs(), train_dataset: train }),
    /1 projection weights are stored as f16 or 4-bit and cannot be trained; add a lora section to train adapters on them, or load the model with dtype "f32"/,
  );
  const adapted = Transformer.init(mc, be);
  adapted.adapters.set("layers.0.attn.q", { apply: (_x, base) => base });
  assert.throws(
    () => createTrainer({ model: adapted, config: getTrainingArgs(), train_dataset: train }),
    /model: its adapter is frozen; load it with loadAdapter\(model, dir, \{ is_trainable: true \}\)/,
  );
});

/** A model whose loss is NaN on its `bad`-th call (one micro-batch), as a transient overflow. */
function poisoned(be: Backend, bad: number): Transformer {
  const model = Transformer.init(mc, be, { seed: 3 });
  const loss = model.loss.bind(model);
  let calls = 0;
  model.loss = (ids, labels, opts) => {
    const l = loss(ids, labels, opts);
    if (++calls !== bad) return l;
    // NaN forward and NaN gradients for this update (the factor lives on for the backward)
    return mul(l, be.full([1], NaN));
  };
  return model;
}

for (const be of await backends()) {
  Deno.test(`skip_nonfinite_steps skips a NaN update, counts it and trains on (${be.name})`, async () => {
    const dir = await Deno.makeTempDir();
    const lines: string[] = [];
    try {
      const model = poisoned(be, 5); // accumulation 2: the 5th micro-batch is in update 3
      const trainer = createTrainer({
        model,
        config: getTrainingArgs({
          output_dir: dir,
          max_steps: 6,
          per_device_train_batch_size: 2,
          gradient_accumulation_steps: 2,
          learning_rate: 1e-2,
          logging_steps: 1,
          save_strategy: "steps",
          save_steps: 3,
          skip_nonfinite_steps: true,
        }),
        train_dataset: train,
        progress: false,
        log: (l) => lines.push(l),
      });
      const r = await trainer.train();
      trainer.dispose();
      assert.equal(r.metrics_summary.nonfinite_steps, 1);
      assert.ok(r.loss_history.every(Number.isFinite), r.loss_history.join());
      assert.equal(r.loss_history.length, 5, "the skipped update logs no loss");
      assert.ok(
        lines.some((l) => /^step 3: non-finite loss or gradient norm; update skipped/.test(l)),
        lines.join("\n"),
      );
      const params = await Promise.all(model.parameters().map((p) => p.toArray()));
      assert.ok(params.every((a) => a.every(Number.isFinite)), "the weights stayed finite");
      const st = JSON.parse(await Deno.readTextFile(join(dir, "checkpoints/step-6/trainer_state.json")));
      assert.equal(st.nonfinite_steps, 1);
      model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`a NaN loss stops training with NonFiniteError naming the step (${be.name})`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const model = poisoned(be, 5);
      const trainer = createTrainer({
        model,
        config: getTrainingArgs({
          output_dir: dir,
          max_steps: 6,
          per_device_train_batch_size: 2,
          gradient_accumulation_steps: 2,
          logging_steps: 1,
          save_strategy: "steps",
          save_steps: 1,
        }),
        train_dataset: train,
        progress: false,
        log: () => {},
      });
      const e = await trainer.train().then(() => null, (e) => e);
      trainer.dispose();
      model.dispose();
      assert.ok(e instanceof NonFiniteError, String(e));
      assert.equal(e.step, 3);
      assert.match(
        e.message,
        /the loss became NaN at step 3; nothing non-finite was saved \(last checkpoint .*step-2\)/,
      );
      const saved = [...Deno.readDirSync(join(dir, "checkpoints"))].map((d) => d.name).sort();
      assert.deepEqual(saved, ["step-1", "step-2"]);
      await assert.rejects(Deno.stat(join(dir, "model")), Deno.errors.NotFound);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (const be of await backends()) {
  Deno.test(`a lora section trains only the adapter; adapter/ reloads to identical logits (${be.name})`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const model = Transformer.init(mc, be, { seed: 3 });
      const before = new Map(
        await Promise.all([...model.params].map(async ([k, t]) => [k, await t.toArray()] as const)),
      );
      const trainer = createTrainer({
        model,
        config: getTrainingArgs({
          output_dir: dir,
          max_steps: 4,
          per_device_train_batch_size: 2,
          learning_rate: 1e-2,
          logging_steps: 1,
          save_strategy: "no",
          lora: { r: 4, lora_alpha: 8, target_modules: "all-linear" },
        }),
        train_dataset: train,
        progress: false,
      });
      const r = await trainer.train();
      trainer.dispose();
      assert.ok(r.loss_history.every(Number.isFinite));
      for (const [k, t] of model.params) {
        assert.deepEqual(await t.toArray(), before.get(k), `${k} stayed frozen`);
      }
      const ids = be.fromArray(train.batch([0, 1]), [2, 8], "i32");
      const want = await noGrad(() => model.forward(ids)).toArray();
      const again = Transformer.init(mc, be, { seed: 3 }); // the same base
      await loadAdapter(again, join(dir, "adapter"));
      const got = await noGrad(() => again.forward(ids)).toArray();
      assert.deepEqual(got, want);
      ids.dispose();
      model.dispose();
      again.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

/** The two training-only noises: the model config's dropout rates, and NEFTune's TrainingConfig field. */
const NOISES: [string, { config?: typeof mc; args?: Partial<TrainingConfig> }][] = [
  ["dropout", { config: { ...mc, embd_pdrop: 0.1, attention_dropout: 0.1, resid_pdrop: 0.1 } }],
  ["NEFTune (neftune_noise_alpha)", { args: { neftune_noise_alpha: 5 } }],
];

for (const be of await backends()) {
  for (const [kind, noise] of NOISES) {
    Deno.test(`${kind} in the Trainer: the loss changes, eval does not, resume and gradient checkpointing repeat it (${be.name})`, async () => {
      const steps = { max_steps: 6, save_steps: 3, eval_steps: 6 };
      const base = { ...steps, save_strategy: "steps", eval_strategy: "steps", ...noise.args } as const;
      const dirs = await Promise.all([0, 1, 2, 3].map(() => Deno.makeTempDir()));
      try {
        const plain = await run(be, { ...base, neftune_noise_alpha: null, output_dir: dirs[0] }, {
          eval: true,
        });
        const drop = await run(be, { ...base, output_dir: dirs[1] }, { eval: true, config: noise.config });
        assert.notDeepEqual(
          drop.result.loss_history,
          plain.result.loss_history,
          `${kind} changes the training loss`,
        );
        // evaluation runs without the noise: the same weights evaluate the same with or without it
        const evalLoss = async (args: Partial<TrainingConfig>) => {
          const t = createTrainer({
            model: drop.model,
            config: getTrainingArgs({
              output_dir: dirs[3],
              eval_strategy: "steps",
              eval_steps: 1,
              save_strategy: "no",
              ...args,
            }),
            train_dataset: train,
            eval_dataset: evalSet,
            progress: false,
          });
          const e = await t.evaluate();
          t.dispose();
          return e.eval_loss;
        };
        assert.equal(await evalLoss(noise.args ?? {}), await evalLoss({}));
        // stopped at the checkpoint and resumed: the same losses bit for bit
        const first = await run(be, { ...base, output_dir: dirs[2] }, {
          eval: true,
          config: noise.config,
          hooks: {
            on_step_end: ({ state }) => state.global_step === 3 ? { should_training_stop: true } : undefined,
          },
        });
        const second = await run(be, { ...base, output_dir: dirs[2], resume_from_checkpoint: true }, {
          eval: true,
          config: noise.config,
          seed: 99,
        });
        assert.deepEqual(
          f32([...first.result.loss_history, ...second.result.loss_history]),
          f32(drop.result.loss_history),
        );
        // gradient checkpointing recomputes the blocks with the same masks and noise: the same curve
        await Deno.remove(dirs[0], { recursive: true });
        const ck = await run(be, { ...base, output_dir: dirs[0], gradient_checkpointing: true }, {
          eval: true,
          config: noise.config,
        });
        assertAllClose(ck.result.loss_history, drop.result.loss_history, { rtol: 1e-5, atol: 0 });
        for (const r of [plain, drop, first, second, ck]) r.model.dispose();
      } finally {
        for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
      }
    });
  }
}

Deno.test("padded example rows train with their masks; gradient checkpointing keeps the batch's inputs for the recompute", async () => {
  const be = await cpuBackend();
  const examples = Array.from({ length: 12 }, (_, i) => {
    const ids = bytes.slice(i * 9, i * 9 + 3 + (i % 5));
    return { input_ids: ids, labels: ids };
  });
  const rows = new RowDataset(padExamples(examples, { max_length: 8 }).rows, { source: "examples" });
  const losses: number[][] = [];
  for (const gradient_checkpointing of [false, true]) {
    const dir = await Deno.makeTempDir();
    try {
      const model = Transformer.init(mc, be, { seed: 3 });
      const t = createTrainer({
        model,
        config: getTrainingArgs({
          output_dir: dir,
          max_steps: 4,
          per_device_train_batch_size: 3,
          gradient_accumulation_steps: 2,
          logging_steps: 1,
          save_strategy: "no",
          gradient_checkpointing,
        }),
        train_dataset: rows,
        progress: false,
      });
      losses.push((await t.train()).loss_history);
      t.dispose();
      model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  assert.ok(losses[0].every(Number.isFinite));
  assertAllClose(losses[1], losses[0], { rtol: 1e-6, atol: 0 });
});

Deno.test("createTrainer(model, tokenizer, args, rows) takes SFT rows as the seed's notebooks pass them, through lossAt", async () => {
  const be = await cpuBackend();
  const docs = Array.from({ length: 30 }, (_, i) => `package ${i} does ${i % 2 ? "games" : "tools"} well`);
  const tokenizer = await trainBpeTokenizer(docs, { vocab_size: 300, special_tokens: ["<|endoftext|>"] });
  const model = Transformer.init(
    presetConfig("tiny", { ...mc, vocab_size: 300, max_position_embeddings: 32 }),
    be,
  );
  // the LM head runs on the answer positions only (the prompts, -100, are most positions)
  const seen: number[] = [];
  const lossAt = model.lossAt.bind(model);
  model.lossAt = (ids, at, targets, opts) => (seen.push(at.size), lossAt(ids, at, targets, opts));
  const dir = await Deno.makeTempDir();
  try {
    const rows = docs.map((d, i) => ({ prompt: `${d}. A game? `, completion: i % 2 ? "yes" : "no" }));
    const t = createTrainer(model, tokenizer, {
      output_dir: dir,
      max_steps: 2,
      per_device_train_batch_size: 4,
      max_seq_length: 32,
      save_strategy: "no",
      logging_steps: 1,
    }, rows);
    const err = console.error, logged: string[] = [];
    console.error = (line: string) => void logged.push(line);
    const r = await t.train().finally(() => console.error = err);
    t.dispose();
    // the preset's eos (2, a byte token here) is not the tokenizer's <|endoftext|> (0), which ends
    // every row: generate() would never stop, so the run says so (withTokenIds builds a matching one)
    assert.ok(
      logged.some((l) =>
        /note: the tokenizer's end-of-text id 0 is not the model's eos_token_id \(2\): .*withTokenIds/.test(l)
      ),
      logged.join("\n"),
    );
    const matching = Transformer.init(
      withTokenIds(presetConfig("tiny", { ...mc, vocab_size: 300 }), tokenizer),
      be,
    );
    assert.deepEqual(tokenIdNotes(matching, tokenizer), []);
    matching.dispose();
    // TRL's order (args second, the tokenizer last) is named, not failed on as a config of rows
    assert.throws(
      () => createTrainer(model, { output_dir: dir } as never, rows as never, tokenizer as never),
      /call createTrainer\(model, tokenizer, args, train_dataset\)/,
    );
    assert.equal(r.loss_history.length, 2);
    assert.ok(r.loss_history.every(Number.isFinite));
    assert.ok((await Deno.stat(join(dir, "model/tokenizer.json"))).isFile);
    assert.equal(seen.length, 2, "one lossAt per step");
    assert.ok(seen.every((n) => n > 0 && n < 4 * 32 / 2), `answer positions per batch: ${seen}`);
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
