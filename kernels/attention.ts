/**
 * Scaled dot-product attention, flash style, with causal / sliding-window / key-padding masks and
 * grouped-query attention; a split-K decode path; a FlashAttention-2 backward.
 *
 * Shapes (contiguous f32): q `(B, Tq, H, D)`, k and v `(B, Tk, Hkv, D)` (Tk may be a preallocated
 * KV cache of which the first `kv_len` rows are valid), out `(B, Tq, H, D)`, lse `(B, H, Tq)`.
 * Query head h reads kv head `floor(h / G)`, G = H / Hkv (Hugging Face `repeat_kv`).
 *
 * Math, per (b, h, i) with absolute query position pos = q_offset + i (q_offset defaults to
 * kv_len - Tq, the KV-cache convention):
 *   key j is visible iff j < kv_len, mask[b, j] != 0, (!causal or j <= pos) and
 *     (!sliding_window or j > pos - sliding_window)   (HF `sliding_window_overlay`: keys in (pos - W, pos])
 *     and, with segment ids (packed rows), seg[b, j] == seg[b, pos] and seg[b, j] != 0: a query sees
 *     only keys of its own example, never padding (flash-attn varlen / HF padding-free packing)
 *   s_j = scale * q_i · k_j, P = softmax over visible j, out_i = Σ_j P_j v_j, lse_i = log Σ_j exp(s_j)
 *   a row with no visible key gives out = 0 and lse = -FLT_MAX (finite, never NaN).
 * Backward (Dao 2023, FlashAttention-2): D_i = dout_i · out_i, P_ij = exp(s_ij - lse_i),
 *   dv_j = Σ_i P_ij dout_i,  dS_ij = P_ij (dout_i · v_j - D_i),  dq_i = scale Σ_j dS_ij k_j,
 *   dk_j = scale Σ_{i, heads of the group} dS_ij q_i.
 * Dropout on the probabilities (`opts.dropout`, training; HF `attn_dropout` after the softmax,
 *   FlashAttention-2's `dropout_p`): Z_ij = keep(b, h, i, j) / (1 - p), out_i = Σ_j P_ij Z_ij v_j;
 *   lse stays that of the undropped scores. keep(b, h, i, j) = dropoutHash(seed, idx) >=
 *   dropoutThreshold(p) (`elementwise.ts`) with idx = ((b * H + h) * Tq + i) * Tk + j in u32
 *   (wrapping), so the backward regenerates the mask; no mask lives in memory. Backward:
 *   dv_j = Σ_i P_ij Z_ij dout_i, dS_ij = P_ij (Z_ij dout_i · v_j - D_i) (D_i = dout_i · out_i still).
 *   Training kernels only (tile, reg, tex); the split-K decode path refuses dropout.
 *
 * Kernels (WGSL in `_attention_wgsl.ts` and `_attention_wgsl_reg.ts`; params struct shared). Two
 * families, chosen per adapter (`_attention_tune.ts`: CPU rasterizers get `tex`, real GPUs `tile`;
 * `autotuneAttention` times candidates; `opts.kernels` overrides per call):
 * - `reg` / `tex` (register-blocked, no workgroup memory, no barriers): one invocation per (R rows,
 *   head, batch), heads fastest, latest row blocks first; q / dO rows and the accumulators live in
 *   registers and each K/V row load feeds R rows (vec4 everywhere, fma chains for the dots). `tex`
 *   first stages the streamed operand (K and V; for dK/dV: Q and dO) as rgba32float texture arrays
 *   (texel (h * D4 + c, t, layer b)): on llvmpipe a storage load is a per-lane loop with a bounds
 *   check, a texel fetch a vectorized gather. Over the texture limits (T > 8192, B > 256) `tex`
 *   reads buffers (`reg`). Forward: BK keys per step, scores R x BK, one online-softmax rescale per
 *   row and step (only when the step raises the row max), then P·V. dQ: also writes D_i = dO_i · O_i
 *   for dK/dV (no separate pass). dK/dV: R keys per invocation loop over the group's heads and the
 *   queries that may see them. Rows per invocation shrink above D = 64 (`regRows`). Timings:
 *   `bench/attention.ts`.
 * - `tile` (workgroup memory, WG = 64, the GPU path): forward grid (ceil(Tq/64), H, B); a thread per
 *   query row streams K/V tiles of min(32, 2048/D) keys through workgroup memory with an online
 *   softmax. Backward: `di` (a thread per row), `dq` (grid as forward), `dkv` (a thread per key row
 *   loops over the group's heads and Q/dout tiles). Deterministic (no atomics), O(T) memory.
 * - decode (split-K, when G * Tq <= min(16, 2048/D), e.g. Tq = 1), splits of 64 keys: a workgroup
 *   per (split, kv head, batch), a thread per key, barriers between scores, max/sum and P·V; or, on
 *   CPU adapters (`setDecodeLayout`), an invocation per (query row, split) with no barriers and the
 *   same partials bit for bit. `combine` (a thread per output element) merges the splits.
 * Segments (`opts.segment_ids`, packed rows): a clause of the shared predicate, in a `seg` variant
 * of every kernel; `reg` / `tex` skip the keys (forward, dQ) or queries (dK/dV) of other segments
 * in whole key blocks (bit for bit). Limits: D <= 256 on webgpu; tensors within a storage binding.
 *
 * @module
 */
