/**
 * Private to `search.ts`: the study on disk. `study.json` holds what defines the study (space,
 * metric, sampler, seed, base config) and every trial, rewritten atomically after each change, so
 * a kill leaves the last complete state; the reports (results table in Markdown and JSON, the best
 * config as YAML, the optimization history as SVG) are written from it.
 * @module
 */
import { join } from "node:path";
import { pathExists, writeFileAtomic } from "../util/atomic.ts";
import { agree } from "../util/problems.ts";
import { acquireLock, type RunLock } from "../util/lock.ts";
import { parseJson } from "../util/json.ts";
import { formatMetric } from "../util/format.ts";
import { plotTrainingCurves } from "../evaluation/plot.ts";
import { trainingConfigToYaml, validateTrainingConfig } from "./config.ts";
import { applyParams } from "./_search_config.ts";
import type { SearchConfig, SearchResult, Trial } from "./search.ts";

/** What `study.json` holds. */
export interface StudyFile {
  format: "fledge-study";
  version: 1;
  /** What must not change between runs of one study. */
  definition: Record<string, unknown>;
  trials: Trial[];
}

/** A trial's run folder, relative to the study folder: `trials/trial-NNNN`. */
export function trialDir(number: number): string {
  return join("trials", `trial-${String(number).padStart(4, "0")}`);
}

/** The parts of a config that define a study (n_trials and timeout may change on resume). */
export function definitionOf(c: SearchConfig): Record<string, unknown> {
  const { output_dir: _, ...base } = c.base;
  return JSON.parse(JSON.stringify({
    space: c.space,
    metric: c.metric,
    direction: c.direction,
    sampler: c.sampler,
    pruner: c.pruner,
    seed: c.seed,
    tpe: c.tpe,
    median: c.median,
    base,
  }));
}

/** What a study writes into its folder besides `study.json`. */
const STUDY_OUTPUTS = ["trials", "results.md", "results.json", "best_config.yaml", "history.svg"];

/**
 * Lock the study folder and read its study (checking that `c` defines the same one), or start a
 * new one; `study.json` is written either way.
 * @throws {RangeError} when the folder holds a study with another definition, or, with no study,
 *   files a new study would replace
 * @throws {Deno.errors.Busy} when another process runs this study
 */
export async function openStudy(
  c: SearchConfig,
  log: (line: string) => void,
): Promise<{ study: StudyFile; lock: RunLock }> {
  const dir = c.study_dir;
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists || e instanceof Deno.errors.NotADirectory)) throw e;
    // (NotADirectory: a folder above it is the file)
    const what = e instanceof Deno.errors.AlreadyExists
      ? `${dir} is a file`
      : `a folder above ${dir} is a file`;
    throw new TypeError(`Cannot search: study_dir ${what}, not a folder; give the study a folder of its own`);
  }
  const lock = await acquireLock(dir, { command: "search" });
  try {
    const definition = definitionOf(c);
    const found = await readStudy(dir);
    if (found) {
      const changed = definitionChange(found.definition, definition);
      if (changed) {
        throw new RangeError(
          `Cannot resume the study in ${dir}: its ${changed} differs from this config's; ` +
            `restore it or choose another study_dir`,
        );
      }
      const done = found.trials.filter((t) => t.state !== "running").length;
      log(`search: resuming ${dir}: ${done} finished trials kept, ${found.trials.length - done} to resume`);
    } else {
      // a new study writes these: a folder that already has them holds someone's files, not a study
      const taken: string[] = [];
      for (const name of STUDY_OUTPUTS) if (await pathExists(join(dir, name))) taken.push(name);
      if (taken.length) {
        throw new RangeError(
          `Cannot start a study in ${dir}: it already holds ${taken.join(", ")} and no study.json, and ` +
            `the study would replace ${agree(taken).it}; choose another study_dir`,
        );
      }
    }
    const study: StudyFile = found ?? { format: "fledge-study", version: 1, definition, trials: [] };
    await writeStudy(dir, study);
    return { study, lock };
  } catch (e) {
    await lock.release();
    throw e;
  }
}

/** The one line logged when a trial ends. */
export function trialLine(c: SearchConfig, trials: readonly Trial[], t: Trial): string {
  const params = Object.entries(t.params).map(([k, v]) =>
    `${k}=${typeof v === "number" ? +v.toPrecision(4) : v}`
  )
    .join(" ");
  if (t.state === "failed") return `search: trial ${t.number} failed: ${t.note}`;
  const best = bestTrial(trials, c.direction);
  const value = t.value === null ? "none" : t.value.toFixed(4);
  return `search: trial ${t.number} ${t.state} ${c.metric} ${value} after ${t.steps} steps (${params})${
    t.state === "pruned" && t.note ? `: ${t.note}` : ""
  }${best ? `; best trial ${best.number} ${best.value!.toFixed(4)}` : ""}`;
}

/** JSON with NaN / Infinity as null (JSON has neither). */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => typeof x === "number" && !Number.isFinite(x) ? null : x, 2) + "\n";
}

/** A JSON file's value, or null when there is no file. */
export async function readJsonOrNull(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return parseJson(text, path);
}

