/**
 * Per-token log-probabilities of given labels (TRL's `selective_log_softmax`): the log-softmax of
 * each row of logits read at its label, without materialising the log-softmax, fused with the
 * gradient of the logits and (optionally) each row's mean logit, for preference losses (DPO) that
 * sum log-probabilities over completion tokens.
 *
 * Math, per row n with label y = labels[n] (rows with y = ignore_index give 0 everywhere):
 *   m = max(x), s = sum(exp(x - m))
 *   out[n] = x[y] - m - log(s)                      (log p(y))
 *   mean[n] = sum(x) / V                            (TRL's logged `logits/chosen` averages these)
 *   d out[n] / d x[c] = [c = y] - exp(x[c] - m) / s (saved in the forward, as cross-entropy does)
 * Backward: dlogits[n, :] = saved[n, :] * g[n], scaled in place.
 * Shapes: logits (N, V) (any (..., V)); labels (N) i32 with the same leading dims; out, mean (N).
 *
 * Kernels and grids:
 * 1. rows: one workgroup per row (WG 64, or 256 when V >= 1024): a max pass, a sum pass (exp and
 *    x) and, when recording, a write pass of the saved gradient. Grid N workgroups, folded 2-D.
 *    Bindings: out, [mean], [dl], x, labels, the device's fault record.
 * 2. backward: one invocation per element (WG 256, folded 2-D): dl[i] *= g[row(i)].
 *
 * A label outside [0, V) that is not ignore_index is an error with one message on both backends:
 * at once on cpu; on webgpu the rows kernel records it in the device's fault record and the next
 * readback throws it (the kernel treats the row as ignored meanwhile: a defined result, never used).
 * Limits: logits larger than one storage binding are processed in aligned row windows; one row must
 * fit one binding.
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
import { needsGrad, record } from "./autograd.ts";
import { type FaultMessage, grid1d, WGSL_REPORT_FAULT } from "./gpu.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

/** Options of {@linkcode tokenLogProbs}. */
export interface TokenLogProbsOptions {
  /** Label value of rows that get no log-probability (default -100). */
  ignore_index?: number;
  /** Also return each row's mean logit (0 for ignored rows); default false. */
  mean_logits?: boolean;
}

const WG = 256;
const OP = "logprob.token_log_probs";

function ignoreOf(opts: { ignore_index?: number }): number {
  const ignore = opts.ignore_index ?? -100;
  if (!Number.isInteger(ignore) || ignore < -(2 ** 31) || ignore >= 2 ** 31) {
    throw new RangeError(`Cannot run ${OP}: ignore_index must be an int32: got ${ignore}`);
  }
  return ignore;
}

/** The one message for a bad label (cpu reference and webgpu device check). */
function labelMessage(y: number, n: number, V: number, ignore: number): string {
  return `Cannot run token_log_probs: label ${y} at position ${n} is outside the vocabulary [0, ${V}) ` +
    `and is not ignore_index ${ignore}; use the model's tokenizer, or ${ignore} for positions without a target`;
}

const LABEL_FAULT: FaultMessage = (f) => labelMessage(f.value | 0, f.index, f.bound, f.extra | 0);

// ---- references (f64) ----

/**
 * Reference forward: `out[n] = log_softmax(logits[n])[labels[n]]` (0 for ignored rows), `mean[n]`
 * the row's mean logit (0 for ignored rows) and `dlogits[n, c] = [c = y] - softmax(logits[n])[c]`
 * (0 rows for ignored ones), each when given.
 * @throws {RangeError} on a label outside [0, V) that is not ignore_index
 */
