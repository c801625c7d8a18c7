import { assert } from "../_assert.ts";
// deno-lint-ignore no-import-prefix
import { parquetWriteBuffer } from "npm:hyparquet-writer@^0.17";
import { type MockFiles, startHubServer } from "../_hub_server.ts";
import { loadTaskData, type TaskKind } from "../../data/task_data.ts";
import { writeJsonl } from "../../data/jsonl.ts";
import { HubError } from "../../models/hub/hub.ts";

/** Assert that `p` rejects with `name`, a one-line message matching every pattern. */
async function rejectsOneLine(p: Promise<unknown>, name: string, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof Error, String(e));
    assert.equal(e.name, name, e.message);
    if (name === "HubError") assert.ok(e instanceof HubError && ["connection", "offline"].includes(e.kind));
    assert.ok(!e.message.includes("\n"), `not one line: ${e.message}`);
    assert.match(e.message, /^Cannot load /);
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fledge-taskdata-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------- Debian (the default)

const DEBIAN: [TaskKind, Record<string, unknown>, number, number][] = [
  ["summarization", {}, 14000, 2228],
  ["translation", {}, 18494, 2047],
  ["translation", { level: "short" }, 10302, 1153],
  ["translation", { level: "long" }, 8192, 894],
  ["classification", {}, 9501, 1159],
  ["classification", { debian_task: "classification-binary" }, 1390, 182],
];

Deno.test("loadTaskData() reads the Debian data of each task by default, with the README's counts", async () => {
  for (const [task, opts, train, validation] of DEBIAN) {
    const d = await loadTaskData(task, opts);
    const what = `${task} ${JSON.stringify(opts)}`;
    assert.equal(d.train.length, train, what);
    assert.equal(d.validation.length, validation, what);
    assert.match(d.description, new RegExp(`^Debian .*${train} train / ${validation} validation`), what);
    for (const e of [d.train[0], d.validation.at(-1)!]) {
      assert.ok(typeof e.source === "string" && e.source.length > 0 && typeof e.target === "string", what);
      assert.equal(typeof e.id, "string", what);
    }
  }
});

Deno.test("loadTaskData() maps Debian fields: translation direction and level, classification labels", async () => {
  const long = await loadTaskData("translation", { level: "long", translation_direction: "de-en" });
  assert.ok(long.train.every((e) => e.id!.endsWith(":long")));
  const en = await loadTaskData("translation", { level: "long", max_train_samples: 1 });
  assert.equal(en.train[0].source, long.train[0].target);
  assert.equal(en.train[0].target, long.train[0].source);

  const multi = await loadTaskData("classification");
  assert.deepEqual(multi.labels, ["devel", "java", "javascript", "libs", "net", "perl", "python", "utils"]);
  assert.equal(multi.train.filter((e) => e.target === "libs").length, 1224);
  assert.equal(multi.validation.filter((e) => e.target === "python").length, 171);

  const binary = await loadTaskData("classification", { debian_task: "classification-binary" });
  assert.deepEqual(binary.labels, ["other", "games"]);
  assert.equal(binary.train.filter((e) => e.target === "games").length, 685);
  assert.equal(binary.validation.filter((e) => e.target === "other").length, 93);
  const summ = await loadTaskData("summarization", { max_train_samples: 2, max_eval_samples: 0 });
  assert.equal(summ.train.length, 2);
  assert.equal(summ.validation.length, 0);
});

