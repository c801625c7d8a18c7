/**
 * `deno task cli chat` as a subprocess: `--help`, bad flags, a model without a chat template (exit 2,
 * one line), `--prompt --json` equal to `generate` on the chat-templated ids, and the REPL fed
 * through piped stdin (conversation kept, replies streamed, `/exit`, old turns dropped to fit).
 */
import { join } from "node:path";
import { createBackend } from "../../kernels/backend.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { saveModel } from "../../models/save.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { type ChatMessage, loadTokenizer } from "../../models/tokenizer/tokenizer.ts";
import { assert, ROOT } from "../_assert.ts";
import { assertFails, cliProcess, type CliRun } from "./_cli.ts";

const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const tmp = await Deno.makeTempDir({ prefix: "fledge-chat-cli-" });
const chatDir = join(tmp, "chat"), plainDir = join(tmp, "plain");
{
  const texts = Array(20).fill("hello there, how are you? fine thanks. tell me more about the weather");
  const special_tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  const tok = await trainBpeTokenizer(texts, {
    vocab_size: 300,
    special_tokens,
    eos_token: "<|im_end|>",
    chat_template: CHATML,
  });
  const mc = presetConfig("tiny", {
    vocab_size: tok.vocab_size,
    hidden_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 96,
    eos_token_id: 2,
  });
  const be = await createBackend("cpu");
  await saveModel(Transformer.init(mc, be), chatDir);
  be.destroy();
  await tok.save(chatDir);
  // the same model, a tokenizer without a chat template
  await Deno.mkdir(plainDir);
  for (const e of Deno.readDirSync(chatDir)) {
    if (!e.name.startsWith("tokenizer")) await Deno.copyFile(join(chatDir, e.name), join(plainDir, e.name));
  }
  await (await trainBpeTokenizer(texts, { vocab_size: 300, special_tokens })).save(plainDir);
}
const tok = await loadTokenizer(chatDir);
const BASE = ["--backend", "cpu", "--greedy"];

