/**
 * A training run from its config: {@linkcode runTraining} builds what a {@linkcode TrainingConfig}
 * names (backend, model, tokenizer, datasets) and trains it into one run folder.
 *
 * @module
 */
import { pathExists } from "../util/atomic.ts";
import { join } from "node:path";
import { createBackend } from "../kernels/backend.ts";
import { trainBpeTokenizer } from "../models/tokenizer/bpe.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { latestCheckpoint } from "./checkpoint.ts";
import { refuseExistingRun } from "./_trainer_io.ts";
// for runners built on the Trainer (the recipes): check the run folder before any data or weights
export { refuseExistingRun };
import {
  buildRunDatasets,
  hubNamed,
  noteEvalSplit,
  readDocuments,
  refuseMissingDataset,
  refuseResumeTokenizer,
  withLocalDataset,
} from "./_run_data.ts";
import { initRunModel, modelDir, resolveRunModel } from "./_run_model.ts";
import { refuseUnreadFields, TRAINING_CONFIG_KEYS, type TrainingConfig } from "./config.ts";
import { isObject, refuseUnknownOptions, show } from "../util/problems.ts";
import { createTrainer, type TrainResult } from "./trainer.ts";
import type { TrainerHooks } from "./hooks.ts";

/** Options of {@linkcode runTraining}. */
export interface RunTrainingOptions {
  /** Progress line on stderr (default true). */
  progress?: boolean;
  /** Notes for the user, one line each (default stderr); see `CreateTrainerOptions.log`. */
  log?: (line: string) => void;
  /** Checkpoint and return on SIGINT / SIGTERM (default false); see `CreateTrainerOptions.handle_signals`. */
  handle_signals?: boolean;
  /** Trainer hooks (e.g. a search's pruner in `on_evaluate`); see `CreateTrainerOptions.hooks`. */
  hooks?: TrainerHooks;
}

