/**
 * `deno task cli search --workers N`: trials as jobs of a queue on worker processes. The search
 * starts its own workers; or workers started apart from it (as on other machines) take the trials,
 * one of them SIGKILLed mid-trial, and the search process itself SIGKILLed and rerun. With the
 * random sampler and no pruning each trial's parameters depend only on its number, so every trial
 * must end with the very value of the same study run in one process (exact resume included).
 */
import { join } from "node:path";
import { type JobInfo, openQueue } from "../../training/queue.ts";
import { assert, ROOT } from "../_assert.ts";
import { assertFails, cli } from "./_cli.ts";
import { HAS_REDIS, startRedis } from "./_redis.ts";
import { debianText, searchYaml } from "../_search.ts";
import { loadSearchConfig, runSearch } from "../../training/search.ts";

/** A tiny study: 4 trials of 16 steps, evaluated and checkpointed every 4. */
const studyYaml = (data: string, study: string) => searchYaml(data, study, { steps: 16 });
const dataset = (dir: string) => debianText(dir, 200);

interface StudyTrial {
  number: number;
  state: string;
  params: Record<string, unknown>;
  value: number | null;
  job_id?: string;
}

const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

function spawn(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", `${ROOT}/cli.ts`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function waitFor<T>(
  get: () => Promise<T | null | undefined | false>,
  ms: number,
  what: string,
): Promise<T> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const v = await get();
    if (v) return v;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function jobs(url: string): Promise<JobInfo[]> {
  const q = await openQueue(url);
  try {
    return await q.jobs();
  } finally {
    await q.close();
  }
}

/** The same study in one process, once for the file. */
let sequential: Promise<StudyTrial[]> | null = null;
function sequentialTrials(dir: string, data: string): Promise<StudyTrial[]> {
  sequential ??= (async () => {
    await Deno.writeTextFile(join(dir, "seq.yaml"), studyYaml(data, join(dir, "seq")));
    const r = await cli(["search", "--config", join(dir, "seq.yaml"), "--json"]);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out).trials;
  })();
  return sequential;
}

const values = (ts: StudyTrial[]) => ts.map((t) => [t.number, t.state, t.params, t.value]);

Deno.test("cli search --workers: --queue without --workers, a bad count and --progress are one-line errors", async () => {
  assertFails(await cli(["search", "-c", "s.yaml", "--queue", "kv:q.sqlite"]), 2, /go with --workers N/);
  assertFails(
    await cli(["search", "-c", "s.yaml", "--workers", "1", "--local_workers", "2"]),
    2,
    /--local_workers 2 is more than --workers 1 .*; give at most 1/,
  );
  assertFails(await cli(["search", "-c", "s.yaml", "--workers", "0"]), 2, /--workers/);
  assertFails(
    await cli(["search", "-c", "s.yaml", "--workers", "2", "--progress"]),
    2,
    /--progress shows in-process trials, and --workers runs them in worker processes; drop one/,
  );
});

