/**
 * WGSL of the attention kernels (private to `attention.ts`; the math, shapes and grids are
 * documented there). Every kernel shares one params struct and one `visible(b, qpos, j)` predicate,
 * so the masking rules exist once in WGSL and once in the reference.
 *
 * Layouts (contiguous, f32): q, out, dout `[B, Tq, H, D]`; k, v `[B, Tk, Hkv, D]`; lse, di
 * `[B, H, Tq]`; mask `[B, mask_stride]`.
 *
 * Two families: `tile` (workgroup-memory tiles, one row per thread: flashForward, backwardQ,
 * backwardKV) and the register-blocked `reg` / `tex` kernels (regForward, regBackwardQ,
 * regBackwardKV; generated unrolled over rows, keys per step and vec4 chunks of D, as
 * `_matmul_wgsl.ts` does), plus the split-K decode pair and the texture staging kernel.
 *
 * @module
 */
import type { BindingSpec, KernelSpec } from "./_kernel.ts";
import { memo, wgslHeader } from "./_kernel.ts";

/** Uniform params shared by every attention kernel. */
export const ATTN_PARAMS = {
  B: "u32",
  Tq: "u32",
  Tk: "u32",
  H: "u32",
  Hkv: "u32",
  G: "u32",
  kv_len: "u32",
  q_offset: "i32",
  causal: "u32",
  window: "u32",
  mask_stride: "u32",
  nsplit: "u32",
  scale: "f32",
} as const;

/** Mask element type of a kernel variant (`none`: no mask binding). */
export type MaskKind = "none" | "f32" | "i32" | "u32";

/** Threads per workgroup: query rows (forward, dQ), keys (dK/dV, split-K). */
export const WG = 64;
/** Keys per split of the split-K decode kernel (one per thread). */
export const SPLIT = WG;
/** Bytes of workgroup memory a kernel may use (the WebGPU default limit, so any adapter works). */
const SHARED_BYTES = 16384;
/** -FLT_MAX: the "minus infinity" of scores and of the logsumexp of fully masked rows. */
export const NEG = -3.4028234663852886e38;

/** Keys per shared-memory tile of the forward and dQ kernels (K and V tiles). */
export function keyTile(D: number): number {
  return Math.max(1, Math.min(32, Math.floor(SHARED_BYTES / (32 * Math.ceil(D / 4)))));
}

/** Queries per shared-memory tile of the dK/dV kernel (Q and dO tiles plus lse and di). */
export function queryTile(D: number): number {
  return Math.max(1, Math.min(32, Math.floor(SHARED_BYTES / (32 * Math.ceil(D / 4) + 8))));
}

/** Largest rows (query heads of a group times queries) the split-K kernel holds for head dim D. */
export function splitRows(D: number): number {
  return Math.max(1, Math.min(16, Math.floor(2048 / D)));
}

const ro = (name: string, type = "f32"): BindingSpec => ({ name, type, access: "read" });
const rw = (name: string): BindingSpec => ({ name, type: "f32", access: "read_write" });
const maskBinding = (m: MaskKind): BindingSpec[] => (m === "none" ? [] : [ro("mask", m)]);

const ZERO: Record<Exclude<MaskKind, "none">, string> = { f32: "0.0", i32: "0i", u32: "0u" };

function visibleFn(m: MaskKind): string {
  return `
fn visible(b: u32, qpos: i32, j: u32) -> bool {
  if (j >= p.kv_len) { return false; }
  if (p.causal == 1u && i32(j) > qpos) { return false; }
  if (p.window > 0u && i32(j) <= qpos - i32(p.window)) { return false; }
  ${m === "none" ? "" : `if (mask[b * p.mask_stride + j] == ${ZERO[m]}) { return false; }`}
  return true;
}
`;
}

