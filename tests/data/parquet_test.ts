import { assert } from "../_assert.ts";
// deno-lint-ignore no-import-prefix
import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
import { parquetInfo, readParquet, streamParquet } from "../../data/parquet.ts";
import { writeJsonl } from "../../data/jsonl.ts";
import { writeCsv } from "../../data/csv.ts";
import { loadTaskData } from "../../data/task_data.ts";
import { cli } from "../cli/_cli.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-parquet-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const n = 250;
const path = `${dir}/t.parquet`;
await Deno.writeFile(
  path,
  new Uint8Array(parquetWriteBuffer({
    columnData: [
      { name: "sentence", data: Array.from({ length: n }, (_, i) => `sentence ${i} é`) },
      { name: "label", data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 2)) },
      {
        name: "translation",
        data: Array.from({ length: n }, (_, i) => ({ de: `Satz ${i}`, en: `sentence ${i}` })),
      },
    ],
    schema: [
      { name: "root", num_children: 3 },
      { name: "sentence", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "REQUIRED" },
      { name: "label", type: "INT64", repetition_type: "REQUIRED" },
      { name: "translation", num_children: 2, repetition_type: "OPTIONAL" },
      { name: "de", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "en", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
    ],
    rowGroupSize: 100,
  })),
);

Deno.test("readParquet() reads strings, int64 as numbers and structs, across row groups", async () => {
  const rows = await readParquet(path);
  assert.equal(rows.length, n);
  assert.deepEqual(rows[201], {
    sentence: "sentence 201 é",
    label: 1,
    translation: { de: "Satz 201", en: "sentence 201" },
  });
  assert.deepEqual(await parquetInfo(path), { columns: ["sentence", "label", "translation"], num_rows: n });
});

Deno.test("readParquet() selects, renames and limits", async () => {
  const rows = await readParquet(path, {
    columns: ["label", "sentence"],
    rename: { sentence: "text" },
    max_samples: 150,
  });
  assert.equal(rows.length, 150);
  assert.deepEqual(rows[149], { label: 1, text: "sentence 149 é" });
  const seen = [];
  for await (const r of streamParquet(path, { max_samples: 3, columns: ["label"] })) seen.push(r.label);
  assert.deepEqual(seen, [0, 1, 0]);
});

Deno.test("readParquet() names a missing column and lists the file's columns", async () => {
  await assert.rejects(readParquet(path, { columns: ["text"] }), {
    name: "TypeError",
    message: /column "text" in .*t\.parquet: the file has columns sentence, label, translation/,
  });
});

Deno.test("readParquet() names a corrupt or truncated file", async () => {
  const bytes = await Deno.readFile(path);
  const bad = `${dir}/bad.parquet`;
  await Deno.writeFile(bad, bytes.subarray(0, bytes.length >> 1));
  await assert.rejects(readParquet(bad), {
    name: "SyntaxError",
    message: /bad\.parquet: not a valid parquet file/,
  });
  await Deno.writeTextFile(bad, "not parquet at all");
  await assert.rejects(readParquet(bad), { name: "SyntaxError", message: /bad\.parquet/ });
  // Intact footer, damaged data pages.
  const mangled = bytes.slice();
  mangled.fill(0xff, 4, bytes.length >> 1);
  await Deno.writeFile(bad, mangled);
  await assert.rejects(readParquet(bad), { name: "SyntaxError", message: /bad\.parquet/ });
});

Deno.test("streamParquet() reads ZSTD, GZIP, BROTLI and LZ4 pages (pyarrow's files) and keeps a null struct cell as null", async () => {
  // made by pyarrow 25 (write_table(..., compression=c)); they had been refused as "not a valid parquet
  // file ... re-download it", and a null struct cell had dropped its key
  for (const c of ["zstd", "gzip", "brotli", "lz4"]) {
    const path = new URL(`./fixtures/${c}.parquet`, import.meta.url).pathname;
    assert.deepEqual(await Array.fromAsync(streamParquet(path)), [
      { text: "alpha", label: 0, group: { g: "a" } },
      { text: "beta", label: 1, group: null },
      { text: "gamma", label: 0, group: { g: "b" } },
    ], c);
  }
});

