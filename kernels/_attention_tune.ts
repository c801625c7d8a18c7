/**
 * Private: the per-adapter choice of attention kernels (see `attention.ts`). CPU rasterizers
 * (llvmpipe, lavapipe, SwiftShader, WARP) get the register-blocked kernels that read K/V (or Q/dO)
 * from staged textures; real GPUs keep the workgroup-memory `tile` kernels. {@linkcode tuneAttention}
 * times candidates with a caller-given timer and keeps the fastest per kernel, cached in memory and
 * on disk (`attention.json` in the cache folder of `util/cache.ts`: `$FLEDGE_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/fledge`, else `~/.cache/fledge`) keyed by the adapter description; a failing read or write of that file is ignored.
 *
 * @module
 */
import { writeFileAtomicSync } from "../util/atomic.ts";
import { parseJson } from "../util/json.ts";
import { fledgeCacheDir } from "../util/cache.ts";
import { type Gpu, isCpuAdapter } from "./gpu.ts";

/**
 * One kernel's configuration: `tile` (workgroup-memory tiles, one row per thread) or a
 * register-blocked variant (`reg`: storage-buffer reads, `tex`: texture-staged reads) with `rows`
 * rows per invocation, `bk` keys unrolled per step (forward, dQ) and `wg` invocations per workgroup.
 */
export type AttentionKernelConfig =
  | { family: "tile" }
  | { family: "reg" | "tex"; rows: number; bk: number; wg: number };

/** The configurations of the three training kernels. */
export interface AttentionConfig {
  /** The forward kernel (output and logsumexp). */
  forward: AttentionKernelConfig;
  /** The backward kernel that computes dQ (one thread per query row). */
  dq: AttentionKernelConfig;
  /** The backward kernel that computes dK and dV (one thread per key row). */
  dkv: AttentionKernelConfig;
}

const TILE: AttentionKernelConfig = { family: "tile" };
const tex = (rows: number, bk: number, wg: number): AttentionKernelConfig => ({
  family: "tex",
  rows,
  bk,
  wg,
});

/** Default configuration of an adapter kind. */
export function defaultAttentionConfig(gpu: Gpu): AttentionConfig {
  return isCpuAdapter(gpu)
    ? { forward: tex(8, 2, 32), dq: tex(4, 1, 32), dkv: tex(4, 1, 32) }
    : { forward: TILE, dq: TILE, dkv: TILE };
}

const chosen = new WeakMap<Gpu, AttentionConfig>();

/**
 * The configuration in use on `gpu`: set by {@linkcode setAttentionConfig} or a tune, else the
 * disk cache's for this adapter, else the default.
 */
export function attentionConfigFor(gpu: Gpu): AttentionConfig {
  let c = chosen.get(gpu);
  if (!c) {
    const base = defaultAttentionConfig(gpu);
    const disk = readDisk()?.[gpu.info.description];
    c = { ...base };
    for (const k of KERNELS) {
      const v = disk?.[k] ? parseKernelConfig(disk[k]) : null;
      if (v) c[k] = v;
    }
    chosen.set(gpu, c);
  }
  return c;
}

/** Replace some kernels' configuration on `gpu` (the rest keep theirs). */
export function setAttentionConfig(gpu: Gpu, c: Partial<AttentionConfig>): AttentionConfig {
  const next = { ...attentionConfigFor(gpu), ...c };
  chosen.set(gpu, next);
  return next;
}

/** How the split-K decode kernel spreads its work: see {@linkcode setDecodeLayout}. */
export type DecodeLayout = "auto" | "workgroup" | "invocation";

let decodeLayout: DecodeLayout = "auto";

/**
 * Force the split-K decode kernel's layout on every adapter (tests and benchmarks run both):
 * `workgroup` (a workgroup per key split, a thread per key, barriers between the phases),
 * `invocation` (an invocation per query row and key split, no barriers; the same partials bit for
 * bit) or `auto` (the default: `invocation` on CPU adapters). Returns the previous setting.
 */
export function setDecodeLayout(layout: DecodeLayout): DecodeLayout {
  const prev = decodeLayout;
  decodeLayout = layout;
  return prev;
}

/** Whether the split-K decode on `gpu` runs an invocation per query row and split. */
export function decodeByInvocation(gpu: Gpu): boolean {
  return decodeLayout === "invocation" || (decodeLayout === "auto" && isCpuAdapter(gpu));
}

/** Text key of a kernel config (`tile`, `tex:4x4:8`). */
export function kernelConfigKey(c: AttentionKernelConfig): string {
  return c.family === "tile" ? "tile" : `${c.family}:${c.rows}x${c.bk}:${c.wg}`;
}

