/**
 * The data side of the three recipes (summarization, translation, classification): one call turns
 * a data source into `{ train, validation, labels, description }` of `{ source, target }` examples.
 * Sources: the Debian datasets of the shared folder (the default, offline), the hub datasets CNN/DailyMail, WMT14
 * and GLUE SST-2 (through the hub cache), or local files (`.jsonl`, `.json`, `.csv`, `.tsv`,
 * `.parquet`, or a folder of `train.*` / `validation.*` files). Every problem a run would hit later
 * (a missing column, an empty split, a label outside the label set, a corrupt file, an unreachable
 * hub) is a one-line error here, before any training.
 * @module
 */
import { IS_NULL } from "./csv.ts";
import { errorChain } from "../util/format.ts";
import { agree, isObject } from "../util/problems.ts";
import { isDirSync } from "../util/atomic.ts";
import { join, relative } from "node:path";
import { hubCacheDir, HubError } from "../models/hub/hub.ts";
import { debianRoot } from "./debian.ts";
import {
  type HubDatasetOptions,
  loadCnnDailymail,
  loadHubDataset,
  loadSst2,
  loadWmt14,
} from "./hub_datasets.ts";
import {
  COMPRESSED_NAMES,
  type DataRecord,
  detectFormat,
  findSplitLayout,
  readDataset,
  splitFilesOf,
} from "./readers.ts";
import { parquetClassLabels } from "./parquet.ts";
import { shuffleRecords } from "./split.ts";
import { showValue } from "../util/json.ts";

/** The three recipes. */
export type TaskKind = "summarization" | "translation" | "classification";

/** One example: classification targets are label names (strings). */
export interface TaskExample {
  /** The record's `id` (or `idx`) column, when it has one. */
  id?: string;
  /** The input text, as stored (whitespace kept). */
  source: string;
  /** The reference output text, or the label name. */
  target: string;
}

/** The examples of one task, ready for a recipe. */
export interface TaskData {
  /** Training examples. */
  train: TaskExample[];
  /** Evaluation examples (empty for a single local file without `eval_file`). */
  validation: TaskExample[];
  /** classification: the label set in a fixed order (names); null otherwise */
  labels: string[] | null;
  /** one line saying where the data came from, e.g. "Debian classification-binary (../shared/datasets/debian), 1390 train / 182 validation" */
  description: string;
}

/** Options of {@linkcode loadTaskData}; every field is optional. */
export interface LoadTaskDataOptions {
  /** "debian" (default: ../shared/datasets/debian via data/debian.ts `debianRoot`), a hub dataset id ("cnn_dailymail" | "abisee/cnn_dailymail", "wmt14" | "wmt/wmt14", "glue" | "nyu-mll/glue", "sst2"), or a local path: a .jsonl/.json/.csv/.tsv/.parquet file (train only, or pass eval_file) or a folder holding train.* and validation.* files */
  dataset?: string;
  /** Hub dataset config: "3.0.0" (cnn, default), "de-en" (wmt14, default), "sst2" (glue, default). */
  dataset_config?: string;
  /** Which Debian dataset (default: the task's own; classification may pick "classification-binary"). */
  debian_task?: "summarization" | "translation" | "classification" | "classification-binary";
  /** A local evaluation file (for a single-file `dataset`, or instead of a folder's validation files). */
  eval_file?: string;
  /** The input column (defaults per source: cnn article, wmt14/Debian/local en, sst2 sentence, Debian/local document or text). */
  source_column?: string;
  /** The output column (cnn highlights, wmt14/Debian/local de, sst2/Debian/local label, summary). */
  target_column?: string;
  /** classification: names for integer labels 0..n-1 (sst2 default ["negative","positive"], Debian binary default ["other","games"]); also the allowed label set for string labels */
  label_names?: string[];
  /** "en-de" (default: source en, target de) or "de-en"; wmt14 pairs other than de-en default to "en-xx". */
  translation_direction?: string;
  /** Debian translation only: keep only synopses ("short") or long descriptions ("long"). */
  level?: "short" | "long";
  /** Hub split (or local folder split) for training; default "train". */
  train_split?: string;
  /** Hub split (or local folder split) for evaluation; default "validation". */
  eval_split?: string;
  /** Keep at most this many training examples (>= 1). */
  max_train_samples?: number;
  /** Keep at most this many evaluation examples (>= 0). */
  max_eval_samples?: number;
  /**
   * Shuffle a split with this seed before cutting it to its `max_*_samples`, so the cut is a random
   * sample (default: none, file order). A split that is not cut keeps its file order.
   */
  seed?: number;
  /** hub options passed through to data/hub_datasets.ts (endpoint, cache_dir, offline, token, ...) */
  hub?: Record<string, unknown>;
}

