import assert from "node:assert/strict";
import { parse } from "yaml";
import { UsageError } from "./_cli_flags.ts";
import {
  DEFAULT_ENV_VAR,
  PLUGIN_OPTIONS,
  type PluginConfig,
  readPluginConfig,
  RESERVED_NAMES,
} from "./_plugin_options.ts";
import { GOOGLE_IAM_URL, GOOGLE_STS_URL } from "./_plugin_providers.ts";
import { buildkiteAgentArgs } from "./_subject_token.ts";

const P = "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_";
const ENDPOINT = "https://sts.example.com/token";
const PROVIDER =
  "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/bk/providers/bk";
const ROLE = "arn:aws:iam::123456789012:role/deploy";

/** The variables the agent sets for these options (lists as _0, _1, …), and other variables. */
function variables(
  options: Record<string, string | string[]>,
  more: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = { ...more };
  for (const [name, value] of Object.entries(options)) {
    const key = `${P}${name.toUpperCase().replaceAll("-", "_")}`;
    if (Array.isArray(value)) value.forEach((item, i) => (env[`${key}_${i}`] = item));
    else env[key] = value;
  }
  return env;
}

function read(
  options: Record<string, string | string[]>,
  more: Record<string, string> = {},
): PluginConfig {
  const env = variables(options, { HOME: "/home/agent", ...more });
  return readPluginConfig(Object.keys(env).filter((name) => name.startsWith(P)).sort(), {
    env: (name) => env[name],
    cwd: "/builds/acme/deploy",
  });
}

function mistake(
  options: Record<string, string | string[]>,
  more: Record<string, string> = {},
): string {
  try {
    read(options, more);
  } catch (error) {
    assert.ok(error instanceof UsageError, String(error));
    return error.message;
  }
  assert.fail(`no mistake in ${JSON.stringify(options)}`);
}

Deno.test("readPluginConfig() reads an exchange entry with the defaults", () => {
  const config = read({ "token-endpoint": ENDPOINT });
  assert.deepEqual(
    {
      mode: config.mode,
      hook: config.hook,
      debug: config.debug,
      redact: config.redact,
      refresh: config.refresh,
      envVar: config.envVar,
      tokenFile: config.tokenFile,
      oidcTokenVar: config.oidcTokenVar,
      keepsOidcToken: config.keepsOidcToken,
      endpoint: config.exchange?.tokenEndpoint?.href,
      agent: buildkiteAgentArgs(config.source),
    },
    {
      mode: "exchange",
      hook: "environment",
      debug: false,
      redact: true,
      refresh: false,
      envVar: DEFAULT_ENV_VAR,
      tokenFile: undefined,
      oidcTokenVar: undefined,
      keepsOidcToken: false,
      endpoint: ENDPOINT,
      agent: ["oidc", "request-token", "--audience", "buildkite"],
    },
  );
  // Messages from the exchange's own checks name the options as pipeline.yml does.
  assert.equal(config.exchange?.names.plugin, true);
});

Deno.test("readPluginConfig() asks the agent for what audience, lifetime and claims say", () => {
  const config = read({
    "token-endpoint": ENDPOINT,
    "buildkite-audience": "identity-api",
    lifetime: "120",
    claims: ["organization_id", "pipeline_id"],
  });
  assert.deepEqual(buildkiteAgentArgs(config.source), [
    "oidc",
    "request-token",
    "--audience",
    "identity-api",
    "--lifetime",
    "120",
    "--claim",
    "organization_id",
    "--claim",
    "pipeline_id",
  ]);
  assert.equal(config.source.stdin, true);
  // A leading zero would be octal to the agent.
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, lifetime: "010" }),
    'lifetime is "010": use a whole number of seconds above 0',
  );
});

