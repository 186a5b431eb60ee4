// The job options of the form, as the connection URL's query (the options protocol: seed,
// faces, texture, formats on `/generate3d?...`). Only values that differ from the server's
// defaults are sent, so the defaults give exactly the bytes a client without options gets,
// and a server that predates options (it ignores unknown query keys) still runs the job.

/** The server's defaults (upstream CRM's): seed 1234, every face, a 1024 texture, zip only. */
export const DEFAULTS = Object.freeze({ seed: 1234, faces: null, texture: 1024, glb: false });

/** The texture sizes the server accepts. */
export const TEXTURES = [512, 1024, 2048];

/** Reads and checks the form; throws an Error naming the bad field. */
export function readOptions(form) {
  const seedText = form.seed.value.trim();
  const seed = seedText === '' ? DEFAULTS.seed : Number(seedText);
  if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
    throw new Error('The seed must be a whole number from 0 to 4294967295.');
  }
  const facesText = form.faces.value.trim();
  const faces = facesText === '' ? null : Number(facesText);
  if (faces !== null && (!Number.isInteger(faces) || faces < 1)) {
    throw new Error('Faces must be a whole number above 0, or empty to keep every face.');
  }
  const texture = Number(form.texture.value);
  if (!TEXTURES.includes(texture)) throw new Error(`The texture must be one of ${TEXTURES.join(', ')}.`);
  return { seed, faces, texture, glb: form.glb.checked };
}

/**
 * The connection query for `options` (opt-in progress events always; `key` if given). Commas
 * stay literal (`formats=zip,glb`): the server splits lists on `,` before any decoding.
 */
export function toQuery(options, key) {
  const pairs = [['events', 'progress']];
  if (options.seed !== DEFAULTS.seed) pairs.push(['seed', String(options.seed)]);
  if (options.faces !== null) pairs.push(['faces', String(options.faces)]);
  if (options.texture !== DEFAULTS.texture) pairs.push(['texture', String(options.texture)]);
  if (options.glb) pairs.push(['formats', 'zip,glb']);
  if (key) pairs.push(['key', key]);
  return pairs.map(([k, v]) => `${k}=${encodeURIComponent(v).replaceAll('%2C', ',')}`).join('&');
}
