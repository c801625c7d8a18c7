/**
 * GGUF export for llama.cpp / Ollama: {@linkcode exportGguf} writes a model (llama, mistral, qwen2,
 * phi3, gpt2) as GGUF v3 with the tensor names, metadata keys and layouts llama.cpp's
 * `convert_hf_to_gguf.py` writes, and {@linkcode exportGgufAdapter} a LoRA adapter as
 * `convert_lora_to_gguf.py` does (a file llama.cpp applies with `--lora`).
 *
 * Layout notes (what llama.cpp expects, checked against `convert_hf_to_gguf.py`):
 * - `ne` is innermost first: a `[out, in]` weight is stored with `ne = [in, out]`.
 * - mistral is written as arch `llama`. llama.cpp's `llama` graph rotates adjacent pairs (GPT-J
 *   rope), so the converter permutes the rows of HF's q / k weights (and biases, and a LoRA's
 *   `lora_b`) from rotate-half order: within each head, row `t·D/2 + j` moves to `2j + t`. qwen2 and
 *   phi3 rotate halves in llama.cpp too (NEOX), so nothing is permuted there. A model whose weights
 *   are already in adjacent-pair order (`rope_interleaved`) is permuted the other way for qwen2 / phi3.
 * - phi3 keeps its fused `attn_qkv` (q, k, v rows) and `ffn_up` (gate rows, then up rows); gpt2 its
 *   fused `attn_qkv`, and `output.weight` repeats the tied embedding (as the converter writes it).
 *   A tied llama / qwen2 head has no `output.weight` (llama.cpp reuses `token_embd`).
 * - Llama 3 rope scaling becomes the `rope_freqs.weight` factors; linear scaling the
 *   `rope.scaling.*` keys.
 * - Types by outtype: norms, biases, other 1-D tensors and gpt2's position table stay F32; the
 *   other matrices are F16, Q8_0 or Q4_0 (Q4_0 is llama-quantize's `--pure` Q4_0: the converter has no
 *   q4_0). A matrix whose rows are not a multiple of 32 falls back to F16, as the converter does.
 * - gpt2's `feed_forward_length` is the real inner width: the converter writes 4 · n_embd, which
 *   llama.cpp cannot load when `n_inner` differs.
 *
 * @module
 */
import type { Tokenizer } from "../tokenizer/types.ts";
import type { Transformer } from "../transformer.ts";
import {
  archMetadata,
  checkExportable,
  checkRange,
  GGUF_ARCH,
  type GgufOuttype,
  modelTensors,
  OUTTYPES,
  ropePermutation,
  tensorType,
} from "./_gguf_arch.ts";
import {
  GGUF_ALIGNMENT,
  type GgufTensorSpec,
  type GgufValue,
  type GgufWriteResult,
  writeGguf,
} from "./_gguf_file.ts";
import { tokenizerMetadata } from "./_gguf_vocab.ts";
import { checkBooleans, checkPathArg, refuseUnknownOptions } from "../../util/problems.ts";
import { checkTokenizerArg, refuseOtherFormat } from "./_export_args.ts";

export { quantizeQ4_0, quantizeQ8_0 } from "./_gguf_quant.ts";
export type { GgufWriteResult } from "./_gguf_file.ts";

export type { GgufOuttype } from "./_gguf_arch.ts";

/** Options of {@linkcode exportGguf}. */
export interface ExportGgufOptions {
  /** The model's tokenizer (byte-level BPE): llama.cpp needs the vocabulary in the file. */
  tokenizer: Tokenizer;
  /** Type of the weight matrices; default `"f16"` (norms and biases stay F32). */
  outtype?: GgufOuttype;
  /** Replace an existing file; default false. */
  overwrite?: boolean;
  /**
   * `general.name`; default `fledge-<family>` (`fledge-phi` for phi3). llama.cpp treats a name
   * containing "phi3" / "phi-3" as Microsoft's Phi-3 and then requires its `<|end|>` token, so such
   * a name is refused for a tokenizer without one.
   */
  name?: string;
}

/** A LoRA adapter in PEFT's names and layout (what `training/peft.ts` `adapterTensors` returns). */
export interface GgufLoraAdapter {
  /** PEFT `lora_alpha`. */
  lora_alpha: number;
  /** PEFT `r`. */
  r: number;
  /** PEFT `use_rslora` (scaling alpha / sqrt(r)). */
  use_rslora?: boolean;
  /** PEFT `use_dora`: DoRA cannot be expressed as a llama.cpp adapter (merge it instead). */
  use_dora?: boolean;
  /** `base_model.model.<module>.lora_A.weight` `[r, in]` and `...lora_B.weight` `[out, r]`. */
  tensors: ReadonlyMap<string, { shape: number[]; data: Float32Array }>;
}

