import { assert } from "../../_assert.ts";
import { trainBpeTokenizer } from "../../../models/tokenizer/bpe.ts";
import { loadTokenizer } from "../../../models/tokenizer/tokenizer.ts";

/**
 * A Llama-2 style tokenizer.json, as tokenizers converts a SentencePiece BPE model: Prepend/Replace
 * normalizer, no pre-tokenizer, byte fallback, and a post-processor that prepends `<s>`.
 */
function llamaJson(): Record<string, unknown> {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  let id = 259;
  for (const t of ["▁", "h", "e", "l", "o", "▁h", "▁he", "▁hel", "▁hell", "▁hello", ".", "!"]) {
    vocab[t] = id++;
  }
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "▁" }, {
        type: "Replace",
        pattern: { String: " " },
        content: "▁",
      }],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: ["▁ h", "▁h e", "▁he l", "▁hel l", "▁hell o"],
    },
  };
}

/** Write `tokenizer.json` and `tokenizer_config.json` into a new temporary folder. */
async function writeTokenizer(tokenizer: unknown, config: Record<string, unknown>): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(tokenizer));
  await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
  return dir;
}

const LLAMA_CONFIG = {
  tokenizer_class: "LlamaTokenizer",
  bos_token: "<s>",
  eos_token: "</s>",
  unk_token: "<unk>",
};

