import { tokenLogProbs, tokenLogProbsReference } from "../../kernels/logprob.ts";
import { backward, retain } from "../../kernels/autograd.ts";
import { sum } from "../../kernels/reduce.ts";
import { mul } from "../../kernels/elementwise.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, randomArray, rng } from "../_assert.ts";
import { backends, compareBackends, cpu, dot, gradcheck, rand64, webgpu } from "../_check.ts";

/** Labels in [0, V) with every 3rd one ignored (-100). */
function labels(n: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, (_, i) => (i % 3 === 1 ? -100 : Math.floor(r() * V)));
}

/** logps, mean logits and dlogits after backward of sum(w * logps) on one backend. */
function run(be: Backend, N: number, V: number, seed: number): Tensor[] {
  const x = be.fromArray(randomArray(N * V, seed, 5), [N, V]);
  x.requiresGrad = true;
  const { logps, mean_logits } = tokenLogProbs(x, be.fromArray(labels(N, V, seed), [N], "i32"), {
    mean_logits: true,
  });
  const w = be.fromArray(randomArray(N, seed + 1), [N]);
  retain(logps); // an intermediate of the graph: kept through backward for the comparison
  backward(sum(mul(logps, w), 0, { keepdim: true }));
  return [logps, mean_logits!, x.grad!];
}

Deno.test("tokenLogProbs() matches the reference (log-probs, mean logits, dlogits) on both backends", async () => {
  const cases: [number, number][] = [[1, 1], [1, 7], [5, 3], [130, 33], [7, 64], [7, 257], [3, 1000], [
    2,
    50257,
  ]];
  for (const [N, V] of cases) {
    await compareBackends(`token_log_probs ${N}x${V}`, (be) => run(be, N, V, N * 31 + V), {
      atol: 2e-6,
      rtol: 1e-5,
    });
  }
});

Deno.test("tokenLogProbs() equals log_softmax at the label, 0 where ignored, and the row mean logit", async () => {
  const N = 4, V = 5, x = randomArray(N * V, 9, 3), lab = Int32Array.from([2, -100, 0, 4]);
  for (const be of await backends()) {
    const { logps, mean_logits } = tokenLogProbs(be.fromArray(x, [N, V]), be.fromArray(lab, [N], "i32"), {
      mean_logits: true,
    });
    const got = await logps.toArray(), mean = await mean_logits!.toArray();
    for (let n = 0; n < N; n++) {
      const row = [...x.slice(n * V, (n + 1) * V)];
      const m = Math.max(...row), lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      const want = lab[n] === -100 ? 0 : row[lab[n]] - lse;
      const wantMean = lab[n] === -100 ? 0 : row.reduce((a, b) => a + b, 0) / V;
      assertAllClose([got[n], mean[n]], [want, wantMean], {
        atol: 1e-6,
        rtol: 1e-6,
        msg: `${be.name} row ${n}`,
      });
    }
  }
});

Deno.test("tokenLogProbsReference() gradient matches finite differences in f64", () => {
  for (const [N, V] of [[1, 1], [3, 4], [6, 9]]) {
    const lab = labels(N, V, N + V), w = rand64(N, 3);
    const f = (xs: Float64Array[]) => {
      const out = new Float64Array(N);
      tokenLogProbsReference(out, null, null, xs[0], lab, V);
      return dot(w, out);
    };
    gradcheck(`token_log_probs ${N}x${V}`, f, (xs) => {
      const out = new Float64Array(N), d = new Float64Array(N * V);
      tokenLogProbsReference(out, null, d, xs[0], lab, V);
      for (let i = 0; i < d.length; i++) d[i] *= w[Math.floor(i / V)];
      return [d];
    }, [rand64(N * V, 5, 3)]);
  }
});

Deno.test("tokenLogProbs() processes logits larger than one binding in row windows", async () => {
  const g = await webgpu();
  if (!g) return;
  const limits = g.device.info.limits, saved = limits.maxStorageBufferBindingSize;
  const N = 37, V = 1000;
  const want = run(await cpu(), N, V, 8);
  limits.maxStorageBufferBindingSize = 16 * V * 4; // 16 rows per window: 3 windows
  try {
    const before = g.device.stats.dispatches;
    const got = run(g, N, V, 8);
    assert.ok(g.device.stats.dispatches - before >= 6, "3 row windows forward, 3 backward");
    for (let i = 0; i < 3; i++) {
      assertAllClose(await got[i].toArray(), want[i].data, { atol: 2e-6, rtol: 1e-5 });
    }
  } finally {
    limits.maxStorageBufferBindingSize = saved;
  }
});

Deno.test("tokenLogProbs() rejects a label outside the vocabulary with one message on both backends", async () => {
  const message =
    "Cannot run token_log_probs: label 7 at position 1 is outside the vocabulary [0, 4) and is not " +
    "ignore_index -100; use the model's tokenizer, or -100 for positions without a target";
  const c = await cpu();
  assert.throws(() => tokenLogProbs(c.zeros([2, 4]), c.fromArray([0, 7], [2], "i32")), {
    name: "RangeError",
    message,
  });
  const g = await webgpu();
  if (g) {
    const { logps } = tokenLogProbs(g.zeros([2, 4]), g.fromArray([0, 7], [2], "i32"));
    await assert.rejects(() => logps.toArray(), { name: "RangeError", message });
  }
  for (const be of await backends()) {
    assert.throws(() => tokenLogProbs(be.zeros([3, 5]), be.zeros([3])), /labels has dtype f32, expected i32/);
    assert.throws(() => tokenLogProbs(be.zeros([3, 5]), be.zeros([4], "i32")), /labels has shape \[4\]/);
    assert.throws(
      () => tokenLogProbs(be.zeros([3, 5]), be.zeros([3], "i32"), { ignore_index: 0.5 }),
      RangeError,
    );
  }
});
