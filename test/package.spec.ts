// The package as an operator installs it: `npm pack`, unpacked into a project outside the
// repository, used only through its exports (compiled JavaScript and typings, no tsx, no sources).
// The runtime dependencies are linked from this repository's node_modules, so no native module is
// rebuilt here; scripts/pack-install-smoke.ts does the real `npm install` in CI.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { packageRoot } from "../src/version.js";
import { type AnyJson, postJson } from "./support/clients.js";
import { freePort } from "./support/private-postgres.js";
import { scratchDir } from "./support/test-server.js";

const manifest = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as {
  version: string;
  dependencies: Record<string, string>;
};

/** The operator's program: two actions of its own, served on a free port; each ticket run is counted in a file. */
const serverSource = `
import { appendFileSync, writeFileSync } from "node:fs";
import { defineAction, LedgerEffect, z } from "openexec/actions";
import { startOpenExec } from "openexec/server";

const ticket = defineAction({
  name: "ticket.create",
  summary: "opens a ticket",
  effects: "external",
  input: z.strictObject({ title: z.string().min(1).max(80) }),
  output: z.strictObject({ ticket: z.string(), execution: z.string() }),
  timeoutMs: 2500,
  run: ({ title }, context) => {
    appendFileSync(process.env.RUNS_FILE, "ran\\n");
    return { ticket: "T-" + title.length, execution: context.executionId };
  },
});
const tally = defineAction({
  name: "tally.add",
  summary: "adds to a tally",
  effects: "ledger",
  input: z.strictObject({ by: z.int().min(1) }),
  run: ({ by }) => LedgerEffect.counterAdd("tally", by),
});

// What the actions declared, as defineAction published it: the catalogue must serve exactly this.
writeFileSync(
  process.env.DECLARED_FILE,
  JSON.stringify([tally, ticket].map((a) => ({ name: a.name, input: a.inputSchema, output: a.outputSchema ?? null }))),
);
const server = await startOpenExec({ actions: [ticket, tally], port: 0, drainMs: 0, checkpointIntervalMs: 50 });
process.on("SIGTERM", () => server.close().then(() => process.exit(0)));
process.stderr.write("listening on " + server.url + "\\n");
`;

/** An agent: every RPC protocol through openexec/client; prints what it saw as JSON. */
const agentSource = `
import {
  createOpenExecClient, ExecutionStatus, reasonOf, receiptEvidence, resultOf, verifyReceiptOffline,
} from "openexec/client";

const url = process.argv[2];
const out = {};
for (const protocol of ["connect", "grpc", "grpc-web"]) {
  const client = createOpenExecClient(url, { protocol });
  const nonce = "agent-" + protocol;
  const call = (payload, n = nonce) => client.execution.execute({ action: "ticket.create", payload, nonce: n });
  const failure = (promise) => promise.then(
    () => ({ code: undefined }),
    (error) => ({ code: error.code, reason: reasonOf(error), message: error.rawMessage }),
  );
  const first = await call({ title: "printer" });
  const again = await call({ title: "printer" });
  const conflict = await failure(call({ title: "scanner" }));
  const bad = await failure(call({ title: 7, secretField: "hunter2-secret" }, nonce + "-bad"));
  const { publicKeyPem } = await client.info.getReceiptKey({});
  let bundle;
  for (let i = 0; bundle === undefined; i++) {
    bundle = await client.log.getReceiptBundle({ execId: first.id }).catch((error) => {
      if (i > 100) throw error;
      return new Promise((resolve) => setTimeout(() => resolve(undefined), 20));
    });
  }
  const verdict = verifyReceiptOffline(receiptEvidence(publicKeyPem, bundle, resultOf(first)));
  const { actions } = await client.info.listActions({});
  const catalogue = actions.map((a) => ({
    name: a.name, effects: a.effects, input: a.inputSchema, output: a.outputSchema ?? null, timeoutMs: a.timeoutMs,
  }));
  out[protocol] = {
    executed: first.status === ExecutionStatus.EXECUTED,
    result: resultOf(first),
    replayed: again.replayed && again.id === first.id,
    conflict,
    bad,
    problems: verdict.problems,
    catalogue,
  };
}
process.stdout.write(JSON.stringify(out));
`;

