/**
 * Text cleaning for training corpora: length, repetition (Gopher/Dolma), exact dedup, MinHash-LSH
 * near dedup and a language filter, each a pure function over records `{text, ...}` that returns
 * the kept records and a count per drop reason; and a pipeline of them described in YAML.
 *
 * ```yaml
 * - exact_dedup: {}
 * - near_dedup: {threshold: 0.8, num_perm: 128}
 * - length: {min_words: 5}
 * ```
 * @module
 */
import { createHash } from "node:crypto";
// Full specifiers are the house rule (DESIGN.md: modules must run when imported by URL).
// deno-lint-ignore no-import-prefix
import { parse as parseYaml } from "npm:yaml@^2.9";
import { jaccard, LshIndex, lshParams, minhashFamily, minhashSignature, shingleSet } from "./minhash.ts";
import { GOPHER_REPETITION, repetitionReason } from "./_clean_repetition.ts";
import { guessLanguage, type LanguageCode, type LanguageGuess } from "./_clean_language.ts";
import { STEP_SCHEMA, stepProblems, throwProblems } from "./_clean_steps.ts";
import { yamlProblem } from "../util/problems.ts";

export type { LanguageCode, LanguageGuess };

/** Options every filter takes besides its own. */
export interface CleanOptions {
  /** Record field holding the text (default `"text"`). */
  field?: string;
  /** Also return the dropped records with their reason (default false). */
  return_dropped?: boolean;
}

/** A dropped record, its position in the filter's input and why it went. */
export interface DroppedRecord<R> {
  /** The record as it came in. */
  record: R;
  /** Index in the input array (in a pipeline: in the pipeline's input). */
  index: number;
  /** Reason key, as counted in {@linkcode CleanResult.dropped}. */
  reason: string;
  /** For duplicates: the index of the kept record it duplicates. */
  duplicate_of?: number;
  /** In a pipeline: the index of the step that dropped it. */
  step?: number;
}

/** What a filter returns. */
export interface CleanResult<R> {
  /** Kept records in input order (the length filter may return copies with paragraphs removed). */
  kept: R[];
  /** Reason -> number of records dropped for it. */
  dropped: Record<string, number>;
  /** Present when `return_dropped` was set. */
  dropped_records?: DroppedRecord<R>[];
}

/** Options of {@linkcode lengthFilter}; word = run of non-whitespace. */
export interface LengthOptions {
  /** Drop documents with fewer words (after paragraph removal). */
  min_words?: number;
  /** Drop documents with more words. */
  max_words?: number;
  /** Remove paragraphs with fewer words from the text (C4-style line filtering). */
  min_paragraph_words?: number;
  /** Remove paragraphs with more words from the text. */
  max_paragraph_words?: number;
  /** Paragraphs are separated by blank lines (default) or by every newline. */
  paragraph_split?: "blank_line" | "line";
}

/** Options of {@linkcode repetitionFilter}; omitted thresholds take Gopher's values. */
export interface RepetitionOptions {
  /** Max fraction of lines that repeat an earlier line (0.3). */
  dup_line_frac?: number;
  /** Max fraction of paragraphs that repeat an earlier paragraph (0.3). */
  dup_para_frac?: number;
  /** Max fraction of characters in repeated lines (0.2). */
  dup_line_char_frac?: number;
  /** Max fraction of characters in repeated paragraphs (0.2). */
  dup_para_char_frac?: number;
  /** n -> max character fraction of the most frequent word n-gram (`{"2": 0.2, "3": 0.18, "4": 0.16}`). */
  top_n_grams?: Record<string, number>;
  /** n -> max character fraction of duplicated word n-grams (`{"5": 0.15, ..., "10": 0.1}`). */
  dup_n_grams?: Record<string, number>;
}

/** Options of {@linkcode nearDedup}. */
export interface NearDedupOptions {
  /** Jaccard similarity of word shingle sets at or above which a record is a duplicate (0.8). */
  threshold?: number;
  /** MinHash signature length (128). */
  num_perm?: number;
  /** Words per shingle (5). */
  shingle_size?: number;
  /** Seed of the hash family (1). */
  seed?: number;
  /** datasketch's false-positive weight for choosing bands x rows (0.05; see nearDedup). */
  false_positive_weight?: number;
  /** datasketch's false-negative weight (0.95). */
  false_negative_weight?: number;
  /** Confirm LSH candidates with the exact Jaccard of the shingle sets (true). */
  verify?: boolean;
}

