import { assert } from "../_assert.ts";
import { type RecipeReport, writeRecipeReport } from "../../evaluation/run_report.ts";
import { all, checkPlainSvg, hasClass, titleOf } from "./_xml.ts";

/** A Trainer report.md as training/_trainer_io.ts writes it, plus a fenced block with a `#` line. */
const TRAINER_MD = [
  "# Training report",
  "",
  "## Settings",
  "",
  "| field | value |",
  "| --- | --- |",
  "| learning_rate | 0.0002 |",
  "",
  "## Results",
  "",
  "| metric | value |",
  "| --- | --- |",
  "| final_loss | 1.2345 |",
  "",
  "```sh",
  "# not a heading",
  "```",
  "",
  "## Memory",
  "",
  "peak 1.2 GB",
  "",
  "![training curves](curves.svg)",
  "",
].join("\n");

const LONG = "Lorem ipsum dolor sit amet. ".repeat(20); // 560 characters

function summarization(): RecipeReport {
  return {
    title: "Summarization: Debian descriptions -> synopses",
    task: "summarization",
    config: { model: "tiny", learning_rate: 2e-4, lora: { r: 8, target_modules: ["q_proj", "v_proj"] } },
    data: {
      description: "Debian package descriptions (long) and their synopses",
      train: 1000,
      validation: 200,
      evaluated: 50,
      stats: { "median synopsis words": 6, split: "validation" },
    },
    metrics: { rouge1: 41.23, rouge2: 19.5, rougeL: 38.2, rougeLsum: 38.9, n: 50 },
    baselines: {
      "lead-6": { rouge1: 30.1, rouge2: 11.8, rougeL: 28, rougeLsum: 28.1, n: 50 },
      "empty": { rouge1: 0, rouge2: 0, rougeL: 0, rougeLsum: 0, n: 50 },
    },
    targets: {
      "lead (README)": { metric: "rougeL", value: 37.7, source: "../shared/datasets/debian/README.md" },
      "paper": { metric: "rouge1", value: 42.46, source: "https://example.org/paper" },
      "unmeasured": { metric: "meteor", value: 10, source: "nowhere" },
    },
    examples: Array.from({ length: 7 }, (_, i) => ({
      source: i === 0 ? LONG : `document ${i}`,
      reference: `reference ${i}`,
      prediction: `prediction ${i}`,
    })),
    log_history: [{ step: 1, loss: 2 }, { step: 2, loss: 1.5 }],
    wall_seconds: 185.25,
    machine: "llvmpipe (LLVM 15.0.6, 256 bits), 2 CPU cores",
    notes: ["evaluated on the first 50 validation records"],
  };
}

