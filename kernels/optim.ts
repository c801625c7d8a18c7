/**
 * Optimizer math on the device: the global gradient norm, the clip coefficient, and in-place AdamW
 * and SGD updates, with no readback per step (the norm is read only when someone logs it).
 *
 * Global gradient norm (deterministic, no float atomics):
 *   pass 1, per gradient tensor g_i (n_i elements): G_i = min(64, ceil(n_i / 4096)) workgroups of
 *     256 invocations; each invocation sums g^2 over a grid-stride loop, the workgroup reduces in
 *     shared memory and writes partial[offset_i + wg];
 *   pass 2, one workgroup: normSq = sum(partial) (strided loads, then a tree reduction).
 *   clip:  coef = min(1, max_norm / (sqrt(normSq) + 1e-6))  (torch.nn.utils.clip_grad_norm_)
 *
 * AdamW (torch.optim.AdamW, `_single_tensor_adam` with decoupled weight decay, f32, same order):
 *   t += 1;  g = grad * scale                    (scale: optional device buffer, e.g. the clip coef)
 *   p = p * (1 - lr * wd)
 *   m = m + (1 - beta1) * (g - m)                (exp_avg.lerp_(grad, 1 - beta1))
 *   v = v * beta2 + ((1 - beta2) * g) * g        (exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2))
 *   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
 *   p = p + (-lr / (1 - beta1^t)) * (m / denom)  (param.addcdiv_(exp_avg, denom, value=-step_size))
 * The per-step scalars (1 - lr*wd, lr / (1 - beta1^t), sqrt(1 - beta2^t)) are computed on the host
 * in f64 and passed through the uniform params, as torch passes Python floats.
 *
 * SGD (torch.optim.SGD, nesterov off): g = grad * scale + wd * p;
 *   momentum > 0: buf = (first step) ? g : buf * momentum + (1 - dampening) * g;  g = buf;
 *   p = p - lr * g.
 *
 * Bindings: params, then (rw) param, m, v | buf, (read) grad, [scale]. Grid: one invocation per
 * element, WG = 256, folded 2-D past 65535 workgroups. One dispatch per parameter tensor.
 * Limits: f32 tensors only; each tensor's binding must fit the device's maxStorageBufferBindingSize.
 *
 * @module
 */
import { gridFor, type KernelSpec, launch, LINEAR_INDEX, MAIN_ARGS, memo, wgslHeader } from "./_kernel.ts";
import type { Backend } from "./backend.ts";
import {
  expectDtype,
  expectSameBackend,
  expectShape,
  shapeText,
  type Tensor,
  type WritableArray,
} from "./tensor.ts";

const WG = 256;
/** Most workgroups one gradient tensor gets in the partial-sum pass. */
const NORM_GROUPS_MAX = 64;
/** Elements per invocation below which a tensor gets fewer workgroups. */
const NORM_PER_INVOCATION = 16;
/** torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
export const CLIP_EPS = 1e-6;

// ---- global gradient norm ----

const PARTIAL_SPEC: KernelSpec = {
  label: "optim.sumsq_partial",
  params: { n: "u32", offset: "u32" },
  bindings: [
    { name: "partial", type: "f32", access: "read_write" },
    { name: "g", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

const REDUCE_WG = `var<workgroup> red: array<f32, WG>;
fn reduce_wg(l: u32, v: f32) -> f32 {
  red[l] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (l < s) { red[l] = red[l] + red[l + s]; }
    workgroupBarrier();
  }
  return red[0];
}
`;

const PARTIAL_CODE = `const WG = ${WG}u;\n${REDUCE_WG}${wgslHeader(PARTIAL_SPEC)}fn main(${MAIN_ARGS}) {
  var acc = 0.0;
  let stride = nwg.x * WG;
  for (var i = wid.x * WG + lid.x; i < p.n; i = i + stride) {
    let v = g[i];
    acc = acc + v * v;
  }
  let total = reduce_wg(lid.x, acc);
  if (lid.x == 0u) { partial[p.offset + wid.x] = total; }
}
`;

const FINAL_SPEC: KernelSpec = {
  label: "optim.sumsq_final",
  params: { count: "u32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "partial", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

const FINAL_CODE = `const WG = ${WG}u;\n${REDUCE_WG}${wgslHeader(FINAL_SPEC)}fn main(${MAIN_ARGS}) {
  var acc = 0.0;
  for (var i = lid.x; i < p.count; i = i + WG) { acc = acc + partial[i]; }
  let total = reduce_wg(lid.x, acc);
  if (lid.x == 0u) { out[0] = total; }
}
`;

/** Reference: the sum of squares of every element of every gradient (f64 accumulation). */
export function gradNormSquaredReference(grads: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return s;
}

