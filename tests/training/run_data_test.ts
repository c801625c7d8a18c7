/**
 * The run's datasets from a dataset folder: every shard of a split is read, as HF's load_dataset
 * reads train-00000-of-00003.parquet, ... (only the first had been).
 */
import { join } from "node:path";
import { assert } from "../_assert.ts";
import { buildRunDatasets } from "../../training/_run_data.ts";
import { getTrainingArgs } from "../../training/config.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { readTextDocuments } from "../../data/text_dataset.ts";

Deno.test("buildRunDatasets() reads every shard of a split folder, train and validation", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-shards-" });
  try {
    const rows = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => JSON.stringify({ text: `${tag} row ${i}` })).join("\n") + "\n";
    await Deno.writeTextFile(join(dir, "train-00000-of-00003.jsonl"), rows(5, "a"));
    await Deno.writeTextFile(join(dir, "train-00001-of-00003.jsonl"), rows(4, "b"));
    await Deno.writeTextFile(join(dir, "train-00002-of-00003.jsonl"), rows(3, "c"));
    await Deno.writeTextFile(join(dir, "validation-00000-of-00002.jsonl"), rows(2, "d"));
    await Deno.writeTextFile(join(dir, "validation-00001-of-00002.jsonl"), rows(1, "e"));
    const none = { bos_token: null, eos_token: null, pad_token: null, unk_token: null };
    const tokenizer = await trainBpeTokenizer(["abcde row 0123456789"], {
      vocab_size: 256,
      special_tokens: [],
      ...none,
    });
    const config = getTrainingArgs({
      dataset: dir,
      max_seq_length: 32,
      eval_strategy: "steps",
      eval_steps: 1,
      max_steps: 1,
    });
    const sets = await buildRunDatasets(config, tokenizer, null);
    assert.equal(sets.train.num_blocks, 12);
    assert.equal(sets.eval!.num_blocks, 3);
    assert.equal(sets.held_out, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a .txt dataset is a row per line (HF's text loader), and a folder's README.md is no training text", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fledge-lines-" });
  try {
    await Deno.writeTextFile(join(dir, "lines.txt"), "one line\ntwo line\n\nthree line\n");
    const none = { bos_token: null, eos_token: null, pad_token: null, unk_token: null };
    const tokenizer = await trainBpeTokenizer(["one two three line"], {
      vocab_size: 256,
      special_tokens: [],
      ...none,
    });
    const config = getTrainingArgs({ dataset: join(dir, "lines.txt"), max_seq_length: 32, max_steps: 1 });
    // it had been one example: the whole file, cut to max_seq_length without a word
    assert.equal((await buildRunDatasets(config, tokenizer, null)).train.num_blocks, 3);
    const corpus = join(dir, "corpus");
    await Deno.mkdir(corpus);
    await Deno.writeTextFile(join(corpus, "README.md"), "# My corpus\nLicense: CC-BY");
    await Deno.writeTextFile(join(corpus, "a.txt"), "doc one text");
    assert.deepEqual(await readTextDocuments(corpus), ["doc one text"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
