// SPDX-License-Identifier: MIT
//
// dotnet-fuzz-driver: a libFuzzer front end for one SharpFuzz-instrumented .NET process.
//
// libFuzzer (clang -fsanitize=fuzzer) owns main(), the corpus, mutation and crash reporting. This
// file only bridges each input to a long-lived .NET child that runs Fuzzer.LibFuzzer.Run, and
// brings the child's edge coverage back as libFuzzer "extra counters". The protocol is SharpFuzz's
// libFuzzer protocol (its docs/libFuzzer.md; Fuzzer.LibFuzzer.Run is the other side):
//
//   environment  __LIBFUZZER_SHM_ID           System V shared memory id the child shmat()s
//                __LIBFUZZER_CONTROL_PIPE_ID  fd number the child reads from
//                __LIBFUZZER_STATUS_PIPE_ID   fd number the child writes to
//   shared mem   [0, MAP_SIZE)                edge hit counters, written by instrumented code
//                [MAP_SIZE, MAP_SIZE + n)     the current input
//   handshake    child -> status: int32 0 once it is attached and ready
//   per input    driver -> control: int32 n (the input is already in shared memory)
//                child -> status: int32 fault (0: returned normally; nonzero: an exception
//                escaped the target, which the child has printed to stderr, and it then exits)
//
// Every int32 is native-endian. A fault, or the child dying (the status read sees end of file),
// is turned into abort(), so libFuzzer records the input as a crash; libFuzzer's own -timeout
// alarm catches hangs (the child then dies with us: PR_SET_PDEATHSIG).
//
// Usage (libFuzzer ignores flags that start with "--"; they are ours):
//   dotnet-fuzz-driver [libFuzzer flags] --target_path=/usr/bin/dotnet \
//       --target_arg=VirtioPanic.Fuzz.dll --target_arg=split [corpus dirs]

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAP_SIZE (1u << 16)		/* SharpFuzz's trace map size */
#define MAX_INPUT (1u << 20)		/* inputs are cut to this; run with -max_len at or below it */
#define MAX_TARGET_ARGS 32

// libFuzzer reads this section after every input as additional coverage features.
__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t extra_counters[MAP_SIZE];

static uint8_t *shm;
static int control_fd = -1;
static int status_fd = -1;
static pid_t child = -1;

static void die(const char *what)
{
	fprintf(stderr, "dotnet-fuzz-driver: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int write_all(int fd, const void *buffer, size_t length)
{
	const uint8_t *p = buffer;
	while (length > 0) {
		ssize_t n = write(fd, p, length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		length -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buffer, size_t length)
{
	uint8_t *p = buffer;
	while (length > 0) {
		ssize_t n = read(fd, p, length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		length -= (size_t)n;
	}
	return 0;
}

static void set_env_int(const char *name, int value)
{
	char text[16];
	snprintf(text, sizeof(text), "%d", value);
	if (setenv(name, text, 1) != 0)
		die("setenv");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *path = NULL;
	char *args[MAX_TARGET_ARGS + 2];
	int nargs = 0;

	for (int i = 1; i < *argc; i++) {
		const char *a = (*argv)[i];
		if (strncmp(a, "--target_path=", 14) == 0) {
			path = a + 14;
		} else if (strncmp(a, "--target_arg=", 13) == 0) {
			if (nargs == MAX_TARGET_ARGS) {
				fprintf(stderr, "dotnet-fuzz-driver: more than %d --target_arg flags\n", MAX_TARGET_ARGS);
				exit(1);
			}
			args[1 + nargs++] = (char *)(a + 13);
		}
	}
	if (path == NULL) {
		fprintf(stderr, "dotnet-fuzz-driver: --target_path=PROGRAM is required\n");
		exit(1);
	}
	args[0] = (char *)path;
	args[1 + nargs] = NULL;

	int id = shmget(IPC_PRIVATE, MAP_SIZE + MAX_INPUT, IPC_CREAT | IPC_EXCL | 0600);
	if (id < 0)
		die("shmget");
	shm = shmat(id, NULL, 0);
	if (shm == (void *)-1)
		die("shmat");

	int control[2], status[2];
	if (pipe2(control, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0)
		die("pipe2");

	pid_t parent = getpid();
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		// The child's ends, duplicated without O_CLOEXEC so that they survive exec.
		int in = dup(control[0]);
		int out = dup(status[1]);
		if (in < 0 || out < 0)
			die("dup");
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			die("prctl");
		if (getppid() != parent)
			_exit(1);	/* the parent is already gone */
		set_env_int("__LIBFUZZER_SHM_ID", id);
		set_env_int("__LIBFUZZER_CONTROL_PIPE_ID", in);
		set_env_int("__LIBFUZZER_STATUS_PIPE_ID", out);
		execv(path, args);
		die("execv");
	}

	close(control[0]);
	close(status[1]);
	control_fd = control[1];
	status_fd = status[0];
	signal(SIGPIPE, SIG_IGN);

	int32_t ready;
	if (read_all(status_fd, &ready, sizeof(ready)) != 0) {
		fprintf(stderr, "dotnet-fuzz-driver: %s exited before the handshake\n", path);
		exit(1);
	}
	// Both processes are attached: the segment goes away when the last one detaches.
	shmctl(id, IPC_RMID, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_INPUT)
		size = MAX_INPUT;

	memset(shm, 0, MAP_SIZE);
	if (size > 0)
		memcpy(shm + MAP_SIZE, data, size);

	int32_t length = (int32_t)size;
	int32_t fault;
	if (write_all(control_fd, &length, sizeof(length)) != 0 ||
	    read_all(status_fd, &fault, sizeof(fault)) != 0) {
		int wstatus = 0;
		if (waitpid(child, &wstatus, WNOHANG) == child && WIFSIGNALED(wstatus))
			fprintf(stderr, "dotnet-fuzz-driver: the .NET target died of signal %d\n", WTERMSIG(wstatus));
		else
			fprintf(stderr, "dotnet-fuzz-driver: the .NET target exited\n");
		abort();
	}

	memcpy(extra_counters, shm, MAP_SIZE);
	if (fault != 0) {
		fprintf(stderr, "dotnet-fuzz-driver: an exception escaped the .NET target (printed above)\n");
		abort();
	}
	return 0;
}
