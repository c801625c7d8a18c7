/**
 * `Tensor`: a shape, a dtype and storage on one backend (a typed array on `cpu`, a pooled
 * `GPUBuffer` on `webgpu`), plus the autograd fields (`requiresGrad`, `grad`, `node`).
 *
 * Views (`reshape`) share storage through a reference count; `dispose()` gives the storage back
 * when its last view is disposed. 4-bit weights live in `QuantizedTensor` (see `quant.ts`).
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { type GradNode, needsGrad, record } from "./autograd.ts";

/** Element types a tensor can hold. */
export type DType = "f32" | "f16" | "i32" | "u32";

/** Host array type for each dtype. */
export type HostArray = Float32Array | Float16Array | Int32Array | Uint32Array;

/**
 * A writable, indexable run of numbers: what the `*Reference` functions (the `cpu` backend's
 * TypeScript kernels) write their results into. `Float32Array`, `Float64Array` and `number[]` all
 * fit, so tests can run a reference in f64 against the f32 kernels.
 */
export type WritableArray = { [i: number]: number; length: number };

/** Bytes per element. */
export function dtypeBytes(dtype: DType): number {
  return dtype === "f16" ? 2 : 4;
}

/** A host array of `n` elements of `dtype`. */
export function hostArray(dtype: DType, n: number): HostArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(n);
    case "f16":
      return new Float16Array(n);
    case "i32":
      return new Int32Array(n);
    case "u32":
      return new Uint32Array(n);
  }
}

/** Product of a shape's dimensions. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Shared storage of a tensor and its views. */
export interface Storage {
  /** cpu: the elements. */
  data?: HostArray;
  /** webgpu: the buffer (its size may exceed the tensor's bytes: pool size classes). */
  buffer?: GPUBuffer;
  /** Live views sharing this storage; `dispose()` decrements it and releases the storage at 0. */
  refs: number;
}

/**
 * An n-dimensional array on a backend. Create tensors through a backend (`backend.fromArray`,
 * `backend.zeros`, `backend.empty`) and read them with `toArray()`.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * const cpu = await createBackend("cpu");
 * const t = cpu.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
 * const v = t.reshape([3, 2]);
 * if ((await v.toArray())[5] !== 6 || v.shape[0] !== 3) throw new Error("reshape");
 * ```
 */
export class Tensor {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly size: number;
  /** Autograd: accumulate a gradient into `grad` in `backward()`. */
  requiresGrad = false;
  /** Autograd: the accumulated gradient, same shape and backend. */
  grad: Tensor | null = null;
  /** Autograd: the op that produced this tensor (null for leaves and under `noGrad`). */
  node: GradNode | null = null;
  /** Optional name used in error messages (parameter names). */
  name = "";
  #disposed = false;

  /** @internal use the backend's factories */
  constructor(
    readonly backend: Backend,
    shape: readonly number[],
    readonly dtype: DType,
    readonly storage: Storage,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new TypeError(`Cannot create a tensor: bad shape [${shape.join(", ")}]`);
      }
    }
    this.shape = Object.freeze([...shape]);
    this.size = numel(shape);
  }

  /** Bytes of the tensor's elements. */
  get bytes(): number {
    return this.size * dtypeBytes(this.dtype);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** True once `dispose()` ran. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** cpu backend: the elements (live, not a copy). */
  get data(): HostArray {
    this.#check();
    if (!this.storage.data) {
      throw new TypeError(`Cannot access .data of a ${this.backend.name} tensor: use toArray()`);
    }
    return this.storage.data;
  }

  /** webgpu backend: the buffer. */
  get buffer(): GPUBuffer {
    this.#check();
    if (!this.storage.buffer) throw new TypeError(`Cannot access .buffer of a ${this.backend.name} tensor`);
    return this.storage.buffer;
  }

  /**
   * A view with another shape and the same elements (one dimension may be -1). Differentiable:
   * a view of a tensor on the autograd graph passes its gradient back reshaped.
   * @throws {TypeError} when the element counts differ
   */
  reshape(shape: readonly number[]): Tensor {
    this.#check();
    const s = [...shape];
    const hole = s.indexOf(-1);
    if (hole >= 0) s[hole] = this.size / numel(s.filter((_, i) => i !== hole));
    if (numel(s) !== this.size || !s.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new TypeError(
        `Cannot reshape [${this.shape.join(", ")}] to [${shape.join(", ")}]: element counts differ`,
      );
    }
    this.storage.refs++;
    const v = new Tensor(this.backend, s, this.dtype, this.storage);
    v.name = this.name;
    // A view of a graph tensor is itself on the graph: its gradient flows back reshaped.
    if (needsGrad(this)) {
      const from = this.shape;
      record(v, "reshape", [this], (g) => [g.reshape(from)]);
    }
    return v;
  }

  /** Copy the elements to the host (submits pending GPU work). */
  toArray(): Promise<HostArray> {
    this.#check();
    return this.backend.read(this);
  }

  /** Release the storage (when no other view holds it) and the gradient. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.node = null;
    if (--this.storage.refs === 0) this.backend.releaseStorage(this.storage);
  }

  /** `[2, 3]`-style shape text for messages. */
  toString(): string {
    return `Tensor(${this.name ? this.name + ", " : ""}[${
      this.shape.join(", ")
    }], ${this.dtype}, ${this.backend.name})`;
  }

  #check(): void {
    if (this.#disposed) throw new TypeError(`Cannot use ${this}: it was disposed`);
  }
}

/** `[a, b, c]` text of a shape for error messages. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Throw a TypeError naming the op when `t` does not have `shape` (a -1 entry matches anything).
 */
export function expectShape(op: string, what: string, t: Tensor, shape: readonly number[]): void {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d === -1 || d === t.shape[i]);
  if (!ok) {
    throw new TypeError(
      `Cannot run ${op}: ${what} has shape ${shapeText(t.shape)}, expected ${shapeText(shape)}`,
    );
  }
}

/** Throw a TypeError naming the op when `t` is not of `dtype`. */
export function expectDtype(op: string, what: string, t: Tensor, ...dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype)) {
    throw new TypeError(`Cannot run ${op}: ${what} has dtype ${t.dtype}, expected ${dtypes.join(" or ")}`);
  }
}

/** Throw a TypeError naming the op when tensors live on different backends. */
export function expectSameBackend(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.backend !== ts[0].backend) {
      throw new TypeError(
        `Cannot run ${op}: tensors live on different backends (${ts[0].backend.name} and ${t.backend.name})`,
      );
    }
  }
}
