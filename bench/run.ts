// `npm run bench [-- --quick]`: measures the relay against the best a plain ws forwarder can do
// and against itself with metrics off, all in one run so the ratios hold on a noisy machine. Every
// process talks over 127.0.0.x only; every run is bounded in connections and time. Prints a table,
// writes bench/results/latest.json and its chart (latest.svg); a full run also refreshes the
// results section and chart of docs/performance.md.
//
// Flags: --quick (CI: fewer repeats, shorter windows, no 100,000-phone scale run);
//        --only=scale (just the scale run, merged into the existing latest.json);
//        --only=idle (just the idle memory at 5,000 phones, relay and bare, printed; about 10 s);
//        --only=upgrades (just the upgrade-rate runs, merged into the existing latest.json);
//        --scale-phones=N (fewer phones in the scale run, for trying it out).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { cpus, platform, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cpuSeconds,
  loopbackBlock,
  median,
  request,
  serverCpuUs,
  settle,
  startReferenceServer,
} from './child-process.js';
import { GLIBC_TUNABLES, NODE_FLAGS } from '../src/node-flags.js';
import type { Command, Topology } from './load.js';
import { type BenchResults, chartSvg, markdownReport, refreshDocs } from './report.js';

const quick = process.argv.includes('--quick');
const onlyScale = process.argv.includes('--only=scale');
const onlyIdle = process.argv.includes('--only=idle');
const onlyUpgrades = process.argv.includes('--only=upgrades');
const scalePhonesArg = process.argv.find((a) => a.startsWith('--scale-phones='));
const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = join(here, '..', '..');

const PLAN = quick
  ? {
      warmupMs: 100,
      measureMs: 200,
      warmupRepeats: 1,
      repeats: 3,
      idle: [5_000],
      upgrades: 64 * 17,
      upgradeRepeats: 3,
      latencyMs: 1_500,
      latencyRepeats: 3,
      scrapes: 30,
      scalePhones: 0,
    }
  : {
      warmupMs: 300,
      measureMs: 1_000,
      warmupRepeats: 1,
      repeats: 9,
      idle: [1_000, 5_000],
      upgrades: 128 * 17,
      upgradeRepeats: 5,
      latencyMs: 4_000,
      latencyRepeats: 5,
      scrapes: 100,
      scalePhones: 100_000,
    };
if (scalePhonesArg !== undefined) PLAN.scalePhones = Number(scalePhonesArg.split('=')[1]);

/** The scale run: phones per server-id, heartbeat interval, how long the phones are held idle,
 * the source addresses connections come from (about 28,000 ephemeral ports each) and the file
 * limit given to the relay and the load generator. */
