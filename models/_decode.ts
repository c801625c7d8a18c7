/**
 * What the decode loops of `generate.ts` (greedy, sampling) and `beam_search.ts` share: prompt
 * validation, HF's left padding, the last-position logits and decoding to text.
 *
 * @module
 */
import { embedding } from "../kernels/embedding.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { Problems, show } from "../util/problems.ts";
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
  let h = model.hidden(ids, opts); // [B*T, C]
  if (T > 1) {
    const rows = model.backend.fromArray(Array.from({ length: B }, (_, b) => b * T + T - 1), [B], "i32");
    const last = embedding(rows, h); // [B, C]: only the last position of each row goes through the head
    rows.dispose();
    h.dispose();
    h = last;
  }
  return model.head(h);
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
