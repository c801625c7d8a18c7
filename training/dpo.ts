/**
 * Direct Preference Optimization, as TRL's `DPOTrainer` (Rafailov et al. 2023): the Trainer with
 * a `compute_loss` that compares the policy's log-probabilities of chosen and rejected completions
 * with a reference model's.
 *
 * - Policy: the model with its trainable adapters, or the whole model. Reference: with adapters,
 *   the same model with them switched off (`model.adapters` emptied for one forward under `noGrad`:
 *   no second copy of the weights, PEFT's `disable_adapter()`); without, a frozen copy of the
 *   weights taken before training ({@linkcode createReferenceModel}, TRL's `create_reference_model`,
 *   or `ref_model`); or log-probs computed once before training (`precompute_ref_log_probs: true`),
 *   which needs neither.
 * - One forward per micro-batch for the policy over chosen and rejected sequences concatenated (TRL
 *   `concatenated_forward`); log-probs summed over completion tokens (`kernels/logprob.ts`); the
 *   loss (`sigmoid` with cDPO `label_smoothing`, `hinge`, `ipo` on length-averaged log-ratios) and
 *   TRL's logged statistics in one kernel (`kernels/preference.ts`); nothing read back per step.
 * - Logged as TRL: `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`,
 *   `logps/chosen`, `logps/rejected`, `logits/chosen`, `logits/rejected` (`eval_` + name in
 *   evaluations).
 * - Dropout off in the policy unless `disable_dropout: false` (TRL's default, which also switches
 *   off `lora_dropout`); the reference never drops. NEFTune (`neftune_noise_alpha`) noises the
 *   policy's embeddings only, whatever `disable_dropout` says; the reference sees no noise.
 *
 * @module
 */
import { noGrad, release } from "../kernels/autograd.ts";
import type { Backend } from "../kernels/backend.ts";
import { copy, mul } from "../kernels/elementwise.ts";
import { tokenLogProbs } from "../kernels/logprob.ts";
import { preferenceLoss } from "../kernels/preference.ts";
import { sum } from "../kernels/reduce.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { type ForwardOptions, Transformer } from "../models/transformer.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { PreferenceDataset } from "../data/preference.ts";
import { createProgress } from "../util/progress.ts";
import { formatBytes } from "../util/format.ts";
import type { TrainDataset } from "./_trainer_batch.ts";
import { getTrainingArgs, type TrainingConfig, validateTrainingConfig } from "./config.ts";
import type { TrainerHooks } from "./hooks.ts";
import { type ComputeLoss, createTrainer, type Trainer, type TrainResult } from "./trainer.ts";
import { dpoRunInputs, refuseDpoSettings } from "./_dpo_run.ts";

/**
 * TRL `DPOConfig` defaults that differ from `TrainingArguments` (what `cli dpo` starts from):
 * `learning_rate` 1e-6, `logging_steps` 10, `gradient_checkpointing` true.
 */
export const DPO_CONFIG_DEFAULTS: Readonly<Partial<TrainingConfig>> = Object.freeze({
  learning_rate: 1e-6,
  logging_steps: 10,
  gradient_checkpointing: true,
});

/**
 * A DPO config as TRL's `DPOConfig(...)` makes one: {@linkcode DPO_CONFIG_DEFAULTS} under
 * `overrides`, validated. `getTrainingArgs` starts from `TrainingArguments`' defaults instead
 * (`learning_rate` 5e-5, 50 times DPO's).
 * @example
 * ```ts
 * import { getDpoArgs } from "./dpo.ts";
 * const c = getDpoArgs({ beta: 0.2 });
 * if (c.learning_rate !== 1e-6 || c.beta !== 0.2 || !c.gradient_checkpointing) throw new Error();
 * ```
 */
export function getDpoArgs(
  overrides: Partial<TrainingConfig> | Record<string, unknown> = {},
): TrainingConfig {
  return getTrainingArgs({ ...DPO_CONFIG_DEFAULTS, ...overrides }, { file: "getDpoArgs(overrides)" });
}

/** The DPO fields of a {@linkcode TrainingConfig} the loss reads. */
export type DpoLossConfig = Pick<
  TrainingConfig,
  "beta" | "loss_type" | "label_smoothing" | "disable_dropout"
>;

