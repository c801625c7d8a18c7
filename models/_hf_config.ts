/**
 * Private: Hugging Face `config.json` <-> `ModelConfig` for llama, mistral, qwen2, phi3 and gpt2.
 * Defaults are those of the transformers 4.47 config classes (`configuration_<family>.py`).
 * @module
 */
import type { HiddenAct, ModelArch, ModelConfig, RopeScaling } from "./config_types.ts";
import { closest, isObject, Problems, show } from "../util/problems.ts";

/** The HF class each family saves as (`architectures[0]`). */
const HF_CLASS: Record<ModelArch, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  phi3: "Phi3ForCausalLM",
  gpt2: "GPT2LMHeadModel",
};

/** Written as `transformers_version`: the release whose config classes the defaults come from. */
const TRANSFORMERS_VERSION = "4.47.0";

/**
 * `PretrainedConfig` attributes that steer generation, heads for other tasks or bookkeeping, never
 * the decoder's weights or math: accepted and dropped here (the generation ones are read by
 * `loadGenerationConfig` when the folder has no generation_config.json, as HF's from_model_config).
 */
// deno-fmt-ignore
const BOOKKEEPING = new Set([
  "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "use_cache", "_name_or_path",
  "auto_map", "return_dict", "output_hidden_states", "output_attentions", "torchscript",
  "use_bfloat16", "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder",
  "is_decoder", "cross_attention_hidden_size", "tie_encoder_decoder", "finetuning_task", "id2label",
  "label2id", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
  "task_specific_params", "problem_type", "max_length", "min_length", "do_sample", "early_stopping",
  "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
  "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
  "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
  "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
  "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
  "_attn_implementation_autoset", "attn_implementation", "gradient_checkpointing",
]);

/** Per-family keys that carry no architecture (accepted and dropped). */
// deno-fmt-ignore
const FAMILY_BOOKKEEPING: Record<ModelArch, string[]> = {
  // pretraining_tp > 1 only slices the matmuls differently (same math up to rounding).
  llama: ["pretraining_tp"],
  mistral: [],
  qwen2: [],
  phi3: [],
  // Heads of GPT2DoubleHeadsModel, and a legacy alias of n_positions that HF ignores.
  gpt2: [
    "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
    "summary_first_dropout", "n_ctx", "reorder_and_upcast_attn",
  ],
};

/** Reads typed values from the JSON, remembering which keys were used and every problem. */
class Reader {
  readonly used = new Set<string>();
  /** @param ropeKey what the file calls rope scaling, for messages (transformers 5: rope_parameters) */
  constructor(
    readonly json: Record<string, unknown>,
    readonly p: Problems,
    readonly ropeKey: "rope_scaling" | "rope_parameters" = "rope_scaling",
  ) {}

  private raw(key: string, dflt: unknown): unknown {
    this.used.add(key);
    return Object.hasOwn(this.json, key) ? this.json[key] : dflt;
  }
  has(key: string): boolean {
    return Object.hasOwn(this.json, key);
  }
  int(key: string, dflt: number): number {
    const v = this.raw(key, dflt);
    if (typeof v === "number" && Number.isSafeInteger(v)) return v;
    this.p.type(key, `expected an integer, got ${show(v)}`);
    return dflt;
  }
  intOrNull(key: string, dflt: number | null): number | null {
    const v = this.raw(key, dflt);
    if (v === null || (typeof v === "number" && Number.isSafeInteger(v))) return v as number | null;
    this.p.type(key, `expected an integer or null, got ${show(v)}`);
    return dflt;
  }
  num(key: string, dflt: number): number {
    const v = this.raw(key, dflt);
    if (typeof v === "number" && Number.isFinite(v)) return v;
    this.p.type(key, `expected a number, got ${show(v)}`);
    return dflt;
  }
  bool(key: string, dflt: boolean): boolean {
    const v = this.raw(key, dflt);
    if (typeof v === "boolean") return v;
    this.p.type(key, `expected true or false, got ${show(v)}`);
    return dflt;
  }
  str(key: string, dflt: string): string {
    const v = this.raw(key, dflt);
    if (typeof v === "string") return v;
    this.p.type(key, `expected a string, got ${show(v)}`);
    return dflt;
  }
  /** A token id, a list of ids (eos only) or null. */
  token(key: string, dflt: number | null, list = false): number | number[] | null {
    const v = this.raw(key, dflt);
    const isId = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x);
    if (v === null || isId(v)) return v as number | null;
    if (list && Array.isArray(v) && v.length > 0 && v.every(isId)) return [...v] as number[];
    this.p.type(key, `expected a token id${list ? " or a list of ids" : ""} or null, got ${show(v)}`);
    return dflt;
  }
  /** Require a fixed value (an option fledge does not implement otherwise). */
  fixed(key: string, dflt: unknown, want: unknown, why: string): void {
    const v = this.raw(key, dflt);
    if (v !== want) this.p.range(key, `unsupported value ${show(v)}: ${why}; set it to ${show(want)}`);
  }
}

