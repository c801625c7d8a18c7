/**
 * Private to `config.ts`: the body of `validateTrainingConfig`. Field checks come from the specs
 * in `_config_schema.ts`; the rules at the end check fields against each other (HF's
 * `TrainingArguments.__post_init__` rules, plus what fledge cannot do, said plainly).
 * @module
 */
import type { LoraConfig, QuantizationConfig, TrainingConfig } from "./config_types.ts";
import { checkUnknownKeys, checkValue } from "./_config_check.ts";
import { closest, isObject, Problems, show } from "../util/problems.ts";
import {
  ADAMW_ALIASES,
  ALIAS_KEYS,
  HF_INTEGRATIONS,
  LEGACY_KEYS,
  LORA_HINTS,
  LORA_SPECS,
  QUANT_HINTS,
  QUANT_SPECS,
  TOP_HINTS,
  TOP_SPECS,
  UNSUPPORTED_KEYS,
} from "./_config_schema.ts";
import { checkSchedulerKwargs, SCHEDULER_TYPES, type SchedulerType } from "./_schedule_kwargs.ts";
import { MODEL_CONFIG_KEYS, presetConfig, type PresetName, PRESETS, toHfConfig } from "../models/config.ts";

/** What the validator needs besides the object. */
export interface ValidateContext {
  file: string;
  warn: (line: string) => void;
  /** 1-based line of a key path in the source file, when known. */
  line?: (key: string) => number | undefined;
  defaults: Readonly<TrainingConfig>;
  loraDefaults: Readonly<LoraConfig>;
  quantDefaults: Readonly<QuantizationConfig>;
}

const TOP_KEYS = Object.keys(TOP_SPECS);
const WHAT = "see TrainingConfig in training/config.ts for the fields";

/** Validate and resolve; throws one error listing every problem. */
export function validateConfig(obj: unknown, ctx: ValidateContext): TrainingConfig {
  const p = new Problems();
  const what = "Invalid training config";
  if (!isObject(obj)) {
    const empty = obj === null || obj === undefined ? " (is the file empty?)" : "";
    p.type("(root)", `expected a mapping of TrainingConfig fields, got ${show(obj)}${empty}`);
    p.throwIfAny(what, ctx.file, { locate: true });
  }
  const src = migrate(p, obj as Record<string, unknown>, ctx);
  for (const k of Object.keys(src)) {
    if (!Object.hasOwn(UNSUPPORTED_KEYS, k)) continue;
    // at TRL's default (None, False) the field asks for nothing fledge lacks
    if (src[k] !== null && src[k] !== false) p.type(k, `${UNSUPPORTED_KEYS[k]}; remove it`);
    delete src[k];
  }
  if (src.loss_type === "nll" || src.loss_type === "dft") { // TRL SFTConfig's, not the DPO enum's
    p.type(
      "loss_type",
      `${src.loss_type} is TRL SFTConfig's loss_type: fledge's SFT trains with nll, its only loss (remove ` +
        `loss_type), and dft is not implemented; DPO's are sigmoid, hinge and ipo`,
    );
    delete src.loss_type;
  }
  checkUnknownKeys(p, src, TOP_KEYS, { prefix: "", hints: TOP_HINTS, what: WHAT });
  const c: Record<string, unknown> = structuredClone(ctx.defaults);
  for (const k of TOP_KEYS) if (src[k] !== undefined) c[k] = src[k];
  const bad = new Set<string>();
  for (const [k, spec] of Object.entries(TOP_SPECS)) {
    if (spec.kind !== "custom" && !checkValue(p, k, c[k], spec)) bad.add(k);
  }
  checkCustom(p, c, bad, ctx);
  checkRules(p, c as unknown as TrainingConfig, bad, ctx.defaults);
  p.throwIfAny(what, ctx.file, { locate: true, line: ctx.line });
  const out = c as unknown as TrainingConfig;
  const wantsMetric = out.load_best_model_at_end || out.early_stopping_patience !== null ||
    out.save_strategy === "best";
  if (out.metric_for_best_model === null && wantsMetric) out.metric_for_best_model = "loss";
  if (out.greater_is_better === null && out.metric_for_best_model !== null) {
    // HF: higher is better unless the metric's name ends with "loss"; a perplexity is a loss too
    out.greater_is_better = !/(loss|perplexity)$/.test(out.metric_for_best_model);
  }
  return out;
}

