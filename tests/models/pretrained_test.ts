/**
 * loadModel / saveModel: the round trip reproduces the hf-reference checkpoints bit for bit, writes
 * are atomic, and the load path names every bad file, tensor and option.
 */
import { join } from "node:path";
import { backward, noGrad } from "../../kernels/autograd.ts";
import { createBackend } from "../../kernels/backend.ts";
import { AdamW } from "../../kernels/optim.ts";
import { dequantize, quantize } from "../../kernels/quant.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { checkpointKeyMap, fromHfConfig } from "../../models/config.ts";
import { HubError } from "../../models/hub/hub.ts";
import { loadModel, loadWeights, modelSource } from "../../models/pretrained.ts";
import { saveModel } from "../../models/save.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "../../models/formats/safetensors.ts";
import { Transformer } from "../../models/transformer.ts";
import { assert, assertAllClose, FIXTURE_ARCHES, ROOT, SHARED } from "../_assert.ts";
import { readFolder, startHubServer } from "../_hub_server.ts";
import { adapterParameters, applyLora, removeAdapter } from "../../training/peft.ts";
import { backends, cpu, webgpu } from "../_check.ts";

const fixture = (arch: string) => `${SHARED}/fixtures/hf-reference/${arch}`;

/**
 * Keys of a fixture `config.json` that `saveModel` writes differently, and why that does not change
 * what transformers builds. Every other key must be equal.
 */
const CONFIG_DIFFS: Record<string, string> = {
  transformers_version:
    "bookkeeping only: we write the release (4.47.0) the mapping follows, HF wrote 4.47.0.dev0",
  // GPT-2 keys save_pretrained writes because GPT2Config sets them; each value is the class default,
  // and the summary_* keys only configure GPT2DoubleHeadsModel's classification head.
  scale_attn_weights: "GPT2Config default true (the only value fromHfConfig accepts)",
  scale_attn_by_inverse_layer_idx: "GPT2Config default false (the only value fromHfConfig accepts)",
  reorder_and_upcast_attn: "GPT2Config default false (the only value fromHfConfig accepts)",
  summary_type: "GPT2DoubleHeadsModel head only; default cls_index",
  summary_use_proj: "GPT2DoubleHeadsModel head only; default true",
  summary_activation: "GPT2DoubleHeadsModel head only; default null",
  summary_proj_to_labels: "GPT2DoubleHeadsModel head only; default true",
  summary_first_dropout: "GPT2DoubleHeadsModel head only; default 0.1",
};

async function tempDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ prefix: `fledge-${prefix}-` });
}

/** Copy a fixture's model files (no cases) into a fresh folder. */
async function copyFixture(arch: string): Promise<string> {
  const dir = await tempDir(arch);
  for (const f of ["config.json", "generation_config.json", "model.safetensors"]) {
    await Deno.copyFile(join(fixture(arch), f), join(dir, f));
  }
  return dir;
}

async function rejects(p: Promise<unknown>, check: (e: Error) => boolean): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error && check(e), `unexpected error: ${e instanceof Error ? e.stack : e}`);
    return e as Error;
  }
  throw new assert.AssertionError({ message: "expected a rejection" });
}

