/**
 * `deno task cli download`: fetch a model's config, tokenizer and safetensors files from the
 * Hugging Face hub into the cache (the huggingface_hub layout), optionally re-hash them and copy
 * them into a folder. A thin wrapper over {@linkcode downloadModel}.
 *
 * A repo, revision or file the hub refuses (404, 401/403) and offline mode without a cached copy
 * are bad input (a one-line RangeError, exit code 2; the {@linkcode HubError} is its `cause`); a
 * dropped connection, a truncated download or a checksum mismatch under `--verify` stay a
 * HubError (exit code 1).
 *
 * @module
 */
import { join } from "node:path";
import { parseFlags } from "../util/flags.ts";
import { downloadModel, HubError, listSnapshotFiles, MODEL_FILE_PATTERNS } from "../models/hub/hub.ts";
import { type CliIO, type Command, helpList } from "./command.ts";

const USAGE = `usage: deno task cli download --model ID [options]

Fetches a model's files from the Hugging Face hub into the cache (resuming partial downloads) and
prints the folder that holds them on stdout.

options:
  --model ID                 hub repo id (org/name), or a local model folder
  --output DIR               copy the files (not links) into the new folder DIR; default: print the
                             cache snapshot
  --overwrite_output_dir     replace an existing --output folder (whole: never old and new mixed)
  --revision REV             branch, tag or commit (default main)
  --verify                   re-hash every file against the hub's sha256 / git sha1
  --force_download           fetch every file again, even when cached (huggingface_hub's force_download)
  --allow_patterns GLOB      files to fetch (repeatable or comma-separated; default the model files
                             at the top of the repo:
${helpList(MODEL_FILE_PATTERNS, 29)},
                             and the shards the index's weight_map names)
  --cache_dir DIR            hub cache (default HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)
  --quiet                    no progress and no summary on stderr
  -h, --help                 this text

Flags may also be spelled with hyphens (--allow-patterns). The token comes from HF_TOKEN, the hub
from HF_ENDPOINT; HF_HUB_OFFLINE=1 uses only the cache.`;

const FLAGS = {
  model: { type: "string", required: true },
  output: { type: "string" },
  overwrite_output_dir: { type: "boolean" },
  revision: { type: "string" },
  verify: { type: "boolean" },
  force_download: { type: "boolean" },
  allow_patterns: { type: "list" },
  cache_dir: { type: "string" },
  quiet: { type: "boolean" },
} as const;

/** The `download` command. */
export const command: Command = {
  summary: "fetch a model's config, tokenizer and safetensors files (hub cache layout, resume, --verify)",
  usage: USAGE,
  run: downloadRun,
};

async function downloadRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("download", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const patterns = v.allow_patterns?.flatMap((p) => p.split(",")).map((p) => p.trim());
  if (patterns?.some((p) => p === "")) {
    throw new RangeError(`download: --allow_patterns has an empty pattern: ${JSON.stringify(patterns)}`);
  }
  const t0 = performance.now();
  let folder: string;
  try {
    folder = await downloadModel(v.model, {
      ...(v.revision !== undefined ? { revision: v.revision } : {}),
      ...(v.cache_dir !== undefined ? { cache_dir: v.cache_dir } : {}),
      ...(v.quiet ? { progress: false } : {}),
      ...(v.force_download ? { force_download: true } : {}),
      output: v.output,
      overwrite_output_dir: v.overwrite_output_dir,
      verify: v.verify,
      allow_patterns: patterns,
    });
  } catch (e) {
    if (e instanceof HubError && ["not_found", "unauthorized", "offline"].includes(e.kind)) {
      throw new RangeError(`download: ${e.message.replace(/\s*\n\s*/g, " ")}`, { cause: e });
    }
    throw e;
  }
  if (!v.quiet) {
    const files = await listSnapshotFiles(folder, patterns);
    let bytes = 0;
    for (const f of files) bytes += (await Deno.stat(join(folder, f))).size;
    const secs = (performance.now() - t0) / 1000;
    io.stderr(
      `download: ${files.length} file${files.length === 1 ? "" : "s"} (${(bytes / 2 ** 20).toFixed(1)} MB) ` +
        `of ${v.model}${v.revision ? `@${v.revision}` : ""} in ${secs.toFixed(1)} s${
          v.verify ? ", verified" : ""
        }\n`,
    );
  }
  io.stdout(folder + "\n");
}
