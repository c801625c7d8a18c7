/**
 * kernels/lora.ts: the fused LoRA linear, DoRA's row norm and LoRA dropout, WGSL vs the
 * references, and their gradients.
 */
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { add, mul } from "../../kernels/elementwise.ts";
import { matmul } from "../../kernels/matmul.ts";
import { dequantize, quantize } from "../../kernels/quant.ts";
import { sum } from "../../kernels/reduce.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import {
  doraNormForward,
  doraNormReference,
  doraScale,
  dropout,
  dropoutReference,
  loraLinear,
  loraLinearReference,
} from "../../kernels/lora.ts";
import * as elementwise from "../../kernels/elementwise.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { compareBackends, cpu } from "../_check.ts";

const SHAPES = [[1, 1, 1], [3, 5, 2], [70, 33, 4], [129, 64, 8]] as const;

/** [M, K, N, R]: tiny, odd, and one past the thin-product threshold with r = 16. */
const LINEAR_SHAPES = [[1, 8, 3, 1], [7, 24, 5, 2], [33, 64, 40, 4], [520, 256, 24, 16]] as const;

/**
 * loraLinear and the composed ops it replaces (matmul, add) on one backend: y and the gradients
 * of x, bias, xa and B under a fixed random upstream gradient.
 */
function loraCase(be: Backend, [M, K, N, R]: readonly number[], fused: boolean, q4: boolean): Tensor[] {
  const x = be.fromArray(randomArray(M * K, 11), [M, K]);
  const w0 = be.fromArray(randomArray(N * K, 12), [N, K]);
  const weight = q4 ? quantize(w0, { blockSize: 8 }) : w0;
  const xa = be.fromArray(randomArray(M * R, 13), [M, R]),
    lora_B = be.fromArray(randomArray(N * R, 14), [N, R]);
  const bias = be.fromArray(randomArray(N, 15), [N]);
  for (const t of [x, xa, lora_B, bias]) t.requiresGrad = true;
  let y: Tensor;
  if (fused) y = loraLinear(x, weight, { xa, lora_B, scaling: 1.5, bias });
  else {
    const wf = q4 ? dequantize(weight as ReturnType<typeof quantize>) : w0;
    y = add(matmul(x, wf, { transB: true, bias }), matmul(xa, lora_B, { transB: true, alpha: 1.5 }));
  }
  const yv = y.reshape(y.shape);
  backward(sum(sum(mul(y, be.fromArray(randomArray(M * N, 16), [M, N])), 1), 0));
  return [yv, x.grad!, bias.grad!, xa.grad!, lora_B.grad!];
}

/**
 * loraLinear with `lora_A` (x·Aᵀ inside the op) against the composition: y and the gradients of
 * x (when it is on the graph), bias, A and B.
 */
function loraCaseA(be: Backend, [M, K, N, R]: readonly number[], fused: boolean, xGrad: boolean): Tensor[] {
  const x = be.fromArray(randomArray(M * K, 21), [M, K]);
  const w = be.fromArray(randomArray(N * K, 22), [N, K]);
  const A = be.fromArray(randomArray(R * K, 23), [R, K]),
    lora_B = be.fromArray(randomArray(N * R, 24), [N, R]);
  const bias = be.fromArray(randomArray(N, 25), [N]);
  for (const t of [A, lora_B, bias]) t.requiresGrad = true;
  x.requiresGrad = xGrad;
  const y = fused ? loraLinear(x, w, { lora_A: A, lora_B, scaling: 0.75, bias }) : add(
    matmul(x, w, { transB: true, bias }),
    matmul(matmul(x, A, { transB: true }), lora_B, { transB: true, alpha: 0.75 }),
  );
  const yv = y.reshape(y.shape);
  backward(sum(sum(mul(y, be.fromArray(randomArray(M * N, 26), [M, N])), 1), 0));
  return [yv, ...(xGrad ? [x.grad!] : []), bias.grad!, A.grad!, lora_B.grad!];
}

