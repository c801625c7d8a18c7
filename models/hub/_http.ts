/**
 * Private helpers of `hub.ts`: HTTP requests to the hub (manual redirects, auth, timeouts), the
 * mapping of error statuses to {@linkcode HubError}, and the resumable transfer of one file into
 * `blobs/<etag>.incomplete` with size and sha256 checks. Follows huggingface_hub's
 * `file_download.py` (`get_hf_file_metadata`, `http_get`) and `utils/_http.py` (`hf_raise_for_status`).
 * @module
 */
import { errorChain } from "../../util/format.ts";
import { createHash } from "node:crypto";
import { HubError } from "./types.ts";
import { createProgress } from "../../util/progress.ts";
import { envGet, isSha256, type RepoType } from "./_cache.ts";

/** Who is asking for what: used in requests and in every error message (never holds the token's value in text). */
export interface HubTarget {
  repo_id: string;
  repo_type: RepoType;
  revision: string;
  filename?: string;
  endpoint: string;
  token?: string;
}

/** The metadata huggingface_hub reads from a HEAD answer. */
export interface FileMeta {
  commit?: string;
  etag?: string;
  size?: number;
  /** Where to GET the bytes (the CDN location of an LFS file, else the resolve URL). */
  location: string;
}

const TIMEOUT_MS = 10_000;

/**
 * The longest wait, in ms, for the answer to a download request and then between two chunks of
 * its body: `HF_HUB_DOWNLOAD_TIMEOUT` seconds as in huggingface_hub, default 10. A body that stalls
 * longer is a dropped connection (retried with a Range request).
 */
export function downloadTimeoutMs(): number {
  const text = envGet("HF_HUB_DOWNLOAD_TIMEOUT");
  if (text === undefined) return TIMEOUT_MS;
  const secs = Number(text);
  if (!(secs > 0) || !Number.isFinite(secs)) {
    throw new RangeError(
      `Cannot use HF_HUB_DOWNLOAD_TIMEOUT=${JSON.stringify(text)}: it is not a positive number of seconds; ` +
        `set it like 10, or unset it`,
    );
  }
  return secs * 1000;
}
const MAX_REDIRECTS = 10;
const USER_AGENT = `fledge/0.1; deno/${Deno.version.deno}`;

/** `model org/name file config.json at revision main`: the subject of error messages. */
export function describe(t: HubTarget): string {
  const file = t.filename === undefined ? "" : ` file "${t.filename}"`;
  return `${t.repo_type} ${t.repo_id}${file} at revision "${t.revision}"`;
}

function connectionError(t: HubTarget, url: string, cause: unknown): HubError {
  const why = errorChain(cause);
  return new HubError(
    "connection",
    `Cannot reach the Hugging Face hub for ${describe(t)}: ${why} (${url}). Check the network or ` +
      `HF_ENDPOINT (now ${t.endpoint}); to use only files already in the cache set HF_HUB_OFFLINE=1 ` +
      `(local_files_only: true in code)`,
    { cause },
  );
}

/** Turn a non-2xx hub answer into a {@linkcode HubError} that says what to do; consumes the body. */
export async function statusError(res: Response, t: HubTarget, url: string): Promise<HubError> {
  await res.body?.cancel();
  const code = res.headers.get("x-error-code") ?? "";
  const extra = res.headers.get("x-error-message");
  const at = ` (${res.status} at ${url}${extra ? `: ${extra}` : ""})`;
  const what = `Cannot get ${describe(t)}`;
  const tokenFix = `create a read token at https://huggingface.co/settings/tokens and set HF_TOKEN=<token> ` +
    `in the environment (or pass token)`;
  if (res.status === 401 || res.status === 403) {
    const why = !t.token
      ? `no token was sent, and the repo is private or gated (or does not exist)`
      : res.status === 401
      ? `the token was rejected (invalid or expired)`
      : `the token lacks access to ${t.repo_id} (gated or private repo; request access at ${t.endpoint}/` +
        `${t.repo_type === "dataset" ? "datasets/" : ""}${t.repo_id})`;
    return new HubError("unauthorized", `${what}: ${why}${at}; ${tokenFix}`, { status: res.status });
  }
  if (res.status === 404) {
    const kind = t.repo_type === "dataset" ? "dataset" : "model";
    const which = code === "EntryNotFound"
      ? `file "${t.filename}" does not exist in ${kind} ${t.repo_id} at revision "${t.revision}"`
      : code === "RevisionNotFound"
      ? `revision "${t.revision}" does not exist in ${kind} ${t.repo_id}`
      : code === "RepoNotFound"
      ? `${kind} repo ${t.repo_id} does not exist (or is private)`
      : `${kind} repo ${t.repo_id} or its file "${t.filename ?? ""}" was not found`;
    const fix = t.repo_type === "model"
      ? `check the repo id, the file name and the revision (a dataset is read by its own loaders, as --dataset)`
      : `check the repo id, the file name and the revision`;
    return new HubError("not_found", `${what}: ${which}${at}; ${fix}`, { status: 404 });
  }
  return new HubError(
    "http",
    `${what}: the hub answered ${res.status} ${res.statusText}${at}; try again later`,
    {
      status: res.status,
    },
  );
}

