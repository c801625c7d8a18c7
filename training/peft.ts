/**
 * LoRA, DoRA and QLoRA on the one decoder, in PEFT's file format (`adapter_config.json` +
 * `adapter_model.safetensors` with `base_model.model.<module>.lora_A.weight` keys), matching PEFT
 * 0.14's forward and gradients (see `_peft_layer.ts` for the math).
 *
 * Adapters attach to Hugging Face module names (`q_proj`, `c_attn`, `qkv_proj`, `all-linear`);
 * a fused HF module maps onto fledge's split linears as row blocks sharing one `lora_A`.
 * QLoRA = {@linkcode quantizeModel} (NF4 base weights read by `linearQ4`) + {@linkcode applyLora}.
 *
 * @example
 * ```ts
 * import { createBackend } from "../kernels/backend.ts";
 * import { noGrad } from "../kernels/autograd.ts";
 * import { presetConfig } from "../models/config.ts";
 * import { Transformer } from "../models/transformer.ts";
 * import { adapterParameters, applyLora, mergeAdapter } from "./peft.ts";
 * const be = await createBackend("cpu");
 * const model = Transformer.init(presetConfig("tiny", { num_hidden_layers: 1, vocab_size: 32 }), be);
 * const config = applyLora(model, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] });
 * if (config.target_modules.length !== 2 || adapterParameters(model).length !== 4) throw new Error("lora");
 * mergeAdapter(model); // B = 0 at init: the merged model equals the base
 * const logits = noGrad(() => model.forward(be.fromArray([1, 2], [1, 2], "i32")));
 * if (logits.shape[2] !== 32 || model.adapters.size !== 0) throw new Error("merge");
 * ```
 * @module
 */
import { join } from "node:path";
import { pathExists, writeFileAtomic } from "../util/atomic.ts";
import { readJsonFile } from "../util/json.ts";
import { checkBooleans, checkPathArg, refuseUnknownOptions } from "../util/problems.ts";
import { noGrad } from "../kernels/autograd.ts";
import { add, mul } from "../kernels/elementwise.ts";
import { doraNormForward } from "../kernels/lora.ts";
import { matmul } from "../kernels/matmul.ts";
import { dequantize, quantize, type QuantizedTensor, type QuantKind } from "../kernels/quant.ts";
import type { Tensor } from "../kernels/tensor.ts";
import { openSafetensors, writeSafetensors } from "../models/formats/safetensors.ts";
import { modelSource } from "../models/pretrained.ts";
import type { Transformer } from "../models/transformer.ts";
import type { ModelConfig } from "../models/config_types.ts";
import { adapterConfigJson, type PeftConfig, validatePeftConfig } from "./_peft_config.ts";
import { buildModule, initialWeights, isPeftAdapter, type LoraModule, peftAdapter } from "./_peft_layer.ts";
import { linearModules, selectTargets, type TargetModule } from "./_peft_targets.ts";
import { type ExtraTensor, extraTensors, fromHf, toHf } from "./_peft_extras.ts";
import { checkSeed } from "../util/random.ts";

export type { PeftConfig };

/** The LoRA settings {@linkcode applyLora} takes: PEFT `LoraConfig` fields, any subset. */
export interface LoraOptions extends Partial<Omit<PeftConfig, "target_modules">> {
  /** Module names, `"all-linear"`, a regular expression over module paths, or null for the family's default. */
  target_modules?: string[] | string | null;
}

/** Options of {@linkcode applyLora}. */
export interface ApplyLoraOptions {
  /** Seed of the initial `lora_A` (and dropout masks); default 0. */
  seed?: number;
  /** Where the config came from, for messages (e.g. `run.yaml: lora`); default "the LoRA config". */
  source?: string;
}

function weightOf(model: Transformer, linear: string): Tensor | QuantizedTensor {
  return model.quantized.get(linear) ?? model.p(`${linear}.weight`);
}

/** The adapter modules attached to `model`, in module order. */
function modules(model: Transformer): LoraModule[] {
  const seen = new Set<LoraModule>();
  for (const a of model.adapters.values()) if (isPeftAdapter(a)) seen.add(a.module);
  return [...seen];
}

