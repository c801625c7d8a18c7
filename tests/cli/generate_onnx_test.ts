/**
 * `deno task cli generate --backend onnx` through the real entry point: the same greedy tokens as
 * `--backend cpu` (and as Hugging Face's, from the fixtures) for every fixture arch, from a model
 * folder (exported on the fly) and from a `.onnx` file with its folder's config; bad input in one line.
 */
import { join } from "node:path";
import { createBackend } from "../../kernels/backend.ts";
import { exportOnnx } from "../../models/formats/onnx.ts";
import { readSafetensors } from "../../models/formats/safetensors.ts";
import { loadModel } from "../../models/pretrained.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import type { Tokenizer } from "../../models/tokenizer/tokenizer.ts";
import { assert, FIXTURE_ARCHES, SHARED } from "../_assert.ts";
import { assertFails, cli, cliProcess } from "./_cli.ts";

const dir = (arch: string) => `${SHARED}/fixtures/hf-reference/${arch}`;

async function fixture(arch: string) {
  const { tensors } = await readSafetensors(`${dir(arch)}/cases.safetensors`);
  const geti = (n: string) => Array.from(tensors.get(n)!.data as BigInt64Array, (x) => Number(x));
  return { prompt: geti("greedy_prompt"), greedy: geti("greedy_tokens") };
}

/** `generate ...args --json`: exit 0, the summary line names the device; returns the tokens. */
async function tokens(args: string[], device: RegExp): Promise<number[]> {
  const r = await cli(["generate", ...args, "--json"]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^generate: \d+ tokens in [\d.]+ s .* finish_reason \w+\n$/);
  assert.match(r.err, device);
  return JSON.parse(r.out).tokens;
}

/** An ONNX export of a fixture in a temporary folder with the fixture's config.json (Optimum's layout). */
async function withExport(
  arch: string,
  fn: (file: string, tmp: string) => Promise<void>,
  tokenizer?: Tokenizer,
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "fledge-onnx-cli-" });
  const be = await createBackend("cpu");
  try {
    const model = await loadModel(dir(arch), { backend: be });
    try {
      await exportOnnx(model, join(tmp, "model.onnx"), { tokenizer });
    } finally {
      model.dispose();
    }
    // the export wrote them beside the graph, tokenizer or not (without one it wrote the graph alone)
    for (const f of ["config.json", "generation_config.json"]) {
      assert.ok((await Deno.stat(join(tmp, f))).isFile, f);
    }
    await fn(join(tmp, "model.onnx"), tmp);
  } finally {
    be.destroy();
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("generate --backend onnx gives the cpu backend's greedy tokens for every fixture arch", async () => {
  for (const arch of FIXTURE_ARCHES) {
    const { prompt, greedy } = await fixture(arch);
    const args = ["--model", dir(arch), "--input_ids", prompt.join(","), "--max_new_tokens", "8", "--greedy"];
    const cpu = await tokens([...args, "--backend", "cpu"], / on cpu, /);
    const onnx = await tokens([...args, "--backend", "onnx"], / on onnxruntime \(cpu\), /);
    assert.deepEqual(onnx, cpu, arch);
    assert.deepEqual(onnx, greedy, `${arch}: Hugging Face's greedy tokens`);
  }
});

Deno.test("generate --backend onnx runs a .onnx file with the config.json of its folder", async () => {
  const arch = FIXTURE_ARCHES[0] ?? "llama";
  const { prompt, greedy } = await fixture(arch);
  await withExport(arch, async (file) => {
    const args = ["--model", file, "--input_ids", prompt.join(","), "--max_new_tokens", "8", "--greedy"];
    assert.deepEqual(await tokens([...args, "--backend", "onnx"], /onnxruntime/), greedy);
    // streamed ids, through `deno run -A cli.ts` as a subprocess
    const r = await cliProcess(["generate", ...args, "--backend", "onnx"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, greedy.join(" ") + "\n");
  });
});

Deno.test("generate --backend onnx refuses beam search, a .onnx without config.json or without --backend onnx, and a missing file in one line, code 2", async () => {
  const fails = async (args: string[], re: RegExp) => assertFails(await cli(["generate", ...args]), 2, re);
  const ids = ["--input_ids", "3,4,5", "--backend", "onnx"];
  await fails(
    ["--model", dir("llama"), ...ids, "--num_beams", "2"],
    /beam search \(num_beams > 1\) needs --backend cpu/,
  );
  await fails(
    ["--model", "/nonexistent/model.onnx", ...ids],
    /--model \/nonexistent\/model\.onnx: no such file/,
  );
  await fails(
    ["--model", "x.onnx", "--input_ids", "3"],
    /x\.onnx is an ONNX file; run it with --backend onnx/,
  );
  await withExport(FIXTURE_ARCHES[0] ?? "llama", async (file, tmp) => {
    await Deno.remove(join(tmp, "config.json"));
    await fails(
      ["--model", file, ...ids],
      /its folder has no config\.json; put the model's config\.json beside/,
    );
  });
});

Deno.test("generate --backend onnx --prompt --stop: a .onnx exported with its tokenizer streams the cpu backend's text", async () => {
  const none = { bos_token: null, eos_token: null, pad_token: null, unk_token: null };
  const tok = await trainBpeTokenizer(["abc"], { vocab_size: 256, special_tokens: [], ...none });
  await withExport("llama", async (file, tmp) => {
    assert.ok(
      (await Deno.stat(join(tmp, "tokenizer.json"))).isFile,
      "exportOnnx saved the tokenizer beside the model",
    );
    for (const f of ["model.safetensors"]) await Deno.symlink(join(dir("llama"), f), join(tmp, f));
    const base = ["--prompt", "4X8x", "--greedy", "--max_new_tokens", "8"];
    const cpu = await cli(["generate", "--model", tmp, ...base, "--backend", "cpu", "--json"]);
    const onnx = await cli(["generate", "--model", file, ...base, "--backend", "onnx", "--json"]);
    assert.equal(onnx.out, cpu.out);
    const { text } = JSON.parse(cpu.out) as { text: string };
    const stop = text.slice(2, 3);
    const args = ["generate", "--model", file, ...base, "--backend", "onnx", "--stop", stop];
    const streamed = await cli(args);
    assert.equal(streamed.code, 0, streamed.err);
    assert.equal(streamed.out, text.slice(0, text.indexOf(stop)) + "\n");
    assert.match(streamed.err, /finish_reason stop_sequence/);
  }, tok);
});