const SCALE = {
  phonesPerId: 16,
  heartbeatIntervalMs: 10_000,
  holdMs: 30_000,
  sourceAddresses: Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`),
  fileLimit: 250_000,
  loadHeapMb: 8_192,
  connectLimitMs: 300_000,
} as const;

/** relay_off_twin is a second, identical metrics-off relay: the A/A pair (relay_off vs
 * relay_off_twin) measures this machine's run-to-run noise, the floor under every other ratio. */
type TargetName = 'bare' | 'relay_off' | 'relay_on' | 'relay_off_twin';
const TARGETS: TargetName[] = ['bare', 'relay_off', 'relay_on', 'relay_off_twin'];
const TOPOLOGIES = [
  { name: '1 phone', ids: 1, phonesPerId: 1 },
  { name: '16 phones/1 id', ids: 1, phonesPerId: 16 },
  { name: '200 ids x 4 phones', ids: 200, phonesPerId: 4 },
] as const;
const FRAME_SIZES = [128, 16 * 1024] as const;
const DIRECTIONS = ['p2b', 'b2p'] as const;

interface Server {
  child: ChildProcess;
  port: number;
  metricsPort: number;
}

/** Servers run on CPU 0 and the load generator on CPU 1 (when taskset exists and there are two
 * CPUs), so the two never compete for a core and ratios from one run hold. */
const PIN = cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;

interface StartOptions {
  /** Raise the open-file limit to this first (a shell's `ulimit -n`; past the hard limit only
   * with the privilege to). */
  fileLimit?: number;
  heapMb?: number;
  /** Start with the daemon's Node flags (src/node-flags.ts): the servers (relay and bare alike),
   * not the load generator. */
  daemonFlags?: boolean;
}

/** Starts a node script, pinned to one CPU when possible, with an IPC channel. */
function startNode(
  script: string,
  args: string[],
  cpu: number,
  stdout: 'pipe' | 'inherit',
  options: StartOptions = {},
): ChildProcess {
  const nodeArgs = [
    ...(options.daemonFlags ? NODE_FLAGS : []),
    '--expose-gc',
    ...(options.heapMb ? [`--max-old-space-size=${options.heapMb}`] : []),
    script,
    ...args,
  ];
  let command = PIN ? ['taskset', '-c', String(cpu), process.execPath, ...nodeArgs] : [process.execPath, ...nodeArgs];
  if (options.fileLimit !== undefined) {
    // Without the privilege to go past the hard limit, settle for the hard limit.
    const raise = 'ulimit -n "$0" 2>/dev/null || ulimit -n "$(ulimit -H -n)"; exec "$@"';
    command = ['sh', '-c', raise, String(options.fileLimit), ...command];
  }
  // The daemon's environment too (GLIBC_TUNABLES), for the relay and the bare forwarder alike.
  const env = options.daemonFlags ? { ...process.env, GLIBC_TUNABLES } : process.env;
  return spawn(command[0]!, command.slice(1), { stdio: ['ignore', stdout, 'inherit', 'ipc'], env });
}

/** Starts a load generator on CPU 1 and waits until it listens for commands. */
function startLoad(options: StartOptions = {}): Promise<ChildProcess> {
  const child = startNode(join(here, 'load.js'), [], 1, 'inherit', options);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('load generator did not start')), 15_000);
    child.once('message', () => {
      clearTimeout(timer);
      resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`load generator exited with ${code}`)));
  });
}

function startServer(target: TargetName, options: StartOptions & { heartbeatMs?: number } = {}): Promise<Server> {
  const script = target === 'bare' ? join(here, 'bare-forwarder.js') : join(here, 'relay-process.js');
  const args =
    target === 'bare'
      ? ['0']
      : ['0', target === 'relay_on' ? '0' : 'off', ...(options.heartbeatMs ? [String(options.heartbeatMs)] : [])];
  const child = startNode(script, args, 0, 'pipe', { ...options, daemonFlags: true });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${target} did not start`)), 15_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      const m = /ready (\d+)(?: (\d+))?/.exec(chunk.toString());
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), metricsPort: Number(m[2] ?? 0) });
      }
    });
    child.once('exit', (code) => reject(new Error(`${target} exited with ${code}`)));
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** The soft open-file limit of a running process. */
function fileLimit(pid: number): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return Number(m?.[1] ?? 1024);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface MemStats {
  rss: number;
  heapUsed: number;
  live: number;
}
const memStats = (server: Server): Promise<MemStats> => request(server.child, 'mem');

/** One keep-alive connection to a server's /metrics that times each scrape from the request's
 * write to the last byte of the body: the 200 status line and a Content-Length are required. A
 * minimal client like Prometheus's own, so the figure is the server's: `fetch` (undici) added
 * 1.5-3.5 ms of its own per request on this machine (2.2-4.6 ms against 0.6-1.1 ms for the same
 * scrapes). */
async function rawScraper(port: number): Promise<{ scrape(): Promise<{ ms: number; bytes: number }>; close(): void }> {
  const socket = connectTcp({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  const REQUEST = 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
  return {
    scrape: () =>
      new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        let received = 0;
        const timer = setTimeout(() => finish(new Error('scrape: no complete answer within 10 s')), 10_000);
        const finish = (err?: Error, result?: { ms: number; bytes: number }): void => {
          clearTimeout(timer);
          socket.off('data', onData);
          if (err !== undefined) reject(err);
          else resolve(result!);
        };
        const onData = (chunk: Buffer): void => {
          chunks.push(chunk);
          received += chunk.length;
          const all = Buffer.concat(chunks, received);
          const end = all.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = all.toString('latin1', 0, end);
          const length = /\r\ncontent-length: *(\d+)/i.exec(head);
          if (!head.startsWith('HTTP/1.1 200 ')) {
            finish(new Error(`scrape: ${head.split('\r\n')[0]}`));
          } else if (length === null) {
            finish(new Error('scrape: no Content-Length'));
          } else if (received >= end + 4 + Number(length[1])) {
            finish(undefined, { ms: performance.now() - t0, bytes: Number(length[1]) });
          }
        };
        socket.on('data', onData);
        const t0 = performance.now();
        socket.write(REQUEST);
      }),
    close: () => socket.destroy(),
  };
}

