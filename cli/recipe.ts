/**
 * `deno task cli recipe <name>`: run a task recipe (what `deno task train:cnn`, `train:wmt`,
 * `train:sst2` and `train:debian-sections` call): its `tasks/configs/<name>.yaml`, an optional
 * `--config` file over it, then `--<field> value` overrides (recipe fields and TrainingConfig
 * fields by their Hugging Face names).
 *
 * @module
 */
import { parse as parseYaml, YAMLParseError } from "npm:yaml@^2.9";
import { type FlagSpec, parseFlags } from "../util/flags.ts";
import { recipeFlagNames } from "../tasks/_recipe.ts";
import { overrideConfig, TEXT_FIELDS } from "../training/config.ts";
import { runClassification } from "../tasks/classification.ts";
import { runSummarization } from "../tasks/summarization.ts";
import { runTranslation } from "../tasks/translation.ts";
import type { RecipeResult, RunRecipeOptions } from "../tasks/recipe.ts";
import { PretrainInterrupted } from "../tasks/base_model.ts";
import type { CliIO, Command } from "./command.ts";
import { parseFlagValue, shellQuote, withoutFlags } from "./_config_args.ts";
import { closest, yamlProblem } from "../util/problems.ts";
import { readNamedTextFile } from "../util/atomic.ts";

const RECIPES: Record<string, (o: Record<string, unknown>, opts: RunRecipeOptions) => Promise<RecipeResult>> =
  {
    summarization: runSummarization,
    translation: runTranslation,
    sst2: (o, opts) => runClassification("sst2", o, opts),
    "debian-sections": (o, opts) => runClassification("debian-sections", o, opts),
  };

const USAGE = `usage: deno task cli recipe <name> [--config FILE] [--<field> value ...]

Runs a task recipe end to end: data -> model (+ adapters) -> fine-tune -> evaluate -> report, into
runs/<name> (or the first free runs/<name>-N). Offline, with no --dataset / --model, it uses the
Debian data in ../shared/datasets/debian and the Debian base model (pre-trained once, cached).

recipes:
  summarization              deno task train:cnn        document -> one-line summary, ROUGE
  translation                deno task train:wmt        English -> German, BLEU / chrF / chrF++
  sst2                       deno task train:sst2       binary classification, accuracy / macro-F1
  debian-sections            deno task train:debian-sections   8 Debian sections

options:
  -c, --config FILE          YAML fields over the recipe's tasks/configs/<name>.yaml
  --<field> VALUE            any recipe field (dataset, model, max_eval_samples, num_beams, ...) or
                             TrainingConfig field (learning_rate, max_steps, lora, ...); the value
                             is read as JSON when it parses, else as text (--label_names
                             also as a comma list: --label_names other,games)
  -h, --help                 this text

examples:
  deno task train:cnn --max_steps 100 --max_eval_samples 200
  deno task train:sst2 --model Qwen/Qwen2.5-0.5B --dataset sst2 --lora '{"r": 16}'
  deno task train:wmt --dataset ./pairs.jsonl --eval_file ./dev.jsonl --source_column english --target_column german

Flags may also be spelled with hyphens (--max-steps).`;

const FLAGS: Record<string, FlagSpec> = { config: { type: "string", short: "c" } };
for (const k of recipeFlagNames()) FLAGS[k] = { type: "string" };

/** A `--config` file's fields: a syntax error is one line with the file, line and column. */
async function readConfigYaml(path: string): Promise<unknown> {
  const text = await readNamedTextFile(path, "recipe: --config", "give a recipe's .yaml file");
  try {
    return parseYaml(text);
  } catch (e) {
    if (!(e instanceof YAMLParseError)) throw e;
    const at = e.linePos?.[0];
    throw new SyntaxError(
      `recipe: cannot parse --config ${path}${at ? `:${at.line}:${at.col}` : ""}: ${
        yamlProblem(e.message)
      }; fix the YAML`,
    );
  }
}

/** A `--config` field no recipe reads is one line naming the file and the field (as a flag would be). */
function refuseUnknownFields(file: Record<string, unknown>, path: string): void {
  const known = recipeFlagNames();
  const unknown = Object.keys(file).filter((k) => !known.includes(k));
  if (!unknown.length) return;
  const k = unknown[0];
  const hint = k === "model_dir"
    ? `it records where a run's base model was (a run's recipe.yaml); remove it, or pass --model ${file[k]}`
    : `${closest(k, known) ? `did you mean ${closest(k, known)}? ` : ""}see \`deno task cli recipe --help\``;
  throw new TypeError(
    `recipe: ${path}: unknown field ${k}${
      unknown.length > 1 ? ` (and ${unknown.length - 1} more)` : ""
    }; ${hint}`,
  );
}

