/**
 * The many-machine queue backend (private to `queue.ts`): BullMQ on Redis, jobs fetched by hand
 * (BullMQ's "manually fetching jobs" pattern) so a worker takes exactly the jobs it runs. BullMQ's
 * lock is the lease (`lockDuration`, renewed with `extendLock`); its stalled-job check, run by every
 * live worker each `stalledInterval`, puts the job of a dead worker back to waiting once the lock
 * expired. Retries are decided here, by starts (`attemptsStarted`) against the job's `max_attempts`;
 * a job failed for good is moved to failed with an `UnrecoverableError`.
 *
 * Under Deno, bullmq cannot load its optional `ioredis` itself: it is handed constructed
 * `npm:ioredis@5` clients with `maxRetriesPerRequest: null`.
 *
 * @module
 */
import { type Job, Queue, UnrecoverableError, Worker } from "npm:bullmq@6.7.0";
import { Redis, type RedisOptions } from "npm:ioredis@^5.11";
import {
  DEFAULT_MAX_ATTEMPTS,
  type JobInfo,
  type JobKind,
  type JobLease,
  type JobQueue,
  type JobSpec,
  type JobState,
  type LeaseOptions,
  parseJobSpec,
  type QueueAddress,
} from "./queue.ts";

/** How long a connection attempt may take before Redis counts as unreachable. */
const CONNECT_TIMEOUT_MS = 3000;

/** What a BullMQ job carries. */
interface JobData {
  kind: JobKind;
  name: string | null;
  config: Record<string, unknown>;
  max_attempts: number;
  /** Why the last attempt failed, while the job waits for another. */
  last_error?: string | null;
  /** The attempt after which a worker put the job back (a signal or a retry), not lost it. */
  requeued_at?: number;
  /** Starts given back at a signal (release): they do not count as attempts. */
  released?: number;
}

type Address = Extract<QueueAddress, { backend: "redis" }>;

/** Open the queue on the Redis at `a`, after checking that it answers. */
export async function openRedisQueue(a: Address, url: string): Promise<JobQueue> {
  await probe(a);
  return new RedisQueue(a, redact(url));
}

/** The address as messages show it: a password is `***`. */
function redact(url: string): string {
  const u = new URL(url);
  if (!u.password) return url;
  u.password = "***";
  return u.href;
}

