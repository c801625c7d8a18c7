/**
 * A job queue for many runs on one machine or many: {@linkcode openQueue} opens one behind the small
 * {@linkcode JobQueue} interface, {@linkcode runWorker} takes jobs from it one at a time until told
 * to stop. A job is a training run, an evaluation or a search trial ({@linkcode JobSpec}).
 *
 * Two backends, chosen by the queue's address:
 * - `kv:PATH` (the default, `kv:.fledge/queue.sqlite`): Deno KV on a local file, shared by every
 *   worker process on this machine (Deno 2.9 needs `--unstable-kv`, set in this repository's deno.json);
 * - `redis://host:port[/db]`: BullMQ on Redis, for workers on many machines.
 *
 * A worker leases a job with an expiring lock and renews it while the job runs. A worker that dies
 * leaves its job to be leased again once the lock expires (up to `max_attempts` starts), and a
 * training job's retry resumes from the newest checkpoint of its run folder, so it ends exactly as an
 * uninterrupted run would. A job that fails for bad input (an invalid config, a missing file: the
 * errors the command line answers with exit code 2) fails at once, with the reason in its status.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import { parse as parseYaml } from "npm:yaml@^2.9";
import { readNamedTextFile, writeFileAtomic } from "../util/atomic.ts";
import { isObject, refuseUnknownOptions, yamlProblem } from "../util/problems.ts";
import { validateTrainingConfig } from "./config.ts";
import { migrateConfig } from "./legacy_config.ts";
import { runTraining } from "./run.ts";
import { leaseHooks, retryCheckpoint, runOne } from "./_queue_run.ts";
import { trialJob } from "./_search_trial.ts";

/** What a job runs: `train` a training run, `eval` an evaluation, `trial` a search trial. */
export type JobKind = "train" | "eval" | "trial";
/** Every {@linkcode JobKind}. */
export const JOB_KINDS: readonly JobKind[] = Object.freeze(["train", "eval", "trial"]);
/** Where a job is: waiting to be leased, active on a worker, completed, or failed for good. */
export type JobState = "waiting" | "active" | "completed" | "failed";
/** The queue `deno task cli queue` opens without `--queue`. */
export const DEFAULT_QUEUE = "kv:.fledge/queue.sqlite";
/** How many times a job is started before a lost worker or a failure fails it for good (default). */
export const DEFAULT_MAX_ATTEMPTS = 3;

/** A job to submit. */
export interface JobSpec {
  /** What it runs. */
  kind: JobKind;
  /**
   * `train`: a TrainingConfig (as written: unset fields take the defaults where the job runs;
   * without `output_dir` the run folder is `<runs_dir>/job-<id>`). `eval`: the flags of
   * `deno task cli eval` by name (`{model: "runs/x", task: "classification", max_samples: 8}`).
   * `trial`: `{study_dir, trial}`, trial number `trial` of the study in `study_dir` (what
   * `runSearch` with `workers` submits; the study folder must be reachable at that path from
   * every worker). Relative paths are read from the worker's working directory.
   */
  config: Record<string, unknown>;
  /** A label for status tables (default none). */
  name?: string | null;
  /** Starts allowed before the job fails for good (default {@linkcode DEFAULT_MAX_ATTEMPTS}). */
  max_attempts?: number;
}

/** A job as the queue holds it. */
export interface JobInfo {
  /** The id {@linkcode JobQueue.submit} returned. */
  id: string;
  /** What it runs. */
  kind: JobKind;
  /** Its label, or null. */
  name: string | null;
  /** The config as submitted (see {@linkcode JobSpec.config}). */
  config: Record<string, unknown>;
  /** Where it is now. */
  state: JobState;
  /** How many times it was started (a retry after a lost worker or a failure counts). */
  attempts: number;
  /** Starts allowed before it fails for good. */
  max_attempts: number;
  /** The worker holding it (active) or that held it last. */
  worker: string | null;
  /** What the job returned (completed), else null. */
  result: Record<string, unknown> | null;
  /** Why it failed (failed), or why its last attempt failed (waiting for a retry), else null. */
  error: string | null;
  /** ISO 8601. */
  created_at: string;
  /** ISO 8601, when it completed or failed for good. */
  finished_at: string | null;
  /** What happened to it, one line per event (attempts, notes of its runs, the outcome). */
  log: string[];
}

