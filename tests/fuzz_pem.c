/*
 * tests/fuzz_pem.c - libFuzzer target: extra trust anchors from TELKIN_CA_FILE (trust_add_pem,
 * trust_add_der). Input: the file's bytes. Checked:
 *   - never more anchors than the store holds, never more DN/key bytes than TLS_ANCHOR_BYTES;
 *   - the result is -1 with a non-empty message, or the number of anchors added;
 *   - every anchor added has a DN and a key whose bytes lie inside the store's own copy.
 */
#include "tests/fuzz_telkin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const struct trust_store *ts, const void *p, size_t n)
{
	const unsigned char *b = p;
	return b >= ts->bytes && n <= TLS_ANCHOR_BYTES && b + n <= ts->bytes + ts->used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct trust_store ts;
	static unsigned char *bytes, *scratch;
	char err[160];
	int rc;

	if (size > TLS_CA_FILE_MAX)
		return 0;
	if (!bytes) {
		bytes = malloc(TLS_ANCHOR_BYTES);
		scratch = malloc(TLS_CERT_MAX);
		FZ_CHECK(bytes && scratch);
	}
	memset(&ts, 0, sizeof(ts));
	ts.bytes = bytes;
	err[0] = 0;
	rc = trust_add_pem(&ts, (const char *)data, size, scratch, err, sizeof(err));
	FZ_CHECK(ts.count <= sizeof(ts.anchors) / sizeof(ts.anchors[0]));
	FZ_CHECK(ts.used <= TLS_ANCHOR_BYTES);
	if (rc < 0) {
		FZ_CHECK(rc == -1 && err[0] && memchr(err, 0, sizeof(err)));
	} else {
		FZ_CHECK(rc >= 1 && (size_t)rc == ts.count);
	}
	for (size_t i = 0; i < ts.count; i++) {
		const br_x509_trust_anchor *ta = &ts.anchors[i];
		FZ_CHECK(inside(&ts, ta->dn.data, ta->dn.len));
		if (ta->pkey.key_type == BR_KEYTYPE_RSA)
			FZ_CHECK(inside(&ts, ta->pkey.key.rsa.n, ta->pkey.key.rsa.nlen) &&
			         inside(&ts, ta->pkey.key.rsa.e, ta->pkey.key.rsa.elen));
		else
			FZ_CHECK(ta->pkey.key_type == BR_KEYTYPE_EC &&
			         inside(&ts, ta->pkey.key.ec.q, ta->pkey.key.ec.qlen));
	}
	return 0;
}
