/**
 * 4-bit weights: `QuantizedTensor` (NF4 or symmetric int4 with per-block scales, optionally
 * double-quantized as in QLoRA), quantize and dequantize kernels, and `matmulQ4` = x · dequant(W)ᵀ
 * reading the packed codes directly (the f32 weight is never materialized), with its backward to x
 * for QLoRA (the base weight is frozen).
 *
 * Layout of a logical `[N, K]` weight with block size `bs` (a multiple of 8, default 64):
 *   each row is padded with zeros to `Kp = ceil(K / bs) * bs` columns;
 *   codes  `[N, Kp / 8]` u32: element (n, k) is the nibble `(codes[n, k / 8] >> (4 * (k % 8))) & 15`
 *          (row-major, low nibble first, 8 codes per word);
 *   scales `[N, Kp / bs]` f32: one per block of `bs` consecutive elements of a row.
 * NF4 (QLoRA, Dettmers et al. 2023; bitsandbytes `get_4bit_type("nf4")` / `dDequantizeNF4`):
 *   scale = absmax of the block; code = nearest of the 16 NF4 values to `x / absmax`, decided by
 *   the midpoints between neighbouring values with `>` as bitsandbytes' `dQuantizeNF4` tree does
 *   (a value exactly on a midpoint takes the lower code); value = NF4[code] * scale.
 * q4 (symmetric int4): scale = absmax / 7; q = clamp(round_half_even(x / scale), -8, 7);
 *   code = q + 8; value = (code - 8) * scale.
 * An all-zero block has scale 0 and the zero code (NF4 7, q4 8); padding uses the zero code, so it
 * dequantizes to exactly 0 (whatever its scale decodes to). (bitsandbytes turns an all-zero block
 * into code 0 via 0 * inf = NaN; both dequantize to 0.)
 * Double quantization (QLoRA section 3; bitsandbytes `quantize_4bit(compress_statistics=True)`,
 * `bnb_4bit_use_double_quant`): the S = N * Kp / bs scales, flattened row-major, are stored as
 *   offset `[1]` f32: their mean;
 *   scale codes `[ceil(S / 4)]` u32: byte i (low byte first) is the code of scale i in
 *          bitsandbytes' signed dynamic 8-bit map ({@linkcode DYNAMIC_MAP}), quantized blockwise
 *          over 256 consecutive scales (`quantize_blockwise(scales - offset, blocksize=256)`);
 *   scale absmax `[ceil(S / 256)]` f32: the absmax of (scale - offset) per 256-block;
 *   scale i = DYNAMIC_MAP[code_i] * absmax[i / 256] + offset (f32, two roundings).
 * That is 4 + 8 / bs + 32 / (256 bs) bits per weight (4.127 at bs = 64, against 4.5 single).
 *
 * Kernels (WG = 64, one-dimensional grids folded 2-D past 65535 workgroups; WGSL in
 * `_quant_wgsl.ts`). Every kernel that reads scales decodes them in place (`scale(i)`), so the
 * f32 scales of a double-quantized weight never exist on the device after `quantize`:
 *   quantize:    one invocation per (row, block): absmax, scale, then bs/8 packed words.
 *                Bindings: params, codes (rw u32), scales (rw f32), w (read f32 [N, K]).
 *                Double quantization adds two dispatches over those (transient) f32 scales:
 *                scale_mean (one workgroup of 256 lanes, fixed summation order, see
 *                {@linkcode scaleMeanReference}) and scale_quantize (one invocation per 256
 *                scales: absmax, then 64 words of 8-bit codes by binary search over the map's
 *                midpoints); then the f32 scales are released.
 *   dequantize:  one invocation per packed word: 8 outputs. Bindings: out (rw), codes, scales
 *                (or scale codes, scale absmax, offset: likewise below).
 *   matmulQ4:    out (M, N) = x (M, K) · Wᵀ (+ bias); from M = 32 on (and in backward) through a
 *                transient f32 weight and the f32 GEMM (see DEQUANT_MIN_M); below, one invocation per RM x RN output tile
 *                (RM = 4, or 1 when M < 4: the decode path; RN = 4); per block it accumulates
 *                sum_k x * value(code) in registers and multiplies by the block scale once;
 *                x is read as vec4 when K % 4 == 0. Measured on llvmpipe (2 shared cores,
 *                N = 512, K = 2048): ~0.6 GFLOP/s at M = 1, 0.8-1.4 at M = 32 (vec4 a few % over
 *                scalar loads); double-quantized scales cost one more u32 load and a table
 *                lookup per block and column (bench/quant.ts measures both).
 *   backward:    dX (M, K) = dOut (M, N) · W; one invocation per RM rows x one packed word (8
 *                columns of K), looping over N. Bindings: dx (rw), dout, codes, scales.
 * Limits: f32 activations; N * Kp / 8 words and M * K floats must fit one storage binding.
 *
 * @module
 */
