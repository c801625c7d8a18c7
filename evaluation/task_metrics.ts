/**
 * The recipes' metrics, on the 0-100 scale the Debian baselines use, and the baselines themselves
 * (computed on the same split, never copied): summarization ROUGE-1/2/L/Lsum F1 (rouge_score,
 * no stemming) against the lead baseline (the document's first sentence cut to 6 words);
 * translation sacreBLEU (13a, with its signature), chrF and chrF++ against the identity baseline
 * (the source as the translation); classification accuracy, macro-F1, per-class precision/recall
 * and the confusion matrix against the majority class of the train split. Scores are rounded to 4
 * decimals (what `metrics.json` and the reports print); the functions they come from
 * (`rougeScore`, `bleu`, `chrf`, `accuracy`, ...) give unrounded values, on their own scales.
 *
 * @module
 */
import { bleu } from "./bleu.ts";
import { chrf } from "./chrf.ts";
import { accuracy, classReport, type ConfusionMatrix, confusionMatrix, macroF1 } from "./classification.ts";
import { computeRougeScores } from "./rouge.ts";

/** Summarization metrics (mean per-example F1 x 100, rounded to 4 decimals). */
export interface SummarizationMetrics {
  /** ROUGE-1 F1 (unigram overlap), 0-100. */
  rouge1: number;
  /** ROUGE-2 F1 (bigram overlap), 0-100. */
  rouge2: number;
  /** ROUGE-L F1 (longest common subsequence over the whole text), 0-100. */
  rougeL: number;
  /** ROUGE-Lsum F1 (union LCS over newline-split sentences), 0-100. */
  rougeLsum: number;
  /** Number of prediction/reference pairs scored. */
  n: number;
}

/** Translation metrics (corpus level, x 100 as sacreBLEU prints them, rounded to 4 decimals). */
export interface TranslationMetrics {
  /** Corpus BLEU, 0-100 (sacreBLEU defaults: 13a tokenizer, exp smoothing). */
  bleu: number;
  /** Corpus chrF (character n-grams up to 6, beta 2), 0-100. */
  chrf: number;
  /** Corpus chrF++: chrF plus word unigrams and bigrams, 0-100. */
  "chrf++": number;
  /**
   * Corpus BLEU as `../shared/datasets/debian/README.md` defines its baselines, 0-100: tokens
   * `\w+|[^\w\s]` (Python's Unicode `\w`), no smoothing; its identity baseline is 11.91.
   */
  bleu_debian: number;
  /** e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`. */
  bleu_signature: string;
  /** Number of hypothesis/reference pairs scored. */
  n: number;
}

/** Classification metrics (x 100, rounded to 4 decimals), with the per-class report and the confusion matrix. */
export interface ClassificationMetrics {
  /** Share of exact label matches, 0-100. */
  accuracy: number;
  /** Unweighted mean of the per-label F1 over `labels`, 0-100. */
  macro_f1: number;
  /** Per label: precision, recall and F1 (0-100) and support (how many references have it). */
  per_class: Record<string, { precision: number; recall: number; f1: number; support: number }>;
  /** Counts over `labels` (rows true, columns predicted), not scaled. */
  confusion: ConfusionMatrix;
  /** Number of prediction/reference pairs scored. */
  n: number;
}

const pct = (x: number) => +(100 * x).toFixed(4);

/**
 * ROUGE-1/2/L/Lsum F1 of predictions against references (rouge_score's tokenizer: lower-cased
 * `[a-z0-9]+` runs, no stemming).
 * @example
 * ```ts
 * import { summarizationMetrics } from "./task_metrics.ts";
 * const m = summarizationMetrics(["a fast text editor"], ["fast text editor"]);
 * if (m.rouge1 !== 85.7143 || m.n !== 1) throw new Error(JSON.stringify(m));
 * ```
 */
export function summarizationMetrics(
  predictions: readonly string[],
  references: readonly string[],
): SummarizationMetrics {
  const { mean } = computeRougeScores(predictions, references);
  return {
    rouge1: pct(mean.rouge1!.fmeasure),
    rouge2: pct(mean.rouge2!.fmeasure),
    rougeL: pct(mean.rougeL!.fmeasure),
    rougeLsum: pct(mean.rougeLsum!.fmeasure),
    n: predictions.length,
  };
}

// Python's `\w+|[^\w\s]` (Unicode `\w`: letters, digits, underscore), which the Debian
// datasets' README uses for BLEU; JavaScript's `\w` is ASCII only.
const DEBIAN_BLEU_TOKENS = /[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]/gu;
const debianTokens = (s: string) => (s.match(DEBIAN_BLEU_TOKENS) ?? []).join(" ");

/**
 * Corpus BLEU (sacreBLEU defaults: 13a tokens, exp smoothing), chrF and chrF++ of hypotheses
 * against one reference each, and `bleu_debian` (the Debian README's BLEU: its own tokens, no
 * smoothing).
 * @example
 * ```ts
 * import { translationMetrics } from "./task_metrics.ts";
 * const m = translationMetrics(["das ist ein kleiner Test"], ["das ist ein kleiner Test"]);
 * if (m.bleu !== 100 || m.chrf !== 100) throw new Error(JSON.stringify(m));
 * ```
 */
