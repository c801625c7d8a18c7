/**
 * `deno task cli config`: check a training config (`validate`), write another tool's config in
 * fledge's names (`migrate`: nanoGPT, LLMBuilder, the engine and backend seeds) and print the
 * defaults or a preset (`show-defaults`), over `training/config.ts` and `training/legacy_config.ts`.
 *
 * @module
 */
import { closest } from "../util/problems.ts";
import { parseFlags } from "../util/flags.ts";
import { parse as parseYaml } from "npm:yaml@^2.9";
import {
  DEFAULT_TRAINING_CONFIG,
  TRAINING_PRESETS,
  type TrainingConfig,
  trainingConfigToYaml,
  unsupportedSettings,
} from "../training/config.ts";
import { type ConfigMigration, migrateConfigFile, migrationToYaml } from "../training/legacy_config.ts";
import type { CliIO, Command } from "./command.ts";

const PRESETS = Object.keys(TRAINING_PRESETS);

const HELP: Record<string, string> = {
  validate: `usage: deno task cli config validate FILE [--json]

Checks a training config (.yaml, .yml or .json): fledge's TrainingConfig, or another tool's (nanoGPT,
LLMBuilder, the engine or backend seed), read through the same mapping as \`train --config\`.
Prints "ok" (exit 0) or every problem with its file, line and key (exit 2).

options:
  --json      one JSON object: {ok, file, formats, mapping, problems}
  -h, --help  this text`,
  migrate: `usage: deno task cli config migrate FILE [--json] > new.yaml

Writes FILE (a nanoGPT, LLMBuilder, engine-seed or backend-seed config, .yaml/.yml/.json) as a
fledge TrainingConfig in YAML on stdout (the fields it sets; the rest take the defaults), and the
mapping on stderr, one line per key: \`old: value -> new: value (why)\`, or \`-> no-op: why\` where
fledge has no such choice. A key fledge cannot honour, or does not know, is an error naming it (exit 2).

options:
  --json      one JSON object on stdout instead: {file, formats, mapping, fields, yaml}
  -h, --help  this text`,
  "show-defaults": `usage: deno task cli config show-defaults [--preset NAME] [--json]

Prints the complete default TrainingConfig (every field, Hugging Face defaults) as YAML, or a preset.

options:
  --preset NAME  ${PRESETS.join(", ")}
  --json         the config as one JSON object
  -h, --help     this text`,
};

const USAGE = `usage: deno task cli config <validate|migrate|show-defaults> [options]

  validate FILE [--json]                check a config; "ok" or every problem (exit 0 / 2)
  migrate FILE [--json] > new.yaml      another tool's config in fledge's names; the mapping on stderr
  show-defaults [--preset NAME] [--json]  the full default config (or a preset) as YAML

Run \`deno task cli config <subcommand> --help\` for each.`;

/** The `config` command. */
export const command: Command = {
  summary: "validate a config, migrate another tool's (nanoGPT, LLMBuilder) or show the defaults",
  usage: USAGE,
  run: configRun,
};

async function configRun(args: string[], io: CliIO): Promise<number | void> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") return io.stdout(USAGE + "\n");
  if (sub === undefined) {
    throw new TypeError(
      `config: missing the subcommand; write \`deno task cli config ${
        Object.keys(HELP).join("|")
      } ...\` (see \`deno task cli config --help\`)`,
    );
  }
  // A flag before any subcommand is reported as every command reports an unknown flag.
  if (sub.startsWith("-")) parseFlags("config", [sub], {});
  if (!Object.hasOwn(HELP, sub)) {
    const hint = closest(sub, Object.keys(HELP));
    throw new TypeError(
      `config: unknown subcommand ${JSON.stringify(sub)}${hint ? `; did you mean ${hint}?` : ""} ` +
        `(validate, migrate or show-defaults; see \`deno task cli config --help\`)`,
    );
  }
  if (sub === "show-defaults") return showDefaults(rest, io);
  const name = `config ${sub}`;
  const files = rest.filter((a) => !a.startsWith("-"));
  const v = parseFlags(name, rest.filter((a) => a.startsWith("-")), { json: { type: "boolean" } });
  if (v.help) return io.stdout(HELP[sub] + "\n");
  if (files.length !== 1) {
    throw new TypeError(
      `${name}: give one config file${files.length ? `, got ${files.length}: ${files.join(" ")}` : ""} ` +
        `(see \`deno task cli ${name} --help\`)`,
    );
  }
  return sub === "validate" ? await validate(files[0], v.json, io) : await migrate(files[0], v.json, io);
}

