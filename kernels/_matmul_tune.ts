/**
 * Private: the per-adapter choice of matmul tile configuration. A short autotune times a few
 * candidates of both kernel families on two representative shapes (a square GEMM and an M = 1
 * decode GEMV, both in the Linear layout `x W^T`) and keeps the fastest of each. Results are cached
 * in memory per {@linkcode Gpu} and on disk as JSON (`matmul.json` in the cache folder of
 * `util/cache.ts`: `$FLEDGE_CACHE_DIR`, else `$XDG_CACHE_HOME/fledge`, else `~/.cache/fledge`)
 * keyed by the adapter description; a failing read or write of that file is ignored. Without a
 * tuned result the adapter kind picks a default. Every family sums k in the same order, so the
 * choice changes speed, never the bits of a product.
 *
 * Not run on its own: `deno run -A bench/matmul.ts --autotune` (or {@linkcode autotuneMatmul})
 * times and caches. On CPU adapters a product timed alone is not a training step: on machine B (an
 * AMD EPYC, llvmpipe, 2 cores) the tune picked the texture-staged kernels for thin and narrow
 * products (a 128 x 2048 x 128 weight gradient 10 ms against the register kernels' 31), and the
 * base model's forward + backward timed alone ran 16% faster with them, but the Trainer's
 * pipelined pre-training step ran slower (4.1-4.7 s against 3.7; with `tex` for narrow alone
 * 3.6, for gemm's 32 x 32 tile alone 3.4), so the defaults stay until a tune measures steps.
 *
 * @module
 */
import { writeFileAtomicSync } from "../util/atomic.ts";
import { fledgeCacheDir } from "../util/cache.ts";
import { parseJson } from "../util/json.ts";
import { type Gpu, isCpuAdapter } from "./gpu.ts";
import { configKey, type MatmulConfig, parseConfigKey } from "./_matmul_wgsl.ts";
import { dispatchMatmul } from "./_matmul_dispatch.ts";

/**
 * Shape classes: `gemm` (large), `thin` (large but with M or N at most 32: LoRA's rank-r products,
 * where a GEMM tile of 32+ rows or columns would mostly compute padding, and staging the wide
 * operand costs more than the product), `narrow` (CPU adapters only: at most 64 rows of A, or an
 * output of at most 128 x 128, see {@linkcode shapeClass}), `gemv` (M <= 4) and `small`.
 */
export type ShapeClass = "gemm" | "thin" | "narrow" | "gemv" | "small";

/** What {@linkcode autotuneMatmul} found. */
export interface AutotuneResult {
  /** The adapter description (`gpu.info.description`) the result belongs to: the cache key. */
  adapter: string;
  /** Config per shape class (`small` is never timed: it keeps compile time low for tiny products). */
  configs: Record<ShapeClass, MatmulConfig>;
  /** Every timing taken (empty when the result came from a cache). */
  timings: { class: ShapeClass; shape: string; config: string; ms: number; gflops: number }[];
  /** `memory`, `disk`, `measured` or `default`. */
  source: "memory" | "disk" | "measured" | "default";
  /** Why a measured result could not be written to the disk cache (absent when it was). */
  unsaved?: string;
}

