import assert from "node:assert/strict";
import { type CliCommand, type CliConfig, parseCommandLine, readConfig } from "./_cli_config.ts";
import { OptionValues } from "./_cli_flags.ts";
import { explain, hint, identify } from "./_cli_report.ts";
import {
  HttpStatusError,
  InvalidResponseError,
  NetworkError,
  OAuthError,
  TimeoutError,
} from "./_errors.ts";

const P = "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_";

function config(args: string[], env: Record<string, string> = {}): CliConfig {
  const command = parseCommandLine(args, (name) => env[name]);
  return (command as Extract<CliCommand, { kind: "run" }>).config;
}

function oauth(error: string, status = 400): OAuthError {
  return new OAuthError(`refused: ${error}`, status, { error });
}

Deno.test("hint() names each option as the user set it: a flag from the CLI, the pipeline.yml option from the plugin", () => {
  const errors = [
    oauth("invalid_client", 401),
    oauth("invalid_target"),
    oauth("invalid_scope"),
    oauth("unsupported_grant_type"),
    new TimeoutError("slow", 1000),
  ];
  const fromFlags = config(["--token-endpoint", "https://sts.example.com/token"]);
  assert.deepEqual(errors.map((error) => hint(error, fromFlags)), [
    "; the endpoint wants client authentication: set --client-id (and --client-secret-env)",
    "; check --target-audience and --resource against what the endpoint allows",
    "; check --scope against what the endpoint allows",
    "; this endpoint does not do RFC 8693 token exchange: check --token-endpoint",
    ": raise --timeout, or check this agent can reach the endpoint",
  ]);
  const pluginEnv: Record<string, string> = {
    [`${P}ISSUER`]: "https://issuer.example.com",
    [`${P}CLIENT_ID`]: "ci",
  };
  const fromPlugin = readConfig(new OptionValues(new Map(), (name) => pluginEnv[name]), true);
  assert.deepEqual(errors.map((error) => hint(error, fromPlugin)), [
    "; check client-id, the secret in client-secret-env and client-auth (basic or post)",
    "; check target-audience and resource against what the endpoint allows",
    "; check scope against what the endpoint allows",
    "; this endpoint does not do RFC 8693 token exchange: check issuer",
    ": raise timeout, or check this agent can reach the endpoint",
  ]);
  // Some from a flag and some from a variable: each as it was set.
  const mixed = config(["--client-id", "ci", "--client-secret-env", "S"], {
    [`${P}TOKEN_ENDPOINT`]: "https://sts.example.com/token",
    [`${P}CLIENT_AUTH`]: "post",
    S: "s3cret",
  });
  assert.equal(
    hint(oauth("unauthorized_client"), mixed),
    "; check --client-id, the secret in --client-secret-env and client-auth (basic or post)",
  );
});

Deno.test("hint() says what to check for a refused grant, a network error, a certificate, a 404, a 401 and a web page, and nothing otherwise", () => {
  const run = config(["--token-endpoint", "https://sts.example.com/token"]);
  assert.deepEqual(
    [
      oauth("invalid_grant"),
      oauth("temporarily_unavailable", 503),
      new NetworkError("down"),
      new NetworkError(
        'Token endpoint "https://sts.internal/token" presented a certificate that is not trusted here, from a CA this machine does not know (invalid peer certificate: UnknownIssuer)',
      ),
      new NetworkError(
        'Token endpoint "https://sts.internal/token" presented a certificate that is not valid (invalid peer certificate: Expired)',
      ),
      new HttpStatusError("gone", 404, "text/plain", "Not Found"),
      new HttpStatusError("no", 401, "text/plain", "Unauthorized"),
      new InvalidResponseError(
        "Token endpoint answered HTTP 200 with a body that is not JSON (text/html, 5 bytes)",
        { status: 200 },
      ),
      new InvalidResponseError("Token endpoint answered HTTP 200 with no access_token", {
        status: 200,
      }),
      new HttpStatusError("teapot", 418, "text/plain", ""),
      new Error("other"),
    ].map((error) => hint(error, run)),
    [
      "; check that the endpoint's trust policy accepts the token's iss, sub and aud below",
      "",
      ": check the URL and that this agent can reach the host",
      "; if your organisation's own CA issued it, set --ca-file to that CA's certificate (a PEM file)",
      "; check the URL's host name is the one the certificate names, and that it has not expired",
      ": check --token-endpoint",
      ": the endpoint wants client authentication: set --client-id and --client-secret-env",
      ": a login page or another web page answered, not a token endpoint: check --token-endpoint",
      "",
      "",
      "",
    ],
  );
  const withClient = config([
    "--issuer",
    "https://sts.example.com",
    "--client-id",
    "ci",
  ]);
  assert.equal(
    hint(new HttpStatusError("no", 401, "text/plain", ""), withClient),
    ": check --client-id and the secret in --client-secret-env",
  );
});

Deno.test("identify() and explain() show a token's claims, never its signature, and cope with an opaque one", () => {
  const token = [
    { alg: "RS256" },
    { iss: "https://agent.buildkite.com", sub: "organization:acme", exp: 1_000_060 },
  ].map((part) => btoa(JSON.stringify(part)).replace(/=+$/, "")).join(".") + ".c2lnbmF0dXJl";
  assert.equal(
    identify("Buildkite OIDC token", token),
    'Buildkite OIDC token: iss="https://agent.buildkite.com" sub="organization:acme" aud=(none)',
  );
  assert.equal(
    explain("Issued token", token, [], 1_000_000_000),
    'Issued token: header {"alg":"RS256"} claims {"iss":"https://agent.buildkite.com","sub":"organization:acme","exp":1000060}; expires in 60 s',
  );
  assert.equal(
    identify("Subject token", "opaque-token"),
    "Subject token: not a JWT (an opaque 12-character token)",
  );
  assert.equal(
    explain("Subject token", "opaque-token"),
    "Subject token: not a JWT (an opaque 12-character token)",
  );
});

Deno.test("explain() shows only the claims that identify a token, with the run's secrets masked in any encoding", () => {
  const secret = "client-s3cret-value";
  const subjectToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c3ViamVjdC10b2tlbi1zaWduYXR1cmU";
  const claims = {
    iss: "https://sts.example.com",
    sub: `echo ${secret}`,
    aud: ["api", btoa(secret)],
    scope: encodeURIComponent(`x ${secret}`),
    act: { sub: "ci", auth: "Basic Y2k6Y2xpZW50LXMzY3JldC12YWx1ZQ" },
    exp: 1_000_060,
    auth: `Basic ${btoa(`ci:${secret}`)}`,
    echoed: subjectToken,
    "an arbitrary claim": "anything",
  };
  const token = [{ alg: "RS256", kid: "k1", jku: "https://evil.example/keys" }, claims]
    .map((part) => btoa(JSON.stringify(part)).replace(/=+$/, "")).join(".") + ".c2ln";
  assert.equal(
    explain("Issued token", token, [subjectToken, secret], 1_000_000_000),
    'Issued token: header {"alg":"RS256","kid":"k1"} claims {"iss":"https://sts.example.com","sub":"echo ***","aud":["api","***"],"scope":"x%20***","act":{"sub":"ci"},"exp":1000060} and 3 other claims, not shown; expires in 60 s',
  );
});
