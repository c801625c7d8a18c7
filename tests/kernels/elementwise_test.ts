import { binaryReference, transpose, uniformNoise } from "../../kernels/elementwise.ts";
import { add, affine, div, mul, sub } from "../../kernels/elementwise.ts";
import { backward } from "../../kernels/autograd.ts";
import { sum } from "../../kernels/reduce.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { backends, compareBackends, cpu, dot, gradcheck, rand64 } from "../_check.ts";

const SHAPES: [number[], number[]][] = [
  [[1], [1]],
  [[7], [7]],
  [[3, 5], [5]],
  [[2, 3, 4], [3, 1]],
  [[2, 1, 4, 3], [1, 5, 1, 3]],
  [[1000, 3], [1000, 1]],
  [[70001], [1]],
];

Deno.test("binary ops match the reference on both backends with broadcasting", async () => {
  for (const op of ["add", "sub", "mul", "div"] as const) {
    for (const [sa, sb] of SHAPES) {
      const na = sa.reduce((p, d) => p * d, 1), nb = sb.reduce((p, d) => p * d, 1);
      const a = randomArray(na, 1), b = randomArray(nb, 2);
      const f = { add, sub, mul, div }[op];
      await compareBackends(`${op} ${sa}x${sb}`, (be) => [f(be.fromArray(a, sa), be.fromArray(b, sb))], {
        rtol: 1e-6,
      });
    }
  }
});

Deno.test("binary ops reject shapes that do not broadcast, before dispatch", async () => {
  for (const be of await backends()) {
    assert.throws(() => add(be.zeros([2, 3]), be.zeros([4])), /shapes \[2, 3\] and \[4\] do not broadcast/);
  }
});

Deno.test("binary reference gradients match finite differences in f64", () => {
  for (const [sa, sb] of SHAPES.slice(0, 5)) {
    const na = sa.reduce((p, d) => p * d, 1), nb = sb.reduce((p, d) => p * d, 1);
    for (const op of ["mul", "div"] as const) {
      const os = sa.length >= sb.length
        ? sa.map((d, i) => Math.max(d, sb[i - (sa.length - sb.length)] ?? 1))
        : sb;
      const no = os.reduce((p, d) => p * d, 1);
      const w = rand64(no, 9);
      const fwd = (xs: Float64Array[]) => {
        const out = new Float64Array(no);
        binaryReference(op, out, xs[0], sa, xs[1], sb);
        return dot(w, out);
      };
      // analytic via the autograd on the cpu backend is f32; here we check the closed form in f64
      const grads = (xs: Float64Array[]) => {
        const ga = new Float64Array(na), gb = new Float64Array(nb);
        const oa = new Float64Array(no), ob = new Float64Array(no);
        // broadcast index maps from the reference itself: put unit markers
        const ia = Float64Array.from({ length: na }, (_, i) => i),
          ib = Float64Array.from({ length: nb }, (_, i) => i);
        binaryReference("add", oa, ia, sa, new Float64Array(nb), sb);
        binaryReference("add", ob, new Float64Array(na), sa, ib, sb);
        for (let i = 0; i < no; i++) {
          const x = xs[0][oa[i]], y = xs[1][ob[i]];
          ga[oa[i]] += w[i] * (op === "mul" ? y : 1 / y);
          gb[ob[i]] += w[i] * (op === "mul" ? x : -x / (y * y));
        }
        return [ga, gb];
      };
      const b = rand64(nb, 4).map((v) => v + Math.sign(v) * 0.5);
      gradcheck(`${op} ${sa}x${sb}`, fwd, grads, [rand64(na, 3), b]);
    }
  }
});

