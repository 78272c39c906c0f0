// The documentation users read: the README, docs/, CONTRIBUTING.md, SECURITY.md, CHANGELOG.md and
// RELEASING.md agree with plugin.yml, --help and each other, stay within their size, use no
// internal words, and link only to files and headings that exist.

import assert from "node:assert/strict";
import { parse } from "yaml";
import { Ajv } from "ajv";
import { FLAGS, helpText } from "../_cli_flags.ts";
import { VERSION } from "../_constants.ts";
import denoJson from "../deno.json" with { type: "json" };
import {
  anchors,
  blocks,
  exists,
  headings,
  links,
  read,
  REPOSITORY,
  section,
  slug,
  split,
  userDocs,
} from "./_markdown.ts";
import { ROOT_PATH } from "./_publish.ts";

const README = await read("README.md");
const PLUGIN = parse(await read("plugin.yml"));
const SCHEMA = PLUGIN.configuration;
const DOCS = await userDocs();
const TEXT = new Map(
  await Promise.all(DOCS.map(async (path) => [path, await read(path)] as const)),
);

/** The plugin's options and their defaults ("" where there is none). */
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
  "extra-params": "",
  "client-id": "",
  "client-secret-env": "",
  "client-auth": "basic",
  "grant-type": "token-exchange",
  "env-var": "FEDERATED_ACCESS_TOKEN",
  "token-file": "",
  timeout: "10",
  retries: "3",
  "ca-file": "",
  hook: "environment",
  redact: "true",
  debug: "false",
  refresh: "false",
  "oidc-token-file": "",
  "google-credentials": "false",
  "service-account": "",
  "service-account-token-lifetime": "",
  "aws-role-arn": "",
  "aws-session-name": "buildkite-<pipeline>-<build number>-<step key or job ID>",
  "aws-session-duration": "",
  "aws-region": "",
  "aws-session-tags": "",
  "aws-credentials": "web-identity",
  "kubernetes-server": "",
  "kubernetes-ca": "",
  "azure-client-id": "",
  "azure-tenant-id": "",
  "azure-authority-host": "https://login.microsoftonline.com",
  "vault-addr": "",
  "vault-role": "",
  "vault-mount": "jwt",
  "vault-namespace": "",
  "github-token-scope": "",
  "github-token-identity": "",
  "octo-sts-url": "https://octo-sts.dev",
  "github-api-url": "https://api.github.com",
  revoke: "true",
  "revocation-endpoint": "",
};
/** Options only the hooks use, which the CLI has no flag for. */
const HOOK_ONLY = [
  "buildkite-audience",
  "env-var",
  "token-file",
  "hook",
  "redact",
  "refresh",
  "oidc-token-file",
  "google-credentials",
  "service-account",
  "service-account-token-lifetime",
  "aws-role-arn",
  "aws-session-name",
  "aws-session-duration",
  "aws-region",
  "aws-session-tags",
  "aws-credentials",
  "kubernetes-server",
  "kubernetes-ca",
  "azure-client-id",
  "azure-tenant-id",
  "azure-authority-host",
  "vault-addr",
  "vault-role",
  "vault-mount",
  "vault-namespace",
  "github-token-scope",
  "github-token-identity",
  "octo-sts-url",
  "github-api-url",
  "revoke",
  "revocation-endpoint",
];

/** A link to a file of this repository as a path from its root (and anchor), or undefined. */
function localTarget(from: string, target: string): { path: string; anchor?: string } | undefined {
  const [address, anchor] = target.split("#", 2) as [string, string | undefined];
  if (address === "") return { path: from, anchor };
  for (const prefix of [`${REPOSITORY}/blob/main/`, `${REPOSITORY}/tree/main/`]) {
    if (address.startsWith(prefix)) return { path: address.slice(prefix.length), anchor };
  }
  if (/^[a-z]+:/i.test(address)) return undefined;
  const base = new URL(from, "file:///repository/");
  const path = decodeURIComponent(new URL(address, base).pathname.slice("/repository/".length));
  return { path, anchor };
}

Deno.test("plugin.yml declares exactly the plugin's options, closed, with an endpoint or a mode's option required", () => {
  assert.deepEqual(Object.keys(SCHEMA.properties).sort(), Object.keys(OPTIONS).sort());
  assert.equal(SCHEMA.additionalProperties, false);
  assert.deepEqual(SCHEMA.anyOf, [
    { required: ["token-endpoint"] },
    { required: ["issuer"] },
    { required: ["aws-role-arn"] },
    { required: ["google-credentials"] },
    { required: ["azure-client-id"] },
    { required: ["vault-addr"] },
    { required: ["github-token-scope"] },
  ]);
  assert.deepEqual(SCHEMA.properties["client-auth"].enum, ["basic", "post", "assertion"]);
  assert.deepEqual(SCHEMA.properties["grant-type"].enum, [
    "token-exchange",
    "jwt-bearer",
    "client-credentials",
  ]);
  assert.deepEqual(SCHEMA.properties.hook.enum, ["environment", "pre-command"]);
  for (const name of ["redact", "debug"]) assert.equal(SCHEMA.properties[name].type, "boolean");
  assert.deepEqual(SCHEMA.properties["token-file"].type, ["boolean", "string"]);
  assert.deepEqual(PLUGIN.requirements, ["bash", "buildkite-agent"]);
});

