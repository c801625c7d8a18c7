import {
  AdamW,
  adamwStep,
  clipCoefficient,
  clipCoefficientReference,
  gradClip,
  gradNormSquared,
  sgdStep,
} from "../../kernels/optim.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, assertClose, randomArray, rng } from "../_assert.ts";
import { backends, cpu, webgpu } from "../_check.ts";

const SIZES = [1, 7, 1000, 70001];

/** torch.optim.AdamW by hand in f64: decoupled decay, bias corrections, eps after the sqrt. */
function adamwF64(
  p: Float64Array,
  m: Float64Array,
  v: Float64Array,
  g: ArrayLike<number>,
  o: { lr: number; t: number; b1: number; b2: number; eps: number; wd: number; scale?: number },
): void {
  const bc1 = 1 - o.b1 ** o.t, bc2 = 1 - o.b2 ** o.t;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * (o.scale ?? 1);
    p[i] *= 1 - o.lr * o.wd;
    m[i] = o.b1 * m[i] + (1 - o.b1) * gi;
    v[i] = o.b2 * v[i] + (1 - o.b2) * gi * gi;
    p[i] -= (o.lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + o.eps);
  }
}

function f32(a: ArrayLike<number>): Float32Array {
  return Float32Array.from(a);
}

Deno.test("adamwStep() matches torch's AdamW computed by hand in f64 over several steps", async () => {
  const c = await cpu();
  const n = 9;
  const p64 = Float64Array.from(randomArray(n, 1, 2)), m64 = new Float64Array(n), v64 = new Float64Array(n);
  const p = c.fromArray(p64, [3, 3]), m = c.zeros([3, 3]), v = c.zeros([3, 3]);
  const hp = { b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 };
  for (let t = 1; t <= 6; t++) {
    const g = randomArray(n, 10 + t, t === 3 ? 1e-3 : 1); // one step with tiny gradients: eps matters less than bias
    const lr = 0.01 * t; // a schedule: lr changes every step
    adamwF64(p64, m64, v64, g, { lr, t, ...hp });
    adamwStep([p], [c.fromArray(g, [3, 3])], [m], [v], {
      lr,
      step: t,
      betas: [hp.b1, hp.b2],
      eps: hp.eps,
      weight_decay: hp.wd,
    });
    assertAllClose(p.data, p64, { atol: 1e-6, rtol: 1e-6, msg: `param after step ${t}` });
    assertAllClose(m.data, m64, { atol: 1e-7, rtol: 1e-6, msg: `m after step ${t}` });
    assertAllClose(v.data, v64, { atol: 1e-9, rtol: 1e-6, msg: `v after step ${t}` });
  }
  // Hand-checked first step: m = 0.1 g, v = 0.001 g^2, bias-corrected m/sqrt(v) = sign(g), so
  // p1 = p0 * (1 - lr * wd) - lr * sign(g) (up to eps).
  const one = c.fromArray([2], [1]), m1 = c.zeros([1]), v1 = c.zeros([1]);
  adamwStep([one], [c.fromArray([-0.5], [1])], [m1], [v1], { lr: 0.1, step: 1, weight_decay: 0.5 });
  assertClose(one.data[0], 2 * (1 - 0.05) + 0.1, { atol: 1e-6 });
  assertClose(m1.data[0], -0.05, { rtol: 1e-6 });
  assertClose(v1.data[0], 0.001 * 0.25, { rtol: 1e-6 });
});

