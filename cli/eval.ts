/**
 * `deno task cli eval`: evaluate a model folder or a recipe's run on a task's examples and print
 * the metrics (`--json`: one JSON object on stdout, numbers on the 0-100 scale, plus `n`). What
 * the recipes' `eval:*` tasks call. A run folder brings its prompt format and generation settings
 * (`recipe.yaml`), its `model/`, or its base model and `adapter/`.
 *
 * @module
 */
import { isFileSync, pathExists, writeFileAtomic } from "../util/atomic.ts";
import { join } from "node:path";
import { parse as parseYaml } from "npm:yaml@^2.9";
import { loadTaskData, type TaskExample, type TaskKind } from "../data/task_data.ts";
import { findSplitLayout, refuseCompressedOutput, splitFilesOf, splitNamesOf } from "../data/readers.ts";
import { evaluateTask, taskPrompts } from "../evaluation/task_eval.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { exportOnnx } from "../models/formats/onnx.ts";
import { OnnxDecoder } from "../models/onnx_runtime.ts";
import { loadAdapter, mergeAdapter, quantizeModel } from "../training/peft.ts";
import { loadTrainingConfig, type TrainingConfig } from "../training/config.ts";
import { parseFlags } from "../util/flags.ts";
import { createProgress } from "../util/progress.ts";
import { agree } from "../util/problems.ts";
import {
  BEAM_ONLY_KEYS,
  evalOptions,
  loadRecipeModel,
  mergeRecipeConfig,
  RECIPE_DEFAULTS,
  recipeData,
  type RecipeSettings,
  resolveRecipe,
} from "../tasks/_recipe.ts";
import { type CliIO, type Command, noteTempLeftovers } from "./command.ts";
import { noteAdapterBase } from "./_model.ts";
import { RECIPE_NAMES, unknownRecipe } from "./recipe.ts";

const USAGE = `usage: deno task cli eval --task summarization|translation|classification --model DIR
         [--adapter DIR] [--data FILE.jsonl] [--split NAME] [--max_samples N] [--num_beams K] [--json]
       deno task cli eval --recipe NAME [...]

Evaluates a model on a task's examples: summarization (ROUGE-1/2/L/Lsum), translation (BLEU, chrF,
chrF++) by generation; classification (accuracy, macro-F1) by label likelihood. Prints the metrics
(0-100) and the number of examples.

options:
  --task T                   summarization, translation or classification (default: the run's)
  --model DIR                a model folder, or a recipe's run folder (its model/, or its base
                             model and adapter/, with the prompt and generation settings it used)
  --recipe NAME              the newest finished run of this recipe (runs/NAME, runs/NAME-N)
  --adapter DIR              a PEFT adapter folder to apply to --model
  --data FILE                examples in the Debian datasets' format (.jsonl, .csv, .parquet),
                             or a folder's validation split; default: the run's validation split
  --split NAME               the split to score of a --data folder or of the run's dataset (a hub
                             dataset's, a folder's; default: validation), e.g. test
  --source_column C / --target_column C / --label_names a,b   column mapping for --data
  --max_samples N            evaluate the first N examples (of a run's validation split: also
                             more than the run's max_eval_samples)
  --num_beams K              beam search (summarization, translation)
  --max_new_tokens N
  --max_source_tokens N      cut each source to N tokens (default: the run's; for a model folder
                             160, less where the model's positions need it)
  --max_len_a A --max_len_b B   stop a row after A * its prompt tokens + B new tokens (fairseq's)
  --split_lines              translation: translate each line (paragraph) of a source on its own
                             (default: the run's setting, else off)
  --no_split_lines           translation: translate each source whole, even where the run split lines
  --backend B                webgpu, cpu, auto (default), or onnx: the model (adapter merged)
                             exported to ONNX and run in onnxruntime
  --predictions FILE         also write each example's prediction there (JSON lines: id, source,
                             reference, prediction, and the label scores); refused if FILE exists
  --json                     print the metrics as one JSON object
  -h, --help                 this text`;

