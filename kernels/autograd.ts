/**
 * Reverse-mode autograd over coarse fused ops.
 *
 * A differentiable op computes its output with its forward launcher, then calls {@linkcode record}
 * with the inputs and a backward closure. {@linkcode backward} walks the graph from the loss in
 * reverse topological order, accumulates gradients of leaves that `requiresGrad` into `.grad`
 * (adding across micro-batches), and frees every activation as soon as the op that produced it has
 * run its backward: a consumer's backward always runs before its producer's, so by then nobody
 * needs it. Set `retain = true` (via {@linkcode retain}) on an intermediate you still want to read.
 *
 * {@linkcode checkpoint} is a recompute scope: its forward keeps no activations, and its backward
 * runs the function again with grad enabled (gradient checkpointing).
 *
 * @module
 */
import type { Tensor } from "./tensor.ts";
import { accumulate } from "./elementwise.ts";

/** The op that produced a tensor, as recorded on the tape. */
export interface GradNode {
  /** Op name, for error messages. */
  op: string;
  /** Inputs the gradient flows to (a null entry gets no gradient). */
  inputs: (Tensor | null)[];
  /** Gradients with respect to `inputs` (new tensors the tape owns), given the output's gradient. */
  backward: (gradOut: Tensor) => (Tensor | null)[];
  /** Extra tensors the op saved for backward (not inputs or outputs); disposed after backward. */
  saved: Tensor[];
}

let enabled = true;
const retained = new WeakSet<Tensor>();

/** True unless inside {@linkcode noGrad}. */
export function isGradEnabled(): boolean {
  return enabled;
}

/**
 * Run `fn` without recording anything on the tape (inference, optimizer updates).
 *
 * @example
 * ```ts
 * import { noGrad, isGradEnabled } from "./autograd.ts";
 * noGrad(() => { if (isGradEnabled()) throw new Error("still recording"); });
 * ```
 */
export function noGrad<T>(fn: () => T): T {
  const prev = enabled;
  enabled = false;
  try {
    return fn();
  } finally {
    enabled = prev;
  }
}

/** True when an op over these inputs must record a node. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!enabled) return false;
  for (const t of inputs) if (t && (t.requiresGrad || t.node)) return true;
  return false;
}

/**
 * Attach a node to `out` when any input needs a gradient; otherwise dispose `saved` at once.
 * Returns `out`.
 */
export function record(
  out: Tensor,
  op: string,
  inputs: (Tensor | null)[],
  backward: (gradOut: Tensor) => (Tensor | null)[],
  saved: Tensor[] = [],
): Tensor {
  if (needsGrad(...inputs)) {
    out.node = { op, inputs, backward, saved };
  } else {
    for (const s of saved) s.dispose();
  }
  return out;
}

/** Keep an intermediate tensor alive through `backward()` (it is disposed otherwise). */
export function retain(t: Tensor): Tensor {
  retained.add(t);
  return t;
}

/**
 * Dispose `t` when it is not part of a graph (no node, not a leaf that wants a gradient): lets
 * model code free activations eagerly under `noGrad` without breaking training.
 */
export function release(t: Tensor): void {
  if (!t.node && !t.requiresGrad && !retained.has(t)) t.dispose();
}

/**
 * Back-propagate from `root` (a scalar loss unless `gradRoot` is given). Leaf gradients are added
 * into `.grad`; activations of the graph are freed as soon as they are no longer needed; the
 * graph is consumed (a second `backward` over it needs a new forward).
 * @throws {TypeError} when `root` is not part of a graph or `gradRoot` has another shape
 */
export function backward(root: Tensor, gradRoot?: Tensor): void {
  if (!root.node) {
    throw new TypeError(
      `Cannot run backward from ${root}: it was not computed from a tensor that requires grad`,
    );
  }
  if (gradRoot && gradRoot.shape.join() !== root.shape.join()) {
    throw new TypeError(
      `Cannot run backward: gradient shape [${gradRoot.shape}] differs from [${root.shape}]`,
    );
  }
  // Topological order (iterative DFS: graphs of deep models overflow a recursive one).
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const ins = t.node?.inputs ?? [];
    if (i < ins.length) {
      top[1]++;
      const c = ins[i];
      if (c && c.node && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, gradRoot ?? root.backend.full(root.shape, 1));
  const prev = enabled;
  enabled = false; // backward kernels are not themselves recorded
  try {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const node = t.node!;
      const g = grads.get(t);
      grads.delete(t);
      if (g) {
        const gin = node.backward(g);
        if (g !== gradRoot) g.dispose();
        node.inputs.forEach((inp, i) => {
          const gi = gin[i];
          if (!gi) return;
          if (!inp) return gi.dispose();
          if (gi.shape.join() !== inp.shape.join()) {
            throw new TypeError(
              `Cannot run backward of ${node.op}: gradient shape [${gi.shape}] != input shape [${inp.shape}]`,
            );
          }
          if (inp.node) {
            const have = grads.get(inp);
            if (have) {
              accumulate(have, gi);
              gi.dispose();
            } else grads.set(inp, gi);
          } else if (inp.requiresGrad) {
            if (inp.grad) {
              accumulate(inp.grad, gi);
              gi.dispose();
            } else {
              gi.name = inp.name ? `${inp.name}.grad` : "";
              inp.grad = gi;
            }
          } else gi.dispose();
        });
      }
      for (const s of node.saved) s.dispose();
      t.node = null;
      if (t !== root && !retained.has(t)) t.dispose();
    }
  } finally {
    enabled = prev;
    for (const g of grads.values()) g.dispose();
  }
}

/**
 * Gradient checkpointing: run `fn(...inputs)` keeping no activations; backward recomputes it.
 * Parameters used inside `fn` still receive their gradients.
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[]): Tensor {
  if (!enabled) return fn(...inputs);
  const out = noGrad(() => fn(...inputs));
  // Always a node: parameters used inside fn need their gradients even when the inputs do not.
  out.node = {
    op: "checkpoint",
    inputs,
    saved: [],
    backward: (g) => {
      const xs = inputs.map((x) => {
        const v = x.reshape(x.shape);
        v.requiresGrad = true;
        return v;
      });
      const prev = enabled;
      enabled = true;
      let y: Tensor;
      try {
        y = fn(...xs);
      } finally {
        enabled = prev;
      }
      const gy = g.reshape(g.shape); // backward() disposes its own gradRoot view, not the caller's
      if (y.node) backward(y, gy);
      gy.dispose();
      y.dispose();
      return xs.map((v) => {
        const gx = v.grad;
        v.grad = null;
        v.dispose();
        return gx;
      });
    },
  };
  return out;
}
