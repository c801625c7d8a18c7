/**
 * Matrix multiplication with a fused epilogue: the Linear layer, attention projections and the LM
 * head.
 *
 * Math, per batch index z (b shared by every batch when it is 2-D):
 *   z_mn   = alpha * sum_k A[m, k] B[k, n] + bias[n]          (pre-activation)
 *   out_mn = act(z_mn)      or  out_mn += act(z_mn)  with `accumulate`
 * A is `(..., M, K)` (`(..., K, M)` with `transA`), B is `(..., K, N)` or `(K, N)` (`(N, K)` with
 * `transB`: the Linear / Hugging Face weight layout `[out, in]`), bias `(N)`, out `(..., M, N)`.
 * act is `none | relu | gelu_tanh | gelu_erf | silu`.
 * Backward, with dZ = dOut * act'(z) (z saved by the forward when act != none):
 *   dA = alpha dZ B^T,  dB = alpha A^T dZ (summed over the batch when B is shared),
 *   dbias = sum of dZ over every row.
 *
 * Kernels (`_matmul_wgsl.ts`), three families sharing one generator and epilogue:
 * - `reg`: a TM x TN register block per invocation, vec4 storage loads, no barriers; grid =
 *   ceil(tiles / WG) workgroups folded 2-D, batch on z.
 * - `tex`: the same block, but A and B are first staged (one small kernel each) into rgba32float
 *   texture arrays and read with `textureLoad`. On CPU rasterizers (llvmpipe / lavapipe) a texel
 *   fetch is a vectorized gather while a storage load is a loop over the SIMD lanes: ~2.4x faster
 *   at 1024^3 (about 12-14 GFLOP/s on 2 cores, vs ~6 for `reg` and ~0.8 for tfjs-webgpu).
 * - `tile`: workgroup-memory tiles for real GPUs; grid = (ceil(N / BN), ceil(M / BM), batch).
 * Bindings: params, out (rw), [pre (rw)], a, b, [bias]. The configuration is chosen per adapter
 * by {@linkcode autotuneMatmul} (cached in memory and on disk) or a default for the adapter kind,
 * per shape class (`gemm`, `gemv` for M <= 4, `small` for tiny products that should compile fast).
 *
 * Limits: any M, N, K (odd sizes use scalar loads on that operand; K % 4 runs a tail loop).
 * Operands larger than one storage binding are split into windows: rows of A / out (M windows),
 * rows of a transposed B (N windows), K windows (accumulating; no fused activation) for a
 * non-transposed B or a transposed A; binding offsets are aligned to
 * `minStorageBufferOffsetAlignment` and the rest goes in the params as element offsets. `tex`
 * falls back to `reg` when windows are needed or a staged operand exceeds the texture limits.
 *
 * f16 weights: b may be f16 (a frozen weight loaded with `dtype: "f16"`; needs the device's
 * `shader-f16` on webgpu). The `reg` and `tile` kernels read it as `f16` / `vec4<f16>` and convert
 * to f32 in registers (a transposed b with K % 8 == 0, the Linear layout, is read 8 halves per
 * `vec4<u32>` load on `reg`: decode GEMVs are load-bound on llvmpipe, 1x4096x4096 takes 44 ms vs
 * 87 ms in f32); `tex` stages it into its f32 texture. Accumulation, bias, activation and out
 * stay f32, so the product equals the f32 product of the f16-rounded weight. On cpu the reference
 * reads the Float16Array. Backward: dA works (dZ B^T reads the f16 b); dB of an f16 b is refused
 * (no f16 gradient or optimizer state: train in f32, or train LoRA adapters on the f16 base).
 * Not done: split-K for tall-skinny products.
 *
 * @module
 */
