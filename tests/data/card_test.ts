/**
 * A dataset card's `configs:` (README.md front matter) name a folder's splits as HF `datasets`
 * reads them, and TRL's `dataset_train_split` / `dataset_test_split` pick among them; a folder
 * whose names say no split is one train split.
 */
import { join } from "node:path";
import { assert } from "../_assert.ts";
import { findSplitFiles, readDataset } from "../../data/readers.ts";
import { globRegExp } from "../../data/_card.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { readDocuments, splitFiles, trainSplitFiles } from "../../training/_run_data.ts";

const root = await Deno.makeTempDir({ prefix: "fledge-card-" });
addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

/** A folder of files: path to text (a `{text}` row per line for .jsonl, given as a list). */
async function folder(name: string, files: Record<string, string | string[]>): Promise<string> {
  const dir = join(root, name);
  for (const [p, v] of Object.entries(files)) {
    await Deno.mkdir(join(dir, p, ".."), { recursive: true });
    await Deno.writeTextFile(
      join(dir, p),
      Array.isArray(v) ? v.map((t) => JSON.stringify({ text: t })).join("\n") + "\n" : v,
    );
  }
  return dir;
}
const card = (yaml: string) => `\n---\n${yaml}\n---\n# a card\n`; // (blank lines before it, as the hub allows)
const names = (files: string[] | null) => files?.map((f) => f.slice(f.lastIndexOf("/") + 1));

Deno.test("a card's split names are kept apart: none is merged into train (the eval split had trained too)", async () => {
  const dir = await folder("named", {
    "README.md": card(
      "configs:\n- config_name: default\n  data_files:\n    sft: data/a.jsonl\n    heldout: data/b.jsonl",
    ),
    "data/a.jsonl": ["a1", "a2"],
    "data/b.jsonl": ["b1"],
  });
  assert.deepEqual(Object.keys(findSplitFiles(dir)), ["heldout", "sft"]);
  const c = getTrainingArgs({ dataset: dir });
  assert.throws(
    () => trainSplitFiles(c),
    /has no train split \(its splits: heldout, sft\); set dataset_train_split to one of them/,
  );
  const s = splitFiles({ ...c, dataset_train_split: "sft", dataset_test_split: "heldout" });
  assert.deepEqual([names(s.train), names(s.validation), s.eval_split], [
    ["a.jsonl"],
    ["b.jsonl"],
    "heldout",
  ]);
  // the wrapped layout and a preset's tokenizer read the same split (they had read the folder's top: nothing)
  assert.deepEqual(await readDocuments({ ...c, dataset_train_split: "sft" }), ["a1", "a2"]);
  assert.deepEqual(
    await readDocuments({ ...c, dataset_train_split: "sft", dataset_test_split: "heldout" }, "eval"),
    ["b1"],
  );
});

Deno.test("a folder naming no split is one train split; a single file refuses other split names", async () => {
  const alpaca = await folder("alpaca", { "alpaca_data_cleaned.jsonl": ["x", "y"] });
  assert.deepEqual(await readDataset(alpaca), [{ text: "x" }, { text: "y" }]); // (it had been split "alpaca": no train)
  const docs = await folder("docs", { "LICENSE.txt": "MIT", "data/a.txt": "doc a", "data/b.txt": "doc b" });
  const c = getTrainingArgs({ dataset: docs });
  assert.deepEqual(names(splitFiles(c).train), ["a.txt", "b.txt"], "data/, not the LICENSE beside it");
  assert.throws(
    () => splitFiles({ ...c, dataset_test_split: "b" }),
    /dataset_test_split "b" is not one of its splits \(train\); fix dataset_test_split/,
  );
  const file = join(alpaca, "alpaca_data_cleaned.jsonl");
  for (const k of ["dataset_train_split", "dataset_test_split"]) {
    assert.throws(
      () => splitFiles(getTrainingArgs({ dataset: file, [k]: "test" })),
      new RegExp(`${k} "test" is not one of its splits \\(train\\): one file is the train split`),
    );
  }
});

Deno.test("card patterns: data_dir joins them, character classes, several defaults refused", async () => {
  const dir = await folder("dirs", {
    "README.md": card(
      "configs:\n- config_name: en\n  data_dir: en\n  data_files:\n  - split: train\n    path: train-[0-9]*.jsonl\n" +
        "- config_name: fr\n  data_dir: fr\n  default: true",
    ),
    "train-0.jsonl": ["top"],
    "en/train-0.jsonl": ["en0"],
    "en/train-x.jsonl": ["not a shard"],
    "fr/train.jsonl": ["fr0"],
    "fr/validation.jsonl": ["fr1"],
  });
  assert.deepEqual(await readDataset(dir, { config: "en" }), [{ text: "en0" }]);
  assert.deepEqual(Object.keys(findSplitFiles(dir)), ["train", "validation"]); // fr, the default
  assert.deepEqual(await readDataset(dir), [{ text: "fr0" }]);
  await assert.rejects(
    readDataset(join(dir, "train-0.jsonl"), { config: "en" }),
    /config picks a card config of a folder/,
  );
  const two = await folder("two", {
    "README.md": card(
      "configs:\n- config_name: default\n  data_files: a.jsonl\n- config_name: b\n  default: true\n  data_files: a.jsonl",
    ),
    "a.jsonl": ["a"],
  });
  assert.throws(() => findSplitFiles(two), /marks several default configs \(b, default\), as HF refuses too/);
  const year = await folder("year", {
    "README.md": card(
      "configs:\n- config_name: 2020\n  data_files: a.jsonl\n- config_name: 2021\n  data_files: b.jsonl",
    ),
    "a.jsonl": ["a"],
    "b.jsonl": ["b"],
  });
  assert.deepEqual(await readDataset(year, { config: "2021" }), [{ text: "b" }]); // (YAML reads 2021 as a number)
});

Deno.test("card globs read as fsspec's: * within a folder, ** across, [!x] negates, [^x] is literal", () => {
  const cases: [string, string, boolean][] = [
    ["data/*.jsonl", "data/a.jsonl", true],
    ["data/*.jsonl", "data/sub/a.jsonl", false],
    ["data/**.jsonl", "data/sub/a.jsonl", true],
    ["**/train-*", "x/y/train-0.parquet", true],
    ["./data/train-[0-9]*", "data/train-3.jsonl", true],
    ["train-[!0-9]*", "train-1", false],
    ["x[^a]", "x^", true],
    ["x[^a]", "xb", false],
  ];
  for (const [p, f, want] of cases) assert.equal(globRegExp(p).test(f), want, `${p} ${f}`);
});
