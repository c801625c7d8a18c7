/**
 * Fused cross-entropy over the vocabulary: the loss and the gradient of the logits in one pass,
 * with the result left on the device (no readback), plus `shiftLabels` for causal-LM training.
 *
 * Math, per row n with label y = labels[n] (rows with y = ignore_index are skipped), smoothing e:
 *   m = max(x), s = sum(exp(x - m)), lse = m + log(s)
 *   loss_n = lse - (1 - e) x[y] - (e / V) sum(x)     (torch's label_smoothing)
 *   dlogits[n, c] = (exp(x[c] - m) / s - (1 - e) [c = y] - e / V) * scale
 *   loss = scale * sum_n loss_n, scale = 1 / count ("mean", count = non-ignored rows, counted on
 *   the device; 0 when every label is ignored) or 1 ("sum").
 * The backward scales the saved dlogits in place by the incoming gradient, read from its buffer
 * inside the kernel. The softmax is never stored as its own tensor.
 * Shapes: logits (N, V) (any (..., V)); labels (N) i32 (any shape with the same leading dims);
 * loss (1); dlogits like logits.
 *
 * Kernels and grids, per forward (3 dispatches plus one per extra window):
 * 1. count: one workgroup (256) counts valid labels -> stats = [count, scale], and checks them
 *    (bindings: stats, labels, the device's fault record).
 * 2. rows: one workgroup per row (WG 64, or 256 when V >= 1024): a max pass, a sum-exp pass and
 *    a write pass of dlogits; rowLoss[n]. Grid N workgroups, folded 2-D.
 * 3. total: one workgroup sums rowLoss in a fixed tree order -> loss[0] (deterministic).
 * Backward: one invocation per element (WG 256, folded 2-D).
 *
 * Labels outside [0, V) that are not ignore_index are an error on both backends, with one message:
 * `Cannot run cross_entropy: label 600 at position 3 is outside the vocabulary [0, 512) and is not
 * ignore_index -100; ...` (position: the flat index into labels, i.e. after `shiftLabels`). The cpu
 * backend throws it at once; a kernel cannot throw and a readback per call would cost a submit, so
 * the webgpu count kernel records the first bad label in the device's fault record (`Gpu.fault`)
 * and the next readback (the loss read, any `toArray()`, `sync()`) throws it. Until then the rows
 * kernel treats such labels like ignore_index (a defined result, never used).
 * Limits: logits (and dlogits) larger than one storage binding (N V 4 bytes > maxBinding) are
 * processed in aligned row windows; one row must fit one binding.
 *
 * @module
 */
