// Log amplification (issue #14.2, docs/operations.md "Log volume"): an attacker's input must never
// cost more to log than to route.
// - Events a peer can repeat at will (malformed envelopes, unknown conn_ids, refused push wakes,
//   429s, ...) log their first LOG_FIRST_LINES_PER_KEY lines per connection / address, then only a
//   periodic `log_suppressed event=… count=…` line, counted exactly in
//   pyrycode_relay_log_lines_suppressed_total{event}.
// - When stderr backs up (a pipe nobody reads), lines are dropped instead of queued without bound,
//   counted exactly in pyrycode_relay_log_lines_dropped_total.
// Against the BUILT daemon (`npx tsc -p .` first) and, for the 429 flood, the in-process relay.

import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { LOG_FIRST_LINES_PER_KEY } from '../../src/log-throttle.js';
import { DAEMON_MAIN, type DaemonHandle, startReadyDaemon } from '../helpers/daemon.js';
import { figure } from '../helpers/figures.js';
import { httpGet } from '../helpers/http.js';
import { binaryHeaders, phoneHeaders, TestClient, useRelays } from '../helpers/relays.js';
import { sampleValue } from '../helpers/scrape.js';
import { sleep, waitFor } from '../helpers/wait.js';

beforeAll(() => {
  if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run npx tsc -p . first`);
});

const { boot, track } = useRelays();

interface Running {
  d: DaemonHandle;
  port: number;
  scrape(): Promise<string>;
  metric(series: string): Promise<number>;
}

async function startRunning(extra: string[] = []): Promise<Running> {
  const { d, port, metrics } = await startReadyDaemon(extra);
  const scrape = async (): Promise<string> => (await httpGet(metrics)).body;
  return { d, port, scrape, metric: async (series) => sampleValue(await scrape(), series) };
}

const linesOf = (text: string, event: string): string[] =>
  text.split('\n').filter((l) => l.includes(` msg=${event} `) || l.endsWith(` msg=${event}`));

/** Sum of the counts of every `log_suppressed` line for `event`. */
function suppressedInLog(text: string, event: string): number {
  let sum = 0;
  for (const line of linesOf(text, 'log_suppressed')) {
    const m = / event=(\S+) count=(\d+)/.exec(line);
    if (m?.[1] === event) sum += Number(m[2]);
  }
  return sum;
}

const SUPPRESSED = (event: string): string => `pyrycode_relay_log_lines_suppressed_total{event="${event}"}`;
const DROPPED = 'pyrycode_relay_log_lines_dropped_total';
const MALFORMED = 'pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="malformed_envelope"}';
const UNKNOWN = 'pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="unknown_conn_id"}';

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

async function claimedBinary(port: number, serverId: string): Promise<TestClient> {
  const binary = new TestClient(`ws://127.0.0.1:${port}/v1/server`, binaryHeaders(serverId));
  await binary.open();
  return binary;
}

describe('log amplification, built daemon', () => {
  it('a binary flooding malformed envelopes and unknown conn_ids: exactly the first lines, then suppressed summaries and exact counters', async () => {
    const r = await startRunning();
    const clients: TestClient[] = [];
    try {
      const binary = await claimedBinary(r.port, 'flood-1');
      track(binary);
      await r.d.waitStderr('msg=server_claimed server_id=flood-1', 5_000);
      const MALFORMED_COUNT = 5_000;
      const UNKNOWN_COUNT = 3_000;
      for (let i = 0; i < MALFORMED_COUNT; i++) binary.send('1');
      for (let i = 0; i < UNKNOWN_COUNT; i++) binary.send('{"conn_id":"client-nobody","frame":1}');
      await waitFor(async () => (await r.metric(UNKNOWN)) === UNKNOWN_COUNT, 20_000, 'every envelope read');
      expect(await r.metric(MALFORMED)).toBe(MALFORMED_COUNT);
      expect(await r.metric(SUPPRESSED('binary_forwarder_unmarshal_err'))).toBe(
        MALFORMED_COUNT - LOG_FIRST_LINES_PER_KEY,
      );
      expect(await r.metric(SUPPRESSED('binary_forwarder_unknown_conn_id'))).toBe(
        UNKNOWN_COUNT - LOG_FIRST_LINES_PER_KEY,
      );
      expect(await r.metric(DROPPED)).toBe(0);
      expect(linesOf(r.d.stderr(), 'binary_forwarder_unmarshal_err')).toHaveLength(LOG_FIRST_LINES_PER_KEY);
      expect(linesOf(r.d.stderr(), 'binary_forwarder_unknown_conn_id')).toHaveLength(LOG_FIRST_LINES_PER_KEY);

      // The binary is still served.
      expect(binary.closed).toBe(undefined);
      r.d.child.kill('SIGTERM');
      expect(await binary.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await r.d.waitExit(10_000)).toEqual({ code: 0, signal: null });
      // The drain flushes the summaries: every suppressed line is accounted for in the log.
      const err = r.d.stderr();
      expect(suppressedInLog(err, 'binary_forwarder_unmarshal_err')).toBe(MALFORMED_COUNT - LOG_FIRST_LINES_PER_KEY);
      expect(suppressedInLog(err, 'binary_forwarder_unknown_conn_id')).toBe(UNKNOWN_COUNT - LOG_FIRST_LINES_PER_KEY);
      const total = err.split('\n').filter((l) => l !== '').length;
      figure('log flood: stderr lines for 8,000 hostile envelopes', total);
      expect(total).toBeLessThan(40);
    } finally {
      for (const c of clients) c.ws.terminate();
      await r.d.stop();
    }
  }, 60_000);

  it('stderr nobody reads: a malformed-envelope flood keeps RSS flat', async () => {
    const r = await startRunning();
    const clients: TestClient[] = [];
    try {
      const binary = await claimedBinary(r.port, 'flood-rss');
      track(binary);
      await r.d.waitStderr('msg=server_claimed server_id=flood-rss', 5_000);
      r.d.child.stderr!.pause();
      await sleep(200);
      const before = rssBytes(r.d.child.pid!);
      const FLOOD = 300_000;
      for (let i = 0; i < FLOOD; i++) {
        binary.send('1');
        if (i % 20_000 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      await waitFor(async () => (await r.metric(MALFORMED)) === FLOOD, 60_000, 'the flood read', 100);
      const growth = rssBytes(r.d.child.pid!) - before;
      figure('log flood, stderr unread: relay RSS growth for 300,000 malformed envelopes (MiB)', growth / 2 ** 20);
      expect(growth).toBeLessThan(48 * 2 ** 20);
      expect(await r.metric(SUPPRESSED('binary_forwarder_unmarshal_err'))).toBe(FLOOD - LOG_FIRST_LINES_PER_KEY);
      r.d.child.stderr!.resume();
    } finally {
      for (const c of clients) c.ws.terminate();
      await r.d.stop();
    }
  }, 90_000);

  it('stderr nobody reads: lines beyond the pending bound are dropped and counted exactly', async () => {
    const r = await startRunning([
      '--rate-limit-burst',
      '100000',
      '--max-connections',
      '1000',
      '--max-phones-per-server',
      '1000',
    ]);
    const clients: TestClient[] = [];
    // Long ids make every phone_registered / phone_unregistered line about 800 bytes.
    const serverId = `churn-${'x'.repeat(250)}`;
    try {
      const binary = await claimedBinary(r.port, serverId);
      track(binary);
      await r.d.waitStderr(`msg=server_claimed server_id=${serverId}`, 5_000);
      r.d.child.stderr!.pause();
      await sleep(200);
      const CHURNS = 3_000;
      const CONCURRENCY = 20;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < CHURNS) {
          next++;
          const phone = new TestClient(
            `ws://127.0.0.1:${r.port}/v1/client`,
            phoneHeaders(serverId, { 'X-Pyrycode-Device-Name': 'd'.repeat(200) }),
          );
          await phone.open(10_000);
          phone.close(1000);
          await phone.waitClose(10_000);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      await waitFor(async () => (await r.metric('pyrycode_relay_connected_phones')) === 0, 10_000, 'phones gone');
      expect(await r.metric('pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="accept"}')).toBe(
        CHURNS,
      );
      const dropped = await r.metric(DROPPED);
      figure('log flood, stderr unread: lines dropped of 6,000', dropped);
      expect(dropped).toBeGreaterThan(0);
      r.d.child.stderr!.resume();
      await waitFor(
        () =>
          linesOf(r.d.stderr(), 'phone_registered').length + linesOf(r.d.stderr(), 'phone_unregistered').length ===
          2 * CHURNS - dropped,
        10_000,
        'the lines that were not dropped',
      );
      r.d.child.kill('SIGTERM');
      expect(await r.d.waitExit(10_000)).toEqual({ code: 0, signal: null });
      const seen =
        linesOf(r.d.stderr(), 'phone_registered').length + linesOf(r.d.stderr(), 'phone_unregistered').length;
      expect(seen + dropped).toBe(2 * CHURNS);
      // The relay said so once stderr drained.
      expect(r.d.stderr()).toMatch(/msg=log_dropped count=\d+/);
    } finally {
      for (const c of clients) c.ws.terminate();
      await r.d.stop();
    }
  }, 120_000);
});

describe('log amplification, in-process', () => {
  it('a 429 flood from one address logs the first lines, counts the rest', async () => {
    const r = await boot({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000 });
    const REQUESTS = 200;
    for (let i = 0; i < REQUESTS; i++) await httpGet(`${r.httpUrl}/v1/client`);
    expect(
      await r.metric('pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="reject_rate_limit"}'),
    ).toBe(REQUESTS - 1);
    expect(r.logs.filter((l) => l.msg === 'rate_limited')).toHaveLength(LOG_FIRST_LINES_PER_KEY);
    expect(await r.metric(SUPPRESSED('rate_limited'))).toBe(REQUESTS - 1 - LOG_FIRST_LINES_PER_KEY);
  });
});
