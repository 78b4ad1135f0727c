// Reliability: churn soak (issue #5). Thousands of connect / claim / register / talk / disconnect
// cycles from 8 concurrent workers, covering every registry path — fresh claims, reclaims inside
// the grace window, takeovers of unresponsive binaries, 4409 conflicts, 4404 / 4429 refusals,
// abrupt drops, grace expiries — while a scraper reads /metrics and /healthz continuously.
//
// Afterwards: every counter equals what the clients themselves observed, every gauge and registry
// structure is back to 0, no socket, server or timer of the relay is left (active resources equal
// the baseline), and the heap after a full GC is within a few MB of where it started.
//
// CI runs >= 4,000 connections (about 10 s). A long soak (20,000 connections by default) runs with
//   RELAY_SOAK=1 npx vitest run test/reliability/churn.test.ts
// and RELAY_SOAK_CONNECTIONS=<n> to choose the size; docs/reliability.md records its figures.

import { describe, expect, it } from 'vitest';
import { figure } from '../helpers/figures.js';
import { httpGet } from '../helpers/http.js';
import {
  binaryHeaders,
  isEmpty,
  type LogLine,
  phoneHeaders,
  relayState,
  startRelay,
  TestClient,
  type TestRelay,
} from '../helpers/relays.js';
import { MiB, resourceCounts, settledHeap } from '../helpers/resources.js';
import {
  B2P,
  GAUGE_BINARIES,
  GAUGE_PHONES,
  GRACE_EXPIRIES,
  P2B,
  registerCell,
  relaySamples,
  sampleDiff,
  splitDiff,
  upgradeCell,
} from '../helpers/scrape.js';
import { sleep, waitFor } from '../helpers/wait.js';

const GRACE_MS = 80;
const MAX_PHONES = 3;

interface PerId {
  claimed: number;
  released: number;
  registered: number;
}

interface Expected {
  acceptServer: number;
  acceptClient: number;
  r409: number;
  r404: number;
  r429: number;
  expiries: number;
  p2b: number;
  b2p: number;
}

type Scenario = 'talk' | 'reclaim' | 'takeover' | 'conflict' | 'no_server' | 'at_cap' | 'expiry';
const SCENARIOS: Scenario[] = ['talk', 'reclaim', 'takeover', 'talk', 'conflict', 'no_server', 'at_cap', 'expiry'];

class Churn {
  readonly perId = new Map<string, PerId>();
  readonly exp: Expected = { acceptServer: 0, acceptClient: 0, r409: 0, r404: 0, r429: 0, expiries: 0, p2b: 0, b2p: 0 };
  readonly ran: Record<Scenario, number> = {
    talk: 0,
    reclaim: 0,
    takeover: 0,
    conflict: 0,
    no_server: 0,
    at_cap: 0,
    expiry: 0,
  };
  connections = 0;
  reclaimsThatExpiredFirst = 0;
  r!: TestRelay;

  onLog = (l: LogLine): void => {
    const id = typeof l.server_id === 'string' ? l.server_id : undefined;
    if (id === undefined) return;
    let e = this.perId.get(id);
    if (e === undefined) {
      e = { claimed: 0, released: 0, registered: 0 };
      this.perId.set(id, e);
    }
    if (l.msg === 'server_claimed') e.claimed++;
    else if (l.msg === 'server_released') e.released++;
    else if (l.msg === 'phone_registered') e.registered++;
  };

  private until(id: string, what: keyof PerId, n: number): Promise<unknown> {
    return waitFor(() => (this.perId.get(id)?.[what] ?? 0) >= n, 10_000, `${what} >= ${n} on ${id}`, 2);
  }

  private async client(path: string, headers: Record<string, string>, options = {}): Promise<TestClient> {
    const c = new TestClient(`${this.r.wsUrl}${path}`, headers, options);
    this.connections++;
    await c.open(5_000);
    return c;
  }

  private async binary(id: string, claimN: number, options = {}): Promise<TestClient> {
    const c = await this.client('/v1/server', binaryHeaders(id), options);
    await this.until(id, 'claimed', claimN);
    return c;
  }

  private async phone(id: string, regN: number): Promise<TestClient> {
    const c = await this.client('/v1/client', phoneHeaders(id));
    await this.until(id, 'registered', regN);
    return c;
  }

