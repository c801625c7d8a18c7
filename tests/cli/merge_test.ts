/**
 * `deno task cli merge` through `main()`: the merged checkpoint of the hf-reference gpt2 DoRA
 * adapter reproduces PEFT's adapter logits; missing flags are one line, exit code 2.
 */
import { noGrad } from "../../kernels/autograd.ts";
import { readSafetensors, SafetensorsFile, writeSafetensors } from "../../models/formats/safetensors.ts";
import { loadModel } from "../../models/pretrained.ts";
import { assert, assertAllClose, SHARED } from "../_assert.ts";
import { cpu } from "../_check.ts";
import { assertFails, cli } from "./_cli.ts";

const GPT2 = `${SHARED}/fixtures/hf-reference/gpt2`;

Deno.test("merge writes a checkpoint that reproduces the DoRA adapter's logits", async () => {
  const out = await Deno.makeTempDir({ prefix: "fledge-merge-" });
  const left = `${out}.tmp-0123abcd-4567`; // a killed merge's folder: named, not removed
  await Deno.mkdir(left);
  try {
    const r = await cli([
      "merge",
      "--model",
      GPT2,
      "--adapter",
      `${GPT2}/dora`,
      "--output",
      out,
      "--backend",
      "cpu",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /^merge: merged DoRA r=\d+ \(.*\) into /m);
    assert.match(
      r.err,
      /^merge: note: .*\.tmp-0123abcd-4567, a folder is left over from an interrupted write of /m,
    );
    assert.ok((await Deno.stat(left)).isDirectory);
    const be = await cpu();
    const model = await loadModel(out, { backend: be });
    const { tensors } = await readSafetensors(`${GPT2}/dora/cases.safetensors`);
    const geti = (n: string) => Int32Array.from(tensors.get(n)!.data as BigInt64Array, (x) => Number(x));
    const want = tensors.get("logits")!.data as Float32Array;
    const ids = be.fromArray(geti("input_ids"), [2, 16], "i32");
    const mask = be.fromArray(geti("attention_mask"), [2, 16], "i32");
    const logits = noGrad(() => model.forward(ids, { attention_mask: mask }));
    const got = await logits.toArray() as Float32Array;
    for (const t of [logits, ids, mask]) t.dispose();
    model.dispose();
    // compare the rows the mask keeps (V = 256)
    const keep = geti("attention_mask");
    const rows = (a: Float32Array) =>
      [...keep].flatMap((m, i) => m ? [...a.subarray(i * 256, (i + 1) * 256)] : []);
    assertAllClose(rows(got), rows(want), { atol: 1e-4, rtol: 0 });
  } finally {
    await Deno.remove(out, { recursive: true });
    await Deno.remove(left);
  }
});

Deno.test("merge names every missing flag in one line, exit code 2", async () => {
  assertFails(await cli(["merge", "--model"]), 2, /merge: --model needs a value/);
  assertFails(await cli(["merge", "--model", "x"]), 2, /^fledge: merge: missing --adapter, --output \(see/);
  assertFails(
    await cli(["merge", "--model", "x", "--adapter", "y", "--output", "z", "--backend", "gpu"]),
    2,
    /--backend gpu is not one of webgpu, cpu, auto/,
  );
  const given = await Deno.makeTempFile(); // a file as --output: it was replaced by a folder when asked to
  assertFails(
    await cli([
      "merge",
      "--model",
      GPT2,
      "--adapter",
      `${GPT2}/dora`,
      "--output",
      given,
      "--overwrite_output_dir",
    ]),
    2,
    /merge: --output .* is a file; give a folder/,
  );
  assert.ok((await Deno.stat(given)).isFile);
  await Deno.remove(given);
  const file = await Deno.makeTempFile(); // --output under a file: once "already exists", it does not
  assertFails(
    await cli(["merge", "--model", "x", "--adapter", "y", "--output", `${file}/sub`]),
    2,
    /a folder above it is a file, not a folder/,
  );
  await Deno.remove(file);
});

Deno.test("merge notes an adapter applied to another base than the one it names; same folder, link or hub id: no note", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "fledge-merge-base-" });
  try {
    const adapter = `${tmp}/adapter`, cache = `${tmp}/hub/models--org--tiny/snapshots/abc`;
    await Deno.mkdir(adapter);
    await Deno.mkdir(cache, { recursive: true });
    await Deno.copyFile(`${GPT2}/dora/adapter_model.safetensors`, `${adapter}/adapter_model.safetensors`);
    for (const f of ["config.json", "model.safetensors"]) await Deno.symlink(`${GPT2}/${f}`, `${cache}/${f}`);
    await Deno.symlink(GPT2, `${tmp}/link`);
    const config = JSON.parse(await Deno.readTextFile(`${GPT2}/dora/adapter_config.json`));
    const merge = async (base: string | null, model: string, out: string) => {
      await Deno.writeTextFile(
        `${adapter}/adapter_config.json`,
        JSON.stringify({ ...config, base_model_name_or_path: base }),
      );
      const r = await cli(["merge", "--model", model, "--adapter", adapter, "--output", `${tmp}/${out}`]);
      assert.equal(r.code, 0, r.err);
      return r.err.split("\n").filter((l) => l.includes("note:"));
    };
    for (
      const [base, model, out] of [
        [null, GPT2, "none"],
        [`${GPT2}/`, GPT2, "slash"],
        [`${tmp}/link`, GPT2, "via-link"],
        ["org/tiny", cache, "from-hub"],
      ] as const
    ) {
      assert.deepEqual(await merge(base, model, out), [], `${out}: no note`);
    }
    const notes = await merge("org/other", GPT2, "other");
    assert.equal(notes.length, 1);
    assert.match(
      notes[0],
      /^merge: note: the adapter .*adapter was trained on org\/other \(its base_model_name_or_path\), and is applied to .*gpt2; give --model org\/other unless the two hold the same weights$/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("merge keeps a chat template saved as chat_template.jinja beside the tokenizer (it was dropped)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "fledge-merge-jinja-" });
  try {
    const base = `${tmp}/base`;
    await Deno.mkdir(base);
    for (const f of ["config.json", "model.safetensors"]) await Deno.symlink(`${GPT2}/${f}`, `${base}/${f}`);
    const template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}";
    await Deno.writeTextFile(`${base}/chat_template.jinja`, template);
    const r = await cli(["merge", "--model", base, "--adapter", `${GPT2}/dora`, "--output", `${tmp}/out`]);
    assert.equal(r.code, 0, r.err);
    assert.equal(await Deno.readTextFile(`${tmp}/out/chat_template.jinja`), template);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("merge keeps the base's dtype (bf16 stays bf16, as merge_and_unload) unless --dtype says otherwise", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "fledge-merge-dtype-" });
  try {
    const base = `${tmp}/base`;
    await Deno.mkdir(base);
    await Deno.symlink(`${GPT2}/config.json`, `${base}/config.json`);
    const { tensors } = await readSafetensors(`${GPT2}/model.safetensors`, { as: "f32" });
    await writeSafetensors(
      `${base}/model.safetensors`,
      Object.fromEntries(
        [...tensors].map(([n, t]) => [n, { dtype: "BF16" as const, shape: t.shape, data: t.data }]),
      ),
    );
    const merged = async (out: string, extra: string[] = []) => {
      const r = await cli(["merge", "--model", base, "--adapter", `${GPT2}/lora`, "--output", out, ...extra]);
      assert.equal(r.code, 0, r.err);
      using f = await SafetensorsFile.open(`${out}/model.safetensors`);
      const dtypes = new Set(f.names().map((n) => f.info(n).dtype));
      return {
        err: r.err,
        dtypes: [...dtypes],
        config: JSON.parse(await Deno.readTextFile(`${out}/config.json`)),
      };
    };
    const auto = await merged(`${tmp}/auto`); // it had been all F32, twice the size, config float32
    assert.deepEqual([auto.dtypes, auto.config.torch_dtype], [["BF16"], "bfloat16"]);
    assert.match(auto.err, /into .*auto \(bfloat16; the tokenizer of the base model\)/);
    const f32 = await merged(`${tmp}/f32`, ["--dtype", "float32"]);
    assert.deepEqual([f32.dtypes, f32.config.torch_dtype], [["F32"], "float32"]);
    assertFails(
      await cli(["merge", "--model", base, "--adapter", "a", "--output", "o", "--dtype", "bf16"]),
      2,
      /--dtype bf16 is not one of auto, float32, float16, bfloat16/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("merge takes the adapter folder's own tokenizer (TRL saves it beside the adapter), not the base's", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "fledge-merge-tok-" });
  try {
    const base = `${tmp}/base`, adapter = `${tmp}/adapter`;
    await Deno.mkdir(base);
    await Deno.mkdir(adapter);
    for (const f of ["config.json", "model.safetensors"]) await Deno.symlink(`${GPT2}/${f}`, `${base}/${f}`);
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) {
      await Deno.symlink(`${GPT2}/lora/${f}`, `${adapter}/${f}`);
    }
    await Deno.writeTextFile(`${base}/tokenizer.json`, "base tokenizer");
    await Deno.writeTextFile(`${base}/chat_template.jinja`, "base template");
    const run = async (out: string) => {
      const r = await cli(["merge", "--model", base, "--adapter", adapter, "--output", out]);
      assert.equal(r.code, 0, r.err);
      return r.err;
    };
    // no tokenizer beside the adapter: the base's
    await run(`${tmp}/a`);
    assert.equal(await Deno.readTextFile(`${tmp}/a/tokenizer.json`), "base tokenizer");
    // the adapter's whole set (its chat template in tokenizer_config.json), and no base file mixed in
    await Deno.writeTextFile(`${adapter}/tokenizer.json`, "sft tokenizer");
    await Deno.writeTextFile(`${adapter}/tokenizer_config.json`, '{"chat_template": "sft"}');
    assert.match(await run(`${tmp}/b`), new RegExp(`the tokenizer of ${adapter}\\)`));
    assert.equal(await Deno.readTextFile(`${tmp}/b/tokenizer.json`), "sft tokenizer");
    assert.equal(await Deno.readTextFile(`${tmp}/b/tokenizer_config.json`), '{"chat_template": "sft"}');
    assert.equal(await Deno.stat(`${tmp}/b/chat_template.jinja`).then(() => true, () => false), false);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
