// The GEMM template as CUDA C:  out[b, m, n] = epilogue(Σ_k A[b, m, k] · B[b, k, n]).
// A and B are read through their access maps (any transpose, broadcast or head split), staged
// through shared memory in BM×BK and BK×BN tiles; the epilogue expression is applied to each
// accumulator as it is stored. Two arithmetic paths from one emitter, differing only in the inner
// product and the accumulator layout:
//   fp32  256 threads, each a 4×4 register block of FMAs (exact fp32, the reference path)
//   tf32  128 threads = 2×2 warps, each a 32×32 warp tile of mma.sync.m16n8k8 tf32 tensor-core ops
//         (fp32 accumulation; inputs rounded to tf32, about 1e-3 relative error per product)
// A grouped GEMM (Q, K, V projections of one A) runs its groups as the batch (blockIdx.z): group g
// reads B from its own buffer and map and applies its own epilogue, storing at offset g·M·N.
import {AccessMap, contiguousStrides, sizeOf} from '../../fusion/access';
import {GemmKernel} from '../../fusion/planner';

import {checkSizes, CudaSource, emitter, indent, MAX_GRID_YZ, signature, slotsOf, unit} from './cuda_common';
import {offsetCode} from './cuda_expr';

export type GemmPrecision = 'fp32'|'tf32';

interface Config {
  BM: number; BN: number; BK: number; threads: number;
  /** Shared layouts: element (m, k) of the A tile and (k, n) of the B tile. */
  sA: (m: string, k: string) => string;
  sB: (k: string, n: string) => string;
  aWords: number; bWords: number;
}

const BM = 64, BN = 64, BK = 16;
const CONFIGS: Record<GemmPrecision, Config> = {
  // k-major A (As[k][m]): the 4×4 block reads 4 rows of one k as broadcasts; +4 words of padding
  // keep the transposed tile store free of bank conflicts.
  fp32: {BM, BN, BK, threads: 256, sA: (m, k) => `(${k}) * ${BM + 4} + (${m})`, sB: (k, n) => `(${k}) * ${BN + 4} + (${n})`,
         aWords: BK * (BM + 4), bWords: BK * (BN + 4)},
  // m-major A (As[m][k], row stride 20) and Bs[k][n] (stride 72): the mma fragment loads of a warp
  // (row = lane/4, col = lane%4) hit 32 different banks.
  tf32: {BM, BN, BK, threads: 128, sA: (m, k) => `(${m}) * ${BK + 4} + (${k})`, sB: (k, n) => `(${k}) * ${BN + 8} + (${n})`,
         aWords: BM * (BK + 4), bWords: BK * (BN + 8)},
};

/** Whether a map walks the buffer contiguously along domain dim `d` (then loads go fastest along it). */
const unitStride = (m: AccessMap, d: number) => m.dims[d].length === 1 && m.dims[d][0].stride === 1 && m.dims[d][0].div === 1;

/**
 * Cooperative loads of one tile (rows × cols of the domain dims r, c) into shared memory: thread t
 * takes elements t, t + threads, ... in the order that is contiguous in the buffer, so a warp's
 * loads coalesce whichever of the two dims is the unit-stride one.
 */
function tileLoad(name: string, rows: number, cols: number, threads: number, colsFast: boolean,
                  rowVar: string, colVar: string, bound: string, load: string, slot: (r: string, c: string) => string,
                  convert: (v: string) => string): string {
  const per = (rows * cols) / threads;
  const [r, c] = colsFast ? [`e / ${cols}`, `e % ${cols}`] : [`e % ${rows}`, `e / ${rows}`];
  return `#pragma unroll
    for (int u = 0; u < ${per}; u++) {
      const int e = (int)threadIdx.x + u * ${threads};
      const int ${name}r = ${r}, ${name}c = ${c};
      const int ${rowVar} = ${name}0r + ${name}r, ${colVar} = ${name}0c + ${name}c;
      ${name}s[${slot(`${name}r`, `${name}c`)}] = ${convert(`(${bound}) ? ${load} : 0.0f`)};
    }`;
}

