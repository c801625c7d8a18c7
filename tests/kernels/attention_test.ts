import {
  attention,
  attentionBackward,
  attentionBackwardReference,
  attentionConfigFor,
  attentionForward,
  type AttentionOptions,
  attentionReference,
  type AttentionReferenceOptions,
  kernelConfigKey,
  regRows,
} from "../../kernels/attention.ts";
import { parseKernelConfig } from "../../kernels/_attention_tune.ts";
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import { assert, assertAllClose } from "../_assert.ts";
import { backends, compareBackends, dot, gradcheck, rand64, webgpu } from "../_check.ts";
import {
  type Case,
  checkForward,
  forward,
  inputs,
  maskData,
  segData,
  TOL,
  upload,
  worst,
} from "./_attention_cases.ts";

function cases(): Case[] {
  const heads = [[2, 2], [4, 2], [8, 1]] as const;
  const out: Case[] = [];
  let n = 0;
  for (const T of [1, 5, 17, 64, 130]) {
    for (const D of [16, 24, 64]) {
      const [H, Hkv] = heads[n % 3];
      const B = n % 2 ? 3 : 1;
      out.push({ B, Tq: T, Tk: T, H, Hkv, D, opts: { causal: n % 2 === 0 } });
      n++;
    }
  }
  return out;
}

Deno.test("attention() forward matches the reference over T, D, GQA, B, causal and not", async () => {
  for (const [i, c] of cases().entries()) await checkForward(c, 100 + i);
});

Deno.test("attention() flash and split-K paths both match the reference for few queries", async () => {
  const list: Case[] = [
    { B: 2, Tq: 1, Tk: 130, H: 4, Hkv: 2, D: 24, opts: { causal: true } },
    { B: 1, Tq: 3, Tk: 70, H: 8, Hkv: 2, D: 16, opts: { causal: true } },
    { B: 3, Tq: 2, Tk: 9, H: 2, Hkv: 2, D: 64 },
    // D not a multiple of 4: the vec4 kernels pad the row with zeros
    { B: 2, Tq: 3, Tk: 21, H: 4, Hkv: 2, D: 10, opts: { causal: true } },
    { B: 1, Tq: 1, Tk: 5, H: 1, Hkv: 1, D: 1 },
  ];
  for (const [i, c] of list.entries()) {
    await checkForward(c, 200 + i, "flash");
    await checkForward(c, 200 + i, "split_k");
  }
});

Deno.test("attention() key padding masks: right, left, fully masked rows, f32/i32/u32 masks", async () => {
  const list: Case[] = [
    { B: 3, Tq: 17, Tk: 17, H: 2, Hkv: 1, D: 16, opts: { causal: true }, pad: [0, 3, -4], maskDtype: "f32" },
    { B: 2, Tq: 17, Tk: 17, H: 4, Hkv: 2, D: 24, opts: {}, pad: [-5, 2], maskDtype: "i32" },
    { B: 2, Tq: 1, Tk: 40, H: 4, Hkv: 4, D: 16, opts: { causal: true }, pad: [-7, 0], maskDtype: "u32" },
    // every key of batch 1 padded: all its rows are fully masked
    { B: 2, Tq: 5, Tk: 5, H: 2, Hkv: 2, D: 16, opts: {}, pad: [1, 5], maskDtype: "f32" },
  ];
  for (const [i, c] of list.entries()) {
    await checkForward(c, 300 + i, "flash");
    if (c.Tq * c.H / c.Hkv <= 16) await checkForward(c, 300 + i, "split_k");
  }
  // Left-padded causal batch: pad queries see nothing -> exactly 0, lse finite, no NaN anywhere.
  const c = list[0];
  for (const be of await backends()) {
    const [out, lse] = forward(be, c, inputs(c, 300));
    const o = await out.toArray(), l = await lse.toArray();
    assert.ok(o.every(Number.isFinite) && l.every(Number.isFinite), `${be.name}: non-finite values`);
    // batch 2 has 4 left pads: query rows 0..3 see only pad keys
    const row = ((2 * c.Tq + 0) * c.H + 1) * c.D;
    assert.deepEqual([...o.slice(row, row + c.D)], new Array(c.D).fill(0));
  }
});

