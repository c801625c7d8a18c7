import { join } from "node:path";
import { trainCli, trainConfigFromArgs } from "../../cli/train.ts";
import { assert, ROOT } from "../_assert.ts";

const dir = await Deno.makeTempDir();
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

/** Assert `trainCli(args)` throws `cls` with a one-line message matching `re`. */
async function rejects(args: string[], cls: ErrorConstructor | typeof Deno.errors.NotFound, re: RegExp) {
  await assert.rejects(() => trainCli(args), (e: Error) => {
    assert.ok(e instanceof cls, `${e.constructor.name}: ${e.message}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
    return true;
  });
}

Deno.test("train --help prints the usage", async () => {
  const log = console.log, lines: string[] = [];
  console.log = (s: string) => lines.push(s);
  try {
    await trainCli(["--help"]);
  } finally {
    console.log = log;
  }
  assert.match(lines.join("\n"), /--config run\.yaml/);
});

Deno.test("train: bad YAML, unknown fields and flags, negative learning rate are one-line errors", async () => {
  await rejects(["--config", await yaml("bad.yaml", "learning_rate: [1,\n")], SyntaxError, /bad\.yaml/);
  await rejects(
    ["--config", await yaml("unknown.yaml", "lr: 1.0e-4\n")],
    TypeError,
    /unknown\.yaml.*lr: unknown key.*did you mean learning_rate\?/,
  );
  await rejects(
    ["--config", await yaml("neg.yaml", "learning_rate: -1\n")],
    RangeError,
    /learning_rate: must be >= 0, got -1/,
  );
  await rejects(
    ["--learnin_rate", "1"],
    TypeError,
    /Unknown option '--learnin_rate'.*did you mean --learning_rate\?/,
  );
  await rejects(["--config", join(dir, "missing.yaml")], Deno.errors.NotFound, /no file at .*missing\.yaml/);
  await rejects(
    ["--config", await yaml("ok.yaml", "learning_rate: 1.0e-4\n"), "--learning_rate", "-2"],
    RangeError,
    /ok\.yaml \+ command-line flags.*learning_rate: must be >= 0, got -2/,
  );
});

Deno.test("train: flags override the file with HF names and aliases", async () => {
  const c = await trainConfigFromArgs([
    "--config",
    await yaml("o.yaml", base("x")),
    "--max_steps",
    "7",
    "--block_size",
    "64",
    "--resume_from_checkpoint",
    "true",
    "--output_dir",
    "runs/y",
  ]);
  assert.equal(c?.max_steps, 7);
  assert.equal(c?.max_seq_length, 64);
  assert.equal(c?.resume_from_checkpoint, true);
  assert.equal(c?.output_dir, "runs/y");
  assert.equal(c?.learning_rate, 5e-5);
});

Deno.test("train: block_size over max_position_embeddings, empty dataset, unwritable output_dir", async () => {
  const out = join(dir, "run-errors");
  const cfg = await yaml("run.yaml", base(out));
  await rejects(
    ["--config", cfg, "--block_size", "256"],
    RangeError,
    /block_size \(max_seq_length\) 256 exceeds the model's max_position_embeddings 128/,
  );
  await rejects(
    ["--config", cfg, "--dataset", join(dir, "empty.jsonl")],
    RangeError,
    /dataset .*empty\.jsonl is empty/,
  );
  await Deno.writeTextFile(join(dir, "a-file"), "");
  await rejects(
    ["--config", cfg, "--output_dir", join(dir, "a-file", "run")],
    TypeError,
    /output_dir .* is not writable/,
  );
  assert.throws(() => Deno.statSync(out), Deno.errors.NotFound);
});

Deno.test("train: a tiny preset trains from a YAML file and writes the run folder", async () => {
  const out = join(dir, "run-ok");
  const log = console.log, lines: string[] = [];
  console.log = (s: string) => lines.push(s);
  try {
    await trainCli(["--config", await yaml("good.yaml", base(out))]);
  } finally {
    console.log = log;
  }
  assert.match(lines.join("\n"), /trained 2 steps in .*: loss \d+\.\d{4}, perplexity/);
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
});

const wired = /\btrainCli\b|["']?train["']?\s*:\s*\{/.test(await Deno.readTextFile(join(ROOT, "cli.ts")));

Deno.test({
  name: "deno run -A cli.ts train --config <bad.yaml> exits with code 2 and one line",
  ignore: !wired,
  async fn() {
    const bad = await yaml("cli-bad.yaml", "model: tiny\nlearning_rate: -1\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(ROOT, "cli.ts"), "train", "--config", bad],
      stdout: "piped",
      stderr: "piped",
      env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    }).output();
    const err = new TextDecoder().decode(out.stderr).trim();
    assert.equal(out.code, 2, err);
    assert.equal(err.split("\n").length, 1, err);
    assert.match(err, /cli-bad\.yaml.*learning_rate: must be >= 0/);
  },
});

Deno.test({
  name: "train_cli tests: clean up",
  fn: () => Deno.remove(dir, { recursive: true }),
});
