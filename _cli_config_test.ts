import assert from "node:assert/strict";
import {
  type CliCommand,
  type CliConfig,
  exchangeParameters,
  execCredentialApiVersion,
  parameterLabel,
  parseCommandLine,
} from "./_cli_config.ts";
import { UsageError } from "./_cli_flags.ts";
import { buildTokenExchangeRequest } from "./_request.ts";

const P = "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_";
const ENDPOINT = "https://sts.example.com/token";

/** The configuration of a run, with URLs as text so that deepEqual compares them. */
function configOf(args: string[], env: Record<string, string> = {}) {
  const command = parseCommandLine(args, (name) => env[name]);
  assert.equal(command.kind, "run");
  const config = (command as Extract<CliCommand, { kind: "run" }>).config;
  return { ...config, tokenEndpoint: config.tokenEndpoint?.href, issuer: config.issuer?.href };
}

function usageError(args: string[], env: Record<string, string> = {}): string {
  try {
    parseCommandLine(args, (name) => env[name]);
  } catch (error) {
    assert.ok(error instanceof UsageError, String(error));
    return error.message;
  }
  assert.fail(`no usage error for ${JSON.stringify(args)} ${JSON.stringify(env)}`);
}

/** The form a configuration sends, with a subject token. */
function formOf(config: CliConfig | ReturnType<typeof configOf>) {
  return [
    ...buildTokenExchangeRequest({
      ...exchangeParameters(config as CliConfig),
      tokenEndpoint: config.tokenEndpoint ?? ENDPOINT,
      subjectToken: "subject",
    }).body,
  ];
}

Deno.test("parseCommandLine() answers --help and --version before reading any variable", () => {
  const noEnv = (name: string): string => assert.fail(`read ${name}`);
  assert.deepEqual(parseCommandLine(["--help"], noEnv), { kind: "help" });
  assert.deepEqual(parseCommandLine(["-h", "--token-endpoint", "x"], noEnv), { kind: "help" });
  assert.deepEqual(parseCommandLine(["-V"], noEnv), { kind: "version" });
  assert.deepEqual(parseCommandLine(["--version", "--help"], noEnv), { kind: "help" });
  assert.throws(
    () => parseCommandLine(["--help=false"], noEnv),
    new UsageError("Flag --help takes no value: write --help alone"),
  );
});

