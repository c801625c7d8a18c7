/**
 * extra_train and balance_classes: more examples of one label from another train split, and the
 * classes over-sampled to the largest one.
 */
import { assert } from "../_assert.ts";
import { balanceClasses, extraTrainProblems, withExtraTrain } from "../../tasks/_extra_train.ts";
import { mergeRecipeConfig, readRecipeYaml, resolveRecipe } from "../../tasks/_recipe.ts";
import { loadTaskData } from "../../data/task_data.ts";

Deno.test("balanceClasses() repeats each smaller class to the largest one's count, seeded, originals first", () => {
  const ex = [
    ...["a", "b"].map((s) => ({ source: s, target: "x" })),
    ...["c", "d", "e", "f", "g"].map((s) => ({ source: s, target: "y" })),
  ];
  const out = balanceClasses(ex, 7);
  assert.deepEqual(out.slice(0, ex.length), ex);
  const count = (t: string) => out.filter((e) => e.target === t).length;
  assert.deepEqual([count("x"), count("y")], [5, 5]);
  // whole copies (2 x 2), then one sampled: each of a, b at least twice
  for (const s of ["a", "b"]) assert.ok(out.filter((e) => e.source === s).length >= 2);
  assert.deepEqual(balanceClasses(ex, 7), out);
  assert.deepEqual(balanceClasses(ex.slice(2), 7), ex.slice(2)); // one class: nothing to add
  assert.deepEqual(balanceClasses([], 7), []);
});

Deno.test("extraTrainProblems() names each wrong part of extra_train and balance_classes", () => {
  assert.deepEqual(extraTrainProblems(null, false, "summarization"), []);
  assert.deepEqual(
    extraTrainProblems(
      { debian_task: "classification", label: "other", max_samples: 5 },
      true,
      "classification",
    ),
    [],
  );
  assert.deepEqual(extraTrainProblems({ label: "other" }, "yes", "classification"), [
    `balance_classes must be true or false, got "yes"`,
  ]);
  assert.deepEqual(extraTrainProblems(null, true, "translation"), [
    "balance_classes is for classification only; set it to false for translation",
  ]);
  assert.deepEqual(extraTrainProblems({ label: "x" }, false, "summarization"), [
    "extra_train is for classification only; remove it for summarization",
  ]);
  assert.deepEqual(extraTrainProblems({ lable: "other", max_samples: 0 }, false, "classification"), [
    "extra_train has no field lable; use dataset, debian_task, source_column, target_column, label, max_samples",
    "extra_train.label must name one of the labels",
    "extra_train.max_samples must be a positive integer or null, got 0",
  ]);
  assert.deepEqual(extraTrainProblems("other", false, "classification"), [
    "extra_train must be an object ({label, debian_task or dataset, max_samples}) or null",
  ]);
});

Deno.test("withExtraTrain() adds the 8-way Debian texts as 'other', none already in train or validation", async () => {
  const data = await loadTaskData("classification", { debian_task: "classification-binary" });
  const extra = { debian_task: "classification" as const, label: "other", max_samples: 50 };
  const a = await withExtraTrain(data, extra);
  assert.equal(a.added, 50);
  assert.deepEqual(a.train.slice(0, data.train.length), data.train);
  const added = a.train.slice(data.train.length);
  assert.ok(added.every((e) => e.target === "other"));
  const seen = new Set([...data.train, ...data.validation].map((e) => e.source));
  assert.ok(added.every((e) => !seen.has(e.source)));
  assert.equal(new Set(added.map((e) => e.source)).size, 50);
  assert.match(a.description, /^50 other examples from Debian classification/);
  // the same 50 every time (by the hash of their text), and a larger cap takes them first
  assert.deepEqual((await withExtraTrain(data, extra)).train, a.train);
  const more = (await withExtraTrain(data, { ...extra, max_samples: 80 })).train.slice(data.train.length);
  assert.deepEqual(more.slice(0, 50), added);
  // the 8-way split overlaps the binary one's "other" texts: those are not added again
  const all = await withExtraTrain(data, { ...extra, max_samples: null });
  const eight = await loadTaskData("classification", { debian_task: "classification" });
  assert.ok(all.added < eight.train.length && all.added > 8000, `${all.added}`);
  await assert.rejects(
    () => withExtraTrain(data, { ...extra, label: "others" }),
    RangeError,
    `label "others" is not one of the recipe's labels (other, games); set extra_train.label to one of them`,
  );
});

Deno.test("a recipe config's extra_train gives way to another --dataset or --debian_task, and is refused elsewhere", async () => {
  const extra = { debian_task: "classification", label: "other", max_samples: 700 };
  const shipped = { ...await readRecipeYaml("sst2"), extra_train: extra, balance_classes: true };
  assert.deepEqual(mergeRecipeConfig(shipped, {}).extra_train, extra);
  resolveRecipe(mergeRecipeConfig(shipped, {}), "sst2.yaml");
  assert.equal(mergeRecipeConfig(shipped, { dataset: "sst2" }).extra_train, null);
  assert.equal(mergeRecipeConfig(shipped, { debian_task: "classification" }).extra_train, null);
  const mine = { label: "other", dataset: "more.jsonl" };
  assert.deepEqual(mergeRecipeConfig(shipped, { dataset: "x.jsonl", extra_train: mine }).extra_train, mine);
  resolveRecipe(mergeRecipeConfig(shipped, { dataset: "sst2" }), "sst2.yaml"); // balance_classes stays valid
  assert.throws(
    () =>
      resolveRecipe({ name: "x", task: "summarization", extra_train: { label: "a" }, balance_classes: true }),
    /balance_classes is for classification only; set it to false for summarization; extra_train is for classification only; remove it for summarization/,
  );
});
