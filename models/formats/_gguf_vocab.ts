/**
 * Private: the tokenizer metadata of a GGUF file, as llama.cpp's `convert_hf_to_gguf.py`
 * (`_set_vocab_gpt2`, gguf-py `SpecialVocab`) writes it for a byte-level BPE tokenizer:
 * `tokenizer.ggml.model = "gpt2"`, `pre` (which pre-tokenizer regex llama.cpp must use), `tokens`
 * (the byte-level strings, `[PAD<id>]` for ids the tokenizer lacks), `token_type` (1 normal,
 * 3 control = special added token, 4 user-defined = other added token, 5 unused = padding),
 * `merges` (`"a b"`), the special token ids (from the tokenizer, else from the model config as
 * `SpecialVocab` falls back to `config.json`), `add_bos_token` / `add_eos_token` and the chat template.
 *
 * The tokenizer is read through the {@linkcode Tokenizer} interface only: it is saved to a
 * temporary folder and its `tokenizer.json` read back, so any implementation works.
 * @module
 */
import { join } from "node:path";
import type { ModelConfig } from "../config_types.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { ChatTemplateRenderer } from "../tokenizer/_chat.ts";
import type { GgufValue } from "./_gguf_file.ts";

/** gguf-py `TokenType`. */
const TOKEN_TYPE = { normal: 1, control: 3, user_defined: 4, unused: 5 } as const;

/** Split regexes of `tokenizer.json` pre-tokenizers and the `tokenizer.ggml.pre` llama.cpp knows them by. */
const KNOWN_SPLITS: Record<string, string> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    "llama-bpe",
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    "qwen2",
};

type Json = Record<string, unknown>;

/** `tokenizer.ggml.pre` for a `tokenizer.json` pre-tokenizer, or null when llama.cpp has none for it. */
function preTokenizerName(pre: Json | null): string | null {
  if (!pre) return null;
  if (pre.type === "ByteLevel") return pre.use_regex === false ? null : "gpt-2";
  if (pre.type !== "Sequence" || !Array.isArray(pre.pretokenizers)) return null;
  const parts = pre.pretokenizers as Json[];
  const split = parts.find((p) => p.type === "Split");
  const byteLevel = parts.find((p) => p.type === "ByteLevel");
  const regex = (split?.pattern as Json | undefined)?.Regex;
  if (parts.length !== 2 || !byteLevel || byteLevel.use_regex !== false || typeof regex !== "string") {
    return null;
  }
  return KNOWN_SPLITS[regex] ?? null;
}

