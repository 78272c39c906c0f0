import assert from "node:assert/strict";
import { readAgentOutput, SubjectTokenError } from "./_subject_token.ts";

const source = { kind: "buildkite" as const, audience: "a", lifetime: undefined, claims: [] };

Deno.test("readAgentOutput() takes the token the hooks' agent call printed", () => {
  assert.equal(
    readAgentOutput("header.claims.signature\n", { ...source, stdin: true }),
    "header.claims.signature",
  );
});

Deno.test("readAgentOutput() reports the agent's failure with its last error lines, never its stdout", () => {
  assert.throws(
    () =>
      readAgentOutput(
        "partial-token\n!buildkite-agent-failed 1\nWARN retrying\nFATAL  403 Forbidden\n",
        { ...source, claims: ["pipeline_id"], stdin: true },
      ),
    new SubjectTokenError(
      "buildkite-agent oidc request-token failed (exit status 1): WARN retrying FATAL 403 Forbidden (claims needs buildkite-agent 3.44 or later; check the claim names)",
    ),
  );
});

Deno.test("readAgentOutput() says when there is no agent, and when it printed nothing", () => {
  assert.throws(
    () =>
      readAgentOutput(
        "\n!buildkite-agent-failed 127\nbash: buildkite-agent: command not found\n",
        source,
      ),
    new SubjectTokenError("buildkite-agent is not on PATH: run inside a Buildkite job"),
  );
  assert.throws(
    () => readAgentOutput(" \n", source),
    /The token from buildkite-agent oidc request-token is empty/,
  );
});
