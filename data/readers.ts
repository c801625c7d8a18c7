/**
 * One entry point over the record formats: `readDataset` / `streamDataset` pick the reader from
 * the file extension (jsonl, json, csv, tsv, txt, parquet; the text formats also as `.gz` / `.zst` / `.xz` / `.bz2`,
 * decompressed as they stream), or read a folder of split files
 * (`train.jsonl`, `validation.csv`, `train-00000-of-00002.parquet`, also under `data/`), then apply
 * the split, the seeded shuffle and `max_samples`.
 * @module
 */
import { basename, join } from "node:path";
import { streamCsv } from "./csv.ts";
import { readJson, streamJsonl } from "./jsonl.ts";
import { streamParquet } from "./parquet.ts";
import { pickSplit, shuffleRecords, splitKeySide, type SplitOptions, splitRecords } from "./split.ts";
import { streamText } from "./text.ts";
import { COMPRESSED_NAMES, compressionOf, withoutCompression } from "./_lines.ts";
import { type CardConfig, cardPatterns, folderCardConfigs, globRegExp, pickCardConfig } from "./_card.ts";
import { checkSelectOptions, type SelectOptions } from "./_select.ts";
import { agree, checkBooleans, checkPathArg, refuseUnknownOptions } from "../util/problems.ts";
import { checkSeed } from "../util/random.ts";
import { isDirSync, isFileSync } from "../util/atomic.ts";

export { COMPRESSED_NAMES, refuseCompressedOutput } from "./_lines.ts";

/** One record: column name to value. */
export type DataRecord = Record<string, unknown>;

/** The file formats the readers understand. */
export type DataFormat = "jsonl" | "json" | "csv" | "tsv" | "text" | "parquet";

/** Options of {@linkcode readDataset} and {@linkcode streamDataset}. */
export interface ReadOptions extends SelectOptions, SplitOptions {
  /** Force a format instead of guessing from the extension. */
  format?: DataFormat;
  /** Which split: a split file of a folder, or `train` / `validation` cut from one file. */
  split?: string;
  /** Shuffle with `seed` (default 42) before `max_samples` is applied. */
  shuffle?: boolean;
  /** CSV/TSV field separator. */
  delimiter?: string;
  /** Text files: `"line"`, `"paragraph"` or `"document"` per record. */
  sample_by?: "line" | "paragraph" | "document";
  /** JSON files: the key holding the record array (default `"data"`). */
  field?: string;
  /** A folder with a card (README.md `configs:`): the config whose splits to read (HF `name`). */
  config?: string;
}

const EXTENSIONS: Record<string, DataFormat> = {
  jsonl: "jsonl",
  ndjson: "jsonl",
  json: "json",
  csv: "csv",
  tsv: "tsv",
  txt: "text",
  text: "text",
  md: "text",
  parquet: "parquet",
};

/**
 * The format of a data file from its extension.
 *
 * @param path a file name
 * @returns the format
 * @throws {TypeError} an unknown extension (listing the known ones)
 * @example
 * ```ts
 * import { detectFormat } from "./readers.ts";
 * if (detectFormat("a/train-00000-of-00001.parquet") !== "parquet") throw new Error("format");
 * ```
 */
export function detectFormat(path: string): DataFormat {
  const name = basename(path);
  const codec = compressionOf(name);
  const inner = withoutCompression(name);
  const ext = inner.includes(".") ? inner.split(".").pop()!.toLowerCase() : "";
  const f = Object.hasOwn(EXTENSIONS, ext) ? EXTENSIONS[ext] : undefined;
  if (f === "parquet" && codec) {
    throw new TypeError(
      `Cannot read ${path}: parquet compresses its own pages, and a compressed .parquet file is not read; ` +
        `decompress it first (gunzip -k, unzstd, unxz -k, bunzip2 -k)`,
    );
  }
  if (!f) {
    throw new TypeError(
      `Cannot guess the format of ${path}: ${
        ext ? `extension ".${ext}" is not` : "it has no extension; use"
      } ` +
        `one of ${
          Object.keys(EXTENSIONS).map((e) => "." + e).join(", ")
        } (each also as ${COMPRESSED_NAMES}, but parquet); ` +
        `rename the file (from code: pass format)`,
    );
  }
  return f;
}