/** Rename legacy and alias keys (one warning line each); both names at once is a problem. */
function migrate(p: Problems, o: Record<string, unknown>, ctx: ValidateContext): Record<string, unknown> {
  const out = { ...o };
  // what fledge does anyway: TRL's truncation_mode keep_start, and a loss_type list of one (TRL >= 0.29)
  if (out.truncation_mode === "keep_start") delete out.truncation_mode;
  if (Array.isArray(out.loss_type) && out.loss_type.length === 1) out.loss_type = out.loss_type[0];
  for (const [table, kind] of [[LEGACY_KEYS, "deprecated"], [ALIAS_KEYS, "an alias"]] as const) {
    for (const [old, spec] of Object.entries(table)) {
      const { to, note } = spec;
      const quiet = "quiet" in spec && spec.quiet === true;
      if (!Object.hasOwn(o, old) || o[old] === undefined) continue;
      if (out[to] !== undefined) {
        p.type(old, `both "${old}" and "${to}" are set; keep only ${quiet ? "one of them" : `"${to}"`}`);
        delete out[old]; // one problem, not also an unknown key
        continue;
      }
      if (o[old] === null && to === "max_seq_length") { // TRL's None: no truncation
        p.type(old, `null (no truncation) is not supported: give a length in tokens (default 1024)`);
        delete out[old];
        continue;
      }
      if (!quiet) {
        const where = ctx.line?.(old) !== undefined ? `${ctx.file}:${ctx.line(old)}` : ctx.file;
        ctx.warn(
          `Warning: ${where}: "${old}" is ${kind} (${note}); read as "${to}". Rename it to ${to} in the config.`,
        );
      }
      out[to] = o[old];
      delete out[old];
    }
  }
  return out;
}

function checkCustom(p: Problems, c: Record<string, unknown>, bad: Set<string>, ctx: ValidateContext): void {
  const rfc = c.resume_from_checkpoint;
  if (!(rfc === null || typeof rfc === "boolean" || (typeof rfc === "string" && rfc.trim() !== ""))) {
    p.type(
      "resume_from_checkpoint",
      `expected a checkpoint folder, true (the latest in output_dir) or null, got ${show(rfc)}`,
    );
    bad.add("resume_from_checkpoint");
  }
  c.model_config = checkModelConfig(p, c, bad);
  checkOptim(p, c, bad, ctx);
  checkScheduler(p, c, bad);
  checkStepsOrRatio(p, c, "warmup_steps", 0, bad);
  for (const k of ["logging_steps", "eval_steps", "save_steps"] as const) checkStepsOrRatio(p, c, k, 1, bad);
  c.report_to = checkReportTo(p, c.report_to, bad);
  if (!(c.greater_is_better === null || typeof c.greater_is_better === "boolean")) {
    p.type(
      "greater_is_better",
      `expected true, false or null (derived from metric_for_best_model), got ${show(c.greater_is_better)}`,
    );
    bad.add("greater_is_better");
  }
  c.lora = checkLora(p, c.lora, bad, ctx);
  c.quantization = checkQuant(p, c.quantization, bad, ctx);
}

/**
 * `model_config`: ModelConfig overrides of a preset, checked by building the preset with them
 * (every problem reported under `model_config.<field>`); refused with a checkpoint model.
 */
