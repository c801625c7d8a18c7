/**
 * Evaluation: ROUGE, BLEU, chrF (exactly as rouge_score and sacreBLEU compute them), classification
 * metrics, perplexity and plots.
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
