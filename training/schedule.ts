/**
 * Learning-rate schedules, computed per optimizer step exactly as transformers' `get_scheduler`
 * builds them (`src/transformers/optimization.py`: a `LambdaLR` whose factor multiplies the
 * initial learning rate). Step `s` counts the optimizer updates already done: the first update
 * uses `lrAt(0)`, which is 0 whenever there is a warmup, as in the HF Trainer (it calls
 * `scheduler.step()` after `optimizer.step()`).
 *
 * With `w` warmup steps and `N` training steps, every schedule but `constant` starts with the
 * linear warmup `s / max(1, w)` for `s < w`, then:
 * - `linear`: `max(0, (N - s) / max(1, N - w))`
 * - `cosine`: `max(0, 0.5 (1 + cos(pi * num_cycles * 2 * p)))`, `p = (s - w) / max(1, N - w)`
 * - `cosine_with_restarts`: `0.5 (1 + cos(pi * ((num_cycles * p) % 1)))`, 0 once `p >= 1`
 * - `polynomial`: `((lr - lr_end) * (1 - (s - w) / (N - w)) ** power + lr_end) / lr`, `lr_end / lr` after N
 * - `constant`: 1 (no warmup); `constant_with_warmup`: 1 after the warmup
 * - `inverse_sqrt`: `1 / sqrt((s + t - w) / t)` with timescale `t = w || 10000`
 * - `cosine_with_min_lr`: the cosine factor `f` mapped to `f (1 - r) + r`, `r = min_lr / lr` or `min_lr_rate`
 * - `cosine_warmup_with_min_lr`: the same, with HF's shifted steps (`(s + 1) / w` warmup, `p = (s - w + 1) / (N - w)`)
 * - `warmup_stable_decay`: warmup, `1` for `num_stable_steps`, decay over `num_decay_steps`, then `min_lr_ratio`
 * @module
 */
import { checkValue } from "./_config_check.ts";
import { isObject, Problems, show } from "../util/problems.ts";
import {
  checkSchedulerKwargs,
  SCHEDULER_TYPES,
  type SchedulerType,
  type WsdShape,
} from "./_schedule_kwargs.ts";

export type { WsdShape };

/** A scheduler name, spelled as transformers `SchedulerType` (`reduce_lr_on_plateau` is not offered). */
export type LrSchedulerType = SchedulerType;

/** Every {@linkcode LrSchedulerType}, in transformers' order. */
export const LR_SCHEDULER_TYPES: readonly LrSchedulerType[] = SCHEDULER_TYPES;

/**
 * Extra scheduler arguments (HF `lr_scheduler_kwargs`); each type takes only its own:
 * `cosine`: num_cycles (0.5); `cosine_with_restarts`: num_cycles (1, integer); `polynomial`:
 * lr_end (1e-7), power (1.0); `cosine_with_min_lr`: num_cycles and exactly one of min_lr,
 * min_lr_rate; `cosine_warmup_with_min_lr`: those plus warmup_lr_rate; `warmup_stable_decay`:
 * num_decay_steps (required), num_stable_steps, warmup_type ("linear"), decay_type ("cosine"),
 * min_lr_ratio (0), num_cycles (0.5). The others take none.
 */
export interface LrSchedulerKwargs {
  /**
   * Cosine schedules: cosine cycles over the decay phase (> 0). Default 0.5 (one half-wave, down to
   * the floor), 1 (an integer) for `cosine_with_restarts`.
   */
  num_cycles?: number;
  /** `polynomial`: the learning rate reached at the last step (absolute, >= 0). Default 1e-7. */
  lr_end?: number;
  /** `polynomial`: exponent of the decay (> 0); 1 is linear. Default 1. */
  power?: number;
  /** Cosine with min lr: the floor as an absolute learning rate (give this or `min_lr_rate`). */
  min_lr?: number;
  /** Cosine with min lr: the floor as a fraction of `learning_rate`, in [0, 1] (give this or `min_lr`). */
  min_lr_rate?: number;
  /**
   * `cosine_warmup_with_min_lr`: warmup starts at this fraction of `learning_rate`, in [0, 1], rising
   * linearly to 1 at the last warmup step. Default: HF's `(s + 1) / warmup` ramp.
   */
  warmup_lr_rate?: number;
  /** `warmup_stable_decay`: steps of the decay phase (integer >= 0; required). */
  num_decay_steps?: number;
  /** `warmup_stable_decay`: steps at the full learning rate. Default: what warmup and decay leave of the run. */
  num_stable_steps?: number;
  /** `warmup_stable_decay`: the warmup curve, from `min_lr_ratio` up to 1. Default `linear`. */
  warmup_type?: WsdShape;
  /** `warmup_stable_decay`: the decay curve, from 1 down to `min_lr_ratio`. Default `cosine`. */
  decay_type?: WsdShape;
  /** `warmup_stable_decay`: the floor as a fraction of `learning_rate`, in [0, 1]; held after the decay. Default 0. */
  min_lr_ratio?: number;
}

