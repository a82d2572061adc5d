import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { envPairs, execForm, readDockerfile } from "../scripts/image-smoke.js";
import { createBuiltinRegistry } from "../src/actions/builtin.js";
import { loadServerConfig, type ServerConfig } from "../src/config/server-config.js";
import { packageRoot } from "../src/version.js";
import { clientFor } from "./support/clients.js";
import { scratchDir, startTestServer, type TestServer } from "./support/test-server.js";

// The Kubernetes manifests and the Dockerfile, checked against what the server
// really does with them: its configuration loader, its health service, its
// compiled entry point. YAML is read by PyYAML (Debian python3-yaml), a YAML 1.1
// parser as Kubernetes' own (sigs.k8s.io/yaml), so 0440 is octal as it is there.

const python = "/usr/bin/python3";
const manifestsDir = join(packageRoot, "deploy/kubernetes");
const actionNames = createBuiltinRegistry().names();

const defaultDrainMs = 5000;

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is untyped; every use is checked by an assertion
type Yaml = any;

function yamlUnavailable(): string | undefined {
  const probe = spawnSync(python, ["-c", "import yaml"], { encoding: "utf8" });
  return probe.status === 0 ? undefined : "python3 with PyYAML is needed to read the manifests (Debian: python3-yaml)";
}

function manifestFiles(dir = manifestsDir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? manifestFiles(join(dir, entry.name))
      : entry.name.endsWith(".yaml") || entry.name.endsWith(".yml")
        ? [join(dir, entry.name)]
        : [],
  );
}

/** Every document of every manifest, parsed by PyYAML. */
function loadManifests(files: string[]): Map<string, Yaml[]> {
  const run = spawnSync(
    python,
    [
      "-c",
      "import json, sys, yaml\nprint(json.dumps({f: list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]}))",
      ...files,
    ],
    { encoding: "utf8" },
  );
  assert.equal(run.status, 0, `PyYAML could not read the manifests:\n${run.stderr}`);
  return new Map(Object.entries(JSON.parse(run.stdout) as Record<string, Yaml[]>));
}

/** The environment variable names the server's configuration reads (src/config/*.ts, as string literals). */
function variablesTheServerReads(): Set<string> {
  const dir = join(packageRoot, "src/config");
  const names = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts") && !f.endsWith(".spec.ts"))) {
    for (const match of readFileSync(join(dir, file), "utf8").matchAll(/"((?:OPENEXEC|CLAWSHIELD)_[A-Z0-9_]+)"/g)) {
      names.add(match[1] ?? "");
    }
  }
  return names;
}

/** --flag value pairs of `openexec serve`. */
function serveFlags(args: readonly string[]): { host?: string; port?: string } {
  assert.equal(args[0], "serve", "the container must run `serve` (the image's ENTRYPOINT is the CLI)");
  const flags: { host?: string; port?: string } = {};
  for (let i = 1; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    assert.ok(value !== undefined, `flag ${flag} has no value`);
    if (flag === "--host") flags.host = value;
    else if (flag === "--port") flags.port = value;
    else assert.fail(`openexec serve has no flag ${flag}`);
  }
  return flags;
}

interface Workload {
  readonly file: string;
  readonly doc: Yaml;
  readonly pod: Yaml;
  readonly container: Yaml;
  /** What loadServerConfig makes of the container's args and environment. */
  readonly config: ServerConfig;
  /** The env entries by name. */
  readonly env: Map<string, Yaml>;
}

