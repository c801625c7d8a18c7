/**
 * The summarization recipe (`deno task train:cnn`): a document to a one-line summary, fine-tuned
 * as prompt -> completion ("Summarize: <document>\nSummary: <summary>") and scored with ROUGE
 * against the lead baseline on the same validation examples. Config: `configs/summarization.yaml`;
 * offline it trains on the Debian descriptions from the Debian base model, with each synopsis
 * replaced by the description's lead closest to it (`train_targets: lead_oracle`, extractive).
 *
 * @module
 */
import { mergeRecipeConfig, readRecipeYaml } from "./_recipe.ts";
import type { RecipeTarget } from "../evaluation/run_report.ts";
import { type RecipeResult, runRecipe, type RunRecipeOptions } from "./recipe.ts";

/** The README's reference number for the Debian validation split. */
export const SUMMARIZATION_TARGETS: Readonly<Record<string, RecipeTarget>> = Object.freeze({
  "lead baseline (README)": {
    metric: "rougeL",
    value: 21.46,
    source: "../shared/datasets/debian/README.md",
  },
});

/**
 * Run the summarization recipe: `configs/summarization.yaml` with `overrides` on top.
 * @example
 * ```ts ignore
 * import { runSummarization } from "./summarization.ts";
 * const r = await runSummarization({ max_steps: 50, max_eval_samples: 100 });
 * console.log(r.metrics.rougeL, r.baselines["lead-6"].rougeL);
 * ```
 */
export async function runSummarization(
  overrides: Record<string, unknown> = {},
  opts: RunRecipeOptions = {},
): Promise<RecipeResult> {
  const config = mergeRecipeConfig(await readRecipeYaml("summarization"), overrides);
  const debian = (config.dataset ?? "debian") === "debian";
  return await runRecipe(config, {
    title: "Summarization: document -> one-line summary",
    ...(debian ? { targets: SUMMARIZATION_TARGETS } : {}),
    ...opts,
  });
}
