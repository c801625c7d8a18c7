/**
 * Training: `TrainingConfig` (validated, YAML in/out, presets, legacy migration) and learning-rate
 * schedules exactly as Hugging Face computes them.
 *
 * @module
 */
export * from "./config.ts";
export * from "./schedule.ts";
export * from "./peft.ts";
export * from "./trainer.ts";
export * from "./checkpoint.ts";
export * from "./hooks.ts";
export * from "./run.ts";
