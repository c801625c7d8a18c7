/**
 * WGSL of the register-blocked attention kernels, the `reg` / `tex` families (private to
 * `attention.ts`, which documents the math, shapes and grids): regForward, regBackwardQ and
 * regBackwardKV, generated unrolled over rows, keys per step and vec4 chunks of D as
 * `_matmul_wgsl.ts` does, plus the texture staging kernel and the pool of staging textures it
 * writes (`stage`, `releaseTexture`). No workgroup memory, no barriers. The
 * params struct, masking predicate and key range are the shared ones of `_attention_wgsl.ts`.
 *
 * @module
 */
import type { BindingSpec, KernelSpec } from "./_kernel.ts";
import { memo, packParams, range } from "./_kernel.ts";
import type { Gpu } from "./gpu.ts";
import type { Tensor } from "./tensor.ts";
import {
  ATTN_PARAMS,
  type Built,
  chunks,
  DROP_FN,
  KEY_RANGE,
  maskBindings,
  type MaskKind,
  prelude,
  ro,
  rw,
  SEG_AT,
  segKeysStart,
  segQueriesEnd,
  visibleFn,
} from "./_attention_wgsl.ts";

/** Binding type marker of a texture-staged operand. */
export const TEXTURE = "texture_2d_array<f32>";

/** Where a register kernel reads a head-row operand from. */
type Src = "tex" | "vec" | "f32";

/**
 * A register-blocked kernel variant: `rows` rows per invocation (query rows for the forward and
 * dQ, key rows for dK/dV), `bk` keys unrolled per step (forward, dQ), `wg` invocations per
 * workgroup, `tex`: K/V (forward, dQ) or Q/dO (dK/dV) read from staged textures, `drop`:
 * dropout on the probabilities (`drop_z`, see `_attention_wgsl.ts`), and `seg`: segment ids
 * (attention within each packed example, in `visible`).
 */
export interface RegVariant {
  D: number;
  mask: MaskKind;
  rows: number;
  bk: number;
  wg: number;
  tex: boolean;
  drop: boolean;
  seg: boolean;
}

/**
 * WGSL declaring `kr`, the key range of query rows i0..ilast (R of them): causal and window bounds,
 * then with segment ids past the keys none of the rows' segments can see (`segKeysStart`).
 */
function keyRange(seg: boolean, R: number, bk: number): string {
  const kr = "  var kr = key_range(p.q_offset + i32(i0), p.q_offset + i32(ilast));\n";
  if (!seg) return kr;
  return kr +
    segKeysStart(Array.from({ length: R }, (_, r) => `p.q_offset + i32(min(i0 + ${r}u, ilast))`), bk);
}

/** Header with the params struct, storage and texture bindings, and the workgroup size. */
function regHeader(spec: KernelSpec): string {
  let b = 0;
  let s = `struct Params {\n${
    Object.entries(spec.params ?? {}).map(([k, t]) => `  ${k}: ${t},`).join("\n")
  }\n}\n@group(0) @binding(${b++}) var<uniform> p: Params;\n`;
  for (const x of spec.bindings) {
    s += x.type === TEXTURE
      ? `@group(0) @binding(${b++}) var ${x.name}: ${TEXTURE};\n`
      : `@group(0) @binding(${b++}) var<storage, ${x.access}> ${x.name}: array<${x.type}>;\n`;
  }
  return s;
}

/**
 * WGSL `fn <x>_row(b, t, h) -> vec3<u32>` (a row handle) and `fn <x>_ld(r, c) -> vec4<f32>`
 * (dims 4c..4c+3 of the row, zeros past D) for an operand laid out `(B, T, heads, D)`; textures
 * hold texel (h * D4 + c, t, layer b).
 */
function rowLoad(x: string, src: Src, T: string, heads: string, D: number): string {
  const D4 = chunks(D);
  const row = src === "tex"
    ? `return vec3<u32>(h * ${D4}u, t, b);`
    : `return vec3<u32>(((b * ${T} + t) * ${heads} + h) * ${src === "vec" ? D4 : D}u, 0u, 0u);`;
  let ld: string;
  if (src === "tex") ld = `return textureLoad(${x}, vec2<u32>(r.x + c, r.y), r.z, 0);`;
  else if (src === "vec") ld = `return ${x}[r.x + c];`;
  else {
    ld = `let e = r.x + 4u * c;
  var w4 = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) { if (4u * c + i < ${D}u) { w4[i] = ${x}[e + i]; } }
  return w4;`;
  }
  return `fn ${x}_row(b: u32, t: u32, h: u32) -> vec3<u32> {\n  ${row}\n}
fn ${x}_ld(r: vec3<u32>, c: u32) -> vec4<f32> {\n  ${ld}\n}\n`;
}

