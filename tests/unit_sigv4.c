/*
 * Unit tests for sigv4 (included by telkin_test.c).
 *
 * Known answers: AWS's SigV4 test suite (header signing; $TELKIN_SHARED/sigv4-test-suite/v4/) and
 * four Kinesis PutRecords vectors ($TELKIN_SHARED/sigv4-kinesis-vectors.json). Test code reads the
 * files with stdio and malloc, and their JSON with the repo's json_min; the signer itself allocates
 * nothing.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bearssl_hmac.h"
/* the Makefile passes no -I. for the tests */
#include "../json_min.h"
#include "../sigv4.h"

#define SIGV4T_EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SIGV4T_OUT_CAP 4096

/* ------------------------------------------------------------------------------------------- */
/* Files and a minimal JSON reader (enough for context.json and the Kinesis vectors). */

static const char *sigv4t_shared(void)
{
	const char *s = getenv("TELKIN_SHARED");

	return (s != NULL && *s != '\0') ? s : "../shared";
}

/* The whole file, NUL-terminated, or NULL when it cannot be read. */
static char *sigv4t_read(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n) {
			buf[n] = '\0';
			if (len_out != NULL)
				*len_out = (size_t)n;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static char *sigv4t_read_case_file(const char *name, const char *file, size_t *len)
{
	char path[1024];

	snprintf(path, sizeof path, "%s/sigv4-test-suite/v4/%s/%s", sigv4t_shared(), name, file);
	return sigv4t_read(path, len);
}

#define SIGV4T_MAX_TOKENS 512 /* the Kinesis vectors need about 140, a context.json 30 */
#define SIGV4T_MAX_DEPTH 8

/* Tokenize a whole file with the repo's tokenizer; the root is token 0. */
static void sigv4t_json_parse(const char *js, size_t len, struct json_token *toks)
{
	size_t err_at = 0;
	int n = json_parse(js, len, toks, SIGV4T_MAX_TOKENS, SIGV4T_MAX_DEPTH, 0, &err_at);

	if (n < 1)
		fail_msg("json_parse: %s at byte %zu", json_strerror(n), err_at);
	assert_int_equal(toks[0].type, JSON_OBJECT);
}

/* A string member of object obj into out; -1 when missing, not a string, or too long. */
static long sigv4t_json_get(const char *js, const struct json_token *toks, int obj,
                            const char *key, char *out, size_t cap)
{
	int i = json_object_get(js, toks, obj, key);

	return i < 0 ? -1 : json_string_copy(js, &toks[i], out, cap);
}

static int sigv4t_json_true(const char *js, const struct json_token *toks, int obj,
                            const char *key)
{
	int i = json_object_get(js, toks, obj, key);

	return i >= 0 && toks[i].type == JSON_TRUE;
}

/* ------------------------------------------------------------------------------------------- */
/* A request to sign, with the storage its spans point into. */

struct sigv4t_req {
	char *text;  /* request.txt, cut up in place */
	char *ext;   /* malloc'd storage for values that are not in the text */
	struct sigv4_header headers[SIGV4_MAX_HEADERS];
	size_t n_headers;
	struct sigv4_request r;
	char payload_hash[SIGV4_HASH_HEX_LEN + 1];
	char amz_date[SIGV4_AMZ_DATE_LEN + 1];
	/* context */
	char key_id[SIGV4_MAX_KEY_ID_LEN + 1];
	char secret[SIGV4_MAX_SECRET_LEN + 1];
	char region[SIGV4_MAX_SCOPE_LEN + 1];
	char service[SIGV4_MAX_SCOPE_LEN + 1];
};

static void sigv4t_add_header(struct sigv4t_req *q, const char *name, const char *value,
                              size_t value_len)
{
	assert_true(q->n_headers < SIGV4_MAX_HEADERS);
	q->headers[q->n_headers].name = name;
	q->headers[q->n_headers].name_len = strlen(name);
	q->headers[q->n_headers].value = value;
	q->headers[q->n_headers].value_len = value_len;
	q->n_headers++;
}

/*
 * Parse request.txt: "METHOD target HTTP/1.1", "Name:value" lines (a line starting with white
 * space continues the previous value, line break included: the signer must fold it), an empty
 * line, the body.
 */
static void sigv4t_parse_request(struct sigv4t_req *q, char *text, size_t len)
{
	char *line = text, *end = text + len, *nl, *sp, *target_end, *qm;
	const char *body = end;

	q->text = text;
	nl = strchr(line, '\n');
	assert_non_null(nl);
	*nl = '\0';
	if (nl > line && nl[-1] == '\r')
		nl[-1] = '\0';
	sp = strchr(line, ' ');
	target_end = strrchr(line, ' ');
	assert_non_null(sp);
	assert_true(target_end > sp);
	*sp = '\0';
	*target_end = '\0';
	q->r.method = line;
	q->r.path = sp + 1;
	qm = strchr(sp + 1, '?');
	if (qm != NULL) {
		*qm = '\0';
		q->r.query = qm + 1;
	}

	for (line = nl + 1; line < end; line = nl + 1) {
		size_t n;
		char *colon;

		nl = memchr(line, '\n', (size_t)(end - line));
		if (nl == NULL)
			nl = end;
		n = (size_t)(nl - line);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0) {
			body = nl < end ? nl + 1 : end;
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			struct sigv4_header *prev;
			assert_true(q->n_headers > 0);
			prev = &q->headers[q->n_headers - 1];
			prev->value_len = (size_t)(line + n - prev->value);
			continue;
		}
		colon = memchr(line, ':', n);
		assert_non_null(colon);
		*colon = '\0';
		sigv4t_add_header(q, line, colon + 1, (size_t)(line + n - (colon + 1)));
	}
	sigv4_payload_hash(body, (size_t)(end - body), q->payload_hash);
}