/** A job leased by one worker: keep it with {@linkcode JobLease.heartbeat}, end it with one of the others. */
export interface JobLease {
  /** The job, with this attempt counted. */
  readonly job: JobInfo;
  /** Renew the lease; false when it was lost (expired and taken by another worker, or the job removed). */
  heartbeat(): Promise<boolean>;
  /**
   * Mark the job completed with `result` and append `log` (lines as they go in the job's log; the
   * other methods take them too); false when the lease was lost (the result is dropped).
   */
  complete(result: Record<string, unknown>, log: string[]): Promise<boolean>;
  /**
   * Record a failure: with `retry` and attempts left the job waits again, else it fails for good.
   * @returns the job's state afterwards, or null when the lease was lost
   */
  fail(reason: string, opts: { retry: boolean; log: string[] }): Promise<JobState | null>;
  /**
   * Put the job back to waiting (its worker is stopping at a signal): this attempt does not count
   * against `max_attempts`, as BullMQ counts a job a closing worker gives back as stalled, not failed.
   */
  release(log: string[]): Promise<void>;
}

/** Options of {@linkcode JobQueue.lease}. */
export interface LeaseOptions {
  /** How long the lease lasts without a heartbeat, in milliseconds. */
  lease_ms: number;
  /** How long to wait for a job when none is waiting, in milliseconds. */
  wait_ms: number;
  /** Stops the wait early. */
  signal?: AbortSignal;
}

/** A queue of jobs: what both backends offer. */
export interface JobQueue {
  /** The address it was opened with (`kv:PATH`, `redis://host:port`). */
  readonly url: string;
  /** Add a job; returns its id. */
  submit(spec: JobSpec): Promise<string>;
  /** Every job, oldest first. */
  jobs(): Promise<JobInfo[]>;
  /**
   * Remove a waiting job.
   * @returns the job as it was
   * @throws {RangeError} for an unknown id
   * @throws {Error} for a job that is not waiting (active, completed or failed)
   */
  cancel(id: string): Promise<JobInfo>;
  /** The oldest job waiting (or whose worker's lease expired), leased to `worker`; null after `wait_ms`. */
  lease(worker: string, opts: LeaseOptions): Promise<JobLease | null>;
  /** Close the connections. */
  close(): Promise<void>;
}

/** Where a queue lives: see {@linkcode parseQueueUrl}. */
export type QueueAddress =
  | { backend: "kv"; path: string }
  | {
    backend: "redis";
    host: string;
    port: number;
    db: number;
    /** The BullMQ queue name (`?queue=NAME`; default `fledge`): queues of one name share their jobs. */
    queue: string;
    /** Redis ACL user and password (`redis://user:password@host`), when given. */
    username?: string;
    password?: string;
  };

/** The BullMQ queue name of a `redis://` address without `?queue=`. */
export const DEFAULT_REDIS_QUEUE = "fledge";

/**
 * Read a queue address: `kv:PATH` or `redis://[user:password@]host[:port][/db][?queue=NAME]` (port
 * 6379, db 0 and queue `fledge` by default; a password-only `redis://:password@host` is Redis' AUTH).
 * @param url the address
 * @returns the backend and where
 * @throws {TypeError} for anything else (naming the two forms)
 * @example
 * ```ts
 * import { parseQueueUrl } from "./queue.ts";
 * const r = parseQueueUrl("redis://10.0.0.5:6380?queue=nightly");
 * if (r.backend !== "redis" || r.host !== "10.0.0.5" || r.port !== 6380 || r.queue !== "nightly") throw new Error();
 * if (parseQueueUrl("kv:q.sqlite").backend !== "kv") throw new Error();
 * ```
 */
