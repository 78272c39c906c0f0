import assert from "node:assert/strict";
import { assumeRoleWithWebIdentity, xmlElement } from "./_aws.ts";
import { HttpStatusError, InvalidResponseError } from "./_errors.ts";

const TOKEN =
  "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcmdhbml6YXRpb246YWNtZSJ9.c2lnbmF0dXJlLW9mLXRoZS1vaWRjLXRva2Vu";
const REQUEST = {
  stsUrl: new URL("https://sts.us-east-1.amazonaws.com/"),
  roleArn: "arn:aws:iam::123456789012:role/deploy",
  sessionName: "buildkite-deploy-42",
  durationSeconds: 900,
  webIdentityToken: TOKEN,
};
const NS = 'xmlns="https://sts.amazonaws.com/doc/2011-06-15/"';

function credentials(fields: Partial<Record<string, string>> = {}): string {
  const f = {
    AccessKeyId: "ASIAEXAMPLE123456789",
    SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
    SessionToken: "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN+/=0123456789",
    Expiration: "2026-12-07T15:00:00Z",
    Arn: "arn:aws:sts::123456789012:assumed-role/deploy/buildkite-deploy-42",
    ...fields,
  };
  return `<AssumeRoleWithWebIdentityResponse ${NS}><AssumeRoleWithWebIdentityResult>` +
    `<Credentials><AccessKeyId>${f.AccessKeyId}</AccessKeyId><SecretAccessKey>${f.SecretAccessKey}</SecretAccessKey>` +
    `<SessionToken>${f.SessionToken}</SessionToken><Expiration>${f.Expiration}</Expiration></Credentials>` +
    `<AssumedRoleUser><Arn>${f.Arn}</Arn><AssumedRoleId>AROAEXAMPLE:buildkite-deploy-42</AssumedRoleId></AssumedRoleUser>` +
    `</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`;
}

/** Calls STS through a stand-in fetch that answers BODY with STATUS, recording the request. */
async function call(status: number, body: string) {
  const seen: { url?: string; body?: string; headers?: Headers } = {};
  const fetch = async (input: string | URL | Request, init?: RequestInit) => {
    seen.url = String(input);
    seen.body = String(init?.body);
    seen.headers = new Headers(init?.headers);
    return await Promise.resolve(
      new Response(body, { status, headers: { "content-type": "text/xml" } }),
    );
  };
  const result = await assumeRoleWithWebIdentity(REQUEST, { fetch, retries: 0 }).catch((e) => e);
  return { result, seen };
}

Deno.test("assumeRoleWithWebIdentity() posts the Query API form, unsigned, and reads STS's credentials", async () => {
  const { result, seen } = await call(200, credentials());
  assert.equal(seen.url, "https://sts.us-east-1.amazonaws.com/");
  assert.equal(seen.headers?.get("authorization"), null);
  assert.deepEqual([...new URLSearchParams(seen.body)], [
    ["Action", "AssumeRoleWithWebIdentity"],
    ["Version", "2011-06-15"],
    ["RoleArn", REQUEST.roleArn],
    ["RoleSessionName", REQUEST.sessionName],
    ["WebIdentityToken", TOKEN],
    ["DurationSeconds", "900"],
  ]);
  assert.deepEqual(result, {
    accessKeyId: "ASIAEXAMPLE123456789",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
    sessionToken: "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN+/=0123456789",
    expiration: "2026-12-07T15:00:00Z",
    assumedRoleArn: "arn:aws:sts::123456789012:assumed-role/deploy/buildkite-deploy-42",
  });
});

Deno.test("assumeRoleWithWebIdentity() reports STS's code and message, masked, with what to change", async () => {
  const denied = await call(
    403,
    `<ErrorResponse ${NS}><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity &amp; more</Message></Error></ErrorResponse>`,
  );
  assert.ok(denied.result instanceof HttpStatusError);
  assert.equal(
    denied.result.message,
    "AWS STS refused AssumeRoleWithWebIdentity for arn:aws:iam::123456789012:role/deploy: HTTP 403, AccessDenied: \"Not authorized to perform sts:AssumeRoleWithWebIdentity & more\"; check that the account has an IAM OIDC provider for the token's iss with its aud as an audience, and that the role's trust policy accepts the iss, sub and aud below",
  );
  // A hostile STS that echoes the token, in the message or split by a line break, never shows it.
  const echoed = await call(
    400,
    `<ErrorResponse><Error><Code>ValidationError</Code><Message>bad token ${TOKEN}&#10;requested DurationSeconds exceeds the MaxSessionDuration</Message></Error></ErrorResponse>`,
  );
  assert.equal(echoed.result.message.includes(TOKEN), false);
  assert.match(
    echoed.result.message,
    /HTTP 400, ValidationError: "bad token \*\*\* requested DurationSeconds exceeds the MaxSessionDuration"; set aws-session-duration to at most the role's maximum session duration, or raise that$/,
  );
  const page = await call(502, "<html>Bad gateway</html>");
  assert.equal(
    page.result.message,
    'AWS STS answered HTTP 502 (text/xml): "<html>Bad gateway</html>": check AWS_ENDPOINT_URL_STS or aws-region',
  );
});

Deno.test("assumeRoleWithWebIdentity() refuses a 200 that does not hold usable credentials, quoting none", async () => {
  const cases: [string, string][] = [
    [
      "<html>login</html>",
      'AWS STS answered HTTP 200 without the credentials AssumeRoleWithWebIdentity returns ("<html>login</html>")',
    ],
    [
      credentials({ AccessKeyId: "not a key" }),
      "AWS STS answered HTTP 200 with an AccessKeyId that is not one",
    ],
    [
      credentials({ Expiration: "soon; export X=1" }),
      "AWS STS answered HTTP 200 with an Expiration that is not a time",
    ],
    [
      credentials({ Arn: "arn:aws:sts::123456789012:assumed-role/deploy/a b" }),
      "AWS STS answered HTTP 200 with an AssumedRoleUser Arn that is not an assumed role's",
    ],
    [
      credentials({ SecretAccessKey: "short" }),
      "AWS STS answered HTTP 200 with a SecretAccessKey that is 5 characters long, fewer than the 16 a token needs to be masked in logs without masking ordinary words",
    ],
    [
      credentials({ SessionToken: "token-with-a-\u0007-bell-in-it-0123" }),
      "AWS STS answered HTTP 200 with a SessionToken that has U+0007 at character 14, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed",
    ],
  ];
  for (const [body, message] of cases) {
    const { result } = await call(200, body);
    assert.ok(result instanceof InvalidResponseError, String(result));
    assert.equal(result.message, message);
  }
});

Deno.test("xmlElement() reads an element's text with its entities, and nothing else", () => {
  assert.equal(
    xmlElement("<a><Code>x &lt;y&gt; &#65;&#x42; &quot;&apos;&amp;</Code></a>", "Code"),
    "x <y> AB \"'&",
  );
  assert.equal(xmlElement("<Code><b>nested</b></Code>", "Code"), undefined);
  assert.equal(xmlElement("<Code>&#x110000;</Code>", "Code"), "\ufffd");
  assert.equal(xmlElement("no xml", "Code"), undefined);
});
