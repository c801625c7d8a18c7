/**
 * Private to `config.ts`: what each TrainingConfig field accepts, the canonical key order (the
 * order `saveTrainingConfig` writes), legacy names that are migrated with a warning, and names
 * from other tools (MLX-LM, TRL, torch) that get a "did you mean" hint but are never accepted.
 * @module
 */
import type { Spec } from "./_config_check.ts";

/** "custom": checked by hand in `config.ts` (unions a {@linkcode Spec} cannot say). */
export type FieldSpec = Spec | { kind: "custom" };

const INTERVAL = ["no", "steps", "epoch"] as const;

/** Top-level fields in save order: run, duration and batch, optimizer, schedule, logging/eval/save, precision, adapters. */
export const TOP_SPECS = {
  model: { kind: "string", nullable: true },
  model_config: { kind: "custom" },
  tokenizer: { kind: "string", nullable: true },
  dataset: { kind: "string", nullable: true },
  dataset_config: { kind: "string", nullable: true },
  dataset_revision: { kind: "string", nullable: true },
  dataset_train_split: { kind: "string" },
  dataset_test_split: { kind: "string", nullable: true },
  dataset_text_field: { kind: "string" },
  max_train_samples: { kind: "int", min: 1, nullable: true },
  max_eval_samples: { kind: "int", min: 1, nullable: true },
  backend: { kind: "enum", values: ["auto", "webgpu", "cpu"] },
  output_dir: { kind: "string" },
  overwrite_output_dir: { kind: "bool" },
  resume_from_checkpoint: { kind: "custom" },
  allow_changed_data: { kind: "bool" },
  // fledge's PRNG takes 32 bits: a larger seed had aliased another (refused at model setup, later)
  seed: { kind: "int", min: 0, max: 0xffffffff },
  data_seed: { kind: "int", min: 0, max: 0xffffffff, nullable: true },
  num_train_epochs: { kind: "number", min: 0 },
  max_steps: { kind: "int", min: 1, also: [-1] },
  per_device_train_batch_size: { kind: "int", min: 1 },
  per_device_eval_batch_size: { kind: "int", min: 1 },
  gradient_accumulation_steps: { kind: "int", min: 1 },
  max_seq_length: { kind: "int", min: 1 },
  packing: { kind: "bool" },
  packing_strategy: { kind: "enum", values: ["bfd", "bfd_split", "wrapped"] },
  completion_only_loss: { kind: "bool", nullable: true },
  assistant_only_loss: { kind: "bool" },
  max_prompt_length: { kind: "int", min: 1, nullable: true },
  beta: { kind: "number", min: 0, minExclusive: true },
  loss_type: { kind: "enum", values: ["sigmoid", "hinge", "ipo"] },
  label_smoothing: { kind: "number", min: 0, max: 0.5, maxExclusive: true },
  precompute_ref_log_probs: { kind: "bool" },
  disable_dropout: { kind: "bool" },
  optim: { kind: "custom" },
  learning_rate: { kind: "number", min: 0 },
  weight_decay: { kind: "number", min: 0 },
  adam_beta1: { kind: "number", min: 0, max: 1, maxExclusive: true },
  adam_beta2: { kind: "number", min: 0, max: 1, maxExclusive: true },
  adam_epsilon: { kind: "number", min: 0 },
  max_grad_norm: { kind: "number", min: 0 },
  skip_nonfinite_steps: { kind: "bool" },
  lr_scheduler_type: { kind: "custom" },
  lr_scheduler_kwargs: { kind: "custom" },
  warmup_steps: { kind: "custom" },
  warmup_ratio: { kind: "number", min: 0, max: 1 },
  logging_strategy: { kind: "enum", values: INTERVAL },
  logging_steps: { kind: "custom" },
  logging_first_step: { kind: "bool" },
  report_to: { kind: "custom" },
  eval_strategy: { kind: "enum", values: INTERVAL },
  eval_steps: { kind: "custom" },
  save_strategy: { kind: "enum", values: [...INTERVAL, "best"] },
  save_steps: { kind: "custom" },
  save_total_limit: { kind: "int", min: 1, nullable: true },
  load_best_model_at_end: { kind: "bool" },
  metric_for_best_model: { kind: "string", nullable: true },
  greater_is_better: { kind: "custom" },
  early_stopping_patience: { kind: "int", min: 1, nullable: true },
  early_stopping_threshold: { kind: "number", min: 0 },
  gradient_checkpointing: { kind: "bool" },
  neftune_noise_alpha: { kind: "number", min: 0, nullable: true },
  label_smoothing_factor: { kind: "number", min: 0, max: 1, maxExclusive: true },
  bf16: { kind: "bool" },
  fp16: { kind: "bool" },
  lora: { kind: "custom" },
  quantization: { kind: "custom" },
  merge_adapter: { kind: "bool" },
} as const satisfies Record<string, FieldSpec>;

