/**
 * Private to `search.ts` and `queue.ts`: one search trial as a training run, its evaluations
 * reported to the median pruner through the Trainer's `on_evaluate` hook. The same function runs a
 * trial in the searching process ({@linkcode trainTrial}) and as a queue job on a worker
 * ({@linkcode trialJob}, the `trial` kind: `{study_dir, trial}`), where the study's trials are read
 * from `study.json` (written by the searching process) at each evaluation and the trial's reports go
 * to `trials/trial-NNNN.json` beside its run folder.
 * @module
 */
import { join, resolve } from "node:path";
import { writeFileAtomic } from "../util/atomic.ts";
import { type TrainingConfig, validateTrainingConfig } from "./config.ts";
import type { HookContext, TrainerHooks } from "./hooks.ts";
import { runTraining } from "./run.ts";
import { NonFiniteError } from "./trainer.ts";
import { applyParams } from "./_search_config.ts";
import { medianDecision } from "./_search_prune.ts";
import { numbers, readJsonOrNull, readStudy, toJson, trialDir } from "./_search_study.ts";
import { leaseHooks, retryCheckpoint } from "./_queue_run.ts";
import type { JobContext, JobInfo, JobOutcome } from "./queue.ts";
import type { MedianPrunerOptions, ParamValue, SearchConfig, Trial, TrialDirection } from "./search.ts";

/** What a trial needs of its study (the parts of `study.json`'s definition it reads). */
export interface TrialSetup {
  /** The base training config (without `output_dir`). */
  base: Record<string, unknown> | Readonly<TrainingConfig>;
  metric: string;
  direction: TrialDirection;
  pruner: SearchConfig["pruner"];
  median: MedianPrunerOptions;
}

/** How a trial ended (what a trial job returns as its result). */
export interface TrialOutcome {
  /** `failed` only for an invalid config (other errors are thrown). */
  state: "complete" | "pruned" | "failed";
  value: number | null;
  steps: number | null;
  intermediate_values: Record<number, number>;
  note: string | null;
}

/** Options of {@linkcode trainTrial}. */
export interface TrialRunOptions {
  /** The trial's run folder. */
  run_dir: string;
  /** The trial's number (named in messages). */
  number: number;
  params: Record<string, ParamValue>;
  /** Resume from the run folder's newest checkpoint (else start over, replacing what is there). */
  resume: boolean;
  /** Values reported before an interruption (kept on a resume). */
  intermediate_values: Record<number, number>;
  /** The study's trials now, for the median rule (only complete ones count). */
  trials: () => Promise<readonly Trial[]>;
  /** Called after every report, with the values so far and a note when the pruner stops the trial. */
  report: (values: Record<number, number>, note: string | null) => Promise<void>;
  /** More hooks for the run (a queue worker's lease check). */
  hooks?: TrainerHooks;
  /** Checkpoint and return at SIGINT / SIGTERM (a queue worker's). */
  handle_signals?: boolean;
  log: (line: string) => void;
  progress: boolean;
}

/**
 * Train one trial: the base config with its parameters, into `run_dir`, reporting each evaluation
 * and stopping when the median pruner says so.
 * @returns the outcome: `failed` for an invalid config, `pruned` when stopped or diverged
 * @throws {TypeError} when evaluations do not report the metric; {RangeError} when no evaluation
 *   ran; any training error
 */
export async function trainTrial(
  s: TrialSetup,
  o: TrialRunOptions,
): Promise<TrialOutcome & { interrupted?: "SIGINT" | "SIGTERM" }> {
  const values = o.resume ? { ...o.intermediate_values } : {};
  let config: TrainingConfig;
  try {
    config = validateTrainingConfig(
      {
        ...applyParams(s.base, o.params),
        output_dir: o.run_dir,
        resume_from_checkpoint: o.resume,
        overwrite_output_dir: !o.resume,
      },
      { file: `trial ${o.number}`, warn: () => {} },
    );
  } catch (e) {
    const why = (e as Error).message.split("\n").slice(1).join(" ").trim() || (e as Error).message;
    return {
      state: "failed",
      value: null,
      steps: null,
      intermediate_values: {},
      note: `invalid config: ${why}`,
    };
  }
  let pruned: string | null = null;
  const hooks: TrainerHooks = {
    ...o.hooks,
    on_evaluate: async (ctx: HookContext, rec: Record<string, number>) => {
      const v = rec[s.metric], step = ctx.state.global_step;
      if (typeof v !== "number") {
        const have = Object.keys(rec).filter((k) => k.startsWith("eval_"));
        throw new TypeError(
          `Cannot search on ${s.metric}: evaluations report ${have.join(", ")}; set metric to one of them`,
        );
      }
      values[step] = v;
      if (s.pruner === "median") {
        const d = medianDecision(values, await o.trials(), s.direction, s.median);
        if (d.prune) pruned = `pruned at step ${step}: ${d.reason}`;
      }
      await o.report({ ...values }, pruned);
      return pruned !== null ? { should_training_stop: true } : undefined;
    },
  };
  const last = () => {
    const steps = Object.keys(values).map(Number).sort((a, b) => a - b);
    return steps.length ? values[steps[steps.length - 1]] : null;
  };
  let steps: number;
  try {
    const r = await runTraining(config, {
      progress: o.progress,
      log: o.log,
      hooks,
      handle_signals: o.handle_signals,
    });
    steps = r.metrics_summary.global_step as number;
    if (r.interrupted) {
      const note = `stopped by ${r.interrupted} at step ${steps}`;
      return {
        state: "complete",
        value: null,
        steps,
        intermediate_values: values,
        note,
        interrupted: r.interrupted,
      };
    }
  } catch (e) {
    if (!(e instanceof NonFiniteError)) throw e;
    const note = `diverged at step ${e.step} (non-finite)`;
    return { state: "pruned", value: last(), steps: e.step, intermediate_values: values, note };
  }
  const value = last();
  if (value === null) {
    throw new RangeError(
      `Cannot search: trial ${o.number} ran ${steps} steps without an evaluation; set base.eval_steps <= max_steps`,
    );
  }
  return {
    state: pruned !== null ? "pruned" : "complete",
    value,
    steps,
    intermediate_values: values,
    note: pruned,
  };
}