Deno.test("loadTaskData() shuffles with seed before max_*_samples, and file order without", async () => {
  const opts = { debian_task: "classification-binary" as const, max_train_samples: 20, max_eval_samples: 5 };
  const plain = await loadTaskData("classification", opts);
  const full = await loadTaskData("classification", { debian_task: "classification-binary" });
  assert.deepEqual(plain.train, full.train.slice(0, 20));
  const a = await loadTaskData("classification", { ...opts, seed: 3 });
  const b = await loadTaskData("classification", { ...opts, seed: 3 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.train, plain.train);
  assert.equal(a.train.length, 20);
  assert.match(a.description, /, train and validation sampled with seed 3/);
  // a split that is not cut keeps its file order: a recipe's validation does not depend on its seed
  const trainOnly = await loadTaskData("classification", { ...opts, max_eval_samples: undefined, seed: 3 });
  assert.deepEqual(trainOnly.train, a.train);
  assert.deepEqual(trainOnly.validation, full.validation);
  assert.match(trainOnly.description, /, train sampled with seed 3/);
});

// ---------------------------------------------------------------- the hub, against a mock

const str = (name: string, data: string[]) => ({ name, data, type: "STRING" as const });
const buf = (b: ArrayBuffer) => new Uint8Array(b);
const cnn = (from: number, n: number) => {
  const ids = Array.from({ length: n }, (_, i) => from + i);
  return buf(parquetWriteBuffer({
    columnData: [
      str("article", ids.map((i) => `  Article ${i}.\nSecond line.  `)),
      str("highlights", ids.map((i) => `Summary ${i}.`)),
      str("id", ids.map((i) => `id${i}`)),
    ],
  }));
};
const wmt = (pairs: [string, string][]) =>
  buf(parquetWriteBuffer({
    columnData: [{ name: "translation", data: pairs.map(([de, en]) => ({ de, en })) }],
    schema: [
      { name: "schema", num_children: 1 },
      { name: "translation", num_children: 2, repetition_type: "OPTIONAL" },
      { name: "de", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "en", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
    ],
  }));
const sst = (rows: [string, number][]) =>
  buf(parquetWriteBuffer({
    columnData: [
      str("sentence", rows.map((r) => r[0])),
      { name: "label", data: BigInt64Array.from(rows.map((r) => BigInt(r[1]))), type: "INT64" },
      { name: "idx", data: Int32Array.from(rows.map((_, i) => i)), type: "INT32" },
    ],
  }));

const DATASETS: Record<string, MockFiles> = {
  "abisee/cnn_dailymail": {
    "3.0.0/train-00000-of-00002.parquet": cnn(0, 6),
    "3.0.0/train-00001-of-00002.parquet": cnn(6, 4),
    "3.0.0/validation-00000-of-00001.parquet": cnn(100, 3),
  },
  "wmt/wmt14": {
    "de-en/train-00000-of-00001.parquet": wmt([["Hallo Welt", "Hello world"], [
      "Guten Morgen",
      "Good morning",
    ]]),
    "de-en/validation-00000-of-00001.parquet": wmt([["Danke", "Thanks"]]),
  },
  "nyu-mll/glue": {
    "sst2/train-00000-of-00001.parquet": sst([["a gorgeous film", 1], ["dull", 0], ["fine", 1]]),
    "sst2/validation-00000-of-00001.parquet": sst([["meh", 0], ["great", 1]]),
    "sst2/test-00000-of-00001.parquet": sst([["hidden", -1]]),
  },
};

Deno.test("loadTaskData() loads cnn_dailymail, wmt14 and sst2 from the hub, then offline from the cache", async () => {
  const server = startHubServer({ datasets: DATASETS });
  const cache_dir = await Deno.makeTempDir({ prefix: "fledge-taskdata-hub-" });
  const hub = { endpoint: server.url, cache_dir, token: false, offline: false, progress: false };
  try {
    const calls: [TaskKind, Record<string, unknown>][] = [
      ["summarization", { dataset: "cnn_dailymail", dataset_config: "3.0.0" }],
      ["translation", { dataset: "wmt/wmt14" }],
      ["classification", { dataset: "glue", dataset_config: "sst2" }],
    ];
    const online = [];
    for (const [task, opts] of calls) online.push(await loadTaskData(task, { ...opts, hub }));
    const [summ, trans, cls] = online;
    assert.equal(summ.train.length, 10);
    assert.deepEqual(summ.validation[0], {
      id: "id100",
      source: "  Article 100.\nSecond line.  ",
      target: "Summary 100.",
    });
    assert.equal(summ.labels, null);
    assert.match(summ.description, /abisee\/cnn_dailymail 3\.0\.0.*10 train \/ 3 validation/);
    assert.deepEqual(trans.train, [
      { source: "Hello world", target: "Hallo Welt" },
      { source: "Good morning", target: "Guten Morgen" },
    ]);
    assert.deepEqual(trans.validation, [{ source: "Thanks", target: "Danke" }]);
    assert.deepEqual(cls.labels, ["negative", "positive"]);
    assert.deepEqual(cls.train.map((e) => e.target), ["positive", "negative", "positive"]);
    assert.deepEqual(cls.validation[1], { id: "1", source: "great", target: "positive" });
    const reversed = await loadTaskData("translation", {
      dataset: "wmt14",
      translation_direction: "de-en",
      hub,
    });
    assert.equal(reversed.train[0].source, "Hallo Welt");
    const sampled = await loadTaskData("summarization", {
      dataset: "abisee/cnn_dailymail",
      max_train_samples: 4,
      seed: 1,
      hub,
    });
    assert.equal(sampled.train.length, 4);

    // The same calls offline: answered from the cache, no request.
    const n = server.requests.length;
    for (const [i, [task, opts]] of calls.entries()) {
      assert.deepEqual(await loadTaskData(task, { ...opts, hub: { ...hub, offline: true } }), online[i]);
    }
    assert.equal(server.requests.length, n, "an offline load must not make a request");
    // A split that is not cached, offline: one line naming the dataset and the way out.
    await rejectsOneLine(
      loadTaskData("classification", { dataset: "sst2", eval_split: "test", hub: { ...hub, offline: true } }),
      "HubError",
      /nyu-mll\/glue config "sst2" split "test"/,
      /HF_HUB_OFFLINE/,
      /Debian/,
    );
    // sst2's hidden test labels (-1) are outside the label set.
    await rejectsOneLine(
      loadTaskData("classification", { dataset: "sst2", eval_split: "test", hub }),
      "RangeError",
      /split "test" row 0: column "label": label -1 is outside 0\.\.1 of the label set \(the labels are negative, positive\)/,
    );
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: "cnn_dailymail", source_column: "text", hub }),
      "TypeError",
      /column "text" is missing \(the record has columns article, highlights, id\); pass --source_column/,
    );
    await rejectsOneLine(
      loadTaskData("classification", { dataset: "cnn_dailymail", hub }),
      "TypeError",
      /it is a summarization dataset/,
    );
  } finally {
    await server.close();
    await Deno.remove(cache_dir, { recursive: true });
  }
});

