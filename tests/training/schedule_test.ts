/**
 * Learning-rate schedules against HF's `lr_lambda` formulas (transformers
 * `src/transformers/optimization.py`, evaluated in Python for N = 23 training steps, 5 warmup
 * steps, learning rate 3e-4, at every step 0..N+2), the warmup ceil rule, and input checks.
 */
import { assert, assertAllClose, caught } from "../_assert.ts";
import {
  createLrSchedule,
  getWarmupSteps,
  LR_SCHEDULER_TYPES,
  type LrScheduleConfig,
} from "../../training/schedule.ts";

/** The error `f` throws (fails when it returns). */
const N = 23;
const LR = 3e-4;

/** Factors from HF's formulas (Python floats, printed with repr). */
// deno-fmt-ignore
const GOLDEN: Record<string, { type: string; config: Partial<LrScheduleConfig>; factors: number[] }> = {
  "linear": {
    type: "linear",
    config: {warmup_steps: 5},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.9444444444444444, 0.8888888888888888, 0.8333333333333334, 0.7777777777777778, 0.7222222222222222, 0.6666666666666666, 0.6111111111111112, 0.5555555555555556, 0.5, 0.4444444444444444, 0.3888888888888889, 0.3333333333333333, 0.2777777777777778, 0.2222222222222222, 0.16666666666666666, 0.1111111111111111, 0.05555555555555555, 0.0, 0.0, 0.0],
  },
  "cosine": {
    type: "cosine",
    config: {warmup_steps: 5},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.9924038765061041, 0.9698463103929542, 0.9330127018922194, 0.883022221559489, 0.8213938048432696, 0.75, 0.6710100716628344, 0.5868240888334653, 0.5, 0.41317591116653485, 0.32898992833716567, 0.2500000000000001, 0.17860619515673032, 0.11697777844051105, 0.06698729810778065, 0.03015368960704584, 0.00759612349389599, 0, 0.00759612349389599, 0.030153689607045786],
  },
  "cosine_cycles": {
    type: "cosine",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {num_cycles: 1.5}},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.9330127018922194, 0.75, 0.5, 0.2500000000000001, 0.06698729810778065, 0, 0.06698729810778059, 0.24999999999999978, 0.4999999999999999, 0.75, 0.9330127018922194, 1.0, 0.9330127018922193, 0.7500000000000002, 0.5000000000000001, 0.2500000000000004, 0.06698729810778059, 0, 0.06698729810778042, 0.2500000000000001],
  },
  "cosine_with_restarts": {
    type: "cosine_with_restarts",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {num_cycles: 3}},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.9330127018922194, 0.75, 0.5, 0.2500000000000001, 0.06698729810778065, 1.0, 0.9330127018922193, 0.7500000000000002, 0.5, 0.2499999999999999, 0.06698729810778054, 1.0, 0.9330127018922194, 0.7499999999999999, 0.5, 0.25000000000000033, 0.06698729810778087, 0.0, 0.0, 0.0],
  },
  "polynomial": {
    type: "polynomial",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {lr_end: 1e-05, power: 2.0}},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.8955761316872428, 0.7971193415637859, 0.7046296296296297, 0.6181069958847737, 0.537551440329218, 0.462962962962963, 0.39434156378600826, 0.33168724279835393, 0.27499999999999997, 0.2242798353909465, 0.17952674897119333, 0.14074074074074075, 0.10792181069958849, 0.08106995884773663, 0.060185185185185175, 0.04526748971193417, 0.036316872427983544, 0.03333333333333334, 0.03333333333333334, 0.03333333333333334],
  },
  "constant": {
    type: "constant",
    config: {},
    factors: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
  },
  "constant_with_warmup": {
    type: "constant_with_warmup",
    config: {warmup_steps: 5},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
  },
  "inverse_sqrt": {
    type: "inverse_sqrt",
    config: {warmup_steps: 5},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.9128709291752769, 0.8451542547285166, 0.7905694150420948, 0.7453559924999299, 0.7071067811865475, 0.674199862463242, 0.6454972243679028, 0.6201736729460422, 0.5976143046671968, 0.5773502691896258, 0.5590169943749475, 0.5423261445466404, 0.5270462766947299, 0.5129891760425771, 0.5, 0.48795003647426655, 0.4767312946227961, 0.4662524041201569, 0.45643546458763845, 0.4472135954999579],
  },
  "inverse_sqrt_nowarm": {
    type: "inverse_sqrt",
    config: {},
    factors: [1.0, 0.9999500037496877, 0.9999000149975006, 0.9998500337415648, 0.9998000599800071, 0.9997500937109545, 0.9997001349325354, 0.9996501836428782, 0.9996002398401119, 0.9995503035223668, 0.9995003746877732, 0.9994504533344625, 0.9994005394605663, 0.9993506330642176, 0.999300734143549, 0.999250842696695, 0.9992009587217893, 0.9991510822169677, 0.9991012131803658, 0.9990513516101199, 0.9990014975043671, 0.9989516508612453, 0.9989018116788927, 0.9988519799554487, 0.9988021556890525, 0.9987523388778446],
  },
  "cosine_with_min_lr": {
    type: "cosine_with_min_lr",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {min_lr: 3e-05}},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.9931634888554937, 0.9728616793536587, 0.9397114317029974, 0.8947199994035401, 0.8392544243589427, 0.775, 0.703909064496551, 0.6281416799501187, 0.55, 0.4718583200498814, 0.3960909355034491, 0.3250000000000001, 0.26074557564105727, 0.20528000059645996, 0.16028856829700258, 0.12713832064634126, 0.1068365111445064, 0.1, 0.1068365111445064, 0.1271383206463412],
  },
  "cosine_with_min_lr_rate": {
    type: "cosine_with_min_lr",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {min_lr_rate: 0.1}},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.9931634888554937, 0.9728616793536587, 0.9397114317029974, 0.8947199994035401, 0.8392544243589427, 0.775, 0.703909064496551, 0.6281416799501187, 0.55, 0.4718583200498814, 0.3960909355034491, 0.3250000000000001, 0.26074557564105727, 0.20528000059645996, 0.16028856829700258, 0.12713832064634126, 0.1068365111445064, 0.1, 0.1068365111445064, 0.1271383206463412],
  },
  "cosine_warmup_with_min_lr": {
    type: "cosine_warmup_with_min_lr",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {min_lr_rate: 0.1}},
    factors: [0.2, 0.4, 0.6, 0.8, 1.0, 0.9931634888554937, 0.9728616793536587, 0.9397114317029974, 0.8947199994035401, 0.8392544243589427, 0.775, 0.703909064496551, 0.6281416799501187, 0.55, 0.4718583200498814, 0.3960909355034491, 0.3250000000000001, 0.26074557564105727, 0.20528000059645996, 0.16028856829700258, 0.12713832064634126, 0.1068365111445064, 0.1, 0.1068365111445064, 0.1271383206463412, 0.16028856829700264],
  },
  "cosine_warmup_with_min_lr_wlr": {
    type: "cosine_warmup_with_min_lr",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {min_lr_rate: 0.1, warmup_lr_rate: 0.2}},
    factors: [0.2, 0.4, 0.6000000000000001, 0.8, 1.0, 0.9931634888554937, 0.9728616793536587, 0.9397114317029974, 0.8947199994035401, 0.8392544243589427, 0.775, 0.703909064496551, 0.6281416799501187, 0.55, 0.4718583200498814, 0.3960909355034491, 0.3250000000000001, 0.26074557564105727, 0.20528000059645996, 0.16028856829700258, 0.12713832064634126, 0.1068365111445064, 0.1, 0.1068365111445064, 0.1271383206463412, 0.16028856829700264],
  },
  "warmup_stable_decay": {
    type: "warmup_stable_decay",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {num_decay_steps: 8}},
    factors: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9619397662556434, 0.8535533905932737, 0.6913417161825449, 0.5, 0.30865828381745514, 0.14644660940672627, 0.03806023374435663, 0, 0, 0],
  },
  "warmup_stable_decay_shapes": {
    type: "warmup_stable_decay",
    config: {warmup_steps: 5, lr_scheduler_kwargs: {num_decay_steps: 6, num_stable_steps: 4, warmup_type: "cosine", decay_type: "1-sqrt", min_lr_ratio: 0.05}},
    factors: [0.05, 0.14071692767189997, 0.37821692767189996, 0.6717830723281001, 0.9092830723281, 1.0, 1.0, 1.0, 1.0, 1.0, 0.6121641240593302, 0.4515172442698555, 0.3282485578727798, 0.22432824811866026, 0.13277261728348694, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
  },
  "linear_ratio": {
    type: "linear",
    config: {warmup_ratio: 0.1},
    factors: [0.0, 0.3333333333333333, 0.6666666666666666, 1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.0, 0.0, 0.0],
  },
};

