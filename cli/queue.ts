/**
 * `deno task cli queue`: a job queue of training runs, evaluations and search trials, on this
 * machine (Deno KV, the default) or many (`--queue redis://host:port`, BullMQ). `submit` adds a
 * job, `work` runs jobs, `status` / `results` show them, `cancel` removes a waiting one; see
 * {@linkcode openQueue} and {@linkcode runWorker}.
 *
 * @module
 */
import { type FlagSpecs, parseFlags } from "../util/flags.ts";
import { agree } from "../util/problems.ts";
import {
  DEFAULT_QUEUE,
  type JobContext,
  type JobInfo,
  type JobOutcome,
  type JobQueue,
  loadJobSpec,
  openQueue,
  runWorker,
} from "../training/queue.ts";
import { checkEvalFlags, command as evalCommand, EVAL_FLAG_NAMES, EVAL_SWITCHES } from "./eval.ts";
import type { CliIO, Command } from "./command.ts";

const QUEUE_OPT = `  --queue ADDRESS            kv:PATH (this machine; default ${DEFAULT_QUEUE}) or
                             redis://[user:password@]host:port[/db][?queue=NAME] (many
                             machines; BullMQ queue NAME, default fledge)`;

const USAGE = `usage: deno task cli queue submit|work|status|results|cancel [options]

A queue of jobs (training runs, evaluations, search trials) that workers on this machine or many
take one at a time. A worker that dies leaves its job to another once its lease expires; a training
job resumes from its newest checkpoint. A job with bad input fails once, with the reason in status.

commands:
  submit --config job.yaml   add a job; prints its id
  work                       run jobs until stopped (--once, --max_jobs N, --idle_exit SECONDS)
  status [--json]            every job: id, kind, state, attempts, result or error
  results [--json]           the results of completed jobs
  cancel ID                  remove a waiting job

options (every command):
${QUEUE_OPT}
  -h, --help                 this text; \`queue <command> --help\` for one command's

A job file:
  kind: train                train (default), eval or trial
  name: lr-3e-4              a label (optional)
  max_attempts: 3            starts before it fails for good (default 3)
  config:                    train: a TrainingConfig (or the name of its file); eval: the flags
    model: tiny              of \`deno task cli eval\` ({model: runs/x, task: classification});
    dataset: data.jsonl      trial: {study_dir: DIR, trial: N} (what \`search --workers\` submits)
A file without kind or config is the config of a train job. Paths are read from the worker's
directory; a run without output_dir goes to <runs_dir>/job-<id>.`;

const SUB_USAGE: Record<string, string> = {
  submit: `usage: deno task cli queue submit --config job.yaml [--queue ADDRESS]

Adds the job in job.yaml (see \`deno task cli queue --help\` for its keys) and prints its id. A
train config is validated now; what only running finds (a missing file) fails the job.

options:
  -c, --config FILE          the job (YAML or JSON)
${QUEUE_OPT}
  -h, --help                 this text`,
  work: `usage: deno task cli queue work [--queue ADDRESS] [--once | --max_jobs N] [--idle_exit SECONDS]

Takes jobs one at a time and runs them; notes on stderr, a summary on stdout. SIGINT / SIGTERM
stop it: a training job saves a checkpoint and waits for the next worker (exit 130 / 143).

options:
${QUEUE_OPT}
  --once                     take one job, then exit (exit code 1 when it failed)
  --max_jobs N               take N jobs, then exit
  --idle_exit SECONDS        exit after this long with no job to take (default: wait for ever)
  --lease SECONDS            a worker silent this long loses its job to another (default 30, at least 1)
  --runs_dir DIR             run folders of jobs without output_dir (default runs/queue)
  --worker NAME              this worker's name in status (default host:pid)
  -h, --help                 this text`,
  status: `usage: deno task cli queue status [--queue ADDRESS] [--json]

Every job, oldest first: id, kind, state (waiting, active, completed, failed), attempts, name, and
its result or error. --json: a JSON array of the jobs with their config, result, error and log.

options:
${QUEUE_OPT}
  --json                     print JSON
  -h, --help                 this text`,
  results: `usage: deno task cli queue results [--queue ADDRESS] [--json]

The results of the completed jobs: a table (training: loss, perplexity, steps, run folder;
evaluation: its metrics), or with --json an array of {id, kind, name, config, result}.

options:
${QUEUE_OPT}
  --json                     print JSON
  -h, --help                 this text`,
  cancel: `usage: deno task cli queue cancel ID [--queue ADDRESS]

Removes the waiting job ID. An active job is stopped by stopping its worker (SIGTERM saves a
checkpoint; the job waits for the next worker).

options:
${QUEUE_OPT}
  -h, --help                 this text`,
};

