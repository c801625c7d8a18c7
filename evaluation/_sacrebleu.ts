/**
 * Pieces shared by the sacreBLEU ports (BLEU, chrF): the version they reproduce, reference
 * stream handling, and the signature strings (`sacrebleu/metrics/base.py`, `Signature.format`).
 * @module
 */

import { describe } from "./_validate.ts";

/** The sacreBLEU release whose numbers and signatures the ports reproduce. */
export const SACREBLEU_VERSION = "2.6.0";

/** One signature field: long name, short name, value. */
export type SignatureField = readonly [long: string, short: string, value: string | number];

/**
 * `Signature.format()`: `name:value` pairs joined by `|`, version last. `nrefs` comes first;
 * the metric's own fields follow in the order the metric adds them.
 */
export function formatSignature(
  nrefs: number | "var",
  fields: readonly SignatureField[],
  short: boolean,
): string {
  const all: SignatureField[] = [["nrefs", "#", nrefs], ...fields, ["version", "v", SACREBLEU_VERSION]];
  return all.map(([long, abbr, value]) => `${short ? abbr : long}:${value}`).join("|");
}

/**
 * Normalise references to sacreBLEU's layout, one list of references per segment: `refs` may be
 * one stream (`string[]`, one reference per hypothesis) or several streams (`string[][]`,
 * `refs[k][i]` is the k-th reference of segment i; `null`/`undefined` marks a missing one, as in
 * sacreBLEU's variable number of references). Also returns the `nrefs` signature value.
 */
export function referencesPerSegment(
  fn: string,
  nSegments: number,
  refs: unknown,
): { perSegment: string[][]; nrefs: number | "var" } {
  if (!Array.isArray(refs)) {
    throw new TypeError(`Cannot compute ${fn}: references must be an array, got ${describe(refs)}`);
  }
  const streams: unknown[][] = refs.some((r) => typeof r === "string") ? [refs] : refs;
  if (streams.length === 0) {
    throw new RangeError(`Cannot compute ${fn}: references is empty; pass one reference per hypothesis`);
  }
  for (let k = 0; k < streams.length; k++) {
    const stream = streams[k];
    if (!Array.isArray(stream)) {
      throw new TypeError(
        `Cannot compute ${fn}: references must be a list of strings or a list of reference streams; ` +
          `references[${k}] is ${describe(stream)}`,
      );
    }
    if (stream.length !== nSegments) {
      const where = streams.length === 1 && streams[0] === refs ? "references" : `references[${k}]`;
      // HF evaluate's layout (one list of references per hypothesis) lands here when the counts differ
      const hf = where !== "references" && streams.length === nSegments;
      throw new RangeError(
        `Cannot compute ${fn}: hypotheses has ${nSegments} entries but ${where} has ${stream.length}` +
          (hf
            ? `; references[k] is the k-th reference stream (sacreBLEU's layout): for one list of references ` +
              `per hypothesis (HF evaluate's), transpose it`
            : ""),
      );
    }
  }
  const perSegment: string[][] = [];
  const counts = new Set<number>();
  for (let i = 0; i < nSegments; i++) {
    const lines: string[] = [];
    for (let k = 0; k < streams.length; k++) {
      const r = streams[k][i];
      if (r === null || r === undefined) continue;
      if (typeof r !== "string") {
        const where = streams[0] === refs ? `references[${i}]` : `references[${k}][${i}]`;
        throw new TypeError(`Cannot compute ${fn}: ${where} must be a string, got ${describe(r)}`);
      }
      lines.push(r);
    }
    if (lines.length === 0) {
      throw new RangeError(
        `Cannot compute ${fn}: segment ${i} has no reference (all streams are null there)`,
      );
    }
    counts.add(lines.length);
    perSegment.push(lines);
  }
  const nrefs = counts.size === 1 ? [...counts][0] : counts.size === 0 ? streams.length : "var";
  return { perSegment, nrefs };
}
