/**
 * Beam search (HF `generate(num_beams > 1)`, v4.47): against a brute-force enumeration of every
 * continuation scored with the model's full forward (no cache), against a step-by-step
 * transcription of HF's `_beam_search` / `BeamSearchScorer` on full-forward log-probs (where beams
 * prune and early stopping matters), batched == one prompt at a time, `num_beams: 1` == greedy,
 * no-repeat n-grams, and option errors.
 */
import { noGrad } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { beamSearch, reorderCache } from "../../models/beam_search.ts";
import { presetConfig } from "../../models/config.ts";
import { generate, type GenerateOptions, type GenerateResult } from "../../models/generate.ts";
import { loadGenerationConfig } from "../../models/generation_config.ts";
import { applyNoRepeatNgram, argmax, bannedNgramTokens } from "../../models/logits_process.ts";
import { loadModel } from "../../models/pretrained.ts";
import { readSafetensors } from "../../models/formats/safetensors.ts";
import { Transformer } from "../../models/transformer.ts";
import { assert, assertClose, SHARED } from "../_assert.ts";
import { backends, cpu } from "../_check.ts";

const V = 6;
/** A tiny model with spread-out log-probs (large init), so no two hypotheses tie. */
const tiny = (be: Backend) =>
  Transformer.init(
    presetConfig("tiny", {
      vocab_size: V,
      hidden_size: 32,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      head_dim: 16,
      intermediate_size: 64,
      num_hidden_layers: 2,
      initializer_range: 0.3,
    }),
    be,
    { seed: 3 },
  );

/** Log-probs of the next token after `seq` from the full forward (float64 log-softmax), memoised. */
function scorer(model: Transformer) {
  const memo = new Map<string, Float64Array>();
  return async (seq: number[], ngram = 0): Promise<Float64Array> => {
    const key = `${seq}|${ngram}`;
    if (memo.has(key)) return memo.get(key)!;
    const ids = model.backend.fromArray(seq, [1, seq.length], "i32");
    const t = noGrad(() => model.forward(ids));
    const all = await t.toArray() as Float32Array;
    ids.dispose();
    t.dispose();
    const row = all.slice((seq.length - 1) * V);
    const m = Math.max(...row), lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    let lp: Float32Array = Float32Array.from(row, (x) => x - lse);
    if (ngram) lp = applyNoRepeatNgram(lp, seq, ngram);
    const out = Float64Array.from(lp);
    memo.set(key, out);
    return out;
  };
}

interface Hyp {
  tokens: number[];
  score: number;
}

/**
 * Every continuation of `prompt` up to `maxNew` tokens (one ending at an EOS id stops there), each
 * scored HF's way: sum of log-probs / (new tokens incl. EOS) ** lp. The best `n`, best first.
 */
async function bruteForce(
  model: Transformer,
  prompt: number[],
  o: { eos: number[]; maxNew: number; lp: number; n: number },
) {
  const lps = scorer(model), all: Hyp[] = [];
  const walk = async (gen: number[], sum: number) => {
    const lp = await lps([...prompt, ...gen]);
    for (let t = 0; t < V; t++) {
      const tokens = [...gen, t], s = sum + lp[t];
      if (o.eos.includes(t) || tokens.length === o.maxNew) {
        all.push({ tokens, score: s / tokens.length ** o.lp });
      } else await walk(tokens, s);
    }
  };
  await walk([], 0);
  return all.sort((a, b) => b.score - a.score).slice(0, o.n);
}

/**
 * HF v4.47 `_beam_search` + `BeamSearchScorer.process/finalize` + `BeamHypotheses`, one prompt,
 * transcribed step by step over full-forward log-probs (no cache, no reordering).
 */
