// The Node.js (V8) flags the daemon is started with. Every launcher the project ships passes
// exactly these between `node` and the script: `npm start`, the `pyrycode-relay` command's shebang
// (src/main.ts) and the systemd units in docs/ops/ (test/ops/node-flags.test.ts checks all of them),
// and the bench starts both the relay and the bare forwarder with them.
//
// --initial-old-space-size=64 (MiB): a floor under V8's old-generation limit. The relay's old
// generation is small (about 8 MiB live at a few connections) while its young generation grows to
// its 16 MiB semi-spaces under load; V8 then starts incremental marking whenever what is left
// below the limit is smaller than the young generation, which at 16 KiB frames meant a full
// mark-compact every 50-150 ms (17-99 per run instead of 0-2) and 25-60 % more CPU per frame
// (docs/performance.md, "Where the targets stand"). With the floor the slack stays larger than the
// young generation until the old generation really holds 64 MiB; above that (a relay holding tens
// of thousands of connections) V8's own limit is higher anyway and the flag changes nothing. The
// cost: up to about 56 MiB more of old-generation garbage may wait for its collection. The flag
// cannot be set from inside the process (the heap is configured before any script runs) nor
// through NODE_OPTIONS (Node refuses it there).
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
