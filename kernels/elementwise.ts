/**
 * Elementwise ops with NumPy broadcasting: `add`, `sub`, `mul`, `div` of two tensors, `affine`
 * (`alpha * x + beta`), in-place `accumulate` (`dst += alpha * src`), `transpose` of the last
 * two dims, inverted `dropout` with a counter-based mask, and `uniformNoise` (NEFTune) from the same hash.
 *
 * Math: out[i] = a[bcast_a(i)] op b[bcast_b(i)], shapes right-aligned, rank <= 4.
 * Bindings: params, out (rw), a, b. Grid: one invocation per output element, WG = 256, folded 2-D.
 * Gradients of broadcast inputs are summed back to their shape with `sumTo` (reduce.ts).
 *
 * dropout (`nn.Dropout` in training mode): out[i] = keep(i) ? x[i] / (1 - p) : 0, where
 *   keep(i) = pcg_hash(i · 747796405 + seed · 2891336453 + 1) >= floor(p · 2³²) (u32 arithmetic,
 *   O'Neill's PCG RXS-M-XS output), so the mask is a pure function of (seed, i): the backward (and
 *   a recompute under gradient checkpointing) regenerates it instead of storing it. The same hash
 *   (`DROPOUT_HASH_WGSL`) drives the attention-probability dropout inside the attention kernels.
 *   Bindings: params, out (rw), x. Grid: one invocation per element, WG = 256, folded 2-D.
 *
 * uniformNoise (NEFTune's noise on the embeddings): out[i] = x[i] + mag · (2u(i) - 1), where
 *   u(i) = (pcg_hash(i, seed) >> 8) / 2²⁴ is uniform on [0, 1) in steps of 2⁻²⁴ (exact in f32), so
 *   the noise is uniform on [-mag, mag), a pure function of (seed, i), and its gradient is the
 *   identity. Bindings: params, out (rw), x. Grid: as dropout.
 *
 * @module
 */
import { gridFor, type KernelSpec, launch, LINEAR_INDEX, MAIN_ARGS, memo, wgslHeader } from "./_kernel.ts";
import { needsGrad, record } from "./autograd.ts";
import { sumTo } from "./reduce.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

/** Binary elementwise operators. */
export type BinaryOp = "add" | "sub" | "mul" | "div";

const WG = 256;
const MAX_RANK = 4;