/** Options of {@linkcode dpoLoss}. */
export interface DpoLossOptions {
  /**
   * Reference log-probs computed up front, per dataset: for pair i, `[2i]` chosen and `[2i + 1]`
   * rejected (see {@linkcode precomputeRefLogProbs}); datasets without an entry get a reference
   * forward per micro-batch.
   */
  ref_log_probs?: Map<TrainDataset, Float32Array>;
  /**
   * The reference model (TRL's `ref_model`): a frozen model asked for the log-probs the policy is
   * compared with; without it, the policy with its adapters switched off.
   */
  ref_model?: Transformer | null;
}

/**
 * A frozen copy of `model`'s weights on its backend, as TRL's `create_reference_model` deep-copies
 * the policy for DPO without an adapter: the reference keeps the weights training started from.
 * @param model a model without adapters or 4-bit weights
 * @returns a new model (dispose it after training)
 * @throws {RangeError} for a model with adapters (their reference is the model without them) or
 *   4-bit weights
 */
export function createReferenceModel(model: Transformer): Transformer {
  if (model.adapters.size || model.quantized.size) {
    throw new RangeError(
      model.adapters.size
        ? "Cannot copy the model as a DPO reference: it has adapters, whose reference is the model with them " +
          "switched off (no copy needed)"
        : "Cannot copy the model as a DPO reference: it has 4-bit weights, which train only through an adapter " +
          "(QLoRA); add a lora section",
    );
  }
  const params = new Map([...model.params].map(([k, t]) => [k, copy(t)]));
  return new Transformer(model.config, params, model.backend);
}

/** Run `fn` with the model's adapters switched off (the reference model). */
function withoutAdapters<T>(model: Transformer, fn: () => T): T {
  const saved = [...model.adapters];
  model.adapters.clear();
  try {
    return fn();
  } finally {
    for (const [k, a] of saved) model.adapters.set(k, a);
  }
}

/** A reshaped view that takes over `t` (released when off the graph). */
function view(t: Tensor, shape: readonly number[]): Tensor {
  const v = t.reshape(shape);
  release(t);
  return v;
}

/**
 * Summed completion log-probs of each row of `ids` `[R, T]` given shifted `targets` `[R * T]`
 * (-100: not a completion token): `[R]`, and each position's mean logit when asked.
 */
function sequenceLogProbs(
  model: Transformer,
  ids: Tensor,
  targets: Tensor,
  fwd: ForwardOptions,
  withMean = false,
): { logps: Tensor; mean_logits: Tensor | null } {
  const [R, T] = ids.shape;
  const logits = view(model.forward(ids, fwd), [R * T, model.config.vocab_size]);
  const { logps, mean_logits } = tokenLogProbs(logits, targets, { mean_logits: withMean });
  release(logits); // the gradient was saved: the logits can go (as the causal-LM loss does)
  const perSeq = sum(view(logps, [R, T]), 1);
  return { logps: perSeq, mean_logits };
}

function expectPairs(ds: TrainDataset): PreferenceDataset {
  if (!(ds instanceof PreferenceDataset)) {
    throw new TypeError(
      `Cannot compute the DPO loss on ${ds.source}: it holds no preference pairs; build a PreferenceDataset`,
    );
  }
  return ds;
}

/** Mean of `mean` over the valid targets of the chosen rows and of the rejected rows: two `[1]`. */
function meanLogits(be: Backend, mean: Tensor, targets: Int32Array, half: number): [Tensor, Tensor] {
  return [0, 1].map((side) => {
    const w = new Float32Array(targets.length);
    let n = 0;
    for (let i = side * half; i < (side + 1) * half; i++) if (targets[i] !== -100) n++;
    for (let i = side * half; i < (side + 1) * half; i++) if (targets[i] !== -100) w[i] = 1 / n;
    const wt = be.fromArray(w, [w.length]), prod = mul(mean, wt);
    const s = sum(prod, 0, { keepdim: true });
    for (const t of [wt, prod]) t.dispose();
    return s;
  }) as [Tensor, Tensor];
}

/**
 * The DPO loss of a micro-batch of preference pairs, to pass as the Trainer's `compute_loss`
 * (TRL `DPOTrainer.compute_loss`): the policy forward of chosen and rejected sequences in one
 * batch, the reference log-probs (precomputed, or a forward with the adapters off), then the loss
 * and TRL's statistics, all on the device.
 *
 * @param config `beta`, `loss_type`, `label_smoothing`, `disable_dropout`
 * @param opts `ref_log_probs`: precomputed reference log-probs per dataset
 * @returns the `compute_loss` function
 * @throws {TypeError} (when called) for a dataset that is not a {@linkcode PreferenceDataset}
 */