/* Load a suite case: request.txt plus what context.json says to add before signing. */
static void sigv4t_load_case(struct sigv4t_req *q, const char *name)
{
	size_t len, ctx_len;
	char *text = sigv4t_read_case_file(name, "request.txt", &len);
	char *ctx = sigv4t_read_case_file(name, "context.json", &ctx_len);
	struct json_token *t = calloc(SIGV4T_MAX_TOKENS, sizeof *t);
	char ts[32];
	long token_len;
	int cred;

	assert_non_null(text);
	assert_non_null(ctx);
	assert_non_null(t);
	sigv4t_json_parse(ctx, ctx_len, t);
	memset(q, 0, sizeof *q);
	sigv4t_parse_request(q, text, len);

	cred = json_object_get(ctx, t, 0, "credentials");
	assert_true(sigv4t_json_get(ctx, t, cred, "access_key_id", q->key_id, sizeof q->key_id) > 0);
	assert_true(sigv4t_json_get(ctx, t, cred, "secret_access_key", q->secret,
	                            sizeof q->secret) > 0);
	assert_true(sigv4t_json_get(ctx, t, 0, "region", q->region, sizeof q->region) > 0);
	assert_true(sigv4t_json_get(ctx, t, 0, "service", q->service, sizeof q->service) > 0);
	/* "2015-08-30T12:36:00Z" -> "20150830T123600Z" */
	assert_int_equal(sigv4t_json_get(ctx, t, 0, "timestamp", ts, sizeof ts), 20);
	snprintf(q->amz_date, sizeof q->amz_date, "%.4s%.2s%.2sT%.2s%.2s%.2sZ", ts, ts + 5, ts + 8,
	         ts + 11, ts + 14, ts + 17);
	q->r.normalize_path = sigv4t_json_true(ctx, t, 0, "normalize");

	q->ext = calloc(1, 4096);
	assert_non_null(q->ext);
	sigv4t_add_header(q, "X-Amz-Date", q->amz_date, SIGV4_AMZ_DATE_LEN);
	if (sigv4t_json_true(ctx, t, 0, "sign_body"))
		sigv4t_add_header(q, "X-Amz-Content-Sha256", q->payload_hash, SIGV4_HASH_HEX_LEN);
	token_len = sigv4t_json_get(ctx, t, cred, "token", q->ext, 4096);
	/* omit_session_token: the token is sent unsigned, so it is not a header to sign */
	if (token_len > 0 && !sigv4t_json_true(ctx, t, 0, "omit_session_token"))
		sigv4t_add_header(q, "X-Amz-Security-Token", q->ext, (size_t)token_len);

	q->r.headers = q->headers;
	q->r.n_headers = q->n_headers;
	q->r.payload_hash = q->payload_hash;
	free(t);
	free(ctx);
}

static void sigv4t_free(struct sigv4t_req *q)
{
	free(q->text);
	free(q->ext);
}

/* ------------------------------------------------------------------------------------------- */
/* AWS SigV4 test suite, header signing. */

