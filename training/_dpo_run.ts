/**
 * Private to `dpo.ts`: what a DPO config names, built as `run.ts` builds a training run's inputs:
 * the model (folder or hub id; a preset needs `tokenizer`), the tokenizer (the resumed checkpoint's,
 * `tokenizer`, else the model's) and the preference pairs of the dataset (a file, a folder or a hub
 * dataset id; its splits as `run.ts` picks them: `dataset_train_split`, and for evaluation
 * `dataset_test_split`, `validation`, `test`, else a stable 10% of the rows by hash).
 * @module
 */
import { join } from "node:path";
import { createBackend } from "../kernels/backend.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../models/transformer.ts";
import { loadPreferenceExamples, PreferenceDataset, type PreferenceExample } from "../data/preference.ts";
import { latestCheckpoint } from "./checkpoint.ts";
import { refuseUnreadFields, type TrainingConfig } from "./config.ts";
import { refuseExistingRun } from "./_trainer_io.ts";
import {
  holdOut,
  hubNamed,
  noteEvalSplit,
  refuseMissingDataset,
  refuseResumeTokenizer,
  trainSplitFiles,
  withLocalDataset,
} from "./_run_data.ts";
import { initRunModel, isPreset, modelDir, resolveRunModel } from "./_run_model.ts";

/** What a DPO run trains: the model, its tokenizer and the pairs. */
export interface DpoRunInputs {
  model: Transformer;
  tokenizer: Tokenizer;
  train: PreferenceDataset;
  eval: PreferenceDataset | null;
}

/** The pairs of every file of a split, in order. */
async function pairsOfAll(
  files: string[],
  ...rest: [Tokenizer, TrainingConfig, (line: string) => void, boolean]
): Promise<PreferenceExample[]> {
  const out: PreferenceExample[] = [];
  for (const f of files) for (const e of await pairsOf(f, ...rest)) out.push(e);
  return out;
}

async function pairsOf(
  file: string,
  tokenizer: Tokenizer,
  config: TrainingConfig,
  log: (line: string) => void,
  progress: boolean,
): Promise<PreferenceExample[]> {
  const r = await loadPreferenceExamples(file, tokenizer, {
    max_length: config.max_seq_length,
    max_prompt_length: config.max_prompt_length,
    progress,
  });
  const notes = [
    r.truncated_prompts &&
    `${r.truncated_prompts} prompts cut to max_prompt_length ${config.max_prompt_length}`,
    r.truncated && `${r.truncated} pairs cut to max_length ${config.max_seq_length}`,
    r.dropped && `${r.dropped} pairs dropped (the prompt fills max_length ${config.max_seq_length})`,
  ].filter(Boolean);
  if (!r.examples.length && r.dropped) { // "no pairs; add rows" would be the wrong fix
    throw new RangeError(
      `Cannot train: all ${r.dropped} pairs of ${file} were dropped, the prompt filling max_length ` +
        `${config.max_seq_length}; raise max_length or lower max_prompt_length (now ${config.max_prompt_length})`,
    );
  }
  if (notes.length) log(`${file}: ${r.examples.length} preference pairs; ${notes.join(", ")}`);
  return r.examples;
}

/**
 * Build the inputs of a DPO run: checks first (output_dir, model shape), then the tokenizer, the
 * pairs, and last the weights.
 * @throws {RangeError} / {TypeError} naming what is missing or wrong and the fix
 */