function normGroups(n: number): number {
  return Math.min(NORM_GROUPS_MAX, Math.ceil(n / (WG * NORM_PER_INVOCATION)));
}

/**
 * Launcher: `out[0] = sum over all grads of g^2` (the squared global L2 norm), on the device.
 * Deterministic: fixed partial sums per tensor, then one final reduction; nothing is read back.
 * @param out a `[1]` f32 tensor
 * @param grads the gradient tensors (f32, any shapes, same backend as `out`)
 * @throws {TypeError} on a wrong shape, dtype or backend (before anything is dispatched)
 */
export function gradNormSquared(out: Tensor, grads: readonly Tensor[]): void {
  const label = "optim.grad_norm";
  expectShape(label, "out", out, [1]);
  expectDtype(label, "out", out, "f32");
  expectSameBackend(label, out, ...grads);
  grads.forEach((g, i) => expectDtype(label, `grads[${i}]`, g, "f32"));
  if (out.backend.name === "cpu") {
    out.data[0] = gradNormSquaredReference(grads.map((g) => g.data));
    return;
  }
  const groups = grads.map((g) => normGroups(g.size));
  const count = groups.reduce((a, b) => a + b, 0);
  const partial = out.backend.empty([Math.max(count, 1)]);
  let offset = 0;
  grads.forEach((g, i) => {
    if (groups[i] === 0) return;
    launch(PARTIAL_SPEC, PARTIAL_CODE, [partial, g], { n: g.size, offset }, [groups[i], 1, 1]);
    offset += groups[i];
  });
  launch(FINAL_SPEC, FINAL_CODE, [out, partial], { count }, [1, 1, 1]);
  partial.dispose(); // the pool only hands it out again to later dispatches of this batch
}

// ---- clip coefficient ----

const CLIP_SPEC: KernelSpec = {
  label: "optim.clip_coef",
  params: { max_norm: "f32", eps: "f32" },
  bindings: [
    { name: "coef", type: "f32", access: "read_write" },
    { name: "normsq", type: "f32", access: "read" },
  ],
  workgroupSize: [1, 1, 1],
};

const CLIP_CODE = `${wgslHeader(CLIP_SPEC)}fn main() {
  let norm = sqrt(normsq[0]);
  coef[0] = min(1.0, p.max_norm / (norm + p.eps));
}
`;

/**
 * Reference: `min(1, max_norm / (sqrt(normSq) + 1e-6))` in f32, as `clip_grad_norm_` computes
 * `clip_coef_clamped`.
 */
export function clipCoefficientReference(normSquared: number, maxNorm: number): number {
  const f = Math.fround;
  const norm = f(Math.sqrt(f(normSquared)));
  return Math.min(1, f(f(maxNorm) / f(norm + f(CLIP_EPS))));
}

/**
 * Launcher: `coef[0] = min(1, max_norm / (sqrt(normSq[0]) + 1e-6))` on the device.
 * @param coef a `[1]` f32 tensor (multiply gradients by it: pass it as `scale` to the steps)
 * @param normSquared a `[1]` f32 tensor from {@linkcode gradNormSquared}
 * @param maxNorm the largest allowed global gradient norm (> 0)
 * @throws {RangeError} when maxNorm is not a positive finite number
 */
