/**
 * The library as a one-off script calls it, called wrongly: a misspelt option, a URL or a model where a
 * path goes, a file where a folder goes, a disposed model, a plain object for a config. Each is one
 * line naming the argument and the fix, never a silent default or a message from deep inside.
 * @module
 */
import { join } from "node:path";
import { createBackend } from "../kernels/backend.ts";
import { presetConfig } from "../models/config.ts";
import { exportGguf } from "../models/formats/gguf.ts";
import { exportOnnx } from "../models/formats/onnx.ts";
import { generate } from "../models/generate.ts";
import { OnnxDecoder } from "../models/onnx_runtime.ts";
import { loadModel } from "../models/pretrained.ts";
import { saveModel } from "../models/save.ts";
import { trainBpeTokenizer } from "../models/tokenizer/bpe.ts";
import { loadTokenizer } from "../models/tokenizer/tokenizer.ts";
import { Transformer } from "../models/transformer.ts";
import { readDataset } from "../data/readers.ts";
import { bleu } from "../evaluation/bleu.ts";
import { chrf } from "../evaluation/chrf.ts";
import { computeRougeScores, rougeScore } from "../evaluation/rouge.ts";
import { getTrainingArgs, type TrainingConfig } from "../training/config.ts";
import { applyLora, loadAdapter, mergeAdapter } from "../training/peft.ts";
import { runTraining } from "../training/run.ts";
import { createTrainer } from "../training/trainer.ts";
import { assert, SHARED } from "./_assert.ts";

const REF_LLAMA = `${SHARED}/fixtures/hf-reference/llama`;

/** Assert `fn` throws (or rejects) a one-line `cls` whose message matches `re`. */
async function refuses(fn: () => unknown, cls: new (m?: string) => Error, re: RegExp): Promise<void> {
  let err: unknown = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof cls, `expected a ${cls.name}, got ${err}`);
  const msg = (err as Error).message;
  assert.match(msg, re);
  assert.ok(!msg.includes("\n"), `one line: ${msg}`);
}

const be = await createBackend("cpu");
const tmp = await Deno.makeTempDir({ prefix: "fledge-misuse-" });
const tokenizer = await trainBpeTokenizer(["hello world hello"], { vocab_size: 260 });
const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 260 }), be, {
  seed: 1,
});

Deno.test("a misspelt option is refused with a did-you-mean, never dropped for the default", async () => {
  await assert.rejects(
    () => generate(model, [[1, 2]], { maxNewTokens: 3 } as never),
    /maxNewTokens: unknown generation key \(did you mean max_new_tokens\?\)/,
  );
  await assert.rejects( // an HF feature fledge lacks, asked for: refused, not ignored
    () => generate(model, [[1, 2]], { max_new_tokens: 3, min_new_tokens: 5 } as never),
    /min_new_tokens: 5 is not supported by fledge's generate\(\)/,
  );
  await assert.rejects(
    () => generate(model, [[1, 2]], { generation_config: { max_new_token: 2 } } as never),
    /in the generation_config option: .*max_new_token: unknown generation key \(did you mean max_new_tokens\?\)/s,
  );
  const cases: [string, () => unknown, RegExp][] = [
    [
      "rougeScore",
      () => rougeScore("a", "a", { useStemmer: true } as never),
      /"useStemmer" \(did you mean use_stemmer\?\)/,
    ],
    [
      "computeRougeScores",
      () => computeRougeScores(["a"], ["a"], { rouge_type: ["rouge1"] } as never),
      /rouge_types/,
    ],
    [
      "bleu",
      () => bleu(["a"], [["a"]], { smooth_metod: "floor" } as never),
      /"smooth_metod" \(did you mean smooth_method\?\)/,
    ],
    [
      "chrf",
      () => chrf(["a"], [["a"]], { word_ordr: 2 } as never),
      /"word_ordr" \(did you mean word_order\?\)/,
    ],
    [
      "readDataset",
      () => readDataset(join(tmp, "x.jsonl"), { max_sample: 2 } as never),
      /did you mean max_samples\?/,
    ],
    [
      "exportGguf",
      () => exportGguf(model, join(tmp, "m.gguf"), { tokenizer, out_type: "q8_0" } as never),
      /did you mean outtype\?/,
    ],
    [
      "exportOnnx",
      () => exportOnnx(model, join(tmp, "m.onnx"), { outtype: "q8_0" } as never),
      /"outtype" is not an option of exportOnnx/,
    ],
    [
      "loadAdapter",
      () => loadAdapter(model, tmp, { trainable: true } as never),
      /did you mean is_trainable\?/,
    ],
    ["saveModel", () => saveModel(model, join(tmp, "s"), { sources: "x" } as never), /did you mean source\?/],
    [
      "runTraining",
      () => runTraining(getTrainingArgs({}), { progres: false } as never),
      /did you mean progress\?/,
    ],
  ];
  for (const [fn, call, re] of cases) {
    await refuses(call, TypeError, new RegExp(`^${fn}: .*` + re.source, "i"));
  }
});

