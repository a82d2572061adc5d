import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FullTileCache, fullTileBytes } from "./full-tile-cache.js";

const full = (fill: number) => new Uint8Array(fullTileBytes).fill(fill);

describe("full-tile cache", () => {
  it("holds full tiles by level and index", () => {
    const cache = new FullTileCache(4);
    const tile = full(1);
    cache.remember(0, 7, tile);
    assert.equal(cache.get(0, 7), tile);
    assert.equal(cache.get(1, 7), undefined);
    assert.equal(cache.get(0, 8), undefined);
  });

  it("never holds a partial tile, which still grows", () => {
    const cache = new FullTileCache(4);
    cache.remember(0, 0, new Uint8Array(fullTileBytes - 32));
    cache.remember(0, 1, new Uint8Array(32));
    assert.equal(cache.get(0, 0), undefined);
    assert.equal(cache.get(0, 1), undefined);
    assert.equal(cache.size, 0);
  });

  it("evicts the least recently used tile beyond its capacity", () => {
    const cache = new FullTileCache(2);
    cache.remember(0, 0, full(0));
    cache.remember(0, 1, full(1));
    // Reading 0/0 makes 0/1 the least recent: the next tile evicts it.
    assert.ok(cache.get(0, 0) !== undefined);
    cache.remember(0, 2, full(2));
    assert.equal(cache.size, 2);
    assert.ok(cache.get(0, 0) !== undefined);
    assert.equal(cache.get(0, 1), undefined);
    assert.ok(cache.get(0, 2) !== undefined);
  });

  it("refuses a capacity below one", () => {
    assert.throws(() => new FullTileCache(0), RangeError);
  });
});
