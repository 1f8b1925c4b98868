/*
 * tests/fuzz_listener.c - libFuzzer target: the telemetry listener's request handling, through
 * listener_process on a real connection (a socketpair), so its responses are real bytes.
 *
 * Input: byte 0 picks how the rest arrives (in one piece, or in pieces of 1..64 bytes, as a
 * socket may deliver it); the rest is what Lambda (or anything inside the sandbox) sends.
 * Checked:
 *   - the connection buffer never holds more than its capacity;
 *   - every byte telkin writes back parses as a complete HTTP/1.1 response head with a status
 *     telkin sends (100, 200, 400, 404, 405, 411, 413, 431) and a Content-Length body;
 *   - listener_process returns -1 only with the connection closed or half-closed (draining);
 *   - the queue holds only valid records (tests/fuzz_telkin.h: fz_queue_check), and a request
 *     answered 400/413/... queued nothing;
 *   - http_parse_head and chunked_decode alone, on the same bytes: spans inside the input,
 *     decoded length <= consumed <= input, within the limit.
 */
#include <sys/socket.h>

#include "tests/fuzz_telkin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read everything telkin wrote and check it is a sequence of well-formed responses. */
static size_t drain_responses(int fd, unsigned *ok_count)
{
	static char buf[1 << 20];
	size_t len = 0, off = 0;
	ssize_t n;

	while (len < sizeof(buf) && (n = recv(fd, buf + len, sizeof(buf) - len, MSG_DONTWAIT)) > 0)
		len += (size_t)n;
	while (off < len) {
		struct http_head h;
		int rc = http_parse_head(buf + off, len - off, 0, &h);
		FZ_CHECK(rc == 1);
		FZ_CHECK(h.status == 100 || h.status == 200 || h.status == 400 || h.status == 404 ||
		         h.status == 405 || h.status == 411 || h.status == 413 || h.status == 431);
		if (h.status == 100) {
			off += h.head_len;
			continue;
		}
		FZ_CHECK(h.content_length >= 0 && !h.chunked);
		FZ_CHECK((size_t)h.content_length <= len - off - h.head_len);
		if (h.status == 200)
			(*ok_count)++;
		off += h.head_len + (size_t)h.content_length;
	}
	return len;
}

/* The parsers alone, on a private copy (chunked_decode compacts in place). */
static void check_parsers(const uint8_t *data, size_t size)
{
	struct http_head h;
	char *copy;
	int rc;

	for (int is_request = 0; is_request < 2; is_request++) {
		rc = http_parse_head((const char *)data, size, is_request, &h);
		FZ_CHECK(rc >= CHUNKED_TOO_LARGE && rc <= 1);
		if (rc == 1) {
			FZ_CHECK(h.head_len >= 4 && h.head_len <= size);
			if (is_request)
				FZ_CHECK(h.method == (const char *)data && h.path > h.method &&
				         h.path + h.path_len <= (const char *)data + h.head_len);
			FZ_CHECK(!(h.chunked && h.content_length >= 0));
		}
	}
	copy = malloc(size ? size : 1);
	FZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	{
		size_t limit = size / 2, data_len = 0, consumed = 0;
		rc = chunked_decode(copy, size, limit, &data_len, &consumed);
		FZ_CHECK(rc >= CHUNKED_TOO_LARGE && rc <= 1);
		if (rc == 1)
			FZ_CHECK(data_len <= consumed && consumed <= size && data_len <= limit);
		else if (rc == 0)
			FZ_CHECK(memcmp(copy, data, size) == 0); /* "more bytes needed" modifies nothing */
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct telkin *t = fz_telkin();
	struct listen_conn *c = t->conns_made ? &t->conns[0] : listener_slot_make(t);
	size_t cap = LISTEN_HEAD_MAX + t->body_limit, piece, off = 0;
	unsigned oks = 0;
	int sv[2];

	if (size < 1)
		return 0;
	piece = data[0] == 0 ? SIZE_MAX : (size_t)(data[0] & 63) + 1;
	data++;
	size--;
	check_parsers(data, size);

	fz_reset(t, t->cfg.queue_bytes);
	FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	c->fd = sv[0];
	c->len = 0;
	c->request_started = 0;
	c->continue_sent = 0;
	c->draining = 0;

	/* Until telkin closes the connection or half-closes it (draining: input is discarded). */
	while (off < size && c->fd >= 0 && !c->draining) {
		size_t n = size - off < piece ? size - off : piece;
		FZ_CHECK(!c->waiting); /* one connection: a body buffer is always free */
		FZ_CHECK(c->cap == LISTEN_HEAD_MAX || c->cap == cap);
		if (n > c->cap - c->len)
			n = c->cap - c->len;
		if (n == 0)
			break; /* full: listener_read would answer 413 and close */
		memcpy(c->buf + c->len, data + off, n);
		c->last_used = now_ms();
		c->len += n;
		off += n;
		if (listener_process(t, c) < 0)
			FZ_CHECK(c->fd == -1 || c->draining);
		FZ_CHECK(c->len <= c->cap);
		drain_responses(sv[1], &oks);
		fz_queue_check(t, NULL);
	}
	drain_responses(sv[1], &oks);
	/* Every 200 is one accepted batch; nothing is queued without one. */
	FZ_CHECK(t->stats.batches_received == oks);
	if (!oks)
		FZ_CHECK(t->q.count == 0);
	if (c->fd >= 0)
		listener_close(t, c);
	close(sv[1]);
	return 0;
}