/** Values by step from JSON, where NaN was written as null. */
export function numbers(o: Record<string, number | null> | undefined): Record<number, number> {
  const out: Record<number, number> = {};
  for (const [k, v] of Object.entries(o ?? {})) out[+k] = v === null ? NaN : v;
  return out;
}

/** Read `<dir>/study.json`, or null when there is none. */
export async function readStudy(dir: string): Promise<StudyFile | null> {
  const path = join(dir, "study.json");
  const s = await readJsonOrNull(path) as StudyFile | null;
  if (s === null) return null;
  if (s?.format !== "fledge-study" || !Array.isArray(s.trials)) {
    throw new SyntaxError(
      `Cannot resume the study: ${path} is not a fledge study file; use another study_dir`,
    );
  }
  for (const t of s.trials) t.intermediate_values = numbers(t.intermediate_values as never);
  return s;
}

/** Write `<dir>/study.json` atomically. */
export async function writeStudy(dir: string, s: StudyFile): Promise<void> {
  await writeFileAtomic(join(dir, "study.json"), toJson(s));
}

/** The first differing key of two study definitions, or null when they agree. */
export function definitionChange(a: Record<string, unknown>, b: Record<string, unknown>): string | null {
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) return k;
  }
  return null;
}

/** The best complete trial (the earliest on ties), or null. */
export function bestTrial(trials: readonly Trial[], direction: SearchConfig["direction"]): Trial | null {
  let best: Trial | null = null;
  for (const t of trials) {
    if (t.state !== "complete" || t.value === null || Number.isNaN(t.value)) continue;
    if (!best || (direction === "minimize" ? t.value < best.value! : t.value > best.value!)) best = t;
  }
  return best;
}

function cell(v: unknown): string {
  if (typeof v === "number") return formatMetric(v, 6);
  return String(v).replace(/\|/g, "\\|");
}

/** The results table in Markdown: one row per trial, the best marked. */
export function resultsMarkdown(c: SearchConfig, trials: readonly Trial[], best: Trial | null): string {
  const names = Object.keys(c.space);
  const head = ["trial", "state", c.metric, "steps", ...names, "note"];
  const rows = trials.map((t) => [
    `${t.number}${best && t.number === best.number ? " (best)" : ""}`,
    t.state,
    t.value === null ? "" : cell(t.value),
    String(t.steps ?? ""),
    ...names.map((k) => cell(t.params[k])),
    cell(t.note ?? ""),
  ]);
  const line = (r: string[]) => `| ${r.join(" | ")} |`;
  const summary = best
    ? `Best: trial ${best.number}, ${c.metric} ${cell(best.value)} (${c.direction}), ` +
      names.map((k) => `${k} = ${cell(best.params[k])}`).join(", ") + "."
    : "No trial completed yet.";
  return [
    `# Search: ${c.metric} (${c.direction}), sampler ${c.sampler}, pruner ${c.pruner}`,
    "",
    summary,
    "",
    line(head),
    line(head.map(() => "---")),
    ...rows.map(line),
    "",
  ].join("\n");
}

/** Write results.md, results.json, best_config.yaml and history.svg; returns the result. */
export async function writeReports(
  c: SearchConfig,
  trials: Trial[],
  stopped_by: SearchResult["stopped_by"],
): Promise<SearchResult> {
  const dir = c.study_dir;
  const best = bestTrial(trials, c.direction);
  const count = (s: Trial["state"]) => trials.filter((t) => t.state === s).length;
  const files = {
    results_md: join(dir, "results.md"),
    results_json: join(dir, "results.json"),
    best_config: best ? join(dir, "best_config.yaml") : null,
    history_svg: null as string | null,
  };
  const result: SearchResult = {
    study_dir: dir,
    metric: c.metric,
    direction: c.direction,
    best_trial: best?.number ?? null,
    best_value: best?.value ?? null,
    best_params: best ? { ...best.params } : null,
    n_trials: trials.length,
    n_complete: count("complete"),
    n_pruned: count("pruned"),
    n_failed: count("failed"),
    steps_run: trials.reduce((s, t) => s + (t.steps ?? 0), 0),
    stopped_by,
    trials,
    files,
  };
  await writeFileAtomic(files.results_md, resultsMarkdown(c, trials, best));
  if (best) {
    // The best trial's config, trained into the base's output_dir (not the trial's folder).
    const config = validateTrainingConfig(applyParams(c.base, best.params), { warn: () => {} });
    await writeFileAtomic(files.best_config!, trainingConfigToYaml(config));
    // Optimization history (Optuna's plot): each complete trial's value and the best so far.
    const records: Record<string, number>[] = [];
    let sofar = NaN;
    for (const t of trials) {
      if (t.state !== "complete" || t.value === null) continue;
      const better = Number.isNaN(sofar) || (c.direction === "minimize" ? t.value < sofar : t.value > sofar);
      if (better) sofar = t.value;
      records.push({ step: t.number, [c.metric]: t.value, [`best_${c.metric}`]: sofar });
    }
    files.history_svg = join(dir, "history.svg");
    const svg = plotTrainingCurves(records, undefined, {
      title: `Optimization history: ${c.metric} of each complete trial and the best so far (x: trial number)`,
      metrics: [c.metric, `best_${c.metric}`],
      columns: 2,
    });
    await writeFileAtomic(files.history_svg, svg);
  }
  await writeFileAtomic(files.results_json, toJson(result));
  return result;
}