/** Key range [lo, hi) any query of positions [qlo, qhi] may see (causal and window bounds). */
const KEY_RANGE = `
fn key_range(qlo: i32, qhi: i32) -> vec2<u32> {
  var hi = i32(p.kv_len);
  if (p.causal == 1u) { hi = min(hi, qhi + 1); }
  var lo = 0i;
  if (p.window > 0u) { lo = max(0i, qlo - i32(p.window) + 1); }
  hi = max(hi, lo);
  return vec2<u32>(u32(lo), u32(hi));
}
`;

const prelude = (D: number) => `const WG = ${WG}u;\nconst D = ${D}u;\nconst NEG = ${NEG};\n`;

/** A kernel's spec and code, keyed by `kind|D|mask|extra`. */
export interface Built {
  spec: KernelSpec;
  code: string;
}

function build(spec: KernelSpec, head: string, body: string): Built {
  return { spec, code: `${head}${wgslHeader(spec)}${body}` };
}

/** Number of vec4 chunks of a head row (D padded to a multiple of 4 with zeros in registers). */
export const chunks = (D: number): number => Math.ceil(D / 4);

/** WGSL `fn ld4_<name>(e: u32, d: u32) -> vec4<f32>`: elements [e, e + 4) of a row, zeros past D. */
function load4(name: string, D: number): string {
  const body = D % 4 === 0
    ? `return vec4<f32>(${name}[e], ${name}[e + 1u], ${name}[e + 2u], ${name}[e + 3u]);`
    : `var r = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) { if (d + c < D) { r[c] = ${name}[e + c]; } }
  return r;`;
  return `fn ld4_${name}(e: u32, d: u32) -> vec4<f32> {\n  ${body}\n}\n`;
}

/** WGSL statements storing vec4 `val` at row offset `e` (dim `d`) of `name`, dropping dims past D. */
function store4(name: string, D: number, e: string, d: string, val: string): string {
  return D % 4 === 0
    ? `${name}[${e}] = ${val}.x; ${name}[${e} + 1u] = ${val}.y; ${name}[${e} + 2u] = ${val}.z; ${name}[${e} + 3u] = ${val}.w;`
    : `for (var c = 0u; c < 4u; c++) { if (${d} + c < D) { ${name}[${e} + c] = ${val}[c]; } }`;
}

/** Forward, flash style: one workgroup per (query tile, head, batch), one thread per query row. */
export const flashForward = memo((key: `${number}|${MaskKind}`): Built => {
  const [d, m] = key.split("|") as [string, MaskKind];
  const D = Number(d), BK = keyTile(D), D4 = chunks(D);
  const spec: KernelSpec = {
    label: "attention.forward",
    params: ATTN_PARAMS,
    bindings: [rw("out"), rw("lse"), ro("q"), ro("k"), ro("v"), ...maskBinding(m)],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const BK = ${BK}u;
const D4 = ${D4}u;
var<workgroup> ks: array<vec4<f32>, ${BK * D4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * D4}>;
${visibleFn(m)}${KEY_RANGE}${load4("q", D)}${load4("k", D)}${load4("v", D)}`;
  return build(
    spec,
    head,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
  let h = wid.y;
  let hk = h / p.G;
  let i = wid.x * WG + lid.x;
  let valid = i < p.Tq;
  let qpos = p.q_offset + i32(i);
  let qrow = ((b * p.Tq + i) * p.H + h) * D;
  var qr: array<vec4<f32>, D4>;
  var acc: array<vec4<f32>, D4>;
  if (valid) {
    for (var c = 0u; c < D4; c++) { qr[c] = ld4_q(qrow + 4u * c, 4u * c) * p.scale; }
  }
  var mx = NEG;
  var l = 0.0;
  let last = min(wid.x * WG + WG, p.Tq) - 1u;
  let kr = key_range(p.q_offset + i32(wid.x * WG), p.q_offset + i32(last));
  for (var j0 = kr.x; j0 < kr.y; j0 += BK) {
    for (var e = lid.x; e < BK * D4; e += WG) {
      let j = j0 + e / D4;
      if (j < kr.y) {
        let c = e % D4;
        let src = ((b * p.Tk + j) * p.Hkv + hk) * D + 4u * c;
        ks[e] = ld4_k(src, 4u * c);
        vs[e] = ld4_v(src, 4u * c);
      }
    }
    workgroupBarrier();
    if (valid) {
      var s: array<f32, BK>;
      var tmax = mx;
      for (var jj = 0u; jj < BK; jj++) {
        let j = j0 + jj;
        s[jj] = NEG;
        if (j < kr.y && visible(b, qpos, j)) {
          var sd = 0.0;
          for (var c = 0u; c < D4; c++) { sd += dot(qr[c], ks[jj * D4 + c]); }
          s[jj] = sd;
          tmax = max(tmax, sd);
        }
      }
      if (tmax > mx) {
        let corr = exp(mx - tmax);
        l *= corr;
        for (var c = 0u; c < D4; c++) { acc[c] *= corr; }
        mx = tmax;
      }
      for (var jj = 0u; jj < BK; jj++) {
        if (s[jj] > NEG) {
          let pj = exp(s[jj] - mx);
          l += pj;
          for (var c = 0u; c < D4; c++) { acc[c] += pj * vs[jj * D4 + c]; }
        }
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var c = 0u; c < D4; c++) {
      let o4 = acc[c] * inv;
      let dd = 4u * c;
      ${store4("out", D, "qrow + dd", "dd", "o4")}
    }
    lse[(b * p.H + h) * p.Tq + i] = select(NEG, mx + log(l), l > 0.0);
  }
}
`,
  );
});

