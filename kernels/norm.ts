/**
 * Normalization over the last axis: `layerNorm` (GPT-2, torch's `nn.LayerNorm`: biased variance)
 * and `rmsNorm` (Llama's `LlamaRMSNorm`; with `offset: 1`, Gemma's `(1 + w)` form).
 *
 * Math, per row x of C features (rows = every leading dim, N = B*T):
 *   layer: mean = sum(x)/C, var = sum((x - mean)^2)/C, rstd = 1/sqrt(var + eps),
 *          xhat = (x - mean) rstd, y = xhat w + b
 *   rms:   rstd = 1/sqrt(sum(x^2)/C + eps), xhat = x rstd, y = xhat (offset + w)
 *          (HF computes x * rsqrt(mean(x^2) + eps) in float32, then multiplies by the weight)
 *   backward, with g = dy w' (w' = w or offset + w):
 *     layer: dx = rstd (g - mean(g) - xhat mean(g xhat))
 *     rms:   dx = rstd (g - xhat mean(g xhat))
 *     dw = sum_rows dy xhat, db = sum_rows dy
 * Shapes: x, y, dy, dx (B, T, C) or any (..., C); w, b (C); mean, rstd (N) saved by forward.
 *
 * Kernels and grids:
 * - forward and dx: one workgroup per row (WG = 64, or 256 when C >= 1024), a tree reduction in
 *   workgroup memory (two-pass mean/variance like torch); grid N workgroups, folded 2-D. On CPU
 *   adapters (llvmpipe, lavapipe, SwiftShader) and C < 1024 one invocation per row instead, 64
 *   rows per workgroup, summing its row in order: there each workgroup launch and barrier costs
 *   more than the arithmetic of a short row.
 * - dw/db: deterministic, no atomics: pass 1 has one invocation per (column, chunk of ROWS_PER_CHUNK
 *   rows) writing partial sums (S, C); pass 2 sums the S partials per column in order (skipped when
 *   S = 1). Grid pass 1 (ceil(C/64), S), pass 2 ceil(C/64).
 * Limits: every tensor must fit one storage binding (the launch raises a RangeError naming it).
 *
 * @module
 */
import {
  gridFor,
  type KernelSpec,
  launch,
  LINEAR_INDEX,
  MAIN_ARGS,
  memo,
  wgslHeader,
  wgslWorkgroupReduce,
} from "./_kernel.ts";
import { record } from "./autograd.ts";
import { type Gpu, grid1d, isCpuAdapter } from "./gpu.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

/** Norm kinds. */
export type NormOpKind = "layer" | "rms";

const COL_WG = 64;
/** Rows summed by one invocation in pass 1 of dw/db. */
const ROWS_PER_CHUNK = 64;

// ---- references (f64 accumulation) ----

/**
 * Reference LayerNorm forward over rows of `C`: writes `out`, and per row `mean` and `rstd`.
 * `bias` may be null.
 */
export function layerNormReference(
  out: WritableArray,
  mean: WritableArray,
  rstd: WritableArray,
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  C: number,
  eps: number,
): void {
  for (let r = 0; r * C < x.length; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += x[o + c];
    const m = s / C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[o + c] - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (let c = 0; c < C; c++) out[o + c] = (x[o + c] - m) * rs * weight[c] + (bias ? bias[c] : 0);
  }
}

/** Reference RMSNorm forward over rows of `C`: writes `out` and per row `rstd`. */
export function rmsNormReference(
  out: WritableArray,
  rstd: WritableArray,
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  C: number,
  eps: number,
  offset: number,
): void {
  for (let r = 0; r * C < x.length; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += x[o + c] * x[o + c];
    const rs = 1 / Math.sqrt(s / C + eps);
    rstd[r] = rs;
    for (let c = 0; c < C; c++) out[o + c] = x[o + c] * rs * (offset + weight[c]);
  }
}

/**
 * Reference backward of both norms (`kind`). `mean` is ignored for rms; `dbias` may be null.
 * `dweight`/`dbias` are overwritten with the sums over rows.
 */
