/*
 * bench_json.c - tokenizer and writer throughput on a realistic Telemetry API batch.
 *
 * The batch is what the Telemetry API POSTs to an extension: a JSON array of 1000 events, mixing
 * platform.start, platform.runtimeDone, platform.report and function log events whose record is a
 * text line or a JSON object (structured logging), about 256 KiB. It is generated from a fixed seed
 * so every run measures the same bytes. Figures only, no assertions. MB is 10^6 bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_min.h"

#define BATCH_EVENTS 1000
#define BATCH_CAP    (1024 * 1024)
#define MAX_TOKENS   (128 * 1024)
#define MIN_SECONDS  0.5

static char batch[BATCH_CAP];
static char scratch[4 * BATCH_CAP + 64];
static struct json_token toks[MAX_TOKENS];
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void)
{
	/* xorshift64: deterministic, good enough to vary lengths and digits */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct ids {
	char time[32];
	char request_id[40];
	char span_id[20];
	char trace[96];
};

static void make_ids(struct ids *id, int i)
{
	uint64_t a = rng(), b = rng(), c = rng();

	snprintf(id->time, sizeof id->time, "2024-05-01T12:%02d:%02d.%03dZ", i / 3600 % 60,
	         i / 60 % 60, (int)(a % 1000));
	snprintf(id->request_id, sizeof id->request_id, "%08x-%04x-%04x-%04x-%012llx",
	         (unsigned)(a >> 32), (unsigned)(a >> 16 & 0xFFFF), (unsigned)(b & 0xFFFF),
	         (unsigned)(b >> 16 & 0xFFFF), (unsigned long long)(c >> 16));
	snprintf(id->span_id, sizeof id->span_id, "%016llx", (unsigned long long)b);
	snprintf(id->trace, sizeof id->trace, "Root=1-%08x-%08x%016llx;Parent=%016llx;Sampled=1",
	         (unsigned)(a & 0xFFFFFFFF), (unsigned)(c & 0xFFFFFFFF), (unsigned long long)a,
	         (unsigned long long)c);
}

static const char *const words[] = {
	"order", "customer", "processed", "payment", "inventory", "shipment", "retry", "cache",
	"miss", "hit", "latency", "upstream", "caf\xc3\xa9", "na\xc3\xafve", "\\\"quoted\\\"", "ok",
};

/* A log message of about n bytes, with the odd escape and UTF-8 character real logs have. */
static int make_message(char *out, size_t cap, size_t n)
{
	size_t o = 0;
	const char *w;

	while (o < n && o + 24 < cap) {
		w = words[rng() % (sizeof words / sizeof words[0])];
		o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", w);
		if (rng() % 8 == 0)
			o += (size_t)snprintf(out + o, cap - o, "=%u", (unsigned)(rng() % 100000));
	}
	return (int)o;
}

