/*
 * The seccomp filter (telkin.c, "Least privilege") is data: these tests run both architectures'
 * filters through a small classic-BPF evaluator over struct seccomp_data, for every system call
 * the loop makes (allowed), the ones it must refuse (refused: SECCOMP_RET_TRAP with EPERM), the
 * argument checks, and other ABIs. The numbers are checked against the build's own
 * <sys/syscall.h> for the native architecture (x86_64 here, arm64 in make arm64-unit-test).
 * Last, a forked child applies the real thing and is refused (skipped under qemu-user, which
 * refuses the filter, and under ASan, whose runtime needs calls the filter refuses).
 */
#include <sys/syscall.h>
#include <sys/wait.h>

/* struct seccomp_data (include/uapi/linux/seccomp.h), as the kernel hands it to the filter. */
struct sb_data {
	int32_t nr;
	uint32_t arch;
	uint64_t instruction_pointer;
	uint64_t args[6];
};

/* Classic BPF as the seccomp filter uses it. Fails the test on anything the kernel's checker
 * (kernel/bpf/core.c, seccomp_check_filter) would refuse: a load out of the data or unaligned,
 * a jump out of the program, a program that can run off its end. */
static uint32_t sb_eval(const struct sb_insn *f, size_t n, const struct sb_data *d)
{
	uint32_t a = 0;
	unsigned char bytes[sizeof(*d)];
	size_t pc = 0;

	assert_int_equal(sizeof(*d), 64);
	memcpy(bytes, d, sizeof(bytes));
	while (pc < n) {
		const struct sb_insn *i = &f[pc];
		size_t next = pc + 1;
		switch (i->code) {
		case SB_LD_ABS:
			assert_true(i->k % 4 == 0 && i->k + 4 <= sizeof(bytes));
			memcpy(&a, bytes + i->k, 4);
			break;
		case SB_AND:
			a &= i->k;
			break;
		case SB_RET:
			return i->k;
		case SB_JEQ:
			next += a == i->k ? i->jt : i->jf;
			break;
		case SB_JGT:
			next += a > i->k ? i->jt : i->jf;
			break;
		case SB_JGE:
			next += a >= i->k ? i->jt : i->jf;
			break;
		case SB_JSET:
			next += (a & i->k) ? i->jt : i->jf;
			break;
		default:
			fail_msg("instruction %zu: opcode 0x%x is not one the filter uses", pc, i->code);
		}
		pc = next;
	}
	fail_msg("the filter ran off its end");
	return 0;
}

struct sb_name {
	const char *name;
	int x86_64, arm64;                     /* -1: the architecture has no such call */
};

/* Numbers: arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h. */
static const struct sb_name SB_NAMES[] = {
	{ "read", 0, 63 }, { "write", 1, 64 }, { "open", 2, -1 }, { "close", 3, 57 },
	{ "poll", 7, -1 }, { "lseek", 8, 62 }, { "mmap", 9, 222 }, { "mprotect", 10, 226 },
	{ "munmap", 11, 215 }, { "brk", 12, 214 }, { "rt_sigaction", 13, 134 },
	{ "rt_sigprocmask", 14, 135 }, { "rt_sigreturn", 15, 139 }, { "ioctl", 16, 29 },
	{ "readv", 19, 65 }, { "writev", 20, 66 }, { "pipe", 22, -1 }, { "madvise", 28, 233 },
	{ "dup2", 33, -1 }, { "nanosleep", 35, 101 }, { "getpid", 39, 172 }, { "socket", 41, 198 },
	{ "connect", 42, 203 }, { "accept", 43, 202 }, { "sendto", 44, 206 },
	{ "recvfrom", 45, 207 }, { "sendmsg", 46, 211 }, { "recvmsg", 47, 212 },
	{ "shutdown", 48, 210 }, { "bind", 49, 200 }, { "listen", 50, 201 },
	{ "getsockname", 51, 204 }, { "socketpair", 53, 199 }, { "setsockopt", 54, 208 },
	{ "getsockopt", 55, 209 }, { "clone", 56, 220 }, { "fork", 57, -1 }, { "vfork", 58, -1 },
	{ "execve", 59, 221 }, { "exit", 60, 93 }, { "kill", 62, 129 }, { "fcntl", 72, 25 },
	{ "chdir", 80, 49 }, { "creat", 85, -1 }, { "unlink", 87, -1 }, { "ptrace", 101, 117 },
	{ "setuid", 105, 146 }, { "prctl", 157, 167 }, { "mount", 165, 40 }, { "tkill", 200, 130 },
	{ "restart_syscall", 219, 128 }, { "clock_gettime", 228, 113 },
	{ "clock_nanosleep", 230, 115 }, { "exit_group", 231, 94 }, { "tgkill", 234, 131 },
	{ "openat", 257, 56 }, { "unlinkat", 263, 35 }, { "fchmodat", 268, 53 }, { "ppoll", 271, 73 },
	{ "accept4", 288, 242 }, { "dup3", 292, 24 }, { "pipe2", 293, 59 },
	{ "open_by_handle_at", 304, 265 }, { "process_vm_readv", 310, 270 },
	{ "process_vm_writev", 311, 271 }, { "seccomp", 317, 277 }, { "getrandom", 318, 278 },
	{ "memfd_create", 319, 279 }, { "bpf", 321, 280 }, { "execveat", 322, 281 },
	{ "pkey_mprotect", 329, 288 }, { "io_uring_setup", 425, 425 }, { "clone3", 435, 435 },
	{ "openat2", 437, 437 },
};