Deno.test("readPluginConfig() refuses what is not an option, and a list for a single-value option", () => {
  const cases: [Record<string, string | string[]>, string][] = [
    [
      { "target-audiance": "x" },
      "target-audiance is not an option of this plugin: did you mean target-audience?",
    ],
    [{ scopes: ["read"] }, "scopes is not an option of this plugin: did you mean scope?"],
    [
      { image: "node:22" },
      "image is not an option of this plugin: see the plugin's README for the options",
    ],
    [{ audience: ["a", "b"] }, "audience takes one value, not a list: give it one value"],
    [{ "token-file": ["a"] }, "token-file takes one value, not a list: give it one value"],
    [
      { "client-secret": "pasted-s3cret-value" },
      "client-secret is not an option of this plugin: a secret written in pipeline.yml is kept in the repository and shown with the build's steps, so rotate it, keep the new one in a variable of the job's environment (an agent hook or Buildkite secrets), and name that variable with client-secret-env",
    ],
  ];
  for (const [options, message] of cases) {
    assert.equal(mistake({ "token-endpoint": ENDPOINT, ...options }), message);
  }
  // Lists are lists, as _0, _1, … or one plain value.
  const config = read({
    "token-endpoint": ENDPOINT,
    scope: "read",
    resource: ["https://a", "https://b"],
  });
  assert.deepEqual([config.exchange?.scope, config.exchange?.resource], [["read"], [
    "https://a",
    "https://b",
  ]]);
});

Deno.test("readPluginConfig() refuses a line break or control character in any value, and shows it escaped", () => {
  assert.equal(
    mistake({ "token-endpoint": `${ENDPOINT}\n` }),
    `token-endpoint is "${ENDPOINT}\\n", which has a line break or another control character in it: remove it`,
  );
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, "subject-token-type": "urn:x\tjwt" }),
    'subject-token-type is "urn:x\\tjwt", which has a line break or another control character in it: remove it',
  );
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, hook: "pre-command\u001b[2K\u0085" }),
    'hook is "pre-command\\u001b[2K\\u0085", which has a line break or another control character in it: remove it',
  );
});

Deno.test("readPluginConfig() chooses the mode, and refuses options that have no use in it", () => {
  assert.equal(read({ "aws-role-arn": ROLE }).mode, "aws");
  assert.equal(read({ "google-credentials": "true", "target-audience": PROVIDER }).mode, "google");
  const cases: [Record<string, string | string[]>, string][] = [
    [
      { "aws-role-arn": ROLE, "google-credentials": "true" },
      "Both aws-role-arn and google-credentials are set: use one plugin entry for each",
    ],
    [
      { "aws-role-arn": ROLE, issuer: "https://issuer.example.com" },
      "issuer has no use with aws-role-arn, which makes no exchange (the AWS tools assume the role with the OIDC token themselves): remove issuer",
    ],
    [
      { "aws-role-arn": ROLE, "client-id": "ci" },
      "client-id has no use with aws-role-arn, which makes no exchange (the AWS tools assume the role with the OIDC token themselves): remove client-id",
    ],
    [
      { "google-credentials": "true", "target-audience": PROVIDER, scope: "x" },
      "scope has no use with google-credentials, which makes no exchange (Google's tools exchange the OIDC token themselves): remove scope",
    ],
    [
      { "token-endpoint": ENDPOINT, "service-account": "d@p.iam.gserviceaccount.com" },
      "service-account has no use without google-credentials: set google-credentials: true, or remove service-account",
    ],
    [
      { "token-endpoint": ENDPOINT, "client-auth": "post" },
      "client-auth has no use without client-secret-env: set client-secret-env, or remove client-auth",
    ],
    [
      { "token-endpoint": ENDPOINT, "client-secret-env": "S" },
      "A client secret (client-secret-env) needs a client ID: set client-id",
    ],
  ];
  for (const [options, message] of cases) assert.equal(mistake(options, { S: "secret" }), message);
  // Turned off is not set.
  assert.equal(read({ "aws-role-arn": ROLE, "token-file": "false" }).tokenFile, undefined);
  assert.equal(
    read({ "token-endpoint": ENDPOINT, "google-credentials": "false" }).mode,
    "exchange",
  );
});

