/* Unit tests for telkin.c's pieces: configuration, HTTP parsing, queue, ingest, batcher, Kinesis
 * answers (included by telkin_test.c, which includes telkin.c itself). */
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------- */

static void tk_env_minimal(void)
{
	static const char *const vars[] = {
		"TELKIN_STREAM", "AWS_REGION", "AWS_DEFAULT_REGION", "TELKIN_ENDPOINT",
		"AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "TELKIN_LISTEN_PORT",
		"TELKIN_BUFFER_ITEMS", "TELKIN_BUFFER_BYTES", "TELKIN_BUFFER_TIMEOUT_MS",
		"TELKIN_TYPES", "TELKIN_QUEUE_BYTES", "TELKIN_PARTITION_KEY",
		"TELKIN_FLUSH_TIMEOUT_MS", "TELKIN_LOG_LEVEL", "TELKIN_CPU_PIN",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("TELKIN_STREAM", "s1", 1);
	setenv("AWS_REGION", "eu-west-1", 1);
	setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4567", 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
}

/* A process state with buffers, as after start-up, without any socket. */
static struct telkin *tk_new(size_t queue_bytes)
{
	struct telkin *t = calloc(1, sizeof(*t));
	char err[320];
	char q[32];

	assert_non_null(t);
	tk_env_minimal();
	snprintf(q, sizeof(q), "%zu", queue_bytes);
	setenv("TELKIN_QUEUE_BYTES", q, 1);
	setenv("AWS_LAMBDA_FUNCTION_NAME", "fn", 1);
	setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST", 1);
	g_log_level = LOG_ERROR;
	assert_int_equal(config_load(&t->cfg, err, sizeof(err)), 0);
	g_log_level = LOG_ERROR;
	strcpy(t->sandbox_id, "0123456789abcdef0123456789abcdef");
	assert_int_equal(identity_build(t), 0);
	assert_int_equal(buffers_alloc(t), 0);
	t->api.fd = t->kin.fd = t->listen_fd = -1;
	t->metrics_at = now_ms(); /* no metrics line from lifecycle steps in tests */
	return t;
}

static void tk_free(struct telkin *t)
{
	for (int i = 0; i < LISTEN_BODY_BUFS; i++)
		buffer_unmap(t->body_bufs[i], LISTEN_HEAD_MAX + t->body_limit);
	free(t->conns);
	free(t->listen_heads);
	free(t->pfd);
	buffer_unmap(t->q.mem, t->q.cap);
	buffer_unmap(t->req_body, REQUEST_BODY_MAX);
	free(t->kin.buf);
	free(t->batch_toks);
	free(t->resp_toks);
	free(t->inflight_entries);
	free(t);
}

static int tk_ingest(struct telkin *t, const char *body)
{
	char err[160];
	return ingest_batch(t, body, strlen(body), err, sizeof(err));
}

/* The data of the n-th queued entry, NUL-terminated into out. */
static const char *tk_entry(struct telkin *t, size_t n, char *out, size_t cap)
{
	size_t off = queue_first(&t->q);
	for (size_t i = 0; i < n && off != SIZE_MAX; i++)
		off = queue_next(&t->q, off);
	assert_true(off != SIZE_MAX);
	struct queue_entry *e = queue_at(&t->q, off);
	assert_true(e->data_len < cap);
	memcpy(out, entry_data(e), e->data_len);
	out[e->data_len] = 0;
	return out;
}

/* Make the PutRecords response for the in-flight request: failed[i] says record i failed. */
static void tk_respond(struct telkin *t, int status, const char *body)
{
	size_t n = strlen(body);
	memcpy(t->kin.buf, body, n + 1);
	t->kin.body = t->kin.buf;
	t->kin.body_len = n;
	t->kin.head.status = status;
	t->kin.state = HC_DONE;
	t->request_out = 1;
	kinesis_on_response(t, now_ms());
}

static size_t tk_ok_response(char *out, size_t cap, size_t records, const int *failed)
{
	size_t n = (size_t)snprintf(out, cap, "{\"FailedRecordCount\":0,\"Records\":[");
	for (size_t i = 0; i < records; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "",
		                      failed && failed[i] ?
		                      "{\"ErrorCode\":\"ProvisionedThroughputExceededException\","
		                      "\"ErrorMessage\":\"Rate exceeded\"}" :
		                      "{\"SequenceNumber\":\"4959\",\"ShardId\":\"shardId-000000000000\"}");
	n += (size_t)snprintf(out + n, cap - n, "]}");
	return n;
}

/* ---- configuration ---------------------------------------------------------------------- */

/* 1 when the mapping holding address a is advised MADV_HUGEPAGE ("hg" in smaps' VmFlags). */
static int vma_advised_huge(const void *a)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0, huge = -1;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') == line + strspn(line, "0123456789abcdef")) {
			in = (uintptr_t)a >= lo && (uintptr_t)a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			huge = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	assert_int_not_equal(huge, -1);
	return huge;
}

/* The advice covers what follows the lead and nothing before; none with TELKIN_HUGE_PAGES=0. */
static void test_buffer_map_advises_huge_pages_past_the_small_lead_only(void **state)
{
	size_t size = 3 * HUGE_PAGE_BYTES;
	uint8_t *p = buffer_map(size, 1), *q = buffer_map(size, 0);

	(void)state;
	assert_non_null(p);
	assert_non_null(q);
	if (getenv("TELKIN_TEST_NO_FORK") && !vma_advised_huge(p + BUFFER_SMALL_LEAD)) {
		print_message("skipped: madvise is not passed through here (qemu-user)\n");
		buffer_unmap(p, size);
		buffer_unmap(q, size);
		skip();
	}
	assert_int_equal(vma_advised_huge(p), 0);
	assert_int_equal(vma_advised_huge(p + BUFFER_SMALL_LEAD - 1), 0);
	assert_int_equal(vma_advised_huge(p + BUFFER_SMALL_LEAD), 1);
	assert_int_equal(vma_advised_huge(p + size - 1), 1);
	assert_int_equal(vma_advised_huge(q + BUFFER_SMALL_LEAD), 0);
	buffer_unmap(p, size);
	buffer_unmap(q, size);
}

/* Large buffers: the first BUFFER_SMALL_LEAD bytes end on a huge page boundary; all usable. */
static void test_buffer_map_is_aligned_and_usable_to_its_last_byte(void **state)
{
	static const size_t sizes[] = { 64, HUGE_PAGE_BYTES, HUGE_PAGE_BYTES + 1,
	                                REQUEST_BODY_MAX, 3 * HUGE_PAGE_BYTES + 4096 };

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *p = buffer_map(sizes[i], (int)(i % 2));
		assert_non_null(p);
		assert_int_equal(((uintptr_t)p + BUFFER_SMALL_LEAD) % HUGE_PAGE_BYTES, 0);
		/* and whole huge pages to its end: a last partial one would be 4 KiB pages */
		assert_int_equal(((uintptr_t)p + buffer_map_len(sizes[i])) % HUGE_PAGE_BYTES, 0);
		assert_true(buffer_map_len(sizes[i]) >= sizes[i]);
		p[0] = 1;
		p[sizes[i] - 1] = 2;
		assert_int_equal(p[0] + p[sizes[i] - 1], 3);
		buffer_unmap(p, sizes[i]);
	}
}

/*
 * Listener slots are set up on first use, not at start (that touched every page of the slot
 * array): none after start-up; accepted connections take slots 0, 1, 2 in order, each with its
 * own head buffer; a freed slot is taken again before a new one is set up.
 */
static void test_listener_slots_are_set_up_on_first_use(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), cfd[4];

	(void)state;
	assert_true(t->n_conns >= LISTEN_SLOTS_MIN);
	assert_int_equal(t->conns_made, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	assert_int_equal(set_nonblocking(lfd), 0);
	t->listen_fd = lfd;
	for (int i = 0; i < 3; i++) {
		cfd[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(cfd[i], (struct sockaddr *)&a, sizeof(a)), 0);
	}
	usleep(20 * 1000);                            /* all three in the accept queue */
	listener_accept(t);
	assert_int_equal(t->conns_made, 3);
	assert_int_equal(t->conns_hi, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(t->conns[i].fd >= 0);
		assert_int_equal(t->conns[i].body, -1);
		assert_ptr_equal(t->conns[i].head, t->listen_heads + (size_t)i * LISTEN_HEAD_MAX);
		assert_ptr_equal(t->conns[i].buf, t->conns[i].head);
		assert_int_equal(t->conns[i].cap, LISTEN_HEAD_MAX);
	}
	listener_close(t, &t->conns[1]);
	cfd[3] = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(cfd[3], (struct sockaddr *)&a, sizeof(a)), 0);
	usleep(20 * 1000);
	listener_accept(t);
	assert_int_equal(t->conns_made, 3);           /* slot 1 again, no new one */
	assert_true(t->conns[1].fd >= 0);
	assert_ptr_equal(t->conns[1].head, t->listen_heads + LISTEN_HEAD_MAX);
	for (int i = 0; i < 3; i++)
		listener_close(t, &t->conns[i]);
	assert_int_equal(t->conns_hi, 0);
	for (int i = 0; i < 4; i++)
		close(cfd[i]);
	close(lfd);
	t->listen_fd = -1;
	tk_free(t);
}

/* TELKIN_HUGE_PAGES: on by default, 0 turns it off, anything else is an init error. */
static void test_config_huge_pages(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.huge_pages, 1);
	setenv("TELKIN_HUGE_PAGES", "0", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.huge_pages, 0);
	setenv("TELKIN_HUGE_PAGES", "on", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TELKIN_HUGE_PAGES=on: expected 1 (on) or 0 (off)"));
	unsetenv("TELKIN_HUGE_PAGES");
}

/*
 * TELKIN_CPU_PIN: auto by default, off, or a CPU this process may run on; anything else is an
 * init error. AWS_LAMBDA_FUNCTION_MEMORY_SIZE is read along (0 when unset or not a number).
 */