const GELU_ACTS: Record<string, HiddenAct> = {
  gelu_new: "gelu_new",
  gelu_pytorch_tanh: "gelu_pytorch_tanh",
  gelu: "gelu",
  relu: "relu",
  silu: "silu",
  swish: "silu",
};

function act(r: Reader, key: string, dflt: string): HiddenAct {
  const s = r.str(key, dflt);
  const a = GELU_ACTS[s];
  if (a) return a;
  r.p.range(key, `unsupported activation ${show(s)}; use one of ${Object.keys(GELU_ACTS).join(", ")}`);
  return dflt as HiddenAct;
}

/** `rope_scaling` of the llama-style families: null, `default`, `linear` or `llama3`. */
function ropeScaling(r: Reader, arch: ModelArch): RopeScaling | null {
  // messages name what the file holds: rope_parameters in a transformers 5 config
  const key = r.ropeKey, v5 = key === "rope_parameters";
  const v = r.has("rope_scaling") ? r.json.rope_scaling : null;
  r.used.add("rope_scaling");
  if (v === null) return null;
  if (!isObject(v)) {
    r.p.type(key, `expected null or an object, got ${show(v)}`);
    return null;
  }
  const type = v.rope_type ?? v.type;
  if (arch === "phi3") {
    r.p.range(
      `${key}.type`,
      `unsupported rope_scaling ${show(type)} for phi3 (longrope/su scaling is not implemented); ` +
        `use a checkpoint with rope_scaling null (e.g. Phi-3-mini-4k)`,
    );
    return null;
  }
  if (type === "default") return null;
  if (type !== "llama3" && type !== "linear") {
    // dynamic (NTK) changes nothing within the trained positions; yarn and the others change every
    // position's rotation (and yarn the attention scale), so removing them changes the logits
    const drop = v5
      ? 'set rope_parameters\' rope_type to "default" and drop its scaling fields (keep rope_theta)'
      : `remove ${key}`;
    const fix = type === "dynamic"
      ? `${drop} to run within the original max_position_embeddings, where HF's dynamic scaling changes nothing`
      : `use a checkpoint without it (removing it would change every logit)`;
    r.p.range(
      `${key}.rope_type`,
      `unsupported rope scaling ${show(type)}; fledge implements "llama3" and "linear"; ${fix}`,
    );
    return null;
  }
  const keys = type === "llama3"
    ? ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"]
    : ["factor"];
  for (const k of Object.keys(v)) {
    if (k !== "type" && k !== "rope_type" && !keys.includes(k)) {
      r.p.range(`${key}.${k}`, `unsupported key for rope_type "${type}": ${show(v[k])}; remove it`);
    }
  }
  const out: Record<string, unknown> = { rope_type: type };
  for (const k of keys) {
    if (typeof v[k] !== "number") r.p.type(`${key}.${k}`, `expected a number, got ${show(v[k])}`);
    out[k] = v[k];
  }
  return out as unknown as RopeScaling;
}

