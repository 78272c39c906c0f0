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

Deno.test("maskSecrets() masks a secret in every form it may be echoed in", () => {
  const secret = "S3cr:et%2F/ü+x y&z~1";
  const bytes = (text: string) => String.fromCharCode(...new TextEncoder().encode(text));
  const b64 = (text: string) => btoa(bytes(text));
  const b64url = (text: string) => b64(text).replaceAll("+", "-").replaceAll("/", "_");
  const percent = encodeURIComponent(secret);
  const forms: Record<string, string> = {
    "as it is": secret,
    "percent-encoded": percent,
    "percent-encoded, lower-case hex": percent.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
    "percent-encoded, / left plain": percent.replaceAll("%2F", "/"),
    "percent-encoded twice": encodeURIComponent(percent),
    "percent-encoded twice, lower-case hex": encodeURIComponent(
      percent.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
    ),
    "form-encoded": new URLSearchParams({ x: secret }).toString().slice(2),
    "JSON-escaped": JSON.stringify(secret),
    "JSON-escaped with \\/": JSON.stringify(secret).replaceAll("/", "\\/"),
    "JSON-escaped as ASCII": JSON.stringify(secret).replace("ü", "\\u00fc"),
    "JSON-escaped as ASCII, upper-case hex": JSON.stringify(secret).replace("ü", "\\u00FC"),
    "base64": b64(secret),
    "base64 without padding": b64(secret).replace(/=+$/, ""),
    "base64url": b64url(secret),
    // RFC 6749 §2.3.1: the ID and the secret form-encoded, then base64.
    "the Basic credentials": `Basic ${
      b64(`ci:${new URLSearchParams([["", secret]]).toString().slice(1)}`)
    }`,
  };
  for (const [name, form] of Object.entries(forms)) {
    const masked = maskSecrets(`echo: ${form} ok`, [secret]);
    assert.ok(
      masked.startsWith("echo: ") && masked.endsWith(" ok") && masked.includes("***"),
      name,
    );
    assert.ok(!masked.includes(form.replace(/^Basic /, "")), `${name}: ${masked}`);
  }
  // Inside a longer base64 value, at each alignment: none of what only the secret decides is left.
  for (const prefix of ["", "a", "ab", "abc:"]) {
    for (const encode of [b64, b64url]) {
      const whole = encode(`${prefix}${secret}!`);
      const masked = maskSecrets(whole, [secret]);
      const core = encode(`${prefix}${secret}`).slice(Math.ceil(prefix.length * 8 / 6), -4);
      for (let i = 0; i + 8 <= core.length; i++) {
        assert.ok(!masked.includes(core.slice(i, i + 8)), `${prefix}: ${masked}`);
      }
    }
  }
});

Deno.test("maskSecrets() leaves text that only looks a little like a secret", () => {
  assert.equal(
    maskSecrets("a short secret is ab, and here is aGVsbG8", ["ab", "xyz"]),
    "a short secret is ab, and here is aGVsbG8",
  );
});

Deno.test("oneLine() shows bidi controls and zero-width characters by their code, so nothing is reordered or hidden", () => {
  assert.equal(
    oneLine(
      "invalid_grant: \u202Egnp.exe\u202C at \u2066x\u2069\u200B\u200D\uFEFFok\u00AD", /* U+FEFF is JavaScript whitespace: a space */
    ),
    "invalid_grant: \\u202egnp.exe\\u202c at \\u2066x\\u2069\\u200b\\u200d ok\\u00ad",
  );
  for (let code = 0; code <= 0xffff; code++) {
    const line = oneLine(`a${String.fromCharCode(code)}b`);
    assert.doesNotMatch(line, /\p{Cf}/u, `U+${code.toString(16)}`);
  }
});