describe("container image and Kubernetes manifests", () => {
  const missing = yamlUnavailable();
  const dir = scratchDir("openexec-manifests-");
  const files = manifestFiles();
  let manifests = new Map<string, Yaml[]>();
  const workloads: Workload[] = [];
  let server: TestServer;
  const stages = readDockerfile();
  const runtime = stages.at(-1);
  const instruction = (op: string) => runtime?.instructions.find((i) => i.op === op);

  before(async () => {
    server = await startTestServer();
    if (missing !== undefined) return;
    manifests = loadManifests(files);
    const keyPem = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    for (const [file, docs] of manifests) {
      for (const doc of docs) {
        if (doc?.kind !== "Deployment" && doc?.kind !== "StatefulSet") continue;
        const pod = doc.spec.template.spec;
        const container = pod.containers.find((c: Yaml) => c.name === "openexec");
        assert.ok(container !== undefined, `${file}: no container named openexec`);
        const env = new Map<string, Yaml>((container.env ?? []).map((e: Yaml) => [e.name, e]));
        // Secrets stand in as values of their kind; a key file mounted from a Secret as a real key.
        const values: Record<string, string> = {};
        for (const [name, entry] of env) {
          if (entry.value !== undefined) values[name] = String(entry.value);
          else if (name === "OPENEXEC_DB_URL") values[name] = "postgres://openexec@db.invalid:5432/openexec";
          else if (name === "OPENEXEC_RECEIPT_KEY") values[name] = keyPem;
          else
            assert.fail(
              `${file}: ${name} comes from ${JSON.stringify(entry.valueFrom)}, which this test cannot stand in for`,
            );
        }
        const keyFile = values.OPENEXEC_RECEIPT_KEY_FILE;
        if (keyFile !== undefined) {
          const mount = (container.volumeMounts ?? []).find((m: Yaml) => keyFile.startsWith(`${m.mountPath}/`));
          assert.ok(mount !== undefined, `${file}: OPENEXEC_RECEIPT_KEY_FILE ${keyFile} is on no mounted volume`);
          const volume = pod.volumes.find((v: Yaml) => v.name === mount.name);
          assert.ok(volume?.secret !== undefined, `${file}: the receipt key must come from a Secret volume`);
          const inVolume = relative(mount.path ?? mount.mountPath, keyFile);
          const items: Yaml[] | undefined = volume.secret.items;
          assert.ok(
            items === undefined || items.some((item) => item.path === inVolume),
            `${file}: no item ${inVolume}`,
          );
          // The server runs as a non-root user that is not the file's owner (root): it reads it through its group.
          assert.equal(volume.secret.defaultMode & 0o040, 0o040, `${file}: the key must be readable by the fsGroup`);
          assert.equal(volume.secret.defaultMode & 0o007, 0, `${file}: the key must not be readable by others`);
          values.OPENEXEC_RECEIPT_KEY_FILE = join(dir.path, "receipt-key.pem");
          writeFileSync(values.OPENEXEC_RECEIPT_KEY_FILE, keyPem, { mode: 0o600 });
        }
        const config = loadServerConfig(values, serveFlags(container.args ?? []), actionNames);
        workloads.push({ file: relative(packageRoot, file), doc, pod, container, config, env });
      }
    }
  });
  after(async () => {
    await server.close();
    dir.cleanup();
  });

  const requireYaml = (t: { skip(message: string): void }): boolean => {
    if (missing === undefined) return true;
    if (process.env.CI === "true") assert.fail(`${missing} (CI=true: .ci/run installs it)`);
    t.skip(missing);
    return false;
  };

  it("parses every manifest; each kustomization lists exactly the other manifests of its directory", (t) => {
    if (!requireYaml(t)) return;
    assert.ok(files.length >= 7, "manifests for both variants");
    for (const [file, docs] of manifests) {
      for (const doc of docs) {
        assert.ok(typeof doc?.apiVersion === "string" && typeof doc?.kind === "string", `${file}: apiVersion and kind`);
        if (doc.kind !== "Kustomization") assert.ok(doc.metadata?.name, `${file}: metadata.name`);
      }
    }
    for (const variant of ["postgres", "sqlite"]) {
      const kustomization = manifests.get(join(manifestsDir, variant, "kustomization.yaml"))?.[0];
      const others = files
        .filter((f) => dirname(f) === join(manifestsDir, variant) && !f.endsWith("kustomization.yaml"))
        .map((f) => relative(join(manifestsDir, variant), f))
        .sort();
      assert.deepEqual([...(kustomization?.resources ?? [])].sort(), others, `${variant}/kustomization.yaml`);
      assert.deepEqual(
        kustomization.images.map((i: Yaml) => i.name),
        ["openexec"],
        `${variant}: the image the kustomization rewrites is the one the pods run`,
      );
    }
    assert.deepEqual(workloads.map((w) => `${w.file}:${w.doc.kind}`).sort(), [
      "deploy/kubernetes/postgres/deployment.yaml:Deployment",
      "deploy/kubernetes/sqlite/statefulset.yaml:StatefulSet",
    ]);
  });

  it("runs the image's entrypoint with serve --host 0.0.0.0, on the port the container, probes and Service name", (t) => {
    if (!requireYaml(t)) return;
    for (const { file, container, config } of workloads) {
      assert.equal(container.command, undefined, `${file}: command would replace the image's ENTRYPOINT`);
      assert.ok(String(container.image).startsWith("openexec:"), `${file}: image`);
      assert.equal(config.host, "0.0.0.0", `${file}: a pod must listen beyond loopback`);
      const grpcPort = container.ports.find((p: Yaml) => p.name === "grpc");
      assert.equal(grpcPort?.containerPort, config.port, `${file}: containerPort is the port the server listens on`);
      for (const probe of ["readinessProbe", "livenessProbe"]) {
        assert.equal(
          container[probe]?.grpc?.port,
          config.port,
          `${file}: ${probe} is a gRPC probe of the server's port`,
        );
      }
      const services = [...(manifests.get(join(dirname(join(packageRoot, file)), "service.yaml")) ?? [])];
      assert.equal(services.length, 1, `${file}: one Service beside it`);
      const service = services[0];
      const podLabels = workloadLabels(file);
      for (const [label, value] of Object.entries(service.spec.selector)) {
        assert.equal(podLabels[label], value, `${file}: the Service selects the pods`);
      }
      assert.deepEqual(service.spec.ports, [
        { name: "grpc", port: config.port, targetPort: "grpc", protocol: "TCP", appProtocol: "grpc" },
      ]);
    }
  });

  const workloadLabels = (file: string): Record<string, string> =>
    workloads.find((w) => w.file === file)?.doc.spec.template.metadata.labels ?? {};

  it("probes a health service name the server answers SERVING (grpc.health.v1.Health/Check)", async (t) => {
    if (!requireYaml(t)) return;
    const health = clientFor(Health, "grpc", server.url);
    for (const { file, container } of workloads) {
      for (const probe of ["readinessProbe", "livenessProbe"]) {
        const service: string = container[probe].grpc.service ?? "";
        const answer = await health.check({ service });
        assert.equal(
          answer.status,
          HealthCheckResponse_ServingStatus.SERVING,
          `${file}: ${probe} service "${service}"`,
        );
      }
    }
  });

  it("sets only environment variables the server reads", (t) => {
    if (!requireYaml(t)) return;
    const known = variablesTheServerReads();
    assert.ok(known.has("OPENEXEC_DB_URL") && known.has("OPENEXEC_SHUTDOWN_TIMEOUT_MS"), "names read from src/config");
    for (const { file, env } of workloads) {
      for (const name of env.keys()) {
        assert.ok(known.has(name), `${file}: the server reads no variable ${name}`);
      }
    }
  });

  it("gives a stopping pod time to leave the endpoints, drain, finish executions and sign a last checkpoint", (t) => {
    if (!requireYaml(t)) return;
    for (const { file, pod, container, config, env } of workloads) {
      const preStop: string[] = container.lifecycle?.preStop?.exec?.command ?? [];
      assert.equal(preStop[0], "sleep", `${file}: preStop pauses (node:20-bookworm-slim has sleep)`);
      const pauseMs = Number(preStop[1]) * 1000;
      assert.ok(pauseMs > 0, `${file}: preStop sleeps`);
      assert.ok(env.has("OPENEXEC_DRAIN_MS"), `${file}: the drain is set explicitly`);
      const drainMs = Number(env.get("OPENEXEC_DRAIN_MS")?.value ?? defaultDrainMs);
      // After the drain: running executions (shutdown timeout), then up to 1 s of writes and the last checkpoint.
      const stopMs = pauseMs + drainMs + config.shutdownTimeoutMs + 1000;
      assert.ok(
        pod.terminationGracePeriodSeconds * 1000 > stopMs,
        `${file}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} s must exceed ${stopMs} ms`,
      );
    }
  });

  it("runs as the image's non-root user, with a read-only root filesystem, /tmp in memory and bounded resources", (t) => {
    if (!requireYaml(t)) return;
    const [uid, gid] = (instruction("USER")?.args ?? "").split(":").map(Number);
    for (const { file, pod, container } of workloads) {
      assert.equal(pod.securityContext.runAsNonRoot, true, file);
      assert.equal(pod.securityContext.runAsUser, uid, `${file}: the image's USER`);
      assert.equal(pod.securityContext.fsGroup, gid, `${file}: volumes writable and the key readable by the group`);
      assert.equal(container.securityContext.readOnlyRootFilesystem, true, file);
      assert.equal(container.securityContext.allowPrivilegeEscalation, false, file);
      assert.deepEqual(container.securityContext.capabilities.drop, ["ALL"], file);
      const tmp = container.volumeMounts.find((m: Yaml) => m.mountPath === "/tmp");
      assert.ok(pod.volumes.find((v: Yaml) => v.name === tmp?.name)?.emptyDir !== undefined, `${file}: /tmp`);
      for (const kind of ["requests", "limits"]) {
        assert.ok(container.resources[kind].cpu && container.resources[kind].memory, `${file}: resources.${kind}`);
      }
    }
  });

  it("PostgreSQL: three replicas, the database URL from a Secret, a PodDisruptionBudget", (t) => {
    if (!requireYaml(t)) return;
    const workload = workloads.find((w) => w.doc.kind === "Deployment");
    assert.ok(workload !== undefined);
    assert.equal(workload.doc.spec.replicas, 3);
    assert.equal(workload.config.database.kind, "postgres");
    assert.ok(workload.env.get("OPENEXEC_DB_URL")?.valueFrom?.secretKeyRef?.name, "OPENEXEC_DB_URL from a Secret");
    assert.ok(workload.config.receiptKeyPem !== undefined, "every replica has the receipt key");
    const pdb = manifests.get(join(manifestsDir, "postgres/pod-disruption-budget.yaml"))?.[0];
    assert.equal(pdb?.kind, "PodDisruptionBudget");
    assert.deepEqual(pdb.spec.selector.matchLabels, workload.doc.spec.selector.matchLabels);
    assert.ok(pdb.spec.maxUnavailable < workload.doc.spec.replicas);
  });

  it("SQLite: one StatefulSet replica whose ledger is on its volume claim", (t) => {
    if (!requireYaml(t)) return;
    const workload = workloads.find((w) => w.doc.kind === "StatefulSet");
    assert.ok(workload !== undefined);
    assert.equal(workload.doc.spec.replicas, 1, "SQLite: one server per ledger file");
    const database = workload.config.database;
    assert.equal(database.kind, "sqlite");
    const claims: string[] = workload.doc.spec.volumeClaimTemplates.map((c: Yaml) => c.metadata.name);
    const mount = workload.container.volumeMounts.find(
      (m: Yaml) => database.kind === "sqlite" && dirname(database.path) === m.mountPath,
    );
    assert.ok(mount !== undefined && claims.includes(mount.name), "the ledger's directory is a volume claim");
  });

  it("Dockerfile: builds with npm ci and npm run build, keeps production dependencies only, starts node on the CLI", () => {
    const build = stages.find((s) => s.name === "build");
    assert.deepEqual(
      build?.instructions.filter((i) => i.op === "RUN").map((i) => i.args.split(" --")[0]),
      ["npm ci", "npm run build", "npm prune"],
    );
    assert.match(build?.instructions.find((i) => i.args.startsWith("npm prune"))?.args ?? "", /--omit=dev/);
    assert.ok(runtime !== undefined && runtime !== build);
    const entrypoint = execForm(instruction("ENTRYPOINT") ?? assert.fail("no ENTRYPOINT"));
    assert.equal(entrypoint[0], "node", "node itself, never npm, so that SIGTERM reaches the server");
    // dist/src/cli/main.js is what tsc makes of src/cli/main.ts (outDir dist, rootDir .), and what npm start runs.
    const tsconfig = JSON.parse(readFileSync(join(packageRoot, "tsconfig.json"), "utf8"));
    const source = relative(tsconfig.compilerOptions.outDir, entrypoint[1] ?? "").replace(/\.js$/, ".ts");
    assert.equal(tsconfig.compilerOptions.rootDir, ".");
    assert.ok(existsSync(join(packageRoot, source)), `${entrypoint[1]} is compiled from ${source}`);
    const pkg = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8"));
    // npm start runs the same file; `exec` makes npm's shell hand over to node, so signals reach it.
    assert.equal(pkg.scripts.start, `exec node ${entrypoint[1]} serve`);
    assert.deepEqual(execForm(instruction("CMD") ?? assert.fail("no CMD")), ["serve", "--host", "0.0.0.0"]);
    assert.equal(Number(instruction("EXPOSE")?.args), loadServerConfig({}, {}, actionNames).port, "the default port");
    const env = Object.assign({}, ...runtime.instructions.filter((i) => i.op === "ENV").map((i) => envPairs(i.args)));
    const config = loadServerConfig(env, {}, actionNames);
    assert.equal(config.database.kind, "sqlite");
    assert.equal(
      config.database.kind === "sqlite" ? dirname(config.database.path) : "",
      instruction("VOLUME")?.args,
      "the ledger is on the volume",
    );
    assert.match(instruction("USER")?.args ?? "", /^[1-9]\d*:[1-9]\d*$/, "a numeric non-root USER");
    for (const copied of ["./dist", "./node_modules", "./package.json"]) {
      assert.ok(
        runtime.instructions.some(
          (i) => i.op === "COPY" && i.args.startsWith("--from=build") && i.args.endsWith(copied),
        ),
        `the runtime stage copies ${copied} from the build`,
      );
    }
  });

  it(".ci/run runs the image smoke test after npm test", () => {
    const lines = readFileSync(join(packageRoot, ".ci/run"), "utf8").split("\n");
    const test = lines.indexOf("npm test");
    const smoke = lines.indexOf("node --import tsx scripts/image-smoke.ts");
    assert.ok(test >= 0 && smoke > test);
  });
});