import { gridFor, launch, packParams, range } from "./_kernel.ts";
import {
  ATTN_PARAMS,
  backwardKV,
  backwardQ,
  type Built,
  combine,
  flashForward,
  type MaskKind,
  NEG,
  rowDot,
  splitForward,
  splitForwardRows,
  splitRows,
  type TileKey,
  WG,
} from "./_attention_wgsl.ts";
import {
  fitsTexture,
  regBackwardKV,
  regBackwardQ,
  regForward,
  regKey,
  releaseTexture,
  stage,
} from "./_attention_wgsl_reg.ts";
import {
  type AttentionConfig,
  attentionConfigFor,
  type AttentionKernelConfig,
  type AttentionTiming,
  decodeByInvocation,
  type DecodeLayout,
  kernelConfigKey,
  setAttentionConfig,
  setDecodeLayout,
  tuneAttention,
} from "./_attention_tune.ts";
import type { Backend } from "./backend.ts";
import type { BufferRange } from "./gpu.ts";
import { needsGrad, record } from "./autograd.ts";
import { dropoutHash, dropoutThreshold } from "./elementwise.ts";
import {
  expectDtype,
  expectSameBackend,
  expectShape,
  shapeText,
  type Tensor,
  type WritableArray,
} from "./tensor.ts";

/** Options of {@linkcode attention} and its launchers. */
export interface AttentionOptions {
  /** Causal masking (query at position q_offset + i sees keys <= its position). Default false. */
  causal?: boolean;
  /** Absolute position of query 0. Default `kv_len - Tq` (decode convention). */
  q_offset?: number;
  /** Key padding mask `[B, S]` (S >= kv_len; columns past kv_len ignored), 1 = real, 0 = pad; f32, i32 or u32. */
  attention_mask?: Tensor | null;
  /**
   * Segment ids `[B, S]` i32 by absolute position (S >= kv_len and >= q_offset + Tq): 0 = padding,
   * k >= 1 = the k-th example of a packed row. A query sees only keys of its own segment, and
   * padding keys never; a padding query sees nothing (its output is 0). Requires q_offset >= 0.
   */
  segment_ids?: Tensor | null;
  /** Mistral sliding window W: a query at position p sees keys in (p - W, p]. Default none. */
  sliding_window?: number | null;
  /** Score scale. Default `1 / sqrt(D)`. */
  scale?: number;
  /** Valid rows of k and v (a preallocated KV cache). Default `k.shape[1]`. */
  kv_len?: number;
  /** Kernel choice (webgpu): `"auto"` (split-K for few queries per kv head), `"flash"`, `"split_k"`. */
  path?: "auto" | "flash" | "split_k";
  /**
   * Kernel configurations overriding the adapter's (webgpu, flash path): `tile` (workgroup-memory
   * tiles) or register-blocked `reg` / `tex` with rows per invocation, keys per step and workgroup size.
   */
  kernels?: Partial<AttentionConfig>;
  /**
   * Dropout on the attention probabilities (training): P_ij is scaled by keep(b, h, i, j) / (1 - p)
   * after the softmax, the mask a pure function of `seed` and the flat index (b, h, i, j) (see the
   * module header), recomputed by the backward. null or `p = 0`: none. Not on the split-K path.
   */
  dropout?: AttentionDropout | null;
}

/** Dropout on the attention probabilities: drop probability `p` in [0, 1), mask seed (u32). */
export interface AttentionDropout {
  /** Probability of dropping each attention weight, in [0, 1); 0 disables dropout. */
  p: number;
  /** u32 seed of the counter-based mask hash; the backward reuses it to rebuild the same mask. */
  seed: number;
}

/** Dimensions of an attention problem. */
export interface AttentionDims {
  /** Batch size. */
  B: number;
  /** Query length: q and out are `[B, Tq, H, D]`. */
  Tq: number;
  /** Key/value rows allocated: k and v are `[B, Tk, Hkv, D]` (only the first kv_len are read). */
  Tk: number;
  /** Query heads. */
  H: number;
  /** Key/value heads (grouped-query attention); H must be a multiple of Hkv. */
  Hkv: number;
  /** Head dimension. */
  D: number;
}

