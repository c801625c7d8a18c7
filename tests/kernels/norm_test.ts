import {
  layerNorm,
  layerNormReference,
  normBackward,
  normBackwardReference,
  rmsNorm,
  rmsNormReference,
  setNormRowLayout,
} from "../../kernels/norm.ts";
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { backends, compareBackends, cpu, dot, gradcheck, rand64 } from "../_check.ts";

const SHAPES = [[1, 1], [7, 3], [130, 1], [130, 33], [7, 64], [2, 3, 64], [130, 257], [1, 4096], [7, 4096]];

/** y and the gradients of sum(w * y) w.r.t. x, weight (and bias), on one backend. */
function run(
  be: Backend,
  kind: "layer" | "layer_nobias" | "rms" | "gemma",
  shape: number[],
  seed: number,
): Tensor[] {
  const C = shape[shape.length - 1], n = shape.reduce((p, d) => p * d, 1);
  const x = be.fromArray(randomArray(n, seed, 2).map((v, i) => v + (i % 5) * 0.3), shape);
  const w = be.fromArray(randomArray(C, seed + 1).map((v) => v + 1), [C]);
  const b = kind === "layer" ? be.fromArray(randomArray(C, seed + 2), [C]) : null;
  for (const t of [x, w, b]) if (t) t.requiresGrad = true;
  const y = kind === "rms"
    ? rmsNorm(x, w, { eps: 1e-6 })
    : kind === "gemma"
    ? rmsNorm(x, w, { eps: 1e-6, offset: 1 })
    : layerNorm(x, w, b, { eps: 1e-5 });
  backward(y, be.fromArray(randomArray(n, seed + 3), shape));
  return [y, x.grad!, w.grad!, ...(b ? [b.grad!] : [])];
}

for (const layout of ["workgroup", "invocation"] as const) {
  Deno.test(`layerNorm() and rmsNorm() match the reference forward and backward on awkward shapes (a row per ${layout})`, async () => {
    const prev = setNormRowLayout(layout);
    try {
      await awkwardShapes();
    } finally {
      setNormRowLayout(prev);
    }
  });
}

async function awkwardShapes() {
  const worst = { fwd: 0, dx: 0, dw: 0 };
  for (const kind of ["layer", "layer_nobias", "rms", "gemma"] as const) {
    for (const shape of SHAPES) {
      const cmp = await compareBackends(
        `${kind} ${shape}`,
        (be) => run(be, kind, shape, shape[0] * 31 + shape[1]),
        {
          atol: 2e-5,
          rtol: 1e-4,
        },
      );
      if (cmp.length) {
        worst.fwd = Math.max(worst.fwd, cmp[0].maxAbs);
        worst.dx = Math.max(worst.dx, cmp[1].maxAbs);
        worst.dw = Math.max(worst.dw, cmp[2].maxAbs);
      }
    }
  }
  console.log(
    `  webgpu vs cpu max abs err: y ${worst.fwd.toExponential(2)}, dx ${worst.dx.toExponential(2)}, dw ${
      worst.dw.toExponential(2)
    }`,
  );
}

Deno.test("rmsNorm() computes x * rsqrt(mean(x^2) + eps) * w as LlamaRMSNorm, and (1 + w) with offset 1", async () => {
  const x = [1, -2, 3, 0.5], w = [0.5, 1, 2, -1], eps = 1e-6;
  const r = 1 / Math.sqrt((1 + 4 + 9 + 0.25) / 4 + eps);
  for (const be of await backends()) {
    const y = await rmsNorm(be.fromArray(x, [1, 4]), be.fromArray(w, [4]), { eps }).toArray();
    assertAllClose(y, x.map((v, i) => v * r * w[i]), { atol: 1e-6, rtol: 1e-6, msg: be.name });
    const g = await rmsNorm(be.fromArray(x, [1, 4]), be.fromArray(w, [4]), { eps, offset: 1 }).toArray();
    assertAllClose(g, x.map((v, i) => v * r * (1 + w[i])), {
      atol: 1e-6,
      rtol: 1e-6,
      msg: `${be.name} gemma`,
    });
    // torch.nn.functional.layer_norm uses the biased variance
    const l = await layerNorm(be.fromArray(x, [1, 4]), be.fromArray([1, 1, 1, 1], [4]), null, { eps: 0 })
      .toArray();
    const m = (1 - 2 + 3 + 0.5) / 4, v = x.reduce((s, xi) => s + (xi - m) ** 2, 0) / 4;
    assertAllClose(l, x.map((xi) => (xi - m) / Math.sqrt(v)), {
      atol: 1e-6,
      rtol: 1e-6,
      msg: `${be.name} layer`,
    });
  }
});

