/**
 * A recipe stopped by Ctrl-C, as `train` is: a checkpoint, exit 130, no run folder on stdout (a
 * `train:sst2 && eval:sst2` must not go on), and the whole command to resume it, which finishes the run.
 */
import { join } from "node:path";
import { assert, ROOT } from "../_assert.ts";
import { cliProcess } from "../cli/_cli.ts";
import { TINY_BASE } from "./_recipe.ts";

Deno.test("recipe: Ctrl-C saves a checkpoint, exits 130 and prints the command that resumes it", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-signal-" });
  const cache = join(root, "cache"), out = join(root, "run");
  const flags = [
    "--base_model",
    TINY_BASE,
    "--max_train_samples",
    "24",
    "--max_eval_samples",
    "4",
    "--max_steps",
    "60",
    "--logging_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--max_seq_length",
    "128",
    "--max_source_tokens",
    "40",
  ];
  try {
    const p = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}/cli.ts`, "recipe", "sst2", ...flags, "--output_dir", out],
      env: { FLEDGE_CACHE_DIR: cache },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // once training has logged a step
    for (let i = 0; i < 6000; i++) {
      if (await Deno.stat(join(out, "metrics.jsonl")).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    p.kill("SIGINT");
    const r = await p.output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 130, err);
    assert.equal(new TextDecoder().decode(r.stdout), "", "no run folder printed: the run did not finish");
    const hint = err.match(/^fledge: resume with: deno task cli recipe sst2 (.*)$/m);
    assert.ok(hint, err);
    assert.ok(
      hint[1].endsWith(
        `--max_steps 60 --logging_steps 2 --per_device_train_batch_size 4 ` +
          `--max_seq_length 128 --max_source_tokens 40 --resume_from_checkpoint true --output_dir ${out}`,
      ),
      hint[1],
    );
    // the hint's flags (shell quoting aside) finish the run from its checkpoint
    const done = await cliProcess(
      ["recipe", "sst2", ...flags, "--resume_from_checkpoint", "true", "--output_dir", out],
      { FLEDGE_CACHE_DIR: cache },
    );
    assert.equal(done.code, 0, done.err);
    assert.match(done.err, /resume: continuing from .*checkpoints\/step-\d+ at step \d+/);
    assert.equal(done.out.trim(), out);
    const metrics = JSON.parse(await Deno.readTextFile(join(out, "metrics.json")));
    assert.equal(typeof metrics.accuracy, "number");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("recipe: Ctrl-C while pre-training the base model keeps a checkpoint, and the next run resumes it to the same model", async () => {
  const root = await Deno.makeTempDir({ prefix: "fledge-recipe-signal-" });
  const base = JSON.stringify({ ...JSON.parse(TINY_BASE), max_steps: 300 });
  const args = (out: string) => [
    "recipe",
    "sst2",
    "--base_model",
    base,
    "--max_train_samples",
    "8",
    "--max_eval_samples",
    "2",
    "--max_steps",
    "1",
    "--max_source_tokens",
    "40",
    "--max_seq_length",
    "128",
    "--output_dir",
    join(root, out),
  ];
  const models = (cache: string) => join(cache, "base-models");
  try {
    const cache = join(root, "cache");
    const p = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}/cli.ts`, ...args("a")],
      env: { FLEDGE_CACHE_DIR: cache },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // once pre-training has a checkpoint (it had trained in a temporary folder, lost at Ctrl-C)
    const names = (dir: string) => {
      try {
        return [...Deno.readDirSync(dir)].map((e) => e.name);
      } catch {
        return [];
      }
    };
    const partial = () =>
      names(models(cache)).filter((n) => n.endsWith(".partial"))
        .some((n) => names(join(models(cache), n, "checkpoints")).some((c) => /^step-\d+$/.test(c)));
    for (let i = 0; i < 6000 && !partial(); i++) await new Promise((r) => setTimeout(r, 20));
    p.kill("SIGINT");
    const r = await p.output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 130, err);
    assert.match(
      err,
      /stopped by SIGINT while pre-training the base model, at step \d+ of 300; its checkpoint is in .*\.partial/,
    );
    const again = await cliProcess(args("b"), { FLEDGE_CACHE_DIR: cache });
    assert.equal(again.code, 0, again.err);
    assert.match(
      again.err,
      /base model: resume: continuing from .*\.partial\/checkpoints\/step-\d+ at step \d+/,
    );
    // the same weights as a pre-training never stopped (exact resume), and no partial folder left
    const other = join(root, "cache2");
    const whole = await cliProcess(args("c"), { FLEDGE_CACHE_DIR: other });
    assert.equal(whole.code, 0, whole.err);
    const [key] = [...Deno.readDirSync(models(other))].map((e) => e.name);
    assert.deepEqual(
      [...Deno.readDirSync(models(cache))].map((e) => e.name).filter((n) => n !== ".fledge.lock"),
      [key],
    );
    assert.deepEqual(
      await Deno.readFile(join(models(cache), key, "model.safetensors")),
      await Deno.readFile(join(models(other), key, "model.safetensors")),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