/** The recipe fields that hold text: a number-like value of them (`--name 2024`) stays text. */
const RECIPE_TEXT = new Set([
  "task",
  "name",
  "dataset",
  "dataset_config",
  "debian_task",
  "level",
  "translation_direction",
  "source_column",
  "target_column",
  "eval_file",
  "train_targets",
  "model",
  "prompt_style",
]);

/** The recipes' names, as `deno task cli recipe <name>` takes them. */
export const RECIPE_NAMES: readonly string[] = Object.keys(RECIPES);

/** The deno task names of the recipes that differ from theirs (`train:cnn` runs summarization). */
const TASK_NAMES: Record<string, string> = { cnn: "summarization", wmt: "translation" };

/** Why `name` is no recipe: the recipes, and the one a task name (cnn, wmt) runs. */
export function unknownRecipe(name: string): string {
  const as = TASK_NAMES[name];
  return `unknown recipe "${name}"; ` +
    (as ? `deno task train:${name} runs recipe ${as} (its runs are runs/${as}...); ` : "") +
    `the recipes are ${Object.keys(RECIPES).join(", ")}`;
}

/** The `recipe` command. */
export const command: Command = {
  summary: "run a task recipe (summarization, translation, sst2, debian-sections) from data to report",
  usage: USAGE,
  run: async (args: string[], io: CliIO) => {
    const [name, ...rest] = args;
    if (name === "-h" || name === "--help") return io.stdout(USAGE + "\n");
    if (name === undefined) { // as data does: an empty $NAME in a script must not pass as done
      throw new TypeError(
        `recipe: missing the recipe name; write \`deno task cli recipe ${
          RECIPE_NAMES.join("|")
        }\` (see \`deno task cli recipe --help\`)`,
      );
    }
    if (name.startsWith("-")) {
      parseFlags("recipe", args, FLAGS); // names an unknown flag first
      throw new TypeError(
        `recipe: give the recipe first: deno task cli recipe <${Object.keys(RECIPES).join("|")}> ...`,
      );
    }
    const run = RECIPES[name];
    if (!run) throw new TypeError(`recipe: ${unknownRecipe(name)}`);
    const v = parseFlags("recipe", rest, FLAGS) as Record<string, string | boolean | undefined>;
    if (v.help) return io.stdout(USAGE + "\n");
    let file: Record<string, unknown> = {};
    if (typeof v.config === "string") {
      const obj = await readConfigYaml(v.config);
      if (!obj || typeof obj !== "object" || Array.isArray(obj)) {
        throw new SyntaxError(`recipe: ${v.config} must hold a mapping of fields`);
      }
      file = obj as Record<string, unknown>;
      refuseUnknownFields(file, v.config);
    }
    const flags: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) {
      if (k !== "config" && k !== "help" && typeof val === "string") {
        flags[k] = parseFlagValue(val, RECIPE_TEXT.has(k) || TEXT_FIELDS.has(k));
      }
    }
    // --label_names a,b as cli eval takes it (a JSON list works too)
    if (typeof flags.label_names === "string") {
      flags.label_names = flags.label_names.split(",").map((x) => x.trim());
    }
    // the flags over the --config file, as both go over the recipe's config
    const overrides = overrideConfig(file, flags);
    // The Debian base model is built only without --model: a base_model given with it would be ignored
    // (a shipped config's own base_model, e.g. translation's, just gives way to --model).
    if (overrides.base_model !== undefined && overrides.model !== undefined && overrides.model !== null) {
      throw new TypeError(
        `recipe: --base_model shapes the Debian base model, which --model ${overrides.model} replaces; drop one`,
      );
    }
    const r = await run(overrides, { handle_signals: true }).catch((e) => {
      if (!(e instanceof PretrainInterrupted)) throw e;
      io.stderr(`fledge: ${e.message}: run the same command again\n`);
      return e.signal;
    });
    if (typeof r === "string") return r === "SIGINT" ? 130 : 143;
    if (r.interrupted) {
      // the same command, resuming in the run folder (the run's settings are the flags': recipe.yaml
      // records them, but a resume reads the flags); as train does, no folder on stdout and 130 / 143
      const again = withoutFlags(rest, ["resume_from_checkpoint", "output_dir", "overwrite_output_dir"]);
      again.push("--resume_from_checkpoint", "true", "--output_dir", r.output_dir);
      if (overrides.overwrite_output_dir === true) again.push("--overwrite_output_dir", "false");
      io.stderr(`fledge: resume with: deno task cli recipe ${name} ${again.map(shellQuote).join(" ")}\n`);
      return r.interrupted === "SIGINT" ? 130 : 143;
    }
    io.stdout(`${r.output_dir}\n`);
  },
};
