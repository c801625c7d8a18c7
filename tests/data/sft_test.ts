import { join } from "node:path";
import { assert } from "../_assert.ts";
import { buildSftExamples, loadSftExamples, type SftExample } from "../../data/sft.ts";
import { type BpeTokenizer, trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { loadTokenizer, type Tokenizer } from "../../models/tokenizer/tokenizer.ts";

// Four chat-template families (simplified from the models' tokenizer_config.json), each with its
// special tokens and, for one conversation, the hand-written golden mask: the rendered text cut
// into [piece, trained] runs. Only each assistant turn's content and its end-of-turn token train.

const LLAMA3 = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + " +
  "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const QWEN2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
  "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const MISTRAL = "{{ bos_token }}{% for message in messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}" +
  "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const PHI3 = "{% for message in messages %}{% if message['role'] == 'system' %}" +
  "{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}{% elif message['role'] == 'user' %}" +
  "{{ '<|user|>\\n' + message['content'] + '<|end|>\\n' }}{% elif message['role'] == 'assistant' %}" +
  "{{ '<|assistant|>\\n' + message['content'] + '<|end|>\\n' }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";

const CHAT = [
  { role: "user", content: "What is two plus two?" },
  { role: "assistant", content: "Four." },
  { role: "user", content: "And three plus three?" },
  { role: "assistant", content: "It is six." },
];

interface Family {
  template: string;
  special_tokens: string[];
  bos_token: string;
  eos_token: string;
  golden: [string, boolean][];
}

const FAMILIES: Record<string, Family> = {
  llama3: {
    template: LLAMA3,
    special_tokens: ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
    bos_token: "<|begin_of_text|>",
    eos_token: "<|eot_id|>",
    golden: [
      [
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is two plus two?<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        false,
      ],
      ["Four.<|eot_id|>", true],
      [
        "<|start_header_id|>user<|end_header_id|>\n\nAnd three plus three?<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        false,
      ],
      ["It is six.<|eot_id|>", true],
    ],
  },
  qwen2: {
    template: QWEN2,
    special_tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    bos_token: "<|endoftext|>",
    eos_token: "<|im_end|>",
    golden: [
      [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is two plus two?" +
        "<|im_end|>\n<|im_start|>assistant\n",
        false,
      ],
      ["Four.<|im_end|>", true],
      ["\n<|im_start|>user\nAnd three plus three?<|im_end|>\n<|im_start|>assistant\n", false],
      ["It is six.<|im_end|>", true],
      ["\n", false],
    ],
  },
  mistral: {
    template: MISTRAL,
    special_tokens: ["<unk>", "<s>", "</s>"],
    bos_token: "<s>",
    eos_token: "</s>",
    golden: [
      ["<s>[INST] What is two plus two? [/INST]", false],
      [" Four.</s>", true],
      ["[INST] And three plus three? [/INST]", false],
      [" It is six.</s>", true],
    ],
  },
  phi3: {
    template: PHI3,
    special_tokens: ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"],
    bos_token: "<|endoftext|>",
    eos_token: "<|endoftext|>",
    golden: [
      ["<|user|>\nWhat is two plus two?<|end|>\n<|assistant|>\n", false],
      ["Four.<|end|>", true],
      ["\n<|user|>\nAnd three plus three?<|end|>\n<|assistant|>\n", false],
      ["It is six.<|end|>", true],
      ["\n<|endoftext|>", false],
    ],
  },
};

// Documents ending in "\n\n" teach the merge "\n\n" (the GPT-2 split keeps a final run of newlines
// whole), so a prompt rendered alone ends in one "\n\n" token where the full conversation has two
// "\n" tokens before the content: the case token-list prefixes get wrong.
const CORPUS = [
  ..."What is two plus two? Four. And three plus three? It is six. Question:".split(" "),
  "Answer: yes.",
  "header\n\n",
  "You are a helpful assistant. What is two plus two? Four. And three plus three? It is six.\n\n",
].flatMap((t) => Array(20).fill(t));

const tokenizers = new Map<string, BpeTokenizer>();
async function familyTokenizer(name: string): Promise<BpeTokenizer> {
  let tok = tokenizers.get(name);
  if (!tok) {
    const f = FAMILIES[name];
    tok = await trainBpeTokenizer(CORPUS, {
      vocab_size: 340,
      special_tokens: f.special_tokens,
      bos_token: f.bos_token,
      eos_token: f.eos_token,
      pad_token: f.eos_token,
      unk_token: null,
      chat_template: f.template,
    });
    tokenizers.set(name, tok);
  }
  return tok;
}

/** An example as runs of [decoded text, trained]: what the golden masks are written in. */
function pieces(tok: Pick<Tokenizer, "decode">, e: SftExample): [string, boolean][] {
  const out: [string, boolean][] = [];
  let run: number[] = [], trained = false;
  for (let t = 0; t < e.input_ids.length; t++) {
    const on = e.labels[t] !== -100;
    if (run.length && on !== trained) {
      out.push([tok.decode(run), trained]);
      run = [];
    }
    run.push(e.input_ids[t]);
    trained = on;
  }
  if (run.length) out.push([tok.decode(run), trained]);
  return out;
}

function labelsMatchIds(e: SftExample): boolean {
  return e.labels.every((l, t) => l === -100 || l === e.input_ids[t]);
}

for (const name of Object.keys(FAMILIES)) {
  Deno.test(`buildSftExamples() with assistant_only_loss trains exactly the assistant turns (${name})`, async () => {
    const tok = await familyTokenizer(name);
    const { examples, trained_tokens, formats } = buildSftExamples([{ messages: CHAT }], tok, {
      assistant_only_loss: true,
      source: `${name}.jsonl`,
    });
    assert.deepEqual(formats, { conversational: 1 });
    const e = examples[0];
    assert.deepEqual(pieces(tok, e), FAMILIES[name].golden);
    assert.deepEqual([...e.input_ids], tok.applyChatTemplate(CHAT).ids);
    assert.ok(labelsMatchIds(e));
    assert.equal(trained_tokens, e.labels.filter((l) => l !== -100).length);
    assert.equal(e.source, `${name}.jsonl:1`);
  });
}

Deno.test("buildSftExamples() gives the same examples through transformers.js (loadTokenizer)", async () => {
  for (const name of Object.keys(FAMILIES)) {
    const tok = await familyTokenizer(name);
    const dir = await Deno.makeTempDir();
    try {
      await tok.save(dir);
      const hf = await loadTokenizer(dir);
      const opts = { assistant_only_loss: true };
      const ours = buildSftExamples([{ messages: CHAT }], tok, opts).examples[0];
      const theirs = buildSftExamples([{ messages: CHAT }], hf, opts).examples[0];
      assert.deepEqual([...theirs.input_ids], [...ours.input_ids], name);
      assert.deepEqual([...theirs.labels], [...ours.labels], name);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("buildSftExamples() finds the turn although the prompt alone tokenizes its end differently", async () => {
  const tok = await familyTokenizer("llama3");
  const prompt = tok.applyChatTemplate(CHAT.slice(0, 1), { add_generation_prompt: true }).ids;
  const full = tok.applyChatTemplate(CHAT.slice(0, 2)).ids;
  // The premise: "\n\n" is one token at the end of the prompt, two "\n" before "Four." (TRL would
  // count len(prompt) tokens and mask the first token of the completion).
  assert.notDeepEqual(full.slice(0, prompt.length), prompt);
  const { examples } = buildSftExamples([{ prompt: CHAT.slice(0, 1), completion: CHAT.slice(1, 2) }], tok);
  assert.deepEqual(pieces(tok, examples[0]), [
    [
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is two plus two?<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\n",
      false,
    ],
    ["Four.<|eot_id|>", true],
  ]);
});

Deno.test("buildSftExamples() uses {% generation %} markers when the template has them", async () => {
  const marked = [
    "{%- for message in messages %}",
    "  {%- if message.role == 'assistant' %}",
    "    {{- '<|im_start|>assistant\\n' }}",
    "    {% generation %}",
    "    {{- message.content + '<|im_end|>' }}",
    "    {%- endgeneration %}",
    "    {{- '\\n' }}",
    "  {%- else %}",
    "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}",
    "  {%- endif %}",
    "{%- endfor %}",
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
  ].join("\n");
  const tok = await trainBpeTokenizer(CORPUS, {
    vocab_size: 320,
    special_tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    chat_template: marked,
  });
  const { examples } = buildSftExamples([{ messages: CHAT }], tok, { assistant_only_loss: true });
  // The ids are what the Jinja engine renders with the markers dropped.
  assert.deepEqual([...examples[0].input_ids], tok.applyChatTemplate(CHAT).ids);
  assert.deepEqual(pieces(tok, examples[0]), [
    ["<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n", false],
    ["Four.<|im_end|>", true],
    ["\n<|im_start|>user\nAnd three plus three?<|im_end|>\n<|im_start|>assistant\n", false],
    ["It is six.<|im_end|>", true],
    ["\n", false],
  ]);
  // The same through transformers.js.
  const dir = await Deno.makeTempDir();
  try {
    await tok.save(dir);
    const hf = buildSftExamples([{ messages: CHAT }], await loadTokenizer(dir), {
      assistant_only_loss: true,
    });
    assert.deepEqual([...hf.examples[0].labels], [...examples[0].labels]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // Markers are followed as they are, whitespace included (TRL's qwen2_5_training.jinja style).
  const trl = "{%- for message in messages %}{%- if message.role == 'assistant' %}" +
    "{{- '<|im_start|>assistant' }}{%- generation %}{{- '\\n' + message.content + '<|im_end|>\\n' }}" +
    "{%- endgeneration %}{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + " +
    "'<|im_end|>\\n' }}{%- endif %}{%- endfor %}";
  const tokTrl = await trainBpeTokenizer(CORPUS, {
    vocab_size: 320,
    special_tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    chat_template: trl,
  });
  const e =
    buildSftExamples([{ messages: CHAT.slice(0, 2) }], tokTrl, { assistant_only_loss: true }).examples[0];
  assert.deepEqual(pieces(tokTrl, e), [
    ["<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant", false],
    ["\nFour.<|im_end|>\n", true],
  ]);
});

Deno.test("buildSftExamples() trains all of a conversation without assistant_only_loss", async () => {
  const tok = await familyTokenizer("qwen2");
  const e = buildSftExamples([{ messages: CHAT }], tok).examples[0];
  assert.deepEqual([...e.labels], [...e.input_ids]);
});

Deno.test("buildSftExamples() trains the completion (and its EOS) of conversational prompt-completion rows", async () => {
  const tok = await familyTokenizer("qwen2");
  const row = { prompt: CHAT.slice(0, 3), completion: CHAT.slice(3) };
  const e = buildSftExamples([row], tok).examples[0];
  assert.deepEqual(pieces(tok, e), [
    [
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is two plus two?" +
      "<|im_end|>\n<|im_start|>assistant\nFour.<|im_end|>\n<|im_start|>user\nAnd three plus three?<|im_end|>\n" +
      "<|im_start|>assistant\n",
      false,
    ],
    ["It is six.<|im_end|>\n", true],
  ]);
  // completion_only_loss false trains it all; assistant_only_loss then keeps both assistant turns.
  const all = buildSftExamples([row], tok, { completion_only_loss: false }).examples[0];
  assert.deepEqual([...all.labels], [...all.input_ids]);
  const both = buildSftExamples([row], tok, { completion_only_loss: false, assistant_only_loss: true });
  assert.deepEqual(pieces(tok, both.examples[0]).filter(([, on]) => on), [
    ["Four.<|im_end|>", true],
    ["It is six.<|im_end|>", true],
  ]);
});

Deno.test("buildSftExamples() appends EOS to text and completions when missing, as TRL", async () => {
  const tok = await familyTokenizer("qwen2");
  const eos = "<|im_end|>", eosId = tok.eos_token_id!;
  const { examples, formats } = buildSftExamples([
    { text: "It is six." },
    { text: `It is six.${eos}` },
    { prompt: "Question: What is two plus two? Answer:", completion: " Four." },
  ], tok);
  assert.deepEqual(formats, { language_modeling: 2, prompt_completion: 1 });
  const [a, b, pc] = examples;
  assert.deepEqual([...a.input_ids], [...tok.encode("It is six."), eosId]);
  assert.deepEqual([...a.labels], [...a.input_ids]); // language modeling: every token
  assert.deepEqual([...b.input_ids], [...a.input_ids]); // not doubled
  assert.deepEqual(pieces(tok, pc), [["Question: What is two plus two? Answer:", false], [
    ` Four.${eos}`,
    true,
  ]]);
  const none = buildSftExamples([{ text: "It is six." }], tok, { eos_token: null }).examples[0];
  assert.deepEqual([...none.input_ids], tok.encode("It is six."));
  assert.throws(
    () => buildSftExamples([{ text: "x" }], tok, { eos_token: "</s>" }),
    (e: Error) =>
      e instanceof RangeError && /eos_token "<\/s>" is not in the tokenizer's vocabulary/.test(e.message),
  );
});

Deno.test("buildSftExamples() trains a completion token that straddles the prompt's end", async () => {
  const tok = await familyTokenizer("qwen2");
  // "Answer: " ends in a space that BPE joins to the completion (" yes"): TRL's len(prompt_ids)
  // would mask " yes"; the completion's first token is trained here.
  const e = buildSftExamples([{ prompt: "Answer: ", completion: "yes" }], tok).examples[0];
  assert.notDeepEqual(
    tok.encode("Answer: yes").slice(0, tok.encode("Answer: ").length),
    tok.encode("Answer: "),
  );
  assert.deepEqual(pieces(tok, e), [["Answer:", false], [" yes<|im_end|>", true]]);
});

Deno.test("buildSftExamples() cuts to max_length and counts it; nothing left to train is an error", async () => {
  const tok = await familyTokenizer("qwen2");
  const long = { text: "What is two plus two? ".repeat(10) };
  const { examples, truncated, num_tokens } = buildSftExamples([long, { text: "Four." }], tok, {
    max_length: 8,
  });
  assert.equal(truncated, 1);
  assert.equal(examples[0].input_ids.length, 8);
  assert.deepEqual([...examples[0].input_ids], tok.encode(long.text).slice(0, 8));
  assert.equal(num_tokens, 8 + examples[1].input_ids.length);
  assert.equal(buildSftExamples([long], tok, { max_length: null }).truncated, 0);
  assert.throws(
    () =>
      buildSftExamples(
        [{ text: "ok" }, { prompt: "What is two plus two? ".repeat(5), completion: "Four." }],
        tok,
        {
          max_length: 8,
          source: "qa.jsonl",
        },
      ),
    (e: Error) =>
      e instanceof RangeError &&
      e.message.startsWith(
        "Cannot build an SFT example from qa.jsonl:2: no token is trained once cut to max_length 8",
      ),
  );
  // a "false" is truthy: completion_only_loss once stayed on, assistant_only_loss failed on plain rows
  assert.throws(
    () =>
      buildSftExamples([{ prompt: "a", completion: "b" }], tok, {
        completion_only_loss: "false" as never,
        assistant_only_loss: "false" as never,
      }),
    {
      name: "RangeError",
      message:
        /completion_only_loss must be true or false, got "false"; assistant_only_loss must be true or false, got "false"/,
    },
  );
});

Deno.test("buildSftExamples() rejects bad rows in one line naming the row and the field", async () => {
  const tok = await familyTokenizer("qwen2");
  // the first row is fine (a conversation where assistant_only_loss is on), the second is not
  const rejects = (
    row: Record<string, unknown>,
    pattern: RegExp,
    opts: { assistant_only_loss?: boolean } = {},
  ) =>
    assert.throws(
      () =>
        buildSftExamples(
          [
            opts.assistant_only_loss
              ? { messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] }
              : { text: "ok" },
            row,
          ],
          tok,
          { source: "d.jsonl", ...opts },
        ),
      (e: Error) => {
        assert.ok(e instanceof TypeError, e.message);
        assert.ok(!e.message.includes("\n"), e.message);
        assert.match(e.message, /^Cannot build an SFT example from d\.jsonl:2: /);
        assert.match(e.message, pattern);
        return true;
      },
    );
  rejects(
    { messages: [{ role: "user", content: "hi" }, { role: "bot", content: "yo" }] },
    /"messages\[1\]\.role" is "bot", not one of/,
  );
  rejects({ messages: [{ role: "user" }] }, /"messages\[0\]\.content" is missing/);
  rejects({ messages: [] }, /"messages" must be a non-empty list/);
  rejects({ messages: [{ role: "user", content: "hi" }] }, /"messages" has no assistant turn/, {
    assistant_only_loss: true,
  });
  rejects({ prompt: "hi" }, /field "completion" is missing/);
  rejects(
    { prompt: "hi", completion: [{ role: "assistant", content: "yo" }] },
    /both be strings or both be message lists, got a string and a list/,
  );
  rejects({ title: "hi" }, /field "text" is missing \(columns: title\).*dataset_text_field/);
  rejects({ text: 3 }, /field "text" is a number, not text/);
  rejects({ text: null }, /field "text" is null \(in a CSV, an empty field\); fill it in or drop the row/); // (it had said "missing (columns: text)")
  // a null prompt or completion beside the other (an empty CSV field) is named so, not "missing"
  rejects({ prompt: null, completion: "a" }, /field "prompt" is null \(in a CSV, an empty field\)/);
  rejects({ prompt: "p", completion: null }, /field "completion" is null \(in a CSV, an empty field\)/);
  rejects(
    { prompt: null, completion: null },
    /fields "prompt" and "completion" are null \(in a CSV, empty fields\)/,
  );
  rejects({ prompt: "a", completion: "b" }, /assistant_only_loss needs conversational rows/, {
    assistant_only_loss: true,
  });
  // settings a row's format does not read (they were accepted and did nothing)
  assert.throws(
    () => buildSftExamples([{ text: "plain" }], tok, { source: "d.jsonl", completion_only_loss: false }),
    /d\.jsonl:1: completion_only_loss is for prompt\/completion rows, and this one is plain text/,
  );
  assert.throws(
    () =>
      buildSftExamples([{ prompt: "a", completion: "b" }], tok, {
        source: "d.jsonl",
        dataset_text_field: "body",
      }),
    /d\.jsonl:1: dataset_text_field "body" names the text column of plain-text rows, and this one is a prompt\/completion row/,
  );
  assert.throws(
    () => buildSftExamples([{ text: "plain" }], tok, { source: "d.jsonl", assistant_only_loss: true }),
    /^TypeError: Cannot build an SFT example from d\.jsonl:1: assistant_only_loss needs conversational rows \("messages"\), not plain text/,
  );
  // The template's own exception (Mistral's role alternation) names the row too.
  const mistral = await familyTokenizer("mistral");
  assert.throws(
    () =>
      buildSftExamples([{ messages: [{ role: "assistant", content: "hi" }] }], mistral, {
        source: "m.jsonl",
      }),
    (e: Error) =>
      e instanceof TypeError &&
      /^Cannot build an SFT example from m\.jsonl:1: .*must alternate/.test(e.message),
  );
  // A template that renders earlier assistant turns differently once later turns follow (as
  // Qwen3 drops their reasoning) cannot be diffed: it needs generation markers.
  const shy = await trainBpeTokenizer(CORPUS, {
    vocab_size: 280,
    chat_template: "{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' and not loop.last %}" +
      "(...){% else %}{{ m.content }}{% endif %}<|endoftext|>{% endfor %}",
  });
  assert.throws(
    () => buildSftExamples([{ messages: CHAT }], shy, { assistant_only_loss: true, source: "s.jsonl" }),
    (e: Error) =>
      e instanceof TypeError &&
      /^Cannot build an SFT example from s\.jsonl:1: assistant message 1 is not found .*markers/.test(
        e.message,
      ),
  );
  assert.throws(
    () => buildSftExamples([{ text: "" }], shy, { eos_token: null }),
    /from row 1: it has 0 tokens, and a token is trained only after another/,
  );
  // A conversation needs a chat template.
  const plain = await trainBpeTokenizer(CORPUS, { vocab_size: 280 });
  assert.throws(
    () => buildSftExamples([{ messages: CHAT }], plain),
    (e: Error) => e instanceof TypeError && /from row 1: .*no chat_template/.test(e.message),
  );
});

Deno.test("loadSftExamples() names examples and errors by file:line", async () => {
  const tok = await familyTokenizer("llama3");
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "train.jsonl");
    await Deno.writeTextFile(
      path,
      [JSON.stringify({ messages: CHAT }), "", JSON.stringify({ text: "Four." })].join("\n") + "\n",
    );
    const { examples, formats } = await loadSftExamples(path, tok, { assistant_only_loss: false });
    assert.deepEqual(examples.map((e) => e.source), [`${path}:1`, `${path}:3`]);
    assert.deepEqual(formats, { conversational: 1, language_modeling: 1 });
    await Deno.writeTextFile(
      path,
      `${JSON.stringify({ text: "ok" })}\n\n${JSON.stringify({ messages: CHAT })}\n`,
    );
    await assertRejects(
      () => loadSftExamples(path, tok, { dataset_text_field: "body" }),
      new RegExp(`^Cannot build an SFT example from ${path}:1: field "body" is missing`),
    );
    const csv = join(dir, "train.csv");
    await Deno.writeTextFile(csv, "prompt,completion\nWhat is two plus two?,Four.\n");
    const fromCsv = await loadSftExamples(csv, tok);
    assert.equal(fromCsv.examples[0].source, `${csv}#1`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function assertRejects(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.fail("expected a rejection");
}

Deno.test("buildSftExamples() renders a row with tools through the tokenizer's tool_use template, as HF picks it", async () => {
  const name = Object.keys(FAMILIES)[0];
  const dir = await Deno.makeTempDir();
  try {
    await (await familyTokenizer(name)).save(dir);
    const config = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer_config.json")));
    const plain = config.chat_template as string;
    config.chat_template = [
      { name: "default", template: plain },
      { name: "tool_use", template: "{{ 'TOOLS ' + (tools | length | string) + ' ' }}" + plain },
    ];
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    const tok = await loadTokenizer(dir);
    const tools = [{ type: "function", function: { name: "add" } }];
    const [withTools, without] =
      buildSftExamples([{ messages: CHAT, tools }, { messages: CHAT }], tok).examples;
    // (it had rendered every row with the default template)
    assert.deepEqual(
      [...withTools.input_ids],
      tok.applyChatTemplate(CHAT, { template_kwargs: { tools } }).ids,
    );
    assert.ok(tok.decode(withTools.input_ids).startsWith("TOOLS 1 "));
    assert.deepEqual([...without.input_ids], tok.applyChatTemplate(CHAT).ids);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
