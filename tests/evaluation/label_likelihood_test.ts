/**
 * evaluation/label_likelihood.ts: label scores equal log p(verbalizer | prompt) computed from the
 * full forward's logits, on both paths (one-token verbalizers, longer ones) and both backends.
 */
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { scoreLabels } from "../../evaluation/label_likelihood.ts";
import { continuationLogProbs } from "../../models/score.ts";
import { assert, assertClose } from "../_assert.ts";
import { backends } from "../_check.ts";

const mc = presetConfig("tiny", { vocab_size: 40, max_position_embeddings: 24 });

/** log p(verb | prompt) from one full forward of prompt + verb, log-softmax on the host in f64. */
async function bruteForce(model: Transformer, prompt: number[], verb: number[]): Promise<number> {
  const seq = [...prompt, ...verb];
  const logits = model.forward(model.backend.fromArray(seq, [1, seq.length], "i32"));
  const data = await logits.toArray();
  logits.dispose();
  const V = mc.vocab_size;
  let s = 0;
  for (let j = 0; j < verb.length; j++) {
    const t = prompt.length - 1 + j, row = Array.from(data.slice(t * V, (t + 1) * V));
    const max = Math.max(...row), lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
    s += row[verb[j]] - lse;
  }
  return s;
}

const PROMPTS = [[1, 2, 3, 4, 5], [6], [7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17], [3, 3]];

Deno.test("scoreLabels() equals the full forward's log-likelihood, one-token and longer verbalizers", async () => {
  for (const be of await backends()) {
    const model = Transformer.init(mc, be, { seed: 3 });
    for (const verbs of [[[20], [21], [22]], [[20, 21], [22], [23, 24, 25]]]) {
      // batch_size 2: batches of sorted lengths, padding inside every batch but one
      const r = await scoreLabels(model, PROMPTS, verbs, { batch_size: 2 });
      for (let i = 0; i < PROMPTS.length; i++) {
        for (let l = 0; l < verbs.length; l++) {
          const want = await bruteForce(model, PROMPTS[i], verbs[l]);
          assertClose(r.scores[i][l], want, {
            atol: 1e-4,
            rtol: 1e-4,
            msg: `${be.name} prompt ${i} label ${l}`,
          });
        }
        const best = r.scores[i].indexOf(Math.max(...r.scores[i]));
        assert.equal(r.predictions[i], best);
      }
      const m = await scoreLabels(model, PROMPTS, verbs, { normalize: "mean" });
      verbs.forEach((v, l) =>
        assertClose(m.scores[0][l], r.scores[0][l] / v.length, { atol: 1e-5, rtol: 1e-5 })
      );
    }
    model.dispose();
  }
});

Deno.test("scoreLabels() refuses empty or out-of-vocabulary ids and prompts that do not fit", async () => {
  const [be] = await backends();
  const model = Transformer.init(mc, be, { seed: 3 });
  await assert.rejects(() => scoreLabels(model, [[1]], [[]]), /verbalizer 0 is empty/);
  await assert.rejects(
    () => scoreLabels(model, [[1, 99]], [[2]]),
    /prompt 0 holds id 99, outside the vocabulary \[0, 40\)/,
  );
  await assert.rejects(
    () => scoreLabels(model, [new Array(24).fill(1)], [[2]]),
    /prompt 0 \(24 tokens\) \+ verbalizer \(1\) exceeds max_position_embeddings 24; truncate the prompt/,
  );
  // settings that once ran anyway: an unknown normalize scored by sum, batch_size 0 a cryptic error
  await assert.rejects(() => scoreLabels(model, [[1]], []), /there are no verbalizers; give at least one/);
  await assert.rejects(
    () => scoreLabels(model, [[1]], [[2]], { normalize: "avg" as "mean" }),
    /normalize "avg" is not "sum" or "mean"/,
  );
  for (const batch_size of [0, -1, NaN, 1.5]) {
    await assert.rejects(
      () => scoreLabels(model, [[1]], [[2]], { batch_size }),
      /batch_size .* is not an integer >= 1/,
    );
  }
  // continuationLogProbs (models/score.ts) refuses ids it once scored as NaN
  for (
    const [prompts, conts, re] of [
      [[[1, 2]], [[99]], /continuation 0 holds id 99, outside the vocabulary \[0, 40\)/],
      [[[1, 2]], [[1.5]], /continuation 0 holds id 1.5/],
      [[[1, 2]], [[]], /continuation 0 is empty/],
      [[[]], [[3]], /prompt 0 is empty/],
      [[], [[3]], /there are no prompts/],
    ] as const
  ) {
    await assert.rejects(() => continuationLogProbs(model, prompts, conts), {
      name: "RangeError",
      message: re,
    });
  }
  model.dispose();
});
