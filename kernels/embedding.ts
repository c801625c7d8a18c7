/**
 * Token embedding: a gather of weight rows by id, and its backward, a scatter-add of the output
 * gradient into a `(V, C)` weight gradient.
 *
 * Math: out[n, c] = W[ids[n], c];  dW[v, c] = sum over n with ids[n] = v of dy[n, c]
 * (duplicate ids in a batch add up; the sum runs in token order, so it is deterministic).
 * Shapes: ids (B, T) or any, i32 or u32; W (V, C); out, dy (B, T, C) = (..., C).
 *
 * Out-of-range ids (negative, or >= V) are an error on both backends, with one message:
 * `Cannot run embedding: token id 600 at position 17 is outside the vocabulary [0, 512); use the
 * model's tokenizer` (position: the flat index into ids). The cpu backend throws it at once, naming
 * the first bad id. A kernel cannot throw and a readback per call would cost a submit, so the webgpu
 * kernels record the failure in the device's fault record (`Gpu.fault`, one more storage binding)
 * and the next readback (the loss read, any `toArray()`, `sync()`) throws it; with several bad ids
 * it names one of them. Until then the forward writes zero rows for bad ids and the backward drops
 * their gradient (a defined result, never used: the step's readback throws).
 *
 * Kernels and grids:
 * - forward: one invocation per output element (WG 256, folded 2-D).
 * - backward: no atomics in the sum, in two dispatches. The vocabulary rows are cut into S slices
 *   (C * S >= 16384 invocations, at most 64 slices). `backward_bucket`: invocation s lists the
 *   tokens whose id falls in slice s, in token order (a u32 scratch buffer of S * (N + 1)).
 *   `backward`: invocation (c, s) owns column c of slice s's rows and adds dy[n, c] for the tokens
 *   of its list, in order; so no two invocations ever write the same element and each element sums
 *   its tokens in token order. Grid (ceil(C/64), S). Each token's dy row is read once, where one
 *   pass in which every invocation scanned all N ids cost 181 ms for N = V = 4096, C = 128
 *   (llvmpipe, 2 cores).
 * Limits: a weight larger than one storage binding (128k x 4096 f32 is 2 GiB) is processed in
 * aligned windows of rows, one dispatch per window, for the forward and the backward; ids, out
 * and dy must each fit one binding.
 *
 * @module
 */
import {
  gridFor,
  type KernelSpec,
  launch,
  LINEAR_INDEX,
  MAIN_ARGS,
  range,
  rowWindows,
  wgslHeader,
} from "./_kernel.ts";
import { record } from "./autograd.ts";
import { type FaultMessage, WGSL_REPORT_FAULT } from "./gpu.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

const WG = 256;
const COL_WG = 64;
const MAX_SLICES = 64;
const BUCKET_WG = 64;

// ---- references ----

/** The one message for a bad id, thrown by the cpu reference and by the webgpu device check. */
function idMessage(id: number, n: number, V: number): string {
  return `Cannot run embedding: token id ${id} at position ${n} is outside the vocabulary [0, ${V}); use the model's tokenizer`;
}

/** The device check's message; `extra` is 1 for i32 ids (the u32 word is shown signed). */
const ID_FAULT: FaultMessage = (f) => idMessage(f.extra === 1 ? f.value | 0 : f.value, f.index, f.bound);

/**
 * Throw a RangeError for the first id outside `[0, V)`.
 * @throws {RangeError} `Cannot run embedding: token id 50300 at position 17 is outside the
 * vocabulary [0, 50257); use the model's tokenizer`
 */
export function checkIds(ids: ArrayLike<number>, V: number): void {
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n];
    if (!(id >= 0 && id < V)) throw new RangeError(idMessage(id, n, V));
  }
}

/** Reference forward: `out[n, c] = weight[ids[n], c]`. @throws {RangeError} on an out-of-range id */
export function embeddingReference(
  out: WritableArray,
  ids: ArrayLike<number>,
  weight: ArrayLike<number>,
  C: number,
): void {
  checkIds(ids, weight.length / C);
  for (let n = 0; n < ids.length; n++) {
    for (let c = 0; c < C; c++) out[n * C + c] = weight[ids[n] * C + c];
  }
}

/**
 * Reference backward: `dweight` (overwritten) = scatter-add of `dy` rows by id, in token order.
 * @throws {RangeError} on an out-of-range id
 */
export function embeddingBackwardReference(
  dweight: WritableArray,
  dy: ArrayLike<number>,
  ids: ArrayLike<number>,
  C: number,
): void {
  checkIds(ids, dweight.length / C);
  for (let i = 0; i < dweight.length; i++) dweight[i] = 0;
  for (let n = 0; n < ids.length; n++) {
    for (let c = 0; c < C; c++) dweight[ids[n] * C + c] += dy[n * C + c];
  }
}

// ---- WGSL ----

