/**
 * WGSL of the attention kernels (private to `attention.ts`; the math, shapes and grids are
 * documented there). Every kernel shares one params struct and one `visible(b, qpos, j)` predicate,
 * so the masking rules exist once in WGSL and once in the reference.
 *
 * Layouts (contiguous, f32): q, out, dout `[B, Tq, H, D]`; k, v `[B, Tk, Hkv, D]`; lse, di
 * `[B, H, Tq]`; mask `[B, mask_stride]`; seg `[B, seg_stride]` (i32). Bindings end with
 * `[mask][, seg]` when the variant has them.
 *
 * Two families: `tile` (workgroup-memory tiles, one row per thread: flashForward, backwardQ,
 * backwardKV), here with the split-K decode pair and the helpers every kernel shares, and the
 * register-blocked `reg` / `tex` kernels in `_attention_wgsl_reg.ts`.
 *
 * Segments (packed rows, a `seg` variant so kernels without them stay the same code): `seg`
 * `[B, seg_stride]` i32 per absolute position; key j is visible to the query at qpos only when
 * seg[b, j] == seg[b, qpos] and seg[b, j] != 0 (padding keys never), in the shared `visible`.
 *
 * Dropout on the probabilities (training kernels only, a `drop` variant so the undropped kernels
 * stay the same code): `drop_z(b, h, i, j)` is 0 or `drop_scale` = 1 / (1 - p) from the hash of the
 * flat index ((b * H + h) * Tq + i) * Tk + j (u32, wrapping) and `drop_seed`; the forward multiplies
 * the normalised P by it, the backward recomputes it (no mask in memory).
 *
 * @module
 */
import type { BindingSpec, KernelSpec } from "./_kernel.ts";
import { LINEAR_INDEX, MAIN_ARGS, memo, wgslHeader } from "./_kernel.ts";
import { DROPOUT_HASH_WGSL } from "./elementwise.ts";

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
  drop_seed: "u32",
  drop_thr: "u32",
  drop_scale: "f32",
  seg_stride: "u32",
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

export const ro = (name: string, type = "f32"): BindingSpec => ({ name, type, access: "read" });
export const rw = (name: string): BindingSpec => ({ name, type: "f32", access: "read_write" });
export const maskBinding = (m: MaskKind): BindingSpec[] => (m === "none" ? [] : [ro("mask", m)]);
/** The trailing bindings of a variant: the key mask (when any), then the segment ids (when `seg`). */
export const maskBindings = (m: MaskKind, seg: boolean): BindingSpec[] => [
  ...maskBinding(m),
  ...(seg ? [ro("seg", "i32")] : []),
];

const ZERO: Record<Exclude<MaskKind, "none">, string> = { f32: "0.0", i32: "0i", u32: "0u" };

/**
 * WGSL `fn visible(b, qpos, j) -> bool`: the masking rules (kv_len, causal, window, key mask,
 * segments), the one copy every kernel shares. `qpos` of rows past Tq (register kernels compute
 * them, never store them) is clamped into the segment row.
 */
export function visibleFn(m: MaskKind, seg: boolean): string {
  const segTest = `  let sk = seg[b * p.seg_stride + j];
  if (sk == 0i || sk != seg[b * p.seg_stride + min(u32(max(qpos, 0i)), p.seg_stride - 1u)]) { return false; }
`;
  return `
fn visible(b: u32, qpos: i32, j: u32) -> bool {
  if (j >= p.kv_len) { return false; }
  if (p.causal == 1u && i32(j) > qpos) { return false; }
  if (p.window > 0u && i32(j) <= qpos - i32(p.window)) { return false; }
  ${m === "none" ? "" : `if (mask[b * p.mask_stride + j] == ${ZERO[m]}) { return false; }`}
${seg ? segTest : ""}  return true;
}
`;
}

