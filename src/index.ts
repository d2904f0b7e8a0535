// Browser entry: the base backends, then 'stof'.
import './base_backends';

export * from './public_api';