/**
 * Decode, split-K: one workgroup per (key split of SPLIT keys, kv head, batch) serves the R = G * Tq
 * query rows of the group: scores (one key per thread), the split's softmax max and sum, and the
 * unnormalized P·V (threads over rows x dims); `combine` merges the splits.
 */
export const splitForward = memo((key: `${number}|${MaskKind}|${number}`): Built => {
  const [d, m, r] = key.split("|") as [string, MaskKind, string];
  const D = Number(d), R = Number(r);
  const spec: KernelSpec = {
    label: "attention.decode",
    params: ATTN_PARAMS,
    bindings: [rw("pacc"), rw("pml"), ro("q"), ro("k"), ro("v"), ...maskBinding(m)],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const R = ${R}u;
var<workgroup> qs: array<f32, ${R * D}>;
var<workgroup> sc: array<f32, ${R * WG}>;
var<workgroup> mrow: array<f32, R>;
${visibleFn(m)}`;
  return build(
    spec,
    head,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let split = wid.x;
  let hk = wid.y;
  let b = wid.z;
  let t = lid.x;
  for (var e = t; e < R * D; e += WG) {
    let r = e / D;
    let h = hk * p.G + r / p.Tq;
    qs[e] = q[((b * p.Tq + r % p.Tq) * p.H + h) * D + e % D] * p.scale;
  }
  workgroupBarrier();
  let j = split * WG + t;
  var kr: array<f32, D>;
  if (j < p.kv_len) {
    let src = ((b * p.Tk + j) * p.Hkv + hk) * D;
    for (var d = 0u; d < D; d++) { kr[d] = k[src + d]; }
  }
  for (var r = 0u; r < R; r++) {
    var s = NEG;
    if (visible(b, p.q_offset + i32(r % p.Tq), j)) {
      s = 0.0;
      for (var d = 0u; d < D; d++) { s += qs[r * D + d] * kr[d]; }
    }
    sc[r * WG + t] = s;
  }
  workgroupBarrier();
  let base = ((b * p.Hkv + hk) * p.nsplit + split) * R;
  if (t < R) {
    var mx = NEG;
    for (var jj = 0u; jj < WG; jj++) { mx = max(mx, sc[t * WG + jj]); }
    var l = 0.0;
    for (var jj = 0u; jj < WG; jj++) {
      let s = sc[t * WG + jj];
      if (s > NEG) { l += exp(s - mx); }
    }
    mrow[t] = mx;
    pml[(base + t) * 2u] = mx;
    pml[(base + t) * 2u + 1u] = l;
  }
  workgroupBarrier();
  for (var e = t; e < R * WG; e += WG) {
    let s = sc[e];
    sc[e] = select(0.0, exp(s - mrow[e / WG]), s > NEG);
  }
  workgroupBarrier();
  let nk = min(WG, p.kv_len - min(p.kv_len, split * WG));
  for (var e = t; e < R * D; e += WG) {
    let r = e / D;
    let dd = e % D;
    var a = 0.0;
    for (var jj = 0u; jj < nk; jj++) {
      a += sc[r * WG + jj] * v[((b * p.Tk + split * WG + jj) * p.Hkv + hk) * D + dd];
    }
    pacc[base * D + e] = a;
  }
}
`,
  );
});

