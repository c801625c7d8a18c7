/**
 * A protobuf encoder for the subset of `onnx.proto` (onnx/onnx, IR version 8-10) that the ONNX
 * exporter writes: ModelProto, OperatorSetIdProto, GraphProto, NodeProto, AttributeProto,
 * TensorProto (raw_data or external data), ValueInfoProto with symbolic dims, and
 * StringStringEntryProto. Field numbers are those of `onnx/onnx.proto`.
 *
 * Encoding (protobuf wire format): a field is a varint key `field << 3 | wire type`, then a varint
 * (type 0), 4 little-endian bytes (type 5) or a varint length and that many bytes (type 2).
 * Repeated scalars are written unpacked (proto2's default, accepted by every parser). int64 values
 * are varints of their 64-bit two's complement.
 *
 * The output is a list of parts, not one buffer: a tensor's bytes are a {@linkcode LazyBytes}
 * (size known up front, bytes produced when written), so a model is streamed to disk one tensor at
 * a time and never held whole in memory; message lengths are computed from the sizes.
 *
 * @module
 */

/** Bytes whose size is known before they exist: produced (e.g. read back from the device) when written. */
export interface LazyBytes {
  size: number;
  get(): Promise<Uint8Array>;
}

/** One piece of an encoded message. */
export type Part = Uint8Array | LazyBytes;

/** `TensorProto.DataType` values used here. */
export const DTYPE = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9 } as const;

/** `AttributeProto.AttributeType` values. */
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

/** A node attribute value: number (int unless `float` is set), ints, float(s), string, tensor. */
export type AttrValue =
  | { i: number }
  | { f: number }
  | { ints: number[] }
  | { floats: number[] }
  | { s: string }
  | { t: TensorSpec };

/** A graph node (NodeProto). */
export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs?: Record<string, AttrValue>;
}

/** Where an external tensor's bytes live in the `.data` file. */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

/** An initializer or attribute tensor (TensorProto): raw little-endian bytes, inline or external. */
export interface TensorSpec {
  name: string;
  dims: number[];
  data_type: number;
  /** Inline bytes (`raw_data`), or the location in the external data file. */
  data: Part | ExternalRef;
}

/** A graph input or output (ValueInfoProto of a tensor type): numbers are fixed dims, strings symbolic. */
export interface ValueSpec {
  name: string;
  elem_type: number;
  dims: (number | string)[];
}

/** The whole model (ModelProto with one GraphProto). */
export interface ModelSpec {
  ir_version: number;
  opset: number;
  producer_name: string;
  producer_version: string;
  doc_string: string;
  graph_name: string;
  nodes: NodeSpec[];
  initializers: TensorSpec[];
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  metadata: Record<string, string>;
}

const enc = new TextEncoder();

/** A message under construction: small fields gathered in a scratch array, big payloads kept by reference. */
class Msg {
  parts: Part[] = [];
  size = 0;
  #cur: number[] = [];

  #flush(): void {
    if (!this.#cur.length) return;
    this.parts.push(Uint8Array.from(this.#cur));
    this.#cur = [];
  }

  #rawVarint(v: bigint): void {
    let x = BigInt.asUintN(64, v);
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      this.#cur.push(b);
      this.size++;
    } while (x);
  }

  #key(field: number, wire: number): void {
    this.#rawVarint(BigInt((field << 3) | wire));
  }

  varint(field: number, v: number | bigint): void {
    this.#key(field, 0);
    this.#rawVarint(BigInt(v));
  }

  float(field: number, v: number): void {
    this.#key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    for (const x of b) this.#cur.push(x);
    this.size += 4;
  }

  bytes(field: number, b: Part): void {
    this.#key(field, 2);
    const n = b instanceof Uint8Array ? b.length : b.size;
    this.#rawVarint(BigInt(n));
    if (b instanceof Uint8Array && b.length < 256) {
      for (const x of b) this.#cur.push(x);
    } else {
      this.#flush();
      this.parts.push(b);
    }
    this.size += n;
  }

  string(field: number, s: string): void {
    this.bytes(field, enc.encode(s));
  }

  message(field: number, m: Msg): void {
    m.#flush();
    this.#key(field, 2);
    this.#rawVarint(BigInt(m.size));
    this.#flush();
    this.parts.push(...m.parts);
    this.size += m.size;
  }

  done(): Msg {
    this.#flush();
    return this;
  }
}

