/**
 * The one seeded PRNG of fledge (mulberry32): weight init, data shuffling, sampling, LoRA init and
 * test inputs all draw from it, so a seed means the same thing everywhere.
 *
 * @module
 */

/**
 * A seeded uniform generator in [0, 1): the same seed gives the same sequence.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "./random.ts";
 * const a = mulberry32(7), b = mulberry32(7);
 * if (a() !== b() || a() >= 1) throw new Error("mulberry32");
 * ```
 */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
