/*
 * Unit tests for json_min (included by telkin_test.c).
 *
 * Error cases are parsed from a heap copy of exactly the input's length, so that ASan reports any
 * read past the end of the input.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../json_min.h" /* the test build has no -I.: relative to tests/ */

#define NTOK 64

struct json_err_case {
	const char *js;
	size_t len; /* 0: strlen(js) */
	int err;
	size_t offset; /* SIZE_MAX: the input's length */
};

/* Parse js[0..len) from an exact-size heap copy; returns json_parse's result. */
static int parse_exact(const char *js, size_t len, unsigned max_depth, unsigned emit_depth,
                       size_t *off)
{
	struct json_token toks[NTOK];
	char *copy = malloc(len ? len : 1);
	int r;

	assert_non_null(copy);
	memcpy(copy, js, len);
	r = json_parse(copy, len, toks, NTOK, max_depth, emit_depth, off);
	free(copy);
	return r;
}

static int parse(const char *js, struct json_token *toks, size_t max_tokens, unsigned emit_depth)
{
	size_t off = 0;

	return json_parse(js, strlen(js), toks, max_tokens, 64, emit_depth, &off);
}

static void check_errors(const struct json_err_case *cases, size_t n)
{
	size_t i, len, off;
	int r;

	for (i = 0; i < n; i++) {
		len = cases[i].len ? cases[i].len : strlen(cases[i].js);
		off = (size_t)-2;
		r = parse_exact(cases[i].js, len, 64, 0, &off);
		if (r != cases[i].err) {
			print_error("case %zu: %s\n", i, cases[i].js);
			assert_int_equal(r, cases[i].err);
		}
		if (off != (cases[i].offset == SIZE_MAX ? len : cases[i].offset)) {
			print_error("case %zu: %s\n", i, cases[i].js);
			assert_int_equal(off, cases[i].offset == SIZE_MAX ? len : cases[i].offset);
		}
	}
}

static void assert_span(const char *js, const struct json_token *t, const char *text)
{
	assert_int_equal(t->end - t->start, strlen(text));
	assert_memory_equal(js + t->start, text, strlen(text));
}

/* ----------------------------------------------------------------------------------------- */
/* Valid documents */

static void test_json_parses_object_with_every_value_type(void **state)
{
	const char *js = "{\"s\":\"x\",\"n\":-1.5e3,\"t\":true,\"f\":false,\"z\":null,\"a\":[],\"o\":{}}";
	static const uint8_t types[] = {
		JSON_OBJECT, JSON_STRING, JSON_STRING, JSON_STRING, JSON_NUMBER, JSON_STRING, JSON_TRUE,
		JSON_STRING, JSON_FALSE, JSON_STRING, JSON_NULL, JSON_STRING, JSON_ARRAY, JSON_STRING,
		JSON_OBJECT,
	};
	struct json_token toks[NTOK];
	size_t i;

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 15);
	for (i = 0; i < sizeof types; i++)
		assert_int_equal(toks[i].type, types[i]);
	assert_int_equal(toks[0].size, 7);
	assert_span(js, &toks[4], "-1.5e3");
	assert_span(js, &toks[6], "true");
	assert_span(js, &toks[8], "false");
	assert_span(js, &toks[10], "null");
	assert_span(js, &toks[12], "[]");
	assert_span(js, &toks[14], "{}");
}

static void test_json_parses_scalar_top_level_values(void **state)
{
	static const struct {
		const char *js;
		uint8_t type;
		const char *span;
	} cases[] = {
		{ "\"abc\"", JSON_STRING, "abc" },
		{ "\"\"", JSON_STRING, "" },
		{ "0", JSON_NUMBER, "0" },
		{ " -12.5E+10 ", JSON_NUMBER, "-12.5E+10" },
		{ "true", JSON_TRUE, "true" },
		{ "false\n", JSON_FALSE, "false" },
		{ "\tnull", JSON_NULL, "null" },
	};
	struct json_token toks[NTOK];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(parse(cases[i].js, toks, NTOK, 0), 1);
		assert_int_equal(toks[0].type, cases[i].type);
		assert_int_equal(toks[0].next, 1);
		assert_span(cases[i].js, &toks[0], cases[i].span);
	}
}

static void test_json_accepts_every_number_form_of_rfc8259(void **state)
{
	static const char *const cases[] = {
		"0", "-0", "7", "-12", "0.5", "-0.0", "10.25", "1e5", "1E5", "1e+5", "1e-5", "1E-05",
		"-0.0e0", "123456789012345678901234567890", "1.7976931348623157e309",
	};
	struct json_token toks[NTOK];
	size_t i, off;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(parse_exact(cases[i], strlen(cases[i]), 64, 0, &off), 1);
		assert_int_equal(parse(cases[i], toks, NTOK, 0), 1);
		assert_span(cases[i], &toks[0], cases[i]);
	}
}

static void test_json_string_token_excludes_the_quotes(void **state)
{
	const char *js = "[\"hello\"]";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 2);
	assert_int_equal(toks[1].start, 2);
	assert_int_equal(toks[1].end, 7);
}

static void test_json_container_span_includes_the_brackets(void **state)
{
	const char *js = "  {\"a\": [1, 2] }  ";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 5);
	assert_span(js, &toks[0], "{\"a\": [1, 2] }");
	assert_span(js, &toks[2], "[1, 2]");
}

static void test_json_next_skips_a_value_and_its_descendants(void **state)
{
	/* 0:[ 1:[ 2:1 3:[ 4:2 5:{ 6:"k" 7:[ 8:3 9:4 */
	const char *js = "[[1,[2]],{\"k\":[3]},4]";
	static const uint32_t next[] = { 10, 5, 3, 5, 5, 9, 7, 9, 9, 10 };
	struct json_token toks[NTOK];
	size_t i;

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 10);
	for (i = 0; i < 10; i++)
		assert_int_equal(toks[i].next, next[i]);
}

static void test_json_size_counts_members_and_elements(void **state)
{
	const char *js = "{\"a\":[1,2,3],\"b\":{},\"c\":[[],[]]}";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 12);
	assert_int_equal(toks[0].size, 3);  /* members, not tokens */
	assert_int_equal(toks[1].size, 0);  /* a key */
	assert_int_equal(toks[2].size, 3);
	assert_int_equal(toks[3].size, 0);  /* a number */
	assert_int_equal(toks[7].size, 0);  /* {} */
	assert_int_equal(toks[9].size, 2);  /* [[],[]] */
}

static void test_json_siblings_walk_with_next(void **state)
{
	const char *js = "[{\"a\":[1,2]},\"x\",[[3]],null]";
	static const uint8_t types[] = { JSON_OBJECT, JSON_STRING, JSON_ARRAY, JSON_NULL };
	struct json_token toks[NTOK];
	uint32_t i, k = 0;
	int n;

	(void)state;
	n = parse(js, toks, NTOK, 0);
	assert_true(n > 0);
	for (i = 1; i < (uint32_t)n; i = toks[i].next)
		assert_int_equal(toks[i].type, types[k++]);
	assert_int_equal(k, toks[0].size);
	assert_int_equal(k, 4);
}

static void test_json_accepts_white_space_between_all_tokens(void **state)
{
	const char *js = " \t\r\n{ \"a\" :\n[ 1 ,\t2 ] , \"b\" : { } }\r\n ";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 7);
	assert_int_equal(toks[0].size, 2);
	assert_int_equal(toks[2].size, 2);
}

static void test_json_sets_escaped_flag_only_on_escaped_strings(void **state)
{
	const char *js = "[\"plain\",\"a\\nb\",\"caf\xc3\xa9\",\"\\u00e9\"]";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 5);
	assert_int_equal(toks[1].flags, 0);
	assert_int_equal(toks[2].flags, JSON_ESCAPED);
	assert_int_equal(toks[3].flags, 0);
	assert_int_equal(toks[4].flags, JSON_ESCAPED);
}

static void test_json_accepts_every_simple_escape(void **state)
{
	const char *js = "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"";
	size_t off;

	(void)state;
	assert_int_equal(parse_exact(js, strlen(js), 64, 0, &off), 1);
}