for (const [name, g] of Object.entries(GOLDEN)) {
  Deno.test(`createLrSchedule() matches HF's ${name} factors at every step, including 0 and N`, () => {
    const s = createLrSchedule(
      { lr_scheduler_type: g.type, learning_rate: LR, ...g.config } as LrScheduleConfig,
      N,
    );
    const factors = g.factors.map((_, step) => s.factorAt(step));
    assertAllClose(factors, g.factors, { atol: 1e-15, rtol: 1e-14, msg: name });
    const lrs = g.factors.map((_, step) => s.lrAt(step));
    assertAllClose(lrs, g.factors.map((f) => LR * f), { atol: 1e-19, rtol: 1e-14, msg: `${name} lrAt` });
  });
}

Deno.test("createLrSchedule() covers every scheduler type in the golden table", () => {
  const covered = new Set(Object.values(GOLDEN).map((g) => g.type));
  assert.deepEqual(LR_SCHEDULER_TYPES.filter((t) => !covered.has(t)), []);
});

Deno.test("createLrSchedule() is 0 at step 0 with warmup, the peak at the warmup's end, and 0 at step N (linear)", () => {
  const s = createLrSchedule({ lr_scheduler_type: "linear", learning_rate: 1e-3, warmup_steps: 10 }, 100);
  assert.equal(s.num_warmup_steps, 10);
  assert.equal(s.lrAt(0), 0);
  assert.equal(s.lrAt(10), 1e-3);
  assert.equal(s.lrAt(100), 0);
  assert.equal(s.lrAt(150), 0);
});

