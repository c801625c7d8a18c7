/**
 * Byte-level BPE (GPT-2 style) for from-scratch models: {@link trainBpeTokenizer} learns merges from
 * text, and {@link BpeTokenizer} encodes and decodes with them and saves the Hugging Face files
 * (`tokenizer.json` in the `tokenizers` format, `tokenizer_config.json`, `special_tokens_map.json`).
 *
 * The pipeline is GPT-2's (Radford et al. 2019; openai/gpt-2 `src/encoder.py`): split off special
 * tokens, split the rest with the GPT-2 regex, map each piece's UTF-8 bytes to the byte-to-unicode
 * alphabet, then apply merges by rank. The saved `tokenizer.json` loaded by `@huggingface/tokenizers`,
 * transformers.js or Python `tokenizers` gives the same ids as {@link BpeTokenizer.encode}.
 *
 * Id layout of a trained tokenizer: the special tokens first (0..k-1, in the given order), then the
 * 256 bytes in byte order (k + byte), then one id per merge that made a new string.
 * @module
 */
import { formatDuration } from "../../util/format.ts";
import { createProgress } from "../../util/progress.ts";
import { BYTE_TO_CHAR, preTokenize, SpecialSplitter, tokenToBytes } from "./_bytes.ts";
import { ChatTemplateRenderer, checkTemplateFlags, continueFinalMessage } from "./_chat.ts";
import { checkIds, writeTokenizerFiles } from "./_files.ts";
import { tokenizerConfig, tokenizerJson } from "./_json.ts";
import { learnMerges } from "./_merge.ts";
import { applyMerges, type MergeTable } from "./_apply.ts";
import type {
  BpeTokenizerSpec,
  ChatMessage,
  ChatTemplateOptions,
  ChatTemplateResult,
  DecodeOptions,
  EncodeOptions,
  Tokenizer,
} from "./types.ts";
import { checkBooleans, show } from "../../util/problems.ts";

export type { BpeTokenizerSpec } from "./types.ts";

/** Options of {@link trainBpeTokenizer}. */
export interface BpeTrainOptions {
  /** Total number of ids: special tokens + 256 bytes + merges. */
  vocab_size: number;
  /** A pair must occur at least this often to be merged; default 2. */
  min_frequency?: number;
  /** Special tokens, given ids 0..k-1; default `["<|endoftext|>"]`. Never split, never merged. */
  special_tokens?: string[];
  /** BOS token (one of `special_tokens`, or null); default the first special token, as in GPT-2. */
  bos_token?: string | null;
  /** EOS token; default the first special token. */
  eos_token?: string | null;
  /** Padding token; default the first special token. */
  pad_token?: string | null;
  /** Unknown token (byte-level BPE never needs one); default the first special token, as in GPT-2. */
  unk_token?: string | null;
  /** Prepend BOS when encoding with `add_special_tokens`; default false (GPT-2 adds nothing). */
  add_bos_token?: boolean;
  /** Append EOS when encoding with `add_special_tokens`; default false. */
  add_eos_token?: boolean;
  /** A Jinja chat template stored in `tokenizer_config.json`. */
  chat_template?: string;
  /** `model_max_length` for `tokenizer_config.json` (the model's context length). */
  model_max_length?: number;
  /** Print progress lines to stderr; default false. */
  progress?: boolean;
}

const encoder = new TextEncoder();

/**
 * A byte-level BPE tokenizer with its own fast encoder (merge ranks, a cache per pre-token) that
 * matches Hugging Face `tokenizers` on the same files. Built by {@link trainBpeTokenizer}, or from a
 * {@link BpeTokenizerSpec}.
 */
