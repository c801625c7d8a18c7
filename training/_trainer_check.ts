/**
 * Private to `trainer.ts`: what `createTrainer` checks before anything runs, as a list of
 * problems (settings the Trainer cannot honour, weights nothing would train, blocks longer than
 * the model's positions, token ids outside its vocabulary, evaluation without data, an unknown
 * best-model metric), and the adapters it attaches (`quantization` then `lora`: QLoRA).
 * @module
 */
import type { TrainDataset } from "./_trainer_batch.ts";
import { Transformer } from "../models/transformer.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { isObject, refuseUnknownOptions, show } from "../util/problems.ts";
import type { TrainingConfig } from "./config_types.ts";
import { unsupportedSettings } from "./_config_validate.ts";
import { adapterParameters, applyLora, quantizeModel } from "./peft.ts";
import { PRESETS } from "../models/config.ts";
import { modelSource } from "../models/pretrained.ts";
import { isDirSync } from "../util/atomic.ts";
import { getIntervalSteps } from "./schedule.ts";
import { resolve } from "node:path";

/** The parts of `CreateTrainerOptions` that are checked. */
export interface TrainerInputs {
  model: Transformer;
  train_dataset: TrainDataset;
  eval_dataset?: TrainDataset | null;
  /** Metrics beyond the loss come from these: their names are known only once they run. */
  compute_metrics?: unknown;
  compute_loss?: unknown;
}

/** Optimizer updates in one epoch of `blocks` training rows. */
export function updatesPerEpoch(c: TrainingConfig, blocks: number): number {
  const batches = Math.ceil(blocks / c.per_device_train_batch_size);
  return Math.ceil(batches / c.gradient_accumulation_steps);
}

/** Updates of the whole run: `max_steps`, or `ceil(num_train_epochs * updates per epoch)`. */
export function runSteps(c: TrainingConfig, blocks: number): number {
  return c.max_steps > 0
    ? c.max_steps
    : Math.max(1, Math.ceil(c.num_train_epochs * updatesPerEpoch(c, blocks)));
}

