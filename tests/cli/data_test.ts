/**
 * `deno task cli data inspect|clean|split` as a subprocess: `--help`, bad flags and inputs (exit 2,
 * one line), `--json` parsed and checked against the library (readers, clean pipeline, splitRecords,
 * the tokenizer), atomic outputs that are never overwritten without `--overwrite`.
 */
import { join } from "node:path";
import { readJsonl } from "../../data/jsonl.ts";
import { runCleanPipeline } from "../../data/clean.ts";
import { splitRecords } from "../../data/split.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { findTempLeftovers } from "../../util/atomic.ts";
import { assert } from "../_assert.ts";
import { assertFails, cliProcess } from "./_cli.ts";

const tmp = await Deno.makeTempDir({ prefix: "fledge-data-cli-" });
const words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
const records = Array.from({ length: 20 }, (_, i) => ({
  id: `doc${i}`,
  text: Array.from({ length: 2 + (i % 7) }, (_, j) => words[(i + j) % words.length]).join(" "),
  label: i % 2,
}));
records.push({ ...records[3], id: "dup" }, { id: "short", text: "hi", label: 0 });
const file = join(tmp, "all.jsonl");
await Deno.writeTextFile(file, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
const folder = join(tmp, "folder");
await Deno.mkdir(folder);
await Deno.writeTextFile(
  join(folder, "train.jsonl"),
  records.slice(0, 15).map((r) => JSON.stringify(r)).join("\n"),
);
await Deno.writeTextFile(
  join(folder, "validation.csv"),
  "id,text,label\n" + records.slice(15, 20).map((r) => `${r.id},${r.text},${r.label}`).join("\n") + "\n",
);
const tokDir = join(tmp, "tok");
const tok = await trainBpeTokenizer([records.map((r) => r.text).join(" ").repeat(5)], { vocab_size: 280 });
await tok.save(tokDir);
const pipeline = join(tmp, "clean.yaml");
await Deno.writeTextFile(pipeline, "- exact_dedup: {}\n- length: {min_words: 3}\n");

/** Nearest-rank stats, as the command computes them. */
function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p: number) => s[Math.max(0, Math.ceil(p * s.length) - 1)];
  return { min: s[0], median: rank(0.5), p95: rank(0.95), max: s[s.length - 1] };
}

Deno.test("data --help, a missing or unknown subcommand and bad flags: exit 0 / 2 with one line", async () => {
  for (
    const args of [["data", "--help"], ["data", "inspect", "--help"], ["data", "split", "-h"], [
      "help",
      "data",
    ]]
  ) {
    const r = await cliProcess(args);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.startsWith("usage: deno task cli data <inspect|clean|split>"), r.out);
  }
  assertFails(await cliProcess(["data"]), 2, /data: missing the subcommand/);
  assertFails(
    await cliProcess(["data", "inspekt", file]),
    2,
    /unknown subcommand "inspekt"; did you mean inspect\?/,
  );
  assertFails(await cliProcess(["data", "--bogus"]), 2, /data: unknown flag --bogus/);
  assertFails(
    await cliProcess(["data", "inspect", file, "--rowz", "2"]),
    2,
    /data inspect: unknown flag --rowz; did you mean --rows\?/,
  );
  assertFails(await cliProcess(["data", "inspect", file, "--rows", "-1"]), 2, /--rows -1 is out of range/);
  assertFails(await cliProcess(["data", "inspect"]), 2, /data inspect: missing the input file/);
  assertFails(
    await cliProcess(["data", "inspect", join(tmp, "nope.jsonl")]),
    2,
    /nope\.jsonl does not exist/,
  );
  assertFails(await cliProcess(["data", "inspect", pipeline]), 2, /extension "\.yaml" is not one of/);
  assertFails(
    await cliProcess(["data", "inspect", file, "--text_field", "txt"]),
    2,
    /--text_field txt is not a field of .*; did you mean text\?/,
  );
  assertFails(await cliProcess(["data", "inspect", file, "--tokenizer", tmp]), 2, /has no tokenizer\.json/);
});