Deno.test("loadTaskData() says in one line that the hub is down and nothing is cached", async () => {
  const server = startHubServer({ datasets: DATASETS });
  const endpoint = server.url;
  await server.close();
  await withTempDir(async (cache_dir) => {
    const hub = { endpoint, cache_dir, token: false, offline: false, progress: false, max_retries: 0 };
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: "cnn_dailymail", hub }),
      "HubError",
      /hub dataset abisee\/cnn_dailymail config "3\.0\.0" split "train"/,
      /could not be reached/,
      new RegExp(`HF_ENDPOINT \\(now ${endpoint.replaceAll(".", "\\.")}\\)`),
      /HF_HUB_OFFLINE/,
      /without --dataset .*Debian data offline|leave out --dataset to use the Debian data offline/,
    );
  });
});

// ---------------------------------------------------------------- local files

Deno.test("loadTaskData() reads local jsonl and csv files with a column mapping", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/train.jsonl`, [
      { key: "a", body: " Long text one. ", tl: "One." },
      { key: "b", body: "Long text two.", tl: "Two." },
    ]);
    await writeJsonl(`${dir}/val.jsonl`, [{ key: "c", body: "Long text three.", tl: "Three." }]);
    const s = await loadTaskData("summarization", {
      dataset: `${dir}/train.jsonl`,
      eval_file: `${dir}/val.jsonl`,
      source_column: "body",
      target_column: "tl",
    });
    assert.deepEqual(s.train[0], { source: " Long text one. ", target: "One." });
    assert.deepEqual(s.validation, [{ source: "Long text three.", target: "Three." }]);
    assert.match(s.description, /body -> tl.*2 train \/ 1 validation/);
    // One file and no eval_file: train only.
    const only = await loadTaskData("summarization", {
      dataset: `${dir}/train.jsonl`,
      source_column: "body",
      target_column: "tl",
    });
    assert.equal(only.validation.length, 0);
    assert.match(only.description, /no eval_file/);

    await Deno.writeTextFile(`${dir}/sst.csv`, 'sentence,label\n"good, really",1\nbad,0\nok,1\n');
    await Deno.writeTextFile(`${dir}/sst_val.tsv`, "sentence\tlabel\nfine\tpositive\n");
    const c = await loadTaskData("classification", {
      dataset: `${dir}/sst.csv`,
      eval_file: `${dir}/sst_val.tsv`,
      source_column: "sentence",
      label_names: ["negative", "positive"],
    });
    assert.deepEqual(c.labels, ["negative", "positive"]);
    assert.deepEqual(c.train.map((e) => [e.source, e.target]), [
      ["good, really", "positive"],
      ["bad", "negative"],
      ["ok", "positive"],
    ]);
    assert.deepEqual(c.validation[0].target, "positive");
    // Without label_names: the sorted distinct train labels (numbers in numeric order).
    await Deno.writeTextFile(`${dir}/n.csv`, "text,label\na,10\nb,2\nc,2\n");
    assert.deepEqual((await loadTaskData("classification", { dataset: `${dir}/n.csv` })).labels, ["2", "10"]);
  });
});

Deno.test("loadTaskData() reads a local folder of split files, with default columns", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/train.jsonl`, [{ source: "hi", target: "hallo" }, {
      source: "yes",
      target: "ja",
    }]);
    await writeJsonl(`${dir}/validation.jsonl`, [{ source: "no", target: "nein" }]);
    const t = await loadTaskData("translation", { dataset: dir });
    assert.deepEqual(t.validation, [{ source: "no", target: "nein" }]);
    // Hugging Face's wmt14 layout: a translation struct, found by default, in either direction,
    // and named by its path
    const wmt = [{ translation: { de: "Hallo", en: "Hello" } }, { translation: { de: "Ja", en: "Yes" } }];
    await writeJsonl(`${dir}/wmt.jsonl`, wmt);
    const w = await loadTaskData("translation", { dataset: `${dir}/wmt.jsonl` });
    assert.deepEqual(w.train[0], { source: "Hello", target: "Hallo" });
    const de = await loadTaskData("translation", {
      dataset: `${dir}/wmt.jsonl`,
      translation_direction: "de-en",
    });
    assert.deepEqual(de.train[1], { source: "Ja", target: "Yes" });
    const paths = { source_column: "translation.de", target_column: "translation.en" };
    assert.deepEqual(
      (await loadTaskData("translation", { dataset: `${dir}/wmt.jsonl`, ...paths })).train,
      de.train,
    );
    await rejectsOneLine(
      loadTaskData("translation", { dataset: `${dir}/wmt.jsonl`, source_column: "translation.fr" }),
      "TypeError",
      /wmt\.jsonl record 1: column "translation\.fr" is missing \(the record has columns translation\.de, translation\.en\)/,
    );
    await writeJsonl(`${dir}/train.jsonl`, [{ text: "x", label: "b" }, { text: "y", label: "a" }]);
    await writeJsonl(`${dir}/validation.jsonl`, [{ text: "z", label: "a" }]);
    const c = await loadTaskData("classification", { dataset: dir });
    assert.deepEqual(c.labels, ["a", "b"]);
    assert.equal(c.validation[0].target, "a");
  });
});