import type { Gpu } from "./gpu.ts";
import { activationBackward, activationBackwardReference, activationReference } from "./activation.ts";
import { transpose } from "./elementwise.ts";
import { needsGrad, record } from "./autograd.ts";
import { sumTo } from "./reduce.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";
import { configKey, type MatmulActivation, type MatmulConfig } from "./_matmul_wgsl.ts";
import { dispatchMatmul, type MatmulDims } from "./_matmul_dispatch.ts";
import { autotuneMatmul, describeMatmulConfig, matmulConfigFor } from "./_matmul_tune.ts";

export { autotuneMatmul, describeMatmulConfig, matmulConfigFor };
export type { AutotuneOptions, AutotuneResult, ShapeClass, TunedClass } from "./_matmul_tune.ts";
export type { MatmulActivation, MatmulConfig, MatmulDims };

/** Options of {@linkcode matmulForward} and {@linkcode matmul}. */
export interface MatmulOptions {
  /** A is stored `(..., K, M)`. */
  transA?: boolean;
  /** B is stored `(..., N, K)` (Linear weight layout). */
  transB?: boolean;
  /** `(N)` added to every row before the activation. */
  bias?: Tensor | null;
  /** Fused activation (default `none`). */
  activation?: MatmulActivation;
  /** Scale of the product (default 1); applied before the bias. */
  alpha?: number;
  /** `out += result` instead of `out = result` (launcher only). */
  accumulate?: boolean;
  /** Launcher only: also write the pre-activation `alpha A B + bias` here (shape of out). */
  pre?: Tensor | null;
  /** Force a tile configuration (tests, autotune); default: the adapter's tuned one. */
  config?: MatmulConfig;
  /** Pretend one storage binding holds at most this many bytes (tests of the windowed path). */
  maxBinding?: number;
}

/** Dimensions and flags of the reference (plain arrays instead of tensors; b may be a Float16Array). */
export interface MatmulReferenceOptions {
  /** Number of independent products; a is `batch × (M, K)` and out `batch × (M, N)`, row-major. */
  batch: number;
  /** Rows of A and of the output. */
  M: number;
  /** Columns of B and of the output. */
  N: number;
  /** The contracted dimension. */
  K: number;
  /** A is stored `(K, M)` per batch. Default false. */
  transA?: boolean;
  /** B is stored `(N, K)` (Linear weight layout). Default false. */
  transB?: boolean;
  /** B has a batch dimension (otherwise one `(K, N)` / `(N, K)` matrix is shared). */
  bBatched?: boolean;
  /** `(N)` added to every row after alpha, before the activation. Default none. */
  bias?: ArrayLike<number> | null;
  /** Activation applied to `alpha A B + bias`. Default `"none"`. */
  activation?: MatmulActivation;
  /** Scale of the product. Default 1. */
  alpha?: number;
  /** Forward only: `out += result` instead of `out = result`. Default false. */
  accumulate?: boolean;
  /**
   * The pre-activation `alpha A B + bias` (same layout as out): the forward writes it when given;
   * the backward reads it, and needs it whenever `activation` is not `"none"`.
   */
  pre?: WritableArray | null;
}

/**
 * Reference (the spec): f64 accumulation, then alpha, bias, activation and accumulate as in the
 * module header. Works on any numeric arrays (Float64Array for gradient checks).
 */
export function matmulReference(
  out: WritableArray,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  o: MatmulReferenceOptions,
): void {
  const { batch, M, N, K } = o;
  const alpha = o.alpha ?? 1, act = o.activation ?? "none";
  const z = new Float64Array(N), y = new Float64Array(N);
  for (let bz = 0; bz < batch; bz++) {
    const ab = bz * M * K, bb = o.bBatched ? bz * K * N : 0, ob = bz * M * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const x = a[ab + (o.transA ? k * M + m : m * K + k)];
          const w = b[bb + (o.transB ? n * K + k : k * N + n)];
          s += x * w;
        }
        z[n] = alpha * s + (o.bias ? o.bias[n] : 0);
      }
      if (act === "none") y.set(z);
      else activationReference(act, y, z);
      for (let n = 0; n < N; n++) {
        const i = ob + m * N + n;
        if (o.pre) o.pre[i] = z[n];
        out[i] = o.accumulate ? out[i] + y[n] : y[n];
      }
    }
  }
}