static void test_config_cpu_pin(void **state)
{
	unsigned long mask[CPU_MASK_WORDS];
	size_t words = cpu_allowed(mask);
	struct config c;
	char err[320], v[16];
	unsigned first = 0;
	(void)state;
	assert_true(words > 0);
	while (!cpu_in(mask, words, first))
		first++;
	tk_env_minimal();
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.cpu_pin, CPU_PIN_AUTO);
	assert_int_equal(c.memory_mb, 0);
	setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128", 1);
	setenv("TELKIN_CPU_PIN", "off", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.cpu_pin, CPU_PIN_OFF);
	assert_int_equal(c.memory_mb, 128);
	snprintf(v, sizeof(v), "%u", first);
	setenv("TELKIN_CPU_PIN", v, 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.cpu_pin, (int)first);
	setenv("TELKIN_CPU_PIN", "1023", 1);               /* no machine here has 1024 CPUs */
	assert_int_equal(config_load(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TELKIN_CPU_PIN=1023: not one of the CPUs this process may run on"));
	for (size_t i = 0; i < 3; i++) {
		static const char *const bad[] = { "1024", "-1", "on" };
		setenv("TELKIN_CPU_PIN", bad[i], 1);
		assert_int_equal(config_load(&c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "expected auto, off or a CPU number"));
	}
	setenv("TELKIN_CPU_PIN", "auto", 1);
	setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.memory_mb, 0);
	unsetenv("TELKIN_CPU_PIN");
	unsetenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
}

/* Which CPU: auto under one vCPU's share (the last allowed), never on Managed Instances. */
static void test_cpu_pin_choose(void **state)
{
	unsigned long two[CPU_MASK_WORDS] = { 0x3 }, one[CPU_MASK_WORDS] = { 0x2 };
	unsigned long far[CPU_MASK_WORDS] = { 0 };
	(void)state;
	far[0] = 0x1;
	far[1] = 1UL << 3;                                 /* CPU 0 and CPU 64 + 3 (67 on 64-bit) */
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_ON_DEMAND, 128, two, 1), 1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_SNAPSTART, 1768, two, 1), 1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_PROVISIONED, 512, two, 1), 1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_ON_DEMAND, 1769, two, 1), -1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_ON_DEMAND, 0, two, 1), -1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_MANAGED, 128, two, 1), -1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_ON_DEMAND, 128, one, 1), -1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_ON_DEMAND, 128, far, 2),
	                 (int)CPU_MASK_WORD_BITS + 3);
	assert_int_equal(cpu_pin_choose(CPU_PIN_AUTO, MODE_ON_DEMAND, 128, far, 1), -1);
	assert_int_equal(cpu_pin_choose(CPU_PIN_OFF, MODE_ON_DEMAND, 128, two, 1), -1);
	assert_int_equal(cpu_pin_choose(0, MODE_MANAGED, 10240, two, 1), 0);  /* as told */
	assert_int_equal(cpu_pin_choose(2, MODE_ON_DEMAND, 128, two, 1), -1); /* gone since */
	assert_int_equal(cpu_pin_choose(1, MODE_ON_DEMAND, 128, one, 1), 1);
}

