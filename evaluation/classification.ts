/**
 * Classification metrics with scikit-learn's conventions: accuracy, per-class precision /
 * recall / F1 / support, macro F1 and the confusion matrix (rows are the true label, columns
 * the predicted one). A class with no predictions (or no true samples) gets precision (recall)
 * 0, like `zero_division=0`. Labels are strings or numbers; unless given, the label set is the
 * sorted union of the labels seen in references and predictions. Every function takes
 * `(predictions, references)`, HF `evaluate`'s order: the reverse of scikit-learn's
 * `(y_true, y_pred)`, so a positional port must swap them (else precision and recall swap).
 * @module
 */

import { checkSameLength, describe } from "./_validate.ts";

/** A class label. */
export type Label = string | number;

/** Options shared by the per-class metrics. */
export interface LabelOptions {
  /**
   * The classes, in the order results are reported. Default: every label in `references` and
   * `predictions`, sorted (numbers ascending, strings by code point). Samples whose labels are
   * not listed are left out of the confusion matrix; per-class counts are unaffected.
   */
  labels?: readonly Label[];
}

/** Per-class precision, recall, F1 and support, index-aligned with `labels`. */
export interface ClassReport {
  /** The classes, in report order (the `labels` option, else sorted); the other arrays follow it. */
  labels: Label[];
  /** Per class: `tp / (tp + fp)`, in [0, 1]; 0 when the class was never predicted. */
  precision: number[];
  /** Per class: `tp / (tp + fn)`, in [0, 1]; 0 when the class never occurs in the references. */
  recall: number[];
  /** Per class: `2 tp / (2 tp + fp + fn)`, in [0, 1]; 0 when the denominator is 0. */
  f1: number[];
  /** The number of references with each label. */
  support: number[];
}

/** A confusion matrix: `matrix[i][j]` counts samples with true label `labels[i]` predicted as `labels[j]`. */
export interface ConfusionMatrix {
  /** Row and column order of `matrix` (the `labels` option, else sorted). */
  labels: Label[];
  /** `labels.length × labels.length` counts: rows are true labels, columns predicted ones. */
  matrix: number[][];
}

function checkLabels(fn: string, name: string, value: unknown): asserts value is readonly Label[] {
  if (!Array.isArray(value)) {
    throw new TypeError(`Cannot compute ${fn}: ${name} must be an array of labels, got ${describe(value)}`);
  }
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    if (typeof v !== "string" && !(typeof v === "number" && Number.isFinite(v))) {
      throw new TypeError(
        `Cannot compute ${fn}: ${name}[${i}] must be a string or a finite number, got ${describe(v)}`,
      );
    }
  }
}

function checkPairs(fn: string, predictions: unknown, references: unknown): void {
  checkLabels(fn, "predictions", predictions);
  checkLabels(fn, "references", references);
  checkSameLength(fn, ["predictions", "references"], predictions, references);
  if (predictions.length === 0) {
    throw new RangeError(`Cannot compute ${fn}: predictions and references are empty`);
  }
}

/** Code point order, as Python's `sorted()` orders strings. */
function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!), y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function resolveLabels(
  fn: string,
  predictions: readonly Label[],
  references: readonly Label[],
  opts: LabelOptions,
) {
  if (opts.labels !== undefined) {
    checkLabels(fn, "labels", opts.labels);
    if (opts.labels.length === 0) throw new RangeError(`Cannot compute ${fn}: labels is empty`);
    if (new Set(opts.labels).size !== opts.labels.length) {
      throw new RangeError(`Cannot compute ${fn}: labels has duplicates: ${JSON.stringify(opts.labels)}`);
    }
    return [...opts.labels];
  }
  const seen = [...new Set([...references, ...predictions])];
  const kinds = new Set(seen.map((l) => typeof l));
  if (kinds.size > 1) {
    throw new TypeError(
      `Cannot compute ${fn}: labels mix strings and numbers (${JSON.stringify(seen.slice(0, 6))}); ` +
        "use one type or pass options.labels to fix the order",
    );
  }
  return kinds.has("number")
    ? (seen as number[]).sort((a, b) => a - b)
    : (seen as string[]).sort(compareCodePoints);
}

/**
 * The fraction of predictions equal to their reference (`sklearn.metrics.accuracy_score`).
 *
 * @param predictions Predicted labels (first, unlike sklearn's `y_true`).
 * @param references True labels, one per prediction.
 * @returns Accuracy in [0, 1].
 * @throws {TypeError} When an entry is not a string or finite number.
 * @throws {RangeError} When the arrays differ in length or are empty.
 * @example
 * ```ts
 * import { accuracy } from "./classification.ts";
 * import assert from "node:assert/strict";
 * assert.equal(accuracy(["pos", "neg", "pos", "pos"], ["pos", "neg", "neg", "pos"]), 0.75);
 * ```
 */
export function accuracy(predictions: readonly Label[], references: readonly Label[]): number {
  checkPairs("accuracy", predictions, references);
  let correct = 0;
  for (let i = 0; i < predictions.length; i++) if (predictions[i] === references[i]) correct++;
  return correct / predictions.length;
}