// ---------------------------------------------------------------- errors, one line each

Deno.test("loadTaskData() names a missing column, with the columns that exist and the fix", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/t.jsonl`, [{ document: "d", summary: "s" }, { document: "d2", synopsis: "s2" }]);
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: `${dir}/t.jsonl` }),
      "TypeError",
      new RegExp(`${dir}/t\\.jsonl record 2: column "summary" is missing`),
      /the record has columns document, synopsis/,
      /--target_column/,
    );
    await rejectsOneLine(
      loadTaskData("translation", { dataset: `${dir}/t.jsonl` }),
      "TypeError",
      /record 1: column "en" is missing \(the record has columns document, summary\); pass --source_column/,
    );
  });
});

Deno.test("loadTaskData() refuses an empty split", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/train.jsonl`, [{ text: "x", label: "a" }]);
    await Deno.writeTextFile(`${dir}/validation.jsonl`, "\n");
    await rejectsOneLine(
      loadTaskData("classification", { dataset: dir }),
      "RangeError",
      new RegExp(`${dir} split "validation": the validation split has no records`),
    );
    await Deno.writeTextFile(`${dir}/empty.csv`, "text,label\n");
    await rejectsOneLine(
      loadTaskData("classification", { dataset: `${dir}/empty.csv` }),
      "RangeError",
      /empty\.csv: the train split has no records/,
    );
  });
});

