// When the refresher (refresh: true) renews an entry's files: a pure function of the time, the
// tokens' lifetimes and the failures so far, so that the schedule is tested in milliseconds rather
// than by waiting. The hooks' refresher only waits for the number of seconds the engine prints.

/** The least an issued token's lifetime counts as: the endpoint's word is not trusted below it. */
export const MIN_ISSUED_LIFETIME_S = 60;
/** How long a token whose lifetime nothing says is taken to live. */
export const UNKNOWN_LIFETIME_S = 300;
/** The first wait after a failure; it doubles with each failure after it. */
export const FIRST_BACKOFF_S = 2;
/** The longest wait after a failure. */
export const MAX_BACKOFF_S = 300;
/** How many failures in a row, with every token expired, end the refresher. */
export const GIVE_UP_FAILURES = 3;
/** How long a refresher runs without a job time-out to go by. */
export const DEFAULT_DEADLINE_S = 24 * 60 * 60;

/** What one renewal (or the hook) obtained, in seconds since the epoch. */
export interface Obtained {
  /** When the tokens were obtained. */
  at: number;
  /** The issued token's `expires_in`, if the endpoint said. */
  issuedExpiresIn?: number;
  /** The issued token's own `exp` claim, if it is a JWT that has one. */
  issuedExp?: number;
  /** The OIDC token's `exp`, when a file keeps the OIDC token (its lifetime is the agent's). */
  oidcExp?: number;
}

/** What the refresher keeps between renewals. */
export interface RefreshState {
  /** When the last tokens were obtained. */
  obtainedAt: number;
  /** When the first of them expires. */
  expiresAt: number;
  /** When they should be renewed, if nothing fails. */
  renewAt: number;
  /** Failures since the last success. */
  failures: number;
  /** When the refresher stops whatever happens: the job's time-out, or a day. */
  deadline: number;
  /** Renewals that succeeded. */
  renewals: number;
}

/** What the refresher does next. */
export type Next =
  | { kind: "wait"; seconds: number }
  | { kind: "stop"; reason: string };

/**
 * When tokens just obtained expire and should be renewed: at about two thirds of the shortest
 * remaining lifetime. An issued token's lifetime counts as at least a minute, and a renewal it
 * drives comes at most once a minute (so `expires_in: 0` cannot make the refresher spin); the OIDC
 * token's `exp`, which the agent sets from `lifetime`, counts as it is.
 *
 * @param obtained What was obtained, and when.
 * @returns When the first token expires, and when to renew.
 */
export function schedule(obtained: Obtained): { expiresAt: number; renewAt: number } {
  const { at } = obtained;
  const candidates: { expiresAt: number; renewAt: number }[] = [];
  const issuedLifetime = obtained.issuedExpiresIn ??
    (obtained.issuedExp === undefined ? undefined : obtained.issuedExp - at);
  if (issuedLifetime !== undefined) {
    const lifetime = Math.max(issuedLifetime, MIN_ISSUED_LIFETIME_S);
    candidates.push({
      expiresAt: at + lifetime,
      renewAt: at + Math.max((lifetime * 2) / 3, MIN_ISSUED_LIFETIME_S),
    });
  }
  if (obtained.oidcExp !== undefined) {
    const lifetime = Math.max(obtained.oidcExp - at, 0);
    candidates.push({ expiresAt: obtained.oidcExp, renewAt: at + (lifetime * 2) / 3 });
  }
  if (candidates.length === 0) {
    candidates.push({
      expiresAt: at + UNKNOWN_LIFETIME_S,
      renewAt: at + (UNKNOWN_LIFETIME_S * 2) / 3,
    });
  }
  return {
    expiresAt: Math.min(...candidates.map((c) => c.expiresAt)),
    renewAt: Math.floor(Math.min(...candidates.map((c) => c.renewAt))),
  };
}

/**
 * The state after tokens were obtained, by the hook (`previous` undefined) or by a renewal.
 *
 * @param obtained What was obtained, and when.
 * @param previous The state before, or `undefined` for the hook's first tokens.
 * @param jobTimeoutMinutes The job's time-out (BUILDKITE_TIMEOUT), if it has one.
 * @returns The new state.
 */
export function succeeded(
  obtained: Obtained,
  previous: RefreshState | undefined,
  jobTimeoutMinutes?: number,
): RefreshState {
  const deadline = previous?.deadline ??
    obtained.at +
      (jobTimeoutMinutes === undefined ? DEFAULT_DEADLINE_S : jobTimeoutMinutes * 60 + 300);
  return {
    ...schedule(obtained),
    obtainedAt: obtained.at,
    failures: 0,
    deadline,
    renewals: previous === undefined ? 0 : previous.renewals + 1,
  };
}

/**
 * The state after a renewal failed.
 *
 * @param state The state before.
 * @returns The state with one more failure.
 */
export function failed(state: RefreshState): RefreshState {
  return { ...state, failures: state.failures + 1 };
}

/**
 * What the refresher does next: wait until the renewal is due (backing off after failures, but
 * trying again before the current tokens expire), or stop: at the deadline, or when the agent has
 * stopped issuing tokens (failures in a row, and every token the files hold has expired).
 *
 * @param now The time, in seconds since the epoch.
 * @param state The state.
 * @returns Wait so many whole seconds (at least one), or stop and why.
 */
export function nextRenewal(now: number, state: RefreshState): Next {
  if (now >= state.deadline) {
    return {
      kind: "stop",
      reason: "stopped after the job's time-out, as a refresher must not outlive its job",
    };
  }
  if (state.failures >= GIVE_UP_FAILURES && now >= state.expiresAt) {
    return {
      kind: "stop",
      reason: `gave up after ${state.failures} failed renewals, once the last tokens had expired`,
    };
  }
  let wait: number;
  if (state.failures === 0) {
    wait = state.renewAt - now;
  } else {
    // 2 s, 4 s, 8 s, … 5 min; but half the time the current tokens have left, if they have any.
    wait = Math.min(FIRST_BACKOFF_S * 2 ** Math.min(state.failures - 1, 8), MAX_BACKOFF_S);
    if (state.expiresAt > now) wait = Math.min(wait, (state.expiresAt - now) / 2);
  }
  wait = Math.min(wait, state.deadline - now);
  return { kind: "wait", seconds: Math.max(1, Math.floor(wait)) };
}