Deno.test("norm references have the f64 finite-difference gradients", () => {
  for (const kind of ["layer", "layer_nobias", "rms", "gemma"] as const) {
    for (const [rows, C] of [[1, 1], [3, 5], [4, 17]]) {
      const n = rows * C, wy = rand64(n, 5);
      const fwd = (xs: Float64Array[]) => {
        const y = new Float64Array(n), mean = new Float64Array(rows), rstd = new Float64Array(rows);
        if (kind === "rms" || kind === "gemma") {
          rmsNormReference(y, rstd, xs[0], xs[1], C, 1e-5, kind === "gemma" ? 1 : 0);
        } else layerNormReference(y, mean, rstd, xs[0], xs[1], kind === "layer" ? xs[2] : null, C, 1e-5);
        return { y, mean, rstd };
      };
      const inputs = [rand64(n, 1, 2), rand64(C, 2), ...(kind === "layer" ? [rand64(C, 3)] : [])];
      gradcheck(
        `${kind} ${rows}x${C}`,
        (xs) => dot(wy, fwd(xs).y),
        (xs) => {
          const { mean, rstd } = fwd(xs);
          const dx = new Float64Array(n), dw = new Float64Array(C), db = new Float64Array(C);
          const k = kind === "rms" || kind === "gemma" ? "rms" : "layer";
          normBackwardReference(
            k,
            dx,
            dw,
            kind === "layer" ? db : null,
            wy,
            xs[0],
            xs[1],
            mean,
            rstd,
            C,
            kind === "gemma" ? 1 : 0,
          );
          return kind === "layer" ? [dx, dw, db] : [dx, dw];
        },
        inputs,
        { atol: 1e-6, rtol: 1e-5 },
      );
    }
  }
});

Deno.test("norm weight gradients are deterministic (bitwise equal across runs)", async () => {
  for (const be of await backends()) {
    const a = await Promise.all(run(be, "layer", [130, 33], 3).map((t) => t.toArray()));
    const b = await Promise.all(run(be, "layer", [130, 33], 3).map((t) => t.toArray()));
    for (let i = 0; i < a.length; i++) assert.deepEqual(a[i], b[i]);
  }
});

Deno.test("norms reject bad shapes and dtypes before dispatch", async () => {
  for (const be of await backends()) {
    const before = be.gpu?.stats.dispatches ?? 0;
    assert.throws(
      () => layerNorm(be.zeros([2, 4]), be.zeros([3])),
      /Cannot run norm.layer_forward: weight has shape \[3\], expected \[4\] for x \[2, 4\]/,
    );
    assert.throws(() => layerNorm(be.zeros([2, 4]), be.zeros([4]), be.zeros([5])), /bias has shape \[5\]/);
    assert.throws(() => rmsNorm(be.zeros([2, 4], "i32"), be.zeros([4])), /x has dtype i32, expected f32/);
    assert.throws(() => rmsNorm(be.zeros([2, 0]), be.zeros([0])), /expected \(\.\.\., C\) with C > 0/);
    const x = be.zeros([2, 4]), w = be.zeros([4]);
    assert.throws(
      () =>
        normBackward(
          "layer",
          be.zeros([2, 4]),
          be.zeros([4]),
          null,
          be.zeros([2, 4]),
          x,
          w,
          null,
          be.zeros([2]),
        ),
      /mean is required/,
    );
    assert.equal(be.gpu?.stats.dispatches ?? 0, before, "nothing was dispatched");
  }
  void cpu;
});
