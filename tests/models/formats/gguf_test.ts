/**
 * GGUF export: the Q8_0 / Q4_0 encoders against a transcription of ggml's reference quantizers;
 * every fixture architecture exported and read back by an independent parser
 * (`@huggingface/gguf`): metadata, tensor names, shapes, types, aligned offsets and the F32 bytes
 * against the Hugging Face weights laid out as `convert_hf_to_gguf.py` lays them out; LoRA adapters;
 * bad inputs; and the files run by real llama.cpp (`node-llama-cpp`): greedy tokens equal ours.
 */
import { gguf, type GGUFParseOutput } from "npm:@huggingface/gguf@~0.1.18";
import { createBackend } from "../../../kernels/backend.ts";
import { noGrad } from "../../../kernels/autograd.ts";
import type { Backend } from "../../../kernels/backend.ts";
import { readSafetensors } from "../../../models/formats/safetensors.ts";
import {
  exportGguf,
  exportGgufAdapter,
  type GgufOuttype,
  quantizeQ4_0,
  quantizeQ8_0,
} from "../../../models/formats/gguf.ts";
import { generate } from "../../../models/generate.ts";
import { loadModel } from "../../../models/pretrained.ts";
import { loadTokenizer } from "../../../models/tokenizer/tokenizer.ts";
import { trainBpeTokenizer } from "../../../models/tokenizer/bpe.ts";
import type { Tokenizer } from "../../../models/tokenizer/types.ts";
import { Transformer } from "../../../models/transformer.ts";
import {
  adapterConfig,
  adapterTensors,
  loadAdapter,
  mergeAdapter,
  removeAdapter,
} from "../../../training/peft.ts";
import { mulberry32 } from "../../../util/random.ts";
import { assert, FIXTURE_ARCHES, SHARED } from "../../_assert.ts";

const REF = `${SHARED}/fixtures/hf-reference`;
const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
const GGUF_ARCH: Record<string, string> = {
  llama: "llama",
  mistral: "llama",
  qwen2: "qwen2",
  phi3: "phi3",
  gpt2: "gpt2",
};

// ---------------------------------------------------------------- ggml's reference, transcribed

/** float32 rounding through a Float32Array (not Math.fround), as C's `float` temporaries. */
const f32 = (() => {
  const a = new Float32Array(1);
  return (x: number) => (a[0] = x, a[0]);
})();
/** f16 bits of a float (round to nearest even) through a DataView. */
function fp16(x: number): number {
  const v = new DataView(new ArrayBuffer(2));
  v.setFloat16(0, x, true);
  return v.getUint16(0, true);
}

/** `quantize_row_q8_0_ref` (ggml-quants.c), line by line. */
function refQ8_0(x: Float32Array): Uint8Array {
  const out = new DataView(new ArrayBuffer((x.length / 32) * 34));
  for (let i = 0; i < x.length / 32; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i * 32 + j]));
    const d = f32(amax / ((1 << 7) - 1));
    const id = d !== 0 ? f32(1 / d) : 0;
    out.setUint16(i * 34, fp16(d), true);
    for (let j = 0; j < 32; j++) {
      const x0 = f32(x[i * 32 + j] * id);
      out.setInt8(i * 34 + 2 + j, Math.sign(x0) * Math.round(Math.abs(x0))); // roundf: half away from zero
    }
  }
  return new Uint8Array(out.buffer);
}

/** `quantize_row_q4_0_ref` (ggml-quants.c), line by line. */
function refQ4_0(x: Float32Array): Uint8Array {
  const out = new DataView(new ArrayBuffer((x.length / 32) * 18));
  for (let i = 0; i < x.length / 32; i++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[i * 32 + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -8);
    const id = d !== 0 ? f32(1 / d) : 0;
    out.setUint16(i * 18, fp16(d), true);
    for (let j = 0; j < 16; j++) {
      const x0 = f32(x[i * 32 + j] * id), x1 = f32(x[i * 32 + 16 + j] * id);
      const xi0 = Math.min(15, Math.trunc(f32(x0 + 8.5))), xi1 = Math.min(15, Math.trunc(f32(x1 + 8.5)));
      out.setUint8(i * 18 + 2 + j, xi0 | (xi1 << 4));
    }
  }
  return new Uint8Array(out.buffer);
}

/** Blocks of awkward values: exact ties, zeros, a negative max, tiny and huge scales, random. */
function awkwardBlocks(): Float32Array {
  const blocks: number[][] = [];
  // Q8_0 ties: amax 127 gives d = 1, so k + 0.5 lands exactly on a tie.
  blocks.push([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, ...Array(23).fill(0.25)]);
  blocks.push(Array(32).fill(0)); // all zero: d = 0, id = 0
  blocks.push([-8, 7.5, -0.5, 0.5, 6.5, -7.5, 3.5, -3.5, ...Array(24).fill(1.5)]); // Q4_0 ties, negative max
  blocks.push([8, -7.5, 0.5, -0.5, ...Array(28).fill(-4.5)]); // positive max
  blocks.push([-3, 3, ...Array(30).fill(1)]); // |max| tie: the first one wins
  blocks.push(Array.from({ length: 32 }, (_, i) => (i - 16) * 1e-6)); // tiny scale (f16 subnormal d)
  blocks.push(Array.from({ length: 32 }, (_, i) => (i % 2 ? -1 : 1) * 6e4)); // near f16's max
  const rnd = mulberry32(7);
  for (let b = 0; b < 64; b++) {
    blocks.push(Array.from({ length: 32 }, () => (rnd() - 0.5) * 10 ** (b % 5 - 2)));
  }
  return Float32Array.from(blocks.flat());
}