Deno.test("data inspect --json: counts per split, fields, chars and tokens match the library", async () => {
  const r = await cliProcess(["data", "inspect", folder, "--tokenizer", tokDir, "--rows", "2", "--json"]);
  assert.equal(r.code, 0, r.err);
  const json = JSON.parse(r.out);
  assert.deepEqual(json.splits.map((s: { name: string; records: number }) => [s.name, s.records]), [
    ["train", 15],
    ["validation", 5],
  ]);
  const train = json.splits[0];
  assert.deepEqual(Object.keys(train.fields), ["id", "text", "label"]);
  assert.deepEqual(train.fields.label, { count: 15, types: ["number"] });
  const texts = records.slice(0, 15).map((x) => x.text);
  assert.deepEqual({ ...train.chars, mean: undefined }, {
    ...stats(texts.map((t) => t.length)),
    mean: undefined,
  });
  assert.deepEqual(
    { ...train.tokens, mean: undefined },
    { ...stats(texts.map((t) => tok.encode(t).length)), mean: undefined },
  );
  assert.deepEqual(train.rows, records.slice(0, 2));
  assert.equal(json.splits[1].rows.length, 2);
  // the tokenizer.json file itself counts the same tokens (it had been told it has no tokenizer.json)
  const byFile = await cliProcess([
    "data",
    "inspect",
    folder,
    "--tokenizer",
    join(tokDir, "tokenizer.json"),
    "--json",
  ]);
  assert.equal(byFile.code, 0, byFile.err);
  assert.deepEqual(JSON.parse(byFile.out).splits[0].tokens, train.tokens);
  // a single file, --text_field, and the text report with a few rows
  const one = await cliProcess(["data", "inspect", file, "--text_field", "id", "--json"]);
  const split = JSON.parse(one.out).splits[0];
  assert.equal(split.records, 22);
  assert.deepEqual(split.chars, { ...stats(records.map((x) => x.id.length)), mean: split.chars.mean });
  const text = await cliProcess(["data", "inspect", file, "--rows", "1"]);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /^.*all\.jsonl: all\.jsonl 22 records\n/);
  assert.match(
    text.out,
    /fields {2}id \(string, 22\/22\), text \(string, 22\/22\), label \(number, 22\/22\)/,
  );
  assert.match(text.out, /chars {3}min 2 {2}median \d+ {2}p95 \d+ {2}max \d+/);
  assert.ok(text.out.includes(`[0] ${JSON.stringify(records[0])}`), text.out);
  assert.ok(!text.out.includes("[1] "), text.out);
  // an empty CSV text field (null) is a missing text, not its record's other fields joined
  const csv = join(tmp, "nulls.csv");
  await Deno.writeTextFile(csv, "text,label,extra\nhello,0,x\n,1,y\n");
  const nulls = JSON.parse((await cliProcess(["data", "inspect", csv, "--json"])).out).splits[0];
  assert.equal(nulls.missing_text, 1);
  assert.equal(nulls.chars.max, 5);
});

Deno.test("data clean runs the YAML pipeline, writes atomically and refuses to overwrite", async () => {
  const out = join(tmp, "clean", "kept.jsonl");
  const r = await cliProcess([
    "data",
    "clean",
    "--config",
    pipeline,
    "--input",
    file,
    "--output",
    out,
    "--json",
  ]);
  assert.equal(r.code, 0, r.err);
  const json = JSON.parse(r.out);
  const expected = runCleanPipeline(records, [{ exact_dedup: {} }, { length: { min_words: 3 } }]);
  assert.equal(json.records, 22);
  assert.equal(json.kept, expected.kept.length);
  assert.deepEqual(json.steps, expected.steps);
  assert.deepEqual(json.dropped, { exact_duplicate: 1, too_few_words: expected.dropped.too_few_words });
  assert.deepEqual(await readJsonl(out), expected.kept);
  assert.deepEqual(await findTempLeftovers(join(tmp, "clean")), []);
  // an existing output: refused (exit 2), left as it was; --overwrite replaces it
  const before = await Deno.readTextFile(out);
  // the pipeline on `file` into `to`
  const cleanTo = (to: string, ...flags: string[]) =>
    cliProcess(["data", "clean", "--config", pipeline, file, "--output", to, ...flags]);
  const again = await cleanTo(out);
  assertFails(again, 2, /data clean: .*kept\.jsonl exists; pass --overwrite/);
  assert.equal(await Deno.readTextFile(out), before);
  // what a killed earlier run left beside the output is named (and kept: another may be writing it)
  const left = `${out}.tmp-0123abcd-4567`;
  await Deno.writeTextFile(left, "partial");
  const over = await cleanTo(out, "--overwrite");
  assert.equal(over.code, 0, over.err);
  assert.match(
    over.err,
    /data clean: note: .*kept\.jsonl\.tmp-0123abcd-4567, 7 B is left over from an interrupted write/,
  );
  await Deno.remove(left);
  assert.match(over.out, /1\. exact_dedup +kept 21, dropped 1 \(exact_duplicate 1\)/);
  assert.match(over.out, /2\. length +kept \d+, dropped \d+ \(too_few_words \d+\)/);
  // --overwrite through a link writes its file (the link had been replaced by a regular file)
  const real = join(tmp, "real-kept.jsonl"), link = join(tmp, "clean", "link.jsonl");
  await Deno.writeTextFile(real, "old\n");
  await Deno.symlink(real, link);
  const viaLink = await cleanTo(link, "--overwrite");
  assert.equal(viaLink.code, 0, viaLink.err);
  assert.ok(Deno.lstatSync(link).isSymlink, "still a link");
  assert.deepEqual(await readJsonl(real), expected.kept);
  // CSV output by extension
  const csv = join(tmp, "clean", "kept.csv");
  assert.equal((await cleanTo(csv)).code, 0);
  assert.equal((await Deno.readTextFile(csv)).split("\n")[0], "id,text,label");
  // a field that the first record lacks is a column too (it was dropped from CSV output)
  const mixed = join(tmp, "clean", "mixed.jsonl"), mixedCsv = join(tmp, "clean", "mixed.csv");
  await Deno.writeTextFile(mixed, '{"text": "a b c"}\n{"text": "d e f", "source": "web"}\n');
  const m = await cliProcess(["data", "clean", "--config", pipeline, mixed, "--output", mixedCsv]);
  assert.equal(m.code, 0, m.err);
  assert.deepEqual((await Deno.readTextFile(mixedCsv)).trim().split("\n"), [
    "text,source",
    "a b c,",
    "d e f,web",
  ]);
  // a folder: its splits are not one input
  assertFails(
    await cliProcess([
      "data",
      "clean",
      "--config",
      pipeline,
      join(tmp, "clean"),
      "--output",
      join(tmp, "f.jsonl"),
    ]),
    2,
    /data clean: .*clean is a folder; clean one file at a time/,
  );
  // an output that is a folder (it had said 'cannot write "no extension" files')
  assertFails(
    await cliProcess([
      "data",
      "clean",
      "--config",
      pipeline,
      join(tmp, "clean", "mixed.jsonl"),
      "--output",
      tmp,
    ]),
    2,
    /^fledge: data clean: --output \S+ is a folder; name a \.jsonl, \.csv or \.tsv file$/,
  );
});

