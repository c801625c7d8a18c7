import {
  autotuneMatmul,
  describeMatmulConfig,
  matmul,
  type MatmulActivation,
  matmulBackward,
  matmulBackwardReference,
  type MatmulConfig,
  matmulForward,
  type MatmulOptions,
  matmulReference,
} from "../../kernels/matmul.ts";
import { shapeClass } from "../../kernels/_matmul_tune.ts";
import { isCpuAdapter } from "../../kernels/gpu.ts";
import { parseConfigKey } from "../../kernels/_matmul_wgsl.ts";
import { backward } from "../../kernels/autograd.ts";
import { type Backend, createBackend } from "../../kernels/backend.ts";
import { mul } from "../../kernels/elementwise.ts";
import { sum } from "../../kernels/reduce.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { backends, compareBackends, cpu, dot, gradcheck, rand64, webgpu } from "../_check.ts";

/** One case: batch dims, M, K, N and the options (bias given as a flag). */
interface Case {
  batch?: number[];
  M: number;
  K: number;
  N: number;
  bBatched?: boolean;
  opts?: Omit<MatmulOptions, "bias" | "pre"> & { bias?: boolean };
}

const prod = (s: number[]) => s.reduce((p, d) => p * d, 1);

function shapes(c: Case) {
  const batch = c.batch ?? [];
  const { M, K, N } = c;
  const aShape = [...batch, ...(c.opts?.transA ? [K, M] : [M, K])];
  const bShape = [...(c.bBatched ? batch : []), ...(c.opts?.transB ? [N, K] : [K, N])];
  return { aShape, bShape, oShape: [...batch, M, N] };
}

/** Run a case on both backends; returns the max relative error (webgpu vs the f64 reference). */
async function check(label: string, c: Case, seed = 1): Promise<number> {
  const { aShape, bShape, oShape } = shapes(c);
  const a = randomArray(prod(aShape), seed), b = randomArray(prod(bShape), seed + 1);
  const bias = randomArray(c.N, seed + 2), init = randomArray(prod(oShape), seed + 3);
  const cmp = await compareBackends(label, (be: Backend) => {
    const out = be.fromArray(init, oShape);
    matmulForward(out, be.fromArray(a, aShape), be.fromArray(b, bShape), {
      ...c.opts,
      bias: c.opts?.bias ? be.fromArray(bias, [c.N]) : null,
    });
    return [out];
  }, { atol: 2e-5 * Math.sqrt(c.K + 1), rtol: 1e-4 });
  return cmp[0]?.maxAbs ?? 0;
}

const ODD: Case[] = [
  { M: 1, K: 1, N: 1 },
  { M: 1, K: 64, N: 48 },
  { M: 1, K: 300, N: 257, opts: { transB: true } },
  { M: 7, K: 13, N: 5 },
  { M: 33, K: 65, N: 17 },
  { M: 64, K: 64, N: 64 },
  { M: 100, K: 300, N: 50 },
];

Deno.test("matmul() matches the reference on odd shapes, M = 1 decode included", async () => {
  const errs: string[] = [];
  for (const c of ODD) {
    errs.push(`${c.M}x${c.K}x${c.N}: ${(await check(`${c.M}x${c.K}x${c.N}`, c)).toExponential(1)}`);
  }
  console.log(`max abs error vs reference: ${errs.join(", ")}`);
});

Deno.test("matmul() handles all four transpose combinations", async () => {
  for (const [M, K, N] of [[33, 65, 17], [16, 32, 12]]) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        await check(`${M}x${K}x${N} tA=${transA} tB=${transB}`, { M, K, N, opts: { transA, transB } });
      }
    }
  }
});

Deno.test("matmul() runs thin products (LoRA rank 16, odd rank 5) on the thin config in every layout", async () => {
  // M * N * K >= 2^21 with M or N <= 32: the `thin` shape class (no staging, a narrow tile)
  for (const [M, K, N] of [[520, 300, 16], [16, 300, 520], [700, 600, 5]]) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        await check(`${M}x${K}x${N} tA=${transA} tB=${transB}`, { M, K, N, opts: { transA, transB } });
      }
    }
  }
});

