import assert from "node:assert/strict";
import { maskSecrets, summarise } from "./_redact.ts";

Deno.test("maskSecrets() masks known secrets and anything shaped like a JWT", () => {
  assert.equal(
    maskSecrets("secret=hunter22 token=eyJhbGciOi.eyJzdWIi.c2ln partial=eyJhbGciOiJSUzI1", [
      "hunter22",
    ]),
    "secret=*** token=*** partial=***",
  );
});

Deno.test("maskSecrets() masks the longer of two overlapping secrets whole", () => {
  assert.equal(maskSecrets("abc-abcdef", ["abc", "abcdef"]), "***-***");
});

Deno.test("summarise() flattens to one line, drops control characters and shortens", () => {
  assert.equal(summarise("a\n\tb\u001b[31mc\u0000d", [], 200), "a b [31mc d");
  assert.equal(summarise("x".repeat(10), [], 4), "xxxx…");
});

Deno.test("maskSecrets() masks a secret form-encoded and percent-encoded too", () => {
  const secret = "s3cr:et%2F@/+ pass word";
  assert.equal(
    maskSecrets(
      `raw=${secret} form=${new URLSearchParams([["", secret]]).toString().slice(1)} uri=${
        encodeURIComponent(secret)
      }`,
      [secret],
    ),
    "raw=*** form=*** uri=***",
  );
});

Deno.test("maskSecrets() masks the signature of a JWT secret on its own", () => {
  // With the header and claims --debug prints, a leaked signature would rebuild the token.
  const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.U1VCSkVDVC1TSUdOQVRVUkUtU0VDUkVU";
  assert.equal(
    maskSecrets('error "U1VCSkVDVC1TSUdOQVRVUkUtU0VDUkVU" short=a.b.c', [jwt, "a.b.c"]),
    'error "***" short=***',
  );
});

Deno.test("summarise() masks a secret that flattening onto one line would rebuild", () => {
  // A NUL or a line break where the secret has a space becomes that space again.
  assert.equal(
    summarise('"pass\u0000word" "pass\r\nword" "pass word"', ["pass word"]),
    '"***" "***" "***"',
  );
});