Deno.test("loadTaskData() names a datasets-made parquet's ClassLabel ids as the hub loader does (they were '0'/'1')", async () => {
  await withTempDir(async (dir) => {
    const features = {
      sentence: { _type: "Value" },
      label: { names: ["negative", "positive"], _type: "ClassLabel" },
    };
    for (const split of ["train", "validation"]) {
      await Deno.writeFile(
        `${dir}/${split}-00000-of-00001.parquet`,
        new Uint8Array(parquetWriteBuffer({
          columnData: [{ name: "sentence", data: ["great", "awful", "fine"] }, {
            name: "label",
            data: [1, 0, 1],
          }],
          kvMetadata: [{ key: "huggingface", value: JSON.stringify({ info: { features } }) }],
        })),
      );
    }
    const d = await loadTaskData("classification", { dataset: dir, source_column: "sentence" });
    assert.deepEqual(d.labels, ["negative", "positive"]);
    assert.deepEqual(d.train.map((e) => e.target), ["positive", "negative", "positive"]);
    // label_names still wins
    const named = await loadTaskData("classification", {
      dataset: dir,
      source_column: "sentence",
      label_names: ["bad", "good"],
    });
    assert.deepEqual(named.train.map((e) => e.target), ["good", "bad", "good"]);
  });
});

Deno.test("loadTaskData() refuses a classification with one label before training (it failed after it)", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/one.jsonl`, [{ review: "x", sentiment: "pos" }, {
      review: "y",
      sentiment: "pos",
    }]);
    await rejectsOneLine(
      loadTaskData("classification", {
        dataset: `${dir}/one.jsonl`,
        source_column: "review",
        target_column: "sentiment",
      }),
      "RangeError",
      /column "sentiment" of .*one\.jsonl holds 1 label \(pos\); a classifier needs at least two/,
    );
    await rejectsOneLine(
      loadTaskData("classification", {
        dataset: `${dir}/one.jsonl`,
        source_column: "review",
        target_column: "sentiment",
        label_names: ["pos"],
      }),
      "RangeError",
      /label_names gives 1 label \(pos\)/,
    );
  });
});

Deno.test("loadTaskData() names a label outside the label set, with the row and the allowed labels", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/t.jsonl`, [{ text: "a", label: "pos" }, { text: "b", label: "neu" }]);
    await rejectsOneLine(
      loadTaskData("classification", { dataset: `${dir}/t.jsonl`, label_names: ["neg", "pos"] }),
      "RangeError",
      /t\.jsonl record 2: column "label": label "neu" is not in the label set \(the labels are neg, pos\)/,
    );
    await writeJsonl(`${dir}/i.jsonl`, [{ text: "a", label: 0 }, { text: "b", label: 2 }]);
    await rejectsOneLine(
      loadTaskData("classification", { dataset: `${dir}/i.jsonl`, label_names: ["neg", "pos"] }),
      "RangeError",
      /i\.jsonl record 2: column "label": label 2 is outside 0\.\.1/,
    );
    // a name with spaces around it (or none) would score other verbalizer tokens: refused
    for (const [names, bad] of [[["neg", " pos"], '" pos"'], [["neg", ""], '""']] as const) {
      await rejectsOneLine(
        loadTaskData("classification", { dataset: `${dir}/i.jsonl`, label_names: [...names] }),
        "TypeError",
        new RegExp(`label_names ${bad} is empty or has spaces around it`),
      );
    }
    // a blank label (null from an empty CSV field, as HF reads it), or one with spaces around it,
    // would become a class of its own: refused
    for (
      const [label, shown, what] of [
        ["", "is", "null \\(in a CSV, an empty field\\)"],
        ["pos ", '"pos " is', "padded with spaces"],
      ]
    ) {
      await Deno.writeTextFile(`${dir}/b.csv`, `text,label\na,pos\nb,${label}\n`);
      await rejectsOneLine(
        loadTaskData("classification", { dataset: `${dir}/b.csv` }),
        "RangeError",
        new RegExp(`b\\.csv record 2: column "label": label ${shown} ${what}; fix the record`),
      );
    }
    // integer labels of a label set are themselves, as their digit strings are: the label set
    // ["1", "2"] (a run's, say) maps 1 to "1", not to its second name
    await writeJsonl(`${dir}/12.jsonl`, [{ text: "a", label: 1 }, { text: "b", label: "2" }, {
      text: "c",
      label: 2,
    }]);
    const d = await loadTaskData("classification", { dataset: `${dir}/12.jsonl` });
    assert.deepEqual(d.labels, ["1", "2"]);
    const named = await loadTaskData("classification", {
      dataset: `${dir}/12.jsonl`,
      label_names: d.labels!,
    });
    assert.deepEqual(named.train.map((e) => e.target), ["1", "2", "2"]);
    await writeJsonl(`${dir}/v.jsonl`, [{ text: "c", label: "pos" }, { text: "d", label: "other" }]);
    await rejectsOneLine(
      loadTaskData("classification", { dataset: `${dir}/t.jsonl`, eval_file: `${dir}/v.jsonl` }),
      "RangeError",
      /v\.jsonl record 2: label "other" is not in the label set of the train split \(neu, pos\)/,
    );
    // a label set that a train sample gave: the sample named as the cause
    await rejectsOneLine(
      loadTaskData("classification", {
        dataset: `${dir}/t.jsonl`,
        eval_file: `${dir}/v.jsonl`,
        max_train_samples: 2,
      }),
      "RangeError",
      /or raise max_train_samples \(2 train records gave that set\)$/,
    );
  });
});