import { gridFor, launch } from "./_kernel.ts";
import {
  backwardSpec,
  BW_RM,
  dequantizeSpec,
  matmulSpec,
  type MmKey,
  quantizeSpec,
  quantPrograms,
  RN,
  SCALE_BLOCK,
  scaleMeanSpec,
  scaleMeanWgsl,
  scaleQuantizeSpec,
  WG,
} from "./_quant_wgsl.ts";
import {
  dequantizeScalesReference,
  DYNAMIC_MAP,
  DYNAMIC_THRESHOLDS,
  encodeDynamicReference,
  quantizeScalesReference,
  scaleMeanReference,
} from "./_quant_dynamic.ts";
import { needsGrad, record } from "./autograd.ts";
import type { Backend } from "./backend.ts";
import { matmulForward } from "./matmul.ts";
import { sumTo } from "./reduce.ts";
import {
  expectDtype,
  expectSameBackend,
  expectShape,
  shapeText,
  Tensor,
  type WritableArray,
} from "./tensor.ts";
import { checkBooleans } from "../util/problems.ts";

/** 4-bit formats: `nf4` (QLoRA NormalFloat) or `q4` (symmetric int4 with an absmax/7 scale). */
export type QuantKind = "nf4" | "q4";

/** The 16 NF4 values (float32), code order: bitsandbytes `dDequantizeNF4`. */
export const NF4_VALUES: readonly number[] = Object.freeze([
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
].map(Math.fround));

/**
 * The decision thresholds of bitsandbytes' `dQuantizeNF4` (the midpoints between neighbouring NF4
 * values, as float32): code = number of thresholds t with `x > t`.
 */
export const NF4_THRESHOLDS: readonly number[] = Object.freeze([
  -0.8480964004993439,
  -0.6106329262256622,
  -0.4599952697753906,
  -0.33967943489551544,
  -0.23460740596055984,
  -0.13791173323988914,
  -0.045525018125772476,
  0.03979014977812767,
  0.1202552504837513,
  0.2035212516784668,
  0.2920137718319893,
  0.3893125355243683,
  0.5016634166240692,
  0.6427869200706482,
  0.8614784181118011,
].map(Math.fround));

/** The code whose value is 0 (padding and all-zero blocks). */
export function zeroCode(kind: QuantKind): number {
  return kind === "nf4" ? 7 : 8;
}

// bitsandbytes' dynamic 8-bit map and the double quantization's references live beside this file.
export {
  dequantizeScalesReference,
  DYNAMIC_MAP,
  DYNAMIC_THRESHOLDS,
  encodeDynamicReference,
  quantizeScalesReference,
  scaleMeanReference,
};

/** Scales per second-level block of the double quantization (bitsandbytes' `blocksize=256`). */
export const DOUBLE_QUANT_BLOCK: number = SCALE_BLOCK;

/** Shape and format of a quantized `[N, K]` matrix. */
export interface QuantLayout {
  /** Rows (output features). */
  N: number;
  /** Logical columns (input features). */
  K: number;
  /** 4-bit code book: `nf4` (NormalFloat levels) or `q4` (symmetric int4). */
  kind: QuantKind;
  /** Elements per scale; a multiple of 8. */
  blockSize: number;
}

/**
 * Derived sizes of a layout: padded row length, packed words and blocks per row, and for double
 * quantization of the `N * blocks` scales the u32 words of their 8-bit codes and their 256-blocks.
 */
export function layoutSizes(
  l: QuantLayout,
): { kPadded: number; words: number; blocks: number; scaleWords: number; scaleBlocks: number } {
  const blocks = Math.ceil(l.K / l.blockSize);
  const S = l.N * blocks;
  return {
    kPadded: blocks * l.blockSize,
    words: (blocks * l.blockSize) / 8,
    blocks,
    scaleWords: Math.ceil(S / 4),
    scaleBlocks: Math.ceil(S / SCALE_BLOCK),
  };
}