/** The llama-style families' shared keys and their HF class defaults. */
// deno-fmt-ignore
const LLAMA_LIKE_DEFAULTS: Record<Exclude<ModelArch, "gpt2">, Record<string, number | null>> = {
  llama: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    bos: 1,
    eos: 2,
    pad: null,
  },
  mistral: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-6,
    bos: 1,
    eos: 2,
    pad: null,
  },
  qwen2: {
    vocab_size: 151936,
    hidden_size: 4096,
    intermediate_size: 22016,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    bos: null,
    eos: null,
    pad: null,
  },
  phi3: {
    vocab_size: 32064,
    hidden_size: 3072,
    intermediate_size: 8192,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    bos: 1,
    eos: 32000,
    pad: 32000,
  },
};

/**
 * `partial_rotary_factor`: Phi-3's rotary embedding rotates that share of each head; Llama's, Mistral's
 * and Qwen2's rotate all of it in transformers 5 (the factor unread) and fail on it in 4.x, so a
 * factor other than 1 there has no HF result to match.
 */
function partialRotary(r: Reader, arch: Exclude<ModelArch, "gpt2">): number {
  const f = r.num("partial_rotary_factor", 1);
  if (arch !== "phi3" && f !== 1) {
    r.p.range(
      "partial_rotary_factor",
      `${f} is read by phi3 only: HF's ${arch} rotates every dimension of a head (transformers 5 ` +
        `ignores the key, 4.x fails on it); remove it`,
    );
    return 1;
  }
  return f;
}

/**
 * The attention of each layer from transformers 5's `layer_types` ("full_attention" /
 * "sliding_attention"), which decides over `use_sliding_window` / `max_window_layers`: the window,
 * null for none, or undefined when the key is absent. Mixed layers are refused.
 */
function layerTypes(r: Reader, layers: number, arch: ModelArch): number | null | undefined {
  if (!r.has("layer_types")) return undefined;
  const v = r.json.layer_types;
  r.used.add("layer_types");
  const kinds = ["full_attention", "sliding_attention"];
  if (!Array.isArray(v) || v.length !== layers || v.some((t) => !kinds.includes(t as string))) {
    r.p.type(
      "layer_types",
      `expected ${layers} entries (num_hidden_layers) of "full_attention" or "sliding_attention", got ${
        show(v)
      }`,
    );
    return undefined;
  }
  if (new Set(v).size > 1) {
    r.p.range(
      "layer_types",
      `mixes sliding and full attention layers, which fledge does not implement; use a checkpoint whose ` +
        `layers all attend the same way`,
    );
    return undefined;
  }
  if (v[0] === "sliding_attention" && arch === "llama") {
    r.p.range(
      "layer_types",
      `"sliding_attention" is not read by HF's llama, which always attends in full; use "full_attention"`,
    );
    return undefined;
  }
  return v[0] === "sliding_attention" ? r.intOrNull("sliding_window", 4096) : null;
}

