/**
 * Preference data, as TRL's `DPOTrainer` prepares it: rows `{prompt, chosen, rejected}` become two
 * token sequences per pair, prompt + chosen and prompt + rejected, each with its completion mask
 * (Hugging Face labels: `-100` on the prompt).
 *
 * Formats, per row (TRL `is_conversational`): standard (three strings; EOS appended to `chosen` and
 * `rejected` when missing) or conversational (three message lists, the prompt rendered with the
 * tokenizer's chat template and `add_generation_prompt`, as `data/sft.ts` renders prompt-completion
 * conversations); `tools` and `chat_template_kwargs` reach the template. A row without `prompt` has
 * an implicit one: the longest common start of `chosen` and `rejected` (TRL `extract_prompt`).
 *
 * Truncation (counted): a prompt longer than `max_prompt_length` keeps its last tokens (after a
 * leading BOS), then each sequence keeps its first `max_length` tokens (TRL's `keep_start`); a pair
 * whose prompt alone fills `max_length` has nothing left to compare and is dropped (counted), as TRL
 * drops it.
 * @module
 */
import { IS_NULL } from "./csv.ts";
import { createHash } from "node:crypto";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { createProgress } from "../util/progress.ts";
import type { DataRecord } from "./readers.ts";
import { buildSftExamples } from "./sft.ts";
import { hasValue, parseRow, readSourcedRows } from "./_sft_rows.ts";
import { blockOrder } from "./text_dataset.ts";

/** One tokenized pair: both sequences with their labels (`-100` = prompt), and the row (`file:line`). */
export interface PreferenceExample {
  /** Prompt + chosen completion, at most `max_length` tokens. */
  chosen_input_ids: Int32Array;
  /** As long as `chosen_input_ids`: `-100` on the prompt, the token id on the completion (unshifted). */
  chosen_labels: Int32Array;
  /** Prompt + rejected completion (the same prompt tokens), at most `max_length` tokens. */
  rejected_input_ids: Int32Array;
  /** As long as `rejected_input_ids`: `-100` on the prompt, the token id on the completion (unshifted). */
  rejected_labels: Int32Array;
  /** Where the row came from: `file:line`, or `source:n` / `row n` (n from 1). */
  source: string;
}

/** TRL's preference formats: three strings, or three message lists. */
export type PreferenceFormat = "standard" | "conversational";

/** Options of {@linkcode buildPreferenceExamples}: TRL `DPOConfig` names, plus where rows came from. */
export interface PreferenceDataOptions {
  /** Tokens per sequence (TRL `max_length`; fledge `max_seq_length`); default 1024; null: no limit. */
  max_length?: number | null;
  /** Keep the last `max_prompt_length` tokens of longer prompts; default 512; null: no limit. */
  max_prompt_length?: number | null;
  /** Appended to standard `chosen` / `rejected` when missing (default the tokenizer's EOS; null: never). */
  eos_token?: string | null;
  /** Names rows in errors and on examples as `source:n` (row n from 1); default `row n`. */
  source?: string;
  /** Where each row came from (`file:line`), one per row; wins over `source`. */
  sources?: readonly string[];
  /** Print a progress line to stderr; default false. */
  progress?: boolean;
}

/** What {@linkcode buildPreferenceExamples} returns. */
export interface PreferenceExamples {
  /** One example per kept row, in row order (pairs whose prompt fills `max_length` are dropped). */
  examples: PreferenceExample[];
  /** Pairs whose prompt was cut to `max_prompt_length`. */
  truncated_prompts: number;
  /** Pairs with a sequence cut to `max_length`. */
  truncated: number;
  /** Pairs dropped because the prompt alone fills `max_length` (TRL drops them too). */
  dropped: number;
  /** Rows without `prompt`, whose prompt was the common start of chosen and rejected. */
  implicit_prompts: number;
  /** Tokens of every kept sequence. */
  num_tokens: number;
  /** Rows per format. */
  formats: Partial<Record<PreferenceFormat, number>>;
}

/** What the pairs need of a tokenizer: what SFT examples need, and the BOS id kept by prompt cuts. */
export type PreferenceTokenizer =
  & Parameters<typeof buildSftExamples>[1]
  & Partial<Pick<Tokenizer, "bos_token_id">>;

const FIELDS = ["prompt", "chosen", "rejected"] as const;

const kindOf = (v: unknown) => (Array.isArray(v) ? "a list" : typeof v === "string" ? "text" : typeof v);

