// The demo's "Buildkite" and its token endpoint, for `deno task demo` and `deno task try`: a key
// with which the stand-in agent (demo/agent.ts) signs Buildkite-shaped OIDC tokens, published as a
// JWKS, and an RFC 8693 token endpoint on 127.0.0.1 that verifies each subject token's signature
// against it, checks its iss, exp, aud and sub, and issues a signed token of its own.

import { generateKeyPair, importPrivateKey, publicJwk, signJwt, verifyJwt } from "./_jose.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");

/** What the endpoint saw of one request. */
export interface Seen {
  subjectClaims?: Record<string, unknown>;
  verified?: boolean;
  refusal?: string;
}

export interface DemoStsOptions {
  /** The aud it accepts; any, when undefined. */
  audience?: string;
  /** The subs it trusts. */
  trustedSubject: RegExp;
  /** Called with what it saw of each request, once it has answered. */
  onRequest?: (seen: Seen) => void;
}

/**
 * Makes the demo's "Buildkite" key (in WORK, for the stand-in agent) and starts the token endpoint.
 *
 * @param work The demo's directory.
 * @param options What the endpoint trusts.
 * @returns The endpoint's URL, what it saw, and how to stop it.
 */
export async function startDemoSts(work: string, options: DemoStsOptions) {
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
  const seen: Seen[] = [];

  const answer = async (request: Request, record: Seen): Promise<Response> => {
    const form = new URLSearchParams(await request.text());
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
    if (options.audience !== undefined && claims.aud !== options.audience) {
      return refuse("invalid_grant", `aud must be "${options.audience}"`);
    }
    if (typeof claims.exp !== "number" || claims.exp < now) {
      return refuse("invalid_grant", "subject token expired");
    }
    if (!options.trustedSubject.test(String(claims.sub))) {
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
  };

  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const record: Seen = {};
      seen.push(record);
      const response = await answer(request, record);
      options.onRequest?.(record);
      return response;
    },
  );
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}/token`,
    seen,
    async close() {
      controller.abort();
      await server.finished;
    },
  };
}

/**
 * Writes WORK/bin/buildkite-agent, which runs the demo's stand-in agent (demo/agent.ts) with this
 * very deno, reading and writing only WORK.
 *
 * @param work The demo's directory.
 * @returns The directory to put first on PATH.
 */
export async function agentScript(work: string): Promise<string> {
  await Deno.mkdir(`${work}/bin`, { recursive: true });
  await Deno.writeTextFile(
    `${work}/bin/buildkite-agent`,
    `#!/usr/bin/env bash\nexec ${
      JSON.stringify(Deno.execPath())
    } run --no-config --quiet --allow-read=${JSON.stringify(work)} --allow-write=${
      JSON.stringify(work)
    } --allow-env ${JSON.stringify(`${ROOT}/demo/agent.ts`)} "$@"\n`,
    { mode: 0o755 },
  );
  return `${work}/bin`;
}
