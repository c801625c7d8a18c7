import {
  crossEntropy,
  crossEntropyForward,
  type CrossEntropyOptions,
  crossEntropyReference,
  shiftLabels,
} from "../../kernels/loss.ts";
import { backward } from "../../kernels/autograd.ts";
import { embedding } from "../../kernels/embedding.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, assertClose, randomArray, rng } from "../_assert.ts";
import { backends, compareBackends, cpu, gradcheck, rand64, webgpu } from "../_check.ts";

/** Labels in [0, V) with every 4th one ignored (-100). */
function labels(n: number, V: number, seed: number, ignoreEvery = 4): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, (_, i) => (i % ignoreEvery === 1 ? -100 : Math.floor(r() * V)));
}

/** loss and dlogits (after backward with an upstream gradient of 1.5) on one backend. */
function run(
  be: Backend,
  N: number,
  V: number,
  seed: number,
  opts: CrossEntropyOptions = {},
  lab?: Int32Array,
): Tensor[] {
  const x = be.fromArray(randomArray(N * V, seed, 6), [N, V]);
  x.requiresGrad = true;
  const loss = crossEntropy(x, be.fromArray(lab ?? labels(N, V, seed), [N], "i32"), opts);
  backward(loss, be.fromArray([1.5], [1]));
  return [loss, x.grad!];
}

Deno.test("crossEntropy() matches the reference loss and dlogits on both backends, vocab up to 50257", async () => {
  const cases: [number, number][] = [[1, 1], [7, 3], [130, 33], [7, 64], [7, 257], [3, 256], [5, 1000], [
    2,
    4096,
  ], [
    3,
    50257,
  ]];
  for (const [N, V] of cases) {
    for (const opts of [{}, { reduction: "sum" as const }, { label_smoothing: 0.1 }]) {
      const [l, d] = await compareBackends(
        `cross_entropy ${N}x${V} ${JSON.stringify(opts)}`,
        (be) => run(be, N, V, N + V, opts),
        {
          atol: 1e-6,
          rtol: 1e-5,
        },
      );
      if (l && V === 50257 && !opts.reduction && !opts.label_smoothing) {
        console.log(
          `  [3, 50257]: loss abs err ${l.maxAbs.toExponential(2)}, dlogits max abs err ${
            d.maxAbs.toExponential(2)
          }`,
        );
      }
    }
  }
});

Deno.test("crossEntropy() equals -mean log_softmax at the label over non-ignored rows (torch semantics)", async () => {
  const N = 6, V = 5, x = randomArray(N * V, 3, 4), lab = Int32Array.from([2, -100, 0, 4, -100, 1]);
  let want = 0, k = 0;
  for (let n = 0; n < N; n++) {
    if (lab[n] === -100) continue;
    const row = [...x.slice(n * V, (n + 1) * V)];
    const m = Math.max(...row), lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    want += lse - row[lab[n]];
    k++;
  }
  for (const be of await backends()) {
    const loss = await crossEntropy(be.fromArray(x, [N, V]), be.fromArray(lab, [N], "i32")).toArray();
    assertClose(loss[0], want / k, { atol: 1e-6, rtol: 1e-6, msg: be.name });
    const sum = await crossEntropy(be.fromArray(x, [2, 3, V]), be.fromArray(lab, [2, 3], "i32"), {
      reduction: "sum",
    })
      .toArray();
    assertClose(sum[0], want, { atol: 1e-5, rtol: 1e-6, msg: `${be.name} sum over (B, T, V)` });
  }
});

Deno.test("crossEntropy() gives 0 loss and 0 gradients when every label is ignored", async () => {
  for (const be of await backends()) {
    const [loss, d] = run(be, 4, 10, 1, {}, Int32Array.from([-100, -100, -100, -100]));
    assert.deepEqual([...await loss.toArray()], [0]);
    assert.ok((await d.toArray()).every((v) => v === 0), `${be.name}: zero gradient`);
    const [l7] = run(be, 4, 10, 1, { ignore_index: 7 }, Int32Array.from([7, 7, 7, 7]));
    assert.deepEqual([...await l7.toArray()], [0], `${be.name}: custom ignore_index`);
  }
});

