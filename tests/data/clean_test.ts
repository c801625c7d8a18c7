import { assert, rng, SHARED } from "../_assert.ts";
import {
  cleanPipelineFromYaml,
  detectLanguage,
  exactDedup,
  languageFilter,
  lengthFilter,
  nearDedup,
  repetitionFilter,
  runCleanPipeline,
  validateCleanSteps,
} from "../../data/clean.ts";
import {
  estimateJaccard,
  jaccard,
  lshParams,
  minhashFamily,
  minhashSignature,
  shingleSet,
} from "../../data/minhash.ts";

const DEBIAN = `${SHARED}/datasets/debian/summarization/train.jsonl`;

function throwsMessage(fn: () => unknown): { error: Error; message: string } {
  try {
    fn();
  } catch (e) {
    return { error: e as Error, message: (e as Error).message };
  }
  throw new assert.AssertionError({ message: "expected a throw" });
}

Deno.test("lengthFilter() drops by document words and strips paragraphs out of range", () => {
  const recs = [
    { id: 1, text: "one two three four five" },
    { id: 2, text: "one" },
    { id: 3, text: Array(50).fill("w").join(" ") },
  ];
  const r = lengthFilter(recs, { min_words: 2, max_words: 10, return_dropped: true });
  assert.deepEqual(r.kept.map((x) => x.id), [1]);
  assert.deepEqual(r.dropped, { too_few_words: 1, too_many_words: 1 });
  assert.deepEqual(r.dropped_records!.map((d) => [d.index, d.reason]), [[1, "too_few_words"], [
    2,
    "too_many_words",
  ]]);

  const doc = {
    text:
      "Short.\n\nThis paragraph has enough words to stay.\n\nTiny one\n\nAnother paragraph that is long enough.",
  };
  const p = lengthFilter([doc], { min_paragraph_words: 3 });
  assert.equal(
    p.kept[0].text,
    "This paragraph has enough words to stay.\n\nAnother paragraph that is long enough.",
  );
  assert.ok(doc.text.startsWith("Short."), "input record not mutated");
  const lines = lengthFilter([{ text: "a b c\nd\ne f g" }], {
    min_paragraph_words: 2,
    paragraph_split: "line",
  });
  assert.equal(lines.kept[0].text, "a b c\ne f g");
  const none = lengthFilter([{ text: "a\n\nb" }], { min_paragraph_words: 2 });
  assert.deepEqual(none.dropped, { no_paragraph_in_range: 1 });
  const body = lengthFilter([{ body: "x y" }], { field: "body", min_words: 3 });
  assert.deepEqual(body.dropped, { too_few_words: 1 });
});

Deno.test("filters reject records without a text field and bad options, naming them", () => {
  const { error, message } = throwsMessage(() => lengthFilter([{ text: "a" }, { body: "b" }]));
  assert.ok(error instanceof TypeError);
  assert.match(message, /record 1 field "text" is missing/);
  const bad = throwsMessage(() => lengthFilter([], { min_words: 5, max_words: 2 }));
  assert.ok(bad.error instanceof RangeError, bad.message);
  assert.match(bad.message, /min_words 5 > max_words 2/);
  const split = throwsMessage(() => lengthFilter([{ text: "a" }], { paragraph_split: "line" }));
  assert.ok(split.error instanceof TypeError, split.message);
  assert.match(split.message, /paragraph_split says how min_paragraph_words .* and neither is set/);
  const none = throwsMessage(() => languageFilter([{ text: "a" }], { languages: [] }));
  assert.ok(none.error instanceof RangeError, none.message);
  assert.match(none.message, /languages: \[\] keeps nothing; list at least one of en, de/);
  const unknown = throwsMessage(() => nearDedup([], { thresh: 0.5 } as never));
  assert.ok(unknown.error instanceof SyntaxError);
  assert.match(unknown.message, /unknown key "thresh"; allowed: threshold, num_perm/);
});

