/**
 * Private: how each family maps onto llama.cpp's GGUF (arch names, what its graphs support, tensor
 * names, order, layouts and types, and the `<arch>.*` hyperparameters), after
 * `convert_hf_to_gguf.py`. See `gguf.ts` for the layout notes.
 * @module
 */
import { dequantize } from "../../kernels/quant.ts";
import type { ModelConfig } from "../config_types.ts";
import type { Transformer } from "../transformer.ts";
import type { GgufTensorSpec, GgufValue } from "./_gguf_file.ts";
import { type GgmlType, QK } from "./_gguf_quant.ts";

/** Tensor types of a GGUF export (`--outtype`). */
export type GgufOuttype = "f32" | "f16" | "q8_0" | "q4_0";

export const OUTTYPES: Record<GgufOuttype, { type: GgmlType; file_type: number }> = {
  f32: { type: "F32", file_type: 0 },
  f16: { type: "F16", file_type: 1 },
  q8_0: { type: "Q8_0", file_type: 7 },
  q4_0: { type: "Q4_0", file_type: 2 },
};

/** llama.cpp's architecture name of each family. */
export const GGUF_ARCH: Record<string, string> = {
  llama: "llama",
  mistral: "llama",
  qwen2: "qwen2",
  phi3: "phi3",
  gpt2: "gpt2",
};

/** Every reason llama.cpp's graph for the family would not compute what this config computes. */
function unsupported(c: ModelConfig): string[] {
  const out: string[] = [];
  const want = (ok: boolean, what: string) => ok || out.push(what);
  if (c.arch === "gpt2") {
    want(
      c.norm === "layernorm" && c.position === "learned" && c.mlp === "gelu",
      "gpt2 needs layernorm, learned positions and a gelu MLP",
    );
    want(
      c.hidden_act === "gelu_new" || c.hidden_act === "gelu_pytorch_tanh",
      `gpt2 in llama.cpp uses tanh gelu, not ${c.hidden_act}`,
    );
    want(c.qkv_bias && c.o_bias && c.mlp_bias, "gpt2 in llama.cpp needs every linear bias");
    want(c.num_key_value_heads === c.num_attention_heads, "gpt2 in llama.cpp has no grouped-query attention");
    want(c.head_dim * c.num_attention_heads === c.hidden_size, "gpt2 needs head_dim = hidden_size / heads");
  } else {
    want(
      c.norm === "rmsnorm" && c.position === "rope" && c.mlp === "swiglu",
      `${c.arch} needs rmsnorm, rope and a SwiGLU MLP`,
    );
    want(c.hidden_act === "silu", `${c.arch} in llama.cpp uses silu, not ${c.hidden_act}`);
    want(c.partial_rotary_factor === 1 || c.arch === "phi3", "partial rotary embeddings need phi3");
    if (c.arch === "qwen2") {
      want(c.qkv_bias && !c.o_bias && !c.mlp_bias, "qwen2 in llama.cpp has q/k/v biases only");
    }
    if (c.arch === "phi3") want(!c.qkv_bias && !c.o_bias && !c.mlp_bias, "phi3 in llama.cpp has no biases");
    if (c.rope_scaling?.rope_type === "llama3") {
      want(GGUF_ARCH[c.arch] === "llama", "llama3 rope scaling needs arch llama");
    }
    if (c.arch === "phi3") want(c.rope_scaling === null, "phi3 rope scaling is not exported");
    want(
      c.arch === "phi3" || c.sliding_window === null || c.sliding_window >= c.max_position_embeddings,
      `llama.cpp's ${
        GGUF_ARCH[c.arch]
      } graph has no sliding window (${c.sliding_window}); set sliding_window to null`,
    );
  }
  want(!c.lm_head_bias, "llama.cpp has no LM head bias");
  return out;
}

/** Check the family and outtype; throws a one-line RangeError naming the fix. */
export function checkExportable(c: ModelConfig, outtype: unknown, allowed: readonly string[]): GgufOuttype {
  if (!Object.hasOwn(GGUF_ARCH, c.arch)) {
    throw new RangeError(
      `Cannot export to GGUF: architecture ${JSON.stringify(c.arch)} is not supported ` +
        `(llama, mistral, qwen2, phi3, gpt2); merge into a supported family or export ONNX`,
    );
  }
  if (typeof outtype !== "string" || !allowed.includes(outtype)) {
    throw new RangeError(
      `Cannot export to GGUF: outtype ${JSON.stringify(outtype)} is not supported; use one of ${
        allowed.join(", ")
      }`,
    );
  }
  const why = unsupported(c);
  if (why.length) {
    throw new RangeError(
      `Cannot export ${c.arch} to GGUF: ${why.join("; ")}; export ONNX or safetensors instead`,
    );
  }
  return outtype as GgufOuttype;
}

/**
 * The row permutation of a q / k projection (or bias, or `lora_b`) into llama.cpp's rope order, or
 * null when the order already matches. `convert_hf_to_gguf.py` `LlamaModel.permute`:
 * `w.reshape(heads, 2, D/2, ...).swapaxes(1, 2)`: new row `h·D + 2j + t` = old row `h·D + t·D/2 + j`.
 */
