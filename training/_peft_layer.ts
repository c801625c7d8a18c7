/**
 * Private: LoRA / DoRA adapter state and its forward, as PEFT's `lora.Linear.forward` and
 * `DoraLinearLayer.forward` (peft 0.14, `tuners/lora/layer.py`, `tuners/lora/dora.py`):
 *
 *   LoRA:  y = base + s · B (A · drop(x))                       s = lora_alpha / r (or / sqrt(r))
 *   DoRA:  y = base + (m / n − 1) ⊙ (x·Wᵀ) + (m / n) ⊙ s · B (A · x),   n = ||W + s B A||₂ per row,
 *          detached; written as bias + (m / n) ⊙ (x·Wᵀ + s B A x). With dropout active PEFT
 *          recomputes the base part from the dropped input: y = base + (m/n − 1) ⊙ (x̃·Wᵀ) + ...
 *
 * One HF module (`qkv_proj`, `c_attn`) is one {@linkcode LoraModule}: one `lora_A` `[r, in]` shared
 * by its canonical linears, and per linear a block of rows of `lora_B` `[out, r]` and of the DoRA
 * magnitude `[out]`. The row norm is per output row, so the split is exact; the gradient of the
 * fused `lora_B` is the concatenation of the blocks' gradients, and `lora_A` accumulates the
 * gradients of every block.
 * @module
 */
import { needsGrad, noGrad, release } from "../kernels/autograd.ts";
import type { Backend } from "../kernels/backend.ts";
import { add, mul, sub } from "../kernels/elementwise.ts";
import { doraNormForward, doraScale, dropout, loraLinear } from "../kernels/lora.ts";
import { matmul } from "../kernels/matmul.ts";
import { dequantize, linearQ4, QuantizedTensor } from "../kernels/quant.ts";
import type { Tensor } from "../kernels/tensor.ts";
import type { LinearAdapter } from "../models/transformer.ts";
import type { PeftConfig } from "./_peft_config.ts";
import type { TargetModule } from "./_peft_targets.ts";
import { mulberry32 } from "../util/random.ts";

/** One canonical linear's share of a module: rows of lora_B and of the magnitude. */
export interface LoraPart {
  linear: string;
  rows: number;
  /** `[rows, r]`. */
  lora_B: Tensor;
  /** DoRA `[rows]`, else null. */
  magnitude: Tensor | null;
}

/** The adapter of one HF module. */
export interface LoraModule {
  target: TargetModule;
  config: PeftConfig;
  scaling: number;
  /** `[r, in]`, shared by every part. */
  lora_A: Tensor;
  parts: LoraPart[];
  /** The seed of `lora_A`'s initialisation. */
  seed: number;
  /**
   * The dropout seed of the forward in progress (set by part 0, shared by the other parts of a
   * fused module, as PEFT drops the fused module's input once); null outside training.
   */
  dropSeed: number | null;
}

/** The hook installed on a canonical linear. */
export interface PeftAdapter extends LinearAdapter {
  readonly module: LoraModule;
  readonly part: number;
}

/** True for the adapters this module installs. */
export function isPeftAdapter(a: LinearAdapter): a is PeftAdapter {
  return "module" in a && "part" in a;
}

/** PEFT's LoRA scaling: `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA. */
export function loraScaling(c: PeftConfig): number {
  return c.use_rslora ? c.lora_alpha / Math.sqrt(c.r) : c.lora_alpha / c.r;
}

/**
 * PEFT's initial `lora_A` / `lora_B` (host arrays): `true` → A ~ kaiming_uniform(a=√5), i.e.
 * U(±1/√in), B = 0; `"gaussian"` → A ~ N(0, 1/r), B = 0; `false` → both kaiming-uniform (nn.Linear's
 * default init, B's bound 1/√r).
 */