/** Options of {@linkcode languageFilter} and {@linkcode detectLanguage}. */
export interface LanguageOptions {
  /** Languages to keep (default `["en"]`); "und" keeps texts no language could be told for. */
  languages?: LanguageCode[];
  /** Minimum stop-word rate for a Latin-script language to be told (default 0.1). */
  min_score?: number;
}

/** One pipeline step: a single key naming the filter, its options as the value. */
export type CleanStep =
  | { length: LengthOptions }
  | { repetition: RepetitionOptions }
  | { exact_dedup: Record<string, never> }
  | { near_dedup: NearDedupOptions }
  | { language: LanguageOptions };

/** What {@linkcode runCleanPipeline} returns: the overall result plus one line per step. */
export interface CleanPipelineResult<R> extends CleanResult<R> {
  /** Per step: its name, how many records it kept and its drop counts. */
  steps: { name: string; kept: number; dropped: Record<string, number> }[];
}

const COMMON_KEYS = ["field", "return_dropped"];

function checkInput(fn: string, name: string, records: unknown, opts: object): string {
  if (!Array.isArray(records)) {
    throw new TypeError(`Cannot run ${fn}: records is ${typeof records}, not an array`);
  }
  const field = (opts as CleanOptions).field ?? "text";
  const own = Object.fromEntries(Object.entries(opts).filter(([k]) => !COMMON_KEYS.includes(k)));
  throwProblems(
    `Cannot run ${fn}: bad options`,
    stepProblems(name, own, name),
    "Fix or remove these options",
  );
  return field;
}

function textOf(fn: string, record: unknown, index: number, field: string): string {
  const v = (record as Record<string, unknown> | null)?.[field];
  if (typeof v !== "string") {
    throw new TypeError(
      `Cannot run ${fn}: record ${index} field "${field}" is ${
        v === undefined ? "missing" : typeof v
      }, not a string; ` +
        `set the field option to the record's text field`,
    );
  }
  return v;
}

/** Shared loop: `judge` returns a drop reason (with an optional duplicate index) or a kept record. */
function filterRecords<R>(
  records: R[],
  opts: CleanOptions,
  judge: (text: string, record: R, index: number) => { reason: string; duplicate_of?: number } | { keep: R },
  fn: string,
): CleanResult<R> {
  const field = opts.field ?? "text";
  const kept: R[] = [];
  const dropped: Record<string, number> = {};
  const droppedRecords: DroppedRecord<R>[] = [];
  records.forEach((record, index) => {
    const verdict = judge(textOf(fn, record, index, field), record, index);
    if ("keep" in verdict) {
      kept.push(verdict.keep);
      return;
    }
    dropped[verdict.reason] = (dropped[verdict.reason] ?? 0) + 1;
    if (opts.return_dropped) droppedRecords.push({ record, index, ...verdict });
  });
  return opts.return_dropped ? { kept, dropped, dropped_records: droppedRecords } : { kept, dropped };
}

const countWords = (s: string): number => s.match(/\S+/g)?.length ?? 0;

/**
 * Length filter: removes paragraphs outside `[min_paragraph_words, max_paragraph_words]` from the
 * text (the record is copied, never mutated), then drops documents outside `[min_words, max_words]`.
 * Reasons: `no_paragraph_in_range`, `too_few_words`, `too_many_words`.
 * @param records Records with a text field.
 * @param options Bounds (all optional) plus {@linkcode CleanOptions}.
 * @returns Kept records and drop counts.
 * @throws {TypeError} when a record's text is not a string or an option has the wrong type.
 * @throws {RangeError} when a bound is negative or min > max. {SyntaxError} for an unknown option.
 * @example
 * ```ts
 * import { lengthFilter } from "./clean.ts";
 * const r = lengthFilter([{ text: "one two three" }, { text: "one" }], { min_words: 2 });
 * if (r.kept.length !== 1 || r.dropped.too_few_words !== 1) throw new Error();
 * ```
 */