/** Options of the references: the mask as plain numbers. */
export interface AttentionReferenceOptions {
  /** Causal masking (as {@linkcode AttentionOptions.causal}). Default false. */
  causal?: boolean;
  /** Absolute position of query 0. Default `kv_len - Tq`. */
  q_offset?: number;
  /** Key padding mask, `[B, mask_stride]`: 0 hides the key, anything else keeps it. Default none. */
  attention_mask?: ArrayLike<number> | null;
  /** Row stride of attention_mask. Default Tk. */
  mask_stride?: number;
  /** Segment ids by absolute position, `[B, segment_stride]` (as {@linkcode AttentionOptions.segment_ids}). */
  segment_ids?: ArrayLike<number> | null;
  /** Row stride of segment_ids. Default Tk. */
  segment_stride?: number;
  /** Sliding window W: a query at position p sees keys in (p - W, p]. null or 0: none. */
  sliding_window?: number | null;
  /** Score scale. Default `1 / sqrt(D)`. */
  scale?: number;
  /** Valid rows of k and v; keys at or past it are invisible. Default Tk. */
  kv_len?: number;
  /** Dropout on the probabilities (as {@linkcode AttentionOptions.dropout}). */
  dropout?: AttentionDropout | null;
}

const OP = "attention";

/** The visibility predicate of the references (the same rules as WGSL's `visible`). */
function visibility(dims: AttentionDims, o: AttentionReferenceOptions) {
  const kvLen = o.kv_len ?? dims.Tk;
  const qOff = o.q_offset ?? kvLen - dims.Tq;
  const W = o.sliding_window ?? 0, stride = o.mask_stride ?? dims.Tk, mask = o.attention_mask;
  const seg = o.segment_ids, sstride = o.segment_stride ?? dims.Tk;
  return (b: number, i: number, j: number): boolean => {
    const pos = qOff + i;
    if (j >= kvLen) return false;
    if (o.causal && j > pos) return false;
    if (W > 0 && j <= pos - W) return false;
    if (mask && mask[b * stride + j] === 0) return false;
    if (!seg) return true;
    const sk = seg[b * sstride + j];
    return sk !== 0 && sk === seg[b * sstride + pos];
  };
}

/**
 * The dropout factor Z(b, h, i, j) of the references: 0 or f32(1 / (1 - p)); null without dropout.
 */
function dropFactor(dims: AttentionDims, o: AttentionReferenceOptions) {
  const d = o.dropout;
  if (!d || d.p === 0) return null;
  const { H, Tq, Tk } = dims;
  const thr = dropoutThreshold(d.p), scale = Math.fround(1 / (1 - d.p)), seed = d.seed >>> 0;
  return (b: number, h: number, i: number, j: number): number => {
    const idx = (Math.imul(Math.imul(Math.imul(b, H) + h, Tq) + i, Tk) + j) >>> 0;
    return dropoutHash(seed, idx) >= thr ? scale : 0;
  };
}

/**
 * Reference forward: naive softmax(q kᵀ · scale + mask) v with f64 accumulation, and the
 * logsumexp of each row (`-FLT_MAX` for rows with no visible key, whose output is 0). With
 * `dropout`, P is scaled by the mask factor after normalisation (lse unchanged).
 */
export function attentionReference(
  out: WritableArray,
  lse: WritableArray,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dims: AttentionDims,
  opts: AttentionReferenceOptions = {},
): void {
  const { B, Tq, Tk, H, Hkv, D } = dims;
  const G = H / Hkv, scale = opts.scale ?? 1 / Math.sqrt(D), vis = visibility(dims, opts);
  const z = dropFactor(dims, opts);
  const s = new Float64Array(Tk), acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / G);
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * Tq + i) * H + h) * D;
        let mx = -Infinity;
        for (let j = 0; j < Tk; j++) {
          s[j] = -Infinity;
          if (!vis(b, i, j)) continue;
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          s[j] = dot * scale;
          mx = Math.max(mx, s[j]);
        }
        acc.fill(0);
        let sum = 0;
        for (let j = 0; j < Tk; j++) {
          if (s[j] === -Infinity) continue;
          const pj = Math.exp(s[j] - mx);
          sum += pj;
          const pz = z ? pj * z(b, h, i, j) : pj;
          const vo = ((b * Tk + j) * Hkv + hk) * D;
          for (let d = 0; d < D; d++) acc[d] += pz * v[vo + d];
        }
        for (let d = 0; d < D; d++) out[qo + d] = sum > 0 ? acc[d] / sum : 0;
        lse[(b * H + h) * Tq + i] = sum > 0 ? mx + Math.log(sum) : NEG;
      }
    }
  }
}