static void test_config_requires_stream(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	unsetenv("TELKIN_STREAM");
	assert_int_equal(config_load(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TELKIN_STREAM"));
}

static void test_config_defaults(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.listen_port, 4243);
	assert_int_equal(c.buffer_items, 1000);
	assert_int_equal(c.buffer_bytes, 1048576);
	assert_int_equal(c.buffer_timeout_ms, 25);
	assert_int_equal(c.types, CLASS_PLATFORM | CLASS_FUNCTION);
	assert_int_equal(c.queue_bytes, 8u << 20);
	assert_int_equal(c.pk_mode, PK_SANDBOX);
	assert_string_equal(c.kinesis.host, "127.0.0.1");
	assert_string_equal(c.kinesis.port, "4567");
	assert_string_equal(c.kinesis.host_header, "127.0.0.1:4567");
}

static void test_config_rejects_buffer_values_outside_api_ranges(void **state)
{
	static const char *const cases[][2] = {
		{ "TELKIN_BUFFER_ITEMS", "999" }, { "TELKIN_BUFFER_ITEMS", "10001" },
		{ "TELKIN_BUFFER_BYTES", "262143" }, { "TELKIN_BUFFER_BYTES", "1048577" },
		{ "TELKIN_BUFFER_TIMEOUT_MS", "24" }, { "TELKIN_BUFFER_TIMEOUT_MS", "30001" },
		{ "TELKIN_BUFFER_ITEMS", "1e3" }, { "TELKIN_BUFFER_ITEMS", "-1000" },
		{ "TELKIN_LISTEN_PORT", "70000" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[320];
		tk_env_minimal();
		setenv(cases[i][0], cases[i][1], 1);
		assert_int_equal(config_load(&c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, cases[i][0]));
	}
}

static void test_config_accepts_buffer_range_bounds(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	setenv("TELKIN_BUFFER_ITEMS", "10000", 1);
	setenv("TELKIN_BUFFER_BYTES", "1048576", 1);
	setenv("TELKIN_BUFFER_TIMEOUT_MS", "30000", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.buffer_items, 10000);
	assert_int_equal(c.buffer_bytes, 1048576);
	assert_int_equal(c.buffer_timeout_ms, 30000);
}

static void test_config_stream_arn_region_wins(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	setenv("TELKIN_STREAM", "arn:aws:kinesis:ap-south-1:123456789012:stream/logs", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_string_equal(c.stream_name, "logs");
	assert_string_equal(c.region, "ap-south-1");
	assert_string_equal(c.stream_arn, "arn:aws:kinesis:ap-south-1:123456789012:stream/logs");
}

static void test_config_rejects_malformed_stream(void **state)
{
	static const char *const bad[] = {
		"arn:aws:s3:::bucket", "arn:aws:kinesis:us-east-1:1:stream/", "has space", "a/b",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config c;
		char err[320];
		tk_env_minimal();
		setenv("TELKIN_STREAM", bad[i], 1);
		assert_int_equal(config_load(&c, err, sizeof(err)), -1);
	}
}

static void test_config_endpoint_precedence(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	setenv("AWS_ENDPOINT_URL", "http://global:1", 1);
	setenv("AWS_ENDPOINT_URL_KINESIS", "http://kinesis:2", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_string_equal(c.kinesis.host, "kinesis");
	setenv("TELKIN_ENDPOINT", "http://telkin:3/", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_string_equal(c.kinesis.host, "telkin");
	assert_string_equal(c.kinesis.port, "3");
	unsetenv("TELKIN_ENDPOINT");
	unsetenv("AWS_ENDPOINT_URL_KINESIS");
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_string_equal(c.kinesis.host, "global");
	setenv("AWS_ENDPOINT_URL", "http://h:80", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_string_equal(c.kinesis.host_header, "h");
}

static void test_config_rejects_bad_endpoints(void **state)
{
	static const char *const bad[] = {
		"ftp://x", "http://", "http://h:0", "http://h:99999", "http://h/path", "h:80",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config c;
		char err[320];
		tk_env_minimal();
		setenv("AWS_ENDPOINT_URL_KINESIS", bad[i], 1);
		assert_int_equal(config_load(&c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "endpoint"));
	}
}

static void test_config_types_list(void **state)
{
	struct config c;
	char err[200];
	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(config_types(&c, "extension, function", err, sizeof(err)), 0);
	assert_int_equal(c.types, CLASS_EXTENSION | CLASS_FUNCTION);
	assert_int_equal(config_types(&c, "platform,logs", err, sizeof(err)), -1);
	assert_int_equal(config_types(&c, ",", err, sizeof(err)), -1);
	assert_int_equal(config_types(&c, "platform.", err, sizeof(err)), -1);
	assert_int_equal(config_types(&c, "platform.report,function", err, sizeof(err)), 0);
	assert_int_equal(c.types, CLASS_FUNCTION);
	assert_int_equal(c.n_platform_names, 1);
	assert_string_equal(c.platform_names[0], "platform.report");
}

static void test_config_requires_credentials(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	unsetenv("AWS_SECRET_ACCESS_KEY");
	assert_int_equal(config_load(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY"));
}

/* ---- HTTP parsing ----------------------------------------------------------------------- */

static void test_http_request_head_parsed(void **state)
{
	static const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
	                          "Connection: close\r\n\r\n[{\"a\":1}]";
	struct http_head h;
	(void)state;
	assert_int_equal(http_parse_head(req, sizeof(req) - 1, 1, &h), 1);
	assert_int_equal(h.method_len, 4);
	assert_int_equal(h.path_len, 1);
	assert_int_equal(h.content_length, 12);
	assert_int_equal(h.close, 1);
	assert_int_equal(h.head_len, sizeof(req) - 1 - 9);
}

static void test_http_head_incomplete_until_blank_line(void **state)
{
	static const char req[] = "POST / HTTP/1.1\r\nContent-Length: 2\r\n";
	struct http_head h;
	(void)state;
	assert_int_equal(http_parse_head(req, sizeof(req) - 1, 1, &h), 0);
}

static void test_http_rejects_chunked_with_content_length(void **state)
{
	static const char req[] = "POST / HTTP/1.1\r\nContent-Length: 2\r\n"
	                          "Transfer-Encoding: chunked\r\n\r\n";
	struct http_head h;
	(void)state;
	assert_int_equal(http_parse_head(req, sizeof(req) - 1, 1, &h), -1);
}

static void test_http_rejects_malformed_heads(void **state)
{
	static const char *const bad[] = {
		"POST /\r\n\r\n", "POST / HTTP/2.0\r\n\r\n", "POST / HTTP/1.1\r\nNoColon\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\n folded: x\r\n\r\n",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_head h;
		assert_int_equal(http_parse_head(bad[i], strlen(bad[i]), 1, &h), -1);
	}
}

static void test_http_response_status_and_header_lookup(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: abc-1\r\n"
	                           "Content-Length: 0\r\n\r\n";
	struct http_head h;
	size_t n;
	const char *v;
	(void)state;
	assert_int_equal(http_parse_head(resp, sizeof(resp) - 1, 0, &h), 1);
	assert_int_equal(h.status, 200);
	v = http_header(resp, h.head_len, "lambda-extension-identifier", &n);
	assert_non_null(v);
	assert_int_equal(n, 5);
	assert_memory_equal(v, "abc-1", 5);
	assert_null(http_header(resp, h.head_len, "missing", &n));
}

static void test_chunked_body_decoded_in_place(void **state)
{
	char body[] = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
	size_t len, consumed;
	(void)state;
	assert_int_equal(chunked_decode(body, sizeof(body) - 1, 100, &len, &consumed), 1);
	assert_int_equal(len, 9);
	assert_memory_equal(body, "Wikipedia", 9);
	assert_int_equal(consumed, sizeof(body) - 1 - 4);
}

static void test_chunked_body_incomplete_is_not_modified(void **state)
{
	char body[] = "4\r\nWiki\r\n5\r\npedi";
	char copy[sizeof(body)];
	size_t len, consumed;
	(void)state;
	memcpy(copy, body, sizeof(body));
	assert_int_equal(chunked_decode(body, sizeof(body) - 1, 100, &len, &consumed), 0);
	assert_memory_equal(body, copy, sizeof(body));
}

static void test_chunked_body_rejects_bad_framing_and_excess(void **state)
{
	char bad1[] = "4\r\nWikiXX\r\n0\r\n\r\n";
	char bad2[] = "zz\r\n";
	char big[] = "10\r\n0123456789abcdef\r\n0\r\n\r\n";
	size_t len, consumed;
	(void)state;
	assert_int_equal(chunked_decode(bad1, sizeof(bad1) - 1, 100, &len, &consumed),
	                 CHUNKED_MALFORMED);
	assert_int_equal(chunked_decode(bad2, sizeof(bad2) - 1, 100, &len, &consumed),
	                 CHUNKED_MALFORMED);
	assert_int_equal(chunked_decode(big, sizeof(big) - 1, 15, &len, &consumed),
	                 CHUNKED_TOO_LARGE);
	assert_int_equal(chunked_decode(big, sizeof(big) - 1, 16, &len, &consumed), 1);
}

/* ---- queue ------------------------------------------------------------------------------ */

static void test_queue_full_returns_null_and_wraps_after_pop(void **state)
{
	struct queue q;
	uint8_t mem[1024];
	struct queue_entry *e[8];
	int pushed = 0;
	(void)state;
	memset(&q, 0, sizeof(q));
	q.mem = mem;
	q.cap = sizeof(mem);
	while (pushed < 8 && (e[pushed] = queue_push(&q, 2, 200, CLASS_FUNCTION, now_ms())) != NULL)
		pushed++;
	assert_int_equal(pushed, 4); /* 4 x 224 bytes fit in 1024, a fifth does not */
	assert_null(queue_push(&q, 2, 200, CLASS_FUNCTION, now_ms()));
	e[0]->state = ENTRY_DONE;
	e[1]->state = ENTRY_DONE;
	queue_pop_done(&q);
	assert_int_equal(q.count, 2);
	/* 1024 - 896 = 128 bytes at the end: too small, so the next entry wraps to offset 0. */
	e[4] = queue_push(&q, 2, 200, CLASS_FUNCTION, now_ms());
	assert_non_null(e[4]);
	assert_ptr_equal(e[4], mem);
	/* Iteration follows the wrap: entries 2, 3, then the new one. */
	size_t off = queue_first(&q);
	assert_ptr_equal(queue_at(&q, off), e[2]);
	off = queue_next(&q, off);
	assert_ptr_equal(queue_at(&q, off), e[3]);
	off = queue_next(&q, off);
	assert_int_equal(off, 0);
	assert_int_equal(queue_next(&q, off), SIZE_MAX);
}

static void test_queue_pop_stops_at_pending_head(void **state)
{
	struct queue q;
	uint8_t mem[1024];
	struct queue_entry *a, *b;
	(void)state;
	memset(&q, 0, sizeof(q));
	q.mem = mem;
	q.cap = sizeof(mem);
	a = queue_push(&q, 1, 10, CLASS_PLATFORM, now_ms());
	b = queue_push(&q, 1, 10, CLASS_PLATFORM, now_ms());
	b->state = ENTRY_DONE;
	queue_pop_done(&q);
	assert_int_equal(q.count, 2); /* b waits behind a */
	a->state = ENTRY_DONE;
	queue_pop_done(&q);
	assert_int_equal(q.count, 0);
	assert_int_equal(queue_used(&q), 0);
}

/* ---- ingest ----------------------------------------------------------------------------- */

/* The batch tokenized once to depth 3, or (too many tokens) to depth 1 and each event again:
 * the same records, request ids, levels and counts either way. */
static void test_ingest_one_tokenization_or_two_queue_the_same(void **state)
{
	static const char batch[] =
		"[{\"time\":\"t0\",\"type\":\"platform.start\",\"record\":{\"requestId\":\"r-1\"}},"
		"{\"time\":\"t1\",\"type\":\"function\",\"record\":\"text \\\"line\\\"\\n\"},"
		"{\"time\":\"t2\",\"type\":\"function\",\"record\":{\"level\":\"ERROR\",\"requestId\":"
		"\"own\",\"message\":\"m\",\"nested\":{\"a\":[1,2,{\"b\":null}]}}},"
		"{\"type\":\"extension\",\"record\":\"x\",\"time\":\"t3\",\"extra\":[{},[]]},"
		"{\"time\":\"t4\",\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"r-1\","
		"\"status\":\"success\",\"metrics\":{\"durationMs\":1.5}}},"
		"{\"time\":\"t5\",\"type\":\"function\",\"record\":\"after\"}, {}]";
	struct telkin *a = tk_new(QUEUE_MIN_BYTES), *b = tk_new(QUEUE_MIN_BYTES);
	char x[1024], y[1024];

	(void)state;
	b->batch_tok_cap = 3; /* depth 3 runs out of tokens: depth 1, then event by event */
	assert_int_equal(tk_ingest(a, batch), 0);
	assert_int_equal(tk_ingest(b, batch), 0);
	assert_int_equal(a->q.count, 6); /* the extension event is not in TELKIN_TYPES */
	assert_int_equal(b->q.count, a->q.count);
	for (size_t k = 0; k < a->q.count; k++)
		assert_string_equal(tk_entry(a, k, x, sizeof(x)), tk_entry(b, k, y, sizeof(y)));
	assert_non_null(strstr(tk_entry(a, 1, x, sizeof(x)), "\"requestId\":\"r-1\""));
	assert_null(strstr(tk_entry(a, 2, x, sizeof(x)), "\"requestId\":\"r-1\""));
	assert_null(strstr(tk_entry(a, 4, x, sizeof(x)), "\"requestId\""));
	assert_int_equal(a->stats.events_received, b->stats.events_received);
	tk_free(a);
	tk_free(b);
}

/* However many tokens the depth-3 pass has room for, a batch of more than LISTEN_MAX_EVENTS
 * events is refused whole. */
static void test_ingest_refuses_more_events_than_the_bound_at_any_depth(void **state)
{
	size_t n = LISTEN_MAX_EVENTS + 1, len = 0;
	char *body = malloc(n * 3 + 3), err[160];
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);

	(void)state;
	body[len++] = '[';
	for (size_t i = 0; i < n; i++) {
		if (i)
			body[len++] = ',';
		body[len++] = '{';
		body[len++] = '}';
	}
	body[len++] = ']';
	assert_true(t->batch_tok_cap >= n + 1); /* room at depth 3 for every one of them */
	assert_int_equal(ingest_batch(t, body, len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than 10000 events in one batch"));
	assert_int_equal(t->q.count, 0);
	free(body);
	tk_free(t);
}

static void test_ingest_appends_identity_members(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char out[1024];
	(void)state;
	assert_int_equal(tk_ingest(t, "[{\"time\":\"T\",\"type\":\"function\",\"record\":\"hi\"}]"), 0);
	assert_int_equal(t->q.count, 1);
	assert_string_equal(tk_entry(t, 0, out, sizeof(out)),
	                    "{\"time\":\"T\",\"type\":\"function\",\"record\":\"hi\",\"function\":"
	                    "\"fn\",\"version\":\"$LATEST\",\"region\":\"eu-west-1\",\"sandbox\":"
	                    "\"0123456789abcdef0123456789abcdef\",\"seq\":1}\n");
	tk_free(t);
}

static void test_ingest_empty_object_gets_identity_without_comma(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char out[1024];
	(void)state;
	assert_int_equal(tk_ingest(t, "[{ }]"), 0);
	tk_entry(t, 0, out, sizeof(out));
	assert_memory_equal(out, "{ \"function\":", 13);
	tk_free(t);
}

static void test_ingest_records_are_valid_json(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	struct json_token tk[64];
	char out[2048];
	(void)state;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\","
	                              "\"version\":\"$LATEST\"}} , {\"type\":\"function\",\"record\":"
	                              "{\"level\":\"INFO\",\"message\":\"\\u00e9\\n\"}}]"), 0);
	assert_int_equal(t->q.count, 2);
	for (size_t i = 0; i < 2; i++) {
		tk_entry(t, i, out, sizeof(out));
		assert_true(json_parse(out, strlen(out), tk, 64, 32, 0, NULL) > 0);
		assert_true(json_string_eq(out, &tk[json_object_get(out, tk, 0, "sandbox")],
		                           t->sandbox_id));
	}
	tk_free(t);
}

static void test_ingest_filters_types_not_forwarded(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"extension\",\"record\":\"x\"},"
	                              "{\"type\":\"function\",\"record\":\"y\"}]"), 0);
	assert_int_equal(t->q.count, 1);
	assert_int_equal(t->stats.events_filtered, 1);
	assert_int_equal(t->stats.events_received, 2);
	tk_free(t);
}

static void test_ingest_notes_runtime_done_even_when_platform_not_forwarded(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	t->cfg.types = CLASS_FUNCTION;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":"
	                              "\"req-42\",\"status\":\"success\"}}]"), 0);
	assert_string_equal(t->runtime_done_id, "req-42");
	assert_int_equal(t->q.count, 0);
	tk_free(t);
}

static void test_ingest_rejects_malformed_batch_and_queues_nothing(void **state)
{
	static const char *const bad[] = {
		"[{\"type\":\"function\"},", "{\"type\":\"function\"}", "[{\"a\":1},2]",
		"[{\"a\":1},]", "[{\"a\":\"\x01\"}]", "",
	};
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tk_ingest(t, bad[i]), -1);
	assert_int_equal(t->q.count, 0);
	tk_free(t);
}

static void test_ingest_partition_key_request_mode(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	struct queue_entry *e;
	size_t off;
	(void)state;
	t->cfg.pk_mode = PK_REQUEST;
	strcpy(t->request_id, "inv-1");
	t->phase = PHASE_INVOKE;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.start\",\"record\":{\"requestId\":"
	                              "\"req-7\"}},{\"type\":\"function\",\"record\":\"text\"}]"), 0);
	off = queue_first(&t->q);
	e = queue_at(&t->q, off);
	assert_int_equal(e->pk_len, 5);
	assert_memory_equal(entry_pk(e), "req-7", 5);
	e = queue_at(&t->q, queue_next(&t->q, off));
	assert_int_equal(e->pk_len, 5);
	assert_memory_equal(entry_pk(e), "req-7", 5); /* the stream is in req-7 */
	/* After runtimeDone the stream is in no invocation: the invocation's. */
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":"
	                              "\"req-7\"}},{\"type\":\"function\",\"record\":\"text\"}]"), 0);
	e = queue_at(&t->q, queue_next(&t->q, queue_next(&t->q, queue_next(&t->q, off))));
	assert_memory_equal(entry_pk(e), "inv-1", 5);
	tk_free(t);
}

