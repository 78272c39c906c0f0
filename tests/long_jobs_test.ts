// Credentials that last the whole job: refresh: true, oidc-token-file, google-credentials and
// aws-role-arn, with a stand-in agent that mints OIDC tokens living a few seconds
// (tests/bin-refresh). The refresher is watched from outside: its files change before the old
// tokens expire, it ends at pre-exit, when the agent refuses, and when the job's process is gone,
// and it leaves no process or file behind.

import assert from "node:assert/strict";
import { DENO_BIN_DIR, listTree, PLUGIN_DIR, runHooks } from "./_hooks.ts";
import { ROLE_SESSION_NAME, runAwsClient, startAwsStandIn } from "./_aws.ts";
import { runGoogleClient, startGoogleStandIns } from "./_google.ts";
import { mintedTokens } from "./_refresh_agent.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";

export const REFRESH_BIN = `${PLUGIN_DIR}/tests/bin-refresh`;
const SYSTEM_PATH = ["/usr/local/bin", "/usr/bin", "/bin"];
export const JOB = "0184990a-477b-4fa8-9968-496074483cee";

/** A job's shared state: its TMPDIR, the stand-in agent's record, and a process standing for the job. */
export async function longJob(): Promise<
  AsyncDisposable & {
    tmp: string;
    log: string;
    stopFile: string;
    job: Deno.ChildProcess;
    env: Record<string, string>;
    privateDir: (envVar?: string) => string;
  }
> {
  const tmp = await Deno.makeTempDir({ prefix: "long-job-" });
  const work = await Deno.makeTempDir({ prefix: "long-job-agent-" });
  const log = `${work}/agent.log`;
  await Deno.writeTextFile(log, "");
  // The job's process (the agent's bootstrap): the refresher ends when it is gone.
  const job = new Deno.Command("sleep", { args: ["600"], stdout: "null", stderr: "null" }).spawn();
  return {
    tmp,
    log,
    stopFile: `${work}/stop`,
    job,
    env: {
      TMPDIR: tmp,
      STANDIN_LOG: log,
      STANDIN_OIDC_STOP_FILE: `${work}/stop`,
      TOKEN_EXCHANGE_JOB_PID: String(job.pid),
      BUILDKITE_PIPELINE_SLUG: "deploy",
      BUILDKITE_BUILD_NUMBER: "42",
      BUILDKITE_STEP_KEY: "deploy",
    },
    privateDir: (envVar = "FEDERATED_ACCESS_TOKEN") => `${tmp}/token-exchange-${JOB}/${envVar}`,
    async [Symbol.asyncDispose]() {
      try {
        job.kill();
      } catch { /* already gone */ }
      await job.status;
      // A refresher a failed test left running ends with its directory's FIFO gone or its job.
      await Deno.remove(tmp, { recursive: true });
      await Deno.remove(work, { recursive: true });
    },
  };
}

export const refreshPath = () => [REFRESH_BIN, DENO_BIN_DIR, ...SYSTEM_PATH];

/** Waits until `check` holds, polling, for at most `seconds`. */
export async function eventually(
  what: string,
  check: () => Promise<boolean> | boolean,
  seconds = 20,
): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** `ps` fields of a process, or "" when it is gone. */
export function ps(pid: number, fields: string): string {
  const output = new Deno.Command("ps", { args: ["-o", `${fields}=`, "-p", String(pid)] })
    .outputSync();
  return new TextDecoder().decode(output.stdout).trim();
}

/** Whether a process runs (a zombie nobody has reaped yet has ended). */
export function alive(pid: number): boolean {
  const stat = ps(pid, "stat");
  return stat !== "" && !stat.startsWith("Z");
}

export async function refresherPid(dir: string): Promise<number> {
  return Number((await Deno.readTextFile(`${dir}/refresher.pid`)).trim());
}

const readOrEmpty = (path: string) => Deno.readTextFile(path).catch(() => "");

