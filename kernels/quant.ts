/**
 * 4-bit weights: `QuantizedTensor` (NF4 or symmetric int4 with per-block scales), quantize and
 * dequantize kernels, and `matmulQ4` = x · dequant(W)ᵀ reading the packed codes directly (the f32
 * weight is never materialized), with its backward to x for QLoRA (the base weight is frozen).
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
 * dequantizes to exactly 0. (bitsandbytes turns an all-zero block into code 0 via 0 * inf = NaN;
 * both dequantize to 0.)
 *
 * Kernels (WG = 64, one-dimensional grids folded 2-D past 65535 workgroups):
 *   quantize:    one invocation per (row, block): absmax, scale, then bs/8 packed words.
 *                Bindings: params, codes (rw u32), scales (rw f32), w (read f32 [N, K]).
 *   dequantize:  one invocation per packed word: 8 outputs. Bindings: out (rw), codes, scales.
 *   matmulQ4:    out (M, N) = x (M, K) · Wᵀ (+ bias); one invocation per RM x RN output tile
 *                (RM = 4, or 1 when M < 4: the decode path; RN = 4); per block it accumulates
 *                sum_k x * value(code) in registers and multiplies by the block scale once;
 *                x is read as vec4 when K % 4 == 0. Measured on llvmpipe (2 shared cores,
 *                N = 512, K = 2048): ~0.6 GFLOP/s at M = 1, 0.8-1.4 at M = 32 (vec4 a few % over
 *                scalar loads).
 *   backward:    dX (M, K) = dOut (M, N) · W; one invocation per RM rows x one packed word (8
 *                columns of K), looping over N. Bindings: dx (rw), dout, codes, scales.
 * Limits: f32 activations; N * Kp / 8 words and M * K floats must fit one storage binding.
 *
 * @module
 */
import { gridFor, type KernelSpec, launch, LINEAR_INDEX, MAIN_ARGS, memo, wgslHeader } from "./_kernel.ts";
import { needsGrad, record } from "./autograd.ts";
import type { Backend } from "./backend.ts";
import { sumTo } from "./reduce.ts";
import { expectDtype, expectSameBackend, expectShape, shapeText, type Tensor } from "./tensor.ts";

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

/** Shape and format of a quantized `[N, K]` matrix. */
export interface QuantLayout {
  /** Rows (output features). */
  N: number;
  /** Logical columns (input features). */
  K: number;
  kind: QuantKind;
  /** Elements per scale; a multiple of 8. */
  blockSize: number;
}

/** Derived sizes of a layout: padded row length, packed words and blocks per row. */
export function layoutSizes(l: QuantLayout): { kPadded: number; words: number; blocks: number } {
  const blocks = Math.ceil(l.K / l.blockSize);
  return { kPadded: blocks * l.blockSize, words: (blocks * l.blockSize) / 8, blocks };
}

function checkLayout(op: string, l: QuantLayout): void {
  if (l.kind !== "nf4" && l.kind !== "q4") {
    throw new TypeError(`Cannot run ${op}: kind must be "nf4" or "q4": ${l.kind}`);
  }
  if (!Number.isInteger(l.blockSize) || l.blockSize < 8 || l.blockSize % 8 !== 0) {
    throw new RangeError(`Cannot run ${op}: blockSize must be a positive multiple of 8: ${l.blockSize}`);
  }
  if (!(l.N >= 1 && l.K >= 1)) throw new RangeError(`Cannot run ${op}: empty weight [${l.N}, ${l.K}]`);
}

/**
 * A 4-bit `[N, K]` weight: packed codes and per-block scales on one backend. Owner of both
 * tensors (`dispose()` releases them).
 */
export class QuantizedTensor {
  /** Logical shape `[N, K]`. */
  readonly shape: readonly [number, number];
  readonly kind: QuantKind;
  /** Elements per scale. */
  readonly blockSize: number;
  /** `[N, Kp / 8]` u32, 8 codes per word, low nibble first. */
  readonly codes: Tensor;
  /** `[N, Kp / blockSize]` f32 (absmax for nf4, absmax / 7 for q4). */
  readonly scales: Tensor;
  /** Optional name for messages. */
  name = "";