static size_t make_event(char *out, size_t cap, int i)
{
	struct ids id;
	char msg[256];
	int m, n = 0;

	make_ids(&id, i);
	switch (i % 9) { /* one invocation: start, six log lines, runtimeDone, report */
	case 0:
		n = snprintf(out, cap,
		    "{\"time\":\"%s\",\"type\":\"platform.start\",\"record\":{\"requestId\":\"%s\","
		    "\"version\":\"$LATEST\",\"tracing\":{\"spanId\":\"%s\",\"type\":\"X-Amzn-Trace-Id\","
		    "\"value\":\"%s\"}}}",
		    id.time, id.request_id, id.span_id, id.trace);
		break;
	case 7:
		n = snprintf(out, cap,
		    "{\"time\":\"%s\",\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"%s\","
		    "\"status\":\"success\",\"metrics\":{\"durationMs\":%u.%03u,\"producedBytes\":%u},"
		    "\"spans\":[{\"name\":\"responseLatency\",\"start\":\"%s\",\"durationMs\":%u.%02u},"
		    "{\"name\":\"responseDuration\",\"start\":\"%s\",\"durationMs\":%u.%02u}],"
		    "\"tracing\":{\"spanId\":\"%s\",\"type\":\"X-Amzn-Trace-Id\",\"value\":\"%s\"}}}",
		    id.time, id.request_id, (unsigned)(rng() % 3000), (unsigned)(rng() % 1000),
		    (unsigned)(rng() % 100000), id.time, (unsigned)(rng() % 100),
		    (unsigned)(rng() % 100), id.time, (unsigned)(rng() % 100), (unsigned)(rng() % 100),
		    id.span_id, id.trace);
		break;
	case 8:
		n = snprintf(out, cap,
		    "{\"time\":\"%s\",\"type\":\"platform.report\",\"record\":{\"requestId\":\"%s\","
		    "\"metrics\":{\"durationMs\":%u.%02u,\"billedDurationMs\":%u,\"memorySizeMB\":128,"
		    "\"maxMemoryUsedMB\":%u,\"initDurationMs\":%u.%03u},\"tracing\":{\"spanId\":\"%s\","
		    "\"type\":\"X-Amzn-Trace-Id\",\"value\":\"%s\"},\"status\":\"success\"}}",
		    id.time, id.request_id, (unsigned)(rng() % 3000), (unsigned)(rng() % 100),
		    (unsigned)(rng() % 3000 + 1), (unsigned)(rng() % 128), (unsigned)(rng() % 900),
		    (unsigned)(rng() % 1000), id.span_id, id.trace);
		break;
	case 1: case 2: case 4: case 5:
		m = make_message(msg, sizeof msg, 5 + rng() % 25);
		n = snprintf(out, cap,
		    "{\"time\":\"%s\",\"type\":\"function\",\"record\":\"%s\\t%s\\tINFO\\t%.*s\\n\"}",
		    id.time, id.time, id.request_id, m, msg);
		break;
	default:
		m = make_message(msg, sizeof msg, 5 + rng() % 20);
		n = snprintf(out, cap,
		    "{\"time\":\"%s\",\"type\":\"function\",\"record\":{\"timestamp\":\"%s\","
		    "\"level\":\"INFO\",\"requestId\":\"%s\",\"message\":\"%.*s\",\"fields\":"
		    "{\"orderId\":%u,\"amount\":%u.%02u,\"ok\":true,\"tags\":[\"web\",\"eu-west-1\"]}}}",
		    id.time, id.time, id.request_id, m, msg, (unsigned)(rng() % 1000000),
		    (unsigned)(rng() % 1000), (unsigned)(rng() % 100));
		break;
	}
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t make_batch(char *out, size_t cap, int events)
{
	size_t o = 0;
	int i;

	out[o++] = '[';
	for (i = 0; i < events; i++) {
		if (i > 0)
			out[o++] = ',';
		o += make_event(out + o, cap - o - 2, i);
	}
	out[o++] = ']';
	return o;
}

static void bench_parse(const char *label, size_t len, unsigned emit_depth)
{
	double t0 = now(), t;
	long iters = 0;
	int n = 0;
	size_t off = 0;

	do {
		n = json_parse(batch, len, toks, MAX_TOKENS, 64, emit_depth, &off);
		iters++;
		t = now() - t0;
	} while (t < MIN_SECONDS);
	if (n < 0)
		printf("%-34s error %s at %zu\n", label, json_strerror(n), off);
	else
		printf("%-34s %8.0f MB/s  (%d tokens)\n", label, (double)len * iters / t / 1e6, n);
}

/* An encoder of batch[0..len) into scratch, timed for MIN_SECONDS: MB/s of input; *out its
 * last result. */
static double bench_rate(size_t (*encode)(char *, size_t, const char *, size_t), size_t len,
                         size_t *out)
{
	double t0 = now(), t;
	long iters = 0;

	do {
		*out = encode(scratch, sizeof scratch, batch, len);
		iters++;
		t = now() - t0;
	} while (t < MIN_SECONDS);
	return (double)len * iters / t / 1e6;
}

static size_t encode_base64(char *out, size_t cap, const char *s, size_t n)
{
	return base64_encode(out, cap, s, n);
}

int main(void)
{
	size_t len = make_batch(batch, sizeof batch, BATCH_EVENTS), r = 0;
	double rate;

	/* BENCH_JSON_DUMP=1 prints the batch instead, to look at it or check it with another parser. */
	if (getenv("BENCH_JSON_DUMP") != NULL) {
		fwrite(batch, 1, len, stdout);
		return 0;
	}
	printf("batch: %d events, %zu bytes\n", BATCH_EVENTS, len);
	bench_parse("json_parse emit_depth 1", len, 1);
	bench_parse("json_parse emit_depth 0 (all)", len, 0);
	/* 1000 text-format log lines with nothing to escape (what make bench's bursts send): the
	 * string scan's own speed (the batch above: short or escaped strings). */
	for (size_t line = 100; line <= 900; line *= 3) {
		char label[48];
		size_t o = 0;
		batch[o++] = '[';
		for (int i = 0; i < BATCH_EVENTS && o + line + 100 < sizeof batch; i++) {
			o += (size_t)snprintf(batch + o, sizeof batch - o, "%s{\"time\":\"2024-05-01T12:00:00"
			                      ".000Z\",\"type\":\"function\",\"record\":\"", i ? "," : "");
			for (size_t j = 0; j < line; j++)
				batch[o++] = (char)('a' + j % 26);
			batch[o++] = '"';
			batch[o++] = '}';
		}
		batch[o++] = ']';
		snprintf(label, sizeof label, "json_parse depth 3, %zu-byte lines", line);
		bench_parse(label, o, 3);
	}
	len = make_batch(batch, sizeof batch, BATCH_EVENTS);

	for (int vector = 1; vector >= 0; vector--) {
		base64_select(vector);
		printf("%-34s %8.0f MB/s  (input bytes)\n",
		       vector ? "base64_encode" : "base64_encode, scalar code only",
		       bench_rate(encode_base64, len, &r));
	}
	base64_select(1);
	rate = bench_rate(json_escape, len, &r);
	printf("%-34s %8.0f MB/s  (input bytes, the batch itself: %zu -> %zu)\n", "json_escape",
	       rate, len, r);
	return 0;
}
