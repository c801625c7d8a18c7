/**
 * Private to `schedule.ts` and `config.ts`: the learning-rate scheduler names, which
 * `lr_scheduler_kwargs` each accepts (the keyword arguments of the matching function in
 * transformers `optimization.py`), and one checker both boundaries share.
 * @module
 */
import { checkUnknownKeys, checkValue, type Spec } from "./_config_check.ts";
import { isObject, type Problems, show } from "../util/problems.ts";

/** Scheduler names, spelled as transformers `SchedulerType` values. */
export const SCHEDULER_TYPES = [
  "linear",
  "cosine",
  "cosine_with_restarts",
  "polynomial",
  "constant",
  "constant_with_warmup",
  "inverse_sqrt",
  "cosine_with_min_lr",
  "cosine_warmup_with_min_lr",
  "warmup_stable_decay",
] as const;

/** One of {@linkcode SCHEDULER_TYPES}. */
export type SchedulerType = typeof SCHEDULER_TYPES[number];

/**
 * A warmup or decay curve of `warmup_stable_decay`, over the phase's progress q in [0, 1]:
 * `linear` (q, or 1 - q), `cosine` (half a cosine), `1-sqrt` (`1 - sqrt(1 - q)`, or `1 - sqrt(q)`).
 */
export type WsdShape = "linear" | "cosine" | "1-sqrt";

/** Every {@linkcode WsdShape}. */
export const WSD_SHAPES: readonly WsdShape[] = ["linear", "cosine", "1-sqrt"];

/** The specs of every scheduler keyword argument fledge knows. */
export const KWARG_SPECS: Readonly<Record<string, Spec>> = {
  num_cycles: { kind: "number", min: 0, minExclusive: true },
  lr_end: { kind: "number", min: 0 },
  power: { kind: "number", min: 0, minExclusive: true },
  min_lr: { kind: "number", min: 0 },
  min_lr_rate: { kind: "number", min: 0, max: 1 },
  warmup_lr_rate: { kind: "number", min: 0, max: 1 },
  num_decay_steps: { kind: "int", min: 0 },
  num_stable_steps: { kind: "int", min: 0 },
  warmup_type: { kind: "enum", values: WSD_SHAPES },
  decay_type: { kind: "enum", values: WSD_SHAPES },
  min_lr_ratio: { kind: "number", min: 0, max: 1 },
};

/**
 * Which kwargs each scheduler takes. `constant`, `constant_with_warmup` and `inverse_sqrt` take
 * none: HF's `get_scheduler` does not pass `lr_scheduler_kwargs` to them (it would drop them
 * silently), so fledge rejects them instead.
 */
export const KWARGS_BY_TYPE: Readonly<Record<SchedulerType, readonly string[]>> = {
  linear: [],
  cosine: ["num_cycles"],
  cosine_with_restarts: ["num_cycles"],
  polynomial: ["lr_end", "power"],
  constant: [],
  constant_with_warmup: [],
  inverse_sqrt: [],
  cosine_with_min_lr: ["num_cycles", "min_lr", "min_lr_rate"],
  cosine_warmup_with_min_lr: ["num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate"],
  warmup_stable_decay: [
    "num_decay_steps",
    "num_stable_steps",
    "warmup_type",
    "decay_type",
    "min_lr_ratio",
    "num_cycles",
  ],
};

/**
 * Check `lr_scheduler_kwargs` for one scheduler type: unknown names, names the type does not take,
 * value types and ranges, and the HF rules (min_lr xor min_lr_rate; polynomial lr_end below the
 * learning rate; warmup_stable_decay needs num_decay_steps; integer num_cycles for restarts).
 */
export function checkSchedulerKwargs(
  p: Problems,
  type: SchedulerType,
  kwargs: unknown,
  opts: { learningRate: number | undefined; prefix: string },
): void {
  const key = opts.prefix.replace(/\.$/, "");
  if (kwargs === null || kwargs === undefined) kwargs = {};
  if (!isObject(kwargs)) {
    p.type(key, `expected a mapping of scheduler arguments (e.g. {num_cycles: 0.5}), got ${show(kwargs)}`);
    return;
  }
  const known = Object.keys(KWARG_SPECS);
  checkUnknownKeys(p, kwargs, known, { prefix: opts.prefix, what: `known: ${known.join(", ")}` });
  const allowed = KWARGS_BY_TYPE[type];
  for (const [k, v] of Object.entries(kwargs)) {
    if (!known.includes(k)) continue;
    if (!allowed.includes(k)) {
      const users = SCHEDULER_TYPES.filter((t) => KWARGS_BY_TYPE[t].includes(k));
      p.range(
        `${opts.prefix}${k}`,
        `lr_scheduler_type "${type}" takes no ${k} (` +
          (allowed.length ? `it takes ${allowed.join(", ")}` : "it takes no lr_scheduler_kwargs") +
          `); remove it, or use a scheduler that does: ${users.join(", ")}`,
      );
      continue;
    }
    checkValue(p, `${opts.prefix}${k}`, v, KWARG_SPECS[k]);
  }
  const lr = opts.learningRate;
  if (type === "cosine_with_restarts" && typeof kwargs.num_cycles === "number") {
    if (!Number.isInteger(kwargs.num_cycles)) {
      p.range(
        `${opts.prefix}num_cycles`,
        `cosine_with_restarts counts hard restarts: use an integer, got ${kwargs.num_cycles}`,
      );
    }
  }
  if (type === "cosine_with_min_lr" || type === "cosine_warmup_with_min_lr") {
    const both = kwargs.min_lr !== undefined && kwargs.min_lr_rate !== undefined;
    const none = kwargs.min_lr === undefined && kwargs.min_lr_rate === undefined;
    if (both || none) {
      p.range(
        key,
        `lr_scheduler_type "${type}" needs exactly one of min_lr, min_lr_rate (got ${
          both ? "both" : "neither"
        }); ` +
          `write e.g. lr_scheduler_kwargs: {min_lr_rate: 0.1}`,
      );
    }
    if (typeof kwargs.min_lr === "number" && typeof lr === "number" && !(lr > 0)) {
      p.range(`${opts.prefix}min_lr`, `needs learning_rate > 0 to form min_lr / learning_rate, got ${lr}`);
    }
  }
  if (type === "polynomial" && typeof lr === "number") {
    const lrEnd = typeof kwargs.lr_end === "number" ? kwargs.lr_end : 1e-7;
    if (!(lr > lrEnd)) {
      p.range(
        `${opts.prefix}lr_end`,
        `polynomial decay needs lr_end (${lrEnd}) below learning_rate (${lr}); lower lr_end or raise learning_rate`,
      );
    }
  }
  if (type === "warmup_stable_decay" && kwargs.num_decay_steps === undefined) {
    p.range(
      key,
      `lr_scheduler_type "warmup_stable_decay" needs num_decay_steps; write e.g. {num_decay_steps: 100}`,
    );
  }
}
