/**
 * Perplexity from cross-entropy losses: `exp(mean loss)`, with losses in nats per token.
 * @module
 */

import { describe } from "./_validate.ts";

/**
 * Perplexity `exp(mean(losses))`, from either one mean loss or a list of per-token (or
 * per-batch, equally weighted) losses in nats.
 *
 * @param loss A mean cross-entropy loss, or the losses to average first.
 * @returns The perplexity (1 for a loss of 0; `Infinity` when the mean loss overflows `exp`).
 * @throws {TypeError} When `loss` is not a number or an array of numbers.
 * @throws {RangeError} When the list is empty or a loss is negative or not finite.
 * @example
 * ```ts
 * import { perplexity } from "./perplexity.ts";
 * import assert from "node:assert/strict";
 * assert.equal(perplexity(0), 1);
 * assert.equal(perplexity([Math.log(2), Math.log(8)]), 4);
 * ```
 */
export function perplexity(loss: number | readonly number[]): number {
  const losses = typeof loss === "number" ? [loss] : loss;
  if (!Array.isArray(losses)) {
    throw new TypeError(
      `Cannot compute perplexity: loss must be a number or an array of numbers, got ${describe(loss)}`,
    );
  }
  if (losses.length === 0) throw new RangeError("Cannot compute perplexity: losses is empty");
  let sum = 0;
  for (let i = 0; i < losses.length; i++) {
    const l = losses[i];
    if (typeof l !== "number") {
      throw new TypeError(`Cannot compute perplexity: losses[${i}] must be a number, got ${describe(l)}`);
    }
    if (!Number.isFinite(l) || l < 0) {
      const where = typeof loss === "number" ? "loss" : `losses[${i}]`;
      throw new RangeError(`Cannot compute perplexity: ${where} must be a finite loss >= 0, got ${l}`);
    }
    sum += l;
  }
  return Math.exp(sum / losses.length);
}
