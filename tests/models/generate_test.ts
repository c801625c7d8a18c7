/**
 * generate(): fixture greedy tokens on every backend, KV-cache decode == full recompute (greedy and
 * seeded sampling), left-padded batches == single prompts, stops, streaming, seeds, processors
 * against hand-computed values, generation_config.json, and input errors.
 */
import { noGrad } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { generate, type GenerateOptions } from "../../models/generate.ts";
import { ignoredFlags, loadGenerationConfig } from "../../models/generation_config.ts";
import {
  applyRepetitionPenalty,
  applyTemperature,
  argmax,
  bannedNgramTokens,
  sample,
  softmaxRow,
  topKFilter,
  topPFilter,
} from "../../models/logits_process.ts";
import { mulberry32 } from "../../util/random.ts";
import { loadModel } from "../../models/pretrained.ts";
import { saveModel } from "../../models/save.ts";
import { readSafetensors } from "../../models/formats/safetensors.ts";
import type { Tokenizer } from "../../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../../models/transformer.ts";
import { assert, assertAllClose, FIXTURE_ARCHES, SHARED } from "../_assert.ts";
import { backends } from "../_check.ts";

const dir = (arch: string) => `${SHARED}/fixtures/hf-reference/${arch}`;

async function cases(arch: string) {
  const { tensors } = await readSafetensors(`${dir(arch)}/cases.safetensors`);
  const geti = (n: string) => Array.from(tensors.get(n)!.data as BigInt64Array, (x) => Number(x));
  const ids = geti("input_ids"), mask = geti("attention_mask");
  const row1 = ids.slice(16, 32).filter((_, t) => mask[16 + t] === 1);
  return { prompt: geti("greedy_prompt"), greedy: geti("greedy_tokens"), row0: ids.slice(0, 16), row1 };
}

