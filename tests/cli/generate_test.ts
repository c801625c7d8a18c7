/**
 * generateCli(): the check (`--json` greedy tokens of every fixture arch), text prompts and
 * stop strings with a tokenizer in the folder, streaming output, and bad flags / folders.
 */
import { join } from "node:path";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { generateCli } from "../../cli/generate.ts";
import { readSafetensors } from "../../models/formats/safetensors.ts";
import { assert, SHARED } from "../_assert.ts";
import { backends } from "../_check.ts";

const ARCHES = ["llama", "qwen2", "phi3", "gpt2"] as const;
const dir = (arch: string) => `${SHARED}/fixtures/hf-reference/${arch}`;

async function fixture(arch: string) {
  const { tensors } = await readSafetensors(`${dir(arch)}/cases.safetensors`);
  const geti = (n: string) => Array.from(tensors.get(n)!.data as BigInt64Array, (x) => Number(x));
  return { prompt: geti("greedy_prompt"), greedy: geti("greedy_tokens") };
}

/** Run the CLI, returning what it wrote to stdout. */
async function run(args: string[]): Promise<string> {
  let out = "";
  await generateCli(args, { stdout: (s) => out += s, stderr: () => {} });
  return out;
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

Deno.test("generateCli --json prints the issue's llama tokens exactly", async () => {
  const out = await run([
    "--model",
    dir("llama"),
    "--input-ids",
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

Deno.test("generateCli --json prints every fixture arch's greedy tokens on every backend", async () => {
  for (const be of await backends()) {
    for (const arch of ARCHES) {
      const { prompt, greedy } = await fixture(arch);
      const args = ["--model", dir(arch), "--input-ids", prompt.join(","), "--max_new_tokens=8", "--greedy"];
      const out = await run([...args, "--json", "--backend", be.name]);
      assert.equal(out, JSON.stringify({ tokens: greedy }) + "\n", `${arch} ${be.name}`);
    }
  }
});

Deno.test("generateCli streams ids without a tokenizer", async () => {
  const { prompt, greedy } = await fixture("gpt2");
  const out = await run(["--model", dir("gpt2"), "--input-ids", prompt.join(","), "--max-new-tokens", "5"]);
  assert.equal(out, greedy.slice(0, 5).join(" ") + "\n");
});

Deno.test("generateCli --prompt uses the folder's tokenizer; --stop trims the text", async () => {
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

Deno.test("generateCli rejects bad flags, a missing folder and a prompt without a tokenizer", async () => {
  const fails = async (args: string[], cls: ErrorConstructor, re: RegExp) => {
    await assert.rejects(() => run(args), (e: Error) => {
      assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n") || /problem/.test(e.message), e.message);
      return true;
    });
  };
  const m = ["--model", dir("llama")];
  await fails([...m, "--input-ids", "1", "--bogus"], RangeError, /generate: Unknown option '--bogus'/);
  await fails([...m, "--input-ids", "1", "--top-p", "-1"], RangeError, /ambiguous\. Did you forget/);
  await fails(
    [...m, "--input-ids", "1", "--max-new-tokens", "x"],
    RangeError,
    /--max-new-tokens x is not an integer >= 1/,
  );
  await fails([...m, "--input-ids", "1,a"], RangeError, /--input-ids 1,a: "a" is not a token id/);
  await fails([...m, "--input-ids", "1", "--backend", "tpu"], RangeError, /--backend tpu is not one of/);
  await fails([...m, "--input-ids", "1", "--greedy", "--do-sample"], RangeError, /exclude each other/);
  await fails([...m], TypeError, /exactly one of --prompt TEXT or --input-ids/);
  await fails(["--input-ids", "1"], TypeError, /--model is required/);
  await fails(
    ["--model", "./no/such/model", "--input-ids", "1"],
    TypeError,
    /--model \.\/no\/such\/model: no such folder; give a folder with config\.json/,
  );
  await fails(
    [...m, "--prompt", "hi"],
    TypeError,
    /--prompt needs a tokenizer, but .*llama has no tokenizer\.json/,
  );
  await fails(
    [...m, "--input-ids", "1", "--temperature=-1", "--backend", "cpu"],
    RangeError,
    /temperature: must be >= 0/,
  );
  const help = await run(["--help"]);
  assert.match(help, /usage: fledge generate --model DIR_OR_ID/);
});
