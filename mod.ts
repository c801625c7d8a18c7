/**
 * fledge: train and fine-tune transformer language models on WebGPU.
 *
 * Re-exports the public API of every layer; import a folder's `mod.ts` for a narrower surface.
 *
 * @module
 */
export * from "./evaluation/mod.ts";
export * from "./data/mod.ts";
