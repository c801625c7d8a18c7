/**
 * `TrainingConfig`: every knob of a training run, with the names of Hugging Face
 * `TrainingArguments`, TRL `SFTConfig`, PEFT `LoraConfig` and `BitsAndBytesConfig`, so a config
 * written for those tools reads here unchanged where fledge can honour it, and fails with the
 * reason and the fix where it cannot. Frozen defaults equal transformers' defaults (noted where
 * fledge differs); {@linkcode validateTrainingConfig} lists every problem at once; YAML and JSON
 * files load with {@linkcode loadTrainingConfig} and save with {@linkcode saveTrainingConfig};
 * presets, task recommendations and a memory planner build configs for you.
 *
 * ```yaml
 * model: gpt2-124m
 * dataset: data/train.jsonl
 * learning_rate: 2.0e-4
 * lr_scheduler_type: cosine
 * warmup_ratio: 0.03
 * per_device_train_batch_size: 4
 * gradient_accumulation_steps: 4
 * lora: {r: 16, lora_alpha: 32, target_modules: all-linear}
 * ```
 *
 * One schema, in groups (the fields stay flat, with the Hugging Face names; only `model_config`,
 * `lora`, `quantization` and `lr_scheduler_kwargs` are sections):
 * - model: `model` (a preset from `models/config.ts`: tiny, small, gpt2-124m, llama-1b-shape; a
 *   folder; a hub id), `model_config` (ModelConfig fields reshaping a preset), `tokenizer`;
 * - data: `dataset`, `dataset_text_field`, `max_train_samples`, `max_eval_samples`,
 *   `max_seq_length`, `packing`, `packing_strategy`, `completion_only_loss`, `assistant_only_loss`;
 * - training: every other `TrainingArguments` / TRL field (duration, batch, optimizer, schedule,
 *   logging, evaluation, checkpoints, precision `fp16`);
 * - lora: the `lora` section (PEFT `LoraConfig`); quantization: the `quantization` section
 *   (`BitsAndBytesConfig`, 4-bit);
 * - generation: not a training field: `deno task cli generate` flags and the model folder's
 *   `generation_config.json` (`models/generation_config.ts`);
 * - backend: `backend` (`auto`, `webgpu`, `cpu`).
 *
 * Presets: {@linkcode TRAINING_PRESETS} (`deno task cli config show-defaults --preset NAME`).
 * Configs of other tools (nanoGPT, LLMBuilder, the engine and backend seeds) load as they are, with
 * the mapping printed: see `training/legacy_config.ts`.
 * @module
 */
import { closest, isObject } from "../util/problems.ts";
import { type Estimate, estimate, guessShape, plan, type PlanOptions } from "./_config_memory.ts";
import {
  MODEL_SIZES,
  PRESET_NAMES,
  PRESET_PARTIALS,
  recommend,
  sizeClassOf,
  sizeShape,
  TASKS,
} from "./_config_recipes.ts";
import { unsupportedSettings, validateConfig } from "./_config_validate.ts";
import { DPO_ONLY_FIELDS, type RunKind, unreadFieldProblems } from "./_config_scope.ts";
import { configToYaml, readConfigFile, RESOLVED_CONFIG_HEADER } from "./_config_yaml.ts";
import { TOP_SPECS } from "./_config_schema.ts";
export { RESOLVED_CONFIG_HEADER };

/**
 * The fields that hold text (paths, names, columns): a command-line value of them that looks like a
 * number (`--output_dir 2024`) stays text, as argparse reads a flag by its field's type.
 */
export const TEXT_FIELDS: ReadonlySet<string> = new Set(
  Object.entries(TOP_SPECS).filter(([, s]) => s.kind === "string").map(([k]) => k),
);
import { isLegacyConfig, migrateLegacy } from "./_config_legacy.ts";
import type { LrSchedulerKwargs, LrSchedulerType } from "./schedule.ts";
import type { LoraConfig, QuantizationConfig, TrainingConfig } from "./config_types.ts";
import { writeFileAtomic } from "../util/atomic.ts";

export type { LrSchedulerKwargs, LrSchedulerType, RunKind };
export { unsupportedSettings };
export type {
  IntervalStrategy,
  LoraConfig,
  OptimizerName,
  QuantizationConfig,
  ReportTarget,
  SaveStrategy,
  TrainingConfig,
} from "./config_types.ts";

