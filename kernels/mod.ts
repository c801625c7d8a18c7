/**
 * The engine room: the WebGPU device layer, `Tensor`, the two backends (`webgpu` WGSL kernels and
 * the `cpu` TypeScript references), every op family with its reference, and the autograd tape.
 *
 * @module
 */
export * from "./gpu.ts";
export * from "./tensor.ts";
export * from "./backend.ts";
export * from "./autograd.ts";
export * from "./elementwise.ts";
export * from "./reduce.ts";
export * from "./argmax.ts";
export * from "./matmul.ts";
export * from "./norm.ts";
export * from "./activation.ts";
export * from "./softmax.ts";
export * from "./embedding.ts";
export * from "./loss.ts";
export * from "./rope.ts";
export * from "./attention.ts";
export * from "./optim.ts";
export * from "./quant.ts";
export * from "./lora.ts";
export * from "./logprob.ts";
export * from "./preference.ts";
