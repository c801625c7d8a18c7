/**
 * The WGSL of `quant.ts`'s kernels: specs, source builders and `quantPrograms(tables)`, which
 * memoizes the sources with `quant.ts`'s tables as literals. A prelude gives each kernel
 * `decode(c) -> f32` / `encode(y) -> u32` of the 4-bit code and, for double-quantized scales,
 * `dyn(c)` (bitsandbytes' dynamic 8-bit map, in workgroup memory). Every kernel that reads block
 * scales does so through `scale(i)` (i = n * blocks + b, row-major over the `[N, blocks]` scales),
 * so f32 scales and double-quantized ones (`scodes`, `sabsmax`, `soffset`) share one body.
 * Layouts, math and grids: see the header of `quant.ts`.
 *
 * @module
 */
import { type BindingSpec, type KernelSpec, LINEAR_INDEX, MAIN_ARGS, memo, wgslHeader } from "./_kernel.ts";
import type { QuantKind } from "./quant.ts";

/** Workgroup size of every quant kernel but the scale mean. */
export const WG = 64;
/** Scales per second-level block of the double quantization (bitsandbytes' 256). */
export const SCALE_BLOCK = 256;
/** Workgroup size of the scale mean (one workgroup; lanes stride by it). */
export const MEAN_WG = 256;
/** The code of 0 in the dynamic map (`map[127] == 0`): padding of the last word of scale codes. */
export const DYN_ZERO = 127;
/** Output tile width of the matmul (RN columns of W per invocation). */
export const RN = 4;
/** Rows of dX per invocation of the backward. */
export const BW_RM = 4;

/**
 * WGSL statements that fill the dynamic map in workgroup memory (`DYNW`, lane 0); they open `main`
 * (before any early return: the barrier needs uniform control flow) when the scales are
 * double-quantized.
 */
function dynLoad(dq: boolean): string {
  return dq ? `if (lid.x == 0u) { dynInit(); }\n  workgroupBarrier();\n  ` : "";
}

/** The bindings that hold a tensor's scales: f32 scales, or the double-quantized triple. */
export function scaleBindings(dq: boolean): BindingSpec[] {
  return dq
    ? [
      { name: "scodes", type: "u32", access: "read" },
      { name: "sabsmax", type: "f32", access: "read" },
      { name: "soffset", type: "f32", access: "read" },
    ]
    : [{ name: "scales", type: "f32", access: "read" }];
}

/**
 * WGSL `scale(i) -> f32`: the i-th block scale. Double-quantized: byte i of `scodes` indexes
 * `dyn`, times the absmax of its 256-block, plus the offset (bitsandbytes `dequantize_blockwise`
 * then `absmax += offset`; two roundings, as the reference computes it).
 */
function scaleFn(dq: boolean): string {
  return dq
    ? `fn scale(i: u32) -> f32 {
  let c = (scodes[i >> 2u] >> (8u * (i & 3u))) & 255u;
  return dyn(c) * sabsmax[i / ${SCALE_BLOCK}u] + soffset[0];
}
`
    : `fn scale(i: u32) -> f32 { return scales[i]; }\n`;
}

// ---- quantize (4-bit codes and f32 scales) ----

