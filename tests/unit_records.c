/* Unit tests for what a consumer verifies (README, record format): "seq" per sandbox, the
 * "requestId" of function and extension events, the record's newline, and the telkin.dropped
 * records that name the numbers they stand for. Included by telkin_test.c after unit_telkin.c
 * (its helpers tk_new, tk_free, tk_ingest, tk_entry, tk_fill, tk_respond). */

/* The value of member name in the n-th queued event, or "" when absent (strings unquoted). */
static const char *tk_member(struct telkin *t, size_t n, const char *name, char *out, size_t cap)
{
	static char ev[1 << 12];
	struct json_token tk[64];
	int i, count;

	tk_entry(t, n, ev, sizeof(ev));
	count = json_parse(ev, strlen(ev), tk, 64, 32, 1, NULL);
	assert_true(count > 0);
	i = json_object_get(ev, tk, 0, name);
	out[0] = 0;
	if (i >= 0 && tk[i].type == JSON_STRING)
		json_string_copy(ev, &tk[i], out, cap);
	else if (i >= 0)
		snprintf(out, cap, "%.*s", (int)(tk[i].end - tk[i].start), ev + tk[i].start);
	return out;
}

static void test_seq_numbers_accepted_events_and_skips_filtered_ones(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char v[64], ev[1024];
	(void)state;
	/* extension events are not forwarded by default: no number, no gap */
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"a\"},"
	                              "{\"type\":\"extension\",\"record\":\"x\"},"
	                              "{\"type\":\"platform.report\",\"record\":{}}]"), 0);
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"b\"}]"), 0);
	assert_int_equal(t->q.count, 3);
	assert_string_equal(tk_member(t, 0, "seq", v, sizeof(v)), "1");
	assert_string_equal(tk_member(t, 1, "seq", v, sizeof(v)), "2");
	assert_string_equal(tk_member(t, 2, "seq", v, sizeof(v)), "3"); /* the next batch goes on */
	assert_int_equal(queue_at(&t->q, queue_first(&t->q))->seq, 1);
	/* "seq" is the last member, then the newline */
	tk_entry(t, 2, ev, sizeof(ev));
	assert_string_equal(ev + strlen(ev) - 9, "\"seq\":3}\n");
	tk_free(t);
}

static void test_request_id_follows_the_stream_between_start_and_runtime_done(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char v[64];
	(void)state;
	t->cfg.types |= CLASS_EXTENSION;
	assert_int_equal(tk_ingest(t,
	    "[{\"type\":\"function\",\"record\":\"init line\"},"
	    "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\"}},"
	    "{\"type\":\"function\",\"record\":\"text\"},"
	    "{\"type\":\"extension\",\"record\":\"ext\"},"
	    "{\"type\":\"function\",\"record\":{\"level\":\"INFO\",\"requestId\":\"own-9\",\"message\":\"m\"}}]"),
	    0);
	assert_int_equal(tk_ingest(t,
	    "[{\"type\":\"function\",\"record\":\"next batch, same invocation\"},"
	    "{\"type\":\"platform.runtimeDone\",\"record\":{\"requestId\":\"r1\",\"status\":\"success\"}},"
	    "{\"type\":\"function\",\"record\":\"after runtimeDone\"}]"), 0);
	assert_string_equal(tk_member(t, 0, "requestId", v, sizeof(v)), "");  /* init: unknown */
	assert_string_equal(tk_member(t, 1, "requestId", v, sizeof(v)), "");  /* platform: its own */
	assert_string_equal(tk_member(t, 2, "requestId", v, sizeof(v)), "r1");
	assert_string_equal(tk_member(t, 3, "requestId", v, sizeof(v)), "r1");
	assert_string_equal(tk_member(t, 4, "requestId", v, sizeof(v)), "own-9"); /* keeps its own */
	assert_string_equal(tk_member(t, 5, "requestId", v, sizeof(v)), "r1");
	assert_string_equal(tk_member(t, 7, "requestId", v, sizeof(v)), "");
	/* the members' order: requestId, identity, seq */
	{
		char ev[1024];
		tk_entry(t, 2, ev, sizeof(ev));
		assert_non_null(strstr(ev, "\"record\":\"text\",\"requestId\":\"r1\",\"function\":\"fn\","));
	}
	tk_free(t);
}

