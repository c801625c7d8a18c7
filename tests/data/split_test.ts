import { assert } from "../_assert.ts";
import { hashFraction, pickSplit, shuffleRecords, splitRecords } from "../../data/split.ts";

const rows = Array.from({ length: 1000 }, (_, i) => ({ id: `doc-${i}`, group: `g${i % 37}` }));

Deno.test("shuffleRecords() is a seeded permutation", () => {
  const a = shuffleRecords(rows, { seed: 3 });
  assert.deepEqual(shuffleRecords(rows, { seed: 3 }), a);
  assert.notDeepEqual(shuffleRecords(rows, { seed: 4 }), a);
  assert.notDeepEqual(a, rows);
  assert.deepEqual(
    [...a].sort((x, y) => x.id.localeCompare(y.id)),
    [...rows].sort((x, y) => x.id.localeCompare(y.id)),
  );
  // seeds outside [0, 2^32 - 1] or not whole would alias valid ones (-1 as 4294967295, 1.5 as 1)
  for (const seed of [-1, 1.5, NaN, 2 ** 32, "7"]) {
    assert.throws(() => shuffleRecords(rows, { seed: seed as number }), {
      name: "RangeError",
      message: /Cannot shuffle: seed .* is not an integer in \[0, 2\^32 - 1\]; use e\.g\. 42/,
    });
  }
});

Deno.test("splitRecords() by fraction is deterministic and disjoint", () => {
  const s = splitRecords(rows, { train_split: 0.8, seed: 1 });
  assert.equal(s.train.length, 800);
  assert.equal(s.validation.length, 200);
  assert.deepEqual(splitRecords(rows, { train_split: 0.8, seed: 1 }), s);
  const ids = new Set(s.train.map((r) => r.id));
  assert.ok(s.validation.every((r) => !ids.has(r.id)));
  assert.throws(() => splitRecords(rows, { train_split: 1 }), {
    name: "RangeError",
    message: /train_split 1/,
  });
});

Deno.test("splitRecords() by hash keeps a key on one side and is stable under reordering", () => {
  const s = splitRecords(rows, { train_split: 0.7, split_key: "group" });
  const trainGroups = new Set(s.train.map((r) => r.group));
  assert.ok(s.validation.every((r) => !trainGroups.has(r.group)));
  const again = splitRecords(shuffleRecords(rows, { seed: 9 }), { train_split: 0.7, split_key: "group" });
  assert.deepEqual(new Set(again.validation.map((r) => r.id)), new Set(s.validation.map((r) => r.id)));
  assert.equal(hashFraction("abc"), hashFraction("abc"));
  assert.throws(() => splitRecords(rows, { split_key: "nope" }), {
    name: "TypeError",
    message: /split_key "nope": record 1 has columns id, group/,
  });
  // a null key (an empty CSV field) had hashed as "null", putting every such record on one side
  assert.throws(
    () => splitRecords([{ id: "a", group: "g" }, { id: "b", group: null }], { split_key: "group" }),
    {
      name: "TypeError",
      message: /split_key "group": record 2 is null \(in a CSV, an empty field\); every record needs a key/,
    },
  );
  // a hash split that leaves one side empty is refused, as a fraction split is
  assert.throws(
    () => splitRecords([{ id: "a" }, { id: "b" }], { train_split: 0.001, split_key: "id" }, "two.jsonl"),
    /Cannot split two\.jsonl by split_key "id": the train split would be empty/,
  );
  // an int64 id (a bigint, as read from JSON Lines or parquet) hashes as its digits (it threw)
  const big = Array.from({ length: 20 }, (_, i) => ({ id: 9007199254740993n + BigInt(i) }));
  const byDigits = splitRecords(big.map((r) => ({ id: r.id.toString() })), {
    split_key: "id",
    train_split: 0.5,
  });
  const byBigint = splitRecords(big, { split_key: "id", train_split: 0.5 });
  assert.deepEqual(byBigint.train.map((r) => r.id.toString()), byDigits.train.map((r) => r.id));
});

Deno.test("pickSplit() lists the splits that exist", () => {
  assert.throws(() => pickSplit({ train: 1, validation: 2 }, "test", "my.jsonl"), {
    name: "RangeError",
    message: /split "test" in my\.jsonl: the splits are train, validation/,
  });
});
