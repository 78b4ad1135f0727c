// Turns a bench result (bench/results/latest.json) into what an operator reads: the results
// section of docs/performance.md (targets, per-scenario table) and a chart of per-core capacity,
// relay against the bare ws limit, rendered to SVG with vega-lite (no hand-drawn figures).
//
// Usage: node dist/bench/report.js [results.json] [--docs]
//   Writes <results>.svg beside the results; with --docs also refreshes docs/performance.md and
//   docs/performance-chart.svg (the bench does this itself after a full run).

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

export const RESULTS_START = '<!-- bench:results:start -->';
export const RESULTS_END = '<!-- bench:results:end -->';
export const CHART_FILE = 'performance-chart.svg';

/** Targets of issue 16 (docs/performance.md, "Targets"). */
export const TARGETS = {
  perCore128: 0.95,
  perCore16k: 0.7,
  rssPerPhoneBytes: 10 * 1024,
  upgradesVsBare: 0.8,
  /** The Go reference relay's upgrade rate on the bench machine (64 opening at once). */
  goUpgradesPerSec: 3_841,
  scaleEventLoopP99Ms: 20,
  scrapeMs: 5,
  metricsOnVsOff: 0.97,
  p99VsBare: 1.5,
} as const;

type Row = Record<string, number>;
export interface BenchResults {
  throughput_frames_per_sec: Record<string, Row>;
  server_cpu_us_per_frame: Record<string, Row>;
  latency_ms: Record<string, Row>;
  memory: Row;
  scrape: Row;
  upgrades: Row;
  ratios: Row;
  scale?: Row;
  meta: Record<string, unknown> & { plan: Record<string, unknown> };
}

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));
const pass = (ok: boolean): string => (ok ? 'met' : '**missed**');
/** Per-core capacity in frames per second for one core: 1 / CPU per frame. */
const perCore = (cpuUs: number): number => 1e6 / cpuUs;

