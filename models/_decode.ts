/**
 * What the decode loops of `generate.ts` (greedy, sampling), `onnx_runtime.ts` and `beam_search.ts`
 * share: prompt validation, HF's left padding, the last-position logits, decoding to text, and the
 * per-row token choice and stop rules of greedy / sampling decoding.
 *
 * @module
 */
import type { Tensor } from "../kernels/tensor.ts";
import { Problems, show } from "../util/problems.ts";
import { mulberry32 } from "../util/random.ts";
import type { FinishReason, GenerateResult } from "./generate.ts";
import {
  type GenerationConfig,
  loadGenerationConfig,
  type ResolvedGeneration,
  resolveGeneration,
} from "./generation_config.ts";
import { modelSource } from "./pretrained.ts";
import { nextToken } from "./logits_process.ts";
import type { Tokenizer } from "./tokenizer/tokenizer.ts";
import type { ForwardOptions, Transformer } from "./transformer.ts";

/** Host arrays of a left-padded batch: `ids`, `pos` `[rows, P]` and `mask` `[rows, L]`. */
export interface LeftPadded {
  ids: Int32Array;
  pos: Int32Array;
  mask: Int32Array;
}

/**
 * Left padding, HF `generate()` convention: pads of `pad` on the left, mask 0 there, positions
 * `cumsum(mask) - 1` with pads at 1. Each prompt fills `repeat` consecutive rows (HF
 * `_expand_inputs_for_generation`, the beams of a prompt). The mask covers the whole cache
 * `[rows, L]`: columns past the prompt are 1 (causality and kv_len hide the unwritten ones), so it
 * is uploaded once.
 */
export function leftPad(input: number[][], P: number, L: number, pad: number, repeat = 1): LeftPadded {
  const R = input.length * repeat;
  const ids = new Int32Array(R * P), pos = new Int32Array(R * P), mask = new Int32Array(R * L).fill(1);
  for (let r = 0; r < R; r++) {
    const row = input[Math.floor(r / repeat)];
    const padN = P - row.length;
    for (let t = 0; t < P; t++) {
      const real = t >= padN;
      ids[r * P + t] = real ? row[t - padN] : pad;
      pos[r * P + t] = real ? t - padN : 1;
      mask[r * L + t] = real ? 1 : 0;
    }
  }
  return { ids, pos, mask };
}

/**
 * Logits `[B, V]` at the last position of `ids [B, T]`: the final hidden rows `b*T + T-1` are
 * gathered on the device (an embedding lookup into the `[B*T, C]` hidden states) before the LM
 * head, so neither the head's matmul nor the readback touches `[B, T, V]`.
 */
export function lastLogits(model: Transformer, ids: Tensor, opts: ForwardOptions): Tensor {
  const [B, T] = ids.shape;
  if (T === 1) return model.head(model.hidden(ids, opts));
  const rows = model.backend.fromArray(Array.from({ length: B }, (_, b) => b * T + T - 1), [B], "i32");
  try {
    return model.logitsAt(ids, rows, opts); // only the last position of each row goes through the head
  } finally {
    rows.dispose();
  }
}

/** The continuation as text, special tokens skipped. */
export function decodeText(tok: Tokenizer, ids: number[]): string {
  return tok.decode(ids, { skip_special_tokens: true });
}

/** Validate the prompt batch at the boundary, listing every problem. */
export function checkPrompts(input: unknown, V: number): void {
  if (!Array.isArray(input) || input.length === 0 || !input.every(Array.isArray)) {
    const hint = Array.isArray(input) && input.length && typeof input[0] === "number"
      ? "; wrap a single prompt as [ids]"
      : "";
    throw new TypeError(
      `Cannot generate: input must be a non-empty list of prompts (number[][]), got ${show(input)}${hint}`,
    );
  }
  const p = new Problems();
  (input as unknown[][]).forEach((row, b) => {
    if (row.length === 0) {
      p.range(`input[${b}]`, "is an empty prompt; give at least one token id (e.g. the BOS id)");
    }
    const bad = row.findIndex((x) => typeof x !== "number" || !Number.isInteger(x) || x < 0 || x >= V);
    if (bad >= 0) {
      const x = row[bad];
      if (typeof x !== "number" || !Number.isInteger(x)) {
        p.type(`input[${b}][${bad}]`, `${show(x)} is not an integer id`);
      } else p.range(`input[${b}][${bad}]`, `id ${x} is outside the vocabulary [0, ${V})`);
    }
  });
  p.throwIfAny("Cannot generate", "the prompts");
}

/**
 * The per-row state of a greedy or sampling decode loop, shared by `generate` (the Transformer's KV
 * cache) and `generateOnnx` (onnxruntime's past key/values): HF's token choice per live row, then
 * EOS, stop strings and the length limit; the result with the decoded text.
 */