Deno.test("autograd through broadcast add/mul/div gives the f64 gradients on both backends", async () => {
  const sa = [2, 3, 4], sb = [3, 1];
  const a = randomArray(24, 5), b = randomArray(3, 6).map((v) => v + Math.sign(v) * 0.5);
  const want: Float32Array[][] = [];
  for (const be of await backends()) {
    const ta = be.fromArray(a, sa), tb = be.fromArray(b, sb);
    ta.requiresGrad = tb.requiresGrad = true;
    // loss = sum(affine((a*b + a) / b, 2))
    const y = affine(div(add(mul(ta, tb), ta), tb), 2, 0);
    const loss = sum(sum(sum(y, 2), 1), 0);
    backward(loss);
    const got = [await ta.grad!.toArray() as Float32Array, await tb.grad!.toArray() as Float32Array];
    // closed form: y = 2(a + a/b): dy/da = 2(1 + 1/b), dy/db = -2a/b^2
    const ga = new Float64Array(24), gb = new Float64Array(3);
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        for (let k = 0; k < 4; k++) {
          const x = a[i * 12 + j * 4 + k], yb = b[j];
          ga[i * 12 + j * 4 + k] = 2 * (1 + 1 / yb);
          gb[j] += -2 * x / (yb * yb);
        }
      }
    }
    assertAllClose(got[0], ga, { atol: 1e-5, rtol: 1e-5, msg: `${be.name} da` });
    assertAllClose(got[1], gb, { atol: 1e-4, rtol: 1e-4, msg: `${be.name} db` });
    want.push(got);
  }
});

Deno.test("transpose() of the last two dims matches the reference and is its own gradient", async () => {
  for (const shape of [[1, 1], [3, 5], [2, 7, 33], [4, 64, 65]]) {
    const n = shape.reduce((p, d) => p * d, 1);
    const x = randomArray(n, 11);
    await compareBackends(`transpose ${shape}`, (be) => [transpose(be.fromArray(x, shape))], {
      atol: 0,
      rtol: 0,
    });
  }
  const c = await cpu();
  const t = transpose(c.fromArray([1, 2, 3, 4, 5, 6], [2, 3]));
  assert.deepEqual([...await t.toArray()], [1, 4, 2, 5, 3, 6]);
});

Deno.test("uniformNoise() (NEFTune) matches the reference on both backends, stays in [x - m, x + m) and passes the gradient through", async () => {
  for (const n of [1, 7, 1000, 70001]) {
    const x = randomArray(n, 5);
    await compareBackends(`uniformNoise ${n}`, (be) => [uniformNoise(be.fromArray(x, [n]), 0.3, 12345)], {
      atol: 1e-7,
      rtol: 1e-7,
    });
  }
  const c = await cpu();
  const ones = c.full([20000], 1);
  const y = Array.from(await uniformNoise(ones, 0.25, 9).toArray());
  const noise = y.map((v) => v - 1), mean = noise.reduce((a, v) => a + v, 0) / y.length;
  assert.ok(noise.every((v) => v >= -0.25 && v < 0.25), "noise outside [-m, m)");
  assert.ok(Math.max(...noise) > 0.249 && Math.min(...noise) < -0.249, "noise does not span [-m, m)");
  assert.ok(Math.abs(mean) < 0.005, `noise mean ${mean}`);
  assert.deepEqual(
    [...await uniformNoise(ones, 0.25, 9).toArray()],
    [...y],
    "the same seed draws other noise",
  );
  assert.notDeepEqual(
    [...await uniformNoise(ones, 0.25, 10).toArray()],
    [...y],
    "another seed draws the same noise",
  );
  assert.equal(uniformNoise(ones, 0, 9).data, ones.data, "mag 0 is a view of x");
  assert.throws(() => uniformNoise(ones, -1, 9), /mag must be a finite number >= 0, got -1/);
  for (const be of await backends()) {
    const w = be.fromArray(randomArray(6, 3), [2, 3]);
    w.requiresGrad = true;
    const coef = randomArray(6, 4);
    backward(sum(sum(mul(uniformNoise(w, 0.5, 1), be.fromArray(coef, [2, 3])), 1), 0));
    assertAllClose(await w.grad!.toArray(), coef, { atol: 0, rtol: 0, msg: `${be.name} gradient` });
  }
});
