/**
 * Private to `search.ts`: the Tree-structured Parzen Estimator as Optuna 4.x's `TPESampler` runs
 * it by default (independent sampling, one parameter at a time; `optuna/samplers/_tpe/sampler.py`,
 * `parzen_estimator.py`; Bergstra et al. 2011, "Algorithms for Hyper-Parameter Optimization"):
 *
 * - the finished trials (complete and pruned; failed and running ones are left out) are ranked:
 *   complete trials by value first, then pruned trials by the last step they reached (later is
 *   better), then by their value at that step; the best `gamma(n) = min(ceil(0.1 n), 25)` form
 *   l(x) ("below"), the rest g(x) ("above"), each kept in trial order;
 * - each group is a mixture: one kernel per observation weighted by `default_weights` (1 for the
 *   25 most recent, a linear ramp from 1/n up for older ones) plus the prior (weight 1.0), all
 *   normalized;
 * - numeric kernels are truncated normals in internal coordinates; the prior sits mid-range with
 *   sigma = the range; each observation's sigma is the larger gap to its neighbours among the
 *   sorted observations, the prior's mean and the bounds (`consider_endpoints: false`: the first
 *   and last take their inner gap), clipped to [range / min(100, 1 + n_kernels), range]
 *   (`consider_magic_clip`); a stepped value's likelihood is the kernel's mass on its cell;
 * - categorical kernels put `prior_weight / (n + 1)` on every choice plus 1 on the observed one,
 *   rows normalized (the prior row is uniform);
 * - 24 candidates (`n_ei_candidates`) are drawn from l(x); the one with the largest
 *   log l(x) - log g(x) wins (the first on ties).
 * @module
 */
import type {
  CategoricalParam,
  ParamValue,
  SearchParam,
  TpeSettings,
  Trial,
  TrialDirection,
} from "./search.ts";
import { cellOf, fromInternal, internalBounds, toInternal } from "./_search_space.ts";
import { logGaussMass, logSumExp, truncnormPpf } from "./_search_truncnorm.ts";

const LOG_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);

/** Optuna's `TPESampler()` defaults. */
export const TPE_DEFAULTS: Readonly<TpeSettings> = Object.freeze({
  n_startup_trials: 10,
  n_ei_candidates: 24,
  prior_weight: 1.0,
  consider_magic_clip: true,
  consider_endpoints: false,
});

/** How many of `n` ranked trials form l(x): Optuna's `default_gamma`. */
export function defaultGamma(n: number): number {
  return Math.min(Math.ceil(0.1 * n), 25);
}

/** Kernel weights of `n` observations in trial order: Optuna's `default_weights`. */
export function defaultWeights(n: number): number[] {
  if (n < 25) return new Array(n).fill(1);
  const m = n - 25;
  const ramp = Array.from({ length: m }, (_, i) => m === 1 ? 1 / n : 1 / n + (1 - 1 / n) * i / (m - 1));
  return [...ramp, ...new Array(25).fill(1)];
}

/** The rank key of a finished trial: lower is better (Optuna's `_get_observation_pairs`). */
function rankKey(t: Trial, sign: number): [number, number] {
  if (t.state === "complete") return [-Infinity, sign * (t.value as number)];
  const steps = Object.keys(t.intermediate_values).map(Number);
  if (!steps.length) return [Infinity, 0];
  const last = Math.max(...steps);
  const v = t.intermediate_values[last];
  return [-last, Number.isNaN(v) ? Infinity : sign * v];
}

/**
 * Split finished trials into the best `nBelow` and the rest, each in trial order.
 * @param trials complete (with a value) and pruned trials
 */
export function splitTrials(
  trials: readonly Trial[],
  nBelow: number,
  direction: TrialDirection,
): { below: Trial[]; above: Trial[] } {
  const sign = direction === "minimize" ? 1 : -1;
  const keyed = trials.map((t) => ({ t, k: rankKey(t, sign) }));
  // Stable on ties: the earlier trial first. (-Infinity) - (-Infinity) is NaN, hence the compare.
  const cmp = (a: number, b: number) => a < b ? -1 : a > b ? 1 : 0;
  keyed.sort((x, y) => cmp(x.k[0], y.k[0]) || cmp(x.k[1], y.k[1]) || x.t.number - y.t.number);
  const byNumber = (a: Trial, b: Trial) => a.number - b.number;
  return {
    below: keyed.slice(0, nBelow).map((e) => e.t).sort(byNumber),
    above: keyed.slice(nBelow).map((e) => e.t).sort(byNumber),
  };
}

/** One Parzen estimator over one parameter: mixture weights and per-kernel parameters. */
interface Parzen {
  weights: number[];
  /** numeric: kernel means and sigmas in internal coordinates */
  mus: number[];
  sigmas: number[];
  /** numeric: log of each kernel's mass inside the bounds (its truncation) */
  norms: number[];
  /** categorical: per kernel, the probability of each choice */
  probs: number[][];
}

