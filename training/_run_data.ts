/**
 * Private to `run.ts`: the training and evaluation rows a config names, as TRL's SFTTrainer makes
 * them. Every dataset format of TRL (text, prompt/completion, conversational `messages`) becomes
 * tokenized examples with label masks (`data/sft.ts`), then rows:
 * - `packing: false` (TRL's default): one example per row, padding masked out of attention and loss;
 * - `packing: true` with `packing_strategy: bfd` / `bfd_split`: examples packed into rows (positions
 *   restarting per example, attention kept within each example by segment ids);
 * - `packing: true` with `packing_strategy: wrapped`: text concatenated and cut into blocks, the
 *   classic pre-training layout (`TextDataset`).
 * The dataset is a file, a folder of split files or a hub dataset id ({@linkcode withLocalDataset});
 * the splits are `dataset_train_split` and for evaluation `dataset_test_split`, else `validation`,
 * else `test`, else a 10% hash split of the training examples ({@linkcode splitFiles}).
 * @module
 */
import { join } from "node:path";
import { detectFormat, findSplitLayout, splitFilesOf, splitNamesOf } from "../data/readers.ts";
import { packExamples, padExamples } from "../data/packing.ts";
import { RowDataset } from "../data/row_dataset.ts";
import { buildSftExamples, loadSftExamples, refuseCutToNothing, type SftExample } from "../data/sft.ts";
import { hashFraction } from "../data/split.ts";
import { isHubDatasetId, resolveDataset } from "../data/hub_datasets.ts";
import { buildTextDatasets, readTextDocuments } from "../data/text_dataset.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { TrainDataset } from "./_trainer_batch.ts";
import { loadTrainingConfig, type TrainingConfig } from "./config.ts";
import { isDirSync, pathExists } from "../util/atomic.ts";

/**
 * Text documents of a dataset (for the wrapped layout and for training a preset's tokenizer): its
 * training split, or with `"eval"` its evaluation split ({@linkcode splitFiles}).
 */
export async function readDocuments(
  config: TrainingConfig,
  which: "train" | "eval" = "train",
): Promise<string[]> {
  const s = splitFiles(config); // (its refusals: a split the folder does not have)
  const split = which === "train" ? config.dataset_train_split : s.eval_split;
  if (split === null) {
    throw new RangeError(
      `Cannot read documents: dataset ${config.dataset} has no evaluation split; set dataset_test_split`,
    );
  }
  const docs = await readTextDocuments(config.dataset!, {
    dataset_text_field: config.dataset_text_field,
    ...(s.by === "file" ? {} : { split, config: config.dataset_config }),
  });
  const cap = which === "train" ? config.max_train_samples : config.max_eval_samples;
  return cap === null ? docs : docs.slice(0, cap);
}

/** A run's splits: the files of each, and the evaluation split's name. */
export interface RunSplits {
  /** The training split's files; null for a folder without one (a folder of documents). */
  train: string[] | null;
  /** The evaluation split's files, or null. */
  validation: string[] | null;
  /** The evaluation split's name (`validation`, `test`, or `dataset_test_split`), or null. */
  eval_split: string | null;
  /** What named the splits: one `file`, a folder's `card`, `keyword`s, or `none` (a folder of documents). */
  by: "file" | "card" | "keyword" | "none";
  /** The splits there are. */
  names: string[];
}

/**
 * A dataset's split files, every shard in order (HF reads them all), as TRL picks them: a file is
 * its own train split with no evaluation split; a folder's `dataset_train_split` (default `train`;
 * a folder whose files name no split keyword is all train, as HF reads a repo of one `data.json`),
 * and `dataset_test_split`, else `validation`, else `test` (TRL's default), for evaluation. The
 * card's config `dataset_config` names the splits when the folder has one.
 * @throws {RangeError} a split asked for by name that the folder does not have, listing those it has
 */