Deno.test("loadTaskData() names a corrupt parquet file", async () => {
  await withTempDir(async (dir) => {
    const good = sst([["fine", 1], ["bad", 0]]);
    await Deno.writeFile(`${dir}/train.parquet`, good.subarray(0, good.length - 9));
    await assert.rejects(
      loadTaskData("classification", { dataset: `${dir}/train.parquet`, source_column: "sentence" }),
      (e) => {
        assert.ok(e instanceof SyntaxError, String(e));
        assert.ok(!e.message.includes("\n"), e.message);
        assert.match(e.message, new RegExp(`${dir}/train\\.parquet: not a valid parquet file`));
        return true;
      },
    );
    await Deno.writeFile(`${dir}/ok.parquet`, good);
    const d = await loadTaskData("classification", {
      dataset: `${dir}/ok.parquet`,
      source_column: "sentence",
      label_names: ["negative", "positive"],
    });
    assert.deepEqual(d.train.map((e) => e.target), ["positive", "negative"]);
  });
});

Deno.test("loadTaskData() refuses unknown dataset names, extensions and options", async () => {
  await withTempDir(async (dir) => {
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: "xsum" }),
      "TypeError",
      /dataset "xsum" is neither a known dataset \(debian, cnn_dailymail.*\) nor an existing file or folder/,
    );
    await Deno.writeTextFile(`${dir}/data.xlsx`, "x");
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: `${dir}/data.xlsx` }),
      "TypeError",
      /data\.xlsx: extension "\.xlsx" is not one of \.jsonl/,
    );
    await Deno.writeTextFile(`${dir}/t.txt.gz`, "x"); // named by its format, not ".gz" (.jsonl.gz is read)
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: `${dir}/t.txt.gz` }),
      "TypeError",
      /t\.txt\.gz: plain text \(\.txt\) is not one of \.jsonl, .*\(each but parquet also \.gz, \.zst, \.xz or \.bz2\)/,
    );
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: "debian", level: "short", learning_rate: 1 } as never),
      "TypeError",
      /unknown option "learning_rate"/,
    );
    await rejectsOneLine(
      loadTaskData("summarization", { level: "short" }),
      "TypeError",
      /level is for Debian translation only/,
    );
    await rejectsOneLine(
      loadTaskData("translation", { debian_task: "classification" }),
      "TypeError",
      /debian_task "classification" is not a translation dataset/,
    );
    // options the source would not read
    await rejectsOneLine(
      loadTaskData("summarization", { train_split: "validation", hub: { offline: true } }),
      "TypeError",
      /hub is for hub datasets only; train_split names a split of a hub dataset or a local folder, and the Debian data has its own train and validation files; drop them/,
    );
    await Deno.writeTextFile(`${dir}/one.jsonl`, JSON.stringify({ document: "a b c", summary: "a" }) + "\n");
    await rejectsOneLine(
      loadTaskData("summarization", { dataset: `${dir}/one.jsonl`, eval_split: "test" }),
      "TypeError",
      /eval_split names a split of a hub dataset or a local folder, and .*one\.jsonl is one file; drop it/,
    );
  });
});
