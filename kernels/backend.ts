/**
 * Backends: `webgpu` (WGSL kernels through {@linkcode Gpu}) and `cpu` (the plain TypeScript
 * references). Both share one op table: every op launcher in `kernels/` takes tensors and runs the
 * reference on cpu tensors and the WGSL kernel on webgpu tensors, so one test suite runs on both.
 *
 * @module
 */
import { Gpu, type GpuInfo, type GpuOptions, NoAdapterError } from "./gpu.ts";
import {
  type DType,
  dtypeBytes,
  type HostArray,
  hostArray,
  numel,
  shapeText,
  type Storage,
  Tensor,
} from "./tensor.ts";

/** Backend names accepted by {@linkcode createBackend}. */
export type BackendName = "webgpu" | "cpu" | "auto";

/** Options for {@linkcode createBackend}. */
export interface BackendOptions extends GpuOptions {
  /** Print the chosen adapter to stderr. */
  verbose?: boolean;
}

/**
 * A place where tensors live and ops run. Create with {@linkcode createBackend}.
 */
export class Backend {
  /** `"cpu"` or `"webgpu"`. */
  readonly name: "cpu" | "webgpu";
  /** The WebGPU device owner (webgpu only). */
  readonly gpu: Gpu | null;
  #destroyed = false;
  #live = 0;
  #peak = 0;

  /** @internal use createBackend() */
  constructor(name: "cpu" | "webgpu", gpu: Gpu | null) {
    this.name = name;
    this.gpu = gpu;
  }

  /** Human-readable adapter name (`"cpu (TypeScript reference)"` on cpu). */
  get adapter(): string {
    return this.gpu ? this.gpu.info.description : "cpu (TypeScript reference)";
  }

  /** Adapter facts and limits (webgpu), or null on cpu. */
  get info(): GpuInfo | null {
    return this.gpu?.info ?? null;
  }

  /** The WebGPU owner; throws on the cpu backend. */
  get device(): Gpu {
    if (!this.gpu) throw new TypeError("Cannot use the GPU from the cpu backend");
    return this.gpu;
  }

  /**
   * Bytes of tensor storage alive now (created and not yet disposed; webgpu counts each buffer's
   * pool size class). For memory measurements, with {@linkcode peakBytes}.
   */
  get liveBytes(): number {
    return this.#live;
  }

  /** The most {@linkcode liveBytes} seen since the backend was created or {@linkcode resetPeak} ran. */
  get peakBytes(): number {
    return this.#peak;
  }

  /** Start a new peak measurement from the bytes alive now. */
  resetPeak(): void {
    this.#peak = this.#live;
  }

  /** A tensor with unspecified contents (zeros on cpu). */
  empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const n = numel(shape);
    if (this.gpu) {
      const bytes = n * dtypeBytes(dtype);
      this.#checkBytes(bytes, shape);
      const buffer = this.gpu.acquire(Math.max(bytes, 4));
      return new Tensor(this, shape, dtype, this.#track({ buffer, refs: 1 }));
    }
    return new Tensor(this, shape, dtype, this.#track({ data: hostArray(dtype, n), refs: 1 }));
  }

  /** A tensor of zeros. */
  zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
    const t = this.empty(shape, dtype);
    if (this.gpu) this.gpu.clear(t.buffer, 0, Math.ceil(Math.max(t.bytes, 4) / 4) * 4);
    return t;
  }