/* Every case under v4/ concerns header signing (each has header-*.txt) and none is skipped. */
static const char *const sigv4t_suite_skipped[] = {
	NULL, /* "case-name", reason */
};

#define SIGV4T_SUITE_CASE(c) { "test_sigv4_suite_" c, sigv4t_run_suite_case, NULL, NULL, c }

static void sigv4t_assert_file_equals(const char *name, const char *file, const char *got,
                                      size_t got_len)
{
	size_t len;
	char *want = sigv4t_read_case_file(name, file, &len);

	assert_non_null(want);
	if (len != got_len || memcmp(want, got, len) != 0)
		print_error("%s/%s:\nwant:\n%s\ngot:\n%.*s\n", name, file, want, (int)got_len, got);
	assert_int_equal(len, got_len);
	assert_memory_equal(want, got, len);
	free(want);
}

static void sigv4t_run_suite_case(void **state)
{
	const char *name = *state;
	struct sigv4t_req q;
	struct sigv4_signer s;
	char canonical[SIGV4T_OUT_CAP], sts[SIGV4T_OUT_CAP], auth[SIGV4T_OUT_CAP];
	char sig[SIGV4_HASH_HEX_LEN + 1], *signed_req, *line;
	long n_canon, n_sts, n_auth;

	sigv4t_load_case(&q, name);
	sigv4_init(&s, q.region, q.service, q.key_id, q.secret);

	n_canon = sigv4_canonical_request(&q.r, canonical, sizeof canonical);
	assert_true(n_canon > 0);
	sigv4t_assert_file_equals(name, "header-canonical-request.txt", canonical, (size_t)n_canon);

	n_sts = sigv4_string_to_sign(&s, q.amz_date, canonical, (size_t)n_canon, sts, sizeof sts);
	assert_true(n_sts > 0);
	sigv4t_assert_file_equals(name, "header-string-to-sign.txt", sts, (size_t)n_sts);

	n_auth = sigv4_authorization(&s, &q.r, q.amz_date, auth, sizeof auth, sig);
	assert_true(n_auth > 0);
	sigv4t_assert_file_equals(name, "header-signature.txt", sig, SIGV4_HASH_HEX_LEN);

	/* and the whole header, as the suite's signed request carries it */
	signed_req = sigv4t_read_case_file(name, "header-signed-request.txt", NULL);
	assert_non_null(signed_req);
	line = strstr(signed_req, "\nAuthorization:");
	assert_non_null(line);
	line += strlen("\nAuthorization:");
	line[strcspn(line, "\r\n")] = '\0';
	assert_string_equal(auth, line);
	free(signed_req);
	sigv4t_free(&q);
}

static const char *const sigv4t_suite_cases[] = {
	"get-header-key-duplicate", "get-header-value-multiline", "get-header-value-order",
	"get-header-value-trim", "get-relative-normalized", "get-relative-relative-normalized",
	"get-relative-relative-unnormalized", "get-relative-unnormalized",
	"get-slash-dot-slash-normalized", "get-slash-dot-slash-unnormalized", "get-slash-normalized",
	"get-slash-pointless-dot-normalized", "get-slash-pointless-dot-unnormalized",
	"get-slash-unnormalized", "get-slashes-normalized", "get-slashes-unnormalized",
	"get-space-normalized", "get-space-unnormalized", "get-unreserved", "get-utf8",
	"get-vanilla", "get-vanilla-empty-query-key", "get-vanilla-query",
	"get-vanilla-query-order-encoded", "get-vanilla-query-order-key-case",
	"get-vanilla-query-unreserved", "get-vanilla-utf8-query", "get-vanilla-with-session-token",
	"post-header-key-case", "post-header-key-sort", "post-header-value-case",
	"post-sts-header-after", "post-sts-header-before", "post-vanilla",
	"post-vanilla-empty-query-value", "post-vanilla-query", "post-x-www-form-urlencoded",
	"post-x-www-form-urlencoded-parameters",
};

static int sigv4t_listed(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] != NULL && strcmp(list[i], name) == 0)
			return 1;
	return 0;
}