/** Spec of the 4-bit quantize kernel. */
export const quantizeSpec = (kind: QuantKind): KernelSpec => ({
  label: `quant.quantize_${kind}`,
  params: { total: "u32", K: "u32", blocks: "u32", bs: "u32" },
  bindings: [
    { name: "codes", type: "u32", access: "read_write" },
    { name: "scales", type: "f32", access: "read_write" },
    { name: "w", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
});

/** WGSL of the 4-bit quantize: one invocation per (row, block). */
function quantizeWgsl(kind: QuantKind, prelude: string, zero: number): string {
  return `const WG = ${WG}u;\n${prelude}${wgslHeader(quantizeSpec(kind))}fn main(${MAIN_ARGS}) {
  ${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let n = gid / p.blocks;
  let b = gid % p.blocks;
  let k0 = b * p.bs;
  let kend = min(k0 + p.bs, p.K);
  let base = n * p.K;
  var amax = 0.0;
  for (var k = k0; k < kend; k++) { amax = max(amax, abs(w[base + k])); }
  let s = ${kind === "nf4" ? "amax" : "amax / 7.0"};
  scales[gid] = s;
  let wpb = p.bs / 8u;
  for (var wi = 0u; wi < wpb; wi++) {
    var word = 0u;
    for (var j = 0u; j < 8u; j++) {
      let k = k0 + wi * 8u + j;
      var c = ${zero}u;
      if (k < p.K && s > 0.0) { c = encode(w[base + k] / s); }
      word = word | (c << (4u * j));
    }
    codes[gid * wpb + wi] = word;
  }
}
`;
}

// ---- double quantization of the scales ----

/** Spec of the scale mean: one workgroup, `soffset[0]` = mean of the `total` scales. */
export const scaleMeanSpec: KernelSpec = {
  label: "quant.scale_mean",
  params: { total: "u32" },
  bindings: [
    { name: "soffset", type: "f32", access: "read_write" },
    { name: "scales", type: "f32", access: "read" },
  ],
  workgroupSize: [MEAN_WG, 1, 1],
};

/**
 * WGSL of the scale mean, in the fixed order the reference follows: lane l sums scales l,
 * l + 256, ... in f32; the 256 partial sums are added pairwise (stride 128, 64, ..., 1); the sum
 * is divided by f32(total).
 */
export const scaleMeanWgsl: string = `var<workgroup> acc: array<f32, ${MEAN_WG}>;
${wgslHeader(scaleMeanSpec)}fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var s = 0.0;
  for (var i = lid.x; i < p.total; i += ${MEAN_WG}u) { s += scales[i]; }
  acc[lid.x] = s;
  workgroupBarrier();
  for (var st = ${MEAN_WG / 2}u; st > 0u; st = st >> 1u) {
    if (lid.x < st) { acc[lid.x] = acc[lid.x] + acc[lid.x + st]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { soffset[0] = acc[0] / f32(p.total); }
}
`;

/** Spec of the scale quantize: one invocation per 256 scales. */
export const scaleQuantizeSpec: KernelSpec = {
  label: "quant.scale_quantize",
  params: { total: "u32", nb: "u32", words: "u32" },
  bindings: [
    { name: "scodes", type: "u32", access: "read_write" },
    { name: "sabsmax", type: "f32", access: "read_write" },
    { name: "soffset", type: "f32", access: "read" },
    { name: "scales", type: "f32", access: "read" },
  ],
  workgroupSize: [WG, 1, 1],
};

/**
 * WGSL of the scale quantize (bitsandbytes `quantize_blockwise(absmax - offset, blocksize=256)`,
 * its default backend): a = absmax of the 256 shifted scales; y = clamp(x * (1 / a), -1, 1);
 * code = the number of midpoints `(dyn(c) + dyn(c + 1)) * 0.5` below y (`torch.bucketize`), by
 * binary search; a = 0 gives y = 0 (bitsandbytes clamps a to 1e-38: the same code).
 */
function scaleQuantizeWgsl(prelude: string): string {
  return `const WG = ${WG}u;\n${prelude}fn encode8(y: f32) -> u32 {
  var lo = 0u;
  var hi = 255u;
  while (lo < hi) {
    let mid = (lo + hi) >> 1u;
    if (y > (dyn(mid) + dyn(mid + 1u)) * 0.5) { lo = mid + 1u; } else { hi = mid; }
  }
  return lo;
}
${wgslHeader(scaleQuantizeSpec)}fn main(${MAIN_ARGS}) {
  ${dynLoad(true)}${LINEAR_INDEX}
  if (gid >= p.nb) { return; }
  let off = soffset[0];
  let i0 = gid * ${SCALE_BLOCK}u;
  let iend = min(i0 + ${SCALE_BLOCK}u, p.total);
  var amax = 0.0;
  for (var i = i0; i < iend; i++) { amax = max(amax, abs(scales[i] - off)); }
  sabsmax[gid] = amax;
  let inv = select(0.0, 1.0 / amax, amax > 0.0);
  let w0 = gid * ${SCALE_BLOCK / 4}u;
  let wend = min(w0 + ${SCALE_BLOCK / 4}u, p.words);
  for (var w = w0; w < wend; w++) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let i = w * 4u + j;
      var c = ${DYN_ZERO}u;
      if (i < p.total) { c = encode8(clamp((scales[i] - off) * inv, -1.0, 1.0)); }
      word = word | (c << (8u * j));
    }
    scodes[w] = word;
  }
}
`;
}

// ---- dequantize ----

/** Spec of the dequantize kernel. */
export const dequantizeSpec = (kind: QuantKind, dq: boolean): KernelSpec => ({
  label: `quant.dequantize_${kind}${dq ? "_dq" : ""}`,
  params: { total: "u32", K: "u32", words: "u32", wpb: "u32", blocks: "u32" },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "codes", type: "u32", access: "read" },
    ...scaleBindings(dq),
  ],
  workgroupSize: [WG, 1, 1],
});