export function clipCoefficient(coef: Tensor, normSquared: Tensor, maxNorm: number): void {
  const label = "optim.clip_coef";
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new RangeError(`Cannot run ${label}: max_norm must be a positive number: ${maxNorm}`);
  }
  expectShape(label, "coef", coef, [1]);
  expectShape(label, "normSquared", normSquared, [1]);
  expectDtype(label, "coef", coef, "f32");
  expectDtype(label, "normSquared", normSquared, "f32");
  expectSameBackend(label, coef, normSquared);
  if (coef.backend.name === "cpu") {
    coef.data[0] = clipCoefficientReference(normSquared.data[0], maxNorm);
    return;
  }
  launch(CLIP_SPEC, CLIP_CODE, [coef, normSquared], { max_norm: maxNorm, eps: CLIP_EPS }, [1, 1, 1]);
}

/** Device tensors of one clipping: the squared global norm and the coefficient, both `[1]`. */
export interface GradClip {
  /** `[1]`: sum of squares of every gradient (read it, then `Math.sqrt`, only when logging). */
  normSquared: Tensor;
  /** `[1]`: `min(1, max_norm / (norm + 1e-6))`; pass as `scale` to {@linkcode adamwStep}. */
  coef: Tensor;
}

/**
 * The global gradient norm and the clip coefficient of `grads`, as new `[1]` tensors on the device
 * (the caller disposes them). Gradients are not modified: the steps multiply by `coef` instead.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { gradClip } from "./optim.ts";
 * const cpu = await createBackend("cpu");
 * const { normSquared, coef } = gradClip([cpu.fromArray([3, 4], [2])], 1);
 * if ((await normSquared.toArray())[0] !== 25) throw new Error("norm");
 * if (Math.abs((await coef.toArray())[0] - 0.2) > 1e-6) throw new Error("coef");
 * ```
 */
export function gradClip(grads: readonly Tensor[], maxNorm: number, backend?: Backend): GradClip {
  const be = backend ?? grads[0]?.backend;
  if (!be) throw new TypeError("Cannot run optim.grad_clip: no gradients and no backend given");
  const normSquared = be.empty([1]);
  const coef = be.empty([1]);
  gradNormSquared(normSquared, grads);
  clipCoefficient(coef, normSquared, maxNorm);
  return { normSquared, coef };
}

// ---- AdamW ----

/** Hyperparameters of one AdamW step (Hugging Face / torch names where they exist). */
export interface AdamWStepOptions {
  /** Learning rate of this step (schedules change it per step). */
  lr: number;
  /** The step number after incrementing (1 on the first update): drives the bias corrections. */
  step: number;
  /** `[beta1, beta2]`; default `[0.9, 0.999]`. */
  betas?: readonly [number, number];
  /** Added after the square root of the bias-corrected v; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay; default 0.01 (torch's AdamW default). Use 0 for norms and biases. */
  weight_decay?: number;
  /** Optional `[1]` device tensor every gradient is multiplied by (the clip coefficient). */
  scale?: Tensor | null;
}

/** The per-step scalars of AdamW as the kernel receives them (computed in f64, used as f32). */
export interface AdamWScalars {
  /** `1 - lr * weight_decay`. */
  decay: number;
  /** `1 - beta1`. */
  oneMinusBeta1: number;
  /** Decay rate of the second moment (`betas[1]`), as given. */
  beta2: number;
  /** `1 - beta2`. */
  oneMinusBeta2: number;
  /** `sqrt(1 - beta2^t)`. */
  bc2Sqrt: number;
  /** Added to the denominator, `sqrt(v) / bc2Sqrt + eps`, as given (default 1e-8). */
  eps: number;
  /** `-lr / (1 - beta1^t)`. */
  negStepSize: number;
}

