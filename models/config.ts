/**
 * `ModelConfig`: every architectural choice of the one decoder-only transformer, as plain data.
 * Field names follow Hugging Face `config.json` where HF has one. This file holds the interface,
 * the frozen defaults, {@linkcode validateModelConfig}, the presets, parameter and FLOP counts and
 * the rope frequencies; the Hugging Face mappers and the checkpoint key map are exported here too
 * (their tables live in `_hf_config.ts` and `_key_map.ts`).
 * @module
 */
import { ropeInvFreq } from "../kernels/rope.ts";
import { closest, isObject, Problems, show } from "../util/problems.ts";
import { checkConsistency, checkField, SPECS } from "./_config_rules.ts";
import { hfToModelConfig, modelConfigToHf } from "./_hf_config.ts";
import { buildKeyMap } from "./_key_map.ts";
import type {
  CheckpointKeyMap,
  HiddenAct,
  KeyMapEntry,
  LinearRopeScaling,
  Llama3RopeScaling,
  MlpKind,
  MlpLayout,
  ModelArch,
  ModelConfig,
  NormKind,
  PositionKind,
  QkvLayout,
  RopeScaling,
} from "./config_types.ts";

export type {
  CheckpointKeyMap,
  HiddenAct,
  KeyMapEntry,
  LinearRopeScaling,
  Llama3RopeScaling,
  MlpKind,
  MlpLayout,
  ModelArch,
  ModelConfig,
  NormKind,
  PositionKind,
  QkvLayout,
  RopeScaling,
};

/**
 * Defaults for keys missing from a config given to {@linkcode validateModelConfig}: a tiny Llama-style
 * model (RMSNorm, rope, SwiGLU). `head_dim` and `num_key_value_heads`, when missing, are derived
 * from the given sizes instead (as HF does).
 */
export const DEFAULT_MODEL_CONFIG: Readonly<ModelConfig> = Object.freeze(
  {
    arch: "llama",
    vocab_size: 512,
    hidden_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    head_dim: 32,
    intermediate_size: 384,
    max_position_embeddings: 128,
    norm: "rmsnorm",
    norm_eps: 1e-5,
    position: "rope",
    rope_theta: 10000,
    rope_scaling: null,
    partial_rotary_factor: 1,
    rope_interleaved: false,
    original_max_position_embeddings: null,
    mlp: "swiglu",
    hidden_act: "silu",
    qkv_bias: false,
    o_bias: false,
    mlp_bias: false,
    lm_head_bias: false,
    tie_word_embeddings: true,
    sliding_window: null,
    attention_dropout: 0,
    resid_pdrop: 0,
    embd_pdrop: 0,
    initializer_range: 0.02,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    qkv_layout: "separate",
    mlp_layout: "separate",
  } as const,
);

/** The keys of {@linkcode ModelConfig}, in declaration order. */
export const MODEL_CONFIG_KEYS: readonly (keyof ModelConfig)[] = Object.freeze(
  Object.keys(SPECS) as (keyof ModelConfig)[],
);

/**
 * Check an untrusted object (parsed YAML/JSON, CLI overrides) and return a complete
 * {@linkcode ModelConfig}. Missing keys take {@linkcode DEFAULT_MODEL_CONFIG} (`head_dim` =
 * hidden_size / num_attention_heads and `num_key_value_heads` = num_attention_heads when missing).
 * Every problem is listed in one error: unknown keys, wrong types, sizes that do not divide, GQA
 * groups, token ids outside the vocabulary, choices the `arch`'s Hugging Face class cannot express.
 *
 * @param obj the candidate config
 * @param opts `source`: where it came from, named in the error (file or "presetConfig(tiny)")
 * @returns a fresh, complete config
 * @throws {TypeError} when a key is unknown or a value has the wrong type (with any range problems)
 * @throws {RangeError} when values have the right types but are out of range or inconsistent
 *
 * @example
 * ```ts
 * import { validateModelConfig } from "./config.ts";
 * const c = validateModelConfig({ hidden_size: 256, num_attention_heads: 8 }, { source: "example" });
 * if (c.head_dim !== 32 || c.num_key_value_heads !== 8) throw new Error("derived sizes");
 * try {
 *   validateModelConfig({ hiden_size: 1, num_attention_heads: "4" }, { source: "my.yaml" });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof TypeError) || !/2 problems/.test(e.message)) throw e;
 * }
 * ```
 */
