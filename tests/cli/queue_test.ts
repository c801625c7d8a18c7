/**
 * `deno task cli queue` end to end: real worker subprocesses sharing one queue on each backend (Deno
 * KV on a file; BullMQ on a redis-server this file starts on a free port), one of them SIGKILLed in
 * the middle of a job.
 */
import { join } from "node:path";
import { openQueue } from "../../training/queue.ts";
import type { JobInfo } from "../../training/queue.ts";
import { assert, ROOT } from "../_assert.ts";
import { assertFails, cli, type CliRun } from "./_cli.ts";
import { HAS_REDIS, startRedis } from "./_redis.ts";

const dec = new TextDecoder();

/** `deno run -A cli.ts ...args` in `cwd`. */
function spawn(cwd: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", `${ROOT}/cli.ts`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1" },
  }).spawn();
}

async function run(cwd: string, args: string[]): Promise<CliRun> {
  const r = await spawn(cwd, args).output();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

async function finish(p: Deno.ChildProcess): Promise<CliRun & { signal: Deno.Signal | null }> {
  const r = await p.output();
  return { code: r.code, signal: r.signal, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

async function workdir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-queue-" });
  const docs = Array.from(
    { length: 40 },
    (_, i) =>
      JSON.stringify({ text: `package ${i} provides a small tool for the system and its documentation` }),
  );
  await Deno.writeTextFile(join(dir, "data.jsonl"), docs.join("\n") + "\n");
  return dir;
}

/** A tiny training job: 6 steps, a checkpoint after each. */
function trainJob(dir: string, name: string, lr: number): string {
  return [
    `name: ${name}`,
    "config:",
    "  model: tiny",
    `  dataset: ${join(dir, "data.jsonl")}`,
    "  backend: cpu",
    "  per_device_train_batch_size: 2",
    "  max_seq_length: 16",
    `  learning_rate: ${lr}`,
    "  logging_steps: 1",
    "  save_steps: 1",
    '  eval_strategy: "no"',
    "  max_steps: 6",
    "",
  ].join("\n");
}

if (!HAS_REDIS) console.warn("queue_test: redis-server is not installed; the redis:// tests are skipped");

/**
 * The Must-show scenario: 6 tiny training jobs (3 learning rates, 2 jobs each) and one with an
 * invalid config; two workers; the first killed with SIGKILL once a job of its has a checkpoint.
 */
async function scenario(dir: string, url: string): Promise<string> {
  const runs = join(dir, "runs");
  const lrs = [1e-3, 1e-3, 3e-3, 3e-3, 1e-2, 1e-2];
  for (const [i, lr] of lrs.entries()) {
    await Deno.writeTextFile(join(dir, `job${i + 1}.yaml`), trainJob(dir, `lr${lr}`, lr));
  }
  // Too long a block for the tiny model: valid as a config, found only when the run starts.
  await Deno.writeTextFile(
    join(dir, "bad.yaml"),
    trainJob(dir, "bad", 1e-3).replace("max_seq_length: 16", "max_seq_length: 4096"),
  );
  const subs = await Promise.all(
    [...lrs.map((_, i) => `job${i + 1}.yaml`), "bad.yaml"].map((f) =>
      run(dir, ["queue", "submit", "--queue", url, "--config", f])
    ),
  );
  for (const s of subs) assert.equal(s.code, 0, s.err);
  const ids = subs.map((s) => s.out.trim());
  assert.equal(new Set(ids).size, 7, `7 distinct ids: ${ids}`);
  const badId = ids[6];

  const work = (name: string) =>
    spawn(dir, [
      "queue",
      "work",
      "--queue",
      url,
      "--worker",
      name,
      "--lease", // seconds: long enough that a live worker on busy cores keeps its job
      "5",
      "--runs_dir",
      runs,
      "--idle_exit",
      "60",
    ]);
  const a = work("A"), b = work("B");
  const q = await openQueue(url);
  const stop = (p: Deno.ChildProcess, sig: Deno.Signal) => {
    try {
      p.kill(sig);
    } catch { /* it has ended */ }
  };
  let killed: string | null = null, jobs: JobInfo[] = [];
  try {
    const t0 = Date.now();
    while (killed === null) {
      if (Date.now() - t0 > 90_000) throw new Error("worker A had no job with a checkpoint within 90 s");
      jobs = await q.jobs();
      for (const j of jobs) {
        const out = join(runs, `job-${j.id}`);
        if (
          j.state === "active" && j.worker === "A" && await exists(join(out, "checkpoints", "step-2")) &&
          !await exists(join(out, "model"))
        ) {
          stop(a, "SIGKILL");
          killed = j.id;
          break;
        }
      }
      if (killed === null) await sleep(50);
    }
    while (jobs.some((j) => j.state === "waiting" || j.state === "active")) {
      if (Date.now() - t0 > 180_000) throw new Error(`not every job finished: ${jobs.map((j) => j.state)}`);
      await sleep(200);
      jobs = await q.jobs();
    }
  } catch (e) {
    stop(a, "SIGKILL");
    stop(b, "SIGKILL");
    const [ra, rb] = [await finish(a), await finish(b)];
    throw new Error(`${(e as Error).message}\nworker A:\n${ra.out}${ra.err}\nworker B:\n${rb.out}${rb.err}`);
  } finally {
    await q.close();
  }
  stop(b, "SIGTERM");
  const [ra, rb] = [await finish(a), await finish(b)];
  assert.equal(ra.signal, "SIGKILL");
  assert.equal(rb.code, 143, `worker B stops at SIGTERM while idle: ${rb.out}${rb.err}`);

  // Every good job completed exactly once; only the killed one ran twice, resuming from a checkpoint.
  const status = await run(dir, ["queue", "status", "--queue", url, "--json"]);
  assert.equal(status.code, 0, status.err);
  const all = JSON.parse(status.out) as JobInfo[];
  assert.deepEqual(all.map((j) => j.id).sort(), [...ids].sort());
  const byId = new Map(all.map((j) => [j.id, j]));
  for (const id of ids.slice(0, 6)) {
    const j = byId.get(id)!;
    assert.equal(j.state, "completed", `job ${id}: ${j.error}`);
    assert.equal(j.attempts, id === killed ? 2 : 1, `job ${id} attempts`);
    const done = [ra.err, rb.err].join("\n").split("\n").filter((l) =>
      new RegExp(`: job ${id} .*: completed in`).test(l)
    );
    assert.equal(done.length, 1, `job ${id} completed once: ${done}`);
  }
  const k = byId.get(killed)!, kr = k.result!;
  assert.match(String(kr.resumed_from), /^step-[2-5]$/, `the retry resumed: ${JSON.stringify(kr)}`);
  const twin = all.find((j) => j.id !== killed && j.name === k.name && j.state === "completed")!;
  const tr = twin.result!;
  // The final metrics, every logged step and the weights equal the uninterrupted twin's. (Not the
  // summary's train_loss: the Trainer averages it over the steps of its own session.)
  const final = (r: Record<string, unknown>) => {
    const m = r.metrics as Record<string, unknown>;
    return [r.final_loss, r.final_perplexity, r.global_step, m.epoch, m.num_input_tokens_seen];
  };
  assert.deepEqual(final(kr), final(tr), `killed job ${killed} == uninterrupted twin ${twin.id}`);
  assert.equal(kr.global_step, 6);
  const steps = async (r: Record<string, unknown>) =>
    (await Deno.readTextFile(join(String(r.output_dir), "metrics.jsonl"))).split("\n").filter((l) =>
      l.startsWith('{"loss"')
    );
  const [ks, ts] = [await steps(kr), await steps(tr)];
  assert.equal(ks.length, 6);
  assert.deepEqual(ks, ts, "metrics.jsonl: the same loss, grad_norm and learning_rate at every step");
  const weights = (r: Record<string, unknown>) =>
    Deno.readFile(join(String(r.output_dir), "model/model.safetensors"));
  assert.deepEqual(await weights(kr), await weights(tr), "the same final weights, bit for bit");
  // The invalid config: failed once, the reason in its status.
  const bad = byId.get(badId)!;
  assert.equal(bad.state, "failed");
  assert.equal(bad.attempts, 1);
  assert.match(
    bad.error!,
    /max_length \(max_seq_length, block_size\) 4096 exceeds the model's max_position_embeddings 128/,
  );

  const results = await run(dir, ["queue", "results", "--queue", url]);
  assert.equal(results.code, 0, results.err);
  assert.equal(results.out.trim().split("\n").length, 7, results.out); // a header and 6 rows
  return String(kr.output_dir);
}

Deno.test("queue (kv): two workers, one SIGKILLed mid-job: 6 jobs finish once, the killed one resumes to the same metrics", async () => {
  const dir = await workdir();
  try {
    const run1 = await scenario(dir, `kv:${join(dir, "queue.sqlite")}`);
    // An eval job on a model the queue trained: `cli eval` in the worker, its metrics the result.
    const labelled = Array.from(
      { length: 6 },
      (_, i) => JSON.stringify({ text: `package ${i}`, label: i % 2 ? "a" : "b" }),
    );
    await Deno.writeTextFile(join(dir, "cls.jsonl"), labelled.join("\n") + "\n");
    await Deno.writeTextFile(
      join(dir, "eval.yaml"),
      `kind: eval\nconfig:\n  model: ${join(run1, "model")}\n  task: classification\n` +
        `  data: ${join(dir, "cls.jsonl")}\n  backend: cpu\n`,
    );
    const url = `kv:${join(dir, "queue.sqlite")}`;
    const s = await run(dir, ["queue", "submit", "--queue", url, "-c", "eval.yaml"]);
    assert.equal(s.code, 0, s.err);
    const w = await run(dir, ["queue", "work", "--queue", url, "--once"]);
    assert.equal(w.code, 0, w.err);
    assert.match(w.out, /1 jobs taken: 1 completed/, w.err);
    const r = JSON.parse((await run(dir, ["queue", "results", "--queue", url, "--json"])).out);
    const ev = r.find((j: { id: string }) => j.id === s.out.trim());
    assert.equal(ev.kind, "eval");
    assert.equal(ev.result.n, 6);
    assert.ok(typeof ev.result.accuracy === "number", JSON.stringify(ev.result));
    // a job that fails makes `work --once` fail too (it had exited 0)
    await Deno.writeTextFile(
      join(dir, "bad.yaml"),
      `kind: eval\nconfig:\n  model: ${join(dir, "no-model")}\n  task: classification\n` +
        `  data: ${join(dir, "cls.jsonl")}\n  backend: cpu\n`,
    );
    assert.equal((await run(dir, ["queue", "submit", "--queue", url, "-c", "bad.yaml"])).code, 0);
    const f = await run(dir, ["queue", "work", "--queue", url, "--once"]);
    assert.equal(f.code, 1, f.out + f.err);
    assert.match(f.out, /1 jobs taken: 0 completed, 1 failed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "queue (redis): two workers, one SIGKILLed mid-job: 6 jobs finish once, the killed one resumes to the same metrics",
  ignore: !HAS_REDIS,
  async fn() {
    const dir = await workdir();
    const redis = (await startRedis(dir))!;
    try {
      await scenario(dir, redis.url);
    } finally {
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("queue: an unreachable Redis is one line naming host and port, within seconds", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close(); // nothing listens there now
  const t0 = Date.now();
  const r = await cli(["queue", "status", "--queue", `redis://127.0.0.1:${port}`]);
  assertFails(r, 1, new RegExp(`Cannot reach Redis at 127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
  assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
});

Deno.test("queue: submit refuses a bad job file; cancel removes a waiting job; every command has --help", async () => {
  const dir = await workdir();
  const url = `kv:${join(dir, "q.sqlite")}`;
  try {
    await Deno.writeTextFile(join(dir, "typo.yaml"), "model: tiny\nlerning_rate: 0.1\n");
    assertFails(
      await cli(["queue", "submit", "--queue", url, "-c", join(dir, "typo.yaml")]),
      2,
      /lerning_rate/,
    );
    await Deno.writeTextFile(join(dir, "kind.yaml"), "kind: sweep\nconfig: {}\n");
    assertFails(
      await cli(["queue", "submit", "--queue", url, "-c", join(dir, "kind.yaml")]),
      2,
      /kind "sweep"; use train, eval, trial/,
    );
    await Deno.writeTextFile(join(dir, "ev.yaml"), "kind: eval\nconfig:\n  model: runs/x\n  max_sample: 3\n");
    assertFails(
      await cli(["queue", "submit", "--queue", url, "-c", join(dir, "ev.yaml")]),
      2,
      /an eval job's config has no field max_sample; its fields are the flags of deno task cli eval: .*max_samples/,
    );
    // false for an option that is not a switch: refused (it was dropped, and every example evaluated)
    await Deno.writeTextFile(
      join(dir, "ev2.yaml"),
      "kind: eval\nconfig:\n  model: runs/x\n  max_samples: false\n",
    );
    assertFails(
      await cli(["queue", "submit", "--queue", url, "-c", join(dir, "ev2.yaml")]),
      2,
      /max_samples: false is no value \(it is not a switch\); give a value, or drop it for the default/,
    );
    // an eval job's values as eval reads them, at submit (a worker had failed it later)
    await Deno.writeTextFile(
      join(dir, "ev3.yaml"),
      "kind: eval\nconfig:\n  model: runs/x\n  task: clasification\n",
    );
    assertFails(
      await cli(["queue", "submit", "--queue", url, "-c", join(dir, "ev3.yaml")]),
      2,
      /queue submit: \S+ev3\.yaml: eval: --task clasification is not one of summarization, translation, classification; did you mean classification\?$/,
    );
    // a folder as the queue file (sqlite had said "unable to open database file", exit 1)
    assertFails(
      await cli(["queue", "status", "--queue", `kv:${dir}`]),
      2,
      /^fledge: Cannot open queue kv:\S+: \S+ is a folder; give a file, e.g\. kv:\S+\/queue\.db$/,
    );
    // a mistyped queue file: named, and not made (status had made it and its folder, and said "no jobs")
    for (const sub of [["status"], ["results"], ["cancel", "1"]]) {
      assertFails(
        await cli(["queue", ...sub, "--queue", `kv:${join(dir, "typo", "q.sqlite")}`]),
        2,
        /^fledge: Cannot open queue kv:\S+: \S+typo\/q\.sqlite does not exist; check --queue \(queue submit and queue work create it\)$/,
      );
    }
    assert.equal(await exists(join(dir, "typo")), false);
    assertFails(await cli(["queue", "submit", "--queue", url]), 2, /missing --config/);
    assertFails(await cli(["queue", "stats"]), 2, /unknown command "stats"/);
    assertFails(
      await cli(["queue", "status", "--queue", "mysql://x"]),
      2,
      /give kv:PATH .* or redis:\/\/host:port/,
    );

    await Deno.writeTextFile(join(dir, "ok.yaml"), trainJob(dir, "ok", 1e-3));
    const s = await cli(["queue", "submit", "--queue", url, "-c", join(dir, "ok.yaml")]);
    assert.equal(s.code, 0, s.err);
    assert.equal(s.out, "1\n");
    const st = await cli(["queue", "status", "--queue", url]);
    assert.match(st.out, /^1\s+train\s+waiting\s+0\/3\s+ok/m);
    const c = await cli(["queue", "cancel", "1", "--queue", url]);
    assert.equal(c.code, 0, c.err);
    assert.equal(c.out, "cancelled job 1 (ok)\n");
    assert.equal((await cli(["queue", "status", "--queue", url])).out, "no jobs\n");
    assertFails(await cli(["queue", "cancel", "1", "--queue", url]), 2, /Cannot cancel job 1: no such job/);

    for (const sub of ["", "submit", "work", "status", "results", "cancel"]) {
      const h = await cli(["queue", ...(sub ? [sub] : []), "--help"]);
      assert.equal(h.code, 0);
      assert.match(h.out, new RegExp(`^usage: deno task cli queue ${sub}`));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