static int sb_nr(const struct sandbox_arch *a, const char *name)
{
	for (size_t i = 0; i < sizeof(SB_NAMES) / sizeof(SB_NAMES[0]); i++)
		if (!strcmp(SB_NAMES[i].name, name))
			return a == &SANDBOX_X86_64 ? SB_NAMES[i].x86_64 : SB_NAMES[i].arm64;
	fail_msg("no number for %s", name);
	return -1;
}

/* The filter's answer for name(args) on architecture a (-1 when a has no such call). */
static int64_t sb_answer(const struct sandbox_arch *a, uint32_t arch, const char *name,
                         uint64_t a0, uint64_t a1, uint64_t a2)
{
	struct sb_insn f[SB_FILTER_MAX];
	struct sb_data d;
	size_t n = sandbox_filter(a, f, SB_FILTER_MAX);
	int nr = sb_nr(a, name);

	assert_true(n > 0);
	if (nr < 0)
		return -1;
	memset(&d, 0, sizeof(d));
	d.nr = nr;
	d.arch = arch;
	d.args[0] = a0;
	d.args[1] = a1;
	d.args[2] = a2;
	return sb_eval(f, n, &d);
}

#define SB_REFUSED (SB_RET_TRAP | EPERM)
static const struct sandbox_arch *const SB_ARCHES[] = { &SANDBOX_X86_64, &SANDBOX_AARCH64 };

/* What the loop calls after start-up, with the arguments it calls them with. */
struct sb_call {
	const char *name;
	uint64_t a0, a1, a2;
};