/** Every `TrainingConfig` key, in the order files are written. */
export const TRAINING_CONFIG_KEYS: readonly (keyof TrainingConfig)[] = Object.freeze(
  [
    "model",
    "model_config",
    "tokenizer",
    "dataset",
    "dataset_config",
    "dataset_revision",
    "dataset_train_split",
    "dataset_test_split",
    "dataset_text_field",
    "max_train_samples",
    "max_eval_samples",
    "backend",
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "allow_changed_data",
    "seed",
    "data_seed",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "packing",
    "packing_strategy",
    "completion_only_loss",
    "assistant_only_loss",
    ...DPO_ONLY_FIELDS, // max_prompt_length ... disable_dropout
    "optim",
    "learning_rate",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "skip_nonfinite_steps",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "warmup_ratio",
    "logging_strategy",
    "logging_steps",
    "logging_first_step",
    "report_to",
    "eval_strategy",
    "eval_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "load_best_model_at_end",
    "metric_for_best_model",
    "greater_is_better",
    "early_stopping_patience",
    "early_stopping_threshold",
    "gradient_checkpointing",
    "neftune_noise_alpha",
    "label_smoothing_factor",
    "bf16",
    "fp16",
    "lora",
    "quantization",
    "merge_adapter",
  ] as const,
);

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** PEFT `LoraConfig` defaults (used for the keys a `lora` section leaves out). */
export const DEFAULT_LORA_CONFIG: Readonly<LoraConfig> = deepFreeze({
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0.0,
  target_modules: null,
  bias: "none",
  use_dora: false,
  use_rslora: false,
  modules_to_save: null,
  init_lora_weights: true,
  task_type: null,
});

/** 4-bit defaults (used for the keys a `quantization` section leaves out); see {@linkcode QuantizationConfig}. */
export const DEFAULT_QUANTIZATION_CONFIG: Readonly<QuantizationConfig> = deepFreeze({
  load_in_4bit: false,
  bnb_4bit_quant_type: "nf4",
  bnb_4bit_compute_dtype: "float32",
  bnb_4bit_use_double_quant: false,
});

/** The defaults: transformers `TrainingArguments` / TRL `SFTConfig` values where they have one. */
export const DEFAULT_TRAINING_CONFIG: Readonly<TrainingConfig> = deepFreeze({
  model: null,
  model_config: null,
  tokenizer: null,
  dataset: null,
  dataset_config: null,
  dataset_revision: null,
  dataset_train_split: "train",
  dataset_test_split: null,
  dataset_text_field: "text",
  max_train_samples: null,
  max_eval_samples: null,
  backend: "auto",
  output_dir: "trainer_output",
  overwrite_output_dir: false,
  resume_from_checkpoint: null,
  allow_changed_data: false,
  seed: 42,
  data_seed: null,
  num_train_epochs: 3.0,
  max_steps: -1,
  per_device_train_batch_size: 8,
  per_device_eval_batch_size: 8,
  gradient_accumulation_steps: 1,
  max_seq_length: 1024,
  packing: false,
  packing_strategy: "bfd",
  completion_only_loss: null,
  assistant_only_loss: false,
  max_prompt_length: 512,
  beta: 0.1,
  loss_type: "sigmoid",
  label_smoothing: 0.0,
  precompute_ref_log_probs: false,
  disable_dropout: true,
  optim: "adamw",
  learning_rate: 5e-5,
  weight_decay: 0.0,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_epsilon: 1e-8,
  max_grad_norm: 1.0,
  skip_nonfinite_steps: false,
  lr_scheduler_type: "linear",
  lr_scheduler_kwargs: {},
  warmup_steps: 0,
  warmup_ratio: 0.0,
  logging_strategy: "steps",
  logging_steps: 500,
  logging_first_step: false,
  report_to: ["jsonl"],
  eval_strategy: "no",
  eval_steps: null,
  save_strategy: "steps",
  save_steps: 500,
  save_total_limit: null,
  load_best_model_at_end: false,
  metric_for_best_model: null,
  greater_is_better: null,
  early_stopping_patience: null,
  early_stopping_threshold: 0.0,
  gradient_checkpointing: false,
  neftune_noise_alpha: null,
  label_smoothing_factor: 0,
  bf16: false,
  fp16: false,
  lora: null,
  quantization: null,
  merge_adapter: false,
});

