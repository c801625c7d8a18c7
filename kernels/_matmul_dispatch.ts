/**
 * Private: recording the dispatches of one matmul on raw buffers, including the batch chunks and
 * the windows that keep every binding under the storage-binding limit (see `matmul.ts`).
 *
 * @module
 */
import { memo, packParams } from "./_kernel.ts";
import { type BufferRange, type Gpu, grid1d } from "./gpu.ts";
import {
  blockShape,
  MATMUL_PARAMS,
  type MatmulActivation,
  type MatmulConfig,
  matmulKernel,
  matmulSpec,
  type MatmulVariant,
  STAGE_PARAMS,
  stageKernel,
} from "./_matmul_wgsl.ts";

/** Shapes of a matmul: batch dims, M, N, K and whether b has the batch. */
export interface MatmulDims {
  /** Leading (batch) dims of a, and of the output `[...batchShape, M, N]`; empty for a plain 2-D product. */
  batchShape: number[];
  /** Product of `batchShape` (1 when empty). */
  batch: number;
  /** Rows of the output. */
  M: number;
  /** Columns of the output. */
  N: number;
  /** The contracted dimension. */
  K: number;
  /** b carries the same batch dims as a; false: one 2-D b is shared by every batch entry. */
  bBatched: boolean;
}

/** What {@linkcode dispatchMatmul} needs besides the buffers. */
export interface MatmulPlan extends MatmulDims {
  transA: boolean;
  transB: boolean;
  act: MatmulActivation;
  alpha: number;
  accumulate: boolean;
  config: MatmulConfig;
  maxBinding: number;
  /** b holds f16 elements (2 bytes each; read as f32). */
  f16B?: boolean;
}

const kernelCode = memo((key: string) => matmulKernel(JSON.parse(key) as MatmulVariant));

/** The buffers of one matmul. */
export interface MatmulBuffers {
  out: GPUBuffer;
  pre: GPUBuffer | null;
  a: GPUBuffer;
  b: GPUBuffer;
  bias: GPUBuffer | null;
  /** Bytes of each tensor (bindings never reach past them). */
  bytes: { out: number; a: number; b: number; bias: number };
}

/** Split [0, n) into windows of at most `per` (a multiple of 4 unless it covers everything). */
function windows(n: number, per: number): [number, number][] {
  if (per >= n) return [[0, n]];
  const out: [number, number][] = [];
  for (let s = 0; s < n; s += per) out.push([s, Math.min(n, s + per)]);
  return out;
}

/** Rows per window so that `rowBytes`-byte rows fit `max` bytes with room for offset rounding. */
function rowsPerWindow(label: string, rowBytes: number, max: number, align: number): number {
  const per = Math.floor(Math.floor((max - 2 * align - 16) / rowBytes) / 4) * 4;
  if (per < 4) {
    throw new RangeError(
      `Cannot run ${label}: 4 rows of ${rowBytes} bytes exceed the storage binding limit ${max}`,
    );
  }
  return per;
}

/**
 * Record the dispatches of one matmul on raw buffers (f32, b f32 or f16 with `plan.f16B`;
 * contiguous, layouts as in the module header). Windows and batch chunks are handled here.
 */
