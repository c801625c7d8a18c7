/**
 * The Hugging Face hub file layer, shared by models and datasets: a repo id (or a local folder)
 * plus a revision and a file name become a local path. Order: a local folder; then the cache in
 * the huggingface_hub layout (so Python and fledge share one cache); then a download with resume,
 * size and sha256 checks. Honours `HF_HUB_CACHE`, `HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`,
 * `HF_TOKEN`, `HF_HUB_DOWNLOAD_TIMEOUT` and `HF_HUB_DISABLE_PROGRESS_BARS`; options override each of them
 * (but the timeout).
 * @module
 */
import { basename, dirname, join } from "node:path";
import { HubError } from "./types.ts";
import {
  checkRelativePath,
  checkRepoId,
  checkRevision,
  defaultCacheDir,
  defaultToken,
  envFlag,
  envGet,
  exists,
  globMatcher,
  isCommitHash,
  linkBlob,
  listFiles,
  readRef,
  repoFolderName,
  type RepoType,
  writeRef,
} from "./_cache.ts";
import {
  describe,
  downloadTimeoutMs,
  fileMeta,
  hubFetch,
  type HubTarget,
  statusError,
  transfer,
} from "./_http.ts";
import { verifySnapshot } from "./_verify.ts";
import { copyFileAtomic, isDirSync, isFileSync, moveFileAtomic, writeDirAtomic } from "../../util/atomic.ts";
import { acquireLock, type RunLock } from "../../util/lock.ts";
import { indexShards, listModelFiles, modelFilesOf } from "./_model_files.ts";
export { MODEL_FILE_PATTERNS, TOKENIZER_FILES } from "./_model_files.ts";
import { agree, checkPathArg } from "../../util/problems.ts";

export { HubError, type HubErrorKind } from "./types.ts";
export type { RepoType } from "./_cache.ts";

/** Options shared by every hub call; each overrides the matching environment variable. */
export interface HubOptions {
  /** Branch, tag or commit hash. Default `"main"`. */
  revision?: string;
  /** `"model"` (default) or `"dataset"`. */
  repo_type?: RepoType;
  /** Cache folder; default `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `HF_HOME/hub` or `~/.cache/huggingface/hub`. */
  cache_dir?: string;
  /**
   * Access token; default `HF_TOKEN`, else the token `hf auth login` saved (`HF_TOKEN_PATH`, else
   * `HF_HOME/token`). `false` sends none even when one is set.
   */
  token?: string | false;
  /** Hub URL; default `HF_ENDPOINT` or `https://huggingface.co`. */
  endpoint?: string;
  /** Use only the cache, never the network (like huggingface_hub's `local_files_only`). */
  local_files_only?: boolean;
  /** Override `HF_HUB_OFFLINE` (true: cache only; false: network allowed even if the env says offline). */
  offline?: boolean;
  /** Download again even when the file is cached. */
  force_download?: boolean;
  /**
   * Retries (with resume) after a dropped connection or a body stalled past `HF_HUB_DOWNLOAD_TIMEOUT`,
   * and of a 408, 429 or 5xx answer (honouring `Retry-After`, at most 60 s); default 3.
   */
  max_retries?: number;
  /** Progress on stderr; default true unless `HF_HUB_DISABLE_PROGRESS_BARS` is set. */
  progress?: boolean;
}

/** Options of {@linkcode hubDownload}: which file of which repo. */
export interface HubDownloadOptions extends HubOptions {
  /** `org/name` on the hub, or a local folder. */
  repo_id: string;
  /** Path of the file inside the repo, `/`-separated (e.g. `"3.0.0/train-00000-of-00003.parquet"`). */
  filename: string;
}

interface Resolved {
  cacheDir: string;
  storage: string;
  target: HubTarget;
  cacheOnly: boolean;
  maxRetries: number;
  progress: boolean;
}

/**
 * The hub cache folder that calls without `cache_dir` use.
 *
 * @param opts `cache_dir` wins when given
 * @returns `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`
 * @example
 * ```ts
 * import { hubCacheDir } from "./hub.ts";
 * if (hubCacheDir({ cache_dir: "/tmp/c" }) !== "/tmp/c") throw new Error("cache_dir ignored");
 * ```
 */