/** Options of {@linkcode exportGgufAdapter}. */
export interface ExportGgufAdapterOptions {
  /** The adapter's tensors and config. */
  adapter: GgufLoraAdapter;
  /** Type of `lora_a` / `lora_b`; default `"f32"` (as `convert_lora_to_gguf.py`); q4_0 is not offered. */
  outtype?: Exclude<GgufOuttype, "q4_0">;
  /** Replace an existing file; default false. */
  overwrite?: boolean;
  /** `general.name`; default `fledge-<family>-lora`. */
  name?: string;
}

/** general.name must be non-empty text (llama.cpp shows it as the model's name). */
function checkName(name: unknown): void {
  if (typeof name !== "string" || !name.trim()) {
    throw new TypeError(
      `Cannot export to GGUF: name must be non-empty text, got ${JSON.stringify(name)} (--name)`,
    );
  }
}

/** `general.name`: the given one (checked against llama.cpp's Phi-3 rule) or a default. */
function modelName(opts: ExportGgufOptions, arch: string): string {
  const name = opts.name ?? `fledge-${arch === "phi3" ? "phi" : arch}`;
  checkName(name);
  if (/phi-?3/i.test(name) && opts.tokenizer.tokenToId("<|end|>") === null) {
    throw new RangeError(
      `Cannot export to GGUF with name ${JSON.stringify(name)}: llama.cpp treats a general.name containing ` +
        `"phi3" as Phi-3 and then needs the token <|end|>, which this tokenizer lacks; choose another name (--name)`,
    );
  }
  return name;
}

/**
 * A parameter count as gguf-py's `size_label` writes it (`model_weight_count_rounded_notation`):
 * K, M, B or T with at least two significant digits, e.g. 494032768 -> "494M", 1.54e9 -> "1.5B".
 * @example
 * ```ts
 * import { sizeLabel } from "./gguf.ts";
 * if (sizeLabel(494_032_768) !== "494M" || sizeLabel(1_543_714_304) !== "1.5B") throw new Error();
 * if (sizeLabel(230_208) !== "230K" || sizeLabel(7_615_616_512) !== "7.6B") throw new Error();
 * ```
 */
export function sizeLabel(count: number): string {
  const [scale, suffix] = count > 1e12
    ? [1e-12, "T"]
    : count > 1e9
    ? [1e-9, "B"]
    : count > 1e6
    ? [1e-6, "M"]
    : [1e-3, "K"];
  const scaled = count * scale;
  const digits = String(Math.round(scaled)).replace(/^0+/, "").length;
  return `${scaled.toFixed(Math.max(2 - digits, 0))}${suffix}`;
}

/** `general.*` keys every file starts with. */
function generalMetadata(arch: string, type: "model" | "adapter", name: string): [string, GgufValue][] {
  return [
    ["general.architecture", { type: "string", value: arch }],
    ["general.type", { type: "string", value: type }],
    ["general.name", { type: "string", value: name }],
    ["general.alignment", { type: "u32", value: GGUF_ALIGNMENT }],
    ["general.quantization_version", { type: "u32", value: 2 }],
  ];
}

/**
 * Write `model` as a GGUF v3 file llama.cpp loads (`llama-cli -m FILE`, Ollama `FROM FILE`): llama.cpp's
 * tensor names and metadata keys for its family, the tokenizer's vocabulary, merges and special
 * ids, weights as `outtype` (norms and biases F32). The file is written atomically.
 *
 * @param model a llama, mistral, qwen2, phi3 or gpt2 model (f32, f16 or 4-bit weights) with no
 *   adapter attached: merge it first, or export it with {@linkcode exportGgufAdapter}
 * @param path the `.gguf` file to write
 * @param opts `tokenizer` (required), `outtype`, `overwrite`, `name`
 * @returns the path, its size in bytes and the number of tensors
 * @throws {TypeError} without a tokenizer
 * @throws {RangeError} for an unsupported architecture, config or outtype, an attached adapter, a tokenizer that is not
 *   byte-level BPE or is larger than the model's vocabulary, an existing file without `overwrite`,
 *   or an F16 value out of range
 *
 * @example
 * ```ts
 * import { createBackend } from "../../kernels/backend.ts";
 * import { presetConfig } from "../config.ts";
 * import { Transformer } from "../transformer.ts";
 * import { trainBpeTokenizer } from "../tokenizer/bpe.ts";
 * import { exportGguf } from "./gguf.ts";
 * const be = await createBackend("cpu");
 * const config = presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 260 });
 * const tokenizer = await trainBpeTokenizer(["hello hello"], { vocab_size: 260 });
 * const path = (await Deno.makeTempDir()) + "/tiny.gguf";
 * const r = await exportGguf(Transformer.init(config, be), path, { tokenizer, outtype: "q8_0" });
 * const magic = new TextDecoder().decode((await Deno.readFile(path)).subarray(0, 4));
 * if (magic !== "GGUF" || r.bytes !== (await Deno.stat(path)).size) throw new Error("gguf");
 * await Deno.remove(path);
 * ```
 */
