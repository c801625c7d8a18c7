/**
 * MinHash signatures and banded locality-sensitive hashing (LSH) for near-duplicate detection.
 *
 * A document becomes a set of word shingles (k consecutive normalized words), each shingle a
 * 53-bit hash. MinHash (Broder 1997) keeps, for each of `num_perm` seeded hash permutations, the
 * smallest permuted value; two signatures agree in a slot with probability equal to the Jaccard
 * similarity of the sets. Banded LSH (Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets",
 * ch. 3) splits the signature into `bands` of `rows` and makes two documents candidates when any
 * band matches exactly: P(candidate | J = s) = 1 - (1 - s^rows)^bands.
 *
 * Bands and rows are chosen from a Jaccard threshold exactly as datasketch's `_optimal_param`
 * (datasketch/lsh.py) does: minimise the weighted area of false positives below the threshold plus
 * false negatives above it, over all bands * rows <= num_perm.
 * @module
 */

/** A seeded family of `num_perm` 32-bit hash permutations (multiply-add then murmur3's fmix32). */
export interface MinHashFamily {
  /** Number of permutations (signature length). */
  readonly num_perm: number;
  /** Seed the family was drawn from. */
  readonly seed: number;
  /** Odd multipliers, one per permutation. */
  readonly a: Uint32Array;
  /** Offsets, one per permutation. */
  readonly b: Uint32Array;
}

/** Bands x rows of a banded LSH index. */
export interface LshParams {
  /** Number of bands. */
  bands: number;
  /** Signature rows (slots) per band. */
  rows: number;
}

/** Options of {@linkcode lshParams}: datasketch's `weights=(false_positive, false_negative)`. */
export interface LshParamOptions {
  /** Weight of the false-positive area below the threshold (default 0.5, as datasketch). */
  false_positive_weight?: number;
  /** Weight of the false-negative area above the threshold (default 0.5, as datasketch). */
  false_negative_weight?: number;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** splitmix32-style generator: reproducible 32-bit values from one seed. */
function seededU32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    return fmix32(s);
  };
}

/**
 * Draw a seeded family of MinHash permutations.
 * @param num_perm Signature length (e.g. 128).
 * @param seed Any integer; the same seed gives the same family (and comparable signatures).
 * @returns The frozen family.
 * @throws {RangeError} when `num_perm` is not a positive integer.
 * @example
 * ```ts
 * import { minhashFamily } from "./minhash.ts";
 * const f = minhashFamily(128, 1);
 * if (f.a.length !== 128 || f.a[0] % 2 !== 1) throw new Error("bad family");
 * ```
 */
export function minhashFamily(num_perm: number, seed = 1): MinHashFamily {
  if (!Number.isInteger(num_perm) || num_perm < 1) {
    throw new RangeError(
      `Cannot draw MinHash permutations: num_perm ${num_perm} is not a positive integer; use e.g. 128`,
    );
  }
  const next = seededU32(seed);
  const a = new Uint32Array(num_perm);
  const b = new Uint32Array(num_perm);
  for (let i = 0; i < num_perm; i++) {
    a[i] = (next() | 1) >>> 0; // odd multiplier: x -> a*x + b is a bijection mod 2^32
    b[i] = next();
  }
  return Object.freeze({ num_perm, seed, a, b });
}

/** cyrb53 (public domain): a fast 53-bit string hash, as a float64-exact integer. */
function hash53(str: string): number {
  let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * Lower-cased words of a text: maximal runs of Unicode letters, digits and marks.
 * @param text Any text.
 * @returns The words in order.
 * @example
 * ```ts
 * import { normalizedWords } from "./minhash.ts";
 * if (normalizedWords("Hello, World-wide  web!").join(" ") !== "hello world wide web") throw new Error();
 * ```
 */
export function normalizedWords(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}\p{M}]+/gu) ?? [];
}

/**
 * The set of word `shingle_size`-shingles of a text, as sorted unique 53-bit hashes.
 * A text with fewer words than `shingle_size` (but at least one) is one shingle of all its words;
 * an empty text is the empty set.
 * @param text Any text.
 * @param options `shingle_size` (words per shingle, default 5).
 * @returns Sorted unique shingle hashes.
 * @example
 * ```ts
 * import { shingleSet } from "./minhash.ts";
 * if (shingleSet("a b c d e f", { shingle_size: 5 }).length !== 2) throw new Error();
 * ```
 */
