/**
 * Task recipes: summarization, translation and classification (config -> data -> model -> train
 * -> evaluate -> report), the Debian base model they start from offline, and the demo.
 *
 * @module
 */
export * from "./demo.ts";
export * from "./base_model.ts";
export * from "./recipe.ts";
export * from "./summarization.ts";
export * from "./translation.ts";
export * from "./classification.ts";
