import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { InfoService, ListActionsResponseSchema } from "../gen/openexec/v1/info_pb.js";
import { builtinActions } from "../src/actions/builtin.js";
import { defineAction } from "../src/actions/define-action.js";
import { ActionRegistry } from "../src/actions/registry.js";
import { z } from "../src/actions/zod.js";
import { serveCommand } from "../src/cli/serve-command.js";
import { type AnyJson, clientFor, getJson, protocols } from "./support/clients.js";
import { runCli, runCommandInProcess, startTestServer, type TestServer } from "./support/test-server.js";

const jsonSchema = "https://json-schema.org/draft/2020-12/schema";

/** The built-ins' summaries, as written in src/actions/. */
const summaries = {
  add: 'adds numbers: {"a": 1, "b": 2} gives {"sum": 3}',
  "counter.add": 'adds to a durable counter: {"key": "k", "delta": 1} gives {"key": "k", "value": total}',
  echo: 'returns {"echo": payload}',
};

/**
 * GET /actions for the built-ins, written out by hand (not read from the
 * actions): the schemas zod publishes for them, every field present, by name.
 */
function builtinCatalogue(timeoutMs: number, allowed: (name: string) => boolean): AnyJson {
  return {
    actions: [
      {
        name: "add",
        summary: summaries.add,
        effects: "ledger",
        input_schema: {
          $schema: jsonSchema,
          type: "object",
          properties: { a: { type: "number" }, b: { type: "number" } },
          required: ["a", "b"],
          additionalProperties: false,
        },
        output_schema: {
          $schema: jsonSchema,
          type: "object",
          properties: { sum: { type: "number" } },
          required: ["sum"],
          additionalProperties: false,
        },
        timeout_ms: timeoutMs,
        allowed: allowed("add"),
      },
      {
        name: "counter.add",
        summary: summaries["counter.add"],
        effects: "ledger",
        input_schema: {
          $schema: jsonSchema,
          type: "object",
          properties: {
            key: { type: "string", minLength: 1, maxLength: 128 },
            delta: { type: "integer", minimum: -9007199254740991, maximum: 9007199254740991 },
          },
          required: ["key", "delta"],
          additionalProperties: false,
        },
        timeout_ms: timeoutMs,
        allowed: allowed("counter.add"),
      },
      {
        name: "echo",
        summary: summaries.echo,
        effects: "ledger",
        input_schema: { $schema: jsonSchema, type: "object", properties: {}, additionalProperties: {} },
        timeout_ms: timeoutMs,
        allowed: allowed("echo"),
      },
    ],
  };
}

/** An operator's action with its own time limit, effects "external" and no output schema. */
const slowAction = defineAction({
  name: "report.send",
  effects: "external",
  summary: "sends a report (test action)",
  input: z.strictObject({ to: z.string() }),
  timeoutMs: 250,
  run: () => ({ sent: true }),
});

