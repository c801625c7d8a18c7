/**
 * Reading and writing the Hugging Face tokenizer files: `tokenizer.json` (the `tokenizers` format),
 * `tokenizer_config.json`, `special_tokens_map.json` and `chat_template.jinja`. Errors name the file,
 * what is wrong and how to fix it.
 * @module
 */
import { dirname, join } from "node:path";
import { SPECIAL_TOKEN_KEYS, tokenContent } from "./_chat.ts";
import { isFileSync, writeFileAtomic } from "../../util/atomic.ts";
import { parseJson } from "../../util/json.ts";
import { checkPathArg } from "../../util/problems.ts";

/** The parsed files of one tokenizer folder. */
export interface TokenizerFiles {
  /** `tokenizer.json`, parsed; `model` is checked to be an object with a string `type`. */
  tokenizer: Record<string, unknown>;
  /** `tokenizer.json` exactly as read (written back unchanged by `save`). */
  tokenizerText: string;
  /** `tokenizer_config.json` merged with `special_tokens_map.json` and `chat_template.jinja`. */
  config: Record<string, unknown>;
  /** Where `config.chat_template` came from (a file path), or null when there is none. */
  chatTemplateSource: string | null;
}

async function readOptional(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function parseObject(text: string, path: string): Record<string, unknown> {
  const value = parseJson(text, path);
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new SyntaxError(`Cannot read ${path}: the top level is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * The shapes transformers.js reads without checking (a wrong one failed deep inside it with a JS
 * error): `model.vocab`, `model.merges` and `added_tokens`, each named by its key path.
 */
function checkTokenizerJson(t: Record<string, unknown>, model: Record<string, unknown>, path: string): void {
  const bad = (key: string, want: string, got: unknown) =>
    new SyntaxError(
      `Cannot load tokenizer from ${path}: ${key} must be ${want}, got ${JSON.stringify(got)?.slice(0, 60)}`,
    );
  const vocab = model.vocab;
  if (vocab !== undefined) {
    const list = model.type === "Unigram";
    if (list ? !Array.isArray(vocab) : (!vocab || typeof vocab !== "object" || Array.isArray(vocab))) {
      throw bad("model.vocab", list ? "a list of [piece, score]" : "an object of token -> id", vocab);
    }
  }
  const merges = model.merges;
  if (merges !== undefined) {
    if (!Array.isArray(merges)) throw bad("model.merges", "a list", merges);
    const i = merges.findIndex((m) =>
      !(typeof m === "string" ||
        (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === "string")))
    );
    if (i >= 0) throw bad(`model.merges[${i}]`, `"a b" or ["a", "b"]`, merges[i]);
  }
  if (vocab && typeof vocab === "object" && !Array.isArray(vocab)) {
    const ids = vocab as Record<string, unknown>;
    for (const [token, id] of Object.entries(ids)) {
      if (!Number.isSafeInteger(id) || (id as number) < 0) {
        throw bad(`model.vocab["${token}"]`, "an id >= 0", id);
      }
    }
    // As tokenizers' BPE builder: each merge's parts, and what they make, are vocabulary tokens
    // (an unknown one had loaded and silently never merged).
    if (model.type === "BPE" && Array.isArray(merges)) {
      const prefix = typeof model.continuing_subword_prefix === "string"
        ? model.continuing_subword_prefix
        : "";
      for (const [i, m] of merges.entries()) {
        const [a, b] = typeof m === "string" ? splitMerge(m) : m as string[];
        const made = a + (prefix && b?.startsWith(prefix) ? b.slice(prefix.length) : b);
        const missing = [a, b, made].find((x) => x === undefined || !Object.hasOwn(ids, x));
        if (missing !== undefined) {
          throw new SyntaxError(
            `Cannot load tokenizer from ${path}: model.merges[${i}] ${JSON.stringify(m)} names ` +
              `${missing === undefined ? "one part only" : `"${missing}", which is not in model.vocab`}; ` +
              `fix or remove that merge`,
          );
        }
      }
    }
  }
  const added = t.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw bad("added_tokens", "a list", added);
    const i = added.findIndex((a) =>
      !a || typeof a !== "object" || !Number.isInteger((a as { id?: unknown }).id) ||
      typeof (a as { content?: unknown }).content !== "string"
    );
    if (i >= 0) throw bad(`added_tokens[${i}]`, "{id: integer, content: string, ...}", added[i]);
  }
}

/** A merge written `"a b"`: its two parts (one part when there is no space). */
function splitMerge(m: string): string[] {
  const at = m.indexOf(" ");
  return at < 0 ? [m] : [m.slice(0, at), m.slice(at + 1)];
}

/**
 * Read a tokenizer folder. `tokenizer.json` is required; the other files are optional. As in
 * transformers (Python), `chat_template.jinja` overrides a `chat_template` in the config, and
 * `special_tokens_map.json` fills special tokens the config lacks.
 * @throws {Deno.errors.NotFound} when `tokenizer.json` is missing.
 * @throws {SyntaxError} when a file is not valid JSON or `tokenizer.json` has no usable `model`.
 */
export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  checkPathArg(dir, "loadTokenizer", "dir");
  if (isFileSync(dir)) {
    throw new TypeError(
      `Cannot load tokenizer: ${dir} is a file; pass the folder that holds tokenizer.json (${
        dirname(dir) || "."
      })`,
    );
  }
  const tokenizerPath = join(dir, "tokenizer.json");
  const tokenizerText = await readOptional(tokenizerPath);
  if (tokenizerText === null) {
    throw new Deno.errors.NotFound(
      `Cannot load tokenizer: ${tokenizerPath} not found; fledge needs the "fast" tokenizer.json ` +
        `(write one in Python with AutoTokenizer.from_pretrained(...).save_pretrained(dir), ` +
        `or train one with trainBpeTokenizer())`,
    );
  }
  const tokenizer = parseObject(tokenizerText, tokenizerPath);
  const model = tokenizer.model as Record<string, unknown> | undefined;
  if (!model || typeof model !== "object" || typeof model.type !== "string") {
    throw new SyntaxError(
      `Cannot load tokenizer from ${tokenizerPath}: key "model" must be an object with a string "type" ` +
        `(BPE, WordPiece, Unigram, WordLevel); got ${JSON.stringify(model)?.slice(0, 80)}`,
    );
  }
  checkTokenizerJson(tokenizer, model, tokenizerPath);
  const configPath = join(dir, "tokenizer_config.json");
  const configText = await readOptional(configPath);
  const config = configText === null ? {} : parseObject(configText, configPath);
  for (const key of SPECIAL_TOKEN_KEYS) {
    const v = config[key];
    if (v != null && tokenContent(v) === null) {
      throw new SyntaxError(
        `Cannot read ${configPath}: ${key} must be a token string or {"content": string}, got ${
          JSON.stringify(v)?.slice(0, 80)
        }`,
      );
    }
  }

  const mapPath = join(dir, "special_tokens_map.json");
  const mapText = await readOptional(mapPath);
  if (mapText !== null) {
    const map = parseObject(mapText, mapPath);
    for (const key of [...SPECIAL_TOKEN_KEYS, "additional_special_tokens"]) {
      if (config[key] == null && map[key] != null) config[key] = map[key];
    }
  }

  let chatTemplateSource: string | null = config.chat_template != null ? configPath : null;
  const jinjaPath = join(dir, "chat_template.jinja");
  const jinja = await readOptional(jinjaPath);
  if (jinja !== null) {
    config.chat_template = jinja;
    chatTemplateSource = jinjaPath;
  } else {
    const legacyPath = join(dir, "chat_template.json");
    const legacy = await readOptional(legacyPath);
    if (legacy !== null) {
      const parsed = parseObject(legacy, legacyPath);
      if (typeof parsed.chat_template !== "string") {
        throw new SyntaxError(`Cannot read ${legacyPath}: key "chat_template" must be a string`);
      }
      config.chat_template = parsed.chat_template;
      chatTemplateSource = legacyPath;
    }
  }
  if (config.chat_template != null && typeof config.chat_template !== "string") {
    if (!Array.isArray(config.chat_template)) {
      throw new SyntaxError(
        `Cannot read ${chatTemplateSource}: "chat_template" must be a string or a list of {name, template}`,
      );
    }
  }
  return { tokenizer, tokenizerText, config, chatTemplateSource };
}

/** `special_tokens_map.json` content for a config: the special token keys it sets. */
export function specialTokensMap(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const content = tokenContent(config[key]);
    if (content !== null) out[key] = content;
  }
  if (Array.isArray(config.additional_special_tokens) && config.additional_special_tokens.length > 0) {
    out.additional_special_tokens = config.additional_special_tokens;
  }
  return out;
}

/** The files a tokenizer's `save` writes (an export beside them checks them first). */
export const SAVED_TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
] as const;

/**
 * Write `tokenizer.json` (text as given), `tokenizer_config.json` and `special_tokens_map.json` into
 * `dir` (created when missing). Each file is written to a temporary name and renamed into place.
 */
export async function writeTokenizerFiles(
  dir: string,
  tokenizerText: string,
  config: Record<string, unknown>,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const text: Record<(typeof SAVED_TOKENIZER_FILES)[number], string> = {
    "tokenizer.json": tokenizerText,
    "tokenizer_config.json": JSON.stringify(config, null, 2) + "\n",
    "special_tokens_map.json": JSON.stringify(specialTokensMap(config), null, 2) + "\n",
  };
  for (const name of SAVED_TOKENIZER_FILES) await writeFileAtomic(join(dir, name), text[name]);
}

/** Throw a RangeError unless every id is an integer in `[0, vocabSize)`. */
export function checkIds(ids: ArrayLike<number>, vocabSize: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RangeError(
        `Cannot decode: ids[${i}] = ${id} is not a token id in [0, ${vocabSize}); ` +
          `check that the model's vocab_size matches the tokenizer`,
      );
    }
  }
}
