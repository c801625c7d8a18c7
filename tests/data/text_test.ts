import { assert } from "../_assert.ts";
import { readText } from "../../data/text.ts";

const dir = await Deno.makeTempDir({ prefix: "fledge-text-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("readText() splits lines at a lone CR too, as Python's splitlines (HF's text builder)", async () => {
  const path = `${dir}/mac.txt`;
  await Deno.writeTextFile(path, "l1\rl2\r\nl3\r\rl4\r");
  assert.deepEqual(await readText(path), [{ text: "l1" }, { text: "l2" }, { text: "l3" }, { text: "l4" }]);
  assert.deepEqual(await readText(path, { sample_by: "paragraph" }), [{ text: "l1\nl2\nl3" }, {
    text: "l4",
  }]);
});

Deno.test("readText() gives one record per line, paragraph or document", async () => {
  const path = `${dir}/t.txt`;
  await Deno.writeTextFile(path, "first line\nsecond line\r\n\n  \nthird\n\n\nfourth\n\n");
  assert.deepEqual(await readText(path), [
    { text: "first line" },
    { text: "second line" },
    { text: "third" },
    { text: "fourth" },
  ]);
  assert.deepEqual(await readText(path, { sample_by: "paragraph" }), [
    { text: "first line\nsecond line" },
    { text: "third" },
    { text: "fourth" },
  ]);
  assert.deepEqual(
    await readText(path, { sample_by: "paragraph", max_samples: 1, rename: { text: "document" } }),
    [
      { document: "first line\nsecond line" },
    ],
  );
  const [doc] = await readText(path, { sample_by: "document" });
  assert.equal(doc.text, "first line\nsecond line\n\n  \nthird\n\n\nfourth");
  await assert.rejects(readText(path, { sample_by: "word" as "line" }), {
    name: "TypeError",
    message: /sample_by "word"/,
  });
});
