/**
 * Applying learned BPE merges to one pre-token (the encoder side of `bpe.ts`).
 *
 * Semantics of HF `tokenizers` (`Word::merge_all`) and tokenizers.js `BPE.bpe`: repeatedly merge
 * the adjacent pair with the lowest merge rank, the leftmost one on ties. Short words use a plain
 * rescan (fastest for the usual few symbols); long ones (runs of spaces, minified text) a linked list
 * and a min-heap keyed by (rank, position), O(n log n) instead of O(n^2).
 * @module
 */

/** Merge tables: `rank.get(a * K + b)` is the rank of merge (a, b); `result[rank]` its id. */
export interface MergeTable {
  rank: Map<number, number>;
  result: Int32Array;
  K: number;
}

const LONG = 64;

/** Merge `sym` (symbol ids, consumed) and return the final ids. */
export function applyMerges(sym: number[], table: MergeTable): number[] {
  return sym.length > LONG ? applyLong(sym, table) : applyShort(sym, table);
}

function applyShort(sym: number[], { rank, result, K }: MergeTable): number[] {
  while (sym.length > 1) {
    let best = Infinity, at = -1;
    for (let i = 0; i + 1 < sym.length; i++) {
      const r = rank.get(sym[i] * K + sym[i + 1]);
      if (r !== undefined && r < best) {
        best = r;
        at = i;
      }
    }
    if (at < 0) break;
    sym.splice(at, 2, result[best]);
  }
  return sym;
}

function applyLong(sym: number[], { rank, result, K }: MergeTable): number[] {
  const n = sym.length;
  const next = new Int32Array(n), prev = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const alive = new Uint8Array(n).fill(1);
  // Heap of keys rank * n + position (exact in a double while rank * n < 2^53).
  const heap: number[] = [];
  const push = (key: number) => {
    heap.push(key);
    for (let i = heap.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (heap[p] <= heap[i]) break;
      [heap[p], heap[i]] = [heap[i], heap[p]];
      i = p;
    }
  };
  const pop = (): number => {
    const top = heap[0], last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < heap.length && heap[l] < heap[m]) m = l;
        if (r < heap.length && heap[r] < heap[m]) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i], heap[m]];
        i = m;
      }
    }
    return top;
  };
  const consider = (i: number) => {
    const j = next[i];
    if (j < 0) return;
    const r = rank.get(sym[i] * K + sym[j]);
    if (r !== undefined) push(r * n + i);
  };
  for (let i = 0; i + 1 < n; i++) consider(i);
  while (heap.length > 0) {
    const key = pop();
    const r = Math.floor(key / n), i = key - r * n;
    const j = next[i];
    // Stale when the node died or its pair changed (ranks are unique per pair, so equal rank = same pair).
    if (!alive[i] || j < 0 || rank.get(sym[i] * K + sym[j]) !== r) continue;
    sym[i] = result[r];
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    if (prev[i] >= 0) consider(prev[i]);
    consider(i);
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
  return out;
}