export function tokenLogProbsReference(
  out: WritableArray,
  mean: WritableArray | null,
  dlogits: WritableArray | null,
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  V: number,
  ignore = -100,
): void {
  for (let n = 0; n < labels.length; n++) {
    const y = labels[n];
    if (y !== ignore && !(Number.isInteger(y) && y >= 0 && y < V)) {
      throw new RangeError(labelMessage(y, n, V, ignore));
    }
  }
  for (let n = 0; n < labels.length; n++) {
    const o = n * V, y = labels[n];
    if (y === ignore) {
      out[n] = 0;
      if (mean) mean[n] = 0;
      if (dlogits) { for (let c = 0; c < V; c++) dlogits[o + c] = 0; }
      continue;
    }
    let m = -Infinity, s = 0, sx = 0;
    for (let c = 0; c < V; c++) m = Math.max(m, logits[o + c]);
    for (let c = 0; c < V; c++) {
      s += Math.exp(logits[o + c] - m);
      sx += logits[o + c];
    }
    out[n] = logits[o + y] - m - Math.log(s);
    if (mean) mean[n] = sx / V;
    if (dlogits) {
      for (let c = 0; c < V; c++) dlogits[o + c] = (c === y ? 1 : 0) - Math.exp(logits[o + c] - m) / s;
    }
  }
}

/** Reference backward: `dlogits[n, :] *= grad[n]` in place. */
export function tokenLogProbsBackwardReference(
  dlogits: WritableArray,
  grad: ArrayLike<number>,
  V: number,
): void {
  for (let i = 0; i < dlogits.length; i++) dlogits[i] *= grad[Math.floor(i / V)];
}

// ---- WGSL ----

interface RowsKey {
  mean: boolean;
  grad: boolean;
  wg: number;
}

function rowSpec(k: RowsKey): KernelSpec {
  return {
    label: "logprob.token_log_probs_rows",
    params: { rows: "u32", r0: "u32", V: "u32", ignore: "i32", code: "u32" },
    bindings: [
      { name: "out", type: "f32", access: "read_write" },
      ...(k.mean ? [{ name: "mean", type: "f32", access: "read_write" as const }] : []),
      ...(k.grad ? [{ name: "dl", type: "f32", access: "read_write" as const }] : []),
      { name: "x", type: "f32", access: "read" },
      { name: "labels", type: "i32", access: "read" },
      { name: "fault", type: "atomic<u32>", access: "read_write" },
    ],
    workgroupSize: [k.wg, 1, 1],
  };
}

const rowCode = memo((key: `${boolean}:${boolean}:${number}`) => {
  const [m, g, w] = key.split(":");
  const k: RowsKey = { mean: m === "true", grad: g === "true", wg: Number(w) };
  const wg = k.wg;
  return `${wgslWorkgroupReduce(wg)}${WGSL_REPORT_FAULT}${wgslHeader(rowSpec(k))}fn main(${MAIN_ARGS}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let l = lid.x;
  let o = row * p.V;
  let n = p.r0 + row;
  let y = labels[n];
  if (!(y != p.ignore && y >= 0 && u32(y) < p.V)) {
    if (l == 0u) {
      out[n] = 0.0;
      ${k.mean ? "mean[n] = 0.0;" : ""}
      if (y != p.ignore) { report_fault(p.code, bitcast<u32>(y), n, p.V, bitcast<u32>(p.ignore)); }
    }
    ${k.grad ? `for (var c = l; c < p.V; c += ${wg}u) { dl[o + c] = 0.0; }` : ""}
    return;
  }
  var mloc = -3.4028234663852886e38;
  for (var c = l; c < p.V; c += ${wg}u) { mloc = max(mloc, x[o + c]); }
  let m = wg_max(mloc, l);
  var acc = vec2<f32>(0.0, 0.0);
  for (var c = l; c < p.V; c += ${wg}u) { let v = x[o + c]; acc += vec2<f32>(exp(v - m), v); }
  let s = wg_sum2(acc, l);
  if (l == 0u) {
    out[n] = x[o + u32(y)] - m - log(s.x);
    ${k.mean ? "mean[n] = s.y / f32(p.V);" : ""}
  }
  ${
    k.grad
      ? `let inv = 1.0 / s.x;
  for (var c = l; c < p.V; c += ${wg}u) {
    dl[o + c] = select(0.0, 1.0, c == u32(y)) - exp(x[o + c] - m) * inv;
  }`
      : ""
  }
}
`;
});