/**
 * A data file name's format with its compression (`jsonl`, `jsonl.gz`), or null when it is not a
 * data file.
 * @throws {TypeError} for a data file in a compression that is not read (`train.jsonl.bz2`,
 *   `train.parquet.gz`): skipped, it would leave its split silently empty
 */
function formatKey(name: string): string | null {
  const inner = name.slice(0, name.lastIndexOf("."));
  const known = inner.includes(".") && Object.hasOwn(EXTENSIONS, inner.split(".").pop()!.toLowerCase());
  try {
    const codec = compressionOf(name);
    return detectFormat(name) + (codec ? "." + codec : "");
  } catch (e) {
    if (known) throw e;
    return null;
  }
}

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read data: ${path} does not exist; check the path`);
    }
    throw e;
  }
}

/** HF `datasets`' split keywords: a file whose name holds one, at a boundary, belongs to that split. */
export const SPLIT_KEYWORDS: readonly [string, readonly string[]][] = [
  ["train", ["train", "training"]],
  ["validation", ["validation", "valid", "dev", "val"]],
  ["test", ["test", "testing", "eval", "evaluation"]],
];

/** Files of a dataset folder that are not data: the dataset card and HF's info files. */
export const METADATA: RegExp = /^(readme\.md|dataset_infos?\.json|dataset_dict\.json|state\.json)$/i;

/**
 * Whether a file name is a data file a folder's splits are made of (a readable format, plain or
 * compressed; not the card, `datasets`' metadata or a `.md`).
 * @throws {TypeError} for a data file in a compression that is not read (`train.jsonl.bz2`)
 */
export function isDataFile(name: string): boolean {
  return formatKey(name) !== null && !METADATA.test(name) && !/\.md$/i.test(name);
}

/** The split a data file's name gives (`keyword`: by an HF split keyword), or null for a file that is not data. */
function splitOf(name: string): { split: string; keyword: boolean } | null {
  const plain = formatKey(name) ? withoutCompression(name) : null;
  const m = plain?.match(/^([A-Za-z0-9]+)(?:[-_.].*)?\.([a-z]+)$/i);
  if (!plain || !m || m[2].toLowerCase() === "md" || METADATA.test(name)) return null;
  const stem = plain.slice(0, plain.lastIndexOf(".")).toLowerCase();
  for (const [split, words] of SPLIT_KEYWORDS) {
    if (words.some((w) => new RegExp(`(^|[-._ 0-9])${w}([-._ 0-9]|$)`).test(stem))) {
      return { split, keyword: true };
    }
  }
  return { split: m[1], keyword: false };
}

/** The data files of one folder level: by keyword split, by name, and `.md` documents. */
interface Level {
  dir: string;
  keyword: Record<string, string[]>;
  named: Record<string, string[]>;
  /** `.md` files (not the card): documents of a folder naming no split, as its text files are. */
  md: string[];
}

function scanLevel(sub: string): Level | null {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(sub)];
  } catch {
    return null;
  }
  const level: Level = { dir: sub, keyword: {}, named: {}, md: [] };
  for (const e of entries) {
    const path = join(sub, e.name); // (stat follows a link: a hub snapshot's files are links)
    if (isFileSync(path)) {
      const s = splitOf(e.name);
      if (!s && /\.md$/i.test(e.name) && !METADATA.test(e.name)) level.md.push(path);
      if (!s) continue;
      ((s.keyword ? level.keyword : level.named)[s.split] ??= []).push(path);
    } else if (e.name !== "data" && isDirSync(path)) { // train/part-0.parquet
      const split = SPLIT_KEYWORDS.find(([, words]) => words.includes(e.name.toLowerCase()))?.[0];
      if (!split) continue;
      for (const f of Deno.readDirSync(path)) {
        if (isFileSync(join(path, f.name)) && splitOf(f.name)) {
          (level.keyword[split] ??= []).push(join(path, f.name));
        }
      }
    }
  }
  return level;
}

/** Whether a data file's name holds an HF split keyword (`train`, `dev`, `sst2_validation`, ...). */
export function hasSplitKeyword(name: string): boolean {
  return splitOf(name)?.keyword ?? false;
}

/** Options of {@linkcode findSplitFiles}. */
export interface FindSplitOptions {
  /** The config of a card's `configs:` (README.md) to read; default the card's default one. */
  config?: string | null;
}

/**
 * The split files of a folder, by split name, as HF `datasets` finds them. A card (README.md) with
 * `configs:` names them: the config's `data_files` patterns by split (`data/train_sft-*`), the
 * config `opts.config` or the default one. Without one, by file name: a name holding a split
 * keyword at a boundary (`train.jsonl`, `sst2_train.jsonl`, `dev.csv` and `valid-0.jsonl` are
 * validation, `eval.tsv` test; beside them, another name is its own split up to the first `.`,
 * `-` or `_`, `unsupervised.jsonl`), files in a subfolder named for a split
 * (`train/part-0.parquet`). The folder's own files are read when they hold a keyword, else `data/`'s (a `LICENSE.txt` beside
 * `data/` is no split). The card, `datasets`' metadata (`dataset_infos.json`, ...) and any `.md`
 * are not data; links (a hub cache snapshot's files) are followed.
 *
 * @param dir the folder
 * @param opts `config`
 * @returns split name to sorted file paths
 * @throws {TypeError} when a split has files in two formats (a `validation.jsonl` and a converted
 *   `validation.csv` would be read as one split, each record twice)
 * @throws {RangeError} a card config that does not exist, or `config` for a folder without a card
 */
export function findSplitFiles(dir: string, opts: FindSplitOptions = {}): Record<string, string[]> {
  return findSplitLayout(dir, opts).splits;
}

/** A folder's splits and what names them. */
export interface SplitLayout {
  /** Split name to sorted file paths (see {@linkcode findSplitFiles}). */
  splits: Record<string, string[]>;
  /**
   * `card`: the card's `configs:`; `keyword`: file names holding split keywords; `none`: no name
   * says a split (each file is then a split of its own name here, and all of them are the train
   * split to HF: {@linkcode splitFilesOf}).
   */
  by: "card" | "keyword" | "none";
}

/** {@linkcode findSplitFiles} with what named the splits. */
export function findSplitLayout(dir: string, opts: FindSplitOptions = {}): SplitLayout {
  const card = folderCardConfigs(dir);
  const config = opts.config ?? null;
  if (!card && config !== null) {
    throw new RangeError(
      `Cannot read ${dir}: dataset config "${config}" names a config of a dataset card (README.md configs:), ` +
        `and ${dir} has none; drop the config (or give the config's folder as the dataset)`,
    );
  }
  let splits: Record<string, string[]>, where = dir, by: SplitLayout["by"] = "card";
  const picked = card ? pickCardConfig(card, config, `Cannot read ${dir}: its card`) : null;
  if (picked?.data_files) splits = cardSplits(dir, picked);
  else {
    const root = picked?.data_dir ? join(dir, picked.data_dir) : dir;
    const levels = [scanLevel(root), scanLevel(join(root, "data"))];
    // a level whose names say splits; else data/'s files (a LICENSE.txt beside data/ is no data)
    const level = levels.find((l) => l && Object.keys(l.keyword).length) ??
      [levels[1], levels[0]].find((l) => l && (Object.keys(l.named).length || l.md.length));
    const deep = level ? null : deepKeywordSplits(root);
    if (!level && !deep) return { splits: {}, by: picked ? "card" : "none" };
    where = level?.dir ?? root;
    splits = level ? { ...level.named, ...level.keyword } : deep!;
    // (a card config without data_files too)
    by = !level || Object.keys(level.keyword).length ? "keyword" : "none";
    if (level && by === "none") {
      for (const f of level.md) (splits[basename(f).replace(/\.md$/i, "")] ??= []).push(f);
      refuseCopies(where, Object.values(splits).flat());
    }
  }
  if (by !== "none") {
    for (const [split, files] of Object.entries(splits)) {
      // a gzipped copy beside its file is another format too: both would be read, each record twice
      const formats = new Set(files.map((f) => formatKey(basename(f))));
      if (formats.size > 1) {
        throw new TypeError(
          `Cannot read ${where}: split "${split}" has files in ${formats.size} formats (${
            files.map((f) => basename(f)).sort().join(", ")
          }); keep one format per split`,
        );
      }
    }
  }
  return { splits: Object.fromEntries(Object.keys(splits).sort().map((k) => [k, splits[k].sort()])), by };
}

