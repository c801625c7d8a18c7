/**
 * Line-by-line translation, the way machine-translation pipelines split a document into segments
 * and translate each on its own: a Debian description keeps one paragraph per line, and its
 * translation has as many lines, in the same order (99.6% of the Debian pairs). A small model copies
 * and translates a short paragraph far more faithfully than a whole description.
 *
 * - {@linkcode splitLinePairs} (training): each pair whose source and target have the same number
 *   of lines becomes one pair per line (empty lines dropped); other pairs stay whole.
 * - {@linkcode splitLines} / {@linkcode joinLines} (evaluation): the lines of every source to
 *   translate, and the translations of the lines put back into one text per source, empty lines kept.
 *
 * @example
 * ```ts
 * import { joinLines, splitLinePairs, splitLines } from "./line_pairs.ts";
 * const pairs = splitLinePairs([{ id: "a", source: "One.\nTwo.", target: "Eins.\nZwei." }]);
 * if (pairs.length !== 2 || pairs[1].target !== "Zwei.") throw new Error("pairs");
 * const s = splitLines(["One.\n\nTwo.", "Three."]);
 * if (s.segments.length !== 3) throw new Error("segments");
 * const out = joinLines(s, s.segments.map((x) => x.toUpperCase()));
 * if (out[0] !== "ONE.\n\nTWO." || out[1] !== "THREE.") throw new Error("join");
 * ```
 * @module
 */
import type { TaskExample } from "./task_data.ts";

/** Lines of every text to translate, and where each belongs. */
export interface SplitLines {
  /** The non-empty lines of all texts, in order (trimmed). */
  segments: string[];
  /** Per text: its lines, each the index of its segment, or -1 for an empty line. */
  layout: number[][];
}

/**
 * One pair per line for each pair whose source and target have the same number of non-empty lines
 * (more than one); the other pairs unchanged. Ids get `#<line>` appended.
 */
export function splitLinePairs(examples: readonly TaskExample[]): TaskExample[] {
  const out: TaskExample[] = [];
  for (const e of examples) {
    const src = nonEmptyLines(e.source), tgt = nonEmptyLines(e.target);
    if (src.length < 2 || src.length !== tgt.length) {
      out.push(e);
      continue;
    }
    src.forEach((s, i) =>
      out.push({ ...(e.id !== undefined ? { id: `${e.id}#${i + 1}` } : {}), source: s, target: tgt[i] })
    );
  }
  return out;
}

/** The non-empty lines of each text, as segments to translate one by one. */
export function splitLines(texts: readonly string[]): SplitLines {
  const segments: string[] = [];
  const layout = texts.map((t) =>
    t.split("\n").map((line) => {
      const s = line.trim();
      if (!s) return -1;
      segments.push(s);
      return segments.length - 1;
    })
  );
  return { segments, layout };
}

/** The translation of each text: its segments' translations, one per line, empty lines kept. */
export function joinLines(split: SplitLines, translated: readonly string[]): string[] {
  if (translated.length !== split.segments.length) {
    throw new RangeError(
      `joinLines: ${translated.length} translations for ${split.segments.length} segments`,
    );
  }
  return split.layout.map((lines) => lines.map((i) => (i < 0 ? "" : translated[i])).join("\n"));
}

function nonEmptyLines(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}
