/**
 * JSON files whose parse errors name the file, the line and the column (V8's `JSON.parse` gives a
 * character offset at best, and for an unexpected token only a snippet), and say what to do.
 *
 * @module
 */

const FIX = "fix the JSON or restore the file";
/** Characters shown escaped in a message (an unexpected token), so it stays on one line. */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u2028\u2029]/g;

/**
 * Parse JSON text read from `file`; a leading byte order mark is ignored.
 * @param text the file's content
 * @param file the name to put in errors (a path, or `path:line` style label)
 * @returns the parsed value
 * @throws {SyntaxError} one line naming `file`, what is wrong, the line and column, and the fix:
 *   `Cannot parse a.json: unexpected token 'x' at line 3, column 9; fix the JSON or restore the file`
 * @example
 * ```ts
 * import { parseJson } from "./json.ts";
 * const v = parseJson('{"a": [1, 2]}', "a.json") as { a: number[] };
 * if (v.a[1] !== 2) throw new Error("parse");
 * try {
 *   parseJson('{\n  "a": [1, 2,]\n}', "a.json");
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof SyntaxError) || !/^Cannot parse a\.json: .* at line 2, column 14;/.test(e.message)) throw e;
 * }
 * ```
 */
export function parseJson(text: string, file: string): unknown {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    throw new SyntaxError(`Cannot parse ${file}: ${describe(text, e.message)}; ${FIX}`, { cause: e });
  }
}

/**
 * `JSON.parse` that keeps integers past 2^53 exact, as `bigint` (int64 ids: `9007199254740993`
 * would come back as ...992, and a cleaning pass would rewrite the id). Lines without a 16-digit
 * run take the plain parse.
 * @param text JSON text
 * @returns the value
 * @throws {SyntaxError} as `JSON.parse`
 * @example
 * ```ts
 * import { parseJsonExact, stringifyJson } from "./json.ts";
 * const v = parseJsonExact('{"id": 9007199254740993, "x": 1.5}') as { id: bigint; x: number };
 * if (v.id !== 9007199254740993n || stringifyJson(v) !== '{"id":9007199254740993,"x":1.5}') throw new Error();
 * ```
 */
export function parseJsonExact(text: string): unknown {
  if (!/\d{16}/.test(text)) return JSON.parse(text);
  const exact = (_k: string, v: unknown, ctx?: { source?: string }) =>
    typeof v === "number" && !Number.isSafeInteger(v) && ctx?.source && /^-?\d+$/.test(ctx.source)
      ? BigInt(ctx.source)
      : v;
  return JSON.parse(text, exact as (k: string, v: unknown) => unknown);
}

/**
 * `JSON.stringify` that writes a `bigint` as its exact digits (`JSON.stringify` throws "Do not know
 * how to serialize a BigInt" on one: an int64 column of a parquet file).
 * @param value the value
 * @param space indentation, as `JSON.stringify`'s
 * @returns JSON text
 * @throws {TypeError} for binary data (a `Uint8Array`: a parquet binary column's cell), which JSON
 *   has no form for (it had become `{"0": 97, ...}`)
 */
export function stringifyJson(value: unknown, space?: number): string {
  return toJson(value, space, false);
}

function toJson(value: unknown, space: number | undefined, showBytes: boolean): string {
  const raw = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;
  return JSON.stringify(value, (k, v) => {
    if (v instanceof Uint8Array) {
      if (showBytes) return `<${v.length} bytes>`;
      throw new TypeError(
        `${k ? `field "${k}" holds ` : ""}binary data (${v.length} bytes), which JSON cannot hold`,
      );
    }
    return typeof v === "bigint" ? raw(v.toString()) : v;
  }, space);
}

/**
 * A value as messages and previews show it: its JSON, with binary data (a parquet binary column's
 * bytes) as `<N bytes>`.
 * @example
 * ```ts
 * import { showValue } from "./json.ts";
 * if (showValue({ a: new Uint8Array(3) }) !== '{"a":"<3 bytes>"}') throw new Error("shown");
 * ```
 */
export function showValue(value: unknown): string {
  return value instanceof Uint8Array ? `<${value.length} bytes>` : toJson(value, undefined, true);
}

/**
 * Read and parse a JSON file (see {@linkcode parseJson}).
 * @param path the file
 * @returns the parsed value
 * @throws {Deno.errors.NotFound} naming `path` when it does not exist
 * @throws {SyntaxError} naming `path`, line and column when it is not JSON
 * @example
 * ```ts
 * import { readJsonFile } from "./json.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{"vocab_size": 32}');
 * const v = await readJsonFile(path) as { vocab_size: number };
 * if (v.vocab_size !== 32) throw new Error("read");
 * await Deno.remove(path);
 * ```
 */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Deno.errors.NotFound(`Cannot read ${path}: the file does not exist`, { cause: e });
  }
  return parseJson(text, path);
}

/** What is wrong with `text` and where, from V8's message (without its position or snippet). */
function describe(text: string, message: string): string {
  if (text === "") return "the file is empty";
  if (text.trim() === "") return "the file holds only white space";
  // V8: "Unexpected token 'x', "<snippet>" is not valid JSON" (no position), "Unexpected end of JSON
  // input", or "<what> in JSON at position N (line L column C)".
  const token = /^(Unexpected token '[\s\S]{1,2}?'), [\s\S]* is not valid JSON$/.exec(message);
  const pos = token ? null : / at position (\d+)[^"]*$/.exec(message);
  const what = token ? token[1] : pos ? message.slice(0, pos.index) : message;
  const shown = what.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  let end = text.length; // where the content stops: after the last character that is not white space
  while (end > 0 && isWs(text.charCodeAt(end - 1))) end--;
  let offset = pos ? Number(pos[1]) : errorOffset(text);
  if (/^Unexpected end of JSON input/.test(message)) offset = end;
  const msg = `${shown[0].toLowerCase()}${shown.slice(1)}`;
  if (offset < 0 || offset > text.length) return msg;
  if (offset >= end) return `${msg} ${at(text, end)}: it ends early (truncated?)`;
  return `${msg} ${at(text, offset)}`;
}

/** `at line L, column C` (both 1-based; columns count UTF-16 units) of character `offset`. */
function at(text: string, offset: number): string {
  let line = 1, start = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    start = i + 1;
  }
  return `at line ${line}, column ${offset - start + 1}`;
}

