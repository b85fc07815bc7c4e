#!/usr/bin/env node
// Runs the compiled CLI with plain Node (no TypeScript loader at run time).
await import('../dist/bin.js');