/** TRL `extract_prompt`: the common start of chosen and rejected becomes the prompt. */
function extractPrompt<T extends string | unknown[]>(chosen: T, rejected: T): [T, T, T] {
  const same = (i: number) =>
    typeof chosen === "string"
      ? chosen[i] === rejected[i]
      : JSON.stringify(chosen[i]) === JSON.stringify(rejected[i]);
  const n = Math.min(chosen.length, rejected.length);
  let idx = 0;
  while (idx < n && same(idx)) idx++;
  if (idx === n) idx = Math.max(n - 1, 0); // one is a prefix of the other: keep a completion for both
  else if (typeof chosen === "string" && idx > 0 && chosen[idx - 1] === " ") idx--;
  return [chosen.slice(0, idx) as T, chosen.slice(idx) as T, rejected.slice(idx) as T];
}

/** A row checked: its format and its three fields (prompt made explicit). */
function parsePair(
  row: DataRecord,
): {
  format: PreferenceFormat;
  prompt: string | unknown[];
  chosen: string | unknown[];
  rejected: string | unknown[];
  implicit: boolean;
} {
  const cols = Object.keys(row).join(", ") || "none";
  for (const f of ["chosen", "rejected"]) {
    if (!hasValue(row, f)) {
      throw new TypeError(
        Object.hasOwn(row, f) // a null in a column the file has (a parquet null, a JSON null)
          ? `field "${f}" ${IS_NULL}; give every row its ${f} text or messages, or drop the row`
          : `field "${f}" is missing (columns: ${cols}); preference rows need "prompt", "chosen" and "rejected"`,
      );
    }
  }
  if (Object.hasOwn(row, "prompt") && row.prompt === null) { // (it had taken the common start of the answers)
    throw new TypeError(
      `field "prompt" ${IS_NULL}; give every row its prompt, or drop the row`,
    );
  }
  const implicit = !hasValue(row, "prompt");
  let { prompt, chosen, rejected } = row as Record<string, unknown>;
  const present = implicit ? ["chosen", "rejected"] : [...FIELDS];
  const values = present.map((f) => row[f]);
  const format: PreferenceFormat | null = values.every((v) => typeof v === "string")
    ? "standard"
    : values.every(Array.isArray)
    ? "conversational"
    : null;
  if (format === null) {
    throw new TypeError(
      `fields ${present.map((f) => `"${f}"`).join(", ")} must all be text or all be message lists, got ` +
        present.map((f) => kindOf(row[f])).join(", "),
    );
  }
  if (implicit) [prompt, chosen, rejected] = extractPrompt(chosen as string, rejected as string);
  if (implicit && format === "conversational" && !(prompt as unknown[]).length) {
    throw new TypeError(
      `the row has no "prompt", and "chosen" and "rejected" start with different messages, so no prompt can be ` +
        `taken from them; add a "prompt" field with the conversation before the answers`,
    );
  }
  return {
    format,
    prompt: prompt as string | unknown[],
    chosen: chosen as string | unknown[],
    rejected: rejected as string | unknown[],
    implicit,
  };
}

/** The index of the first completion token (the first label that is not -100). */
function completionStart(labels: Int32Array): number {
  const k = labels.findIndex((y) => y !== -100);
  return k < 0 ? labels.length : k;
}

interface Limits {
  maxLength: number | null;
  maxPrompt: number | null;
  bos: number | null;
}

/** Cut one sequence: the prompt to its last `maxPrompt` tokens (after BOS), then to `maxLength`. */
function cut(ids: Int32Array, labels: Int32Array, o: Limits) {
  let k = completionStart(labels), prompt = false, total = false;
  const keep = o.bos !== null && ids[0] === o.bos ? 1 : 0;
  if (o.maxPrompt !== null && k - keep > o.maxPrompt) {
    const drop = k - keep - o.maxPrompt;
    const splice = (a: Int32Array) => {
      const b = new Int32Array(a.length - drop);
      b.set(a.subarray(0, keep));
      b.set(a.subarray(keep + drop), keep);
      return b;
    };
    ids = splice(ids);
    labels = splice(labels);
    k -= drop;
    prompt = true;
  }
  if (o.maxLength !== null && ids.length > o.maxLength) {
    ids = ids.slice(0, o.maxLength);
    labels = labels.slice(0, o.maxLength);
    total = true;
  }
  // A completion token is compared only from position 1 on (the first token predicts nothing).
  const empty = !labels.some((y, t) => t > 0 && y !== -100);
  return { ids, labels, prompt, total, empty, k };
}

