/**
 * Hyperparameter search over any {@linkcode TrainingConfig} field, with Optuna's semantics: a
 * space (`float` with `log` or `step`, `int` with `step`, `categorical`), samplers `tpe` (Optuna
 * 4.x's `TPESampler` defaults; Optuna 5 turned on `multivariate` and `constant_liar` by default and
 * sizes its kernels without the prior), `random` and `grid`, pruners `median` (Optuna's `MedianPruner`) and
 * `none`. {@linkcode runSearch} runs each trial as a training run in its own folder under the
 * study folder, keeps the study in `study.json` (resumable after a kill) and writes the results
 * table, the best config and the optimization history there; {@linkcode optimize},
 * {@linkcode suggestParams} and {@linkcode medianPrune} are the same machinery for plain functions.
 *
 * Seeded: a trial's draws come from mulberry32 seeded by the study seed and the trial number, so a
 * study is reproducible, and a resumed one draws what an uninterrupted one would have.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { mulberry32 } from "../util/random.ts";
import { Problems, refuseUnknownOptions } from "../util/problems.ts";
import { loadTrainingConfig, type TrainingConfig } from "./config.ts";
import { parseConfigText } from "./_config_yaml.ts";
import { checkSearchConfig } from "./_search_config.ts";
import { buildGrid, checkParam, gridPoint, randomParam } from "./_search_space.ts";
import { defaultGamma, splitTrials, TPE_DEFAULTS, tpeSampleParam } from "./_search_tpe.ts";
import { medianDecision } from "./_search_prune.ts";
import { searchStudy } from "./_search_run.ts";
import { searchStudyQueued } from "./_search_parallel.ts";
import { pathExists, readNamedTextFile } from "../util/atomic.ts";

/** A sampled value: a number for `float` / `int`, one of the choices for `categorical`. */
export type ParamValue = string | number | boolean | null;
/** A float range: uniform, log-uniform (`log`), or on the grid `low + k * step`. */
export interface FloatParam {
  /** Discriminant: a real-valued field (`learning_rate`, `weight_decay`, ...). */
  type: "float";
  /** The lower bound, included; > 0 with `log`. */
  low: number;
  /**
   * The upper bound, included; > `low`. With `step`, lowered onto the grid `low + k * step` when
   * it is off it (with a warning, as Optuna).
   */
  high: number;
  /** Sample uniformly in log space (Optuna's `log=True`); needs `low` > 0, excludes `step`. Default false. */
  log: boolean;
  /** The grid spacing, > 0, in the field's own units; null (default): continuous. */
  step: number | null;
  /**
   * Points of the grid sampler for a float without `step` (evenly spaced, in log space with `log`),
   * an integer >= 2; null (default): such a float cannot be grid-searched. Other samplers ignore it.
   */
  grid_points: number | null;
}
/** An integer range on the grid `low + k * step` (`log`: log-uniform, step 1). */
export interface IntParam {
  /** Discriminant: an integer field (`lora.r`, `warmup_steps`, ...). */
  type: "int";
  /** The lower bound, an integer, included; > 0 with `log`. */
  low: number;
  /** The upper bound, an integer > `low`, included; lowered onto `low + k * step` when off it (with a warning). */
  high: number;
  /** Sample uniformly in log space, then round to an integer (Optuna's `log=True`); needs `low` > 0 and step 1. Default false. */
  log: boolean;
  /** The grid spacing, a positive integer; default 1 (must be 1 with `log`). */
  step: number;
}
/** A choice among values. */
export interface CategoricalParam {
  /** Discriminant: a field taking one of a fixed list of values. */
  type: "categorical";
  /** The values (strings, numbers, booleans or null), at least one, no duplicates. */
  choices: ParamValue[];
}
/** One dimension of a search space. */
export type SearchParam = FloatParam | IntParam | CategoricalParam;
/** A search space: field name (`learning_rate`, `lora.r`) -> its range. */
export type SearchSpace = Record<string, SearchParam>;
/** Whether lower or higher values of the metric are better. */
export type TrialDirection = "minimize" | "maximize";
/** How parameters are drawn. */
export type SamplerName = "tpe" | "random" | "grid";
/** The state of a trial (Optuna's, lower case). */
export type TrialState = "running" | "complete" | "pruned" | "failed";

