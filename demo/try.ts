// `deno task try [pipeline.yml]`: try your own pipeline.yml options on this machine. It starts the
// demo's token endpoint (which verifies the stand-in agent's signed tokens and accepts any
// audience), stand-ins for AWS STS and Google's STS and IAM, and a stand-in buildkite-agent; turns
// the first token-exchange entry of PIPELINE_YML (or the demo's options) into the
// BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables the agent would set, with every endpoint pointing here;
// writes them to a file to `source`; and runs until Ctrl-C, saying what each token request carried.

import { parse } from "yaml";
import { startAwsStandIn } from "../tests/_aws.ts";
import { startGoogleStandIns } from "../tests/_google.ts";
import { agentScript, startDemoSts } from "./_sts.ts";

const PREFIX = "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_";
const DEMO_OPTIONS = {
  "token-endpoint": "https://sts.example.com/oauth2/token",
  audience: "sts.example.com",
  "target-audience": "https://api.example.com",
  scope: "deploy",
};

/** A value as the shell reads it back, between single quotes. */
function quoted(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

/** The first token-exchange entry's options in a pipeline.yml, and the step it is in. */
function entryOf(text: string): { options: Record<string, unknown>; step: string } {
  const pipeline = parse(text) as { steps?: Record<string, unknown>[] } | null;
  for (const [index, step] of (pipeline?.steps ?? []).entries()) {
    for (const plugin of [step.plugins ?? []].flat() as Record<string, unknown>[]) {
      for (const [source, options] of Object.entries(plugin ?? {})) {
        if (/(^|\/)token-exchange(-buildkite-plugin)?(#|$)/.test(source)) {
          const label = typeof step.label === "string" ? step.label : `step ${index + 1}`;
          return { options: (options ?? {}) as Record<string, unknown>, step: label };
        }
      }
    }
  }
  throw new Error("no step of this pipeline.yml uses the token-exchange plugin");
}

/** The variables the agent sets for a plugin's options: lists as _0, _1, …; the rest as text. */
function variablesOf(options: Record<string, unknown>): [string, string][] {
  const variables: [string, string][] = [];
  for (const [name, value] of Object.entries(options)) {
    const key = `${PREFIX}${name.toUpperCase().replaceAll("-", "_")}`;
    if (Array.isArray(value)) {
      value.forEach((item, i) => variables.push([`${key}_${i}`, `${item}`]));
    } else variables.push([key, `${value}`]);
  }
  return variables;
}

const path = Deno.args[0];
const { options, step } = path === undefined
  ? { options: DEMO_OPTIONS as Record<string, unknown>, step: "the demo's options" }
  : entryOf(await Deno.readTextFile(path));
const work = await Deno.makeTempDir({ prefix: "token-exchange-try-" });
await Deno.mkdir(`${work}/tmp`, { mode: 0o700 });
const report = (what: string) => console.log(`  ${what}`);
const sts = await startDemoSts(work, {
  trustedSubject: /^organization:acme:pipeline:/,
  onRequest: (seen) => {
    const claims = seen.subjectClaims ?? {};
    report(
      `token endpoint: ${seen.refusal ? `refused (${seen.refusal})` : "issued a token"} for aud=${
        JSON.stringify(claims.aud)
      } sub=${JSON.stringify(claims.sub)}`,
    );
  },
});
const aws = startAwsStandIn({ lifetimeSeconds: 3600 });
const google = startGoogleStandIns({ lifetimeSeconds: 3600 });
const bin = await agentScript(work);

// Every endpoint points here: the token endpoint (or issuer), Google's STS, AWS STS, Google IAM.
const local = { ...options };
const changed: string[] = [];
for (const name of ["token-endpoint", "issuer"]) {
  if (local[name] === undefined) continue;
  changed.push(`${name} (${local[name]})`);
  delete local[name];
}
if (local["google-credentials"] === true) local["token-endpoint"] = google.stsUrl;
else if (local["aws-role-arn"] === undefined) local["token-endpoint"] = sts.endpoint;
const variables = variablesOf(local);
const denoDir = Deno.execPath().replace(/\/[^/]*$/, "");
await Deno.writeTextFile(
  `${work}/env.sh`,
  [
    "# deno task try: the job's environment, as the Buildkite agent would set it for this entry",
    `export PATH=${quoted(`${bin}:${denoDir}`)}:"$PATH"`,
    `export TMPDIR=${quoted(`${work}/tmp`)} DEMO_WORK_DIR=${quoted(work)}`,
    `export BUILDKITE_JOB_ID=${
      quoted(crypto.randomUUID())
    } BUILDKITE_PIPELINE_SLUG=deploy BUILDKITE_BUILD_NUMBER=1`,
    `export AWS_ENDPOINT_URL_STS=${quoted(aws.url)} TOKEN_EXCHANGE_GOOGLE_IAM_URL=${
      quoted(`${google.origin}/v1`)
    }`,
    `unset $(compgen -v ${PREFIX}) 2>/dev/null || true`,
    ...variables.map(([name, value]) => `export ${name}=${quoted(value)}`),
    "",
  ].join("\n"),
);

console.log(`token-exchange try: ${step}, on this machine

The options, as the agent hands them to the plugin:
${variables.map(([name, value]) => `  ${name}=${value}`).join("\n")}
${
  changed.length > 0
    ? `(${changed.join(", ")} replaced by this machine's token endpoint, ${sts.endpoint})\n`
    : ""
}
In another terminal, from the plugin's checkout, start a throwaway bash (the hooks set -euo
pipefail, as the agent's do) and source:

  source ${work}/env.sh && source hooks/environment

then \`source hooks/pre-exit\` to clean up as a job's end does. To change an option, edit
  ${work}/env.sh
The token endpoint trusts any audience for pipelines of organization acme (the stand-in agent's
tokens); stand-ins for AWS STS and Google's STS and IAM answer AWS and Google entries. Ctrl-C stops
them all and removes what this run made.

What the endpoints see:`);

const stop = async () => {
  await Promise.all([sts.close(), aws.close(), google.close()]);
  await Deno.remove(work, { recursive: true });
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