/** The message both backends give for a bad label (compared exactly). */
function labelError(y: number, pos: number, V: number, ignore = -100): string {
  return `Cannot run cross_entropy: label ${y} at position ${pos} is outside the vocabulary [0, ${V}) ` +
    `and is not ignore_index ${ignore}; use the model's tokenizer, or ${ignore} for positions without a target`;
}

/** `run()` throws the RangeError `msg` at once on cpu; on webgpu reading the loss it returns throws it. */
async function expectLabelError(be: Backend, msg: string, run: () => Tensor): Promise<void> {
  const want = { name: "RangeError", message: msg };
  if (be.name === "cpu") {
    assert.throws(run, want);
    return;
  }
  const loss = run(); // no readback yet: nothing can throw
  await assert.rejects(() => loss.toArray(), want);
}

Deno.test("crossEntropy() with a label outside the vocabulary is a RangeError on both backends; -100 is still ignored", async () => {
  const N = 9, V = 5, x = randomArray(N * V, 3, 4);
  const ok = Int32Array.from([2, -100, 0, 4, -100, 1, 3, 3, -100]);
  for (const be of await backends()) {
    const logits = be.fromArray(x, [N, V]);
    const ce = (lab: number[], opts: CrossEntropyOptions = {}) =>
      crossEntropy(logits, be.fromArray(lab, [N], "i32"), opts);
    const before = await ce([...ok]).toArray();
    const withBad = (pos: number, y: number) => ok.map((v, i) => (i === pos ? y : v));
    await expectLabelError(be, labelError(5, 3, V), () => ce([...withBad(3, 5)]));
    await expectLabelError(be, labelError(-1, 0, V), () => ce([...withBad(0, -1)]));
    // several bad labels: the first one is named, on both backends (the count kernel takes the min)
    const many = [...ok];
    many[7] = 9;
    many[2] = 600;
    many[8] = -7;
    await expectLabelError(be, labelError(600, 2, V), () => ce(many));
    // a custom ignore_index: -100 is then an ordinary (bad) label
    await expectLabelError(be, labelError(-100, 1, V, 7), () => ce([...ok], { ignore_index: 7 }));
    // through the autograd path: forward + backward, the error comes with the loss read
    await expectLabelError(be, labelError(5, 3, V), () => run(be, N, V, 3, {}, withBad(3, 5))[0]);
    // nothing sticks: the valid loss is unchanged bit for bit
    assert.deepEqual([...await ce([...ok]).toArray()], [...before], be.name);
  }
});

Deno.test("the first failing op of a batch is the one named: an embedding id before a loss label", async () => {
  const g = await webgpu();
  if (!g) return;
  const h = embedding(g.fromArray([0, 9], [2], "i32"), g.fromArray(randomArray(12, 1), [4, 3]));
  const loss = crossEntropy(h, g.fromArray([0, 3], [2], "i32"));
  await assert.rejects(() => loss.toArray(), /Cannot run embedding: token id 9 at position 1/);
  h.dispose();
});

