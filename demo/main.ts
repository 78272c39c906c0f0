// `deno task demo`: a real exchange, end to end, on this machine. It starts a token endpoint on
// 127.0.0.1 that verifies Buildkite OIDC tokens against a JWKS, puts a stand-in buildkite-agent
// that mints signed Buildkite-shaped tokens on PATH, sources the real hooks/environment as the
// agent does, and shows what happened: the claims of both tokens, never a token.

import { decodeJwt } from "../mod.ts";
import { agentScript, startDemoSts } from "./_sts.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const AUDIENCE = "sts.demo.local";
const TRUSTED_SUBJECT = /^organization:acme:pipeline:deploy:ref:refs\/heads\/main:/;

function indent(text: string, prefix = "   │ "): string {
  return text.trimEnd().split("\n").map((line) => `${prefix}${line}`).join("\n");
}

function describeClaims(claims: Record<string, unknown>, names: string[]): string {
  return names
    .filter((name) => claims[name] !== undefined)
    .map((name) => {
      const value = claims[name];
      const shown = (name === "exp" || name === "iat") && typeof value === "number"
        ? `${value} (${new Date(value * 1000).toISOString()})`
        : JSON.stringify(value);
      return `     ${name.padEnd(18)} ${shown}`;
    })
    .join("\n");
}

const work = await Deno.makeTempDir({ prefix: "token-exchange-demo-" });
const failures: string[] = [];
const check = (ok: boolean, what: string) => {
  if (!ok) failures.push(what);
  return ok ? "✓" : "✗";
};

const { endpoint, seen, close } = await startDemoSts(work, {
  audience: AUDIENCE,
  trustedSubject: TRUSTED_SUBJECT,
});

// The stand-in agent, first on PATH, and deno (this very binary) for the hook.
await agentScript(work);
const denoDir = Deno.execPath().replace(/\/[^/]*$/, "");

async function runHook(pipeline: string) {
  const out = `${work}/exported-${pipeline}`;
  const output = await new Deno.Command("bash", {
    args: [
      "-c",
      'set -euo pipefail; source "$1/hooks/environment"; printf %s "$FEDERATED_ACCESS_TOKEN" >"$2"',
      "demo",
      ROOT,
      out,
    ],
    env: {
      PATH: `${work}/bin:${denoDir}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      TMPDIR: work,
      DEMO_WORK_DIR: work,
      DEMO_PIPELINE: pipeline,
      BUILDKITE_JOB_ID: crypto.randomUUID(),
      BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT: endpoint,
      BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AUDIENCE: AUDIENCE,
      BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TARGET_AUDIENCE: "https://api.demo.local",
      BUILDKITE_PLUGIN_TOKEN_EXCHANGE_SCOPE: "deploy",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const token = await Deno.readTextFile(out).catch(() => undefined);
  const log = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { code: output.code, token, log };
}

try {
  console.log(`token-exchange demo: a real exchange, end to end, on this machine

1. A token endpoint on ${endpoint} trusts Buildkite OIDC tokens for audience
   "${AUDIENCE}" from the main branch of pipeline acme/deploy. It verifies each token's RS256
   signature against the JWKS of "https://agent.buildkite.com" (a key made for this run).

2. The plugin's hooks/environment runs as the Buildkite agent sources it, with a stand-in
   buildkite-agent that mints signed tokens, and these options:
     token-endpoint: ${endpoint}
     audience: ${AUDIENCE}
     target-audience: https://api.demo.local
     scope: deploy
`);
  const ok = await runHook("deploy");
  console.log(indent(ok.log));
  const subject = seen[0]?.subjectClaims ?? {};
  const issued = ok.token === undefined ? undefined : decodeJwt(ok.token)?.claims;
  const redacted = await Deno.readTextFile(`${work}/redacted`).catch(() => "");
  const digest = ok.token === undefined ? "" : new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${ok.token}\n`)),
  ).toHex();
  console.log(`
3. What happened:
   ${
    check(seen[0]?.verified === true, "the STS verified the subject token")
  } The Buildkite OIDC token was minted by the stand-in agent and its signature verified by the STS:
${
    describeClaims(subject, [
      "iss",
      "sub",
      "aud",
      "exp",
      "organization_slug",
      "pipeline_slug",
      "build_branch",
      "job_id",
    ])
  }
   ${
    check(ok.code === 0 && issued !== undefined, "the hook exported an issued token")
  } The issued token is in $FEDERATED_ACCESS_TOKEN (${
    ok.token?.length ?? 0
  } characters, never printed):
${describeClaims(issued ?? {}, ["iss", "sub", "aud", "scope", "exp"])}
   ${
    check(digest !== "" && redacted.includes(digest), "the token reached the redactor")
  } The hook handed it to buildkite-agent redactor add on stdin, so the log masks it.
   ${
    check(
      !ok.log.includes(ok.token ?? "\0") && !/eyJ[\w-]+\.eyJ/.test(ok.log),
      "no token in the log",
    )
  } No token appears in the hook's output.
`);

  console.log(`4. The same step in pipeline acme/hotfix, which no trust policy names, fails loudly:
`);
  const refused = await runHook("hotfix");
  console.log(indent(refused.log));
  check(
    refused.code !== 0 && refused.log.includes("^^^ +++") &&
      refused.log.includes('sub="organization:acme:pipeline:hotfix'),
    "the mismatch failed with the token's sub",
  );
  check(!/eyJ[\w-]+\.eyJ/.test(refused.log), "no token in the failure output");

  if (failures.length > 0) {
    console.log(`\n✗ The demo did not go as expected: ${failures.join("; ")}`);
    Deno.exitCode = 1;
  } else {
    console.log("\n✓ Done. Run the tests with: npx -y deno@2.9.6 task test");
  }
} finally {
  await close();
  await Deno.remove(work, { recursive: true });
}
