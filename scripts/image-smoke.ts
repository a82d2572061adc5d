// Runs the Dockerfile without Docker: the build stage's RUN commands in a clean
// copy of the build context, the runtime stage's COPY --from=build into a
// second directory, then the runtime stage's ENTRYPOINT + CMD with its ENV
// (bound to 127.0.0.1 on a free port, the VOLUME in a scratch directory, and as
// the image's USER when run as root). It checks that the server answers
// /health, /ready and an Execute, writes its ledger on the volume, runs without
// dev dependencies, and exits 0 on SIGTERM.
//
// The commands are read from the Dockerfile, never repeated here: an
// instruction this script does not know how to run stops it, so the two cannot
// drift apart (test/deploy-manifests.spec.ts checks the Dockerfile's contents).
//
//   node --import tsx scripts/image-smoke.ts          (.ci/run, after npm test)
//   KEEP=1 node --import tsx scripts/image-smoke.ts   keeps the scratch directory
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { packageRoot } from "../src/version.js";

export interface DockerInstruction {
  readonly op: string;
  readonly args: string;
}

export interface DockerStage {
  readonly from: string;
  readonly name: string;
  readonly instructions: DockerInstruction[];
}

/** The package root, not this file's parent: test/deploy-manifests.spec.ts loads this compiled, from .build/scripts/. */
const root = packageRoot;

/** The Dockerfile's stages; line continuations are joined, comments dropped. */
export function parseDockerfile(text: string): DockerStage[] {
  const stages: DockerStage[] = [];
  for (const raw of text.replace(/\\\n/g, " ").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([A-Z]+)\s+(.*)$/.exec(line);
    if (match === null) throw new Error(`Dockerfile: cannot read "${line}"`);
    const [, op = "", args = ""] = match;
    if (op === "FROM") {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (from === null) throw new Error(`Dockerfile: cannot read "${line}"`);
      stages.push({ from: from[1] ?? "", name: from[2] ?? String(stages.length), instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`Dockerfile: ${op} before FROM`);
    stage.instructions.push({ op, args });
  }
  return stages;
}

/** The Dockerfile of this repository. */
export function readDockerfile(): DockerStage[] {
  return parseDockerfile(readFileSync(join(root, "Dockerfile"), "utf8"));
}

/** ENTRYPOINT/CMD in exec form (a JSON array): the shell form would put sh between the runtime and node. */
export function execForm(instruction: DockerInstruction): string[] {
  const value: unknown = JSON.parse(instruction.args);
  if (!Array.isArray(value) || !value.every((v): v is string => typeof v === "string")) {
    throw new Error(`Dockerfile: ${instruction.op} must be a JSON array of strings`);
  }
  return value;
}

/** ENV NAME=value [NAME=value …] (no quoting). */
export function envPairs(args: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of args.split(/\s+/)) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/.exec(pair);
    if (match === null) throw new Error(`Dockerfile: ENV must be NAME=value pairs: "${args}"`);
    env[match[1] ?? ""] = match[2] ?? "";
  }
  return env;
}

const started = Date.now();
const say = (line: string) =>
  process.stderr.write(`image-smoke: ${line} [${((Date.now() - started) / 1000).toFixed(1)} s]\n`);

class SmokeFailure extends Error {}
const fail = (line: string): never => {
  throw new SmokeFailure(line);
};

/** The build context: tracked and untracked-but-not-ignored files, less .dockerignore. */
function contextFiles(): string[] {
  const patterns = readFileSync(join(root, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  for (const p of patterns) {
    if (!/^(\*\.[A-Za-z0-9-]+|[A-Za-z0-9._-]+)$/.test(p)) fail(`.dockerignore: this script cannot apply "${p}"`);
  }
  const ignored = (path: string) =>
    patterns.some((p) =>
      p.startsWith("*.") ? basename(path).endsWith(p.slice(1)) : path === p || path.startsWith(`${p}/`),
    );
  const listed = spawnSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
  });
  if (listed.status !== 0) fail(`git ls-files failed: ${listed.stderr}`);
  return listed.stdout.split("\0").filter((f) => f !== "" && !ignored(f) && existsSync(join(root, f)));
}

