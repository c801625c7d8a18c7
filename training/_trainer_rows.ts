/**
 * Private to `trainer.ts`: rows in any SFT format made into a training dataset (the positional
 * `createTrainer(model, tokenizer, args, rows)`), and the sums of a custom loss's logged scalars.
 * @module
 */
import type { Tensor } from "../kernels/tensor.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { packExamples, padExamples } from "../data/packing.ts";
import { RowDataset } from "../data/row_dataset.ts";
import { buildSftExamples } from "../data/sft.ts";
import { accumulate } from "../kernels/elementwise.ts";
import type { TrainingConfig } from "./config.ts";

/** SFT rows (any TRL format) as training rows: tokenized, then padded or packed as `config` says. */
export function rowsDataset(
  rows: readonly Record<string, unknown>[],
  tokenizer: Tokenizer,
  config: TrainingConfig,
): RowDataset {
  const { examples } = buildSftExamples(rows, tokenizer, {
    dataset_text_field: config.dataset_text_field,
    max_length: config.max_seq_length,
    completion_only_loss: config.completion_only_loss ?? true,
    assistant_only_loss: config.assistant_only_loss,
    source: "train_dataset",
  });
  const pad_token_id = tokenizer.pad_token_id ?? tokenizer.eos_token_id ?? 0, T = config.max_seq_length;
  return new RowDataset(
    config.packing
      ? packExamples(examples, { max_length: T, strategy: config.packing_strategy, pad_token_id }).rows
      : padExamples(examples, { max_length: T, pad_token_id }).rows,
    { source: "train_dataset" },
  );
}

/** Add each of a custom loss's scalars, times `w`, into `sums` (created on first use). */
export function addMetrics(
  sums: Map<string, Tensor>,
  ms: Record<string, Tensor> | Map<string, Tensor> | undefined,
  w: number,
): void {
  if (!ms) return;
  for (const [k, t] of ms instanceof Map ? ms : Object.entries(ms)) {
    let s = sums.get(k);
    if (!s) sums.set(k, s = t.backend.zeros([1]));
    accumulate(s, t, w);
    if (!(ms instanceof Map)) t.dispose();
  }
}