Deno.test("matmul() handles batches and a b shared by every batch", async () => {
  await check("batched 3x17x9x11", { batch: [3], M: 17, K: 9, N: 11, bBatched: true });
  await check("batched 2x3 dims", {
    batch: [2, 3],
    M: 5,
    K: 8,
    N: 4,
    bBatched: true,
    opts: { transB: true },
  });
  await check("shared b", { batch: [3], M: 17, K: 9, N: 11 });
  await check("shared b transposed", {
    batch: [2, 2],
    M: 6,
    K: 12,
    N: 20,
    opts: { transA: true, transB: true },
  });
});

Deno.test("matmul() fuses bias, every activation, alpha and accumulate", async () => {
  const acts: MatmulActivation[] = ["none", "relu", "gelu_tanh", "gelu_erf", "silu"];
  for (const [M, K, N] of [[13, 20, 9], [8, 16, 12]]) {
    for (const activation of acts) {
      await check(`${activation} ${M}x${K}x${N}`, {
        M,
        K,
        N,
        opts: { bias: true, activation, transB: true },
      });
    }
    await check(`alpha ${M}x${K}x${N}`, { M, K, N, opts: { alpha: -0.375, bias: true } });
    await check(`accumulate ${M}x${K}x${N}`, { M, K, N, opts: { accumulate: true } });
    await check(`accumulate+act ${M}x${K}x${N}`, {
      M,
      K,
      N,
      opts: { accumulate: true, bias: true, activation: "silu", alpha: 2 },
    });
  }
});

const FAMILIES: MatmulConfig[] = [
  { family: "tex", tm: 12, tn: 16, wg: 32 },
  { family: "tex", tm: 8, tn: 4, wg: 16 },
  { family: "reg", tm: 8, tn: 8, wg: 16 },
  { family: "tile", tm: 2, tn: 4, wx: 8, wy: 8, bk: 16 },
];

Deno.test("matmul() runs every kernel family on odd and aligned shapes", async () => {
  for (const config of FAMILIES) {
    for (const [M, K, N, transA, transB] of [[33, 65, 17, 0, 1], [32, 64, 48, 1, 0]] as const) {
      {
        await check(`${JSON.stringify(config)} ${M}x${K}x${N} tA=${transA} tB=${transB}`, {
          batch: [2],
          M,
          K,
          N,
          opts: {
            config,
            transA: !!transA,
            transB: !!transB,
            bias: true,
            activation: "gelu_erf",
            alpha: 0.5,
          },
        });
      }
    }
  }
});

Deno.test("matmul() handles K not a multiple of the tile", async () => {
  for (const config of [FAMILIES[0], FAMILIES[2], FAMILIES[3]]) {
    for (const K of [1, 3, 67]) await check(`K=${K} ${config.family}`, { M: 9, K, N: 10, opts: { config } });
    await check(`K=5 ${config.family} tB`, { M: 9, K: 5, N: 12, opts: { config, transB: true } });
  }
});

Deno.test("matmul() splits operands over the storage-binding limit into aligned windows", async () => {
  const config: MatmulConfig = { family: "reg", tm: 4, tn: 8, wg: 16 };
  // LM-head like: b (N, K) transposed over the limit -> N windows; out over the limit -> M windows.
  await check("lm head windows", {
    M: 50,
    K: 64,
    N: 300,
    opts: { transB: true, bias: true, maxBinding: 16384, config },
  });
  await check("lm head odd windows", {
    M: 21,
    K: 37,
    N: 301,
    opts: { transB: true, bias: true, activation: "gelu_tanh", maxBinding: 8192, config },
  });
  // b (K, N) over the limit -> K windows accumulating (bias added once).
  await check("k windows", { M: 20, K: 96, N: 80, opts: { bias: true, maxBinding: 8192, config } });
  await check("k windows accumulate", {
    M: 20,
    K: 96,
    N: 80,
    opts: { accumulate: true, maxBinding: 8192, config },
  });
  await check("transA k windows", { M: 40, K: 90, N: 8, opts: { transA: true, maxBinding: 8192, config } });
  await check("batched windows", {
    batch: [2],
    M: 30,
    K: 40,
    N: 70,
    bBatched: true,
    opts: { maxBinding: 8192, config },
  });
  // The texture family falls back to buffers when windows are needed.
  await check("tex fallback", {
    M: 50,
    K: 64,
    N: 300,
    opts: { transB: true, maxBinding: 16384, config: FAMILIES[0] },
  });
  const g = await webgpu();
  if (g) {
    const be = g;
    assert.throws(
      () =>
        matmulForward(be.zeros([4, 8]), be.zeros([4, 64]), be.zeros([64, 8]), {
          activation: "relu",
          maxBinding: 1024,
          config,
        }),
      /exceeds one storage binding along K/,
    );
  }
});