function checkModelConfig(p: Problems, c: Record<string, unknown>, bad: Set<string>): unknown {
  const v = c.model_config, m = c.model;
  if (v === null) return null;
  if (!isObject(v)) {
    p.type(
      "model_config",
      `expected a mapping of ModelConfig fields reshaping the preset (e.g. {num_hidden_layers: 4, hidden_size: 128}) or null, got ${
        show(v)
      }`,
    );
    bad.add("model_config");
    return v;
  }
  const presets = Object.keys(PRESETS);
  if (typeof m === "string" && !presets.includes(m)) {
    p.range(
      "model_config",
      `reshapes a preset built from scratch, but model "${m}" is a checkpoint (folder or hub id) whose shape is its config.json; ` +
        `remove model_config or set model to a preset (${presets.join(", ")})`,
    );
    bad.add("model_config");
    return v;
  }
  const before = p.list.length;
  if (typeof m !== "string") {
    for (const k of Object.keys(v)) {
      if (!(MODEL_CONFIG_KEYS as readonly string[]).includes(k)) {
        const hint = closest(k, MODEL_CONFIG_KEYS);
        p.type(`model_config.${k}`, `unknown ModelConfig field${hint ? `; did you mean ${hint}?` : ""}`);
      }
    }
  } else {
    try {
      const shaped = presetConfig(m as PresetName, v);
      // a run saves Hugging Face folders (checkpoints, model/): a shape no HF config.json holds would
      // train and then fail at its first save
      try {
        toHfConfig(shaped, { torch_dtype: "float32" });
      } catch (e) {
        if (!(e instanceof RangeError)) throw e;
        p.range(
          "model_config",
          `${
            e.message.replace(/^Cannot write a Hugging Face config for /, "")
          }, and a run saves Hugging Face folders`,
        );
      }
    } catch (e) {
      if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
      // presetConfig lists its problems as "  - key: message" lines under one summary line.
      for (const line of e.message.split("\n").slice(1)) {
        const hit = /^\s*- ([^:]+): (.*)$/.exec(line);
        if (!hit) continue;
        (e instanceof TypeError ? p.type : p.range).call(
          p,
          `model_config.${hit[1]}`,
          `${hit[2]} (preset ${m})`,
        );
      }
    }
  }
  if (p.list.length > before) bad.add("model_config");
  return structuredClone(v);
}

function checkOptim(p: Problems, c: Record<string, unknown>, bad: Set<string>, ctx: ValidateContext): void {
  const v = c.optim;
  if (v === "adamw" || v === "sgd") return;
  if (typeof v === "string" && ADAMW_ALIASES.includes(v)) {
    ctx.warn(
      `Warning: ${ctx.file}: optim "${v}" is HF's name for fledge's "adamw" (torch AdamW); read as "adamw".`,
    );
    c.optim = "adamw";
    return;
  }
  bad.add("optim");
  if (typeof v !== "string") {
    p.type("optim", `expected "adamw" or "sgd", got ${show(v)}`);
    return;
  }
  const hint = closest(v, ["adamw", "sgd"]);
  p.range(
    "optim",
    `fledge implements "adamw" and "sgd", got "${v}"${hint ? `; did you mean "${hint}"?` : ""}` +
      (/8bit|paged|adafactor|lion|galore|apollo|lomo/.test(v)
        ? " (use adamw, with LoRA to save memory)"
        : ""),
  );
}