/** WGSL of the dequantize: one invocation per packed word, 8 outputs. */
function dequantizeWgsl(kind: QuantKind, dq: boolean, prelude: string): string {
  return `const WG = ${WG}u;\n${prelude}${scaleFn(dq)}${
    wgslHeader(dequantizeSpec(kind, dq))
  }fn main(${MAIN_ARGS}) {
  ${dynLoad(dq)}${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let n = gid / p.words;
  let wi = gid % p.words;
  let cw = codes[gid];
  let s = scale(n * p.blocks + wi / p.wpb);
  for (var j = 0u; j < 8u; j++) {
    let k = wi * 8u + j;
    if (k < p.K) { out[n * p.K + k] = decode((cw >> (4u * j)) & 15u) * s; }
  }
}
`;
}

// ---- matmul with packed weights ----

/** Typed key of a matmul pipeline. */
export interface MmKey {
  kind: QuantKind;
  rm: number;
  bias: boolean;
  /** K % 4 == 0: x is read as vec4 (two loads per packed word and row). */
  v4: boolean;
  /** Double-quantized scales. */
  dq: boolean;
}

/** Spec of the matmul kernel. */
export const matmulSpec = (k: MmKey): KernelSpec => ({
  label: `quant.matmul_${k.kind}_m${k.rm}${k.bias ? "_bias" : ""}${k.dq ? "_dq" : ""}`,
  params: {
    M: "u32",
    N: "u32",
    K: "u32",
    words: "u32",
    wpb: "u32",
    blocks: "u32",
    nbn: "u32",
    total: "u32",
    xlast: "u32",
  },
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
    { name: "x", type: k.v4 ? "vec4<f32>" : "f32", access: "read" },
    { name: "codes", type: "u32", access: "read" },
    ...scaleBindings(k.dq),
    ...(k.bias ? [{ name: "bias", type: "f32", access: "read" } as const] : []),
  ],
  workgroupSize: [WG, 1, 1],
});

const range = (n: number) => [...Array(n).keys()];

/** WGSL of the matmul: one invocation per rm x RN output tile. */
function matmulWgsl(k: MmKey, prelude: string): string {
  const I = range(k.rm), J = range(RN), E = range(8);
  const each = (f: (i: number, j: number) => string) => I.flatMap((i) => J.map((j) => f(i, j))).join("\n");
  // x loads of one packed word (8 columns from k) for every row of the tile; guarded in the last
  // word of a row when K is not a multiple of 8.
  const xLoads = (guard: boolean) =>
    k.v4
      ? I.map((i) =>
        `xa${i} = x[(xr${i} + k) / 4u]; ` +
        (guard
          ? `xb${i} = select(vec4<f32>(0.0), x[min((xr${i} + k) / 4u + 1u, p.xlast)], k + 4u < p.K);`
          : `xb${i} = x[(xr${i} + k) / 4u + 1u];`)
      ).join("\n        ")
      : I.flatMap((i) =>
        E.map((e) =>
          guard
            ? `x${i}_${e} = select(0.0, x[xr${i} + min(k + ${e}u, p.K - 1u)], k + ${e}u < p.K);`
            : `x${i}_${e} = x[xr${i} + k + ${e}u];`
        )
      ).join("\n        ");
  const xDecl = k.v4
    ? I.map((i) => `var xa${i} = vec4<f32>(0.0); var xb${i} = vec4<f32>(0.0);`).join(" ")
    : I.flatMap((i) => E.map((e) => `var x${i}_${e} = 0.0;`)).join(" ");
  const fma = (i: number, j: number) =>
    k.v4
      ? `t${i}_${j} += dot(xa${i}, da) + dot(xb${i}, db);`
      : `t${i}_${j} += ${E.map((e) => `x${i}_${e} * d${e}`).join(" + ")};`;
  const decodeWord = k.v4
    ? `let da = vec4<f32>(${E.slice(0, 4).map((e) => `decode((cw >> ${4 * e}u) & 15u)`).join(", ")});
        let db = vec4<f32>(${E.slice(4).map((e) => `decode((cw >> ${4 * e}u) & 15u)`).join(", ")});`
    : E.map((e) => `let d${e} = decode((cw >> ${4 * e}u) & 15u);`).join(" ");
  return `const WG = ${WG}u;\n${prelude}${scaleFn(k.dq)}${wgslHeader(matmulSpec(k))}fn main(${MAIN_ARGS}) {
  ${dynLoad(k.dq)}${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let n0 = (gid % p.nbn) * ${RN}u;
  let m0 = (gid / p.nbn) * ${k.rm}u;
  ${I.map((i) => `let xr${i} = min(m0 + ${i}u, p.M - 1u) * p.K;`).join("\n  ")}
  ${J.map((j) => `let cr${j} = min(n0 + ${j}u, p.N - 1u);`).join("\n  ")}
  ${each((i, j) => `var a${i}_${j} = 0.0;`)}
  ${xDecl}
  for (var b = 0u; b < p.blocks; b++) {
    ${each((i, j) => `var t${i}_${j} = 0.0;`)}
    for (var w = b * p.wpb; w < (b + 1u) * p.wpb; w++) {
      let k = w * 8u;
      if (k + 8u <= p.K) {
        ${xLoads(false)}
      } else {
        ${xLoads(true)}
      }
      ${
    J.map((j) =>
      `{
        let cw = codes[cr${j} * p.words + w];
        ${decodeWord}
        ${I.map((i) => fma(i, j)).join("\n        ")}
      }`
    ).join("\n      ")
  }
    }
    ${J.map((j) => `let s${j} = scale(cr${j} * p.blocks + b);`).join(" ")}
    ${each((i, j) => `a${i}_${j} += t${i}_${j} * s${j};`)}
  }
  ${
    each((i, j) =>
      `if (m0 + ${i}u < p.M && n0 + ${j}u < p.N) { out[(m0 + ${i}u) * p.N + n0 + ${j}u] = a${i}_${j}${
        k.bias ? ` + bias[n0 + ${j}u]` : ""
      }; }`
    )
  }
}
`;
}

