// Beyond RFC 8693, through the hooks as the agent runs them: RFC 7523's JWT bearer grant and client
// assertion, Azure (checked once in the hook, then handed to @azure/identity), Vault and GitHub
// tokens (octo-sts), and revocation at pre-exit, against recording stand-ins on 127.0.0.1 that
// answer as the real services do (tests/_services.ts).

import assert from "node:assert/strict";
import { runClientProcess } from "./_client_process.ts";
import { runHooks } from "./_hooks.ts";
import { CLIENT_ID, type Services, startServices, TENANT } from "./_services.ts";
import { TEST_CERT } from "./_tls.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { BUILDKITE_CLAIMS, ISSUED_TOKEN, SUBJECT_TOKEN } from "./_tokens.ts";

// The stand-in agent's token claims the same aud whatever it is asked for.
const CLAIMS_LINE =
  `   Buildkite OIDC token: iss="${BUILDKITE_CLAIMS.iss}" sub="${BUILDKITE_CLAIMS.sub}" aud="${BUILDKITE_CLAIMS.aud}"`;

/** A TMPDIR of the test's, with the stand-ins' CA certificate in it. */
async function workDir(): Promise<{ path: string; ca: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "beyond-" });
  await Deno.writeTextFile(`${path}/ca.pem`, TEST_CERT);
  return {
    path,
    ca: `${path}/ca.pem`,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/** The form of the Nth request the stand-in saw on PATH. */
function formOf(services: Services, path: string, n = 0): Record<string, string> {
  const request = services.requests.filter((r) => r.path.startsWith(path))[n];
  return Object.fromEntries(new URLSearchParams(request?.body ?? ""));
}

Deno.test("grant-type: jwt-bearer sends the OIDC token as the RFC 7523 assertion, with no RFC 8693 parameter", async () => {
  await using server = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, "grant-type": "jwt-bearer", scope: "deploy" },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(server.requests[0]!.form, [
    ["grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
    ["assertion", SUBJECT_TOKEN],
    ["scope", "deploy"],
  ]);
  assert.equal(result.exported.FEDERATED_ACCESS_TOKEN, ISSUED_TOKEN);
});

Deno.test("client-auth: assertion authenticates the client with the OIDC token (RFC 7523 §2.2), with any grant", async () => {
  await using server = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
  const options = {
    "token-endpoint": server.url,
    "grant-type": "client-credentials",
    "client-auth": "assertion",
    "client-id": "buildkite-ci",
    scope: "api://deploy/.default",
  };
  const result = await runHooks(["environment"], { options });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(server.requests[0]!.form, [
    ["grant_type", "client_credentials"],
    ["scope", "api://deploy/.default"],
    ["client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
    ["client_assertion", SUBJECT_TOKEN],
    ["client_id", "buildkite-ci"],
  ]);
  assert.equal(server.requests[0]!.headers.authorization, undefined);
  const refused = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, "client-auth": "assertion" },
  });
  assert.equal(refused.code, 2);
  assert.equal(
    refused.stderr,
    "🚨 Configuration error: client-auth has no use without client-id: set client-id, or remove client-auth\n",
  );
});