export function splitFiles(
  config: Pick<TrainingConfig, "dataset" | "dataset_config" | "dataset_train_split" | "dataset_test_split">,
): RunSplits {
  const data = config.dataset!;
  const refuse = (k: string, v: string, names: string[], why = "") =>
    new RangeError(
      `Cannot read dataset ${data}: ${k} "${v}" is not one of its splits (${
        names.join(", ") || "none"
      })${why}; ` +
        `fix ${k}`,
    );
  if (!isDirSync(data)) { // one file is its train split, as HF loads it (TRL then has no other)
    if (config.dataset_train_split !== "train") {
      throw refuse(
        "dataset_train_split",
        config.dataset_train_split,
        ["train"],
        ": one file is the train split",
      );
    }
    if (config.dataset_test_split !== null) {
      throw refuse(
        "dataset_test_split",
        config.dataset_test_split,
        ["train"],
        ": one file is the train split",
      );
    }
    return { train: [data], validation: null, eval_split: null, by: "file", names: ["train"] };
  }
  const layout = findSplitLayout(data, { config: config.dataset_config });
  // a folder whose names say no split is one train split (HF), with no other to ask for
  const names = splitNamesOf(layout);
  const get = (name: string) => splitFilesOf(layout, name);
  const asked: [string, string | null][] = [
    ["dataset_train_split", config.dataset_train_split],
    ["dataset_test_split", config.dataset_test_split],
  ];
  for (const [k, v] of asked) if (v !== null && v !== "train" && !get(v)) throw refuse(k, v, names);
  const eval_split = config.dataset_test_split ??
    (get("validation") ? "validation" : get("test") ? "test" : null);
  return {
    train: get(config.dataset_train_split),
    validation: eval_split ? get(eval_split) : null,
    eval_split,
    by: layout.by,
    names,
  };
}

/** The examples of every file, in order (the shards of a split: train-00000-of-00003.parquet, ...). */
async function examplesOfAll(
  files: string[],
  tokenizer: Tokenizer,
  config: TrainingConfig,
): Promise<SftExample[]> {
  const out: SftExample[] = [];
  for (const f of files) for (const e of await examplesOf(f, tokenizer, config)) out.push(e);
  return out;
}

async function examplesOf(file: string, tokenizer: Tokenizer, config: TrainingConfig): Promise<SftExample[]> {
  const opts = {
    dataset_text_field: config.dataset_text_field,
    // packing cuts long examples itself, as its strategy says (bfd truncates, bfd_split splits,
    // wrapped wraps): cut here first, they all truncated (TRL truncates only without packing)
    max_length: config.packing ? null : config.max_seq_length,
    completion_only_loss: config.completion_only_loss ?? undefined, // null: the default
    assistant_only_loss: config.assistant_only_loss,
  };
  if (detectFormat(file) === "text") {
    // HF's text loader: a row per line (it had been the whole file as one example, cut to max_length)
    const docs = await readTextDocuments(file, {
      dataset_text_field: config.dataset_text_field,
      sample_by: "line",
    });
    return buildSftExamples(docs.map((text) => ({ text })), tokenizer, {
      ...opts,
      dataset_text_field: "text",
      source: file,
    })
      .examples;
  }
  return (await loadSftExamples(file, tokenizer, opts)).examples;
}

/**
 * `config` with its `dataset` as a local path: a hub dataset id (`org/name`, with `dataset_config`
 * and `dataset_revision`) downloaded into the hub cache ({@linkcode resolveDataset}), whose commit
 * `log` is told (to pin it), or a file or folder as it is. The run's saved config keeps the id.
 */
export async function withLocalDataset(
  config: TrainingConfig,
  what: string,
  log: (line: string) => void = () => {},
): Promise<TrainingConfig> {
  const r = await resolveDataset(config.dataset!, {
    config: config.dataset_config,
    subject: what,
    log,
    ...(config.dataset_revision !== null ? { revision: config.dataset_revision } : {}),
  });
  if (r.path === config.dataset && r.config === config.dataset_config) {
    if (config.dataset_revision !== null) {
      throw new RangeError(
        `${what}: dataset_revision ${config.dataset_revision} is for a hub dataset, and ${config.dataset} is a ` +
          `local path; drop dataset_revision`,
      );
    }
    return config;
  }
  const commit = /[\\/]snapshots[\\/]([0-9a-f]{40})/.exec(r.path)?.[1];
  if (commit && config.dataset_revision !== commit) {
    log(
      `dataset ${config.dataset}: commit ${commit} of the hub (dataset_revision: ${commit} reads it again)`,
    );
  }
  return { ...config, dataset: r.path, dataset_config: r.config };
}

