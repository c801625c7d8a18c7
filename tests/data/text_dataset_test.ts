import { join } from "node:path";
import {
  buildTextDatasets,
  loadTextDataset,
  readTextDocuments,
  TextDataset,
} from "../../data/text_dataset.ts";
import { assert } from "../_assert.ts";

/** One id per character (byte-sized), EOS 0. */
const chars = { eos_token_id: 0, encode: (s: string) => [...s].map((c) => c.charCodeAt(0) & 255) };

async function tmp(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const [name, text] of Object.entries(files)) {
    await Deno.mkdir(join(dir, name, ".."), { recursive: true });
    await Deno.writeTextFile(join(dir, name), text);
  }
  return dir;
}

Deno.test("buildTextDatasets() packs documents with EOS between them and drops the remainder", () => {
  const { train, validation } = buildTextDatasets(["ab", "cde"], { tokenizer: chars, block_size: 3 });
  assert.deepEqual([...train.ids], [97, 98, 0, 99, 100, 101, 0]);
  assert.equal(train.num_blocks, 2);
  assert.deepEqual([...train.block(1)], [99, 100, 101]);
  assert.deepEqual([...train.batch([1, 0])], [99, 100, 101, 97, 98, 0]);
  assert.equal(validation, null);
  // eos_token_id: null packs without separators
  const bare = buildTextDatasets(["ab", "cd"], { tokenizer: chars, block_size: 2, eos_token_id: null });
  assert.deepEqual([...bare.train.ids], [97, 98, 99, 100]);
  // a separator that is no id (1.5 was packed as 1), and reading options that read nothing here
  for (const eos_token_id of [1.5, -1, NaN]) {
    assert.throws(() => buildTextDatasets(["ab"], { tokenizer: chars, block_size: 2, eos_token_id }), {
      name: "RangeError",
      message: /<texts>: eos_token_id .* is not a token id \(or null\)/,
    });
  }
  const reading = { tokenizer: chars, block_size: 2, max_documents: 1, split: "validation" } as never;
  assert.throws(() => buildTextDatasets(["ab", "cd"], reading), {
    name: "TypeError",
    message:
      /split, max_documents are for reading files \(loadTextDataset\), and these texts are given; drop them/,
  });
});

Deno.test("TextDataset stride gives overlapping blocks; bad sizes are RangeErrors", () => {
  const ds = new TextDataset(Int32Array.from({ length: 10 }, (_, i) => i), { block_size: 4, stride: 2 });
  assert.equal(ds.num_blocks, 4); // starts 0, 2, 4, 6
  assert.deepEqual([...ds.block(3)], [6, 7, 8, 9]);
  assert.throws(() => ds.block(4), RangeError);
  assert.throws(
    () => new TextDataset(new Int32Array(8), { block_size: 1 }),
    /block_size must be an integer >= 2/,
  );
  assert.throws(() => new TextDataset(new Int32Array(8), { block_size: 4, stride: 0 }), /stride/);
});

Deno.test("TextDataset.order() is a seeded permutation that changes per epoch and seed", () => {
  const ds = new TextDataset(new Int32Array(400), { block_size: 4 });
  const a = ds.order(0, 42), again = ds.order(0, 42);
  assert.deepEqual([...a], [...again]);
  assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  assert.notDeepEqual([...ds.order(1, 42)], [...a]);
  assert.notDeepEqual([...ds.order(0, 43)], [...a]);
  assert.notDeepEqual([...a], Array.from({ length: 100 }, (_, i) => i));
});

Deno.test("train_split cuts documents by hash: deterministic, disjoint, complete", () => {
  const docs = Array.from({ length: 200 }, (_, i) => `document number ${i} `.repeat(2));
  const opts = { tokenizer: chars, block_size: 4, train_split: 0.8 };
  const a = buildTextDatasets(docs, opts), b = buildTextDatasets([...docs].reverse(), opts);
  assert.ok(a.validation);
  const total = docs.reduce((s, d) => s + d.length + 1, 0);
  assert.equal(a.train.num_tokens + a.validation.num_tokens, total);
  const share = a.train.num_tokens / total;
  assert.ok(share > 0.65 && share < 0.92, `train share ${share}`);
  // the same documents land on the same side whatever the order
  assert.equal(b.train.num_tokens, a.train.num_tokens);
  assert.throws(
    () => buildTextDatasets(docs, { ...opts, train_split: 0 }),
    /train_split 0 is not in \(0, 1\]/,
  );
});

