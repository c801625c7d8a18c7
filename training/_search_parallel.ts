/**
 * Private to `search.ts`: the study loop of `runSearch` with `workers`: up to `workers` trials at a
 * time run as `trial` jobs of a queue (`training/queue.ts`) on worker processes, which this process
 * may start itself (`local_workers`) and which may also run on other machines sharing the study
 * folder. This process alone writes `study.json`: it samples each trial when a slot frees (TPE sees
 * every trial finished by then, as Optuna's parallel `optimize`), submits it, folds the workers'
 * reports (`trials/trial-NNNN.json`) and results into the study, and writes the reports at the end.
 * A worker that dies leaves its trial to another worker once its lease expires, resuming from the
 * trial's newest checkpoint; a search process that dies finds its trials' jobs again when rerun.
 * @module
 */
import { basename, resolve } from "node:path";
import { type JobInfo, type JobQueue, openQueue } from "./queue.ts";
import { type LoopOptions, nextTrial } from "./_search_run.ts";
import { endTrial, readReport, type TrialOutcome } from "./_search_trial.ts";
import { openStudy, trialDir, trialLine, writeReports, writeStudy } from "./_search_study.ts";
import type { SearchConfig, SearchResult, Trial } from "./search.ts";

/** How trials reach workers. */
export interface ParallelOptions {
  /** Trials running at once. */
  workers: number;
  /** The queue's address (`kv:PATH`, `redis://host:port`). */
  queue: string;
  /** Worker processes this process starts (and restarts while its trials wait); 0: workers run elsewhere. */
  local_workers: number;
  /** The command that starts a worker, before `queue work ...` (default: this Deno running fledge's cli.ts). */
  worker_command: string[] | null;
  /** The workers' lease in seconds (a worker silent this long loses its trial to another). */
  lease: number;
}

const POLL_MS = 250;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run or resume the study of `config` on queue workers (see `runSearch`). */
export async function searchStudyQueued(
  config: SearchConfig,
  o: LoopOptions & ParallelOptions,
): Promise<SearchResult> {
  const c = { ...config, study_dir: resolve(config.study_dir) };
  const { study, lock } = await openStudy(c, o.log);
  let queue: JobQueue | null = null;
  const pool = new LocalWorkers(o);
  try {
    queue = await openQueue(o.queue);
    const q = queue;
    const save = () => writeStudy(c.study_dir, study);
    // The trial is in study.json before its job is in the queue, and a rerun finds the job by
    // its config: a kill between the two never submits a trial twice.
    const submit = async (t: Trial) => {
      t.run_dir = trialDir(t.number);
      t.started ??= new Date().toISOString();
      await save();
      t.job_id = await q.submit({
        kind: "trial",
        name: `${basename(c.study_dir)} trial ${t.number}`,
        config: { study_dir: c.study_dir, trial: t.number },
      });
      await save();
    };
    const inflight = new Map<number, string>();
    const mine = (await q.jobs()).filter((j) => j.kind === "trial" && j.config.study_dir === c.study_dir);
    for (const t of study.trials.filter((t) => t.state === "running")) {
      const job = mine.filter((j) => j.config.trial === t.number && j.state !== "failed").pop() ??
        mine.find((j) => j.id === t.job_id);
      if (!job) {
        await submit(t);
        o.log(`search: trial ${t.number} submitted as job ${t.job_id}: no job of it in ${q.url}`);
      } else {
        if (t.job_id !== job.id) {
          t.job_id = job.id;
          await save();
        }
        o.log(`search: trial ${t.number} is job ${job.id} (${job.state}) in ${q.url}`);
      }
      inflight.set(t.number, t.job_id!);
    }
    const t0 = performance.now();
    let stopped_by: SearchResult["stopped_by"] | null = null;
    for (;;) {
      const jobs = inflight.size
        ? new Map((await q.jobs()).map((j) => [j.id, j]))
        : new Map<string, JobInfo>();
      let changed = false, waiting = 0;
      for (const [number, id] of inflight) {
        const t = study.trials[number], job = jobs.get(id);
        if (job?.state === "completed") {
          endTrial(t, job.result as unknown as TrialOutcome);
          inflight.delete(number);
          changed = true;
          o.log(trialLine(c, study.trials, t));
        } else if (!job || job.state === "failed") {
          endTrial(t, {
            state: "failed",
            note: job ? job.error ?? "failed" : `its job ${id} was removed from the queue`,
          });
          await save();
          throw new Error(
            `Cannot go on with the search: trial ${t.number} (job ${id}) failed: ${t.note}; ` +
              `fix the cause and rerun to continue (finished trials are kept)`,
          );
        } else {
          // a trial a search worker of this host held and that no longer runs (it died, or this is a
          // rerun) needs a worker too: its lease() takes the trial back once the lease expires
          // (BullMQ's stalled jobs); one on a worker elsewhere is that worker's
          if (job.state === "waiting" || (pool.isOurs(job.worker) && !pool.runs(job.worker))) waiting++;
          const r = await readReport(c.study_dir, number);
          if (r && JSON.stringify(r.intermediate_values) !== JSON.stringify(t.intermediate_values)) {
            t.intermediate_values = r.intermediate_values;
            changed = true;
          }
        }
      }
      if (changed) await save();
      while (stopped_by === null && inflight.size < o.workers) {
        const t = nextTrial(c, study, o, t0);
        if (typeof t === "string") stopped_by = t;
        else {
          await submit(t);
          inflight.set(t.number, t.job_id!);
          waiting++;
        }
      }
      if (stopped_by !== null && !inflight.size) break;
      pool.keep(waiting);
      await sleep(POLL_MS);
    }
    return await writeReports(c, study.trials, stopped_by);
  } finally {
    await pool.stop();
    await queue?.close();
    await lock.release();
  }
}