async function scrapeSeries(
  server: Server,
  count: number,
): Promise<{ medianMs: number; fetchMedianMs: number; bytes: number; cpuMsPerScrape: number }> {
  const scraper = await rawScraper(server.metricsPort);
  try {
    for (let i = 0; i < 5; i++) await scraper.scrape(); // warm-up
    const cpu0 = cpuSeconds(server.child.pid!);
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const s = await scraper.scrape();
      times.push(s.ms);
      bytes = s.bytes;
    }
    const cpuMs = ((cpuSeconds(server.child.pid!) - cpu0) * 1000) / count;
    // The same scrapes through fetch, as measured before (client overhead included).
    const fetchTimes: number[] = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).arrayBuffer();
      fetchTimes.push(performance.now() - t0);
    }
    return { medianMs: median(times), fetchMedianMs: median(fetchTimes), bytes, cpuMsPerScrape: cpuMs };
  } finally {
    scraper.close();
  }
}

// ---------------------------------------------------------------------------------------------
const began = performance.now();
const resultsDir = join(repoRoot, 'bench', 'results');
const resultsPath = join(resultsDir, 'latest.json');
mkdirSync(resultsDir, { recursive: true });

if (onlyScale) {
  const previous = JSON.parse(readFileSync(resultsPath, 'utf8')) as BenchResults;
  previous.scale = await scaleRun(PLAN.scalePhones || 100_000);
  writeFileSync(resultsPath, JSON.stringify(previous, null, 2) + '\n');
  process.stdout.write(`Scale: ${JSON.stringify(previous.scale)}\n`);
  process.exit(0);
}

if (onlyIdle) {
  // Section 3's idle-memory part alone (about 30 s): fresh relay (metrics on) and bare forwarder.
  const idleLoad = await startLoad();
  const relay = await startServer('relay_on');
  const bare = await startServer('bare');
  const { memory } = await idleMemory(relay, bare, (command) => request(idleLoad, command), [5_000], PLAN.scrapes);
  await stop(relay.child);
  await stop(bare.child);
  idleLoad.kill('SIGTERM');
  const perConnection = (rss: number, heap: number): string => `${Math.round(rss)} B RSS / ${Math.round(heap)} B heap`;
  process.stdout.write(
    `Idle memory per connection at ${memory.idle_phones_measured} phones (${memory.connections_at_5000} connections): ` +
      `relay ${perConnection(memory.rss_bytes_per_idle_phone!, memory.heap_bytes_per_idle_phone!)}, ` +
      `bare ${perConnection(memory.bare_rss_bytes_per_idle_phone!, memory.bare_heap_bytes_per_idle_phone!)}\n`,
  );
  process.exit(0);
}

if (onlyUpgrades) {
  const relay = await startServer('relay_on');
  const bare = await startServer('bare');
  const upgradeLoad = await startLoad();
  const upgrades = await upgradeSection(upgradeLoad, relay, bare);
  await stop(relay.child);
  await stop(bare.child);
  upgradeLoad.kill('SIGTERM');
  const previous = (existsSync(resultsPath) ? JSON.parse(readFileSync(resultsPath, 'utf8')) : {}) as BenchResults;
  previous.upgrades = upgrades;
  if (previous.ratios !== undefined) {
    previous.ratios.upgrades_vs_bare = upgrades.accepted_per_sec! / upgrades.bare_accepted_per_sec!;
    previous.ratios.upgrades_per_core_vs_bare =
      upgrades.bare_server_cpu_us_per_upgrade! / upgrades.server_cpu_us_per_upgrade!;
  }
  writeFileSync(resultsPath, JSON.stringify(previous, null, 2) + '\n');
  process.stdout.write(`Upgrades: ${JSON.stringify(upgrades, null, 2)}\n`);
  process.exit(0);
}

const loadgen = await startLoad();
const load = (command: Command): Promise<Record<string, number>> => request(loadgen, command);
const results: Record<string, unknown> = {};