export function parseQueueUrl(url: string): QueueAddress {
  const bad = (why: string) =>
    new TypeError(
      `Cannot open queue ${JSON.stringify(url)}: ${why}; give kv:PATH (a local file) or redis://host:port`,
    );
  if (url.startsWith("kv:")) {
    const path = url.slice(3);
    if (!path) throw bad("no file after kv:");
    return { backend: "kv", path };
  }
  if (/^rediss?:\/\//.test(url)) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw bad("not a URL");
    }
    if (u.protocol === "rediss:") throw bad("TLS (rediss://) is not supported");
    const db = u.pathname.replace(/^\//, "");
    if (db && !/^\d+$/.test(db)) throw bad(`database ${JSON.stringify(db)} is not a number`);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    if (!host) throw bad("no host");
    const unknown = [...u.searchParams.keys()].filter((k) => k !== "queue");
    if (unknown.length) throw bad(`unknown parameter ${JSON.stringify(unknown[0])} (only ?queue=NAME)`);
    const queue = u.searchParams.get("queue") ?? DEFAULT_REDIS_QUEUE;
    // BullMQ keys are bull:<name>:...; a colon in the name would read as another key's parts
    if (!/^[A-Za-z0-9._-]+$/.test(queue)) {
      throw bad(
        `queue name ${JSON.stringify(queue)} is empty or has characters other than A-Z a-z 0-9 . _ -`,
      );
    }
    if (u.hash) throw bad(`unexpected ${JSON.stringify(u.hash)}`);
    return {
      backend: "redis",
      host,
      port: u.port ? Number(u.port) : 6379,
      db: db ? Number(db) : 0,
      queue,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    };
  }
  throw bad("unknown kind of address");
}

/**
 * Open a queue: Deno KV on a local file (`kv:PATH`, created with its folder when missing) or BullMQ
 * on Redis (`redis://host:port`).
 * @param url the address (default {@linkcode DEFAULT_QUEUE})
 * @param opts `create`: make a missing `kv:` file (default true); false for a command that only
 *   reads or removes jobs, where a missing file is a mistyped address
 * @returns the queue (close it when done)
 * @throws {TypeError} for a bad address
 * @throws {Deno.errors.NotFound} with `create: false`, for a `kv:` file that does not exist
 * @throws {Error} when Redis cannot be reached (one line naming host and port, within seconds), or
 *   Deno KV is not enabled (`--unstable-kv`)
 * @example
 * ```ts
 * // Deno KV: run with --unstable-kv (deno.json's "unstable": ["kv"] sets it for deno task)
 * import { openQueue } from "./queue.ts";
 * const dir = await Deno.makeTempDir();
 * const q = await openQueue(`kv:${dir}/q.sqlite`);
 * const id = await q.submit({ kind: "train", config: { model: "tiny", max_steps: 2 } });
 * const [job] = await q.jobs();
 * if (job.id !== id || job.state !== "waiting" || job.attempts !== 0) throw new Error(job.state);
 * await q.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openQueue(
  url: string = DEFAULT_QUEUE,
  opts: { create?: boolean } = {},
): Promise<JobQueue> {
  refuseUnknownOptions(opts, ["create"], "openQueue");
  const a = parseQueueUrl(url);
  if (a.backend === "kv") {
    return await (await import("./_queue_kv.ts")).openKvQueue(a.path, url, { create: opts.create ?? true });
  }
  return await (await import("./_queue_redis.ts")).openRedisQueue(a, url);
}

const SPEC_KEYS = ["kind", "config", "name", "max_attempts"];

/**
 * Check a job as written (YAML or JSON) and return it as a {@linkcode JobSpec}. An object with
 * `kind` or `config` is a job (`{kind, config, name?, max_attempts?}`); any other object is the
 * TrainingConfig of a `train` job. A `train` config is validated here (unknown fields, ranges), so a
 * typo is an error at submit time; what only running can find (missing files, a model too short
 * for the block size) fails the job where it runs. A `trial` config is `{study_dir, trial}`.
 * @param raw the parsed file
 * @param where what to name in errors (the file)
 * @returns the job
 * @throws {TypeError} / {RangeError} for a bad job or config, naming `where` and the field
 * @example
 * ```ts
 * import { parseJobSpec } from "./queue.ts";
 * const j = parseJobSpec({ kind: "eval", config: { model: "runs/x", task: "classification" } }, "job.yaml");
 * if (j.kind !== "eval" || j.max_attempts !== 3) throw new Error();
 * if (parseJobSpec({ model: "tiny", max_steps: 3 }, "run.yaml").kind !== "train") throw new Error();
 * ```
 */
