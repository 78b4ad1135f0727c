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

// GLIBC_TUNABLES, set by the same launchers in the daemon's environment (glibc reads it once, at
// process start; other C libraries ignore it). glibc's malloc gives the top of its heap back to
// the kernel whenever more than 128 KiB there is free, and takes fresh pages again on the next
// allocation: at 16 KiB frames (64 KiB socket reads, 16 KiB messages that span two reads) a
// process could settle into doing that on every few frames, 1-2 minor page faults per frame at
// 10-25 µs each on this VM, doubling the CPU per frame for minutes at a time while an identical
// process next to it did not (docs/performance.md, "Where the targets stand"). trim_threshold
// 64 MiB keeps up to 64 MiB of freed heap top for reuse; setting it also stops glibc's dynamic
// mmap threshold, so mmap_threshold is set too (1 MiB: every message, envelope and socket buffer
// of the relay comes from the heap instead of a fresh mapping). The cost: up to 64 MiB of freed
// memory may stay in the process after a burst, as with the V8 flag above.
export const GLIBC_TUNABLES = 'glibc.malloc.trim_threshold=67108864:glibc.malloc.mmap_threshold=1048576';
