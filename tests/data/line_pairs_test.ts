import assert from "node:assert/strict";
import { joinLines, splitLinePairs, splitLines } from "../../data/line_pairs.ts";
import { loadTaskData } from "../../data/task_data.ts";

Deno.test("splitLinePairs() makes one pair per line where source and target have as many lines", () => {
  const pairs = splitLinePairs([
    { id: "a", source: "One.\n\nTwo. ", target: "Eins.\nZwei." }, // empty lines do not count
    { id: "b", source: "Three.\nFour.", target: "Drei und vier." }, // 2 lines vs 1: kept whole
    { source: "Five.", target: "Fünf." }, // one line: kept as it is
    { source: "Six.\nSeven.", target: "Sechs.\nSieben." }, // no id: none made up
  ]);
  assert.deepEqual(pairs, [
    { id: "a#1", source: "One.", target: "Eins." },
    { id: "a#2", source: "Two.", target: "Zwei." },
    { id: "b", source: "Three.\nFour.", target: "Drei und vier." },
    { source: "Five.", target: "Fünf." },
    { source: "Six.", target: "Sechs." },
    { source: "Seven.", target: "Sieben." },
  ]);
});

Deno.test("splitLines() and joinLines() translate each non-empty line and put the lines back in place", () => {
  const s = splitLines(["One.\n\nTwo.", "Three.", "\n"]);
  assert.deepEqual(s.segments, ["One.", "Two.", "Three."]);
  assert.deepEqual(s.layout, [[0, -1, 1], [2], [-1, -1]]);
  assert.deepEqual(joinLines(s, ["Eins.", "Zwei.", "Drei."]), ["Eins.\n\nZwei.", "Drei.", "\n"]);
  assert.throws(() => joinLines(s, ["Eins."]), /joinLines: 1 translations for 3 segments/);
});

Deno.test("the Debian translation pairs split into aligned lines (paragraphs)", async () => {
  const d = await loadTaskData("translation");
  const lines = splitLinePairs(d.train);
  const multi = d.train.filter((e) => e.source.includes("\n")).length;
  // nearly every multi-paragraph pair has as many German paragraphs; those split
  const whole = lines.filter((e) => e.source.includes("\n")).length;
  assert.ok(whole < 0.02 * multi, `${whole} of ${multi} multi-line pairs left whole`);
  assert.ok(lines.length > d.train.length + multi, `${lines.length} line pairs`);
});