/** Connect once, with no retries, and PING: an unreachable server is one line naming host and port. */
async function probe(a: Address): Promise<void> {
  const c = new Redis({
    ...connection(a),
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // ioredis reports the cause (ECONNREFUSED, ETIMEDOUT, ENOTFOUND) as an event, then rejects connect()
  // with "Connection is closed."
  let cause: (Error & { code?: string }) | null = null;
  c.on("error", (e: Error) => cause ??= e);
  try {
    await c.connect();
    await c.ping();
  } catch (e) {
    const err = (cause ?? e) as Error & { code?: string };
    const why = err.code ??
      (/Protocol error/.test(err.message) ? "what answers there is not Redis" : err.message.split("\n")[0]);
    const fix = /NOAUTH|WRONGPASS|invalid password/i.test(why)
      ? "give the server's user and password: --queue redis://user:password@host:port (redis://:password@host:port for requirepass)"
      : "start redis-server there or fix --queue redis://host:port";
    throw new Error(`Cannot reach Redis at ${a.host}:${a.port}: ${why}; ${fix}`);
  } finally {
    c.disconnect();
  }
}

/** Where and as whom ioredis connects. */
function connection(a: Address): RedisOptions {
  return {
    host: a.host,
    port: a.port,
    db: a.db,
    ...(a.username !== undefined ? { username: a.username } : {}),
    ...(a.password !== undefined ? { password: a.password } : {}),
  };
}

function client(a: Address): Redis {
  const opts: RedisOptions = { ...connection(a), maxRetriesPerRequest: null };
  const c = new Redis(opts);
  c.on("error", () => {}); // ioredis reconnects by itself; bullmq reports failed commands
  return c;
}

const WAITING = ["waiting", "wait", "paused", "prioritized", "delayed", "waiting-children"] as const;
const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

class RedisQueue implements JobQueue {
  readonly url: string;
  #a: Address;
  #conn: Redis;
  #queue: Queue;
  #worker: Worker | null = null;
  #workerConn: Redis | null = null;

  constructor(a: Address, url: string) {
    this.#a = a;
    this.url = url;
    this.#conn = client(a);
    this.#queue = new Queue(a.queue, { connection: this.#conn });
  }

  async submit(raw: JobSpec): Promise<string> {
    const spec = parseJobSpec(raw, "submitted to the queue"); // what the CLI's job files get
    const data: JobData = {
      kind: spec.kind,
      name: spec.name ?? null,
      config: spec.config,
      max_attempts: spec.max_attempts ?? DEFAULT_MAX_ATTEMPTS,
    };
    const job = await this.#queue.add(spec.kind, data, {
      attempts: 1,
      removeOnComplete: false,
      removeOnFail: false,
    });
    await job.log(`${new Date().toISOString()}: submitted`);
    return job.id!;
  }

  async #info(job: Job<JobData>, state: JobState): Promise<JobInfo> {
    const { logs } = await this.#queue.getJobLogs(job.id!, 0, -1, true);
    return {
      id: job.id!,
      kind: job.data.kind,
      name: job.data.name ?? null,
      config: job.data.config,
      state,
      attempts: attemptsOf(job),
      max_attempts: job.data.max_attempts,
      worker: job.processedBy ?? null,
      result: state === "completed" ? (job.returnvalue as Record<string, unknown>) ?? null : null,
      error: state === "failed" ? job.failedReason ?? null : job.data.last_error ?? null,
      created_at: iso(job.timestamp)!,
      finished_at: state === "completed" || state === "failed" ? iso(job.finishedOn) : null,
      log: logs,
    };
  }

  async jobs(): Promise<JobInfo[]> {
    const out: JobInfo[] = [];
    const groups: [JobState, readonly string[]][] = [
      ["waiting", WAITING],
      ["active", ["active"]],
      ["completed", ["completed"]],
      ["failed", ["failed"]],
    ];
    for (const [state, types] of groups) {
      // deno-lint-ignore no-explicit-any
      const list = await this.#queue.getJobs(types as any, 0, -1, true) as Job<JobData>[];
      for (const job of list) if (job) out.push(await this.#info(job, state));
    }
    return out.sort((x, y) => Number(x.id) - Number(y.id));
  }

  async cancel(id: string): Promise<JobInfo> {
    const job = await this.#queue.getJob(id) as Job<JobData> | undefined;
    if (!job) throw new RangeError(`Cannot cancel job ${id}: no such job in ${this.url}`);
    const s = await job.getState();
    const state: JobState = s === "active" || s === "completed" || s === "failed" ? s : "waiting";
    const info = await this.#info(job, state);
    if (state !== "waiting") {
      throw new Error(
        `Cannot cancel job ${id}: it is ${state}` +
          (state === "active" ? ` on ${info.worker}; stop that worker (SIGTERM saves a checkpoint)` : ""),
      );
    }
    await job.remove();
    return info;
  }

  #workerFor(name: string, lease_ms: number): Worker {
    if (this.#worker) return this.#worker;
    this.#workerConn = client(this.#a);
    this.#worker = new Worker(this.#a.queue, null, {
      connection: this.#workerConn,
      name,
      autorun: false,
      lockDuration: lease_ms,
      stalledInterval: lease_ms,
      // Retries are counted here by starts; BullMQ's own limit would fail a job stalled twice.
      maxStalledCount: 1_000_000,
      drainDelay: 1,
    });
    this.#worker.on("error", () => {});
    void this.#worker.startStalledCheckTimer();
    return this.#worker;
  }

  async lease(worker: string, opts: LeaseOptions): Promise<JobLease | null> {
    const w = this.#workerFor(worker, opts.lease_ms);
    const deadline = Date.now() + opts.wait_ms;
    for (;;) {
      const token = crypto.randomUUID();
      const job = await w.getNextJob(token, { block: true }) as Job<JobData> | undefined;
      if (job) {
        const n = attemptsOf(job), max = job.data.max_attempts;
        const t = new Date().toISOString();
        // Lost workers count against max_attempts; a job put back at a signal does not.
        if (n > max && job.data.requeued_at !== job.attemptsStarted - 1) {
          const error = `its worker stopped renewing the lease on attempt ${n - 1} of ${max}`;
          await job.log(`${t}: failed: ${error}`);
          await job.moveToFailed(new UnrecoverableError(error), token, false);
          continue;
        }
        await job.log(`${t}: attempt ${n} on ${worker}` + (n > 1 ? " (the job waited again)" : ""));
        return new RedisLease(job, token, opts.lease_ms);
      }
      if (Date.now() >= deadline || opts.signal?.aborted) return null;
    }
  }

  async close(): Promise<void> {
    await this.#worker?.close(true);
    await this.#queue.close();
    for (const c of [this.#conn, this.#workerConn]) await c?.quit().catch(() => c.disconnect());
  }
}

/** The starts that count: BullMQ's `attemptsStarted` less those given back at a signal. */
function attemptsOf(job: Job<JobData>): number {
  return (job.attemptsStarted ?? 0) - (job.data.released ?? 0);
}

class RedisLease implements JobLease {
  readonly job: JobInfo;
  #job: Job<JobData>;
  #token: string;
  #lease_ms: number;

  constructor(job: Job<JobData>, token: string, lease_ms: number) {
    this.#job = job;
    this.#token = token;
    this.#lease_ms = lease_ms;
    this.job = {
      id: job.id!,
      kind: job.data.kind,
      name: job.data.name ?? null,
      config: job.data.config,
      state: "active",
      attempts: attemptsOf(job),
      max_attempts: job.data.max_attempts,
      worker: job.processedBy ?? null,
      result: null,
      error: job.data.last_error ?? null,
      created_at: iso(job.timestamp)!,
      finished_at: null,
      log: [],
    };
  }

  async #log(lines: string[]): Promise<void> {
    for (const l of lines) await this.#job.log(l);
  }

  async heartbeat(): Promise<boolean> {
    try {
      return (await this.#job.extendLock(this.#token, this.#lease_ms)) !== 0;
    } catch {
      return false;
    }
  }

  async complete(result: Record<string, unknown>, log: string[]): Promise<boolean> {
    await this.#log(log);
    try {
      await this.#job.moveToCompleted(result, this.#token, false);
      return true;
    } catch {
      return false;
    }
  }

  async fail(reason: string, opts: { retry: boolean; log: string[] }): Promise<JobState | null> {
    await this.#log(opts.log);
    try {
      if (opts.retry && attemptsOf(this.#job) < this.#job.data.max_attempts) {
        await this.#job.updateData({
          ...this.#job.data,
          last_error: reason,
          requeued_at: this.#job.attemptsStarted,
        });
        await this.#job.moveToWait(this.#token);
        return "waiting";
      }
      await this.#job.moveToFailed(new UnrecoverableError(reason), this.#token, false);
      return "failed";
    } catch {
      return null;
    }
  }

  async release(log: string[]): Promise<void> {
    await this.#log(log);
    const data = this.#job.data;
    await this.#job.updateData({
      ...data,
      requeued_at: this.#job.attemptsStarted,
      released: (data.released ?? 0) + 1,
    }).catch(() => {});
    await this.#job.moveToWait(this.#token).catch(() => {});
  }
}
