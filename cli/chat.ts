/**
 * `deno task cli chat`: talk to a model folder or hub id through its chat template. With
 * `--prompt` one message and one reply (for scripts; `--json` prints `{reply, tokens, ...}`);
 * without it a REPL that reads one message per line from stdin until EOF or `/exit`, keeps the
 * conversation, renders it with the tokenizer's chat template (`add_generation_prompt`) and streams
 * each reply. A model without a chat template is a one-line error (exit 2) naming the fixes:
 * `--chat_template FILE`, or `generate --prompt` for plain continuation; there is no silent plain
 * fallback. When the conversation no longer fits `max_position_embeddings`, the oldest turns are
 * dropped (the system message is kept) and a note goes to stderr.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseFlags } from "../util/flags.ts";
import { createBackend } from "../kernels/backend.ts";
import { generate, type GenerateOptions } from "../models/generate.ts";
import { type GenerationConfig, loadGenerationConfig } from "../models/generation_config.ts";
import { loadModel } from "../models/pretrained.ts";
import type { Transformer } from "../models/transformer.ts";
import { type ChatMessage, loadTokenizer, type Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { CliIO, Command } from "./command.ts";
import {
  checkFolderTemperature,
  checkSeedSamples,
  createStreamer,
  modelFolder,
  SAMPLER_FLAGS,
  samplerOptions,
} from "./_model.ts";
import { readNamedTextFile } from "../util/atomic.ts";

const USAGE = `usage: deno task cli chat --model DIR_OR_ID [--system TEXT] [--prompt TEXT] [options]

Chats with a model folder (config.json, model.safetensors, tokenizer.json with a chat_template) or a
hub id, rendering the conversation with the model's chat template and streaming each reply.

With --prompt: one message, one reply on stdout, then exit (for scripts). Without it: a REPL that
reads one message per line from stdin until EOF or /exit (/reset starts over, keeping --system),
so \`printf 'hi\\nand then?\\n' | deno task cli chat --model DIR\` works too. A model whose tokenizer
has no chat_template is an error: pass --chat_template FILE, or use \`generate --prompt\` for a
plain continuation. The oldest turns are dropped when the conversation outgrows the context.

options:
  --model DIR_OR_ID          a folder with config.json + model.safetensors + tokenizer.json, or a hub id
  --system TEXT              a system message first
  --prompt TEXT              one-shot: this message, print the reply, exit
  --chat_template FILE       a Jinja chat template to use instead of the tokenizer's
  --max_new_tokens N         new tokens per reply (default: generation_config.json's max_new_tokens,
                             else what its max_length leaves, else 256; at most what the context leaves)
  --greedy                   argmax decoding (do_sample false)
  --do_sample                sample (implied by --temperature, --top_k, --top_p without --greedy)
  --temperature T            > 0
  --top_k K                  keep the K most likely tokens (0 = off)
  --top_p P                  nucleus sampling, in [0, 1]
  --repetition_penalty R     > 0 (1 = off)
  --seed S                   sampler seed (same seed, same replies)
  --backend webgpu|cpu|auto  default auto
  --json                     with --prompt: print {"reply", "tokens", "prompt_tokens", "finish_reason"};
                             in the REPL: one such JSON line per reply instead of streamed text
  -h, --help                 this text

Defaults of the sampler come from the folder's generation_config.json. Replies end at the tokenizer's
eos_token or the generation config's eos_token_id. A summary line per reply goes to stderr.`;

const FLAGS = {
  model: { type: "string", required: true },
  system: { type: "string" },
  prompt: { type: "string" },
  chat_template: { type: "string" },
  max_new_tokens: { type: "int", min: 1 },
  ...SAMPLER_FLAGS,
  backend: { type: "string", choices: ["webgpu", "cpu", "auto"], default: "auto" },
  json: { type: "boolean" },
} as const;

/** New tokens per reply when neither the flag nor generation_config.json says. */
const DEFAULT_MAX_NEW_TOKENS = 256;

/** The `chat` command. */
export const command: Command = {
  summary: "chat with a model through its chat template (a streaming REPL, or --prompt one-shot)",
  usage: USAGE,
  run: chatRun,
};

/** What one reply gave. */
interface Reply {
  reply: string;
  tokens: number[];
  prompt_tokens: number;
  finish_reason: string;
}

