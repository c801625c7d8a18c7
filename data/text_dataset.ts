/**
 * `TextDataset`: token ids for causal-LM training, as Hugging Face `run_clm.py` builds them —
 * documents tokenized, joined with EOS between them, cut into blocks of `block_size` tokens (every
 * `stride` tokens; `stride = block_size` drops the remainder like `group_texts`), labels = input ids
 * (the model's loss shifts them). Block order is shuffled per epoch from a seed, so a data position
 * is just `{epoch, index}` and resuming needs no sampler state.
 *
 * Sources: a text file (one document per file), a `.jsonl`/`.json`/`.csv`/`.parquet` file (the
 * `dataset_text_field` column), a folder of such files, or a folder of split files
 * (`train.jsonl`, `validation.jsonl`, the Hugging Face layout). `train_split` cuts one source into
 * train and validation documents by the SHA-256 of each document (deterministic, no seed).
 *
 * @module
 */
import { IS_NULL } from "./csv.ts";
import { createHash } from "node:crypto";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { detectFormat, findSplitLayout, layoutSplit, streamDataset } from "./readers.ts";
import { hashFraction } from "./split.ts";
import { mulberry32 } from "../util/random.ts";
import { agree } from "../util/problems.ts";
import { valueKind } from "../util/json.ts";

/** Where training stands in the data: `index` blocks of epoch `epoch` (0-based) are consumed. */
export interface DataPosition {
  /** The epoch in progress, from 0; it seeds that epoch's block order. */
  epoch: number;
  /** Blocks of this epoch's order already consumed; the next batch starts at this index. */
  index: number;
}

/** Options of {@linkcode TextDataset}'s constructor. */
export interface TextDatasetOptions {
  /** Tokens per block (the sequence length `T`). */
  block_size: number;
  /** Tokens between the starts of consecutive blocks (default `block_size`: no overlap). */
  stride?: number;
  /** Where the ids came from, named in errors (file path). */
  source?: string;
}

/** A mulberry32 stream seeded from `(seed, epoch)`: the shuffle of one epoch. */
function epochRng(seed: number, epoch: number): () => number {
  return mulberry32(Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b));
}

/**
 * Packed token ids cut into blocks. Immutable: batches are addressed by block index, and the
 * per-epoch order comes from {@linkcode TextDataset.order}.
 *
 * @example
 * ```ts
 * import { TextDataset } from "./text_dataset.ts";
 * const ds = new TextDataset(Int32Array.from({ length: 10 }, (_, i) => i), { block_size: 4 });
 * if (ds.num_blocks !== 2 || ds.block(1).join() !== "4,5,6,7") throw new Error("blocks");
 * const o = ds.order(0, 42);
 * if ([...o].sort().join() !== "0,1" || ds.order(0, 42).join() !== o.join()) throw new Error("order");
 * ```
 */
export class TextDataset {
  /** Every token id, documents joined with EOS. */
  readonly ids: Int32Array;
  /** Tokens per block. */
  readonly block_size: number;
  /** Tokens between block starts. */
  readonly stride: number;
  /** Number of blocks: `floor((ids.length - block_size) / stride) + 1`. */
  readonly num_blocks: number;
  /** Where the ids came from. */
  readonly source: string;

  /**
   * Views `ids` as overlapping or adjacent blocks (no copy); `stride` defaults to `block_size`.
   *
   * @param ids packed token ids
   * @param opts `block_size`, `stride`, `source`
   * @throws {RangeError} for a non-positive block size or stride, or fewer ids than one block (naming the source)
   */
  constructor(ids: Int32Array, opts: TextDatasetOptions) {
    const T = opts.block_size, S = opts.stride ?? opts.block_size, src = opts.source ?? "<ids>";
    if (!(Number.isSafeInteger(T) && T >= 2)) {
      throw new RangeError(
        `Cannot build a text dataset from ${src}: block_size must be an integer >= 2, got ${T}`,
      );
    }
    if (!(Number.isSafeInteger(S) && S >= 1)) {
      throw new RangeError(
        `Cannot build a text dataset from ${src}: stride must be an integer >= 1, got ${S}`,
      );
    }
    if (ids.length < T) {
      throw new RangeError(
        `Cannot build a text dataset from ${src}: ${
          ids.length === 0
            ? "it is empty (no tokens)"
            : `${ids.length} tokens is fewer than one block of ${T}`
        }; add data or lower block_size`,
      );
    }
    this.ids = ids;
    this.block_size = T;
    this.stride = S;
    this.num_blocks = Math.floor((ids.length - T) / S) + 1;
    this.source = src;
  }

