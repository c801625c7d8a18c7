/**
 * models/transformer.ts gradient checkpointing (`ForwardOptions.gradient_checkpointing`): the same
 * gradients as without, dropout masks included, a lower peak of live memory, nothing leaked.
 */
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { type ModelConfig, presetConfig } from "../../models/config.ts";
import { type ForwardOptions, type LinearAdapterContext, Transformer } from "../../models/transformer.ts";
import { assert, assertAllClose } from "../_assert.ts";
import { backends } from "../_check.ts";

const B = 2, T = 12;

function configs(): [string, ModelConfig][] {
  const small = { vocab_size: 40, hidden_size: 16, num_hidden_layers: 3, intermediate_size: 32 };
  return [
    [
      "llama",
      presetConfig("tiny", {
        ...small,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        attention_dropout: 0.2,
        resid_pdrop: 0.1,
      }),
    ],
    [
      "gpt2",
      presetConfig("gpt2-124m", {
        ...small,
        num_attention_heads: 2,
        num_key_value_heads: 2,
        head_dim: 8,
        max_position_embeddings: 16,
        bos_token_id: 1,
        eos_token_id: 2,
      }),
    ],
  ];
}

const IDS = Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % 40);

/** Loss and parameter gradients of one step; the grads are disposed after reading. */
async function step(model: Transformer, opts: ForwardOptions): Promise<Float32Array[]> {
  const be = model.backend;
  const ids = be.fromArray(IDS, [B, T], "i32");
  const loss = model.loss(ids, ids, opts);
  backward(loss);
  const out = [await loss.toArray() as Float32Array];
  for (const p of model.parameters()) {
    if (!p.grad) continue;
    out.push(await p.grad.toArray() as Float32Array);
    p.grad.dispose();
    p.grad = null;
  }
  loss.dispose();
  ids.dispose();
  return out;
}

Deno.test("gradient_checkpointing gives the gradients of the plain backward (1e-6 relative), with dropout on", async () => {
  for (const be of await backends()) {
    for (const [arch, c] of configs()) {
      const m = Transformer.init(c, be, { seed: 9 });
      m.setTrainable(true);
      for (const dropout of [null, { seed: 4 }]) {
        const plain = await step(m, { dropout });
        const ckpt = await step(m, { dropout, gradient_checkpointing: true });
        assert.equal(ckpt.length, plain.length);
        assert.deepEqual(ckpt[0], plain[0], `${be.name} ${arch}: same loss`);
        ckpt.forEach((g, k) =>
          assertAllClose(g, plain[k], {
            atol: 1e-9,
            rtol: 1e-6,
            msg: `${be.name} ${arch} dropout ${!!dropout} #${k}`,
          })
        );
      }
      m.dispose();
    }
  }
});

Deno.test("gradient_checkpointing lowers the peak of live memory and leaks nothing (frozen embeddings too)", async () => {
  const c = presetConfig("tiny", {
    vocab_size: 32,
    hidden_size: 32,
    num_hidden_layers: 6,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    head_dim: 16,
    intermediate_size: 128,
    max_position_embeddings: 64,
    attention_dropout: 0.1,
    resid_pdrop: 0.1,
  });
  const ids = Array.from({ length: 2 * 48 }, (_, i) => (i * 3) % 32);
  for (const be of await backends()) {
    const m = Transformer.init(c, be, { seed: 2 });
    // warm-up: kernels may keep small per-backend constants (e.g. tables) from their first call
    const w = be.fromArray(ids, [2, 48], "i32");
    const wl = m.loss(w, w);
    await wl.toArray();
    wl.dispose();
    w.dispose();
    const peaks: Record<string, number> = {};
    for (const frozenEmbed of [false, true]) {
      m.setTrainable(true);
      if (frozenEmbed) m.p("embed.weight").requiresGrad = false;
      for (const ckpt of [false, true]) {
        await be.sync();
        const before = be.liveBytes;
        be.resetPeak();
        const x = be.fromArray(ids, [2, 48], "i32");
        const loss = m.loss(x, x, { dropout: { seed: 1 }, gradient_checkpointing: ckpt });
        backward(loss);
        loss.dispose();
        x.dispose();
        const grads = m.parameters().filter((p) => p.grad).map((p) => p.grad!) as Tensor[];
        const gradBytes = grads.reduce((n, g) => n + (be.name === "cpu" ? g.bytes : g.buffer.size), 0);
        // after backward only the gradients are new: every activation was freed
        assert.equal(be.liveBytes - before, gradBytes, `${be.name} ckpt=${ckpt} frozen=${frozenEmbed}: leak`);
        peaks[`${ckpt}`] = be.peakBytes - before;
        for (const g of grads) g.dispose();
        for (const p of m.parameters()) p.grad = null;
      }
      console.log(
        `${be.name}${
          frozenEmbed ? " (frozen embeddings)" : ""
        }: peak live memory of a step (activations, gradients) ` +
          `${peaks.false} bytes plain, ${peaks.true} bytes with gradient_checkpointing`,
      );
      assert.ok(peaks.true < 0.7 * peaks.false, `${be.name}: ${peaks.true} vs ${peaks.false}`);
    }
    m.dispose();
  }
});

Deno.test("gradient_checkpointing: adapters see the same dropout seed in the recompute, null without dropout", async () => {
  const be: Backend = (await backends())[0];
  const c = configs()[0][1];
  const m = Transformer.init(c, be, { seed: 1 });
  m.setTrainable(true);
  const seen: (number | null)[] = [];
  m.adapters.set("layers.1.mlp.down", {
    apply(_x: Tensor, base: Tensor, _w: unknown, _b: unknown, ctx?: LinearAdapterContext) {
      seen.push(ctx?.dropout_seed ?? null);
      return base;
    },
  });
  await step(m, { dropout: { seed: 3 }, gradient_checkpointing: true });
  assert.equal(seen.length, 2, "forward and recompute");
  assert.equal(seen[0], seen[1]);
  assert.equal(typeof seen[0], "number");
  await step(m, { dropout: { seed: 4 } });
  assert.notEqual(seen[2], seen[0]);
  await step(m, {});
  assert.equal(seen[3], null);
  m.dispose();
});
