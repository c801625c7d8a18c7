/**
 * Rows of tokenized examples for training: what `packExamples` / `padExamples` make of SFT or text
 * examples, held flat (`[rows, max_length]`) and addressed by row index like a `TextDataset`'s
 * blocks, with the labels, positions, segments and attention mask of each row.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { PackedRow, PaddedRow } from "./packing.ts";
import { blockOrder } from "./text_dataset.ts";

/**
 * Training rows with their labels (-100: not trained), position ids and segment ids (0: padding,
 * k: the k-th example of the row), and an attention mask for padded rows.
 *
 * @example
 * ```ts
 * import { padExamples } from "./packing.ts";
 * import { RowDataset } from "./row_dataset.ts";
 * const ex = [{ input_ids: Int32Array.of(5, 6, 7), labels: Int32Array.of(5, 6, 7) }];
 * const ds = new RowDataset(padExamples(ex, { max_length: 4 }).rows, { source: "d.jsonl" });
 * if (ds.num_blocks !== 1 || ds.attention_mask([0])!.join() !== "1,1,1,0") throw new Error("rows");
 * if (ds.labels([0]).join() !== "-100,6,7,-100") throw new Error(ds.labels([0]).join());
 * ```
 */
export class RowDataset {
  /** Every row's token ids, `[num_blocks * block_size]`. */
  readonly ids: Int32Array;
  readonly #labels: Int32Array;
  readonly #positions: Int32Array;
  readonly #segments: Int32Array;
  /** Padded rows (one example each): their attention masks; null for packed rows. */
  readonly #mask: Int32Array | null;
  /** Tokens per row (`max_length`). */
  readonly block_size: number;
  /** Number of rows. */
  readonly num_blocks: number;
  /** Where the rows came from. */
  readonly source: string;
  /** Rows holding more than one example (attention must stay within each segment). */
  readonly packed: boolean;

  /**
   * Flattens the rows' ids, labels, positions and segments (and masks, for padded rows) into
   * `[num_blocks * block_size]` arrays.
   *
   * @param rows rows of one length, all padded (with `attention_mask`) or all packed
   * @param opts `source`, named in errors
   * @throws {RangeError} for no rows or rows of different lengths
   */
  constructor(rows: readonly (PackedRow | PaddedRow)[], opts: { source?: string } = {}) {
    const src = opts.source ?? "<rows>";
    if (!rows.length) {
      throw new RangeError(`Cannot build training rows from ${src}: there are none; add data`);
    }
    const T = rows[0].input_ids.length;
    if (rows.some((r) => r.input_ids.length !== T)) {
      throw new RangeError(`Cannot build training rows from ${src}: rows differ in length`);
    }
    const flat = (pick: (r: PackedRow) => Int32Array) => {
      const out = new Int32Array(rows.length * T);
      rows.forEach((r, i) => out.set(pick(r), i * T));
      return out;
    };
    this.ids = flat((r) => r.input_ids);
    this.#labels = flat((r) => r.labels);
    this.#positions = flat((r) => r.position_ids);
    this.#segments = flat((r) => r.segment_ids);
    this.#mask = "attention_mask" in rows[0] ? flat((r) => (r as PaddedRow).attention_mask) : null;
    this.packed = rows.some((r) => r.segment_ids.some((s) => s > 1));
    this.block_size = T;
    this.num_blocks = rows.length;
    this.source = src;
  }

  #gather(a: Int32Array, indices: ArrayLike<number>): Int32Array {
    const T = this.block_size, out = new Int32Array(indices.length * T);
    for (let r = 0; r < indices.length; r++) {
      const i = indices[r];
      if (!(Number.isInteger(i) && i >= 0 && i < this.num_blocks)) {
        throw new RangeError(`Cannot read row ${i} of ${this.source}: it has ${this.num_blocks} rows`);
      }
      out.set(a.subarray(i * T, (i + 1) * T), r * T);
    }
    return out;
  }

  /** Rows `indices`: token ids `[n, block_size]`, row-major. */
  batch(indices: ArrayLike<number>): Int32Array {
    return this.#gather(this.ids, indices);
  }

  /** Their labels (-100 where nothing is trained). */
  labels(indices: ArrayLike<number>): Int32Array {
    return this.#gather(this.#labels, indices);
  }

  /** Their position ids (restarting at 0 for each example of a packed row). */
  position_ids(indices: ArrayLike<number>): Int32Array {
    return this.#gather(this.#positions, indices);
  }

  /** Their segment ids (0 = padding, k = the k-th example). */
  segment_ids(indices: ArrayLike<number>): Int32Array {
    return this.#gather(this.#segments, indices);
  }

  /** Their attention masks (padded rows), or null for packed rows. */
  attention_mask(indices: ArrayLike<number>): Int32Array | null {
    return this.#mask ? this.#gather(this.#mask, indices) : null;
  }

  /** The row order of `epoch`, as {@linkcode TextDataset.order} draws it. */
  order(epoch: number, seed: number): Uint32Array {
    return blockOrder(this.num_blocks, epoch, seed);
  }

  /** A hash of the rows (ids, labels, positions, segments): equal for the same training data. */
  fingerprint(): string {
    const h = createHash("sha256");
    h.update(`rows:${this.num_blocks}:${this.block_size}:`);
    for (const a of [this.ids, this.#labels, this.#positions, this.#segments]) {
      h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    }
    return `sha256:${h.digest("hex")}`;
  }
}
