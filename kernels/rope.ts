/**
 * Rotary position embeddings (RoPE, Su et al. 2021) on q or k laid out `(B, T, heads, D)`.
 *
 * Math, per row (b, t, head) with position p (`position_offset + t`, or `position_ids[b, t]`) and
 * the first `R = 2 * inv_freq.length` dims rotated (the rest pass through unchanged):
 *   angle_i = f32(p) * inv_freq[i]               (f32 product, as Hugging Face computes `freqs`)
 *   c_i = f32(cos(angle_i)) * attention_scaling,  s_i = f32(sin(angle_i)) * attention_scaling
 *   pair (a, b) = (i, i + R/2)   "rotate_half" (HF Llama, Qwen2, Phi3, Mistral, NeoX)
 *               = (2i, 2i + 1)   "interleaved" (GPT-J, Meta's original Llama)
 *   out[a] = x[a] c_i - x[b] s_i,   out[b] = x[b] c_i + x[a] s_i
 * Backward: the rotation by -angle (same c, negated s): dx[a] = dy[a] c + dy[b] s, dx[b] = dy[b] c - dy[a] s.
 * Reference: transformers `modeling_llama.py` (`LlamaRotaryEmbedding.forward`, `apply_rotary_pos_emb`)
 * and `modeling_rope_utils.py` (`_compute_default_rope_parameters`).
 *
 * cos/sin in WGSL: the builtins are only specified to 2^-11 absolute on [-π, π] and are unspecified
 * for the large angles positions produce, so the kernel reduces the f32 angle by π/2 with a
 * four-part Cody-Waite split (exact products for |angle| < 2^17 · π/2 ≈ 205,000) and evaluates the
 * Cephes minimax polynomials: about 1 ulp of the correctly rounded f32 cos/sin that PyTorch gives.
 *
 * Bindings: params, out (rw; absent in place), x (rw in place), inv_freq [R/2], pos [B, T] (i32; a
 * dummy binding when positions come from the offset).
 * Grid: one invocation per rotated pair plus one per pass-through element, WG = 64, folded 2-D.
 * Limits: R even and <= D; inv_freq is uploaded once per array (treated as immutable).
 *
 * @module
 */
import { gridFor, type KernelSpec, launch, LINEAR_INDEX, MAIN_ARGS, memo, wgslHeader } from "./_kernel.ts";
import { needsGrad, record } from "./autograd.ts";
import type { Backend } from "./backend.ts";
import {
  expectDtype,
  expectSameBackend,
  expectShape,
  shapeText,
  type Tensor,
  type WritableArray,
} from "./tensor.ts";

/** How dims pair up for rotation. */
export type RopeStyle = "rotate_half" | "interleaved";

/** Options of {@linkcode rope}, {@linkcode ropeForward} and {@linkcode ropeBackward}. */
export interface RopeOptions {
  /** Inverse frequencies `[rotary_dim / 2]` (f32); see {@linkcode ropeInvFreq}. */
  inv_freq: Float32Array;
  /** Position of row t is `position_offset + t` (KV-cache decoding). Default 0. */
  position_offset?: number;
  /** Explicit positions, i32 `[B, T]` (left-padded batches); overrides `position_offset`. */
  position_ids?: Tensor;
  /** Pairing convention. Default `"rotate_half"` (Hugging Face). */
  style?: RopeStyle;
  /** Multiplier applied to cos and sin (HF `attention_scaling` of yarn/longrope). Default 1. */
  attention_scaling?: number;
}

/** Positions given to {@linkcode ropeReference}: an offset or explicit per-(b, t) ids. */
export interface RopeReferenceOptions {
  /** Inverse frequencies `[R / 2]`; the first R = 2 × length dims of each head rotate, the rest pass through. */
  inv_freq: ArrayLike<number>;
  /** Position of row t is `position_offset + t`. Default 0. */
  position_offset?: number;
  /** Explicit positions `[B, T]`, flat; overrides `position_offset`. */
  position_ids?: ArrayLike<number> | null;
  /** Pairing convention. Default `"rotate_half"`. */
  style?: RopeStyle;
  /** Multiplier applied to cos and sin. Default 1. */
  attention_scaling?: number;
  /** Backward: rotate by -angle. */
  inverse?: boolean;
}

