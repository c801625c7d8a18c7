/**
 * Private to `config.ts`: the training presets and the per-task recommendations, as partial
 * configs that `config.ts` validates (so every value here passes the same checks as a user file).
 * Sources: TRL `SFTConfig` (learning_rate 2e-5, logging_steps 10, gradient checkpointing on),
 * the QLoRA paper (Dettmers et al. 2023: NF4, double quantization, r 16-64, lr 2e-4, all linear
 * layers), nanoGPT / GPT-3 pretraining (AdamW beta2 0.95, weight decay 0.1, cosine to lr / 10).
 *
 * Every recommendation runs as it is: nothing the Trainer refuses (fp16, fp4, float16 compute, a
 * best-model metric it does not compute) and no sequence longer than the named model's positions;
 * `tests/training/config_test.ts` trains one step of each.
 * @module
 */
import { PRESETS } from "../models/config.ts";

/** Preset names. */
export const PRESET_NAMES = ["debug", "sft-full", "sft-lora", "qlora", "pretrain"] as const;

/** Task names of `getRecommendedConfig`. */
export const TASKS = ["summarization", "translation", "classification", "pretraining"] as const;

/** Size classes: parameters, the model preset used for it, and a sequence length for pretraining. */
export const MODEL_SIZES = {
  tiny: { params: 0.5e6, model: "tiny", pretrain_seq: 256 },
  small: { params: 14e6, model: "small", pretrain_seq: 512 },
  medium: { params: 124e6, model: "gpt2-124m", pretrain_seq: 1024 },
  large: { params: 1.2e9, model: "llama-1b-shape", pretrain_seq: 2048 },
} as const;

/** A size class. */
export type SizeClass = keyof typeof MODEL_SIZES;

/** The shape of a size class's model preset, for the memory estimate. */
export function sizeShape(
  size: SizeClass,
): { hidden_size: number; num_hidden_layers: number; vocab_size: number } {
  const m = PRESETS[MODEL_SIZES[size].model];
  return { hidden_size: m.hidden_size, num_hidden_layers: m.num_hidden_layers, vocab_size: m.vocab_size };
}

/** The size class of a parameter count: the largest class whose count it reaches (half-way up). */
export function sizeClassOf(params: number): SizeClass {
  let best: SizeClass = "tiny";
  for (const [k, v] of Object.entries(MODEL_SIZES) as [SizeClass, { params: number }][]) {
    if (params >= v.params / 2) best = k;
  }
  return best;
}

const LORA = {
  r: 16,
  lora_alpha: 32,
  lora_dropout: 0.05,
  target_modules: "all-linear",
  task_type: "CAUSAL_LM",
};

const SFT = {
  dataset_text_field: "text",
  learning_rate: 2e-5,
  lr_scheduler_type: "cosine",
  warmup_ratio: 0.03,
  logging_steps: 10,
  gradient_checkpointing: true,
  num_train_epochs: 3,
  eval_strategy: "epoch",
  save_strategy: "epoch",
  save_total_limit: 2,
  load_best_model_at_end: true,
};

