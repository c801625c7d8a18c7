/**
 * Private helpers of `sft.ts`: chat rendering and the spans of tokens to train.
 *
 * Token positions come from character positions in the *decoded* rendering: `decode(ids[:k])` for a
 * prefix `k` is compared with the decoded text of a shorter rendering. Working in characters, not by
 * comparing token lists, keeps spans right when BPE cuts the joint differently in the shorter
 * rendering (Llama 3's `<|end_header_id|>\n\n` is one `"\n\n"` token at the end of a prompt, two
 * `"\n"` tokens before content), the case TRL only warns about ("Mismatch between tokenized prompt
 * and the start of tokenized prompt+completion").
 * @module
 */
import type { ChatMessage, Tokenizer } from "../models/tokenizer/tokenizer.ts";

/** What the span code needs of a tokenizer. */
export type SpanTokenizer = Pick<Tokenizer, "decode" | "encode" | "applyChatTemplate" | "special_token_ids">;

/** A half-open range of token positions `[start, end)`. */
export type TokenSpan = [start: number, end: number];

/** `decode(ids[:k]).length` for any `k`, each computed once, and the char -> token searches on it. */
export class DecodedPrefix {
  readonly #tok: SpanTokenizer;
  readonly #ids: readonly number[];
  readonly #lengths = new Map<number, number>();

  constructor(tok: SpanTokenizer, ids: readonly number[]) {
    this.#tok = tok;
    this.#ids = ids;
  }

