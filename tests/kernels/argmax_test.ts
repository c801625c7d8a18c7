import assert from "node:assert/strict";
import { argmaxRows, argmaxRowsReference } from "../../kernels/argmax.ts";
import { randomArray } from "../_assert.ts";
import { backends } from "../_check.ts";

Deno.test("argmaxRows() picks each row's largest element, the first on ties, on every backend", async () => {
  // rows shorter and longer than the workgroup, vocabulary sizes, ties planted across invocations
  for (const [R, C] of [[1, 1], [3, 5], [7, 255], [4, 256], [5, 4096], [2, 50257]]) {
    const x = randomArray(R * C, R * 1000 + C, 4);
    if (C > 300) {
      x[1 * C + 3] = 100; // a tie in row 1: index 3 (invocation 3) and C - 1 (another invocation)
      x[1 * C + C - 1] = 100;
    }
    x[0] = -Infinity; // row 0 starts with -inf
    const want = new Int32Array(R);
    argmaxRowsReference(want, x, R, C);
    if (C > 300) assert.equal(want[1], 3);
    for (const be of await backends()) {
      const got = await argmaxRows(be.fromArray(x, [R, C])).toArray();
      assert.deepEqual([...got], [...want], `${be.name} [${R}, ${C}]`);
    }
  }
  for (const be of await backends()) {
    const allEqual = await argmaxRows(be.fromArray(new Float32Array(600).fill(-Infinity), [2, 300]))
      .toArray();
    assert.deepEqual([...allEqual], [0, 0], `${be.name}: a row of -inf gives 0, as a scan does`);
    assert.throws(() => argmaxRows(be.fromArray([1, 2], [2])), /Cannot run argmaxRows: x \[2\]/);
  }
});