static void test_request_id_is_never_guessed_on_managed_instances(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char v[64];
	(void)state;
	t->mode = MODE_MANAGED;
	assert_int_equal(tk_ingest(t,
	    "[{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\"}},"
	    "{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r2\"}},"
	    "{\"type\":\"function\",\"record\":\"text: which one?\"},"
	    "{\"type\":\"function\",\"record\":{\"requestId\":\"r2\",\"message\":\"m\"}}]"), 0);
	assert_string_equal(tk_member(t, 2, "requestId", v, sizeof(v)), "");
	assert_string_equal(tk_member(t, 3, "requestId", v, sizeof(v)), "r2");
	tk_free(t);
}

static void test_request_id_is_not_added_twice(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char ev[1024];
	(void)state;
	assert_int_equal(tk_ingest(t,
	    "[{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\"}},"
	    "{\"type\":\"function\",\"requestId\":\"mine\",\"record\":\"x\"},"
	    "{\"type\":\"function\",\"record\":{\"requestId\":\"a\\\"b\",\"message\":\"escaped\"}}]"), 0);
	tk_entry(t, 1, ev, sizeof(ev));
	assert_null(strstr(strstr(ev, "\"requestId\"") + 1, "\"requestId\""));
	/* an escaped id is copied as written: still valid JSON, the same string */
	tk_entry(t, 2, ev, sizeof(ev));
	assert_non_null(strstr(ev, "\"requestId\":\"a\\\"b\",\"function\""));
	tk_free(t);
}