/** Options of {@linkcode autotuneMatmul}. */
export interface AutotuneOptions {
  /** Measure again even when a cached result exists. */
  force?: boolean;
  /** Timed repetitions per candidate (the minimum counts); default 3. */
  reps?: number;
  /** Candidates to time (default: per adapter kind). */
  candidates?: Partial<Record<TunedClass, MatmulConfig[]>>;
  /**
   * Shapes `[M, K, N]` to time (default gemm 512x512x512, thin 512x1024x16, narrow 128x2048x128,
   * gemv 1x2048x2048).
   */
  shapes?: Partial<Record<TunedClass, [number, number, number]>>;
  /** Write the result to the disk cache (default true). */
  save?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

const reg = (tm: number, tn: number, wg: number): MatmulConfig => ({ family: "reg", tm, tn, wg });
const tex = (tm: number, tn: number, wg: number): MatmulConfig => ({ family: "tex", tm, tn, wg });
const tile = (tm: number, tn: number, wx: number, wy: number, bk: number): MatmulConfig => ({
  family: "tile",
  tm,
  tn,
  wx,
  wy,
  bk,
});

function defaults(gpu: Gpu): Record<ShapeClass, MatmulConfig> {
  // CPU rasterizers: texture fetches are vectorized gathers while storage-buffer loads run as a
  // loop over the SIMD lanes, so the texture-staged family wins for GEMM (~11-14 GFLOP/s at 1024^3
  // on a 2-core llvmpipe vs ~6 for the best buffer kernel). GEMV (M = 1) reads B once either way:
  // staging would double that, so it stays on buffers. Thin products (LoRA's x·Aᵀ, dY·B, dYᵀ·xa,
  // dXAᵀ·x with r = 16 on 512x384..1152 operands, llvmpipe 2 cores) run 2-2.8x faster on an
  // 8x16 register tile than staged: 0.6-1.2 ms against 1.4-3.2 ms.
  return isCpuAdapter(gpu)
    ? {
      gemm: tex(12, 16, 32),
      thin: reg(8, 16, 16),
      narrow: reg(8, 16, 16),
      gemv: reg(1, 32, 8),
      small: reg(4, 8, 16),
    }
    : {
      gemm: tile(4, 4, 16, 16, 16),
      thin: reg(4, 4, 64),
      narrow: reg(4, 4, 64), // never chosen: the class is CPU-only
      gemv: reg(1, 4, 64),
      small: tile(2, 4, 8, 8, 16),
    };
}

/** The classes {@linkcode autotuneMatmul} times (`small` keeps its default: cheap to compile). */
export type TunedClass = "gemm" | "thin" | "narrow" | "gemv";

function candidates(gpu: Gpu): Record<TunedClass, MatmulConfig[]> {
  if (isCpuAdapter(gpu)) {
    return {
      gemm: [tex(12, 16, 32), tex(8, 16, 32), tex(16, 16, 64), tex(32, 32, 8), reg(16, 32, 16)],
      thin: [reg(8, 16, 16), reg(16, 8, 16), reg(8, 8, 16), tex(12, 16, 32)],
      narrow: [reg(8, 16, 16), reg(16, 8, 16), tex(12, 16, 32), tex(8, 16, 32)],
      gemv: [reg(1, 32, 8), reg(1, 16, 64), reg(2, 32, 8), tex(1, 32, 8)],
    };
  }
  return {
    gemm: [
      tile(4, 4, 16, 16, 16),
      tile(8, 4, 16, 16, 16),
      tile(4, 8, 16, 8, 16),
      tile(8, 8, 16, 16, 8),
      tile(4, 4, 8, 8, 32),
      tex(4, 4, 64),
      reg(4, 4, 64),
    ],
    thin: [reg(4, 4, 64), reg(8, 4, 64), reg(4, 8, 32), tile(4, 4, 16, 16, 16)],
    narrow: [reg(4, 4, 64)], // never chosen: the class is CPU-only
    gemv: [reg(1, 4, 64), reg(1, 4, 256), reg(1, 8, 64), reg(2, 4, 128)],
  };
}

/** Drop configs the device cannot run (workgroup size, workgroup memory). */
function feasible(gpu: Gpu, c: MatmulConfig): boolean {
  const l = gpu.info.limits;
  if (c.family !== "tile") {
    return c.wg <= l.maxComputeInvocationsPerWorkgroup && c.wg <= l.maxComputeWorkgroupSizeX;
  }
  const bytes = 4 * c.bk * (c.tm * c.wy + c.tn * c.wx);
  return c.wx * c.wy <= l.maxComputeInvocationsPerWorkgroup && bytes <= l.maxComputeWorkgroupStorageSize;
}

const memory = new WeakMap<Gpu, AutotuneResult>();

function cachePath(): string | null {
  const dir = fledgeCacheDir();
  return dir ? `${dir}/matmul.json` : null;
}

type DiskCache = { version: 1; adapters: Record<string, Record<string, string>> };

function readDisk(): DiskCache | null {
  const path = cachePath();
  if (!path) return null;
  try {
    // A missing or corrupt cache only costs a re-tune: any error reads as no cache.
    const j = parseJson(Deno.readTextFileSync(path), path) as Partial<DiskCache> | null;
    return j && j.version === 1 && typeof j.adapters === "object" ? j as DiskCache : null;
  } catch {
    return null;
  }
}

/** Write the configs to the disk cache; the reason when that failed (null when written). */
function writeDisk(adapter: string, configs: Record<ShapeClass, MatmulConfig>): string | null {
  const path = cachePath();
  if (!path) return "no cache folder (set FLEDGE_CACHE_DIR, XDG_CACHE_HOME or HOME)";
  try {
    const cache = readDisk() ?? { version: 1, adapters: {} };
    cache.adapters[adapter] = {
      gemm: configKey(configs.gemm),
      thin: configKey(configs.thin),
      narrow: configKey(configs.narrow),
      gemv: configKey(configs.gemv),
      small: configKey(configs.small),
    };
    writeFileAtomicSync(path, JSON.stringify(cache, null, 2) + "\n");
    return null;
  } catch (e) {
    // A read-only or missing cache directory only costs a re-tune next time.
    return `${path}: ${(e as Error).message}`;
  }
}

/** The cached (memory, then disk) or default configs of a GPU, without measuring. */
function lookup(gpu: Gpu): AutotuneResult {
  const hit = memory.get(gpu);
  if (hit) return hit;
  const adapter = gpu.info.description;
  const base = defaults(gpu);
  const disk = readDisk()?.adapters[adapter];
  let result: AutotuneResult = { adapter, configs: base, timings: [], source: "default" };
  if (disk) {
    const configs = { ...base };
    // A cache written before a tuned class existed, or with an entry this device cannot run, is
    // ignored (the defaults are used until the next tune).
    let ok = true;
    for (const k of ["gemm", "thin", "narrow", "gemv", "small"] as const) {
      const c = disk[k] ? parseConfigKey(disk[k]) : null;
      if (c && feasible(gpu, c)) configs[k] = c;
      else if (disk[k] || k !== "small") ok = false;
    }
    if (ok) result = { adapter, configs, timings: [], source: "disk" };
  }
  memory.set(gpu, result);
  return result;
}

/**
 * Shape class of a product: tiny products use the `small` config (cheap to compile). On CPU
 * adapters (`cpu`) products with at most 64 rows of A, or an output of at most 128 x 128, are
 * `narrow`, timed on their own (the same sums bit for bit in every family): which family wins them
 * differs between machines. On one 2-core llvmpipe machine `reg` did (a decode step's 64 x 128 x
 * 384 0.34 ms against `tex`'s 0.60, its LM head 64 x 128 x 4096 3.1 against 4.3, a training step's
 * attention-projection weight gradient 128 x 4096 x 128 6.9 against 10.8); on an AMD EPYC with the
 * same llvmpipe `tex` did (1.4 against 3.1 ms, 12 against 33, 21 against 53), by more than it won
 * LoRA's thin products there, so the two classes are timed apart.
 */
export function shapeClass(M: number, N: number, K: number, cpu = false): ShapeClass {
  if (M <= 4) return N * K >= 1 << 16 ? "gemv" : "small";
  if (M * N * K < 1 << 21) return "small";
  if (Math.min(M, N) <= 32) return "thin";
  if (cpu && (M <= 64 || (M <= 128 && N <= 128))) return "narrow";
  return "gemm";
}

/**
 * The tile configuration a matmul of `M x K x N` uses on `gpu` (tuned, cached or default).
 */
export function matmulConfigFor(gpu: Gpu, M: number, N: number, K: number): MatmulConfig {
  return lookup(gpu).configs[shapeClass(M, N, K, isCpuAdapter(gpu))];
}

/**
 * One line per shape class naming the config in use and where it came from (for `info`).
 *
 * @example
 * ```ts ignore
 * console.log(describeMatmulConfig(gpu)); // "matmul on llvmpipe ...: gemm reg:32x32:8, ..."
 * ```
 */
export function describeMatmulConfig(gpu: Gpu): string {
  const r = lookup(gpu);
  return `matmul on ${r.adapter} (${r.source}): gemm ${configKey(r.configs.gemm)}, thin ${
    configKey(r.configs.thin)
  }, narrow ${configKey(r.configs.narrow)}, gemv ${configKey(r.configs.gemv)}, small ${
    configKey(r.configs.small)
  }`;
}

/** The wall time of a `sync()` with nothing recorded (min of 5): what each timed batch pays besides its work. */
async function idleSync(gpu: Gpu): Promise<number> {
  await gpu.sync();
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    await gpu.sync();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/**
 * Time one config on one shape (transB layout): ms per product, min over `reps` batches after a
 * warm-up (compile). A batch records enough products that the sync closing it (~11 ms on
 * llvmpipe, `idle`) does not decide the ranking, and that cost is taken off.
 */
async function timeConfig(
  gpu: Gpu,
  c: MatmulConfig,
  [M, K, N]: [number, number, number],
  reps: number,
  idle: number,
) {
  const bufs = {
    out: gpu.acquire(M * N * 4),
    pre: null,
    a: gpu.acquire(M * K * 4),
    b: gpu.acquire(N * K * 4),
    bias: null,
    bytes: { out: M * N * 4, a: M * K * 4, b: N * K * 4, bias: 0 },
  };
  const plan = {
    batchShape: [],
    batch: 1,
    M,
    N,
    K,
    bBatched: false,
    transA: false,
    transB: true,
    act: "none" as const,
    alpha: 1,
    accumulate: false,
    config: c,
    maxBinding: gpu.maxBinding,
  };
  const batch = async (n: number) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) dispatchMatmul(gpu, bufs, plan);
    await gpu.sync();
    return performance.now() - t0;
  };
  try {
    await batch(1);
    const once = Math.max(0.01, (await batch(1)) - idle);
    const n = Math.min(32, Math.max(1, Math.ceil((4 * idle) / once)));
    let best = Infinity;
    for (let r = 0; r < reps; r++) best = Math.min(best, Math.max(0, (await batch(n)) - idle) / n);
    return best;
  } finally {
    gpu.release(bufs.out);
    gpu.release(bufs.a);
    gpu.release(bufs.b);
  }
}

