// Every launcher the project ships starts the daemon with the Node flags and the GLIBC_TUNABLES of
// src/node-flags.ts (why: the comments there and docs/operations.md, "What you are running"), and
// Node accepts them.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GLIBC_TUNABLES, NODE_FLAGS } from '../../src/node-flags.js';
import { VERSION } from '../../src/version.js';
import { DAEMON_MAIN } from '../helpers/daemon.js';
import { REPO_ROOT } from '../helpers/repo.js';
import { join } from 'node:path';

const FLAGS = NODE_FLAGS.join(' ');
const TUNABLES = `GLIBC_TUNABLES=${GLIBC_TUNABLES}`;
const read = (path: string): string => readFileSync(join(REPO_ROOT, path), 'utf8');

describe('the daemon is started with NODE_FLAGS and GLIBC_TUNABLES everywhere', () => {
  it('npm start', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`${TUNABLES} exec node ${FLAGS} dist/src/main.js`);
  });

  it("the pyrycode-relay command's shebang, in the source and in the build", () => {
    expect(read('src/main.ts').split('\n')[0]).toBe(`#!/usr/bin/env -S ${TUNABLES} node ${FLAGS}`);
    expect(readFileSync(DAEMON_MAIN, 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S ${TUNABLES} node ${FLAGS}`);
  });

  it.each(['docs/ops/pyrycode-relay.service', 'docs/ops/cluster/pyrycode-relay@.service'])('%s', (unit) => {
    const execStart = /^ExecStart=(.*)$/m.exec(read(unit))?.[1];
    expect(execStart).toMatch(new RegExp(`^/usr/bin/node ${FLAGS} /opt/pyrycode-relay/dist/src/main\\.js `));
    expect(read(unit)).toMatch(new RegExp(`^Environment=${TUNABLES}$`, 'm'));
  });

  it('every command line in docs/operations.md and the README that runs dist/src/main.js', () => {
    for (const doc of ['docs/operations.md', 'README.md']) {
      const lines = read(doc).split('\n');
      const runs = lines.flatMap((line, i) => (/\bnode\b.*dist\/src\/main\.js/.test(line) ? [i] : []));
      expect(runs.length, doc).toBeGreaterThan(0);
      for (const i of runs) {
        const line = lines[i]!;
        // A unit excerpt sets the environment on the line before its ExecStart=.
        if (line.startsWith('ExecStart=')) {
          expect(lines[i - 1], `${doc}: ${line}`).toBe(`Environment=${TUNABLES}`);
          expect(line, `${doc}: ${line}`).toContain(`node ${FLAGS} `);
        } else expect(line, `${doc}: ${line}`).toContain(`${TUNABLES} node ${FLAGS} `);
      }
    }
  });
});

describe('Node accepts the flags', () => {
  it('the built daemon runs with them: --version exits 0 with the version', () => {
    const r = spawnSync(process.execPath, [...NODE_FLAGS, DAEMON_MAIN, '--version'], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(VERSION);
  });

  it('through the shebang: the daemon process gets GLIBC_TUNABLES in its environment', () => {
    const shebang = readFileSync(DAEMON_MAIN, 'utf8').split('\n')[0]!.slice(2).split(' ');
    const r = spawnSync(shebang[0]!, [...shebang.slice(1), '-e', 'process.stdout.write(process.env.GLIBC_TUNABLES)'], {
      encoding: 'utf8',
      timeout: 10_000,
      env: { ...process.env, PATH: `${process.execPath.replace(/\/node$/, '')}:${process.env.PATH ?? ''}` },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(GLIBC_TUNABLES);
  });

  it('through the shebang: /usr/bin/env -S splits them the way the kernel cannot', () => {
    const shebang = readFileSync(DAEMON_MAIN, 'utf8').split('\n')[0]!.slice(2).split(' ');
    const r = spawnSync(shebang[0]!, [...shebang.slice(1), DAEMON_MAIN, '--version'], {
      encoding: 'utf8',
      timeout: 10_000,
      env: { ...process.env, PATH: `${process.execPath.replace(/\/node$/, '')}:${process.env.PATH ?? ''}` },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(VERSION);
  });
});
