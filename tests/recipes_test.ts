// README's Recipes and Beyond Buildkite sections: each provider has a recipe, the CLI commands they
// show use flags that exist, and the CI snippets carry what those CI systems need.
// (tests/docs_test.ts checks every pipeline example against plugin.yml's schema.)

import assert from "node:assert/strict";
import { parse } from "yaml";
import { FLAGS } from "../_cli_options.ts";
import denoJson from "../deno.json" with { type: "json" };

const README = await Deno.readTextFile(new URL("../README.md", import.meta.url));

/** The text of a `## ` section, up to the next one. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README has no "## ${title}" section`);
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** The code blocks of some text, by language. */
function blocks(text: string, language: string): string[] {
  return [...text.matchAll(new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g"))].map((m) =>
    m[1]!
  );
}

/** Each invocation of the CLI in some text, as the words after `cli.ts` or `…/cli`. */
function cliInvocations(text: string): string[][] {
  // Shell line continuations and YAML folded lines both join into one command.
  const joined = text.replace(/\\\n/g, " ").replace(/\n\s+(?=--)/g, " ");
  return [...joined.matchAll(/(?:\scli\.ts|\/cli(?:\.ts)?)((?:[ \t]+[^\s)"]+)+)/g)].map((m) =>
    m[1]!.trim().split(/\s+/)
  );
}

Deno.test("README has a recipe for each provider and shows how to use the token", () => {
  const recipes = section("Recipes");
  const headings = [...recipes.matchAll(/^### (.+)$/gm)].map((m) => m[1]);
  assert.deepEqual(headings, [
    "Google Cloud Workload Identity Federation",
    "Dex",
    "Keycloak",
    "Okta",
    "An in-house STS",
    "Using the token",
  ]);
  for (
    const text of [
      "https://sts.googleapis.com/v1/token",
      "//iam.googleapis.com/projects/",
      "https://www.googleapis.com/auth/cloud-platform",
      "requested-token-type: urn:ietf:params:oauth:token-type:access_token",
      "assertion.organization_slug",
      "roles/iam.workloadIdentityUser",
      "connector_id",
      "Authorization: Bearer",
      "--access-token-file",
      "kubectl --server",
      "--token=",
    ]
  ) {
    assert.ok(recipes.includes(text), `the recipes do not mention ${text}`);
  }
});

Deno.test("README's CLI commands use only flags the CLI has", () => {
  const invocations = cliInvocations(
    [...blocks(README, "sh"), ...blocks(README, "yaml")].join("\n"),
  );
  assert.ok(invocations.length >= 5, `only ${invocations.length} CLI commands found`);
  for (const words of invocations) {
    for (const word of words.filter((w) => w.startsWith("--"))) {
      assert.ok(FLAGS[word.slice(2).split("=")[0]!], `README runs the CLI with unknown ${word}`);
    }
  }
});

Deno.test("README's GitHub Actions and GitLab CI examples carry what those systems need", () => {
  const beyond = section("Beyond Buildkite");
  const [github, gitlab] = blocks(beyond, "yaml").map((text) => ({ text, yaml: parse(text) }));
  assert.ok(github && gitlab);

  const job = github.yaml.jobs.deploy;
  assert.equal(job.permissions["id-token"], "write");
  const run = job.steps.map((step: { run?: string }) => step.run ?? "").join("\n");
  assert.match(run, /--subject-token-source github-actions/);
  assert.match(run, /::add-mask::/);

  const variable = Object.keys(gitlab.yaml.deploy.id_tokens)[0]!;
  assert.ok(gitlab.yaml.deploy.id_tokens[variable].aud);
  const script = gitlab.yaml.deploy.script.join("\n");
  assert.match(script, new RegExp(`--subject-token-source gitlab --subject-token-env ${variable}`));
  assert.doesNotMatch(script, /--audience/, "GitLab's id_tokens block sets the audience");

  // Both run the published CLI at the current version.
  for (const text of [run, script]) {
    assert.ok(text.includes(`jsr:@equinixmetal/token-exchange@${denoJson.version}/cli`), text);
  }
});
