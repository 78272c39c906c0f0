import assert from "node:assert/strict";
import {
  DEFAULT_DEADLINE_S,
  failed,
  MAX_BACKOFF_S,
  MIN_ISSUED_LIFETIME_S,
  nextRenewal,
  type RefreshState,
  schedule,
  succeeded,
} from "./_refresh_schedule.ts";

const T = 1_800_000_000;

/** Runs the refresher's schedule for `seconds` of simulated time, every renewal succeeding with
 * what `obtain` says; returns the times it renewed at. */
function simulate(
  seconds: number,
  obtain: (at: number) => Parameters<typeof succeeded>[0],
): number[] {
  let state = succeeded(obtain(T), undefined);
  let now = T;
  const renewals: number[] = [];
  for (;;) {
    const next = nextRenewal(now, state);
    assert.equal(next.kind, "wait");
    if (next.kind !== "wait") break;
    now += next.seconds;
    if (now > T + seconds) return renewals;
    renewals.push(now - T);
    state = succeeded(obtain(now), state);
  }
  return renewals;
}

Deno.test("schedule() renews at two thirds of the shortest remaining lifetime", () => {
  // An issued token of an hour: renewed at 40 min.
  assert.deepEqual(schedule({ at: T, issuedExpiresIn: 3600 }), {
    expiresAt: T + 3600,
    renewAt: T + 2400,
  });
  // The OIDC token's exp (the agent's lifetime) counts as it is, even a few seconds.
  assert.deepEqual(schedule({ at: T, issuedExpiresIn: 3600, oidcExp: T + 300 }), {
    expiresAt: T + 300,
    renewAt: T + 200,
  });
  assert.deepEqual(schedule({ at: T, oidcExp: T + 6 }), { expiresAt: T + 6, renewAt: T + 4 });
  // Without expires_in, the issued JWT's own exp.
  assert.deepEqual(schedule({ at: T, issuedExp: T + 900 }), {
    expiresAt: T + 900,
    renewAt: T + 600,
  });
  // Nothing says: five minutes.
  assert.deepEqual(schedule({ at: T }), { expiresAt: T + 300, renewAt: T + 200 });
});

Deno.test("an issued token's lifetime counts as at least a minute, so expires_in: 0 renews at most once a minute", () => {
  for (const expiresIn of [0, 1, 5, 30, 59]) {
    assert.deepEqual(schedule({ at: T, issuedExpiresIn: expiresIn }), {
      expiresAt: T + MIN_ISSUED_LIFETIME_S,
      renewAt: T + MIN_ISSUED_LIFETIME_S,
    }, `expires_in ${expiresIn}`);
  }
  // An hour of a hostile endpoint that answers expires_in: 0: 60 renewals, never two in a minute.
  const renewals = simulate(3600, (at) => ({ at, issuedExpiresIn: 0 }));
  assert.equal(renewals.length, 60);
  assert.ok(renewals.every((at, i) => i === 0 || at - renewals[i - 1]! >= 60), `${renewals}`);
  // A JWT whose exp is already past is no different.
  assert.equal(simulate(600, (at) => ({ at, issuedExp: at - 100 })).length, 10);
});

Deno.test("short-lived OIDC tokens (tests, demos) still renew in seconds", () => {
  const renewals = simulate(30, (at) => ({ at, issuedExpiresIn: 3600, oidcExp: at + 6 }));
  assert.deepEqual(renewals.slice(0, 4), [4, 8, 12, 16]);
});

Deno.test("nextRenewal() backs off after failures, but tries again before the tokens expire", () => {
  const state: RefreshState = succeeded({ at: T, issuedExpiresIn: 3600 }, undefined);
  const now = T + 2400; // The renewal was due and failed.
  const waits = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((failures) => {
    const next = nextRenewal(now, { ...state, failures });
    return next.kind === "wait" ? next.seconds : -1;
  });
  // 2 s doubling, at most 5 minutes (20 minutes are left, so half of them never binds).
  assert.deepEqual(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
  assert.equal(MAX_BACKOFF_S, 300);
  // With 30 s left, never more than half of them.
  const late = nextRenewal(T + 3570, { ...state, failures: 7 });
  assert.deepEqual(late, { kind: "wait", seconds: 15 });
});

Deno.test("nextRenewal() gives up once the agent stops issuing tokens and the last ones have expired", () => {
  let state = succeeded({ at: T, oidcExp: T + 9 }, undefined);
  let now = T;
  const steps: string[] = [];
  for (let i = 0; i < 20; i++) {
    const next = nextRenewal(now, state);
    if (next.kind === "stop") {
      steps.push(`stop: ${next.reason}`);
      break;
    }
    now += next.seconds;
    steps.push(`${now - T}`);
    state = failed(state); // the agent refuses from now on
  }
  // Renewal due at 6 fails, then again at 7 and 8 (half of what is left, at least a second), and
  // at 9, when the tokens have expired, the third and fourth failures end it.
  assert.deepEqual(steps, [
    "6",
    "7",
    "8",
    "9",
    "stop: gave up after 4 failed renewals, once the last tokens had expired",
  ]);
  // Failures while the tokens are still valid never end it.
  const valid = failed(failed(failed(succeeded({ at: T, issuedExpiresIn: 3600 }, undefined))));
  assert.equal(nextRenewal(T + 100, valid).kind, "wait");
});

Deno.test("nextRenewal() stops at the job's time-out (or after a day) whatever else holds", () => {
  const state = succeeded({ at: T, issuedExpiresIn: 3600 }, undefined, 10);
  assert.equal(state.deadline, T + 10 * 60 + 300);
  // Waits never go past the deadline.
  assert.deepEqual(nextRenewal(T + 800, state), { kind: "wait", seconds: 100 });
  assert.deepEqual(nextRenewal(T + 900, state), {
    kind: "stop",
    reason: "stopped after the job's time-out, as a refresher must not outlive its job",
  });
  assert.equal(succeeded({ at: T }, undefined).deadline, T + DEFAULT_DEADLINE_S);
  // The deadline is the hook's: renewals do not move it.
  assert.equal(succeeded({ at: T + 500 }, state).deadline, state.deadline);
  assert.equal(succeeded({ at: T + 500 }, state).renewals, 1);
});

Deno.test("nextRenewal() always waits at least a second", () => {
  const state = succeeded({ at: T, oidcExp: T }, undefined);
  assert.deepEqual(nextRenewal(T + 5, state), { kind: "wait", seconds: 1 });
});