/**
 * Reference backward (f64 where the arrays are): given dOut and the saved pre-activation `pre`
 * (ignored for `none`), accumulate nothing: overwrite `dA`, `dB`, `dBias` (each may be null) with
 * the gradients of sum(dOut * out) for `out = act(alpha A B + bias)`.
 */
export function matmulBackwardReference(
  dA: WritableArray | null,
  dB: WritableArray | null,
  dBias: WritableArray | null,
  dOut: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  o: MatmulReferenceOptions,
): void {
  const { batch, M, N, K } = o;
  const alpha = o.alpha ?? 1, act = o.activation ?? "none";
  const dZ = Float64Array.from(dOut);
  if (act !== "none") {
    if (!o.pre) throw new TypeError("Cannot run matmul backward reference: pre is needed for an activation");
    activationBackwardReference(act, dZ, dOut, Array.from({ length: dZ.length }, (_, i) => o.pre![i]));
  }
  if (dA) { for (let i = 0; i < dA.length; i++) dA[i] = 0; }
  if (dB) { for (let i = 0; i < dB.length; i++) dB[i] = 0; }
  if (dBias) { for (let i = 0; i < dBias.length; i++) dBias[i] = 0; }
  for (let bz = 0; bz < batch; bz++) {
    const ab = bz * M * K, bb = o.bBatched ? bz * K * N : 0, ob = bz * M * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const g = dZ[ob + m * N + n];
        if (dBias) dBias[n] += g;
        for (let k = 0; k < K; k++) {
          const ai = ab + (o.transA ? k * M + m : m * K + k);
          const bi = bb + (o.transB ? n * K + k : k * N + n);
          if (dA) dA[ai] += alpha * g * b[bi];
          if (dB) dB[bi] += alpha * g * a[ai];
        }
      }
    }
  }
}

/**
 * Check the operand shapes and return the dimensions.
 * @throws {TypeError} when the ranks or the contracted dimensions do not match
 */
export function matmulDims(a: readonly number[], b: readonly number[], opts: MatmulOptions = {}): MatmulDims {
  if (a.length < 2 || b.length < 2) {
    throw new TypeError(`Cannot run matmul: operands need rank >= 2: a ${shapeText(a)}, b ${shapeText(b)}`);
  }
  const r = a.length;
  const [M, K] = opts.transA ? [a[r - 1], a[r - 2]] : [a[r - 2], a[r - 1]];
  const rb = b.length;
  const [Kb, N] = opts.transB ? [b[rb - 1], b[rb - 2]] : [b[rb - 2], b[rb - 1]];
  if (K !== Kb) {
    throw new TypeError(
      `Cannot run matmul: contracted dims differ: a ${shapeText(a)}${
        opts.transA ? " (transA)" : ""
      } has K = ${K}, ` +
        `b ${shapeText(b)}${opts.transB ? " (transB)" : ""} has K = ${Kb}`,
    );
  }
  const batchShape = a.slice(0, -2);
  const bBatch = b.slice(0, -2);
  const bBatched = bBatch.length > 0;
  if (bBatched && bBatch.join() !== batchShape.join()) {
    throw new TypeError(
      `Cannot run matmul: batch dims differ: a ${shapeText(a)}, b ${
        shapeText(b)
      } (b must be 2-D or share a's batch dims)`,
    );
  }
  return { batchShape, batch: batchShape.reduce((p, d) => p * d, 1), M, N, K, bBatched };
}

/** An f16 b on webgpu needs the device's `shader-f16` feature. */
function expectF16(b: Tensor): void {
  if (b.backend.name !== "webgpu" || b.backend.device.features.has("shader-f16")) return;
  throw new TypeError(
    `Cannot run matmul: b${b.name ? ` (${b.name})` : ""} ${shapeText(b.shape)} is f16 but the device ` +
      `(${b.backend.device.info.description}) lacks the shader-f16 feature; upload the weight as f32 ` +
      `(loadModel dtype "f32") or use an adapter that offers shader-f16`,
  );
}