/**
 * Files deeper down named for a split (`data/en/train.jsonl`, `data/fr/train.jsonl`), as HF's
 * `**\/train*` patterns find them when the folder and `data/` hold none; null when there are none.
 */
function deepKeywordSplits(root: string): Record<string, string[]> | null {
  const out: Record<string, string[]> = {};
  let files: string[];
  try {
    files = walk(root);
  } catch {
    return null;
  }
  for (const f of files) {
    const s = splitOf(basename(f));
    if (s?.keyword) (out[s.split] ??= []).push(join(root, f));
  }
  return Object.keys(out).length ? out : null;
}

/** Two files that differ only in format or compression (`a.jsonl`, `a.jsonl.gz`) would be read twice. */
function refuseCopies(where: string, files: string[]): void {
  const seen = new Map<string, string>();
  for (const f of files) {
    const plain = withoutCompression(basename(f)), key = plain.slice(0, plain.lastIndexOf("."));
    const other = seen.get(key.toLowerCase());
    if (other) {
      throw new TypeError(
        `Cannot read ${where}: ${other} and ${
          basename(f)
        } look like one file in two formats, and both would ` +
          `be read, each record twice; keep one`,
      );
    }
    seen.set(key.toLowerCase(), basename(f));
  }
}

/**
 * The files of split `name` of a layout, as HF reads a folder: a folder whose names say no split
 * is all train (`alpaca_data_cleaned.json` alone), and has no other split.
 * @returns the files, or null when the split is not there
 */
