import { assert } from "../_assert.ts";
import { pyFixed, pyLen, pyRstrip, pySplit, pyStrip } from "../../evaluation/_python_text.ts";

Deno.test("pyFixed() rounds exact ties to even like Python's format, otherwise like toFixed", () => {
  // Python: f"{0.125:.2f}" == "0.12", f"{0.375:.2f}" == "0.38", f"{2.5:.0f}" == "2", f"{-0.125:.2f}" == "-0.12"
  assert.equal(pyFixed(0.125, 2), "0.12");
  assert.equal(pyFixed(0.375, 2), "0.38");
  assert.equal(pyFixed(2.5, 0), "2");
  assert.equal(pyFixed(3.5, 0), "4");
  assert.equal(pyFixed(-0.125, 2), "-0.12");
  // 0.145 is stored as 0.14499999999999999, not a tie.
  assert.equal(pyFixed(0.145, 2), "0.14");
  assert.equal(pyFixed(1.0005, 3), (1.0005).toFixed(3));
  assert.equal(pyFixed(100, 2), "100.00");
  assert.equal(pyFixed(48.530827140398715, 2), "48.53");
});

Deno.test("pySplit() and pyStrip() use Python's white space, not JavaScript's", () => {
  assert.deepEqual(pySplit(" a\x1cb\x85c\u3000d\ufeffe "), ["a", "b", "c", "d\ufeffe"]);
  assert.deepEqual(pySplit(""), []);
  assert.equal(pyStrip("\x1f\u00a0 x \u2009"), "x");
  assert.equal(pyStrip("\ufeffx"), "\ufeffx");
  assert.equal(pyRstrip(" x \n\t"), " x");
  assert.equal(pyLen("a😀"), 2);
});