Deno.test("refresh: true replaces the token file before the token expires, silently, until pre-exit stops it", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint((_, index) =>
    tokenResponse({ access_token: `issued-${index}-${"x".repeat(20)}`, expires_in: 3 })
  );
  const options = { "token-endpoint": server.url, refresh: true };
  const result = await runHooks(["environment"], { options, env: job.env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const file = result.exported["FEDERATED_ACCESS_TOKEN_FILE"]!;
  assert.equal(file, `${job.privateDir()}/token`);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], `issued-0-${"x".repeat(20)}`);
  assert.match(
    result.exported["FEDERATED_ACCESS_TOKEN_EXPIRES_AT"]!,
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
  );
  assert.equal(result.stderr, "");
  assert.match(result.stdout, /; kept fresh until the job ends \(expires in 3 s\)\n$/);

  // Renewed at two thirds of 3 s: each token is replaced while it is still valid.
  const seen: string[] = [];
  await eventually("two renewals", async () => {
    const token = await readOrEmpty(file);
    if (token !== "" && token !== seen.at(-1)) seen.push(token);
    return seen.length >= 3;
  });
  assert.deepEqual(seen.slice(0, 3), [0, 1, 2].map((i) => `issued-${i}-${"x".repeat(20)}`));
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);

  const pid = await refresherPid(job.privateDir());
  assert.ok(alive(pid));
  const ended = await runHooks(["pre-exit"], { options, env: job.env, path: refreshPath() });
  assert.deepEqual([ended.code, ended.stdout, ended.stderr], [0, "", ""]);
  assert.equal(alive(pid), false, "the refresher outlived pre-exit");
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("the refresher ends by itself when the agent stops issuing tokens, and pre-exit shows why", async () => {
  await using job = await longJob();
  const options = { "aws-role-arn": "arn:aws:iam::123456789012:role/deploy", refresh: true };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.privateDir());
  await Deno.writeTextFile(job.stopFile, "");
  await eventually("the refresher to give up", () => !alive(pid), 30);
  const ended = await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  assert.equal(ended.code, 0);
  assert.match(
    ended.stderr,
    /^⚠️ The token refresher for FEDERATED_ACCESS_TOKEN failed: buildkite-agent oidc request-token failed \(exit status 1\): .*FATAL\s+Failed to get OIDC token: the job is no longer running/,
  );
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("the refresher ends when the job's process is gone", async () => {
  await using job = await longJob();
  const options = { "aws-role-arn": "arn:aws:iam::123456789012:role/deploy", refresh: true };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "3" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.privateDir());
  assert.ok(alive(pid));
  job.job.kill();
  await job.job.status;
  await eventually("the refresher to see its job gone", () => !alive(pid), 20);
});

Deno.test("an idle refresher is one small bash that starts no program", async () => {
  await using job = await longJob();
  const options = { "aws-role-arn": "arn:aws:iam::123456789012:role/deploy", refresh: true };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "600" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.privateDir());
  const calls = () => readOrEmpty(job.log);
  const before = await calls();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const rss = Number(ps(pid, "rss"));
  assert.ok(rss > 0 && rss < 5 * 1024, `the idle refresher uses ${rss} KiB`);
  const children = new TextDecoder().decode(
    new Deno.Command("ps", { args: ["-o", "pid=", "--ppid", String(pid)] }).outputSync().stdout,
  ).trim();
  assert.equal(children, "", "the idle refresher has a child process");
  assert.equal(await calls(), before, "the idle refresher called the agent");
  await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  assert.equal(alive(pid), false);
});