/** WGSL `fn <x>_st(r, c, v)`: store dims 4c..4c+3 of a row (handle from `<x>_row`), dropping dims past D. */
function rowStore(x: string, src: "vec" | "f32", T: string, heads: string, D: number): string {
  const D4 = chunks(D);
  const body = src === "vec" ? `${x}[r.x + c] = w4;` : `let e = r.x + 4u * c;
  for (var i = 0u; i < 4u; i++) { if (4u * c + i < ${D}u) { ${x}[e + i] = w4[i]; } }`;
  return `fn ${x}_row(b: u32, t: u32, h: u32) -> vec3<u32> {
  return vec3<u32>(((b * ${T} + t) * ${heads} + h) * ${src === "vec" ? D4 : D}u, 0u, 0u);
}
fn ${x}_st(r: vec3<u32>, c: u32, w4: vec4<f32>) {\n  ${body}\n}\n`;
}

const bindOf = (name: string, src: Src): BindingSpec => ({
  name,
  type: src === "tex" ? TEXTURE : src === "vec" ? "vec4<f32>" : "f32",
  access: "read",
});
const rwOf = (name: string, vec: boolean): BindingSpec => ({
  name,
  type: vec ? "vec4<f32>" : "f32",
  access: "read_write",
});

/** `a0 * b0 + ... ` over D4 vec4 pairs as one fma chain and a final horizontal sum. */
function dotChain(a: (c: number) => string, b: (c: number) => string, D4: number): string {
  let s = `${a(0)} * ${b(0)}`;
  for (let c = 1; c < D4; c++) s = `fma(${a(c)}, ${b(c)}, ${s})`;
  return `hsum(${s})`;
}

const HSUM = "fn hsum(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }\n";

/** Linear invocation index of a 1-D register kernel (grid folded by `gridFor`). */
const REG_MAIN =
  `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let gid = (wid.x + wid.y * nwg.x) * WGR + lid.x;
`;

/** Memo key of a register kernel variant. */
export const regKey = (v: RegVariant): string =>
  `${v.D}|${v.mask}|${v.rows}|${v.bk}|${v.wg}|${v.tex ? 1 : 0}|${v.drop ? 1 : 0}|${v.seg ? 1 : 0}`;
function parseRegKey(key: string): RegVariant {
  const [d, m, r, bk, wg, t, dr, sg] = key.split("|");
  return {
    D: +d,
    mask: m as MaskKind,
    rows: +r,
    bk: +bk,
    wg: +wg,
    tex: t === "1",
    drop: dr === "1",
    seg: sg === "1",
  };
}

/**
 * Forward, register-blocked: one invocation per (R query rows, head, batch), invocations ordered
 * head fastest (a SIMD group shares its rows' causal key range) and the latest row blocks first
 * (causal: the longest first). Per step of BK keys: scores of R x BK (fma chains over D with q in
 * registers), one online-softmax rescale per row when the block raises its max, then P·V into the
 * R x D accumulators. Each K/V vec4 load feeds R rows.
 * Bindings: params, out, lse, q, k, v[, mask][, seg] (k, v textures when `tex`). Grid: `gridFor(B * H *
 * ceil(Tq / R), wg)`. Keys past a row's range are clamped loads masked by `visible`.
 */
