/**
 * An exclusive lock on a run folder, so two runs never write the same checkpoints: the file
 * `<dir>/.fledge.lock`, created exclusively and holding who holds it ({@linkcode LockInfo}).
 *
 * A lock left by a run that died is stale: its pid is no longer alive on this host, or the file is
 * unreadable (a crash while writing it). A stale lock is taken over under a second exclusive file,
 * `.fledge.lock.takeover`, held for the few milliseconds of the takeover, so two processes that
 * find the same stale lock cannot both win (a takeover file left by a crash is named in the error,
 * never removed automatically). A lock from another host is never taken over: fledge cannot tell
 * whether that process still runs.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { claimFile, moveFileAtomic, writeFileAtomic } from "./atomic.ts";
import { parseJson } from "./json.ts";

/** The lock file's name inside the run folder. */
export const LOCK_FILE = ".fledge.lock";

/** Who holds a run folder: the content of its {@linkcode LOCK_FILE}. */
export interface LockInfo {
  /** Process id of the holder. */
  pid: number;
  /** Host name of the holder (`Deno.hostname()`). */
  host: string;
  /** When the lock was taken, ISO 8601. */
  started: string;
  /** What the holder runs (e.g. `train`). */
  command: string;
}

/** A held lock: see {@linkcode acquireLock}. Also `await using lock = await acquireLock(dir)`. */
export interface RunLock {
  /** The lock file. */
  readonly path: string;
  /** What the lock file holds. */
  readonly info: LockInfo;
  /** Remove the lock file if it is still ours (never another process's lock); idempotent. */
  release(): Promise<void>;
  /** {@linkcode RunLock.release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@linkcode acquireLock}. */
export interface AcquireLockOptions {
  /** What this process runs, recorded in the lock (default: the main module's name and the arguments). */
  command?: string;
  /**
   * Called after a stale lock was taken over, e.g. to print "took over the stale lock of pid N".
   * For an unreadable lock file, `stale.pid` is 0 and `stale.started` the file's modification time.
   */
  onTakeover?: (stale: LockInfo, path: string) => void;
  /** The lock file's name inside `dir` (default {@linkcode LOCK_FILE}), e.g. one lock per cached blob. */
  name?: string;
  /**
   * How long to wait, in ms, for a live holder to release the lock before throwing `Busy`
   * (default 0: throw at once; `Infinity`: wait as long as the holder lives, as huggingface_hub's
   * blob locks do). A holder that dies meanwhile is taken over as a stale lock.
   */
  wait_ms?: number;
}

/** Pause between two looks at a lock held by a live process. */
const POLL_MS = 50;

/** An unreadable lock younger than this may be one being written: wait instead of taking it over. */
const WRITE_GRACE_MS = 2000;
/** How long acquireLock keeps trying while a lock churns or a takeover by another process runs. */
const TRY_MS = 5000;
/** A takeover takes milliseconds: a takeover file older than this was left by a crash. */
const STUCK_MS = 10_000;

/**
 * Take the exclusive lock of the run folder `dir` (which must exist), taking over a stale lock.
 * @param dir the run folder
 * @param opts `command` to record, `onTakeover` to hear of a stale lock taken over, `name` of the
 *   lock file, `wait_ms` to wait for a live holder
 * @returns the held lock; call `release()` when the run ends
 * @throws {Deno.errors.Busy} one line naming the folder, the holder's pid, host and start time, and the
 *   fix, when a live process (this one included) or a process on another host holds the lock
 *   (still, after `wait_ms`)
 * @throws {Deno.errors.NotFound} when `dir` does not exist
 * @example
 * ```ts
 * import { acquireLock, readLock } from "./lock.ts";
 * const dir = await Deno.makeTempDir();
 * const lock = await acquireLock(dir, { command: "train" });
 * if ((await readLock(dir))?.pid !== Deno.pid) throw new Error("not held");
 * try {
 *   await acquireLock(dir);
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof Deno.errors.Busy) || !e.message.includes(`pid ${Deno.pid}`)) throw e;
 * }
 * await lock.release();
 * if (await readLock(dir) !== null) throw new Error("not released");
 * await Deno.remove(dir);
 * ```
 */
export async function acquireLock(dir: string, opts: AcquireLockOptions = {}): Promise<RunLock> {
  const name = opts.name ?? LOCK_FILE;
  const path = join(dir, name);
  const waitUntil = Date.now() + (opts.wait_ms ?? 0);
  const info: LockInfo = {
    pid: Deno.pid,
    host: Deno.hostname(),
    started: new Date().toISOString(),
    command: opts.command ?? defaultCommand(),
  };
  const text = JSON.stringify(info) + "\n";
  let until = Date.now() + TRY_MS;
  while (Date.now() < until) {
    if (await createExclusive(path, text)) {
      // Taken over while being written (only after a stall of WRITE_GRACE_MS): the other one won.
      const now = asLockInfo(await readText(path));
      if (now?.pid === info.pid && now.started === info.started) return held(path, info);
      if (now) throw busy(dir, name, now);
      continue;
    }
    const seen = await readText(path);
    if (seen === null) continue; // released in between: try again
    const other = asLockInfo(seen);
    if (other && !(await isStale(other))) {
      if (Date.now() >= waitUntil) throw busy(dir, name, other);
      // A live holder is not churn: wait for it without counting against TRY_MS.
      await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(1, waitUntil - Date.now()))));
      until = Date.now() + TRY_MS;
      continue;
    }
    const modified = other ? null : await mtime(path);
    if (other || !modified || Date.now() - modified.getTime() >= WRITE_GRACE_MS) {
      if (await takeOver(path, seen, text)) {
        const started = modified?.toISOString() ?? "";
        opts.onTakeover?.(other ?? { pid: 0, host: "", started, command: "" }, path);
        return held(path, info);
      }
    }
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
  }
  throw new Deno.errors.Busy(
    `Cannot use ${dir}: its ${name} stayed unreadable or kept changing for ${TRY_MS / 1000} s; ` +
      `remove ${path} if no run uses ${dir}`,
  );
}

