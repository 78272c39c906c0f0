import assert from "node:assert/strict";
import { HttpStatusError, InvalidResponseError, OAuthError } from "./_errors.ts";
import { checkGoogle } from "./_google.ts";
import type { GoogleOptions } from "./_plugin_providers.ts";

const PROVIDER =
  "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/bk/providers/bk";
const GOOGLE: GoogleOptions = {
  audience: PROVIDER,
  tokenUrl: "https://sts.googleapis.com/v1/token",
  subjectTokenType: "urn:ietf:params:oauth:token-type:jwt",
  iamUrl: "https://iamcredentials.googleapis.com/v1",
  serviceAccount: "deployer@acme.iam.gserviceaccount.com",
  tokenLifetimeSeconds: 900,
};
const SUBJECT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJlLW9mLXRoZS1zdWJqZWN0";
const STS_TOKEN = "ya29.federated-access-token-from-google-sts";

/** Google's STS and IAM through a stand-in fetch: STS answers `sts`, IAM answers `iam`. */
async function check(sts: Response, iam: () => Response) {
  const requests: { url: string; body: string; authorization: string | null }[] = [];
  const fetch = (input: string | URL | Request, init?: RequestInit) => {
    requests.push({
      url: String(input),
      body: String(init?.body),
      authorization: new Headers(init?.headers).get("authorization"),
    });
    return Promise.resolve(String(input).startsWith(GOOGLE.tokenUrl) ? sts.clone() : iam());
  };
  const error = await checkGoogle(GOOGLE, SUBJECT, { fetch, retries: 0 }).then(
    () => undefined,
    (e) => e,
  );
  return { error, requests };
}

const issued = () =>
  Response.json({
    access_token: STS_TOKEN,
    issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
    token_type: "Bearer",
    expires_in: 3600,
  });

Deno.test("checkGoogle() makes the exchange Google's tools make, then impersonates with its token", async () => {
  const { error, requests } = await check(
    issued(),
    () =>
      Response.json({
        accessToken: "ya29.service-account-token-0123",
        expireTime: "2026-12-07T15:00:00Z",
      }),
  );
  assert.equal(error, undefined);
  assert.deepEqual(Object.fromEntries(new URLSearchParams(requests[0]!.body)), {
    grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
    subject_token: SUBJECT,
    subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
    audience: PROVIDER,
    scope: "https://www.googleapis.com/auth/cloud-platform",
    requested_token_type: "urn:ietf:params:oauth:token-type:access_token",
  });
  assert.equal(
    requests[1]!.url,
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/deployer%40acme.iam.gserviceaccount.com:generateAccessToken",
  );
  assert.equal(requests[1]!.authorization, `Bearer ${STS_TOKEN}`);
  assert.deepEqual(JSON.parse(requests[1]!.body), {
    scope: ["https://www.googleapis.com/auth/cloud-platform"],
    lifetime: "900s",
  });
});

Deno.test("checkGoogle() says what Google refused, masking the tokens it echoes", async () => {
  const refused = await check(
    Response.json({
      error: "invalid_grant",
      error_description: "The audience in ID Token does not match.",
    }, { status: 400 }),
    () => Response.json({}),
  );
  assert.ok(refused.error instanceof OAuthError);
  assert.match(
    refused.error.message,
    /^Google's STS refused the OIDC token for \/\/iam\.googleapis\.com\/projects\/1\/.*: HTTP 400, error "invalid_grant": "The audience in ID Token does not match\."; check that the provider's issuer, allowed audiences and attribute condition accept the token's iss, sub and aud below$/,
  );
  const denied = await check(issued(), () =>
    Response.json({
      error: {
        code: 403,
        status: "PERMISSION_DENIED",
        message: `denied for ${STS_TOKEN} and ${SUBJECT}`,
      },
    }, { status: 403 }));
  assert.ok(denied.error instanceof HttpStatusError);
  assert.equal(
    denied.error.message,
    'Google IAM refused to impersonate service-account deployer@acme.iam.gserviceaccount.com: HTTP 403, PERMISSION_DENIED: "denied for *** and ***"; grant the workload identity pool\'s principal for this pipeline roles/iam.workloadIdentityUser on deployer@acme.iam.gserviceaccount.com',
  );
  const empty = await check(issued(), () => Response.json({ expireTime: "soon" }));
  assert.ok(empty.error instanceof InvalidResponseError);
  assert.equal(
    empty.error.message,
    "Google IAM answered HTTP 200 without the access token generateAccessToken returns",
  );
});
