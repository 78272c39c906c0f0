// Reading the project's Markdown for the documentation tests: the files users read, their code
// blocks, headings (as GitHub anchors) and links.

/** The repository, as GitHub names it; absolute links into it are checked like relative ones. */
export const REPOSITORY =
  "https://github.com/equinixmetal-buildkite/token-exchange-buildkite-plugin";

const ROOT = new URL("../", import.meta.url);

/** Reads a file of the repository by its path from the root. */
export function read(path: string): Promise<string> {
  return Deno.readTextFile(new URL(path, ROOT));
}

/** Whether a path from the repository's root names an existing file or directory. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(new URL(path, ROOT));
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The Markdown files users read, by path from the repository's root. */
export async function userDocs(): Promise<string[]> {
  const docs: string[] = [];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".md")) docs.push(`docs/${entry.name}`);
  }
  return ["README.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md", "RELEASING.md"]
    .concat(docs.sort());
}

/** A fenced code block: its language and text. */
export interface CodeBlock {
  language: string;
  text: string;
}

/** The fenced code blocks of some Markdown, and the prose with them left out. */
export function split(markdown: string): { prose: string; blocks: CodeBlock[] } {
  const prose: string[] = [];
  const blocks: CodeBlock[] = [];
  let block: CodeBlock | undefined;
  for (const line of markdown.split("\n")) {
    if (block === undefined && line.startsWith("```")) {
      block = { language: line.slice(3).split(/\s/)[0]!, text: "" };
    } else if (block !== undefined && line.startsWith("```")) {
      blocks.push(block);
      block = undefined;
    } else if (block !== undefined) {
      block.text += `${line}\n`;
    } else {
      prose.push(line);
    }
  }
  return { prose: prose.join("\n"), blocks };
}

/** The code blocks of some Markdown in one language. */
export function blocks(markdown: string, language: string): string[] {
  return split(markdown).blocks.filter((b) => b.language === language).map((b) => b.text);
}

/** The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens. */
export function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
}

/** The anchors of a Markdown file's headings, numbered as GitHub numbers repeats. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const match of split(markdown).prose.matchAll(/^#{1,6} (.+)$/gm)) {
    const base = slug(match[1]!);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  return result;
}

/** The headings of one level, in order. */
export function headings(markdown: string, level: number): string[] {
  const pattern = new RegExp(`^${"#".repeat(level)} (.+)$`, "gm");
  return [...split(markdown).prose.matchAll(pattern)].map((m) => m[1]!);
}

/** The targets of the inline links in some Markdown's prose (code left out). */
export function links(markdown: string): string[] {
  const prose = split(markdown).prose.replace(/`[^`\n]*`/g, "");
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

/** The text of a section, from its heading up to the next heading of the same or a higher level. */
export function section(markdown: string, heading: string): string {
  const level = heading.match(/^#+/)?.[0].length ?? 0;
  const lines: string[] = [];
  let inSection = false;
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const match = fenced ? null : line.match(/^(#{1,6}) /);
    if (inSection && match && match[1]!.length <= level) break;
    if (inSection) lines.push(line);
    if (!fenced && line === heading) inSection = true;
  }
  if (!inSection) throw new Error(`no "${heading}" section`);
  return lines.join("\n");
}
