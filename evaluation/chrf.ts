/**
 * chrF (Popović 2015) and chrF++ (Popović 2017) exactly as sacreBLEU 2.6.0 computes them
 * (`sacrebleu/metrics/chrf.py`, `helpers.py`): character n-grams over code points with white
 * space removed, optional word n-grams after splitting punctuation off word edges, the best
 * reference per segment by F-score, and effective-order averaging (or chrF++.py-style epsilon
 * smoothing) of precision and recall before the F-beta.
 * @module
 */

import { pyFixed, pySplit } from "./_python_text.ts";
import { formatSignature, referencesPerSegment } from "./_sacrebleu.ts";
import { checkInteger, checkString, checkStringArray } from "./_validate.ts";
import { checkBooleans, refuseUnknownOptions } from "../util/problems.ts";

/** Options of {@linkcode chrf} and {@linkcode sentenceChrf}; names and defaults follow sacreBLEU's `CHRF()`. */
export interface ChrfOptions {
  /** Character n-gram order (default 6). */
  char_order?: number;
  /** Word n-gram order (default 0; 2 gives chrF++). */
  word_order?: number;
  /** Weight of recall over precision (default 2). */
  beta?: number;
  /** Lowercase first (default false). */
  lowercase?: boolean;
  /** Keep white space inside character n-grams (default false). */
  whitespace?: boolean;
  /** chrF++.py / Moses / NLTK epsilon smoothing instead of effective order (default false). */
  eps_smoothing?: boolean;
}

/** A chrF result, on the 0-100 scale. */
export interface ChrfResult {
  /** chrF, 0-100. */
  score: number;
  /** `chrF2`, or `chrF2++` for word order 2 (one `+` per word order). */
  name: string;
  /** Per order `[hyp_count, ref_count, match_count]`: character orders 1..char_order, then word orders. */
  stats: [number, number, number][];
  /** e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0`. */
  signature: string;
  /** e.g. `#:1|c:mixed|e:yes|nc:6|nw:0|s:no|v:2.6.0`. */
  signature_short: string;
  /** sacreBLEU's printed line, e.g. `chrF2|#:1|c:mixed|e:yes|nc:6|nw:0|s:no|v:2.6.0 = 51.79`. */
  formatted: string;
}

interface Resolved {
  char_order: number;
  word_order: number;
  beta: number;
  lowercase: boolean;
  whitespace: boolean;
  eps_smoothing: boolean;
}

function resolve(fn: string, options: ChrfOptions): Resolved {
  checkBooleans(options, ["lowercase", "whitespace", "eps_smoothing"], `Cannot compute ${fn}`);
  const r: Resolved = {
    char_order: options.char_order ?? 6,
    word_order: options.word_order ?? 0,
    beta: options.beta ?? 2,
    lowercase: options.lowercase ?? false,
    whitespace: options.whitespace ?? false,
    eps_smoothing: options.eps_smoothing ?? false,
  };
  refuseUnknownOptions(options, Object.keys(r), fn);
  checkInteger(fn, "char_order", r.char_order, 0);
  checkInteger(fn, "word_order", r.word_order, 0);
  if (r.char_order + r.word_order === 0) {
    throw new RangeError(`Cannot compute ${fn}: char_order and word_order are both 0`);
  }
  if (typeof r.beta !== "number" || !(r.beta >= 0) || !Number.isFinite(r.beta)) {
    throw new RangeError(`Cannot compute ${fn}: beta must be a finite number >= 0, got ${r.beta}`);
  }
  return r;
}

/** string.punctuation, which chrF++ splits off the first or last character of a word. */
const PUNCTS = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

/** `CHRF._remove_punctuation`: split one punctuation mark off the end, else off the start. */
function words(sent: string): string[] {
  const out: string[] = [];
  for (const w of pySplit(sent)) {
    const chars = Array.from(w);
    if (chars.length === 1) out.push(w);
    else if (PUNCTS.has(w[w.length - 1])) out.push(w.slice(0, -1), w[w.length - 1]);
    else if (PUNCTS.has(w[0])) out.push(w[0], w.slice(1));
    else out.push(w);
  }
  return out;
}

