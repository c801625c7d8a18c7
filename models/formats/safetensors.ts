/**
 * Read and write safetensors checkpoints (the Hugging Face format): an 8-byte little-endian header
 * length, a JSON header (`dtype`, `shape`, `data_offsets`, optional `__metadata__`), then raw
 * little-endian data. Reads are lazy: {@linkcode SafetensorsFile} reads the header once and each
 * tensor's bytes on demand (seek + read), so a checkpoint larger than memory streams tensor by
 * tensor; sharded checkpoints go through `model.safetensors.index.json`. Writes pad the header to
 * 8 bytes with spaces, order tensors as the reference writer does (widest dtype first, then by
 * name) and land atomically (`util/atomic.ts`: temp file, then rename).
 * Hostile files (bad lengths, offsets, dtypes, names, index paths) are refused with a SyntaxError
 * naming the file.
 * @module
 */
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../../util/atomic.ts";
import { readJsonFile } from "../../util/json.ts";
import { headerLength, parseHeader } from "./_safetensors_header.ts";
import * as cv from "./_safetensors_convert.ts";
import {
  DTYPE_BYTES,
  type SafeTensor,
  type SafetensorsDtype,
  type SafetensorsHeader,
  type SafetensorsIndex,
  type SafetensorsReader,
  type SafetensorsReadOptions,
  type TensorInfo,
  type TensorInput,
} from "./types.ts";

export type {
  SafeTensor,
  SafetensorsDtype,
  SafetensorsHeader,
  SafetensorsIndex,
  SafetensorsReader,
  SafetensorsReadOptions,
  TensorData,
  TensorInfo,
  TensorInput,
} from "./types.ts";
export { DTYPE_BYTES } from "./types.ts";

/** f32 -> IEEE binary16 bits, round to nearest even (overflow to inf, NaN kept quiet). */
export const f32ToF16Bits: (x: number) => number = cv.f32ToF16Bits;
/** IEEE binary16 bits -> number (exact). */
export const f16BitsToF32: (bits: number) => number = cv.f16BitsToF32;
/** f32 -> bfloat16 bits, round to nearest even (NaN kept quiet). */
export const f32ToBf16Bits: (x: number) => number = cv.f32ToBf16Bits;
/** bfloat16 bits -> number (exact). */
export const bf16BitsToF32: (bits: number) => number = cv.bf16BitsToF32;

/**
 * Parse and check the header of safetensors bytes (a whole file, or its first 8 + N bytes with
 * the true `file_size`).
 *
 * @param bytes the file's first bytes
 * @param opts `file`: named in errors; `file_size`: default `bytes.length`
 * @returns the checked header
 * @throws {SyntaxError} for any malformed or hostile header
 *
 * @example
 * ```ts
 * import { parseSafetensorsHeader } from "./safetensors.ts";
 * const json = new TextEncoder().encode('{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}');
 * const bytes = new Uint8Array(8 + json.length + 2);
 * new DataView(bytes.buffer).setUint32(0, json.length, true);
 * bytes.set(json, 8);
 * const h = parseSafetensorsHeader(bytes, { file: "x.safetensors" });
 * if (h.tensors.get("x")?.shape[0] !== 2) throw new Error("shape");
 * ```
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  opts: { file: string; file_size?: number },
): SafetensorsHeader {
  const size = opts.file_size ?? bytes.length;
  const n = headerLength(bytes.subarray(0, 8), size, opts.file);
  if (bytes.length < 8 + n) {
    throw new RangeError(
      `Cannot parse safetensors header of ${opts.file}: need ${8 + n} bytes, got ${bytes.length}`,
    );
  }
  return parseHeader(bytes.subarray(8, 8 + n), size, opts.file);
}

async function readExact(file: Deno.FsFile, pos: number, buf: Uint8Array, path: string): Promise<void> {
  await file.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < buf.length) {
    const got = await file.read(buf.subarray(off));
    if (got === null) {
      throw new SyntaxError(
        `Cannot read safetensors file ${path}: file ended at ${
          pos + off
        } while reading ${buf.length} bytes at ${pos}; ` +
          `the file is truncated (re-download it)`,
      );
    }
    off += got;
  }
}

/**
 * One open `.safetensors` file: the header is read and checked at open; tensor bytes are read on
 * demand (reads are serialized on the handle). Close it (or `using`) when done.
 *
 * @example
 * ```ts
 * import { SafetensorsFile, writeSafetensors } from "./safetensors.ts";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await writeSafetensors(path, { w: { dtype: "BF16", shape: [2], data: new Float32Array([1, -2.5]) } });
 * using f = await SafetensorsFile.open(path);
 * const w = await f.read("w", { as: "f32" });
 * if (w.data[1] !== -2.5 || f.metadata?.format !== "pt") throw new Error("round trip");
 * await Deno.remove(path);
 * ```
 */
