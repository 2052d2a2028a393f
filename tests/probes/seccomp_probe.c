/* The attacks of tests/test_security_seccomp.py, one per argument, performed for real inside
   a container (the busybox rootfs has no tool for these syscalls). Prints OK when the call
   succeeded, else the errno's name (EPERM, ENOSYS...), and exits 0 either way.
   Built static at test time: gcc -static -o probe seccomp_probe.c */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static int report(long rc)
{
    puts(rc < 0 ? strerrorname_np(errno) : "OK");
    return 0;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "add_key"))
        return report(syscall(SYS_add_key, "user", "mc-probe", "x", 1,
                              KEY_SPEC_PROCESS_KEYRING));
    if (!strcmp(what, "keyctl"))
        return report(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0));
    if (!strcmp(what, "unshare_user"))
        return report(syscall(SYS_unshare, CLONE_NEWUSER));
    if (!strcmp(what, "userns_mount")) {
        /* the escape: a user namespace of our own, where we hold every capability, then a
           mount in a mount namespace it owns */
        if (syscall(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS) < 0)
            return report(-1);
        return report(mount("none", "/tmp", "tmpfs", 0, NULL));
    }
    if (!strcmp(what, "io_uring_setup")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        return report(syscall(SYS_io_uring_setup, 1, &p));
    }
    if (!strcmp(what, "perf_event_open")) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_TASK_CLOCK;
        attr.exclude_kernel = 1;
        return report(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    }
    if (!strcmp(what, "userfaultfd"))
        return report(syscall(SYS_userfaultfd, 0));
    if (!strcmp(what, "vsock"))
        return report(socket(AF_VSOCK, SOCK_STREAM, 0));
    if (!strcmp(what, "clone3")) {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.exit_signal = SIGCHLD;
        long pid = syscall(SYS_clone3, &args, sizeof args);
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return report(pid);
    }
    if (!strcmp(what, "fork")) {  /* clone without namespace flags: allowed */
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return report(pid);
    }
    if (!strcmp(what, "socket_inet"))  /* an allowed socket */
        return report(socket(AF_INET, SOCK_DGRAM, 0));
    if (!strcmp(what, "search") && argc > 2)  /* is this key in our session keyring? */
        return report(syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user",
                              argv[2], 0));
    if (!strcmp(what, "with_session_key") && argc > 3) {
        /* host side: a new session keyring holding key argv[2], then exec argv[3...] in it */
        if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 ||
            syscall(SYS_add_key, "user", argv[2], "secret", 6, KEY_SPEC_SESSION_KEYRING) < 0) {
            perror("keyring");
            return 2;
        }
        execvp(argv[3], argv + 3);
        perror("execvp");
        return 2;
    }
    fprintf(stderr, "usage: probe add_key|keyctl|unshare_user|userns_mount|io_uring_setup|"
            "perf_event_open|userfaultfd|vsock|clone3|fork|socket_inet|search NAME|"
            "with_session_key NAME CMD...\n");
    return 2;
}
