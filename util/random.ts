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

/**
 * Refuse a seed outside [0, 2³² - 1] or not whole: {@linkcode mulberry32} reads it as a u32, so it
 * would alias a valid one (-1 as 4294967295, 1.5 as 1, NaN as 0). Hugging Face datasets' `shuffle`
 * refuses them too. `what` starts the message.
 *
 * @example
 * ```ts
 * import { checkSeed } from "./random.ts";
 * checkSeed(42, "Cannot shuffle");
 * try {
 *   checkSeed(-1, "Cannot shuffle");
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof RangeError)) throw e;
 * }
 * ```
 */
export function checkSeed(seed: unknown, what: string): void {
  if (!(Number.isInteger(seed) && (seed as number) >= 0 && (seed as number) <= 0xffffffff)) {
    throw new RangeError(
      `${what}: seed ${JSON.stringify(seed)} is not an integer in [0, 2^32 - 1]; use e.g. 42`,
    );
  }
}