/** Options of {@linkcode validateTrainingConfig} and {@linkcode loadTrainingConfig}. */
export interface ValidateOptions {
  /** Where the object came from, named in every message (a file path, "cli", ...). */
  file?: string;
  /** Receives one line per deprecation or alias note (default: `console.warn`, i.e. stderr). */
  warn?: (line: string) => void;
  /**
   * Defaults for the keys the object leaves out, over {@linkcode DEFAULT_TRAINING_CONFIG} (e.g.
   * TRL's `SFTConfig` defaults for `cli sft`); what the object sets always wins.
   */
  defaults?: Partial<TrainingConfig>;
}

function resolve(
  obj: unknown,
  file: string,
  warn?: (line: string) => void,
  line?: (k: string) => number | undefined,
  defaults?: Partial<TrainingConfig>,
) {
  return validateConfig(obj, {
    file,
    warn: warn ?? ((l) => console.warn(l)),
    line,
    defaults: defaults ? { ...DEFAULT_TRAINING_CONFIG, ...defaults } : DEFAULT_TRAINING_CONFIG,
    loraDefaults: DEFAULT_LORA_CONFIG,
    quantDefaults: DEFAULT_QUANTIZATION_CONFIG,
  });
}

/**
 * Check an untrusted object (parsed YAML/JSON, CLI flags, code) and return a complete, fresh
 * {@linkcode TrainingConfig}: missing keys take the defaults (a `lora: {}` section takes PEFT's),
 * `metric_for_best_model` becomes `loss` when something needs a metric, `greater_is_better`
 * follows the metric name, `report_to` becomes a list. Legacy names (`evaluation_strategy`,
 * `max_seq_len`, `per_gpu_*_batch_size`) and aliases (`max_length`, `block_size`) are renamed with
 * one warning line each. Every problem is listed in one error, each with the file, key path and fix:
 * unknown keys (with "did you mean"; names from MLX-LM such as `lr` or `iters` are never taken
 * silently), wrong types, out-of-range values, scheduler kwargs the scheduler does not take, and
 * cross-field rules (eval_steps for `eval_strategy: steps`, save_steps a multiple of eval_steps
 * with `load_best_model_at_end`, bf16 on WebGPU, 4-bit without LoRA, ...).
 * @param obj the candidate config
 * @param opts `file`: named in messages (default `<config>`); `warn`: sink for deprecation lines
 * @returns a complete config
 * @throws {TypeError} when a key is unknown or a value has the wrong type (the message lists range problems too)
 * @throws {RangeError} when values are well typed but out of range or inconsistent
 * @example
 * ```ts
 * import { validateTrainingConfig } from "./config.ts";
 * const c = validateTrainingConfig({ learning_rate: 1e-4, lora: { r: 16 } }, { file: "train.yaml" });
 * if (c.lora?.lora_alpha !== 8 || c.seed !== 42) throw new Error("defaults");
 * try {
 *   validateTrainingConfig({ lr: 1e-4, warmup_ratio: 2 }, { file: "train.yaml" });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof TypeError) || !/2 problems/.test(e.message)) throw e;
 *   if (!e.message.includes("did you mean learning_rate?")) throw e;
 * }
 * ```
 */
export function validateTrainingConfig(obj: unknown, opts: ValidateOptions = {}): TrainingConfig {
  return resolve(obj, opts.file ?? "<config>", opts.warn, undefined, opts.defaults);
}

/**
 * Read and validate a config file: YAML (`.yaml`, `.yml`) or JSON (`.json`), chosen by extension.
 * Validation messages carry `file:line` for YAML keys. Another tool's config (nanoGPT, LLMBuilder,
 * the engine and backend seeds: see `training/legacy_config.ts`) is read as it is, with one line
 * per key of the mapping sent to `warn`; an unknown key of it is an error naming it.
 * @param path the file
 * @param opts `warn`: sink for deprecation lines (default stderr)
 * @returns the validated config
 * @throws {SyntaxError} for an unknown extension or bad YAML/JSON (every YAML error as `file:line:col`)
 * @throws {Deno.errors.NotFound} when there is no file at `path`
 * @throws {TypeError} / {RangeError} as {@linkcode validateTrainingConfig}
 * @example
 * ```ts
 * import { loadTrainingConfig } from "./config.ts";
 * const path = await Deno.makeTempFile({ suffix: ".yaml" });
 * await Deno.writeTextFile(path, "learning_rate: 3.0e-4\nlora: {r: 4}\n");
 * const c = await loadTrainingConfig(path);
 * if (c.learning_rate !== 3e-4 || c.lora?.r !== 4) throw new Error("read");
 * await Deno.remove(path);
 * ```
 */
