// The loopback stand-ins for Google, AWS and the Buildkite agent of a long job, each proven with
// the real client (google-auth-library, the AWS SDK for JavaScript) on hand-made input, so that the
// hook tests of issue 12 can rely on them.

import assert from "node:assert/strict";
import { decodeJwt } from "../_jwt.ts";
import { ROLE_SESSION_NAME, runAwsClient, startAwsStandIn } from "./_aws.ts";
import {
  ACCESS_TOKEN_TYPE,
  externalAccount,
  type ExternalAccountOptions,
  type GoogleStandIns,
  runGoogleClient,
  startGoogleStandIns,
  TOKEN_EXCHANGE_GRANT,
} from "./_google.ts";
import { mintedTokens, REFRESH_STANDIN_BIN } from "./_refresh_agent.ts";

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

/**
 * Runs google-auth-library for two tokens on an external_account file for WIF_AUDIENCE whose
 * subject token file holds FIRST, then SECOND (written between the two).
 */
function runGoogleOnTokenFile(
  google: GoogleStandIns,
  [first, second]: [string, string],
  extra: Partial<ExternalAccountOptions> = {},
) {
  return inTempDir("google-client-", async (dir) => {
    await Deno.writeTextFile(`${dir}/oidc-token`, first);
    await Deno.writeTextFile(
      `${dir}/credentials.json`,
      JSON.stringify(externalAccount({
        audience: WIF_AUDIENCE,
        tokenUrl: google.stsUrl,
        subjectTokenFile: `${dir}/oidc-token`,
        ...extra,
      })),
    );
    return await runGoogleClient(google, `${dir}/credentials.json`, {
      between: () => Deno.writeTextFile(`${dir}/oidc-token`, second),
    });
  });
}

