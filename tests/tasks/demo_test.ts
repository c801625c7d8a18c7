/**
 * End to end: `deno run -A cli.ts demo` (what `deno task demo` runs) as a subprocess on a tiny
 * budget writes the whole run folder; bad flags through `main()`.
 */
import { main } from "../../cli.ts";
import { DEMO_PROMPTS, wholeSentences } from "../../tasks/demo.ts";
import { loadTokenizer } from "../../models/tokenizer/tokenizer.ts";
import { assert, ROOT } from "../_assert.ts";

/** `main(["demo", ...args])` in-process, capturing stdout and stderr. */
async function demo(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const code = await main(["demo", ...args], { stdout: (s) => out += s, stderr: (s) => err += s });
  return { code, out, err };
}

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
    assert.match(err, /demo: next:\n {2}deno task cli generate --model .*\/model --prompt/);
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
    // the tiny preset takes its trained tokenizer's end-of-text id: generation stops where documents end
    const tok = await loadTokenizer(`${out}/model`);
    for (const f of ["config.json", "generation_config.json"]) {
      const c = JSON.parse(await Deno.readTextFile(`${out}/model/${f}`));
      assert.deepEqual([c.bos_token_id, c.eos_token_id, c.pad_token_id], [0, 0, 0], f);
      assert.equal(tok.decode([c.eos_token_id], { skip_special_tokens: false }), "<|endoftext|>");
    }
    const samples = (await Deno.readTextFile(`${out}/samples.txt`)).trimEnd().split("\n");
    assert.equal(samples.length, DEMO_PROMPTS.length, "one sample per prompt, one per line");
    DEMO_PROMPTS.forEach((p, i) =>
      assert.ok(samples[i].startsWith(p) && samples[i].length > p.length + 5, samples[i])
    );
    assert.match(err, /demo: samples:\n {2}This package provides/);
    const lines = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.ok(lines.some((l) => typeof l.eval_loss === "number"), "an eval record");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("the demo's sample ends after its last whole sentence", () => {
  const p = "This package provides";
  assert.equal(wholeSentences(`${p} a library. It is a tool for the li`, p.length), `${p} a library.`);
  assert.equal(wholeSentences(`${p} a tool. Is it? Yes! and v1.2 of`, p.length), `${p} a tool. Is it? Yes!`);
  assert.equal(wholeSentences(`${p} a tool.`, p.length), `${p} a tool.`);
  // no sentence ends after the prompt: the text as it is
  assert.equal(wholeSentences(`${p} version 1.2 of the`, p.length), `${p} version 1.2 of the`);
  assert.equal(wholeSentences("It. Then", 3), "It. Then");
});

Deno.test("demo rejects bad flags with exit code 2 and one line", async () => {
  const cases: [string[], RegExp][] = [
    [["--max_steps=-4"], /demo: --max_steps -4 is out of range: must be >= 1/],
    [["--max_steps", "-4"], /demo: --max_steps -4 is out of range: must be >= 1/],
    [["--max-steps", "2.5"], /demo: --max_steps 2\.5 is not an integer/],
    [["--learning_rate", "0"], /demo: --learning_rate 0 is out of range: must be > 0/],
    [["--backend", "tpu"], /demo: --backend tpu is not one of webgpu, cpu, auto/],
    [["--bogus", "1"], /demo: unknown flag --bogus/],
    [["--output_dir"], /demo: --output_dir needs a value/],
    [["--overwrite_output_dir"], /overwrite_output_dir replaces a given output_dir, and none is given/],
  ];
  for (const [flags, want] of cases) {
    const r = await demo(flags);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^fledge: /);
    assert.match(r.err, want);
    assert.equal(r.err.trimEnd().split("\n").length, 1, r.err);
  }
  const help = await demo(["--help"]);
  assert.match(help.out, /^usage: deno task cli demo /);
  assert.match(help.out, /deno task demo/);
});
