/**
 * Private: the field specs and cross-field rules behind `validateModelConfig` in `config.ts`,
 * including what each family's Hugging Face class can express (`ARCH_RULES`).
 * @module
 */
import type {
  HiddenAct,
  MlpKind,
  MlpLayout,
  ModelArch,
  ModelConfig,
  NormKind,
  PositionKind,
  QkvLayout,
} from "./config_types.ts";
import { isObject, type Problems, show } from "../util/problems.ts";

type Spec =
  | { t: "int"; min: number; nullable?: boolean }
  | { t: "num"; min: number; max?: number; open?: "min" | "max"; nullable?: boolean }
  | { t: "bool" }
  | { t: "enum"; values: readonly string[] }
  | { t: "rope_scaling" }
  | { t: "token"; list?: boolean };

const ACTS: readonly HiddenAct[] = ["gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu"];
export const SPECS: Record<keyof ModelConfig, Spec> = {
  arch: { t: "enum", values: ["llama", "mistral", "qwen2", "phi3", "gpt2"] },
  vocab_size: { t: "int", min: 1 },
  hidden_size: { t: "int", min: 1 },
  num_hidden_layers: { t: "int", min: 1 },
  num_attention_heads: { t: "int", min: 1 },
  num_key_value_heads: { t: "int", min: 1 },
  head_dim: { t: "int", min: 1 },
  intermediate_size: { t: "int", min: 1 },
  max_position_embeddings: { t: "int", min: 1 },
  norm: { t: "enum", values: ["layernorm", "rmsnorm"] },
  norm_eps: { t: "num", min: 0, open: "min" },
  position: { t: "enum", values: ["learned", "rope"] },
  rope_theta: { t: "num", min: 0, open: "min" },
  rope_scaling: { t: "rope_scaling" },
  partial_rotary_factor: { t: "num", min: 0, max: 1, open: "min" },
  rope_interleaved: { t: "bool" },
  original_max_position_embeddings: { t: "int", min: 1, nullable: true },
  mlp: { t: "enum", values: ["gelu", "swiglu"] },
  hidden_act: { t: "enum", values: ACTS },
  qkv_bias: { t: "bool" },
  o_bias: { t: "bool" },
  mlp_bias: { t: "bool" },
  lm_head_bias: { t: "bool" },
  tie_word_embeddings: { t: "bool" },
  sliding_window: { t: "int", min: 1, nullable: true },
  attention_dropout: { t: "num", min: 0, max: 1, open: "max" },
  resid_pdrop: { t: "num", min: 0, max: 1, open: "max" },
  embd_pdrop: { t: "num", min: 0, max: 1, open: "max" },
  initializer_range: { t: "num", min: 0 },
  bos_token_id: { t: "token" },
  eos_token_id: { t: "token", list: true },
  pad_token_id: { t: "token" },
  qkv_layout: { t: "enum", values: ["separate", "fused_phi3", "fused_gpt2_conv1d"] },
  mlp_layout: { t: "enum", values: ["separate", "fused_gate_up"] },
};

/**
 * What each family's Hugging Face class can express. A config outside these rules could not be
 * saved as that family's `config.json` + weights, so it is refused (set `arch` or the field).
 */
const ARCH_RULES: Record<ModelArch, {
  norm: NormKind;
  position: PositionKind;
  mlp: MlpKind;
  qkv_layout: QkvLayout;
  mlp_layout: MlpLayout;
  /** Fixed bias flags; absent = free. */
  bias: Partial<Record<"qkv_bias" | "o_bias" | "mlp_bias", boolean>>;
  /** `head_dim` may differ from hidden_size / num_attention_heads. */
  free_head_dim: boolean;
  sliding_window: boolean;
  rope_scaling: boolean;
}> = {
  llama: {
    norm: "rmsnorm",
    position: "rope",
    mlp: "swiglu",
    qkv_layout: "separate",
    mlp_layout: "separate",
    bias: {},
    free_head_dim: true,
    sliding_window: false,
    rope_scaling: true,
  },
  mistral: {
    norm: "rmsnorm",
    position: "rope",
    mlp: "swiglu",
    qkv_layout: "separate",
    mlp_layout: "separate",
    bias: { qkv_bias: false, o_bias: false, mlp_bias: false },
    free_head_dim: true,
    sliding_window: true,
    rope_scaling: true,
  },
  qwen2: {
    norm: "rmsnorm",
    position: "rope",
    mlp: "swiglu",
    qkv_layout: "separate",
    mlp_layout: "separate",
    bias: { qkv_bias: true, o_bias: false, mlp_bias: false },
    free_head_dim: false,
    sliding_window: true,
    rope_scaling: true,
  },
  phi3: {
    norm: "rmsnorm",
    position: "rope",
    mlp: "swiglu",
    qkv_layout: "fused_phi3",
    mlp_layout: "fused_gate_up",
    bias: { qkv_bias: false, o_bias: false, mlp_bias: false },
    free_head_dim: false,
    sliding_window: true,
    rope_scaling: false,
  },
  gpt2: {
    norm: "layernorm",
    position: "learned",
    mlp: "gelu",
    qkv_layout: "fused_gpt2_conv1d",
    mlp_layout: "separate",
    bias: { qkv_bias: true, o_bias: true, mlp_bias: true },
    free_head_dim: false,
    sliding_window: false,
    rope_scaling: false,
  },
};

