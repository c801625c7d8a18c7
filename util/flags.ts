/**
 * The one command-line flag parser (over `node:util` `parseArgs`) and the default output writers.
 *
 * Flags use the Hugging Face field names with underscores (`--max_new_tokens 8`, `--max_new_tokens=8`);
 * the hyphen spelling (`--max-new-tokens`) is an alias. `--help` / `-h` is always known. Values are
 * typed (`string`, `boolean`, `int`, `number`, `list` for a repeatable string) and checked here, so a
 * command receives numbers, not text. A negative number after a flag is its value
 * (`--learning_rate -2` means -2). Every error is one line that names the command, the flag and the
 * value and points at `deno task cli <command> --help`: a {@linkcode TypeError} for an unknown flag
 * (with a did-you-mean hint), a missing flag or value, or a value of the wrong kind, a
 * {@linkcode RangeError} for a value out of range.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { closest } from "./problems.ts";

const enc = new TextEncoder();
/** Write to stdout without a newline. */
export const writeOut = (s: string): void => void Deno.stdout.writeSync(enc.encode(s));
/** Write to stderr without a newline. */
export const writeErr = (s: string): void => void Deno.stderr.writeSync(enc.encode(s));

/** Fields every flag accepts. */
export interface FlagBase {
  /** One-letter alias (`-c`). */
  short?: string;
  /** An error when the flag is absent (all missing flags are named at once). */
  required?: boolean;
}

/** What one flag accepts. `min` / `max` are inclusive unless `exclusiveMin` is set. */
export type FlagSpec =
  | FlagBase & { type: "string"; default?: string; choices?: readonly string[] }
  | FlagBase & { type: "boolean" }
  | FlagBase & { type: "int"; default?: number; min?: number; max?: number }
  | FlagBase & { type: "number"; default?: number; min?: number; max?: number; exclusiveMin?: boolean }
  | FlagBase & { type: "list" };

/** Flags by their underscore name. */
export type FlagSpecs = Record<string, FlagSpec>;

/** The value type of one flag. */
export type FlagValue<F extends FlagSpec> = F extends { type: "boolean" } ? boolean
  : F extends { type: "int" | "number" } ? number
  : F extends { type: "list" } ? string[]
  : F extends { choices: readonly (infer C)[] } ? C
  : string;

/** What {@linkcode parseFlags} returns: each flag's value (booleans always set) plus `help`. */
export type Flags<S extends FlagSpecs> =
  & {
    [K in keyof S]: S[K] extends { type: "boolean" } | { default: unknown } | { required: true }
      ? FlagValue<S[K]>
      : FlagValue<S[K]> | undefined;
  }
  & { help: boolean };

const takesValue = (f: FlagSpec) => f.type !== "boolean";
const NEGATIVE = /^-\.?\d/;

/**
 * Parse command-line `args` against `specs` (keys are the underscore flag names).
 *
 * @param cmd the command name, named in every error (`train`)
 * @param args the arguments after the command name
 * @param specs the flags the command takes
 * @param opts `warn`: where the note on a value flag given more than once goes (default stderr;
 *   the last value is used, as argparse does)
 * @returns each flag's typed value (or its default, or undefined), and `help`; with `--help` only
 *   `help` (true) is set and no value is checked
 * @throws {TypeError} for an unknown flag, a positional argument, a missing value or required
 *   flag, or a value of the wrong kind (one line)
 * @throws {RangeError} for a number out of range or a value not among `choices` (one line)
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * const v = parseFlags("generate", ["--max-new-tokens", "8", "--temperature", "-0.5", "--stop", "a", "--stop=b"], {
 *   max_new_tokens: { type: "int", min: 1 },
 *   temperature: { type: "number" },
 *   stop: { type: "list" },
 *   json: { type: "boolean" },
 * });
 * if (v.max_new_tokens !== 8 || v.temperature !== -0.5 || v.stop?.join() !== "a,b" || v.json) throw new Error();
 * try {
 *   parseFlags("generate", ["--max_new_token", "8"], { max_new_tokens: { type: "int" } });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof TypeError) || !e.message.includes("did you mean --max_new_tokens?")) throw e;
 * }
 * ```
 */
