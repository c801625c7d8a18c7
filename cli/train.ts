/**
 * `fledge train`: train from a YAML/JSON {@linkcode TrainingConfig} plus `--<field> value`
 * overrides with the Hugging Face names. A `model` that names a preset (`tiny`, `small`, ...)
 * starts from scratch (seeded by `seed`) with a byte-level BPE tokenizer trained on the training
 * documents; a folder or hub id loads the checkpoint and its tokenizer. The dataset is a file or
 * folder ({@linkcode readTextDocuments}); with evaluation on, a folder's `validation` split or else
 * 10% of the documents (by hash) is held out.
 *
 * Every input error is thrown as a one-line `TypeError` / `RangeError` / `SyntaxError` (or
 * `Deno.errors.NotFound` / `PermissionDenied` for paths) before training starts; the CLI prints it
 * and exits with code 2.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createBackend } from "../kernels/backend.ts";
import { trainBpeTokenizer } from "../models/tokenizer/bpe.ts";
import { fromHfConfig, type ModelConfig, type PresetName, PRESETS } from "../models/config.ts";
import { snapshotDownload } from "../models/hub/hub.ts";
import { loadModel } from "../models/pretrained.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { Transformer } from "../models/transformer.ts";
import { findSplitFiles } from "../data/readers.ts";
import { buildTextDatasets, readTextDocuments, type TextDataset } from "../data/text_dataset.ts";
import { closest } from "../training/_config_check.ts";
import {
  loadTrainingConfig,
  TRAINING_CONFIG_KEYS,
  type TrainingConfig,
  validateTrainingConfig,
} from "../training/config.ts";
import { createTrainer, type TrainResult } from "../training/trainer.ts";

/** Usage text of `train`. */
export const TRAIN_USAGE = `deno task cli train --config run.yaml [--<field> value ...]

Trains the model named by the config's \`model\` (a preset such as tiny, a folder or a hub id) on
its \`dataset\` (a .jsonl/.json/.csv/.txt/.parquet file or a folder) and writes output_dir:
config.yaml, metrics.jsonl, checkpoints/step-N/, model/, report.md, curves.svg.

Any TrainingConfig field can be given or overridden as a flag with its Hugging Face name, the value
read as JSON when it parses (numbers, true/false, null, {...}) and as text otherwise:
  --learning_rate 3e-4 --max_steps 200 --block_size 128 --output_dir runs/x
  --resume_from_checkpoint true       resume from the latest checkpoint in output_dir
  --lora '{"r": 16}'`;

const ALIASES: Record<string, keyof TrainingConfig> = {
  block_size: "max_seq_length",
  max_length: "max_seq_length",
};

function oneLine(e: unknown): unknown {
  if (e instanceof Error && e.message.includes("\n")) {
    e.message = e.message.split("\n").map((s) => s.trim()).filter(Boolean).join(" ");
  }
  return e;
}

function parseValue(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/** Parse the flags into the config file path and the overrides (HF names). */
function parseFlags(args: string[]): { help: boolean; config?: string; overrides: Record<string, unknown> } {
  const fields = [...TRAINING_CONFIG_KEYS, ...Object.keys(ALIASES)];
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    config: { type: "string", short: "c" },
    help: { type: "boolean", short: "h" },
  };
  for (const k of fields) options[k] = { type: "string" };
  // `--learning_rate -2` means the value -2 (parseArgs would read it as an option).
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i], next = args[i + 1];
    if (/^--[^=]+$/.test(a) && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(`${a}=${next}`);
      i++;
    } else joined.push(a);
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: joined, options, allowPositionals: false, strict: true })
      .values as typeof values;
  } catch (e) {
    const flag = /'(--?[^' ]+)/.exec((e as Error).message)?.[1]?.replace(/^-+/, "");
    const hint = flag ? closest(flag, ["config", ...fields]) : undefined;
    throw new TypeError(
      `train: ${(e as Error).message.split("\n")[0]}${hint ? `; did you mean --${hint}?` : ""} ` +
        `(see \`deno task cli train --help\`)`,
    );
  }
  const overrides: Record<string, unknown> = {};
  for (const k of fields) {
    const v = values[k];
    if (typeof v === "string") overrides[ALIASES[k] ?? k] = parseValue(v);
  }
  return { help: values.help === true, config: values.config as string | undefined, overrides };
}

/**
 * Resolve the config of a `train` invocation: the file (when given) with the flag overrides
 * applied, validated.
 * @param args command-line arguments after `train`
 * @returns the config, or null for `--help`
 * @throws {TypeError} / {RangeError} / {SyntaxError} with a one-line message
 * @example
 * ```ts
 * import { trainConfigFromArgs } from "./train.ts";
 * const c = await trainConfigFromArgs(["--model", "tiny", "--block_size", "64", "--learning_rate", "3e-4"]);
 * if (c?.max_seq_length !== 64 || c.learning_rate !== 3e-4) throw new Error("flags");
 * try {
 *   await trainConfigFromArgs(["--learning_rate", "-1"]);
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof RangeError) || e.message.includes("\n")) throw e;
 * }
 * ```
 */
export async function trainConfigFromArgs(args: string[]): Promise<TrainingConfig | null> {
  try {
    const { help, config, overrides } = parseFlags(args);
    if (help) return null;
    if (!config && !Object.keys(overrides).length) {
      throw new TypeError("train: give --config run.yaml and/or --<field> value flags (see --help)");
    }
    const base = config ? await loadTrainingConfig(config) : {};
    if (!Object.keys(overrides).length) return base as TrainingConfig;
    return validateTrainingConfig({ ...base, ...overrides }, {
      file: config ? `${config} + command-line flags` : "command-line flags",
    });
  } catch (e) {
    throw oneLine(e);
  }
}