export function lengthFilter<R extends object>(
  records: R[],
  options: LengthOptions & CleanOptions = {},
): CleanResult<R> {
  const field = checkInput("lengthFilter", "length", records, options);
  const { min_words = 0, max_words = Infinity } = options;
  const pMin = options.min_paragraph_words ?? 0, pMax = options.max_paragraph_words ?? Infinity;
  const byParagraph = pMin > 0 || pMax < Infinity;
  if (options.paragraph_split !== undefined && !byParagraph) {
    throw new TypeError(
      `Cannot run lengthFilter: paragraph_split says how min_paragraph_words / max_paragraph_words cut paragraphs, ` +
        `and neither is set; set one or drop paragraph_split`,
    );
  }
  const [splitter, joiner] = options.paragraph_split === "line" ? [/\n/, "\n"] : [/\n[ \t]*\n\s*/, "\n\n"];
  return filterRecords(records, options, (text, record) => {
    let out = text;
    if (byParagraph) {
      const paras = text.trim().split(splitter);
      const keep = paras.filter((p) => {
        const n = countWords(p);
        return n > 0 && n >= pMin && n <= pMax;
      });
      if (keep.length === 0) return { reason: "no_paragraph_in_range" };
      if (keep.length < paras.length) out = keep.join(joiner);
    }
    const n = countWords(out);
    if (n < min_words) return { reason: "too_few_words" };
    if (n > max_words) return { reason: "too_many_words" };
    return { keep: out === text ? record : { ...record, [field]: out } };
  }, "lengthFilter");
}

/**
 * Repetition filter after Gopher (Rae et al. 2021, table A1) as datatrove and Dolma implement it:
 * duplicate line / paragraph fractions (by count and by characters), the character share of the
 * most frequent word 2/3/4-gram, and the character share of duplicated word 5..10-grams.
 * Reasons: `dup_para_frac`, `dup_para_char_frac`, `dup_line_frac`, `dup_line_char_frac`,
 * `top_<n>_gram`, `duplicated_<n>_n_grams`. One deviation: a most frequent n-gram that occurs once
 * is not counted (datatrove would drop very short texts for it).
 * @param records Records with a text field.
 * @param options Thresholds (defaults: Gopher's) plus {@linkcode CleanOptions}.
 * @returns Kept records and drop counts.
 * @throws {TypeError} / {RangeError} / {SyntaxError} for bad records or options, as lengthFilter.
 * @example
 * ```ts
 * import { repetitionFilter } from "./clean.ts";
 * const spam = Array(10).fill("buy now").join("\n");
 * const r = repetitionFilter([{ text: spam }, { text: "A normal sentence about packages." }]);
 * if (r.kept.length !== 1 || r.dropped.dup_line_frac !== 1) throw new Error(JSON.stringify(r.dropped));
 * ```
 */
export function repetitionFilter<R extends object>(
  records: R[],
  options: RepetitionOptions & CleanOptions = {},
): CleanResult<R> {
  checkInput("repetitionFilter", "repetition", records, options);
  const t = {
    ...GOPHER_REPETITION,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
  };
  return filterRecords(records, options, (text, record) => {
    const reason = repetitionReason(text, t);
    return reason ? { reason } : { keep: record };
  }, "repetitionFilter");
}

/**
 * The normalized form exact dedup compares: NFKC, lower case, whitespace runs collapsed, trimmed.
 * @param text Any text.
 * @returns The normalized text.
 * @example
 * ```ts
 * import { normalizeForDedup } from "./clean.ts";
 * if (normalizeForDedup("  Hello\n\tWORLD ") !== "hello world") throw new Error();
 * ```
 */
export function normalizeForDedup(text: string): string {
  return text.normalize("NFKC").toLowerCase().replace(/\s+/g, " ").trim();
}

/**
 * Exact dedup: keeps the first record of each SHA-256 of {@linkcode normalizeForDedup}'s text.
 * Reason: `exact_duplicate` (with `duplicate_of` in the dropped records).
 * @param records Records with a text field.
 * @param options {@linkcode CleanOptions}.
 * @returns Kept records and drop counts.
 * @throws {TypeError} when a record's text is not a string.
 * @example
 * ```ts
 * import { exactDedup } from "./clean.ts";
 * const r = exactDedup([{ text: "Hello  world" }, { text: "hello world" }, { text: "other" }]);
 * if (r.kept.length !== 2 || r.dropped.exact_duplicate !== 1) throw new Error();
 * ```
 */
