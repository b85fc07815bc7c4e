/**
 * Writes one benchmark's section into docs/BENCHMARKS.md: `section` runs from
 * `<!-- bench:NAME:start -->` to `<!-- bench:NAME:end -->` and replaces the one there, or is
 * appended; the rest of the file (hand-written readings included) is kept.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const HEADER =
  '# Benchmarks\n\nEvery figure comes from a command in `bench/`, measured as ratios against a baseline in the same run on the machine named.\n';

export async function writeBenchmarkSection(name: string, section: string): Promise<void> {
  const path = fileURLToPath(new URL('../docs/BENCHMARKS.md', import.meta.url));
  const current = await readFile(path, 'utf8').catch(() => HEADER);
  const pattern = new RegExp(`<!-- bench:${name}:start -->[\\s\\S]*<!-- bench:${name}:end -->`);
  // A function as replacement: `$` in the section is written as it is.
  await writeFile(path, pattern.test(current) ? current.replace(pattern, () => section) : `${current.trimEnd()}\n\n${section}\n`);
}
