/**
 * The classification recipes, by label likelihood (no sampling): fine-tuned as prompt -> label
 * word ("<text>\nLabel: games"), predicted as the label whose verbalizer is most likely after the
 * prompt, scored with accuracy and macro-F1 against the majority class of the train split.
 *
 * - `deno task train:sst2` (`configs/sst2.yaml`): binary; offline Debian classification-binary
 *   (is the package a game?), with the hub GLUE SST-2.
 * - `deno task train:debian-sections` (`configs/debian-sections.yaml`): the 8 Debian sections.
 *
 * @module
 */
import { mergeRecipeConfig, readRecipeYaml } from "./_recipe.ts";
import type { RecipeTarget } from "../evaluation/run_report.ts";
import { type RecipeResult, runRecipe, type RunRecipeOptions } from "./recipe.ts";

/** The README's naive Bayes accuracy on each Debian validation split. */
export const CLASSIFICATION_TARGETS: Readonly<Record<ClassificationRecipe, Record<string, RecipeTarget>>> =
  Object.freeze({
    sst2: {
      "naive Bayes (README)": {
        metric: "accuracy",
        value: 97.25,
        source: "../shared/datasets/debian/README.md",
      },
    },
    "debian-sections": {
      "naive Bayes (README)": {
        metric: "accuracy",
        value: 75.24,
        source: "../shared/datasets/debian/README.md",
      },
    },
  });

/** The two classification configs: `configs/sst2.yaml` and `configs/debian-sections.yaml`. */
export type ClassificationRecipe = "sst2" | "debian-sections";

/**
 * Run a classification recipe: `configs/<recipe>.yaml` with `overrides` on top.
 * @example
 * ```ts ignore
 * import { runClassification } from "./classification.ts";
 * const r = await runClassification("sst2", { max_steps: 50 });
 * console.log(r.metrics.accuracy);
 * ```
 */
export async function runClassification(
  recipe: ClassificationRecipe,
  overrides: Record<string, unknown> = {},
  opts: RunRecipeOptions = {},
): Promise<RecipeResult> {
  const config = mergeRecipeConfig(await readRecipeYaml(recipe), overrides);
  // titled by the data it runs on; the README's naive Bayes targets are for the recipe's own Debian task
  const debian = (config.dataset ?? "debian") === "debian";
  const own = debian &&
    config.debian_task === (recipe === "sst2" ? "classification-binary" : "classification");
  const title = debian
    ? config.debian_task === "classification"
      ? "Debian sections (8 labels)"
      : "Binary classification (SST-2 recipe)"
    : recipe === "sst2"
    ? "Binary classification (SST-2 recipe)"
    : "Classification (debian-sections recipe)";
  return await runRecipe(config, {
    title,
    ...(own ? { targets: CLASSIFICATION_TARGETS[recipe] } : {}),
    ...opts,
  });
}