Deno.test("several plugin entries in one step each get their own refresher, directory and variables", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint((request, index) =>
    tokenResponse({
      access_token: `${new URLSearchParams(request.body).get("audience")}-${index}`,
      expires_in: 3,
    })
  );
  const entries = ["FIRST", "SECOND"].map((envVar) => ({
    "token-endpoint": server.url,
    "target-audience": envVar.toLowerCase(),
    "env-var": envVar,
    refresh: true,
    "oidc-token-file": `${envVar}_OIDC_FILE`,
  }));
  const results = [];
  for (const options of entries) {
    results.push(await runHooks(["environment"], { options, env: job.env, path: refreshPath() }));
  }
  const [first, second] = results as [typeof results[0], typeof results[0]];
  assert.equal(first.code + second.code, 0, first.stderr + second.stderr);
  assert.equal(first.exported["FIRST_FILE"], `${job.privateDir("FIRST")}/token`);
  assert.equal(second.exported["SECOND_FILE"], `${job.privateDir("SECOND")}/token`);
  assert.equal(first.exported["FIRST_OIDC_FILE"], `${job.privateDir("FIRST")}/oidc-token`);
  const pids = await Promise.all(["FIRST", "SECOND"].map((v) => refresherPid(job.privateDir(v))));
  assert.notEqual(pids[0], pids[1]);
  await eventually(
    "both files renewed",
    async () =>
      !(await readOrEmpty(first.exported["FIRST_FILE"]!)).endsWith("-0") &&
      (await readOrEmpty(second.exported["SECOND_FILE"]!)).startsWith("second-"),
  );
  assert.match(await Deno.readTextFile(first.exported["FIRST_FILE"]!), /^first-\d+$/);

  // The first entry's pre-exit leaves the second one running.
  await runHooks(["pre-exit"], { options: entries[0], env: job.env, path: refreshPath() });
  assert.deepEqual([alive(pids[0]!), alive(pids[1]!)], [false, true]);
  await runHooks(["pre-exit"], { options: entries[1], env: job.env, path: refreshPath() });
  assert.equal(alive(pids[1]!), false);
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("oidc-token-file keeps the Buildkite OIDC token in a private file and hands it to the redactor", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint(() => tokenResponse({ access_token: "issued-abc-123" }));
  const options = { "token-endpoint": server.url, "oidc-token-file": true };
  const result = await runHooks(["environment"], { options, env: job.env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const file = result.exported["BUILDKITE_OIDC_TOKEN_FILE"]!;
  const minted = (await Deno.readTextFile(`${job.log}.tokens`)).trim().split("\n");
  assert.equal(await Deno.readTextFile(file), minted[0]);
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
  assert.equal(new URLSearchParams(server.requests[0]!.body).get("subject_token"), minted[0]);
  const redacted = (await Deno.readTextFile(`${job.log}.redacted`)).split("\n").filter((l) => l);
  assert.deepEqual(redacted, ["issued-abc-123", minted[0]]);
  await runHooks(["pre-exit"], { options, env: job.env, path: refreshPath() });
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("whole-job options' mistakes are exit 2 naming the option, before the agent is asked", async (t) => {
  const role = "arn:aws:iam::123456789012:role/deploy";
  const provider =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/bk/providers/bk";
  const cases: [string, Record<string, string | boolean | string[]>, string][] = [
    [
      "an ARN that is not a role's",
      { "aws-role-arn": "arn:aws:iam::123456789012:user/deploy" },
      'aws-role-arn is "arn:aws:iam::123456789012:user/deploy", not the ARN of an IAM role: use one such as arn:aws:iam::123456789012:role/deploy',
    ],
    [
      "aws-role-arn with a token endpoint",
      { "aws-role-arn": role, "token-endpoint": "https://sts.example.com/token" },
      "aws-role-arn makes no exchange (the AWS tools call AssumeRoleWithWebIdentity themselves): remove token-endpoint and issuer",
    ],
    [
      "aws-role-arn with token-file",
      { "aws-role-arn": role, "token-file": true },
      "token-file is for the token an exchange issues, and with aws-role-arn the plugin makes none (the AWS tools exchange the OIDC token themselves): remove token-file",
    ],
    [
      "both aws-role-arn and google-credentials",
      { "aws-role-arn": role, "google-credentials": true, "target-audience": provider },
      "Both aws-role-arn and google-credentials are set: use one plugin entry for each",
    ],
    [
      "google-credentials without target-audience",
      { "google-credentials": true },
      "google-credentials needs one target-audience, the workload identity provider's: //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
    ],
    [
      "a service account that is not an email",
      { "google-credentials": true, "target-audience": provider, "service-account": "deployer" },
      'service-account is "deployer", not a service account\'s email: use one such as deployer@my-project.iam.gserviceaccount.com',
    ],
    [
      "a token lifetime Google refuses",
      {
        "google-credentials": true,
        "target-audience": provider,
        "service-account": "d@p.iam.gserviceaccount.com",
        "service-account-token-lifetime": "60",
      },
      'service-account-token-lifetime is "60": use a whole number of seconds from 600 to 43200',
    ],
    [
      "oidc-token-file naming PATH",
      { "token-endpoint": "https://sts.example.com/token", "oidc-token-file": "PATH" },
      'oidc-token-file is "PATH", a variable the shell and the rest of the job rely on: use a name of your own such as BUILDKITE_OIDC_TOKEN_FILE',
    ],
    [
      "a misspelt refresh",
      { "token-endpoint": "https://sts.example.com/token", refersh: true },
      "refersh is not an option of this plugin: did you mean refresh?",
    ],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, async () => {
      const result = await runHooks(["environment"], { options, path: refreshPath() });
      assert.deepEqual(
        { code: result.code, stderr: result.stderr, calls: result.agentCalls },
        { code: 2, stderr: `🚨 Configuration error: ${message}\n`, calls: [] },
      );
    });
  }
});

/** Waits until FILE holds something other than BEFORE (the refresher renewed it). */
async function renewed(file: string, before: string): Promise<string> {
  let now = before;
  await eventually(
    `${file} renewed`,
    async () => (now = await readOrEmpty(file)) !== before && now !== "",
  );
  return now;
}

const PROVIDER =
  "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/buildkite/providers/acme";

Deno.test("google-auth-library gets a token with the credentials file google-credentials writes, twice across a refresh, each time with the current OIDC token", async () => {
  await using job = await longJob();
  await using google = startGoogleStandIns({ lifetimeSeconds: 60 });
  const options = {
    "google-credentials": true,
    audience: PROVIDER,
    "target-audience": PROVIDER,
    "token-endpoint": google.stsUrl,
    "service-account": "deployer@acme-prod.iam.gserviceaccount.com",
    "service-account-token-lifetime": 900,
    refresh: true,
  };
  const env = {
    ...job.env,
    STANDIN_OIDC_LIFETIME: "3",
    TOKEN_EXCHANGE_GOOGLE_IAM_URL: `${google.origin}/v1`,
  };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const credentials = result.exported["GOOGLE_APPLICATION_CREDENTIALS"]!;
  assert.equal(result.exported["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"], credentials);
  assert.equal((await Deno.stat(credentials)).mode! & 0o777, 0o600);
  const oidcFile = `${job.privateDir()}/oidc-token`;
  const initial = await Deno.readTextFile(oidcFile);
  const current: string[] = [];
  const run = await runGoogleClient(google, credentials, {
    rounds: 2,
    // The second token once the refresher has replaced the file's first one.
    between: async () => {
      current.push(await renewed(oidcFile, initial));
    },
  });
  assert.equal(run.code, 0, run.stderr);
  assert.ok(run.rounds.every((round) => round.token !== undefined), JSON.stringify(run.rounds));
  const minted = (await mintedTokens(job.log)).map((m) => m.token);
  const [first, second] = run.subjectTokens as [string, string];
  assert.notEqual(first, second);
  assert.ok(minted.indexOf(first) < minted.indexOf(second) && minted.indexOf(first) >= 0);
  assert.notEqual(second, initial);
  assert.deepEqual(run.sts.map((r) => [r.audience, r.subjectTokenType]), [
    [PROVIDER, "urn:ietf:params:oauth:token-type:jwt"],
    [PROVIDER, "urn:ietf:params:oauth:token-type:jwt"],
  ]);
  assert.deepEqual(run.iam.map((r) => r.serviceAccount), [
    "deployer@acme-prod.iam.gserviceaccount.com",
    "deployer@acme-prod.iam.gserviceaccount.com",
  ]);
  await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("the AWS SDK gets credentials from the variables aws-role-arn exports, twice across a refresh, each time with the current OIDC token", async () => {
  await using job = await longJob();
  await using aws = startAwsStandIn({ lifetimeSeconds: 2 });
  const options = {
    "aws-role-arn": "arn:aws:iam::123456789012:role/deployer",
    audience: "sts.amazonaws.com",
    refresh: true,
  };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "3" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const exported = {
    AWS_ROLE_ARN: result.exported["AWS_ROLE_ARN"]!,
    AWS_WEB_IDENTITY_TOKEN_FILE: result.exported["AWS_WEB_IDENTITY_TOKEN_FILE"]!,
    AWS_ROLE_SESSION_NAME: result.exported["AWS_ROLE_SESSION_NAME"]!,
  };
  assert.deepEqual(exported, {
    AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/deployer",
    AWS_WEB_IDENTITY_TOKEN_FILE: `${job.privateDir()}/oidc-token`,
    AWS_ROLE_SESSION_NAME: "buildkite-deploy-42-deploy",
  });
  assert.match(exported.AWS_ROLE_SESSION_NAME, ROLE_SESSION_NAME);
  const initial = await Deno.readTextFile(exported.AWS_WEB_IDENTITY_TOKEN_FILE);
  const run = await runAwsClient(aws, exported, {
    rounds: 2,
    between: async () => {
      await renewed(exported.AWS_WEB_IDENTITY_TOKEN_FILE, initial);
    },
  });
  assert.equal(run.code, 0, run.stderr);
  assert.ok(
    run.rounds.every((round) => round.accessKeyId !== undefined),
    JSON.stringify(run.rounds),
  );
  assert.equal(
    run.rounds[1]!.arn,
    "arn:aws:sts::123456789012:assumed-role/deployer/buildkite-deploy-42-deploy",
  );
  const [first, second] = run.webIdentityTokens as [string, string];
  assert.notEqual(first, second);
  assert.notEqual(second, initial);
  const minted = (await mintedTokens(job.log)).map((m) => m.token);
  assert.ok(minted.indexOf(first) >= 0 && minted.indexOf(first) < minted.indexOf(second));
  assert.deepEqual(run.assumeRole.map((r) => r.roleSessionName), [
    "buildkite-deploy-42-deploy",
    "buildkite-deploy-42-deploy",
  ]);
  await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  assert.deepEqual(await listTree(job.tmp), []);
});