function checkScheduler(p: Problems, c: Record<string, unknown>, bad: Set<string>): void {
  const t = c.lr_scheduler_type;
  if (t === "reduce_lr_on_plateau") {
    p.range(
      "lr_scheduler_type",
      `"reduce_lr_on_plateau" is not offered (it needs eval metrics inside the schedule); use "cosine" or "linear"`,
    );
    bad.add("lr_scheduler_type");
  } else if (!checkValue(p, "lr_scheduler_type", t, { kind: "enum", values: SCHEDULER_TYPES })) {
    bad.add("lr_scheduler_type");
  }
  if (c.lr_scheduler_kwargs === null) c.lr_scheduler_kwargs = {};
  if (!isObject(c.lr_scheduler_kwargs)) {
    p.type(
      "lr_scheduler_kwargs",
      `expected a mapping (e.g. {num_cycles: 0.5}) or null, got ${show(c.lr_scheduler_kwargs)}`,
    );
    bad.add("lr_scheduler_kwargs");
    return;
  }
  c.lr_scheduler_kwargs = { ...c.lr_scheduler_kwargs };
  if (bad.has("lr_scheduler_type")) return;
  const lr = bad.has("learning_rate") ? undefined : c.learning_rate as number;
  const before = p.list.length;
  checkSchedulerKwargs(p, t as SchedulerType, c.lr_scheduler_kwargs, {
    learningRate: lr,
    prefix: "lr_scheduler_kwargs.",
  });
  if (p.list.length > before) bad.add("lr_scheduler_kwargs");
}

function checkReportTo(p: Problems, v: unknown, bad: Set<string>): unknown {
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
    p.type("report_to", `expected "jsonl", "stdout", "all", "none" or a list of them, got ${show(v)}`);
    bad.add("report_to");
    return v;
  }
  const out = new Set<string>();
  for (const s of list) {
    if (s === "none") continue;
    if (s === "all") ["jsonl", "stdout"].forEach((x) => out.add(x));
    else if (s === "jsonl" || s === "stdout") out.add(s);
    else {
      bad.add("report_to");
      const hf = HF_INTEGRATIONS.includes(s);
      p.range(
        "report_to",
        hf
          ? `fledge has no "${s}" integration; metrics go to output_dir/metrics.jsonl ("jsonl") and stderr ("stdout"); use those, "all" or "none"`
          : `unknown target "${s}"; use "jsonl", "stdout", "all" or "none"`,
      );
    }
  }
  if (list.includes("none") && out.size > 0) {
    p.range("report_to", `"none" cannot be combined with other targets, got ${show(v)}`);
  }
  return ["jsonl", "stdout"].filter((x) => out.has(x));
}

function checkLora(p: Problems, v: unknown, bad: Set<string>, ctx: ValidateContext): unknown {
  if (v === null) return null;
  if (!isObject(v)) {
    p.type(
      "lora",
      `expected a mapping of PEFT LoraConfig fields ({} for PEFT's defaults) or null, got ${show(v)}`,
    );
    bad.add("lora");
    return v;
  }
  const keys = Object.keys(LORA_SPECS);
  checkUnknownKeys(p, v, keys, {
    prefix: "lora.",
    hints: LORA_HINTS,
    what: `LoraConfig fields: ${keys.join(", ")}`,
  });
  const out: Record<string, unknown> = structuredClone(ctx.loraDefaults);
  for (const k of keys) if (v[k] !== undefined) out[k] = structuredClone(v[k]);
  for (const [k, spec] of Object.entries(LORA_SPECS)) {
    if (spec.kind !== "custom" && !checkValue(p, `lora.${k}`, out[k], spec)) bad.add("lora");
  }
  const init = out.init_lora_weights;
  if (!(typeof init === "boolean" || init === "gaussian")) {
    bad.add("lora");
    const peft = typeof init === "string" && /^(pissa|olora|loftq|eva|corda|orthogonal)/.test(init);
    (peft ? p.range : p.type).call(
      p,
      "lora.init_lora_weights",
      peft
        ? `PEFT's "${init}" initialization is not implemented; use true (B = 0, A Kaiming-uniform), "gaussian" or false`
        : `expected true, false or "gaussian", got ${show(init)}`,
    );
  }
  return out;
}

