/**
 * The `tokenizer_config.json` settings that transformers (Python, v4.47) applies on top of
 * `tokenizer.json` when `AutoTokenizer.from_pretrained` builds its fast tokenizer, applied here the
 * same way before transformers.js builds its own (its `PreTrainedTokenizer` reads none of them, so
 * they were silently ignored). Settings fledge cannot follow are refused, naming the file and key.
 * @module
 */
import { tokenContent } from "./_chat.ts";

/** The Python class a `tokenizer_class` names, without the `Fast` suffix AutoTokenizer adds. */
function className(config: Record<string, unknown>): string {
  const name = config.tokenizer_class;
  return typeof name === "string" ? name.replace(/Fast$/, "") : "PreTrainedTokenizer";
}

/**
 * BERT and the classes copied from it: their `__init__` defaults `clean_up_tokenization_spaces` to
 * true (every other class, and `PreTrainedTokenizerFast`, to false since transformers v4.45), and the
 * fast one sets its BertNormalizer from `do_lower_case`, `strip_accents` and `tokenize_chinese_chars`.
 */
const BERT_CLASSES = new Set([
  "BertTokenizer",
  "ConvBertTokenizer",
  "DistilBertTokenizer",
  "ElectraTokenizer",
  "FunnelTokenizer",
  "LayoutLMTokenizer",
  "LxmertTokenizer",
  "MobileBertTokenizer",
  "MPNetTokenizer",
  "RetriBertTokenizer",
  "SqueezeBertTokenizer",
]);

/**
 * The resolved `clean_up_tokenization_spaces` for a config: its value, or the default of its class
 * (transformers.js defaults to true for every class, so a Llama or Qwen decode lost spaces before
 * punctuation that HF keeps).
 * @throws {TypeError} when the value is not a boolean
 */