/**
 * Who holds the run folder `dir`, if anyone (whether that process is alive is not checked).
 * @param dir the run folder
 * @returns the lock's content, or null when there is no lock file
 * @throws {SyntaxError} naming the file when it is not a lock written by {@linkcode acquireLock}
 */
export async function readLock(dir: string): Promise<LockInfo | null> {
  const path = join(dir, LOCK_FILE);
  const text = await readText(path);
  if (text === null) return null;
  const info = asLockInfo(parseJson(text, path));
  if (!info) {
    throw new SyntaxError(
      `Cannot parse ${path}: it is not a fledge lock (expected pid, host, started and command); ` +
        `remove it if no run uses ${dir}`,
    );
  }
  return info;
}

function defaultCommand(): string {
  const main = basename(decodeURIComponent(new URL(Deno.mainModule).pathname));
  return [main, ...Deno.args].join(" ").slice(0, 500);
}

/** The lock as JSON text or a parsed value -> LockInfo, or null when it is not one. */
function asLockInfo(v: unknown): LockInfo | null {
  if (typeof v === "string") {
    try {
      v = JSON.parse(v);
    } catch {
      return null;
    }
  }
  const o = v as Partial<LockInfo> | null;
  const ok = typeof o === "object" && o !== null && Number.isSafeInteger(o.pid) && o.pid! > 0 &&
    typeof o.host === "string" && typeof o.started === "string" && typeof o.command === "string";
  return ok ? { pid: o.pid!, host: o.host!, started: o.started!, command: o.command! } : null;
}

function busy(dir: string, name: string, h: LockInfo): Deno.errors.Busy {
  const cmd = h.command ? ` (${h.command.replace(/\s+/g, " ")})` : "";
  const remote = h.host !== Deno.hostname() ? " (fledge cannot check a process on another host)" : "";
  return new Deno.errors.Busy(
    `Cannot use ${dir}: it is in use by pid ${h.pid}${cmd} on host ${h.host} since ${h.started} ` +
      `(${name})${remote}; wait for that run to end, or remove ${join(dir, name)} if it is gone`,
  );
}

function held(path: string, info: LockInfo): RunLock {
  let done = false;
  const release = async () => {
    if (done) return;
    done = true;
    const now = asLockInfo(await readText(path));
    if (now?.pid !== info.pid || now.started !== info.started || now.host !== info.host) return;
    await Deno.remove(path).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  };
  return { path, info, release, [Symbol.asyncDispose]: release };
}

