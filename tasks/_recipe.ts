/**
 * Private: what the three recipes share. A recipe config is one flat object: the recipe's own
 * fields ({@linkcode RecipeSettings}: data, model, prompt, generation) beside any `TrainingConfig`
 * field (learning_rate, max_steps, lora, ...), read from `tasks/configs/<name>.yaml` and overridden
 * by `--<field> value` flags. The steps (data, model, SFT rows, train, evaluate, report) are
 * functions here so each recipe file reads top to bottom.
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse as parseYaml } from "npm:yaml@^2.9";
import { createBackend } from "../kernels/backend.ts";
import { languageName, type PromptOptions, taskRow } from "../data/prompts.ts";
import { packExamples, padExamples } from "../data/packing.ts";
import { RowDataset } from "../data/row_dataset.ts";
import { buildSftExamples, refuseCutToNothing } from "../data/sft.ts";
import { loadTaskData, type TaskData, type TaskExample, type TaskKind } from "../data/task_data.ts";
import { learnWordDictionary, type WordDictionaryOptions } from "../data/word_dictionary.ts";
import { downloadModel } from "../models/hub/hub.ts";
import { loadModel } from "../models/pretrained.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../models/transformer.ts";
import { lengthLimit } from "../evaluation/generation_eval.ts";
import {
  checkGenerationConfig,
  type GenerationConfig,
  loadGenerationConfig,
} from "../models/generation_config.ts";
import { agree } from "../util/problems.ts";
import type { TaskEvalOptions } from "../evaluation/task_eval.ts";
import {
  getTrainingArgs,
  overrideConfig,
  refuseUnreadFields,
  TRAINING_CONFIG_KEYS,
  type TrainingConfig,
  unsupportedSettings,
} from "../training/config.ts";
import { type BaseModelConfig, ensureBaseModel } from "./base_model.ts";
import { type ExtraTrain, extraTrainProblems } from "./_extra_train.ts";

/** The recipe's own fields (everything else in a recipe config is a `TrainingConfig` field). */
export interface RecipeSettings {
  task: TaskKind;
  /** Names the run folder (`runs/<name>`, then `runs/<name>-2`, ...) and `eval --recipe`. */
  name: string;
  /** `debian` (offline default), a hub dataset id, or a local file / folder. */
  dataset: string;
  dataset_config: string | null;
  debian_task: "summarization" | "translation" | "classification" | "classification-binary" | null;
  level: "short" | "long" | null;
  translation_direction: string | null;
  source_column: string | null;
  target_column: string | null;
  label_names: string[] | null;
  eval_file: string | null;
  max_train_samples: number | null;
  /**
   * Classification: more train examples, all of one label, from another dataset's train split
   * (`tasks/_extra_train.ts`), e.g. `{debian_task: classification, label: other, max_samples: 700}`:
   * the 8-way Debian task's texts, none of them games. Null: none.
   */
  extra_train: ExtraTrain | null;
  /** Classification: repeat each smaller class's train examples up to the largest class's count. */
  balance_classes: boolean;
  /**
   * What the model is trained to write: `reference` (the dataset's summaries, translations or
   * labels) or, for summarization, `lead_oracle` (the document's first k words closest to the
   * reference by ROUGE-L: an extractive target, `leadOracle` in `evaluation/task_metrics.ts`);
   * for translation, `word_dictionary` (the source translated word for word by a dictionary
   * learned from the train pairs: sequence-level distillation, `data/word_dictionary.ts`);
   * `auto`: `lead_oracle` for summarization and `word_dictionary` for translation from the Debian
   * base model (no `model`), else `reference`.
   */
  train_targets: "reference" | "lead_oracle" | "word_dictionary" | "auto";
  /** Options of the `word_dictionary` teacher (`learnWordDictionary`: max_words, min_dice, one_to_one). */
  word_dictionary: WordDictionaryOptions;
  /**
   * Translation: train on one pair per line (pairs whose source and target have as many lines) and
   * translate each line of a source on its own at evaluation (`data/line_pairs.ts`).
   */
  split_lines: boolean;
  /** Validation examples evaluated at the end (null: all). */
  max_eval_samples: number | null;
  /** A Hugging Face folder or hub id; null: the Debian base model (pre-trained once, cached). */
  model: string | null;
  /** Overrides of the base model's config (`tasks/base_model.ts`). */
  base_model: Partial<BaseModelConfig>;
  prompt_style: "plain" | "chat";
  /** Source tokens kept in a prompt (its head). */
  max_source_tokens: number;
  // generation (summarization, translation), Hugging Face names
  max_new_tokens: number;
  num_beams: number;
  length_penalty: number;
  early_stopping: boolean | "never";
  no_repeat_ngram_size: number;
  repetition_penalty: number;
  /**
   * fairseq's `max_len_a`: each row stops after `floor(max_len_a * x + max_len_b)` new tokens (and
   * `max_new_tokens`), x its prompt's length in tokens; null: off.
   */
  max_len_a: number | null;
  /** fairseq's `max_len_b` (with `max_len_a`). */
  max_len_b: number;
  /** Rows per generate / scoring call. */
  eval_batch_size: number;
  /** Validation examples scored at each evaluation during training (metric_for_best_model rougeL, ...). */
  metric_samples: number;
  /** Also write PNG copies of the report's pictures. */
  png: boolean;
}