/**
 * A stable 10% of `rows` held out for evaluation, by a hash of each row's `file:line` without the
 * folder (the same file splits the same wherever it lies: a hub snapshot's path holds its commit).
 * @returns the rows that train, and those held out
 */
export function holdOut<T extends { source: string }>(rows: T[]): [T[], T[]] {
  const key = (r: T) => r.source.slice(r.source.lastIndexOf("/") + 1);
  return [rows.filter((r) => hashFraction(key(r)) < 0.9), rows.filter((r) => hashFraction(key(r)) >= 0.9)];
}

/**
 * `e` with the hub cache's snapshot folder of `local` named by the dataset id `id` in its message
 * (`org/name/data/train.jsonl:3`, not `~/.cache/huggingface/hub/datasets--org--name/snapshots/<sha>/...`).
 */
export function hubNamed(e: unknown, local: TrainingConfig, id: string): unknown {
  const root = /^(.*[\\/]snapshots[\\/][0-9a-f]{40})/.exec(local.dataset ?? "")?.[1];
  if (root && local.dataset !== id && e instanceof Error) e.message = e.message.replaceAll(root, id);
  return e;
}

/**
 * Refuse a `dataset` path that does not exist, in one line naming the field (reading it would
 * fail with the file system's bare "No such file or directory").
 * @throws {Deno.errors.NotFound}
 */
export async function refuseMissingDataset(data: string, what: string): Promise<void> {
  if (await pathExists(data) || isHubDatasetId(data)) return; // a hub id: resolveDataset fetches it
  throw new Deno.errors.NotFound(
    `${what}: dataset ${data} does not exist (the config's dataset field, or --dataset); fix the path`,
  );
}

/**
 * Refuse a `tokenizer` that a resume would not use: a resumed run keeps the tokenizer saved in its
 * checkpoint, so one other than the run's own (its checkpoint's config.yaml) is refused, not ignored.
 * @throws {RangeError}
 */
export async function refuseResumeTokenizer(config: TrainingConfig, checkpoint: string): Promise<void> {
  if (config.tokenizer === null) return;
  const saved = await loadTrainingConfig(join(checkpoint, "config.yaml"), { warn: () => {} }).catch(() =>
    null
  );
  if (saved && saved.tokenizer === config.tokenizer) return;
  throw new RangeError(
    `Cannot resume from ${checkpoint}: tokenizer ${config.tokenizer} is not the run's (${
      saved?.tokenizer ?? "its model's"
    }), and a resumed run keeps the tokenizer saved in its checkpoint; drop tokenizer (--tokenizer)`,
  );
}

/**
 * Say where evaluation comes from when it is not the validation split: a 10% of the training data
 * held out (which then does not train), or the test split (`eval_split`, as {@linkcode splitFiles}
 * chose it, when `dataset_test_split` did not).
 */
export function noteEvalSplit(
  config: TrainingConfig,
  data: string,
  held_out: boolean,
  eval_split: string | null,
  log: (line: string) => void,
): void {
  if (config.eval_strategy === "no") return;
  if (held_out) {
    log(
      `evaluation holds out a stable 10% of ${data}, which does not train (there is no validation or test split ` +
        `file; a dataset folder with validation.jsonl keeps all of the training data)`,
    );
  } else if (config.dataset_test_split === null && eval_split === "test") {
    log(
      `evaluation uses the test split of ${data} (there is no validation split; set dataset_test_split to choose)`,
    );
  }
}

