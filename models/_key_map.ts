/**
 * Private: the checkpoint key map of `config.ts` as one data table of Hugging Face module names per
 * family; `buildKeyMap` only picks rows by the config's flags (biases, layouts, position, tying).
 * @module
 */
import type { CheckpointKeyMap, KeyMapEntry, ModelArch, ModelConfig } from "./config_types.ts";

interface FamilyNames {
  base_model_prefix: string;
  embed: string;
  pos_embed: string | null;
  /** Per-layer module prefix, with `{i}`. */
  layer: string;
  attn_norm: string;
  /** Separate q, k, v modules, or the fused one. */
  q: string;
  k: string;
  v: string;
  qkv: string;
  o: string;
  mlp_norm: string;
  gate: string;
  up: string;
  gate_up: string;
  down: string;
  final_norm: string;
  lm_head: string;
  /** Linear weights stored `[in, out]` (GPT-2's Conv1D). */
  conv1d: boolean;
  /** Buffers some checkpoints carry (per layer, relative to `layer`). */
  ignored_per_layer: string[];
}

const LLAMA_LIKE: FamilyNames = {
  base_model_prefix: "model",
  embed: "model.embed_tokens",
  pos_embed: null,
  layer: "model.layers.{i}.",
  attn_norm: "input_layernorm",
  q: "self_attn.q_proj",
  k: "self_attn.k_proj",
  v: "self_attn.v_proj",
  qkv: "self_attn.qkv_proj",
  o: "self_attn.o_proj",
  mlp_norm: "post_attention_layernorm",
  gate: "mlp.gate_proj",
  up: "mlp.up_proj",
  gate_up: "mlp.gate_up_proj",
  down: "mlp.down_proj",
  final_norm: "model.norm",
  lm_head: "lm_head",
  conv1d: false,
  ignored_per_layer: ["self_attn.rotary_emb.inv_freq"],
};

const NAMES: Record<ModelArch, FamilyNames> = {
  llama: LLAMA_LIKE,
  mistral: LLAMA_LIKE,
  qwen2: LLAMA_LIKE,
  phi3: LLAMA_LIKE,
  gpt2: {
    base_model_prefix: "transformer",
    embed: "transformer.wte",
    pos_embed: "transformer.wpe",
    layer: "transformer.h.{i}.",
    attn_norm: "ln_1",
    q: "",
    k: "",
    v: "",
    qkv: "attn.c_attn",
    o: "attn.c_proj",
    mlp_norm: "ln_2",
    gate: "",
    up: "mlp.c_fc",
    gate_up: "",
    down: "mlp.c_proj",
    final_norm: "transformer.ln_f",
    lm_head: "lm_head",
    conv1d: true,
    ignored_per_layer: ["attn.bias", "attn.masked_bias"],
  },
};