export function ropePermutation(
  c: ModelConfig,
  heads: number,
): ((x: Float32Array, cols: number) => Float32Array) | null {
  const adjacent = GGUF_ARCH[c.arch] === "llama"; // llama.cpp LLAMA_ROPE_TYPE_NORM; qwen2 / phi3 NEOX
  if (c.position !== "rope" || adjacent === c.rope_interleaved) return null;
  const D = c.head_dim, half = D / 2;
  return (x, cols) => {
    const out = new Float32Array(x.length);
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < half; j++) {
        for (let t = 0; t < 2; t++) {
          const halves = h * D + t * half + j, pairs = h * D + 2 * j + t;
          const [to, from] = adjacent ? [pairs, halves] : [halves, pairs];
          out.set(x.subarray(from * cols, (from + 1) * cols), to * cols);
        }
      }
    }
    return out;
  };
}

/** The values of a canonical parameter on the host as f32 (a 4-bit weight dequantized). */
async function hostF32(model: Transformer, name: string): Promise<Float32Array> {
  const q = name.endsWith(".weight") ? model.quantized.get(name.slice(0, -".weight".length)) : undefined;
  const t = q ? dequantize(q) : model.p(name);
  try {
    const a = await t.toArray();
    return a instanceof Float32Array ? a : Float32Array.from(a as Float16Array);
  } finally {
    if (q) t.dispose();
  }
}

/** The type a tensor gets: F32 for 1-D, norms and position tables; else the outtype (F16 when rows do not split into blocks). */
export function tensorType(name: string, shape: number[], type: GgmlType): GgmlType {
  if (shape.length <= 1 || name.endsWith("_norm.weight") || name === "position_embd.weight") return "F32";
  if ((type === "Q8_0" || type === "Q4_0") && shape.at(-1)! % QK !== 0) return "F16";
  return type;
}

/** F16 overflows to infinity beyond 65504: refuse rather than write infinities. */
export function checkF16Range(name: string, x: Float32Array): Float32Array {
  for (const v of x) {
    if (Math.abs(v) > 65504) {
      throw new RangeError(
        `Cannot export ${name} as F16: value ${v} exceeds the f16 range; use outtype f32 or q8_0`,
      );
    }
  }
  return x;
}

/** The largest |value| a block type's f16 scale holds: amax / 127 (Q8_0), max / -8 (Q4_0). */
const BLOCK_LIMIT: Partial<Record<GgmlType, number>> = { Q8_0: 127 * 65504, Q4_0: 8 * 65504 };

/**
 * The values of a tensor written as `type`, refused where the file would hold infinities: an F16
 * value, or a block scale (Q8_0, Q4_0: llama.cpp then computes NaN logits from it).
 * @throws {RangeError} naming the tensor, the value and an outtype that holds it
 */
export function checkRange(name: string, x: Float32Array, type: GgmlType): Float32Array {
  if (type === "F16") return checkF16Range(name, x);
  const max = BLOCK_LIMIT[type];
  if (max === undefined) return x;
  for (const v of x) {
    if (!(Math.abs(v) <= max)) {
      throw new RangeError(
        `Cannot export ${name} as ${type}: value ${v} ${
          Number.isFinite(v) ? `needs a block scale past the f16 range (|value| <= ${max})` : "is not finite"
        }; use outtype f32`,
      );
    }
  }
  return x;
}

