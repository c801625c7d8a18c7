/**
 * The types of `ModelConfig` (every architectural choice of the one decoder-only transformer, as
 * plain data) and of the checkpoint key map. Plain types with no imports, so `config.ts` and its
 * helpers (`_config_rules.ts`, `_hf_config.ts`, `_key_map.ts`) share them without an import
 * circle; `config.ts` re-exports them with the defaults, validation, presets and mappers.
 * @module
 */

/** Checkpoint family: picks the Hugging Face class, `model_type` and parameter names. */
export type ModelArch = "llama" | "mistral" | "qwen2" | "phi3" | "gpt2";
/** Normalization: LayerNorm (weight and bias) or RMSNorm (weight only). */
export type NormKind = "layernorm" | "rmsnorm";
/** Position encoding: a learned table added to the embeddings, or rotary embeddings in attention. */
export type PositionKind = "learned" | "rope";
/** MLP: `gelu` = up, act, down; `swiglu` = act(gate) * up, down. */
export type MlpKind = "gelu" | "swiglu";
/** Activation, by its Hugging Face `ACT2FN` name (`gelu_new` = `gelu_pytorch_tanh`, the tanh form). */
export type HiddenAct = "gelu_new" | "gelu_pytorch_tanh" | "gelu" | "relu" | "silu";
/** How q, k and v are stored in the checkpoint: three matrices, phi3's fused rows, or GPT-2's fused Conv1D. */
export type QkvLayout = "separate" | "fused_phi3" | "fused_gpt2_conv1d";
/** How the gated MLP's gate and up are stored: two matrices or phi3's fused `gate_up_proj`. */
export type MlpLayout = "separate" | "fused_gate_up";

/** Llama 3 rope scaling (HF `_compute_llama3_parameters`): long wavelengths divided by `factor`, smooth between. */
export interface Llama3RopeScaling {
  /** Discriminant: HF `rope_scaling.rope_type` (or legacy `type`). */
  rope_type: "llama3";
  /** Divisor of the inverse frequencies whose wavelength exceeds `original_max_position_embeddings / low_freq_factor` (8 for Llama 3.1). */
  factor: number;
  /** Wavelengths above `original_max_position_embeddings / low_freq_factor` are fully scaled (1 for Llama 3.1). */
  low_freq_factor: number;
  /** Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept; must exceed low_freq_factor (4 for Llama 3.1). */
  high_freq_factor: number;
  /** Context length the model was pretrained at, in tokens (8192 for Llama 3.1). */
  original_max_position_embeddings: number;
}

/** Linear rope scaling (position interpolation): every inverse frequency divided by `factor`. */
export interface LinearRopeScaling {
  /** Discriminant: HF `rope_scaling.rope_type` (or legacy `type`). */
  rope_type: "linear";
  /** Divisor of every inverse frequency: positions are compressed by this much (> 0). */
  factor: number;
}

/** The supported rope scalings. Others (yarn, dynamic, longrope) are refused at the boundary. */
export type RopeScaling = Llama3RopeScaling | LinearRopeScaling;

