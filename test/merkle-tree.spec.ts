// The receipt log's Merkle tree (docs/TRANSPARENCY_LOG.md) against its test
// vectors (test/vectors/merkle.json), against known values of the RFC 6962
// reference tree, and against a naive implementation written here straight
// from the recursive definitions of RFC 9162 §2.1.
//
// Regenerate the vectors with:
//   OPENEXEC_WRITE_VECTORS=1 node --import tsx --test test/merkle-tree.spec.ts

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  consistencyProof,
  emptyRoot,
  inclusionProof,
  leafHash,
  MerkleError,
  MerkleFrontier,
  nodeHash,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from "../src/tlog/merkle-tree.js";
import { packageRoot as root } from "../src/version.js";

const vectorsPath = join(root, "test/vectors/merkle.json");

// ---------------------------------------------------------------------------
// A naive implementation: the recursive definitions of RFC 9162 §2.1.1,
// §2.1.3.1 and §2.1.4.1 over the entries themselves, sharing no code with
// src/tlog/merkle-tree.ts.

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/** The largest power of two strictly below n (n >= 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function naiveRoot(d: readonly Uint8Array[]): Buffer {
  if (d.length === 0) return sha256();
  if (d.length === 1) return sha256(Buffer.of(0x00), d[0] as Uint8Array);
  const k = split(d.length);
  return sha256(Buffer.of(0x01), naiveRoot(d.slice(0, k)), naiveRoot(d.slice(k)));
}

function naivePath(m: number, d: readonly Uint8Array[]): Buffer[] {
  if (d.length === 1) return [];
  const k = split(d.length);
  if (m < k) return [...naivePath(m, d.slice(0, k)), naiveRoot(d.slice(k))];
  return [...naivePath(m - k, d.slice(k)), naiveRoot(d.slice(0, k))];
}

function naiveSubproof(m: number, d: readonly Uint8Array[], b: boolean): Buffer[] {
  if (m === d.length) return b ? [] : [naiveRoot(d)];
  const k = split(d.length);
  if (m <= k) return [...naiveSubproof(m, d.slice(0, k), b), naiveRoot(d.slice(k))];
  return [...naiveSubproof(m - k, d.slice(k), false), naiveRoot(d.slice(0, k))];
}

/** PROOF(m, D[n]); for m == 0 the empty proof, as the implementation defines it. */
function naiveProof(m: number, d: readonly Uint8Array[]): Buffer[] {
  return m === 0 ? [] : naiveSubproof(m, d, true);
}

// ---------------------------------------------------------------------------
// The vectors file, built from either implementation.

interface Tree {
  readonly name: string;
  readonly description: string;
  readonly entries_hex: readonly string[];
  readonly leaf_hashes: readonly string[];
  /** roots[n] is the root of the first n entries. */
  readonly roots: readonly string[];
  readonly inclusion: readonly { index: number; size: number; proof: string[] }[];
  readonly consistency: readonly { old_size: number; new_size: number; proof: string[] }[];
}
interface Vectors {
  readonly description: string;
  readonly trees: readonly Tree[];
}

interface Implementation {
  root(entries: readonly Uint8Array[], size: number): Buffer;
  path(entries: readonly Uint8Array[], index: number, size: number): Buffer[];
  proof(entries: readonly Uint8Array[], oldSize: number, newSize: number): Buffer[];
}

const production: Implementation = {
  root: (entries, size) => rootFromLeafHashes(entries.map(leafHash), size),
  path: (entries, index, size) => inclusionProof(entries.map(leafHash), index, size),
  proof: (entries, oldSize, newSize) => consistencyProof(entries.map(leafHash), oldSize, newSize),
};

const naive: Implementation = {
  root: (entries, size) => naiveRoot(entries.slice(0, size)),
  path: (entries, index, size) => naivePath(index, entries.slice(0, size)),
  proof: (entries, oldSize, newSize) => naiveProof(oldSize, entries.slice(0, newSize)),
};

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const unhex = (text: string): Buffer => Buffer.from(text, "hex");