const WG = 64;
const OP = "rope";

/**
 * Default inverse frequencies, exactly as Hugging Face computes them in float32:
 * `1 / theta ** (arange(0, dim, 2, int64).float() / dim)`.
 *
 * @param dim the rotary dim (head_dim times partial_rotary_factor), even
 * @param theta the base (`rope_theta`, 10000 by default in HF)
 * @returns f32 `[dim / 2]`
 * @throws {RangeError} when dim is not a positive even integer
 *
 * @example
 * ```ts
 * import { ropeInvFreq } from "./rope.ts";
 * const f = ropeInvFreq(8, 10000);
 * if (f.length !== 4 || f[0] !== 1 || Math.abs(f[1] - 0.1) > 1e-7) throw new Error("inv_freq");
 * ```
 */
export function ropeInvFreq(dim: number, theta = 10000): Float32Array {
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2) {
    throw new RangeError(`Cannot compute rope inv_freq: dim must be a positive even integer: ${dim}`);
  }
  const out = new Float32Array(dim / 2);
  const base = Math.fround(theta);
  for (let i = 0; i < dim / 2; i++) {
    // torch: exponent = f32(2i) / f32(dim) in f32; pow in f32 (correctly rounded here); 1/x in f32.
    const e = Math.fround(Math.fround(2 * i) / Math.fround(dim));
    out[i] = Math.fround(1 / Math.fround(Math.pow(base, e)));
  }
  return out;
}

/** cos and sin of pair i at position `pos`, rounded as HF's float32 computation. */
function cosSin(pos: number, invFreq: number, scaling: number): [number, number] {
  const a = Math.fround(Math.fround(pos) * Math.fround(invFreq));
  const sc = Math.fround(scaling);
  return [Math.fround(Math.fround(Math.cos(a)) * sc), Math.fround(Math.fround(Math.sin(a)) * sc)];
}

/**
 * Reference: RoPE of `x` `(B, T, heads, D)` into `out` (may be the same array). The cos/sin
 * tables follow HF's f32 rounding; the rotation itself runs in the arrays' precision (f64 arrays
 * give f64 math, for finite-difference checks).
 */
export function ropeReference(
  out: WritableArray,
  x: ArrayLike<number>,
  shape: readonly [number, number, number, number],
  opts: RopeReferenceOptions,
): void {
  const [B, T, Hh, D] = shape;
  const half = opts.inv_freq.length, R = 2 * half;
  const inter = opts.style === "interleaved";
  const sign = opts.inverse ? -1 : 1;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = opts.position_ids ? opts.position_ids[b * T + t] : (opts.position_offset ?? 0) + t;
      const cs = Array.from(
        { length: half },
        (_, i) => cosSin(pos, opts.inv_freq[i], opts.attention_scaling ?? 1),
      );
      for (let h = 0; h < Hh; h++) {
        const row = ((b * T + t) * Hh + h) * D;
        for (let i = 0; i < half; i++) {
          const ia = row + (inter ? 2 * i : i), ib = row + (inter ? 2 * i + 1 : i + half);
          const [c, s0] = cs[i];
          const s = sign * s0;
          const xa = x[ia], xb = x[ib];
          out[ia] = xa * c - xb * s;
          out[ib] = xb * c + xa * s;
        }
        for (let d = R; d < D; d++) out[row + d] = x[row + d];
      }
    }
  }
}

/** Params of the kernel. */
const PARAMS = {
  n: "u32",
  T: "u32",
  heads: "u32",
  D: "u32",
  half: "u32",
  items: "u32",
  offset: "i32",
  use_ids: "u32",
  scaling: "f32",
  sign: "f32",
} as const;

type Variant = `${RopeStyle}|${"inplace" | "copy"}`;