export class BpeTokenizer implements Tokenizer {
  readonly vocab_size: number;
  readonly bos_token_id: number | null;
  readonly eos_token_id: number | null;
  readonly pad_token_id: number | null;
  readonly special_token_ids: readonly number[];
  readonly chat_template: string | null;
  /** The definition this tokenizer was built from. */
  readonly spec: Readonly<BpeTokenizerSpec>;
  readonly #tokens: string[];
  readonly #ids = new Map<string, number>();
  readonly #bytes: (Uint8Array | null)[];
  readonly #byteId = new Int32Array(256);
  readonly #table: MergeTable;
  readonly #special = new Set<number>();
  readonly #splitter: SpecialSplitter;
  readonly #specialIds: number[];
  // A null-prototype object as the per-piece cache: faster than a Map for short string keys in V8.
  #cache: Record<string, number[]> = Object.create(null);
  #cacheSize = 0;
  readonly #renderer = new ChatTemplateRenderer();

  /**
   * Builds the lookup tables (ids, byte ids, merge ranks) from a spec; the spec is kept as given.
   *
   * @param spec vocabulary, merges and special tokens.
   * @throws {RangeError} when ids collide, a byte is missing, or a merge names an unknown token.
   */
  constructor(spec: BpeTokenizerSpec) {
    this.spec = spec;
    this.#tokens = [];
    for (const [token, id] of Object.entries(spec.vocab)) {
      if (!Number.isInteger(id) || id < 0) throw new RangeError(`Invalid BPE vocab: "${token}" has id ${id}`);
      if (this.#tokens[id] !== undefined) {
        throw new RangeError(`Invalid BPE vocab: id ${id} is used by "${this.#tokens[id]}" and "${token}"`);
      }
      this.#tokens[id] = token;
      this.#ids.set(token, id);
    }
    for (const { id, content } of spec.special_tokens) {
      if (this.#tokens[id] !== undefined && this.#tokens[id] !== content) {
        throw new RangeError(`Invalid special token "${content}": id ${id} is already "${this.#tokens[id]}"`);
      }
      this.#tokens[id] = content;
      this.#ids.set(content, id);
      this.#special.add(id);
    }
    this.vocab_size = this.#tokens.length;
    this.#bytes = Array.from(
      this.#tokens,
      (t, id) => this.#special.has(id) || t === undefined ? null : tokenToBytes(t),
    );
    for (let b = 0; b < 256; b++) {
      const id = this.#ids.get(BYTE_TO_CHAR[b]);
      if (id === undefined) {
        throw new RangeError(
          `Invalid byte-level BPE vocab: byte 0x${b.toString(16)} ("${BYTE_TO_CHAR[b]}") has no id`,
        );
      }
      this.#byteId[b] = id;
    }
    const K = this.vocab_size + 1;
    this.#table = { rank: new Map(), result: new Int32Array(spec.merges.length), K };
    spec.merges.forEach(([left, right], rank) => {
      const a = this.#ids.get(left), b = this.#ids.get(right), c = this.#ids.get(left + right);
      if (a === undefined || b === undefined || c === undefined) {
        throw new RangeError(`Invalid BPE merge ${rank} "${left} ${right}": a token is not in the vocab`);
      }
      const key = a * K + b;
      if (!this.#table.rank.has(key)) this.#table.rank.set(key, rank);
      this.#table.result[rank] = c;
    });
    const specials = spec.special_tokens.map((t) => t.content);
    this.#splitter = new SpecialSplitter(specials);
    this.#specialIds = spec.special_tokens.map((t) => t.id);
    this.special_token_ids = [...this.#specialIds];
    const idOf = (t: string | null | undefined) => (t == null ? null : this.#ids.get(t) ?? null);
    this.bos_token_id = idOf(spec.bos_token);
    this.eos_token_id = idOf(spec.eos_token);
    this.pad_token_id = idOf(spec.pad_token);
    this.chat_template = spec.chat_template ?? null;
  }

  /** Apply merges to one pre-token's bytes: always the lowest-rank pair, leftmost first (as HF). */
  #bpe(piece: string): number[] {
    const cached = this.#cache[piece];
    if (cached !== undefined) return cached;
    const bytes = encoder.encode(piece);
    const sym = applyMerges(Array.from(bytes, (b) => this.#byteId[b]), this.#table);
    if (++this.#cacheSize > 1 << 17) {
      this.#cache = Object.create(null);
      this.#cacheSize = 1;
    }
    this.#cache[piece] = sym;
    return sym;
  }

  /**
   * Text -> ids. Special token strings in the text become their ids (as in HF).
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { trainBpeTokenizer } from "./bpe.ts";
   * const tok = await trainBpeTokenizer(["hello hello hello world"], { vocab_size: 264 });
   * assert.equal(tok.decode(tok.encode("hello<|endoftext|>")), "hello<|endoftext|>");
   * assert.equal(tok.encode("<|endoftext|>")[0], tok.eos_token_id);
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") {
      throw new TypeError(`Cannot encode: text must be a string, got ${show(text)}`);
    }
    checkBooleans(options, ["add_special_tokens"], "Cannot encode");
    const out: number[] = [];
    const addSpecial = options.add_special_tokens ?? true;
    if (addSpecial && this.spec.add_bos_token && this.bos_token_id !== null) out.push(this.bos_token_id);
    for (const section of this.#splitter.split(text)) {
      if (section.special >= 0) {
        out.push(this.#specialIds[section.special]);
        continue;
      }
      for (const piece of preTokenize(section.text)) {
        const ids = this.#bpe(piece);
        for (let i = 0; i < ids.length; i++) out.push(ids[i]);
      }
    }
    if (addSpecial && this.spec.add_eos_token && this.eos_token_id !== null) out.push(this.eos_token_id);
    return out;
  }

  /** Ids -> text: byte runs are decoded as UTF-8 (invalid bytes become U+FFFD), specials verbatim. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    checkBooleans(options, ["skip_special_tokens", "clean_up_tokenization_spaces"], "Cannot decode");
    checkIds(ids, this.vocab_size);
    let text = "";
    let buf = new Uint8Array(256), n = 0;
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.#bytes[ids[i]];
      if (bytes === null) {
        if (n > 0) text += decoder.decode(buf.subarray(0, n));
        n = 0;
        if (!(options.skip_special_tokens && this.#special.has(ids[i]))) text += this.#tokens[ids[i]] ?? "";
        continue;
      }
      if (n + bytes.length > buf.length) {
        const bigger = new Uint8Array(2 * (n + bytes.length));
        bigger.set(buf.subarray(0, n));
        buf = bigger;
      }
      buf.set(bytes, n);
      n += bytes.length;
    }
    if (n > 0) text += decoder.decode(buf.subarray(0, n));
    if (options.clean_up_tokenization_spaces) text = cleanUpTokenization(text);
    return text;
  }

  /** The id of a token string (byte-level form, e.g. `"Ġthe"`, or a special token), or null. */
  tokenToId(token: string): number | null {
    return this.#ids.get(token) ?? null;
  }

  /** The token string of an id (byte-level form), or null when out of range. */
  idToToken(id: number): string | null {
    return this.#tokens[id] ?? null;
  }

  /** Render `messages` with the chat template (Jinja), then encode without adding special tokens. */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): ChatTemplateResult {
    checkTemplateFlags(options);
    const template = options.chat_template ?? this.chat_template;
    if (template === null) {
      throw new TypeError(
        "Cannot apply chat template: this BPE tokenizer has none; pass chat_template to " +
          "trainBpeTokenizer() or options.chat_template",
      );
    }
    const specials: Record<string, string> = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"] as const) {
      const value = this.spec[key];
      if (value != null) specials[key] = value;
    }
    const text = this.#renderer.render(template, "the BPE tokenizer's chat_template", {
      messages,
      add_generation_prompt: options.add_generation_prompt ?? false,
      tools: null,
      documents: null,
      ...specials,
      ...options.template_kwargs,
    });
    const cut = options.continue_final_message
      ? continueFinalMessage(text, messages, "the BPE tokenizer's chat_template")
      : text;
    return { text: cut, ids: this.encode(cut, { add_special_tokens: false }) };
  }

  /** The `tokenizer.json` text (HF `tokenizers` format, vocab ordered by id). */
  toTokenizerJson(): string {
    return tokenizerJson(this.spec, this.#tokens);
  }

  /** The `tokenizer_config.json` object (`clean_up_tokenization_spaces` false: decoding is exact). */
  tokenizerConfig(): Record<string, unknown> {
    return tokenizerConfig(this.spec);
  }

  /** Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` into `dir`. */
  async save(dir: string): Promise<void> {
    await writeTokenizerFiles(dir, this.toTokenizerJson(), this.tokenizerConfig());
  }
}