/** The config fields a schedule reads; a `TrainingConfig` has all of them. */
export interface LrScheduleConfig {
  /** Which schedule shapes the learning rate over the run. */
  lr_scheduler_type: LrSchedulerType;
  /** The peak (initial) learning rate the schedule's factor multiplies. */
  learning_rate: number;
  /** Warmup steps (integer), or a ratio of the training steps when in (0, 1) (HF >= 4.57). */
  warmup_steps?: number;
  /** Ratio of the training steps used for warmup when `warmup_steps` is 0 (HF `warmup_ratio`). */
  warmup_ratio?: number;
  /** The schedule's extra arguments (only those of `lr_scheduler_type`); absent or null: its defaults. */
  lr_scheduler_kwargs?: LrSchedulerKwargs | null;
}

/** A resolved schedule: {@linkcode LrSchedule.lrAt} gives the learning rate of each update. */
export interface LrSchedule {
  /** The schedule's shape, as configured. */
  readonly lr_scheduler_type: LrSchedulerType;
  /** The peak learning rate, as configured: `lrAt(s) = learning_rate × factorAt(s)`. */
  readonly learning_rate: number;
  /** Optimizer updates the schedule spans (N in the module doc); decays end here. */
  readonly num_training_steps: number;
  /** Warmup steps after HF's rule ({@linkcode getWarmupSteps}). */
  readonly num_warmup_steps: number;
  /** The multiplier of `learning_rate` at `step` (HF's `lr_lambda`). */
  factorAt(step: number): number;
  /** The learning rate of the update made after `step` earlier updates. */
  lrAt(step: number): number;
}

/**
 * Warmup steps as the HF Trainer computes them (`TrainingArguments.get_warmup_steps`):
 * `warmup_steps` when it is >= 1, `ceil(N * warmup_steps)` when it is a ratio in (0, 1), else
 * `ceil(N * warmup_ratio)`.
 * @param numTrainingSteps total optimizer steps `N`
 * @param warmup `warmup_steps` and `warmup_ratio` (both default 0)
 * @returns the number of warmup steps
 * @throws {RangeError} for negative or non-finite values, or a fractional `warmup_steps` above 1
 * @example
 * ```ts
 * import { getWarmupSteps } from "./schedule.ts";
 * if (getWarmupSteps(1001, { warmup_ratio: 0.1 }) !== 101) throw new Error("ceil rule");
 * if (getWarmupSteps(1001, { warmup_steps: 0.05 }) !== 51) throw new Error("ratio in warmup_steps");
 * if (getWarmupSteps(1001, { warmup_steps: 20, warmup_ratio: 0 }) !== 20) throw new Error("steps");
 * ```
 */
export function getWarmupSteps(
  numTrainingSteps: number,
  warmup: { warmup_steps?: number; warmup_ratio?: number },
): number {
  const steps = warmup.warmup_steps ?? 0, ratio = warmup.warmup_ratio ?? 0;
  if (!(Number.isSafeInteger(numTrainingSteps) && numTrainingSteps >= 0)) {
    throw new RangeError(
      `Cannot compute warmup steps: num_training_steps must be an integer >= 0, got ${numTrainingSteps}`,
    );
  }
  if (!(Number.isFinite(steps) && steps >= 0 && (steps < 1 || Number.isInteger(steps)))) {
    throw new RangeError(
      `Cannot compute warmup steps: warmup_steps must be an integer >= 0 or a ratio in (0, 1), got ${steps}`,
    );
  }
  if (!(Number.isFinite(ratio) && ratio >= 0 && ratio <= 1)) {
    throw new RangeError(`Cannot compute warmup steps: warmup_ratio must be in [0, 1], got ${ratio}`);
  }
  if (steps >= 1) return steps;
  return Math.ceil(numTrainingSteps * (steps > 0 ? steps : ratio));
}

/** The steps between logs, evaluations and checkpoints of a run (see {@linkcode getIntervalSteps}). */
export interface IntervalSteps {
  logging: number;
  eval: number | null;
  save: number;
}