/**
 * Device bytes of a quantized `[N, K]` weight, from its layout alone (nothing is allocated): the
 * packed codes plus f32 scales, or plus the double-quantized scales (u8 codes packed in u32 words,
 * one f32 absmax per 256 scales, one f32 offset). Equals {@linkcode QuantizedTensor.bytes} of a
 * tensor with that layout.
 *
 * @example
 * ```ts
 * import { quantizedBytes } from "./quant.ts";
 * const l = { N: 4096, K: 4096, kind: "nf4" as const, blockSize: 64 };
 * const f32 = 4096 * 4096 * 4;
 * const dq = quantizedBytes(l, { doubleQuant: true }); // 4.127 bits per weight
 * if (quantizedBytes(l) / f32 !== 4.5 / 32 || Math.abs(dq / f32 - 4.127 / 32) > 1e-4) throw new Error("bytes");
 * ```
 */
export function quantizedBytes(l: QuantLayout, opts: { doubleQuant?: boolean } = {}): number {
  const { words, blocks, scaleWords, scaleBlocks } = layoutSizes(l);
  const scales = opts.doubleQuant ? 4 * (scaleWords + scaleBlocks + 1) : 4 * l.N * blocks;
  return 4 * l.N * words + scales;
}

function checkLayout(op: string, l: QuantLayout): void {
  if (l.kind !== "nf4" && l.kind !== "q4") {
    throw new TypeError(`Cannot run ${op}: kind must be "nf4" or "q4": ${l.kind}`);
  }
  if (!Number.isInteger(l.blockSize) || l.blockSize < 8 || l.blockSize % 8 !== 0 || l.blockSize > 4096) {
    throw new RangeError(
      `Cannot run ${op}: blockSize must be a multiple of 8 up to 4096 (bitsandbytes: 64 to 4096): ${l.blockSize}`,
    );
  }
  if (!(l.N >= 1 && l.K >= 1)) throw new RangeError(`Cannot run ${op}: empty weight [${l.N}, ${l.K}]`);
}

/**
 * Double-quantized scales (QLoRA; bitsandbytes' nested `QuantState`: `absmax` u8, `state2.absmax`,
 * `offset`): scale i = `DYNAMIC_MAP[byte i of codes] * absmax[i / 256] + offset[0]`, i = n * blocks + b.
 */
export interface QuantizedScales {
  /** `[ceil(S / 4)]` u32: 4 codes per word, low byte first (S = N * blocks scales). */
  codes: Tensor;
  /** `[ceil(S / 256)]` f32: absmax of (scale - offset) per 256 consecutive scales. */
  absmax: Tensor;
  /** `[1]` f32: the mean of the scales. */
  offset: Tensor;
}

/**
 * A 4-bit `[N, K]` weight: packed codes and per-block scales (f32, or double-quantized) on one
 * backend. Owner of its tensors (`dispose()` releases them).
 */
export class QuantizedTensor {
  /** Logical shape `[N, K]`. */
  readonly shape: readonly [number, number];
  /** 4-bit code book the codes index: `nf4` (NormalFloat levels) or `q4` (symmetric int4). */
  readonly kind: QuantKind;
  /** Elements per scale. */
  readonly blockSize: number;
  /** `[N, Kp / 8]` u32, 8 codes per word, low nibble first. */
  readonly codes: Tensor;
  /** `[N, Kp / blockSize]` f32 (absmax for nf4, absmax / 7 for q4); null when double-quantized. */
  readonly scales: Tensor | null;
  /** The scales double-quantized (see {@linkcode QuantizedScales}); null for f32 scales. */
  readonly scaleCodes: QuantizedScales | null;
  /** Optional name for messages. */
  name = "";

