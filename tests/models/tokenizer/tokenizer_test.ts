import { assert, SHARED } from "../../_assert.ts";
import { type BpeTokenizer, trainBpeTokenizer } from "../../../models/tokenizer/bpe.ts";
import { loadTokenizer, type Tokenizer } from "../../../models/tokenizer/tokenizer.ts";

const DEBIAN = `${SHARED}/datasets/debian`;
const FIELDS = ["text", "document", "summary", "en", "de"];

/** Every text field of one Debian train.jsonl (read in place, never copied). */
async function debianTexts(task: string): Promise<string[]> {
  const out: string[] = [];
  for (const line of (await Deno.readTextFile(`${DEBIAN}/${task}/train.jsonl`)).split("\n")) {
    if (!line) continue;
    const record = JSON.parse(line);
    for (const key of FIELDS) if (typeof record[key] === "string") out.push(record[key]);
  }
  return out;
}

const HARD: string[] = [
  "",
  " ",
  "   leading and trailing   ",
  "tabs\tand\r\nCRLF\n\n\nlines\u000b\u000c",
  "control \u0000\u0001\u001f\u007f\u0080\u009f chars",
  "emoji 🐈‍⬛ 👩🏽‍💻 🇩🇪 ❤️ 😀😀😀",
  "CJK 日本語のテキスト、中文文本，한국어 텍스트",
  "combining e\u0301 a\u0308 n\u0303\u0323 Z\u0351\u0352\u0353\u0354",
  "zero\u200bwidth\u200d joiner \ufeffBOM \u00a0nbsp \u2028\u2029 separators",
  "RTL: مرحبا بالعالم שלום עולם",
  "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 𠜎",
  "contractions: it's we'll they've I'm you'd don't 'S 'LL",
  "numbers 1234567890 3.14159 1e-9 ½ ² ٣ 四",
  "code: for (let i = 0; i < n; i++) { x += y[i] ** 2; } // done",
  "<|endoftext|>starts and ends<|endoftext|>",
  "half a special <|endoftext| and <|endof",
  " ".repeat(300) + "x" + "\n".repeat(200),
  "a".repeat(2000),
  "ab".repeat(700) + " " + "0123456789".repeat(80),
  "Ünïcödé Größe straße ÆØÅ æøå İı ǅ ﬁ",
];

/** Strings of random code points (no lone surrogates), seeded. */
function randomStrings(count: number, seed: number): string[] {
  let s = seed >>> 0;
  const rand = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const ranges = [[0x20, 0x7e], [0, 0x20], [0xa0, 0x2ff], [0x300, 0x36f], [0x4e00, 0x4fff], [
    0x1f300,
    0x1f64f,
  ], [
    0x10000,
    0x10ffff,
  ]];
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    let str = "";
    const len = 1 + Math.floor(rand() * 40);
    for (let i = 0; i < len; i++) {
      const [lo, hi] = ranges[Math.floor(rand() * ranges.length)];
      let cp = lo + Math.floor(rand() * (hi - lo + 1));
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
      str += String.fromCodePoint(cp);
    }
    out.push(str);
  }
  return out;
}

function assertSameIds(a: Tokenizer, b: Tokenizer, texts: string[], label: string): number {
  let checked = 0;
  for (const text of texts) {
    const x = a.encode(text), y = b.encode(text);
    if (x.length !== y.length || x.some((id, i) => id !== y[i])) {
      assert.fail(`${label}: ids differ for ${JSON.stringify(text.slice(0, 120))}\n ours ${x}\n hf   ${y}`);
    }
    checked++;
  }
  return checked;
}

