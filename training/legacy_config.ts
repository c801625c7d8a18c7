/**
 * Configs people already have, read as a {@linkcode TrainingConfig} with one printed line per key:
 *
 * - nanoGPT's flat `train.py` config (`n_layer`, `n_head`, `n_embd`, `block_size`, `dropout`,
 *   `bias`, `vocab_size`, `batch_size`, `learning_rate`, `max_iters`, `eval_interval`, `eval_iters`,
 *   `weight_decay`, `beta1`, `beta2`, `grad_clip`, `decay_lr`, `warmup_iters`, `lr_decay_iters`,
 *   `min_lr`, `gradient_accumulation_steps`, `out_dir`, `dataset`, `init_from`, `device`, `dtype`,
 *   `compile`, `wandb_*`, ...): GPT-2's architecture (`model: gpt2-124m`) reshaped by `model_config`;
 * - the LLMBuilder seed's sections `model: {num_layers, num_heads, embedding_dim, max_seq_length,
 *   vocab_size, dropout, ...}`, `training: {batch_size, num_epochs, learning_rate, warmup_steps,
 *   save_every, eval_every, log_every, ...}`, `data: {block_size, seed}`, `system: {device, seed,
 *   deterministic, ...}`;
 * - the engine seed's argument names (`n_epochs`, `gradient_clip_norm`, `use_wandb`, `random_seed`,
 *   `use_amp`, `eval_batch_size`, `num_workers`, ...);
 * - the backend seed's `backend: {type, device, dtype}` (`type: null` is the default, `auto`).
 *
 * Each line reads `old: value -> new: value (why)`; a key with no effect says why fledge has no
 * such choice (`compile: true -> no-op: ...`); a key fledge cannot honour (nanoGPT `bias: false`,
 * `dtype: bfloat16`, an `lr_decay_iters` other than `max_iters`, ...) and an unknown key are errors
 * naming them, never dropped. `loadTrainingConfig` (and so `deno task cli train --config`) reads
 * these files directly; `deno task cli config migrate` writes them in fledge's names.
 * @module
 */
import { isObject, show } from "../util/problems.ts";
import { configToYaml, readConfigFile } from "./_config_yaml.ts";
import { isLegacyConfig, type LegacyFormat, migrateLegacy } from "./_config_legacy.ts";
import { TRAINING_CONFIG_KEYS, type TrainingConfig, validateTrainingConfig } from "./config.ts";

export type { LegacyFormat };

/** The result of {@linkcode migrateConfig}. */
export interface ConfigMigration {
  /** The formats recognised, e.g. `["nanoGPT"]`; empty when the config already uses fledge's names. */
  formats: LegacyFormat[];
  /** One line per key of the source (nested keys as `model.num_layers`), in file order. */
  mapping: string[];
  /** The fields the source sets, in fledge's names and validated (what `config migrate` writes). */
  fields: Partial<TrainingConfig>;
  /** The complete config: `fields` over the defaults. */
  config: TrainingConfig;
}

/**
 * Read another tool's config (or a fledge one) as a {@linkcode TrainingConfig}.
 * @param obj the parsed config
 * @param opts `file`: named in messages (default `<config>`); `line`: 1-based line of a key path
 * @returns the formats, the mapping lines, the fields set and the complete config
 * @throws {TypeError} for an unknown key (listing each, with the closest known key) or a wrong type
 * @throws {RangeError} for a value fledge cannot honour (with the reason) or an invalid result
 * @example
 * ```ts
 * import { migrateConfig } from "./legacy_config.ts";
 * const m = migrateConfig({ n_layer: 2, n_head: 2, n_embd: 32, block_size: 64, compile: false });
 * if (m.config.model !== "gpt2-124m" || m.config.model_config?.num_hidden_layers !== 2) throw new Error();
 * if (!m.mapping.some((l) => l.startsWith("compile: false -> no-op: "))) throw new Error(m.mapping.join("\n"));
 * try {
 *   migrateConfig({ n_layer: 2, n_layers: 4 }, { file: "old.json" });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!(e instanceof TypeError) || !/n_layers: unknown key/.test(e.message)) throw e;
 * }
 * ```
 */
