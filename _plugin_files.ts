// The files the plugin writes, on an agent host shared with other jobs and users: a private
// directory per job and a numbered one per plugin entry (0700), files in them 0600 and written
// atomically (a private temporary file, then a rename), and `token-file` paths elsewhere created
// only where no file is (a hard link, which never replaces one) and afterwards replaced or removed
// only while they are still the file this job made. The plugin never replaces, truncates or
// deletes a file it did not create in this job. Unlike the library, this module uses Deno APIs.

import { UsageError } from "./_cli_flags.ts";
import type { RefreshState } from "./_refresh_schedule.ts";

/** A file the plugin made outside its private directory: where, and which file it is. */
export interface FileRecord {
  path: string;
  dev: number;
  ino: number;
}

/** What an entry's directory says about the entry, for the entries after it and for renewals. */
export interface EntryManifest {
  /** The entry's number in the job, from 1 in the order the hooks ran. */
  number: number;
  /** The option that tells the entry apart, for messages: `token-endpoint https://…`. */
  label: string;
  /** The variables it exports. */
  exports: string[];
  /** Those of them that hold a secret. */
  secrets: string[];
  /** The files it made outside its directory (token-file). */
  files: FileRecord[];
  /** The refresher's state, with refresh: true. */
  refresh?: RefreshState;
}

/**
 * The plugin could not do its part (a file could not be written, a directory is not its own):
 * exit status 1, with what to do.
 */
export class PluginError extends Error {
  /** The name of the error class. */
  override name = "PluginError";
}

/** The manifest's name in an entry's directory. */
export const MANIFEST = "entry.json";
/**
 * The directories of the entry's files outside its own directory, one per line: where the engine
 * that removes them (in pre-exit, or for a job killed before it) must be let write.
 */
export const EXTERNAL_DIRS = "external-dirs";

/** This process's user and group, which own what the plugin makes. */
export interface Owner {
  uid: number;
  gid: number;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

/**
 * Checks that the job's private directory, if it is there, is this user's own: a directory, not a
 * link, that nobody else may enter (another user or job may have put one there); and reads the
 * manifests of this job's entries that ran before.
 *
 * @param dir The directory (`$TMPDIR/token-exchange-<job>`, which the hooks name).
 * @param owner This process's user.
 * @returns The manifests, in order; none when the directory is not there yet.
 * @throws {PluginError} When the directory there is not ours.
 */
export function readJobDir(dir: string, owner: Owner): EntryManifest[] {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  if (!info.isDirectory || info.uid !== owner.uid || ((info.mode ?? 0) & 0o077) !== 0) {
    throw new PluginError(
      `Cannot use the private directory ${dir}: it is not a directory this agent's user made (another job may have put it there); remove it, or set TMPDIR to a directory only this agent uses`,
    );
  }
  return readEntries(dir);
}

/**
 * Makes the job's private directory (0700) unless it is there, and checks it is this user's own.
 *
 * @param dir The directory.
 * @param owner This process's user.
 * @throws {PluginError} When it cannot be made or is not ours.
 */
export function openJobDir(dir: string, owner: Owner): void {
  try {
    Deno.mkdirSync(dir, { mode: 0o700 });
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      throw new PluginError(
        `Cannot make the private directory ${dir} (${
          (error as Error).message
        }): set TMPDIR to a writable directory`,
      );
    }
  }
  readJobDir(dir, owner);
}

/** The entries of this job that ran before, from their directories' manifests, in order. */
function readEntries(jobDir: string): EntryManifest[] {
  const entries: EntryManifest[] = [];
  for (const entry of Deno.readDirSync(jobDir)) {
    if (!entry.isDirectory || !/^\d{1,4}$/.test(entry.name)) continue;
    const manifest = readManifest(`${jobDir}/${entry.name}`);
    if (manifest !== undefined) entries.push(manifest);
  }
  return entries.sort((a, b) => a.number - b.number);
}

/**
 * An entry's manifest, or `undefined` when it has none (yet) or it cannot be read.
 *
 * @param entryDir The entry's directory.
 * @returns The manifest.
 */
