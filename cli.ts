/**
 * The fledge command line: `deno task cli <command> [options]`. This file only dispatches to
 * `cli/<command>.ts`; each command parses its flags, calls the library and prints.
 *
 * Exit codes: 0 done; 2 bad usage or input (an unknown command or flag, a bad value, config or
 * file, a missing or unwritable path); 1 any other failure (the hub unreachable, a checksum
 * mismatch, a full disk, a diverged run, ...); 130 / 143 a run stopped by SIGINT / SIGTERM after
 * saving a checkpoint. A failure is always one line `fledge: <message>` on stderr, never a stack trace.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * let out = "", err = "";
 * const io = { stdout: (s: string) => out += s, stderr: (s: string) => err += s };
 * if (await main(["train", "--help"], io) !== 0 || !out.startsWith("usage: deno task cli train")) throw new Error(out);
 * if (await main(["trian"], io) !== 2 || !err.includes("did you mean train?")) throw new Error(err);
 * ```
 *
 * @module
 */
import { closest } from "./util/problems.ts";
import { type CliIO, type Command, STDIO } from "./cli/command.ts";
import { command as train } from "./cli/train.ts";
import { command as sft } from "./cli/sft.ts";
import { command as dpo } from "./cli/dpo.ts";
import { command as generate } from "./cli/generate.ts";
import { command as download } from "./cli/download.ts";
import { command as merge } from "./cli/merge.ts";
import { command as info } from "./cli/info.ts";
import { command as demo } from "./cli/demo.ts";
import { command as evaluate } from "./cli/eval.ts";
import { command as recipe } from "./cli/recipe.ts";
import { command as exportModel } from "./cli/export.ts";
import { command as queue } from "./cli/queue.ts";
import { command as data } from "./cli/data.ts";
import { command as chat } from "./cli/chat.ts";
import { command as bench } from "./cli/bench.ts";
import { command as config } from "./cli/config.ts";
import { command as search } from "./cli/search.ts";

export type { CliIO, Command };

const COMMANDS: Readonly<Record<string, Command>> = Object.freeze({
  train,
  sft,
  dpo,
  search,
  recipe,
  eval: evaluate,
  generate,
  download,
  merge,
  export: exportModel,
  queue,
  config,
  data,
  chat,
  bench,
  demo,
  info,
});

function listing(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return [
    "usage: deno task cli <command> [options]",
    "",
    "fledge: train and fine-tune transformer language models on WebGPU.",
    "",
    "commands:",
    ...rows,
    "",
    "Run `deno task cli <command> --help` for a command's options (`deno task demo` is short for",
    "`deno task cli demo`).",
    "",
  ].join("\n");
}

/**
 * Bad usage or input: exit code 2 (a path of the wrong kind, a file where a folder belongs, counts
 * too); anything else is a failure: exit code 1.
 */
function exitCode(e: unknown): 1 | 2 {
  const usage = e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError ||
    e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.IsADirectory || e instanceof Deno.errors.NotADirectory ||
    e instanceof Deno.errors.AlreadyExists;
  return usage ? 2 : 1;
}

/** The message of `e` on one line. */
function oneLine(e: unknown): string {
  const text = e instanceof Error ? e.message || e.name : String(e);
  return text.split("\n").map((s) => s.trim()).filter(Boolean).join(" ");
}

/**
 * Run the command line.
 * @param args the arguments: a command name and its flags (`["train", "--config", "run.yaml"]`)
 * @param io where output goes (default the process's stdout and stderr)
 * @returns the exit code: 0 done, 2 bad usage or input, 1 any other failure
 */
export async function main(args: string[], io: CliIO = STDIO): Promise<number> {
  const [name, ...rest] = args;
  try {
    if (name === undefined || name === "--help" || name === "-h" || name === "help") {
      const c = rest[0] === undefined ? undefined : COMMANDS[rest[0]];
      io.stdout(c ? c.usage + "\n" : listing());
      return 0;
    }
    const c = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!c) {
      const hint = closest(name, Object.keys(COMMANDS));
      throw new TypeError(
        `unknown command ${JSON.stringify(name)}${hint ? `; did you mean ${hint}?` : ""} ` +
          `(commands: ${Object.keys(COMMANDS).join(", ")}; see \`deno task cli --help\`)`,
      );
    }
    const code = await c.run(rest, io);
    return typeof code === "number" ? code : 0;
  } catch (e) {
    io.stderr(`fledge: ${oneLine(e)}\n`);
    return exitCode(e);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