/** The broadcast result shape of two shapes. @throws {TypeError} when they are incompatible */
export function broadcastShape(op: string, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1, db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new TypeError(`Cannot run ${op}: shapes ${shapeText(a)} and ${shapeText(b)} do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides (in elements) of `shape` read as `outShape` with broadcasting (0 on broadcast dims), padded to rank 4. */
function bcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const s = new Array(MAX_RANK).fill(0);
  let stride = 1;
  for (let i = shape.length - 1, j = MAX_RANK - 1; i >= 0; i--, j--) {
    s[j] = shape[i] === 1 && outShape[outShape.length - shape.length + i] !== 1 ? 0 : stride;
    stride *= shape[i];
  }
  return s;
}

function pad4(shape: readonly number[]): number[] {
  return [...new Array(MAX_RANK - shape.length).fill(1), ...shape];
}

/** Reference: out = a op b with broadcasting (the spec for the WGSL kernel). */
export function binaryReference(
  op: BinaryOp,
  out: WritableArray,
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
): void {
  const os = broadcastShape(op, aShape, bShape);
  const [d0, d1, d2, d3] = pad4(os);
  const sa = bcastStrides(aShape, os), sb = bcastStrides(bShape, os);
  let i = 0;
  for (let i0 = 0; i0 < d0; i0++) {
    for (let i1 = 0; i1 < d1; i1++) {
      for (let i2 = 0; i2 < d2; i2++) {
        for (let i3 = 0; i3 < d3; i3++, i++) {
          const x = a[i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]];
          const y = b[i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]];
          out[i] = op === "add" ? x + y : op === "sub" ? x - y : op === "mul" ? x * y : x / y;
        }
      }
    }
  }
}

const BIN_PARAMS = {
  n: "u32",
  d1: "u32",
  d2: "u32",
  d3: "u32",
  sa0: "u32",
  sa1: "u32",
  sa2: "u32",
  sa3: "u32",
  sb0: "u32",
  sb1: "u32",
  sb2: "u32",
  sb3: "u32",
} as const;

const binSpec = (op: BinaryOp): KernelSpec => ({
  label: `elementwise.${op}`,
  params: BIN_PARAMS,
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "a", type: "f32", access: "read" },
    { name: "b", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
});

const WGSL_OP: Record<BinaryOp, string> = { add: "x + y", sub: "x - y", mul: "x * y", div: "x / y" };

const binCode = memo((op: BinaryOp) =>
  `const WG = ${WG}u;\n${wgslHeader(binSpec(op))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let i3 = gid % p.d3;
  let r2 = gid / p.d3;
  let i2 = r2 % p.d2;
  let r1 = r2 / p.d2;
  let i1 = r1 % p.d1;
  let i0 = r1 / p.d1;
  let x = a[i0 * p.sa0 + i1 * p.sa1 + i2 * p.sa2 + i3 * p.sa3];
  let y = b[i0 * p.sb0 + i1 * p.sb1 + i2 * p.sb2 + i3 * p.sb3];
  out[gid] = ${WGSL_OP[op]};
}
`
);

/**
 * Launcher: `out = a op b` with broadcasting, on the tensors' backend.
 * @throws {TypeError} on incompatible shapes, dtypes or backends (before anything is dispatched)
 */
export function binaryForward(op: BinaryOp, out: Tensor, a: Tensor, b: Tensor): void {
  const label = `elementwise.${op}`;
  expectSameBackend(label, out, a, b);
  for (const [w, t] of [["out", out], ["a", a], ["b", b]] as const) expectDtype(label, w, t, "f32");
  if (a.rank > MAX_RANK || b.rank > MAX_RANK) {
    throw new TypeError(
      `Cannot run ${label}: rank over ${MAX_RANK} (${shapeText(a.shape)}, ${shapeText(b.shape)})`,
    );
  }
  const os = broadcastShape(label, a.shape, b.shape);
  if (os.join() !== out.shape.join()) {
    throw new TypeError(
      `Cannot run ${label}: out has shape ${shapeText(out.shape)}, expected ${shapeText(os)}`,
    );
  }
  if (out.backend.name === "cpu") return binaryReference(op, out.data, a.data, a.shape, b.data, b.shape);
  const [, d1, d2, d3] = pad4(os);
  const sa = bcastStrides(a.shape, os), sb = bcastStrides(b.shape, os);
  launch(binSpec(op), binCode(op), [out, a, b], {
    n: out.size,
    d1,
    d2,
    d3,
    sa0: sa[0],
    sa1: sa[1],
    sa2: sa[2],
    sa3: sa[3],
    sb0: sb[0],
    sb1: sb[1],
    sb2: sb[2],
    sb3: sb[3],
  }, gridFor(out.size, WG));
}

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const out = a.backend.empty(broadcastShape(`elementwise.${op}`, a.shape, b.shape));
  binaryForward(op, out, a, b);
  if (!needsGrad(a, b)) return out;
  return record(out, op, [a, b], (g) => {
    const be = g.backend;
    switch (op) {
      case "add":
        return [sumTo(g, a.shape), sumTo(g, b.shape)];
      case "sub":
        return [sumTo(g, a.shape), sumTo(affine(g, -1, 0), b.shape, true)];
      case "mul": {
        const ga = be.empty(g.shape), gb = be.empty(g.shape);
        binaryForward("mul", ga, g, b);
        binaryForward("mul", gb, g, a);
        return [sumTo(ga, a.shape, true), sumTo(gb, b.shape, true)];
      }
      case "div": {
        // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -(a/b)/b
        const ga = be.empty(g.shape), q = be.empty(g.shape), gb = be.empty(g.shape);
        binaryForward("div", ga, g, b);
        binaryForward("div", q, a, b);
        binaryForward("mul", gb, ga, q);
        q.dispose();
        return [sumTo(ga, a.shape, true), sumTo(affine(gb, -1, 0, true), b.shape, true)];
      }
    }
  });
}

/**
 * `a + b` with broadcasting (differentiable).
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { add } from "./elementwise.ts";
 * const cpu = await createBackend("cpu");
 * const y = add(cpu.fromArray([1, 2, 3, 4], [2, 2]), cpu.fromArray([10, 20], [2]));
 * if ((await y.toArray()).join() !== "11,22,13,24") throw new Error("add");
 * ```
 */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary("add", a, b);
}

/** `a - b` with broadcasting (differentiable). */
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary("sub", a, b);
}