Deno.test("attention() sliding window follows HF: keys in (pos - W, pos]", async () => {
  const list: Case[] = [
    { B: 1, Tq: 17, Tk: 17, H: 2, Hkv: 2, D: 16, opts: { causal: true, sliding_window: 5 } },
    { B: 2, Tq: 130, Tk: 130, H: 4, Hkv: 1, D: 24, opts: { causal: true, sliding_window: 33 } },
    { B: 1, Tq: 1, Tk: 80, H: 4, Hkv: 2, D: 16, opts: { causal: true, sliding_window: 16 } },
  ];
  for (const [i, c] of list.entries()) await checkForward(c, 400 + i);
  // HF mask pattern for W = 3, T = 5 (masking_utils.sliding_window_causal_mask_function)
  const c: Case = { B: 1, Tq: 5, Tk: 5, H: 1, Hkv: 1, D: 1, opts: { causal: true, sliding_window: 3 } };
  const want = ["10000", "11000", "11100", "01110", "00111"];
  for (let i = 0; i < 5; i++) {
    const row: string[] = [];
    for (let j = 0; j < 5; j++) {
      // one-hot values: out_i = sum of P over visible keys with v = e_j
      const v = new Float64Array(5);
      v[j] = 1;
      const out = new Float64Array(5), lse = new Float64Array(5);
      attentionReference(out, lse, [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], v, { ...c, D: 1 }, c.opts);
      row.push(out[i] > 0 ? "1" : "0");
    }
    assert.equal(row.join(""), want[i], `row ${i}`);
  }
});

function refGrad(c: Case, mask: number[] | null, seg: number[] | null = null) {
  const dims = { B: c.B, Tq: c.Tq, Tk: c.Tk, H: c.H, Hkv: c.Hkv, D: c.D };
  const o = { ...c.opts, attention_mask: mask, segment_ids: seg } as AttentionReferenceOptions;
  return { dims, o };
}

Deno.test("attention reference backward matches f64 finite differences (causal, GQA, mask, window, cache)", () => {
  const list: Case[] = [
    { B: 1, Tq: 4, Tk: 4, H: 2, Hkv: 2, D: 3, opts: { causal: true } },
    { B: 2, Tq: 5, Tk: 5, H: 4, Hkv: 2, D: 4, opts: { causal: true, sliding_window: 2 }, pad: [0, -2] },
    { B: 1, Tq: 2, Tk: 7, H: 2, Hkv: 1, D: 3, opts: { causal: true, kv_len: 5 } },
    { B: 1, Tq: 3, Tk: 3, H: 1, Hkv: 1, D: 2, opts: {}, pad: [3] },
  ];
  for (const c of list) {
    const mask = maskData(c);
    const { dims, o } = refGrad(c, mask);
    const nq = c.B * c.Tq * c.H * c.D, nk = c.B * c.Tk * c.Hkv * c.D;
    const w = rand64(nq, 17);
    const f = (xs: Float64Array[]) => {
      const out = new Float64Array(nq), lse = new Float64Array(c.B * c.H * c.Tq);
      attentionReference(out, lse, xs[0], xs[1], xs[2], dims, o);
      return dot(w, out);
    };
    const g = (xs: Float64Array[]) => {
      const dq = new Float64Array(nq), dk = new Float64Array(nk), dv = new Float64Array(nk);
      attentionBackwardReference(dq, dk, dv, w, xs[0], xs[1], xs[2], dims, o);
      return [dq, dk, dv];
    };
    gradcheck(`attention ${JSON.stringify(c)}`, f, g, [rand64(nq, 1, 2), rand64(nk, 2, 2), rand64(nk, 3)], {
      count: 40,
    });
  }
});

async function checkBackward(c: Case, seed: number) {
  const x = inputs(c, seed);
  const cmp = await compareBackends(`backward ${JSON.stringify(c)}`, (be) => {
    const t = upload(be, c, x);
    const [out, lse] = forward(be, c, x, "flash");
    const dq = be.empty(t.q.shape), dk = be.empty(t.k.shape), dv = be.empty(t.v.shape);
    attentionBackward(dq, dk, dv, be.fromArray(x.dout, t.q.shape), t.q, t.k, t.v, out, lse, t.opts);
    return [dq, dk, dv];
  }, TOL);
  for (const r of cmp) worst.bwd = Math.max(worst.bwd, r.maxAbs);
}