export const regForward = memo((key: string): Built => {
  const v = parseRegKey(key);
  const { D, rows: R, bk: BK, wg } = v;
  const D4 = chunks(D), vec = D % 4 === 0, kvSrc: Src = v.tex ? "tex" : vec ? "vec" : "f32";
  const spec: KernelSpec = {
    label: `attention.forward_${v.tex ? "tex" : "reg"}`,
    params: ATTN_PARAMS,
    bindings: [
      rwOf("out", vec),
      rw("lse"),
      bindOf("q", vec ? "vec" : "f32"),
      bindOf("k", kvSrc),
      bindOf("v", kvSrc),
      ...maskBindings(v.mask, v.seg),
    ],
    workgroupSize: [wg, 1, 1],
  };
  let s = `${prelude(D)}const WGR = ${wg}u;\n${regHeader(spec)}${visibleFn(v.mask, v.seg)}${KEY_RANGE}${
    v.seg ? SEG_AT : ""
  }${HSUM}`;
  if (v.drop) s += DROP_FN;
  s += rowLoad("q", vec ? "vec" : "f32", "p.Tq", "p.H", D);
  s += rowLoad("k", kvSrc, "p.Tk", "p.Hkv", D) + rowLoad("v", kvSrc, "p.Tk", "p.Hkv", D);
  s += rowStore("out", vec ? "vec" : "f32", "p.Tq", "p.H", D);
  s += `@compute @workgroup_size(${wg}, 1, 1)\n${REG_MAIN}`;
  s += `  let nrb = (p.Tq + ${R - 1}u) / ${R}u;
  if (gid >= p.B * nrb * p.H) { return; }
  let h = gid % p.H;
  let rb = nrb - 1u - (gid / p.H) % nrb;
  let b = gid / (p.H * nrb);
  let hk = h / p.G;
  let i0 = rb * ${R}u;
  let ilast = min(i0 + ${R - 1}u, p.Tq - 1u);
${keyRange(v.seg, R, BK)}  let klast = max(kr.y, 1u) - 1u;
`;
  for (let r = 0; r < R; r++) {
    s +=
      `  let qpos${r} = p.q_offset + i32(i0 + ${r}u);\n  let qh${r} = q_row(b, min(i0 + ${r}u, ilast), h);\n`;
    for (let c = 0; c < D4; c++) s += `  let q${r}_${c} = q_ld(qh${r}, ${c}u) * p.scale;\n`;
    s += `  var m${r} = NEG;\n  var l${r} = 0.0;\n`;
    for (let c = 0; c < D4; c++) s += `  var a${r}_${c} = vec4<f32>(0.0);\n`;
  }
  s += `  for (var j0 = kr.x; j0 < kr.y; j0 += ${BK}u) {\n`;
  for (let jj = 0; jj < BK; jj++) {
    s += `    let j${jj} = j0 + ${jj}u;\n    let kh${jj} = k_row(b, min(j${jj}, klast), hk);\n`;
    for (let c = 0; c < D4; c++) s += `    let k${jj}_${c} = k_ld(kh${jj}, ${c}u);\n`;
    for (let r = 0; r < R; r++) {
      s += `    let s${r}_${jj} = select(NEG, ${
        dotChain((c) => `q${r}_${c}`, (c) => `k${jj}_${c}`, D4)
      }, visible(b, qpos${r}, j${jj}));\n`;
    }
  }
  for (let r = 0; r < R; r++) {
    const all = Array.from({ length: BK }, (_, jj) => `s${r}_${jj}`);
    let mx = all[0];
    for (let jj = 1; jj < BK; jj++) mx = `max(${mx}, ${all[jj]})`;
    s +=
      `    let mb${r} = ${mx};\n    if (mb${r} > m${r}) {\n      let corr = exp(m${r} - mb${r});\n      l${r} *= corr;\n`;
    for (let c = 0; c < D4; c++) s += `      a${r}_${c} *= corr;\n`;
    s += `      m${r} = mb${r};\n    }\n`;
    for (let jj = 0; jj < BK; jj++) {
      s += `    let p${r}_${jj} = select(0.0, exp(s${r}_${jj} - m${r}), s${r}_${jj} > NEG);\n`;
    }
    s += `    l${r} += ${all.map((_, jj) => `p${r}_${jj}`).join(" + ")};\n`;
    // dropout scales what reaches V, not the normaliser l (the softmax is of the undropped scores)
    for (let jj = 0; v.drop && jj < BK; jj++) {
      s += `    let pd${r}_${jj} = p${r}_${jj} * drop_z(b, h, i0 + ${r}u, j${jj});\n`;
    }
  }
  const pv = v.drop ? "pd" : "p";
  for (let jj = 0; jj < BK; jj++) {
    s += `    let vh${jj} = v_row(b, min(j${jj}, klast), hk);\n`;
    for (let c = 0; c < D4; c++) {
      s += `    { let x = v_ld(vh${jj}, ${c}u);`;
      for (let r = 0; r < R; r++) s += ` a${r}_${c} = fma(vec4<f32>(${pv}${r}_${jj}), x, a${r}_${c});`;
      s += " }\n";
    }
  }
  s += "  }\n";
  for (let r = 0; r < R; r++) {
    s += `  if (i0 + ${r}u < p.Tq) {
    let inv = select(0.0, 1.0 / l${r}, l${r} > 0.0);
    let oh = out_row(b, i0 + ${r}u, h);
`;
    for (let c = 0; c < D4; c++) s += `    out_st(oh, ${c}u, a${r}_${c} * inv);\n`;
    s += `    lse[(b * p.H + h) * p.Tq + i0 + ${r}u] = select(NEG, m${r} + log(l${r}), l${r} > 0.0);\n  }\n`;
  }
  return { spec, code: s + "}\n" };
});