Deno.test("loadTextDataset() reads the dataset_text_field of jsonl and names the file in errors", async () => {
  const dir = await tmp({
    "a.jsonl": '{"document": "hello"}\n{"document": "world"}\n',
    "empty.jsonl": "",
    "short.jsonl": '{"document": "hi"}\n',
  });
  const { train } = await loadTextDataset(join(dir, "a.jsonl"), {
    tokenizer: chars,
    block_size: 4,
    dataset_text_field: "document",
  });
  assert.equal(train.num_tokens, 12);
  assert.equal(train.source, join(dir, "a.jsonl"));
  await assert.rejects(
    () => loadTextDataset(join(dir, "a.jsonl"), { tokenizer: chars, block_size: 4 }),
    (e: Error) => e instanceof TypeError && /no "text" column \(columns: document\)/.test(e.message),
  );
  await assert.rejects(
    () => loadTextDataset(join(dir, "empty.jsonl"), { tokenizer: chars, block_size: 4 }),
    (e: Error) =>
      e instanceof RangeError && e.message.includes(join(dir, "empty.jsonl")) && /empty/.test(e.message),
  );
  await assert.rejects(
    () =>
      loadTextDataset(join(dir, "short.jsonl"), {
        tokenizer: chars,
        block_size: 8,
        dataset_text_field: "document",
      }),
    (e: Error) =>
      e instanceof RangeError && e.message.includes("short.jsonl") &&
      /3 tokens is fewer than one block of 8/.test(e.message),
  );
  await assert.rejects(
    () => loadTextDataset(join(dir, "nope.jsonl"), { tokenizer: chars, block_size: 4 }),
    Deno.errors.NotFound,
  );
  // SFT records: dataset_text_field cannot help, and the message had said to set it
  await Deno.writeTextFile(join(dir, "pc.jsonl"), '{"prompt": "a", "completion": "b"}\n');
  await Deno.writeTextFile(join(dir, "chat.jsonl"), '{"messages": [{"role": "user", "content": "a"}]}\n');
  for (const [f, kind] of [["pc", "prompt-completion"], ["chat", "chat \\(messages\\)"]]) {
    await assert.rejects(() => readTextDocuments(join(dir, `${f}.jsonl`)), {
      name: "TypeError",
      message: new RegExp(`these are ${kind} records, .*use packing_strategy: bfd \\(or packing: false\\)`),
    });
  }
  // an empty CSV text field (null): fill it in, not "set dataset_text_field", which is set
  await Deno.writeTextFile(join(dir, "gap.csv"), "text,label\nfirst doc,0\n,1\n");
  await assert.rejects(() => readTextDocuments(join(dir, "gap.csv")), {
    name: "TypeError",
    message:
      /gap\.csv: record 2: "text" is null \(in a CSV, an empty field\); fill it in or drop the record$/,
  });
  // NaN once read every document, -1 blamed a max_samples nobody passed
  for (const max_documents of [-1, NaN, 2.5]) {
    await assert.rejects(
      () => readTextDocuments(join(dir, "short.jsonl"), { dataset_text_field: "document", max_documents }),
      {
        name: "RangeError",
        message: new RegExp(`short\\.jsonl: max_documents ${max_documents} is not an integer >= 0`),
      },
    );
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readTextDocuments() reads a folder of text files (one document each) and split folders", async () => {
  const plain = await tmp({ "b.txt": "second\nfile\n", "a.md": "first", "skip.bin": "x" });
  assert.deepEqual(await readTextDocuments(plain), ["first", "second\nfile"]);
  const split = await tmp({ "train.jsonl": '{"text": "t1"}\n', "validation.jsonl": '{"text": "v1"}\n' });
  assert.deepEqual(await readTextDocuments(split), ["t1"]);
  assert.deepEqual(await readTextDocuments(split, { split: "validation" }), ["v1"]);
  await assert.rejects(() => readTextDocuments(split, { split: "test" }), /has train, validation/);
  // a folder without split files, or one file, is all train: another split is refused, not ignored
  await assert.rejects(
    () => readTextDocuments(plain, { split: "validation" }),
    /split "validation" of .*: its files name no split, so all of them are the train split/,
  );
  await assert.rejects(
    () => readTextDocuments(`${plain}/a.md`, { split: "test" }),
    /split "test" of .*a\.md: it is one file, all of it the train split; drop split/,
  );
  assert.deepEqual(await readTextDocuments(`${plain}/a.md`, { split: "train" }), ["first"]);
  // a text file has no columns: a dataset_text_field for it would be ignored, so it is refused
  await assert.rejects(
    () => readTextDocuments(`${plain}/a.md`, { dataset_text_field: "content" }),
    /dataset_text_field "content" names a column of record files, and .*a\.md is plain text/,
  );
  await Deno.remove(plain, { recursive: true });
  await Deno.remove(split, { recursive: true });
});
