/**
 * The Porter stemmer as NLTK 3.8 implements it in its default `NLTK_EXTENSIONS` mode
 * (`nltk/stem/porter.py`): Porter (1980) "An algorithm for suffix stripping", plus Martin
 * Porter's later extensions and NLTK's own (the irregular-word pool, `ies`/`ied` on four-letter
 * words, the `y -> i` rule only after a consonant, `alli` before `bli`, `fulli`, `logi`).
 * ROUGE's `use_stemmer` option runs every token longer than three characters through it.
 *
 * Written for lowercase ASCII words, which is all ROUGE hands it; other BMP text behaves as in
 * NLTK (every non-vowel is a consonant), astral characters count as two letters here.
 * @module
 */

/** NLTK's irregular forms: the word on the left stems to the word on the right, bypassing the rules. */
const POOL: ReadonlyMap<string, string> = new Map([
  ["sky", "sky"],
  ["skies", "sky"],
  ["dying", "die"],
  ["lying", "lie"],
  ["tying", "tie"],
  ["news", "news"],
  ["innings", "inning"],
  ["inning", "inning"],
  ["outings", "outing"],
  ["outing", "outing"],
  ["cannings", "canning"],
  ["canning", "canning"],
  ["howe", "howe"],
  ["proceed", "proceed"],
  ["exceed", "exceed"],
  ["succeed", "succeed"],
]);

/** A rule: (suffix, replacement, condition on the stem left after removing the suffix). */
type Rule = readonly [suffix: string, replacement: string, condition: ((stem: string) => boolean) | null];

function isConsonant(word: string, i: number): boolean {
  const c = word[i];
  if (c === "a" || c === "e" || c === "i" || c === "o" || c === "u") return false;
  if (c === "y") return i === 0 ? true : !isConsonant(word, i - 1);
  return true;
}

/** Porter's m: the number of vowel-consonant sequences in [C](VC)^m[V]. */
function measure(stem: string): number {
  let m = 0;
  let previousVowel = false;
  for (let i = 0; i < stem.length; i++) {
    const consonant = isConsonant(stem, i);
    if (consonant && previousVowel) m++;
    previousVowel = !consonant;
  }
  return m;
}

const positiveMeasure = (stem: string): boolean => measure(stem) > 0;
const measureAbove1 = (stem: string): boolean => measure(stem) > 1;

function containsVowel(stem: string): boolean {
  for (let i = 0; i < stem.length; i++) if (!isConsonant(stem, i)) return true;
  return false;
}

/** Condition *d: the word ends with a double consonant. */
function endsDoubleConsonant(word: string): boolean {
  const n = word.length;
  return n >= 2 && word[n - 1] === word[n - 2] && isConsonant(word, n - 1);
}

/** Condition *o: consonant-vowel-consonant, the last not w/x/y; NLTK adds two-letter vowel-consonant. */
function endsCvc(word: string): boolean {
  const n = word.length;
  const cvc = n >= 3 && isConsonant(word, n - 3) && !isConsonant(word, n - 2) && isConsonant(word, n - 1) &&
    !"wxy".includes(word[n - 1]);
  return cvc || (n === 2 && !isConsonant(word, 0) && isConsonant(word, 1));
}

/**
 * Apply the first rule whose suffix matches; if its condition fails, stop and keep the word.
 * The pseudo-suffix `*d` matches a double consonant and removes both letters (the replacement
 * puts one back).
 */
function applyRules(word: string, rules: readonly Rule[]): string {
  for (const [suffix, replacement, condition] of rules) {
    if (suffix === "*d" && endsDoubleConsonant(word)) {
      const stem = word.slice(0, -2);
      return condition === null || condition(stem) ? stem + replacement : word;
    }
    if (word.endsWith(suffix)) {
      const stem = word.slice(0, word.length - suffix.length);
      return condition === null || condition(stem) ? stem + replacement : word;
    }
  }
  return word;
}

function step1a(word: string): string {
  if (word.endsWith("ies") && word.length === 4) return word.slice(0, -3) + "ie";
  return applyRules(word, [["sses", "ss", null], ["ies", "i", null], ["ss", "ss", null], ["s", "", null]]);
}

function step1b(word: string): string {
  if (word.endsWith("ied")) return word.slice(0, -3) + (word.length === 4 ? "ie" : "i");
  if (word.endsWith("eed")) {
    const stem = word.slice(0, -3);
    return measure(stem) > 0 ? stem + "ee" : word;
  }
  let stem: string | null = null;
  for (const suffix of ["ed", "ing"]) {
    if (word.endsWith(suffix)) {
      const candidate = word.slice(0, word.length - suffix.length);
      if (containsVowel(candidate)) {
        stem = candidate;
        break;
      }
    }
  }
  if (stem === null) return word;
  const last = stem[stem.length - 1];
  return applyRules(stem, [
    ["at", "ate", null],
    ["bl", "ble", null],
    ["iz", "ize", null],
    ["*d", last, () => last !== "l" && last !== "s" && last !== "z"],
    ["", "e", (s) => measure(s) === 1 && endsCvc(s)],
  ]);
}