Deno.test("loraLinear() with lora_A computes x·Aᵀ itself and gives dA and dX as the composition, on both backends", async () => {
  for (const shape of LINEAR_SHAPES) {
    const [, K, N] = shape;
    for (const xGrad of [true, false]) {
      const tol = { atol: 2e-5 * Math.sqrt(K + N), rtol: 1e-4 };
      const c = await cpu();
      const [f, u] = [loraCaseA(c, shape, true, xGrad), loraCaseA(c, shape, false, xGrad)];
      for (let i = 0; i < f.length; i++) {
        assertAllClose(await f[i].toArray(), await u[i].toArray(), {
          ...tol,
          msg: `cpu ${shape} x grad ${xGrad} ${i}`,
        });
      }
      await compareBackends(
        `loraLinear lora_A ${shape} x grad ${xGrad}`,
        (be) => loraCaseA(be, shape, true, xGrad),
        tol,
      );
    }
  }
  const c = await cpu();
  const x = c.fromArray(randomArray(8, 2), [2, 4]), w = c.fromArray(randomArray(12, 1), [3, 4]);
  assert.throws(
    () => loraLinear(x, w, { lora_B: c.fromArray([1, 2, 3], [3, 1]), scaling: 1 }),
    /give exactly one of xa and lora_A/,
  );
});

Deno.test("loraLinear() equals base + s·xa·Bᵀ and its gradients, f32 and 4-bit base, on both backends", async () => {
  for (const shape of LINEAR_SHAPES) {
    const [M, K, N, R] = shape;
    // the reference against the plain formula
    const x = randomArray(M * K, 1), w = randomArray(N * K, 2), xa = randomArray(M * R, 3);
    const b = randomArray(N * R, 4), bias = randomArray(N, 5), out = new Float64Array(M * N);
    loraLinearReference(out, x, w, { xa, lora_B: b, scaling: 0.5, bias }, { M, N, K, R });
    const m = M - 1, n = N - 1;
    let want = bias[n];
    for (let k = 0; k < K; k++) want += x[m * K + k] * w[n * K + k];
    for (let r = 0; r < R; r++) want += 0.5 * xa[m * R + r] * b[n * R + r];
    assert.ok(Math.abs(out[m * N + n] - want) < 1e-9, `reference ${shape}`);
    for (const q4 of [false, true]) {
      if (q4 && K % 8) continue;
      const tol = { atol: 2e-5 * Math.sqrt(K + N), rtol: 1e-4 };
      // the fused op against the composition it replaces, on each backend
      const c = await cpu();
      const [f, u] = [loraCase(c, shape, true, q4), loraCase(c, shape, false, q4)];
      for (let i = 0; i < f.length; i++) {
        assertAllClose(await f[i].toArray(), await u[i].toArray(), {
          ...tol,
          msg: `cpu ${shape} q4=${q4} ${i}`,
        });
      }
      await compareBackends(`loraLinear ${shape} q4=${q4}`, (be) => loraCase(be, shape, true, q4), tol);
    }
  }
});

Deno.test("loraLinear() refuses a base weight that wants a gradient and mismatched shapes", async () => {
  const c = await cpu();
  const w = c.fromArray(randomArray(12, 1), [3, 4]);
  w.requiresGrad = true;
  const x = c.fromArray(randomArray(8, 2), [2, 4]), xa = c.fromArray([1, 2], [2, 1]);
  const lora_B = c.fromArray([1, 2, 3], [3, 1]);
  assert.throws(() => loraLinear(x, w, { xa, lora_B, scaling: 1 }), /base weight .* wants a gradient/);
  w.requiresGrad = false;
  assert.throws(
    () => loraLinear(x, w, { xa: c.fromArray([1, 2, 3, 4], [2, 2]), lora_B, scaling: 1 }),
    /Cannot run lora\.linear: xa/,
  );
});

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