Deno.test("attention() webgpu backward equals the cpu backward (GQA, causal, masks, window, cache)", async () => {
  const list: Case[] = [
    { B: 1, Tq: 1, Tk: 1, H: 2, Hkv: 2, D: 16 },
    { B: 3, Tq: 17, Tk: 17, H: 4, Hkv: 2, D: 24, opts: { causal: true } },
    { B: 1, Tq: 130, Tk: 130, H: 8, Hkv: 1, D: 16, opts: { causal: true } },
    { B: 2, Tq: 64, Tk: 64, H: 2, Hkv: 2, D: 64, opts: {} },
    { B: 2, Tq: 33, Tk: 33, H: 4, Hkv: 2, D: 16, opts: { causal: true, sliding_window: 7 }, pad: [-5, 3] },
    { B: 2, Tq: 5, Tk: 80, H: 4, Hkv: 2, D: 24, opts: { causal: true, kv_len: 70 }, pad: [0, 2] },
    { B: 2, Tq: 19, Tk: 19, H: 2, Hkv: 1, D: 10, opts: { causal: true } },
  ];
  for (const [i, c] of list.entries()) await checkBackward(c, 600 + i);
});

Deno.test("attention() kernel families tile, reg and tex agree with the reference (odd rows per invocation and keys per step)", async () => {
  const fams: AttentionOptions["kernels"][] = [
    { forward: { family: "tile" }, dq: { family: "tile" }, dkv: { family: "tile" } },
    {
      forward: { family: "reg", rows: 3, bk: 3, wg: 8 },
      dq: { family: "reg", rows: 3, bk: 2, wg: 8 },
      dkv: { family: "reg", rows: 3, bk: 1, wg: 8 },
    },
    {
      forward: { family: "tex", rows: 3, bk: 3, wg: 8 },
      dq: { family: "tex", rows: 2, bk: 3, wg: 16 },
      dkv: { family: "tex", rows: 3, bk: 1, wg: 8 },
    },
    // mixed: the dK/dV kernel reads di written by the tile path's row-dot kernel, and vice versa
    {
      forward: { family: "tex", rows: 5, bk: 1, wg: 8 },
      dq: { family: "tile" },
      dkv: { family: "tex", rows: 2, bk: 1, wg: 8 },
    },
    { dq: { family: "tex", rows: 2, bk: 1, wg: 8 }, dkv: { family: "tile" } },
  ];
  const list: Case[] = [
    { B: 2, Tq: 19, Tk: 19, H: 4, Hkv: 2, D: 24, opts: { causal: true }, pad: [-3, 2], maskDtype: "f32" },
    { B: 1, Tq: 5, Tk: 23, H: 2, Hkv: 1, D: 10, opts: { causal: true, kv_len: 20, sliding_window: 7 } },
    { B: 1, Tq: 9, Tk: 9, H: 2, Hkv: 2, D: 16, opts: {} },
  ];
  for (const kernels of fams) {
    for (const [i, c] of list.entries()) {
      const x = inputs(c, 800 + i);
      const cmp = await compareBackends(`kernels ${JSON.stringify(kernels)} ${JSON.stringify(c)}`, (be) => {
        const t = upload(be, c, x);
        const o = { ...t.opts, kernels, path: "flash" as const };
        const out = be.empty(t.q.shape), lse = be.empty([c.B, c.H, c.Tq]);
        attentionForward(out, lse, t.q, t.k, t.v, o);
        const dq = be.empty(t.q.shape), dk = be.empty(t.k.shape), dv = be.empty(t.v.shape);
        attentionBackward(dq, dk, dv, be.fromArray(x.dout, t.q.shape), t.q, t.k, t.v, out, lse, o);
        return [out, lse, dq, dk, dv];
      }, TOL);
      for (const r of cmp) worst.bwd = Math.max(worst.bwd, r.maxAbs);
    }
  }
});

