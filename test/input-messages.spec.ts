import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../gen/openexec/v1/error_pb.js";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { reasonOf } from "../src/api/connect-errors.js";
import { type LoggedServer, startLoggedServer } from "./support/captured-log.js";
import { type AnyJson, clientFor, protocols } from "./support/clients.js";

const marker = "Zq7MARKERx";

/** Payloads each built-in action refuses, carrying the marker in a key, a value, or both. */
const refused: readonly { action: string; payload: AnyJson }[] = [
  { action: "add", payload: { a: 1, b: 2, [`${marker}-key`]: `${marker}-value` } },
  { action: "add", payload: { a: `${marker}-value`, b: 2 } },
  { action: "counter.add", payload: { key: "k", delta: 1, [marker]: 1 } },
  { action: "counter.add", payload: { key: marker.repeat(20), delta: 1 } },
  { action: "counter.add", payload: { key: "k", delta: `${marker}` } },
];

describe("action_input_invalid never echoes the payload", () => {
  let harness: LoggedServer;
  before(async () => {
    harness = await startLoggedServer();
  });
  after(() => harness.close());

  it("REST: neither the body nor a header nor the log carries a payload key or value", async () => {
    for (const [i, { action, payload }] of refused.entries()) {
      const response = await fetch(`${harness.server.url}/execute`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ action, payload, nonce: `rest-${i}` }),
      });
      const text = await response.text();
      assert.equal(response.status, 400);
      assert.equal((JSON.parse(text) as AnyJson).reason, "action_input_invalid");
      assert.ok(!text.includes(marker), `body echoes the payload: ${text}`);
      for (const [name, value] of response.headers)
        assert.ok(!value.includes(marker), `header ${name} echoes the payload`);
    }
    assert.ok(!harness.text().includes(marker), "the log echoes the payload");
  });

  for (const protocol of protocols) {
    it(`${protocol}: neither the message, the metadata nor the details carry a payload key or value`, async () => {
      const client = clientFor(ExecutionService, protocol, harness.server.url);
      for (const [i, { action, payload }] of refused.entries()) {
        try {
          await client.execute({ action, payload, nonce: `${protocol}-${i}` });
          assert.fail("expected a refusal");
        } catch (caught) {
          assert.ok(caught instanceof ConnectError, String(caught));
          assert.equal(reasonOf(caught), "action_input_invalid");
          assert.ok(!caught.rawMessage.includes(marker), `message echoes the payload: ${caught.rawMessage}`);
          for (const [name, value] of caught.metadata) {
            assert.ok(!decodeURIComponent(value).includes(marker), `metadata ${name} echoes the payload`);
          }
          const detail = caught.findDetails(ErrorDetailSchema)[0];
          assert.equal(detail?.reason, "action_input_invalid");
          assert.ok(!JSON.stringify(detail).includes(marker));
        }
      }
      assert.ok(!harness.text().includes(marker), "the log echoes the payload");
    });
  }
});
