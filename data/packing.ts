/**
 * Rows of fixed length `max_length` for the model, from tokenized examples (TRL `packing`,
 * `packing_strategy`; `trl.data_utils.pack_dataset`):
 * - `bfd` (TRL's default): best-fit decreasing of whole examples into rows; an example longer than
 *   `max_length` is cut to it first (counted). Examples never share attention: `segment_ids` number
 *   them in the row and `position_ids` restart at 0 for each (what TRL's padding-free collator
 *   derives from `seq_lengths`).
 * - `bfd_split`: the same, but an example longer than `max_length` is split into pieces of at most
 *   `max_length` that are packed as examples of their own (no token lost).
 * - `wrapped`: every example concatenated and cut every `max_length` tokens, ignoring example
 *   boundaries (what pre-training's `TextDataset` does): one segment per row.
 *
 * {@linkcode padExamples} is `packing: false`: one example per row, padded on the right.
 *
 * In every layout the label of an example's first token is `-100` (bfd, padded) or of a row's
 * first token (wrapped): with the model's shift it would be the target of the previous example's
 * last token, or of nothing. So the labels that are not `-100` are exactly the trained targets, and
 * their count is the same for packed and padded rows of the same examples. Padding: id
 * `pad_token_id`, label `-100`, position 0, segment 0. Everything is deterministic (no seed).
 * @module
 */

/** One packed row of `max_length` tokens. */
export interface PackedRow {
  /** Token ids, `max_length` long; `pad_token_id` on padding. */
  input_ids: Int32Array;
  /** `-100` where nothing is trained (padding, prompts, each example's first token). */
  labels: Int32Array;
  /** Position of each token in its example (restarting at 0); 0 on padding. */
  position_ids: Int32Array;
  /** 0 = padding, k >= 1 = the k-th example in the row: attention stays within one segment. */
  segment_ids: Int32Array;
}

/** One padded row (`packing: false`): a packed row of one example, plus its attention mask. */
export interface PaddedRow extends PackedRow {
  /** 1 on tokens (segment > 0), 0 on padding, as HF `attention_mask`. */
  attention_mask: Int32Array;
}

/** TRL `packing_strategy`. */
export type PackingStrategy = "bfd" | "bfd_split" | "wrapped";

/** What an example must have to be packed (an `SftExample` has it). */
export interface PackableExample {
  /** The example's token ids. */
  input_ids: Int32Array;
  /** As long as `input_ids`: the id where trained, `-100` elsewhere (unshifted, HF convention). */
  labels: Int32Array;
}

/** Options of {@linkcode padExamples}. */
export interface PadOptions {
  /** Tokens per row. */
  max_length: number;
  /** Id put on padding positions (default 0; it is never attended to nor trained). */
  pad_token_id?: number;
}

/**
 * The index of the first example that packing keeps no trained token of, or -1: `bfd` keeps only
 * the first `max_length` tokens of a longer example, and an answer past them trains nothing
 * (`bfd_split` and `wrapped` keep every token). Padding refuses such an example in
 * `buildSftExamples`; packing refuses it here the same way.
 * @param examples tokenized examples (`labels` -100 where not trained; the first token never is)
 * @param maxLength tokens per row
 * @param strategy the packing strategy (default `bfd`)
 */
export function cutToNothing(
  examples: readonly PackableExample[],
  maxLength: number,
  strategy: PackOptions["strategy"] = "bfd",
): number {
  if (strategy !== "bfd") return -1;
  return examples.findIndex((e) =>
    e.input_ids.length > maxLength && !e.labels.subarray(1, maxLength).some((l) => l !== -100)
  );
}

/** Options of {@linkcode packExamples}. */
export interface PackOptions extends PadOptions {
  /** How to pack (default `bfd`, as TRL). */
  strategy?: PackingStrategy;
}

/** Counts of a packing. */
export interface PackingSummary {
  /** `bfd`, `bfd_split`, `wrapped` or `padding` (one example per row). */
  strategy: PackingStrategy | "padding";
  /** Tokens per row, as requested. */
  max_length: number;
  /** Examples in. */
  examples: number;
  /** Rows out. */
  rows: number;
  /** Tokens that are not padding. */
  real_tokens: number;
  /** Labels that are not `-100`. */
  trained_tokens: number;
  /** `real_tokens / (rows * max_length)`. */
  fill_ratio: number;
  /** Examples cut to `max_length` (`bfd`, padding) or split (`bfd_split`). */
  truncated: number;
}

/** Rows and their summary. */
export interface PackedRows<R extends PackedRow = PackedRow> {
  /** The rows, each `max_length` tokens. */
  rows: R[];
  /** Counts of the packing (examples in, rows out, fill, truncation). */
  summary: PackingSummary;
}