const FLAGS = {
  task: { type: "string", choices: ["summarization", "translation", "classification"] },
  model: { type: "string" },
  recipe: { type: "string" },
  adapter: { type: "string" },
  data: { type: "string" },
  split: { type: "string" },
  source_column: { type: "string" },
  target_column: { type: "string" },
  label_names: { type: "string" },
  max_samples: { type: "int", min: 1 },
  num_beams: { type: "int", min: 1 },
  max_new_tokens: { type: "int", min: 1 },
  max_source_tokens: { type: "int", min: 1 },
  max_len_a: { type: "number", min: 0 },
  max_len_b: { type: "int", min: 0 },
  split_lines: { type: "boolean" },
  no_split_lines: { type: "boolean" },
  backend: { type: "string", choices: ["webgpu", "cpu", "auto", "onnx"], default: "auto" },
  predictions: { type: "string" },
  json: { type: "boolean" },
} as const;

/**
 * Check `eval`'s flags as the command reads them (choices, numbers), without running it: an eval
 * job's config at `queue submit`.
 * @throws {TypeError} / {RangeError} one line naming the flag
 */
export function checkEvalFlags(args: string[]): void {
  parseFlags("eval", args, FLAGS);
}

/** The flag names of `eval` (what an eval job of the queue may set). */
export const EVAL_FLAG_NAMES: readonly string[] = Object.freeze(Object.keys(FLAGS));

/** The switches among them (an eval job's `false` for one is its default; for another flag, no value). */
export const EVAL_SWITCHES: readonly string[] = Object.freeze(
  Object.entries(FLAGS).filter(([, f]) => f.type === "boolean").map(([k]) => k),
);