export function splitFilesOf(layout: SplitLayout, name: string): string[] | null {
  if (layout.by !== "none") return layout.splits[name] ?? null;
  const all = Object.values(layout.splits).flat().sort();
  return name === "train" && all.length ? all : null;
}

/** The split names of a layout as HF reads the folder ({@linkcode splitFilesOf}): one naming no split has train alone. */
export function splitNamesOf(layout: SplitLayout): string[] {
  const names = Object.keys(layout.splits);
  return layout.by !== "none" ? names : names.length ? ["train"] : [];
}

/**
 * {@linkcode splitFilesOf} of the folder `path` (null when the split is not there), refusing any
 * split but train of a folder naming no split: its other "splits" would overlap train.
 * @throws {RangeError} naming the fix
 */
export function layoutSplit(layout: SplitLayout, name: string, path: string): string[] | null {
  if (layout.by === "none" && name !== "train") {
    throw new RangeError(
      `Cannot read split "${name}" of ${path}: its files name no split, so all of them are the train split; ` +
        `name the files by split (train.*, validation.*) to read one`,
    );
  }
  return splitFilesOf(layout, name);
}

/** Every file under `dir`, as `/`-separated relative paths (links followed; `.git` and hidden folders skipped). */
function walk(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(join(dir, rel))) {
    const r = rel ? `${rel}/${e.name}` : e.name, p = join(dir, r);
    if (isFileSync(p)) out.push(r);
    else if (!e.name.startsWith(".") && isDirSync(p)) out.push(...walk(dir, r));
  }
  return out;
}

/** A card config's splits: the data files its patterns match. */
function cardSplits(dir: string, c: CardConfig): Record<string, string[]> {
  const all = walk(dir).filter((f) => isDataFile(basename(f)));
  const out: Record<string, string[]> = {};
  for (const [split, patterns] of Object.entries(cardPatterns(c))) {
    const res = patterns.map(globRegExp);
    const hit = all.filter((f) => res.some((re) => re.test(f)));
    if (!hit.length) {
      throw new RangeError(
        `Cannot read ${dir}: split "${split}" of its card (README.md configs: ${
          patterns.join(", ")
        }) matches ` +
          `no data file (jsonl, json, csv, tsv, txt, parquet); add the files, or fix the card's data_files`,
      );
    }
    out[split] = hit.map((f) => join(dir, f));
  }
  return out;
}

/**
 * Check a read's options once, before anything is read: the select options, `format` and
 * `shuffle`, and refuse the split options the read would not use (`train_split` / `split_key` cut
 * a split from one file, a folder's split is a file; `seed` orders a shuffle or a fraction split).
 *
 * @returns whether `path` is a folder
 */