/**
 * Reference backward: recomputes P (and the dropout mask) in f64 from q and k (no saved state) and
 * returns the gradients of q, k, v for the output gradient `dout`. dk and dv rows past kv_len are 0.
 */
export function attentionBackwardReference(
  dq: WritableArray,
  dk: WritableArray,
  dv: WritableArray,
  dout: ArrayLike<number>,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dims: AttentionDims,
  opts: AttentionReferenceOptions = {},
): void {
  const { B, Tq, Tk, H, Hkv, D } = dims;
  const G = H / Hkv, scale = opts.scale ?? 1 / Math.sqrt(D), vis = visibility(dims, opts);
  const z = dropFactor(dims, opts);
  const dk64 = new Float64Array(B * Tk * Hkv * D), dv64 = new Float64Array(B * Tk * Hkv * D);
  const P = new Float64Array(Tk), dP = new Float64Array(Tk), dqr = new Float64Array(D);
  const Z = new Float64Array(Tk).fill(1);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / G);
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * Tq + i) * H + h) * D;
        let mx = -Infinity;
        for (let j = 0; j < Tk; j++) {
          P[j] = -Infinity;
          if (!vis(b, i, j)) continue;
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          let dot = 0, dp = 0;
          for (let d = 0; d < D; d++) {
            dot += q[qo + d] * k[ko + d];
            dp += dout[qo + d] * v[ko + d];
          }
          P[j] = dot * scale;
          dP[j] = dp;
          mx = Math.max(mx, P[j]);
        }
        let sum = 0;
        for (let j = 0; j < Tk; j++) if (P[j] !== -Infinity) sum += Math.exp(P[j] - mx);
        let Di = 0;
        for (let j = 0; j < Tk; j++) {
          P[j] = P[j] === -Infinity ? 0 : Math.exp(P[j] - mx) / sum;
          if (z) Z[j] = z(b, h, i, j);
          // with dropout, d out / d P_j = Z_j dout · v_j, and D_i = Σ_j P_j Z_j dout · v_j = dout · out
          Di += P[j] * (Z[j] * dP[j]);
        }
        dqr.fill(0);
        for (let j = 0; j < Tk; j++) {
          if (P[j] === 0) continue;
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          const ds = P[j] * (Z[j] * dP[j] - Di) * scale, pz = P[j] * Z[j];
          for (let d = 0; d < D; d++) {
            dqr[d] += ds * k[ko + d];
            dk64[ko + d] += ds * q[qo + d];
            dv64[ko + d] += pz * dout[qo + d];
          }
        }
        for (let d = 0; d < D; d++) dq[qo + d] = dqr[d];
      }
    }
  }
  for (let n = 0; n < dk64.length; n++) {
    dk[n] = dk64[n];
    dv[n] = dv64[n];
  }
}

interface Resolved {
  dims: AttentionDims;
  kvLen: number;
  qOffset: number;
  window: number;
  scale: number;
  mask: Tensor | null;
  maskStride: number;
  /** Segment ids `[B, segStride]` (i32), or null. */
  seg: Tensor | null;
  segStride: number;
  /** Dropout on the probabilities (p > 0), else null. */
  drop: AttentionDropout | null;
}