Deno.test("repetitionFilter() flags Gopher repetition and keeps ordinary prose", () => {
  const prose =
    "The package manager installs software. It resolves dependencies between packages, downloads " +
    "archives from mirrors and verifies their signatures before unpacking them onto the system.";
  const cases: [string, string][] = [
    [Array(6).fill("click here to subscribe").join("\n") + "\nunique closing line", "dup_line_frac"],
    [
      ["Intro paragraph here.", "Same paragraph.", "Same paragraph.", "Same paragraph."].join("\n\n"),
      "dup_para_frac",
    ],
    ["the cat the cat the cat sat on a mat and the cat the cat ran off", "top_2_gram"],
    [
      "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma " +
      "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma " +
      "and then some unrelated words follow here so that no single short phrase dominates the text at all, " +
      "while a final clause keeps the repeated block well visible",
      "duplicated_5_n_grams",
    ],
  ];
  for (const [text, reason] of cases) {
    const r = repetitionFilter([{ text }]);
    assert.deepEqual(r.dropped, { [reason]: 1 }, `text ${JSON.stringify(text.slice(0, 40))}`);
  }
  assert.equal(repetitionFilter([{ text: prose }]).kept.length, 1);
  // A threshold can be relaxed per key; a map option replaces Gopher's whole map.
  const relaxed = { dup_line_frac: 0.9, dup_line_char_frac: 0.9, top_n_grams: {}, dup_n_grams: {} };
  assert.equal(repetitionFilter([{ text: cases[0][0] }], relaxed).kept.length, 1);
});

Deno.test("exactDedup() matches case- and whitespace-insensitively and keeps the first", () => {
  const r = exactDedup([
    { text: "Hello   World" },
    { text: "other" },
    { text: "hello world\n" },
    { text: "hello, world" },
  ], { return_dropped: true });
  assert.deepEqual(r.kept.map((x) => x.text), ["Hello   World", "other", "hello, world"]);
  assert.deepEqual(r.dropped, { exact_duplicate: 1 });
  assert.equal(r.dropped_records![0].index, 2);
  assert.equal(r.dropped_records![0].duplicate_of, 0);
});

Deno.test("lshParams() reproduces datasketch's optimal bands x rows", () => {
  // datasketch MinHashLSH(threshold=0.8, num_perm=128) has 9 bands of 13 rows (its hashranges, as
  // printed in ekzhu/datasketch issue #209). For other thresholds check
  // what follows from the definition: b * r <= num_perm and the S-curve crosses near the threshold.
  const p = lshParams(0.8, 128);
  assert.deepEqual(p, { bands: 9, rows: 13 });
  for (const t of [0.5, 0.7, 0.9]) {
    const { bands, rows } = lshParams(t, 128);
    assert.ok(bands * rows <= 128);
    const pAt = (s: number) => 1 - (1 - s ** rows) ** bands;
    assert.ok(pAt(t - 0.15) < 0.5 && pAt(Math.min(t + 0.1, 1)) > 0.5, `threshold ${t}: b ${bands} r ${rows}`);
  }
  assert.deepEqual(lshParams(0.8, 128, { false_positive_weight: 0.05, false_negative_weight: 0.95 }), {
    bands: 16,
    rows: 8,
  });
});

Deno.test("minhashSignature() estimates Jaccard without bias", () => {
  const family = minhashFamily(256, 3);
  const r = rng(11);
  let sumErr = 0, sumAbs = 0;
  const trials = 60;
  for (let t = 0; t < trials; t++) {
    const common = 50 + Math.floor(r() * 100), onlyA = Math.floor(r() * 100), onlyB = Math.floor(r() * 100);
    const base = t * 1e6;
    const a = Float64Array.from({ length: common + onlyA }, (_, i) => base + i * 7919);
    const b = Float64Array.from(
      { length: common + onlyB },
      (_, i) => base + (i < common ? i : i + onlyA) * 7919,
    );
    const truth = common / (common + onlyA + onlyB);
    assert.equal(jaccard(a, b), truth);
    const est = estimateJaccard(minhashSignature(a, family), minhashSignature(b, family));
    sumErr += est - truth;
    sumAbs += Math.abs(est - truth);
  }
  // sd of one estimate <= sqrt(0.25 / 256) = 0.031; mean of 60 has sd 0.004.
  assert.ok(Math.abs(sumErr / trials) < 0.015, `bias ${sumErr / trials}`);
  assert.ok(sumAbs / trials < 0.035, `mean abs error ${sumAbs / trials}`);
});