/** The tokenizer's files, read back from a temporary save. */
async function savedFiles(tok: Tokenizer): Promise<{ json: Json }> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-gguf-tok-" });
  try {
    await tok.save(dir);
    return { json: JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json"))) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The `tokenizer.*` metadata of `tok` for a model of `config.vocab_size` ids.
 * @throws {RangeError} for a tokenizer that is not byte-level BPE, an unknown pre-tokenizer, or
 *   more ids than the model has
 */
export async function tokenizerMetadata(tok: Tokenizer, config: ModelConfig): Promise<[string, GgufValue][]> {
  const where = "Cannot export the tokenizer to GGUF";
  if (tok.vocab_size > config.vocab_size) {
    throw new RangeError(
      `${where}: it has ${tok.vocab_size} ids but the model's vocab_size is ${config.vocab_size}; ` +
        `resize the embeddings or use the model's own tokenizer`,
    );
  }
  const { json } = await savedFiles(tok);
  const model = (json.model ?? {}) as Json;
  const decoder = json.decoder as Json | null;
  if (model.type !== "BPE" || decoder?.type !== "ByteLevel") {
    throw new RangeError(
      `${where}: only byte-level BPE tokenizers (GPT-2 style, tokenizer.ggml.model "gpt2") are supported, ` +
        `this one is model ${String(model.type)} with decoder ${String(decoder?.type)}; ` +
        `convert it with llama.cpp's convert_hf_to_gguf.py instead`,
    );
  }
  const pre = preTokenizerName(json.pre_tokenizer as Json | null);
  if (!pre) {
    throw new RangeError(
      `${where}: its pre-tokenizer (${JSON.stringify(json.pre_tokenizer)}) is none that llama.cpp knows ` +
        `(ByteLevel with the GPT-2 regex, or the Llama 3 / Qwen2 split); use llama.cpp's convert_hf_to_gguf.py`,
    );
  }
  const added = new Map<number, boolean>();
  for (const a of (json.added_tokens ?? []) as Json[]) added.set(a.id as number, a.special === true);
  const tokens: string[] = [], types: number[] = [];
  for (let id = 0; id < config.vocab_size; id++) {
    const t = id < tok.vocab_size ? tok.idToToken(id) : null;
    if (t === null) {
      tokens.push(`[PAD${id}]`);
      types.push(TOKEN_TYPE.unused);
    } else {
      tokens.push(t);
      types.push(
        !added.has(id) ? TOKEN_TYPE.normal : added.get(id) ? TOKEN_TYPE.control : TOKEN_TYPE.user_defined,
      );
    }
  }
  // Merges are "a b" strings or [a, b] pairs; gguf-py writes pairs with spaces as U+0120 (Ġ).
  const merges = ((model.merges ?? []) as (string | [string, string])[]).map((m) =>
    typeof m === "string" ? m : m.map((p) => p.replaceAll(" ", "\u0120")).join(" ")
  );
  const first = (x: number | number[] | null) => (Array.isArray(x) ? x[0] ?? null : x);
  const bos = tok.bos_token_id ?? config.bos_token_id;
  const eos = tok.eos_token_id ?? first(config.eos_token_id);
  const pad = tok.pad_token_id ?? config.pad_token_id;
  // Whether encoding adds BOS / EOS, read from the tokenizer's behaviour (post-processor or config).
  const plain = tok.encode("a", { add_special_tokens: false });
  const full = tok.encode("a", { add_special_tokens: true });
  const addBos = full.length > plain.length && bos !== null && full[0] === bos;
  const addEos = full.length > plain.length && eos !== null && full.at(-1) === eos;

  const meta: [string, GgufValue][] = [
    ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "string", value: pre }],
    ["tokenizer.ggml.tokens", { type: "array", item: "string", value: tokens }],
    ["tokenizer.ggml.token_type", { type: "array", item: "i32", value: types }],
    ["tokenizer.ggml.merges", { type: "array", item: "string", value: merges }],
  ];
  if (bos !== null) meta.push(["tokenizer.ggml.bos_token_id", { type: "u32", value: bos }]);
  if (eos !== null) meta.push(["tokenizer.ggml.eos_token_id", { type: "u32", value: eos }]);
  if (pad !== null) meta.push(["tokenizer.ggml.padding_token_id", { type: "u32", value: pad }]);
  meta.push(["tokenizer.ggml.add_bos_token", { type: "bool", value: addBos }]);
  meta.push(["tokenizer.ggml.add_eos_token", { type: "bool", value: addEos }]);
  // Templates are parsed before they are written: llama.cpp would only fail on one at chat time.
  const renderer = new ChatTemplateRenderer();
  if (tok.chat_template !== null) {
    renderer.compile(tok.chat_template, "the tokenizer's chat_template");
    meta.push(["tokenizer.chat_template", { type: "string", value: tok.chat_template }]);
  }
  // Named templates (a list in tokenizer_config.json) as gguf-py writes them: each under
  // tokenizer.chat_template.<name>, its name's characters outside [A-Za-z0-9] as "_", and the
  // names in tokenizer.chat_templates.
  const names: string[] = [];
  for (const [name, template] of Object.entries(tok.chat_templates ?? {})) {
    const key = name.replace(/[^A-Za-z0-9]/g, "_");
    if (!key || typeof template !== "string") continue;
    if (names.includes(key)) {
      throw new RangeError(
        `Cannot export GGUF: the tokenizer's chat templates "${name}" and another both become ` +
          `tokenizer.chat_template.${key}; rename one in tokenizer_config.json`,
      );
    }
    renderer.compile(template, `the tokenizer's chat_template "${name}"`);
    meta.push([`tokenizer.chat_template.${key}`, { type: "string", value: template }]);
    names.push(key);
  }
  if (names.length) meta.push(["tokenizer.chat_templates", { type: "array", item: "string", value: names }]);
  return meta;
}
