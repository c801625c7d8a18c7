/**
 * Data: readers (jsonl, json, csv/tsv, text, parquet) with streaming, splits, Hugging Face hub
 * datasets, the Debian datasets of the shared folder, and cleaning (length, repetition, exact and MinHash
 * near-dedup, language), and supervised fine-tuning data: SFT examples with label masks (TRL
 * formats) and their packing into rows (TRL `packing_strategy`); the recipes' task data
 * (`loadTaskData`: summarization, translation and classification examples from Debian, the hub or
 * local files), the word-for-word dictionary that teaches the offline translation recipe, and the
 * line-by-line split of translation pairs.
 *
 * @module
 */
export * from "./jsonl.ts";
export * from "./csv.ts";
export * from "./text.ts";
export * from "./parquet.ts";
export * from "./split.ts";
export * from "./readers.ts";
export * from "./hub_datasets.ts";
export * from "./debian.ts";
export * from "./clean.ts";
export * from "./minhash.ts";
export * from "./text_dataset.ts";
export * from "./sft.ts";
export * from "./packing.ts";
export * from "./row_dataset.ts";
export * from "./preference.ts";
export * from "./task_data.ts";
export * from "./prompts.ts";
export * from "./word_dictionary.ts";
export * from "./line_pairs.ts";
