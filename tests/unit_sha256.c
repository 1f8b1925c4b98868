/* SHA-256 engines of sigv4.c: every engine this CPU can run gives the NIST digests and agrees
 * with BearSSL's SHA-256 on every length and every way of feeding the bytes. telkin_test.c also
 * runs the whole SigV4 group (the AWS suite, the Kinesis vectors) once per engine. */

static const struct {
	const char *msg;
	size_t repeat;            /* the message is msg repeated this many times */
	const char *hex;
} sha256t_nist[] = {
	/* FIPS 180-2 Appendix B and the NIST CSRC "SHA256.pdf" examples */
	{ "", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	{ "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
	  "lmnopqrsmnopqrstnopqrstu", 1,
	  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
	{ "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
};

static void sha256t_hex(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Run fn once per engine this CPU can run; the chosen engine is restored afterwards. */
static int sha256t_each_engine(void (*fn)(enum sigv4_sha256_engine))
{
	enum sigv4_sha256_engine was = sigv4_sha256_engine();
	int n = 0;

	for (int e = 0; e < SIGV4_SHA256_ENGINES; e++) {
		if (sigv4_sha256_select((enum sigv4_sha256_engine)e) < 0)
			continue;
		fn((enum sigv4_sha256_engine)e);
		n++;
	}
	assert_int_equal(sigv4_sha256_select(was), 0);
	return n;
}

static void sha256t_nist_one(enum sigv4_sha256_engine e)
{
	for (size_t i = 0; i < sizeof(sha256t_nist) / sizeof(sha256t_nist[0]); i++) {
		struct sigv4_sha256 h;
		uint8_t d[32];
		char hex[65];
		sigv4_sha256_init(&h);
		for (size_t r = 0; r < sha256t_nist[i].repeat; r++)
			sigv4_sha256_update(&h, sha256t_nist[i].msg, strlen(sha256t_nist[i].msg));
		sigv4_sha256_out(&h, d);
		sha256t_hex(d, hex);
		if (strcmp(hex, sha256t_nist[i].hex))
			fail_msg("%s: NIST vector %zu: %s", sigv4_sha256_engine_name(e), i, hex);
	}
}

static void test_sha256_every_engine_gives_the_nist_digests(void **state)
{
	(void)state;
	assert_true(sha256t_each_engine(sha256t_nist_one) >= 1);
}

/* Every length from 0 to 300 (every padding case, several blocks), in one piece and in pieces
 * of every size from 1 to 70, against BearSSL's SHA-256. */
static void sha256t_lengths_one(enum sigv4_sha256_engine e)
{
	static unsigned char msg[300];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (unsigned char)(i * 131 + 7);
	for (size_t len = 0; len <= sizeof msg; len++) {
		br_sha256_context ref;
		uint8_t want[32], got[32];
		br_sha256_init(&ref);
		br_sha256_update(&ref, msg, len);
		br_sha256_out(&ref, want);
		for (size_t piece = 1; piece <= 70; piece += (len < 130 ? 1 : 23)) {
			struct sigv4_sha256 h;
			sigv4_sha256_init(&h);
			for (size_t off = 0; off < len; off += piece)
				sigv4_sha256_update(&h, msg + off, len - off < piece ? len - off : piece);
			sigv4_sha256_out(&h, got);
			if (memcmp(want, got, 32))
				fail_msg("%s: length %zu in pieces of %zu differs from BearSSL",
				         sigv4_sha256_engine_name(e), len, piece);
		}
	}
}

static void test_sha256_every_engine_agrees_with_bearssl_on_every_length(void **state)
{
	(void)state;
	assert_true(sha256t_each_engine(sha256t_lengths_one) >= 1);
}

/* The engine the machine can run is the one chosen: x86 SHA-NI where /proc/cpuinfo says
 * sha_ni (and a build for x86_64), never the portable code by mistake. */
static void test_sha256_hardware_engine_is_chosen_where_the_cpu_has_one(void **state)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	int sha_ni = 0;
	enum sigv4_sha256_engine was = sigv4_sha256_engine();

	(void)state;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "flags", 5) && strstr(line, " sha_ni"))
			sha_ni = 1;
	if (f)
		fclose(f);
#if defined(__x86_64__)
	if (sha_ni) {
		assert_int_equal(sigv4_sha256_select(SIGV4_SHA256_X86_SHA), 0);
		assert_int_equal(sigv4_sha256_engine(), SIGV4_SHA256_X86_SHA);
	}
#else
	(void)sha_ni;
#endif
	assert_int_equal(sigv4_sha256_select(SIGV4_SHA256_ENGINES), -1);
	print_message("sha256 engines here:");
	for (int e = 0; e < SIGV4_SHA256_ENGINES; e++) {
		int ok = sigv4_sha256_select((enum sigv4_sha256_engine)e) == 0;
		print_message(" %s%s", sigv4_sha256_engine_name((enum sigv4_sha256_engine)e),
		              ok ? "" : " (not on this CPU)");
	}
	print_message("\n");
	assert_int_equal(sigv4_sha256_select(was), 0);
}

static const struct CMUnitTest sha256_tests[] = {
	cmocka_unit_test(test_sha256_every_engine_gives_the_nist_digests),
	cmocka_unit_test(test_sha256_every_engine_agrees_with_bearssl_on_every_length),
	cmocka_unit_test(test_sha256_hardware_engine_is_chosen_where_the_cpu_has_one),
};