const bits = (t: SafeTensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

for (const arch of FIXTURE_ARCHES) {
  Deno.test(`saveModel(loadModel(${arch})) writes the fixture's tensors bit for bit and its config`, async () => {
    for (const be of await backends()) {
      const out = await tempDir(`save-${arch}`);
      try {
        const model = await loadModel(fixture(arch), { backend: be });
        assert.equal(modelSource(model), fixture(arch));
        await saveModel(model, out);
        const want = await readSafetensors(join(fixture(arch), "model.safetensors"));
        const got = await readSafetensors(join(out, "model.safetensors"));
        assert.deepEqual([...got.tensors.keys()], [...want.tensors.keys()], `${arch} ${be.name} names`);
        for (const [name, w] of want.tensors) {
          const g = got.tensors.get(name)!;
          assert.equal(g.dtype, w.dtype, `${arch} ${name} dtype`);
          assert.deepEqual(g.shape, w.shape, `${arch} ${name} shape`);
          assert.ok(bits(g).every((b, i) => b === bits(w)[i]), `${arch} ${be.name} ${name}: values differ`);
        }
        assert.deepEqual(got.metadata, want.metadata);
        if (arch === "gpt2") assert.ok(!got.tensors.has("lm_head.weight"), "tied gpt2 has no lm_head");
        // The writer follows the reference layout, so the whole file is the fixture byte for byte.
        assert.deepEqual(
          await Deno.readFile(join(out, "model.safetensors")),
          await Deno.readFile(join(fixture(arch), "model.safetensors")),
        );

        const cfgPath = join(fixture(arch), "config.json");
        const wantCfg = JSON.parse(await Deno.readTextFile(cfgPath));
        const gotCfg = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
        const differing = [...new Set([...Object.keys(wantCfg), ...Object.keys(gotCfg)])]
          .filter((k) => JSON.stringify(wantCfg[k]) !== JSON.stringify(gotCfg[k])).sort();
        for (const k of differing) {
          assert.ok(k in CONFIG_DIFFS, `${arch} config.json ${k}: fixture ${wantCfg[k]}, saved ${gotCfg[k]}`);
        }
        if (arch === "gpt2") {
          assert.ok(!("tie_word_embeddings" in gotCfg) || gotCfg.tie_word_embeddings === true);
        }
        // Both ways through fromHfConfig give the same model config.
        assert.deepEqual(
          fromHfConfig(gotCfg, { file: "saved" }),
          fromHfConfig(wantCfg, { file: cfgPath }),
        );
        // generation_config.json is copied from the source folder.
        assert.equal(
          await Deno.readTextFile(join(out, "generation_config.json")),
          await Deno.readTextFile(join(fixture(arch), "generation_config.json")),
        );
        const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
        assert.deepEqual(files, ["config.json", "generation_config.json", "model.safetensors"]);
        // And the saved folder loads again.
        const again = await loadModel(out, { backend: be });
        assert.deepEqual(again.config, model.config);
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    }
  });
}

Deno.test("saveModel() copies the tokenizer files of the source folder and writes a generation config", async () => {
  const be = await cpu();
  const src = await copyFixture("llama");
  const out = await tempDir("save-tok"), out2 = await tempDir("save-gen");
  try {
    const tok = {
      "tokenizer.json": '{"version":"1.0","model":{"type":"BPE"}}\n',
      "tokenizer_config.json": '{"model_max_length":128}\n',
      "special_tokens_map.json": '{"bos_token":"<s>"}\n',
    };
    for (const [f, text] of Object.entries(tok)) await Deno.writeTextFile(join(src, f), text);
    await Deno.remove(join(src, "generation_config.json"));
    const model = await loadModel(src, { backend: be });
    await saveModel(model, out);
    for (const [f, text] of Object.entries(tok)) assert.equal(await Deno.readTextFile(join(out, f)), text, f);
    // No generation_config.json in the source: written from the config's ids, as transformers does.
    const gen = JSON.parse(await Deno.readTextFile(join(out, "generation_config.json")));
    assert.deepEqual(
      { ...gen, transformers_version: undefined },
      {
        _from_model_config: true,
        bos_token_id: 1,
        eos_token_id: 2,
        pad_token_id: 0,
        transformers_version: undefined,
      },
    );
    // An explicit generation config wins; an explicit source without tokenizer files copies none.
    await saveModel(model, out2, { source: fixture("llama"), generation_config: { max_new_tokens: 7 } });
    assert.deepEqual(JSON.parse(await Deno.readTextFile(join(out2, "generation_config.json"))), {
      max_new_tokens: 7,
    });
    assert.ok(![...Deno.readDirSync(out2)].some((e) => e.name.startsWith("tokenizer")));
    // a source that is no folder once saved without the tokenizer, a bad generation config was written
    // for loadGenerationConfig to refuse later: both refused before anything is written
    const out3 = join(out2, "more");
    await assert.rejects(
      () => saveModel(model, out3, { source: join(src, "nope") }),
      /Cannot save the model to .*more: source .*nope is not a folder/,
    );
    await assert.rejects(
      () => saveModel(model, out3, { generation_config: { temperature: -1, top_k: "x" } }),
      /Cannot save the model to .*more in opts\.generation_config: 2 problems/,
    );
    assert.ok(!(await Deno.stat(out3).then(() => true, () => false)), "nothing written");
    // Saving over the folder the model came from keeps its files intact.
    await saveModel(model, src);
    assert.equal(await Deno.readTextFile(join(src, "tokenizer.json")), tok["tokenizer.json"]);
    assert.ok(![...Deno.readDirSync(src)].some((e) => e.name.endsWith(".tmp")));
  } finally {
    for (const d of [src, out, out2]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("saveModel() is atomic: a failed save leaves no partial or temp file and keeps the old one", async () => {
  const be = await createBackend("cpu");
  const out = await tempDir("atomic");
  try {
    const model = await loadModel(fixture("gpt2"), { backend: be });
    await saveModel(model, out);
    const before = await Deno.readFile(join(out, "model.safetensors"));
    const cfgBefore = await Deno.readTextFile(join(out, "config.json"));
    // A parameter that cannot be read makes the second save fail while gathering tensors.
    const broken = new Transformer(model.config, new Map(model.params), be);
    const w = broken.params.get("layers.1.mlp.down.weight")!;
    broken.params.set("layers.1.mlp.down.weight", w.reshape(w.shape));
    broken.params.get("layers.1.mlp.down.weight")!.dispose();
    await rejects(saveModel(broken, out), (e) => /disposed/.test(e.message));
    assert.deepEqual(await Deno.readFile(join(out, "model.safetensors")), before);
    assert.equal(await Deno.readTextFile(join(out, "config.json")), cfgBefore);
    // A rename that fails (a folder sits where config.json goes) removes its temp file.
    const blocked = await tempDir("atomic-blocked");
    await Deno.mkdir(join(blocked, "config.json", "x"), { recursive: true });
    await rejects(saveModel(model, blocked), (e) => e instanceof Error);
    const names = [...Deno.readDirSync(blocked)].map((e) => e.name).sort();
    assert.deepEqual(names, ["config.json", "model.safetensors"], `left behind: ${names}`);
    assert.ok((await Deno.stat(join(blocked, "config.json"))).isDirectory);
    // Same for the weights file.
    const blocked2 = await tempDir("atomic-blocked2");
    await Deno.mkdir(join(blocked2, "model.safetensors", "x"), { recursive: true });
    await rejects(saveModel(model, blocked2), (e) => e instanceof Error);
    assert.deepEqual([...Deno.readDirSync(blocked2)].map((e) => e.name), ["model.safetensors"]);
    await Deno.remove(blocked, { recursive: true });
    await Deno.remove(blocked2, { recursive: true });
    assert.ok(![...Deno.readDirSync(out)].some((e) => e.name.endsWith(".tmp")));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

// ---- load-path errors ----

Deno.test("loadModel() names the missing config.json", async () => {
  const dir = await copyFixture("llama");
  try {
    await Deno.remove(join(dir, "config.json"));
    const e = await rejects(loadModel(dir, { backend: await cpu() }), (e) => e instanceof TypeError);
    assert.match(e.message, /config\.json is missing/);
    assert.ok(e.message.includes(join(dir, "config.json")), e.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadModel() refuses download options with a local folder (it is read as it is)", async () => {
  const dir = await copyFixture("llama");
  try {
    const e = await rejects(
      loadModel(dir, { backend: await cpu(), revision: "v2", force_download: true }),
      (e) => e instanceof RangeError,
    );
    assert.match(
      e.message,
      /it is a local folder, read as it is, and revision, force_download are for the hub/,
    );
    (await loadModel(dir, { backend: await cpu(), local_files_only: true })).dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadModel() names the missing weights file and suggests converting .bin weights", async () => {
  const dir = await copyFixture("llama");
  try {
    // PyTorch-only weights: a .bin where the safetensors file was
    await Deno.copyFile(join(dir, "model.safetensors"), join(dir, "pytorch_model.bin"));
    await Deno.remove(join(dir, "model.safetensors"));
    const e = await rejects(loadModel(dir, { backend: await cpu() }), (e) => e instanceof TypeError);
    assert.match(e.message, /neither model\.safetensors nor model\.safetensors\.index\.json/);
    assert.match(e.message, /safe_serialization=True/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Rewrite a fixture's weights through `edit` into a fresh folder. */
async function editedWeights(arch: string, edit: (t: Map<string, SafeTensor>) => void): Promise<string> {
  const dir = await copyFixture(arch);
  const { tensors } = await readSafetensors(join(dir, "model.safetensors"));
  edit(tensors);
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
  return dir;
}

Deno.test("loadModel() names the file and tensor that is missing, misshapen or unexpected", async () => {
  const be = await cpu();
  const missing = await editedWeights("llama", (t) => t.delete("model.layers.1.mlp.up_proj.weight"));
  const misshapen = await editedWeights("phi3", (t) => {
    const w = t.get("model.layers.0.self_attn.qkv_proj.weight")!;
    t.set("model.layers.0.self_attn.qkv_proj.weight", { ...w, shape: [64, 128] });
  });
  const extra = await editedWeights("llama", (t) => {
    t.set("model.layers.0.self_attn.q_proj.bias", { dtype: "F32", shape: [64], data: new Float32Array(64) });
    t.set("model.layers.0.self_attn.rotary_emb.inv_freq", {
      dtype: "F32",
      shape: [8],
      data: new Float32Array(8),
    });
  });
  const several = await editedWeights("gpt2", (t) => {
    t.delete("transformer.ln_f.bias");
    t.delete("transformer.h.0.mlp.c_fc.bias");
    // A stored tied head is skipped (some writers keep it).
    t.set("lm_head.weight", t.get("transformer.wte.weight")!);
  });
  try {
    let e = await rejects(loadModel(missing, { backend: be }), (e) => e instanceof TypeError);
    assert.ok(e.message.startsWith(`Cannot load ${join(missing, "model.safetensors")}: `), e.message);
    assert.match(e.message, /tensor model\.layers\.1\.mlp\.up_proj\.weight \[128,64\] is missing/);
    e = await rejects(loadModel(misshapen, { backend: be }), (e) => e instanceof TypeError);
    assert.match(
      e.message,
      /model\.safetensors: tensor model\.layers\.0\.self_attn\.qkv_proj\.weight has shape \[64,128\], expected \[128,64\]/,
    );
    e = await rejects(loadModel(extra, { backend: be }), (e) => e instanceof TypeError);
    assert.match(e.message, /tensor model\.layers\.0\.self_attn\.q_proj\.bias is not a parameter of llama/);
    assert.ok(!e.message.includes("inv_freq"), "inv_freq is a known buffer");
    e = await rejects(loadModel(several, { backend: be }), (e) => e instanceof TypeError);
    assert.match(e.message, /2 problems/);
    assert.match(e.message, /transformer\.ln_f\.bias \[64\] is missing/);
    assert.match(e.message, /transformer\.h\.0\.mlp\.c_fc\.bias \[128\] is missing/);
    assert.ok(!e.message.includes("lm_head"), e.message);
  } finally {
    for (const d of [missing, misshapen, extra, several]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("loadModel() reads a sharded checkpoint and names the shard of a misshapen tensor", async () => {
  const be = await cpu();
  const dir = await copyFixture("qwen2");
  try {
    const { tensors } = await readSafetensors(join(dir, "model.safetensors"));
    await Deno.remove(join(dir, "model.safetensors"));
    const names = [...tensors.keys()];
    const half = Math.floor(names.length / 2);
    const weight_map: Record<string, string> = {};
    const shards = [names.slice(0, half), names.slice(half)];
    for (let k = 0; k < 2; k++) {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      await writeSafetensors(join(dir, file), new Map(shards[k].map((n) => [n, tensors.get(n)!])));
      for (const n of shards[k]) weight_map[n] = file;
    }
    const index = join(dir, "model.safetensors.index.json");
    await Deno.writeTextFile(index, JSON.stringify({ metadata: { total_size: 0 }, weight_map }));
    const model = await loadModel(dir, { backend: be });
    const ref = await loadModel(fixture("qwen2"), { backend: be });
    for (const [n, t] of ref.params) assert.deepEqual(await model.p(n).toArray(), await t.toArray(), n);
    // Misshapen in shard 2: the message names that shard.
    const last = names[names.length - 1];
    const w = tensors.get(last)!;
    await writeSafetensors(
      join(dir, "model-00002-of-00002.safetensors"),
      new Map(shards[1].map((n) => [n, n === last ? { ...w, shape: [1, ...w.shape] } : tensors.get(n)!])),
    );
    const e = await rejects(loadModel(dir, { backend: be }), (e) => e instanceof TypeError);
    assert.ok(
      e.message.includes(`${join(dir, "model-00002-of-00002.safetensors")}: tensor ${last}`),
      e.message,
    );
    // A name missing from the weight map names the index.
    delete weight_map[names[0]];
    await Deno.writeTextFile(index, JSON.stringify({ weight_map }));
    const e2 = await rejects(loadModel(dir, { backend: be }), (e) => e instanceof TypeError);
    assert.ok(e2.message.includes(`${index}: tensor ${names[0]}`), e2.message);
    // A shard that is gone (an incomplete download) names the shard and the index.
    await Deno.remove(join(dir, "model-00002-of-00002.safetensors"));
    const e3 = await rejects(loadModel(dir, { backend: be }), (e) => e instanceof TypeError);
    assert.ok(e3.message.includes(`${join(dir, "model-00002-of-00002.safetensors")} is missing`), e3.message);
    assert.ok(e3.message.includes(index), e3.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadModel() refuses a sharded index whose shard names leave the folder", async () => {
  const be = await cpu();
  const root = await tempDir("escape");
  const dir = join(root, "model");
  try {
    await Deno.mkdir(dir);
    for (const f of ["config.json", "model.safetensors"]) {
      await Deno.copyFile(join(fixture("llama"), f), join(root, f)); // bait outside the folder
      if (f === "config.json") await Deno.copyFile(join(fixture("llama"), f), join(dir, f));
    }
    const { tensors } = await readSafetensors(join(fixture("llama"), "model.safetensors"));
    for (const bad of ["../model.safetensors", "/etc/passwd", "sub/../../model.safetensors", "a\\b"]) {
      const weight_map = Object.fromEntries([...tensors.keys()].map((n) => [n, bad]));
      await Deno.writeTextFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map }));
      const e = await rejects(loadModel(dir, { backend: be }), (e) => e instanceof SyntaxError);
      assert.ok(e.message.includes(join(dir, "model.safetensors.index.json")), e.message);
      assert.ok(e.message.includes(JSON.stringify(bad)), e.message);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadModel() names an unsupported model_type and a bad config.json", async () => {
  const be = await cpu();
  const dir = await copyFixture("llama");
  try {
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ ...cfg, model_type: "mamba" }));
    const e = await rejects(loadModel(dir, { backend: be }), (e) => e instanceof RangeError);
    assert.match(e.message, /mamba/);
    assert.ok(e.message.includes(join(dir, "config.json")), e.message);
    await Deno.writeTextFile(join(dir, "config.json"), "{ not json");
    const e2 = await rejects(loadModel(dir, { backend: be }), (e) => e instanceof SyntaxError);
    assert.ok(e2.message.startsWith(`Cannot parse ${join(dir, "config.json")}: `), e2.message);
    assert.match(e2.message, /at line 1, column 3;/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadModel() from the hub never shows the token in errors", async () => {
  const TOKEN = "hf_LoadModelSecret987";
  const files = await readFolder(fixture("gpt2"));
  const hub = startHubServer({ models: { "org/tiny": files }, token: "hf_TheRightOne" });
  const cache = await tempDir("hub-cache");
  const base = { backend: await cpu(), endpoint: hub.url, cache_dir: cache, offline: false, progress: false };
  try {
    for (const id of ["org/tiny", "org/missing"]) {
      const e = await rejects(loadModel(id, { ...base, token: TOKEN }), (e) => e instanceof HubError);
      assert.ok(!e.message.includes(TOKEN) && !String(e.stack).includes(TOKEN), e.message);
    }
    // With the right token the model loads from the mock hub (and lands in the cache).
    const model = await loadModel("org/tiny", { ...base, token: "hf_TheRightOne" });
    assert.equal(model.config.arch, "gpt2");
    assert.ok(modelSource(model)!.startsWith(cache));
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

// ---- dtype and options ----

Deno.test("loadModel() refuses bad dtypes and bad options before reading", async () => {
  const be = await cpu();
  const nowhere = join(ROOT, "no-such-model-folder");
  // dtype "f16" passes the option check on cpu (see the f16 tests below): the folder is what fails.
  let e = await rejects(loadModel(nowhere, { backend: be, dtype: "f16" }), (e) => e instanceof TypeError);
  assert.match(e.message, /no-such-model-folder/);
  e = await rejects(
    loadModel(nowhere, { backend: be, dtype: "bf16" as "f32" }),
    (e) => e instanceof RangeError,
  );
  assert.match(e.message, /dtype: must be "f32", "f16" or "nf4", got "bf16"/);
  // Every problem at once; a wrong type wins over a range problem.
  e = await rejects(
    loadModel(nowhere, { backend: {} as never, dtype: "f64" as "f32", revison: "x" } as never),
    (e) => e instanceof TypeError,
  );
  assert.match(e.message, /3 problems/);
  assert.match(e.message, /backend: must be a Backend/);
  assert.match(e.message, /revison: is not an option of loadModel/);
  // dtype "f32" is the default and loads.
  const m = await loadModel(fixture("llama"), { backend: be, dtype: "f32" });
  assert.equal(m.p("embed.weight").dtype, "f32");
});

Deno.test("loadModel(dtype nf4) quantizes the projection weights only, and saveModel dequantizes them", async () => {
  for (const arch of ["llama", "gpt2"] as const) {
    for (const be of await backends()) {
      const f32 = await loadModel(fixture(arch), { backend: be });
      const q4 = await loadModel(fixture(arch), { backend: be, dtype: "nf4" });
      const linears = [...f32.params.keys()].filter((n) => /^layers\.\d\.(attn|mlp)\.\w+\.weight$/.test(n));
      assert.equal(linears.length, arch === "llama" ? 14 : 12, `${arch} linears`);
      assert.deepEqual([...q4.quantized.keys()].sort(), linears.map((n) => n.slice(0, -7)).sort());
      for (const n of linears) assert.ok(!q4.params.has(n), n);
      // Embeddings, norms, biases and the LM head stay f32 and unchanged.
      for (const [n, t] of q4.params) {
        assert.equal(t.dtype, "f32");
        assert.deepEqual(await t.toArray(), await f32.p(n).toArray(), n);
      }
      for (const [lin, q] of q4.quantized) {
        assert.equal(q.kind, "nf4");
        assert.equal(q.blockSize, 64);
        const ref = quantize(f32.p(`${lin}.weight`), { kind: "nf4", blockSize: 64 });
        assert.deepEqual(
          await q.codes.toArray(),
          await ref.codes.toArray(),
          `${arch} ${be.name} ${lin} codes`,
        );
        ref.dispose();
      }
      // The 4-bit model (linearQ4) computes what an f32 model with the dequantized weights does.
      const deq = new Map(q4.params);
      for (const [lin, q] of q4.quantized) deq.set(`${lin}.weight`, dequantize(q));
      const ref = new Transformer(q4.config, deq, be);
      const { tensors } = await readSafetensors(join(fixture(arch), "cases.safetensors"));
      const ids = Int32Array.from(tensors.get("input_ids")!.data as BigInt64Array, Number).slice(0, 16);
      const x = be.fromArray(ids, [1, 16], "i32");
      assertAllClose(await q4.forward(x).toArray(), await ref.forward(x).toArray(), {
        atol: 2e-4,
        rtol: 1e-4,
        msg: `${arch} ${be.name} nf4 logits`,
      });
      // saveModel writes the dequantized weights (what the model computes with), F32, HF names.
      const out = await tempDir(`nf4-${arch}`);
      try {
        await saveModel(q4, out);
        const again = await loadModel(out, { backend: be });
        for (const [lin, q] of q4.quantized) {
          const d = dequantize(q);
          assert.deepEqual(await again.p(`${lin}.weight`).toArray(), await d.toArray(), lin);
          d.dispose();
        }
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    }
  }
});

Deno.test("loadWeights() converts F16, BF16 and F64 checkpoints to f32 exactly as the reader does", async () => {
  const be = await cpu();
  const dir = await copyFixture("llama");
  try {
    const { tensors } = await readSafetensors(join(dir, "model.safetensors"));
    const dtypes = ["F16", "BF16", "F64", "F32"] as const;
    const mixed = new Map([...tensors].map(([n, t], k) => [n, { ...t, dtype: dtypes[k % 4] }]));
    await writeSafetensors(join(dir, "model.safetensors"), mixed);
    const want = (await readSafetensors(join(dir, "model.safetensors"), { as: "f32" })).tensors;
    const config = fromHfConfig(JSON.parse(await Deno.readTextFile(join(dir, "config.json"))), { file: "c" });
    const params = await loadWeights(dir, config, be);
    const seen = new Set<string>();
    for (const e of checkpointKeyMap(config).entries) {
      for (let i = 0; i < (e.per_layer ? config.num_hidden_layers : 1); i++) {
        const hf = e.hf.replaceAll("{i}", String(i));
        const got = await params.get(e.ours[0].replaceAll("{i}", String(i)))!.toArray();
        assert.deepEqual(got, want.get(hf)!.data, hf);
        seen.add(mixed.get(hf)!.dtype);
      }
    }
    assert.equal(seen.size, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench/load_model.ts measures a 20 MB load in a fresh process (sanity check, no timing)", async () => {
  // The 1 GB run is `deno run -A bench/load_model.ts`; this runs the same measurement small, in
  // its own process so other tests do not move the RSS.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/bench/load_model.ts`, "--target_bytes", "2e7", "--backend", "cpu"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim());
  assert.equal(r.bench, "load_model");
  assert.ok(r.bytes > 15e6 && r.bytes < 30e6, `bytes ${r.bytes}`);
  assert.ok(r.tensor_bytes <= r.bytes && r.largest_tensor_bytes < r.tensor_bytes);
  assert.ok(r.peak_rss_mb >= r.baseline_rss_mb && r.ms >= 0 && r.backend === "cpu");
  // cpu: the parameters are host memory, plus one reusable tensor buffer; three copies of the
  // model would mean the loader keeps whole extra copies.
  const mb = r.tensor_bytes / 2 ** 20;
  assert.ok(r.peak_rss_mb - r.baseline_rss_mb < 3 * mb + 48, JSON.stringify(r));
});

// ---- dtype f16 ----

const F16_LINEAR = /^layers\.\d\.(attn|mlp)\.\w+\.weight$/;

/** Greedy tokens and step logits of the fixture's prompt, with the KV cache (as hf_parity_test). */
async function greedy(
  model: Transformer,
  prompt: Int32Array,
): Promise<{ tokens: number[]; logits: number[] }> {
  const be = model.backend, V = model.config.vocab_size;
  const cache = model.createCache(1, 24);
  const tokens: number[] = [], logits: number[] = [];
  let input = be.fromArray(prompt, [1, prompt.length], "i32");
  for (let s = 0; s < 8; s++) {
    const out = noGrad(() => model.forward(input, { cache }));
    const arr = await out.toArray();
    const T = input.shape[1];
    const last = arr.subarray((T - 1) * V, T * V);
    let best = 0;
    for (let j = 1; j < V; j++) if (last[j] > last[best]) best = j;
    tokens.push(best);
    logits.push(...last);
    out.dispose();
    input.dispose();
    input = be.fromArray([best], [1, 1], "i32");
  }
  input.dispose();
  for (const t of [...cache.k, ...cache.v]) t.dispose();
  return { tokens, logits };
}

/** Max |a - b| over the rows whose mask is 1 (rows of V logits). */
function maskedMaxDiff(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  mask: ArrayLike<number>,
  V: number,
): number {
  let worst = 0;
  for (let r = 0; r < mask.length; r++) {
    if (!mask[r]) continue;
    for (let j = 0; j < V; j++) worst = Math.max(worst, Math.abs(a[r * V + j] - b[r * V + j]));
  }
  return worst;
}

Deno.test("loadModel(dtype f16) keeps every fixture's logits within 2e-2 and its 8 greedy tokens", async () => {
  const report: string[] = [];
  for (const arch of FIXTURE_ARCHES) {
    const { tensors } = await readSafetensors(join(fixture(arch), "cases.safetensors"));
    const geti = (n: string) => Int32Array.from(tensors.get(n)!.data as BigInt64Array, Number);
    const wantLogits = tensors.get("logits")!.data as Float32Array;
    const wantTokens = [...geti("greedy_tokens")];
    const maskHost = geti("attention_mask");
    for (const be of await backends()) {
      const m16 = await loadModel(fixture(arch), { backend: be, dtype: "f16" });
      // Projection weights f16, the rest f32; parameters() leaves the frozen f16 weights out.
      const names = [...m16.params.keys()];
      const f16 = names.filter((n) => m16.p(n).dtype === "f16");
      assert.deepEqual(f16, names.filter((n) => F16_LINEAR.test(n)), `${arch} f16 weights`);
      assert.equal(f16.length, arch === "gpt2" ? 12 : 14);
      for (const n of names) if (!f16.includes(n)) assert.equal(m16.p(n).dtype, "f32", n);
      assert.equal(m16.parameters().length, names.length - f16.length);
      assert.ok(f16.every((n) => !m16.p(n).requiresGrad));
      // The f16 model computes exactly what an f32 model with the f16-rounded weights does.
      const rounded = new Map<string, Tensor>();
      for (const n of names) {
        rounded.set(n, f16.includes(n) ? be.fromArray(await m16.p(n).toArray(), m16.p(n).shape) : m16.p(n));
      }
      const m32 = new Transformer(m16.config, rounded, be);
      const ids = be.fromArray(geti("input_ids"), [2, 16], "i32");
      const mask = be.fromArray(maskHost, [2, 16], "i32");
      const got = await noGrad(() => m16.forward(ids, { attention_mask: mask })).toArray();
      const ref = await noGrad(() => m32.forward(ids, { attention_mask: mask })).toArray();
      const V = m16.config.vocab_size;
      const exact = maskedMaxDiff(got, ref, maskHost, V);
      assert.ok(exact <= 1e-4, `${arch} ${be.name}: f16 model vs f32 on rounded weights ${exact}`);
      const diff = maskedMaxDiff(got, wantLogits, maskHost, V);
      assert.ok(diff <= 2e-2, `${arch} ${be.name}: f16 logits differ from the fixture by ${diff}`);
      const g = await greedy(m16, geti("greedy_prompt"));
      assert.deepEqual(g.tokens, wantTokens, `${arch} ${be.name} f16 greedy tokens`);
      const stepDiff = maskedMaxDiff(g.logits, tensors.get("greedy_step_logits")!.data as Float32Array, [
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
      ], V);
      report.push(`${arch} ${be.name} ${diff.toExponential(1)} (steps ${stepDiff.toExponential(1)})`);
      for (const n of f16) rounded.get(n)!.dispose();
      m16.dispose();
    }
  }
  console.log(`f16 weights, max |logit - fixture|: ${report.join(", ")}`);
});

Deno.test("saveModel() of an f16 model writes its projection weights as F16 bit for bit", async () => {
  for (const arch of ["phi3", "gpt2"] as const) {
    const be = await cpu();
    const m16 = await loadModel(fixture(arch), { backend: be, dtype: "f16" });
    const out = await tempDir(`f16-${arch}`);
    try {
      await saveModel(m16, out);
      const want = await readSafetensors(join(fixture(arch), "model.safetensors"));
      const got = await readSafetensors(join(out, "model.safetensors"));
      assert.deepEqual([...got.tensors.keys()].sort(), [...want.tensors.keys()].sort());
      let nF16 = 0;
      for (const [name, w] of want.tensors) {
        const t = got.tensors.get(name)!;
        assert.deepEqual(t.shape, w.shape, name);
        // Fused (phi3 qkv_proj, gate_up_proj) and Conv1D (gpt2, transposed back) weights included.
        const linear =
          /(self_attn|mlp|attn)\.(q_proj|k_proj|v_proj|o_proj|qkv_proj|gate_up_proj|gate_proj|up_proj|down_proj|c_attn|c_proj|c_fc)\.weight$/
            .test(name);
        assert.equal(t.dtype, linear ? "F16" : "F32", name);
        if (!linear) continue;
        nF16++;
        const rounded = new Uint16Array(Float16Array.from(w.data as Float32Array).buffer);
        assert.deepEqual(t.data, rounded, name);
      }
      assert.equal(nF16, 8);
      const again = await loadModel(out, { backend: be, dtype: "f16" });
      for (const [n, t] of m16.params) assert.deepEqual(await again.p(n).toArray(), await t.toArray(), n);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
});

Deno.test("loadModel(dtype f16) needs shader-f16 on webgpu and refuses weights beyond f16's range", async () => {
  const gpu = await webgpu();
  if (gpu) {
    const features = gpu.device.features as Set<string>;
    const had = features.has("shader-f16");
    features.delete("shader-f16"); // pretend the adapter does not offer it
    try {
      const e = await rejects(
        loadModel(join(ROOT, "no-such-model-folder"), { backend: gpu, dtype: "f16" }),
        (e) => e instanceof RangeError,
      );
      assert.match(e.message, /dtype: "f16" needs the device's shader-f16 feature, which .* does not offer/);
      assert.match(e.message, /use dtype "f32"/);
    } finally {
      if (had) features.add("shader-f16");
    }
  }
  const dir = await copyFixture("llama");
  try {
    const { tensors } = await readSafetensors(join(dir, "model.safetensors"));
    const w = tensors.get("model.layers.1.mlp.up_proj.weight")!;
    (w.data as Float32Array)[5] = 70000;
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    const e = await rejects(
      loadModel(dir, { backend: await cpu(), dtype: "f16" }),
      (e) => e instanceof RangeError,
    );
    assert.match(
      e.message,
      /tensor model\.layers\.1\.mlp\.up_proj\.weight \(layers\.1\.mlp\.up\.weight\) holds 70000/,
    );
    assert.match(e.message, /beyond f16's range ±65504; load it with dtype "f32"/);
    // f32 still loads it.
    await loadModel(dir, { backend: await cpu() });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LoRA trains on an f16 base: the loss falls, the f16 weights stay as loaded", async () => {
  const be = (await webgpu()) ?? (await cpu());
  const model = await loadModel(fixture("llama"), { backend: be, dtype: "f16" });
  const before = await model.p("layers.0.attn.q.weight").toArray();
  applyLora(model, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "down_proj"] }, { seed: 1 });
  const { tensors } = await readSafetensors(join(fixture("llama"), "cases.safetensors"));
  const geti = (n: string) => Int32Array.from(tensors.get(n)!.data as BigInt64Array, Number);
  const ids = be.fromArray(geti("input_ids"), [2, 16], "i32");
  const mask = be.fromArray(geti("attention_mask"), [2, 16], "i32");
  const labels = be.fromArray(geti("labels"), [2, 16], "i32");
  const params = adapterParameters(model);
  const opt = new AdamW({ lr: 1e-2, weight_decay: 0 });
  const losses: number[] = [];
  for (let s = 0; s < 5; s++) {
    const loss = model.loss(ids, labels, { attention_mask: mask });
    losses.push((await loss.toArray())[0]);
    backward(loss);
    loss.dispose();
    opt.step(params);
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }
  assert.ok(losses[4] < losses[0] - 0.05, `losses ${losses.map((l) => l.toFixed(4)).join(" ")}`);
  const w = model.p("layers.0.attn.q.weight");
  assert.equal(w.dtype, "f16");
  assert.equal(w.grad, null);
  assert.deepEqual(await w.toArray(), before);
  // Full fine-tuning of the f16 weights is refused with the fix.
  removeAdapter(model);
  model.p("layers.0.attn.q.weight").requiresGrad = true;
  assert.throws(() => model.loss(ids, labels), /is f16 and needs a gradient; .*dtype "f32"/);
  model.dispose();
});
