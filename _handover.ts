// What the plugin hands to Google's, AWS's and Kubernetes' own tools, which read the tokens from
// files: Google's external_account credentials and a kubeconfig (built as JSON, never by pasting
// text together), an AWS config file of the job's own, and the session name AWS_ROLE_SESSION_NAME
// carries.

import type { Env } from "./_cli_flags.ts";
import type { AwsOptions, GoogleOptions } from "./_plugin_providers.ts";

/**
 * The external_account credentials that make Google's libraries, gcloud and Terraform exchange the
 * OIDC token in a file themselves, and refresh by reading the file again.
 *
 * @see {@link https://google.aip.dev/auth/4117}
 *
 * @param google The options of `google-credentials`.
 * @param oidcTokenFile The file that holds the OIDC token.
 * @returns The file's text.
 */
export function googleExternalAccount(google: GoogleOptions, oidcTokenFile: string): string {
  const impersonation = google.serviceAccount === undefined ? {} : {
    service_account_impersonation_url:
      `${google.iamUrl}/projects/-/serviceAccounts/${google.serviceAccount}:generateAccessToken`,
    ...(google.tokenLifetimeSeconds !== undefined && {
      service_account_impersonation: { token_lifetime_seconds: google.tokenLifetimeSeconds },
    }),
  };
  return `${
    JSON.stringify({
      type: "external_account",
      universe_domain: "googleapis.com",
      audience: google.audience,
      subject_token_type: google.subjectTokenType,
      token_url: google.tokenUrl,
      ...impersonation,
      credential_source: { file: oidcTokenFile, format: { type: "text" } },
    })
  }\n`;
}

/**
 * A valid AWS_ROLE_SESSION_NAME (2 to 64 characters of `[\w+=,.@-]`) that names the build:
 * `buildkite-<pipeline>-<build number>-<step key or job ID>`.
 *
 * @param env Reads the job's BUILDKITE_* variables.
 * @returns The session name.
 */
export function awsSessionName(env: Env): string {
  const step = env("BUILDKITE_STEP_KEY") || env("BUILDKITE_JOB_ID");
  const name = `buildkite-${env("BUILDKITE_PIPELINE_SLUG") || "job"}-${
    env("BUILDKITE_BUILD_NUMBER") || "0"
  }${step ? `-${step}` : ""}`;
  return name.replace(/[^A-Za-z0-9_+=,.@-]/g, "-").slice(0, 64);
}

/** The profile of the AWS config file the plugin writes. */
export const AWS_PROFILE = "token-exchange";

/**
 * An AWS config file whose one profile assumes the role from the OIDC token's file. Exported as
 * AWS_CONFIG_FILE with AWS_PROFILE, it is what every SDK's chain finds first: a `[default]`
 * profile in the agent user's `~/.aws` files (which the JavaScript SDK prefers to
 * AWS_WEB_IDENTITY_TOKEN_FILE) is not read.
 *
 * @param aws The options of `aws-role-arn`.
 * @param oidcTokenFile The file that holds the OIDC token.
 * @returns The file's text.
 * @throws {TypeError} When the path has a character an INI line cannot hold.
 */
export function awsConfigFile(aws: AwsOptions, oidcTokenFile: string): string {
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f;#]|^\s|\s$/.test(oidcTokenFile)) {
    throw new TypeError(
      `The OIDC token's file "${
        JSON.stringify(oidcTokenFile).slice(1, -1)
      }" has a character an AWS config file cannot hold: set TMPDIR to a plain path`,
    );
  }
  return [
    `[profile ${AWS_PROFILE}]`,
    `role_arn = ${aws.roleArn}`,
    `web_identity_token_file = ${oidcTokenFile}`,
    `role_session_name = ${aws.sessionName}`,
    ...(aws.region === undefined ? [] : [`region = ${aws.region}`]),
    "",
  ].join("\n");
}

/**
 * A kubeconfig of the entry's own: one cluster, and a user that reads its token from the token
 * file (kubectl and client-go read it again as it changes).
 *
 * @param server The API server's URL (`kubernetes-server`).
 * @param caPem The cluster's CA certificate (`kubernetes-ca`), if it has its own.
 * @param tokenFile The file that holds the issued token.
 * @returns The file's text (JSON, which kubectl reads as YAML).
 */
export function kubeconfig(server: URL, caPem: string | undefined, tokenFile: string): string {
  const name = "token-exchange";
  return `${
    JSON.stringify(
      {
        apiVersion: "v1",
        kind: "Config",
        clusters: [{
          name,
          cluster: {
            server: server.href.replace(/\/$/, ""),
            // A PEM file is ASCII (readPemFile checks), which btoa takes as it is.
            ...(caPem !== undefined && { "certificate-authority-data": btoa(caPem) }),
          },
        }],
        users: [{ name, user: { tokenFile } }],
        contexts: [{ name, context: { cluster: name, user: name } }],
        "current-context": name,
      },
      null,
      2,
    )
  }\n`;
}
