/**
 * One job on a worker (private to `queue.ts`): run the handler of its kind while renewing the lease,
 * then record how it ended.
 * @module
 */
import { join } from "node:path";
import { LOCK_FILE, readLock } from "../util/lock.ts";
import { latestCheckpoint } from "./checkpoint.ts";
import type { TrainerHooks } from "./hooks.ts";
import type { JobContext, JobHandler, JobKind, JobLease, JobOutcome, WorkerSummary } from "./queue.ts";

/**
 * The hooks of a training job's run: a macrotask turn per step lets the lease be renewed while a
 * CPU-backend run computes, and a lost lease (`ctx.signal`) stops the run after the step (the
 * worker that took the job over resumes from the checkpoints).
 */
export function leaseHooks(ctx: JobContext): TrainerHooks {
  return {
    on_step_end: async () => {
      await new Promise((r) => setTimeout(r, 0));
      return ctx.signal?.aborted ? { should_training_stop: true } : undefined;
    },
  };
}

/**
 * Where a training job's attempt starts in its run folder `out`: on a retry (or on any attempt with
 * `any_attempt`) the newest checkpoint there, after removing a run lock another host's lost worker
 * left (the queue's lease says that worker is gone; a lock of this host is taken over as stale).
 * @returns the checkpoint to resume from, or null to start over
 */
export async function retryCheckpoint(
  out: string,
  ctx: JobContext,
  job_id: string,
  opts: { any_attempt?: boolean } = {},
): Promise<string | null> {
  if (ctx.attempt > 1) {
    const lock = await readLock(out).catch(() => null);
    if (lock && lock.host !== Deno.hostname()) {
      await Deno.remove(join(out, LOCK_FILE)).catch(() => {});
      ctx.log(`removed the run lock of ${lock.host} pid ${lock.pid}: its lease on job ${job_id} expired`);
    }
  }
  if (ctx.attempt === 1 && !opts.any_attempt) return null;
  const ck = await latestCheckpoint(join(out, "checkpoints")).catch(() => null);
  if (ctx.attempt > 1 || ck) {
    ctx.log(ck ? `attempt ${ctx.attempt} resumes from ${ck}` : `attempt ${ctx.attempt} starts over`);
  }
  return ck;
}

/** Bad input, as the command line's exit code 2: retrying cannot help. */
function isBadInput(e: unknown): boolean {
  return e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError ||
    e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied;
}

/**
 * Run one leased job and record its outcome in the queue and in `w.s`. Returns true when the job's
 * run folder was in use by a live process (a worker whose lease ran out but which still runs): the
 * job went back uncounted, and the caller waits before taking another (retries there had used up
 * every attempt within a second).
 */
export async function runOne(
  lease: JobLease,
  handlers: Partial<Record<JobKind, JobHandler>>,
  w: {
    say: (line: string) => void;
    s: WorkerSummary;
    lease_ms: number;
    runs_dir: string;
    worker: string;
    handle_signals: boolean;
  },
): Promise<boolean> {
  const { job } = lease, t0 = Date.now(), notes: string[] = [];
  const stamp = (line: string) => `${new Date().toISOString()}: ${line}`;
  const tag = `job ${job.id}${job.name ? ` (${job.name})` : ""}`;
  const log = (line: string) => {
    notes.push(stamp(line));
    w.say(`${w.worker}: ${tag}: ${line}`);
  };
  w.say(`${w.worker}: ${tag}: ${job.kind}, attempt ${job.attempts} of ${job.max_attempts}`);
  let lost = false;
  const gone = new AbortController();
  const beat = setInterval(() => {
    lease.heartbeat().then((ok) => {
      if (ok || lost) return;
      lost = true;
      gone.abort();
      log("lost the lease: stopping");
    }, (e) => log(`lease renewal failed: ${oneLine(e)}`));
  }, Math.max(100, Math.floor(w.lease_ms / 3)));
  let outcome: JobOutcome | null = null, error: unknown = null;
  try {
    const handler = handlers[job.kind];
    if (!handler) {
      throw new TypeError(`Cannot run ${job.kind} job ${job.id}: this worker has no ${job.kind} handler`);
    }
    outcome = await handler(job, {
      attempt: job.attempts,
      runs_dir: w.runs_dir,
      worker: w.worker,
      log,
      handle_signals: w.handle_signals,
      signal: gone.signal,
    });
  } catch (e) {
    error = e;
  } finally {
    clearInterval(beat);
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (lost) {
    w.s.retried++;
    w.say(`${w.worker}: ${tag}: lost its lease (another worker took it over); result dropped`);
    return false;
  }
  if (outcome?.interrupted) {
    w.s.retried++;
    await lease.release([...notes, stamp(`stopped by ${outcome.interrupted} after ${secs}s; waits again`)]);
    w.say(`${w.worker}: ${tag}: stopped by ${outcome.interrupted}; it waits again`);
    return false;
  }
  if (outcome) {
    const ok = await lease.complete(outcome.result, [
      ...notes,
      stamp(`completed in ${secs}s on ${w.worker}`),
    ]);
    if (ok) w.s.completed++;
    else w.s.retried++;
    w.say(`${w.worker}: ${tag}: ${ok ? `completed in ${secs}s` : "lost its lease; result dropped"}`);
    return false;
  }
  const reason = oneLine(error), retry = !isBadInput(error);
  if (error instanceof Deno.errors.Busy) {
    w.s.retried++;
    await lease.release([...notes, stamp(`its run folder is in use (${reason}); waits again, uncounted`)]);
    w.say(`${w.worker}: ${tag}: its run folder is in use by a live process; it waits again`);
    return true;
  }
  const state = await lease.fail(reason, {
    retry,
    log: [...notes, stamp(`failed after ${secs}s: ${reason}`)],
  });
  if (state === "failed") w.s.failed++;
  else w.s.retried++;
  w.say(
    `${w.worker}: ${tag}: ${
      state === "failed" ? "failed" : state ? "failed; it waits again" : "lost"
    }: ${reason}`,
  );
  return false;
}

function oneLine(e: unknown): string {
  const text = e instanceof Error ? e.message || e.name : String(e);
  return text.split("\n").map((x) => x.trim()).filter(Boolean).join(" ");
}