const spec = (v: Variant): KernelSpec => {
  const inplace = v.endsWith("inplace");
  return {
    label: `rope.${v.replace("|", ".")}`,
    params: PARAMS,
    bindings: [
      ...(inplace ? [] : [{ name: "out", type: "f32", access: "read_write" } as const]),
      { name: "x", type: "f32", access: inplace ? "read_write" : "read" },
      { name: "inv_freq", type: "f32", access: "read" },
      { name: "pos", type: "i32", access: "read" },
    ],
    workgroupSize: [WG, 1, 1],
  };
};

/**
 * WGSL `sincos(a) -> vec2(cos a, sin a)` for f32 `a`, about 1 ulp: Cody-Waite reduction by π/2 with
 * a 4-part split (the first three parts have <= 7 significant bits, so `k * P` is exact for
 * |k| < 2^17) and Cephes `sinf`/`cosf` minimax polynomials on [-π/4, π/4].
 */
const WGSL_SINCOS = `
fn sincos(a: f32) -> vec2<f32> {
  let k = round(a * 0.636619772);
  var r = a - k * 1.5625;
  r = r - k * 0.00817871094;
  r = r - k * 0.000117301941;
  r = r - k * 3.13916473e-7;
  let z = r * r;
  let sn = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let cs = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  let q = i32(k) & 3;
  if (q == 0) { return vec2<f32>(cs, sn); }
  if (q == 1) { return vec2<f32>(-sn, cs); }
  if (q == 2) { return vec2<f32>(-cs, -sn); }
  return vec2<f32>(sn, -cs);
}
`;

const code = memo((v: Variant) => {
  const inter = v.startsWith("interleaved");
  const inplace = v.endsWith("inplace");
  const dst = inplace ? "x" : "out";
  return `const WG = ${WG}u;
${WGSL_SINCOS}
${wgslHeader(spec(v))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let rowi = gid / p.items;
  let u = gid % p.items;
  let row = rowi * p.D;
  if (u >= p.half) {
    // pass-through dims (partial rotary), out-of-place only
    let d = 2u * p.half + (u - p.half);
    ${inplace ? "" : "out[row + d] = x[row + d];"}
    return;
  }
  let bt = rowi / p.heads;
  let t = bt % p.T;
  var ps = p.offset + i32(t);
  if (p.use_ids == 1u) { ps = pos[bt]; }
  let a = f32(ps) * inv_freq[u];
  let r = sincos(a) * p.scaling;
  let c = r.x;
  let s = p.sign * r.y;
  let ia = row + ${inter ? "2u * u" : "u"};
  let ib = row + ${inter ? "2u * u + 1u" : "u + p.half"};
  let xa = x[ia];
  let xb = x[ib];
  ${dst}[ia] = xa * c - xb * s;
  ${dst}[ib] = xb * c + xa * s;
}
`;
});

const invFreqCache = new WeakMap<Float32Array, Map<Backend, Tensor>>();

function invFreqTensor(be: Backend, f: Float32Array): Tensor {
  let m = invFreqCache.get(f);
  if (!m) invFreqCache.set(f, m = new Map());
  let t = m.get(be);
  if (!t || t.disposed) m.set(be, t = be.fromArray(f, [f.length]));
  return t;
}

function validate(what: string, out: Tensor, x: Tensor, opts: RopeOptions): void {
  const label = `${OP}${what}`;
  expectSameBackend(label, out, x);
  expectDtype(label, "x", x, "f32");
  expectDtype(label, "out", out, "f32");
  if (x.rank !== 4) {
    throw new TypeError(`Cannot run ${label}: x must be (B, T, heads, D), got ${shapeText(x.shape)}`);
  }
  expectShape(label, "out", out, x.shape);
  const D = x.shape[3], half = opts.inv_freq?.length ?? 0;
  if (!(opts.inv_freq instanceof Float32Array) || half === 0 || 2 * half > D) {
    throw new RangeError(
      `Cannot run ${label}: inv_freq must be a non-empty Float32Array of length <= D/2: length ${half}, D ${D}`,
    );
  }
  if (opts.position_ids) {
    expectSameBackend(label, x, opts.position_ids);
    expectDtype(label, "position_ids", opts.position_ids, "i32");
    expectShape(label, "position_ids", opts.position_ids, [x.shape[0], x.shape[1]]);
  }
  const off = opts.position_offset ?? 0;
  if (!Number.isInteger(off) || Math.abs(off) >= 2 ** 31) {
    throw new RangeError(`Cannot run ${label}: position_offset must be an i32 integer: ${off}`);
  }
}