/** One trial of a study. */
export interface Trial {
  /** 0, 1, 2, ... in the order trials started. */
  number: number;
  /**
   * `running` until it ends: `complete` (ran to the end), `pruned` (stopped by the pruner, or its
   * loss diverged) or `failed` (an error, an invalid config, or no evaluation ran).
   */
  state: TrialState;
  /** The sampled values, by space field name. */
  params: Record<string, ParamValue>;
  /** The metric: of the last evaluation (complete), of the last report (pruned), else null. */
  value: number | null;
  /** Reported values by step (NaN allowed). */
  intermediate_values: Record<number, number>;
  /** The grid point (grid sampler). */
  grid_id?: number;
  /** Optimizer steps run (training trials). */
  steps?: number;
  /** The run folder, relative to the study folder (training trials). */
  run_dir?: string;
  /** Why it was pruned or failed, or how it was resumed. */
  note?: string;
  /** When it (first) started, ISO 8601 UTC (training trials; kept when it is resumed). */
  started?: string;
  /** When it became complete, pruned or failed, ISO 8601 UTC (training trials). */
  finished?: string;
  /** Its job in the queue (a search with `workers`). */
  job_id?: string;
}

/** Settings of the median pruner; defaults are Optuna's (5, 0, 1). */
export interface MedianPrunerOptions {
  /** No pruning until this many trials completed. */
  n_startup_trials: number;
  /** No pruning before this step. */
  n_warmup_steps: number;
  /** Check at the first report of every interval of this many steps after the warmup. */
  interval_steps: number;
}

/**
 * Settings of the `tpe` sampler (the `tpe:` map of a search config); every default is that of
 * Optuna's `TPESampler()` (10, 24, 1.0, true, false). The split into l(x) and g(x) always uses
 * Optuna's `default_gamma` (the best `min(ceil(0.1 n), 25)` of n finished trials).
 */
export interface TpeSettings {
  /**
   * Parameters are drawn at random (as the `random` sampler) until this many trials have finished
   * (complete with a non-NaN value, or pruned); TPE from then on. An integer >= 0; default 10.
   */
  n_startup_trials: number;
  /**
   * Candidates drawn from l(x) per parameter per trial; the one with the largest
   * log l(x) - log g(x) is chosen. An integer >= 1; default 24.
   */
  n_ei_candidates: number;
  /**
   * Weight of the prior kernel (mid-range, sigma = the whole range; uniform over the choices of a
   * categorical) in each mixture, against 1 per observation (less for those older than the 25 most
   * recent); also added to every choice of each categorical kernel as `prior_weight / (n + 1)` for n
   * observations. A number > 0; default 1.0.
   */
  prior_weight: number;
  /**
   * Clip each numeric kernel's sigma from below to range / min(100, 1 + kernels), the prior kernel
   * counted (Optuna's guard against over-narrow kernels); false: a floor of 1e-12 only. Sigmas are
   * capped at the range either way; ranges are in internal coordinates (log space with `log`).
   * Default true.
   */
  consider_magic_clip: boolean;
  /**
   * Each numeric kernel's sigma is the larger gap to its neighbours among the sorted observations
   * and the prior's mean; true: the lowest and highest also count their gap to the range bound;
   * false (default): they take only the gap to their inner neighbour.
   */
  consider_endpoints: boolean;
}

/** A pruning decision and why, in words. */
export interface PruneDecision {
  /** True: stop the trial now (it becomes `pruned`). */
  prune: boolean;
  /** The rule that decided, with the numbers compared (e.g. `best so far 5.5 > median 5 of 5 completed trials at step 1`). */
  reason: string;
}

/** A validated search config (see {@linkcode validateSearchConfig}). */
export interface SearchConfig {
  /** The training config every trial starts from. */
  base: TrainingConfig;
  /** The fields each trial samples (`lora.r` style for a section's field) and their ranges. */
  space: SearchSpace;
  /** An evaluation metric (`eval_loss`, `eval_perplexity`, ...). */
  metric: string;
  /** Whether a lower or a higher `metric` is better; default `minimize`. */
  direction: TrialDirection;
  /** How each trial's parameters are drawn; default `tpe`. */
  sampler: SamplerName;
  /** `median`: Optuna's `MedianPruner` at each evaluation (default, as Optuna's); `none`: every trial runs to the end. */
  pruner: "none" | "median";
  /** Trials in the study in all (a resumed study counts those it has); null: until the timeout. */
  n_trials: number | null;
  /** No new trial starts after this many seconds of this run (the running one finishes). */
  timeout: number | null;
  /** The study seed: with the trial number it seeds each trial's draws; default the base config's `seed` (itself 42 by default). */
  seed: number;
  /** The study folder: study.json, trials/trial-NNNN/, results, best config, plot. */
  study_dir: string;
  /** Settings of the `tpe` sampler, Optuna's defaults filled in (ignored by `random` and `grid`). */
  tpe: TpeSettings;
  /** Settings of the `median` pruner, Optuna's defaults (5, 0, 1) filled in. */
  median: MedianPrunerOptions;
}

