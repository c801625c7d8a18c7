/** `deno task cli dpo` through `main()` and as a subprocess: usage, one-line errors (exit 2), tiny runs, SIGINT. */
import { join } from "node:path";
import { createBackend } from "../../kernels/backend.ts";
import { presetConfig } from "../../models/config.ts";
import { Transformer } from "../../models/transformer.ts";
import { saveModel } from "../../models/save.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { loadTokenizer } from "../../models/tokenizer/tokenizer.ts";
import { assert, ROOT } from "../_assert.ts";
import { assertFails, cli } from "./_cli.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-dpo-cli-" });
const modelDir = join(dir, "base");
{
  const texts = ["Summarize: a tool to count words.", "Counts words.", "Plays music."];
  const tok = await trainBpeTokenizer(Array(10).fill(texts.join(" ")), { vocab_size: 280 });
  const mc = presetConfig("tiny", {
    vocab_size: 280,
    hidden_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 64,
  });
  await saveModel(Transformer.init(mc, await createBackend("cpu")), modelDir);
  await tok.save(modelDir);
}
const row = (i: number) =>
  JSON.stringify({
    prompt: `Summarize: a tool to count words ${i}.`,
    chosen: "Counts words.",
    rejected: "Plays music.",
  });
await Deno.writeTextFile(
  join(dir, "pairs.jsonl"),
  Array.from({ length: 8 }, (_, i) => row(i)).join("\n") + "\n",
);
await Deno.mkdir(join(dir, "folder"));
await Deno.writeTextFile(
  join(dir, "folder", "train.jsonl"),
  Array.from({ length: 8 }, (_, i) => row(i)).join("\n") + "\n",
);
await Deno.writeTextFile(join(dir, "folder", "validation.jsonl"), row(8) + "\n" + row(9) + "\n");
await Deno.writeTextFile(
  join(dir, "bad.jsonl"),
  row(0) + "\n\n" + JSON.stringify({ prompt: "p", chosen: "c" }) + "\n",
);

async function yaml(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await Deno.writeTextFile(p, text);
  return p;
}

const base = (out: string) =>
  `model: ${modelDir}\ndataset: ${join(dir, "pairs.jsonl")}\noutput_dir: ${out}\nbackend: cpu\n` +
  `max_length: 48\nper_device_train_batch_size: 2\nmax_steps: 2\nlogging_steps: 1\nsave_strategy: "no"\n` +
  `lora: {r: 4}\n`;