function install(model: Transformer, m: LoraModule, trainable: boolean): void {
  m.lora_A.requiresGrad = trainable;
  m.parts.forEach((p, i) => {
    p.lora_B.requiresGrad = trainable;
    if (p.magnitude) p.magnitude.requiresGrad = trainable;
    model.adapters.set(p.linear, peftAdapter(m, i));
  });
}

function resolve(
  model: Transformer,
  config: unknown,
  file: string | null,
): { c: PeftConfig; targets: TargetModule[] } {
  if (model.adapters.size) {
    throw new TypeError(
      `Cannot attach an adapter: the model already has one on ${model.adapters.size} linears; call mergeAdapter() or removeAdapter() first`,
    );
  }
  const c = validatePeftConfig(config, model.config.arch, file ?? "applyLora(config)");
  const targets = selectTargets(model.config, c.target_modules, file ? `${file}: ` : "");
  // PEFT sets fan_in_fan_out for Conv1D targets (GPT-2) and clears it for nn.Linear ones.
  c.fan_in_fan_out = targets.some((t) => t.conv1d);
  return { c, targets };
}

/**
 * Attach fresh LoRA (or DoRA with `use_dora`) adapters to the targeted linears and freeze every
 * base weight (PEFT `get_peft_model(model, LoraConfig(...))`, in place); only the adapters' tensors then require gradients ({@linkcode adapterParameters}).
 * Initialisation as PEFT: `lora_A` Kaiming-uniform, `lora_B` zeros, DoRA magnitude = row norms of W.
 *
 * @param config PEFT `LoraConfig` fields; missing ones take PEFT's defaults (targets per architecture)
 * @returns the resolved config (saved by {@linkcode saveAdapter})
 * @throws {TypeError} or {@linkcode RangeError} listing every bad field, or for targets the model lacks
 */
export function applyLora(
  model: Transformer,
  config: LoraOptions = {},
  opts: ApplyLoraOptions = {},
): PeftConfig {
  const seed = opts.seed ?? 0;
  checkSeed(seed, "Cannot apply LoRA"); // before anything about the model changes
  const { c, targets } = resolve(model, config, opts.source ?? null);
  model.setTrainable(false);
  const extras = extraTensors(model.config, c, targets); // before anything is attached: errors leave no trace
  targets.forEach((t, j) => {
    const s = (seed + Math.imul(j + 1, 0x9e3779b1)) >>> 0;
    const host = { ...initialWeights(t, c, s), magnitude: null };
    install(model, buildModule(model.backend, t, c, host, (l) => weightOf(model, l), s), true);
  });
  setExtrasTrainable(model, extras, true);
  return c;
}

/** The biases and `modules_to_save` weights the adapter trains and saves (none by default). */
function extrasOf(model: Transformer): ExtraTensor[] {
  const ms = modules(model);
  return ms.length ? extraTensors(model.config, ms[0].config, ms.map((m) => m.target)) : [];
}

function setExtrasTrainable(model: Transformer, extras: ExtraTensor[], on: boolean): void {
  for (const e of extras) for (const n of e.ours) model.p(n).requiresGrad = on;
}

/** The adapter's config, or null when the model has none. */
export function adapterConfig(model: Transformer): PeftConfig | null {
  return modules(model)[0]?.config ?? null;
}

/** The adapter tensors that train (`lora_A`, the `lora_B` blocks, DoRA magnitudes), in a stable order. */
export function adapterParameters(model: Transformer): Tensor[] {
  return modules(model).flatMap((m) => [
    m.lora_A,
    ...m.parts.flatMap((p) => (p.magnitude ? [p.lora_B, p.magnitude] : [p.lora_B])),
  ]);
}

/**
 * The tensors an optimizer steps: the model's parameters that require gradients (all of them in
 * full fine-tuning) and the adapter's (LoRA / DoRA), in a stable order.
 * @param model a model, with or without an adapter
 * @returns the trainable tensors
 */
export function trainableParameters(model: Transformer): Tensor[] {
  return [...model.parameters(), ...adapterParameters(model)].filter((p) => p.requiresGrad);
}

