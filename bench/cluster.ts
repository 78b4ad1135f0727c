// `npm run bench:cluster [-- --quick]`: cluster mode's cost, measured in one run beside the
// same-instance path (docs/performance.md, "Cluster mode"). nats-server (JetStream) and two built
// relay daemons (`dist/src/main.js --cluster`) run on 127.0.0.1; the binary is always on A, the
// phone on A (same instance) or on B (cross instance). Measured per scenario and frame size:
// frames/s phone -> binary, relay CPU per frame (both daemons plus nats-server, from
// /proc/<pid>/stat) and the round-trip p50/p99 of a binary that echoes every frame. Bounded in
// frames and time; writes bench/results/cluster-latest.json.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { freePort } from '../test/helpers/ports.js';
import { sleep } from '../test/helpers/wait.js';

const quick = process.argv.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = join(here, '..', '..');
const MAIN = join(repoRoot, 'dist', 'src', 'main.js');
const PLAN = quick ? { frames: 5_000, rtt: 500 } : { frames: 50_000, rtt: 3_000 };
const SIZES = [128, 16 * 1024] as const;
/** Frames the phone keeps in flight before it waits for the binary to catch up. */
const WINDOW = 256;
const CLK_TCK = 100;
const STEP_TIMEOUT_MS = 120_000;

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/healthz`);
    ws.on('error', () => resolve(false));
    ws.on('unexpected-response', () => {
      ws.terminate();
      resolve(true);
    });
    ws.on('open', () => {
      ws.terminate();
      resolve(true);
    });
  });
}

function open(url: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

interface Pair {
  binary: WebSocket;
  phone: WebSocket;
  connId: string;
}

async function pair(binaryPort: number, phonePort: number, serverId: string): Promise<Pair> {
  const binary = await open(`ws://127.0.0.1:${binaryPort}/v1/server`, {
    'X-Pyrycode-Server': serverId,
    'X-Pyrycode-Version': 'bench',
    'User-Agent': 'bench',
  });
  await sleep(100);
  const phone = await open(`ws://127.0.0.1:${phonePort}/v1/client`, {
    'X-Pyrycode-Server': serverId,
    'X-Pyrycode-Token': 'bench',
    'User-Agent': 'bench',
  });
  const first = new Promise<string>((resolve) => binary.once('message', (d: Buffer) => resolve(d.toString())));
  // A phone is readable only after its registration; retry the hello until the binary sees it.
  let got: string | undefined;
  void first.then((m) => (got = m));
  await until('the first envelope', () => {
    if (got === undefined) phone.send('{"hello":1}');
    return got !== undefined;
  });
  const connId = (JSON.parse(got!) as { conn_id: string }).conn_id;
  await sleep(50);
  return { binary, phone, connId };
}

function frameOf(size: number, i: number): string {
  const head = `{"i":${i},"p":"`;
  return `${head}${'x'.repeat(Math.max(0, size - head.length - 2))}"}`;
}

/** Phone -> binary throughput: frames/s and relay CPU per frame (all relay-side processes). */
async function throughput(
  p: Pair,
  size: number,
  pids: number[],
): Promise<{ fps: number; cpuUsPerFrame: number; perProcessUs: number[] }> {
  let received = 0;
  const onMessage = (): void => {
    received++;
  };
  p.binary.on('message', onMessage);
  const before = pids.map(cpuSeconds);
  const t0 = performance.now();
  let sent = 0;
  while (sent < PLAN.frames) {
    while (sent < PLAN.frames && sent - received < WINDOW) p.phone.send(frameOf(size, sent++));
    await until('the binary to catch up', () => sent - received < WINDOW / 2 || received >= PLAN.frames);
  }
  await until('every frame', () => received >= PLAN.frames);
  const seconds = (performance.now() - t0) / 1000;
  const deltas = pids.map((pid, i) => cpuSeconds(pid) - before[i]!);
  const cpu = deltas.reduce((s, d) => s + d, 0);
  p.binary.off('message', onMessage);
  return {
    fps: PLAN.frames / seconds,
    cpuUsPerFrame: (cpu / PLAN.frames) * 1e6,
    perProcessUs: deltas.map((d) => +((d / PLAN.frames) * 1e6).toFixed(1)),
  };
}

