import assert from "node:assert/strict";
import { OptionValues, parseFlags } from "./_cli_flags.ts";
import {
  buildkiteAgentArgs,
  chooseSubjectTokenSource,
  getSubjectToken,
  readAgentOutput,
  SubjectTokenError,
  type SubjectTokenSource,
} from "./_subject_token.ts";

const source = { kind: "buildkite" as const, audience: "a", lifetime: undefined, claims: [] };

Deno.test("readAgentOutput() takes the token the hooks' agent call printed", () => {
  assert.equal(
    readAgentOutput("header.claims.signature\n", { ...source, stdin: true }),
    "header.claims.signature",
  );
});

Deno.test("readAgentOutput() reports the agent's failure with its last error lines, never its stdout", () => {
  assert.throws(
    () =>
      readAgentOutput(
        "partial-token\n!buildkite-agent-failed 1\nWARN retrying\nFATAL  403 Forbidden\n",
        { ...source, claims: ["pipeline_id"], claimsFrom: "claims", stdin: true },
      ),
    new SubjectTokenError(
      "buildkite-agent oidc request-token failed (exit status 1): WARN retrying FATAL 403 Forbidden (claims needs buildkite-agent 3.44 or later; check the claim names)",
    ),
  );
});

Deno.test("readAgentOutput() says when there is no agent, and when it printed nothing", () => {
  assert.throws(
    () =>
      readAgentOutput(
        "\n!buildkite-agent-failed 127\nbash: buildkite-agent: command not found\n",
        source,
      ),
    new SubjectTokenError("buildkite-agent is not on PATH: run inside a Buildkite job"),
  );
  assert.throws(
    () => readAgentOutput(" \n", source),
    /The token from buildkite-agent oidc request-token is empty/,
  );
});

const P = "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_";

function choose(args: string[], env: Record<string, string> = {}): SubjectTokenSource {
  return chooseSubjectTokenSource(new OptionValues(parseFlags(args), (name) => env[name]));
}

Deno.test("chooseSubjectTokenSource() picks the agent by default, or what the flags name", () => {
  assert.deepEqual(choose([]), {
    kind: "buildkite",
    audience: "buildkite",
    lifetime: undefined,
    claims: [],
    claimsFrom: "claims",
  });
  assert.deepEqual(choose(["--lifetime", "60", "--claim", "pipeline_id", "--audience", "sts"]), {
    kind: "buildkite",
    audience: "sts",
    lifetime: 60,
    claims: ["pipeline_id"],
    claimsFrom: "--claim",
  });
  assert.deepEqual(
    choose(["--subject-token-source", "buildkite", "--subject-token-file", "-"], {
      [`${P}CLAIMS`]: "organization_id",
    }),
    {
      kind: "buildkite",
      audience: "buildkite",
      lifetime: undefined,
      claims: ["organization_id"],
      claimsFrom: "claims",
      stdin: true,
    },
  );
  assert.deepEqual(choose(["--subject-token-env", "MY_TOKEN"]), {
    kind: "env",
    variable: "MY_TOKEN",
  });
  assert.deepEqual(choose(["--subject-token-file", "-"]), { kind: "file", path: "-" });
  assert.deepEqual(choose(["--subject-token-source", "github-actions", "--audience", "sts"]), {
    kind: "github-actions",
    audience: "sts",
  });
  assert.deepEqual(
    choose(["--subject-token-source", "gitlab", "--subject-token-env", "STS_ID_TOKEN"]),
    { kind: "gitlab", variable: "STS_ID_TOKEN" },
  );
  // The plugin's Buildkite-only variables are not an error with another source: a job that lists
  // the plugin may run the CLI with a token of its own.
  assert.deepEqual(choose(["--subject-token-env", "T"], { [`${P}LIFETIME`]: "60" }), {
    kind: "env",
    variable: "T",
  });
});

/** A fetch that answers every request with `response()`, recording each request. */
function fakeFetch(response: () => Response) {
  const requests: { url: string; authorization: string | null }[] = [];
  const fetch: typeof globalThis.fetch = (input, init) => {
    requests.push({
      url: String(input),
      authorization: new Headers(init?.headers).get("authorization"),
    });
    return Promise.resolve(response());
  };
  return { fetch, requests };
}

const ACTIONS_ENV: Record<string, string> = {
  ACTIONS_ID_TOKEN_REQUEST_URL: "https://token.actions.example.com/_apis/token?api-version=2.0",
  ACTIONS_ID_TOKEN_REQUEST_TOKEN: "actions-request-token-0123456789",
};

