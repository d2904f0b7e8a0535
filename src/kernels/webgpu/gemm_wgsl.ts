/**
 * WGSL generator for a batched matmul with a fused epilogue:
 *
 *   C[b, m, n] = epilogue( sum_k A[b, m, k] * B[b, k, n] )
 *
 * Classic shared-memory tiling: a 16x16 workgroup computes a
 * (16*tm) x (16*tn) output tile, each invocation a tm x tn register block,
 * stepping K by 16. A and B are read through caller-supplied index
 * expressions (any strides / transposes / broadcasts), so loads are scalar.
 * All sizes are compile-time constants: bounds checks are emitted only for
 * dimensions that are not tile multiples.
 */

export interface GemmWgslSpec {
  batch: number; M: number; N: number; K: number;
  /** WGSL i32 expression: element offset of A[b, m, k] in storage buffer `A` (array<f32>); may use the i32 identifiers b, m, k. */
  aIndex: string;
  /** Same for B[b, k, n] in buffer `B`; identifiers b, k, n. */
  bIndex: string;
  /** Optional body of `gemm_loadB(b, k, n) -> f32` replacing `return B[bIndex];` (e.g. B chosen per batch entry among extra inputs). */
  loadB?: string;
  /** Names of extra read-only f32 storage buffers the epilogue reads (each declared as array<f32>). */
  extraInputs: string[];
  /** WGSL statements that define `let out: f32 = ...;` from `acc: f32` and i32 coords b, m, n; may read extra inputs. */
  epilogue: string;
  /** WGSL i32 expression: element offset of C[b, m, n] in the output buffer `C`; identifiers b, m, n. */
  outIndex: string;
  /** Optional helper WGSL functions (module scope) that the index expressions / epilogue call. */
  helpers?: string;
  /**
   * Optional override of the per-invocation register block (rows x cols);
   * each must be 1, 2, 4 or 8. Default: chosen from the problem size.
   */
  tile?: {tm: number; tn: number};
}

export interface GemmKernel {
  code: string;                              // complete WGSL module, entry point `main`
  workgroups: [number, number, number];      // dispatchWorkgroups(x, y, z)
  /** Binding order at @group(0): binding 0 = C (read_write), then A, B, then extraInputs in order (read). */
  bindings: string[];
  /** Chosen register block; the output tile is (16*tm) x (16*tn). */
  tile: {tm: number; tn: number};
}

/** Workgroup is WG x WG invocations (256: the portable maximum). */
const WG = 16;
/** K step per shared-memory stage. Equal to WG so the A load maps lx -> k. */
const KT = 16;
/** Portable per-dimension limit on dispatchWorkgroups. */
const MAX_GRID = 65535;
/**
 * Workgroups wanted in flight before we trade register blocking for
 * parallelism: ~2 resident 256-thread groups per SM on a 132-SM H100.
 */
const TARGET_WORKGROUPS = 264;
const NUM_SMS = 132;

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

function checkDim(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min || v > 0x7fffffff) {
    throw new Error(`gemmWgsl: ${name} must be an integer >= ${min}, got ${v}`);
  }
}

function chooseTile(batch: number, M: number, N: number): {tm: number; tn: number} {
  let tm = 8;
  let tn = 8;
  // A tile much larger than the matrix only burns idle lanes.
  while (tm > 1 && WG * (tm / 2) >= M) tm /= 2;
  while (tn > 1 && WG * (tn / 2) >= N) tn /= 2;
  // Too few workgroups to fill the GPU: trade register blocking for
  // parallelism, down to 4x4 (64x64 tile). Only if that still leaves SMs idle
  // go smaller; tiny blocks are shared-memory bound but beat idle SMs.
  const count = () => batch * ceilDiv(M, WG * tm) * ceilDiv(N, WG * tn);
  const shrinkWhile = (want: number, floor: number) => {
    while (count() < want && (tm > floor || tn > floor)) {
      if (tm >= tn && tm > floor) tm /= 2;
      else tn /= 2;
    }
  };
  shrinkWhile(TARGET_WORKGROUPS, 4);
  shrinkWhile(NUM_SMS, 1);
  return {tm, tn};
}

