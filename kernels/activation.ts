/**
 * Activations: `gelu` (erf form, or the tanh form that GPT-2 calls `gelu_new`), `silu`, `relu`,
 * and the gated `swiglu(gate, up) = silu(gate) * up`, also fused over one `[..., 2I]` input whose
 * first half is the gate and second half the up projection (Phi-3's `gate_up_proj`, split with
 * `chunk(2, dim=-1)` in transformers' `Phi3MLP`).
 *
 * Math (elementwise):
 *   gelu_erf(x)  = 0.5 x (1 + erf(x / sqrt 2))
 *   gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *   silu(x)      = x sigmoid(x),  silu'(x) = s (1 + x (1 - s)),  s = sigmoid(x)
 *   relu(x)      = max(x, 0),     relu'(x) = [x > 0]
 *   swiglu(g, u) = silu(g) u;  dg = dy u silu'(g),  du = dy silu(g)
 * WGSL has no `erf`: `erf_f32` is N. Juffa's single-precision minimax erff (max abs error 5.6e-8
 * measured against an f64 series / continued fraction), and `tanh` is computed from `exp(-2|u|)`
 * so that it saturates instead of overflowing.
 *
 * Shapes: any; the fused form takes `(..., 2I)` and gives `(..., I)`.
 * Bindings: params, outputs (rw), inputs. Grid: one invocation per output element, WG = 256,
 * folded 2-D. Limits: tensors over one storage binding run in aligned windows of elements (rows
 * for the fused form).
 *
 * @module
 */
import {
  gridFor,
  type KernelSpec,
  launchOn,
  LINEAR_INDEX,
  MAIN_ARGS,
  memo,
  range,
  rowWindows,
  wgslHeader,
} from "./_kernel.ts";
import { needsGrad, record } from "./autograd.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

/** Elementwise activations with a hand-written derivative. */
export type Activation = "gelu_erf" | "gelu_tanh" | "silu" | "relu";

const WG = 256;
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

// ---- reference (f64) ----

/** erf in f64 (series below 2.5, Lentz continued fraction for erfc above): |error| < 1e-15. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = x, sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x * x / n;
      const d = term / (2 * n + 1);
      sum += d;
      if (Math.abs(d) < 1e-17 * Math.abs(sum)) break;
    }
    return 2 / Math.sqrt(Math.PI) * sum;
  }
  // erfc(z) = exp(-z^2) / sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
  let f = ax, c = ax, d = 0;
  for (let k = 1; k < 500; k++) {
    d = 1 / (ax + (k / 2) * d);
    c = ax + (k / 2) / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return x < 0 ? erfc - 1 : 1 - erfc;
}

function act(kind: Activation, x: number): number {
  switch (kind) {
    case "gelu_erf":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "gelu_tanh":
      return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
    case "silu":
      return x / (1 + Math.exp(-x));
    case "relu":
      return x > 0 ? x : 0;
  }
}

function actGrad(kind: Activation, x: number): number {
  switch (kind) {
    case "gelu_erf":
      return 0.5 * (1 + erf(x / Math.SQRT2)) + x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
    case "gelu_tanh": {
      const t = Math.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
    }
    case "silu": {
      const s = 1 / (1 + Math.exp(-x));
      return s * (1 + x * (1 - s));
    }
    case "relu":
      return x > 0 ? 1 : 0;
  }
}

/** Reference: `out[i] = f(x[i])`. */
export function activationReference(kind: Activation, out: WritableArray, x: ArrayLike<number>): void {
  for (let i = 0; i < x.length; i++) out[i] = act(kind, x[i]);
}

/** Reference backward: `dx[i] = dy[i] f'(x[i])`. */
export function activationBackwardReference(
  kind: Activation,
  dx: WritableArray,
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
): void {
  for (let i = 0; i < x.length; i++) dx[i] = dy[i] * actGrad(kind, x[i]);
}

/**
 * Reference: `out = silu(gate) * up`. With `fused`, `gate` holds rows of `2 * inner` values (gate
 * then up) and `up` is ignored.
 */
