/**
 * The Trainer's loss and log settings as HF's TrainingArguments: `label_smoothing_factor`,
 * `logging_strategy: no`, and timers that run between evaluation batches.
 */
import { join } from "node:path";
import { Transformer } from "../../models/transformer.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { createTrainer } from "../../training/trainer.ts";
import { assert } from "../_assert.ts";
import { cpu as cpuBackend } from "../_check.ts";
import { trainerFixture } from "./_trainer.ts";

const { mc, train, evalSet, run } = trainerFixture;

Deno.test("logging_strategy no writes no loss records, and the summary's train_loss is the run's mean", async () => {
  const be = await cpuBackend();
  const [quiet, loud] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const o = { max_steps: 4, eval_strategy: "steps", eval_steps: 2 } as const;
  const a = await run(be, { ...o, output_dir: quiet, logging_strategy: "no", logging_steps: 500 }, {
    eval: true,
  });
  const b = await run(be, { ...o, output_dir: loud, logging_steps: 4 }, { eval: true });
  const recs = async (dir: string) =>
    (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n").map((l) => JSON.parse(l));
  const q = await recs(quiet), l = await recs(loud);
  // HF writes the evaluations and the summary only (it had also written the last step's loss)
  assert.deepEqual(q.map((r) => Object.keys(r).sort().join()), [
    "epoch,eval_loss,eval_perplexity,eval_runtime,step",
    "epoch,eval_loss,eval_perplexity,eval_runtime,step",
    "epoch,step,train_loss,train_runtime,train_steps_per_second",
  ]);
  assert.equal(q[2].train_loss, l.at(-1).train_loss);
  assert.equal(a.result.final_loss, b.result.final_loss);
  assert.match(await Deno.readTextFile(join(quiet, "report.md")), /eval_loss/);
  for (const r of [a, b]) r.model.dispose();
});

Deno.test("evaluate() lets timers run between batches (a queue worker's lease heartbeat had starved on cpu)", async () => {
  const be = await cpuBackend();
  const model = Transformer.init(mc, be, { seed: 3 });
  const trainer = createTrainer({
    model,
    config: getTrainingArgs({
      output_dir: Deno.makeTempDirSync(),
      max_steps: 1,
      save_strategy: "no",
      per_device_eval_batch_size: 1,
    }),
    train_dataset: train,
    eval_dataset: evalSet,
    progress: false,
  });
  let beats = 0;
  const beat = setInterval(() => beats++, 1);
  const t0 = performance.now();
  await trainer.evaluate();
  const ms = performance.now() - t0;
  clearInterval(beat);
  assert.ok(evalSet.num_blocks >= 8, "several batches");
  assert.ok(beats > 0 || ms < 2, `no timer ran during ${ms.toFixed(1)} ms of evaluation`);
  trainer.dispose();
  model.dispose();
});

Deno.test("label_smoothing_factor smooths the training and evaluation loss as HF's LabelSmoother", async () => {
  const be = await cpuBackend();
  const e = 0.1, V = mc.vocab_size, T = evalSet.block_size;
  const trainer = (label_smoothing_factor: number, o: Record<string, unknown> = {}) =>
    createTrainer({
      model: Transformer.init(mc, be, { seed: 3 }),
      config: getTrainingArgs({
        output_dir: Deno.makeTempDirSync(),
        max_steps: 1,
        save_strategy: "no",
        label_smoothing_factor,
        per_device_train_batch_size: 2,
        ...o,
      }),
      train_dataset: train,
      eval_dataset: evalSet,
      progress: false,
    });
  // eval_loss against the formula on the model's own logits: (1 - e) nll + e mean_v(-log p_v)
  const t = trainer(e);
  const got = (await t.evaluate()).eval_loss;
  let sum = 0, plain = 0, n = 0;
  for (let b = 0; b < evalSet.num_blocks; b++) {
    const ids = evalSet.block(b);
    const logits = t.model.forward(be.fromArray(Int32Array.from(ids), [1, T], "i32"));
    const x = await logits.toArray();
    logits.dispose();
    for (let i = 0; i + 1 < T; i++) {
      const row = Array.from(x.subarray(i * V, (i + 1) * V));
      const m = Math.max(...row), lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      const mean = row.reduce((a, v) => a + lse - v, 0) / V;
      sum += (1 - e) * (lse - row[ids[i + 1]]) + e * mean;
      plain += lse - row[ids[i + 1]];
      n++;
    }
  }
  assert.ok(Math.abs(got - sum / n) < 1e-5, `${got} vs ${sum / n}`);
  assert.ok(Math.abs(got - plain / n) > 1e-3, `the unsmoothed loss ${plain / n} is told apart`);
  // and training: one step with and without it gives other weights
  const [a, b] = [trainer(0), trainer(e)];
  await a.train();
  await b.train();
  const wa = await a.model.p("embed.weight").toArray(), wb = await b.model.p("embed.weight").toArray();
  assert.ok(wa.some((v, i) => v !== wb[i]), "smoothing changed the update");
  for (const x of [t, a, b]) {
    x.model.dispose();
    x.dispose();
  }
  // a compute_loss of one's own would never be smoothed: refused rather than ignored
  assert.throws(
    () =>
      createTrainer({
        model: Transformer.init(mc, be, { seed: 3 }),
        config: getTrainingArgs({
          output_dir: Deno.makeTempDirSync(),
          max_steps: 1,
          label_smoothing_factor: e,
        }),
        train_dataset: train,
        compute_loss: () => ({ loss: be.zeros([1]) }),
        progress: false,
      }),
    /label_smoothing_factor: compute_loss computes the loss itself/,
  );
});
