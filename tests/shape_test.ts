// The code's shape, kept as issue 16 set it: the bash in hooks/ and lib/ stays small (rules belong to
// the typed engine; bash only launches), and no function anywhere is longer than a screenful or two.

import assert from "node:assert/strict";
import { PLUGIN_DIR } from "./_hooks.ts";

const MAX_BASH_LINES = 500;
const MAX_FUNCTION_LINES = 120;

/** Every file of the project's own below DIR, relative to the checkout. */
async function files(dir = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(`${PLUGIN_DIR}/${dir}`)) {
    const path = `${dir}${entry.name}`;
    if (entry.isDirectory && ![".git", ".coverage", "node_modules", "dist"].includes(entry.name)) {
      found.push(...await files(`${path}/`));
    } else if (entry.isFile) {
      found.push(path);
    }
  }
  return found;
}

const ALL = await files();
const isBash = (path: string, text: string) =>
  path.endsWith(".bash") || (!path.includes(".") && text.startsWith("#!/usr/bin/env bash"));

/** Lines that are neither blank nor comments. */
function codeLines(text: string): number {
  return text.split("\n").filter((line) => !/^\s*(#.*)?$/.test(line)).length;
}

/**
 * The functions in TypeScript formatted by `deno fmt`, with their length: each starts on a line
 * that declares a function, a method or an arrow function's block, and ends at the first line
 * after it, as indented, that starts with `}`.
 */
export function functionLengths(text: string): { line: number; length: number }[] {
  const lines = text.split("\n");
  const found: { line: number; length: number }[] = [];
  const keywords = /^\s*(if|for|while|switch|catch|else|do|try|return|with)\b/;
  lines.forEach((line, i) => {
    const starts = /^\s*(export\s+)?(async\s+)?function\b/.test(line) ||
      /=>\s*\{$/.test(line) ||
      (/^\s+(async\s+|static\s+|get\s+|set\s+)*[#\w]+(<[^>]*>)?\(.*\)(:\s*[^=]+)?\s*\{$/.test(
        line,
      ) &&
        !keywords.test(line));
    if (!starts) return;
    const indent = line.length - line.trimStart().length;
    for (let j = i + 1; j < lines.length; j++) {
      const end = lines[j]!;
      if (end.length - end.trimStart().length === indent && end.trimStart().startsWith("}")) {
        found.push({ line: i + 1, length: j - i + 1 });
        return;
      }
    }
  });
  return found;
}

/** The bash functions (`name() {` … `}` at the start of a line), with their length. */
function bashFunctionLengths(text: string): { line: number; length: number }[] {
  const found: { line: number; length: number }[] = [];
  let start: number | undefined;
  text.split("\n").forEach((line, i) => {
    if (/^[A-Za-z_][\w]*\(\)\s*\{/.test(line)) start = i;
    else if (line === "}" && start !== undefined) {
      found.push({ line: start + 1, length: i - start + 1 });
      start = undefined;
    }
  });
  return found;
}

Deno.test("the hooks' bash is at most 500 lines that are neither blank nor comments", async () => {
  const hooks = ALL.filter((path) => path.startsWith("hooks/") || path.startsWith("lib/"));
  let total = 0;
  for (const path of hooks) total += codeLines(await Deno.readTextFile(`${PLUGIN_DIR}/${path}`));
  assert.ok(total <= MAX_BASH_LINES, `hooks/ and lib/ hold ${total} lines of bash`);
});

Deno.test("no function, in TypeScript or bash, is longer than 120 lines", async () => {
  const long: string[] = [];
  for (const path of ALL) {
    const text = await Deno.readTextFile(`${PLUGIN_DIR}/${path}`);
    const lengths = path.endsWith(".ts")
      ? functionLengths(text)
      : isBash(path, text)
      ? bashFunctionLengths(text)
      : [];
    for (const { line, length } of lengths) {
      if (length > MAX_FUNCTION_LINES) long.push(`${path}:${line}: ${length} lines`);
    }
  }
  assert.deepEqual(long, []);
});

Deno.test("functionLengths() finds functions, methods and arrow functions, and their ends", () => {
  const text = [
    "export async function a(",
    "  x: number,",
    "): Promise<void> {",
    "  if (x) {",
    "  }",
    "}",
    "class C {",
    "  m(y: string): number {",
    "    return 1;",
    "  }",
    "}",
    'Deno.test("t", async () => {',
    "  const f = () => {",
    "  };",
    "});",
  ].join("\n");
  assert.deepEqual(functionLengths(text), [
    { line: 1, length: 6 },
    { line: 8, length: 3 },
    { line: 12, length: 4 },
    { line: 13, length: 2 },
  ]);
});
