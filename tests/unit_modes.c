/* Unit tests for the execution modes: mode detection, the end of init, SnapStart restore (with
 * fork() as the snapshot: a child is a memory copy of its parent, as a restored environment is
 * of the snapshot), and Kinesis connections kept across a freeze. Included by telkin_test.c
 * after unit_telkin.c (its helpers tk_new, tk_free, tk_ingest, tk_entry). */
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>

static void test_mode_from_initialization_type(void **state)
{
	static const struct { const char *value; enum exec_mode mode; } cases[] = {
		{ "on-demand", MODE_ON_DEMAND },
		{ "provisioned-concurrency", MODE_PROVISIONED },
		{ "snap-start", MODE_SNAPSTART },
		{ "lambda-managed-instances", MODE_MANAGED },
		{ "something-new", MODE_ON_DEMAND },
		{ "", MODE_ON_DEMAND },
	};
	(void)state;
	g_log_level = LOG_ERROR;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("AWS_LAMBDA_INITIALIZATION_TYPE", cases[i].value, 1);
		assert_int_equal(mode_detect(), cases[i].mode);
	}
	unsetenv("AWS_LAMBDA_INITIALIZATION_TYPE");
	assert_int_equal(mode_detect(), MODE_ON_DEMAND);
	assert_string_equal(mode_name(MODE_MANAGED), "lambda-managed-instances");
}

/* SnapStart and provisioned: /event/next waits for initRuntimeDone, then for the queue. */
static void test_init_phase_waits_for_init_runtime_done_then_ships(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int64_t now = now_ms();
	(void)state;
	t->mode = MODE_PROVISIONED;
	t->phase = PHASE_INIT;
	t->init_deadline = now + INIT_TELEMETRY_WAIT_MS;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"init line\"}]"), 0);
	lifecycle_step(t, now);
	assert_int_equal(t->phase, PHASE_INIT);
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.initRuntimeDone\",\"record\":"
	                              "{\"status\":\"success\"}}]"), 0);
	assert_int_equal(t->init_runtime_done, 1);
	lifecycle_step(t, now);
	assert_int_equal(t->phase, PHASE_FLUSH);  /* two records still queued */
	assert_int_equal(t->q.count, 2);
	assert_true(ship_due(t, now));            /* everything goes now, not by age */
	lifecycle_step(t, t->flush_deadline);     /* the budget is spent: /event/next */
	assert_int_equal(t->phase, PHASE_WAIT_EVENT);
	hc_close(&t->api);
	tk_free(t);
}

static void test_init_phase_gives_up_waiting_at_its_bound(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int64_t now = now_ms();
	(void)state;
	t->mode = MODE_SNAPSTART;
	t->phase = PHASE_INIT;
	t->init_deadline = now + INIT_TELEMETRY_WAIT_MS;
	lifecycle_step(t, now + INIT_TELEMETRY_WAIT_MS - 1);
	assert_int_equal(t->phase, PHASE_INIT);
	lifecycle_step(t, now + INIT_TELEMETRY_WAIT_MS);
	assert_int_equal(t->phase, PHASE_WAIT_EVENT); /* nothing queued: next at once */
	hc_close(&t->api);
	tk_free(t);
}

/* platform.restoreStart is the first event of a copy: it already carries the new identity. */
static void test_restore_start_event_gets_the_new_sandbox(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	char before[SANDBOX_ID_LEN + 1], out[1024];
	(void)state;
	memcpy(before, t->sandbox_id, sizeof(before));
	t->mode = MODE_SNAPSTART;
	t->snapshot_pending = 1;
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"before\"}]"), 0);
	assert_string_equal(t->sandbox_id, before);
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.restoreStart\",\"record\":"
	                              "{\"functionName\":\"fn\"}}]"), 0);
	assert_int_equal(t->snapshot_pending, 0);
	assert_int_equal(t->stats.restores, 1);
	assert_string_not_equal(t->sandbox_id, before);
	assert_non_null(strstr(tk_entry(t, 0, out, sizeof(out)), before));
	assert_non_null(strstr(tk_entry(t, 1, out, sizeof(out)), t->sandbox_id));
	/* Only once: a later restoreStart (none should come) changes nothing. */
	memcpy(before, t->sandbox_id, sizeof(before));
	assert_int_equal(tk_ingest(t, "[{\"type\":\"platform.restoreStart\",\"record\":{}}]"), 0);
	assert_string_equal(t->sandbox_id, before);
	tk_free(t);
}

