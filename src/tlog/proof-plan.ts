/**
 * Which subtree roots an RFC 9162 proof is made of, as leaf ranges, and which
 * complete subtrees each range root folds: index arithmetic only, no hashes.
 * The same plans serve proofs over an array of leaf hashes and proofs read
 * from stored tiles, so the two cannot disagree.
 */

/** The leaves [start, end) of a subtree whose root (MTH) is one proof element. */
export interface LeafRange {
  readonly start: number;
  readonly end: number;
}

/** A complete, aligned subtree: 2^height leaves starting at index * 2^height. */
export interface TreeNode {
  readonly height: number;
  readonly index: number;
}

/** PATH(index, D[size]) (RFC 9162 §2.1.3.1) as ranges, the leaf's sibling first. Requires 0 <= index < size. */
export function inclusionPlan(index: number, size: number): LeafRange[] {
  const ranges: LeafRange[] = [];
  let start = 0;
  let end = size;
  while (end - start > 1) {
    const k = largestPowerOfTwoBelow(end - start);
    if (index < start + k) {
      ranges.push({ start: start + k, end });
      end = start + k;
    } else {
      ranges.push({ start, end: start + k });
      start += k;
    }
  }
  return ranges.reverse();
}

/**
 * PROOF(oldSize, D[newSize]) (RFC 9162 §2.1.4.1) as ranges, the smallest
 * subtrees first. Empty when oldSize is 0 or equals newSize. Requires oldSize <= newSize.
 */
export function consistencyPlan(oldSize: number, newSize: number): LeafRange[] {
  if (oldSize === 0) return [];
  const ranges: LeafRange[] = [];
  let start = 0;
  let end = newSize;
  let m = oldSize;
  let complete = true; // the b flag of SUBPROOF: the old tree's root is this subtree
  for (;;) {
    if (m === end - start) {
      if (!complete) ranges.push({ start, end });
      break;
    }
    const k = largestPowerOfTwoBelow(end - start);
    if (m <= k) {
      ranges.push({ start: start + k, end });
      end = start + k;
    } else {
      ranges.push({ start, end: start + k });
      start += k;
      m -= k;
      complete = false;
    }
  }
  return ranges.reverse();
}

/**
 * The complete subtrees whose right fold is MTH(D[start:end]), left to right:
 * node(n1, node(n2, ... nk)). Holds for every range a proof plan yields (and
 * for [0, size)): each starts at a multiple of a power of two at least as
 * large as its length, so RFC 9162's split at the largest power of two below
 * the length always leaves a complete, aligned left part.
 */
export function rangeNodes(range: LeafRange): TreeNode[] {
  const nodes: TreeNode[] = [];
  let start = range.start;
  while (start < range.end) {
    let height = 0;
    while (start % 2 ** (height + 1) === 0 && start + 2 ** (height + 1) <= range.end) height++;
    nodes.push({ height, index: start / 2 ** height });
    start += 2 ** height;
  }
  return nodes;
}

/** The largest power of two strictly below n, for n >= 2. */
export function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
