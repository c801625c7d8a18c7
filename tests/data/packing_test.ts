import { assert } from "../_assert.ts";
import { type PackableExample, type PackedRow, packExamples, padExamples } from "../../data/packing.ts";
import { buildTextDatasets } from "../../data/text_dataset.ts";
import { mulberry32 } from "../../util/random.ts";

/** An example of ids `start, start+1, ...` (`n` of them), every token trained. */
function example(start: number, n: number): PackableExample {
  const ids = Int32Array.from({ length: n }, (_, i) => start + i);
  return { input_ids: ids, labels: ids.slice() };
}

/** Skewed lengths: mostly short, a few near max_length (seeded). */
function skewed(count: number, maxLength: number, seed = 7): PackableExample[] {
  const rand = mulberry32(seed);
  let next = 1;
  return Array.from({ length: count }, () => {
    const n = rand() < 0.15 ? maxLength - Math.floor(rand() * 8) : 2 + Math.floor(rand() * 30);
    const e = example(next, n);
    next += n;
    return e;
  });
}

/** The examples of a row: one list of ids per segment, in order. */
function segments(row: PackedRow): number[][] {
  const out: number[][] = [];
  row.segment_ids.forEach((s, t) => {
    if (s === 0) return;
    (out[s - 1] ??= []).push(row.input_ids[t]);
  });
  return out;
}

const trainedLabels = (rows: PackedRow[]) =>
  rows.reduce((n, r) => n + r.labels.filter((l) => l !== -100).length, 0);

Deno.test("packExamples() reproduces TRL's pack_dataset docstring (bfd and bfd_split)", () => {
  const data = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11]].map((ids) => ({
    input_ids: Int32Array.from(ids),
    labels: Int32Array.from(ids),
  }));
  const bfd = packExamples(data, { max_length: 4 });
  assert.deepEqual(bfd.rows.map(segments), [[[1, 2, 3, 4]], [[8, 9, 10], [11]], [[6, 7]]]);
  assert.equal(bfd.summary.truncated, 1);
  const split = packExamples(data, { max_length: 4, strategy: "bfd_split" });
  assert.deepEqual(split.rows.map(segments), [[[1, 2, 3, 4]], [[8, 9, 10], [5]], [[6, 7], [11]]]);
  assert.equal(split.summary.real_tokens, 11);
});

Deno.test("packExamples(bfd) fills rows better than padding on skewed lengths", () => {
  const L = 64, examples = skewed(200, L);
  const packed = packExamples(examples, { max_length: L });
  const padded = padExamples(examples, { max_length: L });
  assert.equal(padded.summary.rows, 200);
  assert.ok(
    packed.summary.fill_ratio > 0.95 && packed.summary.fill_ratio > 2 * padded.summary.fill_ratio,
    `bfd fill ${packed.summary.fill_ratio}, padding fill ${padded.summary.fill_ratio}`,
  );
  assert.equal(packed.summary.real_tokens, padded.summary.real_tokens);
  const real = examples.reduce((n, e) => n + e.input_ids.length, 0);
  assert.equal(packed.summary.fill_ratio, real / (packed.rows.length * L));
  // No row could take the smallest example of a later row: best fit leaves little room.
  assert.ok(packed.rows.length <= Math.ceil(real / L) + 1, `${packed.rows.length} rows for ${real} tokens`);
});

Deno.test("packExamples(bfd) never splits an example and restarts positions per example", () => {
  const L = 64, examples = skewed(120, L, 3);
  const { rows } = packExamples(examples, { max_length: L, pad_token_id: -1 });
  const seen = rows.flatMap(segments).map((ids) => ids.join()).sort();
  assert.deepEqual(seen, examples.map((e) => [...e.input_ids].join()).sort());
  for (const r of rows) {
    assert.equal(r.input_ids.length, L);
    let prev = 0;
    for (let t = 0; t < L; t++) {
      const s = r.segment_ids[t];
      if (s === 0) {
        // Padding only at the end: id pad_token_id, label -100, position 0.
        assert.ok(r.segment_ids.subarray(t).every((x) => x === 0));
        assert.deepEqual([r.input_ids[t], r.labels[t], r.position_ids[t]], [-1, -100, 0]);
        continue;
      }
      const first = s !== prev;
      assert.equal(s, first ? prev + 1 : prev);
      assert.equal(r.position_ids[t], first ? 0 : r.position_ids[t - 1] + 1);
      // The first token of each example is never a target; the others keep their labels.
      assert.equal(r.labels[t], first ? -100 : r.input_ids[t]);
      prev = s;
    }
  }
});

