/**
 * A word-for-word translation dictionary learned from parallel text, and translation with it: the
 * teacher of the translation recipe's sequence-level distillation (Kim & Rush, 2016). A model too
 * small to learn translation from the references alone learns from these targets to copy the source
 * and replace its most frequent words, which already beats the identity baseline.
 *
 * Each of the `max_words` most frequent source words (lower-cased letter runs, counted once per
 * pair) is paired with the target word of the highest Dice coefficient `2 c(s,t) / (c(s) + c(t))`
 * over the pairs both occur in, kept when that is at least `min_dice` and the word differs.
 *
 * @example
 * ```ts
 * import { dictionaryTranslate, learnWordDictionary } from "./word_dictionary.ts";
 * const dict = learnWordDictionary([
 *   { source: "the editor", target: "der Editor" },
 *   { source: "the shell", target: "die Shell" },
 *   { source: "a library", target: "eine Bibliothek" },
 *   { source: "the library", target: "die Bibliothek" },
 * ]);
 * if (dictionaryTranslate("A library.", dict) !== "Eine Bibliothek.") throw new Error("dictionary");
 * ```
 * @module
 */

/** Options of {@linkcode learnWordDictionary}. */
export interface WordDictionaryOptions {
  /** How many of the most frequent source words get an entry (default 200). */
  max_words?: number;
  /** The lowest Dice coefficient kept (default 0.3). */
  min_dice?: number;
  /** Link each target word to one source word at most (competitive linking); default false. */
  one_to_one?: boolean;
}

const WORD = /\p{L}+/gu;

function wordSet(text: string): Set<string> {
  return new Set(text.toLowerCase().match(WORD) ?? []);
}

/**
 * Learn a lower-case source word -> target word dictionary from `{source, target}` pairs; each
 * target word is given as it is most often written in the targets.
 * Frequency ties keep the first word seen; Dice ties the word itself (no entry), else the first
 * target word seen: deterministic.
 */
export function learnWordDictionary(
  pairs: readonly { source: string; target: string }[],
  opts: WordDictionaryOptions = {},
): Map<string, string> {
  const maxWords = opts.max_words ?? 200, minDice = opts.min_dice ?? 0.3;
  if (!Number.isInteger(maxWords) || maxWords < 0) {
    throw new RangeError(`max_words must be a whole number >= 0, got ${maxWords}`);
  }
  if (!(minDice >= 0 && minDice <= 1)) throw new RangeError(`min_dice must be in [0, 1], got ${minDice}`);
  const sets = pairs.map((p) => [wordSet(p.source), wordSet(p.target)] as const);
  const srcCount = new Map<string, number>(), tgtCount = new Map<string, number>();
  for (const [s, t] of sets) {
    for (const w of s) srcCount.set(w, (srcCount.get(w) ?? 0) + 1);
    for (const w of t) tgtCount.set(w, (tgtCount.get(w) ?? 0) + 1);
  }
  const top = [...srcCount].sort((a, b) => b[1] - a[1]).slice(0, maxWords).map(([w]) => w);
  const co = new Map(top.map((w) => [w, new Map<string, number>()]));
  for (const [s, t] of sets) {
    for (const w of s) {
      const row = co.get(w);
      if (row) { for (const v of t) row.set(v, (row.get(v) ?? 0) + 1); }
    }
  }
  // Each target word as it is most often written inside a sentence (German nouns keep their
  // capital; a word's capital at the start of a sentence is not counted).
  const surface = new Map<string, Map<string, number>>();
  for (const p of pairs) {
    for (const m of p.target.matchAll(/(^|[.!?:]\s+|\n\s*)?(\p{L}+)/gu)) {
      const form = m[2], key = form.toLowerCase();
      if (m[1] !== undefined) {
        if (!surface.has(key)) surface.set(key, new Map([[key, 0]]));
        continue;
      }
      let forms = surface.get(key);
      if (!forms) surface.set(key, forms = new Map());
      forms.set(form, (forms.get(form) ?? 0) + 1);
    }
  }
  const written = (key: string) => {
    let best = key, n = 0;
    for (const [form, c] of surface.get(key)!) if (c > n) [best, n] = [form, c];
    return best;
  };
  const diceOf = (w: string, v: string, n: number) => 2 * n / (srcCount.get(w)! + tgtCount.get(v)!);
  const dict = new Map<string, string>();
  if (opts.one_to_one) {
    // Competitive linking (Melamed, 2000): the pairs by Dice, best first; each word links once.
    const links: [string, string, number][] = [];
    for (const w of top) {
      for (const [v, n] of co.get(w)!) links.push([w, v, diceOf(w, v, n)]);
    }
    links.sort((a, b) => b[2] - a[2]);
    const linked = new Set<string>(), used = new Set<string>();
    for (const [w, v, dice] of links) {
      if (dice < minDice) break;
      if (linked.has(w) || used.has(v)) continue;
      linked.add(w), used.add(v);
      if (v !== w) dict.set(w, written(v));
    }
    return dict;
  }
  for (const w of top) {
    let best = "", bestDice = -1;
    for (const [v, n] of co.get(w)!) {
      const dice = diceOf(w, v, n);
      if (dice > bestDice || (dice === bestDice && v === w)) [best, bestDice] = [v, dice];
    }
    if (bestDice >= minDice && best !== w) dict.set(w, written(best));
  }
  return dict;
}

/**
 * Replace every word of `text` found in `dict` (looked up lower-cased), capitalizing the
 * replacement where the word starts with a capital; everything else (unknown words, spaces,
 * punctuation, line breaks) is copied.
 */
export function dictionaryTranslate(text: string, dict: ReadonlyMap<string, string>): string {
  return text.replace(WORD, (w) => {
    const t = dict.get(w.toLowerCase());
    if (t === undefined) return w;
    return w[0] !== w[0].toLowerCase() ? t[0].toUpperCase() + t.slice(1) : t;
  });
}
