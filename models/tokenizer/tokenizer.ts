/**
 * Tokenizers for fledge: the {@link Tokenizer} interface the rest of the kit uses, and
 * {@link loadTokenizer}, which loads any Hugging Face tokenizer folder (`tokenizer.json`,
 * `tokenizer_config.json`, `special_tokens_map.json`, `chat_template.jinja`) through
 * `@huggingface/transformers` v4 (its `PreTrainedTokenizer`, built from the parsed files, so nothing
 * is ever downloaded). Byte-level BPE training for from-scratch models lives in `bpe.ts`.
 * @module
 */
import type { PreTrainedTokenizer } from "npm:@huggingface/transformers@^4";
import { useRustAddedTokenRules } from "./_added.ts";
import {
  ChatTemplateRenderer,
  checkTemplateFlags,
  continueFinalMessage,
  renderGuarded,
  SPECIAL_TOKEN_KEYS,
  tokenContent,
  tokenContents,
} from "./_chat.ts";
import { resolveConfig } from "./_config.ts";
import { checkIds, readTokenizerFiles, writeTokenizerFiles } from "./_files.ts";
import { checkBooleans, show } from "../../util/problems.ts";
import type {
  ChatMessage,
  ChatTemplateOptions,
  ChatTemplateResult,
  DecodeOptions,
  EncodeOptions,
  Tokenizer,
} from "./types.ts";

export type {
  ChatMessage,
  ChatTemplateOptions,
  ChatTemplateResult,
  DecodeOptions,
  EncodeOptions,
  Tokenizer,
} from "./types.ts";
export { SAVED_TOKENIZER_FILES } from "./_files.ts";

/** A tokenizer loaded from Hugging Face files, backed by transformers.js `PreTrainedTokenizer`. */
class HfTokenizer implements Tokenizer {
  readonly vocab_size: number;
  readonly bos_token_id: number | null;
  readonly eos_token_id: number | null;
  readonly pad_token_id: number | null;
  readonly special_token_ids: readonly number[];
  readonly chat_template: string | null;
  readonly chat_templates: Readonly<Record<string, string>>;
  readonly #hf: PreTrainedTokenizer;
  readonly #tokenizerText: string;
  readonly #config: Record<string, unknown>;
  readonly #templateSpecials: Record<string, unknown>;
  readonly #where: string;
  readonly #renderer = new ChatTemplateRenderer();
  readonly #idToToken: (string | undefined)[] = [];

  constructor(
    hf: PreTrainedTokenizer,
    tokenizerText: string,
    config: Record<string, unknown>,
    where: string,
  ) {
    this.#hf = hf;
    this.#tokenizerText = tokenizerText;
    this.#config = config;
    this.#where = where;
    // HF passes its special_tokens_map to templates, additional_special_tokens included
    // (transformers.js does not)
    const extra = config.additional_special_tokens;
    this.#templateSpecials = Array.isArray(extra) ? { additional_special_tokens: tokenContents(extra) } : {};
    for (const [token, id] of hf.get_vocab() as Map<string, number>) this.#idToToken[id] = token;
    this.vocab_size = this.#idToToken.length;
    const idOf = (key: string) => {
      const content = tokenContent(config[key]);
      return content === null ? null : this.tokenToId(content);
    };
    this.bos_token_id = idOf("bos_token");
    this.eos_token_id = idOf("eos_token");
    this.pad_token_id = idOf("pad_token");
    this.special_token_ids = [...(hf.all_special_ids as number[])];
    const template = config.chat_template;
    this.chat_template = typeof template === "string"
      ? template
      : Array.isArray(template)
      ? (template.find((t) => t?.name === "default")?.template ?? null)
      : null;
    const named = Array.isArray(template) ? template.filter((t) => t?.name !== "default") : [];
    this.chat_templates = Object.freeze(Object.fromEntries(named.map((t) => [t.name, t.template])));
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") {
      throw new TypeError(`Cannot encode: text must be a string, got ${show(text)}`);
    }
    checkBooleans(options, ["add_special_tokens"], "Cannot encode");
    return this.#hf.encode(text, { add_special_tokens: options.add_special_tokens ?? true });
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    checkBooleans(options, ["skip_special_tokens", "clean_up_tokenization_spaces"], "Cannot decode");
    if (ids.length === 0) return "";
    checkIds(ids, this.vocab_size);
    return this.#hf.decode(Array.from(ids), {
      skip_special_tokens: options.skip_special_tokens ?? false,
      clean_up_tokenization_spaces: options.clean_up_tokenization_spaces ?? null,
    } as { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean });
  }

  tokenToId(token: string): number | null {
    return (this.#hf.convert_tokens_to_ids(token) as number | undefined) ?? null;
  }

  idToToken(id: number): string | null {
    return this.#idToToken[id] ?? null;
  }

  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): ChatTemplateResult {
    checkTemplateFlags(options);
    let template: unknown = this.#config.chat_template;
    let where = this.#where;
    if (options.chat_template !== undefined) {
      const named = Array.isArray(template)
        ? template.find((t) => t?.name === options.chat_template)?.template
        : undefined;
      template = named ?? options.chat_template;
      if (named === undefined) where = options.chat_template_source ?? where;
    } else if (Array.isArray(template)) {
      // HF's get_chat_template: "tool_use" when tools are given and it exists, else "default"
      const tools = options.template_kwargs?.tools;
      const names = template.map((t) => t?.name);
      template = (tools !== undefined && tools !== null ? this.chat_templates.tool_use : undefined) ??
        this.chat_template;
      if (template === null) {
        throw new TypeError(
          `Cannot apply chat template: ${this.#where} has named chat templates and none is "default" ` +
            `(${names.join(", ")}); pass options.chat_template with one of their names`,
        );
      }
    }
    if (typeof template !== "string") {
      throw new TypeError(
        `Cannot apply chat template: ${this.#where} has no chat_template; add one to ` +
          `tokenizer_config.json (key "chat_template") or a chat_template.jinja file, or pass options.chat_template`,
      );
    }
    // Parse errors are ours (SyntaxError naming the file); rendering is transformers.js's own.
    this.#renderer.compile(template, where);
    const chatTemplate = template;
    const text = renderGuarded(where, () =>
      this.#hf.apply_chat_template(messages, {
        ...this.#templateSpecials,
        ...options.template_kwargs,
        chat_template: chatTemplate,
        add_generation_prompt: options.add_generation_prompt ?? false,
        tokenize: false,
      }) as unknown as string);
    const cut = options.continue_final_message ? continueFinalMessage(text, messages, where) : text;
    return { text: cut, ids: this.encode(cut, { add_special_tokens: false }) };
  }

  async save(dir: string): Promise<void> {
    await writeTokenizerFiles(dir, this.#tokenizerText, this.#config);
  }
}