export function dispatchMatmul(gpu: Gpu, bufs: MatmulBuffers, plan: MatmulPlan): void {
  const { M, N, K, batch, transA, transB } = plan;
  let config = plan.config;
  if (M === 0 || N === 0 || batch === 0) return;
  const align = gpu.info.limits.minStorageBufferOffsetAlignment;
  const max = Math.min(plan.maxBinding, gpu.maxBinding);
  const label = `matmul ${M}x${K}x${N}`;
  const f16B = !!plan.f16B, eb = f16B ? 2 : 4; // bytes per element of b
  const bA = M * K * 4 * batch, bB = K * N * eb * (plan.bBatched ? batch : 1), bO = M * N * 4 * batch;
  const fits = bA <= max && bB <= max && bO <= max;
  if (config.family === "tex") {
    const stA = fits && K > 0 ? stagedShape(gpu, !transA, transA ? M : K, transA ? K : M, batch) : null;
    const stB = stA
      ? stagedShape(gpu, transB, transB ? K : N, transB ? N : K, plan.bBatched ? batch : 1)
      : null;
    if (stA && stB) return dispatchStaged(gpu, bufs, plan, config, stA, stB, f16B);
    config = { family: "reg", tm: config.tm, tn: config.tn, wg: config.wg }; // over texture limits
  }
  // Windows along M (A rows when not transposed, out rows), N (rows of a transposed B) and K.
  let perM = M, perN = N, perK = K;
  if (!fits) {
    // Windowed dispatches run one batch at a time: what must fit is one matrix of each operand.
    const a1 = M * K * 4, b1 = K * N * eb, o1 = M * N * 4;
    if (o1 > max || (!transA && a1 > max)) {
      perM = Math.min(M, rowsPerWindow(label, Math.max(N * 4, transA ? 0 : K * 4), max, align));
    }
    if (transB && b1 > max) perN = Math.min(N, rowsPerWindow(label, K * eb, max, align));
    if (!transB && b1 > max) perK = Math.min(K, rowsPerWindow(label, N * eb, max, align));
    if (transA && a1 > max) perK = Math.min(perK, rowsPerWindow(label, M * 4, max, align));
  }
  const kWins = windows(K, perK);
  if (kWins.length > 1 && plan.act !== "none") {
    throw new RangeError(
      `Cannot run ${label}: ${transA ? "a" : "b"} exceeds one storage binding along K and a fused ` +
        `activation needs the full sum; pass the weight transposed (transB) or apply the activation separately`,
    );
  }
  const baseVariant = {
    config,
    transA,
    transB,
    vecA: config.family === "reg" && (transA ? M % 4 === 0 && config.tm % 4 === 0 : K % 4 === 0),
    vecB: config.family === "reg" && (transB ? K % 4 === 0 : N % 4 === 0 && config.tn % 4 === 0),
    vecO: N % 4 === 0,
    act: plan.act,
    savePre: bufs.pre !== null,
    kTail: K % 4 !== 0,
    ...(f16B ? { f16B } : {}),
    ...(f16B && transB && K % 8 === 0 && config.family === "reg" ? { b8: true } : {}),
  };
  const { bm, bn } = blockShape(config);
  const maxWg = gpu.info.limits.maxComputeWorkgroupsPerDimension;
  const run = (
    ranges: BufferRange[],
    withBias: boolean,
    dims: { M: number; N: number; K: number },
    offs: { offA: number; offB: number; offO: number; offBias: number },
    strides: { sA: number; sB: number; sO: number },
    batch0: number,
    nb: number,
    acc: boolean,
  ) => {
    const v: MatmulVariant = { ...baseVariant, bias: withBias, acc };
    const spec = matmulSpec(v);
    const code = kernelCode(JSON.stringify(v));
    const tilesN = Math.ceil(dims.N / bn), tilesM = Math.ceil(dims.M / bm);
    let grid: [number, number, number];
    if (config.family !== "tile") {
      const g = grid1d(Math.ceil(tilesN * tilesM / config.wg), maxWg);
      grid = [g[0], g[1], nb];
    } else grid = [tilesN, tilesM, nb];
    const params = {
      ...dims,
      lda: transA ? M : K,
      ldb: transB ? K : N,
      ldo: N,
      ...offs,
      ...strides,
      tilesN,
      tiles: tilesN * tilesM,
      batch0,
      alpha: plan.alpha,
    };
    const bindings = [
      ranges[0],
      ...(v.savePre ? [ranges[1]] : []),
      ranges[2],
      ranges[3],
      ...(withBias ? [ranges[4]] : []),
    ];
    gpu.dispatch(gpu.pipeline(spec.label, code), bindings, packParams(MATMUL_PARAMS, params), grid);
  };
  const whole = (buf: GPUBuffer, bytes: number): BufferRange => ({
    buffer: buf,
    offset: 0,
    size: Math.max(16, Math.ceil(bytes / 16) * 16),
  });
  if (fits) {
    const ranges = [
      whole(bufs.out, bufs.bytes.out),
      whole(bufs.pre ?? bufs.out, bufs.bytes.out),
      whole(bufs.a, bufs.bytes.a),
      whole(bufs.b, bufs.bytes.b),
      whole(bufs.bias ?? bufs.out, bufs.bytes.bias),
    ];
    const strides = { sA: M * K, sB: plan.bBatched ? K * N : 0, sO: M * N };
    for (let z0 = 0; z0 < batch; z0 += maxWg) {
      run(
        ranges,
        bufs.bias !== null,
        { M, N, K },
        { offA: 0, offB: 0, offO: 0, offBias: 0 },
        strides,
        z0,
        Math.min(maxWg, batch - z0),
        plan.accumulate,
      );
    }
    return;
  }
  // Windowed: one dispatch per (batch, M window, N window, K window).
  // Elements [first, end) of a buffer of `total` bytes, `e` bytes per element.
  const win = (buf: GPUBuffer, total: number, first: number, end: number, e = 4) => {
    const off = Math.floor(first * e / align) * align;
    const size = Math.min(Math.ceil((end * e - off) / 16) * 16, Math.ceil(total / 16) * 16 - off);
    return { range: { buffer: buf, offset: off, size: Math.max(size, 16) }, elem: first - off / e };
  };
  const aIdx = (z: number, m: number, k: number) => z * M * K + (transA ? k * M + m : m * K + k);
  const bIdx = (z: number, k: number, n: number) =>
    (plan.bBatched ? z * K * N : 0) + (transB ? n * K + k : k * N + n);
  for (let z = 0; z < batch; z++) {
    for (const [m0, m1] of windows(M, perM)) {
      for (const [n0, n1] of windows(N, perN)) {
        kWins.forEach(([k0, k1], ki) => {
          // A: rows m0..m1 of (M, K), or rows k0..k1 of (K, M); B: rows n0..n1 of (N, K), or k0..k1 of (K, N).
          const ra = transA
            ? win(bufs.a, bufs.bytes.a, aIdx(z, 0, k0), aIdx(z, 0, k1))
            : win(bufs.a, bufs.bytes.a, aIdx(z, m0, 0), aIdx(z, m1, 0));
          const rb = transB
            ? win(bufs.b, bufs.bytes.b, bIdx(z, 0, n0), bIdx(z, 0, n1), eb)
            : win(bufs.b, bufs.bytes.b, bIdx(z, k0, 0), bIdx(z, k1, 0), eb);
          const firstO = z * M * N + m0 * N;
          const ro = win(bufs.out, bufs.bytes.out, firstO, z * M * N + m1 * N);
          const rp = win(bufs.pre ?? bufs.out, bufs.bytes.out, firstO, z * M * N + m1 * N);
          const rbias = whole(bufs.bias ?? bufs.out, bufs.bytes.bias);
          // Element offsets inside each window: A at (m0, k0), B at (k0, n0), out at (m0, n0).
          const offA = ra.elem + (transA ? m0 : k0);
          const offB = rb.elem + (transB ? k0 : n0);
          run(
            [ro.range, rp.range, ra.range, rb.range, rbias],
            bufs.bias !== null && ki === 0,
            { M: m1 - m0, N: n1 - n0, K: k1 - k0 },
            { offA, offB, offO: ro.elem + n0, offBias: n0 },
            { sA: 0, sB: 0, sO: 0 },
            0,
            1,
            ki === 0 ? plan.accumulate : true,
          );
        });
      }
    }
  }
}

