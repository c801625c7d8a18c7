/**
 * The Debian package-description datasets of `shared/datasets/debian` (see its README): real
 * English text from Debian maintainers and German DDTP translations, in four small tasks with
 * `train` and `validation` splits (the `test` split is held out). Records come back normalized:
 * - `summarization`: `{ document, summary }`
 * - `translation`: `{ en, de, level }` (`level` is `"short"` for synopses, `"long"` for descriptions)
 * - `classification`: `{ text, label }` with the Debian section as a string label
 * - `classification-binary`: `{ text, label }` with 1 = games, 0 = other
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { streamJsonl } from "./jsonl.ts";
import { shuffleRecords } from "./split.ts";
import { checkSelectOptions, checkShuffleSeed } from "./_select.ts";

/** The four Debian tasks. */
export type DebianTask = "summarization" | "translation" | "classification" | "classification-binary";

/** The splits shipped in the folder (`test` is held out). */
export type DebianSplit = "train" | "validation";

/** A normalized Debian record (fields depend on the task, see the module doc). */
export type DebianRecord =
  | { document: string; summary: string }
  | { en: string; de: string; level: "short" | "long" }
  | { text: string; label: string | number };

/** Options of {@linkcode loadDebian}. */
export interface DebianOptions {
  /** The `debian` folder; default `../../shared/datasets/debian` relative to this module. */
  root?: string;
  /** Stop after this many records (after `level` filtering and the shuffle). */
  max_samples?: number;
  /** Shuffle with `seed` (default 42). */
  shuffle?: boolean;
  /** Seed of the shuffle. */
  seed?: number;
  /** Translation only: keep only `"short"` or `"long"` pairs. */
  level?: "short" | "long";
}

const FIELDS: Record<DebianTask, string[]> = {
  summarization: ["document", "summary"],
  translation: ["en", "de", "level"],
  classification: ["text", "label"],
  "classification-binary": ["text", "label"],
};

/**
 * The Debian datasets folder: `FLEDGE_DEBIAN_DATA` when set, else beside the checkout,
 * `<repo>/../shared/datasets/debian`.
 */
export function debianRoot(): string {
  const own = Deno.env.get("FLEDGE_DEBIAN_DATA");
  if (own) return own;
  const url = new URL("../../shared/datasets/debian", import.meta.url);
  if (url.protocol !== "file:") {
    throw new TypeError(
      `Cannot locate the Debian datasets: this module was loaded from ${url.origin}, not from a file; pass root`,
    );
  }
  return fileURLToPath(url);
}

/**
 * Check that the Debian `files` (paths under `root`, e.g. `summarization/train.jsonl`) exist before
 * `what` starts, in one line saying where they were looked for and how to point elsewhere.
 * @throws {Deno.errors.NotFound} naming the first missing file
 */
export function requireDebianFiles(
  what: string,
  files: readonly string[],
  root: string = debianRoot(),
): void {
  for (const f of files) {
    const path = join(root, f);
    try {
      Deno.statSync(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new Deno.errors.NotFound(
        `Cannot ${what}: it reads the Debian datasets, and ${path} does not exist; put the datasets ` +
          `(datasets/debian of the shared folder) at ${root}, or set FLEDGE_DEBIAN_DATA to their folder`,
      );
    }
  }
}

/**
 * Load one split of a Debian task as normalized records.
 *
 * @param task `summarization`, `translation`, `classification` or `classification-binary`
 * @param split `train` or `validation`
 * @param opts `root`, `max_samples`, `shuffle`, `seed`, `level`
 * @returns the records, in file order (sorted by package) unless shuffled
 * @throws {TypeError} an unknown task, or a record whose fields have the wrong type (naming `file:line`)
 * @throws {RangeError} a split that does not exist (listing those that do)
 * @throws {Deno.errors.NotFound} the folder is missing (saying where it looked and how to point elsewhere)
 * @example
 * ```ts
 * import { loadDebian } from "./debian.ts";
 * const rows = await loadDebian("classification-binary", "validation", { max_samples: 3 });
 * if (rows.length !== 3 || !("text" in rows[0]) || typeof rows[0].label !== "number") throw new Error("shape");
 * ```
 */
export async function loadDebian(
  task: DebianTask,
  split: DebianSplit,
  opts: DebianOptions = {},
): Promise<DebianRecord[]> {
  if (!Object.hasOwn(FIELDS, task)) {
    throw new TypeError(`Cannot load Debian task "${task}": the tasks are ${Object.keys(FIELDS).join(", ")}`);
  }
  checkShuffleSeed(opts, `Debian task "${task}"`);
  checkSelectOptions({ max_samples: opts.max_samples }, `Debian task "${task}"`);
  const root = opts.root ?? debianRoot();
  const dir = join(root, task);
  let splits: string[];
  try {
    splits = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".jsonl"))
      .map((n) => n.slice(0, -6)).sort();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Deno.errors.NotFound(
      `Cannot load Debian task "${task}": ${dir} does not exist; pass root (the debian folder)`,
    );
  }
  if (!splits.includes(split)) {
    throw new RangeError(
      `Cannot load Debian ${task} split "${split}": the splits in ${dir} are ${splits.join(", ")}` +
        (split === ("test" as string) ? " (the test split is held out)" : ""),
    );
  }
  if (opts.level !== undefined && (task !== "translation" || !["short", "long"].includes(opts.level))) {
    throw new TypeError(
      `Cannot use level "${opts.level}" with task ${task}: level is "short" or "long", for translation only`,
    );
  }
  const path = join(dir, `${split}.jsonl`);
  const fields = FIELDS[task];
  const max = opts.shuffle ? Infinity : (opts.max_samples ?? Infinity);
  let out: DebianRecord[] = [];
  let line = 0;
  for await (const raw of streamJsonl(path, { columns: fields })) {
    line++;
    if (out.length >= max) break;
    if (opts.level !== undefined && raw.level !== opts.level) continue;
    const wantNumber = task === "classification-binary";
    for (const f of fields) {
      const ok = f === "label" && wantNumber ? raw[f] === 0 || raw[f] === 1 : typeof raw[f] === "string";
      if (!ok) {
        throw new TypeError(
          `Cannot read ${path} record ${line}: field "${f}" is ${JSON.stringify(raw[f])}, expected ` +
            `${f === "label" && wantNumber ? "0 or 1" : "a string"}; the file does not match the README`,
        );
      }
    }
    out.push(raw as DebianRecord);
  }
  if (opts.shuffle) out = shuffleRecords(out, { seed: opts.seed });
  return opts.max_samples === undefined ? out : out.slice(0, opts.max_samples);
}
