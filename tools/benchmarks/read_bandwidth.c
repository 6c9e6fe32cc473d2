/* One core's read bandwidth from memory and from the last-level cache: what bounds a
 * query whose weights outgrow the L3 (docs/performance-notes.md, "why float MiniLM sits at parity").
 *
 *   gcc -O2 -mavx2 -o /tmp/read_bandwidth tools/benchmarks/read_bandwidth.c && /tmp/read_bandwidth
 *
 * Sums a 256 MB array five times (memory), then a 2.36 MB one (one MiniLM-L6 FFN matrix
 * in f32) a hundred times (cache), with four independent AVX accumulators. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* GB/s of `reps` passes over the first `n` floats of `a` (n a multiple of 32). */
static double read_rate(const float *a, size_t n, int reps, float *sink) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    double t0 = seconds();
    for (int r = 0; r < reps; r++)
        for (size_t i = 0; i < n; i += 32) {
            s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
            s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
            s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
            s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
        }
    double dt = seconds() - t0;
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    *sink += out[0];
    return (double)n * sizeof(float) * reps / dt / 1e9;
}

int main(void) {
    size_t big = (size_t)64 << 20, small = 2360 * 1024 / 4 / 32 * 32;
    float *a = aligned_alloc(64, big * sizeof(float)), sink = 0;
    if (!a) return 1;
    for (size_t i = 0; i < big; i++) a[i] = (float)(i & 1023);
    for (int r = 0; r < 5; r++) printf("memory (256 MB):  %.1f GB/s\n", read_rate(a, big, 1, &sink));
    for (int r = 0; r < 3; r++) printf("cache (2.36 MB):  %.1f GB/s\n", read_rate(a, small, 100, &sink));
    fprintf(stderr, "(checksum %g)\n", sink);
    free(a);
    return 0;
}
