// What the CLI says about a failure, and what --debug says about a token: the hint that says what
// to change, the subject token's iss, sub and aud, and a token's header and claims. Loaded only on
// a failure or with --debug: each module costs start-up time on the way to a token.

import { type CliConfig, labelOf } from "./_cli_config.ts";
import { OAuthError, TokenExchangeError } from "./_errors.ts";
import { certificateProblem } from "./_http.ts";
import { decodeJwt } from "./_jwt.ts";
import { maskSecrets } from "./_redact.ts";
import type { SubjectTokenSource } from "./_subject_token.ts";

const SOURCE_LABELS: Record<SubjectTokenSource["kind"], string> = {
  buildkite: "Buildkite OIDC token",
  "github-actions": "GitHub Actions ID token",
  gitlab: "GitLab ID token",
  env: "Subject token",
  file: "Subject token",
};

/** What the subject token is called in messages: "Buildkite OIDC token", … */
export function subjectTokenLabel(source: SubjectTokenSource): string {
  return SOURCE_LABELS[source.kind];
}

/** The claims that identify a token to a trust policy, as one line, or what it is if not a JWT. */
export function identify(label: string, token: string): string {
  const decoded = decodeJwt(token);
  if (decoded === undefined) {
    return `${label}: not a JWT (an opaque ${token.length}-character token)`;
  }
  const fields = ["iss", "sub", "aud"].map((name) =>
    `${name}=${
      decoded.claims[name] === undefined ? "(none)" : JSON.stringify(decoded.claims[name])
    }`
  );
  return `${label}: ${fields.join(" ")}`;
}

/** The header fields --debug shows. */
const HEADER_FIELDS = ["alg", "kid", "typ"];

/**
 * The claims --debug shows: those that identify a token to a trust policy (RFC 7519's, OAuth's and
 * the Buildkite agent's), never arbitrary ones, which a hostile server could fill with anything.
 */
export const IDENTIFYING_CLAIMS: readonly string[] = [
  "iss",
  "sub",
  "aud",
  "exp",
  "iat",
  "nbf",
  "azp",
  "client_id",
  "scope",
  "act",
  "organization_slug",
  "organization_id",
  "pipeline_slug",
  "pipeline_id",
  "build_number",
  "build_branch",
  "build_tag",
  "build_commit",
  "build_source",
  "step_key",
  "job_id",
  "agent_id",
  "cluster_id",
  "cluster_name",
  "queue_id",
  "queue_key",
  "runner_environment",
];

/** The fields of OBJECT that NAMES lists, in the object's own order. */
function pick(object: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).filter(([name]) => names.includes(name)));
}

/**
 * What a token says about itself, for --debug: its header's algorithm and key, and the claims that
 * identify it (`act` only by its `sub`), never its signature or another claim, with the secrets
 * masked in whatever form they appear.
 *
 * @param label What the token is.
 * @param token The token.
 * @param secrets The run's secrets (the subject token, the client secret), masked.
 * @param now The time, for how long it lives.
 * @returns One line.
 */
export function explain(
  label: string,
  token: string,
  secrets: readonly string[] = [],
  now = Date.now(),
): string {
  const decoded = decodeJwt(token);
  if (decoded === undefined) {
    return `${label}: not a JWT (an opaque ${token.length}-character token)`;
  }
  const claims = pick(decoded.claims, IDENTIFYING_CLAIMS);
  const act = claims.act;
  if (act !== undefined) {
    claims.act = typeof act === "object" && act !== null && "sub" in act
      ? { sub: (act as Record<string, unknown>).sub }
      : "(not shown)";
  }
  const others = Object.keys(decoded.claims).length - Object.keys(claims).length;
  const exp = decoded.claims.exp;
  const expiry = typeof exp === "number" ? `; expires in ${Math.round(exp - now / 1000)} s` : "";
  return maskSecrets(
    `${label}: header ${JSON.stringify(pick(decoded.header, HEADER_FIELDS))} claims ${
      JSON.stringify(claims)
    }${
      others > 0 ? ` and ${others} other claim${others === 1 ? "" : "s"}, not shown` : ""
    }${expiry}`,
    secrets,
  );
}

/**
 * What to change, for the errors where the message alone does not say, naming each option as the
 * user set it (a flag, or as `pipeline.yml` spells it).
 */
export function hint(error: unknown, config: CliConfig): string {
  const name = (flag: string) => labelOf(config, flag);
  if (error instanceof OAuthError) {
    switch (error.error) {
      case "invalid_client":
      case "unauthorized_client":
        return config.clientId === undefined
          ? `; the endpoint wants client authentication: set ${name("client-id")} (and ${
            name("client-secret-env")
          })`
          : `; check ${name("client-id")}, the secret in ${name("client-secret-env")} and ${
            name("client-auth")
          } (basic or post)`;
      case "invalid_target":
        return `; check ${name("target-audience")} and ${
          name("resource")
        } against what the endpoint allows`;
      case "invalid_scope":
        return `; check ${name("scope")} against what the endpoint allows`;
      case "unsupported_grant_type":
        return `; this endpoint does not do RFC 8693 token exchange: check ${
          name(config.tokenEndpoint === undefined ? "issuer" : "token-endpoint")
        }`;
      case "invalid_grant":
      case "invalid_request":
      case "access_denied":
        return "; check that the endpoint's trust policy accepts the token's iss, sub and aud below";
    }
    return "";
  }
  if (error instanceof TokenExchangeError) {
    if (error.code === "timeout") {
      return `: raise ${name("timeout")}, or check this agent can reach the endpoint`;
    }
    if (error.code === "network") {
      switch (certificateProblem(error.message)) {
        case "untrusted":
          return `; if your organisation's own CA issued it, set ${
            name("ca-file")
          } to that CA's certificate (a PEM file)`;
        case "invalid":
          return "; check the URL's host name is the one the certificate names, and that it has not expired";
      }
      return ": check the URL and that this agent can reach the host";
    }
    const endpoint = name(config.tokenEndpoint === undefined ? "issuer" : "token-endpoint");
    if (error.status === 404) return `: check ${endpoint}`;
    if (error.status === 401) {
      return config.clientId === undefined
        ? `: the endpoint wants client authentication: set ${name("client-id")} and ${
          name("client-secret-env")
        }`
        : `: check ${name("client-id")} and the secret in ${name("client-secret-env")}`;
    }
    // _response.ts's words for a 200 whose body is a web page or nothing.
    if (
      error.status === 200 && / with (?:a body that is not JSON|an empty body) /.test(error.message)
    ) {
      return `: a login page or another web page answered, not a token endpoint: check ${endpoint}`;
    }
  }
  return "";
}