export function dpoLoss(config: DpoLossConfig, opts: DpoLossOptions = {}): ComputeLoss {
  const refs = opts.ref_log_probs ?? new Map();
  const refModel = opts.ref_model ?? null;
  const compute: ComputeLoss = (model, idx, ctx) => {
    const ds = expectPairs(ctx.dataset), be = model.backend;
    const b = ds.collate(idx), R = 2 * idx.length, T = b.T;
    const ids = be.fromArray(b.input_ids, [R, T], "i32");
    const targets = be.fromArray(b.targets, [R * T], "i32");
    const lengths = config.loss_type === "ipo" ? be.fromArray(b.completion_lengths, [R]) : null;
    const pre = refs.get(ds);
    const ref = pre
      ? be.fromArray(
        Float32Array.from({ length: R }, (_, r) => pre[2 * idx[r % idx.length] + (r < idx.length ? 0 : 1)]),
        [R],
      )
      : noGrad(() =>
        refModel
          ? sequenceLogProbs(refModel, ids, targets, {}).logps
          : withoutAdapters(model, () => sequenceLogProbs(model, ids, targets, {}).logps)
      );
    const fwd: ForwardOptions = ctx.training
      ? {
        gradient_checkpointing: ctx.forward.gradient_checkpointing,
        dropout: config.disable_dropout ? null : ctx.forward.dropout,
        neftune: ctx.forward.neftune, // the policy's embeddings only; the reference sees none
      }
      : {};
    const policy = sequenceLogProbs(model, ids, targets, fwd, true);
    const { loss, stats } = preferenceLoss(policy.logps, ref, {
      loss_type: config.loss_type,
      beta: config.beta,
      label_smoothing: config.label_smoothing,
      lengths,
    });
    release(policy.logps);
    const [chosen, rejected] = noGrad(() => meanLogits(be, policy.mean_logits!, b.targets, idx.length * T));
    for (const t of [ids, targets, lengths, ref, policy.mean_logits]) t?.dispose();
    return { loss, metrics: { ...stats, "logits/chosen": chosen, "logits/rejected": rejected } };
  };
  compute.reference = refModel; // counted in the Trainer's memory report
  return compute;
}

/**
 * Reference log-probs of every pair of `dataset`, computed once (TRL `precompute_ref_log_probs`):
 * the model with its adapters switched off, in batches, under `noGrad`.
 * @param model the model (its adapters, if any, are skipped), or the reference model
 * @param dataset the pairs
 * @param opts `batch_size` (default 8), `progress` (stderr line; default false)
 * @returns for pair i, `[2i]` the chosen and `[2i + 1]` the rejected summed completion log-prob
 */
export async function precomputeRefLogProbs(
  model: Transformer,
  dataset: PreferenceDataset,
  opts: { batch_size?: number; progress?: boolean } = {},
): Promise<Float32Array> {
  const out = new Float32Array(2 * dataset.num_blocks), B = opts.batch_size ?? 8, be = model.backend;
  const progress = createProgress("reference log-probs", {
    total: dataset.num_blocks,
    unit: "pairs",
    enabled: opts.progress === true,
  });
  for (let i = 0; i < dataset.num_blocks; i += B) {
    const idx = Uint32Array.from({ length: Math.min(B, dataset.num_blocks - i) }, (_, k) => i + k);
    const b = dataset.collate(idx), n = idx.length;
    const ids = be.fromArray(b.input_ids, [2 * n, b.T], "i32"),
      targets = be.fromArray(b.targets, [2 * n * b.T], "i32");
    const lp = noGrad(() => withoutAdapters(model, () => sequenceLogProbs(model, ids, targets, {}).logps));
    const v = await lp.toArray();
    for (const t of [ids, targets, lp]) t.dispose();
    for (let r = 0; r < n; r++) {
      out[2 * (i + r)] = v[r];
      out[2 * (i + r) + 1] = v[n + r];
    }
    progress.update(i + n);
  }
  progress.done();
  return out;
}