/**
 * Record how trial `t` ended: its state, note (when given) and end time, and what a training
 * outcome adds: the reported values, the value and the steps run.
 */
export function endTrial(
  t: Trial,
  out: { state: Trial["state"]; note?: string | null } & Partial<Omit<TrialOutcome, "state" | "note">>,
): void {
  t.state = out.state;
  if (out.intermediate_values) t.intermediate_values = numbers(out.intermediate_values as never);
  if (out.value !== undefined) t.value = out.value;
  if (out.steps != null) t.steps = out.steps;
  if (out.note) t.note = out.note;
  t.finished = new Date().toISOString();
}

/** Where a trial job writes its reports: `trials/trial-NNNN.json` beside its run folder. */
export function reportPath(study_dir: string, number: number): string {
  return join(study_dir, `${trialDir(number)}.json`);
}

/** A trial job's reports so far (NaN kept), or null when it wrote none. */
export async function readReport(
  study_dir: string,
  number: number,
): Promise<{ intermediate_values: Record<number, number>; note: string | null } | null> {
  const r = await readJsonOrNull(reportPath(study_dir, number)) as
    | { intermediate_values: Record<string, number | null>; note: string | null }
    | null;
  return r && { intermediate_values: numbers(r.intermediate_values), note: r.note };
}

/**
 * The queue's `trial` handler: trial `config.trial` of the study in `config.study_dir` (a folder
 * every worker reaches at that path), trained as {@linkcode trainTrial} with the definition and
 * parameters `study.json` holds. It resumes from the run folder's newest checkpoint when there is
 * one (a retry after a lost worker, or a trial the searching process resubmitted), so it ends as an
 * uninterrupted trial would.
 * @returns `result`: the {@linkcode TrialOutcome}, `run_dir` and `resumed_from`
 * @throws {Deno.errors.NotFound} when the study is missing; {RangeError} for an unknown trial
 */
export async function trialJob(job: JobInfo, ctx: JobContext): Promise<JobOutcome> {
  const { study_dir: raw, trial: number } = job.config as { study_dir: string; trial: number };
  const study_dir = resolve(raw);
  const study = await readStudy(study_dir);
  if (!study) {
    throw new Deno.errors.NotFound(`Cannot run trial job ${job.id}: no study.json in ${study_dir}`);
  }
  const t = study.trials[number];
  if (!t || t.number !== number) {
    throw new RangeError(`Cannot run trial job ${job.id}: the study in ${study_dir} has no trial ${number}`);
  }
  // a trial that ended is the study's record: running it again would replace its run folder
  if (t.state !== "running") {
    throw new RangeError(
      `Cannot run trial job ${job.id}: trial ${number} of the study in ${study_dir} is ${t.state}, not running; ` +
        `a search submits the trials it wants run`,
    );
  }
  const setup = study.definition as unknown as TrialSetup;
  const run_dir = join(study_dir, trialDir(number));
  const ck = await retryCheckpoint(run_dir, ctx, job.id, { any_attempt: true });
  const before = ck ? await readReport(study_dir, number) : null;
  const { interrupted, ...outcome } = await trainTrial(setup, {
    run_dir,
    number,
    params: t.params,
    resume: ck !== null,
    intermediate_values: before?.intermediate_values ?? numbers(t.intermediate_values as never),
    trials: async () => (await readStudy(study_dir))?.trials ?? [],
    report: (intermediate_values, note) =>
      writeFileAtomic(reportPath(study_dir, number), toJson({ intermediate_values, note })),
    hooks: leaseHooks(ctx),
    handle_signals: ctx.handle_signals,
    log: ctx.log,
    progress: false,
  });
  return {
    interrupted: interrupted ?? null,
    result: { ...outcome, run_dir: trialDir(number), resumed_from: ck } as unknown as Record<string, unknown>,
  };
}
