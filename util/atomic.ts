/**
 * The one atomic write of fledge: a temp file in the same folder, written and fsynced, then renamed
 * over the destination, so a reader (or a run killed half way) sees the old file or the new one,
 * never half of either. Folders are replaced the same way: written under a temp name beside the
 * destination, then moved into place with the old one set aside first and removed last.
 *
 * Temp names are `<name>.tmp-<random>` beside the destination, so a crashed writer's leftovers
 * are easy to find (`isTempName`) and never collide with real files.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";

/** What {@linkcode writeFileAtomic} writes: text, bytes, or a function that writes into the open file. */
export type AtomicData = string | Uint8Array | ((file: Deno.FsFile) => Promise<void>);

const enc = new TextEncoder();

/**
 * A fresh temp path beside `path` (same folder, so the final rename never crosses file systems).
 * @param path the destination file or folder
 * @returns `<folder>/<name>.tmp-<random>`
 * @example
 * ```ts
 * import { isTempName, tempPath } from "./atomic.ts";
 * const t = tempPath("runs/x/config.yaml");
 * if (!t.startsWith("runs/x/config.yaml.tmp-") || !isTempName(t)) throw new Error(t);
 * ```
 */
export function tempPath(path: string): string {
  return `${path}.tmp-${crypto.randomUUID().slice(0, 13)}`;
}

/**
 * True for a name made by {@linkcode tempPath}: a leftover of an interrupted write.
 * @param name a file or folder name or path
 * @returns whether it ends in `.tmp-<random>`
 */
export function isTempName(name: string): boolean {
  return /\.tmp-[0-9a-f-]{8,}$/.test(basename(name));
}

/**
 * Refuse a destination that is a folder: renaming a file over it fails with a raw OS error naming
 * the temp file ("Is a directory (os error 21): rename '<path>.tmp-...'"), after the whole write.
 * @param path a destination file path
 * @throws {Deno.errors.IsADirectory} when `path` is an existing folder
 * @example
 * ```ts
 * import { refuseFolder } from "./atomic.ts";
 * const dir = await Deno.makeTempDir();
 * await refuseFolder(`${dir}/model.gguf`); // free: fine
 * let refused = false;
 * await refuseFolder(dir).catch(() => refused = true);
 * if (!refused) throw new Error("a folder");
 * await Deno.remove(dir);
 * ```
 */
export async function refuseFolder(path: string): Promise<void> {
  const st = await Deno.stat(path).catch(() => null);
  if (st?.isDirectory) throw folderError(path);
}

function folderError(path: string): Error {
  return new Deno.errors.IsADirectory(
    `Cannot write ${path}: it is a folder; give a file path (inside it, or another name)`,
  );
}

/**
 * Where an atomic write of `path` goes: `path`, or the file a link at `path` points to (the rename
 * would replace the link itself, and leave its target as it was); a folder, a device or a pipe is
 * refused (a rename would put a regular file in the place of /dev/full).
 * @throws {Deno.errors.IsADirectory} for a folder; {@linkcode TypeError} for another non-file
 */
export async function destination(path: string): Promise<string> {
  const st = await Deno.lstat(path).catch(() => null);
  if (!st) return path;
  let target = path;
  if (st.isSymlink) {
    target = await Deno.realPath(path).catch(async () => resolve(dirname(path), await Deno.readLink(path)));
  }
  const real = target === path ? st : await Deno.stat(target).catch(() => null);
  if (real?.isDirectory) throw folderError(path);
  if (real && !real.isFile) {
    throw new TypeError(
      `Cannot write ${path}: it is not a regular file (a device, pipe or socket); give a file path`,
    );
  }
  return target;
}

/**
 * The file system's error of a write to `path`, saying `path` (not the temp file beside it, which
 * the user never named) with the fix: `Permission denied (os error 13): open '<path>.tmp-...'`.
 */
