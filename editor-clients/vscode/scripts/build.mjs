// Bundles the extension (dist/extension.js) or, with --tests, the tests: out/unit/ (plain Node,
// no `vscode`) and out/vscode/ (mocha suites that run inside a real VS Code's extension host).
import * as esbuild from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
};
const entries = (folder, keep) =>
  readdirSync(join(root, folder))
    .filter(keep)
    .map((f) => `${folder}/${f}`);

if (process.argv.includes('--tests')) {
  rmSync(join(root, 'out'), { recursive: true, force: true });
  await esbuild.build({
    ...common,
    target: 'node20',
    entryPoints: entries('test/unit', (f) => f.endsWith('.test.ts') || f === 'fake-daemon.ts'),
    outdir: 'out/unit',
  });
  // `vscode` is the real API of the extension host they run in; mocha comes from node_modules.
  await esbuild.build({
    ...common,
    target: 'node20',
    entryPoints: entries('test/vscode', (f) => /\.(test|suite)\.ts$/.test(f) || f === 'index.ts' || f === 'companion.ts' || f === 'bench.ts'),
    outdir: 'out/vscode',
    external: ['vscode', 'mocha'],
  });
} else {
  await esbuild.build({
    ...common,
    // VS Code 1.74 (the oldest that package.json accepts) runs extensions on Node 16.
    target: 'node16',
    entryPoints: ['src/extension.ts'],
    outfile: 'dist/extension.js',
    external: ['vscode'],
    minify: process.argv.includes('--minify'),
  });
}
