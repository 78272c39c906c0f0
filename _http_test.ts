import assert from "node:assert/strict";
import { backoffDelay, MAX_RETRY_AFTER_MS, parseRetryAfter } from "./_http.ts";

const NOW = Date.parse("2026-11-26T12:00:00Z");

Deno.test("parseRetryAfter() reads delay-seconds and HTTP dates, capped at 30 s", () => {
  assert.deepEqual(
    [
      parseRetryAfter(null, NOW),
      parseRetryAfter("0", NOW),
      parseRetryAfter("2", NOW),
      parseRetryAfter(" 7 ", NOW),
      parseRetryAfter("86400", NOW),
      parseRetryAfter("Thu, 26 Nov 2026 12:00:05 GMT", NOW),
      parseRetryAfter("Thu, 26 Nov 2026 11:00:00 GMT", NOW),
      parseRetryAfter("Fri, 27 Nov 2026 12:00:00 GMT", NOW),
    ],
    [undefined, 0, 2000, 7000, MAX_RETRY_AFTER_MS, 5000, 0, MAX_RETRY_AFTER_MS],
  );
});

Deno.test("parseRetryAfter() ignores what it cannot read, so the backoff applies", () => {
  for (const value of ["-5", "1.5", "soon", "", "1e3", "Thursday"]) {
    assert.equal(parseRetryAfter(value, NOW), undefined, value);
  }
});

Deno.test("backoffDelay() doubles from 0.5 s up to 8 s with equal jitter", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 10].map((n) => backoffDelay(n, () => 0)), [
    250,
    500,
    1000,
    2000,
    4000,
    4000,
    4000,
  ]);
  assert.deepEqual([1, 2, 5, 10].map((n) => backoffDelay(n, () => 0.999999)).map(Math.round), [
    500,
    1000,
    8000,
    8000,
  ]);
});
