/**
 * The Trainer: causal-LM training of a {@linkcode Transformer} on a {@linkcode TextDataset}, with
 * the semantics of Hugging Face `Trainer` driven by a {@linkcode TrainingConfig}: AdamW (no weight
 * decay for biases and norm weights, as HF's `get_decay_parameter_names`) or SGD, the HF learning
 * rate schedules with warmup, gradient accumulation (each micro-batch's loss scaled by 1 / the
 * micro-batches of the update), global-norm clipping on the device, `max_steps` or
 * `num_train_epochs`, logging / evaluation / saving by steps or epochs, early stopping, best-model
 * tracking, checkpoints with an exact resume, hooks, a progress line on stderr and one run folder:
 * `config.yaml`, `metrics.jsonl`, `checkpoints/step-N/`, `model/`, `report.md`, `curves.svg`.
 *
 * Per update nothing is read back from the device; the loss (summed on the device over the logging
 * interval) and the gradient norm are read once per log record.
 *
 * Data order: each epoch visits every block once in the order `train_dataset.order(epoch,
 * data_seed ?? seed)`, in batches of `per_device_train_batch_size` (the last may be smaller); an
 * update takes `gradient_accumulation_steps` batches but never crosses an epoch's end. Steps with
 * `max_steps: -1` are `ceil(num_train_epochs * updates per epoch)`.
 *
 * @module
 */
import { join } from "node:path";
import { backward, noGrad } from "../kernels/autograd.ts";
import { accumulate, dropoutSeed } from "../kernels/elementwise.ts";
import { AdamW, gradClip, gradNormSquared, sgdStep } from "../kernels/optim.ts";
import type { Tensor } from "../kernels/tensor.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { type ForwardOptions, Transformer } from "../models/transformer.ts";
import type { DataPosition } from "../data/text_dataset.ts";
import { deviceBatch, type TrainDataset, weightOf } from "./_trainer_batch.ts";

export type { CustomRows, TrainDataset } from "./_trainer_batch.ts";
import type { RowDataset } from "../data/row_dataset.ts";
import { addMetrics, rowsDataset } from "./_trainer_rows.ts";
import { trainingMemory } from "./memory.ts";
import type { TextDataset } from "../data/text_dataset.ts";
import {
  keepOnlyBest,
  loadCheckpoint,
  rotateCheckpoints,
  saveCheckpoint,
  type TrainerState,
} from "./checkpoint.ts";
import { saveTrainingConfig, type TrainingConfig, validateTrainingConfig } from "./config.ts";
import {
  attachAdapters,
  checkTrainerArgs,
  isNoDecay,
  runSteps,
  tokenIdNotes,
  trainerProblems,
  updatesPerEpoch,
} from "./_trainer_check.ts";
import { callHook, type HookContext, type TrainerHooks } from "./hooks.ts";
import { nonFinite, NonFiniteError, refuseNonFiniteLog } from "./_nonfinite.ts";

export { isNoDecay, NonFiniteError };
import { createLrSchedule, getIntervalSteps, type LrSchedule } from "./schedule.ts";
import {
  clearOutputDir,
  guardWrite,
  listenForSignals,
  loggedLoss,
  logRecord,
  MetricsFile,
  prepareOutputDir,
  summaryOf,
  updateBest,
  writeRunEnd,
} from "./_trainer_io.ts";
import { resumeFrom, tokenizerFingerprint } from "./_trainer_resume.ts";
import { trainableParameters } from "./peft.ts";
import { acquireLock } from "../util/lock.ts";
import { createProgress } from "../util/progress.ts";

