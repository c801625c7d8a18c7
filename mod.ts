/**
 * fledge: train and fine-tune transformer language models on WebGPU.
 *
 * Re-exports the public API of every layer; import a folder's `mod.ts` for a narrower surface.
 *
 * @module
 */
export * from "./kernels/mod.ts";
export * from "./models/mod.ts";
export * from "./data/mod.ts";
export * from "./training/mod.ts";
export * from "./evaluation/mod.ts";
export * from "./tasks/mod.ts";

// Names two layers both export: the root picks one and aliases the other.
export { Backend } from "./kernels/mod.ts";
export type { Backend as BackendChoice } from "./training/mod.ts";
export type { NormKind } from "./models/mod.ts";
export type { NormKind as NormOpKind } from "./kernels/mod.ts";
export type { ReadOptions } from "./data/mod.ts";
export type { ReadOptions as SafetensorsReadOptions } from "./models/mod.ts";