const READ_OPTIONS: readonly (keyof ReadOptions)[] = [
  "format",
  "split",
  "shuffle",
  "delimiter",
  "sample_by",
  "field",
  "config",
  "columns",
  "rename",
  "max_samples",
  "train_split",
  "seed",
  "split_key",
];

function checkReadOptions(path: string, opts: ReadOptions, fn: string): boolean {
  checkPathArg(path, fn);
  refuseUnknownOptions(opts, READ_OPTIONS, fn);
  checkSelectOptions(opts, path);
  const formats = [...new Set(Object.values(EXTENSIONS))];
  if (opts.format !== undefined && !formats.includes(opts.format)) {
    throw new TypeError(
      `Cannot read ${path}: format ${JSON.stringify(opts.format)} is not one of ${
        formats.join(", ")
      }; fix it`,
    );
  }
  if (opts.seed !== undefined) checkSeed(opts.seed, `Cannot read ${path}`);
  checkBooleans(opts, ["shuffle"], `Cannot read ${path}`);
  const dir = isDir(path), cut = !dir && opts.split !== undefined;
  if (opts.config !== undefined && !dir) {
    throw new TypeError(
      `Cannot read ${path}: config picks a card config of a folder, and this is one file; drop it`,
    );
  }
  const unused = [
    opts.train_split !== undefined && !cut && "train_split",
    opts.split_key !== undefined && !cut && "split_key",
    opts.seed !== undefined && !opts.shuffle && !(cut && opts.split_key === undefined) && "seed",
  ].filter((x): x is string => !!x);
  if (unused.length) {
    const reasons = [
      unused.some((k) => k !== "seed") &&
      (dir
        ? "a folder's split is its split file"
        : "train_split and split_key cut the split named by split, and none is given"),
      unused.includes("seed") && "seed orders shuffle: true or a split cut by fraction",
    ].filter(Boolean);
    throw new TypeError(
      `Cannot read ${path}: ${unused.join(", ")} would do nothing (${reasons.join("; ")}); drop ${
        agree(unused).it
      }`,
    );
  }
  return dir;
}

/** Options that only one format reads (HF's builders refuse the others' as unknown config keys). */
const FORMAT_OPTIONS = {
  delimiter: ["csv", "tsv"],
  sample_by: ["text"],
  field: ["json"],
} as const satisfies Record<string, readonly DataFormat[]>;

function streamFile(path: string, opts: ReadOptions, max?: number): AsyncIterable<DataRecord> {
  const o = { columns: opts.columns, rename: opts.rename, max_samples: max === Infinity ? undefined : max };
  const format = opts.format ?? detectFormat(path);
  for (const [k, formats] of Object.entries(FORMAT_OPTIONS)) {
    if (
      opts[k as keyof typeof FORMAT_OPTIONS] !== undefined && !(formats as readonly string[]).includes(format)
    ) {
      throw new TypeError(
        `Cannot read ${path}: ${k} is for ${formats.join("/")} files, and this is ${format}; drop it`,
      );
    }
  }
  switch (format) {
    case "jsonl":
      return streamJsonl(path, o);
    case "json":
      return (async function* () {
        yield* await readJson(path, { ...o, field: opts.field });
      })();
    case "csv":
    case "tsv":
      return streamCsv(path, {
        ...o,
        delimiter: opts.delimiter ?? (opts.format === "tsv" ? "\t" : undefined),
      });
    case "text":
      return streamText(path, { ...o, sample_by: opts.sample_by });
    case "parquet":
      return streamParquet(path, o);
  }
}

/**
 * Stream the records of a file, or of one split of a folder of split files, in order. A split of
 * a single file is possible here only by hash (`split_key`); a shuffled split needs
 * {@linkcode readDataset}.
 *
 * @param path a data file or a folder of split files
 * @param opts {@linkcode ReadOptions} (without `shuffle`)
 * @returns the records
 * @throws {RangeError} a split that does not exist (listing those that do)
 * @throws {TypeError} `shuffle`, or a fraction split of one file, which cannot stream
 */
