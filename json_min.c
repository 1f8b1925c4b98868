/*
 * json_min.c - strict, zero-allocation JSON tokenizer and writer helpers (see json_min.h).
 *
 * The parser is one loop over a small state machine. It does not recurse: open containers are
 * remembered as one bit each (object or array) in a fixed bit stack, and the token of the innermost
 * open container that has one keeps its parent's index in its `next` field until it is closed
 * (jsmn's parent link, without a field of its own).
 */
#include "json_min.h"

#include <limits.h>
#include <string.h>

/* Parser states: what the next non-white-space byte may be. */
enum {
	ST_VALUE,          /* a value (after ':' or after ',' in an array, and at the top) */
	ST_VALUE_OR_CLOSE, /* a value or ']' (after '[') */
	ST_KEY,            /* a key (after ',' in an object) */
	ST_KEY_OR_CLOSE,   /* a key or '}' (after '{') */
	ST_COLON,          /* ':' (after a key) */
	ST_AFTER           /* ',' or the closing bracket of the innermost container */
};

#define NO_PARENT UINT32_MAX
#define ONES  0x0101010101010101u
#define HIGHS 0x8080808080808080u

static uint64_t load8(const unsigned char *s)
{
	uint64_t v;

	memcpy(&v, s, sizeof v);
	return v;
}

/*
 * Nonzero when one of eight bytes needs a look inside a string: '"', '\\', a control character or
 * a byte >= 0x80. Exact as to "any", not as to "which": the subtractions may borrow into higher
 * bytes, but only above a byte that really matched, and bytes >= 0x80 are caught by `v` itself.
 */
static uint64_t string_special8(uint64_t v)
{
	uint64_t q = v ^ (ONES * '"');
	uint64_t b = v ^ (ONES * '\\');

	return ((v - ONES * 0x20) | (q - ONES) | (b - ONES) | v) & HIGHS;
}

/*
 * The index of the first of eight bytes (in memory order) that string_special8 flagged (m != 0):
 * the lowest flagged byte is always a real match, whatever borrowed above it.
 */
static size_t first_flagged8(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return (size_t)__builtin_clzll(m) / 8;
#else
	return (size_t)__builtin_ctzll(m) / 8;
#endif
}

/*
 * Sixteen bytes at a time where the instructions are in the architecture's baseline (SSE2 on
 * x86_64, NEON on arm64; nothing to choose at run time): a mask of the bytes that need a look
 * (special16: string_special's bytes) or that are '"' or '\\' (quote_or_backslash16), and the
 * index of its first one (first16): the parser 1.1x / 1.4x / 2x as fast on plain 100-, 300- and
 * 900-byte log lines (bench_json). JSON_SCAN16 undefined: the eight-byte code alone.
 */
#if defined(__SSE2__)
#include <emmintrin.h>
#define JSON_SCAN16 1

static __m128i load16(const unsigned char *s)
{
	return _mm_loadu_si128((const __m128i *)(const void *)s);
}

static uint64_t quote_or_backslash16(const unsigned char *s)
{
	__m128i v = load16(s);

	return (uint64_t)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
	                                                _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
}