/** Merge the split-K partials: one thread per output element (b, i, h, d); d = 0 writes lse. */
export const combine = memo((key: `${number}|${number}`): Built => {
  const [d, r] = key.split("|");
  const D = Number(d), R = Number(r);
  const spec: KernelSpec = {
    label: "attention.combine",
    params: ATTN_PARAMS,
    bindings: [rw("out"), rw("lse"), ro("pacc"), ro("pml")],
    workgroupSize: [WG, 1, 1],
  };
  return build(
    spec,
    `${prelude(D)}const R = ${R}u;\n`,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let gid = wid.x * WG + lid.x + wid.y * nwg.x * WG;
  if (gid >= p.B * p.Tq * p.H * D) { return; }
  let dd = gid % D;
  let h = (gid / D) % p.H;
  let i = (gid / (D * p.H)) % p.Tq;
  let b = gid / (D * p.H * p.Tq);
  let hk = h / p.G;
  let r = (h % p.G) * p.Tq + i;
  let base = (b * p.Hkv + hk) * p.nsplit;
  var mx = NEG;
  for (var s = 0u; s < p.nsplit; s++) { mx = max(mx, pml[((base + s) * R + r) * 2u]); }
  var l = 0.0;
  var a = 0.0;
  for (var s = 0u; s < p.nsplit; s++) {
    let row = (base + s) * R + r;
    let w = exp(pml[row * 2u] - mx);
    l += w * pml[row * 2u + 1u];
    a += w * pacc[row * D + dd];
  }
  out[gid] = select(0.0, a / l, l > 0.0);
  if (dd == 0u) { lse[(b * p.H + h) * p.Tq + i] = select(NEG, mx + log(l), l > 0.0); }
}
`,
  );
});

/** Backward preprocessing: di[b, h, i] = rowsum(dout ∘ out), one thread per row. */
export const rowDot = memo((D: number): Built => {
  const spec: KernelSpec = {
    label: "attention.backward_di",
    params: ATTN_PARAMS,
    bindings: [rw("di"), ro("dout"), ro("o")],
    workgroupSize: [WG, 1, 1],
  };
  return build(
    spec,
    prelude(D),
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let gid = wid.x * WG + lid.x + wid.y * nwg.x * WG;
  if (gid >= p.B * p.Tq * p.H) { return; }
  let h = gid % p.H;
  let i = (gid / p.H) % p.Tq;
  let b = gid / (p.H * p.Tq);
  var s = 0.0;
  for (var d = 0u; d < D; d++) { s += dout[gid * D + d] * o[gid * D + d]; }
  di[(b * p.H + h) * p.Tq + i] = s;
}
`,
  );
});

