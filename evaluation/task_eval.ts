/**
 * Evaluate a model on a task's examples, as the recipes and `cli eval` do: summarization and
 * translation by generating an answer per prompt (greedy or beam search, `generation_eval.ts`)
 * and scoring it (ROUGE / BLEU, chrF, chrF++; a translation line by line with `split_lines`);
 * classification by the log-likelihood of each label's verbalizer (`label_likelihood.ts`), no
 * sampling. Baselines on the same examples: lead-6 (summarization), identity (translation),
 * majority class of the train labels (classification).
 *
 * @module
 */
import { joinLines, type SplitLines, splitLines } from "../data/line_pairs.ts";
import { labelVerbalizers, promptIds, type PromptOptions } from "../data/prompts.ts";
import type { TaskExample, TaskKind } from "../data/task_data.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { OnnxDecoder } from "../models/onnx_runtime.ts";
import type { Transformer } from "../models/transformer.ts";
import { generatePredictions, type PredictOptions } from "./generation_eval.ts";
import { scoreLabels } from "./label_likelihood.ts";
import {
  classificationMetrics,
  leadBaseline,
  majorityLabel,
  summarizationMetrics,
  translationMetrics,
} from "./task_metrics.ts";
import type { ConfusionMatrix } from "./classification.ts";