  /** A tensor filled with one value. */
  full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
    const host = hostArray(dtype, numel(shape));
    host.fill(value);
    return this.fromArray(host, shape, dtype);
  }

  /**
   * A tensor holding a copy of `data` (converted to `dtype`).
   * @throws {TypeError} when `data.length` does not match the shape
   */
  fromArray(data: ArrayLike<number>, shape: readonly number[], dtype: DType = "f32"): Tensor {
    const n = numel(shape);
    if (data.length !== n) {
      throw new TypeError(
        `Cannot create a tensor of shape ${shapeText(shape)}: got ${data.length} values, need ${n}`,
      );
    }
    const host = hostArray(dtype, n);
    host.set(data as ArrayLike<number> & ArrayLike<bigint> as never);
    if (!this.gpu) return new Tensor(this, shape, dtype, this.#track({ data: host, refs: 1 }));
    const bytes = host.byteLength;
    this.#checkBytes(bytes, shape);
    const buffer = this.gpu.acquire(Math.max(bytes, 4), true);
    if (bytes > 0) this.gpu.write(buffer, host);
    return new Tensor(this, shape, dtype, this.#track({ buffer, refs: 1 }));
  }

  /**
   * Copy a tensor to the host.
   * @throws {RangeError} on webgpu, when a kernel recorded since the last readback met a bad input
   * (a token id or label outside the vocabulary: see `Gpu.read`); the cpu backend throws those in
   * the op itself
   */
  async read(t: Tensor): Promise<HostArray> {
    if (!this.gpu) return t.data.slice();
    const out = hostArray(t.dtype, t.size);
    if (t.size === 0) return out;
    const bytes = await this.gpu.read(t.buffer, 0, t.bytes);
    new Uint8Array(out.buffer).set(new Uint8Array(bytes));
    return out;
  }

  /** Start running every recorded kernel (no-op on cpu). */
  flush(): void {
    this.gpu?.flush();
  }

  /**
   * End a training step: start its kernels and wait for the previous step's (no-op on cpu), so one
   * step runs while the next is recorded.
   */
  async pace(): Promise<void> {
    await this.gpu?.pace();
  }

  /**
   * Wait for every recorded kernel to finish (no-op on cpu).
   * @throws {RangeError} on webgpu, as {@linkcode Backend.read} does, for a bad input met on the device
   */
  async sync(): Promise<void> {
    await this.gpu?.sync();
  }

  /** @internal called by Tensor.dispose when the last view goes */
  releaseStorage(s: Storage): void {
    this.#live -= storageBytes(s);
    if (s.buffer && this.gpu) this.gpu.release(s.buffer);
    s.buffer = undefined;
    s.data = undefined;
  }

  /**
   * Release the GPU device. It reads nothing back: a bad input met on the device that no read or
   * `sync()` has reported yet is dropped with it; `await sync()` first to surface it.
   */
  destroy(): void {
    this.#destroyed = true;
    this.gpu?.destroy();
  }

  /** True once {@linkcode Backend.destroy} ran: every later tensor is refused. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  #track(s: Storage): Storage {
    if (this.#destroyed) {
      throw new TypeError(
        `Cannot make a tensor: the ${this.name} backend was destroyed; create another with createBackend()`,
      );
    }
    this.#live += storageBytes(s);
    if (this.#live > this.#peak) this.#peak = this.#live;
    return s;
  }

  #checkBytes(bytes: number, shape: readonly number[]): void {
    const max = this.gpu!.info.limits.maxBufferSize;
    if (bytes > max) {
      throw new RangeError(
        `Cannot allocate a tensor of shape ${
          shapeText(shape)
        } (${bytes} bytes): over the device's maxBufferSize ${max}`,
      );
    }
  }
}

function storageBytes(s: Storage): number {
  return s.buffer ? s.buffer.size : s.data ? s.data.byteLength : 0;
}

/**
 * Create a backend. `"auto"` takes WebGPU when an adapter answers and falls back to `cpu`
 * (saying so on stderr); `"webgpu"` throws {@linkcode NoAdapterError} when there is none.
 *
 * @param name `"auto"` (the default), `"webgpu"` or `"cpu"` (the TypeScript references)
 * @param opts {@linkcode BackendOptions} (default none: the first adapter, `FLEDGE_ADAPTER` picks one)
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * const cpu = await createBackend("cpu");
 * const t = cpu.fromArray([1, 2, 3], [3]);
 * if ((await t.toArray())[2] !== 3) throw new Error("fromArray");
 * ```
 */
export async function createBackend(name: BackendName = "auto", opts: BackendOptions = {}): Promise<Backend> {
  if (name === "cpu") return new Backend("cpu", null);
  if (name !== "webgpu" && name !== "auto") {
    throw new RangeError(`Cannot create backend "${name}": expected "webgpu", "cpu" or "auto"`);
  }
  try {
    const gpu = await Gpu.create(opts);
    if (opts.verbose) console.error(`fledge: webgpu on ${gpu.info.description}`);
    return new Backend("webgpu", gpu);
  } catch (e) {
    if (name === "auto" && e instanceof NoAdapterError) {
      console.error(`fledge: ${e.message}; using the cpu backend`);
      return new Backend("cpu", null);
    }
    throw e;
  }
}

export { NoAdapterError };
export type { HostArray };
