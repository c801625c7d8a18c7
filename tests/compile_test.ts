/**
 * `deno task compile`: one executable of the CLI, copied alone into an empty folder, trains the
 * tiny preset, generates and evaluates with no source tree beside it (the WGSL kernels live in the
 * embedded `.ts` modules, the recipe configs are `--include`d).
 *
 * `deno compile` appends the program to a `denort` runtime binary, which it downloads unless the
 * `DENORT_BIN` environment variable names one; these machines cannot download it, so without
 * `DENORT_BIN` the test is reported as ignored, with the reason in its name.
 * @module
 */
import { join } from "node:path";
import { assert, ROOT } from "./_assert.ts";

const NAME =
  "deno task compile builds one executable that trains, generates and evaluates with no source tree";
const DENORT_BIN = Deno.env.get("DENORT_BIN");

/** The `compile` task of deno.json as arguments of `deno`, with its `--output` moved to `output`. */
async function compileArgs(output: string): Promise<string[]> {
  const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks as Record<string, string>;
  const words = tasks.compile.trim().split(/\s+/);
  assert.deepEqual(
    words.slice(0, 2),
    ["deno", "compile"],
    `the compile task runs deno compile: ${tasks.compile}`,
  );
  const at = words.findIndex((w) => w === "--output" || w === "-o");
  assert.ok(at > 0, `the compile task names its --output: ${tasks.compile}`);
  words[at + 1] = output;
  return words.slice(1);
}

/** Run `cmd args` in `cwd`, returning exit code and output. */
async function run(
  cmd: string,
  args: string[],
  cwd: string,
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test({
  name: DENORT_BIN
    ? NAME
    : `${NAME} (skipped: DENORT_BIN names no denort runtime; deno compile cannot download one here)`,
  ignore: !DENORT_BIN,
  async fn() {
    const info = await Deno.stat(DENORT_BIN!).catch(() => null);
    assert.ok(
      info?.isFile,
      `DENORT_BIN=${DENORT_BIN} is not a file; point it at a denort binary of this Deno`,
    );
    const tmp = await Deno.makeTempDir({ prefix: "fledge-compile-" });
    try {
      const built = join(tmp, "build", "fledge");
      const c = await run(Deno.execPath(), await compileArgs(built), ROOT);
      assert.equal(c.code, 0, `deno compile failed:\n${c.err}`);

      // The executable alone, in a folder with nothing else: no source tree, no deno.json.
      const dir = join(tmp, "empty");
      await Deno.mkdir(dir);
      const exe = join(dir, "fledge");
      await Deno.copyFile(built, exe);
      await Deno.chmod(exe, 0o755);
      await Deno.remove(join(tmp, "build"), { recursive: true });
      const docs = Array.from(
        { length: 24 },
        (_, i) => JSON.stringify({ text: `package ${i} provides a small tool for task number ${i % 5}` }),
      );
      await Deno.writeTextFile(join(dir, "train.jsonl"), docs.join("\n") + "\n");
      const examples = Array.from(
        { length: 3 },
        (_, i) => JSON.stringify({ document: `package ${i} provides a small tool`, summary: `tool ${i}` }),
      );
      await Deno.writeTextFile(join(dir, "eval.jsonl"), examples.join("\n") + "\n");

      const t = await run(exe, [
        "train",
        ...["--model", "tiny", "--dataset", "train.jsonl", "--output_dir", "run", "--max_steps", "3"],
        ...["--max_seq_length", "16", "--per_device_train_batch_size", "2", "--save_strategy", "no"],
      ], dir);
      assert.equal(t.code, 0, `train:\n${t.err}`);
      assert.match(t.out + t.err, /trained 3 steps/);
      await Deno.stat(join(dir, "run", "model", "model.safetensors"));

      const g = await run(exe, [
        "generate",
        ...["--model", "run/model", "--prompt", "package 3", "--max_new_tokens", "5", "--greedy", "--json"],
      ], dir);
      assert.equal(g.code, 0, `generate:\n${g.err}`);
      assert.equal(JSON.parse(g.out).tokens.length, 5, g.out);

      const e = await run(exe, [
        "eval",
        ...["--task", "summarization", "--model", "run/model", "--data", "eval.jsonl"],
        ...["--max_new_tokens", "4", "--json"],
      ], dir);
      assert.equal(e.code, 0, `eval:\n${e.err}`);
      const metrics = JSON.parse(e.out);
      assert.equal(metrics.n, 3, e.out);
      assert.ok(Number.isFinite(metrics.rougeL), e.out);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
