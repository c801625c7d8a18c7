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
 * Characters covered by the most frequent word n-gram (joined by spaces) times its count; 0 when
 * no n-gram occurs twice (a unique n-gram is not a repetition: datatrove would flag very short
 * texts here, Gopher's definition concerns repeated n-grams).
 */
function topNgramChars(words: string[], n: number): number {
  const counts = new Map<string, number>();
  let best = 0;
  for (let i = 0; i + n <= words.length; i++) {
    const g = words.slice(i, i + n).join(" ");
    const c = (counts.get(g) ?? 0) + 1;
    counts.set(g, c);
    if (c > 1) best = Math.max(best, g.length * c);
  }
  return best;
}

/** Characters in duplicated n-grams, skipping past each duplicate so no character counts twice. */
function duplicatedNgramChars(words: string[], n: number): number {
  const seen = new Set<string>();
  let chars = 0, i = 0;
  while (i + n <= words.length) {
    const g = words.slice(i, i + n).join("");
    if (seen.has(g)) {
      chars += g.length;
      i += n;
    } else {
      seen.add(g);
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
  for (const [n, frac] of Object.entries(t.top_n_grams)) {
    if (topNgramChars(words, Number(n)) / len > frac) return `top_${n}_gram`;
  }
  for (const [n, frac] of Object.entries(t.dup_n_grams)) {
    if (duplicatedNgramChars(words, Number(n)) / len > frac) return `duplicated_${n}_n_grams`;
  }
  return undefined;
}
