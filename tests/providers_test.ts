// The hand-over modes checked in the hook, as a platform engineer meets them in the first hour: the
// hook assumes the AWS role (or makes Google's exchange) once, against loopback stand-ins that
// answer as AWS STS and Google's STS and IAM do, so a trust policy that does not match fails the
// job there, with the provider's own message and the OIDC token's iss, sub and aud; and what is
// handed over works with the real clients (the AWS SDK for JavaScript, the AWS CLI where it can be
// pointed at loopback), whatever credentials the agent's environment and ~/.aws already hold.

import assert from "node:assert/strict";
import { runAwsClient, startAwsStandIn } from "./_aws.ts";
import { startGoogleStandIns } from "./_google.ts";
import { runHooks } from "./_hooks.ts";
import { BUILDKITE_CLAIMS } from "./_tokens.ts";

const ROLE = "arn:aws:iam::123456789012:role/deploy";
const PROVIDER =
  "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/buildkite/providers/acme";
const CLAIMS_LINE =
  `   Buildkite OIDC token: iss="${BUILDKITE_CLAIMS.iss}" sub="${BUILDKITE_CLAIMS.sub}" aud="${BUILDKITE_CLAIMS.aud}"`;
/** The agent's own static credentials, which must not be what the job's tools use. */
const AGENT_KEYS = {
  AWS_ACCESS_KEY_ID: "AKIAAGENTSTATICKEY01",
  AWS_SECRET_ACCESS_KEY: "agent-static-secret-access-key-0123456789",
  AWS_PROFILE: "agent",
};

/** A HOME whose ~/.aws holds a [default] and an [agent] profile with static keys, as agents do. */
async function agentHome(): Promise<{ home: string } & AsyncDisposable> {
  const home = await Deno.makeTempDir({ prefix: "agent-home-" });
  await Deno.mkdir(`${home}/.aws`);
  const keys =
    `aws_access_key_id = AKIAAGENTDEFAULTKEY1\naws_secret_access_key = agent-default-secret-0123456789\n`;
  await Deno.writeTextFile(`${home}/.aws/credentials`, `[default]\n${keys}[agent]\n${keys}`);
  await Deno.writeTextFile(`${home}/.aws/config`, "[default]\nregion = us-west-2\n");
  return { home, [Symbol.asyncDispose]: () => Deno.remove(home, { recursive: true }) };
}

/** The AWS CLI on PATH, if it can be pointed at loopback STS (AWS_ENDPOINT_URL_STS). */
async function findAwsCli(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("aws", { args: ["--version"], stderr: "piped" }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    // AWS_ENDPOINT_URL_STS came with botocore 1.31 (AWS CLI 1.29) and AWS CLI 2.13.
    const v1 = /botocore\/1\.(\d+)\./.exec(text);
    const v2 = /aws-cli\/2\.(\d+)\./.exec(text);
    if ((v1 && Number(v1[1]) >= 31) || (v2 && Number(v2[1]) >= 13)) return text.split(" ")[0];
  } catch {
    // Not installed.
  }
  return undefined;
}

const AWS_CLI = await findAwsCli();

/** `aws sts get-caller-identity` in a job whose environment is ENV: the Arn, or its error. */
async function awsCliCallerArn(env: Record<string, string>): Promise<string> {
  const output = await new Deno.Command("aws", {
    args: ["sts", "get-caller-identity", "--output", "json"],
    clearEnv: true,
    env: {
      ...env,
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      AWS_EC2_METADATA_DISABLED: "true",
    },
  }).output();
  if (!output.success) return new TextDecoder().decode(output.stderr);
  return JSON.parse(new TextDecoder().decode(output.stdout)).Arn;
}

/** A TMPDIR of the test's: the entry's files stay there after the hook, until pre-exit. */
async function tmpDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "provider-job-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