/** The newest finished run (has recipe.yaml) of a recipe under runs/. */
async function newestRun(name: string): Promise<string> {
  if (!RECIPE_NAMES.includes(name)) throw new TypeError(`eval: --recipe: ${unknownRecipe(name)}`);
  let best: [number, string] | null = null;
  try {
    for await (const e of Deno.readDir("runs")) {
      if (!e.isDirectory || !(e.name === name || new RegExp(`^${name}-\\d+$`).test(e.name))) continue;
      const dir = join("runs", e.name);
      const st = await Deno.stat(join(dir, "recipe.yaml")).catch(() => null);
      if (st?.mtime && (!best || st.mtime.getTime() > best[0])) best = [st.mtime.getTime(), dir];
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!best) {
    throw new Deno.errors.NotFound(
      `eval: no finished run of recipe "${name}" under runs/; run it first (deno task cli recipe ${name})`,
    );
  }
  return best[1];
}

async function evalRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("eval", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  if (!v.model === !v.recipe) {
    throw new TypeError("eval: give one of --model DIR (a model or run folder) or --recipe NAME");
  }
  const mapping = (["source_column", "target_column", "label_names"] as const).filter((k) =>
    v[k] !== undefined
  );
  if (mapping.length && !v.data) {
    throw new TypeError(
      `eval: ${mapping.map((k) => `--${k}`).join(", ")} map${
        agree(mapping).s
      } the columns of --data; add --data FILE`,
    );
  }
  if (v.split_lines && v.no_split_lines) {
    throw new TypeError("eval: --split_lines and --no_split_lines exclude each other");
  }
  if (v.model && !(await pathExists(v.model))) {
    throw new Deno.errors.NotFound(
      `eval: --model ${v.model} does not exist; give a model folder or a recipe's run folder`,
    );
  }
  const dir = v.model ?? await newestRun(v.recipe!);
  // A run folder: its settings, its model/ or its base model + adapter/.
  let settings: RecipeSettings | null = null;
  let seed = 42; // the run's (its train subsample, when it cut one); a run saved without it: the default
  const saved = join(dir, "recipe.yaml");
  if (await pathExists(saved)) {
    // checked as a recipe's config is: a hand-edited value fails here, not deep in the evaluation
    const { model_dir, ...flat } = parseYaml(await Deno.readTextFile(saved)) ?? {};
    // (a run saved before the data fields of another source gave way still holds them: they do here)
    const recipe = resolveRecipe(mergeRecipeConfig(flat, {}), saved);
    settings = { ...recipe.settings, model_dir } as RecipeSettings;
    seed = recipe.training.seed;
  }
  const task = (v.task ?? settings?.task) as TaskKind | undefined;
  if (!task) throw new TypeError(`eval: ${dir} is not a recipe's run folder; give --task`);
  if (settings && v.task && v.task !== settings.task) {
    throw new TypeError(
      `eval: --task ${v.task} differs from the run's task ${settings.task} (${saved})`,
    );
  }
  const generation = (["num_beams", "max_new_tokens", "max_len_a", "max_len_b"] as const).filter((k) =>
    v[k] !== undefined
  );
  if (generation.length && task === "classification") {
    throw new TypeError(
      `eval: ${generation.map((k) => `--${k}`).join(", ")} ${
        agree(generation).is
      } for generation (summarization, translation); classification scores each label's likelihood`,
    );
  }
  if ((v.split_lines || v.no_split_lines) && task !== "translation") {
    throw new TypeError(
      `eval: --${v.split_lines ? "" : "no_"}split_lines is for translation only, not ${task}`,
    );
  }
  let modelDir = dir, adapter = v.adapter ?? null;
  let quantization: TrainingConfig["quantization"] = null; // a QLoRA run's adapter sits on 4-bit weights
  if (settings && await pathExists(join(dir, "model", "config.json"))) modelDir = join(dir, "model");
  else if (settings && await pathExists(join(dir, "adapter"))) {
    modelDir = (settings as RecipeSettings & { model_dir?: string }).model_dir ?? "";
    adapter ??= join(dir, "adapter");
    const trained = join(dir, "config.yaml");
    if (await pathExists(trained)) {
      quantization = (await loadTrainingConfig(trained, { warn: () => {} })).quantization;
    }
    if (!modelDir) {
      throw new TypeError(
        `eval: ${saved} does not say which base model the adapter belongs to (model_dir)`,
      );
    }
  }
  const flags: Partial<RecipeSettings> = {
    ...(v.num_beams ? { num_beams: v.num_beams } : {}),
    ...(v.max_new_tokens ? { max_new_tokens: v.max_new_tokens } : {}),
    ...(v.max_source_tokens ? { max_source_tokens: v.max_source_tokens } : {}),
    ...(v.max_len_a !== undefined ? { max_len_a: v.max_len_a } : {}),
    ...(v.max_len_b !== undefined ? { max_len_b: v.max_len_b } : {}),
    ...(v.split_lines ? { split_lines: true } : v.no_split_lines ? { split_lines: false } : {}),
  };
  // --num_beams 1 decodes greedily: the run's beam-only settings cannot apply (said, not dropped silently)
  const beamOnly = BEAM_ONLY_KEYS.filter((k) =>
    settings && JSON.stringify(settings[k]) !== JSON.stringify(RECIPE_DEFAULTS[k])
  );
  if (v.num_beams === 1 && beamOnly.length) {
    for (const k of beamOnly) Object.assign(flags, { [k]: RECIPE_DEFAULTS[k] });
    io.stderr(
      `eval: --num_beams 1 decodes greedily, without the run's ${
        beamOnly.map((k) => `${k} ${settings![k]}`).join(", ")
      }\n`,
    );
  }
  // the run's settings with the flags, checked as a recipe's are (the same combinations refused)
  const { model_dir: _dir, ...run } = (settings ?? { ...RECIPE_DEFAULTS, task, name: "eval" }) as
    & RecipeSettings
    & {
      model_dir?: string;
    };
  const s =
    resolveRecipe({ ...run, ...flags }, `${settings ? saved : "eval"} with the command's flags`).settings;
  // ---- data ----
  let examples, labels;
  if (v.data) {
    // a file (all its records) or a folder (its validation split, or --split); not a dataset name
    const st = await Deno.stat(v.data).catch(() => null);
    if (!st) {
      throw new Deno.errors.NotFound(
        `eval: --data ${v.data} does not exist; give a .jsonl, .csv or .parquet file, or a folder with ` +
          `a validation split (a run's own validation split needs no --data)`,
      );
    }
    if (v.split !== undefined && !st.isDirectory) {
      throw new TypeError(
        `eval: --split ${v.split} names a split of a folder, and --data ${v.data} is one file (all its ` +
          `records are scored); drop --split or give the folder`,
      );
    }
    // eval reads a folder's split, or every record of a file: said so when there is none
    const split = v.split ?? "validation";
    const layout = st.isDirectory ? findSplitLayout(v.data) : null;
    if (layout && !splitFilesOf(layout, split)) {
      const found = splitNamesOf(layout);
      throw new Deno.errors.NotFound(
        `eval: --data ${v.data} holds no ${split} split file (${split}.jsonl, data/${split}-*.parquet, ...)` +
          `${found.length ? `; its splits: ${found.join(", ")}` : ""}; ` +
          `give ${v.split === undefined ? "--split NAME, " : ""}a folder with one, or a data file`,
      );
    }
    if (st.isFile && st.size === 0) {
      throw new RangeError(`eval: --data ${v.data} is empty; give a file with records to score`);
    }
    // A run's model reads the file as it read its own data: its translation direction, the columns
    // it named, the label names its classifier was trained on (recipe.yaml holds them; a run saved
    // before it did: its data's, read again). Flags come first.
    const names = v.label_names
      ? v.label_names.split(",").map((x) => x.trim())
      : settings && task === "classification"
      ? settings.label_names ?? (await recipeData(settings, seed)).labels
      : null;
    const source = v.source_column ?? settings?.source_column;
    const target = v.target_column ?? settings?.target_column;
    const d = await loadTaskData(task, {
      dataset: v.data,
      ...(st.isDirectory && v.split !== undefined ? { eval_split: v.split } : {}),
      // a folder of the scored split alone (a test split): its columns and labels are read from it
      ...(layout && !splitFilesOf(layout, "train") ? { train_split: split } : {}),
      ...(settings?.translation_direction ? { translation_direction: settings.translation_direction } : {}),
      ...(source ? { source_column: source } : {}),
      ...(target ? { target_column: target } : {}),
      ...(names ? { label_names: names } : {}),
    });
    examples = st.isDirectory ? d.validation : d.train;
    labels = d.labels;
  } else if (settings) {
    // --split: another split of the run's dataset (a hub dataset's or a folder's test split);
    // validation is the one it scores anyway
    const other = v.split !== undefined && v.split !== "validation" ? v.split : undefined;
    if (other && (settings.dataset === "debian" || settings.eval_file || isFileSync(settings.dataset))) {
      throw new TypeError(
        `eval: --split ${other} names a split of the run's dataset, and ${
          settings.dataset === "debian"
            ? "the Debian data has train and validation files only"
            : settings.eval_file
            ? `the run scored its eval_file ${settings.eval_file}`
            : `${settings.dataset} is one file`
        }; give the examples as --data FILE`,
      );
    }
    const d = await recipeData(settings, seed, other);
    // --max_samples over the run's max_eval_samples: a run that scored 200 can score them all
    const n = v.max_samples ?? settings.max_eval_samples;
    examples = n ? d.validation.slice(0, n) : d.validation;
    labels = d.labels;
  } else {
    throw new TypeError(
      `eval: give --data FILE${
        v.split !== undefined ? " (a folder, for --split)" : ""
      } (or a recipe's run folder as --model)`,
    );
  }
  if (v.max_samples) examples = examples.slice(0, v.max_samples);
  if (v.predictions) refuseCompressedOutput(v.predictions, `eval: --predictions ${v.predictions}`);
  if (v.predictions && await pathExists(v.predictions)) {
    throw new Deno.errors.AlreadyExists(
      `eval: --predictions ${v.predictions} exists; give a new file (it is never overwritten)`,
    );
  }
  if (v.predictions) await noteTempLeftovers(io, "eval", [v.predictions]);
  // ---- model, evaluate ----
  const onnx = v.backend === "onnx";
  const { model, tokenizer, generation_config } = await loadRecipeModel(modelDir, onnx ? "cpu" : v.backend);
  let decoder: OnnxDecoder | null = null, tmp: string | null = null;
  try {
    // the base as the run trained on it: quantized first for a QLoRA run (it scored on f32 weights)
    if (quantization?.load_in_4bit) {
      quantizeModel(model, { kind: "nf4", doubleQuant: quantization.bnb_4bit_use_double_quant });
    }
    if (adapter) {
      await noteAdapterBase(io, "eval", adapter, await loadAdapter(model, adapter), model, modelDir);
    }
    if (!settings && !v.max_source_tokens) {
      const was = s.max_source_tokens;
      fitSourceTokens(s, examples, tokenizer, labels, model.config.max_position_embeddings);
      if (s.max_source_tokens < was) { // said, not done silently: a large --max_new_tokens cuts the prompts
        io.stderr(
          `eval: sources cut to ${s.max_source_tokens} tokens (not ${was}) so that the prompts and ` +
            `${
              task === "classification" ? "the labels" : `--max_new_tokens ${s.max_new_tokens}`
            } fit the model's ` +
            `${model.config.max_position_embeddings} positions; set --max_source_tokens to choose\n`,
        );
      }
    }
    if (onnx) {
      // onnxruntime runs the exported graph: the adapter merged into the weights first
      if (adapter) mergeAdapter(model);
      tmp = await Deno.makeTempDir({ prefix: "fledge-eval-onnx-" });
      SCRATCH.add(tmp);
      await exportOnnx(model, join(tmp, "model.onnx"));
      decoder = await OnnxDecoder.load(join(tmp, "model.onnx"), { config: model.config });
    }
    // a progress line on stderr (a whole split takes minutes; it had run silent)
    // (made at the first report: split_lines counts lines, not examples)
    let progress: ReturnType<typeof createProgress> | null = null;
    const unit = s.split_lines ? "lines" : "examples";
    const r = await evaluateTask(decoder ?? model, tokenizer, task, examples, {
      ...evalOptions(s, labels, generation_config),
      onProgress: (done, total) =>
        (progress ??= createProgress(`eval ${task}`, { total, unit })).update(done),
    });
    (progress as ReturnType<typeof createProgress> | null)?.done();
    if (v.predictions) {
      // never over a file, even one that appeared while the evaluation ran
      await writeFileAtomic(v.predictions, r.predictions.map((p) => JSON.stringify(p) + "\n").join(""), {
        replace: false,
      });
    }
    if (v.json) return io.stdout(JSON.stringify(r.metrics) + "\n");
    for (const [k, val] of Object.entries(r.metrics)) io.stdout(`${k.padEnd(16)} ${val}\n`);
  } finally {
    await decoder?.release();
    if (tmp) {
      await Deno.remove(tmp, { recursive: true });
      SCRATCH.delete(tmp);
    }
    model.dispose();
  }
}

/**
 * A model folder's default `max_source_tokens` (the recipes' 160) cut, where needed, so that the
 * longest prompt and its answer (`max_new_tokens`, or the longest label) fit the model's positions:
 * a small model scores its own data without a flag.
 */
function fitSourceTokens(
  s: RecipeSettings,
  examples: readonly TaskExample[],
  tokenizer: Tokenizer,
  labels: readonly string[] | null,
  positions: number,
): void {
  const room = s.task === "classification"
    ? Math.max(
      ...(labels ?? []).map((l) => tokenizer.encode(` ${l}`, { add_special_tokens: false }).length + 1),
      1,
    )
    : s.max_new_tokens;
  for (let i = 0; i < 3; i++) {
    const { prompts } = taskPrompts(s.task, examples, tokenizer, evalOptions(s, labels));
    const over = prompts.reduce((m, p) => Math.max(m, p.length), 0) + room - positions;
    if (over <= 0 || s.max_source_tokens <= 1) return;
    s.max_source_tokens = Math.max(1, s.max_source_tokens - over);
  }
}

/** Scratch folders of a running evaluation (the ONNX export), removed even at a signal. */
const SCRATCH = new Set<string>();

/** The `eval` command. */
export const command: Command = {
  summary: "evaluate a model or a recipe's run on a task (ROUGE, BLEU/chrF, accuracy/macro-F1)",
  usage: USAGE,
  run: async (args: string[], io: CliIO) => {
    // Ctrl-C: one line, as the training commands give (nothing is written before the end)
    const stop = (signal: "SIGINT" | "SIGTERM") => () => {
      // Deno.exit runs no finally: the scratch ONNX export goes here
      for (const d of SCRATCH) Deno.removeSync(d, { recursive: true });
      io.stderr(`fledge: eval stopped by ${signal}\n`);
      Deno.exit(signal === "SIGINT" ? 130 : 143);
    };
    const handlers: [Deno.Signal, () => void][] = [];
    for (const s of ["SIGINT", "SIGTERM"] as const) {
      const h = stop(s);
      try {
        Deno.addSignalListener(s, h);
        handlers.push([s, h]);
      } catch { /* not on this platform */ }
    }
    try {
      return await evalRun(args, io);
    } finally {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    }
  },
};
