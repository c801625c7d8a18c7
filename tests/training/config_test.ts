/**
 * TrainingConfig: defaults, validation (every problem at once, with file, key path and fix),
 * suggestions, legacy migration, YAML/JSON load and save, presets, recommendations, memory plans
 * (which the Trainer runs as they are: one step each).
 */
import { assert, caught } from "../_assert.ts";
import {
  DEFAULT_LORA_CONFIG,
  DEFAULT_TRAINING_CONFIG,
  getMemoryOptimizedConfig,
  getRecommendedConfig,
  getTrainingArgs,
  getTrainingPreset,
  loadTrainingConfig,
  type ModelSize,
  overrideConfig,
  type RecommendedTask,
  saveTrainingConfig,
  TRAINING_CONFIG_KEYS,
  TRAINING_PRESETS,
  type TrainingConfig,
  trainingConfigToYaml,
  validateTrainingConfig,
} from "../../training/config.ts";
import { createBackend } from "../../kernels/backend.ts";
import { presetConfig, type PresetName, PRESETS } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { TextDataset } from "../../data/text_dataset.ts";
import { createTrainer } from "../../training/trainer.ts";

/** The error `f` throws (fails when it returns). */
async function caughtAsync(f: () => Promise<unknown>): Promise<Error> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new assert.AssertionError({ message: "expected an error" });
}

function includesAll(message: string, wants: string[]): void {
  for (const w of wants) assert.ok(message.includes(w), `"${w}" missing in:\n${message}`);
}

const quiet = { warn: () => {} };

Deno.test("DEFAULT_TRAINING_CONFIG has transformers' TrainingArguments defaults and is frozen", () => {
  const d = DEFAULT_TRAINING_CONFIG;
  const hf: Partial<TrainingConfig> = {
    output_dir: "trainer_output",
    seed: 42,
    num_train_epochs: 3,
    max_steps: -1,
    per_device_train_batch_size: 8,
    per_device_eval_batch_size: 8,
    gradient_accumulation_steps: 1,
    learning_rate: 5e-5,
    weight_decay: 0,
    adam_beta1: 0.9,
    adam_beta2: 0.999,
    adam_epsilon: 1e-8,
    max_grad_norm: 1,
    lr_scheduler_type: "linear",
    warmup_steps: 0,
    warmup_ratio: 0,
    logging_strategy: "steps",
    logging_steps: 500,
    eval_strategy: "no",
    save_strategy: "steps",
    save_steps: 500,
    save_total_limit: null,
    load_best_model_at_end: false,
    gradient_checkpointing: false,
    neftune_noise_alpha: null,
    bf16: false,
    fp16: false,
    max_seq_length: 1024, // TRL SFTConfig max_length
    packing: false,
    dataset_text_field: "text",
  };
  for (const [k, v] of Object.entries(hf)) assert.deepEqual(d[k as keyof TrainingConfig], v, k);
  assert.deepEqual(
    { ...DEFAULT_LORA_CONFIG },
    {
      r: 8,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: null,
      bias: "none",
      use_dora: false,
      use_rslora: false,
      modules_to_save: null,
      init_lora_weights: true,
      task_type: null,
    },
  );
  assert.ok(Object.isFrozen(d) && Object.isFrozen(d.report_to) && Object.isFrozen(d.lr_scheduler_kwargs));
  assert.deepEqual(Object.keys(d), [...TRAINING_CONFIG_KEYS]);
});

Deno.test("validateTrainingConfig() returns fresh objects and leaves its input alone", () => {
  const input = { lora: { r: 4, target_modules: ["q_proj"] }, report_to: "all" };
  const before = structuredClone(input);
  const c = validateTrainingConfig(input);
  assert.deepEqual(input, before);
  assert.deepEqual(c.report_to, ["jsonl", "stdout"]);
  c.report_to.push("jsonl");
  (c.lora!.target_modules as string[]).push("v_proj");
  assert.deepEqual(input.lora.target_modules, ["q_proj"]);
  assert.deepEqual(DEFAULT_TRAINING_CONFIG.report_to, ["jsonl"]);
  assert.deepEqual(validateTrainingConfig({}).report_to, ["jsonl"]);
});

