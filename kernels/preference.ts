/**
 * Pairwise preference losses of TRL's `DPOTrainer` over sequence log-probabilities, fused with
 * their gradient and the statistics TRL logs, in one dispatch and no readback.
 *
 * Math, for pairs i < B of a batch laid out [chosen_0 .. chosen_{B-1}, rejected_0 .. rejected_{B-1}]
 * (lp: the policy's summed completion log-probs, ref: the reference's, len: completion tokens):
 *   dc = lp[i] - ref[i], dr = lp[B+i] - ref[B+i] (log-ratios), z = beta (dc - dr)
 *   sigmoid (DPO, Rafailov et al. 2023; cDPO with label smoothing e):
 *     l_i = (1 - e) softplus(-z) + e softplus(z)           (= -(1-e) log sig(z) - e log sig(-z))
 *   hinge (SLiC): l_i = relu(1 - z)
 *   ipo (Azar et al. 2023, TRL's length-normalised form, beta = tau):
 *     u = dc / max(len[i], 1) - dr / max(len[B+i], 1),  l_i = (u - 1 / (2 beta))^2
 *   loss = mean_i l_i; d loss / d lp saved in the forward (B2 = 2B values), scaled by the incoming
 *   gradient in the backward.
 *   Statistics (means over pairs, TRL's names): rewards/chosen = beta dc, rewards/rejected = beta dr,
 *   rewards/accuracies = [beta dc > beta dr], rewards/margins = beta (dc - dr), logps/chosen = lp[i],
 *   logps/rejected = lp[B+i].
 * Shapes: lp, ref, len (2B); loss (1); stats (8): loss, then the six statistics in that order, 0.
 *
 * Kernel and grid: one workgroup of 64 invocations strides over the pairs and reduces the sums in
 * workgroup memory (fixed tree order: deterministic). Bindings: loss, stats, [dlp], lp, ref, [len].
 * The statistics are copied from `stats` into one `[1]` tensor each (buffer copies, no dispatch).
 *
 * @module
 */
import { type KernelSpec, launch, memo, wgslHeader, wgslWorkgroupReduce } from "./_kernel.ts";
import { needsGrad, record } from "./autograd.ts";
import { mul } from "./elementwise.ts";
import { expectDtype, expectSameBackend, shapeText, type Tensor, type WritableArray } from "./tensor.ts";

/** TRL `loss_type` values fledge implements. */
export type PreferenceLossType = "sigmoid" | "hinge" | "ipo";

/** Options of {@linkcode preferenceLoss} (TRL `DPOConfig` names). */
export interface PreferenceLossOptions {
  /** `sigmoid` (default), `hinge` or `ipo`. */
  loss_type?: PreferenceLossType;
  /** Deviation from the reference; IPO's tau (default 0.1). */
  beta?: number;
  /** cDPO's probability that a label is flipped, in [0, 0.5); `sigmoid` only (default 0). */
  label_smoothing?: number;
  /** Completion tokens per sequence (2B), f32; needed by `ipo`, which averages the log-ratios. */
  lengths?: Tensor | null;
}

/** The statistics of a batch, by TRL's logged names, in `stats` order after the loss. */
export const PREFERENCE_STATS = [
  "rewards/chosen",
  "rewards/rejected",
  "rewards/accuracies",
  "rewards/margins",
  "logps/chosen",
  "logps/rejected",
] as const;

/** One of {@linkcode PREFERENCE_STATS}. */
export type PreferenceStat = (typeof PREFERENCE_STATS)[number];

const WG = 64;
const OP = "preference.loss";