async function chatRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("chat", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const sampler = samplerOptions("chat", v);
  if (v.prompt !== undefined && !v.prompt.trim()) {
    throw new RangeError("chat: --prompt is empty; give a message");
  }
  const template = v.chat_template === undefined ? undefined : await readTemplate(v.chat_template);
  const dir = await modelFolder(v.model, "chat");
  if (!existsSync(join(dir, "tokenizer.json"))) {
    throw new TypeError(
      `chat: ${dir} has no tokenizer.json; chat needs the model's tokenizer and chat template`,
    );
  }
  const tok = await loadTokenizer(dir);
  if (template === undefined && tok.chat_template === null) {
    const named = Object.keys(tok.chat_templates ?? {});
    throw new TypeError(
      `chat: ${dir} has ${
        named.length
          ? `named chat templates and none is "default" (${named.join(", ")})`
          : "no chat_template (tokenizer_config.json or chat_template.jinja)"
      }; pass --chat_template FILE, or use \`deno task cli generate --prompt\` for a plain continuation`,
    );
  }
  const gc = await loadGenerationConfig(dir);
  checkSeedSamples("chat", v.seed, sampler.do_sample, gc, dir);
  checkFolderTemperature("chat", sampler.do_sample, sampler.temperature, gc, dir);
  const system: ChatMessage[] = v.system === undefined ? [] : [{ role: "system", content: v.system }];
  // Render once up front: a template that cannot render the conversation fails before the model loads.
  tok.applyChatTemplate([...system, { role: "user", content: "hi" }], {
    add_generation_prompt: true,
    chat_template: template,
    chat_template_source: v.chat_template,
  });

  const gen: GenerateOptions = {
    ...sampler,
    generation_config: gc,
    tokenizer: tok,
  };
  const be = await createBackend(v.backend as "webgpu" | "cpu" | "auto");
  try {
    const model = await loadModel(dir, { backend: be });
    try {
      gen.eos_token_id = eosIds(gc, model, tok);
      const session = {
        model,
        tok,
        template,
        templateFile: v.chat_template,
        gen,
        gc,
        maxNew: v.max_new_tokens,
        json: v.json,
        io,
      };
      if (v.prompt !== undefined) {
        const r = await reply(session, [...system, { role: "user", content: v.prompt }]);
        if (v.json) io.stdout(JSON.stringify(r) + "\n");
        return;
      }
      await repl(session, system);
    } finally {
      model.dispose();
    }
  } finally {
    be.destroy();
  }
}

interface Session {
  model: Transformer;
  tok: Tokenizer;
  template: string | undefined;
  /** The --chat_template file `template` was read from, named in its errors. */
  templateFile: string | undefined;
  gen: GenerateOptions;
  gc: GenerationConfig;
  maxNew: number | undefined;
  json: boolean;
  io: CliIO;
}

async function readTemplate(file: string): Promise<string> {
  return await readNamedTextFile(file, "chat: --chat_template", "give a Jinja template file");
}

/** The ids a reply ends at: the generation config's (else the model config's) plus the tokenizer's eos. */
function eosIds(gc: GenerationConfig, model: Transformer, tok: Tokenizer): number[] {
  const own = gc.eos_token_id !== undefined ? gc.eos_token_id : model.config.eos_token_id;
  const list = own === null || own === undefined ? [] : Array.isArray(own) ? own : [own];
  if (tok.eos_token_id !== null && !list.includes(tok.eos_token_id)) list.push(tok.eos_token_id);
  return list;
}

/**
 * Render the conversation (the oldest turns dropped while it does not fit the context, the system
 * message kept), generate the reply, stream it (unless --json) and return it. `messages` is trimmed
 * in place so that the caller keeps what the model saw.
 */
async function reply(s: Session, messages: ChatMessage[]): Promise<Reply> {
  const { ids, maxNew } = fitPrompt(s, messages);
  return await answer(s, ids, maxNew);
}

/**
 * The prompt ids of the conversation, the oldest turns dropped (in place; the system message kept)
 * until the prompt and the reply fit the context, and the new tokens the reply may take.
 * @throws {RangeError} when even the last message alone does not fit
 */
