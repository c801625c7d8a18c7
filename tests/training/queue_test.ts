/**
 * training/queue.ts in-process: job files, queue addresses, the lease rules of the Deno KV backend
 * (exclusive, expiring, renewed), retries and failures decided by the worker, and a training job's
 * retry on another host. The workers sharing a queue across processes (and Redis) are tested end to
 * end in tests/cli/queue_test.ts.
 */
import { join } from "node:path";
import {
  JOB_MARK,
  type JobQueue,
  openQueue,
  parseJobSpec,
  parseQueueUrl,
  runWorker,
  trainJob,
} from "../../training/queue.ts";
import { assert } from "../_assert.ts";
import { HAS_REDIS, startRedis } from "../cli/_redis.ts";

async function withQueue(fn: (q: JobQueue, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-queue-" });
  const q = await openQueue(`kv:${join(dir, "sub", "q.sqlite")}`);
  try {
    await fn(q, dir);
  } finally {
    await q.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = () => {};

Deno.test("parseJobSpec() reads a job or a bare TrainingConfig and names every problem's key", () => {
  const bare = parseJobSpec({ model: "tiny", max_steps: 3 }, "run.yaml");
  assert.deepEqual(bare, {
    kind: "train",
    config: { model: "tiny", max_steps: 3 },
    name: null,
    max_attempts: 3,
  });
  // another tool's config, as train --config reads it: in fledge's names (it was refused)
  const nano = parseJobSpec({ kind: "train", config: { batch_size: 2, max_iters: 4, n_layer: 1 } }, "j");
  assert.equal(nano.config.per_device_train_batch_size, 2);
  assert.equal(nano.config.max_steps, 4);
  const trial = parseJobSpec(
    { kind: "trial", name: "t1", max_attempts: 1, config: { study_dir: "runs/s", trial: 3 } },
    "j",
  );
  assert.equal(trial.kind, "trial");
  assert.equal(trial.max_attempts, 1);
  assert.throws(
    () => parseJobSpec({ kind: "trial", config: { learning_rate: 1e-3 } }, "j.yaml"),
    /j\.yaml: a trial's config is \{study_dir, trial\}.*unknown key learning_rate/,
  );
  assert.throws(
    () => parseJobSpec({ kind: "trial", config: { study_dir: "s", trial: -1 } }, "j.yaml"),
    /config.trial must be an integer >= 0, got -1/,
  );
  assert.throws(
    () => parseJobSpec({ kind: "sweep", config: {} }, "j.yaml"),
    /j\.yaml: kind "sweep"; use train, eval, trial/,
  );
  assert.throws(
    () => parseJobSpec({ kind: "eval", config: {}, retries: 2 }, "j.yaml"),
    /unknown key retries/,
  );
  assert.throws(() => parseJobSpec({ config: [] }, "j.yaml"), /config must be a mapping, got a list/);
  assert.throws(() => parseJobSpec({ config: {}, max_attempts: 0 }, "j.yaml"), RangeError);
  assert.throws( // a quoted number once read back as "got 3"
    () => parseJobSpec({ kind: "eval", config: {}, max_attempts: "3" }, "j.yaml"),
    /max_attempts must be an integer >= 1, got "3" \(write the number without quotes\)/,
  );
  assert.throws(() => parseJobSpec({ config: { lerning_rate: 1 } }, "j.yaml"), /lerning_rate/);
  assert.throws(() => parseJobSpec("model: tiny", "j.yaml"), /expected a mapping, got string/);
});

Deno.test("parseQueueUrl() reads kv:PATH and redis://host:port[/db], refusing anything else", () => {
  assert.deepEqual(parseQueueUrl("kv:.fledge/queue.sqlite"), { backend: "kv", path: ".fledge/queue.sqlite" });
  assert.deepEqual(parseQueueUrl("redis://localhost"), {
    backend: "redis",
    host: "localhost",
    port: 6379,
    db: 0,
    queue: "fledge",
  });
  assert.deepEqual(parseQueueUrl("redis://[::1]:7000/2?queue=nightly-2"), {
    backend: "redis",
    host: "::1",
    port: 7000,
    db: 2,
    queue: "nightly-2",
  });
  // credentials had been dropped without a word (and the server then said NOAUTH)
  assert.deepEqual(parseQueueUrl("redis://ci:p%40ss@h:1"), {
    backend: "redis",
    host: "h",
    port: 1,
    db: 0,
    queue: "fledge",
    username: "ci",
    password: "p@ss",
  });
  assert.equal((parseQueueUrl("redis://:secret@h") as { password?: string }).password, "secret");
  for (const bad of ["kv:", "queue.sqlite", "redis://h:1/x", "rediss://h:1", "http://h"]) {
    assert.throws(() => parseQueueUrl(bad), TypeError, bad);
  }
  assert.throws(
    () => parseQueueUrl("redis://h?name=a"),
    TypeError,
    `unknown parameter "name" (only ?queue=NAME)`,
  );
  assert.throws(() => parseQueueUrl("redis://h?queue=a:b"), TypeError, `queue name "a:b"`);
  assert.throws(() => parseQueueUrl("redis://h?queue="), TypeError, `queue name ""`);
});

Deno.test("openQueue() names a kv: file that is not a queue database (once a bare 'file is not a database')", async () => {
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, "notes, not a database\n".repeat(200));
  await assert.rejects(() => openQueue(`kv:${file}`), {
    name: "TypeError",
    message: /Cannot open queue kv:.*: .* is not a queue database; give a new or existing kv: file/,
  });
  await Deno.remove(file);
});

Deno.test("kv queue: a lease is exclusive, renewed by heartbeats, and taken over once it expires", async () => {
  await withQueue(async (q) => {
    const id = await q.submit({ kind: "train", config: {}, name: "x" });
    const a = (await q.lease("A", { lease_ms: 1500, wait_ms: 0 }))!;
    assert.equal(a.job.id, id);
    assert.equal(a.job.attempts, 1);
    assert.equal(await q.lease("B", { lease_ms: 1500, wait_ms: 0 }), null, "held by A");
    await sleep(1000);
    assert.ok(await a.heartbeat());
    await sleep(1000);
    assert.equal(await q.lease("B", { lease_ms: 1500, wait_ms: 0 }), null, "the heartbeat renewed it");
    const t0 = Date.now();
    const b = (await q.lease("B", { lease_ms: 5000, wait_ms: 5000 }))!;
    assert.ok(Date.now() - t0 < 2000, "taken over soon after the lease expired");
    assert.equal(b.job.attempts, 2);
    assert.equal(await a.heartbeat(), false, "A lost it");
    assert.equal(await a.complete({ x: 1 }, []), false, "A's result is dropped");
    assert.ok(await b.complete({ x: 2 }, ["note"]));
    const [job] = await q.jobs();
    assert.equal(job.state, "completed");
    assert.deepEqual(job.result, { x: 2 });
    assert.equal(job.worker, "B");
    assert.match(job.log.join("\n"), /the lease of A expired; attempt 2 on B[\s\S]*note/);
  });
});

Deno.test("kv queue: a job whose worker is lost on its last attempt fails, naming the worker", async () => {
  await withQueue(async (q) => {
    await q.submit({ kind: "train", config: {}, max_attempts: 1 });
    assert.ok(await q.lease("A", { lease_ms: 50, wait_ms: 0 }));
    await sleep(100);
    assert.equal(await q.lease("B", { lease_ms: 50, wait_ms: 0 }), null);
    const [job] = await q.jobs();
    assert.equal(job.state, "failed");
    assert.match(job.error!, /its worker A stopped renewing the lease on attempt 1 of 1/);
  });
});

Deno.test("runWorker() and openQueue() refuse an option name they do not read (max_job had taken jobs for ever)", async () => {
  const dir = await Deno.makeTempDir();
  const q = await openQueue(`kv:${dir}/q.sqlite`);
  try {
    await assert.rejects(
      () => runWorker(q, { max_job: 1, idle_exit: 0 } as never),
      {
        name: "TypeError",
        message: /^runWorker: "max_job" \(did you mean max_jobs\?\) is not an option of runWorker/,
      },
    );
    await assert.rejects(() => openQueue(`kv:${dir}/q.sqlite`, { creat: false } as never), {
      name: "TypeError",
      message: /did you mean create\?/,
    });
  } finally {
    await q.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runWorker(): bad input fails a job once; another error is retried up to max_attempts", async () => {
  await withQueue(async (q) => {
    // what the CLI's flags and job files refuse, the API refuses too (a lease of 0 once ran a job twice)
    for (
      const [o, re] of [
        [{ lease: 0 }, /lease 0 is not/],
        [{ lease: 0.1 }, /lease 0\.1 is not a number of seconds >= 1/],
        [{ max_jobs: 0 }, /max_jobs 0 is not/],
        [{
          idle_exit: -1,
        }, /idle_exit -1/],
      ] as const
    ) {
      await assert.rejects(() => runWorker(q, { ...o, log: quiet }), { name: "RangeError", message: re });
    }
    await assert.rejects(
      () => q.submit({ kind: "eval", config: {}, max_attempts: 0 }),
      /max_attempts must be an integer >= 1, got 0/,
    );
    assert.deepEqual(await q.jobs(), [], "nothing submitted");
    const bad = await q.submit({ kind: "eval", config: { why: "bad" } });
    const flaky = await q.submit({ kind: "eval", config: { why: "flaky" }, max_attempts: 2 });
    const broken = await q.submit({ kind: "eval", config: { why: "broken" }, max_attempts: 2 });
    let calls = 0;
    const s = await runWorker(q, {
      handlers: {
        eval: (job) => {
          if (job.config.why === "bad") throw new RangeError("max_samples: must be >= 1");
          if (job.config.why === "flaky" && job.attempts === 1) throw new Error("device lost");
          if (job.config.why === "broken") throw new Error("out of memory");
          calls++;
          return Promise.resolve({ result: { attempt: job.attempts } });
        },
      },
      idle_exit: 0.3,
      log: quiet,
    });
    const jobs = new Map((await q.jobs()).map((j) => [j.id, j]));
    assert.deepEqual(
      [jobs.get(bad)!.state, jobs.get(bad)!.attempts, jobs.get(bad)!.error],
      ["failed", 1, "max_samples: must be >= 1"],
    );
    assert.deepEqual([jobs.get(flaky)!.state, jobs.get(flaky)!.result], ["completed", { attempt: 2 }]);
    assert.deepEqual([jobs.get(broken)!.state, jobs.get(broken)!.attempts], ["failed", 2]);
    assert.equal(jobs.get(broken)!.error, "out of memory");
    assert.equal(calls, 1);
    assert.deepEqual([s.processed, s.completed, s.failed, s.retried], [5, 1, 2, 2]);
    // idle_exit 0 takes the jobs waiting now, then stops (it once took none)
    await q.submit({ kind: "eval", config: { why: "ok" } });
    await q.submit({ kind: "eval", config: { why: "ok" } });
    const now = await runWorker(q, {
      handlers: { eval: () => Promise.resolve({ result: { ok: 1 } }) },
      idle_exit: 0,
      log: quiet,
    });
    assert.deepEqual([now.processed, now.completed], [2, 2]);
    // A worker without an eval handler fails an eval job, saying so.
    const none = await q.submit({ kind: "eval", config: {} });
    await runWorker(q, { max_jobs: 1, log: quiet });
    const j = (await q.jobs()).find((j) => j.id === none)!;
    assert.equal(j.state, "failed");
    assert.match(j.error!, new RegExp(`Cannot run eval job ${none}: this worker has no eval handler`));
  });
});

Deno.test("runWorker(): a run folder in use by a live process gives the job back uncounted, and waits a lease", async () => {
  await withQueue(async (q) => {
    // (a worker whose lease ran out while it still trained held the folder: the retries had failed
    // the job on its run lock, every attempt within a second)
    const id = await q.submit({ kind: "eval", config: {}, max_attempts: 1 });
    let calls = 0;
    const t0 = Date.now();
    const s = await runWorker(q, {
      handlers: {
        eval: () => {
          if (++calls < 3) throw new Deno.errors.Busy("runs/x is in use by pid 4242 (train)");
          return Promise.resolve({ result: { ok: 1 } });
        },
      },
      lease: 1,
      max_jobs: 3,
      log: quiet,
    });
    const [job] = await q.jobs();
    assert.deepEqual([job.id, job.state, job.attempts], [id, "completed", 1]);
    assert.deepEqual([s.processed, s.completed, s.retried, s.failed], [3, 1, 2, 0]);
    assert.ok(Date.now() - t0 >= 1900, "a lease's wait after each busy try");
    assert.match(job.log.join("\n"), /its run folder is in use .*waits again, uncounted/);
  });
});

Deno.test("kv queue: cancel removes a waiting job only; release puts an active one back", async () => {
  await withQueue(async (q) => {
    const one = await q.submit({ kind: "train", config: {} });
    const two = await q.submit({ kind: "train", config: {} });
    const l = (await q.lease("A", { lease_ms: 10_000, wait_ms: 0 }))!;
    assert.equal(l.job.id, one);
    await assert.rejects(q.cancel(one), /Cannot cancel job 1: it is active on A/);
    await assert.rejects(q.cancel("9"), RangeError);
    assert.equal((await q.cancel(two)).id, two);
    await l.release(["stopped by SIGTERM"]);
    const jobs = await q.jobs();
    // given back at a signal, the attempt does not count (BullMQ: stalled, not failed); the next start
    // is attempt 1 again (it had read "attempt 2 of 1" with max_attempts 1)
    assert.deepEqual(jobs.map((j) => [j.id, j.state, j.attempts]), [[one, "waiting", 0]]);
    const again = (await q.lease("B", { lease_ms: 10_000, wait_ms: 0 }))!;
    assert.deepEqual([again.job.id, again.job.attempts], [one, 1]);
  });
});

Deno.test("trainJob() on a retry removes the run lock another host's lost worker left", async () => {
  await withQueue(async (q, dir) => {
    const docs = Array.from(
      { length: 20 },
      (_, i) => JSON.stringify({ text: `package ${i} does a small thing` }),
    );
    await Deno.writeTextFile(join(dir, "train.jsonl"), docs.join("\n") + "\n");
    const out = join(dir, "run");
    await Deno.mkdir(out);
    const lock = { pid: 4242, host: "elsewhere", started: new Date().toISOString(), command: "queue work" };
    await Deno.writeTextFile(join(out, ".fledge.lock"), JSON.stringify(lock));
    const config = {
      model: "tiny",
      dataset: join(dir, "train.jsonl"),
      output_dir: out,
      backend: "cpu",
      max_steps: 1,
      max_seq_length: 16,
      per_device_train_batch_size: 2,
      save_strategy: "no",
    };
    await q.submit({ kind: "train", config });
    const job = (await q.jobs())[0];
    await Deno.writeTextFile(join(out, JOB_MARK), `${job.id}\n`); // the first attempt's mark
    const notes: string[] = [];
    const r = await trainJob(
      { ...job, attempts: 2 },
      { attempt: 2, runs_dir: dir, worker: "B", log: (l) => notes.push(l), handle_signals: false },
    );
    assert.equal(r.result.global_step, 1);
    assert.equal(r.result.resumed_from, null);
    assert.match(notes.join("\n"), /removed the run lock of elsewhere pid 4242[\s\S]*attempt 2 starts over/);
  });
});

Deno.test("trainJob() on a retry never resumes or replaces a run folder the job did not make", async () => {
  await withQueue(async (q, dir) => {
    await Deno.writeTextFile(join(dir, "train.jsonl"), '{"text": "package 1 does a small thing"}\n');
    const out = join(dir, "prev");
    await Deno.mkdir(out);
    await Deno.writeTextFile(join(out, "config.yaml"), "someone: else\n"); // another run's folder
    const config = {
      model: "tiny",
      dataset: join(dir, "train.jsonl"),
      output_dir: out,
      backend: "cpu",
      max_steps: 1,
    };
    await q.submit({ kind: "train", config });
    const job = (await q.jobs())[0];
    const ctx = { runs_dir: dir, worker: "B", log: () => {}, handle_signals: false };
    for (const attempt of [1, 2]) { // a retry once took it over (resumed its checkpoints, or replaced it)
      await assert.rejects(() => trainJob({ ...job, attempts: attempt }, { ...ctx, attempt }), {
        message: /already holds a run/,
      });
    }
    assert.equal(await Deno.readTextFile(join(out, "config.yaml")), "someone: else\n");
  });
});

Deno.test("trainJob() with overwrite_output_dir: the first attempt takes the folder over and a retry resumes there", async () => {
  await withQueue(async (q, dir) => {
    const docs = Array.from(
      { length: 40 },
      (_, i) => JSON.stringify({ text: `package ${i} does a small thing` }),
    );
    await Deno.writeTextFile(join(dir, "train.jsonl"), docs.join("\n") + "\n");
    const out = join(dir, "ow");
    await Deno.mkdir(out);
    await Deno.writeTextFile(join(out, "notes.txt"), "mine\n"); // a folder that held something
    const config = {
      model: "tiny",
      dataset: join(dir, "train.jsonl"),
      output_dir: out,
      overwrite_output_dir: true,
      backend: "cpu",
      max_steps: 4,
      max_seq_length: 16,
      per_device_train_batch_size: 2,
      save_strategy: "steps",
      save_steps: 2,
    };
    await q.submit({ kind: "train", config });
    const job = (await q.jobs())[0];
    const ctx = { runs_dir: dir, worker: "A", log: () => {}, handle_signals: false };
    await trainJob({ ...job, attempts: 1 }, { ...ctx, attempt: 1 });
    // the worker died after its last checkpoint: the retry resumes (it had removed checkpoints/ and
    // started over)
    await Deno.remove(join(out, "checkpoints", "step-4"), { recursive: true });
    const notes: string[] = [];
    const r = await trainJob({ ...job, attempts: 2 }, { ...ctx, attempt: 2, log: (l) => notes.push(l) });
    assert.equal(r.result.resumed_from, "step-2", notes.join("\n"));
    assert.equal(r.result.global_step, 4);
    assert.equal(await Deno.readTextFile(join(out, "notes.txt")), "mine\n");
    // a job given back at a signal starts again as attempt 1 (not counted): it resumes in its own folder
    // too (it had been refused as another run's folder, and failed for good)
    await Deno.remove(join(out, "checkpoints", "step-4"), { recursive: true });
    const again = await trainJob({ ...job, attempts: 1 }, { ...ctx, attempt: 1 });
    assert.equal(again.result.resumed_from, "step-2");
  });
});

Deno.test({
  name:
    "redis queue: ?queue=NAME keeps queues on one server apart; a password server takes redis://:PASSWORD@",
  ignore: !HAS_REDIS,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fledge-queue-redis-" });
    const redis = (await startRedis(dir, ["--requirepass", "s3cret"]))!;
    const port = new URL(redis.url).port;
    try {
      await assert.rejects(
        () => openQueue(redis.url),
        Error,
        `Cannot reach Redis at 127.0.0.1:${port}: NOAUTH Authentication required.; give the server's user and password`,
      );
      await assert.rejects(() => openQueue(`redis://:wrong@127.0.0.1:${port}`), Error, "WRONGPASS");
      const a = await openQueue(`redis://:s3cret@127.0.0.1:${port}?queue=a`);
      const b = await openQueue(`redis://:s3cret@127.0.0.1:${port}?queue=b`);
      const d = await openQueue(`redis://:s3cret@127.0.0.1:${port}`);
      try {
        assert.equal(a.url, `redis://:***@127.0.0.1:${port}?queue=a`); // messages never show the password
        const ida = await a.submit({ kind: "train", config: {} });
        assert.deepEqual((await a.jobs()).map((j) => j.id), [ida]);
        assert.deepEqual([await b.jobs(), await d.jobs()], [[], []]);
        assert.equal(await b.lease("W", { lease_ms: 10_000, wait_ms: 300 }), null);
        const l = (await a.lease("W", { lease_ms: 10_000, wait_ms: 1000 }))!;
        assert.equal(l.job.id, ida);
        assert.ok(await l.complete({ ok: true }, []));
      } finally {
        for (const q of [a, b, d]) await q.close();
      }
    } finally {
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "redis queue: a job given back at a signal does not count as an attempt, as in the kv queue",
  ignore: !HAS_REDIS,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fledge-queue-redis-" });
    const redis = (await startRedis(dir))!;
    const q = await openQueue(redis.url);
    try {
      const id = await q.submit({ kind: "train", config: {}, max_attempts: 1 });
      const a = (await q.lease("A", { lease_ms: 10_000, wait_ms: 1000 }))!;
      assert.equal(a.job.attempts, 1);
      await a.release(["stopped by SIGTERM"]);
      assert.deepEqual((await q.jobs()).map((j) => [j.id, j.state, j.attempts]), [[id, "waiting", 0]]);
      const b = (await q.lease("B", { lease_ms: 10_000, wait_ms: 1000 }))!;
      assert.deepEqual([b.job.id, b.job.attempts, b.job.max_attempts], [id, 1, 1]);
      assert.ok(await b.complete({ ok: true }, []));
      assert.deepEqual((await q.jobs()).map((j) => [j.state, j.attempts]), [["completed", 1]]);
    } finally {
      await q.close();
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
