/*
 * Regression tests from fuzzing (included by telkin_test.c after tests/unit_telkin.c, whose
 * tk_new()/tk_free() helpers they use). Each crash a fuzz target finds becomes one test here,
 * named after the behaviour it pins, with its input also kept in tests/fuzz/regress/<target>/
 * (replayed by make fuzz-regress). The tests below pin the invariants the fuzz targets check,
 * on inputs that exercised them while the targets were written; no crash has been found yet.
 */

/* fuzz_response: a response that arrives in pieces is read exactly as if it came at once. */
static void test_regress_response_in_pieces_equals_whole(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	                           "a;x=1\r\n{\"Records\"\r\n7\r\n:[{}]}\n\r\n0\r\nT: 1\r\n\r\n";
	char whole_buf[sizeof(resp)], part_buf[sizeof(resp)];
	struct http_client whole, part;
	int rc = 0;
	(void)state;

	memset(&whole, 0, sizeof(whole));
	memset(&part, 0, sizeof(part));
	whole.buf = whole_buf;
	part.buf = part_buf;
	whole.cap = part.cap = sizeof(resp);
	memcpy(whole_buf, resp, sizeof(resp) - 1);
	whole.len = sizeof(resp) - 1;
	assert_int_equal(hc_response_complete(&whole, 1), 1);
	for (size_t i = 0; i < sizeof(resp) - 1 && rc == 0; i++) {
		part_buf[part.len++] = resp[i];
		rc = hc_response_complete(&part, i == sizeof(resp) - 2);
	}
	assert_int_equal(rc, 1);
	assert_int_equal(part.body_len, whole.body_len);
	assert_memory_equal(part.body, whole.body, whole.body_len);
	assert_int_equal(whole.body_len, 17);
	assert_memory_equal(whole.body, "{\"Records\":[{}]}\n", 17);
}

/* fuzz_ingest: a rejected batch leaves the queue and every counter exactly as they were. */
static void test_regress_rejected_batch_changes_nothing(void **state)
{
	struct telkin *t = tk_new(2u << 20);
	struct stats before;
	size_t count, head, tail;
	(void)state;

	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"a\"}]"), 0);
	before = t->stats;
	count = t->q.count;
	head = t->q.head;
	tail = t->q.tail;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"b\"},2]"), -1);
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"\\ud800\"}]"), -1);
	assert_int_equal(t->q.count, count);
	assert_int_equal(t->q.head, head);
	assert_int_equal(t->q.tail, tail);
	assert_memory_equal(&t->stats, &before, sizeof(before));
	tk_free(t);
}

/* fuzz_listener: "more bytes needed" never modifies the chunked body it was given. */
static void test_regress_chunked_incomplete_leaves_input_unmodified(void **state)
{
	static const char body[] = "3\r\nabc\r\n4\r\ndefg\r\n0\r\nTrailer: x\r\n";
	char copy[sizeof(body)];
	size_t data_len = 0, consumed = 0;
	(void)state;

	for (size_t n = 0; n < sizeof(body) - 1; n++) {
		memcpy(copy, body, sizeof(body));
		assert_int_equal(chunked_decode(copy, n, 1024, &data_len, &consumed), 0);
		assert_memory_equal(copy, body, sizeof(body));
	}
}

/* fuzz_response (tests/fuzz/regress/response/chunk-over-buffer): a chunk larger than the
 * response buffer made hc_response_complete return chunked_decode's -2; its contract is -1/0/1. */
static void test_regress_response_chunk_over_buffer_is_malformed(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	                           "ffff\r\n{\"FailedRecordCount\":0";
	char buf[128];
	struct http_client hc;
	(void)state;
	memset(&hc, 0, sizeof(hc));
	memcpy(buf, resp, sizeof(resp) - 1);
	hc.buf = buf;
	hc.cap = sizeof(buf);
	hc.len = sizeof(resp) - 1;
	assert_int_equal(hc_response_complete(&hc, 0), -1);
}

static const struct CMUnitTest regress_tests[] = {
	cmocka_unit_test(test_regress_response_in_pieces_equals_whole),
	cmocka_unit_test(test_regress_rejected_batch_changes_nothing),
	cmocka_unit_test(test_regress_chunked_incomplete_leaves_input_unmodified),
	cmocka_unit_test(test_regress_response_chunk_over_buffer_is_malformed),
};