function llamaLike(r: Reader, arch: Exclude<ModelArch, "gpt2">): Partial<ModelConfig> {
  const d = LLAMA_LIKE_DEFAULTS[arch];
  const heads = r.int("num_attention_heads", d.num_attention_heads!);
  const hidden = r.int("hidden_size", d.hidden_size!);
  const c: Partial<ModelConfig> = {
    arch,
    vocab_size: r.int("vocab_size", d.vocab_size!),
    hidden_size: hidden,
    intermediate_size: r.int("intermediate_size", d.intermediate_size!),
    num_hidden_layers: r.int("num_hidden_layers", d.num_hidden_layers!),
    num_attention_heads: heads,
    // HF: num_key_value_heads None -> num_attention_heads.
    num_key_value_heads: r.intOrNull("num_key_value_heads", d.num_key_value_heads ?? null) ?? heads,
    max_position_embeddings: r.int("max_position_embeddings", d.max_position_embeddings!),
    norm: "rmsnorm",
    norm_eps: r.num("rms_norm_eps", d.rms_norm_eps!),
    position: "rope",
    rope_theta: r.num("rope_theta", 10000),
    rope_scaling: ropeScaling(r, arch),
    partial_rotary_factor: partialRotary(r, arch),
    rope_interleaved: false,
    original_max_position_embeddings: null,
    mlp: "swiglu",
    hidden_act: act(r, "hidden_act", "silu"),
    qkv_bias: false,
    o_bias: false,
    mlp_bias: false,
    lm_head_bias: false,
    tie_word_embeddings: r.bool("tie_word_embeddings", false),
    sliding_window: null,
    attention_dropout: r.num("attention_dropout", 0),
    resid_pdrop: 0,
    embd_pdrop: 0,
    initializer_range: r.num("initializer_range", 0.02),
    bos_token_id: r.token("bos_token_id", d.bos) as number | null,
    eos_token_id: r.token("eos_token_id", d.eos, true),
    pad_token_id: r.token("pad_token_id", d.pad) as number | null,
    qkv_layout: "separate",
    mlp_layout: "separate",
  };
  const headDim = r.intOrNull("head_dim", null);
  if (headDim !== null) c.head_dim = headDim;
  if (arch === "llama") {
    c.qkv_bias = c.o_bias = r.bool("attention_bias", false);
    c.mlp_bias = r.bool("mlp_bias", false);
  } else if (arch === "mistral") {
    c.sliding_window = r.intOrNull("sliding_window", 4096);
  } else if (arch === "qwen2") {
    c.qkv_bias = true;
    const layers = c.num_hidden_layers!;
    const use = r.bool("use_sliding_window", false);
    const window = r.intOrNull("sliding_window", 4096);
    const maxWindowLayers = r.int("max_window_layers", 28);
    r.fixed("use_mrope", false, false, "multimodal rope (Qwen2-VL) is not implemented");
    // HF Qwen2: layers with index >= max_window_layers use the window (when use_sliding_window).
    if (use && window !== null && maxWindowLayers < layers) {
      if (maxWindowLayers !== 0) {
        r.p.range(
          "max_window_layers",
          `${maxWindowLayers} gives a mix of sliding and full attention layers, which fledge does not ` +
            `implement; use 0 (every layer slides) or >= num_hidden_layers ${layers}`,
        );
      }
      c.sliding_window = window;
    }
  } else {
    c.qkv_layout = "fused_phi3";
    c.mlp_layout = "fused_gate_up";
    c.original_max_position_embeddings = r.int("original_max_position_embeddings", 4096);
    c.embd_pdrop = r.num("embd_pdrop", 0);
    c.resid_pdrop = r.num("resid_pdrop", 0);
    c.sliding_window = r.intOrNull("sliding_window", null);
  }
  const byLayer = layerTypes(r, c.num_hidden_layers!, arch);
  if (byLayer !== undefined) c.sliding_window = byLayer;
  return c;
}

/**
 * A transformers 5 config's `rope_parameters` ({rope_theta, rope_type, its scaling fields,
 * partial_rotary_factor}) as the 4.x keys it replaces (`rope_theta`, `rope_scaling`,
 * `partial_rotary_factor`), which the readers above take; a file with both forms is refused.
 */
function fromRopeParameters(obj: Record<string, unknown>, p: Problems): Record<string, unknown> {
  const rp = obj.rope_parameters;
  if (!("rope_parameters" in obj)) return obj;
  const { rope_parameters: _, ...rest } = obj;
  if (rp === null) return rest;
  if (!isObject(rp)) {
    p.type("rope_parameters", `expected an object of rope_theta, rope_type, ..., got ${show(rp)}`);
    return rest;
  }
  const old = ["rope_theta", "rope_scaling", "partial_rotary_factor"].filter((k) => k in obj);
  if (old.length) {
    p.range(
      "rope_parameters",
      `is given with ${old.join(", ")}, which it replaces (transformers 5); keep one form`,
    );
    return rest;
  }
  const { rope_theta, partial_rotary_factor, ...scaling } = rp;
  const out: Record<string, unknown> = { ...rest };
  if (rope_theta !== undefined) out.rope_theta = rope_theta;
  if (partial_rotary_factor !== undefined) out.partial_rotary_factor = partial_rotary_factor;
  const type = scaling.rope_type ?? scaling.type;
  out.rope_scaling = type === undefined || type === "default" ? null : scaling;
  return out;
}

