/**
 * The one place that touches `navigator.gpu`: adapter and device acquisition, a buffer pool keyed by
 * size class, pipeline and bind-group caches, batching of every dispatch of a step into one compute
 * pass and one submit, a per-batch uniform arena for kernel parameters, and pooled readback.
 *
 * Ordering rules this file guarantees (so kernels never think about hazards):
 * - dispatches run in record order; a dispatch sees every earlier dispatch's writes;
 * - a buffer released while the batch is open may be handed out again for a *kernel output* in the
 *   same batch (later dispatches overwrite it after earlier ones read it), but never for an *upload*
 *   (`queue.writeBuffer` would run before the batch): uploads only get buffers freed before the last
 *   submit.
 *
 * Device checks (token ids and labels outside the vocabulary): a kernel cannot throw, and a readback
 * per op would cost a submit and a wait (~12 ms), so kernels that validate their input on the device
 * record the first failure of a batch in a 32-byte fault record ({@linkcode Gpu.fault},
 * {@linkcode WGSL_REPORT_FAULT}). The next readback (`read()`, so any `toArray()`) and `sync()` copy
 * the record in the same command buffer as their own work (no extra submit), clear it, and throw a
 * `RangeError` naming the op, the bad value, its position and the valid range. A fault is never
 * silently lost: every way to observe a result goes through `read()`; only `destroy()` (synchronous,
 * no readback) drops a record nobody read: `await sync()` first to surface it.
 *
 * @module
 */

/** Thrown when no WebGPU adapter can be had; `createBackend("auto")` falls back to cpu on it. */
export class NoAdapterError extends Error {
  /**
   * Creates the error, named `NoAdapterError` so callers can tell it from other failures.
   *
   * @param message what failed and the fix
   */
  constructor(message: string) {
    super(message);
    this.name = "NoAdapterError";
  }
}

/** Options for {@linkcode Gpu.create}. */
export interface GpuOptions {
  /** Pick the adapter whose description/vendor contains this text (case-insensitive). Env: `FLEDGE_ADAPTER`. */
  adapter?: string;
  /** Forwarded to `requestAdapter`. */
  powerPreference?: GPUPowerPreference;
}

/** A buffer binding: a whole buffer or a window of it. */
export interface BufferRange {
  /** The buffer bound. */
  buffer: GPUBuffer;
  /** Start of the window, in bytes. */
  offset: number;
  /** Length of the window, in bytes (a multiple of 4). */
  size: number;
}

/** A failed device check as the kernel recorded it: raw u32 words (reinterpret signed values with `| 0`). */
export interface DeviceFault {
  /** The offending value (a token id, a label). */
  value: number;
  /** Its position in the checked tensor (flat index). */
  index: number;
  /** The exclusive upper bound it failed (the vocabulary size). */
  bound: number;
  /** One more word for the message (e.g. ignore_index, or whether ids are signed). */
  extra: number;
}

/** Builds the `RangeError` message of a failed device check (the same text the cpu reference throws). */
export type FaultMessage = (fault: DeviceFault) => string;

/** Bytes of the fault record: claim flag, code, value, index, bound, extra, 2 spare words. */
const FAULT_BYTES = 32;

/**
 * WGSL for kernels that check their input on the device: `report_fault(code, value, index, bound,
 * extra)` keeps the first report of the batch in the storage binding named `fault`, declared as
 * `array<atomic<u32>>`, read_write, and bound to {@linkcode Gpu.fault}'s binding. Later reports
 * (other invocations, later dispatches) are dropped, so the earliest failing op is the one named.
 */
export const WGSL_REPORT_FAULT = `fn report_fault(code: u32, value: u32, index: u32, bound: u32, extra: u32) {
  if (atomicOr(&fault[0], 1u) == 0u) {
    atomicStore(&fault[1], code);
    atomicStore(&fault[2], value);
    atomicStore(&fault[3], index);
    atomicStore(&fault[4], bound);
    atomicStore(&fault[5], extra);
  }
}
`;

