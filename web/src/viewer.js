// The 3D viewer: a three.js scene with orbit controls (turn, zoom, pan by mouse, touch or
// keyboard) showing one mesh at a time, from a GLB (GLTFLoader) or from the OBJ + MTL +
// texture PNG inside output3d.zip (OBJLoader/MTLLoader, the zip read in the browser).
// It renders on demand (a change of view, a texture arriving), not in a loop, so an idle page
// costs nothing.

import {
  Box3,
  Color,
  DirectionalLight,
  HemisphereLight,
  LoadingManager,
  PerspectiveCamera,
  Scene,
  SRGBColorSpace,
  Vector3,
  WebGLRenderer,
} from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { MTLLoader } from 'three/addons/loaders/MTLLoader.js';
import { OBJLoader } from 'three/addons/loaders/OBJLoader.js';
import { meshFiles } from './zipmesh.js';

/** The viewer's clear colour; the browser test looks for pixels that differ from it. */
export const BACKGROUND = 0x202124;

export class Viewer {
  constructor(container) {
    this.container = container;
    this.renderer = new WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.renderer.outputColorSpace = SRGBColorSpace;
    const canvas = this.renderer.domElement;
    canvas.tabIndex = 0;
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', '3D view of the mesh (no mesh yet)');
    canvas.setAttribute('aria-describedby', 'viewer-help');
    container.append(canvas);

    this.scene = new Scene();
    this.scene.background = new Color(BACKGROUND);
    this.scene.add(new HemisphereLight(0xffffff, 0x505050, 2.2));
    const sun = new DirectionalLight(0xffffff, 1.2);
    sun.position.set(1, 2, 3);
    this.scene.add(sun);
    this.camera = new PerspectiveCamera(40, 4 / 3, 0.01, 100);
    this.camera.position.set(0, 0, 3);

    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.listenToKeyEvents(canvas);
    this.controls.addEventListener('change', () => this.render());
    canvas.addEventListener('keydown', (e) => this.zoomKey(e));

    this.model = null;
    this.blobUrls = [];
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
  }

  /** + and - zoom (OrbitControls' keys only pan and turn). */
  zoomKey(e) {
    const factor = { '+': 0.9, '=': 0.9, '-': 1 / 0.9, '−': 1 / 0.9 }[e.key];
    if (!factor) return;
    e.preventDefault();
    this.camera.position.sub(this.controls.target).multiplyScalar(factor).add(this.controls.target);
    this.controls.update();
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.container;
    if (w === 0 || h === 0) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  /** Shows the mesh of a GLB (ArrayBuffer). */
  async showGlb(buffer) {
    const gltf = await new GLTFLoader().parseAsync(buffer, '');
    this.clear();
    this.show(gltf.scene, 'GLB');
  }

  /** Shows the mesh of output3d.zip (ArrayBuffer): its OBJ, with the MTL and texture it names. */
  showZip(buffer) {
    const files = meshFiles(new Uint8Array(buffer));
    this.clear();
    const urls = new Map();
    for (const [name, blob] of files.assets) {
      const url = URL.createObjectURL(blob);
      this.blobUrls.push(url);
      urls.set(name, url);
    }
    // The MTL names its texture by file name: point that name at the zip entry's blob. The
    // texture decodes after the mesh is shown; render again once it has.
    const manager = new LoadingManager(() => this.render());
    manager.setURLModifier((url) => urls.get(url.split('/').pop()) ?? url);
    const loader = new OBJLoader();
    if (files.mtl !== null) {
      const materials = new MTLLoader(manager).parse(files.mtl, '');
      materials.preload();
      loader.setMaterials(materials);
    }
    this.show(loader.parse(files.obj), 'OBJ');
  }

  /** Shows `object` (the viewer is clear) and frames it. */
  show(object, format) {
    this.model = object;
    this.scene.add(object);
    const box = new Box3().setFromObject(object);
    const centre = box.getCenter(new Vector3());
    const radius = Math.max(box.getSize(new Vector3()).length() / 2, 1e-3);
    const distance = radius / Math.sin((this.camera.fov * Math.PI) / 360);
    this.controls.target.copy(centre);
    this.camera.near = distance / 100;
    this.camera.far = distance * 100;
    this.camera.position.copy(centre).add(new Vector3(0, radius * 0.3, distance));
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this.renderer.domElement.setAttribute('aria-label', `3D view of the mesh (${format}): focus it to turn, zoom and pan with the keyboard`);
    this.container.dataset.format = format;
    this.render();
  }

  /** Removes the model and releases its geometry, materials, textures and blob URLs. */
  clear() {
    if (this.model) {
      this.scene.remove(this.model);
      this.model.traverse((node) => {
        node.geometry?.dispose();
        for (const m of [node.material ?? []].flat()) {
          for (const v of Object.values(m)) if (v?.isTexture) v.dispose();
          m.dispose();
        }
      });
      this.model = null;
    }
    for (const url of this.blobUrls) URL.revokeObjectURL(url);
    this.blobUrls = [];
    delete this.container.dataset.format;
    this.renderer.domElement.setAttribute('aria-label', '3D view of the mesh (no mesh yet)');
    this.render();
  }
}