/** Assert that `fn` rejects with an instance of `cls` whose message matches `re`. */
async function fails(
  fn: () => Promise<unknown>,
  cls: ErrorConstructor | ((e: Error) => boolean),
  re?: RegExp,
) {
  await assert.rejects(fn, (e: Error) => {
    if (!re) return (cls as (e: Error) => boolean)(e);
    assert.ok(e instanceof (cls as ErrorConstructor), `${e.name}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

/** A character-per-id tokenizer (A..Z cycling) for stop-string tests. */
const letters = {
  decode: (ids: ArrayLike<number>) => Array.from(ids, (i) => String.fromCharCode(65 + (i % 26))).join(""),
} as unknown as Tokenizer;

/** The decode loop without a cache: the whole sequence is recomputed at every step. */
async function noCacheLoop(model: Transformer, prompt: number[], n: number, o: GenerateOptions) {
  const V = model.config.vocab_size, be = model.backend;
  const rng = mulberry32(o.seed ?? 0);
  const seq = [...prompt], out: number[] = [];
  for (let s = 0; s < n; s++) {
    const ids = be.fromArray(seq, [1, seq.length], "i32");
    const logits = noGrad(() => model.forward(ids));
    const all = await logits.toArray() as Float32Array;
    ids.dispose();
    logits.dispose();
    let row = applyRepetitionPenalty(all.slice((seq.length - 1) * V), seq, o.repetition_penalty ?? 1);
    let tok: number;
    if (!o.do_sample) tok = argmax(row);
    else {
      row = topPFilter(topKFilter(applyTemperature(row, o.temperature ?? 1), o.top_k ?? 50), o.top_p ?? 1);
      tok = sample(softmaxRow(row), rng);
    }
    seq.push(tok);
    out.push(tok);
  }
  return out;
}

for (const arch of FIXTURE_ARCHES) {
  Deno.test(`generate() reproduces the ${arch} fixture's greedy tokens on every backend`, async () => {
    const { prompt, greedy } = await cases(arch);
    for (const be of await backends()) {
      const model = await loadModel(dir(arch), { backend: be });
      const r = await generate(model, [prompt], { max_new_tokens: 8 });
      assert.deepEqual(r.tokens, [greedy], `${arch} ${be.name}`);
      assert.deepEqual(r.finish_reason, ["length"]);
      model.dispose();
    }
  });

  Deno.test(`generate() with the KV cache equals full recompute on ${arch} (greedy and seeded sampling)`, async () => {
    const { prompt } = await cases(arch);
    for (const be of await backends()) {
      const model = await loadModel(dir(arch), { backend: be });
      const settings: GenerateOptions[] = [
        { repetition_penalty: 1.3 },
        { do_sample: true, seed: 11, temperature: 1.5, top_k: 40, top_p: 0.9, repetition_penalty: 1.1 },
      ];
      for (const o of settings) {
        const want = await noCacheLoop(model, prompt, 6, o);
        const got = await generate(model, [prompt], { ...o, max_new_tokens: 6, eos_token_id: null });
        assert.deepEqual(got.tokens[0], want, `${arch} ${be.name} ${JSON.stringify(o)}`);
      }
      model.dispose();
    }
  });

  Deno.test(`generate() on a left-padded batch equals each ${arch} prompt alone`, async () => {
    const { row0, row1 } = await cases(arch);
    for (const be of await backends()) {
      const model = await loadModel(dir(arch), { backend: be });
      const o = { max_new_tokens: 6, eos_token_id: null };
      const both = await generate(model, [row1, row0], o);
      const a = await generate(model, [row1], o), b = await generate(model, [row0], o);
      assert.deepEqual(both.tokens, [a.tokens[0], b.tokens[0]], `${arch} ${be.name}`);
      model.dispose();
    }
  });
}

Deno.test("generate() reads back each step's tokens when greedy, the last position's logits [B, V] when sampling", async () => {
  const { row0, row1 } = await cases("llama");
  for (const be of await backends()) {
    const model = await loadModel(dir("llama"), { backend: be });
    const sizes: number[] = [];
    const spy = be as Backend & { read: Backend["read"] };
    const read = spy.read.bind(be);
    spy.read = (t) => (sizes.push(t.size), read(t));
    try {
      // greedy: the argmax on the device, [B] ids read back per step
      await generate(model, [row0, row1], { max_new_tokens: 3 });
      assert.deepEqual(sizes.splice(0), [2, 2, 2], be.name);
      // a logits processor needs the host: [B, V] per step, never [B, T, V]
      await generate(model, [row0, row1], { max_new_tokens: 3, repetition_penalty: 1.5 });
      assert.deepEqual(sizes.splice(0), [2 * 256, 2 * 256, 2 * 256], be.name);
    } finally {
      spy.read = read;
    }
    model.dispose();
  }
});

Deno.test("generate() greedy on the device picks the tokens the host argmax picks, ties to the first", async () => {
  const { row0, row1 } = await cases("llama");
  for (const be of await backends()) {
    const model = await loadModel(dir("llama"), { backend: be });
    // repetition_penalty 1 + 1e-9 changes no logit's argmax here but sends the choice to the host
    const device = await generate(model, [row0, row1], { max_new_tokens: 6, eos_token_id: null });
    const host = await generate(model, [row0, row1], {
      max_new_tokens: 6,
      eos_token_id: null,
      repetition_penalty: 1 + 1e-9,
    });
    assert.deepEqual(device.tokens, host.tokens, be.name);
    model.dispose();
  }
});

Deno.test("generate() stops a row at an EOS id, pads it and keeps the other row going", async () => {
  const { prompt, greedy, row1 } = await cases("llama"); // greedy = 89, 234, 234, 234, 242, ...
  for (const be of await backends()) {
    const model = await loadModel(dir("llama"), { backend: be });
    const alone = await generate(model, [row1], { max_new_tokens: 5, eos_token_id: null });
    assert.deepEqual(alone.tokens, [[147, 147, 147, 147, 147]]);
    const steps: (number | null)[][] = [];
    const r = await generate(model, [prompt, row1], {
      max_new_tokens: 5,
      eos_token_id: [7, 234], // a list, as Llama 3 configs have
      onToken: (t, step) => void steps.push([step, ...t]),
    });
    assert.deepEqual(r.tokens, [greedy.slice(0, 2), alone.tokens[0]]);
    assert.deepEqual(r.finish_reason, ["eos_token", "length"]);
    assert.deepEqual(steps.map((s) => s[0]), [0, 1, 2, 3, 4]);
    assert.deepEqual(steps.map((s) => s[1]), [89, 234, null, null, null]);
    assert.deepEqual(steps.map((s) => s[2]), alone.tokens[0]);
    // all rows stopped: the loop ends early
    const early = await generate(model, [prompt], { max_new_tokens: 8, eos_token_id: 234 });
    assert.deepEqual(early.tokens, [[89, 234]]);
    model.dispose();
  }
});

Deno.test("generate() greedy drops stopped rows from the batch once half have stopped, same tokens as each prompt alone", async () => {
  // ten prompts; with these EOS ids five rows stop by step 1, row 0 at step 4, four run to the end
  const prompts = [
    [183, 12],
    [117, 21, 193],
    [123, 124, 43, 68],
    [141, 51, 23, 181, 122],
    [201, 222],
    [
      83,
      175,
      74,
    ],
    [171, 134, 210, 137],
    [5, 222, 80, 237, 195],
    [108, 181],
    [41, 94, 183],
  ];
  const eos = [13, 16, 140, 162, 9];
  for (const be of await backends()) {
    const model = await loadModel(dir("llama"), { backend: be });
    const want: number[][] = [];
    for (const p of prompts) {
      const [row] = (await generate(model, [p], { max_new_tokens: 12, eos_token_id: null })).tokens;
      const at = row.findIndex((t) => eos.includes(t));
      want.push(at < 0 ? row : row.slice(0, at + 1));
    }
    assert.deepEqual(
      want.map((r) => r.length),
      [5, 12, 1, 1, 2, 2, 2, 12, 12, 12],
      `${be.name}: the fixture's stops`,
    );
    const sizes: number[] = [];
    const spy = be as Backend & { read: Backend["read"] };
    const read = spy.read.bind(be);
    spy.read = (t) => (sizes.push(t.size), read(t));
    try {
      const r = await generate(model, prompts, { max_new_tokens: 12, eos_token_id: eos });
      assert.deepEqual(r.tokens, want, be.name);
      assert.deepEqual(r.finish_reason.map((f) => f === "eos_token"), want.map((w) => w.length < 12));
    } finally {
      spy.read = read;
    }
    // ten rows read per step until rows 2-6 are known to have stopped (after step 1), then five
    assert.deepEqual(sizes, [10, 10, 10, ...Array(9).fill(5)], be.name);
    model.dispose();
  }
});

Deno.test("generate() stop_strings end a row and are trimmed from the text", async () => {
  const { prompt } = await cases("llama");
  const be = (await backends())[0];
  const model = await loadModel(dir("llama"), { backend: be });
  // greedy 89 234 234 234 242 16 194 220 decodes to "LAAAIQMM" with the letters tokenizer
  const r = await generate(model, [prompt], {
    max_new_tokens: 8,
    tokenizer: letters,
    stop_strings: ["AI", "QM"],
  });
  assert.deepEqual(r.tokens, [[89, 234, 234, 234, 242]]);
  assert.deepEqual(r.text, ["LAA"]);
  assert.deepEqual(r.finish_reason, ["stop_sequence"]);
  const full = await generate(model, [prompt], { max_new_tokens: 8, tokenizer: letters, stop_strings: "Z" });
  assert.deepEqual(full.text, ["LAAAIQMM"]);
  assert.deepEqual(full.finish_reason, ["length"]);
  // a stop string begun by the prompt and ended by a new token stops the row, as HF's StopStringCriteria
  // (which reads the whole sequence) does; it had run on: "XL" is the prompt's last letter and 89's
  const last = letters.decode([prompt.at(-1)!]);
  const across = await generate(model, [prompt], {
    max_new_tokens: 8,
    tokenizer: letters,
    stop_strings: `${last}L`,
  });
  assert.deepEqual([across.tokens, across.text, across.finish_reason], [[[89]], [""], ["stop_sequence"]]);
  // ... but the prompt alone holding it does not
  const inPrompt = letters.decode(prompt.slice(-2));
  const r2 = await generate(model, [prompt], {
    max_new_tokens: 3,
    tokenizer: letters,
    stop_strings: inPrompt,
  });
  assert.deepEqual(r2.finish_reason, ["length"]);
  model.dispose();
});

Deno.test("generate() streams tokens in step order and ends the streamer once", async () => {
  const { prompt, greedy } = await cases("gpt2");
  const be = (await backends())[0];
  const model = await loadModel(dir("gpt2"), { backend: be });
  const log: string[] = [];
  await generate(model, [prompt], {
    max_new_tokens: 4,
    onToken: (t, step) => void log.push(`token ${step} ${t}`),
    streamer: { put: (t) => void log.push(`put ${t}`), end: () => void log.push("end") },
  });
  const want = greedy.slice(0, 4).flatMap((t, i) => [`token ${i} ${t}`, `put ${t}`]);
  assert.deepEqual(log, [...want, "end"]);
  model.dispose();
});

Deno.test("generate() with a seed is reproducible; another seed samples another sequence", async () => {
  const { prompt } = await cases("qwen2");
  const be = (await backends())[0];
  const model = await loadModel(dir("qwen2"), { backend: be });
  const o = { max_new_tokens: 12, do_sample: true, temperature: 2, top_k: 0, eos_token_id: null };
  const a = await generate(model, [prompt], { ...o, seed: 1 });
  const b = await generate(model, [prompt], { ...o, seed: 1 });
  const c = await generate(model, [prompt], { ...o, seed: 2 });
  assert.deepEqual(a.tokens, b.tokens);
  assert.notDeepEqual(a.tokens, c.tokens);
  model.dispose();
});

Deno.test("generate() honours generation_config under the options and HF's max_length default", async () => {
  const { prompt, greedy } = await cases("llama");
  const be = (await backends())[0];
  const model = await loadModel(dir("llama"), { backend: be });
  const gc = await loadGenerationConfig(dir("llama"));
  assert.deepEqual(gc, { bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });
  // no max_new_tokens, no max_length asked for: HF's default length is 20 new tokens
  // (_prepare_generated_length; it had been 20 in all, 4 after the 16-token prompt)
  const [twenty] = (await generate(model, [prompt], { generation_config: gc })).tokens;
  assert.deepEqual([twenty.length, twenty.slice(0, greedy.length)], [20, greedy]);
  // an asked-for max_length counts the prompt
  assert.deepEqual((await generate(model, [prompt], { max_length: 20 })).tokens, [greedy.slice(0, 4)]);
  // nulls are unset, as HF's None (transformers 5 writes them): top_p null had kept one token
  const nulls = { do_sample: null, top_p: null, temperature: null, max_new_tokens: 4 } as never;
  assert.deepEqual((await generate(model, [prompt], nulls)).tokens, [greedy.slice(0, 4)]);
  // loadModel's folder brings its generation_config.json, as HF's model.generation_config (the library
  // had ignored it; only the CLI read it): an eos list there stops the row
  const copy = await Deno.makeTempDir();
  for (const f of ["config.json", "model.safetensors"]) {
    await Deno.copyFile(`${dir("llama")}/${f}`, `${copy}/${f}`);
  }
  await Deno.writeTextFile(
    `${copy}/generation_config.json`,
    JSON.stringify({ eos_token_id: [2, greedy[1]] }),
  );
  const own = await loadModel(copy, { backend: be });
  assert.deepEqual((await generate(own, [prompt], { max_new_tokens: 8 })).tokens, [greedy.slice(0, 2)]);
  assert.deepEqual(own.generation_config, { eos_token_id: [2, greedy[1]] });
  own.dispose();
  await Deno.remove(copy, { recursive: true });
  // HF's output objects are not returned: asking for them is refused (it had been dropped)
  await fails(
    () => generate(model, [prompt], { output_scores: true, return_dict_in_generate: true } as never),
    RangeError,
    /output_scores: true is not supported by fledge's generate\(\)/,
  );
  const stop = { eos_token_id: 234, max_new_tokens: 8 };
  assert.deepEqual((await generate(model, [prompt], { generation_config: stop })).tokens, [[89, 234]]);
  const over = await generate(model, [prompt], { generation_config: stop, eos_token_id: null });
  assert.deepEqual(over.tokens, [greedy]);
  model.dispose();
});

Deno.test("generate() takes an old config.json's generation settings when there is no generation_config.json", async () => {
  // HF's GenerationConfig.from_model_config: a checkpoint saved before transformers 4.26 keeps them in
  // config.json (they had been dropped without a word: 20 new tokens, no penalty)
  const { prompt } = await cases("llama");
  const be = (await backends())[0];
  const copy = await Deno.makeTempDir(), out = await Deno.makeTempDir();
  try {
    await Deno.copyFile(`${dir("llama")}/model.safetensors`, `${copy}/model.safetensors`);
    const config = JSON.parse(await Deno.readTextFile(`${dir("llama")}/config.json`));
    const legacy = { max_length: 24, repetition_penalty: 1.5, top_k: 50, bad_words_ids: null };
    await Deno.writeTextFile(`${copy}/config.json`, JSON.stringify({ ...config, ...legacy }));
    assert.deepEqual(await loadGenerationConfig(copy), {
      max_length: 24,
      repetition_penalty: 1.5,
      top_k: 50,
    });
    const model = await loadModel(copy, { backend: be });
    const want = await generate(model, [prompt], {
      generation_config: {},
      max_new_tokens: 8,
      repetition_penalty: 1.5,
    });
    assert.deepEqual((await generate(model, [prompt])).tokens, want.tokens); // 24 - 16 new tokens
    await saveModel(model, out); // the saved generation_config.json carries them
    assert.equal(
      JSON.parse(await Deno.readTextFile(`${out}/generation_config.json`)).repetition_penalty,
      1.5,
    );
    model.dispose();
    // one fledge cannot honour is refused, as in a generation_config.json
    await Deno.writeTextFile(`${copy}/config.json`, JSON.stringify({ ...config, num_beam_groups: 2 }));
    await fails(
      () => loadGenerationConfig(copy),
      RangeError,
      /config\.json: 1 problem[^]*num_beam_groups: 2/,
    );
  } finally {
    await Deno.remove(copy, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("generate() rejects bad input with errors that list every problem", async () => {
  const be = (await backends())[0];
  const model = await loadModel(dir("llama"), { backend: be });
  const p = [[5, 6, 7]];
  await fails(() => generate(model, [[]]), RangeError, /input\[0\]: is an empty prompt/);
  await fails(() => generate(model, []), TypeError, /non-empty list of prompts/);
  await fails(() => generate(model, [5, 6] as never), TypeError, /wrap a single prompt as \[ids\]/);
  await fails(
    () => generate(model, [[5, 300]]),
    RangeError,
    /id 300 is outside the vocabulary \[0, 256\)/,
  );
  await fails( // "use at most 0 new tokens", which max_new_tokens >= 1 refuses
    () => generate(model, [Array.from({ length: 128 }, (_, i) => i % 200)], { max_new_tokens: 1 }),
    RangeError,
    /prompt 128 \+ max_new_tokens 1 exceeds the model's max_position_embeddings 128; the prompt alone fills them: shorten it to under 128 tokens/,
  );
  await fails(
    () => generate(model, p, { max_new_tokens: 126 }),
    RangeError,
    /prompt 3 \+ max_new_tokens 126 exceeds the model's max_position_embeddings 128; use at most 125/,
  );
  // HF takes top_p 0 (its TopPLogitsWarper keeps the likeliest token) and seeds up to 2^32 - 1 here
  assert.deepEqual(
    (await generate(model, p, { do_sample: true, top_p: 0, max_new_tokens: 3, seed: 1 })).tokens,
    (await generate(model, p, { max_new_tokens: 3 })).tokens,
  );
  await fails(
    () => generate(model, p, { do_sample: true, max_new_tokens: 2, seed: 2 ** 32 + 1 }),
    RangeError,
    /seed: must be an integer in \[0, 2\^32 - 1\], got 4294967297/,
  );
  await fails(
    () => generate(model, p, { do_sample: true, temperature: -1, top_p: 1.5, max_new_tokens: 0 }),
    (e: Error) =>
      e instanceof RangeError && /3 problems/.test(e.message) &&
      /temperature: must be >= 0/.test(e.message) &&
      /top_p: must be in \[0, 1\]/.test(e.message) && /max_new_tokens: must be >= 1/.test(e.message),
  );
  await fails(
    () => generate(model, p, { do_sample: true, temperature: 0 }),
    RangeError,
    /temperature: must be > 0 when do_sample is true; for greedy decoding set do_sample false/,
  );
  await fails(
    () => generate(model, p, { stop_strings: ["x"] }),
    TypeError,
    /stop_strings: need a tokenizer/,
  );
  await fails(
    () => generate(model, p, { seed: -1 }),
    RangeError,
    /seed: must be an integer in \[0, 2\^32 - 1\]/,
  );
  await fails(() => generate(model, p, { eos_token_id: [2, 999] }), RangeError, /eos_token_id\[1\]/);
  model.dispose();
});

Deno.test("generate() warns once, as transformers does, about sampling and beam flags its mode ignores", async () => {
  const cfg = (o: Record<string, unknown>) => ({ do_sample: false, num_beams: 1, ...o });
  assert.deepEqual(ignoredFlags(cfg({ temperature: 1, top_k: 50, top_p: 1 }), {}), []); // HF's defaults
  assert.match(
    ignoredFlags(cfg({ temperature: 0.7, top_k: 50 }), { temperature: 0.7 })[0],
    /^temperature 0\.7 applies only when sampling.*unset it$/,
  );
  assert.deepEqual(ignoredFlags(cfg({ temperature: 0.7, do_sample: true }), { temperature: 0.7 }), []);
  // a model's generation_config samples; the caller chose greedy and set no sampling flag: no warning
  assert.deepEqual(ignoredFlags(cfg({ temperature: 0.7, top_p: 0.8 }), { do_sample: false }), []);
  // ... but an inherited flag is named when the caller chose nothing, as HF's _should_warn
  assert.equal(ignoredFlags(cfg({ temperature: 0.7, top_p: 0.8 }), {}).length, 1);
  assert.match(
    ignoredFlags(cfg({ length_penalty: 0.6, early_stopping: true }), {})[0],
    /^length_penalty 0\.6, early_stopping true apply only to beam search.*unset them$/,
  );
  assert.deepEqual(ignoredFlags(cfg({ length_penalty: 0.6, num_beams: 2 }), {}), []);
  const { prompt } = await cases("llama");
  const model = await loadModel(dir("llama"), { backend: (await backends())[0] });
  const warn = console.warn, seen: string[] = [];
  console.warn = (m: string) => seen.push(m);
  try {
    for (let i = 0; i < 2; i++) await generate(model, [prompt], { max_new_tokens: 1, top_k: 3 });
    await generate(model, [prompt], { max_new_tokens: 1, top_k: 3, do_sample: true, seed: 1 });
  } finally {
    console.warn = warn;
    model.dispose();
  }
  assert.deepEqual(seen, [
    "generate(): top_k 3 applies only when sampling, and do_sample is not true: set do_sample true or unset it",
  ]);
});

Deno.test("loadGenerationConfig() maps HF keys explicitly and rejects what it cannot honour", async () => {
  const tmp = await Deno.makeTempDir();
  const write = (o: unknown) => Deno.writeTextFile(`${tmp}/generation_config.json`, JSON.stringify(o));
  try {
    assert.deepEqual(await loadGenerationConfig(tmp), {}); // no file: nothing to add
    await write({
      do_sample: true,
      temperature: 0.7,
      top_p: 0.8,
      top_k: 20,
      repetition_penalty: 1.05,
      eos_token_id: [151645, 151643],
      num_beams: 1,
      use_cache: true,
      transformers_version: "4.37.0",
    });
    assert.deepEqual(await loadGenerationConfig(tmp), {
      do_sample: true,
      temperature: 0.7,
      top_p: 0.8,
      top_k: 20,
      repetition_penalty: 1.05,
      eos_token_id: [151645, 151643],
      num_beams: 1,
    });
    await write({ num_beam_groups: 2, top_kk: 3, top_p: 2 });
    await fails(() => loadGenerationConfig(tmp), (e: Error) => {
      const m = e.message;
      return e instanceof RangeError && m.includes(`${tmp}/generation_config.json: 3 problems`) &&
        /num_beam_groups: 2 is not supported by fledge's generate\(\); remove the key or set it to 1/.test(
          m,
        ) &&
        /top_kk: unknown generation key \(did you mean top_k\?\)/.test(m) &&
        /top_p: must be in \[0, 1\]/.test(m);
    });
    await Deno.writeTextFile(`${tmp}/generation_config.json`, "{ nope");
    await fails(() => loadGenerationConfig(tmp), SyntaxError, /generation_config\.json/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("logits processors match hand-computed values (HF semantics)", () => {
  // repetition penalty: positive / 2, negative * 2, unseen untouched, duplicates once
  assert.deepEqual([...applyRepetitionPenalty(Float32Array.of(4, -1, 3, 0.5), [0, 1, 0], 2)], [
    2,
    -2,
    3,
    0.5,
  ]);
  assert.deepEqual([...applyTemperature(Float32Array.of(1, -2, 0), 0.5)], [2, -4, 0]);
  // top-k keeps ties with the k-th value; 0 is off
  assert.deepEqual([...topKFilter(Float32Array.of(1, 3, 3, 2), 2)], [-Infinity, 3, 3, -Infinity]);
  assert.deepEqual([...topKFilter(Float32Array.of(1, 3, 3, 2), 0)], [1, 3, 3, 2]);
  // top-p over probabilities 0.5, 0.25, 0.125, 0.125 (logits ln p): smallest set with mass >= top_p
  const lp = Float32Array.from([0.5, 0.25, 0.125, 0.125], Math.log);
  const kept = (p: number) => [...topPFilter(lp, p)].map((x) => x !== -Infinity);
  assert.deepEqual(kept(0.5), [true, false, false, false]);
  assert.deepEqual(kept(0.6), [true, true, false, false]);
  assert.deepEqual(kept(0.75), [true, true, false, false]);
  assert.deepEqual(kept(0.8), [true, true, true, false]);
  assert.deepEqual(kept(0.01), [true, false, false, false]); // at least one
  assert.deepEqual(kept(1), [true, true, true, true]);
  // what HF's warpers refuse when built, these refuse when called (they once inverted or ignored it)
  const row = Float32Array.of(1, 2, 3);
  for (
    const [f, re] of [
      [() => applyTemperature(row, 0), /temperature must be a number > 0, got 0/],
      [() => applyTemperature(row, -1), /temperature must be a number > 0, got -1/],
      [() => topKFilter(row, 1.5), /top_k must be an integer >= 0, got 1.5/],
      [() => topKFilter(row, -1), /top_k must be an integer >= 0, got -1/],
      [() => topPFilter(row, -1), /top_p must be in \[0, 1\], got -1/],
      [() => topPFilter(row, NaN), /top_p must be in \[0, 1\], got NaN/],
      [() => applyRepetitionPenalty(row, [0], -2), /repetition_penalty must be a number > 0, got -2/],
      [() => bannedNgramTokens([1, 2, 1], 1.5), /no_repeat_ngram_size must be an integer >= 0, got 1.5/],
    ] as const
  ) assert.throws(f, { name: "RangeError", message: re });
  assertAllClose(softmaxRow(Float32Array.of(0, Math.log(3), -Infinity)), [0.25, 0.75, 0], { atol: 1e-7 });
  assert.equal(argmax(Float32Array.of(-1, 2, 2)), 1);
  // sample: first index whose cumulative probability exceeds u; zeros never drawn
  const pr = [0.2, 0, 0.5, 0.3];
  assert.deepEqual([0, 0.19, 0.2, 0.69, 0.7, 0.999999].map((u) => sample(pr, () => u)), [0, 0, 2, 2, 3, 3]);
  assert.equal(sample([0.5, 0.4999, 0], () => 0.99999), 1); // rounding gap falls on the last non-zero
  const r1 = mulberry32(42), r2 = mulberry32(42);
  const xs = Array.from({ length: 5 }, r1);
  assert.deepEqual(xs, Array.from({ length: 5 }, r2));
  assert.ok(xs.every((x) => x >= 0 && x < 1) && new Set(xs).size === 5);
});
