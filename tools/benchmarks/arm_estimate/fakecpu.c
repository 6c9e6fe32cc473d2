/* fakecpu: an LD_PRELOAD shim for aarch64 guests under qemu-user, which shows them the
 * host's /proc/cpuinfo. Opens of /proc/cpuinfo are redirected to $FAKE_CPUINFO (a Pi 4 or
 * Pi 5 cpuinfo, tools/benchmarks/arm_estimate/cpuinfo-*.txt), so that tract picks its
 * kernels for that core (CPU part, asimdhp) and onnxruntime's cpuinfo library does not
 * crash on import. Build: aarch64-linux-gnu-gcc -shared -fPIC -O2 -o fakecpu.so fakecpu.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static const char *redirect(const char *path) {
    if (path && !strcmp(path, "/proc/cpuinfo")) {
        const char *fake = getenv("FAKE_CPUINFO");
        if (fake) return fake;
    }
    return path;
}

#define MODE_ARG                                                          \
    mode_t mode = 0;                                                      \
    if (flags & (O_CREAT | O_TMPFILE)) {                                  \
        va_list ap;                                                       \
        va_start(ap, flags);                                              \
        mode = va_arg(ap, mode_t);                                        \
        va_end(ap);                                                       \
    }

int open(const char *p, int flags, ...) {
    MODE_ARG;
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    return real(redirect(p), flags, mode);
}
int open64(const char *p, int flags, ...) {
    MODE_ARG;
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open64");
    return real(redirect(p), flags, mode);
}
int openat(int dir, const char *p, int flags, ...) {
    MODE_ARG;
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat");
    return real(dir, redirect(p), flags, mode);
}
int openat64(int dir, const char *p, int flags, ...) {
    MODE_ARG;
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat64");
    return real(dir, redirect(p), flags, mode);
}
int __open_2(const char *p, int flags) {
    int (*real)(const char *, int) = dlsym(RTLD_NEXT, "__open_2");
    return real(redirect(p), flags);
}
int __open64_2(const char *p, int flags) {
    int (*real)(const char *, int) = dlsym(RTLD_NEXT, "__open64_2");
    return real(redirect(p), flags);
}
FILE *fopen(const char *p, const char *m) {
    FILE *(*real)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen");
    return real(redirect(p), m);
}
FILE *fopen64(const char *p, const char *m) {
    FILE *(*real)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen64");
    return real(redirect(p), m);
}