Deno.test("data clean: bad pipelines, fields and outputs are one-line errors with exit 2", async () => {
  const out = join(tmp, "bad", "x.jsonl");
  const bad = join(tmp, "bad.yaml");
  await Deno.writeTextFile(bad, "- exact_dedupe: {}\n");
  assertFails(
    await cliProcess(["data", "clean", "--config", bad, file, "--output", out]),
    2,
    /bad\.yaml.*unknown step "exact_dedupe"/,
  );
  await Deno.writeTextFile(bad, "- length: {min_words: -1}\n");
  assertFails(await cliProcess(["data", "clean", "--config", bad, file, "--output", out]), 2, /min_words/);
  await Deno.writeTextFile(bad, "- length: {min_words: [1\n");
  assertFails(await cliProcess(["data", "clean", "--config", bad, file, "--output", out]), 2, /bad\.yaml/);
  assertFails(
    await cliProcess(["data", "clean", "--config", join(tmp, "none.yaml"), file, "--output", out]),
    2,
    /--config .*none\.yaml does not exist/,
  );
  assertFails(
    await cliProcess(["data", "clean", "--config", pipeline, file]),
    2,
    /data clean: missing --output/,
  );
  assertFails(
    await cliProcess(["data", "clean", "--config", pipeline, file, "--output", join(tmp, "x.parquet")]),
    2,
    /cannot write "\.parquet" files; name it \.jsonl, \.csv or \.tsv/,
  );
  assertFails(
    await cliProcess(["data", "clean", "--config", pipeline, file, "--output", out, "--text_field", "body"]),
    2,
    /record 1: field "body" is missing, not text; clean reads one string field: fix the record or pass --text_field naming one \(id, text\)/,
  );
  const none = join(tmp, "none.jsonl"); // once "Cannot write <temp name>: no records and no columns" for a .csv
  await Deno.writeTextFile(none, "");
  for (const o of [out, join(tmp, "none.csv")]) {
    assertFails(
      await cliProcess(["data", "clean", "--config", pipeline, none, "--output", o]),
      2,
      /data clean: .*none\.jsonl has no records; there is nothing to clean/,
    );
  }
  const chat = join(tmp, "chat.jsonl"); // inspect joins chat messages; clean rewrites one string field
  await Deno.writeTextFile(
    chat,
    JSON.stringify({ id: "a", messages: [{ role: "user", content: "hi" }] }) + "\n",
  );
  assertFails(
    await cliProcess([
      "data",
      "clean",
      "--config",
      pipeline,
      chat,
      "--output",
      out,
      "--text_field",
      "messages",
    ]),
    2,
    /record 1: field "messages" is a list, not text; .*--text_field naming one \(id\)/,
  );
  const nums = join(tmp, "nums.jsonl"); // once named the internal exactDedup, not the file
  await Deno.writeTextFile(nums, '{"text": "a"}\n{"text": 5}\n');
  assertFails(
    await cliProcess(["data", "clean", "--config", pipeline, nums, "--output", out]),
    2,
    /data clean: .*nums\.jsonl record 2: field "text" is a number, not text/,
  );
  assert.ok(!(await Deno.stat(join(tmp, "bad")).catch(() => null)), "nothing written");
});

