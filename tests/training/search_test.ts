/**
 * Hyperparameter search: TPE beats random search on Branin and 6-D Hartmann; the samplers' values
 * respect log, step and choices and are seeded; the median pruner's decisions on recorded curves
 * follow Optuna's rules step by step; a real tiny search saves steps by pruning at an equal best;
 * bad search configs are refused with every problem named.
 */
import { debianText } from "../_search.ts";
import { assert, SLOW } from "../_assert.ts";
import {
  loadSearchConfig,
  medianPrune,
  optimize,
  type ParamValue,
  runSearch,
  suggestParams,
  type Trial,
  validateSearchConfig,
  validateSearchSpace,
} from "../../training/search.ts";

// ---- benchmark functions (pure; no training) ----

/** Branin-Hoo on [-5, 10] x [0, 15]; minimum 0.397887. */
function branin(p: Record<string, ParamValue>): number {
  const x1 = p.x1 as number, x2 = p.x2 as number;
  const b = 5.1 / (4 * Math.PI ** 2), c = 5 / Math.PI, t = 1 / (8 * Math.PI);
  return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * Math.cos(x1) + 10;
}

const H_ALPHA = [1.0, 1.2, 3.0, 3.2];
const H_A = [
  [10, 3, 17, 3.5, 1.7, 8],
  [0.05, 10, 17, 0.1, 8, 14],
  [3, 3.5, 1.7, 10, 17, 8],
  [17, 8, 0.05, 10, 0.1, 14],
];
const H_P = [
  [1312, 1696, 5569, 124, 8283, 5886],
  [2329, 4135, 8307, 3736, 1004, 9991],
  [2348, 1451, 3522, 2883, 3047, 6650],
  [4047, 8828, 8732, 5743, 1091, 381],
];

