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
import { mergeRecipeConfig, readRecipeYaml } from "./_recipe.ts";
import { languageName } from "../data/prompts.ts";
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
  const config = mergeRecipeConfig(await readRecipeYaml("translation"), overrides);
  // the README's identity baseline is for the whole Debian en -> de validation split
  const [src, tgt] = String(config.translation_direction ?? "en-de").split("-");
  const debian = (config.dataset ?? "debian") === "debian" && !config.level && src === "en" && tgt === "de";
  return await runRecipe(config, {
    title: `Translation: ${languageName(src)} -> ${languageName(tgt)}`,
    ...(debian ? { targets: TRANSLATION_TARGETS } : {}),
    ...opts,
  });
}