Deno.test("data split writes the same files for the same seed, as splitRecords does", async () => {
  const run = (dir: string, ...more: string[]) =>
    cliProcess(["data", "split", file, "--output_dir", join(tmp, dir), "--train_split", "0.75", ...more]);
  const a = await run("a", "--seed", "3", "--json");
  assert.equal(a.code, 0, a.err);
  const json = JSON.parse(a.out);
  const expected = splitRecords(records, { train_split: 0.75, seed: 3 });
  assert.equal(json.train.records, expected.train.length);
  assert.equal(json.validation.records, expected.validation.length);
  assert.deepEqual(await readJsonl(join(tmp, "a", "train.jsonl")), expected.train);
  assert.deepEqual(await readJsonl(join(tmp, "a", "validation.jsonl")), expected.validation);
  assert.equal((await run("b", "--seed", "3")).code, 0);
  for (const f of ["train.jsonl", "validation.jsonl"]) {
    assert.equal(await Deno.readTextFile(join(tmp, "b", f)), await Deno.readTextFile(join(tmp, "a", f)));
  }
  assert.equal((await run("c", "--seed", "4")).code, 0);
  assert.notEqual(
    await Deno.readTextFile(join(tmp, "c", "train.jsonl")),
    await Deno.readTextFile(join(tmp, "a", "train.jsonl")),
  );
  const byKey = await run("d", "--split_key", "id", "--json");
  const hashed = splitRecords(records, { train_split: 0.75, split_key: "id" });
  assert.equal(JSON.parse(byKey.out).train.records, hashed.train.length);
  // bad input
  assertFails(await run("a", "--seed", "3"), 2, /train\.jsonl exists; pass --overwrite/);
  assert.equal((await run("a", "--seed", "3", "--overwrite")).code, 0);
  assertFails(
    await cliProcess(["data", "split", file, "--output_dir", join(tmp, "e"), "--train_split", "1.5"]),
    2,
    /--train_split 1\.5 is not in \(0, 1\)/,
  );
  assertFails(await run("e", "--seed", "x"), 2, /--seed x is not an integer/);
  assertFails(
    await run("e", "--split_key", "nope"),
    2,
    /Cannot split .*\.jsonl by split_key "nope": record 1 has columns id, text, label/,
  );
  assertFails(await cliProcess(["data", "split", file]), 2, /data split: missing --output_dir/);
  assertFails(
    await cliProcess(["data", "split", folder, "--output_dir", join(tmp, "e")]),
    2,
    /is a folder \(already split\?\)/,
  );
  // flags a split would not read
  assertFails(
    await run("f", "--split_key", "id", "--seed", "7"),
    2,
    /--seed orders the shuffle, and --split_key splits by a hash of the column instead; drop --seed/,
  );
  assertFails(await run("g", "--text_field", "text"), 2, /data split: unknown flag --text_field/);
  // an empty input: refused, nothing written (it wrote two empty files)
  const empty = join(tmp, "empty.jsonl");
  await Deno.writeTextFile(empty, "");
  assertFails(
    await cliProcess(["data", "split", empty, "--output_dir", join(tmp, "h")]),
    2,
    /data split: .*empty\.jsonl has no records; there is nothing to split/,
  );
  assert.equal(await Deno.stat(join(tmp, "h")).then(() => true, () => false), false);
  // HF's train_test_split(train_size): floor(n * train_split) train records, a split left empty refused
  const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `r${i}` }));
  const sizes = (n: number, f: number) => {
    const p = splitRecords(rows(n), { train_split: f, seed: 1 });
    return [p.train.length, p.validation.length];
  };
  assert.deepEqual(sizes(2, 0.9), [1, 1], "it rounded to 2 + 0");
  assert.deepEqual(sizes(15, 0.9), [13, 2]);
  assert.deepEqual(sizes(100, 0.29), [28, 72], "floor(28.999...)");
  const one = join(tmp, "one.jsonl");
  await Deno.writeTextFile(one, '{"id": "a"}\n');
  assertFails(
    await cliProcess(["data", "split", one, "--output_dir", join(tmp, "i")]),
    2,
    /Cannot split 1 record with train_split 0\.9: the train split would be empty; add records or raise train_split/,
  );
});

globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
