/**
 * Parity with ../shared/fixtures/hf-reference: logits, loss, gradients, hidden states and greedy
 * tokens of the Hugging Face reference models (tolerances from the fixture README).
 */
import { backward, noGrad } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { checkpointKeyMap } from "../../models/config.ts";
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
    const { tensors, get, geti } = await cases(arch);
    for (const be of await backends()) {
      const model = await loadModel(dir(arch), { backend: be });
      const V = model.config.vocab_size;
      const ids = be.fromArray(geti("input_ids"), [2, 16], "i32");
      const mask = be.fromArray(geti("attention_mask"), [2, 16], "i32");
      const labels = be.fromArray(geti("labels"), [2, 16], "i32");
      // logits and hidden states, right padding
      const states: Tensor[] = [];
      const logits = noGrad(() => model.forward(ids, { attention_mask: mask, output_hidden_states: states }));
      maskedLogits(
        await logits.toArray(),
        get("logits").data as Float32Array,
        geti("attention_mask"),
        V,
        `${arch} ${be.name} logits`,
      );
      logits.dispose();
      await checkHiddenStates(arch, be, states, tensors);
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
      await checkGrads(arch, be, model, tensors);
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

/**
 * Our gradient of the Hugging Face tensor `hf` (a checkpoint name), assembled in HF's layout from
 * the canonical parameters the checkpoint key map names: fused pieces stacked by rows, Conv1D
 * weights transposed to `[in, out]`, a tied LM head's gradient already summed into the embedding.
 */
async function hfGrad(model: Awaited<ReturnType<typeof loadModel>>, hf: string): Promise<Float32Array> {
  const km = checkpointKeyMap(model.config);
  for (const e of km.entries) {
    const re = new RegExp(
      `^(${km.base_model_prefix}\\.)?${e.hf.replace(/\./g, "\\.").replace("{i}", "(\\d+)")}$`,
    );
    const m = re.exec(hf) ?? re.exec(`${km.base_model_prefix}.${hf}`);
    if (!m) continue;
    const layer = e.per_layer ? m[m.length - 1] : "";
    const parts = await Promise.all(e.ours.map(async (n) => {
      const g = model.p(n.replace("{i}", layer)).grad;
      if (!g) throw new Error(`no gradient for ${n} (${hf})`);
      return await g.toArray() as Float32Array;
    }));
    const rows = Float32Array.from(parts.flatMap((x) => [...x]));
    if (!e.transpose) return rows;
    const [inF, outF] = e.hf_shape; // Conv1D [in, out]; ours stacked [out, in]
    const t = new Float32Array(rows.length);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) t[i * outF + o] = rows[o * inF + i];
    return t;
  }
  throw new Error(`the fixture's ${hf} matches no entry of the ${model.config.arch} key map`);
}

/**
 * Every `hidden_states.<i>` tensor of the fixture (HF `output_hidden_states`: 0 = embeddings,
 * i = after block i - 1, L = after the last block and the final norm) against ours with the
 * logits' tolerance, atol 1e-4, at every position: HF's eager attention lets a padding query see
 * the real keys before it, as ours does, so the padding rows agree too.
 */
async function checkHiddenStates(
  arch: string,
  be: Backend,
  states: Tensor[],
  tensors: Map<string, SafeTensor>,
) {
  const names = [...tensors.keys()].filter((n) => /^hidden_states\.\d+$/.test(n));
  assert.ok(names.length > 0, `${arch}: the fixture holds no hidden_states.* tensors`);
  assert.equal(states.length, names.length, `${arch} ${be.name}: number of hidden states`);
  for (const n of names) {
    const i = Number(n.slice("hidden_states.".length));
    const want = tensors.get(n)!;
    assert.deepEqual(states[i].shape, want.shape, `${arch} ${be.name} ${n} shape`);
    assertAllClose(await states[i].toArray(), want.data as Float32Array, {
      atol: 1e-4,
      rtol: 0,
      msg: `${arch} ${be.name} ${n}`,
    });
  }
  for (const t of states) t.dispose();
}

/** Every `grad.*` tensor of the fixture against ours (scaled tolerance, as the fixture README says). */
async function checkGrads(
  arch: string,
  be: Backend,
  model: Awaited<ReturnType<typeof loadModel>>,
  tensors: Map<string, SafeTensor>,
) {
  const names = [...tensors.keys()].filter((n) => n.startsWith("grad.")).sort();
  assert.ok(names.length > 0, `${arch}: the fixture holds no grad.* tensors`);
  const scale = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  for (const n of names) {
    const want = tensors.get(n)!.data as Float32Array;
    assertAllClose(await hfGrad(model, n.slice(5)), want, {
      atol: 1e-4 * scale(want),
      rtol: 0,
      msg: `${arch} ${be.name} ${n}`,
    });
  }
}