/**
 * Load a Hugging Face tokenizer folder through `@huggingface/transformers` v4, offline. The tokenizer
 * is built from the parsed files (no hub lookup, no cache, no download).
 *
 * @param dir a folder with `tokenizer.json` (+ optional `tokenizer_config.json`,
 *   `special_tokens_map.json`, `chat_template.jinja`); use `models/hub.ts` to fetch a hub repo first.
 * @returns the tokenizer.
 * @throws {Deno.errors.NotFound} when `tokenizer.json` is missing.
 * @throws {SyntaxError} when a file is not valid JSON or transformers.js rejects its content.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trainBpeTokenizer } from "./bpe.ts";
 * import { loadTokenizer } from "./tokenizer.ts";
 * const dir = await Deno.makeTempDir();
 * const trained = await trainBpeTokenizer(["low lower lowest ".repeat(20)], { vocab_size: 270 });
 * await trained.save(dir);
 * const tok = await loadTokenizer(dir);
 * assert.deepEqual(tok.encode("lowest low"), trained.encode("lowest low"));
 * assert.equal(tok.decode(tok.encode("lower, lowest!")), "lower, lowest!");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const files = await readTokenizerFiles(dir);
  // the config settings transformers (Python) applies on load, which transformers.js does not read
  const resolved = resolveConfig(files.tokenizer, files.config, `${dir}/tokenizer_config.json`);
  const tokenizer = resolved.tokenizer;
  // tokenizers.js requires these keys; older tokenizer.json files may omit the null ones.
  for (const key of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) tokenizer[key] ??= null;
  tokenizer.added_tokens ??= [];
  const { PreTrainedTokenizer } = await import("npm:@huggingface/transformers@^4");
  let hf: PreTrainedTokenizer;
  try {
    // a special token given as {content, ...} without "__type" (special_tokens_map.json's usual
    // form, which Python reads) is its content for transformers.js, which refuses it otherwise
    const config = { ...resolved.config };
    for (const key of [...SPECIAL_TOKEN_KEYS, "additional_special_tokens"]) {
      config[key] = tokenContents(config[key]);
    }
    hf = new PreTrainedTokenizer(tokenizer, config);
  } catch (e) {
    throw new SyntaxError(
      `Cannot load tokenizer from ${dir}/tokenizer.json: ${(e as Error).message}; ` +
        `the file must be in the Hugging Face tokenizers format that transformers.js v4 supports`,
      { cause: e },
    );
  }
  useRustAddedTokenRules(hf); // single_word added tokens match whole words only, as in Rust tokenizers
  return new HfTokenizer(hf, files.tokenizerText, resolved.config, files.chatTemplateSource ?? `${dir}`);
}
