// One exchange as the command line and the plugin's engine make it: the HTTP client, discovery
// when an issuer is set, the exchange, what --debug says along the way, and what a failure says
// (one line that says what to change, then the subject token's iss, sub and aud). Unlike the
// library, this module uses Deno APIs.

import { type CliConfig, exchangeParameters, labelOf } from "./_cli_config.ts";
import { directLoopbackFetch } from "./_direct_fetch.ts";
import { TokenExchangeError } from "./_errors.ts";
import { exchange } from "./_exchange.ts";
import { type HttpInternals, type HttpOptions, runBudget } from "./_http.ts";
import { UsageError } from "./_cli_flags.ts";
import { maskSecrets, oneLine, summarise } from "./_redact.ts";
import type { TokenExchangeResponse } from "./_response.ts";
import { SubjectTokenError, type SubjectTokenSource } from "./_subject_token.ts";

// Loaded only on a failure or with --debug: each module costs start-up time on the way to a token.
const loadReport = () => import("./_cli_report.ts");

/** How a run sends its requests, and says what it does with --debug. */
export interface Session extends Disposable {
  http: HttpOptions & HttpInternals;
  debug: ((line: string) => void) | undefined;
}

/** How a run's requests are sent: the CLI's and the plugin's `timeout`, `retries` and `ca-file`. */
export interface SessionOptions {
  /** Per-attempt timeout in milliseconds. */
  timeout: number;
  retries: number;
  /** A PEM file of CA certificates to trust beside the system's. */
  caFile: string | undefined;
  /** How messages name `ca-file`: `--ca-file`, or as pipeline.yml spells it. */
  caFileLabel: string;
}

/**
 * Opens the HTTP session of a run. A loopback endpoint (or issuer, or token service) is reached
 * directly, never through a proxy from the environment; other hosts keep HTTPS_PROXY and NO_PROXY.
 * The client for the first host is made now, while the hooks' agent call is still under way.
 *
 * @param options The timeout, retries and CA file.
 * @param first The first URL the run will request.
 * @param debug Where debug lines go, with --debug.
 * @returns The session; dispose of it to close its clients.
 * @throws {UsageError} When the CA file cannot be read or holds no certificate.
 */
export function openSession(
  options: SessionOptions,
  first: URL,
  debug: ((line: string) => void) | undefined,
): Session {
  const caCerts = options.caFile === undefined
    ? undefined
    : [readPemFile(options.caFile, options.caFileLabel)];
  const direct = directLoopbackFetch(caCerts);
  try {
    direct.prepare(first);
  } catch (error) {
    direct[Symbol.dispose]();
    // Deno checks the certificates when it makes the client.
    throw new UsageError(
      `${options.caFileLabel} is "${options.caFile}", whose certificate Deno refused (${
        oneLine((error as Error).message)
      }): name the CA's certificate in PEM form`,
    );
  }
  const budget = runBudget(options.timeout, options.retries);
  return {
    http: {
      timeout: options.timeout,
      retries: options.retries,
      onDebug: debug,
      fetch: direct.fetch,
      platformFetch: true,
      deadline: { at: Date.now() + budget, ms: budget },
    },
    debug,
    [Symbol.dispose]: () => direct[Symbol.dispose](),
  };
}

/** The session options of an exchange's configuration. */
export function sessionOptions(config: CliConfig): SessionOptions {
  return { ...config, caFileLabel: labelOf(config, "ca-file") };
}

/**
 * The text of a PEM file of certificates (`ca-file`, `kubernetes-ca`), checked to hold at least
 * one and nothing but ASCII.
 *
 * @param path The file.
 * @param label The option that names it, for messages.
 * @returns The file's text.
 * @throws {UsageError} When it cannot be read or is not a PEM file of certificates.
 */
export function readPemFile(path: string, label: string): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new UsageError(
      `${label} is "${path}", which cannot be read (${
        oneLine((error as Error).message)
      }): name a readable PEM file that holds the CA's certificate`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (!text.includes("-----BEGIN CERTIFICATE-----") || /[^\x00-\x7f]/.test(text)) {
    throw new UsageError(
      `${label} is "${path}", which holds no PEM certificate (no -----BEGIN CERTIFICATE----- line, or not plain text): name the CA's certificate in PEM form`,
    );
  }
  return text;
}