/** Defaults of the recipe fields (a config file sets what differs). */
export const RECIPE_DEFAULTS: Readonly<Omit<RecipeSettings, "task" | "name">> = Object.freeze({
  dataset: "debian",
  dataset_config: null,
  debian_task: null,
  level: null,
  translation_direction: null,
  source_column: null,
  target_column: null,
  label_names: null,
  eval_file: null,
  max_train_samples: null,
  extra_train: null,
  balance_classes: false,
  train_targets: "reference",
  word_dictionary: {},
  split_lines: false,
  max_eval_samples: null,
  model: null,
  base_model: {},
  prompt_style: "plain",
  max_source_tokens: 160,
  max_new_tokens: 32,
  num_beams: 1,
  length_penalty: 1,
  early_stopping: false,
  no_repeat_ngram_size: 0,
  repetition_penalty: 1,
  max_len_a: null,
  max_len_b: 0,
  eval_batch_size: 32,
  metric_samples: 100,
  png: false,
});

/** The generation fields (summarization and translation; classification generates nothing). */
const GENERATION_KEYS = [
  "max_new_tokens",
  "num_beams",
  "length_penalty",
  "early_stopping",
  "no_repeat_ngram_size",
  "repetition_penalty",
  "max_len_a",
  "max_len_b",
] as const;

/** The generation fields only beam search reads (refused with `num_beams` 1). */
export const BEAM_ONLY_KEYS = ["length_penalty", "early_stopping"] as const;

/** Every recipe field name. */
export const RECIPE_KEYS: readonly string[] = ["task", "name", ...Object.keys(RECIPE_DEFAULTS)];

/** A resolved recipe: its fields and the validated training config. */
export interface Recipe {
  settings: RecipeSettings;
  training: TrainingConfig;
  /** The merged flat object (what `recipe.yaml` of the run holds). */
  flat: Record<string, unknown>;
}

/** What `train_targets` trains on: `auto` resolved (teacher targets offline, the references with `--model`). */
function trainTargets(
  s: Pick<RecipeSettings, "train_targets" | "model" | "task">,
): RecipeSettings["train_targets"] {
  if (s.train_targets !== "auto") return s.train_targets;
  return s.model !== null && s.model !== undefined
    ? "reference"
    : s.task === "summarization"
    ? "lead_oracle"
    : s.task === "translation"
    ? "word_dictionary"
    : "reference";
}

/**
 * A recipe's flat config: `overrides` over its shipped config (`overrideConfig`: a flag that sets
 * the length of training one way drops the config's other one). The shipped config's data fields
 * for one source give way when the overrides pick another: its `debian_task` for a `--dataset`
 * that is not the Debian data, its `dataset_config` (the hub dataset's) for the Debian data or a
 * local path, its `word_dictionary` when the teacher does not run. Given in `overrides`, they stay,
 * and a misplaced one is refused (by the data loader, by `resolveRecipe`).
 */