describe("the action catalogue", () => {
  let open: TestServer;
  // An allow-list and another default time limit.
  let restricted: TestServer;
  // The same, answered by connect-es throughout (no lean unary path).
  let restrictedConnectEs: TestServer;
  const restrictedEnv = { OPENEXEC_ALLOWED_ACTIONS: "echo, add", OPENEXEC_HANDLER_TIMEOUT_MS: "1234" };
  const restrictedCatalogue = builtinCatalogue(1234, (name) => name === "echo" || name === "add");

  before(async () => {
    open = await startTestServer();
    restricted = await startTestServer(restrictedEnv);
    restrictedConnectEs = await startTestServer({ ...restrictedEnv, OPENEXEC_LEAN_UNARY: "off" });
  });
  after(async () => {
    await open.close();
    await restricted.close();
    await restrictedConnectEs.close();
  });

  describe("GET /actions", () => {
    it("describes the built-ins by name, every action allowed and 5000 ms without configuration", async () => {
      const response = await fetch(`${open.url}/actions`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "application/json");
      assert.equal(response.headers.get("cache-control"), "no-store");
      assert.deepEqual(
        await response.json(),
        builtinCatalogue(5000, () => true),
      );
    });

    it("says which actions the allow-list permits, with the configured time limit", async () => {
      const { status, body } = await getJson(`${restricted.url}/actions`);
      assert.equal(status, 200);
      assert.deepEqual(body, restrictedCatalogue);
    });

    it("publishes exactly the schemas the actions validate against", async () => {
      const { body } = await getJson(`${open.url}/actions`);
      for (const action of builtinActions) {
        const entry = body.actions.find((a: AnyJson) => a.name === action.name);
        assert.deepEqual(entry.input_schema, action.inputSchema, action.name);
        assert.deepEqual(entry.output_schema, action.outputSchema, action.name);
      }
    });

    it("takes an action's own time limit, its effects, and leaves out an undeclared output schema", async () => {
      const server = await startTestServer({}, { actions: ActionRegistry.of([...builtinActions, slowAction]) });
      try {
        const { body } = await getJson(`${server.url}/actions`);
        assert.deepEqual(
          body.actions.map((a: AnyJson) => a.name),
          ["add", "counter.add", "echo", "report.send"],
        );
        assert.deepEqual(body.actions[3], {
          name: "report.send",
          summary: "sends a report (test action)",
          effects: "external",
          input_schema: {
            $schema: jsonSchema,
            type: "object",
            properties: { to: { type: "string" } },
            required: ["to"],
            additionalProperties: false,
          },
          timeout_ms: 250,
          allowed: true,
        });
      } finally {
        await server.close();
      }
    });

    it("refuses other methods like the other GET paths: 405 method_not_allowed with Allow", async () => {
      for (const method of ["POST", "PUT", "DELETE"]) {
        const [actions, health] = await Promise.all([
          fetch(`${open.url}/actions`, { method }),
          fetch(`${open.url}/health`, { method }),
        ]);
        assert.equal(actions.status, 405, method);
        assert.equal(actions.headers.get("allow"), "GET");
        assert.equal(((await actions.json()) as AnyJson).reason, "method_not_allowed");
        assert.equal(actions.status, health.status);
        assert.equal(actions.headers.get("allow"), health.headers.get("allow"));
        await health.body?.cancel();
      }
    });
  });

  for (const [label, url] of [
    ["lean unary path", () => restricted.url],
    ["connect-es", () => restrictedConnectEs.url],
  ] as const) {
    describe(`InfoService.ListActions through the generated client (${label})`, () => {
      for (const protocol of protocols) {
        it(`answers the same catalogue over ${protocol}`, async () => {
          const answer = await clientFor(InfoService, protocol, url()).listActions({});
          const asRest = toJson(ListActionsResponseSchema, answer, {
            useProtoFieldName: true,
            alwaysEmitImplicit: true,
          });
          assert.deepEqual(asRest, restrictedCatalogue);
          // Read as a message, too: absent output schema, false allowed.
          assert.equal(answer.actions[1]?.outputSchema, undefined);
          assert.equal(answer.actions[1]?.allowed, false);
        });
      }
    });
  }

  it("is a Connect GET (NO_SIDE_EFFECTS), in the Connect JSON spelling", async () => {
    const response = await fetch(
      `${open.url}/openexec.v1.InfoService/ListActions?connect=v1&encoding=json&message=${encodeURIComponent("{}")}`,
    );
    assert.equal(response.status, 200);
    const body = (await response.json()) as AnyJson;
    assert.deepEqual(
      body.actions.map((a: AnyJson) => [a.name, a.timeoutMs, a.allowed]),
      [
        ["add", 5000, true],
        ["counter.add", 5000, true],
        ["echo", 5000, true],
      ],
    );
    assert.deepEqual(body.actions[0].inputSchema, builtinCatalogue(5000, () => true).actions[0].input_schema);
  });

  it("gRPC reflection serves the method, with struct.proto", async () => {
    const client = clientFor(ServerReflection, "grpc", open.url);
    const requests = (async function* () {
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "openexec.v1.InfoService.ListActions" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "openexec.v1.InfoService.NoSuch" } };
    })();
    const answers = [];
    for await (const answer of client.serverReflectionInfo(requests)) answers.push(answer);
    const [found, missing] = answers;
    assert.equal(found?.messageResponse.case, "fileDescriptorResponse");
    assert.equal(missing?.messageResponse.case, "errorResponse");
    const files =
      found?.messageResponse.case === "fileDescriptorResponse"
        ? found.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes))
        : [];
    assert.deepEqual(files.map((f) => f.name).sort(), ["google/protobuf/struct.proto", "openexec/v1/info.proto"]);
    const info = files.find((f) => f.name === "openexec/v1/info.proto");
    const method = info?.service.find((s) => s.name === "InfoService")?.method.find((m) => m.name === "ListActions");
    assert.equal(method?.inputType, ".openexec.v1.ListActionsRequest");
    assert.equal(method?.outputType, ".openexec.v1.ListActionsResponse");
  });

  it("/health adds every action's summary and keeps `actions` as it was", async () => {
    const { body } = await getJson(`${restricted.url}/health`);
    assert.deepEqual(body.actions, ["add", "counter.add", "echo"]);
    assert.deepEqual(body.action_summaries, summaries);
    assert.deepEqual(Object.keys(body.action_summaries), ["add", "counter.add", "echo"]);
    assert.deepEqual(body.allow_list, ["add", "echo"]);
  });

  it("/health over RPC carries the summaries too", async () => {
    const health = await clientFor(InfoService, "grpc", open.url).getHealth({});
    assert.deepEqual(health.actionSummaries, summaries);
  });
});

describe("openexec serve --help", () => {
  it("lists the built-in actions with their summaries", async () => {
    const { code, stdout } = await runCli(["serve", "--help"]);
    assert.equal(code, 0);
    assert.ok(
      stdout.includes(
        "\nActions:\n" +
          `  add          ${summaries.add}\n` +
          `  counter.add  ${summaries["counter.add"]}\n` +
          `  echo         ${summaries.echo}\n`,
      ),
      stdout,
    );
    // The rest is still there.
    for (const word of ["Usage: openexec serve", "--port PORT", "Environment", "OPENEXEC_LEAN_UNARY"]) {
      assert.ok(stdout.includes(word), word);
    }
  });

  it("lists the actions of the registry it is given", async () => {
    const registry = ActionRegistry.of([...builtinActions, slowAction]);
    const { code, stdout } = await runCommandInProcess((args) => serveCommand(args, registry), ["--help"]);
    assert.equal(code, 0);
    assert.ok(stdout.includes("  report.send  sends a report (test action)\n"), stdout);
    assert.ok(stdout.includes(`  echo         ${summaries.echo}\n`), stdout);
  });
});