/* A case added to the suite must be run (or skipped with a reason), never silently missed. */
static void test_sigv4_suite_every_case_is_run_or_skipped(void **state)
{
	char path[1024];
	DIR *d;
	struct dirent *e;
	size_t seen = 0;

	(void)state;
	snprintf(path, sizeof path, "%s/sigv4-test-suite/v4", sigv4t_shared());
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		seen++;
		if (!sigv4t_listed(e->d_name, sigv4t_suite_cases,
		                   sizeof sigv4t_suite_cases / sizeof *sigv4t_suite_cases) &&
		    !sigv4t_listed(e->d_name, sigv4t_suite_skipped,
		                   sizeof sigv4t_suite_skipped / sizeof *sigv4t_suite_skipped))
			fail_msg("suite case %s is neither run nor skipped", e->d_name);
	}
	closedir(d);
	assert_int_equal(seen, sizeof sigv4t_suite_cases / sizeof *sigv4t_suite_cases);
}

/* ------------------------------------------------------------------------------------------- */
/* Kinesis PutRecords vectors. */

struct sigv4t_kinesis {
	char *file;
	char method[16], host[128], path[64], region[64], service[64], amz_date[32];
	char key_id[64], secret[128], token[1024], expected[512];
	char *body;
	long body_len;
	int has_token;
	char header_names[8][64], header_values[8][256];
	size_t n_extra;
	struct sigv4_header headers[SIGV4_MAX_HEADERS];
	struct sigv4_request r;
	char payload_hash[SIGV4_HASH_HEX_LEN + 1];
};

static void sigv4t_load_kinesis(struct sigv4t_kinesis *v, const char *name)
{
	char path[1024];
	struct json_token *t = calloc(SIGV4T_MAX_TOKENS, sizeof *t);
	const char *js;
	size_t len, n = 0;
	int vectors, o = -1, i, k;
	uint32_t e;

	memset(v, 0, sizeof *v);
	assert_non_null(t);
	snprintf(path, sizeof path, "%s/sigv4-kinesis-vectors.json", sigv4t_shared());
	v->file = sigv4t_read(path, &len);
	assert_non_null(v->file);
	js = v->file;
	sigv4t_json_parse(js, len, t);

	vectors = json_object_get(js, t, 0, "vectors");
	assert_true(vectors > 0);
	assert_int_equal(t[vectors].type, JSON_ARRAY);
	e = (uint32_t)vectors + 1;
	for (uint32_t m = 0; m < t[vectors].size; m++, e = t[e].next) {
		i = json_object_get(js, t, (int)e, "name");
		if (i >= 0 && json_string_eq(js, &t[i], name))
			o = (int)e;
	}
	if (o < 0)
		fail_msg("no vector named %s", name);

	assert_true(sigv4t_json_get(js, t, o, "method", v->method, sizeof v->method) > 0);
	assert_true(sigv4t_json_get(js, t, o, "host", v->host, sizeof v->host) > 0);
	assert_true(sigv4t_json_get(js, t, o, "path", v->path, sizeof v->path) > 0);
	assert_true(sigv4t_json_get(js, t, o, "region", v->region, sizeof v->region) > 0);
	assert_true(sigv4t_json_get(js, t, o, "service", v->service, sizeof v->service) > 0);
	assert_true(sigv4t_json_get(js, t, o, "amz_date", v->amz_date, sizeof v->amz_date) > 0);
	assert_true(sigv4t_json_get(js, t, o, "access_key_id", v->key_id, sizeof v->key_id) > 0);
	assert_true(sigv4t_json_get(js, t, o, "secret_access_key", v->secret, sizeof v->secret) > 0);
	assert_true(sigv4t_json_get(js, t, o, "expected_authorization", v->expected,
	                            sizeof v->expected) > 0);
	i = json_object_get(js, t, o, "session_token");
	assert_true(i > 0);
	v->has_token = t[i].type != JSON_NULL;
	if (v->has_token)
		assert_true(json_string_copy(js, &t[i], v->token, sizeof v->token) > 0);

	i = json_object_get(js, t, o, "body");
	assert_true(i > 0);
	v->body = malloc(t[i].end - t[i].start + 1);
	assert_non_null(v->body);
	v->body_len = json_string_copy(js, &t[i], v->body, t[i].end - t[i].start + 1);
	assert_true(v->body_len > 0);
	sigv4_payload_hash(v->body, (size_t)v->body_len, v->payload_hash);

	/* "headers": { "Name": "value", ... } plus Host (and the token when there is one) */
	i = json_object_get(js, t, o, "headers");
	assert_true(i > 0);
	assert_int_equal(t[i].type, JSON_OBJECT);
	assert_true(t[i].size <= 8);
	k = i + 1;
	for (uint32_t m = 0; m < t[i].size; m++, k = (int)t[k + 1].next) {
		assert_true(json_string_copy(js, &t[k], v->header_names[n], 64) > 0);
		assert_true(json_string_copy(js, &t[k + 1], v->header_values[n], 256) >= 0);
		v->headers[n] = (struct sigv4_header){ v->header_names[n], strlen(v->header_names[n]),
			                               v->header_values[n], strlen(v->header_values[n]) };
		n++;
	}
	v->headers[n++] = (struct sigv4_header){ "Host", 4, v->host, strlen(v->host) };
	if (v->has_token)
		v->headers[n++] = (struct sigv4_header){ "X-Amz-Security-Token", 20, v->token,
			                                 strlen(v->token) };
	v->r = (struct sigv4_request){ v->method, v->path, NULL, v->headers, n, v->payload_hash, 1 };
	free(t);
}