Deno.test("decode() without clean_up_tokenization_spaces in the config keeps spaces before punctuation, as HF v4.45+ (BERT classes clean up)", async () => {
  const dir = await writeTokenizer(llamaJson(), LLAMA_CONFIG);
  try {
    const tok = await loadTokenizer(dir);
    const ids = tok.encode("hello . hello !", { add_special_tokens: false });
    // HF: PreTrainedTokenizerBase defaults clean_up_tokenization_spaces to False since v4.45
    assert.equal(tok.decode(ids), "hello . hello !");
    assert.equal(tok.decode(ids, { clean_up_tokenization_spaces: true }), "hello. hello!");
    for (
      const [config, want] of [[{ tokenizer_class: "BertTokenizer" }, "hello. hello!"], [
        {},
        "hello . hello !",
      ]] as const
    ) {
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
      assert.equal((await loadTokenizer(dir)).decode(ids), want, JSON.stringify(config));
    }
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ clean_up_tokenization_spaces: "no" }),
    );
    await assert.rejects(() => loadTokenizer(dir), {
      name: "TypeError",
      message: /tokenizer_config\.json clean_up_tokenization_spaces must be true or false, got "no"/,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("add_bos_token / add_eos_token of a Llama or Gemma tokenizer_class rebuild the post-processor, as HF's update_post_processor", async () => {
  const dir = await writeTokenizer(llamaJson(), LLAMA_CONFIG);
  try {
    const cases: [Record<string, unknown>, number[]][] = [
      [{}, [1, 268]], // defaults: BOS, no EOS (tokenizer.json's own processor agrees)
      [{ add_eos_token: true }, [1, 268, 2]],
      [{ add_bos_token: false }, [268]],
      [{ add_bos_token: false, add_eos_token: true }, [268, 2]],
      [{ tokenizer_class: "LlamaTokenizerFast", add_eos_token: true }, [1, 268, 2]],
      // other classes (PreTrainedTokenizerFast, Qwen2, GPT-2) keep tokenizer.json's post-processor in v4.47
      [{ tokenizer_class: "PreTrainedTokenizerFast", add_bos_token: false }, [1, 268]],
    ];
    for (const [extra, want] of cases) {
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ ...LLAMA_CONFIG, ...extra }));
      const tok = await loadTokenizer(dir);
      assert.deepEqual(tok.encode("hello"), want, JSON.stringify(extra));
      assert.deepEqual(tok.encode("hello", { add_special_tokens: false }), [268], JSON.stringify(extra));
    }
    for (
      const [extra, re] of [
        [{ add_eos_token: "yes" }, /tokenizer_config\.json add_eos_token must be true or false, got "yes"/],
        [{ add_eos_token: true, eos_token: null }, /sets add_eos_token true but eos_token is null/],
        [{ add_eos_token: true, eos_token: "<end>" }, /its eos_token "<end>" is not in tokenizer\.json/],
      ] as const
    ) {
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ ...LLAMA_CONFIG, ...extra }));
      await assert.rejects(() => loadTokenizer(dir), { name: "TypeError", message: re });
    }
    // a Llama config that names no special tokens has the class's, as LlamaTokenizerFast; other classes none
    for (
      const [cls, bos, eos] of [["LlamaTokenizer", 1, 2], ["PreTrainedTokenizerFast", null, null]] as const
    ) {
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ tokenizer_class: cls }));
      const tok = await loadTokenizer(dir);
      assert.deepEqual([tok.bos_token_id, tok.eos_token_id], [bos, eos], cls);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("split_special_tokens true is refused (HF encodes special tokens in text as text; transformers.js cannot)", async () => {
  const dir = await writeTokenizer(llamaJson(), { ...LLAMA_CONFIG, split_special_tokens: false });
  try {
    assert.deepEqual((await loadTokenizer(dir)).encode("hello</s>"), [1, 268, 2]);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ ...LLAMA_CONFIG, split_special_tokens: true }),
    );
    await assert.rejects(() => loadTokenizer(dir), {
      name: "TypeError",
      message:
        /tokenizer_config\.json sets split_special_tokens true, which fledge does not support; remove it/,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("add_prefix_space in tokenizer_config.json sets a ByteLevel pre-tokenizer's (default false), as PreTrainedTokenizerFast", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const trained = await trainBpeTokenizer(["hello world ".repeat(20)], { vocab_size: 270 });
    await trained.save(dir);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
    const json = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`));
    const plain = trained.encode("hello"), spaced = trained.encode(" hello");
    assert.notDeepEqual(plain, spaced);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ ...config, add_prefix_space: true }),
    );
    assert.deepEqual((await loadTokenizer(dir)).encode("hello"), spaced);
    // tokenizer.json says true, the config says nothing: HF uses false
    json.pre_tokenizer.add_prefix_space = true;
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    delete config.add_prefix_space;
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
    assert.deepEqual((await loadTokenizer(dir)).encode("hello"), plain);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ ...LLAMA_CONFIG, add_prefix_space: true }),
    );
    await assert.rejects(() => loadTokenizer(dir), {
      name: "TypeError",
      message: /sets add_prefix_space for a LlamaTokenizer.*remove add_prefix_space/,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("do_lower_case / strip_accents of a BertTokenizer config set its BertNormalizer, as BertTokenizerFast", async () => {
  const vocab = { "[UNK]": 0, "hello": 1, "Hello": 2, "café": 3, "cafe": 4 };
  const tokenizer = {
    version: "1.0",
    added_tokens: [{
      id: 0,
      content: "[UNK]",
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }],
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
  const dir = await writeTokenizer(tokenizer, { tokenizer_class: "BertTokenizer", do_lower_case: false });
  try {
    assert.deepEqual((await loadTokenizer(dir)).encode("Hello café"), [2, 3]);
    const cases: [Record<string, unknown>, number[]][] = [
      [{ tokenizer_class: "BertTokenizer" }, [1, 4]], // defaults: lowercase, and strip_accents null follows it
      [{ tokenizer_class: "BertTokenizer", strip_accents: false }, [1, 3]],
      [{ tokenizer_class: "PreTrainedTokenizerFast", do_lower_case: false }, [1, 4]], // not a BERT class: tokenizer.json's
    ];
    for (const [config, want] of cases) {
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
      assert.deepEqual((await loadTokenizer(dir)).encode("Hello café"), want, JSON.stringify(config));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