  /** Total tokens. */
  get num_tokens(): number {
    return this.ids.length;
  }

  /**
   * What the blocks hold, as a short hash (sha256 of the ids, block size and stride; like the
   * fingerprint of a Hugging Face `Dataset`): equal for the same tokens cut the same way. Checkpoints
   * record it so a resume notices changed data.
   * @returns `sha256:<hex>`
   */
  fingerprint(): string {
    const h = createHash("sha256");
    h.update(`${this.block_size}:${this.stride}:${this.ids.length}:`);
    h.update(new Uint8Array(this.ids.buffer, this.ids.byteOffset, this.ids.byteLength));
    return `sha256:${h.digest("hex")}`;
  }

  /** Block `i` (a view of `block_size` ids). */
  block(i: number): Int32Array {
    if (!(Number.isInteger(i) && i >= 0 && i < this.num_blocks)) {
      throw new RangeError(`Cannot read block ${i} of ${this.source}: it has ${this.num_blocks} blocks`);
    }
    return this.ids.subarray(i * this.stride, i * this.stride + this.block_size);
  }

  /** Blocks `indices` concatenated: a `[indices.length, block_size]` batch, row-major. */
  batch(indices: ArrayLike<number>): Int32Array {
    const T = this.block_size, out = new Int32Array(indices.length * T);
    for (let r = 0; r < indices.length; r++) out.set(this.block(indices[r]), r * T);
    return out;
  }

  /**
   * The block order of `epoch`: a Fisher-Yates permutation seeded by `(seed, epoch)`, the same on
   * every run and machine.
   */
  order(epoch: number, seed: number): Uint32Array {
    return blockOrder(this.num_blocks, epoch, seed);
  }
}

/**
 * The visiting order of `n` blocks (or rows) in `epoch`: a Fisher-Yates permutation seeded by
 * `(seed, epoch)`, the same on every run and machine.
 * @param n how many
 * @param epoch the epoch
 * @param seed `data_seed ?? seed`
 * @returns a permutation of `0..n-1`
 */
export function blockOrder(n: number, epoch: number, seed: number): Uint32Array {
  const o = new Uint32Array(n);
  for (let i = 0; i < o.length; i++) o[i] = i;
  const rand = epochRng(seed, epoch);
  for (let i = o.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = o[i];
    o[i] = o[j];
    o[j] = t;
  }
  return o;
}

/** Options of {@linkcode readTextDocuments}. */
export interface ReadDocumentsOptions {
  /** The text column of record files (TRL `dataset_text_field`; default `text`). */
  dataset_text_field?: string;
  /** A split of a folder of split files (`train`, `validation`); default `train`. */
  split?: string;
  /** Read at most this many documents. */
  max_documents?: number;
  /**
   * How a plain text file is cut (HF's text builder): `document` (default here: the whole file, for
   * language-model text), `line` (HF's default: a row per line) or `paragraph`.
   */
  sample_by?: "document" | "line" | "paragraph";
  /** The config of the folder's card (README.md `configs:`) that names its splits; default its default one. */
  config?: string | null;
}

