// The test toolkit's port picker: a daemon started by a test must get a port nobody else is
// handed in the meantime (a CI run once gave one daemon's public and metrics listener the same
// port, EADDRINUSE, because the old picker returned whatever bind(0) gave and closed it).

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from './helpers/ports.js';

const EPHEMERAL_LOW = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      servers.push(srv);
      resolve(srv);
    });
  });
}

describe('freePort', () => {
  it('hands out 100 distinct ports below the ephemeral range, each bindable when handed out', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 100; i++) {
      const port = await freePort();
      // Bind it at once, as a daemon would: it must be free.
      await listen(port);
      ports.push(port);
    }
    expect(new Set(ports).size).toBe(100);
    for (const port of ports) {
      expect(port).toBeGreaterThan(1024);
      expect(port).toBeLessThan(EPHEMERAL_LOW);
    }
  });

  it('skips a port something listens on', async () => {
    const first = await freePort();
    const second = await freePort();
    // Occupy the next three ports in its sequence: the picker must step past them.
    const taken = [second + 1, second + 2, second + 3];
    for (const port of taken) await listen(port);
    const next = await freePort();
    expect(next).not.toBe(first);
    expect(next).not.toBe(second);
    expect(taken).not.toContain(next);
  });
});
