/**
 * `deno task cli config` through the real entry point (`deno run -A cli.ts` subprocesses): --help,
 * bad flags and configs (exit 2, one line), --json parsed, and a nanoGPT flat config and an
 * LLMBuilder structured config that migrate (the mapping names every key) and then train with the
 * legacy model shape.
 */
import { join } from "node:path";
import { parse as parseYaml } from "npm:yaml@^2.9";
import { DEFAULT_TRAINING_CONFIG, TRAINING_PRESETS } from "../../training/config.ts";
import { assert, ROOT } from "../_assert.ts";
import { assertFails, cliProcess, type CliRun } from "./_cli.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-config-cli-" });
const doc = (i: number) =>
  JSON.stringify({ text: `package ${i} provides a small tool for the configuration tests ${i % 5}` }) + "\n";
// A dataset folder with a validation split, as nanoGPT's data/<name>/{train,val}.bin.
await Deno.mkdir(join(dir, "data"));
await Deno.writeTextFile(
  join(dir, "data", "train.jsonl"),
  Array.from({ length: 48 }, (_, i) => doc(i)).join(""),
);
await Deno.writeTextFile(
  join(dir, "data", "validation.jsonl"),
  Array.from({ length: 8 }, (_, i) => doc(100 + i)).join(""),
);

async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await Deno.writeTextFile(p, text);
  return p;
}

const config = (...args: string[]): Promise<CliRun> => cliProcess(["config", ...args]);

/** Every key path of a nested config (`model.num_layers`), leaves only. */
function keyPaths(o: Record<string, unknown>, prefix = ""): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? keyPaths(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`]
  );
}

/** Assert stderr of a migrate run has one mapping line for each key of `legacy`. */
function assertNamesEveryKey(err: string, legacy: Record<string, unknown>): void {
  const lines = err.split("\n");
  for (const k of keyPaths(legacy)) {
    const hits = lines.filter((l) => l.startsWith(`  ${k}: `));
    assert.equal(hits.length, 1, `one mapping line for ${k} in:\n${err}`);
    assert.match(hits[0], / -> /, hits[0]);
  }
}

/** The shapes of a safetensors file's tensors, from its header. */
async function tensorShapes(path: string): Promise<Record<string, number[]>> {
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return Object.fromEntries(
    Object.entries(header).filter(([k]) => k !== "__metadata__").map((
      [k, v],
    ) => [k, (v as { shape: number[] }).shape]),
  );
}

/** Migrate `legacy` (written as `name`), train 2 steps from the migrated YAML, return the run folder. */
async function migrateAndTrain(name: string, text: string, legacy: Record<string, unknown>, dataset: string) {
  const src = await file(name, text);
  const m = await config("migrate", src);
  assert.equal(m.code, 0, m.err);
  assertNamesEveryKey(m.err, legacy);
  const migrated = await file(`${name}.migrated.yaml`, m.out);
  const v = await config("validate", migrated);
  assert.equal(v.code, 0, v.err);
  assert.match(v.out, /^ok: /);
  const out = join(dir, `run-${name}`);
  const t = await cliProcess([
    "train",
    "--config",
    migrated,
    "--dataset",
    dataset,
    "--output_dir",
    out,
    "--max_steps",
    "2",
    "--save_strategy",
    "no",
  ]);
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, /^trained 2 steps in /);
  return { out, yaml: parseYaml(m.out) as Record<string, unknown> };
}

Deno.test("config --help, each subcommand's --help, and bad subcommands, flags and files", async () => {
  const top = await config("--help");
  assert.equal(top.code, 0, top.err);
  assert.match(top.out, /^usage: deno task cli config <validate\|migrate\|show-defaults>/);
  for (const sub of ["validate", "migrate", "show-defaults"]) {
    const r = await config(sub, "--help");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^usage: deno task cli config ${sub}`));
  }
  assertFails(
    await config("valdiate", "x.yaml"),
    2,
    /unknown subcommand "valdiate"; did you mean validate\?/,
  );
  assertFails(await config("validate"), 2, /config validate: give one config file/);
  assertFails(await config("validate", "a.yaml", "--jsn"), 2, /unknown flag --jsn; did you mean --json\?/);
  assertFails(await config("migrate", join(dir, "missing.json")), 2, /missing\.json does not exist/);
  assertFails(await config("migrate", await file("c.toml", "a = 1\n")), 2, /unknown extension/);
  assertFails(await config("show-defaults", "--preset", "tiny"), 2, /--preset tiny is not one of debug/);
});

