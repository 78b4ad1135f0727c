// docs/ops/cluster/alerts.yml: promtool accepts the rules with every lint, its unit tests pass, and
// every series an alert selects is exported by a real cluster instance (nats-server + a daemon).
// promtool or nats-server missing locally: skipped loudly; under CI: a failure.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Instance,
  type Nats,
  natsServerAvailable,
  startInstance,
  startNats,
  stopInstances,
} from '../helpers/cluster.js';

const RULES = fileURLToPath(new URL('../../docs/ops/cluster/alerts.yml', import.meta.url));
const TESTS = fileURLToPath(new URL('../../docs/ops/cluster/alerts.test.yml', import.meta.url));
const DASHBOARD = fileURLToPath(new URL('../../docs/ops/cluster/grafana-dashboard.json', import.meta.url));
const OPERATIONS = fileURLToPath(new URL('../../docs/operations.md', import.meta.url));
const hasPromtool = spawnSync('promtool', ['--version'], { timeout: 10_000 }).status === 0;
if (!hasPromtool && process.env['CI'] === 'true') throw new Error('promtool is required under CI');
if (!hasPromtool) console.warn('SKIPPING cluster alert checks: promtool missing');
const available = natsServerAvailable();

const promtool = (args: string[]): { status: number | null; output: string } => {
  const r = spawnSync('promtool', args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
};

describe.skipIf(!hasPromtool)('docs/ops/cluster/alerts.yml with promtool', () => {
  it('check rules passes with every lint; the unit tests pass', () => {
    const check = promtool(['check', 'rules', '--lint=all', '--lint-fatal', RULES]);
    expect(check.output).toContain('SUCCESS: 3 rules found');
    expect(check.status).toBe(0);
    const test = promtool(['test', 'rules', TESTS]);
    expect(test.output, test.output).toContain('SUCCESS');
    expect(test.status).toBe(0);
  });

  it('every alert has a runbook section in docs/operations.md', () => {
    const ops = readFileSync(OPERATIONS, 'utf8');
    for (const m of readFileSync(RULES, 'utf8').matchAll(/- alert: (\w+)/g)) {
      expect(ops).toContain(`### Alert: ${m[1]}`);
      expect(readFileSync(RULES, 'utf8')).toContain(`docs/operations.md#alert-${m[1]!.toLowerCase()}`);
    }
  });
});

describe.skipIf(!available)('the cluster alerts select series a real instance exports', () => {
  let nats: Nats;
  let a: Instance;
  beforeAll(async () => {
    nats = await startNats();
    a = await startInstance('a', nats.url);
  }, 30_000);
  afterAll(async () => {
    await stopInstances();
    await nats?.dispose();
  });

  it('every query of docs/ops/cluster/grafana-dashboard.json names families on the scrape, and promtool parses it', async () => {
    const scrape = await a.scrape();
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(exprs.length).toBeGreaterThanOrEqual(8);
    for (const expr of exprs) {
      const names = [...expr.matchAll(/(pyrycode_relay_cluster_\w+)\{/g)].map((m) => m[1]!);
      expect(names.length, expr).toBeGreaterThan(0);
      for (const name of names) expect(scrape, name).toMatch(new RegExp(`^${name}[{ ]`, 'm'));
    }
    if (hasPromtool) {
      const dir = mkdtempSync(join(tmpdir(), 'pyry-dash-'));
      try {
        const rules = exprs
          .map(
            (e, i) =>
              `      - record: dash:q${i}\n        expr: '${e.replaceAll('$job', 'pyrycode-relay').replaceAll('$instance', '.*').replaceAll("'", "''")}'`,
          )
          .join('\n');
        writeFileSync(join(dir, 'q.yml'), `groups:\n  - name: q\n    rules:\n${rules}\n`);
        const r = promtool(['check', 'rules', join(dir, 'q.yml')]);
        expect(r.status, r.output).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('each selector names a family on the scrape, with label values it produces', async () => {
    const scrape = await a.scrape();
    const rules = readFileSync(RULES, 'utf8');
    const selectors = [...rules.matchAll(/(pyrycode_relay_cluster_\w+)\{([^}]*)\}/g)];
    expect(selectors.length).toBe(3);
    for (const [, name, matchers] of selectors) {
      expect(scrape, name).toMatch(new RegExp(`^${name}[{ ]`, 'm'));
      for (const [, label, op, value] of matchers!.matchAll(/(\w+)(=~|=)"([^"]*)"/g)) {
        if (label === 'job') continue;
        const values = op === '=~' ? value!.split('|') : [value!];
        for (const v of values) expect(scrape, `${name}{${label}="${v}"}`).toContain(`${name}{${label}="${v}"}`);
      }
    }
  });
});