// 1. Throughput: every scenario on all four targets, interleaved, median of the repeats.
const servers = new Map<TargetName, Server>();
for (const target of TARGETS) servers.set(target, await startServer(target));
const throughput: Record<string, Record<TargetName, number>> = {};
/** Server CPU microseconds per forwarded frame: independent of how fast the load generator is. */
const cpuPerFrame: Record<string, Record<TargetName, number>> = {};
/** Every repeat's CPU per frame, in the order the repeats ran: the spread behind each median. */
const cpuPerFrameSamples: Record<string, Record<TargetName, number[]>> = {};
const emptySamples = (): Record<TargetName, number[]> => ({
  bare: [],
  relay_off: [],
  relay_on: [],
  relay_off_twin: [],
});
const medians = (entry: Record<TargetName, number[]>): Record<TargetName, number> => ({
  bare: median(entry.bare),
  relay_off: median(entry.relay_off),
  relay_on: median(entry.relay_on),
  relay_off_twin: median(entry.relay_off_twin),
});
for (const topo of TOPOLOGIES) {
  const samples = new Map<string, Record<TargetName, number[]>>();
  const cpuSamples = new Map<string, Record<TargetName, number[]>>();
  // Repeats below 0 are a warm-up pass, measured and dropped: a fresh process spends its first
  // seconds compiling (every target's first repeat cost up to twice the CPU per frame of the
  // ones after it).
  for (let repeat = -PLAN.warmupRepeats; repeat < PLAN.repeats; repeat++) {
    // Every target's connections are open at once (one load-generator slot each), so each cell
    // runs on the four targets back to back, within seconds of each other. This machine has slow
    // stretches of a few seconds (16 KiB frames then cost up to twice the CPU in whichever process
    // runs, the bare forwarder included, at the same system calls per frame): measured this close
    // together the four share them, where a whole target's block of cells at a time did not.
    for (const [slot, target] of TARGETS.entries()) {
      await load({
        cmd: 'setup',
        slot,
        topology: {
          target: target === 'bare' ? 'bare' : 'relay',
          port: servers.get(target)!.port,
          ids: topo.ids,
          phonesPerId: topo.phonesPerId,
        },
      });
    }
    let cell = 0;
    for (const size of FRAME_SIZES) {
      for (const direction of DIRECTIONS) {
        const key = `${direction} ${size} B, ${topo.name}`;
        // The order turns with each cell and repeat, so no target always runs first or last.
        const turn = repeat + PLAN.warmupRepeats + cell++;
        for (let i = 0; i < TARGETS.length; i++) {
          const slot = (i + turn) % TARGETS.length;
          const target = TARGETS[slot]!;
          const pid = servers.get(target)!.child.pid!;
          const cpu0 = cpuSeconds(pid);
          const run = await load({
            cmd: 'throughput',
            slot,
            direction,
            frameBytes: size,
            warmupMs: PLAN.warmupMs,
            measureMs: PLAN.measureMs,
          });
          const cpuUs = ((cpuSeconds(pid) - cpu0) * 1e6) / Math.max(1, run.totalFrames!);
          if (repeat < 0) continue;
          const entry = samples.get(key) ?? emptySamples();
          entry[target].push(run.framesPerSec!);
          samples.set(key, entry);
          const cpuEntry = cpuSamples.get(key) ?? emptySamples();
          cpuEntry[target].push(cpuUs);
          cpuSamples.set(key, cpuEntry);
        }
      }
    }
    await load({ cmd: 'teardown' });
  }
  for (const [key, entry] of samples) {
    throughput[key] = medians(entry);
    cpuPerFrame[key] = medians(cpuSamples.get(key)!);
    cpuPerFrameSamples[key] = cpuSamples.get(key)!;
  }
}
results.throughput_frames_per_sec = throughput;
results.server_cpu_us_per_frame = cpuPerFrame;
results.server_cpu_us_per_frame_samples = cpuPerFrameSamples;

