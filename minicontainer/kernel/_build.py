"""cffi build script: compiles minicontainer.kernel._kernel at install time (out-of-line API mode).

Nothing here runs when a container starts: the run path imports the compiled module only, so no
C declarations are parsed at run time. Every function below is either a libc call Python's os
module lacks (unshare, setns, mount, umount2, pivot_root, sethostname, prctl) or a few lines of C
that are clearer and faster in C than in Python (bringing `lo` up, opening a pty pair, the
reaping loop of --init).
"""
import os

from cffi import FFI

ffibuilder = FFI()

# native.c: its own file, a C program a newcomer reads top to bottom (appended to the source)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "native.c")) as _f:
    NATIVE_C = _f.read()

ffibuilder.cdef(
    """
    #define CLONE_NEWNS ...
    #define CLONE_NEWUTS ...
    #define CLONE_NEWIPC ...
    #define CLONE_NEWUSER ...
    #define CLONE_NEWPID ...
    #define CLONE_NEWNET ...
    #define CLONE_NEWCGROUP ...
    #define CLONE_NEWTIME ...

    #define MS_RDONLY ...
    #define MS_NOSUID ...
    #define MS_NODEV ...
    #define MS_NOEXEC ...
    #define MS_REMOUNT ...
    #define MS_BIND ...
    #define MS_MOVE ...
    #define MS_REC ...
    #define MS_PRIVATE ...
    #define MS_SLAVE ...
    #define MS_STRICTATIME ...
    #define MS_RELATIME ...
    #define MNT_DETACH ...

    #define PR_SET_PDEATHSIG ...
    #define PR_SET_NO_NEW_PRIVS ...
    #define PR_GET_NO_NEW_PRIVS ...
    #define PR_SET_CHILD_SUBREAPER ...
    #define PR_CAP_AMBIENT ...
    #define PR_CAP_AMBIENT_RAISE ...
    #define PR_CAP_AMBIENT_CLEAR_ALL ...
    #define PR_SET_KEEPCAPS ...

    int unshare(int flags);
    int setns(int fd, int nstype);
    int mount(const char *source, const char *target, const char *filesystemtype,
              unsigned long mountflags, const void *data);
    int umount2(const char *target, int flags);
    int sethostname(const char *name, size_t len);
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
              unsigned long arg5);

    int mc_pivot_root(const char *new_root, const char *put_old);
    int mc_fork(unsigned long long flags, int cgroup_fd);
    int mc_loopback_up(void);
    int mc_open_pty(const char *ptmx, int *master, int *slave);
    int mc_init_supervise(int child);

    /* ---- mount targets resolved inside the root, and the new mount API (issue 9:
       secure join, recursive read-only; runtime/rootfs.py). ---- */
    #define MS_SHARED ...
    #define MS_UNBINDABLE ...
    #define MS_NOATIME ...
    #define MS_NODIRATIME ...
    #define MC_RESOLVE_NO_MAGICLINKS ...
    #define MC_RESOLVE_NO_SYMLINKS ...
    #define MC_RESOLVE_IN_ROOT ...
    #define MC_AT_RECURSIVE ...
    #define MC_OPEN_TREE_CLONE ...
    #define MC_MOUNT_ATTR_RDONLY ...
    #define MC_MOUNT_ATTR_NOSUID ...
    #define MC_MOUNT_ATTR_NODEV ...
    #define MC_MOUNT_ATTR_NOEXEC ...
    #define MC_MOUNT_ATTR__ATIME ...
    #define MC_MOUNT_ATTR_RELATIME ...
    #define MC_MOUNT_ATTR_NOATIME ...
    #define MC_MOUNT_ATTR_STRICTATIME ...
    #define MC_MOUNT_ATTR_NODIRATIME ...
    int mc_openat2(int dirfd, const char *path, unsigned long long flags,
                   unsigned long long mode, unsigned long long resolve);
    int mc_open_tree(int dirfd, const char *path, unsigned int flags);
    int mc_move_mount_fd(int from_fd, int to_fd);
    int mc_mount_setattr(int dirfd, const char *path, unsigned int flags,
                         unsigned long long attr_set, unsigned long long attr_clr,
                         unsigned long long propagation);

    /* descriptors and exec hardening (runtime/process.py, runtime/exec.py) */
    #define CLOSE_RANGE_CLOEXEC ...
    #define PR_SET_DUMPABLE ...
    #define CLONE_PARENT ...
    int mc_close_range(unsigned int first, unsigned int last, unsigned int flags);

    /* --- capabilities and uts (oci.py's process fields): raw capget/capset (python-prctl
       1.8 knows no capability past CAP_BPF), the bounding set by number, setdomainname --- */
    #define PR_CAPBSET_READ ...
    #define PR_CAPBSET_DROP ...
    #define PR_CAP_AMBIENT_IS_SET ...
    int mc_capget(unsigned long long *effective, unsigned long long *permitted,
                  unsigned long long *inheritable);
    int mc_capset(unsigned long long effective, unsigned long long permitted,
                  unsigned long long inheritable);
    int setdomainname(const char *name, size_t len);

    /* --- the device cgroup of cgroup v2 (runtime/devices.py): load a
       BPF_PROG_TYPE_CGROUP_DEVICE program, attach it to a cgroup --- */
    int mc_bpf_device_prog_load(const void *insns, unsigned int count, char *log,
                                unsigned int log_size);
    int mc_bpf_device_attach(int cgroup_fd, int prog_fd);

    /* ---- seccomp and keyrings (minicontainer/kernel/seccomp.py) ----
       libseccomp compiles a profile to BPF once (the result is cached, see
       runtime/seccomp.py); mc_seccomp_load installs such BPF with seccomp(2), which is all a
       container start does. */
    typedef void *scmp_filter_ctx;
    enum scmp_compare { SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE,
                        SCMP_CMP_GT, SCMP_CMP_MASKED_EQ, ... };
    struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op; uint64_t datum_a;
                          uint64_t datum_b; };
    #define SCMP_ACT_KILL_PROCESS ...
    #define SCMP_ACT_KILL_THREAD ...
    #define SCMP_ACT_TRAP ...
    #define SCMP_ACT_LOG ...
    #define SCMP_ACT_ALLOW ...
    #define SCMP_ACT_NOTIFY ...
    #define MC_SCMP_ACT_ERRNO ...
    #define MC_SCMP_ACT_TRACE ...
    #define SCMP_FLTATR_CTL_NNP ...
    #define SCMP_FLTATR_CTL_OPTIMIZE ...
    #define SCMP_VER_MAJOR ...
    #define SCMP_VER_MINOR ...
    #define SCMP_VER_MICRO ...
    #define SECCOMP_FILTER_FLAG_TSYNC ...
    #define SECCOMP_FILTER_FLAG_LOG ...
    #define SECCOMP_FILTER_FLAG_SPEC_ALLOW ...
    #define KEYCTL_JOIN_SESSION_KEYRING ...

    scmp_filter_ctx seccomp_init(uint32_t def_action);
    void seccomp_release(scmp_filter_ctx ctx);
    int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
    uint32_t seccomp_arch_resolve_name(const char *arch_name);
    uint32_t seccomp_arch_native(void);
    int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
    int seccomp_syscall_resolve_name(const char *name);
    int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                               unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
    int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
    int mc_seccomp_load(const char *bpf, size_t len, unsigned int flags);
    long mc_join_session_keyring(const char *name);

    """
    # the container's first process set up in C (native.c, runtime/native.py): its structs,
    # declared once, in native.c
    + NATIVE_C[NATIVE_C.index("/* cffi declarations: from here */"):
               NATIVE_C.index("/* cffi declarations: to here */")] + """
    int mc_native_spawn(struct mc_native *n, int cgroup_fd, unsigned long long clone_flags);
    """
)

