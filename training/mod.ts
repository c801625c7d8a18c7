/**
 * Training: `TrainingConfig` (validated, YAML in/out, presets, legacy migration), learning-rate
 * schedules exactly as Hugging Face computes them, and measured device memory (`memoryReport`).
 *
 * @module
 */
export * from "./config.ts";
export * from "./schedule.ts";
export * from "./peft.ts";
export * from "./memory.ts";
export * from "./trainer.ts";
export * from "./checkpoint.ts";
export * from "./hooks.ts";
export * from "./run.ts";
export * from "./dpo.ts";
export * from "./queue.ts";
export * from "./search.ts";
export * from "./legacy_config.ts";
