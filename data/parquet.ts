/**
 * Parquet records through `hyparquet`: the file is read by byte ranges (footer, then one row
 * group at a time), so a large shard is never loaded whole. INT64 values that fit a JS number
 * become numbers; struct columns (e.g. `translation: {de, en}`) become objects.
 * @module
 */
// deno-lint-ignore no-import-prefix
import { parquetMetadataAsync, parquetReadObjects, parquetSchema } from "npm:hyparquet@^1.31";
// deno-lint-ignore no-import-prefix
import type { AsyncBuffer, FileMetaData } from "npm:hyparquet@^1.31";
// ZSTD (polars' default), GZIP, BROTLI and LZ4 pages; hyparquet alone reads snappy and uncompressed ones
import { compressors } from "npm:hyparquet-compressors@^1.1";
import { checkSelectOptions, collect, type SelectOptions, selector } from "./_select.ts";

/** A parquet file opened for range reads; `close()` releases it. */
interface ParquetFile {
  buffer: AsyncBuffer;
  close(): void;
}

async function openRanges(path: string): Promise<ParquetFile> {
  const file = await Deno.open(path);
  const byteLength = (await file.stat()).size;
  // seek + read must not interleave: hyparquet may ask for several ranges at once.
  let queue: Promise<unknown> = Promise.resolve();
  const slice = (start: number, end = byteLength): Promise<ArrayBuffer> => {
    const job = queue.then(async () => {
      const out = new Uint8Array(Math.max(0, end - start));
      await file.seek(start, Deno.SeekMode.Start);
      let off = 0;
      while (off < out.length) {
        const n = await file.read(out.subarray(off));
        if (n === null) throw new Error(`unexpected end of file at byte ${start + off} of ${byteLength}`);
        off += n;
      }
      return out.buffer;
    });
    queue = job.catch(() => {});
    return job;
  };
  return { buffer: { byteLength, slice }, close: () => file.close() };
}

function corrupt(path: string, e: unknown): SyntaxError {
  const why = e instanceof Error ? e.message : String(e);
  if (/unsupported compression codec/i.test(why)) { // a valid file: not a download to repeat
    return new SyntaxError(
      `Cannot read ${path}: ${why}; re-export it with snappy, zstd, gzip, brotli or lz4 compression`,
      { cause: e },
    );
  }
  return new SyntaxError(
    `Cannot read ${path}: not a valid parquet file (${why}); ` +
      `re-download it (a truncated download looks like this) or re-export it`,
    { cause: e },
  );
}

/** Plain JS values: safe-size bigints to numbers, recursively through structs and lists. */
function plain(v: unknown): unknown {
  if (v === undefined) return null; // a null struct or list cell (hyparquet's undefined): the key stays, as pyarrow's None
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    return out;
  }
  return v;
}

/**
 * The top-level column names and the row count of a parquet file (reads only the footer).
 *
 * @param path the `.parquet` file
 * @returns `{ columns, num_rows }`
 * @throws {SyntaxError} not a parquet file (naming it)
 */
export async function parquetInfo(path: string): Promise<{ columns: string[]; num_rows: number }> {
  const f = await openRanges(path);
  try {
    const md = await metadata(path, f);
    return { columns: topColumns(md), num_rows: Number(md.num_rows) };
  } finally {
    f.close();
  }
}

/**
 * The label names HF `datasets` stores for its `ClassLabel` columns in a parquet file's
 * `huggingface` metadata (`{"info": {"features": {"label": {"_type": "ClassLabel", "names": [...]}}}}`),
 * by column; empty when the file has none (reads only the footer).
 * @param path the `.parquet` file
 * @returns column name to its label names, in id order
 * @throws {SyntaxError} not a parquet file (naming it)
 */
export async function parquetClassLabels(path: string): Promise<Record<string, string[]>> {
  const f = await openRanges(path);
  try {
    const md = await metadata(path, f);
    const hf = md.key_value_metadata?.find((kv) => kv.key === "huggingface")?.value;
    let features: unknown;
    try {
      features = hf ? JSON.parse(hf)?.info?.features : undefined;
    } catch {
      return {}; // metadata datasets cannot read either: no names
    }
    const out: Record<string, string[]> = {};
    if (!features || typeof features !== "object") return out;
    for (
      const [col, feat] of Object.entries(features as Record<string, { _type?: string; names?: unknown }>)
    ) {
      const names = feat?._type === "ClassLabel" ? feat.names : undefined;
      if (Array.isArray(names) && names.length && names.every((n) => typeof n === "string")) out[col] = names;
    }
    return out;
  } finally {
    f.close();
  }
}

async function metadata(path: string, f: ParquetFile): Promise<FileMetaData> {
  try {
    return await parquetMetadataAsync(f.buffer);
  } catch (e) {
    throw corrupt(path, e);
  }
}

