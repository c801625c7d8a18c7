import {
  embedding,
  embeddingBackward,
  embeddingBackwardReference,
  embeddingReference,
} from "../../kernels/embedding.ts";
import { backward, noGrad } from "../../kernels/autograd.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { DType, Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, randomArray, rng } from "../_assert.ts";
import { backends, compareBackends, cpu, dot, gradcheck, rand64, webgpu } from "../_check.ts";

/** Random ids in [0, V) with many duplicates (a small vocabulary slice is hit repeatedly). */
function ids(n: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from(
    { length: n },
    (_, i) => (i % 3 === 0 ? Math.floor(r() * Math.min(V, 4)) : Math.floor(r() * V)),
  );
}

function run(
  be: Backend,
  idShape: number[],
  V: number,
  C: number,
  seed: number,
  dtype: DType = "i32",
): Tensor[] {
  const n = idShape.reduce((p, d) => p * d, 1);
  const w = be.fromArray(randomArray(V * C, seed), [V, C]);
  w.requiresGrad = true;
  const y = embedding(be.fromArray(ids(n, V, seed), idShape, dtype), w);
  backward(y, be.fromArray(randomArray(n * C, seed + 1), [...idShape, C]));
  return [y, w.grad!];
}

Deno.test("embedding() matches the reference forward and backward (duplicate ids sum)", async () => {
  const cases: [number[], number, number][] = [
    [[1], 1, 1],
    [[7], 5, 3],
    [[2, 65], 1000, 33],
    [[130], 50, 64],
    [[3, 4], 17, 257],
    [[5], 3, 4096],
  ];
  for (const [shape, V, C] of cases) {
    for (const dtype of ["i32", "u32"] as const) {
      await compareBackends(
        `embedding ${shape} V=${V} C=${C} ${dtype}`,
        (be) => run(be, shape, V, C, V + C, dtype),
        {
          atol: 1e-6,
          rtol: 1e-6,
        },
      );
    }
  }
});

Deno.test("embedding() backward adds every duplicate id, deterministically", async () => {
  const V = 4, C = 3, idv = [1, 1, 3, 1, 0, 3];
  const dy = Float32Array.from({ length: idv.length * C }, (_, i) => i + 1);
  const want = new Float64Array(V * C);
  idv.forEach((id, n) => {
    for (let c = 0; c < C; c++) want[id * C + c] += dy[n * C + c];
  });
  for (const be of await backends()) {
    const runOnce = async () => {
      const dw = be.empty([V, C]);
      embeddingBackward(dw, be.fromArray(dy, [idv.length, C]), be.fromArray(idv, [idv.length], "i32"));
      return await dw.toArray();
    };
    const a = await runOnce();
    assert.deepEqual([...a], [...want], be.name);
    // bitwise identical across runs with many duplicates
    const big = ids(2000, 8, 3), g = randomArray(2000 * 16, 4);
    const one = async () => {
      const dw = be.empty([8, 16]);
      embeddingBackward(dw, be.fromArray(g, [2000, 16]), be.fromArray(big, [2000], "i32"));
      return await dw.toArray();
    };
    assert.deepEqual(await one(), await one(), `${be.name}: deterministic`);
    // and each element sums its tokens in token order, in f32: bit for bit the reference's sums
    const ref = new Float32Array(8 * 16);
    embeddingBackwardReference(ref, g, big, 16);
    assert.deepEqual([...await one()], [...ref], `${be.name}: the reference's order`);
  }
});

Deno.test("embedding reference has the f64 finite-difference gradient", () => {
  const V = 6, C = 5, idv = [0, 5, 5, 2, 0, 5], wy = rand64(idv.length * C, 2);
  gradcheck("embedding", (xs) => {
    const y = new Float64Array(idv.length * C);
    embeddingReference(y, idv, xs[0], C);
    return dot(wy, y);
  }, () => {
    const dw = new Float64Array(V * C);
    embeddingBackwardReference(dw, wy, idv, C);
    return [dw];
  }, [rand64(V * C, 1)]);
});

/** The message both backends give for a bad id (compared exactly). */
function idError(id: number, pos: number, V: number): string {
  return `Cannot run embedding: token id ${id} at position ${pos} is outside the vocabulary [0, ${V}); use the model's tokenizer`;
}

/** `run()` throws the RangeError `msg` at once on cpu; on webgpu it returns and `read()` throws it. */
async function expectIdError(
  be: Backend,
  msg: string,
  run: () => Tensor,
  read: (t: Tensor) => Promise<unknown> = (t) => t.toArray(),
): Promise<void> {
  const want = { name: "RangeError", message: msg };
  if (be.name === "cpu") {
    assert.throws(run, want);
    return;
  }
  const t = run(); // no readback yet: nothing can throw
  await assert.rejects(() => read(t), want);
}

