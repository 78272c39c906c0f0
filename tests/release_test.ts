// scripts/release.bash, the pipeline's release steps, in a scratch copy of the repository with
// recorded stand-ins for gh, deno and buildkite-agent on PATH: it builds the binaries once, never
// publishes a binary that the committed dist/SHA256SUMS does not pin, and never puts a secret on a
// command line (JSR is published by a GitHub Actions workflow, without a token).

import assert from "node:assert/strict";
import { ROOT_PATH } from "./_publish.ts";
import denoJson from "../deno.json" with { type: "json" };

const VERSION = denoJson.version;
const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
];

// Each stand-in appends its arguments (separated by the ASCII unit separator) to $STANDIN_LOG.
const GH = `#!/usr/bin/env bash
set -euo pipefail
( IFS=$'\\x1f'; printf 'gh\\x1f%s\\n' "$*" ) >>"$STANDIN_LOG"
case "$1 $2" in
  "release view")
    [[ -n "\${GH_DRAFT:-}" ]] || { echo "release not found" >&2; exit 1; }
    echo "$GH_DRAFT" ;;
  "release download")
    dir=.
    while [[ $# -gt 0 ]]; do [[ "$1" != --dir ]] || dir="$2"; shift; done
    cp "$GH_ASSETS"/token-exchange-* "$dir"/ ;;
  "release create" | "release upload")
    for arg in "$@"; do [[ ! -f "$arg" ]] || cp "$arg" "$GH_ASSETS"/; done ;;
  "release edit") ;;
  *) echo "gh stand-in: unexpected call: $*" >&2; exit 64 ;;
esac
`;
const DENO = `#!/usr/bin/env bash
set -euo pipefail
( IFS=$'\\x1f'; printf 'deno\\x1f%s\\n' "$*" ) >>"$STANDIN_LOG"
if [[ "$1" == compile ]]; then
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --target) target="$2" ;;
      --output) output="$2" ;;
    esac
    shift
  done
  # Like deno compile, never the same bytes twice.
  printf 'binary for %s built at %s\\n' "$target" "$(date +%s%N)" >"$output"
fi
`;
const AGENT = `#!/usr/bin/env bash
set -euo pipefail
( IFS=$'\\x1f'; printf 'buildkite-agent\\x1f%s\\n' "$*" ) >>"$STANDIN_LOG"
case "$1 $2" in
  "secret get") printf 'secret-value-of-%s' "$3" ;;
  "annotate "*) cat >>"$STANDIN_LOG.annotation" ;;
  *) echo "buildkite-agent stand-in: unexpected call: $*" >&2; exit 64 ;;
esac
`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** Every stand-in call, as [program, ...arguments]. */
  calls: string[][];
}