// 2. Round-trip latency (phone -> binary -> echo -> phone, 128 B) at half of the measured
// round-trip peak; both targets run at the same rate: half of the lower of the two peaks.
const echoPeak: Record<string, number> = {};
for (const target of ['bare', 'relay_on'] as const) {
  await load({
    cmd: 'setup',
    topology: { target: target === 'bare' ? 'bare' : 'relay', port: servers.get(target)!.port, ids: 1, phonesPerId: 1 },
  });
  const run = await load({
    cmd: 'throughput',
    direction: 'echo',
    frameBytes: 128,
    warmupMs: PLAN.warmupMs,
    measureMs: PLAN.measureMs,
  });
  echoPeak[target] = run.framesPerSec!;
  await load({ cmd: 'teardown' });
}
const rate = Math.max(100, Math.floor(Math.min(echoPeak.bare!, echoPeak.relay_on!) / 2));
// Tail latency is sensitive to what else the machine does: interleave the repeats and keep, per
// target, the run with the median p99.
const latencyRuns: Record<string, Record<string, number>[]> = { bare: [], relay_on: [] };
for (let repeat = 0; repeat < PLAN.latencyRepeats; repeat++) {
  for (const target of ['bare', 'relay_on'] as const) {
    await load({
      cmd: 'setup',
      topology: {
        target: target === 'bare' ? 'bare' : 'relay',
        port: servers.get(target)!.port,
        ids: 1,
        phonesPerId: 1,
      },
    });
    latencyRuns[target]!.push(
      await load({ cmd: 'latency', ratePerSec: rate, frameBytes: 128, warmupMs: 500, measureMs: PLAN.latencyMs }),
    );
    await load({ cmd: 'teardown' });
  }
}
const latency: Record<string, Record<string, number>> = {};
for (const [target, runs] of Object.entries(latencyRuns)) {
  const sorted = [...runs].sort((a, b) => a.p99Ms! - b.p99Ms!);
  latency[target] = sorted[Math.floor(sorted.length / 2)]!;
}
results.round_trip_peak_per_sec = echoPeak;
results.latency_ms = latency;
for (const server of servers.values()) await stop(server.child);

// 3. Memory per idle connection, scrape cost and upgrade rate on a fresh relay with metrics on,
// with a fresh bare forwarder beside it for the same figures.
const memServer = await startServer('relay_on');
const bareServer = await startServer('bare');
const { memory, scrapeAt0, scrapeAtMax, lastCount } = await idleMemory(
  memServer,
  bareServer,
  load,
  PLAN.idle,
  PLAN.scrapes,
);
results.memory = memory;
results.scrape = {
  ms_at_0: scrapeAt0.medianMs,
  [`ms_at_${lastCount}`]: scrapeAtMax.medianMs,
  ms_at_5000: scrapeAtMax.medianMs,
  fetch_ms_at_0: scrapeAt0.fetchMedianMs,
  fetch_ms_at_5000: scrapeAtMax.fetchMedianMs,
  connections_held: lastCount,
  bytes: scrapeAtMax.bytes,
  cpu_ms_per_scrape: scrapeAtMax.cpuMsPerScrape,
};

results.upgrades = await upgradeSection(loadgen, memServer, bareServer);
await stop(memServer.child);
await stop(bareServer.child);
loadgen.kill('SIGTERM');

// 4. Scale (full run only): 100,000 idle phones on one relay process.
if (PLAN.scalePhones > 0) results.scale = await scaleRun(PLAN.scalePhones);

// ---------------------------------------------------------------------------------------------
const onVsOff = Object.values(throughput).map((t) => t.relay_on / t.relay_off);
const relayVsBare = throughput['p2b 128 B, 1 phone']!.relay_on / throughput['p2b 128 B, 1 phone']!.bare;
const relayVsBareAll = Object.entries(throughput)
  .filter(([k]) => k.includes('128 B'))
  .map(([, t]) => t.relay_on / t.bare);
// Per-core capacity: frames one core of the server carries = 1 / CPU per frame. It does not
// depend on how fast the load generator is, which limits frames/s for small frames.
const perCoreVsBare = (filter: string): number[] =>
  Object.entries(cpuPerFrame)
    .filter(([k]) => k.includes(filter))
    .map(([, c]) => c.bare / c.relay_on);
const aaVsOff = Object.values(throughput).map((t) => t.relay_off_twin / t.relay_off);
const upgradesResult = results.upgrades as Record<string, number>;
results.ratios = {
  metrics_on_vs_off: Math.min(...onVsOff),
  metrics_on_vs_off_median: median(onVsOff),
  a_a_noise_min: Math.min(...aaVsOff),
  a_a_noise_median: median(aaVsOff),
  metrics_on_vs_off_per_core: Math.min(...Object.values(cpuPerFrame).map((c) => c.relay_off / c.relay_on)),
  a_a_noise_per_core_min: Math.min(...Object.values(cpuPerFrame).map((c) => c.relay_off / c.relay_off_twin)),
  relay_vs_bare: Math.min(...relayVsBareAll),
  relay_vs_bare_1_phone_p2b: relayVsBare,
  relay_vs_bare_per_core: Math.min(...perCoreVsBare(' 128 B')),
  per_core_vs_bare_128_min: Math.min(...perCoreVsBare(' 128 B')),
  per_core_vs_bare_16k_min: Math.min(...perCoreVsBare(' 16384 B')),
  upgrades_vs_bare: upgradesResult.accepted_per_sec! / upgradesResult.bare_accepted_per_sec!,
  upgrades_per_core_vs_bare: upgradesResult.bare_server_cpu_us_per_upgrade! / upgradesResult.server_cpu_us_per_upgrade!,
  p99_relay_vs_bare: latency.relay_on!.p99Ms! / latency.bare!.p99Ms!,
};
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
results.meta = {
  mode: quick ? 'quick' : 'full',
  relay_version: pkg.version,
  node: process.version,
  platform: `${platform()} ${release()}`,
  cpus: cpus().length,
  cpu_model: cpus()[0]?.model ?? 'unknown',
  pinned: PIN ? 'servers on CPU 0, load generator on CPU 1 (taskset)' : 'not pinned',
  total_memory_bytes: totalmem(),
  plan: PLAN,
  seconds: (performance.now() - began) / 1000,
  date: new Date().toISOString(),
};