const QUEUE_FLAG = { queue: { type: "string", default: DEFAULT_QUEUE } } as const;
const FLAGS = {
  submit: { ...QUEUE_FLAG, config: { type: "string", short: "c", required: true } },
  work: {
    ...QUEUE_FLAG,
    once: { type: "boolean" },
    max_jobs: { type: "int", min: 1 },
    idle_exit: { type: "number", min: 0 },
    lease: { type: "number", min: 1 },
    runs_dir: { type: "string", default: "runs/queue" },
    worker: { type: "string" },
  },
  status: { ...QUEUE_FLAG, json: { type: "boolean" } },
  results: { ...QUEUE_FLAG, json: { type: "boolean" } },
  cancel: { ...QUEUE_FLAG },
} as const satisfies Record<string, FlagSpecs>;

type Sub = keyof typeof FLAGS;

/** An eval job's config as `deno task cli eval` flags (`{model: "runs/x", max_samples: 8}` -> `--model runs/x --max_samples 8`). */
function evalArgs(config: Record<string, unknown>): string[] {
  const args: string[] = [];
  for (const [k, v] of Object.entries(config)) {
    // false is a switch's default (null an option's), except where the run saved it on: split_lines
    if (v === false && k === "split_lines") args.push("--no_split_lines");
    if (v === false || v === null || v === undefined || k === "json") continue;
    args.push(`--${k}`);
    if (v !== true) args.push(Array.isArray(v) ? v.join(",") : String(v));
  }
  return args;
}

/**
 * The `eval` job handler: `deno task cli eval` in this process, its flags from the job's config
 * (`{model: "runs/x", max_samples: 8}` -> `--model runs/x --max_samples 8`), its `--json` metrics the result.
 */
async function evalJob(job: JobInfo, ctx: JobContext): Promise<JobOutcome> {
  let out = "";
  await evalCommand.run([...evalArgs(job.config), "--json"], {
    stdout: (s) => out += s,
    stderr: (s) => ctx.log(s.trimEnd()),
  });
  return { result: JSON.parse(out) as Record<string, unknown> };
}

function num(v: unknown, digits = 4): string {
  if (typeof v === "number") return Number(v.toFixed(digits)).toString();
  // a trial's intermediate values and the like: JSON, not "[object Object]"
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

/** One line about a job's result or error. */
function summary(j: JobInfo): string {
  if (j.error && j.state !== "completed") {
    return `${j.state === "failed" ? "error" : "last error"}: ${j.error}`;
  }
  const r = j.result;
  if (!r) return "";
  if (j.kind !== "eval" && "final_loss" in r) {
    return `loss ${num(r.final_loss)}, perplexity ${num(r.final_perplexity, 2)}, ${r.global_step} steps` +
      (r.resumed_from ? ` (resumed from ${r.resumed_from})` : "") + ` -> ${r.output_dir}`;
  }
  return Object.entries(r).map(([k, v]) => `${k} ${num(v)}`).join(", ");
}

function table(jobs: JobInfo[]): string {
  if (!jobs.length) return "no jobs\n";
  const rows = jobs.map((
    j,
  ) => [j.id, j.kind, j.state, `${j.attempts}/${j.max_attempts}`, j.name ?? "-", summary(j)]);
  const head = ["id", "kind", "state", "attempts", "name", "result"];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(w[i])).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n") + "\n";
}

async function withQueue<T>(
  url: string,
  fn: (q: JobQueue) => Promise<T>,
  opts: { create?: boolean } = {},
): Promise<T> {
  const q = await openQueue(url, opts);
  try {
    return await fn(q);
  } finally {
    await q.close();
  }
}