function resolve(opts: PreferenceLossOptions): { type: PreferenceLossType; beta: number; eps: number } {
  const type = opts.loss_type ?? "sigmoid", beta = opts.beta ?? 0.1, eps = opts.label_smoothing ?? 0;
  if (type !== "sigmoid" && type !== "hinge" && type !== "ipo") {
    throw new RangeError(
      `Cannot run ${OP}: loss_type must be sigmoid, hinge or ipo: got ${JSON.stringify(type)}`,
    );
  }
  if (!(beta > 0 && Number.isFinite(beta))) {
    throw new RangeError(`Cannot run ${OP}: beta must be > 0: got ${beta}`);
  }
  if (!(eps >= 0 && eps < 0.5)) {
    throw new RangeError(`Cannot run ${OP}: label_smoothing must be in [0, 0.5): got ${eps}`);
  }
  if (eps > 0 && type !== "sigmoid") {
    throw new RangeError(
      `Cannot run ${OP}: label_smoothing applies to loss_type sigmoid (cDPO), not ${type}`,
    );
  }
  return { type, beta, eps };
}

// ---- reference (f64) ----

function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/**
 * Reference: `loss[0]`, `stats` (8: loss and {@linkcode PREFERENCE_STATS}, then 0) and, when given,
 * `dlogps` (2B), the gradient of the loss w.r.t. `logps`.
 * @param lengths completion tokens per sequence (ipo), else null
 */
export function preferenceLossReference(
  loss: WritableArray,
  stats: WritableArray,
  dlogps: WritableArray | null,
  logps: ArrayLike<number>,
  refLogps: ArrayLike<number>,
  lengths: ArrayLike<number> | null,
  opts: PreferenceLossOptions = {},
): void {
  const { type, beta, eps } = resolve(opts);
  const B = logps.length / 2;
  const sums = new Float64Array(7);
  for (let i = 0; i < B; i++) {
    const lc = logps[i], lr = logps[B + i];
    const dc = lc - refLogps[i], dr = lr - refLogps[B + i], z = beta * (dc - dr);
    let l: number, gc: number, gr: number;
    if (type === "sigmoid") {
      l = (1 - eps) * softplus(-z) + eps * softplus(z);
      const dz = -(1 - eps) * sigmoid(-z) + eps * sigmoid(z);
      gc = beta * dz;
      gr = -beta * dz;
    } else if (type === "hinge") {
      l = Math.max(0, 1 - z);
      gc = z < 1 ? -beta : 0;
      gr = -gc;
    } else {
      const ic = 1 / Math.max(lengths![i], 1), ir = 1 / Math.max(lengths![B + i], 1);
      const u = dc * ic - dr * ir - 1 / (2 * beta);
      l = u * u;
      gc = 2 * u * ic;
      gr = -2 * u * ir;
    }
    sums[0] += l;
    sums[1] += beta * dc;
    sums[2] += beta * dr;
    sums[3] += beta * dc > beta * dr ? 1 : 0;
    sums[4] += beta * (dc - dr);
    sums[5] += lc;
    sums[6] += lr;
    if (dlogps) {
      dlogps[i] = gc / B;
      dlogps[B + i] = gr / B;
    }
  }
  for (let k = 0; k < 7; k++) stats[k] = B ? sums[k] / B : 0;
  stats[7] = 0;
  loss[0] = stats[0];
}

// ---- WGSL ----

function spec(type: PreferenceLossType, grad: boolean): KernelSpec {
  return {
    label: `preference.${type}_loss`,
    params: { B: "u32", beta: "f32", eps: "f32" },
    bindings: [
      { name: "loss", type: "f32", access: "read_write" },
      { name: "stats", type: "f32", access: "read_write" },
      ...(grad ? [{ name: "dlp", type: "f32", access: "read_write" as const }] : []),
      { name: "lp", type: "f32", access: "read" },
      { name: "ref_lp", type: "f32", access: "read" },
      ...(type === "ipo" ? [{ name: "len", type: "f32", access: "read" as const }] : []),
    ],
    workgroupSize: [WG, 1, 1],
  };
}

