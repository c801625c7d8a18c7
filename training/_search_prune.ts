/**
 * Private to `search.ts`: Optuna's `MedianPruner` (`PercentilePruner` at 50;
 * `optuna/pruners/_percentile.py`), rule by rule, each decision with its reason.
 * @module
 */
import type { MedianPrunerOptions, PruneDecision, Trial, TrialDirection } from "./search.ts";

/** numpy `nanpercentile` with linear interpolation; NaN when no value is a number. */
function nanPercentile(values: number[], q: number): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const pos = (v.length - 1) * q / 100, lo = Math.floor(pos), hi = Math.ceil(pos);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

/**
 * Whether a trial whose values so far are `intermediate` should stop, given the study's trials.
 * Rules in Optuna's order: no pruning before `n_startup_trials` trials completed (pruned ones do not
 * count), before any report, before step `n_warmup_steps`, or when the last step is not the first
 * report of its interval (intervals of `interval_steps` from `n_warmup_steps`); a trial whose
 * values are all NaN is pruned; otherwise its best value so far (NaN ignored) is compared with the
 * median over completed trials of their values at this very step (trials with no value at the
 * step are left out; none left: no pruning), strictly worse prunes.
 */
export function medianDecision(
  intermediate: Readonly<Record<number, number>>,
  trials: readonly Trial[],
  direction: TrialDirection,
  o: MedianPrunerOptions,
): PruneDecision {
  const completed = trials.filter((t) => t.state === "complete");
  const keep = (reason: string): PruneDecision => ({ prune: false, reason });
  if (completed.length === 0 || completed.length < o.n_startup_trials) {
    return keep(`${completed.length} completed trials < n_startup_trials ${o.n_startup_trials}`);
  }
  const steps = Object.keys(intermediate).map(Number);
  if (!steps.length) return keep("no value reported yet");
  const step = Math.max(...steps);
  if (step < o.n_warmup_steps) return keep(`step ${step} < n_warmup_steps ${o.n_warmup_steps}`);
  const nearest = Math.floor((step - o.n_warmup_steps) / o.interval_steps) * o.interval_steps +
    o.n_warmup_steps;
  const secondLast = steps.reduce((m, s) => s > m && s !== step ? s : m, -1);
  if (!(secondLast < nearest)) {
    return keep(
      `step ${step} is not the first report since pruning step ${nearest} (interval_steps ${o.interval_steps})`,
    );
  }
  const values = steps.map((s) => intermediate[s]);
  const finite = values.filter((v) => !Number.isNaN(v));
  if (!finite.length) return { prune: true, reason: "every reported value is NaN" };
  const max = direction === "maximize";
  const best = max ? Math.max(...finite) : Math.min(...finite);
  const atStep = completed.flatMap((t) =>
    Object.hasOwn(t.intermediate_values, step) ? [t.intermediate_values[step]] : []
  );
  const median = nanPercentile(atStep, 50);
  if (Number.isNaN(median)) return keep(`no completed trial reported a value at step ${step}`);
  const worse = max ? best < median : best > median;
  return {
    prune: worse,
    reason: `best so far ${best} ${worse ? (max ? "<" : ">") : (max ? ">=" : "<=")} median ${median} of ` +
      `${atStep.length} completed trials at step ${step}`,
  };
}
