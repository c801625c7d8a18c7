/**
 * Log-likelihood of continuations after prompts, each prompt run once for all its continuations:
 * a batch of prompts is left padded (HF `generate()`'s convention) and prefilled into a KV cache;
 * the last position's logits (gathered on the device, the LM head on those rows only) give every
 * continuation's first token. A continuation of more tokens is then fed after the cached prompt
 * (the cache rewound to the prompt for each one) and its later tokens' log-probs
 * (`kernels/logprob.ts`) are summed on the host. Label-likelihood classification
 * (`evaluation/label_likelihood.ts`) scores the label verbalizers with it.
 *
 * @module
 */
import { noGrad } from "../kernels/autograd.ts";
import { tokenLogProbs } from "../kernels/logprob.ts";
import { lastLogits, leftPad } from "./_decode.ts";
import { logSumExpRow } from "./logits_process.ts";
import type { Transformer } from "./transformer.ts";

/**
 * Refuse what {@linkcode continuationLogProbs} cannot score, in one line that starts with `what`:
 * no continuations, an empty prompt or continuation, an id that is not an integer in [0, V).
 *
 * @param names what the caller calls a prompt and a continuation (e.g. `verbalizer`)
 * @throws {RangeError} the first such problem, naming the row
 */
export function checkScoreInputs(
  prompts: readonly (readonly number[])[],
  continuations: readonly (readonly number[])[],
  V: number,
  what = "Cannot score continuations",
  names: readonly [string, string] = ["prompt", "continuation"],
): void {
  if (!continuations.length) throw new RangeError(`${what}: there are no ${names[1]}s; give at least one`);
  for (const [name, rows] of [[names[1], continuations], [names[0], prompts]] as const) {
    rows.forEach((ids, i) => {
      if (ids.length === 0) throw new RangeError(`${what}: ${name} ${i} is empty`);
      const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= V);
      if (bad !== undefined) {
        throw new RangeError(`${what}: ${name} ${i} holds id ${bad}, outside the vocabulary [0, ${V})`);
      }
    });
  }
}

/**
 * `Σ log p(continuation | prompt)` for every prompt and every continuation, `[prompts][continuations]`,
 * with each prompt run once (see the module doc). Call it with a batch that fits the device; the
 * caller checks that a prompt plus its longest continuation fits `max_position_embeddings`.
 *
 * @param model the decoder (any backend), run under `noGrad`
 * @param prompts token ids per prompt (non-empty)
 * @param continuations token ids per continuation (non-empty)
 * @throws {RangeError} no prompts, or what {@linkcode checkScoreInputs} refuses
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "./config.ts";
 * import { continuationLogProbs } from "./score.ts";
 * import { Transformer } from "./transformer.ts";
 * const model = Transformer.init(presetConfig("tiny"), await createBackend("cpu"), { seed: 1 });
 * const s = await continuationLogProbs(model, [[1, 2, 3], [4]], [[7], [8, 9]]);
 * if (s.length !== 2 || s[0].length !== 2 || !s.flat().every((x) => x < 0)) throw new Error("scores");
 * ```
 */
export async function continuationLogProbs(
  model: Transformer,
  prompts: readonly (readonly number[])[],
  continuations: readonly (readonly number[])[],
): Promise<number[][]> {
  const be = model.backend, V = model.config.vocab_size, n = prompts.length;
  if (n === 0) throw new RangeError("Cannot score continuations: there are no prompts; give at least one");
  checkScoreInputs(prompts, continuations, V);
  const P = Math.max(...prompts.map((r) => r.length));
  const extra = Math.max(...continuations.map((v) => v.length)) - 1; // tokens fed after the prompt
  const L = P + extra;
  const { ids, pos, mask } = leftPad(prompts as number[][], P, L, 0);
  const sums = prompts.map(() => continuations.map(() => 0));
  const cache = extra > 0 ? model.createCache(n, L) : null;
  const maskT = be.fromArray(mask, [n, L], "i32");
  try {
    // the prompt: every continuation's first token from the last position's log-softmax
    const logits = noGrad(() => {
      const idsT = be.fromArray(ids, [n, P], "i32"), posT = be.fromArray(pos, [n, P], "i32");
      try {
        // the mask is [n, L]: [n, P] when every continuation is one token (no cache)
        return lastLogits(model, idsT, { attention_mask: maskT, position_ids: posT, cache }); // [n, V]
      } finally {
        idsT.dispose();
        posT.dispose();
      }
    });
    const data = await logits.toArray();
    logits.dispose();
    for (let r = 0; r < n; r++) {
      const row = data.subarray(r * V, (r + 1) * V), lse = logSumExpRow(row);
      continuations.forEach((cont, l) => sums[r][l] = row[cont[0]] - lse);
    }
    // each longer continuation after the cached prompt: tokens 0..m-2 in, tokens 1..m-1 scored
    for (let l = 0; l < continuations.length; l++) {
      const cont = continuations[l], m = cont.length - 1;
      if (m === 0) continue;
      cache!.length = P;
      const logps = noGrad(() => {
        const feed = new Int32Array(n * m), at = new Int32Array(n * m), want = new Int32Array(n * m);
        prompts.forEach((p, r) => {
          for (let j = 0; j < m; j++) {
            feed[r * m + j] = cont[j];
            at[r * m + j] = p.length + j;
            want[r * m + j] = cont[j + 1];
          }
        });
        const idsT = be.fromArray(feed, [n, m], "i32"), posT = be.fromArray(at, [n, m], "i32");
        const lab = be.fromArray(want, [n * m], "i32");
        const out = model.forward(idsT, { attention_mask: maskT, position_ids: posT, cache }); // [n, m, V]
        const flat = out.reshape([n * m, V]);
        const lp = tokenLogProbs(flat, lab).logps;
        for (const t of [idsT, posT, lab, flat, out]) t.dispose();
        return lp;
      });
      const lp = await logps.toArray();
      logps.dispose();
      for (let r = 0; r < n; r++) for (let j = 0; j < m; j++) sums[r][l] += lp[r * m + j];
    }
  } finally {
    maskT.dispose();
    if (cache) { for (const t of [...cache.k, ...cache.v]) t.dispose(); }
  }
  return sums;
}
