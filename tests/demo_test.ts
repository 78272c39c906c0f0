// `deno task demo`, the README's first command, as a newcomer runs it.

import assert from "node:assert/strict";
import { baseEnv, ROOT } from "./_cli.ts";

Deno.test("deno task demo exchanges a signed token end to end, shows both tokens' claims and prints no token", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "demo"],
    cwd: decodeURIComponent(ROOT.pathname),
    clearEnv: true,
    env: { ...baseEnv(), PATH: `${Deno.execPath().replace(/\/[^/]*$/, "")}:/usr/bin:/bin` },
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, stdout + new TextDecoder().decode(output.stderr));
  for (
    const expected of [
      "✓ The Buildkite OIDC token was minted by the stand-in agent and its signature verified by the STS:",
      'sub                "organization:acme:pipeline:deploy:ref:refs/heads/main:',
      "✓ The issued token is in $FEDERATED_ACCESS_TOKEN",
      'sub                "buildkite:acme/deploy"',
      "✓ The hook handed it to buildkite-agent redactor add on stdin",
      "│ ^^^ +++",
      '│ 🚨 Token exchange failed: Token endpoint refused the exchange: HTTP 400, error "invalid_grant"',
      "✓ Done.",
    ]
  ) {
    assert.ok(stdout.includes(expected), `missing ${JSON.stringify(expected)} in:\n${stdout}`);
  }
  assert.doesNotMatch(stdout, /✗/);
  assert.doesNotMatch(stdout, /eyJ[\w-]+\.eyJ[\w-]+/, "a JWT was printed");
});
