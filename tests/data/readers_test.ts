import { join, relative } from "node:path";
import { assert } from "../_assert.ts";
// deno-lint-ignore no-import-prefix
import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
import { detectFormat, findSplitFiles, readDataset, streamDataset } from "../../data/readers.ts";
import { writeJsonl } from "../../data/jsonl.ts";
import { writeCsv } from "../../data/csv.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-readers-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const rows = Array.from({ length: 50 }, (_, i) => ({ id: `r${i}`, text: `text ${i}`, label: String(i % 3) }));

Deno.test("readDataset() reads every format by extension with the same options", async () => {
  await writeJsonl(`${dir}/a.jsonl`, rows);
  await Deno.writeTextFile(`${dir}/a.json`, JSON.stringify({ data: rows }));
  await writeCsv(`${dir}/a.csv`, rows);
  await writeCsv(`${dir}/a.tsv`, rows);
  await Deno.writeFile(
    `${dir}/a.parquet`,
    new Uint8Array(parquetWriteBuffer({
      columnData: ["id", "text", "label"].map((name) => ({ name, data: rows.map((r) => r[name as "id"]) })),
    })),
  );
  const want = rows.slice(0, 5).map((r) => ({ body: r.text, label: r.label }));
  for (const ext of ["jsonl", "json", "csv", "tsv", "parquet"]) {
    const got = await readDataset(`${dir}/a.${ext}`, {
      columns: ["text", "label"],
      rename: { text: "body" },
      max_samples: 5,
    });
    assert.deepEqual(got, want, ext);
  }
  await Deno.writeTextFile(`${dir}/a.txt`, "x\ny\n");
  assert.deepEqual(await readDataset(`${dir}/a.txt`), [{ text: "x" }, { text: "y" }]);
  assert.throws(() => detectFormat("data.xlsx"), { name: "TypeError", message: /\.xlsx" is not one of/ });
  // a compressed file has its contents' format (tests/data/compressed_test.ts reads them)
  assert.equal(detectFormat("d/data.jsonl.gz"), "jsonl");
  assert.deepEqual((await readDataset(`${dir}/a.csv`, { format: "csv", max_samples: 1 })).length, 1);
  // an option of another format is refused, not ignored
  for (
    const [ext, o, re] of [
      ["jsonl", { delimiter: ";" }, /a\.jsonl: delimiter is for csv\/tsv files, and this is jsonl; drop it/],
      ["csv", { field: "rows" }, /field is for json files, and this is csv/],
      ["parquet", { sample_by: "paragraph" }, /sample_by is for text files, and this is parquet/],
    ] as const
  ) {
    await assert.rejects(readDataset(`${dir}/a.${ext}`, o), { name: "TypeError", message: re });
  }
  assert.equal((await readDataset(`${dir}/a.tsv`, { delimiter: "\t" })).length, 50);
  // so are split options the read does not use
  await assert.rejects(readDataset(`${dir}/a.jsonl`, { train_split: 0.5, seed: 3 }), {
    name: "TypeError",
    message:
      /a\.jsonl: train_split, seed would do nothing \(train_split and split_key cut the split named by split, and none is given; seed orders shuffle: true or a split cut by fraction\); drop them/,
  });
  assert.equal(
    (await readDataset(`${dir}/a.jsonl`, { split: "train", train_split: 0.5, seed: 3 })).length,
    25,
  );
});

Deno.test("readDataset() cuts train/validation from one file, deterministically", async () => {
  const path = `${dir}/s.jsonl`;
  await writeJsonl(path, rows);
  const train = await readDataset(path, { split: "train", train_split: 0.8, seed: 5 });
  const val = await readDataset(path, { split: "validation", train_split: 0.8, seed: 5 });
  assert.equal(train.length, 40);
  assert.equal(val.length, 10);
  assert.deepEqual(new Set([...train, ...val].map((r) => r.id)).size, 50);
  assert.deepEqual(await readDataset(path, { split: "validation", train_split: 0.8, seed: 5 }), val);
  const h1 = await readDataset(path, { split: "validation", split_key: "id", train_split: 0.8 });
  const h2 = [];
  for await (const r of streamDataset(path, { split: "validation", split_key: "id", train_split: 0.8 })) {
    h2.push(r);
  }
  assert.deepEqual(h1, h2);
  assert.ok(h1.length > 0 && h1.length < 50);
  // streamed, a null key names its record too (the 3rd read, whichever split keeps it)
  const gap = join(dir, "gap.csv");
  await Deno.writeTextFile(gap, "id,text\na,x\nb,y\n,z\n");
  for (const split of ["train", "validation"]) {
    await assert.rejects(readDataset(gap, { split, split_key: "id", train_split: 0.5 }), {
      name: "TypeError",
      message: /gap\.csv by split_key "id": record 3 is null \(in a CSV, an empty field\)/,
    });
  }
  await assert.rejects(readDataset(path, { split: "test" }), {
    name: "RangeError",
    message: /split "test" .* the splits are train, validation/,
  });
  await assert.rejects(async () => {
    for await (const _ of streamDataset(path, { shuffle: true }));
  }, { name: "TypeError", message: /use readDataset/ });
  // max_samples 0 reads nothing on the hash split too (it once yielded one record)
  assert.deepEqual(
    await readDataset(path, { split: "train", split_key: "id", train_split: 0.99, max_samples: 0 }),
    [],
  );
  // a bad format, shuffle or seed is one line naming the file (they once crashed, shuffled or aliased)
  for (
    const [o, re] of [
      [{ format: "xml" }, /s\.jsonl: format "xml" is not one of jsonl, json, csv, tsv, text, parquet/],
      [{ shuffle: "no" }, /s\.jsonl: shuffle must be true or false, got "no"/],
      [{ shuffle: true, seed: -1 }, /s\.jsonl: seed -1 is not an integer in \[0, 2\^32 - 1\]/],
    ] as const
  ) {
    await assert.rejects(() => readDataset(path, o as never), { message: re });
  }
});

Deno.test("readDataset() shuffles with a seed before max_samples", async () => {
  const path = `${dir}/sh.jsonl`;
  await writeJsonl(path, rows);
  const a = await readDataset(path, { shuffle: true, seed: 1, max_samples: 10 });
  assert.deepEqual(await readDataset(path, { shuffle: true, seed: 1, max_samples: 10 }), a);
  assert.notDeepEqual(a, rows.slice(0, 10));
  assert.equal(a.length, 10);
  // a bad max_samples is refused on the shuffled and the fraction-split paths too (it once cut one record)
  for (
    const o of [{ shuffle: true, max_samples: -1 }, { split: "train", train_split: 0.5, max_samples: 1.5 }]
  ) {
    await assert.rejects(() => readDataset(path, o), {
      name: "TypeError",
      message: /max_samples .* is not an integer >= 0/,
    });
  }
});

Deno.test("findSplitFiles() finds splits as HF datasets does: keywords, split folders, links; a card is not data", async () => {
  const d = await Deno.makeTempDir({ dir });
  const put = async (p: string) => {
    await Deno.mkdir(join(d, p, ".."), { recursive: true });
    await Deno.writeTextFile(join(d, p), '{"text": "x"}\n');
  };
  const found = (sub: string) =>
    Object.fromEntries(
      Object.entries(findSplitFiles(join(d, sub))).map(([k, v]) => [k, v.map((f) => relative(d, f))]),
    );
  // a hub download: the card and metadata at the top, the data in data/ (the card was read as a split)
  for (
    const f of [
      "README.md",
      "dataset_infos.json",
      "data/train-00000-of-00001.jsonl",
      "data/validation-00000-of-00001.jsonl",
    ]
  ) {
    await put(`hub/${f}`);
  }
  assert.deepEqual(found("hub"), {
    train: ["hub/data/train-00000-of-00001.jsonl"],
    validation: ["hub/data/validation-00000-of-00001.jsonl"],
  });
  // keywords at a boundary: dev is validation, sst2_train is train (both were split "sst2"); others keep their name
  for (
    const f of ["sst2_train.jsonl", "sst2_validation.jsonl", "dev.jsonl", "eval.jsonl", "unsupervised.jsonl"]
  ) {
    await put(`kw/${f}`);
  }
  assert.deepEqual(found("kw"), {
    test: ["kw/eval.jsonl"],
    train: ["kw/sst2_train.jsonl"],
    unsupervised: ["kw/unsupervised.jsonl"],
    validation: ["kw/dev.jsonl", "kw/sst2_validation.jsonl"],
  });
  for (const f of ["train/part-0.jsonl", "train/part-1.jsonl", "valid.jsonl"]) await put(`sub/${f}`);
  assert.deepEqual(found("sub"), {
    train: ["sub/train/part-0.jsonl", "sub/train/part-1.jsonl"],
    validation: ["sub/valid.jsonl"],
  });
  // a hub cache snapshot's files are links (they were skipped: "no split files")
  await Deno.mkdir(join(d, "links"));
  await Deno.symlink(join(d, "kw", "dev.jsonl"), join(d, "links", "train.jsonl"));
  assert.deepEqual(found("links"), { train: ["links/train.jsonl"] });
});

Deno.test("readDataset() reads one split of a folder of split files and lists the splits on a miss", async () => {
  const folder = `${dir}/folder`;
  await Deno.mkdir(`${folder}/data`, { recursive: true });
  await writeJsonl(`${folder}/data/train-00000-of-00002.jsonl`, rows.slice(0, 20));
  await writeJsonl(`${folder}/data/train-00001-of-00002.jsonl`, rows.slice(20, 40));
  await writeCsv(`${folder}/data/validation.csv`, rows.slice(40));
  assert.deepEqual(Object.keys(findSplitFiles(folder)).sort(), ["train", "validation"]);
  assert.deepEqual(await readDataset(folder), rows.slice(0, 40));
  assert.deepEqual(await readDataset(folder, { split: "validation" }), rows.slice(40));
  assert.deepEqual(await readDataset(folder, { split: "train", max_samples: 25 }), rows.slice(0, 25));
  await assert.rejects(readDataset(folder, { split: "test" }), {
    name: "RangeError",
    message: /split "test" in .*folder: the splits are train, validation/,
  });
  await assert.rejects(readDataset(`${dir}/nope`), { name: "NotFound", message: /nope does not exist/ });
  // a split in two formats (a converted copy beside the original) would read every record twice
  await writeJsonl(`${folder}/data/validation.jsonl`, rows.slice(40));
  await assert.rejects(readDataset(folder, { split: "validation" }), {
    name: "TypeError",
    message:
      /folder\/data: split "validation" has files in 2 formats \(validation\.csv, validation\.jsonl\); keep one/,
  });
});
