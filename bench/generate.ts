/**
 * Benchmark: evaluation throughput, the recipes' inner loops. `generate` (greedy, KV cache, no EOS
 * so every row runs all its steps) on a batch of prompts: ms per decoding step and new tokens/s;
 * and label-likelihood scoring (`scoreLabels`, 8 two-token verbalizers after each prompt, the
 * prompt run once): ms per batch and prompt tokens/s. Models: the recipes' Debian base-model shape
 * (`tasks/base_model.ts`) and, unless quick, the `small` preset. One untimed warm-up call each
 * (pipeline compilation).
 *
 * Prints JSON lines when run standalone (`deno run -A bench/generate.ts [--quick]`), or through
 * `deno task bench --only generate`.
 * @module
 */
import { type Backend, createBackend } from "../kernels/backend.ts";
import { type ModelConfig, presetConfig } from "../models/config.ts";
import { generate } from "../models/generate.ts";
import { Transformer } from "../models/transformer.ts";
import { scoreLabels } from "../evaluation/label_likelihood.ts";
import { BASE_MODEL_DEFAULTS, baseModelConfig } from "../tasks/base_model.ts";
import { mulberry32 } from "../util/random.ts";
import { parseFlags } from "../util/flags.ts";

/** One benchmark result line. */
export interface GenerateBenchRecord {
  op: "generate" | "score_labels";
  /** Model, batch, prompt length and new tokens (or labels). */
  shape: string;
  /** generate: ms per decoding step (the prefill included, spread over the steps); score_labels: ms per batch. */
  ms: number;
  /** generate: new tokens per second over the batch; score_labels: prompt tokens scored per second. */
  tokens_per_s: number;
  backend: string;
  adapter: string;
}

/** Options of {@linkcode benchGenerate}. */
export interface GenerateBenchOptions {
  backend?: Backend;
  /** Rows per call (default 64, the recipes' eval_batch_size). */
  B?: number;
  /** Prompt tokens (default 64). */
  P?: number;
  /** New tokens per row (default 64). */
  new_tokens?: number;
  /** Only the base-model shape (default false: also `small`). */
  quick?: boolean;
}

/**
 * Measure greedy generation and label scoring on each model.
 * @example
 * ```ts ignore
 * import { benchGenerate } from "./generate.ts";
 * for (const r of await benchGenerate({ quick: true, B: 8, P: 16, new_tokens: 8 })) console.log(JSON.stringify(r));
 * ```
 */
export async function benchGenerate(opts: GenerateBenchOptions = {}): Promise<GenerateBenchRecord[]> {
  const be = opts.backend ?? await createBackend("auto");
  const B = opts.B ?? 64, P = opts.P ?? 64, N = opts.new_tokens ?? 64;
  const models: [string, ModelConfig][] = [["debian-base", baseModelConfig(BASE_MODEL_DEFAULTS)]];
  if (!opts.quick) models.push(["small", presetConfig("small")]);
  const out: GenerateBenchRecord[] = [];
  for (const [name, config] of models) {
    const model = Transformer.init(config, be, { seed: 1 });
    const rand = mulberry32(7);
    const ids = (n: number) =>
      Array.from({ length: n }, () => 3 + Math.floor(rand() * (config.vocab_size - 3)));
    const prompts = Array.from({ length: B }, () => ids(P));
    const gen = { max_new_tokens: N, eos_token_id: null, pad_token_id: 0 };
    await generate(model, prompts.slice(0, 2), { ...gen, max_new_tokens: 2 }); // warm-up
    let t0 = performance.now();
    await generate(model, prompts, gen);
    const ms = performance.now() - t0;
    out.push({
      op: "generate",
      shape: `${name} B=${B} P=${P} +${N} greedy`,
      ms: +(ms / N).toFixed(3),
      tokens_per_s: Math.round((B * N) / (ms / 1000)),
      backend: be.name,
      adapter: be.adapter,
    });
    const verbs = Array.from({ length: 8 }, () => ids(2));
    await scoreLabels(model, prompts.slice(0, 2), verbs); // warm-up
    t0 = performance.now();
    await scoreLabels(model, prompts, verbs, { batch_size: B });
    const sms = performance.now() - t0;
    out.push({
      op: "score_labels",
      shape: `${name} B=${B} P=${P} 8 labels x 2 tokens`,
      ms: +sms.toFixed(3),
      tokens_per_s: Math.round((B * P) / (sms / 1000)),
      backend: be.name,
      adapter: be.adapter,
    });
    model.dispose();
  }
  return out;
}

if (import.meta.main) {
  const { quick } = parseFlags("bench", Deno.args, { quick: { type: "boolean" } });
  for (const r of await benchGenerate({ quick })) console.log(JSON.stringify(r));
}