/**
 * Per-class precision, recall, F1 and support (`sklearn.metrics.precision_recall_fscore_support`
 * with `average=None, zero_division=0`); F1 is `2 tp / (2 tp + fp + fn)`.
 *
 * @param predictions Predicted labels (first, unlike sklearn's `y_true`).
 * @param references True labels, one per prediction.
 * @param options The label order (see {@linkcode LabelOptions}).
 * @returns Arrays aligned with `labels`.
 * @throws {TypeError} When an entry is not a string or finite number, or labels mix types.
 * @throws {RangeError} When the arrays differ in length or are empty, or `labels` is bad.
 * @example
 * ```ts
 * import { classReport } from "./classification.ts";
 * import assert from "node:assert/strict";
 * const r = classReport(["a", "a", "b"], ["a", "b", "b"]);
 * assert.deepEqual(r.labels, ["a", "b"]);
 * assert.deepEqual(r.precision, [0.5, 1]);
 * assert.deepEqual(r.recall, [1, 0.5]);
 * assert.deepEqual(r.support, [1, 2]);
 * ```
 */
export function classReport(
  predictions: readonly Label[],
  references: readonly Label[],
  options: LabelOptions = {},
): ClassReport {
  checkPairs("class report", predictions, references);
  const labels = resolveLabels("class report", predictions, references, options);
  const index = new Map<Label, number>(labels.map((l, i) => [l, i]));
  const tp = new Array<number>(labels.length).fill(0);
  const predicted = new Array<number>(labels.length).fill(0);
  const support = new Array<number>(labels.length).fill(0);
  for (let i = 0; i < predictions.length; i++) {
    const p = index.get(predictions[i]), r = index.get(references[i]);
    if (p !== undefined) predicted[p]++;
    if (r !== undefined) support[r]++;
    if (p !== undefined && predictions[i] === references[i]) tp[p]++;
  }
  const precision = tp.map((t, k) => predicted[k] > 0 ? t / predicted[k] : 0);
  const recall = tp.map((t, k) => support[k] > 0 ? t / support[k] : 0);
  const f1 = tp.map((t, k) => {
    const denom = 2 * t + (predicted[k] - t) + (support[k] - t);
    return denom > 0 ? (2 * t) / denom : 0;
  });
  return { labels, precision, recall, f1, support };
}

/**
 * Macro-averaged F1: the unweighted mean of the per-class F1 scores
 * (`sklearn.metrics.f1_score(average="macro", zero_division=0)`).
 *
 * @param predictions Predicted labels (first, unlike sklearn's `y_true`).
 * @param references True labels, one per prediction.
 * @param options The label set (see {@linkcode LabelOptions}).
 * @returns Macro F1 in [0, 1].
 * @throws {TypeError} When an entry is not a string or finite number, or labels mix types.
 * @throws {RangeError} When the arrays differ in length or are empty, or `labels` is bad.
 * @example
 * ```ts
 * import { macroF1 } from "./classification.ts";
 * import assert from "node:assert/strict";
 * assert.equal(macroF1([0, 0, 1], [0, 1, 1]), (2 / 3 + 2 / 3) / 2);
 * ```
 */
export function macroF1(
  predictions: readonly Label[],
  references: readonly Label[],
  options: LabelOptions = {},
): number {
  const { f1 } = classReport(predictions, references, options);
  let sum = 0;
  for (const f of f1) sum += f;
  return sum / f1.length;
}

/**
 * The confusion matrix (`sklearn.metrics.confusion_matrix`): rows are true labels, columns
 * predicted labels, in `labels` order.
 *
 * @param predictions Predicted labels (first, unlike sklearn's `y_true`).
 * @param references True labels, one per prediction.
 * @param options The label order (see {@linkcode LabelOptions}).
 * @returns The labels and the counts.
 * @throws {TypeError} When an entry is not a string or finite number, or labels mix types.
 * @throws {RangeError} When the arrays differ in length or are empty, or `labels` is bad.
 * @example
 * ```ts
 * import { confusionMatrix } from "./classification.ts";
 * import assert from "node:assert/strict";
 * const { labels, matrix } = confusionMatrix(["cat", "dog", "dog"], ["cat", "cat", "dog"]);
 * assert.deepEqual(labels, ["cat", "dog"]);
 * assert.deepEqual(matrix, [[1, 1], [0, 1]]);
 * ```
 */
export function confusionMatrix(
  predictions: readonly Label[],
  references: readonly Label[],
  options: LabelOptions = {},
): ConfusionMatrix {
  checkPairs("confusion matrix", predictions, references);
  const labels = resolveLabels("confusion matrix", predictions, references, options);
  const index = new Map<Label, number>(labels.map((l, i) => [l, i]));
  const matrix = labels.map(() => new Array<number>(labels.length).fill(0));
  for (let i = 0; i < predictions.length; i++) {
    const r = index.get(references[i]), p = index.get(predictions[i]);
    if (r !== undefined && p !== undefined) matrix[r][p]++;
  }
  return { labels, matrix };
}
