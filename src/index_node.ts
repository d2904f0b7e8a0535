// Node entry: Dawn and the WebGPU base (in that order), the CPU base, then 'stof'.
import './backend/node_webgpu';
import '@tensorflow/tfjs-backend-cpu';

export * from './public_api';
