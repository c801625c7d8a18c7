/**
 * `deno task cli generate` through `main()`: the check (`--json` greedy tokens of every fixture arch), text prompts and
 * stop strings with a tokenizer in the folder, streaming output, and bad flags / folders.
 */
import { join } from "node:path";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { readSafetensors } from "../../models/formats/safetensors.ts";
import { assert, FIXTURE_ARCHES, SHARED } from "../_assert.ts";
import { backends, cpu } from "../_check.ts";
import { beamSearch } from "../../models/beam_search.ts";
import { loadModel } from "../../models/pretrained.ts";
import { assertFails, cli, cliProcess } from "./_cli.ts";
import { createStreamer } from "../../cli/_model.ts";
import type { Tokenizer } from "../../models/tokenizer/tokenizer.ts";

const dir = (arch: string) => `${SHARED}/fixtures/hf-reference/${arch}`;

async function fixture(arch: string) {
  const { tensors } = await readSafetensors(`${dir(arch)}/cases.safetensors`);
  const geti = (n: string) => Array.from(tensors.get(n)!.data as BigInt64Array, (x) => Number(x));
  return { prompt: geti("greedy_prompt"), greedy: geti("greedy_tokens") };
}

/** Run `generate ...args`, asserting exit code 0 and the summary line; returns stdout. */
async function run(args: string[]): Promise<string> {
  const r = await cli(["generate", ...args]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^generate: \d+ tokens in [\d.]+ s .* finish_reason \w+\n$/);
  return r.out;
}

/** The llama fixture plus a byte-level tokenizer (ids 0..255 = bytes) in a temporary folder. */
async function withTokenizer(fn: (d: string) => Promise<void>) {
  const d = await Deno.makeTempDir();
  try {
    for (const f of ["config.json", "generation_config.json", "model.safetensors"]) {
      await Deno.symlink(join(dir("llama"), f), join(d, f));
    }
    const none = { bos_token: null, eos_token: null, pad_token: null, unk_token: null };
    const tok = await trainBpeTokenizer(["abc"], { vocab_size: 256, special_tokens: [], ...none });
    await tok.save(d);
    await fn(d);
  } finally {
    await Deno.remove(d, { recursive: true });
  }
}

Deno.test("generate --json prints the issue's llama tokens exactly", async () => {
  const out = await run([
    "--model",
    dir("llama"),
    "--input_ids",
    "52,188,165,120,168,103,235,201,84,174,165,161,36,211,103,208",
    "--max-new-tokens",
    "8",
    "--greedy",
    "--json",
    "--backend",
    "cpu",
  ]);
  assert.equal(out, '{"tokens":[89,234,234,234,242,16,194,220]}\n');
});

Deno.test("generate --json prints every fixture arch's greedy tokens on every backend", async () => {
  for (const be of await backends()) {
    for (const arch of FIXTURE_ARCHES) {
      const { prompt, greedy } = await fixture(arch);
      const args = ["--model", dir(arch), "--input-ids", prompt.join(","), "--max_new_tokens=8", "--greedy"];
      const out = await run([...args, "--json", "--backend", be.name]);
      assert.equal(out, JSON.stringify({ tokens: greedy }) + "\n", `${arch} ${be.name}`);
    }
  }
});

Deno.test("generate --num_beams prints the best beam, the same as beamSearch(), not streamed", async () => {
  const { prompt } = await fixture("llama");
  const args = [
    "--model",
    dir("llama"),
    "--input-ids",
    prompt.join(","),
    "--max-new-tokens",
    "6",
    "--backend",
    "cpu",
  ];
  const one = await run([...args, "--num_beams", "1", "--json"]);
  const greedy = await run([...args, "--greedy", "--json"]);
  assert.equal(one, greedy, "one beam is greedy");
  const json = JSON.parse(await run([...args, "--num_beams", "3", "--no_repeat_ngram_size", "2", "--json"]));
  const plain = await run([...args, "--num_beams", "3", "--no_repeat_ngram_size", "2"]);
  assert.equal(plain, json.tokens.join(" ") + "\n");
  for (let i = 2; i < json.tokens.length; i++) {
    const pair = `${json.tokens[i - 1]},${json.tokens[i]}`;
    for (let j = 1; j < i - 1; j++) assert.notEqual(`${json.tokens[j - 1]},${json.tokens[j]}`, pair);
  }
  // --num_return_sequences: the beams beamSearch() returns, best first, a line each (only the first was printed)
  const lines = (await run([...args, "--num_beams", "3", "--num_return_sequences", "3", "--json"])).trim()
    .split("\n");
  const be = await cpu();
  const model = await loadModel(dir("llama"), { backend: be });
  const want = await beamSearch(model, [prompt], {
    num_beams: 3,
    num_return_sequences: 3,
    max_new_tokens: 6,
  });
  model.dispose();
  assert.deepEqual(lines.map((l) => JSON.parse(l).tokens), want.tokens);
  assert.deepEqual(lines.map((l) => JSON.parse(l).sequence_score), want.sequences_scores);
  const text = await run([...args, "--num_beams", "3", "--num_return_sequences", "2"]);
  assert.equal(text, want.tokens.slice(0, 2).map((t) => t.join(" ") + "\n").join(""));
});

Deno.test("generate streams ids without a tokenizer", async () => {
  const { prompt, greedy } = await fixture("gpt2");
  const out = await run(["--model", dir("gpt2"), "--input-ids", prompt.join(","), "--max-new-tokens", "5"]);
  assert.equal(out, greedy.slice(0, 5).join(" ") + "\n");
});