static void test_sandbox_filter_allows_every_call_of_the_loop(void **state)
{
	/* AT_FDCWD, O_LARGEFILE is 0100000 on x86_64 and 0400000 on arm64 (musl adds it). */
	const uint64_t cwd = (uint64_t)(int64_t)-100, lf64 = 0100000, lfarm = 0400000;
	const struct sb_call calls[] = {
		{ "read", 5, 0, 4096 }, { "write", 2, 0, 80 }, { "close", 5, 0, 0 },
		{ "poll", 0, 7, 1000 }, { "ppoll", 0, 7, 0 }, { "lseek", 6, 0, 1 },
		{ "munmap", 0, 4096, 0 }, { "brk", 0, 0, 0 }, { "rt_sigreturn", 0, 0, 0 },
		{ "readv", 6, 0, 2 }, { "writev", 6, 0, 2 }, { "madvise", 0, 4096, 8 },
		{ "nanosleep", 0, 0, 0 }, { "clock_nanosleep", 0, 0, 0 }, { "clock_gettime", 1, 0, 0 },
		{ "connect", 6, 0, 16 }, { "accept", 4, 0, 0 }, { "accept4", 4, 0, 0 },
		{ "sendto", 6, 0, 100 }, { "recvfrom", 6, 0, 1 }, { "shutdown", 7, 1, 0 },
		{ "bind", 7, 0, 16 }, { "getsockname", 7, 0, 0 }, { "setsockopt", 6, 6, 1 },
		{ "getsockopt", 6, 1, 4 }, { "getrandom", 0, 32, 0 }, { "exit", 0, 0, 0 },
		{ "exit_group", 0, 0, 0 }, { "restart_syscall", 0, 0, 0 },
		/* files: read only (musl's fopen "rb", __fopen_rb_ca) */
		{ "open", 0, 0 | lf64, 0 }, { "open", 0, 0 | lf64 | 02000000, 0 },
		{ "openat", cwd, 0, 0 | lfarm | 02000000 }, { "openat", cwd, 0, 0 | lf64 },
		/* memory: malloc inside getaddrinfo and fopen */
		{ "mmap", 0, 4096, 3 }, { "mprotect", 0, 4096, 1 }, { "mprotect", 0, 4096, 0 },
		/* sockets: TCP (clients), UDP (the resolver and its address sorting) */
		{ "socket", 2, 1 | 02000000, 6 }, { "socket", 10, 1 | 04000 | 02000000, 0 },
		{ "socket", 2, 2 | 04000 | 02000000, 0 }, { "socket", 10, 2 | 02000000, 17 },
		{ "fcntl", 6, 1, 0 }, { "fcntl", 6, 2, 1 }, { "fcntl", 6, 3, 0 }, { "fcntl", 6, 4, 04002 },
		{ "ioctl", 7, 0x541B, 0 },              /* FIONREAD: the listener's whole-body check */
	};
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		const struct sandbox_arch *a = SB_ARCHES[k];
		for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
			int64_t r = sb_answer(a, a->audit_arch, calls[i].name, calls[i].a0, calls[i].a1,
			                      calls[i].a2);
			/* musl polls with poll on x86_64, with ppoll on arm64 (it has no poll) */
			if (!strcmp(calls[i].name, a == &SANDBOX_X86_64 ? "ppoll" : "poll"))
				continue;
			if (r != -1 && r != SB_RET_ALLOW)
				fail_msg("%s: %s(0x%llx, 0x%llx, 0x%llx) refused", a->name, calls[i].name,
				         (unsigned long long)calls[i].a0, (unsigned long long)calls[i].a1,
				         (unsigned long long)calls[i].a2);
		}
		/* Every number in the allowlist is one of the calls above. */
		for (size_t i = 0; i < a->n_allowed; i++) {
			int named = 0;
			for (size_t j = 0; j < sizeof(calls) / sizeof(calls[0]) && !named; j++)
				named = sb_nr(a, calls[j].name) == a->allowed[i];
			if (!named)
				fail_msg("%s: %u is allowed but not a call of the loop", a->name, a->allowed[i]);
		}
	}
}

static void test_sandbox_filter_refuses_escapes(void **state)
{
	static const char *const refused[] = {
		"execve", "execveat", "fork", "vfork", "clone", "clone3", "ptrace", "process_vm_readv",
		"process_vm_writev", "listen", "kill", "tkill", "tgkill", "rt_sigaction",
		"rt_sigprocmask", "prctl", "seccomp", "openat2", "open_by_handle_at", "creat", "unlink",
		"unlinkat", "memfd_create", "mount", "fchmodat", "socketpair", "pkey_mprotect",
		"io_uring_setup", "bpf", "setuid", "getpid", "ioctl", "sendmsg", "recvmsg", "dup2",
		"dup3", "pipe", "pipe2", "chdir",
	};
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		const struct sandbox_arch *a = SB_ARCHES[k];
		for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
			int64_t r = sb_answer(a, a->audit_arch, refused[i], 0, 0, 0);
			if (r != -1 && r != SB_REFUSED)
				fail_msg("%s: %s answered 0x%llx, not refused", a->name, refused[i],
				         (unsigned long long)r);
		}
		/* Numbers nobody uses are refused too. */
		for (uint32_t nr = 0; nr < 600; nr++) {
			struct sb_insn f[SB_FILTER_MAX];
			struct sb_data d = { .nr = (int32_t)nr, .arch = a->audit_arch };
			int allowed = 0;
			size_t n = sandbox_filter(a, f, SB_FILTER_MAX);
			for (size_t i = 0; i < a->n_allowed; i++)
				allowed |= a->allowed[i] == nr;
			for (size_t i = 0; i < a->n_checked; i++)
				allowed |= a->checked[i].nr == nr;
			if (!allowed)
				assert_int_equal(sb_eval(f, n, &d), SB_REFUSED);
		}
	}
}

