/*
 * init.c -- the first process of a Linux booted for memspec (the `uml` and `linux-guest`
 * targets): PID 1.
 *
 * It makes the system the agent expects, reports the machine's facts that only a process
 * inside it can read, then runs the agent on the console and stays to reap orphans:
 *
 *   0. loads the kernel modules named with -m (in the order given: dependencies first);
 *   1. mounts /proc, /sys, devtmpfs on /dev (where the kernel has not), a tmpfs on /dev/shm
 *      and on /tmp the ext4 image on the first block device (the agent's files then live on a
 *      disk file system of the guest kernel's, as on the host, not on the host's files), or a
 *      tmpfs where there is no such device;
 *   2. opens the protocol's console (argv[1], e.g. /dev/tty0) as standard input and output
 *      and puts it in raw mode (no echo, no line editing, no CR/LF translation, no signals
 *      from bytes), so JSON lines pass through unchanged; standard error stays on the kernel
 *      console, which carries the kernel log;
 *   3. writes one line {"type":"memspec-init","facts":{...}}: RAM, swap, sysctls, THP, NUMA
 *      nodes, the madvise advice the kernel accepts, CAP_SYS_ADMIN;
 *   4. forks and execs the agent (argv[2]) and reaps every process until the agent ends;
 *      then powers the machine off, so its end is the end of the kernel's process.
 *
 * Build: gcc -O2 -std=gnu99 -static -o memspec-init init.c   (memspec does this itself)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <termios.h>
#include <unistd.h>

static void say(const char *fmt, const char *what) {
    fprintf(stderr, "memspec-init: ");
    fprintf(stderr, fmt, what, strerror(errno));
    fprintf(stderr, "\n");
}

static void mount_one(const char *src, const char *dir, const char *type, const char *data) {
    mkdir(dir, 0755);
    if (mount(src, dir, type, MS_NOSUID | (strcmp(type, "devtmpfs") ? MS_NODEV : 0), data) != 0 && errno != EBUSY)
        say("mount %s: %s", dir);
}

static long read_long(const char *path, long dflt) {
    char t[64] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dflt;
    ssize_t k = read(fd, t, sizeof t - 1);
    close(fd);
    return k > 0 ? strtol(t, NULL, 10) : dflt;
}

/* the word in brackets of a sysfs choice ("always [madvise] never"), or dflt */
static void bracketed(const char *path, char *out, size_t cap, const char *dflt) {
    char t[256] = {0};
    snprintf(out, cap, "%s", dflt);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t k = read(fd, t, sizeof t - 1);
    close(fd);
    char *a = k > 0 ? strchr(t, '[') : NULL, *b = a ? strchr(a, ']') : NULL;
    if (a && b && (size_t)(b - a) < cap && b - a > 1) {
        memcpy(out, a + 1, (size_t)(b - a - 1));
        out[b - a - 1] = 0;
    }
}

static long meminfo_kb(const char *key) {
    char line[256];
    long v = 0;
    size_t n = strlen(key);
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') { v = strtol(line + n + 1, NULL, 10); break; }
    fclose(f);
    return v;
}

static int nodes(void) {
    int n = 0;
    DIR *d = opendir("/sys/devices/system/node");
    struct dirent *e;
    if (!d) return 1;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "node", 4) && e->d_name[4] >= '0' && e->d_name[4] <= '9') n++;
    closedir(d);
    return n > 0 ? n : 1;
}

static int cap_sys_admin(void) {
    char line[256];
    int yes = 0;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "CapEff:", 7)) { yes = (strtoull(line + 7, NULL, 16) >> 21) & 1; break; }
    fclose(f);
    return yes;
}

