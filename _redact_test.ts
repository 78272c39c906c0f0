import assert from "node:assert/strict";
import { maskSecrets, oneLine, summarise } from "./_redact.ts";

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

Deno.test("oneLine() replaces C0, DEL, C1 and the Unicode line separators, so no line can be forged", () => {
  const forged = [
    "ok\n^^^ +++",
    "ok\r~~~ :key: x",
    "ok\u000b--- x",
    "ok\u000c+++ x",
    "ok\u0085token-exchange: fine",
    "ok\u2028^^^ +++",
    "ok\u2029~~~",
    "ok\u001b[2K\u001b[1G^^^ +++",
    "ok\u009b2K^^^ +++",
    "ok\u007f\u0000\u0007---",
  ];
  assert.deepEqual(forged.map(oneLine), [
    "ok ^^^ +++",
    "ok ~~~ :key: x",
    "ok --- x",
    "ok +++ x",
    "ok token-exchange: fine",
    "ok ^^^ +++",
    "ok ~~~",
    "ok [2K [1G^^^ +++",
    "ok 2K^^^ +++",
    "ok ---",
  ]);
  for (let code = 0; code <= 0xffff; code++) {
    const line = oneLine(`a${String.fromCharCode(code)}b`);
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f\u2028\u2029]/, `U+${code.toString(16)}`);
  }
});

Deno.test("maskSecrets() masks the value of every credential field, in JSON, form-encoded, query and plain forms", () => {
  assert.equal(
    maskSecrets(
      '{"access_token":"a1","refresh_token" : "r\\"2","id_token":"i3"} ' +
        "subject_token=s4&actor_token=a5&client_secret=c6&scope=read " +
        "https://x.example/cb?access_token=a7#id_token=i8 " +
        "{'assertion': 'as9'} client_assertion=ca10&client_assertion_type=urn:x " +
        '"{\\"access_token\\":\\"a11\\"}" access_token: a12',
    ),
    '{"access_token":"***","refresh_token" : "***","id_token":"***"} ' +
      "subject_token=***&actor_token=***&client_secret=***&scope=read " +
      "https://x.example/cb?access_token=***#id_token=*** " +
      "{'assertion': '***'} client_assertion=***&client_assertion_type=urn:x " +
      '"{\\"access_token\\":\\"***\\"}" access_token: ***',
  );
  // Names that only end like a credential field's, and fields without a value, are left alone.
  assert.equal(
    maskSecrets(
      "token_type=Bearer issued_token_type=x access_token= expires_in=1 STS_ID_TOKEN: { aud }",
    ),
    "token_type=Bearer issued_token_type=x access_token= expires_in=1 STS_ID_TOKEN: { aud }",
  );
  // A body cut short in the middle of a value is masked to its end.
  assert.equal(maskSecrets('{"refresh_token":"r-cut-sh'), '{"refresh_token":"***"');
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