function gpt2(r: Reader): Partial<ModelConfig> {
  const hidden = r.int("n_embd", 768);
  r.fixed("scale_attn_weights", true, true, "GPT-2 attention without 1/sqrt(head_dim) is not implemented");
  r.fixed("scale_attn_by_inverse_layer_idx", false, false, "per-layer attention scaling is not implemented");
  r.fixed("add_cross_attention", false, false, "cross-attention is not part of a decoder-only LM");
  return {
    arch: "gpt2",
    vocab_size: r.int("vocab_size", 50257),
    hidden_size: hidden,
    num_hidden_layers: r.int("n_layer", 12),
    num_attention_heads: r.int("n_head", 12),
    // HF: n_inner None -> 4 * n_embd.
    intermediate_size: r.intOrNull("n_inner", null) ?? 4 * hidden,
    max_position_embeddings: r.int("n_positions", 1024),
    norm: "layernorm",
    norm_eps: r.num("layer_norm_epsilon", 1e-5),
    position: "learned",
    rope_scaling: null,
    original_max_position_embeddings: null,
    mlp: "gelu",
    hidden_act: act(r, "activation_function", "gelu_new"),
    qkv_bias: true,
    o_bias: true,
    mlp_bias: true,
    lm_head_bias: false,
    // PretrainedConfig default; save_pretrained omits it when true.
    tie_word_embeddings: r.bool("tie_word_embeddings", true),
    sliding_window: null,
    attention_dropout: r.num("attn_pdrop", 0.1),
    resid_pdrop: r.num("resid_pdrop", 0.1),
    embd_pdrop: r.num("embd_pdrop", 0.1),
    initializer_range: r.num("initializer_range", 0.02),
    bos_token_id: r.token("bos_token_id", 50256) as number | null,
    eos_token_id: r.token("eos_token_id", 50256, true),
    pad_token_id: r.token("pad_token_id", null) as number | null,
    qkv_layout: "fused_gpt2_conv1d",
    mlp_layout: "separate",
  };
}

/** HF JSON -> an unvalidated `ModelConfig` candidate; throws listing every mapping problem. */
export function hfToModelConfig(json: unknown, file: string): Partial<ModelConfig> {
  const p = new Problems();
  const what = "Cannot map Hugging Face config";
  if (!isObject(json)) {
    p.type("(root)", `expected a JSON object, got ${show(json)}`);
    p.throwIfAny(what, file);
  }
  const obj = json as Record<string, unknown>;
  const type = obj.model_type;
  if (typeof type !== "string" || !Object.hasOwn(HF_CLASS, type)) {
    const hint = typeof type === "string" ? closest(type, Object.keys(HF_CLASS)) : undefined;
    throw new RangeError(
      `${what} in ${file}: unsupported model_type ${show(type)}; fledge maps ` +
        `${Object.keys(HF_CLASS).join(", ")}${hint ? ` (did you mean "${hint}"?)` : ""}`,
    );
  }
  const arch = type as ModelArch;
  const r = new Reader(
    fromRopeParameters(obj, p),
    p,
    "rope_parameters" in obj ? "rope_parameters" : "rope_scaling",
  );
  if ("quantization_config" in obj) {
    p.range(
      "quantization_config",
      "pre-quantized checkpoints are not supported; use the unquantized weights",
    );
    r.used.add("quantization_config");
  }
  const c = arch === "gpt2" ? gpt2(r) : llamaLike(r, arch);
  const known = new Set([...BOOKKEEPING, ...FAMILY_BOOKKEEPING[arch]]);
  for (const k of Object.keys(r.json)) {
    if (!r.used.has(k) && !known.has(k)) {
      p.type(
        k,
        `unknown key for model_type "${arch}" (value ${show(r.json[k])}); fledge does not ` +
          `implement it: remove it if it has no effect, or use a supported checkpoint`,
      );
    }
  }
  p.throwIfAny(what, file);
  return c;
}