function isPreset(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

async function modelDir(id: string): Promise<string> {
  return await snapshotDownload(id, {
    allow_patterns: [
      "config.json",
      "*.safetensors",
      "*.safetensors.index.json",
      "tokenizer*",
      "special_tokens_map.json",
    ],
  });
}

/** Options of {@linkcode runTraining}. */
export interface RunTrainingOptions {
  /** Progress line on stderr (default true). */
  progress?: boolean;
}

/**
 * Build everything a config names (backend, model, tokenizer, datasets) and train.
 * @param config a validated config with `model` and `dataset` set
 * @param opts `progress`
 * @returns the train result
 * @throws {RangeError} when `model` or `dataset` is unset, `max_seq_length` exceeds the model's
 *   `max_position_embeddings` (naming both), or the dataset is empty or shorter than one block (naming the file)
 */
export async function runTraining(
  config: TrainingConfig,
  opts: RunTrainingOptions = {},
): Promise<TrainResult> {
  const missing = (["model", "dataset"] as const).filter((k) => !config[k]);
  if (missing.length) {
    throw new RangeError(
      `Cannot train: ${
        missing.join(" and ")
      } not set; set model (a preset such as tiny, a folder or a hub id) ` +
        `and dataset (a file or folder) in the config or as --model / --dataset`,
    );
  }
  const name = config.model!, data = config.dataset!;
  // The model's shape first: a too-long block is an error before any data or weights are read.
  let mc: ModelConfig, dir: string | null = null;
  if (isPreset(name)) mc = { ...PRESETS[name] };
  else {
    dir = await modelDir(name);
    mc = fromHfConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)), {
      file: `${dir}/config.json`,
    });
  }
  const T = config.max_seq_length;
  if (T > mc.max_position_embeddings) {
    throw new RangeError(
      `Cannot train ${name}: block_size (max_seq_length) ${T} exceeds the model's max_position_embeddings ` +
        `${mc.max_position_embeddings}; set block_size <= ${mc.max_position_embeddings}`,
    );
  }
  const wantsEval = config.eval_strategy !== "no";
  const field = config.dataset_text_field;
  const cap = (docs: string[], n: number | null) => (n === null ? docs : docs.slice(0, n));
  const trainDocs = cap(
    await readTextDocuments(data, { dataset_text_field: field }),
    config.max_train_samples,
  );
  let validDocs: string[] | null = null;
  try {
    if (wantsEval && (await Deno.stat(data)).isDirectory && findSplitFiles(data).validation) {
      validDocs = cap(
        await readTextDocuments(data, { dataset_text_field: field, split: "validation" }),
        config.max_eval_samples,
      );
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!trainDocs.length) {
    throw new RangeError(`Cannot train: dataset ${data} is empty (no "${field}" text); add documents`);
  }

  let tokenizer: Tokenizer;
  if (config.tokenizer) tokenizer = await loadTokenizer(await modelDir(config.tokenizer));
  else if (dir) tokenizer = await loadTokenizer(dir);
  else {
    tokenizer = await trainBpeTokenizer(trainDocs, {
      vocab_size: mc.vocab_size,
      special_tokens: ["<|endoftext|>"],
      model_max_length: mc.max_position_embeddings,
    });
  }
  const build = (docs: string[], split: number) =>
    buildTextDatasets(docs, { tokenizer, block_size: T, train_split: split, source: data });
  let train: TextDataset, evalSet: TextDataset | null = null;
  if (validDocs) {
    train = build(trainDocs, 1).train;
    evalSet =
      buildTextDatasets(validDocs, { tokenizer, block_size: T, source: `${data} (validation)` }).train;
  } else {
    if (wantsEval && config.max_eval_samples !== null) {
      throw new RangeError(
        `Cannot train: max_eval_samples needs a dataset folder with a validation split file; ${data} has none ` +
          `(evaluation then uses a 10% hash split of the training documents): remove max_eval_samples or add validation.jsonl`,
      );
    }
    const sets = build(trainDocs, wantsEval ? 0.9 : 1);
    train = sets.train;
    evalSet = sets.validation;
  }

  const backend = await createBackend(config.backend);
  const model = dir
    ? await loadModel(dir, { backend })
    : Transformer.init(mc, backend, { seed: config.seed });
  const trainer = createTrainer({
    model,
    config,
    train_dataset: train,
    eval_dataset: evalSet,
    tokenizer,
    progress: opts.progress,
  });
  try {
    return await trainer.train();
  } finally {
    trainer.dispose();
    model.dispose();
  }
}

/**
 * The `train` command: `--config run.yaml` plus `--<field> value` overrides, `--help`.
 * @param args arguments after `train`
 * @throws {TypeError} / {RangeError} / {SyntaxError} (one line) for bad flags, YAML, fields,
 *   values, block sizes, empty datasets; {@linkcode Deno.errors.PermissionDenied} for an unwritable
 *   output_dir — the CLI maps these to exit code 2
 */
export async function trainCli(args: string[]): Promise<void> {
  const config = await trainConfigFromArgs(args);
  if (!config) {
    console.log(TRAIN_USAGE);
    return;
  }
  let r: TrainResult;
  try {
    r = await runTraining(config);
  } catch (e) {
    throw oneLine(e);
  }
  const ev = r.metrics_summary.eval_loss;
  console.log(
    `trained ${r.metrics_summary.global_step} steps in ${r.training_time.toFixed(1)}s: loss ${
      r.final_loss.toFixed(4)
    }` +
      (ev === null ? "" : `, eval_loss ${ev.toFixed(4)}`) +
      `, perplexity ${r.final_perplexity.toFixed(2)} -> ${config.output_dir}`,
  );
}
