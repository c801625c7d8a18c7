/**
 * Evaluation: ROUGE, BLEU, chrF (exactly as rouge_score and sacreBLEU compute them), classification
 * metrics, perplexity, plots and the recipes' run report.
 *
 * @module
 */
export * from "./rouge.ts";
export * from "./porter.ts";
export * from "./bleu.ts";
export * from "./chrf.ts";
export * from "./classification.ts";
export * from "./perplexity.ts";
export * from "./plot.ts";
export * from "./plot_eval.ts";
export * from "./run_report.ts";
export * from "./task_metrics.ts";
export * from "./label_likelihood.ts";
export * from "./generation_eval.ts";
export * from "./task_eval.ts";