/** Build the key map of a validated config from {@linkcode NAMES}. */
export function buildKeyMap(c: ModelConfig): CheckpointKeyMap {
  const n = NAMES[c.arch];
  const C = c.hidden_size, I = c.intermediate_size;
  const qDim = c.num_attention_heads * c.head_dim, kvDim = c.num_key_value_heads * c.head_dim;
  const entries: KeyMapEntry[] = [];
  const one = (hf: string, ours: string, hf_shape: number[], per_layer: boolean) =>
    entries.push({ hf, ours: [ours], per_layer, hf_shape, transpose: false, split_rows: null });
  /** A linear layer: weight `[out, in]` (or Conv1D `[in, out]`) and an optional bias `[out]`. */
  const linear = (hf: string, ours: string[], rows: number[], inDim: number, bias: boolean) => {
    const out = rows.reduce((a, b) => a + b, 0);
    const split = ours.length > 1 ? rows : null;
    const l = `${n.layer}${hf}`;
    entries.push({
      hf: `${l}.weight`,
      ours: ours.map((o) => `layers.{i}.${o}.weight`),
      per_layer: true,
      hf_shape: n.conv1d ? [inDim, out] : [out, inDim],
      transpose: n.conv1d,
      split_rows: split,
    });
    if (bias) {
      entries.push({
        hf: `${l}.bias`,
        ours: ours.map((o) => `layers.{i}.${o}.bias`),
        per_layer: true,
        hf_shape: [out],
        transpose: false,
        split_rows: split,
      });
    }
  };
  const norm = (hf: string, ours: string, perLayer: boolean) => {
    const h = perLayer ? `${n.layer}${hf}` : hf, o = perLayer ? `layers.{i}.${ours}` : ours;
    one(`${h}.weight`, `${o}.weight`, [C], perLayer);
    if (c.norm === "layernorm") one(`${h}.bias`, `${o}.bias`, [C], perLayer);
  };

  one(`${n.embed}.weight`, "embed.weight", [c.vocab_size, C], false);
  if (c.position === "learned" && n.pos_embed) {
    one(`${n.pos_embed}.weight`, "pos_embed.weight", [c.max_position_embeddings, C], false);
  }
  norm(n.attn_norm, "attn_norm", true);
  if (c.qkv_layout === "separate") {
    linear(n.q, ["attn.q"], [qDim], C, c.qkv_bias);
    linear(n.k, ["attn.k"], [kvDim], C, c.qkv_bias);
    linear(n.v, ["attn.v"], [kvDim], C, c.qkv_bias);
  } else {
    linear(n.qkv, ["attn.q", "attn.k", "attn.v"], [qDim, kvDim, kvDim], C, c.qkv_bias);
  }
  linear(n.o, ["attn.o"], [C], qDim, c.o_bias);
  norm(n.mlp_norm, "mlp_norm", true);
  if (c.mlp === "swiglu") {
    if (c.mlp_layout === "fused_gate_up") {
      linear(n.gate_up, ["mlp.gate", "mlp.up"], [I, I], C, c.mlp_bias);
    } else {
      linear(n.gate, ["mlp.gate"], [I], C, c.mlp_bias);
      linear(n.up, ["mlp.up"], [I], C, c.mlp_bias);
    }
  } else {
    linear(n.up, ["mlp.up"], [I], C, c.mlp_bias);
  }
  linear(n.down, ["mlp.down"], [C], I, c.mlp_bias);
  norm(n.final_norm, "final_norm", false);
  if (!c.tie_word_embeddings) one(`${n.lm_head}.weight`, "lm_head.weight", [c.vocab_size, C], false);
  if (c.lm_head_bias) one(`${n.lm_head}.bias`, "lm_head.bias", [c.vocab_size], false);

  const ignored = n.ignored_per_layer.map((s) => `${n.layer}${s}`);
  // Some writers store the tied head as well; it is the embedding, so it is skipped.
  if (c.tie_word_embeddings) ignored.push(`${n.lm_head}.weight`);
  return {
    arch: c.arch,
    base_model_prefix: n.base_model_prefix,
    entries,
    ignored,
    tied_lm_head: c.tie_word_embeddings ? "embed.weight" : null,
  };
}

/**
 * Transpose a row-major `[rows, cols]` matrix in place (cycle-following with a visited bitset of
 * n / 8 bytes): element `p = r * cols + c` moves to `c * rows + r = p * rows mod (n - 1)`.
 * Applies the key map's `transpose` (GPT-2's Conv1D weights) so loading and saving need no second copy of the matrix.
 */
export function transposeInPlace(a: Float32Array | Float16Array, rows: number, cols: number): void {
  const n = rows * cols;
  if (rows === 1 || cols === 1) return;
  if (rows === cols) {
    for (let r = 0; r < rows; r++) {
      for (let c = r + 1; c < cols; c++) {
        const t = a[r * cols + c];
        a[r * cols + c] = a[c * cols + r];
        a[c * cols + r] = t;
      }
    }
    return;
  }
  const seen = new Uint8Array((n + 7) >> 3);
  for (let s = 1; s < n - 1; s++) {
    if (seen[s >> 3] & (1 << (s & 7))) continue;
    let p = s, v = a[s];
    do {
      const q = (p * rows) % (n - 1);
      const t = a[q];
      a[q] = v;
      v = t;
      seen[p >> 3] |= 1 << (p & 7);
      p = q;
    } while (p !== s);
  }
}
