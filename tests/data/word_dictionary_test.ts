import assert from "node:assert/strict";
import { dictionaryTranslate, learnWordDictionary } from "../../data/word_dictionary.ts";
import { loadTaskData } from "../../data/task_data.ts";
import { translationMetrics } from "../../evaluation/task_metrics.ts";

const PAIRS = [
  { source: "the editor", target: "der Editor" },
  { source: "the shell", target: "die Shell" },
  { source: "a library", target: "eine Bibliothek" },
  { source: "the library", target: "die Bibliothek" },
  { source: "library for the shell", target: "Bibliothek für die Shell" },
];

Deno.test("learnWordDictionary() pairs frequent source words with their best Dice target word", () => {
  const dict = learnWordDictionary(PAIRS);
  // the: 4 pairs; die co-occurs in 3 of them and occurs in 3 (Dice 6/7 > der's 2/5)
  assert.equal(dict.get("the"), "die");
  assert.equal(dict.get("library"), "Bibliothek"); // as the targets write it
  assert.equal(dict.get("shell"), undefined); // its best target is itself: no entry
  assert.equal(dict.get("editor"), undefined);
  // max_words keeps the most frequent words only; min_dice drops weak pairs
  assert.deepEqual([...learnWordDictionary(PAIRS, { max_words: 1 })], [["the", "die"]]);
  assert.equal(learnWordDictionary(PAIRS, { min_dice: 0.9 }).has("the"), false);
  assert.throws(() => learnWordDictionary(PAIRS, { max_words: -1 }), /max_words must be a whole number/);
  assert.throws(() => learnWordDictionary(PAIRS, { min_dice: 2 }), /min_dice must be in \[0, 1\]/);
});

Deno.test("learnWordDictionary({ one_to_one }) links each target word once, the best Dice pairs first", () => {
  // "is" and "a" both co-occur with "ist" in every pair; "is" is linked to it (Dice 1), so "a"
  // takes its next best target word instead of "ist" a second time
  const pairs = [
    { source: "x is a tool", target: "x ist ein Werkzeug" },
    { source: "y is a game", target: "y ist ein Spiel" },
    { source: "z is a shell", target: "z ist eine Shell" },
    { source: "it is", target: "es ist" },
  ];
  assert.equal(learnWordDictionary(pairs).get("a"), "ist");
  const one = learnWordDictionary(pairs, { one_to_one: true });
  assert.equal(one.get("is"), "ist");
  assert.equal(one.get("a"), "ein");
});

Deno.test("dictionaryTranslate() replaces known words, keeps case, punctuation and unknown words", () => {
  const dict = new Map([["the", "die"], ["library", "Bibliothek"]]);
  assert.equal(
    dictionaryTranslate("The library (the GNU one).\nlibrary-x", dict),
    "Die Bibliothek (die GNU one).\nBibliothek-x",
  );
  assert.equal(dictionaryTranslate("", dict), "");
});

Deno.test("the word-for-word teacher beats the identity baseline on the Debian validation split", async () => {
  const d = await loadTaskData("translation");
  const dict = learnWordDictionary(d.train);
  const v = d.validation, refs = v.map((e) => e.target);
  const identity = translationMetrics(v.map((e) => e.source), refs).bleu;
  const teacher = translationMetrics(v.map((e) => dictionaryTranslate(e.source, dict)), refs).bleu;
  assert.ok(teacher > identity + 2, `teacher BLEU ${teacher} vs identity ${identity}`);
});
