import { backward } from "../../kernels/autograd.ts";
import {
  rope,
  ropeBackward,
  ropeForward,
  ropeInvFreq,
  ropeReference,
  type RopeStyle,
} from "../../kernels/rope.ts";
import type { Backend } from "../../kernels/backend.ts";
import { assert, assertAllClose, randomArray } from "../_assert.ts";
import { backends, compareBackends, dot, gradcheck, rand64 } from "../_check.ts";

type Shape4 = [number, number, number, number];

/** Hugging Face's formulation, literally: emb = cat(freqs, freqs); x*cos + rotate_half(x)*sin (f64). */
function hfRope(x: Float64Array, shape: Shape4, invFreq: Float32Array, pos: number[], scaling = 1) {
  const [B, T, Hh, D] = shape;
  const R = invFreq.length * 2, half = R / 2;
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const p = pos[b * T + t];
      const emb = new Float64Array(R);
      for (let i = 0; i < R; i++) emb[i] = Math.fround(Math.fround(p) * invFreq[i % half]);
      for (let h = 0; h < Hh; h++) {
        const o = ((b * T + t) * Hh + h) * D;
        for (let i = 0; i < R; i++) {
          const rot = i < half ? -x[o + i + half] : x[o + i - half];
          out[o + i] = x[o + i] * Math.cos(emb[i]) * scaling + rot * Math.sin(emb[i]) * scaling;
        }
        for (let d = R; d < D; d++) out[o + d] = x[o + d];
      }
    }
  }
  return out;
}

const CASES: {
  shape: Shape4;
  rot: number;
  style: RopeStyle;
  offset?: number;
  ids?: boolean;
  scaling?: number;
}[] = [
  { shape: [1, 1, 1, 2], rot: 2, style: "rotate_half" },
  { shape: [2, 5, 3, 24], rot: 24, style: "rotate_half", offset: 7 },
  { shape: [2, 5, 3, 24], rot: 24, style: "interleaved", offset: 3 },
  { shape: [3, 17, 2, 24], rot: 16, style: "rotate_half", ids: true },
  { shape: [1, 9, 4, 10], rot: 6, style: "interleaved", ids: true, scaling: 1.25 },
  { shape: [1, 3, 2, 64], rot: 64, style: "rotate_half", offset: 150000 },
  { shape: [2, 33, 8, 64], rot: 32, style: "rotate_half", offset: 1 },
];

function positionIds(B: number, T: number, seed: number): Int32Array {
  // left padding: row b has b*2 pad tokens; HF: cumsum(mask) - 1, pads get 1 (masked_fill(mask==0, 1))
  const ids = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const pad = Math.min(T, (b * 2 + seed) % (T + 1));
    for (let t = 0; t < T; t++) ids[b * T + t] = t < pad ? 1 : t - pad;
  }
  return ids;
}

function optsFor(be: Backend, c: (typeof CASES)[number], ids: Int32Array) {
  return {
    inv_freq: ropeInvFreq(c.rot, 10000),
    position_offset: c.offset,
    position_ids: c.ids ? be.fromArray(ids, [c.shape[0], c.shape[1]], "i32") : undefined,
    style: c.style,
    attention_scaling: c.scaling,
  };
}

Deno.test("ropeInvFreq() follows HF's float32 formula 1/theta^(2i/dim)", () => {
  for (const [dim, theta] of [[64, 10000], [128, 500000], [24, 1e6]]) {
    const f = ropeInvFreq(dim, theta);
    assert.equal(f.length, dim / 2);
    const want = Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** (2 * i / dim));
    // f32 rounding of the exponent (as torch does) moves the result by up to ~ln(theta) * 2^-24 relative
    assertAllClose(f, want, { atol: 0, rtol: 1.5e-6 });
  }
  assert.throws(() => ropeInvFreq(7), RangeError);
});

Deno.test("ropeReference() equals HF's apply_rotary_pos_emb formulation (rotate_half, partial, scaling)", () => {
  const shape: Shape4 = [2, 6, 3, 24];
  const n = shape.reduce((a, b) => a * b);
  const x = rand64(n, 3);
  for (const [rot, scaling] of [[24, 1], [16, 1], [8, 0.7]]) {
    const inv = ropeInvFreq(rot, 10000);
    const pos = positionIds(2, 6, 1);
    const got = new Float64Array(n);
    ropeReference(got, x, shape, { inv_freq: inv, position_ids: pos, attention_scaling: scaling });
    assertAllClose(got, hfRope(x, shape, inv, [...pos], scaling), { atol: 1e-7, rtol: 0 });
  }
});

