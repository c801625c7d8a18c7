/**
 * Private to `search.ts`: the truncated normal distribution TPE's Parzen estimators are made of,
 * computed in log space so far tails neither underflow nor cancel. Follows Optuna's
 * `optuna/samplers/_tpe/_truncnorm.py` (itself SciPy's `truncnorm`): `logNdtr` with the asymptotic
 * series below -20, `logGaussMass` worked in the left tail by symmetry, `ppf` by bisection of
 * `logNdtr` on [-100, 100].
 *
 * Bounds `a`, `b` are standardized: `(low - mu) / sigma`, `(high - mu) / sigma`.
 * @module
 */

const SQRT2 = Math.SQRT2;
const LOG_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);
const SQRT_PI = Math.sqrt(Math.PI);

/** erfc(x) for x >= 0: Taylor series of erf below 2.5, a continued fraction (Lentz) above. */
function erfcPos(x: number): number {
  if (x < 2.5) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let term = x, sum = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return 1 - (2 / SQRT_PI) * sum;
  }
  // erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
  const tiny = 1e-300;
  let f = x, c = x, d = 0;
  for (let k = 1; k < 500; k++) {
    const a = k / 2;
    d = x + a * d;
    d = Math.abs(d) < tiny ? tiny : d;
    c = x + a / c;
    c = Math.abs(c) < tiny ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / (SQRT_PI * f);
}

/** The complementary error function. */
export function erfc(x: number): number {
  return x >= 0 ? erfcPos(x) : 2 - erfcPos(-x);
}

/** The standard normal CDF, Phi(a). */
export function ndtr(a: number): number {
  const x = a / SQRT2;
  return x < 0 ? 0.5 * erfc(-x) : 1 - 0.5 * erfc(x);
}

/** log Phi(a), accurate in both tails (Optuna's `_log_ndtr_single`). */
export function logNdtr(a: number): number {
  if (a > 6) return -ndtr(-a); // log(1 - e) ~ -e
  if (a > -20) return Math.log(ndtr(a));
  // Asymptotic series: log Phi(a) = -a^2/2 - log(-a) - log(2 pi)/2 + log(1 - 1/a^2 + 3/a^4 - ...)
  const logLhs = -0.5 * a * a - Math.log(-a) - LOG_SQRT_2PI;
  let last = 0, rhs = 1, numerator = 1, denom = 1, sign = 1;
  const dc = 1 / (a * a);
  for (let i = 1; Math.abs(last - rhs) > Number.EPSILON && i < 100; i++) {
    last = rhs;
    sign = -sign;
    denom *= dc;
    numerator *= 2 * i - 1;
    rhs += sign * numerator * denom;
  }
  return logLhs + Math.log(rhs);
}

/** log(exp(p) - exp(q)) for p >= q. */
function logDiff(p: number, q: number): number {
  return p + Math.log1p(-Math.exp(q - p));
}

/** log(exp(p) + exp(q)). */
function logSum(p: number, q: number): number {
  const m = Math.max(p, q);
  if (m === -Infinity) return -Infinity;
  return m + Math.log(Math.exp(p - m) + Math.exp(q - m));
}

/** log of the standard normal mass on [a, b] (Optuna's `_log_gauss_mass`). */
export function logGaussMass(a: number, b: number): number {
  if (b <= 0) return logDiff(logNdtr(b), logNdtr(a)); // left tail
  if (a > 0) return logDiff(logNdtr(-a), logNdtr(-b)); // right tail, by symmetry
  return Math.log1p(-ndtr(a) - ndtr(-b)); // central: avoids cancellation near 1
}

/**
 * x with log Phi(x) = y, on [-100, 100] as Optuna's `_ndtri_exp` (which bisects): Newton's method,
 * which for the concave, increasing log Phi converges monotonically from any start.
 */
function ndtriExp(y: number): number {
  let x = 0;
  for (let i = 0; i < 200; i++) {
    const f = logNdtr(x) - y;
    const slope = Math.exp(-0.5 * x * x - LOG_SQRT_2PI - logNdtr(x));
    const next = Math.min(100, Math.max(-100, x - f / slope));
    if (Math.abs(next - x) <= 1e-14 * (1 + Math.abs(x))) return next;
    x = next;
  }
  return x;
}

/**
 * The quantile `q` in [0, 1] of the standard normal truncated to [a, b] (Optuna's `ppf`).
 * @returns the standardized value (multiply by sigma, add mu)
 */
export function truncnormPpf(q: number, a: number, b: number): number {
  if (a === b) return NaN;
  if (q === 0) return a;
  if (q === 1) return b;
  const mass = logGaussMass(a, b);
  if (a < 0) return ndtriExp(logSum(logNdtr(a), Math.log(q) + mass));
  return -ndtriExp(logSum(logNdtr(-b), Math.log1p(-q) + mass));
}

/** log of sum(exp(xs)), safe for -Infinity entries. */
export function logSumExp(xs: readonly number[]): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (const x of xs) s += Math.exp(x - m);
  return m + Math.log(s);
}
