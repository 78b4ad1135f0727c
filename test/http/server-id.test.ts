// The server-id header's own rules (docs/protocol.md, "Request headers and what the relay does with each"): it must be valid UTF-8
// and at most MAX_SERVER_ID_BYTES bytes, else the header gate answers 400 like a missing header
// (counted as reject_headers, nothing logged). Two ids that differ only in invalid bytes can
// therefore never be merged into one registry key by replacement decoding.

import { afterEach, describe, expect, it } from 'vitest';
import { MAX_SERVER_ID_BYTES } from '../../src/http/server-id.js';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  phoneConnId,
  phoneHeaders,
  startRelay,
  TestClient,
  upgradeStatus,
  type TestRelay,
} from '../helpers/relay.js';
import { sleep, waitFor } from '../helpers/wait.js';

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

/** The header value whose bytes on the wire are the UTF-8 encoding of `text` (Node writes header
 * strings as Latin-1, one byte per character). */
function utf8Header(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** A binary claiming the id whose UTF-8 bytes are sent; waits for the claim under the decoded id. */
async function claim(r: TestRelay, id: string): Promise<TestClient> {
  const binary = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders(utf8Header(id)));
  await binary.open();
  await waitFor(() => r.relay.registry.binaryFor(id) !== undefined, 3_000, `claim of ${id}`);
  return binary;
}

const UP = (endpoint: string, outcome: string): string =>
  `pyrycode_relay_ws_upgrade_attempts_total{endpoint="${endpoint}",outcome="${outcome}"}`;

describe('server-id header', () => {
  it('MAX_SERVER_ID_BYTES is 256', () => {
    expect(MAX_SERVER_ID_BYTES).toBe(256);
  });

  it('a server-id that is not valid UTF-8 gets 400 on both endpoints, counted as reject_headers, not logged', async () => {
    const r = await startRelay();
    relay = r;
    // 0xFF and 0xFE: both would decode to the same U+FFFD id.
    for (const [path, headers] of [
      ['/v1/server', binaryHeaders('srv-\xff')],
      ['/v1/server', binaryHeaders('srv-\xfe')],
      ['/v1/client', phoneHeaders('srv-\xff')],
      ['/v1/server', binaryHeaders(`srv-${utf8Header('é').slice(0, 1)}`)], // a truncated sequence
    ] as const) {
      const answer = await upgradeStatus(r, path, headers);
      expect(answer.status, path).toBe(400);
      expect(answer.body).toBe('\n');
    }
    expect(await r.metric(UP('server', 'reject_headers'))).toBe(3);
    expect(await r.metric(UP('client', 'reject_headers'))).toBe(1);
    expect(await r.metric(UP('server', 'accept'))).toBe(0);
    expect(await r.metric('pyrycode_relay_register_failures_total{kind="server_in_use"}')).toBe(0);
    await sleep(50);
    expect(r.logs).toEqual([]);
  });

  it('a valid non-ASCII UTF-8 server-id is accepted and routed under its decoded text', async () => {
    const r = await startRelay();
    relay = r;
    const id = 'srv-ünïcode-日本';
    const binary = await claim(r, id);
    const phone = await connectPhone(r, utf8Header(id));
    const connId = await phoneConnId(phone, binary);
    expect(connId).toMatch(new RegExp(`^client-${id}-[0-9a-f]{8}$`));
    expect(r.relay.registry.binaryFor(id)).toBeDefined();
  });

  it('exactly 256 bytes is accepted, 257 bytes gets 400 (counted, not logged), multi-byte characters counted in bytes', async () => {
    const r = await startRelay();
    relay = r;
    await connectBinary(r, 'a'.repeat(256));
    const twoByte = 'é'.repeat(128); // 256 bytes
    await claim(r, twoByte);
    await connectPhone(r, 'a'.repeat(256));
    expect(await r.metric(UP('client', 'accept'))).toBe(1);

    const before = r.logs.length;
    for (const [path, headers] of [
      ['/v1/server', binaryHeaders('a'.repeat(257))],
      ['/v1/server', binaryHeaders(utf8Header(`${twoByte}a`))],
      ['/v1/client', phoneHeaders('a'.repeat(257))],
      ['/v1/server', binaryHeaders('a'.repeat(60_000))],
    ] as const) {
      const answer = await upgradeStatus(r, path, headers);
      expect(answer.status, path).toBe(400);
      expect(answer.body).toBe('\n');
    }
    expect(await r.metric(UP('server', 'reject_headers'))).toBe(3);
    expect(await r.metric(UP('client', 'reject_headers'))).toBe(1);
    expect(await r.metric(UP('server', 'accept'))).toBe(2);
    await sleep(50);
    expect(r.logs.slice(before)).toEqual([]);
  });
});