/** Every problem of a trainer's inputs, one phrase each (empty when all is well). */
export function trainerProblems(opts: TrainerInputs, config: TrainingConfig): string[] {
  const problems: string[] = unsupportedSettings(config);
  const mc = opts.model.config, ds = opts.train_dataset;
  // Weights the optimizer cannot update must not be skipped silently: full fine-tuning would
  // quietly train only embeddings, norms and the head. Frozen f16 / 4-bit bases train through adapters.
  const m = opts.model, adapter = m.adapters.size > 0 || config.lora !== null;
  const f16 = [...m.params.values()].filter((t) => t.dtype === "f16").length;
  if ((f16 || m.quantized.size) && !adapter) {
    problems.push(
      `model: ${
        f16 + m.quantized.size
      } projection weights are stored as f16 or 4-bit and cannot be trained; ` +
        `add a lora section to train adapters on them, or load the model with dtype "f32" for full fine-tuning`,
    );
  }
  if (m.adapters.size && config.lora !== null) {
    problems.push(
      `lora: the model already has an adapter (loadAdapter); remove the lora section to train that one, ` +
        `or removeAdapter() to start a new one`,
    );
  } else if (m.adapters.size && !adapterParameters(m).some((t) => t.requiresGrad)) {
    problems.push(
      `model: its adapter is frozen; load it with loadAdapter(model, dir, { is_trainable: true })`,
    );
  }
  if (config.merge_adapter && !adapter) {
    problems.push(
      `merge_adapter: there is no adapter to merge; add a lora section or set merge_adapter: false`,
    );
  }
  if (config.quantization?.load_in_4bit && (m.quantized.size || f16)) {
    problems.push(
      `quantization: the model's weights are already ${m.quantized.size ? "4-bit" : "f16"}; ` +
        `load it in f32 (dtype "f32") or remove the quantization section`,
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
  const custom = opts.compute_metrics || opts.compute_loss;
  if (
    metric !== null && !custom && !["loss", "eval_loss", "perplexity", "eval_perplexity"].includes(metric)
  ) {
    problems.push(
      `metric_for_best_model: the Trainer computes eval_loss and eval_perplexity, not ${metric}; ` +
        `pass compute_metrics that returns it`,
    );
  }
  // ratios of the run's steps are rounded up each on its own: they must still line up
  const steps = runSteps(config, ds.num_blocks), every = getIntervalSteps(config, steps);
  if (
    config.load_best_model_at_end && config.save_strategy === "steps" && config.eval_strategy === "steps" &&
    every.eval !== null && every.save % every.eval !== 0
  ) {
    problems.push(
      `save_steps: ${config.save_steps} (every ${every.save} steps of ${steps}) is not a ` +
        `multiple of eval_steps ${config.eval_steps} (every ${every.eval}), so load_best_model_at_end would miss ` +
        `the best evaluation; give both as whole numbers of steps, save_steps a multiple of eval_steps`,
    );
  }
  if (opts.compute_loss && config.label_smoothing_factor > 0) {
    problems.push(
      `label_smoothing_factor: compute_loss computes the loss itself, so the Trainer would not smooth it ` +
        `(HF ignores it under compute_loss_func); smooth inside compute_loss or set label_smoothing_factor: 0`,
    );
  }
  return problems;
}

/**
 * Attach what the config asks for, as PEFT's `get_peft_model` after bitsandbytes' `load_in_4bit`:
 * 4-bit base weights (`quantization`), then fresh adapters (`lora`, seeded by `seed`). An adapter
 * already attached (`loadAdapter(..., { is_trainable: true })`) is left as it is and trained.
 */
export function attachAdapters(model: Transformer, config: TrainingConfig): void {
  const q = config.quantization;
  if (q?.load_in_4bit) quantizeModel(model, { kind: "nf4", doubleQuant: q.bnb_4bit_use_double_quant });
  if (config.lora) {
    // adapter_config.json names its base as PEFT's get_peft_model does: the id the model was
    // loaded by (a hub id or folder), else the folder loadModel read it from.
    // A local folder is named by its absolute path, so the adapter finds its base from any folder
    // (a relative one failed `export` elsewhere); a hub id stays as it is.
    const named = config.model && !Object.hasOwn(PRESETS, config.model)
      ? config.model
      : modelSource(model) ?? null;
    const base = named !== null && isDirSync(named) ? resolve(named) : named;
    applyLora(model, { base_model_name_or_path: base, ...config.lora }, {
      seed: config.seed,
      source: "the training config's lora section",
    });
  }
}

const CREATE_TRAINER_OPTIONS = [
  "model",
  "config",
  "train_dataset",
  "eval_dataset",
  "tokenizer",
  "hooks",
  "progress",
  "log",
  "handle_signals",
  "compute_loss",
  "compute_metrics",
] as const;

/**
 * `createTrainer`'s options object is an object with a model, and names no option it does not read.
 * @throws {TypeError} one line with the two ways to call it, or the unknown option
 */
export function checkTrainerArgs(opts: unknown): void {
  if (!isObject(opts) || !(opts.model instanceof Transformer)) {
    throw new TypeError(
      "Cannot create a trainer: pass createTrainer({ model, config, train_dataset }) (config from getTrainingArgs), " +
        `or createTrainer(model, tokenizer, args, rows); got ${
          isObject(opts) ? "options without a model" : show(opts)
        }`,
    );
  }
  refuseUnknownOptions(opts, CREATE_TRAINER_OPTIONS, "createTrainer");
}

/**
 * Notes on a tokenizer whose end-of-text id the model does not stop on: SFT rows end with the
 * tokenizer's `eos_token_id`, while `generate()` stops on the model's (config and
 * generation_config), so the trained model would run on past its answers. A preset built for a
 * trained tokenizer gets its ids with `withTokenIds`.
 */
export function tokenIdNotes(model: Transformer, tokenizer: Tokenizer | null): string[] {
  const eos = tokenizer?.eos_token_id;
  const ids = [model.config.eos_token_id, model.generation_config?.eos_token_id ?? null].flat()
    .filter((x): x is number => typeof x === "number");
  if (eos === null || eos === undefined || !ids.length || ids.includes(eos)) return [];
  return [
    `note: the tokenizer's end-of-text id ${eos} is not the model's eos_token_id (${ids.join(", ")}): ` +
    `rows end with ${eos}, but generate() stops on ${ids.join(" or ")}; build a new model's config with ` +
    `withTokenIds(config, tokenizer), or set eos_token_id`,
  ];
}

/** Parameter names HF leaves out of weight decay: biases and norm weights. */
export function isNoDecay(name: string): boolean {
  return name.endsWith(".bias") || /norm\.weight$/.test(name);
}