function classification(): RecipeReport {
  return {
    title: "Classification: Debian sections",
    task: "classification",
    config: { labels: ["games", "libs", "utils"] },
    data: { description: "package | section", train: 300, validation: 30, evaluated: 30 },
    metrics: { accuracy: 70, macro_f1: 65.4321, n: 30 },
    baselines: { "majority (libs)": { accuracy: 40, macro_f1: 19.05, n: 30 } },
    targets: { "naive Bayes (README)": { metric: "accuracy", value: 75, source: "README" } },
    examples: [
      { source: "a | b\nsecond line", reference: "games", prediction: "libs *bold* <b>" },
    ],
    confusion: { labels: ["games", "libs", "utils"], matrix: [[8, 2, 0], [1, 9, 2], [0, 4, 4]] },
    per_class: {
      games: { precision: 88.8889, recall: 80, f1: 84.2105, support: 10 },
      libs: { precision: 60, recall: 75, f1: 66.6667, support: 12 },
      utils: { precision: 66.6667, recall: 50, f1: 57.1429, support: 8 },
    },
    wall_seconds: 3723,
    machine: "cpu",
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const section = (md: string, heading: string) => {
  const start = md.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `${heading} in the report`);
  const next = md.slice(start + heading.length + 2).search(/\n## /);
  return next < 0 ? md.slice(start) : md.slice(start, start + heading.length + 2 + next);
};

Deno.test("writeRecipeReport() writes the summary, tables, pictures, examples, config and the Trainer's report", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/report.md`, TRAINER_MD);
    await Deno.writeTextFile(
      `${dir}/curves.svg`,
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    );
    const path = await writeRecipeReport(dir, summarization());
    assert.equal(path, `${dir}/report.md`);
    const md = await Deno.readTextFile(path);
    assert.match(md, /^<!-- fledge:recipe-report -->\n# Summarization: Debian descriptions -> synopses\n/);
    // The summary line: headline vs the best baseline, every target.
    const summary = md.split("\n")[3];
    assert.equal(
      summary,
      "**rougeL 38.20** on 50 examples vs 28.00 for the best baseline (lead-6): +10.20. " +
        "Target lead (README) (rougeL 37.70): met (+0.50). " +
        "Target paper (rouge1 42.46): missed by 1.23. " +
        "Target unmeasured (meteor 10.00): not measured.",
    );
    // Rows = metrics, columns = model + baselines; n last.
    const metrics = section(md, "## Metrics");
    for (
      const row of [
        "| metric | model | lead-6 | empty |",
        "| --- | ---: | ---: | ---: |",
        "| rouge1 | 41.23 | 30.10 | 0.00 |",
        "| rouge2 | 19.50 | 11.80 | 0.00 |",
        "| rougeL | 38.20 | 28.00 | 0.00 |",
        "| rougeLsum | 38.90 | 28.10 | 0.00 |",
        "| n | 50 | 50 | 50 |",
        "| lead (README) | rougeL | 37.70 | 38.20 | met (+0.50) | ../shared/datasets/debian/README.md |",
        "| paper | rouge1 | 42.46 | 41.23 | missed by 1.23 | https://example.org/paper |",
        "| unmeasured | meteor | 10.00 | - | not measured | nowhere |",
      ]
    ) assert.ok(metrics.includes(row + "\n"), `${row}\nin\n${metrics}`);
    const pictures = section(md, "## Pictures");
    for (const p of ["(metrics.svg)", "(curves.svg)"]) assert.ok(pictures.includes(p), p);
    assert.ok(!md.includes("confusion.svg") && !md.includes("## Per class"), "no classification parts");
    // Data.
    const data = section(md, "## Data");
    for (const row of ["| train examples | 1000 |", "| evaluated | 50 |", "| median synopsis words | 6 |"]) {
      assert.ok(data.includes(row), row);
    }
    // The first five examples, the long source cut.
    const ex = section(md, "## Examples (5 of 7)");
    for (let i = 1; i < 5; i++) {
      assert.ok(
        ex.includes(`| ${i + 1} | document ${i} | reference ${i} | prediction ${i} |`),
        `example ${i}`,
      );
    }
    assert.ok(!ex.includes("document 5") && !ex.includes("prediction 6"), "only five");
    const first = ex.split("\n").find((l) => l.startsWith("| 1 |"))!;
    assert.ok(first.includes(LONG.slice(0, 250)) && !first.includes(LONG.trim()), "the long source is cut");
    assert.ok(first.split(" | ")[1].length <= 302, `${first.split(" | ")[1].length} characters`);
    // Config as YAML.
    assert.ok(
      section(md, "## Config").includes(
        "```yaml\nmodel: tiny\nlearning_rate: 0.0002\nlora:\n  r: 8\n  target_modules:\n    - q_proj\n    - v_proj\n```",
      ),
    );
    assert.ok(md.includes("Wall time 3m05s (185.3 s) on llvmpipe (LLVM 15.0.6, 256 bits), 2 CPU cores."));
    assert.ok(section(md, "## Notes").includes("- evaluated on the first 50 validation records"));
    // The Trainer's report, below, headings one level down, code untouched.
    const training = md.slice(md.indexOf("\n## Training\n"));
    for (
      const line of [
        "### Settings",
        "| learning_rate | 0.0002 |",
        "### Results",
        "| final_loss | 1.2345 |",
        "```sh\n# not a heading\n```",
        "### Memory",
        "peak 1.2 GB",
        "![training curves](curves.svg)",
      ]
    ) assert.ok(training.includes(line), `${line} kept under ## Training`);
    assert.ok(!md.includes("# Training report") && !/^## (Settings|Results|Memory)$/m.test(md));
    // The metrics chart: model vs each baseline, one bar per (metric, series).
    const svg = checkPlainSvg(await Deno.readTextFile(`${dir}/metrics.svg`));
    const bars = all(svg, hasClass("bar"));
    assert.equal(bars.length, 4 * 3);
    assert.equal(titleOf(bars[0]), "model, rouge1: 41.23");
    assert.deepEqual(all(svg, hasClass("legend-label")).map((n) => n.text), ["model", "lead-6", "empty"]);
    assert.ok(!all(svg, hasClass("group-label")).some((n) => n.text === "n"), "n is not a score");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["curves.svg", "metrics.svg", "report.md"], "no temp files, no PNG unless asked");
  });
});

