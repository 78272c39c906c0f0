// The Reliability table in docs/reliability.md: every fault in tests/_faults.ts, what the client
// must do, and what the suite observed it do. tests/faults_test.ts fails when the table differs
// from the observations; `deno task reliability` runs the faults and writes the table anew.

import { type Fault, FAULTS, type Observation, runFault } from "./_faults.ts";

export const START = "<!-- reliability -->";
export const END = "<!-- /reliability -->";
const HEADER = ["fault", "expected", "observed"];

/** `text` as an inline code span, fenced with more backticks than it holds in a row. */
function code(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = "`".repeat(longest + 1);
  return longest > 0 ? `${fence} ${text} ${fence}` : `${fence}${text}${fence}`;
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** The table's cells for one fault and what was observed. */
export function row(fault: Fault, observation: Observation): string[] {
  const { result, requests, waits } = observation;
  const details = [`${requests} request${requests === 1 ? "" : "s"}`];
  if (waits.length > 0) details.push(`waited ${waits.map(seconds).join(", ")}`);
  return [fault.fault, fault.expected, `${code(result)} (${details.join("; ")})`];
}

function escapeCell(cell: string): string {
  return cell.replaceAll("|", "\\|");
}

/** A Markdown table of the rows, under the header. */
export function renderTable(rows: readonly string[][]): string {
  const cells = [HEADER, ...rows].map((cells) => cells.map(escapeCell));
  const widths = HEADER.map((_, column) =>
    Math.max(...cells.map((cells) => cells[column]!.length))
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(" | ")} |`;
  return [
    line(cells[0]!),
    `| ${widths.map((width) => "-".repeat(width)).join(" | ")} |`,
    ...cells.slice(1).map(line),
  ].join("\n");
}

/** The rows of the table between the markers (header and separator left out), if there is one. */
export function readTable(doc: string): string[][] | undefined {
  const start = doc.indexOf(START);
  const end = doc.indexOf(END);
  if (start === -1 || end < start) return undefined;
  return doc.slice(start + START.length, end).split("\n")
    .filter((line) => line.startsWith("|"))
    .slice(2)
    .map((line) =>
      line.trim().slice(1, -1).split(/(?<!\\)\|/).map((cell) => cell.trim().replaceAll("\\|", "|"))
    );
}

/** The document with the table between the markers replaced. */
export function replaceTable(doc: string, table: string): string {
  const start = doc.indexOf(START);
  const end = doc.indexOf(END);
  if (start === -1 || end < start) {
    throw new Error(`docs/reliability.md has no ${START} … ${END} section`);
  }
  return `${doc.slice(0, start + START.length)}\n\n${table}\n\n${doc.slice(end)}`;
}

/** The file that holds the Reliability table. */
export const RELIABILITY_DOC = new URL("../docs/reliability.md", import.meta.url);

if (import.meta.main) {
  const rows: string[][] = [];
  for (const fault of FAULTS) {
    const { observation } = await runFault(fault);
    rows.push(row(fault, observation));
  }
  const doc = await Deno.readTextFile(RELIABILITY_DOC);
  await Deno.writeTextFile(RELIABILITY_DOC, replaceTable(doc, renderTable(rows)));
  console.log(`docs/reliability.md: wrote the Reliability table (${rows.length} faults)`);
}