Deno.test("parseCommandLine() reads every option from BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables", () => {
  const config = configOf([], {
    [`${P}TOKEN_ENDPOINT`]: ENDPOINT,
    [`${P}AUDIENCE`]: "sts.example.com",
    [`${P}LIFETIME`]: "300",
    [`${P}CLAIMS_0`]: "organization_id",
    [`${P}CLAIMS_1`]: "pipeline_id",
    [`${P}SUBJECT_TOKEN_TYPE`]: "urn:ietf:params:oauth:token-type:id_token",
    [`${P}TARGET_AUDIENCE_0`]: "first",
    [`${P}TARGET_AUDIENCE_1`]: "second",
    [`${P}RESOURCE`]: "https://api.example.com",
    [`${P}SCOPE_0`]: "read",
    [`${P}SCOPE_1`]: "write",
    [`${P}REQUESTED_TOKEN_TYPE`]: "urn:ietf:params:oauth:token-type:access_token",
    [`${P}EXTRA_PARAMS_0`]: "connector_id=buildkite",
    [`${P}EXTRA_PARAMS_1`]: "note=a=b",
    [`${P}CLIENT_ID`]: "ci",
    [`${P}CLIENT_SECRET_ENV`]: "STS_SECRET",
    [`${P}CLIENT_AUTH`]: "post",
    [`${P}TIMEOUT`]: "2.5",
    [`${P}RETRIES`]: "0",
    [`${P}CA_FILE`]: "/etc/ssl/internal-ca.pem",
    [`${P}DEBUG`]: "false",
    STS_SECRET: "s3cret",
  });
  assert.deepEqual(config, {
    debug: false,
    format: "token",
    tokenEndpoint: ENDPOINT,
    issuer: undefined,
    source: {
      kind: "buildkite",
      audience: "sts.example.com",
      lifetime: 300,
      claims: ["organization_id", "pipeline_id"],
      claimsFrom: "claims",
    },
    subjectTokenType: "urn:ietf:params:oauth:token-type:id_token",
    targetAudience: ["first", "second"],
    resource: ["https://api.example.com"],
    scope: ["read", "write"],
    requestedTokenType: "urn:ietf:params:oauth:token-type:access_token",
    extraParameters: { connector_id: ["buildkite"], note: ["a=b"] },
    clientId: "ci",
    clientSecret: "s3cret",
    clientSecretEnv: "STS_SECRET",
    clientAuth: "post",
    timeout: 2500,
    retries: 0,
    caFile: "/etc/ssl/internal-ca.pem",
    grantType: "token-exchange",
    names: {
      fromVariable: [
        "debug",
        "client-auth",
        "token-endpoint",
        "timeout",
        "retries",
        "audience",
        "lifetime",
        "claim",
        "client-id",
        "client-secret-env",
        "extra-param",
        "subject-token-type",
        "target-audience",
        "resource",
        "scope",
        "requested-token-type",
        "ca-file",
      ],
      fromFlag: [],
      plugin: true,
    },
  });
  assert.deepEqual(formOf(config), [
    ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
    ["subject_token", "subject"],
    ["subject_token_type", "urn:ietf:params:oauth:token-type:id_token"],
    ["audience", "first"],
    ["audience", "second"],
    ["resource", "https://api.example.com"],
    ["scope", "read write"],
    ["requested_token_type", "urn:ietf:params:oauth:token-type:access_token"],
    ["connector_id", "buildkite"],
    ["note", "a=b"],
    ["client_id", "ci"],
    ["client_secret", "s3cret"],
  ]);
});

Deno.test("parseCommandLine() lets a flag win over its variable", () => {
  const config = configOf(
    [
      "--token-endpoint",
      ENDPOINT,
      "--audience",
      "from-flag",
      "--scope",
      "flag-scope",
      "--extra-param",
      "connector_id=flag",
    ],
    {
      [`${P}TOKEN_ENDPOINT`]: "https://ignored.example.com/token",
      [`${P}AUDIENCE`]: "from-env",
      [`${P}BUILDKITE_AUDIENCE`]: "also-from-env",
      [`${P}SCOPE`]: "env-scope",
      [`${P}EXTRA_PARAMS_0`]: "ignored=because-a-flag-wins",
    },
  );
  assert.deepEqual(
    [config.tokenEndpoint, config.source, config.scope, config.extraParameters],
    [
      ENDPOINT,
      {
        kind: "buildkite",
        audience: "from-flag",
        lifetime: undefined,
        claims: [],
        claimsFrom: "claims",
      },
      ["flag-scope"],
      { connector_id: ["flag"] },
    ],
  );
  assert.equal(config.names.plugin, false);
});

Deno.test("parseCommandLine() takes version 0.x's buildkite-audience, and both spellings when they agree", () => {
  const audience = (env: Record<string, string>) => {
    const { source } = configOf([], { [`${P}TOKEN_ENDPOINT`]: ENDPOINT, ...env });
    return source.kind === "buildkite" ? source.audience : undefined;
  };
  assert.equal(audience({}), "buildkite");
  assert.equal(audience({ [`${P}BUILDKITE_AUDIENCE`]: "identity-api" }), "identity-api");
  assert.equal(audience({ [`${P}AUDIENCE`]: "x", [`${P}BUILDKITE_AUDIENCE`]: "x" }), "x");
  assert.equal(
    usageError([], {
      [`${P}TOKEN_ENDPOINT`]: ENDPOINT,
      [`${P}AUDIENCE`]: "a",
      [`${P}BUILDKITE_AUDIENCE`]: "b",
    }),
    'audience is "a" but buildkite-audience is "b": set only one of them',
  );
});