static void test_restore_discards_credentials_and_waits_for_new_ones(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	t->cfg.container_creds = 1;
	strcpy(t->cfg.creds.access_key_id, "ASIAOLD");
	strcpy(t->cfg.creds.secret_access_key, "old-secret");
	strcpy(t->cfg.creds.session_token, "old-token");
	sigv4_init(&t->signer, t->cfg.region, "kinesis", t->cfg.creds.access_key_id,
	           t->cfg.creds.secret_access_key);
	t->snapshot_pending = 1;
	restore_from_snapshot(t, "test");
	assert_string_equal(t->cfg.creds.access_key_id, "");
	assert_string_equal(t->cfg.creds.secret_access_key, "");
	assert_string_equal(t->cfg.creds.session_token, "");
	assert_string_equal(t->signer.key_date, "");
	assert_int_equal(t->creds_stale, 1);
	/* No provider reachable here: nothing is signed or sent without credentials. */
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"x\"}]"), 0);
	t->phase = PHASE_INVOKE;
	t->invoke_deadline = now_ms() + 60000;
	kinesis_send(t, now_ms());
	assert_int_equal(t->request_out, 0);
	assert_int_equal(t->stats.putrecords_calls, 0);
	assert_true(t->retry_at > now_ms());
	tk_free(t);
}

/*
 * The clone test. fork() copies the process as a snapshot copies the environment. Without the
 * restore path, two copies send the same TLS client random (the DRBG state is copied); with it,
 * each copy has its own sandbox id and its own TLS randomness.
 */
struct clone_out {
	unsigned char client_random[32];
	char sandbox[SANDBOX_ID_LEN + 1];
};

static void clone_run(struct telkin *t, int restore, struct clone_out *out)
{
	int fds[2];
	pid_t pid;
	int status;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct clone_out o;
		unsigned char *rec;
		size_t len;
		if (restore)
			restore_from_snapshot(t, "clone test");
		/* A new handshake: the ClientHello record is in the engine's output. */
		br_ssl_client_reset(&t->kin.tls->sc, "kinesis.us-east-1.amazonaws.com", 1);
		rec = br_ssl_engine_sendrec_buf(&t->kin.tls->sc.eng, &len);
		/* record header (5), handshake header (4), client_version (2), then random (32) */
		if (len < 43)
			_exit(2);
		memcpy(o.client_random, rec + 11, 32);
		memcpy(o.sandbox, t->sandbox_id, sizeof(o.sandbox));
		_exit(write(fds[1], &o, sizeof(o)) == (ssize_t)sizeof(o) ? 0 : 3);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], out, sizeof(*out)), (ssize_t)sizeof(*out));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_restored_clones_differ_in_sandbox_and_tls_randomness(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	static struct trust_store ts;
	struct clone_out a, b, c, d;
	size_t len;
	(void)state;
	if (getenv("TELKIN_TEST_NO_FORK")) {
		print_message("skipped: %s\n", getenv("TELKIN_TEST_NO_FORK"));
		tk_free(t);
		skip();
	}
	t->kin.tls = calloc(1, sizeof(*t->kin.tls));
	assert_non_null(t->kin.tls);
	memcpy(ts.anchors, BUILTIN_ANCHORS, BUILTIN_ANCHORS_NUM * sizeof(ts.anchors[0]));
	ts.count = BUILTIN_ANCHORS_NUM;
	tls_setup(t->kin.tls, &ts, "kinesis.us-east-1.amazonaws.com");
	/* The process before the snapshot has made a handshake: its DRBG is seeded and in use. */
	assert_true(br_ssl_client_reset(&t->kin.tls->sc, "kinesis.us-east-1.amazonaws.com", 1));
	assert_non_null(br_ssl_engine_sendrec_buf(&t->kin.tls->sc.eng, &len));
	t->mode = MODE_SNAPSTART;
	t->snapshot_pending = 1;

	clone_run(t, 0, &a);
	clone_run(t, 0, &b);
	/* What the test detects: copies left alone repeat each other. */
	assert_memory_equal(a.client_random, b.client_random, 32);
	assert_string_equal(a.sandbox, b.sandbox);

	clone_run(t, 1, &c);
	clone_run(t, 1, &d);
	assert_memory_not_equal(c.client_random, d.client_random, 32);
	assert_memory_not_equal(c.client_random, a.client_random, 32);
	assert_string_not_equal(c.sandbox, d.sandbox);
	assert_string_not_equal(c.sandbox, a.sandbox);
	assert_int_equal(strlen(c.sandbox), SANDBOX_ID_LEN);
	free(t->kin.tls);
	t->kin.tls = NULL;
	tk_free(t);
}