static void test_ingest_drops_when_full_and_reports_later(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	size_t ev_len = 100000, n = 0, dropped;
	char *batch = malloc((ev_len + 64) * 30 + 64), out[1024];
	(void)state;
	/* 30 events of ~100 KB: 2 MiB holds about 20. */
	batch[n++] = '[';
	for (int i = 0; i < 30; i++) {
		n += (size_t)sprintf(batch + n, "%s{\"type\":\"function\",\"record\":\"", i ? "," : "");
		memset(batch + n, 'a', ev_len);
		n += ev_len;
		n += (size_t)sprintf(batch + n, "\"}");
	}
	batch[n++] = ']';
	batch[n] = 0;
	assert_int_equal(tk_ingest(t, batch), 0);
	dropped = t->stats.dropped_records[1];
	assert_true(dropped > 0);
	assert_int_equal(t->stats.events_queued + dropped, 30);
	{ /* the report names the numbers dropped: the last ones */
		char ranges[64];
		tk_entry(t, t->q.count - 1, out, sizeof(out));
		snprintf(ranges, sizeof(ranges), "\"seqRanges\":[[%zu,30]]},", 31 - dropped);
		assert_non_null(strstr(out, ranges));
		assert_non_null(strstr(out, "\"seq\":31}\n")); /* the report is numbered too */
	}
	/* The report follows the dropped events as soon as there is room: here, at once. */
	tk_entry(t, t->q.count - 1, out, sizeof(out));
	assert_non_null(strstr(out, "\"type\":\"telkin.dropped\""));
	char expect[64];
	snprintf(expect, sizeof(expect), "\"droppedRecords\":%zu,", dropped);
	assert_non_null(strstr(out, expect));
	assert_int_equal(drop_count(&t->unreported[DROP_QUEUE_FULL]), 0);
	free(batch);
	tk_free(t);
}

static void test_drop_report_waits_for_room(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char out[1024];
	(void)state;
	while (queue_push(&t->q, 1, 64, CLASS_FUNCTION, now_ms()))
		;
	drop_record(t, CLASS_EXTENSION, 10, 5);
	report_drops(t);
	assert_int_equal(t->unreported[DROP_QUEUE_FULL].records[2], 1); /* no room: still owed */
	size_t before = t->q.count;
	for (int i = 0; i < 8; i++) { /* 8 x 96 bytes: room for the report */
		queue_at(&t->q, t->q.head)->state = ENTRY_DONE;
		queue_pop_done(&t->q);
	}
	report_drops(t);
	assert_int_equal(t->unreported[DROP_QUEUE_FULL].records[2], 0);
	assert_int_equal(t->q.count, before - 8 + 1);
	tk_entry(t, t->q.count - 1, out, sizeof(out));
	assert_non_null(strstr(out, "\"droppedRecords\":1,\"droppedBytes\":10,\"platform\":0,"
	                            "\"function\":0,\"extension\":1,\"reason\":\"queue full\","
	                            "\"seqRanges\":[[5,5]]},"));
	tk_free(t);
}

static void test_ingest_truncates_event_over_record_limit(void **state)
{
	struct telkin *t = tk_new(4u << 20);
	size_t big = KINESIS_MAX_RECORD_BYTES + 1000, n = 0;
	char *batch = malloc(2 * big + 128);
	struct json_token tk[64];
	struct queue_entry *e;
	(void)state;
	n += (size_t)sprintf(batch, "[{\"time\":\"T1\",\"type\":\"function\",\"record\":\"");
	for (size_t i = 0; i < big; i++) {
		if (i % 7 == 0) { /* escapes make the escaped-length budget matter */
			batch[n++] = '\\';
			batch[n++] = 'n';
		} else {
			batch[n++] = 'x';
		}
	}
	n += (size_t)sprintf(batch + n, "\"}]");
	assert_int_equal(tk_ingest(t, batch), 0);
	assert_int_equal(t->q.count, 1);
	assert_int_equal(t->stats.events_truncated, 1);
	e = queue_at(&t->q, queue_first(&t->q));
	assert_true(e->data_len + e->pk_len <= KINESIS_MAX_RECORD_BYTES);
	assert_true(e->data_len + e->pk_len > KINESIS_MAX_RECORD_BYTES - 64);
	assert_true(json_parse(entry_data(e), e->data_len, tk, 64, 32, 0, NULL) > 0);
	assert_int_equal(tk[json_object_get(entry_data(e), tk, 0, "truncated")].type, JSON_TRUE);
	assert_true(json_string_eq(entry_data(e), &tk[json_object_get(entry_data(e), tk, 0, "time")],
	                           "T1"));
	free(batch);
	tk_free(t);
}

static void test_escape_fit_never_splits_utf8(void **state)
{
	static const char s[] = "ab\xc3\xa9" "cd";
	(void)state;
	assert_int_equal(json_escape_fit(s, 6, 3), 2);
	assert_int_equal(json_escape_fit(s, 6, 4), 4);
	assert_int_equal(json_escape_fit("a\"b", 3, 2), 1);
	assert_int_equal(json_escape_fit("a\"b", 3, 3), 2);
	assert_int_equal(json_escape_fit("a\nb", 3, 3), 2);   /* \n costs 2, not 6 */
	assert_int_equal(json_escape_fit("a\x01" "b", 3, 6), 1); /* \u0001 costs 6 */
}

/* ---- batcher and Kinesis answers -------------------------------------------------------- */

static void tk_fill(struct telkin *t, int events, size_t record_len)
{
	char *batch = malloc((size_t)events * (record_len + 64) + 16);
	size_t n = 0;
	batch[n++] = '[';
	for (int i = 0; i < events; i++) {
		n += (size_t)sprintf(batch + n, "%s{\"type\":\"function\",\"record\":\"", i ? "," : "");
		memset(batch + n, 'a' + i % 26, record_len);
		n += record_len;
		n += (size_t)sprintf(batch + n, "\"}");
	}
	batch[n++] = ']';
	batch[n] = 0;
	assert_int_equal(tk_ingest(t, batch), 0);
	free(batch);
}

static void test_batch_splits_at_500_records(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	tk_fill(t, 501, 10);
	assert_int_equal(t->q.count, 501);
	assert_int_equal(batch_build(t), KINESIS_MAX_RECORDS);
	tk_free(t);
}

static void test_batch_splits_at_5_mib(void **state)
{
	struct telkin *t = tk_new(16u << 20);
	size_t total = 0;
	(void)state;
	tk_fill(t, 12, 500000); /* 12 x ~0.5 MB: 10 fit in 5 MiB */
	size_t n = batch_build(t);
	assert_true(n >= 9 && n < 12);
	for (size_t i = 0; i < n; i++) {
		struct queue_entry *e = queue_at(&t->q, t->inflight_entries[i]);
		total += e->data_len + e->pk_len;
	}
	assert_true(total <= KINESIS_MAX_REQUEST_BYTES);
	struct queue_entry *next = queue_at(&t->q, queue_next(&t->q, t->inflight_entries[n - 1]));
	assert_true(total + next->data_len + next->pk_len > KINESIS_MAX_REQUEST_BYTES);
	assert_true(t->req_body_len <= REQUEST_BODY_MAX);
	tk_free(t);
}

static void test_batch_body_is_putrecords_json_with_base64_data(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	struct json_token tk[64];
	char data[512];
	int n, recs, first, d;
	(void)state;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"hello\"}]"), 0);
	assert_int_equal(batch_build(t), 1);
	n = json_parse(t->req_body, t->req_body_len, tk, 64, 8, 0, NULL);
	assert_true(n > 0);
	assert_true(json_string_eq(t->req_body, &tk[json_object_get(t->req_body, tk, 0,
	                                                             "StreamName")], "s1"));
	assert_int_equal(json_object_get(t->req_body, tk, 0, "StreamARN"), -1);
	recs = json_object_get(t->req_body, tk, 0, "Records");
	assert_int_equal(tk[recs].size, 1);
	first = recs + 1;
	d = json_object_get(t->req_body, tk, first, "Data");
	size_t len = base64_decode(data, sizeof(data) - 1, t->req_body + tk[d].start,
	                           tk[d].end - tk[d].start);
	assert_true(len != (size_t)-1);
	data[len] = 0;
	assert_non_null(strstr(data, "\"record\":\"hello\",\"function\":\"fn\""));
	assert_true(json_string_eq(t->req_body, &tk[json_object_get(t->req_body, tk, first,
	                                                             "PartitionKey")], t->sandbox_id));
	tk_free(t);
}

