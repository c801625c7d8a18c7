import { assert, assertAllClose, FIXTURE_ARCHES, SHARED } from "../_assert.ts";
import {
  checkpointKeyMap,
  countParameters,
  DEFAULT_MODEL_CONFIG,
  flopsPerToken,
  fromHfConfig,
  type ModelConfig,
  modelRopeInvFreq,
  presetConfig,
  PRESETS,
  toHfConfig,
  validateModelConfig,
  withTokenIds,
} from "../../models/config.ts";
import { SafetensorsFile } from "../../models/formats/safetensors.ts";

const REF = `${SHARED}/fixtures/hf-reference`;
const hfJson = async (arch: string) =>
  JSON.parse(await Deno.readTextFile(`${REF}/${arch}/config.json`)) as Record<string, unknown>;
const load = async (arch: string) => fromHfConfig(await hfJson(arch), { file: `${arch}/config.json` });

function throwsWith(fn: () => unknown, cls: ErrorConstructor, ...patterns: RegExp[]): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e instanceof Error ? e.stack : e}`);
    for (const p of patterns) assert.match((e as Error).message, p);
    return (e as Error).message;
  }
  throw new assert.AssertionError({ message: "expected an error" });
}

Deno.test("fromHfConfig() maps the shared fields of every fixture config.json", async () => {
  for (const arch of FIXTURE_ARCHES) {
    const c = await load(arch);
    assert.equal(c.arch, arch);
    assert.equal(c.vocab_size, 256);
    assert.equal(c.hidden_size, 64);
    assert.equal(c.num_hidden_layers, 2);
    assert.equal(c.num_attention_heads, 4);
    assert.equal(c.head_dim, 16);
    assert.equal(c.intermediate_size, 128);
    assert.equal(c.max_position_embeddings, 128);
    assert.equal(c.num_key_value_heads, arch === "gpt2" ? 4 : 2);
    assert.equal(c.tie_word_embeddings, arch === "gpt2");
    assert.deepEqual([c.bos_token_id, c.eos_token_id, c.pad_token_id], [1, 2, 0]);
    assert.equal(c.sliding_window, null);
    assert.equal(c.rope_scaling, null);
    assert.equal(c.initializer_range, 0.02);
    assert.equal(c.lm_head_bias, false);
  }
});

Deno.test("fromHfConfig() maps the family-specific fields", async () => {
  const llama = await load("llama");
  assert.deepEqual(
    [llama.norm, llama.norm_eps, llama.position, llama.rope_theta, llama.mlp, llama.hidden_act],
    ["rmsnorm", 1e-6, "rope", 10000, "swiglu", "silu"],
  );
  assert.deepEqual([llama.qkv_bias, llama.o_bias, llama.mlp_bias], [false, false, false]);
  assert.deepEqual([llama.qkv_layout, llama.mlp_layout], ["separate", "separate"]);

  const qwen2 = await load("qwen2");
  assert.deepEqual([qwen2.qkv_bias, qwen2.o_bias, qwen2.mlp_bias], [true, false, false]);
  assert.equal(qwen2.sliding_window, null, "use_sliding_window false disables the window");

  const phi3 = await load("phi3");
  assert.deepEqual([phi3.qkv_layout, phi3.mlp_layout], ["fused_phi3", "fused_gate_up"]);
  assert.equal(phi3.original_max_position_embeddings, 128);
  assert.equal(phi3.norm_eps, 1e-5);
  assert.deepEqual([phi3.resid_pdrop, phi3.embd_pdrop, phi3.attention_dropout], [0, 0, 0]);

  const gpt2 = await load("gpt2");
  assert.deepEqual(
    [gpt2.norm, gpt2.norm_eps, gpt2.position, gpt2.mlp, gpt2.hidden_act, gpt2.qkv_layout],
    ["layernorm", 1e-5, "learned", "gelu", "gelu_new", "fused_gpt2_conv1d"],
  );
  assert.deepEqual([gpt2.qkv_bias, gpt2.o_bias, gpt2.mlp_bias], [true, true, true]);
  assert.deepEqual([gpt2.attention_dropout, gpt2.resid_pdrop, gpt2.embd_pdrop], [0.1, 0.1, 0.1]);
});

Deno.test("fromHfConfig() applies HF class defaults for missing keys", () => {
  const g = fromHfConfig({ model_type: "gpt2", n_inner: null }, { file: "g.json" });
  assert.equal(g.intermediate_size, 4 * 768, "n_inner null -> 4 * n_embd");
  assert.equal(g.tie_word_embeddings, true, "absent tie_word_embeddings -> true");
  assert.deepEqual([g.vocab_size, g.max_position_embeddings, g.bos_token_id, g.eos_token_id], [
    50257,
    1024,
    50256,
    50256,
  ]);
  assert.equal(countParameters(g), 124_439_808);
  const m = fromHfConfig({ model_type: "mistral" }, { file: "m.json" });
  assert.deepEqual([m.sliding_window, m.num_key_value_heads, m.head_dim], [4096, 8, 128]);
  const l = fromHfConfig({ model_type: "llama", num_attention_heads: 8, hidden_size: 512 }, {
    file: "l.json",
  });
  assert.deepEqual([l.num_key_value_heads, l.head_dim, l.tie_word_embeddings], [8, 64, false]);
  const p = fromHfConfig({ model_type: "phi3", hidden_size: 256, num_attention_heads: 4 }, {
    file: "p.json",
  });
  assert.deepEqual([p.original_max_position_embeddings, p.eos_token_id, p.pad_token_id], [
    4096,
    32000,
    32000,
  ]);
  const q = fromHfConfig(
    { model_type: "qwen2", use_sliding_window: true, sliding_window: 256, max_window_layers: 0 },
    { file: "q.json" },
  );
  assert.equal(q.sliding_window, 256);
  assert.equal(q.bos_token_id, null);
});

Deno.test("fromHfConfig() maps Llama 3.2 1B's config (llama3 rope_scaling, tied, eos list)", () => {
  const json = {
    architectures: ["LlamaForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 128000,
    eos_token_id: [128001, 128008, 128009],
    head_dim: 64,
    hidden_act: "silu",
    hidden_size: 2048,
    initializer_range: 0.02,
    intermediate_size: 8192,
    max_position_embeddings: 131072,
    mlp_bias: false,
    model_type: "llama",
    num_attention_heads: 32,
    num_hidden_layers: 16,
    num_key_value_heads: 8,
    pretraining_tp: 1,
    rms_norm_eps: 1e-05,
    rope_scaling: {
      factor: 32.0,
      high_freq_factor: 4.0,
      low_freq_factor: 1.0,
      original_max_position_embeddings: 8192,
      rope_type: "llama3",
    },
    rope_theta: 500000.0,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    transformers_version: "4.45.0.dev0",
    use_cache: true,
    vocab_size: 128256,
  };
  const c = fromHfConfig(json, { file: "Llama-3.2-1B/config.json" });
  assert.deepEqual(c, { ...presetConfig("llama-1b-shape"), eos_token_id: [128001, 128008, 128009] });
  assert.equal(countParameters(c), 1_235_814_400);
  // Older configs spell it `type`.
  const old = fromHfConfig({
    ...json,
    rope_scaling: { ...json.rope_scaling, rope_type: undefined, type: "llama3" },
  }, {
    file: "x",
  });
  assert.deepEqual(old.rope_scaling, c.rope_scaling);
});

Deno.test("countParameters() equals the element total of every fixture checkpoint", async () => {
  for (const arch of FIXTURE_ARCHES) {
    const c = await load(arch);
    using f = await SafetensorsFile.open(`${REF}/${arch}/model.safetensors`);
    const total = f.names().reduce((s, n) => s + f.info(n).shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(countParameters(c), total, arch);
  }
  assert.equal(countParameters(presetConfig("gpt2-124m")), 124_439_808);
  assert.equal(countParameters(presetConfig("llama-1b-shape")), 1_235_814_400);
  const small = countParameters(presetConfig("small"));
  assert.ok(small >= 10e6 && small <= 20e6, `small has ${small} parameters`);
  assert.ok(countParameters(presetConfig("tiny")) < 1e6);
});

Deno.test("checkpointKeyMap() covers exactly the tensors of every fixture checkpoint", async () => {
  for (const arch of FIXTURE_ARCHES) {
    const c = await load(arch);
    const map = checkpointKeyMap(c);
    assert.deepEqual(JSON.parse(JSON.stringify(map)), map, "plain data");
    using f = await SafetensorsFile.open(`${REF}/${arch}/model.safetensors`);
    const expected = new Map<string, number[]>();
    const ours = new Set<string>();
    for (const e of map.entries) {
      const layers = e.per_layer ? [...Array(c.num_hidden_layers).keys()] : [0];
      for (const i of layers) {
        expected.set(e.hf.replace("{i}", String(i)), e.hf_shape);
        for (const o of e.ours) ours.add(o.replace("{i}", String(i)));
      }
      if (e.split_rows) {
        const rows = e.transpose ? e.hf_shape[1] : e.hf_shape[0];
        assert.equal(e.split_rows.reduce((a, b) => a + b, 0), rows, `${e.hf} split`);
      }
    }
    assert.deepEqual([...expected.keys()].sort(), f.names(), arch);
    for (const [name, shape] of expected) assert.deepEqual(f.info(name).shape, shape, name);
    // Every canonical tensor appears once; the count matches countParameters.
    assert.ok(ours.has("layers.1.attn.q.weight") && ours.has("layers.0.mlp.down.weight"));
    assert.equal(ours.has("lm_head.weight"), !c.tie_word_embeddings);
  }
  const phi3 = checkpointKeyMap(await load("phi3"));
  const qkv = phi3.entries.find((e) => e.hf === "model.layers.{i}.self_attn.qkv_proj.weight")!;
  assert.deepEqual(qkv, {
    hf: "model.layers.{i}.self_attn.qkv_proj.weight",
    ours: ["layers.{i}.attn.q.weight", "layers.{i}.attn.k.weight", "layers.{i}.attn.v.weight"],
    per_layer: true,
    hf_shape: [128, 64],
    transpose: false,
    split_rows: [64, 32, 32],
  });
  const gu = phi3.entries.find((e) => e.hf.endsWith("gate_up_proj.weight"))!;
  assert.deepEqual([gu.ours, gu.split_rows], [["layers.{i}.mlp.gate.weight", "layers.{i}.mlp.up.weight"], [
    128,
    128,
  ]]);
  const gpt2 = checkpointKeyMap(await load("gpt2"));
  const cattn = gpt2.entries.find((e) => e.hf === "transformer.h.{i}.attn.c_attn.weight")!;
  assert.deepEqual([cattn.hf_shape, cattn.transpose, cattn.split_rows], [[64, 192], true, [64, 64, 64]]);
  const fc = gpt2.entries.find((e) => e.hf === "transformer.h.{i}.mlp.c_fc.weight")!;
  assert.deepEqual([fc.ours, fc.hf_shape, fc.transpose], [["layers.{i}.mlp.up.weight"], [64, 128], true]);
  assert.equal(gpt2.tied_lm_head, "embed.weight");
  assert.ok(gpt2.ignored.includes("transformer.h.{i}.attn.bias"));
  assert.equal(gpt2.base_model_prefix, "transformer");
});

Deno.test("toHfConfig() reproduces each fixture config.json's architectural keys", async () => {
  for (const arch of FIXTURE_ARCHES) {
    const json = await hfJson(arch);
    const out = toHfConfig(await load(arch));
    const skip = new Set([
      "transformers_version",
      "summary_activation",
      "summary_first_dropout",
      "summary_proj_to_labels",
      "summary_type",
      "summary_use_proj",
      "scale_attn_weights",
      "scale_attn_by_inverse_layer_idx",
      "reorder_and_upcast_attn",
    ]);
    for (const [k, v] of Object.entries(json)) {
      if (!skip.has(k)) assert.deepEqual(out[k], v, `${arch}: ${k}`);
    }
    assert.deepEqual(Object.keys(out), Object.keys(out).sort(), "sorted keys, as save_pretrained");
  }
});

Deno.test("toHfConfig() -> fromHfConfig() round-trips fixtures and presets", async () => {
  const configs: ModelConfig[] = [];
  for (const arch of FIXTURE_ARCHES) configs.push(await load(arch));
  for (const name of Object.keys(PRESETS) as (keyof typeof PRESETS)[]) configs.push(presetConfig(name));
  configs.push(presetConfig("tiny", { arch: "mistral", sliding_window: 64, num_key_value_heads: 2 }));
  configs.push(presetConfig("tiny", { arch: "qwen2", qkv_bias: true, sliding_window: 32 }));
  configs.push(
    presetConfig("tiny", { rope_scaling: { rope_type: "linear", factor: 2 } }),
    { ...(await load("phi3")), partial_rotary_factor: 0.5 }, // phi3's alone (HF's llama rotates all of a head)
  );
  configs.push(presetConfig("tiny", { qkv_bias: true, o_bias: true, mlp_bias: true, eos_token_id: [2, 3] }));
  configs.push(presetConfig("gpt2-124m", { tie_word_embeddings: false, pad_token_id: 0 }));
  for (const c of configs) {
    const json = JSON.parse(JSON.stringify(toHfConfig(c, { torch_dtype: "bfloat16" })));
    assert.equal(json.torch_dtype, "bfloat16");
    const back = fromHfConfig(json, { file: "round-trip.json" });
    // Dropouts the HF class lacks are not written (llama-style families have attention_dropout only).
    assert.deepEqual(back, c, c.arch);
  }
  // a partial rotary llama has no HF config that computes it (it was written, and HF rotated every dim)
  throwsWith(
    () => toHfConfig(presetConfig("tiny", { partial_rotary_factor: 0.5 }), { torch_dtype: "float32" }),
    RangeError,
    /partial_rotary_factor 0\.5 is read by HF's phi3 only/,
  );
});

Deno.test("modelRopeInvFreq() matches llama3 scaling computed in f64 then rounded", () => {
  const c = presetConfig("llama-1b-shape");
  const s = { factor: 32, low: 1, high: 4, old: 8192 };
  const dim = c.head_dim;
  const expected = Array.from({ length: dim / 2 }, (_, i) => {
    const inv = 1 / c.rope_theta ** ((2 * i) / dim);
    const wavelen = (2 * Math.PI) / inv;
    if (wavelen < s.old / s.high) return Math.fround(inv);
    if (wavelen > s.old / s.low) return Math.fround(inv / s.factor);
    const smooth = (s.old / wavelen - s.low) / (s.high - s.low);
    return Math.fround((1 - smooth) * (inv / s.factor) + smooth * inv);
  });
  const got = modelRopeInvFreq(c);
  assert.equal(got.length, 32);
  assertAllClose(got, expected, { atol: 0, rtol: 1e-6 });
  // The three regimes all occur at these shapes: kept, blended, divided.
  assert.equal(got[0], 1);
  assert.ok(Math.abs(got[31] * 32 / (1 / 500000 ** (62 / 64)) - 1) < 1e-6);

  const plain = modelRopeInvFreq(presetConfig("tiny"));
  const dim2 = presetConfig("tiny").head_dim;
  assertAllClose(
    plain,
    Array.from({ length: dim2 / 2 }, (_, i) => Math.fround(1 / 10000 ** (2 * i / dim2))),
    {
      atol: 0,
      rtol: 1e-6,
    },
  );
  const lin = modelRopeInvFreq(presetConfig("tiny", { rope_scaling: { rope_type: "linear", factor: 4 } }));
  assertAllClose(lin, Array.from(plain, (x) => Math.fround(x / 4)), { atol: 0, rtol: 0 });
  const partial = modelRopeInvFreq(presetConfig("tiny", { partial_rotary_factor: 0.5 }));
  assert.equal(partial.length, dim2 / 4);
  throwsWith(() => modelRopeInvFreq(presetConfig("gpt2-124m")), RangeError, /learned/);
});

Deno.test("flopsPerToken() is 6N + 12 L H Q T", () => {
  const g = presetConfig("gpt2-124m");
  const N = 124_439_808 - 1024 * 768;
  assert.equal(flopsPerToken(g, 1024), 6 * N + 12 * 12 * 12 * 64 * 1024);
  const untied = presetConfig("tiny", { tie_word_embeddings: false });
  assert.equal(flopsPerToken(untied, 1) - flopsPerToken(presetConfig("tiny"), 1), 0, "head counted once");
  const sw = presetConfig("tiny", { arch: "mistral", sliding_window: 16 });
  assert.equal(flopsPerToken(sw, 128), flopsPerToken(sw, 16));
  throwsWith(() => flopsPerToken(g, 0), RangeError, /seq_len/);
});

Deno.test("fromHfConfig() refuses an unknown model_type naming the file and value", () => {
  throwsWith(
    () => fromHfConfig({ model_type: "lama" }, { file: "/m/config.json" }),
    RangeError,
    /\/m\/config\.json/,
    /"lama"/,
    /did you mean "llama"/,
  );
  throwsWith(() => fromHfConfig({ hidden_size: 4 }, { file: "c.json" }), RangeError, /model_type undefined/);
  throwsWith(() => fromHfConfig([1], { file: "c.json" }), TypeError, /c\.json/, /JSON object/);
});

Deno.test("fromHfConfig() lists unknown keys and bad types at once", async () => {
  const json = {
    ...(await hfJson("llama")),
    hidden_size: "64",
    num_hidden_layers: 2.5,
    attention_bias: "no",
    moe_experts: 8,
  };
  const msg = throwsWith(
    () => fromHfConfig(json, { file: "llama/config.json" }),
    TypeError,
    /llama\/config\.json: 4 problems/,
    /hidden_size: expected an integer, got "64"/,
    /num_hidden_layers: expected an integer, got 2\.5/,
    /attention_bias: expected true or false/,
    /moe_experts: unknown key for model_type "llama"/,
  );
  assert.ok(!msg.includes("undefined"), msg);
});

Deno.test("fromHfConfig() refuses unsupported options naming key and value", async () => {
  const llama = await hfJson("llama");
  throwsWith(
    () => fromHfConfig({ ...llama, rope_scaling: { rope_type: "yarn", factor: 4 } }, { file: "y.json" }),
    RangeError,
    /y\.json/,
    /rope_scaling\.rope_type: unsupported rope scaling "yarn"/,
  );
  throwsWith(
    () => fromHfConfig({ ...llama, rope_scaling: { type: "dynamic", factor: 2 } }, { file: "d.json" }),
    RangeError,
    /"dynamic"/,
  );
  const phi3 = await hfJson("phi3");
  const qwen2 = await hfJson("qwen2");
  const gpt2 = await hfJson("gpt2");
  throwsWith(
    () =>
      fromHfConfig({ ...phi3, rope_scaling: { type: "longrope", short_factor: [1], long_factor: [2] } }, {
        file: "phi.json",
      }),
    RangeError,
    /rope_scaling\.type: unsupported rope_scaling "longrope" for phi3/,
  );
  throwsWith(
    () =>
      fromHfConfig({
        ...qwen2,
        use_sliding_window: true,
        sliding_window: 64,
        max_window_layers: 1,
      }, {
        file: "q.json",
      }),
    RangeError,
    /max_window_layers: 1 gives a mix/,
  );
  throwsWith(
    () => fromHfConfig({ ...gpt2, scale_attn_by_inverse_layer_idx: true }, { file: "g.json" }),
    RangeError,
    /scale_attn_by_inverse_layer_idx: unsupported value true/,
  );
  throwsWith(
    () => fromHfConfig({ ...llama, quantization_config: { quant_method: "gptq" } }, { file: "q.json" }),
    RangeError,
    /quantization_config/,
  );
  throwsWith(
    () => fromHfConfig({ ...llama, hidden_act: "gelu" }, { file: "a.json" }),
    RangeError,
    /hidden_act: "gelu" in the gated MLP \(mlp "swiglu": llama, mistral, qwen2, phi3\) is not implemented: fledge computes silu\(gate\) \* up only; use hidden_act "silu"/,
  );
  // a removed yarn would change every logit: the hint no longer says to remove it
  throwsWith(
    () => fromHfConfig({ ...qwen2, rope_scaling: { rope_type: "yarn", factor: 4 } }, { file: "y.json" }),
    RangeError,
    /use a checkpoint without it \(removing it would change every logit\)/,
  );
  // partial_rotary_factor is Phi-3's: HF's llama / qwen2 rotate every dimension (5.x) or fail (4.x)
  throwsWith(
    () => fromHfConfig({ ...llama, partial_rotary_factor: 0.5 }, { file: "p.json" }),
    RangeError,
    /partial_rotary_factor: 0\.5 is read by phi3 only/,
  );
});

/** A 4.x config.json as transformers 5's save_pretrained writes it: dtype, rope_parameters, layer_types. */
function asTransformers5(j: Record<string, unknown>): Record<string, unknown> {
  const { torch_dtype, rope_theta, rope_scaling, partial_rotary_factor, ...rest } = j;
  const out: Record<string, unknown> = { ...rest, dtype: torch_dtype };
  if (rope_theta !== undefined) {
    out.rope_parameters = {
      rope_theta,
      ...(rope_scaling ? rope_scaling as object : { rope_type: "default" }),
      ...(partial_rotary_factor !== undefined ? { partial_rotary_factor } : {}),
    };
  }
  if (j.model_type === "qwen2") {
    const slides = j.use_sliding_window === true;
    out.layer_types = Array.from(
      { length: j.num_hidden_layers as number },
      (_, i) => slides && i >= (j.max_window_layers as number) ? "sliding_attention" : "full_attention",
    );
  }
  return out;
}

Deno.test("fromHfConfig() reads transformers 5 configs (dtype, rope_parameters, layer_types) as their 4.x form", async () => {
  // (they had been refused as unknown keys, and the hint to remove rope_parameters dropped its rope_theta)
  for (const arch of FIXTURE_ARCHES) {
    const j = await hfJson(arch);
    for (const v of [{}, { rope_theta: 1e6 }, { rope_scaling: { rope_type: "linear", factor: 2 } }]) {
      if (arch === "gpt2" || (arch === "phi3" && "rope_scaling" in v)) continue;
      const old = { ...j, ...v };
      assert.deepEqual(
        fromHfConfig(asTransformers5(old), { file: "v5.json" }),
        fromHfConfig(old, { file: "v4.json" }),
        arch,
      );
    }
    const f = { file: "config.json" };
    if (arch === "gpt2") assert.deepEqual(fromHfConfig(asTransformers5(j), f), fromHfConfig(j, f));
  }
  const qwen2 = await hfJson("qwen2");
  const sliding = { ...qwen2, use_sliding_window: true, sliding_window: 64, max_window_layers: 0 };
  assert.equal(fromHfConfig(asTransformers5(sliding), { file: "s.json" }).sliding_window, 64);
  throwsWith(
    () =>
      fromHfConfig({ ...asTransformers5(qwen2), layer_types: ["full_attention", "sliding_attention"] }, {
        file: "m.json",
      }),
    RangeError,
    /layer_types: mixes sliding and full attention layers/,
  );
  // messages name rope_parameters, which the file holds (they had said rope_scaling)
  throwsWith(
    () =>
      fromHfConfig({
        ...asTransformers5(qwen2),
        rope_parameters: { rope_type: "dynamic", factor: 2, rope_theta: 1e6 },
      }, {
        file: "d.json",
      }),
    RangeError,
    /rope_parameters\.rope_type: unsupported rope scaling "dynamic".*keep rope_theta/,
  );
  throwsWith(
    () => fromHfConfig({ ...asTransformers5(qwen2), rope_theta: 5 }, { file: "b.json" }),
    RangeError,
    /rope_parameters: is given with rope_theta, which it replaces/,
  );
});

Deno.test("validateModelConfig() lists every problem at once", () => {
  const msg = throwsWith(
    () =>
      validateModelConfig({
        hidden_size: 100,
        num_attention_heads: 8,
        head_dim: 12,
        num_key_value_heads: 3,
        norm: "batchnorm",
        tie_word_embedings: true,
        vocab_size: -1,
        attention_dropout: 1,
        eos_token_id: [],
      }, { source: "run/config.yaml" }),
    TypeError,
    /run\/config\.yaml: 5 problems/,
    /tie_word_embedings: unknown key; did you mean "tie_word_embeddings"/,
    /norm: expected one of "layernorm", "rmsnorm", got "batchnorm"/,
    /vocab_size: must be >= 1, got -1/,
    /attention_dropout: must be in \[0, 1\), got 1/,
    /eos_token_id: expected a token id, a non-empty list/,
  );
  assert.ok(msg.startsWith("Invalid model config in run/config.yaml"), msg);
  throwsWith(
    () => validateModelConfig({ hidden_size: 100, num_attention_heads: 8 }, { source: "a" }),
    RangeError,
    /hidden_size: 100 is not divisible by num_attention_heads 8/,
  );
  throwsWith(
    () =>
      validateModelConfig({ arch: "gpt2", hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 3 }, {
        source: "b",
      }),
    RangeError,
    /num_attention_heads 4 is not a multiple of num_key_value_heads 3/,
    /arch "gpt2" needs norm "layernorm"/,
    /arch "gpt2" needs qkv_layout "fused_gpt2_conv1d"/,
  );
  throwsWith(
    () => validateModelConfig({ bos_token_id: 512, sliding_window: 8 }, { source: "c" }),
    RangeError,
    /bos_token_id: token id 512 is outside the vocabulary \[0, 512\)/,
    /sliding_window: arch "llama" has no sliding window/,
  );
  throwsWith(
    () => validateModelConfig({ rope_scaling: { rope_type: "llama3", factor: 8 } }, { source: "d" }),
    TypeError,
    /rope_scaling\.low_freq_factor: expected a number, got undefined/,
  );
  throwsWith(() => validateModelConfig(null, { source: "e" }), TypeError, /\(root\)/);
  assert.deepEqual(validateModelConfig({}, { source: "defaults" }), { ...DEFAULT_MODEL_CONFIG });
});

Deno.test("presetConfig() validates overrides and refuses unknown names", () => {
  const c = presetConfig("small", { num_attention_heads: 12 });
  assert.deepEqual([c.head_dim, c.num_key_value_heads], [32, 12]);
  throwsWith(() => presetConfig("gpt2-small" as "tiny"), RangeError, /Unknown model preset: "gpt2-small"/);
  throwsWith(
    () => presetConfig("tiny", { vocab: 3 } as Partial<ModelConfig>),
    TypeError,
    /presetConfig\("tiny"\)/,
    /vocab: unknown key/,
  );
  assert.ok(Object.isFrozen(PRESETS.tiny) && Object.isFrozen(DEFAULT_MODEL_CONFIG));
  const tiny = presetConfig("tiny");
  assert.ok(tiny.vocab_size <= 1024 && tiny.hidden_size <= 128 && tiny.max_position_embeddings === 128);
});

Deno.test("withTokenIds: a tokenizer's bos / eos / pad ids replace a preset's, the preset's kept where it has none", () => {
  const tiny = presetConfig("tiny");
  assert.deepEqual([tiny.bos_token_id, tiny.eos_token_id, tiny.pad_token_id], [1, 2, 0]);
  const c = withTokenIds(tiny, { bos_token_id: 0, eos_token_id: 0, pad_token_id: 1 });
  assert.deepEqual([c.bos_token_id, c.eos_token_id, c.pad_token_id], [0, 0, 1]);
  const kept = withTokenIds(tiny, { bos_token_id: null, eos_token_id: 5, pad_token_id: null });
  assert.deepEqual([kept.bos_token_id, kept.eos_token_id, kept.pad_token_id], [1, 5, 0]);
  assert.deepEqual({ ...c, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 }, tiny, "nothing else changes");
  assert.equal(tiny.eos_token_id, 2, "the preset itself is not touched");
});
