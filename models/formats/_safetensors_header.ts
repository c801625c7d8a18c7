/**
 * Private: parse and check a safetensors header against hostile input, following the checks of
 * the reference Rust reader (`safetensors/src/tensor.rs`): header length within the file and
 * below 100 MB, a JSON object, known dtypes, integer shapes, offsets that tile the data section
 * exactly (no gap, no overlap, no trailing bytes) and match shape x dtype size, unique names.
 * @module
 */

import { DTYPE_BYTES, type SafetensorsDtype, type SafetensorsHeader, type TensorInfo } from "./types.ts";

/** Largest header accepted (the Rust reader's `MAX_HEADER_SIZE`). */
export const MAX_HEADER_BYTES = 100_000_000;

const bad = (
  file: string,
  what: string,
  fix = "the file is damaged or not safetensors; re-download or re-export it",
) => new SyntaxError(`Cannot read safetensors file ${file}: ${what}; ${fix}`);

/**
 * Read the header length from the first 8 bytes and check it against the file size.
 * @returns the JSON length in bytes
 */
export function headerLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || first8.length < 8) {
    throw bad(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
  if (n > MAX_HEADER_BYTES) throw bad(file, `header length ${n} bytes is absurd (limit ${MAX_HEADER_BYTES})`);
  if (n > fileSize - 8) {
    throw bad(file, `header length ${n} exceeds the ${fileSize - 8} bytes after the length field`);
  }
  if (n < 2) throw bad(file, `header length ${n} is too small for a JSON object`);
  return n;
}

/** Keys of the top-level object of valid JSON text, in order, duplicates included. */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0, expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)));
      expectKey = false;
      i = j;
    } else if (ch === "{" || ch === "[") {
      depth++;
      expectKey = depth === 1 && ch === "{";
    } else if (ch === "}" || ch === "]") {
      depth--;
    } else if (ch === "," && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/**
 * Parse the header JSON (`bytes` = the `n` header bytes) of a file of `fileSize` bytes.
 * @throws {SyntaxError} naming the file for every kind of malformed or hostile header
 */
export function parseHeader(bytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const n = bytes.length;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw bad(file, "header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(file, `header is not JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw bad(file, `header is not a JSON object but ${Array.isArray(json) ? "an array" : String(json)}`);
  }
  const seen = new Set<string>();
  for (const k of topLevelKeys(text)) {
    if (seen.has(k)) throw bad(file, `duplicate tensor name ${JSON.stringify(k)} in the header`);
    seen.add(k);
  }
  const obj = json as Record<string, unknown>;
  let metadata: Record<string, string> | null = null;
  const entries: [string, TensorInfo][] = [];
  for (const [name, v] of Object.entries(obj)) {
    if (name === "__metadata__") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) {
        throw bad(file, "__metadata__ is not an object");
      }
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== "string") throw bad(file, `__metadata__.${k} is ${JSON.stringify(s)}, not a string`);
      }
      metadata = { ...(v as Record<string, string>) };
      continue;
    }
    entries.push([name, checkEntry(name, v, file)]);
  }
  const dataLen = fileSize - 8 - n;
  const order = [...entries].sort((a, b) =>
    a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1]
  );
  let at = 0, prev = "";
  for (const [name, info] of order) {
    const [begin, end] = info.data_offsets;
    if (begin < at) {
      throw bad(
        file,
        `tensor ${JSON.stringify(name)} data_offsets [${begin}, ${end}] overlap ${
          JSON.stringify(prev)
        } (ends at ${at})`,
      );
    }
    if (begin > at) {
      throw bad(
        file,
        `gap before tensor ${
          JSON.stringify(name)
        }: data_offsets start at ${begin}, previous data ends at ${at}`,
      );
    }
    if (end > dataLen) {
      throw bad(
        file,
        `tensor ${
          JSON.stringify(name)
        } data_offsets [${begin}, ${end}] run past the data section (${dataLen} bytes)`,
      );
    }
    at = end;
    prev = name;
  }
  if (at !== dataLen) {
    throw bad(file, `tensor data ends at ${at} but the data section holds ${dataLen} bytes`);
  }
  return { tensors: new Map(order), metadata, data_start: 8 + n };
}

function checkEntry(name: string, v: unknown, file: string): TensorInfo {
  const where = `tensor ${JSON.stringify(name)}`;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw bad(file, `${where} entry is not an object`);
  }
  const e = v as Record<string, unknown>;
  for (const k of Object.keys(e)) {
    if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
      throw bad(file, `${where} has unknown field ${JSON.stringify(k)}`);
    }
  }
  if (typeof e.dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, e.dtype)) {
    throw bad(
      file,
      `${where} has unknown or unsupported dtype ${JSON.stringify(e.dtype)} (fledge reads ${
        Object.keys(DTYPE_BYTES).join(", ")
      })`,
      "convert the checkpoint to one of these dtypes",
    );
  }
  const dtype = e.dtype as SafetensorsDtype;
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(file, `${where} shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
  }
  const shape = e.shape as number[];
  let numel = 1;
  for (const d of shape) {
    numel *= d;
    if (numel * DTYPE_BYTES[dtype] > Number.MAX_SAFE_INTEGER) {
      throw bad(file, `${where} shape ${JSON.stringify(shape)} is absurdly large`);
    }
  }
  const off = e.data_offsets;
  if (
    !Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) ||
    off[0] > off[1]
  ) {
    throw bad(
      file,
      `${where} data_offsets ${JSON.stringify(off)} are not [begin, end] with 0 <= begin <= end`,
    );
  }
  const bytes = numel * DTYPE_BYTES[dtype];
  if (off[1] - off[0] !== bytes) {
    throw bad(
      file,
      `${where} data_offsets [${off[0]}, ${off[1]}] hold ${off[1] - off[0]} bytes, but shape ${
        JSON.stringify(shape)
      } x ${dtype} needs ${bytes}`,
    );
  }
  return { dtype, shape: [...shape], data_offsets: [off[0], off[1]] };
}
