/**
 * evaluation/generation_eval.ts: fairseq's max_len_a / max_len_b cap each row at its own
 * `floor(a * prompt_tokens + b)` new tokens, whatever the batch it is generated in.
 */
import { generatePredictions } from "../../evaluation/generation_eval.ts";
import { generate } from "../../models/generate.ts";
import { presetConfig } from "../../models/config.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { Transformer } from "../../models/transformer.ts";
import { assert } from "../_assert.ts";
import { cpu } from "../_check.ts";

const TEXT = "This package provides a tool for the library.\nDieses Paket enthält ein Werkzeug.\n";

Deno.test("generatePredictions({ max_len_a, max_len_b }) cuts each row at a * its prompt length + b new tokens", async () => {
  const tok = await trainBpeTokenizer([TEXT.repeat(20)], { vocab_size: 300 });
  const model = Transformer.init(presetConfig("tiny", { vocab_size: 300 }), await cpu(), { seed: 5 });
  // prompts of 1, 2, 4, 6 and 9 tokens; no EOS, so every row runs to its limit
  const prompts = [[5], [7, 8], [9, 10, 11, 12], [13, 14, 15, 16, 17, 18], [
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    28,
  ]];
  const gen = { eos_token_id: null, first_line: false } as const;
  const cases = [
    { max_len_a: 0.5, max_len_b: 1, max_new_tokens: 12 }, // limits 1, 2, 3, 4, 5
    { max_len_a: 1.5, max_len_b: 2, max_new_tokens: 9 }, // 3, 5, 8, then max_new_tokens 9, 9
  ];
  for (const c of cases) {
    // batches of 2 and of all 5 mix prompt lengths (the batch runs to its longest row's limit)
    for (const batch_size of [2, 5]) {
      const got = await generatePredictions(model, tok, prompts, { ...gen, ...c, batch_size });
      for (let i = 0; i < prompts.length; i++) {
        const limit = Math.min(c.max_new_tokens, Math.floor(c.max_len_a * prompts[i].length + c.max_len_b));
        const alone = await generate(model, [prompts[i]], { eos_token_id: null, max_new_tokens: limit });
        assert.equal(alone.tokens[0].length, limit);
        const want = tok.decode(alone.tokens[0], { skip_special_tokens: true }).trim();
        assert.equal(got[i], want, `a ${c.max_len_a} b ${c.max_len_b} batch ${batch_size} prompt ${i}`);
      }
    }
  }
  // off by default: every row runs to max_new_tokens
  const full = await generatePredictions(model, tok, prompts, { ...gen, max_new_tokens: 6 });
  const alone = await generate(model, [prompts[0]], { eos_token_id: null, max_new_tokens: 6 });
  assert.equal(full[0], tok.decode(alone.tokens[0], { skip_special_tokens: true }).trim());
  await assert.rejects(
    () => generatePredictions(model, tok, prompts, { max_len_b: 4 }),
    /Cannot generate: max_len_b 4 needs max_len_a/,
  );
  await assert.rejects(
    () => generatePredictions(model, tok, prompts, { num_beams: 2, num_return_sequences: 2 }),
    /num_return_sequences 2 asks for more than the one prediction a prompt gets/,
  );
  await assert.rejects(
    () => generatePredictions(model, tok, prompts, { max_len_a: -1 }),
    /Cannot generate: max_len_a must be a number >= 0 or null, got -1/,
  );
  for (const batch_size of [0, -1, NaN]) { // 0 once said "a non-empty list of prompts", -1 ran n - 1 first
    await assert.rejects(
      () => generatePredictions(model, tok, prompts, { batch_size }),
      /Cannot generate predictions: batch_size .* is not an integer >= 1/,
    );
  }
  model.dispose();
});

Deno.test("generatePredictions() reads generation_config's eos_token_id and max_new_tokens (the cap under max_len_a)", async () => {
  const tok = await trainBpeTokenizer([TEXT.repeat(20)], { vocab_size: 300 });
  const model = Transformer.init(presetConfig("tiny", { vocab_size: 300 }), await cpu(), { seed: 5 });
  const prompt = [5, 6, 7];
  const free = await generate(model, [prompt], { eos_token_id: null, max_new_tokens: 8 });
  const stop = free.tokens[0][0]; // the first new token, made the stop id
  const text = (ids: number[]) => tok.decode(ids, { skip_special_tokens: true }).trim();
  const predict = (generation_config: Record<string, number>) =>
    generatePredictions(model, tok, [prompt], { max_new_tokens: 8, first_line: false, generation_config });
  assert.equal(
    (await predict({ eos_token_id: stop }))[0],
    text([stop]),
    "stopped at generation_config's eos_token_id",
  );
  assert.equal((await predict({}))[0], text(free.tokens[0]), "the tokenizer's end of text never comes");
  const [capped] = await generatePredictions(model, tok, [prompt], {
    max_len_a: 3,
    first_line: false,
    eos_token_id: null,
    generation_config: { max_new_tokens: 2 },
  });
  assert.equal(capped, text(free.tokens[0].slice(0, 2)), "max_len_a's limit stays under max_new_tokens 2");
  // without the option, the model's own generation config (its folder's generation_config.json), as
  // generate() reads it: its eos_token_id had given way to the tokenizer's EOS, its max_new_tokens to none
  model.generation_config = { eos_token_id: stop };
  const own = await generatePredictions(model, tok, [prompt], { max_new_tokens: 8, first_line: false });
  assert.notEqual(text([stop]), text(free.tokens[0]));
  assert.deepEqual(own, [text([stop])], "stopped at the model's own eos_token_id");
  model.generation_config = { max_new_tokens: 2, eos_token_id: null };
  const [short] = await generatePredictions(model, tok, [prompt], { max_len_a: 3, first_line: false });
  assert.equal(
    short,
    text(free.tokens[0].slice(0, 2)),
    "the model's own max_new_tokens caps max_len_a's limit",
  );
  model.dispose();
});
