/**
 * Private to `_config_legacy.ts`: how each key of another tool's config maps onto a
 * `TrainingConfig`, one rule per key: nanoGPT's flat `train.py` config, the engine seed's argument
 * names, the LLMBuilder seed's `model` / `training` / `data` / `system` sections and the backend
 * seed's `backend: {type, device, dtype}`. A rule either maps (one printed line `old: v -> new: v`),
 * is a stated no-op (only where fledge has no such choice at all) or refuses with the reason.
 * @module
 */
import { isObject, show } from "../util/problems.ts";

/** Where a rule writes: the mapped fields, the printed lines and the problems. */
export interface Sink {
  /** The whole source object (for rules that read a sibling key). */
  readonly src: Record<string, unknown>;
  /** The section being read (`src` itself for flat keys). */
  readonly section: Record<string, unknown>;
  /** Whether the model is built from a preset (not loaded from a checkpoint). */
  readonly scratch: boolean;
  /** Map `key` (value `v`) to `targets` (`model_config.x` for model fields), with one line. */
  to(key: string, v: unknown, targets: [string, unknown][], note?: string): void;
  /** Like `to`, but yields to any other key that sets the same target (a default such as `type: null`). */
  soft(key: string, v: unknown, targets: [string, unknown][], note?: string): void;
  /** A key with no effect in fledge, with the reason fledge has no such choice. */
  noop(key: string, v: unknown, why: string): void;
  /** A key fledge cannot honour: a problem (exit 2) with the reason and the fix. */
  refuse(key: string, why: string): void;
}

/** One key's rule: `key` is its path in the file (`training.batch_size`), `v` its value. */
export type Rule = (s: Sink, key: string, v: unknown) => void;

/** The legacy formats, as named in messages. */
export type LegacyFormat = "nanoGPT" | "engine seed" | "LLMBuilder" | "backend seed";

const same = (target: string, note?: string): Rule => (s, k, v) => s.to(k, v, [[target, v]], note);

/** A model shape field: `model_config.<field>`; refused when the model is a checkpoint. */
const shape = (fields: string[], note?: string, f: (v: unknown) => unknown = (v) => v): Rule => (s, k, v) => {
  if (!s.scratch) {
    return s.refuse(
      k,
      `the model is loaded from a checkpoint whose shape is its config.json; remove ${k} (nanoGPT ignores it there too)`,
    );
  }
  s.to(k, v, fields.map((t) => [`model_config.${t}`, f(v)]), note);
};

/** Width: the hidden size and the 4x MLP of GPT-2, nanoGPT and LLMBuilder. */
const width: Rule = (s, k, v) => {
  if (!s.scratch) return shape([])(s, k, v);
  if (!Number.isSafeInteger(v)) return s.refuse(k, `expected a whole number of channels, got ${show(v)}`);
  s.to(
    k,
    v,
    [["model_config.hidden_size", v], ["model_config.intermediate_size", 4 * (v as number)]],
    "the MLP is 4 x the width, as in GPT-2",
  );
};

const dropout = shape(
  ["attention_dropout", "resid_pdrop", "embd_pdrop"],
  "one rate for attention, residual and embedding dropout, as GPT-2's three",
);

const bias: Rule = (s, k, v) => {
  if (v === false) {
    return s.refuse(
      k,
      "false has no equivalent: fledge's GPT-2 architecture (Hugging Face GPT2) always has linear and LayerNorm biases; " +
        "set it to true (the GPT-2 checkpoints' setting)",
    );
  }
  shape(["qkv_bias", "o_bias", "mlp_bias"], "linear and LayerNorm biases, as GPT-2")(s, k, v);
};

const batch: Rule = (s, k, v) =>
  s.to(k, v, [["per_device_train_batch_size", v], ["per_device_eval_batch_size", v]]);

/** A device name of torch as fledge's backend. */
const device: Rule = (s, k, v) => {
  if (v === null || v === "auto") {
    return s.soft(k, v, [["backend", "auto"]], "the default: WebGPU when an adapter exists");
  }
  if (v === "cpu") return s.to(k, v, [["backend", "cpu"]]);
  if (typeof v === "string" && /^(cuda(:\d+)?|gpu|mps|webgpu)$/.test(v)) {
    return s.to(k, v, [["backend", "webgpu"]], "the GPU through WebGPU");
  }
  s.refuse(k, `unknown device ${show(v)}; use cpu, cuda, mps, gpu or auto (read as fledge's backend)`);
};

/**
 * A dtype or mixed-precision name as fledge's `fp16`: float32 is what the Trainer computes in;
 * float16 and bfloat16 it cannot train with (no mixed precision), so they are refused here rather
 * than migrated to a config the Trainer then refuses.
 */
