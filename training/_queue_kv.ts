/**
 * The embedded queue backend (private to `queue.ts`): Deno KV on a local file, shared by the worker
 * processes of one machine. Every change is an atomic check-and-set on the job's entry, so two
 * workers never lease the same job: the one whose commit lands first wins, the other moves on.
 *
 * Keys: `["fledge_queue", "seq"]` the last id given (a `Deno.KvU64`), `["fledge_queue", "job", n]`
 * one job (a {@linkcode KvJob}), listed in id order.
 *
 * @module
 */
import { dirname } from "node:path";
import { isDirSync, pathExists } from "../util/atomic.ts";
import {
  DEFAULT_MAX_ATTEMPTS,
  type JobInfo,
  type JobLease,
  type JobQueue,
  type JobSpec,
  type JobState,
  type LeaseOptions,
  parseJobSpec,
} from "./queue.ts";

const ROOT = "fledge_queue";
/** How often a waiting worker looks for a job. */
const POLL_MS = 200;
/** The job log keeps its newest lines. */
const LOG_LINES = 100;

/** A job as stored: the public fields plus the lease. */
interface KvJob extends JobInfo {
  /** The holder's lease token (active), else null. */
  token: string | null;
  /** When the lease expires, ms since the epoch (active), else null. */
  lease_until: number | null;
}

const now = () => new Date().toISOString();
const trim = (log: string[]) => log.slice(-LOG_LINES);

function publicInfo(r: KvJob): JobInfo {
  const { token: _t, lease_until: _l, ...info } = r;
  return info;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((res) => {
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      res();
    }
  });
}

/** How long a busy database is retried before the error is passed on. */
const BUSY_MS = 30_000;

/**
 * `fn`, retried while SQLite answers "database is locked": a commit that read before another
 * process wrote cannot upgrade its snapshot and fails at once (a conflict, as a failed check is),
 * and busy_timeout does not cover it.
 */
async function unlocked<T>(fn: () => Promise<T>): Promise<T> {
  for (let t0 = Date.now(), wait = 5;; wait = Math.min(wait * 2, 200)) {
    try {
      return await fn();
    } catch (e) {
      if (!/database is locked/.test(String((e as Error)?.message)) || Date.now() - t0 > BUSY_MS) throw e;
      await sleep(wait * (0.5 + Math.random()));
    }
  }
}

/** Open the queue in the KV file `path`, creating it (and its folder) unless `create` is false. */
export async function openKvQueue(path: string, url: string, opts: { create: boolean }): Promise<JobQueue> {
  if (typeof Deno.openKv !== "function") {
    throw new Error(
      `Cannot open the queue ${url}: Deno KV is unstable in Deno ${Deno.version.deno}; run deno with ` +
        `--unstable-kv (deno task cli sets it through deno.json)`,
    );
  }
  if (isDirSync(path)) { // (sqlite had said "unable to open database file", exit 1)
    throw new TypeError(
      `Cannot open queue ${url}: ${path} is a folder; give a file, e.g. kv:${path}/queue.db`,
    );
  }
  if (!opts.create && !(await pathExists(path))) {
    // `queue status --queue kv:typo.sqlite` had made the file and its folder, and said "no jobs"
    throw new Deno.errors.NotFound(
      `Cannot open queue ${url}: ${path} does not exist; check --queue (queue submit and queue work create it)`,
    );
  }
  await Deno.mkdir(dirname(path), { recursive: true });
  let kv: Deno.Kv;
  try {
    kv = await unlocked(() => Deno.openKv(path));
  } catch (e) {
    if (!/not a database/i.test(String((e as Error)?.message))) throw e;
    throw new TypeError(
      `Cannot open queue ${url}: ${path} is not a queue database; give a new or existing kv: file`,
    );
  }
  return new KvQueue(kv, url);
}

class KvQueue implements JobQueue {
  readonly url: string;
  #kv: Deno.Kv;

  constructor(kv: Deno.Kv, url: string) {
    this.#kv = kv;
    this.url = url;
  }

