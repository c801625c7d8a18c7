/**
 * LoRA / DoRA / QLoRA against PEFT: the hf-reference adapters (logits, loss, every adapter
 * gradient, right and left padding) on cpu and webgpu; the PEFT file format round trip; merge;
 * training moves only the adapters; NF4 base weights.
 */
import { join, relative, resolve } from "node:path";
import { backward, noGrad } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { AdamW } from "../../kernels/optim.ts";
import { dequantize } from "../../kernels/quant.ts";
import { loadModel } from "../../models/pretrained.ts";
import {
  openSafetensors,
  readSafetensors,
  type SafeTensor,
  writeSafetensors,
} from "../../models/formats/safetensors.ts";
import { TextDataset } from "../../data/text_dataset.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { createTrainer } from "../../training/trainer.ts";
import { Transformer } from "../../models/transformer.ts";
import {
  adapterConfig,
  adapterParameters,
  adapterTensors,
  applyLora,
  loadAdapter,
  mergeAdapter,
  quantizeModel,
  removeAdapter,
  saveAdapter,
} from "../../training/peft.ts";
import { assert, assertAllClose, FIXTURE_ARCHES, SHARED } from "../_assert.ts";
import { backends, cpu, webgpu } from "../_check.ts";

const dir = (arch: string) => `${SHARED}/fixtures/hf-reference/${arch}`;

async function cases(path: string) {
  const { tensors } = await readSafetensors(`${path}/cases.safetensors`);
  const get = (n: string): SafeTensor => {
    const t = tensors.get(n);
    if (!t) throw new Error(`fixture ${path} has no ${n}`);
    return t;
  };
  const geti = (n: string) => Int32Array.from(get(n).data as BigInt64Array, (x) => Number(x));
  const getf = (n: string) => get(n).data as Float32Array;
  return { tensors, get, geti, getf };
}

type Cases = Awaited<ReturnType<typeof cases>>;

/** Logits at real positions only. */
function masked(a: ArrayLike<number>, mask: Int32Array, V: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < mask.length; r++) if (mask[r]) { for (let j = 0; j < V; j++) out.push(a[r * V + j]); }
  return out;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

async function logitsOf(model: Transformer, be: Backend, c: Cases, left = false): Promise<Float32Array> {
  const s = left ? "_leftpad" : "";
  const ids = be.fromArray(c.geti(`input_ids${s}`), [2, 16], "i32");
  const mask = be.fromArray(c.geti(`attention_mask${s}`), [2, 16], "i32");
  const pos = left ? be.fromArray(c.geti("position_ids_leftpad"), [2, 16], "i32") : null;
  const logits = noGrad(() => model.forward(ids, { attention_mask: mask, position_ids: pos }));
  const out = await logits.toArray() as Float32Array;
  for (const t of [logits, ids, mask, pos]) t?.dispose();
  return out;
}

async function lossOf(model: Transformer, be: Backend, c: Cases, opts: { backward?: boolean } = {}) {
  const ids = be.fromArray(c.geti("input_ids"), [2, 16], "i32");
  const mask = be.fromArray(c.geti("attention_mask"), [2, 16], "i32");
  const labels = be.fromArray(c.geti("labels"), [2, 16], "i32");
  const loss = model.loss(ids, labels, { attention_mask: mask });
  if (opts.backward) backward(loss);
  const v = (await loss.toArray())[0];
  for (const t of [loss, ids, mask, labels]) t.dispose();
  return v;
}

/** The PEFT cases of a fixture: its subfolders with an adapter_config.json (lora, dora, ...). */
const adapterCases = (arch: string) =>
  [...Deno.readDirSync(dir(arch))]
    .filter((e) =>
      e.isDirectory &&
      [...Deno.readDirSync(`${dir(arch)}/${e.name}`)].some((f) => f.name === "adapter_config.json")
    )
    .map((e) => e.name)
    .sort();

