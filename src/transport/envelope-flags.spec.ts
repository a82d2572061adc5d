import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { carriesEnvelopes, envelopeFlagsRefusal, withCheckedEnvelopeFlags } from "./envelope-flags.js";

function frame(flags: number, message: Uint8Array): Uint8Array {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** `body` in chunks of `size` bytes, read through the check. */
async function readChunked(body: Uint8Array, size: number): Promise<Uint8Array[]> {
  async function* chunks() {
    for (let offset = 0; offset < body.length; offset += size) yield body.subarray(offset, offset + size);
  }
  const out: Uint8Array[] = [];
  for await (const chunk of withCheckedEnvelopeFlags(chunks())) out.push(chunk);
  return out;
}

describe("gRPC request frame flags", () => {
  it("are 0 or 1, nothing else", () => {
    assert.equal(envelopeFlagsRefusal(0), undefined);
    assert.equal(envelopeFlagsRefusal(1), undefined);
    for (const flags of [2, 3, 0x7f, 0x80, 0x81, 0xff])
      assert.equal(envelopeFlagsRefusal(flags)?.reason, "body_malformed");
  });

  it("are checked on gRPC and binary or JSON gRPC-web bodies, not on Connect or gRPC-web-text", () => {
    for (const type of [
      "application/grpc",
      "application/grpc+json",
      "application/grpc-web+proto",
      "application/grpc-web",
    ]) {
      assert.equal(carriesEnvelopes(type), true, type);
    }
    for (const type of [null, "application/proto", "application/connect+proto", "application/grpc-web-text"]) {
      assert.equal(carriesEnvelopes(type), false, String(type));
    }
  });

  it("pass good frames through unchanged, however the body is split", async () => {
    const body = Buffer.concat([
      frame(0, Buffer.from("abcdefgh")),
      frame(1, Buffer.alloc(300, 2)),
      frame(0, new Uint8Array()),
    ]);
    for (const size of [1, 2, 4, 5, 6, 7, 13, 64, body.length]) {
      assert.deepEqual(Buffer.concat(await readChunked(body, size)), body, `chunks of ${size}`);
    }
  });

  it("refuse a bad flag in any frame, at any split, before the chunk holding it is passed on", async () => {
    // The second frame's flags byte sits at offset 13; its message length bytes hold 0x80 and 0x02 to
    // show that only the flags byte counts.
    const first = frame(0, Buffer.from("abcdefgh"));
    for (const flags of [2, 0x80]) {
      const body = Buffer.concat([first, frame(flags, Buffer.alloc(0x8002, 1))]);
      for (const size of [1, 5, 6, 13, 14, body.length]) {
        const passed: Uint8Array[] = [];
        async function* chunks() {
          for (let offset = 0; offset < body.length; offset += size) yield body.subarray(offset, offset + size);
        }
        await assert.rejects(
          (async () => {
            for await (const chunk of withCheckedEnvelopeFlags(chunks())) passed.push(chunk);
          })(),
          (error: unknown) =>
            error instanceof ConnectError && error.metadata.get("openexec-reason") === "body_malformed",
        );
        const through = Buffer.concat(passed).length;
        assert.ok(through <= first.length, `only the first frame passes (chunks of ${size}: ${through} bytes)`);
      }
    }
  });
});