function resolve(where: string, q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Resolved {
  const label = `${OP}${where}`;
  expectSameBackend(label, q, k, v);
  for (const [n, t] of [["q", q], ["k", k], ["v", v]] as const) {
    expectDtype(label, n, t, "f32");
    if (t.rank !== 4) {
      throw new TypeError(`Cannot run ${label}: ${n} must be (B, T, heads, D), got ${shapeText(t.shape)}`);
    }
  }
  const [B, Tq, H, D] = q.shape;
  const [, Tk, Hkv] = k.shape;
  expectShape(label, "k", k, [B, -1, -1, D]);
  expectShape(label, "v", v, k.shape);
  if (Hkv === 0 || H % Hkv) {
    throw new TypeError(`Cannot run ${label}: query heads ${H} are not a multiple of kv heads ${Hkv}`);
  }
  if (q.backend.name === "webgpu" && (D > 256 || D < 1)) {
    throw new RangeError(`Cannot run ${label}: head dim must be in [1, 256] on webgpu: ${D}`);
  }
  const kvLen = o.kv_len ?? Tk;
  if (!Number.isInteger(kvLen) || kvLen < 0 || kvLen > Tk) {
    throw new RangeError(`Cannot run ${label}: kv_len must be an integer in [0, ${Tk}]: ${kvLen}`);
  }
  const qOffset = o.q_offset ?? kvLen - Tq;
  if (!Number.isInteger(qOffset) || Math.abs(qOffset) >= 2 ** 30) {
    throw new RangeError(`Cannot run ${label}: q_offset must be an integer: ${qOffset}`);
  }
  const window = o.sliding_window ?? 0;
  if (!Number.isInteger(window) || window < 0 || window >= 2 ** 31) {
    throw new RangeError(`Cannot run ${label}: sliding_window must be a positive integer: ${window}`);
  }
  const maxWg = q.backend.name === "webgpu"
    ? q.backend.device.info.limits.maxComputeInvocationsPerWorkgroup
    : 1024;
  const kp = kernelProblems(o, maxWg);
  if (kp.length) throw new RangeError(`Cannot run ${label}: ${kp.join("; ")}`);
  const scale = o.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new RangeError(`Cannot run ${label}: scale must be finite: ${scale}`);
  const drop = o.dropout ?? null;
  if (drop && !(drop.p >= 0 && drop.p < 1)) {
    throw new RangeError(`Cannot run ${label}: dropout.p must be in [0, 1): ${drop.p}`);
  }
  if (drop && !Number.isFinite(drop.seed)) {
    throw new RangeError(`Cannot run ${label}: dropout.seed must be a finite number: ${drop.seed}`);
  }
  if (drop && drop.p > 0 && o.path === "split_k") {
    throw new RangeError(`Cannot run ${label}: the split_k decode path has no dropout; use path "flash"`);
  }
  const mask = o.attention_mask ?? null;
  if (mask) {
    expectSameBackend(label, q, mask);
    expectDtype(label, "attention_mask", mask, "f32", "i32", "u32");
    if (mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1] < kvLen) {
      throw new TypeError(
        `Cannot run ${label}: attention_mask has shape ${
          shapeText(mask.shape)
        }, expected [${B}, >= ${kvLen}]`,
      );
    }
  }
  const seg = o.segment_ids ?? null;
  if (seg) {
    expectSameBackend(label, q, seg);
    expectDtype(label, "segment_ids", seg, "i32");
    const need = Math.max(kvLen, qOffset + Tq);
    if (seg.rank !== 2 || seg.shape[0] !== B || seg.shape[1] < need) {
      throw new TypeError(
        `Cannot run ${label}: segment_ids has shape ${shapeText(seg.shape)}, expected [${B}, >= ${need}]`,
      );
    }
    if (qOffset < 0) {
      throw new RangeError(`Cannot run ${label}: segment_ids need q_offset >= 0: ${qOffset}`);
    }
  }
  return {
    dims: { B, Tq, Tk, H, Hkv, D },
    kvLen,
    qOffset,
    window,
    scale,
    mask,
    maskStride: mask ? mask.shape[1] : Tk,
    seg,
    segStride: seg ? seg.shape[1] : Tk,
    drop: drop && drop.p > 0 ? { p: drop.p, seed: drop.seed >>> 0 } : null,
  };
}

function refOpts(r: Resolved, o: AttentionOptions): AttentionReferenceOptions {
  return {
    causal: o.causal ?? false,
    q_offset: r.qOffset,
    attention_mask: r.mask ? r.mask.data : null,
    mask_stride: r.maskStride,
    segment_ids: r.seg ? r.seg.data : null,
    segment_stride: r.segStride,
    sliding_window: r.window,
    scale: Math.fround(r.scale),
    kv_len: r.kvLen,
    dropout: r.drop,
  };
}

function params(r: Resolved, o: AttentionOptions, nsplit = 0): Record<string, number> {
  const { B, Tq, Tk, H, Hkv } = r.dims;
  return {
    B,
    Tq,
    Tk,
    H,
    Hkv,
    G: H / Hkv,
    kv_len: r.kvLen,
    q_offset: r.qOffset,
    causal: o.causal ? 1 : 0,
    window: r.window,
    mask_stride: r.maskStride,
    nsplit,
    scale: r.scale,
    drop_seed: r.drop ? r.drop.seed : 0,
    drop_thr: r.drop ? dropoutThreshold(r.drop.p) : 0,
    drop_scale: r.drop ? 1 / (1 - r.drop.p) : 1,
    seg_stride: r.segStride,
  };
}

const maskKind = (r: Resolved): MaskKind => (r.mask ? r.mask.dtype as MaskKind : "none");
/** Memo key of a tile kernel (`_attention_wgsl.ts`): head dim, mask kind, dropout, segments. */
const tileKey = (r: Resolved): TileKey => `${r.dims.D}|${maskKind(r)}|${r.drop ? 1 : 0}|${r.seg ? 1 : 0}`;

/** The trailing bindings of a kernel variant: the key mask, then the segment ids (when given). */
const maskTensors = (r: Resolved): Tensor[] => [...(r.mask ? [r.mask] : []), ...(r.seg ? [r.seg] : [])];

