/**
 * Beam search as Hugging Face `generate(num_beams > 1)` runs it: `GenerationMixin._beam_search` with
 * `BeamSearchScorer` and `BeamHypotheses` of `transformers` v4.47
 * (`generation/utils.py`, `generation/beam_search.py`).
 *
 * Each prompt is expanded to `num_beams` rows (HF `_expand_inputs_for_generation`), left padded
 * as `generate()` pads; beam 0 starts at score 0 and the others at -1e9, so the first step draws
 * from one beam. Every step:
 * - scores = log_softmax(logits), then the processors (repetition penalty, no-repeat n-grams) on
 *   those log-probabilities (HF's order: the penalties see log-probs, not logits, and the row is
 *   not renormalised), plus the beam's running sum;
 * - the top `max(2, 1 + #eos) * num_beams` candidates over (beam, token) of the row, best first;
 * - a candidate that is an EOS id and ranks below `num_beams` becomes a finished hypothesis with
 *   score `sum_logprobs / generated_len ** length_penalty`, where `generated_len` counts the new
 *   tokens including the EOS and excluding the prompt (v4.47's `cur_len - decoder_prompt_len`;
 *   releases before about v4.36 counted the prompt too); the best `num_beams` are kept;
 * - the other candidates, in order, fill the `num_beams` running beams;
 * - the row is done per `early_stopping` once `num_beams` hypotheses are finished: `true` at once;
 *   `false` when the worst finished score >= `best_running_sum / cur_len ** length_penalty`;
 *   `"never"` the same with `max_new_tokens` as the length when `length_penalty > 0`.
 * The KV cache rows follow their beams ({@linkcode reorderCache}, a gather on the device). At
 * `max_new_tokens`, the running beams of rows not done are added as hypotheses (their length is
 * `max_new_tokens`), and the best `num_return_sequences` of each prompt are returned, best first.
 *
 * Differences from HF: sums and log-softmax are taken in float64 from the float32 logits (HF:
 * float32, where -1e9 + logp rounds to -1e9), so only rounding differs; ties in the top-k go to
 * the lower (beam, token) index (torch leaves them unspecified); a row that is done keeps its beams
 * in place instead of pointing them all at row 0 (no effect on results); the processors see the
 * prompt without its left pads, as `generate()`'s greedy loop does (HF counts pad ids too), so a
 * batch equals its prompts run one at a time; a hypothesis that ended with an EOS id ends with
 * that id (HF writes `eos_token_id[0]`, the same id when there is one).
 *
 * @module
 */
import { noGrad } from "../kernels/autograd.ts";
import { embedding } from "../kernels/embedding.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { Problems } from "../util/problems.ts";
import { checkPrompts, decodeText, lastLogits, leftPad, resolveForModel } from "./_decode.ts";
import type { FinishReason, GenerateOptions, GenerateResult } from "./generate.ts";
import { checkGenerateOptions, type ResolvedGeneration } from "./generation_config.ts";
import { applyNoRepeatNgram, applyRepetitionPenalty, logSumExpRow } from "./logits_process.ts";
import type { KVCache, Transformer } from "./transformer.ts";

/** A finished hypothesis (an entry of HF's `BeamHypotheses.beams`): the new tokens only. */
interface Hypothesis {
  score: number;
  tokens: number[];
  eos: boolean;
}

/** HF `BeamHypotheses` of one prompt: the best `num_beams` finished hypotheses. */
interface Finished {
  beams: Hypothesis[];
  worst: number;
}