static void test_kinesis_partial_failure_resends_only_failed(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	static char resp[64 << 10];
	int failed[5] = { 0, 1, 0, 1, 0 };
	char out[512];
	(void)state;
	tk_fill(t, 5, 4);
	assert_int_equal(batch_build(t), 5);
	tk_ok_response(resp, sizeof(resp), 5, failed);
	tk_respond(t, 200, resp);
	assert_int_equal(t->stats.events_shipped, 3);
	assert_int_equal(t->stats.events_retried, 2);
	/* The others went through: the failed ones go again at once, no backoff. */
	assert_int_equal(t->attempt, 0);
	assert_int_equal(t->retry_at, 0);
	/* The retry carries records 1 and 3 only (b... and d...). */
	assert_int_equal(batch_build(t), 2);
	assert_non_null(strstr(tk_entry(t, 0, out, sizeof(out)), "bbbb"));
	assert_non_null(strstr(tk_entry(t, 2, out, sizeof(out)), "dddd"));
	tk_ok_response(resp, sizeof(resp), 2, NULL);
	tk_respond(t, 200, resp);
	assert_int_equal(t->q.count, 0);
	assert_int_equal(t->stats.events_shipped, 5);
	assert_int_equal(t->attempt, 0);
	tk_free(t);
}

static void test_kinesis_record_count_mismatch_is_retried(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	static char resp[4096];
	(void)state;
	tk_fill(t, 3, 4);
	assert_int_equal(batch_build(t), 3);
	tk_ok_response(resp, sizeof(resp), 2, NULL);
	tk_respond(t, 200, resp);
	assert_int_equal(t->q.count, 3);
	assert_int_equal(t->stats.events_shipped, 0);
	assert_int_equal(t->attempt, 1);
	tk_free(t);
}

static void test_kinesis_throttling_is_retried(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	tk_fill(t, 3, 4);
	batch_build(t);
	tk_respond(t, 400, "{\"__type\":\"com.amazonaws#ThrottlingException\",\"message\":\"slow\"}");
	assert_int_equal(t->q.count, 3);
	assert_int_equal(t->stats.events_rejected, 0);
	batch_build(t);
	tk_respond(t, 503, "");
	assert_int_equal(t->q.count, 3);
	assert_int_equal(t->attempt, 2);
	tk_free(t);
}

static void test_kinesis_access_denied_drops_and_counts(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char out[1024];
	(void)state;
	tk_fill(t, 3, 4);
	batch_build(t);
	tk_respond(t, 400, "{\"__type\":\"AccessDeniedException\",\"message\":\"no\"}");
	assert_int_equal(t->q.count, 1); /* the report that names them */
	assert_int_equal(t->stats.events_rejected, 3);
	tk_entry(t, 0, out, sizeof(out));
	assert_non_null(strstr(out, "\"droppedRecords\":3,"));
	assert_non_null(strstr(out, "\"reason\":\"rejected by Kinesis\",\"seqRanges\":[[1,3]]},"));
	assert_non_null(strstr(out, "\"seq\":4}\n"));
	assert_string_equal(t->logged_errors[0], "AccessDeniedException");
	tk_free(t);
}

static void test_kinesis_connection_failure_is_retried_with_backoff(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	tk_fill(t, 2, 4);
	batch_build(t);
	t->request_out = 1;
	t->kin.state = HC_FAILED;
	t->kin.reused = 0;
	kinesis_on_response(t, now_ms());
	assert_int_equal(t->q.count, 2);
	assert_int_equal(t->request_out, 0);
	assert_int_equal(t->stats.putrecords_errors, 1);
	assert_int_equal(t->attempt, 1);
	tk_free(t);
}

static void test_backoff_grows_and_is_capped(void **state)
{
	struct telkin t;
	(void)state;
	memset(&t, 0, sizeof(t));
	for (int i = 0; i < 200; i++) {
		kinesis_backoff(&t, 1000);
		assert_true(t.retry_at >= 1000 && t.retry_at <= 1000 + RETRY_CAP_MS);
	}
	assert_int_equal(t.attempt, 200);
}

static void test_error_table_classifies_documented_putrecords_errors(void **state)
{
	static const char *const refuse[] = {
		"AccessDeniedException", "InvalidArgumentException", "KMSAccessDeniedException",
		"KMSDisabledException", "KMSInvalidStateException", "KMSNotFoundException",
		"KMSOptInRequired", "ResourceNotFoundException", "IncompleteSignature", "InvalidAction",
		"InvalidClientTokenId", "NotAuthorized", "OptInRequired", "ValidationError",
		"MissingAuthenticationToken", "UnrecognizedClientException",
	};
	static const char *const retry[] = {
		"InternalFailure", "ServiceUnavailable", "RequestExpired", "RequestTimeoutException",
	};
	static const char *const throttle[] = {
		"ProvisionedThroughputExceededException", "KMSThrottlingException",
		"ThrottlingException",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(refuse) / sizeof(refuse[0]); i++)
		assert_int_equal(kinesis_classify(400, refuse[i]), KERR_REFUSE);
	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		assert_int_equal(kinesis_classify(400, retry[i]), KERR_RETRY);
	for (size_t i = 0; i < sizeof(throttle) / sizeof(throttle[0]); i++)
		assert_int_equal(kinesis_classify(400, throttle[i]), KERR_THROTTLE);
	assert_int_equal(kinesis_classify(400, "ExpiredTokenException"), KERR_CREDS);
	assert_int_equal(kinesis_classify(400, "SomethingNew"), KERR_REFUSE);
	assert_int_equal(kinesis_classify(503, "SomethingNew"), KERR_RETRY);
	assert_int_equal(kinesis_classify(500, "AccessDeniedException"), KERR_RETRY);
	assert_int_equal(kinesis_error_class("SomethingNew"), -1);
}

static void test_pacer_learns_one_shard_from_two_dry_answers(void **state)
{
	struct pacer p;
	(void)state;
	memset(&p, 0, sizeof(p));
	pace_learn(&p, 1000, 1000, 300000, 1); /* the burst went through, then the bucket ran dry */
	assert_int_equal(p.mshards, 0);
	assert_int_equal(p.next_at, 1000 + PACE_SAMPLE_MS); /* let it refill, then measure */
	pace_learn(&p, 1100, 100, 30000, 1);   /* 100 records in 100 ms: one shard */
	assert_int_equal(p.mshards, 1000);
	pace_size(&p, 1100);
	assert_int_equal(p.max_records, 113);   /* 100 ms of 1000/s, 1/8 above */
	pace_spend(&p, 1100, 113, 33900);
	assert_int_equal(p.next_at, 1200);
	p.capped = 1;
	pace_learn(&p, 1200, 113, 33900, 0);    /* all taken: probe further */
	assert_int_equal(p.mshards, 1125);
}

static void test_pacer_counts_bytes_against_the_byte_limit(void **state)
{
	struct pacer p;
	(void)state;
	memset(&p, 0, sizeof(p));
	pace_learn(&p, 1000, 40, 1u << 20, 1);
	pace_learn(&p, 2000, 40, 1u << 20, 1);   /* 40 records, 1 MiB in 1 s: one shard's MiB/s */
	assert_int_equal(p.mshards, 1000);
	pace_size(&p, 2000);
	assert_true(p.max_bytes > (1u << 20) / 10 && p.max_bytes < (1u << 20) / 8);
}

static void test_kinesis_dry_shard_paces_without_backoff(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	static char resp[64 << 10];
	size_t n;
	(void)state;
	tk_fill(t, 8, 4);
	assert_int_equal(batch_build(t), 8);
	n = (size_t)snprintf(resp, sizeof(resp), "{\"FailedRecordCount\":6,\"Records\":["
	                     "{\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-000000000000\"},"
	                     "{\"SequenceNumber\":\"2\",\"ShardId\":\"shardId-000000000000\"}");
	for (int i = 0; i < 6; i++)
		n += (size_t)snprintf(resp + n, sizeof(resp) - n, ",{\"ErrorCode\":"
		                      "\"ProvisionedThroughputExceededException\",\"ErrorMessage\":"
		                      "\"Rate exceeded for shard shardId-000000000000 in stream s1 under "
		                      "account 123456789012.\"}");
	snprintf(resp + n, sizeof(resp) - n, "]}");
	tk_respond(t, 200, resp);
	assert_int_equal(t->stats.events_shipped, 2);
	assert_int_equal(t->stats.throttled_records, 6);
	assert_int_equal(t->q.count, 6);
	assert_int_equal(t->attempt, 0);
	assert_true(t->pace.dry_at > 0);
	assert_true(t->pace.next_at >= t->pace.dry_at + PACE_SAMPLE_MS);
	tk_free(t);
}

static void test_kinesis_per_record_refusal_drops_only_that_record(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char out[1024];
	(void)state;
	tk_fill(t, 2, 4);
	assert_int_equal(batch_build(t), 2);
	tk_respond(t, 200, "{\"FailedRecordCount\":1,\"Records\":[{\"ErrorCode\":"
	           "\"KMSAccessDeniedException\",\"ErrorMessage\":\"no\"},"
	           "{\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-000000000001\"}]}");
	assert_int_equal(t->stats.events_rejected, 1);
	assert_int_equal(t->stats.events_shipped, 1);
	assert_int_equal(t->q.count, 1);
	tk_entry(t, 0, out, sizeof(out));
	assert_non_null(strstr(out, "\"extension\":0,\"reason\":\"rejected by Kinesis\","
	                            "\"seqRanges\":[[1,1]]},"));
	tk_free(t);
}

static void test_backoff_fits_the_time_left(void **state)
{
	struct telkin t;
	(void)state;
	memset(&t, 0, sizeof(t));
	t.phase = PHASE_SHUTDOWN;
	t.shutdown_deadline = 1400;
	for (int i = 0; i < 50; i++) {
		kinesis_backoff(&t, 1000);
		assert_true(t.retry_at >= 1000 && t.retry_at <= 1000 + 400 / RETRY_LEFT_SHARE);
	}
	t.retry_at = 5000;
	t.pace.next_at = 5000;
	kinesis_wait_fit(&t, 1300);                /* 100 ms left: half of it */
	assert_int_equal(t.retry_at, 1350);
	t.retry_at = 5000;
	kinesis_wait_fit(&t, 1399);                /* never past the deadline */
	assert_int_equal(t.retry_at, 1400);
	assert_int_equal(t.pace.next_at, 1350);
}

