import { assert, assertClose, SHARED } from "../_assert.ts";
import {
  bleu,
  type BleuResult,
  bleuTokenize,
  type BleuTokenizerName,
  sentenceBleu,
} from "../../evaluation/bleu.ts";

const DIR = `${SHARED}/fixtures/metrics`;

interface Pair {
  id: string;
  case: string;
  source: string;
  prediction: string;
  reference: string;
}

type Expected = Omit<BleuResult, "signature" | "signature_short" | "formatted"> & Partial<BleuResult>;

function readJsonl<T>(name: string): T[] {
  return Deno.readTextFileSync(`${DIR}/${name}`).trim().split("\n").map((line) => JSON.parse(line) as T);
}

const pairs = readJsonl<Pair>("pairs.jsonl");
const sentences = readJsonl<Expected & { id: string; prediction_tok_13a: string; reference_tok_13a: string }>(
  "sentence_bleu.jsonl",
);
const corpus = JSON.parse(Deno.readTextFileSync(`${DIR}/bleu.json`)) as {
  corpus: Record<
    string,
    Record<string, Expected & { settings: { tokenize: BleuTokenizerName; lowercase: boolean } }>
  >;
  sentence_settings: { signature: string; signature_short: string };
};

/** The README's tolerance: |actual - expected| <= 1e-9 * max(1, |expected|); integers exact. */
function close(actual: number, want: number, msg: string): void {
  assertClose(actual, want, { atol: 1e-9 * Math.max(1, Math.abs(want)), msg });
}

function assertBleu(got: BleuResult, want: Expected, label: string): void {
  close(got.score, want.score, `${label} score`);
  close(got.bp, want.bp, `${label} bp`);
  close(got.ratio, want.ratio, `${label} ratio`);
  assert.equal(got.sys_len, want.sys_len, `${label} sys_len`);
  assert.equal(got.ref_len, want.ref_len, `${label} ref_len`);
  assert.deepEqual(got.counts, want.counts, `${label} counts`);
  assert.deepEqual(got.totals, want.totals, `${label} totals`);
  assert.equal(got.precisions.length, want.precisions.length, `${label} precisions`);
  want.precisions.forEach((p, n) => close(got.precisions[n], p, `${label} precision ${n + 1}`));
  for (const key of ["signature", "signature_short", "formatted"] as const) {
    if (want[key] !== undefined) assert.equal(got[key], want[key], `${label} ${key}`);
  }
}

function group(name: string): Pair[] {
  if (name === "all") return pairs;
  if (name === "synthetic") return pairs.filter((p) => p.source === "synthetic");
  return pairs.filter((p) => p.case.startsWith(name));
}

Deno.test("bleu() matches sacreBLEU 2.6.0 corpus BLEU for every group and variant", () => {
  let checked = 0;
  for (const [name, variants] of Object.entries(corpus.corpus)) {
    const g = group(name);
    for (const [variant, want] of Object.entries(variants)) {
      if (variant === "n_pairs") continue;
      const { tokenize, lowercase } = want.settings;
      const got = bleu(g.map((p) => p.prediction), g.map((p) => p.reference), { tokenize, lowercase });
      assertBleu(got, want, `${name}/${variant}`);
      checked++;
    }
  }
  // 4 groups x (default, lowercase, intl, none, char, zh)
  assert.equal(checked, 24);
});

Deno.test("sentenceBleu() matches sacreBLEU's sentence_bleu on every fixture pair", () => {
  assert.equal(sentences.length, pairs.length);
  for (let i = 0; i < pairs.length; i++) {
    assert.equal(sentences[i].id, pairs[i].id);
    const got = sentenceBleu(pairs[i].prediction, [pairs[i].reference]);
    assertBleu(got, sentences[i], pairs[i].id);
    assert.equal(got.signature, corpus.sentence_settings.signature);
    assert.equal(got.signature_short, corpus.sentence_settings.signature_short);
  }
});

Deno.test("bleuTokenize() matches sacreBLEU's 13a tokens on every fixture text", () => {
  for (let i = 0; i < pairs.length; i++) {
    assert.equal(
      bleuTokenize(pairs[i].prediction),
      sentences[i].prediction_tok_13a,
      `${pairs[i].id} prediction`,
    );
    assert.equal(
      bleuTokenize(pairs[i].reference),
      sentences[i].reference_tok_13a,
      `${pairs[i].id} reference`,
    );
  }
});

// Upstream expectations from sacrebleu's test/test_bleu.py (README example, two reference streams).
const HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."];
const REFS = [
  ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
  ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
];

