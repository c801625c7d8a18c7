/**
 * Private to `search.ts`: the search space: its validation, the internal coordinates the samplers
 * work in (Optuna's: `log` parameters in log space, stepped ones widened by half a step each side,
 * categorical ones as choice indices), and the random and grid samplers.
 * @module
 */
import { isObject, type Problems, show } from "../util/problems.ts";
import type { CategoricalParam, ParamValue, SearchParam, SearchSpace } from "./search.ts";

const TYPES = ["float", "int", "categorical"] as const;
const KEYS: Record<SearchParam["type"], readonly string[]> = {
  float: ["type", "low", "high", "log", "step", "grid_points"],
  int: ["type", "low", "high", "log", "step"],
  categorical: ["type", "choices"],
};
/** Grids above this many points are refused (a typo such as a step of 1e-9 would never end). */
const MAX_GRID = 100_000;

function isNum(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** The largest `low + k * step` <= high (Optuna's `_adjust_*_high`). */
function adjustHigh(low: number, high: number, step: number): number {
  const k = Math.floor((high - low) / step + 1e-9);
  return Number((low + k * step).toPrecision(15));
}

/**
 * Check one parameter spec at `key`, adding problems to `p`; null when it has problems.
 * `warn` hears of a `high` lowered to the step grid (as Optuna warns).
 */
export function checkParam(
  key: string,
  raw: unknown,
  p: Problems,
  warn: (line: string) => void,
): SearchParam | null {
  const at = `space.${key}`;
  if (!isObject(raw)) {
    p.type(at, `expected {type: float|int|categorical, ...}, got ${show(raw)}`);
    return null;
  }
  const type = raw.type;
  if (!TYPES.includes(type as SearchParam["type"])) {
    p.type(`${at}.type`, `expected one of ${TYPES.join(", ")}, got ${show(type)}`);
    return null;
  }
  const t = type as SearchParam["type"];
  const n0 = p.list.length;
  for (const k of Object.keys(raw)) {
    if (!KEYS[t].includes(k)) {
      p.type(`${at}.${k}`, `unknown key for a ${t} parameter (keys: ${KEYS[t].join(", ")})`);
    }
  }
  if (t === "categorical") {
    const c = raw.choices;
    if (!Array.isArray(c)) p.type(`${at}.choices`, `expected a list of values, got ${show(c)}`);
    else if (c.length === 0) p.range(`${at}.choices`, "empty: give at least one choice");
    else if (c.some((v) => v !== null && !["string", "number", "boolean"].includes(typeof v))) {
      p.type(`${at}.choices`, `expected strings, numbers, booleans or null, got ${show(c)}`);
    } else if (new Set(c).size !== c.length) p.range(`${at}.choices`, `has duplicates: ${show(c)}`);
    return p.list.length > n0 ? null : { type: "categorical", choices: [...(c as ParamValue[])] };
  }
  const { low, high } = raw;
  const log = raw.log ?? false;
  if (typeof log !== "boolean") p.type(`${at}.log`, `expected true or false, got ${show(log)}`);
  const int = t === "int";
  for (const [k, v] of [["low", low], ["high", high]] as const) {
    if (!isNum(v) || (int && !Number.isInteger(v))) {
      p.type(`${at}.${k}`, `expected ${int ? "an integer" : "a finite number"}, got ${show(v)}`);
    }
  }
  const step = raw.step ?? (int ? 1 : null);
  if (step !== null && (!isNum(step) || step <= 0 || (int && !Number.isInteger(step)))) {
    p.range(`${at}.step`, `expected a ${int ? "positive integer" : "positive number"}, got ${show(step)}`);
  }
  const gp = raw.grid_points ?? null;
  if (gp !== null && (!Number.isInteger(gp) || (gp as number) < 2)) {
    p.range(`${at}.grid_points`, `expected an integer >= 2, got ${show(gp)}`);
  } else if (gp !== null && raw.step !== undefined && raw.step !== null) {
    // a stepped range is its own grid: grid_points would be ignored
    p.range(`${at}.grid_points`, `cannot be combined with step (the steps are the grid); keep one of them`);
  }
  if (p.list.length > n0) return null;
  const lo = low as number, hiRaw = high as number;
  if (!(lo < hiRaw)) {
    p.range(
      at,
      `${lo === hiRaw ? "empty" : "inverted"} range: low ${lo} must be < high ${hiRaw}` +
        (lo === hiRaw ? " (for a fixed value set the field in base instead)" : "; swap them"),
    );
    return null;
  }
  if (log && lo <= 0) p.range(`${at}.low`, `must be > 0 with log: true, got ${lo}`);
  if (log && !int && step !== null) p.range(`${at}.step`, "cannot be combined with log: true (as in Optuna)");
  if (log && int && step !== 1) p.range(`${at}.step`, `must be 1 with log: true (as in Optuna), got ${step}`);
  if (p.list.length > n0) return null;
  let hi = hiRaw;
  if (step !== null) {
    hi = adjustHigh(lo, hiRaw, step as number);
    if (hi !== hiRaw) {
      warn(
        `${at}: high ${hiRaw} is not on the grid low + k * step (step ${step}); using high ${hi} (as Optuna)`,
      );
    }
    if (hi === lo) {
      p.range(at, `empty range: no step of ${step} fits between low ${lo} and high ${hiRaw}`);
      return null;
    }
  }
  if (int) return { type: "int", low: lo, high: hi, log: log as boolean, step: step as number };
  return {
    type: "float",
    low: lo,
    high: hi,
    log: log as boolean,
    step: step as number | null,
    grid_points: gp as number | null,
  };
}

/** Bounds of a numeric parameter in internal coordinates, and its step there (null: continuous). */
export function internalBounds(
  param: Exclude<SearchParam, CategoricalParam>,
): { low: number; high: number; step: number | null } {
  const half = param.step === null ? 0 : param.step / 2;
  if (param.log) {
    // log int: the cells [x - 1/2, x + 1/2] in log space (Optuna); log float: continuous
    return { low: Math.log(param.low - half), high: Math.log(param.high + half), step: null };
  }
  return { low: param.low - half, high: param.high + half, step: param.step };
}

/** A value in internal coordinates (log, or a choice index). */
export function toInternal(param: SearchParam, v: ParamValue): number {
  if (param.type === "categorical") return param.choices.indexOf(v);
  return param.log ? Math.log(v as number) : (v as number);
}

/** A value from internal coordinates: exp for log, rounded to the step grid and clipped as Optuna. */
export function fromInternal(param: SearchParam, x: number): ParamValue {
  if (param.type === "categorical") return param.choices[x];
  const clip = (v: number) => Math.min(param.high, Math.max(param.low, v));
  if (param.log) return param.type === "int" ? clip(Math.round(Math.exp(x))) : clip(Math.exp(x));
  if (param.step === null) return clip(x);
  const k = Math.round((x - param.low) / param.step);
  return clip(Number((param.low + k * param.step).toPrecision(15)));
}

/**
 * The internal interval a discrete value stands for (its probability mass in the Parzen
 * estimator), or null for a continuous parameter.
 */
export function cellOf(param: Exclude<SearchParam, CategoricalParam>, v: number): [number, number] | null {
  if (param.step === null) return null;
  const half = param.step / 2;
  return param.log ? [Math.log(v - half), Math.log(v + half)] : [v - half, v + half];
}

/** A uniform draw in internal coordinates, mapped back (Optuna's `RandomSampler`). */
export function randomParam(param: SearchParam, rng: () => number): ParamValue {
  if (param.type === "categorical") {
    return param.choices[Math.min(param.choices.length - 1, Math.floor(rng() * param.choices.length))];
  }
  const b = internalBounds(param);
  return fromInternal(param, b.low + rng() * (b.high - b.low));
}

/** The grid values of one parameter, in order. */
export function gridValues(key: string, param: SearchParam): ParamValue[] {
  if (param.type === "categorical") return param.choices;
  if (param.step !== null) {
    const n = Math.round((param.high - param.low) / param.step) + 1;
    if (n > MAX_GRID) {
      throw new RangeError(
        `Cannot build the grid: space.${key} has ${n} points; raise step or use sampler: random`,
      );
    }
    return Array.from({ length: n }, (_, k) => Number((param.low + k * param.step!).toPrecision(15)));
  }
  const n = param.type === "float" ? param.grid_points : null;
  if (n === null) {
    throw new RangeError(
      `Cannot build the grid: space.${key} is a continuous float; give it step or grid_points (e.g. grid_points: 5)`,
    );
  }
  const [a, b] = param.log ? [Math.log(param.low), Math.log(param.high)] : [param.low, param.high];
  return Array.from({ length: n }, (_, k) => {
    const x = a + (b - a) * k / (n - 1);
    return k === n - 1 ? param.high : k === 0 ? param.low : param.log ? Math.exp(x) : x;
  });
}

/** The grid: parameter names sorted (as Optuna's GridSampler), their values, and the size. */
export function buildGrid(space: SearchSpace): { names: string[]; values: ParamValue[][]; size: number } {
  const names = Object.keys(space).sort();
  const values = names.map((k) => gridValues(k, space[k]));
  const size = values.reduce((s, v) => s * v.length, 1);
  if (size > MAX_GRID) {
    throw new RangeError(
      `Cannot build the grid: ${size} points (over ${MAX_GRID}); use sampler: random or tpe`,
    );
  }
  return { names, values, size };
}

/** The parameters of grid point `id` (itertools.product order: the last name varies fastest). */
export function gridPoint(
  grid: { names: string[]; values: ParamValue[][] },
  id: number,
): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  for (let i = grid.names.length - 1; i >= 0; i--) {
    const vs = grid.values[i];
    out[grid.names[i]] = vs[id % vs.length];
    id = Math.floor(id / vs.length);
  }
  return out;
}