Deno.test("quantizeQ8_0() equals ggml's quantize_row_q8_0_ref on ties, zeros and random blocks", () => {
  const x = awkwardBlocks();
  assert.deepEqual(quantizeQ8_0(x), refQ8_0(x));
  const q = new Int8Array(quantizeQ8_0(x.subarray(0, 32)).buffer, 2, 32);
  assert.deepEqual([...q.subarray(0, 9)], [127, 1, 2, 3, -1, -2, -3, 127, -127], "half away from zero");
  assert.ok(quantizeQ8_0(x.subarray(32, 64)).every((b) => b === 0), "an all-zero block is all zero bytes");
});

Deno.test("quantizeQ4_0() equals ggml's quantize_row_q4_0_ref on ties, zeros, negative max and random blocks", () => {
  const x = awkwardBlocks();
  assert.deepEqual(quantizeQ4_0(x), refQ4_0(x));
  const b = quantizeQ4_0(x.subarray(64, 96)); // max -8: d = 1, q = min(15, floor(x + 8.5))
  assert.equal(new DataView(b.buffer).getFloat16(0, true), 1);
  const nib = (j: number) => (j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(nib), [0, 15, 8, 9, 15, 1, 12, 5]);
  const z = quantizeQ4_0(x.subarray(32, 64));
  assert.deepEqual([...z], [0, 0x80, ...Array(16).fill(0x88)], "zeros: d = -0 (0 / -8), q = 8");
});

// ---------------------------------------------------------------- fixtures and an independent layout

let cpuBackend: Backend | null = null;
const backend = async () => cpuBackend ??= await createBackend("cpu");
let byteTok: Tokenizer | null = null;
/** A byte-level BPE tokenizer of 256 tokens and no specials (the fixtures' vocab is 256). */
async function tokenizer(): Promise<Tokenizer> {
  const none = { bos_token: null, eos_token: null, pad_token: null, unk_token: null };
  return byteTok ??= await trainBpeTokenizer(["abc"], { vocab_size: 256, special_tokens: [], ...none });
}

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-gguf-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** HF parameter -> llama.cpp tensor name (after gguf-py's `tensor_mapping.py`), with `{i}` as the layer. */
const HF_TO_GGUF: [RegExp, string][] = [
  [/^model\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^transformer\.wte\.weight$/, "token_embd.weight"],
  [/^transformer\.wpe\.weight$/, "position_embd.weight"],
  [/^model\.norm\.(weight|bias)$/, "output_norm.$1"],
  [/^transformer\.ln_f\.(weight|bias)$/, "output_norm.$1"],
  [/^lm_head\.(weight|bias)$/, "output.$1"],
  [/^model\.layers\.(\d+)\.input_layernorm\.(\w+)$/, "blk.$1.attn_norm.$2"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.(\w+)$/, "blk.$1.ffn_norm.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.(\w+)$/, "blk.$1.attn_q.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.(\w+)$/, "blk.$1.attn_k.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.(\w+)$/, "blk.$1.attn_v.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.qkv_proj\.(\w+)$/, "blk.$1.attn_qkv.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.(\w+)$/, "blk.$1.attn_output.$2"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.(\w+)$/, "blk.$1.ffn_gate.$2"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.(\w+)$/, "blk.$1.ffn_up.$2"],
  [/^model\.layers\.(\d+)\.mlp\.gate_up_proj\.(\w+)$/, "blk.$1.ffn_up.$2"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.(\w+)$/, "blk.$1.ffn_down.$2"],
  [/^transformer\.h\.(\d+)\.ln_1\.(\w+)$/, "blk.$1.attn_norm.$2"],
  [/^transformer\.h\.(\d+)\.ln_2\.(\w+)$/, "blk.$1.ffn_norm.$2"],
  [/^transformer\.h\.(\d+)\.attn\.c_attn\.(\w+)$/, "blk.$1.attn_qkv.$2"],
  [/^transformer\.h\.(\d+)\.attn\.c_proj\.(\w+)$/, "blk.$1.attn_output.$2"],
  [/^transformer\.h\.(\d+)\.mlp\.c_fc\.(\w+)$/, "blk.$1.ffn_up.$2"],
  [/^transformer\.h\.(\d+)\.mlp\.c_proj\.(\w+)$/, "blk.$1.ffn_down.$2"],
];

function ggufName(hf: string): string {
  for (const [re, to] of HF_TO_GGUF) if (re.test(hf)) return hf.replace(re, to);
  throw new Error(`no GGUF name for ${hf}`);
}

/** `LlamaModel.permute`: `w.reshape(heads, 2, D/2, cols).swapaxes(1, 2).reshape(w.shape)`. */
function permute(w: Float32Array, heads: number, cols: number): Float32Array {
  const D = w.length / cols / heads, out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < D / 2; j++) {
      for (let t = 0; t < 2; t++) {
        for (let c = 0; c < cols; c++) {
          out[((h * (D / 2) + j) * 2 + t) * cols + c] = w[((h * 2 + t) * (D / 2) + j) * cols + c];
        }
      }
    }
  }
  return out;
}

