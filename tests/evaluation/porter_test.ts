import { assert, SHARED } from "../_assert.ts";
import { porterStem } from "../../evaluation/porter.ts";
import { rougeTokenize } from "../../evaluation/rouge.ts";

const DIR = `${SHARED}/fixtures/metrics`;

interface RougeRow {
  id: string;
  tokens: Record<"no_stemmer" | "stemmer", Record<"prediction" | "reference", string[]>>;
}

function readJsonl<T>(name: string): T[] {
  return Deno.readTextFileSync(`${DIR}/${name}`).trim().split("\n").map((line) => JSON.parse(line) as T);
}

Deno.test("porterStem() reproduces NLTK 3.8 on every fixture token", () => {
  const rows = readJsonl<RougeRow>("rouge.jsonl");
  let checked = 0;
  for (const row of rows) {
    for (const side of ["prediction", "reference"] as const) {
      const plain = row.tokens.no_stemmer[side];
      const stemmed = row.tokens.stemmer[side];
      assert.equal(plain.length, stemmed.length, `${row.id} ${side}: token counts differ`);
      for (let i = 0; i < plain.length; i++) {
        // rouge_score stems only tokens longer than three characters.
        const expected = stemmed[i];
        const actual = plain[i].length > 3 ? porterStem(plain[i]) : plain[i];
        assert.equal(actual, expected, `${row.id} ${side}[${i}]: stem(${plain[i]})`);
        checked++;
      }
    }
  }
  assert.ok(checked > 5000, `only ${checked} tokens checked`);
});

Deno.test("porterStem() follows the NLTK extensions on textbook words", () => {
  const cases: Record<string, string> = {
    caresses: "caress",
    ponies: "poni",
    ties: "tie",
    dies: "die",
    cats: "cat",
    feed: "feed",
    agreed: "agre",
    spied: "spi",
    died: "die",
    disabled: "disabl",
    matting: "mat",
    mating: "mate",
    meeting: "meet",
    milling: "mill",
    messing: "mess",
    meetings: "meet",
    happy: "happi",
    enjoy: "enjoy",
    sky: "sky",
    skies: "sky",
    dying: "die",
    news: "news",
    innings: "inning",
    proceed: "proceed",
    relational: "relat",
    conditional: "condit",
    generously: "gener",
    radically: "radic",
    hopefully: "hope",
    geology: "geolog",
    electrical: "electr",
    controlling: "control",
    roll: "roll",
    is: "is",
    Running: "run",
  };
  for (const [word, stem] of Object.entries(cases)) assert.equal(porterStem(word), stem, word);
});

Deno.test("porterStem() rejects non-strings with a TypeError", () => {
  assert.throws(() => porterStem(42 as unknown as string), TypeError);
});

Deno.test("rougeTokenize() matches rouge_score's tokens on every fixture text", () => {
  const pairs = readJsonl<{ id: string; prediction: string; reference: string }>("pairs.jsonl");
  const rows = readJsonl<RougeRow>("rouge.jsonl");
  for (let i = 0; i < pairs.length; i++) {
    for (const mode of ["no_stemmer", "stemmer"] as const) {
      const use_stemmer = mode === "stemmer";
      assert.deepEqual(rougeTokenize(pairs[i].prediction, { use_stemmer }), rows[i].tokens[mode].prediction);
      assert.deepEqual(rougeTokenize(pairs[i].reference, { use_stemmer }), rows[i].tokens[mode].reference);
    }
  }
});
