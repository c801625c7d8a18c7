import { assert, assertClose, SHARED } from "../_assert.ts";
import { computeRougeScores, rougeScore, type RougeScores, type RougeType } from "../../evaluation/rouge.ts";

const DIR = `${SHARED}/fixtures/metrics`;
const TYPES: RougeType[] = ["rouge1", "rouge2", "rougeL", "rougeLsum"];
const MEASURES = ["precision", "recall", "fmeasure"] as const;
type Mode = "no_stemmer" | "stemmer";

interface Pair {
  id: string;
  case: string;
  source: string;
  prediction: string;
  reference: string;
}

function readJsonl<T>(name: string): T[] {
  return Deno.readTextFileSync(`${DIR}/${name}`).trim().split("\n").map((line) => JSON.parse(line) as T);
}

const pairs = readJsonl<Pair>("pairs.jsonl");
const expected = readJsonl<{ id: string } & Record<Mode, RougeScores>>("rouge.jsonl");
const means = JSON.parse(Deno.readTextFileSync(`${DIR}/rouge_mean.json`)) as {
  means: Record<string, { n_pairs: number } & Record<Mode, RougeScores>>;
};

/** The README's tolerance: |actual - expected| <= 1e-9 * max(1, |expected|). */
function close(actual: number, want: number, msg: string): void {
  assertClose(actual, want, { atol: 1e-9 * Math.max(1, Math.abs(want)), msg });
}

function assertScores(actual: RougeScores, want: RougeScores, label: string): void {
  for (const type of TYPES) {
    for (const m of MEASURES) close(actual[type]![m], want[type]![m], `${label} ${type}.${m}`);
  }
}

function group(name: string): Pair[] {
  if (name === "all") return pairs;
  if (name === "synthetic") return pairs.filter((p) => p.source === "synthetic");
  return pairs.filter((p) => p.case.startsWith(name));
}

for (const mode of ["no_stemmer", "stemmer"] as const) {
  const how = mode === "stemmer" ? "with stemming" : "without stemming";
  Deno.test(`rougeScore() matches rouge_score on every fixture pair ${how}`, () => {
    assert.equal(pairs.length, expected.length);
    for (let i = 0; i < pairs.length; i++) {
      assert.equal(pairs[i].id, expected[i].id);
      const got = rougeScore(pairs[i].prediction, pairs[i].reference, { use_stemmer: mode === "stemmer" });
      assertScores(got, expected[i][mode], `${pairs[i].id} ${mode}`);
    }
  });

  Deno.test(`computeRougeScores() means match rouge_mean.json for every group ${how}`, () => {
    for (const [name, want] of Object.entries(means.means)) {
      const g = group(name);
      assert.equal(g.length, want.n_pairs, `${name}: group size`);
      const { scores, mean } = computeRougeScores(g.map((p) => p.prediction), g.map((p) => p.reference), {
        use_stemmer: mode === "stemmer",
      });
      assert.equal(scores.length, g.length);
      assertScores(mean, want[mode], `${name} mean ${mode}`);
    }
  });
}

Deno.test("rougeScore() computes only the requested types", () => {
  const got = rougeScore("a b c d", "a b d c", { rouge_types: ["rouge3", "rougeL"] });
  assert.deepEqual(Object.keys(got), ["rouge3", "rougeL"]);
  assert.equal(got.rouge3!.precision, 0);
  assert.equal(got.rougeL!.recall, 3 / 4);
});

Deno.test("rougeScore() gives zeros, not NaN, when a side has no tokens", () => {
  for (const [p, r] of [["", "some words"], ["some words", ""], ["", ""], ["!!!", "???"]]) {
    const got = rougeScore(p, r);
    for (const type of TYPES) assert.deepEqual(got[type], { precision: 0, recall: 0, fmeasure: 0 });
  }
});

Deno.test("computeRougeScores() rejects mismatched lengths, non-strings and unknown types", () => {
  assert.throws(
    () => computeRougeScores(["a", "b"], ["a"]),
    /predictions has 2 entries but references has 1/,
  );
  assert.throws(() => computeRougeScores(["a", "b"], ["a"]), RangeError);
  assert.throws(
    () => computeRougeScores(["a", 3 as unknown as string], ["a", "b"]),
    /predictions\[1\] must be a string/,
  );
  assert.throws(() => computeRougeScores("a" as unknown as string[], ["a"]), TypeError);
  assert.throws(() => computeRougeScores([], []), RangeError);
  // a YAML or CLI "false" is truthy: it once stemmed
  for (
    const f of [
      () => rougeScore("a", "a", { use_stemmer: "false" as never }),
      () => computeRougeScores(["a"], ["a"], { use_stemmer: "false" as never }),
    ]
  ) {
    assert.throws(f, { name: "TypeError", message: /use_stemmer must be true or false, got "false"/ });
  }
  assert.throws(
    () => rougeScore("a", "a", { rouge_types: ["rouge0" as RougeType] }),
    /unknown rouge type "rouge0"/,
  );
  assert.throws(() => rougeScore("a", null as unknown as string), /reference must be a string/);
});