export function hubCacheDir(opts: { cache_dir?: string } = {}): string {
  return opts.cache_dir ?? defaultCacheDir();
}

/**
 * Whether hub calls with these options may use only the cache: `local_files_only`, else
 * `offline`, else `HF_HUB_OFFLINE`.
 *
 * @param opts the options a hub call would get
 * @returns true when no network request may be made
 * @example
 * ```ts
 * import { isOfflineMode } from "./hub.ts";
 * if (!isOfflineMode({ local_files_only: true }) || isOfflineMode({ offline: false })) throw new Error("offline");
 * ```
 */
export function isOfflineMode(opts: { local_files_only?: boolean; offline?: boolean } = {}): boolean {
  return opts.local_files_only === true || (opts.offline ?? envFlag("HF_HUB_OFFLINE"));
}

function resolve(repo_id: string, opts: HubOptions, filename?: string): Resolved {
  checkRepoId(repo_id);
  const revision = opts.revision ?? "main";
  checkRevision(revision);
  const repo_type = opts.repo_type ?? "model";
  if (repo_type !== "model" && repo_type !== "dataset") {
    throw new TypeError(`Cannot use repo_type: ${JSON.stringify(repo_type)}; use "model" or "dataset"`);
  }
  const cacheDir = hubCacheDir(opts);
  try {
    if (!Deno.statSync(cacheDir).isDirectory) {
      throw new TypeError(
        `Cannot use the hub cache ${cacheDir} (${
          opts.cache_dir !== undefined ? "the cache_dir option, --cache_dir" : "HF_HUB_CACHE / HF_HOME"
        }): it is a file, not a folder; give a folder`,
      );
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotADirectory) {
      throw new TypeError(`Cannot use the hub cache ${cacheDir}: a folder above it is a file; give a folder`);
    }
    if (!(e instanceof Deno.errors.NotFound)) throw e; // made on the first download
  }
  const token = opts.token === false ? undefined : (opts.token ?? defaultToken());
  const endpoint = (opts.endpoint ?? envGet("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(endpoint) || !URL.canParse(endpoint)) {
    throw new TypeError(
      `Cannot use the hub endpoint ${JSON.stringify(endpoint)} (${
        opts.endpoint !== undefined ? "the endpoint option" : "HF_ENDPOINT"
      }): it is not an http(s) URL; set it like https://huggingface.co, or unset it`,
    );
  }
  return {
    cacheDir,
    storage: join(cacheDir, repoFolderName(repo_id, repo_type)),
    target: { repo_id, repo_type, revision, filename, endpoint, token },
    cacheOnly: isOfflineMode(opts),
    maxRetries: opts.max_retries ?? 3,
    progress: opts.progress ?? !envFlag("HF_HUB_DISABLE_PROGRESS_BARS"),
  };
}

/** Run `fn`, and make sure no error that escapes carries the token's text. */
async function redacting<T>(token: string | undefined, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    for (
      let err: unknown = e, depth = 0;
      token && err instanceof Error && depth < 8;
      err = err.cause, depth++
    ) {
      err.message = err.message.replaceAll(token, "***");
      if (err.stack) err.stack = err.stack.replaceAll(token, "***");
    }
    throw e;
  }
}

function offlineError(r: Resolved, what: string): HubError {
  return new HubError(
    "offline",
    `Cannot get ${describe(r.target)}: offline mode (HF_HUB_OFFLINE or local_files_only) and ${what} ` +
      `is not in the cache ${r.storage}; run once with network access, or unset HF_HUB_OFFLINE`,
  );
}

function resolveUrl(t: HubTarget, filename: string): string {
  const prefix = t.repo_type === "dataset" ? "datasets/" : "";
  const file = filename.split("/").map(encodeURIComponent).join("/");
  return `${t.endpoint}/${prefix}${t.repo_id}/resolve/${encodeURIComponent(t.revision)}/${file}`;
}