export function parseJobSpec(raw: unknown, where: string): JobSpec {
  const bad = (why: string) => new TypeError(`Cannot read job ${where}: ${why}`);
  if (!isObject(raw)) throw bad(`expected a mapping, got ${typeOf(raw)}`);
  const o: Record<string, unknown> = "kind" in raw || "config" in raw ? raw : { kind: "train", config: raw };
  const unknown = Object.keys(o).filter((k) => !SPEC_KEYS.includes(k));
  if (unknown.length) {
    throw bad(
      `unknown key ${unknown.join(", ")}; a job has ${SPEC_KEYS.join(", ")} (or is a TrainingConfig alone)`,
    );
  }
  const kind = o.kind ?? "train";
  if (typeof kind !== "string" || !(JOB_KINDS as readonly string[]).includes(kind)) {
    throw bad(`kind ${JSON.stringify(kind)}; use ${JOB_KINDS.join(", ")}`);
  }
  if (!isObject(o.config)) throw bad(`config must be a mapping, got ${typeOf(o.config)}`);
  if (o.name != null && typeof o.name !== "string") throw bad(`name must be text, got ${typeOf(o.name)}`);
  const max = o.max_attempts ?? DEFAULT_MAX_ATTEMPTS;
  if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
    throw new RangeError(
      `Cannot read job ${where}: max_attempts must be an integer >= 1, got ${JSON.stringify(max)}` +
        (typeof max === "string" ? " (write the number without quotes)" : ""),
    );
  }
  let config = o.config;
  if (kind === "train") {
    // another tool's config (nanoGPT, LLMBuilder) as train --config reads it: in fledge's names
    const m = migrateConfig(config, { file: `${where} config` });
    if (m.formats.length) config = m.fields as Record<string, unknown>;
    validateTrainingConfig(config, { file: `${where} config`, warn: () => {} });
  }
  if (kind === "trial") {
    const c = o.config, keys = Object.keys(c).filter((k) => k !== "study_dir" && k !== "trial");
    if (typeof c.study_dir !== "string" || !c.study_dir || keys.length) {
      throw bad(
        `a trial's config is {study_dir, trial} (a study folder and a trial number)${
          keys.length ? `; unknown key ${keys.join(", ")}` : ""
        }`,
      );
    }
    if (typeof c.trial !== "number" || !Number.isInteger(c.trial) || c.trial < 0) {
      throw new RangeError(
        `Cannot read job ${where}: config.trial must be an integer >= 0, got ${show(c.trial)}`,
      );
    }
  }
  return {
    kind: kind as JobKind,
    config,
    name: (o.name as string | null) ?? null,
    max_attempts: max,
  };
}

/**
 * Read a job file (YAML or JSON, see {@linkcode parseJobSpec}). `config: other.yaml` names a config
 * file, read relative to the job file.
 * @param path the job file
 * @returns the job
 * @throws {Deno.errors.NotFound} for a missing file
 * @throws {SyntaxError} for bad YAML
 * @throws {TypeError} / {RangeError} as {@linkcode parseJobSpec}
 */