Deno.test("azure-client-id: the hook checks the federated credential once, and @azure/identity then gets a token from the variables it exports", async () => {
  await using services = startServices();
  await using work = await workDir();
  const options = {
    "azure-client-id": CLIENT_ID,
    "azure-tenant-id": TENANT,
    "azure-authority-host": services.origin,
    "ca-file": work.ca,
    refresh: true,
  };
  const env = { TMPDIR: work.path, STANDIN_OIDC_LIFETIME: "600" };
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls[0], [
    "oidc",
    "request-token",
    "--audience",
    "api://AzureADTokenExchange",
  ]);
  // One client-credentials request, the OIDC token as its client assertion.
  const form = formOf(services, `/${TENANT}/oauth2/v2.0/token`);
  assert.deepEqual(
    [form.grant_type, form.client_id, form.scope, form.client_assertion_type],
    [
      "client_credentials",
      CLIENT_ID,
      "https://management.azure.com/.default",
      "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    ],
  );
  const file = result.exported.AZURE_FEDERATED_TOKEN_FILE!;
  assert.equal(form.client_assertion, await Deno.readTextFile(file));
  assert.deepEqual(
    [
      "AZURE_CLIENT_ID",
      "AZURE_TENANT_ID",
      "ARM_CLIENT_ID",
      "ARM_TENANT_ID",
      "ARM_OIDC_TOKEN_FILE_PATH",
      "ARM_USE_OIDC",
      "AZURE_AUTHORITY_HOST",
    ].map((name) => result.exported[name]),
    [CLIENT_ID, TENANT, CLIENT_ID, TENANT, file, "true", services.origin],
  );
  assert.match(
    result.stdout,
    new RegExp(
      `\\nMicrosoft Entra accepts this job's OIDC token for ${CLIENT_ID} in tenant ${TENANT}\\n`,
    ),
  );
  // The real client, with only what the hook exported (and the stand-in's CA).
  const azure = await runClientProcess<{ token?: string; error?: string }>(
    new URL("./_azure_client.ts", import.meta.url),
    {
      permissions: [
        "--allow-net=127.0.0.1",
        "--allow-env",
        `--allow-read=${work.path}`,
        "--allow-sys",
      ],
      env: {
        AZURE_CLIENT_ID: result.exported.AZURE_CLIENT_ID!,
        AZURE_TENANT_ID: result.exported.AZURE_TENANT_ID!,
        AZURE_FEDERATED_TOKEN_FILE: file,
        AZURE_AUTHORITY_HOST: result.exported.AZURE_AUTHORITY_HOST!,
        NODE_EXTRA_CA_CERTS: work.ca,
      },
      rounds: 1,
    },
  );
  assert.equal(azure.code, 0, azure.stderr);
  assert.equal(azure.rounds[0]?.token, services.issued.entra.at(-1), JSON.stringify(azure.rounds));
  assert.equal(
    formOf(services, `/${TENANT}/oauth2/v2.0/token`, 1).client_assertion,
    await Deno.readTextFile(file),
  );
  const ended = await runHooks(["pre-exit"], { options, env });
  assert.equal(ended.code, 0, ended.stderr);
});

