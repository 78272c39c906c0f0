// Where the CLI gets the subject token: buildkite-agent, GitHub Actions, GitLab, a variable, a file
// or stdin. Unlike the library, this module uses Deno APIs.

import type { SubjectTokenSource } from "./_cli_options.ts";
import { type HttpOptions, parseSecureUrl, sendWithRetries } from "./_http.ts";
import { summarise } from "./_redact.ts";
import { USER_AGENT } from "./_constants.ts";

/** The subject token could not be had: exit status 1. */
export class SubjectTokenError extends Error {
  /** The name of the error class. */
  override name = "SubjectTokenError";
}

/** How long buildkite-agent may take, including its own retries. */
const AGENT_TIMEOUT_MS = 60_000;

function nonEmpty(token: string | undefined, what: string, fix: string): string {
  const trimmed = token?.trim() ?? "";
  if (trimmed === "") throw new SubjectTokenError(`${what} is empty: ${fix}`);
  return trimmed;
}

/** The arguments for `buildkite-agent oidc request-token`. */
export function buildkiteAgentArgs(
  source: Extract<SubjectTokenSource, { kind: "buildkite" }>,
): string[] {
  const args = ["oidc", "request-token", "--audience", source.audience];
  if (source.lifetime !== undefined) args.push("--lifetime", String(source.lifetime));
  for (const claim of source.claims) args.push("--claim", claim);
  return args;
}

/** The line the hooks put on stdin, after the agent's stderr, when the agent failed. */
const AGENT_FAILED = /(?:^|\n)!buildkite-agent-failed (\d+)\n/;

/**
 * The token `buildkite-agent oidc request-token` printed, as the hooks hand it over on stdin: the
 * token, or when the agent failed a line `!buildkite-agent-failed STATUS` and its error output.
 */
export function readAgentOutput(
  text: string,
  source: Extract<SubjectTokenSource, { kind: "buildkite" }>,
): string {
  const failed = AGENT_FAILED.exec(text);
  if (failed === null) {
    return nonEmpty(
      text,
      "The token from buildkite-agent oidc request-token",
      "check the agent can reach Buildkite",
    );
  }
  const status = Number(failed[1]);
  if (status === 127) {
    throw new SubjectTokenError("buildkite-agent is not on PATH: run inside a Buildkite job");
  }
  const stderr = text.slice(failed.index + failed[0].length);
  throw agentFailure(`exit status ${status}`, stderr, text.slice(0, failed.index), source);
}

function agentFailure(
  status: string,
  stderr: string,
  stdout: string,
  source: Extract<SubjectTokenSource, { kind: "buildkite" }>,
): SubjectTokenError {
  const lines = stderr.trim().split("\n").filter((l) => l.trim());
  const detail = lines.length > 0
    ? summarise(lines.slice(-2).join(" "), [stdout.trim()], 300)
    : "no error output";
  const hint = source.claims.length > 0
    ? ` (${
      source.stdin ? "claims" : "--claim"
    } needs buildkite-agent 3.44 or later; check the claim names)`
    : "";
  return new SubjectTokenError(
    `buildkite-agent oidc request-token failed (${status}): ${detail}${hint}`,
  );
}

async function fromBuildkiteAgent(
  source: Extract<SubjectTokenSource, { kind: "buildkite" }>,
  debug: ((line: string) => void) | undefined,
): Promise<string> {
  if (source.stdin) return readAgentOutput(await readStdin(), source);
  const args = buildkiteAgentArgs(source);
  debug?.(`Requesting the subject token: buildkite-agent ${args.join(" ")}`);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("buildkite-agent", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(AGENT_TIMEOUT_MS),
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SubjectTokenError(
        "buildkite-agent is not on PATH: run inside a Buildkite job, or pass the token with --subject-token-env or --subject-token-file",
      );
    }
    if (error instanceof Deno.errors.NotCapable) {
      throw new SubjectTokenError(
        "Deno may not run buildkite-agent: add --allow-run=buildkite-agent, or pass the token with --subject-token-env or --subject-token-file",
      );
    }
    throw new SubjectTokenError(
      `Cannot run buildkite-agent: ${
        summarise(error instanceof Error ? error.message : String(error))
      }`,
    );
  }
  const stdout = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    const status = output.signal ? `signal ${output.signal}` : `exit status ${output.code}`;
    throw agentFailure(status, new TextDecoder().decode(output.stderr), stdout, source);
  }
  return nonEmpty(
    stdout,
    "The token from buildkite-agent oidc request-token",
    "check the agent can reach Buildkite",
  );
}