/** The tensors `convert_hf_to_gguf.py` writes for a fixture: name -> [ne, f32 values]. */
async function expectedTensors(arch: string): Promise<Map<string, [number[], Float32Array]>> {
  const cfg = JSON.parse(await Deno.readTextFile(`${REF}/${arch}/config.json`));
  const { tensors } = await readSafetensors(`${REF}/${arch}/model.safetensors`);
  const out = new Map<string, [number[], Float32Array]>();
  for (const [hf, t] of tensors) {
    if (/\.attn\.(masked_)?bias$|rotary_emb/.test(hf)) continue;
    let data = t.data as Float32Array, shape = [...t.shape];
    const conv1d = cfg.model_type === "gpt2" && shape.length === 2 && !/wte|wpe/.test(hf);
    if (conv1d) { // GPT2Model.modify_tensors: .transpose(1, 0)
      const [r, c] = shape, tr = new Float32Array(data.length);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) tr[j * r + i] = data[i * c + j];
      data = tr;
      shape = [c, r];
    }
    if (GGUF_ARCH[cfg.model_type] === "llama" && /self_attn\.[qk]_proj/.test(hf)) {
      const heads = /q_proj/.test(hf)
        ? cfg.num_attention_heads
        : cfg.num_key_value_heads ?? cfg.num_attention_heads;
      data = permute(data, heads, shape.length === 2 ? shape[1] : 1);
    }
    out.set(ggufName(hf), [[...shape].reverse(), data]);
    if (hf === "transformer.wte.weight") out.set("output.weight", [[...shape].reverse(), data]); // gpt2: tied head written
  }
  return out;
}

/** The type a tensor should get for an outtype (norms, 1-D and position tables F32). */
function expectedType(name: string, ne: number[], outtype: GgufOuttype): number {
  if (ne.length === 1 || name.endsWith("_norm.weight") || name === "position_embd.weight") return GGML.F32;
  const t = ({ f32: GGML.F32, f16: GGML.F16, q8_0: GGML.Q8_0, q4_0: GGML.Q4_0 } as const)[outtype];
  return (t === GGML.Q8_0 || t === GGML.Q4_0) && ne[0] % 32 ? GGML.F16 : t;
}

const BYTES = (type: number, n: number) =>
  type === GGML.F32 ? 4 * n : type === GGML.F16 ? 2 * n : type === GGML.Q8_0 ? (n / 32) * 34 : (n / 32) * 18;

/** Check the layout of a parsed file: aligned, ordered, non-overlapping offsets that end at the file's end. */
function checkOffsets(p: GGUFParseOutput, size: number): void {
  assert.equal(Number(p.tensorDataOffset) % 32, 0, "data section aligned");
  let end = 0;
  for (const t of p.tensorInfos) {
    const off = Number(t.offset), n = t.shape.reduce((a, b) => a * Number(b), 1);
    assert.equal(off % 32, 0, `${t.name} offset ${off} aligned to 32`);
    assert.ok(off >= end, `${t.name} does not overlap the tensor before it`);
    end = off + BYTES(t.dtype, n);
  }
  assert.equal(
    size,
    Number(p.tensorDataOffset) + Math.ceil(end / 32) * 32,
    "file ends after the last tensor",
  );
}

const parse = (path: string) =>
  gguf(path, { allowLocalFile: true }) as Promise<GGUFParseOutput<{ strict: false }>>;

