/**
 * `deno task cli data inspect|clean|split`: look at a data file or folder of split files (record
 * counts, fields, text lengths in characters and tokens, a few rows), run the cleaning pipeline of
 * a YAML file over it (data/clean.ts), or cut it into train / validation files (data/split.ts).
 * Files are read by data/readers.ts (jsonl, json, csv, tsv, txt, parquet); outputs are JSON Lines
 * (or CSV / TSV by extension), written atomically and never over an existing file without
 * `--overwrite`.
 *
 * @module
 */
import { basename, dirname, extname, join } from "node:path";
import { type FlagSpecs, parseFlags } from "../util/flags.ts";
import {
  destination,
  isDirSync,
  isFileSync,
  moveFileAtomic,
  pathExists,
  readNamedTextFile,
  tempPath,
} from "../util/atomic.ts";
import { closest } from "../util/problems.ts";
import { showValue, stringifyJson, valueKind } from "../util/json.ts";
import {
  type DataRecord,
  detectFormat,
  findSplitLayout,
  readDataset,
  splitFilesOf,
  splitNamesOf,
  streamDataset,
} from "../data/readers.ts";
import { writeJsonl } from "../data/jsonl.ts";
import { isHubDatasetId, resolveDataset } from "../data/hub_datasets.ts";
import { writeCsv } from "../data/csv.ts";
import { cleanPipelineFromYaml, runCleanPipeline } from "../data/clean.ts";
import { splitRecords } from "../data/split.ts";
import { loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { type CliIO, type Command, noteTempLeftovers } from "./command.ts";

const USAGE = `usage: deno task cli data <inspect|clean|split> [FILE] [options]

  data inspect FILE_OR_FOLDER_OR_HUB_ID [--dataset_config NAME] [--tokenizer DIR] [--text_field F]
               [--rows N] [--json]
      record counts per split, fields, text lengths in characters and (with a tokenizer) tokens
      (min / median / p95 / max, nearest rank), and the first N rows of each split (default 3);
      a hub dataset id (org/name) is downloaded to the hub cache first, as train/sft/dpo read it
  data clean --config clean.yaml --input FILE --output FILE [--text_field F] [--overwrite] [--json]
      run the cleaning pipeline of a YAML file (steps length, repetition, exact_dedup, near_dedup,
      language; see data/clean.ts) and report how many records each step kept and dropped
  data split FILE --output_dir DIR [--train_split 0.9] [--seed 42] [--split_key COL] [--overwrite]
             [--json]
      cut one file into DIR/train.jsonl and DIR/validation.jsonl: a seeded shuffle and a cut
      (the same seed gives the same files), or by the SHA-256 of a column with --split_key

Input files: .jsonl, .json, .csv, .tsv, .txt (each also .gz, .zst, .xz or .bz2), .parquet; inspect
also takes a folder of split files (train.jsonl, validation.csv, data/train-00000-of-00001.parquet,
...; a card's configs: name them, --dataset_config picks one). FILE may stand anywhere among the
flags or be given as --input FILE. inspect reads a record's text from --text_field (a string, or a
list of chat messages whose contents are joined), by default "text" when the record has it, else all
of its string fields joined; clean reads and rewrites one string field, --text_field (default
"text"). Outputs are .jsonl (or .csv / .tsv), written atomically; an existing output is an error
unless --overwrite. --tokenizer takes a local folder with tokenizer.json (a model folder works).
Results go to stdout (one JSON object with --json).

options:
  --input FILE               the input (instead of the positional FILE)
  --text_field F             inspect, clean: the record field holding the text
  --dataset_config NAME      inspect: the config of a hub dataset or of a folder's card
  --tokenizer DIR            inspect: count tokens with this tokenizer
  --rows N                   inspect: rows shown per split (default 3; 0 = none)
  --config FILE              clean: the pipeline YAML (a list of steps)
  --output FILE              clean: where the kept records go
  --output_dir DIR           split: where train.jsonl and validation.jsonl go
  --train_split F            split: fraction for train, in (0, 1) (default 0.9)
  --seed S                   split: shuffle seed (default 42; not with --split_key)
  --split_key COL            split: by the hash of this column instead of a shuffle
  --overwrite                replace existing outputs
  --json                     one JSON object on stdout
  -h, --help                 this text`;

const SUBCOMMANDS = ["inspect", "clean", "split"] as const;

const FLAGS = {
  input: { type: "string" },
  text_field: { type: "string" },
  json: { type: "boolean" },
} as const;

/** The `data` command. */
export const command: Command = {
  summary: "inspect a data file (counts, lengths in tokens, rows), clean it with a YAML pipeline, split it",
  usage: USAGE,
  run: dataRun,
};

async function dataRun(args: string[], io: CliIO): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === undefined) {
    throw new TypeError(
      `data: missing the subcommand; write \`deno task cli data inspect|clean|split ...\` (see \`deno task cli data --help\`)`,
    );
  }
  // A flag before any subcommand: --help, or an unknown flag reported as every command reports it.
  if (sub.startsWith("-") && parseFlags("data", [sub], {}).help) return io.stdout(USAGE + "\n");
  if (!(SUBCOMMANDS as readonly string[]).includes(sub)) {
    const hint = closest(sub, SUBCOMMANDS);
    throw new TypeError(
      `data: unknown subcommand ${JSON.stringify(sub)}${hint ? `; did you mean ${hint}?` : ""} ` +
        `(subcommands: ${SUBCOMMANDS.join(", ")}; see \`deno task cli data --help\`)`,
    );
  }
  const specs = sub === "inspect" ? INSPECT_FLAGS : sub === "clean" ? CLEAN_FLAGS : SPLIT_FLAGS;
  const { positional, flags } = takePositional(rest, specs);
  if (sub === "inspect") return await inspect(positional, flags, io);
  if (sub === "clean") return await clean(positional, flags, io);
  return await split(positional, flags, io);
}