/** Params of {@linkcode stageRows}. */
export const STAGE_PARAMS = { T: "u32", heads: "u32", width: "u32" } as const;

/**
 * Copy a `(B, T, heads, D)` f32 tensor into an rgba32float texture array of `heads * D4` x T texels
 * and B layers: texel (h * D4 + c, t, b) = dims 4c..4c+3 of row (b, t, h), zeros past D.
 * Grid (ceil(width / 8), ceil(T / 8), B), workgroup 8 x 8.
 */
export const stageRows = memo((D: number): Built => {
  const D4 = chunks(D);
  const spec: KernelSpec = {
    label: "attention.stage",
    params: STAGE_PARAMS,
    bindings: [{ name: "src", type: "f32", access: "read" }],
    workgroupSize: [8, 8, 1],
  };
  const fields = Object.entries(STAGE_PARAMS).map(([k, t]) => `  ${k}: ${t},`).join("\n");
  const code = `struct Params {\n${fields}\n}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var dst: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= p.width || gid.y >= p.T) { return; }
  let h = gid.x / ${D4}u;
  let d = (gid.x % ${D4}u) * 4u;
  let e = ((gid.z * p.T + gid.y) * p.heads + h) * ${D}u + d;
  var w4 = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) { if (d + i < ${D}u) { w4[i] = src[e + i]; } }
  textureStore(dst, vec2<u32>(gid.x, gid.y), gid.z, w4);
}
`;
  return { spec, code };
});

/**
 * dQ, register-blocked (grid and order as {@linkcode regForward}): R query rows per invocation keep
 * q, dO and the dQ accumulators in registers and stream keys BK at a time; each K/V vec4 load feeds
 * R rows. Also computes D_i = dO_i · O_i for its rows and writes it to `di` for the dK/dV kernel
 * (which runs after it). dS_ij = exp(s_ij - lse_i) (dO_i · v_j - D_i), dq_i = scale Σ_j dS_ij k_j.
 * Bindings: params, dq, di, dout, o, q, lse, k, v[, mask][, seg]. Grid: `gridFor(B * H * ceil(Tq / R), wg)`.
 */
