import assert from "node:assert/strict";
import {
  ENV_PREFIX,
  FLAGS,
  helpText,
  optionLabel,
  OptionValues,
  parseFlags,
  UsageError,
} from "./_cli_flags.ts";

Deno.test("parseFlags() reads --flag VALUE, --flag=VALUE, repeated lists, -h and -V", () => {
  assert.deepEqual(
    Object.fromEntries(
      parseFlags([
        "--token-endpoint",
        "https://sts.example.com/token",
        "--scope=read",
        "--scope",
        "write",
        "--debug",
        "-h",
        "-V",
        "--",
      ]),
    ),
    {
      "token-endpoint": ["https://sts.example.com/token"],
      scope: ["read", "write"],
      debug: ["true"],
      help: ["true"],
      version: ["true"],
    },
  );
  // A value may start with one dash (`-` is stdin) or be empty.
  assert.deepEqual(Object.fromEntries(parseFlags(["--subject-token-file", "-", "--scope="])), {
    "subject-token-file": ["-"],
    scope: [""],
  });
});

Deno.test("parseFlags() refuses what is not a flag it knows, saying what to write", () => {
  const cases: [string[], string][] = [
    [["--verbose"], 'Unknown flag "--verbose": see --help'],
    [["--token-endpont=x"], 'Unknown flag "--token-endpont": did you mean --token-endpoint?'],
    [["-x"], 'Unknown flag "-x": see --help'],
    [
      ["--client-secret=pasted-s3cret-value"],
      'There is no flag "--client-secret": it would take the client secret itself, which the process list and the shell\'s history show to others: rotate that secret if it was used, keep the new one in an environment variable, and name the variable with --client-secret-env',
    ],
    [
      ["https://sts.example.com"],
      'Unexpected argument "https://sts.example.com": options are flags such as --token-endpoint URL',
    ],
    [["--", "extra"], 'Unexpected argument "extra": see --help'],
    [["--token-endpoint"], "Flag --token-endpoint needs a value: --token-endpoint URL"],
    [["--issuer", "--debug"], "Flag --issuer needs a value: --issuer URL"],
    [["--timeout", "1", "--timeout", "2"], "Flag --timeout is given more than once: give it once"],
    [["--help=false"], "Flag --help takes no value: write --help alone"],
    [["--version=false"], "Flag --version takes no value: write --version alone"],
    [["--help=true"], "Flag --help takes no value: write --help alone"],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args), new UsageError(message), args.join(" "));
  }
});

Deno.test("UsageError keeps its message on one line, whatever it quotes", () => {
  assert.equal(new UsageError('Unknown flag "--a\n^^^ +++"').message, 'Unknown flag "--a ^^^ +++"');
});

Deno.test("--help lists every flag, and names the variables that are not the flag in upper snake case", () => {
  const help = helpText("1.2.3");
  assert.match(help, /^token-exchange 1\.2\.3\n/);
  for (const [name, spec] of Object.entries(FLAGS)) {
    const line = help.split("\n").find((l) => l.includes(`--${name} `) || l.endsWith(`--${name}`));
    assert.ok(line, `--help lacks --${name}`);
    // A flag without a variable is marked *.
    assert.equal(line.endsWith(" *"), spec.env === undefined, line);
  }
  const footer = help.replace(/\s+/g, " ");
  assert.ok(
    footer.includes(
      `fall back to ${ENV_PREFIX}<OPTION>, the plugin option in upper snake case (--claim reads ..._CLAIMS, --extra-param reads ..._EXTRA_PARAMS; --audience also reads ..._BUILDKITE_AUDIENCE;`,
    ),
    footer,
  );
  // The usage line grants no --allow-run: only a Buildkite job needs it.
  assert.match(help, /deno run --no-prompt --allow-net=<endpoint host> --allow-env cli\.ts/);
});

Deno.test("OptionValues reads a flag, or else its variable, and names it as it was set", () => {
  const env: Record<string, string> = {
    [`${ENV_PREFIX}SCOPE_0`]: "read",
    [`${ENV_PREFIX}SCOPE_1`]: "write",
    [`${ENV_PREFIX}CLIENT_ID`]: "ci",
    [`${ENV_PREFIX}TIMEOUT`]: "",
  };
  const options = new OptionValues(parseFlags(["--retries", "2"]), (name) => env[name]);
  assert.deepEqual(options.list("scope"), { value: ["read", "write"], from: "scope" });
  assert.deepEqual(options.string("client-id"), { value: "ci", from: "client-id" });
  assert.deepEqual(options.string("retries"), { value: "2", from: "--retries" });
  assert.equal(options.string("timeout"), undefined, "an empty variable is unset");
  assert.deepEqual(options.list("resource"), { value: [], from: "resource" });
  const names = options.names(false);
  assert.deepEqual(names, {
    fromVariable: ["scope", "client-id"],
    fromFlag: ["retries"],
    plugin: false,
  });
  assert.deepEqual(
    ["scope", "client-id", "retries", "timeout", "claim", "extra-param", "format"].map((flag) =>
      optionLabel(names, flag)
    ),
    ["scope", "client-id", "--retries", "--timeout", "--claim", "--extra-param", "--format"],
  );
  // In the plugin's run, an option that was not set is named as pipeline.yml spells it.
  assert.deepEqual(
    ["timeout", "claim", "extra-param", "retries", "format"].map((flag) =>
      optionLabel({ ...names, plugin: true }, flag)
    ),
    ["timeout", "claims", "extra-params", "--retries", "--format"],
  );
});

Deno.test("OptionValues.boolean() takes true, false, 1 and 0, and nothing else", () => {
  const read = (args: string[], value?: string) =>
    new OptionValues(
      parseFlags(args),
      (name) => name === `${ENV_PREFIX}DEBUG` ? value : undefined,
    ).boolean("debug");
  assert.deepEqual(
    [read([]), read(["--debug"]), read(["--debug=false"]), read([], "1"), read([], "0")],
    [false, true, false, true, false],
  );
  assert.throws(
    () => read(["--debug=maybe"]),
    new UsageError('--debug is "maybe": use true or false'),
  );
  assert.throws(() => read([], "yes"), new UsageError('debug is "yes": use true or false'));
});