const precision: Rule = (s, k, v) => {
  if (v === null) return s.noop(k, v, "null keeps the default, float32 compute");
  if (v === false || (typeof v === "string" && /^(float32|fp32|no|none|full)$/.test(v))) {
    return s.to(k, v, [["fp16", false]], "float32 compute");
  }
  if (v === true || (typeof v === "string" && /^(float16|fp16|half|bfloat16|bf16)$/.test(v))) {
    return s.refuse(
      k,
      `the Trainer computes in float32 (no mixed precision${
        /^b/.test(String(v)) ? "; WebGPU has no bfloat16" : ""
      }); set ${k} to float32`,
    );
  }
  s.refuse(k, `unknown precision ${show(v)}; use float32`);
};

const wandb: Rule = (s, k, v) => {
  if (v === true) {
    return s.refuse(
      k,
      "fledge has no Weights & Biases integration (metrics go to output_dir/metrics.jsonl and curves.svg); set it to false",
    );
  }
  s.noop(k, v, "fledge has no Weights & Biases integration; metrics go to output_dir/metrics.jsonl");
};

const wandbName: Rule = (s, k, v) =>
  s.noop(k, v, "names a Weights & Biases run; fledge has no such integration");

const compile: Rule = (s, k, v) =>
  s.noop(
    k,
    v,
    "torch.compile; fledge's WGSL kernels are always compiled (pipelines cached), there is no eager mode to choose",
  );

const workers: Rule = (s, k, v) =>
  s.noop(k, v, "fledge tokenizes and batches inside the training process; there are no data-loader workers");

/** The nanoGPT learning-rate schedule keys, read together (linear warmup, cosine to min_lr). */
const decayLr: Rule = (s, k, v) => {
  if (v === false) {
    const warm = (s.src.warmup_iters as number) > 0;
    return s.to(k, v, [["lr_scheduler_type", warm ? "constant_with_warmup" : "constant"]]);
  }
  const kw = s.src.min_lr === undefined
    ? [["lr_scheduler_kwargs", { min_lr_rate: 0.1 }] as [string, unknown]]
    : [];
  s.to(
    k,
    v,
    [["lr_scheduler_type", "cosine_with_min_lr"], ...kw],
    "linear warmup, then cosine decay to min_lr" +
      (kw.length ? " (nanoGPT's default learning_rate / 10)" : ""),
  );
};

const lrDecayIters: Rule = (s, k, v) => {
  if (s.src.decay_lr === false) return s.noop(k, v, "decay_lr is false, so there is no decay to time");
  if (v !== s.src.max_iters) {
    return s.refuse(
      k,
      `fledge's cosine decays until max_steps (max_iters ${show(s.src.max_iters)}), not until ${show(v)}; ` +
        `set lr_decay_iters equal to max_iters`,
    );
  }
  s.to(k, v, [["lr_scheduler_type", "cosine_with_min_lr"]], "the cosine ends at max_steps = lr_decay_iters");
};

const minLr: Rule = (s, k, v) => {
  if (s.src.decay_lr === false) return s.noop(k, v, "decay_lr is false, so the rate never decays to min_lr");
  s.to(k, v, [["lr_scheduler_type", "cosine_with_min_lr"], ["lr_scheduler_kwargs", { min_lr: v }]]);
};

const GPT2_CHECKPOINTS = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"];