export function gemmCuda(k: GemmKernel, precision: GemmPrecision): CudaSource {
  const {batchShape, M, N, K} = k;
  checkSizes(k, [[...batchShape, M, N], [...batchShape, M, K]]);
  const cfg = CONFIGS[precision];
  const groups = k.group?.epilogues.length ?? 0;
  const batch = groups || sizeOf(batchShape);
  // Batch coordinates from the flat batch index b (a grouped GEMM has one batch entry: zeros).
  const bStrides = contiguousStrides(batchShape);
  const bc = batchShape.map((d, i) => (groups ? '0' : `((${bStrides[i] === 1 ? 'b' : `(b / ${bStrides[i]})`}) % ${d})`));
  const epilogues = k.group?.epilogues ?? [k.epilogue];
  const bSlots = k.group?.bSlots ?? [k.bSlot];
  const bMaps = k.group?.bMaps ?? [k.b];
  const slots = [k.aSlot, ...bSlots, ...slotsOf(epilogues)].filter((s, i, a) => a.indexOf(s) === i);
  const rank = batchShape.length + 2;

  // Per group (switch on b for a grouped GEMM): the B load and the epilogue.
  const perGroup = (body: (g: number) => string) => (groups ?
      `switch (b) {\n${bSlots.map((_, g) => `      ${g === groups - 1 ? 'default' : `case ${g}`}: { ${body(g)} }`).join('\n')}\n      }` : body(0));
  const loadB = perGroup(g => `return in${bSlots[g]}[${offsetCode(bMaps[g], [...bc, 'k', 'n'])}];`);
  const epi = perGroup(g => {
    const em = emitter(k, `e${g}_`, [...bc, 'm', 'n'], x => (x.k === 'acc' ? 'acc' : null));
    const v = em.emit(epilogues[g]);
    return `${em.lines.join(' ')} out[${offsetCode(k.out, [...bc, 'm', 'n'])}${groups ? ` + b * ${M * N}` : ''}] = ${v}; return;`;
  });

  const tiles = (x: number, t: number) => Math.ceil(x / t);
  const gridZ = Math.min(batch, MAX_GRID_YZ);
  if (tiles(N, cfg.BN) > MAX_GRID_YZ) throw new Error(`gemmCuda: N = ${N} needs more than ${MAX_GRID_YZ} column tiles`);
  const tf32 = precision === 'tf32';
  const cvt = (v: string) => (tf32 ? `to_tf32(${v})` : v);
  const aLoad = tileLoad('a', cfg.BM, cfg.BK, cfg.threads, unitStride(k.a, rank - 1), 'm', 'k', `m < ${M} && k < ${K}`,
                         'loadA(b, m, k)', cfg.sA, cvt);
  const bLoad = tileLoad('b', cfg.BK, cfg.BN, cfg.threads, bMaps.every(m => unitStride(m, rank - 1)), 'k', 'n',
                         `k < ${K} && n < ${N}`, 'loadB(b, k, n)', cfg.sB, cvt);
  const guard = `if (m < ${M} && n < ${N}) storeOut(b, m, n, `;

  // The inner product of one staged K step, and where each accumulator goes.
  const compute = tf32 ? `
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32, g = lane >> 2, t = lane & 3;
    #pragma unroll
    for (int kk = 0; kk < ${cfg.BK}; kk += 8) {
      unsigned af[2][4], bf[4][2];
      #pragma unroll
      for (int i = 0; i < 2; i++) {
        const int r0 = wm + i * 16 + g;
        af[i][0] = __float_as_uint(as[${cfg.sA('r0', 'kk + t')}]);
        af[i][1] = __float_as_uint(as[${cfg.sA('r0 + 8', 'kk + t')}]);
        af[i][2] = __float_as_uint(as[${cfg.sA('r0', 'kk + t + 4')}]);
        af[i][3] = __float_as_uint(as[${cfg.sA('r0 + 8', 'kk + t + 4')}]);
      }
      #pragma unroll
      for (int j = 0; j < 4; j++) {
        const int c0 = wn + j * 8 + g;
        bf[j][0] = __float_as_uint(bs[${cfg.sB('kk + t', 'c0')}]);
        bf[j][1] = __float_as_uint(bs[${cfg.sB('kk + t + 4', 'c0')}]);
      }
      #pragma unroll
      for (int i = 0; i < 2; i++) {
        #pragma unroll
        for (int j = 0; j < 4; j++) {
          asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n"
                       : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
                       : "r"(af[i][0]), "r"(af[i][1]), "r"(af[i][2]), "r"(af[i][3]), "r"(bf[j][0]), "r"(bf[j][1]));
        }
      }
    }` : `
    #pragma unroll
    for (int kk = 0; kk < ${cfg.BK}; kk++) {
      float a[4], bv[4];
      #pragma unroll
      for (int i = 0; i < 4; i++) a[i] = as[${cfg.sA('ty + 16 * i', 'kk')}];
      #pragma unroll
      for (int j = 0; j < 4; j++) bv[j] = bs[${cfg.sB('kk', 'tx + 16 * j')}];
      #pragma unroll
      for (int i = 0; i < 4; i++) {
        #pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
      }
    }`;
  // Fragment layout of m16n8k8 (PTX ISA): c0,c1 at row g, columns 2t, 2t+1; c2,c3 at row g + 8.
  const stores = tf32 ? `
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32, g = lane >> 2, t = lane & 3;
  #pragma unroll
  for (int i = 0; i < 2; i++) {
    #pragma unroll
    for (int j = 0; j < 4; j++) {
      #pragma unroll
      for (int r = 0; r < 4; r++) {
        const int m = m0 + wm + i * 16 + g + (r >> 1) * 8, n = n0 + wn + j * 8 + 2 * t + (r & 1);
        ${guard}acc[i][j][r]);
      }
    }
  }` : `
  #pragma unroll
  for (int i = 0; i < 4; i++) {
    #pragma unroll
    for (int j = 0; j < 4; j++) {
      const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      ${guard}acc[i][j]);
    }
  }`;
  const accDecl = tf32 ? 'float acc[2][4][4];' : 'float acc[4][4];';
  const accZero = tf32 ? 'for (int i = 0; i < 2; i++) for (int j = 0; j < 4; j++) for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;' :
                         'for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;';
  return {
    label: `gemm(${precision}${groups ? `,group=${groups}` : ''})`,
    bindings: slots.slice(0),
    grid: [tiles(M, cfg.BM), tiles(N, cfg.BN), gridZ],
    block: [cfg.threads, 1, 1],
    code: unit(`${tf32 ? `__device__ __forceinline__ float to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}
` : ''}// gemm batch=${batch} M=${M} N=${N} K=${K} tile=${cfg.BM}x${cfg.BN}x${cfg.BK} ${precision}
${signature(k, slots)} {
  __shared__ float as[${cfg.aWords}];
  __shared__ float bs[${cfg.bWords}];
  const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5);
  const int tx = (int)(threadIdx.x & 15u), ty = (int)(threadIdx.x >> 4);
  (void)lane; (void)warp; (void)tx; (void)ty;
  auto loadA = [&](int b, int m, int k) -> float { (void)b; return in${k.aSlot}[${offsetCode(k.a, [...bc, 'm', 'k'])}]; };
  auto loadB = [&](int b, int k, int n) -> float {
      (void)b; ${loadB}
  };
  auto storeOut = [&](int b, int m, int n, float acc) {
      (void)b; ${epi}
  };
  const int m0 = (int)blockIdx.x * ${cfg.BM}, n0 = (int)blockIdx.y * ${cfg.BN};
  // Batch entries beyond the grid's z limit: a block-uniform loop (the barriers stay uniform).
  for (int b = (int)blockIdx.z; b < ${batch}; b += ${gridZ}) {
  ${accDecl}
  ${accZero}
  for (int k0 = 0; k0 < ${K}; k0 += ${cfg.BK}) {
    const int a0r = m0, a0c = k0, b0r = k0, b0c = n0;
    ${aLoad}
    ${bLoad}
    __syncthreads();
    ${indent(compute.split('\n'), '')}
    // Everyone reads the tiles before the next stage overwrites them.
    __syncthreads();
  }
  ${indent(stores.split('\n'), '')}
  }
}`),
  };
}
