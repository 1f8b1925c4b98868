/*
 * json_min.h - a zero-allocation, strict JSON tokenizer and a few writer helpers.
 *
 * In the spirit of jsmn: the caller owns the input and the token array; tokens are byte spans into
 * the input. Validation is strict RFC 8259: no trailing commas, no bad escapes, no raw control
 * characters, no lone surrogates in \u escapes, valid UTF-8 only, nothing after the top-level value
 * but white space.
 *
 * Depth: the top-level value is at depth 1; the members and elements of a container at depth d are
 * at depth d + 1. max_depth bounds the depth of containers (objects and arrays): `[[1]]` needs a
 * max_depth of 2. The parser does not recurse; it keeps one bit per open container, so nesting is
 * also bounded by JSON_MAX_DEPTH_LIMIT whatever the caller passes.
 *
 * Emit depth: a caller that only needs the top levels of a document passes emit_depth. The children
 * of containers at depth <= emit_depth get tokens; a container at depth emit_depth + 1 gets one
 * "collapsed" token (its span, flag JSON_COLLAPSED, size 0, no children) and everything inside it
 * is still fully validated. This bounds the tokens a large document needs: a Telemetry API batch
 * parsed with emit_depth 1 needs one token per event (plus one for the array), whatever each event
 * holds. Example: `[{"a":1},{"b":[2]}]` with emit_depth 1 gives 3 tokens.
 */
#ifndef TELKIN_JSON_MIN_H
#define TELKIN_JSON_MIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h> /* strlen: json_object_get */

enum json_type {
	JSON_NONE = 0,
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL
};

/*
 * Hard bound on nesting (the parser's bracket stack is JSON_MAX_DEPTH_LIMIT bits on the stack).
 * A Telemetry API batch nests 5 deep (batch, event, record, spans, span) before a function's
 * JSON log adds its own levels; 1024 leaves room for any sane document.
 */
#define JSON_MAX_DEPTH_LIMIT 1024

/* Token flags. */
#define JSON_ESCAPED   0x01 /* a string that contains at least one backslash escape */
#define JSON_COLLAPSED 0x02 /* a container deeper than emit_depth: its children were not emitted */

/*
 * One value. For strings, [start, end) excludes the quotes; for everything else it is the value's
 * exact text (objects and arrays include their brackets).
 * Object children come in pairs: a key (JSON_STRING) then its value. `size` counts members for an
 * object, elements for an array, 0 otherwise. `next` is the index of the first token after this
 * value and all its descendants, so siblings are walked with `i = toks[i].next`.
 */
struct json_token {
	uint32_t start;
	uint32_t end;
	uint32_t next;
	uint32_t size;
	uint8_t type;  /* enum json_type */
	uint8_t flags; /* JSON_ESCAPED, JSON_COLLAPSED */
};

/* Error codes: json_parse returns one of these (negative) or the number of tokens (>= 1). */
enum json_error {
	JSON_ERR_INCOMPLETE = -1, /* input ended inside a value: more bytes may make it valid */
	JSON_ERR_SYNTAX = -2,     /* unexpected character */
	JSON_ERR_NOMEM = -3,      /* more tokens needed than the caller gave */
	JSON_ERR_DEPTH = -4,      /* nesting deeper than max_depth */
	JSON_ERR_ESCAPE = -5,     /* bad backslash escape or lone surrogate */
	JSON_ERR_CONTROL = -6,    /* raw control character (< 0x20) inside a string */
	JSON_ERR_UTF8 = -7,       /* invalid UTF-8 (overlong, surrogate, > U+10FFFF, truncated) */
	JSON_ERR_TRAILING = -8,   /* something other than white space after the top-level value */
	JSON_ERR_NUMBER = -9,     /* malformed number (leading zero, lone minus, bad exponent, ...) */
	JSON_ERR_TOOBIG = -10     /* input longer than a token offset can hold (4 GiB) */
};

/* A short, static, human-readable name for an error code ("syntax error", ...). */
const char *json_strerror(int err);

/*
 * Tokenize js[0..len). Tokens are written to toks[0..max_tokens), in document order; toks[0] is the
 * top-level value. A container deeper than max_depth is an error (max_depth 0, or more than
 * JSON_MAX_DEPTH_LIMIT, means JSON_MAX_DEPTH_LIMIT). Containers deeper than emit_depth appear
 * collapsed (see above; emit_depth 0 means "no limit").
 * Returns the number of tokens (>= 1), or a negative enum json_error; then *err_offset (if not NULL)
 * is the byte offset where the problem was found: the unexpected byte, the opening bracket that is
 * too deep, the value that needed a token, the backslash of a bad escape, the first byte of a bad
 * UTF-8 sequence or of a malformed number, len for JSON_ERR_INCOMPLETE and UINT32_MAX for
 * JSON_ERR_TOOBIG. The content of toks is unspecified after an error. max_tokens above INT_MAX
 * counts as INT_MAX (the count is returned as an int).
 * Empty input (or only white space) is JSON_ERR_INCOMPLETE. A top-level number ends at the end of
 * the input, so `-` alone or `1.` alone is JSON_ERR_NUMBER, while `[1.` is JSON_ERR_INCOMPLETE.
 */