/** Printable facts about the adapter and the device limits we requested. */
export interface GpuInfo {
  /** Adapter description from the driver, else its vendor, else `"unknown adapter"`. */
  description: string;
  /** Adapter vendor as the driver reports it (may be empty). */
  vendor: string;
  /** Adapter architecture as the driver reports it (may be empty). */
  architecture: string;
  /** True for a software (fallback) adapter, e.g. a CPU rasteriser: expect it to be slow. */
  isFallbackAdapter: boolean;
  /** Optional features requested on the device: those of `shader-f16`, `subgroups`, `timestamp-query` the adapter has. */
  features: string[];
  /** Limits of the device as granted (fledge asks for the adapter's maxima of the sizes it uses); bytes or counts. */
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupSizeX: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBuffersPerShaderStage: number;
    minStorageBufferOffsetAlignment: number;
    minUniformBufferOffsetAlignment: number;
  };
}

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const ARENA_BYTES = 64 * 1024;

/** Round a byte size up to its pool size class: 4 classes per power of two (at most 25% waste). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 4) * 4);
  if (b <= 256) return Math.ceil(b / 16) * 16;
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 4;
  return Math.ceil(b / step) * step;
}

let nextId = 1;
const bufferIds = new WeakMap<GPUBuffer | GPUTextureView, number>();
function idOf(b: GPUBuffer | GPUTextureView): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, id = nextId++);
  return id;
}

/**
 * Owner of the WebGPU device and everything allocated on it. One per backend.
 *
 * @example
 * ```ts ignore
 * const gpu = await Gpu.create();
 * console.log(gpu.info.description);
 * ```
 */
export class Gpu {
  /** The adapter's facts and the limits the device was created with. */
  readonly info: GpuInfo;
  /** Optional features the device has (`shader-f16`, `subgroups`, `timestamp-query`). */
  readonly features: ReadonlySet<string>;
  /** Counters for benchmarks and tests. */
  readonly stats = {
    dispatches: 0,
    submits: 0,
    readbacks: 0,
    buffersCreated: 0,
    pipelines: 0,
    bytesAllocated: 0,
  };

  #free = new Map<number, GPUBuffer[]>(); // size class -> buffers free since before the last submit
  #pendingFree: GPUBuffer[] = []; // released in the open batch
  #pendingFreeByClass = new Map<number, GPUBuffer[]>();
  #lastStep: Promise<void> | null = null; // completion of the step pace() submitted last
  #pipelines = new Map<string, GPUComputePipeline>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #arenas: GPUBuffer[] = [];
  #arenaData = new Uint8Array(ARENA_BYTES);
  #arenaIndex = 0;
  #arenaOffset = 0;
  #staging: GPUBuffer[] = [];
  #errors: Promise<string | null>[] = [];
  #lost = false;
  #faultBuffer: GPUBuffer | null = null;
  #faultArmed = false; // a dispatch bound the fault record since the last copy of it
  #faultCodes = new Map<FaultMessage, number>();
  #faultMessages: FaultMessage[] = [];

  private constructor(readonly adapter: GPUAdapter, readonly device: GPUDevice, info: GpuInfo) {
    this.info = info;
    this.features = new Set(info.features);
    device.lost.then((l) => {
      this.#lost = true;
      if (l.reason !== "destroyed") console.error(`fledge: GPU device lost: ${l.message}`);
    });
  }

