// docs/architecture.md stays true to the tree: its module table names every source file of src/ and
// telemetry/ and nothing else, its relative links resolve, its Mermaid blocks are well-formed
// fences with a known diagram type, and every runbook link in docs/ops/alerts.yml uses the anchor
// scheme the architecture doc announces.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { sourceFiles } from '../helpers/repo.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOC_PATH = join(ROOT, 'docs/architecture.md');
const doc = readFileSync(DOC_PATH, 'utf8');

describe('docs/architecture.md', () => {
  it('the module table lists every file of src/ and telemetry/, and only files that exist', () => {
    const tableFiles = [...doc.matchAll(/^\| `((?:src|telemetry)\/[\w/-]+\.ts)` \|/gm)].map((m) => m[1]!);
    expect(new Set(tableFiles).size, 'no file listed twice').toBe(tableFiles.length);
    expect([...tableFiles].sort()).toEqual([...sourceFiles('src'), ...sourceFiles('telemetry')].sort());
  });

  it('every file path it mentions exists', () => {
    for (const m of doc.matchAll(/`((?:src|telemetry|test|docs)\/[\w./-]+\.(?:ts|md|yml|yaml|json|service))`/g)) {
      expect(existsSync(join(ROOT, m[1]!)), m[1]).toBe(true);
    }
  });

  it('every relative link resolves (operations.md anchors are checked by their writer)', () => {
    for (const m of doc.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue;
      expect(existsSync(join(dirname(DOC_PATH), target)), target).toBe(true);
    }
  });

  it('has the overview, upgrade, frame and grace diagrams as Mermaid blocks', () => {
    const fences = doc.match(/^```/gm) ?? [];
    expect(fences.length % 2, 'balanced code fences').toBe(0);
    const blocks = [...doc.matchAll(/^```mermaid\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
    expect(blocks.map((b) => b.trim().split(/\s/)[0])).toEqual([
      'flowchart',
      'sequenceDiagram',
      'sequenceDiagram',
      'stateDiagram-v2',
    ]);
    // Sequence diagrams: every alt/opt/loop block is closed.
    for (const block of blocks.filter((b) => b.startsWith('sequenceDiagram'))) {
      const opened = block.match(/^\s*(alt|opt|loop|par|critical)\b/gm)?.length ?? 0;
      const closed = block.match(/^\s*end\s*$/gm)?.length ?? 0;
      expect(closed).toBe(opened);
    }
  });

  it('covers the core/telemetry boundary and why metrics are pull-based and label-less', () => {
    expect(doc).toMatch(/^## The core\/telemetry boundary$/m);
    expect(doc).toMatch(/^## Why the metrics are pull-based$/m);
    expect(doc).toMatch(/^## Why the metrics are label-less$/m);
    expect(doc).toContain('@opentelemetry/api');
  });

  it('the alert runbook links follow the anchor scheme it announces', () => {
    const alerts = readFileSync(join(ROOT, 'docs/ops/alerts.yml'), 'utf8');
    expect(doc).toContain('operations.md#alert-<alert name in lower case>');
    const runbooks = [...alerts.matchAll(/runbook_url: "([^"]+)"/g)].map((m) => m[1]!);
    expect(runbooks.length).toBeGreaterThan(0);
    for (const r of runbooks) expect(r).toMatch(/^docs\/operations\.md#alert-[a-z]+$/);
  });
});

describe('alert runbooks', () => {
  it('every runbook_url in docs/ops/alerts.yml has its section in docs/operations.md', () => {
    const root = new URL('../..', import.meta.url).pathname;
    const alerts = readFileSync(`${root}docs/ops/alerts.yml`, 'utf8');
    const operations = readFileSync(`${root}docs/operations.md`, 'utf8');
    // GitHub's heading slugs: lower case, punctuation other than '-' dropped, spaces to '-'.
    const slugs = new Set(
      [...operations.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    const anchors = [...alerts.matchAll(/runbook_url: "docs\/operations\.md#([^"]+)"/g)].map((m) => m[1]!);
    expect(anchors.length).toBe(10);
    for (const anchor of anchors) expect(slugs.has(anchor), `docs/operations.md#${anchor}`).toBe(true);
  });
});
