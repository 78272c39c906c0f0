import assert from "node:assert/strict";
import { parseCommandLine } from "./_cli_config.ts";
import { openSession } from "./_cli_exchange.ts";

Deno.test("openSession() gives the run one deadline, (retries + 1) × timeout + 30 s, for every request and wait", () => {
  const command = parseCommandLine(
    ["--token-endpoint", "https://sts.example.com/token", "--timeout", "2.5", "--retries", "1"],
    () => undefined,
  );
  assert.equal(command.kind, "run");
  if (command.kind !== "run") return;
  const before = Date.now();
  using session = openSession(command.config, undefined);
  const deadline = session.http.deadline!;
  assert.equal(deadline.ms, 2 * 2_500 + 30_000);
  assert.ok(deadline.at >= before + deadline.ms && deadline.at <= Date.now() + deadline.ms);
});