export function swigluReference(
  out: WritableArray,
  gate: ArrayLike<number>,
  up: ArrayLike<number> | null,
  inner: number,
): void {
  for (let i = 0; i < out.length; i++) {
    const [gi, ui] = up ? [i, i] : fusedIndex(i, inner);
    out[i] = act("silu", gate[gi]) * (up ?? gate)[ui];
  }
}

/** Reference backward of {@linkcode swigluReference}: `dgate` (and `dup`, or the up half of the fused `dgate`). */
export function swigluBackwardReference(
  dgate: WritableArray,
  dup: WritableArray | null,
  dy: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number> | null,
  inner: number,
): void {
  for (let i = 0; i < dy.length; i++) {
    const [gi, ui] = up ? [i, i] : fusedIndex(i, inner);
    const g = gate[gi], u = (up ?? gate)[ui];
    dgate[gi] = dy[i] * u * actGrad("silu", g);
    (dup ?? dgate)[ui] = dy[i] * act("silu", g);
  }
}

/** Index of gate and up of output element `i` in a fused `(rows, 2 inner)` input. */
function fusedIndex(i: number, inner: number): [number, number] {
  const r = Math.floor(i / inner), j = i % inner;
  return [r * 2 * inner + j, r * 2 * inner + inner + j];
}

// ---- WGSL ----

/** WGSL `fn erf_f32(a: f32) -> f32`: N. Juffa's single-precision erff (shared with matmul's epilogue). */
export const WGSL_ERF = `fn erf_f32(a: f32) -> f32 {
  // N. Juffa's erff (max error about 1 ulp); see the module header.
  let t = abs(a);
  let s = a * a;
  if (t > 0.927734375) {
    var r = fma(-1.72853470e-5, t, 3.83197126e-4);
    let u = fma(-3.88396438e-3, t, 2.42546219e-2);
    r = fma(r, s, u);
    r = fma(r, t, -1.06777877e-1);
    r = fma(r, t, -6.34846687e-1);
    r = fma(r, t, -1.28717512e-1);
    r = fma(r, t, -t);
    return select(1.0 - exp(r), exp(r) - 1.0, a < 0.0);
  }
  var r = -5.96761703e-4;
  r = fma(r, s, 4.99119423e-3);
  r = fma(r, s, -2.67681349e-2);
  r = fma(r, s, 1.12819925e-1);
  r = fma(r, s, -3.76125336e-1);
  r = fma(r, s, 1.28379166e-1);
  return fma(r, a, a);
}
`;

const WGSL_FUNCS = `${WGSL_ERF}fn tanh_f32(u: f32) -> f32 {
  let e = exp(-2.0 * abs(u));
  let t = (1.0 - e) / (1.0 + e);
  return select(t, -t, u < 0.0);
}
fn sigmoid_f32(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn act_f(x: f32) -> f32 {
  switch (KIND) {
    case 0u: { return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752)); }
    case 1u: { return 0.5 * x * (1.0 + tanh_f32(${SQRT_2_OVER_PI} * (x + ${GELU_C} * x * x * x))); }
    case 2u: { return x * sigmoid_f32(x); }
    default: { return max(x, 0.0); }
  }
}
fn act_df(x: f32) -> f32 {
  switch (KIND) {
    case 0u: {
      return 0.5 * (1.0 + erf_f32(x * 0.70710678118654752)) + x * exp(-0.5 * x * x) * 0.3989422804014327;
    }
    case 1u: {
      let t = tanh_f32(${SQRT_2_OVER_PI} * (x + ${GELU_C} * x * x * x));
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * ${SQRT_2_OVER_PI} * (1.0 + ${3 * GELU_C} * x * x);
    }
    case 2u: { let s = sigmoid_f32(x); return s * (1.0 + x * (1.0 - s)); }
    default: { return select(0.0, 1.0, x > 0.0); }
  }
}
`;

const KIND_ID: Record<Activation, number> = { gelu_erf: 0, gelu_tanh: 1, silu: 2, relu: 3 };

/** Kernel variants: unary forward/backward, swiglu (separate or fused) forward/backward. */
type Variant = "fwd" | "bwd" | "swiglu" | "swiglu_bwd" | "fused" | "fused_bwd";

