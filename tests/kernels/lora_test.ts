/**
 * kernels/lora.ts: DoRA's row norm and LoRA dropout, WGSL vs the references, and their gradients.
 */
import { backward } from "../../kernels/autograd.ts";
import {
  doraNormForward,
  doraNormReference,
  doraScale,
  dropout,
  dropoutReference,
} from "../../kernels/lora.ts";
import * as elementwise from "../../kernels/elementwise.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { compareBackends, cpu } from "../_check.ts";

const SHAPES = [[1, 1, 1], [3, 5, 2], [70, 33, 4], [129, 64, 8]] as const;

Deno.test("doraNorm() matches the reference on awkward shapes, norm and inverse", async () => {
  for (const [N, K, R] of SHAPES) {
    const w = randomArray(N * K, 1), a = randomArray(R * K, 2), b = randomArray(N * R, 3);
    for (const inverse of [false, true]) {
      await compareBackends(`doraNorm ${N}x${K} r${R} inverse=${inverse}`, (be) => {
        const out = be.empty([N]);
        doraNormForward(out, be.fromArray(w, [N, K]), be.fromArray(a, [R, K]), be.fromArray(b, [N, R]), 1.5, {
          inverse,
        });
        return [out];
      }, { atol: 1e-5, rtol: 1e-5 });
    }
    // the reference against a direct f64 computation of ||W + s B A||
    const ref = new Float64Array(N);
    doraNormReference(ref, w, a, b, 1.5, { N, K, R });
    const o = N - 1;
    let acc = 0;
    for (let k = 0; k < K; k++) {
      let d = 0;
      for (let r = 0; r < R; r++) d += b[o * R + r] * a[r * K + k];
      acc += (w[o * K + k] + 1.5 * d) ** 2;
    }
    assert.ok(Math.abs(ref[o] - Math.sqrt(acc)) < 1e-12);
  }
});

Deno.test("doraScale() passes a gradient to the magnitude only (the norm is detached)", async () => {
  const be = await cpu();
  const N = 6, K = 5, R = 2;
  const w = be.fromArray(randomArray(N * K, 4), [N, K]);
  const a = be.fromArray(randomArray(R * K, 5), [R, K]), b = be.fromArray(randomArray(N * R, 6), [N, R]);
  a.requiresGrad = b.requiresGrad = true;
  const m = be.fromArray(randomArray(N, 7), [N]);
  m.requiresGrad = true;
  const s = doraScale(m, w, a, b, 2);
  const inv = new Float64Array(N);
  doraNormReference(inv, w.data as Float32Array, a.data as Float32Array, b.data as Float32Array, 2, {
    N,
    K,
    R,
    inverse: true,
  });
  assertAllClose(await s.toArray(), Array.from(inv, (v, i) => v * (m.data as Float32Array)[i]), {
    atol: 1e-6,
  });
  const g = be.fromArray(randomArray(N, 8), [N]);
  backward(s, g);
  assertAllClose(await m.grad!.toArray(), Array.from(inv, (v, i) => v * (g.data as Float32Array)[i]), {
    atol: 1e-6,
  });
  assert.equal(a.grad, null);
  assert.equal(b.grad, null);
});

Deno.test("dropout() masks identically on webgpu and cpu, scales by 1/(1-p), and backward reuses the mask", async () => {
  for (const n of [1, 255, 1000, 70_001]) {
    const x = randomArray(n, n);
    await compareBackends(`dropout n=${n}`, (be) => [dropout(be.fromArray(x, [n]), 0.3, 1234)], {
      atol: 0,
      rtol: 1e-6,
    });
  }
  const be = await cpu();
  const x = be.fromArray(randomArray(4000, 9), [4000]);
  x.requiresGrad = true;
  const y = dropout(x, 0.1, 42);
  const yv = await y.toArray();
  const kept = yv.filter((v) => v !== 0).length;
  assert.ok(Math.abs(kept - 3600) < 120, `kept ${kept} of 4000 at p = 0.1`);
  const g = be.full([4000], 1);
  backward(y, g);
  const gx = await x.grad!.toArray();
  const want = new Float32Array(4000);
  dropoutReference(want, new Float32Array(4000).fill(1), 0.1, 42);
  assert.deepEqual(gx, want);
  for (let i = 0; i < 4000; i++) assert.equal(gx[i] === 0, yv[i] === 0);
  assert.throws(() => dropout(x, 1, 0), RangeError);
  // the generic op lives in elementwise.ts (the model's dropout sites use it); lora.ts re-exports it
  assert.equal(dropout, elementwise.dropout);
  assert.equal(dropoutReference, elementwise.dropoutReference);
});
