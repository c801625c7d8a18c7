import { assert, assertClose, SHARED } from "../_assert.ts";
import { chrf, type ChrfOptions, type ChrfResult, sentenceChrf } from "../../evaluation/chrf.ts";

const DIR = `${SHARED}/fixtures/metrics`;
const VARIANTS: Record<"chrF2" | "chrF2++", ChrfOptions> = { "chrF2": {}, "chrF2++": { word_order: 2 } };

interface Pair {
  id: string;
  case: string;
  source: string;
  prediction: string;
  reference: string;
}

type Expected = Pick<ChrfResult, "score" | "stats"> & Partial<ChrfResult>;

const pairs = Deno.readTextFileSync(`${DIR}/pairs.jsonl`).trim().split("\n").map((l) =>
  JSON.parse(l) as Pair
);
const fixture = JSON.parse(Deno.readTextFileSync(`${DIR}/chrf.json`)) as {
  corpus: Record<string, Record<string, Expected>>;
  sentence: ({ id: string } & Record<keyof typeof VARIANTS, Expected>)[];
};

/** The README's tolerance: |actual - expected| <= 1e-9 * max(1, |expected|); integers exact. */
function assertChrf(got: ChrfResult, want: Expected, label: string): void {
  assertClose(got.score, want.score, {
    atol: 1e-9 * Math.max(1, Math.abs(want.score)),
    msg: `${label} score`,
  });
  assert.deepEqual(got.stats, want.stats, `${label} stats`);
  for (const key of ["name", "signature", "signature_short", "formatted"] as const) {
    if (want[key] !== undefined) assert.equal(got[key], want[key], `${label} ${key}`);
  }
}

function group(name: string): Pair[] {
  if (name === "all") return pairs;
  if (name === "synthetic") return pairs.filter((p) => p.source === "synthetic");
  return pairs.filter((p) => p.case.startsWith(name));
}

Deno.test("chrf() matches sacreBLEU 2.6.0 corpus chrF2 and chrF2++ for every group", () => {
  let checked = 0;
  for (const [name, variants] of Object.entries(fixture.corpus)) {
    const g = group(name);
    for (const [variant, options] of Object.entries(VARIANTS)) {
      const got = chrf(g.map((p) => p.prediction), g.map((p) => p.reference), options);
      assertChrf(got, variants[variant], `${name}/${variant}`);
      checked++;
    }
  }
  assert.equal(checked, 8);
});

Deno.test("sentenceChrf() matches sacreBLEU's sentence chrF2 and chrF2++ on every fixture pair", () => {
  assert.equal(fixture.sentence.length, pairs.length);
  for (let i = 0; i < pairs.length; i++) {
    assert.equal(fixture.sentence[i].id, pairs[i].id);
    for (const [variant, options] of Object.entries(VARIANTS) as [keyof typeof VARIANTS, ChrfOptions][]) {
      const got = sentenceChrf(pairs[i].prediction, [pairs[i].reference], options);
      assertChrf(got, fixture.sentence[i][variant], `${pairs[i].id} ${variant}`);
    }
  }
});

// Upstream expectations from sacrebleu's test/test_chrf.py (tolerance 1e-4 there).
Deno.test("chrf() epsilon smoothing, effective order and white space match sacreBLEU's test_chrf.py", () => {
  const near = (got: number, want: number, what: string) =>
    assert.ok(Math.abs(got - want) < 1e-4, `${what}: ${got} != ${want}`);
  const eps: [string[], string[], number][] = [
    [["abcdefg"], ["hijklmnop"], 0],
    [["a"], ["b"], 0],
    [[""], ["b"], 0],
    [[""], ["reference"], 0],
    [["aa"], ["ab"], 8.3333],
    [["a", "b"], ["a", "c"], 8.3333],
    [["a"], ["a"], 16.6667],
    [["a b c"], ["a b c"], 50],
    [["a b c"], ["abc"], 50],
    [
      [" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."],
      ["risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."],
      63.361730,
    ],
    [
      [" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "],
      ["Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."],
      64.1302698,
    ],
  ];
  for (const [h, r, want] of eps) near(chrf(h, r, { beta: 3, eps_smoothing: true }).score, want, `eps ${h}`);
  const eff: [string[], string[], number][] = [
    [["a"], ["a"], 100],
    [[""], ["reference"], 0],
    [["a b c"], ["abc"], 100],
    [["a", "b"], ["a", "c"], 50],
    [["aa"], ["ab"], 25],
  ];
  for (const [h, r, want] of eff) near(chrf(h, r, { beta: 3 }).score, want, `eff ${h}`);
  near(
    chrf(["Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."], [
      "Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.",
    ], { beta: 3, whitespace: true }).score,
    67.3481606,
    "whitespace",
  );
  near(
    sentenceChrf("Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.", [
      "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.",
    ], { eps_smoothing: true }).score,
    57.15704367,
    "sentence eps",
  );
  assert.equal(
    chrf(["a"], ["a"], { eps_smoothing: true }).signature_short,
    "#:1|c:mixed|e:no|nc:6|nw:0|s:no|v:2.6.0",
  );
});

Deno.test("sentenceChrf() picks the reference with the best F-score", () => {
  const one = sentenceChrf("the cat sat", "the cat sat");
  const two = sentenceChrf("the cat sat", ["a dog ran", "the cat sat"]);
  assert.equal(two.score, 100);
  assert.deepEqual(two.stats, one.stats);
  assert.equal(two.signature, "nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0");
});

Deno.test("chrf() rejects mismatched lengths, non-strings, empty input and bad orders", () => {
  assert.throws(() => chrf(["a", "b"], ["a"]), /hypotheses has 2 entries but references has 1/);
  assert.throws(() => chrf(["a", null as unknown as string], ["a", "b"]), /hypotheses\[1\] must be a string/);
  assert.throws(() => chrf([], []), RangeError);
  assert.throws(() => chrf(["a"], ["a"], { char_order: 0, word_order: 0 }), RangeError);
  assert.throws(() => chrf(["a"], ["a"], { char_order: 1.5 }), /char_order must be an integer/);
  assert.throws(() => chrf(["a"], ["A"], { lowercase: "false" as never }), { // once lowercased: 100
    name: "TypeError",
    message: /chrF.*: lowercase must be true or false, got "false"/,
  });
  assert.throws(() => sentenceChrf("a", 5 as unknown as string), TypeError);
});