const PARAMS = {
  N: "u32",
  C: "u32",
  V: "u32",
  v0: "u32",
  vcount: "u32",
  first: "u32",
  slice: "u32",
  code: "u32",
  signed: "u32",
} as const;

/** The device's fault record (see gpu.ts): where the window-0 dispatch reports a bad id. */
const FAULT = { name: "fault", type: "atomic<u32>", access: "read_write" } as const;

const FWD_SPEC: KernelSpec = {
  label: "embedding.forward",
  params: PARAMS,
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "ids", type: "u32", access: "read" },
    { name: "w", type: "f32", access: "read" },
    FAULT,
  ],
  workgroupSize: [WG, 1, 1],
};

// ids are read as u32 for both dtypes: a negative i32 becomes >= 2^31 > V, i.e. out of range.
const FWD_CODE = `const WG = ${WG}u;\n${WGSL_REPORT_FAULT}${wgslHeader(FWD_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.N * p.C) { return; }
  let n = gid / p.C;
  let c = gid % p.C;
  let id = ids[n];
  if (id >= p.v0 && id - p.v0 < p.vcount) {
    out[gid] = w[(id - p.v0) * p.C + c];
  } else if (p.first == 1u && id >= p.V) {
    out[gid] = 0.0; // out-of-range id: defined result, and a fault the next readback throws
    if (c == 0u) { report_fault(p.code, id, n, p.V, p.signed); }
  }
}
`;

// The backward in two passes, so that no invocation scans every token for every column:
// 1. bucket: invocation s (one per slice of vocabulary rows) lists, in token order, the tokens whose
//    id falls in its slice: `count[s]` then their indices at `list[S + s * N ..]` (one u32 scratch
//    buffer `[S + S * N]`); slice 0 of window 0 reports the first bad id.
// 2. accumulate: invocation (c, s) owns column c of slice s's rows and adds dy[n, c] for the
//    tokens of its list, in token order: no two invocations write the same element, and each
//    element sums its tokens in token order (the cpu reference's order).
const BUCKET_SPEC: KernelSpec = {
  label: "embedding.backward_bucket",
  params: PARAMS,
  bindings: [
    { name: "list", type: "u32", access: "read_write" },
    { name: "ids", type: "u32", access: "read" },
    FAULT,
  ],
  workgroupSize: [BUCKET_WG, 1, 1],
};

const BUCKET_CODE = `const WG = ${BUCKET_WG}u;\n${WGSL_REPORT_FAULT}${
  wgslHeader(BUCKET_SPEC)
}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  let S = (p.vcount + p.slice - 1u) / p.slice;
  if (gid >= S) { return; }
  let lo = p.v0 + gid * p.slice;
  let hi = p.v0 + min(p.vcount, (gid + 1u) * p.slice);
  let check = p.first == 1u && gid == 0u;
  let base = S + gid * p.N;
  var k = 0u;
  for (var n = 0u; n < p.N; n++) {
    let id = ids[n];
    if (id >= lo && id < hi) {
      list[base + k] = n;
      k++;
    } else if (check && id >= p.V) {
      report_fault(p.code, id, n, p.V, p.signed);
    }
  }
  list[gid] = k;
}
`;

const BWD_SPEC: KernelSpec = {
  label: "embedding.backward",
  params: PARAMS,
  bindings: [
    { name: "dw", type: "f32", access: "read_write" },
    { name: "dy", type: "f32", access: "read" },
    { name: "ids", type: "u32", access: "read" },
    { name: "list", type: "u32", access: "read" },
  ],
  workgroupSize: [COL_WG, 1, 1],
};

const BWD_CODE = `${wgslHeader(BWD_SPEC)}fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let c = g.x;
  if (c >= p.C) { return; }
  // This invocation owns column c of the rows of slice g.y: no other invocation writes them.
  let S = (p.vcount + p.slice - 1u) / p.slice;
  let base = S + g.y * p.N;
  let k1 = list[g.y];
  for (var k = 0u; k < k1; k++) {
    let n = list[base + k];
    let i = (ids[n] - p.v0) * p.C + c;
    dw[i] = dw[i] + dy[n * p.C + c];
  }
}
`;

// ---- launchers ----

function check(
  op: string,
  out: Tensor,
  ids: Tensor,
  weight: Tensor,
  outName: string,
): { N: number; V: number; C: number } {
  expectSameBackend(op, out, ids, weight);
  expectDtype(op, "ids", ids, "i32", "u32");
  expectDtype(op, "weight", weight, "f32");
  expectDtype(op, outName, out, "f32");
  if (weight.rank !== 2 || weight.size === 0) {
    throw new TypeError(
      `Cannot run ${op}: weight has shape ${shapeText(weight.shape)}, expected (V, C) with V, C > 0`,
    );
  }
  const [V, C] = weight.shape;
  const want = [...ids.shape, C];
  if (out.shape.join() !== want.join()) {
    throw new TypeError(
      `Cannot run ${op}: ${outName} has shape ${shapeText(out.shape)}, expected ${shapeText(want)}`,
    );
  }
  return { N: ids.size, V, C };
}