/** Options of {@linkcode createDpoTrainer}: those of `createTrainer`, with preference datasets. */
export interface CreateDpoTrainerOptions {
  /** The policy (adapters from the config's `lora` section are attached here). */
  model: Transformer;
  /** The run's settings, DPO fields included (validated here). */
  config: TrainingConfig;
  /** Training pairs. */
  train_dataset: PreferenceDataset;
  /** Evaluation pairs (needed when `eval_strategy` is not `no`). */
  eval_dataset?: PreferenceDataset | null;
  /** Saved beside the final model when given. */
  tokenizer?: Tokenizer | null;
  /** Callbacks, as `createTrainer`'s. */
  hooks?: TrainerHooks;
  /** Progress lines on stderr (default true). */
  progress?: boolean;
  /** Notes for the user, one line each (default stderr). */
  log?: (line: string) => void;
  /** Checkpoint and return on SIGINT / SIGTERM (default false). */
  handle_signals?: boolean;
  /**
   * TRL's `ref_model`, for a policy without adapters (the caller disposes it). Default: a frozen
   * copy of the policy's weights made here ({@linkcode createReferenceModel}, disposed with the
   * trainer), unless `precompute_ref_log_probs` needs none.
   */
  ref_model?: Transformer | null;
}

/**
 * Build a Trainer for DPO: `createTrainer` with {@linkcode dpoLoss}, adapters attached from the
 * config, and with `precompute_ref_log_probs` the reference log-probs of both datasets computed now.
 *
 * @param opts model, config, preference datasets, tokenizer, hooks
 * @returns the trainer (call `train()`)
 * @throws {RangeError} when an adapter trains model weights (a `lora` section with `bias` or
 *   `modules_to_save`) without `precompute_ref_log_probs: true`; when `ref_model` is given with an
 *   adapter (TRL refuses both), shares the policy's weights, or reads other token ids or another
 *   backend; or as `createTrainer`
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "../models/config.ts";
 * import { Transformer } from "../models/transformer.ts";
 * import { PreferenceDataset } from "../data/preference.ts";
 * import { getTrainingArgs } from "./config.ts";
 * import { createDpoTrainer } from "./dpo.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { vocab_size: 16, hidden_size: 16, num_hidden_layers: 1,
 *   num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 8 }), be);
 * const pair = { chosen_input_ids: Int32Array.of(1, 2, 3), chosen_labels: Int32Array.of(-100, 2, 3),
 *   rejected_input_ids: Int32Array.of(1, 4), rejected_labels: Int32Array.of(-100, 4), source: "p:1" };
 * const config = getTrainingArgs({ output_dir: await Deno.makeTempDir(), max_steps: 1, logging_steps: 1,
 *   save_strategy: "no", lora: { r: 4 } });
 * const trainer = await createDpoTrainer({ model, config, progress: false,
 *   train_dataset: new PreferenceDataset([pair, pair], { pad_token_id: 0 }) });
 * const r = await trainer.train();
 * if (Math.abs(r.final_loss - Math.LN2) > 1e-6) throw new Error(`${r.final_loss}`); // B = 0: policy = reference
 * await Deno.remove(config.output_dir, { recursive: true });
 * ```
 */
export async function createDpoTrainer(opts: CreateDpoTrainerOptions): Promise<Trainer> {
  const config = validateTrainingConfig(opts.config, { file: "createDpoTrainer(config)", warn: () => {} });
  const model = opts.model;
  refuseDpoSettings(config, model);
  const refs = new Map<TrainDataset, Float32Array>();
  const full = config.lora === null && model.adapters.size === 0;
  if (opts.ref_model && !full) {
    throw new RangeError(
      "Cannot train DPO: a ref_model was given with an adapter, whose reference is the model with the " +
        "adapter switched off (as TRL, which refuses both); drop ref_model",
    );
  }
  const ref = opts.ref_model;
  if (ref && (ref.backend !== model.backend || ref.config.vocab_size !== model.config.vocab_size)) {
    throw new RangeError(
      `Cannot train DPO: ref_model must read the policy's token ids on its backend (vocab_size ${ref.config.vocab_size} ` +
        `on ${ref.backend.name}, the policy's ${model.config.vocab_size} on ${model.backend.name}); load it like the policy`,
    );
  }
  if (
    ref && (ref === model || [...ref.params].some(([k, t]) => model.params.get(k)?.storage === t.storage))
  ) {
    throw new RangeError(
      "Cannot train DPO: ref_model shares its weights with the policy, so it would move with it (as TRL, " +
        "which refuses the same object); pass a second copy (createReferenceModel(model)) or leave ref_model out",
    );
  }
  // full fine-tuning: the reference is the weights training starts from (TRL deep-copies them)
  const owned = full && !opts.ref_model && !config.precompute_ref_log_probs
    ? createReferenceModel(model)
    : null;
  const refModel = opts.ref_model ?? owned;
  if (owned) {
    const bytes = [...owned.params.values()].reduce((n, t) => n + t.bytes, 0);
    (opts.log ?? ((line: string) => console.error(`fledge: ${line}`)))(
      `DPO reference: a frozen copy of the weights (${
        formatBytes(bytes)
      }), as TRL's create_reference_model ` +
        `(precompute_ref_log_probs: true needs none)`,
    );
  }

  let trainer: Trainer;
  try {
    trainer = createTrainer({
      model,
      config,
      train_dataset: opts.train_dataset,
      eval_dataset: opts.eval_dataset,
      tokenizer: opts.tokenizer,
      hooks: opts.hooks,
      progress: opts.progress,
      log: opts.log,
      handle_signals: opts.handle_signals,
      compute_loss: dpoLoss(config, { ref_log_probs: refs, ref_model: refModel }),
    });
  } catch (e) {
    owned?.dispose();
    throw e;
  }
  if (owned) {
    const dispose = trainer.dispose.bind(trainer);
    trainer.dispose = () => {
      dispose();
      owned.dispose();
    };
  }
  if (config.precompute_ref_log_probs) {
    const sets: [PreferenceDataset, number][] = [[opts.train_dataset, config.per_device_train_batch_size]];
    if (opts.eval_dataset) sets.push([opts.eval_dataset, config.per_device_eval_batch_size]);
    for (const [ds, batch_size] of sets) {
      refs.set(
        ds,
        await precomputeRefLogProbs(refModel ?? model, ds, { batch_size, progress: opts.progress ?? true }),
      );
    }
  }
  return trainer;
}