export function initialWeights(
  target: TargetModule,
  c: PeftConfig,
  seed: number,
): { A: Float32Array; B: Float32Array } {
  const u = mulberry32(seed);
  const A = new Float32Array(c.r * target.in_features), B = new Float32Array(target.out_features * c.r);
  if (c.init_lora_weights === "gaussian") {
    for (let i = 0; i < A.length; i++) {
      A[i] = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()) / c.r;
    }
  } else {
    const bound = 1 / Math.sqrt(target.in_features);
    for (let i = 0; i < A.length; i++) A[i] = (2 * u() - 1) * bound;
  }
  if (c.init_lora_weights === false) {
    const bound = 1 / Math.sqrt(c.r);
    for (let i = 0; i < B.length; i++) B[i] = (2 * u() - 1) * bound;
  }
  return { A, B };
}

/**
 * Upload a module's tensors (B and the magnitude split by rows). Without a magnitude, DoRA's is
 * initialised to the row norms of `W + s B A` (PEFT's `update_layer` with `use_dora`).
 */
export function buildModule(
  be: Backend,
  target: TargetModule,
  c: PeftConfig,
  host: { A: Float32Array; B: Float32Array; magnitude: Float32Array | null },
  weightOf: (linear: string) => Tensor | QuantizedTensor,
  seed: number,
): LoraModule {
  const prefix = `base_model.model.${target.hf}`;
  const lora_A = be.fromArray(host.A, [c.r, target.in_features]);
  lora_A.name = `${prefix}.lora_A.weight`;
  const parts: LoraPart[] = [];
  let r0 = 0;
  for (const p of target.parts) {
    const lora_B = be.fromArray(host.B.subarray(r0 * c.r, (r0 + p.rows) * c.r), [p.rows, c.r]);
    lora_B.name = `${p.linear}.lora_B`;
    let magnitude: Tensor | null = null;
    if (c.use_dora) {
      if (host.magnitude) magnitude = be.fromArray(host.magnitude.subarray(r0, r0 + p.rows), [p.rows]);
      else {
        magnitude = be.empty([p.rows]);
        const w = weightOf(p.linear);
        const wf = w instanceof QuantizedTensor ? dequantize(w) : w;
        noGrad(() => doraNormForward(magnitude!, wf, lora_A, lora_B, loraScaling(c)));
        if (wf !== w) wf.dispose();
      }
      magnitude.name = `${p.linear}.lora_magnitude_vector`;
    }
    parts.push({ linear: p.linear, rows: p.rows, lora_B, magnitude });
    r0 += p.rows;
  }
  return { target, config: c, scaling: loraScaling(c), lora_A, parts, seed, dropSeed: null };
}

/** The hook for part `part` of `m`. */
export function peftAdapter(m: LoraModule, part: number): PeftAdapter {
  return {
    module: m,
    part,
    apply: (x, base, weight, bias, ctx) =>
      applyPart(m, part, x, base, weight, bias, ctx?.dropout_seed ?? null),
    linear: (x, weight, bias, ctx) => fusedPart(m, part, x, weight, bias, ctx?.dropout_seed ?? null),
    dispose: () => {
      m.lora_A.dispose();
      m.parts[part].lora_B.dispose();
      m.parts[part].magnitude?.dispose();
    },
  };
}

/**
 * `x` for a product whose backward needs it (dA = dXAᵀ · x). On a frozen base the layer input is
 * off the graph, and the model frees it as soon as the layer is done; a view owned by the product's
 * node keeps its storage until that node's backward has run.
 */
function held(x: Tensor, a: Tensor): Tensor {
  if (!needsGrad(a) || x.node || x.requiresGrad) return x;
  return x.reshape(x.shape);
}

/** Hand the view from {@linkcode held} to the node of `y` (or drop it when nothing recorded). */
function handOver(x: Tensor, view: Tensor, y: Tensor): void {
  if (view === x) return;
  if (y.node) y.node.saved.push(view);
  else view.dispose();
}

/** `x · Wᵀ` without bias, for an f32 or 4-bit weight. */
function linearNoBias(x: Tensor, w: Tensor | QuantizedTensor): Tensor {
  return w instanceof QuantizedTensor ? linearQ4(x, w) : matmul(x, w, { transB: true });
}

