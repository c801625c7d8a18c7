/**
 * Models: `ModelConfig` and Hugging Face config mappers, the decoder, safetensors, ONNX export
 * (`exportOnnx`) and its onnxruntime runner (`OnnxDecoder`, `generateOnnx`), the hub file layer and
 * cache, `loadModel` / `saveModel`, and tokenizers (Hugging Face `tokenizer.json` and a byte-level
 * BPE trainer).
 *
 * @module
 */
export * from "./config.ts";
export * from "./transformer.ts";
export * from "./formats/safetensors.ts";
export * from "./formats/gguf.ts";
export * from "./formats/onnx.ts";
export * from "./onnx_runtime.ts";
export * from "./hub/hub.ts";
export * from "./pretrained.ts";
export * from "./save.ts";
export { generate } from "./generate.ts";
export { beamSearch, reorderCache } from "./beam_search.ts";
export { continuationLogProbs } from "./score.ts";
export type { FinishReason, GenerateOptions, GenerateResult, GenerationStreamer } from "./generate.ts";
export { type GenerationConfig, HF_GENERATION_DEFAULTS, loadGenerationConfig } from "./generation_config.ts";
export {
  applyNoRepeatNgram,
  applyRepetitionPenalty,
  applyTemperature,
  argmax,
  bannedNgramTokens,
  logSumExpRow,
  sample,
  softmaxRow,
  topKFilter,
  topPFilter,
} from "./logits_process.ts";
export * from "./tokenizer/tokenizer.ts";
export * from "./tokenizer/bpe.ts";