static void test_json_accepts_escaped_surrogate_pairs(void **state)
{
	static const char *const cases[] = {
		"\"\\ud83d\\ude00\"", "\"\\uD800\\uDC00\"", "\"\\uDBFF\\uDFFF\"", "\"x\\uD834\\uDD1Ey\"",
	};
	size_t i, off;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(parse_exact(cases[i], strlen(cases[i]), 64, 0, &off), 1);
}

static void test_json_accepts_valid_utf8_at_every_boundary(void **state)
{
	static const char *const cases[] = {
		"\"\x7f\"",                 /* DEL is not a control character to JSON */
		"\"\xc2\x80\"",             /* U+0080 */
		"\"\xdf\xbf\"",             /* U+07FF */
		"\"\xe0\xa0\x80\"",         /* U+0800 */
		"\"\xed\x9f\xbf\"",         /* U+D7FF */
		"\"\xee\x80\x80\"",         /* U+E000 */
		"\"\xef\xbf\xbf\"",         /* U+FFFF */
		"\"\xf0\x90\x80\x80\"",     /* U+10000 */
		"\"\xf4\x8f\xbf\xbf\"",     /* U+10FFFF */
		"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
	};
	size_t i, off;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(parse_exact(cases[i], strlen(cases[i]), 64, 0, &off), 1);
}

static void test_json_accepts_escaped_nul_character(void **state)
{
	const char *js = "\"a\\u0000b\"";
	size_t off;

	(void)state;
	assert_int_equal(parse_exact(js, strlen(js), 64, 0, &off), 1);
}

static void test_json_accepts_duplicate_keys(void **state)
{
	const char *js = "{\"a\":1,\"a\":2}";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 5);
	assert_int_equal(toks[0].size, 2);
}

/* ----------------------------------------------------------------------------------------- */
/* Emit depth */

static void test_json_emit_depth_1_collapses_array_elements(void **state)
{
	const char *js = "[{\"a\":1},{\"b\":[2]}]";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 1), 3);
	assert_int_equal(toks[0].type, JSON_ARRAY);
	assert_int_equal(toks[0].size, 2);
	assert_int_equal(toks[0].flags, 0);
	assert_int_equal(toks[0].next, 3);
	assert_int_equal(toks[1].type, JSON_OBJECT);
	assert_int_equal(toks[1].flags, JSON_COLLAPSED);
	assert_int_equal(toks[1].size, 0);
	assert_int_equal(toks[1].next, 2);
	assert_span(js, &toks[1], "{\"a\":1}");
	assert_int_equal(toks[2].flags, JSON_COLLAPSED);
	assert_int_equal(toks[2].next, 3);
	assert_span(js, &toks[2], "{\"b\":[2]}");
}

static void test_json_emit_depth_1_still_emits_scalar_elements(void **state)
{
	const char *js = "[1,\"x\",{},[]]";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 1), 5);
	assert_int_equal(toks[1].type, JSON_NUMBER);
	assert_int_equal(toks[2].type, JSON_STRING);
	assert_int_equal(toks[2].flags, 0);
	assert_int_equal(toks[3].flags, JSON_COLLAPSED);
	assert_int_equal(toks[4].flags, JSON_COLLAPSED);
	assert_int_equal(toks[0].size, 4);
}

static void test_json_emit_depth_2_collapses_only_the_third_level(void **state)
{
	/* 0:{ 1:"a" 2:{ 3:"b" 4:[1,2] collapsed 5:"c" 6:[ 7:3 */
	const char *js = "{\"a\":{\"b\":[1,2]},\"c\":[3]}";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 2), 8);
	assert_int_equal(toks[2].flags, 0);
	assert_int_equal(toks[2].size, 1);
	assert_int_equal(toks[2].next, 5);
	assert_int_equal(toks[4].flags, JSON_COLLAPSED);
	assert_span(js, &toks[4], "[1,2]");
	assert_int_equal(toks[6].flags, 0);
	assert_int_equal(toks[7].type, JSON_NUMBER);
	assert_int_equal(toks[0].next, 8);
}

static void test_json_emit_depth_0_emits_every_value(void **state)
{
	const char *js = "[[[[1]]]]";
	struct json_token toks[NTOK];
	int i;

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 5);
	for (i = 0; i < 5; i++)
		assert_int_equal(toks[i].flags, 0);
}

static void test_json_collapsed_object_member_keeps_its_key_token(void **state)
{
	const char *js = "{\"rec\":{\"x\":[1]},\"n\":2}";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 1), 5);
	assert_int_equal(toks[1].type, JSON_STRING);
	assert_int_equal(toks[2].flags, JSON_COLLAPSED);
	assert_span(js, &toks[2], "{\"x\":[1]}");
	assert_int_equal(toks[0].size, 2);
}

static void test_json_collapsed_values_are_still_validated(void **state)
{
	static const struct json_err_case cases[] = {
		{ "[{\"a\":[1,]}]", 0, JSON_ERR_SYNTAX, 9 },
		{ "[{\"a\":\"\\x\"}]", 0, JSON_ERR_ESCAPE, 7 },
		{ "[{\"a\":\"\xc0\xaf\"}]", 0, JSON_ERR_UTF8, 7 },
		{ "[{\"a\":01}]", 0, JSON_ERR_NUMBER, 6 },
		{ "[{\"a\":\"\x01\"}]", 0, JSON_ERR_CONTROL, 7 },
		{ "[{\"a\" 1}]", 0, JSON_ERR_SYNTAX, 6 },
		{ "[{\"a\":tru}]", 0, JSON_ERR_SYNTAX, 9 },
		{ "[{\"a\":[1", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
	};
	size_t i, off;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		off = 0;
		assert_int_equal(parse_exact(cases[i].js, strlen(cases[i].js), 64, 1, &off),
		                 cases[i].err);
		assert_int_equal(off, cases[i].offset == SIZE_MAX ? strlen(cases[i].js)
		                                                  : cases[i].offset);
	}
}

static void test_json_collapsed_values_reject_mismatched_brackets(void **state)
{
	static const struct json_err_case cases[] = {
		{ "[{]}", 0, JSON_ERR_SYNTAX, 2 },
		{ "[[}]", 0, JSON_ERR_SYNTAX, 2 },
		{ "[[{\"a\":[}]]]", 0, JSON_ERR_SYNTAX, 8 },
		{ "[[[[]]]}", 0, JSON_ERR_SYNTAX, 7 },
	};
	size_t i, off;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		off = 0;
		assert_int_equal(parse_exact(cases[i].js, strlen(cases[i].js), 64, 1, &off),
		                 JSON_ERR_SYNTAX);
		assert_int_equal(off, cases[i].offset);
	}
}

