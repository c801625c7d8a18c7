import {
  type Activation,
  activationBackwardReference,
  activationReference,
  erf,
  gelu,
  relu,
  silu,
  swiglu,
  swigluBackwardReference,
  swigluFused,
  swigluReference,
} from "../../kernels/activation.ts";
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { backends, compareBackends, cpu, dot, gradcheck, rand64, webgpu } from "../_check.ts";

const KINDS: Activation[] = ["gelu_erf", "gelu_tanh", "silu", "relu"];
const SHAPES = [[1], [3], [7, 33], [130, 64], [2, 5, 257]];

function apply(kind: Activation, x: Tensor): Tensor {
  switch (kind) {
    case "gelu_erf":
      return gelu(x);
    case "gelu_tanh":
      return gelu(x, { approximate: "tanh" });
    case "silu":
      return silu(x);
    case "relu":
      return relu(x);
  }
}

/** Forward and input gradients of `sum(w * f(inputs))` on one backend. */
function fwdBwd(
  be: Backend,
  f: (xs: Tensor[]) => Tensor,
  xs: Float32Array[],
  shapes: number[][],
  w: Float32Array,
) {
  const ts = xs.map((x, i) => {
    const t = be.fromArray(x, shapes[i]);
    t.requiresGrad = true;
    return t;
  });
  const y = f(ts);
  backward(y, be.fromArray(w, y.shape));
  return [y, ...ts.map((t) => t.grad!)];
}

Deno.test("erf() reference matches known values to 1e-15", () => {
  const known: [number, number][] = [[0.5, 0.5204998778130465], [1, 0.8427007929497149], [
    3,
    0.9999779095030014,
  ], [
    -2,
    -0.9953222650189527,
  ], [1e-8, 1.1283791670955126e-8]];
  for (const [x, e] of known) assert.ok(Math.abs(erf(x) - e) < 1e-15, `erf(${x}) = ${erf(x)}, expected ${e}`);
});

Deno.test("activations match the reference forward and backward on both backends", async () => {
  for (const kind of KINDS) {
    for (const shape of SHAPES) {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = randomArray(n, 3 + n, 4), w = randomArray(n, 5 + n);
      const [fwd, bwd] = await compareBackends(
        `${kind} ${shape}`,
        (be) => fwdBwd(be, (t) => apply(kind, t[0]), [x], [shape], w),
        {
          atol: 1e-6,
          rtol: 1e-5,
        },
      );
      if (fwd && kind === "gelu_erf" && n > 10000) {
        console.log(
          `  ${kind} ${shape}: max abs err fwd ${fwd.maxAbs.toExponential(2)} bwd ${
            bwd.maxAbs.toExponential(2)
          }`,
        );
      }
    }
  }
});

Deno.test("gelu() erf form is float32-accurate on the GPU over [-10, 10] (erf max abs error < 5e-7)", async () => {
  const g = await webgpu();
  if (!g) return;
  const n = 20001;
  const x = Float32Array.from({ length: n }, (_, i) => -10 + i * 0.001);
  const want = new Float64Array(n);
  activationReference("gelu_erf", want, x);
  const got = await gelu(g.fromArray(x, [n])).toArray();
  const c = assertAllClose(got, want, { atol: 3e-7, rtol: 2e-7, msg: "gelu erf" });
  console.log(`  gelu erf vs f64: max abs err ${c.maxAbs.toExponential(2)}`);
  // erf itself: gelu(x) = 0.5 x (1 + erf(x / sqrt2)) => erf = 2 gelu / x - 1 (|x| >= 1 for conditioning)
  let worst = 0;
  for (let i = 0; i < n; i++) {
    if (Math.abs(x[i]) < 1) continue;
    worst = Math.max(worst, Math.abs((2 * got[i] / x[i] - 1) - erf(x[i] / Math.SQRT2)));
  }
  console.log(`  erf recovered from gelu (|x| >= 1) vs f64: max abs err ${worst.toExponential(2)}`);
  assert.ok(worst < 5e-7, `erf max abs error ${worst}`);
});

Deno.test("activation references have the f64 finite-difference gradients", () => {
  for (const kind of KINDS) {
    const n = 40, w = rand64(n, 2);
    const x = rand64(n, 1, 3).map((v) => (kind === "relu" && Math.abs(v) < 1e-3 ? 0.5 : v));
    gradcheck(kind, (xs) => {
      const y = new Float64Array(n);
      activationReference(kind, y, xs[0]);
      return dot(w, y);
    }, (xs) => {
      const dx = new Float64Array(n);
      activationBackwardReference(kind, dx, w, xs[0]);
      return [dx];
    }, [x]);
  }
});

