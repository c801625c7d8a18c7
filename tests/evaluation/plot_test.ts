import { Buffer } from "node:buffer";
import { inflateSync } from "node:zlib";
import { assert } from "../_assert.ts";
import { type LogRecord, plotMetricsBar, plotTrainingCurves, svgToPng } from "../../evaluation/plot.ts";

// ---- a tiny XML well-formedness check and tree ------------------------------------------------

interface Node {
  name: string;
  attrs: Record<string, string>;
  children: Node[];
  text: string; // decoded text directly inside
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decode(s: string, where: string): string {
  if (/<|&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(s)) {
    throw new SyntaxError(`bad character data in ${where}: ${s}`);
  }
  return s.replace(
    /&(#x[0-9a-f]+|#\d+|\w+);/gi,
    (_, e: string) =>
      e[0] === "#"
        ? String.fromCodePoint(e[1].toLowerCase() === "x" ? parseInt(e.slice(2), 16) : Number(e.slice(1)))
        : ENTITIES[e],
  );
}

/** Parse XML (elements, attributes, text, the XML declaration, comments); throw when malformed. */
function parseXml(xml: string): Node {
  const root: Node = { name: "#document", attrs: {}, children: [], text: "" };
  const stack = [root];
  const re =
    /<\?[^?]*\?>|<!--[\s\S]*?-->|<\/([A-Za-z][\w:.-]*)\s*>|<([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)|(<)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(xml))) {
    const top = stack[stack.length - 1];
    if (m[6]) {
      throw new SyntaxError(`malformed tag at offset ${m.index}: ${xml.slice(m.index, m.index + 40)}`);
    }
    if (m[5] !== undefined) {
      if (top === root && m[5].trim()) throw new SyntaxError(`text outside the root: ${m[5]}`);
      top.text += decode(m[5], `<${top.name}>`);
    } else if (m[1]) {
      if (top.name !== m[1]) throw new SyntaxError(`</${m[1]}> closes <${top.name}>`);
      stack.pop();
    } else if (m[2]) {
      const attrs: Record<string, string> = {};
      for (const a of m[3].matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
        if (a[1] in attrs) throw new SyntaxError(`duplicate attribute ${a[1]} on <${m[2]}>`);
        attrs[a[1]] = decode(a[2] ?? a[3], `${m[2]}@${a[1]}`);
      }
      const node: Node = { name: m[2], attrs, children: [], text: "" };
      if (top === root && root.children.length) throw new SyntaxError("two root elements");
      top.children.push(node);
      if (!m[4]) stack.push(node);
    }
  }
  if (stack.length !== 1) throw new SyntaxError(`unclosed <${stack[stack.length - 1].name}>`);
  assert.equal(root.children.length, 1, "one root element");
  return root.children[0];
}

function all(node: Node, pred: (n: Node) => boolean): Node[] {
  return [...(pred(node) ? [node] : []), ...node.children.flatMap((c) => all(c, pred))];
}
const hasClass = (cls: string) => (n: Node) => (n.attrs.class ?? "").split(" ").includes(cls);
const titleOf = (n: Node) => n.children.find((c) => c.name === "title")?.text;

/** A history shaped like a Trainer's metrics.jsonl: train logs, eval logs, a final summary. */
function history(): LogRecord[] {
  const h: LogRecord[] = [];
  for (let s = 10; s <= 500; s += 10) {
    h.push({
      step: s,
      epoch: s / 250,
      loss: 3 * Math.exp(-s / 150) + 0.5 + 0.05 * Math.sin(s),
      learning_rate: 5e-5 * Math.min(1, s / 100) * (1 - s / 600),
      grad_norm: s === 200 ? NaN : s === 300 ? Infinity : 1 + 0.5 * Math.cos(s),
    });
    if (s % 100 === 0) {
      h.push({ step: s, epoch: s / 250, eval_loss: 3 * Math.exp(-s / 150) + 0.7, eval_runtime: 1.2 });
    }
  }
  h.push({
    step: 500,
    epoch: 2,
    train_runtime: 100.5,
    train_samples_per_second: 40,
    total_flos: 1.2e12,
    train_loss: 1.1,
  });
  return h;
}

function checkPlainSvg(svg: string): Node {
  const doc = parseXml(svg);
  assert.equal(doc.name, "svg");
  assert.equal(doc.attrs.xmlns, "http://www.w3.org/2000/svg");
  assert.equal(doc.attrs.version, "1.1");
  const names = new Set(all(doc, () => true).map((n) => n.name));
  assert.ok(!names.has("script") && !names.has("foreignObject") && !names.has("image"), [...names].join());
  assert.ok(!/\son\w+=|href=/.test(svg), "no event handlers, no external references");
  return doc;
}

Deno.test("plotTrainingCurves() draws one series per metric with axes, ticks, labels and legends", () => {
  const svg = plotTrainingCurves(history(), undefined, { title: "demo run" });
  const doc = checkPlainSvg(svg);
  assert.equal(all(doc, hasClass("title"))[0].text, "demo run");
  const panels = all(doc, hasClass("panel"));
  assert.deepEqual(panels.map((p) => all(p, hasClass("panel-title"))[0].text), [
    "loss",
    "learning_rate",
    "grad_norm",
  ]);
  const series = all(doc, (n) => n.name === "polyline" && hasClass("series")(n));
  assert.deepEqual(series.map(titleOf), ["loss", "eval_loss", "train_loss", "learning_rate", "grad_norm"]);
  const count = (key: string) =>
    series.find((s) => titleOf(s) === key)!.attrs.points.trim().split(/\s+/).length;
  assert.equal(count("loss"), 50);
  assert.equal(count("eval_loss"), 5, "missing values are no points");
  assert.equal(count("grad_norm"), 48, "NaN and Infinity skipped");
  assert.equal(count("train_loss"), 1);
  assert.ok(!svg.includes("train_runtime") && !svg.includes("total_flos") && !svg.includes(">epoch<"));
  for (const p of panels) {
    assert.equal(all(p, hasClass("axis")).length, 2, "x and y axis");
    const labels = all(p, hasClass("axis-label")).map((n) => n.text);
    assert.equal(labels[0], "step");
    const ticks = all(p, hasClass("tick-label"));
    assert.ok(ticks.length >= 6, `${ticks.length} tick labels`);
    for (const t of ticks) assert.ok(Number.isFinite(Number(t.text)), `tick label ${t.text} is a number`);
    const legend = all(p, hasClass("legend-label")).map((n) => n.text);
    const drawn = all(p, (n) => n.name === "polyline").map(titleOf);
    assert.deepEqual(legend, drawn, "one legend entry per series");
  }
  const lrTicks = all(panels[1], hasClass("tick-label")).filter(hasClass("y")).map((n) => n.text);
  assert.ok(lrTicks.includes("1e-5") && lrTicks.includes("4e-5"), lrTicks.join());
  assert.match(all(panels[2], hasClass("note"))[0].text, /grad_norm: 2 non-finite skipped/);
  // Every point lies inside its panel's plot area.
  for (const p of panels) {
    const frame = p.children.find((c) => c.name === "rect")!;
    const [x0, y0] = [Number(frame.attrs.x), Number(frame.attrs.y)];
    const [x1, y1] = [x0 + Number(frame.attrs.width), y0 + Number(frame.attrs.height)];
    for (const s of all(p, (n) => n.name === "polyline")) {
      for (const pt of s.attrs.points.trim().split(/\s+/)) {
        const [x, y] = pt.split(",").map(Number);
        assert.ok(
          x >= x0 - 0.01 && x <= x1 + 0.01 && y >= y0 - 0.01 && y <= y1 + 0.01,
          `${titleOf(s)} point ${pt}`,
        );
      }
    }
  }
});

Deno.test("plotTrainingCurves() handles a single point, log scale and all-NaN metrics", () => {
  const one = parseXml(plotTrainingCurves([{ step: 1, loss: 2.5 }]));
  assert.equal(all(one, (n) => n.name === "polyline").length, 1);
  assert.equal(all(one, hasClass("marker")).length, 1, "a single point shows as a dot");
  const log = parseXml(
    plotTrainingCurves(
      [{ step: 1, loss: 10 }, { step: 2, loss: 1 }, { step: 3, loss: 0 }, { step: 4, loss: 0.1 }],
      undefined,
      {
        log_scale_loss: true,
      },
    ),
  );
  assert.match(all(log, hasClass("panel-title"))[0].text, /log scale/);
  assert.match(all(log, hasClass("note"))[0].text, /loss: 1 non-finite or <= 0 skipped/);
  const yTicks = all(log, (n) => hasClass("tick-label")(n) && hasClass("y")(n));
  const pairs = yTicks.map((n) => [Number(n.text), Number(n.attrs.y)]);
  assert.ok(pairs.some(([v]) => v === 0.1) && pairs.some(([v]) => v === 10), JSON.stringify(pairs));
  for (let i = 1; i < pairs.length; i++) {
    assert.ok(pairs[i][0] > pairs[i - 1][0] && pairs[i][1] < pairs[i - 1][1]);
  }
  // Equal ratios are equal distances on a log axis.
  const y = (v: number) => pairs.find(([t]) => t === v)![1];
  assert.ok(Math.abs((y(0.1) - y(1)) - (y(1) - y(10))) < 0.05);
  const nan = parseXml(
    plotTrainingCurves([{ step: 1, loss: 2, grad_norm: NaN }, { step: 2, grad_norm: "Infinity" }]),
  );
  const gradPanel = all(nan, hasClass("panel"))[1];
  assert.match(all(gradPanel, hasClass("note"))[0].text, /grad_norm: 2 non-finite skipped; no finite values/);
  assert.equal(all(gradPanel, hasClass("legend-label"))[0].text, "grad_norm (no data)");
});

Deno.test("plotTrainingCurves() escapes text and validates its input", () => {
  const nasty = `acc<b>&"c"'`;
  const svg = plotTrainingCurves([{ step: 1, [nasty]: 1 }, { step: 2, [nasty]: 2 }], undefined, {
    title: "<script>alert(1)</script> & more",
  });
  const doc = checkPlainSvg(svg);
  assert.equal(all(doc, hasClass("title"))[0].text, "<script>alert(1)</script> & more");
  assert.equal(all(doc, hasClass("legend-label"))[0].text, nasty);
  assert.equal(titleOf(all(doc, (n) => n.name === "polyline")[0]), nasty);
  for (const bad of ["<a><b></a>", '<a t="x<y"/>', "<a>&nbsp;</a>", "<a>x & y</a>", "<a/><b/>", "<a>"]) {
    assert.throws(() => parseXml(bad), SyntaxError, `the checker rejects ${bad}`);
  }
  assert.throws(() => plotTrainingCurves("x" as never), TypeError);
  assert.throws(
    () => plotTrainingCurves([{ loss: 1 }]),
    (e: Error) => e instanceof RangeError && /numeric "step"/.test(e.message),
  );
  assert.throws(() => plotTrainingCurves([{ step: 1 }]), RangeError);
});

Deno.test("plotTrainingCurves() and plotMetricsBar() write the file atomically when given a path", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/run/curves.svg`;
    const svg = plotTrainingCurves(history(), path);
    assert.equal(Deno.readTextFileSync(path), svg);
    const bar = plotMetricsBar({ accuracy: 0.9 }, `${dir}/run/bar.svg`);
    assert.equal(Deno.readTextFileSync(`${dir}/run/bar.svg`), bar);
    assert.deepEqual(
      [...Deno.readDirSync(`${dir}/run`)].map((e) => e.name).sort(),
      ["bar.svg", "curves.svg"],
      "no temp files left",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("plotMetricsBar() draws one labelled bar per finite metric, negatives left of zero", () => {
  const svg = plotMetricsBar({ rouge1: 0.412, rouge2: 0.19, "a&b<c>": -0.05, bad: NaN }, undefined, {
    value_label: "score",
  });
  const doc = checkPlainSvg(svg);
  const bars = all(doc, hasClass("bar"));
  assert.equal(bars.length, 3);
  assert.deepEqual(all(doc, hasClass("bar-label")).map((n) => n.text), ["rouge1", "rouge2", "a&b<c>"]);
  assert.deepEqual(all(doc, hasClass("value-label")).map((n) => n.text), ["0.412", "0.19", "-0.05"]);
  assert.equal(all(doc, hasClass("axis-label"))[0].text, "score");
  assert.match(all(doc, hasClass("note"))[0].text, /bad/);
  const zeroTick = all(doc, (n) => hasClass("tick-label")(n) && n.text === "0")[0];
  const zeroX = Number(zeroTick.attrs.x);
  const [r1, , neg] = bars.map((b) => [Number(b.attrs.x), Number(b.attrs.x) + Number(b.attrs.width)]);
  assert.ok(Math.abs(r1[0] - zeroX) < 0.02 && r1[1] > zeroX, "positive bar starts at 0");
  assert.ok(Math.abs(neg[1] - zeroX) < 0.02 && neg[0] < zeroX, "negative bar ends at 0");
  assert.throws(() => plotMetricsBar({}), RangeError);
  assert.throws(() => plotMetricsBar({ a: "1" as unknown as number }), TypeError);
});

// ---- PNG through resvg-wasm --------------------------------------------------------------------

/** Decode an 8-bit RGBA PNG (what resvg writes) into pixels. */
function decodePng(png: Uint8Array): { width: number; height: number; rgba: Uint8Array } {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let off = 8, width = 0, height = 0;
  const idat: Uint8Array[] = [];
  while (off < png.length) {
    const len = view.getUint32(off), type = new TextDecoder().decode(png.subarray(off + 4, off + 8));
    const data = png.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = view.getUint32(off + 8);
      height = view.getUint32(off + 12);
      assert.deepEqual([data[8], data[9]], [8, 6], "8-bit RGBA");
    } else if (type === "IDAT") idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 4, rgba = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x];
      const a = x >= 4 ? rgba[y * stride + x - 4] : 0, b = y ? rgba[(y - 1) * stride + x] : 0;
      const c = x >= 4 && y ? rgba[(y - 1) * stride + x - 4] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
      rgba[y * stride + x] = (v + pred) & 255;
    }
  }
  return { width, height, rgba };
}

Deno.test("svgToPng() rasterizes the curves: series colours and ink on a white page", async () => {
  const svg = plotTrainingCurves(history());
  const { width, height, rgba } = decodePng(await svgToPng(svg));
  assert.equal(width, Number(parseXml(svg).attrs.width));
  let ink = 0, blue = 0, orange = 0;
  for (let i = 0; i < rgba.length; i += 4) {
    const [r, g, b] = [rgba[i], rgba[i + 1], rgba[i + 2]];
    if (r < 200 || g < 200 || b < 200) ink++;
    if (Math.abs(r - 0x1f) < 40 && Math.abs(g - 0x77) < 40 && Math.abs(b - 0xb4) < 40) blue++;
    if (Math.abs(r - 0xff) < 40 && Math.abs(g - 0x7f) < 40 && Math.abs(b - 0x0e) < 50) orange++;
  }
  console.log(`PNG ${width}x${height}: ${ink} inked pixels, ${blue} loss-blue, ${orange} lr-orange`);
  assert.ok(ink > 0.01 * width * height && ink < 0.5 * width * height, `${ink} inked pixels`);
  assert.ok(blue > 100 && orange > 100, `series colours drawn: blue ${blue}, orange ${orange}`);
});
