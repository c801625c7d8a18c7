/**
 * Text generation with the KV cache: `generate(model, prompts, options)` with Hugging Face
 * `GenerationConfig` names (greedy, temperature / top-k / top-p sampling, repetition penalty,
 * no-repeat n-grams, EOS ids, stop strings, seeded sampling, streaming; beam search with
 * `num_beams > 1`, in `beam_search.ts`).
 *
 * A batch of prompts is left padded as HF's `generate()` does: pads of `pad_token_id` (else the
 * first EOS id, else 0) on the left, `attention_mask` 0 there, and `position_ids = cumsum(mask) - 1`
 * with pads set to 1. The prompt is prefilled once; every later step feeds one token per row at
 * the row's next position, so a step costs the same whatever the prompt length apart from the
 * attention reads over the cache. Only the last position's logits `[B, V]` are computed (the last
 * rows of the hidden states are gathered on the device before the LM head). Plain greedy decoding
 * takes their argmax on the device and feeds it straight to the next step, reading back only the
 * `[B]` new ids, one step behind, so the device never waits on the host; sampling and the logits
 * processors read the `[B, V]` logits back and choose on the host.
 *
 * @module
 */
import { argmaxRows } from "../kernels/argmax.ts";
import { noGrad } from "../kernels/autograd.ts";
import type { HostArray, Tensor } from "../kernels/tensor.ts";
import {
  checkPrompts,
  lastLogits,
  leftPad,
  modelGenerationConfig,
  resolveForModel,
  RowDecoder,
} from "./_decode.ts";
import { beamSearch, reorderCache } from "./beam_search.ts";
import { checkGenerateOptions, type GenerationConfig, type ResolvedGeneration } from "./generation_config.ts";
import type { Tokenizer } from "./tokenizer/tokenizer.ts";
import type { ForwardOptions, Transformer } from "./transformer.ts";

/** A model's generation defaults (HF's `model.generation_config`), as {@linkcode generate} reads them. */
export { modelGenerationConfig };

/** Why a row stopped (the names of Hugging Face text-generation-inference). */
export type FinishReason = "length" | "eos_token" | "stop_sequence";

/** Hugging Face's `BaseStreamer` shape: `put` once per step, `end` once at the end. */
export interface GenerationStreamer {
  /** The new token of each row (null for a row that had already stopped). */
  put(tokens: (number | null)[]): void;
  /** Called once after the last step. */
  end(): void;
}

/** Options of {@linkcode generate}: HF `GenerationConfig` fields plus the run's extras. */
export interface GenerateOptions extends GenerationConfig {
  /** Defaults below the options (e.g. from {@linkcode loadGenerationConfig}); above the model config. */
  generation_config?: GenerationConfig;
  /** Seed of the sampler: the same seed gives the same tokens. Default: random. */
  seed?: number;
  /** Decodes the continuation: needed for `stop_strings`; adds `text` to the result. */
  tokenizer?: Tokenizer;
  /** Called after every step with the new token of each row (null once a row has stopped). */
  onToken?: (tokens: (number | null)[], step: number) => void | Promise<void>;
  /** HF-style streamer, called like `onToken`, then `end()`. */
  streamer?: GenerationStreamer;
}

/** What {@linkcode generate} returns, one entry per prompt. */
export interface GenerateResult {
  /** The new tokens only (no prompt, no padding), including the EOS or stop-string token that ended the row. */
  tokens: number[][];
  /** With a tokenizer: the decoded new tokens (special tokens skipped), cut before a stop string. */
  text?: string[];
  /** Why each row stopped. */
  finish_reason: FinishReason[];
  /**
   * Beam search only (HF `sequences_scores`): each returned hypothesis's score, `sum of token
   * log-probs / generated_len ** length_penalty`. Rows are then prompt-major,
   * `num_return_sequences` per prompt, best first.
   */
  sequences_scores?: number[];
}