Deno.test("cli search --workers 2 starts two workers; every trial ends as in the one-process study", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-search-workers-" });
  try {
    const data = await dataset(dir);
    const study = join(dir, "par");
    await Deno.writeTextFile(join(dir, "par.yaml"), studyYaml(data, study));
    const r = await cli(["search", "--config", join(dir, "par.yaml"), "--workers", "2", "--json"]);
    assert.equal(r.code, 0, r.err);
    const par = JSON.parse(r.out);
    assert.deepEqual(values(par.trials), values(await sequentialTrials(dir, data)));
    const done = await jobs(`kv:${study}/queue.sqlite`);
    assert.deepEqual(
      done.map((j) => [j.kind, j.state, j.attempts]),
      Array(4).fill(["trial", "completed", 1]),
    );
    assert.deepEqual(par.trials.map((t: StudyTrial) => t.job_id), done.map((j) => j.id));
    assert.equal(new Set(done.map((j) => j.worker)).size, 2, "both workers took trials");
    assert.ok(await exists(join(study, "best_config.yaml")));
    assert.match(r.err, /search-1: job \d+ \(par trial \d\): completed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli search --workers 2 with workers of its own: one SIGKILLed mid-trial, then the search process; nothing is lost or repeated", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-search-workers-" });
  const procs: Deno.ChildProcess[] = [];
  try {
    const data = await dataset(dir);
    const study = join(dir, "par");
    const url = `kv:${study}/queue.sqlite`;
    await Deno.writeTextFile(join(dir, "par.yaml"), studyYaml(data, study));
    const search = [
      "search",
      "--config",
      join(dir, "par.yaml"),
      "--workers",
      "2",
      "--local_workers",
      "0",
      "--json",
    ];
    const worker = (name: string) =>
      spawn(["queue", "work", "--queue", url, "--worker", name, "--lease", "2"]);
    const first = spawn(search);
    const a = worker("A"), b = worker("B");
    procs.push(first, a, b);
    // Kill worker A once a trial of its has its first checkpoint and is not done.
    const killed = await waitFor(
      async () => {
        if (!await exists(`${study}/queue.sqlite`)) return null;
        const j = (await jobs(url)).find((j) => j.worker === "A" && j.state === "active");
        const run = j && `${study}/trials/trial-000${j.config.trial}/checkpoints`;
        return j && await exists(`${run}/step-4`) && !await exists(`${run}/step-16`) ? j : null;
      },
      120_000,
      "worker A mid-trial",
    );
    a.kill("SIGKILL");
    await a.status;
    // Then the search process, once trial 3 is submitted.
    await waitFor(async () => (await jobs(url)).length === 4, 120_000, "4 trial jobs");
    first.kill("SIGKILL");
    await first.status;
    const r = await spawn(search).output();
    const err = dec.decode(r.stderr);
    assert.equal(r.code, 0, err);
    assert.match(err, /search: resuming .*: \d finished trials kept, \d to resume/);
    assert.match(err, /search: trial \d is job \d+ \((waiting|active)\)/);
    const par = JSON.parse(dec.decode(r.stdout));
    assert.equal(par.n_complete, 4);
    assert.deepEqual(values(par.trials), values(await sequentialTrials(dir, data)));
    const all = await jobs(url);
    assert.equal(all.length, 4, "no trial submitted twice");
    const retried = all.find((j) => j.id === killed.id)!;
    assert.deepEqual([retried.state, retried.attempts, retried.worker], ["completed", 2, "B"]);
    assert.match(retried.log.join("\n"), /attempt 2 resumes from .*checkpoints\/step-\d+/);
    assert.ok(all.every((j) => j.state === "completed" && (j.id === killed.id || j.attempts === 1)));
  } finally {
    for (const p of procs) {
      try {
        p.kill("SIGKILL");
      } catch { /* exited */ }
      await p.output().catch(() => {});
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runSearch with a local worker that dies mid-trial starts another, which takes the trial back once its lease expires", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-search-workers-" });
  try {
    const data = await dataset(dir);
    const study = join(dir, "one");
    await Deno.writeTextFile(join(dir, "one.yaml"), searchYaml(data, study, { steps: 16, extra: "" }));
    const config = await loadSearchConfig(join(dir, "one.yaml"));
    config.n_trials = 1;
    // The first worker is SIGKILLed once its trial has a checkpoint; the search had then waited for ever
    // (the trial stayed active, and only waiting trials started workers).
    const real = `"${Deno.execPath()}" run -A --unstable-kv "${ROOT}/cli.ts"`;
    const script = `if [ ! -e "${dir}/died" ]; then touch "${dir}/died"; ${real} "$@" & pid=$!; ` +
      `until [ -e "${study}/trials/trial-0000/checkpoints/step-4" ]; do sleep 0.05; done; ` +
      `kill -9 $pid; exit 137; else exec ${real} "$@"; fi`;
    const lines: string[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      runSearch(config, {
        workers: 1,
        local_workers: 1,
        lease: 2,
        worker_command: ["bash", "-c", script, "worker"],
        log: (l) => lines.push(l),
        progress: false,
      }),
      new Promise<never>((_, no) => {
        timer = setTimeout(() => no(new Error(`the search hung:\n${lines.join("\n")}`)), 240_000);
      }),
    ]).finally(() => clearTimeout(timer));
    assert.equal(r.n_complete, 1, lines.join("\n"));
    assert.match(lines.join("\n"), /worker .*search-1 exited with code 137/);
    const [job] = await jobs(`kv:${study}/queue.sqlite`);
    assert.deepEqual([job.state, job.attempts], ["completed", 2]);
    assert.match(job.log.join("\n"), /attempt 2 resumes from .*checkpoints\/step-\d+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "cli search --workers 2 --queue redis://: the trials go through BullMQ and end as in the one-process study",
  ignore: !HAS_REDIS,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fledge-search-workers-" });
    const redis = (await startRedis(dir))!;
    try {
      const data = await dataset(dir);
      await Deno.writeTextFile(join(dir, "par.yaml"), studyYaml(data, join(dir, "par")));
      const r = await cli([
        "search",
        "-c",
        join(dir, "par.yaml"),
        "--workers",
        "2",
        "--queue",
        redis.url,
        "--json",
      ]);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(values(JSON.parse(r.out).trials), values(await sequentialTrials(dir, data)));
      const done = await jobs(redis.url);
      assert.deepEqual(done.map((j) => [j.kind, j.state]), Array(4).fill(["trial", "completed"]));
    } finally {
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