export function readManifest(entryDir: string): EntryManifest | undefined {
  try {
    const manifest = JSON.parse(Deno.readTextFileSync(`${entryDir}/${MANIFEST}`));
    return typeof manifest?.number === "number" && Array.isArray(manifest.exports)
      ? manifest
      : undefined;
  } catch (error) {
    if (isNotFound(error) || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

/**
 * Makes this entry's directory in the job's: the first free number (0700).
 *
 * @param jobDir The job's private directory.
 * @returns The entry's number and directory.
 */
export function makeEntryDir(jobDir: string): { number: number; dir: string } {
  for (let number = 1; number < 10000; number++) {
    const dir = `${jobDir}/${number}`;
    try {
      Deno.mkdirSync(dir, { mode: 0o700 });
      return { number, dir };
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  }
  throw new PluginError(`Cannot make an entry's directory in ${jobDir}: it is full`);
}

/** A new private file (0600) beside PATH, written whole; its path. */
function writeTemporary(path: string, content: string): string {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  const bytes = new TextEncoder().encode(content);
  for (let attempt = 0; attempt < 10; attempt++) {
    const random = crypto.getRandomValues(new Uint32Array(2)).join("");
    const temporary = `${dir}/.token-exchange-${random}`;
    let file: Deno.FsFile;
    try {
      // createNew: O_EXCL, so nothing already there, a link least of all, is opened.
      file = Deno.openSync(temporary, { write: true, createNew: true, mode: 0o600 });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) continue;
      throw error;
    }
    try {
      for (let written = 0; written < bytes.length;) {
        written += file.writeSync(bytes.subarray(written));
      }
    } catch (error) {
      file.close();
      Deno.removeSync(temporary);
      throw error;
    }
    file.close();
    return temporary;
  }
  throw new Deno.errors.AlreadyExists(`no free temporary name in ${dir}`);
}

function identity(path: string): { dev: number; ino: number } {
  const info = Deno.lstatSync(path);
  return { dev: info.dev, ino: info.ino ?? 0 };
}

/**
 * Writes a file in an entry's own directory atomically: a private temporary file, then a rename
 * over the old one, so a reader never sees half a token.
 *
 * @param path The file.
 * @param content What it holds.
 */
export function writePrivateFile(path: string, content: string): void {
  const temporary = writeTemporary(path, content);
  try {
    Deno.renameSync(temporary, path);
  } catch (error) {
    Deno.removeSync(temporary);
    throw error;
  }
}

/** How messages name a token-file: as written, and where that is when it differs. */
export function describePath(path: string, given: string): string {
  return given === path ? path : `${given} (${path})`;
}

/**
 * Checks that token-file may be written at PATH: nothing is there yet (a file an earlier job left
 * included), and its directory, if it exists, is one that no other user may change.
 *
 * @param path The path, absolute.
 * @param given The path as written in pipeline.yml.
 * @param owner This process's user and group.
 * @throws {UsageError} Naming the path and what to do.
 */
export function checkNewFile(path: string, given: string, owner: Owner): void {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  const named = `token-file ${describePath(path, given)}`;
  const instead = "or token-file: true for a private one";
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(dir);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  if (info !== undefined) {
    const mode = info.mode ?? 0;
    const sticky = (mode & 0o1000) !== 0;
    if (!info.isDirectory) {
      throw new UsageError(
        `Cannot write ${named}: ${dir} is not a directory; choose another path, ${instead}`,
      );
    }
    if (info.uid !== owner.uid && info.uid !== 0) {
      throw new UsageError(
        `Cannot write ${named}: its directory ${dir} belongs to another user (uid ${info.uid}), who could read or replace the token; choose a directory of your own, ${instead}`,
      );
    }
    const othersWrite = (mode & 0o002) !== 0 || ((mode & 0o020) !== 0 && info.gid !== owner.gid);
    if (othersWrite && !sticky) {
      throw new UsageError(
        `Cannot write ${named}: other users may write its directory ${dir} (mode ${
          (mode & 0o7777).toString(8).padStart(4, "0")
        }, without the sticky bit) and so replace the token; choose a directory only you may write, ${instead}`,
      );
    }
  }
  try {
    Deno.lstatSync(path);
  } catch (error) {
    if (isNotFound(error)) return;
    throw error;
  }
  throw new UsageError(
    `${named} already exists, and this plugin never replaces a file it did not create in this job: if an earlier job left it, remove it; else choose another path, ${instead}`,
  );
}

/**
 * Creates a file where none is: a private temporary file in the same directory, linked into place
 * (a hard link fails rather than replace anything that appeared meanwhile), then unlinked. Missing
 * directories are made (0700).
 *
 * @param path The file, absolute.
 * @param content What it holds.
 * @returns Which file it is, to replace or remove it later only while it is still that file.
 * @throws {Deno.errors.AlreadyExists} When something is at PATH.
 */
export function createFile(path: string, content: string): FileRecord {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temporary = writeTemporary(path, content);
  try {
    Deno.linkSync(temporary, path);
    return { path, ...identity(temporary) };
  } finally {
    Deno.removeSync(temporary);
  }
}

/**
 * Whether PATH is still the file a record describes (a regular file, not a link, the same inode).
 *
 * @param record The file as it was made.
 * @returns Whether it is unchanged in identity.
 */
export function isSameFile(record: FileRecord): boolean {
  try {
    const info = Deno.lstatSync(record.path);
    return info.isFile && info.dev === record.dev && (info.ino ?? 0) === record.ino;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/**
 * Replaces a file this job created, atomically, if it is still that file.
 *
 * @param record The file as it was made (or last replaced).
 * @param content What it holds now.
 * @returns The new file's record.
 * @throws {PluginError} When the job replaced or removed the file: it is left alone.
 */
export function replaceFile(record: FileRecord, content: string): FileRecord {
  if (!isSameFile(record)) {
    throw new PluginError(
      `${record.path} is no longer the file this job made (something replaced or removed it): it was left alone`,
    );
  }
  const temporary = writeTemporary(record.path, content);
  try {
    const made = identity(temporary);
    Deno.renameSync(temporary, record.path);
    return { path: record.path, ...made };
  } catch (error) {
    Deno.removeSync(temporary);
    throw error;
  }
}

/**
 * Removes a file this job created, if it is still that file.
 *
 * @param record The file.
 * @returns Whether it was removed (false: something else is there now, left alone).
 */
export function removeFile(record: FileRecord): boolean {
  if (!isSameFile(record)) return false;
  Deno.removeSync(record.path);
  return true;
}
