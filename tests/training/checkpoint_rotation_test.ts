/**
 * The checkpoints a run leaves, as HF's Trainer leaves them: the last step, a cut-short last epoch,
 * the best one kept from `save_total_limit`, and the best model loaded at the end.
 */
import { join } from "node:path";
import { getTrainingArgs, type TrainingConfig } from "../../training/config.ts";
import { createTrainer } from "../../training/trainer.ts";
import { assert } from "../_assert.ts";
import { cpu as cpuBackend } from "../_check.ts";
import { trainerFixture } from "./_trainer.ts";

const { train, evalSet, run } = trainerFixture;

Deno.test("checkpoints as HF's Trainer leaves them: the last step, a cut-short last epoch, the best one kept", async () => {
  const be = await cpuBackend();
  const names = (dir: string) => [...Deno.readDirSync(join(dir, "checkpoints"))].map((e) => e.name).sort();
  const evals = async (dir: string) =>
    (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n").map((l) => JSON.parse(l))
      .filter((r) => "eval_loss" in r).map((r) => r.step);
  const runIn = async (o: Partial<TrainingConfig>, evalSet = false) => {
    const dir = await Deno.makeTempDir();
    const { model } = await run(be, { output_dir: dir, gradient_accumulation_steps: 1, ...o }, {
      eval: evalSet,
    });
    model.dispose();
    return dir;
  };
  // save_strategy steps saves at max_steps too (the state after steps 11-12 was only in model/)
  let dir = await runIn({ max_steps: 12, save_strategy: "steps", save_steps: 5 });
  assert.deepEqual(names(dir), ["step-10", "step-12", "step-5"]);
  // a last epoch cut short by max_steps still ends: evaluated and saved there (the summary kept the last full epoch's eval_loss)
  const perEpoch = Math.ceil(train.num_blocks / 2);
  dir = await runIn({ max_steps: perEpoch + 3, eval_strategy: "epoch", save_strategy: "epoch" }, true);
  assert.deepEqual(await evals(dir), [perEpoch, perEpoch + 3]);
  assert.deepEqual(names(dir), [`step-${perEpoch + 3}`, `step-${perEpoch}`].sort());
  // metric_for_best_model without load_best_model_at_end: save_total_limit keeps the best (it was deleted
  // while trainer_state.json and report.md still named it); with it and a limit of 1, the end keeps the best alone
  const best = {
    eval_strategy: "steps",
    eval_steps: 2,
    save_strategy: "steps",
    save_steps: 2,
    save_total_limit: 1,
  } as const;
  dir = await runIn({ max_steps: 8, ...best, metric_for_best_model: "loss", greater_is_better: true }, true);
  assert.deepEqual(names(dir), ["step-2", "step-8"]);
  dir = await runIn({
    max_steps: 8,
    ...best,
    metric_for_best_model: "loss",
    greater_is_better: true,
    load_best_model_at_end: true,
  }, true);
  assert.deepEqual(names(dir), ["step-2"]);
});

Deno.test("logging_steps, eval_steps and save_steps below 1 are ratios of max_steps, rounded up (HF)", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  const { model } = await run(be, {
    output_dir: dir,
    max_steps: 9,
    gradient_accumulation_steps: 1,
    logging_steps: 0.25, // ceil(2.25) = 3
    eval_strategy: "steps",
    eval_steps: 0.2, // ceil(1.8) = 2
    save_strategy: "steps",
    save_steps: 0.4, // ceil(3.6) = 4, plus the end
    load_best_model_at_end: true,
  }, { eval: true });
  model.dispose();
  const recs = (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.deepEqual(recs.filter((r) => "loss" in r && !("eval_loss" in r)).map((r) => r.step), [3, 6, 9]);
  assert.deepEqual(recs.filter((r) => "eval_loss" in r).map((r) => r.step), [2, 4, 6, 8]);
  const saved = [...Deno.readDirSync(join(dir, "checkpoints"))].map((e) => e.name).sort();
  assert.ok(saved.includes("step-4") && saved.includes("step-8") && saved.includes("step-9"), saved.join());
  // rounded up each on its own, 0.1 and 0.2 of 15 steps are 2 and 3: checkpoints would miss the best
  // evaluation under load_best_model_at_end (it had ended on step 15's model, best_model_checkpoint null)
  await assert.rejects(
    run(be, {
      output_dir: await Deno.makeTempDir(),
      max_steps: 15,
      eval_strategy: "steps",
      eval_steps: 0.1,
      save_strategy: "steps",
      save_steps: 0.2,
      load_best_model_at_end: true,
    }, { eval: true }),
    RangeError,
    "save_steps: 0.2 (every 3 steps of 15) is not a multiple of eval_steps 0.1 (every 2)",
  );
});

Deno.test("load_best_model_at_end restores the best checkpoint, which save_total_limit never deletes", async () => {
  const be = await cpuBackend();
  const dir = await Deno.makeTempDir();
  const { result, model } = await run(be, {
    output_dir: dir,
    max_steps: 6,
    learning_rate: 0.3, // large enough that the eval loss gets worse after improving
    eval_strategy: "steps",
    eval_steps: 1,
    save_strategy: "steps",
    save_steps: 1,
    save_total_limit: 1,
    load_best_model_at_end: true,
  }, { eval: true });
  const recs = (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n").map((l) =>
    JSON.parse(l)
  )
    .filter((r) => "eval_loss" in r);
  const best = recs.reduce((a, b) => (b.eval_loss < a.eval_loss ? b : a));
  assert.equal(result.checkpoint_path, join(dir, "checkpoints", `step-${best.step}`));
  const kept = [...Deno.readDirSync(join(dir, "checkpoints"))].map((e) => e.name).sort();
  assert.ok(kept.includes(`step-${best.step}`) && kept.includes("step-6") && kept.length <= 2, `${kept}`);
  // the model now holds the best weights: evaluating it gives the best eval loss again
  const t = createTrainer({
    model,
    config: getTrainingArgs({ output_dir: dir }),
    train_dataset: train,
    eval_dataset: evalSet,
  });
  assert.equal(Math.fround((await t.evaluate()).eval_loss), Math.fround(best.eval_loss));
  await Deno.remove(dir, { recursive: true });
});