const final = results as unknown as BenchResults;
const ratios = final.ratios;
process.stdout.write(
  `pyrycode-relay bench (${quick ? 'quick' : 'full'}), ${process.version}, ${cpus().length} cpus\n\n` +
    markdownReport(final) +
    `\nRatios (targets): per-core relay/bare 128 B ${ratios.per_core_vs_bare_128_min!.toFixed(3)} (>= 0.95), ` +
    `16 KiB ${ratios.per_core_vs_bare_16k_min!.toFixed(3)} (>= 0.7), A/A floor ${ratios.a_a_noise_per_core_min!.toFixed(3)}, ` +
    `upgrades ${ratios.upgrades_vs_bare!.toFixed(3)} (>= 0.8), RSS/idle connection ${Math.round(memory.rss_bytes_per_idle_phone)} B (<= 10240)\n` +
    `Took ${((performance.now() - began) / 1000).toFixed(1)} s.\n`,
);
writeFileSync(resultsPath, JSON.stringify(results, null, 2) + '\n');
writeFileSync(join(resultsDir, 'latest.svg'), await chartSvg(final));
// A full run also refreshes the results section and chart of docs/performance.md, so the page
// always shows the latest measured figures (quick runs are too short to publish).
if (!quick) await refreshDocs(final, join(repoRoot, 'docs'));
process.exit(0);

/** Holds `phones` idle phones (16 per server-id, with their binaries) on one relay process with
 * heartbeats running, from several loopback source addresses, and measures what they cost. */
async function scaleRun(phones: number): Promise<Record<string, number>> {
  const relay = await startServer('relay_on', { fileLimit: SCALE.fileLimit, heartbeatMs: SCALE.heartbeatIntervalMs });
  const scaleLoad = await startLoad({ fileLimit: SCALE.fileLimit, heapMb: SCALE.loadHeapMb });
  const ask = (command: Command, timeoutMs: number): Promise<Record<string, number>> =>
    request(scaleLoad, command, timeoutMs);
  try {
    // Without the privilege to raise the file limit, hold what the lower limit allows (and say so:
    // phones_held is what was measured).
    const limit = Math.min(fileLimit(relay.child.pid!), fileLimit(scaleLoad.pid!));
    const ids = Math.floor(
      Math.min(phones, ((limit - 1_000) * SCALE.phonesPerId) / (SCALE.phonesPerId + 1)) / SCALE.phonesPerId,
    );
    if (ids * SCALE.phonesPerId < phones) {
      process.stderr.write(`scale: the open-file limit is ${limit}; holding ${ids * SCALE.phonesPerId} phones\n`);
    }
    await sleep(500);
    const base = await memStats(relay);
    const connect = await ask(
      {
        cmd: 'connect',
        topology: {
          target: 'relay',
          port: relay.port,
          ids,
          phonesPerId: SCALE.phonesPerId,
          localAddresses: [...SCALE.sourceAddresses],
        },
        concurrency: 64,
        limitMs: SCALE.connectLimitMs,
      },
      SCALE.connectLimitMs + 10_000,
    );
    await sleep(2_000);
    await request(relay.child, 'eld-start');
    const cpu0 = cpuSeconds(relay.child.pid!);
    await sleep(SCALE.holdMs);
    const idleCpu = (cpuSeconds(relay.child.pid!) - cpu0) / (SCALE.holdMs / 1000);
    const loop = await request<{ p99Ms: number; maxMs: number }>(relay.child, 'eld-stop');
    const scrape = await scrapeSeries(relay, 20);
    const after = await memStats(relay);
    await ask({ cmd: 'teardown', limitMs: 120_000 }, 130_000);
    return {
      phones_held: ids * SCALE.phonesPerId,
      connections_held: after.live,
      rss_bytes_per_phone: (after.rss - base.rss) / after.live,
      heap_bytes_per_phone: (after.heapUsed - base.heapUsed) / after.live,
      process_rss_bytes: after.rss,
      event_loop_p99_ms: loop.p99Ms,
      event_loop_max_ms: loop.maxMs,
      scrape_ms: scrape.medianMs,
      scrape_fetch_ms: scrape.fetchMedianMs,
      connect_seconds: connect.connectMs! / 1000,
      idle_cpu_cores: idleCpu,
      heartbeat_interval_ms: SCALE.heartbeatIntervalMs,
      hold_ms: SCALE.holdMs,
      source_addresses: SCALE.sourceAddresses.length,
    };
  } finally {
    scaleLoad.kill('SIGTERM');
    await stop(relay.child);
  }
}

