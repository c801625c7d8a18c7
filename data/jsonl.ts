/**
 * JSON records: JSON Lines (one object per line, streamed with bounded memory) and plain JSON files
 * holding an array of objects or `{ "data": [...] }` (Hugging Face `datasets`' `field`).
 * @module
 */
import { readJsonFile } from "../util/json.ts";
import { readLines, writeTextPieces } from "./_lines.ts";
import { checkSelectOptions, collect, type SelectOptions, selector } from "./_select.ts";

export type { SelectOptions } from "./_select.ts";

function checkObject(value: unknown, where: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    const kind = value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
    throw new SyntaxError(
      `Cannot read the record at ${where}: expected a JSON object, found ${kind}; each record must be {...}`,
    );
  }
  return value as Record<string, unknown>;
}

/**
 * Stream the records of a JSON Lines file, one line at a time (memory stays bounded by the
 * longest line). Blank lines are skipped.
 *
 * @param path the `.jsonl` file
 * @param opts `columns`, `rename`, `max_samples`
 * @returns the records, in file order
 * @throws {SyntaxError} invalid JSON or a non-object, naming `file:line`
 * @throws {TypeError} a selected column that a record lacks (naming the columns it has)
 * @example
 * ```ts
 * import { streamJsonl, writeJsonl } from "./jsonl.ts";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await writeJsonl(path, [{ a: 1, b: "x" }, { a: 2, b: "y" }]);
 * const seen = [];
 * for await (const r of streamJsonl(path, { columns: ["b"] })) seen.push(r.b);
 * if (seen.join() !== "x,y") throw new Error(seen.join());
 * await Deno.remove(path);
 * ```
 */
export async function* streamJsonl(
  path: string,
  opts: SelectOptions = {},
): AsyncGenerator<Record<string, unknown>> {
  checkSelectOptions(opts, path);
  const select = selector(opts);
  const max = opts.max_samples ?? Infinity;
  let n = 0;
  if (n >= max) return;
  for await (const { text, line } of readLines(path)) {
    if (!text.trim()) continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new SyntaxError(
        `Cannot parse ${path}:${line}: invalid JSON (${(e as Error).message}); fix or remove that line`,
      );
    }
    yield select(checkObject(value, `${path}:${line}`), `${path}:${line}`);
    if (++n >= max) return;
  }
}

/**
 * Read all records of a JSON Lines file (see {@linkcode streamJsonl}).
 *
 * @param path the `.jsonl` file
 * @param opts `columns`, `rename`, `max_samples`
 * @returns the records
 * @throws {SyntaxError} invalid JSON on a line (`file:line`)
 * @throws {TypeError} a missing column
 */
export async function readJsonl(path: string, opts: SelectOptions = {}): Promise<Record<string, unknown>[]> {
  return await collect(streamJsonl(path, opts));
}

/** Options of {@linkcode readJson}. */
export interface JsonOptions extends SelectOptions {
  /** The key holding the record array in a top-level object (`datasets`' `field`); default `"data"`. */
  field?: string;
}

/**
 * Read a JSON file holding an array of record objects, or an object whose `field` (default
 * `"data"`) is that array.
 *
 * @param path the `.json` file
 * @param opts `field`, `columns`, `rename`, `max_samples`
 * @returns the records
 * @throws {SyntaxError} invalid JSON, no record array, or a non-object record (naming the file and index)
 * @throws {TypeError} a missing column
 * @example
 * ```ts
 * import { readJson } from "./jsonl.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, JSON.stringify({ data: [{ text: "hi", label: 1 }] }));
 * const rows = await readJson(path, { rename: { text: "sentence" } });
 * if (rows[0].sentence !== "hi") throw new Error("rename failed");
 * await Deno.remove(path);
 * ```
 */
export async function readJson(path: string, opts: JsonOptions = {}): Promise<Record<string, unknown>[]> {
  checkSelectOptions(opts, path);
  const value = await readJsonFile(path);
  const field = opts.field ?? "data";
  const list = Array.isArray(value) ? value : (value as Record<string, unknown> | null)?.[field];
  if (!Array.isArray(list)) {
    throw new SyntaxError(
      `Cannot read records from ${path}: expected an array of objects or {"${field}": [...]}` +
        (value && typeof value === "object" ? `, found keys ${Object.keys(value).join(", ")}` : "") +
        `; pass field to name the key holding the records`,
    );
  }
  const select = selector(opts);
  const max = Math.min(opts.max_samples ?? Infinity, list.length);
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < max; i++) {
    const where = `${path} record ${i}`;
    out.push(select(checkObject(list[i], where), where));
  }
  return out;
}

/**
 * Write records as JSON Lines (UTF-8, one object per line, `\n` endings), streaming.
 *
 * @param path the output file (created or replaced)
 * @param records an array or an async iterable of objects
 */
export async function writeJsonl(
  path: string,
  records: Iterable<Record<string, unknown>> | AsyncIterable<Record<string, unknown>>,
): Promise<void> {
  async function* lines() {
    for await (const r of records) yield JSON.stringify(r) + "\n";
  }
  await writeTextPieces(path, lines());
}
