// Compressed data files (`.gz`, `.zst`, `.xz`, `.bz2`) read as their contents, as HF `datasets` reads them.
import { fileURLToPath } from "node:url";
import { assert } from "../_assert.ts";
import { detectFormat, findSplitFiles, readDataset, streamDataset } from "../../data/readers.ts";
import { writeJsonl } from "../../data/jsonl.ts";
import { writeCsv } from "../../data/csv.ts";
import { readTextDocuments } from "../../data/text_dataset.ts";
import { readWholeText } from "../../data/_lines.ts";
import { assertFails, cli } from "../cli/_cli.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-compressed-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const fixture = fileURLToPath(new URL("./fixtures/rows.jsonl.zst", import.meta.url));

async function gzip(from: string, to: string, keep = Infinity): Promise<void> {
  const bytes = await new Response(
    (await Deno.open(from)).readable.pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  await Deno.writeFile(to, bytes.subarray(0, Math.min(keep, bytes.length)));
}

const rows = Array.from(
  { length: 40 },
  (_, i) => ({ id: `r${i}`, text: `text ${i} é`, label: String(i % 2) }),
);

Deno.test("every text format reads the same records gzipped", async () => {
  await writeJsonl(`${dir}/a.jsonl`, rows);
  await Deno.writeTextFile(`${dir}/a.json`, JSON.stringify(rows));
  await writeCsv(`${dir}/a.csv`, rows);
  await writeCsv(`${dir}/a.tsv`, rows);
  await Deno.writeTextFile(`${dir}/a.txt`, rows.map((r) => r.text).join("\n") + "\n");
  for (const ext of ["jsonl", "json", "csv", "tsv", "txt"]) {
    await gzip(`${dir}/a.${ext}`, `${dir}/a.${ext}.gz`);
    assert.equal(detectFormat(`a.${ext}.gz`), detectFormat(`a.${ext}`));
    assert.deepEqual(await readDataset(`${dir}/a.${ext}.gz`), await readDataset(`${dir}/a.${ext}`), ext);
  }
  // the selection options apply as to a plain file; stopping early leaves no file open (the test's
  // resource sanitizer checks)
  const two = [];
  for await (const r of streamDataset(`${dir}/a.jsonl.gz`, { columns: ["text"], max_samples: 2 })) {
    two.push(r);
  }
  assert.deepEqual(two, [{ text: "text 0 é" }, { text: "text 1 é" }]);
});

Deno.test("a multi-member gzip (cat a.gz b.gz) is read whole, and gzip's zero padding after it is ignored", async () => {
  await writeJsonl(`${dir}/m1.jsonl`, rows.slice(0, 3));
  await writeJsonl(`${dir}/m2.jsonl`, rows.slice(3, 5));
  await gzip(`${dir}/m1.jsonl`, `${dir}/m1.gz`);
  await gzip(`${dir}/m2.jsonl`, `${dir}/m2.gz`);
  const [a, b] = [await Deno.readFile(`${dir}/m1.gz`), await Deno.readFile(`${dir}/m2.gz`)];
  await Deno.writeFile(`${dir}/multi.jsonl.gz`, new Uint8Array([...a, ...b]));
  // (DecompressionStream had stopped after the first member and called the file incomplete)
  assert.deepEqual(await readDataset(`${dir}/multi.jsonl.gz`), rows.slice(0, 5));
  await Deno.writeFile(`${dir}/padded.jsonl.gz`, new Uint8Array([...a, ...new Uint8Array(64)]));
  assert.deepEqual(await readDataset(`${dir}/padded.jsonl.gz`), rows.slice(0, 3));
});

Deno.test("a zstd file made by the zstd tool streams across its chunks", async () => {
  // 3,000 rows of 120,768 bytes written by `zstd -19` (sha256 of the contents ca3e56a9...)
  const got = await readDataset(fixture);
  assert.equal(got.length, 3000);
  assert.deepEqual(got[2999], { id: 2999, text: "row 2999: " + "ü".repeat(2999 % 7) });
  assert.ok(got.every((r, i) => r.id === i && r.text === `row ${i}: ${"ü".repeat(i % 7)}`));
  const text = new TextEncoder().encode(
    got.map((r) => `{"id": ${r.id}, "text": ${JSON.stringify(r.text)}}\n`).join(""),
  );
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", text));
  assert.equal(
    [...hash].map((b) => b.toString(16).padStart(2, "0")).join(""),
    "ca3e56a9c56de36f491373706b06d2988386f45caca113319a0d6bfa7ce83d9d",
  );
});

Deno.test("xz and bzip2 files made by their tools, each two streams concatenated, read as the zstd one", async () => {
  // the rows of the zstd fixture, in halves compressed by `xz -9` and `bzip2 -9` and concatenated
  // (as pbzip2 and pixz write): a decoder stopping after the first stream would read 1,500 rows
  const want = await readDataset(fixture);
  for (const ext of ["xz", "bz2"]) {
    const file = fixture.replace(/zst$/, ext);
    assert.equal(detectFormat(file), "jsonl");
    assert.deepEqual(await readDataset(file), want, ext);
    const two = [];
    for await (const r of streamDataset(file, { max_samples: 2 })) two.push(r); // stopped early: closed
    assert.deepEqual(two, want.slice(0, 2));
    const bytes = await Deno.readFile(file);
    await Deno.writeFile(`${dir}/cut.jsonl.${ext}`, bytes.subarray(0, bytes.length - 100));
    const codec = ext === "xz" ? "xz" : "bzip2";
    await assert.rejects(readDataset(`${dir}/cut.jsonl.${ext}`), {
      name: "TypeError",
      message: new RegExp(
        `cut\\.jsonl\\.${ext}: not a complete ${codec} file \\(.+\\); check it \\(${codec} -t\\)`,
      ),
    });
  }
  // a CSV read stopped early closes its decoder: xz-decompress has one per process, which every
  // later .xz read waited on for ever
  const csv = fixture.replace("rows.jsonl.zst", "rows.csv.xz");
  for await (const r of streamDataset(csv)) { // a consumer that stops at the first record
    assert.deepEqual(r, { id: "r0", text: "text 0" });
    break;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const later = await Promise.race([
    readDataset(fixture.replace(/zst$/, "xz"), { max_samples: 1 }),
    new Promise((_, reject) => timer = setTimeout(() => reject(new Error("the next .xz read hung")), 10_000)),
  ]).finally(() => clearTimeout(timer));
  assert.deepEqual(later, want.slice(0, 1));
  // two .xz files read interleaved: the second is refused while the first is open (it had waited
  // for ever on the one decoder), and reads once the first is closed
  const xz = fixture.replace(/zst$/, "xz");
  const first = streamDataset(xz);
  assert.deepEqual((await first.next()).value, want[0]);
  await assert.rejects(readDataset(csv), {
    name: "TypeError",
    message: /rows\.csv\.xz: .*rows\.jsonl\.xz is being read as xz in this process, .*one after the other/,
  });
  await first.return(undefined);
  assert.equal((await readDataset(csv)).length, 20000);
  // an empty compressed file, and a read error under bzip2 (a folder by that name): one line each
  // (an empty .bz2 had read as no records, the folder had hung)
  for (const ext of ["xz", "bz2", "gz"]) {
    await Deno.writeFile(`${dir}/empty.jsonl.${ext}`, new Uint8Array());
    await assert.rejects(readDataset(`${dir}/empty.jsonl.${ext}`), {
      message: /empty\.jsonl\.\w+: not a complete \w+ file \(it is empty\)/,
    });
  }
  await Deno.mkdir(`${dir}/folder.jsonl.bz2`);
  await assert.rejects(readWholeText(`${dir}/folder.jsonl.bz2`), {
    message: /folder\.jsonl\.bz2: not a complete bzip2 file/,
  });
  // a folder's .xz split
  const d = `${dir}/xzfolder`;
  await Deno.mkdir(d);
  await Deno.copyFile(fixture.replace(/zst$/, "xz"), `${d}/train.jsonl.xz`);
  assert.equal((await readDataset(d, { split: "train" })).length, 3000);
  // (a tab-separated file of two rows, by `bzip2 -9`: its commas are not separators)
  assert.deepEqual(await readDataset(fixture.replace("rows.jsonl.zst", "pairs.tsv.bz2")), [
    { id: "r0", text: "a, b" },
    { id: "r1", text: 'c; "d"' },
  ]);
});

Deno.test("a folder's compressed split files are found, and a compressed copy beside its file is refused", async () => {
  const d = `${dir}/folder`;
  await Deno.mkdir(`${d}/data`, { recursive: true });
  await writeJsonl(`${dir}/train.jsonl`, rows.slice(0, 30));
  await gzip(`${dir}/train.jsonl`, `${d}/data/train-00000-of-00001.jsonl.gz`);
  await Deno.copyFile(fixture, `${d}/data/validation.jsonl.zst`);
  assert.deepEqual(Object.keys(findSplitFiles(d)), ["train", "validation"]);
  assert.equal((await readDataset(d, { split: "train" })).length, 30);
  assert.equal((await readDataset(d, { split: "validation", max_samples: 3 })).length, 3);
  // `gzip -k` leaves both: each record would be read twice
  await writeJsonl(`${d}/data/train-00000-of-00001.jsonl`, rows.slice(0, 30));
  assert.throws(() => findSplitFiles(d), {
    name: "TypeError",
    message:
      /split "train" has files in 2 formats \(train-00000-of-00001\.jsonl, train-00000-of-00001\.jsonl\.gz\)/,
  });
  await Deno.remove(`${d}/data/train-00000-of-00001.jsonl`);
  // a data file in a compression that is not read is named, not skipped (its split would be empty)
  await Deno.writeFile(`${d}/data/test.jsonl.lz4`, new Uint8Array([4, 34, 77, 24]));
  assert.throws(() => findSplitFiles(d), {
    name: "TypeError",
    message:
      /^Cannot read test\.jsonl\.lz4: \.lz4 files are not read \(\.gz, \.zst, \.xz or \.bz2 are\); decompress it first \(unlz4\)$/,
  });
  await Deno.remove(`${d}/data/test.jsonl.lz4`);
  await Deno.writeFile(`${d}/data/test.parquet.gz`, new Uint8Array([1]));
  assert.throws(() => findSplitFiles(d), { message: /parquet compresses its own pages/ });
  await Deno.remove(`${d}/data/test.parquet.gz`);
  // an archive is not a data file
  await Deno.writeFile(`${d}/data/backup.tar.gz`, new Uint8Array([1]));
  assert.deepEqual(Object.keys(findSplitFiles(d)), ["train", "validation"]);
});

Deno.test("a corrupt, truncated or non-UTF-8 compressed file gets one line naming it", async () => {
  await writeJsonl(
    `${dir}/big.jsonl`,
    Array.from({ length: 5000 }, (_, i) => ({ i, t: "x".repeat(i % 50) })),
  );
  await gzip(`${dir}/big.jsonl`, `${dir}/cut.jsonl.gz`, 2000);
  await assert.rejects(readDataset(`${dir}/cut.jsonl.gz`), {
    name: "TypeError",
    message:
      /^Cannot read \S+cut\.jsonl\.gz: not a complete gzip file \(.+\); check it \(gzip -t\) and download or compress it again$/,
  });
  await Deno.writeTextFile(`${dir}/plain.jsonl.gz`, '{"a": 1}\n');
  await assert.rejects(readDataset(`${dir}/plain.jsonl.gz`), {
    message: /plain\.jsonl\.gz: not a complete gzip file/,
  });
  const zst = await Deno.readFile(fixture);
  await Deno.writeFile(`${dir}/cut.jsonl.zst`, zst.subarray(0, zst.length - 100));
  await assert.rejects(readDataset(`${dir}/cut.jsonl.zst`), {
    message: /cut\.jsonl\.zst: not a complete zstd file \(.+\); check it \(zstd -t\)/,
  });
  await Deno.writeFile(
    `${dir}/latin1.csv`,
    new Uint8Array([...new TextEncoder().encode("text\nok\n"), 0xff, 10]),
  );
  await gzip(`${dir}/latin1.csv`, `${dir}/latin1.csv.gz`);
  await assert.rejects(readDataset(`${dir}/latin1.csv.gz`), {
    message: /^Cannot read \S+latin1\.csv\.gz:3: not valid UTF-8 \(byte 0xff\); re-encode the file as UTF-8$/,
  });
  assert.throws(() => detectFormat("d/data.csv.zip"), { message: /\.zip files are not read .*\(unzip\)$/ });
  assert.throws(() => detectFormat("d/data.gz"), {
    message: /^Cannot guess the format of d\/data\.gz: it has no extension; use one of/,
  });
  await assert.rejects(readDataset(`${dir}/missing.jsonl.gz`), {
    name: "NotFound",
    message: /^Cannot read data: \S+missing\.jsonl\.gz does not exist; check the path$/,
  });
});

Deno.test("a document folder reads its compressed files; a writer refuses a compressed name (it wrote plain text)", async () => {
  const d = `${dir}/corpus`;
  await Deno.mkdir(d);
  await Deno.writeTextFile(`${d}/a.txt`, "doc a");
  await Deno.writeTextFile(`${d}/b.txt`, "doc b");
  await gzip(`${d}/b.txt`, `${d}/b.txt.gz`);
  await Deno.remove(`${d}/b.txt`);
  await Deno.copyFile(fixture, `${d}/c.jsonl.zst`);
  const docs = await readTextDocuments(d);
  assert.deepEqual(docs.slice(0, 2), ["doc a", "doc b"]); // (the compressed ones had been skipped)
  assert.equal(docs.length, 2 + 3000);
  for (const name of ["w.jsonl.gz", "w.tsv.zst"]) {
    const write = name.endsWith(".gz")
      ? writeJsonl(`${dir}/${name}`, rows)
      : writeCsv(`${dir}/${name}`, rows);
    await assert.rejects(write, {
      name: "TypeError",
      message: new RegExp(`^Cannot write \\S+${name.replace(".", "\\.")}: outputs are written uncompressed`),
    });
  }
  assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name.startsWith("w.")), "nothing written");
});

Deno.test("eval --predictions with a compressed name is refused before the model loads", async () => {
  await Deno.writeTextFile(
    `${dir}/s.jsonl`,
    '{"id": "a", "document": "some text here", "summary": "text"}\n',
  );
  const r = await cli([
    "eval",
    "--task",
    "summarization",
    "--model",
    dir, // (a folder; the model is not read)
    "--data",
    `${dir}/s.jsonl`,
    "--predictions",
    `${dir}/p.jsonl.gz`,
  ]);
  assertFails(r, 2, /eval: --predictions \S+p\.jsonl\.gz: outputs are written uncompressed/);
});
