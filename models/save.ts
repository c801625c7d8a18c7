/**
 * Hugging Face checkpoints out: `saveModel(model, dir)` writes the reverse of `loadModel`
 * (`pretrained.ts`), loadable by transformers: the weights through the family's key map (fused
 * tensors re-joined, Conv1D weights transposed back), `config.json`, `generation_config.json` and
 * the tokenizer files of the folder the model was loaded from. Every file lands atomically.
 *
 * @module
 */
import { join } from "node:path";
import { dequantize } from "../kernels/quant.ts";
import { isDirSync, isFileSync, writeFileAtomic } from "../util/atomic.ts";
import { checkPathArg, refuseUnknownOptions } from "../util/problems.ts";
import { checkpointKeyMap, type ModelConfig, toHfConfig } from "./config.ts";
import { type TensorInput, writeSafetensors } from "./formats/safetensors.ts";
import { transposeInPlace } from "./_key_map.ts";
import { TOKENIZER_FILES } from "./hub/hub.ts";
import { modelSource } from "./pretrained.ts";
import { checkGenerationConfig, modelConfigGeneration } from "./generation_config.ts";
import type { Transformer } from "./transformer.ts";

/** Options of {@linkcode saveModel}. */
export interface SaveModelOptions {
  /**
   * Folder whose `generation_config.json` and tokenizer files are copied beside the weights;
   * default: the folder `loadModel` read the model from (see {@linkcode modelSource}).
   */
  source?: string;
  /** Written as `generation_config.json` (wins over the one in `source`). */
  generation_config?: Record<string, unknown>;
  /**
   * Every weight in this dtype, and `config.json`'s `torch_dtype` (as `save_pretrained` of a model
   * loaded in it); default: F32, F16 for f16 weights (what the model holds, bit for bit).
   */
  torch_dtype?: "float32" | "float16" | "bfloat16";
}

const SAFETENSORS_DTYPE = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;

/**
 * A parameter's values on the host: a Float32Array, a Float16Array for an f16 weight, and a 4-bit
 * weight dequantized (what the model computes with).
 */
async function hostCopy(model: Transformer, name: string): Promise<Float32Array | Float16Array> {
  const q = name.endsWith(".weight") ? model.quantized.get(name.slice(0, -".weight".length)) : undefined;
  if (!q) return await model.p(name).toArray() as Float32Array | Float16Array;
  const t = dequantize(q);
  try {
    return await t.toArray() as Float32Array;
  } finally {
    t.dispose();
  }
}

const jsonText = (o: unknown) => JSON.stringify(o, null, 2) + "\n";

/** `GenerationConfig.from_model_config`: the decoding ids of the config, when any is set. */
function generationConfigOf(c: ModelConfig): Record<string, unknown> | null {
  const out: Record<string, unknown> = { _from_model_config: true };
  if (c.bos_token_id !== null) out.bos_token_id = c.bos_token_id;
  if (c.eos_token_id !== null) out.eos_token_id = c.eos_token_id;
  if (c.pad_token_id !== null) out.pad_token_id = c.pad_token_id;
  if (Object.keys(out).length === 1) return null;
  out.transformers_version = toHfConfig(c).transformers_version;
  return out;
}

/**
 * The text of `config.json` and `generation_config.json` as {@linkcode saveModel} writes them
 * beside the weights: the generation config copied from `source` (default: the folder the model
 * was loaded from), else built from the config's token ids and the generation settings of the
 * source's `config.json` (an old checkpoint's; absent when neither gives one). An ONNX export
 * writes them too.
 * @throws {RangeError} from {@linkcode toHfConfig} for configs HF cannot express
 */
export async function configFiles(
  model: Transformer,
  source: string | undefined = modelSource(model),
  torch_dtype?: SaveModelOptions["torch_dtype"],
): Promise<Record<string, string>> {
  const c = model.config;
  const out: Record<string, string> = {
    "config.json": jsonText(toHfConfig(c, torch_dtype ? { torch_dtype } : {})),
  };
  const copied = source
    ? await Deno.readTextFile(join(source, "generation_config.json")).catch(() => null)
    : null;
  // without the file, the generation settings an old config.json of `source` holds (HF's
  // from_model_config; the config.json written here has none) go into the one written
  const legacy = source && copied === null
    ? modelConfigGeneration(
      await Deno.readTextFile(join(source, "config.json")).then(JSON.parse).catch(() => null),
    )
    : {};
  const built = generationConfigOf(c);
  if (copied !== null) out["generation_config.json"] = copied;
  else if (built || Object.keys(legacy).length) {
    out["generation_config.json"] = jsonText({ ...built ?? { _from_model_config: true }, ...legacy });
  }
  return out;
}