/**
 * With segment ids (packed rows), the parts of a key or query range that cross no segment of the
 * other side are skipped, where every score would be masked anyway (see {@linkcode segKeysStart}
 * and {@linkcode segQueriesEnd}): for an example packed third into a row, the keys of the two
 * before it. Only work whose every term is masked is dropped, so the results are bit for bit those
 * of the full ranges. `seg_at(b, pos)`: the segment id at a position, clamped to the row.
 */
export const SEG_AT = `
fn seg_at(b: u32, pos: i32) -> i32 {
  return seg[b * p.seg_stride + min(u32(max(pos, 0i)), p.seg_stride - 1u)];
}
`;

/**
 * WGSL statements raising `kr.x` (a `var` key range) past the keys whose segment is none of the
 * segments of the query positions `qpos` (expressions), padding keys included, in whole steps of
 * `step` keys from the old start: the key blocks that remain are the blocks of the full range, so
 * the online softmax rounds as before.
 */
export function segKeysStart(qpos: string[], step: number): string {
  const qs = qpos.map((q, r) => `    let qs${r} = seg_at(b, ${q});\n`).join("");
  const hit = qpos.map((_, r) => `sk == qs${r}`).join(" || ");
  return `  {
${qs}    var j = kr.x;
    loop {
      if (j >= kr.y) { break; }
      let sk = seg[b * p.seg_stride + j];
      if (sk != 0i && (${hit})) { break; }
      j++;
    }
    kr.x = min(kr.x + ((j - kr.x) / ${step}u) * ${step}u, kr.y);
  }
`;
}

/**
 * WGSL statements lowering `ihi` (a `var`; queries [ilo, ihi), position q_offset + i) past the
 * queries that see none of the keys `keys` (index expressions; padding keys see nothing).
 */
export function segQueriesEnd(keys: string[]): string {
  const ks = keys.map((k, r) => `    let ks${r} = seg[b * p.seg_stride + ${k}];\n`).join("");
  const hit = keys.map((_, r) => `(sq == ks${r} && ks${r} != 0i)`).join(" || ");
  return `  {
${ks}    loop {
      if (ihi <= ilo) { break; }
      let sq = seg_at(b, p.q_offset + ihi - 1i);
      if (${hit}) { break; }
      ihi--;
    }
  }
`;
}

/** Key range [lo, hi) any query of positions [qlo, qhi] may see (causal and window bounds). */
export const KEY_RANGE = `
fn key_range(qlo: i32, qhi: i32) -> vec2<u32> {
  var hi = i32(p.kv_len);
  if (p.causal == 1u) { hi = min(hi, qhi + 1); }
  var lo = 0i;
  if (p.window > 0u) { lo = max(0i, qlo - i32(p.window) + 1); }
  hi = max(hi, lo);
  return vec2<u32>(u32(lo), u32(hi));
}
`;

/**
 * WGSL `fn drop_z(b, h, i, j) -> f32`: the attention-dropout factor of P_ij, 0 (dropped) or
 * `p.drop_scale`, from the hash of the flat (B, H, Tq, Tk) index (see the module header).
 */
export const DROP_FN = `${DROPOUT_HASH_WGSL}fn drop_z(b: u32, h: u32, i: u32, j: u32) -> f32 {
  let idx = ((b * p.H + h) * p.Tq + i) * p.Tk + j;
  return select(0.0, p.drop_scale, dropout_hash(p.drop_seed, idx) >= p.drop_thr);
}
`;

/** Memo key of a tile kernel: head dim, mask kind, dropout (1) or not (0), segments (1) or not (0). */
export type TileKey = `${number}|${MaskKind}|${0 | 1}|${0 | 1}`;

function parseTileKey(key: TileKey): { D: number; m: MaskKind; drop: boolean; seg: boolean } {
  const [d, m, dr, sg] = key.split("|");
  return { D: Number(d), m: m as MaskKind, drop: dr === "1", seg: sg === "1" };
}

