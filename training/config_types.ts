/**
 * The types of `TrainingConfig` (Hugging Face `TrainingArguments` / TRL `SFTConfig` names) and its
 * `lora` / `quantization` sections, apart from the defaults and validation in `config.ts`, so the
 * config's helpers share them without an import circle.
 * @module
 */
import type { BackendName } from "../kernels/backend.ts";
import type { ModelConfig } from "../models/config_types.ts";
import type { LrSchedulerKwargs, LrSchedulerType } from "./schedule.ts";

/** HF `IntervalStrategy`: when to log or evaluate. */
export type IntervalStrategy = "no" | "steps" | "epoch";
/** HF `SaveStrategy`: `best` saves whenever `metric_for_best_model` improves. */
export type SaveStrategy = "no" | "steps" | "epoch" | "best";
/**
 * Optimizers fledge implements: torch `AdamW` and plain `SGD`. HF's `adamw_torch`,
 * `adamw_torch_fused` and `adamw_hf` are read as `adamw` (with a note on stderr).
 */
export type OptimizerName = "adamw" | "sgd";
/** Where metrics go: `jsonl` is `output_dir/metrics.jsonl`, `stdout` one line per log on stderr. */
export type ReportTarget = "jsonl" | "stdout";

/** PEFT `LoraConfig` fields fledge implements; defaults are PEFT's. */
export interface LoraConfig {
  /** Rank of the update `B A` (PEFT default 8). */
  r: number;
  /** Scale numerator: the update is `(lora_alpha / r) B A`, or `/ sqrt(r)` with `use_rslora` (default 8). */
  lora_alpha: number;
  /** Dropout on the adapter input, in [0, 1) (default 0). */
  lora_dropout: number;
  /** Module names to adapt (`q_proj`, `c_attn`, ...), `"all-linear"`, or null for the architecture's default. */
  target_modules: string[] | "all-linear" | null;
  /** Which biases train: `none`, `all`, or `lora_only`. */
  bias: "none" | "all" | "lora_only";
  /** Weight-decomposed LoRA (Liu et al. 2024). */
  use_dora: boolean;
  /** Rank-stabilized scale `lora_alpha / sqrt(r)` (Kalajdzievski 2023). */
  use_rslora: boolean;
  /** Modules trained in full and saved with the adapter (e.g. `lm_head`), or null. */
  modules_to_save: string[] | null;
  /** `true`: B = 0, A Kaiming-uniform (PEFT's default); `"gaussian"`: A ~ N(0, 1/r); `false`: random B too. */
  init_lora_weights: boolean | "gaussian";
  /** PEFT's task type, written into `adapter_config.json`; fledge trains causal LMs only. */
  task_type: "CAUSAL_LM" | null;
}

/** transformers `BitsAndBytesConfig` fields for 4-bit base weights (QLoRA). */
export interface QuantizationConfig {
  /** Quantize the frozen base weights to 4 bits; needs a `lora` section. */
  load_in_4bit: boolean;
  /**
   * 4-bit code. Default `nf4`, unlike bitsandbytes' `fp4`: QLoRA recipes use NF4 and it is
   * fledge's packed 4-bit format.
   */
  bnb_4bit_quant_type: "nf4" | "fp4";
  /** Dtype of the dequantized matmuls: `float32`, or `float16` where the adapter has shader-f16. */
  bnb_4bit_compute_dtype: "float32" | "float16";
  /** Quantize the per-block absmax constants too (about 0.37 bits per parameter saved). */
  bnb_4bit_use_double_quant: boolean;
}

/**
 * A training run. Field names and meanings are transformers `TrainingArguments` (and TRL
 * `SFTConfig` for `max_seq_length`, `packing`, `dataset_text_field`) unless noted.
 */