export async function loadTrainingConfig(
  path: string,
  opts: { warn?: (line: string) => void; defaults?: Partial<TrainingConfig> } = {},
): Promise<TrainingConfig> {
  const parsed = await readConfigFile(path);
  let value = parsed.value;
  if (isLegacyConfig(value)) {
    const m = migrateLegacy(value as Record<string, unknown>, { file: path, line: parsed.line });
    const warn = opts.warn ?? ((l: string) => console.warn(l));
    warn(
      `Note: ${path} is a ${m.formats.join(" + ")} config, read as a TrainingConfig ` +
        `(write it in fledge's names with \`deno task cli config migrate ${path}\`):`,
    );
    for (const l of m.mapping) warn(`  ${l}`);
    value = m.config;
  }
  return resolve(value, path, opts.warn, parsed.line, opts.defaults);
}

/**
 * The YAML text {@linkcode saveTrainingConfig} writes: every field, in
 * {@linkcode TRAINING_CONFIG_KEYS} order, after validation.
 * @param config a config (validated again here)
 * @returns YAML text starting with a one-line comment
 * @throws {TypeError} / {RangeError} as {@linkcode validateTrainingConfig}
 * @example
 * ```ts
 * import { getTrainingArgs, trainingConfigToYaml } from "./config.ts";
 * const text = trainingConfigToYaml(getTrainingArgs({ learning_rate: 1e-4 }));
 * if (!text.includes("learning_rate: 0.0001\n") || text.indexOf("model:") > text.indexOf("seed:")) throw new Error();
 * ```
 */
export function trainingConfigToYaml(config: TrainingConfig): string {
  const c = resolve(config, "trainingConfigToYaml(config)");
  return configToYaml(c as unknown as Record<string, unknown>);
}

/**
 * Write a config as YAML atomically (a temporary file in the same folder, then a rename), so a
 * reader never sees half a file. The folder must exist.
 * @param config the config (validated first: a bad one is never written)
 * @param path destination, e.g. `runs/x/config.yaml`
 * @throws {TypeError} / {RangeError} as {@linkcode validateTrainingConfig}; file system errors as they come
 * @example
 * ```ts
 * import { getTrainingArgs, loadTrainingConfig, saveTrainingConfig } from "./config.ts";
 * const dir = await Deno.makeTempDir();
 * const c = getTrainingArgs({ lora: { r: 16, target_modules: ["q_proj", "v_proj"] } });
 * await saveTrainingConfig(c, `${dir}/config.yaml`);
 * const back = await loadTrainingConfig(`${dir}/config.yaml`);
 * if (JSON.stringify(back) !== JSON.stringify(c)) throw new Error("round trip");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveTrainingConfig(config: TrainingConfig, path: string): Promise<void> {
  await writeFileAtomic(path, trainingConfigToYaml(config));
}

/**
 * The defaults with `overrides` applied, validated (the TypeScript spelling of building
 * `TrainingArguments(**overrides)`). A `lora` or `quantization` override may be partial.
 * @param overrides fields to change (unknown keys are errors)
 * @param opts `file`: named in messages (default `getTrainingArgs(overrides)`); `warn` as {@linkcode validateTrainingConfig}
 * @returns a complete config
 * @throws {TypeError} / {RangeError} as {@linkcode validateTrainingConfig}
 * @example
 * ```ts
 * import { getTrainingArgs } from "./config.ts";
 * const c = getTrainingArgs({ max_steps: 100, eval_strategy: "steps", eval_steps: 20 });
 * if (c.max_steps !== 100 || c.learning_rate !== 5e-5 || c.eval_steps !== 20) throw new Error();
 * ```
 */