/** Host-side scalars of one AdamW step, in f64 (torch computes them with Python floats). */
export function adamwScalars(opts: AdamWStepOptions): AdamWScalars {
  const [beta1, beta2] = opts.betas ?? [0.9, 0.999];
  const wd = opts.weight_decay ?? 0.01, eps = opts.eps ?? 1e-8, t = opts.step, lr = opts.lr;
  const bad = [
    !(Number.isInteger(t) && t >= 1) && `step ${t} (must be an integer >= 1)`,
    !(lr >= 0 && Number.isFinite(lr)) && `lr ${lr}`,
    !(beta1 >= 0 && beta1 < 1) && `beta1 ${beta1}`,
    !(beta2 >= 0 && beta2 < 1) && `beta2 ${beta2}`,
    !(eps >= 0) && `eps ${eps}`,
    !(wd >= 0 && Number.isFinite(wd)) && `weight_decay ${wd}`,
  ].filter(Boolean);
  if (bad.length) throw new RangeError(`Cannot run optim.adamw: out of range: ${bad.join(", ")}`);
  return {
    decay: 1 - lr * wd,
    oneMinusBeta1: 1 - beta1,
    beta2,
    oneMinusBeta2: 1 - beta2,
    bc2Sqrt: Math.sqrt(1 - beta2 ** t),
    eps,
    negStepSize: -lr / (1 - beta1 ** t),
  };
}

/**
 * Reference: one AdamW update of one tensor in place, in torch's order of operations. The scalars
 * are used as given (the cpu launcher rounds them to f32 first, as the kernel sees them).
 */
export function adamwReference(
  param: WritableArray,
  m: WritableArray,
  v: WritableArray,
  grad: ArrayLike<number>,
  s: AdamWScalars,
  scale = 1,
): void {
  for (let i = 0; i < param.length; i++) {
    const g = grad[i] * scale;
    const p = param[i] * s.decay;
    const mi = m[i] + s.oneMinusBeta1 * (g - m[i]);
    const vi = v[i] * s.beta2 + s.oneMinusBeta2 * g * g;
    const denom = Math.sqrt(vi) / s.bc2Sqrt + s.eps;
    m[i] = mi;
    v[i] = vi;
    param[i] = p + s.negStepSize * (mi / denom);
  }
}

const ADAMW_PARAMS = {
  n: "u32",
  decay: "f32",
  omb1: "f32",
  beta2: "f32",
  omb2: "f32",
  bc2sqrt: "f32",
  eps: "f32",
  neg_step: "f32",
} as const;

const adamwSpec = memo((scaled: 0 | 1): KernelSpec => ({
  label: scaled ? "optim.adamw_scaled" : "optim.adamw",
  params: ADAMW_PARAMS,
  bindings: [
    { name: "param", type: "f32", access: "read_write" },
    { name: "m", type: "f32", access: "read_write" },
    { name: "v", type: "f32", access: "read_write" },
    { name: "grad", type: "f32", access: "read" },
    ...(scaled ? [{ name: "scale", type: "f32", access: "read" } as const] : []),
  ],
  workgroupSize: [WG, 1, 1],
}));

const adamwCode = memo((scaled: 0 | 1) =>
  `const WG = ${WG}u;\n${wgslHeader(adamwSpec(scaled))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let g = grad[gid]${scaled ? " * scale[0]" : ""};
  let w = param[gid] * p.decay;
  let m0 = m[gid];
  let mi = m0 + p.omb1 * (g - m0);
  let vi = v[gid] * p.beta2 + (p.omb2 * g) * g;
  let denom = sqrt(vi) / p.bc2sqrt + p.eps;
  m[gid] = mi;
  v[gid] = vi;
  param[gid] = w + p.neg_step * (mi / denom);
}
`
);

function checkLists(label: string, lists: Record<string, readonly (Tensor | null)[]>): void {
  const names = Object.keys(lists);
  const n = lists[names[0]].length;
  for (const k of names) {
    if (lists[k].length !== n) {
      throw new TypeError(
        `Cannot run ${label}: ${names[0]} has ${n} tensors but ${k} has ${lists[k].length}`,
      );
    }
  }
  for (let i = 0; i < n; i++) {
    const p = lists[names[0]][i]!;
    for (const k of names) {
      const t = lists[k][i];
      if (!t) throw new TypeError(`Cannot run ${label}: ${k}[${i}] is missing`);
      expectDtype(label, `${k}[${i}]`, t, "f32");
      expectSameBackend(label, p, t);
      if (t.size !== p.size) {
        throw new TypeError(
          `Cannot run ${label}: ${k}[${i}] has shape ${shapeText(t.shape)}, expected ${shapeText(p.shape)}` +
            (p.name ? ` (parameter ${p.name})` : ""),
        );
      }
    }
  }
}

