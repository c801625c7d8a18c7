/**
 * Logits processors and the sampler of `generate.ts`: small pure functions on one row of logits
 * (`Float32Array [V]`), each returning a new row. Semantics follow Hugging Face
 * `transformers/generation/logits_process.py` (v4.47): `RepetitionPenaltyLogitsProcessor`,
 * `NoRepeatNGramLogitsProcessor`, `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`
 * (filter value `-Infinity`, `min_tokens_to_keep = 1`), then softmax and a multinomial draw.
 *
 * @module
 */

/** HF's warpers refuse a bad setting when built; these functions refuse it when called. */
function check(ok: boolean, name: string, rule: string, v: number): void {
  if (!ok) throw new RangeError(`Cannot process logits: ${name} must be ${rule}, got ${v}`);
}

/**
 * Hugging Face repetition penalty (CTRL, Keskar et al. 2019): for every token id present in
 * `seen`, a positive logit is divided by `penalty` and a negative one multiplied by it.
 *
 * @param logits one row `[V]`
 * @param seen the ids already in the sequence (prompt and generated; duplicates count once)
 * @param penalty > 0; 1 leaves the row unchanged
 * @returns a new row
 * @example
 * ```ts
 * import { applyRepetitionPenalty } from "./logits_process.ts";
 * const out = applyRepetitionPenalty(Float32Array.of(2, -2, 3), [0, 1, 1], 2);
 * if (out.join() !== "1,-4,3") throw new Error(out.join());
 * ```
 */
export function applyRepetitionPenalty(
  logits: Float32Array,
  seen: ArrayLike<number>,
  penalty: number,
): Float32Array {
  check(penalty > 0 && penalty < Infinity, "repetition_penalty", "a number > 0", penalty);
  const out = logits.slice();
  if (penalty === 1) return out;
  const done = new Set<number>();
  for (let i = 0; i < seen.length; i++) {
    const id = seen[i];
    if (done.has(id) || id < 0 || id >= out.length) continue;
    done.add(id);
    const x = logits[id];
    out[id] = x < 0 ? x * penalty : x / penalty;
  }
  return out;
}

/**
 * The ids that would repeat an n-gram of `seq` (HF `NoRepeatNGramLogitsProcessor`, `_get_ngrams` /
 * `_calc_banned_ngram_tokens`): every `t` such that the last `n - 1` ids of `seq` followed by `t`
 * already occur as an n-gram in `seq`. `n = 1` bans every id present; `n = 0` or a sequence shorter
 * than `n - 1` bans nothing.
 *
 * @param seq the sequence so far (prompt without pads, then generated)
 * @param n the n-gram size (>= 0)
 * @returns the banned ids, in first-occurrence order
 * @example
 * ```ts
 * import { bannedNgramTokens } from "./logits_process.ts";
 * // bigrams of 3 5 3: (3,5) and (5,3); the sequence ends in 3, so 5 would repeat (3,5)
 * if (bannedNgramTokens([3, 5, 3], 2).join() !== "5") throw new Error();
 * ```
 */
export function bannedNgramTokens(seq: ArrayLike<number>, n: number): number[] {
  check(Number.isInteger(n) && n >= 0, "no_repeat_ngram_size", "an integer >= 0", n);
  const L = seq.length;
  if (n === 0 || L + 1 < n) return [];
  const out: number[] = [];
  for (let i = 0; i + n <= L; i++) {
    let same = true; // does seq[i, i + n - 1) equal the last n - 1 ids?
    for (let j = 0; j < n - 1 && same; j++) same = seq[i + j] === seq[L - n + 1 + j];
    if (same && !out.includes(seq[i + n - 1])) out.push(seq[i + n - 1]);
  }
  return out;
}

/**
 * Set the logits of {@linkcode bannedNgramTokens} to `-Infinity` (HF `NoRepeatNGramLogitsProcessor`).
 * @returns a new row
 * @example
 * ```ts
 * import { applyNoRepeatNgram } from "./logits_process.ts";
 * const out = applyNoRepeatNgram(Float32Array.of(1, 2, 3), [1, 2, 1], 2);
 * if (out.join() !== "1,2,-Infinity") throw new Error(out.join()); // 1 then 2 would repeat (1, 2)
 * ```
 */
export function applyNoRepeatNgram(logits: Float32Array, seq: ArrayLike<number>, n: number): Float32Array {
  const out = logits.slice();
  for (const id of bannedNgramTokens(seq, n)) if (id >= 0 && id < out.length) out[id] = -Infinity;
  return out;
}

/**
 * Divide every logit by `temperature` (> 0; HF's `TemperatureLogitsWarper`).
 * @example
 * ```ts
 * import { applyTemperature } from "./logits_process.ts";
 * if (applyTemperature(Float32Array.of(1, -3), 0.5).join() !== "2,-6") throw new Error();
 * ```
 */
export function applyTemperature(logits: Float32Array, temperature: number): Float32Array {
  check(temperature > 0 && temperature < Infinity, "temperature", "a number > 0", temperature);
  const out = logits.slice();
  if (temperature === 1) return out;
  for (let i = 0; i < out.length; i++) out[i] = logits[i] / temperature;
  return out;
}

/**
 * Keep the `k` largest logits (ties with the k-th value are kept, as in HF) and set the rest to
 * `-Infinity`. `k = 0` or `k >= V` keeps everything.
 * @example
 * ```ts
 * import { topKFilter } from "./logits_process.ts";
 * const out = topKFilter(Float32Array.of(1, 4, 2, 3), 2);
 * if (out.join() !== "-Infinity,4,-Infinity,3") throw new Error(out.join());
 * ```
 */
