/**
 * Hugging Face checkpoints in: `loadModel(idOrPath)` (a local folder, else the hub cache, else a
 * download through `hub.ts`) maps `config.json` and the safetensors weights (read through the one
 * reader of `formats/safetensors.ts`) through the family's key map onto the canonical parameters,
 * one tensor at a time (only one host copy is alive beyond the GPU copies). The reverse,
 * `saveModel`, is in `save.ts`.
 *
 * Weight dtypes: `f32` (default), `f16` (the attention and MLP projection weights are stored as
 * f16 tensors, half their bytes, read by matmul with f32 accumulation; on webgpu this needs the
 * device's `shader-f16`) and `nf4` (those weights 4-bit, see `quant.ts`). In both reduced modes the
 * embeddings, norms, biases and the LM head stay f32, as bitsandbytes keeps them out of 4-bit:
 * they are a small share of a real model's bytes (the tied GPT-2 head excepted), the embedding
 * gather and its gradient are f32 kernels, and the head's logits are what greedy decoding compares.
 *
 * @module
 */
import { join } from "node:path";
import { Backend } from "../kernels/backend.ts";
import { quantize } from "../kernels/quant.ts";
import type { HostArray, Tensor } from "../kernels/tensor.ts";
import { parseJson } from "../util/json.ts";
import { isObject, Problems, show } from "../util/problems.ts";
import { checkpointKeyMap, fromHfConfig, type KeyMapEntry, type ModelConfig } from "./config.ts";
import { downloadModel, type HubOptions, refuseDownloadOptions } from "./hub/hub.ts";
import { openSafetensors, type SafetensorsReader } from "./formats/safetensors.ts";
import { transposeInPlace } from "./_key_map.ts";
import { type ParamMap, Transformer } from "./transformer.ts";

/** Weight dtypes {@linkcode loadModel} knows of. */
export type LoadDtype = "f32" | "f16" | "nf4";

/** Options of {@linkcode loadModel}. */
export interface LoadModelOptions extends HubOptions {
  /** Where the parameters live. */
  backend: Backend;
  /**
   * dtype of the weights on the device; default `"f32"` (checkpoints in f16/bf16/f64 are converted).
   * `"nf4"`: the attention and MLP projection weights become 4-bit NF4 (block 64, as bitsandbytes'
   * `load_in_4bit`; read by `linearQ4`), embeddings, norms, biases and the LM head stay f32. They are
   * quantized right after loading, so the device briefly holds the f32 model.
   * `"f16"`: the same projection weights are converted to f16 on the host, one tensor at a time, and
   * uploaded as f16 tensors (half their bytes; matmul reads them with f32 accumulation). Needs the
   * device's `shader-f16` on webgpu (always fine on cpu). They are frozen: `requiresGrad` stays
   * false and `Transformer.parameters()` leaves them out (as 4-bit weights), so an optimizer never
   * sees them; train LoRA adapters on them, or load in f32 to train them.
   */
  dtype?: LoadDtype;
}

const LOAD_KEYS = new Set([
  "backend",
  "dtype",
  "revision",
  "repo_type",
  "cache_dir",
  "token",
  "endpoint",
  "local_files_only",
  "offline",
  "force_download",
  "max_retries",
  "progress",
]);

/** The folder each loaded model came from, for `saveModel`'s tokenizer copy (`save.ts`). */
const SOURCES = new WeakMap<Transformer, string>();

/**
 * The local folder (a checkout or a hub cache snapshot) {@linkcode loadModel} read `model` from, or
 * undefined for a model built in memory.
 *
 * @param model a model
 * @returns the folder, or undefined
 */
export function modelSource(model: Transformer): string | undefined {
  return SOURCES.get(model);
}

/** Check loadModel's options, listing every problem; f16 needs shader-f16 on webgpu. */
function checkLoadOptions(opts: unknown): asserts opts is LoadModelOptions {
  const p = new Problems();
  if (!isObject(opts)) {
    p.type("options", `must be an object with a backend, got ${show(opts)}`);
  } else {
    if (!(opts.backend instanceof Backend)) {
      p.type("backend", `must be a Backend from createBackend(), got ${show(opts.backend)}`);
    }
    const dtype = opts.dtype ?? "f32";
    if (dtype === "f16") {
      const be = opts.backend instanceof Backend ? opts.backend : null;
      if (be?.gpu && !be.gpu.features.has("shader-f16")) {
        p.range(
          "dtype",
          `"f16" needs the device's shader-f16 feature, which ${be.adapter} does not offer; use dtype ` +
            `"f32" (or "nf4" for 4-bit weights), or pick an adapter with shader-f16 (FLEDGE_ADAPTER)`,
        );
      }
    } else if (dtype !== "f32" && dtype !== "nf4") {
      p.range("dtype", `must be "f32", "f16" or "nf4", got ${show(dtype)}`);
    }
    for (const k of Object.keys(opts)) {
      if (!LOAD_KEYS.has(k)) p.type(k, `is not an option of loadModel (${[...LOAD_KEYS].join(", ")})`);
    }
  }
  p.throwIfAny("Cannot load the model", "the options of loadModel");
}