  /** A phone's first frame; returns its conn_id as the binary saw it. */
  private async talk(phone: TestClient, binary: TestClient, n: number): Promise<string> {
    const before = binary.messages.length;
    phone.send(`{"n":${n}}`);
    const env = JSON.parse(await binary.message(before + 1, 5_000)) as { conn_id: string; frame: unknown };
    this.exp.p2b++;
    binary.send(`{"conn_id":"${env.conn_id}","frame":{"r":${n}}}`);
    await phone.message(phone.messages.length + 1, 5_000);
    this.exp.b2p++;
    return env.conn_id;
  }

  private async leave(c: TestClient, code?: number): Promise<void> {
    c.close(code ?? 1000);
    await c.waitClose(10_000);
  }

  async run(s: Scenario, id: string, i: number): Promise<void> {
    this.ran[s]++;
    switch (s) {
      case 'talk': {
        const b = await this.binary(id, 1);
        this.exp.acceptServer++;
        const k = 1 + (i % MAX_PHONES);
        const phones: TestClient[] = [];
        for (let j = 0; j < k; j++) {
          const p = await this.phone(id, j + 1);
          this.exp.acceptClient++;
          await this.talk(p, b, j);
          phones.push(p);
        }
        for (const p of phones) await this.leave(p);
        await waitFor(
          () => b.messages.filter((m) => m.endsWith(',"close_code":1000}')).length === k,
          5_000,
          'close notices',
        );
        await this.leave(b);
        this.exp.expiries++;
        return;
      }
      case 'reclaim': {
        const b1 = await this.binary(id, 1);
        this.exp.acceptServer++;
        const p1 = await this.phone(id, 1);
        const p2 = await this.phone(id, 2);
        this.exp.acceptClient += 2;
        await this.leave(b1);
        await this.until(id, 'released', 1);
        const b2 = await this.binary(id, 2);
        this.exp.acceptServer++;
        const [c1, c2] = await Promise.all([p1.waitClose(5_000), p2.waitClose(5_000)]);
        expect(c1).toEqual(c2);
        if (c1.code === 4404) {
          expect(c1.reason).toBe('binary reclaimed server-id');
        } else {
          // The grace window ran out before the reclaim landed (a loaded machine): an expiry.
          expect(c1).toEqual({ code: 1000, reason: '' });
          this.exp.expiries++;
          this.reclaimsThatExpiredFirst++;
        }
        await this.leave(b2);
        this.exp.expiries++;
        return;
      }
      case 'takeover': {
        const b1 = await this.binary(id, 1, { autoPong: false });
        this.exp.acceptServer++;
        const p = await this.phone(id, 1);
        this.exp.acceptClient++;
        const b2 = await this.binary(id, 2);
        this.exp.acceptServer++;
        expect(await b1.waitClose(10_000)).toEqual({ code: 1011, reason: 'heartbeat timeout' });
        expect(await p.waitClose(5_000)).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
        await this.leave(b2);
        this.exp.expiries++;
        return;
      }
      case 'conflict': {
        const b1 = await this.binary(id, 1);
        this.exp.acceptServer++;
        const b2 = await this.client('/v1/server', binaryHeaders(id));
        expect(await b2.waitClose(5_000)).toEqual({ code: 4409, reason: 'server-id already claimed' });
        this.exp.r409++;
        await this.leave(b1);
        this.exp.expiries++;
        return;
      }
      case 'no_server': {
        const p = await this.client('/v1/client', phoneHeaders(`${id}-nobody`));
        expect(await p.waitClose(5_000)).toEqual({ code: 4404, reason: 'no server with that id' });
        this.exp.r404++;
        return;
      }
      case 'at_cap': {
        const b = await this.binary(id, 1);
        this.exp.acceptServer++;
        const phones: TestClient[] = [];
        for (let j = 0; j < MAX_PHONES; j++) phones.push(await this.phone(id, j + 1));
        this.exp.acceptClient += MAX_PHONES;
        const extra = await this.client('/v1/client', phoneHeaders(id));
        expect(await extra.waitClose(5_000)).toEqual({ code: 4429, reason: 'too many phones for server-id' });
        this.exp.r429++;
        // Abrupt drops: the binary learns 1001 for each.
        for (const p of phones) p.ws.terminate();
        await waitFor(
          () => b.messages.filter((m) => m.endsWith(',"close_code":1001}')).length === MAX_PHONES,
          5_000,
          '1001 notices',
        );
        await this.leave(b);
        this.exp.expiries++;
        return;
      }
      case 'expiry': {
        const b = await this.binary(id, 1);
        this.exp.acceptServer++;
        const p1 = await this.phone(id, 1);
        const p2 = await this.phone(id, 2);
        this.exp.acceptClient += 2;
        b.ws.terminate();
        expect(await p1.waitClose(5_000)).toEqual({ code: 1000, reason: '' });
        expect(await p2.waitClose(5_000)).toEqual({ code: 1000, reason: '' });
        this.exp.expiries++;
        return;
      }
    }
  }
}