/** transformers' `clean_up_tokenization` (spaces before punctuation and English contractions). */
function cleanUpTokenization(text: string): string {
  return text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

/** Validate trainer options at the boundary, listing every problem at once. */
function validateTrainOptions(options: BpeTrainOptions): Required<Pick<BpeTrainOptions, "special_tokens">> {
  const problems: string[] = [];
  const specials = options.special_tokens ?? ["<|endoftext|>"];
  if (!Array.isArray(specials) || specials.some((t) => typeof t !== "string" || t.length === 0)) {
    problems.push(`special_tokens must be a list of non-empty strings, got ${JSON.stringify(specials)}`);
  } else if (new Set(specials).size !== specials.length) {
    problems.push(`special_tokens has duplicates: ${JSON.stringify(specials)}`);
  }
  const min = specials.length + 256;
  if (!Number.isInteger(options.vocab_size) || options.vocab_size < min) {
    problems.push(
      `vocab_size must be an integer >= ${min} (${specials.length} special tokens + 256 bytes), ` +
        `got ${options.vocab_size}`,
    );
  }
  const minFrequency = options.min_frequency ?? 2;
  if (!Number.isFinite(minFrequency) || minFrequency < 0) {
    problems.push(`min_frequency must be a number >= 0, got ${options.min_frequency}`);
  }
  for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"] as const) {
    const value = options[key];
    if (value != null && !specials.includes(value)) {
      problems.push(`${key} "${value}" must be one of special_tokens ${JSON.stringify(specials)} (or null)`);
    }
  }
  for (const key of ["add_bos_token", "add_eos_token"] as const) {
    if (options[key] !== undefined && typeof options[key] !== "boolean") {
      problems.push(`${key} must be true or false, got ${JSON.stringify(options[key])}`);
    }
  }
  const maxLength = options.model_max_length;
  if (maxLength !== undefined && maxLength !== null && !(Number.isInteger(maxLength) && maxLength >= 1)) {
    problems.push(`model_max_length must be an integer >= 1, got ${maxLength}`);
  }
  if (options.chat_template != null && typeof options.chat_template !== "string") {
    problems.push(`chat_template must be a Jinja template string, got ${typeof options.chat_template}`);
  }
  if (options.add_bos_token && (options.bos_token === null || specials.length === 0)) {
    problems.push("add_bos_token needs a bos_token");
  }
  if (options.add_eos_token && (options.eos_token === null || specials.length === 0)) {
    problems.push("add_eos_token needs an eos_token");
  }
  if (problems.length > 0) {
    throw new RangeError(`Cannot train BPE tokenizer: ${problems.join("; ")}`);
  }
  return { special_tokens: specials };
}

