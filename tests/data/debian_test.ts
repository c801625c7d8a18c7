import { assert, SHARED } from "../_assert.ts";
import { debianRoot, loadDebian, requireDebianFiles } from "../../data/debian.ts";

const root = `${SHARED}/datasets/debian`;

Deno.test("loadDebian() finds the shared folder by default and matches the README counts", async () => {
  assert.equal(Deno.realPathSync(debianRoot()), Deno.realPathSync(root));
  const counts: Record<string, number> = {};
  for (const task of ["summarization", "translation", "classification", "classification-binary"] as const) {
    counts[task] = (await loadDebian(task, "validation")).length;
  }
  assert.deepEqual(counts, {
    summarization: 2228,
    translation: 2047,
    classification: 1159,
    "classification-binary": 182,
  });
  assert.equal((await loadDebian("summarization", "train", { root })).length, 14000);
});

Deno.test("loadDebian() normalizes the records of each task", async () => {
  const [s] = await loadDebian("summarization", "validation", { max_samples: 1 });
  assert.deepEqual(Object.keys(s), ["document", "summary"]);
  const t = await loadDebian("translation", "validation", { level: "short" });
  assert.equal(t.length, 1153);
  assert.deepEqual(Object.keys(t[0]), ["en", "de", "level"]);
  assert.equal((await loadDebian("translation", "validation", { level: "long" })).length, 894);
  const c = await loadDebian("classification", "validation");
  const labels: Record<string, number> = {};
  for (const r of c) {
    const label = (r as { label: string }).label;
    labels[label] = (labels[label] ?? 0) + 1;
  }
  assert.deepEqual(labels, {
    libs: 133,
    perl: 140,
    python: 171,
    utils: 161,
    net: 139,
    java: 138,
    javascript: 149,
    devel: 128,
  });
  const b = await loadDebian("classification-binary", "validation");
  assert.equal(b.filter((r) => (r as { label: number }).label === 1).length, 89);
  assert.deepEqual(Object.keys(b[0]), ["text", "label"]);
});

Deno.test("loadDebian() shuffles with a seed and limits", async () => {
  const a = await loadDebian("classification-binary", "validation", {
    shuffle: true,
    seed: 1,
    max_samples: 20,
  });
  assert.equal(a.length, 20);
  assert.deepEqual(
    await loadDebian("classification-binary", "validation", { shuffle: true, seed: 1, max_samples: 20 }),
    a,
  );
  assert.notDeepEqual(a, await loadDebian("classification-binary", "validation", { max_samples: 20 }));
  await assert.rejects(loadDebian("classification-binary", "validation", { seed: 1 }), {
    name: "TypeError",
    message: /seed orders the shuffle, and shuffle is off; add shuffle: true or drop seed/,
  });
});

Deno.test("loadDebian() explains bad tasks, splits, levels and roots", async () => {
  await assert.rejects(loadDebian("translation", "test" as "train"), {
    name: "RangeError",
    message: /split "test": the splits in .* are train, validation \(the test split is held out\)/,
  });
  await assert.rejects(loadDebian("sentiment" as "translation", "train"), {
    name: "TypeError",
    message: /the tasks are summarization/,
  });
  await assert.rejects(loadDebian("summarization", "train", { level: "short" }), {
    name: "TypeError",
    message: /translation only/,
  });
  for (const max_samples of [-1, NaN, 2.5]) { // -1 once read 181 of 182 records shuffled, 0 unshuffled
    await assert.rejects(loadDebian("classification-binary", "validation", { shuffle: true, max_samples }), {
      name: "TypeError",
      message: /Debian task "classification-binary": max_samples .* is not an integer >= 0/,
    });
  }
  await assert.rejects(loadDebian("summarization", "train", { root: "/nonexistent/debian" }), {
    name: "NotFound",
    message: /\/nonexistent\/debian\/summarization does not exist; pass root/,
  });
});

Deno.test("FLEDGE_DEBIAN_DATA moves the Debian folder; requireDebianFiles names a missing file and both fixes", async () => {
  const empty = await Deno.makeTempDir();
  const before = Deno.env.get("FLEDGE_DEBIAN_DATA");
  try {
    Deno.env.set("FLEDGE_DEBIAN_DATA", `${SHARED}/datasets/debian`);
    assert.equal(debianRoot(), `${SHARED}/datasets/debian`);
    requireDebianFiles("run the demo", ["summarization/train.jsonl"]);
    Deno.env.set("FLEDGE_DEBIAN_DATA", empty);
    assert.throws(
      () => requireDebianFiles("run the demo", ["summarization/train.jsonl"]),
      Deno.errors.NotFound,
      `Cannot run the demo: it reads the Debian datasets, and ${empty}/summarization/train.jsonl does not exist; ` +
        `put the datasets (datasets/debian of the shared folder) at ${empty}, or set FLEDGE_DEBIAN_DATA to their folder`,
    );
  } finally {
    if (before === undefined) Deno.env.delete("FLEDGE_DEBIAN_DATA");
    else Deno.env.set("FLEDGE_DEBIAN_DATA", before);
    await Deno.remove(empty);
  }
});
