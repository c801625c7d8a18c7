/**
 * Row argmax (`argmaxRows`): the index of each row's largest element, for greedy decoding on the device (the next
 * tokens feed the next step without a readback per token).
 *
 * Math: out[r] = the first c with x[r, c] = max_c x[r, c] (ties go to the lowest index, as a
 * left-to-right scan with `>` picks). Shapes: x (R, C) f32, C > 0; out (R) i32. NaN: the reference
 * never picks one (unless the row starts with it); WGSL may assume no NaN, so a row holding one
 * can differ.
 * Grid: one workgroup (WG 256) per row, folded 2-D; each invocation scans a stride of the row, then
 * a tree reduction in workgroup memory keeps (value, index) pairs.
 *
 * @module
 */
import { type KernelSpec, launch, MAIN_ARGS, wgslHeader } from "./_kernel.ts";
import { grid1d } from "./gpu.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

const WG = 256;

/** Reference: `out[r]` = the first index of the largest element of row `r` of `x` `(R, C)`. */
export function argmaxRowsReference(out: WritableArray, x: ArrayLike<number>, R: number, C: number): void {
  for (let r = 0; r < R; r++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (x[r * C + c] > x[r * C + best]) best = c;
    out[r] = best;
  }
}

const SPEC: KernelSpec = {
  label: "argmax.rows",
  params: { rows: "u32", C: "u32" },
  bindings: [
    { name: "out", type: "i32", access: "read_write" },
    { name: "x", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

// `at == C` marks "nothing yet": an invocation's first element is taken whatever its value, so a
// row of -inf still gives index 0, as the reference does.
const CODE = `const WG = ${WG}u;
var<workgroup> best: array<f32, WG>;
var<workgroup> where_: array<u32, WG>;
${wgslHeader(SPEC)}fn main(${MAIN_ARGS}) {
  let row = wid.x + wid.y * nwg.x;
  let l = lid.x;
  if (row >= p.rows) { return; }
  let o = row * p.C;
  var b = 0.0;
  var at = p.C;
  for (var c = l; c < p.C; c += WG) {
    let v = x[o + c];
    if (at == p.C || v > b) { b = v; at = c; }
  }
  best[l] = b;
  where_[l] = at;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (l < s) {
      let v = best[l + s];
      let i = where_[l + s];
      let j = where_[l];
      if (i != p.C && (j == p.C || v > best[l] || (v == best[l] && i < j))) {
        best[l] = v;
        where_[l] = i;
      }
    }
    workgroupBarrier();
  }
  if (l == 0u) {
    out[row] = i32(where_[0]);
  }
}
`;

/**
 * Launcher: `out[r]` = argmax of row `r` of `x` `(R, C)`.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 */
export function argmaxRowsForward(out: Tensor, x: Tensor): void {
  const op = "argmaxRows";
  expectSameBackend(op, out, x);
  expectDtype(op, "x", x, "f32");
  expectDtype(op, "out", out, "i32");
  if (x.rank !== 2 || x.shape[1] === 0 || out.shape.join() !== String(x.shape[0])) {
    throw new TypeError(
      `Cannot run ${op}: x ${shapeText(x.shape)} and out ${
        shapeText(out.shape)
      }, expected (R, C) with C > 0 and (R)`,
    );
  }
  const [R, C] = x.shape;
  if (out.backend.name === "cpu") return argmaxRowsReference(out.data, x.data, R, C);
  if (R === 0) return;
  launch(SPEC, CODE, [out, x], { rows: R, C }, grid1d(R));
}

/**
 * The index of the largest element of each row of `x` `(R, C)` (the first on ties), as an i32
 * `(R)` tensor on the same backend. Not differentiable.
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { argmaxRows } from "./argmax.ts";
 * const cpu = await createBackend("cpu");
 * const i = argmaxRows(cpu.fromArray([1, 5, 5, 0, 2, 1], [2, 3]));
 * if ((await i.toArray()).join() !== "1,1") throw new Error("argmax");
 * ```
 */
export function argmaxRows(x: Tensor): Tensor {
  const out = x.backend.empty([x.shape[0] ?? 0], "i32");
  argmaxRowsForward(out, x);
  return out;
}