/** dQ: one workgroup per (query tile, head, batch), one thread per query row, loop over key tiles. */
export const backwardQ = memo((key: `${number}|${MaskKind}`): Built => {
  const [d, m] = key.split("|") as [string, MaskKind];
  const D = Number(d), BK = keyTile(D), D4 = chunks(D);
  const spec: KernelSpec = {
    label: "attention.backward_dq",
    params: ATTN_PARAMS,
    bindings: [rw("dq"), ro("dout"), ro("q"), ro("k"), ro("v"), ro("lse"), ro("di"), ...maskBinding(m)],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const BK = ${BK}u;
const D4 = ${D4}u;
var<workgroup> ks: array<vec4<f32>, ${BK * D4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * D4}>;
${visibleFn(m)}${KEY_RANGE}${load4("q", D)}${load4("dout", D)}${load4("k", D)}${load4("v", D)}`;
  return build(
    spec,
    head,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
  let h = wid.y;
  let hk = h / p.G;
  let i = wid.x * WG + lid.x;
  let valid = i < p.Tq;
  let qpos = p.q_offset + i32(i);
  let qrow = ((b * p.Tq + i) * p.H + h) * D;
  var qr: array<vec4<f32>, D4>;
  var dor: array<vec4<f32>, D4>;
  var dqr: array<vec4<f32>, D4>;
  var lrow = 0.0;
  var drow = 0.0;
  if (valid) {
    for (var c = 0u; c < D4; c++) {
      qr[c] = ld4_q(qrow + 4u * c, 4u * c) * p.scale;
      dor[c] = ld4_dout(qrow + 4u * c, 4u * c);
    }
    lrow = lse[(b * p.H + h) * p.Tq + i];
    drow = di[(b * p.H + h) * p.Tq + i];
  }
  let last = min(wid.x * WG + WG, p.Tq) - 1u;
  let kr = key_range(p.q_offset + i32(wid.x * WG), p.q_offset + i32(last));
  for (var j0 = kr.x; j0 < kr.y; j0 += BK) {
    for (var e = lid.x; e < BK * D4; e += WG) {
      let j = j0 + e / D4;
      if (j < kr.y) {
        let c = e % D4;
        let src = ((b * p.Tk + j) * p.Hkv + hk) * D + 4u * c;
        ks[e] = ld4_k(src, 4u * c);
        vs[e] = ld4_v(src, 4u * c);
      }
    }
    workgroupBarrier();
    if (valid) {
      for (var jj = 0u; jj < BK; jj++) {
        let j = j0 + jj;
        if (j < kr.y && visible(b, qpos, j)) {
          var s = 0.0;
          var dp = 0.0;
          for (var c = 0u; c < D4; c++) {
            s += dot(qr[c], ks[jj * D4 + c]);
            dp += dot(dor[c], vs[jj * D4 + c]);
          }
          let ds = exp(s - lrow) * (dp - drow);
          for (var c = 0u; c < D4; c++) { dqr[c] += ds * ks[jj * D4 + c]; }
        }
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    for (var c = 0u; c < D4; c++) {
      let g4 = dqr[c] * p.scale;
      let dd = 4u * c;
      ${store4("dq", D, "qrow + dd", "dd", "g4")}
    }
  }
}
`,
  );
});

/**
 * dK, dV: one workgroup per (key tile, kv head, batch), one thread per key row, looping over the
 * group's query heads and their query tiles (no atomics: each thread owns its rows of dK and dV).
 */
