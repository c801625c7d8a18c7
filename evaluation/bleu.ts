/**
 * BLEU (Papineni et al., 2002) exactly as sacreBLEU 2.6.0 computes it
 * (`sacrebleu/metrics/bleu.py`): its tokenizers, clipped n-gram counts against one or several
 * references, the closest reference length for the brevity penalty, the smoothing methods of
 * Chen & Cherry (2014), effective order for sentence BLEU, and the signature strings it prints.
 * @module
 */

import { BLEU_TOKENIZERS, type BleuTokenizerName, tokenizeLine } from "./_bleu_tokenize.ts";
import { pyFixed, pyRstrip, pySplit } from "./_python_text.ts";
import { formatSignature, referencesPerSegment } from "./_sacrebleu.ts";
import { checkBooleans, refuseUnknownOptions } from "../util/problems.ts";
import { checkInteger, checkString, checkStringArray, describe } from "./_validate.ts";

export type { BleuTokenizerName };

/** Smoothing for zero n-gram matches: `exp` (NIST, default), `floor`, `add-k` or `none`. */
export type BleuSmoothMethod = "exp" | "floor" | "add-k" | "none";

/** Options of {@linkcode bleu} and {@linkcode sentenceBleu}; names and defaults follow sacreBLEU's `BLEU()`. */
export interface BleuOptions {
  /** Tokenizer (default `13a`). */
  tokenize?: BleuTokenizerName;
  /** Lowercase hypotheses and references first (default false). */
  lowercase?: boolean;
  /** Smoothing method (default `exp`). */
  smooth_method?: BleuSmoothMethod;
  /** Value for `floor` (default 0.1) and `add-k` (default 1); ignored by the others. */
  smooth_value?: number | null;
  /** Average only over the n-gram orders the hypothesis has (default false; true in {@linkcode sentenceBleu}). */
  effective_order?: boolean;
  /** Highest n-gram order (default 4). */
  max_ngram_order?: number;
}

/** A BLEU result with sacreBLEU's fields, on the 0-100 scale. */
export interface BleuResult {
  /** BLEU, 0-100. */
  score: number;
  /** Clipped n-gram matches per order 1..max_ngram_order (with `add-k`, k is included for n > 1). */
  counts: number[];
  /** Hypothesis n-grams per order. */
  totals: number[];
  /** Modified precisions per order, 0-100 (smoothed where a count is 0). */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  /** Hypothesis length in tokens. */
  sys_len: number;
  /** Effective reference length (closest reference per segment, shorter on ties). */
  ref_len: number;
  /** sys_len / ref_len, or 0 when ref_len is 0. */
  ratio: number;
  /** e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`. */
  signature: string;
  /** e.g. `#:1|c:mixed|e:no|tok:13a|s:exp|v:2.6.0`. */
  signature_short: string;
  /** sacreBLEU's printed line, e.g. `BLEU|#:1|... = 23.25 45.6/26.9/17.8/13.4 (BP = 1.000 ...)`. */
  formatted: string;
}

const SMOOTH_DEFAULTS: Record<BleuSmoothMethod, number | null> = {
  "none": null,
  floor: 0.1,
  "add-k": 1,
  exp: null,
};

interface Resolved {
  tokenize: BleuTokenizerName;
  lowercase: boolean;
  smooth_method: BleuSmoothMethod;
  smooth_value: number | null;
  effective_order: boolean;
  max_ngram_order: number;
}

function resolve(fn: string, options: BleuOptions, effectiveDefault: boolean): Resolved {
  checkBooleans(options, ["lowercase", "effective_order"], `Cannot compute ${fn}`);
  const r: Resolved = {
    tokenize: options.tokenize ?? "13a",
    lowercase: options.lowercase ?? false,
    smooth_method: options.smooth_method ?? "exp",
    smooth_value: options.smooth_value ?? null,
    effective_order: options.effective_order ?? effectiveDefault,
    max_ngram_order: options.max_ngram_order ?? 4,
  };
  refuseUnknownOptions(options, Object.keys(r), fn);
  if (!BLEU_TOKENIZERS.includes(r.tokenize)) {
    throw new RangeError(
      `Cannot compute ${fn}: unknown tokenize ${JSON.stringify(r.tokenize)}; use one of ${
        BLEU_TOKENIZERS.join(", ")
      }`,
    );
  }
  if (!(r.smooth_method in SMOOTH_DEFAULTS)) {
    throw new RangeError(
      `Cannot compute ${fn}: unknown smooth_method ${
        JSON.stringify(r.smooth_method)
      }; use exp, floor, add-k or none`,
    );
  }
  if (r.smooth_value !== null && (typeof r.smooth_value !== "number" || !Number.isFinite(r.smooth_value))) {
    throw new TypeError(
      `Cannot compute ${fn}: smooth_value must be a finite number, got ${describe(r.smooth_value)}`,
    );
  }
  checkInteger(fn, "max_ngram_order", r.max_ngram_order, 1);
  return r;
}