/**
 * Resolve one file of a hub repo to a local path: a local folder given as `repo_id` is used as is;
 * else a cached copy is returned without any request; else the file is downloaded into the cache
 * (blob + snapshot link + ref, like huggingface_hub), resuming a partial download.
 *
 * @param opts the repo, the file, and {@linkcode HubOptions}
 * @returns the absolute or cache path of the file (a symlink into `blobs/` in the cache)
 * @throws {HubError} `unauthorized`, `not_found`, `offline`, `connection`, `truncated`, `checksum`, `http`
 * @throws {RangeError} a `filename` or `revision` that would leave the repo folder
 * @throws {TypeError} a malformed `repo_id`
 * @example
 * ```ts
 * import { hubDownload } from "./hub.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/config.json`, "{}");
 * const path = await hubDownload({ repo_id: dir, filename: "config.json" });
 * if (path !== `${dir}/config.json`) throw new Error(path);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function hubDownload(opts: HubDownloadOptions): Promise<string> {
  checkRelativePath(opts.filename, "filename");
  if (isDirSync(opts.repo_id)) {
    const path = join(opts.repo_id, opts.filename);
    if (!(await exists(path))) {
      throw new HubError(
        "not_found",
        `Cannot get file "${opts.filename}" from the local folder ${opts.repo_id}: ${path} does not exist; ` +
          `check the file name or the folder`,
      );
    }
    return path;
  }
  const r = resolve(opts.repo_id, opts, opts.filename);
  return await redacting(
    r.target.token,
    () => downloadResolved(r, opts.filename, opts.force_download === true),
  );
}

async function downloadResolved(r: Resolved, filename: string, force: boolean): Promise<string> {
  const t = r.target;
  const cachedCommit = await readRef(r.storage, t.revision);
  if (cachedCommit && !force) {
    const path = join(r.storage, "snapshots", cachedCommit, filename);
    if (await exists(path)) return path;
  }
  if (r.cacheOnly) throw offlineError(r, `this file`);
  const meta = await fileMeta(resolveUrl(t, filename), t, r.maxRetries);
  const commit = meta.commit ?? (isCommitHash(t.revision) ? t.revision : undefined);
  if (!commit || !meta.etag) {
    throw new HubError(
      "http",
      `Cannot get ${describe(t)}: the answer from ${t.endpoint} has no ${
        commit ? "ETag" : "X-Repo-Commit"
      } ` +
        `header, so it is not a Hugging Face hub; check HF_ENDPOINT or any proxy in between`,
    );
  }
  // The blob name comes from the server: it must stay a single plain file name.
  if (!/^[\w.-]+$/.test(meta.etag) || /^\.+$/.test(meta.etag)) {
    throw new HubError(
      "http",
      `Cannot get ${describe(t)}: the hub announced the unusable ETag ${JSON.stringify(meta.etag)}`,
    );
  }
  const blob = join(r.storage, "blobs", meta.etag);
  const snapshot = join(r.storage, "snapshots", commit, filename);
  if (force || !(await exists(blob))) {
    // One writer per blob, across calls and processes (huggingface_hub's `.locks/<repo>/<etag>.lock`):
    // the others wait, then find the finished blob.
    const locks = join(r.cacheDir, ".locks", basename(r.storage));
    await Deno.mkdir(locks, { recursive: true });
    const partial = `${blob}.incomplete`;
    await using _lock = await blobLock(locks, meta.etag, `download ${t.repo_id}/${filename}`, partial);
    if (force || !(await exists(blob))) {
      await Deno.mkdir(dirname(blob), { recursive: true });
      await transfer(meta.location, partial, t, {
        size: meta.size,
        etag: meta.etag,
        max_retries: r.maxRetries,
        progress: r.progress,
      });
      await moveFileAtomic(partial, blob);
    }
  }
  await linkBlob(blob, snapshot);
  await writeRef(r.storage, t.revision, commit);
  return snapshot;
}

/**
 * The lock of one blob (`.locks/<repo>/<etag>.lock`), waited for while its holder's download grows:
 * a lock a dead process of another host, or of a restarted container with this pid, left behind
 * would otherwise be waited for without end (huggingface_hub's OS file locks die with their process).
 * @throws {Deno.errors.Busy} naming the lock file, when its download stopped growing for 12 download
 *   timeouts (`HF_HUB_DOWNLOAD_TIMEOUT`: 2 minutes by default), longer than a holder's retries wait
 */
