/**
 * Runs that lose nothing, through the real command line in subprocesses: self-contained
 * checkpoints and checked resumes, the run folder's lock, no overwrite unasked, non-finite values
 * caught, a full disk, leftovers of interrupted writes, corrupt checkpoints and files, signals,
 * and 20 SIGKILLs that change nothing in the final model.
 */
import { join } from "node:path";
import { LOCK_FILE } from "../../util/lock.ts";
import { verifyCheckpoint } from "../../training/checkpoint.ts";
import { readSafetensors } from "../../models/formats/safetensors.ts";
import { assert, ROOT } from "../_assert.ts";
import { assertFails, type CliRun } from "./_cli.ts";

const dec = new TextDecoder();
const TOPICS = ["parsing", "network", "audio", "images", "fonts", "maps"];
const KINDS = ["text", "binary", "config", "archive"];

/** A folder with `data.jsonl` (200 short documents) and `half.jsonl` (the first 100). */
async function workdir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-runs-" });
  const docs = Array.from({ length: 200 }, (_, i) =>
    JSON.stringify({
      text: `package ${i} provides a small tool for ${TOPICS[i % 6]} and reads ${KINDS[i % 4]} files quickly`,
    }));
  await Deno.writeTextFile(join(dir, "data.jsonl"), docs.join("\n") + "\n");
  await Deno.writeTextFile(join(dir, "half.jsonl"), docs.slice(0, 100).join("\n") + "\n");
  return dir;
}

/** `train` flags of a tiny cpu run on `data` into `out`. */
function trainArgs(out: string, extra: string[] = [], data = "data.jsonl"): string[] {
  return [
    "train",
    "--model",
    "tiny",
    "--dataset",
    data,
    "--backend",
    "cpu",
    "--per_device_train_batch_size",
    "2",
    "--block_size",
    "16",
    "--logging_steps",
    "1",
    "--save_steps",
    "2",
    "--eval_strategy",
    "no",
    "--output_dir",
    out,
    ...extra,
  ];
}