// ---- the texture-staged path (`tex` family) ----

/** A texture-staged operand: texels of 4 along the contiguous dim, K rows padded to 4. */
interface Staged {
  width: number;
  height: number;
  layers: number;
  rows: number;
  cols: number;
}

/**
 * Texture shape of an operand stored `(layers, rows, cols)`; `kc`: cols run along k (else rows
 * do, and are padded to a multiple of 4). Null when over the device's texture limits.
 */
function stagedShape(gpu: Gpu, kc: boolean, cols: number, rows: number, layers: number): Staged | null {
  const l = gpu.device.limits;
  const width = Math.ceil(cols / 4), height = kc ? rows : Math.ceil(rows / 4) * 4;
  if (width > l.maxTextureDimension2D || height > l.maxTextureDimension2D) return null;
  if (layers > l.maxTextureArrayLayers || width === 0 || height === 0) return null;
  return { width, height, layers, rows, cols };
}

interface PooledTexture {
  texture: GPUTexture;
  view: GPUTextureView;
}

const texturePools = new WeakMap<Gpu, Map<string, PooledTexture[]>>();

function acquireTexture(gpu: Gpu, s: Staged): PooledTexture {
  let pools = texturePools.get(gpu);
  if (!pools) texturePools.set(gpu, pools = new Map());
  const key = `${s.width}x${s.height}x${s.layers}`;
  const hit = pools.get(key)?.pop();
  if (hit) {
    pooledBytes.set(gpu, (pooledBytes.get(gpu) ?? 0) - s.width * s.height * s.layers * 16);
    return hit;
  }
  const texture = gpu.device.createTexture({
    size: [s.width, s.height, s.layers],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING,
  });
  return { texture, view: texture.createView({ dimension: "2d-array" }) };
}

/** Bytes of free staging textures kept per GPU; past it a released texture is destroyed. */
const TEXTURE_POOL_BYTES = 256 * 1024 * 1024;
const pooledBytes = new WeakMap<Gpu, number>();

