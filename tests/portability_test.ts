// The library (mod.ts and what it imports) uses web-standard APIs only, so it runs outside Deno:
// no Deno namespace, no node: imports, and a real exchange under Node.js from a bundle of mod.ts.

import assert from "node:assert/strict";
import { baseEnv, ROOT } from "./_cli.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";

const root = decodeURIComponent(ROOT.pathname);

async function output(command: string, args: string[], env: Record<string, string> = {}) {
  const result = await new Deno.Command(command, { args, cwd: root, env: { ...baseEnv(), ...env } })
    .output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: result.code, stdout: decode(result.stdout), stderr: decode(result.stderr) };
}

Deno.test("the library's modules use neither the Deno namespace nor node: imports", async () => {
  const info = JSON.parse((await output(Deno.execPath(), ["info", "--json", "mod.ts"])).stdout);
  const modules: string[] = info.modules.map((module: { specifier: string }) => module.specifier);
  assert.ok(modules.length >= 8, modules.join(", "));
  for (const specifier of modules) {
    assert.ok(specifier.startsWith("file://"), `mod.ts imports ${specifier}`);
    const source = await Deno.readTextFile(new URL(specifier));
    // Comments may mention Deno; code may not use it.
    const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(code, /\bDeno\./, specifier);
    assert.doesNotMatch(code, /from\s+["']node:/, specifier);
  }
});

const node = await output("bash", ["-c", "command -v node"]).then((r) => r.code === 0, () => false);

Deno.test(
  "exchangeToken() runs under Node.js from a bundle of mod.ts",
  { ignore: !node },
  async () => {
    await using server = startTokenEndpoint(() =>
      tokenResponse({ access_token: "issued-under-node-js" })
    );
    const dir = await Deno.makeTempDir();
    try {
      const bundled = await output(Deno.execPath(), [
        "bundle",
        "--quiet",
        "mod.ts",
        "-o",
        `${dir}/mod.mjs`,
      ]);
      assert.equal(bundled.code, 0, bundled.stderr);
      await Deno.writeTextFile(
        `${dir}/main.mjs`,
        `import { exchangeToken, OAuthError } from "./mod.mjs";
const result = await exchangeToken({ tokenEndpoint: process.argv[2], subjectToken: "subject", audience: "api" });
console.log(result.accessToken, typeof OAuthError);`,
      );
      const run = await output("node", [`${dir}/main.mjs`, server.url]);
      assert.deepEqual({ code: run.code, stdout: run.stdout, stderr: run.stderr }, {
        code: 0,
        stdout: "issued-under-node-js function\n",
        stderr: "",
      });
      assert.equal(new URLSearchParams(server.requests[0]!.body).get("audience"), "api");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
