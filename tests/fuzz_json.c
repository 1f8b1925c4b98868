/*
 * tests/fuzz_json.c - libFuzzer target: the json_min tokenizer and its readers.
 *
 * Input: byte 0 picks max_tokens, byte 1 emit_depth and max_depth, byte 2 a small copy capacity;
 * the rest is the document. Checked on every parse:
 *   - the count is within max_tokens, and every token's span is inside the input;
 *   - next indexes are monotone: i < next <= count, children nest inside their parent's span and
 *     a container's size matches the children walked with next; collapsed tokens have none;
 *   - the same document parsed with room for every token and no emit depth agrees: valid stays
 *     valid, and an error other than "too few tokens" is the same error at the same offset;
 *   - json_string_copy into an exactly sized heap buffer never writes past it, always
 *     NUL-terminates, and its result fits the escaped length; json_string_eq agrees with it;
 *     json_escape of the result parses back to the same bytes;
 *   - json_int64 agrees with strtoll on the integers it accepts;
 *   - json_object_get finds every key of every (non-collapsed) object;
 *   - json_parse_accepted stays inside the input on any document, and on one json_parse accepts
 *     returns the very same tokens.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_min.h"

#define FZ_CHECK(cond)                                                                        \
	do {                                                                                      \
		if (!(cond)) {                                                                        \
			fprintf(stderr, "invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                          \
		}                                                                                     \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Children of container i: count them with next, check they nest inside it. */
static void check_container(const char *js, const struct json_token *t, int n, int i)
{
	const struct json_token *c = &t[i];
	uint32_t kids = 0;
	int j;

	if (c->flags & 0x02) { /* JSON_COLLAPSED */
		FZ_CHECK(c->size == 0 && c->next == (uint32_t)i + 1);
		return;
	}
	for (j = i + 1; j < (int)c->next; j = (int)t[j].next) {
		FZ_CHECK(j < n);
		FZ_CHECK(t[j].start >= c->start && t[j].end <= c->end);
		FZ_CHECK(t[j].next > (uint32_t)j && t[j].next <= c->next);
		if (c->type == JSON_OBJECT && kids % 2 == 0)
			FZ_CHECK(t[j].type == JSON_STRING); /* a key */
		kids++;
	}
	FZ_CHECK(j == (int)c->next);
	FZ_CHECK(c->type == JSON_OBJECT ? kids == 2 * c->size : kids == c->size);
	(void)js;
}

static void check_string(const char *js, const struct json_token *t, size_t small_cap)
{
	size_t span = t->end - t->start, cap = span + 1;
	char *out = malloc(cap), *tiny = malloc(small_cap ? small_cap : 1);
	long n;

	FZ_CHECK(out && tiny);
	n = json_string_copy(js, t, out, cap);
	FZ_CHECK(n >= 0 && (size_t)n <= span && out[n] == 0); /* unescaping never grows */
	if (!(t->flags & 0x01))
		FZ_CHECK((size_t)n == span && memcmp(out, js + t->start, span) == 0);
	if (memchr(out, 0, (size_t)n) == NULL)
		FZ_CHECK(json_string_eq(js, t, out) == 1);
	/* Round trip: escape it again, and the result is a string token with the same bytes. */
	{
		size_t esc = json_escaped_len(out, (size_t)n);
		char *doc = malloc(esc + 2), *back = malloc((size_t)n + 1);
		struct json_token one[1];
		FZ_CHECK(doc && back);
		doc[0] = '"';
		FZ_CHECK(json_escape(doc + 1, esc, out, (size_t)n) == esc);
		doc[esc + 1] = '"';
		FZ_CHECK(json_parse(doc, esc + 2, one, 1, 0, 0, NULL) == 1);
		FZ_CHECK(json_string_copy(doc, &one[0], back, (size_t)n + 1) == n);
		FZ_CHECK(memcmp(back, out, (size_t)n) == 0);
		free(doc);
		free(back);
	}
	/* A small buffer: -1 or the whole string, NUL-terminated either way. */
	if (small_cap) {
		long m = json_string_copy(js, t, tiny, small_cap);
		FZ_CHECK(m == -1 || (m == n && (size_t)m < small_cap));
		FZ_CHECK(memchr(tiny, 0, small_cap) != NULL);
		if (m == -1)
			FZ_CHECK(tiny[0] == 0);
	}
	free(out);
	free(tiny);
}

