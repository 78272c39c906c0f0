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

Deno.test("deno task try turns a pipeline.yml's options into what to source, and the hook then exchanges against this machine's endpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "try-test-" });
  try {
    await Deno.writeTextFile(
      `${dir}/pipeline.yml`,
      [
        "steps:",
        "  - label: deploy",
        "    command: ./deploy.sh",
        "    plugins:",
        "      - docker#v5.9.0: { image: alpine }",
        "      - equinixmetal-buildkite/token-exchange#v2.1.0:",
        "          token-endpoint: https://sts.example.com/oauth2/token",
        "          audience: sts.example.com",
        "          target-audience: [https://api.example.com, https://artifacts.example.com]",
        "          token-file: true",
        "          timeout: 5",
      ].join("\n"),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "try", `${dir}/pipeline.yml`],
      cwd: decodeURIComponent(ROOT.pathname),
      clearEnv: true,
      env: { ...baseEnv(), PATH: `${Deno.execPath().replace(/\/[^/]*$/, "")}:/usr/bin:/bin` },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let printed = "";
    while (!printed.includes("What the endpoints see:")) {
      const { value, done } = await lines.read();
      if (done) break;
      printed += value;
    }
    // The options as the agent sets them, lists as _0, _1; the endpoint is this machine's.
    for (
      const expected of [
        "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TARGET_AUDIENCE_1=https://artifacts.example.com",
        "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_FILE=true",
        "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT=http://127.0.0.1:",
        "(token-endpoint (https://sts.example.com/oauth2/token) replaced by this machine's token endpoint",
      ]
    ) {
      assert.ok(printed.includes(expected), `missing ${JSON.stringify(expected)} in:\n${printed}`);
    }
    const source = /^ {2}(source (\S+\/env\.sh) && source hooks\/environment)$/m.exec(printed);
    assert.ok(source, printed);
    const hook = await new Deno.Command("bash", {
      args: [
        "-c",
        `${source[1]} && test -s "$FEDERATED_ACCESS_TOKEN_FILE" && source hooks/pre-exit`,
      ],
      cwd: decodeURIComponent(ROOT.pathname),
      clearEnv: true,
      env: { ...baseEnv(), PATH: "/usr/bin:/bin" },
    }).output();
    const hookOutput = new TextDecoder().decode(hook.stdout) +
      new TextDecoder().decode(hook.stderr);
    assert.equal(hook.code, 0, hookOutput);
    assert.match(hookOutput, /Exported FEDERATED_ACCESS_TOKEN and FEDERATED_ACCESS_TOKEN_FILE/);
    const { value: seen } = await lines.read();
    assert.match(
      seen ?? "",
      /token endpoint: issued a token for aud="sts\.example\.com" sub="organization:acme:pipeline:deploy:/,
    );
    child.kill("SIGINT");
    assert.equal((await child.status).code, 0);
    await lines.cancel();
    await child.stderr.cancel();
    // Ctrl-C removed what the run made.
    await assert.rejects(Deno.stat(source[2]!), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