export function topKFilter(logits: Float32Array, k: number): Float32Array {
  check(Number.isInteger(k) && k >= 0, "top_k", "an integer >= 0", k);
  const out = logits.slice();
  if (k === 0 || k >= logits.length) return out;
  const kth = logits.slice().sort((a, b) => b - a)[k - 1];
  for (let i = 0; i < out.length; i++) if (out[i] < kth) out[i] = -Infinity;
  return out;
}

/**
 * Nucleus filter (Holtzman et al. 2019, HF's `TopPLogitsWarper`): keep the smallest set of the
 * most likely tokens whose cumulative probability reaches `top_p`, always at least one; the rest
 * become `-Infinity`. A token is kept when the probability of the tokens ranked above it is
 * below `top_p`. `top_p` 1 keeps everything; outside [0, 1] is refused (as HF).
 * @example
 * ```ts
 * import { topPFilter } from "./logits_process.ts";
 * // probabilities 0.5, 0.3, 0.2: 0.5 < 0.6 so the second token is kept too
 * const out = topPFilter(Float32Array.of(Math.log(0.5), Math.log(0.3), Math.log(0.2)), 0.6);
 * if (out[2] !== -Infinity || out[1] === -Infinity) throw new Error(String(out));
 * ```
 */
export function topPFilter(logits: Float32Array, top_p: number): Float32Array {
  check(top_p >= 0 && top_p <= 1, "top_p", "in [0, 1]", top_p);
  const out = logits.slice();
  if (top_p === 1) return out;
  const probs = softmaxRow(logits);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  let above = 0;
  for (let r = 0; r < order.length; r++) {
    const i = order[r];
    if (r > 0 && above >= top_p) out[i] = -Infinity;
    above += probs[i];
  }
  return out;
}

/**
 * Softmax of a row in float64 (`-Infinity` gives probability 0).
 * @example
 * ```ts
 * import { softmaxRow } from "./logits_process.ts";
 * const p = softmaxRow(Float32Array.of(0, 0, -Infinity));
 * if (p.join() !== "0.5,0.5,0") throw new Error(p.join());
 * ```
 */
export function softmaxRow(logits: Float32Array): Float64Array {
  let m = -Infinity;
  for (const x of logits) if (x > m) m = x;
  const p = new Float64Array(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += p[i] = logits[i] === -Infinity ? 0 : Math.exp(logits[i] - m);
  for (let i = 0; i < p.length; i++) p[i] /= s;
  return p;
}

/**
 * `log Σ exp(logits)` of a row, in float64 from its largest entry: a token's log-probability is
 * `logits[i] - logSumExpRow(logits)` (the log-softmax of the row).
 * @example
 * ```ts
 * import { logSumExpRow } from "./logits_process.ts";
 * if (Math.abs(logSumExpRow(Float32Array.of(0, 0)) - Math.LN2) > 1e-12) throw new Error();
 * ```
 */
export function logSumExpRow(logits: ArrayLike<number>): number {
  let m = -Infinity, sum = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > m) m = logits[i];
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - m);
  return m + Math.log(sum);
}

/**
 * The index of the largest logit (the first one on ties, as `torch.argmax`).
 * @example
 * ```ts
 * import { argmax } from "./logits_process.ts";
 * if (argmax(Float32Array.of(1, 5, 5, 2)) !== 1) throw new Error();
 * ```
 */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * Draw an index from `probs` (which sum to 1) with one uniform number `rng()` in [0, 1): the first
 * index whose cumulative probability exceeds it. Zero-probability entries are never drawn.
 * @example
 * ```ts
 * import { sample } from "./logits_process.ts";
 * const p = Float64Array.of(0.25, 0, 0.75);
 * if (sample(p, () => 0.1) !== 0 || sample(p, () => 0.3) !== 2) throw new Error();
 * ```
 */
export function sample(probs: ArrayLike<number>, rng: () => number): number {
  const u = rng();
  let acc = 0, last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    acc += probs[i];
    last = i;
    if (u < acc) return i;
  }
  return last < 0 ? 0 : last; // rounding: u just under 1 and a sum just under 1
}

/** The settings {@linkcode nextToken} needs (resolved, validated). */
export interface TokenChoice {
  do_sample: boolean;
  temperature: number;
  top_k: number;
  top_p: number;
  repetition_penalty: number;
  /** HF `no_repeat_ngram_size`; absent or 0 = off. */
  no_repeat_ngram_size?: number;
}

/**
 * One decoding decision for one row, in HF's order: repetition penalty, no-repeat n-grams, then
 * (sampling only) temperature, top-k, top-p, softmax and a draw; greedy takes the argmax after the
 * penalties.
 *
 * @param logits the row's last-position logits `[V]`
 * @param seen the row's ids so far (prompt without pads, then generated)
 * @example
 * ```ts
 * import { nextToken } from "./logits_process.ts";
 * const s = { do_sample: false, temperature: 1, top_k: 50, top_p: 1, repetition_penalty: 4 };
 * if (nextToken(Float32Array.of(3, 1), [0], s, Math.random) !== 1) throw new Error();
 * ```
 */
export function nextToken(
  logits: Float32Array,
  seen: ArrayLike<number>,
  s: TokenChoice,
  rng: () => number,
): number {
  let row = applyRepetitionPenalty(logits, seen, s.repetition_penalty);
  if (s.no_repeat_ngram_size) row = applyNoRepeatNgram(row, seen, s.no_repeat_ngram_size);
  if (!s.do_sample) return argmax(row);
  row = applyTemperature(row, s.temperature);
  row = topKFilter(row, s.top_k);
  row = topPFilter(row, s.top_p);
  return sample(softmaxRow(row), rng);
}