Deno.test("attention() records backward for q, k, v and frees the saved logsumexp", async () => {
  const c: Case = { B: 2, Tq: 5, Tk: 5, H: 4, Hkv: 2, D: 16, opts: { causal: true } };
  const x = inputs(c, 700);
  const grads: Float32Array[][] = [];
  for (const be of await backends()) {
    const t = upload(be, c, x);
    for (const p of [t.q, t.k, t.v]) p.requiresGrad = true;
    const y = attention(t.q, t.k, t.v, t.opts);
    assert.equal(y.node?.saved.length, 1);
    const saved = y.node!.saved[0];
    backward(y, be.fromArray(x.dout, t.q.shape));
    assert.ok(saved.disposed);
    grads.push(await Promise.all([t.q, t.k, t.v].map((p) => p.grad!.toArray() as Promise<Float32Array>)));
  }
  const dims = { B: c.B, Tq: c.Tq, Tk: c.Tk, H: c.H, Hkv: c.Hkv, D: c.D };
  const want = [new Float64Array(x.q.length), new Float64Array(x.k.length), new Float64Array(x.k.length)];
  attentionBackwardReference(want[0], want[1], want[2], x.dout, x.q, x.k, x.v, dims, {
    causal: true,
    scale: Math.fround(1 / 4),
  });
  for (const g of grads) g.forEach((a, i) => assertAllClose(a, want[i], { ...TOL, msg: `grad ${i}` }));
});

Deno.test("attention() rejects bad shapes and options before dispatch", async () => {
  for (const be of await backends()) {
    const q = be.zeros([1, 4, 3, 8]), k = be.zeros([1, 4, 2, 8]), v = be.zeros([1, 4, 2, 8]);
    const q4 = be.zeros([1, 4, 4, 8]);
    assert.throws(() => attention(q, k, v), /query heads 3 are not a multiple of kv heads 2/);
    assert.throws(
      () => attention(q4, k, be.zeros([1, 5, 2, 8])),
      /v has shape \[1, 5, 2, 8\], expected \[1, 4, 2, 8\]/,
    );
    assert.throws(() => attention(q4, be.zeros([1, 4, 2, 4]), v), /k has shape/);
    assert.throws(() => attention(q4, k, v, { kv_len: 5 }), /kv_len must be an integer in \[0, 4\]: 5/);
    assert.throws(
      () => attention(q4, k, v, { attention_mask: be.zeros([1, 3]) }),
      /attention_mask has shape \[1, 3\], expected \[1, >= 4\]/,
    );
    assert.throws(() => attention(q4, k, v, { sliding_window: 1.5 }), /sliding_window/);
    assert.throws(() => attention(be.zeros([4, 4, 8]), k, v), /q must be \(B, T, heads, D\)/);
    if (be.name === "webgpu") {
      const big = be.zeros([1, 1, 1, 300]);
      assert.throws(() => attention(big, big, big), /head dim must be in \[1, 256\] on webgpu: 300/);
      assert.throws(
        () =>
          attention(be.zeros([1, 20, 8, 64]), be.zeros([1, 20, 1, 64]), be.zeros([1, 20, 1, 64]), {
            path: "split_k",
          }),
        /split_k holds at most 16 rows/,
      );
    }
  }
});

Deno.test("attention() kernels option: bad configs rejected before dispatch; config keys round-trip", async () => {
  for (const be of await backends()) {
    const q = be.zeros([1, 4, 2, 8]);
    assert.throws(
      () => attention(q, q, q, { kernels: { forward: { family: "tex", rows: 0, bk: 1.5, wg: 8 } } }),
      /Cannot run attention.forward: kernels.forward: rows must be an integer in \[1, 16\]: 0; kernels.forward: bk must be an integer in \[1, 16\]: 1.5/,
    );
    assert.throws(
      () => attention(q, q, q, { kernels: { forward: { family: "simd", rows: 1, bk: 1, wg: 8 } as never } }),
      /family must be tile, reg or tex: simd/,
    );
  }
  const g = await webgpu();
  if (g) {
    const cfg = attentionConfigFor(g.device);
    for (const k of ["forward", "dq", "dkv"] as const) {
      assert.deepEqual(parseKernelConfig(kernelConfigKey(cfg[k])), cfg[k]);
    }
  }
  assert.equal(parseKernelConfig("tex:8x2:32")?.family, "tex");
  assert.equal(parseKernelConfig("tex:0x2:32"), null);
  assert.equal(parseKernelConfig("warp:1x1:1"), null);
  assert.deepEqual([16, 64, 128, 256].map((D) => regRows(8, D)), [8, 8, 4, 2]);
});

