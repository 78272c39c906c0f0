// The package as JSR sees it: what `deno publish` would upload, and the documentation of every
// public symbol, which JSR scores and renders.

import assert from "node:assert/strict";
import { deno, publishedFiles, ROOT_PATH } from "./_publish.ts";

Deno.test("deno publish ships the library and CLI sources, deno.json, README and LICENSE, and nothing else", async () => {
  const sources: string[] = [];
  for await (const entry of Deno.readDir(ROOT_PATH)) {
    if (entry.isFile && /^(mod|cli|_[a-z_]+)\.ts$/.test(entry.name)) {
      if (!entry.name.endsWith("_test.ts")) sources.push(entry.name);
    }
  }
  assert.ok(sources.includes("_subject_token.ts") && sources.includes("_cli_config.ts"));
  assert.deepEqual(
    await publishedFiles(),
    [...sources, "deno.json", "README.md", "LICENSE"].sort(),
  );
});

interface DocTag {
  kind: string;
  name?: string;
  doc?: string;
}
interface DocDeclaration {
  kind: string;
  jsDoc?: { doc?: string; tags?: DocTag[] };
  def?: { params?: { name?: string; kind: string; left?: { name?: string } }[] };
}
interface DocSymbol {
  name: string;
  declarations: DocDeclaration[];
}

Deno.test("every public symbol of mod.ts and cli.ts has a summary, @see, @example, @param and @returns", async () => {
  const result = await deno(["doc", "--json", "mod.ts", "cli.ts"]);
  assert.equal(result.code, 0, result.stderr);
  const json = JSON.parse(result.stdout) as {
    nodes: Record<string, { module_doc?: { doc?: string }; symbols: DocSymbol[] }>;
  };
  const problems: string[] = [];
  let symbols = 0;
  for (const [file, node] of Object.entries(json.nodes)) {
    if (!node.module_doc?.doc?.trim()) problems.push(`${file}: no module doc`);
    for (const symbol of node.symbols) {
      symbols++;
      for (const declaration of symbol.declarations) {
        const doc = declaration.jsDoc;
        const tags = doc?.tags ?? [];
        const has = (kind: string) => tags.some((tag) => tag.kind === kind);
        if (!doc?.doc?.trim()) problems.push(`${symbol.name}: no summary`);
        if (!has("see")) problems.push(`${symbol.name}: no @see`);
        if (!has("example")) problems.push(`${symbol.name}: no @example`);
        if (declaration.kind === "function") {
          for (const param of declaration.def?.params ?? []) {
            const name = param.name ?? param.left?.name;
            if (!tags.some((tag) => tag.kind === "param" && tag.name === name)) {
              problems.push(`${symbol.name}: no @param ${name}`);
            }
          }
          if (!has("return")) problems.push(`${symbol.name}: no @returns`);
        }
      }
    }
  }
  assert.ok(symbols >= 30, `only ${symbols} symbols`);
  assert.deepEqual(problems, []);
});