Deno.test("matmul() rejects mismatched shapes and dtypes before dispatch", async () => {
  for (const be of await backends()) {
    const before = be.gpu?.stats.dispatches ?? 0;
    const a = be.zeros([4, 8]), b = be.zeros([7, 5]);
    assert.throws(() => matmul(a, b), /Cannot run matmul: contracted dims differ/);
    assert.throws(() => matmul(a, be.zeros([5, 8]), { transB: false }), /contracted dims differ/);
    assert.throws(() => matmul(be.zeros([8]), be.zeros([8, 2])), /rank >= 2/);
    assert.throws(() => matmul(be.zeros([2, 4, 8]), be.zeros([3, 8, 5])), /batch dims differ/);
    assert.throws(() => matmul(a, be.zeros([8, 5], "i32")), /b has dtype i32, expected f32/);
    assert.throws(
      () => matmul(a, be.zeros([8, 5]), { bias: be.zeros([4]) }),
      /bias has shape \[4\], expected \[5\]/,
    );
    assert.throws(
      () => matmulForward(be.zeros([4, 6]), a, be.zeros([8, 5])),
      /out has shape \[4, 6\], expected \[4, 5\]/,
    );
    assert.throws(() => matmul(a, be.zeros([8, 5]), { alpha: NaN }), /alpha NaN is not finite/);
    assert.equal(be.gpu?.stats.dispatches ?? 0, before);
  }
});

// ---- gradients ----

function refForward(c: Case, xs: Float64Array[], pre: Float64Array | null): Float64Array {
  const { M, N, K } = c;
  const batch = prod(c.batch ?? []);
  const out = new Float64Array(batch * M * N);
  matmulReference(out, xs[0], xs[1], {
    batch,
    M,
    N,
    K,
    transA: c.opts?.transA,
    transB: c.opts?.transB,
    bBatched: c.bBatched,
    bias: c.opts?.bias ? xs[2] : null,
    activation: c.opts?.activation,
    alpha: c.opts?.alpha,
    pre,
  });
  return out;
}

const GRAD_CASES: Case[] = [
  { M: 5, K: 7, N: 3, opts: { bias: true, activation: "gelu_tanh", transB: true } },
  { M: 4, K: 6, N: 5, opts: { activation: "gelu_erf", transA: true, alpha: 0.7 } },
  { batch: [2], M: 3, K: 4, N: 5, opts: { bias: true, activation: "silu" } },
  { batch: [2], M: 3, K: 4, N: 5, bBatched: true, opts: { transA: true, transB: true, activation: "relu" } },
];

Deno.test("matmul reference backward matches finite differences in f64", () => {
  for (const c of GRAD_CASES) {
    const { aShape, bShape, oShape } = shapes(c);
    const w = rand64(prod(oShape), 11);
    const inputs = [
      rand64(prod(aShape), 1),
      rand64(prod(bShape), 2),
      ...(c.opts?.bias ? [rand64(c.N, 3)] : []),
    ];
    gradcheck(
      `matmul ${JSON.stringify(c)}`,
      (xs) => dot(w, refForward(c, xs, null)),
      (xs) => {
        const pre = new Float64Array(prod(oShape));
        refForward(c, xs, pre);
        const dA = new Float64Array(xs[0].length), dB = new Float64Array(xs[1].length);
        const dBias = c.opts?.bias ? new Float64Array(c.N) : null;
        matmulBackwardReference(dA, dB, dBias, w, xs[0], xs[1], {
          batch: prod(c.batch ?? []),
          M: c.M,
          N: c.N,
          K: c.K,
          transA: c.opts?.transA,
          transB: c.opts?.transB,
          bBatched: c.bBatched,
          activation: c.opts?.activation,
          alpha: c.opts?.alpha,
          pre,
        });
        return dBias ? [dA, dB, dBias] : [dA, dB];
      },
      inputs,
      { atol: 1e-7, rtol: 1e-6 },
    );
  }
});