/** WGSL computing `l`, `gc`, `gr` of one pair from dc, dr (and lengths for ipo). */
const PAIR_MATH: Record<PreferenceLossType, string> = {
  sigmoid: `let z = p.beta * (dc - dr);
    let l = (1.0 - p.eps) * softplus(-z) + p.eps * softplus(z);
    let dz = -(1.0 - p.eps) * sigmoid(-z) + p.eps * sigmoid(z);
    let gc = p.beta * dz;
    let gr = -gc;`,
  hinge: `let z = p.beta * (dc - dr);
    let l = max(0.0, 1.0 - z);
    let gc = select(0.0, -p.beta, z < 1.0);
    let gr = -gc;`,
  ipo: `let ic = 1.0 / max(len[i], 1.0);
    let ir = 1.0 / max(len[p.B + i], 1.0);
    let u = dc * ic - dr * ir - 1.0 / (2.0 * p.beta);
    let l = u * u;
    let gc = 2.0 * u * ic;
    let gr = -2.0 * u * ir;`,
};

const code = memo((key: `${PreferenceLossType}:${boolean}`) => {
  const [t, g] = key.split(":");
  const type = t as PreferenceLossType, grad = g === "true";
  return `${wgslWorkgroupReduce(WG)}
fn softplus(x: f32) -> f32 { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
fn sigmoid(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
${wgslHeader(spec(type, grad))}fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let lx = lid.x;
  var a = vec2<f32>(0.0, 0.0);
  var b = vec2<f32>(0.0, 0.0);
  var c = vec2<f32>(0.0, 0.0);
  var d = vec2<f32>(0.0, 0.0);
  let inv = 1.0 / f32(max(p.B, 1u));
  for (var i = lx; i < p.B; i += ${WG}u) {
    let lc = lp[i];
    let lr = lp[p.B + i];
    let dc = lc - ref_lp[i];
    let dr = lr - ref_lp[p.B + i];
    ${PAIR_MATH[type]}
    let rc = p.beta * dc;
    let rr = p.beta * dr;
    a += vec2<f32>(l, rc);
    b += vec2<f32>(rr, select(0.0, 1.0, rc > rr));
    c += vec2<f32>(p.beta * (dc - dr), lc);
    d += vec2<f32>(lr, 0.0);
    ${grad ? "dlp[i] = gc * inv;\n    dlp[p.B + i] = gr * inv;" : ""}
  }
  let sa = wg_sum2(a, lx);
  let sb = wg_sum2(b, lx);
  let sc = wg_sum2(c, lx);
  let sd = wg_sum2(d, lx);
  if (lx == 0u) {
    loss[0] = sa.x * inv;
    stats[0] = sa.x * inv;
    stats[1] = sa.y * inv;
    stats[2] = sb.x * inv;
    stats[3] = sb.y * inv;
    stats[4] = sc.x * inv;
    stats[5] = sc.y * inv;
    stats[6] = sd.x * inv;
    stats[7] = 0.0;
  }
}
`;
});

// ---- launchers ----

/**
 * Launcher: `loss` (1), `stats` (8) and, when given, the gradient `dlogps` (2B); no readback.
 * @throws {TypeError} on dtype, shape or backend mismatch (before dispatch)
 * @throws {RangeError} on bad options, or `ipo` without `lengths`
 */
