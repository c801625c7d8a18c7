/**
 * Private to `gguf.ts` and `onnx.ts`: the argument checks both exports make before anything is
 * read or written.
 * @module
 */
import { isObject, show } from "../../util/problems.ts";

/**
 * Refuse a `tokenizer` option that is not a tokenizer (a folder path, a tokenizer.json's text): it
 * failed deep inside with `tok.save is not a function`.
 * @throws {TypeError} `<fn>: tokenizer must be a Tokenizer (loadTokenizer(dir)), got ...`
 */
export function checkTokenizerArg(tokenizer: unknown, fn: string): void {
  if (tokenizer === undefined || tokenizer === null) return;
  const ok = isObject(tokenizer) &&
    ["encode", "decode", "save"].every((f) =>
      typeof (tokenizer as Record<string, unknown>)[f] === "function"
    );
  if (!ok) {
    throw new TypeError(`${fn}: tokenizer must be a Tokenizer (loadTokenizer(dir)), got ${show(tokenizer)}`);
  }
}

/**
 * Refuse an output path whose extension names the other export format (`model.onnx` for GGUF bytes,
 * `model.gguf` for an ONNX graph): the runtime that opens it by its name would fail on the bytes.
 * @param path the output file
 * @param format what is written, e.g. `"GGUF"`
 * @param other the other format's extension, e.g. `".onnx"`
 * @throws {TypeError} when `path` ends in `other` (any case)
 */
export function refuseOtherFormat(path: string, format: string, other: string): void {
  if (!path.toLowerCase().endsWith(other)) return;
  throw new TypeError(
    `Cannot export ${format} to ${path}: the name ends in ${other}, another format; name it .${format.toLowerCase()}`,
  );
}
