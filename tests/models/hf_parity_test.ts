/**
 * Parity with ../shared/fixtures/hf-reference: logits, loss, gradients, hidden states and greedy
 * tokens of the Hugging Face reference models (tolerances from the fixture README).
 */
import { backward, noGrad } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { loadModel } from "../../models/pretrained.ts";
import { readSafetensors, type SafeTensor } from "../../models/formats/safetensors.ts";
import { assert, assertAllClose, FIXTURE_ARCHES, SHARED } from "../_assert.ts";
import { backends } from "../_check.ts";

const dir = (arch: string) => `${SHARED}/fixtures/hf-reference/${arch}`;

async function cases(arch: string) {
  const { tensors } = await readSafetensors(`${dir(arch)}/cases.safetensors`);
  const get = (n: string): SafeTensor => tensors.get(n)!;
  const geti = (n: string) => Int32Array.from(get(n).data as BigInt64Array, (x) => Number(x));
  return { tensors, get, geti };
}

/** Compare logits only where the mask is 1. */
function maskedLogits(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  mask: Int32Array,
  V: number,
  msg: string,
) {
  const g: number[] = [], w: number[] = [];
  for (let r = 0; r < mask.length; r++) {
    if (!mask[r]) continue;
    for (let j = 0; j < V; j++) {
      g.push(got[r * V + j]);
      w.push(want[r * V + j]);
    }
  }
  return assertAllClose(g, w, { atol: 1e-4, rtol: 0, msg });
}

for (const arch of FIXTURE_ARCHES) {
  Deno.test(`loadModel(${arch}) matches Hugging Face logits, loss and gradients on every backend`, async () => {
    const { get, geti } = await cases(arch);
    for (const be of await backends()) {
      const model = await loadModel(dir(arch), { backend: be });
      const V = model.config.vocab_size;
      const ids = be.fromArray(geti("input_ids"), [2, 16], "i32");
      const mask = be.fromArray(geti("attention_mask"), [2, 16], "i32");
      const labels = be.fromArray(geti("labels"), [2, 16], "i32");
      // logits, right padding
      const logits = noGrad(() => model.forward(ids, { attention_mask: mask }));
      maskedLogits(
        await logits.toArray(),
        get("logits").data as Float32Array,
        geti("attention_mask"),
        V,
        `${arch} ${be.name} logits`,
      );
      logits.dispose();
      // loss and gradients
      model.setTrainable(true);
      const loss = model.loss(ids, labels, { attention_mask: mask });
      const lossV = (await loss.toArray())[0];
      assert.ok(
        Math.abs(lossV - (get("loss").data as Float32Array)[0]) <= 1e-5,
        `${arch} ${be.name} loss ${lossV}`,
      );
      backward(loss);
      loss.dispose();
      await checkGrads(arch, be, model, get);
      model.dispose();
    }
  });

  Deno.test(`loadModel(${arch}) matches left-padded logits with explicit position ids`, async () => {
    const { get, geti } = await cases(arch);
    for (const be of await backends()) {
      const model = await loadModel(dir(arch), { backend: be });
      const ids = be.fromArray(geti("input_ids_leftpad"), [2, 16], "i32");
      const mask = be.fromArray(geti("attention_mask_leftpad"), [2, 16], "i32");
      const pos = be.fromArray(geti("position_ids_leftpad"), [2, 16], "i32");
      const logits = noGrad(() => model.forward(ids, { attention_mask: mask, position_ids: pos }));
      maskedLogits(
        await logits.toArray(),
        get("logits_leftpad").data as Float32Array,
        geti("attention_mask_leftpad"),
        model.config.vocab_size,
        `${arch} ${be.name} left-padded logits`,
      );
      model.dispose();
    }
  });

  Deno.test(`greedy decoding with the KV cache reproduces the ${arch} fixture tokens`, async () => {
    const { get, geti } = await cases(arch);
    const want = [...geti("greedy_tokens")];
    for (const be of await backends()) {
      const model = await loadModel(dir(arch), { backend: be });
      const V = model.config.vocab_size;
      const cache = model.createCache(1, 24);
      const got: number[] = [];
      const stepLogits: number[] = [];
      let input = be.fromArray(geti("greedy_prompt"), [1, 16], "i32");
      for (let s = 0; s < 8; s++) {
        const logits = noGrad(() => model.forward(input, { cache }));
        const arr = await logits.toArray();
        const T = input.shape[1];
        const last = arr.subarray((T - 1) * V, T * V);
        let best = 0;
        for (let j = 1; j < V; j++) if (last[j] > last[best]) best = j;
        got.push(best);
        stepLogits.push(...last);
        logits.dispose();
        input.dispose();
        input = be.fromArray([best], [1, 1], "i32");
      }
      assert.deepEqual(got, want, `${arch} ${be.name} greedy tokens`);
      assertAllClose(stepLogits, get("greedy_step_logits").data as Float32Array, {
        atol: 1e-4,
        rtol: 0,
        msg: `${arch} ${be.name} greedy step logits`,
      });
      model.dispose();
    }
  });
}

async function checkGrads(
  arch: string,
  be: Backend,
  model: Awaited<ReturnType<typeof loadModel>>,
  get: (n: string) => SafeTensor,
) {
  const C = model.config.hidden_size;
  const q = await model.p("layers.0.attn.q.weight").grad!.toArray();
  const emb = await model.p("embed.weight").grad!.toArray();
  let wantQ: Float32Array, gotQ: ArrayLike<number>;
  if (arch === "phi3") {
    const k = await model.p("layers.0.attn.k.weight").grad!.toArray();
    const v = await model.p("layers.0.attn.v.weight").grad!.toArray();
    gotQ = Float32Array.from([...q, ...k, ...v]);
    wantQ = get("grad.model.layers.0.self_attn.qkv_proj.weight").data as Float32Array;
  } else if (arch === "gpt2") {
    // c_attn is Conv1D [in, out]: ours are [out, in] pieces q, k, v.
    const k = await model.p("layers.0.attn.k.weight").grad!.toArray();
    const v = await model.p("layers.0.attn.v.weight").grad!.toArray();
    const fused = Float32Array.from([...q, ...k, ...v]); // [3C, C]
    gotQ = new Float32Array(fused.length);
    for (let o = 0; o < 3 * C; o++) {
      for (let i = 0; i < C; i++) (gotQ as Float32Array)[i * 3 * C + o] = fused[o * C + i];
    }
    wantQ = get("grad.transformer.h.0.attn.c_attn.weight").data as Float32Array;
  } else {
    gotQ = q;
    wantQ = get("grad.model.layers.0.self_attn.q_proj.weight").data as Float32Array;
  }
  const embName = arch === "gpt2" ? "grad.transformer.wte.weight" : "grad.model.embed_tokens.weight";
  const wantE = get(embName).data as Float32Array;
  const scale = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assertAllClose(gotQ, wantQ, {
    atol: 1e-4 * scale(wantQ),
    rtol: 0,
    msg: `${arch} ${be.name} query-projection grad`,
  });
  assertAllClose(emb, wantE, {
    atol: 1e-4 * scale(wantE),
    rtol: 0,
    msg: `${arch} ${be.name} embedding grad`,
  });
}