/** Sort keys as `save_pretrained` does (`json.dumps(sort_keys=True)`). */
function sorted(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

/** A validated `ModelConfig` -> HF `config.json` object. */
export function modelConfigToHf(c: ModelConfig, torchDtype: string): Record<string, unknown> {
  if (c.rope_interleaved) {
    throw new RangeError(
      `Cannot write a Hugging Face config for arch "${c.arch}": rope_interleaved is true, but HF ` +
        `rotates halves; permute the q/k rows to the rotate_half layout and set rope_interleaved false`,
    );
  }
  if (c.partial_rotary_factor !== 1 && c.arch !== "phi3" && c.position === "rope") {
    // the file would load in HF with every dimension rotated (transformers 5) or fail (4.x)
    throw new RangeError(
      `Cannot write a Hugging Face config for arch "${c.arch}": partial_rotary_factor ` +
        `${c.partial_rotary_factor} is read by HF's phi3 only; its ${c.arch} rotates the whole head`,
    );
  }
  const common = {
    architectures: [HF_CLASS[c.arch]],
    model_type: c.arch,
    torch_dtype: torchDtype,
    transformers_version: TRANSFORMERS_VERSION,
    use_cache: true,
    vocab_size: c.vocab_size,
    initializer_range: c.initializer_range,
    bos_token_id: c.bos_token_id,
    eos_token_id: c.eos_token_id,
    pad_token_id: c.pad_token_id,
  };
  if (c.arch === "gpt2") {
    const o: Record<string, unknown> = {
      ...common,
      activation_function: c.hidden_act,
      n_embd: c.hidden_size,
      n_head: c.num_attention_heads,
      n_inner: c.intermediate_size,
      n_layer: c.num_hidden_layers,
      n_positions: c.max_position_embeddings,
      layer_norm_epsilon: c.norm_eps,
      attn_pdrop: c.attention_dropout,
      embd_pdrop: c.embd_pdrop,
      resid_pdrop: c.resid_pdrop,
    };
    if (!c.tie_word_embeddings) o.tie_word_embeddings = false;
    return sorted(o);
  }
  const o: Record<string, unknown> = {
    ...common,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    max_position_embeddings: c.max_position_embeddings,
    hidden_act: c.hidden_act,
    rms_norm_eps: c.norm_eps,
    rope_theta: c.rope_theta,
    rope_scaling: c.rope_scaling && { ...c.rope_scaling },
    attention_dropout: c.attention_dropout,
    tie_word_embeddings: c.tie_word_embeddings,
  };
  if (c.partial_rotary_factor !== 1) o.partial_rotary_factor = c.partial_rotary_factor;
  if (c.arch === "llama" || c.arch === "mistral") o.head_dim = c.head_dim;
  if (c.arch === "llama") {
    o.attention_bias = c.qkv_bias;
    o.mlp_bias = c.mlp_bias;
    o.pretraining_tp = 1;
  } else if (c.arch === "mistral") {
    o.sliding_window = c.sliding_window;
  } else if (c.arch === "qwen2") {
    o.use_sliding_window = c.sliding_window !== null;
    o.sliding_window = c.sliding_window;
    o.max_window_layers = c.sliding_window === null ? 28 : 0;
  } else {
    o.original_max_position_embeddings = c.original_max_position_embeddings;
    o.embd_pdrop = c.embd_pdrop;
    o.resid_pdrop = c.resid_pdrop;
    o.sliding_window = c.sliding_window;
  }
  return sorted(o);
}
