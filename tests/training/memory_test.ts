/**
 * memoryReport: base weights by dtype (QLoRA's NF4 + double quantization against f32), adapter
 * bytes against r (in + out) per target, gradients and AdamW state, and the measured peak of a
 * training step with and without gradient checkpointing, on every backend.
 */
import { backward, noGrad } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { AdamW } from "../../kernels/optim.ts";
import { type ModelConfig, presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { formatMemoryReport, memoryReport } from "../../training/memory.ts";
import { applyLora, quantizeModel, trainableParameters } from "../../training/peft.ts";
import { assert } from "../_assert.ts";
import { backends } from "../_check.ts";

const mc: ModelConfig = presetConfig("tiny", {
  vocab_size: 64,
  hidden_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 32,
  intermediate_size: 256,
  max_position_embeddings: 64,
});

/** A fresh `[B, T]` batch of ids on `be`. */
function batch(be: Backend, B: number, T: number) {
  return be.fromArray(Array.from({ length: B * T }, (_, i) => (i * 7 + 1) % mc.vocab_size), [B, T], "i32");
}

/** Drop every gradient of the model's trainable tensors. */
function clearGrads(m: Transformer): void {
  for (const p of trainableParameters(m)) {
    p.grad?.dispose();
    p.grad = null;
  }
}

Deno.test("memoryReport() counts NF4 base weights with double quantization at <= 14% of their f32 bytes", async () => {
  for (const be of await backends()) {
    const m = Transformer.init(mc, be, { seed: 1 });
    const full = memoryReport(m);
    assert.equal(full.base_4bit, 0);
    assert.equal(full.base_total, full.base_f32);
    const q = quantizeModel(m, { kind: "nf4", doubleQuant: true });
    const r = memoryReport(m);
    // the linears left f32 storage: what left is what the 4-bit weights replace
    const linearF32 = full.base_f32 - r.base_f32;
    if (be.name === "cpu") {
      assert.equal(linearF32, q.bytes_before);
      assert.equal(r.base_4bit, q.bytes_after);
    }
    assert.equal(r.base_4bit_as_f32, q.bytes_before);
    assert.equal(r.base_params, full.base_params, "the same parameters, stored smaller");
    const ratio = r.base_4bit / linearF32;
    console.log(
      `${be.name}: NF4 + double quant = ${(100 * ratio).toFixed(2)}% of f32 (${formatMemoryReport(r)})`,
    );
    assert.ok(ratio <= 0.14, `${be.name}: ${r.base_4bit} / ${linearF32} = ${ratio}`);
    assert.ok(r.base_total < full.base_total);
    assert.ok(formatMemoryReport(r).includes("4-bit"), formatMemoryReport(r));
    m.dispose();
  }
});

Deno.test("memoryReport() counts LoRA adapters as r (in + out) per target, DoRA adds out", async () => {
  const r = 4, layers = mc.num_hidden_layers;
  const h = mc.hidden_size,
    q = mc.num_attention_heads * mc.head_dim,
    kv = mc.num_key_value_heads * mc.head_dim;
  const I = mc.intermediate_size;
  // [in, out] of each target of the tiny llama-style model
  const dims: Record<string, [number, number]> = {
    q_proj: [h, q],
    k_proj: [h, kv],
    v_proj: [h, kv],
    o_proj: [q, h],
    gate_proj: [h, I],
    up_proj: [h, I],
    down_proj: [I, h],
  };
  const cases: [string[] | "all-linear", boolean][] = [
    [["q_proj", "v_proj"], false],
    [["o_proj", "down_proj"], false],
    ["all-linear", false],
    [["q_proj", "v_proj"], true],
  ];
  for (const be of await backends()) {
    for (const [targets, dora] of cases) {
      const m = Transformer.init(mc, be, { seed: 1 });
      applyLora(m, { r, target_modules: targets, use_dora: dora });
      const names = targets === "all-linear" ? Object.keys(dims) : targets;
      const perLayer = names.reduce((a, n) => a + r * (dims[n][0] + dims[n][1]) + (dora ? dims[n][1] : 0), 0);
      const rep = memoryReport(m, { optimizer: new AdamW(), gradients: "step" });
      const what = `${be.name} ${JSON.stringify(targets)}${dora ? " DoRA" : ""}`;
      assert.equal(rep.adapter_params, perLayer * layers, what);
      assert.equal(rep.trainable_params, rep.adapter_params, `${what}: only the adapter trains`);
      if (be.name === "cpu") {
        assert.equal(rep.adapter, 4 * perLayer * layers, what);
        assert.equal(rep.gradients, rep.adapter, what);
        assert.equal(rep.optimizer, 2 * rep.adapter, what);
      } else {
        // webgpu buffers come in pool size classes (at most 25% over, 16 bytes at least)
        assert.ok(
          rep.adapter >= 4 * perLayer * layers && rep.adapter <= 5 * perLayer * layers + 16 * 64,
          what,
        );
        assert.ok(rep.gradients >= 4 * perLayer * layers && rep.optimizer === 2 * rep.gradients, what);
      }
      assert.equal(rep.static, rep.base_total + rep.adapter + rep.gradients + rep.optimizer);
      assert.equal(memoryReport(m).optimizer, 0, "no optimizer given: no state");
      m.dispose();
    }
  }
});

Deno.test("memoryReport() counts the gradients held, and measures a lower peak with gradient_checkpointing", async () => {
  const B = 2, T = 48;
  const deep = { ...mc, num_hidden_layers: 6 };
  for (const be of await backends()) {
    const m = Transformer.init(deep, be, { seed: 2 });
    m.setTrainable(true);
    // warm-up: kernels may keep small per-backend constants from their first call (no tape kept)
    const w = batch(be, B, T);
    const wl = noGrad(() => m.loss(w, w));
    await wl.toArray();
    wl.dispose();
    w.dispose();
    const peaks: Record<string, number> = {};
    for (const ckpt of [false, true]) {
      await be.sync();
      be.resetPeak();
      const ids = batch(be, B, T);
      const loss = m.loss(ids, ids, { gradient_checkpointing: ckpt });
      backward(loss);
      loss.dispose();
      ids.dispose();
      const held = memoryReport(m);
      const step = memoryReport(m, { gradients: "step" });
      assert.equal(held.gradients, step.gradients, `${be.name}: every trainable tensor got its gradient`);
      assert.ok(held.gradients > 0 && held.trainable_params === held.base_params, be.name);
      assert.ok(held.peak >= held.static && held.activations === held.peak - held.static, be.name);
      peaks[`${ckpt}`] = held.activations;
      clearGrads(m);
      assert.equal(memoryReport(m).gradients, 0, `${be.name}: released`);
    }
    console.log(
      `${be.name}: peak activations of one step ${peaks.false} bytes, ${peaks.true} with gradient_checkpointing`,
    );
    // forward activations of every block (plain) against one block recomputed at a time
    assert.ok(peaks.true < 0.7 * peaks.false, `${be.name}: ${peaks.true} vs ${peaks.false}`);
    m.dispose();
  }
});