export function normBackwardReference(
  kind: NormOpKind,
  dx: WritableArray,
  dweight: WritableArray,
  dbias: WritableArray | null,
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  mean: ArrayLike<number> | null,
  rstd: ArrayLike<number>,
  C: number,
  offset = 0,
): void {
  const dw = new Float64Array(C), db = new Float64Array(C);
  const xhat = new Float64Array(C);
  for (let r = 0; r * C < x.length; r++) {
    const o = r * C, m = kind === "layer" ? mean![r] : 0, rs = rstd[r];
    let sg = 0, sgx = 0;
    for (let c = 0; c < C; c++) {
      xhat[c] = (x[o + c] - m) * rs;
      const g = dy[o + c] * (kind === "layer" ? weight[c] : offset + weight[c]);
      sg += g;
      sgx += g * xhat[c];
      dw[c] += dy[o + c] * xhat[c];
      db[c] += dy[o + c];
    }
    for (let c = 0; c < C; c++) {
      const g = dy[o + c] * (kind === "layer" ? weight[c] : offset + weight[c]);
      dx[o + c] = rs * (g - (kind === "layer" ? sg / C : 0) - xhat[c] * sgx / C);
    }
  }
  for (let c = 0; c < C; c++) {
    dweight[c] = dw[c];
    if (dbias) dbias[c] = db[c];
  }
}

// ---- WGSL ----

/** Kernel key: kind, bias present, workgroup size. */
type Key = `${NormOpKind}:${boolean}:${number}`;

const f32rw = (name: string) => ({ name, type: "f32", access: "read_write" as const });
const f32r = (name: string) => ({ name, type: "f32", access: "read" as const });

const ROW_PARAMS = { rows: "u32", C: "u32", eps: "f32", offset: "f32" } as const;

function fwdSpec(kind: NormOpKind, bias: boolean, wg: number): KernelSpec {
  return {
    label: `norm.${kind}_forward`,
    params: ROW_PARAMS,
    bindings: [
      f32rw("y"),
      ...(kind === "layer" ? [f32rw("mean")] : []),
      f32rw("rstd"),
      f32r("x"),
      f32r("w"),
      ...(bias ? [f32r("b")] : []),
    ],
    workgroupSize: [rowGroupSize(wg), 1, 1],
  };
}

const ROW_PRELUDE = `let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let l = lid.x;
  let o = row * p.C;`;

/** Rows per workgroup when one invocation normalizes a whole row (`wg` 1, CPU adapters). */
const ROWS_WG = 64;

/**
 * The row kernels' shared head: with `wg` > 1 a workgroup per row and a tree reduction; with `wg`
 * 1 one invocation per row (ROWS_WG rows a workgroup) whose "reductions" are its own sums.
 */
function rowHead(wg: number): { reduce: string; prelude: string } {
  if (wg > 1) return { reduce: wgslWorkgroupReduce(wg), prelude: ROW_PRELUDE };
  return {
    reduce: `const WG = ${ROWS_WG}u;
fn wg_sum(v: f32, l: u32) -> f32 { return v; }
fn wg_sum2(v: vec2<f32>, l: u32) -> vec2<f32> { return v; }
`,
    prelude: `${LINEAR_INDEX}
  let row = gid;
  if (row >= p.rows) { return; }
  let l = 0u;
  let o = row * p.C;`,
  };
}

const fwdCode = memo((key: Key) => {
  const [kind, b, w] = key.split(":");
  const wg = Number(w), bias = b === "true";
  const spec = fwdSpec(kind as NormOpKind, bias, wg);
  const head = rowHead(wg);
  const body = kind === "layer"
    ? `var s = 0.0;
  for (var c = l; c < p.C; c += ${wg}u) { s += x[o + c]; }
  let m = wg_sum(s, l) / f32(p.C);
  var v = 0.0;
  for (var c = l; c < p.C; c += ${wg}u) { let d = x[o + c] - m; v += d * d; }
  let rs = inverseSqrt(wg_sum(v, l) / f32(p.C) + p.eps);
  if (l == 0u) { mean[row] = m; rstd[row] = rs; }
  for (var c = l; c < p.C; c += ${wg}u) { y[o + c] = (x[o + c] - m) * rs * w[c]${bias ? " + b[c]" : ""}; }`
    : `var s = 0.0;
  for (var c = l; c < p.C; c += ${wg}u) { let xv = x[o + c]; s += xv * xv; }
  let rs = inverseSqrt(wg_sum(s, l) / f32(p.C) + p.eps);
  if (l == 0u) { rstd[row] = rs; }
  for (var c = l; c < p.C; c += ${wg}u) { y[o + c] = (x[o + c] * rs) * (p.offset + w[c]); }`;
  return `${head.reduce}${wgslHeader(spec)}fn main(${MAIN_ARGS}) {
  ${head.prelude}
  ${body}
}
`;
});

