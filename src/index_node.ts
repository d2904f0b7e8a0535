// Node entry: Dawn and the WebGPU base (in that order), the CPU base, the CUDA provider, then 'stof'.
import './backend/node_webgpu';
import '@tensorflow/tfjs-backend-cpu';
import './backend/node_cuda';

export * from './public_api';