export async function dpoRunInputs(
  config: TrainingConfig,
  opts: { log: (line: string) => void; progress: boolean },
): Promise<DpoRunInputs> {
  const missing = (["model", "dataset"] as const).filter((k) => !config[k]);
  if (missing.length) {
    throw new RangeError(
      `Cannot train with DPO: ${missing.join(" and ")} not set; set model (a folder or hub id of a trained ` +
        `model) and dataset (a file or folder of prompt/chosen/rejected rows) in the config or as --model / --dataset`,
    );
  }
  refuseUnreadFields(config, "dpo", "Cannot train with DPO");
  refuseDpoSettings(config); // before any data or weights are read
  const name = config.model!, data = config.dataset!;
  await refuseExistingRun(config);
  await refuseMissingDataset(data, "Cannot train with DPO");
  if (isPreset(name) && !config.tokenizer) {
    throw new RangeError(
      `Cannot train ${name} with DPO: a preset starts from random weights and has no tokenizer, and DPO ` +
        `fine-tunes a trained model; set model to a model folder or hub id (or set tokenizer)`,
    );
  }
  const spec = await resolveRunModel(name, config.model_config);
  const { config: mc, dir } = spec;
  if (config.max_seq_length > mc.max_position_embeddings) {
    throw new RangeError(
      `Cannot train ${name}: max_length (max_seq_length) ${config.max_seq_length} exceeds the model's ` +
        `max_position_embeddings ${mc.max_position_embeddings}; set max_length <= ${mc.max_position_embeddings}`,
    );
  }
  const local = await withLocalDataset(config, "Cannot train with DPO", opts.log); // a hub id: downloaded
  const resumeDir = config.resume_from_checkpoint === true
    ? await latestCheckpoint(join(config.output_dir, "checkpoints"))
    : config.resume_from_checkpoint || null;
  const resumeTok = resumeDir !== null &&
    await Deno.stat(join(resumeDir, "tokenizer.json")).then(() => true, () => false);
  if (resumeTok) await refuseResumeTokenizer(config, resumeDir!);
  const tokenizer = resumeTok
    ? await loadTokenizer(resumeDir!)
    : await loadTokenizer(config.tokenizer ? await modelDir(config.tokenizer) : dir!);

  // errors name the hub dataset id, not its snapshot in the cache
  const named = <T>(p: () => T | Promise<T>) =>
    Promise.resolve().then(p).catch((e) => {
      throw hubNamed(e, local, data);
    });
  const files = await named(() => trainSplitFiles(local)), wantsEval = config.eval_strategy !== "no";
  if (wantsEval && !files.validation && config.max_eval_samples !== null) {
    throw new RangeError(
      `Cannot train: max_eval_samples needs a dataset folder with a validation or test split file; ${data} has none ` +
        `(evaluation then uses a 10% hash split of the training rows): remove max_eval_samples or add validation.jsonl`,
    );
  }
  const cap = (ex: PreferenceExample[], n: number | null) => (n === null ? ex : ex.slice(0, n));
  let train = cap(
    await named(() => pairsOfAll(files.train, tokenizer, config, opts.log, opts.progress)),
    config.max_train_samples,
  );
  let evalPairs: PreferenceExample[] | null = null;
  if (wantsEval && files.validation) {
    evalPairs = cap(
      await named(() => pairsOfAll(files.validation!, tokenizer, config, opts.log, opts.progress)),
      config.max_eval_samples,
    );
  } else if (wantsEval) {
    [train, evalPairs] = holdOut(train); // as SFT's
    if (!evalPairs.length) {
      throw new RangeError(
        `Cannot evaluate: the 10% hash split of the ${train.length} pairs of ${data} holds none; ` +
          `add a validation split file (a dataset folder with validation.jsonl) or more rows, or set eval_strategy: no`,
      );
    }
  }
  if (!train.length) throw new RangeError(`Cannot train: dataset ${data} has no preference pairs; add rows`);
  noteEvalSplit(local, data, wantsEval && !files.validation, files.eval_split, opts.log);
  const pad_token_id = tokenizer.pad_token_id ?? tokenizer.eos_token_id ?? 0;
  const trainSet = new PreferenceDataset(train, { pad_token_id, source: files.train.join(", ") });
  const evalSet = evalPairs?.length
    ? new PreferenceDataset(evalPairs, {
      pad_token_id,
      source: files.validation?.join(", ") ?? `${data} (10% held out)`,
    })
    : null;

  const backend = await createBackend(config.backend);
  const model = await initRunModel(spec, tokenizer, backend, config.seed);
  return { model, tokenizer, train: trainSet, eval: evalSet };
}

/**
 * The DPO settings a run cannot honour, refused before any data or weights are read (`runDpo`) or
 * anything is attached (`createDpoTrainer`, with its `model`): weights of the model itself that
 * train, which would move the reference without precomputed log-probs, and a LoRA dropout that
 * `disable_dropout` switches off.
 * @throws {RangeError} naming the setting and the fix
 */
export function refuseDpoSettings(config: TrainingConfig, model?: Transformer): void {
  const lora = config.lora, attached = model?.adapters.size ?? 0;
  // (without any adapter, the reference is a frozen copy of the weights: createReferenceModel)
  const extras = lora !== null
    ? lora.bias !== "none" || (lora.modules_to_save?.length ?? 0) > 0
    : attached > 0 && model!.parameters().some((p) => p.requiresGrad);
  if (!config.precompute_ref_log_probs && extras) {
    throw new RangeError(
      `Cannot train DPO: the adapter trains model weights (lora bias or modules_to_save), which would move ` +
        `the reference (the model with the adapter switched off); set bias: none and no modules_to_save, ` +
        `or precompute_ref_log_probs: true`,
    );
  }
  if (config.disable_dropout && lora !== null && lora.lora_dropout > 0) {
    throw new RangeError(
      `Cannot train DPO: lora.lora_dropout ${lora.lora_dropout} would not be used, as disable_dropout ` +
        `(true by default, as in TRL) turns every dropout off; set lora_dropout: 0 or disable_dropout: false`,
    );
  }
}