/**
 * Pick the fastest tile configuration per shape class for this adapter by timing a few
 * candidates of both kernel families (a few seconds to a minute on a CPU rasterizer; compiles
 * dominate). The result is cached in memory and on disk; later calls return the cached one
 * unless `force`.
 *
 * @example
 * ```ts ignore
 * import { Gpu } from "./gpu.ts";
 * const gpu = await Gpu.create();
 * const r = await autotuneMatmul(gpu, { log: console.error });
 * console.log(r.configs.gemm);
 * ```
 */
export async function autotuneMatmul(gpu: Gpu, opts: AutotuneOptions = {}): Promise<AutotuneResult> {
  const have = lookup(gpu);
  if (!opts.force && (have.source === "disk" || have.source === "measured")) {
    const r = { ...have, source: have.source === "measured" ? "memory" as const : have.source };
    return r;
  }
  const reps = opts.reps ?? 3;
  const idle = await idleSync(gpu);
  const cands = candidates(gpu);
  const shapes = {
    gemm: [512, 512, 512] as [number, number, number],
    thin: [512, 1024, 16] as [number, number, number],
    narrow: [128, 2048, 128] as [number, number, number],
    gemv: [1, 2048, 2048] as [number, number, number],
  };
  const configs = { ...defaults(gpu) };
  const timings: AutotuneResult["timings"] = [];
  const tuned: TunedClass[] = isCpuAdapter(gpu)
    ? ["gemm", "thin", "narrow", "gemv"]
    : ["gemm", "thin", "gemv"];
  for (const cls of tuned) {
    const shape = opts.shapes?.[cls] ?? shapes[cls];
    const flop = 2 * shape[0] * shape[1] * shape[2];
    let best = Infinity;
    for (const c of (opts.candidates?.[cls] ?? cands[cls]).filter((c) => feasible(gpu, c))) {
      let ms: number;
      try {
        ms = await timeConfig(gpu, c, shape, reps, idle);
      } catch (e) {
        opts.log?.(`matmul autotune: ${configKey(c)} failed: ${(e as Error).message}`);
        continue;
      }
      const t = { class: cls, shape: shape.join("x"), config: configKey(c), ms, gflops: flop / ms / 1e6 };
      timings.push(t);
      opts.log?.(
        `matmul autotune ${cls} ${t.shape}: ${t.config} ${ms.toFixed(2)} ms ${t.gflops.toFixed(2)} GFLOP/s`,
      );
      if (ms < best) {
        best = ms;
        configs[cls] = c;
      }
    }
  }
  const result: AutotuneResult = { adapter: gpu.info.description, configs, timings, source: "measured" };
  memory.set(gpu, result);
  const unsaved = opts.save ?? true ? writeDisk(result.adapter, configs) : null;
  if (unsaved) {
    opts.log?.(`matmul autotune: could not cache the result (${unsaved}); it holds for this process`);
  }
  return unsaved ? { ...result, unsaved } : result;
}
