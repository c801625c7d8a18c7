/**
 * `deno task cli sft`: supervised fine-tuning as `trl sft` runs it, on the one Trainer. The dataset
 * may be any of TRL's SFT formats, detected per row: language modeling `{text}`, prompt-completion
 * `{prompt, completion}` (only the completion trained unless `completion_only_loss: false`), and
 * conversational `{messages}` rendered with the model's chat template (`assistant_only_loss: true`
 * trains the assistant turns only). It is `train` with TRL `SFTConfig`'s defaults under the config:
 * `learning_rate` 2e-5, `logging_steps` 10, `gradient_checkpointing` true, `packing` false.
 *
 * @module
 */
import type { TrainingConfig } from "../training/config.ts";
import type { Command } from "./command.ts";
import { trainingCommand } from "./train.ts";

/** TRL `SFTConfig` defaults that differ from `TrainingArguments`' (what the config leaves out takes these). */
export const SFT_DEFAULTS: Readonly<Partial<TrainingConfig>> = Object.freeze({
  learning_rate: 2e-5,
  logging_steps: 10,
  gradient_checkpointing: true,
  packing: false,
});

const USAGE = `usage: deno task cli sft --config sft.yaml [--<field> value ...]

Supervised fine-tuning (as \`trl sft\`) of the config's \`model\` (a folder or hub id; a preset
trains its tokenizer on text rows only) on its \`dataset\`: rows of {text}, {prompt, completion} or
{messages} (.jsonl/.json/.csv/.parquet, also .gz/.zst/.xz/.bz2, a folder with train/validation
files, or a hub dataset id, org/name, with dataset_config for its config). Writes output_dir like
train:
config.yaml, metrics.jsonl, checkpoints/, adapter/ (with a lora section) and/or model/, report.md.

TRL SFTConfig defaults apply to what the config leaves out: learning_rate 2e-5, logging_steps 10,
gradient_checkpointing true, packing false.

options:
  -c, --config FILE          a TrainingConfig in YAML (.yaml, .yml) or JSON (.json)
  --<field> VALUE            any TrainingConfig field by its Hugging Face name (read as JSON when it
                             parses): --max_length 512 --completion_only_loss false
                             --assistant_only_loss true --packing true --lora '{"r": 16}'
                             (TRL's --model_name_or_path, --dataset_name, --dataset_config,
                             --dataset_train_split and --dataset_test_split name the model, the
                             dataset, its config and the splits to train and evaluate on;
                             --dataset_revision pins a hub dataset's commit)
  -h, --help                 this text

Flags may also be spelled with hyphens (--learning-rate).`;

/** The `sft` command. */
export const command: Command = trainingCommand({
  name: "sft",
  summary: "supervised fine-tuning on text, prompt/completion or chat rows (as trl sft; TRL's SFT defaults)",
  usage: USAGE,
  defaults: SFT_DEFAULTS,
});
