/**
 * Private to `config.ts`: a first-order training memory model and the plan that
 * `getMemoryOptimizedConfig` applies. All sizes in bytes until the report (GiB = 2^30 bytes).
 *
 * Per parameter: f32 weights 4 B (+2 B for an f16 copy with fp16), 4-bit weights 0.5 B plus one
 * f32 absmax per 64 (bitsandbytes; double quantization makes that 1 B per 64 plus f32 per 256
 * blocks); gradients 4 B and AdamW moments 8 B per *trainable* parameter; SGD keeps no state.
 * Activations per token follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in
 * Large Transformer Models", eq. 2 without the T x T attention terms, since fused attention keeps
 * no score matrix): 34 h bytes per layer at 16-bit, so 68 h at f32; with gradient checkpointing
 * only each layer's f32 input (4 h) is kept plus one layer being recomputed. The logits and
 * their gradient add 8 V bytes per token (f32).
 * @module
 */
import type { TrainingConfig } from "./config_types.ts";

const GIB = 2 ** 30;
/** Share of `memory_gb` the plan may use; the rest is left for the allocator, kernels' scratch and the OS. */
export const HEADROOM = 0.9;

/** Model shape the estimate needs; guessed from the parameter count when not given. */
export interface Shape {
  params: number;
  hidden_size: number;
  num_hidden_layers: number;
  vocab_size: number;
  /** A DPO run: chosen and rejected sequences per pair, and without an adapter a frozen copy of the weights. */
  dpo?: boolean;
}

/** The numbers behind a plan, in GiB. */
export interface Estimate {
  trainable_params: number;
  weights_gb: number;
  gradients_gb: number;
  optimizer_gb: number;
  activations_gb: number;
  total_gb: number;
  budget_gb: number;
  fits: boolean;
}

/**
 * Fill a shape from the parameter count: a GPT-style block holds about 12 h^2 parameters and
 * GPT-2-like models have h ~ 64 L, so h ~ (64 P / 12)^(1/3), rounded to a multiple of 64.
 */
export function guessShape(
  params: number,
  given: { hidden_size?: number; num_hidden_layers?: number; vocab_size?: number; trainer?: "sft" | "dpo" },
): Shape {
  const vocab = given.vocab_size ?? 50257;
  const h = given.hidden_size ?? Math.max(64, Math.round(Math.cbrt(params * 64 / 12) / 64) * 64);
  const layers = given.num_hidden_layers ?? Math.max(1, Math.round((params - vocab * h) / (12 * h * h)));
  return {
    params,
    hidden_size: h,
    num_hidden_layers: layers,
    vocab_size: vocab,
    dpo: given.trainer === "dpo",
  };
}

/** LoRA parameters: r (d_in + d_out) per adapted linear, per layer (an MLP of width 4h). */
export function loraParams(lora: NonNullable<TrainingConfig["lora"]>, s: Shape): number {
  const h = s.hidden_size, r = lora.r;
  const perModule = (name: string): number => {
    if (/^(q|k|v|o)_proj$|^(query|key|value|dense)$/.test(name)) return 2 * h;
    if (/^(gate|up|down)_proj$|^(c_fc|fc1|fc2|c_proj)$/.test(name)) return 5 * h;
    if (name === "c_attn" || name === "qkv_proj") return 4 * h;
    return 2 * h;
  };
  const t = lora.target_modules;
  const dims = t === null
    ? 2 * perModule("q_proj") // PEFT's default for llama-like models: q_proj, v_proj
    : t === "all-linear"
    ? 4 * 2 * h + 3 * 5 * h
    : t.reduce((a, m) => a + perModule(m), 0);
  return r * dims * s.num_hidden_layers;
}

