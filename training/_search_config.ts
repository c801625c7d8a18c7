/**
 * Private to `search.ts`: the search YAML, checked at the boundary with every problem listed at
 * once: the keys, the base config (inline `base` or a `base_config` file), the space (each field a
 * real TrainingConfig field; each range's ends and each choice a valid config) and the settings.
 * @module
 */
import { closest, isObject, Problems, show } from "../util/problems.ts";
import { LORA_SPECS, QUANT_SPECS, TOP_SPECS } from "./_config_schema.ts";
import {
  DEFAULT_TRAINING_CONFIG,
  TRAINING_CONFIG_KEYS,
  type TrainingConfig,
  validateTrainingConfig,
} from "./config.ts";
import { buildGrid, checkParam, gridValues } from "./_search_space.ts";
import { TPE_DEFAULTS } from "./_search_tpe.ts";
import type { MedianPrunerOptions, ParamValue, SearchConfig, SearchSpace } from "./search.ts";

/** Optuna's `MedianPruner()` defaults. */
export const MEDIAN_DEFAULTS: Readonly<MedianPrunerOptions> = Object.freeze({
  n_startup_trials: 5,
  n_warmup_steps: 0,
  interval_steps: 1,
});

const TOP = [
  "base",
  "base_config",
  "space",
  "metric",
  "direction",
  "sampler",
  "pruner",
  "n_trials",
  "timeout",
  "seed",
  "study_dir",
  "tpe",
  "median",
] as const;
/** Step counts that below 1 are ratios of the run's steps: a float range must stay below 1. */
const STEPS_OR_RATIO = ["warmup_steps", "logging_steps", "eval_steps", "save_steps"];
/** Fields the search sets for each trial. */
const RESERVED = ["output_dir", "resume_from_checkpoint", "overwrite_output_dir"];

/** `base` with the sampled `params` set (`lora.r` sets a field of the `lora` section). */
export function applyParams(
  base: Readonly<TrainingConfig> | Record<string, unknown>,
  params: Record<string, ParamValue>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(params)) {
    const dot = k.indexOf(".");
    if (dot < 0) out[k] = v;
    else {
      const top = k.slice(0, dot), sub = k.slice(dot + 1);
      out[top] = { ...(isObject(out[top]) ? out[top] as Record<string, unknown> : {}), [sub]: v };
    }
  }
  return out;
}

/** Why `key` is not a field the space may sample, or null when it is. */
function fieldProblem(key: string): string | null {
  if (RESERVED.includes(key)) return "is set by the search for each trial; remove it from space";
  const [top, sub, ...rest] = key.split(".");
  const keys = TRAINING_CONFIG_KEYS as readonly string[];
  if (!keys.includes(top)) {
    const hint = closest(top, keys);
    return `unknown config field${
      hint ? `; did you mean ${hint}?` : ""
    } (space keys are TrainingConfig fields)`;
  }
  if (sub === undefined) return null;
  const subs = top === "lora"
    ? Object.keys(LORA_SPECS)
    : top === "quantization"
    ? Object.keys(QUANT_SPECS)
    : null;
  if (!subs || rest.length) return `only lora.<field> and quantization.<field> may be nested`;
  if (!subs.includes(sub)) {
    const hint = closest(sub, subs);
    return `unknown ${top} field ${show(sub)}${hint ? `; did you mean ${top}.${hint}?` : ""}`;
  }
  return null;
}

/** The first lines of a validation error, on one line. */
function brief(e: unknown): string {
  const lines = (e instanceof Error ? e.message : String(e)).split("\n").map((s) => s.trim()).filter(Boolean);
  return (lines.length > 1 ? lines.slice(1) : lines).map((l) => l.replace(/^- /, "")).join("; ");
}

function int(
  p: Problems,
  key: string,
  v: unknown,
  min: number,
  max = Infinity,
): number | null {
  if (v === undefined || v === null) return null;
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) {
    p.range(
      key,
      `expected an integer >= ${min}${max < Infinity ? ` and <= ${max}` : ""}, got ${show(v)}`,
    );
    return null;
  }
  return v as number;
}

function settings<T extends object>(
  p: Problems,
  key: string,
  raw: unknown,
  defaults: Readonly<T>,
  check: (k: string, v: unknown) => string | null,
): T {
  if (raw === undefined || raw === null) return { ...defaults };
  if (!isObject(raw)) {
    p.type(key, `expected a map of ${Object.keys(defaults).join(", ")}, got ${show(raw)}`);
    return { ...defaults };
  }
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(raw)) {
    if (!(k in defaults)) {
      p.type(`${key}.${k}`, `unknown setting (settings: ${Object.keys(defaults).join(", ")})`);
      continue;
    }
    const bad = check(k, v);
    if (bad) p.range(`${key}.${k}`, bad);
    else out[k] = v;
  }
  return out as T;
}

