// A real cluster for tests: nats-server (JetStream, file storage in a temp dir) on 127.0.0.1 and
// built relay daemons (`node dist/src/main.js --cluster ...`) with short timings. Every process is
// stopped by its PID. Without nats-server the suites skip loudly; under CI=true they fail.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DaemonHandle, startReadyDaemon } from './daemon.js';
import { accepts, freePort } from './ports.js';
import { binaryHeaders, phoneHeaders, TestClient } from './relays.js';
import { sampleValue } from './scrape.js';
import { waitFor, withTimeout } from './wait.js';

/** True when nats-server is installed. Under CI it must be (.ci/run installs it). */
export function natsServerAvailable(): boolean {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env['CI'] === 'true')
      throw new Error('nats-server is not installed but CI=true: .ci/run must install it');
    console.warn('SKIPPING cluster tests: nats-server is not installed (apt-get install nats-server)');
    return false;
  }
}

export interface Nats {
  port: number;
  url: string;
  stop(): Promise<void>;
  /** Starts it again on the same port and storage directory. */
  start(): Promise<void>;
  dispose(): Promise<void>;
}

export async function startNats(): Promise<Nats> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pyry-nats-'));
  let child: ChildProcess | undefined;
  const nats: Nats = {
    port,
    url: `nats://127.0.0.1:${port}`,
    async start() {
      child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: 'ignore' });
      await waitFor(() => accepts(port, 500), 10_000, `nats-server on ${port}`, 50);
    },
    async stop() {
      const c = child;
      child = undefined;
      if (c === undefined || c.exitCode !== null) return;
      const exited = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGKILL');
      await withTimeout(exited, 5_000, 'nats-server exit');
    },
    async dispose() {
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await nats.start();
  return nats;
}

export interface Instance {
  id: string;
  port: number;
  wsUrl: string;
  metricsUrl: string;
  daemon: DaemonHandle;
  scrape(): Promise<string>;
  metric(series: string): Promise<number>;
}

/** Test timings: short grace, probe and lease (docs/operations.md "Cluster mode"). */
export const CLUSTER_TEST_ARGS = [
  '--grace-period',
  '2s',
  '--probe-timeout',
  '1s',
  '--cluster-lease',
  '3s',
  '--heartbeat-interval',
  '5s',
  '--max-connections',
  '500',
  '--rate-limit-burst',
  '1000',
];

/** Every instance started and not yet exited, so a test file can stop them all, also those a
 * failed `Promise.all` of several starts never handed back (one start failing left the others
 * running after the test run). */
const liveInstances = new Set<DaemonHandle>();

/** Stops (SIGKILL) every instance still running; for a test file's afterEach/afterAll. */
export async function stopInstances(): Promise<void> {
  const all = [...liveInstances];
  liveInstances.clear();
  await Promise.all(all.map((d) => d.stop()));
}

export async function startInstance(
  id: string,
  natsUrl: string,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<Instance> {
  const running = await startReadyDaemon(
    ['--cluster', natsUrl, '--instance-id', id, '--log-format', 'json', ...CLUSTER_TEST_ARGS, ...extraArgs],
    { env },
  );
  liveInstances.add(running.d);
  void running.d.exited.then(() => liveInstances.delete(running.d));
  const scrape = async (): Promise<string> => (await fetch(running.metrics)).text();
  return {
    id,
    port: running.port,
    wsUrl: running.ws,
    metricsUrl: running.metrics,
    daemon: running.d,
    scrape,
    metric: async (series) => sampleValue(await scrape(), series),
  };
}

const SERVER_ACCEPTS = 'pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="accept"}';
const CLIENT_ACCEPTS = 'pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="accept"}';

/** Connects a binary to `at` and waits until that instance accepted a claim. */
export async function binaryAt(
  at: Instance,
  serverId: string,
  options: { autoPong?: boolean } = {},
): Promise<TestClient> {
  const before = await at.metric(SERVER_ACCEPTS);
  const client = new TestClient(`${at.wsUrl}/v1/server`, binaryHeaders(serverId), options);
  await opened(client, at);
  await waitFor(
    async () => (await at.metric(SERVER_ACCEPTS)) > before || client.closed !== undefined,
    5_000,
    `claim of ${serverId} on ${at.id}`,
    20,
  );
  if (client.closed !== undefined) throw new Error(`binary closed: ${JSON.stringify(client.closed)}`);
  return client;
}

/** Connects a phone to `at`; resolves once it registered or was closed. */
export async function phoneAt(at: Instance, serverId: string): Promise<TestClient> {
  const before = await at.metric(CLIENT_ACCEPTS);
  const client = new TestClient(`${at.wsUrl}/v1/client`, phoneHeaders(serverId));
  await opened(client, at);
  await waitFor(
    async () => (await at.metric(CLIENT_ACCEPTS)) > before || client.closed !== undefined,
    5_000,
    `registration of a phone of ${serverId} on ${at.id}`,
    20,
  );
  return client;
}

/** Waits for the open; a refusal names the instance and shows the end of its log. */
async function opened(client: TestClient, at: Instance): Promise<void> {
  try {
    await client.open(5_000);
  } catch (err) {
    const tail = at.daemon.stderr().split('\n').slice(-15).join('\n');
    throw new Error(`${(err as Error).message} from instance ${at.id}; its log ends with:\n${tail}`);
  }
}

/** Sum of one series over every instance's scrape. */
export async function sumOf(instances: Instance[], series: string): Promise<number> {
  let total = 0;
  for (const instance of instances) total += await instance.metric(series);
  return total;
}

/** Plain HTTP status of an upgrade attempt (503 before the upgrade, or 101). */
export function upgradeStatusOf(at: Instance, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const client = new TestClient(`${at.wsUrl}${path}`, headers);
    client.ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      client.ws.terminate();
    });
    client.ws.once('open', () => {
      resolve(101);
      client.ws.close();
    });
  });
}
