/**
 * ROUGE-N, ROUGE-L and ROUGE-Lsum exactly as google-research's `rouge_score` computes them
 * (`rouge/rouge_scorer.py`, `rouge/tokenize.py`, `rouge/scoring.py`; the same code as the PyPI
 * release 0.1.2), including its tokenizer, the optional NLTK Porter stemmer and the union-LCS
 * of summary-level ROUGE-L with its exact tie-breaking. No bootstrap: means are plain averages.
 *
 * Lin (2004), "ROUGE: A Package for Automatic Evaluation of Summaries".
 * @module
 */

import { porterStem } from "./porter.ts";
import { checkSameLength, checkString, checkStringArray } from "./_validate.ts";
import { checkBooleans, refuseUnknownOptions } from "../util/problems.ts";

/** A ROUGE variant: `rouge1`..`rouge9` (n-gram overlap), `rougeL` (LCS), `rougeLsum` (summary-level LCS). */
export type RougeType = `rouge${1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9}` | "rougeL" | "rougeLsum";

/** Precision (relative to the prediction), recall (relative to the reference) and their F1. */
export interface RougeScore {
  /** Matched units over the prediction's units (n-grams, or LCS tokens), in [0, 1]. */
  precision: number;
  /** Matched units over the reference's units, in [0, 1]. */
  recall: number;
  /** Harmonic mean of precision and recall (0 when both are 0), in [0, 1]. */
  fmeasure: number;
}

/** Scores keyed by ROUGE type. */
export type RougeScores = Partial<Record<RougeType, RougeScore>>;

/** Options of {@linkcode rougeScore} and {@linkcode computeRougeScores}. */
export interface RougeOptions {
  /** Run tokens longer than three characters through the Porter stemmer (default false, as `RougeScorer`). */
  use_stemmer?: boolean;
  /** Which scores to compute (default `["rouge1", "rouge2", "rougeL", "rougeLsum"]`). */
  rouge_types?: readonly RougeType[];
}

const ROUGE_OPTIONS: readonly (keyof RougeOptions)[] = ["use_stemmer", "rouge_types"];

/** Per-example scores and their arithmetic mean, as returned by {@linkcode computeRougeScores}. */
export interface RougeResult {
  /** One entry per (prediction, reference) pair, in input order. */
  scores: RougeScores[];
  /** The mean of every measure over the pairs (summed in input order, divided by the count). */
  mean: RougeScores;
}

/** The four ROUGE types computed when `rouge_types` is not given. */
export const DEFAULT_ROUGE_TYPES: readonly RougeType[] = Object.freeze([
  "rouge1",
  "rouge2",
  "rougeL",
  "rougeLsum",
]);

const ROUGE_N = /^rouge([1-9])$/;
const NOT_ALNUM = /[^a-z0-9]+/g;
const VALID_TOKEN = /^[a-z0-9]+$/;

/**
 * Tokenize like `rouge_score`'s DefaultTokenizer: lowercase, replace every run of characters
 * other than `a-z0-9` by a space, split on white space, stem tokens longer than three
 * characters when asked, keep only non-empty `[a-z0-9]+` tokens.
 *
 * @param text Any string; non-ASCII letters are dropped (so CJK text yields no tokens).
 * @param options `use_stemmer` as in {@linkcode RougeOptions}.
 * @returns The tokens.
 * @throws {TypeError} When `text` is not a string.
 * @example
 * ```ts
 * import { rougeTokenize } from "./rouge.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(rougeTokenize("The cat's running!"), ["the", "cat", "s", "running"]);
 * assert.deepEqual(rougeTokenize("The cat's running!", { use_stemmer: true }), ["the", "cat", "s", "run"]);
 * ```
 */
export function rougeTokenize(text: string, options: { use_stemmer?: boolean } = {}): string[] {
  checkString("ROUGE tokens", "text", text);
  refuseUnknownOptions(options, ["use_stemmer"], "rougeTokenize");
  checkBooleans(options, ["use_stemmer"], "Cannot tokenize for ROUGE");
  return tokenize(text, options.use_stemmer ?? false);
}

const stemCache = new Map<string, string>();

function stem(token: string): string {
  let out = stemCache.get(token);
  if (out === undefined) {
    out = porterStem(token);
    if (stemCache.size < 100_000) stemCache.set(token, out);
  }
  return out;
}

function tokenize(text: string, useStemmer: boolean): string[] {
  // Python's str.lower() and String.toLowerCase() agree on every character that lowers to ASCII.
  const pieces = text.toLowerCase().replace(NOT_ALNUM, " ").split(" ");
  const tokens: string[] = [];
  for (const piece of pieces) {
    const token = useStemmer && piece.length > 3 ? stem(piece) : piece;
    if (VALID_TOKEN.test(token)) tokens.push(token);
  }
  return tokens;
}

