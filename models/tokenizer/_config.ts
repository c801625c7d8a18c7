/**
 * The `tokenizer_config.json` settings that transformers (Python, v4.47) applies on top of
 * `tokenizer.json` when `AutoTokenizer.from_pretrained` builds its fast tokenizer, applied here the
 * same way before transformers.js builds its own (its `PreTrainedTokenizer` reads none of them, so
 * they were silently ignored). Settings fledge cannot follow are refused, naming the file and key.
 * @module
 */

/** The Python class a `tokenizer_class` names, without the `Fast` suffix AutoTokenizer adds. */
function className(config: Record<string, unknown>): string {
  const name = config.tokenizer_class;
  return typeof name === "string" ? name.replace(/Fast$/, "") : "PreTrainedTokenizer";
}

/**
 * Classes whose `__init__` defaults `clean_up_tokenization_spaces` to true (BERT and its copies);
 * every other class, and `PreTrainedTokenizerFast`, defaults it to false since transformers v4.45.
 */
const CLEAN_UP_BY_DEFAULT = new Set([
  "BertTokenizer",
  "ConvBertTokenizer",
  "DistilBertTokenizer",
  "ElectraTokenizer",
  "FunnelTokenizer",
  "LayoutLMTokenizer",
  "LxmertTokenizer",
  "MobileBertTokenizer",
  "MPNetTokenizer",
  "RetriBertTokenizer",
  "SqueezeBertTokenizer",
]);

/**
 * The resolved `clean_up_tokenization_spaces` for a config: its value, or the default of its class
 * (transformers.js defaults to true for every class, so a Llama or Qwen decode lost spaces before
 * punctuation that HF keeps).
 * @throws {TypeError} when the value is not a boolean
 */
function cleanUp(config: Record<string, unknown>, where: string): boolean {
  const value = config.clean_up_tokenization_spaces;
  if (value === undefined || value === null) return CLEAN_UP_BY_DEFAULT.has(className(config));
  if (typeof value !== "boolean") {
    throw new TypeError(
      `Cannot load tokenizer: ${where} clean_up_tokenization_spaces must be true or false, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return value;
}

/**
 * Resolve the config settings transformers applies when it loads a fast tokenizer. Returns copies;
 * the inputs are not changed.
 * @param tokenizer the parsed `tokenizer.json`
 * @param config the merged `tokenizer_config.json` (+ `special_tokens_map.json`)
 * @param where the config file, for messages
 * @returns the tokenizer and config to give transformers.js
 * @throws {TypeError} when a setting has the wrong type or cannot be followed
 */
export function resolveConfig(
  tokenizer: Record<string, unknown>,
  config: Record<string, unknown>,
  where: string,
): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  const outConfig = { ...config, clean_up_tokenization_spaces: cleanUp(config, where) };
  return { tokenizer: { ...tokenizer }, config: outConfig };
}