/**
 * LoRA (not DoRA) as one fused op over the base product (`kernels/lora.ts` `loraLinear`): the
 * same values as `base + s·B(A·drop(x))` without the [M, out] temporaries. Null (the `apply` path)
 * for DoRA, a base weight that trains, or an input that is not `[M, in]`.
 */
function fusedPart(
  m: LoraModule,
  part: number,
  x: Tensor,
  weight: Tensor | QuantizedTensor,
  bias: Tensor | undefined,
  dropSeed: number | null,
): Tensor | null {
  const p = m.parts[part];
  if (p.magnitude || x.rank !== 2) return null;
  if (!(weight instanceof QuantizedTensor) && (weight.requiresGrad || weight.node)) return null;
  if (part === 0) m.dropSeed = dropSeed;
  const rate = m.config.lora_dropout;
  if (!(rate > 0 && m.dropSeed !== null)) {
    // No dropout: x·Aᵀ inside the op (dA and dX's adapter part in its backward).
    return loraLinear(x, weight, { lora_A: m.lora_A, lora_B: p.lora_B, scaling: m.scaling, bias });
  }
  const xd = dropout(x, rate, m.dropSeed);
  const xin = held(xd, m.lora_A);
  const xa = matmul(xin, m.lora_A, { transB: true }); // [M, r]
  handOver(xd, xin, xa);
  if (xd !== x) release(xd);
  const y = loraLinear(x, weight, { xa, lora_B: p.lora_B, scaling: m.scaling, bias });
  release(xa);
  return y;
}

function applyPart(
  m: LoraModule,
  part: number,
  x: Tensor,
  base: Tensor,
  weight: Tensor | QuantizedTensor,
  bias: Tensor | undefined,
  dropSeed: number | null,
): Tensor {
  const p = m.parts[part];
  // Dropout is on in training forwards only (the model passes the forward's seed; evaluation and
  // generation pass none), and the mask is a pure function of that seed, so a checkpointed
  // recompute and a resumed run draw the same one. The parts of one fused module share one mask.
  if (part === 0) m.dropSeed = dropSeed;
  const rate = m.config.lora_dropout;
  const drop = rate > 0 && m.dropSeed !== null;
  const xd = drop ? dropout(x, rate, m.dropSeed!) : x;
  const xin = held(xd, m.lora_A);
  const xa = matmul(xin, m.lora_A, { transB: true }); // [M, r]
  handOver(xd, xin, xa);
  const lora = matmul(xa, p.lora_B, { transB: true, alpha: m.scaling }); // [M, rows]
  release(xa);
  if (!p.magnitude) {
    if (xd !== x) release(xd);
    const y = add(base, lora);
    release(lora);
    return y;
  }
  const wf = weight instanceof QuantizedTensor ? dequantize(weight) : weight;
  const scale = doraScale(p.magnitude, wf, m.lora_A, p.lora_B, m.scaling); // [rows]
  if (wf !== weight) wf.dispose();
  let y: Tensor;
  if (!drop) {
    // bias + scale ⊙ (x·Wᵀ + s B A x)
    const nb = bias ? sub(base, bias) : base;
    const t = add(nb, lora);
    if (nb !== base) release(nb);
    const y0 = mul(t, scale);
    release(t);
    if (bias) {
      y = add(y0, bias);
      release(y0);
    } else y = y0;
  } else {
    // base + (scale − 1) ⊙ (x̃·Wᵀ) + scale ⊙ s B A x̃  =  base + scale ⊙ (x̃·Wᵀ + lora) − x̃·Wᵀ
    const bd = linearNoBias(xd, weight);
    release(xd);
    const t = add(bd, lora);
    const st = mul(t, scale);
    release(t);
    const d = sub(st, bd);
    release(st);
    release(bd);
    y = add(base, d);
    release(d);
  }
  release(lora);
  // `scale` is a graph input of the products above when they record; a constant otherwise.
  if (!needsGrad(y)) release(scale);
  return y;
}