Deno.test("readPluginConfig() refuses env-var and oidc-token-file names that tools read as code, paths or configuration", () => {
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, "env-var": "MY-TOKEN" }),
    'env-var is "MY-TOKEN", not an environment variable name: use a name such as FEDERATED_ACCESS_TOKEN',
  );
  const refused: [string, string][] = [
    ["PATH", "the shell and the rest of the job rely on"],
    ["PS4", "the shell and the rest of the job rely on"],
    ["ENV", "the shell and the rest of the job rely on"],
    ["PROMPT_COMMAND", "the shell and the rest of the job rely on"],
    ["https_proxy", "HTTP clients read as their proxy"],
    ["LD_PRELOAD", "the dynamic linker and the C library read"],
    ["GCONV_PATH", "the dynamic linker and the C library read"],
    ["GLIBC_TUNABLES", "the dynamic linker and the C library read"],
    ["BUILDKITE_AGENT_ACCESS_TOKEN", "the Buildkite agent owns"],
    ["BASH_ENV", "bash reads"],
    ["GIT_ASKPASS", "git and ssh read"],
    ["TOKEN_EXCHANGE_CACHE_DIR", "this plugin reads"],
    ["MAVEN_OPTS", "tools read as their command-line options"],
    ["JDK_JAVA_OPTIONS", "tools read as their command-line options"],
    ["GOFLAGS", "tools read as their command-line options"],
    ["MAKEFLAGS", "tools read as their command-line options"],
    ["PKG_CONFIG_PATH", "tools read as where to find programs, libraries or files"],
    ["GOPATH", "tools read as where to find programs, libraries or files"],
    ["CARGO_HOME", "tools read as where their files are"],
    ["XDG_CACHE_HOME", "tools read as where their files are"],
    ["PYTHONSTARTUP", "a language's runtime or package manager reads as code or configuration"],
    ["NODE_OPTIONS", "tools read as their command-line options"],
    ["RUSTC_WRAPPER", "a language's runtime or package manager reads as code or configuration"],
    ["PIP_INDEX_URL", "a language's runtime or package manager reads as code or configuration"],
    ["PERLLIB", "a language's runtime or package manager reads as code or configuration"],
    ["LESSOPEN", "a language's runtime or package manager reads as code or configuration"],
    ["GOPROXY", "the Go toolchain reads as configuration"],
    ["CC", "build tools run as a compiler or read as configuration"],
    ["CXX", "build tools run as a compiler or read as configuration"],
    ["SSL_CERT_FILE", "TLS clients read as the certificates they trust"],
    ["NODE_EXTRA_CA_CERTS", "TLS clients read as the certificates they trust"],
    ["KUBECONFIG", "a cloud or container tool reads as where its credentials or configuration are"],
  ];
  for (const [name, why] of refused) {
    assert.equal(
      mistake({ "token-endpoint": ENDPOINT, "env-var": name }),
      `env-var is "${name}", a variable ${why}: use a name of your own such as FEDERATED_ACCESS_TOKEN`,
      name,
    );
  }
  // Names a tool reads as its access token stay allowed: exporting the token there is the point.
  for (
    const name of [
      "GOOGLE_OAUTH_ACCESS_TOKEN",
      "CLOUDSDK_AUTH_ACCESS_TOKEN",
      "GITHUB_TOKEN",
      "VAULT_TOKEN",
      "NODE_AUTH_TOKEN",
      "GCP_ACCESS_TOKEN",
    ]
  ) {
    assert.equal(read({ "token-endpoint": ENDPOINT, "env-var": name }).envVar, name);
  }
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, "oidc-token-file": "PATH" }),
    'oidc-token-file is "PATH", a variable the shell and the rest of the job rely on: use a name of your own such as BUILDKITE_OIDC_TOKEN_FILE',
  );
  const oidc = read({ "token-endpoint": ENDPOINT, "oidc-token-file": "true" });
  assert.deepEqual([oidc.oidcTokenVar, oidc.keepsOidcToken], ["BUILDKITE_OIDC_TOKEN_FILE", true]);
  assert.equal(
    read({ "token-endpoint": ENDPOINT, "oidc-token-file": "MY_OIDC" }).oidcTokenVar,
    "MY_OIDC",
  );
});