Deno.test("matmul() autograd gives the reference gradients on both backends", async () => {
  const cases: Case[] = [
    ...GRAD_CASES,
    { batch: [3], M: 6, K: 9, N: 10, opts: { transA: true, bias: true, activation: "silu" } },
    { batch: [2], M: 33, K: 20, N: 17, opts: { transB: true, bias: true, activation: "gelu_tanh" } },
  ];
  for (const c of cases) {
    const { aShape, bShape, oShape } = shapes(c);
    const a = randomArray(prod(aShape), 1), b = randomArray(prod(bShape), 2), bias = randomArray(c.N, 3);
    const w = randomArray(prod(oShape), 4);
    // f64 reference gradients of sum(w * out)
    const pre = new Float64Array(prod(oShape));
    const xs = [Float64Array.from(a), Float64Array.from(b), Float64Array.from(bias)];
    refForward(c, xs, pre);
    const want = [new Float64Array(a.length), new Float64Array(b.length), new Float64Array(c.N)];
    matmulBackwardReference(want[0], want[1], c.opts?.bias ? want[2] : null, w, xs[0], xs[1], {
      ...c,
      ...c.opts,
      batch: prod(c.batch ?? []),
      bias: undefined,
      pre,
    });
    for (const be of await backends()) {
      const ta = be.fromArray(a, aShape), tb = be.fromArray(b, bShape);
      const tbias = c.opts?.bias ? be.fromArray(bias, [c.N]) : null;
      for (const t of [ta, tb, tbias]) if (t) t.requiresGrad = true;
      const y = matmul(ta, tb, { ...c.opts, bias: tbias });
      let loss: Tensor = mul(y, be.fromArray(w, oShape));
      while (loss.rank > 0 && loss.size > 1) loss = sum(loss, 0);
      backward(loss);
      const got = [ta.grad!, tb.grad!, ...(tbias ? [tbias.grad!] : [])];
      for (let i = 0; i < got.length; i++) {
        assertAllClose(await got[i].toArray(), want[i], {
          atol: 1e-4,
          rtol: 1e-3,
          msg: `${be.name} ${JSON.stringify(c)} grad ${"abc"[i]}`,
        });
      }
    }
  }
});

Deno.test("autotuneMatmul() measures, caches on disk and describes the chosen config", async () => {
  const g = await webgpu();
  if (!g) return;
  const gpu = g.device;
  const dir = await Deno.makeTempDir();
  const prev = Deno.env.get("FLEDGE_CACHE_DIR");
  Deno.env.set("FLEDGE_CACHE_DIR", dir);
  try {
    const r = await autotuneMatmul(gpu, {
      force: true,
      reps: 1,
      candidates: {
        gemm: [{ family: "reg", tm: 4, tn: 8, wg: 16 }],
        thin: [{ family: "reg", tm: 8, tn: 4, wg: 16 }],
        narrow: [{ family: "reg", tm: 8, tn: 16, wg: 16 }],
        gemv: [{ family: "reg", tm: 1, tn: 8, wg: 16 }],
      },
      shapes: { gemm: [64, 64, 64], thin: [64, 64, 8], narrow: [32, 64, 32], gemv: [1, 64, 64] },
    });
    assert.equal(r.source, "measured");
    // narrow (at most 64 rows, or a 128 x 128 output) is a class of CPU adapters only
    assert.deepEqual(
      r.timings.map((t) => t.class),
      isCpuAdapter(gpu) ? ["gemm", "thin", "narrow", "gemv"] : ["gemm", "thin", "gemv"],
    );
    assert.equal(r.configs.gemm.family, "reg");
    const disk = JSON.parse(await Deno.readTextFile(`${dir}/matmul.json`));
    assert.equal(disk.adapters[gpu.info.description].gemm, "reg:4x8:16");
    assert.equal(disk.adapters[gpu.info.description].thin, "reg:8x4:16");
    assert.match(describeMatmulConfig(gpu), /gemm reg:4x8:16, thin reg:8x4:16/);
    const again = await autotuneMatmul(gpu);
    assert.equal(again.source, "memory");
    // another device reads the disk cache; one written before a tuned class existed reads as none
    for (const drop of [false, true]) {
      if (drop) {
        delete disk.adapters[gpu.info.description].narrow;
        await Deno.writeTextFile(`${dir}/matmul.json`, JSON.stringify(disk));
      }
      const other = await createBackend("webgpu");
      assert.match(describeMatmulConfig(other.gpu!), drop ? /\(default\)/ : /\(disk\): gemm reg:4x8:16/);
      other.destroy();
    }
    // products still match the reference with the tuned config
    await check("after autotune", { M: 70, K: 64, N: 40, opts: { transB: true } });
  } finally {
    if (prev === undefined) Deno.env.delete("FLEDGE_CACHE_DIR");
    else Deno.env.set("FLEDGE_CACHE_DIR", prev);
    await Deno.remove(dir, { recursive: true });
  }
  void cpu;
});