Deno.test("swiglu() and swigluFused() references have the f64 finite-difference gradients", () => {
  const rows = 3, inner = 5, n = rows * inner, w = rand64(n, 9);
  gradcheck("swiglu", (xs) => {
    const y = new Float64Array(n);
    swigluReference(y, xs[0], xs[1], 1);
    return dot(w, y);
  }, (xs) => {
    const dg = new Float64Array(n), du = new Float64Array(n);
    swigluBackwardReference(dg, du, w, xs[0], xs[1], 1);
    return [dg, du];
  }, [rand64(n, 1, 3), rand64(n, 2, 3)]);
  gradcheck("swigluFused", (xs) => {
    const y = new Float64Array(n);
    swigluReference(y, xs[0], null, inner);
    return dot(w, y);
  }, (xs) => {
    const d = new Float64Array(2 * n);
    swigluBackwardReference(d, null, w, xs[0], null, inner);
    return [d];
  }, [rand64(2 * n, 3, 3)]);
});

Deno.test("swiglu() and swigluFused() match the reference forward and backward on both backends", async () => {
  for (const [rows, inner] of [[1, 1], [7, 3], [130, 33], [4, 257]]) {
    const n = rows * inner;
    const g = randomArray(n, 1, 3), u = randomArray(n, 2, 3), w = randomArray(n, 3);
    await compareBackends(
      `swiglu ${rows}x${inner}`,
      (be) => fwdBwd(be, (t) => swiglu(t[0], t[1]), [g, u], [[rows, inner], [rows, inner]], w),
    );
    // fused: [gate | up] per row
    const gu = new Float32Array(2 * n);
    for (let r = 0; r < rows; r++) {
      gu.set(g.subarray(r * inner, (r + 1) * inner), r * 2 * inner);
      gu.set(u.subarray(r * inner, (r + 1) * inner), r * 2 * inner + inner);
    }
    const [y1, dgu] = await compareBackends(
      `swigluFused ${rows}x${inner}`,
      (be) => fwdBwd(be, (t) => swigluFused(t[0]), [gu], [[rows, 2 * inner]], w),
    );
    void y1, dgu;
    // fused == separate on cpu (same values, halves in Phi-3's chunk order)
    const c = await cpu();
    const sep = fwdBwd(c, (t) => swiglu(t[0], t[1]), [g, u], [[rows, inner], [rows, inner]], w);
    const fus = fwdBwd(c, (t) => swigluFused(t[0]), [gu], [[rows, 2 * inner]], w);
    assertAllClose(fus[0].data, sep[0].data, { atol: 0, rtol: 0 });
    for (let r = 0; r < rows; r++) {
      assertAllClose(
        fus[1].data.subarray(r * 2 * inner, r * 2 * inner + inner),
        sep[1].data.subarray(r * inner, (r + 1) * inner),
        {
          atol: 0,
          rtol: 0,
        },
      );
      assertAllClose(
        fus[1].data.subarray(r * 2 * inner + inner, (r + 1) * 2 * inner),
        sep[2].data.subarray(r * inner, (r + 1) * inner),
        {
          atol: 0,
          rtol: 0,
        },
      );
    }
  }
});

Deno.test("activations run in windows when a tensor is larger than one binding", async () => {
  const g = await webgpu();
  if (!g) return;
  const limits = g.device.info.limits;
  const saved = limits.maxStorageBufferBindingSize;
  const rows = 37, inner = 100, n = rows * inner;
  const gu = randomArray(2 * n, 4, 3), w = randomArray(n, 5);
  const c = await cpu();
  const want = fwdBwd(c, (t) => swigluFused(t[0]), [gu], [[rows, 2 * inner]], w);
  const wantG = fwdBwd(c, (t) => gelu(t[0]), [gu], [[2 * n]], randomArray(2 * n, 6));
  limits.maxStorageBufferBindingSize = 16384; // 16 aligned rows of 2 * 100 f32 per window: 3 windows
  try {
    const before = g.device.stats.dispatches;
    const got = fwdBwd(g, (t) => swigluFused(t[0]), [gu], [[rows, 2 * inner]], w);
    assert.ok(g.device.stats.dispatches - before >= 6, "forward and backward each ran 3 windows");
    const gotG = fwdBwd(g, (t) => gelu(t[0]), [gu], [[2 * n]], randomArray(2 * n, 6));
    for (const [a, b] of [[got[0], want[0]], [got[1], want[1]], [gotG[0], wantG[0]], [gotG[1], wantG[1]]]) {
      assertAllClose(await a.toArray(), b.data, { atol: 1e-6, rtol: 1e-5 });
    }
  } finally {
    limits.maxStorageBufferBindingSize = saved;
  }
});

Deno.test("activations reject bad shapes and dtypes before dispatch", async () => {
  for (const be of await backends()) {
    assert.throws(
      () => gelu(be.zeros([4], "i32")),
      /Cannot run activation.gelu_erf: x has dtype i32, expected f32/,
    );
    assert.throws(
      () => swiglu(be.zeros([2, 3]), be.zeros([3, 2])),
      /Cannot run activation.swiglu: up has shape \[3, 2\], expected \[2, 3\]/,
    );
    assert.throws(() => swigluFused(be.zeros([2, 3])), /last dim must be even/);
    assert.throws(() => gelu(be.zeros([2]), { approximate: "fast" as "tanh" }), RangeError);
  }
});