/** The RFC 6962 reference leaves (Certificate Transparency's and transparency-dev/merkle's test data). */
const referenceEntries = [
  "",
  "00",
  "10",
  "2021",
  "3031",
  "40414243",
  "5051525354555657",
  "606162636465666768696a6b6c6d6e6f",
].map(unhex);
const asciiEntries = Array.from({ length: 10 }, (_, i) => Buffer.from(`leaf-${i}`, "ascii"));

function buildTree(name: string, description: string, entries: readonly Uint8Array[], impl: Implementation): Tree {
  const n = entries.length;
  const inclusion: { index: number; size: number; proof: string[] }[] = [];
  const consistency: { old_size: number; new_size: number; proof: string[] }[] = [];
  for (let size = 1; size <= n; size++) {
    for (let index = 0; index < size; index++) {
      inclusion.push({ index, size, proof: impl.path(entries, index, size).map(hex) });
    }
  }
  for (let newSize = 0; newSize <= n; newSize++) {
    for (let oldSize = 0; oldSize <= newSize; oldSize++) {
      consistency.push({ old_size: oldSize, new_size: newSize, proof: impl.proof(entries, oldSize, newSize).map(hex) });
    }
  }
  return {
    name,
    description,
    entries_hex: entries.map(hex),
    leaf_hashes: entries.map((entry) => hex(impl.root([entry], 1))),
    roots: Array.from({ length: n + 1 }, (_, size) => hex(impl.root(entries, size))),
    inclusion,
    consistency,
  };
}

function buildVectors(impl: Implementation): Vectors {
  return {
    description:
      "Test vectors for docs/TRANSPARENCY_LOG.md: RFC 6962 Merkle trees over SHA-256. For each tree: its entries (hex), " +
      "their leaf hashes SHA-256(0x00 || entry), roots[n] = the root of the first n entries (roots[0] is SHA-256 of the " +
      "empty string), every inclusion proof (index, size) and every consistency proof (old_size, new_size), each proof a " +
      "list of lowercase hex hashes in the order of RFC 9162 §2.1.3.1 / §2.1.4.1. Consistency proofs from 0 and to the " +
      "same size are empty.",
    trees: [
      buildTree(
        "rfc6962",
        "The reference leaves of the Certificate Transparency test data (RFC 6962).",
        referenceEntries,
        impl,
      ),
      buildTree("ascii", 'The ASCII strings "leaf-0" to "leaf-9".', asciiEntries, impl),
    ],
  };
}

if (process.env.OPENEXEC_WRITE_VECTORS === "1") {
  writeFileSync(vectorsPath, `${JSON.stringify(buildVectors(production), null, 2)}\n`);
}

const vectors = JSON.parse(readFileSync(vectorsPath, "utf8")) as Vectors;

// ---------------------------------------------------------------------------

/** Leaf hashes of n distinct entries. */
function leaves(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));
}

/** A copy of the hashes with one bit of hash `i` flipped. */
function alter(hashes: readonly Uint8Array[], i: number): Buffer[] {
  return hashes.map((hash, j) => {
    const copy = Buffer.from(hash);
    if (j === i) copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 1;
    return copy;
  });
}