Deno.test("validateTrainingConfig() lists every kind of problem at once, each with file, key path and fix", () => {
  const e = caught(() =>
    validateTrainingConfig({
      lr: 1e-4, // unknown key with a suggestion
      learning_rate: -1, // negative
      num_train_epocs: 2, // typo
      per_device_train_batch_size: "8", // quoted number
      packing: "yes", // wrong type
      warmup_ratio: 1.5, // outside [0, 1]
      eval_strategy: "steps", // without eval_steps
      lr_scheduler_type: "cosin", // enum typo
      lora: { rank: 8, lora_dropout: 1 }, // unknown nested key, out of range
      bf16: true, // no bfloat16 on WebGPU
      report_to: "wandb", // no such integration
      optim: "adafactor",
    }, { file: "runs/a/train.yaml", ...quiet })
  );
  assert.ok(e instanceof TypeError, "type problems make it a TypeError");
  includesAll(e.message, [
    "Invalid training config in runs/a/train.yaml: 13 problems",
    "runs/a/train.yaml: lr: unknown key; did you mean learning_rate?",
    "runs/a/train.yaml: learning_rate: must be >= 0, got -1",
    "num_train_epocs: unknown key; did you mean num_train_epochs?",
    `per_device_train_batch_size: expected an integer, got "8" (write 8 without quotes`,
    `packing: expected true or false, got "yes"`,
    "warmup_ratio: must be >= 0 and <= 1, got 1.5",
    `lr_scheduler_type: expected one of "linear"`,
    `did you mean "cosine"?`,
    "lora.rank: unknown key; did you mean r?",
    "lora.lora_dropout: must be >= 0 and < 1, got 1",
    "bf16: WebGPU has no bfloat16, and the Trainer computes in float32; set bf16: false",
    `report_to: fledge has no "wandb" integration`,
    `optim: fledge implements "adamw" and "sgd", got "adafactor"`,
  ]);
  // eval_steps is checked only once eval_strategy and logging_steps are well typed, and they are.
  includesAll(e.message, [
    `eval_steps: eval_strategy "steps" needs eval_steps; set it (HF would reuse logging_steps: eval_steps: 500)`,
  ]);
});

Deno.test("validateTrainingConfig() throws RangeError when every value is well typed", () => {
  const e = caught(() =>
    validateTrainingConfig({
      eval_strategy: "steps",
      eval_steps: 300,
      save_steps: 500,
      load_best_model_at_end: true,
      warmup_steps: 10,
      warmup_ratio: 0.1,
      quantization: { load_in_4bit: true },
      lr_scheduler_type: "cosine",
      lr_scheduler_kwargs: { power: 2 },
      adam_beta2: 1,
      neftune_noise_alpha: -5,
      seed: 2 ** 32, // fledge's PRNG takes 32 bits (it had been refused only at model setup)
    }, { file: "x.yaml" })
  );
  assert.ok(e instanceof RangeError, String(e));
  includesAll(e.message, [
    "7 problems",
    "neftune_noise_alpha: must be >= 0, got -5",
    "seed: must be >= 0 and <= 4294967295, got 4294967296",
    "x.yaml: save_steps: load_best_model_at_end needs save_steps to be a multiple of eval_steps 300, got 500; set save_steps: 600",
    "warmup_ratio: both warmup_steps (10) and warmup_ratio (0.1) are set",
    "quantization: 4-bit base weights are frozen, so training needs adapters (QLoRA); add a lora section",
    `lr_scheduler_kwargs.power: lr_scheduler_type "cosine" takes no power (it takes num_cycles)`,
    "adam_beta2: must be >= 0 and < 1, got 1",
  ]);
});

Deno.test("validateTrainingConfig() checks the cross-field rules of TrainingArguments", () => {
  const cases: [Record<string, unknown>, string][] = [
    [
      { load_best_model_at_end: true },
      `load_best_model_at_end: needs evaluations; set eval_strategy to "steps" or "epoch"`,
    ],
    [
      { load_best_model_at_end: true, eval_strategy: "epoch", save_strategy: "steps" },
      `needs save_strategy to match eval_strategy "epoch" (or be "best"), got "steps"`,
    ],
    [{ save_strategy: "best" }, `save_strategy: "best" compares evaluations`],
    [{ early_stopping_patience: 3 }, "early_stopping_patience: needs evaluations"],
    [{ lr_scheduler_type: "constant", warmup_ratio: 0.1 }, `use "constant_with_warmup"`],
    [{ max_steps: -1, num_train_epochs: 0 }, "nothing would be trained"],
    [{ max_steps: 0 }, "max_steps: must be >= 1 (or -1), got 0"],
    [{ fp16: true, backend: "cpu" }, "the cpu backend computes in float32"],
    [
      { resume_from_checkpoint: true, overwrite_output_dir: true },
      "overwrite_output_dir: is true while resume_from_checkpoint",
    ],
    [{ lora: {}, quantization: { load_in_4bit: false } }, "quantizes nothing"],
    [{ lr_scheduler_type: "reduce_lr_on_plateau" }, "is not offered"],
    [{ lr_scheduler_type: "cosine_with_min_lr" }, "needs exactly one of min_lr, min_lr_rate"],
    [{ lora: { init_lora_weights: "pissa" } }, `PEFT's "pissa" initialization is not implemented`],
    [
      { quantization: { load_in_4bit: true, bnb_4bit_compute_dtype: "torch.float16" }, lora: {} },
      `write "float16"`,
    ],
    [{ report_to: ["none", "jsonl"] }, `"none" cannot be combined`],
    [{ warmup_steps: 2.5 }, "warmup_steps: must be a whole number of steps or a ratio in (0, 1)"],
    [{ logging_steps: 2.5 }, "logging_steps: must be a whole number of steps or a ratio in (0, 1)"],
    // a shape no Hugging Face config.json holds: it had trained, then failed at its first save
    [
      { model: "tiny", model_config: { partial_rotary_factor: 0.5 } },
      `model_config: arch "llama": partial_rotary_factor 0.5 is read by HF's phi3 only`,
    ],
    [{ logging_steps: 0 }, "logging_steps: must be > 0, got 0"],
    [{ save_steps: -0.5 }, "save_steps: must be > 0"],
    [{ eval_strategy: "steps", eval_steps: "0.1" }, "eval_steps: expected a number"],
    [
      { eval_strategy: "steps", eval_steps: 0.1, save_steps: 20, load_best_model_at_end: true },
      "needs save_steps 20 and eval_steps 0.1 both as whole numbers of steps or both as ratios",
    ],
    [
      { eval_strategy: "steps", eval_steps: 0.2, save_steps: 0.3, load_best_model_at_end: true },
      "needs save_steps to be a multiple of eval_steps 0.2, got 0.3; set save_steps: 0.4",
    ],
  ];
  for (const [obj, want] of cases) {
    const e = caught(() => validateTrainingConfig(obj, { file: "t.yaml" }));
    assert.ok(e instanceof RangeError || e instanceof TypeError);
    assert.ok(e.message.includes(want), `${JSON.stringify(obj)}: "${want}" missing in:\n${e.message}`);
  }
});

