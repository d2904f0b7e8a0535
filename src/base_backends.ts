// The base backends 'stof' can delegate to; importing them registers 'webgpu' (where navigator.gpu
// exists) and 'cpu'.
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
