// docs/recipes.md and docs/beyond-buildkite.md (and the README's short recipes): each provider has a
// recipe, the CLI commands they show use flags that exist, the CI snippets carry what those CI
// systems need and stop the job when the exchange fails, Google's google.subject fits its limit,
// and containers get the token. (tests/docs_test.ts checks every pipeline example against
// plugin.yml's schema.)

import assert from "node:assert/strict";
import { parse } from "yaml";
import { FLAGS } from "../_cli_flags.ts";
import denoJson from "../deno.json" with { type: "json" };
import { blocks, headings, read, section, userDocs } from "./_markdown.ts";

const README = await read("README.md");
const RECIPES = await read("docs/recipes.md");
const BEYOND = await read("docs/beyond-buildkite.md");
const DOCS = await Promise.all((await userDocs()).map(read));

/** Each invocation of the CLI in some text, as the words after `cli.ts` or `…/cli`. */
function cliInvocations(text: string): string[][] {
  // Shell line continuations and YAML folded lines both join into one command.
  const joined = text.replace(/\\\n/g, " ").replace(/\n\s+(?=--)/g, " ");
  return [...joined.matchAll(/(?:\scli\.ts|\/cli(?:\.ts)?)((?:[ \t]+[^\s)"]+)+)/g)].map((m) =>
    m[1]!.trim().split(/\s+/)
  );
}

/** Google's limit on the mapped google.subject, in bytes. */
const GOOGLE_SUBJECT_LIMIT = 127;

/** Evaluates a CEL attribute mapping made of string literals, `assertion.<claim>` and `+`. */
function evaluateMapping(expression: string, claims: Record<string, string>): string {
  return expression.split(/\s*\+\s*/).map((term) => {
    const literal = term.match(/^"([^"]*)"$/);
    if (literal) return literal[1]!;
    const claim = term.match(/^assertion\.([a-z_]+)$/);
    assert.ok(claim, `cannot evaluate "${term}" of the mapping`);
    assert.ok(claims[claim[1]!] !== undefined, `Buildkite tokens have no "${claim[1]}" claim`);
    return claims[claim[1]!]!;
  }).join("");
}

/** Buildkite OIDC claims for an organization and pipeline slug, on a long but real branch. */
function buildkiteClaims(organization: string, pipeline: string): Record<string, string> {
  const ref = "refs/heads/feature/PLAT-1234-rotate-the-deploy-credentials";
  const commit = "9f3182061f1e2cca4702c368cbc039b7dc9d4485";
  return {
    sub:
      `organization:${organization}:pipeline:${pipeline}:ref:${ref}:commit:${commit}:step:deploy`,
    organization_slug: organization,
    pipeline_slug: pipeline,
    build_branch: ref.replace("refs/heads/", ""),
  };
}

Deno.test("docs/recipes.md has a recipe for each provider and shows how to use the token", () => {
  assert.deepEqual(headings(RECIPES, 2), [
    "AWS",
    "Google Cloud Workload Identity Federation",
    "Kubernetes",
    "Azure",
    "Vault",
    "GitHub",
    "Dex",
    "Keycloak",
    "Okta",
    "An in-house STS",
    "Servers that depart from the RFCs",
    "Using the token",
    "Docker and Docker Compose",
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
      "tokenFile",
      "token-file: true",
      "google-credentials: true",
      "service-account:",
      "agent.buildkite.com:sub",
      "StringLike",
      "kubernetes-server:",
      "ca-file:",
      "api://AzureADTokenExchange",
      "azure-client-id:",
      "bound_claims",
      "vault-role:",
      "subject_pattern",
      "github-token-scope:",
      "FEDERATED_ACCESS_TOKEN_FILE",
    ]
  ) {
    assert.ok(RECIPES.includes(text), `the recipes do not mention ${text}`);
  }
});

Deno.test("the docs' CLI commands use only flags the CLI has", () => {
  const code = DOCS.flatMap((text) => [...blocks(text, "sh"), ...blocks(text, "yaml")]);
  const invocations = cliInvocations(code.join("\n"));
  assert.ok(invocations.length >= 8, `only ${invocations.length} CLI commands found`);
  for (const words of invocations) {
    for (const word of words.filter((w) => w.startsWith("--"))) {
      assert.ok(FLAGS[word.slice(2).split("=")[0]!], `the docs run the CLI with unknown ${word}`);
    }
  }
});

Deno.test("no example hides a failed exchange behind export", () => {
  for (const text of DOCS) {
    for (const code of [...blocks(text, "sh"), ...blocks(text, "yaml")]) {
      // `export X="$(…)"` succeeds whatever the command substitution did.
      assert.doesNotMatch(code, /export\s+[A-Za-z_][A-Za-z0-9_]*="?\$\(/, code);
    }
  }
});

Deno.test("the GitHub Actions and GitLab CI examples carry what those systems need and stop on failure", () => {
  const [github, gitlab] = blocks(BEYOND, "yaml").map((text) => parse(text));
  assert.ok(github && gitlab);

  const job = github.jobs.deploy;
  assert.equal(job.permissions["id-token"], "write");
  const exchange = job.steps.find((step: { run?: string }) => step.run?.includes("/cli"));
  // `shell: bash` runs the step with `bash -e -o pipefail`: the assignment's failure ends the step.
  assert.equal(exchange.shell, "bash");
  assert.match(exchange.run, /^token="\$\(deno run /m);
  assert.match(exchange.run, /--subject-token-source github-actions/);
  assert.match(exchange.run, /::add-mask::/);

  const variable = Object.keys(gitlab.deploy.id_tokens)[0]!;
  assert.ok(gitlab.deploy.id_tokens[variable].aud);
  const script: string[] = gitlab.deploy.script;
  const assignment = script.findIndex((line) => /^FEDERATED_ACCESS_TOKEN="\$\(/.test(line));
  assert.ok(assignment >= 0, "GitLab's script assigns the token on a line of its own");
  assert.equal(script[assignment + 1], "export FEDERATED_ACCESS_TOKEN");
  assert.match(
    script[assignment]!,
    new RegExp(`--subject-token-source gitlab --subject-token-env ${variable}`),
  );
  assert.doesNotMatch(
    script.join("\n"),
    /--audience/,
    "GitLab's id_tokens block sets the audience",
  );

  // Both run the published CLI at the current version.
  for (const text of [exchange.run, script.join("\n")]) {
    assert.ok(text.includes(`jsr:@equinixmetal/token-exchange@${denoJson.version}/cli`), text);
  }
});

Deno.test("the Google attribute mapping keeps google.subject within Google's 127 bytes", () => {
  const google = section(RECIPES, "## Google Cloud Workload Identity Federation");
  const mapping = google.match(/--attribute-mapping='([^']+)'/)?.[1];
  assert.ok(mapping, "the Google recipe has no --attribute-mapping");
  const subject = mapping.split(",").find((entry) => entry.startsWith("google.subject="));
  assert.ok(subject);
  const expression = subject.slice("google.subject=".length);

  const bytes = (organization: string, pipeline: string) =>
    new TextEncoder().encode(evaluateMapping(expression, buildkiteClaims(organization, pipeline)))
      .length;
  // Realistic names: a long organization slug and a long pipeline slug.
  const organization = "equinix-metal-platform-engineering";
  const pipeline = "terraform-infrastructure-production-us-east-1";
  assert.equal(
    evaluateMapping(expression, buildkiteClaims(organization, pipeline)),
    `organization:${organization}:pipeline:${pipeline}`,
  );
  assert.ok(bytes(organization, pipeline) <= GOOGLE_SUBJECT_LIMIT);
  // ... where the token's whole sub would not fit.
  const sub = buildkiteClaims(organization, pipeline).sub!;
  assert.ok(new TextEncoder().encode(sub).length > GOOGLE_SUBJECT_LIMIT, sub);
  // The recipe's bound: slugs of 104 bytes together fit, and one byte more does not.
  assert.match(google, /at most\s+104\s+bytes/);
  assert.equal(bytes("a".repeat(40), "p".repeat(64)), GOOGLE_SUBJECT_LIMIT);
  assert.ok(bytes("a".repeat(40), "p".repeat(65)) > GOOGLE_SUBJECT_LIMIT);
});

/** A plugin's configuration in a pipeline example, as the Docker test reads it. */
interface PluginConfig {
  "env-var"?: string;
  "token-file"?: boolean;
  "expand-volume-vars"?: boolean;
  environment?: string[];
  volumes?: string[];
}

Deno.test("the Docker examples pass the token, or its file, into the container", () => {
  let checked = 0;
  for (const text of [README, RECIPES]) {
    for (const yaml of blocks(text, "yaml").map((block) => parse(block))) {
      for (const step of yaml?.steps ?? []) {
        const plugins = Object.assign({}, ...step.plugins ?? []) as Record<string, PluginConfig>;
        const exchange = Object.entries(plugins).find(([id]) => id.includes("/token-exchange#"));
        const docker = Object.entries(plugins).find(([id]) => /^docker(-compose)?#v/.test(id));
        if (!exchange || !docker) continue;
        const variable = exchange[1]["env-var"] ?? "FEDERATED_ACCESS_TOKEN";
        const environment = docker[1].environment ?? [];
        if (exchange[1]["token-file"] === true) {
          assert.ok(
            (docker[1].volumes ?? []).some((v) => v.startsWith(`$$${variable}_FILE:`)),
            JSON.stringify(docker[1]),
          );
          assert.equal(docker[1]["expand-volume-vars"], true);
          assert.ok(environment.some((entry) => entry.startsWith(`${variable}_FILE=`)));
        } else {
          assert.ok(environment.includes(variable), JSON.stringify(docker[1]));
        }
        checked++;
      }
    }
  }
  assert.ok(checked >= 3, `only ${checked} Docker examples found`);
  // The Compose file mounts the token file from the variable the plugin exports.
  const compose = blocks(RECIPES, "yaml").map((block) => parse(block)).find((y) => y?.services);
  assert.ok(
    compose.services.app.volumes.some((v: string) =>
      v.startsWith("${FEDERATED_ACCESS_TOKEN_FILE:?")
    ),
  );
});