Deno.test("Transformer.loss() with a label >= vocab_size throws at the loss read (webgpu) or at once (cpu)", async () => {
  const mc = presetConfig("tiny", {
    vocab_size: 32,
    hidden_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 16,
  });
  const ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const good = [-100, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const bad = [...good];
  bad[9] = 40; // label of (1, 3): paired with the logits at (1, 2) after shifting, flat position 8
  const losses: number[] = [];
  for (const be of await backends()) {
    const model = Transformer.init(mc, be, { seed: 3 });
    model.setTrainable(true);
    const step = (lab: number[]) => {
      const loss = model.loss(be.fromArray(ids, [2, 6], "i32"), be.fromArray(lab, [2, 6], "i32"));
      backward(loss);
      return loss;
    };
    const before = await step(good).toArray();
    await expectLabelError(be, labelError(40, 8, 32), () => step(bad));
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
    const after = await step(good).toArray();
    assert.deepEqual([...after], [...before], `${be.name}: valid labels unchanged bit for bit`);
    losses.push(after[0]);
  }
  if (losses.length === 2) assertClose(losses[1], losses[0], { atol: 1e-5, rtol: 1e-5 });
});

Deno.test("crossEntropy() keeps the loss on the device: no readback in forward and backward", async () => {
  const g = await webgpu();
  if (!g) return;
  const before = g.device.stats.readbacks;
  const [loss, d] = run(g, 7, 300, 2);
  assert.equal(g.device.stats.readbacks, before, "no readback before the caller reads");
  await loss.toArray();
  await d.toArray();
});

Deno.test("cross-entropy reference gradient matches f64 finite differences (mean, sum, smoothing, ignored rows)", () => {
  for (const opts of [{}, { reduction: "sum" as const }, { label_smoothing: 0.2 }]) {
    for (const [N, V] of [[1, 1], [3, 4], [5, 17]]) {
      const lab = labels(N, V, N * V, 3);
      const f = (xs: Float64Array[]) => {
        const l = new Float64Array(1);
        crossEntropyReference(l, null, xs[0], lab, V, opts);
        return l[0];
      };
      gradcheck(`cross_entropy ${N}x${V} ${JSON.stringify(opts)}`, f, (xs) => {
        const l = new Float64Array(1), d = new Float64Array(N * V);
        crossEntropyReference(l, d, xs[0], lab, V, opts);
        return [d];
      }, [rand64(N * V, 5, 3)]);
    }
  }
});

Deno.test("crossEntropy() processes logits larger than one binding in row windows", async () => {
  const g = await webgpu();
  if (!g) return;
  const limits = g.device.info.limits, saved = limits.maxStorageBufferBindingSize;
  const N = 37, V = 1000;
  const want = run(await cpu(), N, V, 8);
  limits.maxStorageBufferBindingSize = 16 * V * 4; // 16 rows per window: 3 windows
  try {
    const before = g.device.stats.dispatches;
    const got = run(g, N, V, 8);
    assert.ok(g.device.stats.dispatches - before >= 5 + 3, "count, 3 row windows, total, 3 backward windows");
    for (let i = 0; i < 2; i++) {
      assertAllClose(await got[i].toArray(), want[i].data, { atol: 1e-6, rtol: 1e-5 });
    }
  } finally {
    limits.maxStorageBufferBindingSize = saved;
  }
});

Deno.test("shiftLabels() pairs position t with the label of t + 1 and ignores the last (cpu and webgpu)", async () => {
  for (const be of await backends()) {
    const s = await shiftLabels(be.fromArray([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], "i32")).toArray();
    assert.deepEqual([...s], [2, 3, 4, -100, 6, 7, 8, -100], be.name);
    const t = await shiftLabels(be.fromArray([9], [1, 1], "i32"), { ignore_index: -1 }).toArray();
    assert.deepEqual([...t], [-1], be.name);
  }
});

Deno.test("crossEntropy() rejects bad shapes, dtypes, labels and options before dispatch", async () => {
  const c = await cpu();
  assert.throws(
    () => crossEntropy(c.fromArray([0, 0, 0, 0], [2, 2]), c.fromArray([0, 2], [2], "i32")),
    { name: "RangeError", message: labelError(2, 1, 2) },
  );
  for (const be of await backends()) {
    const before = be.gpu?.stats.dispatches ?? 0;
    const x = be.zeros([3, 5]);
    assert.throws(() => crossEntropy(x, be.zeros([3])), /labels has dtype f32, expected i32/);
    assert.throws(
      () => crossEntropy(x, be.zeros([4], "i32")),
      /labels has shape \[4\], expected \[3\] for logits \[3, 5\]/,
    );
    assert.throws(() => crossEntropy(be.zeros([3, 5], "i32"), be.zeros([3], "i32")), /logits has dtype i32/);
    assert.throws(() => crossEntropy(x, be.zeros([3], "i32"), { label_smoothing: 1 }), RangeError);
    assert.throws(() => crossEntropy(x, be.zeros([3], "i32"), { reduction: "avg" as "mean" }), RangeError);
    assert.throws(
      () => crossEntropyForward(be.zeros([2]), null, x, be.zeros([3], "i32")),
      /loss has shape \[2\], expected \[1\]/,
    );
    assert.throws(() => shiftLabels(be.zeros([2, 3])), /labels has dtype f32, expected i32/);
    assert.equal(be.gpu?.stats.dispatches ?? 0, before, "nothing dispatched");
  }
});
