// `npm run bench [-- --quick]`: measures the relay against a bare ws forwarder and against itself
// with metrics off, all in one run so the ratios hold on a noisy machine. Every process talks over
// 127.0.0.1 only; every run is bounded in connections and time. Prints a table and writes
// bench/results/latest.json.

import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem, platform, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command, Topology } from './load.js';

const quick = process.argv.includes('--quick');
const RESULTS_START = '<!-- bench:results:start -->';
const RESULTS_END = '<!-- bench:results:end -->';
const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = join(here, '..', '..');

const PLAN = quick
  ? { warmupMs: 100, measureMs: 200, repeats: 1, idle: [1_000, 2_000], upgrades: 500, latencyMs: 1_500, scrapes: 30 }
  : {
      warmupMs: 500,
      measureMs: 2_000,
      repeats: 3,
      idle: [1_000, 5_000],
      upgrades: 2_000,
      latencyMs: 4_000,
      scrapes: 100,
    };

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

/** Starts a node script, pinned to one CPU when possible, with an IPC channel. */
function startNode(script: string, args: string[], cpu: number, stdout: 'pipe' | 'inherit'): ChildProcess {
  const nodeArgs = ['--expose-gc', script, ...args];
  if (!PIN) return fork(script, args, { execArgv: ['--expose-gc'], stdio: ['ignore', stdout, 'inherit', 'ipc'] });
  return spawn('taskset', ['-c', String(cpu), process.execPath, ...nodeArgs], {
    stdio: ['ignore', stdout, 'inherit', 'ipc'],
  });
}

function startServer(target: TargetName): Promise<Server> {
  const script = target === 'bare' ? join(here, 'bare-forwarder.js') : join(here, 'relay-process.js');
  const args = target === 'bare' ? ['0'] : ['0', target === 'relay_on' ? '0' : 'off'];
  const child = startNode(script, args, 0, 'pipe');
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

function request<T>(child: ChildProcess, message: unknown, timeoutMs = 90_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    child.once('message', (reply: unknown) => {
      clearTimeout(timer);
      const r = reply as { result?: T; error?: string };
      if (r.error !== undefined) reject(new Error(r.error));
      else resolve((r.result ?? reply) as T);
    });
    child.send(message as object);
  });
}

const load = (command: Command): Promise<Record<string, number>> => request(loadgen, command);

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
const began = performance.now();
const loadgen = startNode(join(here, 'load.js'), [], 1, 'inherit');
const results: Record<string, unknown> = {};
const table: string[][] = [];