for (const outtype of ["f32", "f16", "q8_0", "q4_0"] as const) {
  Deno.test(`exportGguf() ${outtype}: @huggingface/gguf reads every fixture arch's metadata, names, shapes, types and offsets`, async () => {
    const tok = await tokenizer();
    for (const [i, arch] of FIXTURE_ARCHES.entries()) {
      const cfg = JSON.parse(await Deno.readTextFile(`${REF}/${arch}/config.json`));
      const model = await loadModel(`${REF}/${arch}`, { backend: await backend() });
      await withTmp(async (dir) => {
        const path = `${dir}/${arch}.gguf`;
        const r = await exportGguf(model, path, { tokenizer: tok, outtype, name: `fixture ${i}` });
        const p = await parse(path), m = p.metadata, a = GGUF_ARCH[cfg.model_type];
        const size = (await Deno.stat(path)).size;
        assert.deepEqual(r, { path, bytes: size, tensors: p.tensorInfos.length });
        assert.equal(m.version, 3);
        const want: Record<string, unknown> = {
          "general.architecture": a,
          "general.type": "model",
          "general.name": `fixture ${i}`,
          "general.alignment": 32,
          "general.file_type": { f32: 0, f16: 1, q4_0: 2, q8_0: 7 }[outtype],
          [`${a}.context_length`]: cfg.max_position_embeddings ?? cfg.n_positions,
          [`${a}.embedding_length`]: cfg.hidden_size ?? cfg.n_embd,
          [`${a}.block_count`]: cfg.num_hidden_layers ?? cfg.n_layer,
          [`${a}.feed_forward_length`]: cfg.intermediate_size ?? cfg.n_inner,
          [`${a}.attention.head_count`]: cfg.num_attention_heads ?? cfg.n_head,
          "tokenizer.ggml.model": "gpt2",
          "tokenizer.ggml.pre": "gpt-2",
          "tokenizer.ggml.bos_token_id": cfg.bos_token_id,
          "tokenizer.ggml.eos_token_id": cfg.eos_token_id,
          "tokenizer.ggml.padding_token_id": cfg.pad_token_id,
          "tokenizer.ggml.add_bos_token": false,
        };
        if (a === "gpt2") want[`${a}.attention.layer_norm_epsilon`] = Math.fround(cfg.layer_norm_epsilon);
        else {
          Object.assign(want, {
            [`${a}.attention.head_count_kv`]: cfg.num_key_value_heads,
            [`${a}.attention.layer_norm_rms_epsilon`]: Math.fround(cfg.rms_norm_eps),
            [`${a}.rope.freq_base`]: cfg.rope_theta,
            [`${a}.rope.dimension_count`]: cfg.hidden_size / cfg.num_attention_heads,
          });
        }
        for (const [k, v] of Object.entries(want)) assert.equal(m[k], v, `${arch} ${outtype}: ${k}`);
        const tokens = m["tokenizer.ggml.tokens"] as string[];
        assert.equal(tokens.length, 256);
        assert.equal(tokens[0x41], "A");
        assert.equal(tokens[0x20], "\u0120", "byte-level alphabet: space is Ġ");
        assert.deepEqual([...new Set(m["tokenizer.ggml.token_type"] as number[])], [1]);
        assert.deepEqual(m["tokenizer.ggml.merges"], []);

        const expected = await expectedTensors(arch);
        assert.deepEqual(
          p.tensorInfos.map((t) => t.name).sort(),
          [...expected.keys()].sort(),
          `${arch} tensor names`,
        );
        checkOffsets(p, size);
        const bytes = await Deno.readFile(path);
        for (const t of p.tensorInfos) {
          const [ne, data] = expected.get(t.name)!;
          assert.deepEqual(t.shape.map(Number), ne, `${arch} ${t.name} ne`);
          assert.equal(t.dtype, expectedType(t.name, ne, outtype), `${arch} ${outtype} ${t.name} type`);
          if (t.dtype !== GGML.F32) continue;
          const at = Number(p.tensorDataOffset + t.offset);
          const got = new Float32Array(bytes.slice(at, at + 4 * data.length).buffer);
          assert.deepEqual(got, data, `${arch} ${t.name}: the HF values in the converter's layout`);
        }
      });
      model.dispose();
    }
  });
}

Deno.test("exportGguf() writes named chat templates as gguf-py does: tokenizer.chat_template.<name> and the list", async () => {
  const model = await loadModel(`${REF}/llama`, { backend: await backend() });
  await withTmp(async (dir) => {
    await (await tokenizer()).save(`${dir}/tok`);
    const cfgPath = `${dir}/tok/tokenizer_config.json`;
    const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    cfg.chat_template = [
      { name: "default", template: "{% for m in messages %}{{ m.content }}{% endfor %}" },
      { name: "tool_use", template: "{{ tools }}" },
      { name: "rag-v2", template: "{{ documents }}" },
    ];
    await Deno.writeTextFile(cfgPath, JSON.stringify(cfg));
    const tok = await loadTokenizer(`${dir}/tok`);
    await exportGguf(model, `${dir}/m.gguf`, { tokenizer: tok, outtype: "f32" });
    const m = (await parse(`${dir}/m.gguf`)).metadata;
    assert.equal(m["tokenizer.chat_template"], cfg.chat_template[0].template);
    assert.equal(m["tokenizer.chat_template.tool_use"], "{{ tools }}");
    assert.equal(
      m["tokenizer.chat_template.rag_v2"],
      "{{ documents }}",
      "name characters outside [A-Za-z0-9] as _",
    );
    assert.deepEqual(m["tokenizer.chat_templates"], ["tool_use", "rag_v2"]);
    // a broken named template is refused at export, naming it
    cfg.chat_template[1].template = "{% if tools %}";
    await Deno.writeTextFile(cfgPath, JSON.stringify(cfg));
    await rejects(
      exportGguf(model, `${dir}/b.gguf`, { tokenizer: await loadTokenizer(`${dir}/tok`) }),
      SyntaxError,
      /chat_template "tool_use": .*never closed/,
    );
  });
  model.dispose();
});