/**
 * Give a staging texture back. Reusing it for the next matmul of the same batch is safe:
 * dispatches run in order, so its staging runs after this matmul has read it. Past the pool
 * budget it is destroyed instead, after submitting the batch that uses it (destroy waits for
 * submitted work).
 */
function releaseTexture(gpu: Gpu, s: Staged, t: PooledTexture): void {
  const pools = texturePools.get(gpu)!;
  const bytes = s.width * s.height * s.layers * 16;
  const have = pooledBytes.get(gpu) ?? 0;
  if (have + bytes > TEXTURE_POOL_BYTES) {
    gpu.flush();
    t.texture.destroy();
    return;
  }
  pooledBytes.set(gpu, have + bytes);
  const key = `${s.width}x${s.height}x${s.layers}`;
  let list = pools.get(key);
  if (!list) pools.set(key, list = []);
  list.push(t);
}

/** Key: bit 0 = vec4 loads, bit 1 = f16 source. */
const stageCode = memo((key: number) => stageKernel((key & 1) === 1, (key & 2) === 2));

function stage(gpu: Gpu, t: PooledTexture, src: GPUBuffer, bytes: number, s: Staged, f16 = false): void {
  const vec = s.cols % 4 === 0;
  const pipe = gpu.pipeline(
    f16 ? "matmul.stage.f16" : "matmul.stage",
    stageCode((vec ? 1 : 0) | (f16 ? 2 : 0)),
  );
  const params = {
    rows: s.rows,
    cols: s.cols,
    width: s.width,
    height: s.height,
    layerStride: s.rows * s.cols,
  };
  const range = { buffer: src, offset: 0, size: Math.max(16, Math.ceil(bytes / 16) * 16) };
  gpu.dispatch(pipe, [t.view, range], packParams(STAGE_PARAMS, params), [
    Math.ceil(s.width / 8),
    Math.ceil(s.height / 8),
    s.layers,
  ]);
}

/** The `tex` family: stage A and B into textures, then one dispatch (batch chunks on z). */
function dispatchStaged(
  gpu: Gpu,
  bufs: MatmulBuffers,
  plan: MatmulPlan,
  config: MatmulConfig,
  stA: Staged,
  stB: Staged,
  f16B: boolean,
): void {
  const { M, N, K, batch, transA, transB } = plan;
  if (config.family === "tile") throw new TypeError("dispatchStaged: not a tex config");
  const ta = acquireTexture(gpu, stA), tb = acquireTexture(gpu, stB);
  stage(gpu, ta, bufs.a, bufs.bytes.a, stA);
  stage(gpu, tb, bufs.b, bufs.bytes.b, stB, f16B);
  const v: MatmulVariant = {
    config,
    transA,
    transB,
    vecA: false,
    vecB: false,
    vecO: N % 4 === 0,
    act: plan.act,
    savePre: bufs.pre !== null,
    kTail: false,
    bias: bufs.bias !== null,
    acc: plan.accumulate,
  };
  const spec = matmulSpec(v);
  const pipe = gpu.pipeline(spec.label, kernelCode(JSON.stringify(v)));
  const whole = (buf: GPUBuffer, bytes: number): BufferRange => ({
    buffer: buf,
    offset: 0,
    size: Math.max(16, Math.ceil(bytes / 16) * 16),
  });
  const bindings: (BufferRange | GPUTextureView)[] = [
    whole(bufs.out, bufs.bytes.out),
    ...(bufs.pre ? [whole(bufs.pre, bufs.bytes.out)] : []),
    ta.view,
    tb.view,
    ...(bufs.bias ? [whole(bufs.bias, bufs.bytes.bias)] : []),
  ];
  const tilesN = Math.ceil(N / config.tn), tilesM = Math.ceil(M / config.tm);
  const maxWg = gpu.info.limits.maxComputeWorkgroupsPerDimension;
  const g = grid1d(Math.ceil(tilesN * tilesM / config.wg), maxWg);
  for (let z0 = 0; z0 < batch; z0 += maxWg) {
    const params = {
      M,
      N,
      K,
      lda: 0,
      ldb: 0,
      ldo: N,
      offA: 0,
      offB: 0,
      offO: 0,
      offBias: 0,
      sA: 1,
      sB: plan.bBatched ? 1 : 0,
      sO: M * N,
      tilesN,
      tiles: tilesN * tilesM,
      batch0: z0,
      alpha: plan.alpha,
    };
    gpu.dispatch(pipe, bindings, packParams(MATMUL_PARAMS, params), [
      g[0],
      g[1],
      Math.min(maxWg, batch - z0),
    ]);
  }
  releaseTexture(gpu, stA, ta);
  releaseTexture(gpu, stB, tb);
}
