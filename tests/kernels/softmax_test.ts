import {
  logSoftmax,
  softmax,
  softmaxBackwardReference,
  softmaxForward,
  type SoftmaxKind,
  softmaxReference,
} from "../../kernels/softmax.ts";
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { backends, compareBackends, cpu, dot, gradcheck, rand64, webgpu } from "../_check.ts";

const SHAPES = [[1, 1], [7, 3], [130, 33], [7, 64], [2, 5, 257], [7, 4096], [3, 256], [2, 1000], [2, 50257]];

function run(be: Backend, kind: SoftmaxKind, shape: number[], seed: number): Tensor[] {
  const n = shape.reduce((p, d) => p * d, 1);
  const x = be.fromArray(randomArray(n, seed, 8), shape);
  x.requiresGrad = true;
  const y = kind === "softmax" ? softmax(x) : logSoftmax(x);
  backward(y, be.fromArray(randomArray(n, seed + 1), shape));
  return [y, x.grad!];
}

Deno.test("softmax() and logSoftmax() match the reference forward and backward, short rows to vocab 50257", async () => {
  for (const kind of ["softmax", "log_softmax"] as const) {
    for (const shape of SHAPES) {
      const [f, b] = await compareBackends(`${kind} ${shape}`, (be) => run(be, kind, shape, shape[1] ?? 1), {
        atol: 2e-6,
        rtol: 1e-4,
      });
      if (f && shape[shape.length - 1] === 50257) {
        console.log(
          `  ${kind} [2, 50257]: max abs err y ${f.maxAbs.toExponential(2)}, dx ${b.maxAbs.toExponential(2)}`,
        );
      }
    }
  }
});

Deno.test("softmax() is stable for large logits (no overflow) on both backends", async () => {
  for (const be of await backends()) {
    const y = await softmax(be.fromArray([1000, 1000.5, -1000], [1, 3])).toArray();
    const e = Math.exp(0.5);
    assertAllClose(y, [1 / (1 + e), e / (1 + e), 0], { atol: 1e-6, rtol: 1e-6, msg: be.name });
    const l = await logSoftmax(be.fromArray(new Float32Array(40).fill(500), [1, 40])).toArray();
    assertAllClose(l, new Float32Array(40).fill(-Math.log(40)), { atol: 1e-5, rtol: 1e-6, msg: be.name });
  }
});

Deno.test("softmax references have the f64 finite-difference gradients", () => {
  for (const kind of ["softmax", "log_softmax"] as const) {
    for (const [rows, C] of [[1, 1], [2, 3], [3, 40]]) {
      const n = rows * C, w = rand64(n, 3);
      gradcheck(`${kind} ${rows}x${C}`, (xs) => {
        const y = new Float64Array(n);
        softmaxReference(kind, y, xs[0], C);
        return dot(w, y);
      }, (xs) => {
        const y = new Float64Array(n), dx = new Float64Array(n);
        softmaxReference(kind, y, xs[0], C);
        softmaxBackwardReference(kind, dx, w, y, C);
        return [dx];
      }, [rand64(n, 1, 3)]);
    }
  }
});

Deno.test("softmax() processes rows in windows when logits exceed one binding", async () => {
  const g = await webgpu();
  if (!g) return;
  const limits = g.device.info.limits, saved = limits.maxStorageBufferBindingSize;
  const shape = [37, 1000];
  const want = run(await cpu(), "softmax", shape, 4);
  limits.maxStorageBufferBindingSize = 16 * 1000 * 4; // 16 rows per window: 3 windows
  try {
    const before = g.device.stats.dispatches;
    const got = run(g, "softmax", shape, 4);
    assert.ok(g.device.stats.dispatches - before >= 6, "3 windows forward and backward");
    for (let i = 0; i < 2; i++) {
      assertAllClose(await got[i].toArray(), want[i].data, { atol: 2e-6, rtol: 1e-4 });
    }
  } finally {
    limits.maxStorageBufferBindingSize = saved;
  }
});

Deno.test("softmax() rejects bad shapes and dtypes before dispatch", async () => {
  for (const be of await backends()) {
    assert.throws(
      () => softmax(be.zeros([2, 3], "i32")),
      /Cannot run softmax.softmax_forward: out has dtype|x has dtype i32/,
    );
    assert.throws(
      () => softmaxForward("softmax", be.zeros([2, 4]), be.zeros([2, 3])),
      /out has shape \[2, 4\], expected \[2, 3\]/,
    );
    assert.throws(() => logSoftmax(be.zeros([3, 0])), /no last axis/);
  }
});