/** {@linkcode splitFiles} of a dataset to train on: a folder without a train split is refused. */
export function trainSplitFiles(
  config: Parameters<typeof splitFiles>[0],
  s: RunSplits = splitFiles(config),
): RunSplits & { train: string[] } {
  if (!s.train) {
    throw new RangeError(
      s.names.length
        ? `Cannot train: dataset ${config.dataset} has no ${config.dataset_train_split} split (its splits: ` +
          `${s.names.join(", ")}); set dataset_train_split to one of them`
        : `Cannot train: dataset ${config.dataset} holds no data files (train.jsonl, data/train-*.parquet, ...); add some`,
    );
  }
  return s as RunSplits & { train: string[] };
}

/**
 * The training and evaluation datasets of `config` (evaluation: null when `eval_strategy` is `no`);
 * `held_out`: the evaluation examples were taken out of the training data (no evaluation split);
 * `eval_split`: the evaluation split's name otherwise.
 * @param docs the training documents when already read (the wrapped layout reuses them)
 */
export async function buildRunDatasets(
  config: TrainingConfig,
  tokenizer: Tokenizer,
  docs: string[] | null,
): Promise<{ train: TrainDataset; eval: TrainDataset | null; held_out: boolean; eval_split: string | null }> {
  const data = config.dataset!, T = config.max_seq_length, wantsEval = config.eval_strategy !== "no";
  const splits = splitFiles(config); // (one scan of the folder for all that follows)
  const valid = wantsEval ? splits.validation : null, eval_split = valid ? splits.eval_split : null;
  if (wantsEval && !valid && config.max_eval_samples !== null) {
    throw new RangeError(
      `Cannot train: max_eval_samples needs a dataset folder with a validation or test split file; ${data} has none ` +
        `(evaluation then uses a 10% hash split of the training documents): remove max_eval_samples or add validation.jsonl`,
    );
  }
  if (config.packing && config.packing_strategy === "wrapped") {
    const trainDocs = docs ?? await readDocuments(config);
    if (!trainDocs.length) {
      throw new RangeError(
        `Cannot train: dataset ${data} is empty (no "${config.dataset_text_field}" text); add documents`,
      );
    }
    const build = (d: string[], split: number, source: string) =>
      buildTextDatasets(d, { tokenizer, block_size: T, train_split: split, source });
    if (valid) {
      return {
        train: build(trainDocs, 1, data).train,
        eval: build(await readDocuments(config, "eval"), 1, `${data} (${eval_split})`).train,
        held_out: false,
        eval_split,
      };
    }
    const sets = build(trainDocs, wantsEval ? 0.9 : 1, data);
    return { train: sets.train, eval: sets.validation, held_out: wantsEval, eval_split };
  }
  const cap = (ex: SftExample[], n: number | null) => (n === null ? ex : ex.slice(0, n));
  let train = cap(
    await examplesOfAll(trainSplitFiles(config, splits).train, tokenizer, config),
    config.max_train_samples,
  );
  let evalEx: SftExample[] | null = null;
  if (valid) evalEx = cap(await examplesOfAll(valid, tokenizer, config), config.max_eval_samples);
  else if (wantsEval) {
    [train, evalEx] = holdOut(train);
  }
  if (!train.length) throw new RangeError(`Cannot train: dataset ${data} has no training examples; add rows`);
  if (evalEx && !evalEx.length && !valid) {
    throw new RangeError(
      `Cannot evaluate: the 10% hash split of the ${train.length} examples of ${data} holds none; add a ` +
        `validation split file (a dataset folder with validation.jsonl) or more rows, or set eval_strategy: no`,
    );
  }
  const pad_token_id = tokenizer.pad_token_id ?? tokenizer.eos_token_id ?? 0;
  const rows = (ex: SftExample[], source: string) => {
    if (!config.packing) {
      return new RowDataset(padExamples(ex, { max_length: T, pad_token_id }).rows, { source });
    }
    refuseCutToNothing(ex, T, config.packing_strategy);
    const packed = packExamples(ex, { max_length: T, strategy: config.packing_strategy, pad_token_id });
    return new RowDataset(packed.rows, { source });
  };
  return {
    train: rows(train, data),
    eval: evalEx && evalEx.length ? rows(evalEx, valid?.join(", ") ?? `${data} (10% held out)`) : null,
    held_out: wantsEval && !valid,
    eval_split,
  };
}