  /** Characters in the decoded text of the first `k` tokens. */
  length(k: number): number {
    let n = this.#lengths.get(k);
    if (n === undefined) {
      n = k === 0 ? 0 : decodeText(this.#tok, this.#ids.slice(0, k)).length;
      this.#lengths.set(k, n);
    }
    return n;
  }

  /** The token holding decoded character `c` (the largest `k` whose prefix ends at or before `c`). */
  tokenAt(c: number): number {
    let lo = 0, hi = this.#ids.length; // invariant: length(lo) <= c
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.length(mid) <= c) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The fewest tokens whose decoded text covers the first `c` characters. */
  tokenEnd(c: number): number {
    let lo = 0, hi = this.#ids.length; // answer in [lo, hi]
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.length(mid) >= c) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** Decode with nothing dropped or cleaned up, so lengths line up with the rendered text. */
export function decodeText(tok: SpanTokenizer, ids: readonly number[]): string {
  return ids.length === 0
    ? ""
    : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
}

/** Characters shared at the start of `a` and `b`. */
export function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/**
 * Where the completion starts in `fullIds`: `promptIds.length` when the prompt's tokens are a prefix
 * (TRL's rule), else the token holding the first character after the decoded prompt.
 */
export function completionStart(tok: SpanTokenizer, promptIds: number[], fullIds: number[]): number {
  let prefix = promptIds.length <= fullIds.length;
  for (let i = 0; prefix && i < promptIds.length; i++) prefix = promptIds[i] === fullIds[i];
  if (prefix) return promptIds.length;
  const c = commonPrefix(decodeText(tok, promptIds), decodeText(tok, fullIds));
  return new DecodedPrefix(tok, fullIds).tokenAt(c);
}

const GENERATION_TAG = /\{%(-?)\s*(end)?generation\s*(-?)%\}/g;
const OPEN = "\uE000", CLOSE = "\uE001";

/** True when a template marks assistant output with `{% generation %}` (as TRL `has_generation_markers`). */
export function hasGenerationMarkers(template: string): boolean {
  return /\{%-?\s*generation\s*-?%\}/.test(template);
}

/**
 * The template with `{% generation %}` / `{% endgeneration %}` turned into expressions that print
 * private-use sentinels. The Jinja engine drops these tags: it applies the block-tag rules
 * (`lstrip_blocks`, `trim_blocks`) to them, then removes each with its whitespace control (`-`), so
 * the whitespace on its two sides joins into one run that a neighbour's `-` strips whole. The
 * sentinel expressions copy that: a side is stripped when the tag strips it, or when the other side
 * is only whitespace up to a neighbour that strips towards the tag.
 */
export function markedTemplate(template: string): string {
  const t = template
    .replace(/^[ \t]*(\{%-?\s*(?:end)?generation\s*-?%\})/gm, "$1")
    .replace(/(\{%-?\s*(?:end)?generation\s*-?%\})\n/g, "$1");
  return t.replace(GENERATION_TAG, (tag: string, l: string, end: string, r: string, at: number) => {
    const prev = /(-?)(?:\}\}|%\}|#\})\s*$/.exec(t.slice(0, at));
    const next = /^\s*(?:\{\{|\{%|\{#)(-?)/.exec(t.slice(at + tag.length));
    const left = l === "-" || next?.[1] === "-", right = r === "-" || prev?.[1] === "-";
    return `{{${left ? "-" : ""} '${end ? CLOSE : OPEN}' ${right ? "-" : ""}}}`;
  });
}

/** What rendering a row needs: the template, its marked form (or null), the row's extra variables. */
export interface RenderContext {
  template: string;
  /** {@linkcode markedTemplate} of `template` when it has generation markers, else null. */
  marked: string | null;
  kwargs: Record<string, unknown>;
}

/** Render and encode `messages` (ids without added special tokens, as `applyChatTemplate`). */
export function renderChat(
  tok: SpanTokenizer,
  ctx: RenderContext,
  messages: ChatMessage[],
  add_generation_prompt = false,
): number[] {
  return tok.applyChatTemplate(messages, {
    chat_template: ctx.template,
    add_generation_prompt,
    template_kwargs: ctx.kwargs,
  }).ids;
}

/**
 * Render a conversation whose template has generation markers: its ids and the token spans of
 * what the markers enclose (HF `return_assistant_tokens_mask`).
 * @throws {TypeError} when a message holds a sentinel character or the markers do not pair up
 */
export function markedSpans(
  tok: SpanTokenizer,
  ctx: RenderContext,
  messages: ChatMessage[],
): { ids: number[]; spans: TokenSpan[] } {
  const json = JSON.stringify(messages);
  if (json.includes(OPEN) || json.includes(CLOSE)) {
    throw new TypeError("a message holds U+E000 or U+E001, which mark {% generation %} spans; remove them");
  }
  const { text: marked } = tok.applyChatTemplate(messages, {
    chat_template: ctx.marked ?? markedTemplate(ctx.template),
    template_kwargs: ctx.kwargs,
  });
  let text = "", open = -1;
  const chars: [number, number][] = [];
  for (const ch of marked) {
    if (ch === OPEN || ch === CLOSE) {
      if ((ch === OPEN) !== (open < 0)) {
        throw new TypeError(
          "the chat template's {% generation %} / {% endgeneration %} markers do not pair up",
        );
      }
      if (ch === OPEN) open = text.length;
      else {
        chars.push([open, text.length]);
        open = -1;
      }
    } else text += ch;
  }
  const ids = tok.encode(text, { add_special_tokens: false });
  const prefix = new DecodedPrefix(tok, ids);
  // Char positions of the raw text mapped to decoded-text positions through the text before them.
  const at = (c: number) =>
    decodeText(tok, tok.encode(text.slice(0, c), { add_special_tokens: false })).length;
  const spans = chars.filter(([s, e]) => e > s)
    .map(([s, e]): TokenSpan => [prefix.tokenAt(at(s)), prefix.tokenEnd(at(e))]);
  return { ids, spans };
}

/**
 * The token spans of the assistant turns of a conversation with a template that has no generation
 * markers: for each assistant turn, the conversation up to it is rendered with the generation
 * prompt and up to and including it without; what the second adds is the turn. The span starts at
 * the first character after the generation prompt and ends with the first special token after the
 * turn's content (its end-of-turn token): the glue a template puts after that token (ChatML's `\n`,
 * Phi-3's trailing EOS) is not trained, nor the next turn's header.
 * @throws {TypeError} when a turn's content is not found in the full rendering (naming the turn)
 */
export function diffSpans(
  tok: SpanTokenizer,
  ctx: RenderContext,
  messages: ChatMessage[],
): { ids: number[]; spans: TokenSpan[] } {
  const ids = renderChat(tok, ctx, messages);
  const full = decodeText(tok, ids);
  const prefix = new DecodedPrefix(tok, ids);
  const special = new Set(tok.special_token_ids);
  const spans: TokenSpan[] = [];
  messages.forEach((m, i) => {
    if (m.role !== "assistant") return;
    const before = decodeText(tok, renderChat(tok, ctx, messages.slice(0, i), true));
    const upTo = decodeText(tok, renderChat(tok, ctx, messages.slice(0, i + 1)));
    const s = commonPrefix(before, upTo), e = commonPrefix(upTo, full);
    const content = typeof m.content === "string" ? m.content.trim() : "";
    const found = content ? upTo.indexOf(content, s) : s;
    if (found < 0 || found + content.length > e) {
      throw new TypeError(
        `assistant message ${i} is not found where the chat template renders it once later turns follow ` +
          `(assistant_only_loss without {% generation %} markers); use a chat template with the markers`,
      );
    }
    const contentEnd = found + content.length;
    const start = prefix.tokenAt(s);
    let end = prefix.tokenEnd(e);
    for (let j = start; j < end; j++) {
      if (special.has(ids[j]) && prefix.length(j) >= contentEnd) {
        end = j + 1;
        break;
      }
    }
    if (end > start) spans.push([start, end]);
  });
  return { ids, spans };
}
