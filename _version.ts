// The package version, from deno.json, so a release changes it in one place.
import meta from "./deno.json" with { type: "json" };

/** The version of this package. */
export const VERSION: string = meta.version;

/** The `User-Agent` sent with every request. */
export const USER_AGENT: string = `token-exchange/${meta.version}`;
