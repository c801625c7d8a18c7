/**
 * `deno task cli bench` as a subprocess: `--help`, bad flags and benchmark names (exit 2, one line),
 * and the quick block benchmark as JSON lines and as `--json`, parsed. Timings are never asserted.
 */
import { join } from "node:path";
import { assert, ROOT } from "../_assert.ts";
import { assertFails, cliProcess } from "./_cli.ts";

/** The fields every benchmark record has (STYLE.md: op, shape, time, backend, adapter). */
function assertRecord(r: Record<string, unknown>): void {
  assert.equal(typeof r.op, "string", JSON.stringify(r));
  assert.equal(typeof r.shape, "string", JSON.stringify(r));
  assert.ok(typeof r.ms === "number" && r.ms >= 0, JSON.stringify(r));
  assert.equal(typeof r.backend, "string", JSON.stringify(r));
  assert.equal(typeof r.adapter, "string", JSON.stringify(r));
}

Deno.test("bench --help exits 0; bad flags and unknown benchmarks exit 2 with one line", async () => {
  const help = await cliProcess(["bench", "--help"]);
  assert.equal(help.code, 0, help.err);
  assert.ok(help.out.startsWith("usage: deno task cli bench"), help.out);
  assert.match(help.out, /matmul, attention, block, train_tfjs, load_model, finetune, packing/);
  assertFails(await cliProcess(["bench", "--qick"]), 2, /bench: unknown flag --qick; did you mean --quick\?/);
  assertFails(await cliProcess(["bench", "--only"]), 2, /bench: --only needs a value/);
  assertFails(
    await cliProcess(["bench", "--only", "block,matmull"]),
    2,
    /bench: unknown benchmark "matmull"; did you mean matmul\? \(benchmarks: matmul, attention/,
  );
  assertFails(await cliProcess(["bench", "--only", ","]), 2, /bench: --only "," names no benchmark/);
  // deno task bench is the same command (it once ran the benchmarks on --help, and threw stack traces)
  const task = async (...args: string[]) => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(ROOT, "bench/main.ts"), ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  };
  const taskHelp = await task("--help");
  assert.equal(taskHelp.code, 0, taskHelp.err);
  assert.match(taskHelp.out, /^usage: deno task cli bench .*\n {7}deno task bench /);
  assertFails(await task("--only", "nope"), 2, /bench: unknown benchmark "nope"/);
});

Deno.test("bench --only block --quick prints JSON lines and a table; --json one object", async () => {
  const lines = await cliProcess(["bench", "--only", "block", "--quick"]);
  assert.equal(lines.code, 0, lines.err);
  const records = lines.out.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.ok(records.length >= 1, lines.out);
  records.forEach(assertRecord);
  assert.match(lines.err, /\nop +shape +backend +ms +rate\n/);
  assert.match(lines.err, /\nadapter: .+\n$/);
  const dir = await Deno.makeTempDir({ prefix: "fledge-bench-" });
  const saved = join(dir, "results.jsonl");
  const json = await cliProcess(["bench", "--only=block", "--quick", "--json", "--output", saved]);
  assert.equal(json.code, 0, json.err);
  const obj = JSON.parse(json.out);
  // --output: the same records as JSON lines
  const file = (await Deno.readTextFile(saved)).trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(file, obj.records);
  // an earlier run's results are replaced; another file only with --overwrite, refused before any
  // benchmark runs (a data file given as --output had been replaced by results)
  const again = await cliProcess(["bench", "--only=block", "--quick", "--json", "--output", saved]);
  assert.equal(again.code, 0, again.err);
  const data = join(dir, "data.jsonl");
  await Deno.writeTextFile(data, '{"text": "mine"}\n');
  assertFails(
    await cliProcess(["bench", "--only=block", "--output", data]),
    2,
    /^fledge: bench: --output \S+data\.jsonl exists and is not a benchmark results file; pass --overwrite/,
  );
  assert.equal(await Deno.readTextFile(data), '{"text": "mine"}\n');
  await Deno.remove(dir, { recursive: true });
  assert.equal(typeof obj.adapter, "string");
  assert.deepEqual(obj.records.map((r: { op: string }) => r.op), records.map((r) => r.op));
  obj.records.forEach(assertRecord);
  assert.equal(json.err, "");
});

Deno.test("bench --only generate --quick measures greedy decoding and label scoring (JSON lines)", async () => {
  const r = await cliProcess(["bench", "--only", "generate", "--quick"]);
  assert.equal(r.code, 0, r.err);
  const records = r.out.trimEnd().split("\n").map((l) => JSON.parse(l));
  records.forEach(assertRecord);
  assert.deepEqual(records.map((x) => x.op), ["generate", "score_labels"]);
  for (const x of records) assert.ok(x.tokens_per_s > 0, JSON.stringify(x));
  assert.match(records[0].shape, /^debian-base B=16 P=32 \+16 greedy$/);
});
