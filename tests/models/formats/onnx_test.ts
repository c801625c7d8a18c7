/**
 * `exportOnnx()` run by onnxruntime-node (`OnnxDecoder`): logits equal the decoder's within 1e-4 on
 * every fixture architecture (prefill, 8 decode steps with the past key/values, a left-padded
 * batch) and on synthetic configs covering the options the fixtures lack (sliding window,
 * interleaved and partial rotary, rope scaling, biases, erf GELU, tied heads); Debian's
 * python3-onnx checker accepts the files (inline and external data); bad input is one line.
 */
import { join } from "node:path";
import { createBackend } from "../../../kernels/backend.ts";
import type { Backend } from "../../../kernels/backend.ts";
import { noGrad } from "../../../kernels/autograd.ts";
import { type ModelConfig, toHfConfig, validateModelConfig } from "../../../models/config.ts";
import { exportOnnx, type ExportOnnxOptions } from "../../../models/formats/onnx.ts";
import { generateOnnx, OnnxDecoder, type OnnxPast } from "../../../models/onnx_runtime.ts";
import { generate } from "../../../models/generate.ts";
import { loadModel } from "../../../models/pretrained.ts";
import { Transformer } from "../../../models/transformer.ts";
import { trainBpeTokenizer } from "../../../models/tokenizer/bpe.ts";
import { assert, assertAllClose, FIXTURE_ARCHES, SHARED } from "../../_assert.ts";

const TOL = { atol: 1e-4, rtol: 0 };
const STEPS = 8;

/** A python3 that imports onnx (Debian's python3-onnx), or null. */
async function onnxPython(): Promise<string | null> {
  for (const exe of ["/usr/bin/python3", "python3"]) {
    try {
      const r = await new Deno.Command(exe, { args: ["-c", "import onnx"], stdout: "null", stderr: "null" })
        .output();
      if (r.success) return exe;
    } catch { /* not installed */ }
  }
  return null;
}
const PYTHON = await onnxPython();

/** `onnx.checker.check_model(onnx.load(path), full_check=True)`; skipped (with the reason printed) without python3-onnx. */
async function assertChecked(path: string): Promise<void> {
  if (!PYTHON) {
    console.log(`skipped the onnx checker on ${path}: no python3 with onnx (apt-get install python3-onnx)`);
    return;
  }
  const code = "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)";
  const r = await new Deno.Command(PYTHON, { args: ["-c", code, path], stdout: "piped", stderr: "piped" })
    .output();
  assert.ok(r.success, `onnx.checker rejected ${path}: ${new TextDecoder().decode(r.stderr)}`);
}

/** HF left padding of `prompts` to length P: ids, positions (pads at 1) and a mask over `[B, P + extra]`. */
function leftPadded(prompts: number[][], extra: number) {
  const P = Math.max(...prompts.map((r) => r.length));
  const ids = prompts.map((r) => [...Array(P - r.length).fill(0), ...r]);
  const pos = prompts.map((r) =>
    Array.from({ length: P }, (_, t) => t < P - r.length ? 1 : t - (P - r.length))
  );
  const mask = prompts.map((r) => Array.from({ length: P + extra }, (_, t) => t < P - r.length ? 0 : 1));
  return { P, ids, pos, mask };
}

/**
 * Prefill `prompts` (left padded) and decode STEPS tokens (each row's argmax) with both the
 * decoder's KV cache and onnxruntime's past key/values; every step's logits must agree. With one
 * row, the prefill is also checked against a full forward without a cache.
 */
