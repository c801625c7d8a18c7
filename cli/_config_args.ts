/**
 * Private to `cli/`: the config of a training command (`train`, `sft`, `dpo`) from `--config FILE`
 * and `--<field> value` flags (TrainingConfig names, plus `--max_length` / `--block_size` for
 * `max_seq_length` and TRL's `--model_name_or_path` / `--dataset_name`), and the shell quoting of the resume hint those commands print.
 * @module
 */
import { parse as parseYaml } from "npm:yaml@^2.9";
import { type FlagSpec, parseFlags } from "../util/flags.ts";
import { isObject } from "../util/problems.ts";
import {
  getTrainingArgs,
  loadTrainingConfig,
  overrideConfig,
  refuseUnreadFields,
  RESOLVED_CONFIG_HEADER,
  type RunKind,
  TEXT_FIELDS,
  TRAINING_CONFIG_KEYS,
  type TrainingConfig,
  validateTrainingConfig,
} from "../training/config.ts";

const ALIASES: Record<string, keyof TrainingConfig> = {
  block_size: "max_seq_length",
  max_length: "max_seq_length",
  // the TRL scripts' (trl sft / trl dpo) names of the model and the dataset
  model_name_or_path: "model",
  dataset_name: "dataset",
  dataset_config_name: "dataset_config", // run_clm.py's
};

const FLAGS: Record<string, FlagSpec> = { config: { type: "string", short: "c" } };
for (const k of [...TRAINING_CONFIG_KEYS, ...Object.keys(ALIASES)]) FLAGS[k] = { type: "string" };

/** A flag's value: JSON when it parses, else text; a number-like value of a `text` field stays text. */
export function parseFlagValue(s: string, text: boolean): unknown {
  try {
    const v = JSON.parse(s);
    return typeof v === "number" && text ? s : v;
  } catch {
    return s;
  }
}

/**
 * The config of a training command: the file (when given) with the flag overrides applied over
 * `defaults`, validated; null for `--help`.
 * @param example the config file the "give --config" hint names (e.g. `run.yaml`)
 * @throws {TypeError} for no config and no flags, or one field given under two names
 *   (`--max_length 64 --max_seq_length 128`: one would be dropped)
 */
export async function configFromArgs(
  cmd: string,
  args: string[],
  opts: { defaults?: Partial<TrainingConfig>; example: string; kind: RunKind },
): Promise<TrainingConfig | null> {
  const v = parseFlags(cmd, args, FLAGS);
  if (v.help) return null;
  const overrides: Record<string, unknown> = {};
  const named: Record<string, string> = {};
  for (const [k, s] of Object.entries(v)) {
    if (k === "config" || k === "help" || typeof s !== "string") continue;
    const field = ALIASES[k] ?? k;
    if (named[field] !== undefined) {
      throw new TypeError(`${cmd}: --${named[field]} and --${k} both set ${field}; give one`);
    }
    named[field] = k;
    overrides[field] = parseFlagValue(s, TEXT_FIELDS.has(field));
  }
  const file = v.config as string | undefined; // (given once, and not empty: parseFlags refuses both)
  if (!file && !Object.keys(overrides).length) {
    throw new TypeError(
      `${cmd}: give --config ${opts.example} and/or --<field> value flags (see \`deno task cli ${cmd} --help\`)`,
    );
  }
  const { defaults } = opts;
  const base = file ? await loadTrainingConfig(file, { defaults }) : {};
  const config = !Object.keys(overrides).length ? base as TrainingConfig : validateTrainingConfig(
    overrideConfig(base, overrides),
    { file: file ? `${file} + command-line flags` : "command-line flags", defaults },
  );
  // the fields spelt out, even at their defaults: `--disable_dropout true` to sft reads as an order;
  // but a config fledge wrote resolved (a run's config.yaml, best_config.yaml) restates every default
  const text = file ? await Deno.readTextFile(file) : "";
  const written = file ? parseYaml(text) : null;
  const resolved = text.startsWith(RESOLVED_CONFIG_HEADER);
  const plain = getTrainingArgs({}) as unknown as Record<string, unknown>;
  const fromCommand = (defaults ?? {}) as Record<string, unknown>;
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const fromFile = isObject(written)
    ? Object.keys(written).filter((k) =>
      !resolved || !(same(written[k], plain[k]) || (k in fromCommand && same(written[k], fromCommand[k])))
    )
    : [];
  const given = [...Object.keys(overrides), ...fromFile];
  refuseUnreadFields(config, opts.kind, file ? `${cmd}: ${file}` : cmd, given);
  return config;
}

/**
 * The command's `args` without the value flags `names` (snake_case; `--a-b`, `--a_b v` and
 * `--a_b=v` forms alike), for the hint that resumes a stopped run.
 */
export function withoutFlags(args: readonly string[], names: readonly string[]): string[] {
  const re = new RegExp(`^--(${names.map((n) => n.replace(/_/g, "[-_]")).join("|")})(=|$)`);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const m = re.exec(args[i]);
    if (!m) out.push(args[i]);
    else if (m[2] !== "=") i++; // its value is the next argument
  }
  return out;
}

/** `arg` quoted for a POSIX shell when it needs it. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}