static void test_shutdown_give_up_counts_what_is_left_and_reports_it(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char out[1024];
	(void)state;
	tk_fill(t, 5, 4);
	t->phase = PHASE_SHUTDOWN;
	t->shutdown_deadline = now_ms();
	shutdown_give_up(t, now_ms());
	assert_int_equal(t->stats.lost_at_exit, 5);
	assert_int_equal(t->q.count, 1);
	assert_int_equal(t->shutdown_cut, 1);
	tk_entry(t, 0, out, sizeof(out));
	assert_non_null(strstr(out, "\"type\":\"telkin.dropped\""));
	assert_non_null(strstr(out, "\"droppedRecords\":5,"));
	assert_non_null(strstr(out, "\"reason\":\"shutdown deadline\""));
	assert_true(queue_at(&t->q, t->q.head)->report);
	tk_free(t);
}

static void test_signed_head_has_required_headers(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	sigv4_init(&t->signer, t->cfg.region, "kinesis", t->cfg.creds.access_key_id,
	           t->cfg.creds.secret_access_key);
	tk_fill(t, 1, 4);
	batch_build(t);
	assert_int_equal(kinesis_sign(t), 0);
	t->req_head[t->req_head_len] = 0;
	assert_non_null(strstr(t->req_head, "Content-Type: application/x-amz-json-1.1\r\n"));
	assert_non_null(strstr(t->req_head, "X-Amz-Target: Kinesis_20131202.PutRecords\r\n"));
	assert_non_null(strstr(t->req_head, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
	assert_non_null(strstr(t->req_head, "/eu-west-1/kinesis/aws4_request"));
	assert_non_null(strstr(t->req_head, "Host: 127.0.0.1:4567\r\n"));
	assert_null(strstr(t->req_head, "secret"));
	tk_free(t);
}

static void test_identity_escapes_function_name(void **state)
{
	struct telkin t;
	(void)state;
	memset(&t, 0, sizeof(t));
	strcpy(t.cfg.function_name, "a\"b");
	strcpy(t.sandbox_id, "x");
	assert_int_equal(identity_build(&t), 0);
	t.identity[t.identity_len] = 0;
	assert_non_null(strstr(t.identity, "\"function\":\"a\\\"b\""));
	assert_int_equal(t.identity[t.identity_len - 1], '"'); /* "seq" and the brace follow */
}

static void test_config_default_endpoints_fips_dualstack_china(void **state)
{
	static const struct { const char *region, *fips, *dual, *host; } cases[] = {
		{ "eu-west-1", "false", "false", "kinesis.eu-west-1.amazonaws.com" },
		{ "us-east-1", "true", "false", "kinesis-fips.us-east-1.amazonaws.com" },
		{ "us-east-1", "false", "TRUE", "kinesis.us-east-1.api.aws" },
		{ "us-east-1", "true", "true", "kinesis-fips.us-east-1.api.aws" },
		{ "cn-north-1", "false", "false", "kinesis.cn-north-1.amazonaws.com.cn" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[320];
		tk_env_minimal();
		unsetenv("AWS_ENDPOINT_URL_KINESIS");
		setenv("AWS_REGION", cases[i].region, 1);
		setenv("AWS_USE_FIPS_ENDPOINT", cases[i].fips, 1);
		setenv("AWS_USE_DUALSTACK_ENDPOINT", cases[i].dual, 1);
		assert_int_equal(config_load(&c, err, sizeof(err)), 0);
		assert_string_equal(c.kinesis.host, cases[i].host);
		assert_int_equal(c.kinesis.tls, 1);
		assert_string_equal(c.kinesis.port, "443");
		assert_string_equal(c.kinesis.host_header, cases[i].host);
	}
	setenv("AWS_USE_FIPS_ENDPOINT", "yes", 1);
	{
		struct config c;
		char err[320];
		assert_int_equal(config_load(&c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "AWS_USE_FIPS_ENDPOINT"));
	}
	unsetenv("AWS_USE_FIPS_ENDPOINT");
	unsetenv("AWS_USE_DUALSTACK_ENDPOINT");
}

static void test_config_container_credentials_only_to_local_hosts(void **state)
{
	static const struct { const char *uri; int ok; } cases[] = {
		{ "http://127.0.0.1:9000/creds", 1 }, { "http://localhost/c", 1 },
		{ "http://169.254.170.23/v1/credentials", 1 }, { "http://[::1]:80/x", 1 },
		{ "http://10.0.0.1/creds", 0 }, { "https://127.0.0.1/creds", 0 },
		{ "http://example.com/creds", 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[320];
		tk_env_minimal();
		unsetenv("AWS_ACCESS_KEY_ID");
		unsetenv("AWS_SECRET_ACCESS_KEY");
		setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", cases[i].uri, 1);
		assert_int_equal(config_load(&c, err, sizeof(err)), cases[i].ok ? 0 : -1);
		if (cases[i].ok)
			assert_int_equal(c.container_creds, 1);
	}
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
}

static void test_config_environment_credentials_win_over_container(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	setenv("AWS_SESSION_TOKEN", "tok", 1);
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/c", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.container_creds, 0);
	assert_string_equal(c.creds.session_token, "tok");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	unsetenv("AWS_SESSION_TOKEN");
}

static void test_iso_expiration_parsed(void **state)
{
	(void)state;
	assert_int_equal(iso_to_ms("1970-01-02T00:00:01Z"), 86401000);
	assert_int_equal(iso_to_ms("2026-11-22T21:00:00.000+00:00"), 1795381200000LL);
	assert_int_equal(iso_to_ms("2026-11-22 21:00:00Z"), -1);
	assert_int_equal(iso_to_ms("2026-11"), -1);
}

static void test_trust_store_loads_pem_anchors(void **state)
{
	static const char *const files[] = {
		"/usr/share/ca-certificates/mozilla/Amazon_Root_CA_1.crt",
		"/usr/share/ca-certificates/mozilla/Amazon_Root_CA_3.crt",
	};
	static struct trust_store ts;
	static unsigned char bytes[TLS_ANCHOR_BYTES], scratch[TLS_CERT_MAX];
	char pem[8192], bundle[16384], err[160];
	size_t used = 0;
	(void)state;
	memset(&ts, 0, sizeof(ts));
	ts.bytes = bytes;
	for (size_t i = 0; i < 2; i++) {
		FILE *f = fopen(files[i], "rb");
		assert_non_null(f);
		size_t n = fread(pem, 1, sizeof(pem), f);
		fclose(f);
		memcpy(bundle + used, pem, n);
		used += n;
	}
	assert_int_equal(trust_add_pem(&ts, bundle, used, scratch, err, sizeof(err)), 2);
	assert_int_equal(ts.count, 2);
	assert_int_equal(ts.anchors[0].pkey.key_type, BR_KEYTYPE_RSA);
	assert_int_equal(ts.anchors[1].pkey.key_type, BR_KEYTYPE_EC);
	assert_true(ts.anchors[0].flags & BR_X509_TA_CA);
	/* The compiled-in anchors are the same bytes as Debian's files. */
	assert_int_equal(ts.anchors[0].dn.len, BUILTIN_ANCHORS[0].dn.len);
	assert_memory_equal(ts.anchors[0].dn.data, BUILTIN_ANCHORS[0].dn.data,
	                    BUILTIN_ANCHORS[0].dn.len);
	assert_int_equal(BUILTIN_ANCHORS_NUM, 5);
}

static void test_trust_store_rejects_non_certificates(void **state)
{
	static struct trust_store ts;
	static unsigned char bytes[TLS_ANCHOR_BYTES], scratch[TLS_CERT_MAX];
	static const char junk[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
	char err[160];
	(void)state;
	memset(&ts, 0, sizeof(ts));
	ts.bytes = bytes;
	assert_int_equal(trust_add_pem(&ts, junk, sizeof(junk) - 1, scratch, err, sizeof(err)), -1);
	assert_int_equal(trust_add_pem(&ts, "hello", 5, scratch, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no CERTIFICATE"));
	assert_int_equal(ts.count, 0);
}

static void test_tls_errors_have_clear_text(void **state)
{
	(void)state;
	assert_non_null(strstr(tls_error_text(BR_ERR_X509_BAD_SERVER_NAME), "host name"));
	assert_non_null(strstr(tls_error_text(BR_ERR_X509_NOT_TRUSTED), "not trusted"));
	assert_non_null(strstr(tls_error_text(BR_ERR_X509_EXPIRED), "expired"));
	assert_non_null(strstr(tls_error_text(BR_ERR_UNSUPPORTED_VERSION), "TLS 1.2"));
}

/* ---- issue: shipping strategy, record packing, filters, self-metrics ------------------------ */

static void test_filter_platform_events_by_name(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char err[200], out[1024];
	(void)state;
	assert_int_equal(config_types(&t->cfg, "platform.report,function", err, sizeof(err)), 0);
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.start\",\"record\":{}},"
	                              "{\"type\":\"platform.report\",\"record\":{}},"
	                              "{\"type\":\"extension\",\"record\":\"e\"},"
	                              "{\"type\":\"function\",\"record\":\"f\"}]"), 0);
	assert_int_equal(t->q.count, 2);
	assert_non_null(strstr(tk_entry(t, 0, out, sizeof(out)), "platform.report"));
	assert_non_null(strstr(tk_entry(t, 1, out, sizeof(out)), "\"record\":\"f\""));
	assert_int_equal(t->stats.events_filtered, 2);
	tk_free(t);
}

static void test_min_level_filters_json_function_logs_only(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char out[1024];
	(void)state;
	setenv("TELKIN_MIN_LEVEL", "warn", 1);
	{
		char err[320];
		assert_int_equal(config_load(&t->cfg, err, sizeof(err)), 0);
	}
	unsetenv("TELKIN_MIN_LEVEL");
	assert_int_equal(t->cfg.min_level, 3);
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":{\"level\":\"DEBUG\"}},"
	                              "{\"type\":\"function\",\"record\":{\"level\":\"INFO\"}},"
	                              "{\"type\":\"function\",\"record\":{\"level\":\"ERROR\"}},"
	                              "{\"type\":\"function\",\"record\":{\"level\":\"WARNING\"}},"
	                              "{\"type\":\"function\",\"record\":\"text has no level\"}]"), 0);
	assert_int_equal(t->q.count, 3);
	assert_non_null(strstr(tk_entry(t, 0, out, sizeof(out)), "ERROR"));
	assert_non_null(strstr(tk_entry(t, 1, out, sizeof(out)), "WARNING"));
	assert_non_null(strstr(tk_entry(t, 2, out, sizeof(out)), "text has no level"));
	tk_free(t);
}

static void test_config_rejects_bad_flush_record_metrics_level(void **state)
{
	static const char *const cases[][2] = {
		{ "TELKIN_FLUSH", "sometimes" }, { "TELKIN_FLUSH", "periodic:" },
		{ "TELKIN_FLUSH", "periodic:5" }, { "TELKIN_RECORD", "csv" },
		{ "TELKIN_RECORD_MAX_BYTES", "100" }, { "TELKIN_RECORD_MAX_BYTES", "1048577" },
		{ "TELKIN_METRICS", "yes" }, { "TELKIN_MIN_LEVEL", "LOUD" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[320];
		tk_env_minimal();
		setenv(cases[i][0], cases[i][1], 1);
		assert_int_equal(config_load(&c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, cases[i][0]));
		unsetenv(cases[i][0]);
	}
}

static void test_config_flush_modes(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.flush_mode, FLUSH_AUTO);
	setenv("TELKIN_FLUSH", "periodic:250", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.flush_mode, FLUSH_PERIODIC);
	assert_int_equal(c.flush_period_ms, 250);
	setenv("TELKIN_FLUSH", "end", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), 0);
	assert_int_equal(c.flush_mode, FLUSH_END);
	unsetenv("TELKIN_FLUSH");
}

/* Decode Kinesis record i of the built request into out. */
static size_t tk_request_record(struct telkin *t, int i, char *out, size_t cap, char *pk,
                                size_t pkcap)
{
	static struct json_token tk[4096];
	int n = json_parse(t->req_body, t->req_body_len, tk, 4096, 8, 0, NULL), r, d, k;
	assert_true(n > 0);
	r = json_object_get(t->req_body, tk, 0, "Records") + 1;
	for (int j = 0; j < i; j++)
		r = (int)tk[r].next;
	d = json_object_get(t->req_body, tk, r, "Data");
	k = json_object_get(t->req_body, tk, r, "PartitionKey");
	json_string_copy(t->req_body, &tk[k], pk, pkcap);
	size_t len = base64_decode(out, cap, t->req_body + tk[d].start, tk[d].end - tk[d].start);
	assert_true(len != (size_t)-1);
	out[len] = 0;
	return len;
}

static void test_ndjson_packs_events_up_to_record_max(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	static char out[1 << 16];
	char pk[64];
	size_t len, lines = 0, total_lines = 0;
	(void)state;
	t->cfg.record_mode = RECORD_NDJSON;
	t->cfg.record_max_bytes = 4096;
	tk_fill(t, 60, 150); /* ~60 x 280 bytes with identity: several records of <= 4096 */
	size_t recs = batch_build(t);
	assert_true(recs >= 4 && recs < 60);
	assert_int_equal(t->inflight_end[recs - 1], 60);
	for (size_t i = 0; i < recs; i++) {
		len = tk_request_record(t, (int)i, out, sizeof(out) - 1, pk, sizeof(pk));
		assert_true(len + strlen(pk) <= 4096);
		assert_string_equal(pk, t->sandbox_id);
		lines = 0;
		for (size_t j = 0; j < len; j++)
			lines += out[j] == '\n';
		assert_int_equal(out[len - 1], '\n'); /* every event ends with one */
		/* each line is one whole event object */
		for (char *line = out, *nl; *line; line = nl + 1) {
			struct json_token tk[16];
			nl = strchr(line, '\n');
			size_t l = nl ? (size_t)(nl - line) : strlen(line);
			assert_true(json_parse(line, l, tk, 16, 8, 0, NULL) > 0);
		}
		assert_int_equal(lines, t->inflight_end[i] - inflight_first(t, i));
		total_lines += lines;
	}
	assert_int_equal(total_lines, 60);
	tk_free(t);
}

static void test_ndjson_splits_records_by_partition_key(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	t->cfg.record_mode = RECORD_NDJSON;
	t->cfg.pk_mode = PK_REQUEST;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.start\",\"record\":{\"requestId\":\"a\"}},"
	                              "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"a\"}},"
	                              "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"b\"}},"
	                              "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"a\"}}]"), 0);
	assert_int_equal(batch_build(t), 3); /* a+a, b, a */
	assert_int_equal(t->inflight_end[0], 2);
	assert_int_equal(t->inflight_end[1], 3);
	assert_int_equal(t->inflight_end[2], 4);
	tk_free(t);
}