export function validateModelConfig(obj: unknown, opts: { source: string }): ModelConfig {
  const p = new Problems();
  const what = "Invalid model config";
  if (!isObject(obj)) {
    p.type("(root)", `expected an object of ModelConfig fields, got ${show(obj)}`);
    p.throwIfAny(what, opts.source);
  }
  const o = obj as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(k in SPECS)) {
      const hint = closest(k, MODEL_CONFIG_KEYS);
      p.type(
        k,
        `unknown key${hint ? `; did you mean "${hint}"?` : ""} (remove it or use a ModelConfig field)`,
      );
    }
  }
  const c = { ...DEFAULT_MODEL_CONFIG } as Record<string, unknown>;
  for (const k of MODEL_CONFIG_KEYS) if (o[k] !== undefined) c[k] = o[k];
  const ints = (...ks: string[]) => ks.every((k) => Number.isSafeInteger(c[k]) && (c[k] as number) > 0);
  if (o.head_dim === undefined && ints("hidden_size", "num_attention_heads")) {
    c.head_dim = (c.hidden_size as number) / (c.num_attention_heads as number);
    if (!Number.isInteger(c.head_dim)) {
      p.range(
        "hidden_size",
        `${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}; ` +
          `change one or set head_dim`,
      );
      c.head_dim = DEFAULT_MODEL_CONFIG.head_dim;
    }
  }
  if (o.num_key_value_heads === undefined && ints("num_attention_heads")) {
    c.num_key_value_heads = c.num_attention_heads;
  }
  for (const k of MODEL_CONFIG_KEYS) checkField(p, k, c[k], SPECS[k]);
  if (p.list.length === 0) checkConsistency(p, c as unknown as ModelConfig);
  p.throwIfAny(what, opts.source);
  const out = c as unknown as ModelConfig;
  if (out.rope_scaling) out.rope_scaling = { ...out.rope_scaling };
  if (Array.isArray(out.eos_token_id)) out.eos_token_id = [...out.eos_token_id];
  return out;
}

/** Names accepted by {@linkcode presetConfig}. */
export type PresetName = "tiny" | "small" | "gpt2-124m" | "llama-1b-shape";

/** The presets: frozen, complete configs. */
export const PRESETS: Readonly<Record<PresetName, Readonly<ModelConfig>>> = Object.freeze(
  {
    // Trains in minutes on a CPU WebGPU adapter (about 0.46M parameters).
    tiny: Object.freeze({ ...DEFAULT_MODEL_CONFIG }),
    // About 13.8M parameters: 6 layers of width 384, a byte-level BPE vocabulary of 8192.
    small: Object.freeze({
      ...DEFAULT_MODEL_CONFIG,
      vocab_size: 8192,
      hidden_size: 384,
      num_hidden_layers: 6,
      num_attention_heads: 6,
      num_key_value_heads: 6,
      head_dim: 64,
      intermediate_size: 1024,
      max_position_embeddings: 512,
    }),
    // openai-community/gpt2 exactly (124,439,808 parameters).
    "gpt2-124m": Object.freeze({
      ...DEFAULT_MODEL_CONFIG,
      arch: "gpt2",
      vocab_size: 50257,
      hidden_size: 768,
      num_hidden_layers: 12,
      num_attention_heads: 12,
      num_key_value_heads: 12,
      head_dim: 64,
      intermediate_size: 3072,
      max_position_embeddings: 1024,
      norm: "layernorm",
      norm_eps: 1e-5,
      position: "learned",
      mlp: "gelu",
      hidden_act: "gelu_new",
      qkv_bias: true,
      o_bias: true,
      mlp_bias: true,
      attention_dropout: 0.1,
      resid_pdrop: 0.1,
      embd_pdrop: 0.1,
      bos_token_id: 50256,
      eos_token_id: 50256,
      pad_token_id: null,
      qkv_layout: "fused_gpt2_conv1d",
    }),
    // meta-llama/Llama-3.2-1B shapes (1,235,814,400 parameters).
    "llama-1b-shape": Object.freeze({
      ...DEFAULT_MODEL_CONFIG,
      vocab_size: 128256,
      hidden_size: 2048,
      num_hidden_layers: 16,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 64,
      intermediate_size: 8192,
      max_position_embeddings: 131072,
      norm_eps: 1e-5,
      rope_theta: 500000,
      rope_scaling: Object.freeze({
        rope_type: "llama3",
        factor: 32,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      }) as Llama3RopeScaling,
      bos_token_id: 128000,
      eos_token_id: 128001,
      pad_token_id: null,
    }),
  } as const,
);