async function blobLock(locks: string, etag: string, command: string, partial: string): Promise<RunLock> {
  const name = `${etag}.lock`, stallMs = 12 * downloadTimeoutMs();
  let size = -1, since = Date.now();
  for (;;) {
    try {
      return await acquireLock(locks, { name, command, wait_ms: Math.min(5000, stallMs / 4) });
    } catch (e) {
      if (!(e instanceof Deno.errors.Busy)) throw e;
      const now = await Deno.stat(partial).then((s) => s.size, () => -1);
      if (now !== size) [size, since] = [now, Date.now()];
      else if (Date.now() - since >= stallMs) {
        throw new Deno.errors.Busy(
          `${e.message.replace(/\s*;[^;]*$/, "")}; its download (${partial}) has not grown for ` +
            `${stallMs / 1000} s: if no other download of this file runs, remove ${join(locks, name)}`,
        );
      }
    }
  }
}

/** A repo's file list at one commit, as returned by {@linkcode listRepoFiles}. */
export interface RepoFiles {
  /** The commit the revision resolved to. */
  commit: string;
  /** Repo-relative file paths, `/`-separated, sorted. */
  files: string[];
}

/**
 * List the files of a hub repo at a revision through the hub API
 * (`GET /api/models/{id}/revision/{rev}` or `/api/datasets/...`, field `siblings[].rfilename`).
 *
 * @param repo_id `org/name`
 * @param opts {@linkcode HubOptions}
 * @returns the commit and the file paths
 * @throws {HubError} as {@linkcode hubDownload}; `offline` in offline mode (the API is network only)
 * @throws {RangeError} when the hub lists a file name that would leave the repo folder
 */
export async function listRepoFiles(repo_id: string, opts: HubOptions = {}): Promise<RepoFiles> {
  const r = resolve(repo_id, opts);
  return await redacting(r.target.token, () => listResolved(r));
}

async function listResolved(r: Resolved): Promise<RepoFiles> {
  const t = r.target;
  if (r.cacheOnly) throw offlineError(r, "the file list (the hub API)");
  const url = `${t.endpoint}/api/${t.repo_type}s/${t.repo_id}/revision/${encodeURIComponent(t.revision)}`;
  const { res, url: last } = await hubFetch(url, t, {
    method: "GET",
    follow: "relative",
    max_retries: r.maxRetries,
  });
  if (!res.ok) throw await statusError(res, t, last);
  let info: { sha?: unknown; siblings?: { rfilename?: unknown }[] };
  try {
    info = await res.json();
  } catch (e) {
    throw new HubError(
      "http",
      `Cannot list ${describe(t)}: ${last} did not answer JSON (${e}); check HF_ENDPOINT`,
    );
  }
  const commit = typeof info.sha === "string" && isCommitHash(info.sha)
    ? info.sha
    : isCommitHash(t.revision)
    ? t.revision
    : undefined;
  if (!commit || !Array.isArray(info.siblings)) {
    throw new HubError(
      "http",
      `Cannot list ${describe(t)}: ${last} answered without "sha" or "siblings"; check HF_ENDPOINT`,
    );
  }
  const files = info.siblings.map((s) => String(s.rfilename));
  for (const f of files) checkRelativePath(f, `a file name listed by ${last}`);
  return { commit, files: files.sort() };
}

/** Options of {@linkcode snapshotDownload}. */
export interface SnapshotOptions extends HubOptions {
  /** fnmatch-style patterns (`*.safetensors`, `3.0.0/train-*`); only matching files are fetched. */
  allow_patterns?: string[];
  /** fnmatch-style patterns of files to skip. */
  ignore_patterns?: string[];
}

/** The options that fetch from the hub: a local folder, taken as it is, reads none of them. */
const DOWNLOAD_KEYS = [
  "revision",
  "cache_dir",
  "force_download",
  "token",
  "endpoint",
  "max_retries",
] as const;

/**
 * Refuse download options (and `extra` ones) given with a local folder, which is read as it is: it
 * has no revisions, no cache, nothing to fetch or verify (transformers ignores `revision` there
 * silently; fledge says so).
 * @param subject the start of the message, e.g. `Cannot load ./model`
 * @throws {RangeError} naming the options, when `id` is a local folder and any is set
 */
