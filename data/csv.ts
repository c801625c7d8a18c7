/**
 * CSV and TSV records (RFC 4180): a header row names the columns, every row must have as many
 * fields as the header, values stay strings; an empty field (quoted or not) is null, as HF
 * `datasets` reads it through pandas. pandas' other missing-value words (`NA`, `NaN`, `null`,
 * `None`, `N/A`, ...) stay text here: a text column may well hold them. Streamed with bounded
 * memory; written with quoting where needed.
 * @module
 */
import { binaryField, binaryRefusal, stringifyJson } from "../util/json.ts";
import { readTextChunks, withoutCompression, writeTextPieces } from "./_lines.ts";
import { CsvParser } from "./_csv_parser.ts";
import { checkSelectOptions, collect, type SelectOptions, selector } from "./_select.ts";

/** How messages name a null value: what an empty CSV/TSV field reads as (HF's None). */
export const IS_NULL = "is null (in a CSV, an empty field)";

/** Options of the CSV readers. */
export interface CsvOptions extends SelectOptions {
  /** Field separator; default `"\t"` for `.tsv` files, else `","`. */
  delimiter?: string;
}

function delimiterFor(path: string, delimiter?: string): string {
  const d = delimiter ?? (/\.tsv$/i.test(withoutCompression(path)) ? "\t" : ",");
  if (d.length !== 1 || d === '"' || d === "\n" || d === "\r") {
    throw new TypeError(
      `Cannot read ${path}: delimiter ${
        JSON.stringify(d)
      } must be one character other than a quote or newline`,
    );
  }
  return d;
}

/**
 * Stream the records of a CSV/TSV file: one object per row, keyed by the header.
 *
 * @param path the `.csv` / `.tsv` file
 * @param opts `delimiter`, `columns`, `rename`, `max_samples`
 * @returns the records, in file order
 * @throws {SyntaxError} a row with more or fewer fields than the header (naming `file:line`),
 *   a duplicate or missing header, an unclosed quote
 * @throws {TypeError} a missing column (listing the header)
 * @example
 * ```ts
 * import { streamCsv } from "./csv.ts";
 * const path = await Deno.makeTempFile({ suffix: ".csv" });
 * await Deno.writeTextFile(path, 'text,label\n"a, quoted ""one""",1\nplain,0\n');
 * const rows = [];
 * for await (const r of streamCsv(path)) rows.push(r);
 * if (rows[0].text !== 'a, quoted "one"' || rows[1].label !== "0") throw new Error("parse");
 * await Deno.remove(path);
 * ```
 */
export async function* streamCsv(
  path: string,
  opts: CsvOptions = {},
): AsyncGenerator<Record<string, unknown>> {
  checkSelectOptions(opts, path);
  const parser = new CsvParser(delimiterFor(path, opts.delimiter), path);
  const select = selector(opts);
  const max = opts.max_samples ?? Infinity;
  let header: string[] | undefined;
  let n = 0;
  if (n >= max) return;
  const chunks = readTextChunks(path);
  // closed however the loop ends: a bad row, max_samples, or a consumer that stops early (a
  // decoder left open had held its file, and xz's one decoder every later .xz read of the process)
  try {
    for (let done = false; !done;) {
      const next = await chunks.next();
      done = next.done === true;
      const rows = done ? parser.end() : parser.push(next.value as string);
      for (const { fields, line } of rows) {
        if (!header) {
          header = fields;
          const dup = header.find((h, i) => header!.indexOf(h) !== i);
          if (dup !== undefined) {
            throw new SyntaxError(
              `Cannot read ${path}:${line}: the header names column "${dup}" twice; rename one`,
            );
          }
          continue;
        }
        if (fields.length !== header.length) {
          throw new SyntaxError(
            `Cannot read ${path}:${line}: the row has ${fields.length} fields but the header has ${header.length} ` +
              `(${header.join(", ")}); quote fields that contain the delimiter, or fix the row`,
          );
        }
        const rec: Record<string, unknown> = {};
        // an empty field is null, as HF datasets reads it (pandas' default NaN, then None), so a
        // missing value is named downstream rather than trained on as ""
        for (let i = 0; i < header.length; i++) rec[header[i]] = fields[i] === "" ? null : fields[i];
        yield select(rec, `${path}:${line}`);
        if (++n >= max) return;
      }
    }
  } finally {
    await chunks.return(undefined);
  }
  if (!header) throw new SyntaxError(`Cannot read ${path}: the file is empty; it needs a header row`);
}

/**
 * Read all records of a CSV/TSV file (see {@linkcode streamCsv}).
 *
 * @param path the `.csv` / `.tsv` file
 * @param opts `delimiter`, `columns`, `rename`, `max_samples`
 * @returns the records
 * @throws {SyntaxError} a ragged row (`file:line`), a bad header, an unclosed quote
 * @throws {TypeError} a missing column
 */
export async function readCsv(path: string, opts: CsvOptions = {}): Promise<Record<string, unknown>[]> {
  return await collect(streamCsv(path, opts));
}

function quote(value: unknown, d: string): string {
  const s = value === null || value === undefined
    ? ""
    : typeof value === "object"
    ? stringifyJson(value)
    : String(value);
  return s.includes(d) || s.includes('"') || s.includes("\n") || s.includes("\r")
    ? `"${s.replaceAll('"', '""')}"`
    : s;
}

/**
 * Write records as CSV/TSV with a header row, quoting fields that hold the delimiter, a quote or
 * a newline. Objects and arrays are written as JSON; null/undefined as empty fields.
 *
 * @param path the output file (created or replaced); `.tsv` selects a tab delimiter
 * @param records the rows
 * @param opts `columns` (default: the keys of the first record), `delimiter`
 * @throws {TypeError} no columns to write
 */
export async function writeCsv(
  path: string,
  records: Iterable<Record<string, unknown>> | AsyncIterable<Record<string, unknown>>,
  opts: { columns?: string[]; delimiter?: string } = {},
): Promise<void> {
  const d = delimiterFor(path, opts.delimiter);
  let columns = opts.columns;
  async function* lines() {
    let i = 0;
    for await (const r of records) {
      if (!columns) {
        columns = Object.keys(r);
        if (!columns.length) {
          throw new TypeError(`Cannot write ${path}: the first record has no columns; pass columns`);
        }
        yield columns.map((c) => quote(c, d)).join(d) + "\n";
      }
      const bytes = binaryField(r, columns);
      if (bytes !== null) throw binaryRefusal(path, i, bytes, "a CSV cell");
      yield columns.map((c) => quote(r[c], d)).join(d) + "\n";
      i++;
    }
    if (!columns) throw new TypeError(`Cannot write ${path}: no records and no columns; pass columns`);
  }
  if (columns) {
    const header = columns.map((c) => quote(c, d)).join(d) + "\n";
    const body = lines();
    await writeTextPieces(
      path,
      (async function* () {
        yield header;
        yield* body;
      })(),
    );
  } else await writeTextPieces(path, lines());
}
