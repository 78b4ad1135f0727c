// Reliability: shutdown under load (issue #5), against the BUILT daemon (dist/src/main.js; `npm
// test` builds first). SIGTERM while frames flow both ways: every peer gets 1001 "shutting down",
// the process exits 0 within --shutdown-timeout, and no frame is lost silently in the middle of a
// stream: what each phone received is a gap-free prefix of what the binary sent it (then the 1001),
// and what the binary received from each phone is a gap-free prefix of what that phone sent,
// followed by the phone's close notice and then the binary's own 1001.
// Also: a peer that never answers the close cannot hold the exit past the deadline, and neither
// may a client that keeps a plain HTTP request open (stalled headers or a trickled body).

import { connect as netConnect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { type DaemonHandle, type RunningDaemon, withDaemon } from '../helpers/daemon.js';
import { figure } from '../helpers/figures.js';
import { httpGet } from '../helpers/http.js';
import { otlpSum } from '../helpers/otlp-receiver.js';
import { binaryHeaders, phoneHeaders, TestClient } from '../helpers/relays.js';
import { B2P, P2B, relaySamples } from '../helpers/scrape.js';
import { RawWs } from '../helpers/ws-frames.js';
import { startOtlpReceiver } from '../helpers/otlp-receiver.js';
import { sleep, waitFor } from '../helpers/wait.js';

const daemons = withDaemon();

/** The daemon with this shutdown timeout, JSON logs and room for the test's connections. */
function boot(shutdownTimeout: string, extra: string[] = [], env: Record<string, string> = {}): Promise<RunningDaemon> {
  return daemons.start(
    [
      '--shutdown-timeout',
      shutdownTimeout,
      '--log-format',
      'json',
      '--max-connections',
      '200',
      '--rate-limit-burst',
      '1000',
      ...extra,
    ],
    { env },
  );
}

function events(d: DaemonHandle): { msg: string; [k: string]: unknown }[] {
  return d
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string });
}

/** Resolves with ms until exit, or -1 if the daemon is still running after `ms`. */
async function exitWithin(d: DaemonHandle, t0: number, ms: number): Promise<{ after: number; code: number | null }> {
  const exit = await Promise.race([d.exited, sleep(ms).then(() => null)]);
  if (exit === null) return { after: -1, code: null };
  return { after: Date.now() - t0, code: exit.code };
}

