/**
 * Python string semantics the metric ports depend on: which characters `str.split()` and
 * `str.strip()` treat as white space, and how `f"{x:.2f}"` rounds. JavaScript differs on both
 * (`\s` includes U+FEFF but not U+001C..U+001F or U+0085; `toFixed` rounds exact ties up where
 * Python rounds them to even), so the ports use these helpers instead of the built-ins.
 * @module
 */

/**
 * The characters CPython 3.11 (Unicode 14) treats as white space in `str.split()`, `str.strip()`
 * and `str.isspace()`: bidi classes WS, B, S and category Zs.
 */
const PY_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`, "u");
const LEADING = new RegExp(`^[${PY_SPACE}]+`, "u");
const TRAILING = new RegExp(`[${PY_SPACE}]+$`, "u");

/** Python `s.split()` with no argument: split on runs of white space, drop empty pieces. */
export function pySplit(s: string): string[] {
  return s.split(SPACE_RUN).filter((piece) => piece.length > 0);
}

/** Python `s.strip()` with no argument. */
export function pyStrip(s: string): string {
  return s.replace(LEADING, "").replace(TRAILING, "");
}

/** Python `s.rstrip()` with no argument. */
export function pyRstrip(s: string): string {
  return s.replace(TRAILING, "");
}

/** Python `len(s)`: the number of code points, not UTF-16 units. */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * Python `f"{x:.{digits}f}"`: correctly rounded with ties to even on the exact binary value.
 * `Number.prototype.toFixed` is also exact but sends ties away from zero, so only exact ties
 * (values like 0.125 at 2 digits) need fixing up.
 */
export function pyFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  const rounded = x.toFixed(digits);
  if (Math.abs(x) >= 1e21) return rounded;
  // 100 digits hold the exact expansion of any double whose tie could matter at `digits`.
  const exact = Math.abs(x).toFixed(100);
  const point = exact.indexOf(".");
  const tail = exact.slice(point + 1 + digits);
  if (tail[0] !== "5" || !/^50*$/.test(tail)) return rounded;
  const truncated = exact.slice(0, digits > 0 ? point + 1 + digits : point);
  const lastDigit = Number(truncated[truncated.length - 1]);
  const sign = x < 0 ? "-" : "";
  // Even last digit: Python keeps the truncated value; odd: it rounds up like toFixed.
  return lastDigit % 2 === 0 ? sign + truncated : rounded;
}
