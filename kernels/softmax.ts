/**
 * `softmax` and `logSoftmax` over the last axis, numerically stable (the row max is subtracted).
 *
 * Math, per row x of C values (rows = every leading dim):
 *   m = max(x), s = sum(exp(x - m))
 *   softmax:     y = exp(x - m) / s        dx = y (dy - sum(dy y))
 *   log_softmax: y = x - m - log(s)        dx = dy - exp(y) sum(dy)
 * Both backward passes read the saved output y, not x.
 * Shapes: x, y, dy, dx (B, T, C) or any (..., C).
 *
 * Kernels and grids: rows of C <= SHORT_ROW use one invocation per row (WG 64, grid over rows);
 * longer rows (vocabularies of 32k-128k) use one workgroup per row (WG 64, or 256 when
 * C >= 1024) with a tree reduction in workgroup memory; grid N workgroups, folded 2-D.
 * Limits: tensors larger than one storage binding are processed in aligned row windows; a single
 * row must fit one binding.
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
  wgslWorkgroupReduce,
} from "./_kernel.ts";
import { record } from "./autograd.ts";
import { grid1d } from "./gpu.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

/** `"softmax"` or `"log_softmax"`. */
export type SoftmaxKind = "softmax" | "log_softmax";

/** Rows up to this length run one invocation per row. */
export const SHORT_ROW = 32;
const SHORT_WG = 64;
const F32_LOWEST = "-3.4028234663852886e38";

// ---- references (f64) ----

/** Reference forward over rows of `C`. */
export function softmaxReference(
  kind: SoftmaxKind,
  out: WritableArray,
  x: ArrayLike<number>,
  C: number,
): void {
  for (let o = 0; o < x.length; o += C) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, x[o + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(x[o + c] - m);
    const ls = Math.log(s);
    for (let c = 0; c < C; c++) {
      out[o + c] = kind === "softmax" ? Math.exp(x[o + c] - m) / s : x[o + c] - m - ls;
    }
  }
}

/** Reference backward over rows of `C`, from the saved output `y`. */
export function softmaxBackwardReference(
  kind: SoftmaxKind,
  dx: WritableArray,
  dy: ArrayLike<number>,
  y: ArrayLike<number>,
  C: number,
): void {
  for (let o = 0; o < y.length; o += C) {
    let s = 0;
    for (let c = 0; c < C; c++) s += kind === "softmax" ? dy[o + c] * y[o + c] : dy[o + c];
    for (let c = 0; c < C; c++) {
      dx[o + c] = kind === "softmax" ? y[o + c] * (dy[o + c] - s) : dy[o + c] - Math.exp(y[o + c]) * s;
    }
  }
}

// ---- WGSL ----

/** Kernel key: kind, direction, workgroup size (1 = the short one-invocation-per-row path). */
type Key = `${SoftmaxKind}:${"fwd" | "bwd"}:${number}`;

function spec(kind: SoftmaxKind, dir: "fwd" | "bwd", wg: number): KernelSpec {
  const rw = (name: string) => ({ name, type: "f32", access: "read_write" as const });
  const r = (name: string) => ({ name, type: "f32", access: "read" as const });
  return {
    label: `softmax.${kind}_${dir === "fwd" ? "forward" : "backward"}`,
    params: { rows: "u32", C: "u32" },
    bindings: dir === "fwd" ? [rw("y"), r("x")] : [rw("dx"), r("dy"), r("y")],
    workgroupSize: [wg === 1 ? SHORT_WG : wg, 1, 1],
  };
}

const code = memo((key: Key) => {
  const [kind, dir, w] = key.split(":") as [SoftmaxKind, "fwd" | "bwd", string];
  const wg = Number(w), short = wg === 1;
  const soft = kind === "softmax";
  // Per-row body with the loop start/stride and the reductions abstracted: the short path loops
  // over the whole row alone; the long path strides by WG and reduces across the workgroup.
  const start = short ? "0u" : "l", step = short ? "1u" : `${wg}u`;
  const sum = (v: string) => (short ? v : `wg_sum(${v}, l)`);
  const mx = (v: string) => (short ? v : `wg_max(${v}, l)`);
  const body = dir === "fwd"
    ? `var mloc = ${F32_LOWEST};
  for (var c = ${start}; c < p.C; c += ${step}) { mloc = max(mloc, x[o + c]); }
  let m = ${mx("mloc")};
  var sloc = 0.0;
  for (var c = ${start}; c < p.C; c += ${step}) { sloc += exp(x[o + c] - m); }
  let s = ${sum("sloc")};
  ${soft ? "let inv = 1.0 / s;" : "let ls = m + log(s);"}
  for (var c = ${start}; c < p.C; c += ${step}) { y[o + c] = ${
      soft ? "exp(x[o + c] - m) * inv" : "x[o + c] - ls"
    }; }`
    : `var sloc = 0.0;
  for (var c = ${start}; c < p.C; c += ${step}) { sloc += ${soft ? "dy[o + c] * y[o + c]" : "dy[o + c]"}; }
  let s = ${sum("sloc")};
  for (var c = ${start}; c < p.C; c += ${step}) {
    dx[o + c] = ${soft ? "y[o + c] * (dy[o + c] - s)" : "dy[o + c] - exp(y[o + c]) * s"};
  }`;
  const head = short
    ? `const WG = ${SHORT_WG}u;\n${wgslHeader(spec(kind, dir, wg))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  let row = gid;`
    : `${wgslWorkgroupReduce(wg)}${wgslHeader(spec(kind, dir, wg))}fn main(${MAIN_ARGS}) {
  let row = wid.x + wid.y * nwg.x;
  let l = lid.x;`;
  return `${head}
  if (row >= p.rows) { return; }
  let o = row * p.C;
  ${body}
}
`;
});

