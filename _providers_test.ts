import assert from "node:assert/strict";
import { HttpStatusError, InvalidResponseError, OAuthError } from "./_errors.ts";
import {
  exchangeAtOctoSts,
  loginToVault,
  revokeAtEndpoint,
  revokeAtGitHub,
  revokeAtVault,
} from "./_providers.ts";

const JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmdhbml6YXRpb246YWNtZSJ9.c2lnbmF0dXJlLW9mLWl0LTAxMjM";

interface Seen {
  method: string;
  url: string;
  headers: Headers;
  body: string;
}

/** A fetch that records the request and answers RESPONSE. */
function recording(response: () => Response) {
  const seen: Seen[] = [];
  const fetch = (input: string | URL | Request, init?: RequestInit) => {
    seen.push({
      method: init?.method ?? "GET",
      url: String(input),
      headers: new Headers(init?.headers),
      body: init?.body === undefined ? "" : String(init.body),
    });
    return Promise.resolve(response());
  };
  return { seen, fetch, retries: 0 };
}

Deno.test("loginToVault() posts {role, jwt} to the JWT auth method, with the namespace, and reads the token and its lease", async () => {
  const vault = recording(() =>
    Response.json({
      auth: { client_token: "hvs.CAESIvault-client-token-0123", lease_duration: 1200 },
    })
  );
  const token = await loginToVault({
    vaultAddr: "https://vault.example.com:8200/",
    role: "deploy",
    jwt: JWT,
    mount: "buildkite",
    namespace: "ci/team",
    ...vault,
  });
  assert.deepEqual(token, { clientToken: "hvs.CAESIvault-client-token-0123", leaseDuration: 1200 });
  const [request] = vault.seen;
  assert.equal(request!.method, "POST");
  assert.equal(request!.url, "https://vault.example.com:8200/v1/auth/buildkite/login");
  assert.equal(request!.headers.get("x-vault-namespace"), "ci/team");
  assert.equal(request!.headers.get("x-vault-token"), null);
  assert.deepEqual(JSON.parse(request!.body), { role: "deploy", jwt: JWT });
});

Deno.test("loginToVault() shows Vault's errors, masked, and refuses a token that is not one", async () => {
  const refused = await loginToVault({
    vaultAddr: "http://127.0.0.1:8200",
    role: "deploy",
    jwt: JWT,
    ...recording(() =>
      Response.json({ errors: [`error validating token: claim "sub" does not match ${JWT}`] }, {
        status: 400,
      })
    ),
  }).catch((e) => e);
  assert.ok(refused instanceof HttpStatusError);
  assert.equal(
    refused.message,
    'Vault refused the login with role "deploy" at auth/jwt: HTTP 400, "error validating token: claim \\"sub\\" does not match ***"'
      .replaceAll('\\"', '"'),
  );
  const empty = await loginToVault({
    vaultAddr: "http://127.0.0.1:8200",
    role: "deploy",
    jwt: JWT,
    ...recording(() => Response.json({ auth: { client_token: "short" } })),
  }).catch((e) => e);
  assert.ok(empty instanceof InvalidResponseError);
  assert.equal(
    empty.message,
    "Vault answered HTTP 200 with an auth.client_token that is 5 characters long, fewer than the 16 a token needs to be masked in logs without masking ordinary words",
  );
  await assert.rejects(
    loginToVault({ vaultAddr: "http://vault.example.com", role: "r", jwt: JWT }),
    /must use https/,
  );
  await assert.rejects(
    loginToVault({ vaultAddr: "https://vault.example.com", role: "r", jwt: JWT, mount: "../sys" }),
    /Cannot use mount "\.\.\/sys"/,
  );
});

