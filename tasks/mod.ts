/**
 * Task recipes. Today: the demo (pre-train the tiny model on the bundled Debian text and sample).
 *
 * @module
 */
export * from "./demo.ts";