  #list(): Promise<Deno.KvEntry<KvJob>[]> {
    return unlocked(() => Array.fromAsync(this.#kv.list<KvJob>({ prefix: [ROOT, "job"] })));
  }

  async submit(raw: JobSpec): Promise<string> {
    const spec = parseJobSpec(raw, "submitted to the queue"); // what the CLI's job files get
    for (;;) {
      const seq = await this.#kv.get<Deno.KvU64>([ROOT, "seq"]);
      const n = (seq.value?.value ?? 0n) + 1n;
      const id = String(n);
      const job: KvJob = {
        id,
        kind: spec.kind,
        name: spec.name ?? null,
        config: spec.config,
        state: "waiting",
        attempts: 0,
        max_attempts: spec.max_attempts ?? DEFAULT_MAX_ATTEMPTS,
        worker: null,
        result: null,
        error: null,
        created_at: now(),
        finished_at: null,
        log: [`${now()}: submitted`],
        token: null,
        lease_until: null,
      };
      const r = await unlocked(() =>
        this.#kv.atomic().check(seq).set([ROOT, "seq"], new Deno.KvU64(n))
          .set([ROOT, "job", Number(n)], job).commit()
      );
      if (r.ok) return id;
    }
  }

  async jobs(): Promise<JobInfo[]> {
    const out: JobInfo[] = [];
    for (const e of await this.#list()) out.push(publicInfo(e.value));
    return out;
  }

  async cancel(id: string): Promise<JobInfo> {
    const key = [ROOT, "job", Number(id)];
    for (;;) {
      const e = /^\d+$/.test(id) ? await unlocked(() => this.#kv.get<KvJob>(key)) : null;
      if (!e?.value) throw new RangeError(`Cannot cancel job ${id}: no such job in ${this.url}`);
      const r = e.value;
      if (r.state !== "waiting") {
        throw new Error(
          `Cannot cancel job ${id}: it is ${r.state}` +
            (r.state === "active" ? ` on ${r.worker}; stop that worker (SIGTERM saves a checkpoint)` : ""),
        );
      }
      if ((await unlocked(() => this.#kv.atomic().check(e).delete(key).commit())).ok) return publicInfo(r);
    }
  }

  async lease(worker: string, opts: LeaseOptions): Promise<JobLease | null> {
    const deadline = Date.now() + opts.wait_ms;
    for (;;) {
      for (const e of await this.#list()) {
        const r = e.value, t = Date.now();
        const expired = r.state === "active" && (r.lease_until ?? 0) < t;
        if (r.state !== "waiting" && !expired) continue;
        if (expired && r.attempts >= r.max_attempts) {
          const error = `its worker ${r.worker} stopped renewing the lease on attempt ${r.attempts} of ` +
            `${r.max_attempts}`;
          const failed: KvJob = {
            ...r,
            state: "failed",
            error,
            finished_at: now(),
            token: null,
            lease_until: null,
            log: trim([...r.log, `${now()}: failed: ${error}`]),
          };
          await unlocked(() => this.#kv.atomic().check(e).set(e.key, failed).commit());
          continue;
        }
        const note = expired
          ? `${now()}: the lease of ${r.worker} expired; attempt ${r.attempts + 1} on ${worker}`
          : `${now()}: attempt ${r.attempts + 1} on ${worker}`;
        const next: KvJob = {
          ...r,
          state: "active",
          attempts: r.attempts + 1,
          worker,
          token: crypto.randomUUID(),
          lease_until: t + opts.lease_ms,
          log: trim([...r.log, note]),
        };
        if ((await unlocked(() => this.#kv.atomic().check(e).set(e.key, next).commit())).ok) {
          return new KvLease(this.#kv, e.key, next, opts.lease_ms);
        }
      }
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted) return null;
      await sleep(Math.min(POLL_MS, left), opts.signal);
    }
  }

  close(): Promise<void> {
    this.#kv.close();
    return Promise.resolve();
  }
}

class KvLease implements JobLease {
  readonly job: JobInfo;
  #kv: Deno.Kv;
  #key: Deno.KvKey;
  #token: string;
  #lease_ms: number;

  constructor(kv: Deno.Kv, key: Deno.KvKey, job: KvJob, lease_ms: number) {
    this.#kv = kv;
    this.#key = key;
    this.#token = job.token!;
    this.#lease_ms = lease_ms;
    this.job = publicInfo(job);
  }

  /** Apply `change` to the job while this lease holds it; null when it does not any more. */
  async #update(change: (r: KvJob) => KvJob): Promise<KvJob | null> {
    for (;;) {
      const e = await unlocked(() => this.#kv.get<KvJob>(this.#key));
      if (!e.value || e.value.token !== this.#token || e.value.state !== "active") return null;
      const next = change(e.value);
      if ((await unlocked(() => this.#kv.atomic().check(e).set(this.#key, next).commit())).ok) return next;
    }
  }

  async heartbeat(): Promise<boolean> {
    return (await this.#update((r) => ({ ...r, lease_until: Date.now() + this.#lease_ms }))) !== null;
  }

  async complete(result: Record<string, unknown>, log: string[]): Promise<boolean> {
    const r = await this.#update((r) => ({
      ...r,
      state: "completed",
      result,
      error: null,
      finished_at: now(),
      token: null,
      lease_until: null,
      log: trim([...r.log, ...log]),
    }));
    return r !== null;
  }

  async fail(reason: string, opts: { retry: boolean; log: string[] }): Promise<JobState | null> {
    const r = await this.#update((r) => {
      const again = opts.retry && r.attempts < r.max_attempts;
      return {
        ...r,
        state: again ? "waiting" : "failed",
        error: reason,
        finished_at: again ? null : now(),
        token: null,
        lease_until: null,
        log: trim([...r.log, ...opts.log]),
      };
    });
    return r?.state ?? null;
  }

  async release(log: string[]): Promise<void> {
    await this.#update((r) => ({
      ...r,
      attempts: r.attempts - 1, // given back, not failed (it had shown "attempt 2 of 1" next)
      state: "waiting",
      token: null,
      lease_until: null,
      log: trim([...r.log, ...log]),
    }));
  }
}
