import { createHash, hash } from "node:crypto";
import { consistencyPlan, inclusionPlan, largestPowerOfTwoBelow } from "./proof-plan.js";

/**
 * The Merkle tree of the receipt log: RFC 6962 / RFC 9162 §2.1 hashing over
 * SHA-256 (docs/TRANSPARENCY_LOG.md).
 *
 *   leaf hash  = SHA-256(0x00 || entry)
 *   node hash  = SHA-256(0x01 || left || right)
 *   MTH({})    = SHA-256("")
 *   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n
 *
 * Functions that build trees or proofs take leaf hashes (not entries) and throw
 * MerkleError on invalid arguments. Verification functions never throw: any bad
 * input or proof makes them return false.
 */

/** The byte length of every hash in the tree. */
export const hashSize = 32;

export class MerkleError extends Error {
  override readonly name = "MerkleError";
}

const leafPrefix = Uint8Array.of(0x00);
/** 0x01 || left || right, filled in place: hashing nodes is the hot path of proofs. */
const nodeInput = Buffer.alloc(1 + 2 * hashSize, 0x01);

/** SHA-256(0x00 || entry): the hash of one log entry. */
export function leafHash(entry: Uint8Array): Buffer {
  if (!(entry instanceof Uint8Array)) throw new MerkleError("a leaf entry must be bytes");
  return createHash("sha256").update(leafPrefix).update(entry).digest();
}

/** SHA-256(0x01 || left || right): the hash of an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (!isHash(left) || !isHash(right)) throw new MerkleError(`node children must be ${hashSize}-byte hashes`);
  return hashChildren(left, right);
}

/** MTH({}) = SHA-256 of the empty string: the root of the empty tree. */
export function emptyRoot(): Buffer {
  return createHash("sha256").digest();
}

/**
 * MTH(D[size]): the root of the tree over the first `size` leaf hashes
 * (RFC 9162 §2.1.1). O(size) hashing.
 */
export function rootFromLeafHashes(leafHashes: readonly Uint8Array[], size: number = leafHashes.length): Buffer {
  checkLeafHashes(leafHashes, size, "size");
  return subtreeRoot(leafHashes, 0, size);
}

/**
 * PATH(index, D[size]) (RFC 9162 §2.1.3.1): the sibling hashes from the leaf
 * up to the root, the leaf's sibling first. Requires 0 <= index < size.
 */
export function inclusionProof(leafHashes: readonly Uint8Array[], index: number, size: number): Buffer[] {
  checkLeafHashes(leafHashes, size, "size");
  checkSize(index, "index");
  if (index >= size) throw new MerkleError(`index ${index} is not below the tree size ${size}`);
  return inclusionPlan(index, size).map((range) => subtreeRoot(leafHashes, range.start, range.end));
}

/**
 * Verifies that `leafHash` is leaf `index` of the tree of `size` leaves whose
 * root is `root`, by the algorithm of RFC 9162 §2.1.3.2.
 */
export function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isSize(index) || !isSize(size) || index >= size) return false;
  if (!isHash(leafHash) || !isHash(root) || !isHashList(proof)) return false;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leafHash);
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/**
 * PROOF(oldSize, D[newSize]) = SUBPROOF(oldSize, D[newSize], true)
 * (RFC 9162 §2.1.4.1), the smallest subtrees first. Empty when
 * oldSize == newSize, and when oldSize == 0 (every tree extends the empty one).
 */
export function consistencyProof(leafHashes: readonly Uint8Array[], oldSize: number, newSize: number): Buffer[] {
  checkLeafHashes(leafHashes, newSize, "newSize");
  checkSize(oldSize, "oldSize");
  if (oldSize > newSize) throw new MerkleError(`oldSize ${oldSize} is above newSize ${newSize}`);
  return consistencyPlan(oldSize, newSize).map((range) => subtreeRoot(leafHashes, range.start, range.end));
}

/**
 * Verifies that the tree of `newSize` leaves with root `newRoot` extends the
 * tree of `oldSize` leaves with root `oldRoot`, by the algorithm of RFC 9162
 * §2.1.4.2 for 0 < oldSize < newSize. Edge cases, which the RFC leaves out:
 * oldSize == newSize needs an empty proof and equal roots; oldSize == 0 needs
 * an empty proof and oldRoot == MTH({}); oldSize > newSize always fails.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isSize(oldSize) || !isSize(newSize) || oldSize > newSize) return false;
  if (!isHash(oldRoot) || !isHash(newRoot) || !isHashList(proof)) return false;
  if (oldSize === 0) {
    if (proof.length !== 0 || !emptyRoot().equals(oldRoot)) return false;
    return newSize !== 0 || emptyRoot().equals(newRoot);
  }
  if (oldSize === newSize) return proof.length === 0 && Buffer.from(oldRoot).equals(newRoot);
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : proof;
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  const first = path[0] as Uint8Array;
  let fr: Buffer = Buffer.from(first);
  let sr: Buffer = Buffer.from(first);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}

/** The persisted form of a MerkleFrontier: its size and its subtree roots in lowercase hex. */
export interface MerkleFrontierState {
  readonly size: number;
  /** The roots of the perfect subtrees, largest (leftmost) first: one per set bit of `size`. */
  readonly hashes: readonly string[];
}