static void sigv4t_free_kinesis(struct sigv4t_kinesis *v)
{
	free(v->file);
	free(v->body);
}

#define SIGV4T_KINESIS_CASE(c) { "test_sigv4_kinesis_" c, sigv4t_run_kinesis_vector, NULL, NULL, c }

static void sigv4t_run_kinesis_vector(void **state)
{
	struct sigv4t_kinesis v;
	struct sigv4_signer s;
	char auth[SIGV4T_OUT_CAP];
	long n;

	sigv4t_load_kinesis(&v, *state);
	sigv4_init(&s, v.region, v.service, v.key_id, v.secret);
	n = sigv4_authorization(&s, &v.r, v.amz_date, auth, sizeof auth, NULL);
	assert_int_equal(n, (long)strlen(v.expected));
	assert_string_equal(auth, v.expected);
	sigv4t_free_kinesis(&v);
}

/* ------------------------------------------------------------------------------------------- */
/* Behaviour. */

/* A small PutRecords-shaped request: the fixture for the behaviour tests below. */
struct sigv4t_small {
	struct sigv4_header h[4];
	struct sigv4_request r;
	char hash[SIGV4_HASH_HEX_LEN + 1];
	struct sigv4_signer s;
};

static void sigv4t_small_init(struct sigv4t_small *t, const char *amz_date)
{
	static const char body[] = "{\"StreamName\":\"s1\",\"Records\":[]}";

	sigv4_payload_hash(body, sizeof body - 1, t->hash);
	t->h[0] = (struct sigv4_header){ "Host", 4, "kinesis.us-east-1.amazonaws.com", 31 };
	t->h[1] = (struct sigv4_header){ "Content-Type", 12, "application/x-amz-json-1.1", 26 };
	t->h[2] = (struct sigv4_header){ "X-Amz-Target", 12, "Kinesis_20131202.PutRecords", 27 };
	t->h[3] = (struct sigv4_header){ "X-Amz-Date", 10, amz_date, SIGV4_AMZ_DATE_LEN };
	t->r = (struct sigv4_request){ "POST", "/", NULL, t->h, 4, t->hash, 1 };
	sigv4_init(&t->s, "us-east-1", "kinesis", "AKIDEXAMPLE",
	           "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
}

/* The derivation written out with BearSSL directly, to check the signer's cached key. */
static void sigv4t_hmac(const void *key, size_t key_len, const char *msg, uint8_t out[32])
{
	br_hmac_key_context kc;
	br_hmac_context hc;

	br_hmac_key_init(&kc, &br_sha256_vtable, key, key_len);
	br_hmac_init(&hc, &kc, 0);
	br_hmac_update(&hc, msg, strlen(msg));
	br_hmac_out(&hc, out);
}

static void sigv4t_expected_key(const char *secret, const char *date, const char *region,
                                const char *service, uint8_t out[32])
{
	char k_secret[256];

	snprintf(k_secret, sizeof k_secret, "AWS4%s", secret);
	sigv4t_hmac(k_secret, strlen(k_secret), date, out);
	sigv4t_hmac(out, 32, region, out);
	sigv4t_hmac(out, 32, service, out);
	sigv4t_hmac(out, 32, "aws4_request", out);
}

static void test_sigv4_payload_hash_of_empty_body_is_e3b0c442(void **state)
{
	char hash[SIGV4_HASH_HEX_LEN + 1];

	(void)state;
	sigv4_payload_hash("", 0, hash);
	assert_string_equal(hash, SIGV4T_EMPTY_HASH);
}

static void test_sigv4_amz_date_formats_unix_seconds_as_utc(void **state)
{
	char d[SIGV4_AMZ_DATE_LEN + 1];

	(void)state;
	sigv4_amz_date((time_t)1440938160, d);
	assert_string_equal(d, "20150830T123600Z");
	sigv4_amz_date((time_t)1709251199, d); /* leap day, last second */
	assert_string_equal(d, "20240229T235959Z");
	sigv4_amz_date((time_t)0, d);
	assert_string_equal(d, "19700101T000000Z");
}

static void test_sigv4_signing_key_is_derived_once_per_date(void **state)
{
	struct sigv4t_small t;
	char a1[SIGV4T_OUT_CAP], a2[SIGV4T_OUT_CAP];
	uint8_t want[32];

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	assert_string_equal(t.s.key_date, "");
	assert_true(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a1, sizeof a1, NULL) > 0);
	assert_string_equal(t.s.key_date, "20150830");
	sigv4t_expected_key(t.s.secret_access_key, "20150830", "us-east-1", "kinesis", want);
	assert_memory_equal(t.s.signing_key, want, 32);

	/* same date: the cached key is used as is (a tampered one shows in the signature) */
	t.s.signing_key[0] ^= 1;
	assert_true(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a2, sizeof a2, NULL) > 0);
	assert_string_not_equal(a1, a2);
}