Deno.test("config show-defaults prints every default field as YAML and JSON, and presets", async () => {
  const y = await config("show-defaults");
  assert.equal(y.code, 0, y.err);
  assert.deepEqual(parseYaml(y.out), { ...DEFAULT_TRAINING_CONFIG });
  const j = await config("show-defaults", "--json");
  assert.deepEqual(JSON.parse(j.out), { ...DEFAULT_TRAINING_CONFIG });
  const p = await config("show-defaults", "--preset", "qlora", "--json");
  assert.deepEqual(JSON.parse(p.out), JSON.parse(JSON.stringify(TRAINING_PRESETS.qlora)));
});

Deno.test("config validate: ok, every problem, an unknown legacy key in one line, --json parsed", async () => {
  const good = await file(
    "good.yaml",
    "model: tiny\nlearning_rate: 1.0e-4\nmodel_config: {num_hidden_layers: 3}\n",
  );
  const ok = await config("validate", good, "--json");
  assert.equal(ok.code, 0, ok.err);
  const okReport = JSON.parse(ok.out);
  assert.deepEqual([okReport.ok, okReport.file, okReport.formats, okReport.problems], [true, good, [], []]);

  const bad = await file("bad.yaml", "model: tiny\nlearning_rate: -1\nmodel_config: {hidden_sise: 64}\n");
  const b = await config("validate", bad);
  assertFails(b, 2, /learning_rate: must be >= 0, got -1/);
  assert.match(b.err, /model_config\.hidden_sise: unknown key; did you mean "hidden_size"\?/);
  const bj = await config("validate", bad, "--json");
  assert.equal(bj.code, 2);
  const report = JSON.parse(bj.out);
  assert.equal(report.ok, false);
  assert.equal(report.problems.length, 2, bj.out);

  const legacy = await file(
    "old.json",
    JSON.stringify({ n_layer: 2, n_embd: 32, flash_attn: true, dtype: "float32" }),
  );
  for (const sub of ["validate", "migrate"]) {
    assertFails(await config(sub, legacy), 2, /old\.json: flash_attn: unknown key in a legacy config/);
  }
  assertFails(
    await cliProcess(["train", "--config", legacy]),
    2,
    /flash_attn: unknown key in a legacy config/,
  );
  const r = await config("validate", legacy, "--json");
  assert.equal(r.code, 2);
  assert.match(JSON.parse(r.out).problems[0], /flash_attn: unknown key/);
  // a typo in a file of fledge's own names is a training config's, not "a legacy config" (it had said so)
  const typo = await file("typo.yaml", "model: tiny\nlerning_rate: 1.0e-3\n");
  assertFails(
    await config("validate", typo),
    2,
    /Invalid training config in .*typo\.yaml: .*typo\.yaml:2: lerning_rate: unknown key; did you mean learning_rate\?/,
  );
  // a recipe's config is the recipe's to check (it had listed its fields as 6 unknown legacy keys)
  assertFails(
    await config("validate", `${ROOT}/tasks/configs/sst2.yaml`),
    2,
    /sst2\.yaml is a recipe's config \(task: classification\), not a training config; .*deno task cli recipe <name> --config/,
  );
  // A key fledge cannot honour: refused with the reason, not dropped.
  const bf16 = await file("bf16.json", JSON.stringify({ n_layer: 2, dtype: "bfloat16", bias: false }));
  const e = await config("migrate", bf16);
  assertFails(e, 2, /dtype: the Trainer computes in float32 \(no mixed precision; WebGPU has no bfloat16\)/);
  assert.match(e.err, /bias: false has no equivalent/);
  // float16 is refused as bfloat16 is: the Trainer computes in float32 (it was migrated to fp16: true,
  // which validate passed and train refused)
  const f16 = await file("f16.json", JSON.stringify({ n_layer: 2, dtype: "float16" }));
  assertFails(
    await config("validate", f16),
    2,
    /dtype: the Trainer computes in float32 \(no mixed precision\); set dtype to float32/,
  );
  // a valid config with a setting the Trainer refuses is not "ok" either
  const fp16 = await file("fp16.yaml", "fp16: true\n");
  const v = await config("validate", fp16);
  assert.equal(v.code, 2, v.err);
  assert.match(v.err, /fp16: the Trainer computes in float32; set fp16: false/);
  const vj = await config("validate", fp16, "--json");
  assert.equal(vj.code, 2);
  assert.deepEqual(JSON.parse(vj.out).problems, ["fp16: the Trainer computes in float32; set fp16: false"]);
});

// nanoGPT's train.py config dict (as saved in its checkpoints), scaled down; bias true as GPT-2's.
const NANOGPT = {
  out_dir: "out-shakespeare",
  eval_interval: 250,
  log_interval: 1,
  eval_iters: 2,
  eval_only: false,
  always_save_checkpoint: false,
  init_from: "scratch",
  wandb_log: false,
  wandb_project: "shakespeare",
  wandb_run_name: "mini-gpt",
  dataset: "shakespeare",
  gradient_accumulation_steps: 1,
  batch_size: 2,
  block_size: 32,
  vocab_size: 320,
  n_layer: 3,
  n_head: 2,
  n_embd: 32,
  dropout: 0.1,
  bias: true,
  learning_rate: 1e-3,
  max_iters: 5000,
  weight_decay: 0.1,
  beta1: 0.9,
  beta2: 0.99,
  grad_clip: 1.0,
  decay_lr: true,
  warmup_iters: 100,
  lr_decay_iters: 5000,
  min_lr: 1e-4,
  backend: "nccl",
  device: "cpu",
  dtype: "float32",
  compile: false,
};