// ---- f16 weights (b stored as f16, read as f32) ----

/**
 * Run a case with an f16 b on both backends against the f64 reference on the f16-rounded b;
 * returns the max abs error over the backends.
 */
async function checkF16(label: string, c: Case, seed = 5): Promise<number> {
  const { aShape, bShape, oShape } = shapes(c);
  const a = randomArray(prod(aShape), seed), b = randomArray(prod(bShape), seed + 1);
  const bias = randomArray(c.N, seed + 2), init = randomArray(prod(oShape), seed + 3);
  const b16 = Float16Array.from(b);
  const want = Float64Array.from(init);
  matmulReference(want, Float64Array.from(a), Float64Array.from(b16), {
    batch: prod(c.batch ?? []),
    M: c.M,
    N: c.N,
    K: c.K,
    transA: c.opts?.transA,
    transB: c.opts?.transB,
    bBatched: c.bBatched,
    bias: c.opts?.bias ? Float64Array.from(bias) : null,
    activation: c.opts?.activation,
    alpha: c.opts?.alpha,
    accumulate: c.opts?.accumulate,
  });
  let worst = 0;
  for (const be of await backends()) {
    const out = be.fromArray(init, oShape);
    const tb = be.fromArray(b, bShape, "f16");
    assert.equal(tb.dtype, "f16");
    matmulForward(out, be.fromArray(a, aShape), tb, {
      ...c.opts,
      bias: c.opts?.bias ? be.fromArray(bias, [c.N]) : null,
    });
    const cmp = assertAllClose(await out.toArray(), want, {
      atol: 2e-5 * Math.sqrt(c.K + 1),
      rtol: 1e-4,
      msg: `f16 b ${label} ${be.name}`,
    });
    worst = Math.max(worst, cmp.maxAbs);
  }
  return worst;
}

Deno.test("matmul() reads an f16 b on odd shapes, M = 1 decode included, transB and not", async () => {
  const errs: string[] = [];
  for (const c of ODD) {
    for (const transB of [false, true]) {
      const e = await checkF16(`${c.M}x${c.K}x${c.N} tB=${transB}`, { ...c, opts: { transB } });
      errs.push(`${c.M}x${c.K}x${c.N}${transB ? "T" : ""}: ${e.toExponential(1)}`);
    }
  }
  console.log(`f16 b, max abs error vs the f64 reference of the rounded b: ${errs.join(", ")}`);
  // The rounding is all there is: an f16 b is not the f32 b.
  const be = await cpu();
  const x = be.fromArray([1], [1, 1]);
  const w = 1 + 2 ** -12;
  assert.equal((await matmul(x, be.fromArray([w], [1, 1])).toArray())[0], w);
  assert.equal((await matmul(x, be.fromArray([w], [1, 1], "f16")).toArray())[0], 1);
});

Deno.test("matmul() with an f16 b fuses bias, activations, alpha and accumulate on every family", async () => {
  const acts: MatmulActivation[] = ["none", "relu", "gelu_tanh", "gelu_erf", "silu"];
  for (const activation of acts) {
    await checkF16(`${activation}`, { M: 13, K: 20, N: 9, opts: { bias: true, activation, transB: true } });
  }
  await checkF16("alpha+accumulate", { M: 8, K: 16, N: 12, opts: { alpha: -0.375, accumulate: true } });
  for (const config of FAMILIES) {
    for (
      const [M, K, N, transA, transB] of [[33, 65, 17, 0, 1], [32, 64, 48, 1, 0], [9, 5, 12, 0, 1]] as const
    ) {
      await checkF16(`${JSON.stringify(config)} ${M}x${K}x${N} tA=${transA} tB=${transB}`, {
        batch: [2],
        M,
        K,
        N,
        opts: { config, transA: !!transA, transB: !!transB, bias: true, activation: "gelu_erf", alpha: 0.5 },
      });
    }
  }
  // M = 1 decode on the tuned gemv config (vec4<f16> rows) and a batched f16 b.
  await checkF16("decode 1x256x96", { M: 1, K: 256, N: 96, opts: { transB: true, bias: true } });
  await checkF16("batched f16 b", { batch: [3], M: 5, K: 8, N: 7, bBatched: true, opts: { transB: true } });
});