describe('SIGTERM while frames flow', () => {
  it('1 binary + 6 phones streaming both ways: all get 1001 "shutting down", exit 0 within --shutdown-timeout, every stream is a gap-free prefix, and the final OTLP export accounts for every frame', async () => {
    // The final OTLP flush (after the drain) carries the relay's last counters: the ledger
    // received = forwarded + dropped, and forwarded = what the clients really got.
    const receiver = await startOtlpReceiver();
    const {
      d,
      ws: url,
      metricsPort,
    } = await boot('5s', [], {
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_METRIC_EXPORT_INTERVAL: '600000',
    });
    const clients: TestClient[] = [];
    try {
      const binary = new TestClient(`${url}/v1/server`, binaryHeaders('sd-load'));
      clients.push(binary);
      await binary.open();
      // Claimed once phones can register (a phone before the claim gets 4404): retry briefly.
      const phones: { c: TestClient; id: string }[] = [];
      for (let i = 0; i < 6; i++) {
        let c!: TestClient;
        await waitFor(
          async () => {
            c = new TestClient(`${url}/v1/client`, phoneHeaders('sd-load'));
            clients.push(c);
            await c.open();
            await sleep(30);
            return c.closed === undefined;
          },
          5_000,
          'phone registration',
        );
        const n = binary.messages.length;
        c.send(`{"hello":${i}}`);
        const env = JSON.parse(await binary.message(n + 1)) as { conn_id: string };
        phones.push({ c, id: env.conn_id });
      }
      const helloCount = binary.messages.length;

      // Stream: the binary sends {"s":n} to every phone, every phone sends {"u":n} to the binary.
      let flowing = true;
      const sentDown = phones.map(() => 0);
      const sentUp = phones.map(() => 0);
      const pad = 'q'.repeat(200);
      const down = (async () => {
        while (flowing && binary.closed === undefined) {
          if (binary.ws.bufferedAmount < 512 * 1024) {
            phones.forEach((p, i) => {
              binary.send(`{"conn_id":"${p.id}","frame":{"s":${sentDown[i]!++},"p":"${pad}"}}`);
            });
          } else {
            await sleep(1);
          }
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const up = phones.map(async (p, i) => {
        while (flowing && p.c.closed === undefined) {
          if (p.c.ws.bufferedAmount < 128 * 1024) p.c.send(`{"u":${sentUp[i]!++}}`);
          else await sleep(1);
          await new Promise((resolve) => setImmediate(resolve));
        }
      });
      await sleep(1_000);
      const lastScrape = relaySamples((await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body);
      const t0 = Date.now();
      d.child.kill('SIGTERM');

      const closes = await Promise.all([binary, ...phones.map((p) => p.c)].map((c) => c.waitClose(8_000)));
      flowing = false;
      await Promise.all([down, ...up]);
      const exit = await exitWithin(d, t0, 8_000);
      figure('shutdown under load: exit after SIGTERM (ms, --shutdown-timeout 5s)', exit.after);
      expect(exit.code).toBe(0);
      expect(exit.after).toBeGreaterThanOrEqual(0);
      expect(exit.after).toBeLessThan(5_000 + 1_000);
      for (const c of closes) expect(c).toEqual({ code: 1001, reason: 'shutting down' });

      // Phones: a gap-free prefix 0..k-1 of what the binary sent each of them.
      const received = phones.map((p) => p.c.messages.map((m) => (JSON.parse(m) as { s: number }).s));
      phones.forEach((_, i) => {
        const got = received[i]!;
        expect(got, `phone ${i}: gap-free prefix`).toEqual(Array.from({ length: got.length }, (_, k) => k));
        expect(got.length).toBeLessThanOrEqual(sentDown[i]!);
      });
      // Binary: per phone a gap-free prefix of {"u":n}, then exactly one 1001 close notice after it.
      const upGot = phones.map(() => [] as number[]);
      const noticeAt = phones.map(() => -1);
      binary.messages.slice(helloCount).forEach((m, idx) => {
        const env = JSON.parse(m) as { conn_id: string; frame?: { u: number }; close_code?: number };
        const i = phones.findIndex((p) => p.id === env.conn_id);
        expect(i, `envelope for a known phone: ${m.slice(0, 80)}`).toBeGreaterThanOrEqual(0);
        if (env.frame !== undefined) {
          expect(noticeAt[i], `frame from phone ${i} after its close notice`).toBe(-1);
          upGot[i]!.push(env.frame.u);
        } else {
          expect(env).toEqual({ conn_id: phones[i]!.id, close_code: 1001 });
          expect(noticeAt[i], 'one notice per phone').toBe(-1);
          noticeAt[i] = idx;
        }
      });
      phones.forEach((_, i) => {
        expect(upGot[i], `binary got a gap-free prefix from phone ${i}`).toEqual(
          Array.from({ length: upGot[i]!.length }, (_, k) => k),
        );
        expect(noticeAt[i], `close notice for phone ${i}`).toBeGreaterThanOrEqual(0);
      });

      // The last scrape is consistent with what the clients saw (counted = written to the socket).
      const deliveredDown = received.reduce((a, r) => a + r.length, 0);
      const deliveredUp = upGot.reduce((a, r) => a + r.length, 0) + 6;
      expect(lastScrape.get(B2P)!).toBeLessThanOrEqual(deliveredDown);
      expect(lastScrape.get(P2B)!).toBeLessThanOrEqual(deliveredUp);
      const ev = events(d);
      expect(ev.some((e) => e.msg === 'shutdown complete')).toBe(true);
      expect(ev.some((e) => e.msg === 'drain incomplete')).toBe(false);
      expect(ev.filter((e) => e.msg === 'phone_unregistered')).toHaveLength(6);
      expect(ev.filter((e) => e.msg === 'server_released')).toHaveLength(1);
      // Nothing the relay read was lost silently: every frame is forwarded (and the client got it)
      // or counted as dropped with a reason (queued at the drain: reason "shutdown").
      const final = receiver.requests.filter((q) => q.url === '/v1/metrics').at(-1);
      expect(final, 'a final OTLP export after the drain').toBeDefined();
      const last = JSON.parse(final!.body.toString('utf8')) as unknown;
      const FWD = 'pyrycode_relay_frames_forwarded_total';
      const RCV = 'pyrycode_relay_frames_received_total';
      const DROP = 'pyrycode_relay_frames_dropped_total';
      const ledger = (direction: string) => ({
        received: otlpSum(last, RCV, { direction }),
        forwarded: otlpSum(last, FWD, { direction }),
        dropped: otlpSum(last, DROP, { direction }),
        droppedBy: Object.fromEntries(
          [
            'malformed_frame',
            'no_binary',
            'write_failed',
            'closing',
            'malformed_envelope',
            'unknown_conn_id',
            'backlog_full',
            'phone_gone',
            'shutdown',
          ]
            .map((reason) => [reason, otlpSum(last, DROP, { direction, reason })])
            .filter(([, v]) => v !== 0),
        ),
      });
      const b2p = ledger('binary_to_phone');
      const p2b = ledger('phone_to_binary');
      figure('shutdown under load: final ledger binary->phone', b2p);
      figure('shutdown under load: final ledger phone->binary', p2b);
      expect(b2p.forwarded).toBe(deliveredDown);
      expect(p2b.forwarded).toBe(deliveredUp);
      expect(b2p.received).toBe(b2p.forwarded + b2p.dropped);
      expect(p2b.received).toBe(p2b.forwarded + p2b.dropped);
      figure('shutdown under load: frames delivered down / up before the 1001', `${deliveredDown} / ${deliveredUp}`);
      figure(
        'shutdown under load: frames the binary sent but phones never got (tail, in flight or queued at SIGTERM)',
        sentDown.reduce((a, b) => a + b, 0) - deliveredDown,
      );
      figure(
        'shutdown under load: frames phones sent but the binary never got (tail)',
        sentUp.reduce((a, b) => a + b, 0) - (deliveredUp - 6),
      );
    } finally {
      for (const c of clients) c.ws.terminate();
      await d.stop();
      await receiver.close();
    }
  }, 40_000);

  it('a peer that never answers the close frame cannot hold the exit: drain deadline (1s) hits, the rest still get 1001, exit 0 within ~1 s', async () => {
    const { d, ws: url, port } = await boot('1s');
    const clients: TestClient[] = [];
    let deaf: RawWs | undefined;
    try {
      const binary = new TestClient(`${url}/v1/server`, binaryHeaders('sd-deaf-ok'));
      clients.push(binary);
      await binary.open();
      deaf = await RawWs.open(port, '/v1/server', binaryHeaders('sd-deaf'));
      await sleep(100);
      deaf.stopReading();
      const t0 = Date.now();
      d.child.kill('SIGTERM');
      expect(await binary.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      const exit = await exitWithin(d, t0, 6_000);
      figure('shutdown with a deaf peer: exit after SIGTERM (ms, --shutdown-timeout 1s)', exit.after);
      expect(exit.code).toBe(0);
      expect(exit.after).toBeGreaterThanOrEqual(900);
      expect(exit.after).toBeLessThan(1_000 + 1_500);
      const ev = events(d);
      expect(ev.some((e) => e.msg === 'drain incomplete')).toBe(true);
    } finally {
      deaf?.destroy();
      for (const c of clients) c.ws.terminate();
      await d.stop();
    }
  }, 30_000);
});

describe('SIGTERM while plain HTTP requests are held open', () => {
  /** Opens a TCP connection that sends `first` and then one byte of `drip` every 200 ms. */
  function holdOpen(port: number, first: string, drip = ''): { socket: Socket; closedAt: () => number } {
    const socket = netConnect({ host: '127.0.0.1', port });
    let closedAt = 0;
    let i = 0;
    const timer = setInterval(() => {
      if (drip !== '' && !socket.destroyed) socket.write(drip[i++ % drip.length]!);
    }, 200);
    socket.on('connect', () => socket.write(first));
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.on('close', () => {
      closedAt = Date.now();
      clearInterval(timer);
    });
    return { socket, closedAt: () => closedAt };
  }

  it('stalled headers and a trickled request body on the public listener do not keep the daemon alive past --shutdown-timeout (1s)', async () => {
    const { d, port } = await boot('1s');
    const held: Socket[] = [];
    try {
      const stalled = holdOpen(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Partial: ');
      const trickled = holdOpen(port, 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n', 'b');
      held.push(stalled.socket, trickled.socket);
      await sleep(300);
      const t0 = Date.now();
      d.child.kill('SIGTERM');
      const exit = await exitWithin(d, t0, 4_000);
      figure(
        'shutdown with held HTTP requests (public listener): exit after SIGTERM (ms, -1 = still running after 4 s)',
        exit.after,
      );
      expect(
        exit.after,
        `daemon still running 4 s after SIGTERM with --shutdown-timeout 1s; stalled-header socket ${stalled.closedAt() ? 'closed' : 'open'}, trickled-body socket ${trickled.closedAt() ? 'closed' : 'open'}`,
      ).toBeGreaterThanOrEqual(0);
      expect(exit.after).toBeLessThan(1_000 + 1_500);
      expect(exit.code).toBe(0);
    } finally {
      for (const s of held) s.destroy();
      await d.stop();
    }
  }, 20_000);

  it('a stalled request on the metrics listener does not keep the daemon alive past --shutdown-timeout (1s)', async () => {
    const { d, metricsPort } = await boot('1s');
    const held: Socket[] = [];
    try {
      const stalled = holdOpen(metricsPort, 'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Partial: ');
      held.push(stalled.socket);
      await sleep(300);
      const t0 = Date.now();
      d.child.kill('SIGTERM');
      const exit = await exitWithin(d, t0, 4_000);
      figure(
        'shutdown with a held request (metrics listener): exit after SIGTERM (ms, -1 = still running after 4 s)',
        exit.after,
      );
      expect(
        exit.after,
        `daemon still running 4 s after SIGTERM; metrics socket ${stalled.closedAt() ? 'closed' : 'open'}`,
      ).toBeGreaterThanOrEqual(0);
      expect(exit.after).toBeLessThan(1_000 + 1_500);
      expect(exit.code).toBe(0);
    } finally {
      for (const s of held) s.destroy();
      await d.stop();
    }
  }, 20_000);
});
