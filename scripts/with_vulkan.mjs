// Runs a Node script with the Vulkan driver that vulkan_env.mjs picks: node scripts/with_vulkan.mjs <script> [args]
import {spawnSync} from 'node:child_process';
import {vulkanEnv} from './vulkan_env.mjs';

const [script, ...args] = process.argv.slice(2);
const r = spawnSync(process.execPath, [script, ...args], {stdio: 'inherit', env: vulkanEnv()});
process.exit(r.status ?? 1);