Deno.test("getSubjectToken() reads the environment it is given, not the process's", async () => {
  const env: Record<string, string> = { ONLY_HERE: " token-from-env \n", GITLAB_TOKEN: "gl" };
  const read = (name: string) => env[name];
  const http = { retries: 0 };
  assert.equal(
    await getSubjectToken({ kind: "env", variable: "ONLY_HERE" }, http, read),
    "token-from-env",
  );
  assert.equal(
    await getSubjectToken({ kind: "gitlab", variable: "GITLAB_TOKEN" }, http, read),
    "gl",
  );
  const actions = fakeFetch(() => Response.json({ value: "gh-token" }));
  assert.equal(
    await getSubjectToken(
      { kind: "github-actions", audience: "https://sts.example.com" },
      { ...http, fetch: actions.fetch },
      (name) => ACTIONS_ENV[name],
    ),
    "gh-token",
  );
  assert.deepEqual(actions.requests, [{
    url:
      "https://token.actions.example.com/_apis/token?api-version=2.0&audience=https%3A%2F%2Fsts.example.com",
    authorization: "Bearer actions-request-token-0123456789",
  }]);
  const noAudience = fakeFetch(() => Response.json({ value: "gh-token" }));
  await getSubjectToken(
    { kind: "github-actions", audience: undefined },
    { ...http, fetch: noAudience.fetch },
    (name) => ACTIONS_ENV[name],
  );
  assert.equal(
    noAudience.requests[0]!.url,
    "https://token.actions.example.com/_apis/token?api-version=2.0",
  );
});

Deno.test("getSubjectToken() says which variable, file or permission is missing", async () => {
  const none = () => undefined;
  const cases: [SubjectTokenSource, string][] = [
    [
      { kind: "env", variable: "EMPTY" },
      'Environment variable "EMPTY" (--subject-token-env) is empty: set it to the subject token',
    ],
    [
      { kind: "gitlab", variable: "STS_ID_TOKEN" },
      'GitLab ID token variable "STS_ID_TOKEN" is not set: add `id_tokens: { STS_ID_TOKEN: { aud: "<audience>" } }` to the job in .gitlab-ci.yml',
    ],
    [
      { kind: "github-actions", audience: undefined },
      "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: give the workflow job `permissions: id-token: write`",
    ],
    [
      { kind: "file", path: "/nonexistent/token" },
      'Cannot read the subject token file "/nonexistent/token" (--subject-token-file): no such file',
    ],
  ];
  for (const [source, message] of cases) {
    await assert.rejects(getSubjectToken(source, {}, none), new SubjectTokenError(message));
  }
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, "file-token\n");
    assert.equal(await getSubjectToken({ kind: "file", path: file }, {}, none), "file-token");
    await Deno.writeTextFile(file, "\n");
    await assert.rejects(
      getSubjectToken({ kind: "file", path: file }, {}, none),
      new SubjectTokenError(`The subject token file "${file}" is empty: write the token to it`),
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("getSubjectToken() reports the GitHub Actions token service's refusal once, masking the request token", async () => {
  const refusal = fakeFetch(() =>
    Response.json(
      {
        message: `Bearer ${ACTIONS_ENV.ACTIONS_ID_TOKEN_REQUEST_TOKEN} may not request an ID token`,
      },
      { status: 403 },
    )
  );
  await assert.rejects(
    getSubjectToken(
      { kind: "github-actions", audience: undefined },
      { fetch: refusal.fetch },
      (name) => ACTIONS_ENV[name],
    ),
    new SubjectTokenError(
      'GitHub Actions token service answered HTTP 403: "{"message":"Bearer *** may not request an ID token"}"',
    ),
  );
  assert.equal(refusal.requests.length, 1, "a 403 is not retried");
  for (
    const body of [
      JSON.stringify({ count: 1 }),
      JSON.stringify({ value: 42 }),
      JSON.stringify(["value"]),
      "<html>sign in</html>",
    ]
  ) {
    const answer = fakeFetch(() => new Response(body));
    await assert.rejects(
      getSubjectToken(
        { kind: "github-actions", audience: undefined },
        { fetch: answer.fetch },
        (name) => ACTIONS_ENV[name],
      ),
      new SubjectTokenError('GitHub Actions token service answered without a string "value"'),
      body,
    );
  }
  await assert.rejects(
    getSubjectToken(
      { kind: "github-actions", audience: undefined },
      {},
      (name) => name === "ACTIONS_ID_TOKEN_REQUEST_URL" ? "http://token.example.com/" : "t",
    ),
    new SubjectTokenError(
      'ACTIONS_ID_TOKEN_REQUEST_URL "http://token.example.com/" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
    ),
  );
});

Deno.test("buildkiteAgentArgs() passes the audience, lifetime and each claim", () => {
  assert.deepEqual(
    buildkiteAgentArgs({
      kind: "buildkite",
      audience: "sts",
      lifetime: 300,
      claims: ["organization_id", "pipeline_id"],
    }),
    [
      "oidc",
      "request-token",
      "--audience",
      "sts",
      "--lifetime",
      "300",
      "--claim",
      "organization_id",
      "--claim",
      "pipeline_id",
    ],
  );
});