function checkQuant(p: Problems, v: unknown, bad: Set<string>, ctx: ValidateContext): unknown {
  if (v === null) return null;
  if (!isObject(v)) {
    p.type(
      "quantization",
      `expected a mapping such as {load_in_4bit: true, bnb_4bit_quant_type: nf4} or null, got ${show(v)}`,
    );
    bad.add("quantization");
    return v;
  }
  const keys = Object.keys(QUANT_SPECS);
  checkUnknownKeys(p, v, keys, {
    prefix: "quantization.",
    hints: QUANT_HINTS,
    what: `fields: ${keys.join(", ")}`,
  });
  const out: Record<string, unknown> = { ...ctx.quantDefaults };
  for (const k of keys) if (v[k] !== undefined) out[k] = v[k];
  for (const [k, spec] of Object.entries(QUANT_SPECS)) {
    if (spec.kind !== "custom" && !checkValue(p, `quantization.${k}`, out[k], spec)) bad.add("quantization");
  }
  const dt = out.bnb_4bit_compute_dtype;
  if (dt !== "float32" && dt !== "float16") {
    bad.add("quantization");
    const key = "quantization.bnb_4bit_compute_dtype";
    if (dt === "bfloat16" || dt === "torch.bfloat16") {
      p.range(key, `WebGPU has no bfloat16; use "float16" (needs shader-f16) or "float32"`);
    } else if (dt === "torch.float16" || dt === "torch.float32") {
      p.range(key, `write "${dt.slice(6)}" (a dtype name, without "torch.")`);
    } else p.type(key, `expected "float32" or "float16", got ${show(dt)}`);
  }
  return out;
}