export async function loadJobSpec(path: string): Promise<JobSpec> {
  const read = async (file: string) => {
    const text = await readNamedTextFile(file, "Cannot read job:", "give a job .yaml file");
    try {
      return parseYaml(text) as unknown;
    } catch (e) {
      throw new SyntaxError(`Cannot read job ${file}: ${yamlProblem((e as Error).message)}`);
    }
  };
  const raw = await read(path);
  if (isObject(raw) && typeof raw.config === "string") {
    return parseJobSpec({ ...raw, config: await read(resolve(dirname(path), raw.config)) }, path);
  }
  return parseJobSpec(raw, path);
}

/** What a job handler is told. */
export interface JobContext {
  /** This attempt (1 for the first start). */
  attempt: number;
  /** Where run folders without an `output_dir` go: `<runs_dir>/job-<id>`. */
  runs_dir: string;
  /** The worker's name. */
  worker: string;
  /** A note for the user and the job's log. */
  log: (line: string) => void;
  /** Let a training run stop at SIGINT / SIGTERM after a checkpoint (for workers on a command line). */
  handle_signals: boolean;
  /** Aborted when the lease is lost (another worker took the job over): stop soon, the result is dropped. */
  signal?: AbortSignal;
}

/** What a job handler returns: the job's result, or that a signal stopped it (it waits again). */
export interface JobOutcome {
  /** What the job returned (JSON-serialisable; shown by status and results). */
  result: Record<string, unknown>;
  /** The signal that stopped it before the end (a training run saved a checkpoint), else null. */
  interrupted?: "SIGINT" | "SIGTERM" | null;
}

/** Runs one kind of job. Throw bad input (TypeError, RangeError, SyntaxError, NotFound) to fail it for good. */
export type JobHandler = (job: JobInfo, ctx: JobContext) => Promise<JobOutcome>;

/** The file a train job's first attempt leaves in the run folder it made: the job's id. */
export const JOB_MARK = ".fledge-job";

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    for await (const _ of Deno.readDir(dir)) return false;
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}

/**
 * The `train` handler: {@linkcode runTraining} on the job's config into its run
 * folder (`output_dir`, else `<runs_dir>/job-<id>`). A retry resumes from the newest checkpoint there
 * (`resume_from_checkpoint: true`), so it ends with the metrics an uninterrupted run has; a retry
 * before the first checkpoint starts over. Only in the job's own folder: one that held something
 * before the first attempt (another run) is refused on every attempt, never resumed or replaced,
 * unless the config has `overwrite_output_dir` (the first attempt then takes it over, and its
 * retries resume there). A run-folder lock left by a lost worker on another host
 * is removed (the queue's lease says that worker is gone; one on this host is taken over as stale).
 * When `ctx.signal` aborts (the lease was lost), the run stops after the current step.
 * @param job the job
 * @param ctx the attempt, runs_dir, log
 * @returns `result`: output_dir, final_loss, final_perplexity, global_step, metrics (the
 *   metrics_summary), training_time, checkpoint_path, resumed_from (the checkpoint a retry resumed from)
 */