Deno.test("nearDedup() drops near copies, keeps the first of each cluster and empty texts", () => {
  const a = "debian is a free operating system developed by volunteers around the world since the year " +
    "nineteen ninety three and it ships tens of thousands of packages for many hardware architectures";
  const b = a.replace("volunteers", "people");
  const c = b.replace("hardware architectures", "kinds of computers").replace("free", "libre");
  const jab = jaccard(shingleSet(a), shingleSet(b)), jbc = jaccard(shingleSet(b), shingleSet(c));
  const jac = jaccard(shingleSet(a), shingleSet(c));
  assert.ok(jab >= 0.55 && jbc >= 0.55 && jac < 0.55, `J(a,b) ${jab}, J(b,c) ${jbc}, J(a,c) ${jac}`);
  // shingle_size 0 once made every text one shingle (J = 1 for unrelated texts)
  assert.throws(() => shingleSet(a, { shingle_size: 0 }), {
    name: "RangeError",
    message: /shingle_size 0 is not an integer >= 1/,
  });
  const other = "completely different words in here";
  const r = nearDedup([{ text: a }, { text: "" }, { text: b }, { text: other }, { text: c }], {
    threshold: 0.55,
    return_dropped: true,
  });
  assert.deepEqual(r.kept.map((x) => x.text), [a, "", other]);
  assert.deepEqual(
    r.dropped_records!.map((d) => [d.index, d.duplicate_of]),
    [[2, 0], [4, 0]],
    "c joins a's cluster via b",
  );
  const loose = nearDedup([{ text: a }, { text: c }], { threshold: 0.55 });
  assert.equal(loose.kept.length, 2, "a and c alone are distinct");
  const unverified = nearDedup([{ text: a }, { text: b }], { threshold: 0.55, verify: false });
  assert.equal(unverified.kept.length, 1);
});

Deno.test("detectLanguage() and languageFilter() tell en, de, fr, es and scripts apart", () => {
  const texts: [string, string][] = [
    ["This library provides the functions that are used by the tools of the system.", "en"],
    [
      "Diese Bibliothek stellt die Funktionen bereit, die von den Werkzeugen des Systems genutzt werden.",
      "de",
    ],
    ["Cette bibliothèque fournit les fonctions qui sont utilisées par les outils du système.", "fr"],
    ["Esta biblioteca proporciona las funciones que son usadas por las herramientas del sistema.", "es"],
    ["Эта библиотека предоставляет функции, используемые инструментами системы.", "ru"],
    ["このライブラリはシステムのツールが使う関数を提供します。", "ja"],
    ["这个库提供系统工具使用的函数。", "zh"],
    ["libfoo0 libbar-dev 1.2.3", "und"],
  ];
  for (const [text, lang] of texts) assert.equal(detectLanguage(text).language, lang, text);
  const r = languageFilter(texts.map(([text]) => ({ text })), { languages: ["en", "de"] });
  assert.equal(r.kept.length, 2);
  assert.equal(r.dropped.language_fr, 1);
  assert.equal(r.dropped.language_und, 1);
});

Deno.test("cleanPipelineFromYaml() validates step names, keys and values with the step index", () => {
  const steps = cleanPipelineFromYaml(
    "- exact_dedup: {}\n- near_dedup: {threshold: 0.8, num_perm: 128}\n- length: {min_words: 5}\n- repetition:\n",
  );
  assert.deepEqual(steps, [
    { exact_dedup: {} },
    { near_dedup: { threshold: 0.8, num_perm: 128 } },
    { length: { min_words: 5 } },
    { repetition: {} },
  ]);
  const unknownStep = throwsMessage(() =>
    cleanPipelineFromYaml("- exact_dedup: {}\n- dedupe: {}\n", { file: "clean.yaml" })
  );
  assert.ok(unknownStep.error instanceof SyntaxError);
  assert.match(
    unknownStep.message,
    /clean\.yaml: steps\[1\]: unknown step "dedupe"; allowed: length, repetition, exact_dedup/,
  );
  const unknownKey = throwsMessage(() =>
    cleanPipelineFromYaml("- near_dedup: {treshold: 0.8}\n- length: {min_words: -1}\n")
  );
  assert.match(
    unknownKey.message,
    /steps\[0\]\.near_dedup: unknown key "treshold"; allowed: threshold, num_perm/,
  );
  assert.match(unknownKey.message, /steps\[1\]\.length\.min_words: -1 is below 0/, "every problem at once");
  const range = throwsMessage(() => validateCleanSteps([{ near_dedup: { threshold: 1.5 } }]));
  assert.ok(range.error instanceof RangeError);
  const yamlError = throwsMessage(() => cleanPipelineFromYaml("- a: [\n", { file: "x.yaml" }));
  assert.ok(yamlError.error instanceof SyntaxError && yamlError.message.includes("x.yaml"));
  assert.throws(() => cleanPipelineFromYaml("near_dedup: {}"), /not a list/);
});

