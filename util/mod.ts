/**
 * The ground floor, importing nothing of fledge: atomic file writes, the progress line, the
 * seeded PRNG, the validation problem list, the command-line flag parser and formatting.
 *
 * @module
 */
export * from "./atomic.ts";
export * from "./format.ts";
export * from "./progress.ts";
export * from "./random.ts";
