/**
 * Private: the GGUF v3 container (ggml `docs/gguf.md`, gguf-py `GGUFWriter`), little-endian:
 *
 *   "GGUF" · u32 version 3 · u64 tensor count · u64 metadata count
 *   metadata:  string key · u32 value type · value            (string = u64 length + UTF-8 bytes)
 *   tensors:   string name · u32 n_dims · u64 ne[n_dims] · u32 ggml type · u64 offset
 *   padding to `general.alignment`, then each tensor's data at its offset (relative to the start of
 *   the data section), each padded to the alignment.
 *
 * `ne` lists dimensions innermost first: a row-major `[out, in]` weight is `ne = [in, out]`.
 * The header is built in memory; tensor data is produced, encoded and written one tensor at a
 * time into a temp file that is renamed into place ({@linkcode writeFileAtomic}).
 * @module
 */
import { refuseFolder, writeFileAtomic } from "../../util/atomic.ts";
import { encodeTensor, GGML_TYPE, ggmlBytes, type GgmlType } from "./_gguf_quant.ts";
import { checkBooleans } from "../../util/problems.ts";

/** The alignment of tensor data (gguf-py's default, written as `general.alignment`). */
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types (`enum gguf_type`). */
const VALUE_TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

/** One metadata value with its GGUF type. */
export type GgufValue =
  | { type: "u32" | "i32" | "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; item: "string"; value: readonly string[] }
  | { type: "array"; item: "i32" | "u32"; value: readonly number[] };

/** One tensor to write: its row-major shape (outermost first), type, and a producer of its values. */
export interface GgufTensorSpec {
  name: string;
  shape: number[];
  type: GgmlType;
  data: () => Promise<Float32Array>;
}

/** What was written. */
export interface GgufWriteResult {
  /** The file written. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** Number of tensors in it. */
  tensors: number;
}

const enc = new TextEncoder();

/** Little-endian byte chunks, concatenated at the end. */
function byteWriter() {
  const parts: Uint8Array[] = [];
  let size = 0;
  const put = (b: Uint8Array) => {
    parts.push(b);
    size += b.length;
  };
  const num = (bytes: number, set: (v: DataView) => void) => {
    const b = new Uint8Array(bytes);
    set(new DataView(b.buffer));
    put(b);
  };
  return {
    u32: (v: number) => num(4, (d) => d.setUint32(0, v, true)),
    i32: (v: number) => num(4, (d) => d.setInt32(0, v, true)),
    f32: (v: number) => num(4, (d) => d.setFloat32(0, v, true)),
    u64: (v: number) => num(8, (d) => d.setBigUint64(0, BigInt(v), true)),
    bool: (v: boolean) => put(new Uint8Array([v ? 1 : 0])),
    str: (s: string) => {
      const b = enc.encode(s);
      num(8, (d) => d.setBigUint64(0, BigInt(b.length), true));
      put(b);
    },
    pad: (align: number) => {
      if (size % align) put(new Uint8Array(align - (size % align)));
    },
    get size() {
      return size;
    },
    bytes: (): Uint8Array => {
      const out = new Uint8Array(size);
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
      return out;
    },
  };
}

type Writer = ReturnType<typeof byteWriter>;

function putValue(w: Writer, v: GgufValue): void {
  w.u32(VALUE_TYPE[v.type]);
  switch (v.type) {
    case "u32":
      return w.u32(v.value);
    case "i32":
      return w.i32(v.value);
    case "f32":
      return w.f32(v.value);
    case "bool":
      return w.bool(v.value);
    case "string":
      return w.str(v.value);
    case "array":
      w.u32(VALUE_TYPE[v.item]);
      w.u64(v.value.length);
      if (v.item === "string") { for (const s of v.value as readonly string[]) w.str(s); }
      else for (const x of v.value as readonly number[]) (v.item === "i32" ? w.i32 : w.u32)(x);
  }
}

const align = (n: number) => Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/**
 * Write a GGUF v3 file atomically; an existing `path` is refused unless `overwrite`.
 * @throws {RangeError} when `path` exists and `overwrite` is not set
 */
export async function writeGguf(
  path: string,
  metadata: [string, GgufValue][],
  tensors: GgufTensorSpec[],
  opts: { overwrite?: boolean },
): Promise<GgufWriteResult> {
  checkBooleans(opts, ["overwrite"], `Cannot write ${path}`); // a "false" would overwrite
  await refuseFolder(path); // before "already exists; pass overwrite", which would not help
  if (!opts.overwrite && await Deno.lstat(path).then(() => true, () => false)) {
    throw new RangeError(
      `Cannot write ${path}: the file already exists; pass overwrite (--overwrite) or choose another path`,
    );
  }
  const w = byteWriter();
  w.u32(0x46554747); // "GGUF" read as a little-endian u32
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, v] of metadata) {
    w.str(key);
    putValue(w, v);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    w.str(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d);
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    sizes.push(ggmlBytes(t.type, n));
    offset += align(sizes.at(-1)!);
  }
  w.pad(GGUF_ALIGNMENT);
  const header = w.bytes();
  await writeFileAtomic(path, async (file) => {
    await writeAll(file, header);
    for (const [i, t] of tensors.entries()) {
      const bytes = encodeTensor(await t.data(), t.type);
      if (bytes.length !== sizes[i]) {
        throw new TypeError(
          `Cannot write ${path}: tensor ${t.name} has ${bytes.length} bytes, expected ${sizes[i]}`,
        );
      }
      await writeAll(file, bytes);
      if (align(bytes.length) > bytes.length) {
        await writeAll(file, new Uint8Array(align(bytes.length) - bytes.length));
      }
    }
  }, { replace: !!opts.overwrite }); // without overwrite, not over a file that appeared meanwhile
  return { path, bytes: header.length + offset, tensors: tensors.length };
}