Deno.test("parseCommandLine() keeps a secret with : % @ / and a space intact for basic and post", () => {
  const secret = "pa:ss%2F@wo/rd +x";
  for (const auth of ["basic", "post"]) {
    const config = configOf(
      ["--token-endpoint", ENDPOINT, "--client-id", "ci:bot@x", "--client-secret-env", "S"],
      { S: secret, [`${P}CLIENT_AUTH`]: auth },
    );
    const request = buildTokenExchangeRequest({
      ...exchangeParameters(config as CliConfig),
      tokenEndpoint: ENDPOINT,
      subjectToken: "subject",
    });
    let credentials: string[];
    if (auth === "basic") {
      const decoded = atob(request.headers.get("authorization")!.replace(/^Basic /, ""));
      // RFC 6749 §2.3.1: each part is form-encoded, so the only raw ":" is the separator.
      assert.equal(decoded.split(":").length, 2);
      credentials = decoded.split(":").map((part) => new URLSearchParams(`v=${part}`).get("v")!);
    } else {
      credentials = [request.body.get("client_id")!, request.body.get("client_secret")!];
    }
    assert.deepEqual(credentials, ["ci:bot@x", secret], auth);
  }
});

Deno.test("parseCommandLine() keeps the token endpoint's query (RFC 6749 §3.2), where Dex up to v2.45 reads connector_id", () => {
  const config = configOf(["--token-endpoint", `${ENDPOINT}?connector_id=buildkite`]);
  assert.equal(config.tokenEndpoint, `${ENDPOINT}?connector_id=buildkite`);
});

const url = "http://127.0.0.1:8080/token";