/**
 * Train a byte-level BPE tokenizer (GPT-2 style) on text.
 *
 * Special tokens are split off first (they never take part in merges); the rest is split with the
 * GPT-2 regex, and merges are learned on the UTF-8 bytes of each distinct pre-token, weighted by its
 * count, most frequent pair first (ties to the lower ids), until `vocab_size` ids exist or no pair
 * occurs `min_frequency` times.
 *
 * @param texts the training text: strings, sync or async (e.g. one document per item).
 * @param options `vocab_size` (total ids), `min_frequency`, `special_tokens`, and which specials are
 *   BOS/EOS/pad/unk.
 * @returns the tokenizer; `save(dir)` writes the Hugging Face files. A model built for it takes
 *   its special ids with `withTokenIds(presetConfig(...), tokenizer)` (a preset's own ids are
 *   byte tokens here, so a model trained on its rows would never stop).
 * @throws {RangeError} when the options are invalid (all problems listed).
 * @throws {TypeError} when an item of `texts` is not a string.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trainBpeTokenizer } from "./bpe.ts";
 * const tok = await trainBpeTokenizer(["the cat sat on the mat. ".repeat(50)], {
 *   vocab_size: 300,
 *   special_tokens: ["<|endoftext|>", "<|pad|>"],
 *   pad_token: "<|pad|>",
 * });
 * assert.equal(tok.idToToken(0), "<|endoftext|>");
 * assert.equal(tok.pad_token_id, 1);
 * assert.deepEqual(tok.encode(" the cat").map((id) => tok.idToToken(id)), ["Ġthe", "Ġcat"]);
 * assert.equal(tok.decode(tok.encode("the mat 🐈")), "the mat 🐈");
 * ```
 */
