// `--format kubernetes` with the real clients: kubectl (Debian's kubernetes-client, which
// bash .ci/run installs, or any kubectl on PATH; KUBECTL names another) and
// @kubernetes/client-node run cli.ts as a kubeconfig's exec credential plugin, against a token
// endpoint on 127.0.0.1 and an https API server stand-in on 127.0.0.1 that accepts only the issued
// token as a bearer token.

import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { stringify } from "yaml";
import { baseEnv, CLI, STANDIN_BIN } from "./_cli.ts";
import { runHooks } from "./_hooks.ts";
import { TEST_CERT, TEST_KEY } from "./_tls.ts";
import { oauthError, startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { assertNoSecrets, ISSUED_TOKEN, SUBJECT_TOKEN } from "./_tokens.ts";

const DENO_BIN_DIR = Deno.execPath().replace(/\/[^/]*$/, "");
const V1 = "client.authentication.k8s.io/v1";
const V1BETA1 = "client.authentication.k8s.io/v1beta1";

/**
 * An API server stand-in, https by default: GET /api answers 200 to the issued token only, 401
 * otherwise.
 */
function startApiServer({ tls = true } = {}) {
  const authorizations: (string | null)[] = [];
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      ...(tls && { cert: TEST_CERT, key: TEST_KEY }),
      onListen() {},
    },
    (request) => {
      authorizations.push(request.headers.get("authorization"));
      if (request.headers.get("authorization") !== `Bearer ${ISSUED_TOKEN}`) {
        return Response.json(
          {
            kind: "Status",
            apiVersion: "v1",
            status: "Failure",
            reason: "Unauthorized",
            code: 401,
          },
          { status: 401 },
        );
      }
      return Response.json({
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "127.0.0.1:6443" }],
      });
    },
  );
  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${server.addr.port}`,
    authorizations,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** The kubeconfig exec block that runs cli.ts with `args` after the token endpoint. */
function execUser(apiVersion: string, tokenEndpoint: string, args: string[]) {
  return {
    apiVersion,
    command: Deno.execPath(),
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      "--allow-run=buildkite-agent",
      "--allow-env",
      CLI,
      "--format",
      "kubernetes",
      "--token-endpoint",
      tokenEndpoint,
      ...args,
    ],
    // Required from v1 on (kubectl 1.22); kubectl 1.20 knows only v1beta1, without it.
    ...(apiVersion === V1 && { interactiveMode: "Never" }),
  };
}

function kubeconfig(server: string, user: ReturnType<typeof execUser>) {
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: "test",
      cluster: { server, "certificate-authority-data": btoa(TEST_CERT) },
    }],
    users: [{ name: "ci", user: { exec: user } }],
    contexts: [{ name: "test", context: { cluster: "test", user: "ci" } }],
    "current-context": "test",
  };
}

/** kubectl's path and minor version, or undefined when there is none. */
async function findKubectl(): Promise<{ path: string; minor: number } | undefined> {
  const candidates = [
    Deno.env.get("KUBECTL"),
    ...(Deno.env.get("PATH") ?? "").split(":").map((dir) => `${dir}/kubectl`),
  ];
  for (const path of candidates) {
    if (path === undefined || !(await Deno.stat(path).then((s) => s.isFile, () => false))) {
      continue;
    }
    const output = await new Deno.Command(path, {
      args: ["version", "--client", "-o", "json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!output.success) continue;
    const version = JSON.parse(new TextDecoder().decode(output.stdout)).clientVersion;
    return { path, minor: parseInt(version.minor, 10) };
  }
  return undefined;
}

const KUBECTL = await findKubectl();

/** Runs `kubectl get --raw /api` with a kubeconfig in a new temporary directory. */
async function kubectlGetApi(config: unknown) {
  const dir = await Deno.makeTempDir({ prefix: "kubectl-" });
  const log = `${dir}/agent.log`;
  try {
    await Deno.writeTextFile(`${dir}/kubeconfig`, stringify(config));
    await Deno.writeTextFile(log, "");
    const output = await new Deno.Command(KUBECTL!.path, {
      args: ["get", "--raw", "/api", `--cache-dir=${dir}/cache`],
      clearEnv: true,
      env: {
        ...baseEnv(),
        KUBECONFIG: `${dir}/kubeconfig`,
        PATH: [STANDIN_BIN, DENO_BIN_DIR, "/usr/bin", "/bin"].join(":"),
        STANDIN_LOG: log,
        STANDIN_TOKEN: SUBJECT_TOKEN,
      },
      stdin: "null",
    }).output();
    const result = {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
      agentCalls: (await Deno.readTextFile(log)).split("\n").filter((l) => l).map((l) =>
        l.split("\x1f")
      ),
    };
    assertNoSecrets(result.stdout, "kubectl's stdout");
    assertNoSecrets(result.stderr, "kubectl's stderr");
    return result;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    `kubectl runs cli.ts --format kubernetes as an exec credential plugin and sends the issued token (${
      KUBECTL ? `kubectl 1.${KUBECTL.minor}` : "no kubectl here: apt-get install kubernetes-client"
    })`,
  ignore: KUBECTL === undefined,
  async fn(t) {
    await using tokens = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
    await using api = startApiServer();
    // kubectl 1.20 knows v1beta1 (and sets KUBERNETES_EXEC_INFO to it); v1 came in 1.22.
    const versions = KUBECTL!.minor >= 22 ? [V1, V1BETA1] : [V1BETA1];
    for (const apiVersion of versions) {
      await t.step(apiVersion, async () => {
        const user = execUser(apiVersion, tokens.url, ["--audience", "sts.example.com"]);
        const result = await kubectlGetApi(kubeconfig(api.url, user));
        assert.deepEqual(
          { code: result.code, api: result.code === 0 ? JSON.parse(result.stdout).kind : "" },
          { code: 0, api: "APIVersions" },
          result.stderr,
        );
        assert.deepEqual(result.agentCalls, [[
          "oidc",
          "request-token",
          "--audience",
          "sts.example.com",
        ]]);
        assert.equal(api.authorizations.at(-1), `Bearer ${ISSUED_TOKEN}`);
      });
    }
    assert.equal(tokens.requests.length, versions.length);
  },
});

Deno.test({
  name: "kubectl shows the CLI's error when the token endpoint refuses, and sends no request",
  ignore: KUBECTL === undefined,
  async fn() {
    await using tokens = startTokenEndpoint(() => oauthError(400, { error: "invalid_grant" }));
    await using api = startApiServer();
    const result = await kubectlGetApi(kubeconfig(api.url, execUser(V1BETA1, tokens.url, [])));
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      /token-exchange: Token endpoint refused the exchange: HTTP 400, error "invalid_grant"/,
    );
    assert.deepEqual(api.authorizations, []);
  },
});

Deno.test("@kubernetes/client-node runs cli.ts --format kubernetes (v1) and sends the issued token", async () => {
  await using tokens = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
  // Plain http: over TLS the client negotiates HTTP/2, and Deno 2.9.6's node:http2 aborts the
  // process (an nghttp2 assertion) when the connection closes.
  await using api = startApiServer({ tls: false });
  const user = execUser(V1, tokens.url, ["--subject-token-env", "OIDC_TOKEN"]);
  const config = new k8s.KubeConfig();
  config.loadFromOptions({
    // The client refuses plain http unless told to skip the TLS verification it would not do.
    clusters: [{ name: "test", server: api.url, skipTLSVerify: true }],
    users: [{
      name: "ci",
      exec: {
        ...user,
        // The environment the plugin runs in, besides the client's own.
        env: [{ name: "OIDC_TOKEN", value: SUBJECT_TOKEN }],
      },
    }],
    contexts: [{ name: "test", cluster: "test", user: "ci" }],
    currentContext: "test",
  });
  const versions = await config.makeApiClient(k8s.CoreApi).getAPIVersions();
  assert.deepEqual(versions.versions, ["v1"]);
  assert.deepEqual(api.authorizations, [`Bearer ${ISSUED_TOKEN}`]);
  assert.equal(new URLSearchParams(tokens.requests[0]!.body).get("subject_token"), SUBJECT_TOKEN);
});

Deno.test({
  name: "kubectl's tokenFile user reads the token file the hook keeps (token-file: true, refresh)",
  ignore: KUBECTL === undefined,
  async fn() {
    await using tokens = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
    await using api = startApiServer();
    const tmp = await Deno.makeTempDir({ prefix: "kube-token-file-" });
    const options = { "token-endpoint": tokens.url, "token-file": true, refresh: true };
    try {
      const result = await runHooks(["environment"], { options, env: { TMPDIR: tmp } });
      assert.equal(result.code, 0, result.stderr);
      const config = {
        ...kubeconfig(api.url, execUser(V1BETA1, tokens.url, [])),
        users: [{
          name: "ci",
          user: { tokenFile: result.exported["FEDERATED_ACCESS_TOKEN_FILE"] },
        }],
      };
      const kubectl = await kubectlGetApi(config);
      assert.equal(kubectl.code, 0, kubectl.stderr);
      assert.equal(JSON.parse(kubectl.stdout).kind, "APIVersions");
      assert.equal(api.authorizations.at(-1), `Bearer ${ISSUED_TOKEN}`);
      assert.deepEqual(kubectl.agentCalls, []);
    } finally {
      await runHooks(["pre-exit"], { options, env: { TMPDIR: tmp } });
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "kubernetes-server: kubectl uses the job's own kubeconfig (the cluster's CA from kubernetes-ca, the refreshed token file), and ~/.kube/config is neither read nor written",
  ignore: KUBECTL === undefined,
  async fn() {
    await using tokens = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
    await using api = startApiServer();
    const tmp = await Deno.makeTempDir({ prefix: "kube-server-" });
    const home = `${tmp}/home`;
    // The agent user's kubeconfig, shared by every job on the host: another cluster, another user.
    const shared = stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "other", cluster: { server: "https://127.0.0.1:1" } }],
      users: [{ name: "other", user: { token: "someone-elses-token" } }],
      contexts: [{ name: "other", context: { cluster: "other", user: "other" } }],
      "current-context": "other",
    });
    await Deno.mkdir(`${home}/.kube`, { recursive: true });
    await Deno.writeTextFile(`${home}/.kube/config`, shared);
    await Deno.writeTextFile(`${home}/.kube/cluster-ca.pem`, TEST_CERT);
    const options = {
      "token-endpoint": tokens.url,
      "kubernetes-server": api.url,
      "kubernetes-ca": "~/.kube/cluster-ca.pem",
      refresh: true,
    };
    const env = { TMPDIR: tmp, HOME: home };
    try {
      const result = await runHooks(["environment"], { options, env });
      assert.equal(result.code, 0, result.stderr);
      const kubeconfigPath = result.exported["KUBECONFIG"]!;
      assert.equal(kubeconfigPath, `${result.privateDir}/1/kubeconfig`);
      assert.equal((await Deno.stat(kubeconfigPath)).mode! & 0o777, 0o600);
      assert.match(
        result.stdout,
        new RegExp(`, KUBECONFIG \\(for ${api.url.replaceAll(".", "\\.")}\\)`),
      );
      const output = await new Deno.Command(KUBECTL!.path, {
        args: ["get", "--raw", "/api", `--cache-dir=${tmp}/cache`],
        clearEnv: true,
        env: { ...baseEnv(), HOME: home, KUBECONFIG: kubeconfigPath, PATH: "/usr/bin:/bin" },
        stdin: "null",
      }).output();
      assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
      assert.equal(JSON.parse(new TextDecoder().decode(output.stdout)).kind, "APIVersions");
      assert.equal(api.authorizations.at(-1), `Bearer ${ISSUED_TOKEN}`);
      assert.equal(await Deno.readTextFile(`${home}/.kube/config`), shared);
    } finally {
      await runHooks(["pre-exit"], { options, env });
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
