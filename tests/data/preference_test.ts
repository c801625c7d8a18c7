import { join } from "node:path";
import { assert } from "../_assert.ts";
import {
  buildPreferenceExamples,
  loadPreferenceExamples,
  PreferenceDataset,
  type PreferenceExample,
} from "../../data/preference.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";

/** One id per character; "$" (36) is EOS, "^" (94) is BOS. */
const chars = {
  encode: (s: string) => [...s].map((c) => c.charCodeAt(0)),
  decode: (ids: ArrayLike<number>) => String.fromCharCode(...Array.from(ids)),
  applyChatTemplate: () => ({ text: "", ids: [] }),
  chat_template: null,
  special_token_ids: [36, 94],
  eos_token_id: 36,
  bos_token_id: 94,
  idToToken: (id: number) => String.fromCharCode(id),
  tokenToId: (t: string) => t.charCodeAt(0),
};
const text = (ids: Int32Array) => String.fromCharCode(...ids);
/** The completion of a sequence: the tokens whose label is not -100. */
const completion = (ids: Int32Array, labels: Int32Array) => text(ids.filter((_, t) => labels[t] !== -100));

const QWEN2 =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

Deno.test("buildPreferenceExamples() tokenizes text rows into prompt+chosen and prompt+rejected with completion masks", () => {
  const r = buildPreferenceExamples([
    { prompt: "Q:", chosen: "yes", rejected: "no$" },
    { chosen: "The sky is blue.", rejected: "The sky is green." }, // implicit prompt (TRL's example)
  ], chars);
  const [a, b] = r.examples;
  assert.equal(text(a.chosen_input_ids), "Q:yes$");
  assert.equal(text(a.rejected_input_ids), "Q:no$", "EOS appended only when missing");
  assert.deepEqual([...a.chosen_labels], [-100, -100, 121, 101, 115, 36]);
  assert.equal(completion(a.rejected_input_ids, a.rejected_labels), "no$");
  assert.equal(text(b.chosen_input_ids.subarray(0, 10)), "The sky is");
  assert.equal(completion(b.chosen_input_ids, b.chosen_labels), " blue.$");
  assert.equal(completion(b.rejected_input_ids, b.rejected_labels), " green.$");
  assert.deepEqual(r.formats, { standard: 2 });
  assert.equal(r.implicit_prompts, 1);
  assert.deepEqual([a.source, b.source], ["row 1", "row 2"]);
  assert.equal(r.num_tokens, 6 + 5 + 17 + 18);
});

Deno.test("buildPreferenceExamples() renders conversational rows with the chat template (explicit and implicit prompt)", async () => {
  const tok = await trainBpeTokenizer(
    Array(20).fill("What is two plus two? Four. Five. You are a helpful assistant. user assistant"),
    {
      vocab_size: 300,
      special_tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      chat_template: QWEN2,
    },
  );
  const prompt = [{ role: "user", content: "What is two plus two?" }];
  const chosen = [{ role: "assistant", content: "Four." }],
    rejected = [{ role: "assistant", content: "Five." }];
  const r = buildPreferenceExamples([
    { prompt, chosen, rejected },
    { chosen: [...prompt, ...chosen], rejected: [...prompt, ...rejected] },
  ], tok);
  assert.deepEqual(r.formats, { conversational: 2 });
  assert.equal(r.implicit_prompts, 1);
  const head = tok.applyChatTemplate(prompt, { add_generation_prompt: true }).ids;
  for (const e of r.examples) {
    assert.deepEqual([...e.chosen_input_ids], tok.applyChatTemplate([...prompt, ...chosen]).ids);
    assert.deepEqual([...e.rejected_input_ids], tok.applyChatTemplate([...prompt, ...rejected]).ids);
    assert.equal(e.chosen_labels.findIndex((y) => y !== -100), head.length);
    assert.equal(
      tok.decode(e.chosen_input_ids.filter((_, t) => e.chosen_labels[t] !== -100)),
      "Four.<|im_end|>\n",
    );
  }
});