/** Options of {@linkcode evaluateTask}. */
export interface TaskEvalOptions {
  /** Classification: the label set (the verbalizers are built from it). */
  labels?: readonly string[] | null;
  /** How prompts are built (style, format, source cut). */
  prompt?: PromptOptions;
  /**
   * Generation settings (summarization, translation). `first_line` defaults to the task's: true for
   * summarization and for translation by line (`split_lines`), false for whole translations.
   */
  generation?: PredictOptions;
  /** Rows per forward / generate call (default 32). */
  batch_size?: number;
  /**
   * Translation: translate each non-empty line of a source on its own and put the translations
   * back one per line (`data/line_pairs.ts`); default false (the whole source in one prompt).
   */
  split_lines?: boolean;
  /** Called after each batch with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** One evaluated example. */
export interface TaskPrediction {
  /** The example's `id` (or `idx`) column, when the data has one. */
  id?: string;
  /** The input text, as stored. */
  source: string;
  /** The expected output: the reference text, or the label name for classification. */
  reference: string;
  /** The model's output: generated text, or the highest-scoring label for classification. */
  prediction: string;
  /** Classification: the log-likelihood of each label's verbalizer. */
  scores?: number[];
}

/** What {@linkcode evaluateTask} returns. */
export interface TaskEvalResult {
  /** Metrics on the 0-100 scale, plus `n` (and `bleu_signature` for translation). */
  metrics: Record<string, number | string>;
  /** One entry per evaluated example, in input order. */
  predictions: TaskPrediction[];
  /** Classification only. */
  confusion?: ConfusionMatrix;
  /** Classification only: precision, recall and F1 per label (0-100), and support (reference count). */
  per_class?: Record<string, { precision: number; recall: number; f1: number; support: number }>;
}

/**
 * The prompts {@linkcode evaluateTask} generates or scores from: one per example, or with
 * `split_lines` one per non-empty line of each source (`lines` says where each belongs).
 * @throws {RangeError} for `split_lines` with a task other than translation
 */
export function taskPrompts(
  task: TaskKind,
  examples: readonly TaskExample[],
  tokenizer: Tokenizer,
  opts: Pick<TaskEvalOptions, "prompt" | "split_lines"> = {},
): { prompts: number[][]; lines: SplitLines | null } {
  if (opts.split_lines && task !== "translation") {
    throw new RangeError(`Cannot evaluate ${task} with split_lines: it is for translation only`);
  }
  const lines = opts.split_lines ? splitLines(examples.map((e) => e.source)) : null;
  const prompts = (lines?.segments ?? examples.map((e) => e.source)).map((s) =>
    promptIds(task, s, tokenizer, opts.prompt)
  );
  return { prompts, lines };
}

/**
 * Predict and score every example.
 * @throws {RangeError} for classification without labels, or a reference outside them
 */
export async function evaluateTask(
  model: Transformer | OnnxDecoder,
  tokenizer: Tokenizer,
  task: TaskKind,
  examples: readonly TaskExample[],
  opts: TaskEvalOptions = {},
): Promise<TaskEvalResult> {
  if (!examples.length) throw new RangeError(`Cannot evaluate ${task}: there are no examples`);
  const { prompts, lines } = taskPrompts(task, examples, tokenizer, opts);
  const refs = examples.map((e) => e.target);
  if (task === "classification") {
    const labels = opts.labels;
    if (!labels || labels.length < 2) {
      throw new RangeError("Cannot evaluate classification: give the label set (at least two labels)");
    }
    const bad = examples.findIndex((e) => !labels.includes(e.target));
    if (bad >= 0) {
      throw new RangeError(
        `Cannot evaluate classification: example ${bad + 1} has label "${refs[bad]}", not one of ${
          labels.join(", ")
        }`,
      );
    }
    const verbs = labelVerbalizers(labels, tokenizer, opts.prompt);
    const r = await scoreLabels(model, prompts, verbs, {
      batch_size: opts.batch_size,
      onProgress: opts.onProgress,
    });
    const preds = r.predictions.map((i) => labels[i]);
    const m = classificationMetrics(preds, refs, labels);
    return {
      metrics: { accuracy: m.accuracy, macro_f1: m.macro_f1, n: m.n },
      predictions: examples.map((e, i) => ({
        ...(e.id !== undefined ? { id: e.id } : {}),
        source: e.source,
        reference: e.target,
        prediction: preds[i],
        scores: r.scores[i].map((s) => +s.toFixed(5)),
      })),
      confusion: m.confusion,
      per_class: m.per_class,
    };
  }
  const answers = await generatePredictions(model, tokenizer, prompts, {
    ...opts.generation,
    // a translated description keeps its paragraphs (one per line); a summary, or the translation
    // of one line, is one line
    first_line: opts.generation?.first_line ?? (task === "summarization" || lines !== null),
    batch_size: opts.batch_size ?? opts.generation?.batch_size,
    onProgress: opts.onProgress ?? opts.generation?.onProgress,
  });
  const preds = lines ? joinLines(lines, answers) : answers;
  const predictions = examples.map((e, i) => ({
    ...(e.id !== undefined ? { id: e.id } : {}),
    source: e.source,
    reference: e.target,
    prediction: preds[i],
  }));
  if (task === "summarization") return { metrics: { ...summarizationMetrics(preds, refs) }, predictions };
  return { metrics: { ...translationMetrics(preds, refs) }, predictions };
}

/**
 * The task's baseline on the same examples, under its README name: `lead-6` (summarization),
 * `identity` (translation), `majority (<label>)` (classification, from the train labels).
 */
export function taskBaselines(
  task: TaskKind,
  examples: readonly TaskExample[],
  opts: { train_targets?: readonly string[]; labels?: readonly string[] | null } = {},
): Record<string, Record<string, number>> {
  const refs = examples.map((e) => e.target);
  if (task === "summarization") {
    const { n: _n, ...m } = summarizationMetrics(examples.map((e) => leadBaseline(e.source, 6)), refs);
    return { "lead-6": m };
  }
  if (task === "translation") {
    const { n: _n, bleu_signature: _s, ...m } = translationMetrics(examples.map((e) => e.source), refs);
    return { identity: m };
  }
  const labels = opts.labels ?? [...new Set(refs)].sort();
  const major = majorityLabel(opts.train_targets ?? refs, labels);
  const m = classificationMetrics(examples.map(() => major), refs, labels);
  return { [`majority (${major})`]: { accuracy: m.accuracy, macro_f1: m.macro_f1 } };
}