async function readFileDocuments(
  file: string,
  field: string,
  max: number,
  out: string[],
  sample_by: "document" | "line" | "paragraph" = "document",
): Promise<void> {
  const text = detectFormat(file) === "text";
  if (text && field !== "text") {
    throw new TypeError(
      `Cannot read documents from ${file}: dataset_text_field "${field}" names a column of record files, ` +
        `and ${file} is plain text (each file one document); drop dataset_text_field`,
    );
  }
  let n = 0;
  for await (
    const r of streamDataset(file, {
      sample_by: text ? sample_by : undefined,
      max_samples: Number.isFinite(max) ? max : undefined,
    })
  ) {
    n++;
    const v = text ? r.text : r[field];
    if (typeof v !== "string") {
      // SFT records: dataset_text_field cannot help; what reads them whole is SFT's own packing
      const kind = "messages" in r
        ? "chat (messages)"
        : "prompt" in r && "completion" in r
        ? "prompt-completion"
        : null;
      if (v === null && !kind) { // the column is there, this record's value is not
        throw new TypeError(
          `Cannot read documents from ${file}: record ${n}: "${field}" ${IS_NULL}; ` +
            `fill it in or drop the record`,
        );
      }
      throw new TypeError(
        `Cannot read documents from ${file}: ${
          v === undefined
            ? `records have no "${field}" column (columns: ${Object.keys(r).join(", ")})`
            : `record ${n}: "${field}" is ${valueKind(v)}, not text`
        }; ${
          kind
            ? `these are ${kind} records, and wrapped packing and a preset model's tokenizer read one text ` +
              `column: use packing_strategy: bfd (or packing: false), and a model with its tokenizer (or the tokenizer field)`
            : "set dataset_text_field"
        }`,
      );
    }
    if (v.length) out.push(v);
    if (out.length >= max) return;
  }
}

/**
 * The documents of a data source as strings: a file, a folder of data files (all of them, sorted;
 * text files are one document each), or a folder of split files (`split`, default `train`).
 * @param path file or folder
 * @param opts `dataset_text_field`, `split`, `max_documents`
 * @returns the non-empty documents in order
 * @throws {Deno.errors.NotFound} when `path` does not exist
 * @throws {TypeError} when records lack the text field (naming the file and the columns it has)
 * @throws {RangeError} for a split a split folder does not have, or a bad `max_documents`
 */
export async function readTextDocuments(path: string, opts: ReadDocumentsOptions = {}): Promise<string[]> {
  const field = opts.dataset_text_field ?? "text", max = opts.max_documents ?? Infinity;
  if (max !== Infinity && !(Number.isInteger(max) && max >= 0)) {
    throw new RangeError(`Cannot read documents from ${path}: max_documents ${max} is not an integer >= 0`);
  }
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read the dataset: ${path} does not exist; check dataset`);
    }
    throw e;
  }
  const out: string[] = [];
  const name = opts.split ?? "train";
  if (!stat.isDirectory) {
    if (name !== "train") {
      throw new RangeError(
        `Cannot read split "${name}" of ${path}: it is one file, all of it the train split; drop split or ` +
          `give a folder of split files`,
      );
    }
    await readFileDocuments(path, field, max, out, opts.sample_by);
    return out;
  }
  // the split files the training rows are read from too: a card's, by keyword, or, for a folder
  // naming no split (of documents: a.txt, b.md, ...), all of it as train
  const layout = findSplitLayout(path, { config: opts.config });
  const files = layoutSplit(layout, name, path);
  if (!files) {
    throw new RangeError(
      `Cannot read split "${name}" of ${path}: it has ${
        Object.keys(layout.splits).join(", ") || "no split files"
      }`,
    );
  }
  for (const f of files) {
    if (out.length >= max) break;
    await readFileDocuments(f, field, max, out, opts.sample_by);
  }
  return out;
}

/** Options of {@linkcode buildTextDatasets} (and, with the reading options, {@linkcode loadTextDataset}). */
export interface BuildTextDatasetOptions {
  /** Encodes documents; its `eos_token_id` separates them unless `eos_token_id` is given. */
  tokenizer: Pick<Tokenizer, "encode" | "eos_token_id">;
  /** Tokens per block. */
  block_size: number;
  /** Tokens between block starts (default `block_size`). */
  stride?: number;
  /** Fraction of documents in train, in (0, 1]; the rest (by document hash) is validation (default 1). */
  train_split?: number;
  /** EOS id placed after every document (default the tokenizer's; none when both are null). */
  eos_token_id?: number | null;
  /** Named in errors (default `<texts>`). */
  source?: string;
}

/** Options of {@linkcode loadTextDataset}: how to read the documents, then how to pack them. */
export interface LoadTextDatasetOptions extends BuildTextDatasetOptions, ReadDocumentsOptions {}

/** Train and (when `train_split < 1`) validation datasets. */
export interface TextDatasets {
  /** Blocks of the documents hashed into train (all of them when `train_split` is 1). */
  train: TextDataset;
  /** Blocks of the remaining documents; null when `train_split` is 1. */
  validation: TextDataset | null;
}

