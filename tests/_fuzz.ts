// Seeds and generators for the property tests (fast-check). The seed is fixed so a run is
// reproducible; set FUZZ_SEED to another integer (or "random") to explore, and FUZZ_RUNS to scale
// the number of cases. fast-check prints the seed and the shrunk counterexample on a failure.

import fc from "fast-check";
import { ENV_PREFIX, FLAGS } from "../_cli_flags.ts";

export { fc };

function seedFromEnv(): number {
  const value = Deno.env.get("FUZZ_SEED");
  if (value === undefined || value === "") return 20_261_126;
  if (value === "random") return Math.floor(Math.random() * 2 ** 31);
  const seed = Number(value);
  if (!Number.isSafeInteger(seed)) throw new TypeError(`FUZZ_SEED is "${value}": use an integer`);
  return seed;
}

/** The seed every property in this run uses. */
export const SEED = seedFromEnv();
const SCALE = Number(Deno.env.get("FUZZ_RUNS") ?? "1") || 1;

/** fast-check parameters: the run's seed and `runs` cases (times FUZZ_RUNS). */
export function params(runs: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: Math.round(runs * SCALE) };
}

// The CLI's flags and variables.

/** Every flag name, and some near misses. */
export const FLAG_NAMES = [...Object.keys(FLAGS), "verbose", "token-endpont", "debug-mode", ""];

/** Every BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* suffix the CLI reads, lists as `_0` and `_1` too. */
export const ENV_SUFFIXES = Object.values(FLAGS).flatMap((spec) =>
  spec.env === undefined
    ? []
    : spec.kind === "list"
    ? [spec.env, `${spec.env}_0`, `${spec.env}_1`]
    : [spec.env]
).concat(["BUILDKITE_AUDIENCE", "UNKNOWN_OPTION"]);

/** Values that sit on the edges of what the CLI accepts. */
export const EDGE_VALUES = [
  "",
  " ",
  "-",
  "--",
  "--debug",
  "true",
  "false",
  "1",
  "0",
  "yes",
  "10",
  "2.5",
  ".5",
  "5.",
  "-1",
  "1e3",
  "NaN",
  "Infinity",
  "3600",
  "3601",
  "100",
  "101",
  "007",
  "999999999",
  "1000000000",
  "basic",
  "post",
  "token",
  "json",
  "kubernetes",
  "buildkite",
  "github-actions",
  "gitlab",
  "MY_TOKEN",
  "STS_SECRET",
  "UNSET_VAR",
  "1BAD",
  "bad name",
  "__proto__",
  "constructor",
  "urn:ietf:params:oauth:token-type:jwt",
  "https://api.example.com",
  "https://api.example.com/#fragment",
  "relative/path",
  "ftp://files.example.com/x",
  "/tmp/no-such-token",
  "a b c",
  "é",
  "\u0000",
];

/** Endpoints and issuers, good and bad. */
export const URL_VALUES = [
  "https://sts.example.com/token",
  "https://sts.example.com",
  "http://127.0.0.1:8080/token",
  "http://localhost/token",
  "http://[::1]:9/token",
  "http://127.255.255.254/t",
  "http://sts.example.com/token",
  "http://10.0.0.1/token",
  "https://user:pw@sts.example.com/token",
  "https://sts.example.com/token#frag",
  "https://issuer.example.com?x=1",
  "sts.example.com/token",
  "https://",
  "javascript:alert(1)",
];

/** Values each flag (and its variable) accepts, so that many cases get past the parser. */
export const GOOD_VALUES: Readonly<Record<string, readonly string[]>> = {
  "token-endpoint": ["https://sts.example.com/token", "http://127.0.0.1:8080/token"],
  issuer: ["https://issuer.example.com", "http://localhost:8080"],
  audience: ["sts.example.com", "buildkite"],
  lifetime: ["300", "3600"],
  claim: ["organization_id", "pipeline_id"],
  "subject-token-type": [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
  ],
  "target-audience": ["https://api.example.com", "api"],
  resource: ["https://api.example.com/v1"],
  scope: ["read", "read write"],
  "requested-token-type": ["urn:ietf:params:oauth:token-type:access_token"],
  "extra-param": ["connector_id=buildkite", "subject_issuer=buildkite"],
  "client-id": ["ci", "ci:bot@example"],
  "client-secret-env": ["STS_SECRET"],
  "client-auth": ["basic", "post"],
  timeout: ["10", "2.5"],
  retries: ["0", "3"],
  "subject-token-env": ["MY_TOKEN"],
  "subject-token-file": ["/tmp/subject-token", "-"],
  "subject-token-source": ["buildkite", "github-actions", "gitlab"],
  format: ["token", "json", "kubernetes"],
  debug: ["true", "false"],
};

/** The flag a BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* suffix stands for. */
function flagForSuffix(suffix: string): string | undefined {
  const base = suffix.replace(/_\d+$/, "");
  if (base === "BUILDKITE_AUDIENCE") return "audience";
  return Object.keys(FLAGS).find((name) => FLAGS[name]!.env === base);
}

/** A value for a flag: mostly one it accepts, sometimes a `wild` one. */
export function valueFor(
  name: string | undefined,
  wild: fc.Arbitrary<string>,
  good: Readonly<Record<string, readonly string[]>> = GOOD_VALUES,
): fc.Arbitrary<string> {
  const accepted = name === undefined ? undefined : good[name];
  return accepted === undefined || accepted.length === 0 ? wild : fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...accepted) },
    { weight: 1, arbitrary: wild },
  );
}

/**
 * argv for the CLI: usually a token endpoint first, then flags in each form (`--f v`, `--f=v`,
 * `--f`), and now and then a stray argument.
 */
export function argvArbitrary(
  wild: fc.Arbitrary<string>,
  names: readonly string[] = FLAG_NAMES.filter((name) => name !== "help" && name !== "version"),
  good: Readonly<Record<string, readonly string[]>> = GOOD_VALUES,
): fc.Arbitrary<string[]> {
  const flag = fc.constantFrom(...names).chain((name) =>
    fc.tuple(
      fc.constant(name),
      valueFor(name, wild, good),
      fc.constantFrom("separate", "separate", "separate", "inline", "inline", "bare"),
    )
  ).map(([name, value, form]) =>
    form === "separate"
      ? [`--${name}`, value]
      : form === "inline"
      ? [`--${name}=${value}`]
      : [`--${name}`]
  );
  const stray = fc.constantFrom(["-h"], ["-V"], ["--"], ["-"], ["positional"], ["-x"], ["--="]);
  const endpoint = fc.option(
    valueFor("token-endpoint", wild, good).map((url) => ["--token-endpoint", url]),
    { freq: 3, nil: [] as string[] },
  );
  const rest = fc.array(
    fc.oneof({ weight: 30, arbitrary: flag }, { weight: 1, arbitrary: stray }),
    { maxLength: 5 },
  );
  return fc.tuple(endpoint, rest).map(([first, parts]) => [...first, ...parts.flat()]);
}

/** BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables (and a few others), mostly with accepted values. */
export function envArbitrary(
  wild: fc.Arbitrary<string>,
  good: Readonly<Record<string, readonly string[]>> = GOOD_VALUES,
): fc.Arbitrary<Map<string, string>> {
  const entry = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom(...ENV_SUFFIXES).chain((suffix) =>
        fc.tuple(fc.constant(ENV_PREFIX + suffix), valueFor(flagForSuffix(suffix), wild, good))
      ),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom("MY_TOKEN", "STS_SECRET", "__proto__"), wild),
    },
  );
  return fc.array(entry, { maxLength: 4 }).map((entries) => new Map(entries));
}