function validate(out: Tensor, a: Tensor, b: Tensor, opts: MatmulOptions): MatmulDims {
  const op = "matmul";
  const ts = [out, a, b, ...(opts.bias ? [opts.bias] : []), ...(opts.pre ? [opts.pre] : [])];
  expectSameBackend(op, ...ts);
  expectDtype(op, "out", out, "f32");
  expectDtype(op, "a", a, "f32");
  expectDtype(op, "b", b, "f32", "f16");
  if (b.dtype === "f16") expectF16(b);
  const d = matmulDims(a.shape, b.shape, opts);
  const os = [...d.batchShape, d.M, d.N];
  if (out.shape.join() !== os.join()) {
    throw new TypeError(
      `Cannot run matmul: out has shape ${shapeText(out.shape)}, expected ${shapeText(os)}`,
    );
  }
  if (opts.bias) {
    expectDtype(op, "bias", opts.bias, "f32");
    if (opts.bias.shape.join() !== String(d.N)) {
      throw new TypeError(
        `Cannot run matmul: bias has shape ${shapeText(opts.bias.shape)}, expected [${d.N}]`,
      );
    }
  }
  if (opts.pre) {
    expectDtype(op, "pre", opts.pre, "f32");
    if (opts.pre.shape.join() !== os.join()) {
      throw new TypeError(
        `Cannot run matmul: pre has shape ${shapeText(opts.pre.shape)}, expected ${shapeText(os)}`,
      );
    }
  }
  const alpha = opts.alpha ?? 1;
  if (!Number.isFinite(alpha)) throw new RangeError(`Cannot run matmul: alpha ${alpha} is not finite`);
  return d;
}

/**
 * Launcher: `out (+)= act(alpha * A B + bias)` on the tensors' backend (shapes in the module
 * header). With `pre`, the pre-activation is written there too.
 * @throws {TypeError} on shape, dtype or backend mismatch (before anything is dispatched)
 * @throws {RangeError} when the operands cannot be windowed into storage bindings
 */
export function matmulForward(out: Tensor, a: Tensor, b: Tensor, opts: MatmulOptions = {}): void {
  const d = validate(out, a, b, opts);
  const act = opts.activation ?? "none";
  if (out.backend.name === "cpu") {
    return matmulReference(out.data, a.data, b.data, {
      ...d,
      transA: opts.transA,
      transB: opts.transB,
      bias: opts.bias?.data,
      activation: act,
      alpha: Math.fround(opts.alpha ?? 1),
      accumulate: opts.accumulate,
      pre: opts.pre?.data,
    });
  }
  const gpu = out.backend.device;
  const config = opts.config ?? matmulConfigFor(gpu, d.M, d.N, d.K);
  dispatchMatmul(gpu, {
    out: out.buffer,
    pre: opts.pre ? opts.pre.buffer : null,
    a: a.buffer,
    b: b.buffer,
    bias: opts.bias ? opts.bias.buffer : null,
    bytes: { out: out.bytes, a: a.bytes, b: b.bytes, bias: opts.bias ? opts.bias.bytes : 0 },
  }, {
    ...d,
    transA: !!opts.transA,
    transB: !!opts.transB,
    act,
    alpha: opts.alpha ?? 1,
    accumulate: !!opts.accumulate,
    config,
    maxBinding: opts.maxBinding ?? gpu.maxBinding,
    ...(b.dtype === "f16" ? { f16B: true } : {}),
  });
}

/** Options of {@linkcode matmulBackward}. */
export type MatmulBackwardOptions = Pick<
  MatmulOptions,
  "transA" | "transB" | "alpha" | "config" | "maxBinding"
>;

/**
 * Backward launcher: given dZ (the gradient of the pre-activation, `(..., M, N)`), write
 * `dA = alpha dZ B^T` (layout of a) and `dB = alpha A^T dZ` (layout of b, summed over the batch
 * when b is shared). Either output may be null. An f16 b gives dA (f32) but no dB.
 * @throws {TypeError} on shape, dtype or backend mismatch, or dB of an f16 b
 */