/** Memory of one configuration at micro-batch `micro` and sequence length `seq`. */
export function estimate(c: TrainingConfig, s: Shape, memoryGb: number, seq: number): Estimate {
  const { params: P, hidden_size: h, num_hidden_layers: L, vocab_size: V } = s;
  let weights = P * 4 + (c.fp16 ? P * 2 : 0);
  if (c.quantization?.load_in_4bit) {
    const embed = Math.min(P, V * h); // embeddings and the LM head stay f32, as in bitsandbytes
    const perParam = c.quantization.bnb_4bit_use_double_quant ? 0.5 + 1 / 64 + 4 / (64 * 256) : 0.5 + 4 / 64;
    weights = (P - embed) * perParam + embed * 4;
  }
  const trainable = c.lora ? loraParams(c.lora, s) : P;
  const grads = trainable * 4;
  const opt = c.optim === "adamw" ? trainable * 8 : 0;
  const actBytes = c.fp16 ? 34 : 68;
  const perToken = c.gradient_checkpointing ? L * h * 4 + h * actBytes + V * 8 : L * h * actBytes + V * 8;
  // DPO: a row for the chosen and one for the rejected completion of each pair; full fine-tuning
  // asks a frozen f32 copy of the weights for the reference (none with precomputed log-probs)
  const acts = perToken * seq * c.per_device_train_batch_size * (s.dpo ? 2 : 1);
  if (s.dpo && !c.lora && !c.precompute_ref_log_probs) weights += P * 4;
  const total = weights + grads + opt + acts;
  const budget = memoryGb * GIB * HEADROOM;
  return {
    trainable_params: trainable,
    weights_gb: weights / GIB,
    gradients_gb: grads / GIB,
    optimizer_gb: opt / GIB,
    activations_gb: acts / GIB,
    total_gb: total / GIB,
    budget_gb: budget / GIB,
    fits: total <= budget,
  };
}

const gb = (x: number) => `${x < 0.1 ? x.toFixed(3) : x.toFixed(2)} GiB`;

/**
 * Settings the Trainer refuses (`training/_trainer_check.ts`), each with what it runs instead and
 * why: a planned config must run as it is. Kept beside the plan (not imported from the Trainer's
 * private check, which needs the model); the config tests train every recommendation, so a new
 * refusal there shows up as a failing test here.
 */
const REFUSED: readonly ((c: TrainingConfig) => string | null)[] = [
  (c) => {
    if (!c.fp16) return null;
    c.fp16 = false;
    return "fp16 -> false: the Trainer computes in float32.";
  },
  (c) => {
    if (c.quantization?.bnb_4bit_quant_type !== "fp4") return null;
    c.quantization.bnb_4bit_quant_type = "nf4";
    return "quantization.bnb_4bit_quant_type fp4 -> nf4: fledge's 4-bit kernels have NF4 codes (also 4 bits per weight).";
  },
  (c) => {
    if (c.quantization?.bnb_4bit_compute_dtype !== "float16") return null;
    c.quantization.bnb_4bit_compute_dtype = "float32";
    return "quantization.bnb_4bit_compute_dtype float16 -> float32: the Trainer computes in float32.";
  },
];

/** Options of {@linkcode plan}. */
export interface PlanOptions {
  /**
   * May the plan switch to LoRA / QLoRA (default true)? False for pretraining, where the weights
   * start random and adapters on a frozen random base would learn nothing useful.
   */
  adapters?: boolean;
}

/**
 * Change `c` (a validated, mutable copy) until it fits: first settings the Trainer refuses are
 * replaced by ones it runs, then LoRA, 4-bit base weights, gradient checkpointing, and a smaller
 * micro-batch with more accumulation steps keeping per_device_train_batch_size x
 * gradient_accumulation_steps. Returns the reasons, in order.
 */