export class SafetensorsFile implements SafetensorsReader {
  /** The file path. */
  readonly path: string;
  /** `__metadata__`, or null. */
  readonly metadata: Record<string, string> | null;
  /** The checked header. */
  readonly header: SafetensorsHeader;
  #file: Deno.FsFile;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(path: string, file: Deno.FsFile, header: SafetensorsHeader) {
    this.path = path;
    this.#file = file;
    this.header = header;
    this.metadata = header.metadata;
  }

  /**
   * Open a file and read its header.
   * @param path a `.safetensors` file
   * @returns the open file
   * @throws {SyntaxError} for a malformed or hostile header; Deno's `NotFound` when missing
   */
  static async open(path: string): Promise<SafetensorsFile> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const first = new Uint8Array(Math.min(8, size));
      await readExact(file, 0, first, path);
      const n = headerLength(first, size, path);
      const json = new Uint8Array(n);
      await readExact(file, 8, json, path);
      return new SafetensorsFile(path, file, parseHeader(json, size, path));
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Tensor names, sorted. */
  names(): string[] {
    return [...this.header.tensors.keys()].sort();
  }

  /**
   * Header entry of a tensor.
   * @throws {RangeError} when the file has no tensor of that name
   */
  info(name: string): TensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) {
      throw new RangeError(
        `Cannot find tensor ${JSON.stringify(name)} in ${this.path}: it holds ${this.header.tensors.size} ` +
          `tensors (${this.names().slice(0, 5).join(", ")}${this.header.tensors.size > 5 ? ", ..." : ""})`,
      );
    }
    return t;
  }

  /** The stored bytes of one tensor (a fresh, aligned buffer). */
  readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    if (this.#closed) {
      throw new TypeError(`Cannot read tensor ${JSON.stringify(name)}: ${this.path} is closed`);
    }
    const [begin, end] = info.data_offsets;
    const buf = new Uint8Array(end - begin);
    const job = this.#queue.then(() => readExact(this.#file, this.header.data_start + begin, buf, this.path));
    this.#queue = job.catch(() => {});
    return job.then(() => buf);
  }

  /**
   * Read one tensor.
   * @param name tensor name
   * @param opts `as`: `raw` (default), `f32` or `i32` (see {@linkcode SafetensorsReadOptions})
   * @returns dtype, shape and data
   * @throws {RangeError} for an unknown name or an I64 value outside int32 with `as: "i32"`
   * @throws {TypeError} when the conversion does not apply to the dtype
   */
  async read(name: string, opts: SafetensorsReadOptions = {}): Promise<SafeTensor> {
    const info = this.info(name);
    const bytes = await this.readBytes(name);
    const data = cv.decode(
      bytes,
      info.dtype,
      opts.as ?? "raw",
      `tensor ${JSON.stringify(name)} of ${this.path}`,
    );
    return { dtype: info.dtype, shape: [...info.shape], data };
  }

  /**
   * Read one tensor into a caller's buffer, with no allocation the size of the tensor (for loading
   * a checkpoint larger than memory through one reusable buffer): a `Float32Array` receives an
   * F32, F16, BF16 (exactly) or F64 (rounded) tensor as f32, F16/BF16 widened in place; a
   * `Uint16Array` receives the bits of an F16 or BF16 tensor as stored. Reads are serialized with
   * the other reads of the handle.
   *
   * @param name tensor name
   * @param out destination, exactly the tensor's element count (e.g. a subarray of a larger buffer)
   * @throws {RangeError} for an unknown name, or an `out` of another length than the tensor's
   * @throws {TypeError} when the tensor's dtype does not go into `out`'s type, or the file is closed
   * @throws {SyntaxError} when the file ends before the tensor's data (truncated since it was opened)
   *
   * @example
   * ```ts
   * import { SafetensorsFile, writeSafetensors } from "./safetensors.ts";
   * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
   * await writeSafetensors(path, { w: { dtype: "F16", shape: [2, 2], data: [1, -2, 0.5, 3] } });
   * using f = await SafetensorsFile.open(path);
   * const buf = new Float32Array(16); // one buffer for every tensor
   * await f.readInto("w", buf.subarray(0, 4));
   * if (buf[1] !== -2 || buf[3] !== 3) throw new Error("readInto");
   * await Deno.remove(path);
   * ```
   */
  async readInto(name: string, out: Float32Array | Uint16Array): Promise<void> {
    const info = this.info(name), dtype = info.dtype;
    const n = cv.checkInto(info, out, `tensor ${JSON.stringify(name)} of ${this.path}`);
    const f32 = out instanceof Float32Array;
    if (this.#closed) {
      throw new TypeError(`Cannot read tensor ${JSON.stringify(name)}: ${this.path} is closed`);
    }
    const start = this.header.data_start + info.data_offsets[0];
    const bytes = (a: ArrayBufferView, off: number, len: number) =>
      new Uint8Array(a.buffer, a.byteOffset + off, len);
    const job = this.#queue.then(async () => {
      if (!f32 || dtype === "F32") {
        await readExact(this.#file, start, bytes(out, 0, out.byteLength), this.path);
      } else if (dtype === "F16" || dtype === "BF16") {
        // The 2-byte halves go into the upper half of `out`, then widen front to back.
        await readExact(this.#file, start, bytes(out, 2 * n, 2 * n), this.path);
        cv.widenInPlace(out, dtype);
      } else {
        // F64 is wider than its destination: read it in chunks of at most 512 KiB.
        const chunk = new Float64Array(Math.min(n, 1 << 16));
        for (let i = 0; i < n; i += chunk.length) {
          const m = Math.min(chunk.length, n - i);
          await readExact(this.#file, start + 8 * i, bytes(chunk, 0, 8 * m), this.path);
          out.set(chunk.subarray(0, m), i);
        }
      }
    });
    this.#queue = job.catch(() => {});
    await job;
  }

  /**
   * Path of the file that holds a tensor: this file.
   * @throws {RangeError} when the file has no tensor of that name
   */
  fileOf(name: string): string {
    this.info(name);
    return this.path;
  }

  /** Close the handle (idempotent). */
  close(): void {
    if (!this.#closed) this.#file.close();
    this.#closed = true;
  }

  /** Same as {@linkcode SafetensorsFile.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

const badIndex = (file: string, what: string) =>
  new SyntaxError(`Cannot read safetensors index ${file}: ${what}; fix or re-download the index`);

/** Refuse shard names that leave the model folder. */
function checkShardName(name: unknown, key: string, file: string): string {
  const where = `weight_map[${JSON.stringify(key)}]`;
  if (typeof name !== "string" || name.length === 0) {
    throw badIndex(file, `${where} is ${JSON.stringify(name)}, not a file name`);
  }
  const reason = name.includes("\0")
    ? "contains NUL"
    : name.includes("\\")
    ? "contains a backslash"
    : name.startsWith("/") || /^[A-Za-z]:/.test(name)
    ? "is an absolute path"
    : name.includes(":")
    ? "contains ':'"
    : name.split("/").some((s) => s === ".." || s === "." || s === "")
    ? "leaves or escapes the model folder"
    : null;
  if (reason) throw badIndex(file, `${where} = ${JSON.stringify(name)} ${reason}`);
  return name;
}

/**
 * Read and check a sharded checkpoint's index.
 * @param path the `*.safetensors.index.json` file
 * @returns metadata and weight map
 * @throws {SyntaxError} for bad JSON, a missing `weight_map`, unknown keys, or shard names that
 *   leave the folder (`../`, absolute, backslash, NUL)
 */
export async function readSafetensorsIndex(path: string): Promise<SafetensorsIndex> {
  const json = await readJsonFile(path);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw badIndex(path, "not a JSON object");
  }
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== "metadata" && k !== "weight_map") throw badIndex(path, `unknown key ${JSON.stringify(k)}`);
  }
  const wm = o.weight_map;
  if (typeof wm !== "object" || wm === null || Array.isArray(wm)) {
    throw badIndex(path, "weight_map is missing or not an object");
  }
  const meta = o.metadata ?? null;
  if (meta !== null && (typeof meta !== "object" || Array.isArray(meta))) {
    throw badIndex(path, "metadata is not an object");
  }
  const weight_map: Record<string, string> = {};
  for (const [k, v] of Object.entries(wm)) weight_map[k] = checkShardName(v, k, path);
  return { metadata: meta as Record<string, unknown> | null, weight_map };
}