/** Cross-field rules; each runs only when the fields it reads are well typed. */
function checkRules(p: Problems, c: TrainingConfig, bad: Set<string>, d: Readonly<TrainingConfig>): void {
  const ok = (...ks: string[]) => ks.every((k) => !bad.has(k));
  // A setting the rest of the config switches off would be ignored (HF ignores it silently).
  const off = (k: keyof TrainingConfig, when: keyof TrainingConfig, why: string) => {
    if (ok(k, when) && JSON.stringify(c[k]) !== JSON.stringify(d[k])) p.range(k, `${why}; remove ${k}`);
  };
  if (c.early_stopping_patience === null) {
    off(
      "early_stopping_threshold",
      "early_stopping_patience",
      "is read by early stopping, which early_stopping_patience turns on",
    );
  }
  if (c.save_strategy === "no") {
    off("save_total_limit", "save_strategy", `limits saved checkpoints, and save_strategy is "no"`);
  }
  if (!c.packing) off("packing_strategy", "packing", "says how to pack, and packing is false");
  if (c.optim === "sgd") {
    for (const k of ["adam_beta1", "adam_beta2", "adam_epsilon"] as const) {
      off(k, "optim", `is AdamW's, and optim is "sgd"`);
    }
  }
  if (
    ok("assistant_only_loss", "packing", "packing_strategy") && c.assistant_only_loss && c.packing &&
    c.packing_strategy === "wrapped"
  ) {
    p.range(
      "assistant_only_loss",
      `trains the assistant turns of conversations, and packing_strategy wrapped cuts plain text into ` +
        `blocks; use packing_strategy bfd or drop assistant_only_loss`,
    );
  }
  if (c.eval_strategy === "no") {
    for (
      const k of [
        "eval_steps",
        "max_eval_samples",
        "metric_for_best_model",
      ] as const
    ) {
      off(k, "eval_strategy", `is for evaluations, and eval_strategy is "no"`);
    }
  } else if (c.eval_strategy === "epoch") {
    off("eval_steps", "eval_strategy", `counts steps between evaluations, and eval_strategy is "epoch"`);
  }
  if (ok("max_steps") && c.max_steps > 0) {
    off(
      "num_train_epochs",
      "max_steps",
      `counts epochs, and max_steps ${c.max_steps} sets the length of training`,
    );
  }
  if (c.save_strategy !== "steps") {
    off(
      "save_steps",
      "save_strategy",
      `counts steps between checkpoints, and save_strategy is "${c.save_strategy}"`,
    );
  }
  if (c.logging_strategy !== "steps") {
    off(
      "logging_steps",
      "logging_strategy",
      `counts steps between logs, and logging_strategy is "${c.logging_strategy}"`,
    );
  }
  if (c.logging_strategy === "no") {
    off("logging_first_step", "logging_strategy", `logs the first step, and logging_strategy is "no"`);
  }
  if (c.resume_from_checkpoint === null || c.resume_from_checkpoint === false) {
    off(
      "allow_changed_data",
      "resume_from_checkpoint",
      "lets a resume go on with changed data, and nothing resumes",
    );
  }
  if (c.metric_for_best_model === null) {
    off(
      "greater_is_better",
      "metric_for_best_model",
      "says which way metric_for_best_model improves, and none is set",
    );
  }
  if (ok("bf16") && c.bf16) {
    p.range(
      "bf16",
      `WebGPU has no bfloat16, and the Trainer computes in float32; set bf16: false`,
    );
  } else if (ok("fp16", "backend") && c.fp16 && c.backend === "cpu") {
    p.range("fp16", `the cpu backend computes in float32; set fp16: false or backend: webgpu`);
  }
  if (ok("warmup_steps", "warmup_ratio") && c.warmup_steps > 0 && c.warmup_ratio > 0) {
    p.range(
      "warmup_ratio",
      `both warmup_steps (${c.warmup_steps}) and warmup_ratio (${c.warmup_ratio}) are set (HF lets warmup_steps win silently); keep one`,
    );
  }
  if (ok("lr_scheduler_type", "warmup_steps", "warmup_ratio") && c.lr_scheduler_type === "constant") {
    if (c.warmup_steps > 0 || c.warmup_ratio > 0) {
      p.range(
        "lr_scheduler_type",
        `"constant" has no warmup (HF ignores it); use "constant_with_warmup" or drop the warmup`,
      );
    }
  }
  if (ok("max_steps", "num_train_epochs") && c.max_steps === -1 && c.num_train_epochs === 0) {
    p.range("num_train_epochs", `is 0 and max_steps is -1, so nothing would be trained; set one of them`);
  }
  const evalOk = ok("eval_strategy", "eval_steps", "logging_steps");
  if (evalOk && c.eval_strategy === "steps" && c.eval_steps === null) {
    p.range(
      "eval_steps",
      `eval_strategy "steps" needs eval_steps; set it (HF would reuse logging_steps: eval_steps: ${c.logging_steps})`,
    );
  }
  const saveOk = evalOk && ok("save_strategy", "save_steps", "load_best_model_at_end");
  if (saveOk && c.load_best_model_at_end) {
    if (c.eval_strategy === "no") {
      p.range("load_best_model_at_end", `needs evaluations; set eval_strategy to "steps" or "epoch"`);
    } else if (c.save_strategy !== "best" && c.save_strategy !== c.eval_strategy) {
      p.range(
        "save_strategy",
        `load_best_model_at_end needs save_strategy to match eval_strategy "${c.eval_strategy}" (or be "best"), got "${c.save_strategy}"`,
      );
    } else if (c.save_strategy === "steps" && c.eval_steps !== null) {
      const problem = saveEvalMismatch(c.save_steps, c.eval_steps);
      if (problem) p.range("save_steps", `load_best_model_at_end needs ${problem}`);
    }
  }
  if (ok("save_strategy", "eval_strategy") && c.save_strategy === "best" && c.eval_strategy === "no") {
    p.range("save_strategy", `"best" compares evaluations; set eval_strategy to "steps" or "epoch"`);
  }
  if (
    ok("early_stopping_patience", "eval_strategy") && c.early_stopping_patience !== null &&
    c.eval_strategy === "no"
  ) {
    p.range("early_stopping_patience", `needs evaluations; set eval_strategy to "steps" or "epoch"`);
  }
  if (
    ok("resume_from_checkpoint", "overwrite_output_dir") && c.overwrite_output_dir &&
    (c.resume_from_checkpoint === true || typeof c.resume_from_checkpoint === "string")
  ) {
    p.range(
      "overwrite_output_dir",
      c.resume_from_checkpoint === true
        ? `is true while resume_from_checkpoint: true resumes from output_dir's checkpoints; set one of them to false`
        : `is true while resume_from_checkpoint resumes a run, which keeps output_dir's files; drop one of them`,
    );
  }
  if (ok("label_smoothing", "loss_type") && c.label_smoothing > 0 && c.loss_type !== "sigmoid") {
    p.range(
      "label_smoothing",
      `is cDPO's, for loss_type sigmoid, not ${c.loss_type}; set label_smoothing: 0 or loss_type: sigmoid`,
    );
  }
  if (ok("quantization", "lora") && c.quantization !== null) {
    if (!c.quantization.load_in_4bit) {
      p.range(
        "quantization.load_in_4bit",
        `is false, so the section quantizes nothing; set it to true or remove quantization`,
      );
    } else if (c.lora === null) {
      p.range(
        "quantization",
        `4-bit base weights are frozen, so training needs adapters (QLoRA); add a lora section, e.g. lora: {r: 16}`,
      );
    }
  }
}