export function plan(
  c: TrainingConfig,
  s: Shape,
  memoryGb: number,
  seq: number,
  opts: PlanOptions = {},
): string[] {
  const why: string[] = [];
  for (const fix of REFUSED) {
    const line = fix(c);
    if (line) why.push(line);
  }
  const adapters = opts.adapters ?? true;
  const statics = (e: Estimate) => e.weights_gb + e.gradients_gb + e.optimizer_gb;
  let e = estimate(c, s, memoryGb, seq);
  why.push(
    `Budget ${gb(e.budget_gb)} (${HEADROOM * 100}% of ${memoryGb} GiB); the config ${
      why.length ? "with that" : "as given"
    } needs ${gb(e.total_gb)}: ` +
      `weights ${gb(e.weights_gb)}, gradients ${gb(e.gradients_gb)}, optimizer ${gb(e.optimizer_gb)}, ` +
      `activations ${gb(e.activations_gb)} (${c.per_device_train_batch_size} x ${seq} tokens).`,
  );
  if (statics(e) > e.budget_gb && c.lora === null && adapters) {
    const before = statics(e);
    c.lora = {
      r: 16,
      lora_alpha: 32,
      lora_dropout: 0.05,
      target_modules: "all-linear",
      bias: "none",
      use_dora: false,
      use_rslora: false,
      modules_to_save: null,
      init_lora_weights: true,
      task_type: "CAUSAL_LM",
    };
    e = estimate(c, s, memoryGb, seq);
    why.push(
      `Full fine-tuning keeps gradients and AdamW moments for all ${s.params.toExponential(2)} parameters ` +
        `(${gb(before)} before activations); LoRA (r 16, alpha 32, all linear layers) trains ` +
        `${e.trainable_params.toExponential(2)} instead: ${gb(statics(e))}.`,
    );
    if (c.learning_rate <= 1e-4) {
      why.push(
        `learning_rate ${c.learning_rate} -> 2e-4: LoRA adapters start at zero and want a larger step (QLoRA paper).`,
      );
      c.learning_rate = 2e-4;
    }
  }
  if (statics(e) > e.budget_gb && c.quantization === null && c.lora !== null && adapters) {
    const before = e.weights_gb;
    c.quantization = {
      load_in_4bit: true,
      bnb_4bit_quant_type: "nf4",
      bnb_4bit_compute_dtype: "float32",
      bnb_4bit_use_double_quant: true,
    };
    e = estimate(c, s, memoryGb, seq);
    why.push(
      `f32 base weights take ${gb(before)}; 4-bit NF4 with double quantization (QLoRA) takes ${
        gb(e.weights_gb)
      }.`,
    );
  }
  if (statics(e) > e.budget_gb) {
    why.push(
      `Does not fit: weights, gradients and optimizer state alone need ${gb(statics(e))} of ${
        gb(e.budget_gb)
      }; ` +
        `use a smaller model or more memory${adapters ? "" : " (pretraining trains every weight)"}.`,
    );
    return why;
  }
  if (e.total_gb > e.budget_gb && !c.gradient_checkpointing) {
    const before = e.activations_gb;
    c.gradient_checkpointing = true;
    e = estimate(c, s, memoryGb, seq);
    why.push(
      `Activations need ${gb(before)}; gradient checkpointing keeps only each layer's input and recomputes ` +
        `the rest in backward (about 30% more compute): ${gb(e.activations_gb)}.`,
    );
  }
  if (e.total_gb > e.budget_gb) {
    const effective = c.per_device_train_batch_size * c.gradient_accumulation_steps;
    const micro0 = c.per_device_train_batch_size, gas0 = c.gradient_accumulation_steps;
    let micro = 1;
    for (let d = micro0 - 1; d >= 1; d--) {
      if (effective % d !== 0) continue;
      c.per_device_train_batch_size = d;
      if (estimate(c, s, memoryGb, seq).total_gb <= e.budget_gb) {
        micro = d;
        break;
      }
    }
    c.per_device_train_batch_size = micro;
    c.gradient_accumulation_steps = effective / micro;
    e = estimate(c, s, memoryGb, seq);
    why.push(
      `per_device_train_batch_size ${micro0} -> ${micro} and gradient_accumulation_steps ${gas0} -> ` +
        `${c.gradient_accumulation_steps} keep the effective batch of ${effective} sequences.`,
    );
    if (!e.fits) {
      why.push(
        `Does not fit: one sequence of ${seq} tokens still needs ${gb(e.activations_gb)} of activations; ` +
          `lower max_seq_length.`,
      );
      return why;
    }
  }
  why.push(`Fits: ${gb(e.total_gb)} of ${gb(e.budget_gb)}.`);
  return why;
}