/** Type-checked against the packed typings only. */
const typedSource = `
import { defineAction, z, type Action } from "openexec/actions";
import { createOpenExecClient, type ExecuteResponse, ExecutionService, Code } from "openexec/client";
import { startOpenExec, createOpenExecHandler, type OpenExecOptions, type OpenExecServer } from "openexec/server";
import { verifyReceiptOffline, signApproval } from "openexec";

const greet: Action = defineAction({
  name: "greet",
  summary: "greets",
  effects: "ledger",
  input: z.strictObject({ name: z.string() }),
  run: ({ name }) => ({ greeting: "hello " + name.toUpperCase() }),
});
const options: OpenExecOptions = { actions: [greet], port: 0, accessLog: false, corsOrigins: ["https://a.example"] };
export async function main(): Promise<void> {
  const server: OpenExecServer = await startOpenExec(options);
  const mounted = await createOpenExecHandler({ ...options, mode: "demo" });
  const client = createOpenExecClient(server.url, { protocol: "grpc" });
  const answer: ExecuteResponse = await client.execution.execute({ action: "greet", payload: { name: "x" }, nonce: "n" });
  const code: Code = Code.AlreadyExists;
  void [answer, code, ExecutionService.typeName, verifyReceiptOffline, signApproval, mounted.routes];
  await mounted.close();
  await server.close({ now: true });
}
`;

/** The fenced block (of `lang`) after `<!-- readme-test: NAME -->` in README.md. */
function readmeFence(name: string, lang: string): string {
  const readme = readFileSync(join(packageRoot, "README.md"), "utf8");
  const start = readme.indexOf(`<!-- readme-test: ${name} -->`);
  assert.ok(start >= 0, `README has no block "${name}"`);
  const block = new RegExp(`\`\`\`${lang}\n([\\s\\S]*?)\`\`\``).exec(readme.slice(start));
  assert.ok(block?.[1] !== undefined, `README block "${name}" is not ${lang}`);
  return block[1];
}

/** Polls /ready until it answers 200 (the README's server prints nothing). */
async function waitForReady(url: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const ready = await fetch(`${url}/ready`).then(
      (r) => r.status,
      () => 0,
    );
    if (ready === 200) return;
    if (attempt > 200) throw new Error(`${url} never became ready`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * A server process of the operator's, from its own directory. With `listening`, resolves once it
 * prints a line matching it (group 1 is the URL); `stop` sends SIGTERM and waits for the exit.
 */
async function spawnListening(
  command: string,
  args: string[],
  cwd: string,
  listening: RegExp | undefined,
  env: Record<string, string>,
): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(command, args, {
    cwd,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr += chunk;
  });
  if (listening === undefined) return { url: "", stop };
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on("data", () => {
      const match = listening.exec(stderr);
      if (match?.[1] !== undefined) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`${args.join(" ")} exited with ${code}:\n${stderr}`)));
  });
  return { url, stop };
}

/** Links the package's runtime dependencies (and, for tsc, Node's types) from this repository. */
function linkDependencies(project: string): void {
  const names = [...Object.keys(manifest.dependencies), "@types/node"];
  for (const name of names) {
    const target = join(project, "node_modules", name);
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(join(packageRoot, "node_modules", name), target, "dir");
  }
}

