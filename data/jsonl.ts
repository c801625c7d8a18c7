/**
 * JSON records: JSON Lines (one object per line, streamed with bounded memory) and plain JSON files
 * holding an array of objects or `{ "data": [...] }` (Hugging Face `datasets`' `field`).
 * @module
 */
import { binaryField, binaryRefusal, parseJson, parseJsonExact, stringifyJson } from "../util/json.ts";
import { readLines, readWholeText, writeTextPieces } from "./_lines.ts";
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
      value = parseJsonExact(text);
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
 * Read a JSON file as HF `datasets`' json builder does: an array of record objects, an object whose
 * `field` (default `"data"`) is that array, an object of equal-length columns
 * (`{"text": [...], "label": [...]}`), or JSON Lines under a `.json` name.
 *
 * @param path the `.json` file
 * @param opts `field`, `columns`, `rename`, `max_samples`
 * @returns the records
 * @throws {SyntaxError} invalid JSON, no records, or a non-object record (naming the file and index)
 * @throws {TypeError} a missing column
 * @example
 * ```ts
 * import { readJson } from "./jsonl.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, JSON.stringify({ data: [{ text: "hi", label: 1 }] }));
 * const rows = await readJson(path, { rename: { text: "sentence" } });
 * if (rows[0].sentence !== "hi") throw new Error("rename failed");
 * await Deno.writeTextFile(path, JSON.stringify({ text: ["a", "b"], label: [0, 1] }));
 * if ((await readJson(path))[1].text !== "b") throw new Error("columns");
 * await Deno.remove(path);
 * ```
 */
export async function readJson(path: string, opts: JsonOptions = {}): Promise<Record<string, unknown>[]> {
  checkSelectOptions(opts, path);
  const text = await readWholeText(path); // (a BOM dropped, a compressed file decompressed)
  let value: unknown;
  try {
    value = parseJsonExact(text);
  } catch (e) {
    // JSON Lines named .json (HF reads them): a second value after the first line's
    const lines = text.split("\n").filter((l) => l.trim());
    if (lines.length > 1 && isJsonObject(lines[0])) return await collect(streamJsonl(path, opts));
    parseJson(text, path); // the error with its line and column
    throw e;
  }
  const field = opts.field ?? "data";
  const obj = value !== null && typeof value === "object" && !Array.isArray(value)
    ? value as Record<string, unknown>
    : null;
  let list = Array.isArray(value) ? value : obj?.[field];
  if (!Array.isArray(list) && obj && opts.field === undefined) list = columnsToRecords(obj);
  if (!Array.isArray(list)) {
    throw new SyntaxError(
      `Cannot read records from ${path}: expected an array of objects, {"${field}": [...]} or columns of equal ` +
        `length ({"text": [...], ...})` + (obj ? `, found keys ${Object.keys(obj).join(", ")}` : "") +
        `; convert it to JSON Lines (one record per line) or put the records under "data" ` +
        `(from code, readJson / readDataset take field to name the key)`,
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

/** `{"a": [1, 2], "b": [3, 4]}` as records, or null when the values are not equal-length lists. */
function columnsToRecords(obj: Record<string, unknown>): Record<string, unknown>[] | null {
  const cols = Object.entries(obj);
  if (
    !cols.length || !cols.every(([, v]) => Array.isArray(v) && v.length === (cols[0][1] as unknown[]).length)
  ) {
    return null;
  }
  const n = (cols[0][1] as unknown[]).length;
  return Array.from(
    { length: n },
    (_, i) => Object.fromEntries(cols.map(([k, v]) => [k, (v as unknown[])[i]])),
  );
}

function isJsonObject(line: string): boolean {
  try {
    const v = JSON.parse(line);
    return v !== null && typeof v === "object" && !Array.isArray(v);
  } catch {
    return false;
  }
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
    let i = 0;
    for await (const r of records) {
      const bytes = binaryField(r); // named by its column, before anything is put in place
      if (bytes !== null) throw binaryRefusal(path, i, bytes, "JSON");
      yield stringifyJson(r) + "\n";
      i++;
    }
  }
  await writeTextPieces(path, lines());
}
