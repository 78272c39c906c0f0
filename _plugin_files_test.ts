import assert from "node:assert/strict";
import { UsageError } from "./_cli_flags.ts";
import {
  checkNewFile,
  createFile,
  type EntryManifest,
  isSameFile,
  makeEntryDir,
  MANIFEST,
  openJobDir,
  PluginError,
  readJobDir,
  removeFile,
  replaceFile,
  writePrivateFile,
} from "./_plugin_files.ts";

const OWNER = { uid: Deno.uid()!, gid: Deno.gid()! };
const IS_ROOT = OWNER.uid === 0;

async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "plugin-files-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
const mode = (path: string) => Deno.lstatSync(path).mode! & 0o7777;

Deno.test("openJobDir() makes a 0700 directory, and readJobDir() refuses one that is not this user's own", async () => {
  await using tmp = await tempDir();
  const job = `${tmp.path}/token-exchange-job`;
  assert.deepEqual(readJobDir(job, OWNER), []);
  openJobDir(job, OWNER);
  assert.equal(mode(job), 0o700);
  openJobDir(job, OWNER); // Again, for the next entry: it is ours.
  const refused = (path: string) =>
    new PluginError(
      `Cannot use the private directory ${path}: it is not a directory this agent's user made (another job may have put it there); remove it, or set TMPDIR to a directory only this agent uses`,
    );
  await Deno.chmod(job, 0o755);
  assert.throws(() => readJobDir(job, OWNER), refused(job));
  const link = `${tmp.path}/token-exchange-link`;
  await Deno.symlink(job, link);
  assert.throws(() => openJobDir(link, OWNER), refused(link));
  assert.throws(() => readJobDir(job, { ...OWNER, uid: OWNER.uid + 1 }), refused(job));
});

Deno.test("makeEntryDir() numbers the job's entries, and readJobDir() reads the manifests of those before", async () => {
  await using tmp = await tempDir();
  const job = `${tmp.path}/job`;
  openJobDir(job, OWNER);
  const first = makeEntryDir(job);
  const second = makeEntryDir(job);
  assert.deepEqual([first.number, second.number], [1, 2]);
  assert.equal(mode(first.dir), 0o700);
  const manifest: EntryManifest = {
    number: 1,
    label: "env-var A",
    exports: ["A"],
    secrets: ["A"],
    files: [],
  };
  writePrivateFile(`${first.dir}/${MANIFEST}`, JSON.stringify(manifest));
  // An entry with no manifest (yet), and a stray file, are skipped.
  await Deno.writeTextFile(`${job}/stray`, "");
  assert.deepEqual(readJobDir(job, OWNER), [manifest]);
});

Deno.test("writePrivateFile() replaces a file whole, 0600, with nothing left beside it", async () => {
  await using tmp = await tempDir();
  const file = `${tmp.path}/token`;
  writePrivateFile(file, "one");
  const before = Deno.lstatSync(file).ino;
  writePrivateFile(file, "two");
  assert.equal(await Deno.readTextFile(file), "two");
  assert.equal(mode(file), 0o600);
  assert.notEqual(Deno.lstatSync(file).ino, before);
  assert.deepEqual(names(tmp.path), ["token"]);
});