Deno.test("exportGgufAdapter() writes every fixture's LoRA as convert_lora_to_gguf.py does", async () => {
  for (const arch of FIXTURE_ARCHES) {
    const cfg = JSON.parse(await Deno.readTextFile(`${REF}/${arch}/config.json`));
    const model = await loadModel(`${REF}/${arch}`, { backend: await backend() });
    const c = await loadAdapter(model, `${REF}/${arch}/lora`);
    const { tensors } = await readSafetensors(`${REF}/${arch}/lora/adapter_model.safetensors`);
    await withTmp(async (dir) => {
      const path = `${dir}/lora.gguf`;
      const adapter = { ...c, tensors: await adapterTensors(model) };
      await exportGgufAdapter(model, path, { adapter });
      const p = await parse(path), m = p.metadata;
      assert.equal(m["general.architecture"], GGUF_ARCH[cfg.model_type]);
      assert.equal(m["general.type"], "adapter");
      assert.equal(m["adapter.type"], "lora");
      assert.equal(m["adapter.lora.alpha"], 8);
      checkOffsets(p, (await Deno.stat(path)).size);
      const bytes = await Deno.readFile(path);
      assert.equal(p.tensorInfos.length, tensors.size, `${arch}: one lora_a / lora_b per PEFT tensor`);
      for (const [key, t] of tensors) {
        const base = ggufName(
          key.replace("base_model.model.", "").replace(/\.lora_[AB]\.weight$/, ".weight"),
        );
        const name = `${base}.lora_${/lora_A/.test(key) ? "a" : "b"}`;
        const info = p.tensorInfos.find((x) => x.name === name);
        assert.ok(info, `${arch}: ${name} for ${key}`);
        assert.deepEqual(info.shape.map(Number), [...t.shape].reverse(), name);
        assert.equal(info.dtype, GGML.F32);
        let want = t.data as Float32Array;
        if (GGUF_ARCH[cfg.model_type] === "llama" && /[qk]_proj\.lora_B/.test(key)) {
          want = permute(
            want,
            /q_proj/.test(key) ? cfg.num_attention_heads : cfg.num_key_value_heads,
            t.shape[1],
          );
        }
        const at = Number(p.tensorDataOffset + info.offset);
        assert.deepEqual(
          new Float32Array(bytes.slice(at, at + 4 * want.length).buffer),
          want,
          `${arch} ${name}`,
        );
      }
    });
    model.dispose();
  }
});

// ---------------------------------------------------------------- bad input

async function rejects(p: Promise<unknown>, cls: ErrorConstructor, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert.match((e as Error).message, re);
    assert.ok(!(e as Error).message.includes("\n"), "one line");
    return;
  }
  assert.fail("expected a rejection");
}