export function mergeRecipeConfig(
  shipped: Record<string, unknown>,
  overrides: Record<string, unknown>,
): Record<string, unknown> {
  // a recipe is its task: another one ran under this recipe's title, report and README targets
  if (overrides.task !== undefined && shipped.task !== undefined && overrides.task !== shipped.task) {
    throw new TypeError(
      `Cannot run the ${shipped.name ?? shipped.task} recipe as ${JSON.stringify(overrides.task)}: it is a ` +
        `${shipped.task} recipe; drop task, or run the ${overrides.task} recipe`,
    );
  }
  const c = overrideConfig(shipped, overrides);
  const dataset = String(c.dataset ?? "debian");
  // extra examples labelled for the shipped data (Debian texts as `other`) give way to other data
  if (
    overrides.extra_train === undefined && shipped.extra_train !== undefined &&
    (overrides.dataset !== undefined || overrides.debian_task !== undefined)
  ) c.extra_train = null;
  if (overrides.debian_task === undefined && dataset !== "debian") c.debian_task = null;
  if (overrides.dataset_config === undefined && (dataset === "debian" || existsSync(dataset))) {
    c.dataset_config = null;
  }
  // so does its word_dictionary when the teacher it shapes does not run (--model, reference targets)
  const targets = trainTargets({ train_targets: "reference", model: null, ...c } as RecipeSettings);
  if (overrides.word_dictionary === undefined && targets !== "word_dictionary") delete c.word_dictionary;
  return c;
}

/**
 * Read `tasks/configs/<name>.yaml` beside this module: from the file system for a `file:` module
 * (a checkout, or a `deno compile` binary, whose embedded files only the file system APIs see),
 * over HTTP when this module was imported by URL.
 */
export async function readRecipeYaml(name: string): Promise<Record<string, unknown>> {
  const url = new URL(`./configs/${name}.yaml`, import.meta.url);
  let text: string;
  if (url.protocol === "file:") {
    try {
      text = await Deno.readTextFile(url);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new Deno.errors.NotFound(`Cannot read recipe config ${url}: no such file`);
    }
  } else {
    const res = await fetch(url);
    if (!res.ok) {
      throw new Deno.errors.NotFound(`Cannot read recipe config ${url}: ${res.status} ${res.statusText}`);
    }
    text = await res.text();
  }
  const obj = parseYaml(text);
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) {
    throw new SyntaxError(`Cannot read recipe config ${url}: expected a mapping of fields`);
  }
  return obj as Record<string, unknown>;
}

/**
 * Split a flat recipe config into the recipe's fields and a validated `TrainingConfig`; unknown
 * keys are named with the nearest known ones (by the training config's validation).
 * @throws {RangeError} / {TypeError} for bad values, listing every problem
 */
