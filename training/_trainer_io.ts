/**
 * Private to `trainer.ts`: the run folder (checked writable before training, previous runs
 * refused or replaced), `metrics.jsonl`, the progress line and `report.md`.
 * @module
 */
import { isAbsolute, join, relative, resolve } from "node:path";
import { saveModel } from "../models/save.ts";
import { plotTrainingCurves } from "../evaluation/plot.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../models/transformer.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { removeStaleTemps, type TrainerState } from "./checkpoint.ts";
import { mergeAdapter, saveAdapter } from "./peft.ts";
import type { TrainingConfig } from "./config.ts";
import { isFileSync, pathExists, removeAtomic, writeDirAtomic, writeFileAtomic } from "../util/atomic.ts";
import { formatMetric } from "../util/format.ts";

/**
 * Files and folders a run writes into `output_dir`: the Trainer's, then a recipe's (`tasks/recipe.ts`,
 * `evaluation/run_report.ts`) and the demo's. All of them are refused without `overwrite_output_dir`
 * and removed with it, so a user's file of the same name is never replaced unasked and a new run never
 * sits beside the last one's results.
 */
export const RUN_ARTIFACTS = [
  "checkpoints",
  "model",
  "adapter",
  "metrics.jsonl",
  "report.md",
  "curves.svg",
  "config.yaml",
  "recipe.yaml",
  "predictions.jsonl",
  "metrics.json",
  "metrics.svg",
  "confusion.svg",
  "curves.png",
  "metrics.png",
  "confusion.png",
  "samples.txt",
];

/**
 * Make sure `out` can hold a run: create it, write and remove a probe file. A previous run there is
 * an error unless `overwrite_output_dir` or a resume is asked for. Nothing is deleted here (see
 * {@linkcode clearOutputDir}); on failure nothing created here is left behind.
 * @returns whether `out` was created by this call (so a failed start can remove it again)
 */
export async function prepareOutputDir(out: string, config: TrainingConfig): Promise<boolean> {
  const existed = await pathExists(out);
  if (existed && isFileSync(out)) { // (it had said "not writable (File exists (os error 17): mkdir ...)")
    throw new TypeError(`Cannot train: output_dir ${out} is a file, not a folder; choose a folder`);
  }
  const fix = "choose a writable output_dir";
  try {
    await Deno.mkdir(out, { recursive: true });
    const probe = join(out, `.fledge-write-test-${crypto.randomUUID()}`);
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (e) {
    if (!existed) await Deno.remove(out).catch(() => {});
    const msg = `Cannot train: output_dir ${out} is not writable (${(e as Error).message}); ${fix}`;
    if (e instanceof Deno.errors.PermissionDenied) throw new Deno.errors.PermissionDenied(msg);
    throw new TypeError(msg);
  }
  await refuseExistingRun(config);
  return !existed;
}

/**
 * Refuse an `output_dir` that already holds a run, unless `overwrite_output_dir` or a resume is asked
 * for (cheap: callers check before reading data or weights).
 * @throws {RangeError} naming the folder, what it holds and the fix
 */
export async function refuseExistingRun(config: TrainingConfig): Promise<void> {
  const out = config.output_dir, found: string[] = [];
  for (const a of RUN_ARTIFACTS) if (await pathExists(join(out, a))) found.push(a);
  if (found.length && !config.resume_from_checkpoint && !config.overwrite_output_dir) {
    // a run killed before its first checkpoint has nothing to resume: say so (the two messages had
    // sent the user from one to the other)
    const saved = found.some((a) => a === "checkpoints" || a === "model" || a === "adapter");
    throw new RangeError(
      `Cannot train: output_dir ${out} already holds a run (${found.join(", ")}); ` +
        (saved
          ? `set overwrite_output_dir: true, resume_from_checkpoint: true, or choose another output_dir`
          : `it saved no checkpoint to resume from: set overwrite_output_dir: true to start it again, or choose another output_dir`),
    );
  }
  // overwrite_output_dir removes the previous run's model/, checkpoints/ and adapter/ at the start:
  // never the model or tokenizer this run reads (a kill had left neither the old model nor a new one)
  if (config.overwrite_output_dir && !config.resume_from_checkpoint) {
    for (const [field, v] of [["model", config.model], ["tokenizer", config.tokenizer]] as const) {
      if (typeof v !== "string" || !(await pathExists(v))) continue;
      const rel = relative(resolve(out), resolve(v));
      const top = rel.split(/[\\/]/)[0];
      if (rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) && RUN_ARTIFACTS.includes(top)) {
        throw new RangeError(
          `Cannot train: ${field} ${v} lies in output_dir ${out}, whose ${top} overwrite_output_dir would ` +
            `delete before training; copy it elsewhere first, or choose another output_dir`,
        );
      }
    }
  }
}