export const regBackwardQ = memo((key: string): Built => {
  const v = parseRegKey(key);
  const { D, rows: R, bk: BK, wg } = v;
  const D4 = chunks(D), vec = D % 4 === 0, kvSrc: Src = v.tex ? "tex" : vec ? "vec" : "f32";
  const rowSrc: Src = vec ? "vec" : "f32";
  const spec: KernelSpec = {
    label: `attention.backward_dq_${v.tex ? "tex" : "reg"}`,
    params: ATTN_PARAMS,
    bindings: [
      rwOf("dq", vec),
      rw("di"),
      bindOf("dout", rowSrc),
      bindOf("o", rowSrc),
      bindOf("q", rowSrc),
      ro("lse"),
      bindOf("k", kvSrc),
      bindOf("v", kvSrc),
      ...maskBindings(v.mask, v.seg),
    ],
    workgroupSize: [wg, 1, 1],
  };
  let s = `${prelude(D)}const WGR = ${wg}u;\n${regHeader(spec)}${visibleFn(v.mask, v.seg)}${KEY_RANGE}${
    v.seg ? SEG_AT : ""
  }${HSUM}`;
  if (v.drop) s += DROP_FN;
  for (const x of ["q", "dout", "o"]) s += rowLoad(x, rowSrc, "p.Tq", "p.H", D);
  s += rowLoad("k", kvSrc, "p.Tk", "p.Hkv", D) + rowLoad("v", kvSrc, "p.Tk", "p.Hkv", D);
  s += rowStore("dq", vec ? "vec" : "f32", "p.Tq", "p.H", D);
  s += `@compute @workgroup_size(${wg}, 1, 1)\n${REG_MAIN}`;
  s += `  let nrb = (p.Tq + ${R - 1}u) / ${R}u;
  if (gid >= p.B * nrb * p.H) { return; }
  let h = gid % p.H;
  let rb = nrb - 1u - (gid / p.H) % nrb;
  let b = gid / (p.H * nrb);
  let hk = h / p.G;
  let i0 = rb * ${R}u;
  let ilast = min(i0 + ${R - 1}u, p.Tq - 1u);
${keyRange(v.seg, R, BK)}  let klast = max(kr.y, 1u) - 1u;
`;
  for (let r = 0; r < R; r++) {
    s += `  let qpos${r} = p.q_offset + i32(i0 + ${r}u);
  let ir${r} = min(i0 + ${r}u, ilast);
  let qh${r} = q_row(b, ir${r}, h);
  let lse${r} = lse[(b * p.H + h) * p.Tq + ir${r}];
`;
    for (let c = 0; c < D4; c++) {
      s += `  let q${r}_${c} = q_ld(qh${r}, ${c}u) * p.scale;\n  let g${r}_${c} = dout_ld(qh${r}, ${c}u);\n`;
      s += `  var d${r}_${c} = vec4<f32>(0.0);\n`;
    }
    s += `  let di${r} = ${dotChain((c) => `g${r}_${c}`, (c) => `o_ld(qh${r}, ${c}u)`, D4)};\n`;
    s += `  if (i0 + ${r}u < p.Tq) { di[(b * p.H + h) * p.Tq + i0 + ${r}u] = di${r}; }\n`;
  }
  s += `  for (var j0 = kr.x; j0 < kr.y; j0 += ${BK}u) {\n`;
  for (let jj = 0; jj < BK; jj++) {
    s += `    let j${jj} = j0 + ${jj}u;
    let kh${jj} = k_row(b, min(j${jj}, klast), hk);
    let vh${jj} = v_row(b, min(j${jj}, klast), hk);
`;
    for (let c = 0; c < D4; c++) s += `    let k${jj}_${c} = k_ld(kh${jj}, ${c}u);\n`;
    for (let c = 0; c < D4; c++) s += `    let v${jj}_${c} = v_ld(vh${jj}, ${c}u);\n`;
    for (let r = 0; r < R; r++) {
      s += `    let s${r}_${jj} = ${dotChain((c) => `q${r}_${c}`, (c) => `k${jj}_${c}`, D4)};\n`;
      s += `    let dp${r}_${jj} = ${dotChain((c) => `g${r}_${c}`, (c) => `v${jj}_${c}`, D4)};\n`;
      const dp = v.drop ? `dp${r}_${jj} * drop_z(b, h, i0 + ${r}u, j${jj})` : `dp${r}_${jj}`;
      s +=
        `    let ds${r}_${jj} = select(0.0, exp(s${r}_${jj} - lse${r}) * (${dp} - di${r}), visible(b, qpos${r}, j${jj}));\n`;
    }
    for (let c = 0; c < D4; c++) {
      s += "   ";
      for (let r = 0; r < R; r++) s += ` d${r}_${c} = fma(vec4<f32>(ds${r}_${jj}), k${jj}_${c}, d${r}_${c});`;
      s += "\n";
    }
  }
  s += "  }\n";
  for (let r = 0; r < R; r++) {
    s += `  if (i0 + ${r}u < p.Tq) {\n    let dh = dq_row(b, i0 + ${r}u, h);\n`;
    for (let c = 0; c < D4; c++) s += `    dq_st(dh, ${c}u, d${r}_${c} * p.scale);\n`;
    s += "  }\n";
  }
  return { spec, code: s + "}\n" };
});

/**
 * dK, dV, register-blocked: one invocation per (R key rows, kv head, batch), kv head fastest, keeps
 * k, v and the dK/dV accumulators in registers and loops over the group's query heads and the
 * queries that may see its keys; each Q/dO vec4 load feeds R keys. No atomics.
 * dv_j = Σ_i P_ij dO_i, dk_j = scale Σ_i dS_ij q_i (rows past kv_len are 0).
 * Bindings: params, dk, dv, k, v, lse, di, q, dout[, mask][, seg] (q, dout textures when `tex`).
 * Grid: `gridFor(B * Hkv * ceil(Tk / R), wg)`.
 */