export function refuseDownloadOptions(
  id: string,
  opts: object,
  subject: string,
  extra: readonly string[] = [],
): void {
  const o = opts as Record<string, unknown>;
  const set = [...DOWNLOAD_KEYS, ...extra].filter((k) => o[k] !== undefined && o[k] !== false);
  if (!set.length || !isDirSync(id)) return;
  throw new RangeError(
    `${subject}: it is a local folder, read as it is, and ${set.join(", ")} ${
      agree(set).is
    } for the hub (a local folder has no revisions, cache or hashes to check); drop ${agree(set).it}`,
  );
}

/**
 * Download the files of a repo (those matching `allow_patterns` and not `ignore_patterns`) into
 * the cache and return the snapshot folder. One API request lists the files; cached files are not
 * fetched again. When the hub cannot be reached or fails (5xx, 429; not 401/403/404), a previously
 * cached snapshot of the revision is used (with a one-line note on stderr). A local folder as `repo_id` is returned as is.
 *
 * @param repo_id `org/name` or a local folder
 * @param opts patterns and {@linkcode HubOptions}
 * @returns `<cache>/<type>s--org--name/snapshots/<commit>` (or the local folder)
 * @throws {HubError} as {@linkcode hubDownload}
 */
export async function snapshotDownload(repo_id: string, opts: SnapshotOptions = {}): Promise<string> {
  const allow = opts.allow_patterns ? globMatcher(opts.allow_patterns) : () => true;
  const ignore = opts.ignore_patterns ? globMatcher(opts.ignore_patterns) : () => false;
  const pick: Pick = { files: (all) => all.filter((f) => allow(f) && !ignore(f)) };
  return await snapshotPicked(repo_id, opts, pick);
}

/** Which files of a listing a snapshot fetches: `files` of the listing, then `then` (the shards an index names). */
interface Pick {
  files(listed: string[]): string[];
  then?: (folder: string, fetched: string[]) => Promise<string[]>;
}

async function snapshotPicked(repo_id: string, opts: HubOptions, pick: Pick): Promise<string> {
  checkPathArg(repo_id, "snapshotDownload", "repo_id");
  if (isDirSync(repo_id)) return repo_id;
  if (isFileSync(repo_id)) { // a file of a model folder (config.json, model.safetensors)
    throw new TypeError(
      `Cannot use ${repo_id}: it is a file; pass the folder that holds it (${dirname(repo_id) || "."})`,
    );
  }
  const r = resolve(repo_id, opts);
  try {
    return await snapshotFromHub(r, opts, pick);
  } catch (e) {
    // `runs/nope` is a hub id and a mistyped path alike: when its owner is a local folder, say so
    const owner = repo_id.split("/")[0];
    if (e instanceof HubError && repo_id.includes("/") && isDirSync(owner)) {
      throw new HubError(
        e.kind,
        `${e.message} (${repo_id} is not a local folder either, though ${owner}/ is: check the path)`,
        { status: e.status, cause: e.cause },
      );
    }
    throw e;
  }
}

async function snapshotFromHub(r: Resolved, opts: HubOptions, pick: Pick): Promise<string> {
  return await redacting(r.target.token, async () => {
    const t = r.target;
    const cachedCommit = await readRef(r.storage, t.revision);
    const cached = cachedCommit ? join(r.storage, "snapshots", cachedCommit) : undefined;
    if (r.cacheOnly) {
      if (cached && await exists(cached)) return cached;
      throw offlineError(r, "a snapshot of this revision");
    }
    let listing: RepoFiles;
    try {
      listing = await listResolved(r);
    } catch (e) {
      // As huggingface_hub's snapshot_download: an unreachable or failing hub (5xx, 429 after the
      // retries) falls back to the cached snapshot; a 401/403/404 answer does not.
      const outage = e instanceof HubError && (e.kind === "connection" || e.kind === "http");
      if (outage && cached && await exists(cached)) {
        console.error(`Using the cached snapshot ${cached}: ${e.message.replace(/\s*\n\s*/g, " ")}`);
        return cached;
      }
      throw e;
    }
    const wanted = pick.files(listing.files);
    return await fetchListed(
      r,
      { commit: listing.commit, files: wanted },
      opts.force_download === true,
      pick.then,
    );
  });
}

