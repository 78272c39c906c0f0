#!/usr/bin/env -S deno run --no-prompt --allow-net --allow-env
/**
 * The `token-exchange` command: exchanges a CI job's OIDC token for a federated access token with
 * OAuth 2.0 Token Exchange (RFC 8693) and prints it. Every option is a flag that falls back to its
 * `BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*` variable. The subject token comes from
 * `buildkite-agent oidc request-token`, or with `--subject-token-source github-actions|gitlab`
 * from those CI systems, or from `--subject-token-env` / `--subject-token-file`. `--format
 * kubernetes` prints it as a Kubernetes ExecCredential, for a kubeconfig's exec user. Exit status: 0
 * success, 2 usage or configuration error (found before anything is run or sent), 1 any other
 * failure.
 *
 * It runs from JSR or any URL as well as from a checkout: it reads no file of its own at run time.
 * Give it the narrowest permissions: network access to the endpoint's host only, the environment,
 * and in a Buildkite job `buildkite-agent` as the only program it may run. Elsewhere leave
 * `--allow-run` out: there is no agent to run, and Deno would note on stderr that it cannot find
 * one. (The first line of this file, for `./cli.ts`, grants no `--allow-run`.)
 *
 * ```sh
 * deno run --no-prompt --allow-net=sts.example.com --allow-run=buildkite-agent --allow-env \
 *   jsr:@equinixmetal/token-exchange/cli --token-endpoint https://sts.example.com/token
 * deno run --no-prompt --allow-net=sts.example.com --allow-env \
 *   jsr:@equinixmetal/token-exchange/cli --token-endpoint https://sts.example.com/token \
 *   --subject-token-env MY_OIDC_TOKEN
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

import { type CliConfig, parseCommandLine } from "./_cli_config.ts";
import {
  exchangeFor,
  explainToken,
  failureLines,
  openSession,
  type Session,
  sessionOptions,
} from "./_cli_exchange.ts";
import { type Env, helpText, UsageError } from "./_cli_flags.ts";
import { InvalidResponseError } from "./_errors.ts";
import { oneLine } from "./_redact.ts";
import { type TokenExchangeResponse, tokenProblem } from "./_response.ts";
import { getSubjectToken } from "./_subject_token.ts";
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

/** The JSON output, with DEL, C1 and the Unicode line separators escaped as well as C0. */
function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

// Modules only some runs need are loaded when needed: each module costs start-up time.
const loadExecCredential = () => import("./_exec_credential.ts");

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

/** What the command prints on success, in the configured format. */
async function output(config: CliConfig, result: TokenExchangeResponse): Promise<string> {
  switch (config.format) {
    case "json":
      if (result.refreshToken !== undefined) {
        const problem = tokenProblem(result.refreshToken);
        if (problem !== undefined) {
          throw new InvalidResponseError(
            `Token endpoint answered HTTP 200 with a "refresh_token" that ${problem}`,
            { status: 200 },
          );
        }
      }
      return toJson(result);
    case "kubernetes":
      return (await loadExecCredential()).execCredential(
        config.execCredentialApiVersion!,
        result.accessToken,
        result.expiresIn,
        Date.now(),
      );
    case "token":
      return result.accessToken;
  }
}

/**
 * Runs the command: reads the options, gets the subject token, exchanges it, and prints the
 * issued token (or the response fields as JSON, or a Kubernetes ExecCredential) on stdout, or one
 * error line on stderr.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 *
 * @param args The command-line arguments, without the program name.
 * @param env Reads an environment variable: the plugin's options, the client secret, and the
 * subject token's variable (`--subject-token-env`, GitLab's, GitHub Actions').
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
  // The plugin's hooks run the engine this way (see docs/cli.md); it is not for other callers.
  if (args[0] === "--plugin") return await (await import("./_plugin.ts")).runPlugin(args.slice(1));
  let command;
  try {
    command = parseCommandLine(args, env);
  } catch (error) {
    if (error instanceof UsageError) {
      say(error.message);
    } else if (error instanceof Deno.errors.NotCapable) {
      say(`Cannot read the environment (${error.message}): run with --allow-env`);
    } else {
      throw error;
    }
    return 2;
  }
  switch (command.kind) {
    case "help":
      console.log(helpText(VERSION));
      return 0;
    case "version":
      console.log(`token-exchange ${VERSION}`);
      return 0;
    case "run":
      return await run(command.config, env);
  }
}

/** One exchange: the subject token, discovery if asked for, the exchange, and the output. */
async function run(config: CliConfig, env: Env): Promise<number> {
  let session: Session;
  try {
    session = openSession(
      sessionOptions(config),
      config.tokenEndpoint ?? config.issuer!,
      config.debug ? (line) => say(`debug: ${line}`) : undefined,
    );
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    say(error.message);
    return 2;
  }
  using _ = session;
  let subjectToken: string | undefined;
  try {
    subjectToken = await getSubjectToken(config.source, session.http, env);
    await explainToken(session, config.source, subjectToken, [config.clientSecret]);
    const result = await exchangeFor(config, subjectToken, session);
    console.log(await output(config, result));
    return 0;
  } catch (error) {
    const lines = await failureLines(error, config, config.source, {
      subjectToken,
      clientSecret: config.clientSecret,
    }, session.debug);
    for (const line of lines) say(line);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
