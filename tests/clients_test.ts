// The loopback stand-ins for Google, AWS and the Buildkite agent of a long job, each proven with
// the real client (google-auth-library, the AWS SDK for JavaScript) on hand-made input, so that the
// hook tests of issue 12 can rely on them.

import assert from "node:assert/strict";
import { ROLE_SESSION_NAME, runAwsClient, startAwsStandIn } from "./_aws.ts";
import {
  ACCESS_TOKEN_TYPE,
  externalAccount,
  runGoogleClient,
  startGoogleStandIns,
  TOKEN_EXCHANGE_GRANT,
} from "./_google.ts";

const WIF_AUDIENCE = "//iam.googleapis.com/projects/123456789/locations/global/" +
  "workloadIdentityPools/buildkite/providers/acme";
const CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform";
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";
const SERVICE_ACCOUNT = "deployer@acme-prod.iam.gserviceaccount.com";
const ROLE_ARN = "arn:aws:iam::123456789012:role/deployer";

/** Runs FN with a fresh temporary directory, removed afterwards. */
async function inTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("google-auth-library reads the subject token file anew for each token and exchanges it at the loopback STS", async () => {
  await using google = startGoogleStandIns();
  await inTempDir("google-client-", async (dir) => {
    await Deno.writeTextFile(`${dir}/oidc-token`, "subject-token-one");
    await Deno.writeTextFile(
      `${dir}/credentials.json`,
      JSON.stringify(externalAccount({
        audience: WIF_AUDIENCE,
        tokenUrl: google.stsUrl,
        subjectTokenFile: `${dir}/oidc-token`,
      })),
    );
    const run = await runGoogleClient(google, `${dir}/credentials.json`, {
      between: () => Deno.writeTextFile(`${dir}/oidc-token`, "subject-token-two"),
    });
    assert.deepEqual(
      { code: run.code, rounds: run.rounds, subjectTokens: run.subjectTokens },
      {
        code: 0,
        rounds: run.sts.map((request) => ({ token: request.issued })),
        subjectTokens: ["subject-token-one", "subject-token-two"],
      },
    );
    assert.deepEqual(run.sts[0]!.form, [
      ["grant_type", TOKEN_EXCHANGE_GRANT],
      ["audience", WIF_AUDIENCE],
      ["scope", CLOUD_PLATFORM],
      ["requested_token_type", ACCESS_TOKEN_TYPE],
      ["subject_token", "subject-token-one"],
      ["subject_token_type", JWT_TYPE],
    ]);
    assert.deepEqual({ iam: run.iam, stray: google.stray }, { iam: [], stray: [] });
  });
});

Deno.test("google-auth-library impersonates the service account with each new STS token", async () => {
  await using google = startGoogleStandIns();
  await inTempDir("google-client-", async (dir) => {
    await Deno.writeTextFile(`${dir}/oidc-token`, "subject-token-one");
    await Deno.writeTextFile(
      `${dir}/credentials.json`,
      JSON.stringify(externalAccount({
        audience: WIF_AUDIENCE,
        tokenUrl: google.stsUrl,
        subjectTokenFile: `${dir}/oidc-token`,
        serviceAccountImpersonationUrl: google.impersonationUrl(SERVICE_ACCOUNT),
        tokenLifetimeSeconds: 600,
      })),
    );
    const run = await runGoogleClient(google, `${dir}/credentials.json`, {
      between: () => Deno.writeTextFile(`${dir}/oidc-token`, "subject-token-two"),
    });
    assert.deepEqual(run.subjectTokens, ["subject-token-one", "subject-token-two"]);
    assert.deepEqual(run.rounds, run.iam.map((request) => ({ token: request.issued })));
    assert.deepEqual(
      run.iam.map(({ serviceAccount, bearer, body }) => ({ serviceAccount, bearer, body })),
      run.sts.map((request) => ({
        serviceAccount: SERVICE_ACCOUNT,
        bearer: request.issued,
        body: { scope: [CLOUD_PLATFORM], lifetime: "600s" },
      })),
    );
    assert.deepEqual(google.stray, []);
  });
});