Deno.test("exportGguf() refuses bad input with one-line errors naming the fix", async () => {
  const be = await backend(), tok = await tokenizer();
  const model = await loadModel(`${REF}/llama`, { backend: be });
  await withTmp(async (dir) => {
    const path = `${dir}/m.gguf`;
    await rejects(
      exportGguf(model, path, { tokenizer: tok, outtype: "q5_k" as GgufOuttype }),
      RangeError,
      /outtype "q5_k" is not supported; use one of f32, f16, q8_0, q4_0/,
    );
    await rejects(exportGguf(model, path, {} as never), TypeError, /no tokenizer.*pass opts\.tokenizer/);
    // a weight past what a block's f16 scale holds: Q8_0 / Q4_0 wrote an infinite scale (NaN logits in llama.cpp)
    const w = model.p("layers.0.mlp.down.weight"), saved = await w.toArray() as Float32Array;
    const huge = saved.slice();
    huge[0] = 1e6;
    w.dispose();
    model.params.set("layers.0.mlp.down.weight", be.fromArray(huge, w.shape));
    await rejects(
      exportGguf(model, path, { tokenizer: tok, outtype: "q4_0" }),
      RangeError,
      /Cannot export blk\.0\.ffn_down\.weight as Q4_0: value 1000000 needs a block scale past the f16 range \(\|value\| <= 524032\); use outtype f32/,
    );
    huge[0] = 1e8;
    model.params.get("layers.0.mlp.down.weight")!.dispose();
    model.params.set("layers.0.mlp.down.weight", be.fromArray(huge, w.shape));
    await rejects(
      exportGguf(model, path, { tokenizer: tok, outtype: "q8_0" }),
      RangeError,
      /as Q8_0: value 100000000 needs/,
    );
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound, "nothing written");
    model.params.get("layers.0.mlp.down.weight")!.dispose();
    model.params.set("layers.0.mlp.down.weight", be.fromArray(saved, w.shape));
    const odd = { config: { ...model.config, arch: "falcon" } } as unknown as Transformer;
    await rejects(
      exportGguf(odd, path, { tokenizer: tok }),
      RangeError,
      /architecture "falcon" is not supported \(llama, mistral, qwen2, phi3, gpt2\)/,
    );
    const layer = { config: { ...model.config, norm: "layernorm" } } as unknown as Transformer;
    await rejects(
      exportGguf(layer, path, { tokenizer: tok }),
      RangeError,
      /llama needs rmsnorm, rope and a SwiGLU MLP/,
    );
    const big = await trainBpeTokenizer(["abcabc abcabc"], { vocab_size: 260 });
    await rejects(
      exportGguf(model, path, { tokenizer: big }),
      RangeError,
      /260 ids but the model's vocab_size is 256/,
    );
    await rejects(
      exportGguf(model, path, { tokenizer: tok, name: "my phi-3" }),
      RangeError,
      /choose another name/,
    );
    await exportGguf(model, path, { tokenizer: tok, outtype: "f32" });
    await rejects(exportGguf(model, path, { tokenizer: tok }), RangeError, /already exists; pass overwrite/);
    // a "false" once overwrote the file; an empty name was written as general.name
    const before = await Deno.readFile(path);
    await rejects(
      exportGguf(model, path, { tokenizer: tok, overwrite: "false" as never }),
      TypeError,
      /overwrite must be true or false, got "false"/,
    );
    assert.deepEqual(await Deno.readFile(path), before, "the file is untouched");
    await rejects(
      exportGguf(model, `${dir}/n.gguf`, { tokenizer: tok, name: "" }),
      TypeError,
      /name must be non-empty text/,
    );
    const none = { bos_token: null, eos_token: null, pad_token: null, unk_token: null }; // a template left open
    const broken = await trainBpeTokenizer(["abc"], {
      vocab_size: 256,
      special_tokens: [],
      ...none,
      chat_template: "{% for m in messages %}{{ m.content }}",
    });
    await rejects(
      exportGguf(model, `${dir}/t.gguf`, { tokenizer: broken }),
      SyntaxError,
      /the tokenizer's chat_template: a \{% for %\} block is never closed/,
    );
    await exportGguf(model, path, { tokenizer: tok, overwrite: true });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.gguf"], "no temp files left");
    await loadAdapter(model, `${REF}/llama/lora`);
    await rejects(
      exportGguf(model, `${dir}/a.gguf`, { tokenizer: tok }),
      RangeError,
      /adapter attached .*merge it first/,
    );
    removeAdapter(model);
    const dora = { lora_alpha: 8, r: 4, use_dora: true, tensors: new Map() };
    await rejects(exportGgufAdapter(model, `${dir}/d.gguf`, { adapter: dora }), RangeError, /DoRA.*merge it/);
    const bias = new Map([["base_model.model.model.layers.0.self_attn.q_proj.bias", {
      shape: [64],
      data: new Float32Array(64),
    }]]);
    await rejects(
      exportGgufAdapter(model, `${dir}/b.gguf`, { adapter: { lora_alpha: 8, r: 4, tensors: bias } }),
      RangeError,
      /not a lora_A \/ lora_B/,
    );
    await rejects(
      exportGgufAdapter(model, `${dir}/q.gguf`, { adapter: dora, outtype: "q4_0" as "f32" }),
      RangeError,
      /use one of f32, f16, q8_0/,
    );
    // values that once wrote a wrong alpha (use_rslora "false" doubled it) or an empty adapter
    const lora = { lora_alpha: 8, r: 4, tensors: bias };
    for (
      const [adapter, cls, re] of [
        [
          { ...lora, use_rslora: "false" },
          TypeError,
          /adapter: use_rslora must be true or false, got "false"/,
        ],
        [{ ...lora, lora_alpha: NaN }, RangeError, /adapter lora_alpha NaN is not a number > 0/],
        [{ ...lora, lora_alpha: -8 }, RangeError, /adapter lora_alpha -8 is not a number > 0/],
        [{ ...lora, r: 0 }, RangeError, /adapter r 0 is not an integer >= 1/],
        [{ ...lora, tensors: new Map() }, RangeError, /the adapter has no lora_A \/ lora_B tensors/],
      ] as const
    ) {
      await rejects(exportGgufAdapter(model, `${dir}/x.gguf`, { adapter: adapter as never }), cls, re);
    }
  });
  model.dispose();
});

// ---------------------------------------------------------------- real llama.cpp

type NodeLlama = typeof import("npm:node-llama-cpp@3.21.1");
type Llama = Awaited<ReturnType<NodeLlama["getLlama"]>>;

/** node-llama-cpp with its prebuilt CPU binary, or the reason it cannot run here. */
async function startLlama(): Promise<{ lib: NodeLlama; llama: Llama } | { reason: string }> {
  try {
    const lib = await import("npm:node-llama-cpp@3.21.1");
    // build "never": a prebuilt binary or nothing (no compiler, no download at run time).
    const llama = await lib.getLlama({
      gpu: false,
      build: "never",
      logLevel: lib.LlamaLogLevel.error,
      progressLogs: false,
    });
    return { lib, llama };
  } catch (e) {
    return { reason: `node-llama-cpp@3.21.1 cannot run here: ${(e as Error).message?.split("\n")[0] ?? e}` };
  }
}
const LLAMA = await startLlama();
if ("reason" in LLAMA) console.warn(`SKIPPED llama.cpp tests: ${LLAMA.reason}`);
/** The issue asks for llama and qwen2; every fixture arch runs in llama.cpp, so all are checked. */
const LLAMA_ARCHES = FIXTURE_ARCHES;
const N = 12;

