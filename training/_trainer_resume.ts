/**
 * Private to `trainer.ts`: picking the checkpoint a resume starts from (the newest that verifies,
 * saying which newer ones were skipped and why) and refusing a resume whose model, tokenizer, data
 * or data-order settings differ from the checkpoint's, with the list of differences.
 * @module
 */
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import type { AdamW } from "../kernels/optim.ts";
import { fromHfConfig, toHfConfig } from "../models/config.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../models/transformer.ts";
import type { TrainDataset } from "./_trainer_batch.ts";
import { readJsonFile } from "../util/json.ts";
import {
  latestCheckpoint,
  loadCheckpoint,
  readTrainerState,
  type TrainerState,
  verifyCheckpoint,
} from "./checkpoint.ts";
import { loadTrainingConfig, type TrainingConfig } from "./config.ts";
import { pathExists } from "../util/atomic.ts";

/** Settings that change which blocks an update sees or what a step computes. */
const DATA_ORDER_KEYS = [
  "per_device_train_batch_size",
  "gradient_accumulation_steps",
  "max_seq_length",
] as const;

/**
 * Seeds a resume cannot change: the run's data order and random state go on from its checkpoint,
 * so a new seed would be accepted and not used (even with `allow_changed_data`).
 */
const SEED_KEYS = ["seed", "data_seed"] as const;

/**
 * Sections that shape the trained weights themselves: a checkpoint holds the adapter (and the
 * 4-bit base) its own sections made, and another section would train on top of it without a word.
 */
const WEIGHT_KEYS = ["lora", "quantization"] as const;

/**
 * A hash of a tokenizer's vocabulary (every id's token) and special tokens: equal for tokenizers
 * that map text to the same ids.
 */
export function tokenizerFingerprint(tok: Tokenizer): string {
  const h = createHash("sha256");
  h.update(JSON.stringify([tok.vocab_size, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id]));
  h.update(JSON.stringify(tok.special_token_ids));
  for (let i = 0; i < tok.vocab_size; i++) h.update(`${tok.idToToken(i) ?? ""}\u0000`);
  return `sha256:${h.digest("hex")}`;
}

/** What a resume needs and reports. */
export interface ResumeInputs {
  config: TrainingConfig;
  model: Transformer;
  optimizer: AdamW | null;
  train_dataset: TrainDataset;
  tokenizer: Tokenizer | null;
  /** `output_dir/checkpoints`. */
  root: string;
  /** Notes for the user (one line each). */
  log: (line: string) => void;
}

/** The checkpoint `resume_from_checkpoint` names: a folder, or the newest that verifies. */
async function pickCheckpoint(r: ResumeInputs): Promise<string> {
  const want = r.config.resume_from_checkpoint;
  if (typeof want === "string") {
    const problem = (await pathExists(want)) ? await verifyCheckpoint(want) : "it does not exist";
    if (problem !== null) {
      throw new SyntaxError(
        `Cannot resume from checkpoint ${want}: ${problem}; pick another checkpoints/step-N folder ` +
          `or resume_from_checkpoint: true for the newest complete one`,
      );
    }
    return want;
  }
  const skipped: string[] = [];
  const dir = await latestCheckpoint(r.root, {
    onSkip: (d, why) => {
      r.log(`resume: skipping ${d}: ${why}`);
      skipped.push(`${basename(d)}: ${why}`);
    },
  });
  if (dir === null) { // a damaged one is named: it may be restored rather than the run thrown away
    throw new RangeError(
      `Cannot resume: no complete checkpoint in ${r.root}${
        skipped.length ? ` (${skipped.join("; ")})` : ""
      }; ` +
        `${skipped.length ? "restore one, or " : ""}start the run again without ` +
        `resume_from_checkpoint (with overwrite_output_dir: true where the folder holds its config and logs)`,
    );
  }
  return dir;
}

