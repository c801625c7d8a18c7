import { assert } from "../_assert.ts";
import { readJson, readJsonl, streamJsonl, writeJsonl } from "../../data/jsonl.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-jsonl-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("writeJsonl() and readJsonl() round-trip records, unicode and nesting included", async () => {
  const rows = [{ text: 'héllo "wörld"\nzwei', label: 1, meta: { a: [1, 2] } }, {
    text: "",
    label: null,
    meta: {},
  }];
  const path = `${dir}/round.jsonl`;
  await writeJsonl(path, rows);
  assert.deepEqual(await readJsonl(path), rows);
  assert.equal((await Deno.readTextFile(path)).split("\n").length, 3);
});

Deno.test("readJsonl() selects, renames and limits", async () => {
  const path = `${dir}/sel.jsonl`;
  await Deno.writeTextFile(path, '{"a":1,"b":2,"c":3}\r\n\n{"a":4,"b":5,"c":6}\n{"a":7,"b":8,"c":9}');
  assert.deepEqual(await readJsonl(path, { columns: ["c", "a"], rename: { a: "x" } }), [
    { c: 3, x: 1 },
    { c: 6, x: 4 },
    { c: 9, x: 7 },
  ]);
  assert.deepEqual(await readJsonl(path, { max_samples: 2, columns: ["b"] }), [{ b: 2 }, { b: 5 }]);
  assert.deepEqual(await readJsonl(path, { max_samples: 0 }), []);
});

Deno.test("readJsonl() names file and line of invalid JSON", async () => {
  const path = `${dir}/bad.jsonl`;
  await Deno.writeTextFile(path, '{"a":1}\n\n{"a":2\n');
  await assert.rejects(readJsonl(path), {
    name: "SyntaxError",
    message: new RegExp(`bad\\.jsonl:3: invalid JSON`),
  });
  await Deno.writeTextFile(path, '{"a":1}\n[1,2]\n');
  await assert.rejects(readJsonl(path), {
    name: "SyntaxError",
    message: /bad\.jsonl:2: expected a JSON object, found an array/,
  });
  // bytes that are not UTF-8 were once read as U+FFFD and trained on
  await Deno.writeFile(
    path,
    new Uint8Array([...new TextEncoder().encode('{"a":"x"}\n{"a":"'), 0xff, 0x22, 0x7d, 10]),
  );
  await assert.rejects(readJsonl(path), {
    name: "TypeError",
    message: /bad\.jsonl:2: not valid UTF-8 \(byte 0xff\); re-encode the file as UTF-8/,
  });
});

Deno.test("readJsonl() names a missing column and lists the available ones", async () => {
  const path = `${dir}/missing.jsonl`;
  await Deno.writeTextFile(path, '{"text":"a","label":1}\n{"text":"b"}\n');
  await assert.rejects(readJsonl(path, { columns: ["text", "label"] }), {
    name: "TypeError",
    message: /column "label" in .*missing\.jsonl:2: the record has columns text/,
  });
  await assert.rejects(readJsonl(path, { rename: { body: "text" } }), {
    name: "TypeError",
    message: /"body"/,
  });
});

Deno.test("streamJsonl() stops reading at max_samples", async () => {
  const path = `${dir}/stream.jsonl`;
  // Line 3 is invalid: stopping after 2 records must never reach it.
  await Deno.writeTextFile(path, '{"i":0}\n{"i":1}\nnot json\n');
  const seen = [];
  for await (const r of streamJsonl(path, { max_samples: 2 })) seen.push(r.i);
  assert.deepEqual(seen, [0, 1]);
});

Deno.test("readJson() reads an array or {data: [...]}, and says what it found otherwise", async () => {
  const path = `${dir}/a.json`;
  await Deno.writeTextFile(path, JSON.stringify([{ q: 1 }, { q: 2 }]));
  assert.deepEqual(await readJson(path, { max_samples: 1 }), [{ q: 1 }]);
  await Deno.writeTextFile(path, JSON.stringify({ version: 1, data: [{ q: 3 }] }));
  assert.deepEqual(await readJson(path), [{ q: 3 }]);
  await Deno.writeTextFile(path, JSON.stringify({ version: 1, rows: [{ q: 3 }] }));
  assert.deepEqual(await readJson(path, { field: "rows" }), [{ q: 3 }]);
  await assert.rejects(readJson(path), {
    name: "SyntaxError",
    // (it had said "pass field", which no command takes)
    message: /found keys version, rows; convert it to JSON Lines .* or put the records under "data"/,
  });
  await Deno.writeTextFile(path, "{oops");
  await assert.rejects(readJson(path), { name: "SyntaxError", message: /a\.json: .* at line 1, column 2;/ });
});

Deno.test("readJson() also reads columns and JSON Lines under a .json name, as HF's json builder does", async () => {
  const path = `${dir}/hf.json`;
  await Deno.writeTextFile(path, JSON.stringify({ text: ["a", "b"], label: [1, 0] }));
  assert.deepEqual(await readJson(path), [{ text: "a", label: 1 }, { text: "b", label: 0 }]);
  await Deno.writeTextFile(path, '{"a": 1}\n{"a": 2}\n'); // "unexpected non-whitespace character after JSON"
  assert.deepEqual(await readJson(path), [{ a: 1 }, { a: 2 }]);
  await Deno.writeTextFile(path, JSON.stringify({ text: ["a"], label: [1, 0] })); // columns of two lengths
  await assert.rejects(readJson(path), { name: "SyntaxError", message: /columns of equal length/ });
});

Deno.test("integers past 2^53 (int64 ids) come back and go out exact, not rounded to another id", async () => {
  const path = `${dir}/big.jsonl`;
  await Deno.writeTextFile(
    path,
    '{"text": "a", "id": 9007199254740993}\n{"text": "b", "id": -1234567890123456789}\n',
  );
  const rows = await readJsonl(path);
  assert.deepEqual(rows.map((r) => r.id), [9007199254740993n, -1234567890123456789n]);
  await writeJsonl(`${dir}/big2.jsonl`, rows);
  assert.equal(
    await Deno.readTextFile(`${dir}/big2.jsonl`),
    await Deno.readTextFile(path).then((t) => t.replaceAll(": ", ":").replaceAll(", ", ",")),
  );
});
