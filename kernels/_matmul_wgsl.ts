/**
 * Private WGSL generators for `matmul.ts`: two kernel families built from one {@linkcode MatmulVariant}.
 *
 * - `reg`: no workgroup memory and no barriers. Each invocation owns a `TM x TN` register block of
 *   the output and walks all of K, four k at a time, reading each operand as vec4 along its
 *   contiguous dimension (rows along k, or 4 k-rows of `TM/4` vec4 along m / n). Fast on CPU
 *   rasterizers (llvmpipe / lavapipe run a storage load as a loop over the SIMD lanes, so loads
 *   per FMA is what counts, and barriers are coroutine switches).
 * - `tex`: `reg` with both operands read by `textureLoad` from rgba32float texture arrays that
 *   `stageKernel` filled (texels of 4 along the contiguous dim, zero padded along k, so there is
 *   no K tail). llvmpipe turns texel fetches into vectorized gathers.
 * - `tile`: the classic GPU kernel: a `(WX, WY)` workgroup stages `BK x BM` of A and `BK x BN` of B
 *   in workgroup memory per step, each invocation accumulates a `TM x TN` block from it.
 *
 * Edges never branch inside the K loop: row / column indices of loads are clamped to the last
 * valid one (the extra results are computed and not stored), K tails (K % 4) run a scalar loop,
 * and only the epilogue checks bounds. The epilogue fuses `alpha`, `bias[n]`, the activation,
 * an optional pre-activation copy (for backward) and `accumulate` (`out += result`).
 *
 * Element (m, k) of A sits at `offA + batch * sA + m * lda + k` (`k * lda + m` when transA);
 * element (k, n) of B at `offB + batch * sB + k * ldb + n` (`n * ldb + k` when transB); out (m, n)
 * at `offO + batch * sO + m * ldo + n`. All offsets and strides are in elements; when a binding is
 * vec4 the launcher guarantees they are multiples of 4.
 *
 * f16 weights (`f16B`): B is bound as `array<f16>` / `array<vec4<f16>>` (`enable f16;`, the device
 * needs `shader-f16`) and every load converts to f32 in registers, so accumulation, the epilogue and
 * the output stay f32; indices are in elements as above. The `tex` family instead stages an f16 B
 * into the same rgba32float texture (`stageKernel` with `f16`), so its inner loop is unchanged.
 *
 * @module
 */
import type { KernelSpec, ParamSpec } from "./_kernel.ts";
import { WGSL_ERF } from "./activation.ts";

/** Activation fused into the matmul epilogue. */
export type MatmulActivation = "none" | "relu" | "gelu_tanh" | "gelu_erf" | "silu";

/** A tile configuration (what the autotune chooses). */
export type MatmulConfig =
  | { family: "reg" | "tex"; tm: number; tn: number; wg: number }
  | { family: "tile"; tm: number; tn: number; wx: number; wy: number; bk: number };

/** Everything that changes the generated WGSL of one matmul pipeline. */
export interface MatmulVariant {
  config: MatmulConfig;
  transA: boolean;
  transB: boolean;
  /** Bindings read/written as vec4 (alignment checked by the launcher). */
  vecA: boolean;
  vecB: boolean;
  vecO: boolean;
  bias: boolean;
  act: MatmulActivation;
  /** Also write the pre-activation (alpha * A.B + bias) to `pre` (same layout as out). */
  savePre: boolean;
  /** `out += result`. */
  acc: boolean;
  /** K % 4 != 0: generate the scalar tail loop. */
  kTail: boolean;
  /** B is stored as f16 (converted to f32 on load); `reg` and `tile` only (`tex` stages it). */
  f16B?: boolean;
  /**
   * With `f16B`, `transB` and K % 8 == 0 (`reg` only): B is bound as `vec4<u32>`, 8 halves per load
   * (`unpack2x16float`), and K is walked 8 at a time: half the loads of `vec4<f16>`, which is what
   * counts on CPU rasterizers (decode GEMV is load-bound there).
   */
  b8?: boolean;
}

/** Params struct of every matmul pipeline. */
export const MATMUL_PARAMS: ParamSpec = {
  M: "u32",
  N: "u32",
  K: "u32",
  lda: "u32",
  ldb: "u32",
  ldo: "u32",
  offA: "u32",
  offB: "u32",
  offO: "u32",
  offBias: "u32",
  sA: "u32",
  sB: "u32",
  sO: "u32",
  tilesN: "u32",
  tiles: "u32",
  batch0: "u32",
  alpha: "f32",
};

