/*
 * tests/fuzz_response.c - libFuzzer target: the HTTP client's response parser,
 * hc_response_complete, as the Kinesis endpoint or the Lambda APIs can drive it.
 *
 * Input: byte 0 picks the piece size the bytes arrive in and the buffer capacity; the rest is
 * the response. The same bytes are parsed twice: all at once (with end of stream), and piece by
 * piece the way hc_step reads them (end of stream only after the last piece). Checked:
 *   - "incomplete" is not "invalid": the piecewise run's first definite answer (1 or -1) is the
 *     whole run's answer, and a complete response has the same body both ways;
 *   - a complete response's body lies inside the bytes received, and inside the buffer;
 *   - the buffer (an exact-size heap block) is never written past (ASan).
 */
#include "tests/fuzz_telkin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void client_init(struct http_client *hc, char *buf, size_t cap)
{
	memset(hc, 0, sizeof(*hc));
	hc->fd = -1;
	hc->buf = buf;
	hc->cap = cap;
	hc->state = HC_RECEIVING;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_client whole, parts;
	size_t piece, cap, off = 0;
	char *wbuf, *pbuf;
	int rw, rp = 0;

	if (size < 1)
		return 0;
	piece = (size_t)(data[0] & 31) + 1;
	data++;
	size--;
	/* Capacity: what hc_step has room for; sometimes exactly the input, sometimes more. */
	cap = size + ((data[-1] & 0x80) ? 0 : 64);
	if (cap == 0)
		return 0;
	wbuf = malloc(cap);
	pbuf = malloc(cap);
	FZ_CHECK(wbuf && pbuf);

	client_init(&whole, wbuf, cap);
	memcpy(wbuf, data, size);
	whole.len = size;
	rw = hc_response_complete(&whole, 1);
	FZ_CHECK(rw >= -1 && rw <= 1);
	if (rw == 1) {
		FZ_CHECK(whole.body >= wbuf && whole.body <= wbuf + whole.len);
		FZ_CHECK(whole.body_len <= (size_t)(wbuf + whole.len - whole.body));
		FZ_CHECK(whole.head.status >= 0 && whole.head.status <= 999);
	}

	client_init(&parts, pbuf, cap);
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;
		memcpy(pbuf + parts.len, data + off, n);
		parts.len += n;
		off += n;
		rp = hc_response_complete(&parts, off == size);
		if (rp != 0)
			break;
	}
	if (size == 0)
		rp = hc_response_complete(&parts, 1);

	if (rp == 0) {
		FZ_CHECK(rw == 0);
	} else {
		if (rp != rw)
			fprintf(stderr, "piecewise %d (after %zu bytes), whole %d\n", rp, parts.len, rw);
		FZ_CHECK(rp == rw);
	}
	if (rp == 1 && rw == 1) {
		FZ_CHECK(parts.body_len == whole.body_len);
		FZ_CHECK(memcmp(parts.body, whole.body, whole.body_len) == 0);
		FZ_CHECK(parts.head.status == whole.head.status);
	}
	free(wbuf);
	free(pbuf);
	return 0;
}
