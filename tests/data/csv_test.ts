import { assert } from "../_assert.ts";
import { readCsv, streamCsv, writeCsv } from "../../data/csv.ts";
import { writeJsonl } from "../../data/jsonl.ts";
import { CsvParser } from "../../data/_csv_parser.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-csv-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("readCsv() follows RFC 4180 quoting, CRLF and a BOM", async () => {
  const path = `${dir}/q.csv`;
  await Deno.writeTextFile(path, '\ufeffid,text\r\n1,"a, b"\r\n2,"say ""hi"""\r\n3,"two\r\nlines"\r\n4,\r\n');
  assert.deepEqual(await readCsv(path), [
    { id: "1", text: "a, b" },
    { id: "2", text: 'say "hi"' },
    { id: "3", text: "two\r\nlines" },
    { id: "4", text: null }, // empty: null, as HF datasets reads it (pandas' NaN)
  ]);
});

Deno.test("readCsv() ends rows at a lone CR as pandas does (an Excel 'CSV (Macintosh)' file was 0 records)", async () => {
  const path = `${dir}/mac.csv`;
  await Deno.writeTextFile(path, 'text,label\rgood film,1\r"two\rlines",0\r');
  assert.deepEqual(await readCsv(path), [{ text: "good film", label: "1" }, {
    text: "two\rlines",
    label: "0",
  }]);
  // a CR split from its LF by a chunk boundary is one line end, and the line numbers count it once
  const p = new CsvParser(",", "x.csv");
  const rows = [...p.push("a,b\r"), ...p.push("\n1,2\r"), ...p.push("3,4\n"), ...p.end()];
  assert.deepEqual(rows, [
    { fields: ["a", "b"], line: 1 },
    { fields: ["1", "2"], line: 2 },
    { fields: ["3", "4"], line: 3 },
  ]);
});

Deno.test("readCsv() reads TSV by extension and selects columns", async () => {
  const path = `${dir}/t.tsv`;
  await Deno.writeTextFile(path, "sentence\tlabel\tidx\nit is good, really\t1\t0\nbad\t0\t1\n");
  assert.deepEqual(await readCsv(path, { columns: ["label", "sentence"], rename: { sentence: "text" } }), [
    { label: "1", text: "it is good, really" },
    { label: "0", text: "bad" },
  ]);
  await assert.rejects(readCsv(path, { columns: ["text"] }), {
    name: "TypeError",
    message: /column "text" in .*t\.tsv:2: the record has columns sentence, label, idx/,
  });
});

Deno.test("readCsv() refuses ragged rows, naming file and line", async () => {
  const path = `${dir}/ragged.csv`;
  await Deno.writeTextFile(path, 'a,b\n1,2\n"x\ny",3\n4,5,6\n');
  await assert.rejects(readCsv(path), {
    name: "SyntaxError",
    message: /ragged\.csv:5: the row has 3 fields but the header has 2/,
  });
  await Deno.writeTextFile(path, 'a,b\n1,"open\n');
  await assert.rejects(readCsv(path), { name: "SyntaxError", message: /ragged\.csv:2: a quoted field/ });
  await Deno.writeTextFile(path, "a,a\n1,2\n");
  await assert.rejects(readCsv(path), { name: "SyntaxError", message: /"a" twice/ });
  await Deno.writeTextFile(path, 'a,b\n"1"x,2\n');
  await assert.rejects(readCsv(path), {
    name: "SyntaxError",
    message: /ragged\.csv:2: character "x" after a closing quote/,
  });
});

Deno.test("CsvParser handles fields split across chunks", () => {
  const text = 'a,b\n"he said ""yo""\nok",2\nlast,"x"';
  const whole = new CsvParser(",", "t");
  const expected = [...whole.push(text), ...whole.end()];
  for (let size = 1; size < 8; size++) {
    const p = new CsvParser(",", "t");
    const rows = [];
    for (let i = 0; i < text.length; i += size) rows.push(...p.push(text.slice(i, i + size)));
    rows.push(...p.end());
    assert.deepEqual(rows, expected, `chunk size ${size}`);
  }
  assert.deepEqual(expected.map((r) => r.line), [1, 2, 4]);
  assert.deepEqual(expected[1].fields, ['he said "yo"\nok', "2"]);
});

Deno.test("writeCsv() and readCsv() round-trip awkward values", async () => {
  const rows = [
    { text: 'comma, "quote"', n: "1" },
    { text: "new\nline", n: "2" },
    { text: "tab\there", n: "" },
  ];
  for (const name of ["r.csv", "r.tsv"]) {
    await writeCsv(`${dir}/${name}`, rows);
    // an empty string comes back null, as through pandas (both write an empty field)
    assert.deepEqual(await readCsv(`${dir}/${name}`), rows.map((r) => r.n === "" ? { ...r, n: null } : r));
  }
  await writeCsv(`${dir}/o.csv`, [{ a: { x: 1 }, b: null }], { columns: ["b", "a"] });
  assert.equal(await Deno.readTextFile(`${dir}/o.csv`), 'b,a\n,"{""x"":1}"\n');
  // a write that fails leaves the file as it was (it was once emptied first), and no temp file
  await assert.rejects(() => writeCsv(`${dir}/o.csv`, []), /no records and no columns/);
  async function* broken() {
    yield { a: 1 };
    throw new Error("source failed");
  }
  await assert.rejects(() => writeCsv(`${dir}/o.csv`, broken()), /source failed/);
  await assert.rejects(() => writeJsonl(`${dir}/o.csv`, broken()), /source failed/);
  assert.equal(await Deno.readTextFile(`${dir}/o.csv`), 'b,a\n,"{""x"":1}"\n');
  assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name.includes(".tmp-")), "no temp file left");
});

Deno.test("streamCsv() stops at max_samples", async () => {
  const path = `${dir}/s.csv`;
  await Deno.writeTextFile(path, "a\n1\n2\n3\n");
  const seen = [];
  for await (const r of streamCsv(path, { max_samples: 2 })) seen.push(r.a);
  assert.deepEqual(seen, ["1", "2"]);
});
