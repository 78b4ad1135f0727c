// What an idle connection keeps on the relay (idle memory in
// docs/performance.md, "Where the targets stand"): the relay puts no listener on a connection's
// WebSocket (ws's events reach the Peer through RelaySocket.emit), the ones on its socket and ws
// receiver are the same functions for every connection (no closure per connection), the upgrade
// pipeline's own socket listeners are gone once the handshake
// completed, and the connection-cap slot is still given back exactly once when the connection
// ends. Real connections against an in-process relay.

import type { Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { RelaySocket } from '../../src/session/peer.js';
import { useRelays } from '../helpers/relays.js';
import { waitFor } from '../helpers/wait.js';

const { boot, binary, phone } = useRelays();

/** ws's private parts of a server-side connection (the relay reads the same ones in peer.ts). */
function internals(ws: unknown): { socket: Socket; receiver: EventEmitter } {
  const parts = ws as { _socket: Socket; _receiver: EventEmitter };
  return { socket: parts._socket, receiver: parts._receiver };
}

const WS_EVENTS = ['message', 'ping', 'pong', 'error', 'close'] as const;

describe('an idle connection holds no listener of its own', () => {
  it('a binary and three phones: no listener on any ws event (RelaySocket.emit hands them to the Peer); the socket keeps only ws listeners and one shared deadline check', async () => {
    const r = await boot();
    const clients = [await binary(r, 'idle-1'), await phone(r, 'idle-1'), await phone(r, 'idle-1')];
    clients.push(await phone(r, 'idle-1'));
    const { binaries, phones } = r.relay.registry.snapshot();
    const sessions = [...binaries, ...phones];
    expect(sessions.length).toBe(4);
    const [first, ...others] = sessions.map((s) => s.peer.ws);

    for (const ws of [first!, ...others]) {
      expect(ws).toBeInstanceOf(RelaySocket);
      for (const event of WS_EVENTS) expect(ws.listeners(event), `'${event}' on the WebSocket`).toEqual([]);
    }

    const a = internals(first);
    // ws's own socket listeners and nothing of the upgrade pipeline's ('close' and 'error' each
    // had a second, per-connection listener until the handshake completed).
    expect(a.socket.listeners('close'), "'close' on the socket").toHaveLength(1);
    expect(a.socket.listeners('error'), "'error' on the socket").toHaveLength(1);
    // ws's reader, then the relay's message-deadline check; the receiver's close frame hook.
    expect(a.socket.listeners('data'), "'data' on the socket").toHaveLength(2);
    expect(a.receiver.listeners('conclude'), "'conclude' on the receiver").toHaveLength(2);
    for (const ws of others) {
      const b = internals(ws);
      expect(b.socket.listeners('close')).toEqual(a.socket.listeners('close'));
      expect(b.socket.listeners('error')).toEqual(a.socket.listeners('error'));
      expect(b.socket.listeners('data')).toEqual(a.socket.listeners('data'));
      expect(b.receiver.listeners('conclude')).toEqual(a.receiver.listeners('conclude'));
    }

    // The slot of each connection comes back once its handler ended: phones first, then the binary.
    expect(r.relay.cap.used).toBe(4);
    for (const client of clients.slice(1)) client.close(1000);
    await waitFor(() => r.relay.liveConnections === 1, 3_000, 'the phones to end');
    expect(r.relay.cap.used).toBe(1);
    clients[0]!.close(1000);
    await waitFor(() => r.relay.liveConnections === 0, 3_000, 'the binary to end');
    expect(r.relay.cap.used).toBe(0);
  });
});

describe('RelaySocket.emit', () => {
  it('a listener someone else adds to a WebSocket still gets its events, after the Peer routed them', async () => {
    const r = await boot();
    const b = await binary(r, 'emit-1');
    const p = await phone(r, 'emit-1');
    const { phones } = r.relay.registry.snapshot();
    const seen: string[] = [];
    phones[0]!.peer.ws.on('message', (data: Buffer, isBinary: boolean) => seen.push(`${data.toString()} ${isBinary}`));
    phones[0]!.peer.ws.on('close', (code: number) => seen.push(`close ${code}`));
    p.send('{"n":1}');
    const envelope = JSON.parse(await b.message(1)) as { frame: unknown };
    expect(envelope.frame).toEqual({ n: 1 });
    expect(seen).toEqual(['{"n":1} false']);
    p.close(1000);
    await waitFor(() => seen.length === 2, 3_000, "the extra 'close' listener");
    expect(seen[1]).toBe('close 1000');
    await waitFor(() => r.relay.liveConnections === 1, 3_000, 'the phone to end');
  });
});
