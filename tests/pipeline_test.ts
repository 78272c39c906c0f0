// .buildkite/pipeline.yml, CHANGELOG.md and RELEASING.md: the project's own CI and release process
// name tasks, files and versions that exist.

import assert from "node:assert/strict";
import { parse } from "yaml";
import { ROOT_PATH } from "./_publish.ts";
import denoJson from "../deno.json" with { type: "json" };

const read = (path: string) => Deno.readTextFile(`${ROOT_PATH}${path}`);

interface Step {
  label?: string;
  key?: string;
  if?: string;
  command?: string | string[];
  depends_on?: string | string[];
  artifact_paths?: string[];
  plugins?: Record<string, unknown>[];
}
const PIPELINE = parse(await read(".buildkite/pipeline.yml")) as { steps: Step[] };
const STEPS = PIPELINE.steps;
const step = (key: string) => STEPS.find((s) => s.key === key)!;
const commands = (s: Step) => [s.command ?? []].flat();
const list = (value: string | string[] | undefined) => [value ?? []].flat();

/** The repository's files, tracked or not yet, without those .gitignore ignores. */
const FILES = new TextDecoder().decode(
  (await new Deno.Command("git", {
    args: ["ls-files", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT_PATH,
  }).output()).stdout,
).split("\n").filter((line) => line);

/** A shell glob (`*`, `**`) as a RegExp over paths. */
function globToRegExp(glob: string): RegExp {
  const source = glob.split("**").map((part) =>
    part.split("*").map((text) => text.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^/]*")
  ).join(".*");
  return new RegExp(`^${source}$`);
}

/** Evaluates a Buildkite `if` of the form `build.branch =~ /re/` or `build.tag =~ /re/`. */
function runsFor(condition: string, build: { branch: string; tag?: string }): boolean {
  const match = /^build\.(branch|tag) =~ \/(.*)\/$/.exec(condition);
  assert.ok(match, `unsupported condition ${condition}`);
  const value = build[match[1] as "branch" | "tag"];
  return value !== undefined && new RegExp(match[2]!).test(value);
}

Deno.test("pipeline.yml: each step has a unique key and a label, and depends only on steps that exist", () => {
  const keys = STEPS.map((s) => s.key);
  assert.equal(new Set(keys).size, keys.length);
  for (const s of STEPS) {
    assert.ok(s.key && s.label, JSON.stringify(s));
    for (const dependency of list(s.depends_on)) assert.ok(keys.includes(dependency), dependency);
  }
});

Deno.test("pipeline.yml's commands run deno tasks and scripts that exist", () => {
  const tasks = Object.keys(denoJson.tasks);
  let checked = 0;
  for (const s of STEPS) {
    for (const command of commands(s)) {
      for (const part of command.split(/&&|\n/).map((p) => p.trim()).filter((p) => p)) {
        const task = /^deno task (\S+)/.exec(part);
        const script = /^bash (\S+)/.exec(part);
        assert.ok(task || script, `step ${s.key} runs "${part}", neither a deno task nor a script`);
        if (task) assert.ok(tasks.includes(task[1]!), `no deno task ${task[1]}`);
        if (script) assert.ok(FILES.includes(script[1]!), `no file ${script[1]}`);
        checked++;
      }
    }
  }
  assert.ok(checked >= 4);
});

Deno.test("pipeline.yml checks, tests, shellchecks every script and lints the plugin under its id", () => {
  assert.deepEqual(commands(step("check")), ["deno task check"]);
  assert.deepEqual(commands(step("test")), ["bash .ci/run"]);

  const shellcheck = step("shellcheck").plugins![0]!["shellcheck#v1.4.0"] as { files: string[] };
  assert.deepEqual(shellcheck.files, ["hooks/**", "lib/*.bash", "scripts/*.bash"]);
  const globs = shellcheck.files.map(globToRegExp);
  for (const glob of globs) assert.ok(FILES.some((f) => glob.test(f)), `${glob} matches nothing`);
  const scripts = FILES.filter((f) => /^(hooks|lib|scripts)\//.test(f));
  assert.ok(scripts.includes("scripts/release.bash") && scripts.includes("hooks/environment"));
  for (const script of scripts) {
    assert.ok(globs.some((glob) => glob.test(script)), `shellcheck misses ${script}`);
  }

  const linter = step("plugin-lint").plugins![0]!["plugin-linter#v3.3.0"] as { id: string };
  // The id the README's examples use, without the version.
  assert.deepEqual(linter, { id: "equinixmetal-buildkite/token-exchange" });
});

Deno.test("pipeline.yml builds release binaries only on release/vX.Y.Z branches and publishes only on vX.Y.Z tags, after every check", async () => {
  const checks = ["check", "test", "shellcheck", "plugin-lint"];
  for (const key of checks) assert.equal(step(key).if, undefined, `${key} runs on every build`);

  const binaries = step("release-binaries");
  assert.deepEqual(commands(binaries), ["bash scripts/release.bash build"]);
  assert.deepEqual(list(binaries.depends_on).sort(), [...checks].sort());
  for (const branch of ["release/v1.2.3", "release/v10.0.0"]) {
    assert.equal(runsFor(binaries.if!, { branch }), true, branch);
  }
  for (const branch of ["main", "release/v1.2", "release/1.2.3", "feature/release/v1.2.3"]) {
    assert.equal(runsFor(binaries.if!, { branch }), false, branch);
  }

  const github = step("github-release");
  assert.deepEqual(commands(github), ["bash scripts/release.bash publish"]);
  assert.deepEqual(list(github.depends_on).sort(), [...checks].sort());
  assert.equal(runsFor(github.if!, { branch: "v1.2.3", tag: "v1.2.3" }), true);
  assert.equal(runsFor(github.if!, { branch: "main" }), false);
  assert.equal(runsFor(github.if!, { branch: "x", tag: "1.2.3" }), false);
  assert.equal(runsFor(github.if!, { branch: "x", tag: "v1.2.3-rc.1" }), false);

  // The artifacts are what scripts/compile.bash writes.
  const compile = await read("scripts/compile.bash");
  assert.match(compile, /--output "dist\/token-exchange-\$\{target\}"/);
  assert.match(compile, />SHA256SUMS/);
  for (const s of [binaries, github]) {
    assert.deepEqual(s.artifact_paths, ["dist/token-exchange-*", "dist/SHA256SUMS"]);
  }
});

Deno.test("release.bash and lib/binary.bash name the same GitHub repository for the binaries", async () => {
  const release = await read("scripts/release.bash");
  const plugin = await read("lib/binary.bash");
  const repo = /TOKEN_EXCHANGE_RELEASE_REPO:-([^}]+)\}/.exec(release)![1]!;
  assert.match(
    plugin,
    new RegExp(
      `TOKEN_EXCHANGE_DEFAULT_DOWNLOAD_URL=https://github.com/${repo}/releases/download\n`,
    ),
  );
});

Deno.test("CHANGELOG.md has a dated entry and a link for deno.json's version", async () => {
  const changelog = await read("CHANGELOG.md");
  const version = denoJson.version.replaceAll(".", "\\.");
  assert.match(changelog, /^## \[Unreleased\]$/m);
  assert.match(changelog, new RegExp(`^## \\[${version}\\] - \\d{4}-\\d{2}-\\d{2}$`, "m"));
  assert.match(
    changelog,
    new RegExp(`^\\[${version}\\]: https://github\\.com/.+/v${version}$`, "m"),
  );
});

Deno.test("RELEASING.md names each thing a release changes and the commands it runs", async () => {
  const releasing = await read("RELEASING.md");
  for (
    const text of [
      '"version"',
      "deno.json",
      "_constants.ts",
      "`VERSION`",
      "CHANGELOG.md",
      "dist/SHA256SUMS",
      "release/vX.Y.Z",
      "deno task compile",
      "bash scripts/release.bash build",
      "bash scripts/release.bash publish",
      ".github/workflows/jsr.yml",
      "GITHUB_RELEASE_TOKEN",
    ]
  ) {
    assert.ok(releasing.includes(text), `RELEASING.md does not mention ${text}`);
  }
});