function checkScale(label: string, scale: Tensor | null | undefined, like: Tensor | undefined): void {
  if (!scale) return;
  expectShape(label, "scale", scale, [1]);
  expectDtype(label, "scale", scale, "f32");
  if (like) expectSameBackend(label, like, scale);
}

/**
 * Launcher: one in-place AdamW update of every `params[i]` from `grads[i]`, with the moment
 * tensors `m[i]`, `v[i]` (same shapes). One dispatch per tensor; nothing is read back.
 * @throws {TypeError} on mismatched lists, shapes, dtypes or backends (before anything is dispatched)
 * @throws {RangeError} on out-of-range hyperparameters
 */
export function adamwStep(
  params: readonly Tensor[],
  grads: readonly Tensor[],
  m: readonly Tensor[],
  v: readonly Tensor[],
  opts: AdamWStepOptions,
): void {
  const label = "optim.adamw";
  checkLists(label, { params, grads, m, v });
  checkScale(label, opts.scale, params[0]);
  const s = adamwScalars(opts);
  const f32 = Object.fromEntries(
    Object.entries(s).map(([k, x]) => [k, Math.fround(x)]),
  ) as unknown as AdamWScalars;
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (p.size === 0) continue;
    if (p.backend.name === "cpu") {
      adamwReference(p.data, m[i].data, v[i].data, grads[i].data, f32, opts.scale ? opts.scale.data[0] : 1);
      continue;
    }
    const scaled = opts.scale ? 1 : 0;
    launch(
      adamwSpec(scaled),
      adamwCode(scaled),
      opts.scale ? [p, m[i], v[i], grads[i], opts.scale] : [p, m[i], v[i], grads[i]],
      {
        n: p.size,
        decay: s.decay,
        omb1: s.oneMinusBeta1,
        beta2: s.beta2,
        omb2: s.oneMinusBeta2,
        bc2sqrt: s.bc2Sqrt,
        eps: s.eps,
        neg_step: s.negStepSize,
      },
      gridFor(p.size, WG),
    );
  }
}

// ---- SGD ----

/** Hyperparameters of one SGD step (torch.optim.SGD names; nesterov is not offered). */
export interface SgdStepOptions {
  /** Learning rate: the step is `-lr` times the (momentum-smoothed) gradient. */
  lr: number;
  /** Default 0 (no momentum buffers needed). */
  momentum?: number;
  /** Default 0. */
  dampening?: number;
  /** L2 penalty added to the gradient (coupled, as in torch.optim.SGD); default 0. */
  weight_decay?: number;
  /** The step number (1 on the first update): the momentum buffer is initialised to g on step 1. */
  step: number;
  /** Optional `[1]` device tensor every gradient is multiplied by. */
  scale?: Tensor | null;
}

/** Reference: one SGD update of one tensor in place (torch.optim.SGD, nesterov off). */
export function sgdReference(
  param: WritableArray,
  buf: WritableArray | null,
  grad: ArrayLike<number>,
  opts: { lr: number; momentum: number; dampening: number; weight_decay: number; first: boolean },
  scale = 1,
): void {
  for (let i = 0; i < param.length; i++) {
    let g = grad[i] * scale + opts.weight_decay * param[i];
    if (buf) {
      buf[i] = opts.first ? g : buf[i] * opts.momentum + (1 - opts.dampening) * g;
      g = buf[i];
    }
    param[i] = param[i] - opts.lr * g;
  }
}

const SGD_PARAMS = { n: "u32", lr: "f32", wd: "f32", momentum: "f32", omd: "f32", first: "u32" } as const;

