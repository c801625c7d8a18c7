/**
 * The translation recipe (`deno task train:wmt`): English to German, fine-tuned as prompt ->
 * completion ("Translate English to German: <en>\nGerman: <de>") and scored with sacreBLEU, chrF
 * and chrF++ against the identity baseline on the same validation examples. Config:
 * `configs/translation.yaml`; offline it trains on the Debian DDTP pairs from the Debian base model,
 * distilled from a word-for-word teacher (`train_targets: word_dictionary`, `data/word_dictionary.ts`),
 * one paragraph (line) at a time in training and at evaluation (`split_lines`, `data/line_pairs.ts`).
 *
 * @module
 */
import { overrideConfig } from "../training/config.ts";
import { readRecipeYaml } from "./_recipe.ts";
import type { RecipeTarget } from "../evaluation/run_report.ts";
import { type RecipeResult, runRecipe, type RunRecipeOptions } from "./recipe.ts";

/** The README's reference number for the Debian validation split (both levels). */
export const TRANSLATION_TARGETS: Readonly<Record<string, RecipeTarget>> = Object.freeze({
  "identity baseline (README)": {
    metric: "bleu_debian",
    value: 11.91,
    source: "../shared/datasets/debian/README.md",
  },
});

/**
 * Run the translation recipe: `configs/translation.yaml` with `overrides` on top.
 * @example
 * ```ts ignore
 * import { runTranslation } from "./translation.ts";
 * const r = await runTranslation({ max_steps: 50, max_eval_samples: 100 });
 * console.log(r.metrics.bleu, r.baselines.identity.bleu);
 * ```
 */
export async function runTranslation(
  overrides: Record<string, unknown> = {},
  opts: RunRecipeOptions = {},
): Promise<RecipeResult> {
  const config = overrideConfig(await readRecipeYaml("translation"), overrides);
  const debian = (config.dataset ?? "debian") === "debian" && !config.level;
  return await runRecipe(config, {
    title: "Translation: English -> German",
    ...(debian ? { targets: TRANSLATION_TARGETS } : {}),
    ...opts,
  });
}