async function assertParity(
  model: Transformer,
  path: string,
  prompts: number[][],
  label: string,
): Promise<void> {
  const be = model.backend, V = model.config.vocab_size, B = prompts.length;
  const dec = await OnnxDecoder.load(path, { config: model.config });
  try {
    const { P, ids, pos, mask } = leftPadded(prompts, STEPS);
    const L = P + STEPS;
    const cache = model.createCache(B, L);
    const maskT = be.fromArray(mask.flat(), [B, L], "i32");
    const ours = async (tok: number[][], p: number[][]) => {
      const idsT = be.fromArray(tok.flat(), [B, tok[0].length], "i32");
      const posT = be.fromArray(p.flat(), [B, p[0].length], "i32");
      const y = noGrad(() => model.forward(idsT, { attention_mask: maskT, position_ids: posT, cache }));
      const a = await y.toArray() as Float32Array;
      for (const t of [idsT, posT, y]) t.dispose();
      return a;
    };
    let want = await ours(ids, pos);
    let got = await dec.step({
      input_ids: ids,
      attention_mask: mask.map((r) => r.slice(0, P)),
      position_ids: pos,
    });
    assertAllClose(got.logits, want, { ...TOL, msg: `${label} prefill` });
    if (B === 1) {
      const full = noGrad(() => model.forward(be.fromArray(ids[0], [1, P], "i32")));
      assertAllClose(got.logits, await full.toArray() as Float32Array, {
        ...TOL,
        msg: `${label} prefill, no cache`,
      });
      full.dispose();
    }
    let past: OnnxPast = got.past, T = P;
    const next = pos.map((r) => r[P - 1] + 1);
    for (let s = 0; s < STEPS; s++) {
      const tok = Array.from({ length: B }, (_, b) => {
        const row = want.subarray((b * T + T - 1) * V, (b * T + T) * V);
        return [row.indexOf(Math.max(...row))];
      });
      const p = next.map((x) => [x + s]);
      want = await ours(tok, p);
      got = await dec.step({
        input_ids: tok,
        attention_mask: mask.map((r) => r.slice(0, P + s + 1)),
        position_ids: p,
        past,
      });
      assertAllClose(got.logits, want, { ...TOL, msg: `${label} decode step ${s + 1}` });
      past = got.past;
      T = 1;
    }
    assert.equal(past.length, L);
    for (const t of [maskT, ...cache.k, ...cache.v]) t.dispose();
  } finally {
    await dec.release();
  }
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-onnx-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.chmod(dir, 0o755).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

const PROMPT = [52, 188, 165, 120, 168, 103, 235, 201, 84, 174];
const BATCH = [[3, 17, 99, 42, 7, 250, 31], [64, 5, 200]];

for (const arch of FIXTURE_ARCHES) {
  Deno.test(`exportOnnx() ${arch}: onnxruntime logits equal ours (prefill, ${STEPS} decode steps, left-padded batch)`, async () => {
    const be = await createBackend("cpu");
    const model = await loadModel(`${SHARED}/fixtures/hf-reference/${arch}`, { backend: be });
    try {
      await withTemp(async (dir) => {
        const path = join(dir, "model.onnx");
        const r = await exportOnnx(model, path);
        assert.equal(r.opset, 17);
        assert.equal(r.data_path, null);
        assert.deepEqual(r.outputs.slice(0, 3), ["logits", "present.0.key", "present.0.value"]);
        assert.deepEqual(r.inputs.slice(0, 4), [
          "input_ids",
          "attention_mask",
          "position_ids",
          "past_key_values.0.key",
        ]);
        assert.equal((await Deno.stat(path)).size, r.bytes);
        await assertParity(model, path, [PROMPT], `${arch} one row`);
        await assertParity(model, path, BATCH, `${arch} left-padded batch`);
        await assertChecked(path);
      });
    } finally {
      model.dispose();
      be.destroy();
    }
  });
}

/** A synthetic model of `overrides` with random weights (seeded), for options the fixtures lack. */
function synthetic(be: Backend, overrides: Partial<ModelConfig>): Transformer {
  const base: Partial<ModelConfig> = {
    vocab_size: 96,
    hidden_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    intermediate_size: 80,
    max_position_embeddings: 64,
    initializer_range: 0.2,
  };
  const config = validateModelConfig({ ...base, ...overrides }, { source: "onnx_test" });
  return Transformer.init(config, be, { seed: 11 });
}

const GPT2: Partial<ModelConfig> = {
  arch: "gpt2",
  num_key_value_heads: 4,
  norm: "layernorm",
  position: "learned",
  mlp: "gelu",
  qkv_bias: true,
  o_bias: true,
  mlp_bias: true,
  qkv_layout: "fused_gpt2_conv1d",
};

const SYNTHETIC: [string, Partial<ModelConfig>][] = [
  ["mistral, sliding window 3, interleaved partial rotary, llama3 scaling", {
    arch: "mistral",
    head_dim: 16,
    sliding_window: 3,
    rope_interleaved: true,
    partial_rotary_factor: 0.5,
    tie_word_embeddings: false,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 16,
    },
  }],
  ["llama with attention and MLP biases, linear rope scaling, tied head, no GQA", {
    arch: "llama",
    num_key_value_heads: 4,
    head_dim: 16,
    qkv_bias: true,
    o_bias: true,
    mlp_bias: true,
    partial_rotary_factor: 0.75,
    rope_scaling: { rope_type: "linear", factor: 2 },
    tie_word_embeddings: true,
  }],
  ["gpt2 with the erf GELU", { ...GPT2, hidden_act: "gelu" }],
];