/** Kernel sigmas of sorted observations (Optuna's univariate bandwidth rule). */
function sigmasOf(mus: number[], low: number, high: number, s: TpeSettings): number[] {
  const n = mus.length;
  const prior = 0.5 * (low + high);
  const withPrior = [...mus, prior];
  const order = withPrior.map((_, i) => i).sort((a, b) => withPrior[a] - withPrior[b] || a - b);
  const sorted = [low, ...order.map((i) => withPrior[i]), high];
  const m = withPrior.length;
  const sortedSig = Array.from(
    { length: m },
    (_, j) => Math.max(sorted[j + 1] - sorted[j], sorted[j + 2] - sorted[j + 1]),
  );
  if (!s.consider_endpoints && sorted.length >= 4) {
    sortedSig[0] = sorted[2] - sorted[1];
    sortedSig[m - 1] = sorted[m] - sorted[m - 1];
  }
  const sig = new Array<number>(m);
  order.forEach((idx, j) => sig[idx] = sortedSig[j]);
  const maxSigma = high - low;
  const minSigma = s.consider_magic_clip ? (high - low) / Math.min(100, 1 + (n + 1)) : 1e-12;
  return sig.slice(0, n).map((v) => Math.min(maxSigma, Math.max(minSigma, v)));
}

function buildParzen(param: SearchParam, obs: ParamValue[], s: TpeSettings): Parzen {
  const n = obs.length;
  let weights = n === 0 ? [1] : [...defaultWeights(n), s.prior_weight];
  const total = weights.reduce((a, b) => a + b, 0);
  weights = weights.map((w) => w / total);
  if (param.type === "categorical") {
    const c = param.choices.length;
    if (n === 0) return { weights, mus: [], sigmas: [], norms: [], probs: [new Array(c).fill(1 / c)] };
    const probs = Array.from({ length: n + 1 }, () => new Array(c).fill(s.prior_weight / (n + 1)));
    obs.forEach((v, i) => probs[i][toInternal(param, v)] += 1);
    for (const row of probs) {
      const sum = row.reduce((a, b) => a + b, 0);
      if (sum > 0) { for (let j = 0; j < c; j++) row[j] /= sum; }
    }
    return { weights, mus: [], sigmas: [], norms: [], probs };
  }
  const b = internalBounds(param);
  const mus = obs.map((v) => toInternal(param, v));
  const allMus = [...mus, 0.5 * (b.low + b.high)];
  const sigmas = [...sigmasOf(mus, b.low, b.high, s), b.high - b.low];
  const norms = allMus.map((mu, k) => logGaussMass((b.low - mu) / sigmas[k], (b.high - mu) / sigmas[k]));
  return { weights, mus: allMus, sigmas, norms, probs: [] };
}

/** Index of the first cumulative weight above `u` (numpy `choice` with `p`). */
function pick(weights: readonly number[], u: number): number {
  let c = 0;
  for (let i = 0; i < weights.length; i++) {
    c += weights[i];
    if (u < c) return i;
  }
  return weights.length - 1;
}

function sample(param: SearchParam, pe: Parzen, rng: () => number, size: number): ParamValue[] {
  const active = Array.from({ length: size }, () => pick(pe.weights, rng()));
  if (param.type === "categorical") return active.map((k) => param.choices[pick(pe.probs[k], rng())]);
  const b = internalBounds(param); // a stepped parameter's bounds are already widened by half a step
  const us = Array.from({ length: size }, () => rng());
  return active.map((k, i) => {
    const mu = pe.mus[k], sd = pe.sigmas[k];
    const z = truncnormPpf(us[i], (b.low - mu) / sd, (b.high - mu) / sd);
    return fromInternal(param, mu + sd * z);
  });
}

function logPdf(param: SearchParam, pe: Parzen, v: ParamValue): number {
  const terms = pe.weights.map((w, k) => Math.log(w) + kernelLogPdf(param, pe, k, v));
  return logSumExp(terms);
}

function kernelLogPdf(param: SearchParam, pe: Parzen, k: number, v: ParamValue): number {
  if (param.type === "categorical") {
    return Math.log(pe.probs[k][(param as CategoricalParam).choices.indexOf(v)]);
  }
  const mu = pe.mus[k], sd = pe.sigmas[k];
  const cell = cellOf(param, v as number);
  if (cell === null) {
    const z = (toInternal(param, v) - mu) / sd;
    return -0.5 * z * z - LOG_SQRT_2PI - Math.log(sd) - pe.norms[k];
  }
  return logGaussMass((cell[0] - mu) / sd, (cell[1] - mu) / sd) - pe.norms[k];
}

/**
 * Sample one parameter by TPE from the finished trials' values of it.
 * @param below the values of the l(x) trials, in trial order
 * @param above the values of the g(x) trials, in trial order
 */
export function tpeSampleParam(
  param: SearchParam,
  below: ParamValue[],
  above: ParamValue[],
  rng: () => number,
  s: TpeSettings,
): ParamValue {
  const l = buildParzen(param, below, s), g = buildParzen(param, above, s);
  const candidates = sample(param, l, rng, s.n_ei_candidates);
  let best = 0, bestScore = NaN;
  candidates.forEach((c, i) => {
    const score = logPdf(param, l, c) - logPdf(param, g, c);
    if (i === 0 || score > bestScore) [best, bestScore] = [i, score];
  });
  return candidates[best];
}
