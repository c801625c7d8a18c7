/** The device layer: adapter choice and errors, limits, pooling, batching, readback. */
import { createBackend, NoAdapterError } from "../../kernels/backend.ts";
import { backward } from "../../kernels/autograd.ts";
import { add } from "../../kernels/elementwise.ts";
import { embedding } from "../../kernels/embedding.ts";
import { crossEntropy } from "../../kernels/loss.ts";
import { matmul } from "../../kernels/matmul.ts";
import { sizeClass } from "../../kernels/gpu.ts";
import { assert, randomArray } from "../_assert.ts";
import { webgpu } from "../_check.ts";

Deno.test("createBackend('webgpu') names the fix when no adapter matches; 'auto' falls back to cpu", async () => {
  await assert.rejects(
    () => createBackend("webgpu", { adapter: "no-such-gpu-xyz" }),
    (e: unknown) => {
      assert.ok(e instanceof NoAdapterError);
      assert.match((e as Error).message, /FLEDGE_ADAPTER=no-such-gpu-xyz/);
      assert.equal((e as Error).message.split("\n").length, 1);
      return true;
    },
  );
  const be = await createBackend("auto", { adapter: "no-such-gpu-xyz" });
  assert.equal(be.name, "cpu");
  const t = be.fromArray([1, 2], [2]);
  assert.deepEqual([...await add(t, t).toArray()], [2, 4]);
  await assert.rejects(() => createBackend("metal" as "cpu"), RangeError);
});

Deno.test("sizeClass() rounds up by at most 25% and to multiples of 4", () => {
  for (const n of [1, 3, 4, 17, 255, 256, 257, 1000, 4097, 1 << 20, (1 << 20) + 1, 123456789]) {
    const c = sizeClass(n);
    assert.ok(c >= n && c % 4 === 0, `${n} -> ${c}`);
    assert.ok(n < 64 || c <= n * 1.25 + 16, `${n} -> ${c}`);
  }
});

