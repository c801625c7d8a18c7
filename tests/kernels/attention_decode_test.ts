/**
 * The split-K decode path of attention: a query against a KV cache, segment ids, and the two
 * layouts of its kernel (a workgroup per key split, or an invocation per query row and split).
 * @module
 */
import { attention, setDecodeLayout } from "../../kernels/attention.ts";
import { assert, assertAllClose } from "../_assert.ts";
import { backends, webgpu } from "../_check.ts";
import { type Case, checkForward, forward, inputs, TOL, worst } from "./_attention_cases.ts";

Deno.test("attention() decode against a KV cache with kv_len < Tmax equals the last row of full causal attention", async () => {
  const B = 2, H = 8, Hkv = 2, D = 64, Tmax = 96;
  for (const be of await backends()) {
    for (const L of [1, 33, 70]) {
      const full = inputs({ B, Tq: L, Tk: L, H, Hkv, D }, 500 + L);
      const q = be.fromArray(full.q, [B, L, H, D]);
      const k = be.fromArray(full.k, [B, L, Hkv, D]), v = be.fromArray(full.v, [B, L, Hkv, D]);
      const ref = await attention(q, k, v, { causal: true }).toArray();
      // cache: rows [0, L) valid, the rest garbage (NaN) that must never be read
      const kc = new Float32Array(B * Tmax * Hkv * D).fill(NaN), vc = kc.slice();
      for (let b = 0; b < B; b++) {
        kc.set(full.k.subarray(b * L * Hkv * D, (b + 1) * L * Hkv * D), b * Tmax * Hkv * D);
        vc.set(full.v.subarray(b * L * Hkv * D, (b + 1) * L * Hkv * D), b * Tmax * Hkv * D);
      }
      const qLast = new Float32Array(B * H * D);
      for (let b = 0; b < B; b++) {
        qLast.set(full.q.subarray(((b * L + L - 1) * H) * D, ((b * L + L) * H) * D), b * H * D);
      }
      const want = new Float32Array(B * H * D);
      for (let b = 0; b < B; b++) {
        want.set(ref.subarray(((b * L + L - 1) * H) * D, ((b * L + L) * H) * D) as Float32Array, b * H * D);
      }
      for (const path of ["split_k", "flash"] as const) {
        const got = await attention(
          be.fromArray(qLast, [B, 1, H, D]),
          be.fromArray(kc, [B, Tmax, Hkv, D]),
          be.fromArray(vc, [B, Tmax, Hkv, D]),
          { causal: true, kv_len: L, path },
        ).toArray();
        const cmp = assertAllClose(got, want, { ...TOL, msg: `${be.name} decode L=${L} ${path}` });
        worst.fwd = Math.max(worst.fwd, cmp.maxAbs);
      }
    }
  }
});

Deno.test("attention() segment ids on the split-K decode path match the reference", async () => {
  const list: Case[] = [
    { B: 2, Tq: 1, Tk: 70, H: 4, Hkv: 2, D: 16, opts: { causal: true }, seg: "packed" },
    { B: 3, Tq: 3, Tk: 9, H: 2, Hkv: 1, D: 10, opts: { causal: true }, seg: "scattered" },
    { B: 1, Tq: 2, Tk: 40, H: 8, Hkv: 2, D: 24, opts: { causal: true, kv_len: 33 }, seg: "packed", pad: [4] },
  ];
  for (const [i, c] of list.entries()) {
    await checkForward(c, 1100 + i, "split_k");
    await checkForward(c, 1100 + i, "flash");
  }
});

Deno.test("attention() split-K decode: the invocation and workgroup layouts give the same bits and match the reference", async () => {
  const gpu = await webgpu();
  const list: Case[] = [
    { B: 3, Tq: 1, Tk: 150, H: 4, Hkv: 4, D: 32, opts: { causal: true }, pad: [-5, 0, 7] },
    { B: 2, Tq: 2, Tk: 70, H: 8, Hkv: 2, D: 24, opts: { causal: true, sliding_window: 20, kv_len: 61 } },
    {
      B: 2,
      Tq: 1,
      Tk: 40,
      H: 2,
      Hkv: 1,
      D: 10,
      opts: { causal: true },
      seg: "packed",
      maskDtype: "i32",
      pad: [3],
    },
    { B: 1, Tq: 3, Tk: 9, H: 2, Hkv: 2, D: 64 },
  ];
  const prev = setDecodeLayout("auto");
  try {
    for (const [i, c] of list.entries()) {
      const x = inputs(c, 1200 + i);
      const bits: number[][] = [];
      for (const layout of ["workgroup", "invocation"] as const) {
        setDecodeLayout(layout);
        await checkForward(c, 1200 + i, "split_k");
        if (!gpu) continue;
        const got = await Promise.all(forward(gpu, c, x, "split_k").map((t) => t.toArray()));
        bits.push(got.flatMap((a) => [...new Uint32Array((a as Float32Array).slice().buffer)]));
      }
      if (gpu) assert.deepEqual(bits[1], bits[0], `case ${i}: the layouts differ`);
    }
  } finally {
    setDecodeLayout(prev);
  }
});