export function getTrainingArgs(
  overrides: Partial<TrainingConfig> | Record<string, unknown> = {},
  opts: ValidateOptions = {},
): TrainingConfig {
  return resolve({ ...overrides }, opts.file ?? "getTrainingArgs(overrides)", opts.warn);
}

/**
 * Refuse the fields a kind of run would ignore: DPO settings (`beta`, `loss_type`, ...) in SFT
 * (`cli train`) or a recipe, SFT settings (`packing`, `completion_only_loss`, ...) in DPO, and
 * `tokenizer` / `dataset_text_field` in a recipe, which reads its model's tokenizer and its own
 * columns. One config type holds both trainers' fields (TRL's `SFTConfig` and `DPOConfig` refuse
 * most of the other's as unknown arguments); a field at its default changes nothing and passes,
 * unless `given` names it (a file or a flag spelt it out, as TRL's refusal would). The run entry
 * points call this before reading any data or weights, and the commands with the fields given.
 * @param subject the start of the message, e.g. `Cannot train with DPO`
 * @param given the fields the user wrote (a config file's keys, the flags)
 * @throws {RangeError} one line naming each such field, its value and the fix
 * @example
 * ```ts
 * import { getTrainingArgs, refuseUnreadFields } from "./config.ts";
 * refuseUnreadFields(getTrainingArgs({ beta: 0.5 }), "dpo", "Cannot train"); // DPO reads beta
 * let msg = "";
 * try {
 *   refuseUnreadFields(getTrainingArgs({ beta: 0.5 }), "sft", "Cannot train");
 * } catch (e) {
 *   msg = (e as Error).message;
 * }
 * if (msg !== "Cannot train: beta 0.5 is a DPO setting; remove it, or train with deno task cli dpo") throw new Error(msg);
 * ```
 */
export function refuseUnreadFields(
  config: TrainingConfig,
  kind: RunKind,
  subject: string,
  given: Iterable<string> = [],
): void {
  const problems = unreadFieldProblems(config, kind, DEFAULT_TRAINING_CONFIG, new Set(given));
  if (problems.length) throw new RangeError(`${subject}: ${problems.join("; ")}`);
}

/**
 * `overrides` over `base`, as a command line's flags go over a config file: an override that sets
 * the length of training one way (`max_steps` > 0, or `num_train_epochs`) and not the other drops
 * the base's other one, so the override is what runs (not refused as a conflict, nor losing to
 * the file's `max_steps` as in HF, where `max_steps` wins over `num_train_epochs`); another
 * `metric_for_best_model` drops the base's `greater_is_better` (derived again), another
 * `lr_scheduler_type` the base's `lr_scheduler_kwargs` (the old schedule's); a section given in
 * part (`lora`, `quantization`, `lr_scheduler_kwargs`, `model_config`) changes only its fields.
 * @example
 * ```ts
 * import { overrideConfig } from "./config.ts";
 * const c: Record<string, unknown> = overrideConfig({ max_steps: 120, learning_rate: 1e-3 }, { num_train_epochs: 1 });
 * if ("max_steps" in c || c.num_train_epochs !== 1) throw new Error(JSON.stringify(c));
 * ```
 */
export function overrideConfig<T extends object>(base: T, overrides: Record<string, unknown>): T {
  const out = { ...base } as Record<string, unknown>;
  const given = (k: string) => overrides[k] !== undefined;
  const steps = typeof overrides.max_steps === "number" && overrides.max_steps > 0;
  if (steps && !given("num_train_epochs")) delete out.num_train_epochs;
  if (given("num_train_epochs") && !given("max_steps")) delete out.max_steps;
  // another metric: its direction is derived again (the base's was the old metric's)
  if (given("metric_for_best_model") && !given("greater_is_better")) delete out.greater_is_better;
  // another schedule: the base's kwargs were the old one's (num_decay_steps of warmup_stable_decay)
  if (
    given("lr_scheduler_type") && overrides.lr_scheduler_type !== out.lr_scheduler_type &&
    !given("lr_scheduler_kwargs")
  ) {
    delete out.lr_scheduler_kwargs;
  }
  const merged = { ...out, ...overrides };
  // a section given in part (`--lora '{"r": 2}'`) changes those fields of the base's section
  for (const k of ["lora", "quantization", "lr_scheduler_kwargs", "model_config"]) {
    // ({} for the kwargs clears them: a schedule's kwargs, unlike lora's fields, have no defaults to keep)
    const clear = k === "lr_scheduler_kwargs" && isObject(overrides[k]) && !Object.keys(overrides[k]).length;
    if (isObject(out[k]) && isObject(overrides[k]) && !clear) merged[k] = { ...out[k], ...overrides[k] };
  }
  return merged as T;
}