Deno.test("dpo --help prints the usage, and the command list names dpo", async () => {
  const r = await cli(["dpo", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.out, /^usage: deno task cli dpo --config dpo\.yaml/);
  assert.match(r.out, /--beta/);
  assert.match((await cli(["--help"])).out, /^ {2}dpo {8}/m);
});

Deno.test("dpo: bad flags, values, rows and settings are one-line errors (exit 2)", async () => {
  const rejects = async (args: string[], re: RegExp) => assertFails(await cli(["dpo", ...args]), 2, re);
  await rejects([], /dpo: give --config dpo\.yaml and\/or --<field> value flags/);
  await rejects(["--bta", "0.1"], /unknown flag --bta; did you mean --beta\?/);
  await rejects(
    ["--block_size", "0", "--max_length", "64"],
    /dpo: --block_size and --max_length both set max_seq_length/,
  );
  const cfg = await yaml("dpo.yaml", base(join(dir, "run-errors")));
  await rejects(["--config", cfg, "--loss_type", "kto"], /loss_type: .*"kto"/);
  await rejects(["--config", cfg, "--beta", "0"], /beta: must be > 0, got 0/);
  await rejects(["--config", cfg, "--label_smoothing", "0.5"], /label_smoothing/);
  await rejects(
    ["--config", cfg, "--dataset", join(dir, "bad.jsonl")],
    /Cannot build a preference pair from .*bad\.jsonl:3: field "rejected" is missing/,
  );
  // a setting is refused before any row is read (a bad row had hidden it until the data was fixed)
  await rejects(
    ["--config", cfg, "--lora", '{"r": 4, "bias": "all"}', "--dataset", join(dir, "bad.jsonl")],
    /Cannot train DPO: the adapter trains model weights \(lora bias or modules_to_save\).* or precompute_ref_log_probs: true/,
  );
  await rejects(
    ["--config", cfg, "--max_length", "256"],
    /max_length \(max_seq_length\) 256 exceeds the model's max_position_embeddings 64/,
  );
  // a setting of the other trainer spelt out is refused even at its default (it reads as an order)
  await rejects(
    ["--config", cfg, "--packing", "false"],
    /^fledge: dpo: .*dpo\.yaml: packing false is an SFT setting/,
  );
  await rejects(
    ["--config", cfg, "--label_smoothing_factor", "0.1"],
    /label_smoothing_factor 0\.1 is an SFT setting; remove it/,
  );
  assertFails(
    await cli(["sft", "--config", cfg, "--disable_dropout", "true"]),
    2,
    /^fledge: sft: .*dpo\.yaml: disable_dropout true is a DPO setting; remove it, or train with deno task cli dpo/,
  );
  await Deno.writeTextFile(join(dir, "sft-beta.yaml"), base(join(dir, "run-sft-beta")) + "beta: 0.1\n");
  assertFails(
    await cli(["sft", "--config", join(dir, "sft-beta.yaml")]),
    2,
    /^fledge: sft: .*sft-beta\.yaml: beta 0\.1 is a DPO setting/,
  );
  // every prompt fills max_length: one line with the fix, not "no preference pairs; add rows"
  await rejects(
    ["--config", cfg, "--max_length", "4"],
    /^fledge: Cannot train: all 8 pairs of .*pairs\.jsonl were dropped, the prompt filling max_length 4; raise max_length or lower max_prompt_length/,
  );
});

Deno.test("dpo: a tiny LoRA run from YAML + flags writes the run folder and prints the rewards accuracy", async () => {
  const out = join(dir, "run-ok");
  const r = await cli([
    "dpo",
    "--config",
    await yaml("ok.yaml", base(out)),
    "--beta",
    "0.2",
    "--loss-type",
    "ipo",
    "--dataset",
    join(dir, "folder"),
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "2",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /^trained 2 DPO steps in [\d.]+s: loss [\d.]+, eval_loss [\d.]+, eval rewards\/accuracies [\d.]+ -> /,
  );
  const saved = await Deno.readTextFile(join(out, "config.yaml"));
  assert.match(saved, /^beta: 0\.2$/m);
  assert.match(saved, /^loss_type: ipo$/m);
  assert.match(saved, /^logging_steps: 1$/m, "the file wins over DPO's defaults");
  assert.match(saved, /^learning_rate: 0\.000001$/m, "TRL DPOConfig's default learning rate");
  assert.match(saved, /^gradient_checkpointing: true$/m, "TRL DPOConfig's default");
  await Deno.stat(join(out, "adapter", "adapter_model.safetensors"));
});

Deno.test("dpo without an adapter trains the whole model against a frozen copy of it (it had been refused)", async () => {
  const out = join(dir, "run-full");
  const r = await cli(["dpo", "--config", await yaml("full.yaml", base(out)), "--lora", "null"]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^trained 2 DPO steps in /);
  await Deno.stat(join(out, "model", "model.safetensors"));
});

Deno.test("dpo reads every shard of a split folder (only the first had been read)", async () => {
  const shards = join(dir, "shards");
  await Deno.mkdir(shards);
  for (const k of [0, 1]) {
    await Deno.writeTextFile(
      join(shards, `train-0000${k}-of-00002.jsonl`),
      Array.from({ length: 4 }, (_, i) => row(4 * k + i)).join("\n") + "\n",
    );
  }
  const r = await cli([
    "dpo",
    "--config",
    await yaml("shards.yaml", base(join(dir, "run-shards"))),
    "--dataset",
    shards,
    "--max_steps",
    "-1",
    "--num_train_epochs",
    "1",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^trained 4 DPO steps /); // 8 pairs in batches of 2
});

Deno.test("dpo: SIGINT saves a checkpoint, prints the resume command and exits 130", async () => {
  const out = join(dir, "run-sigint");
  const cfg = await yaml("long.yaml", base(out).replace("max_steps: 2", "max_steps: 100000"));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/cli.ts`, "dpo", "--config", cfg],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const metrics = join(out, "metrics.jsonl");
  for (let i = 0; i < 3000; i++) {
    const text = await Deno.readTextFile(metrics).catch(() => "");
    if (text.split("\n").length > 3) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill("SIGINT");
  const r = await child.output();
  const err = new TextDecoder().decode(r.stderr);
  assert.equal(r.code, 130, err);
  assert.match(
    err,
    /SIGINT at step \d+: saved \S+checkpoints\/step-\d+; resume with: deno task cli dpo --config \S+ --resume_from_checkpoint true/,
  );
});

Deno.test("dpo: a preset trained with a tokenizer saves that tokenizer's special ids, not the preset's", async () => {
  const out = join(dir, "run-preset");
  const shape = '{"vocab_size": 280, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, ' +
    '"intermediate_size": 32, "max_position_embeddings": 64}';
  const cfg = base(out).replace(`model: ${modelDir}`, `model: tiny\ntokenizer: ${modelDir}`)
    .replace("lora: {r: 4}", `lora: null\nprecompute_ref_log_probs: true\nmodel_config: ${shape}`);
  const r = await cli(["dpo", "--config", await yaml("preset.yaml", cfg)]);
  assert.equal(r.code, 0, r.err);
  const tok = await loadTokenizer(modelDir);
  assert.notEqual(tok.eos_token_id, presetConfig("tiny").eos_token_id, "the case the test is about");
  const saved = JSON.parse(await Deno.readTextFile(join(out, "model", "config.json")));
  assert.equal(saved.eos_token_id, tok.eos_token_id);
});

Deno.test("dpo: cleanup", async () => {
  await Deno.remove(dir, { recursive: true });
});