function topColumns(md: FileMetaData): string[] {
  return parquetSchema(md).children.map((c) => c.element.name);
}

type SchemaNode = ReturnType<typeof parquetSchema>;

const isEnum = (n: SchemaNode) =>
  n.element.type === "BYTE_ARRAY" &&
  (n.element.converted_type === "ENUM" || n.element.logical_type?.type === "ENUM");

/** Whether an ENUM column sits anywhere under `n`. */
const hasEnum = (n: SchemaNode): boolean => isEnum(n) || n.children.some(hasEnum);

/**
 * `v` (a cell read by hyparquet under schema node `n`) with its ENUM values as text (Avro's and
 * Thrift's labels, at any depth: a struct's field, a list's elements). hyparquet decodes only STRING
 * and UTF8 annotations as text once binary columns stay bytes.
 */
function enumsAsText(v: unknown, n: SchemaNode, utf8: TextDecoder): unknown {
  if (isEnum(n)) return v instanceof Uint8Array ? utf8.decode(v) : v;
  if (!n.children.length || v === null || typeof v !== "object" || !hasEnum(n)) return v;
  const list = n.element.converted_type === "LIST" || n.element.logical_type?.type === "LIST";
  if (list && Array.isArray(v)) { // LIST -> repeated group -> element (or a 2-level list's repeated leaf)
    const rep = n.children[0];
    const item = rep.children.length === 1 ? rep.children[0] : rep;
    return v.map((x) => enumsAsText(x, item, utf8));
  }
  if (Array.isArray(v)) return v;
  const out = v as Record<string, unknown>;
  for (const c of n.children) {
    if (Object.hasOwn(out, c.element.name)) out[c.element.name] = enumsAsText(out[c.element.name], c, utf8);
  }
  return out;
}

/**
 * Stream the records of a parquet file, one row group at a time.
 *
 * @param path the `.parquet` file
 * @param opts `columns` (only these are decoded), `rename`, `max_samples`
 * @returns the records, in file order
 * @throws {SyntaxError} a corrupt or truncated file (naming it)
 * @throws {TypeError} a selected column the file lacks (listing the columns it has)
 * @example
 * ```ts
 * import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
 * import { streamParquet } from "./parquet.ts";
 * const path = await Deno.makeTempFile({ suffix: ".parquet" });
 * await Deno.writeFile(path, new Uint8Array(parquetWriteBuffer({
 *   columnData: [{ name: "sentence", data: ["good", "bad"] }, { name: "label", data: [1, 0] }],
 * })));
 * const rows = [];
 * for await (const r of streamParquet(path, { columns: ["label"] })) rows.push(r.label);
 * if (rows.join() !== "1,0") throw new Error(rows.join());
 * await Deno.remove(path);
 * ```
 */
export async function* streamParquet(
  path: string,
  opts: SelectOptions = {},
): AsyncGenerator<Record<string, unknown>> {
  checkSelectOptions(opts, path);
  const select = selector(opts);
  const max = opts.max_samples ?? Infinity;
  const f = await openRanges(path);
  try {
    const md = await metadata(path, f);
    const have = topColumns(md);
    const lacking = (opts.columns ?? []).find((c) => !have.includes(c));
    if (lacking !== undefined) {
      throw new TypeError(
        `Cannot select column "${lacking}" in ${path}: the file has columns ${
          have.join(", ")
        }; fix columns to name one of these`,
      );
    }
    const root = parquetSchema(md), utf8 = new TextDecoder(), enums = hasEnum(root);
    let row = 0;
    for (const group of md.row_groups) {
      if (row >= max) return;
      const rowEnd = Math.min(row + Number(group.num_rows), max);
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({
          file: f.buffer,
          metadata: md,
          compressors,
          // a BYTE_ARRAY column without a string annotation is binary (pyarrow's binary, HF's bytes),
          // kept as bytes: decoded as UTF-8 it had become text with U+FFFD in place of its bytes
          utf8: false,
          columns: opts.columns,
          rowStart: row,
          rowEnd,
        });
      } catch (e) {
        throw corrupt(path, e);
      }
      for (const r of rows) {
        if (enums) enumsAsText(r, root, utf8);
        yield select(plain(r) as Record<string, unknown>, `${path} row ${row}`);
        row++;
      }
      row = rowEnd;
    }
  } finally {
    f.close();
  }
}

/**
 * Read all records of a parquet file (see {@linkcode streamParquet}).
 *
 * @param path the `.parquet` file
 * @param opts `columns`, `rename`, `max_samples`
 * @returns the records
 * @throws {SyntaxError} a corrupt file
 * @throws {TypeError} a missing column
 */
export async function readParquet(
  path: string,
  opts: SelectOptions = {},
): Promise<Record<string, unknown>[]> {
  return await collect(streamParquet(path, opts));
}