int json_parse(const char *js, size_t len, struct json_token *toks, size_t max_tokens,
               unsigned max_depth, unsigned emit_depth, size_t *err_offset);

/*
 * json_parse for a text json_parse has already accepted (a value cut from a document it accepted):
 * the same tokens, faster, because strings are only scanned for their closing quote, not checked
 * again (escapes, UTF-8, control characters). Given any other text it never reads outside
 * js[0..len), but its tokens, or its error, may differ from json_parse's.
 */
int json_parse_accepted(const char *js, size_t len, struct json_token *toks, size_t max_tokens,
                        unsigned max_depth, unsigned emit_depth);

/*
 * In the object at token index obj, find the member named key (key_len bytes, then a NUL; none
 * inside; compared after unescaping). Returns the index of the member's value token, or -1 (not
 * an object, collapsed, or no such key). With duplicate keys, the first one wins.
 */
int json_object_get_n(const char *js, const struct json_token *toks, int obj, const char *key,
                      size_t key_len);

/* json_object_get_n for a NUL-terminated key (inlined: a literal's length is known when
 * compiling). */
__attribute__((always_inline))
static inline int json_object_get(const char *js, const struct json_token *toks, int obj,
                                  const char *key)
{
	return json_object_get_n(js, toks, obj, key, strlen(key));
}

/* 1 when the string token t equals s (after unescaping), else 0 (also when t is not a string). */
int json_string_eq(const char *js, const struct json_token *t, const char *s);

/*
 * Unescape the string token t into out (cap bytes, always NUL-terminated when cap > 0; "" on
 * failure). \uXXXX escapes become UTF-8 (a surrogate pair becomes one 4-byte character; \u0000
 * becomes a NUL byte inside the returned length).
 * Returns the unescaped length, or -1 when t is not a string or it does not fit (cap - 1 bytes).
 */
long json_string_copy(const char *js, const struct json_token *t, char *out, size_t cap);

/*
 * Read the number token t as a signed 64-bit integer. Fractions and exponents are rejected.
 * Returns 0 and sets *out, or -1 (not a number, not an integer, or out of range).
 */
int json_int64(const char *js, const struct json_token *t, int64_t *out);

/*
 * Writers. Both return the number of bytes written, or (size_t)-1 when cap is too small; then the
 * content of out is unspecified. Neither writes a terminating NUL.
 */

/*
 * The longest prefix of s[0..n) whose escaped form fits in budget bytes, never ending inside a
 * UTF-8 sequence (for truncating text into a bounded JSON string).
 */
size_t json_escape_fit(const char *s, size_t n, size_t budget);

/* Bytes json_escape would write for s[0..n) (without quotes). */
size_t json_escaped_len(const char *s, size_t n);

/*
 * Write s[0..n) as the inside of a JSON string (no surrounding quotes): '"', '\\' and control
 * characters are escaped (\n \r \t \b \f, else \u00XX); bytes >= 0x80 are copied as they are
 * (the caller passes valid UTF-8, or accepts it unvalidated).
 */
size_t json_escape(char *out, size_t cap, const char *s, size_t n);

/* Length of the standard base64 (RFC 4648, padded) encoding of n bytes. */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Standard base64 with padding (RFC 4648 section 4). Returns BASE64_ENCODED_LEN(n), or (size_t)-1. */
size_t base64_encode(char *out, size_t cap, const void *in, size_t n);

/*
 * base64_encode's vector code: on by default (x86_64 with SSSE3, checked at the first call; every
 * arm64). 0 leaves the scalar code alone, for tests and benchmarks that compare the two.
 */
void base64_select(int vector);

/*
 * Decode standard padded base64 (no white space). Only the canonical encoding is accepted: n is a
 * multiple of 4, '=' only as the last one or two characters, and the unused bits before the
 * padding are zero (RFC 4648 section 3.5). Returns the decoded length, or (size_t)-1 on invalid
 * input or when cap is too small.
 */
size_t base64_decode(void *out, size_t cap, const char *in, size_t n);

#endif