/**
 * `logging_steps`, `eval_steps` and `save_steps` as the HF Trainer reads them: a value below 1 is
 * a ratio of the run's `max_steps`, rounded up (`ceil(N * ratio)`), a value of 1 or more a number
 * of steps.
 * @param config the three fields (a whole `TrainingConfig` will do)
 * @param numTrainingSteps the run's optimizer steps `N`
 * @example
 * ```ts
 * import { getIntervalSteps } from "./schedule.ts";
 * const e = getIntervalSteps({ logging_steps: 0.1, eval_steps: null, save_steps: 50 }, 95);
 * if (e.logging !== 10 || e.eval !== null || e.save !== 50) throw new Error();
 * ```
 */
export function getIntervalSteps(
  config: { logging_steps: number; eval_steps: number | null; save_steps: number },
  numTrainingSteps: number,
): IntervalSteps {
  const of = (v: number) => v < 1 ? Math.max(1, Math.ceil(numTrainingSteps * v)) : v;
  const e = config.eval_steps;
  return { logging: of(config.logging_steps), eval: e === null ? null : of(e), save: of(config.save_steps) };
}

/**
 * Build the schedule HF's `get_scheduler(name, optimizer, num_warmup_steps, num_training_steps,
 * scheduler_specific_kwargs)` would, for a config's scheduler fields.
 * @param config `lr_scheduler_type`, `learning_rate`, `warmup_steps`, `warmup_ratio`,
 *   `lr_scheduler_kwargs` (a whole `TrainingConfig` will do)
 * @param numTrainingSteps total optimizer steps `N` (an integer >= 1)
 * @returns the schedule; `lrAt(step)` for any integer step >= 0 (past `N` it follows HF's formula)
 * @throws {TypeError} for a wrong kind of value; {RangeError} for out-of-range values, kwargs the
 *   type does not take, or warmup with `constant` (HF ignores it; use `constant_with_warmup`)
 * @example
 * ```ts
 * import { createLrSchedule } from "./schedule.ts";
 * const s = createLrSchedule({ lr_scheduler_type: "linear", learning_rate: 1e-3, warmup_steps: 10 }, 110);
 * if (s.lrAt(0) !== 0 || s.lrAt(5) !== 5e-4 || s.lrAt(10) !== 1e-3 || s.lrAt(110) !== 0) throw new Error();
 * const c = createLrSchedule({ lr_scheduler_type: "cosine", learning_rate: 1, warmup_ratio: 0 }, 100);
 * if (Math.abs(c.lrAt(50) - 0.5) > 1e-15) throw new Error("half way down the half cosine");
 * ```
 */
export function createLrSchedule(config: LrScheduleConfig, numTrainingSteps: number): LrSchedule {
  const p = new Problems();
  if (!isObject(config)) {
    p.type("(root)", `expected an object with lr_scheduler_type and learning_rate, got ${show(config)}`);
    p.throwIfAny("Cannot create a learning-rate schedule", "createLrSchedule", { locate: true });
  }
  const typeOk = checkValue(p, "lr_scheduler_type", config.lr_scheduler_type, {
    kind: "enum",
    values: SCHEDULER_TYPES,
  });
  const lrOk = checkValue(p, "learning_rate", config.learning_rate, { kind: "number", min: 0 });
  checkValue(p, "num_training_steps", numTrainingSteps, { kind: "int", min: 1 });
  const ws = config.warmup_steps ?? 0, wr = config.warmup_ratio ?? 0;
  if (checkValue(p, "warmup_steps", ws, { kind: "number", min: 0 }) && ws > 1 && !Number.isInteger(ws)) {
    p.range("warmup_steps", `must be an integer >= 1 or a ratio in (0, 1), got ${ws}`);
  }
  checkValue(p, "warmup_ratio", wr, { kind: "number", min: 0, max: 1 });
  if (typeOk) {
    const lr = lrOk ? config.learning_rate : undefined;
    checkSchedulerKwargs(p, config.lr_scheduler_type, config.lr_scheduler_kwargs, {
      learningRate: lr,
      prefix: "lr_scheduler_kwargs.",
    });
    if (config.lr_scheduler_type === "constant" && (ws > 0 || wr > 0)) {
      p.range(
        "lr_scheduler_type",
        `"constant" has no warmup (HF ignores warmup_steps ${ws} / warmup_ratio ${wr}); use "constant_with_warmup"`,
      );
    }
  }
  p.throwIfAny("Cannot create a learning-rate schedule", "createLrSchedule", { locate: true });
  const type = config.lr_scheduler_type;
  const lr = config.learning_rate;
  const N = numTrainingSteps;
  const w = getWarmupSteps(N, { warmup_steps: ws, warmup_ratio: wr });
  const factor = lambdaFor(type, w, N, lr, { ...(config.lr_scheduler_kwargs ?? {}) });
  const checkStep = (step: number) => {
    if (!(Number.isSafeInteger(step) && step >= 0)) {
      throw new RangeError(`Cannot compute the learning rate: step must be an integer >= 0, got ${step}`);
    }
  };
  return Object.freeze({
    lr_scheduler_type: type,
    learning_rate: lr,
    num_training_steps: N,
    num_warmup_steps: w,
    factorAt(step: number): number {
      checkStep(step);
      return factor(step);
    },
    lrAt(step: number): number {
      checkStep(step);
      return lr * factor(step);
    },
  });
}