Deno.test("a buffer over the device limit is refused before anything is dispatched", async () => {
  const be = await webgpu();
  if (!be) return;
  const gpu = be.device;
  const before = gpu.stats.dispatches;
  assert.throws(() => be.empty([gpu.info.limits.maxBufferSize / 4 + 1]), /over the device's maxBufferSize/);
  // one binding over maxStorageBufferBindingSize: a clear error naming the op and the binding
  const big = gpu.info.limits.maxStorageBufferBindingSize / 4 + 64;
  const x = be.empty([big]);
  assert.throws(() => add(x, x), /elementwise\.add.*maxStorageBufferBindingSize/s);
  x.dispose();
  assert.equal(gpu.stats.dispatches, before);
});

Deno.test("a whole chain of ops is one submit; released buffers are reused, uploads stay correct", async () => {
  const be = await webgpu();
  if (!be) return;
  const gpu = be.device;
  await be.sync();
  const submits = gpu.stats.submits;
  let x = be.fromArray(Float32Array.from({ length: 1000 }, (_, i) => i), [1000]);
  const backs = [];
  for (let i = 0; i < 20; i++) {
    const y = add(x, x);
    x.dispose(); // freed inside the open batch: reusable for the next output, not for uploads
    x = y;
    const fresh = be.fromArray(new Float32Array(1000).fill(i), [1000]); // an upload mid-batch
    const z = add(x, fresh);
    backs.push(add(z, fresh)); // x_i + 2i: wrong if an upload overwrote a buffer still in use
    z.dispose();
    fresh.dispose();
  }
  assert.equal(gpu.stats.submits, submits, "nothing submitted before the readback");
  const out = await x.toArray();
  assert.equal(gpu.stats.submits, submits + 1);
  for (let i = 0; i < 1000; i += 97) assert.equal(out[i], i * 2 ** 20);
  for (let k = 0; k < 20; k++) {
    const b = await backs[k].toArray();
    for (let i = 0; i < 1000; i += 97) {
      assert.equal(b[i], Math.fround(Math.fround(i * 2 ** (k + 1) + k) + k), `step ${k} element ${i}`);
    }
    backs[k].dispose();
  }
  // steady state: a repeated step creates no new buffers
  const step = () => {
    const a = be.fromArray(new Float32Array(64 * 64).fill(1), [64, 64]);
    const b = matmul(a, a, { transB: true });
    a.dispose();
    return b;
  };
  step().dispose();
  await be.sync();
  const created = gpu.stats.buffersCreated;
  for (let i = 0; i < 5; i++) {
    step().dispose();
    await be.sync();
  }
  assert.equal(gpu.stats.buffersCreated, created);
});

Deno.test("a disposed tensor cannot be used, and views keep the storage alive", async () => {
  for (const be of [await createBackend("cpu"), await webgpu()]) {
    if (!be) continue;
    const t = be.fromArray([1, 2, 3, 4], [2, 2]);
    const v = t.reshape([4]);
    t.dispose();
    assert.deepEqual([...await v.toArray()], [1, 2, 3, 4]);
    v.dispose();
    assert.throws(() => v.reshape([2, 2]), /disposed/);
    assert.throws(() => be.fromArray([1, 2, 3], [2, 2]), /got 3 values, need 4/);
  }
});

Deno.test("device checks add no submit and no readback: a training step is one submit and one readback, good ids or bad", async () => {
  const be = await webgpu();
  if (!be) return;
  const gpu = be.device;
  const V = 50, C = 8, N = 12;
  const w = be.fromArray(randomArray(V * C, 1), [V, C]);
  w.requiresGrad = true;
  const good = Array.from({ length: N }, (_, i) => (i * 7) % V);
  const step = (ids: number[], labels: number[]) => {
    const h = embedding(be.fromArray(ids, [N], "i32"), w); // (N, C)
    const logits = matmul(h, w, { transB: true }); // (N, V), tied weights
    const loss = crossEntropy(logits, be.fromArray(labels, [N], "i32"));
    backward(loss);
    return loss;
  };
  await be.sync();
  const cases: [string, number[], number[], RegExp | null][] = [
    ["valid", good, good, null],
    ["bad id", good.map((v, i) => (i === 5 ? V : v)), good, /token id 50 at position 5/],
    ["bad label", good, good.map((v, i) => (i === 3 ? -2 : v)), /label -2 at position 3/],
    ["valid again", good, good, null],
  ];
  for (const [what, ids, labels, error] of cases) {
    const s0 = gpu.stats.submits, r0 = gpu.stats.readbacks;
    const loss = step(ids, labels);
    assert.equal(gpu.stats.submits, s0, `${what}: nothing submitted before the readback`);
    if (error) await assert.rejects(() => loss.toArray(), { name: "RangeError", message: error }, what);
    else await loss.toArray();
    assert.equal(gpu.stats.submits - s0, 1, `${what}: one submit`);
    assert.equal(gpu.stats.readbacks - r0, 1, `${what}: one readback`);
    if (error) {
      await assert.rejects(() => step(ids, labels).toArray(), error, `${what}: every bad step throws`);
    }
  }
  w.grad?.dispose();
});

Deno.test("a device check fails once: at the first read or sync() after it, never again", async () => {
  const be = await webgpu();
  if (!be) return;
  const w = be.fromArray([1, 2, 3, 4, 5, 6], [3, 2]);
  const ids = (v: number[]) => be.fromArray(v, [v.length], "i32");
  const y = embedding(ids([2, 3]), w);
  await assert.rejects(
    () => be.sync(),
    /Cannot run embedding: token id 3 at position 1 is outside the vocabulary \[0, 3\)/,
  );
  await be.sync(); // the record was cleared by the sync that threw
  assert.deepEqual([...await y.toArray()], [5, 6, 0, 0], "bad ids give zero rows (a defined result)");
  // two reads in flight: the first one recorded carries the record, the other reads clean
  const a = embedding(ids([-5]), w), b = embedding(ids([0]), w);
  const settled = await Promise.allSettled([a.toArray(), b.toArray()]);
  assert.deepEqual(settled.map((s) => s.status), ["rejected", "fulfilled"]);
  assert.deepEqual([...await b.toArray()], [1, 2]);
});

Deno.test("a kernel with more storage buffers than the device allows is refused before dispatch", async () => {
  const be = await webgpu();
  if (!be) return;
  const gpu = be.device;
  const limits = gpu.info.limits, saved = limits.maxStorageBuffersPerShaderStage;
  const w = be.fromArray([1, 2, 3, 4], [2, 2]), ids = be.fromArray([1], [1], "i32");
  limits.maxStorageBuffersPerShaderStage = 3; // embedding.forward binds out, ids, weight and the fault record
  try {
    const before = gpu.stats.dispatches;
    assert.throws(
      () => embedding(ids, w),
      /Cannot dispatch embedding\.forward: 4 storage buffers exceed the device's maxStorageBuffersPerShaderStage 3/,
    );
    assert.equal(gpu.stats.dispatches, before);
  } finally {
    limits.maxStorageBuffersPerShaderStage = saved;
  }
  assert.ok(saved >= 4, `the device allows ${saved} storage buffers per stage`);
  assert.deepEqual([...await embedding(ids, w).toArray()], [3, 4]);
});
