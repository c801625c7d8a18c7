/**
 * Repetition statistics in the style of Gopher (Rae et al. 2021, "Scaling Language Models",
 * appendix A.1.1 and table A1) as implemented in datatrove's `gopher_repetition_filter.py` and
 * Dolma's Gopher tagger. Private: the public filter is `repetitionFilter` in `clean.ts`.
 * @module
 */

/** Thresholds of the repetition filter; a document is dropped when a fraction exceeds one. */
export interface RepetitionThresholds {
  dup_line_frac: number;
  dup_para_frac: number;
  dup_line_char_frac: number;
  dup_para_char_frac: number;
  /** n -> max fraction of characters in the most frequent n-gram (n = 2, 3, 4 in Gopher). */
  top_n_grams: Record<string, number>;
  /** n -> max fraction of characters in duplicated n-grams (n = 5..10 in Gopher). */
  dup_n_grams: Record<string, number>;
}

/** Gopher's table A1 values (also datatrove's and Dolma's defaults). */
export const GOPHER_REPETITION: Readonly<RepetitionThresholds> = Object.freeze({
  dup_line_frac: 0.3,
  dup_para_frac: 0.3,
  dup_line_char_frac: 0.2,
  dup_para_char_frac: 0.2,
  top_n_grams: Object.freeze({ "2": 0.2, "3": 0.18, "4": 0.16 }),
  dup_n_grams: Object.freeze({ "5": 0.15, "6": 0.14, "7": 0.13, "8": 0.12, "9": 0.11, "10": 0.1 }),
});

/** Count of repeated elements (after their first occurrence) and their characters. */
function findDuplicates(xs: string[]): { elements: number; chars: number } {
  const seen = new Set<string>();
  let elements = 0, chars = 0;
  for (const x of xs) {
    if (seen.has(x)) {
      elements++;
      chars += x.length;
    } else seen.add(x);
  }
  return { elements, chars };
}

/**
 * Word n-grams as numbers: words are interned to ids and each n-gram hashed to a 53-bit key
 * (collisions ~ n-grams^2 / 2^53: none in practice), avoiding one string per n-gram.
 */
function ngramKeys(ids: Int32Array, n: number): Float64Array {
  const keys = new Float64Array(Math.max(0, ids.length - n + 1));
  for (let i = 0; i < keys.length; i++) {
    let h1 = 0x9e3779b9 ^ n, h2 = 0x85ebca6b;
    for (let k = i; k < i + n; k++) {
      h1 = Math.imul(h1 ^ ids[k], 0xcc9e2d51);
      h1 = (h1 << 13) | (h1 >>> 19);
      h2 = Math.imul(h2 ^ ids[k], 0x1b873593) + 0x6b43a9b5;
    }
    keys[i] = (h1 >>> 0) * 2097152 + ((h2 >>> 0) & 0x1fffff);
  }
  return keys;
}

/** Characters of words[i..i+n), without separators, from prefix sums of word lengths. */
const spanChars = (prefix: Int32Array, i: number, n: number): number => prefix[i + n] - prefix[i];

/**
 * Characters covered by the most frequent word n-gram (joined by spaces) times its count; 0 when
 * no n-gram occurs twice (a unique n-gram is not a repetition: datatrove would flag very short
 * texts here, Gopher's definition concerns repeated n-grams).
 */
function topNgramChars(ids: Int32Array, prefix: Int32Array, n: number): number {
  const counts = new Map<number, number>();
  let best = 0;
  const keys = ngramKeys(ids, n);
  for (let i = 0; i < keys.length; i++) {
    const c = (counts.get(keys[i]) ?? 0) + 1;
    counts.set(keys[i], c);
    if (c > 1) best = Math.max(best, (spanChars(prefix, i, n) + n - 1) * c);
  }
  return best;
}

/** Characters in duplicated n-grams, skipping past each duplicate so no character counts twice. */
function duplicatedNgramChars(ids: Int32Array, prefix: Int32Array, n: number): number {
  const seen = new Set<number>();
  const keys = ngramKeys(ids, n);
  let chars = 0, i = 0;
  while (i < keys.length) {
    if (seen.has(keys[i])) {
      chars += spanChars(prefix, i, n);
      i += n;
    } else {
      seen.add(keys[i]);
      i++;
    }
  }
  return chars;
}

/**
 * The first threshold a text exceeds, as a reason string (`dup_line_frac`, `top_2_gram`,
 * `duplicated_5_n_grams`, ...), or undefined when the text passes. Paragraphs are split on blank
 * lines, lines on newlines, words on whitespace (datatrove's order of checks).
 */
export function repetitionReason(text: string, t: RepetitionThresholds): string | undefined {
  const trimmed = text.trim();
  if (trimmed.length === 0) return undefined;
  const len = text.length;
  const paragraphs = trimmed.split(/\n{2,}/);
  const para = findDuplicates(paragraphs);
  if (para.elements / paragraphs.length > t.dup_para_frac) return "dup_para_frac";
  if (para.chars / len > t.dup_para_char_frac) return "dup_para_char_frac";
  const lines = text.split(/\n+/).filter((l) => l.length > 0);
  const line = findDuplicates(lines);
  if (lines.length > 0 && line.elements / lines.length > t.dup_line_frac) return "dup_line_frac";
  if (line.chars / len > t.dup_line_char_frac) return "dup_line_char_frac";
  const words = trimmed.split(/\s+/);
  const vocab = new Map<string, number>();
  const ids = Int32Array.from(words, (w) => vocab.get(w) ?? (vocab.set(w, vocab.size), vocab.size - 1));
  const prefix = new Int32Array(words.length + 1);
  words.forEach((w, i) => prefix[i + 1] = prefix[i] + w.length);
  for (const [n, frac] of Object.entries(t.top_n_grams)) {
    if (topNgramChars(ids, prefix, Number(n)) / len > frac) return `top_${n}_gram`;
  }
  for (const [n, frac] of Object.entries(t.dup_n_grams)) {
    if (duplicatedNgramChars(ids, prefix, Number(n)) / len > frac) return `duplicated_${n}_n_grams`;
  }
  return undefined;
}
