/**
 * Private helpers of the data readers: read a UTF-8 file as text chunks or as numbered lines with
 * bounded memory (one chunk plus the current partial line), and write text with back-pressure.
 * @module
 */
import { writeFileAtomic } from "../util/atomic.ts";

/** One line of a file: its text (without `\n` / `\r\n`) and its 1-based line number. */
export interface NumberedLine {
  text: string;
  line: number;
}

/** Decode `path` as UTF-8 (a leading BOM dropped) in chunks of about 64 KiB. */
export async function* readTextChunks(path: string): AsyncGenerator<string> {
  using file = await Deno.open(path);
  const decoder = new TextDecoder("utf-8", { ignoreBOM: false });
  for await (const bytes of file.readable) {
    const text = decoder.decode(bytes, { stream: true });
    if (text) yield text;
  }
  const tail = decoder.decode();
  if (tail) yield tail;
}

/** The lines of `path`, numbered from 1; the empty piece after a final `\n` is not a line. */
export async function* readLines(path: string): AsyncGenerator<NumberedLine> {
  let rest = "";
  let line = 0;
  for await (const chunk of readTextChunks(path)) {
    const text = rest + chunk;
    let start = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
      const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      yield { text: text.slice(start, end), line: ++line };
      start = nl + 1;
    }
    rest = text.slice(start);
  }
  if (rest) yield { text: rest.endsWith("\r") ? rest.slice(0, -1) : rest, line: ++line };
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
  await writeFileAtomic(path, (file) => writeStream(file, pieces));
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
