/** The tape: noGrad, accumulation across micro-batches, activations freed, checkpoint recompute. */
import { backward, checkpoint, isGradEnabled, noGrad, retain } from "../../kernels/autograd.ts";
import { add, mul } from "../../kernels/elementwise.ts";
import { matmul } from "../../kernels/matmul.ts";
import { sum } from "../../kernels/reduce.ts";
import { gelu } from "../../kernels/activation.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { backends } from "../_check.ts";

const total = (t: Tensor) => sum(sum(t, 1), 0);

function mlp(x: Tensor, w1: Tensor, w2: Tensor): Tensor {
  return matmul(gelu(matmul(x, w1, { transB: true }), { approximate: "tanh" }), w2, { transB: true });
}

function params(be: Backend) {
  const w1 = be.fromArray(randomArray(16 * 8, 1, 0.5), [16, 8]);
  const w2 = be.fromArray(randomArray(4 * 16, 2, 0.5), [4, 16]);
  w1.requiresGrad = w2.requiresGrad = true;
  return [w1, w2];
}

Deno.test("noGrad() records nothing and restores the previous state, even on throw", async () => {
  for (const be of await backends()) {
    const [w1] = params(be);
    const y = noGrad(() => add(w1, w1));
    assert.equal(y.node, null);
    assert.throws(() =>
      noGrad(() => {
        throw new Error("boom");
      })
    );
    assert.ok(isGradEnabled());
    assert.throws(() => backward(y), /not computed from a tensor that requires grad/);
  }
});

Deno.test("gradients accumulate across micro-batches: two halves equal the full batch", async () => {
  for (const be of await backends()) {
    const x = randomArray(6 * 8, 3);
    const [a1, a2] = params(be);
    backward(total(mlp(be.fromArray(x, [6, 8]), a1, a2)));
    const [b1, b2] = params(be);
    backward(total(mlp(be.fromArray(x.subarray(0, 24), [3, 8]), b1, b2)));
    backward(total(mlp(be.fromArray(x.subarray(24), [3, 8]), b1, b2)));
    assertAllClose(await b1.grad!.toArray(), await a1.grad!.toArray(), {
      atol: 1e-5,
      rtol: 1e-5,
      msg: `${be.name} w1`,
    });
    assertAllClose(await b2.grad!.toArray(), await a2.grad!.toArray(), {
      atol: 1e-5,
      rtol: 1e-5,
      msg: `${be.name} w2`,
    });
  }
});

Deno.test("backward() frees every activation of the graph, but not retained ones or the root", async () => {
  for (const be of await backends()) {
    const [w1, w2] = params(be);
    const x = be.fromArray(randomArray(5 * 8, 4), [5, 8]);
    const h = matmul(x, w1, { transB: true });
    const a = retain(gelu(h, { approximate: "tanh" }));
    const y = matmul(a, w2, { transB: true });
    const loss = total(y);
    backward(loss);
    assert.ok(h.disposed && y.disposed, "activations freed");
    assert.ok(
      !a.disposed && !loss.disposed && !x.disposed && !w1.disposed,
      "retained, root, inputs and leaves kept",
    );
    assert.ok(w1.grad && w2.grad && !x.grad);
  }
});

Deno.test("checkpoint() gives the same gradients as the plain graph and keeps no activations", async () => {
  for (const be of await backends()) {
    const x = randomArray(5 * 8, 5);
    const [a1, a2] = params(be);
    backward(total(mul(mlp(be.fromArray(x, [5, 8]), a1, a2), be.fromArray(randomArray(20, 6), [5, 4]))));
    const [b1, b2] = params(be);
    const xt = be.fromArray(x, [5, 8]);
    xt.requiresGrad = true;
    const y = checkpoint((xi) => mlp(xi, b1, b2), [xt]);
    assert.ok(y.node && y.node.saved.length === 0 && y.node.inputs.length === 1, "only the input is kept");
    backward(total(mul(y, be.fromArray(randomArray(20, 6), [5, 4]))));
    assertAllClose(await b1.grad!.toArray(), await a1.grad!.toArray(), {
      atol: 1e-5,
      rtol: 1e-5,
      msg: `${be.name} w1`,
    });
    assertAllClose(await b2.grad!.toArray(), await a2.grad!.toArray(), {
      atol: 1e-5,
      rtol: 1e-5,
      msg: `${be.name} w2`,
    });
    assert.ok(xt.grad, "the checkpoint's input gets its gradient too");
  }
});

Deno.test("reshape views pass gradients through", async () => {
  for (const be of await backends()) {
    const w = be.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    w.requiresGrad = true;
    const v = w.reshape([3, 2]);
    backward(total(mul(v, be.fromArray([1, 10, 100, 1000, 1e4, 1e5], [3, 2]))));
    assert.deepEqual([...await w.grad!.toArray()], [1, 10, 100, 1000, 1e4, 1e5]);
  }
});
