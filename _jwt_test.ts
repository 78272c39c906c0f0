import assert from "node:assert/strict";
import { decodeJwt } from "./_jwt.ts";

function segment(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
}

Deno.test("decodeJwt() decodes the header and claims of a JWS", () => {
  const token = `${segment({ alg: "RS256", kid: "k" })}.${
    segment({ iss: "https://agent.buildkite.com", aud: ["a", "b"] })
  }.sig`;
  assert.deepEqual(decodeJwt(token), {
    header: { alg: "RS256", kid: "k" },
    claims: { iss: "https://agent.buildkite.com", aud: ["a", "b"] },
  });
});

Deno.test("decodeJwt() decodes base64url characters and UTF-8 that plain base64 breaks on", () => {
  // "?>" and "~~" encode to "_" and "-" in base64url; "é" is two UTF-8 bytes.
  const claims = { sub: "é?>~~ü", n: "??>>>" };
  const encoded = segment(claims);
  assert.match(encoded, /[-_]/);
  assert.deepEqual(decodeJwt(`${segment({ alg: "none" })}.${encoded}.`), {
    header: { alg: "none" },
    claims,
  });
});

Deno.test("decodeJwt() gives undefined for opaque and malformed tokens, never throwing", () => {
  const header = segment({ alg: "RS256" });
  for (
    const token of [
      "",
      "opaque-token",
      "ya29.a0AfH6SMB",
      `${header}.!!!.sig`,
      `${header}.${segment([1, 2])}.sig`,
      `${header}.${segment("string")}.sig`,
      `${header}.${btoa("{not json")}.sig`,
      `${header}.${segment({})}.sig.extra.parts`,
      `${header}.a.sig`,
      `.${segment({})}.sig`,
      `${header}.${btoa(String.fromCharCode(0xff, 0xfe))}.sig`,
    ]
  ) {
    assert.equal(decodeJwt(token), undefined, token);
  }
});
