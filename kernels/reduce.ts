/**
 * Reductions: `sum`, `mean`, `max` over one axis, and `sumTo` (sum a broadcast gradient back to an
 * input's shape).
 *
 * Math: out[o] = reduce_{r} x[o ⊕ r] where the reduced dims are those with out dim 1 and x dim > 1
 * (rank <= 4, right-aligned). One invocation per output element loops over the reduced index
 * space, accumulating in f32 (the reference accumulates in f64).
 * Bindings: params, out (rw), x. Grid: one invocation per output element, WG = 64, folded 2-D.
 *
 * @module
 */
import { gridFor, type KernelSpec, launch, LINEAR_INDEX, MAIN_ARGS, memo, wgslHeader } from "./_kernel.ts";
import { needsGrad, record } from "./autograd.ts";
import { binaryForward } from "./elementwise.ts";
import { expectDtype, numel, shapeText, type Tensor } from "./tensor.ts";

/** Reduction kinds. */
export type ReduceKind = "sum" | "mean" | "max";

const WG = 64;

function pad4(shape: readonly number[]): number[] {
  return [...new Array(4 - shape.length).fill(1), ...shape];
}

function contiguousStrides(s: readonly number[]): number[] {
  const st = new Array(s.length).fill(1);
  for (let i = s.length - 2; i >= 0; i--) st[i] = st[i + 1] * s[i + 1];
  return st;
}

/** Reference: reduce `x` (shape `xs`) to `os` (same rank after padding, reduced dims are 1). */
export function reduceReference(
  kind: ReduceKind,
  out: { [i: number]: number; length: number },
  x: ArrayLike<number>,
  xs: readonly number[],
  os: readonly number[],
): void {
  const X = pad4(xs), O = pad4(os), st = contiguousStrides(X);
  const R = X.map((d, i) => (O[i] === 1 ? d : 1));
  const nRed = numel(R);
  const ost = contiguousStrides(O);
  for (let o = 0; o < out.length; o++) {
    const oi = [0, 1, 2, 3].map((i) => Math.floor(o / ost[i]) % O[i]);
    let acc = kind === "max" ? -Infinity : 0;
    for (let r = 0; r < nRed; r++) {
      const r3 = r % R[3], r2 = Math.floor(r / R[3]) % R[2], r1 = Math.floor(r / (R[3] * R[2])) % R[1];
      const r0 = Math.floor(r / (R[3] * R[2] * R[1]));
      const v = x[(oi[0] + r0) * st[0] + (oi[1] + r1) * st[1] + (oi[2] + r2) * st[2] + (oi[3] + r3) * st[3]];
      acc = kind === "max" ? Math.max(acc, v) : acc + v;
    }
    out[o] = kind === "mean" ? acc / nRed : acc;
  }
}

const SPEC = (kind: ReduceKind): KernelSpec => ({
  label: `reduce.${kind}`,
  params: {
    n: "u32",
    nred: "u32",
    o1: "u32",
    o2: "u32",
    o3: "u32",
    r1: "u32",
    r2: "u32",
    r3: "u32",
    s0: "u32",
    s1: "u32",
    s2: "u32",
    s3: "u32",
  },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
});

const code = memo((kind: ReduceKind) =>
  `const WG = ${WG}u;\n${wgslHeader(SPEC(kind))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let o3 = gid % p.o3;
  let o2 = (gid / p.o3) % p.o2;
  let o1 = (gid / (p.o3 * p.o2)) % p.o1;
  let o0 = gid / (p.o3 * p.o2 * p.o1);
  var acc = ${kind === "max" ? "-3.4028234663852886e38" : "0.0"};
  for (var r = 0u; r < p.nred; r++) {
    let r3 = r % p.r3;
    let r2 = (r / p.r3) % p.r2;
    let r1 = (r / (p.r3 * p.r2)) % p.r1;
    let r0 = r / (p.r3 * p.r2 * p.r1);
    let v = x[(o0 + r0) * p.s0 + (o1 + r1) * p.s1 + (o2 + r2) * p.s2 + (o3 + r3) * p.s3];
    ${kind === "max" ? "acc = max(acc, v);" : "acc += v;"}
  }
  out[gid] = ${kind === "mean" ? "acc / f32(p.nred)" : "acc"};
}
`
);

/**
 * Launcher: reduce `x` into `out`, whose shape is `x`'s with the reduced dims set to 1 (rank <= 4).
 * @throws {TypeError} when the shapes do not match that rule
 */
