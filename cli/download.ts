/**
 * `fledge download`: fetch a model's config, tokenizer and safetensors files from the Hugging Face
 * hub into the cache (the huggingface_hub layout), optionally re-hash them and copy them into a
 * folder. A thin wrapper over {@linkcode downloadModel}.
 *
 * @module
 */
import { join } from "node:path";
import { parseFlags, writeErr, writeOut } from "../util/flags.ts";
import { globMatcher, listFiles } from "../models/hub/_cache.ts";
import { downloadModel, HubError, type HubOptions, MODEL_FILE_PATTERNS } from "../models/hub/hub.ts";

/** Usage text of {@linkcode downloadCli}. */
export const DOWNLOAD_USAGE = `usage: fledge download --model ID [options]

  --model ID                 hub repo id (org/name), or a local model folder
  --output DIR               copy the files (not links) into DIR; default: print the cache snapshot
  --revision REV             branch, tag or commit (default main)
  --verify                   re-hash every file against the hub's sha256 / git sha1
  --allow-patterns GLOB      files to fetch (repeatable or comma-separated; default the model files:
                             ${MODEL_FILE_PATTERNS.join(", ")})
  --cache-dir DIR            hub cache (default HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)
  --quiet                    no progress and no summary on stderr
  -h, --help                 this text

Flags may also be spelled with underscores (--allow_patterns), as the Hugging Face names.
The token comes from HF_TOKEN, the hub from HF_ENDPOINT; HF_HUB_OFFLINE=1 uses only the cache.
Prints the folder that holds the files on stdout.`;

/** Where {@linkcode downloadCli} writes and which hub it talks to (tests point it at a mock hub). */
export interface DownloadCliOptions {
  /** Receives the folder path (one line). */
  stdout?: (text: string) => void;
  /** Receives the summary line. */
  stderr?: (text: string) => void;
  /** Defaults for the hub calls (`endpoint`, `token`, ...); flags win. */
  hub?: HubOptions;
}

const FLAGS = {
  model: { type: "string" },
  output: { type: "string" },
  revision: { type: "string" },
  verify: { type: "boolean" },
  "allow-patterns": { type: "string", multiple: true },
  "cache-dir": { type: "string" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Run `fledge download` with command-line `args`. Bad flags, an unknown repo, revision or file
 * (404), a refused token (401/403) and offline mode without a cached copy throw a one-line
 * {@linkcode RangeError} or {@linkcode TypeError} (the CLI maps them to exit code 2; the
 * {@linkcode HubError} is its `cause`). A dropped connection, a truncated download or a checksum
 * mismatch under `--verify` stay a {@linkcode HubError} with a one-line message (exit 1).
 *
 * @param args the arguments after `download`
 * @param opts writers for stdout / stderr, hub defaults
 * @throws {TypeError} when `--model` is missing or is not a repo id / folder
 * @throws {RangeError} for unknown flags, an empty pattern, or a repo / revision / file the hub refuses
 * @throws {HubError} for connection, truncation and checksum failures
 * @example
 * ```ts
 * import { downloadCli } from "./download.ts";
 * let out = "";
 * await downloadCli(["--help"], { stdout: (s) => out += s });
 * if (!out.includes("--allow-patterns")) throw new Error(out);
 * ```
 */
export async function downloadCli(args: string[], opts: DownloadCliOptions = {}): Promise<void> {
  const out = opts.stdout ?? writeOut, err = opts.stderr ?? writeErr;
  const v = parseFlags("download", args, FLAGS);
  if (v.help) return out(DOWNLOAD_USAGE + "\n");
  if (!v.model) throw new TypeError("download: --model is required: a hub id (org/name) or a model folder");
  const patterns = v["allow-patterns"]?.flatMap((p) => p.split(",")).map((p) => p.trim());
  if (patterns?.some((p) => p === "")) {
    throw new RangeError(`download: --allow-patterns has an empty pattern: ${JSON.stringify(patterns)}`);
  }
  const t0 = performance.now();
  let folder: string;
  try {
    folder = await downloadModel(v.model, {
      ...opts.hub,
      ...(v.revision !== undefined ? { revision: v.revision } : {}),
      ...(v["cache-dir"] !== undefined ? { cache_dir: v["cache-dir"] } : {}),
      ...(v.quiet ? { progress: false } : {}),
      output: v.output,
      verify: v.verify === true,
      allow_patterns: patterns,
    });
  } catch (e) {
    if (e instanceof HubError && ["not_found", "unauthorized", "offline"].includes(e.kind)) {
      throw new RangeError(`download: ${e.message.replace(/\s*\n\s*/g, " ")}`, { cause: e });
    }
    throw e;
  }
  if (!v.quiet) {
    const files = (await listFiles(folder)).filter(globMatcher(patterns ?? MODEL_FILE_PATTERNS));
    let bytes = 0;
    for (const f of files) bytes += (await Deno.stat(join(folder, f))).size;
    const secs = (performance.now() - t0) / 1000;
    err(
      `download: ${files.length} file${files.length === 1 ? "" : "s"} (${(bytes / 2 ** 20).toFixed(1)} MB) ` +
        `of ${v.model}${v.revision ? `@${v.revision}` : ""} in ${secs.toFixed(1)} s${
          v.verify ? ", verified" : ""
        }\n`,
    );
  }
  out(folder + "\n");
}