/** PEFT `LoraConfig` fields fledge implements, in save order. */
export const LORA_SPECS = {
  r: { kind: "int", min: 1 },
  lora_alpha: { kind: "number", min: 0, minExclusive: true },
  lora_dropout: { kind: "number", min: 0, max: 1, maxExclusive: true },
  target_modules: { kind: "strings", nullable: true, also: ["all-linear"] },
  bias: { kind: "enum", values: ["none", "all", "lora_only"] },
  use_dora: { kind: "bool" },
  use_rslora: { kind: "bool" },
  modules_to_save: { kind: "strings", nullable: true },
  init_lora_weights: { kind: "custom" },
  task_type: { kind: "enum", values: ["CAUSAL_LM"], nullable: true },
} as const satisfies Record<string, FieldSpec>;

/** transformers `BitsAndBytesConfig` fields fledge implements (4-bit only), in save order. */
export const QUANT_SPECS = {
  load_in_4bit: { kind: "bool" },
  bnb_4bit_quant_type: { kind: "enum", values: ["nf4", "fp4"] },
  bnb_4bit_compute_dtype: { kind: "custom" },
  bnb_4bit_use_double_quant: { kind: "bool" },
} as const satisfies Record<string, FieldSpec>;

/** Legacy names read as their new name, with a one-line deprecation warning. */
export const LEGACY_KEYS: Readonly<Record<string, { to: string; note: string }>> = {
  evaluation_strategy: { to: "eval_strategy", note: "renamed in transformers 4.41" },
  max_seq_len: { to: "max_seq_length", note: "old fledge name" },
  per_gpu_train_batch_size: { to: "per_device_train_batch_size", note: "renamed in transformers 3" },
  per_gpu_eval_batch_size: { to: "per_device_eval_batch_size", note: "renamed in transformers 3" },
};

/**
 * Other spellings, read as fledge's field: with a one-line note, but for TRL's own current names
 * (`quiet`), which a TRL config should keep: `max_length`, and the `trl sft` / `trl dpo` script
 * names of the model and the dataset.
 */
export const ALIAS_KEYS: Readonly<Record<string, { to: string; note: string; quiet?: boolean }>> = {
  max_length: { to: "max_seq_length", note: "TRL >= 0.20's name", quiet: true },
  model_name_or_path: { to: "model", note: "TRL scripts' ModelConfig name", quiet: true },
  dataset_name: { to: "dataset", note: "TRL scripts' ScriptArguments name", quiet: true },
  dataset_config_name: { to: "dataset_config", note: "run_clm.py's name" },
  block_size: { to: "max_seq_length", note: "run_clm.py calls it block_size" },
};

/**
 * Names other tools use, never accepted silently (an unknown key), but named in the hint:
 * `lr` is not `learning_rate` until the file says so.
 */
