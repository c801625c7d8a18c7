/**
 * Test helper of the search tests: a small Debian text file and a search YAML over a tiny
 * model (random sampler, no pruning: each trial's parameters depend only on its number).
 * @module
 */
import { SHARED } from "./_assert.ts";

/** The first `n` Debian summarization documents (400 characters each) as `<dir>/train.jsonl`. */
export async function debianText(dir: string, n: number): Promise<string> {
  const lines = (await Deno.readTextFile(`${SHARED}/datasets/debian/summarization/validation.jsonl`)).split(
    "\n",
  );
  const docs = lines.filter(Boolean).slice(0, n).map((l) =>
    JSON.stringify({ text: JSON.parse(l).document.slice(0, 400) })
  );
  await Deno.writeTextFile(`${dir}/train.jsonl`, docs.join("\n") + "\n");
  return `${dir}/train.jsonl`;
}

/** A search YAML of 4 trials of `steps` steps (default 12), evaluated and checkpointed every 4. */
export function searchYaml(
  dataset: string,
  studyDir: string,
  o: { steps?: number; extra?: string } = {},
): string {
  return `base:
  model: tiny
  model_config: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2,
    head_dim: 16, intermediate_size: 64, vocab_size: 320, max_position_embeddings: 32}
  dataset: ${dataset}
  max_steps: ${o.steps ?? 12}
  max_seq_length: 32
  per_device_train_batch_size: 4
  eval_strategy: steps
  eval_steps: 4
  save_strategy: steps
  save_steps: 4
  logging_steps: 100
space:
  learning_rate: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
  warmup_steps: {type: int, low: 0, high: 10, step: 2}
sampler: random
pruner: none
n_trials: 4
seed: 5
study_dir: ${studyDir}
${o.extra ?? ""}`;
}