export function matmulBackward(
  dA: Tensor | null,
  dB: Tensor | null,
  dZ: Tensor,
  a: Tensor,
  b: Tensor,
  opts: MatmulBackwardOptions = {},
): void {
  const d = matmulDims(a.shape, b.shape, opts);
  const tA = !!opts.transA, tB = !!opts.transB;
  const common = { alpha: opts.alpha ?? 1, config: opts.config, maxBinding: opts.maxBinding };
  const os = [...d.batchShape, d.M, d.N];
  const f16 = b.dtype === "f16";
  if (dB && f16) throw f16GradError(b);
  if (dA && f16 && tA && d.bBatched) {
    throw new TypeError(
      `Cannot run matmul backward: dA of a transposed a ${shapeText(a.shape)} with a batched f16 b ${
        shapeText(b.shape)
      } is not supported; use an f32 b`,
    );
  }
  if (dZ.shape.join() !== os.join()) {
    throw new TypeError(
      `Cannot run matmul backward: dZ has shape ${shapeText(dZ.shape)}, expected ${shapeText(os)}`,
    );
  }
  if (dA) {
    if (dA.shape.join() !== a.shape.join()) {
      throw new TypeError(
        `Cannot run matmul backward: dA has shape ${shapeText(dA.shape)}, expected ${shapeText(a.shape)}`,
      );
    }
    if (!tA) {
      // dA (M, K) = dZ B^T
      matmulForward(dA, dZ, b, { ...common, transB: !tB });
    } else if (d.bBatched || (d.batch === 1 && !f16)) {
      // dA stored (K, M) = B dZ^T (b: (K, N), or (N, K) read transposed); b is the a operand here,
      // which is always f32, so an f16 b takes the branch below.
      const b2 = d.bBatched ? b : b.reshape([...d.batchShape.map(() => 1), ...b.shape]);
      matmulForward(dA, b2, dZ, { ...common, transA: tB, transB: true });
      if (b2 !== b) b2.dispose();
    } else {
      // shared b (or an f16 b), transposed a: (dZ B^T) per batch, then transposed into dA.
      const t = dZ.backend.empty([...d.batchShape, d.M, d.K]);
      matmulForward(t, dZ, b, { ...common, transB: !tB });
      const tt = transpose(t);
      t.dispose();
      copyInto(dA, tt);
      tt.dispose();
    }
  }
  if (dB) {
    if (dB.shape.join() !== b.shape.join()) {
      throw new TypeError(
        `Cannot run matmul backward: dB has shape ${shapeText(dB.shape)}, expected ${shapeText(b.shape)}`,
      );
    }
    // dB (K, N) = A^T dZ; stored transposed (N, K) = dZ^T A.
    const product = (out: Tensor, x: Tensor, z: Tensor, accumulate: boolean) => {
      if (!tB) matmulForward(out, x, z, { ...common, transA: !tA, accumulate });
      else matmulForward(out, z, x, { ...common, transA: true, transB: tA, accumulate });
    };
    if (d.bBatched) product(dB, a, dZ, false);
    else if (!tA || d.batch === 1) {
      // a shared b sums over the batch: fold it into the contracted dim of one 2-D product.
      const a2 = a.reshape(tA ? [d.K, d.M] : [d.batch * d.M, d.K]);
      const z2 = dZ.reshape([d.batch * d.M, d.N]);
      product(dB, a2, z2, false);
      a2.dispose();
      z2.dispose();
    } else {
      // transposed batched a with a shared b: one product per batch, accumulated.
      for (let z = 0; z < d.batch; z++) {
        const az = slice(a, z, [d.K, d.M]), zz = slice(dZ, z, [d.M, d.N]);
        product(dB, az, zz, z > 0);
        az.dispose();
        zz.dispose();
      }
    }
  }
}

