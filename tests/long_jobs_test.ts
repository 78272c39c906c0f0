// Credentials that last the whole job: refresh: true, oidc-token-file, google-credentials and
// aws-role-arn, with a stand-in agent that mints OIDC tokens living a few seconds
// (tests/bin-refresh). The refresher is watched from outside: its files change before the old
// tokens expire, it ends at pre-exit (a renewal under way included), when the agent refuses, and
// when the job's process is gone, and it leaves no process or file behind. When it renews is a
// pure function, tested without waiting in _refresh_schedule_test.ts; these tests wait only for
// OIDC tokens that live a few seconds.

import assert from "node:assert/strict";
import { DENO_BIN_DIR, listTree, PLUGIN_DIR, runHooks } from "./_hooks.ts";
import { type AwsStandIn, ROLE_SESSION_NAME, runAwsClient, startAwsStandIn } from "./_aws.ts";
import { type GoogleStandIns, runGoogleClient, startGoogleStandIns } from "./_google.ts";
import { mintedTokens } from "./_refresh_agent.ts";
import { decodeJwt } from "../_jwt.ts";
import { CLIENT_ID, startServices, TENANT } from "./_services.ts";
import { TEST_CERT } from "./_tls.ts";
import { oauthError, startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";

export const REFRESH_BIN = `${PLUGIN_DIR}/tests/bin-refresh`;
const SYSTEM_PATH = ["/usr/local/bin", "/usr/bin", "/bin"];
export const JOB = "0184990a-477b-4fa8-9968-496074483cee";
const PROVIDER =
  "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/buildkite/providers/acme";

/** A job's shared state: its TMPDIR, the stand-in agent's record, and a process standing for the job. */
export async function longJob(): Promise<
  AsyncDisposable & {
    tmp: string;
    /** A directory of the test's for the stand-in agent's files. */
    work: string;
    log: string;
    stopFile: string;
    job: Deno.ChildProcess;
    env: Record<string, string>;
    /** The directory of the job's Nth plugin entry (from 1, in the order the hooks ran). */
    entryDir: (entry?: number) => string;
    /** AWS STS (AWS_ENDPOINT_URL_STS) and Google's STS and IAM, which the hooks check once. */
    aws: AwsStandIn;
    google: GoogleStandIns;
  }
> {
  const tmp = await Deno.makeTempDir({ prefix: "long-job-" });
  const work = await Deno.makeTempDir({ prefix: "long-job-agent-" });
  const log = `${work}/agent.log`;
  await Deno.writeTextFile(log, "");
  // The job's process (the agent's bootstrap): the refresher ends when it is gone.
  const job = new Deno.Command("sleep", { args: ["600"], stdout: "null", stderr: "null" }).spawn();
  const aws = startAwsStandIn({ lifetimeSeconds: 3600 });
  const google = startGoogleStandIns({ lifetimeSeconds: 3600 });
  return {
    aws,
    google,
    tmp,
    work,
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
      AWS_ENDPOINT_URL_STS: aws.url,
      TOKEN_EXCHANGE_GOOGLE_IAM_URL: `${google.origin}/v1`,
    },
    entryDir: (entry = 1) => `${tmp}/token-exchange-${JOB}/${entry}`,
    async [Symbol.asyncDispose]() {
      try {
        job.kill();
      } catch { /* already gone */ }
      await job.status;
      await aws.close();
      await google.close();
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

/** The process group a refresher leads: whether any of its processes is left. */
function groupAlive(pid: number): boolean {
  const output = new Deno.Command("ps", { args: ["-e", "-o", "pgid=,stat="] }).outputSync();
  return new TextDecoder().decode(output.stdout).split("\n").some((line) => {
    const [pgid, stat] = line.trim().split(/\s+/);
    return Number(pgid) === pid && stat !== undefined && !stat.startsWith("Z");
  });
}

const AWS = { "aws-role-arn": "arn:aws:iam::123456789012:role/deploy" };

Deno.test("refresh: true replaces the entry's files before the tokens expire, silently, until pre-exit stops it", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint((_, index) =>
    tokenResponse({ access_token: `issued-${index}-${"x".repeat(20)}`, expires_in: 3600 })
  );
  // The OIDC token lives 2 s: with oidc-token-file, both files are renewed every second.
  const options = { "token-endpoint": server.url, refresh: true, "oidc-token-file": true };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const file = result.exported["FEDERATED_ACCESS_TOKEN_FILE"]!;
  assert.equal(file, `${job.entryDir()}/token`);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], `issued-0-${"x".repeat(20)}`);
  assert.match(
    result.exported["FEDERATED_ACCESS_TOKEN_EXPIRES_AT"]!,
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
  );
  assert.equal(result.stderr, "");
  assert.match(result.stdout, /; kept fresh until the job ends \(expires in 60 min\)\n$/);

  const seen: string[] = [];
  await eventually("two renewals", async () => {
    const token = await readOrEmpty(file);
    if (token !== "" && token !== seen.at(-1)) seen.push(token);
    return seen.length >= 3;
  });
  assert.deepEqual(seen.slice(0, 3), [0, 1, 2].map((i) => `issued-${i}-${"x".repeat(20)}`));
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
  // Each renewal exchanged the OIDC token that the file held from then on.
  const minted = (await mintedTokens(job.log)).map((m) => m.token);
  assert.deepEqual(
    server.requests.slice(0, 3).map((r) =>
      minted.indexOf(new URLSearchParams(r.body).get("subject_token")!)
    ),
    [0, 1, 2],
  );
  // Every token went to the redactor: the issued one, then the OIDC one, each time.
  const redacted = (await readOrEmpty(`${job.log}.redacted`)).split("\n").filter((l) => l);
  assert.deepEqual(redacted.slice(0, 4), [seen[0], minted[0], seen[1], minted[1]]);

  const pid = await refresherPid(job.entryDir());
  assert.ok(alive(pid));
  const ended = await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  // pre-exit says how often the refresher renewed, and when it last did; nothing else.
  assert.deepEqual([ended.code, ended.stdout], [0, ""]);
  const said =
    /^The token refresher \(env-var FEDERATED_ACCESS_TOKEN\) renewed this entry's files (\d+) times, last at \d\d:\d\d:\d\d UTC\n$/
      .exec(ended.stderr);
  assert.ok(said, ended.stderr);
  // Each renewal is one request after the hook's (the last may have been stopped before it wrote).
  assert.ok(Number(said[1]) >= 2 && Number(said[1]) <= server.requests.length - 1, said[0]);
  assert.equal(groupAlive(pid), false, "the refresher outlived pre-exit");
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("expires_in: 0 cannot make the refresher renew more than once a minute", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint(() =>
    tokenResponse({ access_token: "issued-by-a-hostile-endpoint", expires_in: 0 })
  );
  const options = { "token-endpoint": server.url, refresh: true };
  const result = await runHooks(["environment"], { options, env: job.env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const state = JSON.parse(await Deno.readTextFile(`${job.entryDir()}/entry.json`)).refresh;
  assert.equal(state.renewAt - state.obtainedAt, 60);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(server.requests.length, 1, "the refresher renewed within 1.5 s");
  await runHooks(["pre-exit"], { options, env: job.env, path: refreshPath() });
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("pre-exit stops a renewal under way: afterwards no process of the entry is left and no file is written", async () => {
  await using job = await longJob();
  const hold = `${job.work}/hold`;
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2", STANDIN_OIDC_HOLD_FILE: hold };
  const result = await runHooks(["environment"], {
    options: { ...AWS, refresh: true },
    env,
    path: refreshPath(),
  });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.entryDir());
  try {
    // The next request for a token is held: the renewal is under way when pre-exit comes.
    await Deno.writeTextFile(hold, "");
    const calls = async () =>
      (await readOrEmpty(job.log)).split("\n").filter((l) => l.startsWith("oidc")).length;
    await eventually("a renewal under way", async () => (await calls()) >= 2);
    const ended = await runHooks(["pre-exit"], {
      options: { ...AWS, refresh: true },
      env,
      path: refreshPath(),
    });
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal(groupAlive(pid), false, "a process of the refresher outlived pre-exit");
  } finally {
    await Deno.remove(hold).catch(() => {});
  }
  // Let a renewal that escaped answer and write: nothing may appear.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("the refresher carries no token and no secret in its environment or arguments, and hands its renewals what they need", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint((_, index) =>
    tokenResponse({ access_token: `issued-${index}-${"y".repeat(20)}`, expires_in: 3600 })
  );
  const options = {
    "token-endpoint": server.url,
    "client-id": "ci",
    "client-secret-env": "STS_CLIENT_SECRET",
    refresh: true,
    "oidc-token-file": true,
  };
  const secret = "client-secret-for-the-refresher-test";
  const agentToken = "bkaj_agent-access-token-for-the-refresher-test";
  const env = {
    ...job.env,
    STANDIN_OIDC_LIFETIME: "2",
    STS_CLIENT_SECRET: secret,
    BUILDKITE_AGENT_ACCESS_TOKEN: agentToken,
    STANDIN_ACCESS_TOKEN_FILE: `${job.work}/access-token`,
  };
  await Deno.writeTextFile(env.STANDIN_ACCESS_TOKEN_FILE, agentToken);
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.entryDir());
  // Deno may not read /proc/PID/environ without --allow-all: cat does.
  const proc = (file: string) =>
    new TextDecoder().decode(
      new Deno.Command("cat", { args: [`/proc/${pid}/${file}`] }).outputSync().stdout,
    );
  const environ = proc("environ");
  const cmdline = proc("cmdline");
  assert.match(environ, /STS_CLIENT_SECRET|PATH=/, "cannot read the refresher's environment");
  for (
    const value of [
      secret,
      agentToken,
      "issued-0-",
      ...(await mintedTokens(job.log)).map((m) => m.token),
    ]
  ) {
    assert.equal(
      environ.includes(value) || cmdline.includes(value),
      false,
      `${value} in the refresher`,
    );
  }
  // The renewals still authenticate, to the agent and to the endpoint.
  await eventually("a renewal", () => server.requests.length >= 2);
  const renewal = new URLSearchParams(server.requests[1]!.body);
  assert.equal(
    server.requests[1]!.headers["authorization"],
    `Basic ${btoa(`ci:${secret}`)}`,
    renewal.toString(),
  );
  await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("the refresher ends by itself when the agent stops issuing tokens, and pre-exit shows why", async () => {
  await using job = await longJob();
  const options = { ...AWS, refresh: true };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.entryDir());
  await Deno.writeTextFile(job.stopFile, "");
  await eventually("the refresher to give up", () => !alive(pid), 30);
  const ended = await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  assert.equal(ended.code, 0);
  assert.match(
    ended.stderr,
    /^⚠️ The token refresher \(aws-role-arn arn:aws:iam::123456789012:role\/deploy\) failed: buildkite-agent oidc request-token failed \(exit status 1\): .*FATAL\s+Failed to get OIDC token: the job is no longer running/,
  );
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("the refresher ends when the job's process is gone, and removes the entry's files", async () => {
  await using job = await longJob();
  await using checkout = {
    path: await Deno.makeTempDir(),
    [Symbol.asyncDispose]() {
      return Deno.remove(this.path, { recursive: true });
    },
  };
  await using server = startTokenEndpoint(() =>
    tokenResponse({ access_token: "issued-zzzzzzzzzzzzzzzzzz" })
  );
  const file = `${checkout.path}/token`;
  const options = {
    "token-endpoint": server.url,
    "token-file": file,
    refresh: true,
    "oidc-token-file": true,
  };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.entryDir());
  assert.ok(alive(pid));
  job.job.kill();
  await job.job.status;
  await eventually("the refresher to see its job gone", () => !groupAlive(pid), 20);
  assert.deepEqual(await listTree(checkout.path), []);
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("an idle refresher is one small bash that starts no program", async () => {
  await using job = await longJob();
  const options = { ...AWS, refresh: true };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "600" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const pid = await refresherPid(job.entryDir());
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
  assert.equal(groupAlive(pid), false);
});

Deno.test("several plugin entries in one step each get their own refresher, directory and variables", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint((request, index) =>
    tokenResponse({
      access_token: `${new URLSearchParams(request.body).get("audience")}-issued-token-${index}`,
      expires_in: 3600,
    })
  );
  const entries = ["FIRST", "SECOND"].map((envVar) => ({
    "token-endpoint": server.url,
    "target-audience": envVar.toLowerCase(),
    "env-var": envVar,
    refresh: true,
    "oidc-token-file": `${envVar}_OIDC_FILE`,
  }));
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2" };
  const results = [];
  for (const options of entries) {
    results.push(await runHooks(["environment"], { options, env, path: refreshPath() }));
  }
  const [first, second] = results as [typeof results[0], typeof results[0]];
  assert.equal(first.code + second.code, 0, first.stderr + second.stderr);
  assert.equal(first.exported["FIRST_FILE"], `${job.entryDir(1)}/token`);
  assert.equal(second.exported["SECOND_FILE"], `${job.entryDir(2)}/token`);
  assert.equal(first.exported["FIRST_OIDC_FILE"], `${job.entryDir(1)}/oidc-token`);
  const pids = await Promise.all([1, 2].map((n) => refresherPid(job.entryDir(n))));
  assert.notEqual(pids[0], pids[1]);
  await eventually(
    "both files renewed",
    async () =>
      !(await readOrEmpty(first.exported["FIRST_FILE"]!)).endsWith("-0") &&
      (await readOrEmpty(second.exported["SECOND_FILE"]!)).startsWith("second-") &&
      !(await readOrEmpty(second.exported["SECOND_FILE"]!)).endsWith("-1"),
  );
  assert.match(await Deno.readTextFile(first.exported["FIRST_FILE"]!), /^first-issued-token-\d+$/);

  // The first entry's pre-exit leaves the second one running.
  await runHooks(["pre-exit"], { options: entries[0], env, path: refreshPath() });
  assert.deepEqual([groupAlive(pids[0]!), alive(pids[1]!)], [false, true]);
  await runHooks(["pre-exit"], { options: entries[1], env, path: refreshPath() });
  assert.equal(groupAlive(pids[1]!), false);
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("a Google and an AWS entry in one step each keep the OIDC token minted for their own audience", async () => {
  await using job = await longJob();
  const google = {
    "google-credentials": true,
    audience: PROVIDER,
    "token-endpoint": job.google.stsUrl,
  };
  const aws = { ...AWS, audience: "sts.amazonaws.com" };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "600" };
  const first = await runHooks(["environment"], { options: google, env, path: refreshPath() });
  const second = await runHooks(["environment"], { options: aws, env, path: refreshPath() });
  assert.equal(first.code + second.code, 0, first.stderr + second.stderr);
  const credentials = JSON.parse(
    await Deno.readTextFile(first.exported["GOOGLE_APPLICATION_CREDENTIALS"]!),
  );
  const audienceOf = async (file: string) => decodeJwt(await Deno.readTextFile(file))?.claims.aud;
  assert.equal(await audienceOf(credentials.credential_source.file), PROVIDER);
  assert.equal(
    await audienceOf(second.exported["AWS_WEB_IDENTITY_TOKEN_FILE"]!),
    "sts.amazonaws.com",
  );
  assert.notEqual(
    credentials.credential_source.file,
    second.exported["AWS_WEB_IDENTITY_TOKEN_FILE"],
  );
  for (const options of [google, aws]) {
    await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  }
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("two entries that would export the same variable or write the same file are an error naming both", async (t) => {
  await using job = await longJob();
  await using server = startTokenEndpoint(() =>
    tokenResponse({ access_token: "issued-wwwwwwwwwwwwwwwwww" })
  );
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "600" };
  const run = (options: Record<string, string | boolean>) =>
    runHooks(["environment"], { options, env, path: refreshPath() });
  const first = await run({ "token-endpoint": server.url, "token-file": `${job.tmp}/token` });
  assert.equal(first.code, 0, first.stderr);
  const cases: [string, Record<string, string | boolean>, string][] = [
    [
      "the same env-var",
      { "token-endpoint": server.url, "target-audience": "other" },
      "This entry would export FEDERATED_ACCESS_TOKEN, which this step's token-exchange entry 1 (env-var FEDERATED_ACCESS_TOKEN) exports: give each entry its own env-var",
    ],
    [
      "the same token-file",
      { "token-endpoint": server.url, "env-var": "OTHER", "token-file": `${job.tmp}/token` },
      `token-file ${job.tmp}/token is written by this step's token-exchange entry 1 (env-var FEDERATED_ACCESS_TOKEN) too: give each entry its own token-file`,
    ],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, async () => {
      const result = await run(options);
      assert.deepEqual([result.code, result.stderr], [2, `🚨 Configuration error: ${message}\n`]);
    });
  }
  await t.step("two google-credentials entries", async () => {
    const google = {
      "google-credentials": true,
      audience: PROVIDER,
      "token-endpoint": job.google.stsUrl,
    };
    assert.equal((await run(google)).code, 0);
    const result = await run(google);
    assert.deepEqual([result.code, result.stderr], [
      2,
      `🚨 Configuration error: This entry would export GOOGLE_APPLICATION_CREDENTIALS, which this step's token-exchange entry 2 (google-credentials for ${PROVIDER}) exports: use one google-credentials entry per step\n`,
    ]);
  });
  assert.equal(server.requests.length, 1);
});

Deno.test("whole-job options' mistakes are exit 2 naming the option", async (t) => {
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
      "token-endpoint has no use with aws-role-arn, which makes no exchange (the AWS tools assume the role with the OIDC token themselves): remove token-endpoint",
    ],
    [
      "aws-role-arn with token-file",
      { "aws-role-arn": role, "token-file": true },
      "token-file has no use with aws-role-arn, which makes no exchange (the AWS tools assume the role with the OIDC token themselves): remove token-file",
    ],
    [
      "google-credentials with env-var",
      { "google-credentials": true, "target-audience": provider, "env-var": "GCP_TOKEN" },
      "env-var has no use with google-credentials, which makes no exchange (Google's tools exchange the OIDC token themselves): remove env-var",
    ],
    [
      "both aws-role-arn and google-credentials",
      { "aws-role-arn": role, "google-credentials": true, "target-audience": provider },
      "Both aws-role-arn and google-credentials are set: use one plugin entry for each",
    ],
    [
      "google-credentials without the provider",
      { "google-credentials": true },
      "google-credentials needs the workload identity provider: set audience to //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
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
      "service-account-token-lifetime without service-account",
      {
        "google-credentials": true,
        "target-audience": provider,
        "service-account-token-lifetime": "900",
      },
      "service-account-token-lifetime has no use without service-account: set service-account, or remove service-account-token-lifetime",
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
        { code: result.code, stderr: result.stderr, leftovers: result.leftovers },
        { code: 2, stderr: `🚨 Configuration error: ${message}\n`, leftovers: [] },
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
    STANDIN_OIDC_LIFETIME: "2",
    TOKEN_EXCHANGE_GOOGLE_IAM_URL: `${google.origin}/v1`,
  };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const credentials = result.exported["GOOGLE_APPLICATION_CREDENTIALS"]!;
  assert.equal(result.exported["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"], credentials);
  assert.equal((await Deno.stat(credentials)).mode! & 0o777, 0o600);
  const oidcFile = `${job.entryDir()}/oidc-token`;
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
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2", AWS_ENDPOINT_URL_STS: aws.url };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const exported = {
    AWS_ROLE_ARN: result.exported["AWS_ROLE_ARN"]!,
    AWS_WEB_IDENTITY_TOKEN_FILE: result.exported["AWS_WEB_IDENTITY_TOKEN_FILE"]!,
    AWS_ROLE_SESSION_NAME: result.exported["AWS_ROLE_SESSION_NAME"]!,
  };
  assert.deepEqual(exported, {
    AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/deployer",
    AWS_WEB_IDENTITY_TOKEN_FILE: `${job.entryDir()}/oidc-token`,
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

Deno.test("a renewal the endpoint refuses: pre-exit shows the endpoint's error and the OIDC token's iss, sub and aud, whole", async () => {
  await using job = await longJob();
  await using server = startTokenEndpoint((_, index) =>
    index === 0
      ? tokenResponse({ access_token: `issued-0-${"x".repeat(20)}`, expires_in: 3600 })
      : oauthError(400, { error: "invalid_grant", error_description: "the trust policy changed" })
  );
  const options = { "token-endpoint": server.url, refresh: true, "oidc-token-file": true };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  await eventually("a refused renewal", () => server.requests.length >= 2);
  await eventually(
    "its error recorded",
    async () => (await readOrEmpty(`${job.entryDir()}/refresher.error`)) !== "",
  );
  const ended = await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  const [warning, claims, status] = ended.stderr.split("\n");
  assert.equal(
    warning,
    '⚠️ The token refresher (env-var FEDERATED_ACCESS_TOKEN) failed: Token endpoint refused the exchange: HTTP 400, error "invalid_grant": "the trust policy changed"; check that the endpoint\'s trust policy accepts the token\'s iss, sub and aud below',
  );
  assert.match(
    claims ?? "",
    /^ {3}Buildkite OIDC token: iss="https:\/\/agent\.buildkite\.com" sub="organization:acme:pipeline:deploy:ref:refs\/heads\/main:commit:[0-9a-f]+:step:deploy" aud="buildkite"$/,
  );
  assert.match(
    status ?? "",
    /^The token refresher \(env-var FEDERATED_ACCESS_TOKEN\) renewed nothing/,
  );
  assert.deepEqual(await listTree(job.tmp), []);
});

Deno.test("refresh: true keeps Azure's AZURE_FEDERATED_TOKEN_FILE fresh, which the Azure SDKs read again", async () => {
  await using job = await longJob();
  await using services = startServices();
  const ca = `${job.work}/ca.pem`;
  await Deno.writeTextFile(ca, TEST_CERT);
  const options = {
    "azure-client-id": CLIENT_ID,
    "azure-tenant-id": TENANT,
    "azure-authority-host": services.origin,
    "ca-file": ca,
    refresh: true,
  };
  const env = { ...job.env, STANDIN_OIDC_LIFETIME: "2" };
  const result = await runHooks(["environment"], { options, env, path: refreshPath() });
  assert.equal(result.code, 0, result.stderr);
  const file = result.exported["AZURE_FEDERATED_TOKEN_FILE"]!;
  assert.equal(result.exported["ARM_OIDC_TOKEN_FILE_PATH"], file);
  const first = await Deno.readTextFile(file);
  const second = await renewed(file, first);
  assert.equal(decodeJwt(second)?.claims.aud, "api://AzureADTokenExchange");
  // The hook checked the credential once; renewals only renew the file.
  assert.equal(services.requests.length, 1);
  await runHooks(["pre-exit"], { options, env, path: refreshPath() });
  assert.deepEqual(await listTree(job.tmp), []);
});
