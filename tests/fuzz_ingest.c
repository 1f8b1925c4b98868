/*
 * tests/fuzz_ingest.c - libFuzzer target: Telemetry API batches into the queue (ingest_batch).
 *
 * Input: byte 0 picks the partition-key mode, the event classes forwarded and the queue size
 * (from 4 KiB, so that it fills and wraps, to the configured 2 MiB); from 0xF0 up it inflates the
 * rest into one event over the 1 MiB record limit instead (so truncation runs). Byte 1 is how
 * many head entries Kinesis "takes" between batches. The rest is split at 0xFF bytes (never valid in JSON text)
 * into batches posted one after another. Checked after every batch:
 *   - every queued entry is one valid JSON object, data + key <= 1 MiB, key 1..256 printable
 *     bytes, entries inside the ring, the walk's count is q->count (fz_queue_check);
 *   - a rejected batch changes nothing: same queue, same counters (no partial copy);
 *   - an accepted batch counts each of its events exactly once: queued, filtered or dropped.
 */
#include "tests/fuzz_telkin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Kinesis takes the n oldest entries. */
static void take(struct telkin *t, unsigned n)
{
	for (size_t off = queue_first(&t->q); off != SIZE_MAX && n; off = queue_next(&t->q, off), n--)
		queue_at(&t->q, off)->state = ENTRY_DONE;
	queue_pop_done(&t->q);
}

static uint64_t dropped(const struct telkin *t)
{
	return t->stats.dropped_records[0] + t->stats.dropped_records[1] +
	       t->stats.dropped_records[2];
}

static void post(struct telkin *t, const char *body, size_t len)
{
	static struct json_token toks[LISTEN_MAX_EVENTS + 1];
	struct stats before = t->stats;
	size_t count = t->q.count, head = t->q.head, tail = t->q.tail;
	char err[160];
	char *copy = malloc(len ? len : 1); /* exact size: ASan sees a read past the body */
	int rc, events = 0;

	FZ_CHECK(copy != NULL);
	memcpy(copy, body, len);
	rc = ingest_batch(t, copy, len, err, sizeof(err));
	FZ_CHECK(rc == 0 || rc == -1);
	if (rc < 0) {
		FZ_CHECK(memchr(err, 0, sizeof(err)) != NULL && err[0]);
		FZ_CHECK(t->q.count == count && t->q.head == head && t->q.tail == tail);
		FZ_CHECK(memcmp(&before, &t->stats, sizeof(before)) == 0);
	} else {
		int n = json_parse(copy, len, toks, LISTEN_MAX_EVENTS + 1, JSON_MAX_DEPTH, 1, NULL);
		FZ_CHECK(n > 0 && toks[0].type == JSON_ARRAY);
		events = (int)toks[0].size;
		FZ_CHECK(t->stats.events_received - before.events_received == (uint64_t)events);
		/* Each event: queued, filtered, or dropped (full queue); drop reports are extra. */
		FZ_CHECK((t->stats.events_queued - before.events_queued) +
		         (t->stats.events_filtered - before.events_filtered) +
		         (dropped(t) - (before.dropped_records[0] + before.dropped_records[1] +
		                        before.dropped_records[2])) == (uint64_t)events);
	}
	fz_queue_check(t, NULL);
	free(copy);
}

/* One event over the record limit: the bytes as a JSON string, repeated past 1 MiB. */
static void post_inflated(struct telkin *t, const uint8_t *data, size_t size)
{
	static const char pre[] = "[{\"time\":\"2026-11-22T20:30:23.123Z\",\"type\":\"function\","
	                          "\"record\":\"";
	size_t esc = json_escaped_len((const char *)data, size), len, n = 0;
	size_t reps = size ? (KINESIS_MAX_RECORD_BYTES + 4096) / (esc ? esc : 1) + 1 : 0;
	char *body;

	if (!size || esc > 4096)
		return;
	len = sizeof(pre) - 1 + reps * esc + 3;
	body = malloc(len);
	FZ_CHECK(body != NULL);
	memcpy(body, pre, sizeof(pre) - 1);
	n = sizeof(pre) - 1;
	for (size_t i = 0; i < reps; i++)
		n += json_escape(body + n, esc, (const char *)data, size);
	memcpy(body + n, "\"}]", 3);
	n += 3;
	post(t, body, n);
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned types[4] = {
		CLASS_PLATFORM | CLASS_FUNCTION, CLASS_PLATFORM | CLASS_FUNCTION | CLASS_EXTENSION,
		CLASS_FUNCTION, CLASS_PLATFORM,
	};
	struct telkin *t = fz_telkin();
	unsigned take_n;
	size_t qcap, off = 0;

	if (size < 2)
		return 0;
	t->cfg.pk_mode = (enum pk_mode)((data[0] & 3) % 3);
	t->cfg.types = types[(data[0] >> 2) & 3];
	qcap = (data[0] & 0x30) == 0x30 ? t->cfg.queue_bytes : (4096u << ((data[0] >> 4) & 3));
	take_n = data[1];
	fz_reset(t, qcap);
	if (data[0] & 0x40)
		strcpy(t->request_id, "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
	if (data[0] >= 0xF0) {
		fz_reset(t, t->cfg.queue_bytes);
		post_inflated(t, data + 2, size - 2);
		return 0;
	}
	data += 2;
	size -= 2;
	while (off <= size) {
		const uint8_t *end = memchr(data + off, 0xFF, size - off);
		size_t n = end ? (size_t)(end - (data + off)) : size - off;
		post(t, (const char *)data + off, n);
		take(t, take_n);
		off += n + 1;
	}
	return 0;
}
