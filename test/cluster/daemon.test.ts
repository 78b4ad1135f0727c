// The daemon's cluster-mode boot: an unreachable engine is a clear error with exit 1 within a
// bounded time (never a hang); a refused value is exit 2 with one line; the instance id is logged.

import { describe, expect, it } from 'vitest';
import { runDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { natsServerAvailable, startNats } from '../helpers/cluster.js';

describe('cluster-mode boot', () => {
  it('an unreachable engine: one ERROR line and exit 1 within seconds', async () => {
    const port = await freePort();
    const started = Date.now();
    const result = await runDaemon(
      [
        '--insecure-listen',
        `127.0.0.1:${await freePort()}`,
        '--metrics-listen',
        '',
        '--cluster',
        `nats://127.0.0.1:${port}`,
        '--instance-id',
        'x',
      ],
      undefined,
      20_000,
    );
    expect(result.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(result.stderr).toMatch(/level=ERROR msg="cluster engine unreachable" engine=nats:\/\/127\.0\.0\.1:\d+ err=/);
  }, 30_000);

  it('a credential in the URL: exit 2, one line, the password never printed', async () => {
    const result = await runDaemon([
      '--insecure-listen',
      '127.0.0.1:1',
      '--cluster',
      'nats://u:hunter2@127.0.0.1:4222',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).not.toContain('hunter2');
  });

  it.skipIf(!natsServerAvailable())(
    'the instance id is logged at start (stable default: host name and port)',
    async () => {
      const nats = await startNats();
      try {
        const listen = await freePort();
        const { startDaemon } = await import('../helpers/daemon.js');
        const d = startDaemon([
          '--insecure-listen',
          `127.0.0.1:${listen}`,
          '--metrics-listen',
          '',
          '--cluster',
          nats.url,
        ]);
        try {
          await d.waitStderr(/msg="starting cluster mode" instance_id=\S+-\d+ engine=nats:/, 10_000);
          expect(d.stderr()).toContain(`-${listen} engine=`);
        } finally {
          await d.stop();
        }
      } finally {
        await nats.dispose();
      }
    },
    30_000,
  );
});
