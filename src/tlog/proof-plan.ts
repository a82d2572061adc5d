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

/** Why a plan was refused: sizes no proof exists for, or a planner that stopped making progress (a bug). */
export type ProofPlanErrorCode = "size_invalid" | "no_progress";

export class ProofPlanError extends Error {
  override readonly name = "ProofPlanError";
  constructor(
    readonly code: ProofPlanErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isProofPlanError(value: unknown): value is ProofPlanError {
  return value instanceof ProofPlanError;
}

/** PATH(index, D[size]) (RFC 9162 §2.1.3.1) as ranges, the leaf's sibling first. Requires 0 <= index < size. */
export function inclusionPlan(index: number, size: number): LeafRange[] {
  checkSizes(index, size - 1, "index", "size - 1");
  const ranges: LeafRange[] = [];
  let start = 0;
  let end = size;
  const bound = stepBound(size);
  while (end - start > 1) {
    if (ranges.length >= bound) throw noProgress("inclusion", index, size, bound);
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
 * One step of SUBPROOF(m, D[start:end], complete) (RFC 9162 §2.1.4.1): the
 * range it adds to the proof and the subtree it goes on with, or `done`.
 */
export interface ConsistencyState {
  readonly start: number;
  readonly end: number;
  /** The old tree's leaves within [start, end). */
  readonly m: number;
  /** The b flag of SUBPROOF: the old tree's root is this subtree. */
  readonly complete: boolean;
}
export type ConsistencyStep = (state: ConsistencyState) => { range?: LeafRange; next?: ConsistencyState };

/** RFC 9162's step: the whole old tree at last (its root only if it is not the old root), else split at k. */
export const consistencyStep: ConsistencyStep = ({ start, end, m, complete }) => {
  if (m === end - start) return complete ? {} : { range: { start, end } };
  const k = largestPowerOfTwoBelow(end - start);
  if (m <= k) return { range: { start: start + k, end }, next: { start, end: start + k, m, complete } };
  return { range: { start, end: start + k }, next: { start: start + k, end, m: m - k, complete: false } };
};

/**
 * PROOF(oldSize, D[newSize]) (RFC 9162 §2.1.4.1) as ranges, the smallest
 * subtrees first. Empty when oldSize is 0 or equals newSize. Requires
 * 0 <= oldSize <= newSize, safe integers (else ProofPlanError size_invalid).
 */
export function consistencyPlan(oldSize: number, newSize: number): LeafRange[] {
  return planConsistency(oldSize, newSize, consistencyStep);
}

/**
 * consistencyPlan with its step given: each step at least halves the
 * subtree, so a plan takes at most ceil(log2(newSize)) + 1 steps; a step that
 * does not (a bug) ends in ProofPlanError no_progress, never in an endless
 * loop. Exported for the tests that drive that guard.
 */
export function planConsistency(oldSize: number, newSize: number, step: ConsistencyStep): LeafRange[] {
  checkSizes(oldSize, newSize, "oldSize", "newSize");
  if (oldSize === 0) return [];
  const ranges: LeafRange[] = [];
  const bound = stepBound(newSize);
  let state: ConsistencyState | undefined = { start: 0, end: newSize, m: oldSize, complete: true };
  for (let steps = 0; state !== undefined; steps++) {
    if (steps >= bound) throw noProgress("consistency", oldSize, newSize, bound);
    const { range, next }: ReturnType<ConsistencyStep> = step(state);
    if (range !== undefined) ranges.push(range);
    state = next;
  }
  return ranges.reverse();
}

/** The most steps a plan over a tree of `size` leaves takes: its height ceil(log2(size)), plus the final one. */
function stepBound(size: number): number {
  let height = 0;
  while (2 ** height < size) height++;
  return height + 1;
}

function checkSizes(low: number, high: number, lowName: string, highName: string): void {
  if (!(Number.isSafeInteger(low) && Number.isSafeInteger(high) && 0 <= low && low <= high)) {
    throw new ProofPlanError("size_invalid", `proof plans need safe integers 0 <= ${lowName} <= ${highName}`);
  }
}

function noProgress(kind: string, a: number, b: number, bound: number): ProofPlanError {
  return new ProofPlanError("no_progress", `the ${kind} plan for (${a}, ${b}) took more than ${bound} steps`);
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
