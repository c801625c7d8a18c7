/**
 * Private helpers of the data readers: read a UTF-8 file as text chunks or as numbered lines with
 * bounded memory (one chunk plus the current partial line), a `.gz`, `.zst`, `.xz` or `.bz2` file
 * decompressed on the way (pulled, so a reader that stops early stops the decoding), and write text with
 * back-pressure, never under a compressed name.
 * @module
 */
import { PassThrough, type Readable, type Writable } from "node:stream";
import { createGunzip } from "node:zlib";
import { Decompress } from "npm:fzstd@^0.1";
import { writeFileAtomic } from "../util/atomic.ts";

/** One line of a file: its text (without `\n` / `\r\n`) and its 1-based line number. */
export interface NumberedLine {
  text: string;
  line: number;
}

/** A codec of compressed data files. */
export type Compression = "gzip" | "zstd" | "xz" | "bzip2";

/** Compressed data files read as their contents: the codec by extension (HF `datasets` infers it alike). */
const COMPRESSIONS: Readonly<Record<string, Compression>> = Object.freeze({
  gz: "gzip",
  zst: "zstd",
  xz: "xz",
  bz2: "bzip2",
});

/** The extensions of {@linkcode COMPRESSIONS} as messages list them: `.gz, .zst, .xz or .bz2`. */
export const COMPRESSED_NAMES: string = Object.keys(COMPRESSIONS).map((e) => "." + e).join(", ")
  .replace(/, ([^,]*)$/, " or $1");

/** `path` without its compression's extension (`train.tsv.gz` is `train.tsv`); any other name as it is. */
export function withoutCompression(path: string): string {
  const dot = path.lastIndexOf(".");
  return Object.hasOwn(COMPRESSIONS, path.slice(dot + 1).toLowerCase()) ? path.slice(0, dot) : path;
}

/** Compressions that are refused, with the command that undoes each. */
const UNREAD: Readonly<Record<string, string>> = Object.freeze({
  lz4: "unlz4",
  zip: "unzip",
});

/**
 * The codec of a compressed data file (`train.jsonl.gz`, `data.csv.zst`), or null for a plain one.
 * @throws {TypeError} for lz4 and zip, naming the command that decompresses them
 */
export function compressionOf(path: string): Compression | null {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  if (Object.hasOwn(UNREAD, ext)) {
    throw new TypeError(
      `Cannot read ${path}: .${ext} files are not read (${COMPRESSED_NAMES} are); decompress it first (${
        UNREAD[ext]
      })`,
    );
  }
  return Object.hasOwn(COMPRESSIONS, ext) ? COMPRESSIONS[ext] : null;
}

/** Compressed bytes handed to fzstd at a time: the output of one push stays small (see zstdStream). */
const ZSTD_PIECE = 512;

/**
 * zstd-decoded bytes of `source`, pulled: fzstd (which hyparquet-compressors uses too; Node's zstd
 * decoder ends a truncated frame without an error) gets a small piece of input only when the reader
 * wants more, so a highly compressed file never sits decoded in memory, and a reader that stops
 * early stops the decoding.
 */
function zstdStream(source: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const out: Uint8Array[] = [];
  const d = new Decompress((chunk) => void out.push(chunk.slice()));
  let rest: Uint8Array = new Uint8Array(0), ended = false;
  return new ReadableStream({
    async pull(c) {
      while (!out.length) {
        if (ended) return c.close();
        if (!rest.length) {
          const r = await reader.read();
          if (r.done) {
            d.push(new Uint8Array(0), true); // throws on a truncated frame
            ended = true;
            continue;
          }
          rest = r.value;
        }
        d.push(rest.subarray(0, ZSTD_PIECE));
        rest = rest.subarray(ZSTD_PIECE);
      }
      c.enqueue(out.shift()!);
    },
    cancel: (why) => reader.cancel(why),
  }, { highWaterMark: 0 });
}

/**
 * The bytes of `source` through a Node decoding stream, pulled: written into `input`, read from
 * `output` (the same zlib stream for gzip: DecompressionStream stops after the first member of a
 * multi-member file, `cat a.gz b.gz`, and refuses the zero padding gzip accepts).
 */
