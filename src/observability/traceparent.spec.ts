import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseTraceparent } from "./traceparent.js";

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
const parentId = "00f067aa0ba902b7";

describe("W3C traceparent", () => {
  it("reads a version-00 header (the spec's examples)", () => {
    assert.deepEqual(parseTraceparent(`00-${traceId}-${parentId}-01`), {
      version: "00",
      traceId,
      parentId,
      flags: "01",
    });
    assert.equal(parseTraceparent(`00-${traceId}-${parentId}-00`)?.traceId, traceId);
    // Unknown flag bits (level 2 adds random-trace-id, 0x02) are no reason to ignore the header.
    assert.equal(parseTraceparent(`00-${traceId}-${parentId}-03`)?.flags, "03");
    assert.equal(parseTraceparent(`00-${traceId}-${parentId}-ff`)?.flags, "ff");
  });

  it("ignores an absent header", () => {
    assert.equal(parseTraceparent(undefined), undefined);
    assert.equal(parseTraceparent(""), undefined);
  });

  const invalid: Array<[string, string]> = [
    ["upper-case hex in the trace id", `00-${traceId.toUpperCase()}-${parentId}-01`],
    ["upper-case hex in the parent id", `00-${traceId}-00F067AA0BA902B7-01`],
    ["upper-case hex in the flags", `00-${traceId}-${parentId}-0A`],
    ["upper-case hex in the version", `0A-${traceId}-${parentId}-01`],
    ["version ff", `ff-${traceId}-${parentId}-01`],
    ["version ff with extra fields", `ff-${traceId}-${parentId}-01-what-ever`],
    ["an all-zero trace id", `00-${"0".repeat(32)}-${parentId}-01`],
    ["an all-zero parent id", `00-${traceId}-${"0".repeat(16)}-01`],
    ["a short trace id", `00-${traceId.slice(1)}-${parentId}-01`],
    ["a long trace id", `00-${traceId}0-${parentId}-01`],
    ["a short parent id", `00-${traceId}-${parentId.slice(1)}-01`],
    ["a long parent id", `00-${traceId}-${parentId}0-01`],
    ["one-digit flags", `00-${traceId}-${parentId}-1`],
    ["three-digit flags", `00-${traceId}-${parentId}-011`],
    ["a one-digit version", `0-${traceId}-${parentId}-01`],
    ["a three-digit version", `000-${traceId}-${parentId}-01`],
    ["extra fields for version 00", `00-${traceId}-${parentId}-01-extra`],
    ["a trailing dash for version 00", `00-${traceId}-${parentId}-01-`],
    ["a missing field", `00-${traceId}-${parentId}`],
    ["non-hex characters", `00-${traceId.slice(0, 31)}g-${parentId}-01`],
    ["another separator", `00_${traceId}_${parentId}_01`],
    ["surrounding characters", ` 00-${traceId}-${parentId}-01`],
    ["two headers joined", `00-${traceId}-${parentId}-01, 00-${traceId}-${parentId}-01`],
    ["a future version shorter than 55 characters", `01-${traceId}-${parentId}-0`],
    ["a future version whose flags are followed by other than a dash", `cc-${traceId}-${parentId}-01.what`],
    ["a future version with an all-zero trace id", `cc-${"0".repeat(32)}-${parentId}-01-what`],
  ];
  for (const [name, header] of invalid) {
    it(`ignores ${name}`, () => {
      assert.equal(parseTraceparent(header), undefined, header);
    });
  }

  it("reads a future version by its first four fields, whatever follows a dash", () => {
    assert.deepEqual(parseTraceparent(`cc-${traceId}-${parentId}-01-what-the-future-will-be-like`), {
      version: "cc",
      traceId,
      parentId,
      flags: "01",
    });
    assert.equal(parseTraceparent(`01-${traceId}-${parentId}-09`)?.traceId, traceId);
    assert.equal(parseTraceparent(`fe-${traceId}-${parentId}-00-`)?.traceId, traceId);
  });
});