Deno.test("checkNewFile() refuses a path where anything is, and a directory others may change", async () => {
  await using tmp = await tempDir();
  const file = `${tmp.path}/token`;
  checkNewFile(file, file, OWNER);
  checkNewFile(`${tmp.path}/missing/token`, "missing/token", OWNER);
  const exists = (given: string) =>
    new UsageError(
      `token-file ${given} already exists, and this plugin never replaces a file it did not create in this job: if an earlier job left it, remove it; else choose another path, or token-file: true for a private one`,
    );
  for (
    const make of [
      () => Deno.writeTextFileSync(file, "mine", { mode: 0o600 }),
      () => Deno.symlinkSync(`${tmp.path}/nowhere`, file),
      () => Deno.mkdirSync(file),
    ]
  ) {
    make();
    assert.throws(() => checkNewFile(file, "~/token", OWNER), exists(`~/token (${file})`));
    Deno.removeSync(file);
  }
  const instead = "or token-file: true for a private one";
  await Deno.chmod(tmp.path, 0o777);
  assert.throws(
    () => checkNewFile(file, file, OWNER),
    new UsageError(
      `Cannot write token-file ${file}: other users may write its directory ${tmp.path} (mode 0777, without the sticky bit) and so replace the token; choose a directory only you may write, ${instead}`,
    ),
  );
  // A group that is not this user's own is other users too; the sticky bit guards either.
  await Deno.chmod(tmp.path, 0o770);
  assert.throws(
    () => checkNewFile(file, file, { ...OWNER, gid: OWNER.gid + 1 }),
    /other users may write/,
  );
  checkNewFile(file, file, OWNER);
  await Deno.chmod(tmp.path, 0o1777);
  checkNewFile(file, file, OWNER);
  await Deno.chmod(tmp.path, 0o700);
  await Deno.writeTextFile(`${tmp.path}/plain`, "");
  assert.throws(
    () => checkNewFile(`${tmp.path}/plain/token`, "plain/token", OWNER),
    new UsageError(
      `Cannot write token-file plain/token (${tmp.path}/plain/token): ${tmp.path}/plain is not a directory; choose another path, ${instead}`,
    ),
  );
  if (IS_ROOT) {
    const theirs = `${tmp.path}/theirs`;
    await Deno.mkdir(theirs);
    await Deno.chown(theirs, 65534, 65534);
    assert.throws(
      () => checkNewFile(`${theirs}/token`, `${theirs}/token`, OWNER),
      new UsageError(
        `Cannot write token-file ${theirs}/token: its directory ${theirs} belongs to another user (uid 65534), who could read or replace the token; choose a directory of your own, ${instead}`,
      ),
    );
  }
});

Deno.test("createFile() never replaces anything, makes missing directories private, and leaves nothing beside the file", async () => {
  await using tmp = await tempDir();
  const file = `${tmp.path}/sub/dir/token`;
  const record = createFile(file, "issued");
  assert.equal(await Deno.readTextFile(file), "issued");
  assert.deepEqual([mode(file), mode(`${tmp.path}/sub`), mode(`${tmp.path}/sub/dir`)], [
    0o600,
    0o700,
    0o700,
  ]);
  assert.deepEqual(names(`${tmp.path}/sub/dir`), ["token"]);
  assert.equal(isSameFile(record), true);
  // Something that appeared there meanwhile is never replaced.
  assert.throws(() => createFile(file, "again"), Deno.errors.AlreadyExists);
  const link = `${tmp.path}/link`;
  await Deno.symlink(`${tmp.path}/target`, link);
  assert.throws(() => createFile(link, "through"), Deno.errors.AlreadyExists);
  await assert.rejects(Deno.lstat(`${tmp.path}/target`), Deno.errors.NotFound);
  assert.equal(await Deno.readTextFile(file), "issued");
  assert.deepEqual(names(`${tmp.path}/sub/dir`), ["token"]);
});

Deno.test("replaceFile() and removeFile() touch the file only while it is the one this job made", async () => {
  await using tmp = await tempDir();
  const file = `${tmp.path}/token`;
  const first = createFile(file, "one");
  const second = replaceFile(first, "two");
  assert.equal(await Deno.readTextFile(file), "two");
  assert.notEqual(second.ino, first.ino);
  assert.equal(isSameFile(first), false);
  const message = new PluginError(
    `${file} is no longer the file this job made (something replaced or removed it): it was left alone`,
  );
  assert.throws(() => replaceFile(first, "three"), message);
  // The job put its own file there: it stays, whatever happens.
  await Deno.remove(file);
  await Deno.writeTextFile(file, "the job's own", { mode: 0o600 });
  assert.throws(() => replaceFile(second, "four"), message);
  assert.equal(removeFile(second), false);
  assert.equal(await Deno.readTextFile(file), "the job's own");
  // A link in its place too.
  await Deno.remove(file);
  await Deno.symlink(`${tmp.path}/precious`, file);
  assert.equal(removeFile(second), false);
  assert.equal((await Deno.lstat(file)).isSymlink, true);
  await Deno.remove(file);
  assert.equal(removeFile(second), false);
  const third = createFile(file, "five");
  assert.equal(removeFile(third), true);
  assert.deepEqual(names(tmp.path), []);
});
