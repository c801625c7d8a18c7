/**
 * Private: bitsandbytes' signed dynamic 8-bit map (the code of double-quantized scales) and the
 * TypeScript references of the double quantization; `quant.ts` re-exports them.
 * @module
 */
import { createDynamicMap, DYN_ZERO, MEAN_WG, SCALE_BLOCK } from "./_quant_wgsl.ts";
import type { WritableArray } from "./tensor.ts";

/**
 * The 256 values (float32, ascending) of bitsandbytes' signed dynamic 8-bit map, the code of the
 * double-quantized scales: 127 negative values from -0.99296875 to -5.5e-7, 0 (code 127), 127
 * positive ones and 1 (code 255). Dense near 0, as `create_dynamic_map()` builds it.
 */
export const DYNAMIC_MAP: readonly number[] = Object.freeze(createDynamicMap());

/**
 * The decision thresholds of the 8-bit code (`(map[c] + map[c + 1]) / 2` in float32, as
 * bitsandbytes' `quantize_blockwise` builds them): code = number of thresholds t with `y > t`.
 */
export const DYNAMIC_THRESHOLDS: readonly number[] = Object.freeze(
  DYNAMIC_MAP.slice(1).map((v, i) => Math.fround(Math.fround(DYNAMIC_MAP[i] + v) / 2)),
);

// ---- references of the double quantization ----

/**
 * Reference: the mean of the scales (the offset), in f32 in the kernel's fixed order: lane l of
 * 256 sums scales l, l + 256, ...; the 256 partial sums are added pairwise (stride 128, ..., 1);
 * the total is divided by S. (bitsandbytes uses `absmax.mean()`, whose order is torch's: the
 * offset may differ in the last bits, and it is stored, so either dequantizes consistently.)
 */
export function scaleMeanReference(scales: ArrayLike<number>): number {
  const f = Math.fround, acc = new Float64Array(MEAN_WG);
  for (let l = 0; l < MEAN_WG; l++) {
    let s = 0;
    for (let i = l; i < scales.length; i += MEAN_WG) s = f(s + scales[i]);
    acc[l] = s;
  }
  for (let st = MEAN_WG / 2; st > 0; st >>= 1) for (let l = 0; l < st; l++) acc[l] = f(acc[l] + acc[l + st]);
  return f(acc[0] / f(scales.length));
}

/** Reference: the 8-bit code of a normalized value (`torch.bucketize` over the midpoints). */
export function encodeDynamicReference(y: number): number {
  let lo = 0, hi = 255;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (y > DYNAMIC_THRESHOLDS[mid]) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Reference double quantization of `scales` (S values) around `offset` (bitsandbytes
 * `quantize_blockwise(scales - offset, blocksize=256)`, default backend): per 256-block
 * a = max |s - offset| into `absmax` (`ceil(S / 256)`), y = clamp((s - offset) * f32(1 / a), -1, 1),
 * the code of y into byte i of `codes` (`ceil(S / 4)` words; bytes past S are the zero code 127).
 * A block with a = 0 gets code 127 (bitsandbytes clamps a to 1e-38 first: the same codes).
 */
export function quantizeScalesReference(
  codes: WritableArray,
  absmax: WritableArray,
  scales: ArrayLike<number>,
  offset: number,
): void {
  const f = Math.fround, S = scales.length;
  for (let w = 0; w < Math.ceil(S / 4); w++) codes[w] = 0;
  for (let b = 0; b * SCALE_BLOCK < S; b++) {
    const i0 = b * SCALE_BLOCK, iend = Math.min(i0 + SCALE_BLOCK, S);
    let a = 0;
    for (let i = i0; i < iend; i++) a = Math.max(a, Math.abs(f(scales[i] - offset)));
    absmax[b] = a;
    const inv = a > 0 ? f(1 / a) : 0;
    for (let i = i0; i < Math.min(i0 + SCALE_BLOCK, 4 * Math.ceil(S / 4)); i++) {
      const c = i < S
        ? encodeDynamicReference(Math.min(1, Math.max(-1, f(f(scales[i] - offset) * inv))))
        : DYN_ZERO;
      codes[i >> 2] = (codes[i >> 2] | (c << (8 * (i & 3)))) >>> 0;
    }
  }
}

/** Reference: `out` (S values) = the scales that double-quantized `codes`, `absmax`, `offset` stand for. */
export function dequantizeScalesReference(
  out: WritableArray,
  codes: ArrayLike<number>,
  absmax: ArrayLike<number>,
  offset: number,
): void {
  const f = Math.fround;
  for (let i = 0; i < out.length; i++) {
    const c = (codes[i >> 2] >>> (8 * (i & 3))) & 255;
    out[i] = f(f(DYNAMIC_MAP[c] * absmax[Math.floor(i / SCALE_BLOCK)]) + offset);
  }
}
