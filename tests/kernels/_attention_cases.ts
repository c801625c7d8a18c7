/**
 * Shared by the attention tests: test cases (shapes, masks, segment ids), their random inputs, and
 * the forward comparison of every backend against the reference; `worst` collects the largest
 * webgpu - cpu differences for the summary line.
 * @module
 */
import { type AttentionDims, attentionForward, type AttentionOptions } from "../../kernels/attention.ts";
import type { Backend } from "../../kernels/backend.ts";
import { randomArray, rng } from "../_assert.ts";
import { compareBackends } from "../_check.ts";

/** A test problem: its dimensions, options, key padding and segment ids. */
export interface Case extends AttentionDims {
  opts?: Omit<AttentionOptions, "attention_mask" | "segment_ids">;
  /** Per-batch count of padded key positions (negative: left padding). */
  pad?: number[];
  maskDtype?: "f32" | "i32" | "u32";
  /**
   * Segment ids `[B, Tk]`: `packed` (runs of 1..7 tokens numbered 1, 2, ..., odd rows ending in 3
   * padding positions) or `scattered` (ids 0..3 in any order: padding and segments interleaved).
   */
  seg?: "packed" | "scattered";
}

export const TOL = { atol: 1e-5, rtol: 1e-4 };
export const worst = { fwd: 0, bwd: 0 };

export function maskData(c: Case): number[] | null {
  if (!c.pad) return null;
  const m: number[] = [];
  for (let b = 0; b < c.B; b++) {
    const p = c.pad[b % c.pad.length];
    for (let j = 0; j < c.Tk; j++) m.push(p >= 0 ? (j < c.Tk - p ? 1 : 0) : (j < -p ? 0 : 1));
  }
  return m;
}

export function segData(c: Case, seed = 1): number[] | null {
  if (!c.seg) return null;
  const r = rng(seed), out: number[] = [];
  for (let b = 0; b < c.B; b++) {
    if (c.seg === "scattered") {
      for (let j = 0; j < c.Tk; j++) out.push(Math.floor(r() * 4));
      continue;
    }
    const real = b % 2 ? Math.max(0, c.Tk - 3) : c.Tk;
    let id = 0, left = 0;
    for (let j = 0; j < c.Tk; j++) {
      if (j >= real) {
        out.push(0);
        continue;
      }
      if (left === 0) [id, left] = [id + 1, 1 + Math.floor(r() * 7)];
      out.push(id);
      left--;
    }
  }
  return out;
}

export function inputs(c: Case, seed: number) {
  const nq = c.B * c.Tq * c.H * c.D, nk = c.B * c.Tk * c.Hkv * c.D;
  return {
    q: randomArray(nq, seed, 2),
    k: randomArray(nk, seed + 1, 2),
    v: randomArray(nk, seed + 2),
    dout: randomArray(nq, seed + 3),
    mask: maskData(c),
    seg: segData(c, seed),
  };
}

export function upload(be: Backend, c: Case, x: ReturnType<typeof inputs>) {
  const q = be.fromArray(x.q, [c.B, c.Tq, c.H, c.D]);
  const k = be.fromArray(x.k, [c.B, c.Tk, c.Hkv, c.D]);
  const v = be.fromArray(x.v, [c.B, c.Tk, c.Hkv, c.D]);
  const mask = x.mask ? be.fromArray(x.mask, [c.B, c.Tk], c.maskDtype ?? "f32") : null;
  const seg = x.seg ? be.fromArray(x.seg, [c.B, c.Tk], "i32") : null;
  return { q, k, v, mask, opts: { ...c.opts, attention_mask: mask, segment_ids: seg } as AttentionOptions };
}

export function forward(be: Backend, c: Case, x: ReturnType<typeof inputs>, path?: AttentionOptions["path"]) {
  const t = upload(be, c, x);
  const out = be.empty(t.q.shape), lse = be.empty([c.B, c.H, c.Tq]);
  attentionForward(out, lse, t.q, t.k, t.v, { ...t.opts, path });
  return [out, lse];
}

export async function checkForward(c: Case, seed: number, path?: AttentionOptions["path"]) {
  const x = inputs(c, seed);
  const label = `forward ${JSON.stringify({ ...c, path })}`;
  const cmp = await compareBackends(label, (be) => forward(be, c, x, path), TOL);
  for (const r of cmp) worst.fwd = Math.max(worst.fwd, r.maxAbs);
}
