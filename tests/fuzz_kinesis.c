/*
 * tests/fuzz_kinesis.c - libFuzzer target: PutRecords answers (kinesis_on_response after
 * batch_build), as the Kinesis endpoint, or anything answering in its place, can send them.
 *
 * Input: byte 0 picks how many events are queued (1..600, so a request can stop at 500 records)
 * and, odd, ndjson packing (several events per record, record size from 1 KiB); byte 1 how far
 * round the ring the queue starts and the outcome: HTTP status (200, 400, 500, 503) or a failed
 * connection; the rest is the response body. Checked:
 *   - the queue's entry count never grows;
 *   - no event is lost: shipped + rejected + still queued (pending) == queued before + the
 *     telkin.dropped records that name the rejected ones (numbered after them: t->seq);
 *   - a request never carries more than 500 records, and inflight is cleared;
 *   - every entry left is valid (fz_queue_check);
 *   - afterwards, answering every request with full success drains the queue completely within
 *     a bounded number of requests: no record is stuck.
 */
#include "tests/fuzz_telkin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char event[] = "{\"time\":\"2026-11-22T20:30:23.123Z\",\"type\":\"function\","
                            "\"record\":\"hello\"}";

static void fill(struct telkin *t, unsigned records)
{
	size_t body = sizeof(event) - 2; /* without its closing brace: the members follow */
	for (unsigned i = 0; i < records; i++) {
		uint64_t seq = ++t->seq;
		struct queue_entry *e = queue_push(&t->q, SANDBOX_ID_LEN,
		                                   body + 1 + record_tail_len(t, 0, seq), CLASS_FUNCTION,
		                                   now_ms());
		FZ_CHECK(e != NULL);
		e->seq = seq;
		memcpy(entry_pk(e), t->sandbox_id, SANDBOX_ID_LEN);
		memcpy(entry_data(e), event, body);
		entry_data(e)[body] = ',';
		record_tail(t, entry_data(e) + body + 1, NULL, 0, seq);
	}
}

/* A PutRecords answer in which every record succeeded. */
static size_t all_ok(char *out, size_t cap, size_t records)
{
	size_t n = (size_t)snprintf(out, cap, "{\"FailedRecordCount\":0,\"Records\":[");
	for (size_t i = 0; i < records; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s{\"SequenceNumber\":\"4959\","
		                      "\"ShardId\":\"shardId-000000000000\"}", i ? "," : "");
	n += (size_t)snprintf(out + n, cap - n, "]}");
	return n;
}

static void respond(struct telkin *t, int status, const char *body, size_t len, int failed)
{
	FZ_CHECK(len <= t->kin.cap);
	memcpy(t->kin.buf, body, len);
	t->kin.body = t->kin.buf;
	t->kin.body_len = len;
	t->kin.len = len;
	t->kin.head.status = status;
	t->kin.state = failed ? HC_FAILED : HC_DONE;
	t->kin.reused = 0;
	t->kin.fd = -1;
	t->request_out = 1;
	t->resent = 1;
	kinesis_on_response(t, now_ms());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[4] = { 200, 400, 500, 503 };
	struct telkin *t = fz_telkin();
	unsigned records, skip, rounds = 0;
	size_t count0, pending0, count1, pending1, sent, sent_events;
	uint64_t shipped, rejected;
	int status, failed;

	if (size < 2)
		return 0;
	records = (unsigned)data[0] * 600 / 255 + 1;
	t->cfg.record_mode = (data[0] & 1) ? RECORD_NDJSON : RECORD_EVENT;
	t->cfg.record_max_bytes = 1024u << (data[0] >> 6);
	skip = (unsigned)(data[1] >> 4) * 48; /* ~240-byte entries: up to 170 KiB in */
	status = statuses[data[1] & 3];
	failed = (data[1] & 0x0c) == 0x0c;
	data += 2;
	size -= 2;

	/* A 256 KiB ring (600 records take 145 KiB), entered part-way round so batches cross the wrap. */
	fz_reset(t, 256u << 10);
	fill(t, skip);
	for (size_t off = queue_first(&t->q); off != SIZE_MAX; off = queue_next(&t->q, off))
		queue_at(&t->q, off)->state = ENTRY_DONE;
	queue_pop_done(&t->q);
	fill(t, records);
	count0 = fz_queue_check(t, &pending0);
	FZ_CHECK(pending0 == records);

	sent = batch_build(t);
	FZ_CHECK(sent >= 1 && sent <= KINESIS_MAX_RECORDS && sent == t->inflight_count);
	FZ_CHECK(t->req_body_len <= REQUEST_BODY_MAX);
	sent_events = t->inflight_end[sent - 1]; /* ndjson: several events per record */
	FZ_CHECK(sent_events >= sent && sent_events <= pending0);
	memset(&t->stats, 0, sizeof(t->stats));

	respond(t, status, (const char *)data, size, failed);
	FZ_CHECK(t->inflight_count == 0 && !t->request_out);
	count1 = fz_queue_check(t, &pending1);
	shipped = t->stats.events_shipped;
	rejected = t->stats.events_rejected;
	FZ_CHECK(count1 <= count0);
	FZ_CHECK(shipped + rejected <= sent_events);
	/* refused events are named by a telkin.dropped record, numbered after them, queued */
	FZ_CHECK(shipped + rejected + pending1 == pending0 + (t->seq - skip - records));
	FZ_CHECK(!rejected || t->seq > skip + records);

	/* Then Kinesis takes everything: the queue must drain. */
	while (t->q.count) {
		static char ok[KINESIS_RESPONSE_MAX];
		size_t n;
		FZ_CHECK(++rounds <= 2 + records / KINESIS_MAX_RECORDS + 1);
		sent = batch_build(t);
		FZ_CHECK(sent >= 1);
		n = all_ok(ok, sizeof(ok), sent);
		respond(t, 200, ok, n, 0);
		fz_queue_check(t, NULL);
	}
	FZ_CHECK(t->stats.events_shipped + t->stats.events_rejected ==
	         pending0 + (t->seq - skip - records));
	return 0;
}