/**
 * The first argument that is neither a flag nor a flag's value (the input FILE, anywhere among the
 * flags), and the other arguments for parseFlags (which reports any further positional).
 */
function takePositional(args: string[], specs: FlagSpecs): { positional?: string; flags: string[] } {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") break;
    if (a.startsWith("-") && a !== "-") {
      const name = a.replace(/^--?/, "").split("=")[0].replaceAll("-", "_");
      const takesValue = Object.hasOwn(specs, name) && specs[name].type !== "boolean";
      if (takesValue && !a.includes("=")) i++;
      continue;
    }
    return { positional: a, flags: [...args.slice(0, i), ...args.slice(i + 1)] };
  }
  return { flags: args };
}

/** The input path from the positional argument or `--input`, exactly one of them. */
function inputPath(cmd: string, positional: string | undefined, flag: string | undefined): string {
  if (positional !== undefined && flag !== undefined) {
    throw new TypeError(`${cmd}: give the input once, as the first argument or as --input, not both`);
  }
  const path = positional ?? flag;
  if (path === undefined) {
    throw new TypeError(
      `${cmd}: missing the input file; write \`deno task cli ${cmd} FILE\` or --input FILE`,
    );
  }
  return path;
}

// ---- inspect ----------------------------------------------------------------------------------

/** min / median / p95 / max of a list of lengths (nearest rank), null when empty. */
interface LengthStats {
  min: number;
  median: number;
  p95: number;
  max: number;
  mean: number;
}

function lengthStats(xs: number[]): LengthStats | null {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  const rank = (p: number) => s[Math.max(0, Math.ceil(p * s.length) - 1)];
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return {
    min: s[0],
    median: rank(0.5),
    p95: rank(0.95),
    max: s[s.length - 1],
    mean: Math.round(mean * 10) / 10,
  };
}

/** The text of a record: its field (a string or chat messages), or by default "text" or all string fields. */
function recordText(r: DataRecord, field: string | undefined): string | null {
  const asText = (v: unknown): string | null => {
    if (typeof v === "string") return v;
    if (Array.isArray(v) && v.every((m) => m && typeof m === "object" && "content" in m)) {
      return v.map((m) => String((m as { content: unknown }).content)).join("\n");
    }
    return null;
  };
  if (field !== undefined) return asText(r[field]);
  if (Object.hasOwn(r, "text")) return asText(r.text); // a null text is missing, not its other fields

  const parts = Object.values(r).map(asText).filter((s): s is string => s !== null);
  return parts.length ? parts.join("\n") : null;
}

interface SplitSummary {
  name: string;
  files: string[];
  records: number;
  fields: Record<string, { count: number; types: string[] }>;
  missing_text: number;
  chars: LengthStats | null;
  tokens?: LengthStats | null;
  rows: DataRecord[];
}

const INSPECT_FLAGS = {
  ...FLAGS,
  tokenizer: { type: "string" },
  rows: { type: "int", min: 0, default: 3 },
  dataset_config: { type: "string" },
} as const;

