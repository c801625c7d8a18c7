/**
 * Datasets from the Hugging Face hub. In their parquet layout (`<config>/<split>-00000-of-00003.parquet`,
 * also `<config>/<split>/*.parquet`): CNN/DailyMail, WMT14 and GLUE SST-2, plus the generic
 * {@linkcode loadHubDataset}. Any dataset repo as a local folder of split files:
 * {@linkcode resolveDataset} (what `train`, `sft`, `dpo` and `data inspect` do with an `org/name`),
 * which reads the card's `configs:` as HF does. Files go through the hub cache of `models/hub.ts`
 * (repo_type `dataset`): a complete cached split is read without any request; a missing one is
 * listed through the hub API and downloaded with resume. `path` reads the same layout from a local
 * folder.
 * @module
 */
import { basename, join } from "node:path";
import {
  downloadListedFiles,
  HubError,
  type HubOptions,
  isOfflineMode,
  listRepoFiles,
  listSnapshotFiles,
  refuseDownloadOptions,
  snapshotDownload,
} from "../models/hub/hub.ts";
import { pathExists } from "../util/atomic.ts";
import { COMPRESSED_NAMES, hasSplitKeyword, isDataFile, SPLIT_KEYWORDS } from "./readers.ts";
import {
  type CardConfig,
  cardConfigs,
  cardPatterns,
  folderCardConfigs,
  globRegExp,
  pickCardConfig,
} from "./_card.ts";
import { streamParquet } from "./parquet.ts";
import { shuffleRecords } from "./split.ts";
import { checkSelectOptions, checkShuffleSeed, type SelectOptions, selector } from "./_select.ts";

/** Options of the hub dataset loaders: the hub options (cache, token, offline...) and the record options. */
export interface HubDatasetOptions extends Omit<HubOptions, "repo_type">, SelectOptions {
  /** `"train"` (default), `"validation"` or `"test"`. */
  split?: string;
  /** Read the parquet files from this local folder (the repo's layout) instead of the hub. */
  path?: string;
  /** Shuffle with `seed` (default 42) before `max_samples`. */
  shuffle?: boolean;
  /** Seed of the shuffle. */
  seed?: number;
}

/** Options of {@linkcode loadHubDataset}. */
export interface LoadHubDatasetOptions extends HubDatasetOptions {
  /** The dataset config (the folder in the repo), e.g. `"3.0.0"`, `"sst2"`, `"de-en"`. */
  config: string;
  /** Columns to read from the parquet files (default all). */
  parquet_columns?: string[];
  /** Turn a raw row into the returned record (default: as is). */
  map?: (row: Record<string, unknown>) => Record<string, unknown>;
}

const SHARD = /^(.+?)-(\d+)-of-(\d+)\.parquet$/;

