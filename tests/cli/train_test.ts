/** `deno task cli train` through `main()`: one-line errors with exit code 2, flag overrides, a tiny run. */
import { join } from "node:path";
import { presetConfig } from "../../models/config.ts";
import { loadTokenizer } from "../../models/tokenizer/tokenizer.ts";
import { loadTrainingConfig } from "../../training/config.ts";
import { assert } from "../_assert.ts";
import { assertFails, cli, cliProcess } from "./_cli.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-train-cli-" });
const docs = Array.from(
  { length: 60 },
  (_, i) =>
    JSON.stringify({ text: `package ${i} provides a small tool for testing the command line ${i % 7}` }) +
    "\n",
).join("");
await Deno.writeTextFile(join(dir, "train.jsonl"), docs);
await Deno.writeTextFile(join(dir, "empty.jsonl"), "");

async function yaml(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await Deno.writeTextFile(p, text);
  return p;
}

const base = (out: string) =>
  `model: tiny\ndataset: ${join(dir, "train.jsonl")}\noutput_dir: ${out}\nbackend: cpu\n` +
  `max_seq_length: 32\nper_device_train_batch_size: 2\nmax_steps: 2\nlogging_steps: 1\nsave_strategy: "no"\n`;

/** Assert `train ...args` exits 2 with one stderr line matching `re`. */
async function rejects(args: string[], re: RegExp) {
  assertFails(await cli(["train", ...args]), 2, re);
}

