import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeTileIndex, entriesPath, parseTilePath, tileCountAtLevel, tilePath } from "./tile-path.js";

describe("tile paths (C2SP tlog-tiles)", () => {
  it("encodes indices in groups of three digits, x-prefixed but the last", () => {
    assert.equal(encodeTileIndex(0), "000");
    assert.equal(encodeTileIndex(67), "067");
    assert.equal(encodeTileIndex(999), "999");
    assert.equal(encodeTileIndex(1000), "x001/000");
    assert.equal(encodeTileIndex(1234067), "x001/x234/067");
  });

  it("writes and parses full and partial tiles and entry bundles", () => {
    assert.equal(tilePath({ level: 0, index: 1234067, width: 256 }), "tile/0/x001/x234/067");
    assert.equal(tilePath({ level: 2, index: 5, width: 17 }), "tile/2/005.p/17");
    assert.equal(entriesPath(1234067, 256), "tile/entries/x001/x234/067");
    assert.equal(entriesPath(0, 3), "tile/entries/000.p/3");
    assert.deepEqual(parseTilePath("tile/0/x001/x234/067"), {
      kind: "hashes",
      tile: { level: 0, index: 1234067, width: 256 },
    });
    assert.deepEqual(parseTilePath("tile/2/005.p/17"), { kind: "hashes", tile: { level: 2, index: 5, width: 17 } });
    assert.deepEqual(parseTilePath("tile/entries/000.p/3"), { kind: "entries", index: 0, width: 3 });
  });

  it("refuses every non-canonical or out-of-range path", () => {
    for (const path of [
      "tile/0/1",
      "tile/0/0001",
      "tile/0/x000/001",
      "tile/0/001/002",
      "tile/0/000.p/0",
      "tile/0/000.p/256",
      "tile/0/000.p/017",
      "tile/0/000.p/",
      "tile/7/000",
      "tile/-1/000",
      "tile/entries/000.p/0",
      "tile/0/000/",
      "tile//000",
      "tile/0/x001",
    ]) {
      assert.equal(parseTilePath(path), undefined, path);
    }
  });

  it("counts a level's full tiles and its partial edge", () => {
    assert.deepEqual(tileCountAtLevel(0, 0), { full: 0, partialWidth: 0 });
    assert.deepEqual(tileCountAtLevel(257, 0), { full: 1, partialWidth: 1 });
    assert.deepEqual(tileCountAtLevel(257, 1), { full: 0, partialWidth: 1 });
    assert.deepEqual(tileCountAtLevel(65_536 * 3 + 5, 2), { full: 0, partialWidth: 3 });
  });
});
