/**
 * Trainer hooks: plain functions called at fixed points of `Trainer.train()`, in the order of
 * Hugging Face `TrainerCallback` events: `on_train_begin`, then per update `on_step_end`,
 * `on_log`, `on_evaluate`, `on_save`, and finally `on_train_end`. A hook may return
 * `{ should_training_stop: true }` (HF's `TrainerControl`) to end training after the current step.
 *
 * @module
 */
import type { TrainingConfig } from "./config.ts";
import type { TrainerState } from "./checkpoint.ts";

/** What every hook receives: the live state (read it, do not change it) and the config. */
export interface HookContext {
  /** The Trainer's live state at this point (global step, epoch, log history, best metric). */
  state: Readonly<TrainerState>;
  /** The run's validated config. */
  config: Readonly<TrainingConfig>;
}

/** What a hook may return. */
export interface HookControl {
  /** End training after this step (the final model and report are still written). */
  should_training_stop?: boolean;
}

/** Result of a hook: nothing, or a control object, possibly async. */
export type HookResult = void | HookControl | Promise<void | HookControl>;

/** The hooks of a trainer; every one is optional. */
export interface TrainerHooks {
  /** Before the first step (after a resume has restored the state). */
  on_train_begin?: (ctx: HookContext) => HookResult;
  /** After each optimizer update. */
  on_step_end?: (ctx: HookContext) => HookResult;
  /** After each log record is written (train loss, learning rate, grad norm). */
  on_log?: (ctx: HookContext, record: Record<string, number>) => HookResult;
  /** After each evaluation, with its metrics (`eval_loss`, `eval_perplexity`, ...). */
  on_evaluate?: (ctx: HookContext, metrics: Record<string, number>) => HookResult;
  /** After a checkpoint folder is complete. */
  on_save?: (ctx: HookContext, path: string) => HookResult;
  /** After the final model and report are written. */
  on_train_end?: (ctx: HookContext) => HookResult;
}

/**
 * Call one hook (when present) and say whether it asked to stop.
 * @param hooks the hooks
 * @param name which one
 * @param args its arguments
 * @returns true when the hook returned `{ should_training_stop: true }`
 * @example
 * ```ts
 * import { callHook } from "./hooks.ts";
 * const stop = await callHook({ on_step_end: () => ({ should_training_stop: true }) }, "on_step_end", [
 *   { state: {} as never, config: {} as never },
 * ]);
 * if (!stop) throw new Error("stop");
 * ```
 */
export async function callHook<K extends keyof TrainerHooks>(
  hooks: TrainerHooks,
  name: K,
  args: Parameters<NonNullable<TrainerHooks[K]>>,
): Promise<boolean> {
  const fn = hooks[name] as ((...a: unknown[]) => HookResult) | undefined;
  if (!fn) return false;
  const r = await fn(...args);
  return !!(r && r.should_training_stop);
}