/**
 * Once the run holds the folder's lock: remove the temp leftovers of interrupted writes (a killed
 * run can leave a model-sized `checkpoints/step-N.tmp-*`) and, with `overwrite_output_dir` on a
 * fresh start, the previous run's artifacts (each removed whole, never half).
 */
export async function clearOutputDir(
  out: string,
  config: TrainingConfig,
  log: (line: string) => void,
): Promise<void> {
  for (const p of await removeStaleTemps(out)) log(`removed ${p}, left by an interrupted write`);
  if (!config.overwrite_output_dir || config.resume_from_checkpoint) return;
  for (const a of RUN_ARTIFACTS) {
    if (await removeAtomic(join(out, a))) log(`overwrite_output_dir: removed ${join(out, a)}`);
  }
}

/**
 * Run a write of the run folder; a failure (disk full, permission lost) becomes one error naming
 * the path and the last complete checkpoint, so nothing is lost without a word.
 */
export async function guardWrite<T>(path: string, last: string | null, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError || e instanceof SyntaxError) throw e;
    throw new Error(
      `Cannot write ${path}: ${(e as Error).message.replace(/\s*\n\s*/g, " ")}; ` +
        (last ? `the last complete checkpoint is ${last}; ` : "no checkpoint was completed; ") +
        `free disk space or restore write access, then resume with resume_from_checkpoint: true`,
      { cause: e },
    );
  }
}

