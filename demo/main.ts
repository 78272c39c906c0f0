// `deno task demo`: a real exchange, end to end, on this machine. It starts a token endpoint on
// 127.0.0.1 that verifies Buildkite OIDC tokens against a JWKS, puts a stand-in buildkite-agent
// that mints signed Buildkite-shaped tokens on PATH, sources the real hooks/environment as the
// agent does, and shows what happened: the claims of both tokens, never a token.

import { decodeJwt } from "../mod.ts";
import { generateKeyPair, importPrivateKey, publicJwk, signJwt, verifyJwt } from "./_jose.ts";

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

// "Buildkite": the key its agent signs OIDC tokens with, published as a JWKS.
const buildkite = await generateKeyPair("RS256");
const jwks = { keys: [await publicJwk(buildkite.publicKey, "RS256", "buildkite-demo-key")] };
await Deno.writeTextFile(
  `${work}/buildkite-key.json`,
  JSON.stringify(await crypto.subtle.exportKey("jwk", buildkite.privateKey)),
  { mode: 0o600 },
);
// The STS: its own key for the tokens it issues.
const sts = await generateKeyPair("ES256");
const stsKey = await importPrivateKey(
  await crypto.subtle.exportKey("jwk", sts.privateKey),
  "ES256",
);

interface Seen {
  subjectClaims?: Record<string, unknown>;
  verified?: boolean;
  refusal?: string;
}
const seen: Seen[] = [];

const controller = new AbortController();
const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
  async (request) => {
    const form = new URLSearchParams(await request.text());
    const record: Seen = {};
    seen.push(record);
    const refuse = (error: string, description: string) => {
      record.refusal = `${error}: ${description}`;
      return Response.json({ error, error_description: description }, { status: 400 });
    };
    if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:token-exchange") {
      return refuse("unsupported_grant_type", "only token exchange is supported");
    }
    let claims: Record<string, unknown>;
    try {
      claims = await verifyJwt(form.get("subject_token") ?? "", jwks);
    } catch (error) {
      return refuse("invalid_grant", `subject token rejected: ${(error as Error).message}`);
    }
    record.verified = true;
    record.subjectClaims = claims;
    const now = Math.floor(Date.now() / 1000);
    if (claims.iss !== "https://agent.buildkite.com") {
      return refuse("invalid_grant", "untrusted issuer");
    }
    if (claims.aud !== AUDIENCE) return refuse("invalid_grant", `aud must be "${AUDIENCE}"`);
    if (typeof claims.exp !== "number" || claims.exp < now) {
      return refuse("invalid_grant", "subject token expired");
    }
    if (!TRUSTED_SUBJECT.test(String(claims.sub))) {
      return refuse("invalid_grant", "no trust policy matches this pipeline's sub");
    }
    const scope = form.get("scope") ?? "";
    const accessToken = await signJwt(
      {
        iss: `http://${request.headers.get("host")}`,
        sub: `buildkite:${claims.organization_slug}/${claims.pipeline_slug}`,
        aud: form.getAll("audience"),
        scope,
        iat: now,
        exp: now + 600,
        act: { sub: claims.sub },
      },
      stsKey,
      "ES256",
      "sts-demo-key",
    );
    return Response.json({
      access_token: accessToken,
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      token_type: "Bearer",
      expires_in: 600,
      scope,
    });
  },
);
const endpoint = `http://127.0.0.1:${server.addr.port}/token`;

// The stand-in agent, first on PATH, and deno (this very binary) for the hook.
await Deno.mkdir(`${work}/bin`);
await Deno.writeTextFile(
  `${work}/bin/buildkite-agent`,
  `#!/usr/bin/env bash\nexec ${
    JSON.stringify(Deno.execPath())
  } run --no-config --quiet --allow-read=${JSON.stringify(work)} --allow-write=${
    JSON.stringify(work)
  } --allow-env ${JSON.stringify(`${ROOT}/demo/agent.ts`)} "$@"\n`,
  { mode: 0o755 },
);
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
  controller.abort();
  await server.finished;
  await Deno.remove(work, { recursive: true });
}