/** What {@linkcode runSearch} returns (also `results.json`). */
export interface SearchResult {
  /** The study folder, as in the config. */
  study_dir: string;
  /** The metric optimized, as in the config. */
  metric: string;
  /** The direction of the metric, as in the config. */
  direction: TrialDirection;
  /** The number of the best complete trial (earliest on ties; NaN values never count); null: none completed. */
  best_trial: number | null;
  /** The best trial's metric value; null when no trial completed. */
  best_value: number | null;
  /** The best trial's parameters (also in `best_config.yaml`); null when no trial completed. */
  best_params: Record<string, ParamValue> | null;
  /** Trials in the study, of every state (those of earlier runs of a resumed study included). */
  n_trials: number;
  /** Trials that ran to the end. */
  n_complete: number;
  /** Trials stopped by the pruner or by a diverged loss. */
  n_pruned: number;
  /** Trials that failed: an invalid config, a training error, or no evaluation ran. */
  n_failed: number;
  /** Optimizer steps run over all trials. */
  steps_run: number;
  /** Why no further trial started: `n_trials` reached, `timeout` passed, or `grid` exhausted. */
  stopped_by: "n_trials" | "timeout" | "grid";
  /** Every trial of the study, in trial-number order. */
  trials: Trial[];
  /**
   * Paths of the files written into the study folder: the results table (`results.md`), this
   * result (`results.json`), the best trial's training config (`best_config.yaml`) and the
   * optimization history plot (`history.svg`); the last two are null when no trial completed.
   */
  files: { results_md: string; results_json: string; best_config: string | null; history_svg: string | null };
}

/**
 * Check a search space (the `space` map of a search config) and fill in defaults.
 * @param space field -> `{type: float, low, high, log?, step?}` | `{type: int, low, high, step?, log?}` |
 *   `{type: categorical, choices}`
 * @param opts `warn`: hears of a `high` lowered onto the step grid (default stderr)
 * @returns the space with every key set
 * @throws {TypeError} / {RangeError} listing every problem (empty or inverted ranges included)
 * @example
 * ```ts
 * import { validateSearchSpace } from "./search.ts";
 * const s = validateSearchSpace({ x: { type: "float", low: 1e-4, high: 1e-2, log: true } });
 * if (s.x.type !== "float" || !s.x.log) throw new Error("space");
 * try {
 *   validateSearchSpace({ x: { type: "int", low: 5, high: 1 } });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof RangeError) || !e.message.includes("inverted range")) throw e;
 * }
 * ```
 */
export function validateSearchSpace(
  space: Record<string, unknown>,
  opts: { warn?: (line: string) => void } = {},
): SearchSpace {
  refuseUnknownOptions(opts, ["warn"], "validateSearchSpace");
  const p = new Problems(), out: SearchSpace = {};
  if (!Object.keys(space).length) p.type("space", "empty: give at least one field");
  for (const [k, raw] of Object.entries(space)) {
    const param = checkParam(k, raw, p, opts.warn ?? ((l) => console.warn(l)));
    if (param) out[k] = param;
  }
  p.throwIfAny("Cannot use the search space", "space");
  return out;
}

/** A trial's own generator: seeded by the study seed and the trial number (murmur3's finalizer). */
function trialRng(seed: number, number: number): () => number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(number + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return mulberry32(h >>> 0);
}

/** Options of {@linkcode suggestParams}. */
export interface SuggestOptions {
  /** How the parameters are drawn. */
  sampler: SamplerName;
  /** The study seed. */
  seed: number;
  /** The number of the trial being sampled. */
  number: number;
  /** Whether lower or higher trial values are better (TPE ranks the finished trials by it). */
  direction: TrialDirection;
  /** TPE settings over Optuna's defaults. */
  tpe?: Partial<TpeSettings>;
}