Deno.test("README has one section per option, in plugin.yml's order, each with its default", () => {
  const reference = section(README, "## Configuration");
  const names = headings(reference, 3).map((heading) => {
    const match = heading.match(/^`([a-z-]+)` \((required|optional)[^)]*\)$/);
    assert.ok(match, `"### ${heading}" is not "### \`option\` (required|optional, type)"`);
    return match[1];
  });
  assert.deepEqual(names, Object.keys(SCHEMA.properties));
  for (const [name, fallback] of Object.entries(OPTIONS)) {
    const text = reference.split(`### \`${name}\``)[1]!.split("\n### ")[0]!;
    const expected = fallback === ""
      ? "Default:\\s+(none|the agent's)"
      : `Default:\\s+\`${fallback.replaceAll(".", "\\.")}\``;
    assert.match(text, new RegExp(expected), name);
  }
});

Deno.test("--help and docs/cli.md's table name a flag for every option the CLI takes", async () => {
  const help = helpText(denoJson.version);
  const cli = await read("docs/cli.md");
  for (const option of Object.keys(OPTIONS).filter((name) => !HOOK_ONLY.includes(name))) {
    const flag = option === "claims" ? "claim" : option === "extra-params" ? "extra-param" : option;
    assert.ok(FLAGS[flag], `no --${flag} flag`);
    assert.match(help, new RegExp(`--${flag} `), `--help lacks --${flag}`);
  }
  const table = section(cli, "## Flags");
  for (const flag of Object.keys(FLAGS)) {
    assert.ok(table.includes(`\`--${flag}`), `docs/cli.md's flag table lacks --${flag}`);
  }
});