static void test_sandbox_filter_checks_arguments(void **state)
{
	const uint64_t cwd = (uint64_t)(int64_t)-100;
	/* open flags that write, create, truncate, append, open a path only, or make a temp file */
	const uint64_t open_refused[] = { 01, 02, 0100, 01000, 02000, 010000000, 020200000,
	                                  020040000, 0100 | 02000000, 02 | 0100 | 01000 };
	const struct sb_call refused[] = {
		{ "mmap", 0, 4096, 4 }, { "mmap", 0, 4096, 7 }, { "mprotect", 0, 4096, 5 },
		{ "socket", 1, 1, 0 },                  /* AF_UNIX */
		{ "socket", 16, 3, 0 },                 /* AF_NETLINK */
		{ "socket", 17, 3, 0 },                 /* AF_PACKET */
		{ "socket", 2, 3, 255 },                /* SOCK_RAW */
		{ "socket", 10, 5, 0 },                 /* SOCK_SEQPACKET */
		{ "socket", 2, 1 | 0x100000, 0 },       /* a flag that is not NONBLOCK/CLOEXEC */
		{ "fcntl", 6, 0, 10 },                  /* F_DUPFD */
		{ "fcntl", 6, 1030, 10 },               /* F_DUPFD_CLOEXEC */
		{ "fcntl", 6, 6, 0 },                   /* F_SETLK */
		{ "fcntl", 6, 8, 1 },                   /* F_SETOWN */
		{ "ioctl", 0, 0x5412, 0 },              /* TIOCSTI: typing into a terminal */
		{ "ioctl", 6, 0x5421, 0 },              /* FIONBIO */
	};
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		const struct sandbox_arch *a = SB_ARCHES[k];
		for (size_t i = 0; i < sizeof(open_refused) / sizeof(open_refused[0]); i++) {
			int64_t r1 = sb_answer(a, a->audit_arch, "open", 0, open_refused[i], 0600);
			int64_t r2 = sb_answer(a, a->audit_arch, "openat", cwd, 0, open_refused[i]);
			if ((r1 != -1 && r1 != SB_REFUSED) || r2 != SB_REFUSED)
				fail_msg("%s: open/openat with flags 0%llo not refused", a->name,
				         (unsigned long long)open_refused[i]);
		}
		for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
			int64_t r = sb_answer(a, a->audit_arch, refused[i].name, refused[i].a0,
			                      refused[i].a1, refused[i].a2);
			if (r != SB_REFUSED)
				fail_msg("%s: %s(0x%llx, 0x%llx, 0x%llx) not refused", a->name,
				         refused[i].name, (unsigned long long)refused[i].a0,
				         (unsigned long long)refused[i].a1, (unsigned long long)refused[i].a2);
		}
	}
}

static void test_sandbox_filter_refuses_other_abis(void **state)
{
	(void)state;
	/* i386 (int 0x80 on x86_64: AUDIT_ARCH_I386), arm64 on x86_64 and the reverse, 32-bit arm
	 * on arm64 (AUDIT_ARCH_ARM): even their "read" is refused. */
	assert_int_equal(sb_answer(&SANDBOX_X86_64, 0x40000003u, "read", 0, 0, 0), SB_REFUSED);
	assert_int_equal(sb_answer(&SANDBOX_X86_64, SB_AUDIT_ARCH_AARCH64, "read", 0, 0, 0),
	                 SB_REFUSED);
	assert_int_equal(sb_answer(&SANDBOX_AARCH64, SB_AUDIT_ARCH_X86_64, "read", 0, 0, 0),
	                 SB_REFUSED);
	assert_int_equal(sb_answer(&SANDBOX_AARCH64, 0x40000028u, "read", 0, 0, 0), SB_REFUSED);
	/* x32: the x86_64 numbers with __X32_SYSCALL_BIT, on AUDIT_ARCH_X86_64. */
	{
		struct sb_insn f[SB_FILTER_MAX];
		size_t n = sandbox_filter(&SANDBOX_X86_64, f, SB_FILTER_MAX);
		struct sb_data d = { .arch = SB_AUDIT_ARCH_X86_64 };
		for (int nr = 0; nr < 600; nr++) {
			d.nr = (int32_t)(nr | (int)SB_X32_SYSCALL_BIT);
			assert_int_equal(sb_eval(f, n, &d), SB_REFUSED);
		}
	}
	/* A filter that does not fit its buffer is not built (0, never a truncated program). */
	{
		struct sb_insn f[8];
		assert_int_equal(sandbox_filter(&SANDBOX_X86_64, f, 8), 0);
	}
}