const TEXT_KEYS = [
  "dataset",
  "dataset_config",
  "eval_file",
  "source_column",
  "target_column",
  "translation_direction",
  "train_split",
  "eval_split",
] as const;
const KEYS: string[] = [
  ...TEXT_KEYS,
  ..."debian_task label_names level max_train_samples max_eval_samples seed hub".split(" "),
];

/** A hub dataset: its repo, its task, its configs (undefined: any) and the default one. */
interface HubSpec {
  repo: string;
  task: TaskKind;
  configs?: string[];
  config: string;
}

const HUB: Record<string, HubSpec> = {
  cnn_dailymail: {
    repo: "abisee/cnn_dailymail",
    task: "summarization",
    configs: ["1.0.0", "2.0.0", "3.0.0"],
    config: "3.0.0",
  },
  wmt14: {
    repo: "wmt/wmt14",
    task: "translation",
    configs: "cs-en de-en fr-en hi-en ru-en".split(" "),
    config: "de-en",
  },
  glue: { repo: "nyu-mll/glue", task: "classification", config: "sst2" },
  sst2: { repo: "nyu-mll/glue", task: "classification", configs: ["sst2"], config: "sst2" },
};
for (const k of ["cnn_dailymail", "wmt14", "glue"]) HUB[HUB[k].repo] = HUB[k];

const FORMATS = ["jsonl", "json", "csv", "tsv", "parquet"];

/** The rows of one split before they become examples. */
interface RawSplit {
  rows: DataRecord[];
  /** The original position of each row (for messages after a shuffle or filter). */
  index: number[];
  /** The split's place: a file, a folder split or a hub split. */
  where: string;
  /** Row `i` of the source, in messages. */
  name: (i: number) => string;
  /** Rows the source held (after the level filter, before `max_*_samples`); -1 unknown. */
  total: number;
}

interface RawData {
  train: RawSplit;
  validation: RawSplit | null;
  /** Candidate [source, target] column pairs; the first that the first train row has wins. */
  columns: [string, string][];
  labelNames?: string[];
  /** A parquet file's ClassLabel names, by column (HF `datasets`' metadata). */
  classLabels?: Record<string, string[]>;
  /** The source for the description, e.g. `Debian translation`, and notes for its parentheses. */
  what: string;
  notes: string[];
}

type Options = LoadTaskDataOptions & { task: TaskKind };

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ");

function bad(o: Options, where: string, msg: string): TypeError {
  return new TypeError(oneLine(`Cannot load ${o.task} data from ${where}: ${msg}`));
}

function outside(o: Options, where: string, msg: string): RangeError {
  return new RangeError(oneLine(`Cannot load ${o.task} data from ${where}: ${msg}`));
}