/** `BLEU._preprocess_segment`: optional lowercasing, right-strip, tokenize. */
function preprocess(line: string, o: Resolved): string {
  return tokenizeLine(pyRstrip(o.lowercase ? line.toLowerCase() : line), o.tokenize);
}

/** All n-grams of orders 1..maxOrder with counts; tokens hold no spaces, so " " joins safely. */
function ngrams(tokens: readonly string[], maxOrder: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = `${n}\u0000${tokens.slice(i, i + n).join(" ")}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** Closest reference length to the hypothesis length; the shorter one on ties. */
function closestRefLen(hypLen: number, refLens: readonly number[]): number {
  let bestDiff = -1, best = -1;
  for (const len of refLens) {
    const diff = Math.abs(hypLen - len);
    if (bestDiff === -1 || diff < bestDiff) {
      bestDiff = diff;
      best = len;
    } else if (diff === bestDiff && len < best) best = len;
  }
  return best;
}

/** Segment statistics `[hyp_len, ref_len, correct_1..N, total_1..N]`. */
function segmentStats(hyp: string, refs: readonly string[], o: Resolved): number[] {
  const N = o.max_ngram_order;
  const refCounts = new Map<string, number>();
  const refLens: number[] = [];
  for (const ref of refs) {
    const tokens = pySplit(preprocess(ref, o));
    refLens.push(tokens.length);
    for (const [gram, count] of ngrams(tokens, N)) {
      refCounts.set(gram, Math.max(refCounts.get(gram) ?? 0, count));
    }
  }
  const hypTokens = pySplit(preprocess(hyp, o));
  const correct = new Array<number>(N).fill(0);
  const total = new Array<number>(N).fill(0);
  for (const [gram, count] of ngrams(hypTokens, N)) {
    const n = Number(gram.slice(0, gram.indexOf("\u0000"))) - 1;
    total[n] += count;
    const inRef = refCounts.get(gram);
    if (inRef !== undefined) correct[n] += Math.min(count, inRef);
  }
  return [hypTokens.length, closestRefLen(hypTokens.length, refLens), ...correct, ...total];
}

/** sacreBLEU's `my_log`: log, with log(0) replaced by a huge negative number. */
function myLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

/** `BLEU.compute_bleu` from summed statistics, plus the signature strings. */
function computeBleu(stats: readonly number[], o: Resolved, nrefs: number | "var"): BleuResult {
  const N = o.max_ngram_order;
  const sysLen = stats[0], refLen = stats[1];
  const correct = stats.slice(2, 2 + N);
  const total = stats.slice(2 + N, 2 + 2 * N);
  const smoothValue = o.smooth_value ?? SMOOTH_DEFAULTS[o.smooth_method] ?? 0;
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = new Array<number>(N).fill(0);
  let score = 0;
  if (correct.some((c) => c !== 0)) {
    let smoothMteval = 1;
    let effOrder = N;
    for (let n = 1; n <= N; n++) {
      if (o.smooth_method === "add-k" && n > 1) {
        correct[n - 1] += smoothValue;
        total[n - 1] += smoothValue;
      }
      if (total[n - 1] === 0) break;
      if (o.effective_order) effOrder = n;
      if (correct[n - 1] === 0) {
        if (o.smooth_method === "exp") {
          smoothMteval *= 2;
          precisions[n - 1] = 100 / (smoothMteval * total[n - 1]);
        } else if (o.smooth_method === "floor") {
          precisions[n - 1] = (100 * smoothValue) / total[n - 1];
        }
      } else {
        precisions[n - 1] = (100 * correct[n - 1]) / total[n - 1];
      }
    }
    let logSum = 0;
    for (let n = 0; n < effOrder; n++) logSum += myLog(precisions[n]);
    score = bp * Math.exp(logSum / effOrder);
  }
  const ratio = refLen ? sysLen / refLen : 0;
  let smooth: string = o.smooth_method;
  const smoothDefault = SMOOTH_DEFAULTS[o.smooth_method];
  if (smoothDefault !== null) smooth += `[${pyFixed(o.smooth_value ?? smoothDefault, 2)}]`;
  const fields = [
    ["case", "c", o.lowercase ? "lc" : "mixed"],
    ["eff", "e", o.effective_order ? "yes" : "no"],
    ["tok", "tok", o.tokenize],
    ["smooth", "s", smooth],
  ] as const;
  const signature = formatSignature(nrefs, fields, false);
  const signature_short = formatSignature(nrefs, fields, true);
  const formatted = `BLEU|${signature_short} = ${pyFixed(score, 2)} ` +
    `${precisions.map((p) => pyFixed(p, 1)).join("/")} (BP = ${pyFixed(bp, 3)} ` +
    `ratio = ${pyFixed(ratio, 3)} hyp_len = ${sysLen} ref_len = ${refLen})`;
  return {
    score,
    counts: correct,
    totals: total,
    precisions,
    bp,
    sys_len: sysLen,
    ref_len: refLen,
    ratio,
    signature,
    signature_short,
    formatted,
  };
}

/**
 * Corpus BLEU, as sacreBLEU's `BLEU(**options).corpus_score(hypotheses, references)`.
 *
 * @param hypotheses System outputs, one per segment.
 * @param references Either one reference per segment (`string[]`), or several reference
 *   streams in sacreBLEU's layout (`string[][]`, `references[k][i]` is the k-th reference of
 *   segment i; `null` marks a missing one). Empty strings are valid references.
 *   Not HF `evaluate`'s layout (`references[i]` the list for segment i): transpose that first.
 * @param options Tokenizer, case, smoothing, effective order, max order.
 * @returns Score, sufficient statistics and signature strings.
 * @throws {TypeError} When hypotheses or references hold non-strings.
 * @throws {RangeError} When lengths differ, the corpus is empty, or an option is out of range.
 * @example
 * ```ts
 * import { bleu } from "./bleu.ts";
 * import assert from "node:assert/strict";
 * const r = bleu(["The cat sat on the mat."], ["The cat sat on the mat."]);
 * assert.equal(Math.round(r.score), 100);
 * assert.equal(r.signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
 * ```
 */
export function bleu(
  hypotheses: readonly string[],
  references: readonly string[] | readonly (readonly (string | null | undefined)[])[],
  options: BleuOptions = {},
): BleuResult {
  checkStringArray("BLEU", "hypotheses", hypotheses);
  if (hypotheses.length === 0) throw new RangeError("Cannot compute BLEU: hypotheses is empty");
  const o = resolve("BLEU", options, false);
  const { perSegment, nrefs } = referencesPerSegment("BLEU", hypotheses.length, references);
  const sums = new Array<number>(2 + 2 * o.max_ngram_order).fill(0);
  for (let i = 0; i < hypotheses.length; i++) {
    const stats = segmentStats(hypotheses[i], perSegment[i], o);
    for (let k = 0; k < sums.length; k++) sums[k] += stats[k];
  }
  return computeBleu(sums, o, nrefs);
}

/**
 * Sentence BLEU, as sacreBLEU's `sentence_bleu(hypothesis, references)`: the same as
 * {@linkcode bleu} on one segment, but with `effective_order` on by default.
 *
 * @param hypothesis One system output.
 * @param references Its reference, or several references.
 * @param options As for {@linkcode bleu}; `effective_order` defaults to true.
 * @returns Score, statistics and signature strings.
 * @throws {TypeError} When an argument is not a string (or array of strings).
 * @throws {RangeError} When no reference is given or an option is out of range.
 * @example
 * ```ts
 * import { sentenceBleu } from "./bleu.ts";
 * import assert from "node:assert/strict";
 * const r = sentenceBleu("The cat sat on the mat.", "The cat is sitting on the mat.");
 * assert.deepEqual(r.counts, [6, 4, 2, 1]);
 * assert.equal(r.signature_short, "#:1|c:mixed|e:yes|tok:13a|s:exp|v:2.6.0");
 * ```
 */
export function sentenceBleu(
  hypothesis: string,
  references: string | readonly string[],
  options: BleuOptions = {},
): BleuResult {
  checkString("sentence BLEU", "hypothesis", hypothesis);
  const refs = typeof references === "string" ? [references] : references;
  checkStringArray("sentence BLEU", "references", refs);
  if (refs.length === 0) throw new RangeError("Cannot compute sentence BLEU: references is empty");
  const o = resolve("sentence BLEU", options, true);
  return computeBleu(segmentStats(hypothesis, refs, o), o, refs.length);
}

/**
 * The string sacreBLEU's tokenizer makes of a line before BLEU splits it into tokens
 * (after optional lowercasing and right-stripping, as `BLEU._preprocess_segment`).
 *
 * @param text One line.
 * @param options `tokenize` (default `13a`) and `lowercase`.
 * @returns The tokens joined by single spaces.
 * @throws {TypeError} When `text` is not a string.
 * @throws {RangeError} For an unknown tokenizer.
 * @example
 * ```ts
 * import { bleuTokenize } from "./bleu.ts";
 * import assert from "node:assert/strict";
 * assert.equal(bleuTokenize("Hello, world! It costs $3.50."), "Hello , world ! It costs $ 3.50 .");
 * ```
 */
export function bleuTokenize(
  text: string,
  options: { tokenize?: BleuTokenizerName; lowercase?: boolean } = {},
): string {
  checkString("BLEU tokens", "text", text);
  return preprocess(text, resolve("BLEU tokens", options, false));
}
