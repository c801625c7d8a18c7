/**
 * Private to `trainer.ts`: what `createTrainer` checks before anything runs, as a list of
 * problems (settings the Trainer cannot honour, blocks longer than the model's positions, token
 * ids outside its vocabulary, evaluation without data, an unknown best-model metric).
 * @module
 */
import type { TextDataset } from "../data/text_dataset.ts";
import type { Transformer } from "../models/transformer.ts";
import type { TrainingConfig } from "./config_types.ts";

/** The parts of `CreateTrainerOptions` that are checked. */
export interface TrainerInputs {
  model: Transformer;
  train_dataset: TextDataset;
  eval_dataset?: TextDataset | null;
}

const UNSUPPORTED: [keyof TrainingConfig, (c: TrainingConfig) => boolean, string][] = [
  ["lora", (c) => c.lora !== null, "LoRA training is not in the Trainer yet; remove the lora section"],
  ["quantization", (c) => c.quantization !== null, "4-bit training needs LoRA; remove quantization"],
  ["fp16", (c) => c.fp16, "the Trainer computes in float32; set fp16: false"],
  [
    "gradient_checkpointing",
    (c) => c.gradient_checkpointing,
    "the model has no recompute scopes yet; set false",
  ],
];

/** Every problem of a trainer's inputs, one phrase each (empty when all is well). */
export function trainerProblems(opts: TrainerInputs, config: TrainingConfig): string[] {
  const problems: string[] = UNSUPPORTED.filter(([, bad]) => bad(config)).map(([k, , fix]) => `${k}: ${fix}`);
  const mc = opts.model.config, ds = opts.train_dataset;
  // Weights the optimizer cannot update must not be skipped silently (full fine-tuning would
  // quietly train only embeddings, norms and the head), and adapters are not trained here yet.
  const frozen = [...opts.model.params.values()].filter((t) => t.dtype === "f16").length +
    opts.model.quantized.size;
  if (frozen) {
    problems.push(
      `model: ${frozen} projection weights are stored as f16 or 4-bit and cannot be trained; ` +
        `load the model with dtype "f32" for full fine-tuning`,
    );
  }
  if (opts.model.adapters.size) {
    problems.push(
      `model: ${opts.model.adapters.size} LoRA adapters are attached, and the Trainer does not train adapters yet; ` +
        `train them with training/peft.ts and AdamW directly, or remove them (removeAdapter)`,
    );
  }
  for (const [what, d] of [["train_dataset", ds], ["eval_dataset", opts.eval_dataset]] as const) {
    if (!d) continue;
    if (d.block_size > mc.max_position_embeddings) {
      problems.push(
        `${what}: block_size ${d.block_size} exceeds the model's max_position_embeddings ${mc.max_position_embeddings}; ` +
          `set block_size (max_seq_length) <= ${mc.max_position_embeddings}`,
      );
    }
    let max = -1, min = 0;
    for (const id of d.ids) {
      if (id > max) max = id;
      if (id < min) min = id;
    }
    if (max >= mc.vocab_size || min < 0) {
      problems.push(
        `${what}: token id ${
          max >= mc.vocab_size ? max : min
        } of ${d.source} is outside the model's vocabulary ` +
          `[0, ${mc.vocab_size}); use the model's tokenizer`,
      );
    }
  }
  const wantsEval = config.eval_strategy !== "no";
  if (wantsEval && !opts.eval_dataset) {
    problems.push(
      `eval_strategy: "${config.eval_strategy}" needs an eval_dataset; pass one or set eval_strategy: no`,
    );
  }
  const metric = config.metric_for_best_model;
  if (metric !== null && !["loss", "eval_loss", "perplexity", "eval_perplexity"].includes(metric)) {
    problems.push(`metric_for_best_model: the Trainer computes eval_loss and eval_perplexity, not ${metric}`);
  }
  return problems;
}
