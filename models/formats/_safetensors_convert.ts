/**
 * Private: dtype conversions of `safetensors.ts`: f32 <-> f16 / bf16 bits (round to nearest
 * even), stored bytes -> typed arrays (raw or converted, or widened in place in a caller's buffer),
 * tensors to write -> bytes; and the in-place transpose of GPT-2's Conv1D weights that loading and
 * saving (`pretrained.ts`, `save.ts`) apply on the way between checkpoint and model layouts.
 * Assumes a little-endian host, as every WebGPU platform is.
 * @module
 */
import type { SafetensorsDtype, TensorData, TensorInfo, TensorInput } from "./types.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 (the number is first rounded to f32) -> binary16 bits, round to nearest even. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: m * 2^-24 with m = (1.mant) * 2^(e - 14 + 23) as an integer shift.
    if (e < -10) return sign;
    const full = mant | 0x800000, shift = 14 - e;
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1))) m++;
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry into the exponent is correct (up to inf)
  return sign | h;
}

/** binary16 bits -> number (exact). */
export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 -> bfloat16 bits, round to nearest even (the PyTorch rounding). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) / 65536) & 0xffff;
}

/** bfloat16 bits -> number (exact). */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h << 16) >>> 0;
  return f32[0];
}

const RAW = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
} as const;

/** Stored bytes (a fresh, aligned buffer) -> typed array, raw or converted. */
export function decode(
  bytes: Uint8Array,
  dtype: SafetensorsDtype,
  as: "raw" | "f32" | "i32",
  where: string,
): TensorData {
  const Ctor = RAW[dtype];
  const raw = new Ctor(
    bytes.buffer as ArrayBuffer,
    bytes.byteOffset,
    bytes.byteLength / Ctor.BYTES_PER_ELEMENT,
  ) as TensorData;
  if (as === "raw") return raw;
  if (as === "f32") {
    if (dtype === "F32") return raw;
    const out = new Float32Array(raw.length);
    if (dtype === "F16") { for (let i = 0; i < out.length; i++) out[i] = f16BitsToF32(raw[i] as number); }
    else if (dtype === "BF16") {
      for (let i = 0; i < out.length; i++) out[i] = bf16BitsToF32(raw[i] as number);
    } else if (dtype === "F64") out.set(raw as Float64Array);
    else {
      throw new TypeError(
        `Cannot read ${where} as f32: dtype ${dtype} is not a float type; read it with as "i32" or "raw"`,
      );
    }
    return out;
  }
  if (dtype === "I32") return raw;
  if (dtype === "I64") {
    const src = raw as BigInt64Array, out = new Int32Array(src.length);
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      if (v < -2147483648n || v > 2147483647n) {
        throw new RangeError(
          `Cannot read ${where} as i32: element ${i} = ${v} is outside the int32 range; read it with as "raw" (BigInt64Array)`,
        );
      }
      out[i] = Number(v);
    }
    return out;
  }
  if (dtype === "I16" || dtype === "I8" || dtype === "U8" || dtype === "BOOL") {
    return Int32Array.from(raw as Int8Array);
  }
  throw new TypeError(
    `Cannot read ${where} as i32: dtype ${dtype} is not an integer type; read it with as "f32" or "raw"`,
  );
}

const FLOATS: ReadonlySet<SafetensorsDtype> = new Set(["F32", "F16", "BF16", "F64"]);

/**
 * Check that a tensor can be read into `out` (`SafetensorsFile.readInto`): a `Float32Array` for
 * float dtypes, a `Uint16Array` for F16/BF16 bits, of exactly the tensor's element count.
 * @returns the element count
 */
