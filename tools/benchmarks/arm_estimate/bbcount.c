/* bbcount: a qemu-user TCG plugin that counts executions of every translated block.
 *
 * Used by tools/benchmarks/arm_estimate.py: at exit it writes one line per executed block,
 *   COUNT <tab> N_INSNS <tab> SYMBOL <tab> INSTRUCTION BYTES (hex, 4 bytes per instruction)
 *   <tab> GUEST ADDRESS (hex)
 * and a last line "#total_insns <tab> T". The address lets the estimate join the two blocks
 * qemu makes of straight-line code that crosses a 4 KiB page (it ends a block at every page
 * boundary), which llvm-mca would otherwise cost as two loops. The estimate takes the difference of two runs (N and
 * N+K queries) and costs each block's instructions with llvm-mca.
 *
 * Self-contained (Debian ships no qemu-plugin.h): the few declarations of QEMU's plugin API
 * version 1 (QEMU 7.2, Debian 12's `qemu-user`; `qemu-user-static` cannot load plugins) are
 * written out below. Build: cc -shared -fPIC -O2 -o bbcount.so bbcount.c
 * Run:   qemu-aarch64 -plugin ./bbcount.so,out=FILE ...
 * The counter is a plain inline add: exact for the single-threaded query path (a second
 * guest thread could lose a few increments, which the N vs N+K difference does not see). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct {
    const char *target_name;
    struct { int min, cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus, max_vcpus; } system; };
} qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t,
                                                  void (*)(qemu_plugin_id_t, struct qemu_plugin_tb *));
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                                     void *, uint64_t);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
extern const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *);
extern size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *);
extern const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, void *), void *);

EXPORT int qemu_plugin_version = 1;

typedef struct Block {
    uint64_t count;
    uint64_t vaddr;
    size_t n;
    char *hex;         /* 8 hex digits per instruction, no separators */
    char *sym;
    struct Block *next;
} Block;

static Block *blocks;
static const char *out_path = "bbcount.out";

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    Block *b = calloc(1, sizeof *b);
    b->n = qemu_plugin_tb_n_insns(tb);
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->hex = malloc(b->n * 8 + 1);
    char *p = b->hex;
    *p = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const uint8_t *d = qemu_plugin_insn_data(insn);
        size_t size = qemu_plugin_insn_size(insn);
        for (size_t j = 0; j < 4; j++) p += sprintf(p, "%02x", j < size ? d[j] : 0);
        if (i == 0) {
            const char *s = qemu_plugin_insn_symbol(insn);
            b->sym = strdup(s ? s : "?");
        }
    }
    if (!b->sym) b->sym = strdup("?");
    b->next = blocks;
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
}

static void on_exit_dump(qemu_plugin_id_t id, void *unused) {
    (void)id; (void)unused;
    FILE *f = fopen(out_path, "w");
    if (!f) { perror(out_path); return; }
    uint64_t total = 0;
    for (Block *b = blocks; b; b = b->next) {
        if (!b->count) continue;
        total += b->count * b->n;
        fprintf(f, "%llu\t%zu\t%s\t%s\t%llx\n", (unsigned long long)b->count, b->n, b->sym, b->hex,
                (unsigned long long)b->vaddr);
    }
    fprintf(f, "#total_insns\t%llu\n", (unsigned long long)total);
    fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++)
        if (!strncmp(argv[i], "out=", 4)) out_path = strdup(argv[i] + 4);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_dump, NULL);
    return 0;
}