Deno.test("a URL, a model or undefined where a path goes, or a file where a folder goes, is named", async () => {
  const url = new URL(`file://${REF_LLAMA}`);
  await refuses(
    () => loadModel(url as never, { backend: be }),
    TypeError,
    /repo_id must be a path string, got a URL .*fileURLToPath/,
  );
  await refuses(
    () => loadTokenizer(url as never),
    TypeError,
    /^loadTokenizer: dir must be a path string, got a URL/,
  );
  await refuses(
    () => readDataset(url as never),
    TypeError,
    /^readDataset: path must be a path string, got a URL/,
  );
  await refuses(
    () => loadAdapter(tmp as never, model as never),
    TypeError,
    /^loadAdapter: dir must be a path string, got a Transformer \(are the arguments in the right order\?\)/,
  );
  await refuses(
    () => exportGguf(model, undefined as never, { tokenizer }),
    TypeError,
    /^exportGguf: path must be a path string, got undefined/,
  );
  await refuses(
    () => loadModel(join(REF_LLAMA, "config.json"), { backend: be }),
    TypeError,
    /config\.json: it is a file; pass the folder that holds it \(.*llama\)/,
  );
  await tokenizer.save(join(tmp, "tok"));
  await refuses(
    () => loadTokenizer(join(tmp, "tok", "tokenizer.json")),
    TypeError,
    /tokenizer\.json is a file; pass the folder that holds tokenizer\.json/,
  );
  const file = join(tmp, "a-file");
  await Deno.writeTextFile(file, "");
  await refuses(() => saveModel(model, file), TypeError, /a-file: it is a file; give a folder/);
  // an export named for the other format, and a folder in the way even without overwrite
  await refuses(
    () => exportGguf(model, join(tmp, "m.onnx"), { tokenizer }),
    TypeError,
    /the name ends in \.onnx, another format; name it \.gguf/,
  );
  await refuses(
    () => exportOnnx(model, join(tmp, "m.GGUF")),
    TypeError,
    /ends in \.gguf, another format; name it \.onnx/,
  );
  await Deno.mkdir(join(tmp, "dir.gguf"));
  await refuses(
    () => exportGguf(model, join(tmp, "dir.gguf"), { tokenizer }),
    Deno.errors.IsADirectory,
    /it is a folder/,
  );
});