function run(command: string, cwd: string, env: NodeJS.ProcessEnv): void {
  say(`RUN ${command}`);
  const result = spawnSync("sh", ["-c", command], { cwd, env, stdio: ["ignore", "inherit", "inherit"] });
  if (result.status !== 0) fail(`"${command}" exited with ${result.status ?? result.signal}`);
}

async function smoke(scratch: string): Promise<void> {
  const stages = readDockerfile();
  const build = stages.find((s) => s.name === "build");
  const runtime = stages.at(-1);
  if (build === undefined || runtime === undefined || runtime === build) {
    return fail("the Dockerfile needs a stage named build and a runtime stage after it");
  }
  const buildDir = join(scratch, "build");
  const appDir = join(scratch, "app");
  mkdirSync(buildDir);
  mkdirSync(appDir);

  // The build stage, in a copy of the build context.
  let buildWorkdir: string | undefined;
  const buildEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const instruction of build.instructions) {
    const { op, args } = instruction;
    if (op === "WORKDIR") buildWorkdir = args;
    else if (op === "ENV") Object.assign(buildEnv, envPairs(args));
    else if (op === "COPY" && args === ". .") {
      const files = contextFiles();
      for (const file of files) {
        mkdirSync(dirname(join(buildDir, file)), { recursive: true });
        cpSync(join(root, file), join(buildDir, file));
      }
      say(`COPY . . (${files.length} files of the build context)`);
    } else if (op === "RUN") run(args, buildDir, buildEnv);
    else fail(`build stage: this script does not know how to run ${op} ${args}`);
  }
  if (buildWorkdir === undefined) return fail("the build stage sets no WORKDIR");

  // The runtime stage: its files, environment, user, volume and command.
  const env: Record<string, string> = {};
  let entrypoint: string[] | undefined;
  let cmd: string[] | undefined;
  let volume: string | undefined;
  let user: string | undefined;
  for (const instruction of runtime.instructions) {
    const { op, args } = instruction;
    if (op === "ENV") Object.assign(env, envPairs(args));
    else if (op === "WORKDIR" || op === "EXPOSE") continue;
    else if (op === "COPY") {
      const copy = /^--from=build\s+(\S+)\s+(\S+)$/.exec(args);
      const source = copy?.[1];
      if (copy === null || source === undefined || !source.startsWith(`${buildWorkdir}/`)) {
        return fail(`runtime stage: cannot run COPY ${args}`);
      }
      const from = join(buildDir, source.slice(buildWorkdir.length + 1));
      if (!existsSync(from)) fail(`COPY --from=build ${source}: the build stage made no such file`);
      cpSync(from, join(appDir, copy[2] ?? ""), { recursive: true, verbatimSymlinks: true });
      say(`COPY --from=build ${source} ${copy[2]}`);
    } else if (op === "RUN") {
      // The runtime stage may only prepare the volume's directory (done below, in the scratch directory).
      if (!/^mkdir -p \/\S+ && chown \S+ \/\S+ && chmod \d+ \/\S+$/.test(args)) {
        fail(`runtime stage: this script does not know how to run RUN ${args}`);
      }
    } else if (op === "USER") user = args;
    else if (op === "VOLUME") volume = args;
    else if (op === "ENTRYPOINT") entrypoint = execForm(instruction);
    else if (op === "CMD") cmd = execForm(instruction);
    else fail(`runtime stage: this script does not know ${op}`);
  }
  if (entrypoint?.[0] !== "node")
    return fail('the ENTRYPOINT must start with "node" (so that signals reach the server)');
  if (volume === undefined || cmd === undefined) return fail("the runtime stage needs a VOLUME and a CMD");
  const ids = /^(\d+)(?::(\d+))?$/.exec(user ?? "");
  if (ids === null) return fail('the runtime stage must name a numeric USER ("1000:1000")');

  // No dev dependencies; the native module compiled in the build stage.
  if (existsSync(join(appDir, "node_modules/typescript")))
    fail("node_modules holds typescript: dev dependencies were not pruned");
  if (!existsSync(join(appDir, "node_modules/better-sqlite3/build/Release/better_sqlite3.node"))) {
    fail("node_modules/better-sqlite3 has no compiled binary");
  }

  const volumeDir = join(scratch, "volumes", volume);
  mkdirSync(volumeDir, { recursive: true, mode: 0o700 });
  for (const [name, value] of Object.entries(env)) env[name] = value.split(volume).join(volumeDir);
  const hostAt = cmd.indexOf("--host");
  if (hostAt < 0) return fail('the CMD must bind explicitly ("--host", "0.0.0.0")');
  const args = [...entrypoint.slice(1), ...cmd];
  args[entrypoint.length - 1 + hostAt + 1] = "127.0.0.1";
  args.push("--port", "0");

  // As root (CI), run as the image's USER: the server must need nothing writable outside the volume.
  const uid = Number(ids[1]);
  const gid = Number(ids[2] ?? ids[1]);
  const asUser = process.getuid?.() === 0;
  if (asUser) {
    for (let dir = dirname(volumeDir); dir.startsWith(scratch); dir = dirname(dir)) chmodSync(dir, 0o755);
    chownSync(volumeDir, uid, gid);
  }

  say(
    `${["node", ...args].join(" ")}  (in ${appDir}, OPENEXEC_DB_URL=${env.OPENEXEC_DB_URL}${asUser ? `, uid ${uid}` : ""})`,
  );
  const child = spawn("node", args, {
    cwd: appDir,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "ignore", "pipe"],
    ...(asUser ? { uid, gid } : {}),
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | string | null>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal)),
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const onData = () => {
        const match = /listening on (http:\/\/\S+)/.exec(stderr);
        if (match?.[1] !== undefined) {
          child.stderr.off("data", onData);
          resolve(match[1]);
        }
      };
      child.stderr.on("data", onData);
      void exited.then((code) =>
        reject(new SmokeFailure(`the server exited with ${code} before listening:\n${stderr}`)),
      );
    });
    say(`listening on ${url}`);
    const health = await fetch(`${url}/health`);
    const healthBody = (await health.json()) as { status?: string };
    if (health.status !== 200 || healthBody.status !== "healthy") {
      fail(`/health: ${health.status} ${JSON.stringify(healthBody)}`);
    }
    const ready = await fetch(`${url}/ready`);
    if (ready.status !== 200) fail(`/ready: ${ready.status}`);
    const executed = await fetch(`${url}/execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ action: "echo", payload: { msg: "image" }, nonce: "image-smoke-1" }),
    });
    const answer = (await executed.json()) as { id?: string; status?: string; result?: { echo?: { msg?: string } } };
    if (executed.status !== 200 || answer.status !== "executed" || answer.result?.echo?.msg !== "image") {
      fail(`/execute: ${executed.status} ${JSON.stringify(answer)}`);
    }
    say(`/health healthy, /ready 200, /execute executed (${answer.id})`);
    const ledger = (env.OPENEXEC_DB_URL ?? "").replace(/^sqlite:\/\/\//, "");
    if (!ledger.startsWith(volumeDir) || !existsSync(ledger)) fail(`no ledger at ${ledger}, on the volume`);
  } finally {
    child.kill("SIGTERM");
  }
  const code = await exited;
  if (code !== 0) fail(`after SIGTERM the server exited with ${code}, not 0:\n${stderr}`);
  say("SIGTERM: drained and exited 0");
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const scratch = mkdtempSync(join(tmpdir(), "openexec-image-"));
  say(`scratch directory ${scratch}`);
  try {
    await smoke(scratch);
    say("passed");
  } catch (error) {
    process.stderr.write(`image-smoke: FAILED: ${error instanceof SmokeFailure ? error.message : String(error)}\n`);
    process.exitCode = 1;
  } finally {
    if (process.env.KEEP === undefined) rmSync(scratch, { recursive: true, force: true });
  }
}