/**
 * A config with a tokenizer's special token ids: its `bos_token_id`, `eos_token_id` and
 * `pad_token_id` where the tokenizer has them, the config's own where it has none. A preset's ids
 * (`tiny`: bos 1, eos 2, pad 0) name nothing in a tokenizer trained for it; a model built for that
 * tokenizer takes these, so that generation stops at the end-of-text token its documents were
 * separated by, and the saved `config.json` and `generation_config.json` say so.
 *
 * @example
 * ```ts
 * import { presetConfig, withTokenIds } from "./config.ts";
 * const c = withTokenIds(presetConfig("tiny"), { bos_token_id: 0, eos_token_id: 0, pad_token_id: null });
 * if (c.eos_token_id !== 0 || c.bos_token_id !== 0 || c.pad_token_id !== 0) throw new Error("ids");
 * ```
 */
export function withTokenIds(
  config: ModelConfig,
  tokenizer: {
    readonly bos_token_id: number | null;
    readonly eos_token_id: number | null;
    readonly pad_token_id: number | null;
  },
): ModelConfig {
  return {
    ...config,
    bos_token_id: tokenizer.bos_token_id ?? config.bos_token_id,
    eos_token_id: tokenizer.eos_token_id ?? config.eos_token_id,
    pad_token_id: tokenizer.pad_token_id ?? config.pad_token_id,
  };
}

/**
 * A preset with overrides, validated. When the overrides change `hidden_size` or
 * `num_attention_heads` without giving `head_dim` (or `num_key_value_heads`), those follow
 * (`head_dim` = hidden_size / heads; kv heads = heads when the preset had no GQA). Its special
 * token ids are the preset's: for a model of your own tokenizer, take the tokenizer's with
 * {@linkcode withTokenIds}.
 *
 * @param name one of {@linkcode PresetName}
 * @param overrides fields to replace (unknown keys are errors)
 * @returns a fresh, complete config
 * @throws {RangeError} for an unknown preset name; the errors of {@linkcode validateModelConfig}
 *
 * @example
 * ```ts
 * import { countParameters, presetConfig } from "./config.ts";
 * if (countParameters(presetConfig("gpt2-124m")) !== 124_439_808) throw new Error("gpt2");
 * const c = presetConfig("tiny", { hidden_size: 256, num_hidden_layers: 4 });
 * if (c.head_dim !== 64) throw new Error("head_dim follows");
 * ```
 */
export function presetConfig(name: PresetName, overrides: Partial<ModelConfig> = {}): ModelConfig {
  const base = (PRESETS as Record<string, Readonly<ModelConfig>>)[name];
  if (!base || !Object.hasOwn(PRESETS, name)) {
    const hint = closest(String(name), Object.keys(PRESETS));
    throw new RangeError(
      `Unknown model preset: ${show(name)}; use one of ${Object.keys(PRESETS).join(", ")}` +
        (hint ? ` (did you mean "${hint}"?)` : ""),
    );
  }
  const merged: Record<string, unknown> = { ...base, ...overrides };
  const resized = overrides.hidden_size !== undefined || overrides.num_attention_heads !== undefined;
  if (resized && overrides.head_dim === undefined) delete merged.head_dim;
  if (
    overrides.num_attention_heads !== undefined && overrides.num_key_value_heads === undefined &&
    base.num_key_value_heads === base.num_attention_heads
  ) delete merged.num_key_value_heads;
  return validateModelConfig(merged, { source: `presetConfig("${name}")` });
}

/**
 * The exact number of parameters, counting a tied embedding once. Equals the element total of
 * the family's Hugging Face checkpoint (GPT-2 small: 124,439,808; Llama 3.2 1B: 1,235,814,400).
 *
 * @param config a validated config
 * @returns the parameter count
 *
 * @example
 * ```ts
 * import { countParameters, presetConfig } from "./config.ts";
 * if (countParameters(presetConfig("llama-1b-shape")) !== 1_235_814_400) throw new Error("count");
 * ```
 */
export function countParameters(config: ModelConfig): number {
  const c = config, C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const qDim = c.num_attention_heads * c.head_dim, kvDim = c.num_key_value_heads * c.head_dim;
  const norm = c.norm === "layernorm" ? 2 * C : C;
  const attn = C * (qDim + 2 * kvDim) + (c.qkv_bias ? qDim + 2 * kvDim : 0) + qDim * C +
    (c.o_bias ? C : 0);
  const mlp = c.mlp === "swiglu"
    ? 3 * C * I + (c.mlp_bias ? 2 * I + C : 0)
    : 2 * C * I + (c.mlp_bias ? I + C : 0);
  const layer = 2 * norm + attn + mlp;
  const embed = V * C + (c.position === "learned" ? c.max_position_embeddings * C : 0);
  const head = (c.tie_word_embeddings ? 0 : V * C) + (c.lm_head_bias ? V : 0);
  return embed + c.num_hidden_layers * layer + norm + head;
}