function spawn(cwd: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/cli.ts`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function run(cwd: string, args: string[]): Promise<CliRun> {
  const r = await spawn(cwd, args).output();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** stderr without the progress lines. */
const notes = (r: CliRun) =>
  r.err.split("\n").filter((l) => l && !l.startsWith("train: ") && !l.startsWith("fledge: Device memory"))
    .join("\n");

/** {@linkcode assertFails} on a training run: its progress lines come before the one error line. */
function assertRunFails(r: CliRun, code: 1 | 2, re: RegExp): void {
  assertFails({ ...r, err: notes(r) + "\n" }, code, re);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Wait until `path` exists (and, with `non_empty`, holds more than whitespace), else throw after `ms`. */
async function waitFor(path: string, ms = 20_000, o: { non_empty?: boolean } = {}): Promise<void> {
  const t0 = Date.now();
  while (!(await exists(path)) || (o.non_empty && !(await Deno.readTextFile(path)).trim())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${path}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const bytes = (path: string) => Deno.readFile(path);

Deno.test("item 1: a resume refuses changed data or batch size; --allow_changed_data resumes with the checkpoint's tokenizer", async () => {
  const dir = await workdir();
  try {
    const first = await run(dir, trainArgs("run", ["--max_steps", "4"]));
    assert.equal(first.code, 0, first.err);
    assert.ok(
      await exists(join(dir, "run/checkpoints/step-4/tokenizer.json")),
      "the checkpoint holds the tokenizer",
    );

    const subset = await run(
      dir,
      trainArgs("run", ["--max_steps", "8", "--resume_from_checkpoint", "true"], "half.jsonl"),
    );
    assertRunFails(
      subset,
      2,
      /Cannot resume from run\/checkpoints\/step-4: the training data differs .*allow_changed_data/,
    );
    const batch = await run(
      dir,
      trainArgs("run", [
        "--max_steps",
        "8",
        "--resume_from_checkpoint",
        "true",
        "--per_device_train_batch_size",
        "4",
      ]),
    );
    assertRunFails(batch, 2, /per_device_train_batch_size 2 -> 4/);
    const resumeAllowed = [
      "--max_steps",
      "8",
      "--resume_from_checkpoint",
      "true",
      "--allow_changed_data",
      "true",
    ];
    // a new seed, even with allow_changed_data: the resumed run would go on with the old order
    assertRunFails(
      await run(dir, trainArgs("run", [...resumeAllowed, "--data_seed", "7"])),
      2,
      /data_seed null -> 7: a resumed run goes on with its checkpoint's data order/,
    );
    // a tokenizer other than the run's: a resume keeps the checkpoint's
    const tok = await run(
      dir,
      trainArgs("run", ["--max_steps", "8", "--resume_from_checkpoint", "true", "--tokenizer", "run/model"]),
    );
    assertRunFails(tok, 2, /tokenizer run\/model is not the run's .*; drop tokenizer \(--tokenizer\)/);
    const other = trainArgs("run", resumeAllowed);
    other[other.indexOf("tiny")] = "small";
    assertRunFails(
      await run(dir, other),
      2,
      /the model's config differs from the checkpoint's .*config\.json/,
    );
    assert.ok(!(await exists(join(dir, "run/checkpoints/step-6"))), "nothing trained");

    const allowed = await run(dir, trainArgs("run", resumeAllowed, "half.jsonl"));
    assert.equal(allowed.code, 0, allowed.err);
    assert.match(
      notes(allowed),
      /continuing from run\/checkpoints\/step-4 although the training data differs/,
    );
    const vocab = (p: string) => Deno.readTextFile(p).then((t) => JSON.stringify(JSON.parse(t).model.vocab));
    assert.equal(
      await vocab(join(dir, "run/model/tokenizer.json")),
      await vocab(join(dir, "run/checkpoints/step-4/tokenizer.json")),
      "the tokenizer came from the checkpoint, not from the changed data",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("item 2: a live run's output_dir is locked against a second run and a resume; a dead run's lock is taken over", async () => {
  const dir = await workdir();
  const child = spawn(dir, trainArgs("run", ["--max_steps", "100000", "--save_steps", "50"]));
  try {
    // non-empty: the lock is created, then written (a reader may see it empty for a moment)
    await waitFor(join(dir, "run", LOCK_FILE), 20_000, { non_empty: true });
    const info = JSON.parse(await Deno.readTextFile(join(dir, "run", LOCK_FILE)));
    assert.equal(info.pid, child.pid);
    assertRunFails(
      await run(dir, trainArgs("run", ["--max_steps", "4", "--overwrite_output_dir", "true"])),
      1,
      /in use by pid \d+/,
    );
    assertRunFails(
      await run(dir, trainArgs("run", ["--max_steps", "4", "--resume_from_checkpoint", "true"])),
      1,
      /in use by pid/,
    );
    child.kill("SIGKILL");
    await child.output();
    const after = await run(dir, trainArgs("run", ["--max_steps", "2", "--overwrite_output_dir", "true"]));
    assert.equal(after.code, 0, after.err);
    assert.match(
      notes(after),
      new RegExp(`took over run/${LOCK_FILE.replaceAll(".", "\\.")} of pid ${child.pid}`),
    );
    assert.ok(!(await exists(join(dir, "run", LOCK_FILE))), "the lock is released at the end");
  } finally {
    try {
      child.kill("SIGKILL");
      await child.output();
    } catch { /* already ended */ }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("item 3: merge refuses an existing --output; --overwrite_output_dir replaces the folder whole", async () => {
  const dir = await workdir();
  try {
    const gpt2 = `${ROOT}/../shared/fixtures/hf-reference/gpt2`;
    const out = join(dir, "merged");
    await Deno.mkdir(out);
    await Deno.writeTextFile(join(out, "tokenizer.json"), "stale");
    await Deno.writeTextFile(join(out, "keep.txt"), "mine");
    const args = ["merge", "--model", gpt2, "--adapter", `${gpt2}/lora`, "--output", out, "--backend", "cpu"];
    assertRunFails(
      await run(dir, args),
      2,
      /--output .*merged already exists \(keep\.txt, tokenizer\.json\).*--overwrite_output_dir/,
    );
    assert.equal(await Deno.readTextFile(join(out, "keep.txt")), "mine", "nothing was touched");
    const r = await run(dir, [...args, "--overwrite_output_dir"]);
    assert.equal(r.code, 0, r.err);
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.ok(names.includes("model.safetensors") && !names.includes("keep.txt"), names.join());
    assert.notEqual(await Deno.readTextFile(join(out, "tokenizer.json")).catch(() => ""), "stale");
    assert.ok(!names.some((n) => n.includes(".tmp-")), names.join());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("item 4: demo refuses an --output_dir that holds a run, and by default takes the next free runs/demo-N", async () => {
  const dir = await workdir();
  try {
    // a previous run (the files that matter for the check; its checkpoint must survive)
    const ck = join(dir, "runs/demo/checkpoints/step-2");
    await Deno.mkdir(ck, { recursive: true });
    await Deno.writeTextFile(join(ck, "trainer_state.json"), "{}");
    await Deno.writeTextFile(join(dir, "runs/demo/config.yaml"), "model: tiny\n");
    const demo = [
      "demo",
      "--max_steps",
      "400",
      "--block_size",
      "16",
      "--per_device_train_batch_size",
      "2",
      "--backend",
      "cpu",
    ];
    assertRunFails(
      await run(dir, [...demo, "--output_dir", "runs/demo"]),
      2,
      // the demo's fixes: it takes no resume_from_checkpoint, which the message had named
      /Cannot run the demo: --output_dir runs\/demo already holds a run \(checkpoints, config\.yaml\); add --overwrite_output_dir, give another --output_dir, or leave it out/,
    );
    assert.equal(await Deno.readTextFile(join(ck, "trainer_state.json")), "{}");
    // by default the demo takes runs/demo-2 (stopped early with SIGINT: the full demo takes minutes on a cpu)
    const child = spawn(dir, demo);
    const metrics = join(dir, "runs/demo-2/metrics.jsonl");
    await waitFor(metrics, 120_000); // training started: the signal handler is in place
    while (!(await Deno.readTextFile(metrics)).trim()) await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGINT");
    const out = await child.output();
    assert.equal(out.code, 130, dec.decode(out.stderr));
    assert.match(dec.decode(out.stderr), /the demo stopped after saving runs\/demo-2\/checkpoints\/step-\d+/);
    assert.equal(await Deno.readTextFile(join(ck, "trainer_state.json")), "{}", "runs/demo untouched");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("item 5: a diverging run stops naming the step, exit 1, and saves nothing non-finite", async () => {
  const dir = await workdir();
  try {
    const r = await run(
      dir,
      trainArgs("run", ["--max_steps", "20", "--learning_rate", "1e30", "--max_grad_norm", "0"]),
    );
    assertRunFails(
      r,
      1,
      /Cannot continue training: the (loss|gradient norm|weights) became (NaN|-?Infinity) at step \d+;.*skip_nonfinite_steps/,
    );
    const metrics = await Deno.readTextFile(join(dir, "run/metrics.jsonl"));
    assert.doesNotMatch(metrics, /null|NaN/);
    assert.ok(!(await exists(join(dir, "run/model"))), "no final model");
    const saved = await Array.fromAsync(Deno.readDir(join(dir, "run/checkpoints"))).catch(() => []);
    for (const e of saved) {
      const { tensors } = await readSafetensors(join(dir, "run/checkpoints", e.name, "model.safetensors"));
      for (const [name, t] of tensors) assert.ok((t.data as Float32Array).every(Number.isFinite), name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "item 6: a full disk stops with one line naming the path, exit 1, the last checkpoint intact",
  ignore: Deno.uid() !== 0 || Deno.build.os !== "linux",
  async fn() {
    const dir = await workdir();
    const disk = join(dir, "disk");
    await Deno.mkdir(disk);
    const mounted = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=16m", "tmpfs", disk],
    })
      .output();
    try {
      if (!mounted.success) {
        console.error(`skipped: cannot mount a small tmpfs here (${dec.decode(mounted.stderr).trim()})`);
        return;
      }
      const r = await run(dir, trainArgs("disk/run", ["--max_steps", "40", "--save_steps", "1"]));
      assertRunFails(
        r,
        1,
        /Cannot write disk\/run\/checkpoints\/step-\d+: No space left on device.*last complete checkpoint is disk\/run\/checkpoints\/step-\d+/,
      );
      const last = /last complete checkpoint is (\S+);/.exec(r.err)![1];
      assert.equal(await verifyCheckpoint(join(dir, last)), null);
      const names = [...Deno.readDirSync(join(disk, "run/checkpoints"))].map((e) => e.name);
      assert.ok(!names.some((n) => n.includes(".tmp-")), names.join());
    } finally {
      if (mounted.success) await new Deno.Command("umount", { args: [disk] }).output();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("items 7 and 8: leftovers of interrupted writes are removed; a resume skips a corrupt latest checkpoint, saying why", async () => {
  const dir = await workdir();
  try {
    assert.equal((await run(dir, trainArgs("run", ["--max_steps", "6"]))).code, 0);
    await Deno.mkdir(join(dir, "run/checkpoints/step-8.tmp-0a1b2c3d-4e5f"));
    await Deno.mkdir(join(dir, "run/model.tmp-0a1b2c3d-9999"));
    await Deno.truncate(join(dir, "run/checkpoints/step-6/model.safetensors"), 1000);
    const r = await run(dir, trainArgs("run", ["--max_steps", "8", "--resume_from_checkpoint", "true"]));
    assert.equal(r.code, 0, r.err);
    const n = notes(r);
    assert.match(n, /removed run\/checkpoints\/step-8\.tmp-0a1b2c3d-4e5f, left by an interrupted write/);
    assert.match(n, /removed run\/model\.tmp-0a1b2c3d-9999/);
    assert.match(n, /resume: skipping run\/checkpoints\/step-6: .*model\.safetensors/);
    assert.doesNotMatch(n, /re-download/);
    const st = JSON.parse(await Deno.readTextFile(join(dir, "run/checkpoints/step-8/trainer_state.json")));
    assert.equal(st.global_step, 8);
    // step-6 was trained again from step-4 and rewritten whole
    assert.equal(await verifyCheckpoint(join(dir, "run/checkpoints/step-6")), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("item 9: a corrupt trainer_state.json and a corrupt model config.json are named with line and column", async () => {
  const dir = await workdir();
  try {
    assert.equal((await run(dir, trainArgs("run", ["--max_steps", "2"]))).code, 0);
    await Deno.writeTextFile(
      join(dir, "run/checkpoints/step-2/trainer_state.json"),
      '{\n  "global_step": 2,\n  "epoch"',
    );
    assertRunFails(
      await run(
        dir,
        trainArgs("run", ["--max_steps", "4", "--resume_from_checkpoint", "run/checkpoints/step-2"]),
      ),
      2,
      /Cannot parse run\/checkpoints\/step-2\/trainer_state\.json: .* at line 3, column \d+/,
    );
    await Deno.mkdir(join(dir, "model"));
    await Deno.writeTextFile(join(dir, "model/config.json"), '{"model_type": "llama",\n "hidden_size": }');
    const bad = trainArgs("run2", ["--max_steps", "2"]);
    bad[bad.indexOf("tiny")] = "./model";
    assertRunFails(await run(dir, bad), 2, /Cannot parse model\/config\.json: .* at line 2, column \d+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("item 10: a failed resume leaves no output_dir; resuming a finished run changes nothing", async () => {
  const dir = await workdir();
  try {
    assertRunFails(
      await run(dir, trainArgs("fresh", ["--max_steps", "2", "--resume_from_checkpoint", "true"])),
      2,
      /no complete checkpoint in fresh\/checkpoints/,
    );
    assert.ok(!(await exists(join(dir, "fresh"))), "no empty output_dir left behind");
    assert.equal((await run(dir, trainArgs("run", ["--max_steps", "4"]))).code, 0);
    const before = await Promise.all(
      ["report.md", "metrics.jsonl", "config.yaml"].map((f) => bytes(join(dir, "run", f))),
    );
    const again = await run(dir, trainArgs("run", ["--max_steps", "4", "--resume_from_checkpoint", "true"]));
    assert.equal(again.code, 0, again.err);
    assert.match(notes(again), /nothing to train: run finished at step 4/);
    assert.doesNotMatch(again.out + again.err, /NaN/);
    const after = await Promise.all(
      ["report.md", "metrics.jsonl", "config.yaml"].map((f) => bytes(join(dir, "run", f))),
    );
    assert.deepEqual(after, before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Run `args` and send `signal` once `run/checkpoints/step-2` exists; returns what it printed. */
async function interrupt(dir: string, args: string[], signals: Deno.Signal[]): Promise<CliRun> {
  const child = spawn(dir, args);
  await waitFor(join(dir, "run/checkpoints/step-2"));
  for (const s of signals) child.kill(s);
  const r = await child.output();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("SIGINT saves a checkpoint, prints the resume command and exits 130; the resume ends where an uninterrupted run does", async () => {
  const dir = await workdir();
  try {
    const base = ["--max_steps", "60", "--save_steps", "1000"];
    assert.equal((await run(dir, trainArgs("ref", base))).code, 0);
    const child = spawn(dir, trainArgs("run", base));
    // wait for a few logged steps, then interrupt
    await waitFor(join(dir, "run/metrics.jsonl"));
    while ((await Deno.readTextFile(join(dir, "run/metrics.jsonl"))).split("\n").length < 5) {
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGINT");
    const out = await child.output();
    const err = dec.decode(out.stderr);
    assert.equal(out.code, 130, err);
    const m = /SIGINT at step (\d+): saved (\S+); resume with: deno task cli train (.*)$/m.exec(err);
    assert.ok(m, err);
    assert.ok(Number(m[1]) < 60, "stopped early");
    assert.equal(await verifyCheckpoint(join(dir, m[2])), null);
    assert.match(m[3], /--resume_from_checkpoint true$/);
    const resumed = await run(dir, ["train", ...m[3].split(" ")]);
    assert.equal(resumed.code, 0, resumed.err);
    assert.deepEqual(
      await bytes(join(dir, "run/model/model.safetensors")),
      await bytes(join(dir, "ref/model/model.safetensors")),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGTERM exits 143 after a checkpoint", async () => {
  const dir = await workdir();
  try {
    const term = await interrupt(dir, trainArgs("run", ["--max_steps", "100000", "--save_steps", "2"]), [
      "SIGTERM",
    ]);
    assert.equal(term.code, 143, term.err);
    assert.match(term.err, /SIGTERM at step \d+: saved run\/checkpoints\/step-\d+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second SIGINT exits at once, without waiting for the step or the checkpoint", async () => {
  const dir = await workdir();
  try {
    // slow steps (a whole batch of 64-token blocks) leave time to press Ctrl-C twice mid-step
    const child = spawn(
      dir,
      trainArgs("run", [
        "--max_steps",
        "100000",
        "--block_size",
        "64",
        "--per_device_train_batch_size",
        "32",
      ]),
    );
    let err = "";
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    // a logged step: the signal handler is in place (metrics.jsonl itself is created before it)
    await waitFor(join(dir, "run/metrics.jsonl"), 60_000, { non_empty: true });
    child.kill("SIGINT");
    let sent = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      err += value;
      if (!sent && err.includes("stopping after the current step")) {
        child.kill("SIGINT");
        sent = true;
      }
    }
    const { code } = await child.status;
    await child.stdout.cancel();
    assert.ok(sent, err);
    assert.equal(code, 130, err);
    assert.doesNotMatch(err, /saved run\/checkpoints/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("20 random SIGKILLs during a run with save_steps 1, then a resume: the final model is byte-identical and no temp folder remains", async () => {
  const dir = await workdir();
  try {
    const base = ["--max_steps", "80", "--save_steps", "1", "--logging_steps", "5"];
    const ref = await run(dir, trainArgs("ref", base));
    assert.equal(ref.code, 0, ref.err);
    const rand = ((s) => () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)(7);
    let kills = 0;
    while (kills < 20) {
      const resume = (await Array.fromAsync(Deno.readDir(join(dir, "run/checkpoints"))).catch(() => []))
        .some((e) => /^step-\d+$/.test(e.name));
      const args = trainArgs("run", [
        ...base,
        ...(resume ? ["--resume_from_checkpoint", "true"] : ["--overwrite_output_dir", "true"]),
      ]);
      const child = spawn(dir, args);
      await new Promise((r) => setTimeout(r, 300 + rand() * 1200));
      try {
        child.kill("SIGKILL");
      } catch { /* it already ended */ }
      const out = await child.output();
      if (out.code === 0) break; // finished before the kill: the resume below has nothing left
      kills++;
    }
    const last = await run(dir, trainArgs("run", [...base, "--resume_from_checkpoint", "true"]));
    assert.equal(last.code, 0, last.err);
    assert.deepEqual(
      await bytes(join(dir, "run/model/model.safetensors")),
      await bytes(join(dir, "ref/model/model.safetensors")),
    );
    const leftovers: string[] = [];
    for (const d of ["run", "run/checkpoints"]) {
      for (const e of Deno.readDirSync(join(dir, d))) {
        if (e.name.includes(".tmp-")) leftovers.push(`${d}/${e.name}`);
      }
    }
    assert.deepEqual(leftovers, []);
    assert.ok(kills >= 15, `at least 15 kills landed mid-run (${kills})`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