async function fetchOnce(url: string, init: RequestInit, t: HubTarget, ms: number): Promise<Response> {
  // A timer we clear ourselves (rather than AbortSignal.timeout) so no timer outlives the call.
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new Error(`no answer within ${ms / 1000} s`)), ms);
  try {
    return await fetch(url, { ...init, redirect: "manual", signal: ctl.signal });
  } catch (e) {
    throw connectionError(t, url, ctl.signal.aborted ? ctl.signal.reason : e);
  } finally {
    clearTimeout(timer);
  }
}

/** The answers huggingface_hub's `http_backoff` retries: a timeout, rate limiting, a server error. */
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** The longest wait before a retry, whatever `Retry-After` asks (a rate limit window can be minutes). */
const MAX_RETRY_WAIT_MS = 60_000;

/**
 * How long to wait before retry number `n` (0-based) of the answer `res`: its `Retry-After`
 * (seconds or an HTTP date), else 1, 2, 4, 8, 8... s as huggingface_hub's `http_backoff`; at most
 * 60 s.
 */
export function retryWaitMs(res: Response, n: number): number {
  const after = res.headers.get("retry-after")?.trim();
  let ms = Math.min(1000 * 2 ** n, 8000);
  if (after && /^\d+(\.\d+)?$/.test(after)) ms = Number(after) * 1000;
  else if (after && !Number.isNaN(Date.parse(after))) ms = Math.max(0, Date.parse(after) - Date.now());
  return Math.min(ms, MAX_RETRY_WAIT_MS);
}

/**
 * Send one request with redirects handled by hand: `follow: "relative"` follows only relative
 * `Location`s (renamed repos), like huggingface_hub's HEAD; `follow: "all"` follows every one and
 * drops the `Authorization` header when the origin changes (a CDN must not see the token).
 */
export async function hubFetch(
  url: string,
  t: HubTarget,
  opts: {
    method: "GET" | "HEAD";
    follow: "relative" | "all";
    headers?: Record<string, string>;
    /** How long to wait for the answer's headers (default 10 s). */
    timeout_ms?: number;
    /** Retries of a 408, 429 or 5xx answer (after {@linkcode retryWaitMs}); default 0. */
    max_retries?: number;
  },
): Promise<{ res: Response; url: string }> {
  const origin = new URL(t.endpoint).origin;
  let retries = 0;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = {
      "accept-encoding": "identity",
      "user-agent": USER_AGENT,
      ...opts.headers,
    };
    if (t.token && new URL(url).origin === origin) headers.authorization = `Bearer ${t.token}`;
    const res = await fetchOnce(url, { method: opts.method, headers }, t, opts.timeout_ms ?? TIMEOUT_MS);
    if (RETRY_STATUS.has(res.status) && retries < (opts.max_retries ?? 0)) {
      await res.body?.cancel();
      const ms = retryWaitMs(res, retries++);
      console.error(
        `The hub answered ${res.status} for ${
          describe(t)
        } (${url}); retry ${retries} of ${opts.max_retries} ` +
          `in ${(ms / 1000).toFixed(1)} s`,
      );
      await new Promise((r) => setTimeout(r, ms));
      hop--; // the same request again, not a redirect
      continue;
    }
    const loc = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || !loc) return { res, url };
    const relative = !/^[a-z][a-z0-9+.-]*:|^\/\//i.test(loc);
    if (opts.follow === "relative" && !relative) return { res, url };
    await res.body?.cancel();
    url = new URL(loc, url).href;
  }
  throw new HubError("http", `Cannot get ${describe(t)}: more than ${MAX_REDIRECTS} redirects (last ${url})`);
}

