// docs/ops/pyrycode-relay.service, checked by systemd's own tools and by the relay's own parsers:
// - `systemd-analyze verify` accepts it without a single warning about the unit;
// - `systemd-analyze security --offline=true` rates its exposure "OK" or better;
// - its command line is one the relay accepts in production mode, its capabilities pass the
//   relay's production preflight, its stop timeout outlasts the drain, and its metrics address is
//   the one docs/ops/prometheus.yml scrapes.
// systemd-analyze comes from Debian's `systemd` package: skipped locally without it, a failure in CI.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { formatListenAddress } from '../../src/config/addresses.js';
import { parseConfig } from '../../src/config/parse.js';
import { parseDuration } from '../../src/duration.js';
import { preflight } from '../../src/config/preflight.js';
import { NODE_FLAGS } from '../../src/node-flags.js';

const UNIT_PATH = fileURLToPath(new URL('../../docs/ops/pyrycode-relay.service', import.meta.url));
const PROMETHEUS_YML = fileURLToPath(new URL('../../docs/ops/prometheus.yml', import.meta.url));
const UNIT_NAME = 'pyrycode-relay.service';
const SPAWN_TIMEOUT_MS = 15_000;
/** main.ts bounds the final OTLP export by min(5 s, --shutdown-timeout). */
const TELEMETRY_FLUSH_MAX_MS = 5_000;

const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version'], { timeout: SPAWN_TIMEOUT_MS }).status === 0;

function run(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('systemd-analyze', args, { encoding: 'utf8', timeout: SPAWN_TIMEOUT_MS });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** `systemd-analyze verify` exits 0 even when it ignores a bad setting; what it says about the
 * unit file is what matters. */
function verify(path: string): { status: number | null; complaints: string[]; output: string } {
  const r = run(['verify', path]);
  const complaints = r.output.split('\n').filter((l) => l.includes(UNIT_NAME));
  return { status: r.status, complaints, output: r.output };
}

// ---- A small reader for the unit file (sections, repeated keys, backslash continuations) ----

type Unit = Map<string, Map<string, string[]>>;

function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header !== null) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (kv === null || section === undefined) throw new Error(`not a unit file line: ${raw}`);
    const values = section.get(kv[1]!) ?? [];
    values.push(kv[2]!.trim().replace(/\s+/g, ' '));
    section.set(kv[1]!, values);
  }
  return unit;
}

const unit = parseUnit(readFileSync(UNIT_PATH, 'utf8'));
const service = unit.get('Service') ?? new Map<string, string[]>();
/** The last value of a setting (what systemd uses for single-valued settings). */
const setting = (key: string): string | undefined => service.get(key)?.at(-1);

/** systemd time spans as the unit uses them: "30s", "2min", "1m30s", or plain seconds. */
function systemdSeconds(value: string): number {
  if (/^\d+$/.test(value)) return Number(value);
  let total = 0;
  const units: Record<string, number> = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600 };
  for (const m of value.matchAll(/(\d+)\s*(ms|sec|s|min|m|h)/g)) total += Number(m[1]) * units[m[2]!]!;
  return total;
}

const execStart = setting('ExecStart') ?? '';
const [nodeBinary, ...afterNode] = execStart.split(' ');
/** Node's own flags come between the binary and the script (src/node-flags.ts). */
const nodeFlags = afterNode.slice(
  0,
  afterNode.findIndex((t) => !t.startsWith('--')),
);
const [script, ...relayArgs] = afterNode.slice(nodeFlags.length);
const environment = Object.fromEntries(
  (service.get('Environment') ?? []).map((e) => {
    const eq = e.indexOf('=');
    return [e.slice(0, eq), e.slice(eq + 1)];
  }),
);

let workDir = '';
afterAll(() => {
  if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
});

describe('CI prerequisites', () => {
  it('systemd-analyze is installed when CI is set', () => {
    if (!process.env.CI) return;
    expect(hasSystemdAnalyze, '.ci/run must install the Debian package `systemd`').toBe(true);
  });
});

describe.skipIf(!hasSystemdAnalyze)('docs/ops/pyrycode-relay.service with systemd-analyze', () => {
  it('systemd-analyze verify passes without a warning about the unit', () => {
    const r = verify(UNIT_PATH);
    expect(r.status, r.output).toBe(0);
    expect(r.complaints, r.output).toEqual([]);
  });

  it('the verify check is not vacuous: it reports a setting systemd would ignore, and a missing binary', () => {
    workDir = mkdtempSync(join(tmpdir(), 'relay-ops-systemd-'));
    const text = readFileSync(UNIT_PATH, 'utf8');
    const badTime = join(workDir, 'bad-time', UNIT_NAME);
    const badExec = join(workDir, 'bad-exec', UNIT_NAME);
    for (const [path, from, to] of [
      [badTime, 'TimeoutStopSec=30s', 'TimeoutStopSec=thirty'],
      [badExec, `ExecStart=${nodeBinary}`, 'ExecStart=/nonexistent/node'],
    ] as const) {
      expect(text).toContain(from);
      spawnSync('mkdir', ['-p', join(path, '..')], { timeout: SPAWN_TIMEOUT_MS });
      writeFileSync(path, text.replace(from, to));
    }
    expect(verify(badTime).complaints.join('\n')).toMatch(/TimeoutStopSec|time value/i);
    const exec = verify(badExec);
    expect(exec.status !== 0 || exec.complaints.length > 0, exec.output).toBe(true);
  });

  it('systemd-analyze security rates the sandbox OK or better (exposure at most 2.0)', () => {
    const r = run(['security', '--offline=true', '--no-pager', UNIT_PATH]);
    expect(r.status, r.output).toBe(0);
    const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)/.exec(r.output);
    expect(m, r.output).not.toBeNull();
    expect(Number(m![1]), r.output.slice(-2000)).toBeLessThanOrEqual(2.0);
  });
});