/** Each usage or configuration error: its name, the flags, the variables and the message. */
const USAGE_ERRORS: [string, string[], Record<string, string>, string][] = [
  [
    "no endpoint",
    [],
    {},
    "No token endpoint: set --token-endpoint (or BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT), or --issuer to discover it",
  ],
  [
    "a relative URL",
    ["--token-endpoint", "sts.example.com/token"],
    {},
    'Token endpoint (--token-endpoint) "sts.example.com/token" is not an absolute URL: use a URL such as "https://sts.example.com/token"',
  ],
  [
    "plain http to a remote host",
    ["--token-endpoint", "http://sts.example.com/token"],
    {},
    'Token endpoint (--token-endpoint) "http://sts.example.com/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
  ],
  [
    "a plain-http endpoint from the plugin",
    [],
    { [`${P}TOKEN_ENDPOINT`]: "http://10.0.0.1/token" },
    'Token endpoint (token-endpoint) "http://10.0.0.1/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
  ],
  [
    "an issuer with a query",
    ["--issuer", "https://issuer.example.com/?tenant=a"],
    {},
    'Issuer (--issuer) "https://issuer.example.com/?tenant=a" must not have a query ("?tenant=a")',
  ],
  [
    "both endpoint and issuer",
    ["--token-endpoint", url],
    { [`${P}ISSUER`]: "https://issuer.example.com" },
    "Both a token endpoint (--token-endpoint) and an issuer (issuer) are set: set only one",
  ],
  [
    "a zero timeout",
    ["--token-endpoint", url, "--timeout", "0"],
    {},
    '--timeout is "0": use a number of seconds above 0 (such as 10 or 2.5), at most 3600',
  ],
  [
    "a word for retries",
    ["--token-endpoint", url],
    { [`${P}RETRIES`]: "many" },
    'retries is "many": use a whole number from 0 to 100',
  ],
  [
    "a negative lifetime",
    ["--token-endpoint", url, "--lifetime", "-5"],
    {},
    '--lifetime is "-5": use a whole number of seconds above 0',
  ],
  [
    "an unknown client auth",
    ["--token-endpoint", url, "--client-auth", "jwt"],
    {},
    '--client-auth is "jwt": use basic, post or assertion',
  ],
  [
    "an unknown format",
    ["--token-endpoint", url, "--format", "yaml"],
    {},
    '--format is "yaml": use token, json or kubernetes',
  ],
  [
    "a non-boolean debug",
    ["--token-endpoint", url],
    { [`${P}DEBUG`]: "yes" },
    'debug is "yes": use true or false',
  ],
  [
    "a --debug that is neither true nor false",
    ["--token-endpoint", url, "--debug=maybe"],
    {},
    '--debug is "maybe": use true or false',
  ],
  [
    "an unset client secret variable",
    ["--token-endpoint", url, "--client-id", "ci", "--client-secret-env", "NOPE"],
    {},
    'Client secret variable "NOPE" (--client-secret-env) is unset or empty: set it, for example from your secrets manager',
  ],
  [
    "an unset client secret variable from the plugin",
    ["--token-endpoint", url],
    { [`${P}CLIENT_ID`]: "ci", [`${P}CLIENT_SECRET_ENV`]: "MISSING" },
    'Client secret variable "MISSING" (client-secret-env) is unset or empty: set it, for example from your secrets manager',
  ],
  [
    "a bad client secret variable name",
    ["--token-endpoint", url, "--client-secret-env", "my-secret"],
    {},
    "--client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself",
  ],
  [
    "the agent's own access token as the client secret",
    [
      "--token-endpoint",
      url,
      "--client-id",
      "ci",
      "--client-secret-env",
      "BUILDKITE_AGENT_ACCESS_TOKEN",
    ],
    { BUILDKITE_AGENT_ACCESS_TOKEN: "bkaj_agent-token" },
    "--client-secret-env names a variable of the Buildkite agent's (BUILDKITE_…), which is never sent to a token endpoint: hold the client secret in a variable of your own, such as STS_CLIENT_SECRET",
  ],
  [
    "another of the agent's variables as the client secret, from the plugin",
    [],
    {
      [`${P}TOKEN_ENDPOINT`]: url,
      [`${P}CLIENT_ID`]: "ci",
      [`${P}CLIENT_SECRET_ENV`]: "BUILDKITE_AGENT_JOB_API_TOKEN",
    },
    "client-secret-env names a variable of the Buildkite agent's (BUILDKITE_…), which is never sent to a token endpoint: hold the client secret in a variable of your own, such as STS_CLIENT_SECRET",
  ],
  [
    "a client secret without a client ID",
    ["--token-endpoint", url, "--client-secret-env", "S"],
    { S: "x" },
    "A client secret (--client-secret-env) needs a client ID: set --client-id",
  ],
  [
    "a client secret without a client ID, from the plugin",
    [],
    { [`${P}TOKEN_ENDPOINT`]: url, [`${P}CLIENT_SECRET_ENV`]: "S", S: "x" },
    "A client secret (client-secret-env) needs a client ID: set client-id",
  ],
  [
    "an empty client ID",
    ["--token-endpoint", url, "--client-id="],
    {},
    'Cannot use --client-id "": it must be a non-empty string',
  ],
  [
    "an extra parameter without a value",
    ["--token-endpoint", url, "--extra-param", "connector_id"],
    {},
    '--extra-param has "connector_id", not NAME=VALUE: use a parameter such as connector_id=buildkite',
  ],
  [
    "an extra parameter from the plugin without a value",
    ["--token-endpoint", url],
    { [`${P}EXTRA_PARAMS`]: "connector_id" },
    'extra-params has "connector_id", not NAME=VALUE: use a parameter such as connector_id=buildkite',
  ],
  [
    "an extra parameter that replaces a standard one",
    ["--token-endpoint", url, "--extra-param", "scope=admin"],
    {},
    'Cannot send "scope" as an extra parameter (--extra-param): this client sets it from its own option',
  ],
  [
    "an extra parameter from the plugin that replaces a standard one",
    [],
    { [`${P}TOKEN_ENDPOINT`]: url, [`${P}EXTRA_PARAMS_0`]: "client_secret=x" },
    'Cannot send "client_secret" as an extra parameter (extra-params): this client sets it from its own option',
  ],
  [
    "a relative resource",
    ["--token-endpoint", url, "--resource", "api"],
    {},
    'Cannot use --resource "api": it must be an absolute URI without a fragment (RFC 8693 §2.1), such as "https://api.example.com"',
  ],
  [
    "a resource with a fragment, from the plugin",
    [],
    { [`${P}TOKEN_ENDPOINT`]: url, [`${P}RESOURCE_0`]: "https://api.example.com/#x" },
    'Cannot use resource "https://api.example.com/#x": it must be an absolute URI without a fragment (RFC 8693 §2.1), such as "https://api.example.com"',
  ],
  [
    "an empty target audience",
    ["--token-endpoint", url, "--target-audience", " "],
    {},
    'Cannot use --target-audience " ": it must be a non-empty string',
  ],
  [
    "an empty subject token type",
    ["--token-endpoint", url, "--subject-token-type", ""],
    {},
    'Cannot use --subject-token-type "": it must be a non-empty string',
  ],
  [
    "two subject token sources",
    ["--token-endpoint", url, "--subject-token-env", "A", "--subject-token-file", "f"],
    {},
    "Both --subject-token-env and --subject-token-file are set: use one",
  ],
  [
    "an unknown subject token source",
    ["--token-endpoint", url, "--subject-token-source", "jenkins"],
    {},
    '--subject-token-source is "jenkins": use buildkite, github-actions or gitlab',
  ],
  [
    "gitlab without a variable",
    ["--token-endpoint", url, "--subject-token-source", "gitlab"],
    {},
    "--subject-token-source gitlab needs --subject-token-env NAME, the variable your id_tokens: block defines",
  ],
  [
    "github-actions with a token file",
    [
      "--token-endpoint",
      url,
      "--subject-token-source",
      "github-actions",
      "--subject-token-file",
      "f",
    ],
    {},
    "--subject-token-source github-actions gets its own token: drop --subject-token-file",
  ],
  [
    "an empty token file",
    ["--token-endpoint", url, "--subject-token-file="],
    {},
    "--subject-token-file is empty: give a path, or - for stdin",
  ],
  [
    "--lifetime with a token from a variable",
    ["--token-endpoint", url, "--subject-token-env", "T", "--lifetime", "60"],
    { T: "x" },
    "--lifetime applies only to a token from buildkite-agent, not to --subject-token-env",
  ],
  [
    "--audience with GitLab's token",
    [
      "--token-endpoint",
      url,
      "--subject-token-source",
      "gitlab",
      "--subject-token-env",
      "T",
      "--audience",
      "x",
    ],
    {},
    "--audience applies only to a token from buildkite-agent, not to --subject-token-source gitlab",
  ],
  [
    "--claim with a token file",
    ["--token-endpoint", url, "--subject-token-file", "f", "--claim", "pipeline_id"],
    {},
    "--claim applies only to a token from buildkite-agent, not to --subject-token-file",
  ],
];