function dxSpec(kind: NormOpKind, wg: number): KernelSpec {
  return {
    label: `norm.${kind}_backward_dx`,
    params: ROW_PARAMS,
    bindings: [
      f32rw("dx"),
      f32r("dy"),
      f32r("x"),
      f32r("w"),
      ...(kind === "layer" ? [f32r("mean")] : []),
      f32r("rstd"),
    ],
    workgroupSize: [rowGroupSize(wg), 1, 1],
  };
}

const dxCode = memo((key: Key) => {
  const [kind, , w] = key.split(":");
  const wg = Number(w), layer = kind === "layer";
  const m = layer ? "mean[row]" : "0.0";
  const wv = layer ? "w[c]" : "(p.offset + w[c])";
  const head = rowHead(wg);
  return `${head.reduce}${wgslHeader(dxSpec(kind as NormOpKind, wg))}fn main(${MAIN_ARGS}) {
  ${head.prelude}
  let m = ${m};
  let rs = rstd[row];
  var acc = vec2<f32>(0.0, 0.0);
  for (var c = l; c < p.C; c += ${wg}u) {
    let g = dy[o + c] * ${wv};
    acc += vec2<f32>(g, g * ((x[o + c] - m) * rs));
  }
  let s = wg_sum2(acc, l) / f32(p.C);
  for (var c = l; c < p.C; c += ${wg}u) {
    let g = dy[o + c] * ${wv};
    dx[o + c] = rs * (g - ${layer ? "s.x" : "0.0"} - ((x[o + c] - m) * rs) * s.y);
  }
}
`;
});

const DW_PARAMS = { rows: "u32", C: "u32", chunk: "u32", nchunks: "u32" } as const;

function dwSpec(kind: NormOpKind, bias: boolean): KernelSpec {
  return {
    label: `norm.${kind}_backward_dw`,
    params: DW_PARAMS,
    bindings: [
      f32rw("pw"),
      ...(bias ? [f32rw("pb")] : []),
      f32r("dy"),
      f32r("x"),
      ...(kind === "layer" ? [f32r("mean")] : []),
      f32r("rstd"),
    ],
    workgroupSize: [COL_WG, 1, 1],
  };
}

const dwCode = memo((key: Key) => {
  const [kind, b] = key.split(":");
  const bias = b === "true";
  return `${
    wgslHeader(dwSpec(kind as NormOpKind, bias))
  }fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let s = gid.y;
  if (c >= p.C) { return; }
  let r1 = min(p.rows, (s + 1u) * p.chunk);
  var aw = 0.0;
  var ab = 0.0;
  for (var r = s * p.chunk; r < r1; r++) {
    let d = dy[r * p.C + c];
    aw += d * ((x[r * p.C + c] - ${kind === "layer" ? "mean[r]" : "0.0"}) * rstd[r]);
    ab += d;
  }
  pw[s * p.C + c] = aw;
  ${bias ? "pb[s * p.C + c] = ab;" : "_ = ab;"}
}
`;
});

function sumSpec(bias: boolean): KernelSpec {
  return {
    label: "norm.backward_dw_sum",
    params: DW_PARAMS,
    bindings: [f32rw("dw"), ...(bias ? [f32rw("db")] : []), f32r("pw"), ...(bias ? [f32r("pb")] : [])],
    workgroupSize: [COL_WG, 1, 1],
  };
}