// 1. Throughput: every scenario on all three targets, interleaved, median of the repeats.
const servers = new Map<TargetName, Server>();
for (const target of TARGETS) servers.set(target, await startServer(target));
const throughput: Record<string, Record<TargetName, number>> = {};
/** Server CPU microseconds per forwarded frame: independent of how fast the load generator is. */
const cpuPerFrame: Record<string, Record<TargetName, number>> = {};
for (const topo of TOPOLOGIES) {
  const samples = new Map<string, Record<TargetName, number[]>>();
  const cpuSamples = new Map<string, Record<TargetName, number[]>>();
  for (let repeat = 0; repeat < PLAN.repeats; repeat++) {
    for (const target of TARGETS) {
      const topology: Topology = {
        target: target === 'bare' ? 'bare' : 'relay',
        port: servers.get(target)!.port,
        ids: topo.ids,
        phonesPerId: topo.phonesPerId,
      };
      await load({ cmd: 'setup', topology });
      for (const size of FRAME_SIZES) {
        for (const direction of DIRECTIONS) {
          const key = `${direction} ${size} B, ${topo.name}`;
          const pid = servers.get(target)!.child.pid!;
          const cpu0 = cpuSeconds(pid);
          const run = await load({
            cmd: 'throughput',
            direction,
            frameBytes: size,
            warmupMs: PLAN.warmupMs,
            measureMs: PLAN.measureMs,
          });
          const cpuUs = ((cpuSeconds(pid) - cpu0) * 1e6) / Math.max(1, run.totalFrames!);
          const entry = samples.get(key) ?? { bare: [], relay_off: [], relay_on: [], relay_off_twin: [] };
          entry[target].push(run.framesPerSec!);
          samples.set(key, entry);
          const cpuEntry = cpuSamples.get(key) ?? { bare: [], relay_off: [], relay_on: [], relay_off_twin: [] };
          cpuEntry[target].push(cpuUs);
          cpuSamples.set(key, cpuEntry);
        }
      }
      await load({ cmd: 'teardown' });
    }
  }
  for (const [key, entry] of samples) {
    throughput[key] = {
      bare: median(entry.bare),
      relay_off: median(entry.relay_off),
      relay_on: median(entry.relay_on),
      relay_off_twin: median(entry.relay_off_twin),
    };
    const c = cpuSamples.get(key)!;
    cpuPerFrame[key] = {
      bare: median(c.bare),
      relay_off: median(c.relay_off),
      relay_on: median(c.relay_on),
      relay_off_twin: median(c.relay_off_twin),
    };
  }
}
results.throughput_frames_per_sec = throughput;
results.server_cpu_us_per_frame = cpuPerFrame;

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
for (let repeat = 0; repeat < PLAN.repeats; repeat++) {
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

// 3. Memory per idle connection, scrape cost and upgrade rate on a fresh relay with metrics on.
const memServer = await startServer('relay_on');
const memory: Record<string, number> = {};
const scrapeOnce = async (): Promise<{ ms: number; bytes: number }> => {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${memServer.metricsPort}/metrics`);
  const body = await res.arrayBuffer();
  return { ms: performance.now() - t0, bytes: body.byteLength };
};
const scrapeSeries = async (): Promise<{ medianMs: number; bytes: number; cpuMsPerScrape: number }> => {
  for (let i = 0; i < 5; i++) await scrapeOnce(); // warm-up
  const cpu0 = cpuSeconds(memServer.child.pid!);
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < PLAN.scrapes; i++) {
    const s = await scrapeOnce();
    times.push(s.ms);
    bytes = s.bytes;
  }
  const cpuMs = ((cpuSeconds(memServer.child.pid!) - cpu0) * 1000) / PLAN.scrapes;
  return { medianMs: median(times), bytes, cpuMsPerScrape: cpuMs };
};
const memStats = (): Promise<{ rss: number; heapUsed: number; live: number }> => request(memServer.child, 'mem');

const scrapeAt0 = await scrapeSeries();
await sleep(200);
const base = await memStats();
let scrapeAtMax = scrapeAt0;
let lastCount = 0;
for (const phones of PLAN.idle) {
  const ids = Math.ceil(phones / 16);
  await load({ cmd: 'teardown' });
  await load({ cmd: 'setup', topology: { target: 'relay', port: memServer.port, ids, phonesPerId: 16 } });
  await sleep(500);
  const after = await memStats();
  const connections = after.live;
  memory[`rss_bytes_per_connection_at_${phones}`] = (after.rss - base.rss) / connections;
  memory[`heap_bytes_per_connection_at_${phones}`] = (after.heapUsed - base.heapUsed) / connections;
  memory[`connections_at_${phones}`] = connections;
  lastCount = phones;
  scrapeAtMax = await scrapeSeries();
}
memory.rss_bytes_per_idle_phone = memory[`rss_bytes_per_connection_at_${lastCount}`]!;
memory.heap_bytes_per_idle_phone = memory[`heap_bytes_per_connection_at_${lastCount}`]!;
memory.idle_phones_measured = lastCount;
memory.process_rss_bytes = rssBytes(memServer.child.pid!);
results.memory = memory;
results.scrape = {
  ms_at_0: scrapeAt0.medianMs,
  [`ms_at_${lastCount}`]: scrapeAtMax.medianMs,
  ms_at_5000: scrapeAtMax.medianMs,
  connections_held: lastCount,
  bytes: scrapeAtMax.bytes,
  cpu_ms_per_scrape: scrapeAtMax.cpuMsPerScrape,
};
await load({ cmd: 'teardown' });

// Upgrade rate: phones (and their binaries) opened as fast as the relay accepts them.
const upgradeIds = Math.ceil(PLAN.upgrades / 16);
const upgrades = await load({
  cmd: 'connect',
  topology: { target: 'relay', port: memServer.port, ids: upgradeIds, phonesPerId: 16 },
  concurrency: 64,
});
results.upgrades = { accepted_per_sec: upgrades.perSec, connections: upgrades.connections };
await load({ cmd: 'teardown' });
await stop(memServer.child);
loadgen.kill('SIGTERM');

// ---------------------------------------------------------------------------------------------
const onVsOff = Object.values(throughput).map((t) => t.relay_on / t.relay_off);
const relayVsBare = throughput['p2b 128 B, 1 phone']!.relay_on / throughput['p2b 128 B, 1 phone']!.bare;
const relayVsBareAll = Object.entries(throughput)
  .filter(([k]) => k.includes('128 B'))
  .map(([, t]) => t.relay_on / t.bare);
// Per-core capacity: frames one core of the server carries = 1 / CPU per frame. It does not
// depend on how fast the load generator is, which limits frames/s for small frames.
const smallFrames = Object.entries(cpuPerFrame).filter(([k]) => k.includes('128 B'));
const aaVsOff = Object.values(throughput).map((t) => t.relay_off_twin / t.relay_off);
results.ratios = {
  metrics_on_vs_off: Math.min(...onVsOff),
  metrics_on_vs_off_median: median(onVsOff),
  a_a_noise_min: Math.min(...aaVsOff),
  a_a_noise_median: median(aaVsOff),
  metrics_on_vs_off_per_core: Math.min(...Object.values(cpuPerFrame).map((c) => c.relay_off / c.relay_on)),
  a_a_noise_per_core_min: Math.min(...Object.values(cpuPerFrame).map((c) => c.relay_off / c.relay_off_twin)),
  relay_vs_bare: Math.min(...relayVsBareAll),
  relay_vs_bare_1_phone_p2b: relayVsBare,
  relay_vs_bare_per_core: Math.min(...smallFrames.map(([, c]) => c.bare / c.relay_on)),
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

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));
table.push([
  'scenario',
  'bare',
  'relay (metrics off)',
  'relay (metrics on)',
  'on/off',
  'A/A',
  'on/bare',
  'CPU us/frame bare/off/on/off2',
]);
for (const [key, t] of Object.entries(throughput)) {
  const c = cpuPerFrame[key]!;
  table.push([
    key,
    fmt(t.bare),
    fmt(t.relay_off),
    fmt(t.relay_on),
    (t.relay_on / t.relay_off).toFixed(3),
    (t.relay_off_twin / t.relay_off).toFixed(3),
    (t.relay_on / t.bare).toFixed(3),
    `${c.bare.toFixed(2)} / ${c.relay_off.toFixed(2)} / ${c.relay_on.toFixed(2)} / ${c.relay_off_twin.toFixed(2)}`,
  ]);
}
const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
const line = (row: string[]): string =>
  row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
const out: string[] = [];
out.push(`pyrycode-relay bench (${quick ? 'quick' : 'full'}), ${process.version}, ${cpus().length} cpus`);
out.push('', 'Throughput (frames/s received):', line(table[0]!), ...table.slice(1).map(line));
out.push(
  '',
  `Round trip at ${rate}/s (128 B): bare p50 ${fmt(latency.bare!.p50Ms!)} ms p99 ${fmt(latency.bare!.p99Ms!)} ms p99.9 ${fmt(latency.bare!.p999Ms!)} ms; ` +
    `relay p50 ${fmt(latency.relay_on!.p50Ms!)} ms p99 ${fmt(latency.relay_on!.p99Ms!)} ms p99.9 ${fmt(latency.relay_on!.p999Ms!)} ms`,
  `Memory per idle connection at ${lastCount} phones: RSS ${fmt(memory.rss_bytes_per_idle_phone)} B, heap ${fmt(memory.heap_bytes_per_idle_phone)} B`,
  `Scrape: ${fmt(scrapeAt0.medianMs)} ms at 0 connections, ${fmt(scrapeAtMax.medianMs)} ms at ${lastCount} phones, ${scrapeAtMax.bytes} bytes, ${fmt(scrapeAtMax.cpuMsPerScrape)} ms CPU each`,
  `Upgrades: ${fmt(upgrades.perSec!)} connections/s accepted`,
  '',
  'Ratios (targets): metrics on/off ' +
    `${(results.ratios as Record<string, number>).metrics_on_vs_off.toFixed(3)} (>= 0.97), relay/bare 128 B ` +
    `${(results.ratios as Record<string, number>).relay_vs_bare.toFixed(3)} (>= 0.80), p99 relay/bare ` +
    `${(results.ratios as Record<string, number>).p99_relay_vs_bare.toFixed(3)} (<= 1.5), RSS/idle phone ` +
    `${fmt(memory.rss_bytes_per_idle_phone)} B (<= 16384), scrape ${fmt(scrapeAtMax.medianMs)} ms (< 5)`,
  `Took ${((performance.now() - began) / 1000).toFixed(1)} s.`,
);
process.stdout.write(out.join('\n') + '\n');
const resultsDir = join(repoRoot, 'bench', 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(join(resultsDir, 'latest.json'), JSON.stringify(results, null, 2) + '\n');

// A full run also refreshes the results section of docs/performance.md, so the page always shows
// the latest measured table (quick runs are too short to publish).
if (!quick) {
  const docPath = join(repoRoot, 'docs', 'performance.md');
  try {
    const doc = readFileSync(docPath, 'utf8');
    const start = doc.indexOf(RESULTS_START);
    const end = doc.indexOf(RESULTS_END);
    if (start >= 0 && end > start) {
      writeFileSync(docPath, doc.slice(0, start + RESULTS_START.length) + '\n' + markdownReport() + doc.slice(end));
    }
  } catch {
    // No doc to refresh (e.g. a trimmed checkout): latest.json is the record.
  }
}
process.exit(0);

function markdownReport(): string {
  const r = results as {
    ratios: Record<string, number>;
    memory: Record<string, number>;
    scrape: Record<string, number>;
    upgrades: Record<string, number>;
    meta: Record<string, unknown>;
  };
  const lines: string[] = [];
  const pass = (ok: boolean): string => (ok ? 'met' : '**missed**');
  // Two identical relays (A/A) differ by up to the noise floor; an on/off ratio above it is noise.
  const noisy = (ratio: number, floor: number): string =>
    ratio >= 0.97 ? 'met' : ratio >= floor ? '**missed**, inside the A/A noise floor (see below)' : '**missed**';
  lines.push(
    `Measured ${String(r.meta.date).slice(0, 10)} on ${String(r.meta.cpus)} × ${String(r.meta.cpu_model)}, Node ${String(r.meta.node)}, ` +
      `${String(r.meta.pinned)}; full run, median of ${PLAN.repeats} interleaved repeats, ${PLAN.measureMs / 1000} s each.`,
    '',
    '| Target | Measured | |',
    '|---|---|---|',
    `| metrics on ≥ 0.97 × metrics off (frames/s, lowest scenario) | ${r.ratios.metrics_on_vs_off!.toFixed(3)} (median ${r.ratios.metrics_on_vs_off_median!.toFixed(3)}); A/A noise floor: lowest ${r.ratios.a_a_noise_min!.toFixed(3)}, median ${r.ratios.a_a_noise_median!.toFixed(3)} | ${noisy(r.ratios.metrics_on_vs_off!, r.ratios.a_a_noise_min!)} |`,
    `| metrics on ≥ 0.97 × metrics off (per-core capacity, lowest scenario) | ${r.ratios.metrics_on_vs_off_per_core!.toFixed(3)}; A/A noise floor: lowest ${r.ratios.a_a_noise_per_core_min!.toFixed(3)} | ${noisy(r.ratios.metrics_on_vs_off_per_core!, r.ratios.a_a_noise_per_core_min!)} |`,
    `| relay ≥ 0.80 × bare forwarder (128 B frames/s, lowest scenario) | ${r.ratios.relay_vs_bare!.toFixed(3)} | ${pass(r.ratios.relay_vs_bare! >= 0.8)} |`,
    `| relay ≥ 0.80 × bare forwarder (128 B per-core capacity, lowest scenario) | ${r.ratios.relay_vs_bare_per_core!.toFixed(3)} | ${pass(r.ratios.relay_vs_bare_per_core! >= 0.8)} |`,
    `| p99 round trip at half load ≤ 1.5 × bare | ${r.ratios.p99_relay_vs_bare!.toFixed(3)} | ${pass(r.ratios.p99_relay_vs_bare! <= 1.5)} |`,
    `| memory per idle phone ≤ 16 KiB RSS at 5,000 | ${Math.round(r.memory.rss_bytes_per_idle_phone!).toLocaleString('en-US')} B at ${r.memory.idle_phones_measured} | ${pass(r.memory.rss_bytes_per_idle_phone! <= 16384)} |`,
    `| scrape < 5 ms with 5,000 connections, independent of connections | ${r.scrape.ms_at_5000!.toFixed(2)} ms (${r.scrape.ms_at_0!.toFixed(2)} ms at 0) | ${pass(r.scrape.ms_at_5000! < 5)} |`,
    '',
    '| Scenario | bare frames/s | relay, metrics off | relay, metrics on | on/off | A/A (off twin/off) | on/bare | server CPU µs/frame (bare / off / on / off twin) |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
  );
  for (const [key, t] of Object.entries(throughput)) {
    const c = cpuPerFrame[key]!;
    lines.push(
      `| ${key} | ${fmt(t.bare)} | ${fmt(t.relay_off)} | ${fmt(t.relay_on)} | ${(t.relay_on / t.relay_off).toFixed(3)} | ${(t.relay_off_twin / t.relay_off).toFixed(3)} | ${(t.relay_on / t.bare).toFixed(3)} | ${c.bare.toFixed(2)} / ${c.relay_off.toFixed(2)} / ${c.relay_on.toFixed(2)} / ${c.relay_off_twin.toFixed(2)} |`,
    );
  }
  lines.push(
    '',
    `Round trip (128 B, ${rate}/s): bare p50 ${fmt(latency.bare!.p50Ms!)} ms, p99 ${fmt(latency.bare!.p99Ms!)} ms, p99.9 ${fmt(latency.bare!.p999Ms!)} ms; ` +
      `relay p50 ${fmt(latency.relay_on!.p50Ms!)} ms, p99 ${fmt(latency.relay_on!.p99Ms!)} ms, p99.9 ${fmt(latency.relay_on!.p999Ms!)} ms.`,
    '',
    `Memory per idle connection: ${PLAN.idle.map((n) => `${fmt(r.memory[`rss_bytes_per_connection_at_${n}`]!)} B RSS / ${fmt(r.memory[`heap_bytes_per_connection_at_${n}`]!)} B heap at ${n} phones`).join('; ')}.`,
    `Scrape: ${r.scrape.bytes} bytes, ${fmt(r.scrape.cpu_ms_per_scrape!)} ms of relay CPU each. Upgrades: ${fmt(r.upgrades.accepted_per_sec!)} connections/s accepted.`,
    '',
  );
  return lines.join('\n');
}