for (const [name, overrides] of SYNTHETIC) {
  Deno.test(`exportOnnx() ${name}: onnxruntime logits equal ours`, async () => {
    const be = await createBackend("cpu");
    const model = synthetic(be, overrides);
    try {
      await withTemp(async (dir) => {
        const path = join(dir, "model.onnx");
        await exportOnnx(model, path);
        await assertParity(model, path, [PROMPT.map((x) => x % 96)], name);
        await assertParity(model, path, BATCH.map((r) => r.map((x) => x % 96)), `${name}, batch`);
        await assertChecked(path);
      });
    } finally {
      model.dispose();
      be.destroy();
    }
  });
}

Deno.test("exportOnnx() writes external data beside the model, and opset 18 (Reduce* axes as inputs)", async () => {
  const be = await createBackend("cpu");
  const model = await loadModel(`${SHARED}/fixtures/hf-reference/${FIXTURE_ARCHES[0] ?? "llama"}`, {
    backend: be,
  });
  try {
    await withTemp(async (dir) => {
      const path = join(dir, "ext", "model.onnx");
      const r = await exportOnnx(model, path, { external_data: true });
      assert.equal(r.data_path, `${path}.data`);
      const [m, d] = [await Deno.stat(path), await Deno.stat(`${path}.data`)];
      assert.equal(m.size + d.size, r.bytes);
      assert.ok(m.size < 64 * 1024, `graph only: ${m.size} bytes`);
      await assertParity(model, path, BATCH, "external data");
      await assertChecked(path);
      // overwrite with an inline file: the stale .data goes
      await exportOnnx(model, path, { overwrite: true });
      await assert.rejects(() => Deno.stat(`${path}.data`), Deno.errors.NotFound);

      const p18 = join(dir, "opset18.onnx");
      assert.equal((await exportOnnx(model, p18, { opset: 18 })).opset, 18);
      await assertParity(model, p18, [PROMPT], "opset 18");
    });
  } finally {
    model.dispose();
    be.destroy();
  }
});

Deno.test("exportOnnx() writes what a 4-bit (nf4) or f16 model computes with, as f32", async () => {
  const be = await createBackend("cpu");
  for (const dtype of ["nf4", "f16"] as const) {
    const model = await loadModel(`${SHARED}/fixtures/hf-reference/${FIXTURE_ARCHES[0] ?? "llama"}`, {
      backend: be,
      dtype,
    });
    try {
      await withTemp(async (dir) => {
        const path = join(dir, "model.onnx");
        await exportOnnx(model, path);
        await assertParity(model, path, BATCH, dtype);
      });
    } finally {
      model.dispose();
    }
  }
  be.destroy();
});

