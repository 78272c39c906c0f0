// README, plugin.yml, --help and the SPEC's option list agree on every option, default and version.

import assert from "node:assert/strict";
import { parse } from "yaml";
import { Ajv } from "ajv";
import { FLAGS, helpText } from "../_cli_options.ts";
import denoJson from "../deno.json" with { type: "json" };

const read = (path: string) => Deno.readTextFile(new URL(`../${path}`, import.meta.url));
const README = await read("README.md");
const PLUGIN = parse(await read("plugin.yml"));
const SCHEMA = PLUGIN.configuration;

/** SPEC's plugin options and their defaults ("" where there is none). */
const OPTIONS: Record<string, string> = {
  "token-endpoint": "",
  issuer: "",
  audience: "buildkite",
  "buildkite-audience": "",
  lifetime: "",
  claims: "",
  "subject-token-type": "urn:ietf:params:oauth:token-type:jwt",
  "target-audience": "",
  resource: "",
  scope: "",
  "requested-token-type": "",
  // Beyond SPEC's table: Dex needs connector_id, Keycloak's legacy exchange subject_issuer.
  "extra-params": "",
  "client-id": "",
  "client-secret-env": "",
  "client-auth": "basic",
  "env-var": "FEDERATED_ACCESS_TOKEN",
  "token-file": "",
  timeout: "10",
  retries: "3",
  hook: "environment",
  redact: "true",
  debug: "false",
};
/** Options only the hooks use, which the CLI has no flag for. */
const HOOK_ONLY = ["buildkite-audience", "env-var", "token-file", "hook", "redact"];

Deno.test("plugin.yml declares exactly SPEC's options, closed, with token-endpoint or issuer required", () => {
  assert.deepEqual(Object.keys(SCHEMA.properties).sort(), Object.keys(OPTIONS).sort());
  assert.equal(SCHEMA.additionalProperties, false);
  assert.deepEqual(SCHEMA.anyOf, [{ required: ["token-endpoint"] }, { required: ["issuer"] }]);
  assert.deepEqual(SCHEMA.properties["client-auth"].enum, ["basic", "post"]);
  assert.deepEqual(SCHEMA.properties.hook.enum, ["environment", "pre-command"]);
  for (const name of ["redact", "debug"]) assert.equal(SCHEMA.properties[name].type, "boolean");
  assert.deepEqual(PLUGIN.requirements, ["bash", "buildkite-agent"]);
});

Deno.test("README has one section per option, in plugin.yml's order, each with SPEC's default", () => {
  const headings = [...README.matchAll(/^### `([a-z-]+)` \((required|optional)[^)]*\)$/gm)].map((
    m,
  ) => m[1]);
  assert.deepEqual(headings, Object.keys(SCHEMA.properties));
  for (const [name, fallback] of Object.entries(OPTIONS)) {
    if (fallback === "") continue;
    const section = README.split(`### \`${name}\``)[1]!.split("\n### ")[0]!;
    assert.match(section, new RegExp(`Default:\\s+\`${fallback.replaceAll(".", "\\.")}\``), name);
  }
});

Deno.test("--help and the README's CLI table name a flag for every option the CLI takes", () => {
  const help = helpText(denoJson.version);
  for (const option of Object.keys(OPTIONS).filter((name) => !HOOK_ONLY.includes(name))) {
    const flag = option === "claims" ? "claim" : option === "extra-params" ? "extra-param" : option;
    assert.ok(FLAGS[flag], `no --${flag} flag`);
    assert.match(help, new RegExp(`--${flag} `), `--help lacks --${flag}`);
  }
  for (const flag of Object.keys(FLAGS)) {
    assert.ok(README.includes(`\`--${flag}`), `README's CLI table lacks --${flag}`);
  }
});

Deno.test("README's pipeline examples pin the current version and pass plugin.yml's schema", () => {
  const validate = new Ajv({ strict: false, allErrors: true }).compile(SCHEMA);
  const blocks = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => parse(m[1]!));
  let checked = 0;
  for (const block of blocks) {
    for (const step of block.steps ?? []) {
      for (const plugin of step.plugins ?? []) {
        for (const [source, config] of Object.entries(plugin as Record<string, unknown>)) {
          if (!source.startsWith("equinixmetal-buildkite/token-exchange")) continue;
          assert.equal(source, `equinixmetal-buildkite/token-exchange#v${denoJson.version}`);
          assert.ok(
            validate(config),
            `${JSON.stringify(config)}: ${JSON.stringify(validate.errors)}`,
          );
          checked++;
        }
      }
    }
  }
  assert.ok(checked >= 3, `only ${checked} examples found`);
});

Deno.test("plugin.yml's schema refuses what the plugin refuses", () => {
  const validate = new Ajv({ strict: false }).compile(SCHEMA);
  for (
    const config of [
      {},
      { "token-endpoint": "https://x", "token-endpont": "typo" },
      { "token-endpoint": "https://x", "client-auth": "jwt" },
      { "token-endpoint": "https://x", hook: "post-command" },
      { "token-endpoint": "https://x", redact: "yes" },
      { "token-endpoint": "https://x", "env-var": "MY-TOKEN" },
      { "token-endpoint": "https://x", timeout: 0 },
    ]
  ) {
    assert.equal(validate(config), false, JSON.stringify(config));
  }
  assert.equal(
    validate({ "token-endpoint": "https://x", "buildkite-audience": "a", debug: true }),
    true,
  );
});
