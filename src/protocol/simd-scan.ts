// The JSON scanner's hot loop, 16 bytes at a time. Large frames are mostly string bytes the relay
// only has to look at (validate, find the closing quote), and a byte-at-a-time JavaScript loop
// spends ~0.6 ns per byte there; a WebAssembly SIMD compare does the same in a fraction of that.
// The module is tiny and embedded (no build step, no native addon); where WebAssembly or SIMD is
// unavailable (e.g. node --jitless) the scanner keeps its JavaScript loop and the results are the
// same, only slower (docs/performance.md, "Where the targets stand").
//
// The WebAssembly text of the embedded module (compiled with wabt's wat2wasm, SIMD enabled):
//
//   (module
//     (memory (export "memory") 5)
//     ;; First index p >= i of a byte a string scan must look at (< 0x20 " \ < > & 0xE2), checked in
//     ;; whole 16-byte blocks: either memory[p] is such a byte, or fewer than 16 bytes remain
//     ;; before `end` and the caller scans those itself.
//     (func (export "skip") (param $i i32) (param $end i32) (result i32)
//       (local $v v128) (local $m i32) (local $ctl v128) (local $quote v128) (local $bslash v128)
//       (local $lt v128) (local $gt v128) (local $amp v128) (local $e2 v128)
//       (local.set $ctl (i8x16.splat (i32.const 0x20)))   ... one splat per byte value above ...
//       (block $done
//         (loop $next
//           (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 16)) (local.get $end)))
//           (local.set $v (v128.load align=1 (local.get $i)))
//           (local.set $m (i8x16.bitmask (v128.or ... (i8x16.lt_u $v $ctl) (i8x16.eq $v $quote) ...
//                                          (i8x16.eq $v $e2))))
//           (if (local.get $m) (then (return (i32.add (local.get $i) (i32.ctz (local.get $m))))))
//           (local.set $i (i32.add (local.get $i) (i32.const 16)))
//           (br $next)))
//       (local.get $i)))

const WASM_BASE64 =
  'AGFzbQEAAAABBwFgAn9/AX8DAgEABQMBAAUHEQIGbWVtb3J5AgAEc2tpcAAACqABAZ0BAwF7AX8He0Eg/Q8hBEEi/Q8hBUHcAP0PIQZBPP0PIQdBPv0PIQhBJv0PIQlB4gH9DyEKAkADQCAAQRBqIAFLDQEgAP0AAAAhAiACIAT9JiACIAX9I/1QIAIgBv0jIAIgB/0j/VD9UCACIAj9IyACIAn9I/1QIAIgCv0j/VD9UP1kIQMgAwRAIAAgA2hqDwsgAEEQaiEADAALCyAACw==';

/** WebAssembly pages are 64 KiB. */
const WASM_PAGE_BYTES = 64 * 1024;
/** The scratch memory never grows past this (a little over the relay's 256 KiB message limit);
 * longer inputs are scanned by the JavaScript loop. */
const MAX_MIRROR_BYTES = 8 * WASM_PAGE_BYTES;

export interface SimdScanner {
  /** Copies `buf` into the module's memory; false if it does not fit. */
  load(buf: Uint8Array): boolean;
  /** See the module text above: same indexes as in the loaded buffer. */
  skip(i: number, end: number): number;
}

/** The part of the WebAssembly API used here (the project compiles without the DOM library,
 * which is where TypeScript declares it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

function instantiate(): SimdScanner | null {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (wasm === undefined) return null;
  try {
    const bytes = Buffer.from(WASM_BASE64, 'base64');
    if (!wasm.validate(bytes)) return null; // no SIMD in this engine
    const instance = new wasm.Instance(new wasm.Module(bytes));
    const memory = instance.exports.memory as WasmMemory;
    const skip = instance.exports.skip as (i: number, end: number) => number;
    let view = new Uint8Array(memory.buffer);
    return {
      load(buf: Uint8Array): boolean {
        if (buf.length > view.length) {
          if (buf.length > MAX_MIRROR_BYTES) return false;
          memory.grow(Math.ceil((buf.length - view.length) / WASM_PAGE_BYTES));
          view = new Uint8Array(memory.buffer);
        }
        view.set(buf, 0);
        return true;
      },
      skip,
    };
  } catch {
    return null; // WebAssembly disabled (e.g. --jitless): the JavaScript loop does the work
  }
}

/** The process-wide scanner, or null where WebAssembly SIMD is not available. */
export const simdScanner: SimdScanner | null = instantiate();
