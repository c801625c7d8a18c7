/**
 * `deno task cli export` through the real entry point: --help, bad flags (exit 2, one line), a model
 * folder to GGUF with --json, and a fine-tuned run folder (base model + PEFT adapter/) exported in one
 * command, merged or as base + adapter GGUF, each file read back by `@huggingface/gguf`.
 */
import { join } from "node:path";
import { gguf } from "npm:@huggingface/gguf@~0.1.18";
import { createBackend } from "../../kernels/backend.ts";
import { generate } from "../../models/generate.ts";
import { loadModel } from "../../models/pretrained.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { loadAdapter, mergeAdapter } from "../../training/peft.ts";
import { assert, SHARED } from "../_assert.ts";
import { assertFails, cli, cliProcess } from "./_cli.ts";
import { tinyRecipe } from "../tasks/_recipe.ts";

const REF = `${SHARED}/fixtures/hf-reference`;

/** A temp folder with the llama fixture + a 256-token byte-level tokenizer (`model/`), and a run folder (`run/adapter/`). */
async function withRun(fn: (model: string, run: string, tmp: string) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "fledge-export-" });
  try {
    const model = join(tmp, "model"), adapter = join(tmp, "run", "adapter");
    await Deno.mkdir(model);
    await Deno.mkdir(adapter, { recursive: true });
    for (const f of ["config.json", "generation_config.json", "model.safetensors"]) {
      await Deno.symlink(join(REF, "llama", f), join(model, f));
    }
    const none = { bos_token: null, eos_token: null, pad_token: null, unk_token: null };
    const tok = await trainBpeTokenizer(["abc"], { vocab_size: 256, special_tokens: [], ...none });
    await tok.save(model);
    await tok.save(adapter); // a training run saves the tokenizer with its adapter
    const cfg = JSON.parse(await Deno.readTextFile(join(REF, "llama", "lora", "adapter_config.json")));
    cfg.base_model_name_or_path = model;
    await Deno.writeTextFile(join(adapter, "adapter_config.json"), JSON.stringify(cfg));
    await Deno.symlink(
      join(REF, "llama", "lora", "adapter_model.safetensors"),
      join(adapter, "adapter_model.safetensors"),
    );
    await fn(model, join(tmp, "run"), tmp);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

const parse = (path: string) =>
  gguf(path, { allowLocalFile: true }) as Promise<
    { metadata: Record<string, unknown>; tensorInfos: { name: string; dtype: number }[] }
  >;

Deno.test("export --help through the real entry point (subprocess)", async () => {
  const r = await cliProcess(["export", "--help"]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^usage: deno task cli export --model DIR_OR_ID --output FILE/);
  assert.match(r.out, /--outtype f32\|f16\|q8_0\|q4_0/);
  const list = await cli(["--help"]);
  assert.match(list.out, /\n {2}export {4}/, "listed among the commands");
});

Deno.test("export refuses bad flags and inputs with exit 2 and one line", async () => {
  await withRun(async (model, _run, tmp) => {
    const out = join(tmp, "m.gguf");
    assertFails(
      await cli(["export", "--model", model, "--output", out, "--outype", "f16"]),
      2,
      /unknown flag --outype; did you mean --outtype\?/,
    );
    assertFails(
      await cli(["export", "--model", model, "--output", out, "--outtype", "q5_k"]),
      2,
      /--outtype/,
    );
    assertFails(await cli(["export", "--model", model]), 2, /--output/);
    assertFails(await cli(["export", "--model", model, "--output", out, "--format", "pt"]), 2, /--format/);
    assertFails( // --output x.onnx once got GGUF bytes; an explicit --format must agree with the extension
      await cli(["export", "--model", model, "--output", join(tmp, "x.onnx"), "--format", "gguf"]),
      2,
      /--output .*x\.onnx ends in \.onnx but --format is gguf; make them agree/,
    );
    const file = join(tmp, "a-file"); // a path under a file is bad input (exit 2), not a failure (it was 1)
    await Deno.writeTextFile(file, "");
    assertFails(
      await cli(["export", "--model", model, "--output", join(file, "m.gguf")]),
      2,
      /File exists|a-file/,
    );
    assertFails(
      await cli(["export", "--model", await Deno.makeTempDir({ dir: tmp }), "--output", out]),
      2,
      /has no config.json, model\/ or adapter\//,
    );
    assertFails(
      await cli(["export", "--model", join(REF, "llama"), "--output", out]),
      2,
      /no tokenizer\.json in .*pass --tokenizer DIR/,
    );
    assertFails(
      await cli(["export", "--model", model, "--output", out, "--adapter_output", "x.gguf"]),
      2,
      /needs an adapter/,
    );
    assertFails(
      await cli(["export", "--model", join(tmp, "run"), "--output", join(tmp, "m.onnx"), "--format", "onnx"]),
      2,
      /add --merge/,
    );
    // the adapter written over the model it belongs to
    const same = join(tmp, "same.gguf");
    assertFails(
      await cli(["export", "--model", join(tmp, "run"), "--output", same, "--adapter_output", same]),
      2,
      /--adapter_output .*same\.gguf is --output too \(the adapter would replace the model\)/,
    );
    // flags this export would not read
    assertFails(
      await cli(["export", "--model", model, "--output", out, "--adapter_only"]),
      2,
      /--adapter_only needs an adapter \(--adapter DIR; .*model has none\)/,
    );
    const only = (...extra: string[]) =>
      cli(["export", "--model", join(tmp, "run"), "--output", out, "--adapter_only", ...extra]);
    assertFails(
      await only("--merge", "--outtype", "q8_0"),
      2,
      /--merge writes the model, and --adapter_only the adapter alone; choose one; --outtype is the model's weight type; the adapter's is --adapter_outtype/,
    );
    assertFails(
      await only("--adapter_output", "x.gguf"),
      2,
      /--adapter_output is the adapter's file beside the model's; with --adapter_only it is --output/,
    );
    assertFails(
      await cli(["export", "--model", join(tmp, "run"), "--output", join(tmp, "a.onnx"), "--adapter_only"]),
      2,
      /--adapter_only writes a GGUF adapter \(llama\.cpp\); ONNX has none: drop it/,
    );
    assertFails(
      await cli(["export", "--model", model, "--output", out, "--merge"]),
      2,
      /--merge needs an adapter/,
    );
    assertFails(
      await cli([
        "export",
        "--model",
        model,
        "--output",
        join(tmp, "m.onnx"),
        "--format",
        "onnx",
        "--outtype",
        "q8_0",
        "--name",
        "x",
      ]),
      2,
      /--outtype is for GGUF \(ONNX keeps f32\); --name is GGUF's general\.name/,
    );
    assertFails(
      await cli([
        "export",
        "--model",
        join(tmp, "run"),
        "--output",
        out,
        "--merge",
        "--adapter_outtype",
        "f16",
      ]),
      2,
      /--adapter_outtype is for an adapter written as its own GGUF \(no --merge\)/,
    );
    await Deno.writeTextFile(out, "old");
    assertFails(
      await cli(["export", "--model", model, "--output", out]),
      2,
      /already exists; pass --overwrite/,
    );
    assert.equal(await Deno.readTextFile(out), "old", "left as it was");
    // --overwrite replaces files, never a folder: refused before the model loads, nothing written beside
    for (const name of ["folder.gguf", "folder.onnx"]) {
      const folder = join(tmp, "into", name);
      await Deno.mkdir(folder, { recursive: true });
      assertFails(
        await cli(["export", "--model", model, "--output", folder, "--overwrite"]),
        2,
        new RegExp(`Cannot write .*${name.replace(".", "\\.")}: it is a folder; give a file path`),
      );
      assert.deepEqual(
        [...Deno.readDirSync(join(tmp, "into"))].map((e) => e.name).sort(),
        ["folder.gguf"].concat(
          name === "folder.onnx" ? ["folder.onnx"] : [],
        ),
      );
    }
    // the export's own input files are never its output, --overwrite or not (the weights became GGUF bytes)
    assertFails(
      await cli(["export", "--model", model, "--output", join(model, "tokenizer.json"), "--overwrite"]),
      2,
      /--output .*tokenizer\.json is a file of .*model, which this export reads; write the export elsewhere/,
    );
    assertFails( // an empty --name was dropped for the default name
      await cli(["export", "--model", model, "--output", join(tmp, "named.gguf"), "--name", ""]),
      2,
      /name must be non-empty text, got "" \(--name\)/,
    );
    // a DoRA adapter llama.cpp cannot hold: the refusal names the adapter file asked for, not a temp name
    const dora = join(tmp, "dora");
    assertFails(
      await cli([
        "export",
        "--model",
        model,
        "--adapter",
        join(REF, "llama", "dora"),
        "--output",
        `${dora}.gguf`,
      ]),
      2,
      new RegExp(`Cannot export the adapter to ${dora}-lora\\.gguf: llama\\.cpp adapters cannot hold DoRA`),
    );
    assert.ok(!Deno.readDirSync(tmp).some((e) => e.name.startsWith("dora")), "nothing written");
  });
});

Deno.test("export --json writes a model folder as GGUF, read back by @huggingface/gguf", async () => {
  await withRun(async (model, _run, tmp) => {
    const out = join(tmp, "llama-q8.gguf");
    const r = await cli(["export", "--model", model, "--output", out, "--outtype", "q8_0", "--json"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /^export: wrote .*llama-q8\.gguf \(gguf q8_0, 21 tensors, /);
    const json = JSON.parse(r.out);
    const p = await parse(out);
    assert.deepEqual(json, { path: out, bytes: (await Deno.stat(out)).size, tensors: p.tensorInfos.length });
    assert.equal(p.metadata["general.file_type"], 7);
    // named by its folder, as convert_hf_to_gguf.py (it had been fledge-llama), with gguf-py's size label
    assert.equal(p.metadata["general.name"], "model");
    assert.match(String(p.metadata["general.size_label"]), /^\d+(\.\d)?[KMB]$/);
    const again = await cli([
      "export",
      "--model",
      model,
      "--output",
      out,
      "--outtype",
      "f32",
      "--overwrite",
      "--name",
      "mine",
    ]);
    assert.equal(again.code, 0, again.err);
    assert.equal((await parse(out)).metadata["general.name"], "mine");
    // what a killed export of the same file left is named with its size, and kept (another export
    // of it may be running); another file's temp is not this export's business
    const left = `${out}.tmp-0123abcd-4567`, other = join(tmp, "other.gguf.tmp-89abcdef-0123");
    for (const f of [left, other]) await Deno.writeFile(f, new Uint8Array(2048));
    const noted = await cli(["export", "--model", model, "--output", out, "--outtype", "f32", "--overwrite"]);
    assert.equal(noted.code, 0, noted.err);
    assert.match(
      noted.err,
      /^export: note: .*llama-q8\.gguf\.tmp-0123abcd-4567, 2\.0 kB is left over from an interrupted write of .*llama-q8\.gguf; delete it unless another export of .*llama-q8\.gguf is running$/m,
    );
    assert.doesNotMatch(noted.err, /other\.gguf/);
    for (const f of [left, other]) await Deno.stat(f);
  });
});

Deno.test("export of a fine-tuned run folder: base + adapter GGUF, or merged with --merge, in one command", async () => {
  await withRun(async (_model, run, tmp) => {
    const out = join(tmp, "ft.gguf");
    const r = await cli(["export", "--model", run, "--output", out, "--outtype", "f32", "--json"]);
    assert.equal(r.code, 0, r.err);
    const json = JSON.parse(r.out);
    assert.equal(json.adapter.path, join(tmp, "ft-lora.gguf"));
    const base = await parse(out), lora = await parse(json.adapter.path);
    assert.equal(base.metadata["general.type"], "model");
    assert.equal(lora.metadata["general.type"], "adapter");
    assert.equal(lora.metadata["adapter.lora.alpha"], 8);
    assert.ok(lora.tensorInfos.some((t) => t.name === "blk.0.attn_q.weight.lora_a"));
    assert.equal(json.adapter.tensors, lora.tensorInfos.length);
    assert.ok(lora.tensorInfos.every((t) => t.dtype === 0), "the adapter is f32 (GGML type 0) by default");
    // the adapter's file appearing while the pair is written is not replaced, and the model's GGUF
    // written meanwhile goes too (it had been renamed over, leaving a model without its adapter)
    const late = join(tmp, "late.gguf"), lateAdapter = join(tmp, "late-lora.gguf");
    const watcher = Deno.watchFs(tmp);
    const appear = (async () => {
      for await (const ev of watcher) {
        if (ev.paths.some((p) => p.startsWith(`${lateAdapter}.tmp-`))) {
          await Deno.writeTextFile(lateAdapter, "someone else's", { createNew: true });
          return;
        }
      }
    })();
    // (a subprocess: the watcher here answers while the export runs, not between its awaits)
    const raced = await cliProcess(["export", "--model", run, "--output", late, "--outtype", "f32"]);
    watcher.close();
    await appear;
    assertFails(
      raced,
      2,
      /late-lora\.gguf: it appeared while this output was being made, and it is not replaced/,
    );
    assert.equal(await Deno.readTextFile(lateAdapter), "someone else's");
    assert.deepEqual(
      [...Deno.readDirSync(tmp)].map((e) => e.name).filter((n) => n.startsWith("late")),
      ["late-lora.gguf"],
      "neither the model's GGUF nor a temp file left",
    );
    // --adapter_only: the same adapter GGUF alone (convert_lora_to_gguf.py), byte for byte, no tokenizer needed
    await Deno.rename(join(run, "adapter", "tokenizer.json"), join(tmp, "tokenizer.json"));
    const only = join(tmp, "only.gguf");
    const o = await cli(["export", "--model", run, "--output", only, "--adapter_only", "--json"]);
    assert.equal(o.code, 0, o.err);
    assert.match(o.err, /^export: wrote .*only\.gguf \(gguf LoRA adapter f32, \d+ tensors, /);
    assert.deepEqual(JSON.parse(o.out), {
      path: only,
      bytes: (await Deno.stat(only)).size,
      tensors: json.adapter.tensors,
    });
    assert.deepEqual(await Deno.readFile(only), await Deno.readFile(json.adapter.path));
    assert.deepEqual(
      [...Deno.readDirSync(tmp)].map((e) => e.name).filter((n) => n.startsWith("only")),
      ["only.gguf"],
      "no model file",
    );
    assertFails(
      await cli(["export", "--model", run, "--output", only, "--adapter_only"]),
      2,
      /only\.gguf already exists; pass --overwrite/,
    );
    await Deno.rename(join(tmp, "tokenizer.json"), join(run, "adapter", "tokenizer.json"));
    // ... from the base's config.json alone: its weights are never loaded (a 7B base had taken 28 GB)
    const cfgOnly = join(tmp, "config-only");
    await Deno.mkdir(cfgOnly);
    await Deno.copyFile(join(REF, "llama", "config.json"), join(cfgOnly, "config.json"));
    const c = await cli([
      "export",
      "--model",
      cfgOnly,
      "--adapter",
      join(run, "adapter"),
      "--output",
      join(tmp, "c.gguf"),
      "--adapter_only",
      "--name",
      "run",
    ]);
    assert.equal(c.code, 0, c.err);
    assert.equal((await parse(join(tmp, "c.gguf"))).metadata["general.name"], "run");
    assertFails( // flags it would not read, and DoRA with the fix that works with this command
      await cli([
        "export",
        "--model",
        run,
        "--output",
        join(tmp, "t.gguf"),
        "--adapter_only",
        "--tokenizer",
        tmp,
      ]),
      2,
      /--tokenizer is the model's vocabulary, and an adapter GGUF holds none/,
    );
    assertFails(
      await cli([
        "export",
        "--model",
        cfgOnly,
        "--adapter",
        join(REF, "llama", "dora"),
        "--output",
        join(tmp, "d.gguf"),
        "--adapter_only",
      ]),
      2,
      /is DoRA, which llama\.cpp adapters cannot hold; export the model with it merged instead \(--merge, without --adapter_only\)/,
    );
    // --adapter_outtype sets the adapter's type (--outtype is the base model's)
    const q = await cli([
      "export",
      "--model",
      run,
      "--output",
      join(tmp, "ftq.gguf"),
      "--outtype",
      "f32",
      "--adapter_outtype",
      "q8_0",
      "--json",
    ]);
    assert.equal(q.code, 0, q.err);
    const loraQ = await parse(JSON.parse(q.out).adapter.path);
    assert.ok(loraQ.tensorInfos.some((t) => t.dtype === 8), "q8_0 tensors (GGML type 8)");
    assert.equal((await parse(join(tmp, "ftq.gguf"))).metadata["general.file_type"], 0);

    // the model's GGUF fails after the adapter's was made: neither is left (the adapter once blocked the rerun)
    const bad = await cli([
      "export",
      "--model",
      run,
      "--output",
      join(tmp, "bad.gguf"),
      "--name",
      "my phi-3",
    ]);
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /choose another name/);
    assert.deepEqual([...Deno.readDirSync(tmp)].filter((e) => e.name.startsWith("bad")), [], "nothing left");
    assert.equal((await cli(["export", "--model", run, "--output", join(tmp, "bad.gguf")])).code, 0);

    // the adapter folder's own tokenizer, chat template included, wins over the base's (it had been dropped)
    const tc = join(run, "adapter", "tokenizer_config.json");
    const template = "{% for m in messages %}{{ m.content }}{% endfor %}";
    await Deno.writeTextFile(
      tc,
      JSON.stringify({ ...JSON.parse(await Deno.readTextFile(tc)), chat_template: template }),
    );
    const merged = join(tmp, "merged.gguf");
    const m = await cli([
      "export",
      "--model",
      run,
      "--output",
      merged,
      "--merge",
      "--outtype",
      "f32",
      "--json",
    ]);
    assert.equal(m.code, 0, m.err);
    assert.match(m.err, /, its adapter \(.*adapter\) merged/); // (it had said "adapter adapter merged")
    assert.equal(JSON.parse(m.out).adapter, undefined, "one file");
    const [a, b] = [await Deno.readFile(out), await Deno.readFile(merged)];
    assert.ok(Math.abs(a.length - b.length) < 200, "same layout (and the chat template)");
    assert.notDeepEqual(a, b, "the merged weights differ from the base");
    assert.equal((await parse(merged)).metadata["tokenizer.chat_template"], template);
  });
});

Deno.test("export --format onnx writes the merged run through exportOnnx (the format an .onnx --output implies)", async () => {
  await withRun(async (_model, run, tmp) => {
    const out = join(tmp, "model.onnx");
    const r = await cli(["export", "--model", run, "--output", out, "--merge", "--json"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).path, out);
    assert.match(r.err, /\(onnx, /);
    assert.notEqual(new TextDecoder().decode((await Deno.readFile(out)).subarray(0, 4)), "GGUF");
    // the folder runs as it is (Optimum's layout: config.json and the tokenizer beside the model)
    for (const f of ["config.json", "generation_config.json", "tokenizer.json"]) {
      await Deno.stat(join(tmp, f));
    }
    const g = await cli([
      "generate",
      "--model",
      out,
      "--backend",
      "onnx",
      "--prompt",
      "a",
      "--max_new_tokens",
      "2",
    ]);
    assert.equal(g.code, 0, g.err);
    // a second export of the run into the folder: the same files beside it are no overwrite
    const again = await cli(["export", "--model", run, "--output", join(tmp, "again.onnx"), "--merge"]);
    assert.equal(again.code, 0, again.err);
    // other bytes are
    await Deno.writeTextFile(join(tmp, "config.json"), "{}");
    assertFails(
      await cli(["export", "--model", run, "--output", join(tmp, "third.onnx"), "--merge"]),
      2,
      /config\.json exists and differs, likely another model.s export in this folder .*export into a folder of its own, or pass overwrite \(--overwrite\) to replace them, which breaks that other export/,
    );
    assert.equal(await Deno.readTextFile(join(tmp, "config.json")), "{}");
  });
});

/** node-llama-cpp's prebuilt CPU binary, or the reason it cannot run here (the test is then skipped, saying so). */
const LLAMA = await (async () => {
  try {
    const lib = await import("npm:node-llama-cpp@3.21.1");
    return await lib.getLlama({
      gpu: false,
      build: "never",
      logLevel: lib.LlamaLogLevel.error,
      progressLogs: false,
    });
  } catch (e) {
    const reason = `node-llama-cpp@3.21.1 cannot run here: ${(e as Error).message?.split("\n")[0] ?? e}`;
    console.warn(`SKIPPED llama.cpp test: ${reason}`);
    return null;
  }
})();

Deno.test({
  name:
    "export of a fine-tuned run: llama.cpp gives the merged model's greedy tokens, base + adapter or merged",
  ignore: LLAMA === null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withRun(async (model, run, tmp) => {
      const prompt = [52, 188, 165, 120, 168, 103, 235, 201, 84, 174, 165, 161, 36, 211, 103, 208];
      const greedy = async (file: string, lora?: string) => {
        const m = await LLAMA!.loadModel({ modelPath: file });
        const ctx = await m.createContext({ contextSize: 64, threads: 1, ...(lora ? { lora } : {}) });
        const out: number[] = [];
        for await (const t of ctx.getSequence().evaluate(prompt as never, { temperature: 0 })) {
          if (out.push(t as number) >= 10) break;
        }
        await ctx.dispose();
        await m.dispose();
        return out;
      };
      const be = await createBackend("cpu");
      const ours = await loadModel(model, { backend: be });
      await loadAdapter(ours, join(run, "adapter"));
      mergeAdapter(ours);
      const want =
        (await generate(ours, [prompt], { max_new_tokens: 10, do_sample: false, eos_token_id: null }))
          .tokens[0];
      ours.dispose();
      for (const args of [[], ["--merge"]]) {
        const out = join(tmp, `ft${args.length}.gguf`);
        const r = await cli([
          "export",
          "--model",
          run,
          "--output",
          out,
          "--outtype",
          "f32",
          "--json",
          ...args,
        ]);
        assert.equal(r.code, 0, r.err);
        const lora = JSON.parse(r.out).adapter?.path;
        assert.deepEqual(await greedy(out, lora), want, args.join() || "base + adapter");
      }
    }),
});

Deno.test({
  name: "a recipe's fine-tuned model exported to GGUF: llama.cpp's greedy tokens equal ours (F32)",
  ignore: LLAMA === null,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "fledge-export-recipe-" });
    try {
      // the summarization recipe on a tiny budget: a tiny Debian base model, fine-tuned a few steps
      const run = join(tmp, "run");
      const r = await tinyRecipe("summarization", run, join(tmp, "cache"));
      assert.equal(r.code, 0, r.err);
      const out = join(tmp, "ft.gguf");
      const e = await cli(["export", "--model", run, "--output", out, "--outtype", "f32", "--json"]);
      assert.equal(e.code, 0, e.err);
      const ours = await loadModel(join(run, "model"), { backend: await createBackend("cpu") });
      const prompt = [5, 40, 77, 120, 33, 260, 18, 91, 150, 7];
      const want =
        (await generate(ours, [prompt], { max_new_tokens: 12, do_sample: false, eos_token_id: null }))
          .tokens[0];
      ours.dispose();
      const m = await LLAMA!.loadModel({ modelPath: out });
      const ctx = await m.createContext({ contextSize: 64, threads: 1 });
      const got: number[] = [];
      for await (const t of ctx.getSequence().evaluate(prompt as never, { temperature: 0 })) {
        if (got.push(t as number) >= 12) break;
      }
      await ctx.dispose();
      await m.dispose();
      assert.deepEqual(got, want);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