/** Names of {@linkcode TRAINING_PRESETS}. */
export type TrainingPresetName = "debug" | "sft-full" | "sft-lora" | "qlora" | "pretrain";
// The unions below are spelled out for the docs; this keeps each equal to the list the code walks.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const _unionsMatch: [
  Same<TrainingPresetName, typeof PRESET_NAMES[number]>,
  Same<RecommendedTask, typeof TASKS[number]>,
  Same<ModelSize, keyof typeof MODEL_SIZES>,
] = [true, true, true];

/**
 * Ready configs: `debug` (tiny model, 20 steps), `sft-full` (TRL-style full fine-tuning),
 * `sft-lora` (LoRA r 16 on all linear layers, lr 2e-4), `qlora` (that plus NF4 base weights with
 * double quantization, grad clip 0.3 as in the QLoRA paper), `pretrain` (cosine to lr / 10, AdamW
 * beta2 0.95, weight decay 0.1, packing). Frozen; {@linkcode getTrainingPreset} gives a mutable copy.
 */
export const TRAINING_PRESETS: Readonly<Record<TrainingPresetName, Readonly<TrainingConfig>>> = deepFreeze(
  Object.fromEntries(
    PRESET_NAMES.map((n) => [n, resolve(PRESET_PARTIALS[n], `TRAINING_PRESETS.${n}`)]),
  ) as Record<TrainingPresetName, TrainingConfig>,
);

/**
 * A preset with overrides, validated. Overrides of `lora`, `quantization` and
 * `lr_scheduler_kwargs` merge into the preset's section (null removes it).
 * @param name a {@linkcode TrainingPresetName}
 * @param overrides fields to change
 * @returns a fresh config
 * @throws {RangeError} for an unknown preset name (with the closest one); the errors of {@linkcode validateTrainingConfig}
 * @example
 * ```ts
 * import { getTrainingPreset } from "./config.ts";
 * const c = getTrainingPreset("qlora", { lora: { r: 64 }, dataset: "data/chat.jsonl" });
 * if (c.lora?.r !== 64 || c.lora.lora_alpha !== 32 || !c.quantization?.load_in_4bit) throw new Error();
 * ```
 */
export function getTrainingPreset(
  name: TrainingPresetName,
  overrides: Partial<TrainingConfig> | Record<string, unknown> = {},
): TrainingConfig {
  if (!(PRESET_NAMES as readonly string[]).includes(name)) {
    const hint = closest(String(name), PRESET_NAMES);
    throw new RangeError(
      `Unknown training preset: ${JSON.stringify(name)}${hint ? `; did you mean "${hint}"?` : ""} ` +
        `(presets: ${PRESET_NAMES.join(", ")})`,
    );
  }
  const base = structuredClone(TRAINING_PRESETS[name]) as unknown as Record<string, unknown>;
  const o = overrides as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...base, ...o };
  for (const k of ["lora", "quantization", "lr_scheduler_kwargs"]) {
    const b = base[k], v = o[k];
    if (b && typeof b === "object" && v && typeof v === "object" && !Array.isArray(v)) {
      merged[k] = { ...b, ...v };
    }
  }
  return resolve(merged, `getTrainingPreset("${name}")`);
}

/** Tasks of {@linkcode getRecommendedConfig}. */
export type RecommendedTask = "summarization" | "translation" | "classification" | "pretraining";
/** Size classes: `tiny` (~0.5M parameters), `small` (~14M), `medium` (~124M), `large` (~1.2B). */
export type ModelSize = "tiny" | "small" | "medium" | "large";