/** Round trips: the phone sends one frame, the binary echoes it back, one at a time. */
async function roundTrips(p: Pair, size: number): Promise<{ p50Ms: number; p99Ms: number }> {
  const echo = (data: Buffer): void => {
    const env = JSON.parse(data.toString()) as { conn_id: string; frame: unknown };
    p.binary.send(JSON.stringify({ conn_id: env.conn_id, frame: env.frame }));
  };
  p.binary.on('message', echo);
  const samples: number[] = [];
  for (let i = 0; i < PLAN.rtt; i++) {
    const t0 = performance.now();
    const back = new Promise<void>((resolve) => p.phone.once('message', () => resolve()));
    p.phone.send(frameOf(size, i));
    await back;
    samples.push(performance.now() - t0);
  }
  p.binary.off('message', echo);
  samples.sort((a, b) => a - b);
  const at = (q: number): number => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
  return { p50Ms: at(0.5), p99Ms: at(0.99) };
}

interface Proc {
  child: ChildProcess;
  port: number;
}

async function main(): Promise<void> {
  const procs: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'pyry-bench-nats-'));
  try {
    const natsPort = await freePort();
    const nats = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', dir], {
      stdio: 'ignore',
    });
    procs.push(nats);
    await sleep(300);
    const daemon = async (id: string): Promise<Proc> => {
      const port = await freePort();
      const child = spawn(
        process.execPath,
        [
          MAIN,
          '--insecure-listen',
          `127.0.0.1:${port}`,
          '--metrics-listen',
          `127.0.0.1:${await freePort()}`,
          '--cluster',
          `nats://127.0.0.1:${natsPort}`,
          '--instance-id',
          id,
          '--max-connections',
          '100',
          '--rate-limit-burst',
          '1000',
        ],
        { stdio: 'ignore' },
      );
      procs.push(child);
      await until(`daemon ${id}`, () => accepts(port), 20_000);
      return { child, port };
    };
    const a = await daemon('a');
    const b = await daemon('b');
    const pids = [a.child.pid!, b.child.pid!, nats.pid!];
    const results: Record<string, unknown>[] = [];
    for (const size of SIZES) {
      for (const scenario of ['same', 'cross'] as const) {
        const p = await pair(a.port, scenario === 'same' ? a.port : b.port, `bench-${scenario}-${size}`);
        const t = await throughput(p, size, pids);
        const r = await roundTrips(p, size);
        results.push({
          scenario,
          frame_bytes: size,
          frames_per_s: Math.round(t.fps),
          cpu_us_per_frame: +t.cpuUsPerFrame.toFixed(1),
          cpu_us_a_b_nats: t.perProcessUs,
          rtt_p50_ms: +r.p50Ms.toFixed(3),
          rtt_p99_ms: +r.p99Ms.toFixed(3),
        });
        p.phone.terminate();
        p.binary.terminate();
        await sleep(200);
      }
    }
    const ratio = (size: number, key: string): number => {
      const same = results.find((r) => r['scenario'] === 'same' && r['frame_bytes'] === size)!;
      const cross = results.find((r) => r['scenario'] === 'cross' && r['frame_bytes'] === size)!;
      return +((cross[key] as number) / (same[key] as number)).toFixed(2);
    };
    const summary = {
      quick,
      frames: PLAN.frames,
      round_trips: PLAN.rtt,
      results,
      ratios: {
        // Per-core capacity: frames per CPU-second of all relay-side processes.
        capacity_cross_vs_same_128:
          ratio(128, 'cpu_us_per_frame') === 0 ? 0 : +(1 / ratio(128, 'cpu_us_per_frame')).toFixed(2),
        p99_cross_vs_same_128: ratio(128, 'rtt_p99_ms'),
        capacity_cross_vs_same_16k: +(1 / ratio(16 * 1024, 'cpu_us_per_frame')).toFixed(2),
        p99_cross_vs_same_16k: ratio(16 * 1024, 'rtt_p99_ms'),
      },
    };
    console.log('scenario  frame   frames/s  CPU µs/frame (A+B+nats)  RTT p50 ms  RTT p99 ms  [A, B, nats]');
    for (const r of results) {
      console.log(
        `${String(r['scenario']).padEnd(9)} ${String(r['frame_bytes']).padStart(5)}  ${String(r['frames_per_s']).padStart(9)}  ${String(r['cpu_us_per_frame']).padStart(23)}  ${String(r['rtt_p50_ms']).padStart(10)}  ${String(r['rtt_p99_ms']).padStart(10)}  ${JSON.stringify(r['cpu_us_a_b_nats'])}`,
      );
    }
    console.log(JSON.stringify(summary.ratios));
    mkdirSync(join(repoRoot, 'bench', 'results'), { recursive: true });
    writeFileSync(join(repoRoot, 'bench', 'results', 'cluster-latest.json'), `${JSON.stringify(summary, null, 2)}\n`);
  } finally {
    for (const p of procs.reverse()) p.kill('SIGKILL');
    await sleep(200);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
