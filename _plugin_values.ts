// What the plugin's option readers share: the environment and working directory they read in, how
// a value from pipeline.yml is shown in a message, and how a path an option names is resolved.

import type { Env } from "./_cli_flags.ts";
import { UsageError } from "./_cli_flags.ts";

/** Where the options are read and paths resolved. */
export interface PluginContext {
  /** Reads a variable (the options, the client secret's, HOME, …). */
  env: Env;
  /** The working directory, for a relative `token-file`. */
  cwd: string;
}

/**
 * A value from pipeline.yml for a message, between quotes: JSON-escaped, so that a line break, tab
 * or other control character shows as one (`\n`) and cannot end the line; capped.
 */
export function shown(text: string): string {
  const capped = text.length > 200 ? `${text.slice(0, 200)}…` : text;
  return JSON.stringify(capped).slice(1, -1).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * The absolute path of a file an option names: `~/` is the home directory, a relative path the
 * checkout's (the working directory); no `..`, and no comma (a Deno permission flag cannot hold
 * one, so the hooks could not let the engine reach it).
 *
 * @param text The option's value.
 * @param option The option, for messages.
 * @param example A path to suggest.
 * @param context HOME and the working directory.
 * @param otherwise What else the user may do, for messages.
 * @returns The path.
 */
export function resolvePath(
  text: string,
  option: string,
  example: string,
  context: PluginContext,
  otherwise = "",
): string {
  if (text.includes(",")) {
    throw new UsageError(
      `${option} is "${
        shown(text)
      }", which has a comma in it: choose a path without one${otherwise}`,
    );
  }
  let path = text;
  if (text === "~" || text.startsWith("~/")) {
    const home = context.env("HOME");
    if (home === undefined || !home.startsWith("/")) {
      throw new UsageError(
        `${option} is "${text}", but HOME is not set to a directory: write the whole path`,
      );
    }
    path = `${home.replace(/\/$/, "")}${text.slice(1)}`;
  } else if (text.startsWith("~")) {
    throw new UsageError(
      `${option} is "${text}": only ~/ (this user's home) is understood; write the whole path`,
    );
  } else if (!text.startsWith("/")) {
    path = `${context.cwd.replace(/\/$/, "")}/${text}`;
  }
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (path.endsWith("/") || parts.length === 0 || parts.includes("..")) {
    throw new UsageError(
      `${option} is "${text}", which is not a file's path: name a file, such as ${example} (no .. in it)`,
    );
  }
  return `/${parts.join("/")}`;
}