function entry(key: string, value: string): Msg {
  const m = new Msg();
  m.string(1, key);
  m.string(2, value);
  return m;
}

/** TensorProto: dims 1, data_type 2, name 8, raw_data 9, external_data 13, data_location 14. */
function tensorMsg(t: TensorSpec): Msg {
  const m = new Msg();
  for (const d of t.dims) m.varint(1, d);
  m.varint(2, t.data_type);
  m.string(8, t.name);
  if ("location" in t.data) {
    m.message(13, entry("location", t.data.location));
    m.message(13, entry("offset", String(t.data.offset)));
    m.message(13, entry("length", String(t.data.length)));
    m.varint(14, 1); // DataLocation.EXTERNAL
  } else m.bytes(9, t.data);
  return m;
}

/** AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, type 20. */
function attrMsg(name: string, v: AttrValue): Msg {
  const m = new Msg();
  m.string(1, name);
  if ("i" in v) {
    m.varint(3, v.i);
    m.varint(20, ATTR.INT);
  } else if ("f" in v) {
    m.float(2, v.f);
    m.varint(20, ATTR.FLOAT);
  } else if ("ints" in v) {
    for (const x of v.ints) m.varint(8, x);
    m.varint(20, ATTR.INTS);
  } else if ("floats" in v) {
    for (const x of v.floats) m.float(7, x);
    m.varint(20, ATTR.FLOATS);
  } else if ("s" in v) {
    m.string(4, v.s);
    m.varint(20, ATTR.STRING);
  } else {
    m.message(5, tensorMsg(v.t));
    m.varint(20, ATTR.TENSOR);
  }
  return m;
}

/** NodeProto: input 1, output 2, name 3, op_type 4, attribute 5. */
function nodeMsg(n: NodeSpec): Msg {
  const m = new Msg();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  m.string(3, n.name);
  m.string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) m.message(5, attrMsg(k, v));
  return m;
}

/**
 * ValueInfoProto (name 1, type 2) of TypeProto (tensor_type 1) of TypeProto.Tensor (elem_type 1,
 * shape 2) of TensorShapeProto (dim 1) of Dimension (dim_value 1, dim_param 2).
 */
function valueMsg(v: ValueSpec): Msg {
  const shape = new Msg();
  for (const d of v.dims) {
    const dim = new Msg();
    if (typeof d === "number") dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensor = new Msg();
  tensor.varint(1, v.elem_type);
  tensor.message(2, shape);
  const type = new Msg();
  type.message(1, tensor);
  const m = new Msg();
  m.string(1, v.name);
  m.message(2, type);
  return m;
}

/**
 * Encode a model. ModelProto: ir_version 1, producer_name 2, producer_version 3, doc_string 6,
 * graph 7, opset_import 8, metadata_props 14. GraphProto: node 1, name 2, initializer 5, input 11,
 * output 12. OperatorSetIdProto: domain 1, version 2.
 * @returns the parts of the encoded bytes and their total size
 */
export function encodeModel(s: ModelSpec): { parts: Part[]; size: number } {
  const g = new Msg();
  for (const n of s.nodes) g.message(1, nodeMsg(n));
  g.string(2, s.graph_name);
  for (const t of s.initializers) g.message(5, tensorMsg(t));
  for (const v of s.inputs) g.message(11, valueMsg(v));
  for (const v of s.outputs) g.message(12, valueMsg(v));
  const opset = new Msg();
  opset.string(1, "");
  opset.varint(2, s.opset);
  const m = new Msg();
  m.varint(1, s.ir_version);
  m.string(2, s.producer_name);
  m.string(3, s.producer_version);
  m.string(6, s.doc_string);
  m.message(7, g);
  m.message(8, opset);
  for (const [k, v] of Object.entries(s.metadata)) m.message(14, entry(k, v));
  m.done();
  return { parts: m.parts, size: m.size };
}

/** Write encoded parts to an open file, producing lazy parts one at a time. */
export async function writeParts(file: Deno.FsFile, parts: Part[]): Promise<void> {
  for (const p of parts) {
    const b = p instanceof Uint8Array ? p : await p.get();
    if (!(p instanceof Uint8Array) && b.length !== p.size) {
      throw new RangeError(
        `Cannot write the ONNX file: a tensor produced ${b.length} bytes, expected ${p.size}`,
      );
    }
    let off = 0;
    while (off < b.length) off += await file.write(b.subarray(off));
  }
}