Deno.test("buildPreferenceExamples() cuts prompts to their last max_prompt_length tokens (after BOS), sequences to max_length, and drops pairs with no completion left", () => {
  const bosChars = { ...chars, encode: (s: string) => [94, ...chars.encode(s)] };
  const rows = [
    { prompt: "abcdefgh", chosen: "XY", rejected: "Z" }, // prompt cut to "^fgh"
    { prompt: "ab", chosen: "0123456789", rejected: "Z" }, // chosen cut to max_length
    { prompt: "a", chosen: "1", rejected: "2" }, // untouched
  ];
  const r = buildPreferenceExamples(rows, bosChars, { max_prompt_length: 3, max_length: 8 });
  assert.equal(r.truncated_prompts, 1);
  assert.equal(r.truncated, 1);
  assert.equal(r.dropped, 0);
  assert.equal(text(r.examples[0].chosen_input_ids), "^fghXY$");
  assert.equal(text(r.examples[0].rejected_input_ids), "^fghZ$");
  assert.equal(completion(r.examples[0].chosen_input_ids, r.examples[0].chosen_labels), "XY$");
  assert.equal(text(r.examples[1].chosen_input_ids), "^ab01234");
  assert.equal(text(r.examples[2].chosen_input_ids), "^a1$");
  // The prompt alone fills max_length: nothing to compare, dropped and counted (as TRL drops it).
  const d = buildPreferenceExamples(rows, bosChars, { max_prompt_length: null, max_length: 6 });
  assert.equal(d.dropped, 1);
  assert.deepEqual(d.examples.map((e) => text(e.chosen_input_ids)), ["^ab012", "^a1$"]);
  assert.throws(
    () => buildPreferenceExamples(rows, chars, { max_length: 1 }),
    /max_length must be an integer >= 2/,
  );
});

