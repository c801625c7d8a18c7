/**
 * LoRA helpers that the composed ops (matmul, add, mul) do not cover: the adapted linear as one
 * op, DoRA's row norm of the adapted weight, and (re-exported) LoRA's input dropout.
 *
 * loraLinear (PEFT `lora.Linear.forward` without DoRA): y = x·Wᵀ + bias + s · xa·Bᵀ
 *   x (M, K), W (N, K) f32 / f16 / 4-bit and frozen, bias (N), xa = drop(x)·Aᵀ (M, R) computed by
 *   the caller as an ordinary product (it carries dA and the dropout), B (N, R), s the scaling.
 *   Forward: the base product writes y, the rank-R product is accumulated into it (two dispatches,
 *   no [M, N] temporaries). Backward: dX = dY·W, dbias = Σ dY, dxa = s·dY·B, dB = s·dYᵀ·xa: no
 *   weight gradient and no copies of dY for the two branches an `add` would make. Unfused, LoRA
 *   kept three [M, N] tensors per linear alive until backward (base, update, sum) against one.
 *
 * doraNorm (PEFT `DoraLinearLayer.get_weight_norm`, Liu et al. 2024, eq. 5):
 *   out[o] = ||W[o, :] + s · (B A)[o, :]||₂, or its reciprocal with `inverse`
 *   W (N, K) weight `[out, in]`, A (R, K) lora_A, B (N, R) lora_B, s the LoRA scaling.
 *   One invocation per row o loops over K and R (f32 accumulation; the reference uses f64).
 *   Bindings: params, out (rw, N), w, a, b. Grid: N invocations, WG = 64, folded 2-D.
 * doraScale: `magnitude / doraNorm` with the norm treated as a constant (PEFT detaches it, DoRA
 *   paper section 4.3), so only the magnitude receives a gradient: d/dm = g / norm.
 * dropout (PEFT `lora_dropout`, `nn.Dropout`): re-exported from `elementwise.ts`, where the
 *   generic op lives (the model's embedding and residual dropout use it too).
 * Limits: f32; each operand must fit one storage binding.
 *
 * @module
 */
import { gridFor, type KernelSpec, launch, LINEAR_INDEX, MAIN_ARGS, wgslHeader } from "./_kernel.ts";
import { needsGrad, record } from "./autograd.ts";
import { binaryForward } from "./elementwise.ts";
import { matmulForward } from "./matmul.ts";
import { matmulQ4, matmulQ4Backward, QuantizedTensor } from "./quant.ts";
import { sumTo } from "./reduce.ts";
import {
  expectDtype,
  expectSameBackend,
  expectShape,
  shapeText,
  type Tensor,
  type WritableArray,
} from "./tensor.ts";

const WG_NORM = 64;

// ---- DoRA row norm ----

/** Dimensions of {@linkcode doraNormReference}: W `(N, K)`, A `(R, K)`, B `(N, R)`. */
export interface DoraNormDims {
  /** Output features: rows of W and B, and the length of the norm vector. */
  N: number;
  /** Input features: columns of W and A. */
  K: number;
  /** LoRA rank: rows of A, columns of B. */
  R: number;
}

/**
 * Reference: `out[o] = ||W[o] + s (B A)[o]||₂` (or `1 / ...` with `inverse`), accumulated in f64.
 */
export function doraNormReference(
  out: WritableArray,
  w: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  scaling: number,
  dims: DoraNormDims & { inverse?: boolean },
): void {
  const { N, K, R } = dims;
  for (let o = 0; o < N; o++) {
    let acc = 0;
    for (let k = 0; k < K; k++) {
      let d = 0;
      for (let r = 0; r < R; r++) d += b[o * R + r] * a[r * K + k];
      const v = w[o * K + k] + scaling * d;
      acc += v * v;
    }
    out[o] = dims.inverse ? 1 / Math.sqrt(acc) : Math.sqrt(acc);
  }
}

const NORM_SPEC: KernelSpec = {
  label: "lora.dora_norm",
  params: { N: "u32", K: "u32", R: "u32", s: "f32", inverse: "u32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "w", type: "f32", access: "read" },
    { name: "a", type: "f32", access: "read" },
    { name: "b", type: "f32", access: "read" },
  ],
  workgroupSize: [WG_NORM, 1, 1],
};
const NORM_CODE = `const WG = ${WG_NORM}u;\n${wgslHeader(NORM_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.N) { return; }
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) {
    var d = 0.0;
    for (var r = 0u; r < p.R; r++) { d += b[gid * p.R + r] * a[r * p.K + k]; }
    let v = w[gid * p.K + k] + p.s * d;
    acc += v * v;
  }
  if (p.inverse == 1u) { out[gid] = inverseSqrt(acc); } else { out[gid] = sqrt(acc); }
}
`;

/**
 * Launcher for {@linkcode doraNormReference}: `out` `[N]` from `weight` `[N, K]`, `a` `[R, K]`,
 * `b` `[N, R]` (not recorded: PEFT detaches the norm).
 * @throws {TypeError} on mismatched shapes, dtypes or backends
 */