Deno.test("azure-client-id: a federated credential that does not match fails the hook with Entra's AADSTS message and the iss, sub and aud", async () => {
  await using services = startServices();
  await using work = await workDir();
  services.refuse.entra = true;
  const result = await runHooks(["environment"], {
    options: {
      "azure-client-id": CLIENT_ID,
      "azure-tenant-id": TENANT,
      "azure-authority-host": services.origin,
      "ca-file": work.ca,
    },
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `🚨 Microsoft Entra refused the OIDC token for client ${CLIENT_ID} in tenant ${TENANT}: HTTP 400, error "invalid_client": "AADSTS700213: No matching federated identity record found for presented assertion subject '${BUILDKITE_CLAIMS.sub}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion."; check the federated credential: its issuer, subject and audience must be the token's iss, sub and aud below\n${CLAIMS_LINE}\n`,
  );
  assert.deepEqual(result.exported, {});
});

Deno.test("vault-addr: the hook logs in, exports VAULT_TOKEN and VAULT_ADDR for curl, and pre-exit revokes the token", async () => {
  await using services = startServices();
  await using work = await workDir();
  const options = {
    "vault-addr": services.origin,
    "vault-role": "deploy",
    "vault-mount": "buildkite",
    "vault-namespace": "ci",
    audience: "vault.example.com",
    "ca-file": work.ca,
  };
  const env = { TMPDIR: work.path };
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  const login = services.requests[0]!;
  assert.deepEqual(
    [login.method, login.path, login.headers["x-vault-namespace"], JSON.parse(login.body)],
    ["POST", "/v1/auth/buildkite/login", "ci", { role: "deploy", jwt: SUBJECT_TOKEN }],
  );
  const token = services.issued.vault[0]!;
  assert.deepEqual(
    [result.exported.VAULT_TOKEN, result.exported.VAULT_ADDR, result.exported.VAULT_NAMESPACE],
    [token, services.origin, "ci"],
  );
  assert.match(result.exported.VAULT_TOKEN_EXPIRES_AT ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.deepEqual(result.redacted, [token]);
  assert.match(
    result.stdout,
    /Exported VAULT_TOKEN, VAULT_ADDR \(https:\/\/127\.0\.0\.1:\d+\) and VAULT_NAMESPACE \(ci\); revoked when it ends \(expires in 20 min\)\n$/,
  );
  // A step's command uses them the way the docs show.
  const curl = await new Deno.Command("curl", {
    args: [
      "-fsS",
      "--cacert",
      work.ca,
      "-H",
      `X-Vault-Token: ${result.exported.VAULT_TOKEN}`,
      `${result.exported.VAULT_ADDR}/v1/secret/data/app`,
    ],
  }).output();
  assert.equal(
    JSON.parse(new TextDecoder().decode(curl.stdout)).data.data.password,
    "the-app-secret",
  );

  const ended = await runHooks(["pre-exit"], { options, env });
  assert.deepEqual([ended.code, ended.stderr], [0, ""]);
  assert.deepEqual(services.revoked.vault, [token]);
  const revoke = services.requests.find((r) => r.path === "/v1/auth/token/revoke-self")!;
  assert.deepEqual([revoke.headers["x-vault-token"], revoke.headers["x-vault-namespace"]], [
    token,
    "ci",
  ]);
  assert.deepEqual([...Deno.readDirSync(work.path)].map((e) => e.name), ["ca.pem"]);
});

Deno.test("vault-addr: a role that does not match fails the hook with Vault's errors; a revocation that fails is one warning, not a failed job", async () => {
  await using services = startServices();
  await using work = await workDir();
  const options = {
    "vault-addr": services.origin,
    "vault-role": "deploy",
    "ca-file": work.ca,
  };
  const env = { TMPDIR: work.path };
  services.refuse.vaultLogin = true;
  const refused = await runHooks(["environment"], { options, env });
  assert.equal(refused.code, 1);
  assert.equal(
    refused.stderr,
    `🚨 Vault refused the login with role "deploy" at auth/jwt: HTTP 400, "error validating token: claim "sub" does not match any associated bound claim values"\n${CLAIMS_LINE}\n`,
  );
  services.refuse.vaultLogin = false;
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  services.refuse.vaultRevoke = true;
  const ended = await runHooks(["pre-exit"], { options, env });
  assert.equal(ended.code, 0);
  assert.equal(
    ended.stderr,
    '⚠️ The Vault token was not revoked: Vault refused to revoke the token: HTTP 403, "permission denied"; it stays valid until it expires\n',
  );
  assert.deepEqual([...Deno.readDirSync(work.path)].map((e) => e.name), ["ca.pem"]);
});

Deno.test("github-token-scope: octo-sts gives the GitHub token, exported as GITHUB_TOKEN, and pre-exit revokes it", async () => {
  await using services = startServices();
  await using work = await workDir();
  const options = {
    "github-token-scope": "acme/deploy",
    "github-token-identity": "buildkite-release",
    "octo-sts-url": services.origin,
    "github-api-url": services.origin,
    audience: "octo-sts.example.com",
    "ca-file": work.ca,
  };
  const env = { TMPDIR: work.path };
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  const exchange = services.requests[0]!;
  assert.deepEqual(
    [exchange.method, exchange.path, exchange.headers.authorization, exchange.body],
    [
      "GET",
      "/sts/exchange?scope=acme%2Fdeploy&identity=buildkite-release",
      `Bearer ${SUBJECT_TOKEN}`,
      "",
    ],
  );
  const token = services.issued.github[0]!;
  assert.equal(result.exported.GITHUB_TOKEN, token);
  assert.deepEqual(result.redacted, [token]);
  const ended = await runHooks(["pre-exit"], { options, env });
  assert.deepEqual([ended.code, ended.stderr], [0, ""]);
  assert.deepEqual(services.revoked.github, [token]);

  services.refuse.octoSts = true;
  const refused = await runHooks(["environment"], { options, env });
  assert.equal(refused.code, 1);
  assert.equal(
    refused.stderr,
    `🚨 octo-sts refused a token for acme/deploy as buildkite-release: HTTP 403, "unable to find a matching trust policy"\n${CLAIMS_LINE}\n`,
  );
  // The default octo-sts's audience, unless another instance is named.
  const defaults = await runHooks(["environment"], {
    options: { "github-token-scope": "acme", "github-token-identity": "release", retries: 0 },
    env: { TMPDIR: work.path },
  });
  assert.deepEqual(defaults.agentCalls[0], [
    "oidc",
    "request-token",
    "--audience",
    "octo-sts.dev",
  ]);
});

Deno.test("revoke: pre-exit revokes an exchange's token at revocation-endpoint (RFC 7009) with the client's secret", async () => {
  await using server = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
  await using services = startServices();
  await using work = await workDir();
  const options = {
    "token-endpoint": server.url,
    "client-id": "ci",
    "client-secret-env": "STS_SECRET",
    revoke: true,
    "revocation-endpoint": `${services.origin}/revoke`,
    "ca-file": work.ca,
  };
  const env = { TMPDIR: work.path, STS_SECRET: "s3cret-for-the-revocation" };
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  // The record pre-exit reads names the secret's variable, never holds the secret.
  const record = result.privateContents["1/revoke.json"]!;
  assert.equal(record.includes("s3cret-for-the-revocation"), false);
  const ended = await runHooks(["pre-exit"], { options, env });
  assert.deepEqual([ended.code, ended.stderr], [0, ""]);
  assert.deepEqual(services.revoked.oauth, [ISSUED_TOKEN]);
  const revoke = services.requests.find((r) => r.path === "/revoke")!;
  assert.equal(revoke.headers.authorization, `Basic ${btoa("ci:s3cret-for-the-revocation")}`);
  assert.deepEqual(Object.fromEntries(new URLSearchParams(revoke.body)), {
    token: ISSUED_TOKEN,
    token_type_hint: "access_token",
  });
  const missing = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, revoke: true },
  });
  assert.equal(
    missing.stderr,
    "🚨 Configuration error: revoke needs revocation-endpoint (RFC 7009), or issuer, whose metadata names it: set revocation-endpoint\n",
  );
});

