import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { TurnBatcher } from "./protocol.js";

describe("writer-thread messages", () => {
  it("what is pushed in one turn of the event loop is posted once, in order, at its end", async () => {
    const posted: number[][] = [];
    const batcher = new TurnBatcher<number>((items) => posted.push(items));
    batcher.push(1);
    batcher.push(2);
    await Promise.resolve();
    batcher.push(3);
    assert.deepEqual(posted, []);
    await nextTurn();
    assert.deepEqual(posted, [[1, 2, 3]]);
    batcher.push(4);
    await nextTurn();
    assert.deepEqual(posted, [[1, 2, 3], [4]]);
  });

  it("flush posts at once, and posts nothing when empty", () => {
    const posted: string[][] = [];
    const batcher = new TurnBatcher<string>((items) => posted.push(items));
    batcher.flush();
    batcher.push("a");
    batcher.flush();
    batcher.flush();
    assert.deepEqual(posted, [["a"]]);
  });
});