function check(examples: readonly PackableExample[], opts: PadOptions, what: string): number {
  const L = opts.max_length;
  if (!(Number.isSafeInteger(L) && L >= 2)) {
    throw new RangeError(`Cannot ${what}: max_length must be an integer >= 2, got ${L}`);
  }
  examples.forEach((e, i) => {
    if (e.input_ids.length === 0 || e.labels.length !== e.input_ids.length) {
      throw new RangeError(
        `Cannot ${what}: example ${i} has ${e.input_ids.length} ids and ${e.labels.length} labels; ` +
          `examples need at least one id and one label per id`,
      );
    }
  });
  return L;
}

function emptyRow(L: number, pad: number): PackedRow {
  return {
    input_ids: new Int32Array(L).fill(pad),
    labels: new Int32Array(L).fill(-100),
    position_ids: new Int32Array(L),
    segment_ids: new Int32Array(L),
  };
}

/** Write `n` tokens of `e` (from its start) at `at` as segment `segment`; its first label is `-100`. */
function place(row: PackedRow, e: PackableExample, n: number, at: number, segment: number): void {
  row.input_ids.set(e.input_ids.subarray(0, n), at);
  row.labels.set(e.labels.subarray(0, n), at);
  row.labels[at] = -100;
  for (let t = 0; t < n; t++) {
    row.position_ids[at + t] = t;
    row.segment_ids[at + t] = segment;
  }
}

function summarize(
  rows: PackedRow[],
  strategy: PackingSummary["strategy"],
  L: number,
  examples: number,
  truncated: number,
): PackingSummary {
  let real = 0, trained = 0;
  for (const r of rows) {
    for (let t = 0; t < L; t++) {
      if (r.segment_ids[t] > 0) real++;
      if (r.labels[t] !== -100) trained++;
    }
  }
  const fill = rows.length ? real / (rows.length * L) : 0;
  return {
    strategy,
    max_length: L,
    examples,
    rows: rows.length,
    real_tokens: real,
    trained_tokens: trained,
    fill_ratio: fill,
    truncated,
  };
}

/**
 * Best-fit decreasing (TRL `_pack_bfd`): longest first (ties in input order), each into the open row
 * with the least room that still fits it (ties: the row that got that room first), else a new row.
 * @returns rows as lists of example indices, in creation order
 */
function bestFitDecreasing(lengths: readonly number[], L: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  // Segment tree over room sizes 1..L: a leaf holds its size when some row has that room, else 0.
  let size = 1;
  while (size < L) size <<= 1;
  const tree = new Int32Array(2 * size);
  const set = (room: number, on: boolean) => {
    let i = size + room - 1;
    tree[i] = on ? room : 0;
    for (i >>= 1; i >= 1; i >>= 1) tree[i] = Math.max(tree[2 * i], tree[2 * i + 1]);
  };
  // The smallest room >= n, or 0 when none.
  const search = (n: number): number => {
    if (tree[1] < n) return 0;
    let i = 1;
    while (i < size) i = tree[2 * i] >= n ? 2 * i : 2 * i + 1;
    return tree[i];
  };
  const byRoom = new Map<number, number[]>(); // room -> rows with that room, oldest first
  const rows: number[][] = [], room: number[] = [];
  for (const idx of order) {
    const n = lengths[idx];
    const fit = search(n);
    let r: number;
    if (fit === 0) {
      r = rows.length;
      rows.push([]);
      room.push(L);
    } else {
      const queue = byRoom.get(fit)!;
      r = queue.shift()!;
      if (queue.length === 0) set(fit, false);
    }
    rows[r].push(idx);
    room[r] -= n;
    if (room[r] > 0) {
      const queue = byRoom.get(room[r]) ?? [];
      if (queue.length === 0) {
        byRoom.set(room[r], queue);
        set(room[r], true);
      }
      queue.push(r);
    }
  }
  return rows;
}

/**
 * Pack examples into rows of `max_length` tokens (TRL `packing: true`).
 *
 * @param examples tokenized examples (e.g. from `buildSftExamples`, with `max_length: null` to let
 *   packing do the cutting)
 * @param opts `max_length`, `strategy` (`bfd` default, `bfd_split`, `wrapped`), `pad_token_id`
 * @returns the rows and a summary (rows, fill ratio, trained tokens, truncated examples)
 * @throws {RangeError} for `max_length` < 2 or an empty example
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packExamples } from "./packing.ts";
 * const ex = (...ids: number[]) => ({ input_ids: Int32Array.from(ids), labels: Int32Array.from(ids) });
 * const { rows, summary } = packExamples([ex(1, 2), ex(3, 4, 5), ex(6)], { max_length: 4 });
 * assert.deepEqual([...rows[0].input_ids], [3, 4, 5, 6]);
 * assert.deepEqual([...rows[0].labels], [-100, 4, 5, -100]);
 * assert.deepEqual([...rows[0].position_ids], [0, 1, 2, 0]);
 * assert.deepEqual([...rows[0].segment_ids], [1, 1, 1, 2]);
 * assert.deepEqual([...rows[1].segment_ids], [1, 1, 0, 0]);
 * assert.equal(summary.fill_ratio, 6 / 8);
 * ```
 */