/** An error of a row with where it came from in front (one line, same class). */
function atRow(e: unknown, where: string, field?: string): unknown {
  const Kind = [SyntaxError, RangeError, TypeError].find((k) => e instanceof k);
  if (Kind === undefined) return e;
  let inner = (e as Error).message.replace(/^Cannot build an SFT example from .*?: /, "");
  if (field) inner = inner.replaceAll(`"completion`, `"${field}`);
  inner = inner.replace(/^Cannot /, "cannot ");
  return new Kind(`Cannot build a preference pair from ${where}: ${inner}`, { cause: e });
}

/**
 * Tokenize preference rows into pairs of sequences with completion masks (TRL `DPOTrainer`
 * dataset preparation), truncating as TRL does and counting it.
 *
 * @param rows `{prompt, chosen, rejected}` records: three strings, or three message lists (`prompt`
 *   may be left out: the common start of chosen and rejected is used)
 * @param tokenizer encodes text and renders chat templates
 * @param opts TRL names: `max_length`, `max_prompt_length`, `eos_token`; `source` / `sources` name rows
 * @returns the pairs in row order, and counts
 * @throws {TypeError} for a row with a missing or mistyped field (a row without `rejected`, ...), a
 *   message with an unknown role, or a conversation and a tokenizer with no chat template: one line
 *   naming the row (`file:line`) and the field
 * @throws {RangeError} for invalid options or a completion with no token
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildPreferenceExamples } from "./preference.ts";
 * // One id per character; EOS is "$" (id 36).
 * const tokenizer = {
 *   encode: (s: string) => [...s].map((c) => c.charCodeAt(0)),
 *   decode: (ids: ArrayLike<number>) => String.fromCharCode(...Array.from(ids)),
 *   applyChatTemplate: () => ({ text: "", ids: [] }),
 *   chat_template: null,
 *   special_token_ids: [36],
 *   eos_token_id: 36,
 *   idToToken: (id: number) => String.fromCharCode(id),
 *   tokenToId: (t: string) => t.charCodeAt(0),
 * };
 * const { examples } = buildPreferenceExamples([{ prompt: "2+2=", chosen: "4", rejected: "5" }], tokenizer);
 * assert.equal(String.fromCharCode(...examples[0].rejected_input_ids), "2+2=5$");
 * assert.deepEqual([...examples[0].chosen_labels], [-100, -100, -100, -100, 52, 36]);
 * assert.throws(
 *   () => buildPreferenceExamples([{ prompt: "2+2=", chosen: "4" }], tokenizer, { source: "p.jsonl" }),
 *   /^TypeError: Cannot build a preference pair from p.jsonl:1: field "rejected" is missing/,
 * );
 * ```
 */