const isWs = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/**
 * Offset of the first character where `text` stops being JSON (RFC 8259, as `JSON.parse` reads it),
 * `text.length` when it ends early, or -1 when it is valid. Used only for errors where V8 reports no
 * position; iterative, so deep nesting cannot overflow the stack.
 */
function errorOffset(text: string): number {
  const n = text.length, stack: number[] = []; // open brackets: 0x7b '{' or 0x5b '['
  let i = 0;
  const skip = () => {
    while (i < n && isWs(text.charCodeAt(i))) i++;
  };
  const digits = () => {
    const s = i;
    while (i < n && isDigit(text.charCodeAt(i))) i++;
    return i > s;
  };
  const str = () => { // at '"'
    for (i++; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x22) return ++i, true;
      if (c < 0x20) return false;
      if (c !== 0x5c) continue;
      const e = text[++i];
      if (e === "u") {
        for (let k = 0; k < 4; k++) if (!/[0-9a-fA-F]/.test(text[++i] ?? "")) return false;
      } else if (e === undefined || !'"\\/bfnrt'.includes(e)) return false;
    }
    return false;
  };
  const num = () => {
    if (text[i] === "-") i++;
    if (text[i] === "0") i++;
    else if (!digits()) return false;
    if (text[i] === ".") {
      i++;
      if (!digits()) return false;
    }
    if (text[i] === "e" || text[i] === "E") {
      i++;
      if (text[i] === "+" || text[i] === "-") i++;
      if (!digits()) return false;
    }
    return true;
  };
  const key = () => { // a member name and its colon
    skip();
    if (text[i] !== '"' || !str()) return false;
    skip();
    return text[i] === ":" && ++i > 0;
  };
  for (;;) {
    skip(); // a value
    if (i >= n) return n;
    const c = text.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) {
      i++;
      skip();
      if (text.charCodeAt(i) === c + 2) i++; // `{}` or `[]`
      else {
        stack.push(c);
        if (c === 0x7b && !key()) return i;
        continue;
      }
    } else if (c === 0x22) {
      if (!str()) return i;
    } else if (c === 0x2d || isDigit(c)) {
      if (!num()) return i;
    } else {
      const word = c === 0x74 ? "true" : c === 0x66 ? "false" : c === 0x6e ? "null" : "";
      if (!word) return i;
      for (const w of word) if (text[i++] !== w) return i - 1;
    }
    for (;;) { // after a value: close brackets, or a comma and the next member
      skip();
      const top = stack.at(-1);
      if (top === undefined) return i < n ? i : -1;
      if (i >= n) return n;
      if (text[i] === ",") {
        i++;
        if (top === 0x7b && !key()) return i;
        break;
      }
      if (text.charCodeAt(i) !== top + 2) return i;
      i++;
      stack.pop();
    }
  }
}

/**
 * What kind of value `v` is, as a message names it: `null`, `a list`, `binary data (3 bytes)` (a
 * parquet binary column's cell), `an object`, `a number`, ...
 * @example
 * ```ts
 * import { valueKind } from "./json.ts";
 * if (valueKind(new Uint8Array(3)) !== "binary data (3 bytes)" || valueKind([1]) !== "a list") throw new Error();
 * ```
 */
export function valueKind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (v instanceof Uint8Array) return `binary data (${v.length} bytes)`;
  const t = typeof v;
  return t === "object" || t === "undefined" ? `an ${t}` : `a ${t}`;
}

/** Whether `v` would write binary data (a `Uint8Array`) at any depth, as `JSON.stringify` walks it. */
function holdsBytes(v: unknown, seen = new Set<object>()): boolean {
  if (v instanceof Uint8Array) return true;
  if (typeof v !== "object" || v === null || seen.has(v)) return false; // (a cycle: JSON.stringify names it)
  seen.add(v);
  const toJSON = (v as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function") return holdsBytes(toJSON.call(v), seen);
  return (Array.isArray(v) ? v : Object.values(v)).some((x) => holdsBytes(x, seen));
}

/**
 * The first top-level field of `record` (of `keys`, the ones written; default all) that holds binary
 * data at any depth (a parquet binary column; an HF `Image` column's `{bytes, path}`), or null: what
 * a writer names when it refuses it.
 * @example
 * ```ts
 * import { binaryField } from "./json.ts";
 * if (binaryField({ text: "a", img: { bytes: new Uint8Array(2), path: null } }) !== "img") throw new Error();
 * ```
 */
export function binaryField(record: Record<string, unknown>, keys?: readonly string[]): string | null {
  if (typeof record !== "object" || record === null) return null;
  return (keys ?? Object.keys(record)).find((k) => holdsBytes(record[k])) ?? null;
}

/**
 * A writer's refusal of binary data: `Cannot write <path>: record <i> column "<c>" holds binary
 * data, which <format> cannot hold; drop that column from the input`.
 */
export function binaryRefusal(path: string, record: number, column: string, format: string): TypeError {
  return new TypeError(
    `Cannot write ${path}: record ${record} column "${column}" holds binary data, which ${format} cannot ` +
      `hold; drop that column from the input`,
  );
}