const f32rw = (name: string) => ({ name, type: "f32", access: "read_write" as const });
const f32r = (name: string) => ({ name, type: "f32", access: "read" as const });

const SPECS: Record<Variant, KernelSpec> = {
  fwd: {
    label: "activation.forward",
    params: { n: "u32", inner: "u32" },
    bindings: [f32rw("out"), f32r("x")],
    workgroupSize: [WG, 1, 1],
  },
  bwd: {
    label: "activation.backward",
    params: { n: "u32", inner: "u32" },
    bindings: [f32rw("dx"), f32r("dy"), f32r("x")],
    workgroupSize: [WG, 1, 1],
  },
  swiglu: {
    label: "activation.swiglu",
    params: { n: "u32", inner: "u32" },
    bindings: [f32rw("out"), f32r("g"), f32r("u")],
    workgroupSize: [WG, 1, 1],
  },
  swiglu_bwd: {
    label: "activation.swiglu_backward",
    params: { n: "u32", inner: "u32" },
    bindings: [f32rw("dg"), f32rw("du"), f32r("dy"), f32r("g"), f32r("u")],
    workgroupSize: [WG, 1, 1],
  },
  fused: {
    label: "activation.swiglu_fused",
    params: { n: "u32", inner: "u32" },
    bindings: [f32rw("out"), f32r("gu")],
    workgroupSize: [WG, 1, 1],
  },
  fused_bwd: {
    label: "activation.swiglu_fused_backward",
    params: { n: "u32", inner: "u32" },
    bindings: [f32rw("dgu"), f32r("dy"), f32r("gu")],
    workgroupSize: [WG, 1, 1],
  },
};

const BODY: Record<Variant, string> = {
  fwd: "out[gid] = act_f(x[gid]);",
  bwd: "dx[gid] = dy[gid] * act_df(x[gid]);",
  swiglu: "out[gid] = act_f(g[gid]) * u[gid];",
  swiglu_bwd:
    "let gv = g[gid];\n  dg[gid] = dy[gid] * u[gid] * act_df(gv);\n  du[gid] = dy[gid] * act_f(gv);",
  fused:
    "let gi = (gid / p.inner) * 2u * p.inner + gid % p.inner;\n  out[gid] = act_f(gu[gi]) * gu[gi + p.inner];",
  fused_bwd: "let gi = (gid / p.inner) * 2u * p.inner + gid % p.inner;\n  let gv = gu[gi];\n" +
    "  dgu[gi] = dy[gid] * gu[gi + p.inner] * act_df(gv);\n  dgu[gi + p.inner] = dy[gid] * act_f(gv);",
};

const code = memo((key: `${Variant}:${Activation}`) => {
  const [variant, kind] = key.split(":") as [Variant, Activation];
  return `const WG = ${WG}u;\nconst KIND = ${KIND_ID[kind]}u;\n${WGSL_FUNCS}${
    wgslHeader(SPECS[variant])
  }fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  ${BODY[variant]}
}
`;
});

/**
 * Dispatch a variant over `n` elements (rows of `inner` outputs for the fused forms), in windows
 * when a binding would exceed the device limit. `wide` marks bindings that hold 2 values per output.
 */
function dispatch(
  kind: Activation,
  variant: Variant,
  ts: Tensor[],
  wide: boolean[],
  n: number,
  inner: number,
): void {
  const spec = SPECS[variant];
  const gpu = ts[0].backend.device;
  const fused = variant.startsWith("fused");
  const rowBytes = (fused ? inner : 1) * 4;
  // Every window starts on an aligned output row; the wide (2x) bindings get half the limit.
  const wins = rowWindows(
    gpu,
    spec.label,
    fused ? n / inner : n,
    rowBytes,
    wide.some((w) => w) ? gpu.maxBinding / 2 : gpu.maxBinding,
  );
  const per = fused ? inner : 1;
  for (const [r0, rows] of wins) {
    const count = rows * per;
    const bind = wins.length === 1
      ? ts
      : ts.map((t, i) => range(t, r0 * per * (wide[i] ? 2 : 1), count * (wide[i] ? 2 : 1)));
    launchOn(
      gpu,
      spec,
      code(`${variant}:${kind}`),
      bind,
      { n: count, inner: Math.max(inner, 1) },
      gridFor(count, WG),
    );
  }
}