  /**
   * Wrap packed codes and scales (e.g. loaded from a checkpoint): f32 scales or double-quantized ones.
   * @throws {TypeError} when the tensors' shapes or dtypes do not match the layout
   */
  constructor(
    codes: Tensor,
    scales: Tensor | QuantizedScales,
    shape: readonly [number, number],
    opts: { kind: QuantKind; blockSize?: number },
  ) {
    const op = "QuantizedTensor";
    const l: QuantLayout = { N: shape[0], K: shape[1], kind: opts.kind, blockSize: opts.blockSize ?? 64 };
    checkLayout(op, l);
    const { words, blocks, scaleWords, scaleBlocks } = layoutSizes(l);
    expectDtype(op, "codes", codes, "u32");
    expectShape(op, "codes", codes, [l.N, words]);
    if (scales instanceof Tensor) {
      expectDtype(op, "scales", scales, "f32");
      expectShape(op, "scales", scales, [l.N, blocks]);
      expectSameBackend(op, codes, scales);
    } else {
      expectDtype(op, "scale codes", scales.codes, "u32");
      expectShape(op, "scale codes", scales.codes, [scaleWords]);
      expectDtype(op, "scale absmax", scales.absmax, "f32");
      expectShape(op, "scale absmax", scales.absmax, [scaleBlocks]);
      expectDtype(op, "scale offset", scales.offset, "f32");
      expectShape(op, "scale offset", scales.offset, [1]);
      expectSameBackend(op, codes, scales.codes, scales.absmax, scales.offset);
    }
    this.shape = Object.freeze([l.N, l.K]) as readonly [number, number];
    this.kind = l.kind;
    this.blockSize = l.blockSize;
    this.codes = codes;
    this.scales = scales instanceof Tensor ? scales : null;
    this.scaleCodes = scales instanceof Tensor ? null : scales;
  }

  /** The backend holding the codes and scales. */
  get backend(): Backend {
    return this.codes.backend;
  }

  /** The layout (N, K, kind, blockSize). */
  get layout(): QuantLayout {
    return { N: this.shape[0], K: this.shape[1], kind: this.kind, blockSize: this.blockSize };
  }

  /** True when the scales are double-quantized (pass it back as `quantize`'s `doubleQuant`). */
  get doubleQuant(): boolean {
    return this.scaleCodes !== null;
  }

  /** The tensors holding the scales, in kernel binding order. */
  get scaleTensors(): Tensor[] {
    const s = this.scaleCodes;
    return s ? [s.codes, s.absmax, s.offset] : [this.scales!];
  }

  /** Device bytes of codes and scales together (see {@linkcode quantizedBytes}). */
  get bytes(): number {
    return this.codes.bytes + this.scaleTensors.reduce((a, t) => a + t.bytes, 0);
  }

  /** Release codes and scales. */
  dispose(): void {
    this.codes.dispose();
    for (const t of this.scaleTensors) t.dispose();
  }

  /** Text for messages. */
  toString(): string {
    return `QuantizedTensor(${this.name ? this.name + ", " : ""}[${
      this.shape.join(", ")
    }], ${this.kind}/${this.blockSize}${this.doubleQuant ? "+dq" : ""}, ${this.backend.name})`;
  }
}

// ---- references ----

/** Round half to even (torch.round, WGSL `round`). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Reference: the 4-bit code of one normalized value (`x / scale`, already rounded to f32). */
export function encodeReference(kind: QuantKind, y: number): number {
  if (kind === "q4") return Math.min(7, Math.max(-8, roundHalfEven(y))) + 8;
  let c = 0;
  for (const t of NF4_THRESHOLDS) if (y > t) c++;
  return c;
}

/** Reference: the value of a code before scaling. */
export function codeValue(kind: QuantKind, code: number): number {
  return kind === "nf4" ? NF4_VALUES[code] : code - 8;
}

/**
 * Reference quantization of `w` (`[N, K]` row-major) into `codes` (`N * Kp / 8` words) and
 * `scales` (`N * Kp / blockSize`). Divisions are rounded to f32 as the kernel computes them.
 */
export function quantizeReference(
  codes: WritableArray,
  scales: WritableArray,
  w: ArrayLike<number>,
  l: QuantLayout,
): void {
  const { words, blocks } = layoutSizes(l);
  const f = Math.fround, bs = l.blockSize, z = zeroCode(l.kind);
  for (let n = 0; n < l.N; n++) {
    for (let b = 0; b < blocks; b++) {
      let amax = 0;
      for (let k = b * bs; k < Math.min((b + 1) * bs, l.K); k++) {
        amax = Math.max(amax, Math.abs(w[n * l.K + k]));
      }
      const s = l.kind === "nf4" ? f(amax) : f(f(amax) / 7);
      scales[n * blocks + b] = s;
      for (let wi = 0; wi < bs / 8; wi++) {
        let word = 0;
        for (let j = 0; j < 8; j++) {
          const k = b * bs + wi * 8 + j;
          const c = k < l.K && s > 0 ? encodeReference(l.kind, f(f(w[n * l.K + k]) / s)) : z;
          word |= c << (4 * j);
        }
        codes[n * words + b * (bs / 8) + wi] = word >>> 0;
      }
    }
  }
}