Deno.test("readPluginConfig() resolves token-file: true, ~/, a relative path; refuses what is not a file's path", () => {
  const file = (value: string) =>
    read({ "token-endpoint": ENDPOINT, "token-file": value }).tokenFile;
  assert.deepEqual(file("true"), { kind: "private" });
  assert.deepEqual(file("1"), { kind: "private" });
  assert.equal(file("false"), undefined);
  assert.deepEqual(file("~/.kube/token"), {
    kind: "path",
    path: "/home/agent/.kube/token",
    given: "~/.kube/token",
  });
  assert.deepEqual(file("secrets/./token"), {
    kind: "path",
    path: "/builds/acme/deploy/secrets/token",
    given: "secrets/./token",
  });
  assert.deepEqual(file("/var//tokens/sts"), {
    kind: "path",
    path: "/var/tokens/sts",
    given: "/var//tokens/sts",
  });
  // refresh keeps a file fresh: with an exchange, a private one unless token-file says where.
  assert.deepEqual(read({ "token-endpoint": ENDPOINT, refresh: "true" }).tokenFile, {
    kind: "private",
  });
  const cases: [string, string][] = [
    [
      "~other/token",
      'token-file is "~other/token": only ~/ (this user\'s home) is understood; write the whole path',
    ],
    [
      "/tmp/a,b",
      'token-file is "/tmp/a,b", which has a comma in it: choose a path without one, or token-file: true for a private one',
    ],
    [
      "../token",
      'token-file is "../token", which is not a file\'s path: name a file, such as ~/.config/sts/token (no .. in it)',
    ],
    [
      "/tmp/dir/",
      'token-file is "/tmp/dir/", which is not a file\'s path: name a file, such as ~/.config/sts/token (no .. in it)',
    ],
  ];
  for (const [value, message] of cases) {
    assert.equal(mistake({ "token-endpoint": ENDPOINT, "token-file": value }), message);
  }
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, "token-file": "~/token" }, { HOME: "" }),
    'token-file is "~/token", but HOME is not set to a directory: write the whole path',
  );
});

Deno.test("readPluginConfig() reads google-credentials, with Google's endpoints by default", () => {
  const config = read({
    "google-credentials": "true",
    "target-audience": PROVIDER,
    "service-account": "deployer@acme.iam.gserviceaccount.com",
    "service-account-token-lifetime": "900",
  });
  assert.deepEqual(config.google, {
    audience: PROVIDER,
    tokenUrl: GOOGLE_STS_URL,
    subjectTokenType: "urn:ietf:params:oauth:token-type:jwt",
    iamUrl: GOOGLE_IAM_URL,
    serviceAccount: "deployer@acme.iam.gserviceaccount.com",
    tokenLifetimeSeconds: 900,
  });
  assert.equal(config.keepsOidcToken, true);
  const mirrored = read(
    {
      "google-credentials": "true",
      "target-audience": PROVIDER,
      "token-endpoint": "http://127.0.0.1:8080/v1/token",
    },
    { TOKEN_EXCHANGE_GOOGLE_IAM_URL: "http://127.0.0.1:8080/v1/" },
  );
  assert.deepEqual([mirrored.google?.tokenUrl, mirrored.google?.iamUrl], [
    "http://127.0.0.1:8080/v1/token",
    "http://127.0.0.1:8080/v1",
  ]);
  // audience alone names the provider, in either form; the OIDC token's aud is as written.
  for (const audience of [PROVIDER, `https:${PROVIDER}`]) {
    const named = read({ "google-credentials": "true", audience });
    assert.deepEqual([named.google?.audience, named.source.audience], [PROVIDER, audience]);
  }
  const cases: [Record<string, string | string[]>, string][] = [
    [
      {},
      "google-credentials needs the workload identity provider: set audience to //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
    ],
    [
      { "target-audience": [PROVIDER, PROVIDER] },
      "google-credentials takes one target-audience, the workload identity provider: //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
    ],
    [
      { audience: "buildkite" },
      'audience is "buildkite", not a workload identity provider: with google-credentials, use //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (Google Cloud console, IAM, Workload Identity Federation, the provider\'s page)',
    ],
    [
      {
        "target-audience":
          "//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/bk/providers/bk",
      },
      'target-audience is "//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/bk/providers/bk", not a workload identity provider: with google-credentials, use //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (Google Cloud console, IAM, Workload Identity Federation, the provider\'s page)',
    ],
    [
      { "target-audience": PROVIDER, "token-endpoint": "http://sts.googleapis.com/v1/token" },
      'Token endpoint (token-endpoint) "http://sts.googleapis.com/v1/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
    ],
    [
      { "target-audience": PROVIDER, "service-account": "deployer" },
      'service-account is "deployer", not a service account\'s email: use one such as deployer@my-project.iam.gserviceaccount.com',
    ],
    [{
      "target-audience": PROVIDER,
      "service-account": "d@p.iam.gserviceaccount.com",
      "service-account-token-lifetime": "60",
    }, 'service-account-token-lifetime is "60": use a whole number of seconds from 600 to 43200'],
  ];
  for (const [options, message] of cases) {
    assert.equal(mistake({ "google-credentials": "true", ...options }), message);
  }
});

