/**
 * data/prompts.ts: the recipes' prompt-completion rows (plain and chat), the ids generation starts
 * from, source truncation and label verbalizers.
 */
import { buildSftExamples } from "../../data/sft.ts";
import { labelVerbalizers, promptIds, taskRow, truncateSource } from "../../data/prompts.ts";
import { trainBpeTokenizer } from "../../models/tokenizer/bpe.ts";
import { assert } from "../_assert.ts";

const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const tok = await trainBpeTokenizer(
  ["Summarize: a text editor for the console.\nSummary: text editor ".repeat(30), "games other libs perl "],
  {
    vocab_size: 400,
    special_tokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    chat_template: CHATML,
  },
);

Deno.test("taskRow() gives TRL prompt-completion rows; promptIds() is the prompt SFT trains after", () => {
  const ex = { source: "a text editor for the console.", target: "text editor" };
  const row = taskRow("summarization", ex, tok);
  assert.deepEqual(row, {
    prompt: "Summarize: a text editor for the console.\nSummary:",
    completion: " text editor",
  });
  const t = taskRow("translation", { source: "a game", target: "ein Spiel" }, tok, {
    source_lang: "English",
  });
  assert.equal(t.prompt, "Translate English to German: a game\nGerman:");
  // the SFT example starts with exactly the ids generation starts from, and trains only the rest
  const { examples } = buildSftExamples([row], tok, { max_length: null });
  const ids = promptIds("summarization", ex.source, tok);
  assert.deepEqual(Array.from(examples[0].input_ids.slice(0, ids.length)), ids);
  assert.ok(Array.from(examples[0].labels.slice(0, ids.length)).every((l) => l === -100));
  assert.deepEqual(
    Array.from(examples[0].labels.slice(ids.length)),
    [...tok.encode(" text editor"), tok.eos_token_id],
  );
});

Deno.test("chat style renders the checkpoint's template, the prompt with add_generation_prompt", () => {
  const row = taskRow("classification", { source: "a puzzle game", target: "games" }, tok, { style: "chat" });
  assert.deepEqual(row.completion, [{ role: "assistant", content: "games" }]);
  const ids = promptIds("classification", "a puzzle game", tok, { style: "chat" });
  assert.equal(
    tok.decode(ids),
    "<|im_start|>user\na puzzle game\nAnswer with one word: the label.<|im_end|>\n<|im_start|>assistant\n",
  );
  assert.deepEqual(labelVerbalizers(["games", "other"], tok, { style: "chat" })[0], tok.encode("games"));
});

Deno.test("truncateSource() keeps the head of the source; the template and answer are never cut", () => {
  const long = "word ".repeat(100).trim();
  const cut = truncateSource(tok, long, 10);
  assert.ok(long.startsWith(cut) && tok.encode(cut).length <= 10, cut);
  assert.equal(truncateSource(tok, "short", 10), "short");
  const row = taskRow("summarization", { source: long, target: "t" }, tok, { max_source_tokens: 10 });
  assert.ok((row.prompt as string).endsWith("\nSummary:"));
});

Deno.test("labelVerbalizers() encodes ' <label>' and refuses two labels with the same tokens", () => {
  assert.deepEqual(labelVerbalizers(["games", "other"], tok), [tok.encode(" games"), tok.encode(" other")]);
  assert.throws(
    () => labelVerbalizers(["games", "games"], tok),
    /"games" and "games": they encode to the same tokens/,
  );
});

Deno.test("labelVerbalizers() scores the label's own tokens without the BOS a Llama tokenizer adds to every encode", async () => {
  const bos = await trainBpeTokenizer(["a game of other things"], {
    vocab_size: 270,
    special_tokens: ["<s>"],
    bos_token: "<s>",
    add_bos_token: true,
  });
  const bosId = bos.bos_token_id!;
  assert.equal(bos.encode(" games")[0], bosId, "encode adds it");
  const ids = labelVerbalizers(["games", "other"], bos);
  assert.ok(ids.every((l) => !l.includes(bosId)), JSON.stringify(ids));
  assert.deepEqual(ids[0], bos.encode(" games", { add_special_tokens: false }));
});

Deno.test("prompts refuse a max_source_tokens or style they would misread (-2 once cut the last 2 tokens)", () => {
  for (const max of [-2, 0, 1.5, NaN]) {
    const message = /max_source_tokens .* is not an integer >= 1 \(or null\)/;
    assert.throws(() => truncateSource(tok, "a b c d e", max), { name: "RangeError", message });
    assert.throws(() => promptIds("summarization", "a b", tok, { max_source_tokens: max }), { message });
  }
  const chat = { style: "Chat" as "chat" };
  const message = /style "Chat" is not "plain" or "chat"/;
  assert.throws(() => taskRow("summarization", { source: "a", target: "b" }, tok, chat), {
    name: "RangeError",
    message,
  });
  assert.throws(() => labelVerbalizers(["games"], tok, chat), { name: "RangeError", message });
});
