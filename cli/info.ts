/**
 * `deno task cli info`: the backend fledge would use, the WebGPU adapter, its features and the
 * limits fledge requested.
 *
 * @module
 */
import { parseFlags } from "../util/flags.ts";
import { createBackend } from "../kernels/backend.ts";
import { describeMatmulConfig } from "../kernels/matmul.ts";
import type { CliIO, Command } from "./command.ts";

const USAGE = `usage: deno task cli info [--json] [--backend webgpu|cpu|auto]

Shows the backend fledge picks, its adapter (vendor, architecture), the optional features it found
(shader-f16, subgroups, timestamp-query), the device limits it requested and the matmul kernels it
uses per product shape (the adapter kind's defaults, or what "deno run -A bench/matmul.ts
--autotune" timed and cached).

options:
  --json                     one JSON object instead of the table
  --backend webgpu|cpu|auto  default auto (WebGPU when an adapter answers, else cpu)
  -h, --help                 this text`;

const FLAGS = {
  json: { type: "boolean" },
  backend: { type: "string", choices: ["webgpu", "cpu", "auto"], default: "auto" },
} as const;

/** The `info` command. */
export const command: Command = {
  summary: "show the WebGPU adapter, its features and the limits fledge requested",
  usage: USAGE,
  run: infoRun,
};

async function infoRun(args: string[], io: CliIO): Promise<void> {
  const v = parseFlags("info", args, FLAGS);
  if (v.help) return io.stdout(USAGE + "\n");
  const be = await createBackend(v.backend);
  try {
    // "matmul on <adapter> (<source>): gemm ..., thin ..." -> "gemm ..., thin ... (<source>)"
    const m = be.gpu ? /\((\w+)\): (.*)$/.exec(describeMatmulConfig(be.gpu)) : null;
    const matmul = m ? `${m[2]} (${m[1]})` : null;
    const info = { backend: be.name, adapter: be.adapter, ...(be.info ?? {}), ...(matmul ? { matmul } : {}) };
    if (v.json) return io.stdout(JSON.stringify(info) + "\n");
    const lines = [`backend  ${info.backend}`, `adapter  ${info.adapter}`];
    if (be.info) {
      lines.push(
        `vendor   ${be.info.vendor || "-"}  architecture ${be.info.architecture || "-"}`,
        `features ${be.info.features.join(", ") || "(none of shader-f16, subgroups, timestamp-query)"}`,
        `matmul   ${matmul}`,
        ...Object.entries(be.info.limits).map(([k, val]) => `  ${k.padEnd(36)} ${val}`),
      );
    }
    io.stdout(lines.join("\n") + "\n");
  } finally {
    be.destroy();
  }
}
