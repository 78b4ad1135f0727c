// What each signal does to the daemon (docs/operations.md "Signals, exit codes and the drain").
//
// Every signal a local user or a supervisor may send is decided here, none is left at Node's
// default: the defaults kill the process without a drain (SIGHUP, SIGUSR2, SIGQUIT: phones see
// 1006) or, for SIGUSR1, start Node's inspector on 127.0.0.1:9229, which lets any local user run
// code as the relay. Installing a listener replaces the default action, the inspector's included.

import type { Logger } from './log.js';

/** Signals that start the graceful drain (the first one; later ones are ignored). SIGQUIT drains
 * too: some supervisors and operators use it as "graceful stop" (nginx), and a core dump or a
 * plain kill would cut every peer. */
export const DRAIN_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;

/** Signals that are logged and otherwise ignored. The relay has no configuration file and logs to
 * stderr, so there is nothing to reload or reopen on SIGHUP, and log rotation tools that send it
 * must not cause an outage; SIGUSR1/SIGUSR2 would otherwise start the inspector or kill. */
export const IGNORED_SIGNALS = ['SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const;

export type DrainSignal = (typeof DRAIN_SIGNALS)[number];

/** Installs the ignore handlers at once (call this first thing at boot). */
export function ignoreSignals(log: () => Logger): void {
  for (const signal of IGNORED_SIGNALS) process.on(signal, () => log().info('signal_ignored', { signal }));
}

/** Calls `onDrain` with the first drain signal; every later one is ignored rather than killing
 * the drain. */
export function onDrainSignal(onDrain: (signal: DrainSignal) => void): void {
  let fired = false;
  for (const signal of DRAIN_SIGNALS) {
    process.on(signal, () => {
      if (fired) return;
      fired = true;
      onDrain(signal);
    });
  }
}
