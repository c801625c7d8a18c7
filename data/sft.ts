/**
 * Supervised fine-tuning data, as TRL's `SFTTrainer` prepares it: rows of any of the four TRL
 * dataset formats become token ids and labels (Hugging Face causal-LM convention: `labels` as long
 * as `input_ids`, `-100` = not trained, the model shifts, so the label at `t` is the target of
 * position `t - 1`).
 *
 * Formats, detected per row as TRL does (`trl.data_utils`):
 * - language modeling `{text}` (the `dataset_text_field` column): every token trained;
 * - prompt-completion `{prompt, completion}` (strings): with `completion_only_loss` (default) only
 *   the completion and its EOS are trained;
 * - conversational `{messages: [{role, content}, ...]}`, rendered with the tokenizer's chat template;
 * - conversational prompt-completion (`prompt` and `completion` message lists; the prompt rendered
 *   with `add_generation_prompt`).
 *
 * EOS: appended to `text` / `completion` when missing (TRL `add_eos`); conversations end turns
 * with their template's tokens. `assistant_only_loss` trains only assistant turns: the template's
 * `{% generation %}` spans when it has them (HF `return_assistant_tokens_mask`), else each assistant
 * turn's content and its end-of-turn token, found by rendering the conversation up to the turn with
 * and without it. Optional row fields `tools` and `chat_template_kwargs` reach the template (TRL).
 * @module
 */