for (const arch of FIXTURE_ARCHES) {
  for (const kind of adapterCases(arch)) {
    Deno.test(`loadAdapter(${arch}/${kind}) matches PEFT logits, loss and every adapter gradient on every backend`, async () => {
      const c = await cases(`${dir(arch)}/${kind}`);
      for (const be of await backends()) {
        const model = await loadModel(dir(arch), { backend: be });
        const config = await loadAdapter(model, `${dir(arch)}/${kind}`, { is_trainable: true });
        const file = JSON.parse(await Deno.readTextFile(`${dir(arch)}/${kind}/adapter_config.json`));
        assert.equal(config.use_dora, file.use_dora === true);
        assert.equal(config.fan_in_fan_out, file.fan_in_fan_out === true);
        const V = model.config.vocab_size, tag = `${arch}/${kind} ${be.name}`;
        for (const left of [false, true]) {
          const mask = c.geti(left ? "attention_mask_leftpad" : "attention_mask");
          const got = await logitsOf(model, be, c, left);
          const want = c.getf(left ? "logits_leftpad" : "logits");
          assertAllClose(masked(got, mask, V), masked(want, mask, V), {
            atol: 1e-4,
            rtol: 0,
            msg: `${tag} logits${left ? " (left padding)" : ""}`,
          });
        }
        const loss = await lossOf(model, be, c, { backward: true });
        assert.ok(Math.abs(loss - c.getf("loss")[0]) <= 1e-5, `${tag} loss ${loss} vs ${c.getf("loss")[0]}`);
        const grads = await adapterTensors(model, { grad: true });
        const want = [...c.tensors.keys()].filter((k) => k.startsWith("grad."));
        assert.equal(grads.size, want.length, `${tag}: one gradient per adapter tensor`);
        for (const [key, g] of grads) {
          const ref = key.endsWith("lora_magnitude_vector")
            ? c.getf(`grad.${key}.weight`)
            : c.getf(`grad.${key}`);
          assertAllClose(g.data, ref, { atol: 1e-4 * maxAbs(ref), rtol: 0, msg: `${tag} grad ${key}` });
        }
        for (const p of model.parameters()) {
          assert.equal(p.grad, null, `${tag}: base weight ${p.name} got a gradient`);
        }
        model.dispose();
      }
    });
  }
}