/** A host tensor in PEFT's layout. */
export interface AdapterTensor {
  /** PEFT's shape: `[r, in]` for `lora_A.weight`, `[out, r]` for `lora_B.weight`, `[out]` for the magnitude. */
  shape: number[];
  /** The elements, row-major, `shape`'s product long. */
  data: Float32Array;
}

/**
 * The adapter in PEFT's key names and layout (fused modules re-joined): `lora_A.weight`,
 * `lora_B.weight`, `lora_magnitude_vector`. With `grad`, their gradients instead (zeros where none
 * was accumulated), e.g. to compare with PEFT's.
 */
export async function adapterTensors(
  model: Transformer,
  opts: { grad?: boolean } = {},
): Promise<Map<string, AdapterTensor>> {
  const read = async (t: Tensor) =>
    opts.grad
      ? (t.grad ? await t.grad.toArray() as Float32Array : new Float32Array(t.size))
      : await t.toArray() as Float32Array;
  const out = new Map<string, AdapterTensor>();
  for (const m of modules(model)) {
    const prefix = `base_model.model.${m.target.hf}`, r = m.config.r;
    out.set(`${prefix}.lora_A.weight`, { shape: [r, m.target.in_features], data: await read(m.lora_A) });
    const B = new Float32Array(m.target.out_features * r);
    const mag = m.config.use_dora ? new Float32Array(m.target.out_features) : null;
    let r0 = 0;
    for (const p of m.parts) {
      B.set(await read(p.lora_B), r0 * r);
      if (mag && p.magnitude) mag.set(await read(p.magnitude), r0);
      r0 += p.rows;
    }
    out.set(`${prefix}.lora_B.weight`, { shape: [m.target.out_features, r], data: B });
    if (mag) out.set(`${prefix}.lora_magnitude_vector`, { shape: [m.target.out_features], data: mag });
  }
  for (const e of extrasOf(model)) {
    const pieces = await Promise.all(e.ours.map((n) => read(model.p(n))));
    out.set(e.key, { shape: e.hf_shape, data: toHf(e, pieces) });
  }
  return out;
}

/**
 * Write the adapter as PEFT's `save_pretrained` does: `adapter_config.json` (sorted keys) and
 * `adapter_model.safetensors` (f32, `{format: "pt"}`), each atomically. Loadable by
 * `PeftModel.from_pretrained`.
 * @throws {TypeError} when the model has no adapter
 */
