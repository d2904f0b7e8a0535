// tfjs-core's op suite in Node: 'stof' over the CPU base (or the base itself, see core_env).
import '@tensorflow/tfjs-backend-cpu';
import '../../src/public_api';
import './core_env';
import '@tensorflow/tfjs-core/dist/tests';