Deno.test("runCleanPipeline() chains steps and maps dropped records to input indices", () => {
  const recs = ["a b c d e f", "A  B C D E F", "tiny", "g h i j k l m", "g h i j k l m"].map((text, id) => ({
    id,
    text,
  }));
  const r = runCleanPipeline(recs, cleanPipelineFromYaml("- length: {min_words: 2}\n- exact_dedup: {}\n"), {
    return_dropped: true,
  });
  assert.deepEqual(r.kept.map((x) => x.id), [0, 3]);
  assert.deepEqual(r.dropped, { too_few_words: 1, exact_duplicate: 2 });
  assert.deepEqual(r.dropped_records!.map((d) => [d.index, d.step, d.duplicate_of]), [
    [2, 0, undefined],
    [1, 1, 0],
    [4, 1, 3],
  ]);
  assert.deepEqual(r.steps.map((s) => [s.name, s.kept]), [["length", 4], ["exact_dedup", 2]]);
});

Deno.test("repetition, language and length filters keep nearly all Debian descriptions", () => {
  const docs = Deno.readTextFileSync(DEBIAN).split("\n").filter((l) => l.trim()).slice(0, 3000)
    .map((l) => ({ document: JSON.parse(l).document as string }));
  const rep = repetitionFilter(docs, { field: "document" });
  const lang = languageFilter(docs, { field: "document", languages: ["en"] });
  const len = lengthFilter(docs, { field: "document", min_words: 5 });
  const share = (n: number) => (n / docs.length).toFixed(4);
  console.log(
    `Debian ${docs.length}: repetition keeps ${share(rep.kept.length)} ${JSON.stringify(rep.dropped)}; ` +
      `language en keeps ${share(lang.kept.length)} ${JSON.stringify(lang.dropped)}; length keeps ${
        share(len.kept.length)
      }`,
  );
  assert.ok(rep.kept.length / docs.length >= 0.97);
  assert.ok(lang.kept.length / docs.length >= 0.97);
  assert.equal(len.kept.length, docs.length);
});

// ---- measured near-dedup quality on real text -------------------------------------------------

/** Independent truth: word 5-shingles as strings (same word definition as the library). */
function stringShingles(text: string): Set<string> {
  const w = text.toLowerCase().match(/[\p{L}\p{N}\p{M}]+/gu) ?? [];
  const out = new Set<string>();
  for (let i = 0; i + 5 <= w.length; i++) out.add(w.slice(i, i + 5).join(" "));
  return out;
}

