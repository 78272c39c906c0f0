import assert from "node:assert/strict";
import { execCredential } from "./_exec_credential.ts";

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