export async function* streamDataset(path: string, opts: ReadOptions = {}): AsyncGenerator<DataRecord> {
  yield* streamChecked(path, opts, checkReadOptions(path, opts, "streamDataset"));
}

/** {@linkcode streamDataset} once its options are checked (`dir`: whether `path` is a folder). */
async function* streamChecked(path: string, opts: ReadOptions, dir: boolean): AsyncGenerator<DataRecord> {
  const max = opts.max_samples ?? Infinity;
  let n = 0;
  if (dir) {
    const layout = findSplitLayout(path, { config: opts.config }), name = opts.split ?? "train";
    const files = layoutSplit(layout, name, path) ?? pickSplit(layout.splits, name, path);
    for (const f of files) {
      for await (const r of streamFile(f, opts, max - n)) {
        yield r;
        if (++n >= max) return;
      }
    }
    return;
  }
  if (opts.shuffle || (opts.split !== undefined && opts.split_key === undefined)) {
    throw new TypeError(
      `Cannot stream ${path} with ${
        opts.shuffle ? "shuffle" : `split "${opts.split}"`
      }: it needs every record in ` +
        `memory; use readDataset, or split by hash with split_key`,
    );
  }
  if (opts.split === undefined) {
    yield* streamFile(path, opts, opts.max_samples);
    return;
  }
  const name = pickSplit({ train: "train", validation: "validation" }, opts.split, path);
  const frac = opts.train_split ?? 0.9;
  if (!(frac > 0 && frac < 1)) {
    throw new RangeError(`Cannot split ${path}: train_split ${frac} is not in (0, 1); use e.g. 0.9`);
  }
  const key = opts.split_key!;
  if (max === 0) return;
  let read = 0;
  for await (const r of streamFile(path, opts)) {
    read++;
    if (!Object.hasOwn(r, key)) {
      throw new TypeError(
        `Cannot split ${path} by split_key "${key}": a record has columns ${Object.keys(r).join(", ")}`,
      );
    }
    const side = splitKeySide(r[key], frac, `Cannot split ${path} by split_key "${key}": record ${read}`);
    if (side !== name) continue;
    yield r;
    if (++n >= max) return;
  }
}

/**
 * Read a data file, or one split of a folder of split files, into memory. With `split` on a single
 * file, records are cut into `train` / `validation` by `train_split` (after a seeded shuffle) or by
 * the hash of `split_key`. Then `shuffle` (seeded) and `max_samples` apply.
 *
 * @param path a data file or a folder of split files
 * @param opts {@linkcode ReadOptions}
 * @returns the records
 * @throws {RangeError} a split that does not exist (listing those that do), a bad `train_split`
 * @throws {SyntaxError} a malformed file (naming file and line)
 * @throws {TypeError} a missing column (listing those that exist), an unknown extension
 * @example
 * ```ts
 * import { readDataset } from "./readers.ts";
 * import { writeJsonl } from "./jsonl.ts";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await writeJsonl(path, Array.from({ length: 10 }, (_, i) => ({ text: `t${i}`, label: i % 2 })));
 * const val = await readDataset(path, { split: "validation", train_split: 0.8, seed: 1 });
 * if (val.length !== 2) throw new Error(`${val.length}`);
 * await Deno.remove(path);
 * ```
 */
export async function readDataset(path: string, opts: ReadOptions = {}): Promise<DataRecord[]> {
  const dir = checkReadOptions(path, opts, "readDataset");
  const direct = !opts.shuffle && (opts.split === undefined || dir || opts.split_key !== undefined);
  let records: DataRecord[] = [];
  if (direct) {
    for await (const r of streamChecked(path, opts, dir)) records.push(r);
    return records;
  }
  for await (
    const r of streamChecked(path, {
      ...opts,
      split: dir ? opts.split : undefined,
      max_samples: undefined,
      shuffle: false,
      // the split and the shuffle are made below, from every record
      train_split: undefined,
      split_key: undefined,
      seed: undefined,
    }, dir)
  ) {
    records.push(r);
  }
  if (opts.split !== undefined && !dir) {
    records = pickSplit(splitRecords(records, opts), opts.split, path);
  }
  if (opts.shuffle) records = shuffleRecords(records, { seed: opts.seed });
  return opts.max_samples === undefined ? records : records.slice(0, opts.max_samples);
}