/** A sharded checkpoint: every shard's header is read and checked at open. */
class ShardedSafetensors implements SafetensorsReader {
  readonly metadata: Record<string, string> | null;
  constructor(
    readonly path: string,
    index: SafetensorsIndex,
    readonly shards: Map<string, SafetensorsFile>,
    readonly owner: Map<string, SafetensorsFile>,
  ) {
    this.metadata = index.metadata &&
      Object.fromEntries(
        Object.entries(index.metadata).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
      );
  }
  names(): string[] {
    return [...this.owner.keys()].sort();
  }
  #shard(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (!f) {
      throw new RangeError(`Cannot find tensor ${JSON.stringify(name)} in the weight_map of ${this.path}`);
    }
    return f;
  }
  info(name: string): TensorInfo {
    return this.#shard(name).info(name);
  }
  read(name: string, opts?: SafetensorsReadOptions): Promise<SafeTensor> {
    return this.#shard(name).read(name, opts);
  }
  async readInto(name: string, out: Float32Array | Uint16Array): Promise<void> {
    await this.#shard(name).readInto(name, out);
  }
  fileOf(name: string): string {
    return this.#shard(name).path;
  }
  close(): void {
    for (const f of this.shards.values()) f.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Open one shard of `index`; a missing one is a NotFound naming the shard and the index. */
async function openShard(index: string, path: string): Promise<SafetensorsFile> {
  try {
    return await SafetensorsFile.open(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Deno.errors.NotFound(
      `Cannot open sharded checkpoint ${index}: its shard ${path} is missing; download the complete checkpoint`,
    );
  }
}

/**
 * Open a checkpoint lazily: a `.safetensors` file, a `*.safetensors.index.json`, or a folder
 * (its `model.safetensors.index.json`, else `model.safetensors`).
 *
 * @param path file, index or folder
 * @returns a reader; call `close()` when done
 * @throws {SyntaxError} for a hostile file or index; {@linkcode readSafetensorsIndex}'s errors;
 *   a RangeError when a tensor of the weight_map is missing from its shard; Deno's `NotFound` for
 *   a missing file or shard (naming the shard and the index)
 *
 * @example
 * ```ts
 * import { openSafetensors, writeSafetensorsSharded } from "./safetensors.ts";
 * const dir = await Deno.makeTempDir();
 * const t = (v: number) => ({ dtype: "F32" as const, shape: [4], data: new Float32Array(4).fill(v) });
 * await writeSafetensorsSharded(dir, { a: t(1), b: t(2) }, { max_shard_size: 16 });
 * const ck = await openSafetensors(dir);
 * if ((await ck.read("b")).data[0] !== 2 || ck.names().length !== 2) throw new Error("shards");
 * ck.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openSafetensors(path: string): Promise<SafetensorsReader> {
  let indexPath: string | null = null;
  if ((await Deno.stat(path)).isDirectory) {
    const idx = join(path, "model.safetensors.index.json");
    const exists = await Deno.stat(idx).then(() => true, () => false);
    if (!exists) return await SafetensorsFile.open(join(path, "model.safetensors"));
    indexPath = idx;
  } else if (path.endsWith(".index.json")) {
    indexPath = path;
  } else {
    return await SafetensorsFile.open(path);
  }
  const index = await readSafetensorsIndex(indexPath);
  const dir = dirname(indexPath);
  const shards = new Map<string, SafetensorsFile>();
  const owner = new Map<string, SafetensorsFile>();
  try {
    for (const [name, shard] of Object.entries(index.weight_map)) {
      let f = shards.get(shard);
      if (!f) shards.set(shard, f = await openShard(indexPath, join(dir, shard)));
      if (!f.header.tensors.has(name)) {
        throw new RangeError(
          `Cannot open sharded checkpoint ${indexPath}: weight_map puts ${
            JSON.stringify(name)
          } in ${shard}, ` +
            `which has no such tensor; re-download the checkpoint`,
        );
      }
      owner.set(name, f);
    }
  } catch (e) {
    for (const f of shards.values()) f.close();
    throw e;
  }
  return new ShardedSafetensors(indexPath, index, shards, owner);
}

/**
 * Read every tensor of a checkpoint (file, index or folder) into memory.
 * @param path as {@linkcode openSafetensors}
 * @param opts conversion, as {@linkcode SafetensorsReadOptions} (applied to every tensor)
 * @returns metadata and tensors by name (sorted)
 */
export async function readSafetensors(
  path: string,
  opts: SafetensorsReadOptions = {},
): Promise<{ metadata: Record<string, string> | null; tensors: Map<string, SafeTensor> }> {
  const r = await openSafetensors(path);
  try {
    const tensors = new Map<string, SafeTensor>();
    for (const name of r.names()) tensors.set(name, await r.read(name, opts));
    return { metadata: r.metadata, tensors };
  } finally {
    r.close();
  }
}

/**
 * Tensors to write, by name: a plain record or a `Map`. Its order does not matter: the writers
 * sort entries into the reference writer's order.
 */
export type TensorInputMap = Record<string, TensorInput> | Map<string, TensorInput>;

/**
 * The reference writer's order (`safetensors` `serialize`): dtype descending in its `Dtype` enum
 * (`BOOL < U8 < I8 < I16 < F16 < BF16 < I32 < F32 < F64 < I64`), then name. Wider types come
 * first, so every tensor starts aligned to its element size.
 */
const DTYPE_RANK: Record<SafetensorsDtype, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 3,
  F16: 4,
  BF16: 5,
  I32: 6,
  F32: 7,
  F64: 8,
  I64: 9,
};

/** Entries in the writer's order (see {@linkcode DTYPE_RANK}). */
function ordered(t: TensorInputMap): [string, TensorInput][] {
  const list = t instanceof Map ? [...t.entries()] : Object.entries(t);
  const rank = (x: TensorInput) => DTYPE_RANK[x.dtype] ?? -1;
  return list.sort(([a, x], [b, y]) => rank(y) - rank(x) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Write tensors to a `.safetensors` file as the Hugging Face writer does: `__metadata__` first,
 * tensors contiguous in the reference writer's order (by name within each dtype, widest dtype
 * first so every tensor is aligned; all-f32 checkpoints are simply name-sorted), header padded
 * with spaces to a multiple of 8 (the shared fixture files are reproduced byte for byte).
 * Data is converted one tensor at a time while streaming to a temp file, which is then renamed
 * over `path` ({@linkcode writeFileAtomic}: readers never see a partial file).
 *
 * @param path destination
 * @param tensors by name (see {@linkcode TensorInput} for accepted data)
 * @param opts `metadata`: string map (default `{format: "pt"}`, which `transformers` requires; null for none)
 * @throws {TypeError} when data does not match the dtype or shape, or a metadata value is not a string
 * @throws {RangeError} when a value does not fit an integer dtype
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorInputMap,
  opts: { metadata?: Record<string, string> | null } = {},
): Promise<void> {
  const metadata = opts.metadata === undefined ? { format: "pt" } : opts.metadata;
  const list = ordered(tensors);
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new TypeError(`Cannot write ${path}: metadata.${k} must be a string: ${JSON.stringify(v)}`);
      }
    }
    header.__metadata__ = metadata;
  }
  let at = 0;
  for (const [name, t] of list) {
    const nbytes = cv.checkInput(t, `tensor ${JSON.stringify(name)} for ${path}`) * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + nbytes] };
    at += nbytes;
  }
  let json = JSON.stringify(header);
  let hb = new TextEncoder().encode(json);
  if (hb.length % 8) {
    json += " ".repeat(8 - (hb.length % 8));
    hb = new TextEncoder().encode(json);
  }
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(hb.length), true);
  await writeFileAtomic(path, async (file) => {
    const write = async (c: Uint8Array) => {
      for (let off = 0; off < c.length;) off += await file.write(c.subarray(off));
    };
    await write(len);
    await write(hb);
    for (const [name, t] of list) await write(cv.encode(t, `tensor ${JSON.stringify(name)} for ${path}`));
  });
}