/** Options of {@linkcode createTrainer}. */
export interface CreateTrainerOptions {
  /** The model to train (its parameters are updated in place). */
  model: Transformer;
  /** The run's settings (validated here). */
  config: TrainingConfig;
  /** Training blocks. */
  train_dataset: TrainDataset;
  /** Evaluation blocks (needed when `eval_strategy` is not `no`). */
  eval_dataset?: TrainDataset | null;
  /** Saved beside the final model when given. */
  tokenizer?: Tokenizer | null;
  /** Callbacks; see {@linkcode TrainerHooks}. */
  hooks?: TrainerHooks;
  /** Print the progress line on stderr (default true). */
  progress?: boolean;
  /**
   * Notes for the user (a stale lock taken over, checkpoints skipped on resume, leftovers removed,
   * signals): one line each; default stderr.
   */
  log?: (line: string) => void;
  /**
   * On SIGINT / SIGTERM finish the current step, save a checkpoint and return with `interrupted`
   * set (a second signal exits at once). For command lines; default false.
   */
  handle_signals?: boolean;
  /**
   * The loss of one micro-batch, as TRL's trainers override `compute_loss` (DPO, ...): given rows
   * `idx` of the dataset, a `[1]` loss tensor (recorded for the backward while training) and device
   * scalars to log under their names (means over each logging interval; `eval_` + name in
   * evaluations). Default: the causal-LM loss of the rows. Micro-batches are weighted by rows.
   */
  compute_loss?: ComputeLoss;
  /**
   * Metrics beyond the loss, computed at every evaluation (HF `compute_metrics`, given the model
   * rather than logits: generation-based metrics such as ROUGE or BLEU need to decode). Returned
   * names are logged with `eval_` in front and may be `metric_for_best_model`.
   */
  compute_metrics?: (model: Transformer) => Promise<Record<string, number>>;
}

/** What a {@linkcode ComputeLoss} is told about the micro-batch. */
export interface LossContext {
  /** The dataset the rows come from (`train_dataset` or `eval_dataset`). */
  dataset: TrainDataset;
  /** Training (dropout on, gradients recorded) or evaluation. */
  training: boolean;
  /** Forward options of a training micro-batch: the dropout seed and gradient checkpointing. */
  forward: ForwardOptions;
}

/**
 * A custom loss of one micro-batch; see `CreateTrainerOptions.compute_loss`. `reference`: a frozen
 * model it also asks (DPO's copy of the weights), counted in the memory report.
 */
export type ComputeLoss =
  & ((
    model: Transformer,
    idx: Uint32Array,
    ctx: LossContext,
  ) => { loss: Tensor; metrics?: Record<string, Tensor> })
  & { reference?: Transformer | null };

/** What {@linkcode Trainer.train} returns (the names of the project's design). */
export interface TrainResult {
  /** The logged training losses, in order (each the mean over its logging interval). */
  loss_history: number[];
  /** The last logged training loss. */
  final_loss: number;
  /** `exp` of the last eval loss, or of `final_loss` when there was no evaluation. */
  final_perplexity: number;
  /** Seconds spent in `train()`. */
  training_time: number;
  /** Epoch of the best evaluation, or null. */
  best_epoch: number | null;
  /** The logged global gradient norms (before clipping), in order. */
  grad_norm_history: number[];
  /** Final numbers: train_loss, eval_loss, eval_perplexity, global_step, epoch, rates. */
  metrics_summary: Record<string, number | null>;
  /** The best checkpoint with `load_best_model_at_end`, else the last one saved, or null. */
  checkpoint_path: string | null;
  /** The signal that stopped the run early (a checkpoint was saved; resume to go on), else null. */
  interrupted: "SIGINT" | "SIGTERM" | null;
}

/**
 * Build a {@linkcode Trainer}: validates the config and checks it against the model and data.
 * @param opts model, config, datasets, tokenizer, hooks
 * @returns the trainer (call `train()`)
 * @throws {RangeError} when the dataset's `block_size` exceeds the model's `max_position_embeddings`
 *   (naming both), a token id is outside the vocabulary, evaluation is asked for without
 *   `eval_dataset`, or a setting the Trainer cannot honour is on
 * @throws {TypeError} / {RangeError} as `validateTrainingConfig`
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "../models/config.ts";
 * import { Transformer } from "../models/transformer.ts";
 * import { TextDataset } from "../data/text_dataset.ts";
 * import { getTrainingArgs } from "./config.ts";
 * import { createTrainer } from "./trainer.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { vocab_size: 16, hidden_size: 16, num_hidden_layers: 1,
 *   num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 8 }), be);
 * const ids = Int32Array.from({ length: 64 }, (_, i) => (i * 7) % 16);
 * const config = getTrainingArgs({ output_dir: await Deno.makeTempDir(), max_steps: 3, learning_rate: 1e-2,
 *   per_device_train_batch_size: 2, logging_steps: 1, save_strategy: "no" });
 * const trainer = createTrainer({ model, config, train_dataset: new TextDataset(ids, { block_size: 8 }),
 *   progress: false });
 * const result = await trainer.train();
 * if (result.loss_history.length !== 3 || !(result.final_loss > 0)) throw new Error("train");
 * await Deno.remove(config.output_dir, { recursive: true });
 * ```
 */