function dispatch(k: Built, tensors: Tensor[], r: Resolved, p: Record<string, number>, grid: number[]) {
  launch(k.spec, k.code, [...tensors, ...maskTensors(r)], p, grid as [number, number, number]);
}

export { attentionConfigFor, kernelConfigKey, setAttentionConfig, setDecodeLayout };
export type { AttentionConfig, AttentionKernelConfig, AttentionTiming, DecodeLayout };

/** The configuration of one kernel: the options' override (checked by `resolve`), else the adapter's. */
function kernelConfig(q: Tensor, o: AttentionOptions, which: keyof AttentionConfig): AttentionKernelConfig {
  return o.kernels?.[which] ?? attentionConfigFor(q.backend.device)[which];
}

/** Problems of `opts.kernels` (every entry, whatever path runs). */
function kernelProblems(o: AttentionOptions, maxWg: number): string[] {
  const out: string[] = [];
  for (const [which, c] of Object.entries(o.kernels ?? {})) {
    if (!["forward", "dq", "dkv"].includes(which)) {
      out.push(`kernels.${which}: unknown kernel (forward, dq, dkv)`);
      continue;
    }
    if (!c || c.family === "tile") continue;
    if (!["reg", "tex"].includes(c.family)) {
      out.push(`kernels.${which}: family must be tile, reg or tex: ${c.family}`);
      continue;
    }
    for (const [n, v, hi] of [["rows", c.rows, 16], ["bk", c.bk, 16], ["wg", c.wg, maxWg]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > hi) {
        out.push(`kernels.${which}: ${n} must be an integer in [1, ${hi}]: ${v}`);
      }
    }
  }
  return out;
}

/** Options of {@linkcode autotuneAttention}. */
export interface AttentionAutotuneOptions {
  /** Timed repetitions per candidate after a warm-up (the minimum counts). Default 2. */
  reps?: number;
  /** Problem timed: sequence length (default 256; B = 1, H = 8, D = 64, causal). */
  T?: number;
  /** Save the result to the disk cache (default true). */
  save?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/**
 * Pick the fastest kernel configuration of the forward, dQ and dK/dV kernels for this adapter by
 * timing the candidates (a minute or so on a CPU rasterizer, compiles dominate). The result is used
 * by every later attention call on this GPU and cached on disk for the adapter.
 *
 * @example
 * ```ts ignore
 * const be = await createBackend("webgpu");
 * const { config } = await autotuneAttention(be, { log: console.error });
 * ```
 */
export async function autotuneAttention(
  be: Backend,
  opts: AttentionAutotuneOptions = {},
): Promise<{ config: AttentionConfig; timings: AttentionTiming[] }> {
  if (be.name !== "webgpu") throw new TypeError(`Cannot autotune ${OP}: backend ${be.name} is not webgpu`);
  const T = opts.T ?? 256, shape = [1, T, 8, 64], reps = opts.reps ?? 2;
  const n = T * 8 * 64;
  const rnd = (seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed));
  const [q, k, v, dout] = [1, 2, 3, 4].map((s) => be.fromArray(rnd(s), shape));
  const out = be.empty(shape), lse = be.empty([1, 8, T]);
  const dq = be.empty(shape), dk = be.empty(shape), dv = be.empty(shape);
  attentionForward(out, lse, q, k, v, { causal: true });
  try {
    return await tuneAttention(be.device, async (which, c) => {
      const o: AttentionOptions = { causal: true, kernels: { [which]: c } };
      const run = () =>
        which === "forward"
          ? attentionForward(out, lse, q, k, v, o)
          : attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, o);
      run();
      await be.sync();
      let best = Infinity;
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        run();
        await be.sync();
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    }, opts);
  } finally {
    for (const t of [q, k, v, dout, out, lse, dq, dk, dv]) t.dispose();
  }
}

type RegCfg = Exclude<AttentionKernelConfig, { family: "tile" }>;

/**
 * Rows per invocation of a register kernel for head dim D: the configured count up to D = 64,
 * scaled down above it so the registers per invocation (rows x D) stay bounded.
 */
export function regRows(rows: number, D: number): number {
  return Math.max(1, Math.min(rows, Math.floor(rows * 64 / D)));
}

/**
 * Dispatch a register-blocked kernel with one invocation per (row block of `T` rows, head of
 * `heads`, batch). `staged` tensors `(B, T, heads, D)` are read from textures (tex family, when
 * they fit the texture limits) or bound as buffers after the `plain` ones; the mask and segment ids come last.
 */