/* A socketpair end as the Kinesis connection, idle after an answer at used_at. */
static int tk_idle_connection(struct telkin *t, int64_t used_at)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(set_nonblocking(sv[0]), 0);
	t->kin.fd = sv[0];
	t->kin.state = HC_IDLE;
	t->kin_used_at = used_at;
	t->kin_used_wall = wall_ms() - (now_ms() - used_at);
	return sv[1];
}

static void test_connection_idle_too_long_is_replaced_before_sending(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int64_t now = now_ms();
	int peer = tk_idle_connection(t, now - KINESIS_IDLE_REUSE_MS - 1);
	(void)state;
	kinesis_connection_check(t, now);
	assert_int_equal(t->kin.fd, -1);
	assert_int_equal(t->stats.reconnects, 1);
	close(peer);
	tk_free(t);
}

static void test_connection_closed_while_frozen_is_replaced_before_sending(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int64_t now = now_ms();
	int peer = tk_idle_connection(t, now - 10);
	(void)state;
	close(peer); /* the server closed it while we could not see it */
	t->kin_frozen = 1;
	kinesis_connection_check(t, now);
	assert_int_equal(t->kin.fd, -1);
	assert_int_equal(t->kin.probe, 0);
	tk_free(t);
}

static void test_connection_kept_across_a_freeze_is_probed_once(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int64_t now = now_ms();
	int peer = tk_idle_connection(t, now - 10);
	(void)state;
	t->kin_frozen = 1;
	kinesis_connection_check(t, now);
	assert_true(t->kin.fd >= 0);
	assert_int_equal(t->kin.probe, 1);
	assert_int_equal(t->kin_frozen, 0);
	/* Not frozen since: no probe on the next request. */
	kinesis_connection_check(t, now);
	assert_int_equal(t->kin.probe, 0);
	hc_close(&t->kin);
	close(peer);
	tk_free(t);
}

/* Dead means nothing acknowledged since the request started, with bytes waiting. */
static void test_probe_takes_only_unacknowledged_bytes_for_a_dead_path(void **state)
{
	struct tcp_ack_info ti;
	(void)state;
	memset(&ti, 0, sizeof(ti));
	ti.unacked = 3;
	ti.last_ack_recv = 400;
	assert_true(tcp_unacknowledged(&ti, 300));   /* sent 300 ms ago, no ACK for 400 */
	ti.last_ack_recv = 20;
	assert_false(tcp_unacknowledged(&ti, 300));  /* an ACK 20 ms ago: alive */
	ti.unacked = 0;
	ti.last_ack_recv = 400;
	assert_false(tcp_unacknowledged(&ti, 300));  /* all acknowledged: waiting for the server */
}

/* A real loopback TCP peer that takes the request and does not answer is slow, not dead. */
static void test_probe_keeps_a_slow_peer_that_acknowledged(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), cfd, sfd;
	static const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
	(void)state;
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof(a)), 0);
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	assert_int_equal(set_nonblocking(cfd), 0);
	{
		struct tcp_ack_info ti;
		if (tcp_ack_info(cfd, &ti) < 0) {
			/* qemu-user does not pass TCP_INFO through: telkin then never probes. */
			print_message("skipped: no TCP_INFO here\n");
			close(cfd);
			close(sfd);
			close(lfd);
			tk_free(t);
			skip();
		}
	}
	t->kin.fd = cfd;
	t->kin.probe = 1;
	hc_start(&t->kin, req, sizeof(req) - 1, NULL, 0, now_ms() + 60000);
	assert_true(t->kin.reused);
	assert_true(t->kin.probe_deadline > 0 && t->kin.probe_deadline < t->kin.deadline);
	assert_int_equal(hc_next_deadline(&t->kin), t->kin.probe_deadline);
	hc_step(&t->kin, POLLOUT, now_ms());
	assert_int_equal(t->kin.state, HC_RECEIVING);
	usleep(50 * 1000);                            /* the peer's kernel has acknowledged */
	hc_step(&t->kin, 0, t->kin.probe_deadline);
	assert_int_equal(t->kin.state, HC_RECEIVING);  /* still waiting: slow is not dead */
	assert_int_equal(t->kin.probe_deadline, 0);
	{
		/* The layout telkin reads: a connected TCP socket has a round trip to show. */
		struct tcp_ack_info ti;
		assert_int_equal(tcp_ack_info(cfd, &ti), 0);
		assert_true(ti.rtt > 0 && ti.rtt < 1000000);
		assert_int_equal(ti.unacked, 0);
	}
	hc_close(&t->kin);
	close(sfd);
	close(lfd);
	tk_free(t);
}