/**
 * Draw the parameters of trial `opts.number` from the study's trials so far: `random` uniformly
 * (in log space with `log`, on the step grid), `grid` an unvisited grid point at random (as
 * Optuna's GridSampler), `tpe` randomly for the first `n_startup_trials` finished trials, then
 * by TPE exactly as Optuna's `TPESampler` with its defaults (see the module notes of the TPE).
 * @param space a validated space
 * @param trials the study's trials (running and failed ones are ignored by TPE; grid counts them as visited)
 * @param opts sampler, seed, trial number, direction
 * @returns the parameters (and the grid point), or null when the grid is exhausted
 * @example
 * ```ts
 * import { suggestParams, validateSearchSpace } from "./search.ts";
 * const space = validateSearchSpace({ lr: { type: "float", low: 1e-4, high: 1e-1, log: true } });
 * const a = suggestParams(space, [], { sampler: "tpe", seed: 1, number: 0, direction: "minimize" });
 * const b = suggestParams(space, [], { sampler: "tpe", seed: 1, number: 0, direction: "minimize" });
 * if (a!.params.lr !== b!.params.lr) throw new Error("seeded");
 * ```
 */
export function suggestParams(
  space: SearchSpace,
  trials: readonly Trial[],
  opts: SuggestOptions,
): { params: Record<string, ParamValue>; grid_id?: number } | null {
  refuseUnknownOptions(opts, ["sampler", "seed", "number", "direction", "tpe"], "suggestParams");
  const rng = trialRng(opts.seed, opts.number);
  const params: Record<string, ParamValue> = {};
  if (opts.sampler === "grid") {
    const grid = buildGrid(space);
    const visited = new Set(trials.map((t) => t.grid_id));
    const free = Array.from({ length: grid.size }, (_, i) => i).filter((i) => !visited.has(i));
    if (!free.length) return null;
    const grid_id = free[Math.floor(rng() * free.length)];
    return { params: gridPoint(grid, grid_id), grid_id };
  }
  const s = { ...TPE_DEFAULTS, ...opts.tpe };
  const finished = trials.filter((t) =>
    (t.state === "complete" && t.value !== null && !Number.isNaN(t.value)) || t.state === "pruned"
  );
  if (opts.sampler === "random" || finished.length < s.n_startup_trials || !finished.length) {
    for (const [k, param] of Object.entries(space)) params[k] = randomParam(param, rng);
    return { params };
  }
  const { below, above } = splitTrials(finished, defaultGamma(finished.length), opts.direction);
  for (const [k, param] of Object.entries(space)) {
    const values = (ts: Trial[]) => ts.filter((t) => Object.hasOwn(t.params, k)).map((t) => t.params[k]);
    params[k] = tpeSampleParam(param, values(below), values(above), rng, s);
  }
  return { params };
}

/**
 * Optuna's `MedianPruner` decision for a running trial: prune when its best value so far is
 * worse than the median of the completed trials' values at its last step (after
 * `n_startup_trials` completed trials, from `n_warmup_steps`, at the first report of each
 * interval of `interval_steps`; NaN ignored, a trial of only NaN pruned, steps without completed
 * values never prune).
 * @param intermediate the running trial's values by step
 * @param trials the study's trials (only complete ones count)
 * @param opts direction and pruner settings (defaults 5, 0, 1)
 * @returns the decision and its reason
 * @example
 * ```ts
 * import { medianPrune, type Trial } from "./search.ts";
 * const done = [3, 4, 5, 6, 7].map((v, number): Trial =>
 *   ({ number, state: "complete", params: {}, value: v, intermediate_values: { 1: v } })
 * );
 * if (!medianPrune({ 1: 5.5 }, done, { direction: "minimize" }).prune) throw new Error("5.5 > median 5");
 * if (medianPrune({ 1: 5 }, done, { direction: "minimize" }).prune) throw new Error("5 is not worse");
 * ```
 */