interface SoakResult {
  connections: number;
  ms: number;
  scrapes: number;
  heapStart: number;
  heapPeak: number;
  heapEnd: number;
}

async function soak(target: number, label: string): Promise<SoakResult> {
  const churn = new Churn();
  const r = await startRelay(
    {
      gracePeriodMs: GRACE_MS,
      // The conflict case needs the live incumbent's pong (from a client in this process) inside
      // the probe window even while the machine is loaded; 60 ms was missed under load and turned
      // a 4409 into a takeover. The takeover case waits out the window either way.
      probeTimeoutMs: 250,
      heartbeatIntervalMs: 2_000,
      maxPhonesPerServer: MAX_PHONES,
      maxConnections: 10_000,
      rateLimitBurst: 10_000_000,
    },
    churn.onLog,
  );
  churn.r = r;
  try {
    const resourcesBaseline = resourceCounts();
    const samplesBaseline = relaySamples(await r.scrape());

    // Warm-up (JIT, pools), then the starting heap.
    for (let i = 0; i < SCENARIOS.length; i++) await churn.run(SCENARIOS[i]!, `warm-${i}`, i);
    await waitFor(() => isEmpty(relayState(r)), 5_000, 'empty after warm-up');
    const heapStart = settledHeap();

    // Scraper: /metrics and /healthz while the churn runs; counters must never go backwards.
    let scraping = true;
    let scrapes = 0;
    let heapPeak = heapStart;
    const lastCounters = new Map<string, number>();
    const scraper = (async () => {
      while (scraping) {
        const samples = relaySamples(await r.scrape());
        for (const [series, v] of samples) {
          expect(Number.isFinite(v) && v >= 0, series).toBe(true);
          if (series.includes('_total')) {
            expect(v, `${series} went backwards`).toBeGreaterThanOrEqual(lastCounters.get(series) ?? 0);
            lastCounters.set(series, v);
          }
        }
        if (scrapes % 10 === 0) {
          const h = await httpGet(`${r.httpUrl}/healthz`);
          expect(h.status).toBe(200);
        }
        scrapes++;
        heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
        await sleep(5);
      }
    })();

    const t0 = Date.now();
    const WORKERS = 8;
    let next = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        while (churn.connections < target) {
          const i = next++;
          await churn.run(SCENARIOS[(i + w) % SCENARIOS.length]!, `churn-${label}-${i}`, i);
        }
      }),
    );
    const ms = Date.now() - t0;
    scraping = false;
    await scraper;

    // Everything settles: grace windows run out, every structure is empty.
    await waitFor(() => isEmpty(relayState(r)), 10_000, 'registry, cap and sessions empty');
    await sleep(GRACE_MS * 2);
    expect(relayState(r)).toEqual({
      binaries: 0,
      phoneLists: 0,
      graces: 0,
      counts: { binaries: 0, phones: 0 },
      capUsed: 0,
      live: 0,
    });
    expect(r.relay.limiter.size).toBe(1); // one client IP, one bucket

    // Counters equal what the clients observed.
    const e = churn.exp;
    const diff = sampleDiff(samplesBaseline, relaySamples(await r.scrape()));
    const reference = splitDiff(diff).reference;
    const want: Record<string, number> = {
      [upgradeCell('server', 'accept')]: e.acceptServer,
      [upgradeCell('client', 'accept')]: e.acceptClient,
      [upgradeCell('server', 'reject_409')]: e.r409,
      [registerCell('server_in_use')]: e.r409,
      [upgradeCell('client', 'reject_404')]: e.r404,
      [registerCell('no_server')]: e.r404,
      [upgradeCell('client', 'reject_429')]: e.r429,
      [registerCell('phones_at_cap')]: e.r429,
      [GRACE_EXPIRIES]: e.expiries,
      [P2B]: e.p2b,
      [B2P]: e.b2p,
    };
    expect(reference).toEqual(want);
    expect(await r.metric(GAUGE_BINARIES)).toBe(0);
    expect(await r.metric(GAUGE_PHONES)).toBe(0);
    const health = JSON.parse((await httpGet(`${r.httpUrl}/healthz`)).body) as Record<string, number>;
    expect(health.connected_binaries).toBe(0);
    expect(health.connected_phones).toBe(0);

    // No socket, server or timer left behind (the test's own clients are all closed).
    await sleep(50);
    const resourcesEnd = resourceCounts();
    for (const type of ['TCPSocketWrap', 'TCPServerWrap']) {
      expect(resourcesEnd[type] ?? 0, type).toBe(resourcesBaseline[type] ?? 0);
    }
    expect(resourcesEnd.Timeout ?? 0, 'ref’d timers').toBeLessThanOrEqual(resourcesBaseline.Timeout ?? 0);

    // The test's own per-server-id bookkeeping is not the relay's: drop it before measuring.
    churn.perId.clear();
    const heapEnd = settledHeap();
    figure(`churn ${label}: connections (cycles)`, churn.connections);
    figure(`churn ${label}: scenarios`, churn.ran);
    figure(`churn ${label}: reclaims that lost the race to expiry`, churn.reclaimsThatExpiredFirst);
    figure(`churn ${label}: duration (ms), connections/s`, `${ms}, ${Math.round(churn.connections / (ms / 1000))}`);
    figure(`churn ${label}: scrapes during the run`, scrapes);
    figure(`churn ${label}: counters`, want);
    figure(
      `churn ${label}: active resources baseline -> end`,
      `${JSON.stringify(resourcesBaseline)} -> ${JSON.stringify(resourcesEnd)}`,
    );
    figure(
      `churn ${label}: heap after GC start / peak (no GC) / end after GC (MiB)`,
      `${(heapStart / MiB).toFixed(1)} / ${(heapPeak / MiB).toFixed(1)} / ${(heapEnd / MiB).toFixed(1)}`,
    );
    figure(`churn ${label}: heap growth after GC (MiB)`, ((heapEnd - heapStart) / MiB).toFixed(2));
    return { connections: churn.connections, ms, scrapes, heapStart, heapPeak, heapEnd };
  } finally {
    await r.close();
  }
}

