/**
 * Helper of the recipe tests: a recipe run on a tiny budget (a tiny Debian base model that
 * pre-trains in seconds, a few training steps, a few validation examples).
 * @module
 */
import { cliProcess, type CliRun } from "../cli/_cli.ts";

/** The `--base_model` of a tiny run: pre-trains in seconds. */
export const TINY_BASE: string = JSON.stringify({
  vocab_size: 320,
  hidden_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 64,
  max_position_embeddings: 256,
  block_size: 64,
  per_device_train_batch_size: 4,
  max_steps: 3,
  tokenizer_chars: 50_000,
});

/**
 * `cli.ts recipe <name>` on a tiny budget into `out` (a subprocess, as `deno task train:*` runs),
 * with its base models cached in `cache`; `out` null: no `--output_dir`, run in the folder `cwd`.
 */
export async function tinyRecipe(
  name: string,
  out: string | null,
  cache: string,
  extra: string[] = [],
  cwd?: string,
): Promise<CliRun> {
  // the tiny settings, each unless `extra` gives its own (a flag given twice is refused)
  const tiny: [string, string][] = [
    ["--max_train_samples", "24"],
    ["--max_eval_samples", "6"],
    ["--max_steps", "2"],
    ["--per_device_train_batch_size", "4"],
    ["--max_seq_length", "128"],
    ["--max_source_tokens", "40"],
    // the generating recipes' output length (classification scores labels, generating nothing)
    ...(["sst2", "debian-sections"].includes(name) ? [] : [["--max_new_tokens", "6"] as [string, string]]),
  ];
  return await cliProcess(
    [
      "recipe",
      name,
      ...(extra.includes("--model") ? [] : ["--base_model", TINY_BASE]), // (--model replaces the base model)
      ...tiny.filter(([flag]) => !extra.includes(flag)).flat(),
      ...(out === null ? [] : ["--output_dir", out]),
      ...extra,
    ],
    { FLEDGE_CACHE_DIR: cache },
    cwd,
  );
}