/** Differences between the checkpoint and this run: `fatal` ones can never resume. */
async function differences(
  dir: string,
  state: TrainerState,
  saved: TrainingConfig,
  r: ResumeInputs,
  now: { data: string; tokenizer: string | null },
): Promise<{ fatal: string[]; changed: string[] }> {
  const fatal: string[] = [], changed: string[] = [];
  const file = join(dir, "config.json");
  const theirs = JSON.stringify(toHfConfig(fromHfConfig(await readJsonFile(file), { file })));
  if (theirs !== JSON.stringify(toHfConfig(r.model.config))) {
    fatal.push(`the model's config differs from the checkpoint's ${file}`);
  }
  if (state.tokenizer_fingerprint && now.tokenizer && state.tokenizer_fingerprint !== now.tokenizer) {
    fatal.push(`the tokenizer differs from the one saved in ${dir} (load that one)`);
  }
  if (state.data_fingerprint && state.data_fingerprint !== now.data) {
    changed.push(`the training data differs from the checkpoint's (${r.train_dataset.source})`);
  }
  for (const k of DATA_ORDER_KEYS) {
    if (saved[k] !== r.config[k]) changed.push(`${k} ${saved[k]} -> ${r.config[k]}`);
  }
  for (const k of WEIGHT_KEYS) {
    const was = saved[k] as Record<string, unknown> | null,
      now = r.config[k] as Record<string, unknown> | null;
    if (!was !== !now) {
      fatal.push(
        `${k} ${was ? "set" : "unset"} in the checkpoint, ${
          now ? "set" : "unset"
        } now: the checkpoint holds ` +
          `${
            was
              ? `the ${k === "lora" ? "adapter" : "4-bit weights"} its ${k} section made`
              : "no such weights"
          }; ` +
          `resume with its ${k} section (${was ? JSON.stringify(was) : "none"}), or start a new run`,
      );
    } else if (was && now) {
      const fields = [...new Set([...Object.keys(was), ...Object.keys(now)])]
        .filter((f) => JSON.stringify(was[f]) !== JSON.stringify(now[f]));
      if (fields.length) {
        fatal.push(
          `${
            fields.map((f) => `${k}.${f} ${JSON.stringify(was[f])} -> ${JSON.stringify(now[f])}`).join(", ")
          }: ` +
            `the checkpoint holds what its own ${k} section made; resume with it, or start a new run`,
        );
      }
    }
  }
  for (const k of SEED_KEYS) {
    if (saved[k] !== r.config[k]) {
      fatal.push(
        `${k} ${saved[k]} -> ${r.config[k]}: a resumed run goes on with its checkpoint's data order and ` +
          `random state (resume with ${k} ${saved[k]}, or start a new run for another seed)`,
      );
    }
  }
  return { fatal, changed };
}

/**
 * Restore the model and optimizer from the checkpoint `resume_from_checkpoint` names, after checking
 * that the model, tokenizer, data and data-order settings match it (or `allow_changed_data`).
 * @returns the folder and the state to continue from (fingerprints of this run's data and tokenizer)
 * @throws {RangeError} when no checkpoint verifies or something differs (listing every difference)
 * @throws {SyntaxError} when the named checkpoint is incomplete or corrupt (naming the file)
 */
export async function resumeFrom(r: ResumeInputs): Promise<{ dir: string; state: TrainerState }> {
  const dir = await pickCheckpoint(r);
  const savedState = await readTrainerState(dir);
  const data = r.train_dataset.fingerprint();
  const tokenizer = r.tokenizer ? tokenizerFingerprint(r.tokenizer) : null;
  const saved = await loadTrainingConfig(join(dir, "config.yaml"), { warn: () => {} });
  const { fatal, changed } = await differences(dir, savedState, saved, r, { data, tokenizer });
  if (fatal.length) throw new RangeError(`Cannot resume from ${dir}: ${fatal.join("; ")}`);
  if (changed.length && !r.config.allow_changed_data) {
    throw new RangeError(
      `Cannot resume from ${dir}: ${changed.join("; ")}; resume with the checkpoint's data and settings, ` +
        `or set allow_changed_data: true (--allow_changed_data true) to resume on purpose`,
    );
  }
  if (changed.length) {
    r.log(`resume: continuing from ${dir} although ${changed.join("; ")} (allow_changed_data)`);
  } else r.log(`resume: continuing from ${dir} at step ${savedState.global_step}`);
  await loadCheckpoint(dir, { model: r.model, optimizer: r.optimizer ?? undefined });
  const state: TrainerState = { ...savedState, data_fingerprint: data };
  if (tokenizer) state.tokenizer_fingerprint = tokenizer;
  // Changed data may be shorter: a position past its end starts the next epoch.
  if (state.data_position.index >= r.train_dataset.num_blocks) {
    state.data_position = { epoch: state.data_position.epoch + 1, index: 0 };
  }
  return { dir, state };
}
