/**
 * The ground floor, importing nothing of fledge: atomic file writes, the cache folder, the run folder lock, JSON
 * files read with errors naming line and column, the progress line, the seeded PRNG and
 * formatting. (`problems.ts`, the validation problem list, and `flags.ts`, the command-line flag
 * parser, serve fledge's own configs and commands and are imported directly.)
 *
 * @module
 */
export * from "./atomic.ts";
export * from "./cache.ts";
export * from "./format.ts";
export * from "./json.ts";
export * from "./lock.ts";
export * from "./progress.ts";
export * from "./random.ts";
