// The demo's stand-in for buildkite-agent: `oidc request-token` mints a Buildkite-shaped OIDC token
// signed with the demo's "Buildkite" key; `redactor add` records a digest of what it read on stdin
// (so the demo can show the token reached the redactor without keeping the token).

import { importPrivateKey, signJwt } from "./_jose.ts";

const [command, subcommand, ...rest] = Deno.args;
const work = Deno.env.get("DEMO_WORK_DIR")!;

if (command === "oidc" && subcommand === "request-token") {
  let audience = "https://buildkite.com/acme";
  let lifetime = 300;
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i] === "--audience") audience = rest[i + 1]!;
    if (rest[i] === "--lifetime") lifetime = Number(rest[i + 1]);
  }
  const pipeline = Deno.env.get("DEMO_PIPELINE") ?? "deploy";
  const commit = "9f3182061f1e2cca4702c368cbc039b7dc9d4485";
  const now = Math.floor(Date.now() / 1000);
  const key = await importPrivateKey(
    JSON.parse(await Deno.readTextFile(`${work}/buildkite-key.json`)),
    "RS256",
  );
  console.log(
    await signJwt(
      {
        iss: "https://agent.buildkite.com",
        sub:
          `organization:acme:pipeline:${pipeline}:ref:refs/heads/main:commit:${commit}:step:deploy`,
        aud: audience,
        iat: now,
        nbf: now,
        exp: now + lifetime,
        organization_slug: "acme",
        pipeline_slug: pipeline,
        build_number: 42,
        build_branch: "main",
        build_commit: commit,
        step_key: "deploy",
        job_id: Deno.env.get("BUILDKITE_JOB_ID"),
        agent_id: "0184990a-4782-42b5-afc1-16715b10b8ff",
        runner_environment: "self-hosted",
      },
      key,
      "RS256",
      "buildkite-demo-key",
    ),
  );
} else if (command === "redactor" && subcommand === "add") {
  const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  const digest = await crypto.subtle.digest("SHA-256", input);
  await Deno.writeTextFile(`${work}/redacted`, `${new Uint8Array(digest).toHex()}\n`, {
    append: true,
  });
} else {
  console.error(`buildkite-agent (demo stand-in): unsupported command: ${Deno.args.join(" ")}`);
  Deno.exit(64);
}
