/**
 * The Trainer tests' shared set-up: a tiny model config, byte-level ids of real Debian text as
 * train and eval blocks, and `run`, which trains a fresh model on them with the given settings.
 * @module
 */
import type { Backend } from "../../kernels/backend.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { TextDataset } from "../../data/text_dataset.ts";
import { getTrainingArgs, type TrainingConfig } from "../../training/config.ts";
import { createTrainer, type TrainResult } from "../../training/trainer.ts";
import type { TrainerHooks } from "../../training/hooks.ts";
import { SHARED } from "../_assert.ts";

const mc = presetConfig("tiny", {
  vocab_size: 32,
  hidden_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 32,
  max_position_embeddings: 16,
});

/** Byte-level ids (& 31) of real Debian text. */
const text = (await Deno.readTextFile(`${SHARED}/datasets/debian/summarization/validation.jsonl`)).slice(
  0,
  6000,
);
const bytes = Int32Array.from(new TextEncoder().encode(text), (b) => b & 31);
const train = new TextDataset(bytes.subarray(0, 4000), { block_size: 8, source: "train" });
const evalSet = new TextDataset(bytes.subarray(4000, 4128), { block_size: 8, source: "eval" });

async function run(
  be: Backend,
  overrides: Partial<TrainingConfig>,
  opts: { hooks?: TrainerHooks; seed?: number; eval?: boolean; config?: typeof mc } = {},
): Promise<{ result: TrainResult; model: Transformer }> {
  const config = getTrainingArgs({
    max_steps: 8,
    per_device_train_batch_size: 2,
    gradient_accumulation_steps: 2,
    learning_rate: 1e-2,
    lr_scheduler_type: "cosine",
    warmup_steps: 2,
    weight_decay: 0.1,
    logging_steps: 1,
    save_strategy: "no",
    seed: 3,
    ...overrides,
  });
  const model = Transformer.init(opts.config ?? mc, be, { seed: opts.seed ?? 3 });
  const trainer = createTrainer({
    model,
    config,
    train_dataset: train,
    eval_dataset: opts.eval ? evalSet : null,
    hooks: opts.hooks,
    progress: false,
  });
  const result = await trainer.train();
  trainer.dispose();
  return { result, model };
}

/** The set-up, as one object (`const { mc, bytes, train, evalSet, run } = trainerFixture`). */
export const trainerFixture = { mc, bytes, train, evalSet, run };