Deno.test("validateTrainingConfig() takes logging_steps, eval_steps and save_steps as ratios below 1 (HF)", () => {
  const c = validateTrainingConfig({
    logging_steps: 0.1,
    eval_strategy: "steps",
    eval_steps: 0.1,
    save_steps: 0.3,
    load_best_model_at_end: true,
  });
  assert.deepEqual([c.logging_steps, c.eval_steps, c.save_steps], [0.1, 0.1, 0.3]);
});

Deno.test("validateTrainingConfig() suggests HF names for other tools' keys but never takes them", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ lr: 1e-4 }, "lr: unknown key; did you mean learning_rate?"],
    [{ learnig_rate: 1e-4 }, "did you mean learning_rate?"],
    [{ iters: 100 }, "did you mean max_steps (MLX-LM iters)?"],
    [{ batch_size: 4 }, "did you mean per_device_train_batch_size?"],
    [{ steps_per_eval: 10 }, "did you mean eval_steps (MLX-LM steps_per_eval)?"],
    [{ lora_alpha: 16 }, "did you mean lora (a section: lora: {lora_alpha: 16})?"],
    [{ load_in_8bit: true }, "fledge quantizes to 4 bits only"],
    [{ lora: { alpha: 16 } }, "lora.alpha: unknown key; did you mean lora_alpha?"],
    [{ lora: { scale: 2 } }, "did you mean lora_alpha (MLX-LM scale = lora_alpha / r)?"],
    [
      { quantization: { quant_type: "nf4" } },
      "quantization.quant_type: unknown key; did you mean bnb_4bit_quant_type?",
    ],
    [{ lr_scheduler_kwargs: { min_lr_ratee: 0.1 } }, "did you mean min_lr_rate?"],
    [{ zzz_totally_unknown: 1 }, "zzz_totally_unknown: unknown key (rename or remove it"],
  ];
  for (const [obj, want] of cases) {
    const e = caught(() => validateTrainingConfig(obj, { file: "t.yaml" }));
    assert.ok(e instanceof TypeError, `${JSON.stringify(obj)}: ${e}`);
    assert.ok(e.message.includes(want), `${JSON.stringify(obj)}: "${want}" missing in:\n${e.message}`);
  }
});

Deno.test("validateTrainingConfig() migrates legacy names with one warning line each", () => {
  const lines: string[] = [];
  const c = validateTrainingConfig(
    { evaluation_strategy: "epoch", max_seq_len: 512, per_gpu_train_batch_size: 4 },
    { file: "old.yaml", warn: (l) => lines.push(l) },
  );
  assert.equal(c.eval_strategy, "epoch");
  assert.equal(c.max_seq_length, 512);
  assert.equal(c.per_device_train_batch_size, 4);
  assert.equal(lines.length, 3);
  assert.ok(lines.every((l) => !l.includes("\n") && l.startsWith("Warning: old.yaml: ")), lines.join("\n"));
  includesAll(lines[0], [`"evaluation_strategy" is deprecated`, `read as "eval_strategy"`, "Rename it"]);
  // Aliases of the sequence length.
  const notes: string[] = [];
  assert.equal(
    validateTrainingConfig({ block_size: 256 }, { warn: (l) => notes.push(l) }).max_seq_length,
    256,
  );
  // TRL's own current name is read without a word (the note had told TRL users to rename it to the
  // name TRL 0.20 removed)
  assert.equal(
    validateTrainingConfig({ max_length: 128 }, { warn: (l) => notes.push(l) }).max_seq_length,
    128,
  );
  assert.equal(notes.length, 1);
  // HF optimizer names of torch AdamW.
  assert.equal(
    validateTrainingConfig({ optim: "adamw_torch_fused" }, { warn: (l) => notes.push(l) }).optim,
    "adamw",
  );
  assert.equal(notes.length, 2);
  assert.match(
    caught(() => validateTrainingConfig({ max_length: null }, quiet)).message,
    /max_length: null \(no truncation\) is not supported: give a length in tokens \(default 1024\)/,
  );
  // Old and new name together is ambiguous.
  const e = caught(() =>
    validateTrainingConfig({ evaluation_strategy: "no", eval_strategy: "epoch" }, quiet)
  );
  assert.ok(
    e.message.includes(`both "evaluation_strategy" and "eval_strategy" are set; keep only "eval_strategy"`),
  );
});

