import assert from "node:assert/strict";
import { awsSessionName, googleExternalAccount } from "./_handover.ts";
import { GOOGLE_IAM_URL, GOOGLE_STS_URL } from "./_plugin_providers.ts";

const PROVIDER =
  "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/bk/providers/bk";

Deno.test("googleExternalAccount() builds the file as JSON, whatever the values hold", () => {
  const odd = 'a "quoted" \\ back\\slash, ünïcode and \u2028';
  const text = googleExternalAccount({
    audience: PROVIDER,
    tokenUrl: GOOGLE_STS_URL,
    subjectTokenType: odd,
    iamUrl: GOOGLE_IAM_URL,
    serviceAccount: undefined,
    tokenLifetimeSeconds: undefined,
  }, `/tmp/token-exchange-job/1/oidc "token"`);
  assert.ok(text.endsWith("}\n"));
  assert.deepEqual(JSON.parse(text), {
    type: "external_account",
    universe_domain: "googleapis.com",
    audience: PROVIDER,
    subject_token_type: odd,
    token_url: GOOGLE_STS_URL,
    credential_source: {
      file: `/tmp/token-exchange-job/1/oidc "token"`,
      format: { type: "text" },
    },
  });
});

Deno.test("googleExternalAccount() impersonates the service account, with its token lifetime", () => {
  const file = JSON.parse(googleExternalAccount({
    audience: PROVIDER,
    tokenUrl: "http://127.0.0.1:8080/v1/token",
    subjectTokenType: "urn:ietf:params:oauth:token-type:jwt",
    iamUrl: "http://127.0.0.1:8080/v1",
    serviceAccount: "deployer@acme.iam.gserviceaccount.com",
    tokenLifetimeSeconds: 900,
  }, "/f"));
  assert.equal(
    file.service_account_impersonation_url,
    "http://127.0.0.1:8080/v1/projects/-/serviceAccounts/deployer@acme.iam.gserviceaccount.com:generateAccessToken",
  );
  assert.deepEqual(file.service_account_impersonation, { token_lifetime_seconds: 900 });
});

Deno.test("awsSessionName() names the build within AWS's rule: 2 to 64 of [\\w+=,.@-]", () => {
  const env = (values: Record<string, string>) => (name: string) => values[name];
  assert.equal(
    awsSessionName(env({
      BUILDKITE_PIPELINE_SLUG: "deploy",
      BUILDKITE_BUILD_NUMBER: "42",
      BUILDKITE_STEP_KEY: "apply",
      BUILDKITE_JOB_ID: "0184990a",
    })),
    "buildkite-deploy-42-apply",
  );
  assert.equal(awsSessionName(env({ BUILDKITE_JOB_ID: "0184990a" })), "buildkite-job-0-0184990a");
  const long = awsSessionName(env({ BUILDKITE_PIPELINE_SLUG: "a/b c".repeat(30) }));
  assert.match(long, /^[\w+=,.@-]{2,64}$/);
  assert.equal(long.length, 64);
});