export const backwardKV = memo((key: `${number}|${MaskKind}`): Built => {
  const [d, m] = key.split("|") as [string, MaskKind];
  const D = Number(d), BQ = queryTile(D), D4 = chunks(D);
  const spec: KernelSpec = {
    label: "attention.backward_dkv",
    params: ATTN_PARAMS,
    bindings: [
      rw("dk"),
      rw("dv"),
      ro("dout"),
      ro("q"),
      ro("k"),
      ro("v"),
      ro("lse"),
      ro("di"),
      ...maskBinding(m),
    ],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const BQ = ${BQ}u;
const D4 = ${D4}u;
var<workgroup> qs: array<vec4<f32>, ${BQ * D4}>;
var<workgroup> dos: array<vec4<f32>, ${BQ * D4}>;
var<workgroup> ls: array<f32, BQ>;
var<workgroup> dis: array<f32, BQ>;
${visibleFn(m)}${load4("q", D)}${load4("dout", D)}${load4("k", D)}${load4("v", D)}`;
  return build(
    spec,
    head,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
  let hk = wid.y;
  let j = wid.x * WG + lid.x;
  let valid = j < p.Tk;
  let krow = ((b * p.Tk + j) * p.Hkv + hk) * D;
  var kr: array<vec4<f32>, D4>;
  var vr: array<vec4<f32>, D4>;
  var dka: array<vec4<f32>, D4>;
  var dva: array<vec4<f32>, D4>;
  if (valid && j < p.kv_len) {
    for (var c = 0u; c < D4; c++) {
      kr[c] = ld4_k(krow + 4u * c, 4u * c);
      vr[c] = ld4_v(krow + 4u * c, 4u * c);
    }
  }
  // Queries that may see keys [jlo, jhi]: position >= jlo (causal), position < jhi + window.
  let jlo = i32(wid.x * WG);
  let jhi = i32(min(wid.x * WG + WG, p.Tk)) - 1;
  var ilo = 0i;
  if (p.causal == 1u) { ilo = max(0i, jlo - p.q_offset); }
  var ihi = i32(p.Tq);
  if (p.window > 0u) { ihi = min(ihi, jhi + i32(p.window) - p.q_offset); }
  if (u32(jlo) >= p.kv_len) { ihi = ilo; }
  for (var g = 0u; g < p.G; g++) {
    let h = hk * p.G + g;
    for (var i0 = ilo; i0 < ihi; i0 += i32(BQ)) {
      for (var e = lid.x; e < BQ * D4; e += WG) {
        let i = u32(i0) + e / D4;
        if (i < u32(ihi)) {
          let c = e % D4;
          let src = ((b * p.Tq + i) * p.H + h) * D + 4u * c;
          qs[e] = ld4_q(src, 4u * c) * p.scale;
          dos[e] = ld4_dout(src, 4u * c);
        }
      }
      for (var e = lid.x; e < BQ; e += WG) {
        let i = u32(i0) + e;
        if (i < u32(ihi)) {
          ls[e] = lse[(b * p.H + h) * p.Tq + i];
          dis[e] = di[(b * p.H + h) * p.Tq + i];
        }
      }
      workgroupBarrier();
      if (valid) {
        for (var ii = 0u; ii < BQ; ii++) {
          let i = u32(i0) + ii;
          if (i < u32(ihi) && visible(b, p.q_offset + i32(i), j)) {
            var s = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < D4; c++) {
              s += dot(qs[ii * D4 + c], kr[c]);
              dp += dot(dos[ii * D4 + c], vr[c]);
            }
            let pj = exp(s - ls[ii]);
            let ds = pj * (dp - dis[ii]);
            for (var c = 0u; c < D4; c++) {
              dva[c] += pj * dos[ii * D4 + c];
              dka[c] += ds * qs[ii * D4 + c];
            }
          }
        }
      }
      workgroupBarrier();
    }
  }
  if (valid) {
    for (var c = 0u; c < D4; c++) {
      let dd = 4u * c;
      let k4 = dka[c];
      let v4 = dva[c];
      ${store4("dk", D, "krow + dd", "dd", "k4")}
      ${store4("dv", D, "krow + dd", "dd", "v4")}
    }
  }
}
`,
  );
});

// ---- register-blocked kernels (`reg` / `tex` families): no workgroup memory, no barriers ----

/** Binding type marker of a texture-staged operand. */
export const TEXTURE = "texture_2d_array<f32>";

/** Where a register kernel reads a head-row operand from. */
type Src = "tex" | "vec" | "f32";