/** Greedy continuation by llama.cpp of `prompt`, `n` tokens, with an optional LoRA file. */
async function llamaGreedy(file: string, prompts: number[][], n: number, lora?: string): Promise<number[][]> {
  const { llama } = LLAMA as { llama: Llama };
  const model = await llama.loadModel({ modelPath: file });
  try {
    const out: number[][] = [];
    for (const prompt of prompts) {
      // One thread: llama.cpp's worker threads spin, which on a shared 2-core machine costs seconds per token.
      const ctx = await model.createContext({
        contextSize: 128,
        sequences: 1,
        threads: 1,
        ...(lora ? { lora } : {}),
      });
      try {
        const toks: number[] = [];
        for await (const t of ctx.getSequence().evaluate(prompt as never, { temperature: 0 })) {
          toks.push(t as number);
          if (toks.length >= n) break;
        }
        out.push(toks);
      } finally {
        await ctx.dispose();
      }
    }
    return out;
  } finally {
    await model.dispose();
  }
}

/** llama.cpp's argmax next token after every position of each sequence (teacher forced). */
async function llamaNextTokens(file: string, seqs: number[][]): Promise<number[][]> {
  const { llama } = LLAMA as { llama: Llama };
  const model = await llama.loadModel({ modelPath: file });
  try {
    const out: number[][] = [];
    for (const s of seqs) {
      const ctx = await model.createContext({ contextSize: 128, sequences: 1, threads: 1 });
      try {
        const res = await ctx.getSequence().controlledEvaluate(
          s.map((t) => [t, { generateNext: { token: true, options: { temperature: 0 } } }] as never),
        );
        out.push(s.map((_, i) => res[i]?.next.token as number));
      } finally {
        await ctx.dispose();
      }
    }
    return out;
  } finally {
    await model.dispose();
  }
}

/** Our greedy continuation (no EOS stop, as llama.cpp's raw evaluation). */
async function oursGreedy(model: Transformer, prompts: number[][], n: number): Promise<number[][]> {
  const r = await generate(model, prompts, { max_new_tokens: n, do_sample: false, eos_token_id: null });
  return r.tokens;
}

/** Our argmax after every position. */
async function oursNextTokens(model: Transformer, seqs: number[][]): Promise<number[][]> {
  const out: number[][] = [];
  for (const s of seqs) {
    const logits = noGrad(() => model.forward(model.backend.fromArray(s, [1, s.length], "i32")));
    const v = await logits.toArray() as Float32Array, V = model.config.vocab_size;
    logits.dispose();
    out.push(s.map((_, i) => {
      let best = 0;
      for (let j = 1; j < V; j++) if (v[i * V + j] > v[i * V + best]) best = j;
      return best;
    }));
  }
  return out;
}

/** Prompts: the fixture's greedy prompt, its two case rows, and seeded random ones. */
async function prompts(arch: string): Promise<number[][]> {
  const { tensors } = await readSafetensors(`${REF}/${arch}/cases.safetensors`);
  const ids = (n: string) => Array.from(tensors.get(n)!.data as BigInt64Array, Number);
  const rows = ids("input_ids"), mask = ids("attention_mask");
  const rnd = mulberry32(11);
  return [
    ids("greedy_prompt"),
    rows.slice(16, 32).filter((_, i) => mask[16 + i] === 1),
    ...[5, 9, 23].map((len) => Array.from({ length: len }, () => 3 + Math.floor(rnd() * 253))),
  ];
}

const llamaTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name,
    ignore: "reason" in LLAMA,
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });

llamaTest("llama.cpp runs every fixture arch's F32 GGUF to our greedy tokens", async () => {
  for (const arch of LLAMA_ARCHES) {
    const model = await loadModel(`${REF}/${arch}`, { backend: await backend() });
    await withTmp(async (dir) => {
      await exportGguf(model, `${dir}/m.gguf`, { tokenizer: await tokenizer(), outtype: "f32" });
      const ps = await prompts(arch);
      assert.deepEqual(await llamaGreedy(`${dir}/m.gguf`, ps, N), await oursGreedy(model, ps, N), arch);
    });
    model.dispose();
  }
});

llamaTest("llama.cpp runs the F16 GGUF to the greedy tokens of our f16-weight model", async () => {
  for (const arch of LLAMA_ARCHES) {
    const model = await loadModel(`${REF}/${arch}`, { backend: await backend(), dtype: "f16" });
    await withTmp(async (dir) => {
      await exportGguf(model, `${dir}/m.gguf`, { tokenizer: await tokenizer(), outtype: "f16" });
      const ps = await prompts(arch);
      assert.deepEqual(await llamaGreedy(`${dir}/m.gguf`, ps, N), await oursGreedy(model, ps, N), arch);
    });
    model.dispose();
  }
});

