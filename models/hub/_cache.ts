/**
 * Private helpers of `hub.ts`: the cache folder in the huggingface_hub layout, name checks and
 * blob links. The layout (see huggingface_hub `file_download.py`):
 *
 * ```
 * <cache>/models--org--name/            (datasets--org--name/ for datasets)
 *   refs/<revision>                     text file holding the commit hash of that branch or tag
 *   blobs/<etag>                        the file contents, named by the ETag (sha256 for LFS files)
 *   blobs/<etag>.incomplete             a download in progress (resumed with a Range request)
 * <cache>/.locks/models--org--name/<etag>.lock   held while that blob downloads (one writer per blob)
 *   snapshots/<commit>/<path>           relative symlink to ../../blobs/<etag> (a copy if links fail)
 * ```
 * @module
 */
import { dirname, join, relative } from "node:path";
import { copyFileAtomic, symlinkAtomic, writeFileAtomic } from "../../util/atomic.ts";

/** Which kind of hub repository a name refers to (models and datasets live in separate spaces). */
export type RepoType = "model" | "dataset";

/** Read an environment variable, treating a missing `--allow-env` permission as "not set". */
export function envGet(name: string): string | undefined {
  try {
    const v = Deno.env.get(name);
    return v === "" ? undefined : v;
  } catch {
    return undefined;
  }
}

/** True for the values huggingface_hub accepts as "on" in boolean env vars (`1`, `true`, `yes`, `on`). */
export function envFlag(name: string): boolean {
  const v = envGet(name);
  return v !== undefined && ["1", "true", "yes", "on"].includes(v.toLowerCase());
}

/** `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`; undefined without a home. */
function hfHome(): string | undefined {
  const home = envGet("HF_HOME");
  if (home) return home;
  const xdg = envGet("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "huggingface");
  const user = envGet("HOME") ?? envGet("USERPROFILE");
  return user ? join(user, ".cache", "huggingface") : undefined;
}

/**
 * The hub cache folder from the standard variables: `HF_HUB_CACHE`, else its legacy name
 * `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
 * `~/.cache/huggingface/hub`.
 */
export function defaultCacheDir(): string {
  const hub = envGet("HF_HUB_CACHE") ?? envGet("HUGGINGFACE_HUB_CACHE");
  if (hub) return hub;
  const home = hfHome();
  if (!home) {
    throw new TypeError(
      "Cannot locate the Hugging Face cache: HOME, HF_HOME and HF_HUB_CACHE are all unset; " +
        "set HF_HUB_CACHE or pass cache_dir",
    );
  }
  return join(home, "hub");
}

/**
 * The token huggingface_hub's `get_token()` finds: `HF_TOKEN` (or its legacy name
 * `HUGGING_FACE_HUB_TOKEN`), else the file `hf auth login` saves, `HF_TOKEN_PATH` or
 * `HF_HOME/token`; undefined when none (or the file cannot be read).
 */
export function defaultToken(): string | undefined {
  const env = (envGet("HF_TOKEN") ?? envGet("HUGGING_FACE_HUB_TOKEN"))?.trim();
  if (env) return env;
  const home = hfHome();
  const path = envGet("HF_TOKEN_PATH") ?? (home ? join(home, "token") : undefined);
  if (!path) return undefined;
  try {
    return Deno.readTextFileSync(path).trim() || undefined;
  } catch {
    return undefined; // no file, or no read permission: no token, as huggingface_hub
  }
}

const REPO_ID = /^(?:[\w.-]+\/)?[\w.-]+$/;

/** Check a hub repo id (`name` or `org/name`, like huggingface_hub's `validate_repo_id`). */
export function checkRepoId(repo_id: string): void {
  if (
    typeof repo_id !== "string" || !REPO_ID.test(repo_id) || repo_id.includes("--") ||
    repo_id.includes("..") || repo_id.length > 96 || /^[.-]|[.-]$/.test(repo_id)
  ) {
    throw new TypeError(
      `Cannot use repo_id: ${JSON.stringify(repo_id)} is neither an existing local folder nor a hub id ` +
        `like "org/name" (letters, digits, "-", "_", "." and one "/", no "--" or ".."); fix the id or the path`,
    );
  }
}

/**
 * Refuse a repo-relative path that could leave its folder: empty, absolute (`/x`, `C:x`), with
 * backslashes, NUL, or `.`/`..`/empty segments. `what` names the field in the message.
 */
export function checkRelativePath(path: string, what: string): void {
  const bad = typeof path !== "string" || path === "" || path.startsWith("/") || /^[A-Za-z]:/.test(path) ||
    path.includes("\\") || path.includes("\0") ||
    path.split("/").some((s) => s === "" || s === "." || s === "..");
  if (bad) {
    throw new RangeError(
      `Cannot use ${what}: ${JSON.stringify(path)} would leave the repository folder ` +
        `(absolute path, "..", "." or empty segment, or a backslash); use a plain relative path like "dir/file.json"`,
    );
  }
}

/** Check a revision (branch, tag, commit or `refs/pr/N`) before it becomes a path under `refs/`. */
export function checkRevision(revision: string): void {
  try {
    checkRelativePath(revision, "revision");
  } catch {
    throw new RangeError(
      `Cannot use revision: ${JSON.stringify(revision)} is not a branch, tag or commit name; ` +
        `use e.g. "main" or a 40-hex commit hash`,
    );
  }
}

/** True for a full 40-hex git commit hash. */
export function isCommitHash(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s);
}

