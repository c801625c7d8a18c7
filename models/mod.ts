/**
 * Models: `ModelConfig` and Hugging Face config mappers, the decoder, safetensors, the hub file
 * layer and cache, `loadModel` / `saveModel`, and tokenizers (Hugging Face `tokenizer.json` and a
 * byte-level BPE trainer).
 *
 * @module
 */
export * from "./config.ts";
export * from "./transformer.ts";
export * from "./formats/safetensors.ts";
export * from "./hub/hub.ts";
export * from "./pretrained.ts";
export * from "../cli/download.ts";
export * from "../cli/generate.ts";
export {
  applyRepetitionPenalty,
  applyTemperature,
  argmax,
  generate,
  HF_GENERATION_DEFAULTS,
  loadGenerationConfig,
  sample,
  seededRandom,
  softmax as softmaxRow,
  topKFilter,
  topPFilter,
} from "./generate.ts";
export type {
  FinishReason,
  GenerateOptions,
  GenerateResult,
  GenerationConfig,
  GenerationStreamer,
} from "./generate.ts";
export * from "./tokenizer/tokenizer.ts";
export * from "./tokenizer/bpe.ts";
