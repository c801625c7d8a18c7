/**
 * Private helpers shared by the op files: one description of a kernel's parameters and bindings
 * generates both the WGSL declarations and the packed uniform bytes, so no constant is copied by
 * hand between TypeScript and WGSL.
 *
 * @module
 */
import { type BufferRange, type Gpu, grid1d } from "./gpu.ts";
import type { Tensor } from "./tensor.ts";

/** Scalar kinds allowed in a params struct. */
export type ParamKind = "u32" | "i32" | "f32";

/** Ordered field list of a kernel's uniform params struct. */
export type ParamSpec = Readonly<Record<string, ParamKind>>;

/** One storage binding of a kernel. */
export interface BindingSpec {
  name: string;
  /** WGSL element type, e.g. `f32`, `vec4<f32>`, `u32`, `i32`, `f16`, `atomic<u32>`. */
  type: string;
  access: "read" | "read_write";
}

/** What a kernel declares: params, bindings and workgroup size. */
export interface KernelSpec {
  label: string;
  params?: ParamSpec;
  bindings: readonly BindingSpec[];
  workgroupSize: readonly [number, number, number];
  /** Needs `enable f16;`. */
  f16?: boolean;
}

/**
 * The WGSL header for a kernel: `enable` lines, the `Params` struct and `@binding(0)` uniform when
 * params exist, the storage bindings in order, and the `@compute @workgroup_size(...)` attribute
 * line (the caller appends `fn main(...) { ... }`).
 */
export function wgslHeader(spec: KernelSpec): string {
  let s = spec.f16 ? "enable f16;\n" : "";
  let b = 0;
  const fields = spec.params ? Object.entries(spec.params) : [];
  if (fields.length) {
    s += `struct Params {\n${fields.map(([k, t]) => `  ${k}: ${t},`).join("\n")}\n}\n`;
    s += `@group(0) @binding(${b++}) var<uniform> p: Params;\n`;
  }
  for (const bind of spec.bindings) {
    s += `@group(0) @binding(${b++}) var<storage, ${bind.access}> ${bind.name}: array<${bind.type}>;\n`;
  }
  s += `@compute @workgroup_size(${spec.workgroupSize.join(", ")})\n`;
  return s;
}

/** Pack param values in the spec's field order (16-byte padded). */
export function packParams(spec: ParamSpec, values: Readonly<Record<string, number>>): ArrayBuffer {
  const fields = Object.entries(spec);
  const buf = new ArrayBuffer(Math.max(16, Math.ceil(fields.length * 4 / 16) * 16));
  const dv = new DataView(buf);
  fields.forEach(([k, t], i) => {
    const v = values[k];
    if (v === undefined) throw new TypeError(`Cannot pack kernel params: missing value for ${k}`);
    if (t === "f32") dv.setFloat32(i * 4, v, true);
    else if (t === "u32") dv.setUint32(i * 4, v >>> 0, true);
    else dv.setInt32(i * 4, v | 0, true);
  });
  return buf;
}

/** A binding covering a tensor's elements (or an element window of it). */
export function range(t: Tensor, elemOffset = 0, elems = t.size): BufferRange {
  const eb = t.dtype === "f16" ? 2 : 4;
  const size = Math.max(4, Math.ceil(elems * eb / 4) * 4);
  return { buffer: t.buffer, offset: elemOffset * eb, size };
}

/**
 * Record one kernel dispatch on the tensors' GPU: the pipeline for `code` (cached), the bindings in
 * `spec.bindings` order, packed params and the grid.
 */
export function launch(
  spec: KernelSpec,
  code: string,
  bindings: readonly (Tensor | BufferRange)[],
  params: Readonly<Record<string, number>> | null,
  grid: readonly [number, number, number],
  constants?: Record<string, number>,
): void {
  const first = bindings.find((b): b is Tensor => "backend" in b);
  if (!first) throw new TypeError(`Cannot launch ${spec.label}: no tensor bindings`);
  launchOn(first.backend.device, spec, code, bindings, params, grid, constants);
}

/**
 * {@linkcode launch} on an explicit GPU, for dispatches whose bindings are all windows
 * (`BufferRange`s) of tensors too large for one binding.
 */
