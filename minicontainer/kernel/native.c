/* The container's first process, set up in C (runtime/native.py says when, and why).

   mc_native_spawn() makes the child with clone3(CLONE_VM | CLONE_VFORK): it shares our
   memory instead of a copy of it (no page table copied, no copy-on-write fault, in the
   child or in the caller afterwards) and we are suspended until its execve or its exit.
   So the child runs no Python and calls no libc function that takes a lock or allocates:
   raw system calls, on its own stack, reading only the mc_native struct below, which the
   runtime filled in from the plan (runtime/plan.py) before the fork.

   The steps are the plan's, in its order: unshare, hostname, lo, rslave, the overlay root,
   the system mounts and /dev's nodes, pivot_root, masked and read-only paths, the working
   directory, the keyring, seccomp (early without no_new_privs), the capability sets and
   the user, no_new_privs, seccomp (late), then execve. What the Python child would compute
   in between (the user in /etc/passwd, the environment, the path to exec) the runtime has
   computed already, from the same image (native.py).

   A failure is reported on the error pipe as "Native\n<errno> <what failed>" (native.py
   turns it into the Python child's kind of error), and the child exits 125. */

/* cffi declarations: from here */
struct mc_native_mount {             /* one of rootfs.SYSTEM_MOUNTS */
    const char *path, *source, *fstype, *data;  /* path relative to the root */
    unsigned long flags;
    int make;                        /* the mount point is made if missing (in /dev) */
    int fill_dev;                    /* a fresh /dev: rootfs.DEVICES and DEV_LINKS in it */
};

struct mc_native_node {              /* one of rootfs.DEVICES */
    const char *name;
    unsigned int major, minor;
};

struct mc_native {
    int err_fd, alive_fd;            /* the launch protocol's pipe ends (runtime/protocol.py) */
    int parent_fds[3];               /* the runtime's ends, closed first (-1: none) */
    int stdio[3];                    /* fds to put on 0, 1, 2 (-1: leave that one) */
    int foreground;                  /* else: outlive the runtime (PR_SET_PDEATHSIG 0) */
    unsigned long long unshare_flags;
    const char *hostname;            /* NULL: no uts namespace of its own */
    int lo_up;
    const char *root;                /* the container's root: where it is mounted */
    const char *overlay;             /* the overlay's options; NULL: bind_source instead */
    const char *bind_source;         /* run --read-only: the rootfs, bound read-only */
    const struct mc_native_mount *mounts;  /* the system mounts, in order */
    int nmounts;
    const struct mc_native_node *nodes;    /* /dev's nodes */
    int nnodes;
    const char *const *links;        /* /dev's links: name, target, ..., NULL */
    const char *const *masked;       /* NULL-terminated, relative to the root */
    const char *const *readonly;
    const char *workdir;             /* relative to the root */
    int new_keyring;
    int cut_caps;                    /* 0: privileged, no set is cut */
    int last_cap;
    unsigned long long bounding, effective, permitted, inheritable, ambient;
    unsigned int uid, gid;
    int ngroups;
    const unsigned int *groups;
    int no_new_privs;
    const char *bpf;                 /* NULL: unconfined */
    size_t bpf_len;
    unsigned int bpf_flags;
    const char *path;                /* what to execve, found by the runtime */
    char *const *argv;
    char *const *envp;
    int preserve_fds;
    unsigned long long exec_mask;    /* the signal mask the command starts with */
};
/* cffi declarations: to here */

#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* rt_sigaction(2)'s own struct (glibc's struct sigaction is laid out differently) */
struct mc_kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long long mask;
};

/* "Native\n<errno> <what>" on the error pipe, then exit 125: no strerror (locale state),
   no printf (locks); the runtime spells the errno. */
static void mc_native_fail(const struct mc_native *n, int err, const char *what, const char *arg)
{
    char msg[512];
    size_t i = 0;
    const char *head = "Native\n";
    char digits[12];
    int d = 0;
    while (*head) msg[i++] = *head++;
    do { digits[d++] = (char)('0' + err % 10); err /= 10; } while (err && d < 11);
    while (d) msg[i++] = digits[--d];
    msg[i++] = ' ';
    while (*what && i < sizeof msg - 1) msg[i++] = *what++;
    while (arg && *arg && i < sizeof msg - 1) msg[i++] = *arg++;
    syscall(SYS_write, n->err_fd, msg, i);
    syscall(SYS_exit_group, 125);
}

