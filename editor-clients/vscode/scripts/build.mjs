// Bundles the extension (dist/extension.js) or, with --tests, the tests (out/), where `vscode`
// is the stub in test/stub/vscode.ts: there is no VS Code binary to run them in.
import * as esbuild from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
};

if (process.argv.includes('--tests')) {
  rmSync(join(root, 'out'), { recursive: true, force: true });
  const entryPoints = readdirSync(join(root, 'test'))
    .filter((f) => f.endsWith('.test.ts') || f === 'fake-daemon.ts')
    .map((f) => `test/${f}`);
  await esbuild.build({
    ...common,
    entryPoints,
    outdir: 'out',
    alias: { vscode: './test/stub/vscode.ts' },
  });
} else {
  await esbuild.build({
    ...common,
    entryPoints: ['src/extension.ts'],
    outfile: 'dist/extension.js',
    external: ['vscode'],
    minify: process.argv.includes('--minify'),
  });
}