/* The tables' numbers are the build's own <sys/syscall.h> for the native architecture. */
static void test_sandbox_numbers_match_the_system_headers(void **state)
{
#define SB_SYS(n) { #n, SYS_##n }
	static const struct { const char *name; long nr; } sys[] = {
		SB_SYS(read), SB_SYS(write), SB_SYS(close), SB_SYS(lseek), SB_SYS(mmap),
		SB_SYS(mprotect), SB_SYS(munmap), SB_SYS(brk), SB_SYS(rt_sigaction),
		SB_SYS(rt_sigprocmask), SB_SYS(rt_sigreturn), SB_SYS(ioctl), SB_SYS(readv),
		SB_SYS(writev), SB_SYS(madvise), SB_SYS(nanosleep), SB_SYS(getpid), SB_SYS(socket),
		SB_SYS(connect), SB_SYS(accept), SB_SYS(sendto), SB_SYS(recvfrom), SB_SYS(sendmsg),
		SB_SYS(recvmsg), SB_SYS(shutdown), SB_SYS(bind), SB_SYS(listen), SB_SYS(getsockname),
		SB_SYS(socketpair), SB_SYS(setsockopt), SB_SYS(getsockopt), SB_SYS(clone),
		SB_SYS(execve), SB_SYS(exit), SB_SYS(kill), SB_SYS(fcntl), SB_SYS(chdir),
		SB_SYS(ptrace), SB_SYS(setuid), SB_SYS(prctl), SB_SYS(mount), SB_SYS(tkill),
		SB_SYS(restart_syscall), SB_SYS(clock_gettime), SB_SYS(clock_nanosleep),
		SB_SYS(exit_group), SB_SYS(tgkill), SB_SYS(openat), SB_SYS(unlinkat), SB_SYS(fchmodat),
		SB_SYS(ppoll), SB_SYS(accept4), SB_SYS(dup3), SB_SYS(pipe2), SB_SYS(open_by_handle_at),
		SB_SYS(process_vm_readv), SB_SYS(process_vm_writev), SB_SYS(seccomp),
		SB_SYS(getrandom), SB_SYS(memfd_create), SB_SYS(bpf), SB_SYS(execveat),
		SB_SYS(pkey_mprotect), SB_SYS(io_uring_setup), SB_SYS(clone3), SB_SYS(openat2),
#ifdef SYS_open
		SB_SYS(open), SB_SYS(poll), SB_SYS(fork), SB_SYS(vfork), SB_SYS(creat), SB_SYS(unlink),
		SB_SYS(dup2), SB_SYS(pipe),
#endif
	};
#undef SB_SYS
	(void)state;
#ifdef SANDBOX_NATIVE
	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
		if (sb_nr(SANDBOX_NATIVE, sys[i].name) != sys[i].nr)
			fail_msg("%s: %s is %ld in <sys/syscall.h>, %d in the tests' table",
			         SANDBOX_NATIVE->name, sys[i].name, sys[i].nr,
			         sb_nr(SANDBOX_NATIVE, sys[i].name));
	assert_int_equal(SB_COUNT(sys), SB_COUNT(SB_NAMES) - (SANDBOX_NATIVE == &SANDBOX_AARCH64 ? 8 : 0));
#else
	skip();
#endif
}

/*
 * The real thing, in a forked child: sandbox_apply, then execve, fork (clone), an open for
 * writing, a listen and getpid are refused with EPERM and counted, the process lives on, and a
 * TCP socket still opens. Exit 77: the kernel (or qemu-user) refused the filter.
 */