static void test_ndjson_failed_record_keeps_all_its_events(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	static char resp[4096];
	int failed[2] = { 1, 0 };
	(void)state;
	t->cfg.record_mode = RECORD_NDJSON;
	tk_fill(t, 6, 200);
	/* Exactly three events (and their two newlines) and the key per record: 2 records. */
	t->cfg.record_max_bytes = 3 * (size_t)queue_at(&t->q, t->q.head)->data_len + 2 + SANDBOX_ID_LEN;
	assert_int_equal(batch_build(t), 2);
	tk_ok_response(resp, sizeof(resp), 2, failed);
	tk_respond(t, 200, resp);
	assert_int_equal(t->q.count, 6);     /* the first record failed: nothing popped */
	assert_int_equal(t->stats.events_shipped, 3);
	assert_int_equal(t->stats.events_retried, 3);
	assert_int_equal(batch_build(t), 1); /* the three failed events, packed again */
	assert_int_equal(t->inflight_end[0], 3);
	tk_free(t);
}

static void test_b64_stream_matches_one_shot_encoding(void **state)
{
	static const char text[] = "The quick brown fox jumps over the lazy dog, twice over.";
	char one[128], streamed[128], *p = streamed;
	struct b64_stream b = { { 0, 0 }, 0 };
	size_t n = sizeof(text) - 1;
	(void)state;
	for (size_t split = 0; split <= n; split++) {
		size_t len = base64_encode(one, sizeof(one), text, n);
		p = streamed;
		for (size_t i = 0; i < split; i++) /* byte by byte, then the rest at once */
			p = b64_put(&b, p, text + i, 1);
		p = b64_put(&b, p, text + split, n - split);
		p = b64_end(&b, p);
		assert_int_equal((size_t)(p - streamed), len);
		assert_memory_equal(streamed, one, len);
	}
}

/* A telkin shipping periodic:500 while the function runs, with that many 10-byte events queued. */
static struct telkin *tk_periodic(int events)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	t->cfg.flush_mode = FLUSH_PERIODIC;
	t->cfg.flush_period_ms = 500;
	t->phase = PHASE_INVOKE;
	tk_fill(t, events, 10);
	return t;
}

static void test_periodic_ships_only_when_oldest_is_a_period_old(void **state)
{
	struct telkin *t = tk_periodic(3);
	int64_t now = now_ms(); /* not before the entries' time: an age below 0 reads as very old */
	(void)state;
	assert_false(ship_due(t, now));
	assert_true(ship_due(t, now + 600));
	t->phase = PHASE_SHUTDOWN;            /* everything goes at shutdown */
	assert_true(ship_due(t, now));
	t->phase = PHASE_INVOKE;
	t->cfg.flush_mode = FLUSH_END;        /* end: after a short gathering wait */
	assert_false(ship_due(t, now));
	assert_true(ship_due(t, now + END_GATHER_MS));
	t->phase = PHASE_FLUSH;               /* and at once when flushing before the freeze */
	assert_true(ship_due(t, now));
	tk_free(t);
}

static void test_auto_switches_with_invocation_rate(void **state)
{
	struct telkin t;
	int64_t now = 1000000;
	(void)state;
	memset(&t, 0, sizeof(t));
	t.cfg.flush_mode = FLUSH_AUTO;
	t.auto_mode = FLUSH_END;
	flush_auto_update(&t, now);
	for (int i = 0; i < 6; i++) /* every 200 ms: frequent */
		flush_auto_update(&t, now += 200);
	assert_int_equal(flush_effective(&t), FLUSH_PERIODIC);
	flush_auto_update(&t, now += 60000); /* a minute of silence: back to end at once */
	assert_int_equal(flush_effective(&t), FLUSH_END);
}

/* An entry queued after the loop turn's clock was read is young, not 49 days old. */
static void test_periodic_entry_queued_after_now_is_not_due(void **state)
{
	struct telkin *t = tk_periodic(1);
	int64_t now = now_ms();
	(void)state;
	queue_at(&t->q, t->q.head)->queued_at = (uint32_t)(now + 3);
	assert_false(ship_due(t, now));
	assert_false(ship_due(t, now + 502));
	assert_true(ship_due(t, now + 503));
	tk_free(t);
}

static void test_runtime_done_in_periodic_mode_does_not_hold_the_freeze(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int64_t now;
	(void)state;
	t->cfg.flush_mode = FLUSH_PERIODIC;
	t->phase = PHASE_INVOKE;
	strcpy(t->request_id, "r1");
	strcpy(t->runtime_done_id, "r1");
	tk_fill(t, 2, 10);
	now = now_ms(); /* not before the entries' time (as above) */
	t->invoke_deadline = now + 10000;
	lifecycle_step(t, now);                /* would call /event/next: no socket, so it fails */
	assert_int_equal(t->phase, PHASE_WAIT_EVENT);
	assert_int_equal(t->q.count, 2);       /* left for the next thaw */
	hc_close(&t->api);
	tk_free(t);
}