Deno.test("attention() dropout on P: every kernel family matches the reference, forward and backward, on awkward shapes", async () => {
  const fams: AttentionOptions["kernels"][] = [
    { forward: { family: "tile" }, dq: { family: "tile" }, dkv: { family: "tile" } },
    {
      forward: { family: "reg", rows: 3, bk: 3, wg: 8 },
      dq: { family: "reg", rows: 3, bk: 2, wg: 8 },
      dkv: { family: "reg", rows: 3, bk: 1, wg: 8 },
    },
    {
      forward: { family: "tex", rows: 3, bk: 2, wg: 8 },
      dq: { family: "tex", rows: 2, bk: 3, wg: 16 },
      dkv: { family: "tex", rows: 2, bk: 1, wg: 8 },
    },
    // mixed: tile dQ (row-dot di) feeding a register dK/dV
    { forward: { family: "tile" }, dq: { family: "tile" }, dkv: { family: "tex", rows: 3, bk: 1, wg: 8 } },
  ];
  const list: Case[] = [
    {
      B: 2,
      Tq: 19,
      Tk: 19,
      H: 4,
      Hkv: 2,
      D: 10,
      opts: { causal: true, dropout: { p: 0.3, seed: 11 } },
      pad: [-3, 2],
      maskDtype: "i32",
    },
    {
      B: 1,
      Tq: 5,
      Tk: 23,
      H: 2,
      Hkv: 1,
      D: 16,
      opts: { causal: true, kv_len: 20, dropout: { p: 0.5, seed: 7 } },
    },
    {
      B: 3,
      Tq: 9,
      Tk: 9,
      H: 2,
      Hkv: 2,
      D: 8,
      opts: { sliding_window: 4, causal: true, dropout: { p: 0.1, seed: 3 } },
    },
    // Tq = 1 and G * Tq small: auto would pick split-K, dropout keeps it on the flash kernels
    { B: 2, Tq: 1, Tk: 1, H: 2, Hkv: 1, D: 4, opts: { dropout: { p: 0.4, seed: 1 } } },
  ];
  for (const kernels of fams) {
    for (const [i, c] of list.entries()) {
      const x = inputs(c, 900 + i);
      const cmp = await compareBackends(`dropout ${JSON.stringify(kernels)} ${JSON.stringify(c)}`, (be) => {
        const t = upload(be, c, x);
        const o = { ...t.opts, kernels };
        const out = be.empty(t.q.shape), lse = be.empty([c.B, c.H, c.Tq]);
        attentionForward(out, lse, t.q, t.k, t.v, o);
        const dq = be.empty(t.q.shape), dk = be.empty(t.k.shape), dv = be.empty(t.v.shape);
        attentionBackward(dq, dk, dv, be.fromArray(x.dout, t.q.shape), t.q, t.k, t.v, out, lse, o);
        return [out, lse, dq, dk, dv];
      }, TOL);
      for (const r of cmp) worst.bwd = Math.max(worst.bwd, r.maxAbs);
    }
  }
});

Deno.test("attention reference backward with dropout on P matches f64 finite differences (mask fixed by the seed)", () => {
  const list: Case[] = [
    { B: 1, Tq: 4, Tk: 4, H: 2, Hkv: 2, D: 3, opts: { causal: true, dropout: { p: 0.4, seed: 5 } } },
    {
      B: 2,
      Tq: 5,
      Tk: 5,
      H: 4,
      Hkv: 2,
      D: 4,
      opts: { causal: true, sliding_window: 3, dropout: { p: 0.25, seed: 9 } },
      pad: [0, -2],
    },
    { B: 1, Tq: 3, Tk: 6, H: 2, Hkv: 1, D: 2, opts: { kv_len: 5, dropout: { p: 0.6, seed: 1 } } },
  ];
  for (const c of list) {
    const { dims, o } = refGrad(c, maskData(c));
    const nq = c.B * c.Tq * c.H * c.D, nk = c.B * c.Tk * c.Hkv * c.D;
    const w = rand64(nq, 18);
    const f = (xs: Float64Array[]) => {
      const out = new Float64Array(nq), lse = new Float64Array(c.B * c.H * c.Tq);
      attentionReference(out, lse, xs[0], xs[1], xs[2], dims, o);
      return dot(w, out);
    };
    const g = (xs: Float64Array[]) => {
      const dq = new Float64Array(nq), dk = new Float64Array(nk), dv = new Float64Array(nk);
      attentionBackwardReference(dq, dk, dv, w, xs[0], xs[1], xs[2], dims, o);
      return [dq, dk, dv];
    };
    gradcheck(`attention dropout ${JSON.stringify(c)}`, f, g, [
      rand64(nq, 4, 2),
      rand64(nk, 5, 2),
      rand64(nk, 6),
    ], {
      count: 40,
    });
  }
});