Deno.test("readPluginConfig() reads aws-role-arn and the aws-* options, with the audience AWS expects", () => {
  const config = read({ "aws-role-arn": ROLE }, {
    BUILDKITE_PIPELINE_SLUG: "deploy",
    BUILDKITE_BUILD_NUMBER: "42",
  });
  assert.deepEqual(config.aws, {
    roleArn: ROLE,
    sessionName: "buildkite-deploy-42",
    durationSeconds: undefined,
    region: undefined,
    stsUrl: new URL("https://sts.amazonaws.com/"),
    credentials: "web-identity",
  });
  assert.deepEqual([config.mode, config.keepsOidcToken], ["aws", true]);
  assert.deepEqual(buildkiteAgentArgs(config.source), [
    "oidc",
    "request-token",
    "--audience",
    "sts.amazonaws.com",
  ]);
  const full = read({
    "aws-role-arn": ROLE,
    audience: "buildkite-aws",
    "aws-session-name": "deploy-42",
    "aws-session-duration": "7200",
    "aws-region": "eu-central-1",
    "aws-session-tags": ["organization_slug", "pipeline_slug"],
    "aws-credentials": "environment",
  });
  assert.deepEqual(full.aws, {
    roleArn: ROLE,
    sessionName: "deploy-42",
    durationSeconds: 7200,
    region: "eu-central-1",
    stsUrl: new URL("https://sts.eu-central-1.amazonaws.com/"),
    credentials: "environment",
  });
  // The keys are handed over, so no file keeps the OIDC token.
  assert.equal(full.keepsOidcToken, false);
  assert.deepEqual(buildkiteAgentArgs(full.source), [
    "oidc",
    "request-token",
    "--audience",
    "buildkite-aws",
    "--aws-session-tag",
    "organization_slug,pipeline_slug",
  ]);
  // Where the AWS tools would call STS: AWS_ENDPOINT_URL_STS, then the region they would use.
  const sts = (more: Record<string, string>, options: Record<string, string> = {}) =>
    read({ "aws-role-arn": ROLE, ...options }, more).aws?.stsUrl.href;
  assert.equal(sts({ AWS_ENDPOINT_URL_STS: "http://127.0.0.1:4566" }), "http://127.0.0.1:4566/");
  assert.equal(sts({ AWS_ENDPOINT_URL: "https://sts.internal" }), "https://sts.internal/");
  assert.equal(sts({ AWS_REGION: "ap-southeast-2" }), "https://sts.ap-southeast-2.amazonaws.com/");
  assert.equal(
    sts({ AWS_DEFAULT_REGION: "cn-north-1" }),
    "https://sts.cn-north-1.amazonaws.com.cn/",
  );
  assert.equal(
    sts({ AWS_REGION: "us-east-1" }, { "aws-region": "us-gov-west-1" }),
    "https://sts.us-gov-west-1.amazonaws.com/",
  );
  const cases: [Record<string, string | string[]>, string][] = [
    [
      { "aws-role-arn": "arn:aws:iam::123456789012:user/deploy" },
      'aws-role-arn is "arn:aws:iam::123456789012:user/deploy", not the ARN of an IAM role: use one such as arn:aws:iam::123456789012:role/deploy',
    ],
    [
      { "aws-session-name": "deploy 42" },
      'aws-session-name is "deploy 42": use 2 to 64 letters, digits and +=,.@_- (such as deploy-${BUILDKITE_BUILD_NUMBER})',
    ],
    [
      { "aws-session-duration": "600" },
      'aws-session-duration is "600": use a whole number of seconds from 900 to 43200',
    ],
    [
      { "aws-region": "Frankfurt" },
      'aws-region is "Frankfurt", not an AWS region: use one such as us-east-1',
    ],
    [
      { "aws-session-tags": ["organization_slug", "pipeline slug"] },
      'aws-session-tags has "pipeline slug", not the name of a claim: use claims such as organization_slug and pipeline_slug',
    ],
    [
      { "aws-credentials": "keys" },
      'aws-credentials is "keys": use web-identity or environment',
    ],
    [
      { "aws-credentials": "environment", refresh: "true" },
      "refresh cannot renew aws-credentials: environment, whose keys a running command keeps: use aws-credentials: web-identity (the AWS tools then renew by themselves), or a longer aws-session-duration without refresh",
    ],
  ];
  for (const [options, message] of cases) {
    assert.equal(mistake({ "aws-role-arn": ROLE, ...options }), message);
  }
  assert.equal(
    mistake({ "aws-role-arn": ROLE }, { AWS_ENDPOINT_URL_STS: "http://sts.internal" }),
    'AWS_ENDPOINT_URL_STS "http://sts.internal" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
  );
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, "aws-region": "us-east-1" }),
    "aws-region has no use without aws-role-arn: set aws-role-arn, or remove aws-region",
  );
});