/** The code of element (n, k) of packed `codes`. */
function codeAt(codes: ArrayLike<number>, words: number, n: number, k: number): number {
  return (codes[n * words + (k >> 3)] >>> (4 * (k & 7))) & 15;
}

/** Reference: `out` (`[N, K]`) = the f32 values of the quantized weight. */
export function dequantizeReference(
  out: WritableArray,
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  l: QuantLayout,
): void {
  const { words, blocks } = layoutSizes(l);
  for (let n = 0; n < l.N; n++) {
    for (let k = 0; k < l.K; k++) {
      const s = scales[n * blocks + Math.floor(k / l.blockSize)];
      out[n * l.K + k] = Math.fround(codeValue(l.kind, codeAt(codes, words, n, k)) * s);
    }
  }
}

/** Row n of the dequantized weight into `row` (`[K]`). */
function dequantizeRow(
  row: Float64Array,
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  l: QuantLayout,
  n: number,
) {
  const { words, blocks } = layoutSizes(l);
  const slice = (a: ArrayLike<number>, w: number) => Array.prototype.slice.call(a, n * w, (n + 1) * w);
  dequantizeReference(row, slice(codes, words), slice(scales, blocks), { ...l, N: 1 });
}

/**
 * Reference: `out` (`[M, N]`) = x (`[M, K]`) · dequant(W)ᵀ (+ bias), accumulated in f64 over the
 * f32 dequantized values, one row of W at a time (never the whole f32 matrix).
 */
export function matmulQ4Reference(
  out: WritableArray,
  x: ArrayLike<number>,
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  l: QuantLayout & { M: number },
): void {
  const row = new Float64Array(l.K);
  for (let n = 0; n < l.N; n++) {
    dequantizeRow(row, codes, scales, l, n);
    for (let m = 0; m < l.M; m++) {
      let acc = bias ? bias[n] : 0;
      for (let k = 0; k < l.K; k++) acc += x[m * l.K + k] * row[k];
      out[m * l.N + n] = acc;
    }
  }
}

/** Reference: dX (`[M, K]`) = dOut (`[M, N]`) · dequant(W), f64 accumulation. */
export function matmulQ4BackwardReference(
  dx: WritableArray,
  dOut: ArrayLike<number>,
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  l: QuantLayout & { M: number },
): void {
  const acc = new Float64Array(l.M * l.K);
  const row = new Float64Array(l.K);
  for (let n = 0; n < l.N; n++) {
    dequantizeRow(row, codes, scales, l, n);
    for (let m = 0; m < l.M; m++) {
      const g = dOut[m * l.N + n];
      for (let k = 0; k < l.K; k++) acc[m * l.K + k] += g * row[k];
    }
  }
  for (let i = 0; i < acc.length; i++) dx[i] = acc[i];
}

/** The f32 scales of a tensor on the cpu backend (decoded when double-quantized). */
function hostScales(q: QuantizedTensor): ArrayLike<number> {
  const s = q.scaleCodes;
  if (!s) return q.scales!.data;
  const out = new Float32Array(q.shape[0] * layoutSizes(q.layout).blocks);
  dequantizeScalesReference(out, s.codes.data, s.absmax.data, s.offset.data[0]);
  return out;
}

/** The WGSL sources of the kernels, with the tables above as literals. */
const programs = quantPrograms({
  nf4Values: NF4_VALUES,
  nf4Thresholds: NF4_THRESHOLDS,
  dynamicMap: DYNAMIC_MAP,
  zeroCode,
});

// ---- launchers ----

/** Options of {@linkcode quantize}. */
export interface QuantizeOptions {
  /** Default `"nf4"`. */
  kind?: QuantKind;
  /** Elements per scale (a multiple of 8); default 64 (QLoRA's). */
  blockSize?: number;
  /**
   * Quantize the scales again (QLoRA double quantization; bitsandbytes `compress_statistics`,
   * `bnb_4bit_use_double_quant`): 8-bit codes of (scale - mean) in blocks of 256 scales, one f32
   * absmax per block and the f32 mean. Default false.
   */
  doubleQuant?: boolean;
}