export function checkInto(info: TensorInfo, out: Float32Array | Uint16Array, where: string): number {
  const { dtype, shape } = info;
  if (!(out instanceof Float32Array || out instanceof Uint16Array)) {
    throw new TypeError(`Cannot read ${where}: out must be a Float32Array or a Uint16Array`);
  }
  const f32 = out instanceof Float32Array;
  if (f32 ? !FLOATS.has(dtype) : dtype !== "F16" && dtype !== "BF16") {
    throw new TypeError(
      `Cannot read ${where} into a ${out.constructor.name}: dtype ${dtype} is not ` +
        (f32 ? "a float type" : "F16 or BF16") + `; read it with read() (as "raw", "f32" or "i32")`,
    );
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (out.length !== n) {
    throw new RangeError(
      `Cannot read ${where} into ${out.length} elements: shape [${shape}] holds ${n}; pass a buffer ` +
        `of exactly that length (a subarray of a larger one will do)`,
    );
  }
  return n;
}

/**
 * Widen F16 or BF16 bits held in the upper half of `out`'s bytes to f32, in place. Front to back,
 * element `i` is written over bytes `[4i, 4i + 4)`, where no unread element lies (element `j` sits
 * at `2n + 2j`), so a tensor is read and converted in its destination with no second buffer.
 */
export function widenInPlace(out: Float32Array, dtype: "F16" | "BF16"): void {
  const n = out.length;
  const src = new Uint16Array(out.buffer, out.byteOffset + 2 * n, n);
  if (dtype === "BF16") {
    const dst = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = f16BitsToF32(src[i]);
  }
}

/** Check shape and data length; returns the element count. */
export function checkInput(t: TensorInput, where: string): number {
  if (!t || typeof t !== "object" || !Object.hasOwn(RAW, t.dtype)) {
    throw new TypeError(
      `Cannot write ${where}: unknown dtype ${JSON.stringify(t?.dtype)}; use one of ${
        Object.keys(RAW).join(", ")
      }`,
    );
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TypeError(
      `Cannot write ${where}: shape must be a list of non-negative integers: ${JSON.stringify(t.shape)}`,
    );
  }
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (!t.data || typeof t.data.length !== "number" || t.data.length !== numel) {
    throw new TypeError(
      `Cannot write ${where}: shape [${t.shape}] needs ${numel} elements, data has ${t.data?.length}`,
    );
  }
  return numel;
}

const INT_RANGE: Partial<Record<SafetensorsDtype, [number, number]>> = {
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I16: [-32768, 32767],
  I8: [-128, 127],
  U8: [0, 255],
  BOOL: [0, 1],
};

/** A tensor to write -> its little-endian bytes (a view when the data is already raw). */
export function encode(t: TensorInput, where: string): Uint8Array {
  const Ctor = RAW[t.dtype];
  const d = t.data;
  const isBits16 = (t.dtype === "F16" || t.dtype === "BF16") && d instanceof Uint16Array;
  let arr: TensorData;
  if (d instanceof Ctor && (Ctor !== Uint16Array || isBits16)) arr = d as TensorData;
  else if (d instanceof BigInt64Array) {
    throw new TypeError(`Cannot write ${where}: BigInt64Array data needs dtype I64, not ${t.dtype}`);
  } else {
    const src = d as ArrayLike<number>;
    const n = src.length;
    if (t.dtype === "F16" || t.dtype === "BF16") {
      const out = new Uint16Array(n), conv = t.dtype === "F16" ? f32ToF16Bits : f32ToBf16Bits;
      for (let i = 0; i < n; i++) out[i] = conv(src[i]);
      arr = out;
    } else if (t.dtype === "F32" || t.dtype === "F64") {
      arr = (t.dtype === "F32" ? Float32Array : Float64Array).from(src);
    } else {
      const range = INT_RANGE[t.dtype] ?? [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER];
      for (let i = 0; i < n; i++) {
        const v = Number(src[i]);
        if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
          throw new RangeError(
            `Cannot write ${where}: element ${i} = ${src[i]} does not fit ${t.dtype} [${range[0]}, ${
              range[1]
            }]`,
          );
        }
      }
      arr = t.dtype === "I64"
        ? BigInt64Array.from(Array.from(src, (v) => BigInt(v)))
        : (Ctor as typeof Int32Array).from(src, Number);
    }
  }
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}