async function inspect(positional: string | undefined, args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("data inspect", args, INSPECT_FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const given = inputPath("data inspect", positional, v.input);
  const tok = v.tokenizer === undefined ? undefined : await tokenizerAt(v.tokenizer);
  // a hub dataset id: its files, as train / sft / dpo fetch them (a local path is read as it is)
  const { path, config } = await pathExists(given) || isHubDatasetId(given)
    ? await resolveDataset(given, { config: v.dataset_config ?? null, subject: "data inspect" })
    : { path: given, config: null };
  let isDir: boolean;
  try {
    isDir = (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Deno.errors.NotFound(
      `data inspect: ${path} does not exist; give a data file or a folder of split files`,
    );
  }
  let splits: [string, string[]][];
  if (isDir) {
    // what training reads: a folder naming no split is one train split
    const layout = findSplitLayout(path, { config });
    splits = splitNamesOf(layout).map((name) => [name, splitFilesOf(layout, name)!]);
    if (!splits.length) {
      throw new TypeError(
        `data inspect: ${path} holds no split files; expected e.g. train.jsonl, validation.csv or data/train-00000-of-00001.parquet`,
      );
    }
  } else {
    detectFormat(path);
    splits = [[basename(path), [path]]];
  }
  const summaries: SplitSummary[] = [];
  for (const [name, files] of splits) {
    const records = isDir
      ? streamDataset(path, { split: name, ...(config !== null ? { config } : {}) })
      : streamDataset(path);
    summaries.push(await summarize(name, files, records, { field: v.text_field, tok, rows: v.rows }));
  }
  if (v.text_field !== undefined && summaries.every((s) => !(v.text_field! in s.fields))) {
    const fields = [...new Set(summaries.flatMap((s) => Object.keys(s.fields)))];
    const hint = closest(v.text_field, fields);
    throw new TypeError(
      `data inspect: --text_field ${v.text_field} is not a field of ${path}${
        hint ? `; did you mean ${hint}?` : ""
      } ` +
        `(fields: ${fields.join(", ") || "none"})`,
    );
  }
  if (v.json) {
    const json = {
      path: given, // a hub id as given, not its snapshot in the cache
      text_field: v.text_field ?? null,
      tokenizer: v.tokenizer ?? null,
      splits: summaries,
    };
    return io.stdout(showValue(json) + "\n");
  }
  io.stdout(inspectReport(given, v.text_field ?? "text, else all string fields", summaries, v.tokenizer));
}

async function summarize(
  name: string,
  files: string[],
  records: AsyncIterable<DataRecord>,
  opts: { field?: string; tok?: Tokenizer; rows: number },
): Promise<SplitSummary> {
  const fields: SplitSummary["fields"] = {};
  const chars: number[] = [], tokens: number[] = [], rows: DataRecord[] = [];
  let n = 0, missing = 0;
  for await (const r of records) {
    n++;
    if (rows.length < opts.rows) rows.push(r);
    for (const [k, val] of Object.entries(r)) {
      const f = fields[k] ??= { count: 0, types: [] };
      f.count++;
      const t = val === null
        ? "null"
        : Array.isArray(val)
        ? "array"
        : val instanceof Uint8Array
        ? "bytes"
        : typeof val;
      if (!f.types.includes(t)) f.types.push(t);
    }
    const text = recordText(r, opts.field);
    if (text === null) {
      missing++;
      continue;
    }
    chars.push(text.length);
    if (opts.tok) tokens.push(opts.tok.encode(text).length);
  }
  const out: SplitSummary = {
    name,
    files,
    records: n,
    fields,
    missing_text: missing,
    chars: lengthStats(chars),
    rows,
  };
  if (opts.tok) out.tokens = lengthStats(tokens);
  return out;
}

function inspectReport(path: string, field: string, splits: SplitSummary[], tokenizer?: string): string {
  const stats = (s: LengthStats | null | undefined) =>
    s ? `min ${s.min}  median ${s.median}  p95 ${s.p95}  max ${s.max}  mean ${s.mean}` : "-";
  const clip = (s: string) => s.length > 160 ? s.slice(0, 157) + "..." : s;
  const lines = [`${path}: ${splits.map((s) => `${s.name} ${s.records}`).join(", ")} records`];
  lines.push(`text: ${field}${tokenizer ? `; tokens by ${tokenizer}` : ""}`);
  for (const s of splits) {
    lines.push("", `${s.name} (${s.files.join(", ")}): ${s.records} records`);
    const fields = Object.entries(s.fields).map(([k, f]) =>
      `${k} (${f.types.join("|")}, ${f.count}/${s.records})`
    );
    lines.push(`  fields  ${fields.join(", ") || "(none)"}`);
    lines.push(`  chars   ${stats(s.chars)}`);
    if (s.tokens !== undefined) lines.push(`  tokens  ${stats(s.tokens)}`);
    if (s.missing_text) lines.push(`  ${s.missing_text} records have no text in the field`);
    s.rows.forEach((r, i) => lines.push(`  [${i}] ${clip(showValue(r))}`));
  }
  return lines.join("\n") + "\n";
}

/** A local tokenizer folder (tokenizer.json), with a clear error otherwise. */
async function tokenizerAt(path: string): Promise<Tokenizer> {
  // the tokenizer.json file itself names its folder (it had been told it has no tokenizer.json)
  const dir = basename(path) === "tokenizer.json" && isFileSync(path) ? dirname(path) : path;
  if (!(await pathExists(join(dir, "tokenizer.json")))) {
    throw new Deno.errors.NotFound(
      `data inspect: --tokenizer ${path} has no tokenizer.json; give a local tokenizer or model folder`,
    );
  }
  return await loadTokenizer(dir);
}

// ---- clean ------------------------------------------------------------------------------------

const CLEAN_FLAGS = {
  ...FLAGS,
  config: { type: "string", required: true },
  output: { type: "string", required: true },
  overwrite: { type: "boolean" },
} as const;

async function clean(positional: string | undefined, args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("data clean", args, CLEAN_FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const input = inputPath("data clean", positional, v.input);
  outputFormat("data clean", v.output);
  await refuseOverwrite("data clean", v.output, v.overwrite);
  await noteTempLeftovers(io, "data clean", [v.output]);
  const yaml = await readNamedTextFile(v.config, "data clean: --config", "give the pipeline YAML");
  const steps = cleanPipelineFromYaml(yaml, { file: v.config });
  if (isDirSync(input)) { // a folder's splits would be read as its train split alone
    throw new TypeError(
      `data clean: ${input} is a folder; clean one file at a time (e.g. ${input}/train.jsonl)`,
    );
  }
  const records = await readDataset(input);
  if (!records.length) throw new RangeError(`data clean: ${input} has no records; there is nothing to clean`);
  const field = v.text_field ?? "text", bad = records.findIndex((r) => typeof r[field] !== "string");
  if (bad >= 0) { // the pipeline's own message names its function, not the file
    const got = records[bad][field];
    throw new TypeError(
      `data clean: ${input} record ${bad + 1}: field "${field}" is ${
        got === undefined ? "missing" : valueKind(got)
      }, not text; clean reads one string field: fix the record or pass --text_field naming one (${
        Object.keys(records[bad]).filter((k) => typeof records[bad][k] === "string").join(", ") ||
        "the record has none"
      })`,
    );
  }
  const r = runCleanPipeline(records, steps, { field: v.text_field });
  await writeRecords(v.output, r.kept, fieldsOf(records), !!v.overwrite);
  const result = {
    input,
    output: v.output,
    records: records.length,
    kept: r.kept.length,
    dropped: r.dropped,
    steps: r.steps,
  };
  if (v.json) return io.stdout(stringifyJson(result) + "\n");
  const lines = [`data clean: ${input}: ${records.length} records`];
  let before = records.length;
  r.steps.forEach((s, i) => {
    const why = Object.entries(s.dropped).map(([k, n]) => `${k} ${n}`).join(", ");
    lines.push(
      `  ${i + 1}. ${s.name.padEnd(12)} kept ${s.kept}, dropped ${before - s.kept}${why ? ` (${why})` : ""}`,
    );
    before = s.kept;
  });
  lines.push(`kept ${r.kept.length} of ${records.length} records -> ${v.output}`);
  io.stdout(lines.join("\n") + "\n");
}

// ---- split ------------------------------------------------------------------------------------

const SPLIT_FLAGS = {
  input: FLAGS.input,
  json: FLAGS.json,
  output_dir: { type: "string", required: true },
  train_split: { type: "number", default: 0.9 },
  seed: { type: "int", min: 0, max: 0xffffffff },
  split_key: { type: "string" },
  overwrite: { type: "boolean" },
} as const;

async function split(positional: string | undefined, args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("data split", args, SPLIT_FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const input = inputPath("data split", positional, v.input);
  if (!(v.train_split > 0 && v.train_split < 1)) {
    throw new RangeError(`data split: --train_split ${v.train_split} is not in (0, 1); use e.g. 0.9`);
  }
  if ((await pathExists(input)) && (await Deno.stat(input)).isDirectory) {
    throw new TypeError(`data split: ${input} is a folder (already split?); give one data file`);
  }
  if (v.seed !== undefined && v.split_key !== undefined) {
    throw new TypeError(
      `data split: --seed orders the shuffle, and --split_key splits by a hash of the column instead; drop --seed`,
    );
  }
  const seed = v.seed ?? 42;
  const outputs = {
    train: join(v.output_dir, "train.jsonl"),
    validation: join(v.output_dir, "validation.jsonl"),
  };
  for (const f of Object.values(outputs)) await refuseOverwrite("data split", f, v.overwrite);
  await noteTempLeftovers(io, "data split", Object.values(outputs));
  const records = await readDataset(input);
  if (!records.length) throw new RangeError(`data split: ${input} has no records; there is nothing to split`);
  const parts = splitRecords(records, { train_split: v.train_split, seed, split_key: v.split_key }, input);
  await writeRecordSet([[outputs.train, parts.train], [outputs.validation, parts.validation]], !!v.overwrite);
  const result = {
    input,
    output_dir: v.output_dir,
    train: { file: outputs.train, records: parts.train.length },
    validation: { file: outputs.validation, records: parts.validation.length },
    ...(v.split_key === undefined
      ? { train_split: v.train_split, seed }
      : { split_key: v.split_key, train_split: v.train_split }),
  };
  if (v.json) return io.stdout(stringifyJson(result) + "\n");
  io.stdout(
    `data split: ${input}: ${records.length} records -> ${outputs.train} (${parts.train.length}), ` +
      `${outputs.validation} (${parts.validation.length})\n`,
  );
}

// ---- output -----------------------------------------------------------------------------------

function outputFormat(cmd: string, path: string): "jsonl" | "csv" | "tsv" {
  if (isDirSync(path)) {
    throw new TypeError(`${cmd}: --output ${path} is a folder; name a .jsonl, .csv or .tsv file`);
  }
  const ext = extname(path).toLowerCase();
  if (ext === ".jsonl" || ext === ".csv" || ext === ".tsv") return ext.slice(1) as "jsonl" | "csv" | "tsv";
  throw new TypeError(
    `${cmd}: --output ${path}: cannot write "${ext || "no extension"}" files; name it .jsonl, .csv or .tsv`,
  );
}

async function refuseOverwrite(cmd: string, path: string, overwrite: boolean): Promise<void> {
  if (!overwrite && await pathExists(path)) {
    throw new TypeError(`${cmd}: ${path} exists; pass --overwrite to replace it, or choose another output`);
  }
}

/** Every record's fields, in the order they first appear (the first record's alone dropped the rest). */
function fieldsOf(records: readonly DataRecord[]): string[] {
  return [...new Set(records.flatMap((r) => Object.keys(r)))];
}

/** Write records atomically (a temp file beside `path`, then a rename) as JSONL, CSV or TSV. */
async function writeRecords(
  path: string,
  records: DataRecord[],
  columns: string[] | undefined,
  overwrite: boolean,
): Promise<void> {
  await writeRecordSet([[path, records, columns]], overwrite);
}

/**
 * Write several record files as a set: every temp file first (the long part), then the old files
 * removed, then each moved into place. A kill leaves files missing, never a new file beside an old
 * one of the set (a new train.jsonl beside the old validation.jsonl had shared records with it).
 */
async function writeRecordSet(files: [string, DataRecord[], string[]?][], overwrite: boolean): Promise<void> {
  const temps: string[] = [], targets: string[] = [];
  try {
    for (const [path, records, columns] of files) {
      const format = outputFormat("data", path);
      await Deno.mkdir(dirname(path) || ".", { recursive: true });
      // through a link to its file, as writeFileAtomic writes (the link had been replaced by a file)
      const target = await destination(path);
      targets.push(target);
      const tmp = tempPath(target);
      temps.push(tmp);
      if (format === "jsonl") await writeJsonl(tmp, records);
      else {
        const cols = columns?.length ? columns : fieldsOf(records);
        await writeCsv(tmp, records, {
          columns: cols.length ? cols : undefined,
          delimiter: format === "tsv" ? "\t" : ",",
        });
      }
    }
    // the old set goes first when replacing it; without --overwrite there was none to remove (refused
    // before), and one that appeared meanwhile is left for the move below to refuse
    if (overwrite && files.length > 1) { for (const t of targets) await Deno.remove(t).catch(() => {}); }
    // without --overwrite, never over a file that appeared while the output was being made
    for (const [i, t] of targets.entries()) await moveFileAtomic(temps[i], t, { replace: overwrite });
  } catch (e) {
    for (const tmp of temps) await Deno.remove(tmp).catch(() => {});
    // a writer's refusal names the file the user asked for, not its temp name
    if (e instanceof Error) temps.forEach((tmp, i) => e.message = e.message.replaceAll(tmp, files[i][0]));
    throw e;
  }
}