export function medianPrune(
  intermediate: Readonly<Record<number, number>>,
  trials: readonly Trial[],
  opts: { direction: TrialDirection } & Partial<MedianPrunerOptions>,
): PruneDecision {
  refuseUnknownOptions(
    opts,
    ["direction", "n_startup_trials", "n_warmup_steps", "interval_steps"],
    "medianPrune",
  );
  const o = { n_startup_trials: 5, n_warmup_steps: 0, interval_steps: 1, ...opts };
  return medianDecision(intermediate, trials, opts.direction, o);
}

/** Options of {@linkcode optimize}. */
export interface OptimizeOptions {
  /** The search space, unvalidated (checked as by {@linkcode validateSearchSpace}). */
  space: Record<string, unknown>;
  /** How many trials to run (fewer when a grid is exhausted first). */
  n_trials: number;
  /** Whether lower or higher objective values are better; default `minimize`. */
  direction?: TrialDirection;
  /** How parameters are drawn; default `tpe`. */
  sampler?: SamplerName;
  /** The study seed; default 0. */
  seed?: number;
  /** TPE settings over Optuna's defaults ({@linkcode TpeSettings}). */
  tpe?: Partial<TpeSettings>;
}

/**
 * Minimize (or maximize) a plain function of the parameters: a study in memory, no pruning.
 * @param objective the parameters -> the value
 * @param opts space, n_trials, direction (minimize), sampler (tpe), seed (0), tpe settings
 * @returns the trials, in order (a grid study ends early when its grid is exhausted)
 * @example
 * ```ts
 * import { optimize } from "./search.ts";
 * const trials = await optimize(({ x }) => ((x as number) - 2) ** 2, {
 *   space: { x: { type: "float", low: -10, high: 10 } },
 *   n_trials: 40,
 *   seed: 3,
 * });
 * const best = Math.min(...trials.map((t) => t.value!));
 * if (trials.length !== 40 || !(best < 0.1)) throw new Error(`best ${best}`);
 * ```
 */
export async function optimize(
  objective: (params: Record<string, ParamValue>) => number | Promise<number>,
  opts: OptimizeOptions,
): Promise<Trial[]> {
  // a misspelt option had run on its default (`directon: "maximize"` minimized)
  refuseUnknownOptions(opts, ["space", "n_trials", "direction", "sampler", "seed", "tpe"], "optimize");
  const space = validateSearchSpace(opts.space);
  const trials: Trial[] = [];
  const direction = opts.direction ?? "minimize";
  for (let number = 0; number < opts.n_trials; number++) {
    const s = suggestParams(space, trials, {
      sampler: opts.sampler ?? "tpe",
      seed: opts.seed ?? 0,
      number,
      direction,
      tpe: opts.tpe,
    });
    if (!s) break;
    const value = await objective(s.params);
    trials.push({
      number,
      state: "complete",
      params: s.params,
      value,
      intermediate_values: {},
      grid_id: s.grid_id,
    });
  }
  return trials;
}

/**
 * Check a parsed search config: `base` (TrainingConfig fields; see {@linkcode loadSearchConfig} for
 * `base_config`), `space` (TrainingConfig fields only, `lora.r` style for sections; each range's
 * ends and each choice must make a valid config), `metric` (eval_loss), `direction` (minimize),
 * `sampler` (tpe), `pruner` (median, as Optuna's default), `n_trials` and/or `timeout` (seconds),
 * `seed` (the base's), `study_dir`, and optional `tpe: {...}` / `median: {...}` settings.
 * @param obj the parsed YAML / JSON
 * @param opts `file`: named in messages; `warn`: deprecation and grid notes (default stderr)
 * @returns the config
 * @throws {TypeError} / {RangeError} listing every problem with its key path
 * @example
 * ```ts
 * import { validateSearchConfig } from "./search.ts";
 * const base = { model: "tiny", dataset: "d.jsonl", eval_strategy: "steps", eval_steps: 10 };
 * const c = validateSearchConfig({ base, space: { warmup_steps: { type: "int", low: 0, high: 20, step: 5 } },
 *   n_trials: 8, study_dir: "runs/s" });
 * if (c.sampler !== "tpe" || c.pruner !== "median" || c.metric !== "eval_loss") throw new Error("defaults");
 * try {
 *   validateSearchConfig({ base, space: { learning_rat: { type: "float", low: 1, high: 2 } }, n_trials: 1, study_dir: "s" });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof TypeError) || !e.message.includes("did you mean learning_rate?")) throw e;
 * }
 * ```
 */
