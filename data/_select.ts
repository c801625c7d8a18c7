/**
 * Private helpers of the data readers: column selection, renaming and `max_samples`, applied the
 * same way by every format.
 * @module
 */

/** Options every reader takes. Field names follow Hugging Face `datasets` where one exists. */
export interface SelectOptions {
  /** Keep only these columns, in this order (checked on every record). */
  columns?: string[];
  /** Rename columns: `{ old_name: "new_name" }`, applied after `columns`. */
  rename?: Record<string, string>;
  /** Stop after this many records. */
  max_samples?: number;
}

/** Check the options once, at the boundary; `source` names the caller in the message. */
export function checkSelectOptions(opts: SelectOptions, source: string): void {
  const problems: string[] = [];
  if (opts.max_samples !== undefined && !(Number.isInteger(opts.max_samples) && opts.max_samples >= 0)) {
    problems.push(`max_samples ${opts.max_samples} is not an integer >= 0`);
  }
  if (
    opts.columns !== undefined &&
    !(Array.isArray(opts.columns) && opts.columns.every((c) => typeof c === "string"))
  ) {
    problems.push(`columns ${JSON.stringify(opts.columns)} is not a list of names`);
  }
  if (opts.rename !== undefined) {
    const targets = Object.values(opts.rename);
    if (targets.some((t) => typeof t !== "string")) problems.push(`rename values must be strings`);
    if (new Set(targets).size !== targets.length) problems.push(`rename maps two columns to one name`);
  }
  if (problems.length) throw new TypeError(`Cannot read ${source}: ${problems.join("; ")}; fix the options`);
}

/**
 * Refuse a `seed` without `shuffle` (the loaders that shuffle only on request: Debian, hub
 * datasets): it would order nothing.
 */
export function checkShuffleSeed(opts: { shuffle?: boolean; seed?: number }, source: string): void {
  if (opts.seed !== undefined && !opts.shuffle) {
    throw new TypeError(
      `Cannot load ${source}: seed orders the shuffle, and shuffle is off; add shuffle: true or drop seed`,
    );
  }
}

/** `file.jsonl:12` or `file.parquet row 12`. */
export type Where = string;

function missing(name: string, rec: Record<string, unknown>, where: Where, field: string): TypeError {
  const have = Object.keys(rec);
  return new TypeError(
    `Cannot select column "${name}" in ${where}: the record has ${
      have.length ? `columns ${have.join(", ")}` : "no columns"
    }; ` +
      `fix ${field} to name one of these`,
  );
}

/**
 * Build the per-record transform of `columns` + `rename`. A column that a record lacks is an error
 * naming it, the place (`where`) and the columns that exist.
 */
export function selector(
  opts: SelectOptions,
): (rec: Record<string, unknown>, where: Where) => Record<string, unknown> {
  const { columns, rename } = opts;
  if (!columns && !rename) return (rec) => rec;
  return (rec, where) => {
    let out = rec;
    if (columns) {
      out = {};
      for (const c of columns) {
        if (!Object.hasOwn(rec, c)) throw missing(c, rec, where, "columns");
        out[c] = rec[c];
      }
    }
    if (rename) {
      const renamed: Record<string, unknown> = {};
      for (const k of Object.keys(rename)) if (!Object.hasOwn(out, k)) throw missing(k, out, where, "rename");
      for (const [k, v] of Object.entries(out)) renamed[Object.hasOwn(rename, k) ? rename[k] : k] = v;
      out = renamed;
    }
    return out;
  };
}

/** Collect an async iterable into an array. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of items) out.push(x);
  return out;
}
