import assert from "node:assert/strict";
import { parseCommandLine } from "./_cli_config.ts";
import { openSession, type SessionOptions, sessionOptions } from "./_cli_exchange.ts";
import { UsageError } from "./_cli_flags.ts";
import { NetworkError } from "./_errors.ts";
import { exchange } from "./_exchange.ts";
import { startTokenEndpoint } from "./tests/_token_endpoint.ts";
import { TEST_CERT, TEST_KEY } from "./tests/_tls.ts";

Deno.test("openSession() gives the run one deadline, (retries + 1) × timeout + 30 s, for every request and wait", () => {
  const command = parseCommandLine(
    ["--token-endpoint", "https://sts.example.com/token", "--timeout", "2.5", "--retries", "1"],
    () => undefined,
  );
  assert.equal(command.kind, "run");
  if (command.kind !== "run") return;
  const before = Date.now();
  using session = openSession(
    sessionOptions(command.config),
    command.config.tokenEndpoint!,
    undefined,
  );
  const deadline = session.http.deadline!;
  assert.equal(deadline.ms, 2 * 2_500 + 30_000);
  assert.ok(deadline.at >= before + deadline.ms && deadline.at <= Date.now() + deadline.ms);
});

Deno.test("openSession() trusts ca-file's CA for every request; without it the certificate is reported as not trusted, at once", async (t) => {
  await using server = startTokenEndpoint(undefined, { cert: TEST_CERT, key: TEST_KEY });
  const dir = await Deno.makeTempDir({ prefix: "ca-file-test-" });
  try {
    const options: SessionOptions = {
      timeout: 5_000,
      retries: 3,
      caFile: undefined,
      caFileLabel: "ca-file",
    };
    const url = new URL(server.url);
    const send = async (caFile: string | undefined) => {
      using session = openSession({ ...options, caFile }, url, undefined);
      return await exchange({
        ...session.http,
        tokenEndpoint: url,
        subjectToken: "subject-token-0123456789",
      });
    };
    await t.step("trusted with ca-file", async () => {
      const caFile = `${dir}/ca.pem`;
      await Deno.writeTextFile(caFile, TEST_CERT);
      assert.equal((await send(caFile)).accessToken, "issued-access-token-0123456789");
    });
    await t.step("not trusted without it, and not retried", async () => {
      const before = server.requests.length;
      const error = await send(undefined).catch((e) => e);
      assert.ok(error instanceof NetworkError);
      assert.match(
        error.message,
        /^Token endpoint "https:\/\/127\.0\.0\.1:\d+\/token" presented a certificate that is not trusted here, from a CA this machine does not know \(.*UnknownIssuer.*\)$/,
      );
      assert.equal(error.attempts, 1);
      assert.equal(server.requests.length, before);
    });
    await t.step("a file that is missing or holds no certificate is a configuration error", () => {
      const refused = (caFile: string) => {
        try {
          openSession({ ...options, caFile }, url, undefined)[Symbol.dispose]();
        } catch (error) {
          assert.ok(error instanceof UsageError);
          return error.message;
        }
        assert.fail("no error");
      };
      assert.match(
        refused(`${dir}/missing.pem`),
        /^ca-file is ".*\/missing\.pem", which cannot be read \(No such file or directory.*\): name a readable PEM file that holds the CA's certificate$/,
      );
      const key = `${dir}/key.pem`;
      Deno.writeTextFileSync(key, "not a certificate\n");
      assert.equal(
        refused(key),
        `ca-file is "${key}", which holds no PEM certificate (no -----BEGIN CERTIFICATE----- line, or not plain text): name the CA's certificate in PEM form`,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