Deno.test("wrong kinds of values: one string of text, a number to encode, a preset name for a config", async () => {
  await refuses(
    () => trainBpeTokenizer("hello world " as never, { vocab_size: 300 }),
    TypeError,
    /texts is one string; .*\[text\]/,
  );
  await refuses(
    () => tokenizer.encode(42 as never),
    TypeError,
    /^Cannot encode: text must be a string, got 42$/,
  );
  await refuses(
    () => Transformer.init("tiny" as never, be),
    TypeError,
    /config must be a ModelConfig \(presetConfig\("tiny"\)/,
  );
  await refuses(
    () => Transformer.init(presetConfig("tiny"), undefined as never),
    TypeError,
    /backend must be a Backend/,
  );
  const plain = { model: "tiny", dataset: join(tmp, "x.jsonl"), output_dir: join(tmp, "r"), max_steps: 1 };
  await refuses(
    () => runTraining(plain as unknown as TrainingConfig),
    TypeError,
    /config must be a whole TrainingConfig \(.* unset\); build it with getTrainingArgs/,
  );
  await refuses(
    () => createTrainer({} as never),
    TypeError,
    /pass createTrainer\(\{ model, config, train_dataset \}\)/,
  );
  await refuses(
    () => (createTrainer as (x?: unknown) => unknown)(),
    TypeError,
    /pass createTrainer\(\{ model, config, train_dataset \}\)/,
  );
});

Deno.test("a tokenizer, streamer or options object of the wrong kind is named, not failed on deep inside", async () => {
  await refuses(
    () => generate(model, [[1, 2]], null as never),
    TypeError,
    /^generate: options must be an object \(or left out\), got null$/,
  );
  await refuses(
    () => generate(model, [[1, 2]], { tokenizer: "tok" } as never),
    TypeError,
    /^generate: tokenizer must be a Tokenizer \(loadTokenizer\(dir\)\), got "tok"$/,
  );
  await refuses(
    () => generate(model, [[1, 2]], { streamer: () => {} } as never),
    TypeError,
    /^generate: streamer must be an object with put\(\) and end\(\).*a function goes in onToken/,
  );
  await refuses(
    () => exportGguf(model, join(tmp, "t.gguf"), { tokenizer: "/some/folder" } as never),
    TypeError,
    /^exportGguf: tokenizer must be a Tokenizer/,
  );
  await refuses(
    () => exportOnnx(model, join(tmp, "t.onnx"), { tokenizer: 3 } as never),
    TypeError,
    /^exportOnnx: tokenizer must be/,
  );
});

Deno.test("a disposed model, a destroyed backend and a released ONNX decoder say so", async () => {
  const own = await createBackend("cpu");
  const m = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 260 }), own, {
    seed: 1,
  });
  const path = join(tmp, "o", "model.onnx");
  await exportOnnx(m, path);
  m.dispose();
  await refuses(() => generate(m, [[1, 2]], { max_new_tokens: 2 }), TypeError, /it was disposed/);
  own.destroy();
  await refuses(
    () => loadModel(REF_LLAMA, { backend: own }),
    TypeError,
    /the cpu backend was destroyed; create another with createBackend\(\)/,
  );
  const dec = await OnnxDecoder.load(path);
  await dec.release();
  await refuses(
    () => dec.step({ input_ids: [[1]], attention_mask: [[1]] }),
    TypeError,
    /model\.onnx: it was released; load it again/,
  );
  await dec.release(); // twice is fine
});

Deno.test("saveModel() of a model with an adapter attached is refused, not saved without it", async () => {
  const own = await createBackend("cpu");
  const m = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 260 }), own, {
    seed: 1,
  });
  // another tool's name for a LoraConfig field is pointed at PEFT's, and the call is named
  assert.throws(
    () => applyLora(m, { rank: 4 } as never),
    /Cannot read the LoRA config in applyLora\(config\): 1 problem:\n {2}- rank: unknown LoraConfig key; did you mean r\?$/,
  );
  applyLora(m, { r: 2 });
  const dir = join(tmp, "with-adapter");
  await refuses(
    () => saveModel(m, dir),
    RangeError,
    /it has an adapter attached \(.*\), and saveModel writes the base weights only; merge it first \(mergeAdapter/,
  );
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
  mergeAdapter(m);
  await saveModel(m, dir); // merged: the fine-tune is in the weights
  m.dispose();
  own.destroy();
});

Deno.test({
  name: "api misuse tests: clean up",
  fn: async () => {
    model.dispose();
    be.destroy();
    await Deno.remove(tmp, { recursive: true });
  },
});