Deno.test("readPluginConfig() reads kubernetes-server and kubernetes-ca, which write the token to a file", () => {
  const config = read({
    "token-endpoint": ENDPOINT,
    "kubernetes-server": "https://k8s.example.com:6443",
    "kubernetes-ca": "~/.kube/cluster-ca.pem",
  });
  assert.deepEqual(config.kubernetes, {
    server: new URL("https://k8s.example.com:6443"),
    caFile: "/home/agent/.kube/cluster-ca.pem",
  });
  assert.deepEqual(config.tokenFile, { kind: "private" });
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, "kubernetes-server": "http://k8s.example.com" }),
    'kubernetes-server "http://k8s.example.com" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
  );
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, "kubernetes-ca": "ca.pem" }),
    "kubernetes-ca has no use without kubernetes-server: set kubernetes-server, or remove kubernetes-ca",
  );
  assert.equal(
    mistake({ "aws-role-arn": ROLE, "kubernetes-server": "https://k8s.example.com" }),
    "kubernetes-server has no use with aws-role-arn, which makes no exchange (the AWS tools assume the role with the OIDC token themselves): remove kubernetes-server",
  );
});

Deno.test("readPluginConfig() reads booleans and hook as plugin.yml allows them", () => {
  const config = read({ "token-endpoint": ENDPOINT, debug: "1", redact: "0", hook: "pre-command" });
  assert.deepEqual([config.debug, config.redact, config.hook], [true, false, "pre-command"]);
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, redact: "yes" }),
    'redact is "yes": use true or false',
  );
  assert.equal(
    mistake({ "token-endpoint": ENDPOINT, hook: "post-command" }),
    'hook is "post-command": use environment or pre-command',
  );
});

Deno.test("the engine knows exactly the options plugin.yml declares, and which of them are lists", async () => {
  const plugin = parse(await Deno.readTextFile(new URL("plugin.yml", import.meta.url))) as {
    configuration: { properties: Record<string, { type: string | string[] }> };
  };
  const properties = Object.entries(plugin.configuration.properties);
  assert.deepEqual(Object.keys(PLUGIN_OPTIONS).sort(), properties.map(([name]) => name).sort());
  assert.deepEqual(
    Object.entries(PLUGIN_OPTIONS).filter(([, spec]) => spec.list).map(([name]) => name).sort(),
    properties.filter(([, spec]) => [spec.type].flat().includes("array")).map(([name]) => name)
      .sort(),
  );
});

Deno.test("docs/security.md lists every reason env-var gives for a name it refuses", async () => {
  const docs = await Deno.readTextFile(new URL("docs/security.md", import.meta.url));
  for (const [pattern, why] of RESERVED_NAMES) {
    const row = new RegExp(`\\| ${why.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} +\\|`);
    assert.match(docs, row, `docs/security.md lacks "${why}" (${pattern})`);
  }
});