export const TOP_HINTS: Readonly<Record<string, string>> = {
  lr: "learning_rate",
  learningrate: "learning_rate",
  batch_size: "per_device_train_batch_size",
  train_batch_size: "per_device_train_batch_size",
  eval_batch_size: "per_device_eval_batch_size",
  epochs: "num_train_epochs",
  num_epochs: "num_train_epochs",
  iters: "max_steps (MLX-LM iters)",
  steps: "max_steps",
  steps_per_eval: "eval_steps (MLX-LM steps_per_eval)",
  steps_per_report: "logging_steps (MLX-LM steps_per_report)",
  save_every: "save_steps (MLX-LM save_every)",
  grad_checkpoint: "gradient_checkpointing (MLX-LM grad_checkpoint)",
  adapter_path: "output_dir (adapters are written to output_dir/adapter)",
  resume_adapter_file: "resume_from_checkpoint",
  data: "dataset",
  train_file: "dataset",
  lora_parameters: "lora (a section with r, lora_alpha, lora_dropout, target_modules)",
  fine_tune_type: "lora (a lora section means LoRA; none means full fine-tuning)",
  warmup: "warmup_steps",
  num_warmup_steps: "warmup_steps",
  scheduler: "lr_scheduler_type",
  lr_scheduler: "lr_scheduler_type",
  lr_schedule: "lr_scheduler_type",
  grad_accum: "gradient_accumulation_steps",
  gradient_accumulation: "gradient_accumulation_steps",
  accumulation_steps: "gradient_accumulation_steps",
  grad_clip: "max_grad_norm",
  clip_grad_norm: "max_grad_norm",
  beta1: "adam_beta1",
  beta2: "adam_beta2",
  eps: "adam_epsilon",
  optimizer: "optim",
  device: "backend",
  use_cpu: 'backend (backend: "cpu")',
  no_cuda: 'backend (backend: "cpu")',
  peft_config: "lora",
  lora_config: "lora",
  bnb_config: "quantization",
  quantization_config: "quantization",
  load_in_4bit: "quantization (a section: quantization: {load_in_4bit: true})",
  load_in_8bit: "quantization (fledge quantizes to 4 bits only: quantization: {load_in_4bit: true})",
  lora_r: "lora (a section: lora: {r: 8})",
  lora_alpha: "lora (a section: lora: {lora_alpha: 16})",
  patience: "early_stopping_patience",
  eval_metric: "metric_for_best_model",
  seq_len: "max_seq_length",
  context_length: "max_seq_length",
};

/**
 * TRL and transformers fields fledge does not have, each with what fledge does instead: named as
 * such rather than as a typo of another field.
 */
export const UNSUPPORTED_KEYS: Readonly<Record<string, string>> = {
  rpo_alpha: "RPO (TRL rpo_alpha: an NLL term on the chosen completions) is not implemented in fledge's DPO",
  truncation_mode:
    "fledge cuts each sequence to max_length keeping its start (TRL truncation_mode keep_start, which is accepted); keep_end is not implemented",
  max_completion_length: "fledge's DPO bounds sequences by max_prompt_length and max_length only",
  padding_free:
    "fledge pads each micro-batch to its longest row (or packs with packing: true); padding-free batches are not implemented",
  eos_token:
    "fledge ends each completion with the tokenizer's own end-of-text token; another one is not supported",
  dataset_num_proc: "fledge tokenizes in the training process; there are no worker processes",
  precompute_ref_batch_size: "fledge precomputes the reference log-probs in its training micro-batches",
  gradient_checkpointing_kwargs:
    "fledge's gradient_checkpointing has no options (use_reentrant is PyTorch's); keep gradient_checkpointing",
  loss_weights: "fledge's DPO trains one loss_type at a time",
};

/** The same for keys inside the `lora` section. */
export const LORA_HINTS: Readonly<Record<string, string>> = {
  rank: "r",
  lora_r: "r",
  lora_rank: "r",
  alpha: "lora_alpha",
  scale: "lora_alpha (MLX-LM scale = lora_alpha / r)",
  dropout: "lora_dropout",
  keys: "target_modules (MLX-LM keys)",
  modules: "target_modules",
  dora: "use_dora",
  rslora: "use_rslora",
};

/** The same for keys inside the `quantization` section. */
export const QUANT_HINTS: Readonly<Record<string, string>> = {
  load_in_8bit: "load_in_4bit (fledge quantizes to 4 bits only)",
  quant_type: "bnb_4bit_quant_type",
  compute_dtype: "bnb_4bit_compute_dtype",
  double_quant: "bnb_4bit_use_double_quant",
  bnb_4bit_quant_storage: "bnb_4bit_compute_dtype (storage is always packed bytes)",
};

/** HF `optim` names that are fledge's "adamw" (torch AdamW semantics). */
export const ADAMW_ALIASES: readonly string[] = ["adamw_torch", "adamw_torch_fused", "adamw_hf"];

/** `report_to` integrations of HF that fledge does not have. */
export const HF_INTEGRATIONS: readonly string[] = [
  "azure_ml",
  "clearml",
  "codecarbon",
  "comet_ml",
  "dagshub",
  "dvclive",
  "flyte",
  "mlflow",
  "neptune",
  "swanlab",
  "tensorboard",
  "trackio",
  "wandb",
];