function step1c(word: string): string {
  return applyRules(word, [["y", "i", (stem) => stem.length > 1 && isConsonant(stem, stem.length - 1)]]);
}

function step2(word: string): string {
  // NLTK applies ALLI -> AL first and, when it fires, runs step 2 again on the result.
  if (word.endsWith("alli") && positiveMeasure(word.slice(0, -4))) return step2(word.slice(0, -4) + "al");
  return applyRules(word, [
    ["ational", "ate", positiveMeasure],
    ["tional", "tion", positiveMeasure],
    ["enci", "ence", positiveMeasure],
    ["anci", "ance", positiveMeasure],
    ["izer", "ize", positiveMeasure],
    ["bli", "ble", positiveMeasure],
    ["alli", "al", positiveMeasure],
    ["entli", "ent", positiveMeasure],
    ["eli", "e", positiveMeasure],
    ["ousli", "ous", positiveMeasure],
    ["ization", "ize", positiveMeasure],
    ["ation", "ate", positiveMeasure],
    ["ator", "ate", positiveMeasure],
    ["alism", "al", positiveMeasure],
    ["iveness", "ive", positiveMeasure],
    ["fulness", "ful", positiveMeasure],
    ["ousness", "ous", positiveMeasure],
    ["aliti", "al", positiveMeasure],
    ["iviti", "ive", positiveMeasure],
    ["biliti", "ble", positiveMeasure],
    ["fulli", "ful", positiveMeasure],
    // The 'l' of 'logi' stays with the stem for the measure, so 'geo', 'theo' work like 'philo'.
    ["logi", "log", () => positiveMeasure(word.slice(0, -3))],
  ]);
}

function step3(word: string): string {
  return applyRules(word, [
    ["icate", "ic", positiveMeasure],
    ["ative", "", positiveMeasure],
    ["alize", "al", positiveMeasure],
    ["iciti", "ic", positiveMeasure],
    ["ical", "ic", positiveMeasure],
    ["ful", "", positiveMeasure],
    ["ness", "", positiveMeasure],
  ]);
}

function step4(word: string): string {
  return applyRules(word, [
    ["al", "", measureAbove1],
    ["ance", "", measureAbove1],
    ["ence", "", measureAbove1],
    ["er", "", measureAbove1],
    ["ic", "", measureAbove1],
    ["able", "", measureAbove1],
    ["ible", "", measureAbove1],
    ["ant", "", measureAbove1],
    ["ement", "", measureAbove1],
    ["ment", "", measureAbove1],
    ["ent", "", measureAbove1],
    ["ion", "", (stem) => measure(stem) > 1 && (stem.endsWith("s") || stem.endsWith("t"))],
    ["ou", "", measureAbove1],
    ["ism", "", measureAbove1],
    ["ate", "", measureAbove1],
    ["iti", "", measureAbove1],
    ["ous", "", measureAbove1],
    ["ive", "", measureAbove1],
    ["ize", "", measureAbove1],
  ]);
}

function step5a(word: string): string {
  // Both rules share the suffix E, so unlike applyRules the second is tried when the first fails.
  if (!word.endsWith("e")) return word;
  const stem = word.slice(0, -1);
  const m = measure(stem);
  return m > 1 || (m === 1 && !endsCvc(stem)) ? stem : word;
}

function step5b(word: string): string {
  return applyRules(word, [["ll", "l", () => measure(word.slice(0, -1)) > 1]]);
}

/**
 * Stem one word with NLTK 3.8's `PorterStemmer()` (mode `NLTK_EXTENSIONS`, `to_lowercase=True`).
 *
 * @param word The word; it is lowercased first. Words of one or two characters come back
 *   lowercased but otherwise unchanged.
 * @returns The stem, e.g. `"running"` -> `"run"`, `"generously"` -> `"gener"`.
 * @throws {TypeError} When `word` is not a string.
 * @example
 * ```ts
 * import { porterStem } from "./porter.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(["caresses", "ponies", "running", "dying", "happy"].map((w) => porterStem(w)),
 *   ["caress", "poni", "run", "die", "happi"]);
 * ```
 */
export function porterStem(word: string): string {
  if (typeof word !== "string") {
    throw new TypeError(`Cannot stem: word must be a string, got ${typeof word}`);
  }
  const lower = word.toLowerCase();
  // NLTK looks the original word up in the pool but returns the entry for the lowercased one.
  if (POOL.has(word)) return POOL.get(lower)!;
  if (word.length <= 2) return lower;
  let stem = step1a(lower);
  stem = step1b(stem);
  stem = step1c(stem);
  stem = step2(stem);
  stem = step3(stem);
  stem = step4(stem);
  stem = step5a(stem);
  return step5b(stem);
}