/* A request that failed on a kept-alive connection before any answer goes again at once. */
static void test_dead_kept_alive_connection_is_resent_at_once(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	(void)state;
	sigv4_init(&t->signer, t->cfg.region, "kinesis", t->cfg.creds.access_key_id,
	           t->cfg.creds.secret_access_key);
	assert_int_equal(tk_ingest(t, "[{\"type\":\"function\",\"record\":\"x\"}]"), 0);
	batch_build(t);
	t->request_out = 1;
	t->kin.reused = 1;
	t->kin.len = 0;
	t->kin.state = HC_FAILED;
	kinesis_on_response(t, now_ms());
	assert_int_equal(t->resent, 1);
	assert_int_equal(t->request_out, 1);
	assert_int_equal(t->stats.reconnects, 1);
	assert_int_equal(t->attempt, 0);            /* no backoff */
	hc_close(&t->kin);
	tk_free(t);
}

/* periodic: /event/next as soon as the invocation starts, without waiting for runtimeDone. */
static void test_periodic_calls_next_without_waiting_for_runtime_done(void **state)
{
	struct telkin *t = tk_new(QUEUE_MIN_BYTES);
	int64_t now = now_ms();
	(void)state;
	t->cfg.flush_mode = FLUSH_PERIODIC;
	t->phase = PHASE_INVOKE;
	strcpy(t->request_id, "r2");
	strcpy(t->runtime_done_id, "r1");  /* the previous invocation's */
	t->invoke_deadline = now + 10000;
	tk_fill(t, 2, 10);
	lifecycle_step(t, now);
	assert_int_equal(t->phase, PHASE_WAIT_EVENT);
	assert_string_equal(t->request_id, "r2");  /* text lines of r2 still keyed by it */
	assert_int_equal(t->q.count, 2);           /* shipped by age while the function runs */
	hc_close(&t->api);
	/* end waits for runtimeDone. */
	t->cfg.flush_mode = FLUSH_END;
	t->phase = PHASE_INVOKE;
	lifecycle_step(t, now);
	assert_int_equal(t->phase, PHASE_INVOKE);
	tk_free(t);
}

static const struct CMUnitTest modes_tests[] = {
	cmocka_unit_test(test_periodic_calls_next_without_waiting_for_runtime_done),
	cmocka_unit_test(test_mode_from_initialization_type),
	cmocka_unit_test(test_init_phase_waits_for_init_runtime_done_then_ships),
	cmocka_unit_test(test_init_phase_gives_up_waiting_at_its_bound),
	cmocka_unit_test(test_restore_start_event_gets_the_new_sandbox),
	cmocka_unit_test(test_restore_discards_credentials_and_waits_for_new_ones),
	cmocka_unit_test(test_restored_clones_differ_in_sandbox_and_tls_randomness),
	cmocka_unit_test(test_connection_idle_too_long_is_replaced_before_sending),
	cmocka_unit_test(test_connection_closed_while_frozen_is_replaced_before_sending),
	cmocka_unit_test(test_connection_kept_across_a_freeze_is_probed_once),
	cmocka_unit_test(test_probe_takes_only_unacknowledged_bytes_for_a_dead_path),
	cmocka_unit_test(test_probe_keeps_a_slow_peer_that_acknowledged),
	cmocka_unit_test(test_dead_kept_alive_connection_is_resent_at_once),
};