/**
 * Launcher: `out = weight[ids]`.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 * @throws {RangeError} when an id is outside `[0, V)`: at once on cpu, at the next readback on
 * webgpu (see the module header)
 */
export function embeddingForward(out: Tensor, ids: Tensor, weight: Tensor): void {
  const { N, V, C } = check("embedding.forward", out, ids, weight, "out");
  if (out.backend.name === "cpu") return embeddingReference(out.data, ids.data, weight.data, C);
  if (N === 0) return;
  const gpu = out.backend.device;
  const wins = rowWindows(gpu, "embedding.forward", V, C * 4);
  const fault = gpu.fault(ID_FAULT);
  const signed = ids.dtype === "i32" ? 1 : 0;
  wins.forEach(([v0, vcount], i) => {
    const w = wins.length === 1 ? weight : range(weight, v0 * C, vcount * C);
    const params = { N, C, V, v0, vcount, first: i === 0 ? 1 : 0, slice: 0, code: fault.code, signed };
    launch(FWD_SPEC, FWD_CODE, [out, ids, w, fault.binding], params, gridFor(N * C, WG));
  });
}

/**
 * Launcher: `dweight` (overwritten, `(V, C)`) = scatter-add of `dy` by `ids`; duplicates add up in
 * token order (deterministic, no atomics).
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 * @throws {RangeError} when an id is outside `[0, V)`: at once on cpu, at the next readback on
 * webgpu (see the module header)
 */
export function embeddingBackward(dweight: Tensor, dy: Tensor, ids: Tensor): void {
  const { N, V, C } = check("embedding.backward", dy, ids, dweight, "dy");
  if (dy.backend.name === "cpu") return embeddingBackwardReference(dweight.data, dy.data, ids.data, C);
  const gpu = dy.backend.device;
  gpu.clear(dweight.buffer, 0, V * C * 4);
  if (N === 0) return;
  const wins = rowWindows(gpu, "embedding.backward", V, C * 4);
  const fault = gpu.fault(ID_FAULT);
  const signed = ids.dtype === "i32" ? 1 : 0;
  const maxSlices = Math.max(1, Math.min(MAX_SLICES, Math.floor(gpu.maxBinding / 4 / (N + 1))));
  wins.forEach(([v0, vcount], i) => {
    const dw = wins.length === 1 ? dweight : range(dweight, v0 * C, vcount * C);
    const slices = Math.max(1, Math.min(maxSlices, vcount, Math.ceil(16384 / C)));
    const slice = Math.ceil(vcount / slices);
    const S = Math.ceil(vcount / slice);
    const params = { N, C, V, v0, vcount, first: i === 0 ? 1 : 0, slice, code: fault.code, signed };
    const list = dy.backend.empty([S * (N + 1)], "u32");
    launch(BUCKET_SPEC, BUCKET_CODE, [list, ids, fault.binding], params, gridFor(S, BUCKET_WG));
    launch(BWD_SPEC, BWD_CODE, [dw, dy, ids, list], params, [Math.ceil(C / COL_WG), S, 1]);
    list.dispose();
  });
}

/**
 * Look up rows of `weight` `(V, C)` by `ids` (i32 or u32, any shape); returns `(...ids.shape, C)`.
 * Differentiable in `weight` (duplicate ids accumulate). An id outside `[0, V)` is a RangeError:
 * thrown at once on cpu, and on webgpu by the next readback (`toArray()`, the loss read, `sync()`).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { embedding } from "./embedding.ts";
 * const cpu = await createBackend("cpu");
 * const w = cpu.fromArray([1, 2, 3, 4, 5, 6], [3, 2]);
 * const y = embedding(cpu.fromArray([2, 0], [2], "i32"), w);
 * if ((await y.toArray()).join() !== "5,6,1,2") throw new Error("embedding");
 * let err = "";
 * try {
 *   embedding(cpu.fromArray([3], [1], "i32"), w);
 * } catch (e) {
 *   err = (e as RangeError).message;
 * }
 * if (!err.includes("token id 3 at position 0 is outside the vocabulary [0, 3)")) throw new Error(err);
 * ```
 */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  const C = weight.rank === 2 ? weight.shape[1] : 0;
  const out = weight.backend.empty([...ids.shape, C]);
  try {
    embeddingForward(out, ids, weight);
  } catch (e) {
    out.dispose();
    throw e;
  }
  // A view of ids for the backward (the caller may dispose its own handle after the forward).
  const saved = ids.reshape(ids.shape);
  return record(out, "embedding", [weight], (g) => {
    const dw = weight.backend.empty(weight.shape);
    embeddingBackward(dw, g, saved);
    return [dw];
  }, [saved]);
}