type SgdKey = "" | "m" | "s" | "ms";
const sgdSpec = memo((key: SgdKey): KernelSpec => ({
  label: `optim.sgd${key ? "_" + key : ""}`,
  params: SGD_PARAMS,
  bindings: [
    { name: "param", type: "f32", access: "read_write" },
    ...(key.includes("m") ? [{ name: "buf", type: "f32", access: "read_write" } as const] : []),
    { name: "grad", type: "f32", access: "read" },
    ...(key.includes("s") ? [{ name: "scale", type: "f32", access: "read" } as const] : []),
  ],
  workgroupSize: [WG, 1, 1],
}));

const sgdCode = memo((key: SgdKey) =>
  `const WG = ${WG}u;\n${wgslHeader(sgdSpec(key))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let w = param[gid];
  var g = grad[gid]${key.includes("s") ? " * scale[0]" : ""} + p.wd * w;
  ${
    key.includes("m")
      ? `if (p.first == 1u) { buf[gid] = g; } else { buf[gid] = buf[gid] * p.momentum + p.omd * g; }
  g = buf[gid];`
      : ""
  }
  param[gid] = w - p.lr * g;
}
`
);

/**
 * Launcher: one in-place SGD update of every `params[i]` from `grads[i]`; `bufs[i]` are the
 * momentum buffers (needed when `momentum > 0`, else pass null).
 * @throws {TypeError} on mismatched lists, shapes, dtypes or backends, or missing buffers
 * @throws {RangeError} on out-of-range hyperparameters
 */
export function sgdStep(
  params: readonly Tensor[],
  grads: readonly Tensor[],
  bufs: readonly Tensor[] | null,
  opts: SgdStepOptions,
): void {
  const label = "optim.sgd";
  const momentum = opts.momentum ?? 0, dampening = opts.dampening ?? 0, wd = opts.weight_decay ?? 0;
  const bad = [
    !(opts.lr >= 0 && Number.isFinite(opts.lr)) && `lr ${opts.lr}`,
    !(momentum >= 0 && Number.isFinite(momentum)) && `momentum ${momentum}`,
    !(dampening >= 0 && dampening <= 1) && `dampening ${dampening}`,
    !(wd >= 0) && `weight_decay ${wd}`,
    !(Number.isInteger(opts.step) && opts.step >= 1) && `step ${opts.step}`,
  ].filter(Boolean);
  if (bad.length) throw new RangeError(`Cannot run ${label}: out of range: ${bad.join(", ")}`);
  if (momentum > 0 && !bufs) throw new TypeError(`Cannot run ${label}: momentum ${momentum} needs buffers`);
  checkLists(label, momentum > 0 ? { params, grads, bufs: bufs! } : { params, grads });
  checkScale(label, opts.scale, params[0]);
  const f = Math.fround;
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (p.size === 0) continue;
    const buf = momentum > 0 ? bufs![i] : null;
    if (p.backend.name === "cpu") {
      sgdReference(p.data, buf ? buf.data : null, grads[i].data, {
        lr: f(opts.lr),
        momentum: f(momentum),
        dampening,
        weight_decay: f(wd),
        first: opts.step === 1,
      }, opts.scale ? opts.scale.data[0] : 1);
      continue;
    }
    const key = `${buf ? "m" : ""}${opts.scale ? "s" : ""}` as SgdKey;
    const bindings = [p, ...(buf ? [buf] : []), grads[i], ...(opts.scale ? [opts.scale] : [])];
    launch(sgdSpec(key), sgdCode(key), bindings, {
      n: p.size,
      lr: opts.lr,
      wd,
      momentum,
      omd: 1 - dampening,
      first: opts.step === 1 ? 1 : 0,
    }, gridFor(p.size, WG));
  }
}

// ---- AdamW owner of the moment state ----