/** The worker command without arguments: `deno run -A cli.ts`, or a compiled fledge itself. */
function defaultWorkerCommand(): string[] {
  const exe = Deno.execPath();
  if (/^deno(\.exe)?$/i.test(basename(exe))) {
    return [exe, "run", "-A", "--unstable-kv", new URL("../cli.ts", import.meta.url).href];
  }
  return [exe];
}

/** The worker processes this search starts: started while trials wait, stopped at the end. */
class LocalWorkers {
  #alive = new Set<Deno.ChildProcess>();
  #names = new Set<string>();
  #started = 0;
  #stopping = false;
  #o: ParallelOptions & LoopOptions;
  constructor(o: ParallelOptions & LoopOptions) {
    this.#o = o;
  }

  /** Whether `worker` is named as this host's search workers are (this process's or an earlier one's). */
  isOurs(worker: string | null): boolean {
    return worker !== null && worker.startsWith(`${Deno.hostname()}:search-`);
  }

  /** Whether `worker` names a worker of this process that is still running. */
  runs(worker: string | null): boolean {
    return worker !== null && this.#names.has(worker);
  }

  /** Start workers up to `local_workers` while trials wait (a worker that exited is replaced). */
  keep(waiting: number): void {
    for (; waiting > 0 && this.#alive.size < this.#o.local_workers; waiting--) this.#spawn();
  }

  #spawn(): void {
    const [cmd, ...pre] = this.#o.worker_command ?? defaultWorkerCommand();
    const name = `${Deno.hostname()}:search-${++this.#started}`;
    let p: Deno.ChildProcess;
    try {
      p = new Deno.Command(cmd, {
        args: [
          ...pre,
          "queue",
          "work",
          "--queue",
          this.#o.queue,
          "--lease",
          String(this.#o.lease),
          "--worker",
          name,
          "--idle_exit",
          "60",
        ],
        cwd: Deno.cwd(),
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new Error(`Cannot start a search worker (${cmd}): ${(e as Error).message}`);
    }
    this.#alive.add(p);
    this.#names.add(name);
    const log = this.#o.log;
    (async () => {
      let rest = "";
      for await (const chunk of p.stderr.pipeThrough(new TextDecoderStream())) {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop()!;
        for (const l of lines) if (l.trim()) log(`  ${l}`);
      }
      if (rest.trim()) log(`  ${rest}`);
    })().catch(() => {});
    p.status.then((s) => {
      this.#alive.delete(p);
      this.#names.delete(name);
      if (!s.success && !this.#stopping) log(`search: worker ${name} exited with code ${s.code}`);
    });
  }

  /** Stop the workers (SIGTERM: a running trial saves a checkpoint and waits in the queue). */
  async stop(): Promise<void> {
    this.#stopping = true;
    const all = [...this.#alive];
    for (const p of all) {
      try {
        p.kill("SIGTERM");
      } catch { /* already gone */ }
    }
    await Promise.all(all.map((p) => p.status));
  }
}
