/**
 * Private to `run.ts` and `_dpo_run.ts`: the model a run's `model` names, in two steps so its
 * shape can be checked before any data or weights are read. A preset (`tiny`, `small`, ...) is a
 * config reshaped by `model_config` and starts from random weights with its tokenizer's special
 * ids; anything else is a local Hugging Face folder or a hub id, whose `config.json` and weights
 * are used as they are (as HF does).
 * @module
 */
import { join } from "node:path";
import type { Backend } from "../kernels/backend.ts";
import {
  fromHfConfig,
  type ModelConfig,
  presetConfig,
  type PresetName,
  PRESETS,
  withTokenIds,
} from "../models/config.ts";
import { downloadModel } from "../models/hub/hub.ts";
import { loadModel } from "../models/pretrained.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { Transformer } from "../models/transformer.ts";
import { readJsonFile } from "../util/json.ts";
import { closest } from "../util/problems.ts";

/** True when `name` is one of the {@linkcode PRESETS}. */
export function isPreset(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

/** The local folder of a model folder path or hub id (downloaded to the hub cache when needed). */
export async function modelDir(id: string): Promise<string> {
  return await downloadModel(id);
}

/** The shape of the model `name` names, and its folder (null for a preset). */
export interface RunModelSpec {
  config: ModelConfig;
  dir: string | null;
  /** The `vocab_size` `model_config` gives a preset, else null (the preset's is then a placeholder). */
  vocab_size: number | null;
}

/** A preset's config (reshaped by `model_config`), or a folder's / hub id's `config.json` and folder. */
export async function resolveRunModel(
  name: string,
  model_config: Partial<ModelConfig> | null | undefined,
): Promise<RunModelSpec> {
  if (isPreset(name)) {
    return {
      config: presetConfig(name, model_config ?? {}),
      dir: null,
      vocab_size: model_config?.vocab_size ?? null,
    };
  }
  const near = name.includes("/") ? undefined : closest(name, Object.keys(PRESETS));
  const dir = await modelDir(name).catch((e) => { // "tiniest" went to the hub and came back unreachable
    if (near && e instanceof Error) {
      e.message += ` (is it the preset ${near}? the presets are ${Object.keys(PRESETS).join(", ")})`;
    }
    throw e;
  });
  const file = join(dir, "config.json");
  return { config: fromHfConfig(await readJsonFile(file), { file }), dir, vocab_size: null };
}

/**
 * The folder's trained weights, or a preset initialized with `seed` for `tokenizer` (a folder's
 * config.json keeps its own ids and size, as in HF): {@linkcode presetForTokenizer}.
 */
export async function initRunModel(
  spec: RunModelSpec,
  tokenizer: Tokenizer,
  backend: Backend,
  seed: number,
): Promise<Transformer> {
  return spec.dir
    ? await loadModel(spec.dir, { backend })
    : Transformer.init(presetForTokenizer(spec, tokenizer), backend, { seed });
}

/**
 * A preset's config built for its tokenizer, as HF users size a new model
 * (`vocab_size=len(tokenizer)`): the tokenizer's special ids, and one embedding row per id, unless
 * `model_config` sets `vocab_size` (padding, as nanoGPT's 50304 for GPT-2's 50257 ids), which must
 * hold every id. A preset's own size is a placeholder: a tokenizer trained for it on a small corpus
 * reaches fewer ids, and rows past them are ids no text has, which sampling could still draw and no
 * decode could read.
 * @throws {RangeError} when `model_config`'s `vocab_size` is smaller than the tokenizer's
 */
export function presetForTokenizer(spec: RunModelSpec, tokenizer: Tokenizer): ModelConfig {
  const ids = tokenizer.vocab_size;
  if (spec.vocab_size !== null && spec.vocab_size < ids) {
    throw new RangeError(
      `Cannot build the model: model_config.vocab_size ${spec.vocab_size} is smaller than the tokenizer's ` +
        `${ids} ids; remove vocab_size from model_config (the model then takes ${ids}) or set it >= ${ids}`,
    );
  }
  return withTokenIds({ ...spec.config, vocab_size: spec.vocab_size ?? ids }, tokenizer);
}