/**
 * Generate a continuation of each prompt with the model's KV cache, under `noGrad`.
 *
 * Processing follows HF (`transformers` v4.47): repetition penalty, no-repeat n-grams, then when
 * sampling temperature, top-k, top-p, softmax and a draw (one seeded generator, rows drawn in
 * order); greedy takes the argmax. The penalties count the prompt's real tokens (pads excluded)
 * and the generated ones. A row that stops is fed `pad_token_id` until every row has stopped or
 * `max_new_tokens` is reached; its returned tokens end at the stop (HF's rectangular output is
 * these rows right-padded with `pad_token_id`). With `num_beams > 1` it runs
 * {@linkcode beamSearch} (no streaming, no stop strings, `num_return_sequences` rows per prompt).
 *
 * @param model the decoder (any backend)
 * @param input one prompt of token ids per row (lengths may differ), e.g. `[[1, 5, 9]]`
 * @param opts {@linkcode GenerateOptions} (optional: the model's generation_config, else HF's defaults:
 *   greedy, 20 new tokens)
 * @throws {TypeError} for malformed prompts or option types; {@linkcode RangeError} for values out
 *   of range (empty prompt, ids outside the vocabulary, `temperature` < 0, `top_p` outside (0, 1],
 *   prompt + `max_new_tokens` over `max_position_embeddings`); every problem is listed
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { presetConfig } from "./config.ts";
 * import { generate } from "./generate.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be);
 * const out = await generate(model, [[1, 2, 3], [4]], { max_new_tokens: 4, eos_token_id: null });
 * if (out.tokens[0].length !== 4 || out.finish_reason[1] !== "length") throw new Error(JSON.stringify(out));
 * const a = await generate(model, [[1, 2, 3]], { max_new_tokens: 4, do_sample: true, seed: 7 });
 * const b = await generate(model, [[1, 2, 3]], { max_new_tokens: 4, do_sample: true, seed: 7 });
 * if (a.tokens.join() !== b.tokens.join()) throw new Error("seeded sampling");
 * ```
 */