Deno.test("adamwStep() on webgpu matches the cpu reference over 50 steps on awkward sizes", async () => {
  const results: Float32Array[][] = [];
  for (const be of await backends()) {
    const ps = SIZES.map((n, i) => be.fromArray(randomArray(n, 100 + i), [n]));
    const ms = SIZES.map((n) => be.zeros([n])), vs = SIZES.map((n) => be.zeros([n]));
    const r = rng(5);
    for (let t = 1; t <= 50; t++) {
      const gs = SIZES.map((n, i) => be.fromArray(randomArray(n, 1000 * t + i, 0.1 + r()), [n]));
      const scale = be.fromArray([0.5 + r() * 0.5], [1]);
      const lr = 1e-3 * (1 + Math.cos(t / 10));
      // two parameter groups: decay on the first two tensors, none on the rest
      adamwStep(ps.slice(0, 2), gs.slice(0, 2), ms.slice(0, 2), vs.slice(0, 2), {
        lr,
        step: t,
        weight_decay: 0.1,
        scale,
      });
      adamwStep(ps.slice(2), gs.slice(2), ms.slice(2), vs.slice(2), { lr, step: t, weight_decay: 0 });
      for (const g of gs) g.dispose();
      scale.dispose();
    }
    results.push(await Promise.all([...ps, ...ms, ...vs].map((x) => x.toArray() as Promise<Float32Array>)));
  }
  if (results.length < 2) return console.error("webgpu unavailable: checked cpu only");
  let worst = 0;
  results[1].forEach((got, i) => {
    const cmp = assertAllClose(got, results[0][i], {
      atol: 1e-6,
      rtol: 1e-4,
      msg: `${["param", "m", "v"][Math.floor(i / SIZES.length)]} of size ${SIZES[i % SIZES.length]}`,
    });
    worst = Math.max(worst, cmp.maxAbs);
  });
  console.error(`adamw webgpu vs cpu after 50 steps: max abs err ${worst.toExponential(2)}`);
});

Deno.test("gradNormSquared() and clipCoefficient() match f64 on both backends", async () => {
  const sizes = [...SIZES, 300_001, 0];
  const hosts = sizes.map((n, i) => randomArray(n, 50 + i));
  let want = 0;
  for (const h of hosts) for (const x of h) want += x * x;
  for (const be of await backends()) {
    const grads = sizes.map((n, i) => be.fromArray(hosts[i], [n]));
    const out = be.empty([1]);
    gradNormSquared(out, grads);
    const got = (await out.toArray())[0];
    assertClose(got, want, { rtol: 2e-6, msg: `${be.name} sum of squares` });
    for (const maxNorm of [1, 10, 1e4]) {
      const coef = be.empty([1]);
      clipCoefficient(coef, out, maxNorm);
      const expect = Math.min(1, maxNorm / (Math.sqrt(want) + 1e-6));
      assertClose((await coef.toArray())[0], expect, {
        rtol: 2e-6,
        msg: `${be.name} coef, max_norm ${maxNorm}`,
      });
      coef.dispose();
    }
    // no gradients at all: a zero norm and a coefficient of 1
    gradNormSquared(out, []);
    assert.equal((await out.toArray())[0], 0);
    for (const g of grads) g.dispose();
    out.dispose();
  }
  assert.equal(clipCoefficientReference(25, 1), Math.fround(1 / (5 + Math.fround(1e-6))));
  assert.equal(clipCoefficientReference(0.25, 1), 1);
});

Deno.test("gradNormSquared() is deterministic across runs on webgpu", async () => {
  const g = await webgpu();
  if (!g) return;
  const grads = [g.fromArray(randomArray(123_457, 3), [123_457]), g.fromArray(randomArray(999, 4), [999])];
  const vals: number[] = [];
  for (let k = 0; k < 3; k++) {
    const out = g.empty([1]);
    gradNormSquared(out, grads);
    vals.push((await out.toArray())[0]);
    out.dispose();
  }
  assert.equal(new Set(vals).size, 1, `norms differ between runs: ${vals}`);
});

function runAdamW(be: Backend, steps: number, opts: { max_grad_norm?: number } = {}) {
  const ps = SIZES.map((n, i) => {
    const p = be.fromArray(randomArray(n, 200 + i), [n]);
    p.name = `w${i}`;
    return p;
  });
  const opt = new AdamW({ lr: 1e-2, weight_decay: 0.01, ...opts });
  let readbacks = 0;
  for (let t = 1; t <= steps; t++) {
    ps.forEach((p, i) => p.grad = be.fromArray(randomArray(p.size, 300 * t + i, 2), p.shape));
    const before = be.gpu?.stats.readbacks ?? 0;
    opt.step(ps);
    readbacks += (be.gpu?.stats.readbacks ?? 0) - before;
    opt.zeroGrad(ps);
  }
  return { ps, opt, readbacks };
}