Deno.test("rope() WGSL matches the reference: styles, offsets, position ids, partial rotary, D=24", async () => {
  for (const [ci, c] of CASES.entries()) {
    const n = c.shape.reduce((a, b) => a * b);
    const x = randomArray(n, 10 + ci);
    const ids = positionIds(c.shape[0], c.shape[1], ci);
    await compareBackends(
      `rope ${c.shape} rot ${c.rot} ${c.style}`,
      (be) => [rope(be.fromArray(x, c.shape), optsFor(be, c, ids))],
      { atol: 2e-6, rtol: 0 },
    );
  }
});

Deno.test("ropeForward() works in place and ropeBackward() inverts it on both backends", async () => {
  const c = CASES[3];
  const n = c.shape.reduce((a, b) => a * b);
  const x = randomArray(n, 5);
  const ids = positionIds(c.shape[0], c.shape[1], 2);
  await compareBackends("rope in place", (be) => {
    const t = be.fromArray(x, c.shape);
    const o = optsFor(be, c, ids);
    ropeForward(t, t, o);
    const y = be.fromArray(x, c.shape);
    const z = be.empty(c.shape);
    ropeForward(z, y, o);
    return [t, z];
  }, { atol: 2e-6, rtol: 0 });
  for (const be of await backends()) {
    const t = be.fromArray(x, c.shape);
    const o = optsFor(be, c, ids);
    ropeForward(t, t, o);
    ropeBackward(t, t, o);
    assertAllClose(await t.toArray(), x, { atol: 3e-6, rtol: 0, msg: `${be.name} inverse` });
  }
});

Deno.test("rope reference gradient matches finite differences in f64 (both styles, partial)", () => {
  for (const style of ["rotate_half", "interleaved"] as const) {
    const shape: Shape4 = [2, 3, 2, 10];
    const n = 120;
    const w = rand64(n, 4);
    const o = { inv_freq: ropeInvFreq(6, 100), position_offset: 5, style };
    const f = (xs: Float64Array[]) => {
      const y = new Float64Array(n);
      ropeReference(y, xs[0], shape, o);
      return dot(w, y);
    };
    const g = () => {
      const gx = new Float64Array(n);
      ropeReference(gx, w, shape, { ...o, inverse: true });
      return [gx];
    };
    gradcheck(`rope ${style}`, f, g, [rand64(n, 8)], { count: 120 });
  }
});

Deno.test("rope() autograd: webgpu backward equals the cpu backward", async () => {
  const c = CASES[4];
  const n = c.shape.reduce((a, b) => a * b);
  const x = randomArray(n, 21), w = randomArray(n, 22);
  const ids = positionIds(c.shape[0], c.shape[1], 1);
  await compareBackends("rope backward", (be) => {
    const t = be.fromArray(x, c.shape);
    t.requiresGrad = true;
    const y = rope(t, optsFor(be, c, ids));
    backward(y, be.fromArray(w, c.shape));
    return [t.grad!];
  }, { atol: 2e-6, rtol: 0 });
});

Deno.test("rope() rejects bad shapes, inv_freq and position_ids before dispatch", async () => {
  for (const be of await backends()) {
    const x = be.zeros([1, 2, 1, 8]);
    assert.throws(() => rope(be.zeros([2, 8]), { inv_freq: ropeInvFreq(8) }), /must be \(B, T, heads, D\)/);
    assert.throws(() => rope(x, { inv_freq: ropeInvFreq(10) }), /length <= D\/2: length 5, D 8/);
    assert.throws(
      () => rope(x, { inv_freq: ropeInvFreq(8), position_ids: be.zeros([1, 2]) }),
      /position_ids has dtype f32, expected i32/,
    );
    assert.throws(
      () => rope(x, { inv_freq: ropeInvFreq(8), position_ids: be.zeros([1, 3], "i32") }),
      /position_ids has shape \[1, 3\], expected \[1, 2\]/,
    );
    assert.throws(
      () => ropeForward(be.zeros([1, 2, 1, 4]), x, { inv_freq: ropeInvFreq(4) }),
      /out has shape/,
    );
  }
});