Deno.test("writeRecipeReport() draws the confusion matrix, per-class table, PNGs, and escapes table text", async () => {
  await withDir(async (dir) => {
    const r = classification();
    r.log_history = [{ step: 1, loss: 2 }, { step: 2, loss: 1.5, eval_loss: 1.7 }, {
      step: 2,
      train_runtime: 3,
    }];
    await writeRecipeReport(dir, r, { png: true });
    const md = await Deno.readTextFile(`${dir}/report.md`);
    assert.equal(
      md.split("\n")[3],
      "**accuracy 70.00** on 30 examples vs 40.00 for the best baseline (majority (libs)): +30.00. " +
        "Target naive Bayes (README) (accuracy 75.00): missed by 5.00.",
    );
    assert.ok(md.includes("| macro\\_f1 | 65.43 | 19.05 |"), "metric names escaped in the table");
    const pc = section(md, "## Per class");
    for (
      const row of [
        "| class | precision | recall | F1 | support |",
        "| games | 88.89 | 80.00 | 84.21 | 10 |",
        "| libs | 60.00 | 75.00 | 66.67 | 12 |",
        "| utils | 66.67 | 50.00 | 57.14 | 8 |",
      ]
    ) assert.ok(pc.includes(row), row);
    assert.ok(section(md, "## Pictures").includes("![confusion matrix](confusion.svg)"));
    assert.ok(section(md, "## Pictures").includes("(curves.svg)"), "curves drawn from log_history");
    // Pipes, newlines, emphasis and HTML in examples stay inside their cell.
    const ex = section(md, "## Examples (1 of 1)").split("\n").find((l) => l.startsWith("| 1 |"))!;
    assert.equal(ex, "| 1 | a \\| b<br>second line | games | libs \\*bold\\* &lt;b> |");
    assert.equal(ex.split(/(?<!\\)\|/).length, 6, "five cell borders");
    assert.ok(section(md, "## Data").includes("package | section"), "plain text outside tables");
    assert.ok(md.includes("Wall time 1h02m (3723.0 s) on cpu."));
    assert.ok(!md.includes("## Training"), "no Trainer report to keep");
    // The confusion matrix: n x n cells with the counts.
    const cm = checkPlainSvg(await Deno.readTextFile(`${dir}/confusion.svg`));
    assert.equal(all(cm, hasClass("cell")).length, 9);
    assert.deepEqual(all(cm, hasClass("cell-value")).map((n) => Number(n.text)), [8, 2, 0, 1, 9, 2, 0, 4, 4]);
    assert.equal(
      all(checkPlainSvg(await Deno.readTextFile(`${dir}/metrics.svg`)), hasClass("bar")).length,
      4,
    );
    const curves = await Deno.readTextFile(`${dir}/curves.svg`);
    assert.ok(curves.includes("eval_loss") && !curves.includes("train_runtime"));
    for (const name of ["metrics", "confusion", "curves"]) {
      const png = await Deno.readFile(`${dir}/${name}.png`);
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], `${name}.png is a PNG`);
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      [
        "confusion.png",
        "confusion.svg",
        "curves.png",
        "curves.svg",
        "metrics.png",
        "metrics.svg",
        "report.md",
      ],
    );
  });
});

Deno.test("writeRecipeReport() calls a tie with a README target 'equal, not above' (it said 'met (+0.00)')", async () => {
  await withDir(async (dir) => {
    const r = classification();
    for (
      const [accuracy, says] of [[75.0027, "equal, not above"], [75.01, "met (+0.01)"], [
        74.99,
        "missed by 0.01",
      ]] as const
    ) {
      await writeRecipeReport(dir, { ...r, metrics: { ...r.metrics, accuracy } });
      const md = await Deno.readTextFile(`${dir}/report.md`);
      assert.ok(
        md.split("\n")[3].endsWith(`Target naive Bayes (README) (accuracy 75.00): ${says}.`),
        md.split("\n")[3],
      );
    }
  });
});

Deno.test("writeRecipeReport() run twice keeps the Trainer's report once", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/report.md`, TRAINER_MD);
    await writeRecipeReport(dir, summarization());
    const once = await Deno.readTextFile(`${dir}/report.md`);
    const r = summarization();
    r.metrics.rougeL = 39;
    await writeRecipeReport(dir, r);
    const twice = await Deno.readTextFile(`${dir}/report.md`);
    assert.equal(twice.split("\n## Training\n").length, 2, "one Training section");
    assert.equal(twice.split("### Settings").length, 2);
    assert.ok(twice.includes("#### ") === false, "headings not demoted again");
    assert.equal(twice.slice(twice.indexOf("## Training")), once.slice(once.indexOf("## Training")));
    assert.ok(twice.includes("**rougeL 39.00**"), "the new numbers");
    // A recipe report with nothing under it stays without a Training section.
    await Deno.remove(`${dir}/report.md`);
    await writeRecipeReport(dir, r);
    await writeRecipeReport(dir, r);
    assert.ok(!(await Deno.readTextFile(`${dir}/report.md`)).includes("## Training"));
  });
});

Deno.test("writeRecipeReport() lists every problem of a bad report at once and writes nothing", async () => {
  await withDir(async (dir) => {
    const r = summarization() as unknown as Record<string, unknown>;
    r.task = "tagging";
    r.metrics = { bleu: 1, bleu_signature: "nrefs:1" };
    r.baselines = { model: { bleu: 0 } };
    r.wall_seconds = -1;
    (r.data as Record<string, unknown>).train = 1.5;
    r.examples = [{ source: "x", reference: 1, prediction: "y" }];
    await assert.rejects(
      () => writeRecipeReport(dir, r as unknown as RecipeReport),
      (e: Error) => {
        assert.ok(e instanceof TypeError, e.message);
        for (
          const k of [
            "6 problems",
            "task:",
            "metrics.bleu_signature: expected a number",
            "as `signature`",
            "baselines.model",
            "wall_seconds",
            "data.train",
            "examples[0].reference",
          ]
        ) {
          assert.ok(e.message.includes(k), `${k} in\n${e.message}`);
        }
        return true;
      },
    );
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
  });
});
