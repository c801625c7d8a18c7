/**
 * Hugging Face checkpoints in and out: `loadModel(idOrPath)` (a local folder, else the hub cache,
 * else a download through `hub.ts`) maps `config.json` and the safetensors weights through the
 * family's key map onto the canonical parameters, one tensor at a time (only one host copy is alive
 * beyond the GPU copies); `saveModel(model, dir)` writes the reverse, loadable by transformers.
 *
 * @module
 */
import { join } from "node:path";
import type { Backend } from "../kernels/backend.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { checkpointKeyMap, fromHfConfig, type ModelConfig, toHfConfig } from "./config.ts";
import { type HubOptions, snapshotDownload } from "./hub.ts";
import { openSafetensors, writeSafetensors } from "./safetensors.ts";
import { type ParamMap, Transformer } from "./transformer.ts";

/** Options of {@linkcode loadModel}. */
export interface LoadModelOptions extends HubOptions {
  /** Where the parameters live. */
  backend: Backend;
}

/** Transpose a row-major `[rows, cols]` matrix. */
function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/**
 * Load a Hugging Face causal-LM checkpoint (llama, mistral, qwen2, phi3, gpt2) as a
 * {@linkcode Transformer}.
 *
 * @param idOrPath a local folder with `config.json` + `model.safetensors` (or a sharded index), or a hub id
 * @throws {SyntaxError} for a bad config or safetensors file; {@linkcode TypeError} for a missing
 *   or misshapen tensor (named with the file)
 *
 * @example
 * ```ts ignore
 * const be = await createBackend("auto");
 * const model = await loadModel("../shared/fixtures/hf-reference/llama", { backend: be });
 * ```
 */
export async function loadModel(idOrPath: string, opts: LoadModelOptions): Promise<Transformer> {
  const dir = await snapshotDownload(idOrPath, {
    ...opts,
    allow_patterns: [
      "config.json",
      "generation_config.json",
      "*.safetensors",
      "*.safetensors.index.json",
      "tokenizer*",
      "special_tokens_map.json",
    ],
  });
  const configPath = join(dir, "config.json");
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(configPath));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new TypeError(`Cannot load ${idOrPath}: ${configPath} is missing`);
    }
    throw new SyntaxError(`Cannot load ${configPath}: ${(e as Error).message}`);
  }
  const config = fromHfConfig(json, { file: configPath });
  const params = await loadWeights(dir, config, opts.backend);
  return new Transformer(config, params, opts.backend);
}

/**
 * Read the safetensors weights of `dir` into canonical parameters for `config` (fused tensors
 * split, Conv1D weights transposed, tensors without the base-model prefix accepted).
 */
export async function loadWeights(dir: string, config: ModelConfig, backend: Backend): Promise<ParamMap> {
  const reader = await openSafetensors(dir);
  const map = checkpointKeyMap(config);
  const names = new Set(reader.names());
  const params: ParamMap = new Map();
  const file = join(dir, names.size ? "model.safetensors" : "");
  try {
    const layers = config.num_hidden_layers;
    for (const e of map.entries) {
      for (let i = 0; i < (e.per_layer ? layers : 1); i++) {
        const hf = e.hf.replaceAll("{i}", String(i));
        const bare = hf.startsWith(map.base_model_prefix + ".")
          ? hf.slice(map.base_model_prefix.length + 1)
          : hf;
        const key = names.has(hf) ? hf : names.has(bare) ? bare : null;
        if (!key) throw new TypeError(`Cannot load ${file}: tensor ${hf} is missing`);
        const t = await reader.read(key, { as: "f32" });
        if (t.shape.join() !== e.hf_shape.join()) {
          throw new TypeError(
            `Cannot load ${file}: tensor ${hf} has shape [${t.shape}], expected [${e.hf_shape}]`,
          );
        }
        let data = t.data as Float32Array;
        let shape = e.hf_shape;
        if (e.transpose) {
          data = transpose2d(data, shape[0], shape[1]);
          shape = [shape[1], shape[0]];
        }
        const rows = e.split_rows ?? [shape[0]];
        const cols = shape.length > 1 ? shape[1] : 1;
        let r0 = 0;
        e.ours.forEach((name, j) => {
          const ours = name.replaceAll("{i}", String(i));
          const n = rows[j];
          const piece = data.subarray(r0 * cols, (r0 + n) * cols);
          const tensor = backend.fromArray(piece, shape.length > 1 ? [n, cols] : [n]);
          tensor.name = ours;
          params.set(ours, tensor);
          r0 += n;
        });
      }
    }
  } catch (e) {
    for (const t of params.values()) t.dispose();
    throw e;
  } finally {
    reader.close();
  }
  return params;
}

/**
 * Write `config.json` and `model.safetensors` in the Hugging Face layout of the model's family
 * (fused tensors re-joined, Conv1D transposed back), atomically per file.
 */
export async function saveModel(model: Transformer, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const c = model.config;
  const map = checkpointKeyMap(c);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const e of map.entries) {
    for (let i = 0; i < (e.per_layer ? c.num_hidden_layers : 1); i++) {
      const pieces: Float32Array[] = [];
      for (const name of e.ours) {
        pieces.push(await model.p(name.replaceAll("{i}", String(i))).toArray() as Float32Array);
      }
      const total = pieces.reduce((a, p) => a + p.length, 0);
      let data: Float32Array = new Float32Array(total);
      let off = 0;
      for (const p of pieces) {
        data.set(p, off);
        off += p.length;
      }
      if (e.transpose) data = transpose2d(data, e.hf_shape[1], e.hf_shape[0]);
      tensors[e.hf.replaceAll("{i}", String(i))] = { dtype: "F32", shape: e.hf_shape, data };
    }
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
  const tmp = join(dir, `.config.json.${crypto.randomUUID()}.tmp`);
  await Deno.writeTextFile(tmp, JSON.stringify(toHfConfig(c), null, 2) + "\n");
  await Deno.rename(tmp, join(dir, "config.json"));
}

/** A parameter's values on the host (convenience for tests and export). */
export async function parameterArray(t: Tensor): Promise<Float32Array> {
  return await t.toArray() as Float32Array;
}
