// The hook's one check of `google-credentials`: the token exchange that Google's tools will make
// with the OIDC token (at Google's STS), and with `service-account` the impersonation after it (at
// the IAM Credentials API), so that a provider or a service account that does not trust the job
// fails it in the hook, with Google's own message. Web-standard APIs only.

import { TOKEN_TYPES, USER_AGENT } from "./_constants.ts";
import { HttpStatusError, InvalidResponseError } from "./_errors.ts";
import { exchange } from "./_exchange.ts";
import { type HttpInternals, type HttpOptions, sendWithRetries } from "./_http.ts";
import type { GoogleOptions } from "./_plugin_providers.ts";
import { summarise } from "./_redact.ts";
import { issuedTokenProblem } from "./_response.ts";

/** The scope Google's tools ask for with an external_account file. */
export const CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform";

/**
 * Exchanges the OIDC token at Google's STS, and impersonates the service account with what it
 * gives, as Google's tools will; the tokens obtained are dropped.
 *
 * @param google The options of `google-credentials`.
 * @param subjectToken The OIDC token.
 * @param http How to send the requests.
 * @throws {OAuthError} When the STS refuses, with Google's error and what to check.
 * @throws {HttpStatusError} When IAM refuses the impersonation, with Google's status and message.
 */
export async function checkGoogle(
  google: GoogleOptions,
  subjectToken: string,
  http: HttpOptions & HttpInternals = {},
): Promise<void> {
  const { accessToken } = await exchange({
    ...http,
    tokenEndpoint: google.tokenUrl,
    subjectToken,
    subjectTokenType: google.subjectTokenType,
    audience: google.audience,
    scope: CLOUD_PLATFORM_SCOPE,
    requestedTokenType: TOKEN_TYPES.accessToken,
    refusal: {
      who: `Google's STS refused the OIDC token for ${google.audience}`,
      hint:
        "; check that the provider's issuer, allowed audiences and attribute condition accept the token's iss, sub and aud below",
    },
  });
  if (google.serviceAccount !== undefined) {
    await impersonate(google, accessToken, [subjectToken, accessToken], http);
  }
}

async function impersonate(
  google: GoogleOptions,
  accessToken: string,
  secrets: readonly string[],
  http: HttpOptions & HttpInternals,
): Promise<void> {
  const account = google.serviceAccount!;
  const url = new URL(
    `${google.iamUrl}/projects/-/serviceAccounts/${
      encodeURIComponent(account)
    }:generateAccessToken`,
  );
  http.onDebug?.(`Google IAM: generateAccessToken for ${account}`);
  const { response, attempts } = await sendWithRetries(
    url,
    {
      method: "POST",
      headers: {
        authorization: `Bearer ${accessToken}`,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
      },
      body: JSON.stringify({
        scope: [CLOUD_PLATFORM_SCOPE],
        ...(google.tokenLifetimeSeconds !== undefined &&
          { lifetime: `${google.tokenLifetimeSeconds}s` }),
      }),
    },
    "Google IAM",
    http,
  );
  const text = new TextDecoder().decode(response.body);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const meta = { status: response.status, attempts };
  if (response.status === 200) {
    const token = (body as { accessToken?: unknown } | undefined)?.accessToken;
    if (typeof token !== "string" || issuedTokenProblem(token) !== undefined) {
      throw new InvalidResponseError(
        "Google IAM answered HTTP 200 without the access token generateAccessToken returns",
        meta,
      );
    }
    return;
  }
  const error = (body as { error?: { message?: unknown; status?: unknown } } | undefined)?.error;
  const status = typeof error?.status === "string"
    ? `${summarise(error.status, secrets, 60)}: `
    : "";
  const message = typeof error?.message === "string" ? error.message : text;
  throw new HttpStatusError(
    `Google IAM refused to impersonate service-account ${account}: HTTP ${response.status}, ${status}"${
      summarise(message, secrets, 500)
    }"${
      response.status === 403 || response.status === 401
        ? `; grant the workload identity pool's principal for this pipeline roles/iam.workloadIdentityUser on ${account}`
        : ""
    }`,
    response.status,
    response.headers.get("content-type") ?? undefined,
    summarise(text, secrets),
    meta,
  );
}