/** Each problem of a validation or parse error: its "  - ..." lines, or the message itself. */
function problemsOf(e: Error): string[] {
  const lines = e.message.split("\n");
  const items = lines.slice(1).filter((l) => /^\s+- /.test(l)).map((l) => l.replace(/^\s+- /, ""));
  return items.length ? items : [lines.join(" ")];
}

/** A recipe's config (tasks/configs/*.yaml) is checked by the recipe, not as a training config. */
async function refuseRecipeConfig(file: string): Promise<void> {
  const obj = await Deno.readTextFile(file).then((t) => parseYaml(t)).catch(() => null); // its own errors come later
  const task = obj && typeof obj === "object" ? (obj as Record<string, unknown>).task : undefined;
  if (typeof task === "string" && ["summarization", "translation", "classification"].includes(task)) {
    throw new TypeError(
      `config validate: ${file} is a recipe's config (task: ${task}), not a training config; the recipe ` +
        `checks it before anything runs: deno task cli recipe <name> --config ${file}`,
    );
  }
}

/** An error of the user's file (exit 2), as opposed to a failure of fledge. */
function isInputError(e: unknown): e is Error {
  return e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError ||
    e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied;
}

async function validate(file: string, json: boolean, io: CliIO): Promise<number | void> {
  let m: ConfigMigration;
  try {
    await refuseRecipeConfig(file);
    m = await migrateConfigFile(file);
  } catch (e) {
    if (!json || !isInputError(e)) throw e;
    const problems = problemsOf(e);
    io.stdout(JSON.stringify({ ok: false, file, formats: [], mapping: [], problems }) + "\n");
    io.stderr(`fledge: ${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n`);
    return 2;
  }
  // a valid config the Trainer would still refuse (fp16: it computes in float32) is not "ok"
  const refused = unsupportedSettings(m.config);
  if (refused.length) {
    const n = refused.length;
    if (json) {
      io.stdout(
        JSON.stringify({ ok: false, file, formats: m.formats, mapping: m.mapping, problems: refused }) + "\n",
      );
      io.stderr(`fledge: ${file}: ${n} problem${n === 1 ? "" : "s"}\n`);
      return 2;
    }
    throw new RangeError(
      `${file}: ${n} setting${n === 1 ? "" : "s"} the Trainer cannot honour:\n${
        refused.map((r) => `  - ${r}`).join("\n")
      }`,
    );
  }
  if (json) {
    return io.stdout(
      JSON.stringify({ ok: true, file, formats: m.formats, mapping: m.mapping, problems: [] }) + "\n",
    );
  }
  const from = m.formats.length
    ? ` (a ${
      m.formats.join(" + ")
    } config: ${m.mapping.length} mapping lines; see \`deno task cli config migrate ${file}\`)`
    : "";
  io.stdout(`ok: ${file}${from}\n`);
}

async function migrate(file: string, json: boolean, io: CliIO): Promise<void> {
  const m = await migrateConfigFile(file);
  const yaml = migrationToYaml(m, { source: file });
  if (json) {
    return io.stdout(
      JSON.stringify({ file, formats: m.formats, mapping: m.mapping, fields: m.fields, yaml }) + "\n",
    );
  }
  const what = m.formats.length ? `a ${m.formats.join(" + ")} config` : "already a fledge TrainingConfig";
  io.stderr(`${file}: ${what}; the mapping, one line per key:\n${m.mapping.map((l) => `  ${l}\n`).join("")}`);
  io.stdout(yaml);
}

function showDefaults(args: string[], io: CliIO): void {
  const v = parseFlags("config show-defaults", args, {
    preset: { type: "string", choices: PRESETS },
    json: { type: "boolean" },
  });
  if (v.help) return io.stdout(HELP["show-defaults"] + "\n");
  const c: Readonly<TrainingConfig> = v.preset
    ? TRAINING_PRESETS[v.preset as keyof typeof TRAINING_PRESETS]
    : DEFAULT_TRAINING_CONFIG;
  io.stdout(
    v.json ? JSON.stringify(c, null, 2) + "\n" : trainingConfigToYaml(structuredClone(c) as TrainingConfig),
  );
}