static void test_sigv4_signing_key_is_recomputed_when_the_date_changes(void **state)
{
	struct sigv4t_small t, fresh;
	char a1[SIGV4T_OUT_CAP], a2[SIGV4T_OUT_CAP], want[SIGV4T_OUT_CAP];
	uint8_t key[32];

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	assert_true(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a1, sizeof a1, NULL) > 0);

	/* the same signer, a day later */
	t.h[3].value = "20150831T000001Z";
	assert_true(sigv4_authorization(&t.s, &t.r, "20150831T000001Z", a2, sizeof a2, NULL) > 0);
	assert_string_equal(t.s.key_date, "20150831");
	sigv4t_expected_key(t.s.secret_access_key, "20150831", "us-east-1", "kinesis", key);
	assert_memory_equal(t.s.signing_key, key, 32);

	/* matches a signer that never saw the first date */
	sigv4t_small_init(&fresh, "20150831T000001Z");
	assert_true(sigv4_authorization(&fresh.s, &fresh.r, "20150831T000001Z", want, sizeof want,
	                                NULL) > 0);
	assert_string_equal(a2, want);
	assert_string_not_equal(a1, a2);
}

static void test_sigv4_set_credentials_drops_the_cached_key(void **state)
{
	struct sigv4t_small t;
	char a[SIGV4T_OUT_CAP];

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	assert_true(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a, sizeof a, NULL) > 0);
	sigv4_set_credentials(&t.s, "AKIDOTHER", "other-secret");
	assert_string_equal(t.s.key_date, "");
	assert_true(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a, sizeof a, NULL) > 0);
	assert_non_null(strstr(a, "Credential=AKIDOTHER/20150830/us-east-1/kinesis/aws4_request"));
}

static void test_sigv4_authorization_fails_when_the_buffer_is_too_small(void **state)
{
	struct sigv4t_small t;
	char a[SIGV4T_OUT_CAP], sig[SIGV4_HASH_HEX_LEN + 1] = "untouched";
	long n;

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	n = sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a, sizeof a, NULL);
	assert_true(n > 0);
	assert_int_equal(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a, (size_t)n, sig), -1);
	assert_string_equal(sig, "untouched");
	assert_int_equal(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a, (size_t)n + 1, sig),
	                 n);
	assert_int_equal(sigv4_authorization(&t.s, &t.r, "20150830T123600Z", a, 0, NULL), -1);
}

static void test_sigv4_canonical_request_fails_when_the_buffer_is_too_small(void **state)
{
	struct sigv4t_small t;
	char c[SIGV4T_OUT_CAP];
	long n;

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	n = sigv4_canonical_request(&t.r, c, sizeof c);
	assert_true(n > 0);
	assert_int_equal(sigv4_canonical_request(&t.r, c, (size_t)n), -1);
	assert_int_equal(sigv4_canonical_request(&t.r, c, 1), -1);
	assert_int_equal(sigv4_canonical_request(&t.r, c, (size_t)n + 1), n);
}

static void test_sigv4_string_to_sign_fails_when_the_buffer_is_too_small(void **state)
{
	struct sigv4t_small t;
	char c[SIGV4T_OUT_CAP], sts[SIGV4T_OUT_CAP];
	long n_c, n;

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	n_c = sigv4_canonical_request(&t.r, c, sizeof c);
	n = sigv4_string_to_sign(&t.s, "20150830T123600Z", c, (size_t)n_c, sts, sizeof sts);
	assert_true(n > 0);
	assert_int_equal(sigv4_string_to_sign(&t.s, "20150830T123600Z", c, (size_t)n_c, sts,
	                                      (size_t)n),
	                 -1);
}