Deno.test("saveAdapter writes PEFT's files: same key names, tensors and adapter_config.json as the fixture", async () => {
  const be = await cpu();
  for (const [arch, kind] of [["phi3", "dora"], ["gpt2", "dora"], ["llama", "lora"]] as const) {
    const src = `${dir(arch)}/${kind}`;
    const model = await loadModel(dir(arch), { backend: be });
    await loadAdapter(model, src);
    const out = await Deno.makeTempDir({ prefix: "fledge_peft_" });
    try {
      await saveAdapter(model, out);
      const want = (await readSafetensors(`${src}/adapter_model.safetensors`)).tensors;
      const got = await readSafetensors(`${out}/adapter_model.safetensors`);
      assert.deepEqual([...got.tensors.keys()], [...want.keys()], `${arch}/${kind} key names`);
      for (const [k, t] of want) {
        assert.deepEqual(got.tensors.get(k)!.shape, t.shape, k);
        assert.deepEqual(got.tensors.get(k)!.data, t.data, `${arch}/${kind} ${k} bit for bit`);
      }
      assert.deepEqual(got.metadata, { format: "pt" });
      const cfg = JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`));
      const ref = JSON.parse(await Deno.readTextFile(`${src}/adapter_config.json`));
      assert.deepEqual(cfg, ref, `${arch}/${kind} adapter_config.json`);
      // byte-identical apart from Python's set order of target_modules
      assert.equal(
        (await Deno.readTextFile(`${out}/adapter_config.json`)).length,
        (await Deno.readTextFile(`${src}/adapter_config.json`)).length,
      );
    } finally {
      await Deno.remove(out, { recursive: true });
      model.dispose();
    }
  }
});

Deno.test("mergeAdapter (merge_and_unload) gives the unmerged logits; removeAdapter gives the base", async () => {
  const be = await cpu();
  for (const [arch, kind] of [["phi3", "lora"], ["gpt2", "dora"], ["qwen2", "dora"]] as const) {
    const c = await cases(`${dir(arch)}/${kind}`);
    const mask = c.geti("attention_mask");
    const model = await loadModel(dir(arch), { backend: be });
    const base = await logitsOf(model, be, c);
    await loadAdapter(model, `${dir(arch)}/${kind}`);
    const unmerged = await logitsOf(model, be, c);
    mergeAdapter(model);
    assert.equal(model.adapters.size, 0);
    const merged = await logitsOf(model, be, c);
    const V = model.config.vocab_size;
    const cmp = assertAllClose(masked(merged, mask, V), masked(unmerged, mask, V), {
      atol: 2e-5,
      rtol: 0,
      msg: `${arch}/${kind} merged vs unmerged`,
    });
    assertAllClose(masked(merged, mask, V), masked(c.getf("logits"), mask, V), { atol: 1e-4, rtol: 0 });
    console.log(`${arch}/${kind}: merged vs unmerged max |diff| ${cmp.maxAbs.toExponential(2)}`);
    model.dispose();
    const again = await loadModel(dir(arch), { backend: be });
    await loadAdapter(again, `${dir(arch)}/${kind}`);
    removeAdapter(again);
    assertAllClose(await logitsOf(again, be, c), base, { atol: 0, rtol: 0 });
    again.dispose();
  }
});

/** GPU buffers created so far, per step of the last {@linkcode train} (a leak keeps creating them). */
let created: number[] = [];

/** A few optimizer steps on the fixture batch; returns the losses. */
async function train(model: Transformer, be: Backend, steps: number, lr: number): Promise<number[]> {
  created = [];
  const c = await cases(dir("llama"));
  const params = adapterParameters(model);
  const opt = new AdamW({ lr, weight_decay: 0 });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    losses.push(await lossOf(model, be, c, { backward: true }));
    opt.step(params);
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
    }
    created.push(be.gpu?.stats.buffersCreated ?? 0);
  }
  return losses;
}

Deno.test("a LoRA run on webgpu lowers the loss and changes only the adapter tensors", async () => {
  const be = (await webgpu()) ?? (await cpu());
  const model = await loadModel(dir("llama"), { backend: be });
  const before = await Promise.all(model.parameters().map((p) => p.toArray()));
  applyLora(model, { r: 4, lora_alpha: 8, target_modules: "all-linear", use_dora: true }, { seed: 1 });
  const A0 = await adapterParameters(model)[0].toArray();
  const losses = await train(model, be, 12, 1e-2);
  console.log(`${be.name} DoRA all-linear loss ${losses[0].toFixed(4)} -> ${losses.at(-1)!.toFixed(4)}`);
  assert.ok(losses.at(-1)! < losses[0] - 0.2, `loss should fall: ${losses.join(", ")}`);
  assert.equal(created.at(-1), created[2], `no buffers leak per step after warm-up: ${created.join(" ")}`);
  const after = await Promise.all(model.parameters().map((p) => p.toArray()));
  after.forEach((a, i) =>
    assert.deepEqual(a, before[i], `base weight ${model.parameters()[i].name} changed`)
  );
  assert.notDeepEqual(await adapterParameters(model)[0].toArray(), A0);
  model.dispose();
});

Deno.test("QLoRA: NF4 base + the PEFT LoRA equals LoRA on the dequantized base, is close to f32, and trains", async () => {
  for (const be of await backends()) {
    const c = await cases(`${dir("llama")}/lora`);
    const mask = c.geti("attention_mask");
    const model = await loadModel(dir("llama"), { backend: be });
    // The same model with every linear weight replaced by its NF4 round trip, in f32.
    const ref = await loadModel(dir("llama"), { backend: be });
    const q = quantizeModel(model, { kind: "nf4" });
    assert.equal(q.weights, 2 * 7);
    assert.ok(
      q.bytes_after < q.bytes_before / 5,
      `4-bit weights: ${q.bytes_before} -> ${q.bytes_after} bytes`,
    );
    for (const [linear, qt] of model.quantized) {
      ref.params.get(`${linear}.weight`)!.dispose();
      ref.params.set(`${linear}.weight`, dequantize(qt));
    }
    await loadAdapter(model, `${dir("llama")}/lora`, { is_trainable: true });
    await loadAdapter(ref, `${dir("llama")}/lora`);
    const V = model.config.vocab_size;
    const got = masked(await logitsOf(model, be, c), mask, V);
    assertAllClose(got, masked(await logitsOf(ref, be, c), mask, V), {
      atol: 1e-4,
      rtol: 0,
      msg: `${be.name} QLoRA vs LoRA on the dequantized base`,
    });
    const want = masked(c.getf("logits"), mask, V);
    let diff = 0, se = 0, ss = 0;
    for (let i = 0; i < got.length; i++) {
      diff = Math.max(diff, Math.abs(got[i] - want[i]));
      se += (got[i] - want[i]) ** 2;
      ss += want[i] ** 2;
    }
    const rel = Math.sqrt(se / ss);
    console.log(
      `${be.name} QLoRA nf4 vs f32 base + LoRA: max |logit diff| ${diff.toFixed(3)} (max |logit| ${
        maxAbs(want).toFixed(2)
      }), relative RMS ${rel.toFixed(3)}`,
    );
    assert.ok(rel < 0.3, `NF4 logits too far from f32: relative RMS ${rel}`);
    const losses = await train(model, be, 8, 1e-2);
    assert.ok(losses.at(-1)! < losses[0] - 0.1, `QLoRA loss should fall: ${losses.join(", ")}`);
    assert.equal(model.parameters().filter((p) => p.grad).length, 0);
    model.dispose();
    ref.dispose();
  }
});

Deno.test("mergeAdapter on a QLoRA model: quantized again as PEFT, or with dequantize kept in f32 and equal to the unmerged logits", async () => {
  const be = await cpu();
  const c = await cases(`${dir("llama")}/lora`);
  const mask = c.geti("attention_mask");
  const diffs: number[] = [];
  for (const dequantize of [false, true]) {
    const model = await loadModel(dir("llama"), { backend: be });
    const V = model.config.vocab_size;
    quantizeModel(model, { kind: "nf4" });
    await loadAdapter(model, `${dir("llama")}/lora`);
    const unmerged = masked(await logitsOf(model, be, c), mask, V);
    const adapted = [...model.adapters.keys()];
    mergeAdapter(model, { dequantize });
    assert.equal(adapted.filter((k) => model.quantized.has(k)).length, dequantize ? 0 : adapted.length);
    assert.equal(model.quantized.size, 2 * 7 - (dequantize ? adapted.length : 0));
    const merged = masked(await logitsOf(model, be, c), mask, V);
    let d = 0;
    for (let i = 0; i < merged.length; i++) d = Math.max(d, Math.abs(merged[i] - unmerged[i]));
    diffs.push(d);
    model.dispose();
  }
  // quantizing the merged weight again rounds part of the adapter away; merging in f32 keeps it
  assert.ok(diffs[1] < 1e-4, `dequantize: merged vs unmerged max |diff| ${diffs[1]}`);
  assert.ok(diffs[0] > 100 * diffs[1], `quantized again: max |diff| ${diffs[0]} (f32 ${diffs[1]})`);
  const model = await loadModel(dir("llama"), { backend: be });
  assert.throws(
    () => mergeAdapter(model, { dequantise: true } as never),
    /mergeAdapter.*dequantise.*dequantize/,
  );
  model.dispose();
});

Deno.test("applyLora initialises as PEFT: A Kaiming-uniform, B zero, DoRA magnitude = row norms of W", async () => {
  const be = await cpu();
  const model = await loadModel(dir("phi3"), { backend: be });
  const c = applyLora(model, { r: 8, lora_alpha: 16, use_dora: true, use_rslora: true }, { seed: 3 });
  assert.deepEqual(c.target_modules, ["qkv_proj"]); // PEFT's default for phi3
  const t = await adapterTensors(model);
  const A = t.get("base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight")!;
  const B = t.get("base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight")!;
  const m = t.get("base_model.model.model.layers.0.self_attn.qkv_proj.lora_magnitude_vector")!;
  assert.deepEqual([A.shape, B.shape, m.shape], [[8, 64], [128, 8], [128]]);
  assert.ok(maxAbs(A.data) <= 1 / 8 && maxAbs(A.data) > 0.1, "A ~ U(-1/sqrt(64), 1/sqrt(64))");
  assert.equal(maxAbs(B.data), 0);
  const W = Float32Array.from([
    ...await model.p("layers.0.attn.q.weight").toArray(),
    ...await model.p("layers.0.attn.k.weight").toArray(),
    ...await model.p("layers.0.attn.v.weight").toArray(),
  ]);
  const norms = Array.from({ length: 128 }, (_, o) => Math.hypot(...W.subarray(o * 64, (o + 1) * 64)));
  assertAllClose(m.data, norms, { atol: 0, rtol: 1e-6 });
  // B = 0: the adapted model is the base model
  const cs = await cases(dir("phi3"));
  const mask = cs.geti("attention_mask");
  assertAllClose(masked(await logitsOf(model, be, cs), mask, 256), masked(cs.getf("logits"), mask, 256), {
    atol: 1e-4,
    rtol: 0,
  });
  assert.equal(adapterConfig(model)?.r, 8);
  assert.throws(() => applyLora(model, {}), /already has one/);
  model.dispose();
});

Deno.test("applyLora and loadAdapter list every bad field and unknown target with hints", async () => {
  const be = await cpu();
  const model = await loadModel(dir("gpt2"), { backend: be });
  assert.throws(
    () => applyLora(model, { r: 0, lora_dropout: 1, bias: "some" as "none", target_modules: ["c_atn"] }),
    (e: Error) =>
      e instanceof RangeError && /3 problems/.test(e.message) &&
      /r: must be a positive integer/.test(e.message) &&
      /lora_dropout/.test(e.message) && /bias/.test(e.message),
  );
  assert.throws(() => applyLora(model, { target_modules: ["c_atn"] }), /"c_atn" \(did you mean "c_attn"\?\)/);
  // bias on a model with no biases would train nothing more (it trained the same as "none")
  const llama = await loadModel(dir("llama"), { backend: be });
  for (const bias of ["all", "lora_only"] as const) {
    assert.throws(
      () => applyLora(llama, { r: 4, bias }),
      new RegExp(
        `bias "${bias}" trains the .* biases, and this llama model has none there; set bias: "none"`,
      ),
    );
  }
  assert.equal(llama.adapters.size, 0, "nothing attached");
  llama.dispose();
  for (const seed of [NaN, -1, 1.5]) { // NaN once drew seed 0's lora_A
    assert.throws(
      () => applyLora(model, {}, { seed }),
      /Cannot apply LoRA: seed .* is not an integer in \[0, 2\^32 - 1\]/,
    );
    assert.throws(() => Transformer.init(model.config, be, { seed }), /Cannot initialise the model: seed/);
  }
  assert.equal(model.adapters.size, 0, "a refused seed attaches nothing");
  assert.throws(
    () => applyLora(model, { lora_alpa: 8 } as never),
    /lora_alpa: unknown LoraConfig key; did you mean lora_alpha/,
  );
  // PEFT lower-cases the all-linear shorthand and reads an empty exclude_modules as none
  const every = applyLora(model, { target_modules: "ALL-LINEAR", exclude_modules: [] } as never);
  assert.equal(every.target_modules, "all-linear");
  const n = model.adapters.size;
  removeAdapter(model);
  applyLora(model, { target_modules: "all-linear" });
  assert.equal(n, model.adapters.size);
  removeAdapter(model);
  assert.throws(() => applyLora(model, { layers_to_transform: [] } as never), /layers_to_transform/);
  const c = applyLora(model, { target_modules: "transformer\\.h\\.1\\.mlp\\..*" });
  assert.deepEqual([...model.adapters.keys()], ["layers.1.mlp.up", "layers.1.mlp.down"]);
  assert.equal(c.fan_in_fan_out, true);
  removeAdapter(model);
  const tmp = await Deno.makeTempDir({ prefix: "fledge_peft_" });
  try {
    const ref = JSON.parse(await Deno.readTextFile(`${dir("gpt2")}/lora/adapter_config.json`));
    await Deno.writeTextFile(
      `${tmp}/adapter_config.json`,
      JSON.stringify({ ...ref, layers_to_transform: [0] }),
    );
    await assert.rejects(
      () => loadAdapter(model, tmp),
      /adapter_config.json: 1 problem[\s\S]*layers_to_transform/,
    );
    await Deno.writeTextFile(`${tmp}/adapter_config.json`, JSON.stringify({ ...ref, r: 8 }));
    await Deno.writeTextFile(`${tmp}/adapter_model.bin`, "pickle"); // an older PEFT save, no safetensors
    await assert.rejects(() => loadAdapter(model, tmp), {
      name: "TypeError",
      message:
        /adapter_model\.safetensors is missing; adapter_model\.bin \(pickle\) is not read: save it with/,
    });
    await Deno.copyFile(`${dir("gpt2")}/lora/adapter_model.safetensors`, `${tmp}/adapter_model.safetensors`);
    await assert.rejects(
      () => loadAdapter(model, tmp),
      /lora_A.weight has shape \[4,64\], expected \[8,64\]: r is 8 in .*adapter_config.json$/,
    );
    assert.equal(model.adapters.size, 0);
  } finally {
    await Deno.remove(tmp, { recursive: true });
    model.dispose();
  }
});

Deno.test("use_rslora scales by lora_alpha / sqrt(r): the merged delta is s B A", async () => {
  const be = await cpu();
  const model = await loadModel(dir("llama"), { backend: be });
  const w0 = await model.p("layers.1.mlp.down.weight").toArray();
  applyLora(model, {
    r: 4,
    lora_alpha: 6,
    use_rslora: true,
    init_lora_weights: false,
    target_modules: ["down_proj"],
  });
  const t = await adapterTensors(model);
  const A = t.get("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")!.data;
  const B = t.get("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")!.data;
  assert.ok(maxAbs(B) > 0.1, "init_lora_weights: false draws B too");
  mergeAdapter(model);
  const w1 = await model.p("layers.1.mlp.down.weight").toArray();
  const [N, K] = [64, 128];
  const want = new Float32Array(N * K);
  for (let o = 0; o < N; o++) {
    for (let k = 0; k < K; k++) {
      let d = 0;
      for (let r = 0; r < 4; r++) d += B[o * 4 + r] * A[r * K + k];
      want[o * K + k] = w0[o * K + k] + (6 / 2) * d;
    }
  }
  assertAllClose(w1, want, { atol: 1e-6, rtol: 1e-6 });
  model.dispose();
});

Deno.test("lora_dropout is on in training forwards (a dropout seed), off otherwise, the same mask for the same seed; DoRA + dropout trains", async () => {
  const be = await cpu();
  const c = await cases(dir("llama"));
  const model = await loadModel(dir("llama"), { backend: be });
  applyLora(model, { r: 4, lora_alpha: 8, lora_dropout: 0.5, use_dora: true, init_lora_weights: false }, {
    seed: 2,
  });
  const evalA = await logitsOf(model, be, c), evalB = await logitsOf(model, be, c);
  assert.deepEqual(evalA, evalB, "no dropout under noGrad");
  const ids = be.fromArray(c.geti("input_ids"), [2, 16], "i32");
  const plain = await model.forward(ids).toArray();
  const plainEval = await noGrad(() => model.forward(ids)).toArray();
  assert.deepEqual(plain, plainEval, "no dropout without a seed, even while autograd records");
  const train1 = await model.forward(ids, { dropout: { seed: 1 } }).toArray();
  const again = await model.forward(ids, { dropout: { seed: 1 } }).toArray();
  const train2 = await model.forward(ids, { dropout: { seed: 2 } }).toArray();
  assert.deepEqual(train1, again, "the same seed, the same masks");
  assert.notDeepEqual(train1, train2, "another seed, other masks");
  assert.notDeepEqual(train1, plain, "dropout changes the training forward");
  const losses = await train(model, be, 10, 1e-2);
  assert.ok(
    losses.every(Number.isFinite) && losses.at(-1)! < losses[0],
    `loss should fall: ${losses.join(", ")}`,
  );
  model.dispose();
});

Deno.test("bias: lora_only and modules_to_save train through the Trainer, save with PEFT's keys and reload to identical logits", async () => {
  const be = await cpu();
  const out = await Deno.makeTempDir();
  try {
    const model = await loadModel(dir("qwen2"), { backend: be }); // q/k/v biases, an untied LM head
    const ids = Int32Array.from({ length: 64 * 8 }, (_, i) => (i * 31 + 7) % 256);
    const trainer = createTrainer({
      model,
      config: getTrainingArgs({
        model: relative(Deno.cwd(), dir("qwen2")), // named relative to the working folder
        output_dir: out,
        max_steps: 3,
        per_device_train_batch_size: 2,
        learning_rate: 1e-2,
        save_strategy: "no",
        lora: { r: 4, target_modules: ["q_proj", "v_proj"], bias: "lora_only", modules_to_save: ["lm_head"] },
      }),
      train_dataset: new TextDataset(ids, { block_size: 16 }),
      progress: false,
    });
    const head0 = await model.p("lm_head.weight").toArray();
    const kBias0 = await model.p("layers.0.attn.k.bias").toArray();
    await trainer.train();
    trainer.dispose();
    assert.notDeepEqual(await model.p("lm_head.weight").toArray(), head0, "lm_head trained");
    assert.deepEqual(
      await model.p("layers.0.attn.k.bias").toArray(),
      kBias0,
      "k is not adapted: its bias stays",
    );
    const cfg = JSON.parse(await Deno.readTextFile(join(out, "adapter/adapter_config.json")));
    assert.equal(cfg.bias, "lora_only");
    assert.deepEqual(cfg.modules_to_save, ["lm_head"]);
    // the base by its absolute path: the adapter finds it from any folder (export from elsewhere failed)
    assert.equal(cfg.base_model_name_or_path, resolve(dir("qwen2")));
    const r = await openSafetensors(join(out, "adapter/adapter_model.safetensors"));
    const names = r.names();
    r.close();
    assert.ok(names.includes("base_model.model.lm_head.weight"), names.join());
    // an adapted module's bias is its PEFT wrapper's base_layer.bias
    assert.ok(
      names.includes("base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias"),
      names.join(),
    );
    assert.ok(
      names.includes("base_model.model.model.layers.1.self_attn.v_proj.base_layer.bias"),
      names.join(),
    );
    assert.ok(!names.some((n) => n.includes("k_proj")), names.join());
    const x = be.fromArray(ids.subarray(0, 32), [2, 16], "i32");
    const want = await noGrad(() => model.forward(x)).toArray();
    const again = await loadModel(dir("qwen2"), { backend: be });
    await loadAdapter(again, join(out, "adapter"));
    assert.deepEqual(await noGrad(() => again.forward(x)).toArray(), want);
    x.dispose();
    model.dispose();
    again.dispose();
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("modules_to_save on q/k/v and gate behind frozen layers gets the gradients full fine-tuning gives them", async () => {
  // their input is off the graph (everything before them frozen) and was freed before their backward
  const names = [
    "layers.0.attn.q.weight",
    "layers.0.attn.k.weight",
    "layers.0.attn.v.weight",
    "layers.0.mlp.gate.weight",
  ];
  const c = await cases(`${dir("llama")}/lora`);
  for (const be of await backends()) {
    const full = await loadModel(dir("llama"), { backend: be });
    for (const p of full.parameters()) p.requiresGrad = true;
    await lossOf(full, be, c, { backward: true });
    const want = await Promise.all(names.map((n) => full.p(n).grad!.toArray()));
    full.dispose();
    const model = await loadModel(dir("llama"), { backend: be });
    applyLora(model, {
      r: 4,
      target_modules: ["down_proj"],
      modules_to_save: ["q_proj", "k_proj", "v_proj", "gate_proj"],
    });
    await lossOf(model, be, c, { backward: true });
    for (const [i, n] of names.entries()) {
      assertAllClose(
        await model.p(n).grad!.toArray(),
        want[i],
        { atol: 1e-6, rtol: 1e-4, msg: `${be.name} ${n}` },
      );
    }
    model.dispose();
  }
});

Deno.test("modules_to_save naming nothing (GPT-2's tied LM head) is one line listing the modules", async () => {
  const model = await loadModel(dir("gpt2"), { backend: await cpu() });
  assert.throws(
    () => applyLora(model, { r: 4, modules_to_save: ["lm_head"] }),
    /modules_to_save "lm_head" matches no module of this gpt2 model \(its LM head is tied to the embeddings\); its modules are: transformer\.wte/,
  );
  assert.equal(model.adapters.size, 0, "nothing attached");
  model.dispose();
});

Deno.test("bias: all saves an adapted module's bias as PEFT's base_layer.bias, the others by their name; the old key still loads", async () => {
  const be = await cpu();
  const model = await loadModel(dir("qwen2"), { backend: be });
  applyLora(model, { r: 4, target_modules: ["q_proj"], bias: "all" });
  const t = await adapterTensors(model);
  const layer0 = [...t.keys()].filter((k) => k.includes("layers.0.self_attn")).sort();
  assert.deepEqual(layer0, [
    "base_model.model.model.layers.0.self_attn.k_proj.bias",
    "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias",
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
    "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
    "base_model.model.model.layers.0.self_attn.v_proj.bias",
  ]);
  const out = await Deno.makeTempDir({ prefix: "fledge_peft_" });
  try {
    const bias = model.p("layers.0.attn.q.bias");
    model.params.set("layers.0.attn.q.bias", be.fromArray(new Float32Array(bias.size).fill(0.5), bias.shape));
    bias.dispose();
    await saveAdapter(model, out);
    // an adapter fledge saved with the plain key (`q_proj.bias`) before
    const { tensors } = await readSafetensors(`${out}/adapter_model.safetensors`);
    const renamed = new Map([...tensors].map(([k, v]) => [k.replace(".base_layer.bias", ".bias"), v]));
    await writeSafetensors(`${out}/adapter_model.safetensors`, renamed);
    for (const k of renamed.keys()) assert.ok(!k.includes("base_layer"), k);
    const again = await loadModel(dir("qwen2"), { backend: be });
    await loadAdapter(again, out);
    assert.deepEqual(await again.p("layers.0.attn.q.bias").toArray(), new Float32Array(64).fill(0.5));
    again.dispose();
  } finally {
    await Deno.remove(out, { recursive: true });
    model.dispose();
  }
});

Deno.test("bias: lora_only from PEFT 0.14, which saves no bias, loads onto the base's biases; some of them missing is refused", async () => {
  const be = await cpu();
  const model = await loadModel(dir("qwen2"), { backend: be });
  applyLora(model, { r: 4, target_modules: ["q_proj"], bias: "lora_only", init_lora_weights: false });
  const out = await Deno.makeTempDir({ prefix: "fledge_peft_" });
  try {
    await saveAdapter(model, out);
    const file = `${out}/adapter_model.safetensors`;
    const { tensors } = await readSafetensors(file);
    const bias0 = "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias";
    assert.ok(tensors.delete(bias0));
    await writeSafetensors(file, tensors);
    const again = await loadModel(dir("qwen2"), { backend: be });
    await assert.rejects(() => loadAdapter(again, out), new RegExp(`tensor ${bias0} is missing`));
    tensors.delete("base_model.model.model.layers.1.self_attn.q_proj.base_layer.bias");
    await writeSafetensors(file, tensors);
    const base = await again.p("layers.1.attn.q.bias").toArray();
    await loadAdapter(again, out);
    assert.deepEqual(await again.p("layers.1.attn.q.bias").toArray(), base, "the base's bias");
    assert.equal(again.adapters.size, 2);
    again.dispose();
  } finally {
    await Deno.remove(out, { recursive: true });
    model.dispose();
  }
});

Deno.test("modules_to_save matches as PEFT's _set_trainable does, by plain suffix: norm is every *norm module", async () => {
  const model = await loadModel(dir("llama"), { backend: await cpu() });
  applyLora(model, { r: 4, modules_to_save: ["norm"] });
  const saved = [...(await adapterTensors(model)).keys()].filter((k) => !k.includes("lora_")).sort();
  assert.deepEqual(saved, [
    "base_model.model.model.layers.0.input_layernorm.weight",
    "base_model.model.model.layers.0.post_attention_layernorm.weight",
    "base_model.model.model.layers.1.input_layernorm.weight",
    "base_model.model.model.layers.1.post_attention_layernorm.weight",
    "base_model.model.model.norm.weight",
  ]);
  assert.equal(model.parameters().filter((p) => p.requiresGrad).length, 5, "the five norms train");
  model.dispose();
});

Deno.test("an adapter for a base model of other shapes says so and names the fix", async () => {
  const be = await cpu();
  const llama = await loadModel(dir("llama"), { backend: be });
  const small = Transformer.init(
    { ...llama.config, hidden_size: 32, intermediate_size: 64, head_dim: 8 },
    be,
  );
  llama.dispose();
  await assert.rejects(
    () => loadAdapter(small, `${dir("llama")}/lora`),
    /q_proj\.lora_A\.weight has shape \[4,64\], expected \[4,32\]: the adapter was made for a base model of other shapes, not this llama model \(hidden_size 32\); load it onto its base model$/,
  );
  assert.equal(small.adapters.size, 0);
  small.dispose();
});
