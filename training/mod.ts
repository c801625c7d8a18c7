/**
 * Training: `TrainingConfig` (validated, YAML in/out, presets, legacy migration) and learning-rate
 * schedules exactly as Hugging Face computes them.
 *
 * @module
 */
export * from "./config.ts";
export * from "./schedule.ts";
export * from "./peft.ts";