static void test_sigv4_more_than_max_headers_is_refused(void **state)
{
	struct sigv4_header h[SIGV4_MAX_HEADERS + 1];
	char names[SIGV4_MAX_HEADERS + 1][16], out[SIGV4T_OUT_CAP];
	struct sigv4_signer s;
	struct sigv4_request r = { "POST", "/", NULL, h, SIGV4_MAX_HEADERS, SIGV4T_EMPTY_HASH, 1 };

	(void)state;
	for (size_t i = 0; i <= SIGV4_MAX_HEADERS; i++) {
		int n = snprintf(names[i], sizeof names[i], "x-h%zu", i);
		h[i] = (struct sigv4_header){ names[i], (size_t)n, "v", 1 };
	}
	sigv4_init(&s, "us-east-1", "kinesis", "AKIDEXAMPLE", "secret");
	assert_true(sigv4_canonical_request(&r, out, sizeof out) > 0);
	assert_true(sigv4_authorization(&s, &r, "20150830T123600Z", out, sizeof out, NULL) > 0);
	r.n_headers = SIGV4_MAX_HEADERS + 1;
	assert_int_equal(sigv4_canonical_request(&r, out, sizeof out), -1);
	assert_int_equal(sigv4_authorization(&s, &r, "20150830T123600Z", out, sizeof out, NULL), -1);
}

static void test_sigv4_malformed_requests_are_refused(void **state)
{
	struct sigv4t_small t;
	char out[SIGV4T_OUT_CAP];
	struct sigv4_header bad = { "Bad Name", 8, "v", 1 };

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	t.r.payload_hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
	assert_int_equal(sigv4_canonical_request(&t.r, out, sizeof out), -1);
	t.r.payload_hash = "e3b0";
	assert_int_equal(sigv4_canonical_request(&t.r, out, sizeof out), -1);
	t.r.payload_hash = t.hash;
	t.r.path = "relative";
	assert_int_equal(sigv4_canonical_request(&t.r, out, sizeof out), -1);
	t.r.path = "/";
	t.h[0] = bad;
	assert_int_equal(sigv4_canonical_request(&t.r, out, sizeof out), -1);
}

static void test_sigv4_amz_date_must_match_the_signed_header(void **state)
{
	struct sigv4t_small t;
	char out[SIGV4T_OUT_CAP];

	(void)state;
	sigv4t_small_init(&t, "20150830T123600Z");
	assert_int_equal(sigv4_authorization(&t.s, &t.r, "20150830T123601Z", out, sizeof out, NULL),
	                 -1);
	assert_int_equal(sigv4_authorization(&t.s, &t.r, "2015-08-30", out, sizeof out, NULL), -1);
}

static void test_sigv4_path_is_normalized_and_encoded_again(void **state)
{
	char out[SIGV4T_OUT_CAP];
	struct sigv4_request r = { "GET", "/a/./b//../c%20d/", NULL, NULL, 0, SIGV4T_EMPTY_HASH, 1 };

	(void)state;
	assert_true(sigv4_canonical_request(&r, out, sizeof out) > 0);
	assert_string_equal(out, "GET\n/a/c%2520d/\n\n\n\n" SIGV4T_EMPTY_HASH);
	r.normalize_path = 0;
	assert_true(sigv4_canonical_request(&r, out, sizeof out) > 0);
	assert_string_equal(out, "GET\n/a/./b//../c%2520d/\n\n\n\n" SIGV4T_EMPTY_HASH);
}

static void test_sigv4_query_is_sorted_by_key_then_value(void **state)
{
	char out[SIGV4T_OUT_CAP];
	struct sigv4_request r = { "GET", "/", "b=2&a=z&a=y&&flag&sp=%20x+", NULL, 0,
		                   SIGV4T_EMPTY_HASH, 1 };

	(void)state;
	assert_true(sigv4_canonical_request(&r, out, sizeof out) > 0);
	assert_string_equal(out, "GET\n/\na=y&a=z&b=2&flag=&sp=%20x%2B\n\n\n" SIGV4T_EMPTY_HASH);
}