// One trained tokenizer shared by the tests below: 4096 ids on a 2 MB subset of the Debian text.
let trained: BpeTokenizer | undefined;
let trainSeconds = 0;
async function getTrained(): Promise<BpeTokenizer> {
  if (!trained) {
    const texts = (await debianTexts("summarization")).slice(0, 6000);
    const t0 = performance.now();
    trained = await trainBpeTokenizer(texts, {
      vocab_size: 4096,
      special_tokens: ["<|endoftext|>", "<|pad|>"],
      pad_token: "<|pad|>",
    });
    trainSeconds = (performance.now() - t0) / 1000;
  }
  return trained;
}

Deno.test("trainBpeTokenizer() learns a 4096-id byte-level vocab on Debian text, fast and deterministic", async () => {
  const tok = await getTrained();
  const texts = (await debianTexts("summarization")).slice(0, 6000);
  const chars = texts.reduce((n, t) => n + t.length, 0);
  console.log(`trained 4096 ids on ${(chars / 1e6).toFixed(2)} M chars in ${trainSeconds.toFixed(2)} s`);
  assert.ok(trainSeconds < 20, `training took ${trainSeconds} s`);
  assert.equal(tok.vocab_size, 4096);
  assert.equal(tok.idToToken(0), "<|endoftext|>");
  assert.equal(tok.idToToken(1), "<|pad|>");
  assert.equal(tok.idToToken(2 + 0x41), "A");
  assert.equal(tok.idToToken(2 + 0x20), "Ġ");
  assert.deepEqual([tok.bos_token_id, tok.eos_token_id, tok.pad_token_id], [0, 0, 1]);
  assert.deepEqual(tok.special_token_ids, [0, 1]);
  // Frequent English words become single tokens.
  for (const word of ["Ġthe", "Ġand", "Ġpackage", "Ġlibrary"]) {
    assert.notEqual(tok.tokenToId(word), null, word);
  }
  // Same input, same merges.
  const again = await trainBpeTokenizer(texts.slice(0, 1000), { vocab_size: 600 });
  const again2 = await trainBpeTokenizer(texts.slice(0, 1000), { vocab_size: 600 });
  assert.deepEqual(again.spec.merges, again2.spec.merges);
  assert.equal(again.spec.merges.length, 600 - 257);
});

Deno.test("trainBpeTokenizer() accepts async iterables and stops at min_frequency", async () => {
  async function* gen() {
    yield "aaa bbb aaa bbb";
    yield "ccc";
  }
  const tok = await trainBpeTokenizer(gen(), { vocab_size: 1000, min_frequency: 2 });
  // Pairs seen at least twice: (a,a) (b,b) (Ġ,a)... ; nowhere near 1000 ids.
  assert.ok(tok.vocab_size < 270, `vocab_size ${tok.vocab_size}`);
  assert.equal(tok.decode(tok.encode("aaa bbb ccc")), "aaa bbb ccc");
  assert.deepEqual(tok.encode("aaa").map((id) => tok.idToToken(id)), ["aaa"]);
});

Deno.test("trainBpeTokenizer() lists every invalid option at once", async () => {
  await assert.rejects(
    () => trainBpeTokenizer(["x"], { vocab_size: 100, special_tokens: ["<a>", "<a>"], bos_token: "<s>" }),
    (e: Error) =>
      e instanceof RangeError && /vocab_size must be an integer >= 258/.test(e.message) &&
      /duplicates/.test(e.message) && /bos_token "<s>" must be one of special_tokens/.test(e.message),
  );
  await assert.rejects(
    () => trainBpeTokenizer([42 as unknown as string], { vocab_size: 300 }),
    (e: Error) => e instanceof TypeError && /text 0 is number/.test(e.message),
  );
  // values once accepted: a "false" that added BOS, a context length of -5, a template that is a number
  await assert.rejects(
    () =>
      trainBpeTokenizer(["x"], {
        vocab_size: 300,
        add_bos_token: "false" as never,
        model_max_length: -5,
        chat_template: 5 as never,
      }),
    (e: Error) =>
      e instanceof RangeError && /add_bos_token must be true or false, got "false"/.test(e.message) &&
      /model_max_length must be an integer >= 1, got -5/.test(e.message) &&
      /chat_template must be a Jinja template string, got number/.test(e.message),
  );
});

