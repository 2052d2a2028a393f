"""VM mode: the same rootfs and command as a container, booted under QEMU with a real kernel.

Small reusable pieces (issue 4's guest test lane builds on them; names are stable):
    kernel.guest_kernel(explicit=None)   -> GuestKernel(version, image, vmlinux, modules, source)
    kernel.vmlinux_of(k), kernel.module_closure(k, names)
    accel.detect_accel()                 -> Accel('kvm'|'tcg', note)
    initramfs.build_initramfs(rootfs, kernel, modules={group: [names]}, extra_files=[...])
    qemu.guest_cmdline(args, ...), qemu.qemu_argv(kernel, initrd, cmdline, extra=[...]),
    qemu.boot(argv)                      -> BootResult(status, guest_mem_kib, ...)
    launch.run_vm(VMConfig(...))         everything `minicontainer vm run` does
Nothing here is imported by `minicontainer run`.
"""