Deno.test("AdamW.step() clips on the device and reads nothing back", async () => {
  const got: Float32Array[][] = [];
  const norms: number[] = [];
  for (const be of await backends()) {
    const { ps, opt, readbacks } = runAdamW(be, 4, { max_grad_norm: 1 });
    assert.equal(readbacks, 0, `${be.name}: step() read the device back ${readbacks} times`);
    norms.push((await opt.gradNorm())!);
    got.push(await Promise.all(ps.map((p) => p.toArray() as Promise<Float32Array>)));
    opt.dispose();
  }
  // the last step's gradients, by hand: norm over all four tensors
  let want = 0;
  SIZES.forEach((n, i) => {
    for (const x of randomArray(n, 300 * 4 + i, 2)) want += x * x;
  });
  for (const n of norms) assertClose(n, Math.sqrt(want), { rtol: 1e-5, msg: "gradNorm()" });
  if (got.length === 2) {
    got[1].forEach((a, i) => assertAllClose(a, got[0][i], { atol: 1e-6, rtol: 1e-5, msg: `param ${i}` }));
  }
});

Deno.test("AdamW clipping equals torch's clip_grad_norm_ followed by AdamW, by hand in f64", async () => {
  const c = await cpu();
  const p = c.fromArray([0.5, -1.5, 2], [3]);
  const p64 = Float64Array.from([0.5, -1.5, 2]), m64 = new Float64Array(3), v64 = new Float64Array(3);
  const opt = new AdamW({ lr: 0.05, weight_decay: 0.2, max_grad_norm: 0.5 });
  for (let t = 1; t <= 3; t++) {
    const g = [3 * t, -4, 1 / t];
    const norm = Math.hypot(...g);
    const coef = Math.min(1, 0.5 / (norm + 1e-6));
    adamwF64(p64, m64, v64, g, { lr: 0.05, t, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.2, scale: coef });
    p.grad = c.fromArray(g, [3]);
    opt.step([p]);
    assertClose((await opt.gradNorm())!, norm, { rtol: 1e-6 });
    assertAllClose(p.data, p64, { atol: 1e-6, rtol: 1e-6, msg: `step ${t}` });
  }
});

Deno.test("AdamW state() and loadState() round-trip exactly", async () => {
  for (const be of await backends()) {
    const { ps, opt } = runAdamW(be, 3);
    const saved = await opt.state();
    assert.deepEqual(saved.entries.map((e) => e.step), [3, 3, 3, 3]);
    assert.deepEqual(saved.entries.map((e) => e.name), ["w0", "w1", "w2", "w3"]);
    const copies = await Promise.all(ps.map(async (p) => be.fromArray(await p.toArray(), p.shape)));
    const restored = new AdamW({ lr: 1e-2, weight_decay: 0.01 });
    restored.loadState(copies, saved);
    const again = await restored.state();
    again.entries.forEach((e, i) => {
      assert.deepEqual(e.m, saved.entries[i].m);
      assert.deepEqual(e.v, saved.entries[i].v);
    });
    // one more step on both: identical parameters
    for (const set of [ps, copies]) {
      set.forEach((p, i) => p.grad = be.fromArray(randomArray(p.size, 77 + i), p.shape));
    }
    opt.step(ps);
    restored.step(copies);
    for (let i = 0; i < ps.length; i++) {
      assert.deepEqual(await copies[i].toArray(), await ps[i].toArray(), `${be.name} param ${i}`);
    }
    assert.throws(() => restored.loadState(copies.slice(1), saved), /4 entries for 3 parameters/);
    assert.throws(() => restored.loadState([...copies.slice(1), copies[0]], saved), /has shape \[1\]/);
    opt.dispose();
    restored.dispose();
  }
});

Deno.test("AdamW.zeroGrad() disposes gradients or zero-fills them", async () => {
  for (const be of await backends()) {
    const p = be.fromArray([1, 2, 3], [3]);
    p.grad = be.fromArray([4, 5, 6], [3]);
    const opt = new AdamW();
    opt.zeroGrad([p], { setToNone: false });
    assert.deepEqual([...await p.grad.toArray()], [0, 0, 0]);
    const g = p.grad;
    opt.zeroGrad([p]);
    assert.equal(p.grad, null);
    assert.ok(g.disposed);
    opt.step([p]); // no gradient: skipped
    assert.deepEqual((await opt.state()).entries, []);
  }
});

/** torch.optim.SGD by hand in f64 (nesterov off). */
function sgdF64(
  p: Float64Array,
  buf: Float64Array,
  g: ArrayLike<number>,
  t: number,
  o: Record<string, number>,
) {
  for (let i = 0; i < p.length; i++) {
    let d = g[i] + o.wd * p[i];
    buf[i] = t === 1 ? d : o.momentum * buf[i] + (1 - o.dampening) * d;
    d = buf[i];
    p[i] -= o.lr * d;
  }
}