export function resolveRecipe(flat: Record<string, unknown>, file = "recipe config"): Recipe {
  const settings: Record<string, unknown> = { ...RECIPE_DEFAULTS };
  const training: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flat)) {
    if (v === undefined) continue;
    if (RECIPE_KEYS.includes(k)) settings[k] = v;
    else training[k] = v;
  }
  const s = settings as unknown as RecipeSettings;
  const problems: string[] = [];
  if (!["summarization", "translation", "classification"].includes(s.task)) {
    problems.push(`task ${JSON.stringify(s.task)} is not summarization, translation or classification`);
  }
  if (typeof s.name !== "string" || !/^[\w.-]+$/.test(s.name)) {
    problems.push(`name ${JSON.stringify(s.name)} must be a folder name`);
  }
  if (!["plain", "chat"].includes(s.prompt_style)) problems.push(`prompt_style must be plain or chat`);
  if (!["reference", "lead_oracle", "word_dictionary", "auto"].includes(s.train_targets)) {
    problems.push(
      `train_targets must be reference, lead_oracle, word_dictionary or auto, got ${
        JSON.stringify(s.train_targets)
      }`,
    );
  } else if (s.train_targets === "lead_oracle" && s.task !== "summarization") {
    problems.push(`train_targets lead_oracle is for summarization only; use reference for ${s.task}`);
  } else if (s.train_targets === "word_dictionary" && s.task !== "translation") {
    problems.push(`train_targets word_dictionary is for translation only; use reference for ${s.task}`);
  }
  problems.push(...extraTrainProblems(s.extra_train, s.balance_classes, s.task));
  if (typeof s.split_lines !== "boolean") {
    problems.push(`split_lines must be true or false, got ${JSON.stringify(s.split_lines)}`);
  } else if (s.split_lines && s.task !== "translation") {
    problems.push(`split_lines is for translation only; set it to false for ${s.task}`);
  }
  const wd = s.word_dictionary as unknown as Record<string, unknown>;
  if (typeof wd !== "object" || wd === null || Array.isArray(wd)) {
    problems.push(`word_dictionary must be an object ({max_words, min_dice, one_to_one})`);
  } else {
    const unknown = Object.keys(wd).filter((k) => !["max_words", "min_dice", "one_to_one"].includes(k));
    if (unknown.length) {
      problems.push(
        `word_dictionary has no field ${unknown.join(", ")}; use max_words, min_dice or one_to_one`,
      );
    } else if (wd.one_to_one !== undefined && typeof wd.one_to_one !== "boolean") {
      problems.push(`word_dictionary.one_to_one must be true or false, got ${JSON.stringify(wd.one_to_one)}`);
    } else {
      try {
        learnWordDictionary([], wd); // its own checks of max_words and min_dice
      } catch (e) {
        problems.push(`word_dictionary.${(e as Error).message}`);
      }
    }
  }
  for (
    const k of [
      "max_source_tokens",
      "max_new_tokens",
      "num_beams",
      "eval_batch_size",
      "metric_samples",
    ] as const
  ) {
    if (!Number.isInteger(s[k]) || (s[k] as number) < 1) {
      problems.push(`${k} must be a positive integer, got ${JSON.stringify(s[k])}`);
    }
  }
  try {
    lengthLimit(s.max_len_a, s.max_len_b); // its own checks of max_len_a and max_len_b
  } catch (e) {
    problems.push((e as Error).message);
  }
  const generation = GENERATION_KEYS.filter((k) =>
    JSON.stringify(s[k]) !== JSON.stringify(RECIPE_DEFAULTS[k])
  );
  if (s.task === "classification" && generation.length) {
    const a = agree(generation);
    problems.push(
      `${generation.join(", ")} ${a.is} for generation (summarization, translation), and ` +
        `classification scores each label's likelihood; remove ${a.it}`,
    );
  }
  const beamOnly = BEAM_ONLY_KEYS.filter((k) => generation.includes(k));
  if (s.task !== "classification" && s.num_beams === 1 && beamOnly.length) {
    problems.push(
      `${beamOnly.join(", ")} ${agree(beamOnly).is} for beam search, and num_beams is 1; ` +
        `set num_beams > 1 or remove ${agree(beamOnly).it}`,
    );
  }
  for (const k of ["max_train_samples", "max_eval_samples"] as const) {
    const v = s[k];
    if (v !== null && (!Number.isInteger(v) || v < 1)) {
      problems.push(`${k} must be a positive integer or null`);
    }
  }
  if (typeof s.png !== "boolean") problems.push(`png must be true or false, got ${JSON.stringify(s.png)}`);
  // the generation values as generate() checks them, before training rather than after it
  if (s.task !== "classification") {
    try {
      checkGenerationConfig(
        Object.fromEntries(GENERATION_KEYS.filter((k) => !k.startsWith("max_len")).map((k) => [k, s[k]])),
        file,
        "generation",
      );
    } catch (e) {
      problems.push((e as Error).message.replace(/\s*\n\s*-?\s*/g, " "));
    }
  }
  s.train_targets = trainTargets(s);
  // settings nothing would read, refused as the training config's are
  if (JSON.stringify(s.word_dictionary) !== "{}" && s.train_targets !== "word_dictionary") {
    problems.push(
      `word_dictionary shapes the word-for-word teacher, and train_targets is ${s.train_targets}; ` +
        `remove word_dictionary or set train_targets word_dictionary`,
    );
  }
  const metric = String(training.metric_for_best_model ?? "").replace(/^eval_/, "");
  const evaluates = (training.eval_strategy ?? "no") !== "no";
  if (
    s.metric_samples !== RECIPE_DEFAULTS.metric_samples &&
    !(evaluates && TASK_METRICS[s.task].includes(metric))
  ) {
    problems.push(
      `metric_samples is how many validation rows score ${TASK_METRICS[s.task].join(" / ")} during ` +
        `training, and nothing tracks one (set metric_for_best_model to one of them with an eval_strategy, ` +
        `or remove metric_samples)`,
    );
  }
  if (problems.length) throw new RangeError(`Cannot run recipe (${file}): ${problems.join("; ")}`);
  const config = getTrainingArgs({
    output_dir: join("runs", s.name),
    ...training,
    // the recipe reads its own data and model: the training config's fields say what it used
    model: s.model ?? "debian-base",
    dataset: s.dataset,
    max_train_samples: s.max_train_samples, // (config.yaml had said null beside recipe.yaml's cap)
  } as Partial<TrainingConfig>, { file });
  // the fields given (config file, flags) are refused even at their defaults, as train and sft refuse them
  refuseUnreadFields(config, "recipe", `Cannot run recipe (${file})`, Object.keys(training));
  // what the Trainer would refuse (fp16, ...): here, before the data and the base model's pre-training
  const unsupported = unsupportedSettings(config);
  if (unsupported.length) throw new RangeError(`Cannot run recipe (${file}): ${unsupported.join("; ")}`);
  return { settings: s, training: config, flat: { ...flat, ...settings } };
}

