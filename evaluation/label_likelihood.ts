/**
 * Classification with a causal LM by label likelihood (no sampling): for each prompt, the
 * log-probability of every label's verbalizer tokens after it, `log p(verbalizer | prompt)` summed
 * over the verbalizer's tokens; the prediction is the label with the highest one (lm-eval-harness'
 * `multiple_choice` `acc`; `normalize: "mean"` divides by the token count, its `acc_norm`-like
 * variant for verbalizers of different lengths).
 *
 * The prompt is run once for all labels (`continuationLogProbs` in `models/score.ts`: the prompts
 * prefilled into a KV cache, each verbalizer fed after them), so 8 labels of two tokens cost one
 * prompt forward and 8 one-token steps, not 8 prompt forwards. An exported ONNX decoder
 * (onnxruntime) is scored per (prompt, label) row from its `[B, T, V]` logits, log-softmax on the
 * host.
 *
 * @module
 */
import { OnnxDecoder } from "../models/onnx_runtime.ts";
import { checkScoreInputs, continuationLogProbs } from "../models/score.ts";
import type { Transformer } from "../models/transformer.ts";

/** Options of {@linkcode scoreLabels}. */
export interface ScoreLabelsOptions {
  /** Rows per forward (default 32). */
  batch_size?: number;
  /** `sum` (default) or `mean` of the verbalizer's token log-probs. */
  normalize?: "sum" | "mean";
  /** Called after each batch with (prompts done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** What {@linkcode scoreLabels} returns. */
export interface LabelScores {
  /** Per prompt, per label: the (normalized) log-likelihood of the verbalizer. */
  scores: number[][];
  /** Per prompt: the index of the best label (the first one on a tie). */
  predictions: number[];
}

/**
 * Score every label verbalizer after every prompt (token ids; see the module doc).
 *
 * @param model the decoder (any backend), run under `noGrad`
 * @param prompts token ids per prompt (non-empty)
 * @param verbalizers token ids per label (non-empty), e.g. the ids of `" games"`, `" other"`
 * @param opts batch size, normalization, progress
 * @returns scores and predictions
 * @throws {RangeError} for no verbalizers, an empty prompt or verbalizer, an id outside the
 *   vocabulary, a prompt + verbalizer longer than `max_position_embeddings`, a `batch_size` that is
 *   not a whole number >= 1 or a `normalize` other than `sum` / `mean`
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "../models/config.ts";
 * import { Transformer } from "../models/transformer.ts";
 * import { scoreLabels } from "./label_likelihood.ts";
 * const model = Transformer.init(presetConfig("tiny"), await createBackend("cpu"), { seed: 1 });
 * const r = await scoreLabels(model, [[1, 2, 3], [4, 5]], [[7], [8]]);
 * if (r.predictions.length !== 2 || r.scores[0].length !== 2 || !(r.scores[0][0] < 0)) throw new Error("scores");
 * ```
 */
export async function scoreLabels(
  model: Transformer | OnnxDecoder,
  prompts: readonly (readonly number[])[],
  verbalizers: readonly (readonly number[])[],
  opts: ScoreLabelsOptions = {},
): Promise<LabelScores> {
  const config = model.config;
  if (!config) {
    throw new TypeError(`Cannot score labels with ${(model as OnnxDecoder).path}: load it with its config`);
  }
  const V = config.vocab_size, maxLen = config.max_position_embeddings;
  checkScoreInputs(prompts, verbalizers, V, "Cannot score labels", ["prompt", "verbalizer"]);
  const B = opts.batch_size ?? 32, mean = opts.normalize === "mean";
  if (!(Number.isInteger(B) && B >= 1)) {
    throw new RangeError(`Cannot score labels: batch_size ${B} is not an integer >= 1`);
  }
  if (opts.normalize !== undefined && opts.normalize !== "sum" && !mean) {
    throw new RangeError(
      `Cannot score labels: normalize ${JSON.stringify(opts.normalize)} is not "sum" or "mean"`,
    );
  }
  const longestVerb = Math.max(...verbalizers.map((v) => v.length));
  prompts.forEach((p, i) => {
    if (p.length + longestVerb > maxLen) {
      throw new RangeError(
        `Cannot score labels: prompt ${i} (${p.length} tokens) + verbalizer (${longestVerb}) exceeds ` +
          `max_position_embeddings ${maxLen}; truncate the prompt`,
      );
    }
  });
  const scores: number[][] = prompts.map(() => new Array(verbalizers.length).fill(0));
  // Batches of similar lengths pad little: sort by length, keep the original index.
  const order = prompts.map((p, i) => [p.length, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) =>
    x[1]
  );
  for (let s = 0; s < order.length; s += B) {
    const idx = order.slice(s, s + B);
    const rows = idx.map((i) => prompts[i]);
    if (model instanceof OnnxDecoder) {
      for (let l = 0; l < verbalizers.length; l++) {
        const sums = await onnxLogProbs(model, rows, verbalizers[l]);
        idx.forEach((i, r) => scores[i][l] = mean ? sums[r] / verbalizers[l].length : sums[r]);
      }
    } else {
      const sums = await continuationLogProbs(model, rows, verbalizers);
      idx.forEach((i, r) =>
        verbalizers.forEach((v, l) => scores[i][l] = mean ? sums[r][l] / v.length : sums[r][l])
      );
    }
    opts.onProgress?.(Math.min(s + B, order.length), order.length);
  }
  const predictions = scores.map((row) => row.reduce((best, v, l) => (v > row[best] ? l : best), 0));
  return { scores, predictions };
}

/** Σ log p(verbalizer tokens | prompt) per row from an ONNX decoder's logits (no past). */
async function onnxLogProbs(
  decoder: OnnxDecoder,
  rows: readonly (readonly number[])[],
  verb: readonly number[],
): Promise<number[]> {
  const seqs = rows.map((p) => [...p, ...verb]);
  const T = Math.max(...seqs.map((s) => s.length)), V = decoder.vocab_size;
  const { logits } = await decoder.step({
    input_ids: seqs.map((s) => [...s, ...new Array(T - s.length).fill(0)]),
    attention_mask: seqs.map((s) => Array.from({ length: T }, (_, t) => (t < s.length ? 1 : 0))),
  });
  return rows.map((p, b) => {
    let sum = 0;
    for (let j = 0; j < verb.length; j++) {
      const off = (b * T + p.length - 1 + j) * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[off + v]);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[off + v] - max);
      sum += logits[off + verb[j]] - max - Math.log(z);
    }
    return sum;
  });
}