  /**
   * Wrap packed codes and scales (e.g. loaded from a checkpoint).
   * @throws {TypeError} when the tensors' shapes or dtypes do not match the layout
   */
  constructor(
    codes: Tensor,
    scales: Tensor,
    shape: readonly [number, number],
    opts: { kind: QuantKind; blockSize?: number },
  ) {
    const l: QuantLayout = { N: shape[0], K: shape[1], kind: opts.kind, blockSize: opts.blockSize ?? 64 };
    checkLayout("QuantizedTensor", l);
    const { words, blocks } = layoutSizes(l);
    expectDtype("QuantizedTensor", "codes", codes, "u32");
    expectDtype("QuantizedTensor", "scales", scales, "f32");
    expectShape("QuantizedTensor", "codes", codes, [l.N, words]);
    expectShape("QuantizedTensor", "scales", scales, [l.N, blocks]);
    expectSameBackend("QuantizedTensor", codes, scales);
    this.shape = Object.freeze([l.N, l.K]) as readonly [number, number];
    this.kind = l.kind;
    this.blockSize = l.blockSize;
    this.codes = codes;
    this.scales = scales;
  }

  /** The backend holding the codes and scales. */
  get backend(): Backend {
    return this.codes.backend;
  }

  /** The layout (N, K, kind, blockSize). */
  get layout(): QuantLayout {
    return { N: this.shape[0], K: this.shape[1], kind: this.kind, blockSize: this.blockSize };
  }

  /** Bytes of codes and scales together. */
  get bytes(): number {
    return this.codes.bytes + this.scales.bytes;
  }

  /** Release codes and scales. */
  dispose(): void {
    this.codes.dispose();
    this.scales.dispose();
  }

