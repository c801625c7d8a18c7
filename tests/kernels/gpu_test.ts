/** The device layer: adapter choice and errors, limits, pooling, batching, readback. */
import { createBackend, NoAdapterError } from "../../kernels/backend.ts";
import { add } from "../../kernels/elementwise.ts";
import { matmul } from "../../kernels/matmul.ts";
import { sizeClass } from "../../kernels/gpu.ts";
import { assert } from "../_assert.ts";
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
