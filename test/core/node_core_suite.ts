// tfjs-core's op suite in Node: 'stof' over the CPU base (or the base itself, see core_env); with
// the flag STOF_DEVICE 'cuda' (on a GPU machine) over the CUDA base.
import '@tensorflow/tfjs-backend-cpu';
import '../../src/backend/node_cuda';
import '../../src/public_api';
import './core_env';
import '@tensorflow/tfjs-core/dist/tests';