/**
 * Quantize an f32 `[N, K]` weight to 4 bits on its backend (WGSL on webgpu, the reference on cpu),
 * optionally double-quantizing the scales. The caller still owns (and may dispose) `weight`.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { dequantize, quantize } from "./quant.ts";
 * const cpu = await createBackend("cpu");
 * const q = quantize(cpu.fromArray([1, -0.4, 0, 0.25], [1, 4]), { kind: "q4", blockSize: 8 });
 * const w = await dequantize(q).toArray(); // scale = 1/7; q = round(x * 7) = [7, -3, 0, 2]
 * if (Math.abs(w[1] + 3 / 7) > 1e-6 || Math.abs(w[3] - 2 / 7) > 1e-6) throw new Error("q4");
 * // QLoRA: NF4 with double-quantized scales (one scale here: it is the offset, and exact)
 * const d = quantize(cpu.fromArray([0.5, -1, 0, 0.25], [1, 4]), { blockSize: 8, doubleQuant: true });
 * if (!d.doubleQuant || (await dequantize(d).toArray())[1] !== -1) throw new Error("nf4 + dq");
 * ```
 * @throws {TypeError} when `weight` is not an f32 matrix or the kind is unknown
 * @throws {RangeError} when blockSize is not a positive multiple of 8
 */
export function quantize(weight: Tensor, opts: QuantizeOptions = {}): QuantizedTensor {
  const op = "quant.quantize";
  checkBooleans(opts, ["doubleQuant"], `Cannot run ${op}`); // a "false" would double-quantize
  expectDtype(op, "weight", weight, "f32");
  if (weight.rank !== 2) {
    throw new TypeError(`Cannot run ${op}: weight must be [N, K]: ${shapeText(weight.shape)}`);
  }
  const l: QuantLayout = {
    N: weight.shape[0],
    K: weight.shape[1],
    kind: opts.kind ?? "nf4",
    blockSize: opts.blockSize ?? 64,
  };
  checkLayout(op, l);
  const { words, blocks } = layoutSizes(l);
  const be = weight.backend;
  const codes = be.empty([l.N, words], "u32"), scales = be.empty([l.N, blocks]);
  if (be.name === "cpu") quantizeReference(codes.data, scales.data, weight.data, l);
  else {
    const total = l.N * blocks;
    const params = { total, K: l.K, blocks, bs: l.blockSize };
    launch(
      quantizeSpec(l.kind),
      programs.quantize(l.kind),
      [codes, scales, weight],
      params,
      gridFor(total, WG),
    );
  }
  if (!opts.doubleQuant) return new QuantizedTensor(codes, scales, [l.N, l.K], l);
  const sq = quantizeScales(scales, l);
  scales.dispose(); // on webgpu the dispatches above still read it: the pool orders that
  return new QuantizedTensor(codes, sq, [l.N, l.K], l);
}

/** Double-quantize the `[N, blocks]` f32 scales of a layout into new tensors. */
function quantizeScales(scales: Tensor, l: QuantLayout): QuantizedScales {
  const { scaleWords, scaleBlocks } = layoutSizes(l);
  const be = scales.backend, S = scales.size;
  const sq: QuantizedScales = {
    codes: be.empty([scaleWords], "u32"),
    absmax: be.empty([scaleBlocks]),
    offset: be.empty([1]),
  };
  if (be.name === "cpu") {
    sq.offset.data[0] = scaleMeanReference(scales.data);
    quantizeScalesReference(sq.codes.data, sq.absmax.data, scales.data, sq.offset.data[0]);
    return sq;
  }
  launch(scaleMeanSpec, scaleMeanWgsl, [sq.offset, scales], { total: S }, [1, 1, 1]);
  const params = { total: S, nb: scaleBlocks, words: scaleWords };
  const bindings = [sq.codes, sq.absmax, sq.offset, scales];
  launch(scaleQuantizeSpec, programs.scaleQuantize(0), bindings, params, gridFor(scaleBlocks, WG));
  return sq;
}

/**
 * Launcher: `out` (`[N, K]` f32) = the dequantized weight.
 * @throws {TypeError} when `out` has another shape or backend
 */