Deno.test("readPluginConfig() chooses Azure, Vault and GitHub modes, with their defaults, and refuses two modes at once", () => {
  const AZURE = {
    "azure-client-id": "5c1a7e64-8e29-4d7a-9f3a-1c6b4f0e2d11",
    "azure-tenant-id": "contoso.onmicrosoft.com",
  };
  const azure = read(AZURE);
  assert.deepEqual([azure.mode, azure.source.audience, azure.keepsOidcToken], [
    "azure",
    "api://AzureADTokenExchange",
    true,
  ]);
  assert.deepEqual([azure.azure?.authorityHost.href, azure.azure?.authorityGiven], [
    "https://login.microsoftonline.com/",
    false,
  ]);
  const vault = read({ "vault-addr": "https://vault.example.com:8200", "vault-role": "deploy" });
  assert.deepEqual(
    [vault.mode, vault.envVar, vault.vault?.mount, vault.revoke, vault.source.audience],
    ["vault", "VAULT_TOKEN", "jwt", { revocationEndpoint: undefined }, "buildkite"],
  );
  const github = read({ "github-token-scope": "acme/deploy", "github-token-identity": "release" });
  assert.deepEqual(
    [github.mode, github.envVar, github.source.audience, github.github?.apiUrl.href],
    ["github", "GITHUB_TOKEN", "octo-sts.dev", "https://api.github.com/"],
  );
  assert.equal(
    read({ "vault-addr": "https://v.example.com", "vault-role": "r", revoke: "false" }).revoke,
    undefined,
  );
  const cases: [Record<string, string | string[]>, string][] = [
    [
      { ...AZURE, "vault-addr": "https://vault.example.com" },
      "Both azure-client-id and vault-addr are set: use one plugin entry for each",
    ],
    [
      { "azure-client-id": AZURE["azure-client-id"] },
      "azure-client-id needs azure-tenant-id: set both, the application (client) ID and the directory (tenant) ID of the app registration or managed identity",
    ],
    [
      { ...AZURE, "azure-client-id": "deploy-app" },
      'azure-client-id is "deploy-app", not an application (client) ID: use the GUID the app registration shows, such as 00000000-0000-0000-0000-000000000000',
    ],
    [
      { ...AZURE, "token-endpoint": ENDPOINT },
      "token-endpoint has no use with azure-client-id, which makes no exchange (Azure's tools exchange the OIDC token themselves): remove token-endpoint",
    ],
    [
      { "vault-addr": "https://vault.example.com" },
      "vault-addr needs vault-role: set it to the JWT auth method's role for this pipeline",
    ],
    [
      { "vault-addr": "https://vault.example.com", "vault-role": "r", "vault-mount": "../sys" },
      'vault-mount is "../sys", not a mount path: use the JWT auth method\'s path, such as jwt or buildkite',
    ],
    [
      { "vault-addr": "https://vault.example.com", "vault-role": "r", scope: "x" },
      "scope has no use with vault-addr, which logs in to Vault instead of making an exchange: remove scope",
    ],
    [
      { "github-token-scope": "acme/deploy" },
      "github-token-scope needs github-token-identity: set it to the trust policy's name (.github/chainguard/NAME.sts.yaml)",
    ],
    [
      {
        "github-token-scope": "acme/deploy",
        "github-token-identity": "release",
        "octo-sts-url": "https://sts.acme.example.com",
      },
      "octo-sts-url needs audience: set it to the domain your octo-sts instance expects in the OIDC token's aud",
    ],
    [
      { "token-endpoint": ENDPOINT, "vault-role": "r" },
      "vault-role has no use without vault-addr: set vault-addr, or remove vault-role",
    ],
    [
      { "token-endpoint": ENDPOINT, revoke: "true" },
      "revoke needs revocation-endpoint (RFC 7009), or issuer, whose metadata names it: set revocation-endpoint",
    ],
    [
      { "token-endpoint": ENDPOINT, "revocation-endpoint": "https://sts.example.com/revoke" },
      "revocation-endpoint has no use with revoke: false: set revoke: true, or remove revocation-endpoint",
    ],
    [
      {
        "token-endpoint": ENDPOINT,
        "client-id": "ci",
        "client-auth": "assertion",
        revoke: "true",
        "revocation-endpoint": "https://sts.example.com/revoke",
      },
      "revoke cannot authenticate with client-auth: assertion at the end of the job, when the OIDC token may have expired: use client-secret-env, or remove revoke",
    ],
    [
      { "token-endpoint": ENDPOINT, "grant-type": "password" },
      'grant-type is "password": use token-exchange, jwt-bearer or client-credentials',
    ],
    [
      { "token-endpoint": ENDPOINT, "grant-type": "jwt-bearer", "target-audience": "api" },
      'Cannot use target-audience with grant-type "jwt-bearer": it is a parameter of RFC 8693 token exchange; drop it, or send it with extra-params',
    ],
    [
      { "token-endpoint": ENDPOINT, "grant-type": "jwt-bearer", "subject-token-type": "x" },
      "subject-token-type has no use with grant-type jwt-bearer, which sends no subject_token: remove it",
    ],
  ];
  for (const [options, message] of cases) assert.equal(mistake(options), message);
});