/**
 * The right edge of a growing tree: the roots of its perfect subtrees, one per
 * set bit of the size, largest (leftmost) first. Appending a leaf and reading
 * the root both cost O(log size) hashes, and the state is O(log size) hashes,
 * so a log can grow without rereading its leaves.
 */
export class MerkleFrontier {
  #size = 0;
  readonly #hashes: Buffer[] = [];

  /** A frontier over the given leaf hashes (none: the empty tree). */
  static fromLeafHashes(leafHashes: readonly Uint8Array[]): MerkleFrontier {
    const frontier = new MerkleFrontier();
    for (const hash of leafHashes) frontier.append(hash);
    return frontier;
  }

  /** Restores a frontier from `toJSON()` output; throws MerkleError if the state is malformed. */
  static fromJSON(state: unknown): MerkleFrontier {
    if (typeof state !== "object" || state === null) throw new MerkleError("frontier state must be an object");
    const { size, hashes } = state as { size?: unknown; hashes?: unknown };
    if (!isSize(size)) throw new MerkleError("frontier size must be a non-negative safe integer");
    if (!Array.isArray(hashes)) throw new MerkleError("frontier hashes must be an array");
    if (hashes.length !== bitCount(size)) {
      throw new MerkleError(`a frontier of size ${size} has ${bitCount(size)} hashes, not ${hashes.length}`);
    }
    const frontier = new MerkleFrontier();
    for (const hash of hashes) {
      if (typeof hash !== "string" || !/^[0-9a-f]{64}$/.test(hash)) {
        throw new MerkleError("frontier hashes must be 64 lowercase hex digits");
      }
      frontier.#hashes.push(Buffer.from(hash, "hex"));
    }
    frontier.#size = size;
    return frontier;
  }

  /** The number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /** Appends one leaf hash; returns its index. */
  append(leafHash: Uint8Array): number {
    if (!isHash(leafHash)) throw new MerkleError(`a leaf hash must be ${hashSize} bytes`);
    const index = this.#size;
    if (index >= Number.MAX_SAFE_INTEGER) throw new MerkleError("the tree is full");
    // Each trailing one bit of the old size is a perfect subtree as large as the
    // one being carried: merge them, as in binary addition.
    let carry: Buffer = Buffer.from(leafHash);
    for (let n = index; n % 2 === 1; n = (n - 1) / 2) {
      carry = hashChildren(this.#hashes.pop() as Buffer, carry);
    }
    this.#hashes.push(carry);
    this.#size = index + 1;
    return index;
  }

  /** MTH of the leaves appended so far. */
  root(): Buffer {
    let root = this.#hashes.at(-1);
    if (root === undefined) return emptyRoot();
    for (let i = this.#hashes.length - 2; i >= 0; i--) root = hashChildren(this.#hashes[i] as Buffer, root);
    return root;
  }

  toJSON(): MerkleFrontierState {
    return { size: this.#size, hashes: this.#hashes.map((hash) => hash.toString("hex")) };
  }
}

/** MTH(D[start:end]), level by level: pair neighbours, carry an odd last node up unchanged. */
function subtreeRoot(leafHashes: readonly Uint8Array[], start: number, end: number): Buffer {
  if (end === start) return emptyRoot();
  let level: Uint8Array[] = leafHashes.slice(start, end);
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2)
      next.push(hashChildren(level[i] as Uint8Array, level[i + 1] as Uint8Array));
    if (level.length % 2 === 1) next.push(level[level.length - 1] as Uint8Array);
    level = next;
  }
  return Buffer.from(level[0] as Uint8Array);
}

function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  nodeInput.set(left, 1);
  nodeInput.set(right, 1 + hashSize);
  return hash("sha256", nodeInput, "buffer");
}

function isPowerOfTwo(n: number): boolean {
  return n >= 1 && largestPowerOfTwoBelow(n + 1) === n;
}

function bitCount(n: number): number {
  let count = 0;
  for (let rest = n; rest > 0; rest = Math.floor(rest / 2)) count += rest % 2;
  return count;
}

function isSize(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === hashSize;
}

function isHashList(value: unknown): value is readonly Uint8Array[] {
  return Array.isArray(value) && value.every(isHash);
}

function checkSize(n: number, what: string): void {
  if (!isSize(n)) throw new MerkleError(`${what} must be a non-negative safe integer`);
}

function checkLeafHashes(leafHashes: readonly Uint8Array[], size: number, what: string): void {
  if (!Array.isArray(leafHashes)) throw new MerkleError("leaf hashes must be an array");
  checkSize(size, what);
  if (size > leafHashes.length) throw new MerkleError(`${what} ${size} is above the ${leafHashes.length} leaf hashes`);
  for (let i = 0; i < size; i++) {
    if (!isHash(leafHashes[i])) throw new MerkleError(`leaf hash ${i} is not ${hashSize} bytes`);
  }
}