function nodeDecoded(
  source: ReadableStream<Uint8Array>,
  input: Writable,
  output: Readable,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let ended = false, failed: Error | null = null;
  for (const z of new Set<Writable | Readable>([input, output])) {
    z.on("error", (e: Error) => void (failed = e));
  }
  output.on("end", () => void (ended = true));
  const wait = (events: [Writable | Readable, string][]) =>
    new Promise<void>((resolve) => {
      const done = () => {
        for (const [z, e] of events) z.off(e, done);
        resolve();
      };
      for (const [z, e] of events) z.on(e, done);
    });
  (async () => { // input, as fast as the decoder takes it
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) return void input.end();
        if (!input.write(r.value)) {
          await wait([[input, "drain"], [input, "error"], [output, "error"], [output, "close"]]);
        }
        if (failed || output.destroyed) return;
      }
    } catch (e) { // the source failed: said by pull (a classic stream's destroy drops the error)
      failed = e as Error;
      input.destroy(e as Error);
      output.destroy(e as Error);
    }
  })();
  return new ReadableStream({
    async pull(c) {
      for (;;) {
        const b = output.read() as Uint8Array | null;
        if (b) return c.enqueue(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
        if (failed) throw failed;
        if (ended) return c.close();
        if (output.destroyed) throw new Error("the decoder stopped before the end of its input");
        await wait([[output, "readable"], [output, "end"], [output, "error"], [output, "close"], [
          input,
          "error",
        ]]);
      }
    },
    cancel: (why) => {
      input.destroy();
      output.destroy();
      return reader.cancel(why);
    },
  }, { highWaterMark: 0 });
}

/** The `.xz` file whose stream holds the process's one xz decoder, while one does. */
let xzReading: string | null = null;

/** `source` (of `path`) decoded as `codec` (the xz and bzip2 decoders are loaded when first needed). */
async function decoded(
  source: ReadableStream<Uint8Array>,
  codec: Compression,
  path: string,
): Promise<ReadableStream<Uint8Array>> {
  switch (codec) {
    case "gzip": {
      const z = createGunzip();
      return nodeDecoded(source, z, z);
    }
    case "zstd":
      return zstdStream(source);
    case "xz": {
      // xz-utils' decoder in WebAssembly, concatenated streams included. It has one decoder per
      // process: a second .xz stream would wait for ever until the first ends or is cancelled, so
      // every reader here closes its stream however it stops, and a second one opened while the
      // first is open is refused (a caller reading two interleaved had hung)
      if (xzReading !== null) {
        await source.cancel();
        throw new TypeError(
          `Cannot read ${path}: ${xzReading} is being read as xz in this process, and the xz decoder ` +
            `reads one file at a time; read them one after the other, or decompress one first (xz -dk)`,
        );
      }
      const m = await import("npm:xz-decompress@^0.2.3");
      const inner = (new m.default.XzReadableStream(source) as ReadableStream<Uint8Array>).getReader();
      const holder = xzReading = path;
      const release = () => void (xzReading === holder && (xzReading = null));
      return new ReadableStream<Uint8Array>({
        async pull(c) {
          try {
            const r = await inner.read();
            if (r.done) {
              release();
              c.close();
            } else c.enqueue(r.value);
          } catch (e) {
            release();
            throw e;
          }
        },
        cancel(why) {
          release();
          return inner.cancel(why);
        },
      }, { highWaterMark: 0 });
    }
    case "bzip2": { // pure JavaScript, multi-stream (pbzip2's) included; a classic stream, read through a PassThrough
      const m = await import("npm:unbzip2-stream@^1.4.3");
      const bz = m.default() as unknown as Writable & { pipe(to: PassThrough): void };
      const out = new PassThrough();
      bz.pipe(out);
      return nodeDecoded(source, bz, out);
    }
  }
}

/** The bytes of `path`, decompressed by its extension (see {@linkcode compressionOf}). */
async function openBytes(path: string): Promise<ReadableStream<Uint8Array>> {
  const codec = compressionOf(path);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Deno.errors.NotFound(`Cannot read ${path}: no such file`);
  }
  if (codec !== null && (await file.stat()).size === 0) { // (an empty .bz2 had read as no records)
    file.close();
    throw new TypeError(
      `Cannot read ${path}: not a complete ${codec} file (it is empty); check it (${codec} -t) and download ` +
        `or compress it again`,
    );
  }
  return codec === null ? file.readable : await decoded(file.readable, codec, path);
}

/**
 * Decode `path` as UTF-8 (a leading BOM dropped) in chunks of about 64 KiB; a `.gz` or `.zst` file
 * is decompressed on the way (line numbers in messages count lines of its contents).
 * @throws {TypeError} at bytes that are not UTF-8, naming the file and line (they are never
 *   replaced by U+FFFD behind the user's back), and at a corrupt or truncated compressed file
 */
