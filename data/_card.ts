/**
 * Private to `readers.ts` and `hub_datasets.ts`: a dataset card's (README.md) `configs:` metadata,
 * which HF `datasets` reads before any file name: each config's name and its `data_files` by
 * split (`- split: train_sft` / `path: data/train_sft-*`), with `default: true` or the one named
 * `default` picked when no config is asked for.
 * @module
 */
import { join } from "node:path";
import { parse as parseYaml } from "npm:yaml@^2.9";

/** One `configs:` entry of a card. */
export interface CardConfig {
  config_name: string;
  default: boolean;
  /** Split name to path patterns, relative to the repo (`data/train-*`); null: the splits of `data_dir`. */
  data_files: Record<string, string[]> | null;
  /** A folder whose files are found by their names, as a folder without a card. */
  data_dir: string | null;
}

/** The card's text from a README.md's YAML front matter, or null. */
function frontMatter(text: string): unknown {
  const m = /^\s*---\r?\n([\s\S]*?)\r?\n---\s*(\r?\n|$)/.exec(text);
  if (!m) return null;
  try {
    return parseYaml(m[1]);
  } catch {
    return null; // a card HF could not read either: its data files are found by name
  }
}

const list = (v: unknown): string[] | null =>
  typeof v === "string" ? [v] : Array.isArray(v) && v.every((x) => typeof x === "string") ? v : null;

/**
 * The `configs:` of a card's text, or null when it has none (the files are then found by name).
 * @throws {TypeError} for a `configs:` entry whose `data_files` cannot be read, naming it
 */
export function cardConfigs(text: string, where: string): CardConfig[] | null {
  const meta = frontMatter(text) as { configs?: unknown } | null;
  if (!meta || typeof meta !== "object" || !Array.isArray(meta.configs) || !meta.configs.length) return null;
  return meta.configs.map((raw, i): CardConfig => {
    const c = (raw ?? {}) as Record<string, unknown>;
    // (YAML reads `config_name: 2020` as a number)
    const name = typeof c.config_name === "string" || typeof c.config_name === "number"
      ? String(c.config_name)
      : "default";
    const bad = () =>
      new TypeError(
        `Cannot read ${where}: configs[${i}] (${name}) has data_files HF would not read; expected a path, ` +
          `a list of paths, or a list of {split, path}`,
      );
    let files: Record<string, string[]> | null = null;
    const df = c.data_files;
    if (df !== undefined && df !== null) {
      files = {};
      if (list(df)) files.train = list(df)!;
      else if (Array.isArray(df)) {
        for (const e of df as Record<string, unknown>[]) {
          const paths = list(e?.path);
          if (typeof e?.split !== "string" || !paths) throw bad();
          (files[e.split] ??= []).push(...paths);
        }
      } else if (typeof df === "object") {
        for (const [split, p] of Object.entries(df as Record<string, unknown>)) {
          if (!list(p)) throw bad();
          files[split] = list(p)!;
        }
      } else throw bad();
    }
    return {
      config_name: name,
      default: c.default === true,
      data_files: files,
      data_dir: typeof c.data_dir === "string" ? c.data_dir.replace(/\/+$/, "") : null,
    };
  });
}

/** The card configs of a folder's README.md, or null. */
export function folderCardConfigs(dir: string): CardConfig[] | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(join(dir, "README.md"));
  } catch {
    return null;
  }
  return cardConfigs(text, join(dir, "README.md"));
}

/**
 * The config `name` asks for, else the default one (`default: true`, else named `default`, else
 * the only one).
 * @throws {RangeError} naming the configs there are
 */
export function pickCardConfig(configs: CardConfig[], name: string | null, where: string): CardConfig {
  const names = configs.map((c) => c.config_name).join(", ");
  if (name !== null) {
    const hit = configs.find((c) => c.config_name === name);
    if (!hit) throw new RangeError(`${where} has no config "${name}"; its configs are ${names}`);
    return hit;
  }
  const defaults = configs.filter((c) => c.default);
  if (
    defaults.length > 1 || (defaults.length && configs.some((c) => !c.default && c.config_name === "default"))
  ) {
    throw new RangeError(
      `${where} marks several default configs (${
        [...defaults, ...configs.filter((c) => !c.default && c.config_name === "default")].map((c) =>
          c.config_name
        )
          .join(", ")
      }), as HF refuses too; choose one with dataset_config`,
    );
  }
  const pick = defaults[0] ?? configs.find((c) => c.config_name === "default") ??
    (configs.length === 1 ? configs[0] : null);
  if (!pick) {
    throw new RangeError(
      `${where} has ${configs.length} configs (${names}) and none is the default; choose one with ` +
        `dataset_config (--dataset_config ${configs[0].config_name})`,
    );
  }
  return pick;
}

/** A card config's `data_files` patterns by split, relative to the repo (under its `data_dir`, as HF reads them). */
export function cardPatterns(c: CardConfig): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(c.data_files ?? {}).map((
      [split, ps],
    ) => [split, ps.map((p) => (c.data_dir ? `${c.data_dir}/${p.replace(/^\.\//, "")}` : p))]),
  );
}

/** An HF (fsspec) glob as a RegExp over `/`-separated relative paths: `*` within a folder, `**` across. */
export function globRegExp(pattern: string): RegExp {
  let src = "";
  const p = pattern.replace(/^\.\//, "");
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === "*" && p[i + 1] === "*") {
      src += p[i + 2] === "/" ? "(?:.*/)?" : ".*";
      i += p[i + 2] === "/" ? 2 : 1;
    } else if (c === "*") src += "[^/]*";
    else if (c === "?") src += "[^/]";
    else if (c === "[" && p.indexOf("]", i + 2) > 0) { // [0-9], [!a]: a character class, as fnmatch
      const end = p.indexOf("]", i + 2), body = p.slice(i + 1, end).replace(/\\/g, "\\\\");
      // `!` negates (fnmatch); a leading `^` is itself, as fnmatch reads it
      src += body.startsWith("!") ? `[^/${body.slice(1)}]` : `[${body.replace(/^\^/, "\\^")}]`;
      i = end;
    } else src += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${src}$`);
}
