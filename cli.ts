#!/usr/bin/env -S deno run --no-prompt --allow-net --allow-run=buildkite-agent --allow-env
/**
 * The `token-exchange` command: exchanges a CI job's OIDC token for a federated access token with
 * OAuth 2.0 Token Exchange (RFC 8693) and prints it. Every option is a flag that falls back to its
 * `BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*` variable. The subject token comes from
 * `buildkite-agent oidc request-token`, or with `--subject-token-source github-actions|gitlab`
 * from those CI systems, or from `--subject-token-env` / `--subject-token-file`. Exit status: 0
 * success, 2 usage or configuration error (found before anything is run or sent), 1 any other
 * failure.
 *
 * It runs from JSR or any URL as well as from a checkout: it reads no file of its own at run time.
 * Give it the narrowest permissions: network access to the endpoint's host only, `buildkite-agent`
 * as the only program it may run, and the environment.
 *
 * ```sh
 * deno run --no-prompt --allow-net=sts.example.com --allow-run=buildkite-agent --allow-env \
 *   jsr:@equinixmetal/token-exchange/cli --token-endpoint https://sts.example.com/token
 * ```
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2}
 *
 * @example Running the command from code, with an environment of your own
 * ```ts
 * import { main } from "@equinixmetal/token-exchange/cli";
 * import assert from "node:assert/strict";
 *
 * const noEnvironment = () => undefined;
 * assert.equal(await main(["--version"], noEnvironment), 0);
 * assert.equal(await main(["--no-such-flag"], noEnvironment), 2);
 * ```
 *
 * @module
 */

import {
  type CliConfig,
  exchangeParameters,
  helpText,
  parseCliConfig,
  UsageError,
} from "./_cli_options.ts";
import { directLoopbackFetch } from "./_direct_fetch.ts";
import { InvalidResponseError, OAuthError, TokenExchangeError } from "./_errors.ts";
import { exchange } from "./_exchange.ts";
import type { HttpInternals, HttpOptions } from "./_http.ts";
import type { decodeJwt as DecodeJwt } from "./_jwt.ts";
import { maskSecrets, oneLine, summarise } from "./_redact.ts";
import { type TokenExchangeResponse, tokenProblem } from "./_response.ts";
import { getSubjectToken, SubjectTokenError } from "./_subject_token.ts";
import { VERSION } from "./_constants.ts";

const PREFIX = "token-exchange:";

/**
 * Writes one line on stderr: the prefix, then the text flattened onto one line. Every line the
 * command writes on stderr goes through here, so that no text from outside (a server's, the
 * agent's, a token's claims) can start a line of its own and pass for `^^^ +++` or for this
 * command's own output.
 */
function say(text: string): void {
  console.error(`${PREFIX} ${oneLine(text)}`);
}

/**
 * Where the error lines go: stderr, or stdout for `--format hook` (the hooks show them after
 * `^^^ +++`, while debug lines reach the job log on stderr as they happen). Known from the
 * arguments before they are parsed, so that a usage error goes there too.
 */
function errorWriter(args: readonly string[]): (text: string) => void {
  const hookFormat = args.some((arg, i) =>
    arg === "--format=hook" || (arg === "--format" && args[i + 1] === "hook")
  );
  return hookFormat ? (text) => console.log(`${PREFIX} ${oneLine(text)}`) : say;
}

/** The JSON output, with DEL, C1 and the Unicode line separators escaped as well as C0. */
function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

const SOURCE_LABELS: Record<CliConfig["source"]["kind"], string> = {
  buildkite: "Buildkite OIDC token",
  "github-actions": "GitHub Actions ID token",
  gitlab: "GitLab ID token",
  env: "Subject token",
  file: "Subject token",
};

/** The claims that identify a token to a trust policy, as one line, or what it is if not a JWT. */
// Modules only some runs need are loaded when needed: each module costs start-up time.
const loadJwt = async (): Promise<typeof DecodeJwt> => (await import("./_jwt.ts")).decodeJwt;

