/**
 * Plain-text records: `{ text }` per line, per paragraph (blocks separated by blank lines) or one
 * per file, like Hugging Face `datasets`' text builder (`sample_by`). Streamed with bounded memory.
 * @module
 */
import { readLines } from "./_lines.ts";
import { checkSelectOptions, collect, type SelectOptions, selector } from "./_select.ts";

/** Options of the text readers. */
export interface TextOptions extends SelectOptions {
  /** `"line"` (default): one record per non-blank line; `"paragraph"`: per block of lines
   * separated by blank lines (joined with `\n`); `"document"`: the whole file. */
  sample_by?: "line" | "paragraph" | "document";
}

/**
 * Stream `{ text }` records from a text file.
 *
 * @param path the text file (UTF-8)
 * @param opts `sample_by`, `columns`, `rename` (e.g. `{ text: "document" }`), `max_samples`
 * @returns the records, in file order
 * @throws {TypeError} an unknown `sample_by`
 * @example
 * ```ts
 * import { streamText } from "./text.ts";
 * const path = await Deno.makeTempFile({ suffix: ".txt" });
 * await Deno.writeTextFile(path, "one\ntwo\n\nthree\n");
 * const paras = [];
 * for await (const r of streamText(path, { sample_by: "paragraph" })) paras.push(r.text);
 * if (paras.length !== 2 || paras[0] !== "one\ntwo") throw new Error(JSON.stringify(paras));
 * await Deno.remove(path);
 * ```
 */
export async function* streamText(
  path: string,
  opts: TextOptions = {},
): AsyncGenerator<Record<string, unknown>> {
  checkSelectOptions(opts, path);
  const by = opts.sample_by ?? "line";
  if (!["line", "paragraph", "document"].includes(by)) {
    throw new TypeError(
      `Cannot read ${path}: sample_by ${JSON.stringify(by)}; use "line", "paragraph" or "document"`,
    );
  }
  const select = selector(opts);
  const max = opts.max_samples ?? Infinity;
  let n = 0;
  if (n >= max) return;
  let block: string[] = [];
  let blockLine = 0;
  const emit = () => {
    const text = block.join("\n");
    block = [];
    return select({ text }, `${path}:${blockLine}`);
  };
  for await (const { text, line } of readLines(path, { cr: true })) {
    if (by === "line") {
      if (!text.trim()) continue;
      yield select({ text }, `${path}:${line}`);
      if (++n >= max) return;
    } else if (by === "paragraph" && !text.trim()) {
      if (block.length) {
        yield emit();
        if (++n >= max) return;
      }
    } else {
      if (!block.length) blockLine = line;
      block.push(text);
    }
  }
  if (by === "document") {
    // Trailing blank lines are not part of the document.
    while (block.length && !block[block.length - 1].trim()) block.pop();
    if (block.length || blockLine === 0) {
      blockLine ||= 1;
      yield emit();
    }
  } else if (block.length) yield emit();
}

/**
 * Read all `{ text }` records of a text file (see {@linkcode streamText}).
 *
 * @param path the text file
 * @param opts `sample_by`, `columns`, `rename`, `max_samples`
 * @returns the records
 */
export async function readText(path: string, opts: TextOptions = {}): Promise<Record<string, unknown>[]> {
  return await collect(streamText(path, opts));
}