/** Preset partial configs (validated in `config.ts`). */
export const PRESET_PARTIALS: Readonly<Record<typeof PRESET_NAMES[number], Record<string, unknown>>> = {
  // Seconds on any machine: the tiny model, 20 steps, a log line per step, no checkpoints.
  debug: {
    model: "tiny",
    output_dir: "runs/debug",
    max_steps: 20,
    per_device_train_batch_size: 2,
    per_device_eval_batch_size: 2,
    max_seq_length: 64,
    learning_rate: 1e-3,
    logging_steps: 1,
    save_strategy: "no",
    report_to: ["jsonl", "stdout"],
  },
  "sft-full": {
    ...SFT,
    output_dir: "runs/sft-full",
    per_device_train_batch_size: 4,
    gradient_accumulation_steps: 4,
  },
  "sft-lora": {
    ...SFT,
    output_dir: "runs/sft-lora",
    learning_rate: 2e-4,
    per_device_train_batch_size: 4,
    gradient_accumulation_steps: 4,
    lora: { ...LORA },
  },
  qlora: {
    ...SFT,
    output_dir: "runs/qlora",
    learning_rate: 2e-4,
    per_device_train_batch_size: 4,
    gradient_accumulation_steps: 4,
    max_grad_norm: 0.3,
    lora: { ...LORA },
    quantization: {
      load_in_4bit: true,
      bnb_4bit_quant_type: "nf4",
      bnb_4bit_compute_dtype: "float32",
      bnb_4bit_use_double_quant: true,
    },
  },
  // Packing by concatenating and cutting (`wrapped`): the classic pre-training layout, every
  // position trains and none is padding.
  pretrain: {
    model: "small",
    output_dir: "runs/pretrain",
    num_train_epochs: 1,
    per_device_train_batch_size: 8,
    gradient_accumulation_steps: 4,
    max_seq_length: 512,
    packing: true,
    packing_strategy: "wrapped",
    learning_rate: 6e-4,
    weight_decay: 0.1,
    adam_beta2: 0.95,
    lr_scheduler_type: "cosine_with_min_lr",
    lr_scheduler_kwargs: { min_lr_rate: 0.1 },
    warmup_ratio: 0.02,
    logging_steps: 10,
    save_steps: 1000,
    save_total_limit: 3,
  },
};

/** Task-specific choices on top of the SFT preset (fine-tuning tasks) or the pretraining one. */
const TASK_PARTIALS: Readonly<Record<typeof TASKS[number], Record<string, unknown>>> = {
  // Articles are long: 1024 tokens of article + summary, small micro-batches.
  summarization: { max_seq_length: 1024, per_device_train_batch_size: 4, gradient_accumulation_steps: 8 },
  // Sentence pairs are short: 256 tokens, larger micro-batches.
  translation: { max_seq_length: 256, per_device_train_batch_size: 16, gradient_accumulation_steps: 2 },
  // Sentence + label: 128 tokens; BERT-style recipe (linear decay, 10% warmup, decay 0.01). The
  // best checkpoint and early stopping follow eval_loss, the metric the Trainer computes (accuracy
  // comes from the classification recipe's label-likelihood evaluation afterwards).
  classification: {
    max_seq_length: 128,
    per_device_train_batch_size: 32,
    gradient_accumulation_steps: 1,
    lr_scheduler_type: "linear",
    warmup_ratio: 0.1,
    weight_decay: 0.01,
    metric_for_best_model: "eval_loss",
    early_stopping_patience: 2,
  },
  pretraining: {},
};

/** Learning rate of full fine-tuning or pretraining by size (smaller models take larger steps). */
const FULL_LR: Readonly<Record<SizeClass, number>> = { tiny: 1e-3, small: 3e-4, medium: 5e-5, large: 2e-5 };
const PRETRAIN_LR: Readonly<Record<SizeClass, number>> = {
  tiny: 1e-3,
  small: 1e-3,
  medium: 6e-4,
  large: 3e-4,
};

/**
 * The partial config `getRecommendedConfig` validates, before any memory plan. Sequence lengths
 * are capped at the named model preset's `max_position_embeddings` (the tiny model has 128).
 */
export function recommend(task: typeof TASKS[number], size: SizeClass): Record<string, unknown> {
  const meta = MODEL_SIZES[size];
  const positions = PRESETS[meta.model].max_position_embeddings;
  if (task === "pretraining") {
    return {
      ...PRESET_PARTIALS.pretrain,
      model: meta.model,
      output_dir: `runs/pretraining-${size}`,
      max_seq_length: Math.min(meta.pretrain_seq, positions),
      learning_rate: PRETRAIN_LR[size],
      gradient_accumulation_steps: size === "tiny" ? 1 : 4,
      gradient_checkpointing: size === "large",
    };
  }
  // Large models are fine-tuned with LoRA; smaller ones fully.
  const lora = size === "large";
  return {
    ...SFT,
    ...TASK_PARTIALS[task],
    max_seq_length: Math.min(TASK_PARTIALS[task].max_seq_length as number, positions),
    model: meta.model,
    output_dir: `runs/${task}-${size}`,
    learning_rate: lora ? 2e-4 : FULL_LR[size],
    gradient_checkpointing: size === "large" || size === "medium",
    ...(lora ? { lora: { ...LORA } } : {}),
  };
}
