// Property tests: thousands of random and mutated responses through the response processor, and
// of random flag and variable combinations through the CLI's option parsing; then a few dozen of
// those combinations through the real cli.ts. Seeded (tests/_fuzz.ts): a failure prints the seed
// and the shrunk counterexample, and FUZZ_SEED=<seed> replays it.

import assert from "node:assert/strict";
import { type CliCommand, parseCommandLine } from "../_cli_config.ts";
import { UsageError } from "../_cli_flags.ts";
import { TokenExchangeError } from "../_errors.ts";
import type { ReadResponse } from "../_http.ts";
import { formEncode } from "../_request.ts";
import { processResponse, processTokenExchangeResponse } from "../_response.ts";
import { runCli } from "./_cli.ts";
import {
  argvArbitrary,
  EDGE_VALUES,
  envArbitrary,
  fc,
  GOOD_VALUES,
  params,
  SEED,
  URL_VALUES,
} from "./_fuzz.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { CLIENT_SECRET, ISSUED_TOKEN, SUBJECT_TOKEN } from "./_tokens.ts";

// The response processor.

/** What the exchange masks, and the forms a server may echo them in. */
const BASIC = btoa(`ci:${formEncode(CLIENT_SECRET)}`);
const SECRETS = [SUBJECT_TOKEN, CLIENT_SECRET, BASIC];
const ECHOES = [
  SUBJECT_TOKEN,
  SUBJECT_TOKEN.split(".")[2]!,
  CLIENT_SECRET,
  formEncode(CLIENT_SECRET),
  encodeURIComponent(CLIENT_SECRET),
  BASIC,
];

const anyJson = fc.oneof(
  fc.constantFrom(null, true, 0, -1, 1.5, 1e308, "", " ", "\u0000", [], {}),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(...ECHOES),
);

/** A token response with each field present or not, and of any type. */
const tokenObject = fc.record({
  access_token: fc.oneof(
    { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
    { weight: 2, arbitrary: anyJson },
  ),
  issued_token_type: fc.oneof(
    fc.constant("urn:ietf:params:oauth:token-type:access_token"),
    anyJson,
  ),
  token_type: fc.oneof(fc.constantFrom("Bearer", "N_A"), anyJson),
  expires_in: fc.oneof(
    fc.integer({ min: -10, max: 10 ** 9 }),
    fc.double(),
    fc.constantFrom("3600", " 60 ", "-1", "1e3", "0x10", "", "99999999999999999999999"),
    anyJson,
  ),
  scope: fc.oneof(fc.constantFrom("read write", ""), anyJson),
  refresh_token: anyJson,
  error: fc.oneof(
    fc.constantFrom("invalid_grant", "invalid_client", "invalid_target", ""),
    anyJson,
  ),
  error_description: fc.oneof(fc.string({ maxLength: 600 }), anyJson),
  error_uri: fc.oneof(fc.webUrl(), anyJson),
}, { requiredKeys: [] });

const encoder = new TextEncoder();

/** Bytes a body may be made of. */
const body: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: tokenObject.map((object) => encoder.encode(JSON.stringify(object))) },
  { weight: 2, arbitrary: anyJson.map((value) => encoder.encode(JSON.stringify(value) ?? "")) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.string({ unit: "binary", maxLength: 200 }), fc.constantFrom(...ECHOES))
      .map(([text, secret]) => encoder.encode(`<html>${text}${secret}${text}</html>`)),
  },
  {
    // A valid response, mutated: cut short, a byte flipped, a BOM or bytes in front, repeated.
    weight: 4,
    arbitrary: fc.tuple(
      tokenObject.map((object) => encoder.encode(JSON.stringify(object))),
      fc.constantFrom("truncate", "flip", "bom", "prefix", "double", "invalid-utf8"),
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
    ).map(([bytes, mutation, at, byte]) => {
      const index = bytes.length === 0 ? 0 : at % bytes.length;
      switch (mutation) {
        case "truncate":
          return bytes.slice(0, index);
        case "flip": {
          const copy = bytes.slice();
          if (copy.length > 0) copy[index] = byte;
          return copy;
        }
        case "bom":
          return new Uint8Array([0xef, 0xbb, 0xbf, ...bytes]);
        case "prefix":
          return new Uint8Array([byte, ...bytes]);
        case "double":
          return new Uint8Array([...bytes, ...bytes]);
        default:
          return new Uint8Array([...bytes.slice(0, index), 0xc3, 0x28, ...bytes.slice(index)]);
      }
    }),
  },
);