/**
 * Write the model in the Hugging Face layout of its family, each file atomically
 * ({@linkcode writeFileAtomic}: temp file, then rename; a failed save never leaves a partial file
 * and keeps an earlier complete one):
 * `model.safetensors` (F32, and F16 for f16 weights, bit for bit what the model holds; fused
 * tensors re-joined, Conv1D transposed back, no `lm_head.weight` when tied, 4-bit weights
 * dequantized to F32), `config.json` ({@linkcode toHfConfig}), `generation_config.json` (copied from the
 * source folder, else from `opts.generation_config`, else built from the config's token ids as
 * transformers does) and the tokenizer files of the source folder.
 *
 * @param model the model
 * @param dir destination folder (created if missing)
 * @param opts `source` folder and `generation_config`
 * @throws {RangeError} from {@linkcode toHfConfig} for configs HF cannot express, and for a model
 *   with an adapter attached (merge it, or save the adapter with `saveAdapter`)
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { saveModel } from "./save.ts";
 * import { presetConfig } from "./config.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const dir = await Deno.makeTempDir();
 * await saveModel(Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be), dir);
 * const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
 * if (files.join() !== "config.json,generation_config.json,model.safetensors") throw new Error(files.join());
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveModel(model: Transformer, dir: string, opts: SaveModelOptions = {}): Promise<void> {
  checkPathArg(dir, "saveModel", "dir");
  refuseUnknownOptions(opts, ["source", "generation_config", "torch_dtype"], "saveModel");
  if (isFileSync(dir)) {
    throw new TypeError(
      `Cannot save the model to ${dir}: it is a file; give a folder (saveModel writes several files)`,
    );
  }
  if (model.adapters.size) { // it writes the base weights alone: the fine-tune would be lost unsaid
    throw new RangeError(
      `Cannot save the model to ${dir}: it has an adapter attached (${
        [...model.adapters.keys()][0]
      }, ...), ` +
        `and saveModel writes the base weights only; merge it first (mergeAdapter, PEFT merge_and_unload) ` +
        `or save the adapter (saveAdapter, PEFT save_pretrained)`,
    );
  }
  const c = model.config;
  if (opts.generation_config) {
    checkGenerationConfig(
      opts.generation_config,
      "opts.generation_config",
      `Cannot save the model to ${dir}`,
    );
  }
  if (opts.source !== undefined && !isDirSync(opts.source)) {
    throw new RangeError(
      `Cannot save the model to ${dir}: source ${opts.source} is not a folder (the tokenizer and generation ` +
        `config are copied from it); fix the path or leave source out`,
    );
  }
  // before any write: toHfConfig throws for configs HF cannot load
  const source = opts.source ?? modelSource(model);
  if (opts.torch_dtype !== undefined && !Object.hasOwn(SAFETENSORS_DTYPE, opts.torch_dtype)) {
    throw new RangeError(
      `Cannot save the model to ${dir}: torch_dtype ${JSON.stringify(opts.torch_dtype)} is not float32, ` +
        `float16 or bfloat16`,
    );
  }
  const files = await configFiles(model, source, opts.torch_dtype);
  if (opts.generation_config) files["generation_config.json"] = jsonText(opts.generation_config);
  await Deno.mkdir(dir, { recursive: true });
  const map = checkpointKeyMap(c);
  const tensors: Record<string, TensorInput> = {};
  for (const e of map.entries) {
    for (let i = 0; i < (e.per_layer ? c.num_hidden_layers : 1); i++) {
      const pieces: (Float32Array | Float16Array)[] = [];
      for (const name of e.ours) pieces.push(await hostCopy(model, name.replaceAll("{i}", String(i))));
      // F16 only when every piece of a fused tensor is f16 (f16 values are exact in f32 otherwise).
      const f16 = pieces.every((p) => p instanceof Float16Array);
      let data: Float32Array | Float16Array = pieces[0];
      if (pieces.length > 1 || (!f16 && !(data instanceof Float32Array))) {
        const n = pieces.reduce((a, p) => a + p.length, 0);
        data = f16 ? new Float16Array(n) : new Float32Array(n);
        let off = 0;
        for (const p of pieces) {
          data.set(p, off);
          off += p.length;
        }
      }
      // Canonical [out, in] back to Conv1D's [in, out].
      if (e.transpose) transposeInPlace(data, e.hf_shape[1], e.hf_shape[0]);
      const want = opts.torch_dtype && SAFETENSORS_DTYPE[opts.torch_dtype];
      if (want && want !== (data instanceof Float16Array ? "F16" : "F32")) { // converted by the writer
        tensors[e.hf.replaceAll("{i}", String(i))] = { dtype: want, shape: e.hf_shape, data };
        continue;
      }
      tensors[e.hf.replaceAll("{i}", String(i))] = data instanceof Float16Array
        ? {
          dtype: "F16",
          shape: e.hf_shape,
          data: new Uint16Array(data.buffer, data.byteOffset, data.length),
        }
        : { dtype: "F32", shape: e.hf_shape, data };
    }
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
  for (const [name, text] of Object.entries(files)) await writeFileAtomic(join(dir, name), text);

  const same = async (a: string, b: string) => {
    const [ra, rb] = await Promise.all([Deno.realPath(a), Deno.realPath(b).catch(() => null)]);
    return ra === rb;
  };
  const copy = async (name: string) => {
    if (!source) return;
    const from = join(source, name), to = join(dir, name);
    const ok = await Deno.stat(from).then((s) => s.isFile, () => false);
    if (ok && !(await same(from, to))) await writeFileAtomic(to, await Deno.readFile(from));
  };
  for (const f of TOKENIZER_FILES) await copy(f);
}