async function queueRun(args: string[], io: CliIO): Promise<number | void> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || sub === "help") return io.stdout(USAGE + "\n");
  if (sub === undefined) {
    throw new TypeError(
      "queue: missing the subcommand; write `deno task cli queue submit|work|status|results|cancel ...` " +
        "(see `deno task cli queue --help`)",
    );
  }
  // A flag before any command is reported as every command reports an unknown flag.
  if (sub.startsWith("-")) parseFlags("queue", [sub], {});
  if (!Object.hasOwn(FLAGS, sub)) {
    throw new TypeError(
      `queue: unknown command ${JSON.stringify(sub)}; use ${Object.keys(FLAGS).join(", ")} ` +
        `(see \`deno task cli queue --help\`)`,
    );
  }
  const name = sub as Sub;
  // `cancel ID`: the id is the one positional argument.
  const id = name === "cancel" && rest[0] !== undefined && !rest[0].startsWith("-")
    ? rest.shift()
    : undefined;
  const cmd = `queue ${name}`;
  if (rest.includes("--help") || rest.includes("-h")) return io.stdout(SUB_USAGE[name] + "\n");
  switch (name) {
    case "submit": {
      const v = parseFlags(cmd, rest, FLAGS.submit);
      const spec = await loadJobSpec(v.config);
      if (spec.kind === "eval") {
        // checked here, not when a worker runs it: an unknown option would fail the job, or be ignored
        const unknown = Object.keys(spec.config).filter((k) => !EVAL_FLAG_NAMES.includes(k) || k === "json");
        const off = Object.keys(spec.config).filter((k) =>
          spec.config[k] === false && !EVAL_SWITCHES.includes(k) && !unknown.includes(k)
        );
        if (off.length) { // it was dropped, so max_samples: false evaluated every example
          throw new TypeError(
            `${cmd}: ${v.config}: ${off.map((k) => `${k}: false`).join(", ")} ${agree(off).is} no value ` +
              `(${
                agree(off).it === "it" ? "it is not a switch" : "they are not switches"
              }); give a value, or drop ` +
              `${agree(off).it} for the default`,
          );
        }
        if (unknown.length) {
          throw new TypeError(
            `${cmd}: ${v.config}: an eval job's config has no field ${
              unknown.join(", ")
            }; its fields are the ` +
              `flags of deno task cli eval: ${EVAL_FLAG_NAMES.filter((k) => k !== "json").join(", ")}`,
          );
        }
        try { // its values as eval reads them (task: clasification had failed only when a worker ran it)
          checkEvalFlags(evalArgs(spec.config));
        } catch (e) {
          if (e instanceof Error) {
            e.message = `${cmd}: ${v.config}: ${e.message.replace(/ \(see `[^`]*`\)$/, "")}`;
          }
          throw e;
        }
      }
      const jobId = await withQueue(v.queue, (q) => q.submit(spec));
      io.stdout(jobId + "\n");
      return;
    }
    case "work": {
      const v = parseFlags(cmd, rest, FLAGS.work);
      if (v.once && v.max_jobs !== undefined) {
        throw new TypeError(`${cmd}: give --once or --max_jobs, not both`);
      }
      const s = await withQueue(v.queue, (q) =>
        runWorker(q, {
          handlers: { eval: evalJob },
          max_jobs: v.once ? 1 : v.max_jobs,
          idle_exit: v.idle_exit,
          lease: v.lease,
          runs_dir: v.runs_dir,
          worker: v.worker,
          log: (line) => io.stderr(line + "\n"),
          handle_signals: true,
        }));
      io.stdout(
        `worker ${s.worker}: ${s.processed} jobs taken: ${s.completed} completed, ${s.failed} failed, ` +
          `${s.retried} to retry` + (s.interrupted ? `; stopped by ${s.interrupted}` : "") + "\n",
      );
      if (s.interrupted) return s.interrupted === "SIGINT" ? 130 : 143;
      // a worker asked for a set number of jobs fails when one of them did (it had exited 0), so
      // `queue work --once && ...` stops there; a standing worker's failures are in queue status
      const counted = v.once || v.max_jobs !== undefined;
      return counted && (s.failed || s.retried) ? 1 : 0;
    }
    case "status":
    case "results": {
      const v = parseFlags(cmd, rest, FLAGS[name]);
      let jobs = await withQueue(v.queue, (q) => q.jobs(), { create: false });
      if (name === "results") {
        jobs = jobs.filter((j) => j.state === "completed");
        if (v.json) {
          const out = jobs.map(({ id, kind, name, config, result }) => ({ id, kind, name, config, result }));
          return io.stdout(JSON.stringify(out, null, 2) + "\n");
        }
        return io.stdout(jobs.length ? table(jobs) : "no completed jobs\n");
      }
      return io.stdout(v.json ? JSON.stringify(jobs, null, 2) + "\n" : table(jobs));
    }
    case "cancel": {
      const v = parseFlags(cmd, rest, FLAGS.cancel);
      if (id === undefined) {
        throw new TypeError(`${cmd}: give the job's id (see \`deno task cli queue status\`)`);
      }
      const j = await withQueue(v.queue, (q) => q.cancel(id), { create: false });
      io.stdout(`cancelled job ${j.id}${j.name ? ` (${j.name})` : ""}\n`);
      return;
    }
  }
}

/** The `queue` command. */
export const command: Command = {
  summary: "a job queue of runs, evaluations and trials: submit, work, status, results, cancel",
  usage: USAGE,
  run: queueRun,
};