/**
 * Training FLOPs per token (forward + backward) for a sequence of `seq_len` tokens, as in the
 * PaLM paper (appendix B) and nanoGPT's `estimate_mfu`:
 *
 *   flops = 6 * N + 12 * L * n_heads * head_dim * T
 *
 * `N` counts the parameters that take part in a matmul per token: all of them except the
 * position table and, when untied, the input embedding (a lookup); the LM head is counted once.
 * The second term is the attention scores and the weighted sum (`QK^T` and `AV`, 2 matmuls x
 * 2 FLOPs x 3 for forward + backward), with `T = min(seq_len, sliding_window)` and no causal
 * halving (as PaLM and nanoGPT). Inference is a third of this.
 *
 * @param config a validated config
 * @param seq_len tokens per sequence
 * @returns FLOPs per token
 * @throws {RangeError} when seq_len is not a positive integer
 *
 * @example
 * ```ts
 * import { flopsPerToken, presetConfig } from "./config.ts";
 * const f = flopsPerToken(presetConfig("gpt2-124m"), 1024);
 * // 6 * (124,439,808 - 786,432 position params) + 12 * 12 * 12 * 64 * 1024
 * if (f !== 855_166_464) throw new Error(String(f));
 * ```
 */
export function flopsPerToken(config: ModelConfig, seq_len: number): number {
  if (!Number.isSafeInteger(seq_len) || seq_len < 1) {
    throw new RangeError(`Cannot estimate FLOPs per token: seq_len must be a positive integer: ${seq_len}`);
  }
  const c = config;
  const lookups = (c.position === "learned" ? c.max_position_embeddings * c.hidden_size : 0) +
    (c.tie_word_embeddings ? 0 : c.vocab_size * c.hidden_size);
  const N = countParameters(c) - lookups;
  const T = c.sliding_window === null ? seq_len : Math.min(seq_len, c.sliding_window);
  return 6 * N + 12 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * T;
}

/**
 * Rotary inverse frequencies for a config, in float32 exactly as Hugging Face's
 * `ROPE_INIT_FUNCTIONS` compute them (`modeling_rope_utils.py`): the default
 * `1 / theta ** (arange(0, dim, 2) / dim)` with `dim = head_dim * partial_rotary_factor`, then
 * `linear` (divide by factor) or `llama3` (`_compute_llama3_parameters`: wavelengths above
 * `original / low_freq_factor` divided by factor, below `original / high_freq_factor` kept, a
 * smooth blend between), each step rounded to f32 as torch does. The attention scaling of both
 * is 1. (Named apart from the kernel's `ropeInvFreq(dim, theta)`, which this builds on.)
 *
 * @param config a validated config with `position: "rope"`
 * @returns f32 `[dim / 2]`
 * @throws {RangeError} when the config has no rotary embeddings
 *
 * @example
 * ```ts
 * import { modelRopeInvFreq, presetConfig } from "./config.ts";
 * const f = modelRopeInvFreq(presetConfig("llama-1b-shape"));
 * if (f.length !== 32 || f[0] !== 1) throw new Error("inv_freq");
 * if (Math.abs(f[31] / (1 / 500000 ** (62 / 64) / 32) - 1) > 1e-6) throw new Error("scaled");
 * ```
 */
export function modelRopeInvFreq(config: ModelConfig): Float32Array {
  if (config.position !== "rope") {
    throw new RangeError(`Cannot compute rope inv_freq: position is "${config.position}", not "rope"`);
  }
  const f = Math.fround;
  const dim = Math.trunc(config.head_dim * config.partial_rotary_factor);
  const inv = ropeInvFreq(dim, config.rope_theta);
  const s = config.rope_scaling;
  if (s === null) return inv;
  const factor = f(s.factor);
  if (s.rope_type === "linear") return inv.map((x) => f(x / factor));
  // torch: `2 * math.pi / inv_freq` is `inv_freq.reciprocal() * 2pi` with the scalar in f32.
  const lowWavelen = f(s.original_max_position_embeddings / s.low_freq_factor);
  const highWavelen = f(s.original_max_position_embeddings / s.high_freq_factor);
  const twoPi = f(2 * Math.PI), old = f(s.original_max_position_embeddings);
  const lo = f(s.low_freq_factor), span = f(s.high_freq_factor - s.low_freq_factor);
  return inv.map((x) => {
    const wavelen = f(f(1 / x) * twoPi);
    const scaled = wavelen > lowWavelen ? f(x / factor) : x;
    if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
    const smooth = f(f(f(f(1 / wavelen) * old) - lo) / span);
    return f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
  });
}

