import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import {
  consistencyProof,
  inclusionProof,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from "./merkle-tree.js";
import { consistencyPlan, inclusionPlan } from "./proof-plan.js";
import { proofFromTiles, type TileHashes, type TileReader, TreeEdge } from "./tiled-tree.js";

const leaf = (i: number) => createHash("sha256").update(`leaf ${i}`).digest();

/** Tiles as a store keeps them: the newest version of each (level, index). */
class TileStore implements TileReader {
  readonly tiles = new Map<string, Uint8Array>();
  put(changed: readonly TileHashes[]): void {
    for (const tile of changed) {
      const key = `${tile.level}/${tile.index}`;
      const before = this.tiles.get(key);
      // A tile only ever grows: what it held stays its prefix.
      if (before !== undefined) assert.deepEqual(tile.hashes.subarray(0, before.length), before);
      this.tiles.set(key, tile.hashes);
    }
  }
  async readTiles(ids: readonly { level: number; index: number }[]) {
    return ids.map((id) => this.tiles.get(`${id.level}/${id.index}`));
  }
}

/** A tree grown in uneven batches, with its leaf hashes for the reference proofs. */
function grow(sizes: readonly number[]) {
  const leaves: Buffer[] = [];
  const store = new TileStore();
  const edge = new TreeEdge();
  const roots = new Map<number, Buffer>();
  for (const size of sizes) {
    const batch = Array.from({ length: size - leaves.length }, (_, i) => leaf(leaves.length + i));
    leaves.push(...batch);
    store.put(edge.append(batch));
    roots.set(size, edge.root());
  }
  return { leaves, store, edge, roots };
}

describe("tiled tree", () => {
  it("the edge's root is MTH at every size up to 600, across tile boundaries", () => {
    const sizes = Array.from({ length: 600 }, (_, i) => i + 1);
    const { leaves, roots } = grow(sizes);
    for (const size of sizes) assert.deepEqual(roots.get(size), rootFromLeafHashes(leaves, size), `size ${size}`);
    assert.deepEqual(new TreeEdge().root(), rootFromLeafHashes([], 0));
  });

  it("proofs read from tiles equal proofs over the leaves, and verify", async () => {
    const sizes = [1, 2, 3, 7, 255, 256, 257, 300, 511, 512, 513, 1000, 4096, 65_535, 65_536, 65_537, 70_001];
    const { leaves, store, roots } = grow(sizes);
    for (const size of sizes) {
      const root = roots.get(size) as Buffer;
      const indices = size <= 4096 ? [0, 1, size >> 1, size - 2, size - 1] : [0, size - 1];
      for (const index of new Set(indices.filter((i) => i >= 0 && i < size))) {
        const fromTiles = await proofFromTiles(inclusionPlan(index, size), store);
        assert.deepEqual(fromTiles, inclusionProof(leaves, index, size), `inclusion ${index} in ${size}`);
        assert.ok(verifyInclusion(leaves[index] as Buffer, index, size, fromTiles, root));
      }
      // Every pair among the small sizes; into the large ones from a few (the reference proofs are O(size)).
      const olds = size <= 4096 ? sizes.filter((s) => s <= size) : [257, 65_536].filter((s) => s <= size);
      for (const oldSize of olds) {
        const fromTiles = await proofFromTiles(consistencyPlan(oldSize, size), store);
        assert.deepEqual(fromTiles, consistencyProof(leaves, oldSize, size), `consistency ${oldSize} → ${size}`);
        assert.ok(verifyConsistency(oldSize, size, roots.get(oldSize) as Buffer, root, fromTiles));
      }
    }
  });

  it("restores its edge from one stored tile per level and keeps growing identically", () => {
    const { leaves: all, store } = grow([0, 1, 255, 256, 257, 65_536, 65_537]);
    for (const size of [0, 1, 255, 256, 257, 65_536, 65_537]) {
      const leaves = all.slice(0, size);
      const restored = TreeEdge.restore(size, (level, index) => store.tiles.get(`${level}/${index}`));
      assert.deepEqual(restored.root(), rootFromLeafHashes(leaves, size), `restored ${size}`);
      const more = [leaf(size), leaf(size + 1)];
      restored.append(more);
      assert.deepEqual(restored.root(), rootFromLeafHashes([...leaves, ...more]), `grown from ${size}`);
    }
  });

  it("refuses to restore from a missing or short edge tile", () => {
    assert.throws(() => TreeEdge.restore(300, () => undefined), { name: "TileError" });
    assert.throws(() => TreeEdge.restore(300, () => new Uint8Array(32)), { name: "TileError" });
  });

  it("a proof needing a tile the store lacks fails, never answers wrong", async () => {
    const { store } = grow([300]);
    store.tiles.delete("0/1");
    await assert.rejects(proofFromTiles(inclusionPlan(299, 300), store), { name: "TileError" });
  });
});