export function dequantizeForward(out: Tensor, q: QuantizedTensor): void {
  const op = "quant.dequantize";
  expectShape(op, "out", out, q.shape);
  expectDtype(op, "out", out, "f32");
  expectSameBackend(op, out, q.codes);
  const l = q.layout;
  if (out.backend.name === "cpu") return dequantizeReference(out.data, q.codes.data, hostScales(q), l);
  const { words, blocks } = layoutSizes(l);
  const total = l.N * words;
  const dq = q.doubleQuant;
  const params = { total, K: l.K, words, wpb: l.blockSize / 8, blocks };
  const code = programs.dequantize(JSON.stringify([l.kind, dq]));
  launch(dequantizeSpec(l.kind, dq), code, [out, q.codes, ...q.scaleTensors], params, gridFor(total, WG));
}

/** The dequantized f32 `[N, K]` weight as a new tensor (for export and tests; matmulQ4 never needs it). */
export function dequantize(q: QuantizedTensor): Tensor {
  const out = q.backend.empty(q.shape);
  dequantizeForward(out, q);
  return out;
}

// ---- matmul with packed weights ----

/**
 * From this many rows on, a product with a 4-bit weight dequantizes the weight into a transient
 * f32 buffer and runs the tuned f32 GEMM, as bitsandbytes' `matmul_4bit` does outside inference:
 * decoding N·K codes once is cheap next to M·N·K multiply-adds, and the GEMM runs ~10x the
 * packed kernel's GFLOP/s (llvmpipe, 2 cores: ~1 GFLOP/s packed at M = 32 against 11-14). Decode
 * (M < 32) keeps reading the packed codes: it is bound by the weight's bytes. The transient buffer
 * is one layer's weight at a time, returned to the pool right after the product.
 */
const DEQUANT_MIN_M = 32;

/** Run `fn` on a transient f32 copy of `q`. */
function viaDequantized(q: QuantizedTensor, fn: (w: Tensor) => void): void {
  const w = q.codes.backend.empty(q.shape);
  try {
    dequantizeForward(w, q);
    fn(w);
  } finally {
    w.dispose();
  }
}

function checkMatmul(op: string, x: Tensor, q: QuantizedTensor, M: number): void {
  expectDtype(op, "x", x, "f32");
  expectSameBackend(op, x, q.codes);
  if (x.size !== M * q.shape[1]) {
    throw new TypeError(
      `Cannot run ${op}: x has shape ${shapeText(x.shape)}, expected [${M}, ${q.shape[1]}] for weight ${q}`,
    );
  }
}

/**
 * Launcher: `out` (`[M, N]`) = x (`[M, K]`) · dequant(q)ᵀ (+ bias `[N]`), reading the packed
 * codes (and double-quantized scales) directly. `x` and `out` may have any leading shape with the
 * last dims K and N.
 * @throws {TypeError} on mismatched shapes, dtypes or backends (before anything is dispatched)
 */
export function matmulQ4(
  out: Tensor,
  x: Tensor,
  q: QuantizedTensor,
  opts: { bias?: Tensor | null } = {},
): void {
  const op = "quant.matmul";
  const [N, K] = q.shape;
  if (out.rank < 1 || out.shape[out.rank - 1] !== N) {
    throw new TypeError(`Cannot run ${op}: out has shape ${shapeText(out.shape)}, expected [..., ${N}]`);
  }
  const M = out.size / N;
  checkMatmul(op, x, q, M);
  expectDtype(op, "out", out, "f32");
  expectSameBackend(op, out, x);
  const bias = opts.bias ?? null;
  if (bias) {
    expectShape(op, "bias", bias, [N]);
    expectDtype(op, "bias", bias, "f32");
    expectSameBackend(op, out, bias);
  }
  const l = { ...q.layout, M };
  if (out.backend.name === "cpu") {
    return matmulQ4Reference(out.data, x.data, q.codes.data, hostScales(q), bias ? bias.data : null, l);
  }
  if (M === 0) return;
  if (M >= DEQUANT_MIN_M) return viaDequantized(q, (w) => matmulForward(out, x, w, { transB: true, bias }));
  const { words, blocks } = layoutSizes(l);
  const rm = M < 4 ? 1 : 4;
  const nbn = Math.ceil(N / RN);
  const total = nbn * Math.ceil(M / rm);
  const key: MmKey = { kind: l.kind, rm, bias: !!bias, v4: K % 4 === 0, dq: q.doubleQuant };
  launch(
    matmulSpec(key),
    programs.matmul(JSON.stringify(key)),
    [out, x, q.codes, ...q.scaleTensors, ...(bias ? [bias] : [])],
    {
      M,
      N,
      K,
      words,
      wpb: l.blockSize / 8,
      blocks,
      nbn,
      total,
      xlast: Math.max(0, Math.ceil(M * K / 4) - 1),
    },
    gridFor(total, WG),
  );
}

