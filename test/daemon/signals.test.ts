// Every signal an operator (or another local user) can send the BUILT daemon does what
// docs/operations.md "Signals, exit codes and the drain" says: SIGHUP, SIGUSR1 and SIGUSR2 are
// ignored with a log line (SIGUSR1 must not start Node's inspector, which would let any local user
// run code as the relay), SIGQUIT drains like SIGTERM. Build first (`npx tsc -p .`).

import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_MAIN, type DaemonHandle, startReadyDaemon } from '../helpers/daemon.js';
import { accepts, freePort } from '../helpers/ports.js';
import { binaryHeaders, phoneHeaders, TestClient } from '../helpers/relays.js';
import { sleep, waitFor } from '../helpers/wait.js';

beforeAll(() => {
  if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run npx tsc -p . first`);
});

interface Running {
  d: DaemonHandle;
  port: number;
  inspectPort: number;
}

/** The daemon with Node's inspector port moved to a free port of our own (NODE_OPTIONS), so the
 * check cannot be fooled by, or disturb, anything else using 9229. */
async function startRunning(): Promise<Running> {
  const inspectPort = await freePort();
  const { d, port } = await startReadyDaemon(['--shutdown-timeout', '2s'], {
    env: { NODE_OPTIONS: `--inspect-port=127.0.0.1:${inspectPort}` },
  });
  return { d, port, inspectPort };
}

/** A claimed binary and one registered phone on `serverId`. */
async function peers(port: number, serverId: string): Promise<{ binary: TestClient; phone: TestClient }> {
  const binary = new TestClient(`ws://127.0.0.1:${port}/v1/server`, binaryHeaders(serverId));
  await binary.open();
  let phone!: TestClient;
  await waitFor(
    async () => {
      phone = new TestClient(`ws://127.0.0.1:${port}/v1/client`, phoneHeaders(serverId));
      await phone.open();
      await sleep(50);
      return phone.closed === undefined;
    },
    5_000,
    'phone registration',
  );
  phone.send('{"n":1}');
  await binary.message(1);
  return { binary, phone };
}

const IGNORED = ['SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const;

describe('signals', () => {
  it('SIGHUP, SIGUSR1 and SIGUSR2 are ignored with a log line; no inspector; peers stay; SIGTERM then drains', async () => {
    const { d, port, inspectPort } = await startRunning();
    const clients: TestClient[] = [];
    try {
      expect(await accepts(inspectPort)).toBe(false);
      const { binary, phone } = await peers(port, 'srv-sig');
      clients.push(binary, phone);
      for (const signal of IGNORED) {
        d.child.kill(signal);
        await d.waitStderr(`msg=signal_ignored signal=${signal}`, 5_000);
      }
      // Still alive and still routing.
      await sleep(300);
      expect(d.child.exitCode).toBe(null);
      expect(phone.closed).toBe(undefined);
      expect(binary.closed).toBe(undefined);
      phone.send('{"n":2}');
      expect(await binary.message(2)).toMatch(/"frame":\{"n":2\}\}$/);
      // SIGUSR1 did not start Node's inspector.
      expect(d.stderr()).not.toContain('Debugger listening');
      expect(await accepts(inspectPort)).toBe(false);

      d.child.kill('SIGTERM');
      expect(await phone.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await binary.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await d.waitExit(10_000)).toEqual({ code: 0, signal: null });
      expect(d.stderr()).toContain('msg="shutdown signal received; draining" signal=SIGTERM');
      expect(d.stderr()).toContain('msg="shutdown complete"');
    } finally {
      for (const c of clients) c.ws.terminate();
      await d.stop();
    }
  }, 30_000);

  it('SIGQUIT drains like SIGTERM: peers get 1001 "shutting down", exit 0', async () => {
    const { d, port } = await startRunning();
    const clients: TestClient[] = [];
    try {
      const { binary, phone } = await peers(port, 'srv-quit');
      clients.push(binary, phone);
      d.child.kill('SIGQUIT');
      expect(await phone.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await binary.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await d.waitExit(10_000)).toEqual({ code: 0, signal: null });
      expect(d.stderr()).toContain('msg="shutdown signal received; draining" signal=SIGQUIT');
      expect(d.stderr()).toContain('msg="shutdown complete"');
      expect(await accepts(port)).toBe(false);
    } finally {
      for (const c of clients) c.ws.terminate();
      await d.stop();
    }
  }, 30_000);
});
