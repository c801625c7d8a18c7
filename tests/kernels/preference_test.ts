import {
  PREFERENCE_STATS,
  preferenceLoss,
  type PreferenceLossOptions,
  preferenceLossReference,
} from "../../kernels/preference.ts";
import { backward } from "../../kernels/autograd.ts";
import type { Backend } from "../../kernels/backend.ts";
import type { Tensor } from "../../kernels/tensor.ts";
import { assert, assertAllClose, assertClose, randomArray } from "../_assert.ts";
import { backends, compareBackends, gradcheck, rand64 } from "../_check.ts";

const TYPES: PreferenceLossOptions[] = [
  { loss_type: "sigmoid", beta: 0.1 },
  { loss_type: "sigmoid", beta: 0.5, label_smoothing: 0.2 },
  { loss_type: "hinge", beta: 0.3 },
  { loss_type: "ipo", beta: 0.2 },
];

/** Completion lengths 1..9 (as f32) for 2B sequences. */
const lengthsOf = (n: number) => Float32Array.from({ length: n }, (_, i) => 1 + ((i * 5) % 9));

/** loss, the six statistics and dlogps (after backward with upstream gradient 1.5). */
function run(be: Backend, B: number, opts: PreferenceLossOptions, seed: number): Tensor[] {
  const lp = be.fromArray(randomArray(2 * B, seed, 20), [2 * B]);
  lp.requiresGrad = true;
  const ref = be.fromArray(randomArray(2 * B, seed + 1, 20), [2 * B]);
  const lengths = be.fromArray(lengthsOf(2 * B), [2 * B]);
  const { loss, stats } = preferenceLoss(lp, ref, { ...opts, lengths });
  backward(loss, be.fromArray([1.5], [1]));
  return [loss, ...PREFERENCE_STATS.map((k) => stats[k]), lp.grad!];
}

Deno.test("preferenceLoss() matches the reference (loss, statistics, gradient) on both backends", async () => {
  for (const opts of TYPES) {
    for (const B of [1, 3, 70, 200]) {
      await compareBackends(`preference ${JSON.stringify(opts)} B=${B}`, (be) => run(be, B, opts, B), {
        atol: 2e-5,
        rtol: 2e-5,
      });
    }
  }
});

Deno.test("preferenceLossReference() gradient matches finite differences in f64 for every loss type", () => {
  for (const opts of TYPES) {
    const B = 5, ref = rand64(2 * B, 11, 3), len = lengthsOf(2 * B);
    const f = (xs: Float64Array[]) => {
      const l = new Float64Array(1);
      preferenceLossReference(l, new Float64Array(8), null, xs[0], ref, len, opts);
      return l[0];
    };
    gradcheck(`preference ${JSON.stringify(opts)}`, f, (xs) => {
      const d = new Float64Array(2 * B);
      preferenceLossReference(new Float64Array(1), new Float64Array(8), d, xs[0], ref, len, opts);
      return [d];
    }, [rand64(2 * B, 4, 3)]);
  }
});

Deno.test("preferenceLoss() gives hand-computed values: ln 2 at equal log-ratios, hinge and ipo on two pairs", async () => {
  for (const be of await backends()) {
    const t = (xs: number[]) => be.fromArray(xs, [xs.length]);
    // Policy = reference: every log-ratio 0.
    const same = preferenceLoss(t([-4, -7, -6, -2]), t([-4, -7, -6, -2]), { beta: 0.1 });
    assertClose((await same.loss.toArray())[0], Math.LN2, { atol: 1e-6, msg: be.name });
    for (const k of PREFERENCE_STATS.slice(0, 4)) assert.equal((await same.stats[k].toArray())[0], 0, k);
    // Pair 0: dc = 1, dr = -1; pair 1: dc = -0.5, dr = 0.5 (lengths 2, 4, 1, 5).
    const lp = t([-1, -2.5, -4, -1.5]), ref = t([-2, -2, -3, -2]), lengths = t([2, 4, 1, 5]);
    // hinge, beta 0.25: z = 0.5 -> 0.5; z = -0.25 -> 1.25; mean 0.875.
    const hinge = preferenceLoss(lp, ref, { loss_type: "hinge", beta: 0.25 });
    assertClose((await hinge.loss.toArray())[0], 0.875, { atol: 1e-6, msg: `${be.name} hinge` });
    // ipo, beta 0.5: u = 1/2 + 1/1 - 1 = 0.5 -> 0.25; u = -0.5/4 - 0.5/5 - 1 = -1.225 -> 1.500625.
    const ipo = preferenceLoss(lp, ref, { loss_type: "ipo", beta: 0.5, lengths });
    assertClose((await ipo.loss.toArray())[0], (0.25 + 1.500625) / 2, { atol: 1e-6, msg: `${be.name} ipo` });
    const want = { // beta 0.5: rewards chosen (0.5, -0.25), rejected (-0.5, 0.25)
      "rewards/chosen": 0.125,
      "rewards/rejected": -0.125,
      "rewards/accuracies": 0.5,
      "rewards/margins": 0.25,
      "logps/chosen": -1.75,
      "logps/rejected": -2.75,
    };
    for (const [k, v] of Object.entries(want)) {
      assertClose((await ipo.stats[k as keyof typeof want].toArray())[0], v, { atol: 1e-6, msg: k });
    }
  }
});

Deno.test("preferenceLoss() rejects bad options and shapes", async () => {
  for (const be of await backends()) {
    const x = be.zeros([4]);
    assert.throws(() => preferenceLoss(x, x, { beta: 0 }), /beta must be > 0/);
    assert.throws(
      () => preferenceLoss(x, x, { label_smoothing: 0.5 }),
      /label_smoothing must be in \[0, 0.5\)/,
    );
    assert.throws(
      () => preferenceLoss(x, x, { loss_type: "hinge", label_smoothing: 0.1 }),
      /applies to loss_type sigmoid/,
    );
    assert.throws(() => preferenceLoss(x, x, { loss_type: "ipo" }), /ipo needs lengths/);
    assert.throws(() => preferenceLoss(be.zeros([3]), be.zeros([3])), /expected \[2B\]/);
    assert.throws(() => preferenceLoss(x, be.zeros([2])), /ref_logps has 2 elements, expected 4/);
  }
});

Deno.test("preferenceLoss() gradient descent on the log-probs raises the chosen and lowers the rejected", async () => {
  for (const be of await backends()) {
    let lp = [-3, -3];
    for (let step = 0; step < 3; step++) {
      const x = be.fromArray(lp, [2]);
      x.requiresGrad = true;
      const { loss } = preferenceLoss(x, be.fromArray([-3, -3], [2]), { beta: 1 });
      backward(loss);
      const g = await x.grad!.toArray();
      lp = lp.map((v, i) => v - g[i]);
    }
    assert.ok(lp[0] > -3 && lp[1] < -3, `${be.name}: ${lp}`);
    assertAllClose([lp[0] + lp[1]], [-6], { atol: 1e-6 });
  }
});
