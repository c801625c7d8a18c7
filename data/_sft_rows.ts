/**
 * Private helpers of `sft.ts`: the four TRL dataset formats, detected and checked per row, and the
 * rows of a file with where each came from.
 * @module
 */
import { IS_NULL } from "./csv.ts";
import type { ChatMessage } from "../models/tokenizer/tokenizer.ts";
import { readLines } from "./_lines.ts";
import { type DataRecord, detectFormat, streamDataset } from "./readers.ts";
import { valueKind } from "../util/json.ts";

/** Roles a chat message may have. */
export const CHAT_ROLES: readonly string[] = ["system", "developer", "user", "assistant", "tool", "ipython"];

/** One row, checked: its format and the fields that format uses. */
export type SftRow =
  | { format: "language_modeling"; text: string }
  | { format: "prompt_completion"; prompt: string; completion: string }
  | { format: "conversational"; messages: ChatMessage[] }
  | { format: "conversational_prompt_completion"; prompt: ChatMessage[]; completion: ChatMessage[] };

/** A row that cannot become an example: the message names the field; the caller adds where. */
export class RowError extends TypeError {}

function checkMessages(value: unknown, field: string): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new RowError(`field "${field}" must be a non-empty list of {role, content} messages`);
  }
  return value.map((m, i) => {
    const at = `${field}[${i}]`;
    if (m === null || typeof m !== "object" || Array.isArray(m)) {
      throw new RowError(`field "${at}" must be a {role, content} object, got ${JSON.stringify(m)}`);
    }
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string") throw new RowError(`field "${at}.role" is missing or not a string`);
    if (!CHAT_ROLES.includes(role)) {
      throw new RowError(`field "${at}.role" is "${role}", not one of ${CHAT_ROLES.join(", ")}`);
    }
    const toolCall = role === "assistant" && (m as Record<string, unknown>).tool_calls !== undefined;
    if (typeof content !== "string" && !(toolCall && content == null)) {
      throw new RowError(`field "${at}.content" is ${content === undefined ? "missing" : "not a string"}`);
    }
    return m as ChatMessage;
  });
}

/** `row[key]` is present and neither null nor undefined (an empty CSV field reads as null). */
export function hasValue(row: DataRecord, key: string): boolean {
  return Object.hasOwn(row, key) && row[key] !== null && row[key] !== undefined;
}

/**
 * The format of a row, as TRL decides it: `prompt` (with `completion`) first, then `messages`,
 * then the text field; prompt and completion are both strings or both message lists.
 * @throws {RowError} a missing or mistyped field, or a message with an unknown role
 */
export function parseRow(row: DataRecord, textField: string): SftRow {
  if (hasValue(row, "prompt") || hasValue(row, "completion")) {
    for (const [f, other] of [["prompt", "completion"], ["completion", "prompt"]]) {
      if (hasValue(row, f)) continue;
      throw new RowError(
        row[f] === null // its column is there (a CSV's empty field, a JSON null)
          ? `field "${f}" ${IS_NULL}; fill it in or drop the row`
          : `field "${f}" is missing (the row has "${other}")`,
      );
    }
    const { prompt, completion } = row;
    if (typeof prompt === "string" && typeof completion === "string") {
      return { format: "prompt_completion", prompt, completion };
    }
    if (Array.isArray(prompt) && Array.isArray(completion)) {
      return {
        format: "conversational_prompt_completion",
        prompt: checkMessages(prompt, "prompt"),
        completion: checkMessages(completion, "completion"),
      };
    }
    throw new RowError(
      `fields "prompt" and "completion" must both be strings or both be message lists, got ` +
        `${valueKind(prompt)} and ${valueKind(completion)}`,
    );
  }
  if (hasValue(row, "messages")) {
    return { format: "conversational", messages: checkMessages(row.messages, "messages") };
  }
  const text = row[textField];
  if (typeof text === "string") return { format: "language_modeling", text };
  if (text === undefined && Object.hasOwn(row, "prompt") && Object.hasOwn(row, "completion")) {
    // prompt and completion columns whose fields are both null (two empty CSV fields)
    throw new RowError(
      `fields "prompt" and "completion" are null (in a CSV, empty fields); fill them in or drop the row`,
    );
  }
  throw new RowError(
    text === undefined
      ? `field "${textField}" is missing (columns: ${Object.keys(row).join(", ") || "none"}); ` +
        `give "${textField}", "prompt" + "completion" or "messages", or set dataset_text_field`
      : text === null
      ? `field "${textField}" ${IS_NULL}; fill it in or drop the row`
      : `field "${textField}" is ${valueKind(text)}, not text`,
  );
}

/** The extra template variables of a row: `tools` (a list or its JSON) and `chat_template_kwargs`. */
export function rowTemplateKwargs(row: DataRecord): Record<string, unknown> {
  const kwargs: Record<string, unknown> = {};
  if (hasValue(row, "tools")) {
    let tools = row.tools;
    if (typeof tools === "string") {
      try {
        tools = JSON.parse(tools);
      } catch {
        throw new RowError(`field "tools" is a string but not JSON`);
      }
    }
    kwargs.tools = tools;
  }
  if (hasValue(row, "chat_template_kwargs")) {
    const extra = row.chat_template_kwargs;
    if (typeof extra !== "object" || Array.isArray(extra)) {
      throw new RowError(`field "chat_template_kwargs" must be an object`);
    }
    Object.assign(kwargs, extra);
  }
  return kwargs;
}

/**
 * The records of a data file, each with where it came from: `file:line` for JSON Lines, `file#n`
 * (the n-th record, from 1) for the other formats.
 */
export async function readSourcedRows(path: string): Promise<{ rows: DataRecord[]; sources: string[] }> {
  const rows: DataRecord[] = [], sources: string[] = [];
  if (detectFormat(path) === "jsonl") {
    for await (const { text, line } of readLines(path)) {
      if (!text.trim()) continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new SyntaxError(
          `Cannot parse ${path}:${line}: invalid JSON (${(e as Error).message}); fix or remove that line`,
        );
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new SyntaxError(`Cannot read the record at ${path}:${line}: expected a JSON object {...}`);
      }
      rows.push(value as DataRecord);
      sources.push(`${path}:${line}`);
    }
    return { rows, sources };
  }
  for await (const r of streamDataset(path)) {
    rows.push(r);
    sources.push(`${path}#${rows.length}`);
  }
  return { rows, sources };
}
