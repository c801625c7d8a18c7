/**
 * Chat-template rendering shared by the tokenizers in `tokenizer.ts` and `bpe.ts`: the Jinja
 * engine of `@huggingface/jinja` (the one `@huggingface/transformers` uses), fed the same context
 * as `PreTrainedTokenizer.apply_chat_template` in transformers.js v4 (`messages`,
 * `add_generation_prompt`, the special token strings, then extra variables).
 * @module
 */
import { Template } from "npm:@huggingface/jinja@^0.5";
import { checkBooleans } from "../../util/problems.ts";
import type { ChatMessage, ChatTemplateOptions } from "./types.ts";

/** The special token strings a template may use, as in transformers' `SPECIAL_TOKEN_ATTRIBUTES`. */
export const SPECIAL_TOKEN_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;

/** The first Jinja block (`for`, `if`, `macro`, ...) of `template` left open, or null. */
function unclosedBlock(template: string): string | null {
  const stack: string[] = [];
  for (const m of template.matchAll(/\{%-?\s*(\w+)/g)) {
    const tag = m[1];
    if (["for", "if", "macro", "call", "filter", "set", "raw", "generation"].includes(tag)) {
      // `{% set x = ... %}` is a statement; only `{% set x %}...{% endset %}` opens a block
      if (tag === "set" && /^\{%-?\s*set\s+[\w.,\s]+=/.test(template.slice(m.index!))) continue;
      stack.push(tag);
    } else if (tag.startsWith("end") && stack.at(-1) === tag.slice(3)) stack.pop();
  }
  return stack[0] ?? null;
}

/** Compiles templates once per tokenizer (held by the tokenizer, no module-level cache). */
export class ChatTemplateRenderer {
  readonly #compiled = new Map<string, Template>();

  /**
   * Parse `template` once (cached).
   * @throws {SyntaxError} when the template does not parse, naming `where`.
   */
  compile(template: string, where: string): Template {
    let compiled = this.#compiled.get(template);
    if (!compiled) {
      try {
        compiled = new Template(template);
      } catch (e) {
        // the parser's own message for a block left open is a JS error ("Cannot read properties of
        // undefined"): name the block instead
        const open = e instanceof TypeError ? unclosedBlock(template) : null;
        const why = open
          ? `a {% ${open} %} block is never closed (add {% end${open} %})`
          : (e as Error).message;
        throw new SyntaxError(`Cannot parse chat template from ${where}: ${why}; fix the Jinja syntax`, {
          cause: e,
        });
      }
      this.#compiled.set(template, compiled);
    }
    return compiled;
  }

  /**
   * Render `template` with the transformers.js context.
   * @throws {SyntaxError} when the template does not parse, naming `where`.
   * @throws {TypeError} when rendering fails (e.g. the template's `raise_exception`).
   */
  render(template: string, where: string, context: Record<string, unknown>): string {
    const compiled = this.compile(template, where);
    return renderGuarded(where, () => compiled.render(context));
  }
}

/** Run a template render; a failure becomes a TypeError that names the template's origin. */
export function renderGuarded(where: string, render: () => string): string {
  try {
    return render();
  } catch (e) {
    throw new TypeError(
      `Cannot apply chat template from ${where}: ${(e as Error).message}; check the messages ` +
        `(roles, order, content) against what the template expects`,
      { cause: e },
    );
  }
}

/** The token string of a `tokenizer_config.json` entry: a string, or `{content}` (AddedToken). */
export function tokenContent(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") {
    return (value as { content: string }).content;
  }
  return null;
}

/**
 * A special-token entry (or a list of them, as `additional_special_tokens`) as content strings;
 * other values as they are.
 */
export function tokenContents(value: unknown): unknown {
  return Array.isArray(value) ? value.map((t) => tokenContent(t) ?? t) : tokenContent(value) ?? value;
}

/**
 * The boolean options of `applyChatTemplate`, checked; the two that end the text differently are
 * refused together, as HF refuses them.
 */
export function checkTemplateFlags(options: ChatTemplateOptions): void {
  checkBooleans(options, ["add_generation_prompt", "continue_final_message"], "Cannot apply chat template");
  const kw = options.template_kwargs ?? {};
  const taken = ["messages", "add_generation_prompt", "continue_final_message"].find((k) =>
    Object.hasOwn(kw, k)
  );
  if (taken !== undefined) { // (messages there had replaced the conversation; Python refuses the repeat)
    throw new TypeError(
      `Cannot apply chat template: template_kwargs.${taken} would replace ${
        taken === "messages" ? "the messages argument" : `the ${taken} option`
      }; pass it there instead`,
    );
  }
  if (options.add_generation_prompt && options.continue_final_message) {
    throw new TypeError(
      "Cannot apply chat template: continue_final_message and add_generation_prompt do not go together " +
        "(one continues the last message, the other opens a new assistant turn); drop one",
    );
  }
}

/**
 * HF's `continue_final_message`: the rendered chat cut right after the last message's text, so a
 * model continues it (the template's end-of-turn text dropped). Trailing spaces of the message are
 * kept when the template kept them.
 * @throws {TypeError} when the template does not write the last message's text
 */
export function continueFinalMessage(
  rendered: string,
  messages: readonly ChatMessage[],
  where: string,
): string {
  const last = messages.at(-1)?.content as unknown;
  const text = typeof last === "string"
    ? last
    : Array.isArray(last)
    ? [...last].reverse().find((b) => typeof b?.text === "string")?.text as string | undefined
    : undefined;
  if (text === undefined) {
    throw new TypeError(
      "Cannot apply chat template: continue_final_message is set but the last message has no text",
    );
  }
  const at = rendered.lastIndexOf(text.trim());
  if (at < 0) {
    throw new TypeError(
      `Cannot apply chat template: continue_final_message is set but the template from ${where} does not ` +
        `write the last message's text; check that the template and the last message go together`,
    );
  }
  const kept = rendered.slice(at, at + text.trimStart().length) === text;
  return rendered.slice(0, at + (kept ? text.trimStart() : text.trim()).length);
}