/**
 * Download `files` at `commit` (never by the branch name), and then the files `then` names, before
 * pointing the revision's ref at the commit.
 */
async function fetchListed(
  r: Resolved,
  listing: RepoFiles,
  force: boolean,
  then?: Pick["then"],
): Promise<string> {
  const pinned = { ...r.target, revision: listing.commit };
  const folder = join(r.storage, "snapshots", listing.commit);
  const get = async (files: string[]) => {
    for (const f of files) await downloadResolved({ ...r, target: { ...pinned, filename: f } }, f, force);
  };
  await get(listing.files);
  if (then) await get(await then(folder, listing.files));
  await Deno.mkdir(folder, { recursive: true });
  await writeRef(r.storage, r.target.revision, listing.commit);
  return folder;
}

/**
 * Download some files of a listing from {@linkcode listRepoFiles} at the commit it resolved, so
 * that a branch moved meanwhile never mixes two versions (a file cached under an older commit of
 * the branch is not used), then record that the revision points at that commit.
 *
 * @param repo_id `org/name`
 * @param listing the commit and the files to fetch (a subset of a listing's files)
 * @param opts {@linkcode HubOptions}: `revision` is the branch or tag that was listed
 * @returns the snapshot folder of the commit, `<cache>/<type>s--org--name/snapshots/<commit>`
 * @throws {HubError} as {@linkcode hubDownload}
 * @throws {RangeError} a listed file name that would leave the repo folder, or a commit that is not 40 hex
 */
export async function downloadListedFiles(
  repo_id: string,
  listing: RepoFiles,
  opts: HubOptions = {},
): Promise<string> {
  if (!isCommitHash(listing.commit)) {
    throw new RangeError(
      `Cannot download files of ${repo_id}: listing.commit ${JSON.stringify(listing.commit)} is not a ` +
        `40-hex commit hash; pass the listing listRepoFiles returned`,
    );
  }
  for (const f of listing.files) checkRelativePath(f, "a file name of listing.files");
  const r = resolve(repo_id, opts);
  if (r.cacheOnly) {
    // offline: only files already cached at that commit
    const folder = join(r.storage, "snapshots", listing.commit);
    for (const f of listing.files) if (!(await exists(join(folder, f)))) throw offlineError(r, `file "${f}"`);
    return folder;
  }
  return await redacting(r.target.token, () => fetchListed(r, listing, opts.force_download === true));
}

/**
 * The files under `folder` (a snapshot, a local model folder) that match fnmatch-style `patterns`
 * as `allow_patterns` does: `/`-separated paths relative to `folder`, sorted.
 * @param folder the folder to list
 * @param patterns default: the model files ({@linkcode MODEL_FILE_PATTERNS}, with the shards of an index)
 * @returns the matching relative paths
 * @example
 * ```ts
 * import { listSnapshotFiles } from "./hub.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/config.json`, "{}");
 * await Deno.writeTextFile(`${dir}/notes.txt`, "");
 * if ((await listSnapshotFiles(dir)).join() !== "config.json") throw new Error();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function listSnapshotFiles(folder: string, patterns?: readonly string[]): Promise<string[]> {
  if (!patterns) return await listModelFiles(folder);
  return (await listFiles(folder)).filter(globMatcher(patterns));
}

/** The snapshot of a model's files (see {@linkcode MODEL_FILE_PATTERNS}); a local folder as is. */
async function modelSnapshot(id: string, opts: HubOptions): Promise<string> {
  return await snapshotPicked(id, opts, { files: modelFilesOf, then: indexShards });
}

/** Options of {@linkcode downloadModel}. */
export interface DownloadModelOptions extends HubOptions {
  /**
   * Copy the files (not links) into this new folder and return it. An existing non-empty folder is
   * refused unless `overwrite_output_dir`, which replaces it whole (never old and new files mixed).
   */
  output?: string;
  /** Replace an existing `output` folder (default false). */
  overwrite_output_dir?: boolean;
  /** Re-hash every file against its blob name (sha256 for LFS files, git sha1 otherwise). */
  verify?: boolean;
  /** Which files; default the model files ({@linkcode MODEL_FILE_PATTERNS}, the shards of an index). */
  allow_patterns?: string[];
}