  /** Text for messages. */
  toString(): string {
    return `QuantizedTensor(${this.name ? this.name + ", " : ""}[${
      this.shape.join(", ")
    }], ${this.kind}/${this.blockSize}, ${this.backend.name})`;
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
  codes: { [i: number]: number; length: number },
  scales: { [i: number]: number; length: number },
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
  out: { [i: number]: number; length: number },
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

/**
 * Reference: `out` (`[M, N]`) = x (`[M, K]`) · dequant(W)ᵀ (+ bias), accumulated in f64 over the
 * f32 dequantized values, one row of W at a time (never the whole f32 matrix).
 */
export function matmulQ4Reference(
  out: { [i: number]: number; length: number },
  x: ArrayLike<number>,
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  l: QuantLayout & { M: number },
): void {
  const row = new Float64Array(l.K);
  const one: QuantLayout = { ...l, N: 1 };
  const { words, blocks } = layoutSizes(l);
  for (let n = 0; n < l.N; n++) {
    dequantizeReference(
      row,
      Array.prototype.slice.call(codes, n * words, (n + 1) * words),
      Array.prototype.slice.call(scales, n * blocks, (n + 1) * blocks),
      one,
    );
    for (let m = 0; m < l.M; m++) {
      let acc = bias ? bias[n] : 0;
      for (let k = 0; k < l.K; k++) acc += x[m * l.K + k] * row[k];
      out[m * l.N + n] = acc;
    }
  }
}

/** Reference: dX (`[M, K]`) = dOut (`[M, N]`) · dequant(W), f64 accumulation. */
export function matmulQ4BackwardReference(
  dx: { [i: number]: number; length: number },
  dOut: ArrayLike<number>,
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  l: QuantLayout & { M: number },
): void {
  const { words, blocks } = layoutSizes(l);
  const acc = new Float64Array(l.M * l.K);
  const row = new Float64Array(l.K);
  const one: QuantLayout = { ...l, N: 1 };
  for (let n = 0; n < l.N; n++) {
    dequantizeReference(
      row,
      Array.prototype.slice.call(codes, n * words, (n + 1) * words),
      Array.prototype.slice.call(scales, n * blocks, (n + 1) * blocks),
      one,
    );
    for (let m = 0; m < l.M; m++) {
      const g = dOut[m * l.N + n];
      for (let k = 0; k < l.K; k++) acc[m * l.K + k] += g * row[k];
    }
  }
  for (let i = 0; i < acc.length; i++) dx[i] = acc[i];
}

// ---- WGSL ----

const WG = 64;

/** An f32 WGSL literal of a value that is exactly representable in f32. */
function lit(v: number): string {
  const s = String(Math.fround(v));
  return s.includes(".") || s.includes("e") ? `${s}f` : `${s}.0f`;
}

/** WGSL: `decode(c) -> f32` (the code's value before scaling) and `encode(y) -> u32`. */
const codecWgsl = memo((kind: QuantKind) =>
  kind === "nf4"
    ? `var<private> NF4: array<f32, 16> = array<f32, 16>(${NF4_VALUES.map(lit).join(", ")});
fn decode(c: u32) -> f32 { return NF4[c]; }
fn encode(y: f32) -> u32 {
  var c = 0u;
${NF4_THRESHOLDS.map((t) => `  c += select(0u, 1u, y > ${lit(t)});`).join("\n")}
  return c;
}
`
    : `fn decode(c: u32) -> f32 { return f32(i32(c) - 8); }
fn encode(y: f32) -> u32 { return u32(i32(clamp(round(y), -8.0, 7.0)) + 8); }
`
);

const Q_SPEC = (kind: QuantKind): KernelSpec => ({
  label: `quant.quantize_${kind}`,
  params: { total: "u32", K: "u32", blocks: "u32", bs: "u32" },
  bindings: [
    { name: "codes", type: "u32", access: "read_write" },
    { name: "scales", type: "f32", access: "read_write" },
    { name: "w", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
});

const quantizeCode = memo((kind: QuantKind) =>
  `const WG = ${WG}u;\n${codecWgsl(kind)}${wgslHeader(Q_SPEC(kind))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let n = gid / p.blocks;
  let b = gid % p.blocks;
  let k0 = b * p.bs;
  let kend = min(k0 + p.bs, p.K);
  let base = n * p.K;
  var amax = 0.0;
  for (var k = k0; k < kend; k++) { amax = max(amax, abs(w[base + k])); }
  let s = ${kind === "nf4" ? "amax" : "amax / 7.0"};
  scales[gid] = s;
  let wpb = p.bs / 8u;
  for (var wi = 0u; wi < wpb; wi++) {
    var word = 0u;
    for (var j = 0u; j < 8u; j++) {
      let k = k0 + wi * 8u + j;
      var c = ${zeroCode(kind)}u;
      if (k < p.K && s > 0.0) { c = encode(w[base + k] / s); }
      word = word | (c << (4u * j));
    }
    codes[gid * wpb + wi] = word;
  }
}
`
);

const DQ_SPEC = (kind: QuantKind): KernelSpec => ({
  label: `quant.dequantize_${kind}`,
  params: { total: "u32", K: "u32", words: "u32", wpb: "u32", blocks: "u32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "codes", type: "u32", access: "read" },
    { name: "scales", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
});

const dequantizeCode = memo((kind: QuantKind) =>
  `const WG = ${WG}u;\n${codecWgsl(kind)}${wgslHeader(DQ_SPEC(kind))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let n = gid / p.words;
  let wi = gid % p.words;
  let cw = codes[gid];
  let s = scales[n * p.blocks + wi / p.wpb];
  for (var j = 0u; j < 8u; j++) {
    let k = wi * 8u + j;
    if (k < p.K) { out[n * p.K + k] = decode((cw >> (4u * j)) & 15u) * s; }
  }
}
`
);

/** Options of {@linkcode quantize}. */
export interface QuantizeOptions {
  /** Default `"nf4"`. */
  kind?: QuantKind;
  /** Elements per scale (a multiple of 8); default 64 (QLoRA's). */
  blockSize?: number;
}

/**
 * Quantize an f32 `[N, K]` weight to 4 bits on its backend (WGSL on webgpu, the reference on cpu).
 * The caller still owns (and may dispose) `weight`.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { dequantize, quantize } from "./quant.ts";
 * const cpu = await createBackend("cpu");
 * const q = quantize(cpu.fromArray([1, -0.4, 0, 0.25], [1, 4]), { kind: "q4", blockSize: 8 });
 * const w = await dequantize(q).toArray(); // scale = 1/7; q = round(x * 7) = [7, -3, 0, 2]
 * if (Math.abs(w[1] + 3 / 7) > 1e-6 || Math.abs(w[3] - 2 / 7) > 1e-6) throw new Error("q4");
 * ```
 * @throws {TypeError} when `weight` is not an f32 matrix or the kind is unknown
 * @throws {RangeError} when blockSize is not a positive multiple of 8
 */
export function quantize(weight: Tensor, opts: QuantizeOptions = {}): QuantizedTensor {
  const op = "quant.quantize";
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
    launch(Q_SPEC(l.kind), quantizeCode(l.kind), [codes, scales, weight], {
      total,
      K: l.K,
      blocks,
      bs: l.blockSize,
    }, gridFor(total, WG));
  }
  return new QuantizedTensor(codes, scales, [l.N, l.K], l);
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
  if (out.backend.name === "cpu") return dequantizeReference(out.data, q.codes.data, q.scales.data, l);
  const { words, blocks } = layoutSizes(l);
  const total = l.N * words;
  launch(DQ_SPEC(l.kind), dequantizeCode(l.kind), [out, q.codes, q.scales], {
    total,
    K: l.K,
    words,
    wpb: l.blockSize / 8,
    blocks,
  }, gridFor(total, WG));
}

/** The dequantized f32 `[N, K]` weight as a new tensor (for export and tests; matmulQ4 never needs it). */
export function dequantize(q: QuantizedTensor): Tensor {
  const out = q.backend.empty(q.shape);
  dequantizeForward(out, q);
  return out;
}

// ---- matmul with packed weights ----

interface MmKey {
  kind: QuantKind;
  rm: number;
  bias: boolean;
  /** K % 4 == 0: x is read as vec4 (two loads per packed word and row). */
  v4: boolean;
}
const RN = 4;

const mmSpec = (k: MmKey): KernelSpec => ({
  label: `quant.matmul_${k.kind}_m${k.rm}${k.bias ? "_bias" : ""}`,
  params: {
    M: "u32",
    N: "u32",
    K: "u32",
    words: "u32",
    wpb: "u32",
    blocks: "u32",
    nbn: "u32",
    total: "u32",
    xlast: "u32",
  },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: k.v4 ? "vec4<f32>" : "f32", access: "read" },
    { name: "codes", type: "u32", access: "read" },
    { name: "scales", type: "f32", access: "read" },
    ...(k.bias ? [{ name: "bias", type: "f32", access: "read" } as const] : []),
  ],
  workgroupSize: [WG, 1, 1],
});

const range = (n: number) => [...Array(n).keys()];

const mmCode = memo((key: string) => {
  const k = JSON.parse(key) as MmKey;
  const I = range(k.rm), J = range(RN), E = range(8);
  const each = (f: (i: number, j: number) => string) => I.flatMap((i) => J.map((j) => f(i, j))).join("\n");
  // x loads of one packed word (8 columns from k) for every row of the tile; guarded in the last
  // word of a row when K is not a multiple of 8.
  const xLoads = (guard: boolean) =>
    k.v4
      ? I.map((i) =>
        `xa${i} = x[(xr${i} + k) / 4u]; ` +
        (guard
          ? `xb${i} = select(vec4<f32>(0.0), x[min((xr${i} + k) / 4u + 1u, p.xlast)], k + 4u < p.K);`
          : `xb${i} = x[(xr${i} + k) / 4u + 1u];`)
      ).join("\n        ")
      : I.flatMap((i) =>
        E.map((e) =>
          guard
            ? `x${i}_${e} = select(0.0, x[xr${i} + min(k + ${e}u, p.K - 1u)], k + ${e}u < p.K);`
            : `x${i}_${e} = x[xr${i} + k + ${e}u];`
        )
      ).join("\n        ");
  const xDecl = k.v4
    ? I.map((i) => `var xa${i} = vec4<f32>(0.0); var xb${i} = vec4<f32>(0.0);`).join(" ")
    : I.flatMap((i) => E.map((e) => `var x${i}_${e} = 0.0;`)).join(" ");
  const fma = (i: number, j: number) =>
    k.v4
      ? `t${i}_${j} += dot(xa${i}, da) + dot(xb${i}, db);`
      : `t${i}_${j} += ${E.map((e) => `x${i}_${e} * d${e}`).join(" + ")};`;
  const decodeWord = k.v4
    ? `let da = vec4<f32>(${E.slice(0, 4).map((e) => `decode((cw >> ${4 * e}u) & 15u)`).join(", ")});
        let db = vec4<f32>(${E.slice(4).map((e) => `decode((cw >> ${4 * e}u) & 15u)`).join(", ")});`
    : E.map((e) => `let d${e} = decode((cw >> ${4 * e}u) & 15u);`).join(" ");
  return `const WG = ${WG}u;\n${codecWgsl(k.kind)}${wgslHeader(mmSpec(k))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let n0 = (gid % p.nbn) * ${RN}u;
  let m0 = (gid / p.nbn) * ${k.rm}u;
  ${I.map((i) => `let xr${i} = min(m0 + ${i}u, p.M - 1u) * p.K;`).join("\n  ")}
  ${J.map((j) => `let cr${j} = min(n0 + ${j}u, p.N - 1u);`).join("\n  ")}
  ${each((i, j) => `var a${i}_${j} = 0.0;`)}
  ${xDecl}
  for (var b = 0u; b < p.blocks; b++) {
    ${each((i, j) => `var t${i}_${j} = 0.0;`)}
    for (var w = b * p.wpb; w < (b + 1u) * p.wpb; w++) {
      let k = w * 8u;
      if (k + 8u <= p.K) {
        ${xLoads(false)}
      } else {
        ${xLoads(true)}
      }
      ${
    J.map((j) =>
      `{
        let cw = codes[cr${j} * p.words + w];
        ${decodeWord}
        ${I.map((i) => fma(i, j)).join("\n        ")}
      }`
    ).join("\n      ")
  }
    }
    ${J.map((j) => `let s${j} = scales[cr${j} * p.blocks + b];`).join(" ")}
    ${each((i, j) => `a${i}_${j} += t${i}_${j} * s${j};`)}
  }
  ${
    each((i, j) =>
      `if (m0 + ${i}u < p.M && n0 + ${j}u < p.N) { out[(m0 + ${i}u) * p.N + n0 + ${j}u] = a${i}_${j}${
        k.bias ? ` + bias[n0 + ${j}u]` : ""
      }; }`
    )
  }
}
`;
});

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
 * codes directly. `x` and `out` may have any leading shape with the last dims K and N.
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
    return matmulQ4Reference(out.data, x.data, q.codes.data, q.scales.data, bias ? bias.data : null, l);
  }
  if (M === 0) return;
  const { words, blocks } = layoutSizes(l);
  const rm = M < 4 ? 1 : 4;
  const nbn = Math.ceil(N / RN);
  const total = nbn * Math.ceil(M / rm);
  const key: MmKey = { kind: l.kind, rm, bias: !!bias, v4: K % 4 === 0 };
  launch(
    mmSpec(key),
    mmCode(JSON.stringify(key)),
    bias ? [out, x, q.codes, q.scales, bias] : [out, x, q.codes, q.scales],
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

const BW_RM = 4;
const bwSpec = (kind: QuantKind): KernelSpec => ({
  label: `quant.matmul_backward_${kind}`,
  params: { M: "u32", N: "u32", K: "u32", words: "u32", wpb: "u32", blocks: "u32", total: "u32" },
  bindings: [
    { name: "dx", type: "f32", access: "read_write" },
    { name: "dout", type: "f32", access: "read" },
    { name: "codes", type: "u32", access: "read" },
    { name: "scales", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
});

const bwCode = memo((kind: QuantKind) => {
  const I = range(BW_RM), E = range(8);
  return `const WG = ${WG}u;\n${codecWgsl(kind)}${wgslHeader(bwSpec(kind))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let w = gid % p.words;
  let m0 = (gid / p.words) * ${BW_RM}u;
  let b = w / p.wpb;
  ${I.map((i) => `let gr${i} = min(m0 + ${i}u, p.M - 1u) * p.N;`).join("\n  ")}
  ${I.flatMap((i) => E.map((e) => `var a${i}_${e} = 0.0;`)).join(" ")}
  for (var n = 0u; n < p.N; n++) {
    let cw = codes[n * p.words + w];
    let s = scales[n * p.blocks + b];
    ${E.map((e) => `let d${e} = decode((cw >> ${4 * e}u) & 15u);`).join(" ")}
    ${
    I.map((i) =>
      `{
      let g = dout[gr${i} + n] * s;
      ${E.map((e) => `a${i}_${e} += g * d${e};`).join(" ")}
    }`
    ).join("\n    ")
  }
  }
  let k0 = w * 8u;
  ${
    I.flatMap((i) =>
      E.map((e) =>
        `if (m0 + ${i}u < p.M && k0 + ${e}u < p.K) { dx[(m0 + ${i}u) * p.K + k0 + ${e}u] = a${i}_${e}; }`
      )
    ).join("\n  ")
  }
}
`;
});

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
    return matmulQ4BackwardReference(dx.data, dOut.data, q.codes.data, q.scales.data, l);
  }
  if (M === 0) return;
  const { words, blocks } = layoutSizes(l);
  const total = words * Math.ceil(M / BW_RM);
  launch(bwSpec(l.kind), bwCode(l.kind), [dx, dOut, q.codes, q.scales], {
    M,
    N,
    K,
    words,
    wpb: l.blockSize / 8,
    blocks,
    total,
  }, gridFor(total, WG));
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
