/**
 * Classification with a causal LM by label likelihood (no sampling): for each prompt, the
 * log-probability of every label's verbalizer tokens after it, `log p(verbalizer | prompt)` summed
 * over the verbalizer's tokens; the prediction is the label with the highest one (lm-eval-harness'
 * `multiple_choice` `acc`; `normalize: "mean"` divides by the token count, its `acc_norm`-like
 * variant for verbalizers of different lengths).
 *
 * When every verbalizer is one token, one forward per prompt scores all labels: the last prompt
 * position's logits are gathered on the device, the LM head runs on those rows only and `[B, V]`
 * log-probs are read back. Otherwise each (prompt, label) pair is one right-padded row and the
 * verbalizer tokens' log-probs (`kernels/logprob.ts`) are summed on the host. An exported ONNX
 * decoder (onnxruntime) is scored the same way from its `[B, T, V]` logits, log-softmax on the host.
 *
 * @module
 */
import { noGrad } from "../kernels/autograd.ts";
import { embedding } from "../kernels/embedding.ts";
import { tokenLogProbs } from "../kernels/logprob.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { OnnxDecoder } from "../models/onnx_runtime.ts";
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
 * @throws {RangeError} for an empty prompt or verbalizer, an id outside the vocabulary, or a
 *   prompt + verbalizer longer than `max_position_embeddings`
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
  const longestVerb = Math.max(...verbalizers.map((v) => v.length));
  const check = (ids: readonly number[], what: string) => {
    if (ids.length === 0) throw new RangeError(`Cannot score labels: ${what} is empty`);
    const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad !== undefined) {
      throw new RangeError(`Cannot score labels: ${what} holds id ${bad}, outside the vocabulary [0, ${V})`);
    }
  };
  verbalizers.forEach((v, i) => check(v, `verbalizer ${i}`));
  prompts.forEach((p, i) => {
    check(p, `prompt ${i}`);
    if (p.length + longestVerb > maxLen) {
      throw new RangeError(
        `Cannot score labels: prompt ${i} (${p.length} tokens) + verbalizer (${longestVerb}) exceeds ` +
          `max_position_embeddings ${maxLen}; truncate the prompt`,
      );
    }
  });
  const B = opts.batch_size ?? 32, mean = opts.normalize === "mean";
  const scores: number[][] = prompts.map(() => new Array(verbalizers.length).fill(0));
  // Batches of similar lengths pad little: sort by length, keep the original index.
  const order = prompts.map((p, i) => [p.length, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) =>
    x[1]
  );
  const single = verbalizers.every((v) => v.length === 1);
  for (let s = 0; s < order.length; s += B) {
    const idx = order.slice(s, s + B);
    if (model instanceof OnnxDecoder) {
      for (let l = 0; l < verbalizers.length; l++) {
        const sums = await onnxLogProbs(model, idx.map((i) => prompts[i]), verbalizers[l]);
        idx.forEach((i, r) => scores[i][l] = mean ? sums[r] / verbalizers[l].length : sums[r]);
      }
    } else if (single) await scoreSingle(model, idx.map((i) => prompts[i]), verbalizers, idx, scores);
    else {
      for (let l = 0; l < verbalizers.length; l++) {
        const sums = await verbalizerLogProbs(model, idx.map((i) => prompts[i]), verbalizers[l]);
        idx.forEach((i, r) => scores[i][l] = mean ? sums[r] / verbalizers[l].length : sums[r]);
      }
    }
    opts.onProgress?.(Math.min(s + B, order.length), order.length);
  }
  const predictions = scores.map((row) => row.reduce((best, v, l) => (v > row[best] ? l : best), 0));
  return { scores, predictions };
}

/** Right-pad rows to one `[B, T]` i32 tensor (pad id 0: causal attention never looks ahead). */
function padRows(model: Transformer, rows: readonly (readonly number[])[]): { ids: Tensor; T: number } {
  const T = Math.max(...rows.map((r) => r.length));
  const flat = new Int32Array(rows.length * T);
  rows.forEach((r, b) => flat.set(r, b * T));
  return { ids: model.backend.fromArray(flat, [rows.length, T], "i32"), T };
}

/** One forward: the log-softmax at each prompt's last position, read at every label's token. */
async function scoreSingle(
  model: Transformer,
  rows: readonly (readonly number[])[],
  verbalizers: readonly (readonly number[])[],
  idx: number[],
  scores: number[][],
): Promise<void> {
  const V = model.config.vocab_size;
  const logits = noGrad(() => {
    const { ids, T } = padRows(model, rows);
    const h = model.hidden(ids); // [B*T, C]
    ids.dispose();
    const at = model.backend.fromArray(rows.map((r, b) => b * T + r.length - 1), [rows.length], "i32");
    const last = embedding(at, h); // [B, C]: the last real position of each row
    at.dispose();
    h.dispose();
    return model.head(last); // [B, V]
  });
  const data = await logits.toArray();
  logits.dispose();
  for (let r = 0; r < rows.length; r++) {
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, data[r * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(data[r * V + v] - max);
    const lse = max + Math.log(z);
    verbalizers.forEach((verb, l) => scores[idx[r]][l] = data[r * V + verb[0]] - lse);
  }
}

/** Σ log p(verbalizer tokens | prompt) per row: one right-padded forward of prompt + verbalizer. */
async function verbalizerLogProbs(
  model: Transformer,
  rows: readonly (readonly number[])[],
  verb: readonly number[],
): Promise<number[]> {
  const seqs = rows.map((p) => [...p, ...verb]);
  const { ids, T } = padRows(model, seqs);
  // labels[b, t] = the token at t + 1 when it is a verbalizer token (logits at t predict t + 1)
  const labels = new Int32Array(seqs.length * T).fill(-100);
  rows.forEach((p, b) => {
    for (let j = 0; j < verb.length; j++) labels[b * T + p.length - 1 + j] = verb[j];
  });
  const logps = noGrad(() => {
    const logits = model.forward(ids); // [B, T, V]
    const lab = model.backend.fromArray(labels, [seqs.length * T], "i32");
    const flat = logits.reshape([seqs.length * T, model.config.vocab_size]);
    const r = tokenLogProbs(flat, lab).logps;
    flat.dispose();
    logits.dispose();
    lab.dispose();
    return r;
  });
  ids.dispose();
  const lp = await logps.toArray();
  logps.dispose();
  return rows.map((_, b) => {
    let s = 0;
    for (let t = 0; t < T; t++) s += lp[b * T + t];
    return s;
  });
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