export function shingleSet(text: string, options: { shingle_size?: number } = {}): Float64Array {
  const k = options.shingle_size ?? 5;
  if (!(Number.isInteger(k) && k >= 1)) {
    throw new RangeError(`Cannot make shingles: shingle_size ${k} is not an integer >= 1`);
  }
  const words = normalizedWords(text);
  if (words.length === 0) return new Float64Array(0);
  const n = Math.max(1, words.length - k + 1);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = hash53(words.slice(i, i + k).join(" "));
  out.sort();
  let m = 0;
  for (let i = 0; i < n; i++) if (i === 0 || out[i] !== out[m - 1]) out[m++] = out[i];
  return out.slice(0, m);
}

/**
 * Exact Jaccard similarity |A ∩ B| / |A ∪ B| of two sorted unique sets (0 for two empty sets).
 * @param a Sorted unique values.
 * @param b Sorted unique values.
 * @returns The similarity in [0, 1].
 * @example
 * ```ts
 * import { jaccard } from "./minhash.ts";
 * if (jaccard(new Float64Array([1, 2, 3]), new Float64Array([2, 3, 4])) !== 0.5) throw new Error();
 * ```
 */
export function jaccard(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let i = 0, j = 0, inter = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      inter++;
      i++;
      j++;
    } else if (a[i] < b[j]) i++;
    else j++;
  }
  const union = a.length + b.length - inter;
  return union === 0 ? 0 : inter / union;
}

/**
 * MinHash signature of a set of hashes under a permutation family.
 * Slot i holds min over x of fmix32(a_i * x + b_i) with x the low 32 bits of the hash mixed with
 * its high bits; an empty set gives all slots 0xffffffff.
 * @param hashes Set elements (e.g. from {@linkcode shingleSet}).
 * @param family From {@linkcode minhashFamily}.
 * @returns `num_perm` 32-bit minima.
 * @example
 * ```ts
 * import { minhashFamily, minhashSignature, shingleSet } from "./minhash.ts";
 * const f = minhashFamily(64, 7);
 * const s = minhashSignature(shingleSet("the quick brown fox jumps over the lazy dog"), f);
 * if (s.length !== 64) throw new Error();
 * ```
 */
export function minhashSignature(hashes: ArrayLike<number>, family: MinHashFamily): Uint32Array {
  const { a, b, num_perm } = family;
  const sig = new Uint32Array(num_perm).fill(0xffffffff);
  for (let j = 0; j < hashes.length; j++) {
    const h = hashes[j];
    const x = ((h >>> 0) ^ Math.imul(Math.floor(h / 4294967296), 0x9e3779b1)) >>> 0;
    for (let i = 0; i < num_perm; i++) {
      const v = fmix32((Math.imul(a[i], x) + b[i]) >>> 0);
      if (v < sig[i]) sig[i] = v;
    }
  }
  return sig;
}

/**
 * Jaccard estimate from two signatures: the fraction of equal slots.
 * @param a A signature.
 * @param b A signature of the same family.
 * @returns The estimate in [0, 1].
 * @throws {RangeError} when the lengths differ.
 * @example
 * ```ts
 * import { estimateJaccard } from "./minhash.ts";
 * if (estimateJaccard(new Uint32Array([1, 2]), new Uint32Array([1, 3])) !== 0.5) throw new Error();
 * ```
 */
export function estimateJaccard(a: Uint32Array, b: Uint32Array): number {
  if (a.length !== b.length) {
    throw new RangeError(
      `Cannot compare MinHash signatures: lengths ${a.length} and ${b.length} differ; use one family`,
    );
  }
  let eq = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) eq++;
  return eq / a.length;
}

/** Composite Simpson's rule (stands in for scipy's `quad` in datasketch). */
function integrate(f: (s: number) => number, lo: number, hi: number, n = 128): number {
  const h = (hi - lo) / n;
  let sum = f(lo) + f(hi);
  for (let i = 1; i < n; i++) sum += f(lo + i * h) * (i % 2 ? 4 : 2);
  return (sum * h) / 3;
}

/**
 * Bands and rows for a Jaccard threshold, as datasketch's `_optimal_param`: for every
 * `bands * rows <= num_perm`, weigh the integral of P(candidate | s) over s in [0, threshold]
 * (false positives) and of 1 - P(candidate | s) over [threshold, 1] (false negatives); keep the
 * smallest weighted error (first found on ties, bands ascending then rows ascending).
 * @param threshold Jaccard similarity in (0, 1).
 * @param num_perm Signature length.
 * @param options The two weights (datasketch's default 0.5 / 0.5).
 * @returns `{bands, rows}`.
 * @throws {RangeError} when threshold is outside (0, 1), num_perm < 1 or a weight is negative.
 * @example
 * ```ts
 * import { lshParams } from "./minhash.ts";
 * const p = lshParams(0.8, 128);
 * if (p.bands !== 9 || p.rows !== 13) throw new Error(JSON.stringify(p));
 * ```
 */
