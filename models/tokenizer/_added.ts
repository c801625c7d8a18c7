/**
 * Added-token splitting as Rust `tokenizers` does it (`added_vocabulary.rs`, `find_matches`): at
 * each position the longest added token wins, and a `single_word` token counts only where no word
 * character (Rust regex `\w`, Unicode) touches it on either side; a match that fails stays text,
 * and the scan goes on after it. transformers.js's splitter matches `single_word` tokens inside
 * words too ("cat" in "concatenate"), so a loaded tokenizer with such a token gets this one.
 * @module
 */

/** Rust regex's Unicode `\w`: alphabetic, marks, decimal digits, connector punctuation, joiners. */
const WORD = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u;

type Trie = { [ch: string]: Trie } & { end?: string };

/** Splits text into added tokens (returned as their content) and the text between them. */
export class AddedTokenSplitter {
  readonly #trie: Trie = Object.create(null);
  readonly #single: ReadonlySet<string>;

  /**
   * @param contents the added tokens' strings to split on
   * @param single those of them that must stand as a word of their own (`single_word`)
   */
  constructor(contents: readonly string[], single: ReadonlySet<string>) {
    for (const word of contents) {
      let node = this.#trie;
      // by UTF-16 unit, as split() walks the text
      for (let k = 0; k < word.length; k++) node = node[word[k]] ??= Object.create(null);
      node.end = word;
    }
    this.#single = single;
  }

  /** The pieces of `text` in order: added tokens' contents and the text around them. */
  split(text: string): string[] {
    const out: string[] = [];
    let start = 0, i = 0;
    while (i < text.length) {
      let node: Trie | undefined = this.#trie, match: string | undefined;
      for (let j = i; j < text.length && (node = node[text[j]]); j++) if (node.end) match = node.end;
      if (match === undefined) {
        i++;
        continue;
      }
      const stop = i + match.length;
      if (this.#single.has(match) && (isWord(charBefore(text, i)) || isWord(charAt(text, stop)))) {
        i = stop; // inside a word: text, not the token
        continue;
      }
      if (i > start) out.push(text.slice(start, i));
      out.push(match);
      start = i = stop;
    }
    if (start < text.length) out.push(text.slice(start));
    return out;
  }
}

function isWord(ch: string): boolean {
  return ch !== "" && WORD.test(ch);
}

/** The code point ending at `i` (a surrogate pair whole), or "" at the start. */
function charBefore(text: string, i: number): string {
  if (i === 0) return "";
  const low = text.charCodeAt(i - 1);
  return i >= 2 && low >= 0xdc00 && low <= 0xdfff ? text.slice(i - 2, i) : text[i - 1];
}

/** The code point starting at `i`, or "" at the end. */
function charAt(text: string, i: number): string {
  return i < text.length ? String.fromCodePoint(text.codePointAt(i)!) : "";
}

/** The parts of transformers.js's tokenizer (`@huggingface/tokenizers`) the splitting lives in. */
interface TokenizersInternals {
  added_tokens?: { content: string; single_word: boolean; normalized: boolean }[];
  normalizer?: ((text: string) => string) | null;
  splitter_unnormalized?: { split(text: string): string[] };
  splitter_normalized?: { split(text: string): string[] };
}

/**
 * Give a transformers.js tokenizer Rust's `single_word` rule: its two splitters (raw text, and
 * text after the normalizer) are replaced by {@linkcode AddedTokenSplitter}s over the same tokens.
 * Nothing changes for a tokenizer without `single_word` tokens.
 * @throws {TypeError} when the tokenizer has `single_word` tokens and transformers.js no longer
 *   splits where this expects (a newer version: the rule would be silently lost)
 */
export function useRustAddedTokenRules(tokenizer: unknown): void {
  const t = (tokenizer as { _tokenizer?: TokenizersInternals })._tokenizer;
  const added = t?.added_tokens ?? [];
  if (!added.some((a) => a.single_word)) return;
  if (!t?.splitter_unnormalized || !t.splitter_normalized) {
    throw new TypeError(
      "Cannot load the tokenizer: it has single_word added tokens, and this transformers.js version " +
        "splits added tokens where fledge does not expect; use the version in deno.lock",
    );
  }
  const raw: string[] = [], normalized: string[] = [];
  const single = new Set<string>();
  for (const a of added) {
    // as transformers.js keys them: a normalized token by its normalized form, when there is a normalizer
    const content = a.normalized && t.normalizer ? t.normalizer(a.content) : a.content;
    (a.normalized && t.normalizer ? normalized : raw).push(content);
    if (a.single_word) single.add(content);
  }
  t.splitter_unnormalized = new AddedTokenSplitter(raw, single);
  t.splitter_normalized = new AddedTokenSplitter(normalized, single);
}
