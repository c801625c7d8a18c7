/**
 * The decoder as an ONNX graph of standard ops (default domain, opset 17+), in Optimum's
 * decoder-with-past layout:
 *
 *   inputs  input_ids [B, S] i64, attention_mask [B, P+S] i64, position_ids [B, S] i64,
 *           past_key_values.{i}.key|value [B, Hkv, P, D] f32
 *   outputs logits [B, S, V] f32, present.{i}.key|value [B, Hkv, P+S, D] f32
 *
 * The math is `models/transformer.ts`'s, op for op:
 * - norms: LayerNormalization (opset 17), or RMSNorm as x / Sqrt(ReduceMean(x²) + eps) * w;
 * - positions: a learned table (Gather by position_ids, added), or rotary embeddings from cos/sin
 *   tables `[max_position_embeddings, R/2]` (R = rotated dims) computed as `kernels/rope.ts` does
 *   (f32 angle, f32 cos/sin; the config's rope scaling is in the inverse frequencies), gathered by
 *   position_ids and applied by Slice/Mul/Sub/Add/Concat ("rotate_half" halves, or adjacent pairs
 *   through a `[.., R/2, 2]` reshape when `rope_interleaved`), dims past R passed through;
 * - attention: new k/v appended to the past (Concat on the time axis = the present outputs), kv
 *   heads repeated G = H / Hkv times (Unsqueeze, Expand, Reshape: HF `repeat_kv`), softmax of
 *   q·kᵀ / √D over the visible keys. Key j of query i (absolute index P + i) is visible iff
 *   j <= P + i, attention_mask[b, j] != 0 and, with a sliding window W, j > P + i - W, the
 *   predicate of `kernels/attention.ts`; masked scores are set to f32 min, and a row with no visible
 *   key (a left pad) gets output 0 as ours does, not HF's uniform average;
 * - MLP: silu(gate) * up (SwiGLU) or GELU (tanh or erf form) from Sigmoid / Tanh / Erf;
 * - LM head: MatMul with the transposed embedding (tied) or lm_head, biases where the config has them.
 * Linear weights are stored transposed, `[in, out]`, for MatMul.
 *
 * @module
 */
import type { Transformer } from "../transformer.ts";
import { modelRopeInvFreq } from "../config.ts";
import { dequantize } from "../../kernels/quant.ts";
import {
  type AttrValue,
  DTYPE,
  type LazyBytes,
  type NodeSpec,
  type TensorSpec,
  type ValueSpec,
} from "./_onnx_proto.ts";

/** A weight initializer whose bytes are produced when written. */
export interface WeightSpec {
  name: string;
  dims: number[];
  bytes: LazyBytes;
}

/** The graph of the decoder: nodes, small constants (inline), weights (lazy), inputs and outputs. */
export interface DecoderGraph {
  nodes: NodeSpec[];
  constants: TensorSpec[];
  weights: WeightSpec[];
  inputs: ValueSpec[];
  outputs: ValueSpec[];
}

const F32_MIN = -3.4028234663852886e38;

/** Builds nodes with fresh names; constants are shared by value. */
class Builder {
  nodes: NodeSpec[] = [];
  constants: TensorSpec[] = [];
  weights: WeightSpec[] = [];
  #n = 0;
  #consts = new Map<string, string>();

  constructor(readonly opset: number) {}

  /** One node with one output (named `out`, or a fresh name). */
  op(op: string, inputs: string[], attrs?: Record<string, AttrValue>, out?: string): string {
    const name = `${op}_${this.#n++}`;
    const o = out ?? `${name}_out`;
    this.nodes.push({ op, inputs, outputs: [o], name, attrs });
    return o;
  }