/** nanoGPT's `train.py` configuration keys (the `config` dict saved in its checkpoints), plus `vocab_size`. */
export const NANOGPT: Readonly<Record<string, Rule>> = {
  out_dir: same("output_dir"),
  eval_interval: (s, k, v) =>
    s.to(
      k,
      v,
      [
        ["eval_strategy", "steps"],
        ["eval_steps", v],
        ...(s.src.always_save_checkpoint === false ? [] : [[
          "save_steps",
          v,
        ] as [string, unknown]]),
      ],
      "nanoGPT evaluates, and checkpoints, every eval_interval iterations",
    ),
  log_interval: same("logging_steps"),
  eval_iters: (s, k, v) => {
    const b = s.src.batch_size ?? 12;
    if (!Number.isSafeInteger(v) || !Number.isSafeInteger(b)) {
      return s.refuse(
        k,
        `expected whole numbers for eval_iters and batch_size, got ${show(v)} and ${show(b)}`,
      );
    }
    s.to(
      k,
      v,
      [["max_eval_samples", (v as number) * (b as number)]],
      "eval_iters x batch_size: the first validation documents, where nanoGPT samples as many random blocks; " +
        "needs a dataset folder with a validation split file",
    );
  },
  eval_only: (s, k, v) =>
    v === true
      ? s.refuse(k, "train evaluates while training; to only evaluate, run `deno task cli eval` on the model")
      : s.noop(k, v, "false asks to train, which is what `deno task cli train` does"),
  always_save_checkpoint: (s, k, v) =>
    v === false
      ? s.to(
        k,
        v,
        [["save_strategy", "best"], ["metric_for_best_model", "eval_loss"]],
        "a checkpoint only when the validation loss improves",
      )
      : s.to(k, v, [["save_strategy", "steps"]], "a checkpoint at every evaluation"),
  init_from: (s, k, v) => {
    if (v === "scratch") {
      return s.to(
        k,
        v,
        [["model", "gpt2-124m"]],
        "GPT-2's architecture from random weights, reshaped by model_config",
      );
    }
    if (v === "resume") {
      return s.to(
        k,
        v,
        [["resume_from_checkpoint", true]],
        "the latest fledge checkpoint in output_dir/checkpoints (nanoGPT's ckpt.pt is not read)",
      );
    }
    if (typeof v === "string" && GPT2_CHECKPOINTS.includes(v)) {
      return s.to(k, v, [["model", `openai-community/${v}`]], "the Hugging Face checkpoint");
    }
    s.refuse(k, `expected scratch, resume or ${GPT2_CHECKPOINTS.join(", ")}, got ${show(v)}`);
  },
  wandb_log: wandb,
  wandb_project: wandbName,
  wandb_run_name: wandbName,
  dataset: same(
    "dataset",
    "nanoGPT's data/<dataset>/train.bin is pre-tokenized; fledge reads text: a file, folder or hub id",
  ),
  gradient_accumulation_steps: same("gradient_accumulation_steps"),
  batch_size: batch,
  block_size: (s, k, v) =>
    s.to(
      k,
      v,
      [["max_seq_length", v], ...(s.scratch ? [["model_config.max_position_embeddings", v]] : [])] as [
        string,
        unknown,
      ][],
    ),
  vocab_size: shape(["vocab_size"]),
  n_layer: shape(["num_hidden_layers"]),
  n_head: shape(["num_attention_heads"]),
  n_embd: width,
  dropout,
  bias,
  learning_rate: same("learning_rate"),
  max_iters: same("max_steps"),
  weight_decay: same("weight_decay", "biases and norm weights are not decayed, as nanoGPT's 2-D-only rule"),
  beta1: same("adam_beta1"),
  beta2: same("adam_beta2"),
  grad_clip: same("max_grad_norm", "0 disables clipping in both"),
  decay_lr: decayLr,
  warmup_iters: same("warmup_steps"),
  lr_decay_iters: lrDecayIters,
  min_lr: minLr,
  backend: (s, k, v) =>
    typeof v === "string" && ["nccl", "gloo", "mpi"].includes(v)
      ? s.noop(k, v, "torch.distributed's process-group backend; fledge trains on one device, with no DDP")
      : s.to(k, v, [["backend", v]]),
  device,
  dtype: precision,
  compile,
};

/** The engine seed's argument names (and the common ones of its era) that are not fledge's. */
export const ENGINE: Readonly<Record<string, Rule>> = {
  n_epochs: same("num_train_epochs"),
  gradient_clip_norm: same("max_grad_norm"),
  use_wandb: wandb,
  random_seed: same("seed"),
  use_amp: precision,
  mixed_precision: precision,
  train_batch_size: same("per_device_train_batch_size"),
  eval_batch_size: same("per_device_eval_batch_size"),
  num_workers: workers,
  dataloader_num_workers: workers,
  checkpoint_dir: same("output_dir"),
};

/** LLMBuilder's `model:` section: a GPT (LayerNorm, learned positions, GELU MLP, biases). */
export const LLMBUILDER_MODEL: Readonly<Record<string, Rule>> = {
  vocab_size: shape(["vocab_size"]),
  num_layers: shape(["num_hidden_layers"]),
  num_heads: shape(["num_attention_heads"]),
  embedding_dim: width,
  max_seq_length: (s, k, v) => {
    // data.block_size, when given, is the training length; this is then only the model's limit.
    const block = isObject(s.src.data) && s.src.data.block_size !== undefined;
    const t: [string, unknown][] = block ? [] : [["max_seq_length", v]];
    if (s.scratch) t.push(["model_config.max_position_embeddings", v]);
    if (t.length) s.to(k, v, t);
    else shape([])(s, k, v);
  },
  dropout,
  bias,
  model_type: (s, k, v) =>
    v === "gpt"
      ? s.to(
        k,
        v,
        [["model", "gpt2-124m"]],
        "GPT-2's architecture from random weights, reshaped by model_config",
      )
      : s.refuse(k, `fledge builds LLMBuilder's "gpt" model; got ${show(v)}`),
  activation: (s, k, v) => {
    const act = ({ gelu: "gelu", gelu_new: "gelu_new", relu: "relu", silu: "silu", swish: "silu" } as Record<
      string,
      string
    >)[String(v)];
    if (!act) return s.refuse(k, `expected gelu, gelu_new, relu, silu or swish, got ${show(v)}`);
    shape(["hidden_act"])(s, k, act);
  },
  layer_norm_eps: shape(["norm_eps"]),
  initializer_range: shape(["initializer_range"]),
  tie_word_embeddings: shape(["tie_word_embeddings"]),
  gradient_checkpointing: same("gradient_checkpointing"),
  use_cache: (s, k, v) =>
    s.noop(k, v, "a generation setting; fledge's generate always decodes with a KV cache"),
};

