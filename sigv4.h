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

/*
 * Limits. A request or signer beyond one of them is refused (-1), never truncated. The canonical
 * request itself has no size limit in sigv4_authorization: it is hashed as it is produced.
 */
#define SIGV4_MAX_HEADERS       32  /* signed headers; a PutRecords request signs 5 */
#define SIGV4_MAX_QUERY_PARAMS  32  /* query parameters; PutRecords has none */
#define SIGV4_MAX_PATH_SEGMENTS 64  /* segments left after normalization; PutRecords has 0 */
#define SIGV4_MAX_SCOPE_LEN     64  /* region or service name ("ap-southeast-2", "kinesis") */
#define SIGV4_MAX_KEY_ID_LEN    128 /* IAM AccessKey.AccessKeyId: 16 to 128 characters */
#define SIGV4_MAX_SECRET_LEN    128 /* secret access keys are 40 characters; room to spare */

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
 * given; values are trimmed and inner runs of white space (line folds included) become one space,
 * as the specification says.
 */
struct sigv4_request {
	const char *method;       /* "POST" */
	const char *path;         /* the request path as sent, e.g. "/" (no query); NULL or "" is "/" */
	const char *query;        /* the query string as sent, without '?'; NULL or "" for none */
	const struct sigv4_header *headers;
	size_t n_headers;
	const char *payload_hash; /* SIGV4_HASH_HEX_LEN lowercase hex chars: SHA-256 of the body */
	int normalize_path;       /* 1 for every service but S3: remove "." and ".." segments, "//" */
};

/*
 * The signer: declared by the caller, filled by sigv4_init. The derived signing key is a secret
 * (it signs for the whole day): it is kept only here and wiped by sigv4_set_credentials.
 */
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

/*
 * Format t (Unix seconds, UTC) as an X-Amz-Date value: out gets 16 chars and a NUL. Times before
 * 1970 or after 9999 are clamped to the nearest one four year digits can show.
 */
void sigv4_amz_date(time_t t, char out[SIGV4_AMZ_DATE_LEN + 1]);

/* Lowercase hex SHA-256 of body[0..len): out gets 64 chars and a NUL. */
void sigv4_payload_hash(const void *body, size_t len, char out[SIGV4_HASH_HEX_LEN + 1]);

/*
 * SHA-256 for request bodies (the payload hash, megabytes per request): with the CPU's SHA
 * instructions where it has them -- the x86 SHA extensions, the ARMv8 SHA-2 instructions
 * (Graviton 2 and later) -- else portable C. The best the CPU can run is chosen at the first use;
 * every engine gives the same digest. The context is the caller's; nothing is allocated.
 */
enum sigv4_sha256_engine {
	SIGV4_SHA256_PORTABLE,
	SIGV4_SHA256_X86_SHA,     /* SHA-NI with SSSE3 and SSE4.1 */
	SIGV4_SHA256_ARMV8_SHA2,  /* the ARMv8 Cryptographic Extension's SHA-256 */
	SIGV4_SHA256_ENGINES
};

struct sigv4_sha256 {
	uint32_t state[8];
	uint64_t bytes;           /* hashed so far */
	unsigned char block[64];  /* a partial block */
};

void sigv4_sha256_init(struct sigv4_sha256 *h);
void sigv4_sha256_update(struct sigv4_sha256 *h, const void *data, size_t len);
/* The digest; h may be initialized again afterwards. */
void sigv4_sha256_out(struct sigv4_sha256 *h, uint8_t out[32]);
/* The same as lowercase hex (a SigV4 payload hash): out gets 64 chars and a NUL. */
void sigv4_sha256_out_hex(struct sigv4_sha256 *h, char out[SIGV4_HASH_HEX_LEN + 1]);

/* Use this engine from now on: 0, or -1 when this CPU (or this build) cannot run it. */
int sigv4_sha256_select(enum sigv4_sha256_engine e);
/* The engine in use (chosen now if none was yet), and its name for logs and benchmarks. */
enum sigv4_sha256_engine sigv4_sha256_engine(void);
const char *sigv4_sha256_engine_name(enum sigv4_sha256_engine e);

/*
 * The canonical request (Task 1 of the specification) into out. Returns its length (out is
 * NUL-terminated), or -1 when it does not fit or the request is malformed.
 *
 * The path is URI-encoded as given, so an already-encoded path is encoded again ("%20" signs as
 * "%2520"), as every service but S3 expects; with normalize_path, empty and "." segments are
 * dropped and ".." removes the segment before it (a trailing '/' is kept). Query parameters are
 * percent-decoded, encoded again with only A-Z a-z 0-9 - . _ ~ left as they are, and sorted by
 * encoded name then value; "flag" signs as "flag=".
 *
 * Malformed: a method or header name that is not an RFC 9110 token, a path not starting with '/',
 * a payload_hash that is not 64 lowercase hex digits, more than SIGV4_MAX_HEADERS headers,
 * SIGV4_MAX_QUERY_PARAMS parameters or SIGV4_MAX_PATH_SEGMENTS normalized segments.
 */
long sigv4_canonical_request(const struct sigv4_request *r, char *out, size_t cap);

/*
 * The string to sign (Task 2) for a canonical request and an X-Amz-Date value. Returns its length
 * (out is NUL-terminated), or -1 when it does not fit, amz_date is not "YYYYMMDDTHHMMSSZ", or the
 * region or service is empty, longer than SIGV4_MAX_SCOPE_LEN or holds other than A-Z a-z 0-9 -._~.
 */
long sigv4_string_to_sign(const struct sigv4_signer *s, const char *amz_date,
                          const char *canonical, size_t canonical_len, char *out, size_t cap);

/*
 * The whole signature: the value of the Authorization header,
 * "AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
 * SignedHeaders=<names>, Signature=<hex>", into out (NUL-terminated). amz_date must equal the
 * X-Amz-Date header value (checked when that header is signed). The canonical request is hashed as
 * it is produced, so its size is not limited. The signing key is derived on the first call for a
 * date and reused until the date changes.
 * Returns its length, or -1 on error: too small a buffer, a request sigv4_canonical_request
 * refuses, an X-Amz-Date header that differs from amz_date, an empty or over-long credential
 * (SIGV4_MAX_KEY_ID_LEN, SIGV4_MAX_SECRET_LEN; the key id must not hold '/', ',' or white space),
 * or a bad amz_date, region or service (as for sigv4_string_to_sign).
 * If signature_hex is not NULL it receives the 64 hex chars of the signature and a NUL (on
 * success only).
 */
long sigv4_authorization(struct sigv4_signer *s, const struct sigv4_request *r,
                         const char *amz_date, char *out, size_t cap,
                         char signature_hex[SIGV4_HASH_HEX_LEN + 1]);

#endif
