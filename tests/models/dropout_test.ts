/**
 * models/transformer.ts dropout (HF train mode): the config's embd_pdrop, attention_dropout and
 * resid_pdrop apply only with `ForwardOptions.dropout`, masks are a pure function of the seed, and
 * the backends agree; NEFTune's embedding noise (`ForwardOptions.neftune`) likewise.
 */
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { dropout, dropoutSeed, uniformNoise } from "../../kernels/elementwise.ts";
import type { ModelConfig } from "../../models/config.ts";
import { presetConfig } from "../../models/config.ts";
import { DROPOUT_SITES, type ForwardOptions, Transformer } from "../../models/transformer.ts";
import { assert, assertAllClose } from "../_assert.ts";
import { backends, compareBackends } from "../_check.ts";

const B = 2, T = 9;
const DROP = { attention_dropout: 0.2, resid_pdrop: 0.15, embd_pdrop: 0.1 };

/** Llama style (rope, GQA, SwiGLU) and GPT-2 style (learned positions, LayerNorm, GELU, biases). */
function configs(drop: Partial<ModelConfig> = {}): [string, ModelConfig][] {
  const small = { vocab_size: 40, hidden_size: 16, num_hidden_layers: 2, intermediate_size: 24, ...drop };
  return [
    [
      "llama",
      presetConfig("tiny", { ...small, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8 }),
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
        attention_dropout: drop.attention_dropout ?? 0,
        resid_pdrop: drop.resid_pdrop ?? 0,
        embd_pdrop: drop.embd_pdrop ?? 0,
      }),
    ],
  ];
}

const IDS = Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 40);

/** Loss, logits (no grad) and every parameter gradient of one training step, as host arrays. */
async function step(model: Transformer, opts: ForwardOptions): Promise<Float32Array[]> {
  const be = model.backend;
  const ids = be.fromArray(IDS, [B, T], "i32");
  const loss = model.loss(ids, ids, opts);
  backward(loss);
  const out = [await loss.toArray() as Float32Array];
  for (const p of model.parameters()) {
    out.push(await p.grad!.toArray() as Float32Array);
    p.grad!.dispose();
    p.grad = null;
  }
  loss.dispose();
  ids.dispose();
  return out;
}

/** Logits without recording. */
async function logits(model: Transformer, opts: ForwardOptions = {}): Promise<Float32Array> {
  const ids = model.backend.fromArray(IDS, [B, T], "i32");
  const y = model.forward(ids, opts);
  const a = await y.toArray() as Float32Array;
  y.dispose();
  ids.dispose();
  return a;
}

function pair(be: Backend, plain: ModelConfig, dropped: ModelConfig): [Transformer, Transformer] {
  const a = Transformer.init(plain, be, { seed: 3 });
  a.setTrainable(true);
  // the same parameter tensors under a config with dropout rates
  return [a, new Transformer(dropped, a.params, be)];
}

Deno.test("dropout: without the option (or at p = 0) logits and gradients are bit-identical to no dropout", async () => {
  for (const be of await backends()) {
    const drops = configs(DROP);
    for (const [i, [arch, plain]] of configs().entries()) {
      const [a, d] = pair(be, plain, drops[i][1]);
      const base = await step(a, {});
      const label = `${be.name} ${arch}`;
      // p = 0 everywhere with the option: nothing runs differently
      (await step(a, { dropout: { seed: 5 } })).forEach((x, k) =>
        assert.deepEqual(x, base[k], `${label} p=0 #${k}`)
      );
      // rates set but no option (evaluation): unchanged
      (await step(d, {})).forEach((x, k) => assert.deepEqual(x, base[k], `${label} no option #${k}`));
      (await step(d, { dropout: null })).forEach((x, k) =>
        assert.deepEqual(x, base[k], `${label} null #${k}`)
      );
      assert.deepEqual(await logits(d), await logits(a), `${label} logits`);
      a.dispose();
    }
  }
});

Deno.test("dropout: with p > 0 the loss changes, the same seed repeats it bit for bit, another seed differs", async () => {
  for (const be of await backends()) {
    for (const [arch, c] of configs(DROP)) {
      const m = Transformer.init(c, be, { seed: 3 });
      m.setTrainable(true);
      const label = `${be.name} ${arch}`;
      const off = await step(m, {});
      const s1 = await step(m, { dropout: { seed: 11 } });
      const again = await step(m, { dropout: { seed: 11 } });
      const s2 = await step(m, { dropout: { seed: 12 } });
      assert.notEqual(s1[0][0], off[0][0], `${label}: dropout changes the loss`);
      assert.notEqual(s2[0][0], s1[0][0], `${label}: another seed, another loss`);
      again.forEach((x, k) => assert.deepEqual(x, s1[k], `${label}: same seed, output ${k}`));
      // evaluation after training-mode forwards is still the undropped model
      assert.deepEqual((await step(m, {}))[0], off[0], `${label}: no state left behind`);
      m.dispose();
    }
  }
});

