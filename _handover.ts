// What the plugin hands to Google's and AWS's own tools, which exchange the OIDC token themselves:
// Google's external_account credentials (built as JSON, never by pasting text together) and the
// session name AWS_ROLE_SESSION_NAME carries.

import type { Env } from "./_cli_flags.ts";
import type { GoogleOptions } from "./_plugin_options.ts";

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