/**
 * Write a sharded checkpoint as `save_pretrained` does: tensors in the writer's order packed into
 * `model-0000k-of-0000n.safetensors` of at most `max_shard_size` bytes each (a larger tensor gets
 * a shard of its own) and `model.safetensors.index.json` (`metadata.total_size`, `weight_map`).
 * With a single shard it writes only `model.safetensors`, as HF does.
 *
 * @param dir destination folder (created if missing)
 * @param tensors by name
 * @param opts `max_shard_size` in bytes (default 5 GB); `metadata` of each shard as {@linkcode writeSafetensors}
 * @returns the file names written (index last when sharded)
 */
export async function writeSafetensorsSharded(
  dir: string,
  tensors: TensorInputMap,
  opts: { max_shard_size?: number; metadata?: Record<string, string> | null } = {},
): Promise<string[]> {
  const max = opts.max_shard_size ?? 5_000_000_000;
  if (!(max > 0)) {
    throw new RangeError(`Cannot write shards to ${dir}: max_shard_size must be positive: ${max}`);
  }
  await Deno.mkdir(dir, { recursive: true });
  const list = ordered(tensors);
  const shards: [string, TensorInput][][] = [];
  let size = 0, total = 0;
  for (const e of list) {
    const bytes = cv.checkInput(e[1], `tensor ${JSON.stringify(e[0])}`) * DTYPE_BYTES[e[1].dtype];
    if (shards.length === 0 || (size + bytes > max && size > 0)) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(e);
    size += bytes;
    total += bytes;
  }
  if (shards.length <= 1) {
    await writeSafetensors(join(dir, "model.safetensors"), new Map(shards[0] ?? []), opts);
    return ["model.safetensors"];
  }
  const pad = (k: number) => String(k).padStart(5, "0");
  const names = shards.map((_, k) => `model-${pad(k + 1)}-of-${pad(shards.length)}.safetensors`);
  const weight_map: Record<string, string> = {};
  for (let k = 0; k < shards.length; k++) {
    await writeSafetensors(join(dir, names[k]), new Map(shards[k]), opts);
    for (const [name] of shards[k]) weight_map[name] = names[k];
  }
  const index = JSON.stringify({ metadata: { total_size: total }, weight_map }, null, 2) + "\n";
  await writeFileAtomic(join(dir, "model.safetensors.index.json"), index);
  return [...names, "model.safetensors.index.json"];
}