Deno.test("parseCommandLine() refuses every usage or configuration error with one line that names the option as it was set", () => {
  for (const [name, args, env, message] of USAGE_ERRORS) {
    assert.equal(usageError(args, env), message, name);
  }
});

Deno.test("parseCommandLine() refuses a token endpoint or issuer that would not make one clean --allow-net host, naming the option", () => {
  const cases: [string, string, string][] = [
    [
      "a comma in the host",
      "https://sts.example.com,evil.example.com/token",
      '"https://sts.example.com,evil.example.com/token" has a comma in its host "sts.example.com,evil.example.com": a host is one DNS name or IP address',
    ],
    [
      "a space",
      "https://sts.example.com /token",
      '"https://sts.example.com /token" has a space, line break or control character in it: write the URL without them',
    ],
    [
      "a line break",
      "https://sts.example.com\n.evil.example.com/token",
      '"https://sts.example.com .evil.example.com/token" has a space, line break or control character in it: write the URL without them',
    ],
    [
      "port 0",
      "https://sts.example.com:0/token",
      '"https://sts.example.com:0/token" has port "0": use a port from 1 to 65535',
    ],
    [
      "port 65536",
      "https://sts.example.com:65536/token",
      '"https://sts.example.com:65536/token" has port "65536": use a port from 1 to 65535',
    ],
    [
      "an empty port",
      "https://sts.example.com:/token",
      '"https://sts.example.com:/token" has port "": use a port from 1 to 65535',
    ],
    [
      "a host that is not a DNS name",
      "https://sts_example!.com/token",
      '"https://sts_example!.com/token" has an invalid host "sts_example!.com": use a DNS name (letters, digits and hyphens; xn-- for an international name) or an IP address',
    ],
    [
      "an international name not in xn-- form",
      "https://bücher.example/token",
      '"https://bücher.example/token" has an invalid host "bücher.example": use a DNS name (letters, digits and hyphens; xn-- for an international name) or an IP address',
    ],
    [
      "a shorthand IPv4 address",
      "http://127.1:8080/token",
      '"http://127.1:8080/token" has host "127.1", which means "127.0.0.1": write "127.0.0.1" instead',
    ],
    [
      "no slashes after the scheme",
      "https:sts.example.com/token",
      '"https:sts.example.com/token" must start with "https://"',
    ],
  ];
  const options: [(value: string) => [string[], Record<string, string>], string][] = [
    [(value) => [["--token-endpoint", value], {}], "Token endpoint (--token-endpoint)"],
    [(value) => [[], { [`${P}TOKEN_ENDPOINT`]: value }], "Token endpoint (token-endpoint)"],
    [(value) => [["--issuer", value], {}], "Issuer (--issuer)"],
    [(value) => [[], { [`${P}ISSUER`]: value }], "Issuer (issuer)"],
  ];
  for (const [name, value, message] of cases) {
    for (const [given, option] of options) {
      assert.equal(usageError(...given(value)), `${option} ${message}`, `${name}, ${option}`);
    }
  }
  // A user name and password: the advice names the client options as the run names them.
  for (
    const value of [
      "https://user:pw@sts.example.com/token",
      "https://evil.example.com\\@sts.example.com/token",
    ]
  ) {
    assert.equal(
      usageError(["--token-endpoint", value]),
      "Token endpoint (--token-endpoint) must not contain a user name or password (user@host): use --client-id and --client-secret-env instead",
    );
    assert.equal(
      usageError([], { [`${P}ISSUER`]: value }),
      "Issuer (issuer) must not contain a user name or password (user@host): use client-id and client-secret-env instead",
    );
  }
  // A DNS name, an IPv6 literal and an explicit port are fine.
  for (
    const value of [
      "https://sts.example.com:8443/token",
      "http://[::1]:1/token",
      "http://localhost/t",
    ]
  ) {
    assert.equal(configOf(["--token-endpoint", value]).tokenEndpoint, new URL(value).href);
  }
});

