/**
 * More training examples for a classification recipe (private to the recipes): every example of
 * another dataset's train split given one label (`extra_train`), and the classes repeated up to
 * the largest one's count (`balance_classes`, imbalanced-learn's random over-sampling).
 *
 * The Debian data is built so that this is sound: all four tasks split by the same key, so a
 * train record of one task is in no other task's validation split, and the 8-way
 * `classification` task draws from sections other than `games` only, so each of its texts is an
 * `other` of `classification-binary` (../shared/datasets/debian/README.md).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { loadTaskData, type TaskData, type TaskExample } from "../data/task_data.ts";
import { mulberry32 } from "../util/random.ts";

/** The recipe field `extra_train`: where the examples come from and the label they get. */
export interface ExtraTrain {
  /** `debian` (default) with `debian_task`, or a local file or folder (its train split). */
  dataset?: string;
  /** The Debian task whose train split is read (with `dataset: debian`). */
  debian_task?: "classification" | "classification-binary";
  /** The text column (default as the data loader's: `text`). */
  source_column?: string;
  /** The label column the loader reads (its values are replaced by `label`). */
  target_column?: string;
  /** The label every example gets: one of the recipe's labels. */
  label: string;
  /** How many to take, the first by the SHA-256 of their text (null or absent: all). */
  max_samples?: number | null;
}

const KEYS = ["dataset", "debian_task", "source_column", "target_column", "label", "max_samples"];

/**
 * The problems of an `extra_train` / `balance_classes` setting, one phrase each (empty: none).
 * @example
 * ```ts
 * import { extraTrainProblems } from "./_extra_train.ts";
 * if (extraTrainProblems({ label: "other" }, false, "classification").length) throw new Error();
 * if (extraTrainProblems({ label: "other", max_samples: 0 }, false, "classification").length !== 1) throw new Error();
 * ```
 */
export function extraTrainProblems(extra: unknown, balance: unknown, task: string): string[] {
  const p: string[] = [];
  if (typeof balance !== "boolean") {
    p.push(`balance_classes must be true or false, got ${JSON.stringify(balance)}`);
  } else if (balance && task !== "classification") {
    p.push(`balance_classes is for classification only; set it to false for ${task}`);
  }
  if (extra === null || extra === undefined) return p;
  if (task !== "classification") {
    return [...p, `extra_train is for classification only; remove it for ${task}`];
  }
  if (typeof extra !== "object" || Array.isArray(extra)) {
    return [...p, `extra_train must be an object ({label, debian_task or dataset, max_samples}) or null`];
  }
  const e = extra as Record<string, unknown>;
  const unknown = Object.keys(e).filter((k) => !KEYS.includes(k));
  if (unknown.length) p.push(`extra_train has no field ${unknown.join(", ")}; use ${KEYS.join(", ")}`);
  if (typeof e.label !== "string" || !e.label) p.push(`extra_train.label must name one of the labels`);
  for (const k of ["dataset", "debian_task", "source_column", "target_column"]) {
    if (e[k] !== undefined && (typeof e[k] !== "string" || !e[k])) p.push(`extra_train.${k} must be a name`);
  }
  const n = e.max_samples;
  if (n !== undefined && n !== null && !(Number.isInteger(n) && (n as number) >= 1)) {
    p.push(`extra_train.max_samples must be a positive integer or null, got ${JSON.stringify(n)}`);
  }
  return p;
}

/**
 * The train examples with the `extra_train` examples after them: texts already in the recipe's
 * train or validation split are dropped (no duplicates, no leak), then the first `max_samples` by
 * the SHA-256 of their text (the same set whatever the seed).
 * @throws {RangeError} naming the label when it is not one of the recipe's
 */
export async function withExtraTrain(
  data: TaskData,
  extra: ExtraTrain,
): Promise<{ train: TaskExample[]; added: number; description: string }> {
  if (!data.labels?.includes(extra.label)) {
    throw new RangeError(
      `Cannot add extra_train examples: label ${JSON.stringify(extra.label)} is not one of the recipe's ` +
        `labels (${(data.labels ?? []).join(", ")}); set extra_train.label to one of them`,
    );
  }
  const more = await loadTaskData("classification", {
    dataset: extra.dataset ?? "debian",
    ...(extra.debian_task ? { debian_task: extra.debian_task } : {}),
    ...(extra.source_column ? { source_column: extra.source_column } : {}),
    ...(extra.target_column ? { target_column: extra.target_column } : {}),
  });
  const seen = new Set([...data.train, ...data.validation].map((e) => e.source));
  const hash = (s: string) => createHash("sha256").update(s).digest("hex");
  const fresh = [...new Map(more.train.filter((e) => !seen.has(e.source)).map((e) => [e.source, e])).values()]
    .map((e) => ({ e, h: hash(e.source) }))
    .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0))
    .slice(0, extra.max_samples ?? undefined)
    .map(({ e }) => ({ ...e, target: extra.label }));
  return {
    train: [...data.train, ...fresh],
    added: fresh.length,
    description: `${fresh.length} ${extra.label} examples from ${more.description.replace(/,.*$/, "")} train`,
  };
}

/**
 * Each smaller class's examples repeated up to the largest class's count: whole copies, then a
 * seeded sample of the rest (imbalanced-learn's `RandomOverSampler`, in the data rather than as
 * loss weights). Examples keep their order; the copies follow them.
 * @example
 * ```ts
 * import { balanceClasses } from "./_extra_train.ts";
 * const ex = [{ source: "a", target: "x" }, { source: "b", target: "y" }, { source: "c", target: "y" }, { source: "d", target: "y" }];
 * const out = balanceClasses(ex, 1);
 * if (out.filter((e) => e.target === "x").length !== 3 || out.length !== 6) throw new Error();
 * ```
 */
export function balanceClasses(examples: readonly TaskExample[], seed: number): TaskExample[] {
  const by = new Map<string, TaskExample[]>();
  for (const e of examples) {
    const group = by.get(e.target);
    if (group) group.push(e);
    else by.set(e.target, [e]);
  }
  const most = Math.max(0, ...[...by.values()].map((v) => v.length));
  const rand = mulberry32(seed);
  const out = [...examples];
  for (const group of by.values()) {
    for (let k = 1; k < Math.floor(most / group.length); k++) out.push(...group);
    const idx = group.map((_, i) => i);
    for (let i = idx.length - 1; i > 0; i--) { // Fisher-Yates: the remainder's sample
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    out.push(...idx.slice(0, most % group.length).map((i) => group[i]));
  }
  return out;
}