const sumCode = memo((b: number) => {
  const bias = b === 1;
  return `const WG = ${COL_WG}u;\n${wgslHeader(sumSpec(bias))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.C) { return; }
  var aw = 0.0;
  var ab = 0.0;
  for (var s = 0u; s < p.nchunks; s++) {
    aw += pw[s * p.C + gid];
    ${bias ? "ab += pb[s * p.C + gid];" : ""}
  }
  dw[gid] = aw;
  ${bias ? "db[gid] = ab;" : "_ = ab;"}
}
`;
});

/**
 * Invocations per row: a workgroup of 64 (256 when C >= 1024) sharing a row; on CPU adapters with
 * C < 1024, 1: one invocation per row, summing in order. There each workgroup launch and barrier
 * costs more than a short row's arithmetic: rms forward / backward over [4096, 128] took 8.9 / 12.5
 * ms with a workgroup per row and 4.9 / 8.9 ms with an invocation per row (llvmpipe, 2 cores).
 */
function rowWg(gpu: Gpu, C: number): number {
  if (rowLayout === "invocation" || (rowLayout === "auto" && C < 1024 && isCpuAdapter(gpu))) return 1;
  return C >= 1024 ? 256 : 64;
}

let rowLayout: NormRowLayout = "auto";

/** How the row kernels (forward, dx) spread a row: see {@linkcode setNormRowLayout}. */
export type NormRowLayout = "auto" | "workgroup" | "invocation";

/**
 * Force the row kernels' layout on every adapter (tests and benchmarks run both): `workgroup` (a
 * workgroup per row, a tree reduction), `invocation` (one invocation per row) or `auto` (the
 * default: `invocation` on CPU adapters). Returns the previous setting.
 */
export function setNormRowLayout(layout: NormRowLayout): NormRowLayout {
  const prev = rowLayout;
  rowLayout = layout;
  return prev;
}

/** The workgroup size of the row kernels for `wg` invocations per row. */
function rowGroupSize(wg: number): number {
  return wg > 1 ? wg : ROWS_WG;
}

/** The grid of the row kernels for `wg` invocations per row. */
function rowGrid(wg: number, rows: number): [number, number, number] {
  return wg > 1 ? grid1d(rows) : gridFor(rows, ROWS_WG);
}

// ---- validation ----

function checkRows(
  op: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  more: [string, Tensor, readonly number[]][],
): { rows: number; C: number } {
  const all: [string, Tensor][] = [
    ["x", x],
    ["weight", weight],
    ...(bias ? [["bias", bias]] as [string, Tensor][] : []),
  ];
  for (const [w, t] of more) all.push([w, t]);
  expectSameBackend(op, ...all.map(([, t]) => t));
  for (const [w, t] of all) expectDtype(op, w, t, "f32");
  if (x.rank < 1 || x.shape[x.rank - 1] === 0) {
    throw new TypeError(`Cannot run ${op}: x has shape ${shapeText(x.shape)}, expected (..., C) with C > 0`);
  }
  const C = x.shape[x.rank - 1], rows = x.size / C;
  const expect: [string, Tensor, readonly number[]][] = [
    ["weight", weight, [C]],
    ...(bias ? [["bias", bias, [C]]] as [string, Tensor, number[]][] : []),
    ...more,
  ];
  for (const [w, t, s] of expect) {
    const shape = s.map((d) => (d === -1 ? rows : d));
    if (t.shape.join() !== shape.join()) {
      throw new TypeError(
        `Cannot run ${op}: ${w} has shape ${shapeText(t.shape)}, expected ${shapeText(shape)} for x ${
          shapeText(x.shape)
        }`,
      );
    }
  }
  return { rows, C };
}

// ---- launchers ----

