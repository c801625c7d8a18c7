import { assert, assertClose } from "../_assert.ts";
import { perplexity } from "../../evaluation/perplexity.ts";

Deno.test("perplexity() is exp of the mean loss", () => {
  assert.equal(perplexity(0), 1);
  assertClose(perplexity(Math.log(50257)), 50257, { rtol: 1e-12 });
  assertClose(perplexity([1, 2, 3]), Math.exp(2), { rtol: 1e-15 });
  assert.equal(perplexity(1000), Infinity);
});

Deno.test("perplexity() rejects empty, negative and non-finite losses", () => {
  assert.throws(() => perplexity([]), RangeError);
  assert.throws(() => perplexity(-0.1), /loss must be a finite loss >= 0, got -0.1/);
  assert.throws(() => perplexity([1, NaN]), /losses\[1\]/);
  assert.throws(() => perplexity([1, "2" as unknown as number]), TypeError);
  assert.throws(() => perplexity("2" as unknown as number), TypeError);
});
