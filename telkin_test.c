/*
 * telkin_test.c - unit tests (cmocka). Tests name the behaviour they pin, one behaviour each.
 * Shared test data is read from $TELKIN_SHARED (default ../shared beside the checkout).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "telkin.c"
#include "tests/unit_json.c"
#include "tests/unit_sigv4.c"
#include "tests/unit_sha256.c"
#include "tests/unit_telkin.c"
#include "tests/unit_records.c"
#include "tests/unit_modes.c"
#include "tests/unit_regress.c"
#include "tests/unit_sandbox.c"

int main(void)
{
	int failed = 0;
	failed += cmocka_run_group_tests_name("json_min", json_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("sha256", sha256_tests, NULL, NULL);
	/* The SigV4 suite once per SHA-256 engine this CPU can run (the best one last). */
	for (int e = 0; e < SIGV4_SHA256_ENGINES; e++) {
		enum sigv4_sha256_engine best = sigv4_sha256_engine();
		char name[64];
		if (e == (int)best || sigv4_sha256_select((enum sigv4_sha256_engine)e) < 0)
			continue;
		snprintf(name, sizeof name, "sigv4 (SHA-256: %s)",
		         sigv4_sha256_engine_name((enum sigv4_sha256_engine)e));
		failed += cmocka_run_group_tests_name(name, sigv4_tests, NULL, NULL);
		sigv4_sha256_select(best);
	}
	failed += cmocka_run_group_tests_name("sigv4", sigv4_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("telkin", telkin_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("records", records_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("modes", modes_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("regress", regress_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("sandbox", sandbox_tests, NULL, NULL);
	return failed ? 1 : 0;
}