/** `deno run -A cli.ts chat ...args` with `input` piped to stdin. */
async function chatPiped(args: string[], input: string): Promise<CliRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/cli.ts`, "chat", ...args],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(input));
  await w.close();
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** The greedy tokens of `generate --input_ids` on the chat-templated conversation. */
async function generateIds(messages: ChatMessage[], n: number): Promise<number[]> {
  const ids = tok.applyChatTemplate(messages, { add_generation_prompt: true }).ids;
  const r = await cliProcess([
    "generate",
    "--model",
    chatDir,
    "--input_ids",
    ids.join(","),
    "--max_new_tokens",
    String(n),
    "--json",
    ...BASE,
  ]);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out).tokens;
}

Deno.test("chat --help exits 0; bad flags and values exit 2 with one line", async () => {
  const help = await cliProcess(["chat", "--help"]);
  assert.equal(help.code, 0, help.err);
  assert.ok(help.out.startsWith("usage: deno task cli chat --model"), help.out);
  assert.match(help.out, /--prompt TEXT/);
  assertFails(
    await cliProcess(["chat", "--model", chatDir, "--temprature", "0.7"]),
    2,
    /chat: unknown flag --temprature; did you mean --temperature\?/,
  );
  assertFails(await cliProcess(["chat", "--prompt", "hi"]), 2, /chat: missing --model/);
  assertFails(
    await cliProcess(["chat", "--model", chatDir, "--max_new_tokens", "0", "--prompt", "hi"]),
    2,
    /--max_new_tokens 0 is out of range: must be >= 1/,
  );
  assertFails(
    await cliProcess(["chat", "--model", join(tmp, "nope"), "--prompt", "hi"]),
    2,
    /chat: --model .*nope: no such folder/,
  );
});

Deno.test("chat on a model without a chat template: exit 2 naming --chat_template and generate", async () => {
  const r = await cliProcess(["chat", "--model", plainDir, "--prompt", "hi", ...BASE]);
  assertFails(r, 2, /chat: .*plain has no chat_template .*--chat_template FILE.*generate --prompt/);
  // a list of named templates without a "default" one: its names (it had said there was none)
  const namedDir = join(tmp, "named");
  await Deno.mkdir(namedDir);
  for (const e of Deno.readDirSync(chatDir)) {
    await Deno.copyFile(join(chatDir, e.name), join(namedDir, e.name));
  }
  const config = JSON.parse(await Deno.readTextFile(join(namedDir, "tokenizer_config.json")));
  config.chat_template = [{ name: "tool_use", template: CHATML }];
  await Deno.writeTextFile(join(namedDir, "tokenizer_config.json"), JSON.stringify(config));
  assertFails(
    await cliProcess(["chat", "--model", namedDir, "--prompt", "hi", ...BASE]),
    2,
    /chat: .*named has named chat templates and none is "default" \(tool_use\); pass --chat_template FILE/,
  );
  assertFails(
    await cliProcess([
      "chat",
      "--model",
      plainDir,
      "--chat_template",
      join(tmp, "none.jinja"),
      "--prompt",
      "hi",
    ]),
    2,
    /--chat_template .*none\.jinja does not exist/,
  );
  // a template file that does not parse, or refuses to render, is named, not the model's folder
  for (
    const [name, text, re] of [
      [
        "unclosed.jinja",
        "{% for m in messages %}{{ m.content }{% endfor %}",
        /Cannot parse chat template from /,
      ],
      ["raises.jinja", '{{ raise_exception("no system role") }}', /Cannot apply chat template from /],
    ] as const
  ) {
    await Deno.writeTextFile(join(tmp, name), text);
    const r = await cliProcess([
      "chat",
      "--model",
      plainDir,
      "--chat_template",
      join(tmp, name),
      "--prompt",
      "hi",
    ]);
    assertFails(r, 2, new RegExp(re.source + ".*" + name.replace(".", "\\.") + ": "));
  }
  // with --chat_template the same model chats
  await Deno.writeTextFile(join(tmp, "chatml.jinja"), CHATML);
  const args = ["--prompt", "hello there", "--max_new_tokens", "4", "--json", ...BASE];
  const withFile = await cliProcess([
    "chat",
    "--model",
    plainDir,
    "--chat_template",
    join(tmp, "chatml.jinja"),
    ...args,
  ]);
  assert.equal(withFile.code, 0, withFile.err);
  const own = await cliProcess(["chat", "--model", chatDir, ...args]);
  assert.deepEqual(JSON.parse(withFile.out), JSON.parse(own.out));
});

Deno.test("chat --prompt --json replies as generate does on the chat-templated prompt", async () => {
  const messages = [{ role: "system", content: "be brief" }, { role: "user", content: "hello there" }];
  const r = await cliProcess([
    "chat",
    "--model",
    chatDir,
    "--system",
    "be brief",
    "--prompt",
    "hello there",
    "--max_new_tokens",
    "6",
    "--json",
    ...BASE,
  ]);
  assert.equal(r.code, 0, r.err);
  const json = JSON.parse(r.out);
  assert.deepEqual(Object.keys(json).sort(), ["finish_reason", "prompt_tokens", "reply", "tokens"]);
  assert.deepEqual(json.tokens, await generateIds(messages, 6));
  assert.equal(
    json.prompt_tokens,
    tok.applyChatTemplate(messages, { add_generation_prompt: true }).ids.length,
  );
  assert.equal(json.reply, tok.decode(json.tokens, { skip_special_tokens: true }));
  assert.match(r.err, /^chat: \d+ tokens in [\d.]+ s .*finish_reason \w+\n$/);
  // without --json the reply is streamed as text, then a newline
  const plain = await cliProcess([
    "chat",
    "--model",
    chatDir,
    "--system",
    "be brief",
    "--prompt",
    "hello there",
    "--max_new_tokens",
    "6",
    ...BASE,
  ]);
  assert.equal(plain.code, 0, plain.err);
  assert.equal(plain.out, json.reply + "\n");
});

Deno.test("chat reads messages from piped stdin, keeps the conversation and stops at /exit", async () => {
  const args = ["--model", chatDir, "--max_new_tokens", "4", ...BASE];
  const input = "hello there\n\nhow are you?\n/exit\nnever read\n";
  const r = await chatPiped([...args, "--json"], input);
  assert.equal(r.code, 0, r.err);
  const replies = r.out.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(replies.length, 2, r.out);
  const second: ChatMessage[] = [
    { role: "user", content: "hello there" },
    { role: "assistant", content: replies[0].reply },
    { role: "user", content: "how are you?" },
  ];
  assert.deepEqual(replies[0].tokens, await generateIds(second.slice(0, 1), 4));
  assert.deepEqual(replies[1].tokens, await generateIds(second, 4));
  assert.equal(r.err.match(/^chat: \d+ tokens in /gm)?.length, 2, r.err);
  // streamed text: the same replies, one after the other; EOF ends the REPL as /exit does
  const streamed = await chatPiped(args, "hello there\nhow are you?");
  assert.equal(streamed.code, 0, streamed.err);
  assert.equal(streamed.out, replies.map((x) => x.reply + "\n").join(""));
});

Deno.test("chat drops the oldest turns when the conversation outgrows the context", async () => {
  const line = "tell me more about the weather, how are you?";
  const r = await chatPiped(
    ["--model", chatDir, "--max_new_tokens", "8", "--system", "hi", "--json", ...BASE],
    `${line}\n`.repeat(5),
  );
  assert.equal(r.code, 0, r.err);
  const replies = r.out.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(replies.length, 5);
  assert.match(r.err, /chat: dropped the \d+ oldest turns to fit the model's context of 96 tokens/);
  for (const x of replies) assert.ok(x.prompt_tokens + 8 <= 96, JSON.stringify(x));
  // in the REPL such a message gets a one-line error and the conversation goes on without it
  const skip = await chatPiped(
    ["--model", chatDir, "--max_new_tokens", "4", "--json", ...BASE],
    `hello there\n${line.repeat(10)}\nhow are you?\n`,
  );
  assert.equal(skip.code, 0, skip.err);
  const two = skip.out.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(two.length, 2);
  assert.match(skip.err, /^fledge: chat: the \d+-token prompt leaves 0 of the model's context of 96 tokens/m);
  assert.deepEqual(
    two[1].tokens,
    await generateIds([
      { role: "user", content: "hello there" },
      { role: "assistant", content: two[0].reply },
      { role: "user", content: "how are you?" },
    ], 4),
  );
  // one message longer than the context: a one-line error, exit 2
  assertFails(
    await cliProcess(["chat", "--model", chatDir, "--prompt", line.repeat(10), ...BASE]),
    2,
    /chat: the \d+-token prompt leaves 0 of the model's context of 96 tokens; send a shorter message/,
  );
});

Deno.test("chat reads max_length from generation_config.json; sampler flags with --greedy are refused", async () => {
  const capped = join(tmp, "capped");
  await Deno.mkdir(capped);
  for (const e of Deno.readDirSync(chatDir)) await Deno.copyFile(join(chatDir, e.name), join(capped, e.name));
  await Deno.writeTextFile(join(capped, "generation_config.json"), JSON.stringify({ max_length: 30 }));
  const r = await cliProcess(["chat", "--model", capped, "--prompt", "hello there", "--json", ...BASE]);
  assert.equal(r.code, 0, r.err);
  const json = JSON.parse(r.out);
  // HF: max_length counts the prompt and the reply
  if (json.finish_reason === "length") assert.equal(json.prompt_tokens + json.tokens.length, 30, r.out);
  else assert.ok(json.prompt_tokens + json.tokens.length <= 30, r.out);
  assertFails(
    await cliProcess([
      "chat",
      "--model",
      chatDir,
      "--prompt",
      "hi",
      "--temperature",
      "0.5",
      "--seed",
      "3",
      ...BASE,
    ]),
    2,
    /chat: --temperature, --seed are for sampling, and --greedy turns it off; drop one or the other/,
  );
  assertFails(
    await cliProcess(["chat", "--model", chatDir, "--prompt", "hi", "--seed", "3", "--backend", "cpu"]),
    2,
    /chat: --seed is for sampling, and sampling is off \(do_sample false or unset in .*generation_config\.json, HF's default\); add --do_sample or drop --seed/,
  );
});

globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