Deno.test("exportOnnx() refuses bad input in one line each", async () => {
  const be = await createBackend("cpu");
  const model = synthetic(be, { arch: "llama" });
  const oneLine = (re: RegExp) => (e: Error) => {
    assert.ok(!e.message.includes("\n"), e.message);
    assert.match(e.message, re);
    return true;
  };
  const rejects = async (
    opts: ExportOnnxOptions,
    path: string,
    cls: new (m?: string) => Error,
    re: RegExp,
    m = model,
  ) => {
    await assert.rejects(() => exportOnnx(m, path, opts), (e: Error) => e instanceof cls && oneLine(re)(e));
  };
  try {
    await withTemp(async (dir) => {
      // a folder that is not writable: read-only for a normal user; root writes anywhere but /sys
      let ro = join(dir, "ro");
      await Deno.mkdir(ro);
      await Deno.chmod(ro, 0o555);
      if (Deno.uid() === 0) ro = "/sys/fledge-onnx-test";
      await rejects(
        {},
        join(ro, "model.onnx"),
        Deno.errors.PermissionDenied,
        /^Cannot export ONNX to .*model\.onnx: the folder .* is not writable/,
      );
      // a "folder" that is a file
      await Deno.writeTextFile(join(dir, "file"), "x");
      await rejects({}, join(dir, "file", "model.onnx"), Deno.errors.PermissionDenied, /is not writable/);

      const path = join(dir, "model.onnx");
      await exportOnnx(model, path);
      await rejects({}, path, Deno.errors.AlreadyExists, /model\.onnx exists; pass overwrite/);
      await exportOnnx(model, path, { overwrite: true });
      // the tokenizer's files beside it are not overwritten unasked either
      const tokenizer = await trainBpeTokenizer(["a tiny text for a tiny vocabulary"], { vocab_size: 270 });
      const wide = synthetic(be, { arch: "llama", vocab_size: 272 }); // room for the tokenizer's ids
      const beside = join(dir, "t", "model.onnx");
      await Deno.mkdir(join(dir, "t"));
      await Deno.writeTextFile(join(dir, "t", "tokenizer.json"), "OLD");
      await rejects(
        { tokenizer },
        beside,
        Deno.errors.AlreadyExists,
        /tokenizer\.json exists and differs, likely another model.s export in this folder .*; export into a folder of its own, or pass overwrite/,
        wide,
      );
      assert.equal(await Deno.readTextFile(join(dir, "t", "tokenizer.json")), "OLD");
      await assert.rejects(Deno.stat(beside), Deno.errors.NotFound, "nothing written");
      await exportOnnx(wide, beside, { tokenizer, overwrite: true });
      assert.notEqual(await Deno.readTextFile(join(dir, "t", "tokenizer.json")), "OLD");
      // overwrite replaces files, never a folder: refused before the tokenizer's files are written beside it
      await Deno.mkdir(join(dir, "f", "model.onnx"), { recursive: true });
      await assert.rejects(
        () => exportOnnx(wide, join(dir, "f", "model.onnx"), { tokenizer, overwrite: true }),
        (e: Error) => e instanceof Deno.errors.IsADirectory && oneLine(/model\.onnx: it is a folder/)(e),
      );
      assert.deepEqual([...Deno.readDirSync(join(dir, "f"))].map((e) => e.name), ["model.onnx"]);
      wide.dispose();
      // a tokenizer with more ids than the model: its folder could not run (as GGUF refuses it)
      await rejects(
        { tokenizer },
        join(dir, "big", "model.onnx"),
        RangeError,
        /the tokenizer has 2\d\d ids but the model's vocab_size is 96; use the model's own tokenizer/,
      );
      await rejects(
        { opset: 16 },
        join(dir, "a.onnx"),
        RangeError,
        /opset 16 is not supported; use 17 to 21/,
      );

      const relu = synthetic(be, { ...GPT2, hidden_act: "relu" });
      await rejects(
        {},
        join(dir, "b.onnx"),
        RangeError,
        /hidden_act "relu" with mlp "gelu" is not supported/,
        relu,
      );
      relu.dispose();
      model.adapters.set("layers.0.attn.q", { apply: (_x, base) => base });
      await rejects({}, join(dir, "c.onnx"), RangeError, /1 adapter layers attached; merge them first/);
      model.adapters.clear();
    });
  } finally {
    model.dispose();
    be.destroy();
  }
});

Deno.test("OnnxDecoder.load() reads the config.json beside the file, and refuses a missing file, a non-ONNX file and a config of another model", async () => {
  const be = await createBackend("cpu");
  const model = synthetic(be, { arch: "llama" });
  try {
    await withTemp(async (dir) => {
      await assert.rejects(() => OnnxDecoder.load(join(dir, "none.onnx")), Deno.errors.NotFound);
      await Deno.writeTextFile(join(dir, "junk.onnx"), "not a model");
      await assert.rejects(() => OnnxDecoder.load(join(dir, "junk.onnx")), {
        name: "SyntaxError",
        message: /onnxruntime says/,
      });
      const path = join(dir, "model.onnx");
      await exportOnnx(model, path);
      const other = { ...model.config, vocab_size: 97 };
      await assert.rejects(
        () => OnnxDecoder.load(path, { config: other }),
        { name: "RangeError", message: /config vocab_size is 97 but the graph has 96/ },
      );
      // the config.json exportOnnx writes beside it is read by default, so the folder generates as it
      // is (it had needed { config } from the caller); null reads none
      const own = await OnnxDecoder.load(path);
      assert.equal(own.config?.vocab_size, 96);
      const want = await generate(model, [[1, 2, 3]], { max_new_tokens: 4, eos_token_id: null });
      assert.deepEqual(
        (await generateOnnx(own, [[1, 2, 3]], { max_new_tokens: 4, eos_token_id: null })).tokens,
        want.tokens,
      );
      await own.release();
      const bare = await OnnxDecoder.load(path, { config: null });
      await assert.rejects(() => generateOnnx(bare, [[1]]), {
        name: "TypeError",
        message: /loaded without its config \(no config\.json/,
      });
      await bare.release();
      // an unreadable one is named when it matters (generateOnnx), not at load: step() needs no config
      await Deno.writeTextFile(join(dir, "config.json"), "{ not json");
      const broken = await OnnxDecoder.load(path);
      assert.equal(broken.config, null);
      await assert.rejects(() => generateOnnx(broken, [[1]]), { name: "TypeError", message: /config\.json/ });
      await broken.release();
      await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(toHfConfig(other)));
      await assert.rejects(() => OnnxDecoder.load(path), {
        name: "RangeError",
        message: /config\.json is another model's/,
      });
    });
  } finally {
    model.dispose();
    be.destroy();
  }
});