/** The error for a gradient of an f16 b (frozen weights only). */
function f16GradError(b: Tensor): TypeError {
  return new TypeError(
    `Cannot run matmul backward: b${b.name ? ` (${b.name})` : ""} ${shapeText(b.shape)} is f16 and needs ` +
      `a gradient; f16 weights are frozen (no f16 gradients or optimizer state): load the model with ` +
      `dtype "f32" to train it, or train LoRA adapters on the f16 base (requiresGrad = false on the weight)`,
  );
}

/** Copy the elements of `src` into `dst` (same size). */
function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.backend.name === "cpu") dst.data.set(src.data as never);
  else dst.backend.device.copy(src.buffer, 0, dst.buffer, 0, Math.ceil(src.bytes / 4) * 4);
}

/** Matrix `z` of a batched tensor as a new tensor of `shape` (a copy). */
function slice(t: Tensor, z: number, shape: number[]): Tensor {
  const n = shape[0] * shape[1];
  const out = t.backend.empty(shape);
  if (t.backend.name === "cpu") out.data.set(t.data.subarray(z * n, (z + 1) * n) as never);
  else t.backend.device.copy(t.buffer, z * n * 4, out.buffer, 0, n * 4);
  return out;
}

/**
 * `act(alpha * A B + bias)` as a new tensor (differentiable in a, b and bias). Shapes and options
 * as in {@linkcode matmulForward}; `accumulate` and `pre` are launcher-only and ignored here.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { matmul } from "./matmul.ts";
 * const cpu = await createBackend("cpu");
 * const x = cpu.fromArray([1, 2, 3, 4], [2, 2]);
 * const w = cpu.fromArray([1, 0, 0, 1, 1, 1], [3, 2]); // Linear weight [out, in]
 * const y = matmul(x, w, { transB: true, bias: cpu.fromArray([0, 0, -3], [3]), activation: "relu" });
 * if ((await y.toArray()).join() !== "1,2,0,3,4,4") throw new Error("matmul");
 * ```
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const d = matmulDims(a.shape, b.shape, opts);
  const act = opts.activation ?? "none";
  const bias = opts.bias ?? null;
  const out = a.backend.empty([...d.batchShape, d.M, d.N]);
  const grad = needsGrad(a, b, bias);
  if (grad && b.dtype === "f16" && (b.requiresGrad || b.node)) {
    out.dispose();
    throw f16GradError(b);
  }
  const pre = grad && act !== "none" ? a.backend.empty(out.shape) : null;
  try {
    matmulForward(out, a, b, { ...opts, accumulate: false, pre });
  } catch (e) {
    out.dispose();
    pre?.dispose();
    throw e;
  }
  if (!grad) return out;
  const common = {
    transA: opts.transA,
    transB: opts.transB,
    alpha: opts.alpha,
    config: opts.config,
    maxBinding: opts.maxBinding,
  };
  return record(out, "matmul", [a, b, bias], (g) => {
    let dZ = g;
    if (pre) {
      dZ = g.backend.empty(g.shape);
      activationBackward(act as Exclude<MatmulActivation, "none">, dZ, g, pre);
    }
    const dA = a.requiresGrad || a.node ? a.backend.empty(a.shape) : null;
    const dB = b.requiresGrad || b.node ? b.backend.empty(b.shape) : null;
    matmulBackward(dA, dB, dZ, a, b, common);
    let dBias: Tensor | null = null;
    if (bias && (bias.requiresGrad || bias.node)) {
      const z2 = dZ.reshape([d.batch * d.M, d.N]);
      dBias = sumTo(z2, [d.N], true);
    }
    if (dZ !== g) dZ.dispose();
    return [dA, dB, dBias];
  }, pre ? [pre] : []);
}

/** The tile configuration a matmul of this size would use on `gpu` (for logs and `info`). */
export function matmulConfigText(gpu: Gpu, M: number, N: number, K: number): string {
  return configKey(matmulConfigFor(gpu, M, N, K));
}