static void facts(FILE *out) {
    char thp[32], defrag[32];
    long ps = sysconf(_SC_PAGESIZE);
    bracketed("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof thp, "never");
    bracketed("/sys/kernel/mm/transparent_hugepage/defrag", defrag, sizeof defrag, "never");
    fprintf(out, "{\"type\":\"memspec-init\",\"facts\":{");
    fprintf(out, "\"ram_pages\":%ld,\"swap_pages\":%ld,", meminfo_kb("MemTotal") * 1024 / ps,
            meminfo_kb("SwapTotal") * 1024 / ps);
    fprintf(out, "\"overcommit_memory\":%ld,\"overcommit_ratio\":%ld,\"swappiness\":%ld,",
            read_long("/proc/sys/vm/overcommit_memory", 0), read_long("/proc/sys/vm/overcommit_ratio", 50),
            read_long("/proc/sys/vm/swappiness", 60));
    fprintf(out, "\"thp\":\"%s\",\"thp_defrag\":\"%s\",\"nodes\":%d,\"cap_sys_admin\":%s,\"pku\":false,",
            thp, defrag, nodes(), cap_sys_admin() ? "true" : "false");
    /* mm/madvise.c: an advice the kernel does not know is EINVAL before anything else; a zero
       length is 0 without touching memory */
    long a = syscall(SYS_mmap, 0, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct statfs sf;
    fprintf(out, "\"tmp_fs\":\"%s\",", statfs("/tmp", &sf) == 0 && sf.f_type == 0xEF53 ? "ext4" : "tmpfs");
    fprintf(out, "\"madv_known\":[");
    int first = 1;
    for (int adv = 0; a != -1 && adv < 112; adv = adv == 63 ? 100 : adv + 1)
        if (syscall(SYS_madvise, a, 0, adv) == 0) { fprintf(out, "%s%d", first ? "" : ",", adv); first = 0; }
    fprintf(out, "]}}\n");
    fflush(out);
    if (a != -1) munmap((void *)a, (size_t)ps);
}

/* the first of the block devices memspec may attach for /tmp: UML's ubd, a virtio disk */
static const char *const DISKS[] = {"/dev/ubda", "/dev/vda"};

static const char *find_disk(int wait_ms) {
    for (int t = 0; t <= wait_ms; t += 50) {
        for (unsigned i = 0; i < sizeof DISKS / sizeof DISKS[0]; i++)
            if (access(DISKS[i], F_OK) == 0) return DISKS[i];
        usleep(50000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int wait_disk = 0;
    /* -m MODULE: load a kernel module first (a guest whose ext4 and virtio drivers are modules) */
    while (argc >= 3 && !strcmp(argv[1], "-m")) {
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) say("load module %s: %s", argv[2]);
        if (fd >= 0) close(fd);
        wait_disk = 5000;
        argc -= 2;
        argv += 2;
    }
    if (argc < 3) {
        fprintf(stderr, "memspec-init: usage: init [-m MODULE]... CONSOLE AGENT (the kernel's command line ends with -- CONSOLE AGENT)\n");
        return 64;
    }
    mount_one("proc", "/proc", "proc", NULL);
    mount_one("sysfs", "/sys", "sysfs", NULL);
    mount_one("devtmpfs", "/dev", "devtmpfs", "mode=0755");
    mount_one("tmpfs", "/dev/shm", "tmpfs", "mode=1777");
    /* /tmp, where the agent makes its files: the first block device's file system when there is
       one (an ext4 image memspec made: files on a disk file system, as on the host), else a tmpfs */
    mkdir("/tmp", 01777);
    const char *disk = find_disk(wait_disk);
    if (!disk || mount(disk, "/tmp", "ext4", MS_NOSUID | MS_NODEV, NULL) != 0) {
        if (disk) say("mount %s: %s", disk);
        mount_one("tmpfs", "/tmp", "tmpfs", "mode=1777");
    } else chmod("/tmp", 01777);
    setenv("TMPDIR", "/tmp", 1);
    setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);

    int con = open(argv[1], O_RDWR | O_NOCTTY);
    if (con < 0) { say("open %s: %s", argv[1]); return 66; }
    struct termios t;
    if (tcgetattr(con, &t) == 0) {
        cfmakeraw(&t);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        if (tcsetattr(con, TCSANOW, &t) != 0) say("raw mode on %s: %s", argv[1]);
    } else say("tcgetattr %s: %s", argv[1]);
    dup2(con, 0);
    dup2(con, 1);
    if (con > 2) close(con);

    facts(stdout);

    pid_t agent = fork();
    if (agent == 0) {
        execv(argv[2], argv + 2);
        say("exec %s: %s", argv[2]);
        _exit(127);
    }
    for (;;) {
        int st;
        pid_t p = wait(&st);
        if (p < 0 && errno == EINTR) continue;
        if (p < 0 || p == agent) {
            if (p == agent && (WIFSIGNALED(st) || WEXITSTATUS(st)))
                fprintf(stderr, "memspec-init: the agent ended (%s %d)\n", WIFSIGNALED(st) ? "signal" : "exit status",
                        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            break;
        }
    }
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