Deno.test("generate --prompt uses the folder's tokenizer; --stop trims the text", async () => {
  await withTokenizer(async (d) => {
    // the bytes of the prompt ids, so the tokenizer gives the same ids back
    const ids = [52, 188, 165, 120, 168, 103, 235, 201, 84, 174, 165, 161, 36, 211, 103, 208];
    const latin = String.fromCharCode(...ids.filter((i) => i < 128));
    const base = ["--model", d, "--backend", "cpu", "--greedy", "--max-new-tokens", "8"];
    const byIds = JSON.parse(await run([...base, "--input-ids", ids.join(","), "--json"]));
    assert.deepEqual(byIds.tokens, [89, 234, 234, 234, 242, 16, 194, 220]);
    assert.ok(byIds.text.startsWith("Y"), byIds.text);
    const stopped = JSON.parse(
      await run([...base, "--input-ids", ids.join(","), "--json", "--stop", "\u0010"]),
    );
    assert.deepEqual(stopped.tokens, [89, 234, 234, 234, 242, 16]);
    assert.equal(stopped.text, byIds.text.slice(0, byIds.text.indexOf("\u0010")));
    const streamed = await run([...base, "--input-ids", ids.join(","), "--stop", "\u0010"]);
    assert.equal(streamed, stopped.text + "\n");
    const text = JSON.parse(await run([...base, "--prompt", latin, "--json"]));
    assert.equal(text.tokens.length, 8);
    assert.equal(typeof text.text, "string");
  });
});

Deno.test("the streamer prints nothing of a stop string that a token completes, as --json cuts it", () => {
  const tok = { decode: (ids: number[]) => String.fromCharCode(...ids) } as unknown as Tokenizer;
  let out = "";
  const s = createStreamer((x) => out += x, tok, ["kagepac"]);
  for (const c of "packagepac") s.onToken([c.charCodeAt(0)]);
  s.end("pac"); // generate()'s text, cut before the stop
  assert.equal(out, "pac\n", "the stop's first character was printed");
});

Deno.test("generate rejects bad flags, a missing folder and a prompt without a tokenizer in one line, code 2", async () => {
  const fails = async (args: string[], re: RegExp) => assertFails(await cli(["generate", ...args]), 2, re);
  const m = ["--model", dir("llama")];
  await fails(
    [...m, "--input_ids", "1", "--bogus"],
    /generate: unknown flag --bogus \(see `deno task cli generate --help`\)/,
  );
  await fails([...m, "--input_ids", "1", "--top-k", "-1"], /--top_k -1 is out of range: must be >= 0/);
  await fails([...m, "--input-ids", "1", "--max-new-tokens", "x"], /--max_new_tokens x is not an integer/);
  await fails([...m, "--input_ids", "1,a"], /--input_ids 1,a: "a" is not a token id/);
  await fails(
    [...m, "--input_ids", "1", "--backend", "tpu"],
    /--backend tpu is not one of webgpu, cpu, auto/,
  );
  await fails([...m, "--input_ids", "1", "--greedy", "--do_sample"], /exclude each other/);
  await fails([...m], /exactly one of --prompt TEXT or --input_ids/);
  await fails(["--input_ids", "1"], /generate: missing --model/);
  await fails(
    ["--model", "./no/such/model", "--input_ids", "1"],
    /--model \.\/no\/such\/model: no such folder; give a folder with config\.json/,
  );
  await fails( // a file of a model folder: it said "no such folder", although the path exists
    ["--model", `${m[1]}/config.json`, "--input_ids", "1"],
    /--model .*config\.json is a file; give the folder that holds it/,
  );
  // a value flag twice: the last wins (argparse's rule, for a command line with an override after it), said
  const twice = await cliProcess([
    "generate",
    "--model",
    m[1],
    "--input_ids",
    "1",
    "--max_new_tokens",
    "2",
    "--max_new_tokens",
    "3",
    "--json",
  ]);
  assert.equal(twice.code, 0, twice.err);
  assert.equal(JSON.parse(twice.out).tokens.length, 3);
  assert.match(
    twice.err,
    /^generate: --max_new_tokens is given more than once; the last value, 3, is used$/m,
  );
  await fails([...m, "--prompt", "hi"], /--prompt needs a tokenizer, but .*llama has no tokenizer\.json/);
  // a folder's generation_config.json sampling at temperature 0 is named (it had been called a
  // generate() option); --greedy is the way out
  await withTokenizer(async (d) => {
    await Deno.remove(join(d, "generation_config.json"));
    await Deno.writeTextFile(join(d, "generation_config.json"), '{"do_sample": true, "temperature": 0}');
    await fails(
      ["--model", d, "--input_ids", "1"],
      /^fledge: generate: \S+generation_config\.json sets temperature 0 with do_sample true, and sampling needs a temperature > 0; pass --temperature T, or --greedy \(without --seed\)$/,
    );
    await run(["--model", d, "--input_ids", "1", "--greedy", "--max_new_tokens", "2", "--backend", "cpu"]);
  });
  await fails(
    [...m, "--input_ids", "1", "--temperature", "-1", "--backend", "cpu"],
    /temperature: must be >= 0/,
  );
  // flags the chosen decoding would not read (HF warns that they are unused)
  await fails(
    [...m, "--input_ids", "1", "--greedy", "--top_p", "0.5"],
    /--top_p is for sampling, and --greedy/,
  );
  await fails([...m, "--input_ids", "1", "--seed", "5"], /--seed is for sampling, and sampling is off/);
  await fails(
    [...m, "--input_ids", "1", "--length_penalty", "2"],
    /--length_penalty scores beam hypotheses, and this is not beam search; add --num_beams K/,
  );
  const help = await cli(["generate", "--help"]);
  assert.match(help.out, /^usage: deno task cli generate --model DIR_OR_ID/);
});
