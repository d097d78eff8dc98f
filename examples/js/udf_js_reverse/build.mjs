// Builds udf.js into a component of the weir:udf `scalar-udf` world with componentize-js's
// JavaScript API. Usage: node build.mjs [out.wasm] (default: udf-js-reverse.wasm here).
//
// Paths are absolute (the bundled tools run under WASI and fail on relative ones), and the
// `http` and `fetch-event` features are disabled: with them the component imports
// wasi:http, which Weir does not link.

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, 'udf-js-reverse.wasm'));

const { component } = await componentize({
  sourcePath: resolve(here, 'udf.js'),
  witPath: resolve(here, '../../../wit/udf'),
  worldName: 'scalar-udf',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`built ${out} (${component.length} bytes)`);