function writeError(path: string, e: unknown): unknown {
  if (!(e instanceof Error) || !/\(os error \d+\)/.test(e.message)) return e;
  const onPath = (e instanceof Deno.errors.AlreadyExists && /: mkdir '/.test(e.message)) ||
    e instanceof Deno.errors.NotADirectory;
  const why = onPath ? "a folder on its path is a file" : e.message.replace(/: [a-z]+ '.*$/, "");
  const err = new (e.constructor as ErrorConstructor)(
    `Cannot write ${path}: ${why}; choose a path in a folder you can write to`,
  );
  return Object.assign(err, { cause: e });
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/**
 * Write a file atomically: a temp file in the same folder, fsynced, then renamed over `path`.
 * Parent folders are made. On any error the temp file is removed and `path` is left as it was.
 * @param path destination
 * @param data text, bytes, or `async (file) => {...}` writing into the open temp file
 * @param opts `replace` (default true); false: a file at `path` when the write ends is left as it
 *   is and {@linkcode Deno.errors.AlreadyExists} thrown (a file that appeared meanwhile)
 * @throws {Deno.errors.IsADirectory} when `path` is a folder, {@linkcode TypeError} when it is a device
 *   or pipe (both before anything is written); the file system's other errors (e.g.
 *   {@linkcode Deno.errors.PermissionDenied}) in their own class, naming `path` rather than the temp file
 * @example
 * ```ts
 * import { writeFileAtomic } from "./atomic.ts";
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/a/b.txt`, "hello\n");
 * if (await Deno.readTextFile(`${dir}/a/b.txt`) !== "hello\n") throw new Error("write");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: AtomicData,
  opts: { replace?: boolean } = {},
): Promise<void> {
  const dest = await destination(path);
  await Deno.mkdir(dirname(dest), { recursive: true }).catch((e) => {
    throw writeError(path, e);
  });
  const tmp = tempPath(dest);
  const file = await Deno.open(tmp, { write: true, createNew: true }).catch((e) => {
    throw writeError(path, e);
  });
  try {
    try {
      if (typeof data === "function") await data(file);
      else await writeAll(file, typeof data === "string" ? enc.encode(data) : data);
      await file.sync();
    } finally {
      file.close();
    }
    await putInPlace(tmp, dest, path, opts.replace ?? true);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Rename the finished `tmp` to `dest`; with `replace` false, only if `dest` does not exist at that
 * moment (a hard link, which never replaces, then the temp name removed): a file that appeared
 * while the output was being made is not replaced. Where hard links are not allowed, a check and a
 * rename.
 */
async function putInPlace(tmp: string, dest: string, path: string, replace: boolean): Promise<void> {
  if (!replace) {
    try {
      await Deno.link(tmp, dest);
      await Deno.remove(tmp);
      return;
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) {
        throw new Deno.errors.AlreadyExists(
          `Cannot write ${path}: it appeared while this output was being made, and it is not replaced; ` +
            `move it away, or write elsewhere`,
        );
      }
      if (await pathExists(dest)) throw e; // (a link that failed otherwise, over an existing file)
    }
  }
  await Deno.rename(tmp, dest).catch((e) => {
    throw writeError(path, e);
  });
}

/**
 * {@linkcode writeFileAtomic} for synchronous callers (small files: caches, plots).
 * @param path destination
 * @param data text or bytes
 * @throws {Deno.errors.IsADirectory} when `path` is a folder; the file system's other errors, unchanged
 */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  if (isDirSync(path)) throw folderError(path);
  Deno.mkdirSync(dirname(path), { recursive: true });
  const tmp = tempPath(path);
  try {
    const file = Deno.openSync(tmp, { write: true, createNew: true });
    try {
      const bytes = typeof data === "string" ? enc.encode(data) : data;
      let off = 0;
      while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
      file.syncSync();
    } finally {
      file.close();
    }
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never made */ }
    throw e;
  }
}