/** The results section of docs/performance.md. */
export function markdownReport(r: BenchResults): string {
  const ratios = r.ratios;
  const plan = r.meta.plan;
  const lines: string[] = [];
  /** A missed ratio at or above the A/A floor is within what two identical relays differed by. */
  const noisy = (ratio: number, floor: number, target: number = TARGETS.metricsOnVsOff): string =>
    ratio >= target ? 'met' : ratio >= floor ? '**missed**, inside the A/A noise floor (see below)' : '**missed**';
  lines.push(
    `Measured ${String(r.meta.date).slice(0, 10)} on ${String(r.meta.cpus)} × ${String(r.meta.cpu_model)}, Node ${String(r.meta.node)}, ` +
      `${String(r.meta.pinned)}; ${String(r.meta.mode)} run, median of ${String(plan.repeats)} interleaved repeats, ${Number(plan.measureMs) / 1000} s each` +
      `${Number(plan.warmupRepeats ?? 0) > 0 ? ', after a warm-up pass that is not counted' : ''}.`,
    '',
    `![Per-core capacity, relay against the bare ws forwarder, per scenario](${CHART_FILE})`,
    '',
    '| Target | Measured | |',
    '|---|---|---|',
    `| 128 B: relay per-core capacity ≥ ${TARGETS.perCore128} × the corked bare forwarder, every scenario | lowest ${ratios.per_core_vs_bare_128_min!.toFixed(3)}; A/A noise floor: lowest ${ratios.a_a_noise_per_core_min!.toFixed(3)} | ${noisy(ratios.per_core_vs_bare_128_min!, ratios.a_a_noise_per_core_min!, TARGETS.perCore128)} |`,
    `| 16 KiB: relay per-core capacity ≥ ${TARGETS.perCore16k} × the bare forwarder, every scenario | lowest ${ratios.per_core_vs_bare_16k_min!.toFixed(3)}; A/A noise floor: lowest ${ratios.a_a_noise_per_core_min!.toFixed(3)} | ${noisy(ratios.per_core_vs_bare_16k_min!, ratios.a_a_noise_per_core_min!, TARGETS.perCore16k)} |`,
    `| idle memory ≤ 10 KiB RSS per connection at 5,000 phones | ${fmt(r.memory.rss_bytes_per_idle_phone!)} B at ${r.memory.idle_phones_measured} phones (bare forwarder: ${fmt(r.memory.bare_rss_bytes_per_idle_phone!)} B) | ${pass(r.memory.rss_bytes_per_idle_phone! <= TARGETS.rssPerPhoneBytes)} |`,
    upgradeRow(r),
  );
  if (r.scale !== undefined) {
    const s = r.scale;
    lines.push(
      `| ${fmt(s.phones_held!)} idle phones on one process: ≤ 10 KiB RSS each, event-loop p99 < ${TARGETS.scaleEventLoopP99Ms} ms, scrape < ${TARGETS.scrapeMs} ms | ${fmt(s.rss_bytes_per_phone!)} B, p99 ${s.event_loop_p99_ms!.toFixed(2)} ms, scrape ${s.scrape_ms!.toFixed(2)} ms; all connected in ${s.connect_seconds!.toFixed(1)} s; idle CPU ${(100 * s.idle_cpu_cores!).toFixed(1)} % of a core | ${pass(s.rss_bytes_per_phone! <= TARGETS.rssPerPhoneBytes && s.event_loop_p99_ms! < TARGETS.scaleEventLoopP99Ms && s.scrape_ms! < TARGETS.scrapeMs)} |`,
    );
  }
  lines.push(
    `| metrics on ≥ ${TARGETS.metricsOnVsOff} × metrics off (per-core capacity, lowest scenario) | ${ratios.metrics_on_vs_off_per_core!.toFixed(3)}; A/A noise floor: lowest ${ratios.a_a_noise_per_core_min!.toFixed(3)} | ${noisy(ratios.metrics_on_vs_off_per_core!, ratios.a_a_noise_per_core_min!)} |`,
    `| metrics on ≥ ${TARGETS.metricsOnVsOff} × metrics off (frames/s, lowest scenario) | ${ratios.metrics_on_vs_off!.toFixed(3)} (median ${ratios.metrics_on_vs_off_median!.toFixed(3)}); A/A noise floor: lowest ${ratios.a_a_noise_min!.toFixed(3)} | ${noisy(ratios.metrics_on_vs_off!, ratios.a_a_noise_min!)} |`,
    `| p99 round trip at half load ≤ ${TARGETS.p99VsBare} × bare | ${ratios.p99_relay_vs_bare!.toFixed(3)} | ${pass(ratios.p99_relay_vs_bare! <= TARGETS.p99VsBare)} |`,
    `| scrape < ${TARGETS.scrapeMs} ms with 5,000 connections, independent of connections | ${r.scrape.ms_at_5000!.toFixed(2)} ms (${r.scrape.ms_at_0!.toFixed(2)} ms at 0) | ${pass(r.scrape.ms_at_5000! < TARGETS.scrapeMs)} |`,
    '',
    'Per-core capacity is 1 / server CPU per frame (frames one core carries); frames/s is what the load generator measured, which at 128 B is usually limited by the load generator, not the server.',
    '',
    '| Scenario | per-core capacity, bare | relay (metrics on) | relay/bare | A/A (off twin/off) | frames/s bare | relay off | relay on | CPU µs/frame (bare / off / on / off twin) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|',
  );
  for (const [key, t] of Object.entries(r.throughput_frames_per_sec)) {
    const c = r.server_cpu_us_per_frame[key]!;
    lines.push(
      `| ${key} | ${fmt(perCore(c.bare!))} | ${fmt(perCore(c.relay_on!))} | ${(c.bare! / c.relay_on!).toFixed(3)} | ${(c.relay_off! / c.relay_off_twin!).toFixed(3)} | ${fmt(t.bare!)} | ${fmt(t.relay_off!)} | ${fmt(t.relay_on!)} | ${c.bare!.toFixed(2)} / ${c.relay_off!.toFixed(2)} / ${c.relay_on!.toFixed(2)} / ${c.relay_off_twin!.toFixed(2)} |`,
    );
  }
  const l = r.latency_ms;
  const idle = (plan.idle as number[]) ?? [];
  lines.push(
    '',
    `Round trip (128 B, ${fmt(l.relay_on!.ratePerSec!)}/s): bare p50 ${fmt(l.bare!.p50Ms!)} ms, p99 ${fmt(l.bare!.p99Ms!)} ms, p99.9 ${fmt(l.bare!.p999Ms!)} ms; ` +
      `relay p50 ${fmt(l.relay_on!.p50Ms!)} ms, p99 ${fmt(l.relay_on!.p99Ms!)} ms, p99.9 ${fmt(l.relay_on!.p999Ms!)} ms.`,
    '',
    `Memory per idle connection (phones and their binaries): ${idle.map((n) => `${fmt(r.memory[`rss_bytes_per_connection_at_${n}`]!)} B RSS / ${fmt(r.memory[`heap_bytes_per_connection_at_${n}`]!)} B heap at ${n} phones`).join('; ')}; bare forwarder ${fmt(r.memory.bare_rss_bytes_per_idle_phone!)} B RSS.`,
    `Scrape: ${r.scrape.bytes} bytes, ${fmt(r.scrape.cpu_ms_per_scrape!)} ms of relay CPU each. ${upgradeLine(r, Number(plan.upgradeRepeats))}`,
    '',
  );
  return lines.join('\n');
}

