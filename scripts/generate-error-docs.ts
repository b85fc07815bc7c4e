// Writes docs/errors.md from the error registry; a test fails when the two differ.
import { writeFileSync } from 'node:fs';
import { renderErrorDocs } from '@edgefleet/protocol';

writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorDocs());
console.log('wrote docs/errors.md');