/**
 * A register-blocked kernel variant: `rows` rows per invocation (query rows for the forward and
 * dQ, key rows for dK/dV), `bk` keys unrolled per step (forward, dQ), `wg` invocations per
 * workgroup, and `tex`: K/V (forward, dQ) or Q/dO (dK/dV) read from staged textures.
 */
export interface RegVariant {
  D: number;
  mask: MaskKind;
  rows: number;
  bk: number;
  wg: number;
  tex: boolean;
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
  `${v.D}|${v.mask}|${v.rows}|${v.bk}|${v.wg}|${v.tex ? 1 : 0}`;
function parseRegKey(key: string): RegVariant {
  const [d, m, r, bk, wg, t] = key.split("|");
  return { D: +d, mask: m as MaskKind, rows: +r, bk: +bk, wg: +wg, tex: t === "1" };
}

/**
 * Forward, register-blocked: one invocation per (R query rows, head, batch), invocations ordered
 * head fastest (a SIMD group shares its rows' causal key range) and the latest row blocks first
 * (causal: the longest first). Per step of BK keys: scores of R x BK (fma chains over D with q in
 * registers), one online-softmax rescale per row when the block raises its max, then P·V into the
 * R x D accumulators. Each K/V vec4 load feeds R rows.
 * Bindings: params, out, lse, q, k, v[, mask] (k, v textures when `tex`). Grid: `gridFor(B * H *
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
      ...maskBinding(v.mask),
    ],
    workgroupSize: [wg, 1, 1],
  };
  let s = `${prelude(D)}const WGR = ${wg}u;\n${regHeader(spec)}${visibleFn(v.mask)}${KEY_RANGE}${HSUM}`;
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
  let kr = key_range(p.q_offset + i32(i0), p.q_offset + i32(ilast));
  let klast = max(kr.y, 1u) - 1u;
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
  }
  for (let jj = 0; jj < BK; jj++) {
    s += `    let vh${jj} = v_row(b, min(j${jj}, klast), hk);\n`;
    for (let c = 0; c < D4; c++) {
      s += `    { let x = v_ld(vh${jj}, ${c}u);`;
      for (let r = 0; r < R; r++) s += ` a${r}_${c} = fma(vec4<f32>(p${r}_${jj}), x, a${r}_${c});`;
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
 * Bindings: params, dq, di, dout, o, q, lse, k, v[, mask]. Grid: `gridFor(B * H * ceil(Tq / R), wg)`.
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
      ...maskBinding(v.mask),
    ],
    workgroupSize: [wg, 1, 1],
  };
  let s = `${prelude(D)}const WGR = ${wg}u;\n${regHeader(spec)}${visibleFn(v.mask)}${KEY_RANGE}${HSUM}`;
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
  let kr = key_range(p.q_offset + i32(i0), p.q_offset + i32(ilast));
  let klast = max(kr.y, 1u) - 1u;
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
      s +=
        `    let ds${r}_${jj} = select(0.0, exp(s${r}_${jj} - lse${r}) * (dp${r}_${jj} - di${r}), visible(b, qpos${r}, j${jj}));\n`;
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
 * Bindings: params, dk, dv, k, v, lse, di, q, dout[, mask] (q, dout textures when `tex`).
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
      ...maskBinding(v.mask),
    ],
    workgroupSize: [wg, 1, 1],
  };
  let s = `${prelude(D)}const WGR = ${wg}u;\n${regHeader(spec)}${visibleFn(v.mask)}${HSUM}`;
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
`;
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
    s += `      let ds${r} = select(0.0, p${r} * (dp${r} - dii), vis${r});\n`;
  }
  for (let c = 0; c < D4; c++) {
    s += "     ";
    for (let r = 0; r < R; r++) {
      s +=
        ` dv${r}_${c} = fma(vec4<f32>(p${r}), g${c}, dv${r}_${c}); dk${r}_${c} = fma(vec4<f32>(ds${r}), q${c}, dk${r}_${c});`;
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
