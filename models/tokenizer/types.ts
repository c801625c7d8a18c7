/**
 * The tokenizer types shared by `tokenizer.ts` (Hugging Face files through transformers.js),
 * `bpe.ts` (byte-level BPE training) and their helpers: plain types with no imports, so neither
 * file imports the other.
 * @module
 */

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Add the tokens the tokenizer's post-processor adds (e.g. BOS); default true, as in HF. */
  add_special_tokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, pad, ...) from the text; default false. */
  skip_special_tokens?: boolean;
  /**
   * Remove spaces before punctuation (`" ."` -> `"."`); default: the tokenizer config's
   * `clean_up_tokenization_spaces` (tokenizers trained by fledge set it false so that decoding is exact).
   */
  clean_up_tokenization_spaces?: boolean;
}

/** One chat message; `role` is usually `system`, `user` or `assistant`. */
export interface ChatMessage {
  /** Speaker: usually `system`, `user` or `assistant`; the template decides which it accepts. */
  role: string;
  /** The message text. */
  content: string;
  /** Other fields (e.g. `tool_calls`, `name`) are passed to the chat template as they are. */
  [key: string]: unknown;
}

/** Options of {@link Tokenizer.applyChatTemplate}. */
export interface ChatTemplateOptions {
  /** End with the text that opens an assistant turn (the template decides what); default false. */
  add_generation_prompt?: boolean;
  /**
   * End right after the last message's text (no end-of-turn), so a model continues it, as HF's
   * option of that name (a prefilled assistant answer); not with `add_generation_prompt`.
   */
  continue_final_message?: boolean;
  /** A Jinja template to use instead of the tokenizer's, or the name of one of its templates. */
  chat_template?: string;
  /**
   * Where a given `chat_template` was read from (a file), named in its parse and render errors
   * instead of the tokenizer's folder. A fledge addition; HF has no such option.
   */
  chat_template_source?: string;
  /** Extra template variables (e.g. `tools`, `documents`, `enable_thinking`). */
  template_kwargs?: Record<string, unknown>;
}

/** The rendered prompt and its ids (encoded without adding special tokens, as in HF). */
export interface ChatTemplateResult {
  /** The rendered template text. */
  text: string;
  /** `text` encoded without adding special tokens (any the template wrote are in the text). */
  ids: number[];
}

/** A text tokenizer: the contract between fledge and any tokenizer implementation. */
export interface Tokenizer {
  /** Number of ids: the largest id (vocabulary or added token) + 1; the embedding needs this many rows. */
  readonly vocab_size: number;
  /** Id of `bos_token`, or null when the tokenizer has none. */
  readonly bos_token_id: number | null;
  /** Id of `eos_token`, or null when the tokenizer has none. */
  readonly eos_token_id: number | null;
  /** Id of `pad_token`, or null when the tokenizer has none (callers then usually pad with EOS). */
  readonly pad_token_id: number | null;
  /** Ids of all special tokens (skipped by `decode` with `skip_special_tokens`). */
  readonly special_token_ids: readonly number[];
  /** The Jinja chat template, or null when there is none (then `applyChatTemplate` throws). */
  readonly chat_template: string | null;
  /**
   * The named templates besides the default, when `tokenizer_config.json` lists several
   * (`[{name, template}]`, e.g. `tool_use`, `rag`): name -> template. Absent or empty otherwise.
   */
  readonly chat_templates?: Readonly<Record<string, string>>;
  /** Text -> ids. */
  encode(text: string, options?: EncodeOptions): number[];
  /** Ids -> text. An empty list gives "". */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  /** The id of a token string (vocabulary or added token), or null. */
  tokenToId(token: string): number | null;
  /** The token string of an id, or null when out of range. */
  idToToken(id: number): string | null;
  /** Render messages with the chat template, then encode the text without adding special tokens. */
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): ChatTemplateResult;
  /** Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` into `dir`. */
  save(dir: string): Promise<void>;
}

/** Everything that defines a byte-level BPE tokenizer (what `tokenizer.json` + config store). */
export interface BpeTokenizerSpec {
  /** Token string (GPT-2 byte alphabet) -> id; must hold all 256 single bytes. */
  vocab: Record<string, number>;
  /** Merges in rank order, as pairs of token strings. */
  merges: [string, string][];
  /** Special (added) tokens and their ids, e.g. `[{id: 0, content: "<|endoftext|>"}]`. */
  special_tokens: { id: number; content: string }[];
  /** Beginning-of-sequence token (one of `special_tokens`); sets `bos_token_id`. Absent or null: none. */
  bos_token?: string | null;
  /** End-of-sequence token (one of `special_tokens`); sets `eos_token_id`. Absent or null: none. */
  eos_token?: string | null;
  /** Padding token (one of `special_tokens`); sets `pad_token_id`. Absent or null: none. */
  pad_token?: string | null;
  /** Unknown token, saved and given to chat templates; byte-level BPE never emits it. Absent or null: none. */
  unk_token?: string | null;
  /** Prepend `bos_token` when encoding with `add_special_tokens` (a TemplateProcessing post-processor). */
  add_bos_token?: boolean;
  /** Append `eos_token` when encoding with `add_special_tokens`. */
  add_eos_token?: boolean;
  /** Jinja chat template for {@linkcode Tokenizer.applyChatTemplate}; absent or null: none (it throws). */
  chat_template?: string | null;
  /** The model's context length in tokens, saved as `model_max_length` in `tokenizer_config.json`. */
  model_max_length?: number;
}