Deno.test("validateTrainingConfig() derives metric_for_best_model and greater_is_better as HF does", () => {
  const best = { eval_strategy: "epoch", save_strategy: "epoch", load_best_model_at_end: true } as const;
  const a = validateTrainingConfig(best);
  assert.equal(a.metric_for_best_model, "loss");
  assert.equal(a.greater_is_better, false);
  const b = validateTrainingConfig({ ...best, metric_for_best_model: "eval_accuracy" });
  assert.equal(b.greater_is_better, true);
  const c = validateTrainingConfig({ ...best, metric_for_best_model: "rougeL", greater_is_better: false });
  assert.equal(c.greater_is_better, false);
  const d = validateTrainingConfig({});
  assert.equal(d.metric_for_best_model, null);
  assert.equal(d.greater_is_better, null);
  assert.equal(validateTrainingConfig(a).greater_is_better, false, "idempotent");
});

Deno.test("validateTrainingConfig() rejects a non-object with a hint", () => {
  const e = caught(() => validateTrainingConfig(null, { file: "empty.yaml" }));
  assert.ok(e instanceof TypeError);
  includesAll(e.message, ["empty.yaml", "(is the file empty?)"]);
  assert.ok(caught(() => validateTrainingConfig([1, 2])) instanceof TypeError);
});