Deno.test("matmul() reads a transposed f16 b 8 halves per load when K % 8 == 0", async () => {
  const gemv: MatmulConfig = { family: "reg", tm: 1, tn: 32, wg: 8 };
  for (const K of [8, 24, 136]) {
    for (const config of [gemv, FAMILIES[2]]) {
      await checkF16(`packed K=${K} ${JSON.stringify(config)}`, {
        batch: [2],
        M: 3,
        K,
        N: 37,
        opts: { transB: true, bias: true, activation: "gelu_tanh", config },
      });
    }
  }
  await checkF16("packed, K % 8 == 4", { M: 1, K: 36, N: 40, opts: { transB: true, config: gemv } });
});

Deno.test("matmul() splits an f16 b over the storage-binding limit into windows", async () => {
  const config: MatmulConfig = { family: "reg", tm: 4, tn: 8, wg: 16 };
  await checkF16("N windows", {
    M: 50,
    K: 64,
    N: 300,
    opts: { transB: true, bias: true, maxBinding: 8192, config },
  });
  await checkF16("odd N windows", {
    M: 21,
    K: 37,
    N: 301,
    opts: { transB: true, activation: "gelu_tanh", maxBinding: 8192, config },
  });
  await checkF16("K windows", { M: 20, K: 96, N: 80, opts: { bias: true, maxBinding: 8192, config } });
  await checkF16("tex fallback", {
    M: 50,
    K: 64,
    N: 300,
    opts: { transB: true, maxBinding: 16384, config: FAMILIES[0] },
  });
});

Deno.test("matmul() gives dA through a frozen f16 b and refuses its gradient", async () => {
  const cases: Case[] = [
    { M: 5, K: 7, N: 3, opts: { bias: true, activation: "gelu_tanh", transB: true } },
    { batch: [2], M: 33, K: 20, N: 17, opts: { transB: true, bias: true, activation: "silu" } },
    { M: 4, K: 6, N: 5, opts: { activation: "gelu_erf", transA: true, alpha: 0.7 } },
    { batch: [3], M: 6, K: 9, N: 10, opts: { transA: true, transB: true } },
  ];
  for (const c of cases) {
    const { aShape, bShape, oShape } = shapes(c);
    const a = randomArray(prod(aShape), 1), b = randomArray(prod(bShape), 2), bias = randomArray(c.N, 3);
    const w = randomArray(prod(oShape), 4);
    const pre = new Float64Array(prod(oShape));
    const xs = [Float64Array.from(a), Float64Array.from(Float16Array.from(b)), Float64Array.from(bias)];
    refForward(c, xs, pre);
    const wantA = new Float64Array(a.length), wantBias = new Float64Array(c.N);
    matmulBackwardReference(wantA, null, c.opts?.bias ? wantBias : null, w, xs[0], xs[1], {
      ...c,
      ...c.opts,
      batch: prod(c.batch ?? []),
      bias: undefined,
      pre,
    });
    for (const be of await backends()) {
      const ta = be.fromArray(a, aShape), tb = be.fromArray(b, bShape, "f16");
      const tbias = c.opts?.bias ? be.fromArray(bias, [c.N]) : null;
      ta.requiresGrad = true;
      if (tbias) tbias.requiresGrad = true;
      const y = matmul(ta, tb, { ...c.opts, bias: tbias });
      let loss: Tensor = mul(y, be.fromArray(w, oShape));
      while (loss.rank > 0 && loss.size > 1) loss = sum(loss, 0);
      backward(loss);
      assert.equal(tb.grad, null);
      const msg = `${be.name} f16 b ${JSON.stringify(c)}`;
      assertAllClose(await ta.grad!.toArray(), wantA, { atol: 1e-4, rtol: 1e-3, msg: `${msg} dA` });
      if (tbias) assertAllClose(await tbias.grad!.toArray(), wantBias, { atol: 1e-4, rtol: 1e-3, msg });
    }
  }
  for (const be of await backends()) {
    const before = be.gpu?.stats.dispatches ?? 0;
    const a = be.zeros([4, 8]), b = be.zeros([5, 8], "f16");
    b.name = "layers.0.attn.q.weight";
    b.requiresGrad = true;
    assert.throws(
      () => matmul(a, b, { transB: true }),
      /Cannot run matmul backward: b \(layers\.0\.attn\.q\.weight\) \[5, 8\] is f16 and needs a gradient; .*dtype "f32".*LoRA/,
    );
    assert.throws(
      () => matmulBackward(null, be.zeros([5, 8]), be.zeros([4, 5]), a, b, { transB: true }),
      /is f16 and needs a gradient/,
    );
    assert.throws(() => matmul(a, be.zeros([8, 5], "i32")), /b has dtype i32, expected f32 or f16/);
    assert.throws(() => matmul(be.zeros([4, 8], "f16"), be.zeros([8, 5])), /a has dtype f16, expected f32/);
    assert.equal(be.gpu?.stats.dispatches ?? 0, before);
  }
});