export function doraNormForward(
  out: Tensor,
  weight: Tensor,
  a: Tensor,
  b: Tensor,
  scaling: number,
  opts: { inverse?: boolean } = {},
): void {
  const op = "lora.dora_norm";
  if (weight.rank !== 2 || a.rank !== 2) {
    throw new TypeError(
      `Cannot run ${op}: weight ${shapeText(weight.shape)} and lora_A ${shapeText(a.shape)} must be matrices`,
    );
  }
  const [N, K] = weight.shape, R = a.shape[0];
  expectShape(op, "lora_A", a, [R, K]);
  expectShape(op, "lora_B", b, [N, R]);
  expectShape(op, "out", out, [N]);
  for (const [n, t] of [["out", out], ["weight", weight], ["lora_A", a], ["lora_B", b]] as const) {
    expectDtype(op, n, t, "f32");
  }
  expectSameBackend(op, out, weight, a, b);
  if (out.backend.name === "cpu") {
    return doraNormReference(out.data, weight.data, a.data, b.data, Math.fround(scaling), {
      N,
      K,
      R,
      inverse: opts.inverse,
    });
  }
  if (N === 0) return;
  launch(
    NORM_SPEC,
    NORM_CODE,
    [out, weight, a, b],
    { N, K, R, s: scaling, inverse: opts.inverse ? 1 : 0 },
    gridFor(N, WG_NORM),
  );
}

/**
 * DoRA's per-row scale `magnitude / ||W + s B A||₂` (`[N]`), differentiable in `magnitude` only:
 * the norm is a constant for autograd, as in PEFT (`weight_norm.detach()`).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { doraScale } from "./lora.ts";
 * const cpu = await createBackend("cpu");
 * const w = cpu.fromArray([3, 0, 0, 1], [2, 2]);
 * const a = cpu.fromArray([0, 1], [1, 2]), b = cpu.fromArray([2, 0], [2, 1]);
 * // row 0: [3, 0] + 2 * [0, 2] = [3, 4] (norm 5); row 1: [0, 1] (norm 1)
 * const m = await doraScale(cpu.fromArray([10, 3], [2]), w, a, b, 2).toArray();
 * if (m[0] !== 2 || m[1] !== 3) throw new Error("doraScale");
 * ```
 * @throws {TypeError} on mismatched shapes, dtypes or backends
 */
export function doraScale(magnitude: Tensor, weight: Tensor, a: Tensor, b: Tensor, scaling: number): Tensor {
  const be = magnitude.backend;
  expectShape("lora.dora_scale", "magnitude", magnitude, [weight.shape[0]]);
  const inv = be.empty([weight.shape[0]]);
  try {
    doraNormForward(inv, weight, a, b, scaling, { inverse: true });
  } catch (e) {
    inv.dispose();
    throw e;
  }
  const out = be.empty(inv.shape);
  binaryForward("mul", out, magnitude, inv);
  if (!needsGrad(magnitude)) {
    inv.dispose();
    return out;
  }
  return record(out, "dora_scale", [magnitude], (g) => {
    const gm = g.backend.empty(g.shape);
    binaryForward("mul", gm, g, inv);
    return [gm];
  }, [inv]);
}

// ---- the adapted linear ----

/** Options of {@linkcode loraLinear}. */
export interface LoraLinearOptions {
  /** `drop(x)·Aᵀ`, `[M, R]`, computed by the caller (with LoRA dropout); or give `lora_A`. */
  xa?: Tensor;
  /**
   * `lora_A` `[R, K]` instead of `xa` (no dropout): the op computes `x·Aᵀ` itself and its backward
   * gives dA and adds `dxa·A` into dX in place, with no separate node or gradient sum for x.
   */
  lora_A?: Tensor;
  /** `lora_B`, `[N, R]`. */
  lora_B: Tensor;
  /** LoRA's `s` (`lora_alpha / r`, or `/ sqrt(r)` with rsLoRA). */
  scaling: number;
  /** The base layer's bias `[N]`. */
  bias?: Tensor | null;
}

/**
 * Reference of {@linkcode loraLinear} (f64 accumulation): `y = x·Wᵀ + bias + s · xa·Bᵀ` with the
 * weight given as f32 `[N, K]` values.
 */
export function loraLinearReference(
  out: WritableArray,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  opts: {
    xa: ArrayLike<number>;
    lora_B: ArrayLike<number>;
    scaling: number;
    bias?: ArrayLike<number> | null;
  },
  dims: { M: number; N: number; K: number; R: number },
): void {
  const { M, N, K, R } = dims;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let base = opts.bias ? opts.bias[n] : 0, up = 0;
      for (let k = 0; k < K; k++) base += x[m * K + k] * w[n * K + k];
      for (let r = 0; r < R; r++) up += opts.xa[m * R + r] * opts.lora_B[n * R + r];
      out[m * N + n] = base + opts.scaling * up;
    }
  }
}