export function translationMetrics(
  hypotheses: readonly string[],
  references: readonly string[],
): TranslationMetrics {
  const b = bleu(hypotheses, references);
  return {
    bleu: +b.score.toFixed(4),
    chrf: +chrf(hypotheses, references).score.toFixed(4),
    "chrf++": +chrf(hypotheses, references, { word_order: 2 }).score.toFixed(4),
    bleu_debian: +bleu(hypotheses.map(debianTokens), references.map(debianTokens), {
      tokenize: "none",
      smooth_method: "none",
    }).score.toFixed(4),
    bleu_signature: b.signature,
    n: hypotheses.length,
  };
}

/**
 * Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix over `labels`
 * (default: the labels seen in `references` and `predictions`, sorted, as `classReport`'s).
 * @example
 * ```ts
 * import { classificationMetrics } from "./task_metrics.ts";
 * const m = classificationMetrics(["games", "other", "other"], ["games", "games", "other"], ["other", "games"]);
 * if (Math.abs(m.accuracy - 66.6667) > 1e-4 || m.confusion.matrix[1][0] !== 1) throw new Error(JSON.stringify(m));
 * ```
 */
export function classificationMetrics(
  predictions: readonly string[],
  references: readonly string[],
  labels?: readonly string[],
): ClassificationMetrics {
  const report = classReport(predictions, references, labels ? { labels } : {});
  const names = report.labels as string[];
  const per_class: ClassificationMetrics["per_class"] = {};
  names.forEach((l, i) => {
    per_class[l] = {
      precision: pct(report.precision[i]),
      recall: pct(report.recall[i]),
      f1: pct(report.f1[i]),
      support: report.support[i],
    };
  });
  return {
    accuracy: pct(accuracy(predictions, references)),
    macro_f1: pct(macroF1(predictions, references, { labels: names })),
    per_class,
    confusion: confusionMatrix(predictions, references, { labels: names }),
    n: predictions.length,
  };
}

/**
 * The lead baseline of the Debian summarization README: the document's first sentence (up to the
 * first `.`, `!` or `?` followed by white space, or the first line) cut to `words` words.
 * @example
 * ```ts
 * import { leadBaseline } from "./task_metrics.ts";
 * if (leadBaseline("GNU Emacs is the extensible self-documenting text editor. It has more.", 6) !==
 *   "GNU Emacs is the extensible self-documenting") throw new Error("lead");
 * ```
 */
export function leadBaseline(document: string, words = 6): string {
  checkWordCount(words, "leadBaseline", "words");
  const line = document.split("\n")[0];
  const m = /^.*?[.!?](?=\s|$)/.exec(line);
  return (m ? m[0] : line).split(/\s+/).filter(Boolean).slice(0, words).join(" ");
}

/** A word count must be a whole number >= 1 (`slice(0, -1)` would keep all words but one). */
function checkWordCount(n: number, fn: string, name: string): void {
  if (!(Number.isInteger(n) && n >= 1)) {
    throw new RangeError(`Cannot run ${fn}: ${name} ${n} is not an integer >= 1`);
  }
}

/**
 * The extractive oracle restricted to the lead: the document's first k words (1 <= k <=
 * `max_words`, white-space words of the whole text) with the highest ROUGE-L F1 against the
 * reference summary, the shortest on ties. Training targets for an extractive summarizer are made
 * so (SummaRuNNer, BertSumExt label sentences greedily by ROUGE against the reference); a model
 * too small to write abstractive summaries learns from them to copy a lead of the right length.
 * @example
 * ```ts
 * import { leadOracle } from "./task_metrics.ts";
 * const doc = "GNU Emacs is the extensible self-documenting text editor. It has more.";
 * if (leadOracle(doc, "extensible text editor") !== "GNU Emacs is the extensible self-documenting text editor.") {
 *   throw new Error("oracle");
 * }
 * ```
 */
export function leadOracle(document: string, reference: string, max_words = 15): string {
  checkWordCount(max_words, "leadOracle", "max_words");
  const words = document.split(/\s+/).filter(Boolean).slice(0, max_words);
  const leads = words.map((_, k) => words.slice(0, k + 1).join(" "));
  if (!leads.length) return "";
  const { scores } = computeRougeScores(leads, leads.map(() => reference), { rouge_types: ["rougeL"] });
  let best = 0;
  for (let k = 1; k < leads.length; k++) {
    if (scores[k].rougeL!.fmeasure > scores[best].rougeL!.fmeasure) best = k;
  }
  return leads[best];
}

/**
 * The most frequent label of the train split (ties: the first in `labels` order).
 * @example
 * ```ts
 * import { majorityLabel } from "./task_metrics.ts";
 * if (majorityLabel(["a", "b", "b"], ["a", "b"]) !== "b") throw new Error("majority");
 * ```
 */
export function majorityLabel(trainLabels: readonly string[], labels: readonly string[]): string {
  const counts = new Map(labels.map((l) => [l, 0]));
  for (const l of trainLabels) counts.set(l, (counts.get(l) ?? 0) + 1);
  let best = labels[0];
  for (const l of labels) if (counts.get(l)! > counts.get(best)!) best = l;
  return best;
}