export async function generate(
  model: Transformer,
  input: number[][],
  opts: GenerateOptions = {},
): Promise<GenerateResult> {
  checkGenerateOptions(opts, "generate");
  checkPrompts(input, model.config.vocab_size);
  const P = Math.max(...input.map((r) => r.length));
  // the options over the model's own generation_config.json, as HF's model.generation_config
  const s = await resolveForModel(model, opts, P);
  const be = model.backend, V = model.config.vocab_size, B = input.length;
  const L = P + s.max_new_tokens;
  const pad = s.pad_token_id;

  if (s.num_beams > 1) return beamSearch(model, input, opts);
  const { ids, pos, mask } = leftPad(input, P, L, pad);
  const nextPos = input.map((r) => r.length);
  const rows = new RowDecoder(input, s, opts.tokenizer);

  const cache = model.createCache(B, L);
  let maskT = be.fromArray(mask, [B, L], "i32");
  let idsT: Tensor | null = be.fromArray(ids, [B, P], "i32");
  let posT: Tensor | null = be.fromArray(pos, [B, P], "i32");
  try {
    if (onDevice(s)) {
      // Greedy on the device: each step's argmax feeds the next step as a device tensor, and its
      // readback is awaited only after the next step is submitted, so the GPU never waits for the
      // host. The host applies the stop rules one step behind; a row that stopped is fed its argmax
      // (its own cache rows only: the other rows' results are unchanged) and once every row has
      // stopped the one step in flight is dropped. Once at most half the batch is still going
      // (and it has 8 rows or more), the stopped rows are dropped: the step in flight is settled,
      // the live rows' cache rows gathered (`reorderCache`) and their mask rows and next ids
      // uploaded, so a few long rows no longer pay for a whole batch of finished ones.
      let live = input.map((_, b) => b); // batch row -> input row
      let pending: { read: Promise<HostArray>; live: number[] } | null = null;
      for (let step = 0; step < s.max_new_tokens; step++) {
        if (step > 0) {
          posT = be.fromArray(live.map((b) => input[b].length + step - 1), [live.length, 1], "i32");
        }
        const fwd: ForwardOptions = { attention_mask: maskT, position_ids: posT, cache };
        const next = noGrad(() => {
          const logitsT = lastLogits(model, idsT!, fwd);
          const t = argmaxRows(logitsT); // [rows] i32
          logitsT.dispose();
          return t;
        });
        idsT!.dispose();
        posT!.dispose();
        posT = null;
        const read = next.toArray(); // the copy is recorded and submitted now
        read.catch(() => {}); // awaited below; never an unhandled rejection when an earlier await throws
        idsT = next.reshape([live.length, 1]);
        next.dispose();
        if (pending && await report(take(await pending.read, pending.live), step - 1)) {
          await read; // drain the step in flight
          pending = null;
          break;
        }
        pending = { read, live };
        const going = live.filter((b) => !rows.stopped(b)).length;
        if (live.length < 8 || going * 2 > live.length || step + 1 === s.max_new_tokens) continue;
        const tokens = await read;
        pending = null;
        if (await report(take(tokens, live), step)) break;
        const keep = live.flatMap((b, slot) => rows.stopped(b) ? [] : [slot]);
        reorderCache(cache, keep);
        const kept = keep.map((slot) => live[slot]);
        idsT.dispose();
        idsT = be.fromArray(keep.map((slot) => tokens[slot]), [keep.length, 1], "i32");
        const keptMask = new Int32Array(kept.length * L);
        kept.forEach((b, i) => keptMask.set(mask.subarray(b * L, (b + 1) * L), i * L));
        maskT.dispose();
        maskT = be.fromArray(keptMask, [kept.length, L], "i32");
        live = kept;
      }
      if (pending) await report(take(await pending.read, pending.live), s.max_new_tokens - 1);
    } else {
      for (let step = 0; step < s.max_new_tokens; step++) {
        const fwd: ForwardOptions = { attention_mask: maskT, position_ids: posT, cache };
        const logitsT = noGrad(() => lastLogits(model, idsT!, fwd));
        idsT!.dispose();
        posT!.dispose();
        idsT = posT = null;
        const logits = await logitsT.toArray() as Float32Array; // [B, V]
        logitsT.dispose();
        const emitted = rows.pick((b) => logits.subarray(b * V, (b + 1) * V));
        if (await report(emitted, step)) break;
        idsT = be.fromArray(emitted.map((t) => t ?? pad), [B, 1], "i32");
        posT = be.fromArray(nextPos.map((p) => p), [B, 1], "i32");
        for (let b = 0; b < B; b++) nextPos[b]++;
      }
    }
  } finally {
    idsT?.dispose();
    posT?.dispose();
    maskT.dispose();
    for (const t of [...cache.k, ...cache.v]) t.dispose();
  }
  opts.streamer?.end();
  return rows.result();

  /** One step's device-chosen tokens (one per batch row; `live[i]` is row i's input row) through the stop rules. */
  function take(tokens: HostArray, live: number[]): (number | null)[] {
    const slot = new Int32Array(B);
    live.forEach((b, i) => slot[b] = i);
    return rows.take((b) => tokens[slot[b]]);
  }

  /** One step's new tokens to the callbacks; true once every row has stopped. */
  async function report(emitted: (number | null)[], step: number): Promise<boolean> {
    await opts.onToken?.(emitted, step);
    opts.streamer?.put(emitted);
    return rows.done;
  }
}

/** Plain greedy (no penalty, no banned n-grams) picks the argmax, which the device can take. */
function onDevice(s: ResolvedGeneration): boolean {
  return !s.do_sample && s.repetition_penalty === 1 && !s.no_repeat_ngram_size;
}