/**
 * Map a Hugging Face `config.json` (llama, mistral, qwen2, phi3, gpt2) to a {@linkcode ModelConfig}.
 * HF defaults fill missing keys (per family class, transformers 4.47). Keys that only steer
 * generation or bookkeeping (`use_cache`, `torch_dtype`, ...) are accepted and dropped; any other
 * unknown key, an unknown `model_type`, or an unsupported option (rope_scaling yarn/dynamic/
 * longrope, Qwen2 mixed sliding layers, GPT-2 attention scaling variants, quantized weights) is an
 * error naming the file, key and value.
 *
 * @param json the parsed `config.json`
 * @param opts `file`: its path, named in errors
 * @returns a validated config
 * @throws {TypeError} for wrong types or unknown keys; {@linkcode validateModelConfig}'s errors
 * @throws {RangeError} for an unsupported `model_type` or option value
 *
 * @example
 * ```ts
 * import { fromHfConfig } from "./config.ts";
 * const c = fromHfConfig({ model_type: "gpt2", n_embd: 64, n_head: 4, n_layer: 2 }, { file: "config.json" });
 * if (c.intermediate_size !== 256 || !c.tie_word_embeddings || c.hidden_act !== "gelu_new") throw new Error();
 * ```
 */
export function fromHfConfig(json: unknown, opts: { file: string }): ModelConfig {
  return validateModelConfig(hfToModelConfig(json, opts.file), { source: opts.file });
}

/**
 * The Hugging Face `config.json` object for a config, as `save_pretrained` writes it
 * (`architectures`, `model_type`, `torch_dtype`, `transformers_version`), so HF loads it unchanged
 * and {@linkcode fromHfConfig} returns the same config. Dropouts the HF class lacks (llama has no
 * residual or embedding dropout) are left out: they only matter while training.
 *
 * @param config a validated config
 * @param opts `torch_dtype` of the weights (default `"float32"`)
 * @returns a JSON-ready object
 * @throws {RangeError} for `rope_interleaved: true` (HF rotates halves; permute q/k rows first)
 *
 * @example
 * ```ts
 * import { fromHfConfig, presetConfig, toHfConfig } from "./config.ts";
 * const hf = toHfConfig(presetConfig("gpt2-124m"));
 * if (hf.model_type !== "gpt2" || hf.n_embd !== 768) throw new Error("gpt2");
 * const back = fromHfConfig(hf, { file: "config.json" });
 * if (back.vocab_size !== 50257) throw new Error("round trip");
 * ```
 */
export function toHfConfig(
  config: ModelConfig,
  opts: { torch_dtype?: "float32" | "float16" | "bfloat16" } = {},
): Record<string, unknown> {
  return modelConfigToHf(config, opts.torch_dtype ?? "float32");
}

/**
 * The checkpoint key map for a config: one data table per family (HF names for embeddings, norms,
 * attention, MLP, head), with rows present according to the config's biases, layouts, position
 * kind and tying. Canonical names: `embed.weight`, `pos_embed.weight`,
 * `layers.{i}.attn_norm.{weight,bias}`, `layers.{i}.attn.{q,k,v,o}.{weight,bias}`,
 * `layers.{i}.mlp_norm.*`, `layers.{i}.mlp.{gate,up,down}.{weight,bias}`, `final_norm.*`,
 * `lm_head.{weight,bias}`.
 *
 * @param config a validated config
 * @returns plain data (JSON-serializable)
 *
 * @example
 * ```ts
 * import { checkpointKeyMap, presetConfig } from "./config.ts";
 * const m = checkpointKeyMap(presetConfig("gpt2-124m"));
 * const qkv = m.entries.find((e) => e.hf === "transformer.h.{i}.attn.c_attn.weight")!;
 * if (!qkv.transpose || qkv.split_rows?.join() !== "768,768,768") throw new Error("c_attn");
 * ```
 */
export function checkpointKeyMap(config: ModelConfig): CheckpointKeyMap {
  return buildKeyMap(config);
}