const headerValue = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom(...ECHOES));
const contentType = fc.constantFrom(
  "application/json",
  "application/json; charset=utf-8",
  "APPLICATION/JSON",
  "application/token+json",
  "text/html",
  "text/plain; charset=iso-8859-1",
  "",
  ";;;",
  "application/x-www-form-urlencoded",
);

const response = fc.record({
  status: fc.oneof(
    { weight: 6, arbitrary: fc.constant(200) },
    {
      weight: 4,
      arbitrary: fc.constantFrom(201, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 408),
    },
    { weight: 2, arbitrary: fc.constantFrom(429, 500, 502, 503, 504) },
    { weight: 2, arbitrary: fc.integer({ min: 200, max: 599 }) },
  ),
  statusText: fc.constantFrom("", "OK", "Bad Request", "Service Unavailable", "Weird Reason"),
  contentType: fc.option(contentType),
  location: fc.option(headerValue),
  retryAfter: fc.option(headerValue),
  body,
  /** Through the public processTokenExchangeResponse() and a real Response, or not. */
  viaResponse: fc.boolean(),
});

type Generated = typeof response extends fc.Arbitrary<infer T> ? T : never;

function headersOf(generated: Generated): Headers {
  const headers = new Headers();
  if (generated.contentType !== null) headers.set("content-type", generated.contentType);
  if (generated.location !== null) headers.set("location", generated.location);
  if (generated.retryAfter !== null) headers.set("retry-after", generated.retryAfter);
  return headers;
}