function check(op: string, named: [string, Tensor][], shapes: [Tensor, readonly number[]][]): void {
  expectSameBackend(op, ...named.map(([, t]) => t));
  for (const [w, t] of named) expectDtype(op, w, t, "f32");
  for (const [t, s] of shapes) {
    if (t.shape.join() !== s.join()) {
      const name = named.find(([, u]) => u === t)?.[0] ?? "tensor";
      throw new TypeError(
        `Cannot run ${op}: ${name} has shape ${shapeText(t.shape)}, expected ${shapeText(s)}`,
      );
    }
  }
}

// ---- launchers ----

/**
 * Launcher: `out = f(x)` elementwise.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function activationForward(kind: Activation, out: Tensor, x: Tensor): void {
  check(`activation.${kind}`, [["out", out], ["x", x]], [[out, x.shape]]);
  if (out.backend.name === "cpu") return activationReference(kind, out.data, x.data);
  dispatch(kind, "fwd", [out, x], [false, false], x.size, 1);
}

/**
 * Launcher: `dx = dy * f'(x)` elementwise.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function activationBackward(kind: Activation, dx: Tensor, dy: Tensor, x: Tensor): void {
  check(`activation.${kind}_backward`, [["dx", dx], ["dy", dy], ["x", x]], [[dx, x.shape], [dy, x.shape]]);
  if (dx.backend.name === "cpu") return activationBackwardReference(kind, dx.data, dy.data, x.data);
  dispatch(kind, "bwd", [dx, dy, x], [false, false, false], x.size, 1);
}

/**
 * Launcher: `out = silu(gate) * up` (`up` null: `gate` is the fused `(..., 2I)` input).
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function swigluForward(out: Tensor, gate: Tensor, up: Tensor | null): void {
  if (up) {
    check("activation.swiglu", [["out", out], ["gate", gate], ["up", up]], [[up, gate.shape], [
      out,
      gate.shape,
    ]]);
    if (out.backend.name === "cpu") return swigluReference(out.data, gate.data, up.data, 1);
    return dispatch("silu", "swiglu", [out, gate, up], [false, false, false], gate.size, 1);
  }
  const inner = fusedInner("activation.swiglu_fused", gate);
  check("activation.swiglu_fused", [["out", out], ["gateUp", gate]], [[out, [
    ...gate.shape.slice(0, -1),
    inner,
  ]]]);
  if (out.backend.name === "cpu") return swigluReference(out.data, gate.data, null, inner);
  dispatch("silu", "fused", [out, gate], [false, true], out.size, inner);
}

/**
 * Launcher: gradients of {@linkcode swigluForward}: `dgate`, `dup` (`up`/`dup` null: fused, and
 * `dgate` receives both halves).
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function swigluBackward(
  dgate: Tensor,
  dup: Tensor | null,
  dy: Tensor,
  gate: Tensor,
  up: Tensor | null,
): void {
  if (up && dup) {
    const op = "activation.swiglu_backward";
    check(op, [["dgate", dgate], ["dup", dup], ["dy", dy], ["gate", gate], ["up", up]], [
      [dgate, gate.shape],
      [dup, gate.shape],
      [dy, gate.shape],
      [up, gate.shape],
    ]);
    if (dy.backend.name === "cpu") {
      return swigluBackwardReference(dgate.data, dup.data, dy.data, gate.data, up.data, 1);
    }
    return dispatch(
      "silu",
      "swiglu_bwd",
      [dgate, dup, dy, gate, up],
      [false, false, false, false, false],
      gate.size,
      1,
    );
  }
  const op = "activation.swiglu_fused_backward";
  const inner = fusedInner(op, gate);
  check(op, [["dgateUp", dgate], ["dy", dy], ["gateUp", gate]], [[dgate, gate.shape], [dy, [
    ...gate.shape.slice(0, -1),
    inner,
  ]]]);
  if (dy.backend.name === "cpu") {
    return swigluBackwardReference(dgate.data, null, dy.data, gate.data, null, inner);
  }
  dispatch("silu", "fused_bwd", [dgate, dy, gate], [true, false, true], dy.size, inner);
}

function fusedInner(op: string, gateUp: Tensor): number {
  const last = gateUp.shape[gateUp.rank - 1];
  if (gateUp.rank < 1 || last % 2 !== 0 || last === 0) {
    throw new TypeError(
      `Cannot run ${op}: gateUp has shape ${
        shapeText(gateUp.shape)
      }, last dim must be even (2 * intermediate)`,
    );
  }
  return last / 2;
}

// ---- differentiable ops ----

function unary(kind: Activation, x: Tensor): Tensor {
  const out = x.backend.empty(x.shape);
  activationForward(kind, out, x);
  if (!needsGrad(x)) return out;
  return record(out, kind, [x], (g) => {
    const dx = x.backend.empty(x.shape);
    activationBackward(kind, dx, g, x);
    return [dx];
  });
}

/** Options for {@linkcode gelu}. */
export interface GeluOptions {
  /** `"none"` (default, torch's exact erf form) or `"tanh"` (GPT-2's `gelu_new`, `gelu_pytorch_tanh`). */
  approximate?: "none" | "tanh";
}