import type { ChatMessage, Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { createProgress } from "../util/progress.ts";
import type { DataRecord } from "./readers.ts";
import { cutToNothing, type PackingStrategy } from "./packing.ts";
import {
  completionStart,
  diffSpans,
  hasGenerationMarkers,
  markedSpans,
  markedTemplate,
  renderChat,
  type RenderContext,
  type TokenSpan,
} from "./_sft_chat.ts";
import { parseRow, readSourcedRows, RowError, rowTemplateKwargs, type SftRow } from "./_sft_rows.ts";

/** One tokenized example: ids, labels (`-100` = not trained) and the row it came from (`file:line`). */
export interface SftExample {
  /** Token ids of the rendered example, EOS included, at most `max_length` long. */
  input_ids: Int32Array;
  /** As long as `input_ids`: the id where the token is trained, `-100` elsewhere (unshifted; the model shifts). */
  labels: Int32Array;
  /** Where the row came from: `file:line`, or `source:n` / `row n` (n from 1). */
  source: string;
}

/** The dataset formats of TRL's SFTTrainer, one per row. */
export type SftFormat =
  | "language_modeling"
  | "prompt_completion"
  | "conversational"
  | "conversational_prompt_completion";

/** Options of {@linkcode buildSftExamples}: TRL `SFTConfig` names, plus where the rows came from. */
export interface SftDataOptions {
  /** The text column of language-modeling rows (default `"text"`). */
  dataset_text_field?: string;
  /** Keep the first `max_length` tokens of longer examples, counted in `truncated` (default 1024; null: none). */
  max_length?: number | null;
  /** Train only the completion of prompt-completion rows (default true). */
  completion_only_loss?: boolean;
  /** Train only the assistant turns of conversational rows (default false). */
  assistant_only_loss?: boolean;
  /** Appended to `text` / `completion` when missing (default the tokenizer's EOS; null: never). */
  eos_token?: string | null;
  /** Names rows in errors and on examples as `source:n` (row n from 1); default `row n`. */
  source?: string;
  /** Where each row came from (`file:line`), one per row; wins over `source`. */
  sources?: readonly string[];
  /** Print a progress line to stderr; default false. */
  progress?: boolean;
}

/** What {@linkcode buildSftExamples} returns. */
export interface SftExamples {
  /** One example per input row, in row order. */
  examples: SftExample[];
  /** Examples cut to `max_length`. */
  truncated: number;
  /** Tokens in all examples. */
  num_tokens: number;
  /** Tokens that are targets (label not `-100`, position >= 1: the first token predicts nothing). */
  trained_tokens: number;
  /** Rows per format. */
  formats: Partial<Record<SftFormat, number>>;
}

/**
 * The part of a {@linkcode Tokenizer} that SFT data preparation uses, so tests and adapters can pass
 * a small stand-in; any full `Tokenizer` fits.
 */
export type SftTokenizer = Pick<
  Tokenizer,
  | "encode"
  | "decode"
  | "applyChatTemplate"
  | "chat_template"
  | "chat_templates"
  | "special_token_ids"
  | "eos_token_id"
  | "idToToken"
  | "tokenToId"
>;

interface Resolved {
  field: string;
  /** A dataset_text_field other than "text" was given: only plain-text rows read it. */
  fieldGiven: boolean;
  maxLength: number | null;
  completionOnly: boolean;
  /** completion_only_loss was given (true or false): only prompt/completion rows read it. */
  completionGiven: boolean;
  assistantOnly: boolean;
  eos: string | null;
  /** The chat template and its generation-marked form (null without markers). */
  template: string | null;
  marked: string | null;
  /** The tokenizer's "tool_use" template (rows with tools render with it) and its marked form. */
  toolUse: { template: string; marked: string | null } | null;
}

/** A template with its {@linkcode markedTemplate} form, or null for it when it has no markers. */
const marks = (template: string) => hasGenerationMarkers(template) ? markedTemplate(template) : null;

function resolve(tok: SftTokenizer, opts: SftDataOptions, rows: number): Resolved {
  const problems: string[] = [];
  const field = opts.dataset_text_field ?? "text";
  if (typeof field !== "string" || field === "") problems.push(`dataset_text_field must be a column name`);
  const maxLength = opts.max_length === undefined ? 1024 : opts.max_length;
  if (maxLength !== null && !(Number.isSafeInteger(maxLength) && maxLength >= 2)) {
    problems.push(`max_length must be an integer >= 2 or null, got ${maxLength}`);
  }
  let eos = opts.eos_token === undefined
    ? (tok.eos_token_id === null ? null : tok.idToToken(tok.eos_token_id))
    : opts.eos_token;
  if (eos !== null && tok.tokenToId(eos) === null) {
    problems.push(`eos_token "${eos}" is not in the tokenizer's vocabulary`);
    eos = null;
  }
  if (opts.sources !== undefined && opts.sources.length !== rows) {
    problems.push(`sources has ${opts.sources.length} entries for ${rows} rows`);
  }
  for (const k of ["completion_only_loss", "assistant_only_loss"] as const) {
    const v = opts[k]; // completion_only_loss: null is TRL's "the default"
    if (v !== undefined && v !== null && typeof v !== "boolean") {
      problems.push(`${k} must be true or false, got ${JSON.stringify(v)}`);
    }
  }
  if (problems.length) throw new RangeError(`Cannot build SFT examples: ${problems.join("; ")}`);
  const template = tok.chat_template, toolUse = tok.chat_templates?.tool_use;
  return {
    field,
    fieldGiven: field !== "text",
    maxLength,
    completionGiven: opts.completion_only_loss !== undefined && opts.completion_only_loss !== null,
    template,
    marked: template !== null ? marks(template) : null,
    toolUse: toolUse !== undefined ? { template: toolUse, marked: marks(toolUse) } : null,
    completionOnly: opts.completion_only_loss ?? true,
    assistantOnly: opts.assistant_only_loss ?? false,
    eos,
  };
}

/** Ids and the per-token "trained" mask of one row, before truncation. */
function tokenizeRow(
  tok: SftTokenizer,
  row: SftRow,
  kwargs: Record<string, unknown>,
  o: Resolved,
): { ids: number[]; trained: (t: number) => boolean } {
  const all = () => true;
  // settings this row's format does not read: refused, not ignored (TRL ignores them)
  if (o.completionGiven && (row.format === "language_modeling" || row.format === "conversational")) {
    throw new RowError(
      `completion_only_loss is for prompt/completion rows, and this one is ${
        row.format === "language_modeling"
          ? "plain text"
          : "a conversation (assistant_only_loss is its setting)"
      }; drop completion_only_loss`,
    );
  }
  if (o.fieldGiven && row.format !== "language_modeling") {
    throw new RowError(
      `dataset_text_field "${o.field}" names the text column of plain-text rows, and this one is ` +
        `${
          row.format === "conversational" ? "a conversation" : "a prompt/completion row"
        }; drop dataset_text_field`,
    );
  }
  if (o.assistantOnly && (row.format === "language_modeling" || row.format === "prompt_completion")) {
    throw new RowError(
      `assistant_only_loss needs conversational rows ("messages")` +
        (row.format === "language_modeling" ? ", not plain text" : ""),
    );
  }
  if (row.format === "language_modeling") {
    const text = o.eos !== null && !row.text.endsWith(o.eos) ? row.text + o.eos : row.text;
    return { ids: tok.encode(text), trained: all };
  }
  if (row.format === "prompt_completion") {
    const completion = o.eos !== null && !row.completion.endsWith(o.eos)
      ? row.completion + o.eos
      : row.completion;
    const ids = tok.encode(row.prompt + completion);
    const k = completionStart(tok, tok.encode(row.prompt), ids);
    return { ids, trained: o.completionOnly ? (t) => t >= k : all };
  }
  // a row with tools renders with the tokenizer's "tool_use" template when it has one, as HF picks it
  const own = kwargs.tools !== undefined && kwargs.tools !== null ? o.toolUse : null;
  const { template, marked } = own ?? o;
  if (template === null) {
    throw new RowError(`the row is a conversation but the tokenizer has no chat_template; add one`);
  }
  const ctx: RenderContext = { template, marked, kwargs };
  const messages: ChatMessage[] = row.format === "conversational"
    ? row.messages
    : [...row.prompt, ...row.completion];
  const field = row.format === "conversational" ? "messages" : "completion";
  let ids: number[], spans: TokenSpan[] | null = null;
  if (o.assistantOnly) {
    if (!messages.some((m) => m.role === "assistant")) {
      throw new RowError(`field "${field}" has no assistant turn, and assistant_only_loss trains only those`);
    }
    ({ ids, spans } = ctx.marked !== null ? markedSpans(tok, ctx, messages) : diffSpans(tok, ctx, messages));
  } else ids = renderChat(tok, ctx, messages);
  const inSpans = spans === null ? all : (t: number) => spans!.some(([s, e]) => t >= s && t < e);
  if (row.format === "conversational") return { ids, trained: inSpans };
  const k = o.completionOnly ? completionStart(tok, renderChat(tok, ctx, row.prompt, true), ids) : 0;
  return { ids, trained: (t) => t >= k && inSpans(t) };
}

/** An error of a row with where it came from in front (one line, same class). */
function atRow(e: unknown, where: string): unknown {
  const Kind = [SyntaxError, RangeError, TypeError].find((k) => e instanceof k);
  if (Kind === undefined) return e;
  const inner = (e as Error).message.replace(/^Cannot /, "cannot ");
  return new Kind(`Cannot build an SFT example from ${where}: ${inner}`, { cause: e });
}

/**
 * Tokenize rows into SFT examples with label masks (TRL `SFTTrainer` dataset preparation).
 *
 * @param rows records of any of the four formats (mixed is fine: detected per row)
 * @param tokenizer encodes text and renders chat templates
 * @param opts TRL names: `dataset_text_field`, `max_length`, `completion_only_loss`,
 *   `assistant_only_loss`, `eos_token`; `source` / `sources` name the rows
 * @returns the examples, in row order, and counts
 * @throws {RangeError} for invalid options, or a row left with no trained token after masking or
 *   truncation (naming the row)
 * @throws {TypeError} for a row with a missing or mistyped field, a message with an unknown role, a
 *   conversation with no assistant turn under `assistant_only_loss`, a conversation and a tokenizer
 *   with no chat template (naming the row and the field)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildSftExamples } from "./sft.ts";
 * // One id per character; EOS is "$" (id 36).
 * const tokenizer = {
 *   encode: (s: string) => [...s].map((c) => c.charCodeAt(0)),
 *   decode: (ids: ArrayLike<number>) => String.fromCharCode(...Array.from(ids)),
 *   applyChatTemplate: () => ({ text: "", ids: [] }),
 *   chat_template: null,
 *   special_token_ids: [36],
 *   eos_token_id: 36,
 *   idToToken: (id: number) => String.fromCharCode(id),
 *   tokenToId: (t: string) => t.charCodeAt(0),
 * };
 * const { examples, trained_tokens } = buildSftExamples(
 *   [{ prompt: "2+2=", completion: "4" }],
 *   tokenizer,
 *   { source: "math.jsonl" },
 * );
 * assert.equal(String.fromCharCode(...examples[0].input_ids), "2+2=4$");
 * assert.deepEqual([...examples[0].labels], [-100, -100, -100, -100, 52, 36]);
 * assert.equal(examples[0].source, "math.jsonl:1");
 * assert.equal(trained_tokens, 2);
 * ```
 */
export function buildSftExamples(
  rows: readonly DataRecord[],
  tokenizer: SftTokenizer,
  opts: SftDataOptions = {},
): SftExamples {
  const o = resolve(tokenizer, opts, rows.length);
  const out: SftExamples = { examples: [], truncated: 0, num_tokens: 0, trained_tokens: 0, formats: {} };
  const progress = createProgress("sft examples", {
    total: rows.length,
    unit: "rows",
    enabled: opts.progress === true,
  });
  rows.forEach((record, i) => {
    const where = opts.sources?.[i] ??
      (opts.source === undefined ? `row ${i + 1}` : `${opts.source}:${i + 1}`);
    try {
      const row = parseRow(record, o.field);
      const { ids, trained } = tokenizeRow(tokenizer, row, rowTemplateKwargs(record), o);
      let n = ids.length;
      if (o.maxLength !== null && n > o.maxLength) {
        n = o.maxLength;
        out.truncated++;
      }
      const input_ids = new Int32Array(n), labels = new Int32Array(n);
      let count = 0;
      for (let t = 0; t < n; t++) {
        input_ids[t] = ids[t];
        labels[t] = trained(t) ? ids[t] : -100;
        if (t > 0 && labels[t] !== -100) count++;
      }
      if (count === 0) {
        throw new RangeError(
          n < ids.length
            ? `no token is trained once cut to max_length ${o.maxLength} (of ${ids.length}); ` +
              `raise max_length or shorten the prompt`
            : n < 2
            ? `it has ${n} token${n === 1 ? "" : "s"}, and a token is trained only after another; add content`
            : `no token is trained (all ${n} are masked); check the ${
              row.format === "language_modeling" ? `"${o.field}"` : "completion / assistant"
            } content`,
        );
      }
      out.examples.push({ input_ids, labels, source: where });
      out.num_tokens += n;
      out.trained_tokens += count;
      out.formats[row.format] = (out.formats[row.format] ?? 0) + 1;
    } catch (e) {
      throw atRow(e, where);
    }
    progress.update(i + 1);
  });
  progress.done(`${out.examples.length} examples, ${out.truncated} truncated`);
  return out;
}

/**
 * Read a data file and build its SFT examples ({@linkcode buildSftExamples}); rows are named
 * `file:line` for JSON Lines and `file#n` (n-th record) for JSON, CSV/TSV and Parquet.
 *
 * @param path a `.jsonl`, `.json`, `.csv`, `.tsv` or `.parquet` file
 * @param tokenizer encodes text and renders chat templates
 * @param opts as {@linkcode buildSftExamples} (`source` / `sources` are set from the file)
 * @returns the examples and counts
 * @throws {SyntaxError} for a malformed file (naming `file:line`)
 * @throws {TypeError} | {RangeError} as {@linkcode buildSftExamples}
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSftExamples } from "./sft.ts";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await Deno.writeTextFile(path, '{"text": "ab"}\n\n{"prompt": "a", "completion": "b"}\n');
 * const tokenizer = {
 *   encode: (s: string) => [...s].map((c) => c.charCodeAt(0)),
 *   decode: (ids: ArrayLike<number>) => String.fromCharCode(...Array.from(ids)),
 *   applyChatTemplate: () => ({ text: "", ids: [] }),
 *   chat_template: null,
 *   special_token_ids: [],
 *   eos_token_id: null,
 *   idToToken: () => null,
 *   tokenToId: () => null,
 * };
 * const { examples, formats } = await loadSftExamples(path, tokenizer);
 * assert.deepEqual(examples.map((e) => e.source), [`${path}:1`, `${path}:3`]);
 * assert.deepEqual(formats, { language_modeling: 1, prompt_completion: 1 });
 * await Deno.remove(path);
 * ```
 */
export async function loadSftExamples(
  path: string,
  tokenizer: SftTokenizer,
  opts: SftDataOptions = {},
): Promise<SftExamples> {
  const { rows, sources } = await readSourcedRows(path);
  return buildSftExamples(rows, tokenizer, { ...opts, source: path, sources });
}

/**
 * Refuse SFT examples that packing would keep no trained token of (an answer past `max_length`
 * under `bfd`), as `buildSftExamples` refuses them for padding: they trained nothing, and a run of
 * only such examples logged a loss of 0 that read as perfect.
 * @param examples the examples, built with `max_length: null` (packing cuts them)
 * @param maxLength tokens per packed row
 * @param strategy the packing strategy
 * @throws {RangeError} naming the example, its length and the fixes
 */
export function refuseCutToNothing(
  examples: readonly SftExample[],
  maxLength: number,
  strategy: PackingStrategy,
): void {
  const i = cutToNothing(examples, maxLength, strategy);
  if (i < 0) return;
  throw new RangeError(
    `Cannot build an SFT example from ${
      examples[i].source
    }: no token is trained once cut to max_length ${maxLength} ` +
      `(of ${
        examples[i].input_ids.length
      }); raise max_length, shorten the prompt, or pack with packing_strategy bfd_split`,
  );
}