function pack(docs: string[], tok: Pick<Tokenizer, "encode">, eos: number | null): Int32Array {
  const parts: number[][] = [];
  let n = 0;
  for (const d of docs) {
    const ids = tok.encode(d);
    parts.push(ids);
    n += ids.length + (eos === null ? 0 : 1);
  }
  const out = new Int32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
    if (eos !== null) out[o++] = eos;
  }
  return out;
}

/**
 * Tokenize and pack documents into a train dataset and, with `train_split < 1`, a validation
 * dataset (a document goes to train when the SHA-256 fraction of its text is below `train_split`).
 * @param texts the documents
 * @param opts tokenizer, `block_size`, `stride`, `train_split`, `eos_token_id`, `source`
 * @returns the datasets
 * @throws {RangeError} for a `train_split` outside (0, 1], an `eos_token_id` that is not an id, or a
 *   side with fewer tokens than one block (naming the source)
 * @throws {TypeError} for the reading options of {@linkcode loadTextDataset} (the texts are given)
 * @example
 * ```ts
 * import { buildTextDatasets } from "./text_dataset.ts";
 * const tokenizer = { eos_token_id: 0, encode: (s: string) => [...s].map((c) => c.charCodeAt(0)) };
 * const { train } = buildTextDatasets(["abc", "de"], { tokenizer, block_size: 3 });
 * if (train.ids.join() !== "97,98,99,0,100,101,0" || train.num_blocks !== 2) throw new Error("pack");
 * ```
 */
export function buildTextDatasets(texts: readonly string[], opts: BuildTextDatasetOptions): TextDatasets {
  const src = opts.source ?? "<texts>";
  const frac = opts.train_split ?? 1;
  if (!(frac > 0 && frac <= 1)) {
    throw new RangeError(`Cannot split ${src}: train_split ${frac} is not in (0, 1]; use e.g. 0.9`);
  }
  const reading = (["dataset_text_field", "split", "max_documents"] as const).filter((k) =>
    (opts as LoadTextDatasetOptions)[k] !== undefined
  );
  if (reading.length) {
    throw new TypeError(
      `Cannot build datasets from ${src}: ${reading.join(", ")} ${agree(reading).is} for reading files ` +
        `(loadTextDataset), and these texts are given; drop ${agree(reading).it}`,
    );
  }
  const eos = opts.eos_token_id !== undefined ? opts.eos_token_id : opts.tokenizer.eos_token_id;
  if (eos !== null && !(Number.isInteger(eos) && eos >= 0 && eos < 2 ** 31)) {
    throw new RangeError(
      `Cannot build datasets from ${src}: eos_token_id ${eos} is not a token id (or null)`,
    );
  }
  const train: string[] = [], valid: string[] = [];
  for (const t of texts) (frac === 1 || hashFraction(t) < frac ? train : valid).push(t);
  const ds = (docs: string[], what: string) =>
    new TextDataset(pack(docs, opts.tokenizer, eos), {
      block_size: opts.block_size,
      stride: opts.stride,
      source: `${src}${what}`,
    });
  return {
    train: ds(train, frac < 1 ? " (train split)" : ""),
    validation: frac < 1 ? ds(valid, " (validation split)") : null,
  };
}

/**
 * Read a data source ({@linkcode readTextDocuments}) and build its datasets
 * ({@linkcode buildTextDatasets}).
 * @param path file or folder
 * @param opts as both
 * @returns the datasets
 * @throws {RangeError} when the source is empty or has fewer tokens than one block (naming the file)
 * @example
 * ```ts
 * import { loadTextDataset } from "./text_dataset.ts";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await Deno.writeTextFile(path, '{"text": "hello"}\n{"text": "world"}\n');
 * const tokenizer = { eos_token_id: 0, encode: (s: string) => [...s].map((c) => c.charCodeAt(0)) };
 * const { train } = await loadTextDataset(path, { tokenizer, block_size: 4 });
 * if (train.num_tokens !== 12 || train.num_blocks !== 3) throw new Error(`${train.num_tokens}`);
 * await Deno.remove(path);
 * ```
 */
export async function loadTextDataset(path: string, opts: LoadTextDatasetOptions): Promise<TextDatasets> {
  const { dataset_text_field, split, max_documents, ...build } = opts;
  const docs = await readTextDocuments(path, { dataset_text_field, split, max_documents });
  return buildTextDatasets(docs, { ...build, source: opts.source ?? path });
}