export function exactDedup<R extends object>(records: R[], options: CleanOptions = {}): CleanResult<R> {
  checkInput("exactDedup", "exact_dedup", records, options);
  const first = new Map<string, number>();
  return filterRecords(records, options, (text, record, index) => {
    const key = createHash("sha256").update(normalizeForDedup(text)).digest("base64");
    const seen = first.get(key);
    if (seen !== undefined) return { reason: "exact_duplicate", duplicate_of: seen };
    first.set(key, index);
    return { keep: record };
  }, "exactDedup");
}

/**
 * Near dedup with MinHash + banded LSH over word shingles (see `minhash.ts`). Records are taken in
 * order; a record is dropped as `near_duplicate` when its shingle Jaccard with any earlier record
 * (kept or dropped) reaches `threshold`, so the first of each cluster is kept; `duplicate_of` names
 * that first (kept) record. A chain A~B, B~C drops B and C even when A and C are less similar,
 * as datasketch's query-then-insert loop and text-dedup's union-find do.
 *
 * Bands x rows come from datasketch's `_optimal_param` for `threshold` and `num_perm`. Because
 * candidates are confirmed with the exact Jaccard of the shingle sets (`verify`, default), false
 * positives cost only time, so the default weights favour recall (0.05 / 0.95; for 0.8 and 128
 * permutations: 16 bands x 8 rows, P(candidate) 0.95 at J = 0.8, 0.99 at 0.85). With
 * `verify: false` any band collision counts (datasketch's behaviour); then weigh 0.5 / 0.5.
 * Memory: the shingle sets of all records are held while it runs (8 bytes per shingle).
 * @param records Records with a text field.
 * @param options {@linkcode NearDedupOptions} plus {@linkcode CleanOptions}.
 * @returns Kept records and drop counts.
 * @throws {TypeError} / {RangeError} / {SyntaxError} for bad records or options.
 * @example
 * ```ts
 * import { nearDedup } from "./clean.ts";
 * const a = "the quick brown fox jumps over the lazy dog near the quiet river bank today";
 * const r = nearDedup([{ text: a }, { text: a.replace("today", "again") }, { text: "something else entirely" }], {
 *   threshold: 0.7,
 * });
 * if (r.kept.length !== 2 || r.dropped.near_duplicate !== 1) throw new Error(JSON.stringify(r.dropped));
 * ```
 */
export function nearDedup<R extends object>(
  records: R[],
  options: NearDedupOptions & CleanOptions = {},
): CleanResult<R> {
  checkInput("nearDedup", "near_dedup", records, options);
  const { threshold = 0.8, num_perm = 128, shingle_size = 5, seed = 1, verify = true } = options;
  const params = lshParams(threshold, num_perm, {
    false_positive_weight: options.false_positive_weight ?? 0.05,
    false_negative_weight: options.false_negative_weight ?? 0.95,
  });
  const family = minhashFamily(num_perm, seed);
  const index = new LshIndex(params);
  const sets = new Map<number, Float64Array>();
  const root = new Map<number, number>(); // record index -> the kept record of its cluster
  return filterRecords(records, options, (text, record, i) => {
    const set = shingleSet(text, { shingle_size });
    if (set.length === 0) return { keep: record };
    const sig = minhashSignature(set, family);
    const match = index.query(sig).find((j) => !verify || jaccard(set, sets.get(j)!) >= threshold);
    index.insert(i, sig);
    if (verify) sets.set(i, set);
    root.set(i, match === undefined ? i : root.get(match)!);
    return match === undefined ? { keep: record } : { reason: "near_duplicate", duplicate_of: root.get(i)! };
  }, "nearDedup");
}

/**
 * Guess a text's language. Non-Latin scripts decide first (Cyrillic -> "ru", Greek -> "el",
 * Arabic, Hebrew, kana -> "ja", Hangul -> "ko", Han -> "zh") when they hold at least half the
 * letters. Latin-script text is scored by the share of its words that are among ~50 stop words
 * of en, de, fr and es (German umlauts / ß tip close calls to de); below `min_score` it is "und".
 * Limits: only those four Latin-script languages (Italian, Dutch, ... come out "und" or as a
 * neighbour); Cyrillic is always "ru" (Ukrainian, Bulgarian too); texts under ~20 words, lists,
 * code and tables are unreliable; mixed-language texts get the majority language.
 * @param text Any text.
 * @param options `min_score` (default 0.1).
 * @returns Language, score and per-language stop-word rates.
 * @example
 * ```ts
 * import { detectLanguage } from "./clean.ts";
 * if (detectLanguage("Das ist ein kleines Paket für die Arbeit mit der Konsole.").language !== "de") throw new Error();
 * ```
 */
