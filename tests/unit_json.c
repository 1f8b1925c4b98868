/* Unit tests for json (included by telkin_test.c). */
static void test_json_placeholder(void **state) { (void)state; assert_true(1); }
static const struct CMUnitTest json_tests[] = {
	cmocka_unit_test(test_json_placeholder),
};