/** Defaults of an {@linkcode AdamW} optimizer (torch names and defaults). */
export interface AdamWOptions {
  /** Default learning rate (each `step` may override it); default 1e-3. */
  lr?: number;
  /** Default `[0.9, 0.999]`. */
  betas?: readonly [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Default 0.01. */
  weight_decay?: number;
  /** Clip the global gradient norm to this (Hugging Face `max_grad_norm`); 0 or absent: no clipping. */
  max_grad_norm?: number;
}

/** Options of one {@linkcode AdamW.step}. */
export interface AdamWCallOptions {
  /** This step's learning rate (from the schedule); default the constructor's. */
  lr?: number;
  /** Weight decay for these parameters (0 for norms and biases); default the constructor's. */
  weight_decay?: number;
  /** Clip to this global norm over these parameters' gradients; default the constructor's. */
  max_grad_norm?: number;
  /** Compute the global gradient norm even without clipping (read it with `gradNorm()`). */
  computeGradNorm?: boolean;
  /** A `[1]` device tensor to multiply gradients by (e.g. a coefficient from {@linkcode gradClip}). */
  scale?: Tensor | null;
}

/** One parameter's optimizer state on the host (for checkpoints). */
export interface AdamWStateEntry {
  /** The parameter's `Tensor.name` when saved (may be empty); used only in error messages on load. */
  name: string;
  /** The parameter's shape; {@linkcode AdamW.loadState} checks it against the target parameter. */
  shape: number[];
  /** Updates applied so far (torch's `state["step"]`). */
  step: number;
  /** First moment (`exp_avg`), flat in the parameter's row-major order. */
  m: Float32Array;
  /** Second moment (`exp_avg_sq`), flat in the parameter's row-major order. */
  v: Float32Array;
}

/** Host copy of an {@linkcode AdamW}'s state, parameters in the order they were first stepped. */
export interface AdamWState {
  /** One entry per stepped parameter; {@linkcode AdamW.loadState} pairs them with its `params` by index. */
  entries: AdamWStateEntry[];
}

interface Slot {
  m: Tensor;
  v: Tensor;
  step: number;
}

/**
 * AdamW with its moment tensors on the parameters' backend (created lazily as zeros), torch's
 * per-parameter step counts, optional global-norm clipping computed on the device, and no
 * readback inside `step`.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { AdamW } from "./optim.ts";
 * const cpu = await createBackend("cpu");
 * const w = cpu.fromArray([1, -1], [2]);
 * w.grad = cpu.fromArray([0.5, -0.5], [2]);
 * const opt = new AdamW({ lr: 0.1, weight_decay: 0 });
 * opt.step([w]);
 * const got = await w.toArray(); // first step moves each weight by lr against the gradient sign
 * if (Math.abs(got[0] - 0.9) > 1e-6 || Math.abs(got[1] + 0.9) > 1e-6) throw new Error("adamw");
 * ```
 */
export class AdamW {
  /** The defaults given to the constructor. */
  readonly defaults: Readonly<Required<AdamWOptions>>;
  #slots = new Map<Tensor, Slot>();
  #normSquared: Tensor | null = null;

  /**
   * Creates an optimizer with no state; moments are allocated on each parameter's first step.
   *
   * @param opts defaults (torch's AdamW defaults when absent)
   */
  constructor(opts: AdamWOptions = {}) {
    this.defaults = Object.freeze({
      lr: opts.lr ?? 1e-3,
      betas: opts.betas ?? [0.9, 0.999] as const,
      eps: opts.eps ?? 1e-8,
      weight_decay: opts.weight_decay ?? 0.01,
      max_grad_norm: opts.max_grad_norm ?? 0,
    });
  }

