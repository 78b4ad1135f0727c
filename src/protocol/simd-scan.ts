// The JSON scanner's hot loop, 16 bytes at a time. Large frames are mostly string bytes the relay
// only has to look at (validate, find the closing quote), and a byte-at-a-time JavaScript loop
// spends ~0.6 ns per byte there; a WebAssembly SIMD compare does the same in a fraction of that.
// The module is tiny and embedded (no build step, no native addon); where WebAssembly or SIMD is
// unavailable (e.g. node --jitless) the scanner keeps its JavaScript loop and the results are the
// same, only slower (docs/performance.md, "Where the targets stand").
//
// The WebAssembly text of the embedded module (compiled with wabt's wat2wasm, SIMD enabled). A
// byte is classified by its two nibbles, simdjson-style: one table lookup per nibble
// (i8x16.swizzle) and an AND are non-zero exactly for the bytes above (bit 0: < 0x20, bit 1: " &,
// bit 2: < >, bit 3: \, bit 4: 0xE2), so a block costs a load and five operations instead of seven
// compares and six ORs; four blocks (64 bytes) are tested per branch.
//
//   (module
//     (memory (export "memory") 5)
//     ;; First index p >= i of a byte a string scan must look at (< 0x20 " \ < > & 0xE2), checked in
//     ;; whole 16-byte blocks: either memory[p] is such a byte, or fewer than 16 bytes remain
//     ;; before `end` and the caller scans those itself.
//     (func (export "skip") (param $i i32) (param $end i32) (result i32)
//       (local $v v128) (local $t0 v128) ... (local $t3 v128) (local $lo v128) (local $hi v128) (local $nib v128)
//       (local.set $lo (v128.const i8x16 0x01 0x01 0x13 0x01 0x01 0x01 0x03 0x01 0x01 0x01 0x01 0x01 0x0d 0x01 0x05 0x01))
//       (local.set $hi (v128.const i8x16 0x01 0x01 0x02 0x04 0x00 0x08 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x10 0x00))
//       (local.set $nib (i8x16.splat (i32.const 0x0f)))
//       (block $done
//         (loop $quad
//           (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 64)) (local.get $end)))
//           ;; for k = 0..3, block at offset 16k:
//           (local.set $v (v128.load offset=16k align=1 (local.get $i)))
//           (local.set $tk (v128.and
//             (i8x16.swizzle (local.get $lo) (v128.and (local.get $v) (local.get $nib)))
//             (i8x16.swizzle (local.get $hi) (v128.and (i16x8.shr_u (local.get $v) (i32.const 4)) (local.get $nib)))))
//           (if (v128.any_true (v128.or (v128.or $t0 $t1) (v128.or $t2 $t3)))
//             (then ;; for k = 0..3: the first block with a hit returns
//               (if (v128.any_true $tk) (then (return (i32.add (i32.add (local.get $i) (i32.const 16k))
//                 (i32.ctz (i8x16.bitmask (i8x16.ne $tk (v128.const i64x2 0 0))))))))))
//           (local.set $i (i32.add (local.get $i) (i32.const 64)))
//           (br $quad)))
//       (block $done16
//         (loop $single ;; the same for single 16-byte blocks while 16 bytes remain
//           ...))
//       (local.get $i)))

const WASM_BASE64 =
  'AGFzbQEAAAABBwFgAn9/AX8DAgEABQMBAAUHEQIGbWVtb3J5AgAEc2tpcAAACvoDAfcDAQh7/QwBARMBAQEDAQEBAQENAQUBIQf9DAEBAgQACAAAAAAAAAAAEAAhCEEP/Q8hCQJAA0AgAEHAAGogAUsNASAA/QAAACECIAcgAiAJ/U79DiAIIAJBBP2NASAJ/U79Dv1OIQMgAP0AABAhAiAHIAIgCf1O/Q4gCCACQQT9jQEgCf1O/Q79TiEEIAD9AAAgIQIgByACIAn9Tv0OIAggAkEE/Y0BIAn9Tv0O/U4hBSAA/QAAMCECIAcgAiAJ/U79DiAIIAJBBP2NASAJ/U79Dv1OIQYgAyAE/VAgBSAG/VD9UP1TBEAgA/1TBEAgAEEAaiAD/QwAAAAAAAAAAAAAAAAAAAAA/ST9ZGhqDwsgBP1TBEAgAEEQaiAE/QwAAAAAAAAAAAAAAAAAAAAA/ST9ZGhqDwsgBf1TBEAgAEEgaiAF/QwAAAAAAAAAAAAAAAAAAAAA/ST9ZGhqDwsgBv1TBEAgAEEwaiAG/QwAAAAAAAAAAAAAAAAAAAAA/ST9ZGhqDwsLIABBwABqIQAMAAsLAkADQCAAQRBqIAFLDQEgAP0AAAAhAiAHIAIgCf1O/Q4gCCACQQT9jQEgCf1O/Q79TiEDIAP9UwRAIABBAGogA/0MAAAAAAAAAAAAAAAAAAAAAP0k/WRoag8LIABBEGohAAwACwsgAAs=';

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