function run(out: Tensor, x: Tensor, opts: RopeOptions, inverse: boolean): void {
  const [B, T, Hh, D] = x.shape as [number, number, number, number];
  if (out.backend.name === "cpu") {
    return ropeReference(out.data, x.data, [B, T, Hh, D], {
      inv_freq: opts.inv_freq,
      position_offset: opts.position_offset,
      position_ids: opts.position_ids ? opts.position_ids.data : null,
      style: opts.style,
      attention_scaling: opts.attention_scaling,
      inverse,
    });
  }
  const inplace = out.storage === x.storage;
  const v: Variant = `${opts.style ?? "rotate_half"}|${inplace ? "inplace" : "copy"}`;
  const half = opts.inv_freq.length;
  const items = inplace ? half : half + (D - 2 * half);
  const rows = B * T * Hh;
  const inv = invFreqTensor(x.backend, opts.inv_freq);
  const pos = opts.position_ids ?? inv;
  const tensors = inplace ? [x, inv, pos] : [out, x, inv, pos];
  launch(spec(v), code(v), tensors, {
    n: rows * items,
    T,
    heads: Hh,
    D,
    half,
    items,
    offset: opts.position_offset ?? 0,
    use_ids: opts.position_ids ? 1 : 0,
    scaling: opts.attention_scaling ?? 1,
    sign: inverse ? -1 : 1,
  }, gridFor(rows * items, WG));
}

/**
 * Launcher: `out = rope(x)`; `out` may be `x` itself (or a view of it) for the in-place kernel.
 * @throws {TypeError} on shape, dtype or backend mismatches (before dispatch)
 * @throws {RangeError} on a bad inv_freq length or position_offset
 */
export function ropeForward(out: Tensor, x: Tensor, opts: RopeOptions): void {
  validate(".forward", out, x, opts);
  run(out, x, opts, false);
}

/**
 * Launcher: `dx = rope⁻¹(dy)` (rotation by -angle); `dx` may be `dy` (in place).
 * @throws {TypeError} on shape, dtype or backend mismatches (before dispatch)
 */
export function ropeBackward(dx: Tensor, dy: Tensor, opts: RopeOptions): void {
  validate(".backward", dx, dy, opts);
  run(dx, dy, opts, true);
}

/**
 * Rotary embedding of `x` `(B, T, heads, D)` (differentiable in x). `position_ids` must stay
 * alive until backward has run.
 *
 * @param x queries or keys, `(B, T, heads, D)`, f32
 * @param opts inverse frequencies, positions, style, scaling
 * @returns a new tensor of x's shape
 * @throws {TypeError} on shape/dtype/backend mismatches
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { rope, ropeInvFreq } from "./rope.ts";
 * const cpu = await createBackend("cpu");
 * // one head of dim 2 at position 1: rotate (1, 0) by 1 radian
 * const y = rope(cpu.fromArray([1, 0], [1, 1, 1, 2]), { inv_freq: ropeInvFreq(2), position_offset: 1 });
 * const [a, b] = await y.toArray();
 * if (Math.abs(a - Math.cos(1)) > 1e-6 || Math.abs(b - Math.sin(1)) > 1e-6) throw new Error("rope");
 * ```
 */
export function rope(x: Tensor, opts: RopeOptions): Tensor {
  const out = x.backend.empty(x.shape);
  ropeForward(out, x, opts);
  if (!needsGrad(x)) return out;
  return record(out, OP, [x], (g) => {
    const dx = g.backend.empty(g.shape);
    ropeBackward(dx, g, opts);
    return [dx];
  });
}