/**
 * A config recommended for a task and model size: SFT-style fine-tuning for summarization (1024
 * tokens), translation (256) and classification (128, linear decay, 10% warmup, best checkpoint
 * and early stopping by eval_loss), or pretraining (cosine to lr / 10, `wrapped` packing). Large
 * models get LoRA; sequence lengths are capped at the size's model preset's positions (128 for
 * `tiny`). With `memory_gb`, {@linkcode getMemoryOptimizedConfig} then fits it to that memory
 * (for pretraining without switching to adapters: every weight trains).
 *
 * The result runs as it is: `createTrainer` accepts it (no fp16, fp4 or float16 compute, a
 * best-model metric the Trainer computes); evaluation and epoch checkpoints need an eval dataset.
 * @param task the task
 * @param opts `model_size`: a size class or a parameter count (default `small`); `memory_gb`: memory to fit
 * @returns a validated config whose `model` is the size's model preset (replace it with your checkpoint)
 * @throws {RangeError} for an unknown task or size, or a non-positive parameter count / memory
 * @example
 * ```ts
 * import { getRecommendedConfig } from "./config.ts";
 * const c = getRecommendedConfig("classification", { model_size: "medium" });
 * if (c.metric_for_best_model !== "eval_loss" || c.greater_is_better !== false) throw new Error();
 * if (getRecommendedConfig("summarization", { model_size: "tiny" }).max_seq_length !== 128) throw new Error();
 * const big = getRecommendedConfig("summarization", { model_size: 1.2e9, memory_gb: 8 });
 * if (!big.lora || !big.gradient_checkpointing || big.fp16) throw new Error("LoRA and checkpointing for 1.2B in 8 GiB");
 * ```
 */
export function getRecommendedConfig(
  task: RecommendedTask,
  opts: { model_size?: ModelSize | number; memory_gb?: number } = {},
): TrainingConfig {
  if (!(TASKS as readonly string[]).includes(task)) {
    const hint = closest(String(task), TASKS);
    throw new RangeError(
      `Cannot recommend a config: unknown task ${JSON.stringify(task)}${
        hint ? `; did you mean "${hint}"?` : ""
      } ` +
        `(tasks: ${TASKS.join(", ")})`,
    );
  }
  const size = opts.model_size ?? "small";
  let params: number;
  if (typeof size === "number") {
    if (!(Number.isFinite(size) && size > 0)) {
      throw new RangeError(
        `Cannot recommend a config: model_size must be a positive parameter count, got ${size}`,
      );
    }
    params = size;
  } else if (Object.hasOwn(MODEL_SIZES, size)) {
    params = MODEL_SIZES[size].params;
  } else {
    throw new RangeError(
      `Cannot recommend a config: unknown model_size ${JSON.stringify(size)}; use ${
        Object.keys(MODEL_SIZES).join(", ")
      } or a parameter count`,
    );
  }
  const cls = typeof size === "number" ? sizeClassOf(size) : size;
  const config = resolve(recommend(task, cls), `getRecommendedConfig("${task}")`);
  if (opts.memory_gb === undefined) return config;
  // A size class names a model preset: plan with its shape; a parameter count has its shape guessed.
  const shape = typeof size === "number" ? {} : sizeShape(size);
  const planOpts = { adapters: task !== "pretraining" };
  return optimize(config, { memory_gb: opts.memory_gb, params, ...shape }, planOpts).config;
}

/** Estimated memory of a config, in GiB (2^30 bytes); see {@linkcode getMemoryOptimizedConfig}. */
export type MemoryEstimate = Estimate;

/** The result of {@linkcode getMemoryOptimizedConfig}. */
export interface MemoryPlan {
  /** The adjusted, validated config. */
  config: TrainingConfig;
  /** One sentence per decision, with the numbers behind it, in the order taken. */
  rationale: string[];
  /** The estimate for `config`; `fits` is false when no change could make it fit. */
  estimate: MemoryEstimate;
}

/** Options of {@linkcode getMemoryOptimizedConfig}. */
export interface MemoryPlanOptions {
  /** Device memory in GiB. */
  memory_gb: number;
  /** Model parameters. */
  params: number;
  /** Tokens per sequence (default the config's `max_seq_length`). */
  seq_len?: number;
  /** Model width (default guessed from `params`). */
  hidden_size?: number;
  /** Decoder blocks (default guessed from `params`). */
  num_hidden_layers?: number;
  /** Vocabulary (default 50257). */
  vocab_size?: number;
  /** `dpo`: two sequences per pair, and a frozen copy of the weights for full fine-tuning (default `sft`). */
  trainer?: "sft" | "dpo";
}