function cleanUp(config: Record<string, unknown>, where: string): boolean {
  const value = config.clean_up_tokenization_spaces;
  if (value === undefined || value === null) return BERT_CLASSES.has(className(config));
  if (typeof value !== "boolean") {
    throw new TypeError(
      `Cannot load tokenizer: ${where} clean_up_tokenization_spaces must be true or false, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return value;
}

/** A boolean setting of the config, or its default; anything else is refused. */
function flag(config: Record<string, unknown>, key: string, fallback: boolean, where: string): boolean {
  const value = config[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "boolean") {
    throw new TypeError(
      `Cannot load tokenizer: ${where} ${key} must be true or false, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/**
 * Classes whose fast tokenizer rebuilds its post-processor from `add_bos_token` (default true) and
 * `add_eos_token` (default false) in `__init__` (`update_post_processor`), replacing the one in
 * `tokenizer.json`; with the special tokens each class uses when the config names none.
 */
const BOS_EOS_CLASSES: Record<string, { bos_token: string; eos_token: string }> = {
  LlamaTokenizer: { bos_token: "<s>", eos_token: "</s>" },
  CodeLlamaTokenizer: { bos_token: "<s>", eos_token: "</s>" },
  GemmaTokenizer: { bos_token: "<bos>", eos_token: "<eos>" },
};

/** The id of a token in a parsed `tokenizer.json` (added tokens first, then the model's vocab). */
function tokenId(tokenizer: Record<string, unknown>, token: string): number | undefined {
  const added = Array.isArray(tokenizer.added_tokens) ? tokenizer.added_tokens : [];
  const hit = added.find((a) => a?.content === token);
  if (hit) return hit.id;
  const vocab = (tokenizer.model as { vocab?: unknown }).vocab;
  if (Array.isArray(vocab)) {
    const i = vocab.findIndex((v) => Array.isArray(v) && v[0] === token);
    return i < 0 ? undefined : i;
  }
  const id = vocab && typeof vocab === "object" ? (vocab as Record<string, unknown>)[token] : undefined;
  return Object.hasOwn(vocab ?? {}, token) && typeof id === "number" ? id : undefined;
}

/**
 * The TemplateProcessing post-processor Llama/Gemma's `update_post_processor` builds:
 * single `[bos:0] $A:0 [eos:0]`, pair `<single> [bos:1] $B:1 [eos:1]`.
 */
function bosEosPostProcessor(
  tokenizer: Record<string, unknown>,
  config: Record<string, unknown>,
  defaults: { bos_token: string; eos_token: string },
  where: string,
): unknown {
  const specials: [string, string][] = [];
  for (
    const [flagKey, tokenKey] of [["add_bos_token", "bos_token"], ["add_eos_token", "eos_token"]] as const
  ) {
    if (!flag(config, flagKey, flagKey === "add_bos_token", where)) continue;
    const token = config[tokenKey] === undefined ? defaults[tokenKey] : tokenContent(config[tokenKey]);
    if (token === null) {
      throw new TypeError(
        `Cannot load tokenizer: ${where} sets ${flagKey} true but ${tokenKey} is null; name a ${tokenKey}`,
      );
    }
    if (tokenId(tokenizer, token) === undefined) {
      throw new TypeError(
        `Cannot load tokenizer: ${where} sets ${flagKey} true but its ${tokenKey} "${token}" is not in tokenizer.json`,
      );
    }
    specials.push([flagKey, token]);
  }
  const bos = specials.find(([k]) => k === "add_bos_token")?.[1];
  const eos = specials.find(([k]) => k === "add_eos_token")?.[1];
  const part = (seq: "A" | "B", type_id: number) => [
    ...(bos === undefined ? [] : [{ SpecialToken: { id: bos, type_id } }]),
    { Sequence: { id: seq, type_id } },
    ...(eos === undefined ? [] : [{ SpecialToken: { id: eos, type_id } }]),
  ];
  const special_tokens: Record<string, unknown> = {};
  for (const [, token] of specials) {
    special_tokens[token] = { id: token, ids: [tokenId(tokenizer, token)], tokens: [token] };
  }
  return {
    type: "TemplateProcessing",
    single: part("A", 0),
    pair: [...part("A", 0), ...part("B", 1)],
    special_tokens,
  };
}

/**
 * Resolve the config settings transformers applies when it loads a fast tokenizer. Returns copies;
 * the inputs are not changed.
 * @param tokenizer the parsed `tokenizer.json`
 * @param config the merged `tokenizer_config.json` (+ `special_tokens_map.json`)
 * @param where the config file, for messages
 * @returns the tokenizer and config to give transformers.js
 * @throws {TypeError} when a setting has the wrong type or cannot be followed
 */
export function resolveConfig(
  tokenizer: Record<string, unknown>,
  config: Record<string, unknown>,
  where: string,
): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  if (flag(config, "split_special_tokens", false, where)) {
    // HF then encodes "</s>" in text as plain text (tokenizers' encode_special_tokens); transformers.js
    // has no such mode and always matched it as the special token
    throw new TypeError(
      `Cannot load tokenizer: ${where} sets split_special_tokens true, which fledge does not support; ` +
        `remove it (special tokens in text are then matched as tokens)`,
    );
  }
  const outConfig: Record<string, unknown> = {
    ...config,
    clean_up_tokenization_spaces: cleanUp(config, where),
  };
  const outTokenizer = { ...tokenizer };
  const pre = tokenizer.pre_tokenizer as Record<string, unknown> | null | undefined;
  if (className(config) === "LlamaTokenizer") {
    if (config.add_prefix_space != null) {
      // LlamaTokenizerFast then converts tokenizer.model (sentencepiece) again instead of reading tokenizer.json
      throw new TypeError(
        `Cannot load tokenizer: ${where} sets add_prefix_space for a LlamaTokenizer, which HF applies by ` +
          `converting tokenizer.model again; fledge reads tokenizer.json only: remove add_prefix_space`,
      );
    }
  } else if (pre?.type === "ByteLevel") {
    // PreTrainedTokenizerFast.__init__: a pre-tokenizer with add_prefix_space takes the config's (default false)
    outTokenizer.pre_tokenizer = { ...pre, add_prefix_space: flag(config, "add_prefix_space", false, where) };
  }
  const norm = tokenizer.normalizer as Record<string, unknown> | null | undefined;
  if (BERT_CLASSES.has(className(config)) && norm?.type === "BertNormalizer") {
    // BertTokenizerFast.__init__ rebuilds the normalizer when any of the three differs from the config
    const accents = config.strip_accents ?? null;
    if (accents !== null && typeof accents !== "boolean") {
      throw new TypeError(
        `Cannot load tokenizer: ${where} strip_accents must be true, false or null, got ${
          JSON.stringify(accents)
        }`,
      );
    }
    outTokenizer.normalizer = {
      ...norm,
      lowercase: flag(config, "do_lower_case", true, where),
      strip_accents: accents,
      handle_chinese_chars: flag(config, "tokenize_chinese_chars", true, where),
    };
  }
  const bosEos = BOS_EOS_CLASSES[className(config)];
  if (bosEos) {
    outTokenizer.post_processor = bosEosPostProcessor(tokenizer, config, bosEos, where);
    // the class's own tokens when the config names none (LlamaTokenizerFast.__init__'s defaults), so
    // bos_token_id / eos_token_id are the ids HF reports (a token missing from the vocabulary stays unset)
    for (const key of ["bos_token", "eos_token"] as const) {
      if (config[key] === undefined && tokenId(tokenizer, bosEos[key]) !== undefined) {
        outConfig[key] = bosEos[key];
      }
    }
  }
  return { tokenizer: outTokenizer, config: outConfig };
}