export const regBackwardKV = memo((key: string): Built => {
  const v = parseRegKey(key);
  const { D, rows: R, wg } = v;
  const D4 = chunks(D), vec = D % 4 === 0, qSrc: Src = v.tex ? "tex" : vec ? "vec" : "f32";
  const rowSrc: Src = vec ? "vec" : "f32";
  const spec: KernelSpec = {
    label: `attention.backward_dkv_${v.tex ? "tex" : "reg"}`,
    params: ATTN_PARAMS,
    bindings: [
      rwOf("dk", vec),
      rwOf("dv", vec),
      bindOf("k", rowSrc),
      bindOf("v", rowSrc),
      ro("lse"),
      ro("di"),
      bindOf("q", qSrc),
      bindOf("dout", qSrc),
      ...maskBindings(v.mask, v.seg),
    ],
    workgroupSize: [wg, 1, 1],
  };
  let s = `${prelude(D)}const WGR = ${wg}u;\n${regHeader(spec)}${visibleFn(v.mask, v.seg)}${
    v.seg ? SEG_AT : ""
  }${HSUM}`;
  if (v.drop) s += DROP_FN;
  s += rowLoad("k", rowSrc, "p.Tk", "p.Hkv", D) + rowLoad("v", rowSrc, "p.Tk", "p.Hkv", D);
  s += rowLoad("q", qSrc, "p.Tq", "p.H", D) + rowLoad("dout", qSrc, "p.Tq", "p.H", D);
  s += rowStore("dk", vec ? "vec" : "f32", "p.Tk", "p.Hkv", D);
  s += rowStore("dv", vec ? "vec" : "f32", "p.Tk", "p.Hkv", D);
  s += `@compute @workgroup_size(${wg}, 1, 1)\n${REG_MAIN}`;
  s += `  let nkb = (p.Tk + ${R - 1}u) / ${R}u;
  if (gid >= p.B * nkb * p.Hkv) { return; }
  let hk = gid % p.Hkv;
  let kb = (gid / p.Hkv) % nkb;
  let b = gid / (p.Hkv * nkb);
  let jb = kb * ${R}u;
  let jvalid = min(p.Tk, p.kv_len);
  let jl = max(jvalid, 1u) - 1u;
  // Queries that may see keys [jb, jb + R): position >= j0 (causal), position < jhi + window.
  var ilo = 0i;
  if (p.causal == 1u) { ilo = max(0i, i32(jb) - p.q_offset); }
  var ihi = i32(p.Tq);
  if (p.window > 0u) { ihi = min(ihi, i32(jb) + ${R - 1} + i32(p.window) - p.q_offset); }
  if (jb >= jvalid) { ihi = ilo; }
${v.seg ? segQueriesEnd(Array.from({ length: R }, (_, r) => `min(jb + ${r}u, jl)`)) : ""}`;
  for (let r = 0; r < R; r++) {
    s += `  let j${r} = jb + ${r}u;\n  let kh${r} = k_row(b, min(j${r}, jl), hk);\n`;
    for (let c = 0; c < D4; c++) {
      s += `  let k${r}_${c} = k_ld(kh${r}, ${c}u);\n  let v${r}_${c} = v_ld(kh${r}, ${c}u);\n`;
      s += `  var dk${r}_${c} = vec4<f32>(0.0);\n  var dv${r}_${c} = vec4<f32>(0.0);\n`;
    }
  }
  s += `  for (var g = 0u; g < p.G; g++) {
    let h = hk * p.G + g;
    for (var i = ilo; i < ihi; i++) {
      let qh = q_row(b, u32(i), h);
      let li = lse[(b * p.H + h) * p.Tq + u32(i)];
      let dii = di[(b * p.H + h) * p.Tq + u32(i)];
      let qpos = p.q_offset + i;
`;
  for (let c = 0; c < D4; c++) {
    s += `      let q${c} = q_ld(qh, ${c}u) * p.scale;\n      let g${c} = dout_ld(qh, ${c}u);\n`;
  }
  for (let r = 0; r < R; r++) {
    s += `      let s${r} = ${dotChain((c) => `q${c}`, (c) => `k${r}_${c}`, D4)};\n`;
    s += `      let dp${r} = ${dotChain((c) => `g${c}`, (c) => `v${r}_${c}`, D4)};\n`;
    s += `      let vis${r} = visible(b, qpos, j${r});\n`;
    s += `      let p${r} = select(0.0, exp(s${r} - li), vis${r});\n`;
    if (v.drop) {
      s += `      let z${r} = drop_z(b, h, u32(i), j${r});\n`;
      s += `      let ds${r} = select(0.0, p${r} * (dp${r} * z${r} - dii), vis${r});\n`;
      s += `      let pd${r} = p${r} * z${r};\n`;
    } else s += `      let ds${r} = select(0.0, p${r} * (dp${r} - dii), vis${r});\n`;
  }
  const pv = v.drop ? "pd" : "p";
  for (let c = 0; c < D4; c++) {
    s += "     ";
    for (let r = 0; r < R; r++) {
      s +=
        ` dv${r}_${c} = fma(vec4<f32>(${pv}${r}), g${c}, dv${r}_${c}); dk${r}_${c} = fma(vec4<f32>(ds${r}), q${c}, dk${r}_${c});`;
    }
    s += "\n";
  }
  s += "    }\n  }\n";
  for (let r = 0; r < R; r++) {
    s += `  if (j${r} < p.Tk) {\n    let oh = dk_row(b, j${r}, hk);\n`;
    for (let c = 0; c < D4; c++) {
      s += `    dk_st(oh, ${c}u, dk${r}_${c});\n    dv_st(oh, ${c}u, dv${r}_${c});\n`;
    }
    s += "  }\n";
  }
  return { spec, code: s + "}\n" };
});