Deno.test("google-auth-library reports a subject token the STS refuses, and recovers with the next", async () => {
  await using google = startGoogleStandIns({
    checkSubjectToken: (token) => token === "expired-token" ? "Token has expired" : undefined,
  });
  await inTempDir("google-client-", async (dir) => {
    await Deno.writeTextFile(`${dir}/oidc-token`, "expired-token");
    await Deno.writeTextFile(
      `${dir}/credentials.json`,
      JSON.stringify(externalAccount({
        audience: WIF_AUDIENCE,
        tokenUrl: google.stsUrl,
        subjectTokenFile: `${dir}/oidc-token`,
      })),
    );
    const run = await runGoogleClient(google, `${dir}/credentials.json`, {
      between: () => Deno.writeTextFile(`${dir}/oidc-token`, "fresh-token"),
    });
    assert.match(run.rounds[0]?.error ?? "", /invalid_grant.*Token has expired/);
    assert.deepEqual(run.rounds[1], { token: run.sts[1]!.issued });
    assert.deepEqual(run.sts.map(({ subjectToken, error }) => ({ subjectToken, error })), [
      { subjectToken: "expired-token", error: "invalid_grant: Token has expired" },
      { subjectToken: "fresh-token", error: undefined },
    ]);
  });
});

Deno.test("the Google stand-ins refuse requests Google would refuse", async () => {
  await using google = startGoogleStandIns();
  const valid: Record<string, string> = {
    grant_type: TOKEN_EXCHANGE_GRANT,
    audience: WIF_AUDIENCE,
    scope: CLOUD_PLATFORM,
    requested_token_type: ACCESS_TOKEN_TYPE,
    subject_token: "subject-token",
    subject_token_type: JWT_TYPE,
  };
  const exchange = async (changes: Record<string, string | undefined>) => {
    const fields = Object.entries({ ...valid, ...changes })
      .filter((entry): entry is [string, string] => entry[1] !== undefined);
    const response = await fetch(google.stsUrl, {
      method: "POST",
      body: new URLSearchParams(fields),
    });
    return { status: response.status, body: await response.json() };
  };
  const refused = (error: string, description: string) => ({
    status: 400,
    body: { error, error_description: description },
  });
  assert.deepEqual(
    await exchange({ grant_type: "client_credentials" }),
    refused("unsupported_grant_type", 'Unsupported grant_type "client_credentials"'),
  );
  assert.deepEqual(
    await exchange({ audience: undefined }),
    refused("invalid_request", "Missing audience"),
  );
  assert.deepEqual(
    await exchange({ subject_token_type: "urn:example:unknown" }),
    refused("invalid_request", 'Invalid subject_token_type "urn:example:unknown"'),
  );
  assert.deepEqual(
    await exchange({ requested_token_type: JWT_TYPE }),
    refused("invalid_request", `Invalid requested_token_type "${JWT_TYPE}"`),
  );
  assert.deepEqual(
    await exchange({ subject_token: "" }),
    refused("invalid_request", "Missing subject_token"),
  );
  const ok = await exchange({});
  assert.equal(ok.status, 200);

  const impersonate = async (bearer: string, body: unknown) => {
    const response = await fetch(google.impersonationUrl(SERVICE_ACCOUNT), {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() };
  };
  assert.deepEqual(await impersonate("not-issued", { scope: [CLOUD_PLATFORM] }), {
    status: 401,
    body: {
      error: {
        code: 401,
        message: "Request had invalid authentication credentials",
        status: "UNAUTHENTICATED",
      },
    },
  });
  assert.equal((await impersonate(ok.body.access_token, { lifetime: "600s" })).status, 400);
  assert.equal(
    (await impersonate(ok.body.access_token, { scope: [CLOUD_PLATFORM], lifetime: "10m" })).status,
    400,
  );
  const granted = await impersonate(ok.body.access_token, { scope: [CLOUD_PLATFORM] });
  assert.equal(granted.status, 200);
  assert.match(granted.body.expireTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  const stray = await fetch(`${google.origin}/computeMetadata/v1/project/project-id`);
  await stray.body?.cancel();
  assert.deepEqual({ status: stray.status, stray: google.stray }, {
    status: 404,
    stray: ["GET /computeMetadata/v1/project/project-id"],
  });
});

Deno.test("the AWS SDK assumes the role with the current web identity token at AWS_ENDPOINT_URL_STS, across a change of the file", async () => {
  await using aws = startAwsStandIn();
  await inTempDir("aws-client-", async (dir) => {
    await Deno.writeTextFile(`${dir}/oidc-token`, "web-identity-one");
    const run = await runAwsClient(aws, {
      AWS_ROLE_ARN: ROLE_ARN,
      AWS_WEB_IDENTITY_TOKEN_FILE: `${dir}/oidc-token`,
      AWS_ROLE_SESSION_NAME: "buildkite-acme-deploy-42",
    }, {
      between: () => Deno.writeTextFile(`${dir}/oidc-token`, "web-identity-two"),
    });
    const arn = "arn:aws:sts::123456789012:assumed-role/deployer/buildkite-acme-deploy-42";
    assert.deepEqual(
      run.rounds.map(({ accessKeyId, arn }) => ({ accessKeyId, arn })),
      run.assumeRole.map((request) => ({ accessKeyId: request.issued, arn })),
    );
    assert.deepEqual(run.webIdentityTokens, ["web-identity-one", "web-identity-two"]);
    assert.deepEqual(run.assumeRole[0]!.form, [
      ["Action", "AssumeRoleWithWebIdentity"],
      ["Version", "2011-06-15"],
      ["RoleArn", ROLE_ARN],
      ["RoleSessionName", "buildkite-acme-deploy-42"],
      ["WebIdentityToken", "web-identity-one"],
    ]);
    assert.deepEqual(
      run.callerIdentity,
      run.assumeRole.map((request) => ({ accessKeyId: request.issued, region: "us-east-1", arn })),
    );
    assert.deepEqual({ code: run.code, stray: aws.stray }, { code: 0, stray: [] });
  });
});

Deno.test("the AWS SDK reports what the STS stand-in refuses: a bad session name, an untrusted token", async () => {
  await using aws = startAwsStandIn({
    checkWebIdentityToken: (token) => token === "untrusted" ? "Token is not trusted" : undefined,
  });
  await inTempDir("aws-client-", async (dir) => {
    await Deno.writeTextFile(`${dir}/oidc-token`, "web-identity-one");
    const env = {
      AWS_ROLE_ARN: ROLE_ARN,
      AWS_WEB_IDENTITY_TOKEN_FILE: `${dir}/oidc-token`,
      AWS_ROLE_SESSION_NAME: "build 42/deploy",
    };
    const badName = await runAwsClient(aws, env, { rounds: 1 });
    assert.match(badName.rounds[0]?.error ?? "", /roleSessionName/);
    assert.deepEqual(badName.callerIdentity, []);

    await Deno.writeTextFile(`${dir}/oidc-token`, "untrusted");
    const untrusted = await runAwsClient(aws, { ...env, AWS_ROLE_SESSION_NAME: "build-42" }, {
      rounds: 1,
    });
    assert.match(untrusted.rounds[0]?.error ?? "", /Token is not trusted/);
    assert.deepEqual(untrusted.assumeRole.map((request) => request.error), [
      "InvalidIdentityToken: Token is not trusted",
    ]);
  });
});

Deno.test("the AWS stand-in's session name rule is AWS's: 2 to 64 of [\\w+=,.@-]", () => {
  const valid = ["ab", "a".repeat(64), "build_42+=,.@-x"];
  const invalid = ["a", "a".repeat(65), "build 42", "build/42", "bäume", ""];
  assert.deepEqual(
    [...valid, ...invalid].map((name) => ROLE_SESSION_NAME.test(name)),
    [...valid.map(() => true), ...invalid.map(() => false)],
  );
});