/**
 * Launcher: LayerNorm forward (`bias` may be null); writes `out` and the per-row `mean`, `rstd` (N).
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function layerNormForward(
  out: Tensor,
  mean: Tensor,
  rstd: Tensor,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  eps: number,
): void {
  const { rows, C } = checkRows("norm.layer_forward", x, weight, bias, [
    ["out", out, x.shape],
    ["mean", mean, [-1]],
    ["rstd", rstd, [-1]],
  ]);
  if (x.backend.name === "cpu") {
    return layerNormReference(
      out.data,
      mean.data,
      rstd.data,
      x.data,
      weight.data,
      bias?.data ?? null,
      C,
      Math.fround(eps),
    );
  }
  const wg = rowWg(x.backend.device, C);
  const ts = [out, mean, rstd, x, weight, ...(bias ? [bias] : [])];
  launch(
    fwdSpec("layer", !!bias, wg),
    fwdCode(`layer:${!!bias}:${wg}`),
    ts,
    { rows, C, eps, offset: 0 },
    rowGrid(wg, rows),
  );
}

/**
 * Launcher: RMSNorm forward; writes `out` and the per-row `rstd` (N).
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function rmsNormForward(
  out: Tensor,
  rstd: Tensor,
  x: Tensor,
  weight: Tensor,
  eps: number,
  offset: number,
): void {
  const { rows, C } = checkRows("norm.rms_forward", x, weight, null, [["out", out, x.shape], ["rstd", rstd, [
    -1,
  ]]]);
  if (x.backend.name === "cpu") {
    return rmsNormReference(
      out.data,
      rstd.data,
      x.data,
      weight.data,
      C,
      Math.fround(eps),
      Math.fround(offset),
    );
  }
  const wg = rowWg(x.backend.device, C);
  launch(fwdSpec("rms", false, wg), fwdCode(`rms:false:${wg}`), [out, rstd, x, weight], {
    rows,
    C,
    eps,
    offset,
  }, rowGrid(wg, rows));
}

/**
 * Launcher: backward of either norm. Writes `dx`, `dweight` and (layer norm with bias) `dbias`;
 * `mean` is null for rms. The weight and bias gradients are sums over rows, computed without
 * atomics in a fixed order.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function normBackward(
  kind: NormOpKind,
  dx: Tensor,
  dweight: Tensor,
  dbias: Tensor | null,
  dy: Tensor,
  x: Tensor,
  weight: Tensor,
  mean: Tensor | null,
  rstd: Tensor,
  offset = 0,
): void {
  const op = `norm.${kind}_backward`;
  if (kind === "layer" && !mean) throw new TypeError(`Cannot run ${op}: mean is required for layer norm`);
  if (kind === "rms" && dbias) throw new TypeError(`Cannot run ${op}: rms norm has no bias`);
  const { rows, C } = checkRows(op, x, weight, null, [
    ["dx", dx, x.shape],
    ["dy", dy, x.shape],
    ["dweight", dweight, [C_OF(x)]],
    ...(dbias ? [["dbias", dbias, [C_OF(x)]]] as [string, Tensor, number[]][] : []),
    ...(mean ? [["mean", mean, [-1]]] as [string, Tensor, number[]][] : []),
    ["rstd", rstd, [-1]],
  ]);
  if (x.backend.name === "cpu") {
    return normBackwardReference(
      kind,
      dx.data,
      dweight.data,
      dbias?.data ?? null,
      dy.data,
      x.data,
      weight.data,
      mean?.data ?? null,
      rstd.data,
      C,
      Math.fround(offset),
    );
  }
  const wg = rowWg(x.backend.device, C);
  const stats = kind === "layer" ? [mean!, rstd] : [rstd];
  launch(dxSpec(kind, wg), dxCode(`${kind}:false:${wg}`), [dx, dy, x, weight, ...stats], {
    rows,
    C,
    eps: 0,
    offset,
  }, rowGrid(wg, rows));
  // dw/db: partial sums per chunk of rows, then one ordered sum per column.
  const bias = !!dbias;
  const nchunks = Math.max(1, Math.ceil(rows / ROWS_PER_CHUNK));
  const params = { rows, C, chunk: ROWS_PER_CHUNK, nchunks };
  const direct = nchunks === 1;
  const pw = direct ? dweight : x.backend.empty([nchunks, C]);
  const pb = bias ? (direct ? dbias! : x.backend.empty([nchunks, C])) : null;
  launch(
    dwSpec(kind, bias),
    dwCode(`${kind}:${bias}:${COL_WG}`),
    [pw, ...(pb ? [pb] : []), dy, x, ...stats],
    params,
    [Math.ceil(C / COL_WG), nchunks, 1],
  );
  if (direct) return;
  launch(
    sumSpec(bias),
    sumCode(bias ? 1 : 0),
    [dweight, ...(bias ? [dbias!] : []), pw, ...(pb ? [pb] : [])],
    params,
    gridFor(C, COL_WG),
  );
  pw.dispose();
  pb?.dispose();
}

function C_OF(x: Tensor): number {
  return x.shape[x.rank - 1] ?? 0;
}

// ---- differentiable ops ----

/** Options for {@linkcode layerNorm}. */
export interface LayerNormOptions {
  /** Added to the variance (torch's default 1e-5; GPT-2 `layer_norm_epsilon`). */
  eps?: number;
}