export async function saveAdapter(model: Transformer, dir: string): Promise<void> {
  const c = adapterConfig(model);
  if (!c) {
    throw new TypeError(
      `Cannot save an adapter to ${dir}: the model has none (applyLora or loadAdapter first)`,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const tensors = new Map<string, { dtype: "F32"; shape: number[]; data: Float32Array }>();
  for (const [k, t] of await adapterTensors(model)) tensors.set(k, { dtype: "F32", ...t });
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors);
  await writeFileAtomic(join(dir, "adapter_config.json"), adapterConfigJson(c));
}

/**
 * The base model an adapter names (`base_model_name_or_path`) when it is not the model it is applied
 * to, else null. Shapes are checked by {@linkcode loadAdapter}; this catches a base of the same shape
 * (another fine-tune, another checkpoint), whose adapter loads and then gives other outputs. Same:
 * one folder on disk, the same hub id, or the hub cache's snapshot of that id. PEFT does not check.
 *
 * @param c the adapter's config (what {@linkcode loadAdapter} returns)
 * @param model the model it was loaded onto
 * @param name how the model was named (`--model`: a folder or a hub id)
 * @returns the named base, or null when it is this model or the adapter names none
 */
export async function otherAdapterBase(
  c: PeftConfig,
  model: Transformer,
  name: string,
): Promise<string | null> {
  const base = c.base_model_name_or_path;
  if (!base || base === name) return null;
  const src = modelSource(model);
  const real = (p: string | undefined) => p === undefined ? null : Deno.realPath(p).catch(() => null);
  const [a, b, n] = await Promise.all([real(base), real(src), real(name)]);
  if (a !== null && (a === b || a === n)) return null;
  // a hub id, loaded from the cache's models--org--name/snapshots/<rev>
  if (src?.split(/[\\/]/).includes(`models--${base.replaceAll("/", "--")}`)) return null;
  return base;
}

/** Options of {@linkcode loadAdapter}. */
export interface LoadAdapterOptions {
  /** PEFT's `is_trainable`: the adapter tensors require gradients (default false: inference). */
  is_trainable?: boolean;
}

/** What {@linkcode readAdapter} reads from an adapter folder. */
export interface AdapterFiles {
  /** The adapter's config, resolved for the model (PEFT's defaults filled in). */
  config: PeftConfig;
  /** The adapted modules. */
  targets: TargetModule[];
  /**
   * Every tensor of `adapter_model.safetensors` as f32 in PEFT's names and layout (`lora_A.weight`,
   * `lora_B.weight`, `lora_magnitude_vector`, and the biases and `modules_to_save` it trains),
   * checked against the model's shapes.
   */
  tensors: Map<string, AdapterTensor>;
  /** The biases and `modules_to_save` among them. */
  extras: ExtraTensor[];
}

/**
 * Read a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`) for a model
 * of `config`, without the model's weights (`export --adapter_only` reads a 7B base's adapter in
 * its few megabytes).
 * @throws {SyntaxError} for unreadable JSON; {@linkcode TypeError} / {@linkcode RangeError} for bad or
 *   unsupported config fields, and missing, misshapen or unexpected tensors (named with the file)
 */
export async function readAdapter(dir: string, config: ModelConfig): Promise<AdapterFiles> {
  checkPathArg(dir, "readAdapter", "dir");
  const cfgPath = join(dir, "adapter_config.json"), file = join(dir, "adapter_model.safetensors");
  let json: unknown;
  try {
    json = await readJsonFile(cfgPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    throw new TypeError(
      `Cannot load the adapter in ${dir}: ${cfgPath} is missing (a PEFT adapter folder has adapter_config.json)`,
    );
  }
  const c = validatePeftConfig(json, config.arch, cfgPath);
  const targets = selectTargets(config, c.target_modules, `${cfgPath}: `);
  c.fan_in_fan_out = targets.some((t) => t.conv1d); // PEFT: set for Conv1D targets (GPT-2)
  if (!(await Deno.stat(file).then((s) => s.isFile, () => false))) {
    const bin = await pathExists(join(dir, "adapter_model.bin"));
    throw new TypeError(
      `Cannot load the adapter in ${dir}: adapter_model.safetensors is missing` +
        (bin ? "; adapter_model.bin (pickle) is not read: save it with safe_serialization=True" : ""),
    );
  }
  const reader = await openSafetensors(file);
  const tensors = new Map<string, AdapterTensor>();
  try {
    const names = new Set(reader.names());
    const take = async (key: string, shape: number[], alt?: string, by = "target_modules"): Promise<void> => {
      const k = names.has(key) ? key : alt && names.has(alt) ? alt : null;
      if (!k) {
        throw new TypeError(`Cannot load ${file}: tensor ${key} is missing (${by} in ${cfgPath} names it)`);
      }
      names.delete(k);
      const t = await reader.read(k, { as: "f32" });
      if (t.shape.join() !== shape.join()) {
        // the rank axis of lora_A [r, in] / lora_B [out, r] against the config's r; any other axis is the base's
        const rAxis = key.endsWith(".lora_A.weight") ? 0 : key.endsWith(".lora_B.weight") ? 1 : -1;
        const base = c.base_model_name_or_path;
        const why = rAxis >= 0 && t.shape.length === 2 && t.shape[rAxis] !== c.r
          ? `r is ${c.r} in ${cfgPath}`
          : `the adapter was made for a base model of other shapes${
            base ? ` (${base})` : ""
          }, not this ${config.arch} model (hidden_size ${config.hidden_size}); load it onto its base model`;
        throw new TypeError(
          `Cannot load ${file}: tensor ${k} has shape [${t.shape}], expected [${shape}]: ${why}`,
        );
      }
      tensors.set(key, { shape, data: t.data as Float32Array });
    };
    for (const t of targets) {
      const prefix = `base_model.model.${t.hf}`;
      await take(`${prefix}.lora_A.weight`, [c.r, t.in_features]);
      await take(`${prefix}.lora_B.weight`, [t.out_features, c.r]);
      if (c.use_dora) {
        await take(
          `${prefix}.lora_magnitude_vector`,
          [t.out_features],
          `${prefix}.lora_magnitude_vector.weight`,
        );
      }
    }
    let extras = extraTensors(config, c, targets);
    // PEFT 0.14 saves no bias under bias: "lora_only" (it looks for <module>.bias, not the wrapped
    // base_layer.bias: huggingface/peft#3306), and its adapter reloads onto the base's biases.
    const own = extras.filter((e) => c.bias === "lora_only" && e.old_key !== null);
    if (own.length && own.every((e) => !names.has(e.key) && !names.has(e.old_key!))) {
      extras = extras.filter((e) => !own.includes(e));
    }
    for (const e of extras) await take(e.key, e.hf_shape, e.old_key ?? undefined, "bias or modules_to_save");
    if (names.size) {
      throw new TypeError(
        `Cannot load ${file}: unexpected tensors ${[...names].slice(0, 5).join(", ")}${
          names.size > 5 ? ` and ${names.size - 5} more` : ""
        } (the config's target_modules, bias and modules_to_save name no such tensors)`,
      );
    }
    return { config: c, targets, tensors, extras };
  } finally {
    reader.close();
  }
}

/**
 * Attach a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`) to `model`,
 * freezing the base weights (PEFT `PeftModel.from_pretrained(model, dir)`, in place). Fused HF modules are split onto the canonical linears.
 *
 * @returns the adapter's config
 * @throws {SyntaxError} for unreadable JSON; {@linkcode TypeError} / {@linkcode RangeError} for bad or
 *   unsupported config fields, and missing, misshapen or unexpected tensors (named with the file)
 */
export async function loadAdapter(
  model: Transformer,
  dir: string,
  opts: LoadAdapterOptions = {},
): Promise<PeftConfig> {
  checkPathArg(dir, "loadAdapter", "dir");
  refuseUnknownOptions(opts, ["is_trainable"], "loadAdapter");
  checkBooleans(opts, ["is_trainable"], "Cannot load the adapter");
  if (model.adapters.size) {
    throw new TypeError(
      `Cannot attach an adapter: the model already has one on ${model.adapters.size} linears; call mergeAdapter() or removeAdapter() first`,
    );
  }
  const { config: c, targets, tensors, extras } = await readAdapter(dir, model.config);
  const data = (key: string) => tensors.get(key)!.data;
  const built: LoraModule[] = [];
  const pieces: [ExtraTensor, Float32Array[]][] = [];
  try {
    for (const t of targets) {
      const prefix = `base_model.model.${t.hf}`;
      const magnitude = c.use_dora ? data(`${prefix}.lora_magnitude_vector`) : null;
      const weights = { A: data(`${prefix}.lora_A.weight`), B: data(`${prefix}.lora_B.weight`), magnitude };
      built.push(buildModule(model.backend, t, c, weights, (l) => weightOf(model, l), 0));
    }
    for (const e of extras) pieces.push([e, fromHf(e, data(e.key), e.ours.map((n) => model.p(n).shape))]);
  } catch (e) {
    for (const m of built) {
      m.lora_A.dispose();
      for (const p of m.parts) [p.lora_B, p.magnitude].forEach((t) => t?.dispose());
    }
    throw e;
  }
  model.setTrainable(false);
  for (const m of built) install(model, m, opts.is_trainable ?? false);
  // The adapter's biases and modules_to_save replace the base's (PEFT loads them over the model).
  for (const [e, parts] of pieces) {
    e.ours.forEach((n, j) => {
      const old = model.p(n);
      const t = model.backend.fromArray(parts[j], old.shape, old.dtype);
      t.name = old.name;
      t.requiresGrad = opts.is_trainable ?? false;
      model.params.set(n, t);
      old.dispose();
    });
  }
  return c;
}

/** Detach and release the adapter without merging it (PEFT `unload()`). */
export function removeAdapter(model: Transformer): void {
  for (const a of model.adapters.values()) a.dispose?.();
  model.adapters.clear();
}

/**
 * Fold the adapter into the base weights and detach it (PEFT `merge_and_unload()`):
 * `W ← W + s B A`, and for DoRA `W ← (m / ||W + s B A||) ⊙ (W + s B A)` per row. A 4-bit base
 * weight is dequantized, merged and quantized again (as PEFT does for bitsandbytes layers), or
 * with `dequantize` kept in f32 (Unsloth's `merged_16bit`): what a model saved in f32 wants, since
 * quantizing again rounds part of the adapter away.
 * @param opts `dequantize`: leave merged 4-bit weights in f32 (default false)
 * @throws {TypeError} when the model has no adapter
 */
export function mergeAdapter(model: Transformer, opts: { dequantize?: boolean } = {}): void {
  refuseUnknownOptions(opts, ["dequantize"], "mergeAdapter");
  const ms = modules(model);
  if (!ms.length) throw new TypeError("Cannot merge an adapter: the model has none");
  noGrad(() => {
    for (const m of ms) {
      for (const p of m.parts) {
        const q = model.quantized.get(p.linear);
        const w = q ? dequantize(q) : model.p(`${p.linear}.weight`);
        const delta = matmul(p.lora_B, m.lora_A, { alpha: m.scaling }); // [rows, in]
        let merged = add(w, delta);
        delta.dispose();
        if (p.magnitude) {
          const inv = model.backend.empty([p.rows]);
          doraNormForward(inv, w, m.lora_A, p.lora_B, m.scaling, { inverse: true });
          const scale = mul(p.magnitude, inv);
          inv.dispose();
          const col = scale.reshape([p.rows, 1]);
          const scaled = mul(merged, col);
          for (const t of [scale, col, merged]) t.dispose();
          merged = scaled;
        }
        if (q && !opts.dequantize) {
          const q2 = quantize(merged, { kind: q.kind, blockSize: q.blockSize, doubleQuant: q.doubleQuant });
          q2.name = q.name;
          merged.dispose();
          w.dispose();
          q.dispose();
          model.quantized.set(p.linear, q2);
        } else {
          merged.name = q ? q.name : w.name;
          merged.requiresGrad = !q && w.requiresGrad;
          model.params.set(`${p.linear}.weight`, merged);
          w.dispose();
          if (q) {
            model.quantized.delete(p.linear);
            q.dispose();
          }
        }
      }
    }
  });
  removeAdapter(model);
}

/** Options of {@linkcode quantizeModel} (bitsandbytes `BitsAndBytesConfig` in spirit). */
export interface QuantizeModelOptions {
  /** 4-bit code: `nf4` (QLoRA, default) or `q4` (symmetric int4). */
  kind?: QuantKind;
  /** Elements per scale (a multiple of 8); default 64, QLoRA's. */
  blockSize?: number;
  /**
   * Quantize the per-block scales again to 8 bits (bitsandbytes' `bnb_4bit_use_double_quant`):
   * about 0.37 bits per weight less; default false.
   */
  doubleQuant?: boolean;
}

/**
 * Replace every linear layer's f32 weight (attention and MLP projections; not embeddings, norms
 * or the LM head) by a frozen 4-bit copy that `linearQ4` reads directly, as `load_in_4bit` does.
 * Biases stay f32. With {@linkcode applyLora} this is QLoRA.
 *
 * @returns how many weights were quantized and their bytes before and after
 * @throws {RangeError} for a bad block size; {@linkcode TypeError} when the model is already quantized
 */
export function quantizeModel(
  model: Transformer,
  opts: QuantizeModelOptions = {},
): { weights: number; bytes_before: number; bytes_after: number } {
  if (model.quantized.size) {
    throw new TypeError(`Cannot quantize the model: ${model.quantized.size} weights already are 4-bit`);
  }
  let weights = 0, before = 0, after = 0;
  for (const t of linearModules(model.config)) {
    for (const p of t.parts) {
      const name = `${p.linear}.weight`;
      const w = model.p(name);
      const q = quantize(w, {
        kind: opts.kind ?? "nf4",
        blockSize: opts.blockSize ?? 64,
        doubleQuant: opts.doubleQuant ?? false,
      });
      q.name = name;
      model.quantized.set(p.linear, q);
      model.params.delete(name);
      before += w.bytes;
      after += q.bytes;
      weights++;
      w.dispose();
    }
  }
  return { weights, bytes_before: before, bytes_after: after };
}
