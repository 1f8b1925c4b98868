/*
 * tests/fuzz_telkin.h - shared by the libFuzzer targets that need telkin.c's static functions:
 * includes telkin.c (built with -DTELKIN_TEST, so main() is left out) and builds one process
 * state the way start-up does, without any socket (like tk_new() in tests/unit_telkin.c).
 */
#ifndef TELKIN_FUZZ_TELKIN_H
#define TELKIN_FUZZ_TELKIN_H

#include <stdio.h>
#include <stdlib.h>

#include "telkin.c"

/* A broken invariant: say which, then abort so libFuzzer keeps the input. */
#define FZ_CHECK(cond)                                                                        \
	do {                                                                                      \
		if (!(cond)) {                                                                        \
			fprintf(stderr, "invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                          \
		}                                                                                     \
	} while (0)

static void fz_env_minimal(void)
{
	static const char *const vars[] = {
		"TELKIN_STREAM", "AWS_REGION", "AWS_DEFAULT_REGION", "TELKIN_ENDPOINT",
		"AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "TELKIN_LISTEN_PORT",
		"TELKIN_BUFFER_ITEMS", "TELKIN_BUFFER_BYTES", "TELKIN_BUFFER_TIMEOUT_MS",
		"TELKIN_TYPES", "TELKIN_QUEUE_BYTES", "TELKIN_PARTITION_KEY",
		"TELKIN_FLUSH_TIMEOUT_MS", "TELKIN_LOG_LEVEL", "TELKIN_CA_FILE",
		"AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_LAMBDA_FUNCTION_NAME",
		"AWS_LAMBDA_FUNCTION_VERSION", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "TELKIN_MIN_LEVEL", "TELKIN_FLUSH",
		"TELKIN_RECORD", "TELKIN_RECORD_MAX_BYTES", "TELKIN_METRICS",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("TELKIN_STREAM", "s1", 1);
	setenv("AWS_REGION", "eu-west-1", 1);
	setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4567", 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
	setenv("AWS_LAMBDA_FUNCTION_NAME", "fn", 1);
	setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST", 1);
}

/* The process state, as after start-up (minimal queue, 2 MiB), built once per fuzzer process. */
static struct telkin *fz_telkin(void)
{
	static struct telkin *t;
	char err[320];

	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	FZ_CHECK(t != NULL);
	fz_env_minimal();
	setenv("TELKIN_QUEUE_BYTES", "2097152", 1);
	FZ_CHECK(config_load(&t->cfg, err, sizeof(err)) == 0);
	g_log_level = -1; /* silent: the fuzzer's output is its own */
	strcpy(t->sandbox_id, "0123456789abcdef0123456789abcdef");
	FZ_CHECK(identity_build(t) == 0);
	FZ_CHECK(buffers_alloc(t) == 0);
	t->api.fd = t->kin.fd = t->listen_fd = -1;
	return t;
}

/* Back to an empty queue and zero counters; configuration and buffers are kept. */
static void fz_reset(struct telkin *t, size_t queue_cap)
{
	t->q.head = t->q.tail = t->q.count = t->q.high_water = 0;
	t->q.cap = queue_cap & ~(size_t)7;
	memset(&t->stats, 0, sizeof(t->stats));
	memset(t->unreported, 0, sizeof(t->unreported));
	t->seq = 0;
	t->stream_request_id[0] = 0;
	memset(t->logged_errors, 0, sizeof(t->logged_errors));
	t->inflight_count = 0;
	t->request_out = 0;
	t->attempt = 0;
	t->request_id[0] = 0;
	t->runtime_done_id[0] = 0;
	t->phase = PHASE_INVOKE;
}

/*
 * Walk the queue from head to tail and check every entry: within the ring, a partition key of
 * 1..256 bytes, data + key within a Kinesis record, data that is one valid JSON object ending
 * with its "seq" (increasing along the queue) and the newline. Returns
 * the number of entries walked (which must be q->count) and counts pending ones.
 */
static size_t fz_queue_check(struct telkin *t, size_t *pending)
{
	static struct json_token toks[64];
	size_t n = 0, p = 0;
	uint64_t last_seq = 0;

	for (size_t off = queue_first(&t->q); off != SIZE_MAX; off = queue_next(&t->q, off)) {
		struct queue_entry *e = queue_at(&t->q, off);
		int rc;
		FZ_CHECK(n < t->q.count);
		FZ_CHECK(off % 8 == 0);
		FZ_CHECK(off + entry_size(e) <= t->q.cap);
		FZ_CHECK(e->state == ENTRY_PENDING || e->state == ENTRY_DONE);
		FZ_CHECK(e->pk_len >= 1 && e->pk_len <= KINESIS_MAX_PARTITION_KEY);
		FZ_CHECK((size_t)e->data_len + e->pk_len <= KINESIS_MAX_RECORD_BYTES);
		rc = json_parse(entry_data(e), e->data_len, toks, 64, JSON_MAX_DEPTH, 1, NULL);
		if (rc < 0) {
			fprintf(stderr, "queued record is not valid JSON (%s): %.*s\n",
			        json_strerror(rc), (int)(e->data_len > 400 ? 400 : e->data_len),
			        entry_data(e));
		}
		FZ_CHECK(rc > 0 && toks[0].type == JSON_OBJECT);
		{
			char tail[40];
			int tl = snprintf(tail, sizeof(tail), ",\"seq\":%llu}%s",
			                  (unsigned long long)e->seq, t->cfg.record_newline ? "\n" : "");
			FZ_CHECK(e->seq > last_seq);
			FZ_CHECK(e->data_len >= (uint32_t)tl &&
			         !memcmp(entry_data(e) + e->data_len - tl, tail, (size_t)tl));
			last_seq = e->seq;
		}
		for (size_t i = 0; i < e->pk_len; i++)
			FZ_CHECK(entry_pk(e)[i] > 0x20 && entry_pk(e)[i] < 0x7f &&
			         entry_pk(e)[i] != '"' && entry_pk(e)[i] != '\\');
		if (e->state == ENTRY_PENDING)
			p++;
		n++;
	}
	FZ_CHECK(n == t->q.count);
	FZ_CHECK(queue_used(&t->q) <= t->q.cap);
	if (pending)
		*pending = p;
	return n;
}

#endif