function count(grams: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const g of grams) counts.set(g, (counts.get(g) ?? 0) + 1);
  return counts;
}

function* charGrams(chars: readonly string[], n: number): Generator<string> {
  for (let i = 0; i + n <= chars.length; i++) yield chars.slice(i, i + n).join("");
}

function* wordGrams(tokens: readonly string[], n: number): Generator<string> {
  for (let i = 0; i + n <= tokens.length; i++) yield tokens.slice(i, i + n).join(" ");
}

/** N-gram counters per order: character orders 1..char_order then word orders 1..word_order. */
function allNgrams(sent: string, o: Resolved): Map<string, number>[] {
  // Python indexes strings by code point, so n-grams are taken over code points.
  const chars = Array.from(o.whitespace ? sent : pySplit(sent).join(""));
  const out: Map<string, number>[] = [];
  for (let n = 1; n <= o.char_order; n++) out.push(count(charGrams(chars, n)));
  if (o.word_order > 0) {
    const tokens = words(sent);
    for (let n = 1; n <= o.word_order; n++) out.push(count(wordGrams(tokens, n)));
  }
  return out;
}

/** `[hyp, ref, match]` for one order; hypothesis n-grams count only if the reference has any. */
function matchStats(hyp: Map<string, number>, ref: Map<string, number>): [number, number, number] {
  let match = 0, hypCount = 0, refCount = 0;
  for (const [g, c] of hyp) {
    hypCount += c;
    const r = ref.get(g);
    if (r !== undefined) match += Math.min(c, r);
  }
  for (const c of ref.values()) refCount += c;
  return [ref.size > 0 ? hypCount : 0, refCount, match];
}

/** `CHRF._compute_f_score` on flattened or per-order statistics, 0-100. */
function fScore(stats: readonly (readonly number[])[], o: Resolved): number {
  const eps = 1e-16;
  const factor = o.beta ** 2;
  let score = 0, avgPrec = 0, avgRec = 0, effective = 0;
  for (const [nHyp, nRef, nMatch] of stats) {
    const prec = nHyp > 0 ? nMatch / nHyp : eps;
    const rec = nRef > 0 ? nMatch / nRef : eps;
    const denom = factor * prec + rec;
    score += denom > 0 ? ((1 + factor) * prec * rec) / denom : eps;
    if (nHyp > 0 && nRef > 0) {
      avgPrec += prec;
      avgRec += rec;
      effective++;
    }
  }
  if (o.eps_smoothing) return (100 * score) / stats.length;
  if (effective === 0) avgPrec = avgRec = 0;
  else {
    avgPrec /= effective;
    avgRec /= effective;
  }
  if (avgPrec + avgRec === 0) return 0;
  return 100 * (((1 + factor) * avgPrec * avgRec) / (factor * avgPrec + avgRec));
}

/** Statistics of one segment against its best reference (highest F; the first on ties). */
function segmentStats(hyp: string, refs: readonly string[], o: Resolved): [number, number, number][] {
  const prep = (s: string) => o.lowercase ? s.toLowerCase() : s;
  const hypGrams = allNgrams(prep(hyp), o);
  let best: [number, number, number][] = [];
  let bestF = -1;
  for (const ref of refs) {
    const refGrams = allNgrams(prep(ref), o);
    const stats = hypGrams.map((h, k) => matchStats(h, refGrams[k]));
    const f = fScore(stats, o);
    if (f > bestF) {
      bestF = f;
      best = stats;
    }
  }
  return best;
}