Deno.test("aws-role-arn: the hook assumes the role once, unsets the agent's credentials, and the AWS SDK and CLI then use the role, not the agent's keys or ~/.aws's [default]", async (t) => {
  await using aws = startAwsStandIn({ lifetimeSeconds: 3600 });
  await using home = await agentHome();
  await using tmp = await tmpDir();
  const options = { "aws-role-arn": ROLE, "aws-region": "us-east-1", "aws-session-duration": 1800 };
  const env = {
    ...AGENT_KEYS,
    HOME: home.home,
    TMPDIR: tmp.path,
    AWS_ENDPOINT_URL_STS: aws.url,
    BUILDKITE_PIPELINE_SLUG: "deploy",
    BUILDKITE_BUILD_NUMBER: "42",
    BUILDKITE_STEP_KEY: "deploy",
  };
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  // The agent was asked for the audience AWS expects; STS saw that token, once, with the options.
  assert.deepEqual(result.agentCalls[0], [
    "oidc",
    "request-token",
    "--audience",
    "sts.amazonaws.com",
  ]);
  assert.equal(aws.assumeRole.length, 1);
  const form = new URLSearchParams(aws.assumeRole[0]!.form);
  assert.deepEqual(
    [form.get("RoleArn"), form.get("RoleSessionName"), form.get("DurationSeconds")],
    [ROLE, "buildkite-deploy-42-deploy", "1800"],
  );
  assert.equal(
    result.stdout,
    [
      `~~~ :key: Assuming ${ROLE} with the job's OIDC token`,
      "Assumed arn:aws:sts::123456789012:assumed-role/deploy/buildkite-deploy-42-deploy: its trust policy accepts this job",
      "Unset AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY of the agent's environment, with which the AWS tools would not use the role",
      "Exported AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_SESSION_NAME (buildkite-deploy-42-deploy), AWS_CONFIG_FILE and AWS_PROFILE (token-exchange, this job's), AWS_REGION and AWS_DEFAULT_REGION (us-east-1)",
      "",
    ].join("\n"),
  );
  const exported = result.exported;
  assert.deepEqual([exported.AWS_ACCESS_KEY_ID, exported.AWS_SECRET_ACCESS_KEY], [
    undefined,
    undefined,
  ]);
  assert.deepEqual(
    [exported.AWS_PROFILE, exported.AWS_REGION, exported.AWS_DEFAULT_REGION],
    ["token-exchange", "us-east-1", "us-east-1"],
  );
  assert.equal(
    await Deno.readTextFile(exported.AWS_CONFIG_FILE!),
    `[profile token-exchange]\nrole_arn = ${ROLE}\nweb_identity_token_file = ${exported.AWS_WEB_IDENTITY_TOKEN_FILE}\nrole_session_name = buildkite-deploy-42-deploy\nregion = us-east-1\n`,
  );
  // What the job's tools see: the exported variables, and the agent user's ~/.aws files.
  const jobEnv: Record<string, string> = {
    HOME: home.home,
    AWS_SHARED_CREDENTIALS_FILE: `${home.home}/.aws/credentials`,
  };
  for (
    const name of [
      "ROLE_ARN",
      "WEB_IDENTITY_TOKEN_FILE",
      "ROLE_SESSION_NAME",
      "CONFIG_FILE",
      "PROFILE",
      "REGION",
    ]
  ) {
    jobEnv[`AWS_${name}`] = exported[`AWS_${name}`]!;
  }
  const assumed = "arn:aws:sts::123456789012:assumed-role/deploy/buildkite-deploy-42-deploy";

  await t.step("the AWS SDK for JavaScript's default chain assumes the role", async () => {
    const sdk = await runAwsClient(aws, jobEnv, {
      rounds: 1,
      read: [
        exported.AWS_CONFIG_FILE!,
        `${home.home}/.aws/credentials`,
        `${home.home}/.aws/config`,
      ],
    });
    assert.equal(sdk.code, 0, sdk.stderr);
    assert.equal(sdk.rounds[0]?.arn, assumed, JSON.stringify(sdk.rounds));
    // Without what the hook did (the agent's keys and profile left in place), the same SDK uses
    // the agent's keys, which the stand-in does not know.
    const before = await runAwsClient(aws, {
      ...AGENT_KEYS,
      HOME: home.home,
      AWS_SHARED_CREDENTIALS_FILE: `${home.home}/.aws/credentials`,
    }, {
      rounds: 1,
      read: [`${home.home}/.aws/credentials`, `${home.home}/.aws/config`],
    });
    assert.match(before.rounds[0]?.error ?? "", /security token included is invalid/);
  });

  await t.step({
    name: `the AWS CLI assumes the role (${
      AWS_CLI ?? "no AWS CLI here that takes AWS_ENDPOINT_URL_STS"
    })`,
    ignore: AWS_CLI === undefined,
    async fn() {
      assert.equal(await awsCliCallerArn({ ...jobEnv, AWS_ENDPOINT_URL_STS: aws.url }), assumed);
    },
  });

  const ended = await runHooks(["pre-exit"], { options, env });
  assert.equal(ended.code, 0, ended.stderr);
  assert.deepEqual([...Deno.readDirSync(tmp.path)], []);
});