/** True for a 64-hex sha256 (the ETag of an LFS file on the hub). */
export function isSha256(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

/** `models--org--name` / `datasets--org--name`: the repo's folder in the cache. */
export function repoFolderName(repo_id: string, repo_type: RepoType): string {
  return [`${repo_type}s`, ...repo_id.split("/")].join("--");
}

/** True when `path` exists (file, folder or a symlink that resolves). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The commit hash stored in `refs/<revision>`, or undefined when that ref was never cached. */
export async function readRef(storage: string, revision: string): Promise<string | undefined> {
  if (isCommitHash(revision)) return revision;
  try {
    const commit = (await Deno.readTextFile(join(storage, "refs", revision))).trim();
    return isCommitHash(commit) ? commit : undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Record that `revision` points at `commit` (atomic write; no-op when revision is the commit). */
export async function writeRef(storage: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  await writeFileAtomic(join(storage, "refs", revision), commit);
}

/**
 * Make `snapshot` point at `blob` with a relative symlink, as huggingface_hub does; where links
 * are not allowed (some Windows setups, some mounts) fall back to a copy.
 */
export async function linkBlob(blob: string, snapshot: string): Promise<void> {
  await Deno.mkdir(dirname(snapshot), { recursive: true });
  try {
    await symlinkAtomic(relative(dirname(snapshot), blob), snapshot);
  } catch {
    await copyFileAtomic(blob, snapshot); // where links are not allowed (some Windows setups, mounts)
  }
}

/** Every file under `dir`, as `/`-separated paths relative to it, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (sub: string) => {
    for await (const e of Deno.readDir(join(dir, sub))) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory) await walk(rel);
      else out.push(rel);
    }
  };
  await walk("");
  return out.sort();
}

/**
 * Compile fnmatch-style patterns (`*` matches any characters including `/`, `?` one character,
 * `[abc]` a set) as huggingface_hub's `allow_patterns` / `ignore_patterns` do; a pattern ending in
 * `/` matches everything under that folder.
 */
export function globMatcher(patterns: readonly string[]): (path: string) => boolean {
  const res = patterns.map((p) => {
    const pat = p.endsWith("/") ? p + "*" : p;
    let src = "";
    for (let i = 0; i < pat.length; i++) {
      const c = pat[i];
      if (c === "*") src += ".*";
      else if (c === "?") src += ".";
      else if (c === "[") {
        const end = pat.indexOf("]", i + 1);
        if (end < 0) src += "\\[";
        else {
          const body = pat.slice(i + 1, end).replace(/\\/g, "\\\\");
          src += body.startsWith("!") ? `[^${body.slice(1)}]` : `[${body}]`;
          i = end;
        }
      } else src += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
    }
    return new RegExp(`^${src}$`);
  });
  return (path) => res.some((r) => r.test(path));
}