#define MC_CHECK(call, what, arg) \
    do { if ((call) < 0) mc_native_fail(n, errno, what, arg); } while (0)

static void mc_fd_path(char *buf, int fd)  /* "/proc/self/fd/N" */
{
    const char *p = "/proc/self/fd/";
    char digits[12];
    int i = 0, d = 0;
    while (*p) buf[i++] = *p++;
    do { digits[d++] = (char)('0' + fd % 10); fd /= 10; } while (fd);
    while (d) buf[i++] = digits[--d];
    buf[i] = 0;
}

/* rootfs.resolve: `path` inside the root, no magic links followed; -1 and errno if not. */
static int mc_in_root(int root, const char *path)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how);
}

static void mc_native_dev(const struct mc_native *n, int root)
{
    char p[32];
    int dev = mc_in_root(root, "dev");
    MC_CHECK(dev, "open /dev", NULL);
    mc_fd_path(p, dev);
    int dir = (int)syscall(SYS_openat, AT_FDCWD, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    MC_CHECK(dir, "open /dev", NULL);
    mode_t old = umask(0);
    for (int i = 0; i < n->nnodes; i++)
        MC_CHECK(syscall(SYS_mknodat, dir, n->nodes[i].name, S_IFCHR | 0666,
                         makedev(n->nodes[i].major, n->nodes[i].minor)),
                 "mknod /dev/", n->nodes[i].name);
    umask(old);
    for (const char *const *link = n->links; *link; link += 2)
        MC_CHECK(syscall(SYS_symlinkat, link[1], dir, link[0]), "symlink /dev/", link[0]);
    syscall(SYS_close, dir);
    syscall(SYS_close, dev);
}

/* rootfs.mount_system: each mount through an fd of its mount point, resolved in the root;
   `make`: made if missing (only in our own fresh /dev tmpfs: native.py has checked that the
   image has the others as directories). */
static void mc_native_system_mounts(const struct mc_native *n, int root)
{
    char p[32];
    for (int i = 0; i < n->nmounts; i++) {
        const struct mc_native_mount *m = &n->mounts[i];
        int fd = mc_in_root(root, m->path);
        if (fd < 0 && errno == ENOENT && m->make) {
            MC_CHECK(syscall(SYS_mkdirat, root, m->path, 0755), "mount point /", m->path);
            fd = mc_in_root(root, m->path);
        }
        MC_CHECK(fd, "mount point /", m->path);
        mc_fd_path(p, fd);
        MC_CHECK(syscall(SYS_mount, m->source, p, m->fstype, m->flags, m->data),
                 "mount on /", m->path);
        syscall(SYS_close, fd);
        if (m->fill_dev)
            mc_native_dev(n, root);
    }
}

/* rootfs.mask_paths: an empty read-only tmpfs on a directory, /dev/null on anything else;
   then a read-only recursive bind of each read-only path onto itself. Missing: skipped. */
static void mc_native_mask(const struct mc_native *n, int root)
{
    char p[32];
    struct stat st;
    for (const char *const *m = n->masked; *m; m++) {
        int fd = mc_in_root(root, *m);
        if (fd < 0 && errno == ENOENT)
            continue;
        MC_CHECK(fd, "mask /", *m);
        MC_CHECK(syscall(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH), "mask /", *m);
        mc_fd_path(p, fd);
        if (S_ISDIR(st.st_mode))
            MC_CHECK(syscall(SYS_mount, "tmpfs", p, "tmpfs", MS_RDONLY, "size=0"), "mask /", *m);
        else
            MC_CHECK(syscall(SYS_mount, "/dev/null", p, NULL, MS_BIND, NULL), "mask /", *m);
        syscall(SYS_close, fd);
    }
    for (const char *const *r = n->readonly; *r; r++) {
        int fd = mc_in_root(root, *r);
        if (fd < 0 && errno == ENOENT)
            continue;
        MC_CHECK(fd, "read-only /", *r);
        mc_fd_path(p, fd);
        int tree = (int)syscall(SYS_open_tree, AT_FDCWD, p,
                                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        MC_CHECK(tree, "read-only /", *r);
        struct mount_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.attr_set = MOUNT_ATTR_RDONLY;
        MC_CHECK(syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                         sizeof attr), "read-only /", *r);
        MC_CHECK(syscall(SYS_move_mount, tree, "", fd, "",
                         MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), "read-only /", *r);
        syscall(SYS_close, tree);
        syscall(SYS_close, fd);
    }
}

/* process.drop_privileges: the bounding set cut (needs CAP_SETPCAP, still held), then with
   PR_SET_KEEPCAPS groups, gid and uid, then effective, permitted and inheritable exactly,
   then the ambient set; no_new_privs last. */
static void mc_native_privileges(const struct mc_native *n)
{
    if (n->cut_caps) {
        for (int cap = 0; cap <= n->last_cap; cap++)
            if (!(n->bounding & (1ULL << cap)) &&
                syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0, 0, 0) > 0)
                MC_CHECK(syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0), "bounding set", NULL);
        MC_CHECK(syscall(SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0), "keepcaps", NULL);
    }
    MC_CHECK(syscall(SYS_setgroups, n->ngroups, n->groups), "setgroups", NULL);
    MC_CHECK(syscall(SYS_setresgid, n->gid, n->gid, n->gid), "setgid", NULL);
    MC_CHECK(syscall(SYS_setresuid, n->uid, n->uid, n->uid), "setuid", NULL);
    if (n->cut_caps) {
        MC_CHECK(syscall(SYS_prctl, PR_SET_KEEPCAPS, 0, 0, 0, 0), "keepcaps", NULL);
        struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2] = {
            {(uint32_t)n->effective, (uint32_t)n->permitted, (uint32_t)n->inheritable},
            {(uint32_t)(n->effective >> 32), (uint32_t)(n->permitted >> 32),
             (uint32_t)(n->inheritable >> 32)}};
        MC_CHECK(syscall(SYS_capset, &head, data), "capset", NULL);
        MC_CHECK(syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
                 "ambient set", NULL);
        for (int cap = 0; cap <= n->last_cap; cap++)
            if (n->ambient & (1ULL << cap))
                MC_CHECK(syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
                         "ambient set", NULL);
    }
    if (n->no_new_privs)
        MC_CHECK(syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs", NULL);
}

