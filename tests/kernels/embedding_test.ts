import {
  embedding,
  embeddingBackward,
  embeddingBackwardReference,
  embeddingReference,
} from "../../kernels/embedding.ts";
import { backward } from "../../kernels/autograd.ts";
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

Deno.test("embedding() rejects out-of-range ids on cpu and gives zero rows on webgpu", async () => {
  const c = await cpu();
  const w = randomArray(4 * 3, 1);
  assert.throws(
    () => embedding(c.fromArray([0, 4], [2], "i32"), c.fromArray(w, [4, 3])),
    /Cannot run embedding: id 4 at position 1 is out of range \[0, 4\)/,
  );
  assert.throws(
    () => embedding(c.fromArray([-1], [1], "i32"), c.fromArray(w, [4, 3])),
    /id -1 at position 0/,
  );
  const g = await webgpu();
  if (!g) return;
  const y = await embedding(g.fromArray([3, 4, -1, 0], [4], "i32"), g.fromArray(w, [4, 3])).toArray();
  assertAllClose(y, [...w.slice(9, 12), 0, 0, 0, 0, 0, 0, ...w.slice(0, 3)], { atol: 0, rtol: 0 });
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
    // out-of-range ids still give zeros when windowed
    const y = await embedding(
      g.fromArray([1000, 999], [2], "i32"),
      g.fromArray(randomArray(V * C, 2), [V, C]),
    )
      .toArray();
    assert.deepEqual([...y.slice(0, C)], new Array(C).fill(0));
    assert.equal(y[C], randomArray(V * C, 2)[999 * C]);
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