static void test_record_newline_setting(void **state)
{
	struct config c;
	char err[320];
	(void)state;
	tk_env_minimal();
	setenv("TELKIN_RECORD_NEWLINE", "yes", 1);
	assert_int_equal(config_load(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TELKIN_RECORD_NEWLINE=yes: expected 1 (on) or 0 (off)"));
	setenv("TELKIN_RECORD_NEWLINE", "0", 1);
	{
		struct telkin *t = tk_new(QUEUE_MIN_BYTES);
		static char out[1 << 12];
		char pk[64], ev[1024];
		size_t len;
		assert_int_equal(t->cfg.record_newline, 0);
		tk_fill(t, 3, 10);
		tk_entry(t, 0, ev, sizeof(ev));
		assert_int_equal(ev[strlen(ev) - 1], '}');
		/* ndjson: events joined by one newline, none at the end */
		t->cfg.record_mode = RECORD_NDJSON;
		assert_int_equal(batch_build(t), 1);
		len = tk_request_record(t, 0, out, sizeof(out) - 1, pk, sizeof(pk));
		assert_int_equal(out[len - 1], '}');
		assert_non_null(strstr(out, "\"seq\":1}\n{"));
		assert_non_null(strstr(out, "\"seq\":2}\n{"));
		tk_free(t);
	}
	unsetenv("TELKIN_RECORD_NEWLINE");
	{
		struct telkin *t = tk_new(QUEUE_MIN_BYTES);
		static char out[1 << 12];
		char pk[64];
		size_t len;
		tk_fill(t, 3, 10);
		t->cfg.record_mode = RECORD_NDJSON;
		assert_int_equal(batch_build(t), 1);
		len = tk_request_record(t, 0, out, sizeof(out) - 1, pk, sizeof(pk));
		/* no blank line between events: the newline ends each, none is added between */
		assert_null(strstr(out, "\n\n"));
		assert_string_equal(out + len - 9, "\"seq\":3}\n");
		/* the bytes Kinesis is told about are what was sent */
		assert_int_equal(t->inflight_bytes, len + strlen(pk));
		tk_free(t);
	}
}

static void test_drop_note_keeps_runs_and_widens_past_the_bound(void **state)
{
	struct drop_account a;
	(void)state;
	memset(&a, 0, sizeof(a));
	drop_note(&a, CLASS_FUNCTION, 10, 3);
	drop_note(&a, CLASS_FUNCTION, 10, 4);
	drop_note(&a, CLASS_PLATFORM, 10, 5);
	drop_note(&a, CLASS_FUNCTION, 10, 9);
	assert_int_equal(a.n_ranges, 2);
	assert_int_equal(a.range[0][0], 3);
	assert_int_equal(a.range[0][1], 5);
	assert_int_equal(a.range[1][0], 9);
	assert_int_equal(a.range[1][1], 9);
	/* more separate runs than a report holds: the last range widens, the count stays exact */
	for (uint64_t s = 20; s < 20 + 2 * DROP_REPORT_RANGES; s += 2)
		drop_note(&a, CLASS_EXTENSION, 1, s);
	assert_int_equal(a.n_ranges, DROP_REPORT_RANGES);
	assert_int_equal(a.range[DROP_REPORT_RANGES - 1][1], 20 + 2 * DROP_REPORT_RANGES - 2);
	assert_int_equal(drop_count(&a), 4 + DROP_REPORT_RANGES);
	/* every number noted is covered */
	for (uint64_t s = 20; s < 20 + 2 * DROP_REPORT_RANGES; s += 2) {
		int covered = 0;
		for (unsigned i = 0; i < a.n_ranges; i++)
			covered |= s >= a.range[i][0] && s <= a.range[i][1];
		assert_true(covered);
	}
	/* an older number, past the bound, widens the last range down */
	drop_note(&a, CLASS_EXTENSION, 1, 7);
	assert_int_equal(a.range[DROP_REPORT_RANGES - 1][0], 7);
}

static void test_drop_report_fits_its_bound_with_every_range(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	struct drop_account a;
	char ev[DROP_REPORT_MAX + 1024];
	struct json_token tk[4 * DROP_REPORT_RANGES + 64];
	(void)state;
	memset(&a, 0, sizeof(a));
	for (uint64_t s = 0; s < DROP_REPORT_RANGES; s++)
		drop_note(&a, CLASS_FUNCTION, 1, UINT64_MAX - 2 * DROP_REPORT_RANGES + 2 * s);
	assert_int_equal(queue_drop_report(t, &a, "queue full"), 0);
	tk_entry(t, 0, ev, sizeof(ev));
	assert_true(strlen(ev) < DROP_REPORT_MAX + t->identity_len + SEQ_TAIL_MAX);
	assert_true(json_parse(ev, strlen(ev), tk, 4 * DROP_REPORT_RANGES + 64, 32, 0, NULL) > 0);
	assert_non_null(strstr(ev, "[18446744073709551613,18446744073709551613]]},"));
	tk_free(t);
}

static void test_shutdown_report_names_the_numbers_lost(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char ev[2048];
	size_t off;
	(void)state;
	tk_fill(t, 5, 10);
	/* number 2 was delivered (a later record of a request whose first one was throttled) */
	off = queue_next(&t->q, queue_first(&t->q));
	queue_at(&t->q, off)->state = ENTRY_DONE;
	t->phase = PHASE_SHUTDOWN;
	t->shutdown_deadline = now_ms() - 1;
	shutdown_give_up(t, now_ms());
	assert_int_equal(t->stats.lost_at_exit, 4);
	assert_int_equal(t->q.count, 1);
	tk_entry(t, 0, ev, sizeof(ev));
	assert_non_null(strstr(ev, "\"droppedRecords\":4,"));
	assert_non_null(strstr(ev, "\"reason\":\"shutdown deadline\",\"seqRanges\":[[1,1],[3,5]]},"));
	assert_non_null(strstr(ev, "\"seq\":6}\n"));
	tk_free(t);
}

static void test_truncated_event_keeps_its_number_and_request_id(void **state)
{
	struct telkin *t = tk_new(4u << 20);
	size_t big = KINESIS_MAX_RECORD_BYTES + 100, n = 0;
	char *batch = malloc(big + 256);
	(void)state;
	n += (size_t)sprintf(batch, "[{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r1\"}},"
	                            "{\"type\":\"function\",\"record\":\"");
	memset(batch + n, 'z', big);
	n += big;
	strcpy(batch + n, "\"}]");
	assert_int_equal(tk_ingest(t, batch), 0);
	assert_int_equal(t->stats.events_truncated, 1);
	{
		struct queue_entry *e = queue_at(&t->q, queue_next(&t->q, queue_first(&t->q)));
		char *d = entry_data(e), tail[IDENTITY_MAX + 64];
		assert_true(e->data_len + e->pk_len <= KINESIS_MAX_RECORD_BYTES);
		assert_int_equal(e->seq, 2);
		snprintf(tail, sizeof(tail), "zz\",\"requestId\":\"r1\",%.*s,\"seq\":2}\n",
		         (int)t->identity_len, t->identity);
		assert_memory_equal(d + e->data_len - strlen(tail), tail, strlen(tail));
	}
	free(batch);
	tk_free(t);
}

static void test_restore_starts_a_new_sandbox_at_one(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char before[SANDBOX_ID_LEN + 1], v[64];
	(void)state;
	tk_fill(t, 2, 10);
	strcpy(before, t->sandbox_id);
	t->snapshot_pending = 1;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.restoreStart\",\"record\":{}},"
	                              "{\"type\":\"function\",\"record\":\"after\"}]"), 0);
	assert_string_not_equal(t->sandbox_id, before);
	assert_string_equal(tk_member(t, 1, "seq", v, sizeof(v)), "2");
	assert_string_equal(tk_member(t, 1, "sandbox", v, sizeof(v)), before);
	assert_string_equal(tk_member(t, 2, "seq", v, sizeof(v)), "1");
	assert_string_equal(tk_member(t, 2, "sandbox", v, sizeof(v)), t->sandbox_id);
	assert_string_equal(tk_member(t, 3, "seq", v, sizeof(v)), "2");
	tk_free(t);
}