Deno.test("parseCommandLine() never quotes a client-secret-env or subject-token-env value that may be the secret itself", () => {
  const SECRET_LIKE = "s3cr3t.Value/with+base64==";
  const NAME_LIKE = "AbCdEf0123456789xyzSecret";
  const TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
  const cases: [string[], Record<string, string>, string][] = [
    [
      ["--client-id", "ci", "--client-secret-env", SECRET_LIKE],
      {},
      "--client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself",
    ],
    [
      ["--client-id", "ci"],
      { [`${P}CLIENT_SECRET_ENV`]: SECRET_LIKE },
      "client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself",
    ],
    [
      ["--client-id", "ci"],
      { [`${P}CLIENT_SECRET_ENV`]: NAME_LIKE },
      "Client secret variable (its name not shown) (client-secret-env) is unset or empty: set it, for example from your secrets manager",
    ],
    [
      ["--subject-token-env", TOKEN],
      {},
      "--subject-token-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the token, such as MY_TOKEN, not to the token itself",
    ],
  ];
  for (const [args, env, message] of cases) {
    const shown = usageError(["--token-endpoint", ENDPOINT, ...args], env);
    assert.equal(shown, message);
    for (const secret of [SECRET_LIKE, NAME_LIKE, TOKEN]) assert.ok(!shown.includes(secret));
  }
});