async function referenceBeams(model: Transformer, prompt: number[], o: GenerateOptions & { eos: number[] }) {
  const K = o.num_beams!,
    lp = o.length_penalty ?? 1,
    es = o.early_stopping ?? false,
    maxNew = o.max_new_tokens!;
  const lps = scorer(model), nKeep = Math.max(2, 1 + o.eos.length) * K;
  let beams = Array.from({ length: K }, (_, k) => ({ tokens: [] as number[], sum: k === 0 ? 0 : -1e9 }));
  const hyps: Hyp[] = [];
  let worst = 1e9, done = false;
  const add = (tokens: number[], sum: number, len: number) => {
    const score = sum / len ** lp;
    if (hyps.length < K || score > worst) {
      hyps.push({ tokens, score });
      if (hyps.length > K) {
        const sorted = hyps.map((h, i) => [h.score, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        hyps.splice(sorted[0][1], 1);
        worst = sorted[1][0];
      } else worst = Math.min(score, worst);
    }
  };
  let steps = 0;
  for (let cur = 1; cur <= maxNew && !done; cur++, steps++) {
    const cands: { score: number; beam: number; token: number }[] = [];
    for (let k = 0; k < K; k++) {
      const row = await lps([...prompt, ...beams[k].tokens], o.no_repeat_ngram_size ?? 0);
      row.forEach((x, token) => cands.push({ score: beams[k].sum + x, beam: k, token }));
    }
    const top = cands.sort((a, b) => b.score - a.score).slice(0, nKeep); // stable: lower index first
    const next: typeof beams = [];
    for (let rank = 0; rank < top.length && next.length < K; rank++) {
      const c = top[rank], tokens = [...beams[c.beam].tokens, c.token];
      if (!o.eos.includes(c.token)) next.push({ tokens, sum: c.score });
      else if (rank < K) add(tokens, c.score, cur);
    }
    if (hyps.length >= K) {
      if (es === true) done = true;
      else {
        const len = es === "never" && lp > 0 ? maxNew : cur;
        done = worst >= top[0].score / len ** lp;
      }
    }
    beams = next;
  }
  if (!done) { for (const b of beams) add(b.tokens, b.sum, b.tokens.length); }
  return {
    hyps: hyps.sort((a, b) => a.score - b.score).reverse().slice(0, o.num_return_sequences ?? 1),
    steps,
  };
}

/** The hypotheses of prompt `i` of a result. */
function hypsOf(r: GenerateResult, i: number, n: number): Hyp[] {
  return r.tokens.slice(i * n, (i + 1) * n).map((tokens, j) => ({
    tokens,
    score: r.sequences_scores![i * n + j],
  }));
}

function assertHyps(got: Hyp[], want: Hyp[], msg: string) {
  assert.deepEqual(got.map((h) => h.tokens), want.map((h) => h.tokens), msg);
  got.forEach((h, i) => assertClose(h.score, want[i].score, { atol: 1e-4, msg: `${msg} score ${i}` }));
}

const prompt = [1, 2, 3, 4];

Deno.test("beamSearch() with beams covering every sequence returns the brute-force best (EOS, length_penalty, early_stopping)", async () => {
  const be = await cpu();
  const model = tiny(be);
  // 5 live tokens and 3 new: 6 candidates at step 1, 30 at step 2, so 30 beams prune nothing
  const lp0 = await scorer(model)(prompt);
  const eos = [argmax(lp0.map((x, i) => i === argmax(lp0) ? -Infinity : x))]; // the 2nd most likely first token
  let eosWins = 0;
  for (const length_penalty of [1, 0.5, 2, -1]) {
    const want = await bruteForce(model, prompt, { eos, maxNew: 3, lp: length_penalty, n: 6 });
    eosWins += want.filter((h) => h.tokens.length < 3).length;
    for (const early_stopping of [false, true, "never"] as const) {
      const o = {
        num_beams: 30,
        num_return_sequences: 6,
        max_new_tokens: 3,
        eos_token_id: eos,
        length_penalty,
        early_stopping,
      };
      const r = await generate(model, [prompt], o);
      const msg = JSON.stringify({ length_penalty, early_stopping });
      assertHyps(hypsOf(r, 0, 6), want, msg);
      assert.deepEqual(
        r.finish_reason,
        want.map((h) => h.tokens.length < 3 || eos.includes(h.tokens[2]) ? "eos_token" : "length"),
        msg,
      );
    }
  }
  assert.ok(eosWins > 0, "some best hypotheses end early at the EOS id");
  model.dispose();
});

Deno.test("beamSearch() follows HF's step rules where beams prune (early_stopping true / false / never)", async () => {
  for (const be of await backends()) {
    const model = tiny(be);
    const lp0 = await scorer(model)(prompt);
    // the most likely first token ends a hypothesis at once; two EOS ids keep 3 * num_beams candidates
    const eosSets = [[argmax(lp0)], [2, 3]];
    const outcomes = new Set<string>(), stops = new Map<string, number>();
    // each decode step reads the logits back once: count the steps run
    let reads = 0;
    const spy = be as Backend & { read: Backend["read"] };
    const read = spy.read.bind(be);
    spy.read = (t) => (reads++, read(t));
    try {
      for (const [num_beams, eos] of [2, 3].flatMap((k) => eosSets.map((e) => [k, e] as const))) {
        for (const length_penalty of [1, 0.3, 2]) {
          for (const early_stopping of [true, false, "never"] as const) {
            const o = {
              num_beams,
              num_return_sequences: num_beams,
              max_new_tokens: 6,
              eos_token_id: eos,
              length_penalty,
              early_stopping,
            };
            const want = await referenceBeams(model, prompt, { ...o, eos });
            reads = 0;
            const r = await generate(model, [prompt], o);
            const msg = `${be.name} ${JSON.stringify(o)}`;
            assertHyps(hypsOf(r, 0, num_beams), want.hyps, msg);
            assert.equal(reads, want.steps, `${msg}: steps`);
            outcomes.add(`${num_beams} ${eos} ${length_penalty} ${JSON.stringify(r.tokens)}`);
            stops.set(`${num_beams} ${eos} ${length_penalty} ${early_stopping}`, reads);
          }
        }
      }
    } finally {
      spy.read = read;
    }
    // the stop rules do not all agree here: the test sees each of them act
    assert.ok(outcomes.size > 12, `early_stopping changed no result (${outcomes.size} outcomes)`);
    const differ = (a: string, b: string) =>
      [...stops.keys()].some((k) => k.endsWith(` ${a}`) && stops.get(k) !== stops.get(k.replace(/\S+$/, b)));
    assert.ok(differ("false", "never"), `"never" stopped whenever false did: ${JSON.stringify([...stops])}`);
    model.dispose();
  }
});

Deno.test("beamSearch() on a left-padded batch equals each prompt alone", async () => {
  for (const be of await backends()) {
    const model = tiny(be);
    const prompts = [[5, 1], [1, 2, 3, 4, 0, 2], [3]];
    const o = {
      num_beams: 3,
      num_return_sequences: 2,
      max_new_tokens: 5,
      eos_token_id: 0,
      length_penalty: 0.7,
    };
    const both = await generate(model, prompts, o);
    for (let i = 0; i < prompts.length; i++) {
      const alone = await generate(model, [prompts[i]], o);
      assertHyps(hypsOf(both, i, 2), hypsOf(alone, 0, 2), `${be.name} prompt ${i}`);
      assert.deepEqual(both.finish_reason.slice(2 * i, 2 * i + 2), alone.finish_reason);
    }
    model.dispose();
  }
});

Deno.test("generate() with num_beams: 1 is greedy decoding exactly", async () => {
  const dir = `${SHARED}/fixtures/hf-reference/llama`;
  const be = await cpu();
  const model = await loadModel(dir, { backend: be });
  const prompts = [[5, 6, 7, 8, 9], [17, 3]];
  for (
    const o of [{ max_new_tokens: 6 }, { max_new_tokens: 6, eos_token_id: 234, repetition_penalty: 1.2 }]
  ) {
    const greedy = await generate(model, prompts, o);
    assert.deepEqual(await generate(model, prompts, { ...o, num_beams: 1 }), greedy);
  }
  model.dispose();
});

Deno.test("no_repeat_ngram_size bans the n-gram greedy and beam search would otherwise repeat", async () => {
  // hand-made bans: the ids that would complete an n-gram already in the sequence
  assert.deepEqual(bannedNgramTokens([1, 2, 3, 1, 2], 3), [3]);
  assert.deepEqual(bannedNgramTokens([1, 2, 3, 1, 2], 2), [3]);
  assert.deepEqual(bannedNgramTokens([4, 4, 2], 1), [4, 2]);
  assert.deepEqual(bannedNgramTokens([4, 4, 2], 4), []);
  assert.deepEqual(bannedNgramTokens([4, 4, 2], 0), []);
  const dir = `${SHARED}/fixtures/hf-reference/llama`;
  const be = await cpu();
  const model = await loadModel(dir, { backend: be });
  // the fixture's greedy continuation is 89, 234, 234, 234, ...: the bigram (234, 234) repeats
  const { tensors } = await readSafetensors(`${dir}/cases.safetensors`);
  const p = Array.from(tensors.get("greedy_prompt")!.data as BigInt64Array, Number);
  const free = (await generate(model, [p], { max_new_tokens: 8, eos_token_id: null })).tokens[0];
  // find the first step where greedy repeats a bigram of the sequence
  const seq = [...p, ...free];
  const at = free.findIndex((_, i) => bannedNgramTokens(seq.slice(0, p.length + i), 2).includes(free[i]));
  assert.ok(at >= 0, `greedy ${free} repeats no bigram: pick another prompt`);
  const banned =
    (await generate(model, [p], { max_new_tokens: 8, eos_token_id: null, no_repeat_ngram_size: 2 }))
      .tokens[0];
  assert.deepEqual(banned.slice(0, at), free.slice(0, at));
  // at that step the repeated token is blocked: the next best token of the full forward is chosen
  const ids = be.fromArray(seq.slice(0, p.length + at), [1, p.length + at], "i32");
  const logits = (await noGrad(() => model.forward(ids)).toArray() as Float32Array).slice(-256);
  const want = argmax(applyNoRepeatNgram(logits, seq.slice(0, p.length + at), 2));
  assert.notEqual(want, free[at]);
  assert.equal(banned[at], want);
  // no bigram repeats anywhere, greedy or beam
  const beams = await generate(model, [p], {
    max_new_tokens: 8,
    eos_token_id: null,
    no_repeat_ngram_size: 2,
    num_beams: 3,
    num_return_sequences: 3,
  });
  for (const gen of [banned, ...beams.tokens]) {
    const all = [...p, ...gen];
    for (let i = p.length; i < all.length; i++) {
      assert.ok(!bannedNgramTokens(all.slice(0, i), 2).includes(all[i]), `${gen}`);
    }
  }
  model.dispose();
  // and beam search with the ban follows the HF transcription on the tiny model
  const tm = tiny(be);
  const o = {
    num_beams: 2,
    num_return_sequences: 2,
    max_new_tokens: 5,
    eos_token_id: [],
    no_repeat_ngram_size: 2,
  };
  assertHyps(
    hypsOf(await generate(tm, [prompt], o), 0, 2),
    (await referenceBeams(tm, prompt, { ...o, eos: [] })).hyps,
    "ngram 2",
  );
  tm.dispose();
});

Deno.test("reorderCache() gathers cache rows on the device like a host gather, and drops rows", async () => {
  for (const be of await backends()) {
    const model = tiny(be);
    const cache = model.createCache(3, 5);
    model.forward(be.fromArray([1, 2, 3, 4, 5, 0], [3, 2], "i32"), { cache });
    const before = await Promise.all([...cache.k, ...cache.v].map((t) => t.toArray()));
    reorderCache(cache, [2, 0, 0]);
    const after = await Promise.all([...cache.k, ...cache.v].map((t) => t.toArray()));
    before.forEach((b, i) => {
      const row = b.length / 3;
      const want = [2, 0, 0].flatMap((j) => Array.from(b.slice(j * row, (j + 1) * row)));
      assert.deepEqual(Array.from(after[i]), want, `${be.name} tensor ${i}`);
    });
    assert.throws(() => reorderCache(cache, [0, 3, 1]), RangeError);
    assert.throws(() => reorderCache(cache, []), /at least one row/);
    // fewer rows: the others are dropped (greedy decoding drops the rows that stopped)
    reorderCache(cache, [1]);
    assert.equal(cache.batch, 1);
    const kept = await Promise.all([...cache.k, ...cache.v].map((t) => t.toArray()));
    kept.forEach((k, i) => {
      const row = after[i].length / 3;
      assert.deepEqual(
        Array.from(k),
        Array.from(after[i].slice(row, 2 * row)),
        `${be.name} tensor ${i} kept`,
      );
      assert.deepEqual(cache.k[0].shape, [1, 5, model.config.num_key_value_heads, model.config.head_dim]);
    });
    for (const t of [...cache.k, ...cache.v]) t.dispose();
    model.dispose();
  }
});

Deno.test("beam options are validated with one clear error each", async () => {
  const be = await cpu();
  const model = tiny(be);
  const p = [[1, 2]];
  const fails = async (o: GenerateOptions, cls: ErrorConstructor, re: RegExp) => {
    await assert.rejects(() => generate(model, p, { max_new_tokens: 2, ...o }), (e: Error) => {
      assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    });
  };
  await fails(
    { num_beams: 2, num_return_sequences: 3 },
    RangeError,
    /num_return_sequences: 3 exceeds num_beams 2/,
  );
  await fails({ num_beams: 0 }, RangeError, /num_beams: must be >= 1, got 0/);
  await fails({ num_beams: 1.5 }, TypeError, /num_beams: must be an integer, got 1.5/);
  await fails({ num_return_sequences: 2 }, RangeError, /num_return_sequences: 2 needs beam search/);
  await fails(
    { num_beams: 2, do_sample: true },
    RangeError,
    /num_beams: 2 with do_sample true \(beam sampling\) is not implemented/,
  );
  await fails(
    { early_stopping: "sometimes" as never },
    TypeError,
    /early_stopping: must be true, false or "never"/,
  );
  await fails({ length_penalty: Infinity }, RangeError, /length_penalty: must be a finite number/);
  await fails({ no_repeat_ngram_size: -1 }, RangeError, /no_repeat_ngram_size: must be >= 0, got -1/);
  await fails(
    { num_beams: 2, stop_strings: "x", tokenizer: { decode: () => "" } as never },
    RangeError,
    /stop_strings: are not supported with num_beams 2/,
  );
  await fails(
    { num_beams: 2, onToken: () => {} },
    RangeError,
    /onToken: streaming cannot be used with num_beams 2/,
  );
  await assert.rejects(
    () => beamSearch(model, p, { num_beams: 1 }),
    /num_beams: beam search needs num_beams >= 2, got 1/,
  );
  await fails(
    { num_beams: 0, num_return_sequences: 0, length_penalty: NaN },
    TypeError,
    /3 problems/,
  );
  model.dispose();
});

Deno.test("loadGenerationConfig() reads the beam search keys", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const beams = {
      num_beams: 4,
      length_penalty: 0.6,
      early_stopping: "never",
      no_repeat_ngram_size: 3,
      num_return_sequences: 2,
    };
    await Deno.writeTextFile(
      `${tmp}/generation_config.json`,
      JSON.stringify({ ...beams, transformers_version: "4.47.0" }),
    );
    assert.deepEqual(await loadGenerationConfig(tmp), beams);
    await Deno.writeTextFile(
      `${tmp}/generation_config.json`,
      JSON.stringify({ num_beams: 2, num_return_sequences: 3, early_stopping: 1 }),
    );
    await assert.rejects(() => loadGenerationConfig(tmp), /early_stopping: must be true, false or "never"/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