/** HF `BeamHypotheses.add`: keep the hypothesis if there is room or it beats the worst. */
function addHypothesis(
  h: Finished,
  s: ResolvedGeneration,
  hyp: Omit<Hypothesis, "score">,
  sum: number,
  len: number,
) {
  const score = sum / len ** s.length_penalty;
  if (h.beams.length < s.num_beams || score > h.worst) {
    h.beams.push({ ...hyp, score });
    if (h.beams.length > s.num_beams) {
      // HF sorts (score, index) pairs: the lowest score, the earliest on ties, goes.
      const order = h.beams.map((b, i) => [b.score, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      h.beams.splice(order[0][1], 1);
      h.worst = order[1][0];
    } else h.worst = Math.min(score, h.worst);
  }
}

/** HF `BeamHypotheses.is_done` with `cur_len - decoder_prompt_len` = `curLen` new tokens. */
function isDone(h: Finished, s: ResolvedGeneration, bestSum: number, curLen: number): boolean {
  if (h.beams.length < s.num_beams) return false;
  if (s.early_stopping === true) return true;
  const len = s.early_stopping === "never" && s.length_penalty > 0 ? s.max_new_tokens : curLen;
  return h.worst >= bestSum / len ** s.length_penalty;
}

/** One candidate continuation: running sum of log-probs, the beam it extends, the token. */
interface Candidate {
  score: number;
  beam: number;
  token: number;
}

/**
 * The best `n` candidates of one prompt's `K` beams (HF `torch.topk(..., sorted=True)` over the
 * `[K * V]` scores), best first; equal scores keep the lower `beam * V + token` first.
 */
function topCandidates(rows: Float32Array[], sums: ArrayLike<number>, n: number): Candidate[] {
  const top: Candidate[] = [];
  rows.forEach((row, beam) => {
    for (let token = 0; token < row.length; token++) {
      const score = sums[beam] + row[token];
      if (top.length === n && !(score > top[n - 1].score)) continue;
      let i = top.length;
      while (i > 0 && top[i - 1].score < score) i--;
      top.splice(i, 0, { score, beam, token });
      if (top.length > n) top.pop();
    }
  });
  return top;
}

/** Log-softmax of a row in float64, stored as float32 (HF: `log_softmax` of the float32 logits). */
function logSoftmax(logits: Float32Array): Float32Array {
  const lse = logSumExpRow(logits);
  return logits.map((x) => x - lse);
}

/**
 * Gather the KV cache rows by beam: row `j` of every layer's keys and values becomes the old row
 * `beamIdx[j]` (HF `Cache.reorder_cache`). Runs on the device (the embedding gather over rows of
 * `[max_len * Hkv * D]`); nothing is read back. The cache's tensors are replaced, and the cache
 * then holds `beamIdx.length` rows: fewer rows than before drop the others (greedy decoding drops
 * the rows that have stopped).
 *
 * @param cache the cache of `cache.batch` rows
 * @param beamIdx one source row per new row (at least one), each in `[0, cache.batch)`
 * @throws {RangeError} when `beamIdx` is empty or names a row outside the cache
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "./config.ts";
 * import { reorderCache } from "./beam_search.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 8 }), be);
 * const cache = model.createCache(2, 4);
 * model.forward(be.fromArray([1, 2, 3, 4], [2, 2], "i32"), { cache });
 * const before = await cache.k[0].toArray();
 * reorderCache(cache, [1, 1]);
 * const after = await cache.k[0].toArray(), row = after.length / 2;
 * if (after.slice(0, row).join() !== before.slice(row).join()) throw new Error("row 1 copied to row 0");
 * ```
 */
export function reorderCache(cache: KVCache, beamIdx: ArrayLike<number>): void {
  const n = cache.batch, m = beamIdx.length;
  const bad = Array.from(beamIdx).findIndex((j) => !Number.isInteger(j) || j < 0 || j >= n);
  if (m === 0 || bad >= 0) {
    throw new RangeError(
      `Cannot reorder the KV cache: beamIdx must hold at least one row, each in [0, ${n}), got ${m} ` +
        `with ${bad >= 0 ? `beamIdx[${bad}] = ${beamIdx[bad]}` : "all in range"}`,
    );
  }
  if (cache.k.length === 0) {
    cache.batch = m;
    return;
  }
  const be = cache.k[0].backend;
  const idx = be.fromArray(Array.from(beamIdx), [m], "i32");
  const gather = (t: Tensor) => {
    const flat = t.reshape([n, t.size / n]); // [B, max_len * Hkv * D]: one row per sequence
    const g = noGrad(() => embedding(idx, flat));
    const out = g.reshape([m, ...t.shape.slice(1)]);
    for (const x of [flat, g, t]) x.dispose();
    return out;
  };
  try {
    cache.k = cache.k.map(gather);
    cache.v = cache.v.map(gather);
    cache.batch = m;
  } finally {
    idx.dispose();
  }
}

/**
 * Beam search over the model's KV cache (Hugging Face `generate(num_beams > 1)`, see the module
 * doc for the algorithm and its v4.47 source). `generate()` calls it when `num_beams > 1`.
 *
 * @param model the decoder (any backend)
 * @param input one prompt of token ids per row (lengths may differ), e.g. `[[1, 5, 9]]`
 * @param opts {@linkcode GenerateOptions} with `num_beams >= 2`; `length_penalty`,
 *   `early_stopping`, `num_return_sequences`, `no_repeat_ngram_size`, `repetition_penalty`,
 *   `eos_token_id`, `pad_token_id`, `max_new_tokens` apply
 * @returns `num_return_sequences` hypotheses per prompt, prompt-major and best first: the new
 *   tokens (ending with the EOS id when one finished it), `sequences_scores` (HF's length-penalised
 *   score), `finish_reason` and, with a tokenizer, `text`
 * @throws {TypeError} / {@linkcode RangeError} for bad prompts or options, every problem listed;
 *   also for `num_beams` < 2, streaming (`onToken`, `streamer`) or `stop_strings`, which HF's beam
 *   search does not stream either
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { beamSearch } from "./beam_search.ts";
 * import { presetConfig } from "./config.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 16 }), be);
 * const out = await beamSearch(model, [[1, 2, 3], [4]], {
 *   num_beams: 3,
 *   num_return_sequences: 2,
 *   max_new_tokens: 4,
 *   eos_token_id: 0,
 * });
 * const s = out.sequences_scores!;
 * if (out.tokens.length !== 4 || s[0] < s[1] || s[2] < s[3]) throw new Error(JSON.stringify(out));
 * ```
 */
export async function beamSearch(
  model: Transformer,
  input: number[][],
  opts: GenerateOptions = {},
): Promise<GenerateResult> {
  checkGenerateOptions(opts, "beamSearch");
  const V = model.config.vocab_size, be = model.backend;
  checkPrompts(input, V);
  const P = Math.max(...input.map((r) => r.length));
  // the options over the model's own generation_config.json, as HF's model.generation_config
  const s = await resolveForModel(model, opts, P);
  const K = s.num_beams, B = input.length, BK = B * K, eos = s.eos_token_id, pad = s.pad_token_id;
  const nKeep = Math.max(2, 1 + eos.length) * K;
  const p = new Problems();
  if (K < 2) p.range("num_beams", `beam search needs num_beams >= 2, got ${K}; use generate() for greedy`);
  if (opts.onToken || opts.streamer) {
    p.range("onToken", `streaming cannot be used with num_beams ${K} (as in HF); use num_beams 1`);
  }
  if (nKeep > K * V) {
    p.range("eos_token_id", `${eos.length} EOS ids leave no running beam in a vocabulary of ${V}`);
  }
  p.throwIfAny("Cannot run beam search", "generate() options");

  const L = P + s.max_new_tokens;
  const { ids, pos, mask } = leftPad(input, P, L, pad, K);
  let sums = new Float64Array(BK).map((_, j) => j % K === 0 ? 0 : -1e9); // HF beam_scores[:, 1:] = -1e9
  let seqs: number[][] = Array.from({ length: BK }, () => []);
  const finished: Finished[] = input.map(() => ({ beams: [], worst: 1e9 }));
  const done = input.map(() => false);
  const nextPos = input.map((r) => r.length);

  const cache = model.createCache(BK, L);
  const maskT = be.fromArray(mask, [BK, L], "i32");
  let idsT: Tensor | null = be.fromArray(ids, [BK, P], "i32");
  let posT: Tensor | null = be.fromArray(pos, [BK, P], "i32");
  try {
    for (let step = 0; step < s.max_new_tokens; step++) {
      const logitsT = noGrad(() =>
        lastLogits(model, idsT!, { attention_mask: maskT, position_ids: posT, cache })
      );
      idsT!.dispose();
      posT!.dispose();
      idsT = posT = null;
      const logits = await logitsT.toArray() as Float32Array; // [B*K, V]
      logitsT.dispose();
      const curLen = step + 1; // new tokens once this step's token is in (HF cur_len - prompt)
      const nextSums = new Float64Array(BK), nextTokens = new Int32Array(BK).fill(pad);
      const nextIdx = Int32Array.from({ length: BK }, (_, j) => j); // done rows stay in place
      for (let b = 0; b < B; b++) {
        if (done[b]) continue; // HF pads a done row: score 0, pad token
        const rows = Array.from({ length: K }, (_, k) => {
          const j = b * K + k, seen = [...input[b], ...seqs[j]];
          let row = logSoftmax(logits.subarray(j * V, (j + 1) * V));
          row = applyRepetitionPenalty(row, seen, s.repetition_penalty);
          if (s.no_repeat_ngram_size > 0) row = applyNoRepeatNgram(row, seen, s.no_repeat_ngram_size);
          return row;
        });
        const cands = topCandidates(rows, sums.subarray(b * K, (b + 1) * K), nKeep);
        let k = 0;
        for (let rank = 0; rank < cands.length && k < K; rank++) {
          const c = cands[rank], from = b * K + c.beam;
          if (eos.includes(c.token)) {
            // an EOS outside the top num_beams candidates is dropped (HF)
            if (rank < K) {
              addHypothesis(finished[b], s, { tokens: [...seqs[from], c.token], eos: true }, c.score, curLen);
            }
            continue;
          }
          nextSums[b * K + k] = c.score;
          nextTokens[b * K + k] = c.token;
          nextIdx[b * K + k] = from;
          k++;
        }
        done[b] = isDone(finished[b], s, cands[0].score, curLen);
      }
      seqs = seqs.map((_, j) => [...seqs[nextIdx[j]], nextTokens[j]]);
      sums = nextSums;
      if (done.every((d) => d) || step === s.max_new_tokens - 1) break;
      if (nextIdx.some((from, j) => from !== j)) reorderCache(cache, nextIdx);
      idsT = be.fromArray(nextTokens, [BK, 1], "i32");
      posT = be.fromArray(Array.from({ length: BK }, (_, j) => nextPos[Math.floor(j / K)]), [BK, 1], "i32");
      for (let b = 0; b < B; b++) nextPos[b]++;
    }
  } finally {
    idsT?.dispose();
    posT?.dispose();
    maskT.dispose();
    for (const t of [...cache.k, ...cache.v]) t.dispose();
  }
  return finalize(finished, done, seqs, sums, s, opts);
}

/** HF `BeamSearchScorer.finalize`: add the running beams of rows not done, keep the best per prompt. */
function finalize(
  finished: Finished[],
  done: boolean[],
  seqs: number[][],
  sums: Float64Array,
  s: ResolvedGeneration,
  opts: GenerateOptions,
): GenerateResult {
  const K = s.num_beams;
  const tokens: number[][] = [], scores: number[] = [], reason: FinishReason[] = [];
  finished.forEach((h, b) => {
    if (!done[b]) {
      for (let k = 0; k < K; k++) {
        const j = b * K + k;
        addHypothesis(h, s, { tokens: seqs[j], eos: false }, sums[j], seqs[j].length);
      }
    }
    // HF: sorted by score ascending (stable), then popped from the end
    const sorted = h.beams.map((x, i) => [x, i] as const).sort((a, c) =>
      a[0].score - c[0].score || a[1] - c[1]
    );
    for (let n = 0; n < s.num_return_sequences; n++) {
      const best = sorted.pop()![0];
      tokens.push(best.tokens);
      scores.push(best.score);
      reason.push(best.eos ? "eos_token" : "length");
    }
  });
  const result: GenerateResult = { tokens, finish_reason: reason, sequences_scores: scores };
  if (opts.tokenizer) result.text = tokens.map((t) => decodeText(opts.tokenizer!, t));
  return result;
}