Deno.test("parameterLabel() names the library's parameters as the options the user set", () => {
  const fromFlags = configOf(["--token-endpoint", ENDPOINT, "--target-audience", "a"]);
  const fromPlugin = configOf([], { [`${P}TOKEN_ENDPOINT`]: ENDPOINT });
  const names = ["audience", "extraParameters", "clientSecret", "actorToken"] as const;
  assert.deepEqual(names.map(parameterLabel(fromFlags as CliConfig)), [
    "--target-audience",
    "--extra-param",
    "--client-secret-env",
    "actorToken",
  ]);
  assert.deepEqual(names.map(parameterLabel(fromPlugin as CliConfig)), [
    "target-audience",
    "extra-params",
    "client-secret-env",
    "actorToken",
  ]);
});

Deno.test("parseCommandLine() reads KUBERNETES_EXEC_INFO for --format kubernetes only, refusing one it cannot answer", () => {
  const env = (info?: string) => ({
    [`${P}TOKEN_ENDPOINT`]: ENDPOINT,
    ...(info === undefined ? {} : { KUBERNETES_EXEC_INFO: info }),
  });
  const v1beta1 =
    '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}';
  assert.equal(
    configOf(["--format", "kubernetes"], env(v1beta1)).execCredentialApiVersion,
    "client.authentication.k8s.io/v1beta1",
  );
  assert.equal(
    configOf(["--format=kubernetes"], env()).execCredentialApiVersion,
    "client.authentication.k8s.io/v1",
  );
  assert.equal(configOf([], env("not read")).execCredentialApiVersion, undefined);
  assert.equal(
    usageError(["--format", "kubernetes"], env("{}")),
    "KUBERNETES_EXEC_INFO is not an ExecCredential with an apiVersion: unset it, or let kubectl set it",
  );
  assert.equal(
    usageError(["--format", "yaml"], env()),
    '--format is "yaml": use token, json or kubernetes',
  );
});

Deno.test("execCredentialApiVersion() answers in the version KUBERNETES_EXEC_INFO names, or v1", () => {
  const info = (apiVersion: string) =>
    JSON.stringify({ kind: "ExecCredential", apiVersion, spec: { interactive: false } });
  assert.deepEqual(
    [
      undefined,
      "",
      info("client.authentication.k8s.io/v1"),
      info("client.authentication.k8s.io/v1beta1"),
    ].map(execCredentialApiVersion),
    [
      "client.authentication.k8s.io/v1",
      "client.authentication.k8s.io/v1",
      "client.authentication.k8s.io/v1",
      "client.authentication.k8s.io/v1beta1",
    ],
  );
  assert.throws(
    () => execCredentialApiVersion(info("client.authentication.k8s.io/v1alpha1")),
    new UsageError(
      'KUBERNETES_EXEC_INFO asks for apiVersion "client.authentication.k8s.io/v1alpha1": set the kubeconfig\'s exec apiVersion to client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1',
    ),
  );
  for (const bad of ["{", "[]", '{"kind":"ExecCredential"}', '{"apiVersion":1}']) {
    assert.throws(
      () => execCredentialApiVersion(bad),
      new UsageError(
        "KUBERNETES_EXEC_INFO is not an ExecCredential with an apiVersion: unset it, or let kubectl set it",
      ),
      bad,
    );
  }
});