/** TRL's logged DPO statistics (without the `eval_` prefix). */
const DPO_METRIC = /^(rewards|logps|logits)\//;

/** Options of {@linkcode runDpo}. */
export interface RunDpoOptions {
  /** Progress lines on stderr (default true). */
  progress?: boolean;
  /** Notes for the user, one line each (default stderr). */
  log?: (line: string) => void;
  /** Checkpoint and return on SIGINT / SIGTERM (default false). */
  handle_signals?: boolean;
}

/**
 * A DPO run from its config, as `runTraining` for causal-LM training (`deno task cli dpo`): the
 * backend, the model (`model`: a folder or hub id; a preset starts from random weights and needs
 * `tokenizer`), the tokenizer (`tokenizer`, else the model's), the preference pairs of `dataset` (a
 * file, or a folder's `train` split; evaluation on a folder's `validation` split, else 10% of the
 * rows by hash), then {@linkcode createDpoTrainer} and `train()` into `output_dir`.
 *
 * @param config a validated config with `model` and `dataset` set ({@linkcode getDpoArgs} gives
 *   TRL `DPOConfig`'s defaults, as `cli dpo` starts from)
 * @param opts `progress`, `log`, `handle_signals`
 * @returns the train result; its `metrics_summary` also holds the last logged DPO statistics
 *   (`rewards/accuracies`, ..., and `eval_rewards/accuracies`, ... after an evaluation)
 * @throws {RangeError} when `model` or `dataset` is unset, `max_seq_length` exceeds the model's
 *   positions, there are no pairs, or as {@linkcode createDpoTrainer}
 * @throws {TypeError} for a bad row (naming `file:line` and the field)
 */
export async function runDpo(config: TrainingConfig, opts: RunDpoOptions = {}): Promise<TrainResult> {
  const log = opts.log ?? ((line: string) => console.error(`fledge: ${line}`));
  const inputs = await dpoRunInputs(config, { log, progress: opts.progress ?? true });
  // The last logged DPO statistics (train and eval) join the summary, as TRL's final metrics.
  const last: Record<string, number> = {};
  const keep = (prefix: string) => (_: unknown, rec: Record<string, number>) => {
    for (const [k, v] of Object.entries(rec)) {
      if (DPO_METRIC.test(k.slice(prefix.length)) && k.startsWith(prefix)) last[k] = v;
    }
  };
  const trainer = await createDpoTrainer({
    model: inputs.model,
    config,
    train_dataset: inputs.train,
    eval_dataset: inputs.eval,
    tokenizer: inputs.tokenizer,
    hooks: { on_log: keep(""), on_evaluate: keep("eval_") },
    progress: opts.progress,
    log: opts.log,
    handle_signals: opts.handle_signals,
  }).catch((e) => {
    inputs.model.dispose();
    throw e;
  });
  try {
    const r = await trainer.train();
    Object.assign(r.metrics_summary, last);
    return r;
  } finally {
    trainer.dispose();
    inputs.model.dispose();
  }
}