export function detectLanguage(
  text: string,
  options: Pick<LanguageOptions, "min_score"> = {},
): LanguageGuess {
  return guessLanguage(text, options.min_score ?? 0.1);
}

/**
 * Language filter: keeps records whose {@linkcode detectLanguage} result is in `languages`.
 * Reason: `language_<code>` (e.g. `language_de`, `language_und`).
 * @param records Records with a text field.
 * @param options {@linkcode LanguageOptions} plus {@linkcode CleanOptions}.
 * @returns Kept records and drop counts.
 * @throws {TypeError} / {RangeError} / {SyntaxError} for bad records or options.
 * @example
 * ```ts
 * import { languageFilter } from "./clean.ts";
 * const r = languageFilter([
 *   { text: "This is a tool for the management of the packages that are on the system." },
 *   { text: "Dies ist ein Werkzeug für die Verwaltung der Pakete, die auf dem System sind." },
 * ], { languages: ["en"] });
 * if (r.kept.length !== 1 || r.dropped.language_de !== 1) throw new Error(JSON.stringify(r.dropped));
 * ```
 */
export function languageFilter<R extends object>(
  records: R[],
  options: LanguageOptions & CleanOptions = {},
): CleanResult<R> {
  checkInput("languageFilter", "language", records, options);
  const keep = new Set<string>(options.languages ?? ["en"]);
  const minScore = options.min_score ?? 0.1;
  return filterRecords(records, options, (text, record) => {
    const { language } = guessLanguage(text, minScore);
    return keep.has(language) ? { keep: record } : { reason: `language_${language}` };
  }, "languageFilter");
}

/**
 * Parse and validate a YAML list of cleaning steps. Each item is a mapping with one key, the step
 * name (`length`, `repetition`, `exact_dedup`, `near_dedup`, `language`), whose value is that
 * filter's options (`{}` or empty for none). Every problem is reported at once.
 * @param text YAML text.
 * @param options `file`: where the text came from, for messages.
 * @returns The validated steps.
 * @throws {SyntaxError} for bad YAML, a non-list, unknown step names or keys (naming the step
 * index, the key and the allowed ones). {TypeError} / {RangeError} for bad option values.
 * Deno's NotCapable without `--allow-env`: `npm:yaml` reads the env var `LOG_TOKENS`.
 * @example
 * ```ts
 * import { cleanPipelineFromYaml, runCleanPipeline } from "./clean.ts";
 * const steps = cleanPipelineFromYaml("- exact_dedup: {}\n- length: {min_words: 2}\n");
 * const r = runCleanPipeline([{ text: "a b" }, { text: "A  b" }, { text: "c" }], steps);
 * if (r.kept.length !== 1 || r.dropped.exact_duplicate !== 1 || r.dropped.too_few_words !== 1) throw new Error();
 * ```
 */
export function cleanPipelineFromYaml(text: string, options: { file?: string } = {}): CleanStep[] {
  const where = options.file ?? "<yaml>";
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    // Only YAML errors are the file's fault; others (e.g. Deno's permission error: the yaml
    // package reads the env var LOG_TOKENS, so run with --allow-env) pass through unchanged.
    if (!(e instanceof Error && e.name.startsWith("YAML"))) throw e;
    // The first line holds the message and "at line L, column C" (said as file:line:col); the rest is a code frame.
    const at = (e as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    throw new SyntaxError(
      `Cannot parse cleaning pipeline ${where}${at ? `:${at.line}:${at.col}` : ""}: ${
        yamlProblem(e.message)
      }`,
    );
  }
  return validateCleanSteps(doc, { file: where });
}

/**
 * Validate steps given as data (from YAML, JSON or code).
 * @param steps Candidate steps.
 * @param options `file` for messages.
 * @returns The steps, typed, with empty options normalized to `{}`.
 * @throws {SyntaxError} / {TypeError} / {RangeError} as {@linkcode cleanPipelineFromYaml}.
 * @example
 * ```ts
 * import { validateCleanSteps } from "./clean.ts";
 * let msg = "";
 * try { validateCleanSteps([{ near_dedup: { num_perms: 64 } }]); } catch (e) { msg = String(e); }
 * if (!msg.includes("steps[0].near_dedup") || !msg.includes("num_perm")) throw new Error(msg);
 * ```
 */