export function buildPreferenceExamples(
  rows: readonly DataRecord[],
  tokenizer: PreferenceTokenizer,
  opts: PreferenceDataOptions = {},
): PreferenceExamples {
  const problems: string[] = [];
  const maxLength = opts.max_length === undefined ? 1024 : opts.max_length;
  const maxPrompt = opts.max_prompt_length === undefined ? 512 : opts.max_prompt_length;
  if (maxLength !== null && !(Number.isSafeInteger(maxLength) && maxLength >= 2)) {
    problems.push(`max_length must be an integer >= 2 or null, got ${maxLength}`);
  }
  if (maxPrompt !== null && !(Number.isSafeInteger(maxPrompt) && maxPrompt >= 1)) {
    problems.push(`max_prompt_length must be an integer >= 1 or null, got ${maxPrompt}`);
  }
  if (opts.sources !== undefined && opts.sources.length !== rows.length) {
    problems.push(`sources has ${opts.sources.length} entries for ${rows.length} rows`);
  }
  if (problems.length) throw new RangeError(`Cannot build preference pairs: ${problems.join("; ")}`);
  const limits: Limits = { maxLength, maxPrompt, bos: tokenizer.bos_token_id ?? null };
  const out: PreferenceExamples = {
    examples: [],
    truncated_prompts: 0,
    truncated: 0,
    dropped: 0,
    implicit_prompts: 0,
    num_tokens: 0,
    formats: {},
  };
  const progress = createProgress("preference pairs", {
    total: rows.length,
    unit: "rows",
    enabled: opts.progress === true,
  });
  rows.forEach((record, i) => {
    const where = opts.sources?.[i] ??
      (opts.source === undefined ? `row ${i + 1}` : `${opts.source}:${i + 1}`);
    let pair;
    try {
      pair = parsePair(record);
    } catch (e) {
      throw atRow(e, where);
    }
    const extra: DataRecord = {};
    for (const k of ["tools", "chat_template_kwargs"]) if (hasValue(record, k)) extra[k] = record[k];
    const sides = ["chosen", "rejected"] as const;
    // Both fields are checked before either is rendered: a bad field is named before a template problem.
    for (const field of sides) {
      try {
        parseRow({ prompt: pair.prompt, completion: pair[field] }, "text");
      } catch (e) {
        throw atRow(e, where, field);
      }
    }
    const seqs = sides.map((field) => {
      try {
        const ex = buildSftExamples([{ ...extra, prompt: pair.prompt, completion: pair[field] }], tokenizer, {
          max_length: null,
          completion_only_loss: true,
          eos_token: opts.eos_token,
          sources: [where],
        }).examples[0];
        return cut(ex.input_ids, ex.labels, limits);
      } catch (e) {
        throw atRow(e, where, field);
      }
    });
    const [c, r] = seqs;
    out.formats[pair.format] = (out.formats[pair.format] ?? 0) + 1;
    if (pair.implicit) out.implicit_prompts++;
    if (c.prompt || r.prompt) out.truncated_prompts++;
    if (c.empty || r.empty) out.dropped++;
    else {
      if (c.total || r.total) out.truncated++;
      out.examples.push({
        chosen_input_ids: c.ids,
        chosen_labels: c.labels,
        rejected_input_ids: r.ids,
        rejected_labels: r.labels,
        source: where,
      });
      out.num_tokens += c.ids.length + r.ids.length;
    }
    progress.update(i + 1);
  });
  progress.done(`${out.examples.length} pairs, ${out.truncated} truncated, ${out.dropped} dropped`);
  return out;
}

/**
 * Read a data file and build its preference pairs ({@linkcode buildPreferenceExamples}); rows are
 * named `file:line` for JSON Lines and `file#n` (n-th record) for JSON, CSV/TSV and Parquet.
 *
 * @param path a `.jsonl`, `.json`, `.csv`, `.tsv` or `.parquet` file
 * @param tokenizer encodes text and renders chat templates
 * @param opts as {@linkcode buildPreferenceExamples} (`source` / `sources` are set from the file)
 * @returns the pairs and counts
 * @throws {SyntaxError} for a malformed file (naming `file:line`)
 * @throws {TypeError} | {RangeError} as {@linkcode buildPreferenceExamples}
 */
export async function loadPreferenceExamples(
  path: string,
  tokenizer: PreferenceTokenizer,
  opts: PreferenceDataOptions = {},
): Promise<PreferenceExamples> {
  const { rows, sources } = await readSourcedRows(path);
  return buildPreferenceExamples(rows, tokenizer, { ...opts, source: path, sources });
}

/** One padded micro-batch of pairs, as {@linkcode PreferenceDataset.collate} makes it. */
export interface PreferenceBatch {
  /** `[2n, T]` token ids, row-major: the n chosen sequences, then the n rejected ones; right-padded. */
  input_ids: Int32Array;
  /**
   * `[2n, T]` shifted targets: at position t the completion token at t + 1, else `-100` (prompt,
   * padding, the last position).
   */
  targets: Int32Array;
  /** Completion tokens of each of the 2n sequences (TRL's `completion_mask.sum`). */
  completion_lengths: Float32Array;
  /** Tokens per row: the longest sequence of the micro-batch. */
  T: number;
}

/**
 * Tokenized preference pairs for the Trainer (a `CustomRows` dataset, trained through DPO's
 * `compute_loss`): addressed by pair index like a `TextDataset`'s blocks, ordered per epoch by the
 * same seeded shuffle, collated into padded micro-batches of chosen and rejected sequences.
 *
 * @example
 * ```ts
 * import { PreferenceDataset } from "./preference.ts";
 * const ds = new PreferenceDataset([{
 *   chosen_input_ids: Int32Array.of(5, 6, 7), chosen_labels: Int32Array.of(-100, 6, 7),
 *   rejected_input_ids: Int32Array.of(5, 8), rejected_labels: Int32Array.of(-100, 8), source: "p.jsonl:1",
 * }], { pad_token_id: 0 });
 * const b = ds.collate([0]);
 * if (b.T !== 3 || b.input_ids.join() !== "5,6,7,5,8,0") throw new Error(`${b.input_ids}`);
 * if (b.targets.join() !== "6,7,-100,8,-100,-100") throw new Error(`${b.targets}`);
 * ```
 */
