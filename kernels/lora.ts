/**
 * LoRA helpers that the composed ops (matmul, add, mul) do not cover: DoRA's row norm of the
 * adapted weight and LoRA's input dropout. The LoRA update itself is two matmuls (`training/peft.ts`).
 *
 * doraNorm (PEFT `DoraLinearLayer.get_weight_norm`, Liu et al. 2024, eq. 5):
 *   out[o] = ||W[o, :] + s · (B A)[o, :]||₂, or its reciprocal with `inverse`
 *   W (N, K) weight `[out, in]`, A (R, K) lora_A, B (N, R) lora_B, s the LoRA scaling.
 *   One invocation per row o loops over K and R (f32 accumulation; the reference uses f64).
 *   Bindings: params, out (rw, N), w, a, b. Grid: N invocations, WG = 64, folded 2-D.
 * doraScale: `magnitude / doraNorm` with the norm treated as a constant (PEFT detaches it, DoRA
 *   paper section 4.3), so only the magnitude receives a gradient: d/dm = g / norm.
 * dropout (PEFT `lora_dropout`, `nn.Dropout`): out[i] = keep(i) ? x[i] / (1 - p) : 0, where
 *   keep(i) = pcg_hash(i · 747796405 + seed · 2891336453 + 1) >= floor(p · 2³²) (u32 arithmetic),
 *   so the mask is a pure function of (seed, i): backward recomputes it instead of storing it.
 *   Bindings: params, out (rw), x. Grid: one invocation per element, WG = 256, folded 2-D.
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
const WG_DROP = 256;

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

// ---- dropout ----

/** The keep threshold of {@linkcode dropoutReference}: `floor(p · 2³²)`, capped at `2³² - 1`. */
export function dropoutThreshold(p: number): number {
  return Math.min(Math.floor(p * 4294967296), 4294967295);
}

/** pcg_hash of `i · 747796405 + seed · 2891336453 + 1` (u32), the dropout mask's random bits. */
export function dropoutHash(seed: number, i: number): number {
  const state = (Math.imul(i, 747796405) + Math.imul(seed, 2891336453) + 1) >>> 0;
  const word = Math.imul(((state >>> (((state >>> 28) + 4) >>> 0)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** Reference: `out[i] = keep(i) ? x[i] / (1 - p) : 0` (see the module header for `keep`). */
export function dropoutReference(out: Out, x: ArrayLike<number>, p: number, seed: number): void {
  const thr = dropoutThreshold(p), scale = Math.fround(1 / (1 - p));
  for (let i = 0; i < out.length; i++) out[i] = dropoutHash(seed, i) >= thr ? x[i] * scale : 0;
}

const DROP_SPEC: KernelSpec = {
  label: "lora.dropout",
  params: { n: "u32", seed: "u32", thr: "u32", scale: "f32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: "f32", access: "read" },
  ],
  workgroupSize: [WG_DROP, 1, 1],
};
const DROP_CODE = `const WG = ${WG_DROP}u;\n${wgslHeader(DROP_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let state = gid * 747796405u + p.seed * 2891336453u + 1u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  let h = (word >> 22u) ^ word;
  if (h >= p.thr) { out[gid] = x[gid] * p.scale; } else { out[gid] = 0.0; }
}
`;

/** Launcher for {@linkcode dropoutReference}. @throws {TypeError} on mismatched sizes or dtypes */
export function dropoutForward(out: Tensor, x: Tensor, p: number, seed: number): void {
  const op = "lora.dropout";
  expectDtype(op, "x", x, "f32");
  expectDtype(op, "out", out, "f32");
  expectSameBackend(op, out, x);
  if (out.size !== x.size) {
    throw new TypeError(
      `Cannot run ${op}: out ${shapeText(out.shape)} and x ${shapeText(x.shape)} differ in size`,
    );
  }
  if (out.backend.name === "cpu") return dropoutReference(out.data, x.data, p, seed >>> 0);
  if (out.size === 0) return;
  launch(DROP_SPEC, DROP_CODE, [out, x], {
    n: out.size,
    seed: seed >>> 0,
    thr: dropoutThreshold(p),
    scale: 1 / (1 - p),
  }, gridFor(out.size, WG_DROP));
}

/**
 * Inverted dropout with a seeded, position-hashed mask (differentiable: the backward applies the
 * same mask). `p = 0` returns a view of `x`.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { dropout } from "./lora.ts";
 * const cpu = await createBackend("cpu");
 * const y = await dropout(cpu.full([1000], 1), 0.25, 7).toArray();
 * const kept = y.filter((v) => v !== 0);
 * if (Math.abs(kept.length - 750) > 60 || kept.some((v) => Math.abs(v - 4 / 3) > 1e-6)) throw new Error("dropout");
 * ```
 * @throws {RangeError} when `p` is not in [0, 1)
 */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  if (!(p >= 0 && p < 1)) throw new RangeError(`Cannot run lora.dropout: p must be in [0, 1): ${p}`);
  if (p === 0) return x.reshape(x.shape);
  const out = x.backend.empty(x.shape);
  dropoutForward(out, x, p, seed);
  if (!needsGrad(x)) return out;
  return record(out, "dropout", [x], (g) => {
    const gx = g.backend.empty(g.shape);
    dropoutForward(gx, g, p, seed);
    return [gx];
  });
}