function trueJaccard(a: Set<string>, b: Set<string>): number {
  let inter = 0;
  for (const x of a) if (b.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

Deno.test("nearDedup() finds planted near-duplicates in Debian descriptions (recall >= 0.95, precision >= 0.99)", () => {
  const t0 = performance.now();
  const lines = Deno.readTextFileSync(DEBIAN).split("\n").filter((l) => l.trim());
  const r = rng(2024);
  // ~2000 documents spread over the file (it is sorted by package name).
  const originals = lines.filter(() => r() < 2000 / lines.length).map((l) =>
    JSON.parse(l).document as string
  );
  const vocab = [...new Set(originals.flatMap((d) => d.split(/\s+/)))];
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];

  // Plant 200 copies with 1-3 word edits (substitute / delete / insert), true J in [0.8, 1).
  const planted: { text: string; source: number; j: number }[] = [];
  while (planted.length < 200) {
    const source = Math.floor(r() * originals.length);
    const words = originals[source].split(/\s+/);
    const edits = 1 + Math.floor(r() * 3);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(r() * words.length), op = r();
      if (op < 0.5) words[at] = pick(vocab);
      else if (op < 0.75) words.splice(at, 1);
      else words.splice(at, 0, pick(vocab));
    }
    const text = words.join(" ");
    const j = trueJaccard(stringShingles(originals[source]), stringShingles(text));
    if (j >= 0.8 && j < 1) planted.push({ text, source, j });
  }
  assert.ok(planted.every((p) => p.j >= 0.8), "every planted copy has true Jaccard >= 0.8");

  // Each copy goes at a random place after its source.
  const records: { text: string; planted: boolean }[] = originals.map((text) => ({ text, planted: false }));
  const slots = new Map<number, string[]>();
  for (const p of planted) {
    const after = p.source + Math.floor(r() * (originals.length - p.source));
    slots.set(after, [...(slots.get(after) ?? []), p.text]);
  }
  const corpus: { text: string; planted: boolean }[] = [];
  records.forEach((rec, i) =>
    corpus.push(rec, ...(slots.get(i) ?? []).map((text) => ({ text, planted: true })))
  );

  // Truth for every record: its best true Jaccard with any earlier record (inverted index on shingles).
  const sets = corpus.map((c) => stringShingles(c.text));
  const posting = new Map<string, number[]>();
  const bestEarlier = sets.map((s, i) => {
    const seen = new Set<number>();
    for (const sh of s) for (const j of posting.get(sh) ?? []) seen.add(j);
    let best = 0;
    for (const j of seen) best = Math.max(best, trueJaccard(s, sets[j]));
    for (const sh of s) posting.set(sh, [...(posting.get(sh) ?? []), i]);
    return best;
  });
  const tTruth = performance.now();

  const result = nearDedup(corpus, { threshold: 0.8, num_perm: 128, return_dropped: true });
  const tDedup = performance.now();
  const droppedIdx = new Set(result.dropped_records!.map((d) => d.index));
  const plantedIdx = corpus.flatMap((c, i) => c.planted ? [i] : []);
  const distinctIdx = corpus.flatMap((c, i) => !c.planted && bestEarlier[i] < 0.8 ? [i] : []);
  const naturalDups = corpus.filter((c, i) => !c.planted && bestEarlier[i] >= 0.8).length;
  const recall = plantedIdx.filter((i) => droppedIdx.has(i)).length / plantedIdx.length;
  const wronglyDropped = distinctIdx.filter((i) => droppedIdx.has(i)).length;
  const keptDistinct = 1 - wronglyDropped / distinctIdx.length;
  const droppedTrue = [...droppedIdx].filter((i) => bestEarlier[i] >= 0.8).length /
    Math.max(1, droppedIdx.size);

  // For comparison: datasketch's balanced weights (9 x 13) and no exact verification.
  const balanced = nearDedup(corpus, {
    false_positive_weight: 0.5,
    false_negative_weight: 0.5,
    verify: false,
    return_dropped: true,
  });
  const balancedIdx = new Set(balanced.dropped_records!.map((d) => d.index));
  const balancedRecall = plantedIdx.filter((i) => balancedIdx.has(i)).length / plantedIdx.length;
  const balancedWrong = distinctIdx.filter((i) => balancedIdx.has(i)).length;

  const js = planted.map((p) => p.j).sort((x, y) => x - y);
  console.log(
    `near-dedup on ${originals.length} Debian descriptions + ${planted.length} planted copies ` +
      `(true J min ${js[0].toFixed(3)}, median ${
        js[js.length >> 1].toFixed(3)
      }); ${naturalDups} originals are ` +
      `natural near-duplicates (J >= 0.8) of earlier ones.\n` +
      `  default (16 bands x 8 rows, verified): recall ${recall.toFixed(4)}, distinct kept ${
        keptDistinct.toFixed(4)
      } ` +
      `(${wronglyDropped} of ${distinctIdx.length} wrongly dropped), dropped that are true dups ${
        droppedTrue.toFixed(4)
      }\n` +
      `  datasketch balanced (9 x 13, unverified): recall ${
        balancedRecall.toFixed(4)
      }, ${balancedWrong} distinct wrongly dropped\n` +
      `  time: truth ${(tTruth - t0).toFixed(0)} ms, nearDedup ${(tDedup - tTruth).toFixed(0)} ms`,
  );
  assert.ok(recall >= 0.95, `recall ${recall}`);
  assert.ok(keptDistinct >= 0.99, `precision on distinct records ${keptDistinct}`);
});