export class PreferenceDataset {
  /** Every token: chosen then rejected of each pair, concatenated. */
  readonly ids: Int32Array;
  /** The longest sequence. */
  readonly block_size: number;
  /** Number of pairs. */
  readonly num_blocks: number;
  /** Where the pairs came from. */
  readonly source: string;
  /** Padding id of the collated batches. */
  readonly pad_token_id: number;
  /** Where the pairs' rows came from (`file:line`). */
  readonly sources: readonly string[];
  /** Sequence s (2i: chosen of pair i, 2i + 1: rejected) is `ids[offsets[s], offsets[s + 1])`. */
  readonly #offsets: Int32Array;
  /** Its completion start. */
  readonly #starts: Int32Array;

  /**
   * Concatenates the pairs' sequences into one id array with offsets; the examples are not kept.
   *
   * @param examples tokenized pairs
   * @param opts `pad_token_id`, and `source` (named in errors; default `<pairs>`)
   * @throws {RangeError} for no pairs
   */
  constructor(examples: readonly PreferenceExample[], opts: { pad_token_id: number; source?: string }) {
    this.source = opts.source ?? "<pairs>";
    if (!examples.length) {
      throw new RangeError(`Cannot build preference pairs from ${this.source}: there are none; add rows`);
    }
    const seqs = examples.flatMap((e) => [
      [e.chosen_input_ids, e.chosen_labels],
      [e.rejected_input_ids, e.rejected_labels],
    ]);
    this.#offsets = new Int32Array(seqs.length + 1);
    this.#starts = new Int32Array(seqs.length);
    seqs.forEach(([ids, labels], s) => {
      this.#offsets[s + 1] = this.#offsets[s] + ids.length;
      this.#starts[s] = completionStart(labels);
    });
    this.ids = new Int32Array(this.#offsets[seqs.length]);
    seqs.forEach(([ids], s) => this.ids.set(ids, this.#offsets[s]));
    // a loop: Math.max(...) of every sequence overflows the stack past about 100k pairs (HH-RLHF has 160k)
    this.block_size = seqs.reduce((m, [ids]) => Math.max(m, ids.length), 0);
    this.num_blocks = examples.length;
    this.pad_token_id = opts.pad_token_id;
    this.sources = examples.map((e) => e.source);
  }

  /**
   * Pairs `indices` as one padded micro-batch: chosen rows first, then rejected, padded on the right
   * to the longest of them.
   * @throws {RangeError} for an index outside the pairs
   */
  collate(indices: ArrayLike<number>): PreferenceBatch {
    const n = indices.length, seqs: number[] = [];
    for (let side = 0; side < 2; side++) {
      for (let r = 0; r < n; r++) {
        const i = indices[r];
        if (!(Number.isInteger(i) && i >= 0 && i < this.num_blocks)) {
          throw new RangeError(`Cannot read pair ${i} of ${this.source}: it has ${this.num_blocks} pairs`);
        }
        seqs.push(2 * i + side);
      }
    }
    const len = (s: number) => this.#offsets[s + 1] - this.#offsets[s];
    const T = Math.max(...seqs.map(len));
    const input_ids = new Int32Array(2 * n * T).fill(this.pad_token_id);
    const targets = new Int32Array(2 * n * T).fill(-100);
    const completion_lengths = new Float32Array(2 * n);
    seqs.forEach((s, row) => {
      const o = this.#offsets[s], L = len(s), k = this.#starts[s];
      input_ids.set(this.ids.subarray(o, o + L), row * T);
      for (let t = Math.max(k, 1); t < L; t++) targets[row * T + t - 1] = this.ids[o + t];
      completion_lengths[row] = L - k;
    });
    return { input_ids, targets, completion_lengths, T };
  }

  /** The pair order of `epoch`, as `TextDataset.order` draws it. */
  order(epoch: number, seed: number): Uint32Array {
    return blockOrder(this.num_blocks, epoch, seed);
  }

  /** A hash of the pairs (tokens, lengths, completion starts): equal for the same training data. */
  fingerprint(): string {
    const h = createHash("sha256");
    h.update(`pairs:${this.num_blocks}:`);
    for (const a of [this.ids, this.#offsets, this.#starts]) {
      h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    }
    return `sha256:${h.digest("hex")}`;
  }
}