async function fromGitHubActions(
  audience: string | undefined,
  http: HttpOptions,
): Promise<string> {
  const requestUrl = Deno.env.get("ACTIONS_ID_TOKEN_REQUEST_URL");
  const requestToken = Deno.env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
  if (!requestUrl || !requestToken) {
    throw new SubjectTokenError(
      "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: give the workflow job `permissions: id-token: write`",
    );
  }
  let url: URL;
  try {
    url = parseSecureUrl(requestUrl, "ACTIONS_ID_TOKEN_REQUEST_URL");
  } catch (error) {
    throw new SubjectTokenError((error as Error).message);
  }
  if (audience !== undefined) url.searchParams.set("audience", audience);
  http.onDebug?.(
    `Requesting the subject token from GitHub Actions${
      audience ? ` for audience "${audience}"` : ""
    }`,
  );
  const { response } = await sendWithRetries(
    url,
    {
      method: "GET",
      headers: {
        authorization: `Bearer ${requestToken}`,
        accept: "application/json",
        "user-agent": USER_AGENT,
      },
    },
    "GitHub Actions token service",
    http,
  );
  const text = new TextDecoder().decode(response.body);
  if (response.status !== 200) {
    throw new SubjectTokenError(
      `GitHub Actions token service answered HTTP ${response.status}: "${
        summarise(text, [requestToken])
      }"`,
    );
  }
  let value: unknown;
  try {
    value = (JSON.parse(text) as { value?: unknown }).value;
  } catch {
    value = undefined;
  }
  if (typeof value !== "string") {
    throw new SubjectTokenError('GitHub Actions token service answered without a string "value"');
  }
  return nonEmpty(value, "The GitHub Actions ID token", "check the workflow's id-token permission");
}

async function readStdin(): Promise<string> {
  return await new Response(Deno.stdin.readable).text();
}

/**
 * Gets the subject token from its source.
 *
 * @throws {SubjectTokenError} When it cannot be had.
 */
export async function getSubjectToken(
  source: SubjectTokenSource,
  http: HttpOptions,
): Promise<string> {
  switch (source.kind) {
    case "buildkite":
      return await fromBuildkiteAgent(source, http.onDebug);
    case "github-actions":
      return await fromGitHubActions(source.audience, http);
    case "gitlab": {
      const value = Deno.env.get(source.variable);
      if (value === undefined || value.trim() === "") {
        throw new SubjectTokenError(
          `GitLab ID token variable "${source.variable}" is not set: add \`id_tokens: { ${source.variable}: { aud: "<audience>" } }\` to the job in .gitlab-ci.yml`,
        );
      }
      return value.trim();
    }
    case "env":
      return nonEmpty(
        Deno.env.get(source.variable),
        `Environment variable "${source.variable}" (--subject-token-env)`,
        "set it to the subject token",
      );
    case "file": {
      if (source.path === "-") {
        return nonEmpty(await readStdin(), "The subject token on stdin", "pipe the token in");
      }
      let text: string;
      try {
        text = await Deno.readTextFile(source.path);
      } catch (error) {
        const reason = error instanceof Deno.errors.NotFound
          ? "no such file"
          : summarise(error instanceof Error ? error.message : String(error));
        throw new SubjectTokenError(
          `Cannot read the subject token file "${source.path}" (--subject-token-file): ${reason}`,
        );
      }
      return nonEmpty(text, `The subject token file "${source.path}"`, "write the token to it");
    }
  }
}