describe('docs/ops/pyrycode-relay.service content', () => {
  it('runs as an unprivileged user holding CAP_NET_BIND_SERVICE and nothing else', () => {
    const user = setting('User');
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    expect(setting('DynamicUser')).toBe('yes');
    expect(setting('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(setting('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(setting('NoNewPrivileges')).toBe('yes');
    expect(setting('ProtectSystem')).toBe('strict');
    // V8's JIT needs writable executable memory: this setting would crash the relay.
    expect(service.has('MemoryDenyWriteExecute')).toBe(false);
  });

  it("starts the relay with a command line it accepts in production mode, and that systemd's capabilities pass its preflight", () => {
    expect(nodeBinary).toMatch(/^\/\S+\/node$/);
    expect(nodeFlags).toEqual(NODE_FLAGS);
    expect(script).toBe('/opt/pyrycode-relay/dist/src/main.js');
    expect(environment.PYRYCODE_RELAY_PRODUCTION).toBe('1');
    const outcome = parseConfig(relayArgs, environment, '/nonexistent');
    expect(outcome.kind, JSON.stringify(outcome)).toBe('run');
    if (outcome.kind !== 'run') return;
    expect(outcome.config.production).toBe(true);
    expect(outcome.config.mode).toBe('tls');
    // The TLS files are the credentials systemd hands over (LoadCredential= + the %d specifier).
    const credentials = (service.get('LoadCredential') ?? []).map((c) => c.split(':')[0]);
    expect(outcome.config.tlsCertFile).toBe(`%d/${credentials[0]}`);
    expect(outcome.config.tlsKeyFile).toBe(`%d/${credentials[1]}`);
    // Non-root uid with only the ambient CAP_NET_BIND_SERVICE (bit 10): what the unit gives.
    const facts = { euid: 61_234, procStatus: 'Name:\tnode\nCapEff:\t0000000000000400\n', platform: 'linux' as const };
    expect(preflight(outcome.config, facts)).toBeNull();
    // ...and the same check refuses a unit that forgot the bounding set (a root-like mask).
    expect(preflight(outcome.config, { ...facts, procStatus: 'CapEff:\t000001ffffffffff\n' })?.event).toMatch(
      /capabilities/,
    );
    expect(preflight(outcome.config, { ...facts, euid: 0 })?.event).toMatch(/root/);
  });

  it('stops with SIGTERM and a stop timeout above the whole drain', () => {
    expect(setting('KillSignal')).toBe('SIGTERM');
    const outcome = parseConfig(relayArgs, environment, '/nonexistent');
    if (outcome.kind !== 'run') throw new Error(JSON.stringify(outcome));
    const { shutdownTimeoutMs } = outcome.config;
    const drainDelayMs = (outcome.config as { drainDelayMs?: number }).drainDelayMs ?? 0;
    expect(shutdownTimeoutMs).toBe(parseDuration('10s'));
    const worstStopMs = drainDelayMs + shutdownTimeoutMs + Math.min(TELEMETRY_FLUSH_MAX_MS, shutdownTimeoutMs);
    const timeoutStopMs = systemdSeconds(setting('TimeoutStopSec') ?? '') * 1000;
    expect(timeoutStopMs).toBeGreaterThan(worstStopMs);
    // Not so long that a wedged process holds a restart for minutes.
    expect(timeoutStopMs).toBeLessThanOrEqual(60_000);
  });

  it('restarts after a failure, but not after a refused configuration (exit 2)', () => {
    expect(setting('Restart')).toBe('on-failure');
    expect(systemdSeconds(setting('RestartSec') ?? '')).toBeGreaterThan(0);
    expect((setting('RestartPreventExitStatus') ?? '').split(' ')).toContain('2');
    expect(unit.get('Unit')?.get('StartLimitBurst')?.[0]).toMatch(/^\d+$/);
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('serves /metrics on the loopback address docs/ops/prometheus.yml scrapes', () => {
    const outcome = parseConfig(relayArgs, environment, '/nonexistent');
    if (outcome.kind !== 'run') throw new Error(JSON.stringify(outcome));
    expect(outcome.config.metricsListen).not.toBeNull();
    const address = formatListenAddress(outcome.config.metricsListen!);
    const config = readFileSync(PROMETHEUS_YML, 'utf8').replace(/^\s*#.*$/gm, '');
    const targets = [...config.matchAll(/targets:\s*\[([^\]]*)\]/g)].flatMap((m) =>
      m[1]!.split(',').map((t) => t.trim().replace(/^['"]|['"]$/g, '')),
    );
    expect(targets).toEqual([address]);
    // Not Prometheus's own default port.
    expect(address).not.toMatch(/:9090$/);
  });
});
