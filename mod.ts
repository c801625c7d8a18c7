/**
 * fledge: train and fine-tune transformer language models on WebGPU.
 *
 * Re-exports the public API of every layer; import a folder's `mod.ts` for a narrower surface.
 * Every exported name is unique across the layers, so nothing here is aliased.
 *
 * @module
 */
export * from "./kernels/mod.ts";
export * from "./models/mod.ts";
export * from "./data/mod.ts";
export * from "./evaluation/mod.ts";
export * from "./training/mod.ts";
export * from "./tasks/mod.ts";
// The ground floor is its own entry (`./util`); the root keeps the one name it always had.
export { mulberry32 } from "./util/random.ts";
