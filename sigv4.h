/*
 * sigv4.h - AWS Signature Version 4 (header signing) over BearSSL's SHA-256 and HMAC.
 *
 * No allocation: the caller provides every output buffer. The signer caches the derived signing key
 * for its date; a request on another date derives it again. Region, service and credentials are
 * borrowed pointers that must outlive the signer.
 *
 * Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
 */
#ifndef TELKIN_SIGV4_H
#define TELKIN_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SIGV4_AMZ_DATE_LEN 16  /* "20150830T123600Z" */
#define SIGV4_HASH_HEX_LEN 64  /* hex SHA-256 */

struct sigv4_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/*
 * A request to sign. `headers` is every header to sign, exactly as it will be sent, including Host
 * and X-Amz-Date (and X-Amz-Security-Token when a session token is used: it is signed, as AWS
 * requires). Names are compared case-insensitively; duplicates are joined with ',' in the order
 * given; values are trimmed and inner runs of white space folded, as the specification says.
 */
struct sigv4_request {
	const char *method;       /* "POST" */
	const char *path;         /* the request path as sent, e.g. "/" (no query) */
	const char *query;        /* the query string as sent, without '?'; NULL or "" for none */
	const struct sigv4_header *headers;
	size_t n_headers;
	const char *payload_hash; /* SIGV4_HASH_HEX_LEN lowercase hex chars: SHA-256 of the body */
	int normalize_path;       /* 1 for every service but S3: remove "." and ".." segments, "//" */
};

struct sigv4_signer {
	const char *region;
	const char *service;
	const char *access_key_id;
	const char *secret_access_key;
	char key_date[9];         /* YYYYMMDD the cached key was derived for; "" when none */
	uint8_t signing_key[32];
};

/* Set up a signer (no key is derived until the first signature). */
void sigv4_init(struct sigv4_signer *s, const char *region, const char *service,
                const char *access_key_id, const char *secret_access_key);

/* Replace the credentials (after a refresh); drops the cached key. */
void sigv4_set_credentials(struct sigv4_signer *s, const char *access_key_id,
                           const char *secret_access_key);

/* Format t (Unix seconds, UTC) as an X-Amz-Date value: out gets 16 chars and a NUL. */
void sigv4_amz_date(time_t t, char out[SIGV4_AMZ_DATE_LEN + 1]);

/* Lowercase hex SHA-256 of body[0..len): out gets 64 chars and a NUL. */
void sigv4_payload_hash(const void *body, size_t len, char out[SIGV4_HASH_HEX_LEN + 1]);

/*
 * The canonical request (Task 1 of the specification) into out. Returns its length (out is
 * NUL-terminated), or -1 when it does not fit or the request is malformed.
 */
long sigv4_canonical_request(const struct sigv4_request *r, char *out, size_t cap);

/*
 * The string to sign (Task 2) for a canonical request and an X-Amz-Date value. Returns its length,
 * or -1 when it does not fit.
 */
long sigv4_string_to_sign(const struct sigv4_signer *s, const char *amz_date,
                          const char *canonical, size_t canonical_len, char *out, size_t cap);

/*
 * The whole signature: the value of the Authorization header,
 * "AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
 * SignedHeaders=<names>, Signature=<hex>", into out. amz_date must equal the X-Amz-Date header
 * value. Returns its length, or -1 on error (too small a buffer, malformed request).
 * If signature_hex is not NULL it receives the 64 hex chars of the signature and a NUL.
 */
long sigv4_authorization(struct sigv4_signer *s, const struct sigv4_request *r,
                         const char *amz_date, char *out, size_t cap,
                         char signature_hex[SIGV4_HASH_HEX_LEN + 1]);

#endif
