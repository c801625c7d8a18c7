/** End to end: `cli.ts demo` as a subprocess on a tiny budget writes the whole run folder. */
import { assert, ROOT } from "../_assert.ts";

Deno.test("cli.ts demo trains, samples and writes the run folder", async () => {
  const out = await Deno.makeTempDir({ prefix: "fledge-demo-" });
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}/cli.ts`, "demo", "--max_steps", "3", "--output_dir", out],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, err);
    assert.match(err, /demo: loss \d+\.\d+, eval loss \d+\.\d+/);
    for (
      const f of [
        "config.yaml",
        "metrics.jsonl",
        "curves.svg",
        "report.md",
        "samples.txt",
        "model/config.json",
      ]
    ) {
      await Deno.stat(`${out}/${f}`); // throws NotFound when missing
    }
    await Deno.stat(`${out}/checkpoints/step-3/model.safetensors`);
    const sample = await Deno.readTextFile(`${out}/samples.txt`);
    assert.ok(
      sample.startsWith("This package provides") && sample.length > "This package provides".length + 5,
    );
    const lines = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.ok(lines.some((l) => typeof l.eval_loss === "number"), "an eval record");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("cli.ts demo rejects bad flags with exit code 2 and one line", async () => {
  const cases: [string[], RegExp][] = [
    [["--max_steps=-4"], /--max_steps -4 is not a positive integer/],
    [["--max_steps", "-4"], /--max_steps.*ambiguous/],
    [["--bogus", "1"], /Unknown option '--bogus'/],
  ];
  for (const [flags, want] of cases) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}/cli.ts`, "demo", ...flags],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr).trim();
    assert.equal(r.code, 2, err);
    assert.match(err, want);
    assert.equal(err.split("\n").length, 1, err);
  }
});
