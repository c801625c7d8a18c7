/**
 * Serialization of a byte-level BPE tokenizer into the Hugging Face files, as `tokenizers` (Rust)
 * and transformers (Python) write them for a GPT-2 style tokenizer: `tokenizer.json` with a BPE
 * model, ByteLevel pre-tokenizer (add_prefix_space false, use_regex true) and decoder, a ByteLevel
 * post-processor (plus TemplateProcessing when BOS/EOS are added), the specials as `added_tokens`;
 * and `tokenizer_config.json` with `tokenizer_class` `PreTrainedTokenizerFast`.
 * @module
 */
import type { BpeTokenizerSpec } from "./types.ts";

function byteLevel(addPrefixSpace: boolean, trimOffsets: boolean) {
  return { type: "ByteLevel", add_prefix_space: addPrefixSpace, trim_offsets: trimOffsets, use_regex: true };
}

function postProcessor(spec: BpeTokenizerSpec, tokens: string[]): unknown {
  const bos = spec.add_bos_token ? spec.bos_token ?? null : null;
  const eos = spec.add_eos_token ? spec.eos_token ?? null : null;
  if (bos === null && eos === null) return byteLevel(false, false);
  const template = (seq: "A" | "B", typeId: number) => [
    ...(bos === null ? [] : [{ SpecialToken: { id: bos, type_id: typeId } }]),
    { Sequence: { id: seq, type_id: typeId } },
    ...(eos === null ? [] : [{ SpecialToken: { id: eos, type_id: typeId } }]),
  ];
  const specialTokens: Record<string, unknown> = {};
  for (const t of [bos, eos]) {
    if (t !== null) specialTokens[t] = { id: t, ids: [tokens.indexOf(t)], tokens: [t] };
  }
  return {
    type: "Sequence",
    processors: [
      byteLevel(false, false),
      {
        type: "TemplateProcessing",
        single: template("A", 0),
        pair: [...template("A", 0), ...template("B", 1)],
        special_tokens: specialTokens,
      },
    ],
  };
}

/**
 * The `tokenizer.json` text: 2-space JSON, the vocab in id order (written by hand, because object
 * key order would put integer-like tokens such as `"0"` first), merges as `"a b"` strings (byte-level
 * tokens never contain a space, so this older form is unambiguous and every `tokenizers` reads it).
 */
export function tokenizerJson(spec: BpeTokenizerSpec, tokens: string[]): string {
  const head = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: spec.special_tokens.map(({ id, content }) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel(false, true),
    post_processor: postProcessor(spec, tokens),
    decoder: byteLevel(true, true),
  };
  const model = {
    type: "BPE",
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
  };
  const vocabLines: string[] = [];
  tokens.forEach((t, id) => vocabLines.push(`      ${JSON.stringify(t)}: ${id}`));
  const mergeLines = spec.merges.map(([a, b]) => `      ${JSON.stringify(`${a} ${b}`)}`);
  const headText = JSON.stringify(head, null, 2).slice(0, -2);
  const modelText = JSON.stringify(model, null, 2).slice(0, -2).replaceAll("\n", "\n  ");
  return `${headText},\n  "model": ${modelText},\n    "vocab": {\n${vocabLines.join(",\n")}\n    },\n` +
    `    "merges": [\n${mergeLines.join(",\n")}\n    ]\n  }\n}\n`;
}

/** The `tokenizer_config.json` object; `clean_up_tokenization_spaces` is false so decoding is exact. */
export function tokenizerConfig(spec: BpeTokenizerSpec): Record<string, unknown> {
  const addedTokensDecoder: Record<string, unknown> = {};
  for (const { id, content } of spec.special_tokens) {
    addedTokensDecoder[String(id)] = {
      content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: true,
    };
  }
  const config: Record<string, unknown> = {
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: spec.bos_token ?? null,
    clean_up_tokenization_spaces: false,
    eos_token: spec.eos_token ?? null,
    errors: "replace",
    pad_token: spec.pad_token ?? null,
    tokenizer_class: "PreTrainedTokenizerFast",
    unk_token: spec.unk_token ?? null,
  };
  if (spec.model_max_length !== undefined) config.model_max_length = spec.model_max_length;
  if (spec.chat_template != null) config.chat_template = spec.chat_template;
  return config;
}
