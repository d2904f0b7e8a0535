// The project's scripts (tests, demo, benchmarks) run Dawn on the best Vulkan driver present:
// a driver the user named (VK_ICD_FILENAMES / VK_DRIVER_FILES), else a GPU's own driver, else
// SwiftShader from Debian's chromium package (software; correct but slow). Dawn rejects Debian 12's
// lavapipe, so SwiftShader is named explicitly rather than left to the loader.
import fs from 'node:fs';

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
const GPU_ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/nvidia/share/vulkan/icd.d'];

function hasGpuDriver() {
  return GPU_ICD_DIRS.some(dir => fs.existsSync(dir) && fs.readdirSync(dir).some(f => /^nvidia/.test(f)));
}

export function vulkanEnv(env = process.env) {
  const out = {...env};
  if (out.VK_ICD_FILENAMES || out.VK_DRIVER_FILES || hasGpuDriver()) return out;
  if (fs.existsSync(SWIFTSHADER)) {
    out.VK_ICD_FILENAMES = SWIFTSHADER;
    // chromium ships its own loader; used where the system has no libvulkan1
    if (!fs.existsSync('/usr/lib/x86_64-linux-gnu/libvulkan.so.1')) {
      out.LD_LIBRARY_PATH = ['/usr/lib/chromium', out.LD_LIBRARY_PATH].filter(Boolean).join(':');
    }
  }
  return out;
}

export function describeVulkan(env) {
  if (env.VK_ICD_FILENAMES === SWIFTSHADER) return 'SwiftShader (software Vulkan)';
  return env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES || (hasGpuDriver() ? 'system GPU driver' : 'none found');
}
