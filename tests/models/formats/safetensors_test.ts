import { join } from "node:path";
import { assert, assertAllClose, randomArray, SHARED } from "../../_assert.ts";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  openSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  readSafetensorsIndex,
  type SafetensorsDtype,
  SafetensorsFile,
  type TensorData,
  type TensorInput,
  writeSafetensors,
  writeSafetensorsSharded,
} from "../../../models/formats/safetensors.ts";

const REF = `${SHARED}/fixtures/hf-reference`;
const nums = (d: TensorData): number[] => Array.from(d as ArrayLike<number>);
const ARCHS = ["llama", "qwen2", "phi3", "gpt2"] as const;

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-st-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function rejects(p: Promise<unknown>, cls: ErrorConstructor, ...patterns: RegExp[]): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e instanceof Error ? e.stack : e}`);
    for (const re of patterns) assert.match((e as Error).message, re);
    return (e as Error).message;
  }
  throw new assert.AssertionError({ message: "expected a rejection" });
}

/** A safetensors file from a header object (or raw header text) and a data section. */
function fileBytes(header: unknown, data: Uint8Array, opts: { length?: number } = {}): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(opts.length ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("SafetensorsFile reads every fixture checkpoint, cases and adapter file", async () => {
  const files = ARCHS.flatMap((a) => [
    `${a}/model.safetensors`,
    `${a}/cases.safetensors`,
    `${a}/lora/adapter_model.safetensors`,
    `${a}/lora/cases.safetensors`,
    `${a}/dora/adapter_model.safetensors`,
    `${a}/dora/cases.safetensors`,
  ]);
  for (const rel of files) {
    const { metadata, tensors } = await readSafetensors(`${REF}/${rel}`);
    assert.deepEqual(metadata, { format: "pt" }, rel);
    assert.ok(tensors.size > 0, rel);
    for (const [name, t] of tensors) {
      assert.equal(t.data.length, t.shape.reduce((a, b) => a * b, 1), `${rel}: ${name}`);
      assert.ok(t.dtype === "F32" || t.dtype === "I64", `${rel}: ${name} ${t.dtype}`);
      assert.ok(t.dtype === "F32" ? t.data instanceof Float32Array : t.data instanceof BigInt64Array);
    }
  }
});

Deno.test("fixture cases: shapes, dtypes and values agree with cases.json", async () => {
  for (const arch of ARCHS) {
    const info = JSON.parse(await Deno.readTextFile(`${REF}/${arch}/cases.json`));
    using f = await SafetensorsFile.open(`${REF}/${arch}/cases.safetensors`);
    assert.deepEqual(f.info("input_ids").shape, [2, 16]);
    assert.equal(f.info("input_ids").dtype, "I64");
    assert.deepEqual(f.info("logits").shape, [2, 16, 256]);
    const loss = await f.read("loss", { as: "f32" });
    assert.equal(loss.data[0], Math.fround(info.loss), arch);
    const greedy = await f.read("greedy_tokens", { as: "i32" });
    assert.ok(greedy.data instanceof Int32Array);
    assert.deepEqual(nums(greedy.data), info.greedy_tokens, arch);
    const mask = await f.read("attention_mask", { as: "i32" });
    assert.deepEqual(nums(mask.data).slice(16), [...Array(11).fill(1), ...Array(5).fill(0)]);
    const labels = await f.read("labels", { as: "i32" });
    assert.equal(labels.data[31], -100, "negative I64 survives the i32 conversion");
    const raw = await f.read("labels");
    assert.equal((raw.data as BigInt64Array)[31], -100n);
  }
  using m = await SafetensorsFile.open(`${REF}/gpt2/model.safetensors`);
  assert.deepEqual(m.info("transformer.h.0.attn.c_attn.weight").shape, [64, 192]);
  assert.ok(!m.names().includes("lm_head.weight"), "tied gpt2 stores no lm_head");
  using d = await SafetensorsFile.open(`${REF}/phi3/dora/adapter_model.safetensors`);
  assert.deepEqual(d.info("base_model.model.model.layers.0.self_attn.qkv_proj.lora_magnitude_vector").shape, [
    128,
  ]);
  assert.deepEqual(d.info("base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight").shape, [
    128,
    4,
  ]);
});

Deno.test("writeSafetensors() reproduces the fixture files byte for byte", async () => {
  await withTmp(async (dir) => {
    for (
      const rel of [
        "llama/model.safetensors",
        "gpt2/cases.safetensors",
        "qwen2/dora/adapter_model.safetensors",
      ]
    ) {
      const { metadata, tensors } = await readSafetensors(`${REF}/${rel}`);
      const out = join(dir, "x.safetensors");
      await writeSafetensors(out, tensors, { metadata });
      const [a, b] = [await Deno.readFile(`${REF}/${rel}`), await Deno.readFile(out)];
      assert.equal(b.length, a.length, rel);
      assert.ok(a.every((x, i) => x === b[i]), `${rel} differs`);
    }
  });
});

Deno.test("writeSafetensors() -> read round-trips every dtype", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "all.safetensors");
    const f32 = randomArray(12, 1);
    const tensors: Record<string, TensorInput> = {
      f64: { dtype: "F64", shape: [3], data: new Float64Array([Math.PI, -1e300, 5e-324]) },
      f32: { dtype: "F32", shape: [3, 4], data: f32 },
      f16: { dtype: "F16", shape: [12], data: f32 },
      bf16: { dtype: "BF16", shape: [2, 6], data: f32 },
      i64: { dtype: "I64", shape: [3], data: new BigInt64Array([-(2n ** 62n), 0n, 2n ** 40n]) },
      i64n: { dtype: "I64", shape: [2], data: [-100, 7] },
      i32: { dtype: "I32", shape: [2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) },
      i16: { dtype: "I16", shape: [2], data: [-32768, 32767] },
      i8: { dtype: "I8", shape: [2], data: new Int8Array([-128, 127]) },
      u8: { dtype: "U8", shape: [3], data: [0, 128, 255] },
      bool: { dtype: "BOOL", shape: [2, 1], data: [1, 0] },
      scalar: { dtype: "F32", shape: [], data: [42] },
      empty: { dtype: "F32", shape: [0, 5], data: [] },
    };
    await writeSafetensors(path, tensors, { metadata: { format: "pt", note: "x" } });
    using f = await SafetensorsFile.open(path);
    assert.deepEqual(f.metadata, { format: "pt", note: "x" });
    assert.deepEqual(f.names(), Object.keys(tensors).sort());
    const get = (n: string, as?: "raw" | "f32" | "i32") => f.read(n, { as });
    assert.deepEqual(Array.from((await get("f64")).data as Float64Array), [Math.PI, -1e300, 5e-324]);
    assert.deepEqual((await get("f32")).data, f32);
    assertAllClose((await get("f16", "f32")).data as Float32Array, Array.from(f32, Math.f16round), {
      atol: 0,
      rtol: 0,
    });
    const bf = (await get("bf16", "f32")).data as Float32Array;
    assertAllClose(bf, f32, { atol: 0, rtol: 2 ** -8 });
    assert.equal((await get("bf16")).data.constructor, Uint16Array, "raw bf16 is the bits");
    assert.deepEqual(Array.from((await get("i64")).data as BigInt64Array), [-(2n ** 62n), 0n, 2n ** 40n]);
    assert.deepEqual(nums((await get("i64n", "i32")).data), [-100, 7]);
    assert.deepEqual(nums((await get("i32")).data), [-(2 ** 31), 2 ** 31 - 1]);
    assert.deepEqual(nums((await get("i16")).data), [-32768, 32767]);
    assert.deepEqual(nums((await get("i8", "i32")).data), [-128, 127]);
    assert.deepEqual(nums((await get("u8")).data), [0, 128, 255]);
    assert.deepEqual([(await get("bool")).shape, nums((await get("bool")).data)], [[2, 1], [1, 0]]);
    assert.deepEqual([(await get("scalar")).shape, (await get("scalar")).data[0]], [[], 42]);
    assert.deepEqual([(await get("empty")).shape, (await get("empty")).data.length], [[0, 5], 0]);
    // Widest dtype first, so every tensor is aligned to its element size.
    for (const n of f.names()) {
      const i = f.info(n);
      assert.equal(
        (f.header.data_start + i.data_offsets[0]) %
          ({ F64: 8, I64: 8, F32: 4, I32: 4 }[i.dtype as "F64"] ?? 1),
        0,
      );
    }
    assert.equal(f.header.data_start % 8, 0, "header padded to 8");
    await rejects(
      get("i64", "i32"),
      RangeError,
      /element 0 = -4611686018427387904 is outside the int32 range/,
    );
    await rejects(get("u8", "f32"), TypeError, /dtype U8 is not a float type/);
    await rejects(get("f32", "i32"), TypeError, /dtype F32 is not an integer type/);
    await rejects(get("nope"), RangeError, /Cannot find tensor "nope"/);
  });
});

Deno.test("f32ToF16Bits() rounds to nearest even like Math.f16round, incl. subnormals and overflow", () => {
  const vals = [
    0,
    -0,
    1,
    -2.5,
    65504,
    65519.99,
    65520,
    1e6,
    -Infinity,
    2 ** -24,
    2 ** -25,
    2 ** -25 * 1.0001,
    3 * 2 ** -25,
    2 ** -14 - 2 ** -25,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    ...randomArray(2000, 7, 4),
    ...Array.from(randomArray(2000, 8), (x) => x * 2 ** -14),
  ];
  const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < 20000; i++) {
    u32[0] = (Math.random() * 2 ** 32) >>> 0;
    vals.push(f32[0]);
  }
  for (const v of vals) {
    const x = Math.fround(v);
    const got = f16BitsToF32(f32ToF16Bits(x));
    const want = Math.f16round(x);
    assert.ok(
      Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)),
      `${x}: got ${got}, want ${want}`,
    );
  }
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00, "tie rounds to even (down)");
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02, "tie rounds to even (up)");
  assert.equal(f32ToF16Bits(NaN) & 0x7e00, 0x7e00, "NaN stays a quiet NaN");
});

Deno.test("f32ToBf16Bits() rounds to nearest even", () => {
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80, "tie -> even (down)");
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82, "tie -> even (up)");
  assert.equal(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81, "above the tie rounds up");
  assert.equal(f32ToBf16Bits(-0), 0x8000);
  assert.equal(f32ToBf16Bits(3.4e38), 0x7f80, "overflow to inf");
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  // Against an f64 reference: the nearest bf16 (8 significant bits), ties to even.
  const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < 20000; i++) {
    u32[0] = (Math.random() * 0x7f000000) >>> 0; // finite, positive, below the overflow edge
    const x = f32[0];
    if (x < 2 ** -126) continue;
    const e = Math.floor(Math.log2(x)), ulp = 2 ** (e - 7);
    const lo = Math.floor(x / ulp) * ulp, hi = lo + ulp;
    const even = (lo / ulp) % 2 === 0 ? lo : hi;
    const want = x - lo < hi - x ? lo : x - lo > hi - x ? hi : even;
    assert.equal(bf16BitsToF32(f32ToBf16Bits(x)), want, `${x}`);
  }
});

Deno.test("SafetensorsFile reads one tensor lazily, and concurrent reads stay correct", async () => {
  const path = `${REF}/llama/model.safetensors`;
  const { tensors } = await readSafetensors(path);
  using f = await SafetensorsFile.open(path);
  const last = f.names().at(-1)!;
  const one = await f.read(last);
  assert.deepEqual(one.data, tensors.get(last)!.data);
  const bytes = await f.readBytes("model.embed_tokens.weight");
  assert.equal(bytes.length, 256 * 64 * 4);
  const all = await Promise.all(f.names().map((n) => f.read(n)));
  f.names().forEach((n, i) => assert.deepEqual(all[i].data, tensors.get(n)!.data, n));
  f.close();
  assert.throws(() => f.readBytes(last), /is closed/);
});

Deno.test("openSafetensors() reads a fixture split into 2 shards + index", async () => {
  await withTmp(async (dir) => {
    const { tensors } = await readSafetensors(`${REF}/qwen2/model.safetensors`);
    const names = [...tensors.keys()];
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weight_map: Record<string, string> = {};
    for (const [k, part] of shards.entries()) {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      await writeSafetensors(join(dir, file), new Map(part.map((n) => [n, tensors.get(n)!])));
      for (const n of part) weight_map[n] = file;
    }
    await Deno.writeTextFile(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: { total_size: 428288 }, weight_map }),
    );
    for (const p of [dir, join(dir, "model.safetensors.index.json")]) {
      const ck = await openSafetensors(p);
      assert.deepEqual(ck.names(), names.sort());
      assert.deepEqual(ck.metadata, { total_size: "428288" });
      for (const n of names) assert.deepEqual((await ck.read(n)).data, tensors.get(n)!.data, n);
      assert.deepEqual(ck.info("model.norm.weight").shape, [64]);
      ck.close();
    }
    // The weight_map names a tensor its shard lacks.
    weight_map["model.norm.weight"] = "model-00001-of-00002.safetensors";
    await Deno.writeTextFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map }));
    await rejects(openSafetensors(dir), RangeError, /puts "model.norm.weight" in model-00001-of-00002/);
  });
});

Deno.test("writeSafetensorsSharded() splits by size and writes an HF index", async () => {
  await withTmp(async (dir) => {
    const { tensors } = await readSafetensors(`${REF}/phi3/model.safetensors`);
    const files = await writeSafetensorsSharded(dir, tensors, { max_shard_size: 150_000 });
    assert.ok(files.length >= 3 && files.at(-1) === "model.safetensors.index.json", String(files));
    assert.match(files[0], /^model-00001-of-0000\d\.safetensors$/);
    const index = await readSafetensorsIndex(join(dir, "model.safetensors.index.json"));
    assert.equal(index.metadata?.total_size, 106816 * 4);
    assert.deepEqual(Object.keys(index.weight_map).sort(), [...tensors.keys()].sort());
    const back = await readSafetensors(dir);
    for (const [n, t] of tensors) assert.deepEqual(back.tensors.get(n)!.data, t.data, n);
    const single = join(dir, "single");
    assert.deepEqual(await writeSafetensorsSharded(single, tensors), ["model.safetensors"]);
    assert.equal((await readSafetensors(single)).tensors.size, tensors.size);
  });
});

Deno.test("writeSafetensors() is atomic: no temp files, a failed write keeps the old file", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "w.safetensors");
    await writeSafetensors(path, { a: { dtype: "F32", shape: [2], data: [1, 2] } });
    await writeSafetensors(path, { b: { dtype: "F32", shape: [1], data: [3] } });
    assert.deepEqual([...(await readSafetensors(path)).tensors.keys()], ["b"]);
    await rejects(
      writeSafetensors(path, { c: { dtype: "U8", shape: [2], data: [1, 300] } }),
      RangeError,
      /element 1 = 300 does not fit U8/,
    );
    await rejects(
      writeSafetensors(path, { c: { dtype: "F32", shape: [3], data: [1] } }),
      TypeError,
      /shape \[3\] needs 3 elements, data has 1/,
    );
    await rejects(
      writeSafetensors(path, { c: { dtype: "F8" as SafetensorsDtype, shape: [1], data: [1] } }),
      TypeError,
      /unknown dtype "F8"/,
    );
    assert.deepEqual([...(await readSafetensors(path)).tensors.keys()], ["b"]);
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(left, ["w.safetensors"]);
  });
});

Deno.test("hostile safetensors headers are refused with a SyntaxError naming the file", async () => {
  const u8 = (n: number) => new Uint8Array(n);
  const t = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const cases: [string, Uint8Array, RegExp][] = [
    ["short", u8(5), /shorter than the 8-byte header length/],
    ["too-long", fileBytes({}, u8(0), { length: 1000 }), /header length 1000 exceeds the 2 bytes/],
    ["absurd", fileBytes({}, u8(0), { length: 2 ** 40 }), /header length 1099511627776 bytes is absurd/],
    ["not-json", fileBytes("{nope", u8(0)), /header is not JSON/],
    ["array", fileBytes("[1,2]", u8(0)), /not a JSON object but an array/],
    ["null", fileBytes("null", u8(0)), /not a JSON object/],
    ["bad-utf8", fileBytes('{"\xff"}', u8(0)).map((b, i) => (i === 10 ? 0xff : b)), /not valid UTF-8/],
    ["dtype", fileBytes({ x: t("F8_E4M3", [1], [0, 1]) }, u8(1)), /unknown or unsupported dtype "F8_E4M3"/],
    [
      "out-of-bounds",
      fileBytes({ x: t("F32", [4], [0, 16]) }, u8(8)),
      /run past the data section \(8 bytes\)/,
    ],
    [
      "overlap",
      fileBytes({ a: t("F32", [2], [0, 8]), b: t("F32", [2], [4, 12]) }, u8(12)),
      /overlap "a"/,
    ],
    ["size", fileBytes({ x: t("F32", [3], [0, 8]) }, u8(8)), /hold 8 bytes, but shape \[3\] x F32 needs 12/],
    [
      "negative",
      fileBytes({ x: t("F32", [-1], [0, 0]) }, u8(0)),
      /shape \[-1\] is not a list of non-negative/,
    ],
    ["fraction", fileBytes({ x: t("F32", [1.5], [0, 6]) }, u8(6)), /shape \[1.5\]/],
    [
      "duplicate",
      fileBytes(
        '{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
        u8(1),
      ),
      /duplicate tensor name "x"/,
    ],
    ["gap", fileBytes({ x: t("U8", [1], [1, 2]) }, u8(2)), /gap before tensor "x"/],
    [
      "trailing",
      fileBytes({ x: t("U8", [1], [0, 1]) }, u8(5)),
      /data ends at 1 but the data section holds 5/,
    ],
    ["offsets", fileBytes({ x: t("U8", [1], [1, 0]) }, u8(1)), /data_offsets \[1,0\] are not \[begin, end\]/],
    ["metadata", fileBytes({ __metadata__: { n: 1 } }, u8(0)), /__metadata__.n is 1, not a string/],
    ["entry-key", fileBytes({ x: { ...t("U8", [1], [0, 1]), extra: 1 } }, u8(1)), /unknown field "extra"/],
    ["huge-shape", fileBytes({ x: t("F32", [2 ** 30, 2 ** 30], [0, 4]) }, u8(4)), /absurdly large/],
  ];
  await withTmp(async (dir) => {
    for (const [name, bytes, re] of cases) {
      const path = join(dir, `${name}.safetensors`);
      await Deno.writeFile(path, bytes);
      const msg = await rejects(
        SafetensorsFile.open(path),
        SyntaxError,
        re,
        new RegExp(`${name}\\.safetensors`),
      );
      assert.ok(msg.startsWith(`Cannot read safetensors file ${path}:`), msg);
      assert.throws(() => parseSafetensorsHeader(bytes, { file: name }), SyntaxError, name);
    }
  });
});

Deno.test("hostile index files are refused: shard names that leave the folder", async () => {
  await withTmp(async (dir) => {
    const bad: [unknown, RegExp][] = [
      ["../outside.safetensors", /leaves or escapes the model folder/],
      ["sub/../../x.safetensors", /leaves or escapes/],
      ["/etc/passwd", /is an absolute path/],
      ["C:/x.safetensors", /is an absolute path/],
      ["a\\b.safetensors", /contains a backslash/],
      ["a\0.safetensors", /contains NUL/],
      ["", /not a file name/],
      [7, /not a file name/],
    ];
    const path = join(dir, "model.safetensors.index.json");
    for (const [file, re] of bad) {
      await Deno.writeTextFile(path, JSON.stringify({ weight_map: { "w": file } }));
      await rejects(openSafetensors(dir), SyntaxError, re, /model\.safetensors\.index\.json/);
    }
    const cases: [string, RegExp][] = [
      ["{oops", /Cannot parse .*index\.json: .* at line 1, column 2;/],
      ["{}", /weight_map is missing/],
      ['{"weight_map":{},"x":1}', /unknown key "x"/],
    ];
    for (const [text, re] of cases) {
      await Deno.writeTextFile(path, text);
      await rejects(readSafetensorsIndex(path), SyntaxError, re);
    }
  });
});

Deno.test("readInto() fills a caller's buffer from F32, F16, BF16 and F64 as read(as f32) does", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "into.safetensors");
    const vals = randomArray(10_001, 3, 8);
    const big = new Float64Array(70_000).map((_, i) => Math.sin(i) * 1e3); // > one 64K-element F64 chunk
    await writeSafetensors(path, {
      f32: { dtype: "F32", shape: [3, 4], data: vals.subarray(0, 12) },
      f16: { dtype: "F16", shape: [10_001], data: vals },
      bf16: { dtype: "BF16", shape: [73, 137], data: vals },
      f64: { dtype: "F64", shape: [70_000], data: big },
      one: { dtype: "F16", shape: [], data: [-0.5] },
      empty: { dtype: "BF16", shape: [0, 3], data: [] },
      i64: { dtype: "I64", shape: [2], data: [1, 2] },
    });
    using f = await SafetensorsFile.open(path);
    // One reusable buffer for every tensor, read at an offset; nothing outside `out` is touched.
    const buf = new Float32Array(70_010).fill(7);
    for (const name of ["f32", "f16", "bf16", "f64", "one", "empty"]) {
      const want = (await f.read(name, { as: "f32" })).data as Float32Array;
      const out = buf.subarray(3, 3 + want.length);
      await f.readInto(name, out);
      assert.deepEqual(out, want, name);
      assert.equal(buf[2], 7, `${name}: before out`);
      assert.equal(buf[3 + want.length], 7, `${name}: after out`);
      buf.fill(7);
    }
    // A Uint16Array receives the stored bits of an F16 or BF16 tensor.
    for (const name of ["f16", "bf16"]) {
      const bits = new Uint16Array(10_001);
      await f.readInto(name, bits);
      assert.deepEqual(bits, (await f.read(name)).data, name);
    }
    assert.equal(f.fileOf("f16"), path);
    await rejects(f.readInto("nope", new Float32Array(1)), RangeError, /Cannot find tensor "nope"/);
    await rejects(
      f.readInto("f32", new Float32Array(13)),
      RangeError,
      /tensor "f32" of .*into\.safetensors into 13 elements: shape \[3,4\] holds 12/,
    );
    await rejects(f.readInto("f16", new Float32Array(10_000)), RangeError, /holds 10001/);
    await rejects(f.readInto("i64", new Float32Array(2)), TypeError, /dtype I64 is not a float type/);
    await rejects(f.readInto("f32", new Uint16Array(12)), TypeError, /dtype F32 is not F16 or BF16/);
    await rejects(
      f.readInto("f32", new Float64Array(12) as never),
      TypeError,
      /Float32Array or a Uint16Array/,
    );
    f.close();
    await rejects(f.readInto("f32", new Float32Array(12)), TypeError, /is closed/);
  });
});

Deno.test("readInto() and fileOf() go through the shard that holds each tensor", async () => {
  await withTmp(async (dir) => {
    const t = (dtype: SafetensorsDtype, v: number): TensorInput => ({
      dtype,
      shape: [2, 3],
      data: new Float32Array(6).map((_, i) => v + i / 4),
    });
    const tensors = { a: t("F32", 1), b: t("F16", 2), c: t("BF16", 3) };
    const files = await writeSafetensorsSharded(dir, tensors, { max_shard_size: 24 });
    assert.equal(files.length, 3, String(files));
    const ck = await openSafetensors(dir);
    try {
      const out = new Float32Array(6);
      for (const [name, src] of Object.entries(tensors)) {
        await ck.readInto(name, out);
        assert.deepEqual([...out], [...(src.data as Float32Array)], name);
        const index = await readSafetensorsIndex(join(dir, "model.safetensors.index.json"));
        assert.equal(ck.fileOf(name), join(dir, index.weight_map[name]), name);
      }
      const bits = new Uint16Array(6);
      await ck.readInto("c", bits);
      assert.deepEqual(bits, (await ck.read("c")).data);
      await rejects(ck.readInto("nope", out), RangeError, /Cannot find tensor "nope" in the weight_map/);
      assert.throws(() => ck.fileOf("nope"), RangeError);
      await rejects(
        ck.readInto("a", new Float32Array(5)),
        RangeError,
        /into 5 elements: shape \[2,3\] holds 6/,
      );
    } finally {
      ck.close();
    }
    // A shard that is gone is a NotFound naming the shard and the index.
    await Deno.remove(join(dir, files[1]));
    await rejects(
      openSafetensors(dir),
      Deno.errors.NotFound as unknown as ErrorConstructor,
      new RegExp(`shard ${join(dir, files[1]).replaceAll(".", "\\.")} is missing`),
      /model\.safetensors\.index\.json/,
    );
  });
});