export function createTrainer(opts: CreateTrainerOptions): Trainer;
/**
 * The positional form the seed's notebooks use (tokenizer second: TRL's `SFTTrainer` takes `(model,
 * args, train_dataset, processing_class)`): rows in any SFT format (`{text}`, `{prompt, completion}`,
 * `{messages}`) are tokenized with `tokenizer`, then padded or packed as `args.packing` says.
 * @param model the model
 * @param tokenizer encodes the rows and is saved with the model
 * @param args the config (validated)
 * @param train_dataset a dataset, or rows
 */
export function createTrainer(
  model: Transformer,
  tokenizer: Tokenizer,
  args: Partial<TrainingConfig>,
  train_dataset: TrainDataset | readonly Record<string, unknown>[],
): Trainer;
export function createTrainer(
  first: CreateTrainerOptions | Transformer,
  tokenizer?: Tokenizer,
  args?: Partial<TrainingConfig>,
  rows?: TrainDataset | readonly Record<string, unknown>[],
): Trainer {
  if (first instanceof Transformer) {
    if (!tokenizer || !rows || Array.isArray(args)) { // (TRL's order, args second, ends here)
      throw new TypeError(
        "Cannot create a trainer: call createTrainer(model, tokenizer, args, train_dataset)",
      );
    }
    const config = validateTrainingConfig(args ?? {}, { file: "createTrainer(args)", warn: () => {} });
    const train_dataset = Array.isArray(rows) ? rowsDataset(rows, tokenizer, config) : rows as TrainDataset;
    return createTrainer({ model: first, tokenizer, config, train_dataset });
  }
  const opts = first;
  checkTrainerArgs(opts);
  const config = validateTrainingConfig(opts.config, { file: "createTrainer(config)", warn: () => {} });
  const problems = trainerProblems(opts, config);
  for (
    const [what, d] of [["train_dataset", opts.train_dataset], ["eval_dataset", opts.eval_dataset]] as const
  ) {
    if (d && !opts.compute_loss && !("batch" in d)) {
      problems.push(
        `${what}: rows of ${d.source} have no token batches of their own; pass their compute_loss`,
      );
    }
  }
  if (problems.length) throw new RangeError(`Cannot train: ${problems.join("; ")}`);
  attachAdapters(opts.model, config);
  return new Trainer(opts, config);
}

/**
 * Runs training (owns the optimizer state, so it is a class). Build it with
 * {@linkcode createTrainer}.
 */
export class Trainer {
  /** The model being trained. */
  readonly model: Transformer;
  /** The validated config. */
  readonly config: TrainingConfig;
  /** The data of the training updates, visited in a seeded order per epoch. */
  readonly train_dataset: TrainDataset;
  /** The data of evaluations; null when none was given (then `eval_strategy` must be `no`). */
  readonly eval_dataset: TrainDataset | null;
  /** Saved into checkpoints and the final model folder; null: none. */
  readonly tokenizer: Tokenizer | null;
  /** The callbacks given to {@linkcode createTrainer} (none: `{}`). */
  readonly hooks: TrainerHooks;
  /** The live state (what `trainer_state.json` holds). */
  state: TrainerState;
  /** The optimizer (null for SGD without momentum). */
  readonly optimizer: AdamW | null;
  readonly #progress: boolean;
  readonly #log: (line: string) => void;
  readonly #handleSignals: boolean;
  readonly #computeLoss: ComputeLoss | null;
  readonly #computeMetrics: ((model: Transformer) => Promise<Record<string, number>>) | null;
  #orders = new Map<number, Uint32Array>();
  #lastCheckpoint: string | null = null;

  /** @internal use createTrainer() */
  constructor(opts: CreateTrainerOptions, config: TrainingConfig) {
    this.model = opts.model;
    this.config = config;
    this.train_dataset = opts.train_dataset;
    this.eval_dataset = opts.eval_dataset ?? null;
    this.tokenizer = opts.tokenizer ?? null;
    this.hooks = opts.hooks ?? {};
    this.#progress = opts.progress ?? true;
    this.#log = opts.log ?? ((line) => console.error(`fledge: ${line}`));
    this.#handleSignals = opts.handle_signals ?? false;
    this.#computeLoss = opts.compute_loss ?? null;
    this.#computeMetrics = opts.compute_metrics ?? null;
    this.optimizer = config.optim === "adamw"
      ? new AdamW({
        lr: config.learning_rate,
        betas: [config.adam_beta1, config.adam_beta2],
        eps: config.adam_epsilon,
        weight_decay: config.weight_decay,
      })
      : null;
    this.state = {
      global_step: 0,
      epoch: 0,
      data_position: { epoch: 0, index: 0 },
      max_steps: this.maxSteps(),
      rng: { seed: config.seed, data_seed: config.data_seed ?? config.seed },
      scheduler_step: 0,
      best_metric: null,
      best_model_checkpoint: null,
      best_step: null,
      best_epoch: null,
      early_stopping_patience_counter: 0,
      num_input_tokens_seen: 0,
      log_history: [],
    };
  }

