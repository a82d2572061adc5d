import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type ConsistencyStep,
  consistencyPlan,
  consistencyStep,
  inclusionPlan,
  isProofPlanError,
  type LeafRange,
  largestPowerOfTwoBelow,
  planConsistency,
} from "./proof-plan.js";

/** RFC 9162 §2.1.3.1 PATH, recursively, as the RFC writes it: the reference the planner must match. */
function referencePath(m: number, start: number, end: number): LeafRange[] {
  const n = end - start;
  if (n <= 1) return [];
  const k = largestPowerOfTwoBelow(n);
  return m < k
    ? [...referencePath(m, start, start + k), { start: start + k, end }]
    : [...referencePath(m - k, start + k, end), { start, end: start + k }];
}

/** RFC 9162 §2.1.4.1 SUBPROOF, recursively. */
function referenceSubproof(m: number, start: number, end: number, b: boolean): LeafRange[] {
  const n = end - start;
  if (m === n) return b ? [] : [{ start, end }];
  const k = largestPowerOfTwoBelow(n);
  return m <= k
    ? [...referenceSubproof(m, start, start + k, b), { start: start + k, end }]
    : [...referenceSubproof(m - k, start + k, end, false), { start, end: start + k }];
}

/** The mutation `m <= k` → `m < k`: at m == k it never shrinks the subtree and would loop for ever. */
const mutatedStep: ConsistencyStep = ({ start, end, m, complete }) => {
  if (m === end - start) return complete ? {} : { range: { start, end } };
  const k = largestPowerOfTwoBelow(end - start);
  if (m < k) return { range: { start: start + k, end }, next: { start, end: start + k, m, complete } };
  return { range: { start, end: start + k }, next: { start: start + k, end, m: m - k, complete: false } };
};

const isCode = (code: string) => (error: unknown) => isProofPlanError(error) && error.code === code;

describe("proof plans (RFC 9162)", () => {
  it("match the RFC's recursive PATH and PROOF for every size up to 200", () => {
    for (let size = 1; size <= 200; size++) {
      for (let index = 0; index < size; index++) {
        assert.deepEqual(inclusionPlan(index, size), referencePath(index, 0, size), `PATH(${index}, ${size})`);
      }
      assert.deepEqual(consistencyPlan(0, size), []);
      for (let old = 1; old <= size; old++) {
        assert.deepEqual(consistencyPlan(old, size), referenceSubproof(old, 0, size, true), `PROOF(${old}, ${size})`);
      }
    }
  });

  it("match them near powers of two and for large trees", () => {
    for (const size of [2 ** 20 - 1, 2 ** 20, 2 ** 20 + 1, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER]) {
      for (const old of [1, 2, 2 ** 19, size - 1, size]) {
        assert.deepEqual(consistencyPlan(old, size), referenceSubproof(old, 0, size, true), `PROOF(${old}, ${size})`);
      }
      for (const index of [0, 1, size - 2, size - 1]) {
        assert.deepEqual(inclusionPlan(index, size), referencePath(index, 0, size), `PATH(${index}, ${size})`);
      }
    }
  });

  it("a step that stops shrinking the subtree (m <= k mutated to m < k) throws no_progress, not loops", () => {
    // Every proof with 0 < old < new reaches its last subtree by a left split with m == k, where the
    // mutation goes right with m = 0 instead, a subtree it never finishes: without the guard, each loops.
    for (let size = 2; size <= 64; size++) {
      for (let old = 1; old < size; old++) {
        assert.throws(() => planConsistency(old, size, mutatedStep), isCode("no_progress"), `(${old}, ${size})`);
      }
      assert.deepEqual(planConsistency(size, size, mutatedStep), []);
    }
    assert.throws(() => planConsistency(2 ** 30, 2 ** 30 + 7, mutatedStep), isCode("no_progress"));
    // The bound is the tree's height plus one: RFC 9162's own step never reaches it.
    let steps = 0;
    const counting: ConsistencyStep = (state) => {
      steps++;
      return consistencyStep(state);
    };
    planConsistency(1, 2 ** 20, counting);
    assert.equal(steps, 21);
  });

  it("refuses sizes no proof exists for (size_invalid) instead of planning garbage or looping", () => {
    // 1.5 of 3 looped for ever before the guard; 5 of 3 yielded ranges beyond the tree.
    for (const [old, size] of [
      [1.5, 3],
      [5, 3],
      [-1, 3],
      [1, Number.NaN],
      [1, Number.POSITIVE_INFINITY],
      [1, 2 ** 53],
    ]) {
      assert.throws(() => consistencyPlan(old as number, size as number), isCode("size_invalid"), `(${old}, ${size})`);
    }
    for (const [index, size] of [
      [3, 3],
      [-1, 3],
      [0.5, 3],
      [0, 2.5],
      [0, 0],
    ]) {
      assert.throws(
        () => inclusionPlan(index as number, size as number),
        isCode("size_invalid"),
        `(${index}, ${size})`,
      );
    }
  });
});