/**
 * GELU (differentiable). Matches `torch.nn.functional.gelu(x, approximate=...)`.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { gelu } from "./activation.ts";
 * const cpu = await createBackend("cpu");
 * const y = await gelu(cpu.fromArray([1], [1])).toArray();
 * if (Math.abs(y[0] - 0.8413447) > 1e-6) throw new Error("gelu");
 * ```
 */
export function gelu(x: Tensor, opts: GeluOptions = {}): Tensor {
  const a = opts.approximate ?? "none";
  if (a !== "none" && a !== "tanh") {
    throw new RangeError(`Cannot run gelu: approximate must be "none" or "tanh": got ${JSON.stringify(a)}`);
  }
  return unary(a === "tanh" ? "gelu_tanh" : "gelu_erf", x);
}

/** SiLU / swish, `x * sigmoid(x)` (differentiable). */
export function silu(x: Tensor): Tensor {
  return unary("silu", x);
}

/** ReLU, `max(x, 0)` (differentiable; the gradient at 0 is 0, as in torch). */
export function relu(x: Tensor): Tensor {
  return unary("relu", x);
}

/**
 * `silu(gate) * up`, fused (differentiable in both): the Llama/Mistral/Qwen2 MLP gate.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { swiglu } from "./activation.ts";
 * const cpu = await createBackend("cpu");
 * const y = await swiglu(cpu.fromArray([0, 2], [2]), cpu.fromArray([5, 3], [2])).toArray();
 * if (y[0] !== 0 || Math.abs(y[1] - 3 * 2 / (1 + Math.exp(-2))) > 1e-6) throw new Error("swiglu");
 * ```
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const out = gate.backend.empty(gate.shape);
  swigluForward(out, gate, up);
  if (!needsGrad(gate, up)) return out;
  return record(out, "swiglu", [gate, up], (g) => {
    const dg = gate.backend.empty(gate.shape), du = gate.backend.empty(gate.shape);
    swigluBackward(dg, du, g, gate, up);
    return [dg, du];
  });
}

/**
 * `silu(gate) * up` from one `(..., 2I)` tensor whose first half of the last dim is the gate and
 * second half the up projection (Phi-3's `gate_up_proj`); returns `(..., I)` (differentiable).
 */
export function swigluFused(gateUp: Tensor): Tensor {
  const inner = fusedInner("activation.swiglu_fused", gateUp);
  const out = gateUp.backend.empty([...gateUp.shape.slice(0, -1), inner]);
  swigluForward(out, gateUp, null);
  if (!needsGrad(gateUp)) return out;
  return record(out, "swiglu_fused", [gateUp], (g) => {
    const dgu = gateUp.backend.empty(gateUp.shape);
    swigluBackward(dgu, null, g, gateUp, null);
    return [dgu];
  });
}