/** Create `path` with `text` (written and fsynced) unless it exists; false when it does. */
async function createExclusive(path: string, text: string): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, createNew: true });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    throw e;
  }
  try {
    const bytes = new TextEncoder().encode(text);
    for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
    await file.sync();
  } catch (e) {
    file.close();
    await Deno.remove(path).catch(() => {});
    throw e;
  }
  file.close();
  return true;
}

/**
 * Replace the stale lock whose text was `seen` by ours, holding `<lock>.takeover` meanwhile. Only
 * a holder of that file replaces a lock, and only after checking it still holds `seen`, so of two
 * processes that saw the same stale lock one replaces it and the other finds the new, live one.
 */
async function takeOver(path: string, seen: string, text: string): Promise<boolean> {
  const guard = `${path}.takeover`;
  const mine = JSON.stringify({ pid: Deno.pid, host: Deno.hostname() });
  try {
    const f = await Deno.open(guard, { write: true, createNew: true });
    await f.write(new TextEncoder().encode(mine));
    f.close();
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    // A takeover file of a process that died (killed mid-takeover) is cleared: claimed by one
    // atomic rename, and put back if what was claimed turns out to be a live process's.
    const held = await readText(guard);
    const owner = held ? asOwner(held) : null;
    if (owner && owner.host === Deno.hostname() && owner.pid !== Deno.pid && !(await isAlive(owner.pid))) {
      const claimed = await claimFile(guard);
      if (claimed) {
        if (await readText(claimed) === held) await Deno.remove(claimed).catch(() => {});
        else await moveFileAtomic(claimed, guard).catch(() => {});
      }
      return false; // look again
    }
    const since = await mtime(guard);
    if (since && Date.now() - since.getTime() > STUCK_MS) {
      // Removing it here could let two processes in (each removing the other's fresh one): ask.
      throw new Deno.errors.Busy(
        `Cannot use ${dirname(path)}: a takeover of its stale ${basename(path)} was interrupted at ` +
          `${since.toISOString()}; remove ${guard} if no other run is starting there`,
      );
    }
    return false; // another takeover runs: look again after it
  }
  try {
    if (await readText(path) !== seen) return false;
    await writeFileAtomic(path, text);
    return true;
  } finally {
    await Deno.remove(guard).catch(() => {});
  }
}

/** The pid and host written into a takeover file, or null for an older or partly written one. */
function asOwner(text: string): { pid: number; host: string } | null {
  try {
    const v = JSON.parse(text);
    return Number.isSafeInteger(v?.pid) && typeof v?.host === "string" ? v : null;
  } catch {
    return null;
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** When `path` was last modified; null when unknown (gone, or no mtime on this file system). */
async function mtime(path: string): Promise<Date | null> {
  try {
    return (await Deno.stat(path)).mtime;
  } catch {
    return null;
  }
}

async function isStale(h: LockInfo): Promise<boolean> {
  if (h.host !== Deno.hostname()) return false; // cannot tell: refuse
  if (h.pid === Deno.pid) return false;
  return !(await isAlive(h.pid));
}

/** Whether process `pid` of this host runs; when that cannot be told, true (refuse, never steal). */
async function isAlive(pid: number): Promise<boolean> {
  if (Deno.build.os === "linux") {
    try {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      const state = stat.slice(stat.lastIndexOf(")") + 2)[0]; // `pid (comm) S ...`; comm may hold ")"
      return state !== "Z" && state !== "X"; // a zombie has exited
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) return true;
      try {
        await Deno.stat("/proc/self/stat");
        return false; // /proc is mounted and has no such process
      } catch { /* no /proc: ask kill */ }
    }
  }
  try {
    if (Deno.build.os === "windows") {
      const out = await new Deno.Command("tasklist", {
        args: ["/FI", `PID eq ${pid}`, "/NH", "/FO", "CSV"],
        stdout: "piped",
        stderr: "null",
      }).output();
      return new TextDecoder().decode(out.stdout).includes(`"${pid}"`);
    }
    const out = await new Deno.Command("kill", { args: ["-0", String(pid)], stdout: "null", stderr: "piped" })
      .output();
    // EPERM: the process exists but belongs to another user.
    return out.success || /not permitted/i.test(new TextDecoder().decode(out.stderr));
  } catch {
    return true;
  }
}
