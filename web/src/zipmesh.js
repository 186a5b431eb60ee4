// Reads output3d.zip in the browser: the OBJ, its MTL, and the files they refer to (the
// texture PNG), by extension, whatever the entries' stem is.

import { unzipSync } from 'fflate';

const TYPES = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg' };

/**
 * The mesh inside `zip` (Uint8Array): `{ obj, mtl, assets }` with `obj` and `mtl` as text
 * (`mtl` null when absent) and `assets` a Map from file name to Blob. Throws when the zip has
 * no OBJ.
 */
export function meshFiles(zip) {
  const entries = unzipSync(zip);
  const text = new TextDecoder();
  let obj = null;
  let mtl = null;
  const assets = new Map();
  for (const [path, bytes] of Object.entries(entries)) {
    const name = path.split('/').pop();
    const ext = name.split('.').pop().toLowerCase();
    if (ext === 'obj') obj = text.decode(bytes);
    else if (ext === 'mtl') mtl = text.decode(bytes);
    else if (TYPES[ext]) assets.set(name, new Blob([bytes], { type: TYPES[ext] }));
  }
  if (obj === null) throw new Error('output3d.zip holds no .obj file');
  return { obj, mtl, assets };
}