static void mc_native_seccomp(const struct mc_native *n)
{
    struct sock_fprog prog = {(unsigned short)(n->bpf_len / sizeof(struct sock_filter)),
                              (struct sock_filter *)n->bpf};
    MC_CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, n->bpf_flags, &prog), "seccomp", NULL);
}

static int mc_native_child(void *arg)
{
    const struct mc_native *n = arg;
    char p[32];
    struct pollfd alive = {n->alive_fd, POLLIN, 0};

    /* launch._child's first steps (with the channel's child_side: the runtime's ends shut,
       so that the alive pipe's EOF means what it says) */
    for (int i = 0; i < 3; i++)
        if (n->parent_fds[i] >= 0)
            syscall(SYS_close, n->parent_fds[i]);
    MC_CHECK(syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl", NULL);
    MC_CHECK(syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl", NULL);
    if (syscall(SYS_poll, &alive, 1, 0) > 0)  /* the runtime is gone already */
        syscall(SYS_exit_group, 125);
    for (int i = 0; i < 3; i++)
        if (n->stdio[i] >= 0 && n->stdio[i] != i)
            MC_CHECK(syscall(SYS_dup3, n->stdio[i], i, 0), "stdio", NULL);

    /* the plan */
    MC_CHECK(syscall(SYS_unshare, n->unshare_flags), "unshare", NULL);
    if (n->hostname)
        MC_CHECK(syscall(SYS_sethostname, n->hostname, strlen(n->hostname)), "sethostname", NULL);
    if (n->lo_up)
        MC_CHECK(mc_loopback_up(), "bring lo up", NULL);
    MC_CHECK(syscall(SYS_mount, NULL, "/", NULL, MS_REC | MS_SLAVE, NULL), "rslave /", NULL);
    if (n->overlay)
        MC_CHECK(syscall(SYS_mount, "overlay", n->root, "overlay", 0, n->overlay),
                 "mount overlay on ", n->root);
    else
        MC_CHECK(syscall(SYS_mount, n->bind_source, n->root, NULL, MS_BIND | MS_REC, NULL),
                 "bind the rootfs on ", n->root);
    int root = (int)syscall(SYS_openat, AT_FDCWD, n->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    MC_CHECK(root, "open ", n->root);
    if (!n->overlay) {  /* rootfs.make_readonly: every mount in it, at once */
        struct mount_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.attr_set = MOUNT_ATTR_RDONLY;
        MC_CHECK(syscall(SYS_mount_setattr, root, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                         sizeof attr), "make the root read-only", NULL);
    }
    mc_native_system_mounts(n, root);
    MC_CHECK(syscall(SYS_fchdir, root), "chdir ", n->root);
    MC_CHECK(syscall(SYS_pivot_root, ".", "."), "pivot_root", NULL);
    MC_CHECK(syscall(SYS_umount2, ".", MNT_DETACH), "umount the old root", NULL);
    MC_CHECK(syscall(SYS_chdir, "/"), "chdir /", NULL);
    syscall(SYS_close, root);
    root = (int)syscall(SYS_openat, AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    MC_CHECK(root, "open /", NULL);
    mc_native_mask(n, root);
    int cwd = mc_in_root(root, n->workdir);
    MC_CHECK(cwd, "working directory /", n->workdir);
    syscall(SYS_close, root);
    if (!n->foreground)
        MC_CHECK(syscall(SYS_prctl, PR_SET_PDEATHSIG, 0, 0, 0, 0), "prctl", NULL);
    if (n->new_keyring && syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 &&
            errno != ENOSYS)
        mc_native_fail(n, errno, "session keyring", NULL);
    if (n->bpf && !n->no_new_privs)
        mc_native_seccomp(n);  /* needs CAP_SYS_ADMIN without no_new_privs: before the drop */
    mc_native_privileges(n);
    MC_CHECK(syscall(SYS_fchdir, cwd), "chdir to the working directory", NULL);
    syscall(SYS_close, cwd);
    if (n->bpf && n->no_new_privs)
        mc_native_seccomp(n);  /* as late as can be */

    /* process.exec_command: the command gets default dispositions (Python ignores SIGPIPE
       and SIGXFSZ; ours may have handlers that must never run here), its signal mask, fds
       0-2 (and --preserve-fds), then execve closes the error pipe: success. */
    for (int sig = 1; sig < 65; sig++) {
        struct mc_kernel_sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP ||
                syscall(SYS_rt_sigaction, sig, NULL, &sa, sizeof sa.mask) < 0)
            continue;
        if (sa.handler != SIG_DFL && (sa.handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ)) {
            memset(&sa, 0, sizeof sa);
            sa.handler = SIG_DFL;
            syscall(SYS_rt_sigaction, sig, &sa, NULL, sizeof sa.mask);
        }
    }
    for (int fd = 3; fd < 3 + n->preserve_fds; fd++)
        syscall(SYS_fcntl, fd, F_SETFD, 0);
    MC_CHECK(syscall(SYS_close_range, 3 + n->preserve_fds, ~0U, CLOSE_RANGE_CLOEXEC),
             "close_range", NULL);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &n->exec_mask, NULL, 8);
    syscall(SYS_execve, n->path, n->argv, n->envp);
    mc_native_fail(n, errno, "exec", NULL);
    return 125;
}

/* clone3 with the child on `stack`: the child starts on the new stack at the syscall's
   return, where nothing of ours can run, so it calls `fn` at once and exits with what it
   returns. x86-64: the kernel keeps every register but rax, rcx and r11. */
static long mc_clone3_on(struct mc_clone_args *args, int (*fn)(void *), void *arg)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = (long)fn;
    register long r8 __asm__("r8") = (long)arg;
    long ret;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %%r8, %%rdi\n\t"
        "call *%%r10\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $231, %%eax\n\t"  /* exit_group */
        "syscall\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "a"((long)SYS_clone3), "D"(args), "S"(sizeof *args), "r"(r10), "r"(r8)
        : "rcx", "r11", "memory", "cc");
    return ret;
#else
    (void)args; (void)fn; (void)arg;
    return -ENOSYS;  /* native.py then uses the Python child */
#endif
}

/* The child's pid, or -errno. Every signal is blocked around the clone (the child must not
   run a handler of ours, which would be Python's) and given back to us after. */
static int mc_native_spawn(struct mc_native *n, int cgroup_fd, unsigned long long clone_flags)
{
    struct mc_clone_args args;
    size_t size = 256 * 1024;
    char *stack = malloc(size);
    sigset_t all, old;
    if (!stack)
        return -ENOMEM;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VM | CLONE_VFORK | clone_flags;
    args.exit_signal = SIGCHLD;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = size;
    if (cgroup_fd >= 0) {
        args.flags |= MC_CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long pid = mc_clone3_on(&args, mc_native_child, n);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(stack);  /* the child has exec'd or exited: CLONE_VFORK */
    return (int)pid;
}
