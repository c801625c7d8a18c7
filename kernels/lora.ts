/**
 * LoRA helpers that the composed ops (matmul, add, mul) do not cover: DoRA's row norm of the
 * adapted weight, and (re-exported) LoRA's input dropout. The LoRA update itself is two
 * matmuls (`training/peft.ts`).
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
import { expectDtype, expectSameBackend, expectShape, shapeText, type Tensor } from "./tensor.ts";

type Out = { [i: number]: number; length: number };

const WG_NORM = 64;

// ---- DoRA row norm ----

/** Dimensions of {@linkcode doraNormReference}: W `(N, K)`, A `(R, K)`, B `(N, R)`. */
export interface DoraNormDims {
  N: number;
  K: number;
  R: number;
}

/**
 * Reference: `out[o] = ||W[o] + s (B A)[o]||₂` (or `1 / ...` with `inverse`), accumulated in f64.
 */
export function doraNormReference(
  out: Out,
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

// ---- dropout: the generic op lives in elementwise.ts (also used by the model's dropout sites) ----

export { dropout, dropoutForward, dropoutHash, dropoutReference, dropoutThreshold } from "./elementwise.ts";