/** A scratch copy of the files the release script reads, as a git repository. */
async function scratchRepo() {
  const dir = await Deno.makeTempDir({ prefix: "release-test-" });
  const git = async (...args: string[]) => {
    const output = await new Deno.Command("git", {
      args: ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args],
      cwd: `${dir}/repo`,
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
  };
  for (const sub of ["repo/scripts", "repo/dist", "bin", "assets"]) {
    await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
  }
  for (
    const file of ["scripts/release.bash", "scripts/compile.bash", "deno.json", "_constants.ts"]
  ) {
    await Deno.copyFile(`${ROOT_PATH}${file}`, `${dir}/repo/${file}`);
  }
  await Deno.copyFile(`${ROOT_PATH}CHANGELOG.md`, `${dir}/repo/CHANGELOG.md`);
  for (const [name, text] of [["gh", GH], ["deno", DENO], ["buildkite-agent", AGENT]] as const) {
    await Deno.writeTextFile(`${dir}/bin/${name}`, text, { mode: 0o755 });
  }
  await git("init", "-q");
  await git("add", ".");
  await git("commit", "-qm", "release candidate");
  const log = `${dir}/calls.log`;
  await Deno.writeTextFile(log, "");

  return {
    dir,
    assets: `${dir}/assets`,
    /** Writes the assets' checksums as dist/SHA256SUMS and commits it, as a maintainer would. */
    async commitSums(text?: string) {
      const sums = text ?? await sha256sums(`${dir}/assets`);
      await Deno.writeTextFile(`${dir}/repo/dist/SHA256SUMS`, sums);
      await git("add", "-f", "dist/SHA256SUMS");
      await git("commit", "-qm", "Release: dist/SHA256SUMS");
    },
    async run(command: string, env: Record<string, string>): Promise<Run> {
      await Deno.writeTextFile(log, "");
      const output = await new Deno.Command("bash", {
        args: [`${dir}/repo/scripts/release.bash`, command],
        clearEnv: true,
        env: {
          PATH: `${dir}/bin:/usr/bin:/bin`,
          HOME: dir,
          STANDIN_LOG: log,
          GH_ASSETS: `${dir}/assets`,
          ...env,
        },
        stdin: "null",
      }).output();
      return {
        code: output.code,
        stdout: new TextDecoder().decode(output.stdout),
        stderr: new TextDecoder().decode(output.stderr),
        calls: (await Deno.readTextFile(log)).split("\n").filter((line) => line)
          .map((line) => line.split("\x1f")),
      };
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** `sha256sum token-exchange-*` of a directory, as scripts/compile.bash writes it. */
async function sha256sums(dir: string): Promise<string> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith("token-exchange-")) names.push(entry.name);
  }
  const lines = [];
  for (const name of names.sort()) lines.push(`${await sha256(`${dir}/${name}`)}  ${name}`);
  return lines.map((line) => `${line}\n`).join("");
}

const programs = (run: Run) => run.calls.map(([program, ...args]) => `${program} ${args[0]}`);
const ghCalls = (run: Run) => run.calls.filter(([program]) => program === "gh").map((c) => c[2]);

Deno.test("release.bash build on release/vX.Y.Z compiles each target once onto a draft release and shows its SHA256SUMS", async () => {
  await using repo = await scratchRepo();
  const result = await repo.run("build", {
    BUILDKITE_BRANCH: `release/v${VERSION}`,
    BUILDKITE_JOB_ID: "job-1",
  });
  assert.equal(result.code, 0, result.stderr);
  const compiled = result.calls.filter(([program, command]) =>
    program === "deno" && command === "compile"
  );
  assert.deepEqual(
    compiled.map((call) => call[call.indexOf("--target") + 1]),
    TARGETS,
  );
  const create = result.calls.find(([program, , command]) =>
    program === "gh" && command === "create"
  )!;
  assert.deepEqual(create.slice(3, 9), [
    `v${VERSION}`,
    "--repo",
    "equinixmetal-buildkite/token-exchange-buildkite-plugin",
    "--draft",
    "--title",
    `v${VERSION}`,
  ]);
  // The draft holds the binaries and the SHA256SUMS that pins them, which the output shows.
  const sums = await sha256sums(repo.assets);
  assert.equal(await Deno.readTextFile(`${repo.assets}/SHA256SUMS`), sums);
  assert.ok(result.stdout.endsWith(sums), result.stdout);
  assert.deepEqual(
    sums.split("\n").filter((l) => l).map((l) => l.split("  ")[1]),
    [
      ...TARGETS.map((t) => `token-exchange-${t}`),
    ].sort(),
  );
  const annotation = await Deno.readTextFile(`${repo.dir}/calls.log.annotation`);
  assert.ok(annotation.includes(sums), annotation);
  // The GitHub token comes from Buildkite secrets.
  assert.deepEqual(result.calls[0], ["buildkite-agent", "secret", "get", "GITHUB_RELEASE_TOKEN"]);
});

Deno.test("release.bash build, once dist/SHA256SUMS is committed, checks the draft instead of rebuilding", async () => {
  await using repo = await scratchRepo();
  const env = { BUILDKITE_BRANCH: `release/v${VERSION}`, GH_TOKEN: "t" };
  assert.equal((await repo.run("build", env)).code, 0);
  await repo.commitSums();
  const again = await repo.run("build", { ...env, GH_DRAFT: "true" });
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(programs(again), ["gh release", "gh release"]);
  assert.deepEqual(ghCalls(again), ["view", "download"]);
  assert.match(again.stdout, /matches dist\/SHA256SUMS: merge release\/v.*, then push the tag v/);
});

Deno.test("release.bash build refuses a version that deno.json, _constants.ts or CHANGELOG.md does not carry", async () => {
  await using repo = await scratchRepo();
  const result = await repo.run("build", { BUILDKITE_BRANCH: "release/v9.9.9", GH_TOKEN: "t" });
  assert.deepEqual({ code: result.code, stderr: result.stderr, calls: result.calls }, {
    code: 1,
    stderr: `🚨 deno.json has version "${VERSION}", not "9.9.9": bump it (see RELEASING.md)\n`,
    calls: [],
  });
});

Deno.test("release.bash build refuses to touch a release that is already published", async () => {
  await using repo = await scratchRepo();
  const result = await repo.run("build", {
    BUILDKITE_BRANCH: `release/v${VERSION}`,
    GH_TOKEN: "t",
    GH_DRAFT: "false",
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `🚨 GitHub release v${VERSION} is already published: bump the version for a new release\n`,
  );
  assert.deepEqual(ghCalls(result), ["view"]);
});

Deno.test("release.bash publish on the tag checks every binary against the committed SHA256SUMS, then publishes", async () => {
  await using repo = await scratchRepo();
  assert.equal(
    (await repo.run("build", { BUILDKITE_BRANCH: `release/v${VERSION}`, GH_TOKEN: "t" })).code,
    0,
  );
  await repo.commitSums();
  const result = await repo.run("publish", { BUILDKITE_TAG: `v${VERSION}`, GH_TOKEN: "t" });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(ghCalls(result), ["download", "upload", "edit"]);
  const edit = result.calls.at(-1)!;
  assert.ok(edit.includes("--draft=false"), edit.join(" "));
  for (const target of TARGETS) {
    assert.match(result.stdout, new RegExp(`token-exchange-${target}: OK`));
  }
});

Deno.test("release.bash publish never publishes a binary the committed SHA256SUMS does not pin", async () => {
  await using repo = await scratchRepo();
  assert.equal(
    (await repo.run("build", { BUILDKITE_BRANCH: `release/v${VERSION}`, GH_TOKEN: "t" })).code,
    0,
  );
  await repo.commitSums();
  // A rebuild (deno compile never makes the same bytes twice) or a tampered asset.
  await Deno.writeTextFile(`${repo.assets}/token-exchange-x86_64-apple-darwin`, "other bytes\n");
  const result = await repo.run("publish", { BUILDKITE_TAG: `v${VERSION}`, GH_TOKEN: "t" });
  assert.equal(result.code, 1);
  assert.deepEqual(ghCalls(result), ["download"]);
  assert.match(result.stdout, /token-exchange-x86_64-apple-darwin: FAILED/);
  assert.match(
    result.stderr,
    new RegExp(
      `🚨 The binaries on the GitHub release v${VERSION} are not the ones dist/SHA256SUMS pins: the hooks would refuse them, so nothing was published\n`,
    ),
  );
});

Deno.test("release.bash publish refuses a tagged commit without a committed dist/SHA256SUMS", async () => {
  await using repo = await scratchRepo();
  const result = await repo.run("publish", { BUILDKITE_TAG: `v${VERSION}`, GH_TOKEN: "t" });
  assert.deepEqual({ code: result.code, stderr: result.stderr, calls: result.calls }, {
    code: 1,
    stderr:
      "🚨 This commit has no dist/SHA256SUMS: commit the one the release branch build made (see RELEASING.md)\n",
    calls: [],
  });
});

Deno.test("release.bash publish refuses a dist/SHA256SUMS that does not list the four binaries", async () => {
  await using repo = await scratchRepo();
  await repo.commitSums(`${"0".repeat(64)}  token-exchange-x86_64-unknown-linux-gnu\n`);
  const result = await repo.run("publish", { BUILDKITE_TAG: `v${VERSION}`, GH_TOKEN: "t" });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    "🚨 dist/SHA256SUMS lists 1 binaries, not the 4 scripts/compile.bash builds\n",
  );
  assert.deepEqual(result.calls, []);
});

Deno.test("no release step puts a secret on a command line, and JSR is published without a token", async () => {
  await using repo = await scratchRepo();
  const build = await repo.run("build", { BUILDKITE_BRANCH: `release/v${VERSION}` });
  await repo.commitSums();
  const publish = await repo.run("publish", { BUILDKITE_TAG: `v${VERSION}` });
  assert.deepEqual([build.code, publish.code], [0, 0], build.stderr + publish.stderr);
  // The stand-in agent answers `secret get NAME` with "secret-value-of-NAME".
  const calls = [...build.calls, ...publish.calls];
  assert.ok(
    calls.some((call) => call.join(" ") === "buildkite-agent secret get GITHUB_RELEASE_TOKEN"),
  );
  assert.deepEqual(
    calls.filter((call) => call.some((arg) => arg.includes("secret-value-of-"))),
    [],
  );

  const jsr = await repo.run("jsr", { BUILDKITE_TAG: `v${VERSION}` });
  assert.equal(jsr.code, 1);
  assert.deepEqual(jsr.calls, []);
  const workflow = await Deno.readTextFile(`${ROOT_PATH}.github/workflows/jsr.yml`);
  assert.match(workflow, /^ {2}id-token: write$/m);
  assert.match(workflow, /^ {6}- run: deno publish$/m);
  assert.doesNotMatch(workflow, /(?<!id-)token:|secrets\./);
});