export class RowDecoder {
  readonly #seen: number[][];
  readonly #out: number[][];
  readonly #reason: (FinishReason | null)[];
  readonly #cut: (string | null)[];
  readonly #rng: () => number;
  /** The prompt's last ids that a stop string may start in (HF's StopStringCriteria reads the whole sequence). */
  readonly #head: number[][];
  /** Their text, decoded once (a stop string must end after it). */
  readonly #headText: string[];

  /**
   * @param input the prompts (their tokens count for the repetition penalty)
   * @param s the resolved generation settings
   * @param tokenizer decodes for stop strings and the result's text
   */
  constructor(input: number[][], readonly s: ResolvedGeneration, readonly tokenizer?: Tokenizer) {
    this.#seen = input.map((r) => [...r]);
    this.#out = input.map(() => []);
    this.#reason = input.map(() => null);
    this.#cut = input.map(() => null);
    this.#rng = mulberry32(s.seed);
    const longest = Math.max(0, ...s.stop_strings.map((x) => x.length));
    this.#head = input.map((r) => longest > 1 ? r.slice(-(longest - 1)) : []);
    this.#headText = this.#head.map((h) => h.length ? decodeText(tokenizer!, h) : "");
  }

  /** Each live row's next token from its logits `logitsOf(b)` (`[V]`); null for a finished row. */
  pick(logitsOf: (b: number) => Float32Array): (number | null)[] {
    return this.take((b) => nextToken(logitsOf(b), this.#seen[b], this.s, this.#rng));
  }

  /**
   * Each live row's next token as given (`tokenOf(b)`, e.g. chosen on the device), with the same
   * stop rules as {@linkcode RowDecoder.pick}; null for a finished row.
   */
  take(tokenOf: (b: number) => number): (number | null)[] {
    const s = this.s, emitted: (number | null)[] = [];
    for (let b = 0; b < this.#out.length; b++) {
      if (this.#reason[b]) {
        emitted.push(null);
        continue;
      }
      const tok = tokenOf(b);
      emitted.push(tok);
      this.#seen[b].push(tok);
      this.#out[b].push(tok);
      if (s.eos_token_id.includes(tok)) this.#reason[b] = "eos_token";
      else if (s.stop_strings.length) {
        // HF's StopStringCriteria matches the sequence, prompt included: a stop string may begin in the
        // prompt's last characters and end in a new token; it must end after the prompt
        const head = this.#headText[b];
        let text = decodeText(this.tokenizer!, [...this.#head[b], ...this.#out[b]]);
        let from = head.length;
        if (!text.startsWith(head)) [text, from] = [decodeText(this.tokenizer!, this.#out[b]), 0];
        const at = firstStop(text, s.stop_strings, from);
        if (at >= 0) {
          this.#reason[b] = "stop_sequence";
          this.#cut[b] = text.slice(from, Math.max(from, at));
        }
      }
      if (!this.#reason[b] && this.#out[b].length === s.max_new_tokens) this.#reason[b] = "length";
    }
    return emitted;
  }

  /** True once row `b` has stopped. */
  stopped(b: number): boolean {
    return this.#reason[b] !== null;
  }

  /** True once every row has stopped. */
  get done(): boolean {
    return this.#reason.every((r) => r !== null);
  }

  /** The new tokens, why each row stopped and (with a tokenizer) the text cut before a stop string. */
  result(): GenerateResult {
    const r: GenerateResult = { tokens: this.#out, finish_reason: this.#reason as FinishReason[] };
    if (this.tokenizer) r.text = this.#out.map((o, b) => this.#cut[b] ?? decodeText(this.tokenizer!, o));
    return r;
  }
}

/** Index of the earliest occurrence of any stop string in `text` that ends after index `from`, or -1. */
function firstStop(text: string, stops: string[], from: number): number {
  let at = -1;
  for (const st of stops) {
    const i = text.indexOf(st, Math.max(0, from - st.length + 1));
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/**
 * The generation defaults of `model` (HF's `model.generation_config`): the property when set, else
 * the `generation_config.json` of the folder `loadModel` read it from (read at the first generation
 * and kept on the model, so a broken file stops a generation, never a training run), else none.
 * `generatePredictions` reads it too, for the stop ids it passes.
 */
export async function modelGenerationConfig(model: Transformer): Promise<GenerationConfig | undefined> {
  if (model.generation_config) return model.generation_config;
  const dir = modelSource(model);
  if (dir === undefined) return undefined;
  model.generation_config = await loadGenerationConfig(dir);
  return model.generation_config;
}

/**
 * The settings `generate()` and `beamSearch()` decode `model` with: their options over the model's
 * own generation config ({@linkcode modelGenerationConfig}), as {@linkcode resolveGeneration} merges them.
 */
export async function resolveForModel(
  model: Transformer,
  opts: GenerationConfig & { seed?: number; generation_config?: GenerationConfig; tokenizer?: Tokenizer },
  promptLen: number,
): Promise<ResolvedGeneration> {
  const generation_config = opts.generation_config ?? await modelGenerationConfig(model);
  return resolveGeneration({ ...opts, generation_config }, model.config, {
    promptLen,
    hasTokenizer: !!opts.tokenizer,
  });
}
