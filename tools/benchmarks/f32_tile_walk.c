// tract's avx512 f32 64x3 tile walk, timed alone (issue #7: MiniLM float on AVX-512 Intel).
//
//   cc -O2 -mavx512f -mfma -o /tmp/f32_tile_walk tools/benchmarks/f32_tile_walk.c
//   /tmp/f32_tile_walk K WEIGHT_PANELS TOKEN_TILES REPS [WARM]   (tract's 64x3)
//   F32_TILE=32x12 /tmp/f32_tile_walk K WEIGHT_PANELS TOKEN_TILES REPS   (MLAS's shape)
//
// The inner loop is a copy of tract-linalg's `avx512_mmm_f32_64x3` k loop (one zmm of the
// weight panel loaded and used against three broadcast activations, 12 accumulators). The
// walk is tract's row-outer order for a weight matmul: every 64-row weight panel (`K x 64`
// floats, packed) against every 3-token activation panel. With WEIGHT_PANELS x 98 KB larger
// than the caches, each panel comes from memory in its first tile and from L2 in the others,
// as in a query of a model whose weights do not stay cached (MiniLM-L6: 428 panels of 98 KB).
// WARM=1 prefetches (prefetcht1) the next weight panel, spread over the current panel's
// tiles after its first. Prints GFLOP/s and µs per tile (docs/performance-notes.md, Intel Xeon entries).
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// One 64x3 tile over k: a [k][64] weight panel, a [k][3] activation panel; c += sum.
__attribute__((noinline)) static void tile(const float *a, const float *b, long k, float *c) {
    __asm__ volatile(
        "vpxord %%zmm0,%%zmm0,%%zmm0\n vmovaps %%zmm0,%%zmm1\n vmovaps %%zmm0,%%zmm2\n"
        "vmovaps %%zmm0,%%zmm3\n vmovaps %%zmm0,%%zmm4\n vmovaps %%zmm0,%%zmm5\n"
        "vmovaps %%zmm0,%%zmm6\n vmovaps %%zmm0,%%zmm7\n vmovaps %%zmm0,%%zmm8\n"
        "vmovaps %%zmm0,%%zmm9\n vmovaps %%zmm0,%%zmm10\n vmovaps %%zmm0,%%zmm11\n"
        "1:\n"
        "vmovaps (%0),%%zmm12\n"
        "vbroadcastss (%1),%%zmm13\n vbroadcastss 4(%1),%%zmm14\n vbroadcastss 8(%1),%%zmm15\n"
        "vfmadd231ps %%zmm12,%%zmm13,%%zmm0\n vfmadd231ps %%zmm12,%%zmm14,%%zmm4\n"
        "vfmadd231ps %%zmm12,%%zmm15,%%zmm8\n"
        "vmovaps 64(%0),%%zmm12\n"
        "vfmadd231ps %%zmm12,%%zmm13,%%zmm1\n vfmadd231ps %%zmm12,%%zmm14,%%zmm5\n"
        "vfmadd231ps %%zmm12,%%zmm15,%%zmm9\n"
        "vmovaps 128(%0),%%zmm12\n"
        "vfmadd231ps %%zmm12,%%zmm13,%%zmm2\n vfmadd231ps %%zmm12,%%zmm14,%%zmm6\n"
        "vfmadd231ps %%zmm12,%%zmm15,%%zmm10\n"
        "vmovaps 192(%0),%%zmm12\n"
        "vfmadd231ps %%zmm12,%%zmm13,%%zmm3\n vfmadd231ps %%zmm12,%%zmm14,%%zmm7\n"
        "vfmadd231ps %%zmm12,%%zmm15,%%zmm11\n"
        "add $12,%1\n add $256,%0\n dec %2\n jnz 1b\n"
        "vaddps %%zmm0,%%zmm11,%%zmm0\n vaddps (%3),%%zmm0,%%zmm0\n vmovups %%zmm0,(%3)\n"
        : "+r"(a), "+r"(b), "+r"(k)
        : "r"(c)
        : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
          "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

// One 32x12 tile (the shape of onnxruntime's MLAS AVX-512 SGEMM kernel: a 32-wide weight
// strip against up to 12 tokens): a [k][32] weight panel, a [k][12] activation panel.
__attribute__((noinline)) static void tile32x12(const float *a, const float *b, long k, float *c) {
    __m512 lo[12], hi[12];
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) lo[j] = hi[j] = _mm512_setzero_ps();
    for (long i = 0; i < k; i++, a += 32, b += 12) {
        __m512 x = _mm512_load_ps(a), y = _mm512_load_ps(a + 16);
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) {
            __m512 t = _mm512_set1_ps(b[j]);
            lo[j] = _mm512_fmadd_ps(x, t, lo[j]);
            hi[j] = _mm512_fmadd_ps(y, t, hi[j]);
        }
    }
    __m512 s = _mm512_loadu_ps(c);
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) s = _mm512_add_ps(s, _mm512_add_ps(lo[j], hi[j]));
    _mm512_storeu_ps(c, s);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: [F32_TILE=64x3|32x12] %s K WEIGHT_PANELS TOKEN_TILES REPS [WARM]\n",
                argv[0]);
        return 2;
    }
    long k = atol(argv[1]), panels = atol(argv[2]), tiles = atol(argv[3]), reps = atol(argv[4]);
    int warm = argc > 5 ? atoi(argv[5]) : 0;
    if (k < 1 || panels < 1 || tiles < 1 || reps < 1) {
        fprintf(stderr, "K, WEIGHT_PANELS, TOKEN_TILES and REPS must be positive\n");
        return 2;
    }
    const char *shape = getenv("F32_TILE");
    if (shape && strcmp(shape, "64x3") != 0 && strcmp(shape, "32x12") != 0) {
        fprintf(stderr, "F32_TILE=%s: not a tile this walk has (64x3 or 32x12)\n", shape);
        return 2;
    }
    int wide = shape && strcmp(shape, "32x12") == 0;
    size_t mr = wide ? 32 : 64, nr = wide ? 12 : 3;
    size_t panel_floats = mr * k, lines = panel_floats * 4 / 64;
    float *a = aligned_alloc(64, panel_floats * panels * 4);
    float *b = aligned_alloc(64, (nr * k * tiles * 4 + 63) / 64 * 64);
    if (!a || !b) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < panel_floats * panels; i++) a[i] = 1e-3f * (i % 7);
    for (size_t i = 0; i < nr * k * tiles; i++) b[i] = 1e-3f * (i % 5);
    float c[16] = {0};
    double t0 = now();
    for (long r = 0; r < reps; r++)
        for (long ia = 0; ia < panels; ia++)
            for (long ib = 0; ib < tiles; ib++) {
                if (warm && ib > 0 && ia + 1 < panels) {
                    const char *next = (const char *)(a + (ia + 1) * panel_floats);
                    size_t from = lines * (ib - 1) / (tiles - 1), to = lines * ib / (tiles - 1);
                    for (size_t l = from; l < to; l++) _mm_prefetch(next + l * 64, _MM_HINT_T1);
                }
                if (wide)
                    tile32x12(a + ia * panel_floats, b + ib * nr * k, k, c);
                else
                    tile(a + ia * panel_floats, b + ib * nr * k, k, c);
            }
    double t = now() - t0, flops = 2.0 * mr * nr * k * panels * tiles * reps;
    printf("%zux%zu k=%ld panel=%zu KB panels=%ld tiles=%ld warm=%d: %.1f GFLOP/s, %.3f us/tile (%g)\n",
           mr, nr, k, panel_floats * 4 / 1024, panels, tiles, warm, flops / t * 1e-9,
           t * 1e6 / ((double)reps * panels * tiles), c[0]);
    return 0;
}