export async function trainBpeTokenizer(
  texts: Iterable<string> | AsyncIterable<string>,
  options: BpeTrainOptions,
): Promise<BpeTokenizer> {
  if (typeof texts === "string") { // a string is iterable too: one character per document, no merges
    throw new TypeError(
      "Cannot train a BPE tokenizer: texts is one string; pass a list of documents (wrap one text as [text])",
    );
  }
  const { special_tokens: specials } = validateTrainOptions(options);
  const t0 = performance.now();
  const log = options.progress
    ? (line: string) => Deno.stderr.writeSync(encoder.encode(`bpe: ${line}\n`))
    : null;

  // 1. Count distinct pre-tokens (raw text pieces; bytes are taken only once per distinct piece).
  const splitter = new SpecialSplitter(specials);
  const counts: Record<string, number> = Object.create(null); // faster than a Map here (V8)
  let docs = 0, chars = 0;
  for await (const text of texts) {
    if (typeof text !== "string") {
      throw new TypeError(`Cannot train BPE tokenizer: text ${docs} is ${typeof text}, expected a string`);
    }
    docs++;
    chars += text.length;
    for (const section of splitter.split(text)) {
      if (section.special >= 0) continue;
      for (const piece of preTokenize(section.text)) counts[piece] = (counts[piece] ?? 0) + 1;
    }
  }
  const pieces = Object.keys(counts);
  log?.(`${docs} texts, ${chars} chars, ${pieces.length} distinct pre-tokens (${elapsed(t0)})`);

  // 2. Initial alphabet: specials, then all 256 bytes in byte order.
  const tokens: string[] = [...specials, ...BYTE_TO_CHAR];
  const base = specials.length;
  const words: Int32Array[] = [];
  const freqs = new Float64Array(pieces.length);
  for (const piece of pieces) {
    const count = counts[piece];
    const bytes = encoder.encode(piece);
    const sym = new Int32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) sym[i] = base + bytes[i];
    freqs[words.length] = count;
    words.push(sym);
  }

  // 3. Merges.
  const firstNewId = base + 256;
  const progress = createProgress("bpe merges", {
    total: options.vocab_size,
    start: firstNewId,
    unit: "ids",
    enabled: options.progress === true,
  });
  const { merges } = learnMerges({
    words,
    freqs,
    firstNewId,
    vocabSize: options.vocab_size,
    minFrequency: options.min_frequency ?? 2,
    tokens,
    onProgress: options.progress ? (done) => progress.update(done) : undefined,
  });
  progress.done(`${merges.length} merges`);

  // fromEntries defines own properties, so a token such as "__proto__" stays a plain key.
  const vocab: Record<string, number> = Object.fromEntries(tokens.map((t, id) => [t, id]));
  const first = specials[0] ?? null;
  const pick = (value: string | null | undefined) => (value === undefined ? first : value);
  return new BpeTokenizer({
    vocab,
    merges: merges.map(([a, b]) => [tokens[a], tokens[b]]),
    special_tokens: specials.map((content, id) => ({ id, content })),
    bos_token: pick(options.bos_token),
    eos_token: pick(options.eos_token),
    pad_token: pick(options.pad_token),
    unk_token: pick(options.unk_token),
    add_bos_token: options.add_bos_token ?? false,
    add_eos_token: options.add_eos_token ?? false,
    chat_template: options.chat_template ?? null,
    model_max_length: options.model_max_length,
  });
}

function elapsed(t0: number): string {
  return formatDuration((performance.now() - t0) / 1000);
}