Deno.test("sgdStep() with momentum matches torch's SGD by hand and across backends", async () => {
  const o = { lr: 0.1, momentum: 0.9, dampening: 0.1, wd: 0.01 };
  const final: Float32Array[] = [];
  for (const be of await backends()) {
    const n = 1000;
    const p64 = Float64Array.from(randomArray(n, 9)), b64 = new Float64Array(n);
    const p = be.fromArray(p64, [n]), buf = be.zeros([n]);
    const plain = be.fromArray(p64, [n]);
    for (let t = 1; t <= 5; t++) {
      const gh = randomArray(n, 40 + t);
      const g = be.fromArray(gh, [n]);
      sgdF64(p64, b64, gh, t, o);
      sgdStep([p], [g], [buf], {
        lr: o.lr,
        momentum: o.momentum,
        dampening: o.dampening,
        weight_decay: o.wd,
        step: t,
      });
      sgdStep([plain], [g], null, { lr: 0.5, step: t });
      g.dispose();
    }
    const got = await p.toArray();
    assertAllClose(got, p64, { atol: 1e-6, rtol: 1e-5, msg: `${be.name} sgd` });
    final.push(f32(got));
    // plain SGD: p - 0.5 * sum of the five gradients
    const want = Float64Array.from(randomArray(n, 9));
    for (let t = 1; t <= 5; t++) randomArray(n, 40 + t).forEach((x, i) => want[i] -= 0.5 * x);
    assertAllClose(await plain.toArray(), want, { atol: 1e-6, rtol: 1e-5, msg: `${be.name} plain sgd` });
  }
});

Deno.test("optimizer launchers reject bad inputs before dispatch", async () => {
  for (const be of await backends()) {
    const before = be.gpu?.stats.dispatches ?? 0;
    const p = be.zeros([4]), g = be.zeros([5]), m = be.zeros([4]), v = be.zeros([4]);
    assert.throws(
      () => adamwStep([p], [g], [m], [v], { lr: 1, step: 1 }),
      /grads\[0\] has shape \[5\], expected \[4\]/,
    );
    assert.throws(
      () => adamwStep([p], [], [m], [v], { lr: 1, step: 1 }),
      /params has 1 tensors but grads has 0/,
    );
    assert.throws(() => adamwStep([p], [m], [m], [v], { lr: -1, step: 0 }), /out of range: step 0.*lr -1/);
    assert.throws(() => adamwStep([p], [m], [m], [v], { lr: 1, step: 1, scale: p }), /scale has shape \[4\]/);
    const i32 = be.zeros([4], "i32");
    assert.throws(() => adamwStep([p], [i32], [m], [v], { lr: 1, step: 1 }), /dtype i32, expected f32/);
    assert.throws(() => sgdStep([p], [m], null, { lr: 1, momentum: 0.9, step: 1 }), /needs buffers/);
    assert.throws(() => clipCoefficient(be.zeros([1]), be.zeros([1]), 0), /max_norm must be a positive/);
    assert.throws(() => gradNormSquared(be.zeros([2]), [p]), /out has shape \[2\], expected \[1\]/);
    assert.throws(() => new AdamW().step([p], { max_grad_norm: 1, scale: be.zeros([1]) }), /either/);
    assert.equal(be.gpu?.stats.dispatches ?? 0, before);
  }
  const c = await cpu(), g = await webgpu();
  if (g) {
    assert.throws(() =>
      adamwStep([c.zeros([1])], [g.zeros([1])], [c.zeros([1])], [c.zeros([1])], {
        lr: 1,
        step: 1,
      }), /different backends/);
  }
});

Deno.test("gradClip() returns the norm and coefficient tensors", async () => {
  for (const be of await backends()) {
    const { normSquared, coef } = gradClip([be.fromArray([3, 4], [2]), be.fromArray([12], [1])], 6.5);
    assert.equal((await normSquared.toArray())[0], 169);
    assertClose((await coef.toArray())[0], 0.5, { rtol: 1e-6 });
    const t: Tensor[] = [normSquared, coef];
    for (const x of t) x.dispose();
  }
});