/**
 * Build everything a config names and train: the backend, the model (a preset such as `tiny`
 * starts from scratch, reshaped by `model_config` and seeded by `seed`; a folder or hub id loads
 * the checkpoint), the tokenizer (`tokenizer`, else the model folder's, else a byte-level BPE
 * trained on the training documents)
 * and the datasets (a file or folder read by {@linkcode readTextDocuments}; with evaluation on, a
 * folder's `validation` split or else 10% of the documents by hash), then run the Trainer, which
 * writes `output_dir`. This is what `deno task cli train` and the recipes call.
 *
 * @param config a validated config with `model` and `dataset` set
 * @param opts `progress`
 * @returns the train result
 * @throws {RangeError} when `model` or `dataset` is unset, `max_seq_length` exceeds the model's
 *   `max_position_embeddings` (naming both), or the dataset is empty or shorter than one block (naming the file)
 * @throws {Deno.errors.NotFound} for a dataset path that does not exist
 * @example
 * ```ts
 * import { getTrainingArgs } from "./config.ts";
 * import { runTraining } from "./run.ts";
 * const dir = await Deno.makeTempDir();
 * const docs = Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: `package ${i} does a small thing` }));
 * await Deno.writeTextFile(`${dir}/train.jsonl`, docs.join("\n") + "\n");
 * const config = getTrainingArgs({
 *   model: "tiny",
 *   dataset: `${dir}/train.jsonl`,
 *   output_dir: `${dir}/run`,
 *   backend: "cpu",
 *   max_steps: 2,
 *   max_seq_length: 16,
 *   per_device_train_batch_size: 2,
 *   save_strategy: "no",
 * });
 * const r = await runTraining(config, { progress: false });
 * if (r.metrics_summary.global_step !== 2 || !(r.final_loss > 0)) throw new Error("trained");
 * await Deno.stat(`${dir}/run/model/model.safetensors`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runTraining(
  config: TrainingConfig,
  opts: RunTrainingOptions = {},
): Promise<TrainResult> {
  refuseUnknownOptions(opts, ["progress", "log", "handle_signals", "hooks"], "runTraining");
  const unset = isObject(config) ? TRAINING_CONFIG_KEYS.filter((k) => !(k in config)) : [];
  if (!isObject(config) || unset.length) { // a plain object: its unset fields read as undefined, not defaults
    throw new TypeError(
      `runTraining: config must be a whole TrainingConfig (${
        isObject(config)
          ? `${unset.slice(0, 3).join(", ")}${unset.length > 3 ? ", ..." : ""} unset`
          : show(config)
      }); build it with getTrainingArgs({ ... }) or loadTrainingConfig(file)`,
    );
  }
  const missing = (["model", "dataset"] as const).filter((k) => !config[k]);
  if (missing.length) {
    throw new RangeError(
      `Cannot train: ${
        missing.join(" and ")
      } not set; set model (a preset such as tiny, a folder or a hub id) ` +
        `and dataset (a file, a folder or a hub dataset id) in the config or as --model / --dataset`,
    );
  }
  refuseUnreadFields(config, "sft", "Cannot train");
  const name = config.model!, data = config.dataset!;
  await refuseExistingRun(config); // before any data or weights are read
  await refuseMissingDataset(data, "Cannot train");
  // The model's shape first: a too-long block is an error before any data or weights are read.
  const spec = await resolveRunModel(name, config.model_config);
  const { config: mc, dir } = spec;
  const T = config.max_seq_length;
  if (T > mc.max_position_embeddings) {
    throw new RangeError(
      `Cannot train ${name}: max_length (max_seq_length, block_size) ${T} exceeds the model's ` +
        `max_position_embeddings ${mc.max_position_embeddings}; set max_length <= ${mc.max_position_embeddings}`,
    );
  }
  const say = opts.log ?? ((l: string) => console.error(`fledge: ${l}`));
  const local = await withLocalDataset(config, "Cannot train", say); // a hub dataset id: its files, downloaded
  // A resume takes the tokenizer saved in its checkpoint: never one rebuilt from (changed) data.
  const resumeDir = config.resume_from_checkpoint === true
    ? await latestCheckpoint(join(config.output_dir, "checkpoints"))
    : config.resume_from_checkpoint || null;
  const resumeTokenizer = resumeDir !== null && await pathExists(join(resumeDir, "tokenizer.json"));
  const wrapped = config.packing && config.packing_strategy === "wrapped";
  // Text documents: the wrapped layout cuts them into blocks; a preset model trains its tokenizer on them.
  const needsBpe = !resumeTokenizer && !config.tokenizer && !dir;
  let docs: string[] | null = null;
  if (wrapped || needsBpe) {
    try {
      docs = await readDocuments(local);
    } catch (e) {
      hubNamed(e, local, data);
      // records without a text column (prompt/completion or chat rows) are what a trained tokenizer
      // cannot read; any other problem of the data is said as it is
      if (!needsBpe || !(e instanceof TypeError) || !/ records have no "/.test(e.message)) throw e;
      throw new TypeError(
        `Cannot train ${name} from scratch on ${data}: its tokenizer is trained on text, and ${
          (e as Error).message.replace(/^Cannot read documents from [^:]+: /, "")
        }; give a pretrained model (folder or hub id) or a tokenizer for prompt/completion or chat data`,
      );
    }
    if (!docs.length) {
      throw new RangeError(
        `Cannot train: dataset ${data} is empty (no "${config.dataset_text_field}" text); add documents`,
      );
    }
  }
  let tokenizer: Tokenizer;
  if (resumeTokenizer) {
    await refuseResumeTokenizer(config, resumeDir!);
    tokenizer = await loadTokenizer(resumeDir!);
  } else if (config.tokenizer) tokenizer = await loadTokenizer(await modelDir(config.tokenizer));
  else if (dir) tokenizer = await loadTokenizer(dir);
  else {
    tokenizer = await trainBpeTokenizer(docs!, {
      vocab_size: mc.vocab_size,
      special_tokens: ["<|endoftext|>"],
      model_max_length: mc.max_position_embeddings,
    });
  }
  const { train, eval: evalSet, held_out, eval_split } = await buildRunDatasets(
    local,
    tokenizer,
    wrapped ? docs : null,
  )
    .catch((e) => {
      throw hubNamed(e, local, data);
    });
  noteEvalSplit(local, data, held_out, eval_split, say);

  const backend = await createBackend(config.backend);
  const model = await initRunModel(spec, tokenizer, backend, config.seed);
  const trainer = createTrainer({
    model,
    config,
    train_dataset: train,
    eval_dataset: evalSet,
    tokenizer,
    progress: opts.progress,
    log: opts.log,
    handle_signals: opts.handle_signals,
    hooks: opts.hooks,
  });
  try {
    return await trainer.train();
  } finally {
    trainer.dispose();
    model.dispose();
  }
}
