/**
 * The shape every command file in `cli/` exports (`export const command: Command`) and the
 * writers it prints through, so tests run commands in-process and capture their output.
 *
 * @module
 */
import { tempLeftoversOf } from "../util/atomic.ts";
import { writeErr, writeOut } from "../util/flags.ts";
import { formatBytes } from "../util/format.ts";

/** Where a command writes: its result on `stdout`, summaries and progress notes on `stderr`. */
export interface CliIO {
  /** Write `text` (no newline added) to standard output. */
  stdout(text: string): void;
  /** Write `text` (no newline added) to standard error. */
  stderr(text: string): void;
}

/** One `deno task cli <name>` command. */
export interface Command {
  /** One line for the command list of `deno task cli --help`. */
  summary: string;
  /** The `--help` text; its first line is `usage: deno task cli <name> ...`. */
  usage: string;
  /**
   * Parse `args` (after the command name), call the library and print through `io`. Bad input is
   * thrown as a one-line TypeError / RangeError / SyntaxError (exit code 2), other failures as
   * they are (exit code 1). Resolves to an exit code other than 0 when the command stopped early
   * on its own terms (130 / 143: interrupted by SIGINT / SIGTERM after saving a checkpoint).
   */
  run(args: string[], io: CliIO): Promise<number | void>;
}

/** The process's standard output and error. */
export const STDIO: CliIO = Object.freeze({ stdout: writeOut, stderr: writeErr });

/**
 * `items` joined by ", " in lines of at most `width` characters, each indented by `indent` spaces:
 * a long list in a `--help` text's option column.
 */
export function helpList(items: readonly string[], indent: number, width = 100): string {
  const lines: string[] = [];
  let line = "";
  for (const [i, item] of items.entries()) {
    const word = item + (i < items.length - 1 ? "," : "");
    if (line && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l) => " ".repeat(indent) + l).join("\n");
}

/**
 * Name the temp leftovers a killed earlier write of each path left beside it (a model-sized
 * `out.gguf.tmp-...`), so their space can be taken back; they are not removed, since another
 * command may be writing the same path now.
 */
export async function noteTempLeftovers(
  io: CliIO,
  cmd: string,
  paths: readonly (string | null)[],
): Promise<void> {
  for (const path of paths) {
    if (!path) continue;
    for (const t of await tempLeftoversOf(path)) {
      const size = await Deno.stat(t).then(
        (s) => s.isFile ? `, ${formatBytes(s.size)}` : ", a folder",
        () => "",
      );
      io.stderr(
        `${cmd}: note: ${t}${size} is left over from an interrupted write of ${path}; ` +
          `delete it unless another ${cmd} of ${path} is running\n`,
      );
    }
  }
}