function checkOptions(task: TaskKind, o: LoadTaskDataOptions): void {
  if (!["summarization", "translation", "classification"].includes(task)) {
    throw new TypeError(
      `Cannot load data for task ${
        JSON.stringify(task)
      }: the tasks are summarization, translation, classification`,
    );
  }
  const p = Object.keys(o).filter((k) => !KEYS.includes(k)).map((k) => `unknown option "${k}"`);
  if (p.length) p.push(`the options are ${KEYS.join(", ")}`);
  for (const k of TEXT_KEYS) {
    if (o[k] !== undefined && (typeof o[k] !== "string" || o[k] === "")) {
      p.push(`${k} ${JSON.stringify(o[k])} is not a non-empty string`);
    }
  }
  for (const [k, min] of [["max_train_samples", 1], ["max_eval_samples", 0], ["seed", 0]] as const) {
    if (o[k] !== undefined && !(Number.isInteger(o[k]) && o[k]! >= min)) {
      p.push(`${k} ${o[k]} is not an integer >= ${min}`);
    }
  }
  const l = o.label_names;
  if (l !== undefined && task !== "classification") p.push(`label_names is for classification only`);
  else if (l !== undefined && (!Array.isArray(l) || !l.length || !l.every((x) => typeof x === "string"))) {
    p.push(`label_names is not a non-empty list of names`);
  } else if (l !== undefined && new Set(l).size !== l.length) {
    p.push(`label_names ${l.join(", ")} has a name twice`);
  } else if (l !== undefined && l.some((x) => x === "" || x.trim() !== x)) {
    const bad = l.find((x) => x === "" || x.trim() !== x)!;
    p.push(
      `label_names ${JSON.stringify(bad)} is empty or has spaces around it (its verbalizer would score ` +
        `other tokens); write the names as the data's labels, e.g. ${JSON.stringify(bad.trim() || "games")}`,
    );
  }
  const dir = o.translation_direction;
  if (dir !== undefined && task !== "translation") p.push(`translation_direction is for translation only`);
  else if (dir !== undefined && !/^[A-Za-z_]+-[A-Za-z_]+$/.test(dir)) {
    p.push(`translation_direction "${dir}" is not like "en-de"`);
  }
  if (o.level !== undefined && o.level !== "short" && o.level !== "long") {
    p.push(`level "${o.level}" is not "short" or "long"`);
  }
  if (o.hub !== undefined && (o.hub === null || typeof o.hub !== "object" || Array.isArray(o.hub))) {
    p.push(`hub is not an object of hub options`);
  }
  if (p.length) throw new TypeError(`Cannot load ${task} data: ${p.join("; ")}; fix the options`);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

const directionOf = (o: Options, fallback: string) =>
  (o.translation_direction ?? fallback).split("-") as [string, string];

/** One local file, or one split of a folder; `keep` filters before `seed` and `max`. */
async function readLocal(
  o: Options,
  path: string,
  split: string,
  max?: number,
  keep?: (r: DataRecord) => boolean,
): Promise<RawSplit> {
  const dir = Deno.statSync(path).isDirectory;
  if (!dir) {
    let format: string | undefined;
    try {
      format = detectFormat(path);
    } catch { /* named below */ }
    if (!format || !FORMATS.includes(format)) {
      // the format's extension, before a compression's (t.txt.gz is text, not ".gz")
      const ext = format === "text" ? "text (.txt)" : `".${path.split(".").pop()?.toLowerCase() ?? ""}"`;
      throw bad(
        o,
        path,
        `${
          format === "text" ? "plain " + ext : "extension " + ext
        } is not one of .jsonl, .ndjson, .json, .csv, ` +
          `.tsv, .parquet (each but parquet also ${COMPRESSED_NAMES}); convert or rename the file`,
      );
    }
  }
  // Only a split that is cut is shuffled; without a shuffle or a filter the reader may stop early.
  const shuffle = o.seed !== undefined && max !== undefined;
  const early = !shuffle && !keep && max !== 0 ? max : undefined;
  const rows = await readDataset(path, { split: dir ? split : undefined, max_samples: early });
  let index = rows.map((_, i) => i);
  if (keep) index = index.filter((i) => keep(rows[i]));
  const total = index.length;
  if (shuffle) index = shuffleRecords(index, { seed: o.seed });
  if (max !== undefined) index = index.slice(0, max);
  const where = dir ? `${path} split "${split}"` : path;
  return { rows: index.map((i) => rows[i]), index, where, name: (i) => `${where} record ${i + 1}`, total };
}

async function fromDebian(o: Options): Promise<RawData> {
  const t = o.debian_task ?? o.task;
  if (t !== o.task && !(o.task === "classification" && t === "classification-binary")) {
    throw bad(o, "Debian", `debian_task "${t}" is not a ${o.task} dataset; use debian_task "${o.task}"`);
  }
  if (o.level !== undefined && t !== "translation") {
    throw bad(o, `Debian ${t}`, `level is for Debian translation only; drop it`);
  }
  const root = debianRoot();
  const dir = join(root, t);
  if (!exists(dir)) {
    throw new Deno.errors.NotFound(
      `Cannot load ${o.task} data from Debian ${t}: ${dir} does not exist; put the Debian datasets at ${root} ` +
        `(or set FLEDGE_DEBIAN_DATA to their folder), or pass --dataset`,
    );
  }
  const keep = o.level === undefined ? undefined : (r: DataRecord) => r.level === o.level;
  // One file per split: name the file rather than the folder.
  const read = async (split: string, max?: number): Promise<RawSplit> => {
    const where = join(dir, `${split}.jsonl`);
    return { ...await readLocal(o, dir, split, max, keep), where, name: (i) => `${where} record ${i + 1}` };
  };
  const columns: [string, string] = t === "summarization"
    ? ["document", "summary"]
    : t === "translation"
    ? directionOf(o, "en-de")
    : ["text", "label"];
  let shown = relative(Deno.cwd(), root) || root;
  if (shown.split("/").filter((x) => x === "..").length > 3) shown = root;
  return {
    train: await read("train", o.max_train_samples),
    validation: await read("validation", o.max_eval_samples),
    columns: [columns],
    labelNames: t === "classification-binary" ? ["other", "games"] : undefined,
    what: `Debian ${t}`,
    notes: [shown, ...(o.level ? [`level ${o.level}`] : [])],
  };
}

/** The hub unreachable, or offline, with the split not cached: one line that says what to do. */
function hubFailure(e: HubError, o: Options, where: string): HubError {
  const hub = o.hub ?? {};
  let endpoint = typeof hub.endpoint === "string" ? hub.endpoint : undefined;
  try {
    endpoint ??= Deno.env.get("HF_ENDPOINT");
  } catch { /* no env permission: the default applies */ }
  const cache = hubCacheDir({ cache_dir: typeof hub.cache_dir === "string" ? hub.cache_dir : undefined });
  const why = e.kind === "offline"
    ? `offline mode (HF_HUB_OFFLINE, or hub offline / local_files_only)`
    : `the hub could not be reached (${errorChain(e.cause ?? e)})`;
  return new HubError(
    e.kind,
    oneLine(
      `Cannot load ${o.task} data from ${where}: ${why} and the split is not (fully) in the cache ${cache}; ` +
        `check the network and HF_ENDPOINT (now ${
          endpoint ?? "https://huggingface.co"
        }), run once online to fill ` +
        `the cache (then HF_HUB_OFFLINE=1 works), or leave out --dataset to use the Debian data offline`,
    ),
    { status: e.status, cause: e },
  );
}

async function fromHub(o: Options, name: string, spec: HubSpec): Promise<RawData> {
  if (spec.task !== o.task) {
    throw bad(
      o,
      `hub dataset ${spec.repo}`,
      `it is a ${spec.task} dataset; pass a ${o.task} dataset (or leave out --dataset for the Debian data)`,
    );
  }
  const config = o.dataset_config ?? spec.config;
  if (spec.configs && !spec.configs.includes(config)) {
    throw bad(
      o,
      `hub dataset ${name}`,
      `dataset_config "${config}" is not one of ${spec.configs.join(", ")}`,
    );
  }
  let columns: [string, string] = spec.task === "summarization"
    ? ["article", "highlights"]
    : ["sentence", "label"];
  if (spec.task === "translation") {
    const langs = config.split("-");
    const other = langs[0] === "en" ? langs[1] : langs[0];
    columns = directionOf(o, `en-${other}`);
    if (!columns.every((l) => langs.includes(l)) || columns[0] === columns[1]) {
      throw bad(
        o,
        `hub dataset ${spec.repo} ${config}`,
        `translation_direction "${columns.join("-")}" does not use the languages ${
          langs.join(", ")
        }; use e.g. "en-${other}"`,
      );
    }
  }
  const load = async (split: string, max?: number): Promise<RawSplit> => {
    const where = `hub dataset ${spec.repo} config "${config}" split "${split}"`;
    // max_eval_samples 0: no evaluation wanted, nothing to fetch.
    if (max === 0) return { rows: [], index: [], where, name: String, total: -1 };
    const opts = {
      ...(o.hub as HubDatasetOptions),
      split,
      max_samples: max,
      ...(o.seed !== undefined && max !== undefined ? { shuffle: true, seed: o.seed } : {}),
    };
    let rows: DataRecord[];
    try {
      rows = spec.task === "summarization"
        ? await loadCnnDailymail({ ...opts, config: config as "3.0.0" })
        : spec.task === "translation"
        ? await loadWmt14({ ...opts, language_pair: config as "de-en" })
        : config === "sst2"
        ? await loadSst2(opts)
        : await loadHubDataset(spec.repo, { ...opts, config });
    } catch (e) {
      if (e instanceof HubError && (e.kind === "connection" || e.kind === "offline")) {
        throw hubFailure(e, o, where);
      }
      throw e;
    }
    const row = o.seed !== undefined && max !== undefined ? "sampled row" : "row";
    return {
      rows,
      index: rows.map((_, i) => i),
      where,
      name: (i) => `${where} ${row} ${i}`,
      total: rows.length,
    };
  };
  return {
    train: await load(o.train_split ?? "train", o.max_train_samples),
    validation: await load(o.eval_split ?? "validation", o.max_eval_samples),
    columns: [columns],
    labelNames: config === "sst2" ? ["negative", "positive"] : undefined,
    what: `hub dataset ${spec.repo} ${config}`,
    notes: [],
  };
}

async function fromLocal(o: Options, path: string): Promise<RawData> {
  const dir = Deno.statSync(path).isDirectory;
  const train = await readLocal(o, path, o.train_split ?? "train", o.max_train_samples);
  const evalSplit = o.eval_split ?? "validation";
  let validation: RawSplit | null = null;
  if (o.eval_file !== undefined) {
    if (!exists(o.eval_file)) throw bad(o, o.eval_file, `eval_file does not exist; check the path`);
    validation = await readLocal(o, o.eval_file, evalSplit, o.max_eval_samples);
  } else if (dir) validation = await readLocal(o, path, evalSplit, o.max_eval_samples);
  const columns: Record<TaskKind, [string, string][]> = {
    summarization: [["document", "summary"]],
    // flat language columns, or Hugging Face's wmt14 layout: a translation struct of them
    translation: o.translation_direction
      ? [directionOf(o, "en-de"), directionOf(o, "en-de").map((l) => `translation.${l}`) as [string, string]]
      : [["en", "de"], ["source", "target"], ["translation.en", "translation.de"]],
    classification: [["text", "label"]],
  };
  // a datasets-made parquet file names its ClassLabel ids (glue/sst2 saved locally: negative, positive)
  const file = dir ? splitFilesOf(findSplitLayout(path), o.train_split ?? "train")?.[0] : path;
  const classLabels = o.task === "classification" && file && /\.parquet$/i.test(file)
    ? await parquetClassLabels(file)
    : {};
  return {
    train,
    validation,
    columns: columns[o.task],
    what: path,
    notes: validation ? [] : ["no eval_file"],
    classLabels,
  };
}

/** A raw label as a name: integers (also as digit strings) through `names`, which also bound strings. */
function labelOf(v: unknown, names: string[] | undefined, fail: (msg: string) => Error): string {
  if (typeof v === "string" && v !== v.trim() || v === "" || v === null) {
    throw fail(
      `${
        v === null
          ? `label ${IS_NULL}`
          : `label ${JSON.stringify(v)} is ${v === "" ? "empty" : "padded with spaces"}`
      }; fix the record (a label is a name or an integer)`,
    );
  }
  // a label that is one of the names is that name, an integer (1 or "1") too: a label set of
  // integers (1, 2 with no label_names) keeps them as they are
  const text = Number.isInteger(v) ? String(v) : v;
  if (typeof text === "string" && (!names || names.includes(text))) return text;
  const n = typeof v === "number" ? v : typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : NaN;
  const fix = `fix the record, or pass --label_names with every label`;
  const set = `the label set (the labels are ${names?.join(", ")})`;
  if (!Number.isInteger(n)) {
    throw fail(
      names && typeof v === "string"
        ? `label ${JSON.stringify(v)} is not in ${set}; ${fix}`
        : `label ${JSON.stringify(v)} is not a label name or an integer; fix the record`,
    );
  }
  if (!names) return String(n);
  if (n >= 0 && n < names.length) return names[n];
  throw fail(`label ${JSON.stringify(v)} is outside 0..${names.length - 1} of ${set}; ${fix}`);
}

/**
 * The examples of one split. `names` maps integer labels; `allowed` (the label set derived from
 * the train split) bounds the validation labels when no names were given.
 */
function toExamples(
  o: Options,
  raw: RawSplit,
  [src, tgt]: [string, string],
  names?: string[],
  allowed?: string[],
): TaskExample[] {
  return raw.rows.map((r, k) => {
    const where = raw.name(raw.index[k]);
    const [sv, tv] = [cell(r, src), cell(r, tgt)];
    for (const [c, v, flag] of [[src, sv, "source_column"], [tgt, tv, "target_column"]] as const) {
      if (v === undefined) {
        const have = columnsOf(r).join(", ") || "(none)";
        throw bad(
          o,
          where,
          `column "${c}" is missing (the record has columns ${have}); pass --${flag} to name the right one (--source_column/--target_column map the columns)`,
        );
      }
    }
    if (typeof sv !== "string") {
      throw bad(
        o,
        where,
        `column "${src}" is ${showValue(sv)}, expected a string; fix the record or pass --source_column`,
      );
    }
    let target: string;
    if (o.task === "classification") {
      target = labelOf(tv, names, (m) => outside(o, where, `column "${tgt}": ${m}`));
      if (allowed && !allowed.includes(target)) {
        throw outside(
          o,
          where,
          `label ${JSON.stringify(tv)} is not in the label set of the train split (${
            allowed.join(", ")
          }); fix the record, or pass --label_names with every label${
            o.max_train_samples !== undefined
              ? `, or raise max_train_samples (${o.max_train_samples} train records gave that set)`
              : ""
          }`,
        );
      }
    } else if (typeof tv === "string") target = tv;
    else {throw bad(
        o,
        where,
        `column "${tgt}" is ${showValue(tv)}, expected a string; fix the record or pass --target_column`,
      );}
    const id = r.id ?? r.idx;
    const ex: TaskExample = { source: sv as string, target };
    return typeof id === "string" || typeof id === "number" ? { id: String(id), ...ex } : ex;
  });
}

/** A record's columns, nested fields by their paths (a wmt14 translation struct: translation.de, ...). */
function columnsOf(r: DataRecord): string[] {
  return Object.entries(r).flatMap(([name, v]) =>
    isObject(v) ? Object.keys(v).map((f) => `${name}.${f}`) : [name]
  );
}

/**
 * A column's value: a field of the record, or a path into a nested one (`translation.en`, the
 * Hugging Face wmt14 layout); undefined when there is none.
 */
function cell(r: DataRecord, column: string): unknown {
  if (Object.hasOwn(r, column)) return r[column];
  let v: unknown = r;
  for (const part of column.split(".")) {
    if (!isObject(v) || !Object.hasOwn(v, part)) return undefined;
    v = v[part];
  }
  return v;
}

/** Distinct labels: numerically when all are integers, else by code unit (locale-free). */
function sortLabels(labels: string[]): string[] {
  const out = [...new Set(labels)];
  if (out.every((l) => /^-?\d+$/.test(l))) return out.sort((a, b) => Number(a) - Number(b));
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A reader's `Cannot read x: ...` as this call's one-line `Cannot load <task> data: could not read x: ...`. */
function inContext(e: unknown, task: TaskKind): unknown {
  if (!(e instanceof Error) || e instanceof HubError || !/^Cannot (?!load )/.test(e.message)) return e;
  const Kind = e instanceof SyntaxError
    ? SyntaxError
    : e instanceof RangeError
    ? RangeError
    : e instanceof TypeError
    ? TypeError
    : undefined;
  return Kind
    ? new Kind(oneLine(`Cannot load ${task} data: could not ${e.message.slice(7)}`), { cause: e })
    : e;
}

/**
 * Load the train and validation examples of a recipe's task. With no options this is the shared folder's
 * Debian dataset of the task (offline). Hub datasets go through the hub cache (`hub` options:
 * `endpoint`, `cache_dir`, `offline`, `token`, ...); local files are read by extension. Column
 * defaults per source are listed on {@linkcode LoadTaskDataOptions}; `source_column` and
 * `target_column` override them. Classification labels become names: integers through
 * `label_names`, and the label set is `label_names`, else the sorted distinct train labels.
 *
 * @param task `summarization`, `translation` or `classification`
 * @param opts the source and its mapping, see {@linkcode LoadTaskDataOptions}
 * @returns `{ train, validation, labels, description }`
 * @throws {TypeError} bad options, an unknown dataset name or file extension, a missing column
 *   (listing the columns that exist), a text that is not a string
 * @throws {RangeError} an empty split, a label outside the label set (naming the record), a split
 *   that does not exist
 * @throws {SyntaxError} a malformed file, a corrupt parquet file (naming it)
 * @throws {HubError} the hub unreachable or offline with the split not cached (one line with the
 *   dataset id, HF_ENDPOINT / HF_HUB_OFFLINE, and the Debian fallback), or any other hub failure
 * @example
 * ```ts
 * import { loadTaskData } from "./task_data.ts";
 * const data = await loadTaskData("classification", {
 *   debian_task: "classification-binary",
 *   max_train_samples: 8,
 *   max_eval_samples: 4,
 * });
 * if (data.train.length !== 8 || data.validation.length !== 4) throw new Error(data.description);
 * if (data.labels?.join() !== "other,games" || !data.labels.includes(data.train[0].target)) {
 *   throw new Error(JSON.stringify(data.labels));
 * }
 * ```
 */
export async function loadTaskData(task: TaskKind, opts: LoadTaskDataOptions = {}): Promise<TaskData> {
  checkOptions(task, opts);
  const o: Options = { ...opts, task };
  const name = o.dataset ?? "debian";
  const kind = name === "debian"
    ? "debian"
    : exists(name)
    ? "local"
    : Object.hasOwn(HUB, name)
    ? "hub"
    : undefined;
  if (!kind) {
    const known = ["debian", ...Object.keys(HUB)].join(", ");
    throw new TypeError(
      `Cannot load ${task} data: dataset "${name}" is neither a known dataset (${known}) nor an existing file or folder; use one of these or check the path`,
    );
  }
  const misplaced = [
    kind !== "debian" && o.debian_task !== undefined && "debian_task is for the Debian data only",
    kind !== "debian" && o.level !== undefined && "level is for Debian translation only",
    kind !== "hub" && o.dataset_config !== undefined && "dataset_config is for hub datasets only",
    kind !== "local" && o.eval_file !== undefined && "eval_file is for local files only",
    kind !== "hub" && o.hub !== undefined && "hub is for hub datasets only",
    ...(["train_split", "eval_split"] as const).map((k) =>
      o[k] !== undefined && (kind === "debian" || (kind === "local" && !isDirSync(name))) &&
      `${k} names a split of a hub dataset or a local folder, and ${
        kind === "debian" ? "the Debian data has its own train and validation files" : `${name} is one file`
      }`
    ),
  ].filter((x) => x);
  if (misplaced.length) {
    throw bad(o, name, `${misplaced.join("; ")}; drop ${agree(misplaced).it}`);
  }
  let raw: RawData;
  try {
    raw = kind === "debian"
      ? await fromDebian(o)
      : kind === "local"
      ? await fromLocal(o, name)
      : await fromHub(o, name, HUB[name]);
  } catch (e) {
    throw inContext(e, task);
  }
  for (const [label, split] of [["train", raw.train], ["validation", raw.validation]] as const) {
    if (split && split.total === 0) {
      throw outside(
        o,
        split.where,
        `the ${label} split has no records${
          o.level ? ` of level ${o.level}` : ""
        }; use a file or split that has some`,
      );
    }
  }
  const first = raw.train.rows[0] ?? {};
  let columns = raw.columns.find(([s, t]) => cell(first, s) !== undefined && cell(first, t) !== undefined) ??
    raw.columns[0];
  columns = [o.source_column ?? columns[0], o.target_column ?? columns[1]];
  const given = o.label_names ?? raw.labelNames ?? raw.classLabels?.[columns[1]];
  const train = toExamples(o, raw.train, columns, given);
  const labels = task !== "classification"
    ? null
    : given
    ? [...given]
    : sortLabels(train.map((e) => e.target));
  if (labels && labels.length < 2) { // label likelihood compares labels: one is no classifier
    throw new RangeError(
      `Cannot load classification data: ${
        given ? "label_names gives" : `column "${columns[1]}" of ${raw.what} holds`
      } ` +
        `${labels.length} label${
          labels.length === 1 ? ` (${labels[0]})` : "s"
        }; a classifier needs at least two ` +
        `(give rows of another label, or label_names with all of them)`,
    );
  }
  const validation = raw.validation
    ? toExamples(o, raw.validation, columns, given, given ? undefined : labels ?? undefined)
    : [];
  const notes = [...raw.notes];
  if (task === "translation" || o.source_column || o.target_column) {
    notes.push(`${columns[0]} -> ${columns[1]}`);
  }
  let description = `${raw.what}${notes.length ? ` (${notes.join("; ")})` : ""}, ` +
    `${train.length} train / ${validation.length} validation`;
  if (labels) description += `, ${labels.length} labels`;
  const sampled = [["train", o.max_train_samples], ["validation", o.max_eval_samples]]
    .filter(([, max]) => max !== undefined).map(([split]) => split);
  if (o.seed !== undefined && sampled.length) {
    description += `, ${sampled.join(" and ")} sampled with seed ${o.seed}`;
  }
  return { train, validation, labels, description };
}