export function validateSearchConfig(
  obj: unknown,
  opts: { file?: string; warn?: (line: string) => void } = {},
): SearchConfig {
  refuseUnknownOptions(opts, ["file", "warn"], "validateSearchConfig");
  return checkSearchConfig(obj, opts.file ?? "<search config>", {
    warn: opts.warn ?? ((l) => console.warn(l)),
  });
}

/**
 * Read a search config file (YAML or JSON). `base_config: path` (relative to the file's folder)
 * is loaded as the base TrainingConfig; then as {@linkcode validateSearchConfig}, with `file:line`
 * in messages.
 * @param path the search YAML
 * @param opts `warn` (default stderr)
 * @returns the config
 * @throws {Deno.errors.NotFound} for a missing file; {SyntaxError} for bad YAML; as {@linkcode validateSearchConfig}
 * @example
 * ```ts
 * import { loadSearchConfig } from "./search.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/run.yaml`, "model: tiny\ndataset: d.jsonl\neval_strategy: steps\neval_steps: 5\n");
 * await Deno.writeTextFile(
 *   `${dir}/search.yaml`,
 *   "base_config: run.yaml\nspace:\n  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n" +
 *     "n_trials: 10\nstudy_dir: runs/lr\n",
 * );
 * const c = await loadSearchConfig(`${dir}/search.yaml`);
 * if (c.base.eval_steps !== 5 || c.space.learning_rate.type !== "float") throw new Error("loaded");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadSearchConfig(
  path: string,
  opts: { warn?: (line: string) => void } = {},
): Promise<SearchConfig> {
  refuseUnknownOptions(opts, ["warn"], "loadSearchConfig");
  const text = await readNamedTextFile(path, "Cannot load search config:", "give a search .yaml file");
  let parsed;
  try {
    parsed = parseConfigText(text, path);
  } catch (e) {
    throw new SyntaxError((e as Error).message.replace("training config", "search config"));
  }
  const obj = parsed.value as Record<string, unknown>;
  const warn = opts.warn ?? ((l: string) => console.warn(l));
  if (
    obj && typeof obj === "object" && obj.base_config !== undefined &&
    !(typeof obj.base_config === "string" && obj.base_config)
  ) {
    // it had said base_config "is read by loadSearchConfig; pass base here", about this very file
    const at = parsed.line("base_config");
    throw new TypeError(
      `Cannot load search config ${path}${
        at ? `:${at}` : ""
      }: base_config: expected the path of a training ` +
        `config (relative to the search file's folder), got ${JSON.stringify(obj.base_config)}`,
    );
  }
  if (obj && typeof obj === "object" && typeof obj.base_config === "string") {
    if (obj.base !== undefined) {
      throw new TypeError(`Cannot load search config ${path}: give base or base_config, not both`);
    }
    const basePath = resolve(dirname(path), obj.base_config);
    if (!(await pathExists(basePath))) { // named with the field that names it (it had named only the path)
      throw new Deno.errors.NotFound(
        `Cannot load search config ${path}: base_config ${obj.base_config} (${basePath}) does not exist; ` +
          `fix the path (it is relative to the search file's folder)`,
      );
    }
    const { base_config: _, ...rest } = obj;
    return checkSearchConfig({ ...rest, base: await loadTrainingConfig(basePath, { warn }) }, path, {
      warn,
      line: parsed.line,
    });
  }
  return checkSearchConfig(obj, path, { warn, line: parsed.line });
}

/** Options of {@linkcode runSearch}. */
export interface RunSearchOptions {
  /** One line per trial and per resume note (default stderr). */
  log?: (line: string) => void;
  /** Each trial's training progress line on stderr (default false; in-process trials only). */
  progress?: boolean;
  /**
   * Run this many trials at once as `trial` jobs of a queue, each on a worker process (default:
   * none, trials run one after another in this process). Each trial is sampled when a slot frees,
   * from the trials finished by then (as Optuna's `optimize(n_jobs=...)`), so a TPE study with
   * workers is not the same study as without.
   */
  workers?: number;
  /**
   * The queue of the trials (with `workers`): `kv:PATH` or `redis://host:port` (default
   * `kv:<study_dir>/queue.sqlite`). Workers on other machines (`deno task cli queue work --queue
   * redis://...`) must reach `study_dir` at the same absolute path (a shared filesystem).
   */
  queue?: string;
  /**
   * Worker processes this process starts on this machine (default `workers`), and starts again
   * when one exits while trials wait; 0: only workers started elsewhere take the trials.
   */
  local_workers?: number;
  /** The command of a local worker, before `queue work ...` (default: this Deno running fledge's `cli.ts`). */
  worker_command?: string[];
  /** The workers' lease in seconds: a worker silent this long loses its trial to another (default 30). */
  lease?: number;
}