/** Section 3's idle memory: `counts` idle phones in turn (16 per server-id, with their binaries)
 * on a fresh relay, then the last count on a fresh bare forwarder; per connection, from the
 * growth of RSS and of the heap after a forced GC. Scrapes the relay at 0 and at each count. */
async function idleMemory(
  memServer: Server,
  bareServer: Server,
  load: (command: Command) => Promise<Record<string, number>>,
  counts: readonly number[],
  scrapes: number,
): Promise<{
  memory: Record<string, number>;
  scrapeAt0: Awaited<ReturnType<typeof scrapeSeries>>;
  scrapeAtMax: Awaited<ReturnType<typeof scrapeSeries>>;
  lastCount: number;
}> {
  const memory: Record<string, number> = {};
  const scrapeAt0 = await scrapeSeries(memServer, scrapes);
  await sleep(200);
  const base = await memStats(memServer);
  let scrapeAtMax = scrapeAt0;
  let lastCount = 0;
  for (const phones of counts) {
    const ids = Math.ceil(phones / 16);
    await load({ cmd: 'teardown' });
    await load({
      cmd: 'connect',
      topology: { target: 'relay', port: memServer.port, ids, phonesPerId: 16 },
      concurrency: 64,
    });
    await sleep(500);
    const after = await memStats(memServer);
    const connections = after.live;
    memory[`rss_bytes_per_connection_at_${phones}`] = (after.rss - base.rss) / connections;
    memory[`heap_bytes_per_connection_at_${phones}`] = (after.heapUsed - base.heapUsed) / connections;
    memory[`connections_at_${phones}`] = connections;
    lastCount = phones;
    scrapeAtMax = await scrapeSeries(memServer, scrapes);
  }
  memory.rss_bytes_per_idle_phone = memory[`rss_bytes_per_connection_at_${lastCount}`]!;
  memory.heap_bytes_per_idle_phone = memory[`heap_bytes_per_connection_at_${lastCount}`]!;
  memory.idle_phones_measured = lastCount;
  memory.process_rss_bytes = rssBytes(memServer.child.pid!);
  await load({ cmd: 'teardown' });
  {
    // The same idle phones on the bare forwarder: what any ws server pays per connection.
    const bareBase = await memStats(bareServer);
    await load({
      cmd: 'connect',
      topology: { target: 'bare', port: bareServer.port, ids: Math.ceil(lastCount / 16), phonesPerId: 16 },
      concurrency: 64,
    });
    await sleep(500);
    const after = await memStats(bareServer);
    memory.bare_rss_bytes_per_idle_phone = (after.rss - bareBase.rss) / after.live;
    memory.bare_heap_bytes_per_idle_phone = (after.heapUsed - bareBase.heapUsed) / after.live;
    await load({ cmd: 'teardown' });
  }
  return { memory, scrapeAt0, scrapeAtMax, lastCount };
}

/** A server an upgrade-rate run connects to: its port, its CPU meter and how to wait until it
 * holds none of the previous run's connections. */
interface UpgradeTarget {
  name: 'relay' | 'bare' | 'reference';
  port: number;
  /** CPU time the server process has used so far, µs. */
  cpuUs(): Promise<number>;
  settle(): Promise<void>;
}