  #const(key: string, dims: number[], data_type: number, bytes: Uint8Array): string {
    const hit = this.#consts.get(key);
    if (hit) return hit;
    const name = `const_${this.#consts.size}`;
    this.constants.push({ name, dims, data_type, data: bytes });
    this.#consts.set(key, name);
    return name;
  }

  /** A float32 scalar constant. */
  f32(v: number): string {
    return this.#const(`f32:${v}`, [], DTYPE.FLOAT, new Uint8Array(Float32Array.of(v).buffer));
  }

  /** An int64 constant: a 1-D tensor of `vs`, or a scalar with `scalar`. */
  i64(vs: number[], scalar = false): string {
    const dims = scalar ? [] : [vs.length];
    const b = new Uint8Array(BigInt64Array.from(vs.map(BigInt)).buffer);
    return this.#const(`i64:${dims.length}:${vs}`, dims, DTYPE.INT64, b);
  }

  weight(name: string, dims: number[], get: () => Promise<Float32Array>): string {
    const size = dims.reduce((a, b) => a * b, 1) * 4;
    this.weights.push({
      name,
      dims,
      bytes: {
        size,
        get: async () => {
          const a = await get();
          return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
        },
      },
    });
    return name;
  }

  /** ReduceMean / ReduceMax over `axes`, keepdims: axes are an attribute before opset 18, an input from 18. */
  reduce(op: "ReduceMean" | "ReduceMax", x: string, axes: number[]): string {
    if (this.opset >= 18) return this.op(op, [x, this.i64(axes)], { keepdims: { i: 1 } });
    return this.op(op, [x], { axes: { ints: axes }, keepdims: { i: 1 } });
  }

  slice(x: string, start: number, end: number, axis: number): string {
    return this.op("Slice", [x, this.i64([start]), this.i64([end]), this.i64([axis])]);
  }

  unsqueeze(x: string, axes: number[]): string {
    return this.op("Unsqueeze", [x, this.i64(axes)]);
  }

  reshape(x: string, shape: number[]): string {
    return this.op("Reshape", [x, this.i64(shape)]);
  }

  transpose(x: string, perm: number[]): string {
    return this.op("Transpose", [x], { perm: { ints: perm } });
  }
}

/** A parameter's values on the host as f32: 4-bit weights dequantized, f16 widened. */
async function hostParam(model: Transformer, name: string): Promise<Float32Array> {
  const q = name.endsWith(".weight") ? model.quantized.get(name.slice(0, -".weight".length)) : undefined;
  if (q) {
    const t = dequantize(q);
    try {
      return Float32Array.from(await t.toArray() as Float32Array);
    } finally {
      t.dispose();
    }
  }
  const a = await model.p(name).toArray();
  return a instanceof Float32Array ? a : Float32Array.from(a as ArrayLike<number>);
}

/** `[rows, cols]` row-major -> `[cols, rows]`. */
function transposed(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  }
  return out;
}

/** cos and sin tables `[positions, R/2]`, rounded as `kernels/rope.ts` (HF's float32 `freqs`). */
function ropeTables(invFreq: Float32Array, positions: number): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(positions * half), sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(Math.fround(p) * invFreq[i]);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/**
 * Build the graph of `model` (see the module doc).
 * @param model the decoder; its weights are read back only when the file is written
 * @param opset the default-domain opset, 17 or later
 */
