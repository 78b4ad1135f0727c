// The header gate reads the first value of each header it needs from req.rawHeaders
// (src/http/first-header.ts) instead of req.headersDistinct: the same values, checked here on
// requests Node's real parser read, and end to end on the values that reach the registry and the
// log (docs/protocol.md, "Request headers and what the relay does with each").

import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { firstHeaderValues } from '../../src/http/first-header.js';
import { rawExchange, rawRequest, requestText, WS_HANDSHAKE } from '../helpers/http.js';
import { logFields, logsOf, useRelays } from '../helpers/relays.js';
import { waitFor } from '../helpers/wait.js';

const { boot, binary } = useRelays();

/** The names the gate asks for (a name may be asked twice), plus a few it never asks for. */
const ASKED = ['x-pyrycode-server', 'x-pyrycode-version', 'user-agent', 'x-pyrycode-version', 'x-pyrycode-device-name'];
const POOL = [...new Set(ASKED), 'x-pyrycode-token', 'x-other', 'user-agents', 'x-pyrycode-serve'];

/** Deterministic pseudo-random numbers (a failing case can be replayed). */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** The name in a random mix of cases. */
function randomCase(name: string, random: () => number): string {
  return [...name].map((c) => (random() < 0.5 ? c.toUpperCase() : c)).join('');
}

describe('firstHeaderValues', () => {
  it('equals headersDistinct[name][0] on 300 parsed requests (duplicates, mixed case, empty values)', async () => {
    const seen: { raw: string[]; expected: (string | undefined)[]; actual: (string | undefined)[] }[] = [];
    const server = createServer((req: IncomingMessage, res) => {
      seen.push({
        raw: [...req.rawHeaders],
        expected: ASKED.map((n) => req.headersDistinct[n]?.[0]),
        actual: firstHeaderValues(req.rawHeaders, ASKED),
      });
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const random = lcg(16);
      for (let i = 0; i < 300; i++) {
        const headers: [string, string][] = [['Host', '127.0.0.1']];
        const count = Math.floor(random() * 10);
        for (let h = 0; h < count; h++) {
          const name = POOL[Math.floor(random() * POOL.length)]!;
          const value = random() < 0.2 ? '' : `v${i}-${h}`;
          headers.push([randomCase(name, random), value]);
        }
        headers.push(['Connection', 'close']);
        await rawExchange(port, requestText('GET', '/', headers));
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    expect(seen).toHaveLength(300);
    for (const s of seen) expect(s.actual, JSON.stringify(s.raw)).toEqual(s.expected);
    // The cases did exercise duplicates and absent names.
    expect(
      seen.some((s) => s.raw.filter((_, i) => i % 2 === 0 && /^x-pyrycode-server$/i.test(s.raw[i]!)).length > 1),
    ).toBe(true);
    expect(seen.some((s) => s.expected.every((v) => v === undefined))).toBe(true);
  });

  it('a name asked twice gets its value twice; absent names are undefined', () => {
    const raw = ['X-Pyrycode-Version', '1.0', 'x-pyrycode-version', '2.0', 'User-Agent', 'ua'];
    expect(firstHeaderValues(raw, ['x-pyrycode-version', 'user-agent', 'x-pyrycode-version', 'x-nope'])).toEqual([
      '1.0',
      'ua',
      '1.0',
      undefined,
    ]);
  });
});

describe('the gate takes the first value of each header, in any case', () => {
  it('/v1/server: first X-Pyrycode-Server is the id, first X-Pyrycode-Version is logged', async () => {
    const r = await boot();
    const answer = await rawRequest(
      r.port,
      requestText('GET', '/v1/server', [
        ['x-PYRYCODE-server', 'dup-first'],
        ['X-Pyrycode-Server', 'dup-second'],
        ['X-PYRYCODE-VERSION', '1.0.0'],
        ['x-pyrycode-version', '2.0.0'],
        ['user-agent', 'pyry-test/1'],
        ...WS_HANDSHAKE,
      ]),
      { untilStatus: true },
    );
    expect(answer.status).toBe(101);
    await waitFor(() => logsOf(r, 'server_claimed').length === 1, 3_000, 'server_claimed logged');
    expect(logFields(logsOf(r, 'server_claimed')[0]!)).toEqual({
      server_id: 'dup-first',
      binary_version: '1.0.0',
      remote: '127.0.0.1',
    });
  });

  it('/v1/client: first X-Pyrycode-Device-Name is logged', async () => {
    const r = await boot();
    await binary(r, 'dup-id');
    const answer = await rawRequest(
      r.port,
      requestText('GET', '/v1/client', [
        ['X-Pyrycode-Server', 'dup-id'],
        ['X-Pyrycode-Token', 'tok'],
        ['User-Agent', 'phone-test/1'],
        ['x-pyrycode-DEVICE-name', 'Pixel 9'],
        ['X-Pyrycode-Device-Name', 'Other'],
        ...WS_HANDSHAKE,
      ]),
      { untilStatus: true },
    );
    expect(answer.status).toBe(101);
    await waitFor(() => logsOf(r, 'phone_registered').length === 1, 3_000, 'phone_registered logged');
    const line = logFields(logsOf(r, 'phone_registered')[0]!);
    expect(line.server_id).toBe('dup-id');
    expect(line.device_name).toBe('Pixel 9');
  });
});
