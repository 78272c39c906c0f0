import assert from "node:assert/strict";
import { ResponseTooLargeError } from "./_errors.ts";
import { backoffDelay, MAX_RETRY_AFTER_MS, parseRetryAfter, readCapped } from "./_http.ts";
import { rejection } from "./tests/_rejection.ts";

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

/** A body of 4 MiB (a decoded bomb) in 1 KiB chunks, and how much of it was pulled. */
function endless(): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled += 1024;
      controller.enqueue(new Uint8Array(1024).fill(0x61));
      if (pulled === 4 * 1024 * 1024) controller.close();
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => pulled };
}

Deno.test("readCapped() counts a compressed body as it is decoded, whatever its Content-Length, on every read path", async (t) => {
  // A fetch that decodes a body leaves Content-Length at the compressed size: 10 bytes here,
  // which the platform-fetch path would otherwise read whole, forever.
  for (const encoding of ["gzip", "br", "deflate", "zstd", " GZIP "]) {
    for (const framed of [true, false]) {
      await t.step(
        `${encoding.trim()}, ${framed ? "platform fetch" : "injected fetch"}`,
        async () => {
          const body = endless();
          const response = new Response(body.stream, {
            headers: { "content-encoding": encoding, "content-length": "10" },
          });
          const error = await rejection(readCapped(response, 8192, "Token endpoint", framed));
          assert.ok(error instanceof ResponseTooLargeError, String(error));
          assert.equal(
            error.message,
            `Token endpoint sent a body of more than 8192 bytes (Content-Encoding "${encoding.trim().toLowerCase()}")`,
          );
          assert.ok(body.pulled() <= 8192 + 1024, `pulled ${body.pulled()} bytes`);
        },
      );
    }
  }
  await t.step("identity is read at once", async () => {
    const response = new Response("abc", {
      headers: { "content-encoding": "identity", "content-length": "3" },
    });
    assert.deepEqual(
      new TextDecoder().decode(await readCapped(response, 8192, "Token endpoint", true)),
      "abc",
    );
  });
});