static void test_sandbox_apply_refuses_and_survives(void **state)
{
	int status;
	pid_t pid;

	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	/* ASan's runtime needs calls the filter refuses (sigaltstack, futex, tgkill when it reports
	 * at exit): the filter is for the shipped musl build, not for a sanitizer's. */
	skip();
#endif
	/* qemu-user answers EINVAL to any PR_SET_SECCOMP (a kernel: EFAULT or EACCES for a NULL
	 * program), and a fork under it may not come back here: skip without forking. */
	if (prctl(PR_SET_SECCOMP, (unsigned long)SB_MODE_FILTER, 0UL, 0UL, 0UL) < 0 && errno == EINVAL)
		skip();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct telkin *t = calloc(1, sizeof(*t));
		char err[160], path[] = "/tmp/telkin-sandbox-test-XXXXXX";
		char *argv[] = { "/bin/true", NULL };
		int fd, bad = 0, lfd;
		if (!t || mkstemp(path) < 0)
			_exit(2);
		t->listen_fd = t->api.fd = t->kin.fd = -1;
		unsetenv("TELKIN_SANDBOX");
		if (sandbox_config(err, sizeof(err)) < 0)
			_exit(3);
		sandbox_apply(t);
		if (strcmp(sandbox_state(), "on"))
			_exit(77);
		errno = 0;
		bad |= !(execve(argv[0], argv, NULL) < 0 && errno == EPERM) << 0;
		errno = 0;
		bad |= !(syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L) < 0 && errno == EPERM) << 1;
		errno = 0;
		bad |= !(open(path, O_WRONLY) < 0 && errno == EPERM) << 2;
		lfd = socket(AF_INET, SOCK_STREAM, 0);
		bad |= !(lfd >= 0) << 3;
		errno = 0;
		bad |= !(listen(lfd, 1) < 0 && errno == EPERM) << 4;
		errno = 0;
		bad |= !(syscall(SYS_getpid) < 0 && errno == EPERM) << 5;
		bad |= !(sandbox_denied() == 5) << 6;
		fd = open(path, O_RDONLY);
		bad |= !(fd >= 0) << 7;
		_exit(bad ? 10 + bad : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip(); /* qemu-user: PR_SET_SECCOMP is EINVAL, telkin runs unfiltered */
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * The descriptor count behind RLIMIT_NOFILE: SANDBOX_FDS_FIXED and the slots, plus each inherited
 * descriptor below that, found across poll()'s chunks (one on each side of a chunk's edge, one
 * only reached because earlier ones raised the count), not the ones telkin opened itself nor any
 * above the count; the same when poll() refuses the chunk (RLIMIT_NOFILE below its size) and
 * fcntl() is asked one by one.
 */
static void test_sandbox_fds_needed_counts_inherited_descriptors(void **state)
{
	/* The count starts at `start`; inherited: the last of poll()'s first chunk, the first of its
	 * second, and `start` itself (counted only because those two raised the count past it);
	 * telkin's own listener just above; one far above (never counted). */
	const int edge = STDERR_FILENO + 1 + SANDBOX_PROBE_FDS, start = edge + 40;
	const int held[] = { edge - 1, edge, start, start + 1, start + 50 };
	const int n = (int)(sizeof(held) / sizeof(held[0]));
	int stray = 0;
	struct telkin *t = calloc(1, sizeof(*t));
	struct rlimit saved, low;
	struct pollfd none[SANDBOX_PROBE_FDS];

	(void)state;
	assert_non_null(t);
	for (int i = 0; i < SANDBOX_PROBE_FDS; i++)
		none[i] = (struct pollfd){ .fd = -1 };
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	if (saved.rlim_cur <= (rlim_t)held[n - 1])
		skip();
	/* The test runner may have left descriptors open below (make's jobserver, a shell's): each
	 * of those below the count raises it by one more. */
	for (int fd = STDERR_FILENO + 1; fd < start + 3 + stray; fd++)
		if (fd != held[0] && fd != held[1] && fd != held[2] && fd != held[3] &&
		    fd != held[4] && fcntl(fd, F_GETFD) >= 0)
			stray++;
	for (int i = 0; i < n; i++)
		assert_int_equal(dup2(STDERR_FILENO, held[i]), held[i]);
	t->n_conns = (size_t)start - SANDBOX_FDS_FIXED;
	t->listen_fd = start + 1;
	t->api.fd = t->kin.fd = -1;
	assert_int_equal(sandbox_fds_needed(t), start + 3 + stray);
	/* poll() refuses more descriptors than RLIMIT_NOFILE: the same count through fcntl(). */
	low = saved;
	low.rlim_cur = SANDBOX_PROBE_FDS - 1;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	errno = 0;
	assert_true(poll(none, SANDBOX_PROBE_FDS, 0) < 0 && errno == EINVAL);
	assert_int_equal(sandbox_fds_needed(t), start + 3 + stray);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	for (int i = 0; i < n; i++)
		close(held[i]);
	free(t);
}

static const struct CMUnitTest sandbox_tests[] = {
	cmocka_unit_test(test_sandbox_filter_allows_every_call_of_the_loop),
	cmocka_unit_test(test_sandbox_filter_refuses_escapes),
	cmocka_unit_test(test_sandbox_filter_checks_arguments),
	cmocka_unit_test(test_sandbox_filter_refuses_other_abis),
	cmocka_unit_test(test_sandbox_numbers_match_the_system_headers),
	cmocka_unit_test(test_sandbox_apply_refuses_and_survives),
	cmocka_unit_test(test_sandbox_fds_needed_counts_inherited_descriptors),
};
