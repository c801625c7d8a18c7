/**
 * Private helpers of the models layer's command entries (`generate_cli.ts`, `download_cli.ts`):
 * flag parsing with one-line errors, underscore spellings, and the default output writers.
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

const enc = new TextEncoder();
/** Write to stdout without a newline. */
export const writeOut = (s: string): void => void Deno.stdout.writeSync(enc.encode(s));
/** Write to stderr without a newline. */
export const writeErr = (s: string): void => void Deno.stderr.writeSync(enc.encode(s));

/** `--max_new_tokens=x` -> `--max-new-tokens=x` (HF field names use underscores). */
export function hyphenate(arg: string): string {
  if (!arg.startsWith("--")) return arg;
  const eq = arg.indexOf("=");
  const name = eq < 0 ? arg : arg.slice(0, eq);
  return name.replaceAll("_", "-") + (eq < 0 ? "" : arg.slice(eq));
}

/**
 * Parse `args` against `flags` (underscore spellings accepted). A bad flag is a one-line
 * RangeError naming the command and its `--help`.
 */
export function parseFlags<T extends ParseArgsOptionsConfig>(cmd: string, args: string[], flags: T) {
  try {
    return parseArgs({ args: args.map(hyphenate), options: flags, allowPositionals: false }).values;
  } catch (e) {
    const msg = (e as Error).message.replace(/\s*\n\s*/g, " ");
    throw new RangeError(`${cmd}: ${msg} (see \`fledge ${cmd} --help\`)`);
  }
}