/**
 * Upgrade rate: binaries, then their phones, 64 handshakes in flight at any moment, against the
 * relay, the bare ws server (which accepts and holds) and, when RELAY_BENCH_REFERENCE_CMD names
 * one, an external reference server; interleaved, median of the repeats.
 *
 * Each repeat makes two runs per server. The raw client (bench/load.ts, handshake only) is cheap
 * enough that the server limits it: its accepted/s and the server's CPU per accepted upgrade (per
 * core capacity = 1 / CPU per upgrade) are the figures. The ws client run (a full client per
 * connection, as before) is kept beside them so figures stay comparable with earlier runs and the
 * Go reference's 3,841/s, which was measured that way.
 */
async function upgradeSection(loader: ChildProcess, relay: Server, bare: Server): Promise<Record<string, number>> {
  const load = (command: Command): Promise<Record<string, number>> => request(loader, command);
  const targets: UpgradeTarget[] = [
    { name: 'bare', port: bare.port, cpuUs: () => serverCpuUs(bare.child), settle: () => settle(bare.child) },
    { name: 'relay', port: relay.port, cpuUs: () => serverCpuUs(relay.child), settle: () => settle(relay.child) },
  ];
  const reference = await startReference();
  if (reference !== null) targets.push(reference.target);
  const ids = Math.ceil(PLAN.upgrades / 17);
  const series = (): Record<UpgradeTarget['name'], number[]> => ({ relay: [], bare: [], reference: [] });
  const raw = series();
  const ws = series();
  const cpu = series();
  let connections = 0;
  let runs = 0;
  /** Binaries first, then 16 phones each (the bare server takes the same connections), from 128
   * source addresses of their own for every run (at most 17 connections each, loopbackBlock). */
  const topologyOf = (t: UpgradeTarget): Topology => {
    const block = 20 + runs++;
    return {
      target: t.name === 'relay' ? 'relay' : 'bare',
      port: t.port,
      ids,
      phonesPerId: 16,
      localAddresses: loopbackBlock(block, 128),
    };
  };
  try {
    // Two discarded runs per server first: a fresh process pays its JIT warm-up on its first few
    // thousand handshakes (the first run after one discarded run still cost about twice the CPU
    // per upgrade of the runs after it).
    for (let warmup = 0; warmup < 2; warmup++) {
      for (const t of targets) {
        await load({ cmd: 'connect', topology: topologyOf(t), concurrency: 64, client: 'raw' });
        await load({ cmd: 'teardown' });
        await t.settle();
      }
    }
    for (let repeat = 0; repeat < PLAN.upgradeRepeats; repeat++) {
      for (const t of targets) {
        const cpu0 = await t.cpuUs();
        const run = await load({ cmd: 'connect', topology: topologyOf(t), concurrency: 64, client: 'raw' });
        const cpu1 = await t.cpuUs();
        connections = run.connections!;
        raw[t.name].push(run.perSec!);
        cpu[t.name].push((cpu1 - cpu0) / connections);
        await load({ cmd: 'teardown' });
        await t.settle();
        const full = await load({ cmd: 'connect', topology: topologyOf(t), concurrency: 64, client: 'ws' });
        ws[t.name].push(full.perSec!);
        await load({ cmd: 'teardown' });
        await t.settle();
      }
    }
  } finally {
    if (reference !== null) await stop(reference.child);
  }
  const out: Record<string, number> = {
    accepted_per_sec: median(raw.relay),
    bare_accepted_per_sec: median(raw.bare),
    server_cpu_us_per_upgrade: median(cpu.relay),
    bare_server_cpu_us_per_upgrade: median(cpu.bare),
    per_core_upgrades_per_sec: 1e6 / median(cpu.relay),
    bare_per_core_upgrades_per_sec: 1e6 / median(cpu.bare),
    ws_client_accepted_per_sec: median(ws.relay),
    bare_ws_client_accepted_per_sec: median(ws.bare),
    connections,
  };
  if (reference !== null) {
    out.reference_accepted_per_sec = median(raw.reference);
    out.reference_server_cpu_us_per_upgrade = median(cpu.reference);
    out.reference_ws_client_accepted_per_sec = median(ws.reference);
  }
  return out;
}

/** The optional external reference server as an upgrade target (child-process.ts). */
async function startReference(): Promise<{ child: ChildProcess; target: UpgradeTarget } | null> {
  const reference = await startReferenceServer(PIN);
  if (reference === null) return null;
  const pid = reference.child.pid!;
  return {
    child: reference.child,
    target: {
      name: 'reference',
      port: reference.port,
      cpuUs: async () => cpuSeconds(pid) * 1e6,
      // Nothing to ask it: give its closes a moment on the shared core.
      settle: () => sleep(1_000),
    },
  };
}