Deno.test("packExamples() and padExamples() train the same tokens", () => {
  const L = 48, examples = skewed(80, L, 11);
  // Prompt-style masks: the first third of each example is not trained.
  for (const e of examples) e.labels.fill(-100, 0, Math.floor(e.input_ids.length / 3));
  const expected = examples.reduce((n, e) => n + e.labels.subarray(1).filter((l) => l !== -100).length, 0);
  const packed = packExamples(examples, { max_length: L });
  const padded = padExamples(examples, { max_length: L });
  assert.equal(packed.summary.trained_tokens, expected);
  assert.equal(padded.summary.trained_tokens, expected);
  assert.equal(trainedLabels(packed.rows), expected);
  assert.equal(trainedLabels(padded.rows), expected);
});

Deno.test("packExamples() is deterministic and cuts (bfd) or splits (bfd_split) long examples", () => {
  const examples = [example(1, 10), example(100, 3), example(200, 3)];
  const a = packExamples(examples, { max_length: 6 }), b = packExamples(examples, { max_length: 6 });
  assert.deepEqual(a, b);
  assert.equal(a.summary.truncated, 1);
  assert.equal(a.summary.real_tokens, 12);
  const split = packExamples(examples, { max_length: 6, strategy: "bfd_split" });
  assert.equal(split.summary.real_tokens, 16);
  assert.deepEqual(split.rows.map(segments), [[[1, 2, 3, 4, 5, 6]], [[7, 8, 9, 10]], [[100, 101, 102], [
    200,
    201,
    202,
  ]]]);
  // The piece after a split starts a new segment: its first label is not trained either.
  assert.equal(split.rows[1].labels[0], -100);
});

Deno.test("packExamples(wrapped) reproduces TextDataset's blocks for the same ids", () => {
  const chars = { eos_token_id: 0, encode: (s: string) => [...s].map((c) => c.charCodeAt(0)) };
  const docs = ["the cat", "sat on", "the mat today", "ok"];
  const T = 5;
  const { train } = buildTextDatasets(docs, { tokenizer: chars, block_size: T });
  // TextDataset's documents: each one's ids followed by EOS, labels = ids.
  const examples = docs.map((d) => {
    const ids = Int32Array.from([...chars.encode(d), 0]);
    return { input_ids: ids, labels: ids.slice() };
  });
  const { rows, summary } = packExamples(examples, { max_length: T, strategy: "wrapped" });
  for (let i = 0; i < train.num_blocks; i++) {
    assert.deepEqual([...rows[i].input_ids], [...train.block(i)]);
    assert.deepEqual([...rows[i].segment_ids], Array(T).fill(1));
    assert.deepEqual([...rows[i].position_ids], [0, 1, 2, 3, 4]);
    assert.deepEqual([...rows[i].labels], [-100, ...train.block(i).subarray(1)]);
  }
  // TextDataset drops the remainder; wrapped packing (TRL) keeps it as a last, padded row.
  const rest = train.ids.length % T;
  assert.equal(rows.length, train.num_blocks + (rest ? 1 : 0));
  assert.deepEqual([...rows.at(-1)!.segment_ids], [...Array(rest).fill(1), ...Array(T - rest).fill(0)]);
  assert.equal(summary.real_tokens, train.ids.length);
});

Deno.test("padExamples() pads on the right with an attention mask and cuts long examples", () => {
  const { rows, summary } = padExamples([example(1, 3), example(10, 7)], { max_length: 5 });
  assert.deepEqual([...rows[0].input_ids], [1, 2, 3, 0, 0]);
  assert.deepEqual([...rows[0].labels], [-100, 2, 3, -100, -100]);
  assert.deepEqual([...rows[0].attention_mask], [1, 1, 1, 0, 0]);
  assert.deepEqual([...rows[0].segment_ids], [1, 1, 1, 0, 0]);
  assert.deepEqual([...rows[1].input_ids], [10, 11, 12, 13, 14]);
  assert.deepEqual([...rows[1].attention_mask], [1, 1, 1, 1, 1]);
  assert.equal(summary.truncated, 1);
  assert.equal(summary.fill_ratio, 8 / 10);
});

Deno.test("packExamples() rejects a bad max_length, strategy or empty example", () => {
  assert.throws(
    () => packExamples([example(1, 2)], { max_length: 1 }),
    /max_length must be an integer >= 2, got 1/,
  );
  assert.throws(
    () => packExamples([example(1, 2)], { max_length: 4, strategy: "padding_free" as "bfd" }),
    /strategy "padding_free" is not one of bfd, bfd_split, wrapped/,
  );
  assert.throws(() => padExamples([example(1, 0)], { max_length: 4 }), /example 0 has 0 ids/);
  assert.deepEqual(packExamples([], { max_length: 4 }).summary.rows, 0);
});