// ---- staging textures (tex family): (B, T, heads, D) as texels (heads * D4, T, layer B) ----

export interface Staged {
  key: string;
  bytes: number;
  texture: GPUTexture;
  view: GPUTextureView;
}

const texPools = new WeakMap<Gpu, { free: Map<string, Staged[]>; bytes: number }>();
/** Bytes of free staging textures kept per GPU; past it a released texture is destroyed. */
const TEX_POOL_BYTES = 64 * 1024 * 1024;

export function fitsTexture(gpu: Gpu, t: Tensor): boolean {
  const [B, T, heads, D] = t.shape, l = gpu.device.limits;
  const w = heads * Math.ceil(D / 4);
  return B > 0 && T > 0 && w <= l.maxTextureDimension2D && T <= l.maxTextureDimension2D &&
    B <= l.maxTextureArrayLayers;
}

/** Stage `t` into a pooled texture (a dispatch recorded in the open batch). */
export function stage(gpu: Gpu, t: Tensor): Staged {
  const [B, T, heads, D] = t.shape;
  const width = heads * Math.ceil(D / 4);
  const key = `${width}x${T}x${B}`;
  let pool = texPools.get(gpu);
  if (!pool) texPools.set(gpu, pool = { free: new Map(), bytes: 0 });
  let s = pool.free.get(key)?.pop();
  if (s) pool.bytes -= s.bytes;
  else {
    const texture = gpu.device.createTexture({
      size: [width, T, B],
      format: "rgba32float",
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING,
    });
    s = { key, bytes: width * T * B * 16, texture, view: texture.createView({ dimension: "2d-array" }) };
  }
  const k = stageRows(D);
  gpu.dispatch(
    gpu.pipeline(k.spec.label, k.code),
    [s.view, range(t)],
    packParams(STAGE_PARAMS, { T, heads, width }),
    [Math.ceil(width / 8), Math.ceil(T / 8), B],
  );
  return s;
}

/**
 * Give a staging texture back. Reusing it in the same batch is safe: dispatches run in order, so
 * its next staging runs after this kernel has read it. Past the pool budget it is destroyed, after
 * submitting the batch that uses it.
 */
export function releaseTexture(gpu: Gpu, s: Staged): void {
  const pool = texPools.get(gpu)!;
  if (pool.bytes + s.bytes > TEX_POOL_BYTES) {
    gpu.flush();
    s.texture.destroy();
    return;
  }
  pool.bytes += s.bytes;
  let list = pool.free.get(s.key);
  if (!list) pool.free.set(s.key, list = []);
  list.push(s);
}