/** The HF lr_lambda of `type` with its arguments bound (kwargs already validated). */
function lambdaFor(
  type: LrSchedulerType,
  w: number,
  N: number,
  lr: number,
  kw: LrSchedulerKwargs,
): (s: number) => number {
  const warm = (s: number) => s / Math.max(1, w);
  const progress = (s: number) => (s - w) / Math.max(1, N - w);
  const minRate = kw.min_lr !== undefined ? kw.min_lr / lr : kw.min_lr_rate ?? 0;
  switch (type) {
    case "constant":
      return () => 1;
    case "constant_with_warmup":
      return (s) => s < w ? warm(s) : 1;
    case "linear":
      return (s) => s < w ? warm(s) : Math.max(0, (N - s) / Math.max(1, N - w));
    case "cosine":
    case "cosine_with_min_lr": {
      const c = kw.num_cycles ?? 0.5;
      const r = type === "cosine" ? 0 : minRate;
      return (s) => {
        if (s < w) return warm(s);
        const f = 0.5 * (1 + Math.cos(Math.PI * c * 2.0 * progress(s)));
        return Math.max(0, f * (1 - r) + r);
      };
    }
    case "cosine_with_restarts": {
      const c = kw.num_cycles ?? 1;
      return (s) => {
        if (s < w) return warm(s);
        const q = progress(s);
        if (q >= 1) return 0;
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((c * q) % 1.0))));
      };
    }
    case "polynomial": {
      const lrEnd = kw.lr_end ?? 1e-7, power = kw.power ?? 1.0;
      return (s) => {
        if (s < w) return warm(s);
        // HF divides by N - w without a guard; at s == N == w that would be 0/0, and lr_end is the limit.
        if (s > N || N === w) return lrEnd / lr;
        const pctRemaining = 1 - (s - w) / (N - w);
        return ((lr - lrEnd) * pctRemaining ** power + lrEnd) / lr;
      };
    }
    case "inverse_sqrt": {
      const timescale = w || 10_000; // HF: `timescale = num_warmup_steps or 10_000`
      const shift = timescale - w;
      return (s) => s < w ? warm(s) : 1.0 / Math.sqrt((s + shift) / timescale);
    }
    case "cosine_warmup_with_min_lr": {
      const c = kw.num_cycles ?? 0.5, wlr = kw.warmup_lr_rate;
      return (s) => {
        if (s < w) {
          return wlr === undefined ? (s + 1) / Math.max(1, w) : wlr + (1.0 - wlr) * s / Math.max(1, w - 1);
        }
        const q = (s - w + 1) / Math.max(1, N - w);
        const f = 0.5 * (1.0 + Math.cos(Math.PI * c * 2.0 * q));
        return Math.max(0, f * (1 - minRate) + minRate);
      };
    }
    case "warmup_stable_decay": {
      const decay = kw.num_decay_steps ?? 0;
      const stable = kw.num_stable_steps ?? N - w - decay;
      const wt = kw.warmup_type ?? "linear", dt = kw.decay_type ?? "cosine";
      const m = kw.min_lr_ratio ?? 0, c = kw.num_cycles ?? 0.5;
      return (s) => {
        if (s < w) {
          const q = s / Math.max(1, w);
          const f = wt === "linear"
            ? q
            : wt === "cosine"
            ? 0.5 * (1.0 - Math.cos(Math.PI * q))
            : 1.0 - Math.sqrt(1.0 - q);
          return Math.max(0, f * (1.0 - m) + m);
        }
        if (s < w + stable) return 1.0;
        if (s < w + stable + decay) {
          const q = (s - w - stable) / Math.max(1, decay);
          const f = dt === "linear"
            ? 1.0 - q
            : dt === "cosine"
            ? 0.5 * (1.0 + Math.cos(Math.PI * c * 2.0 * q))
            : 1.0 - Math.sqrt(q);
          return Math.max(0, f * (1.0 - m) + m);
        }
        return m;
      };
    }
  }
}