Deno.test("attention() dropout: p = 0 is bit-identical to none, lse is the undropped one, the kept fraction is 1 - p", async () => {
  const c: Case = { B: 2, Tq: 13, Tk: 13, H: 2, Hkv: 1, D: 8, opts: { causal: true } };
  const x = inputs(c, 950);
  for (const be of await backends()) {
    const run = (dropout: AttentionOptions["dropout"]) => {
      const t = upload(be, c, x);
      const o = { ...t.opts, dropout };
      const out = be.empty(t.q.shape), lse = be.empty([c.B, c.H, c.Tq]);
      attentionForward(out, lse, t.q, t.k, t.v, o);
      const dq = be.empty(t.q.shape), dk = be.empty(t.k.shape), dv = be.empty(t.v.shape);
      attentionBackward(dq, dk, dv, be.fromArray(x.dout, t.q.shape), t.q, t.k, t.v, out, lse, o);
      return Promise.all([out, lse, dq, dk, dv].map((t) => t.toArray()));
    };
    const none = await run(undefined),
      zero = await run({ p: 0, seed: 123 }),
      on = await run({ p: 0.3, seed: 4 });
    none.forEach((a, i) => assert.deepEqual(zero[i], a, `${be.name}: p = 0 output ${i}`));
    assert.deepEqual(on[1], none[1], `${be.name}: lse with dropout is the undropped logsumexp`);
    assert.notDeepEqual(on[0], none[0]);
    // q = k = 0 and v = 1 (D = 1, not causal): P = 1 / Tk, so out_i = kept_i / (Tk (1 - p)) and the
    // mean of out is the kept fraction over (1 - p), over B * H * Tq * Tk = 65536 probabilities.
    const B = 1, H = 4, T = 128, p = 0.3;
    const out = be.empty([B, T, H, 1]), lse = be.empty([B, H, T]);
    const zeros = be.zeros([B, T, H, 1]);
    attentionForward(out, lse, zeros, zeros, be.full([B, T, H, 1], 1), { dropout: { p, seed: 77 } });
    const o = await out.toArray() as Float32Array;
    const kept = o.reduce((a: number, b: number) => a + b, 0) / o.length * (1 - p);
    assert.ok(
      Math.abs(kept - (1 - p)) < 0.01 * (1 - p),
      `${be.name}: kept fraction ${kept}, want ${1 - p} ± 1%`,
    );
    const q = be.zeros([1, 1, 2, 4]);
    assert.throws(
      () => attention(q, q, q, { path: "split_k", dropout: { p: 0.1, seed: 1 } }),
      /split_k decode path has no dropout/,
    );
    assert.throws(
      () => attention(q, q, q, { dropout: { p: 1, seed: 1 } }),
      /dropout.p must be in \[0, 1\): 1/,
    );
  }
});

/** Forward and backward of every output on `be` (the flash kernels unless `path` says otherwise). */
function fwdBwd(be: Backend, c: Case, x: ReturnType<typeof inputs>, extra: AttentionOptions = {}) {
  const t = upload(be, c, x);
  const o = { ...t.opts, ...extra };
  const out = be.empty(t.q.shape), lse = be.empty([c.B, c.H, c.Tq]);
  attentionForward(out, lse, t.q, t.k, t.v, o);
  const dq = be.empty(t.q.shape), dk = be.empty(t.k.shape), dv = be.empty(t.v.shape);
  attentionBackward(dq, dk, dv, be.fromArray(x.dout, t.q.shape), t.q, t.k, t.v, out, lse, o);
  return [out, lse, dq, dk, dv];
}