Deno.test("revoke with issuer: pre-exit revokes at the revocation_endpoint the metadata names, and says so when it names none", async () => {
  let named = true;
  const revoked: string[] = [];
  await using server = startTokenEndpoint((request) => {
    if (request.path === "/.well-known/openid-configuration") {
      return Response.json({
        issuer: server.origin,
        token_endpoint: `${server.origin}/token`,
        ...(named && { revocation_endpoint: `${server.origin}/revoke` }),
      });
    }
    if (request.path === "/revoke") {
      revoked.push(new URLSearchParams(request.body).get("token") ?? "");
      return new Response(null, { status: 200 });
    }
    return tokenResponse({ access_token: ISSUED_TOKEN });
  });
  await using work = await workDir();
  const options = { issuer: server.origin, revoke: true };
  const env = { TMPDIR: work.path };
  const result = await runHooks(["environment"], { options, env });
  assert.deepEqual([result.code, result.stderr], [0, ""]);
  const ended = await runHooks(["pre-exit"], { options, env });
  assert.deepEqual([ended.code, ended.stderr, revoked], [0, "", [ISSUED_TOKEN]]);

  named = false;
  const unnamed = await runHooks(["environment", "pre-exit"], { options, env });
  assert.equal(unnamed.code, 0);
  assert.equal(
    unnamed.stderr,
    "⚠️ revoke: the issuer's metadata names no revocation_endpoint on its host, so the token will not be revoked when the job ends: set revocation-endpoint\n",
  );
  assert.deepEqual(revoked, [ISSUED_TOKEN]);
});
