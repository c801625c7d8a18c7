/**
 * Boundary checks shared by the metrics: argument types and matching lengths, with messages that
 * name the function, the argument and the offending values.
 * @module
 */

/** Describe a value for an error message without dumping large objects. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === "string") return `string ${JSON.stringify(value.slice(0, 40))}`;
  return `${typeof value} ${String(value).slice(0, 40)}`;
}

/** Throw a TypeError unless `value` is an array of strings. */
export function checkStringArray(
  fn: string,
  name: string,
  value: unknown,
): asserts value is readonly string[] {
  if (!Array.isArray(value)) {
    throw new TypeError(`Cannot compute ${fn}: ${name} must be an array of strings, got ${describe(value)}`);
  }
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== "string") {
      throw new TypeError(`Cannot compute ${fn}: ${name}[${i}] must be a string, got ${describe(value[i])}`);
    }
  }
}

/** Throw a TypeError unless `value` is a string. */
export function checkString(fn: string, name: string, value: unknown): asserts value is string {
  if (typeof value !== "string") {
    throw new TypeError(`Cannot compute ${fn}: ${name} must be a string, got ${describe(value)}`);
  }
}

/** Throw a RangeError when two parallel arrays differ in length. */
export function checkSameLength(
  fn: string,
  names: [string, string],
  a: ArrayLike<unknown>,
  b: ArrayLike<unknown>,
): void {
  if (a.length !== b.length) {
    throw new RangeError(
      `Cannot compute ${fn}: ${names[0]} has ${a.length} entries but ${names[1]} has ${b.length}`,
    );
  }
}

/** Throw a RangeError unless `value` is an integer in [min, max]. */
export function checkInteger(fn: string, name: string, value: number, min: number, max = Infinity): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`Cannot compute ${fn}: ${name} must be an integer ${range}, got ${value}`);
  }
}