function result(stats: [number, number, number][], o: Resolved, nrefs: number | "var"): ChrfResult {
  const score = fScore(stats, o);
  const name = `chrF${o.beta}${"+".repeat(o.word_order)}`;
  const fields = [
    ["case", "c", o.lowercase ? "lc" : "mixed"],
    ["eff", "e", o.eps_smoothing ? "no" : "yes"],
    ["nc", "nc", o.char_order],
    ["nw", "nw", o.word_order],
    ["space", "s", o.whitespace ? "yes" : "no"],
  ] as const;
  const signature = formatSignature(nrefs, fields, false);
  const signature_short = formatSignature(nrefs, fields, true);
  return {
    score,
    name,
    stats,
    signature,
    signature_short,
    formatted: `${name}|${signature_short} = ${pyFixed(score, 2)}`,
  };
}

/**
 * Corpus chrF / chrF++, as sacreBLEU's `CHRF(**options).corpus_score(hypotheses, references)`:
 * statistics are summed over segments, then one F-score is taken.
 *
 * @param hypotheses System outputs, one per segment.
 * @param references One reference per segment (`string[]`) or several reference streams
 *   (`string[][]`, `references[k][i]`; `null` marks a missing one).
 *   Not HF `evaluate`'s layout (`references[i]` the list for segment i): transpose that first.
 * @param options Orders, beta, case, white space, smoothing.
 * @returns Score, name, summed statistics and signature strings.
 * @throws {TypeError} When hypotheses or references hold non-strings.
 * @throws {RangeError} When lengths differ, the corpus is empty, or an option is out of range.
 * @example
 * ```ts
 * import { chrf } from "./chrf.ts";
 * import assert from "node:assert/strict";
 * const r = chrf(["The cat sat."], ["The cat sat."], { word_order: 2 });
 * assert.equal(r.score, 100);
 * assert.equal(r.formatted, "chrF2++|#:1|c:mixed|e:yes|nc:6|nw:2|s:no|v:2.6.0 = 100.00");
 * ```
 */
export function chrf(
  hypotheses: readonly string[],
  references: readonly string[] | readonly (readonly (string | null | undefined)[])[],
  options: ChrfOptions = {},
): ChrfResult {
  checkStringArray("chrF", "hypotheses", hypotheses);
  if (hypotheses.length === 0) throw new RangeError("Cannot compute chrF: hypotheses is empty");
  const o = resolve("chrF", options);
  const { perSegment, nrefs } = referencesPerSegment("chrF", hypotheses.length, references);
  const order = o.char_order + o.word_order;
  const sums: [number, number, number][] = Array.from({ length: order }, () => [0, 0, 0]);
  for (let i = 0; i < hypotheses.length; i++) {
    const stats = segmentStats(hypotheses[i], perSegment[i], o);
    for (let k = 0; k < order; k++) for (let j = 0; j < 3; j++) sums[k][j] += stats[k][j];
  }
  return result(sums, o, nrefs);
}

/**
 * Sentence chrF / chrF++, as sacreBLEU's `CHRF(**options).sentence_score(hypothesis, references)`.
 *
 * @param hypothesis One system output.
 * @param references Its reference, or several references (the best one by F-score counts).
 * @param options As for {@linkcode chrf}.
 * @returns Score, name, statistics and signature strings.
 * @throws {TypeError} When an argument is not a string (or array of strings).
 * @throws {RangeError} When no reference is given or an option is out of range.
 * @example
 * ```ts
 * import { sentenceChrf } from "./chrf.ts";
 * import assert from "node:assert/strict";
 * const r = sentenceChrf("!!!", "!!!");
 * assert.deepEqual(r.stats.slice(0, 4), [[3, 3, 3], [2, 2, 2], [1, 1, 1], [0, 0, 0]]);
 * assert.equal(r.score, 100);
 * ```
 */
export function sentenceChrf(
  hypothesis: string,
  references: string | readonly string[],
  options: ChrfOptions = {},
): ChrfResult {
  checkString("sentence chrF", "hypothesis", hypothesis);
  const refs = typeof references === "string" ? [references] : references;
  checkStringArray("sentence chrF", "references", refs);
  if (refs.length === 0) throw new RangeError("Cannot compute sentence chrF: references is empty");
  const o = resolve("sentence chrF", options);
  return result(segmentStats(hypothesis, refs, o), o, refs.length);
}