/** Text key of a config (`reg:32x32:8`, `tile:4x4:16x16:16`). */
export function configKey(c: MatmulConfig): string {
  return c.family === "tile"
    ? `tile:${c.tm}x${c.tn}:${c.wx}x${c.wy}:${c.bk}`
    : `${c.family}:${c.tm}x${c.tn}:${c.wg}`;
}

/** Parse {@linkcode configKey} text back (null when malformed). */
export function parseConfigKey(s: string): MatmulConfig | null {
  let m = /^(reg|tex):(\d+)x(\d+):(\d+)$/.exec(s);
  if (m) return { family: m[1] as "reg" | "tex", tm: +m[2], tn: +m[3], wg: +m[4] };
  m = /^tile:(\d+)x(\d+):(\d+)x(\d+):(\d+)$/.exec(s);
  if (m) return { family: "tile", tm: +m[1], tn: +m[2], wx: +m[3], wy: +m[4], bk: +m[5] };
  return null;
}

/** Output rows and columns covered by one workgroup / one invocation tile. */
export function blockShape(c: MatmulConfig): { bm: number; bn: number } {
  return c.family === "tile" ? { bm: c.tm * c.wy, bn: c.tn * c.wx } : { bm: c.tm, bn: c.tn };
}

/** Kernel spec (bindings in order) of a variant. */
export function matmulSpec(v: MatmulVariant): KernelSpec {
  const t = (vec: boolean) => (vec ? "vec4<f32>" : "f32");
  const c0 = v.config;
  const f16B = !!v.f16B && c0.family !== "tex";
  const tb = f16B ? (v.b8 ? "vec4<u32>" : v.vecB ? "vec4<f16>" : "f16") : t(v.vecB);
  const bindings = [
    { name: "o", type: t(v.vecO), access: "read_write" as const },
    ...(v.savePre ? [{ name: "pre", type: t(v.vecO), access: "read_write" as const }] : []),
    { name: "a", type: c0.family === "tex" ? TEXTURE : t(v.vecA), access: "read" as const },
    { name: "b", type: c0.family === "tex" ? TEXTURE : tb, access: "read" as const },
    ...(v.bias ? [{ name: "bias", type: "f32", access: "read" as const }] : []),
  ];
  const c = v.config;
  return {
    label: `matmul.${c.family}${f16B ? ".f16" : ""}`,
    params: MATMUL_PARAMS,
    bindings,
    workgroupSize: c.family === "tile" ? [c.wx, c.wy, 1] : [c.wg, 1, 1],
    ...(f16B ? { f16: true } : {}),
  };
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** Binding type marker of a texture-staged operand (`tex` family). */
export const TEXTURE = "texture_2d_array<f32>";

/** WGSL `act4(v: vec4<f32>) -> vec4<f32>` for an activation (erf: Juffa's single-precision minimax). */
function actWgsl(act: MatmulActivation): string {
  switch (act) {
    case "none":
      return "fn act4(v: vec4<f32>) -> vec4<f32> { return v; }\n";
    case "relu":
      return "fn act4(v: vec4<f32>) -> vec4<f32> { return max(v, vec4<f32>(0.0)); }\n";
    case "silu":
      return "fn act4(v: vec4<f32>) -> vec4<f32> { return v / (vec4<f32>(1.0) + exp(-v)); }\n";
    case "gelu_tanh":
      return `fn act4(v: vec4<f32>) -> vec4<f32> {
  let u = ${SQRT_2_OVER_PI} * (v + 0.044715 * v * v * v);
  let e = exp(-2.0 * abs(u));
  let t = sign(u) * (vec4<f32>(1.0) - e) / (vec4<f32>(1.0) + e);
  return 0.5 * v * (vec4<f32>(1.0) + t);
}
`;
    case "gelu_erf":
      return `${WGSL_ERF}fn act4(v: vec4<f32>) -> vec4<f32> {
  let z = v * 0.70710678118654752;
  return 0.5 * v * (vec4<f32>(1.0) + vec4<f32>(erf_f32(z.x), erf_f32(z.y), erf_f32(z.z), erf_f32(z.w)));
}
`;
  }
}

function header(v: MatmulVariant): string {
  const spec = matmulSpec(v);
  let b = 0;
  let s = `${spec.f16 ? "enable f16;\n" : ""}struct Params {\n${
    Object.entries(MATMUL_PARAMS).map(([k, t]) => `  ${k}: ${t},`).join("\n")
  }\n}\n`;
  s += `@group(0) @binding(${b++}) var<uniform> p: Params;\n`;
  for (const x of spec.bindings) {
    s += x.type === TEXTURE
      ? `@group(0) @binding(${b++}) var ${x.name}: texture_2d_array<f32>;\n`
      : `@group(0) @binding(${b++}) var<storage, ${x.access}> ${x.name}: array<${x.type}>;\n`;
  }
  return s + actWgsl(v.act);
}

/** WGSL statements storing vec4 `e` at element index `oi` (column `n`) of binding `dst`. */
function store4(v: MatmulVariant, dst: string, e: string, n: string, ind: string, add: boolean): string {
  const op = add ? "+=" : "=";
  if (v.vecO) return `${ind}${dst}[oi / 4u] ${op} ${e};\n`;
  let r = `${ind}{\n${ind}  let w = ${e};\n${ind}  ${dst}[oi] ${op} w.x;\n`;
  for (const [c, f] of [[1, "y"], [2, "z"], [3, "w"]]) {
    r += `${ind}  if (${n} + ${c}u < p.N) { ${dst}[oi + ${c}u] ${op} w.${f}; }\n`;
  }
  return r + `${ind}}\n`;
}

/** vec4 of bias[n..n+3] (clamped at the last column). */
const BIAS4 = "vec4<f32>(bias[nb], bias[min(nb + 1u, nl)], bias[min(nb + 2u, nl)], bias[min(nb + 3u, nl)])";

/**
 * The epilogue of a `TM x TN` accumulator block `c{i}_{q}` at rows m0.. and columns n0...
 *
 * Without `acc`, the block is first stored as `alpha * c` (unrolled, guarded), then one runtime
 * loop re-reads it to add the bias, save the pre-activation and apply the activation: the
 * activation code then appears once instead of TM * TN / 4 times (compile time on llvmpipe grows
 * with code size). With `acc` everything is unrolled (`out += act(alpha c + bias)`).
 */
function epilogue(v: MatmulVariant, tm: number, tn4: number): string {
  const actE = (x: string) => (v.act === "none" ? x : `act4(${x})`);
  let s = "";
  const simple = !v.acc || (!v.bias && v.act === "none" && !v.savePre);
  for (let i = 0; i < tm; i++) {
    for (let q = 0; q < tn4; q++) {
      const m = `(m0 + ${i}u)`, n = `(n0 + ${4 * q}u)`;
      s += `  if (${m} < p.M && ${n} < p.N) {\n    let oi = obase + ${m} * p.ldo + ${n};\n`;
      if (simple) s += store4(v, "o", `c${i}_${q} * p.alpha`, n, "    ", v.acc);
      else {
        s += `    var v = c${i}_${q} * p.alpha;\n`;
        if (v.bias) {
          s += `    let nb = p.offBias + ${n};\n    let nl = p.offBias + p.N - 1u;\n    v += ${BIAS4};\n`;
        }
        if (v.savePre) s += store4(v, "pre", "v", n, "    ", false);
        s += store4(v, "o", actE("v"), n, "    ", true);
      }
      s += "  }\n";
    }
  }
  if (!simple || (!v.bias && v.act === "none" && !v.savePre)) return s;
  const load = v.vecO
    ? "o[oi / 4u]"
    : "vec4<f32>(o[oi], select(0.0, o[min(oi + 1u, last)], n + 1u < p.N), select(0.0, o[min(oi + 2u, last)], n + 2u < p.N), select(0.0, o[min(oi + 3u, last)], n + 3u < p.N))";
  s += `  for (var i = 0u; i < ${tm}u; i++) {
    let m = m0 + i;
    if (m >= p.M) { break; }
    for (var q = 0u; q < ${tn4}u; q++) {
      let n = n0 + 4u * q;
      if (n >= p.N) { break; }
      let oi = obase + m * p.ldo + n;
      let last = obase + m * p.ldo + p.N - 1u;
      var v = ${load};
`;
  if (v.bias) {
    s += `      let nb = p.offBias + n;\n      let nl = p.offBias + p.N - 1u;\n      v += ${BIAS4};\n`;
  }
  if (v.savePre) s += store4(v, "pre", "v", "n", "      ", false);
  s += store4(v, "o", actE("v"), "n", "      ", false);
  return s + "    }\n  }\n";
}

/** One operand's load code generator (A with tile rows over m, or B with tile rows over n). */
interface Operand {
  name: "a" | "b";
  /** Tile extent (TM for A, TN for B). */
  t: number;
  /** Contiguous along k (A not transposed, B transposed). */
  kc: boolean;
  vec: boolean;
  /** WGSL expressions: extent (p.M / p.N), leading dimension, base (element offset incl. batch). */
  ext: string;
  ld: string;
  /** First tile row (u32 expression). */
  x0: string;
  /** Read from a texture staged by `stageKernel` (texels of 4 along the contiguous dim, zero padded). */
  tex: boolean;
  /** Stored as f16: loads convert to f32. */
  f16: boolean;
  /** Packed 8 halves per `vec4<u32>` element (kc && vec only). */
  pack8?: boolean;
}

/** WGSL of a scalar load `x[idx]` as f32. */
function rd1(o: Operand, idx: string): string {
  return o.f16 ? `f32(${o.name}[${idx}])` : `${o.name}[${idx}]`;
}

/** WGSL of a vec4 load `x[idx]` (vec4 binding) as vec4<f32>. */
function rd4(o: Operand, idx: string): string {
  return o.f16 ? `vec4<f32>(${o.name}[${idx}])` : `${o.name}[${idx}]`;
}

/** Per-invocation setup lines (hoisted row/column offsets). */
function opSetup(o: Operand, ind: string): string {
  let s = "";
  const x = o.name;
  if (o.tex) {
    s += `${ind}let ${x}lay = bz * p.s${x === "a" ? "A" : "B"};\n`;
    if (o.kc) {
      for (let t = 0; t < o.t; t++) s += `${ind}let ${x}r${t} = min(${o.x0} + ${t}u, ${o.ext} - 1u);\n`;
    } else {
      for (let q = 0; q < o.t / 4; q++) {
        s += `${ind}let ${x}c${q} = min(${o.x0} / 4u + ${q}u, (${o.ext} + 3u) / 4u - 1u);\n`;
      }
    }
    return s;
  }
  if (o.kc) {
    for (let t = 0; t < o.t; t++) {
      const row = `(${x}base + min(${o.x0} + ${t}u, ${o.ext} - 1u) * ${o.ld})`;
      s += `${ind}let ${x}r${t} = ${o.vec ? `${row} / ${o.pack8 ? 8 : 4}u` : row};\n`;
    }
  } else if (o.vec) {
    for (let q = 0; q < o.t / 4; q++) {
      s += `${ind}let ${x}c${q} = (${x}base + min(${o.x0} + ${4 * q}u, ${o.ext} - 4u)) / 4u;\n`;
    }
    s += `${ind}let ${x}ld4 = ${o.ld} / 4u;\n`;
  } else {
    for (let t = 0; t < o.t; t++) {
      s += `${ind}let ${x}c${t} = ${x}base + min(${o.x0} + ${t}u, ${o.ext} - 1u);\n`;
    }
  }
  return s;
}

/**
 * Loads for 4 consecutive k starting at `k` (a multiple of 4 when kc && vec). After it, the
 * scalar for tile row t and step kk is `val(o, t, kk)`.
 */
function opLoad4(o: Operand, ind: string): string {
  let s = "";
  const x = o.name;
  if (o.tex) {
    if (o.kc) {
      for (let t = 0; t < o.t; t++) {
        s += `${ind}let ${x}v${t} = textureLoad(${x}, vec2<u32>(k / 4u, ${x}r${t}), ${x}lay, 0);\n`;
      }
    } else {
      for (let kk = 0; kk < 4; kk++) {
        for (let q = 0; q < o.t / 4; q++) {
          s +=
            `${ind}let ${x}v${kk}_${q} = textureLoad(${x}, vec2<u32>(${x}c${q}, k + ${kk}u), ${x}lay, 0);\n`;
        }
      }
    }
    return s;
  }
  if (o.kc) {
    for (let t = 0; t < o.t; t++) {
      s += o.vec
        ? `${ind}let ${x}v${t} = ${rd4(o, `${x}r${t} + k / 4u`)};\n`
        : `${ind}let ${x}v${t} = vec4<f32>(${rd1(o, `${x}r${t} + k`)}, ${rd1(o, `${x}r${t} + k + 1u`)}, ${
          rd1(o, `${x}r${t} + k + 2u`)
        }, ${rd1(o, `${x}r${t} + k + 3u`)});\n`;
    }
  } else {
    for (let kk = 0; kk < 4; kk++) {
      if (o.vec) {
        s += `${ind}let ${x}k${kk} = (k + ${kk}u) * ${x}ld4;\n`;
        for (let q = 0; q < o.t / 4; q++) {
          s += `${ind}let ${x}v${kk}_${q} = ${rd4(o, `${x}c${q} + ${x}k${kk}`)};\n`;
        }
      } else {
        s += `${ind}let ${x}k${kk} = (k + ${kk}u) * ${o.ld};\n`;
        for (let t = 0; t < o.t; t++) {
          s += `${ind}let ${x}v${kk}_${t} = ${rd1(o, `${x}c${t} + ${x}k${kk}`)};\n`;
        }
      }
    }
  }
  return s;
}

/** Loads for the single k (tail loop, K % 4 != 0; never kc && vec). */
function opLoad1(o: Operand, ind: string): string {
  let s = "";
  const x = o.name;
  if (o.kc) {
    for (let t = 0; t < o.t; t++) s += `${ind}let ${x}v${t} = ${rd1(o, `${x}r${t} + k`)};\n`;
  } else if (o.vec) {
    s += `${ind}let ${x}k0 = k * ${x}ld4;\n`;
    for (let q = 0; q < o.t / 4; q++) s += `${ind}let ${x}v0_${q} = ${rd4(o, `${x}c${q} + ${x}k0`)};\n`;
  } else {
    s += `${ind}let ${x}k0 = k * ${o.ld};\n`;
    for (let t = 0; t < o.t; t++) s += `${ind}let ${x}v0_${t} = ${rd1(o, `${x}c${t} + ${x}k0`)};\n`;
  }
  return s;
}

/** Scalar of tile row t at step kk (kk = 0 in the tail, where kc operands are scalars). */
function val(o: Operand, t: number, kk: number, tail: boolean): string {
  const x = o.name;
  if (o.kc) return tail ? `${x}v${t}` : `${x}v${t}[${kk}]`;
  return o.vec || o.tex ? `${x}v${kk}_${t >> 2}[${t & 3}]` : `${x}v${kk}_${t}`;
}

/** vec4 of B tile columns 4q..4q+3 at step kk. */
function bQuad(o: Operand, q: number, kk: number, tail: boolean): string {
  if (!o.kc && (o.vec || o.tex)) return `bv${kk}_${q}`;
  return `vec4<f32>(${[0, 1, 2, 3].map((r) => val(o, 4 * q + r, kk, tail)).join(", ")})`;
}

function fmas(
  A: Operand,
  B: Operand,
  tm: number,
  tn4: number,
  kk: number,
  tail: boolean,
  ind: string,
): string {
  let s = "";
  for (let q = 0; q < tn4; q++) s += `${ind}let bq${kk}_${q} = ${bQuad(B, q, kk, tail)};\n`;
  for (let i = 0; i < tm; i++) {
    s += `${ind}{ let ai = vec4<f32>(${val(A, i, kk, tail)});`;
    for (let q = 0; q < tn4; q++) s += ` c${i}_${q} = fma(ai, bq${kk}_${q}, c${i}_${q});`;
    s += " }\n";
  }
  return s;
}

/** WGSL of a `reg`-family variant. */
export function regKernel(v: MatmulVariant): string {
  const c = v.config;
  if (c.family === "tile") throw new TypeError("regKernel: not a reg / tex config");
  const { tm, tn, wg } = c;
  const tex = c.family === "tex";
  const A: Operand = {
    name: "a",
    t: tm,
    kc: !v.transA,
    vec: v.vecA,
    ext: "p.M",
    ld: "p.lda",
    x0: "m0",
    tex,
    f16: false,
  };
  const B: Operand = {
    name: "b",
    t: tn,
    kc: v.transB,
    vec: v.vecB,
    ext: "p.N",
    ld: "p.ldb",
    x0: "n0",
    tex,
    f16: !!v.f16B && !tex,
    pack8: !!v.b8 && !tex,
  };
  const tn4 = tn / 4;
  let s = header(v);
  s += `@compute @workgroup_size(${wg}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let tid = (wid.x + wid.y * nwg.x) * ${wg}u + lid.x;
  if (tid >= p.tiles) { return; }
  let bz = wid.z + p.batch0;
  let m0 = (tid / p.tilesN) * ${tm}u;
  let n0 = (tid % p.tilesN) * ${tn}u;
  let abase = p.offA + bz * p.sA;
  let bbase = p.offB + bz * p.sB;
  let obase = p.offO + bz * p.sO;
`;
  s += opSetup(A, "  ") + opSetup(B, "  ");
  for (let i = 0; i < tm; i++) for (let q = 0; q < tn4; q++) s += `  var c${i}_${q} = vec4<f32>(0.0);\n`;
  // Textures are zero padded to a multiple of 4 along k: no tail loop.
  s += tex ? "  let k4 = (p.K + 3u) & ~3u;\n" : "  let k4 = p.K & ~3u;\n";
  if (B.pack8) {
    // 8 k per step: one vec4<u32> (8 halves) per B row, unpacked into two vec4<f32> halves.
    s += "  for (var k8 = 0u; k8 < k4; k8 += 8u) {\n";
    for (let t = 0; t < tn; t++) s += `    let bw${t} = b[br${t} + k8 / 8u];\n`;
    for (const [half, lo, hi] of [[0, "x", "y"], [4, "z", "w"]] as const) {
      s += `    {\n      let k = k8 + ${half}u;\n` + opLoad4(A, "      ");
      for (let t = 0; t < tn; t++) {
        s += `      let bv${t} = vec4<f32>(unpack2x16float(bw${t}.${lo}), unpack2x16float(bw${t}.${hi}));\n`;
      }
      for (let kk = 0; kk < 4; kk++) s += fmas(A, B, tm, tn4, kk, false, "      ");
      s += "    }\n";
    }
    s += "  }\n";
    return s + epilogue(v, tm, tn4) + "}\n";
  }
  s += "  for (var k = 0u; k < k4; k += 4u) {\n";
  s += opLoad4(A, "    ") + opLoad4(B, "    ");
  for (let kk = 0; kk < 4; kk++) s += fmas(A, B, tm, tn4, kk, false, "    ");
  s += "  }\n";
  if (v.kTail && !tex) {
    s += "  for (var k = k4; k < p.K; k++) {\n";
    s += opLoad1(A, "    ") + opLoad1(B, "    ") + fmas(A, B, tm, tn4, 0, true, "    ");
    s += "  }\n";
  }
  return s + epilogue(v, tm, tn4) + "}\n";
}

/** WGSL of a `tile`-family variant (workgroup-memory tiles; scalar global loads with bounds checks). */
export function tileKernel(v: MatmulVariant): string {
  const c = v.config;
  if (c.family !== "tile") throw new TypeError("tileKernel: not a tile config");
  const { tm, tn, wx, wy, bk } = c;
  const bm = tm * wy, bn = tn * wx, nthr = wx * wy, tn4 = tn / 4;
  // Global scalar reads of A(m, k) and B(k, n) (bindings may be vec4: pick the component).
  const rd = (x: "a" | "b", vec: boolean, idx: string) => {
    const e = vec ? `${x}[(${idx}) / 4u][(${idx}) % 4u]` : `${x}[${idx}]`;
    return x === "b" && v.f16B ? `f32(${e})` : e;
  };
  const aIdx = v.transA ? "abase + gk * p.lda + gm" : "abase + gm * p.lda + gk";
  const bIdx = v.transB ? "bbase + gn * p.ldb + gk" : "bbase + gk * p.ldb + gn";
  let s = header(v);
  s += `var<workgroup> As: array<f32, ${bk * bm}>;
var<workgroup> Bs: array<f32, ${bk * bn}>;
@compute @workgroup_size(${wx}, ${wy}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let bz = wid.z + p.batch0;
  let bm0 = wid.y * ${bm}u;
  let bn0 = wid.x * ${bn}u;
  let abase = p.offA + bz * p.sA;
  let bbase = p.offB + bz * p.sB;
  let obase = p.offO + bz * p.sO;
  let m0 = bm0 + lid.y * ${tm}u;
  let n0 = bn0 + lid.x * ${tn}u;
`;
  for (let i = 0; i < tm; i++) for (let q = 0; q < tn4; q++) s += `  var c${i}_${q} = vec4<f32>(0.0);\n`;
  // A tile stored [kk][mm]; B tile [kk][nn]. Loads walk the contiguous global dim fastest.
  const aOrder = v.transA ? ["mm", "kk", bm] : ["kk", "mm", bk];
  const bOrder = v.transB ? ["kk", "nn", bk] : ["nn", "kk", bn];
  s += `  for (var k0 = 0u; k0 < p.K; k0 += ${bk}u) {
    for (var e = li; e < ${bk * bm}u; e += ${nthr}u) {
      let ${aOrder[0]} = e % ${aOrder[2]}u;
      let ${aOrder[1]} = e / ${aOrder[2]}u;
      let gm = bm0 + mm;
      let gk = k0 + kk;
      var x = 0.0;
      if (gm < p.M && gk < p.K) { x = ${rd("a", v.vecA, aIdx)}; }
      As[kk * ${bm}u + mm] = x;
    }
    for (var e = li; e < ${bk * bn}u; e += ${nthr}u) {
      let ${bOrder[0]} = e % ${bOrder[2]}u;
      let ${bOrder[1]} = e / ${bOrder[2]}u;
      let gn = bn0 + nn;
      let gk = k0 + kk;
      var x = 0.0;
      if (gn < p.N && gk < p.K) { x = ${rd("b", v.vecB, bIdx)}; }
      Bs[kk * ${bn}u + nn] = x;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
      let ao = kk * ${bm}u + lid.y * ${tm}u;
      let bo = kk * ${bn}u + lid.x * ${tn}u;
`;
  for (let q = 0; q < tn4; q++) {
    s += `      let bq${q} = vec4<f32>(Bs[bo + ${4 * q}u], Bs[bo + ${4 * q + 1}u], Bs[bo + ${
      4 * q + 2
    }u], Bs[bo + ${4 * q + 3}u]);\n`;
  }
  for (let i = 0; i < tm; i++) {
    s += `      { let ai = vec4<f32>(As[ao + ${i}u]);`;
    for (let q = 0; q < tn4; q++) s += ` c${i}_${q} = fma(ai, bq${q}, c${i}_${q});`;
    s += " }\n";
  }
  s += "    }\n    workgroupBarrier();\n  }\n";
  return s + epilogue(v, tm, tn4) + "}\n";
}

/** WGSL of any variant. */
export function matmulKernel(v: MatmulVariant): string {
  return v.config.family === "tile" ? tileKernel(v) : regKernel(v);
}

/** Params of {@linkcode stageKernel}. */
export const STAGE_PARAMS: ParamSpec = {
  rows: "u32",
  cols: "u32",
  width: "u32",
  height: "u32",
  layerStride: "u32",
};

/**
 * WGSL that copies a row-major `(layers, rows, cols)` f32 (or, with `f16`, f16) tensor into an
 * rgba32float texture array: texel (x, y, l) = elements 4x..4x+3 of row y of layer l, zero past
 * `cols` and for rows `rows..height` (K padding). Grid: (ceil(width / 8), ceil(height / 8),
 * layers), WG 8x8. f16 values are exact in f32, so a staged f16 weight computes exactly as the
 * f32 copy of its values would.
 */
export function stageKernel(vec: boolean, f16 = false): string {
  const fields = Object.entries(STAGE_PARAMS).map(([k, t]) => `  ${k}: ${t},`).join("\n");
  const s1 = (i: string) => (f16 ? `f32(src[${i}])` : `src[${i}]`);
  const load = vec
    ? `v = ${f16 ? "vec4<f32>(src[base / 4u])" : "src[base / 4u]"};`
    : `let last = p.layerStride * (gid.z + 1u) - 1u;
    let c = gid.x * 4u;
    v = vec4<f32>(${s1("base")}, select(0.0, ${s1("min(base + 1u, last)")}, c + 1u < p.cols),
      select(0.0, ${s1("min(base + 2u, last)")}, c + 2u < p.cols), select(0.0, ${
      s1("min(base + 3u, last)")
    }, c + 3u < p.cols));`;
  const el = f16 ? "f16" : "f32";
  return `${f16 ? "enable f16;\n" : ""}struct Params {\n${fields}\n}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var dst: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<storage, read> src: array<${vec ? `vec4<${el}>` : el}>;
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= p.width || gid.y >= p.height) { return; }
  var v = vec4<f32>(0.0);
  if (gid.y < p.rows) {
    let base = gid.z * p.layerStride + gid.y * p.cols + gid.x * 4u;
    ${load}
  }
  textureStore(dst, vec2<u32>(gid.x, gid.y), gid.z, v);
}
`;
}