/**
 * Fetch a model's config, tokenizer and safetensors files (a snapshot of the repo restricted to
 * {@linkcode MODEL_FILE_PATTERNS}), optionally re-hash them and copy them into `output`.
 *
 * @param id `org/name` on the hub, or a local folder
 * @param opts `output`, `verify`, and {@linkcode HubOptions}
 * @returns the folder holding the files (`output` when given, else the cache snapshot)
 * @throws {HubError} as {@linkcode hubDownload}; `checksum` when `verify` finds a corrupt file
 * @throws {RangeError} when `output` exists with files in it and `overwrite_output_dir` is not set
 * @example
 * ```ts
 * import { downloadModel } from "./hub.ts";
 * const src = await Deno.makeTempDir(); // a local folder works like a hub repo
 * await Deno.writeTextFile(`${src}/config.json`, "{}");
 * await Deno.writeTextFile(`${src}/notes.txt`, "not a model file");
 * const out = await Deno.makeTempDir();
 * await downloadModel(src, { output: out });
 * const names = [...Deno.readDirSync(out)].map((e) => e.name);
 * if (names.join() !== "config.json") throw new Error(names.join());
 * await Deno.remove(src, { recursive: true });
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function downloadModel(id: string, opts: DownloadModelOptions = {}): Promise<string> {
  const patterns = opts.allow_patterns;
  refuseDownloadOptions(id, opts, `Cannot download ${id}`, ["verify"]);
  // a local folder without output is only listed: its patterns would pick nothing to copy
  if (opts.allow_patterns !== undefined && opts.output === undefined && isDirSync(id)) {
    throw new RangeError(
      `Cannot download ${id}: it is a local folder, read as it is, and allow_patterns pick what is ` +
        `copied into output, which is not set; add output (--output DIR) or drop allow_patterns`,
    );
  }
  if (opts.overwrite_output_dir && opts.output === undefined) {
    throw new RangeError(
      `Cannot download ${id}: overwrite_output_dir is for output, which is not set; drop it`,
    );
  }
  if (opts.output !== undefined && isFileSync(opts.output)) {
    // a file is never replaced by a folder, asked or not (overwrite_output_dir had done it)
    throw new TypeError(
      `Cannot download ${id} into ${opts.output}: it is a file, and output is a folder; choose a folder`,
    );
  }
  if (opts.output !== undefined && !opts.overwrite_output_dir) {
    const there = await Array.fromAsync(Deno.readDir(opts.output)).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    });
    if (there.length) {
      throw new RangeError(
        `Cannot download ${id} into ${opts.output}: it already holds ${
          there.map((e) => e.name).sort().slice(0, 4).join(", ")
        }${
          there.length > 4 ? ", ..." : ""
        }; pass overwrite_output_dir (--overwrite_output_dir) to replace it, or choose a new folder`,
      );
    }
  }
  const folder = patterns
    ? await snapshotDownload(id, { ...opts, allow_patterns: patterns })
    : await modelSnapshot(id, opts);
  const files = await listSnapshotFiles(folder, patterns);
  if (!files.length && opts.allow_patterns !== undefined) { // (it had copied nothing and said done)
    const some = (await listFiles(folder).catch(() => [])).slice(0, 6);
    throw new RangeError(
      `Cannot download ${id}: no file matches allow_patterns ${opts.allow_patterns.join(", ")}` +
        `${
          some.length && isDirSync(id)
            ? ` (the folder has ${some.join(", ")}${some.length === 6 ? ", ..." : ""})`
            : ""
        }; ` +
        `fix the patterns`,
    );
  }
  if (opts.verify) await verifySnapshot(folder, files);
  if (opts.output === undefined) return folder;
  // The whole folder at once: never old and new files mixed.
  await writeDirAtomic(opts.output, async (tmp) => {
    for (const f of files) await copyFileAtomic(join(folder, f), join(tmp, f));
  }, { replace: opts.overwrite_output_dir ?? false }); // not over a folder that filled meanwhile, unasked
  return opts.output;
}
