import { assert, assertClose } from "../_assert.ts";
import { classificationMetrics } from "../../evaluation/task_metrics.ts";
import {
  accuracy,
  classReport,
  confusionMatrix,
  type Label,
  macroF1,
} from "../../evaluation/classification.ts";

// A 3-class example whose sklearn results are easy to check by hand:
// y_true = [0, 1, 2, 0, 1, 2], y_pred = [0, 2, 1, 0, 0, 1]
// class 0: tp 2, predicted 3, support 2 -> P 2/3, R 1, F1 0.8
// class 1: tp 0, predicted 2, support 2 -> P 0, R 0, F1 0
// class 2: tp 0, predicted 1, support 2 -> P 0, R 0, F1 0
const TRUE = [0, 1, 2, 0, 1, 2];
const PRED = [0, 2, 1, 0, 0, 1];

Deno.test("accuracy() counts exact matches", () => {
  assert.equal(accuracy(PRED, TRUE), 2 / 6);
  assert.equal(accuracy(["a", "b"], ["a", "b"]), 1);
  assert.equal(accuracy([1], ["1"]), 0);
});

Deno.test("classReport() gives sklearn's per-class precision, recall, F1 and support", () => {
  const r = classReport(PRED, TRUE);
  assert.deepEqual(r.labels, [0, 1, 2]);
  assert.deepEqual(r.precision, [2 / 3, 0, 0]);
  assert.deepEqual(r.recall, [1, 0, 0]);
  assertClose(r.f1[0], 0.8, { atol: 1e-15 });
  assert.deepEqual(r.f1.slice(1), [0, 0]);
  assert.deepEqual(r.support, [2, 2, 2]);
});

Deno.test("macroF1() averages per-class F1 over the label set, unseen labels counting 0", () => {
  assertClose(macroF1(PRED, TRUE), 0.8 / 3, { atol: 1e-15 });
  assertClose(macroF1(PRED, TRUE, { labels: [0, 1, 2, 3] }), 0.8 / 4, { atol: 1e-15 });
  assertClose(macroF1(PRED, TRUE, { labels: [0] }), 0.8, { atol: 1e-15 });
  assert.equal(macroF1(["pos", "neg"], ["pos", "neg"]), 1);
});

Deno.test("confusionMatrix() puts true labels on rows and predictions on columns", () => {
  const { labels, matrix } = confusionMatrix(PRED, TRUE);
  assert.deepEqual(labels, [0, 1, 2]);
  assert.deepEqual(matrix, [[2, 0, 0], [1, 0, 1], [0, 2, 0]]);
});

Deno.test("confusionMatrix() follows an explicit label order and drops unlisted labels", () => {
  const { labels, matrix } = confusionMatrix(["b", "a", "c"], ["a", "a", "c"], { labels: ["c", "a"] });
  assert.deepEqual(labels, ["c", "a"]);
  assert.deepEqual(matrix, [[1, 0], [0, 1]]);
});

Deno.test("confusionMatrix() sorts numbers numerically and strings by code point", () => {
  assert.deepEqual(confusionMatrix([10, 9, 2], [2, 9, 10]).labels, [2, 9, 10]);
  assert.deepEqual(confusionMatrix(["b", "B", "é"], ["a", "b", "Z"]).labels, ["B", "Z", "a", "b", "é"]);
});

Deno.test("classification metrics reject bad input with clear errors", () => {
  assert.throws(() => accuracy([1, 2], [1]), /predictions has 2 entries but references has 1/);
  assert.throws(() => accuracy([1, 2], [1]), RangeError);
  assert.throws(() => accuracy([], []), RangeError);
  assert.throws(
    () => accuracy([1, null as unknown as Label], [1, 2]),
    /predictions\[1\] must be a string or a finite number/,
  );
  assert.throws(() => macroF1([1, NaN], [1, 2]), TypeError);
  assert.throws(() => confusionMatrix([1, "a"], [1, "a"]), /labels mix strings and numbers/);
  assert.throws(() => classReport([1], [1], { labels: [1, 1] }), /labels has duplicates/);
  assert.throws(() => classReport([1], [1], { labels: [] }), RangeError);
  assert.throws(() => accuracy("ab" as unknown as Label[], ["a", "b"]), TypeError);
});

Deno.test("classificationMetrics() without labels scores the labels it sees, as classReport does", () => {
  const p = ["games", "other", "other"], r = ["games", "games", "other"];
  const given = classificationMetrics(p, r, ["games", "other"]), seen = classificationMetrics(p, r);
  assert.deepEqual(seen, given); // (it had failed on labels.forEach deep inside)
  assert.equal(seen.accuracy, 66.6667);
  assert.deepEqual(seen.confusion.labels, ["games", "other"]);
});
