// Figures: every number a test measures is printed on one greppable line, so a CI log or a local
// run gives the values docs/reliability.md records.

export function figure(name: string, value: unknown): void {
  console.log(`[reliability] ${name} = ${typeof value === 'string' ? value : JSON.stringify(value)}`);
}