Deno.test("pipeline examples pin the current version, pass plugin.yml's schema and use token-file: true", () => {
  const validate = new Ajv({ strict: false, allErrors: true }).compile(SCHEMA);
  let checked = 0;
  for (const [path, text] of TEXT) {
    for (const block of blocks(text, "yaml").map((yaml) => parse(yaml))) {
      for (const step of block?.steps ?? []) {
        // A `$` in pipeline.yml is replaced at upload, before the plugin has exported anything.
        for (const command of [step.command ?? []].flat()) {
          assert.doesNotMatch(command, /(?<!\$)\$(?!\$)/, `${path}: write $$ in "${command}"`);
        }
        for (const plugin of step.plugins ?? []) {
          for (const [source, config] of Object.entries(plugin as Record<string, unknown>)) {
            if (!source.startsWith("equinixmetal-buildkite/token-exchange")) continue;
            assert.equal(
              source,
              `equinixmetal-buildkite/token-exchange#v${denoJson.version}`,
              path,
            );
            assert.ok(
              validate(config),
              `${path}: ${JSON.stringify(config)}: ${JSON.stringify(validate.errors)}`,
            );
            const tokenFile = (config as Record<string, unknown>)["token-file"];
            assert.ok(
              tokenFile === undefined || tokenFile === true,
              `${path}: use token-file: true`,
            );
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked >= 12, `only ${checked} examples found`);
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
      { "token-endpoint": "https://x", "token-file": 1 },
    ]
  ) {
    assert.equal(validate(config), false, JSON.stringify(config));
  }
  assert.equal(
    validate({ "token-endpoint": "https://x", "buildkite-audience": "a", debug: true }),
    true,
  );
});

Deno.test("README stays within 25,000 bytes and its contents list every section", () => {
  const size = new TextEncoder().encode(README).length;
  assert.ok(size <= 25_000, `README.md is ${size} bytes: move detail to docs/`);
  const sections = headings(README, 2).filter((heading) => heading !== "Contents");
  const contents = links(section(README, "## Contents"));
  assert.deepEqual(
    [...contents].sort(),
    sections.filter((heading) => heading !== "License").map((heading) => `#${slug(heading)}`)
      .sort(),
  );
});

Deno.test("README keeps the order a newcomer needs: trust before configuration, then recipes and help", () => {
  const order = [
    "Example",
    "Setting up trust on the provider",
    "Configuration",
    "Recipes",
    "Troubleshooting",
    "Requirements",
    "Security",
  ];
  const sections = headings(README, 2);
  const positions = order.map((heading) => sections.indexOf(heading));
  assert.ok(positions.every((position) => position >= 0), JSON.stringify(sections));
  assert.deepEqual(positions, [...positions].sort((a, b) => a - b));
  assert.ok(README.includes("<!-- quick-start -->"), "the quick-start block .ci/run runs is gone");
  assert.match(
    section(README, "## Troubleshooting"),
    /\^\^\^ \+\+\+\n🚨 .*\n\s+Buildkite OIDC token: iss=/,
  );
});

Deno.test("README links outside itself by absolute URL, since JSR publishes it without the other files", () => {
  for (const target of links(README)) {
    assert.match(target, /^(#|https:\/\/)/, `README.md links to "${target}"`);
  }
});

Deno.test("every link between the Markdown files resolves to a file and heading that exist", async () => {
  let checked = 0;
  for (const [path, text] of TEXT) {
    for (const target of links(text)) {
      const local = localTarget(path, target);
      if (local === undefined) continue;
      assert.ok(await exists(local.path), `${path} links to "${target}", which does not exist`);
      if (local.anchor !== undefined && local.path.endsWith(".md")) {
        const headingsThere = anchors(TEXT.get(local.path) ?? await read(local.path));
        assert.ok(
          headingsThere.has(local.anchor),
          `${path} links to "${target}", but ${local.path} has no heading "#${local.anchor}"`,
        );
      }
      checked++;
    }
  }
  assert.ok(checked >= 40, `only ${checked} links checked`);
});

Deno.test("user-facing text names version 0.x plainly and no document outside the repository", async () => {
  const texts = [...TEXT, ["plugin.yml", await read("plugin.yml")] as const];
  for (const [path, text] of texts) {
    assert.doesNotMatch(
      text,
      /seed plugin|\bthe seed\b|seed's/i,
      `${path} calls version 0.x "the seed"`,
    );
    assert.doesNotMatch(text, /\bSPEC\b/, `${path} refers to a SPEC users cannot read`);
  }
  assert.ok(README.includes("version 0.x of this plugin (bash, curl and jq)"));
});

Deno.test("versions agree: deno.json, the CLI, the newest CHANGELOG release, the release script and every pin in the docs", async () => {
  const version = denoJson.version;
  assert.equal(VERSION, version, "_constants.ts's VERSION");
  const changelog = await read("CHANGELOG.md");
  const released = [...changelog.matchAll(/^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d\d-\d\d)$/gm)];
  assert.equal(released[0]?.[1], version, "the newest release in CHANGELOG.md");
  assert.match(
    changelog,
    new RegExp(`^\\[Unreleased\\]: \\S+/compare/v${version}\\.\\.\\.HEAD$`, "m"),
  );
  assert.match(changelog, new RegExp(`^\\[${version}\\]: https://`, "m"));
  // The release steps' own check (scripts/release.bash) agrees.
  const check = await new Deno.Command("bash", {
    args: ["scripts/release.bash", "check"],
    cwd: ROOT_PATH,
  }).output();
  assert.equal(new TextDecoder().decode(check.stdout), `${version}\n`);
  // Every pin of the plugin, the JSR package and a raw cli.ts URL names this version.
  let pins = 0;
  for (const [path, text] of [["README.md", README] as const, ...TEXT]) {
    for (
      const [pin, pinned] of text.matchAll(
        /token-exchange(?:#v|@|-buildkite-plugin\/v)(\d+\.\d+\.\d+)/g,
      )
    ) {
      assert.equal(pinned, version, `${path} pins ${pin}`);
      pins++;
    }
  }
  assert.ok(pins >= 25, `only ${pins} pins found`);
});

Deno.test("every plugin option and CLI flag is in a released CHANGELOG section, not only under Unreleased", async () => {
  const changelog = await read("CHANGELOG.md");
  // From the newest release down: what the pinned examples' version and those before it hold.
  const released = changelog.slice(changelog.search(/^## \[\d+\.\d+\.\d+\]/m));
  for (const option of Object.keys(SCHEMA.properties)) {
    assert.ok(
      released.includes(`\`${option}\``),
      `CHANGELOG.md names ${option} in no released section: release it (RELEASING.md) before the examples use it`,
    );
  }
  for (const flag of Object.keys(FLAGS)) {
    assert.ok(
      released.includes(`--${flag}`),
      `CHANGELOG.md names --${flag} in no released section`,
    );
  }
});

Deno.test("the code blocks of the docs hold no fixed /tmp token path and no jq", () => {
  for (const [path, text] of TEXT) {
    for (const { text: code } of split(text).blocks) {
      assert.doesNotMatch(code, /token-file: \/tmp|tokenFile: \/tmp/, path);
      assert.doesNotMatch(code, /\bjq\b/, `${path} needs jq`);
    }
  }
});