/** Paths `config/x.parquet` and `config/sub/x.parquet` under `root`, relative to it. */
function listConfigFiles(root: string, config: string): string[] {
  const out: string[] = [];
  const read = (rel: string) => {
    try {
      return [...Deno.readDirSync(join(root, rel))];
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
  };
  for (const e of read(config)) {
    if (e.isDirectory) {
      for (const f of read(`${config}/${e.name}`)) {
        if (!f.isDirectory) out.push(`${config}/${e.name}/${f.name}`);
      }
    } else out.push(`${config}/${e.name}`);
  }
  return out.sort();
}

function splitOf(file: string, config: string): string | undefined {
  const rest = file.slice(config.length + 1);
  if (!file.startsWith(config + "/") || !rest.endsWith(".parquet")) return undefined;
  if (rest.includes("/")) return rest.split("/")[0];
  return rest.match(SHARD)?.[1] ?? rest.slice(0, -".parquet".length);
}

/** The shards of one split, and whether all `-of-N` shards are there. */
function shardsOf(files: string[], config: string, split: string): { shards: string[]; complete: boolean } {
  const shards = files.filter((f) => splitOf(f, config) === split).sort();
  const counts = shards.map((f) => f.split("/").pop()!.match(SHARD)?.[3]);
  const complete = shards.length > 0 && counts.every((c) => c !== undefined && Number(c) === shards.length);
  return { shards, complete };
}

function noSplit(
  what: string,
  config: string,
  split: string,
  files: string[],
  configs: string[],
): RangeError {
  const splits = [...new Set(files.map((f) => splitOf(f, config)).filter((s) => s !== undefined))].sort();
  const hint = splits.length
    ? `the splits of config "${config}" are ${splits.join(", ")}`
    : `config "${config}" has no parquet files; the configs are ${configs.join(", ") || "(none)"}`;
  return new RangeError(`Cannot find split "${split}" of ${what}: ${hint}; use one of these`);
}

async function splitFiles(repo_id: string, opts: LoadHubDatasetOptions, split: string): Promise<string[]> {
  const { config } = opts;
  if (opts.path !== undefined) {
    // a local copy in the hub's layout: the download options have nothing to do
    refuseDownloadOptions(opts.path, opts, `Cannot load dataset ${repo_id} from path ${opts.path}`);
    const files = listConfigFiles(opts.path, config);
    const { shards } = shardsOf(files, config, split);
    if (!shards.length) {
      const configs = [...Deno.readDirSync(opts.path)].filter((e) => e.isDirectory).map((e) => e.name).sort();
      throw noSplit(opts.path, config, split, files, configs);
    }
    return shards.map((f) => join(opts.path!, f));
  }
  const hub = { ...opts, repo_type: "dataset" as const };
  // A complete split in the cache needs no request at all, unless force_download asks for one.
  let cached: string | undefined;
  if (!opts.force_download) {
    try {
      cached = await snapshotDownload(repo_id, { ...hub, offline: true });
    } catch (e) {
      if (!(e instanceof HubError && e.kind === "offline")) throw e;
    }
  }
  if (cached) {
    const { shards, complete } = shardsOf(listConfigFiles(cached, config), config, split);
    if (complete) return shards.map((f) => join(cached!, f));
  }
  if (isOfflineMode(opts)) {
    throw new HubError(
      "offline",
      `Cannot load dataset ${repo_id} config "${config}" split "${split}": offline mode (HF_HUB_OFFLINE or ` +
        `local_files_only) and the split is not (fully) in the cache; run once with network access, or pass path`,
    );
  }
  const listing = await listRepoFiles(repo_id, hub);
  const { shards } = shardsOf(listing.files, config, split);
  if (!shards.length) {
    const configs = [
      ...new Set(listing.files.filter((f) => /\/.*\.parquet$/.test(f)).map((f) => f.split("/")[0])),
    ];
    throw noSplit(`dataset ${repo_id}`, config, split, listing.files, configs.sort());
  }
  // Every shard at the commit the listing resolved: by the branch name, a shard cached under an
  // older commit of the branch would be mixed with new ones.
  const folder = await downloadListedFiles(repo_id, { commit: listing.commit, files: shards }, hub);
  return shards.map((f) => join(folder, f));
}

/**
 * Load one split of a hub dataset stored as parquet (`<config>/<split>-*.parquet`).
 *
 * @param repo_id the dataset id, e.g. `"abisee/cnn_dailymail"`
 * @param opts `config`, `split`, `parquet_columns`, `map`, `path`, record options, hub options
 * @returns the records, in shard order (or shuffled with `seed`)
 * @throws {RangeError} a split or config that does not exist (listing those that do)
 * @throws {HubError} download failures, offline mode with the split not cached
 * @throws {SyntaxError} a corrupt parquet file (naming it)
 * @throws {TypeError} a missing column
 */
export async function loadHubDataset(
  repo_id: string,
  opts: LoadHubDatasetOptions,
): Promise<Record<string, unknown>[]> {
  checkSelectOptions(opts, repo_id);
  checkShuffleSeed(opts, `dataset ${repo_id}`);
  const split = opts.split ?? "train";
  const files = await splitFiles(repo_id, opts, split);
  const select = selector(opts);
  const map = opts.map ?? ((r) => r);
  const max = opts.shuffle ? Infinity : (opts.max_samples ?? Infinity);
  let out: Record<string, unknown>[] = [];
  for (const file of files) {
    if (out.length >= max) break;
    const rows = streamParquet(file, {
      columns: opts.parquet_columns,
      max_samples: max === Infinity ? undefined : max - out.length,
    });
    let i = 0;
    for await (const row of rows) out.push(select(map(row), `${file} row ${i++}`));
  }
  if (opts.shuffle) {
    out = shuffleRecords(out, { seed: opts.seed });
    if (opts.max_samples !== undefined) out = out.slice(0, opts.max_samples);
  }
  return out;
}

/**
 * CNN/DailyMail summarization (`abisee/cnn_dailymail`, config `3.0.0`): `{ article, highlights, id }`.
 *
 * @param opts `split` (train/validation/test), `max_samples`, `config` (default `"3.0.0"`), hub options
 * @returns the records
 * @throws {RangeError} an unknown split; {@linkcode HubError} download failures
 * @example
 * ```ts
 * import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
 * import { loadCnnDailymail } from "./hub_datasets.ts";
 * // A local copy of the repo layout; without `path` the files come from the hub cache.
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/3.0.0`);
 * await Deno.writeFile(`${dir}/3.0.0/validation-00000-of-00001.parquet`, new Uint8Array(parquetWriteBuffer({
 *   columnData: [
 *     { name: "article", data: ["The council voted on Tuesday to build a new bridge over the river."] },
 *     { name: "highlights", data: ["Council approves new bridge ."] },
 *     { name: "id", data: ["a1"] },
 *   ],
 * })));
 * const rows = await loadCnnDailymail({ path: dir, split: "validation" });
 * if (rows.length !== 1 || rows[0].highlights !== "Council approves new bridge .") throw new Error(JSON.stringify(rows));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadCnnDailymail(
  opts: HubDatasetOptions & { config?: "1.0.0" | "2.0.0" | "3.0.0" } = {},
): Promise<Record<string, unknown>[]> {
  return await loadHubDataset("abisee/cnn_dailymail", {
    ...opts,
    config: opts.config ?? "3.0.0",
    parquet_columns: ["article", "highlights", "id"],
  });
}

/** The WMT14 language pairs (the configs of `wmt/wmt14`). */
export type Wmt14Pair = "cs-en" | "de-en" | "fr-en" | "hi-en" | "ru-en";

/**
 * WMT14 translation (`wmt/wmt14`): the `translation` column `{de, en}` flattened into
 * `{ de, en }` (or the two languages of `language_pair`).
 *
 * @param opts `language_pair` (default `"de-en"`), `split`, `max_samples`, hub options
 * @returns the records
 * @throws {TypeError} an unknown language pair; {@linkcode HubError} download failures
 * @example
 * ```ts
 * import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
 * import { loadWmt14 } from "./hub_datasets.ts";
 * // A local copy of the repo layout; without `path` the files come from the hub cache.
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/de-en`);
 * await Deno.writeFile(`${dir}/de-en/validation-00000-of-00001.parquet`, new Uint8Array(parquetWriteBuffer({
 *   columnData: [{ name: "translation", data: [{ de: "Guten Morgen.", en: "Good morning." }], type: "JSON" }],
 * })));
 * const rows = await loadWmt14({ path: dir, split: "validation" });
 * if (rows[0].de !== "Guten Morgen." || rows[0].en !== "Good morning.") throw new Error(JSON.stringify(rows));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadWmt14(
  opts: HubDatasetOptions & { language_pair?: Wmt14Pair } = {},
): Promise<Record<string, unknown>[]> {
  const pair = opts.language_pair ?? "de-en";
  const pairs = ["cs-en", "de-en", "fr-en", "hi-en", "ru-en"];
  if (!pairs.includes(pair)) {
    throw new TypeError(`Cannot load wmt/wmt14: language_pair "${pair}" is not one of ${pairs.join(", ")}`);
  }
  const [a, b] = pair.split("-");
  return await loadHubDataset("wmt/wmt14", {
    ...opts,
    config: pair,
    parquet_columns: ["translation"],
    map: (row) => {
      const t = row.translation as Record<string, unknown> | null;
      if (!t || typeof t[a] !== "string" || typeof t[b] !== "string") {
        throw new TypeError(
          `Cannot read wmt/wmt14 ${pair}: a translation is ${
            JSON.stringify(t)
          }, expected {"${a}": "...", "${b}": "..."}`,
        );
      }
      return { [a]: t[a], [b]: t[b] };
    },
  });
}

/**
 * GLUE SST-2 sentiment (`nyu-mll/glue`, config `sst2`): `{ sentence, label, idx }` with label 0
 * (negative) or 1 (positive); the test split has label -1 (hidden), as on the hub.
 *
 * @param opts `split`, `max_samples`, hub options
 * @returns the records
 * @throws {RangeError} an unknown split; {@linkcode HubError} download failures
 * @example
 * ```ts
 * import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
 * import { loadSst2 } from "./hub_datasets.ts";
 * // A local copy of the repo layout; without `path` the files come from the hub cache.
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/sst2`);
 * await Deno.writeFile(`${dir}/sst2/validation-00000-of-00001.parquet`, new Uint8Array(parquetWriteBuffer({
 *   columnData: [
 *     { name: "sentence", data: ["a gorgeous film", "dull"] },
 *     { name: "label", data: [1, 0] },
 *     { name: "idx", data: [0, 1] },
 *   ],
 * })));
 * const rows = await loadSst2({ path: dir, split: "validation" });
 * if (rows.length !== 2 || rows[0].label !== 1) throw new Error(JSON.stringify(rows));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadSst2(opts: HubDatasetOptions = {}): Promise<Record<string, unknown>[]> {
  return await loadHubDataset("nyu-mll/glue", {
    ...opts,
    config: "sst2",
    parquet_columns: ["sentence", "label", "idx"],
  });
}

/** Options of {@linkcode resolveDataset}: the hub options and the dataset config. */
export interface ResolveDatasetOptions extends Omit<HubOptions, "repo_type"> {
  /** The dataset config of a hub dataset: its folder in the repo (HF `name`, TRL `dataset_config`). */
  config?: string | null;
  /** The start of messages, e.g. `Cannot train`. */
  subject?: string;
  /** Told when the hub cannot be reached and a cached snapshot serves (default: nothing). */
  log?: (line: string) => void;
}

/** A hub dataset id: `org/name` or a canonical `name` (no data file extension: that is a missing file). */
const DATASET_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

/**
 * Whether `dataset` could be a hub dataset id (`org/name`, `name`), not a missing local file
 * (`data/train.jsonl`): what {@linkcode resolveDataset} asks the hub for.
 */
export function isHubDatasetId(dataset: string): boolean {
  const last = dataset.split("/").pop()!;
  return DATASET_ID.test(dataset) && !(last.includes(".") && isDataFileName(last));
}

/** A dataset as {@linkcode resolveDataset} found it: the local path, and the card config to read there. */
export interface ResolvedDataset {
  /** A file, a folder of split files, or a hub snapshot folder (a config's folder for a repo without a card). */
  path: string;
  /** The card config (README.md `configs:`) that names the splits under `path`, or null. */
  config: string | null;
}

/**
 * A dataset as a local path, as `datasets.load_dataset(path, name)` finds it: an existing file or
 * folder as it is, else a hub dataset id whose data files (jsonl, json, csv, tsv, txt, parquet, the
 * text formats also gzip, zstd, xz or bzip2-compressed) are downloaded into the hub cache, at the commit
 * one listing resolved, and whose snapshot folder is returned. The card's `configs:` (README.md)
 * say which files each config's splits are, as HF reads them; without a card, `config` is a folder
 * of the repo, and without `config` the files at the top (when they name a split), under `data/`
 * or in split folders are taken, and a repo whose data is only in config folders asks for one.
 * Offline (`HF_HUB_OFFLINE`), or when the hub cannot be reached, a cached snapshot serves if it
 * holds every shard of the config.
 *
 * @param dataset a file, a folder or a hub dataset id
 * @param opts `config`, `subject`, hub options
 * @returns the local path and the card config to read its splits with
 * @throws {Deno.errors.NotFound} a path that does not exist and is not a hub dataset id
 * @throws {RangeError} `config` with a local folder without a card; a config that does not exist
 *   (listing those that do); a repo without data files; a cached config missing shards
 * @throws {HubError} the hub unreachable with nothing cached, an unknown or gated dataset
 */
export async function resolveDataset(
  dataset: string,
  opts: ResolveDatasetOptions = {},
): Promise<ResolvedDataset> {
  const subject = opts.subject ?? `Cannot load dataset ${dataset}`;
  const config = opts.config ?? null;
  if (await pathExists(dataset)) {
    if (config === null || folderCardConfigs(dataset)) return { path: dataset, config };
    throw new RangeError(
      `${subject}: dataset config "${config}" names a config of a dataset card (README.md configs:), and ` +
        `${dataset} is a local path without one; drop the config (or give the config's folder as the dataset)`,
    );
  }
  if (!isHubDatasetId(dataset)) {
    throw new Deno.errors.NotFound(
      `${subject}: dataset ${dataset} does not exist, and is not a hub dataset id (org/name); fix the path`,
    );
  }
  const { config: _config, subject: _subject, log: _log, ...hubOpts } = opts;
  const hub = { ...hubOpts, repo_type: "dataset" as const };
  let listing: { commit: string; files: string[] } | null = null, unreachable: HubError | null = null;
  if (!isOfflineMode(opts)) {
    try {
      listing = await listRepoFiles(dataset, hub);
    } catch (e) {
      // unreachable or failing: a cached snapshot serves, as snapshotDownload does
      if (!(e instanceof HubError && (e.kind === "connection" || e.kind === "http"))) {
        throw notADataset(e, dataset);
      }
      unreachable = e;
    }
  }
  if (listing === null) {
    const cached = await snapshotDownload(dataset, { ...hub, offline: true }).catch((e) => {
      if (!unreachable) throw e; // offline mode: its message says so
      throw new HubError(
        unreachable.kind,
        `Cannot find dataset ${dataset}: it is not a local path, and ${
          (unreachable.message[0].toLowerCase() + unreachable.message.slice(1)).replace(/[.;]?\s*$/, "")
        }; no snapshot of it is cached`,
        { status: unreachable.status, cause: unreachable },
      );
    });
    const files = await listSnapshotFiles(cached, ["*"]);
    if (unreachable) {
      opts.log?.(
        `the hub could not be reached (${unreachable.kind}); dataset ${dataset} is read from the cache, ` +
          `commit ${basename(cached)}, which may be older than the hub's`,
      );
    }
    const cacheNote = `${subject} (from the cache, the hub not asked)`;
    const card = files.includes("README.md") ? folderCardConfigs(cached) : null;
    const c = card ? pickCardConfig(card, config, `${cacheNote}: its card`) : null;
    const r = c
      ? { files: cardFiles(files, c, dataset, cacheNote), folder: "" }
      : pickDataFiles(files.filter((f) => isDataFileName(basename(f))), config, dataset, cacheNote, true);
    refuseMissingShards(
      r.files,
      dataset,
      subject,
      c?.data_files ? Object.values(cardPatterns(c)).flat() : null,
    );
    return c ? { path: cached, config: c.config_name } : { path: join(cached, r.folder), config: null };
  }
  let card: CardConfig[] | null = null;
  if (listing.files.includes("README.md")) {
    const folder = await downloadListedFiles(dataset, { commit: listing.commit, files: ["README.md"] }, hub);
    card = cardConfigs(await Deno.readTextFile(join(folder, "README.md")), `the card of dataset ${dataset}`);
  }
  if (card) {
    const c = pickCardConfig(card, config, `${subject}: its card`);
    const files = cardFiles(listing.files, c, dataset, subject);
    if (!files.length) throw noDataFiles(subject, dataset);
    const folder = await downloadListedFiles(dataset, {
      commit: listing.commit,
      files: ["README.md", ...files],
    }, hub);
    return { path: folder, config: c.config_name };
  }
  const r = pickDataFiles(listing.files.filter((f) => isDataFileName(basename(f))), config, dataset, subject);
  const folder = await downloadListedFiles(dataset, { commit: listing.commit, files: r.files }, hub);
  return { path: join(folder, r.folder), config: null };
}

/** The data files of a card config: those its `data_files` patterns match, or those under its `data_dir`. */
function cardFiles(files: string[], c: CardConfig, dataset: string, subject: string): string[] {
  const data = files.filter((f) => isDataFileName(basename(f)));
  if (c.data_files) {
    const res = Object.values(cardPatterns(c)).flat().map(globRegExp);
    return data.filter((f) => res.some((re) => re.test(f)));
  }
  if (c.data_dir) return data.filter((f) => f.startsWith(c.data_dir + "/"));
  return pickDataFiles(data, null, dataset, subject).files; // named by file: the default layout's
}

/**
 * A cached config missing a file is not read as whole (a download cut short): a card's exact
 * `data_files` paths must all be there; of a shard group (`train-00001-of-00004`), as many as the
 * config's patterns take (all of them without a card).
 */
function refuseMissingShards(
  files: string[],
  dataset: string,
  subject: string,
  patterns: string[] | null,
): void {
  const fail = (what: string) =>
    new RangeError(
      `${subject}: the cache lacks ${what} of dataset ${dataset} (a download cut short); run once with ` +
        `network access to complete it`,
    );
  const exact = (patterns ?? []).filter((p) => !/[*?[]/.test(p)).map((p) => p.replace(/^\.\//, ""));
  const have = new Set(files);
  const lacking = exact.filter((p) => !have.has(p));
  if (lacking.length) throw fail(lacking[0]);
  const res = (patterns ?? []).filter((p) => /[*?[]/.test(p)).map(globRegExp);
  const groups = new Map<string, { n: number; have: number; want: number }>();
  for (const f of files) {
    const m = /^(.*)-(\d+)-of-(\d+)([^/]*)$/.exec(f);
    if (!m) continue;
    const key = m[1] + "|" + m[3], n = Number(m[3]);
    let g = groups.get(key);
    if (!g) {
      // the shard numbers the patterns take, with this file's suffix (a hash may differ per shard)
      const name = (j: number) => `${m[1]}-${String(j).padStart(m[2].length, "0")}-of-${m[3]}${m[4]}`;
      const want = patterns === null ? n : Array.from({ length: n }, (_, j) => j)
        .filter((j) => res.some((re) => re.test(name(j)))).length;
      g = { n, have: 0, want };
      groups.set(key, g);
    }
    g.have++;
  }
  for (const [key, g] of groups) {
    if (g.have < g.want) throw fail(`${g.want - g.have} of the ${g.n} shards of ${key.split("|")[0]}`);
  }
}

function noDataFiles(subject: string, dataset: string): RangeError {
  return new RangeError(
    `${subject}: hub dataset ${dataset} has no data files fledge reads (jsonl, json, csv, tsv, txt, parquet, ` +
      `also ${COMPRESSED_NAMES}); a dataset made by a loading script, or saved with save_to_disk (.arrow), must be ` +
      `converted first (to_json / to_parquet)`,
  );
}

function isDataFileName(name: string): boolean {
  try {
    return isDataFile(name);
  } catch {
    return true; // a data file in a compression that is not read: the reader names it
  }
}

/** A 404 says the id is neither a local path nor a hub dataset: both are named. */
function notADataset(e: unknown, dataset: string): unknown {
  if (!(e instanceof HubError && (e.kind === "not_found" || e.kind === "unauthorized"))) return e;
  const why = e.kind === "not_found"
    ? "the hub has no dataset of that id"
    : "the hub refused it (a private or gated dataset needs a token, HF_TOKEN; the hub answers the same for an id that does not exist)";
  return new HubError(
    e.kind,
    `Cannot find dataset ${dataset}: it is not a local path, and ${why} (${e.message}); fix the path or the id`,
    { status: e.status, cause: e },
  );
}

/** The data files a config (or the repo's default layout) reads, or a RangeError naming the choices. */
function pickDataFiles(
  files: string[],
  config: string | null,
  dataset: string,
  subject: string,
  cached = false,
): { files: string[]; folder: string } {
  const splitDir = (d: string) => d === "data" || SPLIT_KEYWORDS.some(([, w]) => w.includes(d.toLowerCase()));
  const configs = [
    ...new Set(
      files.filter((f) => f.includes("/")).map((f) => f.split("/")[0]).filter((d) => !splitDir(d)),
    ),
  ].sort();
  if (config !== null) {
    const picked = files.filter((f) => f.startsWith(config + "/"));
    if (picked.length) return { files: picked, folder: config };
    // HF names a repo without configs' one config "default"
    if (config === "default" && !configs.length) return pickDataFiles(files, null, dataset, subject, cached);
    if (!files.length) throw noDataFiles(subject, dataset);
    throw new RangeError(
      cached
        ? `${subject}: config "${config}" of hub dataset ${dataset} is not in the cache (cached: ${
          configs.join(", ") || "none"
        }); run once with network access`
        : `${subject}: hub dataset ${dataset} has no config "${config}"; its configs are ${
          configs.join(", ") || "none (drop dataset_config)"
        }`,
    );
  }
  // the top's files count when one names a split (a LICENSE.txt beside data/ is no data), or when
  // there is nothing else (a repo of one data.json is its train split, as HF reads it)
  const top = files.filter((f) => !f.includes("/")),
    nested = files.filter((f) => splitDir(f.split("/")[0]));
  const named = top.some((f) => hasSplitKeyword(f));
  const picked = [...(named || (!nested.length && !configs.length) ? top : []), ...nested];
  if (picked.length) return { files: picked, folder: "" };
  if (!files.length) throw noDataFiles(subject, dataset);
  throw new RangeError(
    `${subject}: hub dataset ${dataset} keeps its data in configs (${configs.join(", ")}); ` +
      `choose one with dataset_config (--dataset_config ${configs[0]})`,
  );
}
