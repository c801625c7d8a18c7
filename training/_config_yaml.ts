/**
 * Private to `config.ts`: YAML/JSON text in (with every syntax error as `file:line:col` and a map
 * from key paths to lines for validation messages) and YAML text out in a fixed key order.
 * @module
 */
import { parseJson } from "../util/json.ts";
import { isMap, isScalar, LineCounter, parseDocument, stringify } from "npm:yaml@^2.9";
import { LORA_SPECS, QUANT_SPECS, TOP_SPECS } from "./_config_schema.ts";
import { MODEL_CONFIG_KEYS } from "../models/config.ts";
import { KWARG_SPECS } from "./_schedule_kwargs.ts";
import { readNamedTextFile } from "../util/atomic.ts";
import { yamlProblem } from "../util/problems.ts";

/** Parsed file: the value and the 1-based line of each key path (`lora.r`) when known. */
export interface Parsed {
  value: unknown;
  line: (key: string) => number | undefined;
}

/**
 * Parse YAML (`.yaml`, `.yml`) or JSON (`.json`) text.
 * @throws {SyntaxError} listing every syntax error as `file:line:col: message`.
 */
export function parseConfigText(text: string, file: string): Parsed {
  const json = /\.json$/i.test(file);
  if (json) return { value: parseJson(text, `training config ${file}`), line: () => undefined };
  const lineCounter = new LineCounter();
  // npm:yaml reads the env var LOG_TOKENS: without --allow-env, Deno's NotCapable passes through.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((err) => {
      const { line, col } = lineCounter.linePos(err.pos[0]);
      return `  - ${file}:${line}:${col}: ${yamlProblem(err.message)}`;
    });
    const n = doc.errors.length;
    throw new SyntaxError(
      `Cannot parse training config ${file}: ${n} YAML error${n === 1 ? "" : "s"}:\n${lines.join("\n")}`,
    );
  }
  const where = new Map<string, number>();
  const walk = (node: unknown, prefix: string, depth: number) => {
    if (!isMap(node) || depth > 2) return;
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (key === undefined) continue;
      const range = (pair.key as { range?: [number, number, number] }).range;
      if (range) where.set(prefix + key, lineCounter.linePos(range[0]).line);
      walk(pair.value, `${prefix}${key}.`, depth + 1);
    }
  };
  walk(doc.contents, "", 0);
  return { value: doc.toJS(), line: (key) => where.get(key) ?? where.get(key.split(".")[0]) };
}

/**
 * Read a config file: YAML (`.yaml`, `.yml`) or JSON (`.json`), chosen by extension.
 * @throws {SyntaxError} for another extension or bad text; {Deno.errors.NotFound} when missing.
 */
export async function readConfigFile(path: string): Promise<Parsed> {
  if (!/\.(ya?ml|json)$/i.test(path)) {
    throw new SyntaxError(`Cannot load training config ${path}: unknown extension; use .yaml, .yml or .json`);
  }
  const text = await readNamedTextFile(path, "Cannot load training config:", "give a .yaml or .json file");
  return parseConfigText(text, path);
}

/** Copy `obj` with keys in `order` first (those present), then the rest in their own order. */
function ordered(obj: Record<string, unknown>, order: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of order) if (k in obj) out[k] = obj[k];
  for (const k of Object.keys(obj)) if (!(k in out)) out[k] = obj[k];
  return out;
}

/**
 * The first line of a config fledge wrote resolved (a run's config.yaml, a search's
 * best_config.yaml): its fields at their defaults restate them rather than ask for them.
 */
export const RESOLVED_CONFIG_HEADER =
  "# fledge TrainingConfig (resolved: every field, defaults included). Fields: training/config.ts";

/**
 * YAML text of a validated config (or some of its fields): top-level, `model_config`, `lora`,
 * `quantization` and kwargs in schema order, after `header` (a comment line).
 */
export function configToYaml(config: Record<string, unknown>, header = RESOLVED_CONFIG_HEADER): string {
  const top = ordered(config, Object.keys(TOP_SPECS));
  const sections: [string, readonly string[]][] = [
    ["model_config", MODEL_CONFIG_KEYS],
    ["lora", Object.keys(LORA_SPECS)],
    ["quantization", Object.keys(QUANT_SPECS)],
    ["lr_scheduler_kwargs", Object.keys(KWARG_SPECS)],
  ];
  for (const [k, order] of sections) {
    if (top[k] && typeof top[k] === "object") top[k] = ordered(top[k] as Record<string, unknown>, order);
  }
  return header + "\n" + stringify(top, { lineWidth: 0 });
}