/** Blocks of 32 decoded: Q8_0 `d · q`, Q4_0 `d · (q − 8)` (ggml's `dequantize_row_*`). */
function dequantize(b: Uint8Array, outtype: "q8_0" | "q4_0"): Float32Array {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength), size = outtype === "q8_0" ? 34 : 18;
  const out = new Float32Array((b.length / size) * 32);
  for (let i = 0; i < b.length / size; i++) {
    const d = v.getFloat16(i * size, true);
    for (let j = 0; j < 32; j++) {
      out[i * 32 + j] = outtype === "q8_0"
        ? d * v.getInt8(i * size + 2 + j)
        : d * ((j < 16 ? b[i * size + 2 + j] & 15 : b[i * size + 2 + j - 16] >> 4) - 8);
    }
  }
  return out;
}

/** The model with every weight matrix (not gpt2's position table) round-tripped through `outtype`. */
async function roundTripped(model: Transformer, outtype: "q8_0" | "q4_0"): Promise<Transformer> {
  const params = new Map(model.params);
  for (const [name, t] of model.params) {
    if (t.shape.length !== 2 || name === "pos_embed.weight") continue;
    const x = await t.toArray() as Float32Array;
    const q = outtype === "q8_0" ? quantizeQ8_0(x) : quantizeQ4_0(x);
    params.set(name, model.backend.fromArray(dequantize(q, outtype), t.shape));
  }
  return new Transformer(model.config, params, model.backend);
}

llamaTest(
  "llama.cpp's Q8_0 / Q4_0 next tokens agree with ours on at least 90% of positions",
  async () => {
    for (const arch of LLAMA_ARCHES) {
      const model = await loadModel(`${REF}/${arch}`, { backend: await backend() });
      const seqs = (await prompts(arch)).map((p, i) => [
        ...p,
        ...Array.from({ length: 24 }, (_, j) => 3 + ((i * 37 + j * 101) % 253)),
      ]);
      const agree = (a: number[][], b: number[][]) => a.flat().filter((t, i) => t === b.flat()[i]).length;
      const total = seqs.flat().length, f32 = await oursNextTokens(model, seqs);
      for (const outtype of ["q8_0", "q4_0"] as const) {
        await withTmp(async (dir) => {
          await exportGguf(model, `${dir}/m.gguf`, { tokenizer: await tokenizer(), outtype });
          const theirs = await llamaNextTokens(`${dir}/m.gguf`, seqs);
          const same = await roundTripped(model, outtype);
          const vsSame = agree(theirs, await oursNextTokens(same, seqs)), vsF32 = agree(theirs, f32);
          console.log(
            `${arch} ${outtype}: ${vsSame}/${total} next tokens agree with ours on the same ` +
              `${outtype} weights, ${vsF32}/${total} with our f32 model`,
          );
          assert.ok(
            vsSame / total >= 0.9,
            `${arch} ${outtype}: ${vsSame}/${total} agree on the same weights`,
          );
          if (outtype === "q8_0") {
            assert.ok(vsF32 / total >= 0.9, `${arch} q8_0: ${vsF32}/${total} agree with f32`);
          }
          for (const [n, t] of same.params) if (t !== model.params.get(n)) t.dispose();
        });
      }
      model.dispose();
    }
  },
);

llamaTest(
  "llama.cpp applies the LoRA GGUF on the base GGUF and gives the merged model's tokens",
  async () => {
    for (const arch of LLAMA_ARCHES) {
      const model = await loadModel(`${REF}/${arch}`, { backend: await backend() });
      await withTmp(async (dir) => {
        await exportGguf(model, `${dir}/base.gguf`, { tokenizer: await tokenizer(), outtype: "f32" });
        await loadAdapter(model, `${REF}/${arch}/lora`);
        const adapter = { ...adapterConfig(model)!, tensors: await adapterTensors(model) };
        await exportGgufAdapter(model, `${dir}/lora.gguf`, { adapter });
        mergeAdapter(model);
        const ps = await prompts(arch);
        const base = await llamaGreedy(`${dir}/base.gguf`, ps, N);
        const merged = await oursGreedy(model, ps, N);
        assert.notDeepEqual(base, merged, "the adapter changes the tokens");
        assert.deepEqual(await llamaGreedy(`${dir}/base.gguf`, ps, N, `${dir}/lora.gguf`), merged, arch);
        // a q8_0 adapter (convert_lora_to_gguf.py --outtype q8_0) loads and applies too
        await exportGgufAdapter(model, `${dir}/lora-q8.gguf`, { adapter, outtype: "q8_0" });
        const q8 = (await llamaGreedy(`${dir}/base.gguf`, ps, N, `${dir}/lora-q8.gguf`)).flat();
        const agree = q8.filter((t, i) => t === merged.flat()[i]).length;
        assert.ok(agree / q8.length >= 0.9, `${arch} q8_0 adapter: ${agree}/${q8.length} tokens as merged`);
      });
      model.dispose();
    }
  },
);

if (!("reason" in LLAMA)) {
  // Release the native backend after the last test (its worker threads hold the process otherwise).
  globalThis.addEventListener("unload", () => void LLAMA.llama.dispose());
}