/** `a * b` with broadcasting (differentiable). */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary("mul", a, b);
}

/** `a / b` with broadcasting (differentiable). */
export function div(a: Tensor, b: Tensor): Tensor {
  return binary("div", a, b);
}

// ---- affine: out = alpha * x + beta; accumulate: dst += alpha * src ----

const AFF_SPEC: KernelSpec = {
  label: "elementwise.affine",
  params: { n: "u32", alpha: "f32", beta: "f32", acc: "u32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};
const AFF_CODE = `const WG = ${WG}u;\n${wgslHeader(AFF_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let v = p.alpha * x[gid] + p.beta;
  if (p.acc == 1u) { out[gid] = out[gid] + v; } else { out[gid] = v; }
}
`;

/** Reference: `out = alpha * x + beta`, or `out += alpha * x + beta` when `acc`. */
export function affineReference(
  out: WritableArray,
  x: ArrayLike<number>,
  alpha: number,
  beta: number,
  acc: boolean,
): void {
  for (let i = 0; i < out.length; i++) out[i] = (acc ? out[i] : 0) + alpha * x[i] + beta;
}

/** Launcher for {@linkcode affineReference}. */
export function affineForward(out: Tensor, x: Tensor, alpha: number, beta: number, acc = false): void {
  const label = "elementwise.affine";
  expectSameBackend(label, out, x);
  expectDtype(label, "out", out, "f32");
  expectDtype(label, "x", x, "f32");
  if (out.size !== x.size) {
    throw new TypeError(
      `Cannot run ${label}: out ${shapeText(out.shape)} and x ${shapeText(x.shape)} differ in size`,
    );
  }
  if (out.backend.name === "cpu") {
    // f32 rounding of the constants as the kernel sees them
    return affineReference(out.data, x.data, Math.fround(alpha), Math.fround(beta), acc);
  }
  launch(AFF_SPEC, AFF_CODE, [out, x], { n: out.size, alpha, beta, acc: acc ? 1 : 0 }, gridFor(out.size, WG));
}

/**
 * `alpha * x + beta` (differentiable in x). With `consume`, `x` is disposed (for temporaries).
 */
export function affine(x: Tensor, alpha: number, beta = 0, consume = false): Tensor {
  const out = x.backend.empty(x.shape);
  affineForward(out, x, alpha, beta);
  if (consume) x.dispose();
  if (consume || !needsGrad(x)) return out;
  return record(out, "affine", [x], (g) => [affine(g, alpha, 0)]);
}

/** `dst += alpha * src` in place (not recorded; used for gradient accumulation). */
export function accumulate(dst: Tensor, src: Tensor, alpha = 1): void {
  affineForward(dst, src, alpha, 0, true);
}

/** A copy of `x` (not recorded). */
export function copy(x: Tensor): Tensor {
  const out = x.backend.empty(x.shape, x.dtype);
  if (x.backend.name === "cpu") out.data.set(x.data as never);
  else x.backend.device.copy(x.buffer, 0, out.buffer, 0, Math.ceil(x.bytes / 4) * 4);
  return out;
}

// ---- transpose of the last two dims: (..., R, C) -> (..., C, R) ----

const TR_SPEC: KernelSpec = {
  label: "elementwise.transpose",
  params: { n: "u32", rows: "u32", cols: "u32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};
const TR_CODE = `const WG = ${WG}u;\n${wgslHeader(TR_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let mat = p.rows * p.cols;
  let bi = gid / mat;
  let r = gid % mat;
  let c = r / p.rows; // out is (cols, rows)
  let rr = r % p.rows;
  out[gid] = x[bi * mat + rr * p.cols + c];
}
`;

/** Reference: batched transpose of the last two dims. */
export function transposeReference(
  out: WritableArray,
  x: ArrayLike<number>,
  rows: number,
  cols: number,
): void {
  const mat = rows * cols;
  for (let b = 0; b * mat < x.length; b++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) out[b * mat + c * rows + r] = x[b * mat + r * cols + c];
    }
  }
}

/** Transpose of the last two dims as a new contiguous tensor (differentiable). */
export function transpose(x: Tensor): Tensor {
  if (x.rank < 2) throw new TypeError(`Cannot transpose ${shapeText(x.shape)}: need rank >= 2`);
  expectDtype("elementwise.transpose", "x", x, "f32");
  const rows = x.shape[x.rank - 2], cols = x.shape[x.rank - 1];
  const out = x.backend.empty([...x.shape.slice(0, -2), cols, rows]);
  if (x.backend.name === "cpu") transposeReference(out.data, x.data, rows, cols);
  else launch(TR_SPEC, TR_CODE, [out, x], { n: x.size, rows, cols }, gridFor(x.size, WG));
  if (!needsGrad(x)) return out;
  return record(out, "transpose", [x], (g) => [transpose(g)]);
}

// ---- dropout: out[i] = keep(i) ? x[i] / (1 - p) : 0 ----

/** The keep threshold of {@linkcode dropoutReference}: `floor(p · 2³²)`, capped at `2³² - 1`. */
export function dropoutThreshold(p: number): number {
  return Math.min(Math.floor(p * 4294967296), 4294967295);
}

/** pcg_hash of `i · 747796405 + seed · 2891336453 + 1` (u32), the dropout mask's random bits. */
export function dropoutHash(seed: number, i: number): number {
  const state = (Math.imul(i, 747796405) + Math.imul(seed, 2891336453) + 1) >>> 0;
  const word = Math.imul(((state >>> (((state >>> 28) + 4) >>> 0)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/**
 * WGSL `fn dropout_hash(seed: u32, i: u32) -> u32`: {@linkcode dropoutHash} (the one WGSL copy,
 * shared by the dropout kernel and the attention kernels).
 */
export const DROPOUT_HASH_WGSL = `fn dropout_hash(seed: u32, i: u32) -> u32 {
  let state = i * 747796405u + seed * 2891336453u + 1u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
`;

/**
 * A seed for one dropout site derived from a base seed: {@linkcode dropoutHash} chained over
 * `parts` (e.g. `[site, layer]`), so every (seed, parts) gets its own mask stream.
 *
 * @example
 * ```ts
 * import { dropoutSeed } from "./elementwise.ts";
 * const a = dropoutSeed(42, [1, 0]), b = dropoutSeed(42, [1, 1]);
 * if (a === b || a !== dropoutSeed(42, [1, 0])) throw new Error("dropoutSeed");
 * ```
 */
export function dropoutSeed(seed: number, parts: readonly number[]): number {
  let s = seed >>> 0;
  for (const p of parts) s = dropoutHash(s, p >>> 0);
  return s;
}

/** Reference: `out[i] = keep(i) ? x[i] / (1 - p) : 0` (see the module header for `keep`). */
export function dropoutReference(out: WritableArray, x: ArrayLike<number>, p: number, seed: number): void {
  const thr = dropoutThreshold(p), scale = Math.fround(1 / (1 - p));
  for (let i = 0; i < out.length; i++) out[i] = dropoutHash(seed, i) >= thr ? x[i] * scale : 0;
}

const DROP_SPEC: KernelSpec = {
  label: "elementwise.dropout",
  params: { n: "u32", seed: "u32", thr: "u32", scale: "f32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};
const DROP_CODE = `const WG = ${WG}u;\n${DROPOUT_HASH_WGSL}${wgslHeader(DROP_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  if (dropout_hash(p.seed, gid) >= p.thr) { out[gid] = x[gid] * p.scale; } else { out[gid] = 0.0; }
}
`;

/** Launcher for {@linkcode dropoutReference}. @throws {TypeError} on mismatched sizes or dtypes */
export function dropoutForward(out: Tensor, x: Tensor, p: number, seed: number): void {
  const op = "elementwise.dropout";
  expectDtype(op, "x", x, "f32");
  expectDtype(op, "out", out, "f32");
  expectSameBackend(op, out, x);
  if (out.size !== x.size) {
    throw new TypeError(
      `Cannot run ${op}: out ${shapeText(out.shape)} and x ${shapeText(x.shape)} differ in size`,
    );
  }
  if (out.backend.name === "cpu") return dropoutReference(out.data, x.data, p, seed >>> 0);
  if (out.size === 0) return;
  launch(DROP_SPEC, DROP_CODE, [out, x], {
    n: out.size,
    seed: seed >>> 0,
    thr: dropoutThreshold(p),
    scale: 1 / (1 - p),
  }, gridFor(out.size, WG));
}

/**
 * Inverted dropout with a seeded, position-hashed mask (differentiable: the backward applies the
 * same mask and scale). `p = 0` returns a view of `x`.
 *
 * @param x any f32 tensor
 * @param p drop probability in [0, 1)
 * @param seed the mask's seed (u32); element i is kept iff `dropoutHash(seed, i) >= dropoutThreshold(p)`
 * @returns `x ⊙ keep / (1 - p)`, same shape
 * @throws {RangeError} when `p` is not in [0, 1)
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { dropout } from "./elementwise.ts";
 * const cpu = await createBackend("cpu");
 * const y = await dropout(cpu.full([1000], 1), 0.25, 7).toArray();
 * const kept = y.filter((v) => v !== 0);
 * if (Math.abs(kept.length - 750) > 60 || kept.some((v) => Math.abs(v - 4 / 3) > 1e-6)) throw new Error("dropout");
 * ```
 */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  if (!(p >= 0 && p < 1)) throw new RangeError(`Cannot run dropout: p must be in [0, 1): ${p}`);
  if (p === 0) return x.reshape(x.shape);
  const out = x.backend.empty(x.shape);
  dropoutForward(out, x, p, seed);
  if (!needsGrad(x)) return out;
  return record(out, "dropout", [x], (g) => {
    const gx = g.backend.empty(g.shape);
    dropoutForward(gx, g, p, seed);
    return [gx];
  });
}

// ---- uniform noise: out[i] = x[i] + mag · (2u(i) - 1) ----

/** Reference: `out[i] = x[i] + mag · (2u(i) - 1)`, `u(i) = (dropoutHash(seed, i) >>> 8) / 2²⁴`. */
export function uniformNoiseReference(
  out: WritableArray,
  x: ArrayLike<number>,
  mag: number,
  seed: number,
): void {
  const m = Math.fround(mag);
  for (let i = 0; i < out.length; i++) {
    const v = (dropoutHash(seed, i) >>> 8) / 8388608 - 1; // 2u - 1, exact
    out[i] = x[i] + Math.fround(m * v);
  }
}

const NOISE_SPEC: KernelSpec = {
  label: "elementwise.uniform_noise",
  params: { n: "u32", seed: "u32", mag: "f32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};
const NOISE_CODE = `const WG = ${WG}u;\n${DROPOUT_HASH_WGSL}${wgslHeader(NOISE_SPEC)}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.n) { return; }
  let v = f32(dropout_hash(p.seed, gid) >> 8u) * (1.0 / 8388608.0) - 1.0;
  out[gid] = x[gid] + p.mag * v;
}
`;

/**
 * `x` plus uniform noise on `[-mag, mag)` drawn from `seed` (differentiable: the gradient passes
 * through unchanged). NEFTune (`neftune_noise_alpha`, Jain et al. 2023) adds it to the token
 * embeddings in training with `mag = alpha / sqrt(T · C)`, as HF's `neftune_post_forward_hook`.
 *
 * @param x any f32 tensor
 * @param mag the noise's half-width, >= 0 (0 returns a view of `x`)
 * @param seed the noise's seed (u32); element i gets `mag · (2u(i) - 1)`, see the module header
 * @throws {RangeError} when `mag` is negative or not finite
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { uniformNoise } from "./elementwise.ts";
 * const cpu = await createBackend("cpu");
 * const y = Array.from(await uniformNoise(cpu.full([1000], 1), 0.5, 3).toArray());
 * const mean = y.reduce((a, v) => a + v, 0) / y.length;
 * if (y.some((v) => v < 0.5 || v >= 1.5) || Math.abs(mean - 1) > 0.05) throw new Error("uniformNoise");
 * ```
 */
export function uniformNoise(x: Tensor, mag: number, seed: number): Tensor {
  if (!(mag >= 0 && Number.isFinite(mag))) {
    throw new RangeError(`Cannot add uniform noise: mag must be a finite number >= 0, got ${mag}`);
  }
  if (mag === 0) return x.reshape(x.shape);
  const op = "elementwise.uniform_noise";
  expectDtype(op, "x", x, "f32");
  const out = x.backend.empty(x.shape);
  if (x.backend.name === "cpu") uniformNoiseReference(out.data, x.data, mag, seed >>> 0);
  else if (x.size) {
    launch(NOISE_SPEC, NOISE_CODE, [out, x], { n: x.size, seed: seed >>> 0, mag }, gridFor(x.size, WG));
  }
  if (!needsGrad(x)) return out;
  return record(out, "uniform_noise", [x], (g) => [g.reshape(g.shape)]);
}