Deno.test("matmul() with an f16 b names the missing shader-f16 feature", async () => {
  const be = await webgpu();
  if (!be) return;
  const features = be.device.features as Set<string>;
  const had = features.has("shader-f16");
  features.delete("shader-f16"); // pretend the adapter does not offer it
  try {
    const before = be.device.stats.dispatches;
    assert.throws(
      () => matmul(be.zeros([2, 8]), be.zeros([3, 8], "f16"), { transB: true }),
      (e: Error) =>
        e instanceof TypeError &&
        /Cannot run matmul: b \[3, 8\] is f16 but the device \(.*\) lacks the shader-f16 feature; upload the weight as f32/
          .test(e.message),
    );
    assert.equal(be.device.stats.dispatches, before);
  } finally {
    if (had) features.add("shader-f16");
  }
});

Deno.test("shapeClass(): decode-sized products and 128 x 128 outputs are thin on CPU adapters only; tiny and M <= 4 keep their classes", () => {
  // [M, K, N, cpu] -> class
  const want: [number, number, number, boolean, string][] = [
    [64, 128, 384, true, "narrow"], // a decode step's MLP with 64 rows
    [64, 128, 384, false, "gemm"], // GPUs keep the tiles
    [64, 128, 4096, true, "narrow"], // the LM head of a decode step
    [128, 4096, 128, true, "narrow"], // a q/k/v/o weight gradient over 4096 tokens
    [128, 4096, 128, false, "gemm"],
    [128, 128, 384, true, "gemm"],
    [384, 4096, 128, true, "gemm"],
    [4096, 128, 16, false, "thin"], // LoRA's rank-16 product, every adapter
    [4096, 128, 16, true, "thin"],
    [64, 128, 128, true, "small"], // under 2^21 multiply-adds
    [1, 2048, 2048, true, "gemv"],
  ];
  for (const [M, K, N, isCpu, cls] of want) {
    assert.equal(shapeClass(M, N, K, isCpu), cls, `${M}x${K}x${N} cpu=${isCpu}`);
  }
});

Deno.test("matmul() tex and reg families give the same bits (so shapeClass may move products between them)", async () => {
  const gpu = await webgpu();
  if (!gpu) return;
  const tex = parseConfigKey("tex:12x16:32")!, reg = parseConfigKey("reg:8x16:16")!;
  // [M, K, N, transA, transB]: a weight gradient over tokens, a decode step's MLP, an odd K
  for (
    const [M, K, N, transA, transB] of [[128, 300, 128, true, false], [64, 128, 384, false, true], [
      40,
      37,
      24,
      false,
      false,
    ]] as const
  ) {
    const a = gpu.fromArray(randomArray(M * K, M + K), transA ? [K, M] : [M, K]);
    const b = gpu.fromArray(randomArray(K * N, K + N), transB ? [N, K] : [K, N]);
    const bits: number[][] = [];
    for (const config of [tex, reg]) {
      const out = gpu.empty([M, N]);
      matmulForward(out, a, b, { transA, transB, config });
      bits.push([...new Uint32Array((await out.toArray() as Float32Array).slice().buffer)]);
    }
    assert.deepEqual(bits[1], bits[0], `${M}x${K}x${N}`);
  }
});
