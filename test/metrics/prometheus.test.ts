// The real consumers of the scrape: promtool lints a live scrape, and a real Prometheus server
// scrapes the relay's loopback endpoint and answers queries with the relay's values.
// .ci/run installs Debian's `prometheus` package; on a machine without it these tests are skipped
// locally but fail in CI (CI=true), so a missing install step cannot pass silently.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectBinary, connectPhone, phoneConnId, useRelays } from '../helpers/relays.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../helpers/ports.js';

const hasPrometheus =
  spawnSync('prometheus', ['--version']).status === 0 && spawnSync('promtool', ['--version']).status === 0;
if (!hasPrometheus && process.env.CI) {
  throw new Error('prometheus/promtool not installed: .ci/run must install Debian package `prometheus`');
}

const { boot } = useRelays();
let prometheus: ChildProcess | undefined;
let workDir: string | undefined;

afterEach(async () => {
  prometheus?.kill('SIGKILL');
  prometheus = undefined;
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
});

describe.skipIf(!hasPrometheus)('real Prometheus', () => {
  it('promtool check metrics passes on a live scrape', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'lint-1');
    await connectPhone(relay, 'lint-1');
    const text = await (await fetch(relay.metricsUrl)).text();
    const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
    binary.close();
  });

  it('scrapes the loopback endpoint and answers queries with the relay values', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'prom-1');
    const phones = [await connectPhone(relay, 'prom-1'), await connectPhone(relay, 'prom-1')];
    await phoneConnId(phones[0]!, binary);

    workDir = mkdtempSync(join(tmpdir(), 'relay-prom-'));
    const metricsTarget = new URL(relay.metricsUrl).host;
    writeFileSync(
      join(workDir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: pyrycode-relay',
        '    static_configs:',
        `      - targets: ['${metricsTarget}']`,
        '',
      ].join('\n'),
    );
    const webPort = await freePort();
    const output: string[] = [];
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(workDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(workDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${webPort}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout?.on('data', (c: Buffer) => output.push(c.toString()));
    prometheus.stderr?.on('data', (c: Buffer) => output.push(c.toString()));

    const query = async (promql: string): Promise<number | undefined> => {
      try {
        const res = await fetch(`http://127.0.0.1:${webPort}/api/v1/query?query=${encodeURIComponent(promql)}`);
        if (!res.ok) return undefined;
        const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
        const first = body.data.result[0];
        return first === undefined ? undefined : Number(first.value[1]);
      } catch {
        return undefined;
      }
    };
    try {
      await waitFor(
        async () => (await query('up{job="pyrycode-relay"}')) === 1,
        20_000,
        'Prometheus to scrape the relay (up == 1)',
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\nprometheus output:\n${output.join('').slice(-3000)}`);
    }
    expect(await query('pyrycode_relay_connected_binaries')).toBe(1);
    expect(await query('pyrycode_relay_connected_phones')).toBe(2);
    expect(await query('pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"}')).toBe(1);
    expect(await query('pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="accept"}')).toBe(2);
    expect(await query('count(pyrycode_relay_ws_upgrade_attempts_total)')).toBe(12);
    expect(await query('count(pyrycode_relay_register_failures_total)')).toBe(4);
    // Prometheus ingested every sample line the endpoint serves (the golden test pins the set).
    const served = (await (await fetch(relay.metricsUrl)).text())
      .split('\n')
      .filter((l) => l.startsWith('pyrycode_relay_')).length;
    expect(served).toBeGreaterThan(21);
    expect(await query('scrape_samples_scraped{job="pyrycode-relay"}')).toBe(served);

    // A change on the relay shows up in the next scrapes.
    phones[1]!.close();
    await waitFor(
      async () => (await query('pyrycode_relay_connected_phones')) === 1,
      10_000,
      'phones gauge = 1 in Prometheus',
    );
    binary.close();
  }, 45_000);
});