/** Checks one result: a usable token, or one of the library's own errors, never a secret. */
function checkOutcome(
  outcome: { result: unknown } | { error: unknown },
  debug: readonly string[],
  status: number,
  seen: Map<string, number>,
): void {
  if ("result" in outcome) {
    const result = outcome.result as Record<string, unknown>;
    assert.equal(status, 200, "only HTTP 200 may give a token");
    assert.equal(typeof result.accessToken, "string");
    assert.notEqual((result.accessToken as string).trim(), "", "an empty access token");
    for (const field of ["issuedTokenType", "tokenType", "scope", "refreshToken"]) {
      assert.ok(["string", "undefined"].includes(typeof result[field]), field);
    }
    const { expiresIn } = result;
    assert.ok(
      expiresIn === undefined ||
        (typeof expiresIn === "number" && Number.isFinite(expiresIn) && expiresIn >= 0),
      `expiresIn ${expiresIn}`,
    );
    seen.set("token", (seen.get("token") ?? 0) + 1);
  } else {
    const { error } = outcome;
    assert.ok(
      error instanceof TokenExchangeError,
      `threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
    );
    assert.equal(error.name, error.constructor.name);
    assert.notEqual(error.message, "");
    assert.doesNotMatch(error.message, /[\r\n]/, "a message of more than one line");
    for (const secret of ECHOES) {
      assert.ok(!error.message.includes(secret), `the message holds a secret: ${error.message}`);
    }
    seen.set(error.name, (seen.get(error.name) ?? 0) + 1);
  }
  for (const line of debug) {
    for (const secret of ECHOES) assert.ok(!line.includes(secret), `debug holds a secret: ${line}`);
  }
}

Deno.test("processTokenExchangeResponse() only ever returns a usable token or throws one of its own errors, never a secret", async () => {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(response, async (generated) => {
      const headers = headersOf(generated);
      const debug: string[] = [];
      const options = { secrets: SECRETS, onDebug: (line: string) => debug.push(line) };
      let outcome: { result: unknown } | { error: unknown };
      try {
        if (generated.viaResponse) {
          const nullBody = [204, 205, 304].includes(generated.status);
          const real = new Response(nullBody ? null : generated.body.slice(), {
            status: generated.status,
            statusText: generated.statusText,
            headers,
          });
          outcome = { result: await processTokenExchangeResponse(real, options) };
        } else {
          const read: ReadResponse = {
            status: generated.status,
            statusText: generated.statusText,
            headers,
            type: "basic",
            body: generated.body,
          };
          outcome = { result: processResponse(read, options) };
        }
      } catch (error) {
        outcome = { error };
      }
      checkOutcome(outcome, debug, generated.status, seen);
    }),
    params(3000),
  );
  // The generator must reach every outcome, or the property proves little.
  for (
    const kind of [
      "token",
      "OAuthError",
      "HttpStatusError",
      "InvalidResponseError",
      "RedirectError",
    ]
  ) {
    assert.ok((seen.get(kind) ?? 0) >= 30, `only ${seen.get(kind) ?? 0} × ${kind} (seed ${SEED})`);
  }
});

Deno.test("processTokenExchangeResponse() refuses an oversized body and an opaque redirect with its own errors", async () => {
  const seen = new Map<string, number>();
  const big = new Uint8Array(1024 * 1024 + 1).fill(0x20);
  const outcomes = [
    await processTokenExchangeResponse(new Response(big)).then(
      (result) => ({ result }),
      (error) => ({ error }),
    ),
  ];
  try {
    outcomes.push({
      result: processResponse({
        status: 0,
        statusText: "",
        headers: new Headers(),
        type: "opaqueredirect",
        body: new Uint8Array(),
      }, {}),
    });
  } catch (error) {
    outcomes.push({ error });
  }
  for (const outcome of outcomes) checkOutcome(outcome, [], 0, seen);
  assert.deepEqual(Object.fromEntries(seen), { ResponseTooLargeError: 1, RedirectError: 1 });
});

// The CLI's option parsing.

const cliValue = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...EDGE_VALUES) },
  { weight: 3, arbitrary: fc.constantFrom(...URL_VALUES) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 16 }) },
);

/** A variable lookup that reads only what was set, like Deno.env.get. */
function lookup(env: Map<string, string>) {
  return (name: string) => env.get(name);
}

/** What a parse came to: a command, or a usage error (exit status 2). */
function parse(args: string[], env: Map<string, string>): CliCommand | UsageError {
  try {
    return parseCommandLine(args, lookup(env));
  } catch (error) {
    if (error instanceof UsageError) return error;
    throw new Error(
      `parseCommandLine(${JSON.stringify(args)}, ${JSON.stringify([...env])}) threw ${error}`,
      { cause: error },
    );
  }
}

function checkConfig(command: CliCommand): void {
  if (command.kind !== "run") return;
  const config = command.config;
  assert.ok(
    (config.tokenEndpoint === undefined) !== (config.issuer === undefined),
    "exactly one of token endpoint and issuer",
  );
  assert.ok(Number.isFinite(config.timeout) && config.timeout > 0 && config.timeout <= 3_600_000);
  assert.ok(Number.isSafeInteger(config.retries) && config.retries >= 0 && config.retries <= 100);
  if (config.clientSecret !== undefined) {
    assert.ok(config.clientId !== undefined && config.clientSecret !== "");
  }
  assert.ok(["token", "json", "kubernetes"].includes(config.format));
  assert.equal(
    config.execCredentialApiVersion,
    config.format === "kubernetes" ? "client.authentication.k8s.io/v1" : undefined,
  );
  assert.ok(config.targetAudience.every((audience) => audience.trim() !== ""));
  assert.ok(["basic", "post"].includes(config.clientAuth));
}

Deno.test("parseCommandLine() returns a sound configuration or a UsageError (exit 2) for any flags and variables", () => {
  let configs = 0;
  let usageErrors = 0;
  fc.assert(
    fc.property(argvArbitrary(cliValue), envArbitrary(cliValue), (args, generated) => {
      const outcome = parse(args, new Map([["STS_SECRET", "s3cret"], ...generated]));
      if (outcome instanceof UsageError) {
        usageErrors++;
        assert.notEqual(outcome.message, "");
        assert.doesNotMatch(outcome.message, /^\s+at /m);
      } else {
        configs++;
        checkConfig(outcome);
      }
    }),
    params(5000),
  );
  assert.ok(
    configs >= 250 && usageErrors >= 250,
    `${configs} configurations, ${usageErrors} usage errors`,
  );
});

// The real cli.ts, with combinations that stay on this machine and finish quickly: endpoints are
// the loopback server or refused before any request, retries at most 1, timeouts at most 5 s.

Deno.test("cli.ts exits 0, 1 or 2 as its parsed options predict, for random flags and variables, never with a stack trace", async (t) => {
  await using server = startTokenEndpoint((request) =>
    request.path === "/.well-known/openid-configuration"
      ? Response.json({ issuer: server.origin, token_endpoint: server.url })
      : tokenResponse({ access_token: ISSUED_TOKEN })
  );
  const tokenFile = await Deno.makeTempFile({ prefix: "fuzz-subject-token-" });
  await Deno.writeTextFile(tokenFile, SUBJECT_TOKEN);
  try {
    // Values that keep a run on this machine and short: the loopback server, or refused before
    // any request is sent; no retries but the one added below.
    const wild = fc.constantFrom(
      "http://sts.example.com/token",
      "sts.example.com/token",
      "0",
      "-1",
      "x",
      "maybe",
      "yaml",
      "",
      "UNSET_VAR",
      "bad name",
      "/nonexistent/token",
      "relative",
      "read write",
    );
    const good: Record<string, readonly string[]> = {
      ...GOOD_VALUES,
      "token-endpoint": [server.url],
      issuer: [server.origin],
      "subject-token-file": [tokenFile, "-"],
      timeout: ["5", "0.5"],
    };
    const names = Object.keys(good).filter((name) => name !== "retries").concat("verbose");
    const cases = fc.sample(
      fc.tuple(
        argvArbitrary(wild, names, good).map((args) => [...args, "--retries", "1"]),
        fc.constantFrom(server.url, undefined),
      ),
      { seed: SEED, numRuns: 48 },
    );
    const classes = new Map<string, number>();
    for (const [index, [args, endpointEnv]] of cases.entries()) {
      const env = new Map<string, string>([
        ["MY_TOKEN", SUBJECT_TOKEN],
        ["STS_SECRET", CLIENT_SECRET],
        ...(endpointEnv ? [["BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT", endpointEnv]] : []),
      ] as [string, string][]);
      const predicted = parse(args, env);
      const expected = predicted instanceof UsageError
        ? "usage"
        : predicted.kind !== "run"
        ? "info"
        : "run";
      classes.set(expected, (classes.get(expected) ?? 0) + 1);
      await t.step(`#${index} (${expected}): ${JSON.stringify(args)}`, async () => {
        const result = await runCli(args, { env: Object.fromEntries(env) });
        const context = `seed ${SEED}, case ${index}: ${result.stderr}`;
        const config = predicted instanceof UsageError || predicted.kind !== "run"
          ? undefined
          : predicted.config;
        if (!config?.debug) {
          assert.doesNotMatch(
            result.stderr,
            /^\s+at /m,
            `a stack trace without --debug: ${context}`,
          );
        }
        const errors = result.stderr.split("\n").filter((line) =>
          line.startsWith("token-exchange: ") && !line.startsWith("token-exchange: debug: ")
        );
        switch (expected) {
          case "usage":
            assert.deepEqual(
              { code: result.code, stdout: result.stdout, errors },
              {
                code: 2,
                stdout: "",
                errors: [`token-exchange: ${(predicted as UsageError).message}`],
              },
              context,
            );
            break;
          case "info":
            assert.deepEqual({ code: result.code, errors }, { code: 0, errors: [] }, context);
            assert.match(result.stdout, /^token-exchange /, context);
            break;
          default:
            assert.ok(result.code === 0 || result.code === 1, `exit ${result.code}: ${context}`);
            classes.set(`exit ${result.code}`, (classes.get(`exit ${result.code}`) ?? 0) + 1);
            if (result.code === 0) {
              assert.deepEqual(errors, [], context);
              assert.equal(
                config!.format === "json"
                  ? JSON.parse(result.stdout).access_token
                  : config!.format === "kubernetes"
                  ? JSON.parse(result.stdout).status.token
                  : result.stdout.trimEnd(),
                ISSUED_TOKEN,
                context,
              );
            } else {
              assert.equal(result.stdout, "", context);
              assert.ok(errors.length === 1 || errors.length === 2, context);
            }
        }
      });
    }
    // Each class must come up, or the runs prove little.
    for (const [kind, least] of [["usage", 5], ["run", 5], ["exit 0", 1]] as const) {
      assert.ok(
        (classes.get(kind) ?? 0) >= least,
        `${JSON.stringify([...classes])} (seed ${SEED})`,
      );
    }
  } finally {
    await Deno.remove(tokenFile);
  }
});