Deno.test("config migrate: a nanoGPT flat config maps every key and trains with its shape", async () => {
  const { out, yaml } = await migrateAndTrain(
    "nanogpt.json",
    JSON.stringify(NANOGPT, null, 2),
    NANOGPT,
    join(dir, "data"),
  );
  assert.equal(yaml.model, "gpt2-124m");
  assert.equal(yaml.lr_scheduler_type, "cosine_with_min_lr");
  assert.equal(yaml.save_strategy, "best");
  const hf = JSON.parse(await Deno.readTextFile(join(out, "model", "config.json")));
  assert.equal(hf.model_type, "gpt2");
  for (
    const [k, v] of Object.entries({ n_layer: 3, n_head: 2, n_embd: 32, n_positions: 32, vocab_size: 320 })
  ) {
    assert.equal(hf[k], v, `config.json ${k}`);
  }
  assert.equal(hf.resid_pdrop, 0.1);
  const shapes = await tensorShapes(join(out, "model", "model.safetensors"));
  assert.deepEqual(shapes["transformer.wte.weight"], [320, 32]);
  assert.deepEqual(shapes["transformer.wpe.weight"], [32, 32]);
  assert.equal(
    Object.keys(shapes).filter((k) => /^transformer\.h\.\d+\.attn\.c_attn\.weight$/.test(k)).length,
    3,
  );
  const saved = parseYaml(await Deno.readTextFile(join(out, "config.yaml")));
  assert.equal(saved.model_config.num_hidden_layers, 3);
  assert.equal(saved.adam_beta2, 0.99);
});

const LLMBUILDER = `# LLMBuilder config (cpu_small, scaled down)
model:
  vocab_size: 300
  num_layers: 2
  num_heads: 4
  embedding_dim: 64
  max_seq_length: 64
  dropout: 0.1
  bias: true
  model_type: gpt
  activation: gelu
  tie_word_embeddings: true
training:
  batch_size: 2
  num_epochs: 1
  learning_rate: 3.0e-4
  warmup_steps: 1
  weight_decay: 0.01
  gradient_clip: 1.0
  save_every: 500
  eval_every: 250
  log_every: 1
  optimizer: adamw
  scheduler: cosine
  mixed_precision: fp32
  dataloader_num_workers: 0
  pin_memory: false
data:
  block_size: 32
  seed: 1
system:
  device: cpu
  seed: 42
  deterministic: true
  compile: false
`;

Deno.test("config migrate: an LLMBuilder structured config maps every key and trains with its shape", async () => {
  const { out, yaml } = await migrateAndTrain(
    "llmbuilder.yaml",
    LLMBUILDER,
    parseYaml(LLMBUILDER),
    join(dir, "data", "train.jsonl"),
  );
  assert.equal(yaml.max_seq_length, 32, "data.block_size is the training length");
  assert.equal(yaml.num_train_epochs, 1);
  const hf = JSON.parse(await Deno.readTextFile(join(out, "model", "config.json")));
  for (
    const [k, v] of Object.entries({ n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64, vocab_size: 300 })
  ) {
    assert.equal(hf[k], v, `config.json ${k}`);
  }
  assert.equal(hf.activation_function, "gelu");
});

Deno.test("config migrate --json: the engine and backend seeds' names, parsed", async () => {
  const src = await file(
    "engine.yaml",
    "n_epochs: 2\ngradient_clip_norm: 0.5\nuse_wandb: false\nrandom_seed: 7\nuse_amp: false\n" +
      "backend: {type: null, device: null, dtype: float32}\n",
  );
  const r = await config("migrate", src, "--json");
  assert.equal(r.code, 0, r.err);
  const m = JSON.parse(r.out);
  assert.deepEqual(m.formats, ["engine seed", "backend seed"]);
  assert.deepEqual(m.fields, {
    backend: "auto",
    seed: 7,
    num_train_epochs: 2,
    max_grad_norm: 0.5,
    fp16: false,
  });
  assert.equal(m.mapping.length, 8);
  assert.match(m.mapping.find((l: string) => l.startsWith("backend.type:")), /-> backend: "auto"/);
  assert.deepEqual(parseYaml(m.yaml), m.fields);
});

Deno.test({
  name: "config tests: clean up",
  fn: () => Deno.remove(dir, { recursive: true }),
});
