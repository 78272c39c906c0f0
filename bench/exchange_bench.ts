// Microbenchmarks of what the exchange does in JavaScript: building the request, processing the
// response and reading the CLI's configuration. `deno task bench` runs them before the
// whole-process benchmark.

import { parseCommandLine } from "../_cli_config.ts";
import { decodeJwt } from "../_jwt.ts";
import { buildTokenExchangeRequest } from "../_request.ts";
import { processTokenExchangeResponse } from "../_response.ts";

const SUBJECT_TOKEN =
  "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL2FnZW50LmJ1aWxka2l0ZS5jb20iLCJzdWIiOiJvcmdhbml6YXRpb246YWNtZTpwaXBlbGluZTpkZXBsb3kiLCJhdWQiOiJzdHMuZXhhbXBsZS5jb20ifQ.c2lnbmF0dXJl";
const RESPONSE = JSON.stringify({
  access_token: "ya29.a0AfH6SMBx-benchmark-access-token",
  issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
  token_type: "Bearer",
  expires_in: 3599,
});

Deno.bench("build the request: required parameters", { group: "request", baseline: true }, () => {
  buildTokenExchangeRequest({
    tokenEndpoint: "https://sts.example.com/token",
    subjectToken: SUBJECT_TOKEN,
  });
});

Deno.bench("build the request: every parameter and Basic client authentication", {
  group: "request",
}, () => {
  buildTokenExchangeRequest({
    tokenEndpoint: "https://sts.example.com/token",
    subjectToken: SUBJECT_TOKEN,
    audience: ["https://api.example.com", "second"],
    resource: "https://api.example.com/v1",
    scope: ["read", "write"],
    requestedTokenType: "urn:ietf:params:oauth:token-type:access_token",
    clientId: "ci",
    clientSecret: "s3cr:et%/ @",
  });
});

Deno.bench("process a successful response", { group: "response", baseline: true }, async () => {
  await processTokenExchangeResponse(
    new Response(RESPONSE, { headers: { "content-type": "application/json" } }),
  );
});

Deno.bench("process an OAuth error response", { group: "response" }, async () => {
  try {
    await processTokenExchangeResponse(
      Response.json({ error: "invalid_grant", error_description: "no trust policy matches" }, {
        status: 400,
      }),
      { secrets: [SUBJECT_TOKEN] },
    );
  } catch {
    // The error is the point.
  }
});

const env: Record<string, string> = {
  BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT: "https://sts.example.com/token",
  BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AUDIENCE: "sts.example.com",
  BUILDKITE_PLUGIN_TOKEN_EXCHANGE_SCOPE_0: "read",
  BUILDKITE_PLUGIN_TOKEN_EXCHANGE_SCOPE_1: "write",
};

Deno.bench("read the CLI configuration from plugin variables", { group: "cli" }, () => {
  parseCommandLine([], (name) => env[name]);
});

Deno.bench("decode a JWT's claims for --debug", { group: "cli" }, () => {
  decodeJwt(SUBJECT_TOKEN);
});