  /**
   * One update of every parameter in `params` that has a `.grad` (others are skipped, as torch
   * does). Records the kernels; reads nothing back.
   * @throws {TypeError} when a gradient's shape or backend differs from its parameter's
   */
  step(params: readonly Tensor[], opts: AdamWCallOptions = {}): void {
    const maxNorm = opts.max_grad_norm ?? this.defaults.max_grad_norm;
    let scale = opts.scale ?? null;
    if (maxNorm > 0 && scale) {
      throw new TypeError("Cannot run AdamW.step: give either max_grad_norm or scale, not both");
    }
    const live = params.filter((p) => p.grad);
    if (!live.length) return;
    const grads = live.map((p) => p.grad!);
    for (const p of live) {
      expectDtype("AdamW.step", `${p.name || "parameter"}.grad`, p.grad!, "f32");
      expectShape("AdamW.step", `${p.name || "parameter"}.grad`, p.grad!, p.shape);
      expectSameBackend("AdamW.step", p, p.grad!);
    }
    let coef: Tensor | null = null;
    if (maxNorm > 0 || opts.computeGradNorm) {
      this.#normSquared?.dispose();
      const normSquared = live[0].backend.empty([1]);
      gradNormSquared(normSquared, grads);
      this.#normSquared = normSquared;
      if (maxNorm > 0) {
        coef = scale = live[0].backend.empty([1]);
        clipCoefficient(coef, normSquared, maxNorm);
      }
    }
    for (const p of live) {
      let slot = this.#slots.get(p);
      if (!slot) {
        slot = { m: p.backend.zeros(p.shape), v: p.backend.zeros(p.shape), step: 0 };
        this.#slots.set(p, slot);
      }
      slot.step++;
      adamwStep([p], [p.grad!], [slot.m], [slot.v], {
        lr: opts.lr ?? this.defaults.lr,
        step: slot.step,
        betas: this.defaults.betas,
        eps: this.defaults.eps,
        weight_decay: opts.weight_decay ?? this.defaults.weight_decay,
        scale,
      });
    }
    coef?.dispose();
  }

  /** The global gradient norm of the last step that computed it (one readback), or null. */
  async gradNorm(): Promise<number | null> {
    if (!this.#normSquared) return null;
    return Math.sqrt((await this.#normSquared.toArray())[0]);
  }

  /** The `[1]` device tensor holding the last squared global gradient norm (owned by the optimizer). */
  get gradNormSquared(): Tensor | null {
    return this.#normSquared;
  }

  /** A host copy of every parameter's moments and step count (reads the device). */
  async state(): Promise<AdamWState> {
    const entries: AdamWStateEntry[] = [];
    for (const [p, s] of this.#slots) {
      entries.push({
        name: p.name,
        shape: [...p.shape],
        step: s.step,
        m: (await s.m.toArray()) as Float32Array,
        v: (await s.v.toArray()) as Float32Array,
      });
    }
    return { entries };
  }

  /**
   * Restore state saved by {@linkcode state}: `params[i]` gets `state.entries[i]`.
   * @throws {TypeError} when the counts or shapes differ
   */
  loadState(params: readonly Tensor[], state: AdamWState): void {
    if (params.length !== state.entries.length) {
      throw new TypeError(
        `Cannot load AdamW state: ${state.entries.length} entries for ${params.length} parameters`,
      );
    }
    params.forEach((p, i) => {
      const e = state.entries[i];
      if (e.shape.join() !== p.shape.join() || e.m.length !== p.size || e.v.length !== p.size) {
        throw new TypeError(
          `Cannot load AdamW state: entry ${i} (${e.name || "unnamed"}) has shape ${shapeText(e.shape)}, ` +
            `parameter ${p.name || i} has ${shapeText(p.shape)}`,
        );
      }
    });
    this.dispose();
    params.forEach((p, i) => {
      const e = state.entries[i];
      this.#slots.set(p, {
        m: p.backend.fromArray(e.m, p.shape),
        v: p.backend.fromArray(e.v, p.shape),
        step: e.step,
      });
    });
  }

  /**
   * Clear the gradients of `params`: dispose and set `.grad = null` (torch's `set_to_none=True`),
   * or with `{ setToNone: false }` fill them with zeros in place.
   */
  zeroGrad(params: readonly Tensor[], opts: { setToNone?: boolean } = {}): void {
    for (const p of params) {
      const g = p.grad;
      if (!g) continue;
      if (opts.setToNone ?? true) {
        g.dispose();
        p.grad = null;
      } else if (g.backend.name === "cpu") g.data.fill(0);
      else g.backend.device.clear(g.buffer, 0, Math.ceil(Math.max(g.bytes, 4) / 4) * 4);
    }
  }

  /** Release every moment tensor and the norm (the optimizer starts fresh afterwards). */
  dispose(): void {
    for (const s of this.#slots.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.#slots.clear();
    this.#normSquared?.dispose();
    this.#normSquared = null;
  }
}