export function decoderGraph(model: Transformer, opset: number): DecoderGraph {
  const c = model.config, g = new Builder(opset);
  const H = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim, C = c.hidden_size;
  const V = c.vocab_size, L = c.num_hidden_layers, G = H / Hkv;
  const has = (n: string) => model.params.has(n) || model.quantized.has(n.replace(/\.weight$/, ""));
  const param = (n: string, dims: number[]) => g.weight(n, dims, () => hostParam(model, n));
  /** A linear `[out, in]` stored as `[in, out]` (MatMul's B), plus its bias. */
  const linear = (prefix: string, x: string, out: number, inp: number): string => {
    const w = g.weight(`${prefix}.weight_t`, [inp, out], async () => {
      return transposed(await hostParam(model, `${prefix}.weight`), out, inp);
    });
    const y = g.op("MatMul", [x, w]);
    return has(`${prefix}.bias`) ? g.op("Add", [y, param(`${prefix}.bias`, [out])]) : y;
  };
  const norm = (prefix: string, x: string): string => {
    const w = param(`${prefix}.weight`, [C]);
    if (c.norm === "layernorm") {
      const b = param(`${prefix}.bias`, [C]);
      return g.op("LayerNormalization", [x, w, b], { axis: { i: -1 }, epsilon: { f: c.norm_eps } });
    }
    const ms = g.reduce("ReduceMean", g.op("Pow", [x, g.f32(2)]), [-1]);
    const rms = g.op("Sqrt", [g.op("Add", [ms, g.f32(c.norm_eps)])]);
    return g.op("Mul", [g.op("Div", [x, rms]), w]);
  };

  // Embeddings: [B, S] -> [B, S, C]
  const embed = param("embed.weight", [V, C]);
  let h = g.op("Gather", [embed, "input_ids"], { axis: { i: 0 } });
  if (c.position === "learned") {
    const pe = g.op("Gather", [param("pos_embed.weight", [c.max_position_embeddings, C]), "position_ids"], {
      axis: { i: 0 },
    });
    h = g.op("Add", [h, pe]);
  }

  // Visibility [B, 1, S, K] (K = P + S keys) and "row has a visible key" [B, 1, S, 1]
  const kLen = g.op("Shape", ["attention_mask"], { start: { i: 1 }, end: { i: 2 } });
  const sLen = g.op("Shape", ["input_ids"], { start: { i: 1 }, end: { i: 2 } });
  const K = g.op("Squeeze", [kLen, g.i64([0])]), S = g.op("Squeeze", [sLen, g.i64([0])]);
  const kIdx = g.op("Range", [g.i64([0], true), K, g.i64([1], true)]); // [K]
  const qIdx = g.unsqueeze(g.op("Range", [g.op("Sub", [K, S]), K, g.i64([1], true)]), [1]); // [S, 1]
  let vis = g.op("LessOrEqual", [kIdx, qIdx]); // [S, K]
  if (c.sliding_window !== null) {
    const lo = g.op("Sub", [qIdx, g.i64([c.sliding_window], true)]);
    vis = g.op("And", [vis, g.op("Greater", [kIdx, lo])]);
  }
  const pad = g.unsqueeze(g.op("Cast", ["attention_mask"], { to: { i: DTYPE.BOOL } }), [1, 2]); // [B,1,1,K]
  vis = g.op("And", [vis, pad]); // [B, 1, S, K]
  const rowValid = g.reduce("ReduceMax", g.op("Cast", [vis], { to: { i: DTYPE.FLOAT } }), [-1]);

  // Rotary cos/sin gathered by position: [B, S, 1, R/2]
  let rotate: ((x: string, heads: number) => string) | null = null;
  if (c.position === "rope") {
    const inv = modelRopeInvFreq(c), half = inv.length, R = 2 * half;
    const tables = ropeTables(inv, c.max_position_embeddings);
    const cosT = g.weight("rope.cos", [c.max_position_embeddings, half], () => Promise.resolve(tables.cos));
    const sinT = g.weight("rope.sin", [c.max_position_embeddings, half], () => Promise.resolve(tables.sin));
    const cos = g.unsqueeze(g.op("Gather", [cosT, "position_ids"], { axis: { i: 0 } }), [2]);
    const sin = g.unsqueeze(g.op("Gather", [sinT, "position_ids"], { axis: { i: 0 } }), [2]);
    const turn = (a: string, b: string, cs: string, sn: string): [string, string] => [
      g.op("Sub", [g.op("Mul", [a, cs]), g.op("Mul", [b, sn])]),
      g.op("Add", [g.op("Mul", [b, cs]), g.op("Mul", [a, sn])]),
    ];
    rotate = (x, heads) => {
      // x [B, S, heads, D]
      const pass = R < D ? [g.slice(x, R, D, 3)] : [];
      if (!c.rope_interleaved) {
        const [o1, o2] = turn(g.slice(x, 0, half, 3), g.slice(x, half, R, 3), cos, sin);
        return g.op("Concat", [o1, o2, ...pass], { axis: { i: 3 } });
      }
      // pairs (2i, 2i + 1): [B, S, heads, R] -> [B, S, heads, R/2, 2]
      const x5 = g.reshape(R < D ? g.slice(x, 0, R, 3) : x, [0, 0, heads, half, 2]);
      const cos5 = g.unsqueeze(cos, [4]), sin5 = g.unsqueeze(sin, [4]);
      const [oa, ob] = turn(g.slice(x5, 0, 1, 4), g.slice(x5, 1, 2, 4), cos5, sin5);
      const rot = g.reshape(g.op("Concat", [oa, ob], { axis: { i: 4 } }), [0, 0, heads, R]);
      return pass.length ? g.op("Concat", [rot, ...pass], { axis: { i: 3 } }) : rot;
    };
  }

  const scale = g.f32(1 / Math.sqrt(D)), neg = g.f32(F32_MIN);
  /** [B, Hkv, K, D] -> [B, H, K, D], each kv head repeated G times (HF repeat_kv). */
  const repeatKv = (x: string) =>
    G === 1 ? x : g.reshape(g.op("Expand", [g.unsqueeze(x, [2]), g.i64([1, 1, G, 1, 1])]), [0, H, -1, D]);
  for (let i = 0; i < L; i++) {
    const l = `layers.${i}`;
    const x = norm(`${l}.attn_norm`, h);
    let q = g.reshape(linear(`${l}.attn.q`, x, H * D, C), [0, 0, H, D]);
    let k = g.reshape(linear(`${l}.attn.k`, x, Hkv * D, C), [0, 0, Hkv, D]);
    const v = g.reshape(linear(`${l}.attn.v`, x, Hkv * D, C), [0, 0, Hkv, D]);
    if (rotate) {
      q = rotate(q, H);
      k = rotate(k, Hkv);
    }
    const perm = [0, 2, 1, 3];
    const kAll = g.op(
      "Concat",
      [`past_key_values.${i}.key`, g.transpose(k, perm)],
      { axis: { i: 2 } },
      `present.${i}.key`,
    );
    const vAll = g.op(
      "Concat",
      [`past_key_values.${i}.value`, g.transpose(v, perm)],
      { axis: { i: 2 } },
      `present.${i}.value`,
    );
    const kt = g.transpose(repeatKv(kAll), [0, 1, 3, 2]); // [B, H, D, K]
    const scores = g.op("Mul", [g.op("MatMul", [g.transpose(q, perm), kt]), scale]); // [B, H, S, K]
    const probs = g.op("Softmax", [g.op("Where", [vis, scores, neg])], { axis: { i: -1 } });
    const attn = g.op("MatMul", [g.op("Mul", [probs, rowValid]), repeatKv(vAll)]); // [B, H, S, D]
    const merged = g.reshape(g.transpose(attn, perm), [0, 0, H * D]);
    h = g.op("Add", [h, linear(`${l}.attn.o`, merged, C, H * D)]);

    const y = norm(`${l}.mlp_norm`, h);
    const I = c.intermediate_size;
    let m: string;
    if (c.mlp === "swiglu") {
      const gate = linear(`${l}.mlp.gate`, y, I, C), up = linear(`${l}.mlp.up`, y, I, C);
      m = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]);
    } else {
      m = gelu(g, linear(`${l}.mlp.up`, y, I, C), c.hidden_act === "gelu");
    }
    h = g.op("Add", [h, linear(`${l}.mlp.down`, m, C, I)]);
  }
  h = norm("final_norm", h);
  // LM head [B, S, C] -> [B, S, V]: the embedding transposed (tied; ORT folds the Transpose) or lm_head
  const headW = c.tie_word_embeddings
    ? g.transpose(embed, [1, 0])
    : g.weight("lm_head.weight_t", [C, V], async () =>
      transposed(await hostParam(model, "lm_head.weight"), V, C));
  const headBias = has("lm_head.bias");
  const logits = g.op("MatMul", [h, headW], undefined, headBias ? undefined : "logits");
  if (headBias) g.op("Add", [logits, param("lm_head.bias", [V])], undefined, "logits");

  const inputs: ValueSpec[] = [
    { name: "input_ids", elem_type: DTYPE.INT64, dims: ["batch_size", "sequence_length"] },
    { name: "attention_mask", elem_type: DTYPE.INT64, dims: ["batch_size", "total_sequence_length"] },
    { name: "position_ids", elem_type: DTYPE.INT64, dims: ["batch_size", "sequence_length"] },
  ];
  const outputs: ValueSpec[] = [
    { name: "logits", elem_type: DTYPE.FLOAT, dims: ["batch_size", "sequence_length", V] },
  ];
  for (let i = 0; i < L; i++) {
    for (const kv of ["key", "value"]) {
      inputs.push({
        name: `past_key_values.${i}.${kv}`,
        elem_type: DTYPE.FLOAT,
        dims: ["batch_size", Hkv, "past_sequence_length", D],
      });
      outputs.push({
        name: `present.${i}.${kv}`,
        elem_type: DTYPE.FLOAT,
        dims: ["batch_size", Hkv, "total_sequence_length", D],
      });
    }
  }
  return { nodes: g.nodes, constants: g.constants, weights: g.weights, inputs, outputs };
}

/** GELU: `0.5 x (1 + erf(x / √2))`, or the tanh form `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`. */
function gelu(g: Builder, x: string, erf: boolean): string {
  let inner: string;
  if (erf) inner = g.op("Erf", [g.op("Mul", [x, g.f32(Math.SQRT1_2)])]);
  else {
    const cube = g.op("Mul", [g.op("Pow", [x, g.f32(3)]), g.f32(0.044715)]);
    inner = g.op("Tanh", [g.op("Mul", [g.op("Add", [x, cube]), g.f32(Math.sqrt(2 / Math.PI))])]);
  }
  return g.op("Mul", [g.op("Mul", [x, g.f32(0.5)]), g.op("Add", [inner, g.f32(1)])]);
}