Deno.test("a binary column (BYTE_ARRAY without a string annotation) is read as bytes, shown by size, and refused as text or JSON", async () => {
  const file = `${dir}/binary.parquet`;
  await Deno.writeFile(
    file,
    new Uint8Array(parquetWriteBuffer({
      columnData: [
        { name: "text", data: ["héllo", "world"], type: "STRING" },
        {
          name: "image",
          data: [new Uint8Array([97, 98, 99]), new Uint8Array([0xff, 0xd8, 0xff])],
          type: "BYTE_ARRAY",
        },
      ],
    })),
  );
  // pyarrow's binary, HF's bytes (decoded as UTF-8 it had become "abc" and "\ufffd\ufffd\ufffd")
  const rows = await readParquet(file);
  assert.deepEqual(rows, [
    { text: "héllo", image: new Uint8Array([97, 98, 99]) },
    { text: "world", image: new Uint8Array([0xff, 0xd8, 0xff]) },
  ]);
  const inspect = await cli(["data", "inspect", file]);
  assert.equal(inspect.code, 0, inspect.err);
  assert.match(inspect.out, /fields {2}text \(string, 2\/2\), image \(bytes, 2\/2\)/);
  assert.match(inspect.out, /\[1\] \{"text":"world","image":"<3 bytes>"\}/);
  await assert.rejects(writeJsonl(`${dir}/out.jsonl`, rows), {
    name: "TypeError",
    message:
      /^Cannot write \S+out\.jsonl: record 0 column "image" holds binary data, which JSON cannot hold; drop that column from the input$/,
  });
  await assert.rejects(writeCsv(`${dir}/out.csv`, rows), {
    message:
      /^Cannot write \S+out\.csv: record 0 column "image" holds binary data, which a CSV cell cannot hold/,
  });
  // an ENUM column (Avro's labels) is text, as a STRING one
  const enumFile = `${dir}/enum.parquet`;
  await Deno.writeFile(
    enumFile,
    new Uint8Array(parquetWriteBuffer({
      columnData: [{
        name: "kind",
        data: [new TextEncoder().encode("game"), new TextEncoder().encode("lib")],
      }],
      schema: [
        { name: "root", num_children: 1 },
        { name: "kind", type: "BYTE_ARRAY", converted_type: "ENUM", repetition_type: "REQUIRED" },
      ],
    })),
  );
  assert.deepEqual(await readParquet(enumFile), [{ kind: "game" }, { kind: "lib" }]);
  // ... at any depth: a struct's field and a list's elements
  const enc = (t: string) => new TextEncoder().encode(t);
  const nestedEnum = `${dir}/enum-nested.parquet`;
  await Deno.writeFile(
    nestedEnum,
    new Uint8Array(parquetWriteBuffer({
      columnData: [
        { name: "meta", data: [{ kind: enc("game") }, { kind: enc("lib") }] },
        { name: "tags", data: [[enc("a"), enc("b")], []] },
      ],
      schema: [
        { name: "root", num_children: 2 },
        { name: "meta", num_children: 1, repetition_type: "OPTIONAL" },
        { name: "kind", type: "BYTE_ARRAY", converted_type: "ENUM", repetition_type: "OPTIONAL" },
        { name: "tags", num_children: 1, converted_type: "LIST", repetition_type: "OPTIONAL" },
        { name: "list", num_children: 1, repetition_type: "REPEATED" },
        { name: "element", type: "BYTE_ARRAY", converted_type: "ENUM", repetition_type: "OPTIONAL" },
      ],
    })),
  );
  assert.deepEqual(await readParquet(nestedEnum), [
    { meta: { kind: "game" }, tags: ["a", "b"] },
    { meta: { kind: "lib" }, tags: [] },
  ]);
  // nested, as HF's Image column holds it ({bytes, path}): named by its column (it had said field "bytes")
  const nested = [{ text: "a", img: { bytes: new Uint8Array(2), path: null } }];
  await assert.rejects(writeJsonl(`${dir}/out.jsonl`, nested), {
    message: /record 0 column "img" holds binary data/,
  });
  await assert.rejects(writeCsv(`${dir}/out.csv`, nested), {
    message: /^Cannot write \S+out\.csv: record 0 column "img"/,
  });
  assert.deepEqual([...Deno.readDirSync(dir)].filter((e) => e.name.startsWith("out")), [], "nothing written");
  // what JSON.stringify writes decides: toJSON's value, and a cycle is its own error, not a stack overflow
  const custom = { raw: new Uint8Array(1), toJSON: () => "ok" };
  await writeJsonl(`${dir}/custom.jsonl`, [{ meta: custom }]);
  assert.equal(await Deno.readTextFile(`${dir}/custom.jsonl`), '{"meta":"ok"}\n');
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  await assert.rejects(writeJsonl(`${dir}/cyclic.jsonl`, [cyclic]), {
    name: "TypeError",
    message: /circular/,
  });
  await assert.rejects(
    loadTaskData("summarization", { dataset: file, source_column: "image", target_column: "text" }),
    { message: /column "image" is <3 bytes>, expected a string/ },
  );
});
