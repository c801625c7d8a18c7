/**
 * Byte-level BPE building blocks shared by the trainer and the encoder in `bpe.ts`: the GPT-2
 * byte-to-unicode alphabet, the GPT-2 pre-tokenization regex and the special-token splitter.
 *
 * All three follow the reference implementations exactly, because a `tokenizer.json` written by
 * fledge must give the same ids when it is loaded by Hugging Face `tokenizers` (Rust, Python) or
 * `@huggingface/tokenizers` (the JS port inside `@huggingface/transformers`):
 * - `bytes_to_unicode()` in openai/gpt-2 `src/encoder.py` (= `BYTES_TO_UNICODE` in tokenizers.js),
 * - the `ByteLevel` pre-tokenizer regex of GPT-2 / `tokenizers` (`pre_tokenizers/byte_level.rs`),
 * - `DictionarySplitter` of tokenizers.js: at each position the longest added token wins.
 * @module
 */

/**
 * GPT-2 `bytes_to_unicode()`: byte value -> one printable character. Printable Latin-1 bytes map to
 * themselves; the other 68 bytes (controls, space, 0x7F-0xA0, 0xAD) map to U+0100 onward, so a
 * byte-level token never contains white space (a space becomes `Ġ`, a newline `Ċ`).
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
  return out;
})();

/** Inverse of {@link BYTE_TO_CHAR}: UTF-16 code unit -> byte value (-1 where unused). */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const out = new Int16Array(512).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => out[c.charCodeAt(0)] = b);
  return out;
})();

/** The GPT-2 pre-tokenization regex, verbatim (global + unicode flags, as in tokenizers.js). */
export const GPT2_PATTERN: RegExp =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Split `text` into GPT-2 pre-tokens (every character lands in exactly one piece). */
export function preTokenize(text: string): string[] {
  return text.match(GPT2_PATTERN) ?? [];
}

/** Byte-level string (GPT-2 alphabet) of a byte sequence, e.g. `[32, 104, 105]` -> `"Ġhi"`. */
export function bytesToToken(bytes: ArrayLike<number>): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

/** Bytes of a byte-level token string; `null` when a character is outside the GPT-2 alphabet. */
export function tokenToBytes(token: string): Uint8Array | null {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const code = token.charCodeAt(i);
    const b = code < 512 ? CHAR_TO_BYTE[code] : -1;
    if (b < 0) return null;
    out[i] = b;
  }
  return out;
}

/** A piece of text after special-token splitting; `special` is the token's index, or -1 for text. */
export interface Section {
  text: string;
  special: number;
}

/**
 * Splits text on special tokens the way tokenizers.js `DictionarySplitter` does: scanning left to
 * right, the longest special token starting at a position wins; text between matches is kept.
 */
export class SpecialSplitter {
  readonly #tokens: readonly string[];

  /** @param tokens the special token strings; a section's `special` is an index into this list. */
  constructor(tokens: readonly string[]) {
    this.#tokens = tokens;
  }

  /** Split `text` into sections in order; empty text gives `[]`. */
  split(text: string): Section[] {
    const out: Section[] = [];
    const tokens = this.#tokens;
    // The leftmost position where any token starts (indexOf per token: few tokens, long texts),
    // then the longest token there; equal to the trie scan of DictionarySplitter.
    const next = tokens.map((t) => text.indexOf(t));
    let start = 0;
    for (;;) {
      let at = -1, match = -1;
      for (let k = 0; k < tokens.length; k++) {
        if (tokens[k].length === 0) continue;
        if (next[k] >= 0 && next[k] < start) next[k] = text.indexOf(tokens[k], start);
        const p = next[k];
        if (p < 0) continue;
        if (at < 0 || p < at || (p === at && tokens[k].length > tokens[match].length)) {
          at = p;
          match = k;
        }
      }
      if (match < 0) break;
      if (at > start) out.push({ text: text.slice(start, at), special: -1 });
      out.push({ text: tokens[match], special: match });
      start = at + tokens[match].length;
    }
    if (start < text.length) out.push({ text: text.slice(start), special: -1 });
    return out;
  }
}
