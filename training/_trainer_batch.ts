/**
 * Private to `trainer.ts`: a micro-batch of a training dataset on the device. A `TextDataset`'s
 * blocks train every token (labels = ids); a `RowDataset`'s rows carry their own labels (-100: not
 * trained), attention masks (padded rows), and segment ids and position ids (packed rows: attention
 * stays within each example and positions restart at 0 for each, so a packed example trains as it
 * would alone in a padded row).
 *
 * Each micro-batch's loss is weighted by its share of the trained targets of the whole update
 * (Hugging Face's `num_items_in_batch`), so uneven lengths under gradient accumulation give the
 * loss of one big batch. For text blocks every row has the same targets, so rows are counted.
 * @module
 */
import type { Backend } from "../kernels/backend.ts";
import type { Tensor } from "../kernels/tensor.ts";
import type { ForwardOptions } from "../models/transformer.ts";
import { RowDataset } from "../data/row_dataset.ts";
import type { TextDataset } from "../data/text_dataset.ts";

/**
 * Rows of another kind (e.g. DPO's preference pairs), trained through a custom `compute_loss`: the
 * Trainer only orders, counts and fingerprints them (`ids`: every token, for the vocabulary check).
 */
export interface CustomRows {
  /** Every token id of every row; the Trainer checks them against the model's vocabulary. */
  readonly ids: Int32Array;
  /** The longest row, in tokens; `createTrainer` refuses it above the model's `max_position_embeddings`. */
  readonly block_size: number;
  /** Number of rows: an epoch visits indices `0 .. num_blocks - 1`. */
  readonly num_blocks: number;
  /** Where the rows came from, named in errors and logs. */
  readonly source: string;
  /** The row order of `epoch`: a permutation of `0 .. num_blocks - 1`, a pure function of (epoch, seed). */
  order(epoch: number, seed: number): Uint32Array;
  /** A short hash of the rows, recorded in checkpoints so a resume notices changed data. */
  fingerprint(): string;
}

/** What the Trainer trains and evaluates on. */
export type TrainDataset = TextDataset | RowDataset | CustomRows;

/**
 * The weight of rows `idx` in a loss average: trained targets (labels after the shift that are not
 * -100) for rows with labels, else the row count.
 */
export function weightOf(ds: TrainDataset, idx: ArrayLike<number>): number {
  if (!(ds instanceof RowDataset)) return idx.length;
  const labels = ds.labels(idx), T = ds.block_size;
  let n = 0;
  for (let i = 0; i < labels.length; i++) if (i % T !== 0 && labels[i] !== -100) n++;
  return n;
}

/**
 * Where a batch's loss counts, when that is worth a gather: the flat positions `b * T + t` whose
 * shifted label `labels[b, t + 1]` is not -100 and those labels, or null when they are nearly all
 * positions (over 90%), none, or a label is outside `[0, V)` (the full loss then reports it).
 */
export function lossRows(
  labels: ArrayLike<number>,
  T: number,
  V: number,
): { rows: Int32Array; targets: Int32Array } | null {
  const rows: number[] = [], targets: number[] = [];
  for (let i = 0; i < labels.length; i++) {
    if (i % T === T - 1) continue;
    const y = labels[i + 1];
    if (y === -100) continue;
    if (!(y >= 0 && y < V)) return null;
    rows.push(i);
    targets.push(y);
  }
  if (rows.length === 0 || rows.length > 0.9 * labels.length) return null;
  return { rows: Int32Array.from(rows), targets: Int32Array.from(targets) };
}

/**
 * Rows `idx` as device tensors: ids, labels and the forward options, and for rows with labels,
 * where the loss counts ({@linkcode lossRows}, given the vocabulary size `V`); `dispose()` frees
 * them (any time after the forward: the graph holds what its backward reads).
 */
export function deviceBatch(
  ds: TextDataset | RowDataset,
  idx: ArrayLike<number>,
  be: Backend,
  V?: number,
): {
  ids: Tensor;
  labels: Tensor;
  opts: ForwardOptions;
  loss_at?: { rows: Tensor; targets: Tensor };
  dispose(): void;
} {
  const shape = [idx.length, ds.block_size];
  const ids = be.fromArray(ds.batch(idx), shape, "i32");
  if (!(ds instanceof RowDataset)) return { ids, labels: ids, opts: {}, dispose: () => ids.dispose() };
  const host = ds.labels(idx);
  const labels = be.fromArray(host, shape, "i32");
  const mask = ds.attention_mask(idx);
  const attention_mask = mask ? be.fromArray(mask, shape, "i32") : null;
  const position_ids = ds.packed ? be.fromArray(ds.position_ids(idx), shape, "i32") : null;
  const segment_ids = ds.packed ? be.fromArray(ds.segment_ids(idx), shape, "i32") : null;
  const at = V === undefined ? null : lossRows(host, ds.block_size, V);
  const loss_at = at
    ? {
      rows: be.fromArray(at.rows, [at.rows.length], "i32"),
      targets: be.fromArray(at.targets, [at.targets.length], "i32"),
    }
    : undefined;
  return {
    ids,
    labels,
    opts: { attention_mask, position_ids, segment_ids },
    loss_at,
    dispose: () =>
      [ids, labels, attention_mask, position_ids, segment_ids, loss_at?.rows, loss_at?.targets].forEach((t) =>
        t?.dispose()
      ),
  };
}
