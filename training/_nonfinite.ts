/**
 * Private: the error a run stops with on a non-finite loss, gradient norm or weights.
 * @module
 */

/**
 * Training stopped on a non-finite loss, gradient norm or weights: a state callers catch (a
 * hyperparameter search prunes the trial). Nothing non-finite was saved.
 */
export class NonFiniteError extends Error {
  /** The step at which it was found. */
  readonly step: number;
  /**
   * Creates the error, named `NonFiniteError`.
   *
   * @param step where it was found
   * @param message what, where and the fix
   */
  constructor(step: number, message: string) {
    super(message);
    this.name = "NonFiniteError";
    this.step = step;
  }
}

/** The error for a non-finite value found at `step` (the last finite log was at `since`). */
export function nonFinite(
  step: number,
  since: number,
  what: string,
  value: number,
  last: string | null,
): NonFiniteError {
  const where = step - since > 1
    ? `between steps ${since + 1} and ${step} (logged every few steps; logging_steps: 1 pinpoints it)`
    : `at step ${step}`;
  return new NonFiniteError(
    step,
    `Cannot continue training: the ${what} became ${value} ${where}; nothing non-finite was saved` +
      `${last ? ` (last checkpoint ${last})` : ""}; lower learning_rate, set max_grad_norm, ` +
      `or set skip_nonfinite_steps: true to skip such updates`,
  );
}

/**
 * Refuse a logged window whose mean loss or gradient norm is not finite (a norm of 0 is not
 * checked: the steps skipped as non-finite give none).
 * @throws {NonFiniteError} naming the steps and the last checkpoint
 */
export function refuseNonFiniteLog(
  loss: number,
  gn: number,
  step: number,
  since: number,
  last: string | null,
): void {
  if (!Number.isFinite(loss)) throw nonFinite(step, since, "loss", loss, last);
  if (!Number.isFinite(gn)) throw nonFinite(step, since, "gradient norm", gn, last);
}