/** HEAD the resolve URL and read `X-Repo-Commit`, `X-Linked-Etag`/`ETag`, `X-Linked-Size`/`Content-Length`. */
export async function fileMeta(url: string, t: HubTarget, max_retries = 0): Promise<FileMeta> {
  const { res, url: last } = await hubFetch(url, t, { method: "HEAD", follow: "relative", max_retries });
  if (res.status >= 400) throw await statusError(res, t, last);
  await res.body?.cancel();
  const h = res.headers;
  const etag = (h.get("x-linked-etag") ?? h.get("etag") ?? undefined)?.replace(/^W\//, "").replace(/"/g, "");
  const sizeText = h.get("x-linked-size") ?? (res.ok ? h.get("content-length") : null);
  const loc = h.get("location");
  return {
    commit: h.get("x-repo-commit") ?? undefined,
    etag: etag || undefined,
    size: sizeText !== null && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined,
    location: loc && res.status >= 300 && res.status < 400 ? new URL(loc, last).href : last,
  };
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** sha256 of a file, hex, read in chunks (bounded memory). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** Git blob id of a file (`sha1("blob <size>\0" + bytes)`): the ETag the hub gives non-LFS files. */
export async function gitBlobSha1(path: string): Promise<string> {
  const hash = createHash("sha1");
  hash.update(`blob ${(await Deno.stat(path)).size}\0`);
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** The next chunk of `reader`, or an error when none comes within `ms`. */
async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ms: number,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no data for ${ms / 1000} s (HF_HUB_DOWNLOAD_TIMEOUT)`)),
      ms,
    );
  });
  try {
    return await Promise.race([reader.read(), stalled]);
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += await file.write(chunk.subarray(off));
}

/**
 * Download `url` into `partial` (`blobs/<etag>.incomplete`), resuming from the bytes already there
 * with a `Range` request and retrying dropped connections up to `max_retries` times. On return the
 * file has the announced size and, for a sha256 ETag, that hash. A short file is kept for the next
 * call to resume; an over-long one or one with a wrong hash is deleted.
 */
export async function transfer(
  url: string,
  partial: string,
  t: HubTarget,
  opts: { size?: number; etag: string; max_retries: number; progress: boolean },
): Promise<void> {
  let expected = opts.size;
  let retries = 0;
  const timeout = downloadTimeoutMs();
  let restarted = false;
  const label = `Downloading ${t.repo_id}/${t.filename}`;
  while (true) {
    let have = await sizeOf(partial);
    if (expected !== undefined && have > expected) {
      await removeIfExists(partial);
      have = 0;
    }
    if (expected !== undefined && have === expected && have > 0) break;
    const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
    let got: { res: Response; url: string };
    try {
      got = await hubFetch(url, t, {
        method: "GET",
        follow: "all",
        headers,
        timeout_ms: timeout,
        max_retries: opts.max_retries,
      });
    } catch (e) {
      if (e instanceof HubError && e.kind === "connection" && retries++ < opts.max_retries) continue;
      throw e;
    }
    const { res } = got;
    if (res.status === 416 && !restarted) {
      // The server cannot serve the rest of what we have: start over once.
      await res.body?.cancel();
      await removeIfExists(partial);
      restarted = true;
      continue;
    }
    if (!res.ok || !res.body) throw await statusError(res, t, got.url);
    const append = res.status === 206 && have > 0 &&
      (res.headers.get("content-range") ?? "").startsWith(`bytes ${have}-`);
    if (!append) have = 0;
    if (expected === undefined) {
      const total = res.headers.get("content-range")?.match(/\/(\d+)$/)?.[1] ??
        (append ? null : res.headers.get("content-length"));
      if (total) expected = Number(total);
    }
    const progress = createProgress(label, {
      total: expected,
      start: have,
      unit: "bytes",
      enabled: opts.progress,
    });
    let failure: unknown;
    {
      using file = await Deno.open(partial, { write: true, create: true, append, truncate: !append });
      const reader = res.body.getReader();
      try {
        while (true) {
          const { done, value } = await readWithin(reader, timeout);
          if (done) break;
          await writeAll(file, value);
          progress.add(value.length);
        }
      } catch (e) {
        failure = e;
        await reader.cancel().catch(() => {});
      }
    }
    const size = await sizeOf(partial);
    if (failure !== undefined) {
      if (retries++ < opts.max_retries) continue;
      throw new HubError(
        "connection",
        `Cannot download ${describe(t)}: the connection dropped after ${size} of ${expected ?? "?"} bytes ` +
          `(${failure instanceof Error ? failure.message : failure}); the partial file ${partial} is kept ` +
          `and the next call resumes it`,
        { cause: failure },
      );
    }
    progress.done();
    if (expected !== undefined && size !== expected) {
      if (size < expected && retries++ < opts.max_retries) continue;
      if (size > expected) await removeIfExists(partial);
      throw new HubError(
        "truncated",
        `Cannot download ${describe(t)}: got ${size} bytes but the hub announced ${expected} ` +
          (size < expected
            ? `(truncated); the partial file ${partial} is kept and the next call resumes it`
            : `(too long); the file was deleted, run again to download it afresh`),
      );
    }
    break;
  }
  if (isSha256(opts.etag)) {
    const actual = await sha256File(partial);
    if (actual !== opts.etag) {
      await removeIfExists(partial);
      throw new HubError(
        "checksum",
        `Cannot download ${describe(t)}: its sha256 is ${actual} but the hub announced ${opts.etag}; ` +
          `the corrupt download was deleted, run again to fetch it afresh (a proxy or mirror may alter files)`,
      );
    }
  }
}