export function validateCleanSteps(steps: unknown, options: { file?: string } = {}): CleanStep[] {
  const where = options.file ?? "<steps>";
  const fix = `Allowed steps: ${
    Object.keys(STEP_SCHEMA).join(", ")
  }; write e.g. "- near_dedup: {threshold: 0.8}"`;
  if (!Array.isArray(steps)) {
    throw new SyntaxError(
      `Cannot read cleaning pipeline ${where}: top level is ${
        steps === null ? "empty" : typeof steps
      }, not a list. ${fix}`,
    );
  }
  const problems = steps.flatMap((step, i) => {
    const keys = step && typeof step === "object" && !Array.isArray(step) ? Object.keys(step) : [];
    if (keys.length !== 1) {
      return [{
        cls: SyntaxError,
        msg: `steps[${i}]: ${JSON.stringify(step)} is not a mapping with one step name`,
      }];
    }
    const name = keys[0];
    if (!(name in STEP_SCHEMA)) {
      return [{
        cls: SyntaxError,
        msg: `steps[${i}]: unknown step "${name}"; allowed: ${Object.keys(STEP_SCHEMA).join(", ")}`,
      }];
    }
    return stepProblems(name, (step as Record<string, unknown>)[name], `steps[${i}].${name}`);
  });
  throwProblems(`Cannot read cleaning pipeline ${where}`, problems, fix);
  return steps.map((step) => {
    const [name, opts] = Object.entries(step as Record<string, unknown>)[0];
    return { [name]: opts ?? {} } as CleanStep;
  });
}

/**
 * Run steps in order over records; drop counts are summed by reason over steps, dropped records
 * carry their index in `records` and the step index.
 * @param records Records with a text field.
 * @param steps Steps (from {@linkcode cleanPipelineFromYaml} or code; validated here too).
 * @param options {@linkcode CleanOptions}, applied to every step.
 * @returns Kept records, summed drop counts and per-step lines.
 * @throws {SyntaxError} / {TypeError} / {RangeError} for bad steps or records.
 * @example
 * ```ts
 * import { runCleanPipeline } from "./clean.ts";
 * const r = runCleanPipeline([{ body: "x y z" }, { body: "x y z" }], [{ exact_dedup: {} }], { field: "body" });
 * if (r.kept.length !== 1 || r.steps[0].name !== "exact_dedup") throw new Error();
 * ```
 */
export function runCleanPipeline<R extends object>(
  records: R[],
  steps: CleanStep[],
  options: CleanOptions = {},
): CleanPipelineResult<R> {
  const valid = validateCleanSteps(steps);
  let current = records.map((record, index) => ({ record, index }));
  const dropped: Record<string, number> = {};
  const droppedRecords: DroppedRecord<R>[] = [];
  const lines: CleanPipelineResult<R>["steps"] = [];
  valid.forEach((step, s) => {
    const [name, opts] = Object.entries(step)[0] as [string, object];
    const inputs = current.map((c) => c.record);
    const o = { ...opts, field: options.field, return_dropped: true };
    const r = name === "length"
      ? lengthFilter(inputs, o)
      : name === "repetition"
      ? repetitionFilter(inputs, o)
      : name === "exact_dedup"
      ? exactDedup(inputs, o)
      : name === "near_dedup"
      ? nearDedup(inputs, o)
      : languageFilter(inputs, o);
    const gone = new Set(r.dropped_records!.map((d) => d.index));
    for (const d of r.dropped_records!) {
      const dup = d.duplicate_of === undefined ? {} : { duplicate_of: current[d.duplicate_of].index };
      if (options.return_dropped) {
        droppedRecords.push({ ...d, index: current[d.index].index, ...dup, step: s });
      }
    }
    // The length filter may replace a record by a copy: take kept records from r.kept, in order.
    const survivors = current.filter((_, i) => !gone.has(i));
    current = survivors.map((c, i) => ({ record: r.kept[i], index: c.index }));
    for (const [k, v] of Object.entries(r.dropped)) dropped[k] = (dropped[k] ?? 0) + v;
    lines.push({ name, kept: r.kept.length, dropped: r.dropped });
  });
  const kept = current.map((c) => c.record);
  return options.return_dropped
    ? { kept, dropped, dropped_records: droppedRecords, steps: lines }
    : { kept, dropped, steps: lines };
}