/** Spec of the backward to x. */
export const backwardSpec = (kind: QuantKind, dq: boolean): KernelSpec => ({
  label: `quant.matmul_backward_${kind}${dq ? "_dq" : ""}`,
  params: { M: "u32", N: "u32", K: "u32", words: "u32", wpb: "u32", blocks: "u32", total: "u32" },
  bindings: [
    { name: "dx", type: "f32", access: "read_write" },
    { name: "dout", type: "f32", access: "read" },
    { name: "codes", type: "u32", access: "read" },
    ...scaleBindings(dq),
  ],
  workgroupSize: [WG, 1, 1],
});

/** WGSL of the backward: one invocation per BW_RM rows x one packed word, looping over N. */
function backwardWgsl(kind: QuantKind, dq: boolean, prelude: string): string {
  const I = range(BW_RM), E = range(8);
  return `const WG = ${WG}u;\n${prelude}${scaleFn(dq)}${
    wgslHeader(backwardSpec(kind, dq))
  }fn main(${MAIN_ARGS}) {
  ${dynLoad(dq)}${LINEAR_INDEX}
  if (gid >= p.total) { return; }
  let w = gid % p.words;
  let m0 = (gid / p.words) * ${BW_RM}u;
  let b = w / p.wpb;
  ${I.map((i) => `let gr${i} = min(m0 + ${i}u, p.M - 1u) * p.N;`).join("\n  ")}
  ${I.flatMap((i) => E.map((e) => `var a${i}_${e} = 0.0;`)).join(" ")}
  for (var n = 0u; n < p.N; n++) {
    let cw = codes[n * p.words + w];
    let s = scale(n * p.blocks + b);
    ${E.map((e) => `let d${e} = decode((cw >> ${4 * e}u) & 15u);`).join(" ")}
    ${
    I.map((i) =>
      `{
      let g = dout[gr${i} + n] * s;
      ${E.map((e) => `a${i}_${e} += g * d${e};`).join(" ")}
    }`
    ).join("\n    ")
  }
  }
  let k0 = w * 8u;
  ${
    I.flatMap((i) =>
      E.map((e) =>
        `if (m0 + ${i}u < p.M && k0 + ${e}u < p.K) { dx[(m0 + ${i}u) * p.K + k0 + ${e}u] = a${i}_${e}; }`
      )
    ).join("\n  ")
  }
}
`;
}

// ---- tables as WGSL literals, and the memoized sources ----

/**
 * bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)` in torch's
 * float32 arithmetic: for i = 0..6, `linspace(0.1, 1, 2**i + 1)` (torch's CPU kernel computes
 * `start + step * j` for the first half and `end - step * (steps - 1 - j)` for the rest; the x86-64
 * build contracts each to one fused multiply-add, i.e. one rounding), the means of neighbours,
 * times `10**(i - 6)` as float32 (a Python float times a float32 tensor), both signs; then 0 and 1;
 * sorted. `start + step * j` is exact in f64 here, so one `Math.fround` is the fused rounding.
 */