import {
  gridFor,
  type KernelSpec,
  launch,
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

/** Options for {@linkcode crossEntropy} (names as in torch / Hugging Face). */
export interface CrossEntropyOptions {
  /** Label value whose rows contribute nothing (default -100). */
  ignore_index?: number;
  /** `"mean"` over non-ignored rows (default) or `"sum"`. */
  reduction?: "mean" | "sum";
  /** Label smoothing in [0, 1) (default 0). */
  label_smoothing?: number;
}

const WG = 256;

function resolve(op: string, opts: CrossEntropyOptions) {
  const ignore = opts.ignore_index ?? -100, reduction = opts.reduction ?? "mean";
  const smoothing = opts.label_smoothing ?? 0;
  if (!Number.isInteger(ignore) || ignore < -(2 ** 31) || ignore >= 2 ** 31) {
    throw new RangeError(`Cannot run ${op}: ignore_index must be an int32: got ${ignore}`);
  }
  if (reduction !== "mean" && reduction !== "sum") {
    throw new RangeError(
      `Cannot run ${op}: reduction must be "mean" or "sum": got ${JSON.stringify(reduction)}`,
    );
  }
  if (!(smoothing >= 0 && smoothing < 1)) {
    throw new RangeError(`Cannot run ${op}: label_smoothing must be in [0, 1): got ${smoothing}`);
  }
  return { ignore, reduction, smoothing };
}

// ---- references (f64) ----

/** The one message for a bad label, thrown by the cpu reference and by the webgpu device check. */
function labelMessage(y: number, n: number, V: number, ignore: number): string {
  return `Cannot run cross_entropy: label ${y} at position ${n} is outside the vocabulary [0, ${V}) ` +
    `and is not ignore_index ${ignore}; use the model's tokenizer, or ${ignore} for positions without a target`;
}

/** The device check's message (labels and ignore_index are i32: the u32 words are shown signed). */
const LABEL_FAULT: FaultMessage = (f) => labelMessage(f.value | 0, f.index, f.bound, f.extra | 0);

/**
 * Reference: `loss[0]` and (when given) `dlogits` (already divided by the count for "mean").
 * @throws {RangeError} on a label outside [0, V) that is not ignore_index
 */
export function crossEntropyReference(
  loss: WritableArray,
  dlogits: WritableArray | null,
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  V: number,
  opts: CrossEntropyOptions = {},
): void {
  const { ignore, reduction, smoothing: e } = resolve("cross_entropy", opts);
  let count = 0;
  for (let n = 0; n < labels.length; n++) {
    const y = labels[n];
    if (y === ignore) continue;
    if (!(y >= 0 && y < V)) throw new RangeError(labelMessage(y, n, V, ignore));
    count++;
  }
  const scale = reduction === "sum" ? 1 : count > 0 ? 1 / count : 0;
  let total = 0;
  for (let n = 0; n < labels.length; n++) {
    const o = n * V, y = labels[n];
    if (y === ignore) {
      if (dlogits) { for (let c = 0; c < V; c++) dlogits[o + c] = 0; }
      continue;
    }
    let m = -Infinity, s = 0, sx = 0;
    for (let c = 0; c < V; c++) m = Math.max(m, logits[o + c]);
    for (let c = 0; c < V; c++) {
      s += Math.exp(logits[o + c] - m);
      sx += logits[o + c];
    }
    total += m + Math.log(s) - (1 - e) * logits[o + y] - (e / V) * sx;
    if (dlogits) {
      for (let c = 0; c < V; c++) {
        dlogits[o + c] = (Math.exp(logits[o + c] - m) / s - (c === y ? 1 - e : 0) - e / V) * scale;
      }
    }
  }
  loss[0] = total * scale;
}

/** Reference: labels of position t are those of t + 1 within each row of T; the last is ignore_index. */
export function shiftLabelsReference(
  out: WritableArray,
  labels: ArrayLike<number>,
  T: number,
  ignore = -100,
): void {
  for (let i = 0; i < labels.length; i++) out[i] = i % T === T - 1 ? ignore : labels[i + 1];
}

// ---- WGSL ----

const COUNT_SPEC: KernelSpec = {
  label: "loss.cross_entropy_count",
  params: { N: "u32", V: "u32", ignore: "i32", mean: "u32", code: "u32" },
  bindings: [
    { name: "stats", type: "f32", access: "read_write" },
    { name: "labels", type: "i32", access: "read" },
    { name: "fault", type: "atomic<u32>", access: "read_write" },
  ],
  workgroupSize: [WG, 1, 1],
};

const VALID = "(y != p.ignore && y >= 0 && u32(y) < p.V)";

// The first bad label (lowest position) is reported, as the cpu reference does: each invocation
// scans its positions in increasing order, the workgroup takes the minimum.
const COUNT_CODE = `${wgslWorkgroupReduce(WG)}${WGSL_REPORT_FAULT}var<workgroup> first_bad: atomic<u32>;
${wgslHeader(COUNT_SPEC)}fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let l = lid.x;
  if (l == 0u) { atomicStore(&first_bad, 0xffffffffu); }
  workgroupBarrier();
  var k = 0u;
  var bad = 0xffffffffu;
  for (var n = l; n < p.N; n += ${WG}u) {
    let y = labels[n];
    if ${VALID} {
      k += 1u;
    } else if (y != p.ignore && bad == 0xffffffffu) {
      bad = n;
    }
  }
  if (bad != 0xffffffffu) { atomicMin(&first_bad, bad); }
  let count = wg_sum(f32(k), l); // exact: integers below 2^24; its barriers settle first_bad
  if (bad != 0xffffffffu && bad == atomicLoad(&first_bad)) {
    report_fault(p.code, bitcast<u32>(labels[bad]), bad, p.V, bitcast<u32>(p.ignore));
  }
  if (l == 0u) {
    stats[0] = count;
    stats[1] = select(1.0, select(0.0, 1.0 / count, count > 0.0), p.mean == 1u);
  }
}
`;

function rowSpec(grad: boolean, wg: number): KernelSpec {
  return {
    label: "loss.cross_entropy_rows",
    params: { rows: "u32", r0: "u32", V: "u32", ignore: "i32", smoothing: "f32" },
    bindings: [
      { name: "rowloss", type: "f32", access: "read_write" },
      ...(grad ? [{ name: "dl", type: "f32", access: "read_write" as const }] : []),
      { name: "x", type: "f32", access: "read" },
      { name: "labels", type: "i32", access: "read" },
      // Only the gradient pass reads stats: an unused binding would be dropped from the "auto"
      // pipeline layout and make the bind group invalid.
      ...(grad ? [{ name: "stats", type: "f32", access: "read" as const }] : []),
    ],
    workgroupSize: [wg, 1, 1],
  };
}

const rowCode = memo((key: `${boolean}:${number}`) => {
  const [g, w] = key.split(":");
  const grad = g === "true", wg = Number(w);
  return `${wgslWorkgroupReduce(wg)}${wgslHeader(rowSpec(grad, wg))}fn main(${MAIN_ARGS}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let l = lid.x;
  let o = row * p.V;
  let y = labels[p.r0 + row];
  if (!${VALID}) {
    if (l == 0u) { rowloss[p.r0 + row] = 0.0; }
    ${grad ? `for (var c = l; c < p.V; c += ${wg}u) { dl[o + c] = 0.0; }` : ""}
    return;
  }
  // pass 1: max
  var mloc = -3.4028234663852886e38;
  for (var c = l; c < p.V; c += ${wg}u) { mloc = max(mloc, x[o + c]); }
  let m = wg_max(mloc, l);
  // pass 2: sum of exp (and of x, for label smoothing)
  var acc = vec2<f32>(0.0, 0.0);
  for (var c = l; c < p.V; c += ${wg}u) { let v = x[o + c]; acc += vec2<f32>(exp(v - m), v); }
  let s = wg_sum2(acc, l);
  let e = p.smoothing;
  let hit = 1.0 - e;
  if (l == 0u) {
    rowloss[p.r0 + row] = m + log(s.x) - hit * x[o + u32(y)] - (e / f32(p.V)) * s.y;
  }
  ${
    grad
      ? `// pass 3: (softmax - target) * scale
  let scale = stats[1];
  let inv = 1.0 / s.x;
  let base = e / f32(p.V);
  for (var c = l; c < p.V; c += ${wg}u) {
    let t = select(base, base + hit, c == u32(y));
    dl[o + c] = (exp(x[o + c] - m) * inv - t) * scale;
  }`
      : ""
  }
}
`;
});

const TOTAL_SPEC: KernelSpec = {
  label: "loss.cross_entropy_total",
  params: { N: "u32" },
  bindings: [
    { name: "loss", type: "f32", access: "read_write" },
    { name: "rowloss", type: "f32", access: "read" },
    { name: "stats", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

const TOTAL_CODE = `${wgslWorkgroupReduce(WG)}${
  wgslHeader(TOTAL_SPEC)
}fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let l = lid.x;
  var a = 0.0;
  for (var n = l; n < p.N; n += ${WG}u) { a += rowloss[n]; }
  let t = wg_sum(a, l);
  if (l == 0u) { loss[0] = t * stats[1]; }
}
`;

const SCALE_SPEC: KernelSpec = {
  label: "loss.cross_entropy_backward",
  params: { n: "u32" },
  bindings: [
    { name: "dl", type: "f32", access: "read_write" },
    { name: "g", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

const SCALE_CODE = `const WG = ${WG}u;\n${wgslHeader(SCALE_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  dl[gid] = dl[gid] * g[0];
}
`;

const SHIFT_SPEC: KernelSpec = {
  label: "loss.shift_labels",
  params: { n: "u32", T: "u32", ignore: "i32" },
  bindings: [
    { name: "out", type: "i32", access: "read_write" },
    { name: "labels", type: "i32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

const SHIFT_CODE = `const WG = ${WG}u;\n${wgslHeader(SHIFT_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  out[gid] = select(labels[min(gid + 1u, p.n - 1u)], p.ignore, gid % p.T == p.T - 1u);
}
`;

// ---- launchers ----

function checkCE(op: string, logits: Tensor, labels: Tensor): { N: number; V: number } {
  expectDtype(op, "logits", logits, "f32");
  expectDtype(op, "labels", labels, "i32");
  if (logits.rank < 1 || logits.shape[logits.rank - 1] === 0) {
    throw new TypeError(
      `Cannot run ${op}: logits has shape ${shapeText(logits.shape)}, expected (..., V) with V > 0`,
    );
  }
  const V = logits.shape[logits.rank - 1], N = logits.size / V;
  if (
    labels.size !== N ||
    (labels.rank === logits.rank - 1 && labels.shape.join() !== logits.shape.slice(0, -1).join())
  ) {
    throw new TypeError(
      `Cannot run ${op}: labels has shape ${shapeText(labels.shape)}, expected ${
        shapeText(logits.shape.slice(0, -1))
      } for logits ${shapeText(logits.shape)}`,
    );
  }
  return { N, V };
}

/**
 * Launcher: `loss` (1) and, when `dlogits` is given, the gradient of the loss w.r.t. `logits`
 * (already divided by the count for "mean"), in one pass over the logits; no readback.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 * @throws {RangeError} on bad options (before dispatch); for a label outside `[0, V)` that is not
 * ignore_index: at once on cpu, at the next readback on webgpu (see the module header)
 */
export function crossEntropyForward(
  loss: Tensor,
  dlogits: Tensor | null,
  logits: Tensor,
  labels: Tensor,
  opts: CrossEntropyOptions = {},
): void {
  const op = "loss.cross_entropy";
  expectSameBackend(op, loss, logits, labels, ...(dlogits ? [dlogits] : []));
  const { N, V } = checkCE(op, logits, labels);
  const { ignore, reduction, smoothing } = resolve(op, opts);
  expectDtype(op, "loss", loss, "f32");
  if (loss.size !== 1) {
    throw new TypeError(`Cannot run ${op}: loss has shape ${shapeText(loss.shape)}, expected [1]`);
  }
  if (dlogits) {
    expectDtype(op, "dlogits", dlogits, "f32");
    if (dlogits.shape.join() !== logits.shape.join()) {
      throw new TypeError(
        `Cannot run ${op}: dlogits has shape ${shapeText(dlogits.shape)}, expected ${
          shapeText(logits.shape)
        }`,
      );
    }
  }
  if (loss.backend.name === "cpu") {
    return crossEntropyReference(loss.data, dlogits?.data ?? null, logits.data, labels.data, V, {
      ignore_index: ignore,
      reduction,
      label_smoothing: Math.fround(smoothing),
    });
  }
  const be = loss.backend, gpu = be.device;
  const grad = !!dlogits;
  const wg = V >= 1024 ? 256 : 64;
  const rs = rowSpec(grad, wg);
  const wins = rowWindows(gpu, rs.label, N, V * 4); // before any dispatch: throws on a too-long row
  const stats = be.empty([2]), rowloss = be.empty([Math.max(N, 1)]);
  const fault = gpu.fault(LABEL_FAULT);
  const countParams = { N, V, ignore, mean: reduction === "mean" ? 1 : 0, code: fault.code };
  launch(COUNT_SPEC, COUNT_CODE, [stats, labels, fault.binding], countParams, [1, 1, 1]);
  const code = rowCode(`${grad}:${wg}`);
  for (const [r0, rows] of wins) {
    const win = (t: Tensor) => (wins.length === 1 ? t : range(t, r0 * V, rows * V));
    const bind = [
      rowloss,
      ...(dlogits ? [win(dlogits)] : []),
      win(logits),
      labels,
      ...(dlogits ? [stats] : []),
    ];
    launchOn(gpu, rs, code, bind, { rows, r0, V, ignore, smoothing }, grid1d(rows));
  }
  launch(TOTAL_SPEC, TOTAL_CODE, [loss, rowloss, stats], { N }, [1, 1, 1]);
  stats.dispose();
  rowloss.dispose();
}

/**
 * Launcher: `dlogits *= grad[0]` in place, reading the scalar from its buffer on the device.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function crossEntropyBackward(dlogits: Tensor, grad: Tensor): void {
  const op = "loss.cross_entropy_backward";
  expectSameBackend(op, dlogits, grad);
  expectDtype(op, "dlogits", dlogits, "f32");
  expectDtype(op, "grad", grad, "f32");
  if (grad.size !== 1) {
    throw new TypeError(`Cannot run ${op}: grad has shape ${shapeText(grad.shape)}, expected [1]`);
  }
  if (dlogits.backend.name === "cpu") {
    const d = dlogits.data, g = grad.data[0];
    for (let i = 0; i < d.length; i++) d[i] *= g;
    return;
  }
  const gpu = dlogits.backend.device;
  const wins = rowWindows(gpu, op, dlogits.size, 4);
  for (const [i0, n] of wins) {
    const dl = wins.length === 1 ? dlogits : range(dlogits, i0, n);
    launchOn(gpu, SCALE_SPEC, SCALE_CODE, [dl, grad], { n }, gridFor(n, WG));
  }
}

/**
 * Cross-entropy of `logits` (N, V) against integer `labels` (N), fused with its gradient; returns
 * the loss as a `[1]` tensor on the device (no readback). Differentiable in `logits`. Every label
 * ignored gives a 0 loss and 0 gradients. A label outside `[0, V)` that is not `ignore_index` is a
 * RangeError: thrown at once on cpu, and on webgpu by the next readback (the loss read).
 *
 * For a causal LM (Hugging Face's loss), logits at position t predict the token at t + 1: pass
 * `shiftLabels(labels)` (or labels that are already shifted).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { crossEntropy } from "./loss.ts";
 * const cpu = await createBackend("cpu");
 * const loss = crossEntropy(cpu.fromArray([0, 0, 0, 0], [2, 2]), cpu.fromArray([1, -100], [2], "i32"));
 * if (Math.abs((await loss.toArray())[0] - Math.LN2) > 1e-6) throw new Error("crossEntropy");
 * ```
 */
export function crossEntropy(logits: Tensor, labels: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const be = logits.backend;
  const loss = be.empty([1]);
  const dl = needsGrad(logits) ? be.empty(logits.shape) : null;
  try {
    crossEntropyForward(loss, dl, logits, labels, opts);
  } catch (e) {
    loss.dispose();
    dl?.dispose();
    throw e;
  }
  if (!dl) return loss;
  return record(loss, "cross_entropy", [logits], (g) => {
    crossEntropyBackward(dl, g);
    return [dl.reshape(dl.shape)]; // a view: the tape disposes the saved handle, the view keeps it
  }, [dl]);
}

/**
 * Shift causal-LM labels left by one within each row: `out[b, t] = labels[b, t + 1]`, and the last
 * position gets `ignore_index` (Hugging Face pairs `logits[:, t]` with `labels[:, t + 1]`).
 * `labels` is i32 `(B, T)` (or `(T)`); returns a new tensor of the same shape. Not differentiable.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { shiftLabels } from "./loss.ts";
 * const cpu = await createBackend("cpu");
 * const s = shiftLabels(cpu.fromArray([1, 2, 3, 4, 5, 6], [2, 3], "i32"));
 * if ((await s.toArray()).join() !== "2,3,-100,5,6,-100") throw new Error("shiftLabels");
 * ```
 */
export function shiftLabels(labels: Tensor, opts: { ignore_index?: number } = {}): Tensor {
  const op = "loss.shift_labels";
  expectDtype(op, "labels", labels, "i32");
  const ignore = resolve(op, { ignore_index: opts.ignore_index }).ignore;
  if (labels.rank < 1 || labels.rank > 2) {
    throw new TypeError(
      `Cannot run ${op}: labels has shape ${shapeText(labels.shape)}, expected (B, T) or (T)`,
    );
  }
  const T = labels.shape[labels.rank - 1];
  const out = labels.backend.empty(labels.shape, "i32");
  if (labels.size === 0) return out;
  if (out.backend.name === "cpu") shiftLabelsReference(out.data, labels.data, T, ignore);
  else launch(SHIFT_SPEC, SHIFT_CODE, [out, labels], { n: labels.size, T, ignore }, gridFor(labels.size, WG));
  return out;
}