Deno.test("BpeTokenizer round-trips every Debian text and hard strings exactly", async () => {
  const tok = await getTrained();
  let count = 0, chars = 0, tokens = 0;
  const t0 = performance.now();
  for (const task of ["summarization", "translation", "classification", "classification-binary"]) {
    for (const text of await debianTexts(task)) {
      const ids = tok.encode(text);
      const back = tok.decode(ids);
      if (back !== text) assert.fail(`round trip failed in ${task}: ${JSON.stringify(text.slice(0, 200))}`);
      count++;
      chars += text.length;
      tokens += ids.length;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    `round trip: ${count} Debian texts, ${(chars / 1e6).toFixed(1)} M chars, ${tokens} tokens ` +
      `(${(chars / tokens).toFixed(2)} chars/token) in ${seconds.toFixed(1)} s`,
  );
  for (const text of [...HARD, ...randomStrings(2000, 7)]) {
    assert.equal(tok.decode(tok.encode(text)), text, JSON.stringify(text));
  }
});

Deno.test("a saved BpeTokenizer loaded by @huggingface/transformers gives identical ids and text", async () => {
  const tok = await getTrained();
  const dir = await Deno.makeTempDir();
  try {
    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    assert.equal(hf.vocab_size, tok.vocab_size);
    assert.deepEqual([hf.bos_token_id, hf.eos_token_id, hf.pad_token_id], [0, 0, 1]);
    assert.deepEqual(hf.special_token_ids, [0, 1]);
    const debian = [
      ...(await debianTexts("translation")).filter((_, i) => i % 10 === 0),
      ...(await debianTexts("classification")).filter((_, i) => i % 25 === 0),
    ];
    const random = randomStrings(500, 11);
    const n = assertSameIds(tok, hf, [...debian, ...HARD, ...random], "Debian + hard + random");
    console.log(`HF == ours on ${n} texts (${debian.length} Debian)`);
    for (const text of [...HARD, ...debian.slice(0, 200)]) {
      const ids = tok.encode(text);
      assert.equal(hf.decode(ids), tok.decode(ids));
      assert.equal(
        hf.decode(ids, { skip_special_tokens: true }),
        tok.decode(ids, { skip_special_tokens: true }),
      );
    }
    // Partial UTF-8 sequences decode to U+FFFD in both.
    const firstByte = tok.tokenToId("ð");
    assert.notEqual(firstByte, null);
    assert.equal(tok.decode([firstByte!]), hf.decode([firstByte!]));
    assert.equal(tok.decode([firstByte!]), "\ufffd");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BpeTokenizer.save() writes the Hugging Face files", async () => {
  const tok = await getTrained();
  const dir = await Deno.makeTempDir();
  try {
    await tok.save(dir);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`));
    assert.equal(json.model.type, "BPE");
    assert.equal(json.model.merges.length, tok.spec.merges.length);
    assert.equal(typeof json.model.merges[0], "string");
    assert.deepEqual(json.pre_tokenizer, {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    });
    assert.equal(json.decoder.type, "ByteLevel");
    assert.equal(json.post_processor.type, "ByteLevel");
    assert.deepEqual(json.added_tokens.map((t: { content: string }) => t.content), [
      "<|endoftext|>",
      "<|pad|>",
    ]);
    assert.ok(
      json.added_tokens.every((t: { special: boolean; normalized: boolean }) => t.special && !t.normalized),
    );
    assert.equal(Object.keys(json.model.vocab).length, 4096);
    // Written in id order (JSON.parse would reorder integer-like keys, so look at the text).
    const text = await Deno.readTextFile(`${dir}/tokenizer.json`);
    assert.ok(text.includes('"vocab": {\n      "<|endoftext|>": 0,\n      "<|pad|>": 1,\n      "Ā": 2,'));
    const config = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
    assert.equal(config.tokenizer_class, "PreTrainedTokenizerFast");
    assert.equal(config.clean_up_tokenization_spaces, false);
    assert.equal(config.added_tokens_decoder["1"].content, "<|pad|>");
    const map = JSON.parse(await Deno.readTextFile(`${dir}/special_tokens_map.json`));
    assert.deepEqual(map, {
      bos_token: "<|endoftext|>",
      eos_token: "<|endoftext|>",
      unk_token: "<|endoftext|>",
      pad_token: "<|pad|>",
    });
    // A loaded tokenizer saves the same files back.
    const hf = await loadTokenizer(dir);
    const dir2 = `${dir}/again`;
    await hf.save(dir2);
    assert.equal(
      await Deno.readTextFile(`${dir2}/tokenizer.json`),
      await Deno.readTextFile(`${dir}/tokenizer.json`),
    );
    const hf2 = await loadTokenizer(dir2);
    assert.deepEqual(hf2.encode("Debian packages"), tok.encode("Debian packages"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("add_bos_token / add_eos_token write a TemplateProcessing post-processor HF agrees with", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = await trainBpeTokenizer((await debianTexts("summarization")).slice(0, 300), {
      vocab_size: 400,
      special_tokens: ["<s>", "</s>", "<pad>"],
      bos_token: "<s>",
      eos_token: "</s>",
      pad_token: "<pad>",
      add_bos_token: true,
      add_eos_token: true,
    });
    const ids = tok.encode("hello world");
    assert.equal(ids[0], 0);
    assert.equal(ids.at(-1), 1);
    assert.deepEqual(tok.encode("hello world", { add_special_tokens: false }), ids.slice(1, -1));
    assert.equal(tok.decode(ids, { skip_special_tokens: true }), "hello world");
    assert.equal(tok.decode(ids), "<s>hello world</s>");
    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    for (const text of ["hello world", "", " x ", ...HARD.slice(0, 8)]) {
      assert.deepEqual(hf.encode(text), tok.encode(text), JSON.stringify(text));
      assert.deepEqual(
        hf.encode(text, { add_special_tokens: false }),
        tok.encode(text, { add_special_tokens: false }),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

Deno.test("applyChatTemplate() renders a ChatML template to the expected text and ids (ours and HF)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = await trainBpeTokenizer((await debianTexts("summarization")).slice(0, 500), {
      vocab_size: 500,
      special_tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      chat_template: CHATML,
    });
    const messages = [
      { role: "system", content: "You summarize Debian packages." },
      { role: "user", content: "What is 0ad?" },
    ];
    const expected = "<|im_start|>system\nYou summarize Debian packages.<|im_end|>\n" +
      "<|im_start|>user\nWhat is 0ad?<|im_end|>\n<|im_start|>assistant\n";
    const out = tok.applyChatTemplate(messages, { add_generation_prompt: true });
    assert.equal(out.text, expected);
    assert.deepEqual(out.ids, tok.encode(expected, { add_special_tokens: false }));
    assert.equal(out.ids.filter((id) => id === 1).length, 3); // <|im_start|>
    assert.equal(out.ids.filter((id) => id === 2).length, 2); // <|im_end|>
    assert.equal(out.ids[0], 1);
    assert.equal(tok.decode(out.ids), expected);
    const noPrompt = tok.applyChatTemplate(messages);
    assert.ok(!noPrompt.text.endsWith("assistant\n"));

    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    assert.equal(hf.chat_template, CHATML);
    const hfOut = hf.applyChatTemplate(messages, { add_generation_prompt: true });
    assert.deepEqual(hfOut, out);
    const no = "false" as never; // the loaded tokenizer refuses a boolean given as text too
    assert.throws(
      () => hf.encode("hi", { add_special_tokens: no }),
      /add_special_tokens must be true or false/,
    );
    assert.throws(
      () => hf.decode([1], { skip_special_tokens: no }),
      /skip_special_tokens must be true or false/,
    );
    assert.throws(
      () => hf.applyChatTemplate(messages, { add_generation_prompt: no }),
      /add_generation_prompt must/,
    );

    // chat_template.jinja overrides the config's template (as in transformers).
    await Deno.writeTextFile(
      `${dir}/chat_template.jinja`,
      "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}",
    );
    const jinja = await loadTokenizer(dir);
    assert.equal(
      jinja.applyChatTemplate(messages).text,
      "<|endoftext|>You summarize Debian packages.<|endoftext|>",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("applyChatTemplate() without a template and with bad Jinja throws with the fix", async () => {
  const tok = await trainBpeTokenizer(["abc"], { vocab_size: 260 });
  assert.throws(() => tok.applyChatTemplate([{ role: "user", content: "hi" }]), TypeError);
  assert.throws(
    () => tok.applyChatTemplate([{ role: "user", content: "hi" }], { chat_template: "{% for %}" }),
    (e: Error) => e instanceof SyntaxError && /Cannot parse chat template/.test(e.message),
  );
  assert.throws( // a block left open once read "Cannot read properties of undefined (reading 'type')"
    () =>
      tok.applyChatTemplate([{ role: "user", content: "hi" }], {
        chat_template: "{% for m in messages %}{% set x = 1 %}{{ m.content }}",
      }),
    { name: "SyntaxError", message: /a \{% for %\} block is never closed \(add \{% endfor %\}\)/ },
  );
  const dir = await Deno.makeTempDir();
  try {
    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    assert.equal(hf.chat_template, null);
    assert.throws(
      () => hf.applyChatTemplate([{ role: "user", content: "hi" }]),
      (e: Error) => e instanceof TypeError && /chat_template\.jinja/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTokenizer() names the missing or broken file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => loadTokenizer(dir),
      (e: Error) =>
        e instanceof Deno.errors.NotFound && e.message.includes(`${dir}/tokenizer.json not found`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer.json`, "{ not json");
    await assert.rejects(
      () => loadTokenizer(dir),
      (e: Error) => e instanceof SyntaxError && e.message.includes(`Cannot parse ${dir}/tokenizer.json`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify({ version: "1.0", added_tokens: [] }));
    await assert.rejects(
      () => loadTokenizer(dir),
      (e: Error) => e instanceof SyntaxError && /key "model" must be an object/.test(e.message),
    );
    const tok = await trainBpeTokenizer(["abc abc"], { vocab_size: 260 });
    await tok.save(dir);
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "[1, 2]");
    await assert.rejects(
      () => loadTokenizer(dir),
      (e: Error) =>
        e instanceof SyntaxError && e.message.includes("tokenizer_config.json: the top level is not"),
    );
    // shapes transformers.js once failed on with a JS error ("x.split is not a function"), or blamed
    // on tokenizer.json when tokenizer_config.json held them
    type Tok = { model: Record<string, unknown>; added_tokens: unknown };
    const good: Tok = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`));
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ eos_token: { content: 5 } }));
    await assert.rejects(() => loadTokenizer(dir), {
      name: "SyntaxError",
      message: /tokenizer_config\.json: eos_token must be a token string or \{"content": string\}/,
    });
    await Deno.remove(`${dir}/tokenizer_config.json`);
    for (
      const [edit, re] of [
        [(t: Tok) => (t.model.merges = [1, 2]), /model\.merges\[0\] must be "a b" or \["a", "b"\], got 1/],
        [(t: Tok) => (t.model.vocab = [1, 2]), /model\.vocab must be an object of token -> id/],
        [
          (t: Tok) => (t.added_tokens = [{ id: "x" }]),
          /added_tokens\[0\] must be \{id: integer, content: string/,
        ],
        // loaded before, as Rust tokenizers refuses them: a string id (encode then gave strings) and
        // a merge of unknown tokens (it never merged)
        [
          (t: Tok) => ((t.model.vocab as Record<string, unknown>)["!"] = "2"),
          /model\.vocab\["!"\] must be an id >= 0, got "2"/,
        ],
        [
          (t: Tok) => (t.model.merges as unknown[]).unshift("zzq yyq"),
          /model\.merges\[0\] "zzq yyq" names "zzq", which is not in model\.vocab; fix or remove that merge/,
        ],
      ] as const
    ) {
      const t = structuredClone(good);
      edit(t);
      await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(t));
      await assert.rejects(() => loadTokenizer(dir), { name: "SyntaxError", message: re });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decode() rejects ids outside the vocabulary and accepts typed arrays", async () => {
  const tok = await getTrained();
  assert.throws(
    () => tok.decode([5, 4096]),
    (e: Error) => e instanceof RangeError && /ids\[1\] = 4096/.test(e.message),
  );
  assert.throws(() => tok.decode([1.5]), RangeError);
  // a "false" is truthy: it once added BOS, dropped specials, added the generation prompt
  const no = "false" as never;
  assert.throws(
    () => tok.encode("hi", { add_special_tokens: no }),
    /Cannot encode: add_special_tokens must be/,
  );
  assert.throws(
    () => tok.decode([5], { skip_special_tokens: no }),
    /Cannot decode: skip_special_tokens must be/,
  );
  assert.throws(
    () => tok.decode([5], { clean_up_tokenization_spaces: no }),
    /clean_up_tokenization_spaces must/,
  );
  assert.throws(
    () => tok.applyChatTemplate([], { add_generation_prompt: no }),
    /Cannot apply chat template: add_generation_prompt must be true or false, got "false"/,
  );
  assert.equal(tok.decode([]), "");
  assert.equal(tok.decode(Int32Array.from(tok.encode("hello there"))), "hello there");
});

Deno.test("loadTokenizer() loads a BERT-style WordPiece tokenizer and fills specials from special_tokens_map.json", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const vocab = {
      "[PAD]": 0,
      "[UNK]": 1,
      "[CLS]": 2,
      "[SEP]": 3,
      "hello": 4,
      "world": 5,
      "##s": 6,
      "!": 7,
    };
    const added = Object.entries(vocab).slice(0, 4).map(([content, id]) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }));
    const tokenizer = {
      version: "1.0",
      added_tokens: added,
      normalizer: {
        type: "BertNormalizer",
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: null,
        lowercase: true,
      },
      pre_tokenizer: { type: "BertPreTokenizer" },
      post_processor: {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, {
          SpecialToken: { id: "[SEP]", type_id: 0 },
        }],
        pair: [],
        special_tokens: {
          "[CLS]": { id: "[CLS]", ids: [2], tokens: ["[CLS]"] },
          "[SEP]": { id: "[SEP]", ids: [3], tokens: ["[SEP]"] },
        },
      },
      decoder: { type: "WordPiece", prefix: "##", cleanup: true },
      model: {
        type: "WordPiece",
        unk_token: "[UNK]",
        continuing_subword_prefix: "##",
        max_input_chars_per_word: 100,
        vocab,
      },
    };
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(tokenizer));
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ tokenizer_class: "BertTokenizer" }),
    );
    await Deno.writeTextFile(
      `${dir}/special_tokens_map.json`,
      JSON.stringify({ pad_token: "[PAD]", unk_token: "[UNK]", cls_token: "[CLS]", sep_token: "[SEP]" }),
    );
    const tok = await loadTokenizer(dir);
    assert.equal(tok.vocab_size, 8);
    assert.deepEqual(tok.encode("Hello worlds!"), [2, 4, 5, 6, 7, 3]);
    assert.deepEqual(tok.encode("Hello zzz", { add_special_tokens: false }), [4, 1]);
    assert.equal(tok.decode([2, 4, 5, 6, 7, 3], { skip_special_tokens: true }), "hello worlds!");
    assert.deepEqual([tok.pad_token_id, tok.bos_token_id, tok.eos_token_id], [0, null, null]);
    assert.equal(tok.idToToken(6), "##s");
    assert.equal(tok.tokenToId("world"), 5);
    assert.equal(tok.tokenToId("nope"), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BpeTokenizer matches HF on long pre-tokens (the heap path of the encoder)", async () => {
  const tok = await getTrained();
  const dir = await Deno.makeTempDir();
  try {
    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    // Debian sentences with the spaces removed: long letter runs, realistic merges.
    const long = (await debianTexts("summarization")).slice(0, 300)
      .map((t) => t.replace(/[\s\p{P}\d]/gu, ""))
      .filter((t) => new TextEncoder().encode(t).length > 64);
    assert.ok(long.length >= 100, `${long.length} long texts`);
    assertSameIds(tok, hf, long, "long runs");
    for (const t of long) assert.equal(tok.decode(tok.encode(t)), t);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const STRICT = "{{ bos_token }}{% for message in messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}" +
  "{% else %}{{ ' ' + message['content'] | trim + eos_token }}{% endif %}{% endfor %}";

Deno.test("applyChatTemplate() passes special tokens to the template and reports raise_exception", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = await trainBpeTokenizer(["[INST] hi [/INST] hello"], {
      vocab_size: 270,
      special_tokens: ["<s>", "</s>"],
      bos_token: "<s>",
      eos_token: "</s>",
      chat_template: STRICT,
    });
    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    const chat = [{ role: "user", content: " hi " }, { role: "assistant", content: "hello" }, {
      role: "user",
      content: "bye",
    }];
    for (const t of [tok, hf]) {
      const out = t.applyChatTemplate(chat);
      assert.equal(out.text, "<s>[INST] hi [/INST] hello</s>[INST] bye [/INST]");
      assert.equal(out.ids[0], 0);
      assert.equal(out.ids.filter((id) => id === 1).length, 1);
      assert.throws(
        () => t.applyChatTemplate([{ role: "assistant", content: "x" }]),
        (e: Error) => e instanceof TypeError && /roles must alternate/.test(e.message),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainBpeTokenizer() handles tokens named like Object.prototype members", async () => {
  const text = "__proto__ constructor toString hasOwnProperty __proto__ constructor ".repeat(30);
  const tok = await trainBpeTokenizer([text], { vocab_size: 320 });
  // ("__proto__" itself is never one pre-token: the GPT-2 regex splits "_" from letters.)
  for (const t of ["Ġconstructor", "ĠtoString", "ĠhasOwnProperty", "Ġ__"]) {
    assert.notEqual(tok.tokenToId(t), null, t);
  }
  assert.equal(tok.tokenToId("valueOf"), null);
  const dir = await Deno.makeTempDir();
  try {
    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    assertSameIds(tok, hf, [text, "__proto__", "a.constructor.prototype"], "prototype names");
    assert.equal(tok.decode(tok.encode(text)), text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a single_word added token matches whole words only, as Rust tokenizers does (transformers.js matched it inside words)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const base = await trainBpeTokenizer(["the cat sat on the mat, concatenate cats ".repeat(30)], {
      vocab_size: 300,
    });
    await base.save(dir);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`));
    const id = base.vocab_size;
    json.added_tokens.push({
      id,
      content: "cat",
      single_word: true,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: false,
    });
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    const tok = await loadTokenizer(dir);
    const enc = (s: string) => tok.encode(s, { add_special_tokens: false });
    // no word character (Rust's Unicode \w, "_" included) on either side: the token
    for (const [text, before, after] of [["cat", "", ""], ["a cat sat", "a ", " sat"], ["(cat)", "(", ")"]]) {
      assert.deepEqual(enc(text), [...base.encode(before), id, ...base.encode(after)], text);
    }
    // inside a word: text, encoded as the tokenizer without the added token encodes it
    for (const text of ["concatenate", "cats", "_cat", "écat", "cat9"]) {
      assert.deepEqual(enc(text), base.encode(text), text);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("applyChatTemplate(): continue_final_message, and tools picking the tool_use template, as HF", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = await trainBpeTokenizer(["hello there, the answer is yes ".repeat(20)], {
      vocab_size: 300,
      special_tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      chat_template: CHATML,
    });
    const messages = [{ role: "user", content: "hi" }, { role: "assistant", content: "The answer is " }];
    // cut after the last message's text, its trailing space kept as the template kept it (HF's rule)
    const want = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nThe answer is ";
    await tok.save(dir);
    const hf = await loadTokenizer(dir);
    for (const t of [tok, hf]) {
      const out = t.applyChatTemplate(messages, { continue_final_message: true });
      assert.equal(out.text, want);
      assert.deepEqual(out.ids, t.encode(want, { add_special_tokens: false }));
      assert.throws(
        () => t.applyChatTemplate(messages, { continue_final_message: true, add_generation_prompt: true }),
        /continue_final_message and add_generation_prompt do not go together/,
      );
    }
    // a template variable that would replace an argument is refused, as Python refuses the repeat
    assert.throws(
      () => hf.applyChatTemplate(messages, { template_kwargs: { messages: [] } }),
      /template_kwargs\.messages would replace the messages argument; pass it there instead/,
    );
    // a template that drops the last message's text cannot be continued
    assert.throws(
      () => hf.applyChatTemplate(messages, { continue_final_message: true, chat_template: "{{ 'x' }}" }),
      /continue_final_message is set but the template from .* does not write the last message's text/,
    );
    // named templates: tools pick "tool_use" when there is one, else "default"; with no default, the names
    const config = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
    config.chat_template = [
      { name: "default", template: "plain:{{ messages[0].content }}" },
      { name: "tool_use", template: "tools:{{ tools | length }}:{{ messages[0].content }}" },
    ];
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
    const named = await loadTokenizer(dir);
    const tools = [{ type: "function", function: { name: "f" } }];
    assert.equal(named.applyChatTemplate(messages).text, "plain:hi");
    assert.equal(named.applyChatTemplate(messages, { template_kwargs: { tools } }).text, "tools:1:hi");
    config.chat_template = config.chat_template.slice(1);
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
    const noDefault = await loadTokenizer(dir);
    assert.equal(noDefault.applyChatTemplate(messages, { template_kwargs: { tools } }).text, "tools:1:hi");
    assert.throws(
      () => noDefault.applyChatTemplate(messages),
      /has named chat templates and none is "default" \(tool_use\); pass options\.chat_template/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTokenizer() reads special tokens written as {content, ...} in special_tokens_map.json, and templates see additional_special_tokens", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const base = await trainBpeTokenizer(["hello world ".repeat(20)], {
      vocab_size: 270,
      special_tokens: ["<|endoftext|>", "<s>", "<tool>"],
      bos_token: "<s>",
      eos_token: "<|endoftext|>",
    });
    await base.save(dir);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
    for (const k of ["bos_token", "eos_token", "pad_token"]) delete config[k];
    config.chat_template = "{{ additional_special_tokens | join(',') }}";
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
    // the dict form Python writes there, without transformers.js's "__type" (it had failed to load:
    // "Unknown token: [object Object]", blamed on tokenizer.json)
    const token = (content: string) => ({
      content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
    });
    await Deno.writeTextFile(
      `${dir}/special_tokens_map.json`,
      JSON.stringify({
        bos_token: token("<s>"),
        eos_token: token("<|endoftext|>"),
        additional_special_tokens: [token("<tool>")],
      }),
    );
    const tok = await loadTokenizer(dir);
    assert.deepEqual([tok.bos_token_id, tok.eos_token_id], [base.bos_token_id, base.eos_token_id]);
    assert.equal(tok.applyChatTemplate([{ role: "user", content: "hi" }]).text, "<tool>");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