function fitPrompt(s: Session, messages: ChatMessage[]): { ids: number[]; maxNew: number } {
  // generation_config.json's max_length (HF: prompt + new tokens, read when max_new_tokens is
  // unset) bounds the conversation as the model's positions do, and the reply takes what it leaves.
  const byLength = s.maxNew === undefined && s.gc.max_new_tokens === undefined &&
    s.gc.max_length !== undefined;
  const limit = Math.min(s.model.config.max_position_embeddings, byLength ? s.gc.max_length! : Infinity);
  const want = s.maxNew ?? s.gc.max_new_tokens ?? (byLength ? limit : DEFAULT_MAX_NEW_TOKENS);
  const context = limit < s.model.config.max_position_embeddings
    ? `the ${limit} tokens of generation_config.json's max_length`
    : `the model's context of ${limit} tokens`;
  const render = () =>
    s.tok.applyChatTemplate(messages, {
      add_generation_prompt: true,
      chat_template: s.template,
      chat_template_source: s.templateFile,
    }).ids;
  let ids = render();
  let dropped = 0;
  const first = messages[0]?.role === "system" ? 1 : 0;
  // Drop the oldest user + assistant pair while the prompt and the reply do not fit; without
  // --max_new_tokens the reply is promised at least a quarter of the context.
  const need = s.maxNew ?? Math.min(want, Math.max(1, Math.floor(limit / 4)));
  while (ids.length + need > limit && messages.length - first > 1) {
    messages.splice(first, messages[first + 1]?.role === "assistant" ? 2 : 1);
    dropped++;
    ids = render();
  }
  if (dropped) {
    s.io.stderr(`chat: dropped the ${dropped} oldest turns to fit ${context}\n`);
  }
  const room = limit - ids.length;
  if (room < 1 || (s.maxNew !== undefined && s.maxNew > room)) {
    throw new RangeError(
      `chat: the ${ids.length}-token prompt leaves ${Math.max(0, room)} of ${context}` +
        `${s.maxNew !== undefined ? ` for --max_new_tokens ${s.maxNew}` : ""}; send a shorter message` +
        `${s.maxNew !== undefined ? " or lower --max_new_tokens" : ""}`,
    );
  }
  return { ids, maxNew: Math.min(want, room) };
}

/** Generate the reply to `ids`, stream it (unless --json), print the summary line and return it. */
async function answer(s: Session, ids: number[], maxNew: number): Promise<Reply> {
  const stream = s.json ? null : createStreamer(s.io.stdout, s.tok, []);
  const t0 = performance.now();
  const r = await generate(s.model, [ids], {
    ...s.gen,
    max_new_tokens: maxNew,
    onToken: stream?.onToken,
  });
  const secs = (performance.now() - t0) / 1000;
  const text = r.text?.[0] ?? s.tok.decode(r.tokens[0], { skip_special_tokens: true });
  stream?.end(text);
  const n = r.tokens[0].length;
  s.io.stderr(
    `chat: ${n} tokens in ${secs.toFixed(2)} s (${(n / secs).toFixed(1)} tokens/s), finish_reason ${
      r.finish_reason[0]
    }\n`,
  );
  return { reply: text, tokens: r.tokens[0], prompt_tokens: ids.length, finish_reason: r.finish_reason[0] };
}

/** One message per stdin line until EOF or /exit; replies streamed to stdout. */
async function repl(s: Session, system: ChatMessage[]): Promise<void> {
  const tty = Deno.stdin.isTerminal();
  const ask = () => tty && s.io.stderr("you> ");
  if (tty) s.io.stderr("chat: one message per line; /reset starts over, /exit or Ctrl-D ends\n");
  let messages: ChatMessage[] = [...system];
  ask();
  for await (const raw of stdinLines()) {
    const line = raw.trim();
    if (line === "/exit" || line === "/quit") break;
    if (line === "/reset") {
      messages = [...system];
      s.io.stderr("chat: conversation reset\n");
    } else if (line) {
      messages.push({ role: "user", content: line });
      let fit: { ids: number[]; maxNew: number };
      try {
        fit = fitPrompt(s, messages);
      } catch (e) {
        // A message too long for the context ends nothing but itself.
        if (!(e instanceof RangeError)) throw e;
        messages.pop();
        s.io.stderr(`fledge: ${e.message}\n`);
        ask();
        continue;
      }
      const r = await answer(s, fit.ids, fit.maxNew);
      messages.push({ role: "assistant", content: r.reply });
      if (s.json) s.io.stdout(JSON.stringify(r) + "\n");
    }
    ask();
  }
  if (tty) s.io.stderr("\n");
}

/** The lines of stdin (without their `\n` / `\r\n`), the last one even without a newline. */
async function* stdinLines(): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of Deno.stdin.readable) {
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
    }
  }
  buf += dec.decode();
  if (buf) yield buf;
}
