import { Buffer } from "node:buffer";
import { inflateSync } from "node:zlib";
import { assert } from "../_assert.ts";
import { type LogRecord, plotMetricsBar, plotTrainingCurves, svgToPng } from "../../evaluation/plot.ts";
import { plotConfusionMatrix, plotMetricsComparison } from "../../evaluation/plot_eval.ts";
import { all, checkPlainSvg, hasClass, parseXml, titleOf } from "./_xml.ts";

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
  // a misspelt metric once drew an empty "(no data)" panel, columns NaN an SVG of NaN coordinates
  const logs = [{ step: 1, loss: 2, eval_loss: 2.5 }];
  assert.throws(() => plotTrainingCurves(logs, undefined, { metrics: ["loss", "eval_los"] }), {
    name: "RangeError",
    message: /"eval_los" is in no record with a numeric "step"; the records have loss, eval_loss$/,
  });
  for (const columns of [NaN, 0, 1.5]) {
    assert.throws(() => plotTrainingCurves(logs, undefined, { columns }), {
      name: "RangeError",
      message: /columns .* is not an integer >= 1/,
    });
  }
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

// ---- evaluation charts ---------------------------------------------------------------------------

Deno.test("plotConfusionMatrix() draws one cell per (true, predicted) pair with counts and row-normalized colour", () => {
  const labels = ["games", "libs", "a<b>&c", "empty"];
  const matrix = [[8, 2, 0, 0], [1, 89, 3, 7], [0, 5, 5, 0], [0, 0, 0, 0]];
  const svg = plotConfusionMatrix({ labels, matrix }, undefined, { title: "sections" });
  const doc = checkPlainSvg(svg);
  assert.equal(all(doc, hasClass("title"))[0].text, "sections");
  const cells = all(doc, hasClass("cell"));
  assert.equal(cells.length, 16, "n x n cells");
  assert.deepEqual(
    all(doc, hasClass("cell-value")).map((n) => Number(n.text)),
    matrix.flat(),
    "row-major counts",
  );
  assert.deepEqual(all(doc, hasClass("row-label")).map((n) => n.text), labels, "rows are the true labels");
  assert.deepEqual(all(doc, hasClass("col-label")).map((n) => n.text), labels, "columns the predicted ones");
  assert.deepEqual(all(doc, hasClass("row-total")).map((n) => Number(n.text)), [10, 100, 10, 0]);
  assert.deepEqual(all(doc, hasClass("axis-label")).map((n) => n.text).sort(), ["predicted", "true"]);
  assert.equal(titleOf(cells[4]), "true libs, predicted games: 1 (1% of the row)");
  // Rows go down, columns go right.
  const xy = (k: number) => [Number(cells[k].attrs.x), Number(cells[k].attrs.y)];
  assert.ok(xy(1)[0] > xy(0)[0] && xy(1)[1] === xy(0)[1] && xy(4)[1] > xy(0)[1] && xy(4)[0] === xy(0)[0]);
  // Colour is the share of the row: 8 of 10 is darker than 89 of 100, 5 of 10 equals 5 of 10.
  const blue = (k: number) => 255 - parseInt(cells[k].attrs.fill.slice(1, 3), 16); // 0 = white
  assert.ok(blue(0) < blue(5) && blue(0) > blue(1), `${blue(0)} ${blue(5)} ${blue(1)}`);
  assert.equal(cells[9].attrs.fill, cells[10].attrs.fill, "equal shares, equal colours");
  assert.equal(cells[0].attrs.fill, "#4c92c3", "8 of 10 = 80% of the way from white to #1f77b4");
  for (const k of [12, 13, 14, 15]) assert.equal(cells[k].attrs.fill, "#ffffff", "an empty row stays white");
  assert.equal(cells[5].attrs.fill, "#3886bc", "89 of 100");
});