describe("vectors", () => {
  it("are what the implementation produces", () => {
    assert.deepEqual(vectors, buildVectors(production));
  });

  it("are what the naive recursive definitions produce", () => {
    assert.deepEqual(vectors, buildVectors(naive));
  });

  it("every proof in them verifies", () => {
    for (const tree of vectors.trees) {
      for (const { index, size, proof } of tree.inclusion) {
        const ok = verifyInclusion(
          unhex(tree.leaf_hashes[index] as string),
          index,
          size,
          proof.map(unhex),
          unhex(tree.roots[size] as string),
        );
        assert.ok(ok, `${tree.name}: inclusion ${index} in ${size}`);
      }
      for (const { old_size, new_size, proof } of tree.consistency) {
        const ok = verifyConsistency(
          old_size,
          new_size,
          unhex(tree.roots[old_size] as string),
          unhex(tree.roots[new_size] as string),
          proof.map(unhex),
        );
        assert.ok(ok, `${tree.name}: consistency ${old_size} to ${new_size}`);
      }
    }
  });

  it("hold the published values of the RFC 6962 reference tree", () => {
    // Published with the reference leaves in Certificate Transparency's and
    // transparency-dev/merkle's tests; checked here against our computation.
    const tree = vectors.trees.find((t) => t.name === "rfc6962");
    assert.ok(tree);
    assert.deepEqual(tree.roots, [
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
      "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
      "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
      "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
      "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
      "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]);
    const inclusion = (index: number, size: number) =>
      tree.inclusion.find((v) => v.index === index && v.size === size)?.proof;
    const consistency = (oldSize: number, newSize: number) =>
      tree.consistency.find((v) => v.old_size === oldSize && v.new_size === newSize)?.proof;
    assert.deepEqual(inclusion(5, 8), [
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]);
    assert.deepEqual(inclusion(2, 3), ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]);
    assert.deepEqual(consistency(6, 8), [
      "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]);
    assert.deepEqual(consistency(2, 5), [
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]);
  });
});

describe("hashing", () => {
  it("separates leaves from nodes and the empty tree", () => {
    const entry = Buffer.from("x");
    assert.deepEqual(leafHash(entry), sha256(Buffer.of(0), entry));
    const [a, b] = leaves(2) as [Buffer, Buffer];
    assert.deepEqual(nodeHash(a, b), sha256(Buffer.of(1), a, b));
    assert.equal(hex(emptyRoot()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert.deepEqual(rootFromLeafHashes([]), emptyRoot());
    assert.throws(() => nodeHash(a, b.subarray(1)), MerkleError);
  });

  it("agrees with the naive definitions for every size up to 24", () => {
    const entries = Array.from({ length: 24 }, (_, i) => Buffer.from(`naive ${i}`));
    const hashes = entries.map(leafHash);
    for (let n = 0; n <= 24; n++) {
      const d = entries.slice(0, n);
      assert.deepEqual(rootFromLeafHashes(hashes, n), naiveRoot(d), `root ${n}`);
      for (let m = 0; m < n; m++) assert.deepEqual(inclusionProof(hashes, m, n), naivePath(m, d), `path ${m} ${n}`);
      for (let m = 0; m <= n; m++)
        assert.deepEqual(consistencyProof(hashes, m, n), naiveProof(m, d), `proof ${m} ${n}`);
    }
  });
});

describe("inclusion proofs", () => {
  const sizes = [...Array.from({ length: 64 }, (_, i) => i + 1), 100, 255, 256, 257, 1000];
  const all = leaves(2001);
  /** Every index up to size 64 and for 100 and 257; a sample for 255, 256 and 1000 (a proof costs O(size) hashes). */
  const indicesFor = (size: number): number[] => {
    const every = Array.from({ length: size }, (_, i) => i);
    if (size <= 64 || size === 100 || size === 257) return every;
    return every.filter((i) => i % 31 === 0 || i % 128 < 2 || i % 128 > 125 || i >= size - 3);
  };

  it("verify for every leaf, and fail for any altered hash, index, size or leaf", () => {
    for (const size of sizes) {
      const hashes = all.slice(0, size);
      const rootHash = rootFromLeafHashes(hashes);
      const otherRoots = [size - 1, size + 1, 2 * size].map((n) => [n, rootFromLeafHashes(all, n)] as const);
      for (const index of indicesFor(size)) {
        const leaf = hashes[index] as Buffer;
        const proof = inclusionProof(hashes, index, size);
        const where = `index ${index} size ${size}`;
        assert.ok(verifyInclusion(leaf, index, size, proof, rootHash), where);
        if (size > 64 && index % 8 !== 0 && index < size - 3) continue; // time: tamper with a sample only
        for (let i = 0; i < proof.length; i++) {
          assert.equal(verifyInclusion(leaf, index, size, alter(proof, i), rootHash), false, `${where} hash ${i}`);
        }
        assert.equal(verifyInclusion(leaf, index, size, proof, alter([rootHash], 0)[0] as Buffer), false, where);
        assert.equal(verifyInclusion(all[size] as Buffer, index, size, proof, rootHash), false, `${where} leaf`);
        for (const other of [index - 1, index + 1, size, size + index]) {
          if (other >= 0) assert.equal(verifyInclusion(leaf, other, size, proof, rootHash), false, `${where} ${other}`);
        }
        // A root commits to its size only through a checkpoint: check other sizes against their own roots.
        for (const [other, otherRoot] of otherRoots) {
          assert.equal(verifyInclusion(leaf, index, other, proof, otherRoot), false, `${where} size ${other}`);
        }
        if (proof.length > 0) {
          assert.equal(verifyInclusion(leaf, index, size, proof.slice(1), rootHash), false, `${where} short`);
          assert.equal(verifyInclusion(leaf, index, size, proof.slice(0, -1), rootHash), false, `${where} short`);
        }
        assert.equal(verifyInclusion(leaf, index, size, [...proof, rootHash], rootHash), false, `${where} long`);
        assert.equal(verifyInclusion(leaf, index, size, [leaf, ...proof], rootHash), false, `${where} long`);
      }
    }
  });

  it("work beyond 32-bit sizes", () => {
    // A tree of 2^33 + 5 equal leaves: its perfect subtrees' roots are known.
    const level: Buffer[] = [leafHash(Buffer.from("same"))];
    for (let i = 1; i <= 33; i++) level.push(nodeHash(level[i - 1] as Buffer, level[i - 1] as Buffer));
    const h = (i: number) => level[i] as Buffer;
    const big = 2 ** 33;
    const rightRoot = nodeHash(h(2), h(0)); // MTH of 5 equal leaves
    const rootHash = nodeHash(h(33), rightRoot);
    assert.ok(verifyInclusion(h(0), big + 4, big + 5, [h(2), h(33)], rootHash));
    assert.equal(verifyInclusion(h(0), big + 3, big + 5, [h(2), h(33)], rootHash), false);
    assert.equal(verifyInclusion(h(0), big + 4, big + 6, [h(2), h(33)], rootHash), false);
    assert.ok(verifyConsistency(big, big + 5, h(33), rootHash, [rightRoot]));
    const root6 = nodeHash(h(33), nodeHash(h(2), h(1))); // 2^33 + 6 equal leaves
    assert.equal(verifyConsistency(big, big + 6, h(33), root6, [rightRoot]), false);
    assert.ok(verifyConsistency(big, big + 6, h(33), root6, [nodeHash(h(2), h(1))]));
    const proof = [...level.slice(0, 33)];
    assert.ok(verifyInclusion(h(0), big - 1, big, proof, h(33)));
    assert.ok(verifyInclusion(h(0), 0, big, proof, h(33)));
  });

  it("never throw on bad input", () => {
    const hashes = leaves(5);
    const rootHash = rootFromLeafHashes(hashes);
    const leaf = hashes[2] as Buffer;
    const proof = inclusionProof(hashes, 2, 5);
    const bad: [unknown, unknown, unknown, unknown, unknown][] = [
      [leaf, 5, 5, proof, rootHash],
      [leaf, -1, 5, proof, rootHash],
      [leaf, 2.5, 5, proof, rootHash],
      [leaf, 2, Number.NaN, proof, rootHash],
      [leaf, 2, 2 ** 53, proof, rootHash],
      [leaf, 2, 0, [], rootHash],
      [leaf.subarray(1), 2, 5, proof, rootHash],
      [leaf, 2, 5, proof, rootHash.subarray(1)],
      [leaf, 2, 5, [...proof.slice(1), Buffer.alloc(31)], rootHash],
      [leaf, 2, 5, "proof", rootHash],
      [leaf, 2, 5, [null], rootHash],
      ["leaf", 2, 5, proof, rootHash],
      [leaf, 2, 5, proof, undefined],
    ];
    for (const args of bad) {
      assert.equal((verifyInclusion as (...a: unknown[]) => boolean)(...args), false);
    }
  });

  it("refuse to build from bad arguments", () => {
    const hashes = leaves(4);
    assert.throws(() => inclusionProof(hashes, 4, 4), MerkleError);
    assert.throws(() => inclusionProof(hashes, 0, 5), MerkleError);
    assert.throws(() => inclusionProof(hashes, -1, 4), MerkleError);
    assert.throws(() => inclusionProof(hashes, 0, 0), MerkleError);
    assert.throws(() => inclusionProof([Buffer.alloc(31)], 0, 1), MerkleError);
    assert.throws(() => rootFromLeafHashes(hashes, 5), MerkleError);
    assert.throws(() => rootFromLeafHashes(hashes, 1.5), MerkleError);
    assert.throws(() => rootFromLeafHashes([Buffer.alloc(33)]), MerkleError);
    // Only the leaves inside the tree are read.
    assert.deepEqual(rootFromLeafHashes([...hashes, Buffer.alloc(1)], 4), rootFromLeafHashes(hashes));
  });
});

describe("consistency proofs", () => {
  const all = leaves(1000);
  const roots = Array.from({ length: 66 }, (_, n) => rootFromLeafHashes(all, n));

  it("verify for every 0 <= m <= n <= 64, and fail when altered or swapped", () => {
    for (let n = 0; n <= 64; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = consistencyProof(all, m, n);
        const oldRoot = roots[m] as Buffer;
        const newRoot = roots[n] as Buffer;
        const where = `${m} to ${n}`;
        assert.ok(verifyConsistency(m, n, oldRoot, newRoot, proof), where);
        for (let i = 0; i < proof.length; i++) {
          assert.equal(verifyConsistency(m, n, oldRoot, newRoot, alter(proof, i)), false, `${where} hash ${i}`);
        }
        assert.equal(verifyConsistency(m, n, alter([oldRoot], 0)[0] as Buffer, newRoot, proof), false, where);
        // Every tree extends the empty tree: from size 0 only the old root is checked.
        if (m > 0)
          assert.equal(verifyConsistency(m, n, oldRoot, alter([newRoot], 0)[0] as Buffer, proof), false, where);
        assert.equal(verifyConsistency(m, n, oldRoot, newRoot, [...proof, newRoot]), false, `${where} long`);
        assert.equal(verifyConsistency(m, n, oldRoot, newRoot, [oldRoot, ...proof]), false, `${where} long`);
        if (m === n) continue;
        assert.equal(verifyConsistency(m, n, newRoot, oldRoot, proof), false, `${where} swapped`);
        assert.equal(verifyConsistency(n, m, newRoot, oldRoot, proof), false, `${where} reversed`);
        if (m > 0) {
          assert.equal(verifyConsistency(m, n + 1, oldRoot, roots[n + 1] as Buffer, proof), false, `${where} new+1`);
          assert.equal(verifyConsistency(m, n - 1, oldRoot, roots[n - 1] as Buffer, proof), false, `${where} new-1`);
          assert.equal(verifyConsistency(m, n, oldRoot, newRoot, proof.slice(1)), false, `${where} short`);
          assert.equal(verifyConsistency(m, n, oldRoot, newRoot, proof.slice(0, -1)), false, `${where} short`);
          assert.equal(verifyConsistency(m - 1, n, roots[m - 1] as Buffer, newRoot, proof), false, `${where} old-1`);
          assert.equal(verifyConsistency(m + 1, n, roots[m + 1] as Buffer, newRoot, proof), false, `${where} old+1`);
        }
      }
    }
  });

  it("verify between larger sizes", () => {
    const pairs = [
      [1, 1000],
      [255, 256],
      [256, 257],
      [255, 257],
      [500, 1000],
      [512, 1000],
      [999, 1000],
      [100, 255],
    ] as const;
    for (const [m, n] of pairs) {
      const proof = consistencyProof(all, m, n);
      const oldRoot = rootFromLeafHashes(all, m);
      const newRoot = rootFromLeafHashes(all, n);
      assert.ok(verifyConsistency(m, n, oldRoot, newRoot, proof), `${m} to ${n}`);
      for (let i = 0; i < proof.length; i++) {
        assert.equal(verifyConsistency(m, n, oldRoot, newRoot, alter(proof, i)), false, `${m} to ${n} hash ${i}`);
      }
      assert.equal(verifyConsistency(m, n, newRoot, oldRoot, proof), false, `${m} to ${n} swapped`);
    }
  });

  it("treat equal and empty old trees as specified", () => {
    const [r0, r1, r2] = roots as [Buffer, Buffer, Buffer];
    assert.deepEqual(consistencyProof(all, 3, 3), []);
    assert.deepEqual(consistencyProof(all, 0, 3), []);
    assert.ok(verifyConsistency(0, 0, r0, r0, []));
    assert.ok(verifyConsistency(0, 2, r0, r2, []));
    assert.ok(verifyConsistency(2, 2, r2, r2, []));
    assert.equal(verifyConsistency(2, 2, r2, r1, []), false);
    assert.equal(verifyConsistency(2, 2, r2, r2, [r2]), false);
    assert.equal(verifyConsistency(0, 2, r1, r2, []), false, "the empty tree has a known root");
    assert.equal(verifyConsistency(0, 2, r0, r2, [r2]), false);
    assert.equal(verifyConsistency(0, 0, r0, r1, []), false);
    assert.equal(verifyConsistency(1, 2, r1, r2, []), false, "an empty proof between different sizes");
    assert.equal(verifyConsistency(2, 1, r2, r1, consistencyProof(all, 1, 2)), false);
  });

  it("never throw on bad input", () => {
    const [, r1, r2] = roots as [Buffer, Buffer, Buffer];
    const proof = consistencyProof(all, 1, 2);
    const bad: [unknown, unknown, unknown, unknown, unknown][] = [
      [-1, 2, r1, r2, proof],
      [1, 2 ** 53, r1, r2, proof],
      [1, 2, r1.subarray(1), r2, proof],
      [1, 2, r1, "root", proof],
      [1, 2, r1, r2, [Buffer.alloc(31)]],
      [1, 2, r1, r2, "proof"],
      [1, 2, r1, r2, [undefined]],
    ];
    for (const args of bad) {
      assert.equal((verifyConsistency as (...a: unknown[]) => boolean)(...args), false);
    }
    assert.throws(() => consistencyProof(all, 3, 2), MerkleError);
    assert.throws(() => consistencyProof(all, 1, 1001), MerkleError);
  });
});

describe("MerkleFrontier", () => {
  const all = leaves(301);

  it("has the batch root at every size from 0 to 300", () => {
    const frontier = new MerkleFrontier();
    for (let n = 0; n <= 300; n++) {
      assert.equal(frontier.size, n);
      assert.deepEqual(frontier.root(), rootFromLeafHashes(all, n), `size ${n}`);
      assert.equal(frontier.append(all[n] as Buffer), n);
    }
  });

  it("persists and restores its state at every size", () => {
    const frontier = new MerkleFrontier();
    for (let n = 0; n <= 300; n++) {
      const state = JSON.parse(JSON.stringify(frontier));
      assert.equal(state.size, n);
      const restored = MerkleFrontier.fromJSON(state);
      assert.deepEqual(restored.toJSON(), frontier.toJSON());
      assert.deepEqual(restored.root(), frontier.root());
      restored.append(all[n] as Buffer);
      frontier.append(all[n] as Buffer);
      assert.deepEqual(restored.root(), frontier.root());
    }
    assert.deepEqual(
      MerkleFrontier.fromLeafHashes(all.slice(0, 77)).toJSON(),
      MerkleFrontier.fromJSON(MerkleFrontier.fromLeafHashes(all.slice(0, 77)).toJSON()).toJSON(),
    );
    assert.equal(MerkleFrontier.fromLeafHashes(all.slice(0, 77)).toJSON().hashes.length, 4); // 77 = 0b1001101
  });

  it("refuses malformed state and leaves", () => {
    const good = MerkleFrontier.fromLeafHashes(all.slice(0, 5)).toJSON();
    const first = good.hashes[0] as string;
    for (const state of [
      null,
      "state",
      { ...good, size: 4 },
      { ...good, size: -1 },
      { ...good, size: 5.5 },
      { ...good, hashes: good.hashes.slice(1) },
      { ...good, hashes: [first.toUpperCase(), good.hashes[1]] },
      { ...good, hashes: [first.slice(2), good.hashes[1]] },
      { ...good, hashes: "hashes" },
      { size: 5 },
    ]) {
      assert.throws(() => MerkleFrontier.fromJSON(state), MerkleError, JSON.stringify(state));
    }
    assert.throws(() => new MerkleFrontier().append(Buffer.alloc(31)), MerkleError);
  });
});