/** Remove a cached snapshot's weight files (`model*.safetensors`) and the blobs they link to. */
async function evictWeights(snapshot: string): Promise<void> {
  for await (const f of Deno.readDir(snapshot)) {
    if (!/^model.*\.safetensors$/.test(f.name)) continue; // the weights loadWeights reads
    const path = join(snapshot, f.name);
    try {
      const target = await Deno.realPath(path);
      await Deno.remove(path);
      if (target !== path) await Deno.remove(target);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/**
 * Load a Hugging Face causal-LM checkpoint (llama, mistral, qwen2, phi3, gpt2) as a
 * {@linkcode Transformer}. Options are checked before any file is read or downloaded.
 *
 * @param idOrPath a local folder with `config.json` + `model.safetensors` (or a sharded index), or a hub id
 * @param opts `backend`, `dtype` and {@linkcode HubOptions}
 * @returns the model, its parameters on `opts.backend`
 * @throws {TypeError} for bad options, a missing `config.json` or weights file, or tensors that are
 *   missing, misshapen or unexpected (each named with its file)
 * @throws {RangeError} for an unsupported `model_type` or option (e.g. dtype `"f16"` on a device
 *   without shader-f16), or an f16 load of a weight beyond f16's range
 * @throws {SyntaxError} for a bad config, index or safetensors file
 * @throws {HubError} when a hub id cannot be fetched (never showing the token)
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { loadModel } from "./pretrained.ts";
 * import { saveModel } from "./save.ts";
 * import { presetConfig } from "./config.ts";
 * import { Transformer } from "./transformer.ts";
 * const be = await createBackend("cpu");
 * const dir = await Deno.makeTempDir();
 * await saveModel(Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be), dir);
 * const model = await loadModel(dir, { backend: be });
 * if (model.config.num_hidden_layers !== 1) throw new Error("round trip");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadModel(idOrPath: string, opts: LoadModelOptions): Promise<Transformer> {
  checkLoadOptions(opts);
  const { backend: _b, dtype: _d, ...hub } = opts;
  refuseDownloadOptions(idOrPath, hub, `Cannot load ${idOrPath}`);
  // config, tokenizer and the weights transformers would load (the shards an index names), top level only
  const dir = await downloadModel(idOrPath, hub);
  const configPath = join(dir, "config.json");
  let text: string;
  try {
    text = await Deno.readTextFile(configPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new TypeError(
      `Cannot load ${idOrPath}: ${configPath} is missing; a model folder needs the config.json that ` +
        `save_pretrained writes beside model.safetensors`,
    );
  }
  const config = fromHfConfig(parseJson(text, configPath), { file: configPath });
  let params: ParamMap;
  try {
    params = await loadWeights(dir, config, opts.backend, { dtype: opts.dtype === "f16" ? "f16" : "f32" });
  } catch (e) {
    // A corrupt weights file that came from the hub must not stay in the cache: the next call
    // would load the same broken bytes without asking the server again.
    if (e instanceof SyntaxError && dir !== idOrPath) await evictWeights(dir);
    throw e;
  }
  const model = new Transformer(config, params, opts.backend);
  if (opts.dtype === "nf4") quantizeLinears(model);
  SOURCES.set(model, dir);
  return model;
}

/** Canonical names of the projection weights `dtype: "nf4"` quantizes and `"f16"` stores as f16. */
const LINEAR_WEIGHT = /^layers\.\d+\.(attn|mlp)\.[a-z]+\.weight$/;

/** Replace the attention and MLP projection weights by NF4 copies (the model's QLoRA hook). */
function quantizeLinears(model: Transformer): void {
  for (const [name, w] of [...model.params]) {
    if (!LINEAR_WEIGHT.test(name)) continue;
    const q = quantize(w, { kind: "nf4", blockSize: 64 });
    q.name = name;
    model.quantized.set(name.slice(0, -".weight".length), q);
    model.params.delete(name);
    w.dispose();
  }
}

/** A checkpoint open through the safetensors reader, and the file each tensor is reported in. */
interface Weights {
  reader: SafetensorsReader;
  /** Tensor names (every file of a sharded checkpoint). */
  names: Set<string>;
  /** The file that holds (or, for a missing tensor, should list) `name`. */
  file(name: string): string;
}

/**
 * Open the checkpoint of `dir` with {@linkcode openSafetensors}: `model.safetensors.index.json`
 * and its shards, else `model.safetensors`. Headers, the index and its shard names (hostile
 * offsets, names leaving the folder) are checked there; a missing shard or a weight_map entry its
 * shard lacks (an incomplete download) becomes a TypeError.
 */
async function openWeights(dir: string): Promise<Weights> {
  const indexPath = join(dir, "model.safetensors.index.json");
  const single = join(dir, "model.safetensors");
  const isFile = (p: string) => Deno.stat(p).then((s) => s.isFile, () => false);
  const path = (await isFile(indexPath)) ? indexPath : (await isFile(single)) ? single : null;
  if (!path) {
    const bins = [...Deno.readDirSync(dir)].some((e) => /\.(bin|pt|pth|ckpt)$/.test(e.name));
    throw new TypeError(
      `Cannot load the weights of ${dir}: neither model.safetensors nor model.safetensors.index.json exists` +
        (bins
          ? `; fledge reads safetensors only: convert the PyTorch weights (transformers: ` +
            `model.save_pretrained(dir, safe_serialization=True))`
          : "; download the complete model"),
    );
  }
  let reader: SafetensorsReader;
  try {
    reader = await openSafetensors(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof RangeError)) throw e;
    throw new TypeError(e.message, { cause: e });
  }
  const names = new Set(reader.names());
  return { reader, names, file: (name) => names.has(name) ? reader.fileOf(name) : path };
}

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

/** Options of {@linkcode loadWeights}. */
export interface LoadWeightsOptions {
  /**
   * `"f16"`: the attention and MLP projection weights become f16 tensors (converted on the host;
   * the caller checks the device's shader-f16); everything else stays f32. Default `"f32"`.
   */
  dtype?: "f32" | "f16";
}

/** Largest finite f16 value; anything of magnitude >= 65520 rounds to infinity. */
const F16_MAX = 65504;

/**
 * Read the safetensors weights of `dir` into canonical parameters for `config` (fused tensors
 * split, Conv1D weights transposed in place, tensors without the base-model prefix accepted,
 * F16/BF16/F64 converted to f32, or with `dtype: "f16"` the projection weights to f16). Every
 * header is checked before any data is read: a missing,
 * misshapen, non-float or unexpected tensor is reported (all of them at once) with its file.
 * Tensors are then read one at a time ({@linkcode SafetensorsReader.readInto}, converting in
 * place) into one reusable host buffer (the size of the largest tensor) and uploaded from it, so beyond the parameters only that one buffer is alive (plus, on
 * webgpu, the driver's staging copy of the tensor in flight: each upload is submitted and waited
 * for before the next tensor is read).
 *
 * @param dir folder with `model.safetensors` or `model.safetensors.index.json` and its shards
 * @param config the model's config (picks the key map)
 * @param backend where the parameters go
 * @param opts `dtype` of the projection weights
 * @returns the canonical parameters
 * @throws {TypeError} naming each problem tensor and its file
 * @throws {RangeError} when a weight to store as f16 holds a value beyond f16's range (±65504)
 * @throws {SyntaxError} for a malformed or hostile safetensors file or index
 */
export async function loadWeights(
  dir: string,
  config: ModelConfig,
  backend: Backend,
  opts: LoadWeightsOptions = {},
): Promise<ParamMap> {
  const half = opts.dtype === "f16";
  const w = await openWeights(dir), r = w.reader;
  const map = checkpointKeyMap(config);
  const used = new Set<string>();
  const problems: string[] = [];
  const plan: { key: string; entry: KeyMapEntry; layer: number }[] = [];
  const prefix = map.base_model_prefix + ".";
  const strip = (hf: string) => hf.startsWith(prefix) ? hf.slice(prefix.length) : hf;
  for (const e of map.entries) {
    for (let i = 0; i < (e.per_layer ? config.num_hidden_layers : 1); i++) {
      const hf = e.hf.replaceAll("{i}", String(i));
      const key = w.names.has(hf) ? hf : w.names.has(strip(hf)) ? strip(hf) : null;
      if (!key) {
        problems.push(`${w.file(hf)}: tensor ${hf} [${e.hf_shape}] is missing`);
        continue;
      }
      used.add(key);
      const info = r.info(key);
      if (info.shape.join() !== e.hf_shape.join()) {
        problems.push(`${w.file(key)}: tensor ${key} has shape [${info.shape}], expected [${e.hf_shape}]`);
      } else if (!FLOAT_DTYPES.has(info.dtype)) {
        problems.push(
          `${w.file(key)}: tensor ${key} has dtype ${info.dtype}, expected F32, F16, BF16 or F64`,
        );
      } else plan.push({ key, entry: e, layer: i });
    }
  }
  const pattern = (s: string) => s.replaceAll(".", "\\.").replaceAll("{i}", "\\d+");
  const ignored = map.ignored.map((s) => new RegExp(`^(?:${pattern(s)}|${pattern(strip(s))})$`));
  for (const n of w.names) {
    if (used.has(n) || ignored.some((re) => re.test(n))) continue;
    problems.push(
      `${w.file(n)}: tensor ${n} is not a parameter of ${config.arch} with this config.json ` +
        `(a bias or layer the config does not declare?)`,
    );
  }
  if (problems.length) {
    r.close();
    const fix = "check that config.json belongs to these weights, or download the model again";
    throw new TypeError(
      problems.length === 1
        ? `Cannot load ${problems[0]}; ${fix}`
        : `Cannot load the weights of ${dir}: ${problems.length} problems (${fix}):\n  - ${
          problems.slice(0, 20).join("\n  - ")
        }${problems.length > 20 ? `\n  - ... and ${problems.length - 20} more` : ""}`,
    );
  }

  // One host buffer for every tensor (F16/BF16 are widened in it, F64 through a small chunk).
  const size = (k: string) => r.info(k).shape.reduce((a, b) => a * b, 1);
  const buf = new Float32Array(Math.max(1, ...plan.map((p) => size(p.key))));
  // f16 pieces are converted into one reusable host buffer too (webgpu; cpu converts in fromArray).
  let buf16: Float16Array | null = null;
  const toF16 = (piece: Float32Array, key: string, ours: string): Float16Array => {
    for (let i = 0; i < piece.length; i++) {
      if (Math.abs(piece[i]) > F16_MAX + 15) {
        throw new RangeError(
          `Cannot load ${w.file(key)}: tensor ${key} (${ours}) holds ${piece[i]} at element ${i}, ` +
            `beyond f16's range ±${F16_MAX}; load it with dtype "f32" (or "nf4")`,
        );
      }
    }
    buf16 ??= new Float16Array(buf.length);
    const h = buf16.subarray(0, piece.length);
    h.set(piece);
    return h;
  };
  const params: ParamMap = new Map();
  // After a flush no buffer released in an open batch can be handed out, so `empty()` + `write()`
  // is a safe upload; `write()` copies the bytes, so `buf` can be refilled right away.
  const gpu = backend.gpu;
  gpu?.flush();
  const drain = async () => {
    // wgpu stages each write in host memory until a submit completes: without this the staging
    // copies pile up to the size of the model (measured with bench/load_model.ts).
    gpu!.device.queue.submit([]);
    await gpu!.device.queue.onSubmittedWorkDone();
  };
  try {
    for (const { key, entry: e, layer } of plan) {
      const data = buf.subarray(0, size(key));
      await r.readInto(key, data);
      let shape = e.hf_shape;
      if (e.transpose) {
        transposeInPlace(data, shape[0], shape[1]);
        shape = [shape[1], shape[0]];
      }
      const rows = e.split_rows ?? [shape[0]];
      const cols = shape.length > 1 ? shape[1] : 1;
      let r0 = 0;
      for (let j = 0; j < e.ours.length; j++) {
        const ours = e.ours[j].replaceAll("{i}", String(layer));
        const n = rows[j];
        const piece = data.subarray(r0 * cols, (r0 + n) * cols);
        const pieceShape = shape.length > 1 ? [n, cols] : [n];
        let t: Tensor;
        const f16 = half && LINEAR_WEIGHT.test(ours);
        const host = f16 ? toF16(piece, key, ours) : piece;
        if (gpu) {
          t = backend.empty(pieceShape, f16 ? "f16" : "f32");
          gpu.write(t.buffer, host);
        } else t = backend.fromArray(host, pieceShape, f16 ? "f16" : "f32");
        t.name = ours;
        params.set(ours, t);
        r0 += n;
      }
      if (gpu) await drain();
    }
  } catch (e) {
    for (const t of params.values()) t.dispose();
    throw e;
  } finally {
    r.close();
  }
  return params;
}

/** A parameter's values on the host as f32 (convenience for tests and export; f16 widened exactly). */
export async function parameterArray(t: Tensor): Promise<Float32Array> {
  const a: HostArray = await t.toArray();
  return a instanceof Float32Array ? a : Float32Array.from(a as Float16Array);
}