/** Every architectural choice of a decoder-only transformer. */
export interface ModelConfig {
  /** Checkpoint family (HF class and parameter names). */
  arch: ModelArch;
  /** Rows of the token embedding and logits per position; every token id must be below it. */
  vocab_size: number;
  /** Width of the residual stream (GPT-2's `n_embd`). */
  hidden_size: number;
  /** Number of decoder blocks (GPT-2's `n_layer`). */
  num_hidden_layers: number;
  /** Query heads per attention layer (GPT-2's `n_head`). */
  num_attention_heads: number;
  /** Key/value heads (GQA); equal to `num_attention_heads` for plain multi-head attention. */
  num_key_value_heads: number;
  /** Per-head width; `hidden_size / num_attention_heads` unless the family allows another. */
  head_dim: number;
  /** MLP inner width (GPT-2's `n_inner`). */
  intermediate_size: number;
  /** Longest sequence (GPT-2's `n_positions`). */
  max_position_embeddings: number;
  /** LayerNorm or RMSNorm, for every block norm and the final norm. */
  norm: NormKind;
  /** `rms_norm_eps` / `layer_norm_epsilon`. */
  norm_eps: number;
  /** Learned absolute position table (GPT-2) or rotary embeddings (the others). */
  position: PositionKind;
  /** Rope base θ of the inverse frequencies `θ^(-2i/dim)`; ignored without rope (10000 default, 500000 for Llama 3). */
  rope_theta: number;
  /** Context-extension scaling of the rope frequencies; null = none. */
  rope_scaling: RopeScaling | null;
  /** Fraction of `head_dim` that is rotated (the rest passes through). */
  partial_rotary_factor: number;
  /** Rotate adjacent pairs (GPT-J / Meta layout) instead of halves (HF `rotate_half`). */
  rope_interleaved: boolean;
  /** phi3's `original_max_position_embeddings` (kept for the round trip); null for other families. */
  original_max_position_embeddings: number | null;
  /** MLP shape: plain (up, act, down) or gated SwiGLU; `swiglu` requires `hidden_act: "silu"`. */
  mlp: MlpKind;
  /** The MLP activation (the gate's for `swiglu`). */
  hidden_act: HiddenAct;
  /** Bias on the q, k, v projections. */
  qkv_bias: boolean;
  /** Bias on the attention output projection. */
  o_bias: boolean;
  /** Biases on the MLP projections. */
  mlp_bias: boolean;
  /** Bias `[vocab_size]` on the LM head; no supported family has one, so validation requires false. */
  lm_head_bias: boolean;
  /** The LM head reuses the token embedding matrix. */
  tie_word_embeddings: boolean;
  /** Attend to at most this many previous positions; null = full causal attention. */
  sliding_window: number | null;
  /** Dropout on attention probabilities (GPT-2's `attn_pdrop`). */
  attention_dropout: number;
  /** Dropout on each residual branch output. */
  resid_pdrop: number;
  /** Dropout on the embedding output. */
  embd_pdrop: number;
  /** Std of the normal init of weight matrices. */
  initializer_range: number;
  /** Beginning-of-sequence token id (saved to `config.json`, default of generation configs); null = none. */
  bos_token_id: number | null;
  /** One id or several (Llama 3 instruct lists three). */
  eos_token_id: number | number[] | null;
  /** Padding token id (generation pads finished and left-padded rows with it); null = none. */
  pad_token_id: number | null;
  /** How the checkpoint stores q, k and v (fused for phi3 and GPT-2); only the key map reads it. */
  qkv_layout: QkvLayout;
  /** How the checkpoint stores the gated MLP's gate and up (fused for phi3); only the key map reads it. */
  mlp_layout: MlpLayout;
}

/** One row of {@linkcode checkpointKeyMap}: a Hugging Face tensor and the canonical tensor(s) it holds. */
export interface KeyMapEntry {
  /** HF parameter name; `{i}` stands for the layer index when `per_layer`. */
  hf: string;
  /** Canonical name(s); several when the HF tensor is a fused one that is split by rows. */
  ours: string[];
  /** Repeated for each layer (names contain `{i}`). */
  per_layer: boolean;
  /** Shape of the HF tensor, e.g. `[out, in]` for `nn.Linear`, `[in, out]` for GPT-2's Conv1D. */
  hf_shape: number[];
  /** The HF tensor is stored `[in, out]` (Conv1D): transpose to `[out, in]` before splitting. */
  transpose: boolean;
  /** Row counts of each piece in `ours` (after transposing), or null when not fused. */
  split_rows: number[] | null;
}

/** How a family's Hugging Face checkpoint names map to fledge's canonical parameter names. */
export interface CheckpointKeyMap {
  /** The family the names belong to. */
  arch: ModelArch;
  /** HF's `base_model_prefix` (`model` / `transformer`): some checkpoints omit it. */
  base_model_prefix: string;
  /** Every parameter, in module order. Canonical layout of matrices: `[out, in]`. */
  entries: KeyMapEntry[];
  /** HF buffers that may be present and carry no parameters (e.g. GPT-2's `attn.bias` mask). */
  ignored: string[];
  /** The canonical name the LM head shares with, when tied (`embed.weight`), else null. */
  tied_lm_head: string | null;
}