/** The model's tensors in llama.cpp's names, order and layout. */
export function modelTensors(model: Transformer, type: GgmlType): GgufTensorSpec[] {
  const c = model.config, arch = GGUF_ARCH[c.arch];
  const out: GgufTensorSpec[] = [];
  const add = (name: string, shape: number[], data: () => Promise<Float32Array>) => {
    const t = tensorType(name, shape, type);
    out.push({
      name,
      shape,
      type: t,
      data: t === "F32" ? data : async () => checkRange(name, await data(), t),
    });
  };
  /** Concatenated rows of canonical tensors, each optionally permuted. */
  const rows = (
    names: string[],
    cols: number,
    perm: (((x: Float32Array, cols: number) => Float32Array) | null)[] = [],
  ) =>
  async () => {
    const parts = await Promise.all(
      names.map(async (n, i) => perm[i]?.(await hostF32(model, n), cols) ?? await hostF32(model, n)),
    );
    if (parts.length === 1) return parts[0];
    const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return all;
  };
  const C = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const qDim = c.num_attention_heads * D, kvDim = c.num_key_value_heads * D;
  const permQ = ropePermutation(c, c.num_attention_heads), permK = ropePermutation(c, c.num_key_value_heads);

  if (c.rope_scaling?.rope_type === "llama3") {
    const factors = llama3RopeFactors(c);
    add("rope_freqs.weight", [factors.length], () => Promise.resolve(factors));
  }
  add("token_embd.weight", [c.vocab_size, C], rows(["embed.weight"], C));
  if (c.position === "learned") {
    add("position_embd.weight", [c.max_position_embeddings, C], rows(["pos_embed.weight"], C));
  }
  const norm = (gguf: string, ours: string) => {
    add(`${gguf}.weight`, [C], rows([`${ours}.weight`], 1));
    if (c.norm === "layernorm") add(`${gguf}.bias`, [C], rows([`${ours}.bias`], 1));
  };
  const linear = (
    gguf: string,
    ours: string[],
    outDim: number,
    inDim: number,
    bias: boolean,
    perm: typeof permQ[] = [],
  ) => {
    add(`${gguf}.weight`, [outDim, inDim], rows(ours.map((o) => `${o}.weight`), inDim, perm));
    if (bias) add(`${gguf}.bias`, [outDim], rows(ours.map((o) => `${o}.bias`), 1, perm));
  };
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const b = `blk.${i}`, l = `layers.${i}`;
    norm(`${b}.attn_norm`, `${l}.attn_norm`);
    const [q, k, v] = ["q", "k", "v"].map((x) => `${l}.attn.${x}`);
    if (arch === "phi3" || arch === "gpt2") {
      linear(`${b}.attn_qkv`, [q, k, v], qDim + 2 * kvDim, C, c.qkv_bias, [permQ, permK, null]);
    } else {
      linear(`${b}.attn_q`, [q], qDim, C, c.qkv_bias, [permQ]);
      linear(`${b}.attn_k`, [k], kvDim, C, c.qkv_bias, [permK]);
      linear(`${b}.attn_v`, [v], kvDim, C, c.qkv_bias);
    }
    linear(`${b}.attn_output`, [`${l}.attn.o`], C, qDim, c.o_bias);
    norm(`${b}.ffn_norm`, `${l}.mlp_norm`);
    if (arch === "phi3") linear(`${b}.ffn_up`, [`${l}.mlp.gate`, `${l}.mlp.up`], 2 * I, C, c.mlp_bias);
    else {
      if (c.mlp === "swiglu") linear(`${b}.ffn_gate`, [`${l}.mlp.gate`], I, C, c.mlp_bias);
      linear(`${b}.ffn_up`, [`${l}.mlp.up`], I, C, c.mlp_bias);
    }
    linear(`${b}.ffn_down`, [`${l}.mlp.down`], C, I, c.mlp_bias);
  }
  norm("output_norm", "final_norm");
  if (!c.tie_word_embeddings) add("output.weight", [c.vocab_size, C], rows(["lm_head.weight"], C));
  else if (arch === "gpt2" || arch === "phi3") {
    add("output.weight", [c.vocab_size, C], rows(["embed.weight"], C));
  }
  return out;
}

/** Llama 3 rope scaling as llama.cpp's per-frequency divisors (`LlamaModel.generate_extra_tensors`). */
function llama3RopeFactors(c: ModelConfig): Float32Array {
  const s = c.rope_scaling as Extract<ModelConfig["rope_scaling"], { rope_type: "llama3" }>;
  const dim = c.head_dim, lowWavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const highWavelen = s.original_max_position_embeddings / s.high_freq_factor;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = 1 / c.rope_theta ** ((2 * i) / dim), wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
        (s.high_freq_factor - s.low_freq_factor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/** The `<arch>.*` hyperparameter keys. */
export function archMetadata(c: ModelConfig, fileType: number): [string, GgufValue][] {
  const arch = GGUF_ARCH[c.arch];
  const u32 = (k: string, value: number): [string, GgufValue] => [`${arch}.${k}`, { type: "u32", value }];
  const f32 = (k: string, value: number): [string, GgufValue] => [`${arch}.${k}`, { type: "f32", value }];
  const m: [string, GgufValue][] = [
    u32("vocab_size", c.vocab_size),
    u32("context_length", c.max_position_embeddings),
    u32("embedding_length", c.hidden_size),
    u32("feed_forward_length", c.intermediate_size),
    u32("block_count", c.num_hidden_layers),
    u32("attention.head_count", c.num_attention_heads),
  ];
  if (arch === "gpt2") m.push(f32("attention.layer_norm_epsilon", c.norm_eps));
  else {
    m.push(
      u32("attention.head_count_kv", c.num_key_value_heads),
      f32("attention.layer_norm_rms_epsilon", c.norm_eps),
      f32("rope.freq_base", c.rope_theta),
      u32("rope.dimension_count", Math.floor(c.head_dim * c.partial_rotary_factor)),
      u32("attention.key_length", c.head_dim),
      u32("attention.value_length", c.head_dim),
    );
    if (c.rope_scaling?.rope_type === "linear") {
      m.push(
        [`${arch}.rope.scaling.type`, { type: "string", value: "linear" }],
        f32("rope.scaling.factor", c.rope_scaling.factor),
      );
    }
    if (arch === "phi3") {
      m.push(
        u32(
          "rope.scaling.original_context_length",
          c.original_max_position_embeddings ?? c.max_position_embeddings,
        ),
        u32("attention.sliding_window", c.sliding_window ?? 0),
      );
    }
  }
  m.push(["general.file_type", { type: "u32", value: fileType }]);
  return m;
}
