/**
 * `deno task cli search`: help, one-line refusals of bad input (exit 2), and a study killed with SIGKILL mid-trial that resumes without repeating its
 * finished trials and ends where an uninterrupted study ends. `--workers`: search_workers_test.ts.
 */
import { assert, ROOT } from "../_assert.ts";
import { assertFails, cli } from "./_cli.ts";
import { debianText, searchYaml } from "../_search.ts";

Deno.test("cli search --help prints the usage; bad input is one line and exit code 2", async () => {
  const help = await cli(["search", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /^usage: deno task cli search --config search.yaml/);
  assertFails(await cli(["search"]), 2, /give --config search.yaml/);
  assertFails(
    await cli(["search", "--config", "/nonexistent/search.yaml"]),
    2,
    /\/nonexistent\/search.yaml does not exist/,
  );
  const dir = await Deno.makeTempDir();
  try {
    const yaml = (space: string) =>
      searchYaml("d.jsonl", `${dir}/s`).replace(/space:\n(.*\n){2}/, `space:\n${space}\n`);
    await Deno.writeTextFile(
      `${dir}/inverted.yaml`,
      yaml("  learning_rate: {type: float, low: 0.1, high: 0.01}"),
    );
    assertFails(
      await cli(["search", "-c", `${dir}/inverted.yaml`]),
      2,
      /inverted.yaml:\d+: space\.learning_rate: inverted range/,
    );
    await Deno.writeTextFile(`${dir}/empty.yaml`, yaml("  warmup_steps: {type: int, low: 3, high: 3}"));
    assertFails(await cli(["search", "-c", `${dir}/empty.yaml`]), 2, /space\.warmup_steps: empty range/);
    await Deno.writeTextFile(
      `${dir}/unknown.yaml`,
      yaml("  lerning_rate: {type: float, low: 0.001, high: 0.01}"),
    );
    assertFails(
      await cli(["search", "-c", `${dir}/unknown.yaml`]),
      2,
      /space\.lerning_rate: unknown config field; did you mean learning_rate\?/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function waitFor(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

interface StudyTrial {
  number: number;
  state: string;
  params: Record<string, unknown>;
  value: number | null;
  finished?: string;
  note?: string;
  run_dir: string;
}

Deno.test("cli search: a study killed with SIGKILL mid-trial resumes from its checkpoint, repeating no finished trial", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dataset = await debianText(dir, 200);
    const study = `${dir}/killed`;
    await Deno.writeTextFile(`${dir}/killed.yaml`, searchYaml(dataset, study));
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}/cli.ts`, "search", "--config", `${dir}/killed.yaml`],
      cwd: ROOT,
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Kill once trials 0 and 1 are finished and trial 2 has saved its first checkpoint.
    await waitFor(
      () => exists(`${study}/trials/trial-0002/checkpoints/step-4`),
      60_000,
      "trial 2's checkpoint",
    );
    child.kill("SIGKILL");
    await child.status;
    const before = JSON.parse(await Deno.readTextFile(`${study}/study.json`)).trials as StudyTrial[];
    const finished = before.filter((t) => t.state !== "running");
    assert.deepEqual(finished.map((t) => t.number), [0, 1]);
    assert.equal(before[2].state, "running");
    const mtimes = await Promise.all(
      finished.map((t) => Deno.stat(`${study}/${t.run_dir}/metrics.jsonl`).then((s) => s.mtime!.getTime())),
    );

    const r = await cli(["search", "--config", `${dir}/killed.yaml`, "--json"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /resuming .*: 2 finished trials kept, 1 to resume/);
    assert.match(r.err, /trial 2 resumed from .*checkpoints\/step-(4|8)/);
    const after = JSON.parse(r.out);
    assert.equal(after.n_trials, 4);
    assert.equal(after.n_complete, 4);
    for (const t of finished) {
      const now = after.trials[t.number] as StudyTrial;
      assert.equal(now.finished, t.finished, `trial ${t.number} was not rerun`);
      assert.equal(now.value, t.value);
    }
    const mtimesAfter = await Promise.all(
      finished.map((t) => Deno.stat(`${study}/${t.run_dir}/metrics.jsonl`).then((s) => s.mtime!.getTime())),
    );
    assert.deepEqual(mtimesAfter, mtimes, "finished trials' run folders untouched");

    // The same study uninterrupted: the same parameters, and the same values (exact resume).
    await Deno.writeTextFile(`${dir}/whole.yaml`, searchYaml(dataset, `${dir}/whole`));
    const whole = JSON.parse((await cli(["search", "--config", `${dir}/whole.yaml`, "--json"])).out);
    assert.deepEqual(
      after.trials.map((t: StudyTrial) => t.params),
      whole.trials.map((t: StudyTrial) => t.params),
    );
    assert.deepEqual(
      after.trials.map((t: StudyTrial) => t.value),
      whole.trials.map((t: StudyTrial) => t.value),
    );
    assert.equal(after.best_value, whole.best_value);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