/**
 * Move a finished file into place (e.g. a completed download): fsync it, then rename over `dest`
 * (with `replace` false: only when `dest` does not exist at that moment, as {@linkcode writeFileAtomic}).
 * @param src a complete file in the same file system as `dest`
 * @param dest destination
 */
export async function moveFileAtomic(
  src: string,
  dest: string,
  opts: { replace?: boolean } = {},
): Promise<void> {
  await refuseFolder(dest);
  const f = await Deno.open(src, { read: true, write: true });
  try {
    await f.sync();
  } finally {
    f.close();
  }
  await putInPlace(src, dest, dest, opts.replace ?? true);
}

/**
 * Make `path` a symlink to `target`, replacing what is there in one rename: a link made aside (a
 * temp name {@linkcode isTempName} knows) and renamed over the old one, so two callers linking the
 * same path at once never see it missing, nor fail on the other's link.
 * @throws what `Deno.symlink` throws where links are not allowed (callers may copy instead)
 */
export async function symlinkAtomic(target: string, path: string): Promise<void> {
  const tmp = tempPath(path);
  await Deno.symlink(target, tmp);
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Copy a file atomically: `dest` is the old file or the whole copy, never a partial one.
 * @param src source file
 * @param dest destination
 */
export async function copyFileAtomic(src: string, dest: string): Promise<void> {
  await refuseFolder(dest);
  await Deno.mkdir(dirname(dest), { recursive: true });
  const tmp = tempPath(dest);
  try {
    await Deno.copyFile(src, tmp);
    await moveFileAtomic(tmp, dest);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Write a folder atomically: `fill` writes into a temp folder beside `dir`, which then replaces
 * `dir` (an existing one is set aside first and removed last, so `dir` is always whole: old or new).
 * On any error the temp folder is removed and `dir` is left as it was. With `replace` false, a
 * `dir` holding files by then (one that appeared while `fill` ran) is never replaced.
 * @param dir destination folder
 * @param fill writes the folder's content into the temp folder it is given
 * @param opts `replace` (default true): replace a `dir` that holds files
 * @returns `dir`
 * @throws {Deno.errors.AlreadyExists} with `replace` false, when `dir` holds files at the end
 * @example
 * ```ts
 * import { writeDirAtomic } from "./atomic.ts";
 * const root = await Deno.makeTempDir();
 * await writeDirAtomic(`${root}/m`, (tmp) => Deno.writeTextFile(`${tmp}/a.txt`, "1"));
 * await writeDirAtomic(`${root}/m`, (tmp) => Deno.writeTextFile(`${tmp}/b.txt`, "2"));
 * const names = [...Deno.readDirSync(`${root}/m`)].map((e) => e.name);
 * if (names.join() !== "b.txt") throw new Error(names.join());
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function writeDirAtomic(
  dir: string,
  fill: (tmp: string) => Promise<unknown>,
  opts: { replace?: boolean } = {},
): Promise<string> {
  const tmp = tempPath(dir);
  await Deno.mkdir(dirname(dir), { recursive: true }).then(() => Deno.mkdir(tmp)).catch((e) => {
    throw writeError(dir, e);
  });
  try {
    await fill(tmp);
    await (opts.replace ?? true ? replaceDir(tmp, dir) : placeDir(tmp, dir)).catch((e) => {
      throw e instanceof Deno.errors.AlreadyExists ? e : writeError(dir, e);
    });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  return dir;
}

/**
 * Rename the finished folder `src` to `dir` where `dir` is missing or empty: a rename never
 * replaces a folder that holds files, so one that appeared meanwhile stays.
 */
async function placeDir(src: string, dir: string): Promise<void> {
  try {
    await Deno.rename(src, dir);
  } catch (e) {
    const held = await Array.fromAsync(Deno.readDir(dir)).then((es) => es.length > 0, () => false);
    if (!held) throw e;
    throw new Deno.errors.AlreadyExists(
      `Cannot write ${dir}: it appeared while this output was being made, and it is not replaced; ` +
        `move it away, or write elsewhere`,
    );
  }
}

/** Rename the finished folder `src` to `dir`, setting an existing `dir` aside first. */
async function replaceDir(src: string, dir: string): Promise<void> {
  let old: string | null = tempPath(dir);
  try {
    await Deno.rename(dir, old);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    old = null;
  }
  try {
    await Deno.rename(src, dir);
  } catch (e) {
    if (old) await Deno.rename(old, dir).catch(() => {});
    throw e;
  }
  if (old) await Deno.remove(old, { recursive: true });
}

/**
 * Remove a file or folder so that it is never seen half removed: it is renamed to a temp name first
 * (found and removed later by {@linkcode findTempLeftovers} if the process dies mid-way).
 * @param path what to remove (missing: nothing happens)
 * @returns whether something was removed
 */
export async function removeAtomic(path: string): Promise<boolean> {
  const tmp = tempPath(path);
  try {
    await Deno.rename(path, tmp);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  await Deno.remove(tmp, { recursive: true });
  return true;
}

/**
 * Take a file out of the way under a fresh temp name beside it (an atomic rename: of several
 * processes claiming the same file, one gets it).
 * @param path the file
 * @returns its temp path, or null when it was not there (someone else claimed it)
 */
export async function claimFile(path: string): Promise<string | null> {
  const tmp = tempPath(path);
  try {
    await Deno.rename(path, tmp);
    return tmp;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * The temp leftovers of interrupted atomic writes directly inside `dir` (see {@linkcode isTempName}).
 * @param dir a folder (missing: none)
 * @returns their paths
 */
export async function findTempLeftovers(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (isTempName(e.name)) out.push(join(dir, e.name));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/**
 * The temp leftovers of interrupted atomic writes of `path` itself (`<path>.tmp-<random>` beside
 * it, file or folder): what a killed writer of that path left. Not removed here, since another
 * writer of the same path may be running; a caller names them. Best effort: none when the folder
 * cannot be read.
 * @param path a file or folder that is (to be) written atomically
 * @returns their paths, sorted
 */
export async function tempLeftoversOf(path: string): Promise<string[]> {
  const prefix = `${basename(path)}.tmp-`;
  try {
    return (await findTempLeftovers(dirname(path))).filter((p) => basename(p).startsWith(prefix));
  } catch {
    return [];
  }
}

/**
 * Whether something (file, folder, link) is at `path`: false when it or a parent is missing or a
 * parent is a file; other errors (permissions) are thrown.
 *
 * @example
 * ```ts
 * import { pathExists } from "./atomic.ts";
 * if (await pathExists("/no/such/path") || !(await pathExists("."))) throw new Error("pathExists");
 * ```
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

/**
 * True when `path` is an existing folder (synchronous: for the checks that decide how to read it).
 * @example
 * ```ts
 * import { isDirSync } from "./atomic.ts";
 * if (!isDirSync(".") || isDirSync("/no/such/path")) throw new Error("isDirSync");
 * ```
 */
export function isDirSync(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * True when `path` is an existing file (not a folder); false for anything else or on any error.
 * @param path a path
 */
export function isFileSync(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Read a text file the user named (a config, a template), its two usual mistakes as one line each:
 * `<subject> <path> does not exist; <fix>` and `<subject> <path> is a folder, not a file; <fix>`
 * (reading a folder had printed "Is a directory (os error 21): readfile ...").
 * @param path the file
 * @param subject what names it, e.g. `train: --config`
 * @param fix what to give instead, e.g. `give a .yaml file`
 * @returns its text
 * @throws {Deno.errors.NotFound} or {Deno.errors.IsADirectory} as above; other errors unchanged
 */
export async function readNamedTextFile(path: string, subject: string, fix: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${subject} ${path} does not exist; ${fix}`);
    }
    if (e instanceof Deno.errors.IsADirectory || isDirSync(path)) {
      throw new Deno.errors.IsADirectory(`${subject} ${path} is a folder, not a file; ${fix}`);
    }
    throw e;
  }
}