function dispatchReg(
  build: (key: string) => Built,
  cfg: RegCfg,
  plain: Tensor[],
  staged: Tensor[],
  r: Resolved,
  p: Record<string, number>,
  T: number,
  heads: number,
): void {
  const gpu = plain[0].backend.device;
  const useTex = cfg.family === "tex" && staged.every((t) => fitsTexture(gpu, t));
  const rows = regRows(cfg.rows, r.dims.D);
  const kern = build(
    regKey({
      D: r.dims.D,
      mask: maskKind(r),
      rows,
      bk: cfg.bk,
      wg: cfg.wg,
      tex: useTex,
      drop: r.drop !== null,
      seg: r.seg !== null,
    }),
  );
  const texs = useTex ? staged.map((t) => stage(gpu, t)) : [];
  const bindings: (BufferRange | GPUTextureView)[] = [
    ...plain.map((t) => range(t)),
    ...(useTex ? texs.map((t) => t.view) : staged.map((t) => range(t))),
    ...maskTensors(r).map((t) => range(t)),
  ];
  for (const [i, b] of bindings.entries()) {
    if ("size" in b && b.size > gpu.maxBinding) {
      throw new RangeError(
        `Cannot run ${kern.spec.label}: binding ${
          kern.spec.bindings[i].name
        } is ${b.size} bytes, over the device's maxStorageBufferBindingSize ${gpu.maxBinding}`,
      );
    }
  }
  const n = r.dims.B * heads * Math.ceil(T / rows);
  const pipe = gpu.pipeline(kern.spec.label, kern.code);
  gpu.dispatch(pipe, bindings, packParams(ATTN_PARAMS, p), gridFor(n, cfg.wg));
  for (const t of texs) releaseTexture(gpu, t);
}

/**
 * Launcher: attention forward into `out` `(B, Tq, H, D)` and `lse` `(B, H, Tq)`.
 * @throws {TypeError} on shape, dtype or backend mismatches (before dispatch)
 * @throws {RangeError} on bad kv_len, q_offset, sliding_window, scale, or D > 256 on webgpu
 */
export function attentionForward(
  out: Tensor,
  lse: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: AttentionOptions = {},
): void {
  const r = resolve(".forward", q, k, v, opts);
  const { B, Tq, H, Hkv, D } = r.dims;
  expectSameBackend(`${OP}.forward`, q, out, lse);
  expectShape(`${OP}.forward`, "out", out, q.shape);
  expectShape(`${OP}.forward`, "lse", lse, [B, H, Tq]);
  expectDtype(`${OP}.forward`, "out", out, "f32");
  expectDtype(`${OP}.forward`, "lse", lse, "f32");
  if (out.backend.name === "cpu") {
    return attentionReference(out.data, lse.data, q.data, k.data, v.data, r.dims, refOpts(r, opts));
  }
  if (out.size === 0) return;
  const G = H / Hkv, R = G * Tq, m = maskKind(r);
  const path = opts.path ?? "auto";
  const split = path === "split_k" || (path === "auto" && R <= splitRows(D) && !r.drop);
  if (split && R > splitRows(D)) {
    throw new RangeError(
      `Cannot run ${OP}.forward: split_k holds at most ${
        splitRows(D)
      } rows per kv head for D ${D}: G * Tq = ${R}`,
    );
  }
  if (!split) {
    const cfg = kernelConfig(q, opts, "forward");
    if (cfg.family !== "tile") {
      return dispatchReg(regForward, cfg, [out, lse, q], [k, v], r, params(r, opts), Tq, H);
    }
    const kern = flashForward(tileKey(r));
    return dispatch(kern, [out, lse, q, k, v], r, params(r, opts), [Math.ceil(Tq / WG), H, B]);
  }
  const be = q.backend, nsplit = Math.max(1, Math.ceil(r.kvLen / WG));
  const pacc = be.empty([B, Hkv, nsplit, R, D]), pml = be.empty([B, Hkv, nsplit, R, 2]);
  const p = params(r, opts, nsplit);
  const key = `${D}|${m}|${R}|${r.seg ? 1 : 0}` as const, rows = decodeByInvocation(be.device);
  const grid = rows ? gridFor(B * Hkv * nsplit * R, WG) : [nsplit, Hkv, B];
  dispatch((rows ? splitForwardRows : splitForward)(key), [pacc, pml, q, k, v], r, p, grid);
  const c = combine(`${D}|${R}`);
  launch(c.spec, c.code, [out, lse, pacc, pml], p, gridFor(B * Tq * H * D, WG));
  for (const t of [pacc, pml]) t.dispose();
}

/**
 * Launcher: attention backward. Writes dq `(B, Tq, H, D)`, dk and dv `(B, Tk, Hkv, D)` (rows past
 * kv_len are 0) from `dout`, the inputs, and the forward's `out` and `lse` (the cpu reference
 * recomputes instead of reading them).
 * @throws {TypeError} on shape, dtype or backend mismatches (before dispatch)
 */