export async function trainJob(job: JobInfo, ctx: JobContext): Promise<JobOutcome> {
  const raw = { ...job.config };
  if (raw.output_dir === undefined || raw.output_dir === null) {
    raw.output_dir = join(ctx.runs_dir, `job-${job.id}`);
  }
  let config = validateTrainingConfig(raw, { file: `job ${job.id} config`, warn: ctx.log });
  const out = config.output_dir;
  // The first attempt marks a run folder it makes as the job's; a retry resumes or starts over only
  // in the job's own folder (another run's is refused as the first attempt refuses it).
  const mark = join(out, JOB_MARK);
  // overwrite_output_dir: the first attempt takes the folder over, so its retries resume there (they
  // had overwritten the first attempt's checkpoints and started from step 0)
  const ownMark = async () => (await Deno.readTextFile(mark).catch(() => "")).trim() === job.id;
  let fresh = false;
  if (
    ctx.attempt === 1 && !(await ownMark()) && (config.overwrite_output_dir || await isEmptyOrMissing(out))
  ) {
    await Deno.mkdir(out, { recursive: true });
    await writeFileAtomic(mark, `${job.id}\n`);
    fresh = true;
  }
  // the job's own folder, from an earlier start: a retry, or a start after a worker gave the job
  // back at a signal, which is attempt 1 again (it had been refused as another run's folder)
  const mine = !fresh && await ownMark();
  const resumed = mine ? await retryCheckpoint(out, ctx, job.id, { any_attempt: true }) : null;
  if (resumed) config = { ...config, resume_from_checkpoint: true, overwrite_output_dir: false };
  else if (mine) config = { ...config, resume_from_checkpoint: null, overwrite_output_dir: true };
  const r = await runTraining(config, {
    progress: false,
    log: ctx.log,
    handle_signals: ctx.handle_signals,
    hooks: leaseHooks(ctx),
  });
  return {
    interrupted: r.interrupted,
    result: {
      output_dir: out,
      final_loss: r.final_loss,
      final_perplexity: r.final_perplexity,
      global_step: r.metrics_summary.global_step,
      metrics: r.metrics_summary,
      training_time: r.training_time,
      checkpoint_path: r.checkpoint_path,
      resumed_from: resumed ? basename(resumed) : null,
    },
  };
}

/** Options of {@linkcode runWorker}. */
export interface RunWorkerOptions {
  /**
   * Handlers by kind, over the defaults (`train`: {@linkcode trainJob}; `trial`: a search trial that
   * reports to its study, as `runSearch` with `workers` submits; no `eval`).
   */
  handlers?: Partial<Record<JobKind, JobHandler>>;
  /** Stop after this many jobs (default: no limit). */
  max_jobs?: number;
  /** Stop after this many seconds with no job to take (default: wait for ever). */
  idle_exit?: number;
  /** The lease in seconds: a worker silent this long has lost its job (default 30). */
  lease?: number;
  /** Where run folders without an `output_dir` go (default `runs/queue`). */
  runs_dir?: string;
  /** The worker's name (default `host:pid`). */
  worker?: string;
  /** One line per event (default stderr). */
  log?: (line: string) => void;
  /**
   * Stop at SIGINT / SIGTERM: a training job saves a checkpoint and waits again, another job ends
   * first (default false).
   */
  handle_signals?: boolean;
}

/** What {@linkcode runWorker} did. */
export interface WorkerSummary {
  /** The worker's name. */
  worker: string;
  /** Jobs taken. */
  processed: number;
  /** Completed. */
  completed: number;
  /** Failed for good. */
  failed: number;
  /** Failed and waiting for another attempt, put back at a signal, or lost with the lease. */
  retried: number;
  /** The signal that stopped the worker, else null. */
  interrupted: "SIGINT" | "SIGTERM" | null;
}

