import assert from "node:assert/strict";
import { decodeJson, decodeJsonObject, isJsonObject } from "./_json.ts";

Deno.test("decodeJson() says whether a body is a JSON object, other JSON, not JSON or not UTF-8", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  assert.deepEqual(decodeJson(bytes('\uFEFF{"a":1}')), {
    kind: "object",
    text: '{"a":1}',
    object: { a: 1 },
  });
  assert.deepEqual(decodeJson("[1]"), { kind: "other", text: "[1]", value: [1] });
  assert.deepEqual(decodeJson("null"), { kind: "other", text: "null", value: null });
  assert.deepEqual(decodeJson("<html>"), { kind: "not-json", text: "<html>" });
  assert.deepEqual(decodeJson(new Uint8Array([0x7b, 0xff, 0x7d])), { kind: "not-utf8" });
});

Deno.test("decodeJsonObject() gives the object or undefined", () => {
  assert.deepEqual(decodeJsonObject('{"value":"t"}'), { value: "t" });
  assert.equal(decodeJsonObject('"t"'), undefined);
  assert.deepEqual([{}, [], null, "x"].map(isJsonObject), [true, false, false, false]);
});