/** The upgrades target row. Results from before the raw client lack the CPU figures; the Go
 * comparison uses the reference measured in the same run when there is one, else the ws-client
 * rate against the 3,841/s an earlier session measured with that client. */
function upgradeRow(r: BenchResults): string {
  const u = r.upgrades;
  const ratios = r.ratios;
  const perCore = ratios.upgrades_per_core_vs_bare;
  const refRate = u.reference_accepted_per_sec;
  const goText =
    refRate === undefined
      ? `ws client ${fmt(u.ws_client_accepted_per_sec ?? u.accepted_per_sec!)}/s against the Go reference's ${fmt(TARGETS.goUpgradesPerSec)}/s`
      : `reference in the same run ${fmt(refRate)}/s (${fmt(u.reference_server_cpu_us_per_upgrade!)} µs CPU each)`;
  const aheadOfGo =
    refRate === undefined
      ? (u.ws_client_accepted_per_sec ?? u.accepted_per_sec!) > TARGETS.goUpgradesPerSec
      : u.accepted_per_sec! > refRate;
  const cpuText =
    perCore === undefined
      ? ''
      : `; per core ${perCore.toFixed(3)} × (${fmt(u.server_cpu_us_per_upgrade!)} µs against ${fmt(u.bare_server_cpu_us_per_upgrade!)} µs of server CPU per upgrade)`;
  return `| upgrades (64 opening at once) ≥ ${TARGETS.upgradesVsBare} × a bare ws server, and ahead of the Go reference | ${ratios.upgrades_vs_bare!.toFixed(3)} × (${fmt(u.accepted_per_sec!)}/s against ${fmt(u.bare_accepted_per_sec!)}/s)${cpuText}; ${goText} | ${pass(ratios.upgrades_vs_bare! >= TARGETS.upgradesVsBare && aheadOfGo)} |`;
}

/** The upgrades sentence under the tables. */
function upgradeLine(r: BenchResults, repeats: number): string {
  const u = r.upgrades;
  const runs = `median of ${String(repeats)} interleaved runs of ${fmt(u.connections!)} connections`;
  if (u.server_cpu_us_per_upgrade === undefined) {
    return `Upgrades: relay ${fmt(u.accepted_per_sec!)}/s, bare ws server ${fmt(u.bare_accepted_per_sec!)}/s (${runs}).`;
  }
  return (
    `Upgrades (handshake-only client): relay ${fmt(u.accepted_per_sec!)}/s, bare ws server ${fmt(u.bare_accepted_per_sec!)}/s; ` +
    `server CPU per accepted upgrade ${fmt(u.server_cpu_us_per_upgrade)} µs against ${fmt(u.bare_server_cpu_us_per_upgrade!)} µs, ` +
    `i.e. ${fmt(u.per_core_upgrades_per_sec!)} against ${fmt(u.bare_per_core_upgrades_per_sec!)} upgrades per core-second; ` +
    `with a full ws client: ${fmt(u.ws_client_accepted_per_sec!)}/s against ${fmt(u.bare_ws_client_accepted_per_sec!)}/s (${runs}).`
  );
}