Deno.test("attention() segment ids: every kernel family matches the reference, forward and backward, with GQA, masks, windows and dropout", async () => {
  const fams: AttentionOptions["kernels"][] = [
    { forward: { family: "tile" }, dq: { family: "tile" }, dkv: { family: "tile" } },
    {
      forward: { family: "reg", rows: 3, bk: 3, wg: 8 },
      dq: { family: "reg", rows: 3, bk: 2, wg: 8 },
      dkv: { family: "reg", rows: 3, bk: 1, wg: 8 },
    },
    {
      forward: { family: "tex", rows: 5, bk: 2, wg: 8 },
      dq: { family: "tex", rows: 2, bk: 3, wg: 16 },
      dkv: { family: "tex", rows: 3, bk: 1, wg: 8 },
    },
    { forward: { family: "tile" }, dq: { family: "tile" }, dkv: { family: "tex", rows: 2, bk: 1, wg: 8 } },
  ];
  const list: Case[] = [
    { B: 2, Tq: 19, Tk: 19, H: 4, Hkv: 2, D: 10, opts: { causal: true }, seg: "packed" },
    {
      B: 3,
      Tq: 23,
      Tk: 23,
      H: 4,
      Hkv: 1,
      D: 16,
      opts: { causal: true, dropout: { p: 0.3, seed: 5 } },
      seg: "packed",
    },
    // segments and padding interleaved, not causal, with a key mask too
    { B: 2, Tq: 13, Tk: 13, H: 2, Hkv: 2, D: 8, opts: {}, seg: "scattered", pad: [2, -3], maskDtype: "u32" },
    {
      B: 1,
      Tq: 17,
      Tk: 17,
      H: 6,
      Hkv: 2,
      D: 12,
      opts: { causal: true, sliding_window: 4, dropout: { p: 0.2, seed: 9 } },
      seg: "scattered",
    },
    // a KV cache: queries at positions kv_len - Tq.., segments by absolute position
    { B: 2, Tq: 5, Tk: 24, H: 4, Hkv: 2, D: 16, opts: { causal: true, kv_len: 21 }, seg: "packed" },
  ];
  for (const kernels of fams) {
    for (const [i, c] of list.entries()) {
      const x = inputs(c, 1000 + i);
      const cmp = await compareBackends(
        `segments ${JSON.stringify(kernels)} ${JSON.stringify(c)}`,
        (be) => fwdBwd(be, c, x, { kernels, path: "flash" }),
        TOL,
      );
      for (const r of cmp) worst.bwd = Math.max(worst.bwd, r.maxAbs);
    }
  }
});

Deno.test("attention() over a packed row equals attention over each example alone", async () => {
  // Three examples of 5, 9 and 4 tokens and 3 padding positions in one row of 21.
  const lens = [5, 9, 4], T = 21, H = 4, Hkv = 2, D = 8;
  const seg = lens.flatMap((n, s) => new Array(n).fill(s + 1)).concat([0, 0, 0]);
  const c: Case = { B: 1, Tq: T, Tk: T, H, Hkv, D };
  const x = inputs(c, 1200);
  for (const be of await backends()) {
    const packed = await attention(
      be.fromArray(x.q, [1, T, H, D]),
      be.fromArray(x.k, [1, T, Hkv, D]),
      be.fromArray(x.v, [1, T, Hkv, D]),
      { causal: true, segment_ids: be.fromArray(seg, [1, T], "i32") },
    ).toArray();
    let at = 0;
    for (const n of lens) {
      const part = (a: Float32Array, h: number) => a.slice(at * h * D, (at + n) * h * D);
      const alone = await attention(
        be.fromArray(part(x.q, H), [1, n, H, D]),
        be.fromArray(part(x.k, Hkv), [1, n, Hkv, D]),
        be.fromArray(part(x.v, Hkv), [1, n, Hkv, D]),
        { causal: true },
      ).toArray();
      assertAllClose(packed.slice(at * H * D, (at + n) * H * D), alone, {
        ...TOL,
        msg: `${be.name}: example at ${at}`,
      });
      at += n;
    }
    // padding queries see nothing: exactly 0
    assert.ok(packed.slice(at * H * D).every((v: number) => v === 0), `${be.name}: padding rows are 0`);
  }
});

Deno.test("attention() one segment over every key is bit-identical to no segment ids", async () => {
  const c: Case = {
    B: 2,
    Tq: 13,
    Tk: 13,
    H: 4,
    Hkv: 2,
    D: 8,
    opts: { causal: true, dropout: { p: 0.2, seed: 3 } },
  };
  const x = inputs(c, 1300);
  const ones = new Int32Array(c.B * c.Tk).fill(1);
  for (const be of await backends()) {
    const none = await Promise.all(fwdBwd(be, c, x).map((t) => t.toArray()));
    const one = await Promise.all(
      fwdBwd(be, c, x, { segment_ids: be.fromArray(ones, [c.B, c.Tk], "i32") }).map((t) => t.toArray()),
    );
    none.forEach((a, i) => assert.deepEqual(one[i], a, `${be.name}: output ${i}`));
  }
});