export function lshParams(threshold: number, num_perm: number, options: LshParamOptions = {}): LshParams {
  const fpw = options.false_positive_weight ?? 0.5;
  const fnw = options.false_negative_weight ?? 0.5;
  if (!(threshold > 0 && threshold < 1)) {
    throw new RangeError(`Cannot choose LSH bands: threshold ${threshold} is outside (0, 1); use e.g. 0.8`);
  }
  if (!Number.isInteger(num_perm) || num_perm < 1) {
    throw new RangeError(
      `Cannot choose LSH bands: num_perm ${num_perm} is not a positive integer; use e.g. 128`,
    );
  }
  if (!(fpw >= 0) || !(fnw >= 0)) {
    throw new RangeError(`Cannot choose LSH bands: weights ${fpw}, ${fnw} must be >= 0`);
  }
  let best = Infinity;
  let opt: LshParams = { bands: 1, rows: 1 };
  for (let b = 1; b <= num_perm; b++) {
    for (let r = 1; r <= Math.floor(num_perm / b); r++) {
      const p = (s: number) => 1 - (1 - s ** r) ** b;
      const fp = integrate(p, 0, threshold);
      const fn = integrate((s) => 1 - p(s), threshold, 1);
      const err = fp * fpw + fn * fnw;
      if (err < best) {
        best = err;
        opt = { bands: b, rows: r };
      }
    }
  }
  return opt;
}

/**
 * Banded LSH index over MinHash signatures: insert signatures under integer ids, query the ids
 * that share at least one band. Owns the bucket tables (long-lived state), hence a class.
 * @example
 * ```ts
 * import { LshIndex } from "./minhash.ts";
 * const idx = new LshIndex({ bands: 2, rows: 2 });
 * idx.insert(0, new Uint32Array([1, 2, 3, 4]));
 * if (idx.query(new Uint32Array([1, 2, 9, 9])).join() !== "0") throw new Error();
 * ```
 */
export class LshIndex {
  /** The band layout. */
  readonly params: LshParams;
  #tables: Map<string, number[]>[];

  /**
   * Creates an empty index with one bucket table per band.
   *
   * @param params Bands and rows (e.g. from {@linkcode lshParams}).
   * @throws {RangeError} when bands or rows is not a positive integer.
   */
  constructor(params: LshParams) {
    if (
      !(Number.isInteger(params.bands) && params.bands > 0 && Number.isInteger(params.rows) &&
        params.rows > 0)
    ) {
      throw new RangeError(
        `Cannot build LSH index: bands ${params.bands}, rows ${params.rows} must be positive integers`,
      );
    }
    this.params = { ...params };
    this.#tables = Array.from({ length: params.bands }, () => new Map());
  }

  #key(sig: Uint32Array, band: number): string {
    const { rows, bands } = this.params;
    if (sig.length < rows * bands) {
      throw new RangeError(
        `Cannot hash signature into LSH bands: length ${sig.length} < bands ${bands} * rows ${rows}`,
      );
    }
    let key = "";
    for (let i = band * rows; i < (band + 1) * rows; i++) key += sig[i].toString(36) + ",";
    return key;
  }

  /**
   * Add a signature under an id.
   * @param id Caller's id (e.g. the record index).
   * @param sig The signature (at least bands * rows long).
   */
  insert(id: number, sig: Uint32Array): void {
    for (let band = 0; band < this.params.bands; band++) {
      const key = this.#key(sig, band);
      const bucket = this.#tables[band].get(key);
      if (bucket) bucket.push(id);
      else this.#tables[band].set(key, [id]);
    }
  }

  /**
   * Ids sharing at least one band with a signature, ascending, without repeats.
   * @param sig The signature.
   * @returns Candidate ids.
   */
  query(sig: Uint32Array): number[] {
    const found = new Set<number>();
    for (let band = 0; band < this.params.bands; band++) {
      for (const id of this.#tables[band].get(this.#key(sig, band)) ?? []) found.add(id);
    }
    return [...found].sort((x, y) => x - y);
  }
}