static const struct CMUnitTest sigv4_tests[] = {
	cmocka_unit_test(test_sigv4_suite_every_case_is_run_or_skipped),
	SIGV4T_SUITE_CASE("get-header-key-duplicate"),
	SIGV4T_SUITE_CASE("get-header-value-multiline"),
	SIGV4T_SUITE_CASE("get-header-value-order"),
	SIGV4T_SUITE_CASE("get-header-value-trim"),
	SIGV4T_SUITE_CASE("get-relative-normalized"),
	SIGV4T_SUITE_CASE("get-relative-relative-normalized"),
	SIGV4T_SUITE_CASE("get-relative-relative-unnormalized"),
	SIGV4T_SUITE_CASE("get-relative-unnormalized"),
	SIGV4T_SUITE_CASE("get-slash-dot-slash-normalized"),
	SIGV4T_SUITE_CASE("get-slash-dot-slash-unnormalized"),
	SIGV4T_SUITE_CASE("get-slash-normalized"),
	SIGV4T_SUITE_CASE("get-slash-pointless-dot-normalized"),
	SIGV4T_SUITE_CASE("get-slash-pointless-dot-unnormalized"),
	SIGV4T_SUITE_CASE("get-slash-unnormalized"),
	SIGV4T_SUITE_CASE("get-slashes-normalized"),
	SIGV4T_SUITE_CASE("get-slashes-unnormalized"),
	SIGV4T_SUITE_CASE("get-space-normalized"),
	SIGV4T_SUITE_CASE("get-space-unnormalized"),
	SIGV4T_SUITE_CASE("get-unreserved"),
	SIGV4T_SUITE_CASE("get-utf8"),
	SIGV4T_SUITE_CASE("get-vanilla"),
	SIGV4T_SUITE_CASE("get-vanilla-empty-query-key"),
	SIGV4T_SUITE_CASE("get-vanilla-query"),
	SIGV4T_SUITE_CASE("get-vanilla-query-order-encoded"),
	SIGV4T_SUITE_CASE("get-vanilla-query-order-key-case"),
	SIGV4T_SUITE_CASE("get-vanilla-query-unreserved"),
	SIGV4T_SUITE_CASE("get-vanilla-utf8-query"),
	SIGV4T_SUITE_CASE("get-vanilla-with-session-token"),
	SIGV4T_SUITE_CASE("post-header-key-case"),
	SIGV4T_SUITE_CASE("post-header-key-sort"),
	SIGV4T_SUITE_CASE("post-header-value-case"),
	SIGV4T_SUITE_CASE("post-sts-header-after"),
	SIGV4T_SUITE_CASE("post-sts-header-before"),
	SIGV4T_SUITE_CASE("post-vanilla"),
	SIGV4T_SUITE_CASE("post-vanilla-empty-query-value"),
	SIGV4T_SUITE_CASE("post-vanilla-query"),
	SIGV4T_SUITE_CASE("post-x-www-form-urlencoded"),
	SIGV4T_SUITE_CASE("post-x-www-form-urlencoded-parameters"),
	SIGV4T_KINESIS_CASE("putrecords-minimal"),
	SIGV4T_KINESIS_CASE("putrecords-session-token"),
	SIGV4T_KINESIS_CASE("putrecords-stream-arn"),
	SIGV4T_KINESIS_CASE("putrecords-500-records"),
	cmocka_unit_test(test_sigv4_payload_hash_of_empty_body_is_e3b0c442),
	cmocka_unit_test(test_sigv4_amz_date_formats_unix_seconds_as_utc),
	cmocka_unit_test(test_sigv4_signing_key_is_derived_once_per_date),
	cmocka_unit_test(test_sigv4_signing_key_is_recomputed_when_the_date_changes),
	cmocka_unit_test(test_sigv4_set_credentials_drops_the_cached_key),
	cmocka_unit_test(test_sigv4_authorization_fails_when_the_buffer_is_too_small),
	cmocka_unit_test(test_sigv4_canonical_request_fails_when_the_buffer_is_too_small),
	cmocka_unit_test(test_sigv4_string_to_sign_fails_when_the_buffer_is_too_small),
	cmocka_unit_test(test_sigv4_more_than_max_headers_is_refused),
	cmocka_unit_test(test_sigv4_malformed_requests_are_refused),
	cmocka_unit_test(test_sigv4_amz_date_must_match_the_signed_header),
	cmocka_unit_test(test_sigv4_path_is_normalized_and_encoded_again),
	cmocka_unit_test(test_sigv4_query_is_sorted_by_key_then_value),
};
