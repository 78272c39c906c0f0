// What `deno publish` would upload, as the repository's files: the set JSR serves, so the set a
// remote run of cli.ts may fetch.

import assert from "node:assert/strict";
import { baseEnv, ROOT } from "./_cli.ts";

export const ROOT_PATH = decodeURIComponent(ROOT.pathname);

/** Runs deno in the repository, without coverage collection (nothing here tests the code's). */
export async function deno(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = baseEnv();
  delete env["DENO_COVERAGE_DIR"];
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT_PATH,
    clearEnv: true,
    env: { ...env, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    stdin: "null",
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

/** The files `deno publish --dry-run` lists, relative to the repository, sorted. */
export async function publishedFiles(): Promise<string[]> {
  const result = await deno(["publish", "--dry-run", "--allow-dirty"]);
  assert.equal(result.code, 0, result.stderr);
  const output = result.stdout + result.stderr;
  assert.match(output, /Success Dry run complete/);
  return [...output.matchAll(/^\s+(file:\/\/\S+) \(/gm)].map((m) => {
    assert.ok(m[1]!.startsWith(ROOT.href), m[1]!);
    return decodeURIComponent(m[1]!.slice(ROOT.href.length));
  }).sort();
}
