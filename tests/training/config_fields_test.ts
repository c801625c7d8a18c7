/**
 * TRL's and datasets' fields in a training config: TRL's current names read as fledge's fields,
 * its fields fledge lacks named as such (not as typos of other fields), the sample caps, and DPO's
 * memory plan.
 */
import { assert, assertClose, caught } from "../_assert.ts";
import { getMemoryOptimizedConfig, validateTrainingConfig } from "../../training/config.ts";
import { getDpoArgs } from "../../training/dpo.ts";

const quiet = { warn: () => {} };

Deno.test("validateTrainingConfig() reads TRL's names and names the TRL fields fledge lacks", () => {
  // both names: one problem (not also an unknown key); TRL's None is refused naming the key as written
  const both = caught(() => validateTrainingConfig({ max_length: 64, max_seq_length: 128 }, quiet)).message;
  assert.match(both, /1 problem/);
  assert.match(both, /max_length: both "max_length" and "max_seq_length" are set; keep only one of them/);
  // TRL's names for what fledge has: the trl sft / trl dpo scripts' model and dataset keys, a
  // loss_type list of one (TRL >= 0.29), truncation_mode keep_start (fledge's cut); they had been
  // unknown keys
  const trl = validateTrainingConfig({
    model_name_or_path: "tiny",
    dataset_name: "d.jsonl",
    loss_type: ["hinge"],
    truncation_mode: "keep_start",
    padding_free: false,
    rpo_alpha: null,
  }, quiet);
  assert.deepEqual([trl.model, trl.dataset, trl.loss_type], ["tiny", "d.jsonl", "hinge"]);
  // TRL fields fledge lacks are named as such, with what fledge does (they had read as typos:
  // "gradient_checkpointing_kwargs: did you mean gradient_checkpointing?")
  const lacks = caught(() =>
    validateTrainingConfig({
      rpo_alpha: 1,
      truncation_mode: "keep_end",
      gradient_checkpointing_kwargs: { use_reentrant: false },
      loss_type: ["sigmoid", "sft"],
    }, quiet)
  ).message;
  assert.match(lacks, /4 problems/);
  assert.match(lacks, /rpo_alpha: RPO .* is not implemented in fledge's DPO; remove it/);
  assert.match(
    lacks,
    /truncation_mode: fledge cuts each sequence to max_length keeping its start .*keep_end is not implemented; remove it/,
  );
  assert.match(
    lacks,
    /gradient_checkpointing_kwargs: fledge's gradient_checkpointing has no options .*; remove it/,
  );
  assert.match(lacks, /loss_type: expected one of/);
  // SFT's loss_type (TRL >= 0.22) had met DPO's enum: "expected one of sigmoid, hinge, ipo"
  assert.match(
    caught(() => validateTrainingConfig({ loss_type: "nll" }, quiet)).message,
    /loss_type: nll is TRL SFTConfig's loss_type: fledge's SFT trains with nll, its only loss \(remove loss_type\)/,
  );
});

Deno.test("validateTrainingConfig() accepts max_train_samples / max_eval_samples and rejects non-positive ones", () => {
  const c = validateTrainingConfig(
    { max_train_samples: 100, max_eval_samples: 20, eval_strategy: "steps", eval_steps: 10 },
    { file: "run.yaml" },
  );
  assert.equal(c.max_train_samples, 100);
  assert.equal(c.max_eval_samples, 20);
  assert.throws(
    () => validateTrainingConfig({ max_eval_samples: 0 }, { file: "run.yaml" }),
    /run\.yaml.*max_eval_samples/s,
  );
});

Deno.test("getMemoryOptimizedConfig() plans DPO: two sequences per pair, and full fine-tuning's reference copy", () => {
  const opts = { memory_gb: 80, params: 1.5e9 };
  const full = getDpoArgs({ lora: null, precompute_ref_log_probs: false });
  const sft = getMemoryOptimizedConfig(full, opts).estimate;
  const dpo = getMemoryOptimizedConfig(full, { ...opts, trainer: "dpo" }).estimate;
  const pre =
    getMemoryOptimizedConfig({ ...full, precompute_ref_log_probs: true }, { ...opts, trainer: "dpo" })
      .estimate;
  assertClose(dpo.weights_gb - pre.weights_gb, 1.5e9 * 4 / 2 ** 30, { atol: 1e-9, msg: "the copy, in f32" });
  assertClose(dpo.activations_gb, 2 * sft.activations_gb, { rtol: 1e-12, msg: "chosen and rejected rows" });
  assert.throws(
    () => getMemoryOptimizedConfig(full, { ...opts, trainer: "ppo" as "dpo" }),
    /trainer must be "sft" or "dpo", got "ppo"/,
  );
});