Deno.test("saveTrainingConfig() and loadTrainingConfig() round-trip every preset and a custom config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const custom = getTrainingArgs({
      model: "gpt2-124m",
      dataset: "data/train.jsonl",
      learning_rate: 3e-4,
      adam_epsilon: 1e-12,
      num_train_epochs: 1.5,
      lr_scheduler_type: "cosine_with_min_lr",
      lr_scheduler_kwargs: { num_cycles: 0.5, min_lr: 1e-6 },
      warmup_steps: 0.05,
      resume_from_checkpoint: "runs/x/checkpoints/step-100",
      report_to: "none",
      lora: {
        r: 16,
        target_modules: ["c_attn", "c_proj"],
        modules_to_save: ["lm_head"],
        init_lora_weights: "gaussian",
      },
    });
    const configs: [string, TrainingConfig][] = [
      ["custom", custom],
      ...Object.entries(TRAINING_PRESETS).map(([k, v]) =>
        [k, v as TrainingConfig] as [string, TrainingConfig]
      ),
    ];
    for (const [name, c] of configs) {
      const path = `${dir}/${name}.yaml`;
      await saveTrainingConfig(c, path);
      const back = await loadTrainingConfig(path);
      assert.deepEqual(back, c, name);
      assert.equal(JSON.stringify(back), JSON.stringify(c), `${name}: key order`);
      await saveTrainingConfig(back, `${path}.2.yaml`);
      assert.equal(
        await Deno.readTextFile(`${path}.2.yaml`),
        await Deno.readTextFile(path),
        `${name}: stable bytes`,
      );
    }
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(names.every((n) => !n.endsWith(".tmp")), `temporary files left: ${names}`);
    const text = await Deno.readTextFile(`${dir}/custom.yaml`);
    const keys = text.split("\n").filter((l) => /^[a-z_0-9]+:/.test(l)).map((l) => l.split(":")[0]);
    assert.deepEqual(keys, [...TRAINING_CONFIG_KEYS]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveTrainingConfig() refuses an invalid config and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = { ...getTrainingArgs(), learning_rate: -1 };
    const e = await caughtAsync(() => saveTrainingConfig(bad, `${dir}/c.yaml`));
    assert.ok(e instanceof RangeError);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTrainingConfig() reads JSON and YAML, and puts file:line in validation messages", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify({ learning_rate: 1e-3, lora: { r: 2 } }));
    const j = await loadTrainingConfig(`${dir}/c.json`);
    assert.equal(j.learning_rate, 1e-3);
    assert.equal(j.lora?.lora_alpha, 8);
    // YAML 1.2: 1e-5 is a number (PyYAML would read a string), `no` is a string.
    await Deno.writeTextFile(`${dir}/c.yml`, "learning_rate: 1e-5\neval_strategy: no\nsave_strategy: no\n");
    const y = await loadTrainingConfig(`${dir}/c.yml`);
    assert.equal(y.learning_rate, 1e-5);
    assert.equal(y.save_strategy, "no");
    await Deno.writeTextFile(`${dir}/bad.yaml`, "seed: 1\nlr: 0.1\nlora:\n  r: 8\n  alpha: 16\n");
    const e = await caughtAsync(() => loadTrainingConfig(`${dir}/bad.yaml`));
    includesAll(e.message, [
      `${dir}/bad.yaml:2: lr: unknown key`,
      `${dir}/bad.yaml:5: lora.alpha: unknown key`,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTrainingConfig() reports YAML and JSON syntax errors as SyntaxError with file:line:col", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.yaml`, "seed: 1\nlora: {r: 8\nlearning_rate: [1\n");
    const e = await caughtAsync(() => loadTrainingConfig(`${dir}/a.yaml`));
    assert.ok(e instanceof SyntaxError, String(e));
    assert.match(e.message, new RegExp(`Cannot parse training config .*a\\.yaml: \\d+ YAML errors?`));
    assert.match(e.message, new RegExp(`a\\.yaml:\\d+:\\d+: `));
    await Deno.writeTextFile(`${dir}/dup.yaml`, "seed: 1\nseed: 2\n");
    const d = await caughtAsync(() => loadTrainingConfig(`${dir}/dup.yaml`));
    assert.ok(d instanceof SyntaxError && d.message.includes("dup.yaml:2:1:"), d.message);
    await Deno.writeTextFile(`${dir}/b.json`, '{\n  "seed": 1,\n  "lr" 2\n}');
    const j = await caughtAsync(() => loadTrainingConfig(`${dir}/b.json`));
    assert.ok(j instanceof SyntaxError && /b\.json: .* at line 3, column \d+/.test(j.message), j.message);
    const x = await caughtAsync(() => loadTrainingConfig(`${dir}/c.toml`));
    assert.ok(x instanceof SyntaxError && x.message.includes("use .yaml, .yml or .json"));
    const n = await caughtAsync(() => loadTrainingConfig(`${dir}/missing.yaml`));
    assert.ok(n instanceof Deno.errors.NotFound && n.message.includes("missing.yaml"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainingConfigToYaml() writes sections in PEFT field order", () => {
  const text = trainingConfigToYaml(getTrainingArgs({ lora: { use_dora: true, r: 4 } }));
  const lora = text.slice(text.indexOf("lora:"));
  assert.ok(
    lora.indexOf("  r: 4") < lora.indexOf("  lora_alpha:") &&
      lora.indexOf("lora_alpha") < lora.indexOf("use_dora"),
  );
});

Deno.test("getTrainingArgs() applies overrides on the defaults, with partial sections", () => {
  const c = getTrainingArgs({ max_steps: 10, lora: { r: 32 }, quantization: { load_in_4bit: true } });
  assert.equal(c.max_steps, 10);
  assert.equal(c.learning_rate, 5e-5);
  assert.deepEqual(c.lora, { ...DEFAULT_LORA_CONFIG, r: 32 });
  assert.equal(c.quantization?.bnb_4bit_quant_type, "nf4");
  const e = caught(() => getTrainingArgs({ lr: 1 } as Record<string, unknown>));
  assert.ok(e.message.includes("getTrainingArgs(overrides): lr: unknown key; did you mean learning_rate?"));
});

Deno.test("TRAINING_PRESETS validate, are frozen, and getTrainingPreset() merges sections", () => {
  for (const [name, preset] of Object.entries(TRAINING_PRESETS)) {
    assert.deepEqual(validateTrainingConfig(preset), preset, name);
    assert.ok(Object.isFrozen(preset) && (preset.lora === null || Object.isFrozen(preset.lora)), name);
  }
  assert.equal(TRAINING_PRESETS.qlora.quantization?.bnb_4bit_quant_type, "nf4");
  assert.equal(TRAINING_PRESETS.pretrain.lr_scheduler_type, "cosine_with_min_lr");
  const c = getTrainingPreset("sft-lora", { lora: { r: 8 }, max_steps: 5 });
  assert.equal(c.lora?.r, 8);
  assert.equal(c.lora?.lora_alpha, 32);
  assert.equal(c.max_steps, 5);
  assert.equal(getTrainingPreset("sft-lora", { lora: null }).lora, null);
  const e = caught(() => getTrainingPreset("q-lora" as "qlora"));
  assert.ok(e instanceof RangeError && e.message.includes(`did you mean "qlora"?`), e.message);
});

Deno.test("getRecommendedConfig() gives a valid config for every task and size", () => {
  const tasks: RecommendedTask[] = ["summarization", "translation", "classification", "pretraining"];
  const sizes: ModelSize[] = ["tiny", "small", "medium", "large"];
  for (const task of tasks) {
    for (const size of sizes) {
      const c = getRecommendedConfig(task, { model_size: size });
      assert.deepEqual(validateTrainingConfig(c), c, `${task}/${size}`);
      assert.equal(c.lora !== null, task !== "pretraining" && size === "large", `${task}/${size} LoRA`);
    }
  }
  assert.equal(getRecommendedConfig("translation").max_seq_length, 256);
  assert.equal(getRecommendedConfig("pretraining", { model_size: "medium" }).model, "gpt2-124m");
  assert.equal(getRecommendedConfig("summarization", { model_size: 7e9 }).lora?.r, 16);
  assert.ok(
    caught(() => getRecommendedConfig("summarisation" as RecommendedTask)).message.includes(
      `"summarization"`,
    ),
  );
  assert.ok(caught(() => getRecommendedConfig("translation", { model_size: -1 })) instanceof RangeError);
  assert.ok(
    caught(() => getRecommendedConfig("translation", { model_size: "huge" as ModelSize })) instanceof
      RangeError,
  );
});

Deno.test("getMemoryOptimizedConfig() keeps the effective batch while shrinking the micro-batch", () => {
  const c = getTrainingArgs({
    per_device_train_batch_size: 24,
    gradient_accumulation_steps: 2,
    max_seq_length: 1024,
  });
  const p = getMemoryOptimizedConfig(c, { memory_gb: 4, params: 124e6 });
  const b = p.config.per_device_train_batch_size, g = p.config.gradient_accumulation_steps;
  assert.equal(b * g, 48);
  assert.ok(b < 24 && p.config.gradient_checkpointing && p.estimate.fits, JSON.stringify(p));
  assert.equal(p.config.lora, null, "124M fits fully in 4 GiB");
  assert.ok(p.rationale.some((r) => r.includes("keep the effective batch of 48")), p.rationale.join("\n"));
  assert.equal(c.per_device_train_batch_size, 24, "input untouched");
  assert.ok(p.estimate.total_gb <= p.estimate.budget_gb);
});

Deno.test("getMemoryOptimizedConfig() suggests LoRA, then QLoRA, with reasons", () => {
  const p = getMemoryOptimizedConfig(getTrainingArgs({ per_device_train_batch_size: 4 }), {
    memory_gb: 12,
    params: 7e9,
    seq_len: 2048,
    hidden_size: 4096,
    num_hidden_layers: 32,
    vocab_size: 32000,
  });
  assert.ok(p.config.lora && p.config.quantization?.load_in_4bit, p.rationale.join("\n"));
  assert.equal(p.config.learning_rate, 2e-4);
  assert.ok(p.estimate.fits, p.rationale.join("\n"));
  includesAll(p.rationale.join("\n"), ["LoRA (r 16", "4-bit NF4", "Fits:"]);
  const roomy = getMemoryOptimizedConfig(getTrainingArgs(), { memory_gb: 80, params: 14e6 });
  assert.equal(roomy.rationale.length, 2);
  assert.deepEqual(roomy.config, getTrainingArgs());
  const hopeless = getMemoryOptimizedConfig(getTrainingArgs(), { memory_gb: 1, params: 70e9 });
  assert.equal(hopeless.estimate.fits, false);
  assert.ok(hopeless.rationale.at(-1)!.startsWith("Does not fit"));
  assert.ok(
    caught(() => getMemoryOptimizedConfig(getTrainingArgs(), { memory_gb: 0, params: 1 })) instanceof
      RangeError,
  );
});

/**
 * Train one step with `config` exactly as given (only `max_steps` and `output_dir` changed) on a
 * tiny model of the architecture the config names, with evaluation data when it evaluates.
 * Four blocks fit in one update of every recommendation, so the step ends the epoch and runs the
 * epoch's evaluation, checkpoint and best-model bookkeeping too.
 */
async function trainsOneStep(config: TrainingConfig, what: string): Promise<void> {
  const be = await createBackend("cpu");
  const name = config.model as PresetName;
  assert.ok(Object.hasOwn(PRESETS, name), `${what}: model ${name} is a preset`);
  assert.ok(
    config.max_seq_length <= PRESETS[name].max_position_embeddings,
    `${what}: max_seq_length ${config.max_seq_length} over ${name}'s positions`,
  );
  const model = Transformer.init(
    presetConfig(name, {
      vocab_size: 32,
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      head_dim: 16,
      intermediate_size: 64,
      max_position_embeddings: 16,
      rope_scaling: null,
      bos_token_id: 1,
      eos_token_id: 2,
      pad_token_id: null,
    }),
    be,
  );
  const ids = Int32Array.from({ length: 6 * 8 }, (_, i) => (i * 7 + 3) % 32);
  const output_dir = await Deno.makeTempDir();
  try {
    const trainer = createTrainer({
      model,
      config: overrideConfig(config, { max_steps: 1, output_dir, overwrite_output_dir: true }),
      train_dataset: new TextDataset(ids.subarray(0, 32), { block_size: 8, source: "train" }),
      eval_dataset: new TextDataset(ids.subarray(32), { block_size: 8, source: "eval" }),
      progress: false,
      log: () => {},
    });
    const result = await trainer.train();
    assert.ok(Number.isFinite(result.final_loss), `${what}: loss ${result.final_loss}`);
    trainer.dispose();
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}\n${JSON.stringify(config)}`);
  } finally {
    model.dispose();
    await Deno.remove(output_dir, { recursive: true });
  }
}

Deno.test("getRecommendedConfig() configs train as they are, for every task, size and memory budget", async () => {
  const tasks: RecommendedTask[] = ["summarization", "translation", "classification", "pretraining"];
  const cases: [ModelSize | number, number | undefined][] = [
    ["tiny", undefined],
    ["small", undefined],
    ["small", 0.5],
    ["medium", undefined],
    ["medium", 2],
    ["large", undefined],
    ["large", 4],
    [7e9, 16],
  ];
  const seen = { lora: 0, qlora: 0, checkpointing: 0, micro: 0 };
  for (const task of tasks) {
    for (const [model_size, memory_gb] of cases) {
      const c = getRecommendedConfig(task, { model_size, memory_gb });
      assert.deepEqual(validateTrainingConfig(c), c);
      assert.ok(!c.fp16 && !c.bf16, `${task}/${model_size}: float32`);
      if (c.lora) seen.lora++;
      if (c.quantization) seen.qlora++;
      if (c.gradient_checkpointing) seen.checkpointing++;
      if (c.per_device_train_batch_size === 1) seen.micro++;
      // pretraining packs the classic way: text concatenated and cut into blocks
      assert.ok(!c.packing || c.packing_strategy === "wrapped", `${task}/${model_size}: packing`);
      if (task === "pretraining") {
        assert.equal(c.lora, null, `${model_size}/${memory_gb}: pretraining trains every weight`);
      }
      await trainsOneStep(c, `getRecommendedConfig("${task}", ${JSON.stringify({ model_size, memory_gb })})`);
    }
  }
  // the budgets above exercise every kind of change the memory plan makes
  assert.ok(seen.lora && seen.qlora && seen.checkpointing && seen.micro, JSON.stringify(seen));
});

Deno.test("getMemoryOptimizedConfig() replaces settings the Trainer refuses, and its plans train", async () => {
  const refused = getTrainingArgs({
    max_seq_length: 128,
    fp16: true,
    lora: { r: 4, target_modules: ["q_proj", "v_proj"] },
    quantization: { load_in_4bit: true, bnb_4bit_quant_type: "fp4", bnb_4bit_compute_dtype: "float16" },
  }, quiet);
  const p = getMemoryOptimizedConfig(refused, { memory_gb: 80, params: 0.5e6 });
  assert.equal(p.config.fp16, false);
  assert.equal(p.config.quantization?.bnb_4bit_quant_type, "nf4");
  assert.equal(p.config.quantization?.bnb_4bit_compute_dtype, "float32");
  includesAll(p.rationale.slice(0, 3).join("\n"), ["fp16 -> false", "fp4 -> nf4", "float16 -> float32"]);
  assert.ok(p.estimate.fits && p.rationale.at(-1)!.startsWith("Fits"), p.rationale.join("\n"));
  await trainsOneStep({ ...p.config, model: "tiny" }, "getMemoryOptimizedConfig(fp16, fp4, float16)");
  for (const memory_gb of [0.05, 0.2, 1]) {
    const q = getMemoryOptimizedConfig(
      getTrainingArgs({ model: "small", per_device_train_batch_size: 16, max_seq_length: 512 }),
      { memory_gb, params: 14e6, hidden_size: 384, num_hidden_layers: 6, vocab_size: 8192 },
    );
    await trainsOneStep(q.config, `getMemoryOptimizedConfig(small, ${memory_gb} GiB)`);
  }
});

Deno.test("validateTrainingConfig() refuses settings the rest of the config switches off (HF ignores them)", () => {
  const problems = (o: Record<string, unknown>) => {
    try {
      validateTrainingConfig(o, { file: "run.yaml" });
    } catch (e) {
      return (e as Error).message;
    }
    return "";
  };
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { early_stopping_threshold: 0.01 },
      /early_stopping_threshold: is read by early stopping, which early_stopping_patience turns on; remove early_stopping_threshold/,
    ],
    [
      { save_strategy: "no", save_total_limit: 2 },
      /save_total_limit: limits saved checkpoints, and save_strategy is "no"/,
    ],
    [{ packing_strategy: "wrapped" }, /packing_strategy: says how to pack, and packing is false/],
    [{ optim: "sgd", adam_beta2: 0.95 }, /adam_beta2: is AdamW's, and optim is "sgd"/],
    [{ eval_steps: 10 }, /eval_steps: is for evaluations, and eval_strategy is "no"/],
    [{ max_eval_samples: 5 }, /max_eval_samples: is for evaluations, and eval_strategy is "no"/],
    [
      { eval_strategy: "epoch", eval_steps: 5 },
      /eval_steps: counts steps between evaluations, and eval_strategy is "epoch"/,
    ],
    [
      { max_steps: 2, num_train_epochs: 1 },
      /num_train_epochs: counts epochs, and max_steps 2 sets the length/,
    ],
    [
      { save_strategy: "no", save_steps: 5 },
      /save_steps: counts steps between checkpoints, and save_strategy is "no"/,
    ],
    [
      { logging_strategy: "epoch", logging_steps: 5 },
      /logging_steps: counts steps between logs, and logging_strategy is "epoch"/,
    ],
    [
      { logging_strategy: "no", logging_first_step: true },
      /logging_first_step: logs the first step, and logging_strategy is "no"/,
    ],
    [
      { greater_is_better: true },
      /greater_is_better: says which way metric_for_best_model improves, and none is set/,
    ],
    [
      { metric_for_best_model: "loss" },
      /metric_for_best_model: is for evaluations, and eval_strategy is "no"/,
    ],
    [
      { loss_type: "hinge", label_smoothing: 0.2 },
      /label_smoothing: is cDPO's, for loss_type sigmoid, not hinge/,
    ],
    [
      { allow_changed_data: true },
      /allow_changed_data: lets a resume go on with changed data, and nothing resumes/,
    ],
    [
      { resume_from_checkpoint: "runs/a/checkpoints/step-2", overwrite_output_dir: true },
      /overwrite_output_dir: is true while resume_from_checkpoint resumes a run, which keeps output_dir's files/,
    ],
  ];
  for (const [o, re] of cases) assert.match(problems(o), re, JSON.stringify(o));
  // switched on, each is read
  for (
    const o of [
      { early_stopping_threshold: 0.01, early_stopping_patience: 2, eval_strategy: "steps", eval_steps: 5 },
      { save_total_limit: 2 },
      { packing: true, packing_strategy: "wrapped" },
      { optim: "adamw", adam_beta2: 0.95 },
      { eval_strategy: "steps", eval_steps: 10, max_eval_samples: 5 },
      { max_steps: 2 },
      { save_steps: 5 },
      { logging_steps: 5, logging_first_step: true },
      { metric_for_best_model: "loss", greater_is_better: false, eval_strategy: "steps", eval_steps: 5 },
    ]
  ) {
    assert.equal(problems(o), "", JSON.stringify(o));
  }
  // across layers (flags over a file, a recipe's overrides over its config) the later length wins:
  // the earlier one's other setting is dropped, not refused and not silently beaten by max_steps
  const flags = (base: object, o: Record<string, unknown>) =>
    validateTrainingConfig(overrideConfig(base, o), { file: "run.yaml + flags" });
  const epochs = flags({ max_steps: 120 }, { num_train_epochs: 1 });
  assert.deepEqual([epochs.max_steps, epochs.num_train_epochs], [-1, 1]);
  const steps = flags({ num_train_epochs: 5 }, { max_steps: 2 });
  assert.deepEqual([steps.max_steps, steps.num_train_epochs], [2, DEFAULT_TRAINING_CONFIG.num_train_epochs]);
  assert.equal(flags({ num_train_epochs: 5 }, { max_steps: -1 }).num_train_epochs, 5);
  // another metric over a file's: its direction derived again (the file's accuracy said higher)
  const file = validateTrainingConfig(
    {
      metric_for_best_model: "accuracy",
      load_best_model_at_end: true,
      eval_strategy: "steps",
      eval_steps: 1,
    },
    { file: "run.yaml" },
  );
  assert.equal(file.greater_is_better, true);
  assert.equal(flags(file, { metric_for_best_model: "eval_loss" }).greater_is_better, false);
  // a perplexity is lower-better, as a loss (it was derived higher-better: the best model was the worst)
  assert.equal(flags(file, { metric_for_best_model: "perplexity" }).greater_is_better, false);
  assert.equal(flags(file, { metric_for_best_model: "eval_perplexity" }).greater_is_better, false);
  // a section given in part changes only its fields (--lora '{"r": 2}' had reset lora_alpha)
  const lora = validateTrainingConfig({ lora: { r: 4, lora_alpha: 32 } }, { file: "run.yaml" });
  const r2 = flags(lora, { lora: { r: 2 } });
  assert.deepEqual([r2.lora?.r, r2.lora?.lora_alpha], [2, 32]);
  // another schedule drops the old one's kwargs, and {} clears them (both were refused: train:cnn's
  // warmup_stable_decay num_decay_steps stuck to --lr_scheduler_type linear)
  const wsd = validateTrainingConfig(
    { lr_scheduler_type: "warmup_stable_decay", lr_scheduler_kwargs: { num_decay_steps: 10 }, max_steps: 20 },
    { file: "run.yaml" },
  );
  assert.deepEqual(flags(wsd, { lr_scheduler_type: "linear" }).lr_scheduler_kwargs, {});
  assert.deepEqual(
    flags(wsd, { lr_scheduler_kwargs: {}, lr_scheduler_type: "constant" }).lr_scheduler_kwargs,
    {},
  );
  assert.deepEqual(flags(wsd, { lr_scheduler_kwargs: { num_decay_steps: 5 } }).lr_scheduler_kwargs, {
    num_decay_steps: 5,
  });
  assert.equal(flags(lora, { lora: null }).lora, null);
});
