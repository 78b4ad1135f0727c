// docs/ops/cluster/: the three-instance example must be accepted by the tools that run it
// (nats-server -t, systemd-analyze verify on an instance of the template) and must pass the relay's
// own parser with the flags it uses. Tools missing locally: skipped loudly; under CI: a failure.

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/parse.js';

const DIR = fileURLToPath(new URL('../../docs/ops/cluster/', import.meta.url));
const works = (tool: string, args: string[]): boolean => spawnSync(tool, args, { timeout: 10_000 }).status === 0;
const hasNats = works('nats-server', ['--version']);
const hasSystemd = works('systemd-analyze', ['--version']);
if (process.env['CI'] === 'true' && (!hasNats || !hasSystemd))
  throw new Error('nats-server and systemd-analyze are required under CI');
if (!hasNats || !hasSystemd)
  console.warn('SKIPPING parts of docs/ops/cluster checks: nats-server or systemd-analyze missing');

describe('docs/ops/cluster example', () => {
  it.skipIf(!hasNats)('nats-server accepts nats-server.conf', () => {
    const r = spawnSync('nats-server', ['-t', '-c', join(DIR, 'nats-server.conf')], {
      encoding: 'utf8',
      env: { ...process.env, RELAY_NATS_PASSWORD: 'example' },
      timeout: 10_000,
    });
    expect(`${r.stdout}${r.stderr}`).toContain('is valid');
    expect(r.status).toBe(0);
  });

  it.skipIf(!hasSystemd)('systemd-analyze verify accepts an instance of the template without a complaint', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pyry-unit-'));
    try {
      copyFileSync(join(DIR, 'pyrycode-relay@.service'), join(dir, 'pyrycode-relay@.service'));
      const r = spawnSync('systemd-analyze', ['verify', join(dir, 'pyrycode-relay@a.service')], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('pyrycode-relay@'));
      expect(complaints).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the flags of its ExecStart= parse, with the instance name as --instance-id', () => {
    const unit = readFileSync(join(DIR, 'pyrycode-relay@.service'), 'utf8').replace(/\\\n/g, ' ');
    // ExecStart=<node> <node flags> <script> <relay flags>
    const exec = /^ExecStart=\S+ (?:--\S+ )*\S+ (.*)$/m.exec(unit)![1]!;
    const argv = exec
      .replace('$' + '{RELAY_LISTEN}', '127.0.0.1:8081')
      .replace('$' + '{RELAY_METRICS}', '127.0.0.1:9101')
      .replace('%i', 'a')
      .split(/\s+/)
      .filter((s) => s !== '');
    const out = parseConfig(argv, { PYRYCODE_RELAY_CLUSTER_URL: 'nats://10.0.0.10:4222' }, '/nonexistent');
    expect(out.kind).toBe('run');
    if (out.kind === 'run') expect(out.config.cluster).toMatchObject({ instanceId: 'a', leaseMs: 15_000 });
  });
});