/**
 * Says what a token is, with --debug: the claims that identify it, never its signature, with the
 * run's secrets masked.
 *
 * @param session The run's session.
 * @param what What the token is: "Issued token", or the subject token's source.
 * @param token The token.
 * @param secrets The run's secrets, masked wherever the claims hold them.
 */
export async function explainToken(
  session: Session,
  what: string | SubjectTokenSource,
  token: string,
  secrets: readonly (string | undefined)[],
): Promise<void> {
  if (!session.debug) return;
  const report = await loadReport();
  session.debug(
    report.explain(
      typeof what === "string" ? what : report.subjectTokenLabel(what),
      token,
      secrets.filter((secret): secret is string => !!secret),
    ),
  );
}

/**
 * Exchanges a subject token as the configuration says: discovers the token endpoint first when an
 * issuer is set.
 *
 * @param config The run's configuration.
 * @param subjectToken The subject token.
 * @param session The run's session.
 * @param onRevocationEndpoint Receives the issuer's revocation endpoint, when discovery finds one.
 * @returns The endpoint's response.
 */
export async function exchangeFor(
  config: CliConfig,
  subjectToken: string,
  session: Session,
  onRevocationEndpoint?: (url: URL) => void,
): Promise<TokenExchangeResponse> {
  const { http, debug } = session;
  let tokenEndpoint = config.tokenEndpoint;
  if (tokenEndpoint === undefined) {
    const { discover } = await import("./_discovery.ts");
    const names = {
      tokenEndpoint: labelOf(config, "token-endpoint"),
      issuer: labelOf(config, "issuer"),
    };
    tokenEndpoint = await discover(config.issuer!, { ...http, names, onRevocationEndpoint });
  }
  const result = await exchange({
    ...exchangeParameters(config),
    ...http,
    tokenEndpoint,
    subjectToken,
  });
  if (debug) {
    await explainToken(session, "Issued token", result.accessToken, [
      subjectToken,
      config.clientSecret,
    ]);
    const shown = (value: string | undefined) =>
      value === undefined ? "(none)" : summarise(value, [subjectToken]);
    debug(
      `Response: issued_token_type=${shown(result.issuedTokenType)} token_type=${
        shown(result.tokenType)
      } expires_in=${result.expiresIn ?? "(none)"} scope=${shown(result.scope)}`,
    );
  }
  return result;
}

/**
 * What a failure says: one line that says what went wrong and what to change, and when a subject
 * token was obtained, its iss, sub and aud (the usual key to a trust-policy mismatch). Secrets are
 * masked; with debug, the stack follows on the debug channel.
 *
 * @param error What was thrown.
 * @param config The run's exchange configuration, for the hint's option names, if it has one.
 * @param source Where the subject token came from.
 * @param secrets The subject token and client secret, if known.
 * @param debug Where the stack goes, with --debug.
 * @returns The lines, without a prefix.
 */
export async function failureLines(
  error: unknown,
  config: CliConfig | undefined,
  source: SubjectTokenSource,
  secrets: { subjectToken?: string; clientSecret?: string },
  debug?: (line: string) => void,
): Promise<string[]> {
  const report = await loadReport();
  const masked = [secrets.subjectToken, secrets.clientSecret].filter((s): s is string => !!s);
  let message: string;
  if (
    error instanceof TokenExchangeError || error instanceof SubjectTokenError ||
    error instanceof TypeError
  ) {
    message = `${error.message}${config === undefined ? "" : report.hint(error, config)}`;
  } else {
    message = `Unexpected error: ${error instanceof Error ? error.message : String(error)}`;
  }
  const lines = [maskSecrets(message, masked)];
  if (secrets.subjectToken !== undefined) {
    lines.push(report.identify(report.subjectTokenLabel(source), secrets.subjectToken));
  }
  if (debug && error instanceof Error && error.stack) {
    for (const line of maskSecrets(error.stack, masked).split("\n")) debug(line);
  }
  return lines;
}
