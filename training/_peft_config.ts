/**
 * Private: the resolved adapter config of `peft.ts` (PEFT `LoraConfig` names), its validation
 * (every problem at once, with the file and key) and the `adapter_config.json` PEFT writes.
 * @module
 */
import { closest, isObject, Problems, show } from "../util/problems.ts";
import type { ModelArch } from "../models/config.ts";
import type { LoraConfig } from "./config.ts";
import { LORA_HINTS } from "./_config_schema.ts";

/** A validated LoRA adapter config: PEFT `LoraConfig` fields fledge implements. */
export interface PeftConfig extends Omit<LoraConfig, "target_modules"> {
  /** Module names (`q_proj`, or a path suffix), `"all-linear"`, or a regular expression over module paths. */
  target_modules: string[] | string;
  /** The base weight is stored `[in, out]` (GPT-2 Conv1D); PEFT sets it for such modules. */
  fan_in_fan_out: boolean;
  /** Written into `adapter_config.json` (the base model id or folder); null when unknown. */
  base_model_name_or_path: string | null;
}

/** PEFT's default targets per architecture (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`). */
export const DEFAULT_TARGETS: Readonly<Record<ModelArch, readonly string[]>> = Object.freeze({
  llama: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
  phi3: ["qkv_proj"],
  gpt2: ["c_attn"],
});

/** PEFT `adapter_config.json` keys that fledge accepts only at their default (unset) value. */
const PEFT_DEFAULTS: Record<string, unknown> = {
  alpha_pattern: {},
  rank_pattern: {},
  auto_mapping: null,
  eva_config: null,
  exclude_modules: null,
  layer_replication: null,
  layers_pattern: null,
  layers_to_transform: null,
  loftq_config: {},
  lora_bias: false,
  megatron_config: null,
  megatron_core: "megatron.core",
  revision: null,
  corda_config: null,
  trainable_token_indices: null,
  use_qalora: false,
  qalora_group_size: 16,
  runtime_config: null,
  target_parameters: null,
  ensure_weight_tying: false,
  layers_to_transform_pattern: null,
};
/** Keys that carry no meaning for the adapter's math. */
const INFORMATIONAL = new Set(["inference_mode", "peft_version", "arrow_config", "alora_invocation_tokens"]);

const FIELDS = [
  "r",
  "lora_alpha",
  "lora_dropout",
  "target_modules",
  "bias",
  "use_dora",
  "use_rslora",
  "modules_to_save",
  "init_lora_weights",
  "task_type",
  "fan_in_fan_out",
  "base_model_name_or_path",
  "peft_type",
] as const;

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Validate a LoRA config (a TS object or a parsed `adapter_config.json`); missing keys take PEFT's
 * defaults (`r` 8, `lora_alpha` 8, targets per architecture). Lists every problem at once.
 * @throws {TypeError} for a wrong kind of value, {@linkcode RangeError} for an unsupported value
 */