describe("the packed package, installed in a project of its own", () => {
  const dir = scratchDir("openexec-package-");
  const project = join(dir.path, "project");
  let tarball: string;
  let listing: string[];
  let server: ReturnType<typeof spawn> | undefined;
  let url: string;
  const runs = join(dir.path, "runs.txt");
  const declaredFile = join(dir.path, "declared.json");
  /** The schemas the operator's actions declared, as its server wrote them. */
  const declared = () =>
    JSON.parse(readFileSync(declaredFile, "utf8")) as { name: string; input: AnyJson; output: AnyJson }[];

  before(async () => {
    // npm pack runs `prepare` (a clean build of dist/) and writes the tarball's name last.
    const packed = execFileSync("npm", ["pack", "--pack-destination", dir.path, "--loglevel", "error"], {
      cwd: packageRoot,
      encoding: "utf8",
    });
    tarball = join(dir.path, packed.trim().split("\n").at(-1) ?? "");
    listing = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).trim().split("\n");
    mkdirSync(join(project, "node_modules", "openexec"), { recursive: true });
    execFileSync("tar", ["-xzf", tarball, "-C", join(project, "node_modules", "openexec"), "--strip-components=1"]);
    linkDependencies(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "operator", private: true, type: "module" }));
    writeFileSync(join(project, "server.mjs"), serverSource);
    writeFileSync(join(project, "agent.mjs"), agentSource);
    writeFileSync(runs, "");

    const child = spawn(process.execPath, ["server.mjs"], {
      cwd: project,
      env: {
        PATH: process.env.PATH ?? "",
        RUNS_FILE: runs,
        DECLARED_FILE: declaredFile,
        OPENEXEC_DB_URL: `sqlite:///${join(dir.path, "ledger.db")}`,
        OPENEXEC_LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    server = child;
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    url = await new Promise<string>((resolve, reject) => {
      child.stderr?.on("data", (chunk: string) => {
        stderr += chunk;
        const match = /listening on (http:\/\/\S+)/.exec(stderr);
        if (match?.[1] !== undefined) resolve(match[1]);
      });
      child.once("exit", (code) => reject(new Error(`server exited with ${code}:\n${stderr}`)));
    });
  });
  after(async () => {
    if (server !== undefined && server.exitCode === null) {
      const exited = new Promise((resolve) => server?.once("exit", resolve));
      server.kill("SIGTERM");
      await exited;
    }
    dir.cleanup();
  });

  it("holds the build and the documents, and nothing of the repository's own", () => {
    const files = listing.map((path) => path.replace(/^package\//, ""));
    for (const required of [
      "package.json",
      "README.md",
      "CHANGELOG.md",
      "dist/src/public/server.js",
      "dist/src/public/server.d.ts",
      "dist/src/public/client.d.ts",
      "dist/src/public/actions.d.ts",
      "dist/src/index.js",
      "dist/gen/openexec/v1/execution_pb.js",
      "bin/openexec.js",
    ]) {
      assert.ok(files.includes(required), `${required} is packed`);
    }
    const unwanted = files.filter(
      (path) =>
        /^(test|bench|scripts|src|gen|\.ci)\//.test(path) ||
        /\.(map|spec\.js|spec\.d\.ts)$/.test(path) ||
        /^dist\/(test|bench|scripts)\//.test(path) ||
        (path.endsWith(".ts") && !path.endsWith(".d.ts")),
    );
    assert.deepEqual(unwanted, []);
    const packedManifest = JSON.parse(readFileSync(join(project, "node_modules/openexec/package.json"), "utf8"));
    assert.equal(packedManifest.private, undefined);
    assert.equal(packedManifest.version, manifest.version);
  });

  it("serves the operator's actions over REST: execute, replay, 409 nonce_reused, 400 action_input_invalid", async () => {
    const execute = (payload: object, nonce: string) =>
      postJson(`${url}/execute`, { action: "ticket.create", payload, nonce });
    const first = await execute({ title: "rest" }, "rest-1");
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body.result, { ticket: "T-4", execution: first.body.id });
    const again = await execute({ title: "rest" }, "rest-1");
    assert.equal(again.body.replayed, true);
    const conflict = await execute({ title: "other" }, "rest-1");
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.reason, "nonce_reused");
    const bad = await execute({ title: 7, secretField: "hunter2-secret" }, "rest-bad");
    assert.equal(bad.status, 400);
    assert.equal(bad.body.reason, "action_input_invalid");
    assert.match(bad.body.message, /title/);
    assert.doesNotMatch(JSON.stringify(bad.body), /hunter2|secretField/);
    const health = (await (await fetch(`${url}/health`)).json()) as AnyJson;
    assert.deepEqual(health.actions, ["tally.add", "ticket.create"]);
    assert.deepEqual(health.action_summaries, { "tally.add": "adds to a tally", "ticket.create": "opens a ticket" });
  });

  it("publishes the catalogue: GET /actions holds exactly the schemas the actions declared", async () => {
    const answer = await fetch(`${url}/actions`);
    assert.equal(answer.status, 200);
    const { actions } = (await answer.json()) as { actions: AnyJson[] };
    const [tally, ticket] = declared();
    assert.deepEqual(ticket?.input, {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      properties: { title: { type: "string", minLength: 1, maxLength: 80 } },
      required: ["title"],
      additionalProperties: false,
    });
    assert.deepEqual(actions, [
      {
        name: "tally.add",
        summary: "adds to a tally",
        effects: "ledger",
        input_schema: tally?.input,
        timeout_ms: 5000,
        allowed: true,
      },
      {
        name: "ticket.create",
        summary: "opens a ticket",
        effects: "external",
        input_schema: ticket?.input,
        output_schema: ticket?.output,
        timeout_ms: 2500,
        allowed: true,
      },
    ]);
  });

  it("an agent on openexec/client: Connect, gRPC and gRPC-web; receipts verify offline; each handler ran once", () => {
    const before = readFileSync(runs, "utf8").split("\n").filter(Boolean).length;
    const agent = spawnSync(process.execPath, ["agent.mjs", url], { cwd: project, encoding: "utf8", timeout: 20_000 });
    assert.equal(agent.status, 0, agent.stderr);
    const seen = JSON.parse(agent.stdout) as AnyJson;
    for (const protocol of ["connect", "grpc", "grpc-web"]) {
      const p = seen[protocol];
      assert.equal(p.executed, true, protocol);
      assert.deepEqual(p.result, { ticket: "T-7", execution: p.result.execution });
      assert.equal(p.replayed, true, protocol);
      assert.deepEqual([p.conflict.code, p.conflict.reason], [6, "nonce_reused"], protocol); // ALREADY_EXISTS
      assert.deepEqual([p.bad.code, p.bad.reason], [3, "action_input_invalid"], protocol); // INVALID_ARGUMENT
      assert.match(p.bad.message, /title/);
      assert.doesNotMatch(p.bad.message, /hunter2|secretField/);
      assert.deepEqual(p.problems, [], protocol);
      assert.deepEqual(
        p.catalogue,
        declared().map(({ name, input, output }) => ({
          name,
          effects: name === "ticket.create" ? "external" : "ledger",
          input,
          output,
          timeoutMs: name === "ticket.create" ? 2500 : 5000,
        })),
        protocol,
      );
    }
    const after = readFileSync(runs, "utf8").split("\n").filter(Boolean).length;
    assert.equal(after - before, 3, "one run per protocol's nonce, however often it was sent");
  });

  it("type-checks an operator's TypeScript against the packed typings (node16 resolution)", () => {
    const typed = join(project, "typed");
    mkdirSync(typed);
    writeFileSync(join(typed, "agent.ts"), typedSource);
    writeFileSync(
      join(typed, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "node16",
          moduleResolution: "node16",
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          types: ["node"],
          typeRoots: [join(project, "node_modules/@types")],
        },
        files: ["agent.ts"],
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [join(packageRoot, "node_modules/typescript/bin/tsc"), "-p", join(typed, "tsconfig.json")],
      { cwd: project, encoding: "utf8" },
    );
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
  });

  it("only the exports are importable: a file inside the package is ERR_PACKAGE_PATH_NOT_EXPORTED", () => {
    const probe = `
      const out = {};
      for (const specifier of ["openexec", "openexec/actions", "openexec/server", "openexec/client", "openexec/package.json"]) {
        out[specifier] = await import(specifier, specifier.endsWith(".json") ? { with: { type: "json" } } : undefined)
          .then(() => "ok", (error) => error.code);
      }
      out.internal = await import("openexec/dist/src/server.js").then(() => "ok", (error) => error.code);
      process.stdout.write(JSON.stringify(out));
    `;
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", probe], { cwd: project, encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), {
      openexec: "ok",
      "openexec/actions": "ok",
      "openexec/server": "ok",
      "openexec/client": "ok",
      "openexec/package.json": "ok",
      internal: "ERR_PACKAGE_PATH_NOT_EXPORTED",
    });
    assert.ok(readdirSync(join(project, "node_modules/openexec/dist/src")).includes("server.js"));
  });

  it("examples/ticketing builds against the packed typings; its agent creates, replays and verifies; each ticket opens once", async () => {
    const example = join(dir.path, "ticketing");
    cpSync(join(packageRoot, "examples/ticketing"), example, {
      recursive: true,
      filter: (source) => !/[\\/](node_modules|dist)$|\.db|tickets\.jsonl$/.test(source),
    });
    // What `npm install` makes of the example's "openexec": "file:../..": the package, as packed.
    mkdirSync(join(example, "node_modules/@types"), { recursive: true });
    symlinkSync(join(project, "node_modules/openexec"), join(example, "node_modules/openexec"), "dir");
    symlinkSync(join(packageRoot, "node_modules/@types/node"), join(example, "node_modules/@types/node"), "dir");
    for (const name of Object.keys(manifest.dependencies)) {
      const target = join(example, "node_modules", name);
      mkdirSync(dirname(target), { recursive: true });
      symlinkSync(join(packageRoot, "node_modules", name), target, "dir");
    }
    const tsc = spawnSync(
      process.execPath,
      [join(packageRoot, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"],
      {
        cwd: example,
        encoding: "utf8",
      },
    );
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);

    const tickets = join(example, "tickets.jsonl");
    const served = await spawnListening(
      process.execPath,
      ["dist/server.js"],
      example,
      /ticketing listening on (http:\/\/\S+)/,
      {
        OPENEXEC_PORT: "0",
        OPENEXEC_DB_URL: `sqlite:///${join(example, "ledger.db")}`,
        OPENEXEC_LOG_LEVEL: "warn",
        // SIGTERM ends the test: no drain period to wait out.
        OPENEXEC_DRAIN_MS: "0",
        TICKETS_FILE: tickets,
      },
    );
    try {
      const agent = spawnSync(process.execPath, ["dist/agent.js"], {
        cwd: example,
        encoding: "utf8",
        env: { PATH: process.env.PATH ?? "", OPENEXEC_URL: served.url },
        timeout: 20_000,
      });
      assert.equal(agent.status, 0, agent.stderr);
      const seen = JSON.parse(agent.stdout) as AnyJson;
      assert.equal(seen.status, "EXECUTED");
      assert.equal(seen.replayed, true);
      assert.equal(seen.receipt_valid, true, JSON.stringify(seen.problems));
      assert.deepEqual(seen.result, { ticket_id: `T-${String(seen.id).slice(-12)}` });
      // The ticket system saw one change, keyed by the execution id, although the agent sent the request twice.
      const lines = readFileSync(tickets, "utf8")
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      assert.deepEqual(lines, [
        {
          idempotency_key: seen.id,
          op: "create",
          ticket_id: seen.result.ticket_id,
          title: "printer on fire",
          priority: "high",
        },
      ]);

      const close = await postJson(`${served.url}/execute`, {
        action: "ticket.close",
        payload: { ticket_id: seen.result.ticket_id },
        nonce: "close-1",
      });
      assert.equal(close.status, 200, JSON.stringify(close.body));
      assert.deepEqual(close.body.result, { ticket_id: seen.result.ticket_id, status: "closed" });
      const unknown = await postJson(`${served.url}/execute`, {
        action: "ticket.close",
        payload: { ticket_id: "T-000000000000" },
        nonce: "close-2",
      });
      assert.deepEqual([unknown.status, unknown.body.status, unknown.body.reason], [200, "failed", "handler_error"]);
      const refused = await postJson(`${served.url}/execute`, {
        action: "ticket.create",
        payload: { title: "x", priority: "urgent-and-secret" },
        nonce: "create-bad",
      });
      assert.equal(refused.status, 400);
      assert.equal(
        refused.body.message,
        'invalid payload for "ticket.create": priority: expected one of "low", "normal", "high"',
      );
    } finally {
      await served.stop();
    }
  });

  it("the README's 'Add your own action' works as written, from an empty directory", async () => {
    const install = readmeFence("own-action-install", "sh");
    // The tarball the README installs is the one `npm pack` writes for this version.
    assert.match(install, new RegExp(`npm install \\S*openexec-${manifest.version.replaceAll(".", "\\.")}\\.tgz`));
    assert.equal(basename(tarball), `openexec-${manifest.version}.tgz`);
    // `npm init -y && npm pkg set type=module`, then the install (linked here; CI installs it for real).
    const mine = join(dir.path, "my-actions");
    mkdirSync(join(mine, "node_modules"), { recursive: true });
    writeFileSync(join(mine, "package.json"), JSON.stringify({ name: "my-actions", type: "module" }));
    symlinkSync(join(project, "node_modules/openexec"), join(mine, "node_modules/openexec"), "dir");
    for (const name of Object.keys(manifest.dependencies)) {
      const target = join(mine, "node_modules", name);
      mkdirSync(dirname(target), { recursive: true });
      symlinkSync(join(packageRoot, "node_modules", name), target, "dir");
    }
    writeFileSync(join(mine, "server.mjs"), readmeFence("own-action-server", "js"));
    const calls = readmeFence("own-action-calls", "sh")
      .replaceAll("\\\n", " ")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "");
    assert.equal(calls[0], "node server.mjs &");
    const port = await freePort();
    const served = await spawnListening(process.execPath, ["server.mjs"], mine, undefined, {
      OPENEXEC_PORT: String(port),
      OPENEXEC_LOG_LEVEL: "warn",
      OPENEXEC_DRAIN_MS: "0",
    });
    try {
      await waitForReady(`http://127.0.0.1:${port}`);
      const [catalogueLine, executeLine] = calls.slice(1).map((line) => line.replace(/\s+#.*$/, ""));
      const sh = (line: string) =>
        execFileSync("sh", ["-c", line.replaceAll("localhost:5000", `localhost:${port}`)], {
          cwd: mine,
          encoding: "utf8",
        });
      const catalogue = JSON.parse(sh(catalogueLine ?? "")) as { actions: AnyJson[] };
      assert.deepEqual(
        catalogue.actions.map((a) => [a.name, a.effects, a.input_schema.required, a.output_schema.required]),
        [["ticket.create", "external", ["title", "priority"], ["ticket_id"]]],
      );
      const answer = JSON.parse(sh(executeLine ?? "")) as AnyJson;
      assert.equal(answer.status, "executed", JSON.stringify(answer));
      assert.deepEqual(answer.result, { ticket_id: `T-${String(answer.id).slice(-12)}` });
      const again = JSON.parse(sh(executeLine ?? "")) as AnyJson;
      assert.deepEqual([again.replayed, again.id], [true, answer.id]);
      const lines = readFileSync(join(mine, "tickets.jsonl"), "utf8").trim().split("\n");
      assert.deepEqual(
        lines.map((line) => JSON.parse(line)),
        [{ key: answer.id, title: "printer on fire", priority: "high" }],
      );
    } finally {
      await served.stop();
    }
  });
});
