// Absolute-form request targets (`GET http://host/v1/server HTTP/1.1`, RFC 9112 3.2.2) are routed
// by their path like origin-form ones, as the reference's Go ServeMux does
// (docs/decisions.md, "Non-canonical paths get 404, never a redirect"); the path must still be
// exactly one of the routes.

import { afterEach, describe, expect, it } from 'vitest';
import { rawRequest, UPGRADE_HEADERS } from '../helpers/reliability.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

const GATE_SERVER = 'X-Pyrycode-Server: abs-1\r\nX-Pyrycode-Version: 1\r\nUser-Agent: t\r\n';

describe('absolute-form request targets', () => {
  it('an upgrade to http://host/v1/server claims the id (101)', async () => {
    const r = await startRelay();
    relay = r;
    const answer = await rawRequest(
      r.port,
      `GET http://relay.example/v1/server?x=1 HTTP/1.1\r\nHost: relay.example\r\n${GATE_SERVER}${UPGRADE_HEADERS}\r\n`,
      { untilStatus: true },
    );
    expect(answer.status).toBe(101);
    await waitFor(() => r.relay.metrics.binariesSinceBoot === 1, 3_000, 'the claim');
    expect(await r.metric('pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="accept"}')).toBe(1);
  });

  it('/healthz, /readyz and the endpoints route by path, whatever the scheme (Go routes r.URL.Path)', async () => {
    const r = await startRelay();
    relay = r;
    const get = (target: string): Promise<number> =>
      rawRequest(r.port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`).then((a) => a.status);
    expect(await get('http://x/healthz')).toBe(200);
    expect(await get('HTTPS://x:443/readyz')).toBe(200);
    expect(await get('ws://x/healthz?probe=1')).toBe(200);
    // Reaches the header gate (no pyrycode headers): 400, counted as reject_headers.
    expect(await get('http://x/v1/client')).toBe(400);
    expect(await r.metric('pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="reject_headers"}')).toBe(
      1,
    );
    // Still exact paths: anything else is 404.
    for (const target of ['http://x', 'http://x/', 'http://x/v1//server', 'http://x/v1/serverX']) {
      expect(await get(target), target).toBe(404);
    }
    expect(await r.metric('pyrycode_relay_http_errors_total{reason="not_found_404"}')).toBe(4);
  });
});
