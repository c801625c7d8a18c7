/**
 * Seeded shuffles and deterministic train/validation splits. A split is either by fraction (a
 * seeded shuffle, then a cut) or by hash (SHA-256 of a key column, stable when records are added
 * or reordered, and keeping records that share a key on one side).
 * @module
 */
import { IS_NULL } from "./csv.ts";
import { createHash } from "node:crypto";
import { checkSeed, mulberry32 } from "../util/random.ts";

const prng = mulberry32;

/**
 * A shuffled copy of `items` (Fisher-Yates); the same seed always gives the same order.
 *
 * @param items the records
 * @param opts `seed` (default 42), an integer in [0, 2³² - 1] as in Hugging Face datasets' `shuffle`
 * @throws {RangeError} another seed (a negative or fractional one would alias a valid one)
 * @returns a new array
 * @example
 * ```ts
 * import { shuffleRecords } from "./split.ts";
 * const a = shuffleRecords([1, 2, 3, 4, 5], { seed: 7 });
 * const b = shuffleRecords([1, 2, 3, 4, 5], { seed: 7 });
 * if (a.join() !== b.join() || [...a].sort().join() !== "1,2,3,4,5") throw new Error("not a seeded permutation");
 * ```
 */
export function shuffleRecords<T>(items: readonly T[], opts: { seed?: number } = {}): T[] {
  const seed = opts.seed ?? 42;
  checkSeed(seed, "Cannot shuffle");
  const out = items.slice();
  const rand = prng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * The position of `key` in [0, 1) from its SHA-256: the basis of hash splits.
 *
 * @param key any string (e.g. a document id)
 * @returns a number in [0, 1), the same on every run and machine
 */
export function hashFraction(key: string): number {
  return createHash("sha256").update(key).digest().readUInt32BE(0) / 4294967296;
}

/**
 * The side of a hash split a record's `split_key` value puts it on: a string as it is, other values
 * as JSON (a bigint as its digits). `where` names the record in the error.
 * @throws {TypeError} for a null or missing value (an empty CSV field), which would put every such
 *   record on one side as if they shared a key
 */
export function splitKeySide(v: unknown, frac: number, where: string): "train" | "validation" {
  if (v === null || v === undefined) {
    throw new TypeError(
      `${where} ${IS_NULL}; every record needs a key (records sharing one stay ` +
        `together): fill it in or drop the record`,
    );
  }
  const text = typeof v === "string" ? v : typeof v === "bigint" ? v.toString() : JSON.stringify(v);
  return hashFraction(text) < frac ? "train" : "validation";
}

/** Options of {@linkcode splitRecords}. */
export interface SplitOptions {
  /** Fraction of the records that go to `train` (0 < train_split < 1); default 0.9. */
  train_split?: number;
  /** Seed of the shuffle before a fraction split; default 42. */
  seed?: number;
  /** Split by the SHA-256 of this column's value instead of by a shuffle. */
  split_key?: string;
}

/**
 * Split records into `train` and `validation`, deterministically.
 *
 * @param items the records
 * @param opts `train_split`, `seed`, or `split_key` for a hash split
 * @param source what the records are (a file), named in errors
 * @returns `{ train, validation }`
 * @throws {RangeError} `train_split` outside (0, 1); a shuffled split that leaves train empty (as
 *   HF's `train_test_split` refuses it)
 * @throws {TypeError} a record without the `split_key` column
 * @example
 * ```ts
 * import { splitRecords } from "./split.ts";
 * const rows = Array.from({ length: 100 }, (_, i) => ({ id: `doc${i}` }));
 * const { train, validation } = splitRecords(rows, { train_split: 0.8 });
 * if (train.length !== 80 || validation.length !== 20) throw new Error("sizes");
 * const byHash = splitRecords(rows, { train_split: 0.8, split_key: "id" });
 * if (byHash.train.length + byHash.validation.length !== 100) throw new Error("lost records");
 * ```
 */
export function splitRecords<T extends Record<string, unknown>>(
  items: readonly T[],
  opts: SplitOptions = {},
  source = "the records",
): { train: T[]; validation: T[] } {
  const frac = opts.train_split ?? 0.9;
  if (!(frac > 0 && frac < 1)) {
    throw new RangeError(`Cannot split records: train_split ${frac} is not in (0, 1); use e.g. 0.9`);
  }
  const key = opts.split_key;
  if (key === undefined) {
    // HF `train_test_split(train_size=frac)`: floor(frac * n) train records, the rest validation,
    // and an empty train split is an error
    const n = items.length, cut = Math.floor(n * frac);
    if (cut === 0) { // floor(n * frac) < n for frac < 1: validation always holds one
      throw new RangeError(
        `Cannot split ${n} record${n === 1 ? "" : "s"} with train_split ${frac}: the train split would be ` +
          `empty; add records or raise train_split`,
      );
    }
    const shuffled = shuffleRecords(items, { seed: opts.seed });
    return { train: shuffled.slice(0, cut), validation: shuffled.slice(cut) };
  }
  const train: T[] = [];
  const validation: T[] = [];
  items.forEach((r, i) => {
    if (!Object.hasOwn(r, key)) {
      throw new TypeError(
        `Cannot split ${source} by split_key "${key}": record ${i + 1} has columns ${
          Object.keys(r).join(", ")
        }; ` +
          `name one of them`,
      );
    }
    const side = splitKeySide(r[key], frac, `Cannot split ${source} by split_key "${key}": record ${i + 1}`);
    (side === "train" ? train : validation).push(r);
  });
  // as a fraction split refuses it: a split file with no records is no split
  const empty = !train.length ? "train" : !validation.length ? "validation" : null;
  if (empty && items.length) {
    throw new RangeError(
      `Cannot split ${source} by split_key "${key}": the ${empty} split would be empty (the hash of every one of ` +
        `its ${items.length} values falls ${empty === "train" ? "above" : "below"} train_split ${frac}); ` +
        `change train_split or split_key`,
    );
  }
  return { train, validation };
}

/**
 * Pick one split by name, or throw naming the splits that exist.
 *
 * @param splits the available splits
 * @param name the requested one
 * @param source what the splits belong to (a file or dataset), for the message
 * @returns the records of that split
 * @throws {RangeError} a split that does not exist
 */
export function pickSplit<T>(splits: Record<string, T>, name: string, source: string): T {
  if (!Object.hasOwn(splits, name)) {
    throw new RangeError(
      `Cannot find split "${name}" in ${source}: the splits are ${
        Object.keys(splits).join(", ") || "(none)"
      }; ` +
        `use one of these`,
    );
  }
  return splits[name];
}