export function checkField(p: Problems, key: string, v: unknown, spec: Spec): void {
  const isInt = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x);
  switch (spec.t) {
    case "int":
      if (v === null && spec.nullable) return;
      if (!isInt(v)) {
        p.type(key, `expected an integer${spec.nullable ? " or null" : ""}, got ${show(v)}`);
      } else if ((v as number) < spec.min) p.range(key, `must be >= ${spec.min}, got ${v}`);
      return;
    case "num": {
      if (v === null && spec.nullable) return;
      if (typeof v !== "number" || !Number.isFinite(v)) {
        p.type(key, `expected a finite number, got ${show(v)}`);
        return;
      }
      const lo = spec.open === "min" ? v > spec.min : v >= spec.min;
      const hi = spec.max === undefined || (spec.open === "max" ? v < spec.max : v <= spec.max);
      if (!lo || !hi) {
        const l = `${spec.open === "min" ? "(" : "["}${spec.min}`;
        const h = `${spec.max ?? "inf"}${spec.open === "max" || spec.max === undefined ? ")" : "]"}`;
        p.range(key, `must be in ${l}, ${h}, got ${v}`);
      }
      return;
    }
    case "bool":
      if (typeof v !== "boolean") p.type(key, `expected true or false, got ${show(v)}`);
      return;
    case "enum":
      if (typeof v !== "string" || !spec.values.includes(v)) {
        p.type(key, `expected one of ${spec.values.map((s) => `"${s}"`).join(", ")}, got ${show(v)}`);
      }
      return;
    case "token":
      if (v === null) return;
      if (spec.list && Array.isArray(v) && v.length > 0 && v.every(isInt)) return;
      if (!isInt(v)) {
        p.type(
          key,
          `expected a token id${spec.list ? ", a non-empty list of ids" : ""} or null, got ${show(v)}`,
        );
      }
      return;
    case "rope_scaling":
      checkRopeScaling(p, key, v);
      return;
  }
}

const SCALING_KEYS = {
  llama3: ["rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
  linear: ["rope_type", "factor"],
} as const;

function checkRopeScaling(p: Problems, key: string, v: unknown): void {
  if (v === null) return;
  if (!isObject(v)) {
    p.type(key, `expected null or an object with rope_type "llama3" or "linear", got ${show(v)}`);
    return;
  }
  const kind = v.rope_type;
  if (kind !== "llama3" && kind !== "linear") {
    p.type(`${key}.rope_type`, `expected "llama3" or "linear", got ${show(kind)}`);
    return;
  }
  const allowed: readonly string[] = SCALING_KEYS[kind];
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) p.type(`${key}.${k}`, `unknown key for rope_type "${kind}"; remove it`);
  }
  for (const k of allowed.slice(1)) {
    const x = v[k];
    if (typeof x !== "number" || !Number.isFinite(x)) {
      p.type(`${key}.${k}`, `expected a number, got ${show(x)}`);
    }
  }
  if (typeof v.factor === "number" && !(v.factor >= 1)) {
    p.range(`${key}.factor`, `must be >= 1 (HF rope validation), got ${v.factor}`);
  }
  if (kind === "llama3") {
    const { low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: o } = v;
    if (typeof lo === "number" && typeof hi === "number" && !(hi > lo && lo > 0)) {
      p.range(`${key}.high_freq_factor`, `must exceed low_freq_factor > 0, got low ${lo}, high ${hi}`);
    }
    if (typeof o === "number" && !(Number.isSafeInteger(o) && o > 0)) {
      p.range(`${key}.original_max_position_embeddings`, `must be a positive integer, got ${o}`);
    }
  }
}