export function packExamples(examples: readonly PackableExample[], opts: PackOptions): PackedRows {
  const strategy = opts.strategy ?? "bfd";
  const L = check(examples, opts, `pack ${examples.length} examples (${strategy})`);
  const pad = opts.pad_token_id ?? 0;
  if (strategy === "wrapped") return packWrapped(examples, L, pad);
  if (strategy !== "bfd" && strategy !== "bfd_split") {
    throw new RangeError(
      `Cannot pack examples: strategy "${strategy}" is not one of bfd, bfd_split, wrapped`,
    );
  }
  // Pieces: whole examples (cut to L for bfd), or L-long fragments for bfd_split.
  const pieces: PackableExample[] = [];
  let truncated = 0;
  for (const e of examples) {
    if (e.input_ids.length <= L) {
      pieces.push(e);
      continue;
    }
    truncated++;
    const cut = strategy === "bfd" ? L : e.input_ids.length;
    for (let s = 0; s < cut; s += L) {
      pieces.push({ input_ids: e.input_ids.subarray(s, s + L), labels: e.labels.subarray(s, s + L) });
    }
  }
  const bins = bestFitDecreasing(pieces.map((p) => p.input_ids.length), L);
  const rows = bins.map((bin) => {
    const row = emptyRow(L, pad);
    let at = 0;
    bin.forEach((idx, k) => {
      const p = pieces[idx];
      place(row, p, p.input_ids.length, at, k + 1);
      at += p.input_ids.length;
    });
    return row;
  });
  return { rows, summary: summarize(rows, strategy, L, examples.length, truncated) };
}

function packWrapped(examples: readonly PackableExample[], L: number, pad: number): PackedRows {
  let total = 0;
  for (const e of examples) total += e.input_ids.length;
  const ids = new Int32Array(total), labels = new Int32Array(total);
  let o = 0;
  for (const e of examples) {
    ids.set(e.input_ids, o);
    labels.set(e.labels, o);
    o += e.input_ids.length;
  }
  const rows: PackedRow[] = [];
  for (let s = 0; s < total; s += L) {
    const row = emptyRow(L, pad), n = Math.min(L, total - s);
    place(row, { input_ids: ids.subarray(s, s + n), labels: labels.subarray(s, s + n) }, n, 0, 1);
    rows.push(row);
  }
  return { rows, summary: summarize(rows, "wrapped", L, examples.length, 0) };
}

/**
 * One example per row, padded on the right to `max_length` (TRL `packing: false` with padding to
 * `max_length`); longer examples are cut to it (counted).
 *
 * @param examples tokenized examples
 * @param opts `max_length`, `pad_token_id`
 * @returns the rows, each with an `attention_mask` (1 where `segment_ids > 0`), and a summary
 * @throws {RangeError} for `max_length` < 2 or an empty example
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { padExamples } from "./packing.ts";
 * const ex = { input_ids: Int32Array.from([5, 6, 7]), labels: Int32Array.from([-100, 6, 7]) };
 * const { rows, summary } = padExamples([ex], { max_length: 5, pad_token_id: 9 });
 * assert.deepEqual([...rows[0].input_ids], [5, 6, 7, 9, 9]);
 * assert.deepEqual([...rows[0].labels], [-100, 6, 7, -100, -100]);
 * assert.deepEqual([...rows[0].attention_mask], [1, 1, 1, 0, 0]);
 * assert.equal(summary.trained_tokens, 2);
 * ```
 */
export function padExamples(examples: readonly PackableExample[], opts: PadOptions): PackedRows<PaddedRow> {
  const L = check(examples, opts, `pad ${examples.length} examples`);
  const pad = opts.pad_token_id ?? 0;
  let truncated = 0;
  const rows = examples.map((e): PaddedRow => {
    const n = Math.min(L, e.input_ids.length);
    if (n < e.input_ids.length) truncated++;
    const row = emptyRow(L, pad);
    place(row, e, n, 0, 1);
    return { ...row, attention_mask: row.segment_ids.map((s) => (s > 0 ? 1 : 0)) };
  });
  return { rows, summary: summarize(rows, "padding", L, examples.length, truncated) };
}