static void test_json_collapsed_values_count_toward_max_depth(void **state)
{
	size_t off = 0;

	(void)state;
	assert_int_equal(parse_exact("[[[[1]]]]", 9, 3, 1, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, 3);
	assert_int_equal(parse_exact("[[[1]]]", 7, 3, 1, &off), 2);
}

/* ----------------------------------------------------------------------------------------- */
/* Errors */

static void test_json_reports_incomplete_input_at_its_end(void **state)
{
	static const struct json_err_case cases[] = {
		{ "", 0, JSON_ERR_INCOMPLETE, 0 },
		{ " \n\t", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "{", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "{\"a\"", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "{\"a\":", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "{\"a\":1", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "{\"a\":1,", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "{\"a", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[1", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[1,", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[[]", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"abc", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"abcdefghijklmnopqrstuvwxyz", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"a\\", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\\u12", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\\ud83d", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\\ud83d\\", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\\ud83d\\u", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\\ud83d\\ude0", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\\ud83d\\ude00", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\xc3", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\xe2\x82", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "\"\xf0\x9f\x98", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "t", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "tru", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[fals", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[nul", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[-", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[1.", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[1e", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
		{ "[1e+", 0, JSON_ERR_INCOMPLETE, SIZE_MAX },
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_every_proper_prefix_of_a_document_is_incomplete(void **state)
{
	const char *js = " {\"k\\u00e9y\": [1, -2.5e+3, 0, true, false, null, \"\\ud83d\\ude00 caf\xc3\xa9"
	                 " \xf0\x9f\x98\x80\", {\"n\": {}} , []], \"z\" : \"\\\"\"} ";
	size_t len = strlen(js), cut, end = len - 1, off;

	(void)state;
	assert_int_equal(parse_exact(js, len, 64, 0, &off), 16);
	for (cut = 0; cut < end; cut++) {
		off = 0;
		if (parse_exact(js, cut, 64, 0, &off) != JSON_ERR_INCOMPLETE)
			fail_msg("prefix of %zu bytes is not incomplete", cut);
		assert_int_equal(off, cut);
	}
}

static void test_json_reports_syntax_errors_at_the_unexpected_byte(void **state)
{
	static const struct json_err_case cases[] = {
		{ "}", 0, JSON_ERR_SYNTAX, 0 },
		{ "]", 0, JSON_ERR_SYNTAX, 0 },
		{ ":", 0, JSON_ERR_SYNTAX, 0 },
		{ ",", 0, JSON_ERR_SYNTAX, 0 },
		{ "[1 2]", 0, JSON_ERR_SYNTAX, 3 },
		{ "{\"a\" 1}", 0, JSON_ERR_SYNTAX, 5 },
		{ "{1:2}", 0, JSON_ERR_SYNTAX, 1 },
		{ "{\"a\":1 \"b\":2}", 0, JSON_ERR_SYNTAX, 7 },
		{ "[,1]", 0, JSON_ERR_SYNTAX, 1 },
		{ "{,}", 0, JSON_ERR_SYNTAX, 1 },
		{ "[1:2]", 0, JSON_ERR_SYNTAX, 2 },
		{ "{\"a\",1}", 0, JSON_ERR_SYNTAX, 4 },
		{ "{\"a\"::1}", 0, JSON_ERR_SYNTAX, 5 },
		{ "{\"a\":}", 0, JSON_ERR_SYNTAX, 5 },
		{ "[tru]", 0, JSON_ERR_SYNTAX, 4 },
		{ "nulx", 0, JSON_ERR_SYNTAX, 3 },
		{ "[True]", 0, JSON_ERR_SYNTAX, 1 },
		{ "{'a':1}", 0, JSON_ERR_SYNTAX, 1 },
		{ "[1}", 0, JSON_ERR_SYNTAX, 2 },
		{ "{\"a\":1]", 0, JSON_ERR_SYNTAX, 6 },
		{ "[\"a\"\"b\"]", 0, JSON_ERR_SYNTAX, 4 },
		{ "[undefined]", 0, JSON_ERR_SYNTAX, 1 },
		{ "[NaN]", 0, JSON_ERR_SYNTAX, 1 },
		{ "[Infinity]", 0, JSON_ERR_SYNTAX, 1 },
		{ "[\xc3\xa9]", 0, JSON_ERR_SYNTAX, 1 },
		{ "\xef\xbb\xbf{}", 0, JSON_ERR_SYNTAX, 0 }, /* a byte order mark is not white space */
		{ "[\v1]", 0, JSON_ERR_SYNTAX, 1 },
		{ "[\f1]", 0, JSON_ERR_SYNTAX, 1 },
		{ "[1,\x00]", 5, JSON_ERR_SYNTAX, 3 },
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_rejects_trailing_comma_in_array(void **state)
{
	static const struct json_err_case cases[] = { { "[1,2,]", 0, JSON_ERR_SYNTAX, 5 } };

	(void)state;
	check_errors(cases, 1);
}

static void test_json_rejects_trailing_comma_in_object(void **state)
{
	static const struct json_err_case cases[] = { { "{\"a\":1,}", 0, JSON_ERR_SYNTAX, 7 } };

	(void)state;
	check_errors(cases, 1);
}

static void test_json_reports_bad_escapes_at_the_backslash(void **state)
{
	static const struct json_err_case cases[] = {
		{ "\"\\x\"", 0, JSON_ERR_ESCAPE, 1 },
		{ "\"ab\\'\"", 0, JSON_ERR_ESCAPE, 3 },
		{ "\"\\0\"", 0, JSON_ERR_ESCAPE, 1 },
		{ "\"\\ \"", 0, JSON_ERR_ESCAPE, 1 },
		{ "\"\\U0041\"", 0, JSON_ERR_ESCAPE, 1 },
		{ "\"\\u12g4\"", 0, JSON_ERR_ESCAPE, 1 },
		{ "\"\\u004\"", 0, JSON_ERR_ESCAPE, 1 },
		{ "\"\\\xc3\xa9\"", 0, JSON_ERR_ESCAPE, 1 },
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_rejects_lone_surrogate_escapes(void **state)
{
	static const struct json_err_case cases[] = {
		{ "\"\\ud800\"", 0, JSON_ERR_ESCAPE, 1 },        /* high, then the end of the string */
		{ "\"\\uDBFF x\"", 0, JSON_ERR_ESCAPE, 1 },      /* high, then a plain character */
		{ "\"a\\ud800\\u0041\"", 0, JSON_ERR_ESCAPE, 2 }, /* high, then not a low one */
		{ "\"\\ud800\\ud800\"", 0, JSON_ERR_ESCAPE, 1 }, /* high, then high */
		{ "\"\\ud800\\n\"", 0, JSON_ERR_ESCAPE, 1 },     /* high, then another escape */
		{ "\"\\ud800\\ue000\"", 0, JSON_ERR_ESCAPE, 1 }, /* high, then above the low range */
		{ "\"\\udc00\"", 0, JSON_ERR_ESCAPE, 1 },        /* lone low */
		{ "\"\\uDFFF\\uDC00\"", 0, JSON_ERR_ESCAPE, 1 }, /* low, then low */
		{ "\"\\ude00\\ud83d\"", 0, JSON_ERR_ESCAPE, 1 }, /* a pair in the wrong order */
		{ "\"\\ud800\\uzzzz\"", 0, JSON_ERR_ESCAPE, 1 },
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_rejects_raw_control_characters_in_strings(void **state)
{
	static const struct json_err_case cases[] = {
		{ "\"a\x01z\"", 0, JSON_ERR_CONTROL, 2 },
		{ "\"\t\"", 0, JSON_ERR_CONTROL, 1 },
		{ "\"\n\"", 0, JSON_ERR_CONTROL, 1 },
		{ "\"\r\"", 0, JSON_ERR_CONTROL, 1 },
		{ "\"\x1f\"", 0, JSON_ERR_CONTROL, 1 },
		{ "\"abcdefghij\x00\"", 13, JSON_ERR_CONTROL, 11 },
		{ "{\"k\x02\":1}", 0, JSON_ERR_CONTROL, 3 },
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_rejects_invalid_utf8(void **state)
{
	static const struct json_err_case cases[] = {
		{ "\"\x80\"", 0, JSON_ERR_UTF8, 1 },                      /* stray continuation */
		{ "\"ab\xbf\"", 0, JSON_ERR_UTF8, 3 },
		{ "\"\xc0\xaf\"", 0, JSON_ERR_UTF8, 1 },                  /* overlong '/' */
		{ "\"\xc1\xbf\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xe0\x80\xaf\"", 0, JSON_ERR_UTF8, 1 },              /* overlong, 3 bytes */
		{ "\"\xe0\x9f\xbf\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xf0\x80\x80\xaf\"", 0, JSON_ERR_UTF8, 1 },          /* overlong, 4 bytes */
		{ "\"\xf0\x8f\xbf\xbf\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xed\xa0\x80\"", 0, JSON_ERR_UTF8, 1 },              /* U+D800 */
		{ "\"\xed\xbf\xbf\"", 0, JSON_ERR_UTF8, 1 },              /* U+DFFF */
		{ "\"\xed\xa0\xbd\xed\xb8\x80\"", 0, JSON_ERR_UTF8, 1 },  /* CESU-8 pair */
		{ "\"\xf4\x90\x80\x80\"", 0, JSON_ERR_UTF8, 1 },          /* U+110000 */
		{ "\"\xf5\x80\x80\x80\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xf8\x88\x80\x80\x80\"", 0, JSON_ERR_UTF8, 1 },      /* old 5-byte form */
		{ "\"\xfc\x84\x80\x80\x80\x80\"", 0, JSON_ERR_UTF8, 1 },  /* old 6-byte form */
		{ "\"\xfe\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xff\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xc3\"", 0, JSON_ERR_UTF8, 1 },                      /* truncated by the quote */
		{ "\"\xc3z\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xe2\x82\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"\xf0\x9f\x98\"", 0, JSON_ERR_UTF8, 1 },
		{ "\"a\xe2\x82\xac\xe2\x82\"", 0, JSON_ERR_UTF8, 5 },
		{ "\"\xc3\xc3\xa9\"", 0, JSON_ERR_UTF8, 1 },              /* lead where a continuation goes */
		{ "\"\xe2\x82\xac\x80\"", 0, JSON_ERR_UTF8, 4 },          /* one continuation too many */
		{ "{\"k\xff\":1}", 0, JSON_ERR_UTF8, 3 },                 /* in a key */
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_rejects_malformed_numbers(void **state)
{
	static const struct json_err_case cases[] = {
		{ "01", 0, JSON_ERR_NUMBER, 0 },
		{ "-", 0, JSON_ERR_NUMBER, 0 },
		{ "1.", 0, JSON_ERR_NUMBER, 0 },
		{ ".5", 0, JSON_ERR_NUMBER, 0 },
		{ "1e", 0, JSON_ERR_NUMBER, 0 },
		{ "1E+", 0, JSON_ERR_NUMBER, 0 },
		{ "-01", 0, JSON_ERR_NUMBER, 0 },
		{ "[-]", 0, JSON_ERR_NUMBER, 1 },
		{ "[01]", 0, JSON_ERR_NUMBER, 1 },
		{ "[00]", 0, JSON_ERR_NUMBER, 1 },
		{ "[1.]", 0, JSON_ERR_NUMBER, 1 },
		{ "[.5]", 0, JSON_ERR_NUMBER, 1 },
		{ "[1e]", 0, JSON_ERR_NUMBER, 1 },
		{ "[1e+]", 0, JSON_ERR_NUMBER, 1 },
		{ "[1.e5]", 0, JSON_ERR_NUMBER, 1 },
		{ "[1.5e]", 0, JSON_ERR_NUMBER, 1 },
		{ "[+1]", 0, JSON_ERR_NUMBER, 1 },
		{ "[-a]", 0, JSON_ERR_NUMBER, 1 },
		{ "[--1]", 0, JSON_ERR_NUMBER, 1 },
		{ "[-Infinity]", 0, JSON_ERR_NUMBER, 1 },
		{ "{\"a\":1.x}", 0, JSON_ERR_NUMBER, 5 },
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_rejects_anything_but_white_space_after_the_value(void **state)
{
	static const struct json_err_case cases[] = {
		{ "{} x", 0, JSON_ERR_TRAILING, 3 },
		{ "1 2", 0, JSON_ERR_TRAILING, 2 },
		{ "[]]", 0, JSON_ERR_TRAILING, 2 },
		{ "{}{}", 0, JSON_ERR_TRAILING, 2 },
		{ "\"a\"\"b\"", 0, JSON_ERR_TRAILING, 3 },
		{ "null,", 0, JSON_ERR_TRAILING, 4 },
		{ "truex", 0, JSON_ERR_TRAILING, 4 },
		{ "0x10", 0, JSON_ERR_TRAILING, 1 },
		{ "1\x00", 2, JSON_ERR_TRAILING, 1 },
		{ "[] \n /", 0, JSON_ERR_TRAILING, 5 },
	};

	(void)state;
	check_errors(cases, sizeof cases / sizeof cases[0]);
}

static void test_json_rejects_empty_input(void **state)
{
	size_t off = 99;

	(void)state;
	assert_int_equal(parse_exact("", 0, 64, 0, &off), JSON_ERR_INCOMPLETE);
	assert_int_equal(off, 0);
}

static void test_json_reports_nomem_at_the_value_that_needed_a_token(void **state)
{
	struct json_token toks[NTOK];
	size_t off = 0;

	(void)state;
	assert_int_equal(json_parse("[1,22]", 6, toks, 2, 64, 0, &off), JSON_ERR_NOMEM);
	assert_int_equal(off, 3);
	assert_int_equal(json_parse("{\"a\":1}", 7, toks, 1, 64, 0, &off), JSON_ERR_NOMEM);
	assert_int_equal(off, 1);
	assert_int_equal(json_parse("1", 1, toks, 0, 64, 0, &off), JSON_ERR_NOMEM);
	assert_int_equal(off, 0);
}

static void test_json_succeeds_with_exactly_enough_tokens(void **state)
{
	struct json_token toks[3];
	size_t off = 0;

	(void)state;
	assert_int_equal(json_parse("[1,22]", 6, toks, 3, 64, 0, &off), 3);
	/* With emit_depth 1 a batch of collapsed events needs one token per event. */
	assert_int_equal(json_parse("[{\"a\":[1,2,3]},{}]", 18, toks, 3, 64, 1, &off), 3);
	assert_int_equal(json_parse("[{\"a\":[1,2,3]},{},{}]", 21, toks, 3, 64, 1, &off),
	                 JSON_ERR_NOMEM);
	assert_int_equal(off, 18);
}

static void test_json_reports_depth_at_the_opening_bracket(void **state)
{
	size_t off = 0;

	(void)state;
	assert_int_equal(parse_exact("[[1]]", 5, 1, 0, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, 1);
	assert_int_equal(parse_exact("{\"a\":{\"b\":{}}}", 14, 2, 0, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, 10);
	/* Scalars inside the deepest container are fine. */
	assert_int_equal(parse_exact("[1]", 3, 1, 0, &off), 2);
}

static void test_json_reports_too_big_input_without_reading_it(void **state)
{
	struct json_token toks[1];
	char one = '1';
	size_t off = 0;

	(void)state;
	if (SIZE_MAX <= UINT32_MAX)
		skip();
	assert_int_equal(json_parse(&one, (size_t)UINT32_MAX + 1, toks, 1, 64, 0, &off),
	                 JSON_ERR_TOOBIG);
	assert_int_equal(off, UINT32_MAX);
}

static void test_json_error_offset_pointer_is_optional(void **state)
{
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(json_parse("[1,]", 4, toks, NTOK, 64, 0, NULL), JSON_ERR_SYNTAX);
	assert_int_equal(json_parse("[1]", 3, toks, NTOK, 64, 0, NULL), 2);
}

static void test_json_strerror_names_every_error(void **state)
{
	int e, f;

	(void)state;
	for (e = JSON_ERR_TOOBIG; e <= JSON_ERR_INCOMPLETE; e++) {
		assert_true(strlen(json_strerror(e)) > 0);
		assert_string_not_equal(json_strerror(e), "unknown error");
		for (f = JSON_ERR_TOOBIG; f < e; f++)
			assert_string_not_equal(json_strerror(e), json_strerror(f));
	}
	assert_string_equal(json_strerror(JSON_ERR_SYNTAX), "syntax error");
	assert_string_equal(json_strerror(-1000), "unknown error");
}

/* ----------------------------------------------------------------------------------------- */
/* Big inputs */

/* n '[' then n ']' (or only the opening ones when close is 0), in a heap buffer of exact size. */
static char *nested_arrays(size_t n, int close, size_t *len)
{
	char *js;

	*len = close ? 2 * n : n;
	js = malloc(*len);
	assert_non_null(js);
	memset(js, '[', n);
	if (close)
		memset(js + n, ']', n);
	return js;
}

static void test_json_rejects_10000_nested_arrays_beyond_max_depth(void **state)
{
	struct json_token toks[NTOK];
	size_t len, off = 0;
	char *js = nested_arrays(10000, 1, &len);

	(void)state;
	assert_int_equal(json_parse(js, len, toks, NTOK, 64, 0, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, 64);
	assert_int_equal(json_parse(js, len, toks, NTOK, 64, 1, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, 64);
	free(js);
}

static void test_json_accepts_nesting_of_exactly_max_depth(void **state)
{
	struct json_token toks[NTOK];
	size_t len, off = 0;
	char *js = nested_arrays(64, 1, &len);
	int i;

	(void)state;
	assert_int_equal(json_parse(js, len, toks, NTOK, 64, 0, &off), 64);
	assert_int_equal(toks[0].next, 64);
	assert_int_equal(toks[0].size, 1);
	assert_int_equal(toks[63].size, 0);
	for (i = 0; i < 64; i++)
		assert_int_equal(toks[i].end - toks[i].start, 2 * (64 - i));
	assert_int_equal(json_parse(js, len, toks, NTOK, 64, 1, &off), 2);
	assert_int_equal(toks[1].flags, JSON_COLLAPSED);
	free(js);
}

static void test_json_bounds_depth_by_the_internal_limit(void **state)
{
	struct json_token toks[2];
	size_t len, off = 0;
	char *deep = nested_arrays(100000, 1, &len);
	char *limit;

	(void)state;
	/* max_depth 0 and max_depth above the limit both mean the limit. */
	assert_int_equal(json_parse(deep, len, toks, 2, 0, 1, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, JSON_MAX_DEPTH_LIMIT);
	assert_int_equal(json_parse(deep, len, toks, 2, 200000, 1, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, JSON_MAX_DEPTH_LIMIT);
	free(deep);
	limit = nested_arrays(JSON_MAX_DEPTH_LIMIT, 1, &len);
	assert_int_equal(json_parse(limit, len, toks, 2, 0, 1, &off), 2);
	free(limit);
}

static void test_json_rejects_deep_nesting_of_objects(void **state)
{
	struct json_token toks[NTOK];
	size_t i, n = 10000, off = 0;
	char *js = malloc(5 * n);

	(void)state;
	assert_non_null(js);
	for (i = 0; i < n; i++)
		memcpy(js + 5 * i, "{\"a\":", 5);
	assert_int_equal(json_parse(js, 5 * n, toks, NTOK, 64, 2, &off), JSON_ERR_DEPTH);
	assert_int_equal(off, 5 * 64);
	free(js);
}

static void test_json_reports_incomplete_for_deeply_open_arrays(void **state)
{
	struct json_token toks[NTOK];
	size_t len, off = 0;
	char *js = nested_arrays(1000, 0, &len);

	(void)state;
	assert_int_equal(json_parse(js, len, toks, NTOK, 1000, 1, &off), JSON_ERR_INCOMPLETE);
	assert_int_equal(off, len);
	free(js);
}

/*
 * Every kind of byte a string scan stops at, at every position of strings up to 70 bytes long, so
 * that each one is met by the sixteen-byte step, the eight-byte step and the byte-by-byte tail
 * (json_min.c: to_special, to_quote_or_backslash): the closing quote ends the token there, an
 * escape and a two-byte UTF-8 character are stepped over, a control character and a stray
 * continuation byte are refused at their offset; json_parse_accepted agrees on the valid ones.
 */
static void test_json_string_scan_stops_at_every_position(void **state)
{
	char js[80];
	struct json_token toks[2], again[2];
	size_t off;

	(void)state;
	for (size_t n = 0; n <= 70; n++) {
		for (size_t k = 0; k <= n; k++) {
			/* a quote at k, blanks after it */
			memset(js, 'a', sizeof(js));
			js[0] = '"';
			js[1 + k] = '"';
			memset(js + 2 + k, ' ', n - k);
			assert_int_equal(json_parse(js, n + 2, toks, 2, 4, 0, &off), 1);
			assert_int_equal(toks[0].end - toks[0].start, k);
			assert_int_equal(json_parse_accepted(js, n + 2, again, 2, 4, 0), 1);
			assert_int_equal(again[0].end, toks[0].end);
			if (k == n)
				continue;
			/* a string of n + 2 bytes with one of these at k: \n, é (C3 A9), 0x01, 0x80 */
			for (int kind = 0; kind < 4; kind++) {
				static const char two[4][2] = { { '\\', 'n' }, { '\xc3', '\xa9' },
				                                { 'a', '\x01' }, { 'a', '\x80' } };
				int r;
				memset(js, 'a', sizeof(js));
				js[0] = '"';
				js[1 + k] = two[kind][0];
				js[2 + k] = two[kind][1];
				js[n + 3] = '"';
				off = SIZE_MAX;
				r = json_parse(js, n + 4, toks, 2, 4, 0, &off);
				if (kind < 2) {
					assert_int_equal(r, 1);
					assert_int_equal(toks[0].end - toks[0].start, n + 2);
					assert_int_equal(!!(toks[0].flags & JSON_ESCAPED), kind == 0);
					assert_int_equal(json_parse_accepted(js, n + 4, again, 2, 4, 0), 1);
					assert_int_equal(again[0].end, toks[0].end);
					assert_int_equal(again[0].flags, toks[0].flags);
				} else {
					assert_int_equal(r, kind == 2 ? JSON_ERR_CONTROL : JSON_ERR_UTF8);
					assert_int_equal(off, 2 + k);
				}
			}
		}
	}
}

static void test_json_parses_a_1_mib_string(void **state)
{
	const size_t n = 1 << 20;
	struct json_token toks[1];
	size_t i, off = 0;
	char *js = malloc(n + 2);
	char *out = malloc(n + 1);

	(void)state;
	assert_non_null(js);
	assert_non_null(out);
	js[0] = '"';
	for (i = 1; i <= n; i++)
		js[i] = (char)('a' + i % 26);
	memcpy(js + 1000, "\xc3\xa9", 2);
	memcpy(js + n - 10, "\\n", 2);
	js[n + 1] = '"';
	assert_int_equal(json_parse(js, n + 2, toks, 1, 1, 0, &off), 1);
	assert_int_equal(toks[0].start, 1);
	assert_int_equal(toks[0].end, n + 1);
	assert_int_equal(toks[0].flags, JSON_ESCAPED);
	assert_int_equal(json_string_copy(js, &toks[0], out, n + 1), n - 1);
	assert_int_equal(out[n - 11], '\n');
	/* Without its closing quote it is incomplete. */
	assert_int_equal(json_parse(js, n + 1, toks, 1, 1, 0, &off), JSON_ERR_INCOMPLETE);
	assert_int_equal(off, n + 1);
	free(out);
	free(js);
}

/* ----------------------------------------------------------------------------------------- */
/* Helpers */

static void test_json_object_get_finds_members_by_name(void **state)
{
	const char *js = "{\"time\":\"t0\",\"type\":\"platform.start\",\"record\":{\"x\":1}}";
	struct json_token toks[NTOK];
	int v;

	(void)state;
	assert_true(parse(js, toks, NTOK, 0) > 0);
	v = json_object_get(js, toks, 0, "type");
	assert_true(v > 0);
	assert_true(json_string_eq(js, &toks[v], "platform.start"));
	v = json_object_get(js, toks, 0, "record");
	assert_true(v > 0);
	assert_int_equal(toks[v].type, JSON_OBJECT);
	assert_int_equal(json_object_get(js, toks, v, "x"), v + 2);
}

static void test_json_object_get_returns_minus_one_for_a_missing_key(void **state)
{
	const char *js = "{\"ab\":1,\"abc\":{\"a\":2}}";
	struct json_token toks[NTOK];

	(void)state;
	assert_true(parse(js, toks, NTOK, 0) > 0);
	assert_int_equal(json_object_get(js, toks, 0, "a"), -1); /* only nested */
	assert_int_equal(json_object_get(js, toks, 0, "abcd"), -1);
	assert_int_equal(json_object_get(js, toks, 0, ""), -1);
}

static void test_json_object_get_skips_nested_values(void **state)
{
	const char *js = "{\"x\":{\"a\":1},\"y\":[{\"a\":3}],\"a\":2}";
	struct json_token toks[NTOK];
	int64_t n = 0;
	int v;

	(void)state;
	assert_true(parse(js, toks, NTOK, 0) > 0);
	v = json_object_get(js, toks, 0, "a");
	assert_true(v > 0);
	assert_int_equal(json_int64(js, &toks[v], &n), 0);
	assert_int_equal(n, 2);
}

static void test_json_object_get_returns_the_first_of_duplicate_keys(void **state)
{
	const char *js = "{\"a\":1,\"a\":2}";
	struct json_token toks[NTOK];

	(void)state;
	assert_true(parse(js, toks, NTOK, 0) > 0);
	assert_int_equal(json_object_get(js, toks, 0, "a"), 2);
}

static void test_json_object_get_matches_escaped_keys(void **state)
{
	const char *js = "{\"a\\u0062\":1,\"\\\"q\\\"\":2,\"caf\\u00e9\":3,\"\\ud83d\\ude00\":4}";
	struct json_token toks[NTOK];

	(void)state;
	assert_true(parse(js, toks, NTOK, 0) > 0);
	assert_int_equal(json_object_get(js, toks, 0, "ab"), 2);
	assert_int_equal(json_object_get(js, toks, 0, "\"q\""), 4);
	assert_int_equal(json_object_get(js, toks, 0, "caf\xc3\xa9"), 6);
	assert_int_equal(json_object_get(js, toks, 0, "\xf0\x9f\x98\x80"), 8);
	assert_int_equal(json_object_get(js, toks, 0, "a\\u0062"), -1);
}

static void test_json_object_get_refuses_non_objects_and_collapsed_objects(void **state)
{
	const char *js = "[{\"a\":1}]";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 1), 2);
	assert_int_equal(json_object_get(js, toks, 0, "a"), -1); /* an array */
	assert_int_equal(json_object_get(js, toks, 1, "a"), -1); /* collapsed */
	assert_int_equal(json_object_get(js, toks, -1, "a"), -1);
	assert_int_equal(parse(js, toks, NTOK, 0), 4);
	assert_int_equal(json_object_get(js, toks, 1, "a"), 3);
}

static void test_json_string_eq_compares_after_unescaping(void **state)
{
	const char *js = "[\"tab\\there\",\"\\u00e9\",\"\\/\",\"plain\",\"a\\u0000b\",5]";
	struct json_token toks[NTOK];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 7);
	assert_true(json_string_eq(js, &toks[1], "tab\there"));
	assert_false(json_string_eq(js, &toks[1], "tab\\there"));
	assert_false(json_string_eq(js, &toks[1], "tab\ther"));
	assert_false(json_string_eq(js, &toks[1], "tab\theree"));
	assert_true(json_string_eq(js, &toks[2], "\xc3\xa9"));
	assert_true(json_string_eq(js, &toks[3], "/"));
	assert_true(json_string_eq(js, &toks[4], "plain"));
	assert_false(json_string_eq(js, &toks[4], "plai"));
	assert_false(json_string_eq(js, &toks[5], "a")); /* a C string cannot hold the NUL */
	assert_false(json_string_eq(js, &toks[6], "5")); /* not a string */
}

static void test_json_string_copy_unescapes_into_utf8(void **state)
{
	const char *js = "\"q\\\"b\\\\s\\/ \\b\\f\\n\\r\\t \\u0041\\u00e9\\u20ac\\ud83d\\ude00\\uDBFF\\uDFFF\"";
	const char *want = "q\"b\\s/ \b\f\n\r\t A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf";
	struct json_token toks[NTOK];
	char out[64];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 1);
	assert_int_equal(json_string_copy(js, &toks[0], out, sizeof out), strlen(want));
	assert_string_equal(out, want);
}

static void test_json_string_copy_keeps_escaped_nul_inside_the_length(void **state)
{
	const char *js = "\"a\\u0000b\"";
	struct json_token toks[NTOK];
	char out[8];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 1);
	assert_int_equal(json_string_copy(js, &toks[0], out, sizeof out), 3);
	assert_memory_equal(out, "a\0b\0", 4);
}

static void test_json_string_copy_fails_when_out_is_too_small(void **state)
{
	const char *js = "[\"abcd\",\"ab\\u00e9\"]";
	struct json_token toks[NTOK];
	char out[8];

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 3);
	assert_int_equal(json_string_copy(js, &toks[1], out, 5), 4); /* exact fit */
	assert_string_equal(out, "abcd");
	memcpy(out, "xxxxxxxx", 8);
	assert_int_equal(json_string_copy(js, &toks[1], out, 4), -1);
	assert_int_equal(out[0], '\0');
	assert_int_equal(json_string_copy(js, &toks[2], out, 5), 4);
	assert_int_equal(json_string_copy(js, &toks[2], out, 4), -1); /* é needs two bytes */
	assert_int_equal(out[0], '\0');
	assert_int_equal(json_string_copy(js, &toks[1], out, 0), -1);
}

static void test_json_string_copy_refuses_non_strings(void **state)
{
	const char *js = "[1]";
	struct json_token toks[NTOK];
	char out[8] = "x";

	(void)state;
	assert_int_equal(parse(js, toks, NTOK, 0), 2);
	assert_int_equal(json_string_copy(js, &toks[1], out, sizeof out), -1);
	assert_int_equal(out[0], '\0');
}

static void test_json_int64_reads_integers_across_the_whole_range(void **state)
{
	static const struct {
		const char *js;
		int64_t v;
	} cases[] = {
		{ "0", 0 },
		{ "-0", 0 },
		{ "42", 42 },
		{ "-7", -7 },
		{ "9223372036854775807", INT64_MAX },
		{ "-9223372036854775808", INT64_MIN },
		{ "-9223372036854775807", -INT64_MAX },
	};
	struct json_token toks[1];
	int64_t v;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(parse(cases[i].js, toks, 1, 0), 1);
		v = 12345;
		assert_int_equal(json_int64(cases[i].js, &toks[0], &v), 0);
		assert_true(v == cases[i].v);
	}
}

static void test_json_int64_rejects_overflow_fractions_and_exponents(void **state)
{
	static const char *const cases[] = {
		"9223372036854775808", "-9223372036854775809", "18446744073709551616",
		"99999999999999999999", "1.0", "1e3", "-1E0", "0.5", "\"1\"", "true", "null",
	};
	struct json_token toks[1];
	int64_t v = 12345;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(parse(cases[i], toks, 1, 0), 1);
		assert_int_equal(json_int64(cases[i], &toks[0], &v), -1);
	}
	assert_true(v == 12345);
}

static void test_json_escape_writes_the_short_escapes(void **state)
{
	const char in[] = "a\"b\\c\nd\re\tf\bg\fh/i\x01j\x1f" "k\x7f" "l\xc3\xa9";
	const char *want = "a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh/i\\u0001j\\u001fk\x7fl\xc3\xa9";
	char out[128];
	size_t n = sizeof in - 1;

	(void)state;
	assert_int_equal(json_escaped_len(in, n), strlen(want));
	assert_int_equal(json_escape(out, sizeof out, in, n), strlen(want));
	assert_memory_equal(out, want, strlen(want));
}

static void test_json_escape_copies_long_plain_runs(void **state)
{
	char in[100], out[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof in; i++)
		in[i] = (char)('A' + i % 26);
	in[50] = '"';
	assert_int_equal(json_escape(out, sizeof out, in, sizeof in), 101);
	assert_memory_equal(out, in, 50);
	assert_memory_equal(out + 50, "\\\"", 2);
	assert_memory_equal(out + 52, in + 51, 49);
}

static void test_json_escape_fails_when_out_is_too_small(void **state)
{
	const char in[] = "ab\"\x01xyz";
	char out[32];
	size_t need = json_escaped_len(in, sizeof in - 1), cap;

	(void)state;
	assert_int_equal(need, 13);
	for (cap = 0; cap < need; cap++)
		assert_int_equal(json_escape(out, cap, in, sizeof in - 1), (size_t)-1);
	assert_int_equal(json_escape(out, need, in, sizeof in - 1), need);
	assert_int_equal(json_escape(NULL, 0, in, 0), 0);
}

/* Escape, quote, parse and unescape: the bytes must come back. */
static void round_trip(const char *in, size_t n)
{
	struct json_token toks[1];
	char js[1024], out[1024];
	size_t e, off = 0;

	assert_true(n <= 128); /* escapes are at most 6 bytes */
	js[0] = '"';
	e = json_escape(js + 1, sizeof js - 2, in, n);
	assert_true(e != (size_t)-1);
	assert_int_equal(e, json_escaped_len(in, n));
	js[e + 1] = '"';
	assert_int_equal(json_parse(js, e + 2, toks, 1, 1, 0, &off), 1);
	assert_int_equal(json_string_copy(js, &toks[0], out, sizeof out), n);
	assert_memory_equal(out, in, n);
}

static void test_json_escape_round_trips_every_ascii_byte(void **state)
{
	char all[128];
	int c;

	(void)state;
	for (c = 0; c < 128; c++) {
		all[c] = (char)c;
		round_trip(all + c, 1);
	}
	round_trip(all, sizeof all);
}

static void test_json_escape_round_trips_every_byte_of_valid_utf8(void **state)
{
	char seq[4];
	int c;

	(void)state;
	for (c = 0x80; c <= 0xBF; c++) { /* every continuation byte */
		seq[0] = '\xc2';
		seq[1] = (char)c;
		round_trip(seq, 2);
	}
	for (c = 0xC2; c <= 0xDF; c++) {
		seq[0] = (char)c;
		seq[1] = '\x80';
		round_trip(seq, 2);
	}
	for (c = 0xE0; c <= 0xEF; c++) {
		seq[0] = (char)c;
		seq[1] = c == 0xE0 ? '\xa0' : '\x80';
		seq[2] = '\x80';
		round_trip(seq, 3);
	}
	for (c = 0xF0; c <= 0xF4; c++) {
		seq[0] = (char)c;
		seq[1] = c == 0xF0 ? '\x90' : '\x80';
		seq[2] = '\x80';
		seq[3] = '\x80';
		round_trip(seq, 4);
	}
}

static void test_json_escape_passes_invalid_bytes_that_the_parser_then_rejects(void **state)
{
	static const unsigned char never_valid[] = { 0xC0, 0xC1, 0xF5, 0xF8, 0xFE, 0xFF };
	struct json_token toks[1];
	char js[8];
	size_t i, off = 0;
	int c;

	(void)state;
	for (c = 0x80; c <= 0xFF; c++) { /* alone, no byte >= 0x80 is UTF-8 */
		js[0] = '"';
		assert_int_equal(json_escape(js + 1, 1, (const char[]){ (char)c }, 1), 1);
		js[2] = '"';
		assert_int_equal(json_parse(js, 3, toks, 1, 1, 0, &off), JSON_ERR_UTF8);
		assert_int_equal(off, 1);
	}
	for (i = 0; i < sizeof never_valid; i++) {
		js[0] = '"';
		js[1] = (char)never_valid[i];
		memcpy(js + 2, "\x80\x80\x80\"", 4);
		assert_int_equal(json_parse(js, 6, toks, 1, 1, 0, &off), JSON_ERR_UTF8);
	}
}

/* ----------------------------------------------------------------------------------------- */
/* base64 */

static const struct {
	const char *raw;
	const char *b64;
} rfc4648_vectors[] = { /* RFC 4648 section 10 */
	{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
};

static void test_base64_encodes_the_rfc4648_vectors(void **state)
{
	char out[16];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof rfc4648_vectors / sizeof rfc4648_vectors[0]; i++) {
		n = strlen(rfc4648_vectors[i].raw);
		assert_int_equal(BASE64_ENCODED_LEN(n), strlen(rfc4648_vectors[i].b64));
		assert_int_equal(base64_encode(out, sizeof out, rfc4648_vectors[i].raw, n),
		                 strlen(rfc4648_vectors[i].b64));
		assert_memory_equal(out, rfc4648_vectors[i].b64, strlen(rfc4648_vectors[i].b64));
	}
}

static void test_base64_decodes_the_rfc4648_vectors(void **state)
{
	char out[16];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof rfc4648_vectors / sizeof rfc4648_vectors[0]; i++) {
		n = strlen(rfc4648_vectors[i].raw);
		assert_int_equal(base64_decode(out, n, rfc4648_vectors[i].b64,
		                               strlen(rfc4648_vectors[i].b64)), n);
		assert_memory_equal(out, rfc4648_vectors[i].raw, n);
	}
}

static void test_base64_round_trips_every_byte_value(void **state)
{
	unsigned char raw[256], back[256];
	char enc[BASE64_ENCODED_LEN(256)];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof raw; i++)
		raw[i] = (unsigned char)(255 - i);
	for (n = 250; n <= 256; n++) {
		assert_int_equal(base64_encode(enc, sizeof enc, raw, n), BASE64_ENCODED_LEN(n));
		assert_int_equal(base64_decode(back, sizeof back, enc, BASE64_ENCODED_LEN(n)), n);
		assert_memory_equal(back, raw, n);
	}
}

/* Long inputs go six bytes at a time through a table of character pairs, short ones (and the
 * tail) three at a time: both give the same characters, for every 12-bit value and every length. */
static void test_base64_six_byte_steps_match_three_byte_steps(void **state)
{
	static unsigned char raw[3 * 4096 + 8];
	static char whole[BASE64_ENCODED_LEN(sizeof raw)], parts[sizeof whole];
	uint32_t x = 12345;
	size_t i, n = 0;

	(void)state;
	for (i = 0; i + 2 < sizeof raw; i += 3) { /* group g starts with the 12 bits of g */
		x = x * 1103515245u + 12345u;
		raw[i] = (unsigned char)(i / 3 >> 4);
		raw[i + 1] = (unsigned char)((i / 3 & 15) << 4 | x >> 28);
		raw[i + 2] = (unsigned char)(x >> 16);
	}
	for (;;) {
		assert_int_equal(base64_encode(whole, sizeof whole, raw, n), BASE64_ENCODED_LEN(n));
		for (i = 0; i < n; i += 3) /* fewer than eight bytes each: the three-byte path */
			assert_int_equal(base64_encode(parts + i / 3 * 4, 4, raw + i, n - i < 3 ? n - i : 3), 4);
		assert_memory_equal(whole, parts, BASE64_ENCODED_LEN(n));
		if (n == sizeof raw)
			break;
		n = n < 64 ? n + 1 : n + 1021 < sizeof raw ? n + 1021 : sizeof raw;
	}
}

/* The vector code (SSSE3 on x86_64 when the CPU has it, NEON on arm64) and the scalar code give
 * the same characters, for every length up to 400 and every alignment of the input. */
static void test_base64_vector_and_scalar_encodings_agree(void **state)
{
	static unsigned char raw[400 + 16];
	static char a[BASE64_ENCODED_LEN(sizeof raw)], b[sizeof a];
	uint32_t x = 77;

	(void)state;
	for (size_t i = 0; i < sizeof raw; i++) {
		x = x * 1103515245u + 12345u;
		raw[i] = (unsigned char)(x >> 23);
	}
	for (size_t off = 0; off < 16; off += 5) {
		for (size_t n = 0; n + off <= sizeof raw; n++) {
			base64_select(1);
			assert_int_equal(base64_encode(a, sizeof a, raw + off, n), BASE64_ENCODED_LEN(n));
			base64_select(0);
			assert_int_equal(base64_encode(b, sizeof b, raw + off, n), BASE64_ENCODED_LEN(n));
			assert_memory_equal(a, b, BASE64_ENCODED_LEN(n));
		}
	}
	base64_select(1);
}

static void test_base64_encode_fails_when_out_is_too_small(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(base64_encode(out, 7, "fooba", 5), (size_t)-1);
	assert_int_equal(base64_encode(out, 8, "fooba", 5), 8);
	assert_int_equal(base64_encode(out, 0, "", 0), 0);
}

static void test_base64_decode_fails_when_out_is_too_small(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(base64_decode(out, 5, "Zm9vYmFy", 8), (size_t)-1);
	assert_int_equal(base64_decode(out, 4, "Zm9vYmE=", 8), (size_t)-1);
	assert_int_equal(base64_decode(out, 5, "Zm9vYmE=", 8), 5);
}

static void test_base64_decode_rejects_invalid_input(void **state)
{
	static const char *const cases[] = {
		"Zg=", "Zg", "Z", "Z===", "====", "Zm9v\n", "Zm9v YmFy", "Zm=v", "=Zm9", "Zm-v",
		"Zm_v", "Zm9v====", "Zg==Zg==", "Zg=a", "Zh==" /* non-zero pad bits */,
		"Zm9=" /* non-zero pad bits */, "Zm9v\x80\x80\x80\x80",
	};
	char out[16];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (base64_decode(out, sizeof out, cases[i], strlen(cases[i])) != (size_t)-1)
			fail_msg("accepted \"%s\"", cases[i]);
	}
}

/* json_parse_accepted: the same tokens as json_parse on what json_parse accepted. */
static void test_json_parse_accepted_gives_json_parse_tokens_on_accepted_text(void **state)
{
	static const char *docs[] = {
		("{\"time\":\"2026-12-01T00:00:00.000Z\",\"type\":\"function\",\"record\":"
		 "\"2026-12-01\\tabc\\tINFO\\tquote \\\" backslash \\\\ caf\u00e9 \\u65e5 \\ud83d\\ude80\\n\"}"),
		"{\"type\":\"platform.start\",\"record\":{\"requestId\":\"r-1\",\"n\":[1,-2.5e3,true,null,{}]}}",
		"[\"\", \"\\\\\", \"\\\"\", \"a\\\\\\\"b\", \"12345678\\\"9\"]",
		"\"\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\"",
	};
	struct json_token a[64], b[64];

	(void)state;
	for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
		for (unsigned emit = 0; emit <= 3; emit++) {
			size_t len = strlen(docs[d]);
			int n = json_parse(docs[d], len, a, 64, 64, emit, NULL);
			assert_true(n > 0);
			assert_int_equal(json_parse_accepted(docs[d], len, b, 64, 64, emit), n);
			for (int i = 0; i < n; i++) {
				assert_int_equal(a[i].start, b[i].start);
				assert_int_equal(a[i].end, b[i].end);
				assert_int_equal(a[i].next, b[i].next);
				assert_int_equal(a[i].size, b[i].size);
				assert_int_equal(a[i].type, b[i].type);
				assert_int_equal(a[i].flags, b[i].flags);
			}
		}
	}
}

/* Given text json_parse refuses, it may answer differently but reads nothing outside it. */
static void test_json_parse_accepted_stays_inside_text_it_was_not_meant_for(void **state)
{
	static const char *docs[] = { "\"\\", "\"abc\\", "[\"a\\\"", "{\"a\":\"\x01\"}",
	                              "\"\xff\xfe\"", "{\"k\":\"v\\q\"}", "[\"1234567\\" };
	struct json_token t[8];

	(void)state;
	for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
		size_t len = strlen(docs[d]);
		char *copy = malloc(len); /* exact: ASan sees a read past it */
		int n;
		assert_non_null(copy);
		memcpy(copy, docs[d], len);
		assert_true(json_parse(copy, len, t, 8, 64, 0, NULL) < 0);
		n = json_parse_accepted(copy, len, t, 8, 64, 0);
		for (int i = 0; i < n; i++)
			assert_true(t[i].start <= t[i].end && t[i].end <= len);
		free(copy);
	}
}

static const struct CMUnitTest json_tests[] = {
	cmocka_unit_test(test_json_parses_object_with_every_value_type),
	cmocka_unit_test(test_json_parses_scalar_top_level_values),
	cmocka_unit_test(test_json_accepts_every_number_form_of_rfc8259),
	cmocka_unit_test(test_json_string_token_excludes_the_quotes),
	cmocka_unit_test(test_json_container_span_includes_the_brackets),
	cmocka_unit_test(test_json_next_skips_a_value_and_its_descendants),
	cmocka_unit_test(test_json_size_counts_members_and_elements),
	cmocka_unit_test(test_json_siblings_walk_with_next),
	cmocka_unit_test(test_json_accepts_white_space_between_all_tokens),
	cmocka_unit_test(test_json_sets_escaped_flag_only_on_escaped_strings),
	cmocka_unit_test(test_json_accepts_every_simple_escape),
	cmocka_unit_test(test_json_accepts_escaped_surrogate_pairs),
	cmocka_unit_test(test_json_accepts_valid_utf8_at_every_boundary),
	cmocka_unit_test(test_json_accepts_escaped_nul_character),
	cmocka_unit_test(test_json_accepts_duplicate_keys),
	cmocka_unit_test(test_json_emit_depth_1_collapses_array_elements),
	cmocka_unit_test(test_json_emit_depth_1_still_emits_scalar_elements),
	cmocka_unit_test(test_json_emit_depth_2_collapses_only_the_third_level),
	cmocka_unit_test(test_json_emit_depth_0_emits_every_value),
	cmocka_unit_test(test_json_collapsed_object_member_keeps_its_key_token),
	cmocka_unit_test(test_json_collapsed_values_are_still_validated),
	cmocka_unit_test(test_json_collapsed_values_reject_mismatched_brackets),
	cmocka_unit_test(test_json_collapsed_values_count_toward_max_depth),
	cmocka_unit_test(test_json_reports_incomplete_input_at_its_end),
	cmocka_unit_test(test_json_every_proper_prefix_of_a_document_is_incomplete),
	cmocka_unit_test(test_json_reports_syntax_errors_at_the_unexpected_byte),
	cmocka_unit_test(test_json_rejects_trailing_comma_in_array),
	cmocka_unit_test(test_json_rejects_trailing_comma_in_object),
	cmocka_unit_test(test_json_reports_bad_escapes_at_the_backslash),
	cmocka_unit_test(test_json_rejects_lone_surrogate_escapes),
	cmocka_unit_test(test_json_rejects_raw_control_characters_in_strings),
	cmocka_unit_test(test_json_rejects_invalid_utf8),
	cmocka_unit_test(test_json_rejects_malformed_numbers),
	cmocka_unit_test(test_json_rejects_anything_but_white_space_after_the_value),
	cmocka_unit_test(test_json_rejects_empty_input),
	cmocka_unit_test(test_json_reports_nomem_at_the_value_that_needed_a_token),
	cmocka_unit_test(test_json_succeeds_with_exactly_enough_tokens),
	cmocka_unit_test(test_json_reports_depth_at_the_opening_bracket),
	cmocka_unit_test(test_json_reports_too_big_input_without_reading_it),
	cmocka_unit_test(test_json_error_offset_pointer_is_optional),
	cmocka_unit_test(test_json_strerror_names_every_error),
	cmocka_unit_test(test_json_rejects_10000_nested_arrays_beyond_max_depth),
	cmocka_unit_test(test_json_accepts_nesting_of_exactly_max_depth),
	cmocka_unit_test(test_json_bounds_depth_by_the_internal_limit),
	cmocka_unit_test(test_json_rejects_deep_nesting_of_objects),
	cmocka_unit_test(test_json_reports_incomplete_for_deeply_open_arrays),
	cmocka_unit_test(test_json_string_scan_stops_at_every_position),
	cmocka_unit_test(test_json_parses_a_1_mib_string),
	cmocka_unit_test(test_json_parse_accepted_gives_json_parse_tokens_on_accepted_text),
	cmocka_unit_test(test_json_parse_accepted_stays_inside_text_it_was_not_meant_for),
	cmocka_unit_test(test_json_object_get_finds_members_by_name),
	cmocka_unit_test(test_json_object_get_returns_minus_one_for_a_missing_key),
	cmocka_unit_test(test_json_object_get_skips_nested_values),
	cmocka_unit_test(test_json_object_get_returns_the_first_of_duplicate_keys),
	cmocka_unit_test(test_json_object_get_matches_escaped_keys),
	cmocka_unit_test(test_json_object_get_refuses_non_objects_and_collapsed_objects),
	cmocka_unit_test(test_json_string_eq_compares_after_unescaping),
	cmocka_unit_test(test_json_string_copy_unescapes_into_utf8),
	cmocka_unit_test(test_json_string_copy_keeps_escaped_nul_inside_the_length),
	cmocka_unit_test(test_json_string_copy_fails_when_out_is_too_small),
	cmocka_unit_test(test_json_string_copy_refuses_non_strings),
	cmocka_unit_test(test_json_int64_reads_integers_across_the_whole_range),
	cmocka_unit_test(test_json_int64_rejects_overflow_fractions_and_exponents),
	cmocka_unit_test(test_json_escape_writes_the_short_escapes),
	cmocka_unit_test(test_json_escape_copies_long_plain_runs),
	cmocka_unit_test(test_json_escape_fails_when_out_is_too_small),
	cmocka_unit_test(test_json_escape_round_trips_every_ascii_byte),
	cmocka_unit_test(test_json_escape_round_trips_every_byte_of_valid_utf8),
	cmocka_unit_test(test_json_escape_passes_invalid_bytes_that_the_parser_then_rejects),
	cmocka_unit_test(test_base64_encodes_the_rfc4648_vectors),
	cmocka_unit_test(test_base64_decodes_the_rfc4648_vectors),
	cmocka_unit_test(test_base64_round_trips_every_byte_value),
	cmocka_unit_test(test_base64_six_byte_steps_match_three_byte_steps),
	cmocka_unit_test(test_base64_vector_and_scalar_encodings_agree),
	cmocka_unit_test(test_base64_encode_fails_when_out_is_too_small),
	cmocka_unit_test(test_base64_decode_fails_when_out_is_too_small),
	cmocka_unit_test(test_base64_decode_rejects_invalid_input),
};