const UNSUPPORTED: [string, (c: TrainingConfig) => boolean, string][] = [
  ["fp16", (c) => c.fp16, "the Trainer computes in float32; set fp16: false"],
  [
    "quantization.bnb_4bit_quant_type",
    (c) => c.quantization?.bnb_4bit_quant_type === "fp4",
    "fledge's 4-bit kernels have NF4 codes, not bitsandbytes' FP4; set nf4",
  ],
  [
    "quantization.bnb_4bit_compute_dtype",
    (c) => c.quantization?.bnb_4bit_compute_dtype === "float16",
    "the Trainer computes in float32; set float32",
  ],
];

/**
 * The settings of a valid config the Trainer cannot honour, one phrase each: it refuses them before
 * anything runs, `config validate` names them, `getMemoryOptimizedConfig` replaces them.
 */
export function unsupportedSettings(config: TrainingConfig): string[] {
  return UNSUPPORTED.filter(([, bad]) => bad(config)).map(([k, , fix]) => `${k}: ${fix}`);
}

/**
 * A step count that may also be a ratio of the run's steps (HF: `warmup_steps`, `logging_steps`,
 * `eval_steps`, `save_steps` below 1 are "a ratio of total training steps", rounded up): a whole
 * number >= `min`, or a ratio in (0, 1). `eval_steps` may also be null.
 */
function checkStepsOrRatio(
  p: Problems,
  c: Record<string, unknown>,
  key: "warmup_steps" | "logging_steps" | "eval_steps" | "save_steps",
  min: number,
  bad: Set<string>,
): void {
  const v = c[key];
  if (v === null && key === "eval_steps") return;
  const spec = { kind: "number", min: 0, minExclusive: min > 0 } as const;
  if (!checkValue(p, key, v, spec)) bad.add(key);
  else if ((v as number) > 1 && !Number.isInteger(v)) {
    p.range(key, `must be a whole number of steps or a ratio in (0, 1) of the run's steps, got ${v}`);
  }
}

/**
 * Why checkpoints every `save` steps miss evaluations every `evaluation` steps (HF's rule: a
 * multiple, both whole numbers or both ratios of the run's steps), or null when they line up.
 */
function saveEvalMismatch(save: number, evaluation: number): string | null {
  if ((save < 1) !== (evaluation < 1)) {
    return `save_steps ${save} and eval_steps ${evaluation} both as whole numbers of steps or both as ratios of the run's steps`;
  }
  // Ratios compared in millionths, as HF does, so that 0.2 is a multiple of 0.1.
  const [s, e] = save < 1 ? [Math.round(save * 1e6), Math.round(evaluation * 1e6)] : [save, evaluation];
  if (s % e === 0) return null;
  const up = Math.ceil(s / e) * e;
  return `save_steps to be a multiple of eval_steps ${evaluation}, got ${save}; set save_steps: ${
    save < 1 ? up / 1e6 : up
  }`;
}
