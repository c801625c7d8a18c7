import {
  dequantize,
  dequantizeReference,
  dequantizeScalesReference,
  DOUBLE_QUANT_BLOCK,
  DYNAMIC_MAP,
  DYNAMIC_THRESHOLDS,
  layoutSizes,
  linearQ4,
  matmulQ4,
  matmulQ4Backward,
  matmulQ4BackwardReference,
  matmulQ4Reference,
  NF4_THRESHOLDS,
  NF4_VALUES,
  quantize,
  quantizedBytes,
  type QuantizedScales,
  QuantizedTensor,
  quantizeReference,
  quantizeScalesReference,
  type QuantKind,
  type QuantLayout,
  scaleMeanReference,
} from "../../kernels/quant.ts";
import type { Backend } from "../../kernels/backend.ts";
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
        assert.deepEqual(await q.scales!.toArray(), ref.scales, `${label}: scales`);
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
    for (const blockSize of [12, 1e9]) { // 1e9 once failed as "Array buffer allocation failed"
      assert.throws(
        () => quantize(be.empty([4, 8]), { blockSize }),
        new RegExp(
          `blockSize must be a multiple of 8 up to 4096 \\(bitsandbytes: 64 to 4096\\): ${blockSize}`,
        ),
      );
    }
    assert.throws( // a "false" once double-quantized
      () => quantize(be.empty([4, 8]), { doubleQuant: "false" as never }),
      /doubleQuant must be true or false, got "false"/,
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

// ---- double quantization of the scales (QLoRA) ----

/** Double-quantized scales as host arrays, by the references. */
function refDoubleQuant(scales: ArrayLike<number>) {
  const S = scales.length;
  const codes = new Uint32Array(Math.ceil(S / 4)),
    absmax = new Float32Array(Math.ceil(S / DOUBLE_QUANT_BLOCK));
  const offset = scaleMeanReference(scales);
  quantizeScalesReference(codes, absmax, scales, offset);
  const deq = new Float32Array(S);
  dequantizeScalesReference(deq, codes, absmax, offset);
  return { codes, absmax, offset, deq };
}

/** A reference-quantized weight with double-quantized scales, uploaded to a backend. */
function uploadDq(
  be: Backend,
  codes: Uint32Array,
  dq: { codes: Uint32Array; absmax: Float32Array; offset: number },
  l: QuantLayout,
): QuantizedTensor {
  const sc: QuantizedScales = {
    codes: be.fromArray(dq.codes, [dq.codes.length], "u32"),
    absmax: be.fromArray(dq.absmax, [dq.absmax.length]),
    offset: be.fromArray([dq.offset], [1]),
  };
  return new QuantizedTensor(be.fromArray(codes, [l.N, codes.length / l.N], "u32"), sc, [l.N, l.K], l);
}

Deno.test("DYNAMIC_MAP is bitsandbytes' create_dynamic_map() as torch computes it", () => {
  assert.equal(DYNAMIC_MAP.length, 256);
  for (let i = 0; i < 255; i++) assert.ok(DYNAMIC_MAP[i] < DYNAMIC_MAP[i + 1], `ascending at ${i}`);
  for (let i = 0; i < 127; i++) assert.equal(DYNAMIC_MAP[i], -DYNAMIC_MAP[254 - i], `symmetric at ${i}`);
  assert.equal(DYNAMIC_MAP[127], 0);
  assert.equal(DYNAMIC_MAP[255], 1);
  // Entries of the float32 table that torch (x86-64) gives for create_dynamic_map(), printed as
  // Python floats; among them the ones that a linspace without the fused multiply-add (20, 25, 83,
  // 117), float64 means (126) or a float64 product (65, 66, 123, 131) would change.
  const golden: Record<number, number> = {
    0: -0.992968738079071,
    20: -0.7117187976837158,
    25: -0.6414062976837158,
    65: -0.09578125923871994,
    66: -0.09296875447034836,
    67: -0.09015624970197678,
    83: -0.04515625163912773,
    111: -0.001281249918974936,
    117: -0.0003812500217463821,
    123: -2.1249998098937795e-05,
    125: -3.250000190746505e-06,
    126: -5.500000384017767e-07,
    131: 2.1249998098937795e-05,
    254: 0.992968738079071,
  };
  for (const [i, v] of Object.entries(golden)) assert.equal(DYNAMIC_MAP[+i], Math.fround(v), `map[${i}]`);
  assert.equal(DYNAMIC_THRESHOLDS.length, 255);
  DYNAMIC_THRESHOLDS.forEach((t, i) => {
    assert.equal(t, Math.fround(Math.fround(DYNAMIC_MAP[i] + DYNAMIC_MAP[i + 1]) / 2));
    assert.ok(DYNAMIC_MAP[i] < t && t < DYNAMIC_MAP[i + 1], `threshold ${i}`);
  });
});

Deno.test("quantizeScalesReference() on a hand-checked input: the map's asymmetric ends", () => {
  // scales [1, 3]: offset 2, shifted [-1, 1], absmax 1; -1 takes the lowest code (-0.99296875),
  // 1 the highest (1): so 1 comes back as 2 - 0.99296875, 3 as 3 (bitsandbytes does the same)
  const { codes, absmax, offset, deq } = refDoubleQuant([1, 3]);
  assert.equal(offset, 2);
  assert.deepEqual([...absmax], [1]);
  assert.equal(codes[0], 0 | (255 << 8) | (127 << 16) | (127 << 24)); // bytes past S: the zero code
  assert.deepEqual([...deq], [Math.fround(2 + DYNAMIC_MAP[0]), 3]);
  assert.equal(deq[0], Math.fround(1.0070312)); // 2 - 0.992968738
});

/**
 * bitsandbytes' `quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")` and
 * `dequantize_4bit`, transcribed from functional.py and backends/default/ops.py, after the 4-bit
 * step (whose absmax are fledge's scales when K is a multiple of 64: its flat blocks are row
 * blocks): `quantize_blockwise(absmax - offset, blocksize=256)` with scaled = clamp(A * (1 /
 * absmax2.clamp(1e-38)), -1, 1) and q = bucketize(scaled, midpoints of the map); dequantized
 * absmax = code[q] * absmax2 + offset. The offset is taken as given (`absmax.mean()`'s last bits
 * depend on torch's summation order).
 */
function bnbNestedAbsmax(absmax: Float32Array, offset: number) {
  const f = Math.fround;
  const A = absmax.map((a) => f(a - offset));
  const bounds = DYNAMIC_MAP.slice(1).map((v, i) => f(f(DYNAMIC_MAP[i] + v) / 2));
  const nb = Math.ceil(A.length / 256);
  const absmax2 = new Float32Array(nb), q = new Uint8Array(A.length);
  for (let b = 0; b < nb; b++) {
    const blk = A.subarray(b * 256, (b + 1) * 256);
    absmax2[b] = Math.max(...blk.map(Math.abs));
    const inv = f(1 / Math.max(absmax2[b], f(1e-38)));
    blk.forEach((x, j) => {
      const y = Math.min(1, Math.max(-1, f(x * inv)));
      q[b * 256 + j] = bounds.filter((t) => t < y).length;
    });
  }
  const deq = Float32Array.from(q, (c, i) => f(f(DYNAMIC_MAP[c] * absmax2[Math.floor(i / 256)]) + offset));
  return { q, absmax2, deq };
}

Deno.test("quantize(doubleQuant) equals bitsandbytes' compress_statistics=True, transcribed", async () => {
  const c = await cpu();
  // 40 x 640: 400 scales, one full 256-block and one of 144
  const N = 40, K = 640, l: QuantLayout = { N, K, kind: "nf4", blockSize: 64 };
  const w = gaussian(N * K, 9, 0.02);
  w.fill(0, 64, 128); // an all-zero block: scale 0, below the offset
  const ref = refQuant(w, l);
  const q = quantize(c.fromArray(w, [N, K]), { doubleQuant: true });
  const sc = q.scaleCodes!;
  const offset = sc.offset.data[0];
  let mean = 0;
  for (const s of ref.scales) mean += s;
  mean /= ref.scales.length;
  assertClose(offset, mean, { rtol: 1e-6, msg: "offset = mean of the absmax" });
  const bnb = bnbNestedAbsmax(ref.scales, offset);
  const bytes = new Uint8Array(new Uint32Array(sc.codes.data).buffer).slice(0, 400);
  assert.deepEqual([...bytes], [...bnb.q], "8-bit codes of the absmax");
  assert.deepEqual([...sc.absmax.data], [...bnb.absmax2], "absmax of the 256-blocks");
  assert.deepEqual([...q.codes.data], [...ref.codes], "4-bit codes unchanged");
  // dequantize_4bit: NF4[c] * (dequantized absmax)
  const want = Float32Array.from(w, (_, i) => {
    const n = Math.floor(i / K), k = i % K;
    const code = (ref.codes[n * 80 + (k >> 3)] >>> (4 * (k & 7))) & 15;
    return Math.fround(NF4_VALUES[code] * bnb.deq[n * 10 + Math.floor(k / 64)]);
  });
  assert.deepEqual(await dequantize(q).toArray(), want, "dequantized weights");
  q.dispose();
});

Deno.test("double quantization moves each scale by at most half a map gap of its block's absmax", () => {
  const N = 64, K = 1024, std = 0.02;
  const w = gaussian(N * K, 11, std);
  const l: QuantLayout = { N, K, kind: "nf4", blockSize: 64 };
  const { codes, scales, deq } = refQuant(w, l);
  const dq = refDoubleQuant(scales);
  const halfGap = Math.max(...DYNAMIC_MAP.slice(1).map((v, i) => v - DYNAMIC_MAP[i])) / 2;
  let worst = 0;
  scales.forEach((s, i) => {
    const err = Math.abs(dq.deq[i] - s), a = dq.absmax[Math.floor(i / DOUBLE_QUANT_BLOCK)];
    assert.ok(err <= a * halfGap * (1 + 1e-6) + 1e-12, `scale ${i}: ${err} > ${a * halfGap}`);
    worst = Math.max(worst, err / s);
  });
  const deq2 = new Float32Array(N * K);
  dequantizeReference(deq2, codes, dq.deq, l);
  const rmse = (d: Float32Array) => Math.sqrt(d.reduce((a, v, i) => a + (v - w[i]) ** 2, 0) / w.length) / std;
  const [r1, r2] = [rmse(deq), rmse(deq2)];
  console.error(
    `double quant: worst scale rel err ${worst.toExponential(2)}; weight RMSE / std ${r1.toFixed(4)} -> ${
      r2.toFixed(4)
    }`,
  );
  assert.ok(r2 < 0.11 && r2 < r1 * 1.01, `${r1} -> ${r2}`);
});

Deno.test("equal scales double-quantize exactly (second-level absmax 0) on both backends", async () => {
  // every block of 8 holds ±0.5: all 3 * 100 scales are 0.5 (nf4), so the offset is 0.5 exactly
  const N = 3,
    K = 800,
    w = Float32Array.from({ length: N * K }, (_, i) => (i % 8 === 3 ? -0.5 : (i % 5) / 20));
  for (const be of await backends()) {
    const single = quantize(be.fromArray(w, [N, K]), { blockSize: 8 });
    const q = quantize(be.fromArray(w, [N, K]), { blockSize: 8, doubleQuant: true });
    assert.deepEqual(await q.scaleCodes!.absmax.toArray(), new Float32Array(2), be.name);
    assert.deepEqual(await q.scaleCodes!.offset.toArray(), Float32Array.of(0.5), be.name);
    assert.ok((await q.scaleCodes!.codes.toArray()).every((x) => x === 0x7f7f7f7f), `${be.name}: code 127`);
    assert.deepEqual(await dequantize(q).toArray(), await dequantize(single).toArray(), be.name);
    single.dispose();
    q.dispose();
  }
});

Deno.test("quantize(doubleQuant) on webgpu matches the reference bit for bit", async () => {
  const c = await cpu(), g = await webgpu();
  // scales per tensor: 1, 6, 260, 320, 1, 3000 (bs 64) and 2, 9, 455, 640, 1, 6000 (bs 32)
  const shapes: [number, number][] = [...SHAPES, [300, 640]];
  for (const kind of KINDS) {
    for (const blockSize of [64, 32]) {
      for (const [N, K] of shapes) {
        const w = gaussian(N * K, N * 5 + K, 0.05);
        const l: QuantLayout = { N, K, kind, blockSize };
        const ref = refQuant(w, l);
        const dq = refDoubleQuant(ref.scales);
        const deq = new Float32Array(N * K);
        dequantizeReference(deq, ref.codes, dq.deq, l);
        const label = `${kind}/${blockSize} [${N}, ${K}]`;
        for (const be of g ? [c, g] : [c]) {
          const t = be.fromArray(w, [N, K]);
          const q = quantize(t, { kind, blockSize, doubleQuant: true });
          const sc = q.scaleCodes!;
          assert.equal(q.scales, null);
          assert.deepEqual(
            await sc.offset.toArray(),
            Float32Array.of(dq.offset),
            `${be.name} ${label}: offset`,
          );
          assert.deepEqual(await sc.absmax.toArray(), dq.absmax, `${be.name} ${label}: scale absmax`);
          assert.deepEqual(await sc.codes.toArray(), dq.codes, `${be.name} ${label}: scale codes`);
          assert.deepEqual(await q.codes.toArray(), ref.codes, `${be.name} ${label}: codes`);
          const d = dequantize(q);
          assert.deepEqual(await d.toArray(), deq, `${be.name} ${label}: dequantized`);
          for (const x of [t, d]) x.dispose();
          q.dispose();
        }
      }
    }
  }
  if (!g) console.error("webgpu unavailable: cpu only");
});

Deno.test("matmulQ4() and its backward read double-quantized scales (several batches, odd K and S)", async () => {
  const c = await cpu(), g = await webgpu();
  let worst = 0;
  // [batch dims, N, K]: K not a multiple of 64 (or of 8, or of 4); scale counts 2, 260, 27, 640;
  // 40 rows take the dequantize-then-GEMM path
  const cases: [number[], number, number][] = [[[1], 1, 72], [[2, 3], 65, 200], [[5], 9, 7], [
    [2, 2],
    5,
    8192,
  ], [[8, 5], 33, 136]];
  for (const kind of KINDS) {
    for (const [lead, N, K] of cases) {
      const M = lead.reduce((a, b) => a * b, 1);
      const l: QuantLayout = { N, K, kind, blockSize: 64 };
      const { codes, scales } = refQuant(gaussian(N * K, N + K, 0.05), l);
      const dq = refDoubleQuant(scales);
      const x = randomArray(M * K, M + K), bias = randomArray(N, 3), gy = randomArray(M * N, 4);
      const want = new Float64Array(M * N), wantDx = new Float64Array(M * K);
      matmulQ4Reference(want, x, codes, dq.deq, bias, { ...l, M });
      matmulQ4BackwardReference(wantDx, gy, codes, dq.deq, { ...l, M });
      for (const be of g ? [c, g] : [c]) {
        const q = uploadDq(be, codes, dq, l);
        const msg = `${be.name} ${kind} [${lead}] N=${N} K=${K}`;
        const xt = be.fromArray(x, [...lead, K]);
        xt.requiresGrad = true;
        const y = linearQ4(xt, q, be.fromArray(bias, [N]));
        const cmp = assertAllClose(await y.toArray(), want, { atol: 1e-4, rtol: 1e-5, msg });
        backward(y, be.fromArray(gy, [...lead, N]));
        const cmp2 = assertAllClose(await xt.grad!.toArray(), wantDx, {
          atol: 1e-4,
          rtol: 1e-5,
          msg: `${msg} dx`,
        });
        if (be === g) worst = Math.max(worst, cmp.maxAbs, cmp2.maxAbs);
        q.dispose();
      }
    }
  }
  if (g) {
    console.error(
      `matmulQ4 (+ backward) with double quant, webgpu vs f64: max abs err ${worst.toExponential(2)}`,
    );
  }
});

Deno.test("NF4 + double quant takes <= 14% of the f32 bytes: 4096 x 4096 and a real tensor", async () => {
  const big: QuantLayout = { N: 4096, K: 4096, kind: "nf4", blockSize: 64 };
  const f32 = 4096 * 4096 * 4;
  const single = quantizedBytes(big), dq = quantizedBytes(big, { doubleQuant: true });
  // codes 8 MiB; scales 1 MiB f32, or 256 KiB of 8-bit codes + 1024 f32 absmax + the offset
  assert.equal(single, 8388608 + 1048576);
  assert.equal(dq, 8388608 + 262144 + 4096 + 4);
  console.error(
    `4096 x 4096 nf4/64: f32 ${f32} B; single ${single} B (${(100 * single / f32).toFixed(2)}%, ${
      (32 * single / f32).toFixed(3)
    } bits/weight); double quant ${dq} B (${(100 * dq / f32).toFixed(2)}%, ${
      (32 * dq / f32).toFixed(3)
    } bits/weight)`,
  );
  assert.ok(dq / f32 <= 0.14 && single / f32 > 0.14);
  const N = 96, K = 1000; // padded to 1024: 1536 scales
  const w = gaussian(N * K, 5, 0.02);
  for (const be of await backends()) {
    const t = be.fromArray(w, [N, K]);
    const q1 = quantize(t), q2 = quantize(t, { doubleQuant: true });
    assert.equal(q1.bytes, quantizedBytes(q1.layout));
    assert.equal(q2.bytes, quantizedBytes(q2.layout, { doubleQuant: true }));
    assert.equal(q2.bytes, 49152 + 1536 + 24 + 4);
    assert.ok(q2.bytes / t.bytes <= 0.14, `${be.name}: ${q2.bytes} / ${t.bytes}`);
    if (be.gpu) {
      // what the device really holds (buffers are pool size classes)
      const held = (q: QuantizedTensor) =>
        [q.codes, ...q.scaleTensors].reduce((a, x) => a + x.storage.buffer!.size, 0);
      assert.ok(held(q2) < held(q1), `device buffers ${held(q2)} vs ${held(q1)}`);
    }
    for (const x of [t, q1, q2]) x.dispose();
  }
});

Deno.test("QuantizedTensor rejects double-quantized scales of the wrong shape or dtype", async () => {
  const c = await cpu();
  const codes = c.empty([3, 16], "u32"); // [3, 72] at 64: 6 scales -> 2 words, 1 block
  const sc = (w: number, b: number, o: number, dt: "u32" | "f32" = "u32"): QuantizedScales => ({
    codes: c.empty([w], dt),
    absmax: c.empty([b]),
    offset: c.empty([o]),
  });
  const make = (s: QuantizedScales) => new QuantizedTensor(codes, s, [3, 72], { kind: "nf4" });
  assert.equal(make(sc(2, 1, 1)).doubleQuant, true);
  assert.throws(() => make(sc(3, 1, 1)), /scale codes has shape \[3\], expected \[2\]/);
  assert.throws(() => make(sc(2, 2, 1)), /scale absmax has shape \[2\], expected \[1\]/);
  assert.throws(() => make(sc(2, 1, 2)), /scale offset has shape \[2\], expected \[1\]/);
  assert.throws(() => make(sc(2, 1, 1, "f32")), /scale codes has dtype f32, expected u32/);
  assert.match(String(make(sc(2, 1, 1))), /nf4\/64\+dq/);
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