Deno.test("plotConfusionMatrix() validates its input and writes atomically", () => {
  assert.throws(() => plotConfusionMatrix({ labels: [], matrix: [] }), RangeError);
  assert.throws(() => plotConfusionMatrix({ labels: ["a", "b"], matrix: [[1, 2]] }), TypeError);
  assert.throws(() => plotConfusionMatrix({ labels: ["a"], matrix: [[1, 2]] }), TypeError);
  assert.throws(() => plotConfusionMatrix({ labels: ["a"], matrix: [[-1]] }), /matrix\[0\]\[0\]/);
  assert.throws(() => plotConfusionMatrix({ labels: ["a"] } as never), TypeError);
  const many = Array.from({ length: 30 }, (_, i) => `class-number-${i}`);
  const big = plotConfusionMatrix({ labels: many, matrix: many.map((_, i) => many.map((_, j) => i * j)) });
  assert.equal(all(parseXml(big), hasClass("cell")).length, 900);
  assert.match(all(parseXml(big), hasClass("col-label"))[0].attrs.transform, /rotate\(-45/);
  const dir = Deno.makeTempDirSync();
  try {
    const svg = plotConfusionMatrix({ labels: [0, 1], matrix: [[3, 1], [0, 4]] }, `${dir}/run/confusion.svg`);
    assert.equal(Deno.readTextFileSync(`${dir}/run/confusion.svg`), svg);
    assert.deepEqual([...Deno.readDirSync(`${dir}/run`)].map((e) => e.name), ["confusion.svg"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("plotMetricsComparison() draws one bar per (metric, series) on a 0-100 axis with values and legend", () => {
  const series = {
    model: { rouge1: 41.23, rouge2: 19.5, rougeL: 38.2, rougeLsum: 100 },
    "lead-6 baseline": { rouge1: 30.1, rouge2: 11.8, rougeL: 28, rougeLsum: 50 },
    "x<&>": { rouge1: 0, rouge2: 1, rougeL: 2, rougeLsum: 3 },
  };
  const doc = checkPlainSvg(plotMetricsComparison(series, undefined, { title: "ROUGE" }));
  const bars = all(doc, hasClass("bar"));
  assert.equal(bars.length, 12);
  assert.deepEqual(
    bars.map(titleOf),
    ["rouge1", "rouge2", "rougeL", "rougeLsum"].flatMap((m) =>
      Object.keys(series).map((s) =>
        `${s}, ${m}: ${(series as Record<string, Record<string, number>>)[s][m]}`
      )
    ),
    "grouped by metric, one bar per series in series order",
  );
  assert.deepEqual(all(doc, hasClass("group-label")).map((n) => n.text), [
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
  ]);
  assert.deepEqual(all(doc, hasClass("legend-label")).map((n) => n.text), Object.keys(series));
  assert.deepEqual(
    all(doc, hasClass("value-label")).map((n) => n.text).slice(0, 6),
    ["41.23", "30.10", "0.00", "19.50", "11.80", "1.00"], // two decimals, as report.md
  );
  // One colour per series, the same in every group, matching its legend swatch.
  const swatches = all(doc, hasClass("legend")).flatMap((g) => all(g, (n) => n.name === "rect").slice(1));
  bars.forEach((b, k) => assert.equal(b.attrs.fill, swatches[k % 3].attrs.fill));
  assert.equal(new Set(swatches.map((r) => r.attrs.fill)).size, 3);
  const yTicks = all(doc, (n) => hasClass("tick-label")(n) && hasClass("y")(n)).map((n) => n.text);
  assert.deepEqual(yTicks, ["0", "20", "40", "60", "80", "100"]);
  assert.equal(all(doc, hasClass("axis-label")).find((n) => hasClass("y")(n))!.text, "score (0-100)");
  // Heights are proportional: 100 is twice 50 and the full axis.
  const h = (k: number) => Number(bars[k].attrs.height);
  assert.ok(Math.abs(h(9) - 2 * h(10)) < 0.02, `${h(9)} vs ${h(10)}`);
  const frame = all(doc, hasClass("panel"))[0].children.find((c) => c.name === "rect")!;
  assert.ok(Math.abs(h(9) - Number(frame.attrs.height)) < 0.02);
});

Deno.test("plotMetricsComparison() spans other scales, notes missing values and validates", () => {
  const doc = parseXml(
    plotMetricsComparison({ a: { loss: 2.5, ppl: 140 }, b: { loss: -0.5, ppl: NaN } }, undefined, {
      value_label: "raw",
    }),
  );
  assert.equal(all(doc, hasClass("bar")).length, 3);
  const yTicks = all(doc, (n) => hasClass("tick-label")(n) && hasClass("y")(n)).map((n) => Number(n.text));
  assert.ok(yTicks[0] < 0 && yTicks[yTicks.length - 1] >= 140, yTicks.join());
  assert.equal(all(doc, hasClass("axis-label")).find((n) => hasClass("y")(n))!.text, "raw");
  assert.match(all(doc, hasClass("note"))[0].text, /b\/ppl/);
  const missing = parseXml(plotMetricsComparison({ a: { bleu: 20, chrf: 50 }, b: { bleu: 3 } }));
  assert.equal(all(missing, hasClass("bar")).length, 3);
  assert.match(all(missing, hasClass("note"))[0].text, /b\/chrf/);
  assert.throws(() => plotMetricsComparison({}), RangeError);
  assert.throws(() => plotMetricsComparison({ a: {} }), RangeError);
  assert.throws(() => plotMetricsComparison({ a: { bleu: "1" as unknown as number } }), /series "a".*bleu/);
  assert.throws(() => plotMetricsComparison([] as never), TypeError);
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

Deno.test("plotTrainingCurves() draws 200,000 log records (spreading them into Math.min overflowed the stack)", () => {
  const log = Array.from({ length: 200_000 }, (_, i) => ({ step: i + 1, loss: 3 / Math.sqrt(i + 1) }));
  const svg = plotTrainingCurves(log);
  assert.match(svg, /<polyline/);
  assert.doesNotMatch(svg, /NaN/);
});