export function gemmWgsl(spec: GemmWgslSpec): GemmKernel {
  const {batch, M, N, K} = spec;
  checkDim('batch', batch, 1);
  checkDim('M', M, 1);
  checkDim('N', N, 1);
  checkDim('K', K, 1);
  const reserved = new Set(['A', 'B', 'C']);
  for (const name of spec.extraInputs) {
    if (!IDENT.test(name) || reserved.has(name) || name.startsWith('gemm_')) {
      throw new Error(`gemmWgsl: bad or duplicate extra input name '${name}'`);
    }
    reserved.add(name);
  }

  const tile = spec.tile ?? chooseTile(batch, M, N);
  const {tm, tn} = tile;
  for (const t of [tm, tn]) {
    if (![1, 2, 4, 8].includes(t)) {
      throw new Error(`gemmWgsl: tile sizes must be 1, 2, 4 or 8, got ${tm}x${tn}`);
    }
  }
  const TILE_M = WG * tm;
  const TILE_N = WG * tn;
  // (16*8 + 16*8) * 16 * 4 B = 16 KiB at most: fits the portable limit.
  const tilesM = ceilDiv(M, TILE_M);
  const tilesN = ceilDiv(N, TILE_N);
  const numK = ceilDiv(K, KT);
  const gridX = Math.min(tilesN, MAX_GRID);
  const gridY = Math.min(tilesM, MAX_GRID);
  const gridZ = Math.min(batch, MAX_GRID);

  // Bounds checks only where a dimension is not a tile multiple.
  const checkM = M % TILE_M !== 0;
  const checkN = N % TILE_N !== 0;
  const checkK = K % KT !== 0;

  const cond = (parts: Array<string | false>): string =>
      parts.filter((p): p is string => p !== false).join(' && ');

  // ---- cooperative global -> register loads -------------------------------
  // Flat shared layouts: A tile [mm][kk] (m-major), B tile [kk][nn].
  // A: invocation (lx, ly) loads k = k0 + lx, m = tileM + ly + 16 r, so
  //    consecutive local indices walk k (contiguous for row-major A).
  // B: nn = lid % TILE_N walks n (contiguous for row-major B).
  // Either way the element lands at flat index lid + 256 r.
  const bRowsPerPass = (WG * WG) / TILE_N;
  const loadLines = (k0: string): string[] => {
    const lines: string[] = [];
    for (let r = 0; r < tm; r++) {
      const c = cond([checkM && `gemm_am${r} < ${M}`, checkK && `gemm_ak < ${K}`]);
      const ld = `gemm_loadA(gb, gemm_am${r}, gemm_ak)`;
      lines.push(c ? `gemm_ra${r} = 0.0; if (${c}) { gemm_ra${r} = ${ld}; }`
                   : `gemm_ra${r} = ${ld};`);
    }
    for (let r = 0; r < tn; r++) {
      const c = cond([checkK && `gemm_bk${r} < ${K}`, checkN && `gemm_bn < ${N}`]);
      const ld = `gemm_loadB(gb, gemm_bk${r}, gemm_bn)`;
      lines.push(c ? `gemm_rb${r} = 0.0; if (${c}) { gemm_rb${r} = ${ld}; }`
                   : `gemm_rb${r} = ${ld};`);
    }
    // Coordinates depend on k0, so declare them in a block in front.
    const pre: string[] = [`let gemm_ak = ${k0} + lx;`];
    for (let r = 0; r < tn; r++) pre.push(`let gemm_bk${r} = ${k0} + gemm_bkk + ${r * bRowsPerPass};`);
    return ['{', ...pre.map((l) => '  ' + l), ...lines.map((l) => '  ' + l), '}'];
  };

  // ---- register-blocked inner product over one K stage (fully unrolled) ----
  // Shared tiles are vec4 arrays so that inner-loop reads are 128-bit:
  //  A: As[m][k] (m-major), read as vec4 over 4 consecutive k. Invocation
  //     owns rows ly + 16 i; a warp touches 2 rows, so reads are broadcasts.
  //  B: Bs[k][n]. With tn >= 4 the invocation owns columns g*64 + 4 lx + c:
  //     8 consecutive lanes read 128 contiguous bytes (no bank conflicts)
  //     and each vec4 feeds 4 columns. With tn < 4 (narrow N) Bs is scalar
  //     and the invocation owns columns lx + 16 j.
  // This cuts shared-memory instructions per FMA 4x versus scalar reads,
  // which is what bounds a scalar-LDS 8x8 block on NVIDIA.
  const vecB = tn >= 4;
  const comp = ['x', 'y', 'z', 'w'];
  const colOf = (j: number): string =>
      vecB ? `${Math.floor(j / 4) * 64} + 4 * lx + ${j % 4}` : `${j * WG} + lx`;
  const compute: string[] = [];
  for (let q = 0; q < KT / 4; q++) {
    for (let i = 0; i < tm; i++) {
      compute.push(`let a${q}_${i} = gemm_As[gemm_aBase + ${i * WG * KT / 4 + q}u];`);
    }
    for (let kk = 0; kk < 4; kk++) {
      const k = q * 4 + kk;
      if (vecB) {
        for (let g = 0; g < tn / 4; g++) {
          compute.push(`let b${k}_${g} = gemm_Bs[gemm_bBase + ${k * TILE_N / 4 + g * WG}u];`);
        }
      } else {
        for (let j = 0; j < tn; j++) {
          compute.push(`let b${k}_${j} = gemm_Bs[gemm_bBase + ${k * TILE_N + j * WG}u];`);
        }
      }
      for (let i = 0; i < tm; i++) {
        for (let j = 0; j < tn; j++) {
          const b = vecB ? `b${k}_${Math.floor(j / 4)}.${comp[j % 4]}` : `b${k}_${j}`;
          compute.push(`acc${i}_${j} = fma(a${q}_${i}.${comp[kk]}, ${b}, acc${i}_${j});`);
        }
      }
    }
  }

  const accDecl: string[] = [];
  const stores: string[] = [];
  for (let j = 0; j < tn; j++) stores.push(`let gn${j} = tileN + ${colOf(j)};`);
  for (let i = 0; i < tm; i++) {
    stores.push(`let gm${i} = tileM + ly + ${i * WG};`);
    for (let j = 0; j < tn; j++) {
      accDecl.push(`var acc${i}_${j}: f32 = 0.0;`);
      const c = cond([checkM && `gm${i} < ${M}`, checkN && `gn${j} < ${N}`]);
      const st = `gemm_store(gb, gm${i}, gn${j}, acc${i}_${j});`;
      stores.push(c ? `if (${c}) { ${st} }` : st);
    }
  }

  const regDecl: string[] = [];
  for (let r = 0; r < tm; r++) regDecl.push(`var gemm_ra${r}: f32;`);
  for (let r = 0; r < tn; r++) regDecl.push(`var gemm_rb${r}: f32;`);
  const aCoords: string[] = [];
  for (let r = 0; r < tm; r++) aCoords.push(`let gemm_am${r} = tileM + ly + ${r * WG};`);
  // Both staging layouts put element (lid + 256 r) of the flat tile in the
  // register r of invocation lid: consecutive lanes hit consecutive words.
  const sharedStore: string[] = [];
  for (let r = 0; r < tm; r++) {
    sharedStore.push(`gemm_As[gemm_sv + ${r * WG * WG / 4}u][gemm_sc] = gemm_ra${r};`);
  }
  for (let r = 0; r < tn; r++) {
    sharedStore.push(vecB ? `gemm_Bs[gemm_sv + ${r * WG * WG / 4}u][gemm_sc] = gemm_rb${r};`
                          : `gemm_Bs[lid + ${r * WG * WG}u] = gemm_rb${r};`);
  }

  const body: string[] = [
    ...accDecl,
    ...regDecl,
    ...aCoords,
    // Prefetch stage 0 into registers; each iteration then issues the next
    // stage's global loads before its FMAs so their latency is hidden.
    ...loadLines('0'),
    `for (var kt = 0; kt < ${numK}; kt++) {`,
    ...sharedStore.map((l) => '  ' + l),
    '  workgroupBarrier();',
    `  if (kt + 1 < ${numK}) {`,
    ...loadLines(`(kt + 1) * ${KT}`).map((l) => '    ' + l),
    '  }',
    ...compute.map((l) => '  ' + l),
    // Everyone must finish reading before the next stage overwrites tiles.
    '  workgroupBarrier();',
    '}',
    ...stores,
  ];

  // ---- grid: tiles over (x = N tiles, y = M tiles, z = batch). A dimension
  // over the 65535 limit becomes a grid-stride loop (uniform: it depends only
  // on workgroup_id, so the barriers inside stay in uniform control flow).
  const wrap: string[] = [];
  const close: string[] = [];
  const dim = (v: string, axis: string, count: number, grid: number, scale: number) => {
    const s = scale === 1 ? '' : ` * ${scale}`;
    if (count <= MAX_GRID) {
      wrap.push(`let ${v} = i32(wid.${axis})${s};`);
    } else {
      wrap.push(`for (var gemm_t${axis} = i32(wid.${axis}); gemm_t${axis} < ${count}; gemm_t${axis} += ${grid}) {`);
      wrap.push(`let ${v} = gemm_t${axis}${s};`);
      close.push('}');
    }
  };
  dim('gb', 'z', batch, gridZ, 1);
  dim('tileM', 'y', tilesM, gridY, TILE_M);
  dim('tileN', 'x', tilesN, gridX, TILE_N);
  const inner = '  '.repeat(1 + close.length);
  for (let i = 0; i < wrap.length; i++) {
    wrap[i] = '  '.repeat(wrap.slice(0, i).filter((l) => l.endsWith('{')).length) + wrap[i];
  }
  close.forEach((_, i) => { close[i] = '  '.repeat(close.length - 1 - i) + '}'; });

  // Keep every extra input statically used even if the epilogue ignores it:
  // layout 'auto' would otherwise drop its binding and bind groups would fail.
  const touch = spec.extraInputs.map((name) => `_ = arrayLength(&${name});`);

  const decls: string[] = [
    '@group(0) @binding(0) var<storage, read_write> C: array<f32>;',
    '@group(0) @binding(1) var<storage, read> A: array<f32>;',
    '@group(0) @binding(2) var<storage, read> B: array<f32>;',
    ...spec.extraInputs.map(
        (name, i) => `@group(0) @binding(${i + 3}) var<storage, read> ${name}: array<f32>;`),
  ];

  const code = [
    `// gemm batch=${batch} M=${M} N=${N} K=${K} tile=${TILE_M}x${TILE_N}x${KT} block=${tm}x${tn}`,
    ...decls,
    '',
    `var<workgroup> gemm_As: array<vec4<f32>, ${TILE_M * KT / 4}>;`,
    vecB ? `var<workgroup> gemm_Bs: array<vec4<f32>, ${KT * TILE_N / 4}>;`
         : `var<workgroup> gemm_Bs: array<f32, ${KT * TILE_N}>;`,
    '',
    spec.helpers ?? '',
    '',
    'fn gemm_loadA(b: i32, m: i32, k: i32) -> f32 {',
    `  return A[${spec.aIndex}];`,
    '}',
    '',
    'fn gemm_loadB(b: i32, k: i32, n: i32) -> f32 {',
    spec.loadB ?? `  return B[${spec.bIndex}];`,
    '}',
    '',
    'fn gemm_store(b: i32, m: i32, n: i32, acc: f32) {',
    spec.epilogue,
    `  C[${spec.outIndex}] = out;`,
    '}',
    '',
    `@compute @workgroup_size(${WG}, ${WG}, 1)`,
    'fn main(@builtin(workgroup_id) wid: vec3<u32>,',
    '        @builtin(local_invocation_id) lid3: vec3<u32>,',
    '        @builtin(local_invocation_index) lid: u32) {',
    ...touch.map((l) => '  ' + l),
    '  let lx = i32(lid3.x);',
    '  let ly = i32(lid3.y);',
    `  let gemm_aBase = lid3.y * ${KT / 4}u;`,
    `  let gemm_bBase = lid3.x;`,
    '  let gemm_sv = lid / 4u;',
    '  let gemm_sc = lid % 4u;',
    `  let gemm_bn0 = i32(lid % ${TILE_N}u);`,
    `  let gemm_bkk = i32(lid / ${TILE_N}u);`,
    ...wrap.map((l) => '  ' + l),
    `${inner}let gemm_bn = tileN + gemm_bn0;`,
    ...body.map((l) => inner + l),
    ...close.map((l) => '  ' + l),
    '}',
    '',
  ].join('\n');

  return {
    code,
    workgroups: [gridX, gridY, gridZ],
    bindings: ['C', 'A', 'B', ...spec.extraInputs],
    tile: {tm, tn},
  };
}
