import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TimeOrderedIds, timeOrderedIdPattern } from "./time-ordered-id.js";

describe("time-ordered ids (UUIDv7)", () => {
  it("carry version 7, the RFC 9562 variant and the millisecond in their first 48 bits", () => {
    const ms = Date.UTC(2026, 10, 29, 12, 0, 0, 123);
    const id = new TimeOrderedIds(() => ms).next();
    assert.match(id, timeOrderedIdPattern);
    assert.equal(Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16), ms);
  });

  it("increase strictly, also within one millisecond and when the clock steps back", () => {
    let ms = 1_000_000;
    const ids = new TimeOrderedIds(() => ms);
    const issued: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      if (i === 5000) ms -= 500; // the clock steps back
      if (i === 7000) ms += 10_000;
      issued.push(ids.next());
    }
    for (let i = 1; i < issued.length; i++) assert.ok((issued[i] as string) > (issued[i - 1] as string), `id ${i}`);
    assert.ok(issued.every((id) => timeOrderedIdPattern.test(id)));
    assert.equal(new Set(issued).size, issued.length);
  });

  it("two generators in the same millisecond do not collide", () => {
    const a = new TimeOrderedIds(() => 42);
    const b = new TimeOrderedIds(() => 42);
    const all = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      all.add(a.next());
      all.add(b.next());
    }
    assert.equal(all.size, 2000);
  });
});
