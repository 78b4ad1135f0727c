// Go `flag` package syntax (docs/decisions.md, "Command line and configuration"): which flags an
// argv sets and to what raw string, or the first syntax error. Values are checked later
// (parse.ts); this file only knows the table's names and which flags are booleans.

import { FLAGS, type FlagName } from './flags.js';

export type ArgParse =
  | { kind: 'ok'; set: Map<FlagName, string> }
  | { kind: 'help' }
  | { kind: 'error'; err: string; set: Map<FlagName, string> };

/** strconv.ParseBool */
function parseGoBool(s: string): boolean | null {
  switch (s) {
    case '1':
    case 't':
    case 'T':
    case 'true':
    case 'TRUE':
    case 'True':
      return true;
    case '0':
    case 'f':
    case 'F':
    case 'false':
    case 'FALSE':
    case 'False':
      return false;
    default:
      return null;
  }
}

/**
 * Go flag.FlagSet.Parse: `-x`/`--x`, `--x=v` or `--x v` (the next argument is taken even when it
 * starts with '-'), booleans by presence or `--x=<bool>`, `--` or the first non-flag argument ends
 * flag parsing. Repeated flags: last wins. Unlike Go, positional arguments are an error.
 */
export function parseArgs(argv: readonly string[]): ArgParse {
  const set = new Map<FlagName, string>();
  let i = 0;
  while (i < argv.length) {
    const s = argv[i]!;
    if (s.length < 2 || s[0] !== '-') break; // first positional argument
    let minuses = 1;
    if (s[1] === '-') {
      minuses = 2;
      if (s.length === 2) {
        i++; // "--" terminates the flags
        break;
      }
    }
    let name = s.slice(minuses);
    if (name.length === 0 || name[0] === '-' || name[0] === '=') {
      return { kind: 'error', err: `bad flag syntax: ${s}`, set };
    }
    i++;
    let hasValue = false;
    let value = '';
    const eq = name.indexOf('=');
    if (eq > 0) {
      value = name.slice(eq + 1);
      hasValue = true;
      name = name.slice(0, eq);
    }
    const spec = FLAGS.get(name);
    if (spec === undefined) {
      if (name === 'help' || name === 'h') return { kind: 'help' };
      return { kind: 'error', err: `flag provided but not defined: -${name}`, set };
    }
    if (spec.kind === 'bool') {
      if (hasValue) {
        const b = parseGoBool(value);
        if (b === null) {
          return {
            kind: 'error',
            err: `invalid boolean value ${JSON.stringify(value)} for -${name}: parse error`,
            set,
          };
        }
        set.set(spec.name, b ? 'true' : 'false');
      } else {
        set.set(spec.name, 'true');
      }
      continue;
    }
    if (!hasValue && i < argv.length) {
      value = argv[i]!;
      i++;
      hasValue = true;
    }
    if (!hasValue) return { kind: 'error', err: `flag needs an argument: -${name}`, set };
    set.set(spec.name, value);
  }
  if (i < argv.length) {
    return {
      kind: 'error',
      err: `unexpected argument ${JSON.stringify(argv[i])}: this command takes flags only, and flag parsing stops at the first non-flag argument`,
      set,
    };
  }
  return { kind: 'ok', set };
}