static void test_refused_report_is_named_again_with_what_it_named(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char ev[2048];
	(void)state;
	t->cfg.record_mode = RECORD_EVENT;
	tk_fill(t, 3, 10);
	batch_build(t);
	tk_respond(t, 400, "{\"__type\":\"AccessDeniedException\",\"message\":\"no\"}");
	assert_int_equal(t->q.count, 1); /* the report of 1..3, number 4 */
	batch_build(t);
	tk_respond(t, 400, "{\"__type\":\"AccessDeniedException\",\"message\":\"no\"}");
	assert_int_equal(t->q.count, 1); /* the report of the report: 1..4, number 5 */
	tk_entry(t, 0, ev, sizeof(ev));
	assert_non_null(strstr(ev, "\"droppedRecords\":4,"));
	assert_non_null(strstr(ev, "\"platform\":1,\"function\":3,\"extension\":0,"));
	assert_non_null(strstr(ev, "\"seqRanges\":[[1,4]]},"));
	assert_non_null(strstr(ev, "\"seq\":5}\n"));
	tk_free(t);
}

static const struct CMUnitTest records_tests[] = {
	cmocka_unit_test(test_refused_report_is_named_again_with_what_it_named),
	cmocka_unit_test(test_seq_numbers_accepted_events_and_skips_filtered_ones),
	cmocka_unit_test(test_request_id_follows_the_stream_between_start_and_runtime_done),
	cmocka_unit_test(test_request_id_is_never_guessed_on_managed_instances),
	cmocka_unit_test(test_request_id_is_not_added_twice),
	cmocka_unit_test(test_record_newline_setting),
	cmocka_unit_test(test_drop_note_keeps_runs_and_widens_past_the_bound),
	cmocka_unit_test(test_drop_report_fits_its_bound_with_every_range),
	cmocka_unit_test(test_shutdown_report_names_the_numbers_lost),
	cmocka_unit_test(test_truncated_event_keeps_its_number_and_request_id),
	cmocka_unit_test(test_restore_starts_a_new_sandbox_at_one),
};
