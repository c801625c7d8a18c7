/**
 * sacreBLEU 2.6.0's BLEU tokenizers (`sacrebleu/tokenizers/`): `13a` (mteval-v13a, the
 * default), `intl` (mteval-v14 international), `zh`, `char` and `none`. Each maps a line to a
 * space-separated string that BLEU then splits on Python white space.
 * @module
 */

import { pySplit, pyStrip } from "./_python_text.ts";

/** The tokenizer names sacreBLEU prints in its signature. */
export type BleuTokenizerName = "13a" | "intl" | "zh" | "char" | "none";

/** All tokenizer names, for validation. */
export const BLEU_TOKENIZERS: readonly BleuTokenizerName[] = Object.freeze([
  "13a",
  "intl",
  "zh",
  "char",
  "none",
]);

/**
 * `TokenizerRegexp` (the part of 13a shared with `zh`), with the `u` flag so that classes such
 * as `[^0-9]` consume a whole code point as Python's `re` does.
 */
const REGEXP_RULES: readonly [RegExp, string][] = [
  // ASCII punctuation and symbols except ' , - . (the class [\{-\~\[-\` -\&\(-\+\:-\@\/])
  [/([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40\x2f])/gu, " $1 "],
  // period and comma unless preceded by a digit
  [/([^0-9])([.,])/gu, "$1 $2 "],
  // period and comma unless followed by a digit
  [/([.,])([^0-9])/gu, " $1 $2"],
  // dash when preceded by a digit
  [/([0-9])(-)/gu, "$1 $2 "],
];

function regexpTokenize(line: string): string {
  for (const [re, replacement] of REGEXP_RULES) line = line.replace(re, replacement);
  return pySplit(line).join(" ");
}

function tokenize13a(line: string): string {
  line = line.replaceAll("<skipped>", "").replaceAll("-\n", "").replaceAll("\n", " ");
  line = line.replaceAll("&quot;", '"').replaceAll("&amp;", "&").replaceAll("&lt;", "<").replaceAll(
    "&gt;",
    ">",
  );
  return regexpTokenize(` ${line} `);
}

/** mteval-v14 `intl`: Unicode punctuation (\p{P}) and symbols (\p{S}), digits keep separators. */
const INTL_RULES: readonly [RegExp, string][] = [
  [/(\P{N})(\p{P})/gu, "$1 $2 "],
  [/(\p{P})(\P{N})/gu, " $1 $2"],
  [/(\p{S})/gu, " $1 "],
];

function tokenizeIntl(line: string): string {
  for (const [re, replacement] of INTL_RULES) line = line.replace(re, replacement);
  return pySplit(line).join(" ");
}

/**
 * The code point ranges `tokenizer_zh.py` treats as Chinese. Its table writes two supplementary
 * ranges as `'\u20000'`, `'\u2a6d6'`, `'\u2f800'`, `'\u2fa1d'`, which Python reads as a BMP
 * character followed by a digit or letter; compared with single characters they select
 * U+2001..U+2A6D and U+2F81..U+2FA1, so that is what sacreBLEU (and this port) does.
 */
const ZH_RANGES: readonly [number, number][] = [
  [0x3400, 0x4db5],
  [0x4e00, 0x9fa5],
  [0x9fa6, 0x9fbb],
  [0xf900, 0xfa2d],
  [0xfa30, 0xfa6a],
  [0xfa70, 0xfad9],
  [0x2001, 0x2a6d],
  [0x2f81, 0x2fa1],
  [0xff00, 0xffef],
  [0x2e80, 0x2eff],
  [0x3000, 0x303f],
  [0x31c0, 0x31ef],
  [0x2f00, 0x2fdf],
  [0x2ff0, 0x2fff],
  [0x3100, 0x312f],
  [0x31a0, 0x31bf],
  [0xfe10, 0xfe1f],
  [0xfe30, 0xfe4f],
  [0x2600, 0x26ff],
  [0x2700, 0x27bf],
  [0x3200, 0x32ff],
  [0x3300, 0x33ff],
];

function isChinese(cp: number): boolean {
  for (const [start, end] of ZH_RANGES) if (start <= cp && cp <= end) return true;
  return false;
}

function tokenizeZh(line: string): string {
  let spaced = "";
  for (const ch of pyStrip(line)) spaced += isChinese(ch.codePointAt(0)!) ? ` ${ch} ` : ch;
  return regexpTokenize(spaced);
}

function tokenizeChar(line: string): string {
  return Array.from(line).join(" ");
}

/**
 * Tokenize one (already lowercased and right-stripped) line with a sacreBLEU tokenizer.
 */
export function tokenizeLine(line: string, name: BleuTokenizerName): string {
  switch (name) {
    case "13a":
      return tokenize13a(line);
    case "intl":
      return tokenizeIntl(line);
    case "zh":
      return tokenizeZh(line);
    case "char":
      return tokenizeChar(line);
    case "none":
      return line;
  }
}
