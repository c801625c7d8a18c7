/**
 * Private to `config.ts` (the body of `refuseUnreadFields`): which `TrainingConfig`
 * fields each kind of run never reads. One config type holds SFT and DPO settings (as TRL's
 * `SFTConfig` and `DPOConfig` both extend `TrainingArguments`), so a DPO field given to an SFT run,
 * or an SFT field given to DPO, would be accepted and then ignored. TRL's two config classes refuse
 * most such fields as unknown arguments (`SFTConfig(beta=0.5)`); fledge refuses all of them, in one
 * line, before any data or weights are read.
 * A field left at its default changes nothing and passes.
 * @module
 */
import type { TrainingConfig } from "./config_types.ts";
import { agree } from "../util/problems.ts";

/** A kind of run: `cli train` (SFT and pre-training), `cli dpo`, or a task recipe. */
export type RunKind = "sft" | "dpo" | "recipe";

/** Read only by DPO (TRL `DPOConfig`), in `TRAINING_CONFIG_KEYS`' order (config.ts spreads it there). */
export const DPO_ONLY_FIELDS = [
  "max_prompt_length",
  "beta",
  "loss_type",
  "label_smoothing",
  "precompute_ref_log_probs",
  "disable_dropout",
] as const;

/** Read only by SFT (TRL `SFTConfig`); DPO reads prompt/chosen/rejected rows whole. */
const SFT_ONLY = [
  "dataset_text_field",
  "packing",
  "packing_strategy",
  "completion_only_loss",
  "assistant_only_loss",
  "label_smoothing_factor",
] as const;

/** What each kind of run does not read: the fields, what they are (one, several), the fix. */
const UNREAD: Record<
  RunKind,
  { fields: readonly (keyof TrainingConfig)[]; what: [string, string]; fix: string }[]
> = {
  sft: [{
    fields: DPO_ONLY_FIELDS,
    what: ["a DPO setting", "DPO settings"],
    fix: "remove {it}, or train with deno task cli dpo",
  }],
  dpo: [{
    fields: SFT_ONLY,
    what: ["an SFT setting", "SFT settings"],
    fix: "remove {it} (DPO scores each chosen and rejected completion whole)",
  }],
  recipe: [
    {
      fields: DPO_ONLY_FIELDS,
      what: ["a DPO setting", "DPO settings"],
      fix: "remove {it} (a recipe fine-tunes with SFT)",
    },
    {
      fields: [
        "tokenizer",
        "dataset_text_field",
        "dataset_train_split",
        "dataset_test_split",
        "dataset_revision",
      ],
      what: ["not read by a recipe", "not read by a recipe"],
      fix: "remove {it} (a recipe uses its model's tokenizer and maps columns with --source_column)",
    },
  ],
};

function show(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/**
 * The problems of fields `kind` would ignore, set away from `defaults` or named in `given` (the
 * fields a file or the flags spelt out: `--disable_dropout true` reads as an order even at its
 * default): one clause per group.
 */
export function unreadFieldProblems(
  config: TrainingConfig,
  kind: RunKind,
  defaults: Readonly<TrainingConfig>,
  given: ReadonlySet<string> = new Set(),
): string[] {
  const problems: string[] = [];
  for (const { fields, what, fix } of UNREAD[kind]) {
    const set = fields.filter((k) =>
      given.has(k) || JSON.stringify(config[k]) !== JSON.stringify(defaults[k])
    );
    if (!set.length) continue;
    const a = agree(set), named = set.map((k) => `${k} ${show(config[k])}`).join(", ");
    problems.push(`${named} ${a.is} ${what[set.length > 1 ? 1 : 0]}; ${fix.replace("{it}", a.it)}`);
  }
  return problems;
}