/**
 * Launcher: dX (`[M, K]`) = dOut (`[M, N]`) · dequant(q), reading the packed codes directly (the
 * gradient to the input of a frozen 4-bit linear layer).
 * @throws {TypeError} on mismatched shapes, dtypes or backends (before anything is dispatched)
 */
export function matmulQ4Backward(dx: Tensor, dOut: Tensor, q: QuantizedTensor): void {
  const op = "quant.matmul_backward";
  const [N, K] = q.shape;
  if (dOut.rank < 1 || dOut.shape[dOut.rank - 1] !== N) {
    throw new TypeError(`Cannot run ${op}: dOut has shape ${shapeText(dOut.shape)}, expected [..., ${N}]`);
  }
  const M = dOut.size / N;
  expectDtype(op, "dOut", dOut, "f32");
  expectDtype(op, "dx", dx, "f32");
  expectSameBackend(op, dx, dOut, q.codes);
  if (dx.size !== M * K) {
    throw new TypeError(`Cannot run ${op}: dx has shape ${shapeText(dx.shape)}, expected [${M}, ${K}]`);
  }
  const l = { ...q.layout, M };
  if (dx.backend.name === "cpu") {
    return matmulQ4BackwardReference(dx.data, dOut.data, q.codes.data, hostScales(q), l);
  }
  if (M === 0) return;
  if (M >= DEQUANT_MIN_M) return viaDequantized(q, (w) => matmulForward(dx, dOut, w));
  const { words, blocks } = layoutSizes(l);
  const total = words * Math.ceil(M / BW_RM);
  const dq = q.doubleQuant;
  const params = { M, N, K, words, wpb: l.blockSize / 8, blocks, total };
  const code = programs.backward(JSON.stringify([l.kind, dq]));
  launch(backwardSpec(l.kind, dq), code, [dx, dOut, q.codes, ...q.scaleTensors], params, gridFor(total, WG));
}

/**
 * A linear layer with a frozen 4-bit weight: `y = x · dequant(q)ᵀ + bias` for `x` of shape
 * `[..., K]` (differentiable in `x` and `bias`; the weight gets no gradient, as in QLoRA).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { linearQ4, quantize } from "./quant.ts";
 * const cpu = await createBackend("cpu");
 * const q = quantize(cpu.fromArray([1, 0, 0, -1, 1, 1, 1, 1], [2, 4]), { blockSize: 8 });
 * const y = await linearQ4(cpu.fromArray([2, 3, 4, 5], [1, 4]), q).toArray();
 * if (y[0] !== -3 || y[1] !== 14) throw new Error("linearQ4"); // codes ±1, 0 are exact in NF4
 * ```
 * @throws {TypeError} when the last dim of x is not K
 */
export function linearQ4(x: Tensor, q: QuantizedTensor, bias?: Tensor | null): Tensor {
  const [N, K] = q.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== K) {
    throw new TypeError(
      `Cannot run quant.linear: x has shape ${shapeText(x.shape)}, expected [..., ${K}] for ${q}`,
    );
  }
  const out = x.backend.empty([...x.shape.slice(0, -1), N]);
  matmulQ4(out, x, q, { bias });
  if (!needsGrad(x, bias)) return out;
  return record(out, "linear_q4", [x, bias ?? null], (g) => {
    let gx: Tensor | null = null;
    if (needsGradInput(x)) {
      gx = g.backend.empty(x.shape);
      matmulQ4Backward(gx, g, q);
    }
    const gb = bias && needsGradInput(bias) ? sumTo(g, [N]) : null;
    return [gx, gb];
  });
}

/** True when a gradient must flow to `t` (a leaf that wants one, or an op output). */
function needsGradInput(t: Tensor): boolean {
  return t.requiresGrad || t.node !== null;
}
