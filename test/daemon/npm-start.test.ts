// `npm start -- <flags>` (the README's run command) must hand signals to the daemon and pass its
// exit status through: npm forwards SIGTERM to its child, so the start script execs node instead
// of leaving a shell in between that would die and orphan the daemon.

import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cleanEnv } from '../helpers/daemon.js';
import { accepts, freePort } from '../helpers/ports.js';
import { REPO_ROOT } from '../helpers/repo.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

describe('npm start', () => {
  it('SIGTERM to npm drains the daemon and npm exits 0; a refused flag exits 2', async () => {
    const port = await freePort();
    const metricsPort = await freePort();
    const child = spawn(
      npm,
      ['start', '--', '--insecure-listen', `127.0.0.1:${port}`, '--metrics-listen', `127.0.0.1:${metricsPort}`],
      {
        cwd: REPO_ROOT,
        env: cleanEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      await waitFor(() => stderr.includes('msg="starting metrics listener"'), 15_000, 'the daemon to start under npm');
      expect(await accepts(port)).toBe(true);
      child.kill('SIGTERM');
      expect(await withTimeout(exited, 10_000, 'npm to exit after SIGTERM')).toBe(0);
      expect(stderr).toContain('msg="shutdown complete"');
      // No orphan: the listener is gone with npm.
      expect(await accepts(port, 1_000)).toBe(false);
    } finally {
      child.kill('SIGKILL');
    }

    const refused = spawn(npm, ['start', '--', '--bogus-flag'], { cwd: REPO_ROOT, env: cleanEnv(), stdio: 'ignore' });
    const code = await withTimeout(
      new Promise<number | null>((resolve) => refused.once('close', (c) => resolve(c))),
      15_000,
      'npm start with a bad flag to exit',
    );
    expect(code).toBe(2);
  }, 40_000);
});
