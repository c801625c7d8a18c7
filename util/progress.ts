/**
 * The one progress line of fledge (downloads, training, long data work): position, rate and ETA on
 * stderr. On a terminal the line is rewritten in place (at most every 100 ms); otherwise (CI logs,
 * pipes) each shown update is a line of its own, at most one every 2 s by default, plus the final
 * one, so logs stay short.
 *
 * @module
 */
import { formatBytes, formatDuration } from "./format.ts";

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** The expected end position, when known (enables the percentage and the ETA). */
  total?: number;
  /** Where counting starts (e.g. bytes already on disk for a resumed download); default 0. */
  start?: number;
  /** What is counted: `bytes` formats positions and rates as sizes; any other word is a unit name. */
  unit?: string;
  /** Print at all (default true). */
  enabled?: boolean;
  /** Smallest gap between two shown updates, in ms (default 100 on a terminal, 2000 otherwise). */
  interval_ms?: number;
  /** Where lines go (default stderr); tests capture them. */
  write?: (text: string) => void;
  /** Rewrite one line in place (default: when stderr is a terminal). */
  tty?: boolean;
}

/** A running progress line. */
export interface Progress {
  /** Advance by `n`; `detail` (e.g. `loss 2.31`) is appended to the line. */
  add(n: number, detail?: string): void;
  /** Set the position; `detail` is appended to the line. */
  update(position: number, detail?: string): void;
  /** Print the final line (elapsed time instead of the ETA). */
  done(detail?: string): void;
}

const encoder = new TextEncoder();

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

function writeStderr(text: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(text));
  } catch {
    // stderr closed: progress is best effort.
  }
}

/**
 * Start a progress line for `label`.
 * @param label what is going on, e.g. `Downloading org/x/model.safetensors` or `train`
 * @param opts total, start, unit, enabled, interval, writer
 * @returns the line's handle; with `enabled: false` it prints nothing
 * @example
 * ```ts
 * import { createProgress } from "./progress.ts";
 * const lines: string[] = [];
 * const p = createProgress("train", { total: 10, unit: "steps", tty: false, interval_ms: 0, write: (s) => lines.push(s) });
 * p.update(5, "loss 2.5000");
 * p.update(10);
 * p.done();
 * if (!/^train: 5 \/ 10 steps \(50%\), .* steps\/s, ETA .*, loss 2\.5000\n$/.test(lines[0])) throw new Error(lines[0]);
 * if (!/^train: 10 \/ 10 steps \(100%\), .*, in \d+s, loss 2\.5000\n$/.test(lines[2])) throw new Error(lines[2]);
 * ```
 */
export function createProgress(label: string, opts: ProgressOptions = {}): Progress {
  if (opts.enabled === false) return { add() {}, update() {}, done() {} };
  const tty = opts.tty ?? stderrIsTerminal();
  const write = opts.write ?? writeStderr;
  const interval = opts.interval_ms ?? (tty ? 100 : 2000);
  const bytes = opts.unit === "bytes";
  const unit = bytes ? "" : opts.unit ? ` ${opts.unit}` : "";
  const amount = (n: number) => (bytes ? formatBytes(n) : String(Math.round(n)));
  const t0 = performance.now();
  const start = opts.start ?? 0, total = opts.total;
  let position = start, last = -Infinity, lastDetail: string | undefined;

  const render = (final: boolean, detail?: string) => {
    const secs = (performance.now() - t0) / 1000;
    const rate = secs > 0 ? (position - start) / secs : 0;
    const of = total ? ` / ${amount(total)}` : "";
    const pct = total ? ` (${Math.floor((100 * position) / total)}%)` : "";
    const speed = bytes
      ? `${formatBytes(Math.round(rate))}/s`
      : `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(2)}${unit}/s`;
    const eta = final
      ? `in ${formatDuration(secs)}`
      : `ETA ${total && rate > 0 ? formatDuration((total - position) / rate) : "?"}`;
    const line = `${label}: ${amount(position)}${of}${unit}${pct}, ${speed}, ${eta}${
      detail ? `, ${detail}` : ""
    }`;
    write(tty ? `\r${line}\x1b[K${final ? "\n" : ""}` : `${line}\n`);
  };
  const show = (detail?: string) => {
    lastDetail = detail ?? lastDetail;
    const now = performance.now();
    if (now - last >= interval) {
      last = now;
      render(false, lastDetail);
    }
  };
  return {
    add(n, detail) {
      position += n;
      show(detail);
    },
    update(p, detail) {
      position = p;
      show(detail);
    },
    done(detail) {
      render(true, detail ?? lastDetail);
    },
  };
}