export async function* readTextChunks(path: string): AsyncGenerator<string> {
  const reader = (await openBytes(path)).getReader();
  const decoder = new TextDecoder("utf-8", { ignoreBOM: false, fatal: true });
  let line = 1;
  try {
    while (true) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (e) {
        const codec = compressionOf(path);
        if (codec === null) throw e;
        throw new TypeError(
          `Cannot read ${path}: not a complete ${codec} file (${(e as Error).message || e}); ` +
            `check it (${codec} -t) and download or compress it again`,
        );
      }
      if (next.done) break;
      const bytes = next.value;
      let text: string;
      try {
        text = decoder.decode(bytes, { stream: true });
      } catch {
        const bad = firstInvalid(bytes);
        throw notUtf8(path, line + countNewlines(bytes.subarray(0, bad)), bytes[bad]);
      }
      line += countNewlines(bytes);
      if (text) yield text;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  let tail: string;
  try {
    tail = decoder.decode();
  } catch {
    throw notUtf8(path, line, undefined);
  }
  if (tail) yield tail;
}

/** The whole text of `path` (see {@linkcode readTextChunks}). */
export async function readWholeText(path: string): Promise<string> {
  const parts: string[] = [];
  for await (const chunk of readTextChunks(path)) parts.push(chunk);
  return parts.join("");
}

function notUtf8(path: string, line: number, byte: number | undefined): TypeError {
  const what = byte === undefined
    ? "it ends inside a character"
    : `byte 0x${byte.toString(16).padStart(2, "0")}`;
  return new TypeError(`Cannot read ${path}:${line}: not valid UTF-8 (${what}); re-encode the file as UTF-8`);
}

function countNewlines(bytes: Uint8Array): number {
  let n = 0;
  for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, i + 1)) n++;
  return n;
}

/** The offset of the first byte a UTF-8 decoder refuses in `bytes` (by bisection on prefixes). */
function firstInvalid(bytes: Uint8Array): number {
  const ok = (k: number) => {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, k), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0, hi = bytes.length; // ok(lo), and the whole chunk is not
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return Math.min(lo, bytes.length - 1);
}

/**
 * The lines of `path`, numbered from 1; the empty piece after a final `\n` is not a line. Lines end
 * at `\n` or `\r\n`; with `cr` also at a lone `\r` (text read as Python's `splitlines` reads it,
 * as HF's text builder does: an old Mac file is lines, not one line with `\r` in it).
 */
export async function* readLines(path: string, opts: { cr?: boolean } = {}): AsyncGenerator<NumberedLine> {
  const eol = opts.cr ? /\r\n|\r|\n/g : /\r?\n/g;
  let rest = "";
  let line = 0;
  for await (const chunk of readTextChunks(path)) {
    // a \r at the end of a chunk may be the first half of \r\n: keep it for the next one
    const text = rest + chunk, upTo = opts.cr && text.endsWith("\r") ? text.length - 1 : text.length;
    let start = 0;
    eol.lastIndex = 0;
    for (let m = eol.exec(text); m && m.index < upTo; m = eol.exec(text)) {
      yield { text: text.slice(start, m.index), line: ++line };
      start = m.index + m[0].length;
    }
    rest = text.slice(start);
  }
  if (rest) yield { text: rest.replace(/\r$/, ""), line: ++line };
}

/**
 * Write text pieces to `path` through a buffered stream, so large outputs never sit in memory at
 * once. Atomic (a temp file renamed into place): an error while the pieces are made, or a kill,
 * leaves an existing `path` as it was.
 */
export async function writeTextPieces(
  path: string,
  pieces: Iterable<string> | AsyncIterable<string>,
): Promise<void> {
  refuseCompressedOutput(path, `Cannot write ${path}`);
  await writeFileAtomic(path, (file) => writeStream(file, pieces));
}

/**
 * Refuse an output named as compressed (`out.jsonl.gz`): the writers write plain text, which the
 * readers would then refuse as a corrupt gzip file.
 * @param subject the start of the message, e.g. `eval: --predictions p.jsonl.gz`
 * @throws {TypeError} naming the fix
 */
export function refuseCompressedOutput(path: string, subject: string): void {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  if (!Object.hasOwn(COMPRESSIONS, ext) && !Object.hasOwn(UNREAD, ext)) return;
  throw new TypeError(
    `${subject}: outputs are written uncompressed, and a .${ext} name would hold plain text; drop .${ext} ` +
      `(compress the file afterwards; the readers take ${COMPRESSED_NAMES})`,
  );
}

async function writeStream(
  file: Deno.FsFile,
  pieces: Iterable<string> | AsyncIterable<string>,
): Promise<void> {
  const encoder = new TextEncoder();
  let buf: string[] = [];
  let size = 0;
  const flush = async () => {
    const bytes = encoder.encode(buf.join(""));
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    buf = [];
    size = 0;
  };
  for await (const p of pieces) {
    buf.push(p);
    size += p.length;
    if (size >= 1 << 20) await flush();
  }
  await flush();
}
