/**
 * Private to `hub.ts`: which files of a repo or folder make a model, as transformers loads them
 * (config, generation config, tokenizer files, then `model.safetensors` or the shards an index
 * names), so that a download never fetches `consolidated.safetensors` or `original/` as well.
 * @module
 */
import { join } from "node:path";
import { checkRelativePath, listFiles } from "./_cache.ts";
import { parseJson } from "../../util/json.ts";

/** The files of a model folder that belong to its tokenizer (`saveModel` copies them along). */
export const TOKENIZER_FILES: readonly string[] = Object.freeze([
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "chat_template.jinja", // transformers >= 4.43 saves the template here, not in tokenizer_config.json
  "chat_template.json",
]);

const INDEX = "model.safetensors.index.json";

/**
 * The files a model needs, at the top of the repo only: config, generation config, tokenizer files
 * and the weights, `model.safetensors` or, as transformers loads them, `model.safetensors.index.json`
 * and only the shards its `weight_map` names (never `consolidated.safetensors` or `original/`).
 * {@linkcode downloadModel} applies the index rule; as plain `allow_patterns` these names fetch no shard.
 */
export const MODEL_FILE_PATTERNS: readonly string[] = Object.freeze([
  "config.json",
  "generation_config.json",
  ...TOKENIZER_FILES,
  "model.safetensors",
  INDEX,
]);

/** The model files among `files`: {@linkcode MODEL_FILE_PATTERNS}, less `model.safetensors` beside an index. */
export function modelFilesOf(files: readonly string[]): string[] {
  const set = new Set(files);
  return MODEL_FILE_PATTERNS.filter((f) => set.has(f) && !(f === "model.safetensors" && set.has(INDEX)));
}

/** The shards the `weight_map` of `<folder>/model.safetensors.index.json` names, sorted; none without an index. */
export async function indexShards(folder: string, files: readonly string[]): Promise<string[]> {
  if (!files.includes(INDEX)) return [];
  const path = join(folder, INDEX);
  const map = (parseJson(await Deno.readTextFile(path), path) as { weight_map?: unknown } | null)?.weight_map;
  const shards = map && typeof map === "object" && !Array.isArray(map)
    ? [...new Set(Object.values(map))]
    : [];
  if (!shards.length || shards.some((f) => typeof f !== "string")) {
    throw new SyntaxError(
      `Cannot read ${path}: "weight_map" is not an object of tensor names to shard files; ` +
        `download the model again (--force_download; force_download from code), and if the hub's own file is ` +
        `malformed, tell the repo's owner`,
    );
  }
  for (const f of shards) {
    try {
      checkRelativePath(f as string, `a shard named in ${path}`);
    } catch (e) {
      // the index file is malformed, as loadModel's own reading of it says
      throw e instanceof RangeError ? new SyntaxError(e.message) : e;
    }
  }
  return (shards as string[]).sort();
}

/** The model files of a local folder or snapshot, by the rule of {@linkcode MODEL_FILE_PATTERNS}. */
export async function listModelFiles(folder: string): Promise<string[]> {
  const files = modelFilesOf(await listFiles(folder));
  return [...files, ...(await indexShards(folder, files))].sort();
}
