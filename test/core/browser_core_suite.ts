// tfjs-core's op suite in Chromium: 'stof' over the WebGPU base (or the base itself, see core_env).
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
import '../../src/public_api';
import './core_env';
import '@tensorflow/tfjs-core/dist/tests';