describe('churn soak', () => {
  it('>= 4,000 connections through every registry path with a scraper running: exact counters, gauges 0, no handles left, bounded heap', async () => {
    const resourcesBefore = resourceCounts();
    const res = await soak(4_000, 'ci');
    expect(res.connections).toBeGreaterThanOrEqual(4_000);
    expect(res.scrapes).toBeGreaterThan(20);
    expect(res.heapEnd - res.heapStart).toBeLessThan(50 * MiB);
    // After close() the relay holds nothing at all: back to the state before it started.
    await sleep(50);
    const after = resourceCounts();
    for (const type of ['TCPSocketWrap', 'TCPServerWrap'])
      expect(after[type] ?? 0, type).toBe(resourcesBefore[type] ?? 0);
    expect(after.Timeout ?? 0).toBeLessThanOrEqual(resourcesBefore.Timeout ?? 0);
    figure(
      'churn ci: active resources before start -> after close',
      `${JSON.stringify(resourcesBefore)} -> ${JSON.stringify(after)}`,
    );
  }, 90_000);

  it.skipIf(process.env.RELAY_SOAK !== '1')(
    'long soak (RELAY_SOAK=1): 20,000 connections by default',
    async () => {
      const target = Number(process.env.RELAY_SOAK_CONNECTIONS ?? 20_000);
      const res = await soak(target, 'soak');
      expect(res.connections).toBeGreaterThanOrEqual(target);
      expect(res.heapEnd - res.heapStart).toBeLessThan(50 * MiB);
    },
    60 * 60_000,
  );
});