Deno.test("aws-role-arn: a trust policy that does not match fails the hook with AWS's code and message and the token's iss, sub and aud", async () => {
  await using aws = startAwsStandIn({ denyAccess: () => true });
  const result = await runHooks(["environment"], {
    options: { "aws-role-arn": ROLE, "aws-session-tags": ["organization_slug", "pipeline_slug"] },
    env: { ...AGENT_KEYS, AWS_ENDPOINT_URL_STS: aws.url },
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `🚨 AWS STS refused AssumeRoleWithWebIdentity for ${ROLE}: HTTP 403, AccessDenied: "Not authorized to perform sts:AssumeRoleWithWebIdentity"; check that the account has an IAM OIDC provider for the token's iss with its aud as an audience, and that the role's trust policy accepts the iss, sub and aud below\n${CLAIMS_LINE}\n`,
  );
  assert.deepEqual(result.agentCalls[0], [
    "oidc",
    "request-token",
    "--audience",
    "sts.amazonaws.com",
    "--aws-session-tag",
    "organization_slug,pipeline_slug",
  ]);
  // Nothing exported, nothing unset, nothing left.
  assert.deepEqual(result.exported, {});
  assert.deepEqual(result.leftovers, []);
});

Deno.test("aws-credentials: environment exports the role's keys, redacted, and never prints them", async () => {
  await using aws = startAwsStandIn({ lifetimeSeconds: 3600 });
  const result = await runHooks(["environment"], {
    options: { "aws-role-arn": ROLE, "aws-credentials": "environment" },
    env: { ...AGENT_KEYS, AWS_ENDPOINT_URL_STS: aws.url },
  });
  assert.equal(result.code, 0, result.stderr);
  const exported = result.exported;
  assert.equal(exported.AWS_ACCESS_KEY_ID, aws.assumeRole[0]!.issued);
  assert.match(exported.AWS_CREDENTIAL_EXPIRATION ?? "", /^\d{4}-\d\d-\d\dT/);
  assert.equal(exported.AWS_PROFILE, undefined);
  assert.equal(exported.AWS_WEB_IDENTITY_TOKEN_FILE, undefined);
  const secrets = [exported.AWS_SECRET_ACCESS_KEY!, exported.AWS_SESSION_TOKEN!];
  assert.deepEqual(result.redacted, secrets);
  for (const secret of secrets) {
    assert.ok(secret.length >= 40);
    assert.equal(result.stdout.includes(secret) || result.stderr.includes(secret), false);
  }
  // No file keeps the OIDC token: the tools get keys.
  assert.deepEqual(result.privateFiles, ["1/", "1/entry.json", "1/options", "job-pid"]);
  // Only the profile was unset: the keys are replaced by the role's.
  assert.match(result.stdout, /\nUnset AWS_PROFILE of the agent's environment/);
});

Deno.test("google-credentials: the hook makes Google's exchange and the impersonation once; a refusal fails it with Google's message and the token's iss, sub and aud", async (t) => {
  const refuse = { sts: false, iam: false };
  await using google = startGoogleStandIns({
    checkSubjectToken: () =>
      refuse.sts
        ? "The audience in ID Token [buildkite] does not match the expected audience."
        : undefined,
    denyImpersonation: () => refuse.iam,
  });
  const options = {
    "google-credentials": true,
    audience: `https:${PROVIDER}`,
    "token-endpoint": google.stsUrl,
    "service-account": "deployer@acme.iam.gserviceaccount.com",
  };
  const env = { TOKEN_EXCHANGE_GOOGLE_IAM_URL: `${google.origin}/v1` };

  await t.step(
    "accepted: one exchange and one impersonation, with the provider and scope the file names",
    async () => {
      const result = await runHooks(["environment"], { options, env });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.agentCalls[0], [
        "oidc",
        "request-token",
        "--audience",
        `https:${PROVIDER}`,
      ]);
      assert.deepEqual(google.sts.map((r) => [r.audience, r.scope]), [
        [PROVIDER, "https://www.googleapis.com/auth/cloud-platform"],
      ]);
      assert.deepEqual(google.iam.map((r) => [r.serviceAccount, r.bearer]), [
        ["deployer@acme.iam.gserviceaccount.com", google.sts[0]!.issued],
      ]);
      assert.match(
        result.stdout,
        new RegExp(
          `\nGoogle's STS accepts this job's OIDC token for ${
            PROVIDER.replaceAll(".", "\\.")
          }, and deployer@acme\\.iam\\.gserviceaccount\\.com lets it impersonate it\n`,
        ),
      );
      const credentials = JSON.parse(result.privateContents["1/google-credentials.json"]!);
      assert.equal(credentials.audience, PROVIDER);
    },
  );

  await t.step(
    "the service account refuses: Google's status and message, and what to grant",
    async () => {
      refuse.iam = true;
      const result = await runHooks(["environment"], { options, env });
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        `🚨 Google IAM refused to impersonate service-account deployer@acme.iam.gserviceaccount.com: HTTP 403, PERMISSION_DENIED: "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."; grant the workload identity pool's principal for this pipeline roles/iam.workloadIdentityUser on deployer@acme.iam.gserviceaccount.com\n${CLAIMS_LINE}\n`,
      );
      assert.deepEqual(result.exported, {});
    },
  );

  await t.step("the provider refuses: Google's error, and the iss, sub and aud", async () => {
    refuse.sts = true;
    const result = await runHooks(["environment"], { options, env });
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `🚨 Google's STS refused the OIDC token for ${PROVIDER}: HTTP 400, error "invalid_grant": "The audience in ID Token [buildkite] does not match the expected audience."; check that the provider's issuer, allowed audiences and attribute condition accept the token's iss, sub and aud below\n${CLAIMS_LINE}\n`,
    );
    assert.deepEqual(result.exported, {});
  });
});