/** Parse {@linkcode kernelConfigKey} text back (null when malformed). */
export function parseKernelConfig(s: string): AttentionKernelConfig | null {
  if (s === "tile") return TILE;
  const m = /^(reg|tex):(\d+)x(\d+):(\d+)$/.exec(s);
  if (!m || +m[2] < 1 || +m[2] > 16 || +m[3] < 1 || +m[3] > 16 || +m[4] < 1 || +m[4] > 256) return null;
  return { family: m[1] as "reg" | "tex", rows: +m[2], bk: +m[3], wg: +m[4] };
}

const KERNELS = ["forward", "dq", "dkv"] as const;

function cachePath(): string | null {
  const dir = fledgeCacheDir();
  return dir ? `${dir}/attention.json` : null;
}

type Disk = Record<string, Record<string, string>>;

function readDisk(): Disk | null {
  const path = cachePath();
  if (!path) return null;
  try {
    // A missing or corrupt cache only costs a re-tune: any error reads as no cache.
    const j = parseJson(Deno.readTextFileSync(path), path) as { version?: unknown; adapters?: Disk } | null;
    return j && j.version === 1 && typeof j.adapters === "object" ? j.adapters as Disk : null;
  } catch {
    return null;
  }
}

function writeDisk(adapter: string, c: AttentionConfig): void {
  const path = cachePath();
  if (!path) return;
  try {
    const adapters = readDisk() ?? {};
    adapters[adapter] = Object.fromEntries(KERNELS.map((k) => [k, kernelConfigKey(c[k])]));
    writeFileAtomicSync(path, JSON.stringify({ version: 1, adapters }, null, 2) + "\n");
  } catch {
    // A read-only or missing cache directory only costs a re-tune next time.
  }
}

/** Candidates per kernel for an adapter kind. */
export function attentionCandidates(gpu: Gpu): Record<keyof AttentionConfig, AttentionKernelConfig[]> {
  if (isCpuAdapter(gpu)) {
    return {
      forward: [tex(8, 2, 32), tex(4, 2, 32), tex(8, 1, 32), tex(4, 4, 32)],
      dq: [tex(4, 1, 32), tex(2, 1, 32), tex(4, 2, 32)],
      dkv: [tex(4, 1, 32), tex(2, 1, 32)],
    };
  }
  return {
    forward: [TILE, tex(2, 4, 64), { family: "reg", rows: 2, bk: 4, wg: 64 }],
    dq: [TILE, tex(2, 1, 64)],
    dkv: [TILE, tex(2, 1, 64)],
  };
}

/** One timing taken by {@linkcode tuneAttention}. */
export interface AttentionTiming {
  /** Which of the three kernels was timed. */
  kernel: keyof AttentionConfig;
  /** The candidate as {@linkcode kernelConfigKey} text (`tile`, `tex:2x4:64`). */
  config: string;
  /** Its time in milliseconds, as the `time` callback measured it (lower is better). */
  ms: number;
}

/**
 * Time every candidate of each kernel with `time` (ms, lower is better; a throw skips the
 * candidate), keep the fastest per kernel on `gpu`, and save it to the disk cache unless
 * `save === false`.
 */
export async function tuneAttention(
  gpu: Gpu,
  time: (kernel: keyof AttentionConfig, c: AttentionKernelConfig) => Promise<number>,
  opts: {
    save?: boolean;
    log?: (line: string) => void;
    candidates?: Partial<ReturnType<typeof attentionCandidates>>;
  } = {},
): Promise<{ config: AttentionConfig; timings: AttentionTiming[] }> {
  const config = { ...attentionConfigFor(gpu) };
  const timings: AttentionTiming[] = [];
  const all = { ...attentionCandidates(gpu), ...opts.candidates };
  for (const k of KERNELS) {
    let best = Infinity;
    for (const c of all[k]) {
      let ms: number;
      try {
        ms = await time(k, c);
      } catch (e) {
        opts.log?.(`attention autotune: ${k} ${kernelConfigKey(c)} failed: ${(e as Error).message}`);
        continue;
      }
      timings.push({ kernel: k, config: kernelConfigKey(c), ms });
      opts.log?.(`attention autotune ${k}: ${kernelConfigKey(c)} ${ms.toFixed(2)} ms`);
      if (ms < best) {
        best = ms;
        config[k] = c;
      }
    }
  }
  chosen.set(gpu, config);
  if (opts.save ?? true) writeDisk(gpu.info.description, config);
  return { config, timings };
}