export function checkConsistency(p: Problems, c: ModelConfig): void {
  const H = c.num_attention_heads;
  if (H % c.num_key_value_heads !== 0) {
    p.range(
      "num_key_value_heads",
      `num_attention_heads ${H} is not a multiple of num_key_value_heads ${c.num_key_value_heads}`,
    );
  }
  const rules = ARCH_RULES[c.arch];
  if (!rules.free_head_dim) {
    if (c.hidden_size % H !== 0) {
      p.range("hidden_size", `${c.hidden_size} is not divisible by num_attention_heads ${H}`);
    } else if (c.head_dim !== c.hidden_size / H) {
      p.range(
        "head_dim",
        `arch "${c.arch}" needs head_dim = hidden_size / num_attention_heads = ${c.hidden_size / H}, ` +
          `got ${c.head_dim}`,
      );
    }
  }
  for (const k of ["norm", "position", "mlp", "qkv_layout", "mlp_layout"] as const) {
    if (c[k] !== rules[k]) {
      p.range(k, `arch "${c.arch}" needs ${k} "${rules[k]}", got "${c[k]}" (change ${k} or arch)`);
    }
  }
  for (const [k, want] of Object.entries(rules.bias) as ["qkv_bias" | "o_bias" | "mlp_bias", boolean][]) {
    if (c[k] !== want) p.range(k, `arch "${c.arch}" needs ${k} ${want}, got ${c[k]}`);
  }
  if (c.arch === "llama" && c.qkv_bias !== c.o_bias) {
    p.range("o_bias", `arch "llama" has one attention_bias for q, k, v and o: qkv_bias ${c.qkv_bias}`);
  }
  if (c.lm_head_bias) p.range("lm_head_bias", `arch "${c.arch}" has no LM head bias; set it to false`);
  if (c.sliding_window !== null && !rules.sliding_window) {
    p.range("sliding_window", `arch "${c.arch}" has no sliding window; set it to null or use "mistral"`);
  }
  if (c.rope_scaling !== null && (!rules.rope_scaling || c.position !== "rope")) {
    p.range("rope_scaling", `arch "${c.arch}" supports no rope_scaling here; set it to null`);
  }
  if (
    c.rope_scaling?.rope_type === "llama3" &&
    c.rope_scaling.original_max_position_embeddings > c.max_position_embeddings
  ) {
    p.range(
      "rope_scaling.original_max_position_embeddings",
      `${c.rope_scaling.original_max_position_embeddings} exceeds max_position_embeddings ${c.max_position_embeddings}`,
    );
  }
  if (c.position === "rope") {
    const rot = c.head_dim * c.partial_rotary_factor;
    if (!Number.isInteger(rot) || rot % 2 !== 0 || rot < 2) {
      p.range(
        "partial_rotary_factor",
        `head_dim ${c.head_dim} * partial_rotary_factor ${c.partial_rotary_factor} = ${rot} must be an even integer >= 2`,
      );
    }
  }
  if ((c.original_max_position_embeddings !== null) !== (c.arch === "phi3")) {
    p.range(
      "original_max_position_embeddings",
      c.arch === "phi3" ? "arch phi3 needs a number (HF default 4096)" : `only phi3 uses it; set it to null`,
    );
  }
  if (c.mlp === "swiglu" && c.hidden_act !== "silu") {
    p.range(
      "hidden_act",
      `"${c.hidden_act}" in the gated MLP (mlp "swiglu": llama, mistral, qwen2, phi3) is not implemented: ` +
        `fledge computes silu(gate) * up only; use hidden_act "silu"`,
    );
  }
  if (c.mlp === "gelu" && c.hidden_act === "silu") {
    p.range(
      "hidden_act",
      `"silu" in GPT-2's MLP (mlp "gelu") is not implemented: fledge offers gelu_new, gelu, ` +
        `gelu_pytorch_tanh and relu there`,
    );
  }
  for (const k of ["bos_token_id", "eos_token_id", "pad_token_id"] as const) {
    const ids = c[k] === null ? [] : ([] as number[]).concat(c[k] as number | number[]);
    for (const id of ids) {
      if (id < 0 || id >= c.vocab_size) {
        p.range(k, `token id ${id} is outside the vocabulary [0, ${c.vocab_size})`);
      }
    }
  }
}