/**
 * LayerNorm over the last axis (differentiable in x, weight and bias). `bias` may be null or
 * omitted (`bias=False`). Matches `torch.nn.functional.layer_norm` (biased variance).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { layerNorm } from "./norm.ts";
 * const cpu = await createBackend("cpu");
 * const y = await layerNorm(cpu.fromArray([1, 3], [1, 2]), cpu.fromArray([1, 1], [2]), null, { eps: 0 }).toArray();
 * if (y.join() !== "-1,1") throw new Error("layerNorm");
 * ```
 */
export function layerNorm(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  opts: LayerNormOptions = {},
): Tensor {
  const eps = opts.eps ?? 1e-5;
  const rows = x.size / Math.max(1, C_OF(x));
  const be = x.backend;
  const out = be.empty(x.shape), mean = be.empty([rows]), rstd = be.empty([rows]);
  try {
    layerNormForward(out, mean, rstd, x, weight, bias ?? null, eps);
  } catch (e) {
    for (const t of [out, mean, rstd]) t.dispose();
    throw e;
  }
  return record(out, "layer_norm", [x, weight, bias ?? null], (g) => {
    const dx = be.empty(x.shape), dw = be.empty(weight.shape), db = bias ? be.empty(bias.shape) : null;
    normBackward("layer", dx, dw, db, g, x, weight, mean, rstd);
    return [dx, dw, db];
  }, [mean, rstd]);
}

/** Options for {@linkcode rmsNorm}. */
export interface RmsNormOptions {
  /** Added to the mean square (Llama `rms_norm_eps`; default 1e-6). */
  eps?: number;
  /** The weight is applied as `(offset + w)`: 0 for Llama/Mistral/Qwen2, 1 for Gemma. */
  offset?: number;
}

/**
 * RMSNorm over the last axis (differentiable in x and weight): `x * rsqrt(mean(x^2) + eps) *
 * (offset + weight)`, as `LlamaRMSNorm` (offset 0) and `GemmaRMSNorm` (offset 1).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { rmsNorm } from "./norm.ts";
 * const cpu = await createBackend("cpu");
 * const y = await rmsNorm(cpu.fromArray([3, 4], [1, 2]), cpu.fromArray([1, 2], [2]), { eps: 0 }).toArray();
 * const r = Math.sqrt(12.5);
 * if (Math.abs(y[0] - 3 / r) > 1e-6 || Math.abs(y[1] - 8 / r) > 1e-6) throw new Error("rmsNorm");
 * ```
 */
export function rmsNorm(x: Tensor, weight: Tensor, opts: RmsNormOptions = {}): Tensor {
  const eps = opts.eps ?? 1e-6, offset = opts.offset ?? 0;
  const rows = x.size / Math.max(1, C_OF(x));
  const be = x.backend;
  const out = be.empty(x.shape), rstd = be.empty([rows]);
  try {
    rmsNormForward(out, rstd, x, weight, eps, offset);
  } catch (e) {
    out.dispose();
    rstd.dispose();
    throw e;
  }
  return record(out, "rms_norm", [x, weight], (g) => {
    const dx = be.empty(x.shape), dw = be.empty(weight.shape);
    normBackward("rms", dx, dw, null, g, x, weight, null, rstd, offset);
    return [dx, dw];
  }, [rstd]);
}