const isInt = (min: number) => (v: unknown) => Number.isInteger(v) && (v as number) >= min;

/**
 * Check a parsed search config. `base` is a TrainingConfig object (a `base_config` file is read by
 * the caller first and passed as `base`).
 */
export function checkSearchConfig(
  obj: unknown,
  file: string,
  opts: { warn: (line: string) => void; line?: (key: string) => number | undefined },
): SearchConfig {
  const what = "Cannot load search config";
  if (!isObject(obj)) {
    throw new TypeError(`${what} ${file}: expected a map of ${TOP.join(", ")}, got ${show(obj)}`);
  }
  const p = new Problems();
  for (const k of Object.keys(obj)) {
    if (!(TOP as readonly string[]).includes(k)) {
      const hint = closest(k, TOP);
      p.type(k, `unknown key${hint ? `; did you mean ${hint}?` : ""} (keys: ${TOP.join(", ")})`);
    }
  }
  // The base config: validated as a TrainingConfig (its own error lists its problems).
  let base: TrainingConfig | null = null;
  if (obj.base_config !== undefined) {
    p.type("base_config", "is read by loadSearchConfig (a path beside the search YAML); pass base here");
  } else if (!isObject(obj.base)) {
    p.type("base", `expected a map of TrainingConfig fields (or base_config: path), got ${show(obj.base)}`);
  } else {
    // the fields the search sets for each trial would be overridden (and then leak into best_config.yaml)
    const given = (k: string) => {
      const v = (obj.base as Record<string, unknown>)[k];
      return v !== undefined &&
        JSON.stringify(v) !== JSON.stringify(DEFAULT_TRAINING_CONFIG[k as "output_dir"]);
    };
    for (const k of RESERVED.filter(given)) {
      p.range(`base.${k}`, "is set by the search for each trial; remove it from base");
    }
    try {
      base = validateTrainingConfig(obj.base, { file: `${file} base`, warn: opts.warn });
    } catch (e) {
      p[e instanceof TypeError ? "type" : "range"]("base", brief(e));
    }
  }
  const metric = obj.metric ?? "eval_loss";
  if (typeof metric !== "string" || !metric.startsWith("eval_")) {
    p.range(
      "metric",
      `expected an evaluation metric such as eval_loss or eval_perplexity, got ${show(metric)}`,
    );
  }
  const direction = obj.direction ?? "minimize";
  if (direction !== "minimize" && direction !== "maximize") {
    p.type("direction", `expected minimize or maximize, got ${show(direction)}`);
  }
  const sampler = obj.sampler ?? "tpe";
  if (!["tpe", "random", "grid"].includes(sampler as string)) {
    p.type("sampler", `expected tpe, random or grid, got ${show(sampler)}`);
  }
  const pruner = obj.pruner ?? "median";
  if (pruner !== "none" && pruner !== "median") {
    p.type("pruner", `expected none or median, got ${show(pruner)}`);
  }
  const n_trials = int(p, "n_trials", obj.n_trials, 1);
  let timeout: number | null = null;
  if (obj.timeout !== undefined && obj.timeout !== null) {
    if (typeof obj.timeout !== "number" || !(obj.timeout > 0)) {
      p.range("timeout", `expected seconds > 0, got ${show(obj.timeout)}`);
    } else timeout = obj.timeout;
  }
  if (obj.n_trials == null && obj.timeout == null && sampler !== "grid") {
    p.range("n_trials", "set n_trials and/or timeout (seconds), or the search would never end");
  }
  // the samplers' generator takes 32 bits: seeds 2^32 apart had drawn the same trials
  const seed = obj.seed === undefined ? (base?.seed ?? 42) : int(p, "seed", obj.seed, 0, 0xffffffff) ?? 0;
  const study_dir = obj.study_dir;
  if (typeof study_dir !== "string" || !study_dir) {
    p.type("study_dir", `expected the folder of the study (e.g. runs/lr-search), got ${show(study_dir)}`);
  }
  const tpe = settings(p, "tpe", obj.tpe, TPE_DEFAULTS, (k, v) => {
    if (k === "n_startup_trials") return isInt(0)(v) ? null : `expected an integer >= 0, got ${show(v)}`;
    if (k === "n_ei_candidates") return isInt(1)(v) ? null : `expected an integer >= 1, got ${show(v)}`;
    if (k === "prior_weight") {
      return typeof v === "number" && v > 0 ? null : `expected a number > 0, got ${show(v)}`;
    }
    return typeof v === "boolean" ? null : `expected true or false, got ${show(v)}`;
  });
  const median = settings(p, "median", obj.median, MEDIAN_DEFAULTS, (k, v) => {
    const min = k === "interval_steps" ? 1 : 0;
    return isInt(min)(v) ? null : `expected an integer >= ${min}, got ${show(v)}`;
  });
  // Settings of a sampler or pruner not in use would be ignored (Optuna cannot pass them either).
  if (obj.tpe !== undefined && sampler !== "tpe") {
    p.range("tpe", `its settings are for sampler tpe, and this search uses ${show(sampler)}; remove tpe`);
  }
  if (obj.median !== undefined && pruner !== "median") {
    p.range(
      "median",
      `its settings are for pruner median, and this search uses ${show(pruner)}; remove median`,
    );
  }
  // The space: real fields, valid ranges, and every end and choice a valid config.
  const space: SearchSpace = {};
  if (!isObject(obj.space) || !Object.keys(obj.space).length) {
    p.type("space", `expected a map of field: {type, ...} with at least one field, got ${show(obj.space)}`);
  } else {
    for (const [key, raw] of Object.entries(obj.space)) {
      const bad = fieldProblem(key);
      if (bad) {
        p.type(`space.${key}`, bad);
        continue;
      }
      const param = checkParam(key, raw, p, opts.warn);
      if (!param) continue;
      space[key] = param;
      if (param.type === "float" && param.grid_points !== null && sampler !== "grid") {
        p.range(
          `space.${key}.grid_points`,
          `is for sampler grid, and this search uses ${show(sampler)}; remove it`,
        );
      }
      const [top, sub] = key.split(".");
      const specs: Record<string, { kind: string }> = sub === undefined
        ? TOP_SPECS
        : top === "lora"
        ? LORA_SPECS
        : QUANT_SPECS;
      if (param.type === "float" && specs[sub ?? top]?.kind === "int") {
        // every trial would have failed on a fraction, and the study counted them
        p.type(`space.${key}`, `${key} takes whole numbers; use type: int`);
        continue;
      }
      if (param.type === "float" && STEPS_OR_RATIO.includes(key) && param.high >= 1) {
        p.type(
          `space.${key}`,
          `${key} takes whole numbers of steps or a ratio below 1; use type: int, or a float range below 1`,
        );
        continue;
      }
      if (!base) continue;
      if (sub !== undefined && !isObject((base as unknown as Record<string, unknown>)[top])) {
        p.range(
          `space.${key}`,
          `samples a field of the ${top} section, and base has none: every trial would ${
            top === "lora" ? "train LoRA adapters instead of the whole model" : "quantize the model"
          }; add ${top}: {} to base to search it`,
        );
        continue;
      }
      const ends = param.type === "categorical" ? param.choices : [param.low, param.high];
      for (const v of ends) {
        try {
          validateTrainingConfig(applyParams(base, { [key]: v }), { file: `${file} base`, warn: () => {} });
        } catch (e) {
          p.range(`space.${key}`, `${show(v)} makes an invalid config: ${brief(e)}`);
          break;
        }
      }
    }
  }
  if (sampler === "grid" && Object.keys(space).length) {
    // found only at the first trial, after study.json was written with this space, so the fixed
    // config was then refused as another study ("its space differs")
    const cut = (e: unknown) => (e as Error).message.replace(/^Cannot build the grid: (space\.\S+ )?/, "");
    let each = true;
    for (const [key, param] of Object.entries(space)) {
      try {
        gridValues(key, param);
      } catch (e) {
        p.range(`space.${key}`, cut(e));
        each = false;
      }
    }
    try {
      if (each) buildGrid(space);
    } catch (e) {
      p.range("space", `the grid has ${cut(e)}`);
    }
  }
  if (base) {
    if (!base.model || !base.dataset) p.range("base", "set model and dataset: every trial trains them");
    if (base.eval_strategy === "no") {
      p.range(
        "base.eval_strategy",
        `the metric ${show(metric)} comes from evaluations: set eval_strategy: steps and eval_steps`,
      );
    } else if (
      base.eval_strategy === "steps" && base.eval_steps !== null && base.eval_steps >= 1 &&
      base.max_steps > 0 && base.eval_steps > base.max_steps && !("max_steps" in space)
    ) {
      // found only after a whole trial had trained, which then bound the study to it
      p.range(
        "base.eval_steps",
        `${base.eval_steps} is above max_steps ${base.max_steps}, so no trial would evaluate and the metric ` +
          `${show(metric)} comes from evaluations; set eval_steps <= ${base.max_steps}`,
      );
    }
  }
  p.throwIfAny(what, file, { locate: true, line: opts.line });
  return {
    base: base!,
    space,
    metric: metric as string,
    direction: direction as SearchConfig["direction"],
    sampler: sampler as SearchConfig["sampler"],
    pruner: pruner as SearchConfig["pruner"],
    n_trials,
    timeout,
    seed: seed as number,
    study_dir: study_dir as string,
    tpe,
    median,
  };
}