export async function exportGguf(
  model: Transformer,
  path: string,
  opts: ExportGgufOptions,
): Promise<GgufWriteResult> {
  checkPathArg(path, "exportGguf");
  refuseUnknownOptions(opts, ["tokenizer", "outtype", "overwrite", "name"], "exportGguf");
  checkTokenizerArg(opts?.tokenizer, "exportGguf");
  refuseOtherFormat(path, "GGUF", ".onnx");
  const c = model.config;
  const outtype = checkExportable(c, opts?.outtype ?? "f16", Object.keys(OUTTYPES));
  if (!opts?.tokenizer) {
    throw new TypeError(
      `Cannot export ${path} to GGUF: no tokenizer; llama.cpp needs the vocabulary in the file, ` +
        `pass opts.tokenizer (loadTokenizer(dir), or --tokenizer DIR on the command line)`,
    );
  }
  if (model.adapters.size) {
    throw new RangeError(
      `Cannot export ${path} to GGUF: the model has an adapter attached (${
        [...model.adapters.keys()][0]
      }, ...); ` +
        `merge it first (mergeAdapter, --merge), or export the base model before loading the adapter and ` +
        `the adapter with exportGgufAdapter`,
    );
  }
  const { type, file_type } = OUTTYPES[outtype];
  let weights = 0;
  for (const p of model.params.values()) weights += p.size;
  const metadata = [
    ...generalMetadata(GGUF_ARCH[c.arch], "model", modelName(opts, c.arch)),
    ["general.size_label", { type: "string", value: sizeLabel(weights) }] as [string, GgufValue],
    ...archMetadata(c, file_type),
    ...await tokenizerMetadata(opts.tokenizer, c),
  ];
  return await writeGguf(path, metadata, modelTensors(model, type), { overwrite: opts.overwrite });
}

/** PEFT module names (last component) -> llama.cpp tensor names, per family. */
const LORA_NAMES: Record<string, Record<string, string>> = {
  llama: {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  },
  phi3: {
    "self_attn.qkv_proj": "attn_qkv",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  },
  gpt2: {
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
  },
};
LORA_NAMES.qwen2 = LORA_NAMES.llama;

/**
 * Write a LoRA adapter as a GGUF adapter llama.cpp applies on top of the base model's GGUF
 * (`llama-cli -m base.gguf --lora adapter.gguf`): `general.type = adapter`, `adapter.type = lora`,
 * `adapter.lora.alpha`, and per adapted linear `blk.N.<tensor>.weight.lora_a` (`ne = [in, r]`) and
 * `.lora_b` (`ne = [r, out]`), as `convert_lora_to_gguf.py` writes them (llama's q / k `lora_b` rows
 * permuted like the base weights). llama.cpp scales by alpha / r; for rsLoRA (alpha / sqrt(r)) the
 * alpha written is `lora_alpha · sqrt(r)`, so the product is the same.
 *
 * @param model the base model the adapter belongs to, or just its `{ config }` (which names and shapes
 *   the tensors; no weight is read)
 * @param path the `.gguf` file to write
 * @param opts `adapter` (PEFT tensors + config), `outtype`, `overwrite`, `name`
 * @returns the path, its size in bytes and the number of tensors
 * @throws {RangeError} for DoRA, tensors other than lora_A / lora_B (biases, modules_to_save),
 *   an unknown module, an unsupported architecture or outtype, or an existing file without `overwrite`
 *
 * @example
 * ```ts
 * import { createBackend } from "../../kernels/backend.ts";
 * import { presetConfig } from "../config.ts";
 * import { Transformer } from "../transformer.ts";
 * import { exportGgufAdapter } from "./gguf.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 64 }), be);
 * const C = model.config.hidden_size, q = "base_model.model.model.layers.0.self_attn.q_proj";
 * const tensors = new Map([
 *   [`${q}.lora_A.weight`, { shape: [4, C], data: new Float32Array(4 * C) }],
 *   [`${q}.lora_B.weight`, { shape: [C, 4], data: new Float32Array(4 * C) }],
 * ]);
 * const path = (await Deno.makeTempDir()) + "/lora.gguf";
 * const r = await exportGgufAdapter(model, path, { adapter: { lora_alpha: 8, r: 4, tensors } });
 * if (r.tensors !== 2) throw new Error("two tensors");
 * await Deno.remove(path);
 * ```
 */