export function validatePeftConfig(obj: unknown, arch: ModelArch, where: string): PeftConfig {
  const p = new Problems();
  if (!isObject(obj)) {
    p.type("(root)", `expected a mapping of PEFT LoraConfig fields, got ${show(obj)}`);
    p.throwIfAny("Cannot read the LoRA config", where);
  }
  const o = obj as Record<string, unknown>;
  for (const [k, v] of Object.entries(o)) {
    if ((FIELDS as readonly string[]).includes(k) || INFORMATIONAL.has(k)) continue;
    if (k in PEFT_DEFAULTS) {
      // an empty exclude_modules excludes nothing in PEFT (`if config.exclude_modules:`); an empty
      // layers_to_transform would select no layer there, so it stays refused
      const empty = isObject(v) && !Object.keys(v).length || k === "exclude_modules" && sameJson(v, []);
      if (!sameJson(v, PEFT_DEFAULTS[k]) && v !== null && !empty) {
        p.range(
          k,
          `PEFT's ${k} is not supported by fledge: ${show(v)}; remove it (default ${show(PEFT_DEFAULTS[k])})`,
        );
      }
      continue;
    }
    const c = LORA_HINTS[k] ?? closest(k, FIELDS); // other tools' names first (rank -> r)
    p.type(k, `unknown LoraConfig key${c ? `; did you mean ${c}?` : ""}`);
  }
  const num = (k: string, def: number, ok: (x: number) => boolean, rule: string): number => {
    const v = o[k] ?? def;
    if (typeof v !== "number" || !Number.isFinite(v)) p.type(k, `expected a number, got ${show(v)}`);
    else if (!ok(v)) p.range(k, `${rule}, got ${v}`);
    return v as number;
  };
  const bool = (k: string, def: boolean): boolean => {
    const v = o[k] ?? def;
    if (typeof v !== "boolean") p.type(k, `expected true or false, got ${show(v)}`);
    return v as boolean;
  };
  const r = num("r", 8, (x) => Number.isInteger(x) && x >= 1, "must be a positive integer");
  const lora_alpha = num("lora_alpha", 8, (x) => x > 0, "must be > 0");
  const lora_dropout = num("lora_dropout", 0, (x) => x >= 0 && x < 1, "must be in [0, 1)");
  let target_modules: string[] | string = [...(DEFAULT_TARGETS[arch] ?? [])];
  const tm = o.target_modules;
  // PEFT compares the shorthand lower-cased ("ALL-LINEAR" is all-linear); other strings are regexes
  if (typeof tm === "string") target_modules = tm.toLowerCase() === "all-linear" ? "all-linear" : tm;
  else if (Array.isArray(tm) && tm.every((t) => typeof t === "string" && t.length > 0)) {
    if (!tm.length) p.range("target_modules", `must name at least one module, e.g. ["q_proj", "v_proj"]`);
    target_modules = [...tm];
  } else if (tm !== undefined && tm !== null) {
    p.type(
      "target_modules",
      `expected a list of module names, a regular expression or "all-linear", got ${show(tm)}`,
    );
  }
  const bias = o.bias ?? "none";
  if (bias !== "none" && bias !== "all" && bias !== "lora_only") {
    p.range("bias", `expected "none", "all" or "lora_only", got ${show(bias)}`);
  }
  const use_dora = bool("use_dora", false), use_rslora = bool("use_rslora", false);
  const fan_in_fan_out = bool("fan_in_fan_out", false);
  const save = o.modules_to_save ?? null;
  if (
    save !== null &&
    !(Array.isArray(save) && save.length > 0 && save.every((x) => typeof x === "string" && x.trim() !== ""))
  ) {
    p.type(
      "modules_to_save",
      `expected a list of module names such as ["lm_head"], or null, got ${show(save)}`,
    );
  }
  const init = o.init_lora_weights ?? true;
  if (init !== true && init !== false && init !== "gaussian") {
    p.range("init_lora_weights", `expected true, false or "gaussian", got ${show(init)}`);
  }
  const task_type = o.task_type ?? null;
  if (task_type !== null && task_type !== "CAUSAL_LM") {
    p.range("task_type", `fledge adapts causal LMs: expected "CAUSAL_LM" or null, got ${show(task_type)}`);
  }
  if (o.peft_type !== undefined && o.peft_type !== "LORA") {
    p.range("peft_type", `only "LORA" adapters (LoRA, DoRA) are supported, got ${show(o.peft_type)}`);
  }
  const base = o.base_model_name_or_path ?? null;
  if (base !== null && typeof base !== "string") {
    p.type("base_model_name_or_path", `expected a string, got ${show(base)}`);
  }
  p.throwIfAny("Cannot read the LoRA config", where);
  return {
    r,
    lora_alpha,
    lora_dropout,
    target_modules,
    bias,
    use_dora,
    use_rslora,
    modules_to_save: save === null ? null : [...save as string[]],
    init_lora_weights: init as boolean | "gaussian",
    task_type: task_type as "CAUSAL_LM" | null,
    fan_in_fan_out,
    base_model_name_or_path: (base as string | null) || null,
  } as PeftConfig;
}

/** The `adapter_config.json` PEFT 0.14 writes for this config (keys sorted, as `save_pretrained`). */
export function adapterConfigJson(c: PeftConfig): string {
  const out: Record<string, unknown> = {
    ...PEFT_DEFAULTS,
    base_model_name_or_path: c.base_model_name_or_path ?? "",
    bias: c.bias,
    fan_in_fan_out: c.fan_in_fan_out,
    inference_mode: true,
    init_lora_weights: c.init_lora_weights,
    lora_alpha: c.lora_alpha,
    lora_dropout: c.lora_dropout,
    modules_to_save: c.modules_to_save,
    peft_type: "LORA",
    r: c.r,
    target_modules: c.target_modules,
    task_type: c.task_type ?? "CAUSAL_LM",
    use_dora: c.use_dora,
    use_rslora: c.use_rslora,
  };
  // Keys PEFT 0.14 does not know stay out, so older PEFT versions load the file.
  for (
    const k of [
      "corda_config",
      "trainable_token_indices",
      "use_qalora",
      "qalora_group_size",
      "runtime_config",
      "target_parameters",
      "ensure_weight_tying",
      "layers_to_transform_pattern",
    ]
  ) delete out[k];
  const sorted = Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
  // Python writes float fields with a fraction (`0.0`).
  return JSON.stringify(sorted, null, 2).replace(/("lora_dropout": -?\d+)(,?\n)/, "$1.0$2");
}