function identify(decodeJwt: typeof DecodeJwt, label: string, token: string): string {
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

/** Everything a token says about itself, for --debug: header and claims, never the signature. */
function explain(decodeJwt: typeof DecodeJwt, label: string, token: string): string {
  const decoded = decodeJwt(token);
  if (decoded === undefined) {
    return `${label}: not a JWT (an opaque ${token.length}-character token)`;
  }
  const exp = decoded.claims.exp;
  const expiry = typeof exp === "number"
    ? `; expires in ${Math.round(exp - Date.now() / 1000)} s`
    : "";
  return `${label}: header ${JSON.stringify(decoded.header)} claims ${
    JSON.stringify(decoded.claims)
  }${expiry}`;
}

/** What to change, for the errors where the message alone does not say. */
function hint(error: unknown, config: CliConfig): string {
  if (error instanceof OAuthError) {
    switch (error.error) {
      case "invalid_client":
      case "unauthorized_client":
        return config.clientId === undefined
          ? "; the endpoint wants client authentication: set client-id (and client-secret-env)"
          : "; check client-id, the secret in client-secret-env and client-auth (basic or post)";
      case "invalid_target":
        return "; check target-audience and resource against what the endpoint allows";
      case "invalid_scope":
        return "; check scope against what the endpoint allows";
      case "unsupported_grant_type":
        return "; this endpoint does not do RFC 8693 token exchange: check token-endpoint";
      case "invalid_grant":
      case "invalid_request":
      case "access_denied":
        return "; check that the endpoint's trust policy accepts the token's iss, sub and aud below";
    }
    return "";
  }
  if (error instanceof TokenExchangeError) {
    if (error.code === "timeout") {
      return ": raise timeout, or check this agent can reach the endpoint";
    }
    if (error.code === "network") return ": check the URL and that this agent can reach the host";
    if (error.status === 404) return ": check the token endpoint URL";
  }
  return "";
}

/** The JSON output: the response fields that are present, in a fixed order. */
function toJson(result: TokenExchangeResponse): string {
  return safeJson({
    access_token: result.accessToken,
    issued_token_type: result.issuedTokenType,
    token_type: result.tokenType,
    expires_in: result.expiresIn,
    scope: result.scope,
    refresh_token: result.refreshToken,
  });
}

/**
 * Runs the command: reads the options, gets the subject token, exchanges it, and prints the
 * issued token (or the response fields as JSON) on stdout, or one error line on stderr.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 *
 * @param args The command-line arguments, without the program name.
 * @param env Reads an environment variable, for the plugin's options and the client secret.
 * @returns The exit status: 0 success, 2 usage or configuration error, 1 any other failure.
 *
 * @example A configuration error is found before anything is run or sent
 * ```ts
 * import { main } from "@equinixmetal/token-exchange/cli";
 * import assert from "node:assert/strict";
 *
 * const env = (name: string) =>
 *   name === "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT" ? "http://sts.example.com/token" : undefined;
 * assert.equal(await main([], env), 2); // plain http to a host that is not loopback
 * ```
 */
export async function main(
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<number> {
  const fail = errorWriter(args);
  let config: CliConfig;
  try {
    config = parseCliConfig(args, env);
  } catch (error) {
    if (error instanceof UsageError) {
      fail(error.message);
    } else if (error instanceof Deno.errors.NotCapable) {
      fail(`Cannot read the environment (${error.message}): run with --allow-env`);
    } else {
      throw error;
    }
    return 2;
  }
  if (config.help) {
    console.log(helpText(VERSION));
    return 0;
  }
  if (config.version) {
    console.log(`token-exchange ${VERSION}`);
    return 0;
  }

  const debug = config.debug ? (line: string) => say(`debug: ${line}`) : undefined;
  // A loopback endpoint (or issuer, or token service) is reached directly, never through a proxy
  // from the environment; other hosts keep HTTPS_PROXY and NO_PROXY.
  using direct = directLoopbackFetch();
  const http: HttpOptions & HttpInternals = {
    timeout: config.timeout,
    retries: config.retries,
    onDebug: debug,
    fetch: direct.fetch,
    platformFetch: true,
  };
  const label = SOURCE_LABELS[config.source.kind];
  let subjectToken: string | undefined;
  try {
    subjectToken = await getSubjectToken(config.source, http);
    const decodeJwt = config.debug ? await loadJwt() : undefined;
    if (decodeJwt) debug?.(explain(decodeJwt, label, subjectToken));
    let tokenEndpoint = config.tokenEndpoint;
    if (tokenEndpoint === undefined) {
      const { discover } = await import("./_discovery.ts");
      tokenEndpoint = await discover(config.issuer!, http);
    }
    const result = await exchange({
      ...exchangeParameters(config),
      ...http,
      tokenEndpoint,
      subjectToken,
    });
    if (decodeJwt) debug?.(explain(decodeJwt, "Issued token", result.accessToken));
    const shown = (value: string | undefined) =>
      value === undefined ? "(none)" : summarise(value, [subjectToken!]);
    debug?.(
      `Response: issued_token_type=${shown(result.issuedTokenType)} token_type=${
        shown(result.tokenType)
      } expires_in=${result.expiresIn ?? "(none)"} scope=${shown(result.scope)}`,
    );
    if (config.format === "json" && result.refreshToken !== undefined) {
      const problem = tokenProblem(result.refreshToken);
      if (problem !== undefined) {
        throw new InvalidResponseError(
          `Token endpoint answered HTTP 200 with a "refresh_token" that ${problem}`,
          { status: 200 },
        );
      }
    }
    if (config.format === "hook") {
      // The token (printable ASCII, checked), then its lifetime in seconds when known.
      console.log(
        `${result.accessToken}\n${
          result.expiresIn === undefined ? "" : Math.floor(result.expiresIn)
        }`,
      );
    } else {
      console.log(config.format === "json" ? toJson(result) : result.accessToken);
    }
    return 0;
  } catch (error) {
    const secrets = [subjectToken, config.clientSecret].filter((s): s is string => !!s);
    let message: string;
    if (
      error instanceof TokenExchangeError || error instanceof SubjectTokenError ||
      error instanceof TypeError
    ) {
      message = `${error.message}${hint(error, config)}`;
    } else {
      message = `Unexpected error: ${error instanceof Error ? error.message : String(error)}`;
    }
    fail(maskSecrets(message, secrets));
    if (subjectToken !== undefined) {
      fail(identify(await loadJwt(), label, subjectToken));
    }
    if (config.debug && error instanceof Error && error.stack) {
      for (const line of maskSecrets(error.stack, secrets).split("\n")) say(`debug: ${line}`);
    }
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