/** Hartmann 6-D on [0, 1]^6; minimum -3.32237. */
function hartmann6(p: Record<string, ParamValue>): number {
  const x = [0, 1, 2, 3, 4, 5].map((j) => p[`x${j}`] as number);
  let f = 0;
  for (let i = 0; i < 4; i++) {
    let s = 0;
    for (let j = 0; j < 6; j++) s += H_A[i][j] * (x[j] - H_P[i][j] * 1e-4) ** 2;
    f -= H_ALPHA[i] * Math.exp(-s);
  }
  return f;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function medianBest(
  f: (p: Record<string, ParamValue>) => number,
  space: Record<string, unknown>,
  sampler: "tpe" | "random",
): Promise<number> {
  const bests: number[] = [];
  for (let seed = 0; seed < 20; seed++) {
    const trials = await optimize(f, { space, n_trials: 60, sampler, seed });
    assert.equal(trials.length, 60);
    bests.push(Math.min(...trials.map((t) => t.value!)));
  }
  return median(bests);
}

Deno.test("optimize() with TPE beats random search on Branin (median best of 60 trials over 20 seeds)", async () => {
  const space = { x1: { type: "float", low: -5, high: 10 }, x2: { type: "float", low: 0, high: 15 } };
  const tpe = await medianBest(branin, space, "tpe"), random = await medianBest(branin, space, "random");
  assert.ok(tpe < random, `TPE ${tpe} vs random ${random}`);
  assert.ok(tpe > 0.397887 - 1e-9, `not below the global minimum: ${tpe}`);
});

Deno.test("optimize() with TPE beats random search on 6-D Hartmann (median best of 60 trials over 20 seeds)", async () => {
  const space = Object.fromEntries(
    [0, 1, 2, 3, 4, 5].map((j) => [`x${j}`, { type: "float", low: 0, high: 1 }]),
  );
  const tpe = await medianBest(hartmann6, space, "tpe"),
    random = await medianBest(hartmann6, space, "random");
  assert.ok(tpe < random, `TPE ${tpe} vs random ${random}`);
  assert.ok(tpe > -3.32237 - 1e-6, `not below the global minimum: ${tpe}`);
});

// ---- samplers ----

const MIXED = validateSearchSpace({
  lr: { type: "float", low: 1e-5, high: 1e-1, log: true },
  warmup: { type: "int", low: 0, high: 100, step: 10 },
  layers: { type: "int", low: 1, high: 64, log: true },
  drop: { type: "float", low: 0, high: 0.5, step: 0.05 },
  sched: { type: "categorical", choices: ["linear", "cosine", "constant"] },
});

function checkValues(p: Record<string, ParamValue>): void {
  const lr = p.lr as number,
    warmup = p.warmup as number,
    layers = p.layers as number,
    drop = p.drop as number;
  assert.ok(lr >= 1e-5 && lr <= 1e-1, `lr ${lr}`);
  assert.ok(
    Number.isInteger(warmup) && warmup % 10 === 0 && warmup >= 0 && warmup <= 100,
    `warmup ${warmup}`,
  );
  assert.ok(Number.isInteger(layers) && layers >= 1 && layers <= 64, `layers ${layers}`);
  assert.ok(
    drop >= 0 && drop <= 0.5 && Math.abs(drop / 0.05 - Math.round(drop / 0.05)) < 1e-9,
    `drop ${drop}`,
  );
  assert.ok(["linear", "cosine", "constant"].includes(p.sched as string), `sched ${p.sched}`);
}

Deno.test("suggestParams() keeps log, int step, float step and choices, by random and by TPE, and is seeded", async () => {
  for (const sampler of ["random", "tpe"] as const) {
    // A categorical optimum and a log-scale optimum: TPE should find both.
    const f = (p: Record<string, ParamValue>) =>
      (Math.log10(p.lr as number) + 3) ** 2 + (p.sched === "cosine" ? 0 : 1) + (p.warmup as number) / 100;
    const a = await optimize(f, { space: MIXED as never, n_trials: 40, sampler, seed: 7 });
    const b = await optimize(f, { space: MIXED as never, n_trials: 40, sampler, seed: 7 });
    assert.deepEqual(a.map((t) => t.params), b.map((t) => t.params), "same seed, same study");
    for (const t of a) checkValues(t.params);
    const c = await optimize(f, { space: MIXED as never, n_trials: 5, sampler, seed: 8 });
    assert.notDeepEqual(c.map((t) => t.params), a.slice(0, 5).map((t) => t.params), "another seed");
    if (sampler === "tpe") {
      const late = a.slice(20);
      const cosine = late.filter((t) => t.params.sched === "cosine").length;
      assert.ok(cosine > late.length / 2, `TPE favours the better choice: ${cosine} of ${late.length}`);
    }
  }
  // Random log sampling is uniform in log space: about half the draws fall below the geometric middle.
  const low = (await optimize(() => 0, { space: MIXED as never, n_trials: 400, sampler: "random", seed: 1 }))
    .filter((t) => (t.params.lr as number) < 1e-3).length;
  assert.ok(low > 160 && low < 240, `log-uniform: ${low} of 400 below 1e-3`);
});

Deno.test("suggestParams() with the grid sampler visits every point once, then returns null", async () => {
  const space = validateSearchSpace({
    a: { type: "int", low: 1, high: 3 },
    b: { type: "categorical", choices: ["x", "y"] },
    c: { type: "float", low: 1e-3, high: 1e-1, log: true, grid_points: 3 },
  });
  const trials = await optimize((p) => p.a as number, {
    space: space as never,
    n_trials: 100,
    sampler: "grid",
    seed: 2,
  });
  assert.equal(trials.length, 18);
  const keys = new Set(
    trials.map((t) => JSON.stringify([t.params.a, t.params.b, (t.params.c as number).toPrecision(6)])),
  );
  assert.equal(keys.size, 18);
  assert.ok(trials.some((t) => Math.abs((t.params.c as number) - 1e-2) < 1e-12), "log grid middle 1e-2");
  assert.equal(
    suggestParams(space, trials, { sampler: "grid", seed: 2, number: 18, direction: "minimize" }),
    null,
  );
  assert.throws(
    () =>
      suggestParams(validateSearchSpace({ x: { type: "float", low: 0, high: 1 } }), [], {
        sampler: "grid",
        seed: 0,
        number: 0,
        direction: "minimize",
      }),
    /continuous float; give it step or grid_points/,
  );
});

Deno.test("the search functions refuse an option name they do not read (a typo had run on the default)", async () => {
  const space = { x: { type: "float", low: 0, high: 10 } };
  await assert.rejects(
    () => optimize((p) => p.x as number, { space, n_trials: 3, directon: "maximize" } as never),
    {
      name: "TypeError",
      message: /^optimize: "directon" \(did you mean direction\?\) is not an option of optimize/,
    },
  );
  const c = validateSearchConfig({
    base: BASE,
    n_trials: 1,
    study_dir: "s",
    space: { learning_rate: { type: "float", low: 1e-4, high: 1e-2 } },
  });
  await assert.rejects(() => runSearch(c, { worker: 2 } as never), {
    name: "TypeError",
    message: /did you mean workers\?/,
  });
  const s = validateSearchSpace(space);
  const o = { sampler: "tpe", seed: 0, number: 0, direction: "minimize", n_startup_trials: 0 } as const;
  assert.throws(() => suggestParams(s, [], o as never), {
    name: "TypeError",
    message: /"n_startup_trials" is not an option/,
  });
  assert.throws(
    () => medianPrune({ 1: 2 }, [], { direction: "minimize", warmup_steps: 5 } as never),
    { name: "TypeError", message: /^medianPrune: "warmup_steps"/ },
  );
  assert.throws(() => validateSearchSpace(space, { warm: () => {} } as never), {
    name: "TypeError",
    message: /did you mean warn\?/,
  });
});

// ---- median pruning on recorded curves ----

function done(number: number, curve: Record<number, number>, state: Trial["state"] = "complete"): Trial {
  const steps = Object.keys(curve).map(Number);
  return {
    number,
    state,
    params: {},
    value: curve[Math.max(...steps)],
    intermediate_values: curve,
  };
}

/** Five completed curves (minimize). Medians: step 1: 10, step 2: 8, step 3: 6, step 4: 4.5 (D has no step 4). */
const COMPLETED = [
  done(0, { 1: 10, 2: 8, 3: 6, 4: 5 }),
  done(1, { 1: 9, 2: 7, 3: 5, 4: 4 }),
  done(2, { 1: 11, 2: 9, 3: 7, 4: 6 }),
  done(3, { 1: 12, 2: 10, 3: 8 }),
  done(4, { 1: 8, 2: 6, 3: 4, 4: 3 }),
];

/** Feed `curve` step by step and return the decision at each step, stopping at the first prune. */
function decisions(curve: number[], trials: Trial[], opts: Record<string, number | string> = {}): string[] {
  const seen: Record<number, number> = {}, out: string[] = [];
  for (let i = 0; i < curve.length; i++) {
    seen[i + 1] = curve[i];
    const d = medianPrune(seen, trials, { direction: "minimize", ...opts } as never);
    out.push(d.prune ? "prune" : "keep");
    if (d.prune) break;
  }
  return out;
}

Deno.test("medianPrune() decides as Optuna's MedianPruner on recorded curves, step by step", () => {
  // step 1: 10.5 > median 10 -> prune at once.
  assert.deepEqual(decisions([10.5, 1, 1, 1], COMPLETED), ["prune"]);
  // step 1: 9.5 <= 10 keep; step 2: best so far 8.5 > median 8 -> prune.
  assert.deepEqual(decisions([9.5, 8.5, 1, 1], COMPLETED), ["keep", "prune"]);
  // The best value so far counts, not the last: step 2 reports 9 (> median 8) but the best so far is
  // 7 (<= 8): keep; step 3: best 6.5 > median 6: prune.
  assert.deepEqual(decisions([7, 9, 6.5, 1], COMPLETED), ["keep", "keep", "prune"]);
  // Equal to the median is not worse: keep. Step 4's median is over the 4 trials that reached it: 4.5.
  assert.deepEqual(decisions([10, 8, 6, 4.5], COMPLETED), ["keep", "keep", "keep", "keep"]);
  assert.deepEqual(decisions([10, 8, 6, 4.6], COMPLETED), ["keep", "keep", "keep", "prune"]);
  // Step 5: no completed trial has a value there: never prunes, however bad.
  assert.deepEqual(decisions([10, 8, 6, 4, 99], COMPLETED), ["keep", "keep", "keep", "keep", "keep"]);
  assert.match(medianPrune({ 5: 99 }, COMPLETED, { direction: "minimize" }).reason, /no completed trial/);
  // Only NaN reported: prune; NaN among the completed values is ignored by the median.
  assert.deepEqual(decisions([NaN], COMPLETED), ["prune"]);
  const withNaN = [...COMPLETED, done(5, { 1: NaN, 2: 1 })]; // step 1 median still 10 over 5 finite values
  assert.deepEqual(decisions([10.5], withNaN), ["prune"]);
  // n_startup_trials 5 counts completed trials only: 4 complete + 1 pruned does not prune.
  const four = [...COMPLETED.slice(0, 4), done(4, { 1: 8 }, "pruned")];
  assert.deepEqual(decisions([99, 99, 99], four), ["keep", "keep", "keep"]);
  assert.match(
    medianPrune({ 1: 99 }, four, { direction: "minimize" }).reason,
    /4 completed trials < n_startup_trials 5/,
  );
  assert.deepEqual(decisions([99, 99], four, { n_startup_trials: 4 }), ["prune"]);
  // n_warmup_steps 2: step 1 is never checked; step 2 is.
  assert.deepEqual(decisions([99, 99], COMPLETED, { n_warmup_steps: 2 }), ["keep", "prune"]);
  // interval_steps 2 (warmup 0): checks at the first report of [0, 2), [2, 4), [4, 6): steps 1, 2, 4;
  // step 3 is skipped even though 6.5 > median 6.
  assert.deepEqual(decisions([9, 7, 6.5, 4], COMPLETED, { interval_steps: 2 }), [
    "keep",
    "keep",
    "keep",
    "keep",
  ]);
  assert.deepEqual(decisions([9, 7, 6.5, 4.6], COMPLETED, { interval_steps: 2 }), [
    "keep",
    "keep",
    "keep",
    "prune",
  ]);
  // maximize: worse means below the median.
  const up = COMPLETED.map((t) =>
    done(t.number, Object.fromEntries(Object.entries(t.intermediate_values).map(([k, v]) => [k, -v])))
  );
  const seen = { 1: -10.5 };
  assert.equal(medianPrune(seen, up, { direction: "maximize" }).prune, true);
  assert.equal(medianPrune({ 1: -9.5 }, up, { direction: "maximize" }).prune, false);
});

// ---- bad input ----

const BASE = { model: "tiny", dataset: "d.jsonl", eval_strategy: "steps", eval_steps: 5, max_steps: 10 };

function refusal(obj: Record<string, unknown>): Error {
  try {
    validateSearchConfig({ base: BASE, n_trials: 2, study_dir: "s", ...obj }, {
      file: "search.yaml",
      warn: () => {},
    });
  } catch (e) {
    return e as Error;
  }
  throw new Error(`accepted ${JSON.stringify(obj)}`);
}

Deno.test("validateSearchConfig() with sampler grid refuses a space that has no grid (it failed at trial 0, after study.json bound the study to it)", () => {
  let e = refusal({
    space: { learning_rate: { type: "float", low: 1e-4, high: 1e-2, log: true } },
    sampler: "grid",
  });
  assert.ok(e instanceof RangeError);
  assert.match(
    e.message,
    /search\.yaml: space\.learning_rate: is a continuous float; give it step or grid_points \(e\.g\. grid_points: 5\)/,
  );
  e = refusal({ space: { warmup_steps: { type: "int", low: 0, high: 200_000 } }, sampler: "grid" });
  assert.match(e.message, /space\.warmup_steps: has 200001 points; raise step or use sampler: random/);
  e = refusal({
    space: { warmup_steps: { type: "int", low: 0, high: 999 }, seed: { type: "int", low: 0, high: 999 } },
    sampler: "grid",
  });
  assert.match(e.message, /space: the grid has 1000000 points \(over 100000\); use sampler: random or tpe/);
  const ok = validateSearchConfig({
    base: BASE,
    study_dir: "s",
    sampler: "grid",
    space: { learning_rate: { type: "float", low: 1e-4, high: 1e-2, log: true, grid_points: 3 } },
  });
  assert.equal(ok.space.learning_rate.type === "float" && ok.space.learning_rate.grid_points, 3);
});

Deno.test("validateSearchConfig() refuses empty and inverted ranges, unknown fields and bad settings", () => {
  let e = refusal({ space: { learning_rate: { type: "float", low: 1e-3, high: 1e-3 } } });
  assert.ok(e instanceof RangeError);
  assert.match(e.message, /space\.learning_rate: empty range: low 0.001 must be < high 0.001/);
  e = refusal({ space: { warmup_steps: { type: "int", low: 10, high: 0 } } });
  assert.match(e.message, /space\.warmup_steps: inverted range: low 10 must be < high 0; swap them/);
  e = refusal({ space: { lr_scheduler_type: { type: "categorical", choices: [] } } });
  assert.match(e.message, /choices: empty/);
  e = refusal({ space: { learning_rat: { type: "float", low: 1e-4, high: 1e-2 } } });
  assert.ok(e instanceof TypeError);
  assert.match(e.message, /space\.learning_rat: unknown config field; did you mean learning_rate\?/);
  e = refusal({ space: { "lora.rr": { type: "int", low: 4, high: 16 } } });
  assert.match(e.message, /unknown lora field "rr"; did you mean lora\.r\?/);
  e = refusal({ space: { output_dir: { type: "categorical", choices: ["a"] } } });
  assert.match(e.message, /set by the search/);
  // A range end that makes an invalid config is named with the reason.
  e = refusal({ space: { learning_rate: { type: "float", low: -1, high: 1 } } });
  assert.match(e.message, /space\.learning_rate: -1 makes an invalid config: .*learning_rate/);
  e = refusal({ space: { learning_rate: { type: "float", low: 0, high: 1, log: true } } });
  assert.match(e.message, /must be > 0 with log: true/);
  // a seed the samplers' 32-bit generator would alias (2^32 + 1 drew seed 1's trials)
  e = refusal({ seed: 2 ** 32 + 1 });
  assert.match(e.message, /seed: expected an integer >= 0 and <= 4294967295, got 4294967297/);
  // found at load rather than after trials: a float range on an integer field (each trial failed on a
  // fraction), a section's field over a base without that section (full training became LoRA), and an
  // eval_steps no trial reaches (a whole trial trained first, and then bound the study to it)
  e = refusal({ space: { per_device_train_batch_size: { type: "float", low: 1, high: 4 } } });
  assert.match(
    e.message,
    /space\.per_device_train_batch_size: per_device_train_batch_size takes whole numbers; use type: int/,
  );
  e = refusal({ space: { eval_steps: { type: "float", low: 2, high: 20 } } });
  assert.match(e.message, /space\.eval_steps: eval_steps takes whole numbers of steps or a ratio below 1/);
  assert.doesNotThrow(() =>
    validateSearchConfig(
      {
        base: BASE,
        space: { warmup_steps: { type: "float", low: 0, high: 0.2 } },
        n_trials: 2,
        study_dir: "s",
      },
      { warn: () => {} },
    )
  );
  e = refusal({ space: { "lora.r": { type: "categorical", choices: [2, 4] } } });
  assert.match(
    e.message,
    /space\.lora\.r: samples a field of the lora section, and base has none: every trial would train LoRA adapters instead of the whole model; add lora: \{\} to base/,
  );
  assert.doesNotThrow(() =>
    validateSearchConfig({
      base: { ...BASE, lora: {} },
      space: { "lora.r": { type: "categorical", choices: [2, 4] } },
      n_trials: 2,
      study_dir: "s",
    }, { warn: () => {} })
  );
  e = refusal({ base: { ...BASE, eval_steps: 20 }, space: { seed: { type: "int", low: 1, high: 2 } } });
  assert.match(e.message, /base\.eval_steps: 20 is above max_steps 10, so no trial would evaluate/);
  // Every problem at once.
  e = refusal({
    space: { x: { type: "float", low: 0, high: 1 }, warmup_steps: { type: "int", low: 0, high: 5, step: 0 } },
    sampler: "bayes",
    metric: "loss",
    n_trials: 0,
  });
  for (
    const re of [
      /space\.x: unknown config field/,
      /space\.warmup_steps\.step/,
      /sampler: expected tpe, random or grid/,
      /metric:/,
      /n_trials/,
    ]
  ) {
    assert.match(e.message, re);
  }
  assert.match(e.message, /5 problems/);
  assert.match(
    refusal({ space: { seed: { type: "int", low: 1, high: 2 } }, n_trials: undefined }).message,
    /set n_trials and\/or timeout/,
  );
  assert.match(
    refusal({
      base: { ...BASE, eval_strategy: "no", eval_steps: null },
      space: { seed: { type: "int", low: 1, high: 2 } },
    })
      .message,
    /base\.eval_strategy: the metric "eval_loss" comes from evaluations/,
  );
  assert.match(
    refusal({ space: { seed: { type: "int", low: 1, high: 2 } }, tpe: { n_ei_candidate: 3 } }).message,
    /tpe\.n_ei_candidate: unknown setting/,
  );
  // settings of a sampler or pruner the search does not use
  e = refusal({
    space: { learning_rate: { type: "float", low: 1e-4, high: 1e-2, grid_points: 3 } },
    sampler: "random",
    pruner: "none",
    tpe: { n_startup_trials: 0 },
    median: { n_warmup_steps: 9 },
  });
  for (
    const re of [
      /tpe: its settings are for sampler tpe, and this search uses "random"; remove tpe/,
      /median: its settings are for pruner median, and this search uses "none"; remove median/,
      /space\.learning_rate\.grid_points: is for sampler grid, and this search uses "random"; remove it/,
    ]
  ) {
    assert.match(e.message, re);
  }
  // grid_points beside step (the steps are the grid), and the per-trial fields in base: refused
  assert.match(
    refusal({
      space: { learning_rate: { type: "float", low: 1e-3, high: 4e-3, step: 1e-3, grid_points: 2 } },
      sampler: "grid",
    }).message,
    /space\.learning_rate\.grid_points: cannot be combined with step \(the steps are the grid\)/,
  );
  assert.match(
    refusal({ base: { ...BASE, resume_from_checkpoint: true } }).message,
    /base\.resume_from_checkpoint: is set by the search for each trial; remove it from base/,
  );
  // high off the step grid is lowered as Optuna does, with a note.
  const notes: string[] = [];
  const c = validateSearchConfig(
    {
      base: BASE,
      n_trials: 1,
      study_dir: "s",
      space: { warmup_steps: { type: "int", low: 0, high: 11, step: 5 } },
    },
    { warn: (l) => notes.push(l) },
  );
  assert.equal(c.space.warmup_steps.type === "int" && c.space.warmup_steps.high, 10);
  assert.match(notes.join(), /using high 10/);
});

Deno.test("loadSearchConfig() reads base_config beside the YAML and names file:line in errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/run.yaml`,
      "model: tiny\ndataset: d.jsonl\neval_strategy: steps\neval_steps: 5\nlearning_rate: 1.0e-3\n",
    );
    await Deno.writeTextFile(
      `${dir}/search.yaml`,
      "base_config: run.yaml\nspace:\n  warmup_steps: {type: int, low: 0, high: 10}\nn_trials: 3\nstudy_dir: s\n",
    );
    const c = await loadSearchConfig(`${dir}/search.yaml`);
    assert.equal(c.base.learning_rate, 1e-3);
    assert.equal(c.base.eval_steps, 5);
    await Deno.writeTextFile(
      `${dir}/bad.yaml`,
      "base_config: run.yaml\nspace:\n  warmup_step: {type: int, low: 0, high: 10}\nn_trials: 3\nstudy_dir: s\n",
    );
    await assert.rejects(
      () => loadSearchConfig(`${dir}/bad.yaml`),
      /bad\.yaml:3: space\.warmup_step: unknown config field; did you mean warmup_steps\?/,
    );
    await assert.rejects(() => loadSearchConfig(`${dir}/none.yaml`), Deno.errors.NotFound);
    await Deno.writeTextFile(`${dir}/lost.yaml`, "base_config: gone.yaml\nspace: {}\n");
    // an empty base_config: named as a path to give (it had said "pass base here", a library hint)
    await Deno.writeTextFile(`${dir}/empty.yaml`, "space: {}\nbase_config:\n");
    await assert.rejects(() => loadSearchConfig(`${dir}/empty.yaml`), {
      name: "TypeError",
      message:
        /^Cannot load search config \S+empty\.yaml:2: base_config: expected the path of a training config \(relative to the search file's folder\), got null$/,
    });
    await assert.rejects(() => loadSearchConfig(`${dir}/lost.yaml`), {
      name: "NotFound",
      message:
        /^Cannot load search config \S+lost\.yaml: base_config gone\.yaml \(\S+gone\.yaml\) does not exist; fix the path/,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- a real tiny search: pruning saves steps at an equal best ----

/** Debian package descriptions as a text dataset (the first `n` documents, cut to 400 characters). */

/** A tiny model, a log-uniform learning rate and warmup, random sampling (the same trials with or without pruning). */
async function tinySearch(
  dir: string,
  o: {
    steps: number;
    trials: number;
    seed: number;
    pruner: "none" | "median";
    sampler?: "random" | "tpe";
    tpe?: { n_startup_trials: number };
  },
) {
  const config = validateSearchConfig({
    base: {
      model: "tiny",
      model_config: {
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 2,
        head_dim: 16,
        intermediate_size: 64,
        vocab_size: 320,
        max_position_embeddings: 32,
      },
      dataset: await debianText(dir, 200),
      max_steps: o.steps,
      max_seq_length: 32,
      per_device_train_batch_size: 4,
      save_strategy: "no",
      eval_strategy: "steps",
      eval_steps: 4,
      logging_steps: 100,
    },
    space: {
      learning_rate: { type: "float", low: 1e-4, high: 3e-2, log: true },
      warmup_steps: { type: "int", low: 0, high: 10, step: 2 },
    },
    sampler: o.sampler ?? "random",
    pruner: o.pruner,
    n_trials: o.trials,
    seed: o.seed,
    ...(o.pruner === "median" ? { median: { n_startup_trials: 3 } } : {}),
    ...(o.tpe ? { tpe: o.tpe } : {}),
    study_dir: `${dir}/study-${o.pruner}-${o.sampler ?? "random"}${o.sampler ? `-${o.seed}` : ""}`,
  });
  return await runSearch(config, { log: () => {} });
}

Deno.test({
  name: "runSearch() with median pruning saves >= 30% of the steps of a tiny search at an equal best",
  ignore: !SLOW,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const o = { steps: 20, trials: 12, seed: 2 };
      const full = await tinySearch(dir, { ...o, pruner: "none" });
      const pruned = await tinySearch(dir, { ...o, pruner: "median" });
      assert.equal(full.steps_run, 12 * 20);
      assert.ok(pruned.n_pruned > 0);
      const saved = 1 - pruned.steps_run / full.steps_run;
      assert.ok(saved >= 0.3, `saved ${(saved * 100).toFixed(1)}% of ${full.steps_run} steps`);
      assert.equal(pruned.best_trial, full.best_trial);
      assert.equal(pruned.best_value, full.best_value);
      // Every trial that was not pruned ran the same training as in the full study.
      for (const t of pruned.trials.filter((t) => t.state === "complete")) {
        assert.equal(t.value, full.trials[t.number].value);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("runSearch() prunes >= 30% of a small search's steps at an equal best, and writes the study's files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const o = { steps: 12, trials: 8, seed: 2 };
    // a folder with a study's file names but no study.json holds someone's files: refused, kept
    const notes = `${dir}/study-none-random/results.md`;
    await Deno.mkdir(`${dir}/study-none-random`);
    await Deno.writeTextFile(notes, "my notes");
    await assert.rejects(
      () => tinySearch(dir, { ...o, pruner: "none" }),
      /already holds results\.md and no study\.json/,
    );
    assert.equal(await Deno.readTextFile(notes), "my notes");
    await Deno.remove(notes);
    const full = await tinySearch(dir, { ...o, pruner: "none" });
    const r = await tinySearch(dir, { ...o, pruner: "median" });
    const saved = 1 - r.steps_run / full.steps_run;
    assert.ok(saved >= 0.3, `saved ${(saved * 100).toFixed(1)}% of ${full.steps_run} steps`);
    assert.equal(r.best_value, full.best_value);
    assert.equal(r.n_trials, 8);
    assert.equal(r.stopped_by, "n_trials");
    const study = `${dir}/study-median-random`;
    for (const t of r.trials) {
      assert.ok(t.state === "complete" || t.state === "pruned", t.state);
      if (t.state === "pruned") {
        assert.match(t.note!, /pruned at step \d+: best so far .* > median .* of \d+ completed trials/);
      }
      await Deno.stat(`${study}/${t.run_dir}/metrics.jsonl`);
    }
    // median n_startup_trials 3: the first three trials are never pruned.
    assert.ok(r.trials.slice(0, 3).every((t) => t.state === "complete"));
    const md = await Deno.readTextFile(`${study}/results.md`);
    assert.match(md, /\| trial \| state \| eval_loss \| steps \| learning_rate \| warmup_steps \| note \|/);
    assert.match(md, new RegExp(`\\| ${r.best_trial} \\(best\\) \\| complete`));
    const best = await loadBest(`${study}/best_config.yaml`);
    assert.equal(best.learning_rate, r.best_params!.learning_rate);
    assert.equal(best.output_dir, "trainer_output", "the best config trains into the base's output_dir");
    const svg = await Deno.readTextFile(`${study}/history.svg`);
    assert.match(svg, /best_eval_loss/);
    const json = JSON.parse(await Deno.readTextFile(`${study}/results.json`));
    assert.equal(json.best_value, r.best_value);
    // The same call again: nothing to do, nothing rerun.
    const again = await tinySearch(dir, { ...o, pruner: "median" });
    assert.deepEqual(again.trials.map((t) => t.finished), r.trials.map((t) => t.finished));
    // Another definition in the same study folder is refused.
    await assert.rejects(() => tinySearch(dir, { ...o, seed: 3, pruner: "median" }), /its seed differs/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function loadBest(path: string): Promise<Record<string, unknown>> {
  const { loadTrainingConfig } = await import("../../training/config.ts");
  return await loadTrainingConfig(path) as unknown as Record<string, unknown>;
}

Deno.test("a trial job (search --workers) reads its study from study.json, reports beside its run and is pruned by the study's median", async () => {
  const { trialJob } = await import("../../training/_search_trial.ts");
  const dir = await Deno.makeTempDir();
  try {
    await tinySearch(dir, { steps: 8, trials: 1, seed: 2, pruner: "median" });
    const study = `${dir}/study-median-random`, path = `${study}/study.json`;
    const file = JSON.parse(await Deno.readTextFile(path));
    // Three more completed trials far better at every step (median n_startup_trials 3), then a running one.
    const good = [1, 2, 3].map((number) => ({
      ...file.trials[0],
      number,
      value: 0.01,
      intermediate_values: { 4: 0.01, 8: 0.01 },
    }));
    const running = {
      number: 4,
      state: "running",
      params: file.trials[0].params,
      value: null,
      intermediate_values: {},
    };
    file.trials = [file.trials[0], ...good, running];
    await Deno.writeTextFile(path, JSON.stringify(file));
    const job = (trial: number) => ({
      id: "9",
      kind: "trial" as const,
      name: null,
      config: { study_dir: study, trial },
      state: "active" as const,
      attempts: 1,
      max_attempts: 3,
      worker: "w",
      result: null,
      error: null,
      created_at: "",
      finished_at: null,
      log: [],
    });
    const ctx = { attempt: 1, runs_dir: dir, worker: "w", log: () => {}, handle_signals: false };
    const r = await trialJob(job(4), ctx);
    const out = r.result as Record<string, unknown>;
    assert.equal(out.state, "pruned");
    assert.equal(out.steps, 4);
    assert.match(
      out.note as string,
      /^pruned at step 4: best so far [\d.]+ > median 0.01 of 4 completed trials at step 4/,
    );
    assert.equal(out.run_dir, "trials/trial-0004");
    const report = JSON.parse(await Deno.readTextFile(`${study}/trials/trial-0004.json`));
    assert.deepEqual(Object.keys(report.intermediate_values), ["4"]);
    assert.equal(report.intermediate_values["4"], out.value);
    assert.equal(
      JSON.parse(await Deno.readTextFile(path)).trials[4].state,
      "running",
      "workers never write study.json",
    );
    await assert.rejects(() => trialJob(job(7), ctx), { name: "RangeError", message: /has no trial 7/ });
    // a trial that ended is not run again (a trial job for it retrained it and replaced its folder)
    await assert.rejects(() => trialJob(job(1), ctx), {
      name: "RangeError",
      message: /trial 1 of the study in .* is complete, not running/,
    });
    await assert.rejects(
      () => trialJob({ ...job(0), config: { study_dir: `${dir}/none`, trial: 0 } }, ctx),
      Deno.errors.NotFound,
      "no study.json",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// The same budget of 12 trials of a tiny model (12 steps each); TPE draws its first 4 as random
// search draws them (one seeded generator per trial), then samples near the best so far. Measured
// (webgpu on llvmpipe) best eval_loss, random / TPE, seeds 1-6: 4.795 / 4.685, 4.649 / 4.649,
// 4.620 / 4.620, 4.655 / 4.655, 4.901 / 4.665, 4.665 / 4.669: means 4.714 vs 4.657; TPE at least as
// good in 5 of 6 and better in 2 (in the ties the best is a shared start-up trial, and TPE's later
// trials come close to it). The fast test runs seed 1; the SLOW one all six.
async function tpeVersusRandom(dir: string, seed: number) {
  const o = { steps: 12, trials: 12, seed, pruner: "none" as const };
  const random = await tinySearch(dir, { ...o, sampler: "random" });
  const tpe = await tinySearch(dir, { ...o, sampler: "tpe", tpe: { n_startup_trials: 4 } });
  assert.deepEqual(
    tpe.trials.slice(0, 4).map((t) => t.params),
    random.trials.slice(0, 4).map((t) => t.params),
  );
  return { random: random.best_value!, tpe: tpe.best_value!, tpe_best_trial: tpe.best_trial! };
}

Deno.test("runSearch() with TPE finds a learning rate x warmup config better than random search's on a tiny model (seed 1)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await tpeVersusRandom(dir, 1);
    console.log(`  best eval_loss: TPE ${r.tpe} (trial ${r.tpe_best_trial}), random ${r.random}`);
    assert.ok(r.tpe < r.random, `TPE ${r.tpe} vs random ${r.random}`);
    assert.ok(r.tpe_best_trial >= 4, "found by TPE, not in the shared start-up trials");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "SLOW: runSearch() with TPE vs random search on a tiny model over 6 seeds: better mean best, at least as good in 5",
  ignore: !SLOW,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const rs = [];
      for (let seed = 1; seed <= 6; seed++) rs.push(await tpeVersusRandom(dir, seed));
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const tpe = mean(rs.map((r) => r.tpe)), random = mean(rs.map((r) => r.random));
      console.log(
        `  best eval_loss by seed (random / TPE): ${rs.map((r) => `${r.random} / ${r.tpe}`).join(", ")}`,
      );
      assert.ok(tpe < random, `mean best: TPE ${tpe} vs random ${random}`);
      assert.ok(rs.filter((r) => r.tpe <= r.random).length >= 5, JSON.stringify(rs));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("runSearch() names a study_dir that is a file (it had failed on a bare mkdir)", async () => {
  const file = await Deno.makeTempFile();
  try {
    const c = validateSearchConfig({
      base: BASE,
      space: { seed: { type: "int", low: 1, high: 2 } },
      n_trials: 1,
      study_dir: file,
    }, { warn: () => {} });
    await assert.rejects(
      runSearch(c, { log: () => {}, progress: false }),
      TypeError,
      `Cannot search: study_dir ${file} is a file, not a folder; give the study a folder of its own`,
    );
  } finally {
    await Deno.remove(file);
  }
});