/**
 * Run (or resume) a study: trials until `n_trials` are in the study, the `timeout` has passed, or
 * the grid is exhausted. Each trial trains `base` with its parameters into
 * `study_dir/trials/trial-NNNN/`; with `pruner: median` each evaluation may stop it (Optuna's
 * rule). `study.json` is rewritten after every report, so after a kill the same call resumes:
 * finished trials are kept and never rerun; a trial that was running resumes from its latest
 * checkpoint (the Trainer's exact resume) when it saved one, else reruns from step 0. A trial whose
 * loss diverges (non-finite) counts as pruned; any other training error fails the trial and ends
 * the search (rerun to continue).
 *
 * With `workers`, up to that many trials run at once as jobs of a queue (see
 * {@linkcode RunSearchOptions.workers}): a worker that dies leaves its trial to another worker once its
 * lease expires, and the trial resumes from its newest checkpoint, ending as an uninterrupted
 * trial; after a kill of this process the same call finds the trials' jobs again.
 * @param config a validated config
 * @param opts `log`, `progress`, `workers`, `queue`, `local_workers`, `worker_command`, `lease`
 * @returns the results (also in `results.md`, `results.json`, `best_config.yaml`, `history.svg`)
 * @throws {RangeError} when `study_dir` holds a study with another definition (naming the field)
 * @throws {Deno.errors.Busy} when another process runs this study
 * @example
 * ```ts
 * import { runSearch, validateSearchConfig } from "./search.ts";
 * const dir = await Deno.makeTempDir();
 * const docs = Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: `package ${i} does a small thing` }));
 * await Deno.writeTextFile(`${dir}/train.jsonl`, docs.join("\n") + "\n");
 * const config = validateSearchConfig({
 *   base: {
 *     model: "tiny", dataset: `${dir}/train.jsonl`, backend: "cpu", max_steps: 2, max_seq_length: 16,
 *     per_device_train_batch_size: 2, save_strategy: "no", eval_strategy: "steps", eval_steps: 2,
 *   },
 *   space: { learning_rate: { type: "float", low: 1e-4, high: 1e-2, log: true } },
 *   sampler: "random",
 *   n_trials: 2,
 *   study_dir: `${dir}/study`,
 * });
 * const r = await runSearch(config, { log: () => {} });
 * if (r.n_complete !== 2 || r.best_trial === null || r.steps_run !== 4) throw new Error("searched");
 * await Deno.stat(`${dir}/study/best_config.yaml`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runSearch(config: SearchConfig, opts: RunSearchOptions = {}): Promise<SearchResult> {
  // a misspelt option had run on its default (`{ worker: 4 }` ran every trial in this process)
  refuseUnknownOptions(
    opts,
    ["log", "progress", "workers", "queue", "local_workers", "worker_command", "lease"],
    "runSearch",
  );
  const loop = {
    log: opts.log ?? ((l: string) => console.error(l)),
    progress: opts.progress ?? false,
    suggest: suggestParams,
  };
  if (opts.workers === undefined) return await searchStudy(config, loop);
  const whole = (x: number | undefined, name: string, min: number) => {
    if (x !== undefined && !(Number.isInteger(x) && x >= min)) {
      throw new RangeError(`Cannot search: ${name} must be an integer >= ${min}, got ${x}`);
    }
  };
  whole(opts.workers, "workers", 1);
  whole(opts.local_workers, "local_workers", 0);
  if (opts.lease !== undefined && !(opts.lease > 0)) {
    throw new RangeError(`Cannot search: lease must be > 0 seconds, got ${opts.lease}`);
  }
  return await searchStudyQueued(config, {
    ...loop,
    workers: opts.workers,
    queue: opts.queue ?? `kv:${join(resolve(config.study_dir), "queue.sqlite")}`,
    local_workers: opts.local_workers ?? opts.workers,
    worker_command: opts.worker_command ?? null,
    lease: opts.lease ?? 30,
  });
}