/**
 * Fit a config into `memory_gb` (90% of it, leaving room for the allocator and kernels' scratch).
 * First, settings the Trainer refuses are replaced by what it runs (fp16 -> false, fp4 -> nf4,
 * float16 compute -> float32), each with a reason, so the plan always runs as it is. Then it tries
 * in order: LoRA instead of full fine-tuning (r 16, alpha 32, all linear layers; lr raised
 * to 2e-4 when it was at full-fine-tuning levels), 4-bit NF4 base weights (QLoRA), gradient
 * checkpointing, then a smaller micro-batch with more accumulation steps keeping the effective
 * batch exactly. Each step is taken only when still needed. The memory model is first order
 * (weights, gradients, AdamW moments, activations after Korthikanti et al. 2022 with fused
 * attention, logits); pass the model's shape for a better estimate than the one guessed from `params`.
 * To measure a run rather than estimate it, see `memoryReport` (`training/memory.ts`).
 * @param config the config to adjust (not modified)
 * @param opts `memory_gb`: device memory; `params`: model parameters; `seq_len`: tokens per
 *   sequence (default `max_seq_length`); `hidden_size`, `num_hidden_layers`, `vocab_size` (default 50257);
 *   `trainer`: `dpo` plans chosen and rejected rows, and full fine-tuning's frozen reference copy
 * @returns the adjusted config, the rationale and the estimate
 * @throws {RangeError} for a non-positive `memory_gb`, `params` or `seq_len`; the errors of {@linkcode validateTrainingConfig}
 * @example
 * ```ts
 * import { getMemoryOptimizedConfig, getTrainingArgs } from "./config.ts";
 * const c = getTrainingArgs({ per_device_train_batch_size: 32, gradient_accumulation_steps: 1 });
 * const p = getMemoryOptimizedConfig(c, { memory_gb: 4, params: 124e6, seq_len: 1024 });
 * const { per_device_train_batch_size: b, gradient_accumulation_steps: g } = p.config;
 * if (b * g !== 32 || b >= 32 || !p.config.gradient_checkpointing || !p.estimate.fits) throw new Error();
 * const f = getMemoryOptimizedConfig(getTrainingArgs({ fp16: true }), { memory_gb: 80, params: 14e6 });
 * if (f.config.fp16 || !f.rationale[0].startsWith("fp16 -> false")) throw new Error("the Trainer refuses fp16");
 * ```
 */
export function getMemoryOptimizedConfig(config: TrainingConfig, opts: MemoryPlanOptions): MemoryPlan {
  return optimize(config, opts, {});
}

function optimize(config: TrainingConfig, opts: MemoryPlanOptions, planOpts: PlanOptions): MemoryPlan {
  const c = resolve(config, "getMemoryOptimizedConfig(config)");
  const seq = opts.seq_len ?? c.max_seq_length;
  const positive: [string, number | undefined][] = [
    ["memory_gb", opts.memory_gb],
    ["params", opts.params],
    ["seq_len", seq],
    ["hidden_size", opts.hidden_size],
    ["num_hidden_layers", opts.num_hidden_layers],
    ["vocab_size", opts.vocab_size],
  ];
  const badOpts = positive.filter(([, v]) => v !== undefined && !(Number.isFinite(v) && v > 0));
  if (opts.trainer !== undefined && opts.trainer !== "sft" && opts.trainer !== "dpo") {
    throw new RangeError(
      `Cannot plan memory: trainer must be "sft" or "dpo", got ${JSON.stringify(opts.trainer)}`,
    );
  }
  if (badOpts.length > 0) {
    throw new RangeError(
      `Cannot plan memory: ${badOpts.map(([k, v]) => `${k} must be a positive number, got ${v}`).join("; ")}`,
    );
  }
  const shape = guessShape(opts.params, opts);
  const rationale = plan(c, shape, opts.memory_gb, seq, planOpts);
  const out = resolve(c, "getMemoryOptimizedConfig(config)");
  return { config: out, rationale, estimate: estimate(out, shape, opts.memory_gb, seq) };
}
