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
import { MODEL_FILE_PATTERNS, snapshotDownload } from "../models/hub/hub.ts";
import { loadModel } from "../models/pretrained.ts";
import type { Tokenizer } from "../models/tokenizer/tokenizer.ts";
import { Transformer } from "../models/transformer.ts";
import { readJsonFile } from "../util/json.ts";

/** True when `name` is one of the {@linkcode PRESETS}. */
export function isPreset(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

/** The local folder of a model folder path or hub id (downloaded to the hub cache when needed). */
export async function modelDir(id: string): Promise<string> {
  return await snapshotDownload(id, { allow_patterns: [...MODEL_FILE_PATTERNS] });
}

/** The shape of the model `name` names, and its folder (null for a preset). */
export interface RunModelSpec {
  config: ModelConfig;
  dir: string | null;
}

/** A preset's config (reshaped by `model_config`), or a folder's / hub id's `config.json` and folder. */
export async function resolveRunModel(
  name: string,
  model_config: Partial<ModelConfig> | null | undefined,
): Promise<RunModelSpec> {
  if (isPreset(name)) return { config: presetConfig(name, model_config ?? {}), dir: null };
  const dir = await modelDir(name);
  const file = join(dir, "config.json");
  return { config: fromHfConfig(await readJsonFile(file), { file }), dir };
}

/**
 * The folder's trained weights, or a preset initialized with `seed`, taking `tokenizer`'s special
 * ids (a folder's config.json keeps its own, as in HF).
 */
export async function initRunModel(
  spec: RunModelSpec,
  tokenizer: Tokenizer,
  backend: Backend,
  seed: number,
): Promise<Transformer> {
  return spec.dir
    ? await loadModel(spec.dir, { backend })
    : Transformer.init(withTokenIds(spec.config, tokenizer), backend, { seed });
}
