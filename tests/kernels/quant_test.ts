import {
  dequantize,
  dequantizeReference,
  layoutSizes,
  linearQ4,
  matmulQ4,
  matmulQ4Backward,
  matmulQ4BackwardReference,
  matmulQ4Reference,
  NF4_THRESHOLDS,
  NF4_VALUES,
  quantize,
  QuantizedTensor,
  quantizeReference,
  type QuantKind,
  type QuantLayout,
} from "../../kernels/quant.ts";
import { backward } from "../../kernels/autograd.ts";
import { assert, assertAllClose, assertClose, randomArray, rng } from "../_assert.ts";
import { backends, cpu, dot, gradcheck, rand64, webgpu } from "../_check.ts";

const KINDS: QuantKind[] = ["nf4", "q4"];

/** Deterministic N(0, std^2) samples (Box-Muller), as float32. */
function gaussian(n: number, seed: number, std = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = r() || 1e-12, v = r();
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

function refQuant(w: ArrayLike<number>, l: QuantLayout) {
  const { words, blocks } = layoutSizes(l);
  const codes = new Uint32Array(l.N * words), scales = new Float32Array(l.N * blocks);
  quantizeReference(codes, scales, w, l);
  const deq = new Float32Array(l.N * l.K);
  dequantizeReference(deq, codes, scales, l);
  return { codes, scales, deq };
}

function nibbles(codes: Uint32Array): number[] {
  return [...codes].flatMap((w) => [...Array(8).keys()].map((j) => (w >>> (4 * j)) & 15));
}

Deno.test("NF4 table is bitsandbytes' and the thresholds are its midpoints", () => {
  assert.equal(NF4_VALUES.length, 16);
  assert.equal(NF4_VALUES[0], -1);
  assert.equal(NF4_VALUES[7], 0);
  assert.equal(NF4_VALUES[15], 1);
  assert.equal(NF4_VALUES[8], Math.fround(0.07958029955625534));
  assert.equal(NF4_VALUES[1], Math.fround(-0.6961928009986877));
  for (let i = 0; i < 15; i++) {
    assert.ok(NF4_VALUES[i] < NF4_VALUES[i + 1]);
    assertClose(NF4_THRESHOLDS[i], (NF4_VALUES[i] + NF4_VALUES[i + 1]) / 2, {
      atol: 1e-7,
      msg: `threshold ${i}`,
    });
  }
});

Deno.test("quantizeReference() round-trips every NF4 code exactly", () => {
  for (const absmax of [2, 0.37, 3e-5]) {
    const l: QuantLayout = { N: 1, K: 64, kind: "nf4", blockSize: 64 };
    const w = new Float32Array(64);
    for (let i = 0; i < 64; i++) w[i] = NF4_VALUES[i % 16] * Math.fround(absmax);
    const { codes, scales, deq } = refQuant(w, l);
    assert.equal(scales[0], Math.fround(absmax));
    assert.deepEqual(nibbles(codes), [...Array(64).keys()].map((i) => i % 16));
    assert.deepEqual(deq, w, `absmax ${absmax}`);
  }
  // q4: every integer level -7..7 round-trips
  const l: QuantLayout = { N: 1, K: 16, kind: "q4", blockSize: 16 };
  const w = Float32Array.from([...Array(16).keys()].map((i) => Math.max(-7, i - 8) * 0.5)); // absmax 3.5
  const { codes, deq } = refQuant(w, l);
  assert.deepEqual(nibbles(codes), [...Array(16).keys()].map((i) => Math.max(1, i)));
  assertAllClose(deq, w, { atol: 0, rtol: 1e-6 });
});

Deno.test("quantizeReference() decides NF4 midpoints like bitsandbytes and rounds q4 half to even", () => {
  // absmax 1 (the last element), so x / absmax is x itself
  const l: QuantLayout = { N: 1, K: 32, kind: "nf4", blockSize: 32 };
  const w = new Float32Array(32);
  const want: number[] = [];
  NF4_THRESHOLDS.forEach((t, i) => {
    w[2 * i] = t; // exactly on the midpoint: the lower code (`x > t` is false)
    w[2 * i + 1] = t + Math.abs(t) * 2 ** -23 + 1e-30; // just above: the upper code
    want.push(i, i + 1);
  });
  w[30] = 0;
  w[31] = 1;
  want.push(7, 15);
  assert.deepEqual(nibbles(refQuant(w, l).codes), want);

  const q: QuantLayout = { N: 1, K: 8, kind: "q4", blockSize: 8 };
  // absmax 7 so the scale is exactly 1: 2.5 -> 2, 3.5 -> 4, -0.5 -> -0, -1.5 -> -2, -2.5 -> -2
  const { codes, scales } = refQuant([2.5, 3.5, -0.5, -1.5, -2.5, 7, -7, 0.5], q);
  assert.equal(scales[0], 1);
  assert.deepEqual(nibbles(codes), [2, 4, 0, -2, -2, 7, -7, 0].map((v) => v + 8));
});

Deno.test("quantizeReference() gives zero blocks and padding the zero code", () => {
  for (const kind of KINDS) {
    const zero = kind === "nf4" ? 7 : 8;
    // K = 72 with blocks of 64: the second block holds 8 values and 56 zeros of padding
    const l: QuantLayout = { N: 2, K: 72, kind, blockSize: 64 };
    const w = new Float32Array(144);
    w.set(randomArray(72, 3), 72); // row 0 all zeros, row 1 random
    const { codes, scales, deq } = refQuant(w, l);
    assert.deepEqual([...scales.slice(0, 2)], [0, 0]);
    assert.ok(nibbles(codes.slice(0, 16)).every((c) => c === zero), `${kind}: zero row`);
    assert.ok(nibbles(codes.slice(16 + 9, 32)).every((c) => c === zero), `${kind}: padding`);
    assert.ok(deq.slice(0, 72).every((v) => v === 0));
    assert.equal(codes.length, 2 * 16);
  }
});

Deno.test("nf4 and q4 round-trip errors on Gaussian weights are within their bounds", () => {
  const N = 64, K = 1024, std = 0.02;
  const w = gaussian(N * K, 11, std);
  const rel: Record<string, number> = {};
  const maxGap = Math.max(...NF4_VALUES.slice(1).map((v, i) => v - NF4_VALUES[i])); // -1 .. -0.696
  for (const kind of KINDS) {
    const l: QuantLayout = { N, K, kind, blockSize: 64 };
    const { scales, deq } = refQuant(w, l);
    let se = 0;
    for (let i = 0; i < w.length; i++) {
      const err = Math.abs(deq[i] - w[i]);
      se += err * err;
      const s = scales[Math.floor(i / 64)];
      // nearest-code bound: half of the largest gap between neighbouring levels, times the scale
      const bound = kind === "nf4" ? s * maxGap / 2 : s / 2;
      assert.ok(err <= bound * (1 + 1e-6) + 1e-12, `${kind}: element ${i} error ${err} > ${bound}`);
    }
    rel[kind] = Math.sqrt(se / w.length) / std;
  }
  console.error(
    `round-trip RMSE / std (blocks of 64, N(0, 0.02^2)): nf4 ${rel.nf4.toFixed(4)}, q4 ${rel.q4.toFixed(4)}`,
  );
  assert.ok(rel.nf4 < 0.11 && rel.q4 < 0.12, JSON.stringify(rel));
  assert.ok(rel.nf4 < rel.q4, "NF4 should beat uniform int4 on Gaussian weights");
});

const SHAPES: [number, number][] = [[1, 64], [3, 72], [65, 200], [5, 4096], [2, 7]];

Deno.test("quantize() and dequantize() on webgpu match the reference bit for bit", async () => {
  const g = await webgpu();
  if (!g) return console.error("webgpu unavailable: skipped");
  for (const kind of KINDS) {
    for (const blockSize of [64, 32, 8]) {
      for (const [N, K] of SHAPES) {
        const w = gaussian(N * K, N * 7 + K, 0.05);
        w[0] = 0; // a zero inside a block
        const l: QuantLayout = { N, K, kind, blockSize };
        const ref = refQuant(w, l);
        const t = g.fromArray(w, [N, K]);
        const q = quantize(t, { kind, blockSize });
        const label = `${kind}/${blockSize} [${N}, ${K}]`;
        assert.deepEqual(await q.scales.toArray(), ref.scales, `${label}: scales`);
        assert.deepEqual(await q.codes.toArray(), ref.codes, `${label}: codes`);
        const d = dequantize(q);
        assert.deepEqual(await d.toArray(), ref.deq, `${label}: dequantized`);
        for (const x of [t, d]) x.dispose();
        q.dispose();
      }
    }
  }
});

const MS = [1, 5, 33];
const NS = [1, 3, 65];
const KS = [64, 72, 200, 4096, 12, 7]; // 12: vec4 loads with a half-word tail; 7: scalar loads

Deno.test("matmulQ4() matches x · dequant(W)ᵀ in f64 on odd shapes (M = 1 decode included)", async () => {
  const c = await cpu(), g = await webgpu();
  let worst = 0;
  for (const kind of KINDS) {
    for (const N of NS) {
      for (const K of KS) {
        const w = gaussian(N * K, N + K, 0.05);
        const l: QuantLayout = { N, K, kind, blockSize: 64 };
        const { codes, scales } = refQuant(w, l);
        const bias = randomArray(N, 5);
        for (const M of MS) {
          const x = randomArray(M * K, M * 31 + K);
          const want = new Float64Array(M * N);
          const withBias = M !== 5;
          matmulQ4Reference(want, x, codes, scales, withBias ? bias : null, { ...l, M });
          for (const be of g ? [c, g] : [c]) {
            const q = new QuantizedTensor(
              be.fromArray(codes, [N, codes.length / N], "u32"),
              be.fromArray(scales, [N, scales.length / N]),
              [N, K],
              { kind },
            );
            const out = be.empty([M, N]);
            matmulQ4(out, be.fromArray(x, [M, K]), q, { bias: withBias ? be.fromArray(bias, [N]) : null });
            const cmp = assertAllClose(await out.toArray(), want, {
              atol: 1e-4,
              rtol: 1e-5,
              msg: `${be.name} ${kind} M=${M} N=${N} K=${K}`,
            });
            if (be === g) worst = Math.max(worst, cmp.maxAbs);
            out.dispose();
            q.dispose();
          }
        }
      }
    }
  }
  if (g) console.error(`matmulQ4 webgpu vs f64: max abs err ${worst.toExponential(2)}`);
});

Deno.test("matmulQ4Backward() matches dOut · dequant(W) in f64, and the reference matches finite differences", async () => {
  const c = await cpu(), g = await webgpu();
  let worst = 0;
  for (const kind of KINDS) {
    for (const [M, N, K] of [[1, 3, 72], [5, 65, 200], [33, 1, 64], [5, 3, 4096], [6, 9, 7], [5, 2, 12]]) {
      const l: QuantLayout = { N, K, kind, blockSize: 64 };
      const { codes, scales } = refQuant(gaussian(N * K, K + 1, 0.05), l);
      const dOut = randomArray(M * N, 17);
      const want = new Float64Array(M * K);
      matmulQ4BackwardReference(want, dOut, codes, scales, { ...l, M });
      for (const be of g ? [c, g] : [c]) {
        const q = new QuantizedTensor(
          be.fromArray(codes, [N, codes.length / N], "u32"),
          be.fromArray(scales, [N, scales.length / N]),
          [N, K],
          { kind },
        );
        const dx = be.empty([M, K]);
        matmulQ4Backward(dx, be.fromArray(dOut, [M, N]), q);
        const cmp = assertAllClose(await dx.toArray(), want, {
          atol: 1e-4,
          rtol: 1e-5,
          msg: `${be.name} ${kind} backward M=${M} N=${N} K=${K}`,
        });
        if (be === g) worst = Math.max(worst, cmp.maxAbs);
      }
      if (K <= 200) {
        const w = rand64(M * N, 23);
        const f = (xs: Float64Array[]) => {
          const out = new Float64Array(M * N);
          matmulQ4Reference(out, xs[0], codes, scales, null, { ...l, M });
          return dot(w, out);
        };
        const grads = () => {
          const dx = new Float64Array(M * K);
          matmulQ4BackwardReference(dx, w, codes, scales, { ...l, M });
          return [dx];
        };
        gradcheck(`matmulQ4 ${kind} ${M}x${N}x${K}`, f, grads, [rand64(M * K, 29)]);
      }
    }
  }
  if (g) console.error(`matmulQ4Backward webgpu vs f64: max abs err ${worst.toExponential(2)}`);
});

Deno.test("linearQ4() gives x and bias gradients through autograd on both backends", async () => {
  const K = 200, N = 65;
  const w = gaussian(N * K, 3, 0.05);
  const xs = randomArray(2 * 3 * K, 4), bs = randomArray(N, 5), gy = randomArray(2 * 3 * N, 6);
  const l: QuantLayout = { N, K, kind: "nf4", blockSize: 64 };
  const { codes, scales } = refQuant(w, l);
  const wantX = new Float64Array(6 * K);
  matmulQ4BackwardReference(wantX, gy, codes, scales, { ...l, M: 6 });
  const wantB = new Float64Array(N);
  gy.forEach((v, i) => wantB[i % N] += v);
  for (const be of await backends()) {
    const q = quantize(be.fromArray(w, [N, K]));
    const x = be.fromArray(xs, [2, 3, K]), bias = be.fromArray(bs, [N]);
    x.requiresGrad = bias.requiresGrad = true;
    const y = linearQ4(x, q, bias);
    assert.deepEqual(y.shape, [2, 3, N]);
    backward(y, be.fromArray(gy, [2, 3, N]));
    assertAllClose(await x.grad!.toArray(), wantX, { atol: 1e-4, rtol: 1e-5, msg: `${be.name} dx` });
    assertAllClose(await bias.grad!.toArray(), wantB, { atol: 1e-5, rtol: 1e-5, msg: `${be.name} dbias` });
    // frozen input and bias: no graph at all
    const z = linearQ4(be.fromArray(xs, [6, K]), q);
    assert.equal(z.node, null);
    q.dispose();
  }
});

Deno.test("quant ops reject bad inputs before dispatch", async () => {
  for (const be of await backends()) {
    const before = be.gpu?.stats.dispatches ?? 0;
    const q = quantize(be.fromArray(randomArray(3 * 72, 1), [3, 72]));
    const mid = be.gpu?.stats.dispatches ?? 0;
    assert.throws(
      () => matmulQ4(be.empty([2, 3]), be.empty([2, 71]), q),
      /x has shape \[2, 71\], expected \[2, 72\]/,
    );
    assert.throws(
      () => matmulQ4(be.empty([2, 4]), be.empty([2, 72]), q),
      /out has shape \[2, 4\], expected \[\.\.\., 3\]/,
    );
    assert.throws(
      () => matmulQ4(be.empty([2, 3]), be.empty([2, 72]), q, { bias: be.empty([4]) }),
      /bias has shape \[4\], expected \[3\]/,
    );
    assert.throws(() => matmulQ4Backward(be.empty([2, 70]), be.empty([2, 3]), q), /dx has shape \[2, 70\]/);
    assert.throws(() => linearQ4(be.empty([4, 5]), q), /x has shape \[4, 5\], expected \[\.\.\., 72\]/);
    assert.throws(
      () => quantize(be.empty([4, 8]), { blockSize: 12 }),
      /blockSize must be a positive multiple of 8: 12/,
    );
    assert.throws(() => quantize(be.empty([4, 8], "i32")), /weight has dtype i32, expected f32/);
    assert.throws(() => quantize(be.empty([32])), /weight must be \[N, K\]/);
    assert.throws(
      () => new QuantizedTensor(be.empty([3, 8], "u32"), be.empty([3, 2]), [3, 72], { kind: "nf4" }),
      /codes has shape \[3, 8\], expected \[3, 16\]/,
    );
    assert.equal(be.gpu?.stats.dispatches ?? 0, mid);
    assert.ok(mid - before <= 1);
    q.dispose();
  }
});

Deno.test("matmulQ4() speed on webgpu (reported, not asserted)", async () => {
  const g = await webgpu();
  if (!g) return;
  const N = 512, K = 2048;
  const q = quantize(g.fromArray(gaussian(N * K, 1, 0.05), [N, K]));
  for (const M of [1, 32]) {
    const x = g.fromArray(randomArray(M * K, 2), [M, K]);
    const out = g.empty([M, N]);
    matmulQ4(out, x, q);
    await g.sync();
    const reps = M === 1 ? 20 : 4;
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) matmulQ4(out, x, q);
    await g.sync();
    const ms = (performance.now() - t0) / reps;
    console.error(
      `matmulQ4 nf4 M=${M} N=${N} K=${K}: ${ms.toFixed(2)} ms, ${
        (2 * M * N * K / ms / 1e6).toFixed(2)
      } GFLOP/s`,
    );
    const dx = g.empty([M, K]);
    const t1 = performance.now();
    for (let r = 0; r < reps; r++) matmulQ4Backward(dx, out, q);
    await g.sync();
    const ms2 = (performance.now() - t1) / reps;
    console.error(
      `matmulQ4Backward nf4 M=${M}: ${ms2.toFixed(2)} ms, ${(2 * M * N * K / ms2 / 1e6).toFixed(2)} GFLOP/s`,
    );
    for (const t of [x, out, dx]) t.dispose();
  }
  q.dispose();
});