export async function exportGgufAdapter(
  model: Pick<Transformer, "config">,
  path: string,
  opts: ExportGgufAdapterOptions,
): Promise<GgufWriteResult> {
  checkPathArg(path, "exportGgufAdapter");
  refuseUnknownOptions(opts, ["adapter", "outtype", "overwrite", "name"], "exportGgufAdapter");
  refuseOtherFormat(path, "GGUF", ".onnx");
  const c = model.config, a = opts.adapter;
  const outtype = checkExportable(c, opts.outtype ?? "f32", ["f32", "f16", "q8_0"]);
  const where = `Cannot export the adapter to ${path}`;
  checkBooleans(a, ["use_rslora", "use_dora"], `${where}: adapter`);
  if (!(Number.isInteger(a.r) && a.r >= 1)) {
    throw new RangeError(`${where}: adapter r ${a.r} is not an integer >= 1`);
  }
  if (!(a.lora_alpha > 0 && Number.isFinite(a.lora_alpha))) {
    throw new RangeError(
      `${where}: adapter lora_alpha ${a.lora_alpha} is not a number > 0 (PEFT's scaling is alpha / r)`,
    );
  }
  if (a.use_dora) {
    throw new RangeError(
      `${where}: llama.cpp adapters cannot hold DoRA; merge it into the model (--merge) instead`,
    );
  }
  if (!a.tensors?.size) throw new RangeError(`${where}: the adapter has no lora_A / lora_B tensors`);
  const names = LORA_NAMES[GGUF_ARCH[c.arch] === "llama" ? "llama" : c.arch];
  const permQ = ropePermutation(c, c.num_attention_heads), permK = ropePermutation(c, c.num_key_value_heads);
  const pairs = new Map<
    string,
    { A?: { shape: number[]; data: Float32Array }; B?: { shape: number[]; data: Float32Array } }
  >();
  for (const [key, t] of a.tensors) {
    const m = /^base_model\.model\.(?:model|transformer)\.(?:layers|h)\.(\d+)\.(.+)\.lora_([AB])\.weight$/
      .exec(key);
    const gguf = m ? names[m[2]] : undefined;
    if (!m || !gguf) {
      throw new RangeError(
        `${where}: tensor ${key} is not a lora_A / lora_B of a ${c.arch} linear llama.cpp can adapt ` +
          `(biases and modules_to_save are not adapter tensors); merge the adapter (--merge) instead`,
      );
    }
    const base = `blk.${m[1]}.${gguf}.weight`;
    const p = pairs.get(base) ?? {};
    p[m[3] as "A" | "B"] = t;
    pairs.set(base, p);
  }
  const { type } = OUTTYPES[outtype];
  const tensors: GgufTensorSpec[] = [];
  for (const [base, { A, B }] of pairs) {
    if (!A || !B || A.shape[0] !== a.r || B.shape[1] !== a.r) {
      throw new RangeError(`${where}: ${base} needs lora_A [${a.r}, in] and lora_B [out, ${a.r}]`);
    }
    const perm = base.endsWith("attn_q.weight") ? permQ : base.endsWith("attn_k.weight") ? permK : null;
    const bData = perm ? perm(B.data, a.r) : B.data;
    for (const [suffix, shape, data] of [["lora_a", A.shape, A.data], ["lora_b", B.shape, bData]] as const) {
      const name = `${base}.${suffix}`, t = tensorType(name, [...shape], type);
      tensors.push({
        name,
        shape: [...shape],
        type: t,
        data: () => Promise.resolve(checkRange(name, data, t)),
      });
    }
  }
  const alpha = a.use_rslora ? a.lora_alpha * Math.sqrt(a.r) : a.lora_alpha;
  const name = opts.name ?? `fledge-${c.arch === "phi3" ? "phi" : c.arch}-lora`;
  checkName(name);
  const metadata: [string, GgufValue][] = [
    ...generalMetadata(GGUF_ARCH[c.arch], "adapter", name),
    ["adapter.type", { type: "string", value: "lora" }],
    ["adapter.lora.alpha", { type: "f32", value: alpha }],
  ];
  return await writeGguf(path, metadata, tensors, { overwrite: opts.overwrite });
}