export function createDynamicMap(): number[] {
  const f = Math.fround;
  const pow10 = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]; // Python's 10 ** (i - 6), exact decimals
  const out: number[] = [0, 1];
  for (let i = 0; i < 7; i++) {
    const steps = 2 ** i + 1, start = f(0.1), step = f(f(1 - start) / (steps - 1)), half = steps >> 1;
    const b = Array.from(
      { length: steps },
      (_, j) => j < half ? f(start + step * j) : f(1 - step * (steps - 1 - j)),
    );
    const s = f(pow10[i]);
    for (let j = 0; j + 1 < steps; j++) {
      const mean = f(f(b[j] + b[j + 1]) / 2);
      out.push(f(s * mean), f(-s * mean));
    }
  }
  return out.sort((a, b) => a - b);
}

/** The numeric tables the WGSL embeds (owned by `quant.ts`). */
export interface QuantTables {
  nf4Values: readonly number[];
  nf4Thresholds: readonly number[];
  dynamicMap: readonly number[];
  zeroCode: (kind: QuantKind) => number;
}

/** Memoized WGSL sources of the quant kernels (keys: JSON of `[kind, dq]` or of an `MmKey`). */
export interface QuantPrograms {
  quantize: (kind: QuantKind) => string;
  dequantize: (key: string) => string;
  matmul: (key: string) => string;
  backward: (key: string) => string;
  scaleQuantize: (key: 0) => string;
}

/** An f32 WGSL literal of a value that is exactly representable in f32. */
function lit(v: number): string {
  const s = String(Math.fround(v));
  return s.includes(".") || s.includes("e") ? `${s}f` : `${s}.0f`;
}

/**
 * The sources for the tables. Preludes: `decode(c) -> f32` (a 4-bit code's value before scaling)
 * and `encode(y) -> u32`; with double-quantized scales also `DYNW`, the dynamic map in workgroup
 * memory (64 vec4, written by `dynInit()` in lane 0, read by `dyn(c)`): indexing a module-scope
 * `const` array at run time costs seconds of shader compilation on llvmpipe, and a `var<private>`
 * copy a 256-float initialization per invocation.
 */
export function quantPrograms(t: QuantTables): QuantPrograms {
  const codec = memo((kind: QuantKind) =>
    kind === "nf4"
      ? `var<private> NF4: array<f32, 16> = array<f32, 16>(${t.nf4Values.map(lit).join(", ")});
fn decode(c: u32) -> f32 { return NF4[c]; }
fn encode(y: f32) -> u32 {
  var c = 0u;
${t.nf4Thresholds.map((v) => `  c += select(0u, 1u, y > ${lit(v)});`).join("\n")}
  return c;
}
`
      : `fn decode(c: u32) -> f32 { return f32(i32(c) - 8); }
fn encode(y: f32) -> u32 { return u32(i32(clamp(round(y), -8.0, 7.0)) + 8); }
`
  );
  const quads = Array.from(
    { length: 64 },
    (_, i) => t.dynamicMap.slice(4 * i, 4 * i + 4).map(lit).join(", "),
  );
  const dyn = `var<workgroup> DYNW: array<vec4<f32>, 64>;
fn dynInit() {
${quads.map((q, i) => `  DYNW[${i}] = vec4<f32>(${q});`).join("\n")}
}
fn dyn(c: u32) -> f32 { return DYNW[c >> 2u][c & 3u]; }
`;
  const prelude = (kind: QuantKind, dq: boolean) => codec(kind) + (dq ? dyn : "");
  const kindDq = (key: string) => JSON.parse(key) as [QuantKind, boolean];
  return {
    quantize: memo((kind: QuantKind) => quantizeWgsl(kind, codec(kind), t.zeroCode(kind))),
    dequantize: memo((key: string) => {
      const [kind, dq] = kindDq(key);
      return dequantizeWgsl(kind, dq, prelude(kind, dq));
    }),
    matmul: memo((key: string) => {
      const k = JSON.parse(key) as MmKey;
      return matmulWgsl(k, prelude(k.kind, k.dq));
    }),
    backward: memo((key: string) => {
      const [kind, dq] = kindDq(key);
      return backwardWgsl(kind, dq, prelude(kind, dq));
    }),
    scaleQuantize: memo((_: 0) => scaleQuantizeWgsl(dyn)),
  };
}
