// The fault suite: a raw-TCP token endpoint on 127.0.0.1 misbehaves in every way tests/_faults.ts
// lists, and the client must end each in a clear error or a correct token, within its time bound,
// without a secret in what it says. A representative subset runs through cli.ts too, with --debug
// on and off. The Reliability table in docs/reliability.md must match what was observed here.

import assert from "node:assert/strict";
import { TokenExchangeError } from "../_errors.ts";
import { runCli } from "./_cli.ts";
import { refusedUrl, startFaultServer } from "./_fault_server.ts";
import { certFile } from "./_tls.ts";
import { FAULT_GROUPS, FAULTS, normalise, type Observation, runFault } from "./_faults.ts";
import { readTable, RELIABILITY_DOC, row } from "./_reliability.ts";
import { assertNoSecrets, BUILDKITE_CLAIMS, CLIENT_SECRET } from "./_tokens.ts";

/** Time a run may take beyond its bound: starting and stopping the server, and scheduling. */
const SLACK_MS = 250;
/** What a cli.ts run may take beyond its bound: starting Deno. */
const CLI_SLACK_MS = 3000;

const observations = new Map<string, Observation>();

for (const group of FAULT_GROUPS) {
  Deno.test(group.test, async (t) => {
    for (const fault of group.faults) {
      await t.step(fault.fault, async () => {
        const run = await runFault(fault);
        observations.set(fault.fault, run.observation);
        assert.deepEqual(run.observation, fault.outcome);
        assert.ok(
          run.elapsedMs <= run.boundMs + SLACK_MS,
          `took ${Math.round(run.elapsedMs)} ms, over the bound of ${run.boundMs} ms`,
        );
        if (run.error !== undefined) {
          assert.ok(run.error instanceof TokenExchangeError, String(run.error));
          assert.doesNotMatch(
            run.error.message,
            // deno-lint-ignore no-control-regex
            /[\x00-\x1f\x7f-\x9f\u2028\u2029]/,
            "a message of more than one line, or with a control character",
          );
          assertNoSecrets(run.error.message, `the error for "${fault.fault}"`);
        }
      });
    }
  });
}

const CLAIMS_LINE =
  `token-exchange: Buildkite OIDC token: iss="${BUILDKITE_CLAIMS.iss}" sub="${BUILDKITE_CLAIMS.sub}" aud="${BUILDKITE_CLAIMS.aud}"`;

for (const debug of [false, true]) {
  Deno.test(`cli.ts exits 1 with one clear line and no secret on faults, ${debug ? "with" : "without"} --debug`, async (t) => {
    for (const fault of FAULTS) {
      if (fault.cli === undefined) continue;
      const { retries, line } = fault.cli;
      await t.step(fault.fault, async () => {
        await using server = fault.reply === undefined ? undefined : await startFaultServer(
          (socket, index, request) => fault.reply!(index, request)(socket, index, request),
          { tls: fault.tls },
        );
        // An https server's certificate is trusted with deno run --cert.
        await using cert = fault.tls ? await certFile() : undefined;
        const started = performance.now();
        const result = await runCli([
          ...(fault.issuer
            ? ["--issuer", server!.origin]
            : ["--token-endpoint", server?.url ?? refusedUrl()]),
          "--client-id",
          "ci",
          "--client-secret-env",
          "STS_SECRET",
          "--client-auth",
          "post",
          "--timeout",
          String(fault.timeout / 1000),
          "--retries",
          String(retries),
          ...(debug ? ["--debug"] : []),
        ], {
          env: { STS_SECRET: CLIENT_SECRET },
          ...(cert && {
            permissions: [
              "--allow-net=127.0.0.1",
              "--allow-env",
              "--allow-run=buildkite-agent",
              `--cert=${cert.path}`,
            ],
          }),
        });
        const elapsed = performance.now() - started;
        const lines = normalise(result.stderr).split("\n");
        const errors = lines.filter((l) =>
          l.startsWith("token-exchange: ") && !l.includes(" debug: ")
        );
        assert.deepEqual({ code: result.code, stdout: result.stdout, errors }, {
          code: 1,
          stdout: "",
          errors: [`token-exchange: ${line}`, CLAIMS_LINE],
        });
        // Every line is the command's own, whatever the server sent.
        assert.deepEqual(
          lines.filter((l) => l !== "" && !l.startsWith("token-exchange: ")),
          [],
          result.stderr,
        );
        if (debug) {
          assert.ok(
            lines.some((l) => /^token-exchange: debug: (POST|GET) /.test(l)),
            result.stderr,
          );
        } else {
          assert.deepEqual(lines, [...errors, ""], "only the error and the claims line");
        }
        // The backoff before a retry is at most 0.5 s; discovery adds up to two requests.
        const bound = (fault.issuer ? 3 : 1) * ((retries + 1) * fault.timeout + retries * 500);
        assert.ok(elapsed <= bound + CLI_SLACK_MS, `took ${Math.round(elapsed)} ms`);
      });
    }
  });
}

Deno.test("docs/reliability.md's table is what the fault suite observed", async () => {
  const rows = [];
  for (const fault of FAULTS) {
    // A filtered run (deno test --filter) may not have run every fault yet.
    const observation = observations.get(fault.fault) ?? (await runFault(fault)).observation;
    rows.push(row(fault, observation));
  }
  const doc = await Deno.readTextFile(RELIABILITY_DOC);
  assert.deepEqual(
    readTable(doc),
    rows,
    "docs/reliability.md's Reliability table differs from what the suite observed: run `deno task reliability` to write it anew, and check the difference is what you meant",
  );
});