Deno.test("getWarmupSteps() follows HF's ceil rule, float products included", () => {
  assert.equal(getWarmupSteps(23, { warmup_ratio: 0.1 }), 3);
  assert.equal(getWarmupSteps(1001, { warmup_ratio: 0.1 }), 101);
  // 100 * 0.07 = 7.000000000000001 in binary floating point, so HF warms up for 8 steps.
  assert.equal(getWarmupSteps(100, { warmup_ratio: 0.07 }), 8);
  assert.equal(getWarmupSteps(100, { warmup_steps: 0.07 }), 8);
  assert.equal(getWarmupSteps(100, { warmup_steps: 7 }), 7);
  assert.equal(getWarmupSteps(100, { warmup_steps: 1 }), 1);
  assert.equal(getWarmupSteps(100, {}), 0);
  assert.throws(() => getWarmupSteps(100, { warmup_steps: 2.5 }), RangeError);
  assert.throws(() => getWarmupSteps(100, { warmup_ratio: 1.5 }), RangeError);
  assert.throws(() => getWarmupSteps(-1, {}), RangeError);
});

Deno.test("createLrSchedule() takes its warmup from warmup_ratio with the ceil rule", () => {
  const s = createLrSchedule({ lr_scheduler_type: "cosine", learning_rate: 1, warmup_ratio: 0.07 }, 100);
  assert.equal(s.num_warmup_steps, 8);
  assert.equal(s.lrAt(4), 0.5);
  assert.equal(s.lrAt(8), 1);
});

Deno.test("createLrSchedule() lists every bad input at once", () => {
  const err = caught(() =>
    createLrSchedule({
      lr_scheduler_type: "cosine",
      learning_rate: -1,
      warmup_steps: 2.5,
      warmup_ratio: 2,
      lr_scheduler_kwargs: { num_cycles: 0.5, power: 2 },
    }, 0)
  );
  assert.ok(err instanceof RangeError);
  for (
    const want of [
      "5 problems",
      "learning_rate",
      "num_training_steps",
      "warmup_steps",
      "warmup_ratio",
      "takes no power",
    ]
  ) {
    assert.ok(err.message.includes(want), `${want} missing in:\n${err.message}`);
  }
});

Deno.test("createLrSchedule() rejects what HF would silently ignore or raise on", () => {
  const cases: [Partial<LrScheduleConfig>, string][] = [
    [{ lr_scheduler_type: "constant", warmup_steps: 10 }, `use "constant_with_warmup"`],
    [
      { lr_scheduler_type: "constant_with_warmup", lr_scheduler_kwargs: { num_cycles: 1 } },
      "takes no lr_scheduler_kwargs",
    ],
    [{ lr_scheduler_type: "polynomial", learning_rate: 1e-7 }, "lr_end (1e-7) below learning_rate"],
    [{ lr_scheduler_type: "cosine_with_min_lr" }, "exactly one of min_lr, min_lr_rate (got neither)"],
    [
      { lr_scheduler_type: "cosine_with_min_lr", lr_scheduler_kwargs: { min_lr: 1e-5, min_lr_rate: 0.1 } },
      "(got both)",
    ],
    [{ lr_scheduler_type: "warmup_stable_decay" }, "needs num_decay_steps"],
    [
      { lr_scheduler_type: "cosine_with_restarts", lr_scheduler_kwargs: { num_cycles: 1.5 } },
      "use an integer",
    ],
    [{
      lr_scheduler_type: "cosine",
      lr_scheduler_kwargs: { num_cycle: 1 } as LrScheduleConfig["lr_scheduler_kwargs"],
    }, "did you mean num_cycles?"],
    [{ lr_scheduler_type: "cosin" as "cosine" }, `did you mean "cosine"?`],
  ];
  for (const [config, want] of cases) {
    const e = caught(() =>
      createLrSchedule({ lr_scheduler_type: "linear", learning_rate: 1e-3, ...config }, 100)
    );
    assert.ok(e instanceof TypeError || e instanceof RangeError, String(e));
    assert.ok(e.message.includes(want), `${JSON.stringify(config)}: "${want}" missing in:\n${e.message}`);
  }
});

Deno.test("lrAt() rejects negative and fractional steps", () => {
  const s = createLrSchedule({ lr_scheduler_type: "linear", learning_rate: 1e-3 }, 10);
  assert.throws(() => s.lrAt(-1), RangeError);
  assert.throws(() => s.factorAt(1.5), RangeError);
});