Deno.test("buildPreferenceExamples() names the row and the field in one line for bad rows", async () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [
      { prompt: "p", chosen: "a" },
      /^Cannot build a preference pair from d\.jsonl:1: field "rejected" is missing \(columns: prompt, chosen\); preference rows need "prompt", "chosen" and "rejected"$/,
    ],
    [{ prompt: "p", rejected: "a" }, /d\.jsonl:1: field "chosen" is missing/],
    // no prompt to take from them: it had said "prompt" must be a non-empty list, of a row without one
    [
      {
        chosen: [{ role: "assistant", content: "a" }],
        rejected: [{ role: "assistant", content: "b" }],
      },
      /d\.jsonl:1: the row has no "prompt", and "chosen" and "rejected" start with different messages, .*add a "prompt" field/,
    ],
    // a null had been "missing (columns: prompt, chosen, rejected)", listing the field it called missing
    [
      { prompt: "p", chosen: "a", rejected: null },
      /d\.jsonl:1: field "rejected" is null \(in a CSV, an empty field\); give every row its rejected text or messages, or drop the row$/,
    ],
    // a null prompt (an empty CSV field) had switched the row to the answers' common start as its prompt
    [
      { prompt: null, chosen: "The answer is yes", rejected: "The answer is no" },
      /d\.jsonl:1: field "prompt" is null \(in a CSV, an empty field\); give every row its prompt, or drop the row$/,
    ],
    [
      { prompt: "p", chosen: "a", rejected: [] },
      /fields "prompt", "chosen", "rejected" must all be text or all be message lists, got text, text, a list/,
    ],
    [
      {
        prompt: [{ role: "user", content: "hi" }],
        chosen: [{ role: "robot", content: "a" }],
        rejected: [{ role: "assistant", content: "b" }],
      },
      /d\.jsonl:1: field "chosen\[0\]\.role" is "robot"/,
    ],
    [
      {
        prompt: [{ role: "user", content: "hi" }],
        chosen: [{ role: "assistant", content: "a" }],
        rejected: [{ role: "assistant" }],
      },
      /d\.jsonl:1: field "rejected\[0\]\.content" is missing/,
    ],
    [
      {
        prompt: [{ role: "user", content: "hi" }],
        chosen: [{ role: "assistant", content: "a" }],
        rejected: [{ role: "assistant", content: "b" }],
      },
      /d\.jsonl:1: the row is a conversation but the tokenizer has no chat_template/,
    ],
  ];
  for (const [row, re] of bad) {
    assert.throws(() => buildPreferenceExamples([row], chars, { source: "d.jsonl" }), (e: Error) => {
      assert.ok(e instanceof TypeError, `${e}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  }
  // Files: rows named file:line (blank lines counted).
  const dir = await Deno.makeTempDir();
  const path = join(dir, "pairs.jsonl");
  await Deno.writeTextFile(
    path,
    '{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "a", "chosen": "b"}\n',
  );
  await assert.rejects(() => loadPreferenceExamples(path, chars), {
    name: "TypeError",
    message: new RegExp(`^Cannot build a preference pair from ${path}:3: field "rejected" is missing`),
  });
  await Deno.writeTextFile(
    path,
    '{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "d", "chosen": "e", "rejected": "f"}\n',
  );
  const ok = await loadPreferenceExamples(path, chars);
  assert.deepEqual(ok.examples.map((e) => e.source), [`${path}:1`, `${path}:3`]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("PreferenceDataset collates chosen rows then rejected rows, right-padded, with shifted completion targets", () => {
  const ex = (c: number[], kc: number, r: number[], kr: number, source: string): PreferenceExample => ({
    chosen_input_ids: Int32Array.from(c),
    chosen_labels: Int32Array.from(c, (v, t) => (t < kc ? -100 : v)),
    rejected_input_ids: Int32Array.from(r),
    rejected_labels: Int32Array.from(r, (v, t) => (t < kr ? -100 : v)),
    source,
  });
  const ds = new PreferenceDataset([
    ex([1, 2, 3, 4], 2, [1, 2, 5], 2, "a"),
    ex([7, 8], 1, [7, 9, 9, 9, 9], 1, "b"),
  ], { pad_token_id: 0, source: "pairs" });
  assert.equal(ds.num_blocks, 2);
  assert.equal(ds.block_size, 5);
  assert.deepEqual([...ds.ids], [1, 2, 3, 4, 1, 2, 5, 7, 8, 7, 9, 9, 9, 9]);
  const b = ds.collate([1, 0]);
  assert.equal(b.T, 5);
  assert.deepEqual([...b.input_ids], [7, 8, 0, 0, 0, 1, 2, 3, 4, 0, 7, 9, 9, 9, 9, 1, 2, 5, 0, 0]);
  assert.deepEqual(
    [...b.targets],
    [8, -100, -100, -100, -100, -100, 3, 4, -100, -100, 9, 9, 9, 9, -100, -100, 5, -100, -100, -100],
  );
  assert.deepEqual([...b.completion_lengths], [1, 2, 4, 1]);
  assert.equal(ds.collate([0]).T, 4, "padded to the longest of the micro-batch");
  assert.throws(() => ds.collate([2]), /Cannot read pair 2 of pairs: it has 2 pairs/);
  const o = ds.order(0, 42);
  assert.deepEqual([...o].sort(), [0, 1]);
  assert.deepEqual([...ds.order(0, 42)], [...o]);
  const same = new PreferenceDataset([
    ex([1, 2, 3, 4], 2, [1, 2, 5], 2, "x"),
    ex([7, 8], 1, [7, 9, 9, 9, 9], 1, "y"),
  ], {
    pad_token_id: 0,
  });
  assert.equal(same.fingerprint(), ds.fingerprint());
  const other = new PreferenceDataset([
    ex([1, 2, 3, 4], 1, [1, 2, 5], 2, "a"),
    ex([7, 8], 1, [7, 9, 9, 9, 9], 1, "b"),
  ], {
    pad_token_id: 0,
  });
  assert.notEqual(other.fingerprint(), ds.fingerprint(), "another completion start is other data");
  assert.throws(
    () => new PreferenceDataset([], { pad_token_id: 0, source: "e.jsonl" }),
    /from e\.jsonl: there are none/,
  );
});