Deno.test("google-auth-library reads the subject token file anew for each token and exchanges it at the loopback STS", async () => {
  await using google = startGoogleStandIns();
  const run = await runGoogleOnTokenFile(google, ["subject-token-one", "subject-token-two"]);
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

Deno.test("google-auth-library impersonates the service account with each new STS token", async () => {
  await using google = startGoogleStandIns();
  const run = await runGoogleOnTokenFile(google, ["subject-token-one", "subject-token-two"], {
    serviceAccountImpersonationUrl: google.impersonationUrl(SERVICE_ACCOUNT),
    tokenLifetimeSeconds: 600,
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

Deno.test("google-auth-library reports a subject token the STS refuses, and recovers with the next", async () => {
  await using google = startGoogleStandIns({
    checkSubjectToken: (token) => token === "expired-token" ? "Token has expired" : undefined,
  });
  const run = await runGoogleOnTokenFile(google, ["expired-token", "fresh-token"]);
  assert.match(run.rounds[0]?.error ?? "", /invalid_grant.*Token has expired/);
  assert.deepEqual(run.rounds[1], { token: run.sts[1]!.issued });
  assert.deepEqual(run.sts.map(({ subjectToken, error }) => ({ subjectToken, error })), [
    { subjectToken: "expired-token", error: "invalid_grant: Token has expired" },
    { subjectToken: "fresh-token", error: undefined },
  ]);
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

const BASH = ["/usr/bin/bash", "/bin/bash"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
})!;

interface AgentResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the refresh stand-in agent under bash with nothing on PATH, so it can use builtins only. */
async function runAgent(
  log: string,
  args: string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<AgentResult> {
  const child = new Deno.Command(BASH, {
    args: [`${REFRESH_STANDIN_BIN}/buildkite-agent`, ...args],
    clearEnv: true,
    env: { PATH: "/nonexistent", STANDIN_LOG: log, ...env },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("the refresh stand-in agent mints a fresh short-lived JWT on every call, with builtins only", async () => {
  await inTempDir("refresh-agent-", async (dir) => {
    const log = `${dir}/agent.log`;
    const before = Math.floor(Date.now() / 1000);
    const first = await runAgent(log, ["oidc", "request-token", "--audience", "sts.amazonaws.com"]);
    const second = await runAgent(log, [
      "oidc",
      "request-token",
      "--audience=//iam.googleapis.com/x",
      "--claim",
      "organization_id,pipeline_id",
    ]);
    const after = Math.floor(Date.now() / 1000);
    assert.deepEqual([first.code, first.stderr, second.code, second.stderr], [0, "", 0, ""]);
    const minted = await mintedTokens(log);
    assert.deepEqual(minted.map(({ token }) => `${token}\n`), [first.stdout, second.stdout]);

    const [one, two] = minted.map(({ token }) => decodeJwt(token)!);
    assert.deepEqual(one!.header, { alg: "RS256", kid: "standin-agent-key", typ: "JWT" });
    for (
      const [decoded, aud] of [[one!, "sts.amazonaws.com"], [
        two!,
        "//iam.googleapis.com/x",
      ]] as const
    ) {
      const { iat, nbf, exp, jti, ...rest } = decoded.claims as {
        iat: number;
        nbf: number;
        exp: number;
        jti: string;
        [claim: string]: unknown;
      };
      assert.ok(iat >= before && iat <= after, `iat ${iat} is now`);
      assert.deepEqual({ nbf, lifetime: exp - iat }, { nbf: iat, lifetime: 4 });
      assert.match(jti, /^standin-\d+-\d+-\d+$/);
      assert.deepEqual([rest.iss, rest.aud, rest.job_id], [
        "https://agent.buildkite.com",
        aud,
        "0184990a-477b-4fa8-9968-496074483cee",
      ]);
    }
    assert.notEqual(one!.claims.jti, two!.claims.jti);
    assert.deepEqual(
      [two!.claims.organization_id, two!.claims.pipeline_id],
      ["standin-organization_id", "standin-pipeline_id"],
    );
    assert.notEqual(minted[0]!.token.split(".")[2], minted[1]!.token.split(".")[2]);
    assert.equal((await Deno.readTextFile(log)).split("\n").filter((l) => l).length, 2);
  });
});

Deno.test("the refresh stand-in agent's lifetime: STANDIN_OIDC_LIFETIME, else --lifetime, else 4 s", async () => {
  await inTempDir("refresh-agent-", async (dir) => {
    const log = `${dir}/agent.log`;
    await runAgent(log, ["oidc", "request-token", "--lifetime", "90"]);
    await runAgent(log, ["oidc", "request-token", "--lifetime", "90"], {
      STANDIN_OIDC_LIFETIME: "2",
    });
    await runAgent(log, ["oidc", "request-token"]);
    const lifetimes = (await mintedTokens(log)).map(({ claims }) =>
      (claims.exp as number) - (claims.iat as number)
    );
    assert.deepEqual(lifetimes, [90, 2, 4]);
    assert.deepEqual((await mintedTokens(log)).map(({ claims }) => claims.aud), [
      "buildkite",
      "buildkite",
      "buildkite",
    ]);
  });
});

Deno.test("the refresh stand-in agent refuses while the stop file exists, and records every call", async () => {
  await inTempDir("refresh-agent-", async (dir) => {
    const log = `${dir}/agent.log`;
    const env = { STANDIN_OIDC_STOP_FILE: `${dir}/stop` };
    assert.equal((await runAgent(log, ["oidc", "request-token"], env)).code, 0);
    await Deno.writeTextFile(`${dir}/stop`, "");
    const refused = await runAgent(log, ["oidc", "request-token", "--audience", "a"], env);
    assert.deepEqual({ code: refused.code, stdout: refused.stdout }, { code: 1, stdout: "" });
    assert.match(
      refused.stderr,
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d FATAL {2}Failed to get OIDC token: the job is no longer running \(stand-in agent stopped\)\n$/,
    );
    await Deno.remove(`${dir}/stop`);
    assert.equal((await runAgent(log, ["oidc", "request-token"], env)).code, 0);
    assert.equal((await mintedTokens(log)).length, 2);
    assert.deepEqual(
      (await Deno.readTextFile(log)).split("\n").filter((l) => l).map((l) => l.split("\x1f")),
      [
        ["oidc", "request-token"],
        ["oidc", "request-token", "--audience", "a"],
        ["oidc", "request-token"],
      ],
    );
  });
});

Deno.test("the refresh stand-in agent records redactor add's stdin and refuses what the agent would", async () => {
  await inTempDir("refresh-agent-", async (dir) => {
    const log = `${dir}/agent.log`;
    const redacted = await runAgent(log, ["redactor", "add"], {}, "a-secret\nsecond line");
    assert.deepEqual(redacted, { code: 0, stdout: "", stderr: "" });
    assert.equal(await Deno.readTextFile(`${log}.redacted`), "a-secret\nsecond line\n");

    const badFlag = await runAgent(log, ["oidc", "request-token", "--audiense", "x"]);
    assert.equal(badFlag.code, 1);
    assert.match(badFlag.stderr, /FATAL {2}flag provided but not defined: --audiense\n$/);
    const badLifetime = await runAgent(log, ["oidc", "request-token", "--lifetime", "soon"]);
    assert.equal(badLifetime.code, 1);
    assert.match(badLifetime.stderr, /FATAL {2}invalid lifetime: soon\n$/);
    const unknown = await runAgent(log, ["meta-data", "get", "x"]);
    assert.equal(unknown.code, 64);
    assert.deepEqual(await mintedTokens(log), []);
  });
});