static void test_emf_line_is_valid_json_with_deltas(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int fds[2], saved = dup(STDOUT_FILENO);
	char line[4096];
	struct json_token tk[256];
	ssize_t n;
	int root, aws;
	(void)state;
	assert_int_equal(pipe(fds), 0);
	t->stats.events_received = 10;
	t->metrics_base.events_received = 4;
	t->latency_hist[3] = 9;  /* < 8 ms */
	t->latency_hist[7] = 1;  /* < 128 ms */
	dup2(fds[1], STDOUT_FILENO);
	metrics_emit(t, now_ms());
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], line, sizeof(line) - 1);
	close(fds[0]);
	assert_true(n > 0 && line[n - 1] == '\n');
	root = json_parse(line, (size_t)n - 1, tk, 256, 16, 0, NULL);
	assert_true(root > 0);
	aws = json_object_get(line, tk, 0, "_aws");
	assert_true(aws > 0);
	assert_true(json_object_get(line, tk, aws, "CloudWatchMetrics") > 0);
	{
		int64_t v;
		assert_int_equal(json_int64(line, &tk[json_object_get(line, tk, 0, "EventsReceived")],
		                            &v), 0);
		assert_int_equal(v, 6);
		assert_int_equal(json_int64(line, &tk[json_object_get(line, tk, 0,
		                                                      "PutRecordsLatencyP50")], &v), 0);
		assert_int_equal(v, 8);
		assert_int_equal(json_int64(line, &tk[json_object_get(line, tk, 0,
		                                                      "PutRecordsLatencyP99")], &v), 0);
		assert_int_equal(v, 128);
	}
	assert_true(json_string_eq(line, &tk[json_object_get(line, tk, 0, "FunctionName")], "fn"));
	/* the next line counts from here */
	assert_int_equal(t->metrics_base.events_received, 10);
	assert_int_equal(t->latency_hist[3], 0);
	tk_free(t);
}

static void test_http_client_skips_interim_100_continue(void **state)
{
	static char buf[512];
	static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
	                           "Content-Length: 2\r\n\r\n{}";
	struct http_client hc;
	(void)state;
	memset(&hc, 0, sizeof(hc));
	hc.buf = buf;
	hc.cap = sizeof(buf);
	memcpy(buf, resp, 25); /* the interim answer alone: not complete */
	hc.len = 25;
	assert_int_equal(hc_response_complete(&hc, 0), 0);
	memcpy(buf + hc.len, resp + 25, sizeof(resp) - 1 - 25);
	hc.len += sizeof(resp) - 1 - 25;
	assert_int_equal(hc_response_complete(&hc, 0), 1);
	assert_int_equal(hc.head.status, 200);
	assert_int_equal(hc.body_len, 2);
	assert_memory_equal(hc.body, "{}", 2);
}

static void test_error_kinds_logged_once_even_when_long(void **state)
{
	struct telkin t;
	char kind[200];
	(void)state;
	memset(&t, 0, sizeof(t));
	memset(kind, 'E', sizeof(kind) - 1);
	kind[sizeof(kind) - 1] = 0;
	assert_int_equal(first_time(&t, kind), 1);
	assert_int_equal(first_time(&t, kind), 0);
	for (int i = 0; i < 7; i++) {
		char k[8] = { 'k', (char)('0' + i), 0 };
		assert_int_equal(first_time(&t, k), 1);
	}
	assert_int_equal(first_time(&t, "a ninth kind"), 0); /* bounded: eight kinds at most */
}

static void test_kinesis_full_response_with_null_members_understood(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	static char resp[128 << 10];
	size_t n;
	(void)state;
	tk_fill(t, KINESIS_MAX_RECORDS, 4);
	assert_int_equal(batch_build(t), KINESIS_MAX_RECORDS);
	/* kinesis-mock's shape: every member on every record, nulls included */
	n = (size_t)snprintf(resp, sizeof(resp), "{\"FailedRecordCount\":0,\"Records\":[");
	for (int i = 0; i < KINESIS_MAX_RECORDS; i++)
		n += (size_t)snprintf(resp + n, sizeof(resp) - n, "%s{\"EncryptionType\":null,"
		                      "\"ErrorCode\":null,\"ErrorMessage\":null,\"SequenceNumber\":"
		                      "\"4959\",\"ShardId\":\"shardId-000000000000\"}", i ? "," : "");
	snprintf(resp + n, sizeof(resp) - n, "],\"EncryptionType\":\"NONE\"}");
	tk_respond(t, 200, resp);
	assert_int_equal(t->q.count, 0);
	assert_int_equal(t->stats.events_shipped, KINESIS_MAX_RECORDS);
	tk_free(t);
}

static void test_tls_alert_handshake_failure_has_clear_text(void **state)
{
	(void)state;
	assert_non_null(strstr(tls_error_text(BR_ERR_RECV_FATAL_ALERT + 40), "TLS 1.2"));
	assert_true(strlen(tls_error_text(BR_ERR_RECV_FATAL_ALERT + 40)) < 64);
}

static const struct CMUnitTest telkin_tests[] = {
	cmocka_unit_test(test_buffer_map_is_aligned_and_usable_to_its_last_byte),
	cmocka_unit_test(test_buffer_map_advises_huge_pages_past_the_small_lead_only),
	cmocka_unit_test(test_listener_slots_are_set_up_on_first_use),
	cmocka_unit_test(test_config_huge_pages),
	cmocka_unit_test(test_config_cpu_pin),
	cmocka_unit_test(test_cpu_pin_choose),
	cmocka_unit_test(test_config_requires_stream),
	cmocka_unit_test(test_config_defaults),
	cmocka_unit_test(test_config_rejects_buffer_values_outside_api_ranges),
	cmocka_unit_test(test_config_accepts_buffer_range_bounds),
	cmocka_unit_test(test_config_stream_arn_region_wins),
	cmocka_unit_test(test_config_rejects_malformed_stream),
	cmocka_unit_test(test_config_endpoint_precedence),
	cmocka_unit_test(test_config_rejects_bad_endpoints),
	cmocka_unit_test(test_config_types_list),
	cmocka_unit_test(test_config_requires_credentials),
	cmocka_unit_test(test_http_request_head_parsed),
	cmocka_unit_test(test_http_head_incomplete_until_blank_line),
	cmocka_unit_test(test_http_rejects_chunked_with_content_length),
	cmocka_unit_test(test_http_rejects_malformed_heads),
	cmocka_unit_test(test_http_response_status_and_header_lookup),
	cmocka_unit_test(test_chunked_body_decoded_in_place),
	cmocka_unit_test(test_chunked_body_incomplete_is_not_modified),
	cmocka_unit_test(test_chunked_body_rejects_bad_framing_and_excess),
	cmocka_unit_test(test_queue_full_returns_null_and_wraps_after_pop),
	cmocka_unit_test(test_queue_pop_stops_at_pending_head),
	cmocka_unit_test(test_ingest_one_tokenization_or_two_queue_the_same),
	cmocka_unit_test(test_ingest_refuses_more_events_than_the_bound_at_any_depth),
	cmocka_unit_test(test_ingest_appends_identity_members),
	cmocka_unit_test(test_ingest_empty_object_gets_identity_without_comma),
	cmocka_unit_test(test_ingest_records_are_valid_json),
	cmocka_unit_test(test_ingest_filters_types_not_forwarded),
	cmocka_unit_test(test_ingest_notes_runtime_done_even_when_platform_not_forwarded),
	cmocka_unit_test(test_ingest_rejects_malformed_batch_and_queues_nothing),
	cmocka_unit_test(test_ingest_partition_key_request_mode),
	cmocka_unit_test(test_ingest_drops_when_full_and_reports_later),
	cmocka_unit_test(test_drop_report_waits_for_room),
	cmocka_unit_test(test_ingest_truncates_event_over_record_limit),
	cmocka_unit_test(test_escape_fit_never_splits_utf8),
	cmocka_unit_test(test_batch_splits_at_500_records),
	cmocka_unit_test(test_batch_splits_at_5_mib),
	cmocka_unit_test(test_batch_body_is_putrecords_json_with_base64_data),
	cmocka_unit_test(test_kinesis_partial_failure_resends_only_failed),
	cmocka_unit_test(test_kinesis_record_count_mismatch_is_retried),
	cmocka_unit_test(test_kinesis_throttling_is_retried),
	cmocka_unit_test(test_kinesis_access_denied_drops_and_counts),
	cmocka_unit_test(test_kinesis_connection_failure_is_retried_with_backoff),
	cmocka_unit_test(test_backoff_grows_and_is_capped),
	cmocka_unit_test(test_error_table_classifies_documented_putrecords_errors),
	cmocka_unit_test(test_pacer_learns_one_shard_from_two_dry_answers),
	cmocka_unit_test(test_pacer_counts_bytes_against_the_byte_limit),
	cmocka_unit_test(test_kinesis_dry_shard_paces_without_backoff),
	cmocka_unit_test(test_kinesis_per_record_refusal_drops_only_that_record),
	cmocka_unit_test(test_backoff_fits_the_time_left),
	cmocka_unit_test(test_shutdown_give_up_counts_what_is_left_and_reports_it),
	cmocka_unit_test(test_signed_head_has_required_headers),
	cmocka_unit_test(test_identity_escapes_function_name),
	cmocka_unit_test(test_config_default_endpoints_fips_dualstack_china),
	cmocka_unit_test(test_config_container_credentials_only_to_local_hosts),
	cmocka_unit_test(test_config_environment_credentials_win_over_container),
	cmocka_unit_test(test_iso_expiration_parsed),
	cmocka_unit_test(test_trust_store_loads_pem_anchors),
	cmocka_unit_test(test_trust_store_rejects_non_certificates),
	cmocka_unit_test(test_tls_errors_have_clear_text),
	cmocka_unit_test(test_filter_platform_events_by_name),
	cmocka_unit_test(test_min_level_filters_json_function_logs_only),
	cmocka_unit_test(test_config_rejects_bad_flush_record_metrics_level),
	cmocka_unit_test(test_config_flush_modes),
	cmocka_unit_test(test_ndjson_packs_events_up_to_record_max),
	cmocka_unit_test(test_ndjson_splits_records_by_partition_key),
	cmocka_unit_test(test_ndjson_failed_record_keeps_all_its_events),
	cmocka_unit_test(test_b64_stream_matches_one_shot_encoding),
	cmocka_unit_test(test_periodic_ships_only_when_oldest_is_a_period_old),
	cmocka_unit_test(test_auto_switches_with_invocation_rate),
	cmocka_unit_test(test_periodic_entry_queued_after_now_is_not_due),
	cmocka_unit_test(test_runtime_done_in_periodic_mode_does_not_hold_the_freeze),
	cmocka_unit_test(test_emf_line_is_valid_json_with_deltas),
	cmocka_unit_test(test_http_client_skips_interim_100_continue),
	cmocka_unit_test(test_error_kinds_logged_once_even_when_long),
	cmocka_unit_test(test_kinesis_full_response_with_null_members_understood),
	cmocka_unit_test(test_tls_alert_handshake_failure_has_clear_text),
};