/** Append records to `metrics.jsonl` (rewritten from `history` first, as after a resume). */
export class MetricsFile {
  readonly path: string;
  readonly #on: boolean;
  readonly #stdout: boolean;
  /** `on`: write `metrics.jsonl` (report_to jsonl); `stdout`: print each record as a JSON line too (report_to stdout). */
  constructor(out: string, on: boolean, stdout = false) {
    this.path = join(out, "metrics.jsonl");
    this.#on = on;
    this.#stdout = stdout;
  }
  async reset(history: readonly Record<string, number>[]): Promise<void> {
    if (!this.#on) return;
    // atomic: a resumed run rewrites its whole history here, and a kill must not cut it
    await writeFileAtomic(this.path, history.map((r) => JSON.stringify(r) + "\n").join(""));
  }
  async append(record: Record<string, number>): Promise<void> {
    if (this.#stdout) console.log(JSON.stringify(record));
    if (this.#on) await Deno.writeTextFile(this.path, JSON.stringify(record) + "\n", { append: true });
  }
}

/** The text of `report.md`: settings, results and the last log records. */
export function reportMarkdown(
  config: TrainingConfig,
  state: TrainerState,
  summary: Record<string, number | null>,
  extra: { model: string; dataset: string; curves: boolean; memory?: string },
): string {
  const L: string[] = [`# Training report`, ``, `## Settings`, ``, `| field | value |`, `| --- | --- |`];
  L.push(`| model | ${extra.model} |`, `| dataset | ${extra.dataset} |`);
  for (
    const k of [
      "max_steps",
      "num_train_epochs",
      "per_device_train_batch_size",
      "gradient_accumulation_steps",
      "max_seq_length",
      "learning_rate",
      "lr_scheduler_type",
      "warmup_steps",
      "warmup_ratio",
      "weight_decay",
      "max_grad_norm",
      "seed",
      "backend",
    ] as const
  ) L.push(`| ${k} | ${JSON.stringify(config[k])} |`);
  L.push(``, `## Results`, ``, `| metric | value |`, `| --- | --- |`);
  for (const [k, v] of Object.entries(summary)) L.push(`| ${k} | ${v === null ? "-" : formatMetric(v)} |`);
  if (state.best_metric !== null) {
    L.push(
      ``,
      `Best ${config.metric_for_best_model} ${formatMetric(state.best_metric)} at step ${state.best_step} ` +
        `(epoch ${formatMetric(state.best_epoch)}), checkpoint \`${state.best_model_checkpoint ?? "-"}\`.`,
    );
  }
  if (extra.memory) L.push(``, `## Memory`, ``, extra.memory);
  if (extra.curves) L.push(``, `![training curves](curves.svg)`);
  const keys = ["step", "epoch", "loss", "learning_rate", "grad_norm", "eval_loss"];
  const rows = state.log_history.filter((r) => "loss" in r || "eval_loss" in r).slice(-20);
  if (rows.length) {
    L.push(``, `## Last log records`, ``, `| ${keys.join(" | ")} |`, `|${" --- |".repeat(keys.length)}`);
    for (const r of rows) L.push(`| ${keys.map((k) => formatMetric(r[k])).join(" | ")} |`);
  }
  return L.join("\n") + "\n";
}

/**
 * After an evaluation: track the best `metric_for_best_model` (HF `_determine_best_metric`) and
 * count evaluations without improvement (HF `EarlyStoppingCallback`: an improvement must beat the
 * previous best by more than `early_stopping_threshold`).
 */
export function updateBest(
  st: TrainerState,
  c: TrainingConfig,
  m: { eval_loss: number; eval_perplexity: number },
): { improved: boolean; stop: boolean } {
  const name = c.metric_for_best_model ?? "loss";
  const key = name.startsWith("eval_") ? name : `eval_${name}`;
  const value = (m as Record<string, number>)[key];
  if (typeof value !== "number") {
    throw new RangeError(
      `Cannot track metric_for_best_model "${name}": the evaluation gave ${
        Object.keys(m).join(", ")
      }; use one of those, or pass compute_metrics that returns "${name.replace(/^eval_/, "")}"`,
    );
  }
  const better = (a: number, b: number) => c.greater_is_better ? a > b : a < b;
  const prev = st.best_metric;
  let stop = false;
  if (c.early_stopping_patience !== null) {
    const gain = prev === null ||
      (better(value, prev) && Math.abs(value - prev) > c.early_stopping_threshold);
    st.early_stopping_patience_counter = gain ? 0 : st.early_stopping_patience_counter + 1;
    stop = st.early_stopping_patience_counter >= c.early_stopping_patience;
  }
  const improved = prev === null || better(value, prev);
  if (improved) {
    st.best_metric = value;
    st.best_step = st.global_step;
    st.best_epoch = st.epoch;
  }
  return { improved, stop };
}

/** Write the final `model/` folder (weights, config, tokenizer) atomically: a temporary folder, then a rename. */
export async function saveFinalModel(
  model: Transformer,
  tokenizer: Tokenizer | null,
  dir: string,
): Promise<void> {
  await writeDirAtomic(dir, async (tmp) => {
    await saveModel(model, tmp);
    if (tokenizer) await tokenizer.save(tmp);
  });
}

/**
 * The end of a run: the summary record in `metrics.jsonl` (HF's `train_runtime`, `train_loss`, ...),
 * the final `model/` folder, `curves.svg` and `report.md`.
 */
export async function writeRunEnd(out: string, r: {
  config: TrainingConfig;
  state: TrainerState;
  summary: Record<string, number | null>;
  metrics: MetricsFile;
  model: Transformer;
  tokenizer: Tokenizer | null;
  dataset: string;
  /** The memory report of the run (report.md). */
  memory?: string;
}): Promise<void> {
  const st = r.state;
  const endRec: Record<string, number> = {
    train_runtime: r.summary.train_runtime ?? NaN,
    train_steps_per_second: r.summary.train_steps_per_second ?? NaN,
    train_loss: r.summary.train_loss ?? NaN,
    epoch: st.epoch,
    step: st.global_step,
  };
  st.log_history.push(endRec);
  await r.metrics.append(endRec);
  if (r.model.adapters.size) {
    // An adapter run: adapter/ in PEFT's layout (with the tokenizer), and with merge_adapter the
    // merged model/ too (PEFT merge_and_unload: the adapter is folded into the model in memory;
    // a QLoRA base is merged in f32, as the f32 model/ is written, not rounded to 4 bits again).
    await writeDirAtomic(join(out, "adapter"), async (tmp) => {
      await saveAdapter(r.model, tmp);
      if (r.tokenizer) await r.tokenizer.save(tmp);
    });
    if (r.config.merge_adapter) {
      mergeAdapter(r.model, { dequantize: true });
      await saveFinalModel(r.model, r.tokenizer, join(out, "model"));
    }
  } else await saveFinalModel(r.model, r.tokenizer, join(out, "model"));
  let curves = false;
  try {
    plotTrainingCurves(st.log_history.filter((x) => !("train_runtime" in x)), join(out, "curves.svg"));
    curves = true;
  } catch (e) {
    if (!(e instanceof RangeError)) throw e; // nothing logged: no curves
  }
  const extra = { model: r.config.model ?? "(given)", dataset: r.dataset, curves, memory: r.memory };
  await writeFileAtomic(join(out, "report.md"), reportMarkdown(r.config, st, r.summary, extra));
}

/**
 * The sum of the logged training losses, each weighted by the steps it covers, and those steps:
 * what a resumed run carries on from, so that its `train_loss` is the whole run's mean.
 * @param log the trainer state's `log_history`
 * @returns `[sum of loss x steps, steps]`
 */
export function loggedLoss(log: readonly Record<string, number>[]): [number, number] {
  let total = 0, steps = 0, prev = 0;
  for (const r of log) {
    if (typeof r.loss !== "number" || typeof r.step !== "number") continue;
    total += r.loss * (r.step - prev);
    steps += r.step - prev;
    prev = r.step;
  }
  return [total, steps];
}

/**
 * A training log record: `base` (loss, grad_norm, learning_rate, epoch, step), the count of skipped
 * non-finite steps when there were any, and each metric's mean over the `steps` since the last log
 * (read back, and `metrics` emptied).
 */
export async function logRecord(
  base: { loss: number; grad_norm: number; learning_rate: number; epoch: number; step: number },
  nonfiniteSteps: number | undefined,
  metrics: Map<string, Tensor>,
  steps: number,
): Promise<Record<string, number> & typeof base> {
  const rec: Record<string, number> & typeof base = { ...base };
  if (nonfiniteSteps) rec.nonfinite_steps = nonfiniteSteps;
  for (const [k, t] of metrics) {
    rec[k] = (await t.toArray())[0] / (steps || 1);
    t.dispose();
  }
  metrics.clear();
  return rec;
}

/** The numbers of a result, from this session's logs or, when it trained nothing, from the state's history. */
export function summaryOf(st: TrainerState, s: {
  lossHistory: number[];
  normHistory: number[];
  lastEval: number | null;
  trainLoss: number | null;
}): {
  loss_history: number[];
  final_loss: number;
  final_perplexity: number;
  best_epoch: number | null;
  grad_norm_history: number[];
  metrics_summary: Record<string, number | null>;
} {
  const lastOf = (key: string) => st.log_history.findLast((r) => Number.isFinite(r[key]))?.[key] ?? null;
  const final_loss = s.lossHistory.at(-1) ?? lastOf("loss") ?? NaN;
  const evalLoss = s.lastEval ?? lastOf("eval_loss");
  return {
    loss_history: s.lossHistory,
    final_loss,
    final_perplexity: Math.exp(evalLoss ?? final_loss),
    best_epoch: st.best_epoch,
    grad_norm_history: s.normHistory,
    metrics_summary: {
      train_loss: s.trainLoss ?? lastOf("train_loss"),
      eval_loss: evalLoss,
      eval_perplexity: evalLoss === null ? null : Math.exp(evalLoss),
      global_step: st.global_step,
      epoch: st.epoch,
      train_runtime: 0,
      train_steps_per_second: 0,
      train_tokens_per_second: 0,
      num_input_tokens_seen: st.num_input_tokens_seen,
      nonfinite_steps: st.nonfinite_steps ?? 0,
    },
  };
}

/**
 * Listen for SIGINT / SIGTERM: the first calls `onFirst`, a second exits at once (130 / 143).
 * SIGTERM cannot be listened for on Windows; there only SIGINT is.
 */
export function listenForSignals(onFirst: (sig: "SIGINT" | "SIGTERM") => void): { remove(): void } {
  let seen = false;
  const handlers: [Deno.Signal, () => void][] = [];
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    const h = () => {
      if (seen) Deno.exit(sig === "SIGINT" ? 130 : 143);
      seen = true;
      onFirst(sig);
    };
    try {
      Deno.addSignalListener(sig, h);
      handlers.push([sig, h]);
    } catch { /* not supported on this platform */ }
  }
  return { remove: () => handlers.forEach(([s, h]) => Deno.removeSignalListener(s, h)) };
}
