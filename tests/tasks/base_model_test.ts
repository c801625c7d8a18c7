import assert from "node:assert/strict";
import {
  BASE_MODEL_DEFAULTS,
  ensureBaseModel,
  resolveBaseModelConfig,
  withRepeatedParagraph,
} from "../../tasks/base_model.ts";
import { readRecipeYaml, resolveRecipe } from "../../tasks/_recipe.ts";

const LONG = "one two three four five six seven eight nine";

Deno.test("withRepeatedParagraph: every n-th document repeats its first 8-60-word paragraph right after it", () => {
  const docs = [
    `Short synopsis\n${LONG}\ntail`,
    `Other synopsis\n${LONG} ten`,
    `no paragraph long enough`,
    `Third\n${LONG} x`,
  ];
  const out = withRepeatedParagraph(docs, 3);
  assert.equal(out[0], `Short synopsis\n${LONG}\n${LONG}\ntail`, "the first long paragraph, then its copy");
  assert.equal(out[1], docs[1], "not an n-th document");
  assert.equal(out[2], docs[2]);
  assert.equal(out[3], `Third\n${LONG} x\n${LONG} x`);
  assert.deepEqual(withRepeatedParagraph(docs, 0), docs, "0 turns it off");
  const huge = `${Array.from({ length: 61 }, () => "w").join(" ")}\nend`;
  assert.equal(withRepeatedParagraph([huge], 1)[0], huge, "paragraphs over 60 words are not repeated");
});

Deno.test("ensureBaseModel refuses an unknown or out-of-range base_model field before doing anything", async () => {
  const cache = await Deno.makeTempDir();
  try {
    await assert.rejects(
      ensureBaseModel({ cache_dir: cache, config: { repeat_paragraph_every: -1, max_step: 5 } as never }),
      (e: Error) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match(e.message, /base_model\.repeat_paragraph_every: -1 must be a whole number >= 0/);
        assert.match(e.message, /base_model\.max_step: is not a base-model field; known: .*max_steps/);
        return true;
      },
    );
    assert.deepEqual([...Deno.readDirSync(cache)], [], "nothing written");
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("every shipped recipe config names a valid base model; translation's is the narrower one", async () => {
  const names = [...Deno.readDirSync(new URL("../../tasks/configs/", import.meta.url))]
    .map((e) => e.name.replace(/\.yaml$/, "")).sort();
  assert.ok(names.includes("translation") && names.includes("sst2"), names.join());
  for (const name of names) {
    const yaml = await readRecipeYaml(name);
    const base = resolveBaseModelConfig(resolveRecipe(yaml, name).settings.base_model);
    if (name === "translation") {
      assert.equal(base.hidden_size, 64);
      assert.equal(base.hidden_size / base.num_attention_heads, 32, "its heads as wide as the default's");
      // what `--base_model '{}'` gives (a flag replaces the mapping whole): the default base model
      const plain = resolveRecipe({ ...yaml, base_model: {} }, name).settings.base_model;
      assert.deepEqual(resolveBaseModelConfig(plain), BASE_MODEL_DEFAULTS);
    } else assert.deepEqual(base, BASE_MODEL_DEFAULTS, name);
  }
  assert.throws(
    () => resolveBaseModelConfig({ hidden_size: 64, num_attention_heads: 3 }),
    /base_model\.hidden_size: 64 is not a multiple of num_attention_heads 3/,
  );
});