export const prelude = (D: number) => `const WG = ${WG}u;\nconst D = ${D}u;\nconst NEG = ${NEG};\n`;

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
export const flashForward = memo((key: TileKey): Built => {
  const { D, m, drop, seg } = parseTileKey(key);
  const BK = keyTile(D), D4 = chunks(D);
  const spec: KernelSpec = {
    label: "attention.forward",
    params: ATTN_PARAMS,
    bindings: [rw("out"), rw("lse"), ro("q"), ro("k"), ro("v"), ...maskBindings(m, seg)],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const BK = ${BK}u;
const D4 = ${D4}u;
var<workgroup> ks: array<vec4<f32>, ${BK * D4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * D4}>;
${visibleFn(m, seg)}${KEY_RANGE}${drop ? DROP_FN : ""}${load4("q", D)}${load4("k", D)}${load4("v", D)}`;
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
          ${
      drop
        ? "let pz = pj * drop_z(b, h, i, j0 + jj);\n          for (var c = 0u; c < D4; c++) { acc[c] += pz * vs[jj * D4 + c]; }"
        : "for (var c = 0u; c < D4; c++) { acc[c] += pj * vs[jj * D4 + c]; }"
    }
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
export const splitForward = memo((key: `${number}|${MaskKind}|${number}|${0 | 1}`): Built => {
  const [d, m, r, sg] = key.split("|") as [string, MaskKind, string, string];
  const D = Number(d), R = Number(r), seg = sg === "1";
  const spec: KernelSpec = {
    label: "attention.decode",
    params: ATTN_PARAMS,
    bindings: [rw("pacc"), rw("pml"), ro("q"), ro("k"), ro("v"), ...maskBindings(m, seg)],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const R = ${R}u;
var<workgroup> qs: array<f32, ${R * D}>;
var<workgroup> sc: array<f32, ${R * WG}>;
var<workgroup> mrow: array<f32, R>;
${visibleFn(m, seg)}`;
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

/**
 * The split-K decode with one invocation per (query row, key split) instead of a workgroup: the
 * same scores, max, sum and P·V as {@linkcode splitForward}, summed in the same order (so the
 * partials are bit for bit its partials, for `combine`), without workgroup memory or barriers,
 * which CPU rasterizers pay for. Invocation ((b * Hkv + hk) * nsplit + split) * R + r; K and V are
 * read a vec4 at a time when D % 4 == 0.
 */
export const splitForwardRows = memo((key: `${number}|${MaskKind}|${number}|${0 | 1}`): Built => {
  const [d, m, r, sg] = key.split("|") as [string, MaskKind, string, string];
  const D = Number(d), R = Number(r), seg = sg === "1", v4 = D % 4 === 0;
  const spec: KernelSpec = {
    label: "attention.decode_rows",
    params: ATTN_PARAMS,
    bindings: [
      rw("pacc"),
      rw("pml"),
      ro("q"),
      ro("k", v4 ? "vec4<f32>" : "f32"),
      ro("v", v4 ? "vec4<f32>" : "f32"),
      ...maskBindings(m, seg),
    ],
    workgroupSize: [WG, 1, 1],
  };
  // s += q . (key row at src), e * (value row at src) added to acc: element by element, in order of d
  const each = (body: (x: string, d: string) => string, name: string) =>
    v4
      ? `for (var c = 0u; c < ${D / 4}u; c++) {
        let x4 = ${name}[src / 4u + c];
        ${[0, 1, 2, 3].map((i) => body(`x4[${i}]`, `4u * c + ${i}u`)).join(" ")}
      }`
      : `for (var d = 0u; d < D; d++) { ${body(`${name}[src + d]`, "d")} }`;
  return build(
    spec,
    `${prelude(D)}const R = ${R}u;
${visibleFn(m, seg)}`,
    `fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.B * p.Hkv * p.nsplit * R) { return; }
  let r = gid % R;
  let split = (gid / R) % p.nsplit;
  let hk = (gid / (R * p.nsplit)) % p.Hkv;
  let b = gid / (R * p.nsplit * p.Hkv);
  let qpos = p.q_offset + i32(r % p.Tq);
  let qrow = ((b * p.Tq + r % p.Tq) * p.H + hk * p.G + r / p.Tq) * D;
  var qv: array<f32, D>;
  for (var d = 0u; d < D; d++) { qv[d] = q[qrow + d] * p.scale; }
  var sc: array<f32, WG>;
  var mx = NEG;
  for (var jj = 0u; jj < WG; jj++) {
    let j = split * WG + jj;
    var s = NEG;
    if (visible(b, qpos, j)) {
      s = 0.0;
      let src = ((b * p.Tk + j) * p.Hkv + hk) * D;
      ${each((x, d) => `s += qv[${d}] * ${x};`, "k")}
    }
    sc[jj] = s;
    mx = max(mx, s);
  }
  var l = 0.0;
  for (var jj = 0u; jj < WG; jj++) {
    if (sc[jj] > NEG) { l += exp(sc[jj] - mx); }
  }
  let base = ((b * p.Hkv + hk) * p.nsplit + split) * R + r;
  pml[base * 2u] = mx;
  pml[base * 2u + 1u] = l;
  var acc: array<f32, D>;
  let nk = min(WG, p.kv_len - min(p.kv_len, split * WG));
  for (var jj = 0u; jj < nk; jj++) {
    let e = select(0.0, exp(sc[jj] - mx), sc[jj] > NEG);
    let src = ((b * p.Tk + split * WG + jj) * p.Hkv + hk) * D;
    ${each((x, d) => `acc[${d}] += e * ${x};`, "v")}
  }
  for (var d = 0u; d < D; d++) { pacc[base * D + d] = acc[d]; }
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
    `fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
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
export const backwardQ = memo((key: TileKey): Built => {
  const { D, m, drop, seg } = parseTileKey(key);
  const BK = keyTile(D), D4 = chunks(D);
  const spec: KernelSpec = {
    label: "attention.backward_dq",
    params: ATTN_PARAMS,
    bindings: [
      rw("dq"),
      ro("dout"),
      ro("q"),
      ro("k"),
      ro("v"),
      ro("lse"),
      ro("di"),
      ...maskBindings(m, seg),
    ],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const BK = ${BK}u;
const D4 = ${D4}u;
var<workgroup> ks: array<vec4<f32>, ${BK * D4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * D4}>;
${visibleFn(m, seg)}${KEY_RANGE}${drop ? DROP_FN : ""}${load4("q", D)}${load4("dout", D)}${load4("k", D)}${
    load4("v", D)
  }`;
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
          let ds = exp(s - lrow) * (${drop ? "dp * drop_z(b, h, i, j)" : "dp"} - drow);
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
export const backwardKV = memo((key: TileKey): Built => {
  const { D, m, drop, seg } = parseTileKey(key);
  const BQ = queryTile(D), D4 = chunks(D);
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
      ...maskBindings(m, seg),
    ],
    workgroupSize: [WG, 1, 1],
  };
  const head = `${prelude(D)}const BQ = ${BQ}u;
const D4 = ${D4}u;
var<workgroup> qs: array<vec4<f32>, ${BQ * D4}>;
var<workgroup> dos: array<vec4<f32>, ${BQ * D4}>;
var<workgroup> ls: array<f32, BQ>;
var<workgroup> dis: array<f32, BQ>;
${visibleFn(m, seg)}${drop ? DROP_FN : ""}${load4("q", D)}${load4("dout", D)}${load4("k", D)}${
    load4("v", D)
  }`;
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
            ${
      drop
        ? "let z = drop_z(b, h, i, j);\n            let ds = pj * (dp * z - dis[ii]);\n            let pz = pj * z;"
        : "let ds = pj * (dp - dis[ii]);"
    }
            for (var c = 0u; c < D4; c++) {
              dva[c] += ${drop ? "pz" : "pj"} * dos[ii * D4 + c];
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