export function attentionBackward(
  dq: Tensor,
  dk: Tensor,
  dv: Tensor,
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  opts: AttentionOptions = {},
): void {
  const r = resolve(".backward", q, k, v, opts);
  const { B, Tq, Tk, H, Hkv, D } = r.dims;
  const label = `${OP}.backward`;
  expectSameBackend(label, q, dq, dk, dv, dout, out, lse);
  for (const [n, t, s] of [["dq", dq, q.shape], ["dout", dout, q.shape], ["out", out, q.shape]] as const) {
    expectShape(label, n, t, s);
    expectDtype(label, n, t, "f32");
  }
  expectShape(label, "dk", dk, k.shape);
  expectShape(label, "dv", dv, k.shape);
  expectShape(label, "lse", lse, [B, H, Tq]);
  if (q.backend.name === "cpu") {
    const [ro, x] = [refOpts(r, opts), [dout, q, k, v].map((t) => t.data)];
    return attentionBackwardReference(dq.data, dk.data, dv.data, x[0], x[1], x[2], x[3], r.dims, ro);
  }
  const p = params(r, opts);
  const di = q.backend.empty([B, H, Tq]);
  const cq = kernelConfig(q, opts, "dq"), ckv = kernelConfig(q, opts, "dkv");
  if (cq.family === "tile") {
    const rd = rowDot(D);
    launch(rd.spec, rd.code, [di, dout, out], p, gridFor(B * Tq * H, WG));
    dispatch(backwardQ(tileKey(r)), [dq, dout, q, k, v, lse, di], r, p, [Math.ceil(Tq / WG), H, B]);
  } else {
    // also writes di (dout · out per row) for the dK/dV kernel
    dispatchReg(regBackwardQ, cq, [dq, di, dout, out, q, lse], [k, v], r, p, Tq, H);
  }
  if (ckv.family === "tile") {
    dispatch(backwardKV(tileKey(r)), [dk, dv, dout, q, k, v, lse, di], r, p, [Math.ceil(Tk / WG), Hkv, B]);
  } else {
    dispatchReg(regBackwardKV, ckv, [dk, dv, k, v, lse, di], [q, dout], r, p, Tk, Hkv);
  }
  di.dispose();
}

/**
 * Scaled dot-product attention (differentiable in q, k, v): `softmax(q kᵀ · scale + mask) v` with
 * causal, sliding-window and key-padding masks, segments (packed rows), grouped-query heads and a
 * KV cache (`kv_len`). The logsumexp and views of `attention_mask` and `segment_ids` are saved for
 * backward (the caller's tensors may be disposed once this returns).
 *
 * @param q queries `(B, Tq, H, D)`
 * @param k keys `(B, Tk, Hkv, D)`; v values, same shape
 * @returns out `(B, Tq, H, D)`
 * @throws {TypeError} on shape, dtype or backend mismatches; {RangeError} on bad options
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * import { attention } from "./attention.ts";
 * const cpu = await createBackend("cpu");
 * // B=1, T=2, H=1, D=1, causal: query 0 sees only key 0, so out[0] = v[0]
 * const q = cpu.fromArray([1, 1], [1, 2, 1, 1]);
 * const kv = cpu.fromArray([3, 5], [1, 2, 1, 1]);
 * const out = await attention(q, kv, kv, { causal: true }).toArray();
 * if (out[0] !== 3 || !(out[1] > 3 && out[1] < 5)) throw new Error("attention");
 * ```
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const be = q.backend;
  const [B, Tq, H] = q.shape;
  const out = be.empty(q.shape);
  const lse = be.empty([B ?? 0, H ?? 0, Tq ?? 0]);
  try {
    attentionForward(out, lse, q, k, v, opts);
  } catch (e) {
    out.dispose();
    lse.dispose();
    throw e;
  }
  if (!needsGrad(q, k, v)) {
    lse.dispose();
    return out;
  }
  // The backward reads the mask and segment ids: the node holds views of them (freed after it),
  // so the caller may dispose its tensors once the forward has run.
  const hold = (t: Tensor | null | undefined) => (t ? t.reshape(t.shape) : null);
  const mask = hold(opts.attention_mask), seg = hold(opts.segment_ids);
  const bo: AttentionOptions = { ...opts, attention_mask: mask, segment_ids: seg };
  return record(out, OP, [q, k, v], (g) => {
    const dq = be.empty(q.shape), dk = be.empty(k.shape), dv = be.empty(v.shape);
    attentionBackward(dq, dk, dv, g, q, k, v, out, lse, bo);
    return [dq, dk, dv];
  }, [lse, ...[mask, seg].filter((t) => t !== null)]);
}