export function parseFlags<const S extends FlagSpecs>(
  cmd: string,
  args: string[],
  specs: S,
  opts: { warn?: (line: string) => void } = {},
): Flags<S> {
  const see = ` (see \`deno task cli ${cmd} --help\`)`;
  const all: FlagSpecs = { ...specs, help: { type: "boolean", short: "h" } };
  const byShort = new Map<string, string>();
  for (const [name, f] of Object.entries(all)) if (f.short) byShort.set(f.short, name);
  const isFlag = (a: string) =>
    a === "--" ||
    (a.startsWith("--")
      ? Object.hasOwn(all, a.slice(2).split("=")[0].replaceAll("-", "_"))
      : byShort.has(a.slice(1)));
  const unknown = (flag: string, name: string): never => {
    const hint = closest(name, Object.keys(all));
    throw new TypeError(`${cmd}: unknown flag ${flag}${hint ? `; did you mean --${hint}?` : ""}${see}`);
  };

  // Normalize names to the underscore spelling, find unknown flags (with the spelling typed), and
  // join `--flag -2` into `--flag=-2` (parseArgs would read -2 as an option).
  const norm: string[] = [];
  const seen = new Set<string>(), repeated = new Set<string>(), twice = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      norm.push(...args.slice(i));
      break;
    }
    let name: string, rest = "";
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      name = (eq < 0 ? a.slice(2) : a.slice(2, eq)).replaceAll("-", "_");
      rest = eq < 0 ? "" : a.slice(eq);
      if (!Object.hasOwn(all, name)) unknown(eq < 0 ? a : a.slice(0, eq), name);
    } else if (/^-[^-]$/.test(a)) {
      name = byShort.get(a[1]) ?? unknown(a, a[1]);
    } else {
      norm.push(a); // a positional or a short-flag cluster: parseArgs reports it
      continue;
    }
    // a value flag given twice: the last wins, as in argparse (a command line and an override put
    // after it), and the first is said to be dropped, not lost without a word; a config file twice
    // is refused (ONCE): two files would have to merge
    if (takesValue(all[name]) && all[name].type !== "list" && seen.has(name)) {
      if (ONCE.has(name)) twice.add(name);
      else repeated.add(name);
    }
    seen.add(name);
    const next = args[i + 1];
    if (!rest && takesValue(all[name]) && next !== undefined) {
      if (NEGATIVE.test(next) && Number.isFinite(Number(next))) {
        norm.push(`--${name}=${next}`);
        i++;
        continue;
      }
      if (!next.startsWith("-") || next === "-") {
        norm.push(`--${name}`, next); // the value as typed (no renaming)
        i++;
        continue;
      }
      const flag = `--${name}`;
      if (!isFlag(next)) {
        throw new TypeError(
          `${cmd}: ${flag} is followed by ${next}, not a value; write a value that starts with "-" as ${flag}=${next}${see}`,
        );
      }
      throw new TypeError(`${cmd}: ${flag} needs a value${see}`);
    }
    norm.push(`--${name}${rest}`);
  }

  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const [name, f] of Object.entries(all)) {
    options[name] = { type: f.type === "boolean" ? "boolean" : "string" };
    if (f.type === "list") options[name].multiple = true;
    if (f.short) options[name].short = f.short;
  }
  let raw: Record<string, string | boolean | string[] | undefined>;
  try {
    raw = parseArgs({ args: norm, options, strict: true, allowPositionals: false }).values as typeof raw;
  } catch (e) {
    if (!String((e as { code?: string }).code).startsWith("ERR_PARSE_ARGS_")) throw e;
    throw new TypeError(`${cmd}: ${parseArgsProblem(e as Error)}${see}`);
  }

  // With --help nothing else is read: a command prints its usage and returns.
  if (raw.help === true) return { help: true } as Flags<S>;
  for (const name of twice) {
    throw new TypeError(`${cmd}: --${name} is given more than once; give one file${see}`);
  }
  const out: Record<string, unknown> = { help: false };
  const missing = Object.entries(specs).filter(([name, f]) => f.required && raw[name] === undefined);
  if (missing.length) {
    throw new TypeError(`${cmd}: missing ${missing.map(([n]) => `--${n}`).join(", ")}${see}`);
  }
  for (const name of repeated) {
    (opts.warn ?? ((l: string) => console.error(l)))(
      `${cmd}: --${name} is given more than once; the last value, ${raw[name]}, is used`,
    );
  }
  for (const [name, f] of Object.entries(specs)) {
    const v = raw[name];
    if (f.type === "boolean") out[name] = v === true;
    else if (v === undefined) out[name] = "default" in f ? f.default : undefined;
    else if (f.type === "list") out[name] = v;
    else out[name] = convert(cmd, name, f, v as string, see);
  }
  return out as Flags<S>;
}