/**
 * `runs/<name>`, or the first `runs/<name>-N` that does not exist, made (empty) so that no other
 * run takes it; a run that fails before writing into it removes it again ({@linkcode dropIfEmpty}).
 */
export async function freeRunDir(base: string): Promise<string> {
  await Deno.mkdir(dirname(base) || ".", { recursive: true });
  for (let n = 1;; n++) {
    const dir = n === 1 ? base : `${base}-${n}`;
    try {
      // made here, atomically: a run started at the same moment (a seed sweep) finds it taken
      await Deno.mkdir(dir);
      return dir;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

/** Remove `dir` when it is (still) empty: the folder {@linkcode freeRunDir} made for a run that failed. */
export async function dropIfEmpty(dir: string): Promise<void> {
  await Deno.remove(dir).catch(() => {}); // not empty, or gone: left as it is
}

/** The recipe's data (`data/task_data.ts`) from its settings. */
export async function recipeData(s: RecipeSettings, seed: number, evalSplit?: string): Promise<TaskData> {
  return await loadTaskData(s.task, {
    dataset: s.dataset,
    ...(evalSplit !== undefined ? { eval_split: evalSplit } : {}), // cli eval --split: another split scored
    // each as given: the data loader refuses one meant for another source
    ...(s.dataset_config ? { dataset_config: s.dataset_config } : {}),
    ...(s.debian_task ? { debian_task: s.debian_task } : {}),
    ...(s.level ? { level: s.level } : {}),
    ...(s.translation_direction ? { translation_direction: s.translation_direction } : {}),
    ...(s.source_column ? { source_column: s.source_column } : {}),
    ...(s.target_column ? { target_column: s.target_column } : {}),
    ...(s.label_names ? { label_names: s.label_names } : {}),
    ...(s.eval_file ? { eval_file: s.eval_file } : {}),
    ...(s.max_train_samples ? { max_train_samples: s.max_train_samples, seed } : {}),
  });
}

/** The model folder: the given folder / hub id, or the cached Debian base model. */
export async function recipeModelDir(
  s: RecipeSettings,
  backend: TrainingConfig["backend"],
  handle_signals = false,
): Promise<string> {
  if (s.model === null) return (await ensureBaseModel({ config: s.base_model, backend, handle_signals })).dir;
  const dir = await downloadModel(s.model);
  try {
    await Deno.stat(join(dir, "tokenizer.json"));
  } catch {
    throw new Deno.errors.NotFound(
      `Cannot run the ${s.name} recipe: --model ${s.model} has no tokenizer (${
        join(dir, "tokenizer.json")
      } is missing); give a folder with its tokenizer files`,
    );
  }
  return dir;
}

/** Load model and tokenizer from a folder. */
export async function loadRecipeModel(
  dir: string,
  backend: TrainingConfig["backend"],
): Promise<{ model: Transformer; tokenizer: Tokenizer; generation_config: GenerationConfig }> {
  const generation_config = await loadGenerationConfig(dir); // checked before the weights load
  const be = await createBackend(backend);
  return {
    model: await loadModel(dir, { backend: be }),
    tokenizer: await loadTokenizer(dir),
    generation_config,
  };
}

/** Prompt options from the settings (language names from the translation direction). */
export function promptOptions(s: RecipeSettings): PromptOptions {
  const [src, tgt] = (s.translation_direction ?? "en-de").split("-");
  return {
    style: s.prompt_style,
    max_source_tokens: s.max_source_tokens,
    source_lang: languageName(src),
    target_lang: languageName(tgt),
  };
}

/** Evaluation options from the settings. */
export function evalOptions(
  s: RecipeSettings,
  labels: readonly string[] | null,
  generation_config?: GenerationConfig,
): TaskEvalOptions {
  return {
    labels,
    prompt: promptOptions(s),
    batch_size: s.eval_batch_size,
    split_lines: s.split_lines,
    generation: {
      // the model folder's generation_config.json under the settings, as HF's generate reads it
      // (its eos_token_id list: Llama 3's turn end stops an answer)
      ...(generation_config ? { generation_config } : {}),
      max_new_tokens: s.max_new_tokens,
      num_beams: s.num_beams,
      length_penalty: s.length_penalty,
      early_stopping: s.early_stopping,
      no_repeat_ngram_size: s.no_repeat_ngram_size,
      repetition_penalty: s.repetition_penalty,
      max_len_a: s.max_len_a,
      max_len_b: s.max_len_b,
      do_sample: false,
    },
  };
}

/**
 * SFT rows (TRL prompt-completion, completion-only loss) of examples, padded one per row or
 * packed as the training config says.
 */
export function sftDataset(
  examples: readonly TaskExample[],
  s: RecipeSettings,
  c: TrainingConfig,
  tokenizer: Tokenizer,
  source: string,
): { dataset: RowDataset; truncated: number; tokens: number } {
  const rows = examples.map((e) => taskRow(s.task, e, tokenizer, promptOptions(s)));
  const built = buildSftExamples(rows, tokenizer, {
    max_length: c.packing ? null : c.max_seq_length, // packing cuts by its strategy (TRL)
    completion_only_loss: c.completion_only_loss ?? undefined,
    assistant_only_loss: c.assistant_only_loss,
    source,
  });
  const pad = tokenizer.pad_token_id ?? tokenizer.eos_token_id ?? 0;
  if (c.packing) refuseCutToNothing(built.examples, c.max_seq_length, c.packing_strategy);
  const packed = c.packing
    ? packExamples(built.examples, {
      max_length: c.max_seq_length,
      pad_token_id: pad,
      strategy: c.packing_strategy,
    })
    : padExamples(built.examples, { max_length: c.max_seq_length, pad_token_id: pad });
  const tokens = built.examples.reduce((a, e) => a + e.input_ids.length, 0);
  return {
    dataset: new RowDataset(packed.rows, { source }),
    truncated: c.packing ? packed.summary.truncated : built.truncated,
    tokens,
  };
}

/** The adapter of the machine the numbers come from, in words. */
export function machineName(model: Transformer): string {
  const cores = navigator.hardwareConcurrency;
  return `${model.backend.name}${
    model.backend.adapter ? ` on ${model.backend.adapter}` : ""
  }, ${cores} CPU cores`;
}

/** The first value of metric `name` the task reports, for summary lines. */
export const HEADLINE: Record<TaskKind, string> = {
  summarization: "rougeL",
  translation: "bleu",
  classification: "accuracy",
};

/** Names of task metrics the Trainer can track (metric_for_best_model). */
export const TASK_METRICS: Record<TaskKind, string[]> = {
  summarization: ["rouge1", "rouge2", "rougeL", "rougeLsum"],
  translation: ["bleu", "chrf", "chrf++", "bleu_debian"],
  classification: ["accuracy", "macro_f1"],
};

/** Flags of a recipe: every recipe and training field, read as JSON when it parses. */
export function recipeFlagNames(): string[] {
  return [...RECIPE_KEYS, ...TRAINING_CONFIG_KEYS].filter((k, i, a) => a.indexOf(k) === i);
}