function workgroupFor(C: number): number {
  return C <= SHORT_ROW ? 1 : C >= 1024 ? 256 : 64;
}

/** Run a row kernel over `ts` (all shaped like rows of C), in row windows when needed. */
function dispatchRows(kind: SoftmaxKind, dir: "fwd" | "bwd", ts: Tensor[], rows: number, C: number): void {
  const gpu = ts[0].backend.device;
  const wg = workgroupFor(C);
  const s = spec(kind, dir, wg);
  const wins = rowWindows(gpu, s.label, rows, C * 4);
  for (const [r0, n] of wins) {
    const bind = wins.length === 1 ? ts : ts.map((t) => range(t, r0 * C, n * C));
    launchOn(
      gpu,
      s,
      code(`${kind}:${dir}:${wg}`),
      bind,
      { rows: n, C },
      wg === 1 ? gridFor(n, SHORT_WG) : grid1d(n),
    );
  }
}

function check(op: string, named: [string, Tensor][], like: Tensor): { rows: number; C: number } {
  expectSameBackend(op, ...named.map(([, t]) => t));
  for (const [w, t] of named) {
    expectDtype(op, w, t, "f32");
    if (t.shape.join() !== like.shape.join()) {
      throw new TypeError(
        `Cannot run ${op}: ${w} has shape ${shapeText(t.shape)}, expected ${shapeText(like.shape)}`,
      );
    }
  }
  if (like.rank < 1 || like.shape[like.rank - 1] === 0) {
    throw new TypeError(
      `Cannot run ${op}: shape ${shapeText(like.shape)} has no last axis to normalize over`,
    );
  }
  const C = like.shape[like.rank - 1];
  return { rows: like.size / C, C };
}

// ---- launchers ----

/**
 * Launcher: `out = softmax(x)` or `log_softmax(x)` over the last axis.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function softmaxForward(kind: SoftmaxKind, out: Tensor, x: Tensor): void {
  const { rows, C } = check(`softmax.${kind}_forward`, [["out", out], ["x", x]], x);
  if (x.backend.name === "cpu") return softmaxReference(kind, out.data, x.data, C);
  dispatchRows(kind, "fwd", [out, x], rows, C);
}

/**
 * Launcher: `dx` from `dy` and the forward's output `y`.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function softmaxBackward(kind: SoftmaxKind, dx: Tensor, dy: Tensor, y: Tensor): void {
  const { rows, C } = check(`softmax.${kind}_backward`, [["dx", dx], ["dy", dy], ["y", y]], y);
  if (y.backend.name === "cpu") return softmaxBackwardReference(kind, dx.data, dy.data, y.data, C);
  dispatchRows(kind, "bwd", [dx, dy, y], rows, C);
}

function apply(kind: SoftmaxKind, x: Tensor): Tensor {
  const out = x.backend.empty(x.shape);
  try {
    softmaxForward(kind, out, x);
  } catch (e) {
    out.dispose();
    throw e;
  }
  // The backward reads the output: keep a view of it (the tape disposes saved tensors).
  const y = out.reshape(out.shape);
  return record(out, kind, [x], (g) => {
    const dx = x.backend.empty(x.shape);
    softmaxBackward(kind, dx, g, y);
    return [dx];
  }, [y]);
}

/**
 * Softmax over the last axis (differentiable).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { softmax } from "./softmax.ts";
 * const cpu = await createBackend("cpu");
 * const y = await softmax(cpu.fromArray([0, Math.log(3)], [1, 2])).toArray();
 * if (Math.abs(y[0] - 0.25) > 1e-7 || Math.abs(y[1] - 0.75) > 1e-7) throw new Error("softmax");
 * ```
 */
export function softmax(x: Tensor): Tensor {
  return apply("softmax", x);
}

/** Log-softmax over the last axis (differentiable), `x - logsumexp(x)`. */
export function logSoftmax(x: Tensor): Tensor {
  return apply("log_softmax", x);
}