static void check_number(const char *js, const struct json_token *t)
{
	char buf[64];
	size_t span = t->end - t->start;
	int64_t v;

	if (json_int64(js, t, &v) != 0)
		return;
	FZ_CHECK(span < sizeof(buf));
	memcpy(buf, js + t->start, span);
	buf[span] = 0;
	FZ_CHECK(strpbrk(buf, ".eE") == NULL);
	errno = 0;
	FZ_CHECK(strtoll(buf, NULL, 10) == v && errno == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_token *toks, *all;
	size_t max_tokens, small_cap, off1 = 0, off2 = 0;
	unsigned emit_depth, max_depth;
	const char *js;
	size_t len;
	int n, n_all;

	if (size < 3)
		return 0;
	max_tokens = (size_t)data[0] * 3 + 1;          /* 1..766 */
	emit_depth = data[1] & 7;                      /* 0 (no limit) .. 7 */
	max_depth = (data[1] >> 3) ? (data[1] >> 3) : 0; /* 0 (the hard limit) .. 31 */
	small_cap = data[2] & 31;
	js = (const char *)data + 3;
	len = size - 3;

	toks = malloc(max_tokens * sizeof(*toks)); /* exact: ASan sees any write past it */
	all = malloc((len + 1) * sizeof(*all));    /* a value takes at least one byte */
	FZ_CHECK(toks && all);

	n = json_parse(js, len, toks, max_tokens, max_depth, emit_depth, &off1);
	n_all = json_parse(js, len, all, len + 1, max_depth, 0, &off2);
	FZ_CHECK(n_all != JSON_ERR_NOMEM);
	if (n > 0)
		FZ_CHECK(n_all > 0 && (size_t)n <= max_tokens && n <= n_all);
	else if (n != JSON_ERR_NOMEM)
		FZ_CHECK(n == n_all && off1 == off2);
	if (n_all > 0 && emit_depth == 0)
		FZ_CHECK(n == n_all || n == JSON_ERR_NOMEM);
	/* json_parse_accepted: on any input it stays inside js (ASan) and its tokens inside len; on
	 * what json_parse accepted, it gives the same count and the very same tokens. */
	{
		struct json_token *acc = malloc(max_tokens * sizeof(*acc));
		int n_acc;
		FZ_CHECK(acc);
		n_acc = json_parse_accepted(js, len, acc, max_tokens, max_depth, emit_depth);
		for (int i = 0; i < n_acc; i++)
			FZ_CHECK(acc[i].start <= acc[i].end && acc[i].end <= len);
		if (n > 0) {
			FZ_CHECK(n_acc == n);
			for (int i = 0; i < n; i++)
				FZ_CHECK(acc[i].start == toks[i].start && acc[i].end == toks[i].end &&
				         acc[i].next == toks[i].next && acc[i].size == toks[i].size &&
				         acc[i].type == toks[i].type && acc[i].flags == toks[i].flags);
		}
		free(acc);
	}

	for (int pass = 0; pass < 2; pass++) {
		const struct json_token *t = pass ? all : toks;
		int count = pass ? n_all : n;
		for (int i = 0; i < count; i++) {
			FZ_CHECK(t[i].start <= t[i].end && t[i].end <= len);
			FZ_CHECK(t[i].next > (uint32_t)i && t[i].next <= (uint32_t)count);
			FZ_CHECK(t[i].type >= JSON_OBJECT && t[i].type <= JSON_NULL);
			if (i == 0)
				FZ_CHECK(t[0].next == (uint32_t)count);
			switch (t[i].type) {
			case JSON_OBJECT:
			case JSON_ARRAY:
				check_container(js, t, count, i);
				break;
			case JSON_STRING:
				check_string(js, &t[i], small_cap);
				break;
			case JSON_NUMBER:
				check_number(js, &t[i]);
				break;
			default:
				FZ_CHECK(t[i].next == (uint32_t)i + 1);
				break;
			}
			/* Every key of an object is found (first duplicate wins, so >= 0 is the claim). */
			if (t[i].type == JSON_OBJECT && !(t[i].flags & 0x02)) {
				for (int k = i + 1; k < (int)t[i].next; k = (int)t[t[k].next].next) {
					char key[256];
					if (json_string_copy(js, &t[k], key, sizeof(key)) < 0 ||
					    strlen(key) != (size_t)(json_string_copy(js, &t[k], key,
					                                              sizeof(key))))
						continue; /* too long, or a \u0000 inside */
					FZ_CHECK(json_object_get(js, t, i, key) >= 0);
				}
			}
		}
	}
	free(toks);
	free(all);
	return 0;
}
