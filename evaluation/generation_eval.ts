/**
 * The generation-based evaluation loop: prompts (token ids) in, one decoded answer per prompt out,
 * batched with the KV cache (`generate`: greedy, sampling or beam search with Hugging Face's
 * options). Prompts are sorted by length so that a batch pads little; answers come back in input
 * order. One-line answers (synopses, sentences) are cut at the first newline. The model is ours or
 * an exported ONNX decoder run by onnxruntime (`generateOnnx`, the same options).
 *
 * @module
 */
import { generate, type GenerateOptions, modelGenerationConfig } from "../models/generate.ts";
import { generateOnnx, OnnxDecoder } from "../models/onnx_runtime.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import type { Transformer } from "../models/transformer.ts";

/** Options of {@linkcode generatePredictions}: HF generation options plus the loop's own. */
export interface PredictOptions
  extends Omit<GenerateOptions, "tokenizer" | "onToken" | "streamer" | "stop_strings"> {
  /** Prompts per `generate` call (default 32; beam search runs `batch_size * num_beams` rows). */
  batch_size?: number;
  /**
   * fairseq's `max_len_a`: with it, a row stops after `floor(max_len_a * x + max_len_b)` new tokens
   * (and at most `max_new_tokens`), x its prompt's length in tokens; so a model that never ends a
   * short line cannot hold its batch for `max_new_tokens` steps. A batch generates up to its
   * longest row's limit and each row is cut to its own (beam search too: its beams are searched to
   * the batch's limit, the returned sequences then cut). Default null: off.
   */
  max_len_a?: number | null;
  /** fairseq's `max_len_b`, with `max_len_a` (default 0). */
  max_len_b?: number;
  /** Keep only the first line of each answer (default true). */
  first_line?: boolean;
  /** Called after each batch with (prompts done, total). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Generate an answer for every prompt.
 *
 * @param model the decoder, or an ONNX decoder loaded with its config
 * @param tokenizer decodes the answers (special tokens skipped); its EOS ends a row unless
 *   `eos_token_id` is given, in the options, their `generation_config` or else the model's own
 *   (`model.generation_config`, the generation_config.json of the folder it was loaded from)
 * @param prompts token ids per prompt
 * @param opts generation and batching options
 * @returns the answers, trimmed, in input order
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "../models/config.ts";
 * import { trainBpeTokenizer } from "../models/tokenizer/bpe.ts";
 * import { Transformer } from "../models/transformer.ts";
 * import { generatePredictions } from "./generation_eval.ts";
 * const tok = await trainBpeTokenizer(["hello world ".repeat(20)], { vocab_size: 280 });
 * const model = Transformer.init(presetConfig("tiny", { vocab_size: 280 }), await createBackend("cpu"), { seed: 1 });
 * const out = await generatePredictions(model, tok, [tok.encode("hello"), tok.encode("hello world")], { max_new_tokens: 3 });
 * if (out.length !== 2 || typeof out[0] !== "string") throw new Error("predictions");
 * ```
 */
export async function generatePredictions(
  model: Transformer | OnnxDecoder,
  tokenizer: Tokenizer,
  prompts: readonly (readonly number[])[],
  opts: PredictOptions = {},
): Promise<string[]> {
  const { batch_size = 32, first_line = true, onProgress, max_len_a = null, max_len_b = 0, ...gen } = opts;
  if (!(Number.isInteger(batch_size) && batch_size >= 1)) {
    throw new RangeError(`Cannot generate predictions: batch_size ${batch_size} is not an integer >= 1`);
  }
  if ((gen.num_return_sequences ?? 1) > 1) {
    throw new RangeError(
      `Cannot generate predictions: num_return_sequences ${gen.num_return_sequences} asks for more than the ` +
        `one prediction a prompt gets (the best beam); drop it`,
    );
  }
  // the caller's generation config, else the model's own (HF's model.generation_config, as generate()
  // reads it): its eos_token_id list and max_new_tokens had given way to the tokenizer's EOS and no cap
  const gc = gen.generation_config ??
    (model instanceof OnnxDecoder ? undefined : await modelGenerationConfig(model));
  let capOf: (prompt: readonly number[]) => number;
  try {
    capOf = lengthLimit(max_len_a, max_len_b, gen.max_new_tokens ?? gc?.max_new_tokens);
  } catch (e) {
    throw new RangeError(`Cannot generate: ${(e as Error).message}`);
  }
  // each row's own limit; a batch runs to its longest row's, then every row is cut to its own
  const out = new Array<string>(prompts.length).fill("");
  const order = prompts.map((p, i) => [p.length, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) =>
    x[1]
  );
  // the stop ids: the caller's, else generation_config's (as HF generate), else the tokenizer's
  const eos = gen.eos_token_id !== undefined
    ? gen.eos_token_id
    : gc?.eos_token_id !== undefined
    ? gc.eos_token_id
    : tokenizer.eos_token_id;
  const pad = gen.pad_token_id ?? gc?.pad_token_id ?? tokenizer.pad_token_id ?? tokenizer.eos_token_id ?? 0;
  for (let s = 0; s < order.length; s += batch_size) {
    const idx = order.slice(s, s + batch_size);
    const caps = idx.map((i) => capOf(prompts[i]));
    const o = {
      ...gen,
      ...(max_len_a !== null ? { max_new_tokens: Math.max(...caps) } : {}),
      eos_token_id: eos,
      pad_token_id: pad,
      tokenizer,
    };
    const rows = idx.map((i) => [...prompts[i]]);
    const r = model instanceof OnnxDecoder
      ? await generateOnnx(model, rows, o)
      : await generate(model, rows, o);
    idx.forEach((i, k) => {
      let text = r.tokens[k].length > caps[k]
        ? tokenizer.decode(r.tokens[k].slice(0, caps[k]), { skip_special_tokens: true })
        : r.text![k];
      if (first_line) text = text.trimStart().split("\n")[0];
      out[i] = text.trim();
    });
    onProgress?.(Math.min(s + batch_size, order.length), order.length);
  }
  return out;
}

/**
 * fairseq's length limit: the new tokens a row with this prompt may generate,
 * `min(max_new_tokens, floor(max_len_a * prompt tokens + max_len_b))` (at least 1), or no limit
 * (Infinity) when `max_len_a` is null.
 * @throws {RangeError} for `max_len_a` not a number >= 0 or null, `max_len_b` not an integer >= 0,
 *   or `max_len_b` without `max_len_a`
 */
export function lengthLimit(
  max_len_a: number | null,
  max_len_b: number,
  max_new_tokens = Infinity,
): (prompt: readonly number[]) => number {
  if (
    max_len_a !== null && !(typeof max_len_a === "number" && Number.isFinite(max_len_a) && max_len_a >= 0)
  ) {
    throw new RangeError(`max_len_a must be a number >= 0 or null, got ${JSON.stringify(max_len_a)}`);
  }
  if (!(Number.isInteger(max_len_b) && max_len_b >= 0)) {
    throw new RangeError(`max_len_b must be an integer >= 0, got ${JSON.stringify(max_len_b)}`);
  }
  if (max_len_a === null && max_len_b !== 0) {
    throw new RangeError(
      `max_len_b ${max_len_b} needs max_len_a (the limit is max_len_a * prompt tokens + max_len_b)`,
    );
  }
  if (max_len_a === null) return () => Infinity;
  return (p) => Math.min(max_new_tokens, Math.max(1, Math.floor(max_len_a * p.length + max_len_b)));
}