function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    // Tokens never contain a space, so joining with one keeps n-grams distinct.
    const key = tokens.slice(i, i + n).join(" ");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function scoreNgrams(target: readonly string[], prediction: readonly string[], n: number): RougeScore {
  const targetCounts = ngramCounts(target, n);
  const predictionCounts = ngramCounts(prediction, n);
  let overlap = 0;
  for (const [gram, count] of targetCounts) overlap += Math.min(count, predictionCounts.get(gram) ?? 0);
  const targetTotal = Math.max(0, target.length - n + 1);
  const predictionTotal = Math.max(0, prediction.length - n + 1);
  const precision = overlap / Math.max(predictionTotal, 1);
  const recall = overlap / Math.max(targetTotal, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** LCS lengths: table[i][j] for ref[:i] and can[:j], shape (ref.length + 1, can.length + 1). */
function lcsTable(ref: readonly string[], can: readonly string[]): Int32Array[] {
  const table: Int32Array[] = [];
  for (let i = 0; i <= ref.length; i++) table.push(new Int32Array(can.length + 1));
  for (let i = 1; i <= ref.length; i++) {
    const row = table[i], above = table[i - 1];
    for (let j = 1; j <= can.length; j++) {
      row[j] = ref[i - 1] === can[j - 1] ? above[j - 1] + 1 : Math.max(above[j], row[j - 1]);
    }
  }
  return table;
}

function scoreLcs(target: readonly string[], prediction: readonly string[]): RougeScore {
  if (target.length === 0 || prediction.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const lcs = lcsTable(target, prediction)[target.length][prediction.length];
  const precision = lcs / prediction.length;
  const recall = lcs / target.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/**
 * Indices into `ref` of one LCS of `ref` and `can`, read back from the bottom-right corner as
 * `_backtrack_norec` does: on a match take it, else step left only when that cell is strictly
 * larger than the one above, otherwise step up. Which LCS comes out decides ROUGE-Lsum.
 */
function lcsIndices(ref: readonly string[], can: readonly string[]): number[] {
  const table = lcsTable(ref, can);
  const out: number[] = [];
  let i = ref.length, j = can.length;
  while (i > 0 && j > 0) {
    if (ref[i - 1] === can[j - 1]) {
      out.push(i - 1);
      i--;
      j--;
    } else if (table[i][j - 1] > table[i - 1][j]) {
      j--;
    } else {
      i--;
    }
  }
  return out.reverse();
}

function countTokens(sentences: readonly (readonly string[])[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const sentence of sentences) for (const t of sentence) counts.set(t, (counts.get(t) ?? 0) + 1);
  return counts;
}

/** Summary-level LCS (Lin 2004, section 3.2) with ROUGE 1.5.5's guard against double counting. */
function scoreSummaryLcs(refSents: readonly string[][], canSents: readonly string[][]): RougeScore {
  const zero = { precision: 0, recall: 0, fmeasure: 0 };
  if (refSents.length === 0 || canSents.length === 0) return zero;
  const m = refSents.reduce((s, x) => s + x.length, 0);
  const n = canSents.reduce((s, x) => s + x.length, 0);
  if (m === 0 || n === 0) return zero;
  const refLeft = countTokens(refSents);
  const canLeft = countTokens(canSents);
  let hits = 0;
  for (const r of refSents) {
    const union = new Set<number>();
    for (const c of canSents) for (const i of lcsIndices(r, c)) union.add(i);
    for (const i of [...union].sort((a, b) => a - b)) {
      const t = r[i];
      const inCan = canLeft.get(t) ?? 0, inRef = refLeft.get(t) ?? 0;
      if (inCan > 0 && inRef > 0) {
        hits++;
        canLeft.set(t, inCan - 1);
        refLeft.set(t, inRef - 1);
      }
    }
  }
  const recall = hits / m;
  const precision = hits / n;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Sentences for ROUGE-Lsum: the text split on "\n" only, empty pieces dropped. */
function sentences(text: string, useStemmer: boolean): string[][] {
  return text.split("\n").filter((s) => s.length > 0).map((s) => tokenize(s, useStemmer));
}

function resolveTypes(fn: string, types: readonly RougeType[] | undefined): readonly RougeType[] {
  if (types === undefined) return DEFAULT_ROUGE_TYPES;
  if (!Array.isArray(types) || types.length === 0) {
    throw new TypeError(`Cannot compute ${fn}: rouge_types must be a non-empty array, got ${String(types)}`);
  }
  for (const t of types) {
    if (t !== "rougeL" && t !== "rougeLsum" && !ROUGE_N.test(t)) {
      throw new RangeError(
        `Cannot compute ${fn}: unknown rouge type ${
          JSON.stringify(t)
        }; use rouge1..rouge9, rougeL or rougeLsum`,
      );
    }
  }
  return types;
}

function scorePair(prediction: string, reference: string, types: readonly RougeType[], useStemmer: boolean) {
  const target = tokenize(reference, useStemmer);
  const predicted = tokenize(prediction, useStemmer);
  const out: RougeScores = {};
  for (const type of types) {
    if (type === "rougeL") out[type] = scoreLcs(target, predicted);
    else if (type === "rougeLsum") {
      out[type] = scoreSummaryLcs(sentences(reference, useStemmer), sentences(prediction, useStemmer));
    } else out[type] = scoreNgrams(target, predicted, Number(type.slice(5)));
  }
  return out;
}

/**
 * ROUGE scores of one prediction against one reference, as
 * `RougeScorer(rouge_types, use_stemmer).score(target=reference, prediction=prediction)`.
 *
 * @param prediction The generated text (precision is relative to it).
 * @param reference The reference text (recall is relative to it). For `rougeLsum`, sentences
 *   are separated by "\n".
 * @param options Stemming and the ROUGE types to compute.
 * @returns One {@linkcode RougeScore} per requested type.
 * @throws {TypeError} When a text is not a string.
 * @throws {RangeError} For an unknown ROUGE type.
 * @example
 * ```ts
 * import { rougeScore } from "./rouge.ts";
 * import assert from "node:assert/strict";
 * const s = rougeScore("The cat sat on the mat.", "The cat is sitting on the mat.");
 * assert.equal(s.rouge1!.precision, 5 / 6);
 * assert.equal(s.rouge1!.recall, 5 / 7);
 * ```
 */
export function rougeScore(prediction: string, reference: string, options: RougeOptions = {}): RougeScores {
  checkString("ROUGE", "prediction", prediction);
  checkString("ROUGE", "reference", reference);
  const types = resolveTypes("ROUGE", options.rouge_types);
  checkBooleans(options, ["use_stemmer"], "Cannot compute ROUGE");
  refuseUnknownOptions(options, ROUGE_OPTIONS, "rougeScore");
  return scorePair(prediction, reference, types, options.use_stemmer ?? false);
}

/**
 * ROUGE for a list of (prediction, reference) pairs: the per-pair scores of
 * {@linkcode rougeScore} and their arithmetic mean (no bootstrap resampling).
 *
 * @param predictions Generated texts.
 * @param references Reference texts, one per prediction.
 * @param options Stemming and the ROUGE types to compute.
 * @returns `{scores, mean}`.
 * @throws {TypeError} When an argument is not an array of strings.
 * @throws {RangeError} When the arrays differ in length or are empty, or a ROUGE type is unknown.
 * @example
 * ```ts
 * import { computeRougeScores } from "./rouge.ts";
 * import assert from "node:assert/strict";
 * const { scores, mean } = computeRougeScores(["a b c", "x y"], ["a b d", "x y"], { rouge_types: ["rouge1"] });
 * assert.equal(scores[1].rouge1!.fmeasure, 1);
 * assert.equal(mean.rouge1!.recall, (2 / 3 + 1) / 2);
 * ```
 */
export function computeRougeScores(
  predictions: readonly string[],
  references: readonly string[],
  options: RougeOptions = {},
): RougeResult {
  checkStringArray("ROUGE", "predictions", predictions);
  checkStringArray("ROUGE", "references", references);
  checkSameLength("ROUGE", ["predictions", "references"], predictions, references);
  if (predictions.length === 0) {
    throw new RangeError("Cannot compute ROUGE means: predictions and references are empty");
  }
  const types = resolveTypes("ROUGE", options.rouge_types);
  checkBooleans(options, ["use_stemmer"], "Cannot compute ROUGE");
  refuseUnknownOptions(options, ROUGE_OPTIONS, "computeRougeScores");
  const useStemmer = options.use_stemmer ?? false;
  const scores = predictions.map((p, i) => scorePair(p, references[i], types, useStemmer));
  const mean: RougeScores = {};
  for (const type of types) {
    const sum = { precision: 0, recall: 0, fmeasure: 0 };
    for (const s of scores) {
      sum.precision += s[type]!.precision;
      sum.recall += s[type]!.recall;
      sum.fmeasure += s[type]!.fmeasure;
    }
    const n = scores.length;
    mean[type] = { precision: sum.precision / n, recall: sum.recall / n, fmeasure: sum.fmeasure / n };
  }
  return { scores, mean };
}
