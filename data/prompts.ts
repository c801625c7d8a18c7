/**
 * Prompt formats of the three recipes, plain and chat, and the label verbalizers of
 * classification. A task example `{source, target}` becomes a TRL prompt-completion row:
 *
 * - plain: `{prompt: "Summarize: <source>\nSummary:", completion: " <target>"}` (EOS appended by
 *   the SFT data builder); the prompt alone is what generation starts from;
 * - chat: `{prompt: [{role: "user", content: "Summarize: <source>"}], completion: [{role:
 *   "assistant", content: "<target>"}]}`, rendered with the checkpoint's chat template (the
 *   prompt with `add_generation_prompt`).
 *
 * The source is cut to `max_source_tokens` tokens (its head: Debian descriptions and news articles
 * lead with what matters) so that prompt and answer always fit the context; the template and the
 * answer are never cut.
 *
 * @module
 */
import type { ChatMessage, Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { DataRecord } from "./readers.ts";
import type { TaskExample, TaskKind } from "./task_data.ts";

/** Plain text, or the tokenizer's chat template. */
export type PromptStyle = "plain" | "chat";

/** A task's prompt format. `{source}`, `{source_lang}`, `{target_lang}` are filled in. */
export interface PromptFormat {
  /** The plain prompt, ending where the answer starts (e.g. `"Summarize: {source}\nSummary:"`). */
  template: string;
  /** The user turn of the chat style (e.g. `"Summarize: {source}"`). */
  chat_template: string;
  /** Put before the answer in the plain style (default `" "`). */
  answer_prefix: string;
}

/** The default formats (Hugging Face / T5 habits: a task prefix, the answer after a cue). */
export const PROMPT_FORMATS: Readonly<Record<TaskKind, Readonly<PromptFormat>>> = Object.freeze({
  summarization: Object.freeze({
    template: "Summarize: {source}\nSummary:",
    chat_template: "Summarize in one line: {source}",
    answer_prefix: " ",
  }),
  translation: Object.freeze({
    template: "Translate {source_lang} to {target_lang}: {source}\n{target_lang}:",
    chat_template: "Translate {source_lang} to {target_lang}: {source}",
    answer_prefix: " ",
  }),
  classification: Object.freeze({
    template: "{source}\nLabel:",
    chat_template: "{source}\nAnswer with one word: the label.",
    answer_prefix: " ",
  }),
});

/** Options of {@linkcode taskRow} and {@linkcode promptIds}. */
export interface PromptOptions {
  /** `plain` (text prompt + completion) or `chat` (user and assistant messages). Default `plain`. */
  style?: PromptStyle;
  /** Overrides of the task's {@linkcode PROMPT_FORMATS} entry. */
  format?: Partial<PromptFormat>;
  /** Keep at most this many tokens of the source (default: all). */
  max_source_tokens?: number | null;
  /** Translation: the name filled in for `{source_lang}` (see {@linkcode languageName}). Default English. */
  source_lang?: string;
  /** Translation: the name filled in for `{target_lang}`. Default German. */
  target_lang?: string;
}

const LANGS: Record<string, string> = {
  en: "English",
  de: "German",
  fr: "French",
  cs: "Czech",
  ru: "Russian",
};

/** Language name of a code (`de` -> German), or the text itself. */
export function languageName(code: string): string {
  return LANGS[code] ?? code;
}

function styleOf(o: PromptOptions): "plain" | "chat" {
  const style = o.style ?? "plain";
  if (style !== "plain" && style !== "chat") {
    throw new RangeError(`Cannot build the prompt: style ${JSON.stringify(style)} is not "plain" or "chat"`);
  }
  return style;
}

function fill(template: string, source: string, o: PromptOptions): string {
  return template.replaceAll("{source_lang}", o.source_lang ?? "English")
    .replaceAll("{target_lang}", o.target_lang ?? "German")
    .replaceAll("{source}", source);
}

/**
 * The source cut to `max_source_tokens` tokens (decoded back to text), else as it is.
 * @throws {RangeError} when `max` is not null and not an integer >= 1
 */
export function truncateSource(tokenizer: Tokenizer, source: string, max: number | null | undefined): string {
  if (max === null || max === undefined) return source;
  if (!(Number.isInteger(max) && max >= 1)) {
    throw new RangeError(
      `Cannot build the prompt: max_source_tokens ${max} is not an integer >= 1 (or null)`,
    );
  }
  const ids = tokenizer.encode(source);
  return ids.length <= max ? source : tokenizer.decode(ids.slice(0, max)).replace(/\uFFFD+$/, "");
}

/**
 * A TRL prompt-completion row for SFT (see the module doc).
 * @example
 * ```ts
 * import { taskRow } from "./prompts.ts";
 * const tok = { encode: (s: string) => [...s].map((c) => c.charCodeAt(0)), decode: (ids: ArrayLike<number>) => String.fromCharCode(...Array.from(ids)) };
 * // deno-lint-ignore no-explicit-any
 * const row = taskRow("summarization", { source: "GNU Emacs is an editor.", target: "text editor" }, tok as any);
 * if (row.prompt !== "Summarize: GNU Emacs is an editor.\nSummary:" || row.completion !== " text editor") throw new Error();
 * ```
 */
export function taskRow(
  task: TaskKind,
  ex: TaskExample,
  tokenizer: Tokenizer,
  opts: PromptOptions = {},
): DataRecord {
  const f = { ...PROMPT_FORMATS[task], ...opts.format };
  const source = truncateSource(tokenizer, ex.source, opts.max_source_tokens);
  if (styleOf(opts) === "chat") {
    return {
      prompt: [{ role: "user", content: fill(f.chat_template, source, opts) }],
      completion: [{ role: "assistant", content: ex.target }],
    };
  }
  return { prompt: fill(f.template, source, opts), completion: f.answer_prefix + ex.target };
}

/**
 * The token ids generation or scoring starts from: the plain prompt encoded as the SFT builder
 * encodes it, or the chat prompt rendered with `add_generation_prompt`.
 */
export function promptIds(
  task: TaskKind,
  source: string,
  tokenizer: Tokenizer,
  opts: PromptOptions = {},
): number[] {
  const row = taskRow(task, { source, target: "" }, tokenizer, opts);
  if (typeof row.prompt === "string") return tokenizer.encode(row.prompt);
  const r = tokenizer.applyChatTemplate(row.prompt as ChatMessage[], { add_generation_prompt: true });
  return r.ids;
}

/**
 * The verbalizer of each label: the token ids the answer of that label starts with in the plain
 * style (`answer_prefix + label`), or the label as the assistant's reply in the chat style.
 * @throws {RangeError} when two labels encode to the same ids
 */
export function labelVerbalizers(
  labels: readonly string[],
  tokenizer: Tokenizer,
  opts: PromptOptions = {},
): number[][] {
  const prefix = styleOf(opts) === "chat" ? "" : (opts.format?.answer_prefix ?? " ");
  // the tokens that follow the prompt: no BOS (Llama's tokenizer adds one to every encode) or EOS
  // around them, which training never put there (lm-eval-harness encodes continuations so too)
  const ids = labels.map((l) => tokenizer.encode(prefix + l, { add_special_tokens: false }));
  const seen = new Map<string, string>();
  labels.forEach((l, i) => {
    const k = ids[i].join();
    if (seen.has(k)) {
      throw new RangeError(
        `Cannot score labels "${
          seen.get(k)
        }" and "${l}": they encode to the same tokens; rename one (label_names)`,
      );
    }
    seen.set(k, l);
  });
  return ids;
}
