// Every citation resolves inside the repository. Comments and docs cite rules as
// `docs/<file>.md, "<heading>"` (inside docs/ the `docs/` prefix may be dropped), with the heading
// on the same line exactly as the doc spells it, so this test can check that the file exists and
// has that heading. The reference relay's spec and decision log live outside the repository, so no
// file may cite them.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, sourceFiles } from './helpers/repo.js';

const SELF = 'test/citations.test.ts';
const DOCS = readdirSync(join(REPO_ROOT, 'docs'))
  .filter((name) => name.endsWith('.md'))
  .map((name) => `docs/${name}`);
const FILES = [...['src', 'telemetry', 'test', 'bench'].flatMap((dir) => sourceFiles(dir)), ...DOCS, 'README.md'].map(
  (file) => ({ file, text: readFileSync(join(REPO_ROOT, file), 'utf8') }),
);

/** Written in pieces so this file does not mention what it forbids. */
const OUTSIDE_SPEC = ['relay', 'behaviour.md'].join('-');
const OUTSIDE_DECISIONS = ['DECISIONS', 'md'].join('.');

/** `docs/protocol.md, "` or `protocol.md "`: the start of a citation; the heading follows. */
const CITATION = /(?:docs\/)?\b([a-z][a-z0-9-]*\.md),? "([^"\n]*)("?)/g;
/** A doc name and its comma at the end of a line: the heading went to the next line, unchecked. */
const DANGLING = /\b[a-z][a-z0-9-]*\.md,[ \t]*$/gm;

const headingCache = new Map<string, Set<string>>();
function headings(doc: string): Set<string> {
  let set = headingCache.get(doc);
  if (set === undefined) {
    const text = readFileSync(join(REPO_ROOT, doc), 'utf8');
    set = new Set([...text.matchAll(/^#{1,6} (.+?)\s*$/gm)].map((m) => m[1]!));
    headingCache.set(doc, set);
  }
  return set;
}

/** What is wrong with the citations in `text`, and how many there are. */
function check(file: string, text: string): { problems: string[]; count: number } {
  const problems: string[] = [];
  let count = 0;
  for (const m of text.matchAll(CITATION)) {
    const [, name, heading, closed] = m;
    const doc = `docs/${name}`;
    count++;
    if (closed !== '"') problems.push(`${file}: ${m[0]} (the heading must end on the same line)`);
    else if (!existsSync(join(REPO_ROOT, doc))) problems.push(`${file}: ${m[0]} (no such doc)`);
    else if (!headings(doc).has(heading!)) problems.push(`${file}: ${m[0]} (${doc} has no such heading)`);
  }
  for (const m of text.matchAll(DANGLING)) problems.push(`${file}: ${m[0]} (the heading must be on the same line)`);
  return { problems, count };
}

describe('citations', () => {
  it(`no file cites ${OUTSIDE_SPEC} or ${OUTSIDE_DECISIONS} (neither is in the repository)`, () => {
    for (const { file, text } of FILES) {
      expect(text.includes(OUTSIDE_SPEC), `${file} cites ${OUTSIDE_SPEC}`).toBe(false);
      expect(text.includes(OUTSIDE_DECISIONS), `${file} cites ${OUTSIDE_DECISIONS}`).toBe(false);
    }
  });

  it('every `docs/X.md, "Heading"` citation names an existing doc and one of its headings', () => {
    const problems: string[] = [];
    let count = 0;
    for (const { file, text } of FILES.filter((f) => f.file !== SELF)) {
      const result = check(file, text);
      problems.push(...result.problems);
      count += result.count;
    }
    expect(problems).toEqual([]);
    // Not vacuous: the sources cite the docs many times.
    expect(count).toBeGreaterThan(50);
  });

  it('the check catches a wrong heading, a heading split over two lines and a missing doc', () => {
    expect(check('a.ts', '// see docs/protocol.md, "Envelopes".')).toEqual({ problems: [], count: 1 });
    expect(check('a.ts', '// see docs/protocol.md, "Envelope".').problems).toEqual([
      'a.ts: docs/protocol.md, "Envelope" (docs/protocol.md has no such heading)',
    ]);
    expect(check('a.ts', '// see docs/protocol.md, "Close codes and\n// what to do about them"').problems).toEqual([
      'a.ts: docs/protocol.md, "Close codes and (the heading must end on the same line)',
    ]);
    expect(check('a.ts', '// see docs/protocol.md,\n// "Envelopes"').problems).toEqual([
      'a.ts: protocol.md, (the heading must be on the same line)',
    ]);
    expect(check('a.ts', '// see docs/nothing.md, "Envelopes"').problems).toEqual([
      'a.ts: docs/nothing.md, "Envelopes" (no such doc)',
    ]);
  });
});