static uint64_t special16(const unsigned char *s)
{
	__m128i v = load16(s);
	/* signed: a byte >= 0x80 is negative, so below 0x20 too */
	__m128i low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));

	return (uint64_t)_mm_movemask_epi8(_mm_or_si128(low, _mm_or_si128(
		_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')))));
}

static size_t first16(uint64_t m)
{
	return (size_t)__builtin_ctzll(m);   /* one bit a byte */
}
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define JSON_SCAN16 1

/* Four bits a byte: the compare results narrowed by a shift (no movemask on NEON). */
static uint64_t mask16(uint8x16_t m)
{
	return vget_lane_u64(vreinterpret_u64_u8(vshrn_n_u16(vreinterpretq_u16_u8(m), 4)), 0);
}

static uint64_t quote_or_backslash16(const unsigned char *s)
{
	uint8x16_t v = vld1q_u8(s);

	return mask16(vorrq_u8(vceqq_u8(v, vdupq_n_u8('"')), vceqq_u8(v, vdupq_n_u8('\\'))));
}

static uint64_t special16(const unsigned char *s)
{
	uint8x16_t v = vld1q_u8(s);
	/* signed: a byte >= 0x80 is negative, so below 0x20 too */
	uint8x16_t low = vcltq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(0x20));

	return mask16(vorrq_u8(low, vorrq_u8(vceqq_u8(v, vdupq_n_u8('"')),
	                                     vceqq_u8(v, vdupq_n_u8('\\')))));
}

static size_t first16(uint64_t m)
{
	return (size_t)__builtin_ctzll(m) / 4;
}
#endif

/* 1 for the bytes string_special8 looks for. */
static const unsigned char string_special[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static int is_digit(unsigned c)
{
	return c - '0' < 10;
}

static int hex_value(unsigned c)
{
	if (c - '0' < 10)
		return (int)(c - '0');
	c |= 0x20;
	if (c - 'a' < 6)
		return (int)(c - 'a' + 10);
	return -1;
}

/*
 * Read the four hex digits of a \u escape at s[p..p+4). Returns the code unit, -1 when one is not
 * a hex digit, -2 when the input ends first.
 */
static long hex4(const unsigned char *s, size_t len, size_t p)
{
	long v = 0;
	int i, h;

	for (i = 0; i < 4; i++) {
		if (p + (size_t)i >= len)
			return -2;
		h = hex_value(s[p + (size_t)i]);
		if (h < 0)
			return -1;
		v = v << 4 | h;
	}
	return v;
}

/*
 * Check the escape whose backslash is at s[p]. Returns its length in bytes, or a json_error.
 * A high surrogate must be followed at once by an escaped low one (RFC 8259 section 7).
 */
static int check_escape(const unsigned char *s, size_t len, size_t p)
{
	long hi, lo;

	if (p + 1 >= len)
		return JSON_ERR_INCOMPLETE;
	switch (s[p + 1]) {
	case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
		return 2;
	case 'u':
		break;
	default:
		return JSON_ERR_ESCAPE;
	}
	hi = hex4(s, len, p + 2);
	if (hi < 0)
		return hi == -2 ? JSON_ERR_INCOMPLETE : JSON_ERR_ESCAPE;
	if (hi < 0xD800 || hi > 0xDFFF)
		return 6;
	if (hi >= 0xDC00)
		return JSON_ERR_ESCAPE;
	if (p + 6 >= len || (p + 7 >= len && s[p + 6] == '\\'))
		return JSON_ERR_INCOMPLETE;
	if (s[p + 6] != '\\' || s[p + 7] != 'u')
		return JSON_ERR_ESCAPE;
	lo = hex4(s, len, p + 8);
	if (lo == -2)
		return JSON_ERR_INCOMPLETE;
	if (lo < 0xDC00 || lo > 0xDFFF)
		return JSON_ERR_ESCAPE;
	return 12;
}

/*
 * Check the UTF-8 sequence whose first byte (>= 0x80) is at s[p]. Returns its length, or a
 * json_error. The ranges are those of RFC 3629 section 4: no overlong forms, no surrogates,
 * nothing above U+10FFFF.
 */
static int check_utf8(const unsigned char *s, size_t len, size_t p)
{
	unsigned c = s[p], lo = 0x80, hi = 0xBF;
	int n, i;

	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* below is overlong */
		else if (c == 0xED)
			hi = 0x9F; /* above is a surrogate */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90; /* below is overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above is beyond U+10FFFF */
	} else {
		return JSON_ERR_UTF8; /* continuation byte, C0/C1 (overlong) or F5..FF */
	}
	for (i = 1; i < n; i++) {
		if (p + (size_t)i >= len)
			return JSON_ERR_INCOMPLETE;
		c = s[p + (size_t)i];
		if (c < lo || c > hi)
			return JSON_ERR_UTF8;
		lo = 0x80;
		hi = 0xBF;
	}
	return n;
}

/*
 * The first byte at or after s[p] that a string scan must look at (string_special), or len. Most
 * string bytes are plain ASCII: they go sixteen or eight at a time, the last few one at a time.
 */
static size_t to_special(const unsigned char *s, size_t len, size_t p)
{
#ifdef JSON_SCAN16
	for (; len - p >= 16; p += 16) {
		uint64_t m = special16(s + p);
		if (m)
			return p + first16(m);
	}
#endif
	for (; len - p >= 8; p += 8) {
		uint64_t m = string_special8(load8(s + p));
		if (m)
			return p + first_flagged8(m);
	}
	while (p < len && !string_special[s[p]])
		p++;
	return p;
}

/*
 * Scan a string whose first byte after the opening quote is s[*pp]. On success *pp is the index of
 * the closing quote and *escaped says whether a backslash was seen; on error *pp is the offset.
 */
static int scan_string(const unsigned char *s, size_t len, size_t *pp, int *escaped)
{
	size_t p = *pp;
	unsigned c;
	int n;

	for (;;) {
		p = to_special(s, len, p);
		if (p >= len) {
			*pp = len;
			return JSON_ERR_INCOMPLETE;
		}
		c = s[p];
		if (c == '"') {
			*pp = p;
			return 0;
		}
		if (c == '\\') {
			n = check_escape(s, len, p);
			*escaped = 1;
		} else if (c < 0x20) {
			n = JSON_ERR_CONTROL;
		} else {
			n = check_utf8(s, len, p);
		}
		if (n < 0) {
			*pp = n == JSON_ERR_INCOMPLETE ? len : p;
			return n;
		}
		p += (size_t)n;
	}
}

/* Bytes equal to '"' or '\\' in v, each flagged by its high bit (exact up to the first one). */
static uint64_t quote_or_backslash8(uint64_t v)
{
	uint64_t q = v ^ (ONES * '"');
	uint64_t b = v ^ (ONES * '\\');

	return (((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS;
}

/* The first '"' or '\\' at or after s[p], or len: to_special's steps for skip_string. */
static size_t to_quote_or_backslash(const unsigned char *s, size_t len, size_t p)
{
#ifdef JSON_SCAN16
	for (; len - p >= 16; p += 16) {
		uint64_t m = quote_or_backslash16(s + p);
		if (m)
			return p + first16(m);
	}
#endif
	for (; len - p >= 8; p += 8) {
		uint64_t m = quote_or_backslash8(load8(s + p));
		if (m)
			return p + first_flagged8(m);
	}
	while (p < len && s[p] != '"' && s[p] != '\\')
		p++;
	return p;
}

/*
 * scan_string for input already accepted: find the closing quote, stepping over escapes, with no
 * check of escapes, UTF-8 or control characters. Never reads past s[len - 1].
 */
static int skip_string(const unsigned char *s, size_t len, size_t *pp, int *escaped)
{
	size_t p = *pp;

	for (;;) {
		p = to_quote_or_backslash(s, len, p);
		if (p >= len) {
			*pp = len;
			return JSON_ERR_INCOMPLETE;
		}
		if (s[p] == '"') {
			*pp = p;
			return 0;
		}
		*escaped = 1;
		if (len - p < 2) {
			*pp = len;
			return JSON_ERR_INCOMPLETE;
		}
		p += 2; /* the backslash and the byte it escapes (\u's digits hold no quote) */
	}
}

/*
 * Scan a number starting at s[*pp] (RFC 8259 section 6). On success *pp is one past its end.
 * At the top level the end of the input ends the number; inside a container it means more input
 * is needed.
 */
static int scan_number(const unsigned char *s, size_t len, size_t *pp, int top)
{
	size_t start = *pp, p = start;

	if (s[p] == '-')
		p++;
	if (p >= len)
		goto end_of_input;
	if (s[p] == '0') {
		p++;
		if (p < len && is_digit(s[p]))
			goto malformed; /* leading zero */
	} else if (is_digit(s[p])) {
		while (++p < len && is_digit(s[p]))
			;
	} else {
		goto malformed;
	}
	if (p < len && s[p] == '.') {
		if (++p >= len)
			goto end_of_input;
		if (!is_digit(s[p]))
			goto malformed;
		while (++p < len && is_digit(s[p]))
			;
	}
	if (p < len && (s[p] | 0x20) == 'e') {
		if (++p < len && (s[p] == '+' || s[p] == '-'))
			p++;
		if (p >= len)
			goto end_of_input;
		if (!is_digit(s[p]))
			goto malformed;
		while (++p < len && is_digit(s[p]))
			;
	}
	*pp = p;
	return 0;
end_of_input:
	if (!top) {
		*pp = len;
		return JSON_ERR_INCOMPLETE;
	}
malformed:
	*pp = start;
	return JSON_ERR_NUMBER;
}

/* Scan the literal lit (true, false, null) at s[*pp]. On success *pp is one past its end. */
static int scan_literal(const unsigned char *s, size_t len, size_t *pp, const char *lit, size_t n)
{
	size_t p = *pp, i;

	if (len - p >= n && memcmp(s + p, lit, n) == 0) {
		*pp = p + n;
		return 0;
	}
	for (i = 0; i < n; i++, p++) {
		if (p >= len) {
			*pp = len;
			return JSON_ERR_INCOMPLETE;
		}
		if (s[p] != (unsigned char)lit[i])
			break;
	}
	*pp = p;
	return JSON_ERR_SYNTAX;
}

static size_t skip_space(const unsigned char *s, size_t len, size_t p)
{
	while (p < len && s[p] <= ' ' && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' ||
	                                  s[p] == '\t'))
		p++;
	return p;
}

/* The bracket stack: bit d - 1 is set when the container at depth d is an object. */
static int is_object_at(const uint64_t *kinds, unsigned depth)
{
	return (int)(kinds[(depth - 1) / 64] >> ((depth - 1) % 64) & 1);
}

static void set_kind_at(uint64_t *kinds, unsigned depth, int object)
{
	uint64_t bit = (uint64_t)1 << ((depth - 1) % 64);

	if (object)
		kinds[(depth - 1) / 64] |= bit;
	else
		kinds[(depth - 1) / 64] &= ~bit;
}

/* json_parse (checked), json_parse_accepted (strings scanned for their end only): json_min.h */
static int parse(const char *js, size_t len, struct json_token *toks, size_t max_tokens,
                 unsigned max_depth, unsigned emit_depth, size_t *err_offset, int checked)
{
	const unsigned char *s = (const unsigned char *)js;
	uint64_t kinds[JSON_MAX_DEPTH_LIMIT / 64];
	size_t p = 0, start;
	uint32_t ntok = 0, max, cur = NO_PARENT;
	unsigned depth = 0, state = ST_VALUE, emit;
	struct json_token *t;
	int err, escaped;
	unsigned char c;

	if (len > UINT32_MAX) {
		p = UINT32_MAX;
		err = JSON_ERR_TOOBIG;
		goto fail;
	}
	/* Token indexes are returned as an int. */
	max = max_tokens > INT_MAX ? INT_MAX : (uint32_t)max_tokens;
	if (max_depth == 0 || max_depth > JSON_MAX_DEPTH_LIMIT)
		max_depth = JSON_MAX_DEPTH_LIMIT;
	emit = emit_depth == 0 || emit_depth > JSON_MAX_DEPTH_LIMIT ? JSON_MAX_DEPTH_LIMIT : emit_depth;

	for (;;) {
		if (p >= len || s[p] <= ' ') /* most JSON has no white space between tokens */
			p = skip_space(s, len, p);
		if (p >= len) {
			err = JSON_ERR_INCOMPLETE;
			goto fail;
		}
		c = s[p];
		switch (state) {
		case ST_AFTER:
			if (c == ',') {
				p++;
				state = is_object_at(kinds, depth) ? ST_KEY : ST_VALUE;
				continue;
			}
			if ((c == '}' || c == ']') && (c == '}') == is_object_at(kinds, depth))
				goto close;
			err = JSON_ERR_SYNTAX;
			goto fail;
		case ST_COLON:
			if (c != ':') {
				err = JSON_ERR_SYNTAX;
				goto fail;
			}
			p++;
			state = ST_VALUE;
			continue;
		case ST_KEY_OR_CLOSE:
			if (c == '}')
				goto close;
			/* fall through */
		case ST_KEY:
			if (c != '"') {
				err = JSON_ERR_SYNTAX;
				goto fail;
			}
			start = ++p;
			escaped = 0;
			err = checked ? scan_string(s, len, &p, &escaped)
			              : skip_string(s, len, &p, &escaped);
			if (err)
				goto fail;
			if (depth <= emit) {
				if (ntok >= max) {
					p = start - 1;
					err = JSON_ERR_NOMEM;
					goto fail;
				}
				t = &toks[ntok++];
				t->start = (uint32_t)start;
				t->end = (uint32_t)p;
				t->next = ntok;
				t->size = 0;
				t->type = JSON_STRING;
				t->flags = escaped ? JSON_ESCAPED : 0;
				toks[cur].size++;
			}
			p++;
			state = ST_COLON;
			continue;
		case ST_VALUE_OR_CLOSE:
			if (c == ']')
				goto close;
			/* fall through */
		default:
			break;
		}

		/* A value starts at p. */
		start = p;
		switch (c) {
		case '{':
		case '[':
			if (depth >= max_depth) {
				err = JSON_ERR_DEPTH;
				goto fail;
			}
			p++;
			break;
		case '"':
			escaped = 0;
			p++;
			err = checked ? scan_string(s, len, &p, &escaped)
			              : skip_string(s, len, &p, &escaped);
			if (!err)
				p++; /* past the closing quote */
			break;
		case 't':
			err = scan_literal(s, len, &p, "true", 4);
			break;
		case 'f':
			err = scan_literal(s, len, &p, "false", 5);
			break;
		case 'n':
			err = scan_literal(s, len, &p, "null", 4);
			break;
		case '-': case '0': case '1': case '2': case '3': case '4':
		case '5': case '6': case '7': case '8': case '9':
			err = scan_number(s, len, &p, depth == 0);
			break;
		case '+':
		case '.':
			err = JSON_ERR_NUMBER; /* "+1" and ".5" are numbers to a reader, not to RFC 8259 */
			break;
		default:
			err = JSON_ERR_SYNTAX;
			break;
		}
		if (err)
			goto fail;

		if (depth <= emit) {
			if (ntok >= max) {
				p = start;
				err = JSON_ERR_NOMEM;
				goto fail;
			}
			if (cur != NO_PARENT && toks[cur].type == JSON_ARRAY)
				toks[cur].size++;
			t = &toks[ntok++];
			t->start = (uint32_t)start;
			t->end = (uint32_t)p;
			t->next = ntok;
			t->size = 0;
			t->flags = 0;
			switch (c) {
			case '{':
			case '[':
				t->type = c == '{' ? JSON_OBJECT : JSON_ARRAY;
				t->flags = depth + 1 > emit ? JSON_COLLAPSED : 0;
				t->next = cur; /* parent link until the container closes */
				cur = ntok - 1;
				break;
			case '"':
				t->start++;
				t->end--;
				t->type = JSON_STRING;
				t->flags = escaped ? JSON_ESCAPED : 0;
				break;
			case 't':
				t->type = JSON_TRUE;
				break;
			case 'f':
				t->type = JSON_FALSE;
				break;
			case 'n':
				t->type = JSON_NULL;
				break;
			default:
				t->type = JSON_NUMBER;
				break;
			}
		}
		if (c == '{' || c == '[') {
			depth++;
			set_kind_at(kinds, depth, c == '{');
			state = c == '{' ? ST_KEY_OR_CLOSE : ST_VALUE_OR_CLOSE;
			continue;
		}
		goto value_done;

close:
		/* s[p] closes the innermost container, which has a token if its parent emits. */
		if (depth <= emit + 1) {
			t = &toks[cur];
			t->end = (uint32_t)(p + 1);
			cur = t->next;
			t->next = ntok;
		}
		depth--;
		p++;
value_done:
		if (depth == 0)
			break;
		state = ST_AFTER;
	}

	p = skip_space(s, len, p);
	if (p < len) {
		err = JSON_ERR_TRAILING;
		goto fail;
	}
	return (int)ntok;

fail:
	if (err_offset != NULL)
		*err_offset = p;
	return err;
}

/* see json_min.h */
int json_parse(const char *js, size_t len, struct json_token *toks, size_t max_tokens,
               unsigned max_depth, unsigned emit_depth, size_t *err_offset)
{
	return parse(js, len, toks, max_tokens, max_depth, emit_depth, err_offset, 1);
}

/* see json_min.h */
int json_parse_accepted(const char *js, size_t len, struct json_token *toks, size_t max_tokens,
                        unsigned max_depth, unsigned emit_depth)
{
	return parse(js, len, toks, max_tokens, max_depth, emit_depth, NULL, 0);
}

/* see json_min.h */
const char *json_strerror(int err)
{
	switch (err) {
	case JSON_ERR_INCOMPLETE: return "incomplete input";
	case JSON_ERR_SYNTAX:     return "syntax error";
	case JSON_ERR_NOMEM:      return "not enough tokens";
	case JSON_ERR_DEPTH:      return "nesting too deep";
	case JSON_ERR_ESCAPE:     return "bad escape";
	case JSON_ERR_CONTROL:    return "control character in string";
	case JSON_ERR_UTF8:       return "invalid UTF-8";
	case JSON_ERR_TRAILING:   return "data after the value";
	case JSON_ERR_NUMBER:     return "malformed number";
	case JSON_ERR_TOOBIG:     return "input too big";
	default:                  return err >= 0 ? "no error" : "unknown error";
	}
}

/* Write code point cp as UTF-8 into out; returns the byte count. */
static size_t utf8_put(unsigned char *out, unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xC0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xE0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (unsigned char)(0xF0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

/*
 * Decode the character at s[*pp] of a string body ending at s[end] into out (up to 4 bytes) and
 * move *pp past it. Returns the byte count. The token came from json_parse, so escapes are valid;
 * the bounds checks only keep a hand-made token from reading outside its span.
 */
static size_t unescape_char(const unsigned char *s, size_t *pp, size_t end, unsigned char *out)
{
	size_t p = *pp;
	long cp, lo;

	if (s[p] != '\\' || p + 1 >= end) {
		out[0] = s[p];
		*pp = p + 1;
		return 1;
	}
	*pp = p + 2;
	switch (s[p + 1]) {
	case 'b': out[0] = '\b'; return 1;
	case 'f': out[0] = '\f'; return 1;
	case 'n': out[0] = '\n'; return 1;
	case 'r': out[0] = '\r'; return 1;
	case 't': out[0] = '\t'; return 1;
	case 'u': break;
	default:  out[0] = s[p + 1]; return 1; /* '"', '\\', '/' */
	}
	cp = p + 6 <= end ? hex4(s, end, p + 2) : -1;
	if (cp < 0) {
		out[0] = '\\';
		*pp = p + 1;
		return 1;
	}
	p += 6;
	if (cp >= 0xD800 && cp <= 0xDBFF && p + 6 <= end && s[p] == '\\' && s[p + 1] == 'u') {
		lo = hex4(s, end, p + 2);
		if (lo >= 0xDC00 && lo <= 0xDFFF) {
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			p += 6;
		}
	}
	*pp = p;
	return utf8_put(out, (unsigned long)cp);
}

/* see json_min.h */
int json_string_eq(const char *js, const struct json_token *t, const char *str)
{
	const unsigned char *s = (const unsigned char *)js;
	const unsigned char *q = (const unsigned char *)str;
	unsigned char buf[4];
	size_t p, end, i, n;

	if (t->type != JSON_STRING)
		return 0;
	p = t->start;
	end = t->end;
	if (!(t->flags & JSON_ESCAPED)) { /* the bytes are the string (never a NUL: no control) */
		for (; p < end; p++, q++)
			if (*q != s[p])
				return 0;
		return *q == 0;
	}
	while (p < end) {
		if (s[p] != '\\') {
			if (*q == 0 || *q != s[p])
				return 0;
			q++;
			p++;
			continue;
		}
		n = unescape_char(s, &p, end, buf);
		for (i = 0; i < n; i++, q++) {
			if (*q == 0 || *q != buf[i])
				return 0;
		}
	}
	return *q == 0;
}

/* 1 when a[0..n) and b[0..n) are the same bytes (keys are short: no call to memcmp). */
static int same_bytes(const char *a, const char *b, size_t n)
{
	while (n && *a == *b) {
		a++;
		b++;
		n--;
	}
	return n == 0;
}

/* see json_min.h */
int json_object_get_n(const char *js, const struct json_token *toks, int obj, const char *key,
                      size_t klen)
{
	uint32_t i, n;

	if (obj < 0 || toks[obj].type != JSON_OBJECT || (toks[obj].flags & JSON_COLLAPSED))
		return -1;
	i = (uint32_t)obj + 1;
	for (n = 0; n < toks[obj].size; n++) {
		const struct json_token *k = &toks[i];
		/* An unescaped key is its bytes: the lengths first (most keys differ there), then the
		 * bytes; an escaped one is compared after unescaping. */
		if (k->flags & JSON_ESCAPED ? json_string_eq(js, k, key) :
		    k->end - k->start == klen && same_bytes(js + k->start, key, klen))
			return (int)i + 1;
		i = toks[i + 1].next;
	}
	return -1;
}

/* see json_min.h */
long json_string_copy(const char *js, const struct json_token *t, char *out, size_t cap)
{
	const unsigned char *s = (const unsigned char *)js;
	const unsigned char *bs;
	unsigned char buf[4];
	size_t p, end, o = 0, n;

	if (cap > 0)
		out[0] = '\0';
	if (t->type != JSON_STRING || cap == 0)
		return -1;
	p = t->start;
	end = t->end;
	while (p < end) {
		/* Copy the run up to the next backslash, then one unescaped character. */
		bs = memchr(s + p, '\\', end - p);
		n = (bs != NULL ? (size_t)(bs - s) : end) - p;
		if (n >= cap - o)
			goto too_small;
		memcpy(out + o, s + p, n);
		o += n;
		p += n;
		if (p >= end)
			break;
		n = unescape_char(s, &p, end, buf);
		if (n >= cap - o)
			goto too_small;
		memcpy(out + o, buf, n);
		o += n;
	}
	out[o] = '\0';
	return (long)o;
too_small:
	out[0] = '\0';
	return -1;
}

/* see json_min.h */
int json_int64(const char *js, const struct json_token *t, int64_t *out)
{
	const unsigned char *s = (const unsigned char *)js;
	uint64_t v = 0, limit = INT64_MAX;
	size_t p, end;
	unsigned d;
	int neg = 0;

	if (t->type != JSON_NUMBER)
		return -1;
	p = t->start;
	end = t->end;
	if (p < end && s[p] == '-') {
		neg = 1;
		limit = (uint64_t)INT64_MAX + 1;
		p++;
	}
	if (p >= end)
		return -1;
	for (; p < end; p++) {
		d = (unsigned)s[p] - '0';
		if (d > 9 || v > (limit - d) / 10)
			return -1; /* '.', 'e', or out of range */
		v = v * 10 + d;
	}
	if (!neg)
		*out = (int64_t)v;
	else if (v > INT64_MAX)
		*out = INT64_MIN;
	else
		*out = -(int64_t)v;
	return 0;
}

/* Bytes json_escape adds for each input byte: 1 for \" \\ \b \f \n \r \t, 5 for \u00XX. */
static const unsigned char escape_extra[256] = {
	5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5,
	5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
};

/* Nonzero when one of eight bytes must be escaped ('"', '\\', control); each term is exact. */
static uint64_t escape_special8(uint64_t v)
{
	uint64_t q = v ^ (ONES * '"');
	uint64_t b = v ^ (ONES * '\\');

	return (((v - ONES * 0x20) & ~v) | ((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS;
}

/* Index of the first byte of s[i..n) that must be escaped, or n. */
static size_t escape_scan(const unsigned char *s, size_t i, size_t n)
{
	while (n - i >= 8 && !escape_special8(load8(s + i)))
		i += 8;
	while (i < n && escape_extra[s[i]] == 0)
		i++;
	return i;
}

/* see json_min.h */
size_t json_escaped_len(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, total = n;

	while ((i = escape_scan(u, i, n)) < n)
		total += escape_extra[u[i++]];
	return total;
}

/* see json_min.h */
size_t json_escape_fit(const char *s, size_t n, size_t budget)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, used = 0;

	for (i = 0; i < n; i++) {
		size_t w = 1u + escape_extra[u[i]];
		if (used + w > budget)
			break;
		used += w;
	}
	while (i > 0 && i < n && (u[i] & 0xC0) == 0x80)
		i--; /* never split a UTF-8 sequence */
	return i;
}

/* see json_min.h */
size_t json_escape(char *out, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run, o = 0, k;
	unsigned c;

	while (i < n) {
		run = escape_scan(u, i, n);
		if (run - i > cap - o)
			return (size_t)-1;
		if (run > i)
			memcpy(out + o, u + i, run - i);
		o += run - i;
		if (run >= n)
			break;
		c = u[run];
		i = run + 1;
		k = 1u + escape_extra[c];
		if (k > cap - o)
			return (size_t)-1;
		out[o] = '\\';
		switch (c) {
		case '"':  out[o + 1] = '"'; break;
		case '\\': out[o + 1] = '\\'; break;
		case '\b': out[o + 1] = 'b'; break;
		case '\f': out[o + 1] = 'f'; break;
		case '\n': out[o + 1] = 'n'; break;
		case '\r': out[o + 1] = 'r'; break;
		case '\t': out[o + 1] = 't'; break;
		default:
			memcpy(out + o + 1, "u00", 3);
			out[o + 4] = hex[c >> 4];
			out[o + 5] = hex[c & 15];
			break;
		}
		o += k;
	}
	return o;
}

static const char base64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The value of each base64 character, -1 for anything else (including '='). */
static const signed char base64_value[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/*
 * The two characters of each 12-bit value, in memory order: 8 KiB of zeroed memory filled at the
 * first use (no bytes in the binary). Six input bytes become eight characters in four look-ups.
 */
static uint16_t base64_pairs[4096];

static void base64_pairs_fill(void)
{
	for (unsigned v = 0; v < 4096; v++) {
		const char pair[2] = { base64_alphabet[v >> 6], base64_alphabet[v & 63] };
		memcpy(&base64_pairs[v], pair, 2);
	}
}

/*
 * Vector encoders: 12 input bytes to 16 characters (x86 SSSE3, chosen at run time), 48 to 64
 * (arm64 NEON, always there). Each returns how many input bytes it encoded (a multiple of its
 * step; it reads only bytes it encodes, except the SSSE3 one: 16 for 12, so it stops 4 early).
 */
static int base64_vector_off; /* base64_select(0): the scalar code only (tests, benchmarks) */

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

static int base64_ssse3_usable(void)
{
	static int usable = -1; /* not asked yet */
	unsigned a = 0, b = 0, c = 0, d = 0;

	if (usable < 0)
		usable = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSSE3);
	return usable;
}

/* W. Mula and D. Lemire, "Faster Base64 Encoding and Decoding Using AVX2 Instructions" (2018),
 * in its SSE form: bytes abc of each group to the 6-bit fields, then to their characters. */
__attribute__((target("ssse3")))
static size_t base64_encode_ssse3(char *out, const unsigned char *s, size_t n)
{
	const __m128i shuf = _mm_set_epi8(10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1);
	const __m128i shift = _mm_setr_epi8('a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
	                                    '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
	                                    '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0);
	size_t i = 0;

	for (; n - i >= 16; i += 12, out += 16) {
		__m128i in = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(s + i)),
		                              shuf);
		__m128i hi = _mm_mulhi_epu16(_mm_and_si128(in, _mm_set1_epi32(0x0fc0fc00)),
		                             _mm_set1_epi32(0x04000040));
		__m128i lo = _mm_mullo_epi16(_mm_and_si128(in, _mm_set1_epi32(0x003f03f0)),
		                             _mm_set1_epi32(0x01000010));
		__m128i idx = _mm_or_si128(hi, lo);  /* one 6-bit value per byte */
		__m128i k = _mm_subs_epu8(idx, _mm_set1_epi8(51)); /* 52..63 -> 1..12, else 0 */
		k = _mm_or_si128(k, _mm_and_si128(_mm_cmpgt_epi8(_mm_set1_epi8(26), idx),
		                                  _mm_set1_epi8(13))); /* 0..25 -> 13 */
		_mm_storeu_si128((__m128i *)(void *)out,
		                 _mm_add_epi8(_mm_shuffle_epi8(shift, k), idx));
	}
	return i;
}

static size_t base64_encode_vector(char *out, const unsigned char *s, size_t n)
{
	return n >= 16 && !base64_vector_off && base64_ssse3_usable() ?
	       base64_encode_ssse3(out, s, n) : 0;
}
#elif defined(__aarch64__)
#include <arm_neon.h>

static size_t base64_encode_vector(char *out, const unsigned char *s, size_t n)
{
	const uint8x16_t m = vdupq_n_u8(63);
	uint8x16x4_t abc, idx, chars;
	size_t i = 0;

	if (base64_vector_off)
		return 0;
	for (int k = 0; k < 4; k++)
		abc.val[k] = vld1q_u8((const uint8_t *)base64_alphabet + 16 * k);
	for (; n - i >= 48; i += 48, out += 64) {
		uint8x16x3_t in = vld3q_u8(s + i); /* byte 0, 1 and 2 of 16 groups */
		idx.val[0] = vshrq_n_u8(in.val[0], 2);
		idx.val[1] = vandq_u8(vorrq_u8(vshlq_n_u8(in.val[0], 4), vshrq_n_u8(in.val[1], 4)), m);
		idx.val[2] = vandq_u8(vorrq_u8(vshlq_n_u8(in.val[1], 2), vshrq_n_u8(in.val[2], 6)), m);
		idx.val[3] = vandq_u8(in.val[2], m);
		for (int k = 0; k < 4; k++)
			chars.val[k] = vqtbl4q_u8(abc, idx.val[k]);
		vst4q_u8((uint8_t *)out, chars);
	}
	return i;
}
#else
static size_t base64_encode_vector(char *out, const unsigned char *s, size_t n)
{
	(void)out;
	(void)s;
	(void)n;
	return 0;
}
#endif

/* see json_min.h */
void base64_select(int vector)
{
	base64_vector_off = !vector;
}

static uint64_t load_be64(const unsigned char *s)
{
	return (uint64_t)s[0] << 56 | (uint64_t)s[1] << 48 | (uint64_t)s[2] << 40 |
	       (uint64_t)s[3] << 32 | (uint64_t)s[4] << 24 | (uint64_t)s[5] << 16 |
	       (uint64_t)s[6] << 8 | s[7];
}

/* see json_min.h */
size_t base64_encode(char *out, size_t cap, const void *in, size_t n)
{
	const unsigned char *s = in;
	size_t i, o = 0;
	uint32_t v;

	if (n > SIZE_MAX / 4 * 3 - 2 || BASE64_ENCODED_LEN(n) > cap)
		return (size_t)-1;
	i = base64_encode_vector(out, s, n);
	o = i / 3 * 4;
	if (n - i >= 8 && !base64_pairs[0])
		base64_pairs_fill();
	/* Six bytes at a time from an eight-byte load (two bytes past them read, not used). */
	for (; n - i >= 8; i += 6, o += 8) {
		uint64_t b = load_be64(s + i);
		memcpy(out + o, &base64_pairs[b >> 52], 2);
		memcpy(out + o + 2, &base64_pairs[b >> 40 & 0xfff], 2);
		memcpy(out + o + 4, &base64_pairs[b >> 28 & 0xfff], 2);
		memcpy(out + o + 6, &base64_pairs[b >> 16 & 0xfff], 2);
	}
	for (; n - i >= 3; i += 3) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		out[o++] = base64_alphabet[v >> 18];
		out[o++] = base64_alphabet[v >> 12 & 63];
		out[o++] = base64_alphabet[v >> 6 & 63];
		out[o++] = base64_alphabet[v & 63];
	}
	if (n - i > 0) {
		v = (uint32_t)s[i] << 16;
		if (n - i == 2)
			v |= (uint32_t)s[i + 1] << 8;
		out[o++] = base64_alphabet[v >> 18];
		out[o++] = base64_alphabet[v >> 12 & 63];
		out[o++] = n - i == 2 ? base64_alphabet[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	return o;
}

/* see json_min.h */
size_t base64_decode(void *out, size_t cap, const char *in, size_t n)
{
	const unsigned char *s = (const unsigned char *)in;
	unsigned char *d = out;
	size_t i, o = 0, pad = 0;
	int a, b, c, e;

	if (n % 4 != 0)
		return (size_t)-1;
	if (n == 0)
		return 0;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	if (n / 4 * 3 - pad > cap)
		return (size_t)-1;
	for (i = 0; i < n; i += 4) {
		a = base64_value[s[i]];
		b = base64_value[s[i + 1]];
		c = i + 4 == n && pad == 2 ? 0 : base64_value[s[i + 2]];
		e = i + 4 == n && pad >= 1 ? 0 : base64_value[s[i + 3]];
		if ((a | b | c | e) < 0)
			return (size_t)-1;
		d[o++] = (unsigned char)(a << 2 | b >> 4);
		if (i + 4 == n && pad == 2) {
			if (b & 15)
				return (size_t)-1; /* not canonical */
			break;
		}
		d[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
		if (i + 4 == n && pad == 1) {
			if (c & 3)
				return (size_t)-1; /* not canonical */
			break;
		}
		d[o++] = (unsigned char)((c & 3) << 6 | e);
	}
	return o;
}