Deno.test("embedding() with an id outside the vocabulary is a RangeError on both backends (webgpu: at the next readback)", async () => {
  const V = 4, C = 3, w = randomArray(V * C, 1);
  for (const be of await backends()) {
    const weight = be.fromArray(w, [V, C]);
    const ids = (v: number[], dtype: DType = "i32") => be.fromArray(v, [v.length], dtype);
    await expectIdError(be, idError(4, 1, V), () => embedding(ids([0, 4]), weight));
    await expectIdError(be, idError(-1, 0, V), () => embedding(ids([-1, 2]), weight));
    await expectIdError(be, idError(2 ** 32 - 1, 0, V), () => embedding(ids([-1], "u32"), weight));
    // the position is the flat index into ids, whatever their shape
    const many = Array.from({ length: 20 }, (_, i) => i % V);
    many[17] = 600;
    await expectIdError(
      be,
      idError(600, 17, V),
      () => embedding(be.fromArray(many, [4, 5], "i32"), weight),
    );
    // the backward as an op: its own check (one invocation, in token order: the first bad id)
    await expectIdError(be, idError(4, 2, V), () => {
      const dw = be.empty([V, C]);
      embeddingBackward(dw, be.fromArray(randomArray(4 * C, 2), [4, C]), ids([1, 3, 4, 5]));
      return dw;
    });
    // nothing sticks: valid ids afterwards give exactly the weight rows, bit for bit
    const y = await embedding(ids([3, 0, 3]), weight).toArray();
    assert.deepEqual([...y], [...w.slice(9, 12), ...w.slice(0, 3), ...w.slice(9, 12)], be.name);
  }
});

Deno.test("Transformer.forward() with a token id >= vocab_size throws at the readback (webgpu) or at once (cpu)", async () => {
  const mc = presetConfig("tiny", {
    vocab_size: 32,
    hidden_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 16,
  });
  const good = [1, 2, 3, 4, 5, 6, 7, 8], bad = [...good];
  bad[6] = 32; // position [0, 6] of a (1, 8) batch: flat index 6
  const out: Float32Array[] = [];
  for (const be of await backends()) {
    const model = Transformer.init(mc, be, { seed: 7 });
    const forward = (v: number[]) => noGrad(() => model.forward(be.fromArray(v, [1, 8], "i32")));
    const before = await forward(good).toArray();
    await expectIdError(be, idError(32, 6, 32), () => forward(bad));
    const after = await forward(good).toArray();
    assert.deepEqual([...after], [...before], `${be.name}: valid ids unchanged bit for bit`);
    out.push(after as Float32Array);
  }
  if (out.length === 2) assertAllClose(out[1], out[0], { atol: 1e-4, rtol: 1e-4 });
});

Deno.test("embedding() handles a weight larger than one binding in row windows", async () => {
  const g = await webgpu();
  if (!g) return;
  const limits = g.device.info.limits, saved = limits.maxStorageBufferBindingSize;
  const shape = [50], V = 1000, C = 64;
  const want = run(await cpu(), shape, V, C, 9);
  limits.maxStorageBufferBindingSize = 16384; // 64 rows of the (1000, 64) table per window: 16 windows
  try {
    const before = g.device.stats.dispatches;
    const got = run(g, shape, V, C, 9);
    assert.ok(g.device.stats.dispatches - before >= 32, "16 windows forward and backward");
    for (let i = 0; i < 2; i++) {
      assertAllClose(await got[i].toArray(), want[i].data, { atol: 1e-6, rtol: 1e-6 });
    }
    // out-of-range ids are still reported when windowed (only the first window checks)
    const w = g.fromArray(randomArray(V * C, 2), [V, C]);
    await expectIdError(g, idError(1000, 1, V), () => embedding(g.fromArray([999, 1000], [2], "i32"), w));
    await expectIdError(g, idError(1000, 1, V), () => {
      const dw = g.empty([V, C]);
      embeddingBackward(dw, g.fromArray(randomArray(2 * C, 3), [2, C]), g.fromArray([999, 1000], [2], "i32"));
      return dw;
    });
    const y = await embedding(g.fromArray([999], [1], "i32"), w).toArray();
    assert.deepEqual([...y], [...randomArray(V * C, 2).slice(999 * C, 1000 * C)]);
  } finally {
    limits.maxStorageBufferBindingSize = saved;
  }
});

Deno.test("embedding() rejects bad shapes and dtypes before dispatch", async () => {
  for (const be of await backends()) {
    const w = be.zeros([4, 3]);
    assert.throws(
      () => embedding(be.zeros([2]), w),
      /Cannot run embedding.forward: ids has dtype f32, expected i32 or u32/,
    );
    assert.throws(
      () => embedding(be.zeros([2], "i32"), be.zeros([12])),
      /weight has shape \[12\], expected \(V, C\)/,
    );
    assert.throws(
      () => embeddingBackward(be.zeros([4, 3]), be.zeros([2, 4]), be.zeros([2], "i32")),
      /dy has shape \[2, 4\], expected \[2, 3\]/,
    );
  }
});