export function launchOn(
  gpu: Gpu,
  spec: KernelSpec,
  code: string,
  bindings: readonly (Tensor | BufferRange)[],
  params: Readonly<Record<string, number>> | null,
  grid: readonly [number, number, number],
  constants?: Record<string, number>,
): void {
  if (bindings.length !== spec.bindings.length) {
    throw new TypeError(
      `Cannot launch ${spec.label}: ${bindings.length} bindings given, kernel declares ${spec.bindings.length}`,
    );
  }
  const ranges = bindings.map((b) => ("backend" in b ? range(b) : b));
  for (let i = 0; i < ranges.length; i++) {
    if (ranges[i].size > gpu.maxBinding) {
      throw new RangeError(
        `Cannot run ${spec.label}: binding ${spec.bindings[i].name} is ${
          ranges[i].size
        } bytes, over the device's ` +
          `maxStorageBufferBindingSize ${gpu.maxBinding}`,
      );
    }
  }
  const pipeline = gpu.pipeline(spec.label, code, constants);
  gpu.dispatch(pipeline, ranges, spec.params && params ? packParams(spec.params, params) : null, grid);
}

/** Grid for `n` invocations of a 1-D kernel with workgroup size `wg` (folded into 2-D past 65535). */
export function gridFor(n: number, wg: number): [number, number, number] {
  return grid1d(Math.ceil(n / wg));
}

/** WGSL snippet: the linear invocation index for kernels launched with {@linkcode gridFor}. */
export const LINEAR_INDEX = "let gid = wid.x * WG + lid.x + wid.y * nwg.x * WG;" as const;

/** WGSL `main` parameter list matching {@linkcode LINEAR_INDEX}. */
export const MAIN_ARGS =
  "@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>" as const;

/** Memoize a code builder by a typed key (pipelines are cached by code; this skips rebuilding strings). */
export function memo<K extends string | number, V>(build: (key: K) => V): (key: K) => V {
  const cache = new Map<K, V>();
  return (key: K) => {
    let v = cache.get(key);
    if (v === undefined) cache.set(key, v = build(key));
    return v;
  };
}

/**
 * Split `rows` rows of `rowBytes` bytes each into windows that fit one storage binding
 * (`maxBytes`, default the device's `maxBinding`) and start at offsets the device accepts (a
 * multiple of `minStorageBufferOffsetAlignment`). Returns `[firstRow, rowCount]` pairs covering
 * every row in order (one pair when everything fits; none when `rows` is 0).
 * @throws {RangeError} when a single aligned group of rows is larger than one binding
 */
export function rowWindows(
  gpu: Gpu,
  label: string,
  rows: number,
  rowBytes: number,
  maxBytes: number = gpu.maxBinding,
): [number, number][] {
  if (rows * rowBytes <= maxBytes) return rows > 0 ? [[0, rows]] : [];
  const align = gpu.info.limits.minStorageBufferOffsetAlignment;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const quantum = align / gcd(rowBytes, align); // rows per aligned step
  const per = Math.floor(maxBytes / rowBytes / quantum) * quantum;
  if (per < 1) {
    throw new RangeError(
      `Cannot run ${label}: ${quantum} row(s) of ${rowBytes} bytes exceed the device's ` +
        `maxStorageBufferBindingSize ${maxBytes}`,
    );
  }
  const out: [number, number][] = [];
  for (let r = 0; r < rows; r += per) out.push([r, Math.min(per, rows - r)]);
  return out;
}

/**
 * WGSL snippet for kernels that run one workgroup of `wg` (a power of two) invocations per row:
 * `wg_sum(v, lid)`, `wg_sum2(v2, lid)` and `wg_max(v, lid)` return the reduction over the
 * workgroup to every invocation (tree order, deterministic). Call them from uniform control flow.
 */
export function wgslWorkgroupReduce(wg: number): string {
  if (wg < 1 || (wg & (wg - 1)) !== 0) throw new RangeError(`Cannot reduce over workgroup size ${wg}`);
  return `var<workgroup> wg_buf: array<vec2<f32>, ${wg}>;
fn wg_sum2(v: vec2<f32>, l: u32) -> vec2<f32> {
  wg_buf[l] = v;
  workgroupBarrier();
  for (var s = ${wg >> 1}u; s > 0u; s = s >> 1u) {
    if (l < s) { wg_buf[l] = wg_buf[l] + wg_buf[l + s]; }
    workgroupBarrier();
  }
  let r = wg_buf[0];
  workgroupBarrier();
  return r;
}
fn wg_sum(v: f32, l: u32) -> f32 { return wg_sum2(vec2<f32>(v, 0.0), l).x; }
fn wg_max(v: f32, l: u32) -> f32 {
  wg_buf[l] = vec2<f32>(v, 0.0);
  workgroupBarrier();
  for (var s = ${wg >> 1}u; s > 0u; s = s >> 1u) {
    if (l < s) { wg_buf[l].x = max(wg_buf[l].x, wg_buf[l + s].x); }
    workgroupBarrier();
  }
  let r = wg_buf[0].x;
  workgroupBarrier();
  return r;
}
`;
}