Deno.test("attention reference backward with segment ids matches f64 finite differences", () => {
  const list: Case[] = [
    { B: 1, Tq: 6, Tk: 6, H: 2, Hkv: 1, D: 3, opts: { causal: true }, seg: "packed" },
    { B: 2, Tq: 5, Tk: 5, H: 2, Hkv: 2, D: 2, opts: {}, seg: "scattered" },
    {
      B: 2,
      Tq: 7,
      Tk: 7,
      H: 4,
      Hkv: 2,
      D: 3,
      opts: { causal: true, dropout: { p: 0.3, seed: 2 } },
      seg: "packed",
      pad: [0, -1],
    },
    { B: 1, Tq: 2, Tk: 8, H: 2, Hkv: 1, D: 2, opts: { causal: true, kv_len: 7 }, seg: "scattered" },
  ];
  for (const [n, c] of list.entries()) {
    const { dims, o } = refGrad(c, maskData(c), segData(c, 40 + n));
    const nq = c.B * c.Tq * c.H * c.D, nk = c.B * c.Tk * c.Hkv * c.D;
    const w = rand64(nq, 19);
    const f = (xs: Float64Array[]) => {
      const out = new Float64Array(nq), lse = new Float64Array(c.B * c.H * c.Tq);
      attentionReference(out, lse, xs[0], xs[1], xs[2], dims, o);
      return dot(w, out);
    };
    const g = (xs: Float64Array[]) => {
      const dq = new Float64Array(nq), dk = new Float64Array(nk), dv = new Float64Array(nk);
      attentionBackwardReference(dq, dk, dv, w, xs[0], xs[1], xs[2], dims, o);
      return [dq, dk, dv];
    };
    gradcheck(`attention segments ${JSON.stringify(c)}`, f, g, [
      rand64(nq, 7, 2),
      rand64(nk, 8, 2),
      rand64(nk, 9),
    ], { count: 40 });
  }
});

Deno.test("attention() segment ids: bad shape, dtype or q_offset rejected; the backward holds its own view", async () => {
  for (const be of await backends()) {
    const q = be.zeros([2, 4, 2, 8]), k = be.zeros([2, 4, 1, 8]);
    assert.throws(
      () => attention(q, k, k, { segment_ids: be.zeros([2, 3], "i32") }),
      /segment_ids has shape \[2, 3\], expected \[2, >= 4\]/,
    );
    assert.throws(() => attention(q, k, k, { segment_ids: be.zeros([2, 4]) }), /segment_ids/);
    assert.throws(
      () => attention(q, k, k, { segment_ids: be.zeros([2, 8], "i32"), q_offset: -1 }),
      /segment_ids need q_offset >= 0: -1/,
    );
    // the caller may dispose its segment ids and mask right after the forward
    const c: Case = {
      B: 2,
      Tq: 7,
      Tk: 7,
      H: 2,
      Hkv: 1,
      D: 4,
      opts: { causal: true },
      seg: "packed",
      pad: [1],
    };
    const x = inputs(c, 1400);
    const t = upload(be, c, x);
    t.q.requiresGrad = true;
    const y = attention(t.q, t.k, t.v, t.opts);
    t.opts.segment_ids!.dispose();
    t.mask!.dispose();
    backward(y, be.fromArray(x.dout, t.q.shape));
    const want = new Float64Array(x.q.length);
    const { dims, o } = refGrad(c, x.mask, x.seg);
    attentionBackwardReference(
      want,
      new Float64Array(x.k.length),
      new Float64Array(x.k.length),
      x.dout,
      x.q,
      x.k,
      x.v,
      dims,
      {
        ...o,
        scale: Math.fround(1 / 2),
      },
    );
    assertAllClose(await t.q.grad!.toArray(), want, { ...TOL, msg: `${be.name} dq` });
  }
});

Deno.test("attention() error summary", async () => {
  // Not a check: prints the worst WGSL-vs-reference errors seen above (for the record).
  if (await webgpu()) {
    console.log(
      `attention: max |webgpu - cpu| forward ${worst.fwd.toExponential(2)}, backward ${
        worst.bwd.toExponential(2)
      }`,
    );
  }
});
