// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only guest program for VirtioPanic's real-kernel tests: drives a watchdog through the
 * Linux watchdog ioctls, which busybox cannot all reach (pretimeout, time left, boot status) and
 * which are the only interface where the kernel has no watchdog sysfs (User-Mode Linux).
 *
 *   vp_wdctl DEVICE OP...
 *
 * Opening DEVICE starts the watchdog. OPs run in order, each printing "VP-WDCTL op result":
 *   info        WDIOC_GETSUPPORT: options (hex) and identity
 *   boot        WDIOC_GETBOOTSTATUS
 *   timeout     WDIOC_GETTIMEOUT
 *   t=N         WDIOC_SETTIMEOUT N (prints the timeout the driver set, or the errno)
 *   p=N         WDIOC_SETPRETIMEOUT N
 *   pretimeout  WDIOC_GETPRETIMEOUT
 *   left        WDIOC_GETTIMELEFT
 *   ping        WDIOC_KEEPALIVE
 *   sleep=N     sleep N seconds
 *   pet=N       WDIOC_KEEPALIVE every 500 ms for N seconds
 *   close       magic close ('V'), then close: stops the watchdog unless nowayout
 *   abandon     close without the magic character
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static void report(const char *op, int err, int value)
{
	if (err)
		printf("VP-WDCTL %s error %s\n", op, strerror(err));
	else
		printf("VP-WDCTL %s %d\n", op, value);
	fflush(stdout);
}

static void pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	int fd, i, value;

	if (argc < 3) {
		fprintf(stderr, "usage: %s DEVICE OP...\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("VP-WDCTL open error %s\n", strerror(errno));
		return 1;
	}
	printf("VP-WDCTL open 0\n");
	fflush(stdout);
	for (i = 2; i < argc; i++) {
		const char *op = argv[i];
		int err = 0;

		value = 0;
		if (!strcmp(op, "info")) {
			struct watchdog_info info;

			memset(&info, 0, sizeof(info));
			if (ioctl(fd, WDIOC_GETSUPPORT, &info))
				report(op, errno, 0);
			else {
				printf("VP-WDCTL info 0x%x %s\n", info.options, (const char *)info.identity);
				fflush(stdout);
			}
			continue;
		} else if (!strcmp(op, "boot")) {
			err = ioctl(fd, WDIOC_GETBOOTSTATUS, &value) ? errno : 0;
		} else if (!strcmp(op, "timeout")) {
			err = ioctl(fd, WDIOC_GETTIMEOUT, &value) ? errno : 0;
		} else if (!strncmp(op, "t=", 2)) {
			value = atoi(op + 2);
			err = ioctl(fd, WDIOC_SETTIMEOUT, &value) ? errno : 0;
		} else if (!strncmp(op, "p=", 2)) {
			value = atoi(op + 2);
			err = ioctl(fd, WDIOC_SETPRETIMEOUT, &value) ? errno : 0;
		} else if (!strcmp(op, "pretimeout")) {
			err = ioctl(fd, WDIOC_GETPRETIMEOUT, &value) ? errno : 0;
		} else if (!strcmp(op, "left")) {
			err = ioctl(fd, WDIOC_GETTIMELEFT, &value) ? errno : 0;
		} else if (!strcmp(op, "ping")) {
			err = ioctl(fd, WDIOC_KEEPALIVE, 0) ? errno : 0;
		} else if (!strncmp(op, "sleep=", 6)) {
			value = atoi(op + 6);
			pause_ms(value * 1000L);
		} else if (!strncmp(op, "pet=", 4)) {
			int n;

			value = atoi(op + 4);
			for (n = 0; n < value * 2 && !err; n++) {
				err = ioctl(fd, WDIOC_KEEPALIVE, 0) ? errno : 0;
				pause_ms(500);
			}
		} else if (!strcmp(op, "close")) {
			err = write(fd, "V", 1) == 1 ? 0 : errno;
			if (close(fd))
				err = errno;
			report(op, err, 0);
			return 0;
		} else if (!strcmp(op, "abandon")) {
			err = close(fd) ? errno : 0;
			report(op, err, 0);
			return 0;
		} else {
			fprintf(stderr, "unknown op %s\n", op);
			return 2;
		}
		report(op, err, value);
	}
	return 0;
}