/** One bar per scenario and target, 128 B and 16 KiB side by side (their scales differ). */
export async function chartSvg(r: BenchResults): Promise<string> {
  const values: { scenario: string; size: string; target: string; capacity: number }[] = [];
  for (const [key, c] of Object.entries(r.server_cpu_us_per_frame)) {
    // "p2b 16384 B, 200 ids x 4 phones" -> size "16 KiB", scenario "p2b, 200 ids x 4 phones (0.71×)"
    const m = /^(\w+) (\d+) B, (.*)$/.exec(key);
    if (m === null) continue;
    const size = Number(m[2]) >= 1024 ? `${Number(m[2]) / 1024} KiB frames` : `${m[2]} B frames`;
    const scenario = `${m[1]}, ${m[3]} (${(c.bare! / c.relay_on!).toFixed(2)}×)`;
    values.push({ scenario, size, target: 'bare ws forwarder (the limit)', capacity: perCore(c.bare!) });
    values.push({ scenario, size, target: 'relay, metrics on', capacity: perCore(c.relay_on!) });
  }
  const spec: vegaLite.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Frames per second one server core carries (higher is better)',
      subtitle: `relay/bare ratio in brackets; targets: ≥ ${TARGETS.perCore128}× at 128 B, ≥ ${TARGETS.perCore16k}× at 16 KiB; ${String(r.meta.mode)} run ${String(r.meta.date).slice(0, 10)}`,
    },
    data: { values },
    facet: { column: { field: 'size', type: 'nominal', title: null, sort: ['128 B frames', '16 KiB frames'] } },
    resolve: { scale: { x: 'independent', y: 'independent' } },
    spec: {
      width: 260,
      mark: { type: 'bar' },
      encoding: {
        y: { field: 'scenario', type: 'nominal', title: null, sort: null, axis: { labelLimit: 400 } },
        yOffset: { field: 'target', type: 'nominal' },
        x: { field: 'capacity', type: 'quantitative', title: 'frames/s per core', axis: { format: '~s' } },
        color: {
          field: 'target',
          type: 'nominal',
          title: null,
          scale: { range: ['#9e9e9e', '#1f77b4'] },
          legend: { orient: 'bottom', labelLimit: 400 },
        },
      },
    },
  };
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

/** Replaces the results section of docs/performance.md and writes the chart beside it. */
export async function refreshDocs(r: BenchResults, docsDir: string): Promise<void> {
  const docPath = join(docsDir, 'performance.md');
  const doc = readFileSync(docPath, 'utf8');
  const start = doc.indexOf(RESULTS_START);
  const end = doc.indexOf(RESULTS_END);
  if (start < 0 || end <= start) throw new Error(`${docPath} has no results markers`);
  writeFileSync(join(docsDir, CHART_FILE), await chartSvg(r));
  writeFileSync(docPath, doc.slice(0, start + RESULTS_START.length) + '\n' + markdownReport(r) + doc.slice(end));
}

// Run directly: render a results file.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
  const repoRoot = join(here, '..', '..');
  const file =
    process.argv.slice(2).find((a) => !a.startsWith('--')) ?? join(repoRoot, 'bench', 'results', 'latest.json');
  const results = JSON.parse(readFileSync(file, 'utf8')) as BenchResults;
  writeFileSync(file.replace(/\.json$/, '.svg'), await chartSvg(results));
  if (process.argv.includes('--docs')) await refreshDocs(results, join(repoRoot, 'docs'));
  else process.stdout.write(markdownReport(results) + '\n');
}