export function preferenceLossForward(
  loss: Tensor,
  stats: Tensor,
  dlogps: Tensor | null,
  logps: Tensor,
  refLogps: Tensor,
  opts: PreferenceLossOptions = {},
): void {
  const { type, beta, eps } = resolve(opts);
  const lengths = type === "ipo" ? opts.lengths ?? null : null;
  if (type === "ipo" && !lengths) {
    throw new RangeError(`Cannot run ${OP}: loss_type ipo needs lengths (completion tokens per sequence)`);
  }
  const named = { loss, stats, logps, ref_logps: refLogps, dlogps, lengths };
  const ts = Object.values(named).filter((t): t is Tensor => t !== null);
  expectSameBackend(OP, ...ts);
  for (const [what, t] of Object.entries(named)) if (t) expectDtype(OP, what, t, "f32");
  const n = logps.size;
  if (logps.rank !== 1 || n % 2 !== 0) {
    throw new TypeError(
      `Cannot run ${OP}: logps has shape ${
        shapeText(logps.shape)
      }, expected [2B] (chosen rows, then rejected)`,
    );
  }
  for (
    const [what, t, size] of [["ref_logps", refLogps, n], ["loss", loss, 1], ["stats", stats, 8]] as const
  ) {
    if (t.size !== size) {
      throw new TypeError(
        `Cannot run ${OP}: ${what} has ${t.size} elements, expected ${size}`,
      );
    }
  }
  if (dlogps && dlogps.size !== n) {
    throw new TypeError(`Cannot run ${OP}: dlogps has ${dlogps.size} elements, expected ${n}`);
  }
  if (lengths && lengths.size !== n) {
    throw new TypeError(`Cannot run ${OP}: lengths has ${lengths.size} elements, expected ${n}`);
  }
  if (loss.backend.name === "cpu") {
    return preferenceLossReference(
      loss.data,
      stats.data,
      dlogps?.data ?? null,
      logps.data,
      refLogps.data,
      lengths?.data ?? null,
      { loss_type: type, beta: Math.fround(beta), label_smoothing: Math.fround(eps) },
    );
  }
  const bind = [loss, stats, ...(dlogps ? [dlogps] : []), logps, refLogps, ...(lengths ? [lengths] : [])];
  launch(spec(type, !!dlogps), code(`${type}:${!!dlogps}`), bind, { B: n / 2, beta, eps }, [1, 1, 1]);
}

/** Element `k` of `src` as a new `[1]` tensor (a buffer copy on webgpu). */
function element(src: Tensor, k: number): Tensor {
  const be = src.backend, t = be.empty([1]);
  if (be.name === "cpu") t.data[0] = src.data[k];
  else be.device.copy(src.buffer, 4 * k, t.buffer, 0, 4);
  return t;
}

/**
 * TRL's DPO-family loss of a batch of preference pairs from sequence log-probabilities: `logps`
 * (2B, the policy's, chosen rows first), differentiable, against `ref_logps` (2B, the reference's,
 * a constant). Returns the mean loss `[1]` and TRL's logged statistics, each a `[1]` device tensor
 * (not differentiable). A zero log-ratio everywhere (policy = reference) gives `ln 2` with
 * `sigmoid`, 1 with `hinge`, `1 / (4 beta^2)` with `ipo`, and every reward 0.
 *
 * @param logps (2B) f32: summed completion log-probs of chosen then rejected sequences
 * @param refLogps (2B) f32: the same under the reference model
 * @param opts `loss_type`, `beta`, `label_smoothing`, `lengths` (ipo)
 * @returns `loss` and `stats` by {@linkcode PREFERENCE_STATS} name; the caller disposes them
 * @throws {TypeError} on dtype, shape or backend mismatch
 * @throws {RangeError} on bad options
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { preferenceLoss } from "./preference.ts";
 * const cpu = await createBackend("cpu");
 * const lp = cpu.fromArray([-3, -5], [2]), ref = cpu.fromArray([-3, -5], [2]);
 * const { loss, stats } = preferenceLoss(lp, ref, { beta: 0.1 });
 * if (Math.abs((await loss.toArray())[0] - Math.LN2) > 1e-6) throw new Error("ln 2");
 * if ((await stats["rewards/margins"].toArray())[0] !== 0) throw new Error("margin");
 * ```
 */
export function preferenceLoss(
  logps: Tensor,
  refLogps: Tensor,
  opts: PreferenceLossOptions = {},
): { loss: Tensor; stats: Record<PreferenceStat, Tensor> } {
  const be = logps.backend;
  const loss = be.empty([1]), all = be.empty([8]);
  const dl = needsGrad(logps) ? be.empty([logps.size]) : null;
  try {
    preferenceLossForward(loss, all, dl, logps, refLogps, opts);
  } catch (e) {
    for (const t of [loss, all, dl]) t?.dispose();
    throw e;
  }
  const stats = Object.fromEntries(PREFERENCE_STATS.map((k, i) => [k, element(all, i + 1)])) as Record<
    PreferenceStat,
    Tensor
  >;
  all.dispose();
  if (!dl) return { loss, stats };
  record(loss, "preference_loss", [logps], (g) => [mul(dl, g)], [dl]);
  return { loss, stats };
}
