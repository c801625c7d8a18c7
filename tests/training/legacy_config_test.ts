/** Legacy configs (nanoGPT, LLMBuilder, engine and backend seeds) read as TrainingConfig, and `model_config`. */
import { join } from "node:path";
import { presetConfig } from "../../models/config.ts";
import { getTrainingArgs, loadTrainingConfig, validateTrainingConfig } from "../../training/config.ts";
import {
  isLegacyTrainingConfig,
  migrateConfig,
  migrateConfigFile,
  migrationToYaml,
} from "../../training/legacy_config.ts";
import { assert, caught } from "../_assert.ts";

Deno.test("migrateConfig() reads nanoGPT's schedule keys as a cosine to min_lr over max_steps", () => {
  const m = migrateConfig({
    learning_rate: 6e-4,
    max_iters: 600,
    decay_lr: true,
    warmup_iters: 20,
    lr_decay_iters: 600,
    min_lr: 6e-5,
  });
  assert.equal(m.config.lr_scheduler_type, "cosine_with_min_lr");
  assert.deepEqual(m.config.lr_scheduler_kwargs, { min_lr: 6e-5 });
  assert.equal(m.config.warmup_steps, 20);
  assert.equal(m.config.max_steps, 600);
  const constant = migrateConfig({ decay_lr: false, warmup_iters: 10, min_lr: 1e-5 });
  assert.equal(constant.config.lr_scheduler_type, "constant_with_warmup");
  assert.ok(constant.mapping.some((l) => l.startsWith("min_lr: 0.00001 -> no-op: decay_lr is false")));
  const e = caught(() => migrateConfig({ max_iters: 600, lr_decay_iters: 500 }, { file: "old.json" }));
  assert.ok(e instanceof RangeError);
  assert.match(e.message, /lr_decay_iters: fledge's cosine decays until max_steps \(max_iters 600\)/);
});

Deno.test("migrateConfig() refuses what fledge cannot honour and lists every unknown key at once", () => {
  const e = caught(() =>
    migrateConfig(
      { n_layer: 2, bias: false, dtype: "bfloat16", wandb_log: true, flash: 1, model: { num_layerz: 2 } },
      { file: "x.yaml" },
    )
  );
  assert.ok(e instanceof TypeError, "unknown keys are type problems");
  for (
    const re of [
      /bias: false has no equivalent/,
      /dtype: the Trainer computes in float32 \(no mixed precision; WebGPU has no bfloat16\); set dtype to float32/,
      /wandb_log: fledge has no Weights & Biases integration/,
      /flash: unknown key in a legacy config/,
      /model\.num_layerz: unknown key in a LLMBuilder model section: .*did you mean num_layers\?/,
    ]
  ) assert.match(e.message, re);
  assert.match(e.message, /5 problems/);
  const ckpt = caught(() => migrateConfig({ init_from: "gpt2", n_layer: 4, block_size: 256 }));
  assert.match(
    ckpt.message,
    /n_layer: the model is loaded from a checkpoint whose shape is its config\.json/,
  );
  const drop = caught(() => migrateConfig({ init_from: "gpt2-medium", dropout: 0.0 }));
  assert.match(drop.message, /dropout: the model is loaded from a checkpoint/);
  const ft = migrateConfig({ init_from: "gpt2-medium", block_size: 256, always_save_checkpoint: true });
  assert.deepEqual([ft.config.model, ft.config.max_seq_length, ft.config.model_config], [
    "openai-community/gpt2-medium",
    256,
    null,
  ]);
});

Deno.test("migrateConfig() refuses two keys setting one field differently; the same value is fine", () => {
  const e = caught(() => migrateConfig({ batch_size: 4, per_device_train_batch_size: 8 }));
  assert.match(
    e.message,
    /per_device_train_batch_size: sets per_device_train_batch_size to 8, but batch_size sets it to 4/,
  );
  const m = migrateConfig({ use_amp: false, dtype: "float32", device: "cuda" });
  assert.equal(m.config.fp16, false);
  assert.equal(m.config.backend, "webgpu");
});

Deno.test("loadTrainingConfig() reads a legacy file as it is, printing one mapping line per key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "old.yaml");
    await Deno.writeTextFile(
      path,
      "model: {num_layers: 2, num_heads: 2, embedding_dim: 32, max_seq_length: 48, vocab_size: 300}\n" +
        "training: {batch_size: 3, num_epochs: 2, log_every: 5}\nsystem: {seed: 9, deterministic: false}\n",
    );
    const lines: string[] = [];
    const c = await loadTrainingConfig(path, { warn: (l) => lines.push(l) });
    assert.match(lines[0], /old\.yaml is a LLMBuilder config, read as a TrainingConfig/);
    for (const k of ["model.num_layers", "model.vocab_size", "training.log_every", "system.deterministic"]) {
      assert.equal(lines.filter((l) => l.startsWith(`  ${k}: `)).length, 1, k);
    }
    assert.equal(c.model, "gpt2-124m");
    assert.equal(c.per_device_train_batch_size, 3);
    assert.equal(c.seed, 9);
    const mc = presetConfig("gpt2-124m", c.model_config!);
    assert.deepEqual(
      [mc.num_hidden_layers, mc.hidden_size, mc.head_dim, mc.intermediate_size, mc.max_position_embeddings],
      [2, 32, 16, 128, 48],
    );
    // The migrated YAML loads back to the same config, with no mapping (it is fledge's names).
    const m = await migrateConfigFile(path);
    await Deno.writeTextFile(join(dir, "new.yaml"), migrationToYaml(m, { source: path }));
    const quiet: string[] = [];
    const back = await loadTrainingConfig(join(dir, "new.yaml"), { warn: (l) => quiet.push(l) });
    assert.deepEqual(back, m.config);
    assert.deepEqual(quiet, []);
    assert.equal(isLegacyTrainingConfig(m.fields), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("model_config reshapes a preset; bad fields and checkpoint models are refused", () => {
  const c = getTrainingArgs({ model: "tiny", model_config: { num_hidden_layers: 3, hidden_size: 64 } });
  assert.deepEqual(c.model_config, { num_hidden_layers: 3, hidden_size: 64 });
  const bad = caught(() =>
    validateTrainingConfig({
      model: "tiny",
      model_config: { hidden_size: 30, num_attention_heads: 4, layers: 2 },
    }, {
      file: "r.yaml",
    })
  );
  assert.match(bad.message, /model_config\.layers: unknown key/);
  assert.match(bad.message, /model_config\.hidden_size: 30 is not divisible by num_attention_heads 4/);
  const ckpt = caught(() =>
    validateTrainingConfig({ model: "org/model", model_config: { num_hidden_layers: 2 } })
  );
  assert.ok(ckpt instanceof RangeError);
  assert.match(
    ckpt.message,
    /model_config: reshapes a preset built from scratch, but model "org\/model" is a checkpoint/,
  );
  const noModel = caught(() => validateTrainingConfig({ model_config: { hiden_size: 2 } }));
  assert.match(
    noModel.message,
    /model_config\.hiden_size: unknown ModelConfig field; did you mean hidden_size\?/,
  );
});