/**
 * LoRA's adapted linear as one differentiable op: `y = x·Wᵀ + bias + s · xa·Bᵀ` for a frozen base
 * weight (f32, f16 or 4-bit), differentiable in `x`, `bias`, `xa` and `lora_B` (see the module
 * header). `x` is `[M, K]`.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { loraLinear } from "./lora.ts";
 * const cpu = await createBackend("cpu");
 * const x = cpu.fromArray([1, 2], [1, 2]), w = cpu.fromArray([1, 0, 0, 1], [2, 2]);
 * const xa = cpu.fromArray([3], [1, 1]), b = cpu.fromArray([1, -1], [2, 1]);
 * const y = await loraLinear(x, w, { xa, lora_B: b, scaling: 2 }).toArray();
 * if (y[0] !== 7 || y[1] !== -4) throw new Error("loraLinear"); // [1, 2] + 2 * 3 * [1, -1]
 * ```
 * @throws {TypeError} on mismatched shapes, dtypes or backends, or a weight that wants a gradient
 */
export function loraLinear(x: Tensor, weight: Tensor | QuantizedTensor, opts: LoraLinearOptions): Tensor {
  const op = "lora.linear";
  const { lora_B, scaling } = opts, A = opts.lora_A ?? null, bias = opts.bias ?? null;
  const [N, K] = weight.shape, R = lora_B.shape[1];
  if (x.rank !== 2 || x.shape[1] !== K) {
    throw new TypeError(`Cannot run ${op}: x has shape ${shapeText(x.shape)}, expected [M, ${K}]`);
  }
  if ((opts.xa === undefined) === (A === null)) {
    throw new TypeError(`Cannot run ${op}: give exactly one of xa and lora_A`);
  }
  const M = x.shape[0];
  if (A) expectShape(op, "lora_A", A, [R, K]);
  else expectShape(op, "xa", opts.xa!, [M, R]);
  expectShape(op, "lora_B", lora_B, [N, R]);
  if (bias) expectShape(op, "bias", bias, [N]);
  if (!(weight instanceof QuantizedTensor) && (weight.requiresGrad || weight.node)) {
    throw new TypeError(
      `Cannot run ${op}: the base weight ${weight.name || shapeText(weight.shape)} wants a gradient`,
    );
  }
  const y = x.backend.empty([M, N]);
  let xa = opts.xa ?? null;
  try {
    if (A) {
      xa = x.backend.empty([M, R]);
      matmulForward(xa, x, A, { transB: true });
    }
    if (weight instanceof QuantizedTensor) matmulQ4(y, x, weight, { bias });
    else matmulForward(y, x, weight, { transB: true, bias });
    matmulForward(y, xa!, lora_B, { transB: true, alpha: scaling, accumulate: true });
  } catch (e) {
    y.dispose();
    if (A) xa?.dispose();
    throw e;
  }
  const xaIn = A ? null : xa!;
  if (!needsGrad(x, bias, A ?? xaIn, lora_B)) {
    if (A) xa!.dispose();
    return y;
  }
  const wants = (t: Tensor | null) => !!t && (t.requiresGrad || t.node !== null);
  // dA reads x in the backward: an x off the graph is freed by the model once the layer is done,
  // so a view saved here keeps its storage until then.
  const saved: Tensor[] = A ? [xa!] : [];
  const xv = A && wants(A) && !wants(x) ? x.reshape(x.shape) : x;
  if (xv !== x) saved.push(xv);
  const inputs = A ? [x, bias, A, lora_B] : [x, bias, xaIn, lora_B];
  return record(y, "lora_linear", inputs, (g) => {
    const be = g.backend;
    let dx: Tensor | null = null,
      dxa: Tensor | null = null,
      dB: Tensor | null = null,
      dA: Tensor | null = null;
    if (wants(x)) {
      dx = be.empty([M, K]);
      if (weight instanceof QuantizedTensor) matmulQ4Backward(dx, g, weight);
      else matmulForward(dx, g, weight);
    }
    const needXa = A ? wants(A) || wants(x) : wants(xaIn);
    if (needXa) {
      dxa = be.empty([M, R]);
      matmulForward(dxa, g, lora_B, { alpha: scaling });
    }
    if (wants(lora_B)) {
      dB = be.empty([N, R]);
      matmulForward(dB, g, xa!, { transA: true, alpha: scaling });
    }
    if (!A) return [dx, wants(bias) ? sumTo(g, [N]) : null, dxa, dB];
    if (wants(A)) {
      dA = be.empty([R, K]);
      matmulForward(dA, dxa!, xv, { transA: true });
    }
    if (dx) matmulForward(dx, dxa!, A, { accumulate: true }); // dX += dxa·A
    dxa?.dispose();
    return [dx, wants(bias) ? sumTo(g, [N]) : null, dA, dB];
  }, saved);
}

// ---- dropout: the generic op lives in elementwise.ts (also used by the model's dropout sites) ----

export { dropout, dropoutForward, dropoutHash, dropoutReference, dropoutThreshold } from "./elementwise.ts";
