// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only guest program for VirtioPanic's real-kernel tests: loads a crash kernel with
 * kexec_file_load(2), since the busybox initramfs has no kexec-tools.
 *
 *   vp_kexec_crash BZIMAGE "COMMAND LINE"
 *
 * The kernel must have memory reserved with crashkernel=SIZE. The crash kernel gets no initramfs.
 */
#include <fcntl.h>
#include <linux/kexec.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long result;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s BZIMAGE CMDLINE\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	/* The command line length includes its terminating NUL. */
	result = syscall(SYS_kexec_file_load, fd, -1, strlen(argv[2]) + 1, argv[2],
			 KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS);
	if (result != 0) {
		perror("kexec_file_load");
		return 1;
	}
	close(fd);
	return 0;
}
