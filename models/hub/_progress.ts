/**
 * Private helper of `hub.ts`: download progress on stderr with bytes, rate and ETA. On a terminal
 * one line is rewritten in place (at most 10 times a second); otherwise (CI logs, pipes) a new line
 * is written at most every 2 seconds, plus a final one, so logs stay short.
 * @module
 */

/** A running progress display; `add` counts new bytes, `done` prints the final line. */
export interface Progress {
  add(bytes: number): void;
  done(): void;
}

const encoder = new TextEncoder();

/** `1.5 MB`, `312 B`: a byte count in decimal units like huggingface_hub's tqdm bars. */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function isTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/**
 * Start a progress display for `label`. `start` is the byte count already on disk (a resumed
 * download), `total` the expected size when known. With `enabled: false` nothing is printed.
 */
export function createProgress(
  label: string,
  opts: { total?: number; start?: number; enabled: boolean },
): Progress {
  if (!opts.enabled) return { add() {}, done() {} };
  const tty = isTerminal();
  const interval = tty ? 100 : 2000;
  const t0 = performance.now();
  const start = opts.start ?? 0;
  let bytes = start;
  let last = -Infinity;
  const render = (final: boolean) => {
    const secs = (performance.now() - t0) / 1000;
    const rate = secs > 0 ? (bytes - start) / secs : 0;
    const total = opts.total;
    const pct = total ? ` (${Math.floor((100 * bytes) / total)}%)` : "";
    const of = total ? ` / ${formatBytes(total)}` : "";
    const eta = final
      ? `in ${formatSeconds(secs)}`
      : `ETA ${total && rate > 0 ? formatSeconds((total - bytes) / rate) : "?"}`;
    const line = `${label}: ${formatBytes(bytes)}${of}${pct}, ${formatBytes(Math.round(rate))}/s, ${eta}`;
    const text = tty ? `\r${line}\x1b[K${final ? "\n" : ""}` : `${line}\n`;
    try {
      Deno.stderr.writeSync(encoder.encode(text));
    } catch {
      // stderr closed: progress is best effort.
    }
  };
  return {
    add(n) {
      bytes += n;
      const now = performance.now();
      if (now - last >= interval) {
        last = now;
        render(false);
      }
    },
    done() {
      render(true);
    },
  };
}
