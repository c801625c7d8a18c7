/**
 * The types and constants of the safetensors format shared by the reader, the writer and their
 * private helpers (header checks, dtype conversions), and the reader's interface. Public through
 * `safetensors.ts`, which re-exports every name; this file imports nothing from its folder, so no
 * module of it imports another in a circle.
 * @module
 */

/** Element types of the safetensors format that fledge reads and writes. */
export type SafetensorsDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/**
 * Bytes per element of each dtype.
 *
 * @example
 * ```ts
 * import { DTYPE_BYTES } from "./types.ts";
 * if (DTYPE_BYTES.BF16 !== 2 || DTYPE_BYTES.I64 !== 8) throw new Error("sizes");
 * ```
 */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

/** One tensor's header entry; `data_offsets` are relative to the start of the data section. */
export interface TensorInfo {
  /** Element type. */
  dtype: SafetensorsDtype;
  /** Dimensions (`[]` for a scalar). */
  shape: number[];
  /** `[begin, end)` bytes of the data, from the start of the data section. */
  data_offsets: [number, number];
}

/** A parsed, checked header. */
export interface SafetensorsHeader {
  /** Tensors by name, in the order of their data. */
  tensors: Map<string, TensorInfo>;
  /** `__metadata__` (string to string), or null when absent. */
  metadata: Record<string, string> | null;
  /** Absolute file offset of the data section (8 + header length). */
  data_start: number;
}

/**
 * Tensor data as stored ("raw"): F64 `Float64Array`, F32 `Float32Array`, F16 and BF16 `Uint16Array`
 * (the bits), I64 `BigInt64Array`, I32 `Int32Array`, I16 `Int16Array`, I8 `Int8Array`, U8 and BOOL
 * `Uint8Array`.
 */
export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

/** A tensor read from (or to be written to) a safetensors file. */
export interface SafeTensor {
  /** Element type as stored. */
  dtype: SafetensorsDtype;
  /** Dimensions (`[]` for a scalar). */
  shape: number[];
  /** The values, raw or converted (see {@linkcode SafetensorsReadOptions}). */
  data: TensorData;
}

/**
 * A tensor to write. `data` is the raw array of {@linkcode TensorData} for `dtype`, or numbers
 * that are converted: to F16/BF16 with round-to-nearest-even (so a `Float32Array` can be written
 * as `BF16`), to integer dtypes after a range check. A `Uint16Array` for F16/BF16 is taken as bits.
 */
export interface TensorInput {
  /** Element type to store. */
  dtype: SafetensorsDtype;
  /** Dimensions (`[]` for a scalar); their product is `data.length`. */
  shape: number[];
  /** The values: raw for `dtype`, or numbers to convert. */
  data: TensorData | ArrayLike<number>;
}

/**
 * How `SafetensorsFile.read` returns data: `raw` (default) as stored; `f32` converts
 * F64/F16/BF16 to `Float32Array` (F32 as is); `i32` converts I64 (checking each value fits), I16,
 * I8, U8, BOOL to `Int32Array`.
 */
export interface SafetensorsReadOptions {
  /** Conversion: `raw` (default), `f32` or `i32`. */
  as?: "raw" | "f32" | "i32";
}

/** What both single files and sharded checkpoints offer. */
export interface SafetensorsReader {
  /** `__metadata__` of the file, or the index's `metadata` (stringified values). */
  readonly metadata: Record<string, string> | null;
  /** Tensor names, sorted. */
  names(): string[];
  /** Header entry of a tensor. */
  info(name: string): TensorInfo;
  /** Read one tensor's data from disk. */
  read(name: string, opts?: SafetensorsReadOptions): Promise<SafeTensor>;
  /**
   * Read one tensor into a caller's buffer (see `SafetensorsFile.readInto`): f32 for
   * F32/F16/BF16/F64 tensors, or the bits of an F16/BF16 tensor into a `Uint16Array`.
   */
  readInto(name: string, out: Float32Array | Uint16Array): Promise<void>;
  /** Path of the `.safetensors` file that holds a tensor (a shard of a sharded checkpoint). */
  fileOf(name: string): string;
  /** Close the file handle(s). */
  close(): void;
}

/** A parsed `model.safetensors.index.json`. */
export interface SafetensorsIndex {
  /** The index's `metadata` (e.g. `total_size`), or null. */
  metadata: Record<string, unknown> | null;
  /** Tensor name -> shard file name (relative to the index's folder). */
  weight_map: Record<string, string>;
}