/**
 * Take jobs from `queue` one at a time and run each with the handler of its kind, renewing its lease
 * every third of the lease; until `max_jobs` jobs were taken, `idle_exit` seconds passed with none to
 * take, or (with `handle_signals`) SIGINT / SIGTERM. A handler's bad-input error (TypeError,
 * RangeError, SyntaxError, NotFound, PermissionDenied) fails the job for good; another error fails
 * this attempt, and the job waits again while it has attempts left.
 * @param queue the queue
 * @param opts handlers, max_jobs, idle_exit, lease, runs_dir, worker, log, handle_signals
 * @returns what the worker did
 * @example
 * ```ts
 * // Deno KV: run with --unstable-kv (deno.json's "unstable": ["kv"] sets it for deno task)
 * import { openQueue, runWorker } from "./queue.ts";
 * const dir = await Deno.makeTempDir();
 * const q = await openQueue(`kv:${dir}/q.sqlite`);
 * await q.submit({ kind: "eval", config: { task: "summarization" } });
 * const s = await runWorker(q, {
 *   handlers: { eval: async (job) => ({ result: { task: job.config.task } }) },
 *   max_jobs: 1,
 *   log: () => {},
 * });
 * const [job] = await q.jobs();
 * if (s.completed !== 1 || job.state !== "completed" || job.result?.task !== "summarization") throw new Error();
 * await q.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runWorker(queue: JobQueue, opts: RunWorkerOptions = {}): Promise<WorkerSummary> {
  // a misspelt option had run on its default (`{ max_job: 1 }` took jobs for ever)
  refuseUnknownOptions(
    opts,
    ["handlers", "max_jobs", "idle_exit", "lease", "runs_dir", "worker", "log", "handle_signals"],
    "runWorker",
  );
  const handlers: Partial<Record<JobKind, JobHandler>> = {
    train: trainJob,
    trial: trialJob,
    ...opts.handlers,
  };
  const bad = [
    opts.max_jobs !== undefined && !(Number.isInteger(opts.max_jobs) && opts.max_jobs >= 1) &&
    `max_jobs ${opts.max_jobs} is not an integer >= 1`,
    opts.idle_exit !== undefined && !(opts.idle_exit >= 0 && opts.idle_exit < Infinity) &&
    `idle_exit ${opts.idle_exit} is not a number of seconds >= 0`,
    opts.lease !== undefined && !(opts.lease >= 1 && opts.lease < Infinity) &&
    `lease ${opts.lease} is not a number of seconds >= 1 (a heartbeat renews it every third of it; a ` +
      `shorter one expires while a job loads its model and hands the job to the next worker)`,
  ].filter(Boolean);
  if (bad.length) throw new RangeError(`Cannot run the worker: ${bad.join("; ")}`);
  const worker = opts.worker ?? `${Deno.hostname()}:${Deno.pid}`;
  const say = opts.log ?? ((line: string) => console.error(line));
  const lease_ms = (opts.lease ?? 30) * 1000;
  const runs_dir = opts.runs_dir ?? join("runs", "queue");
  const s: WorkerSummary = { worker, processed: 0, completed: 0, failed: 0, retried: 0, interrupted: null };
  const stop = new AbortController();
  const onSignal = (sig: "SIGINT" | "SIGTERM") => () => {
    s.interrupted ??= sig;
    stop.abort();
  };
  const listeners = opts.handle_signals
    ? (["SIGINT", "SIGTERM"] as const).map((sig) => [sig, onSignal(sig)] as const)
    : [];
  for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
  try {
    let idleSince = Date.now();
    while (!stop.signal.aborted && (opts.max_jobs === undefined || s.processed < opts.max_jobs)) {
      const left = opts.idle_exit === undefined ? Infinity : idleSince + opts.idle_exit * 1000 - Date.now();
      // idle_exit 0: take what is waiting now, then stop once nothing is (it once took nothing)
      const lease = await queue.lease(worker, {
        lease_ms,
        wait_ms: Math.max(0, Math.min(1000, left)),
        signal: stop.signal,
      });
      if (!lease) {
        if (left <= 0) break;
        continue;
      }
      s.processed++;
      const busy = await runOne(lease, handlers, {
        say,
        s,
        lease_ms,
        runs_dir,
        worker,
        handle_signals: !!opts.handle_signals,
      });
      // a run folder held by a live process: a lease's time for it to finish or die before the next try
      if (busy) await new Promise((r) => setTimeout(r, lease_ms));
      idleSince = Date.now();
    }
  } finally {
    for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
  }
  return s;
}

const show = (x: unknown): string => typeof x === "string" ? JSON.stringify(x) : String(x);
const typeOf = (x: unknown): string => x === null ? "null" : Array.isArray(x) ? "a list" : typeof x;