  /** Optimizer updates in one epoch. */
  updatesPerEpoch(): number {
    return updatesPerEpoch(this.config, this.train_dataset.num_blocks);
  }

  /** Updates of the whole run: `max_steps`, or `ceil(num_train_epochs * updates per epoch)`. */
  maxSteps(): number {
    return runSteps(this.config, this.train_dataset.num_blocks);
  }

  #order(epoch: number): Uint32Array {
    let o = this.#orders.get(epoch);
    if (!o) {
      this.#orders.clear();
      o = this.train_dataset.order(epoch, this.state.rng.data_seed);
      this.#orders.set(epoch, o);
    }
    return o;
  }

  /** The micro-batches (block indices) of the next update and the position after it. */
  #nextUpdate(pos: DataPosition): { batches: Uint32Array[]; next: DataPosition; epochEnd: boolean } {
    const nb = this.train_dataset.num_blocks, B = this.config.per_device_train_batch_size;
    const order = this.#order(pos.epoch);
    const batches: Uint32Array[] = [];
    let i = pos.index;
    while (batches.length < this.config.gradient_accumulation_steps && i < nb) {
      batches.push(order.subarray(i, Math.min(i + B, nb)));
      i = Math.min(i + B, nb);
    }
    const epochEnd = i >= nb;
    return {
      batches,
      next: epochEnd ? { epoch: pos.epoch + 1, index: 0 } : { epoch: pos.epoch, index: i },
      epochEnd,
    };
  }

  /**
   * Mean loss over every block of `eval_dataset` (batches of `per_device_eval_batch_size`), with
   * one readback.
   * @returns `eval_loss` and `eval_perplexity`
   * @throws {RangeError} when there is no eval dataset
   */
  async evaluate(): Promise<{ eval_loss: number; eval_perplexity: number; [metric: string]: number }> {
    const ds = this.eval_dataset;
    if (!ds) throw new RangeError("Cannot evaluate: the trainer has no eval_dataset");
    const be = this.model.backend, B = this.config.per_device_eval_batch_size;
    const sum = be.zeros([1]), metricSums = new Map<string, Tensor>();
    let weight = 0;
    for (let i = 0; i < ds.num_blocks; i += B) {
      const idx = Uint32Array.from({ length: Math.min(B, ds.num_blocks - i) }, (_, k) => i + k);
      const w = weightOf(ds, idx);
      if (!w) continue;
      weight += w;
      noGrad(() => {
        const { loss, metrics, release } = this.#loss(idx, ds, null);
        release();
        accumulate(sum, loss, w);
        loss.dispose();
        addMetrics(metricSums, metrics, w);
      });
      // timers between batches: a queue worker's lease heartbeat (the cpu backend never yields)
      await new Promise((r) => setTimeout(r, 0));
    }
    const total = (await sum.toArray())[0];
    sum.dispose();
    const eval_loss = total / weight;
    const out: { eval_loss: number; eval_perplexity: number; [metric: string]: number } = {
      eval_loss,
      eval_perplexity: Math.exp(eval_loss),
    };
    for (const [k, t] of metricSums) {
      out[`eval_${k}`] = (await t.toArray())[0] / weight;
      t.dispose();
    }
    if (this.#computeMetrics) {
      for (const [k, v] of Object.entries(await this.#computeMetrics(this.model))) {
        out[k.startsWith("eval_") ? k : `eval_${k}`] = v;
      }
    }
    return out;
  }

  /** The loss of rows `idx` (training when `forward` is given: dropout seed, checkpointing). */
  #loss(
    idx: Uint32Array,
    ds: TrainDataset,
    forward: ForwardOptions | null,
  ): { loss: Tensor; metrics?: Record<string, Tensor>; release(): void } {
    if (this.#computeLoss) {
      const r = this.#computeLoss(this.model, idx, {
        dataset: ds,
        training: forward !== null,
        forward: forward ?? {},
      });
      return { ...r, release: () => {} };
    }
    // The inputs live until release(): a checkpointed block recomputes from them in the backward.
    const b = deviceBatch(
      ds as TextDataset | RowDataset,
      idx,
      this.model.backend,
      this.model.config.vocab_size,
    );
    try {
      const opts = { ...b.opts, ...forward }, ce = { label_smoothing: this.config.label_smoothing_factor };
      return {
        // the LM head only where the loss counts when most positions are prompt (-100)
        loss: b.loss_at
          ? this.model.lossAt(b.ids, b.loss_at.rows, b.loss_at.targets, opts, ce)
          : this.model.loss(b.ids, b.labels, opts, ce),
        release: () => b.dispose(),
      };
    } catch (e) {
      b.dispose();
      throw e;
    }
  }

  /**
   * Train: take the run folder's lock, resume when asked, run the updates, log, evaluate, save,
   * then write `model/`, `report.md` and `curves.svg`.
   * @returns the {@linkcode TrainResult}
   * @throws {RangeError} when `output_dir` already holds a run (see `overwrite_output_dir`), a resume
   *   finds no checkpoint or one that differs from this run (listing the differences)
   * @throws {TypeError} / {Deno.errors.PermissionDenied} when `output_dir` is not writable (before any step)
   * @throws {Deno.errors.Busy} when another live run holds `output_dir`
   * @throws {NonFiniteError} when the loss, gradient norm or weights become non-finite (naming the step)
   * @throws {Error} naming the path when a write fails mid-run (disk full, permission lost); the last
   *   checkpoint stays intact
   */
  async train(): Promise<TrainResult> {
    const c = this.config, out = c.output_dir;
    const created = await prepareOutputDir(out, c);
    let lock;
    try {
      lock = await acquireLock(out, {
        command: "train",
        onTakeover: (s, path) =>
          this.#log(
            s.pid
              ? `took over ${path} of pid ${s.pid} (started ${s.started}), no longer running`
              : `took over the unreadable ${path} (written ${s.started}, by a run that died while writing it)`,
          ),
      });
    } catch (e) {
      // not recursive: a run that won the lock may be filling the folder this call created
      if (created) await Deno.remove(out).catch(() => {});
      throw e;
    }
    try {
      return await this.#run(created);
    } finally {
      await lock.release();
    }
  }

  async #run(created: boolean): Promise<TrainResult> {
    const c = this.config, out = c.output_dir, model = this.model, be = model.backend;
    const t0 = performance.now();
    const ckRoot = join(out, "checkpoints");
    const metrics = new MetricsFile(out, c.report_to.includes("jsonl"), c.report_to.includes("stdout"));
    // Full fine-tuning trains every parameter unless some were chosen; an adapter run, the adapter.
    if (!model.adapters.size && !model.parameters().some((p) => p.requiresGrad)) model.setTrainable(true);
    const live = () => trainableParameters(model);

    try {
      await clearOutputDir(out, c, this.#log);
      if (c.resume_from_checkpoint) {
        const r = await resumeFrom({
          config: c,
          model,
          optimizer: this.optimizer,
          train_dataset: this.train_dataset,
          tokenizer: this.tokenizer,
          root: ckRoot,
          log: this.#log,
        });
        this.state = { ...r.state, max_steps: this.maxSteps() };
        this.#lastCheckpoint = r.dir;
      } else {
        this.state.data_fingerprint = this.train_dataset.fingerprint();
        if (this.tokenizer) this.state.tokenizer_fingerprint = tokenizerFingerprint(this.tokenizer);
      }
    } catch (e) {
      // A start that failed leaves no empty run folder behind.
      if (created) await Deno.remove(out, { recursive: true }).catch(() => {});
      throw e;
    }
    const st = this.state, maxSteps = st.max_steps;
    const finished = st.global_step >= maxSteps;
    if (finished && await Deno.stat(join(out, "model")).then(() => true, () => false)) {
      this.#log(`nothing to train: ${out} finished at step ${st.global_step} (max_steps ${maxSteps})`);
      return {
        ...summaryOf(st, { lossHistory: [], normHistory: [], lastEval: null, trainLoss: null }),
        training_time: 0,
        checkpoint_path: this.#lastCheckpoint,
        interrupted: null,
      };
    }
    await guardWrite(
      join(out, "config.yaml"),
      this.#lastCheckpoint,
      () => saveTrainingConfig(c, join(out, "config.yaml")),
    );
    await guardWrite(metrics.path, this.#lastCheckpoint, () => metrics.reset(st.log_history));

    const schedule: LrSchedule = createLrSchedule(c, maxSteps), every = getIntervalSteps(c, maxSteps);
    const ctx = (): HookContext => ({ state: this.state, config: c });
    let stop = await callHook(this.hooks, "on_train_begin", [ctx()]);
    let interrupted: "SIGINT" | "SIGTERM" | null = null;
    const signals = this.#handleSignals
      ? listenForSignals((sig) => {
        interrupted = sig;
        this.#log(
          `${sig}: stopping after the current step to save a checkpoint (${sig} again quits at once)`,
        );
      })
      : null;

    // Device constants of the micro-batch weights (a few distinct values per run for text blocks).
    const scales = new Map<number, Tensor>();
    const scaleOf = (w: number) => {
      let t = scales.get(w);
      if (!t) {
        if (scales.size >= 64) {
          for (const s of scales.values()) s.dispose();
          scales.clear();
        }
        scales.set(w, t = be.full([1], w));
      }
      return t;
    };
    let logSum = be.zeros([1]), sinceLog = 0, normSq: Tensor | null = null;
    const logMetrics = new Map<string, Tensor>(); // a custom loss's scalars, summed like the loss
    const lossHistory: number[] = [], normHistory: number[] = [];
    let lastEval: number | null = null, lastLogStep = st.global_step;
    let [trainLossTotal, trainSteps] = loggedLoss(st.log_history); // a resume's: the whole run's mean
    let tokensRun = 0;
    const T = this.train_dataset.block_size, startStep = st.global_step;
    // One update per log and per evaluation (already spaced by logging_steps / eval_steps).
    const progress = createProgress("train", {
      total: maxSteps,
      start: startStep,
      unit: "steps",
      enabled: this.#progress,
      interval_ms: 0,
    });
    // What the run holds on the device before its first step (the peak is measured from here).
    const before = trainingMemory(model, this.optimizer, this.#computeLoss?.reference);
    this.#log(before.replace(/; measured peak .*$/, " before the first step."));
    tokenIdNotes(model, this.tokenizer).forEach((n) => this.#log(n)); // an eos the model never stops on
    be.resetPeak();
    const nb = this.train_dataset.num_blocks;
    const epochOf = (p: DataPosition) => p.epoch + p.index / nb;
    const skipBad = c.skip_nonfinite_steps;
    // Never a non-finite checkpoint or model: one readback of the weights' sum of squares per save.
    const checkWeights = async (step: number) => {
      const sq = be.empty([1]);
      gradNormSquared(sq, live());
      const w = (await sq.toArray())[0];
      sq.dispose();
      if (!Number.isFinite(w)) throw nonFinite(step, lastLogStep, "weights", w, this.#lastCheckpoint);
    };
    const save = async (step: number) => {
      await checkWeights(step);
      const path = join(ckRoot, `step-${step}`);
      await guardWrite(path, this.#lastCheckpoint, () =>
        saveCheckpoint(ckRoot, {
          model,
          optimizer: this.optimizer,
          state: st,
          config: c,
          tokenizer: this.tokenizer,
        }));
      this.#lastCheckpoint = path;
      return path;
    };

    try {
      while (!stop && !interrupted && st.global_step < maxSteps) {
        // ---- one update: accumulate gradients over the micro-batches ----
        const { batches, next, epochEnd } = this.#nextUpdate(st.data_position);
        // With skip_nonfinite_steps the update's loss waits in stepSum until its norm is known.
        const stepSum = skipBad ? be.zeros([1]) : logSum;
        const weights = batches.map((idx) => weightOf(this.train_dataset, idx));
        const total = weights.reduce((a, b) => a + b, 0);
        const stepMetrics = skipBad ? new Map<string, Tensor>() : logMetrics;
        batches.forEach((idx, i) => {
          tokensRun += idx.length * T;
          if (!weights[i]) return; // nothing trained in these rows
          // Dropout masks and NEFTune's noise are a pure function of (seed, step, micro-batch): a resume redraws them.
          const seed = dropoutSeed(c.seed, [st.global_step, i]), alpha = c.neftune_noise_alpha;
          const { loss, metrics: ms, release } = this.#loss(idx, this.train_dataset, {
            dropout: { seed },
            neftune: alpha ? { alpha, seed } : null,
            gradient_checkpointing: c.gradient_checkpointing,
          });
          backward(loss, scaleOf(weights[i] / total));
          release();
          accumulate(stepSum, loss, weights[i] / total);
          loss.dispose();
          addMetrics(stepMetrics, ms, weights[i] / total);
        });
        const ps = live();
        const grads = ps.filter((p) => p.grad).map((p) => p.grad!);
        let coef: Tensor | null = null;
        normSq?.dispose();
        if (c.max_grad_norm > 0) {
          const clip = gradClip(grads, c.max_grad_norm, be);
          normSq = clip.normSquared;
          coef = clip.coef;
        } else {
          normSq = be.empty([1]);
          gradNormSquared(normSq, grads);
        }
        // One readback per step, only when asked: a non-finite loss makes the norm non-finite too.
        const skip = skipBad && !Number.isFinite((await normSq.toArray())[0]);
        const lr = schedule.lrAt(st.global_step);
        const decay = ps.filter((p) => !isNoDecay(p.name)), keep = ps.filter((p) => isNoDecay(p.name));
        if (skip) {
          st.nonfinite_steps = (st.nonfinite_steps ?? 0) + 1;
          this.#log(
            `step ${
              st.global_step + 1
            }: non-finite loss or gradient norm; update skipped (skip_nonfinite_steps)`,
          );
        } else if (this.optimizer) {
          this.optimizer.step(decay, { lr, weight_decay: c.weight_decay, scale: coef, max_grad_norm: 0 });
          this.optimizer.step(keep, { lr, weight_decay: 0, scale: coef, max_grad_norm: 0 });
        } else {
          for (const [group, wd] of [[decay, c.weight_decay], [keep, 0]] as const) {
            const g = group.filter((p) => p.grad);
            if (g.length) {
              sgdStep(g, g.map((p) => p.grad!), null, {
                lr,
                weight_decay: wd,
                step: st.global_step + 1,
                scale: coef,
              });
            }
          }
        }
        if (skipBad) {
          if (!skip) accumulate(logSum, stepSum, 1);
          stepSum.dispose();
          if (!skip) addMetrics(logMetrics, stepMetrics, 1);
          for (const t of stepMetrics.values()) t.dispose();
        }
        coef?.dispose();
        for (const p of ps) {
          p.grad?.dispose();
          p.grad = null;
        }
        st.global_step++;
        st.scheduler_step = st.global_step;
        st.data_position = next;
        st.epoch = epochOf(next);
        st.num_input_tokens_seen += batches.reduce((a, b) => a + b.length * T, 0);
        if (!skip) sinceLog++;
        stop = (await callHook(this.hooks, "on_step_end", [ctx()])) || stop;
        const step = st.global_step, last = step >= maxSteps;

        // ---- log ----
        const logNow = last || (c.logging_strategy === "steps" && step % every.logging === 0) ||
          (c.logging_strategy === "epoch" && epochEnd) || (c.logging_first_step && step === 1);
        if ((logNow || stop) && sinceLog > 0) {
          const loss = (await logSum.toArray())[0] / sinceLog;
          const gn = Math.sqrt((await normSq.toArray())[0]);
          refuseNonFiniteLog(loss, skipBad ? 0 : gn, step, lastLogStep, this.#lastCheckpoint);
          trainLossTotal += loss * sinceLog;
          trainSteps += sinceLog;
          logSum.dispose();
          logSum = be.zeros([1]);
          const sinceLogMetrics = sinceLog;
          sinceLog = 0;
          lastLogStep = step;
          const rec = await logRecord(
            { loss, grad_norm: gn, learning_rate: schedule.lrAt(step), epoch: st.epoch, step },
            st.nonfinite_steps,
            logMetrics,
            sinceLogMetrics,
          );
          lossHistory.push(loss);
          normHistory.push(gn);
          // logging_strategy "no": the last step's loss feeds the summary's train_loss only (HF logs nothing)
          if (c.logging_strategy !== "no") {
            st.log_history.push(rec);
            await guardWrite(metrics.path, this.#lastCheckpoint, () => metrics.append(rec));
            const rate = `${(tokensRun / ((performance.now() - t0) / 1000)).toFixed(0)} tok/s`;
            progress.update(step, `loss ${loss.toFixed(4)} lr ${rec.learning_rate.toExponential(2)} ${rate}`);
            stop = (await callHook(this.hooks, "on_log", [ctx(), rec])) || stop;
          }
        }

        // ---- evaluate, best metric, early stopping ----
        let improved = false;
        const evalNow = (c.eval_strategy === "steps" && step % every.eval! === 0) ||
          (c.eval_strategy === "epoch" && (epochEnd || last)); // a cut-short last epoch ends too (HF)
        if (evalNow) {
          const t1 = performance.now();
          const m = await this.evaluate();
          if (!Number.isFinite(m.eval_loss)) {
            throw nonFinite(step, lastLogStep, "eval_loss", m.eval_loss, this.#lastCheckpoint);
          }
          lastEval = m.eval_loss;
          const rec = { ...m, eval_runtime: (performance.now() - t1) / 1000, epoch: st.epoch, step };
          st.log_history.push(rec);
          await guardWrite(metrics.path, this.#lastCheckpoint, () => metrics.append(rec));
          progress.update(step, `eval_loss ${m.eval_loss.toFixed(4)} ppl ${m.eval_perplexity.toFixed(2)}`);
          const best = updateBest(st, c, m);
          improved = best.improved;
          stop = best.stop || stop;
          stop = (await callHook(this.hooks, "on_evaluate", [ctx(), rec])) || stop;
        }

        // ---- save ----
        const saveNow = (c.save_strategy === "steps" && (step % every.save === 0 || last)) || // (HF: the end)
          (c.save_strategy === "epoch" && (epochEnd || last)) || (c.save_strategy === "best" && improved);
        if (saveNow) {
          if (improved) st.best_model_checkpoint = join(ckRoot, `step-${step}`);
          const path = await save(step);
          await rotateCheckpoints(ckRoot, {
            save_total_limit: c.save_total_limit,
            keep: c.load_best_model_at_end || c.metric_for_best_model ? st.best_model_checkpoint : null,
          });
          stop = (await callHook(this.hooks, "on_save", [ctx(), path])) || stop;
        } else if (improved) st.best_model_checkpoint = null;
        // One submit per step; the previous step has finished before the next is recorded, so the
        // host never runs ahead of the device (a signal is seen within a step, not at the next log).
        await be.pace();
        // Let a pending signal and timers (a queue worker's lease heartbeat, in its hooks) in: the
        // loop above may never leave the microtask queue.
        if (signals || Object.keys(this.hooks).length) await new Promise((r) => setTimeout(r, 0));
      }
      if (interrupted) progress.update(st.global_step); // the line otherwise shows the last logged step
      progress.done();
      if (interrupted && this.#lastCheckpoint !== join(ckRoot, `step-${st.global_step}`)) {
        await save(st.global_step);
      }
    } finally {
      signals?.remove();
      logSum.dispose();
      for (const t of logMetrics.values()) t.dispose();
      normSq?.dispose();
      for (const t of scales.values()) t.dispose();
    }

    const training_time = (performance.now() - t0) / 1000;
    const done = st.global_step - startStep;
    const summary = summaryOf(st, {
      lossHistory,
      normHistory,
      lastEval,
      trainLoss: trainSteps ? trainLossTotal / trainSteps : null,
    });
    summary.metrics_summary.train_runtime = training_time;
    summary.metrics_summary.train_steps_per_second = done / training_time;
    summary.metrics_summary.train_tokens_per_second = tokensRun / training_time;
    if (interrupted) {
      return { ...summary, training_time, checkpoint_path: this.#lastCheckpoint, interrupted };
    }

    // ---- the end: best model, final folder, report ----
    let checkpoint_path = this.#lastCheckpoint;
    if (c.load_best_model_at_end && st.best_model_checkpoint) {
      await loadCheckpoint(st.best_model_checkpoint, { model });
      checkpoint_path = st.best_model_checkpoint;
      if (c.save_total_limit === 1) await keepOnlyBest(ckRoot, st.best_model_checkpoint); // as HF ends
    }
    await checkWeights(st.global_step);
    await guardWrite(join(out, "model"), this.#lastCheckpoint, () =>
      writeRunEnd(out, {
        config: c,
        state: st,
        summary: summary.metrics_summary,
        metrics,
        model,
        tokenizer: this.tokenizer,
        dataset: this.train_dataset.source,
        memory: trainingMemory(model, this.optimizer, this.#computeLoss?.reference),
      }));
    await callHook(this.hooks, "on_train_end", [ctx()]);
    return { ...summary, training_time, checkpoint_path, interrupted: null };
  }

  /** Release the optimizer state (the model stays the caller's). */
  dispose(): void {
    this.optimizer?.dispose();
  }
}