export function reduceForward(kind: ReduceKind, out: Tensor, x: Tensor): void {
  const label = `reduce.${kind}`;
  expectDtype(label, "x", x, "f32");
  expectDtype(label, "out", out, "f32");
  if (x.rank > 4 || out.rank !== x.rank || !out.shape.every((d, i) => d === x.shape[i] || d === 1)) {
    throw new TypeError(
      `Cannot run ${label}: out ${shapeText(out.shape)} is not a reduction of x ${shapeText(x.shape)}`,
    );
  }
  if (out.backend.name === "cpu") return reduceReference(kind, out.data, x.data, x.shape, out.shape);
  const X = pad4(x.shape), O = pad4(out.shape), st = contiguousStrides(X);
  const R = X.map((d, i) => (O[i] === 1 ? d : 1));
  launch(SPEC(kind), code(kind), [out, x], {
    n: out.size,
    nred: numel(R),
    o1: O[1],
    o2: O[2],
    o3: O[3],
    r1: R[1],
    r2: R[2],
    r3: R[3],
    s0: st[0],
    s1: st[1],
    s2: st[2],
    s3: st[3],
  }, gridFor(out.size, WG));
}

function axisOf(x: Tensor, axis: number): number {
  const a = axis < 0 ? x.rank + axis : axis;
  if (a < 0 || a >= x.rank) throw new RangeError(`Cannot reduce ${shapeText(x.shape)} over axis ${axis}`);
  return a;
}

function reduceAxis(kind: ReduceKind, x: Tensor, axis: number, keepdim: boolean): Tensor {
  const a = axisOf(x, axis);
  const kshape = x.shape.map((d, i) => (i === a ? 1 : d));
  const out = x.backend.empty(kshape);
  reduceForward(kind, out, x);
  const result = keepdim ? out : reshapeConsume(out, x.shape.filter((_, i) => i !== a));
  if (!needsGrad(x)) return result;
  if (kind === "max") {
    throw new TypeError("Cannot differentiate reduce.max: use softmax/logsumexp ops for gradients");
  }
  const n = x.shape[a];
  return record(result, kind, [x], (g) => {
    // Broadcast g (kept dims) back over the axis: gx = g * (1 or 1/n).
    const gk = g.reshape(kshape);
    const gx = x.backend.empty(x.shape);
    broadcastInto(gx, gk, kind === "mean" ? 1 / n : 1);
    gk.dispose();
    return [gx];
  });
}

function reshapeConsume(t: Tensor, shape: readonly number[]): Tensor {
  const v = t.reshape(shape);
  t.dispose();
  return v;
}

/** out = scale * broadcast(g) (g has out's rank with some dims 1). */
function broadcastInto(out: Tensor, g: Tensor, scale: number): void {
  const factor = out.backend.full(out.shape, scale);
  binaryForward("mul", out, factor, g);
  factor.dispose();
}

/** Sum over `axis` (differentiable). */
export function sum(x: Tensor, axis: number, opts: { keepdim?: boolean } = {}): Tensor {
  return reduceAxis("sum", x, axis, opts.keepdim ?? false);
}

/**
 * Mean over `axis` (differentiable).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { mean } from "./reduce.ts";
 * const cpu = await createBackend("cpu");
 * const m = mean(cpu.fromArray([1, 2, 3, 5], [2, 2]), -1);
 * if ((await m.toArray()).join() !== "1.5,4") throw new Error("mean");
 * ```
 */
export function mean(x: Tensor, axis: number, opts: { keepdim?: boolean } = {}): Tensor {
  return reduceAxis("mean", x, axis, opts.keepdim ?? false);
}

/** Max over `axis` (not differentiable). */
export function max(x: Tensor, axis: number, opts: { keepdim?: boolean } = {}): Tensor {
  return reduceAxis("max", x, axis, opts.keepdim ?? false);
}

/**
 * Sum a (broadcast) tensor back to `shape` (right-aligned, as in NumPy broadcasting). Returns a
 * view when the shapes already match. With `consume`, `x` is disposed. Not recorded.
 */
export function sumTo(x: Tensor, shape: readonly number[], consume = false): Tensor {
  if (x.shape.join() === shape.join()) {
    if (consume) return x;
    return x.reshape(shape);
  }
  const keep = x.shape.map((_d, i) => {
    const j = shape.length - x.rank + i;
    return j < 0 ? 1 : shape[j];
  });
  const out = x.backend.empty(keep);
  reduceForward("sum", out, x);
  if (consume) x.dispose();
  return reshapeConsume(out, shape);
}