ffibuilder.set_source(
    "minicontainer.kernel._kernel",
    r"""
    #ifndef _GNU_SOURCE
    #define _GNU_SOURCE
    #endif
    #include <errno.h>
    #include <stdint.h>
    #include <fcntl.h>
    #include <net/if.h>
    #include <sched.h>
    #include <signal.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/ioctl.h>
    #include <sys/mount.h>
    #include <sys/prctl.h>
    #include <sys/socket.h>
    #include <sys/syscall.h>
    #include <sys/wait.h>
    #include <termios.h>
    #include <unistd.h>

    #ifndef CLONE_NEWTIME
    #define CLONE_NEWTIME 0x00000080
    #endif
    #ifndef TIOCGPTPEER
    #define TIOCGPTPEER _IO('T', 0x41)
    #endif

    /* glibc has no wrapper for pivot_root(2). */
    static int mc_pivot_root(const char *new_root, const char *put_old)
    {
        return syscall(SYS_pivot_root, new_root, put_old);
    }

    /* fork(), done with clone3(2) so that the child can be born in new namespaces and,
       with CLONE_INTO_CGROUP, directly in its cgroup. Moving a process into a cgroup later
       (a write to cgroup.procs) takes a lock whose first use costs an RCU grace period:
       10-20 ms on our machines, on every container start. crun starts containers this way
       too. Like os.fork, it runs Python's before/after-fork hooks with the GIL held (cffi
       released it for this call). The child's glibc keeps the parent's cached thread id;
       nothing between here and execve uses it (no raise(), no pthread_kill()). */
    struct mc_clone_args {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
                 set_tid, set_tid_size, cgroup;
    };
    #define MC_CLONE_INTO_CGROUP 0x200000000ULL

    static int mc_fork(unsigned long long flags, int cgroup_fd)
    {
        struct mc_clone_args args;
        PyGILState_STATE gil = PyGILState_Ensure();
        memset(&args, 0, sizeof args);
        args.flags = flags;
        /* With CLONE_PARENT the child signals our parent as we would: clone3 wants 0 here. */
        args.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
        if (cgroup_fd >= 0) {
            args.flags |= MC_CLONE_INTO_CGROUP;
            args.cgroup = (uint64_t)cgroup_fd;
        }
        PyOS_BeforeFork();
        long pid = syscall(SYS_clone3, &args, sizeof args);
        /* docker's seccomp profile answers clone3 with ENOSYS (its flags are out of a filter's
           sight) so that libc falls back to clone, whose flags it checks: so do we, when
           clone3 alone was not needed (exec's intermediate, filtered without no_new_privs). */
        if (pid < 0 && errno == ENOSYS && cgroup_fd < 0)
            pid = syscall(SYS_clone, (unsigned long)(flags | args.exit_signal), 0, 0, 0, 0);
        int saved = errno;
        if (pid == 0)
            PyOS_AfterFork_Child();
        else
            PyOS_AfterFork_Parent();
        PyGILState_Release(gil);
        errno = saved;
        return (int)pid;
    }

    /* A new network namespace has `lo` down; the classic SIOCSIFFLAGS ioctl brings it up
       without loading a netlink library. */
    static int mc_loopback_up(void)
    {
        struct ifreq ifr;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        memset(&ifr, 0, sizeof ifr);
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
            goto fail;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
            goto fail;
        close(fd);
        return 0;
    fail:
        { int saved = errno; close(fd); errno = saved; }
        return -1;
    }

    /* Open a pty pair from a given ptmx (the container's own devpts instance), so the
       terminal belongs to the container: TIOCGPTPEER opens the peer without a path lookup. */
    static int mc_open_pty(const char *ptmx, int *master, int *slave)
    {
        int unlock = 0;
        int m = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0)
            return -1;
        if (ioctl(m, TIOCSPTLCK, &unlock) < 0)
            goto fail;
        int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (s < 0)
            goto fail;
        *master = m;
        *slave = s;
        return 0;
    fail:
        { int saved = errno; close(m); errno = saved; }
        return -1;
    }

    /* The loop of --init, a PID 1 like docker's tini: every signal is blocked by the caller
       before it forks the command; here we wait for them synchronously, forward all but
       SIGCHLD to the command, reap every zombie, and return the command's status in shell
       form (code, or 128+signal) once the command itself has exited. */
    static int mc_init_supervise(int child)
    {
        sigset_t all;
        sigfillset(&all);
        for (;;) {
            int sig = sigwaitinfo(&all, NULL);
            if (sig < 0) {
                if (errno == EINTR)
                    continue;
                return 125;
            }
            if (sig != SIGCHLD) {
                kill(child, sig);
                continue;
            }
            int status, result = -1;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (pid != child)
                    continue;
                result = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
            }
            if (result >= 0) {
                /* Reap whatever orphan is already gone; the rest die with the namespace. */
                while (waitpid(-1, &status, WNOHANG) > 0)
                    ;
                return result;
            }
        }
    }

    /* ---- mount targets resolved inside the root, and the new mount API (issue 9:
       secure join, recursive read-only; runtime/rootfs.py). glibc 2.36 has no wrappers for
       these, and <linux/mount.h> clashes with <sys/mount.h>: the kernel's values, named
       MC_*. The syscall numbers are the same on every architecture. ---- */
    #ifndef SYS_openat2
    #define SYS_openat2 437
    #endif
    #ifndef SYS_open_tree
    #define SYS_open_tree 428
    #endif
    #ifndef SYS_move_mount
    #define SYS_move_mount 429
    #endif
    #ifndef SYS_mount_setattr
    #define SYS_mount_setattr 442
    #endif
    #define MC_RESOLVE_NO_MAGICLINKS 0x02
    #define MC_RESOLVE_NO_SYMLINKS 0x04
    #define MC_RESOLVE_IN_ROOT 0x10
    #define MC_AT_RECURSIVE 0x8000
    #define MC_OPEN_TREE_CLONE 1
    #define MC_MOVE_MOUNT_F_EMPTY_PATH 0x04
    #define MC_MOVE_MOUNT_T_EMPTY_PATH 0x40
    #define MC_MOUNT_ATTR_RDONLY 0x01
    #define MC_MOUNT_ATTR_NOSUID 0x02
    #define MC_MOUNT_ATTR_NODEV 0x04
    #define MC_MOUNT_ATTR_NOEXEC 0x08
    #define MC_MOUNT_ATTR__ATIME 0x70
    #define MC_MOUNT_ATTR_RELATIME 0x00
    #define MC_MOUNT_ATTR_NOATIME 0x10
    #define MC_MOUNT_ATTR_STRICTATIME 0x20
    #define MC_MOUNT_ATTR_NODIRATIME 0x80

    /* openat2(2): RESOLVE_IN_ROOT makes "/" and ".." (symlinks included) stop at dirfd. */
    static int mc_openat2(int dirfd, const char *path, unsigned long long flags,
                          unsigned long long mode, unsigned long long resolve)
    {
        struct { uint64_t flags, mode, resolve; } how = { flags, mode, resolve };
        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    }

    /* open_tree(2) with OPEN_TREE_CLONE: a detached copy of a mount (tree) as an fd. */
    static int mc_open_tree(int dirfd, const char *path, unsigned int flags)
    {
        return (int)syscall(SYS_open_tree, dirfd, path, flags | O_CLOEXEC);
    }

    /* move_mount(2) from a detached tree onto the directory or file an fd names. */
    static int mc_move_mount_fd(int from_fd, int to_fd)
    {
        return (int)syscall(SYS_move_mount, from_fd, "", to_fd, "",
                            MC_MOVE_MOUNT_F_EMPTY_PATH | MC_MOVE_MOUNT_T_EMPTY_PATH);
    }

    /* mount_setattr(2): flags with AT_RECURSIVE change a whole tree at once. */
    static int mc_mount_setattr(int dirfd, const char *path, unsigned int flags,
                                unsigned long long attr_set, unsigned long long attr_clr,
                                unsigned long long propagation)
    {
        struct { uint64_t attr_set, attr_clr, propagation, userns_fd; } attr =
            { attr_set, attr_clr, propagation, 0 };
        return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof attr);
    }

    /* descriptors and exec hardening: close_range(2) with its flags (os.closerange has none;
       CLOSE_RANGE_CLOEXEC marks instead of closing, so the error pipe stays open up to the
       execve that closes it). glibc 2.34 has a wrapper, older headers not even the flag. */
    #include <linux/close_range.h>
    static int mc_close_range(unsigned int first, unsigned int last, unsigned int flags)
    {
        return syscall(SYS_close_range, first, last, flags);
    }

    /* --- capabilities and uts (oci.py's process fields) ---
       capget/capset(2) with the version 3 header: two 32-bit words per set, so every
       capability up to 63 (the kernel has 41 today: 0..CAP_CHECKPOINT_RESTORE). */
    #include <linux/capability.h>

    static int mc_capget(unsigned long long *effective, unsigned long long *permitted,
                         unsigned long long *inheritable)
    {
        struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data);
        if (syscall(SYS_capget, &header, data) < 0)
            return -1;
        *effective = data[0].effective | (unsigned long long)data[1].effective << 32;
        *permitted = data[0].permitted | (unsigned long long)data[1].permitted << 32;
        *inheritable = data[0].inheritable | (unsigned long long)data[1].inheritable << 32;
        return 0;
    }

    static int mc_capset(unsigned long long effective, unsigned long long permitted,
                         unsigned long long inheritable)
    {
        struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        data[0].effective = (uint32_t)effective;
        data[1].effective = (uint32_t)(effective >> 32);
        data[0].permitted = (uint32_t)permitted;
        data[1].permitted = (uint32_t)(permitted >> 32);
        data[0].inheritable = (uint32_t)inheritable;
        data[1].inheritable = (uint32_t)(inheritable >> 32);
        return syscall(SYS_capset, &header, data);
    }

    /* --- the device cgroup of cgroup v2: what runc and crun attach (runc's
       libcontainer/cgroups/ebpf) --- */
    #include <linux/bpf.h>

    static int mc_bpf_device_prog_load(const void *insns, unsigned int count, char *log,
                                       unsigned int log_size)
    {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
        attr.insns = (uint64_t)(uintptr_t)insns;
        attr.insn_cnt = count;
        attr.license = (uint64_t)(uintptr_t)"MIT";
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = log_size;
        attr.log_level = log_size ? 1 : 0;
        return syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    }

    static int mc_bpf_device_attach(int cgroup_fd, int prog_fd)
    {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.target_fd = cgroup_fd;
        attr.attach_bpf_fd = prog_fd;
        attr.attach_type = BPF_CGROUP_DEVICE;
        attr.attach_flags = BPF_F_ALLOW_MULTI;
        return syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof attr);
    }

    /* ---- seccomp and keyrings (minicontainer/kernel/seccomp.py) ---- */
    #include <seccomp.h>
    #include <linux/filter.h>
    #include <linux/keyctl.h>
    #include <linux/seccomp.h>

    /* SCMP_ACT_ERRNO(x) and SCMP_ACT_TRACE(x) are function-like macros: their bases, ORed
       with the errno (or trace value) in Python. */
    #define MC_SCMP_ACT_ERRNO SCMP_ACT_ERRNO(0)
    #define MC_SCMP_ACT_TRACE SCMP_ACT_TRACE(0)
    #ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
    #define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
    #endif

    /* Install BPF as made by seccomp_export_bpf: seccomp(2) rather than prctl, for the
       flags (LOG, SPEC_ALLOW). Returns -1 and errno on failure. */
    static int mc_seccomp_load(const char *bpf, size_t len, unsigned int flags)
    {
        struct sock_fprog prog;
        prog.len = (unsigned short)(len / sizeof(struct sock_filter));
        prog.filter = (struct sock_filter *)bpf;
        return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    }

    /* keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a new session keyring (NULL: anonymous),
       so that the container does not share the one it was started from. */
    static long mc_join_session_keyring(const char *name)
    {
        return syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name);
    }
    """ + NATIVE_C,
    # PyOS_BeforeFork and friends are not in the limited C API.
    py_limited_api=False,
    define_macros=[("_CFFI_NO_LIMITED_API", None)],
    libraries=["seccomp"],  # libseccomp-dev: the seccomp block at the end
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
