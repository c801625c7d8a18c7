/**
 * Private: the per-adapter choice of attention kernels (see `attention.ts`). CPU rasterizers
 * (llvmpipe, lavapipe, SwiftShader, WARP) get the register-blocked kernels that read K/V (or Q/dO)
 * from staged textures; real GPUs keep the workgroup-memory `tile` kernels.
 *
 * @module
 */
import type { Gpu } from "./gpu.ts";
import { isCpuAdapter } from "./_matmul_tune.ts";

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
  forward: AttentionKernelConfig;
  dq: AttentionKernelConfig;
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

/** The configuration in use on `gpu` (set by {@linkcode setAttentionConfig}, else the default). */
export function attentionConfigFor(gpu: Gpu): AttentionConfig {
  let c = chosen.get(gpu);
  if (!c) chosen.set(gpu, c = defaultAttentionConfig(gpu));
  return c;
}

/** Replace some kernels' configuration on `gpu` (the rest keep theirs). */
export function setAttentionConfig(gpu: Gpu, c: Partial<AttentionConfig>): AttentionConfig {
  const next = { ...attentionConfigFor(gpu), ...c };
  chosen.set(gpu, next);
  return next;
}

/** Text key of a kernel config (`tile`, `tex:4x4:8`). */
export function kernelConfigKey(c: AttentionKernelConfig): string {
  return c.family === "tile" ? "tile" : `${c.family}:${c.rows}x${c.bk}:${c.wg}`;
}
