// The event names of every boot refusal (exit 2, one ERROR line), in one table: parseConfig and
// main.ts both refuse through it, so an operator's log search matches every refusal the docs list
// (docs/operations.md, "Refusals at boot").

/** Event names of every boot refusal but the production preflight's (preflight.ts has its own). */
export const REFUSAL_EVENTS = {
  commandLine: 'refusing to start: invalid command line',
  noMode: 'refusing to start: no listener mode',
  conflictingFlags: 'refusing to start: conflicting flags',
  invalidFlagValue: 'refusing to start: invalid flag value',
  invalidListenerAddress: 'refusing to start: invalid listener address',
  invalidMetricsListen: 'refusing to start: invalid --metrics-listen address',
  invalidEnv: 'refusing to start: invalid env-var config',
  multiInstance: 'refusing to start: multi-instance deploy detected',
  insecureInProduction: 'refusing to start: --insecure-listen is not allowed in production mode',
  // Refused by main.ts after parsing: facts parseConfig cannot see (files, the bindings).
  unexpectedListenerPorts: 'refusing to start: unexpected listener ports',
  unreadableTlsFile: 'refusing to start: cannot read TLS file',
  invalidTlsFile: 'refusing to start: invalid TLS certificate or key',
} as const;