/**
 * Flags that name a file, folder, model, queue or split, with what to give: an empty value there is a
 * mistake (an unset shell variable, `--config=`), which had been read as no flag at all or failed
 * deep inside.
 */
const NON_EMPTY: Readonly<Record<string, string>> = Object.freeze({
  adapter: "a path",
  adapter_output: "a path",
  cache_dir: "a path",
  chat_template: "a path",
  config: "a path",
  data: "a path",
  dataset: "a path or a hub id",
  dataset_name: "a path or a hub id",
  input: "a path",
  model: "a path or a hub id",
  model_name_or_path: "a path or a hub id",
  output: "a path",
  output_dir: "a path",
  predictions: "a path",
  queue: "a queue (kv:PATH or redis://host:port)",
  split: "a split name",
  tokenizer: "a path",
});

/** Flags that may be given once: two config files would have to merge, and the last had replaced the first. */
const ONCE: ReadonlySet<string> = new Set(["config"]);

function convert(cmd: string, name: string, f: FlagSpec, s: string, see: string): string | number {
  const at = `${cmd}: --${name} ${s === "" ? '""' : s}`;
  if (s === "" && Object.hasOwn(NON_EMPTY, name)) {
    throw new TypeError(`${cmd}: --${name} is empty; give ${NON_EMPTY[name]}${see}`);
  }
  if (f.type === "string") {
    if (f.choices && !f.choices.includes(s)) {
      const hint = closest(s, f.choices);
      throw new RangeError(
        `${at} is not one of ${f.choices.join(", ")}${hint ? `; did you mean ${hint}?` : ""}${see}`,
      );
    }
    return s;
  }
  if (f.type !== "int" && f.type !== "number") return s;
  const n = Number(s);
  if (s.trim() === "" || !Number.isFinite(n)) {
    throw new TypeError(`${at} is not ${f.type === "int" ? "an integer" : "a number"}${see}`);
  }
  // `2e7` is an integer too; `2.5` and `1e-3` are not.
  if (f.type === "int" && !Number.isSafeInteger(n)) throw new TypeError(`${at} is not an integer${see}`);
  const exclusive = f.type === "number" && f.exclusiveMin === true;
  if (f.min !== undefined && (exclusive ? n <= f.min : n < f.min)) {
    throw new RangeError(`${at} is out of range: must be ${exclusive ? ">" : ">="} ${f.min}${see}`);
  }
  if (f.max !== undefined && n > f.max) {
    throw new RangeError(`${at} is out of range: must be <= ${f.max}${see}`);
  }
  return n;
}

/** parseArgs' multi-line messages as one short phrase in fledge's words. */
function parseArgsProblem(e: Error): string {
  const m = e.message;
  let r: RegExpExecArray | null;
  if ((r = /^Option '(?:-., )?(-[^' ]+)(?: <value>)?' argument missing/.exec(m))) {
    return `${r[1]} needs a value`;
  }
  if ((r = /^Option '(?:-., )?(-[^' ]+)' does not take an argument/.exec(m))) return `${r[1]} takes no value`;
  if ((r = /^Option '(?:-., )?(-[^' ]+)' argument is ambiguous/.exec(m))) {
    return `${r[1]} is followed by a flag, not a value; write a value that starts with "-" as ${r[1]}=-value`;
  }
  if ((r = /^Unexpected argument '([^']*)'/.exec(m))) {
    return `unexpected argument ${JSON.stringify(r[1])}; flags are written --name value`;
  }
  if ((r = /^Unknown option '([^']*)'/.exec(m))) return `unknown flag ${r[1]}`;
  return m.split("\n").map((s) => s.trim()).filter(Boolean).join(" ");
}
