/**
 * Private: the GGML tensor types the GGUF exporter writes and their encoders, transcribed from
 * ggml's reference quantizers (`ggml/src/ggml-quants.c`: `quantize_row_q8_0_ref`,
 * `quantize_row_q4_0_ref`), float32 arithmetic step by step (`Math.fround`) so the bytes are the
 * ones the C code produces, and its f16 conversion (round to nearest even).
 *
 * Blocks of 32 values along a row (`ne[0]`, the input features of a `[out, in]` weight):
 * - Q8_0: `d` f16, then 32 × int8 `q`; value = d · q.  d = amax / 127, q = roundf(x / d)
 *   (half away from zero). 34 bytes.
 * - Q4_0: `d` f16, then 16 bytes of nibbles (element j in the low nibble of byte j, element j + 16 in
 *   the high one); value = d · (q − 8). d = max / −8 where max is the element of largest magnitude
 *   (the first one on ties), q = min(15, (int8_t)(x / d + 8.5)), i.e. rounded half up. 18 bytes.
 *   The C code rounds `x * id` to float before adding 8.5 (no FMA), as is done here; a compiler
 *   that contracts the two into an FMA can differ in the last bit for values within an ulp of a
 *   rounding boundary (gguf-py's numpy port notes the same).
 * @module
 */

/** GGML type ids (`enum ggml_type`, gguf-py `GGMLQuantizationType`) of the types fledge writes. */
export const GGML_TYPE = Object.freeze({ F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 });

/** A GGML tensor type fledge writes. */
export type GgmlType = keyof typeof GGML_TYPE;

/** Values per quantization block (`QK8_0`, `QK4_0`). */
export const QK = 32;

/** Bytes of `n` values stored as `type` (`n` a multiple of {@linkcode QK} for the block types). */
export function ggmlBytes(type: GgmlType, n: number): number {
  switch (type) {
    case "F32":
      return 4 * n;
    case "F16":
      return 2 * n;
    case "Q8_0":
      return (n / QK) * (2 + QK);
    case "Q4_0":
      return (n / QK) * (2 + QK / 2);
  }
}

const f16 = new Float16Array(1);
const f16Bits = new Uint16Array(f16.buffer);

/** The IEEE half bits of `x` (round to nearest even, as `GGML_FP32_TO_FP16`). */
function halfBits(x: number): number {
  f16[0] = x;
  return f16Bits[0];
}

/** `n` values as little-endian f16 (round to nearest even). */
export function encodeF16(x: Float32Array): Uint8Array {
  const h = Float16Array.from(x);
  return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
}

/** `roundf`: to nearest, ties away from zero. */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * `quantize_row_q8_0_ref`: `x` (length a multiple of 32) as Q8_0 blocks.
 * @param x the values, float32
 * @returns `x.length / 32` blocks of 34 bytes
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = x.length / QK;
  const out = new Uint8Array(nb * (2 + QK));
  const q = new Int8Array(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[i * QK + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const o = i * (2 + QK), h = halfBits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >> 8;
    for (let j = 0; j < QK; j++) q[o + 2 + j] = roundf(Math.fround(x[i * QK + j] * id));
  }
  return out;
}

/**
 * `quantize_row_q4_0_ref`: `x` (length a multiple of 32) as Q4_0 blocks.
 * @param x the values, float32
 * @returns `x.length / 32` blocks of 18 bytes
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = x.length / QK, half = QK / 2;
  const out = new Uint8Array(nb * (2 + half));
  // (int8_t)(v) truncates toward zero; v = x·id + 8.5 is ≥ 0 here, so it is floor.
  const nibble = (v: number) => Math.min(15, Math.trunc(Math.fround(Math.fround(v) + 8.5)));
  for (let i = 0; i < nb; i++) {
    let amax = 0, max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[i * QK + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    const o = i * (2 + half), h = halfBits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >> 8;
    for (let j = 0; j < half; j++) {
      const x0 = nibble(x[i * QK + j] * id), x1 = nibble(x[i * QK + half + j] * id);
      out[o + 2 + j] = x0 | (x1 << 4);
    }
  }
  return out;
}

/**
 * The bytes of `x` as `type`.
 * @param x row-major values (rows a multiple of 32 long for the block types)
 * @param type the GGML type
 */
export function encodeTensor(x: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case "F32":
      return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case "F16":
      return encodeF16(x);
    case "Q8_0":
      return quantizeQ8_0(x);
    case "Q4_0":
      return quantizeQ4_0(x);
  }
}
