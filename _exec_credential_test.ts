import assert from "node:assert/strict";
import { UsageError } from "./_cli_flags.ts";
import { execCredential, execCredentialApiVersion } from "./_exec_credential.ts";

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

Deno.test("execCredential() gives the token and, when its lifetime is known, an RFC 3339 UTC expiry in whole seconds", () => {
  const now = Date.UTC(2026, 10, 26, 12, 0, 0, 750);
  assert.deepEqual(
    JSON.parse(execCredential("client.authentication.k8s.io/v1", "tok", 3599, now)),
    {
      apiVersion: "client.authentication.k8s.io/v1",
      kind: "ExecCredential",
      status: { token: "tok", expirationTimestamp: "2026-11-26T12:59:59Z" },
    },
  );
  assert.equal(
    execCredential("client.authentication.k8s.io/v1beta1", "tok", undefined, now),
    '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"tok"}}',
  );
  // A lifetime past the year 9999 has no RFC 3339 form: as good as none.
  assert.deepEqual(
    JSON.parse(execCredential("client.authentication.k8s.io/v1", "tok", 1e20, now)).status,
    { token: "tok" },
  );
});