Deno.test("bleu() handles several reference streams like sacreBLEU's README example", () => {
  const got = bleu(HYPS, REFS);
  assert.ok(Math.abs(got.score - 48.530827) < 1e-6, `score ${got.score}`);
  assert.equal(
    got.formatted,
    "BLEU|#:2|c:mixed|e:no|tok:13a|s:exp|v:2.6.0 = 48.53 82.4/50.0/45.5/37.5 " +
      "(BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)",
  );
  assert.ok(Math.abs(bleu(HYPS, REFS, { tokenize: "none" }).score - 49.1919566) < 1e-6);
  assert.ok(Math.abs(bleu(HYPS, REFS, { tokenize: "intl" }).score - 43.91623493) < 1e-6);
  assert.ok(Math.abs(bleu(HYPS, REFS, { smooth_method: "none" }).score - 48.530827) < 1e-6);
  assert.equal(bleu(["", "", ""], REFS).score, 0);
});

Deno.test("bleu() marks a variable number of references as nrefs:var", () => {
  const got = bleu(HYPS, [REFS[0], [REFS[1][0], null, REFS[1][2]]]);
  assert.equal(got.signature, "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
});

Deno.test("sentenceBleu() smoothing and tokenizers match sacreBLEU's test_sentence_bleu.py", () => {
  const ref = "producţia de zahăr brut se exprimă în zahăr alb;";
  const sys = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;";
  const cases: [Parameters<typeof sentenceBleu>[2], number][] = [
    [{ smooth_method: "exp" }, 8.493],
    [{ smooth_method: "none" }, 0],
    [{ smooth_method: "floor" }, 4.51688],
    [{ smooth_method: "floor", smooth_value: 0.1 }, 4.51688],
    [{ smooth_method: "floor", smooth_value: 0.5 }, 10.10],
    [{ smooth_method: "add-k" }, 14.882],
    [{ smooth_method: "add-k", smooth_value: 1 }, 14.882],
    [{ smooth_method: "add-k", smooth_value: 2 }, 21.389],
    [{ tokenize: "none" }, 7.347],
    [{ tokenize: "intl" }, 8.493],
    [{ tokenize: "char" }, 40.8759],
    [{ tokenize: "char", lowercase: true }, 42.0267],
  ];
  for (const [options, want] of cases) {
    const got = sentenceBleu(sys, [ref], options).score;
    assert.ok(Math.abs(got - want) < 1e-3, `${JSON.stringify(options)}: ${got} != ${want}`);
  }
  for (const smooth_method of ["exp", "none", "floor", "add-k"] as const) {
    assert.equal(sentenceBleu("this is a cat", "okay thanks", { smooth_method }).score, 0);
  }
  assert.equal(
    sentenceBleu(sys, ref, { smooth_method: "floor" }).signature,
    "nrefs:1|case:mixed|eff:yes|tok:13a|smooth:floor[0.10]|version:2.6.0",
  );
  assert.equal(
    sentenceBleu(sys, ref, { smooth_method: "add-k", smooth_value: 2 }).signature_short,
    "#:1|c:mixed|e:yes|tok:13a|s:add-k[2.00]|v:2.6.0",
  );
});

Deno.test("bleu() counts include k for orders above 1 under add-k, as sacreBLEU reports them", () => {
  const got = sentenceBleu("a b c", "a b d", { smooth_method: "add-k" });
  // k is added before the zero-total check, so even the empty 4-gram order gets 1/1.
  assert.deepEqual(got.counts, [2, 1 + 1, 0 + 1, 0 + 1]);
  assert.deepEqual(got.totals, [3, 2 + 1, 1 + 1, 0 + 1]);
});

Deno.test("bleu() rejects mismatched lengths, non-strings, empty input and bad options", () => {
  assert.throws(() => bleu(["a", "b"], ["a"]), /hypotheses has 2 entries but references has 1/);
  assert.throws(() => bleu(["a"], [["a"], ["b", "c"]]), /hypotheses has 1 entries but references\[1\] has 2/);
  // HF evaluate's layout (a list of references per hypothesis): the way out is named
  assert.throws(
    () => bleu(["a b", "c d"], [["a b", "a c", "b c"], ["c d", "d c", "c"]]),
    /references\[0\] has 3; references\[k\] is the k-th reference stream \(sacreBLEU's layout\): .*transpose it/,
  );
  assert.throws(() => bleu(["a", 1 as unknown as string], ["a", "b"]), /hypotheses\[1\] must be a string/);
  assert.throws(() => bleu(["a", "b"], ["a", 2 as unknown as string]), /references\[1\] must be a string/);
  assert.throws(() => bleu(["a"], [[null]]), /segment 0 has no reference/);
  assert.throws(() => bleu([], []), RangeError);
  assert.throws(
    () => bleu(["a"], ["a"], { tokenize: "moses" as BleuTokenizerName }),
    /unknown tokenize "moses"/,
  );
  assert.throws(() => bleu(["a"], ["a"], { smooth_method: "lin" as "exp" }), RangeError);
  assert.throws(() => bleu(["a"], ["a"], { max_ngram_order: 0 }), /max_ngram_order must be an integer >= 1/);
  assert.throws(
    () => bleu(["a"], ["A"], { lowercase: "false" as never }),
    /lowercase must be true or false, got "false"/,
  );
  assert.throws(() => sentenceBleu(3 as unknown as string, "a"), TypeError);
  assert.throws(() => sentenceBleu("a", []), RangeError);
});
