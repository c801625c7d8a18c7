/**
 * The BPE merge loop of the trainer (`trainBpeTokenizer` in `bpe.ts`), over symbol ids.
 *
 * Algorithm (Sennrich et al. 2016, as in HF `tokenizers` `models/bpe/trainer.rs`): count adjacent
 * symbol pairs over the unique pre-token words weighted by word frequency; repeatedly merge the most
 * frequent pair. Each merge touches only the words that contain the pair (an index pair -> words) and
 * updates the counts of the neighbouring pairs incrementally; a max-heap with lazy deletion finds the
 * next pair. Ties go to the smaller (left id, right id), so training is deterministic.
 * @module
 */

/** Unique words to train on: symbol ids per word and the word's frequency. */
export interface MergeInput {
  /** Symbols of each word (initially one id per byte); rewritten in place. */
  words: Int32Array[];
  /** Word frequencies. */
  freqs: Float64Array;
  /** First id the merges may create. */
  firstNewId: number;
  /** Stop when this many ids exist (specials + bytes + merges). */
  vocabSize: number;
  /** Stop when the best pair occurs fewer times than this. */
  minFrequency: number;
  /** Byte-level string of each existing id (extended as merges create tokens). */
  tokens: string[];
  /** Called now and then with (ids so far, vocabSize). */
  onProgress?: (done: number, total: number) => void;
}

/** Learned merges as id pairs, in rank order, and the id each merge produces. */
export interface MergeOutput {
  merges: [number, number][];
  results: number[];
}

/** Max-heap of (count, key) with ties to the smaller key. */
class PairHeap {
  counts: number[] = [];
  keys: number[] = [];

  #above(i: number, j: number): boolean {
    const ci = this.counts[i], cj = this.counts[j];
    return ci > cj || (ci === cj && this.keys[i] < this.keys[j]);
  }

  #swap(i: number, j: number): void {
    const c = this.counts[i], k = this.keys[i];
    this.counts[i] = this.counts[j];
    this.keys[i] = this.keys[j];
    this.counts[j] = c;
    this.keys[j] = k;
  }

  get size(): number {
    return this.counts.length;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#above(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  /** Remove the top; returns [count, key]. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0], this.keys[0]];
    const lastC = this.counts.pop()!, lastK = this.keys.pop()!;
    const n = this.counts.length;
    if (n > 0) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let best = i;
        if (l < n && this.#above(l, best)) best = l;
        if (r < n && this.#above(r, best)) best = r;
        if (best === i) break;
        this.#swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/**
 * Learn merges until `vocabSize` ids exist or no pair occurs `minFrequency` times. A merge whose
 * string already exists (e.g. `ab+c` after `a+bc`) reuses that id and adds no token, as in HF.
 */
export function learnMerges(input: MergeInput): MergeOutput {
  const { words, freqs, vocabSize, minFrequency, tokens } = input;
  // Pair key a * K + b: small integers while K * K < 2^31 keep Map lookups on the fast path.
  const K = Math.max(vocabSize, tokens.length) + 1;
  const count = new Map<number, number>();
  const where = new Map<number, number[]>();
  const lens = new Int32Array(words.length);
  for (let w = 0; w < words.length; w++) {
    const sym = words[w], f = freqs[w];
    lens[w] = sym.length;
    for (let i = 0; i + 1 < sym.length; i++) {
      const key = sym[i] * K + sym[i + 1];
      count.set(key, (count.get(key) ?? 0) + f);
      const list = where.get(key);
      if (list === undefined) where.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new PairHeap();
  for (const [key, c] of count) heap.push(c, key);

  const ids = new Map<string, number>();
  tokens.forEach((t, i) => ids.set(t, i));
  const merges: [number, number][] = [];
  const results: number[] = [];
  const seen = new Int32Array(words.length);
  let epoch = 0;
  let nextId = input.firstNewId;
  const changed = new Set<number>();
  const add = (key: number, delta: number) => {
    const c = (count.get(key) ?? 0) + delta;
    if (c > 0) count.set(key, c);
    else count.delete(key);
    changed.add(key);
  };
  let lastReport = Date.now();

  while (nextId < vocabSize && heap.size > 0) {
    const [c, key] = heap.pop();
    if (count.get(key) !== c) continue; // stale entry: a fresher one was pushed when the count changed
    if (c < minFrequency) break;
    const a = Math.floor(key / K), b = key - a * K;
    const merged = tokens[a] + tokens[b];
    let id = ids.get(merged);
    if (id === undefined) {
      id = nextId++;
      ids.set(merged, id);
      tokens.push(merged);
    }
    merges.push([a, b]);
    results.push(id);
    count.delete(key);
    changed.clear();
    epoch++;
    for (const w of where.get(key)!) {
      if (seen[w] === epoch) continue;
      seen[w] = epoch;
      const sym = words[w], n = lens[w], f = freqs[w];
      let out = 0;
      for (let r = 0; r < n;) {
        if (r + 1 < n && sym[r] === a && sym[r + 1] === b) {
          // Neighbours: the left one is already in its final (possibly merged) form at out - 1.
          if (out > 0) {
            const p = sym[out - 1];
            if (p * K + a !== key) add(p * K + a, -f);
            const nk = p * K + id;
            add(nk, f);
            pushWhere(where, nk, w);
          }
          if (r + 2 < n) {
            const nx = sym[r + 2];
            if (b * K + nx !== key) add(b * K + nx, -f);
            const nk = id * K + nx;
            add(nk, f);
            pushWhere(where, nk, w);
          }
          sym[out++] = id;
          r += 2;
        } else {
          sym[out++] = sym[r++];
        }
      }
      lens[w] = out;
    }
    where.delete(key);
    for (const k of changed) {
      const ck = count.get(k);
      if (ck !== undefined && k !== key) heap.push(ck, k);
    }
    if (input.onProgress && Date.now() - lastReport > 1000) {
      lastReport = Date.now();
      input.onProgress(nextId, vocabSize);
    }
  }
  return { merges, results };
}

function pushWhere(where: Map<number, number[]>, key: number, w: number): void {
  const list = where.get(key);
  if (list === undefined) where.set(key, [w]);
  else if (list[list.length - 1] !== w) list.push(w);
}
