/**
 * The schema of cleaning steps (names, keys, kinds) and its validation, shared by the YAML loader
 * and the filters' own option checks. Private: `clean.ts` is the public face.
 * @module
 */

/** How one option key is checked. */
type Kind =
  | { kind: "int"; min: number }
  | { kind: "frac" } // number in [0, 1]
  | { kind: "open01" } // number in (0, 1)
  | { kind: "nonneg" }
  | { kind: "bool" }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "strings"; values: readonly string[] }
  | { kind: "fracmap" }; // {"n": fraction} with integer n >= 1

/** Step name -> key -> kind. The YAML names are the option names of the TypeScript filters. */
export const STEP_SCHEMA: Readonly<Record<string, Readonly<Record<string, Kind>>>> = {
  length: {
    min_words: { kind: "int", min: 0 },
    max_words: { kind: "int", min: 0 },
    min_paragraph_words: { kind: "int", min: 0 },
    max_paragraph_words: { kind: "int", min: 0 },
    paragraph_split: { kind: "enum", values: ["blank_line", "line"] },
  },
  repetition: {
    dup_line_frac: { kind: "frac" },
    dup_para_frac: { kind: "frac" },
    dup_line_char_frac: { kind: "frac" },
    dup_para_char_frac: { kind: "frac" },
    top_n_grams: { kind: "fracmap" },
    dup_n_grams: { kind: "fracmap" },
  },
  exact_dedup: {},
  near_dedup: {
    threshold: { kind: "open01" },
    num_perm: { kind: "int", min: 1 },
    shingle_size: { kind: "int", min: 1 },
    seed: { kind: "int", min: 0 },
    false_positive_weight: { kind: "nonneg" },
    false_negative_weight: { kind: "nonneg" },
    verify: { kind: "bool" },
  },
  language: {
    languages: {
      kind: "strings",
      values: ["en", "de", "fr", "es", "ru", "el", "ar", "he", "zh", "ja", "ko", "und"],
    },
    min_score: { kind: "frac" },
  },
};

/** One problem found, with the error class it calls for. */
export interface Problem {
  cls: typeof SyntaxError | typeof TypeError | typeof RangeError;
  msg: string;
}

function kindProblem(where: string, v: unknown, k: Kind): Problem | undefined {
  const num = typeof v === "number" && Number.isFinite(v);
  switch (k.kind) {
    case "int":
      if (!num || !Number.isInteger(v)) {
        return { cls: TypeError, msg: `${where}: ${JSON.stringify(v)} is not an integer` };
      }
      if ((v as number) < k.min) return { cls: RangeError, msg: `${where}: ${v} is below ${k.min}` };
      return;
    case "frac":
    case "open01":
    case "nonneg": {
      if (!num) return { cls: TypeError, msg: `${where}: ${JSON.stringify(v)} is not a finite number` };
      const x = v as number;
      if (k.kind === "frac" && !(x >= 0 && x <= 1)) {
        return { cls: RangeError, msg: `${where}: ${x} is outside [0, 1]` };
      }
      if (k.kind === "open01" && !(x > 0 && x < 1)) {
        return { cls: RangeError, msg: `${where}: ${x} is outside (0, 1)` };
      }
      if (k.kind === "nonneg" && x < 0) return { cls: RangeError, msg: `${where}: ${x} is negative` };
      return;
    }
    case "bool":
      if (typeof v !== "boolean") {
        return { cls: TypeError, msg: `${where}: ${JSON.stringify(v)} is not true or false` };
      }
      return;
    case "enum":
      if (typeof v !== "string" || !k.values.includes(v)) {
        return {
          cls: RangeError,
          msg: `${where}: ${JSON.stringify(v)} is not one of ${k.values.join(", ")}`,
        };
      }
      return;
    case "strings":
      if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
        return { cls: TypeError, msg: `${where}: ${JSON.stringify(v)} is not a list of strings` };
      }
      if (!v.length) {
        return {
          cls: RangeError,
          msg: `${where}: [] keeps nothing; list at least one of ${k.values.join(", ")}`,
        };
      }
      for (const s of v) {
        if (!k.values.includes(s)) {
          return {
            cls: RangeError,
            msg: `${where}: ${JSON.stringify(s)} is not one of ${k.values.join(", ")}`,
          };
        }
      }
      return;
    case "fracmap": {
      if (typeof v !== "object" || v === null || Array.isArray(v)) {
        return { cls: TypeError, msg: `${where}: ${JSON.stringify(v)} is not a mapping like {"2": 0.2}` };
      }
      for (const [n, f] of Object.entries(v)) {
        if (!/^[1-9][0-9]*$/.test(n)) {
          return { cls: RangeError, msg: `${where}.${n}: n-gram size is not a positive integer` };
        }
        const p = kindProblem(`${where}.${n}`, f, { kind: "frac" });
        if (p) return p;
      }
      return;
    }
  }
}

/**
 * Problems of one step's options: unknown keys (naming the allowed ones), wrong kinds, min > max.
 * @param name A key of {@linkcode STEP_SCHEMA} (the caller has checked it).
 * @param opts The options object (filter-only keys such as `field` already removed).
 * @param where Prefix for messages, e.g. `steps[2].near_dedup`.
 */
export function stepProblems(name: string, opts: unknown, where: string): Problem[] {
  const schema = STEP_SCHEMA[name];
  if (opts === null || opts === undefined) return [];
  if (typeof opts !== "object" || Array.isArray(opts)) {
    return [{
      cls: TypeError,
      msg: `${where}: options ${JSON.stringify(opts)} are not a mapping; write {} for none`,
    }];
  }
  const problems: Problem[] = [];
  const allowed = Object.keys(schema);
  const o = opts as Record<string, unknown>;
  for (const [key, v] of Object.entries(o)) {
    if (!(key in schema)) {
      problems.push({
        cls: SyntaxError,
        msg: `${where}: unknown key "${key}"; allowed: ${allowed.length ? allowed.join(", ") : "(none)"}`,
      });
      continue;
    }
    if (v === undefined) continue;
    const p = kindProblem(`${where}.${key}`, v, schema[key]);
    if (p) problems.push(p);
  }
  for (const [lo, hi] of [["min_words", "max_words"], ["min_paragraph_words", "max_paragraph_words"]]) {
    if (typeof o[lo] === "number" && typeof o[hi] === "number" && (o[lo] as number) > (o[hi] as number)) {
      problems.push({ cls: RangeError, msg: `${where}: ${lo} ${o[lo]} > ${hi} ${o[hi]}` });
    }
  }
  return problems;
}

/** Throw one error listing every problem, of the first problem's class; no-op when none. */
export function throwProblems(what: string, problems: Problem[], fix: string): void {
  if (problems.length === 0) return;
  const list = problems.map((p) => p.msg).join("; ");
  throw new problems[0].cls(`${what}: ${list}. ${fix}`);
}