export interface TrainingConfig {
  /** fledge: model preset name (`tiny`, `gpt2-124m`, ...), local folder or hub id; null until set. */
  model: string | null;
  /**
   * fledge: `ModelConfig` fields that reshape the preset named by `model` before it is built from
   * scratch (`{num_hidden_layers: 4, hidden_size: 128}`; `head_dim` and `num_key_value_heads`
   * follow as in `presetConfig`); null (default) builds the preset as it is. Refused with a
   * checkpoint (folder or hub id), whose shape is its `config.json`. Legacy configs' model shapes
   * (nanoGPT `n_layer`, LLMBuilder `model.num_layers`, ...) land here.
   */
  model_config: Partial<ModelConfig> | null;
  /** fledge: tokenizer folder or hub id; null uses the model's. */
  tokenizer: string | null;
  /** fledge: dataset file, folder or hub id; null until set. */
  dataset: string | null;
  /** TRL `ScriptArguments`: the config (subset) of a hub dataset, its folder in the repo; null for none. */
  dataset_config: string | null;
  /**
   * HF `load_dataset`'s `revision` for a hub dataset: a branch, tag or commit (null: `main`); a
   * run logs the commit it read, which pins it here.
   */
  dataset_revision: string | null;
  /** TRL `ScriptArguments`: the split to train on (default `train`). */
  dataset_train_split: string;
  /**
   * TRL `ScriptArguments`: the split to evaluate on. Null (fledge's default; TRL's is `test`):
   * `validation`, else `test`, else a stable 10% of the training rows held out.
   */
  dataset_test_split: string | null;
  /** TRL: the text column of the dataset (default `text`). */
  dataset_text_field: string;
  /** run_clm.py: use at most this many training documents (first ones); null = all. */
  max_train_samples: number | null;
  /** run_clm.py: use at most this many documents of the dataset's validation split file (first ones); null = all. */
  max_eval_samples: number | null;
  /** fledge: `auto` (default), `webgpu` or `cpu`. */
  backend: BackendName;
  /** Run folder: config.yaml, metrics.jsonl, checkpoints/, adapter/ or model/ (default `trainer_output`). */
  output_dir: string;
  /** Replace a non-empty `output_dir` instead of refusing (default false). */
  overwrite_output_dir: boolean;
  /** A checkpoint folder, `true` for the latest in `output_dir`, or null (default). */
  resume_from_checkpoint: string | boolean | null;
  /**
   * Resume although the data or the data-order settings (batch size, accumulation, block size, seeds)
   * differ from the checkpoint's (default false: a resume refuses and lists the differences). The
   * tokenizer always comes from the checkpoint.
   */
  allow_changed_data: boolean;
  /** Seed of initialization, dropout and (unless `data_seed`) data order (default 42). */
  seed: number;
  /** Seed of the data order only; null follows `seed`. */
  data_seed: number | null;
  /** Epochs when `max_steps` is -1; may be fractional (default 3). */
  num_train_epochs: number;
  /** Optimizer steps to run, overriding epochs; -1 (default) uses `num_train_epochs`. */
  max_steps: number;
  /** Sequences per micro-batch (default 8). */
  per_device_train_batch_size: number;
  /** Sequences per evaluation batch (default 8). */
  per_device_eval_batch_size: number;
  /** Micro-batches per optimizer step; the effective batch is their product with the micro-batch (default 1). */
  gradient_accumulation_steps: number;
  /** TRL `max_length` (`max_seq_length` before TRL 0.20, `block_size` in run_clm): tokens per sequence (default 1024). */
  max_seq_length: number;
  /**
   * TRL: pack several examples into each sequence (default false: one example per row, padding
   * masked out of attention and loss).
   */
  packing: boolean;
  /**
   * TRL: how to pack (default `bfd`: best-fit-decreasing of whole examples, positions restarting per
   * example; `bfd_split` splits examples longer than a row; `wrapped`: concatenate and cut, the
   * classic pre-training layout).
   */
  packing_strategy: "bfd" | "bfd_split" | "wrapped";
  /** TRL: train only the completion of prompt-completion rows (default null: true for those rows). */
  completion_only_loss: boolean | null;
  /** TRL: train only the assistant turns of conversational rows (default false). */
  assistant_only_loss: boolean;
  /**
   * TRL `DPOConfig` (DPO only): keep the last `max_prompt_length` tokens of longer prompts, counted
   * (default 512, TRL's value before 1.0); null: none. The sequence is then cut to `max_seq_length`
   * (TRL `max_length`), keeping its start.
   */
  max_prompt_length: number | null;
  /** TRL `DPOConfig` (DPO only): deviation from the reference model; IPO's tau (default 0.1). */
  beta: number;
  /**
   * TRL `DPOConfig` (DPO only): `sigmoid` (DPO, default), `hinge` (SLiC) or `ipo` (IPO on
   * length-averaged log-ratios, as TRL).
   */
  loss_type: "sigmoid" | "hinge" | "ipo";
  /** TRL `DPOConfig` (DPO only): cDPO's label-flip probability in [0, 0.5), `sigmoid` only (default 0). */
  label_smoothing: number;
  /**
   * TRL `DPOConfig` (DPO only): compute the reference log-probs of every pair once before training
   * (default false: a reference forward per batch, the adapters switched off). Needed for DPO
   * without an adapter, which has no frozen copy of the weights.
   */
  precompute_ref_log_probs: boolean;
  /** TRL `DPOConfig` (DPO only): run the policy without dropout, `lora_dropout` included (default true). */
  disable_dropout: boolean;
  /** `adamw` (default) or `sgd`. */
  optim: OptimizerName;
  /** Peak learning rate (default 5e-5). */
  learning_rate: number;
  /** Decoupled weight decay of AdamW (default 0). */
  weight_decay: number;
  /** AdamW beta1 (default 0.9). */
  adam_beta1: number;
  /** AdamW beta2 (default 0.999). */
  adam_beta2: number;
  /** AdamW epsilon (default 1e-8). */
  adam_epsilon: number;
  /** Clip the global gradient norm to this; 0 disables (default 1). */
  max_grad_norm: number;
  /**
   * On a non-finite loss or gradient norm, skip that update and count it (`nonfinite_steps`) instead of
   * stopping with an error naming the step (default false). Costs one readback per step.
   */
  skip_nonfinite_steps: boolean;
  /** Schedule shape, computed by `schedule.ts` as HF's `get_scheduler` does (default `linear`). */
  lr_scheduler_type: LrSchedulerType;
  /** Scheduler arguments, e.g. `{min_lr_rate: 0.1}` for `cosine_with_min_lr` (default `{}`). */
  lr_scheduler_kwargs: LrSchedulerKwargs;
  /** Warmup steps, or a ratio of the training steps when in (0, 1) as in transformers >= 4.57 (default 0). */
  warmup_steps: number;
  /** Warmup as a ratio of the training steps, rounded up (default 0); exclusive with `warmup_steps`. */
  warmup_ratio: number;
  /** `steps` (default), `epoch` or `no`. */
  logging_strategy: IntervalStrategy;
  /** Steps between logs (default 500); below 1, a ratio of the run's steps, rounded up (HF). */
  logging_steps: number;
  /** Also log after the first step (default false). */
  logging_first_step: boolean;
  /**
   * Metric sinks; YAML may give one string, `all` or `none`. Default `["jsonl"]`: fledge has no
   * third-party integrations (HF's default is `none` of those).
   */
  report_to: ReportTarget[];
  /** `no` (default), `steps` or `epoch`. (`evaluation_strategy` is read as this, with a warning.) */
  eval_strategy: IntervalStrategy;
  /** Steps between evaluations, required with `eval_strategy: steps` (default null); below 1, a ratio. */
  eval_steps: number | null;
  /** `steps` (default), `epoch`, `best` or `no`. */
  save_strategy: SaveStrategy;
  /** Steps between checkpoints (default 500); below 1, a ratio of the run's steps, rounded up. */
  save_steps: number;
  /** Checkpoints kept (the best one is always kept); null keeps all (default). */
  save_total_limit: number | null;
  /** Restore the best checkpoint at the end (default false). */
  load_best_model_at_end: boolean;
  /** Metric compared for the best checkpoint and early stopping; `loss` when needed and unset. */
  metric_for_best_model: string | null;
  /** Whether higher is better; derived from the metric name (`...loss` is lower-better) when null. */
  greater_is_better: boolean | null;
  /** HF `EarlyStoppingCallback`: evaluations without improvement before stopping; null disables. */
  early_stopping_patience: number | null;
  /** HF `EarlyStoppingCallback`: the least change that counts as improvement (default 0). */
  early_stopping_threshold: number;
  /** Recompute activations in backward instead of keeping them (default false). */
  gradient_checkpointing: boolean;
  /**
   * NEFTune (HF `TrainingArguments.neftune_noise_alpha`, TRL SFT): while training, add uniform noise
   * on `[-m, m)`, `m = alpha / sqrt(T · C)`, to the token embeddings (T the row length, C the hidden
   * size); evaluation and generation see none. The paper and TRL suggest 5. Default null (off).
   */
  neftune_noise_alpha: number | null;
  /**
   * Label smoothing of the training and evaluation loss (HF `label_smoothing_factor`, its
   * `LabelSmoother`): `(1 - e) · nll + e · mean over the vocabulary of -log p`, torch's
   * `label_smoothing`. Default 0 (off). SFT's; DPO smooths its own loss with `label_smoothing`.
   */
  label_smoothing_factor: number;
  /** Rejected when true: WebGPU has no bfloat16 (default false). */
  bf16: boolean;
  /** float16 compute where the adapter has shader-f16 (default false). */
  fp16: boolean;
  /** LoRA adapters instead of full fine-tuning; null (default) trains every weight. */
  lora: LoraConfig | null;
  /** 4-bit base weights (QLoRA); null (default) keeps them in float32. */
  quantization: QuantizationConfig | null;
  /**
   * fledge: at the end of an adapter run, also write `model/`, the base with the adapter merged in
   * (PEFT `merge_and_unload`; Axolotl's `merge_lora`, MLX-LM's `fuse`); default false (`adapter/` only).
   */
  merge_adapter: boolean;
}
