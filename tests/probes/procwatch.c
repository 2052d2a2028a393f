/* procwatch: run inside a container, race every process that appears in its pid namespace
   and try to reach the host through /proc/PID/root, cwd, exe and fd/N of it.

   usage: procwatch STOPFILE MARKERDIR MARKER DEV:INO...
   STOPFILE  stop when this path exists (the test creates it with a last exec)
   MARKERDIR, MARKER  a directory on the host only, relative to / (tmp/pytest-x/host), and a
             file in it: MARKERDIR/MARKER under root/, or MARKER under cwd/ or fd/N/ of a
             process, and that process held the host's root, or a directory of the host
   DEV:INO   files and directories of the host (its /, the marker's directory, the
             interpreter the runtime runs on): opening one through /proc is reaching it

   Also: the runtime's command line (it holds --root) read from /proc/PID/cmdline.

   Prints one line per thing reached (HIT ...), then a summary: how many processes it saw,
   how many it caught before their execve (non-dumpable: EACCES on exe, or exe the host's),
   and what /proc/PID/exe read as while they were the runtime's. Static, no libc beyond
   syscalls, so it is fast enough to hit a window of microseconds. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXPIDS 4194304
static unsigned char seen[MAXPIDS];
static unsigned long long host[64][2];
static int nhost;
static const char *marker_dir, *marker;
static int hits, pids, caught, exe_open, exe_host;
static char exe_link[512];

static int is_host(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    for (int i = 0; i < nhost; i++)
        if (st.st_dev == host[i][0] && st.st_ino == host[i][1])
            return 1;
    return 0;
}

static void hit(const char *what, int pid, const char *detail)
{
    hits++;
    printf("HIT %s pid %d: %s\n", what, pid, detail);
}

/* path is /proc/PID/{root,cwd,fd/N}: is the host marker under it, or is it a host file? */
static void probe_dir(const char *what, int pid, const char *path)
{
    char buf[1024], link[512];
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    char under_root[1024];
    snprintf(buf, sizeof buf, "%s/%s", path, marker);
    snprintf(under_root, sizeof under_root, "%s/%s/%s", path, marker_dir, marker);
    if (access(buf, F_OK) == 0 || access(under_root, F_OK) == 0) {
        snprintf(buf, sizeof buf, "%s -> %s holds the host's marker", path, link);
        hit(what, pid, buf);
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
        if (is_host(fd)) {
            snprintf(buf, sizeof buf, "%s -> %s opened a host file", path, link);
            hit(what, pid, buf);
        }
        close(fd);
    }
}

/* /proc/PID/cmdline is readable by anyone: the runtime's own command line (its --root, the
   host's paths) must not be what a process of the container shows. */
static void probe_cmdline(int pid)
{
    char path[128], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    for (ssize_t i = 0; i < n; i++)
        if (!buf[i])
            buf[i] = ' ';
    buf[n] = 0;
    if (strstr(buf, "--root"))
        hit("cmdline", pid, buf);
}

static void probe(int pid)
{
    char path[128], link[512];
    pids++;
    probe_cmdline(pid);
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == EACCES)
        caught++;  /* non-dumpable: one of ours, before its execve */
    if (fd >= 0) {
        exe_open++;
        if (is_host(fd)) {
            caught++;
            exe_host++;
            ssize_t n = readlink(path, link, sizeof link - 1);
            if (n > 0 && !exe_link[0]) {
                link[n] = 0;
                strcpy(exe_link, link);
            }
        }
        close(fd);
    }
    snprintf(path, sizeof path, "/proc/%d/root", pid);
    probe_dir("root", pid, path);
    snprintf(path, sizeof path, "/proc/%d/cwd", pid);
    probe_dir("cwd", pid, path);
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char fdpath[300];
        snprintf(fdpath, sizeof fdpath, "/proc/%d/fd/%s", pid, e->d_name);
        probe_dir("fd", pid, fdpath);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: procwatch STOPFILE MARKERDIR MARKER DEV:INO...\n");
        return 2;
    }
    marker_dir = argv[2];
    marker = argv[3];
    for (int i = 4; i < argc && nhost < 64; i++)
        if (sscanf(argv[i], "%llu:%llu", &host[nhost][0], &host[nhost][1]) == 2)
            nhost++;
    int self = getpid();
    int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    printf("watching\n");
    fflush(stdout);
    while (access(argv[1], F_OK) != 0) {
        lseek(procfd, 0, SEEK_SET);
        DIR *d = fdopendir(dup(procfd));
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == self || pid >= MAXPIDS || seen[pid])
                continue;
            seen[pid] = 1;
            probe(pid);
        }
        closedir(d);
    }
    printf("pids %d caught %d exe_opened %d exe_host %d exe_link %s hits %d\n",
           pids, caught, exe_open, exe_host, exe_link[0] ? exe_link : "-", hits);
    return 0;
}