export function migrateConfig(
  obj: unknown,
  opts: { file?: string; line?: (key: string) => number | undefined } = {},
): ConfigMigration {
  const file = opts.file ?? "<config>";
  if (!isObject(obj)) {
    throw new TypeError(`Cannot migrate config ${file}: expected a mapping of keys, got ${show(obj)}`);
  }
  const m = migrateLegacy(obj, { file, line: opts.line });
  const mapping = [...m.mapping];
  const where = m.formats.length ? `${file} (migrated from ${m.formats.join(" + ")})` : file;
  const config = validateTrainingConfig(m.config, { file: where, warn: (l) => mapping.push(l) });
  const fields: Record<string, unknown> = {};
  for (const k of TRAINING_CONFIG_KEYS) if (k in m.config) fields[k] = config[k];
  return { formats: m.formats, mapping, fields: fields as Partial<TrainingConfig>, config };
}

/**
 * {@linkcode migrateConfig} on a YAML (`.yaml`, `.yml`) or JSON (`.json`) file.
 * @param path the file
 * @returns the migration
 * @throws {SyntaxError} for an unknown extension or bad text; {Deno.errors.NotFound} for no file;
 *   the errors of {@linkcode migrateConfig}
 * @example
 * ```ts
 * import { migrateConfigFile, migrationToYaml } from "./legacy_config.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, JSON.stringify({ training: { batch_size: 4, num_epochs: 2 }, system: { seed: 7 } }));
 * const m = await migrateConfigFile(path);
 * if (m.formats[0] !== "LLMBuilder" || m.config.per_device_train_batch_size !== 4 || m.config.seed !== 7) throw new Error();
 * if (!migrationToYaml(m, { source: path }).includes("num_train_epochs: 2\n")) throw new Error();
 * await Deno.remove(path);
 * ```
 */
export async function migrateConfigFile(path: string): Promise<ConfigMigration> {
  const parsed = await readConfigFile(path);
  return migrateConfig(parsed.value, { file: path, line: parsed.line });
}

/**
 * The YAML of a migration: the fields it sets, in fledge's names and schema order, after a comment
 * naming the source; the rest take the defaults. `loadTrainingConfig` reads it back to `m.config`.
 * @param m a migration
 * @param opts `source`: the file it came from, named in the comment
 * @returns YAML text
 * @example
 * ```ts
 * import { migrateConfig, migrationToYaml } from "./legacy_config.ts";
 * const text = migrationToYaml(migrateConfig({ n_epochs: 2, random_seed: 3 }));
 * if (!text.includes("seed: 3\n") || !text.includes("num_train_epochs: 2\n")) throw new Error(text);
 * ```
 */
export function migrationToYaml(m: ConfigMigration, opts: { source?: string } = {}): string {
  const from = m.formats.length ? ` (${m.formats.join(" + ")})` : "";
  return configToYaml(
    m.fields as Record<string, unknown>,
    `# fledge TrainingConfig migrated from ${opts.source ?? "a config"}${from}: the fields it sets; the ` +
      `rest take the defaults (deno task cli config show-defaults). Fields: training/config.ts`,
  );
}

/**
 * Whether a parsed config is another tool's (a `model` / `training` / `data` / `system` /
 * `backend` mapping, or a nanoGPT or engine-seed key fledge does not name itself).
 * @param obj the parsed config
 * @returns true when {@linkcode migrateConfig} would rename something
 * @example
 * ```ts
 * import { isLegacyTrainingConfig } from "./legacy_config.ts";
 * if (!isLegacyTrainingConfig({ n_layer: 4 }) || isLegacyTrainingConfig({ learning_rate: 1e-4 })) throw new Error();
 * ```
 */
export function isLegacyTrainingConfig(obj: unknown): boolean {
  return isLegacyConfig(obj);
}