Deno.test("train --help prints the usage", async () => {
  const r = await cli(["train", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.out, /^usage: deno task cli train --config run\.yaml/);
  assert.match(r.out, /--block_size/);
});

Deno.test("train: bad YAML, unknown fields and flags, negative learning rate are one-line errors", async () => {
  await rejects([], /train: give --config run\.yaml and\/or --<field> value flags/);
  await rejects(["--config", await yaml("bad.yaml", "learning_rate: [1,\n")], /bad\.yaml/);
  await rejects(
    ["--config", await yaml("unknown.yaml", "lr: 1.0e-4\n")],
    /unknown\.yaml.*lr: unknown key.*did you mean learning_rate\?/,
  );
  await rejects(
    ["--config", await yaml("neg.yaml", "learning_rate: -1\n")],
    /learning_rate: must be >= 0, got -1/,
  );
  await rejects(
    ["--learnin_rate", "1"],
    /^fledge: train: unknown flag --learnin_rate; did you mean --learning_rate\? \(see `deno task cli train --help`\)$/,
  );
  await rejects(["--learning-rat=1"], /unknown flag --learning-rat; did you mean --learning_rate\?/);
  await rejects(["--config", join(dir, "missing.yaml")], /missing\.yaml does not exist/);
  await rejects(
    ["--config", await yaml("ok.yaml", "learning_rate: 1.0e-4\n"), "--learning_rate", "-2"],
    /ok\.yaml \+ command-line flags.*learning_rate: must be >= 0, got -2/,
  );
  await rejects(["--config"], /train: --config needs a value/);
  // a folder, an empty value, two files: each one line (an OS error; the flag ignored; the first
  // file dropped with a notice)
  await Deno.mkdir(join(dir, "folder.yaml"));
  await rejects(
    ["--config", join(dir, "folder.yaml")],
    /^fledge: Cannot load training config: \S+folder\.yaml is a folder, not a file; give a \.yaml or \.json file$/,
  );
  await rejects(["--config=", "--model", "tiny"], /^fledge: train: --config is empty; give a path/);
  await rejects( // (npm:yaml's advice had been "please use YAML.parseAllDocuments()")
    ["--config", await yaml("multi.yaml", "learning_rate: 0.1\n---\nmax_steps: 2\n")],
    /multi\.yaml:2:1: it holds more than one YAML document \(a --- line starts another\); keep one$/,
  );
  // a preset trains its tokenizer on the text column: rows without one are told to bring a tokenizer,
  // any other problem of the data is said as it is, with its record (it had been wrapped in that fix)
  const tiny = [
    "--model",
    "tiny",
    "--max_seq_length",
    "32",
    "--max_steps",
    "1",
    "--output_dir",
    join(dir, "t"),
  ];
  await Deno.writeTextFile(join(dir, "num.jsonl"), '{"text": "a b"}\n{"text": 5}\n');
  await rejects(
    [...tiny, "--dataset", join(dir, "num.jsonl")],
    /^fledge: Cannot read documents from \S+num\.jsonl: record 2: "text" is a number, not text; set dataset_text_field$/,
  );
  await Deno.writeTextFile(join(dir, "pc.jsonl"), '{"prompt": "a", "completion": "b"}\n');
  await rejects(
    [...tiny, "--dataset", join(dir, "pc.jsonl")],
    /^fledge: Cannot train tiny from scratch on \S+pc\.jsonl: its tokenizer is trained on text, and records have no "text" column .*give a pretrained model/,
  );
  await rejects(
    ["--model", "", "--max_steps", "1"],
    /^fledge: train: --model is empty; give a path or a hub id/,
  );
  await rejects(
    [
      "--config",
      await yaml("a.yaml", "learning_rate: 0.5\n"),
      "--config",
      await yaml("b.yaml", "max_steps: 1\n"),
    ],
    /^fledge: train: --config is given more than once; give one file/,
  );
  await rejects(
    ["--max_seq_length", "0", "--max_length", "64"],
    /train: --max_seq_length and --max_length both set max_seq_length; give one/,
  );
  await rejects(
    ["--model", "tiny", "--model_name_or_path", "tiny"],
    /--model and --model_name_or_path both set model/,
  );
});

Deno.test("train takes TRL's --model_name_or_path and --dataset_name for model and dataset", async () => {
  const out = join(dir, "run-trl");
  const r = await cli([
    "train",
    ...["--model_name_or_path", "tiny", "--dataset_name", join(dir, "train.jsonl"), "--output_dir", out],
    ...["--backend", "cpu", "--max_seq_length", "32", "--max_steps", "1", "--save_strategy", "no"],
  ]);
  assert.equal(r.code, 0, r.err);
  const saved = await loadTrainingConfig(join(out, "config.yaml"));
  assert.deepEqual([saved.model, saved.dataset], ["tiny", join(dir, "train.jsonl")]);
});

Deno.test("train: block_size over max_position_embeddings, empty dataset, unwritable output_dir", async () => {
  const out = join(dir, "run-errors");
  const cfg = await yaml("run.yaml", base(out));
  await rejects(
    ["--config", cfg, "--block_size", "256"],
    /max_length \(max_seq_length, block_size\) 256 exceeds the model's max_position_embeddings 128; set max_length <= 128/,
  );
  await rejects(["--config", cfg, "--dataset", join(dir, "empty.jsonl")], /dataset .*empty\.jsonl is empty/);
  await rejects( // once the file system's bare "No such file or directory"
    ["--config", cfg, "--dataset", join(dir, "nope.jsonl")],
    /Cannot train: dataset .*nope\.jsonl does not exist \(the config's dataset field, or --dataset\); fix the path/,
  );
  await Deno.writeTextFile(join(dir, "a-file"), "");
  await rejects(
    ["--config", cfg, "--output_dir", join(dir, "a-file", "run")],
    /output_dir .* is not writable/,
  );
  // a preset name mistyped goes to the hub as an id: the answer names the preset it is close to
  const typo = await cliProcess(["train", "--config", cfg, "--model", "tinny"], {
    HF_HUB_OFFLINE: "1",
    HF_HUB_CACHE: dir,
  });
  assert.notEqual(typo.code, 0);
  assert.match(typo.err, /Cannot get model tinny .* \(is it the preset tiny\? the presets are tiny, small/);
  assert.throws(() => Deno.statSync(out), Deno.errors.NotFound);
});

Deno.test("train: a tiny preset trains from YAML + flag overrides (HF names, hyphens, aliases) and writes the run folder", async () => {
  const out = join(dir, "run-ok");
  const r = await cli([
    "train",
    "-c",
    await yaml("good.yaml", base(join(dir, "overridden"))),
    "--max_steps",
    "3",
    "--block-size",
    "16",
    "--learning-rate=1e-3",
    "--seed",
    "7",
    "--output_dir",
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^trained 3 steps in .*: loss \d+\.\d{4}, perplexity [\d.]+ -> .*run-ok\n$/);
  for (
    const f of [
      "config.yaml",
      "metrics.jsonl",
      "report.md",
      "curves.svg",
      "model/model.safetensors",
      "model/tokenizer.json",
    ]
  ) {
    assert.ok(Deno.statSync(join(out, f)).isFile, f);
  }
  const saved = await loadTrainingConfig(join(out, "config.yaml"));
  assert.equal(saved.max_steps, 3);
  assert.equal(saved.max_seq_length, 16);
  assert.equal(saved.learning_rate, 1e-3);
  assert.equal(saved.seed, 7);
  assert.equal(saved.per_device_train_batch_size, 2, "from the file");
  assert.throws(() => Deno.statSync(join(dir, "overridden")), Deno.errors.NotFound);
  // the run's config.yaml trains again as written (its DPO fields restate their defaults; they had
  // been refused as "DPO settings"); a DPO field changed in it is still refused
  const again = await cli(["train", "-c", join(out, "config.yaml"), "--output_dir", join(dir, "run-again")]);
  assert.equal(again.code, 0, again.err);
  // a number-like value of a text field stays text, as argparse reads it (it had been refused as a number)
  const numbered = await cliProcess(
    ["train", "-c", join(out, "config.yaml"), "--output_dir", "2024"],
    {},
    dir,
  );
  assert.equal(numbered.code, 0, numbered.err);
  assert.ok(Deno.statSync(join(dir, "2024", "config.yaml")).isFile);
  // overwrite_output_dir never deletes the model the run reads (a kill had left neither model)
  await rejects(
    ["-c", join(out, "config.yaml"), "--model", join(out, "model"), "--overwrite_output_dir", "true"],
    /model .*run-ok\/model lies in output_dir .*run-ok, whose model overwrite_output_dir would delete before training/,
  );
  assert.ok(Deno.statSync(join(out, "model", "model.safetensors")).isFile);
  // a run killed before its first checkpoint: the message says there is nothing to resume
  const bare = join(dir, "run-bare");
  await Deno.mkdir(bare);
  await Deno.writeTextFile(join(bare, "config.yaml"), "model: tiny\n");
  await rejects(
    ["-c", join(out, "config.yaml"), "--output_dir", bare],
    /already holds a run \(config\.yaml\); it saved no checkpoint to resume from: set overwrite_output_dir: true to start it again/,
  );
  const edited = (await Deno.readTextFile(join(out, "config.yaml"))).replace(/^beta: .*$/m, "beta: 0.5");
  await rejects(["-c", await yaml("edited.yaml", edited)], /beta 0\.5 is a DPO setting/);
});

Deno.test("train: a preset takes its tokenizer's size, so sampling from it never draws an id the tokenizer lacks", async () => {
  const out = join(dir, "run-vocab");
  let r = await cli(["train", "-c", await yaml("vocab.yaml", base(out)), "--block_size", "16"]);
  assert.equal(r.code, 0, r.err);
  const ids = (await loadTokenizer(join(out, "model"))).vocab_size;
  const vocab = async (run: string) =>
    JSON.parse(await Deno.readTextFile(join(run, "model", "config.json"))).vocab_size;
  // 60 short documents train fewer merges than the 512 ids the tiny preset asks for
  assert.ok(ids < presetConfig("tiny").vocab_size, `${ids} ids`);
  assert.equal(await vocab(out), ids);
  for (const seed of ["1", "2", "3"]) {
    r = await cli([
      "generate",
      "--model",
      join(out, "model"),
      "--prompt",
      "package",
      "--do_sample",
      "--seed",
      seed,
    ]);
    assert.equal(r.code, 0, r.err);
  }
  // a given tokenizer: model_config's vocab_size pads it, and must hold every id
  const file = await yaml("given.yaml", base(join(dir, "unused")));
  const given = (name: string, extra: string[]) =>
    cli(["train", "-c", file, "--output_dir", join(dir, name), "--tokenizer", join(out, "model"), ...extra]);
  r = await given("run-pad", [
    "--block_size",
    "16",
    "--model_config",
    JSON.stringify({ vocab_size: ids + 64 }),
  ]);
  assert.equal(r.code, 0, r.err);
  assert.equal(await vocab(join(dir, "run-pad")), ids + 64);
  assertFails(
    await given("run-small", [
      "--block_size",
      "16",
      "--model_config",
      JSON.stringify({ vocab_size: ids - 1 }),
    ]),
    2,
    new RegExp(
      `model_config\\.vocab_size ${ids - 1} is smaller than the tokenizer's ${ids} ids; remove vocab_size`,
    ),
  );
});

Deno.test("train: a resumed run says the steps it trained, not the run's total", async () => {
  const out = join(dir, "run-resumed");
  const file = await yaml("resumed.yaml", base(out).replace('save_strategy: "no"', "save_steps: 1"));
  let r = await cli(["train", "-c", file, "--max_steps", "3", "--block_size", "16"]);
  assert.equal(r.code, 0, r.err);
  await Deno.remove(join(out, "checkpoints", "step-3"), { recursive: true });
  await Deno.remove(join(out, "model"), { recursive: true });
  const resume = [
    "train",
    "-c",
    file,
    "--max_steps",
    "3",
    "--block_size",
    "16",
    "--resume_from_checkpoint",
    "true",
  ];
  r = await cli(resume);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^trained 1 step \(3-3\) in /);
  // once more: nothing left to train, said so (it had read "trained 0 steps (4-3)")
  r = await cli(resume);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^trained nothing more \(the run had finished at step 3\) in /);
});

Deno.test("train --report_to stdout prints each log record as a JSON line on stdout", async () => {
  const out = join(dir, "run-stdout");
  const r = await cliProcess([
    "train",
    "-c",
    await yaml("stdout.yaml", base(out)),
    "--max_steps",
    "2",
    "--logging_steps",
    "1",
    "--report_to",
    "stdout",
  ]);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trimEnd().split("\n");
  const records = lines.slice(0, -1).map((l) => JSON.parse(l));
  assert.deepEqual(records.filter((x) => "loss" in x).map((x) => x.step), [1, 2]);
  assert.match(lines.at(-1)!, /^trained 2 steps in /);
  // stdout only: no metrics.jsonl
  assert.throws(() => Deno.statSync(join(out, "metrics.jsonl")), Deno.errors.NotFound);
});

Deno.test({
  name: "train tests: clean up",
  fn: () => Deno.remove(dir, { recursive: true }),
});