  /**
   * Acquire an adapter and a device with the adapter's real storage limits and the optional
   * features we use when offered.
   * @throws {NoAdapterError} when WebGPU or an adapter is missing (the message says how to get one)
   */
  static async create(opts: GpuOptions = {}): Promise<Gpu> {
    if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
      throw new NoAdapterError(
        'Cannot use WebGPU: navigator.gpu is missing in this runtime; run with Deno 2 (`deno run -A`), or use createBackend("cpu")',
      );
    }
    quietRuntimeDir();
    const want = (opts.adapter ?? Deno.env.get("FLEDGE_ADAPTER") ?? "").toLowerCase();
    const candidates: GPUAdapter[] = [];
    for (const pref of [opts.powerPreference, "high-performance", "low-power"] as const) {
      const a = await navigator.gpu.requestAdapter(pref ? { powerPreference: pref } : {});
      if (a && !candidates.some((c) => c.info.description === a.info.description)) candidates.push(a);
    }
    const adapter = want
      ? candidates.find((a) => `${a.info.description} ${a.info.vendor}`.toLowerCase().includes(want))
      : candidates[0];
    if (!adapter) {
      const seen = candidates.map((a) => a.info.description || a.info.vendor).join(", ") || "none";
      throw new NoAdapterError(
        want
          ? `Cannot find a WebGPU adapter matching FLEDGE_ADAPTER=${want}: available: ${seen}`
          : 'Cannot find a WebGPU adapter: no GPU driver answered; install a Vulkan driver (Debian: `apt-get install mesa-vulkan-drivers`) or use createBackend("cpu")',
      );
    }
    const features: GPUFeatureName[] = [];
    for (const f of ["shader-f16", "subgroups", "timestamp-query"] as GPUFeatureName[]) {
      if (adapter.features.has(f)) features.push(f);
    }
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      },
    });
    const dl = device.limits;
    const info: GpuInfo = {
      description: adapter.info.description || adapter.info.vendor || "unknown adapter",
      vendor: adapter.info.vendor,
      architecture: adapter.info.architecture,
      isFallbackAdapter:
        (adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
      features,
      limits: {
        maxStorageBufferBindingSize: dl.maxStorageBufferBindingSize,
        maxBufferSize: dl.maxBufferSize,
        maxComputeWorkgroupStorageSize: dl.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: dl.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: dl.maxComputeWorkgroupSizeX,
        maxComputeWorkgroupsPerDimension: dl.maxComputeWorkgroupsPerDimension,
        maxStorageBuffersPerShaderStage: dl.maxStorageBuffersPerShaderStage,
        minStorageBufferOffsetAlignment: dl.minStorageBufferOffsetAlignment,
        minUniformBufferOffsetAlignment: dl.minUniformBufferOffsetAlignment,
      },
    };
    return new Gpu(adapter, device, info);
  }

  /** Largest byte size one storage binding may cover. */
  get maxBinding(): number {
    return this.info.limits.maxStorageBufferBindingSize;
  }

  /**
   * A storage buffer of at least `bytes` from the pool.
   * @param forUpload true when the caller will `write()` into it before the next submit
   * @throws {RangeError} when `bytes` exceeds the device's maxBufferSize
   */
  acquire(bytes: number, forUpload = false): GPUBuffer {
    const cls = sizeClass(bytes);
    if (cls > this.info.limits.maxBufferSize) {
      throw new RangeError(
        `Cannot allocate a GPU buffer of ${bytes} bytes: over the device's maxBufferSize ${this.info.limits.maxBufferSize}`,
      );
    }
    const free = this.#free.get(cls);
    if (free?.length) return free.pop()!;
    if (!forUpload) {
      const pend = this.#pendingFreeByClass.get(cls);
      if (pend?.length) {
        const b = pend.pop()!;
        this.#pendingFree.splice(this.#pendingFree.indexOf(b), 1);
        return b;
      }
    }
    this.stats.buffersCreated++;
    this.stats.bytesAllocated += cls;
    return this.device.createBuffer({ size: cls, usage: STORAGE_USAGE });
  }

  /**
   * What a kernel needs to report a failed input check on the device: the fault record's binding
   * and the code of `message` (a kernel param; codes are per device, cached by the function).
   * Binding the record marks the batch, so the next `read()`/`sync()` copies it in its own submit;
   * a batch that binds no record copies nothing.
   */
  fault(message: FaultMessage): { binding: BufferRange; code: number } {
    let code = this.#faultCodes.get(message);
    if (code === undefined) {
      code = this.#faultMessages.push(message);
      this.#faultCodes.set(message, code);
    }
    // Created zeroed; cleared after every copy of it.
    this.#faultBuffer ??= this.device.createBuffer({ size: FAULT_BYTES, usage: STORAGE_USAGE });
    this.#faultArmed = true;
    return { binding: { buffer: this.#faultBuffer, offset: 0, size: FAULT_BYTES }, code };
  }

  /** Give a buffer back to the pool (reusable for kernel outputs now, for uploads after the next submit). */
  release(buffer: GPUBuffer): void {
    this.#pendingFree.push(buffer);
    const cls = buffer.size;
    let list = this.#pendingFreeByClass.get(cls);
    if (!list) this.#pendingFreeByClass.set(cls, list = []);
    list.push(buffer);
  }

  /** Destroy every pooled (free) buffer, e.g. between benchmark cases. */
  trim(): void {
    for (const list of this.#free.values()) for (const b of list) b.destroy();
    this.#free.clear();
  }

  /** Upload bytes into a buffer (ordered before any work recorded after the next submit). */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buffer, byteOffset, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(buffer, byteOffset, padded);
    }
  }

  /**
   * The compute pipeline for a WGSL source (cached by source + constants). Compilation errors are
   * collected and rethrown, with `label`, at the next `sync()`/`read()`.
   */
  pipeline(label: string, code: string, constants?: Record<string, number>): GPUComputePipeline {
    const key = constants ? `${code}\u0000${JSON.stringify(constants)}` : code;
    let p = this.#pipelines.get(key);
    if (p) return p;
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ label, code });
    p = this.device.createComputePipeline({
      label,
      layout: "auto",
      compute: { module, entryPoint: "main", constants },
    });
    this.#errors.push(this.device.popErrorScope().then((e) => e ? `${label}: ${e.message}` : null));
    this.#pipelines.set(key, p);
    this.stats.pipelines++;
    return p;
  }

  /**
   * Record one dispatch into the open batch. Bindings: `@binding(0)` is the params uniform when
   * `params` is given, then the buffers (or texture views) in order.
   */
  dispatch(
    pipeline: GPUComputePipeline,
    buffers: (BufferRange | GPUTextureView)[],
    params: ArrayBuffer | null,
    grid: readonly [number, number, number],
  ): void {
    if (this.#lost) throw new Error("Cannot dispatch: the GPU device was lost; create a new backend");
    const maxWg = this.info.limits.maxComputeWorkgroupsPerDimension;
    if (grid[0] > maxWg || grid[1] > maxWg || grid[2] > maxWg) {
      throw new RangeError(
        `Cannot dispatch ${pipeline.label}: grid ${grid.join("x")} exceeds ${maxWg} per dimension`,
      );
    }
    const maxStorage = this.info.limits.maxStorageBuffersPerShaderStage;
    let storage = 0;
    for (const b of buffers) if ("buffer" in b) storage++;
    if (storage > maxStorage) {
      throw new RangeError(
        `Cannot dispatch ${pipeline.label}: ${storage} storage buffers exceed the device's maxStorageBuffersPerShaderStage ${maxStorage}`,
      );
    }
    if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) return;
    const entries: GPUBindGroupEntry[] = [];
    let key = `${pipeline.label}#${idOfPipeline(pipeline)}`;
    let binding = 0;
    if (params) {
      const r = this.#arenaAlloc(params);
      entries.push({ binding: binding++, resource: r });
      key += `|p${idOf(r.buffer)}:${r.offset}:${r.size}`;
    }
    for (const b of buffers) {
      entries.push({ binding: binding++, resource: b });
      key += "buffer" in b ? `|${idOf(b.buffer)}:${b.offset}:${b.size}` : `|t${idOf(b)}`;
    }
    let bg = this.#bindGroups.get(key);
    if (!bg) {
      if (this.#bindGroups.size > 8192) this.#bindGroups.clear();
      // Validation errors here (e.g. a binding the shader never reads, dropped by layout "auto")
      // would otherwise skip the dispatch silently: collect them and rethrow at sync()/read().
      this.device.pushErrorScope("validation");
      bg = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      const label = pipeline.label;
      this.#errors.push(
        this.device.popErrorScope().then((e) => e ? `${label} bind group: ${e.message}` : null),
      );
      this.#bindGroups.set(key, bg);
    }
    const pass = this.#openPass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    this.stats.dispatches++;
  }

  /** Record a buffer-to-buffer copy into the open batch. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.#closePass();
    this.#openEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Record zero-filling of a byte range (multiple of 4) into the open batch. */
  clear(buffer: GPUBuffer, offset: number, bytes: number): void {
    this.#closePass();
    this.#openEncoder().clearBuffer(buffer, offset, bytes);
  }

  /** Submit the open batch (one command buffer): everything recorded so far starts running. */
  flush(): void {
    this.#closePass();
    // Earlier arenas of this batch were uploaded when they filled up; upload the current one.
    if (this.#arenaOffset > 0) {
      this.device.queue.writeBuffer(this.#arenas[this.#arenaIndex], 0, this.#arenaData, 0, this.#arenaOffset);
    }
    if (this.#encoder) {
      this.device.queue.submit([this.#encoder.finish()]);
      this.#encoder = null;
      this.stats.submits++;
    }
    this.#arenaIndex = 0;
    this.#arenaOffset = 0;
    for (const b of this.#pendingFree) {
      let list = this.#free.get(b.size);
      if (!list) this.#free.set(b.size, list = []);
      list.push(b);
    }
    this.#pendingFree = [];
    this.#pendingFreeByClass.clear();
  }

  /**
   * End a step: submit the open batch, then wait until the GPU has finished the step before it, so
   * the host records step N + 1 while the GPU runs step N and never runs ahead by more than that (a
   * signal or a stop is seen within a step, not after every step recorded up to the next readback).
   */
  async pace(): Promise<void> {
    this.flush();
    const previous = this.#lastStep;
    this.#lastStep = this.device.queue.onSubmittedWorkDone();
    await previous;
  }

  /**
   * Submit and wait until the GPU has finished; rethrows any recorded validation error. When the
   * batch bound the fault record, waits by mapping that record instead (same single submit) and
   * throws its failed check, as {@linkcode Gpu.read} does (not counted in `stats.readbacks`).
   * @throws {RangeError} when a kernel's device check failed (an id outside the vocabulary)
   */
  async sync(): Promise<void> {
    if (this.#faultArmed) {
      await this.#readBack(null, 0, 0);
      return;
    }
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.#checkErrors();
  }

  /**
   * Copy `bytes` at `offset` of a buffer back to the host (submits the open batch). When the batch
   * bound the fault record, the record rides along in the same submit, copy target and map.
   * @throws {RangeError} when a kernel's device check failed since the last readback, e.g.
   * `Cannot run embedding: token id 600 at position 17 is outside the vocabulary [0, 512); use the
   * model's tokenizer` (the record is cleared: each failure throws once)
   */
  async read(buffer: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    return await this.#readBack(buffer, offset, bytes);
  }

  /**
   * Release the device and every buffer. Synchronous, so it reads nothing back: a fault record
   * that no `read()`/`sync()` has seen (no result of that work was ever observed) is dropped;
   * `await sync()` first to surface it.
   */
  destroy(): void {
    this.flush();
    this.trim();
    for (const a of this.#arenas) a.destroy();
    for (const s of this.#staging) s.destroy();
    this.#faultBuffer?.destroy();
    this.device.destroy();
  }

  /** One submit, one map: `bytes` of `buffer` (nothing when null) plus the fault record when armed. */
  async #readBack(buffer: GPUBuffer | null, offset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const fault = this.#faultArmed ? this.#faultBuffer : null;
    const total = size + (fault ? FAULT_BYTES : 0);
    const idx = this.#staging.findIndex((s) => s.size >= total && s.size <= total * 4 + 4096);
    const staging = idx >= 0 ? this.#staging.splice(idx, 1)[0] : this.device.createBuffer({
      size: sizeClass(total),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    if (buffer && size > 0) this.copy(buffer, offset, staging, 0, size);
    if (fault) {
      // Recorded into the same encoder as the data copy (no extra submit), then cleared so each
      // failure throws once; dispatches recorded after this point mark the next batch again.
      this.copy(fault, 0, staging, size, FAULT_BYTES);
      this.clear(fault, 0, FAULT_BYTES);
      this.#faultArmed = false;
    }
    this.flush();
    if (buffer) this.stats.readbacks++;
    await staging.mapAsync(GPUMapMode.READ, 0, total);
    const mapped = staging.getMappedRange(0, total);
    const out = mapped.slice(0, bytes);
    const words = fault ? new Uint32Array(mapped.slice(size, total)) : null;
    staging.unmap();
    if (this.#staging.length < 16) this.#staging.push(staging);
    else staging.destroy();
    await this.#checkErrors();
    if (words && words[0] !== 0) {
      const message = this.#faultMessages[words[1] - 1];
      const f: DeviceFault = { value: words[2], index: words[3], bound: words[4], extra: words[5] };
      throw new RangeError(
        message ? message(f) : `Cannot run a kernel: device check ${words[1]} failed: ${JSON.stringify(f)}`,
      );
    }
    return out;
  }

  async #checkErrors(): Promise<void> {
    if (!this.#errors.length) return;
    const errs = (await Promise.all(this.#errors.splice(0))).filter((e): e is string => e !== null);
    if (errs.length) throw new Error(`GPU validation failed in ${errs.join("; ")}`);
  }

  #arenaAlloc(params: ArrayBuffer): BufferRange {
    const align = this.info.limits.minUniformBufferOffsetAlignment;
    const size = Math.max(16, Math.ceil(params.byteLength / 16) * 16);
    if (this.#arenaOffset + size > ARENA_BYTES) {
      // This arena is full: upload it now (ordered before the batch's submit) and move on.
      this.device.queue.writeBuffer(this.#arenas[this.#arenaIndex], 0, this.#arenaData, 0, this.#arenaOffset);
      this.#arenaIndex++;
      this.#arenaOffset = 0;
    }
    while (this.#arenas.length <= this.#arenaIndex) {
      this.#arenas.push(this.device.createBuffer({
        size: ARENA_BYTES,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      }));
    }
    const offset = this.#arenaOffset;
    this.#arenaData.fill(0, offset, offset + size);
    this.#arenaData.set(new Uint8Array(params), offset);
    this.#arenaOffset = Math.ceil((offset + size) / align) * align;
    return { buffer: this.#arenas[this.#arenaIndex], offset, size };
  }

  #openEncoder(): GPUCommandEncoder {
    return this.#encoder ??= this.device.createCommandEncoder();
  }

  #openPass(): GPUComputePassEncoder {
    return this.#pass ??= this.#openEncoder().beginComputePass();
  }

  #closePass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }
}

/**
 * Mesa's drivers print "XDG_RUNTIME_DIR is invalid or not set" on every adapter request when the
 * variable is unset or not a private (0700) directory. When it is unset on Linux, point it at a
 * private per-user directory under the temp dir; an existing setting is left alone.
 */
function quietRuntimeDir(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (Deno.env.get("XDG_RUNTIME_DIR")) return;
    const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/fledge-runtime-${Deno.uid() ?? 0}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // no env/write permission: the warning stays, nothing else depends on it
  }
}

const pipelineIds = new WeakMap<GPUComputePipeline, number>();
function idOfPipeline(p: GPUComputePipeline): number {
  let id = pipelineIds.get(p);
  if (id === undefined) pipelineIds.set(p, id = nextId++);
  return id;
}

/** True for CPU rasterizers (llvmpipe, lavapipe, SwiftShader, WARP) and fallback adapters. */
export function isCpuAdapter(gpu: Gpu): boolean {
  const i = gpu.info;
  return i.isFallbackAdapter ||
    /llvmpipe|lavapipe|swiftshader|software|warp|cpu/i.test(`${i.description} ${i.vendor} ${i.architecture}`);
}

/**
 * Spread `n` workgroups over a 2-D grid that respects the per-dimension limit. Shaders recover the
 * linear index as `wid.x + wid.y * nwg.x` and must bounds-check against their element count.
 */
export function grid1d(n: number, maxPerDim = 65535): [number, number, number] {
  if (n <= maxPerDim) return [Math.max(n, 1), 1, 1];
  const y = Math.ceil(n / maxPerDim);
  return [Math.ceil(n / y), y, 1];
}