const SCALE_SPEC: KernelSpec = {
  label: "logprob.token_log_probs_backward",
  params: { n: "u32", r0: "u32", V: "u32" },
  bindings: [
    { name: "dl", type: "f32", access: "read_write" },
    { name: "g", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

const SCALE_CODE = `const WG = ${WG}u;\n${wgslHeader(SCALE_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  dl[gid] = dl[gid] * g[p.r0 + gid / p.V];
}
`;

// ---- launchers ----

function checkShapes(op: string, logits: Tensor, labels: Tensor): { N: number; V: number } {
  expectDtype(op, "logits", logits, "f32");
  expectDtype(op, "labels", labels, "i32");
  if (logits.rank < 1 || logits.shape[logits.rank - 1] === 0) {
    throw new TypeError(
      `Cannot run ${op}: logits has shape ${shapeText(logits.shape)}, expected (..., V) with V > 0`,
    );
  }
  const V = logits.shape[logits.rank - 1], N = logits.size / V;
  if (labels.size !== N) {
    throw new TypeError(
      `Cannot run ${op}: labels has shape ${shapeText(labels.shape)}, expected ${
        shapeText(logits.shape.slice(0, -1))
      } for logits ${shapeText(logits.shape)}`,
    );
  }
  return { N, V };
}

function expectRows(op: string, what: string, t: Tensor, N: number): void {
  expectDtype(op, what, t, "f32");
  if (t.size !== N) {
    throw new TypeError(`Cannot run ${op}: ${what} has shape ${shapeText(t.shape)}, expected ${N} elements`);
  }
}

/**
 * Launcher: `out` (N) and, when given, `mean` (N) and the saved gradient `dlogits` (like logits),
 * in one pass over the logits; no readback.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 * @throws {RangeError} on a bad ignore_index; for a label outside `[0, V)` that is not ignore_index:
 * at once on cpu, at the next readback on webgpu
 */
export function tokenLogProbsForward(
  out: Tensor,
  mean: Tensor | null,
  dlogits: Tensor | null,
  logits: Tensor,
  labels: Tensor,
  opts: { ignore_index?: number } = {},
): void {
  const extra = [mean, dlogits].filter((t): t is Tensor => t !== null);
  expectSameBackend(OP, out, logits, labels, ...extra);
  const { N, V } = checkShapes(OP, logits, labels);
  const ignore = ignoreOf(opts);
  expectRows(OP, "out", out, N);
  if (mean) expectRows(OP, "mean", mean, N);
  if (dlogits) {
    expectDtype(OP, "dlogits", dlogits, "f32");
    if (dlogits.shape.join() !== logits.shape.join()) {
      throw new TypeError(
        `Cannot run ${OP}: dlogits has shape ${shapeText(dlogits.shape)}, expected ${
          shapeText(logits.shape)
        }`,
      );
    }
  }
  if (out.backend.name === "cpu") {
    return tokenLogProbsReference(
      out.data,
      mean?.data ?? null,
      dlogits?.data ?? null,
      logits.data,
      labels.data,
      V,
      ignore,
    );
  }
  const gpu = out.backend.device;
  const key = { mean: !!mean, grad: !!dlogits, wg: V >= 1024 ? 256 : 64 };
  const spec = rowSpec(key);
  const wins = rowWindows(gpu, spec.label, N, V * 4); // before any dispatch: throws on a too-long row
  const fault = gpu.fault(LABEL_FAULT);
  const code = rowCode(`${key.mean}:${key.grad}:${key.wg}`);
  for (const [r0, rows] of wins) {
    const win = (t: Tensor) => (wins.length === 1 ? t : range(t, r0 * V, rows * V));
    const bind = [out, ...(mean ? [mean] : []), ...(dlogits ? [win(dlogits)] : []), win(logits), labels];
    launchOn(
      gpu,
      spec,
      code,
      [...bind, fault.binding],
      { rows, r0, V, ignore, code: fault.code },
      grid1d(rows),
    );
  }
}

/**
 * Launcher: `dlogits[n, :] *= grad[n]` in place (the saved gradient times the incoming one).
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function tokenLogProbsBackward(dlogits: Tensor, grad: Tensor): void {
  const op = "logprob.token_log_probs_backward";
  expectSameBackend(op, dlogits, grad);
  expectDtype(op, "dlogits", dlogits, "f32");
  const V = dlogits.shape[dlogits.rank - 1] ?? 1, N = dlogits.size / V;
  expectRows(op, "grad", grad, N);
  if (dlogits.backend.name === "cpu") return tokenLogProbsBackwardReference(dlogits.data, grad.data, V);
  const gpu = dlogits.backend.device;
  const wins = rowWindows(gpu, op, N, V * 4);
  for (const [r0, rows] of wins) {
    const dl = wins.length === 1 ? dlogits : range(dlogits, r0 * V, rows * V);
    launchOn(gpu, SCALE_SPEC, SCALE_CODE, [dl, grad], { n: rows * V, r0, V }, gridFor(rows * V, WG));
  }
}

/**
 * Log-probabilities of `labels` under `logits` (N, V): `log_softmax(logits)[n, labels[n]]`, 0 where
 * the label is `ignore_index`; shape (N) (the leading dims of logits), on the device. Differentiable
 * in `logits` (the gradient is saved in the forward, so the caller may release the logits). With
 * `mean_logits`, also each row's mean logit (not differentiable; 0 for ignored rows).
 *
 * For a causal LM, logits at position t predict the token at t + 1: pass shifted labels.
 *
 * @param logits (N, V) f32 (any (..., V))
 * @param labels (N) i32 (any shape of N elements)
 * @param opts `ignore_index` (default -100), `mean_logits` (default false)
 * @returns `logps` with the shape of `labels`, and `mean_logits` (same shape) or null
 * @throws {TypeError} on dtype, shape or backend mismatch
 * @throws {RangeError} for a label outside `[0, V)` that is not ignore_index (on webgpu at the next readback)
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { tokenLogProbs } from "./logprob.ts";
 * const cpu = await createBackend("cpu");
 * const logits = cpu.fromArray([0, 0, Math.log(3), 0], [2, 2]);
 * const { logps } = tokenLogProbs(logits, cpu.fromArray([1, -100], [2], "i32"));
 * const got = await logps.toArray();
 * if (Math.abs(got[0] - Math.log(0.5)) > 1e-6 || got[1] !== 0) throw new Error(`${got}`);
 * ```
 */
export function tokenLogProbs(
  logits: Tensor,
  labels: Tensor,
  opts: TokenLogProbsOptions = {},
): { logps: Tensor; mean_logits: Tensor | null } {
  const be = logits.backend;
  const out = be.empty(labels.shape);
  const mean = opts.mean_logits ? be.empty(labels.shape) : null;
  const dl = needsGrad(logits) ? be.empty(logits.shape) : null;
  try {
    tokenLogProbsForward(out, mean, dl, logits, labels, opts);
  } catch (e) {
    for (const t of [out, mean, dl]) t?.dispose();
    throw e;
  }
  if (!dl) return { logps: out, mean_logits: mean };
  const logps = record(out, "token_log_probs", [logits], (g) => {
    tokenLogProbsBackward(dl, g);
    return [dl.reshape(logits.shape)]; // a view: the tape disposes the saved handle, the view keeps it
  }, [dl]);
  return { logps, mean_logits: mean };
}