Deno.test("exchangeAtOctoSts() sends the OIDC token as a bearer token, never in the URL, and reads the GitHub token", async () => {
  const octo = recording(() =>
    Response.json({ token: "ghs_0123456789abcdefghijklmnopqrstuvwxyz" })
  );
  const { token } = await exchangeAtOctoSts({
    scope: "acme/deploy",
    identity: "buildkite-release",
    oidcToken: JWT,
    ...octo,
  });
  assert.equal(token, "ghs_0123456789abcdefghijklmnopqrstuvwxyz");
  assert.equal(
    octo.seen[0]!.url,
    "https://octo-sts.dev/sts/exchange?scope=acme%2Fdeploy&identity=buildkite-release",
  );
  assert.equal(octo.seen[0]!.headers.get("authorization"), `Bearer ${JWT}`);
  const refused = await exchangeAtOctoSts({
    scope: "acme",
    identity: "release",
    oidcToken: JWT,
    ...recording(() =>
      Response.json({ code: 7, message: `no trust policy for ${JWT}` }, { status: 403 })
    ),
  }).catch((e) => e);
  assert.ok(refused instanceof HttpStatusError);
  assert.equal(
    refused.message,
    'octo-sts refused a token for acme as release: HTTP 403, "no trust policy for ***"',
  );
  await assert.rejects(
    exchangeAtOctoSts({ scope: "acme/deploy?x=1", identity: "r", oidcToken: JWT }),
    /Cannot use scope/,
  );
});

Deno.test("revokeAtEndpoint() sends RFC 7009's form with the client's authentication; 200 is success", async () => {
  const endpoint = recording(() => new Response(null, { status: 200 }));
  await revokeAtEndpoint({
    revocationEndpoint: "https://sts.example.com/revoke",
    token: "issued-access-token-0123456789",
    clientId: "ci",
    clientSecret: "s3cret",
    ...endpoint,
  });
  assert.deepEqual([...new URLSearchParams(endpoint.seen[0]!.body)], [
    ["token", "issued-access-token-0123456789"],
    ["token_type_hint", "access_token"],
  ]);
  assert.equal(endpoint.seen[0]!.headers.get("authorization"), `Basic ${btoa("ci:s3cret")}`);
  const refused = await revokeAtEndpoint({
    revocationEndpoint: "https://sts.example.com/revoke",
    token: "issued-access-token-0123456789",
    ...recording(() =>
      Response.json({ error: "invalid_client", error_description: "who are you" }, { status: 401 })
    ),
  }).catch((e) => e);
  assert.ok(refused instanceof OAuthError);
  assert.equal(
    refused.message,
    'Revocation endpoint refused: HTTP 401, error "invalid_client": "who are you"',
  );
});

Deno.test("revokeAtVault() and revokeAtGitHub() send the token as Vault and GitHub want it", async () => {
  const vault = recording(() => new Response(null, { status: 204 }));
  await revokeAtVault({
    vaultAddr: "https://vault.example.com",
    token: "hvs.token-0123456789",
    ...vault,
  });
  assert.deepEqual(
    [vault.seen[0]!.method, vault.seen[0]!.url, vault.seen[0]!.headers.get("x-vault-token")],
    ["POST", "https://vault.example.com/v1/auth/token/revoke-self", "hvs.token-0123456789"],
  );
  const github = recording(() => new Response(null, { status: 204 }));
  await revokeAtGitHub({ token: "ghs_token-0123456789", ...github });
  assert.deepEqual(
    [github.seen[0]!.method, github.seen[0]!.url, github.seen[0]!.headers.get("authorization")],
    ["DELETE", "https://api.github.com/installation/token", "Bearer ghs_token-0123456789"],
  );
  const expired = await revokeAtGitHub({
    token: "ghs_token-0123456789",
    ...recording(() => Response.json({ message: "Bad credentials" }, { status: 401 })),
  }).catch((e) => e);
  assert.ok(expired instanceof HttpStatusError);
  assert.equal(expired.message, 'GitHub API answered HTTP 401: "{"message":"Bad credentials"}"');
});