Deno.test("dropout: each site alone changes the loss (embeddings, attention probabilities, residuals)", async () => {
  const be = (await backends())[0];
  for (const [arch] of configs()) {
    const losses: number[] = [];
    for (const drop of [{}, { embd_pdrop: 0.3 }, { attention_dropout: 0.3 }, { resid_pdrop: 0.3 }]) {
      const c = configs(drop).find(([a]) => a === arch)![1];
      const m = Transformer.init(c, be, { seed: 3 });
      m.setTrainable(true);
      losses.push((await step(m, { dropout: { seed: 1 } }))[0][0]);
      m.dispose();
    }
    assert.equal(new Set(losses).size, 4, `${arch}: ${losses}`);
  }
});

Deno.test("dropout: webgpu and cpu agree with dropout on (loss, logits and gradients)", async () => {
  for (const [arch, c] of configs(DROP)) {
    await compareBackends(`dropout ${arch}`, async (be) => {
      const m = Transformer.init(c, be, { seed: 3 });
      m.setTrainable(true);
      const out = (await step(m, { dropout: { seed: 21 } })).map((a) => be.fromArray(a, [a.length]));
      const ids = be.fromArray(IDS, [B, T], "i32");
      const train = m.forward(ids, { dropout: { seed: 21 } });
      m.dispose();
      return [...out, train];
    }, { atol: 1e-5, rtol: 1e-4 });
  }
});

Deno.test("dropout: the kept fraction over a large tensor is within 1% of 1 - p; site seeds differ", async () => {
  const n = 1 << 20;
  for (const be of await backends()) {
    const ones = be.full([n], 1);
    for (const p of [0.1, 0.5]) {
      for (
        const seed of [
          dropoutSeed(0, [DROPOUT_SITES.embed, 0]),
          dropoutSeed(7, [DROPOUT_SITES.mlp_resid, 3]),
        ]
      ) {
        const y = dropout(ones, p, seed);
        const a = await y.toArray();
        y.dispose();
        let kept = 0;
        for (let i = 0; i < n; i++) if (a[i] !== 0) kept++;
        const frac = kept / n;
        assert.ok(Math.abs(frac - (1 - p)) < 0.01 * (1 - p), `${be.name} p=${p}: kept ${frac}`);
        const scale = a.find((v) => v !== 0)!;
        assertAllClose([scale], [1 / (1 - p)], { atol: 0, rtol: 1e-7 });
      }
    }
    ones.dispose();
  }
  const seeds = new Set<number>();
  for (const site of Object.values(DROPOUT_SITES)) {
    for (let layer = 0; layer < 48; layer++) seeds.add(dropoutSeed(123, [site, layer]));
  }
  assert.equal(seeds.size, Object.keys(DROPOUT_SITES).length * 48, "distinct seeds per (site, layer)");
});

Deno.test("NEFTune: ForwardOptions.neftune adds uniform noise of alpha / sqrt(T·C) to the token embeddings only, seeded; off it is bit-identical", async () => {
  const C = 16, alpha = 5, m = alpha / Math.sqrt(T * C);
  const want: Float32Array[][] = [];
  for (const be of await backends()) {
    for (const [arch, c] of configs()) {
      const model = Transformer.init(c, be, { seed: 3 });
      model.setTrainable(true);
      const label = `${be.name} ${arch}`;
      const embedded = async (neftune: ForwardOptions["neftune"]) => {
        const states: Tensor[] = [];
        const ids = be.fromArray(IDS, [B, T], "i32");
        model.forward(ids, { neftune, output_hidden_states: states }).dispose();
        const h0 = await states[0].toArray() as Float32Array;
        for (const s of states) s.dispose();
        ids.dispose();
        return h0;
      };
      const clean = await embedded(null), noisy = await embedded({ alpha, seed: 4 });
      const noise = noisy.map((v, i) => v - clean[i]);
      const expected = await uniformNoise(
        be.zeros([B * T * C]),
        m,
        dropoutSeed(4, [DROPOUT_SITES.neftune, 0]),
      )
        .toArray();
      assertAllClose(noise, expected, { atol: 1e-6, rtol: 0, msg: `${label}: the noise` });
      assert.ok(Math.max(...noise.map(Math.abs)) > 0.95 * m, `${label}: noise of ${m} expected`);
      const off = await step(model, {});
      (await step(model, { neftune: { alpha: 0, seed: 4 } })).forEach((x, k) =>
        assert.deepEqual(x, off[k], `${label}: alpha 0 #${k}`)
      );
      const on = await step(model, { neftune: { alpha, seed: 4 } });
      assert.notEqual(on[0][0], off[0][0], `${label}: the noise changes the loss`);
      (await step(model, { neftune: { alpha, seed: 4 } })).forEach((x, k) =>
        assert.deepEqual(x, on[k], `${label}: the same seed repeats #${k}`)
      );
      assert.notEqual((await step(model, { neftune: { alpha, seed: 5 } }))[0][0], on[0][0], `${label}: seed`);
      want.push(on);
      model.dispose();
    }
  }
  if (want.length === 4) {
    want[0].forEach((x, k) =>
      assertAllClose(want[2][k], x, { atol: 1e-5, rtol: 1e-4, msg: `llama cpu/webgpu #${k}` })
    );
    want[1].forEach((x, k) =>
      assertAllClose(want[3][k], x, { atol: 1e-5, rtol: 1e-4, msg: `gpt2 cpu/webgpu #${k}` })
    );
  }
});