/** LLMBuilder's `training:` section. */
export const LLMBUILDER_TRAINING: Readonly<Record<string, Rule>> = {
  batch_size: batch,
  num_epochs: same("num_train_epochs"),
  max_steps: same("max_steps"),
  learning_rate: same("learning_rate"),
  warmup_steps: same("warmup_steps"),
  weight_decay: same("weight_decay"),
  max_grad_norm: same("max_grad_norm"),
  gradient_clip: same("max_grad_norm"),
  gradient_accumulation_steps: same("gradient_accumulation_steps"),
  save_every: (s, k, v) => s.to(k, v, [["save_strategy", "steps"], ["save_steps", v]]),
  eval_every: (s, k, v) => s.to(k, v, [["eval_strategy", "steps"], ["eval_steps", v]]),
  log_every: (s, k, v) => s.to(k, v, [["logging_strategy", "steps"], ["logging_steps", v]]),
  optimizer: (s, k, v) => {
    if (v === "adamw" || v === "sgd") return s.to(k, v, [["optim", v]]);
    if (v === "adam") {
      return s.refuse(
        k,
        "fledge has AdamW (decoupled weight decay), not Adam with L2 decay; set optimizer: adamw (the same update when weight_decay is 0)",
      );
    }
    s.refuse(k, `fledge implements adamw and sgd, got ${show(v)}`);
  },
  scheduler: (s, k, v) =>
    typeof v === "string" && ["cosine", "linear", "constant", "polynomial"].includes(v)
      ? s.to(k, v, [["lr_scheduler_type", v]])
      : s.refuse(k, `expected cosine, linear, constant or polynomial, got ${show(v)}`),
  beta1: same("adam_beta1"),
  beta2: same("adam_beta2"),
  eps: same("adam_epsilon"),
  mixed_precision: precision,
  dataloader_num_workers: workers,
  pin_memory: (s, k, v) =>
    s.noop(
      k,
      v,
      "pinned host memory is a CUDA data-loader setting; WebGPU uploads through its own staging buffers",
    ),
};

/** LLMBuilder's `data:` section (the keys with a fledge meaning). */
export const LLMBUILDER_DATA: Readonly<Record<string, Rule>> = {
  block_size: same("max_seq_length"),
  seed: same("data_seed"),
};

/** LLMBuilder's `system:` section. */
export const LLMBUILDER_SYSTEM: Readonly<Record<string, Rule>> = {
  device,
  seed: same("seed"),
  deterministic: (s, k, v) =>
    s.noop(
      k,
      v,
      "fledge's kernels always reduce in a fixed order (no float atomics), so a seed repeats a run on one backend; there is no faster nondeterministic mode",
    ),
  compile,
  output_dir: same("output_dir"),
  num_gpus: (s, k, v) =>
    v === 1
      ? s.noop(k, v, "fledge trains on one device")
      : s.refuse(k, `fledge trains on one device; set num_gpus: 1`),
  distributed: (s, k, v) =>
    v === false
      ? s.noop(k, v, "fledge trains on one device")
      : s.refuse(k, "fledge has no distributed training; set distributed: false"),
};

/** The backend seed's `backend:` section; `type: null` is the default. */
export const BACKEND_SECTION: Readonly<Record<string, Rule>> = {
  type: (s, k, v) => {
    if (v === null || v === "auto") {
      return s.soft(k, v, [["backend", "auto"]], "the default: WebGPU when an adapter exists, else an error");
    }
    if (v === "webgpu" || v === "cpu") return s.to(k, v, [["backend", v]]);
    s.refuse(k, `fledge's backends are webgpu and cpu (null or auto picks), got ${show(v)}`);
  },
  device,
  dtype: precision,
};

/** Top-level keys that are sections of a structured config when their value is a mapping. */
export const SECTIONS: Readonly<
  Record<string, { format: LegacyFormat; rules: Readonly<Record<string, Rule>> }>
> = {
  model: { format: "LLMBuilder", rules: LLMBUILDER_MODEL },
  training: { format: "LLMBuilder", rules: LLMBUILDER_TRAINING },
  data: { format: "LLMBuilder", rules: LLMBUILDER_DATA },
  system: { format: "LLMBuilder", rules: LLMBUILDER_SYSTEM },
  backend: { format: "backend seed", rules: BACKEND_SECTION },
};
