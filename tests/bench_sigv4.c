/*
 * bench_sigv4.c - figures, not assertions: the time to sign a 5 MiB PutRecords body (payload hash
 * plus Authorization, what telkin does per request), the Authorization alone, and SHA-256 MB/s.
 * Each figure is the median of RUNS runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sigv4.h"
#include "bearssl_hash.h"

#define BODY_LEN (5u * 1024 * 1024) /* PutRecords request limit: 5 MiB in total */
#define RUNS 15
#define AUTH_REPEAT 1000            /* Authorization alone is too quick to time once */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A body shaped like a PutRecords batch: records of base64 data and partition keys. */
static void fill_body(char *body, size_t len)
{
	static const char head[] = "{\"StreamName\":\"telemetry-kinesis-stream\",\"Records\":[";
	static const char rec[] = "{\"Data\":\"eyJ0aW1lIjoiMjAyNi0xMS0yMlQwMDowMDowMC4wMDBaIiwidHlwZSI6"
	                          "ImZ1bmN0aW9uIiwicmVjb3JkIjoibGluZSAwIn0=\",\"PartitionKey\":\"pk-0\"},";
	size_t o = sizeof head - 1;

	memcpy(body, head, o);
	while (o + sizeof rec - 1 < len - 2) {
		memcpy(body + o, rec, sizeof rec - 1);
		o += sizeof rec - 1;
	}
	body[o - 1] = ' '; /* no ',' after the last record; spaces pad to the exact size */
	memset(body + o, ' ', len - 2 - o);
	body[len - 2] = ']';
	body[len - 1] = '}';
}

int main(void)
{
	static char body[BODY_LEN];
	char hash[SIGV4_HASH_HEX_LEN + 1], date[SIGV4_AMZ_DATE_LEN + 1], auth[1024];
	double sign[RUNS], hash_only[RUNS], auth_only[RUNS];
	struct sigv4_signer s;
	struct sigv4_header h[5];
	struct sigv4_request r;
	long n = 0;

	fill_body(body, sizeof body);
	sigv4_amz_date(time(NULL), date);
	sigv4_init(&s, "us-east-1", "kinesis", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	h[0] = (struct sigv4_header){ "Host", 4, "kinesis.us-east-1.amazonaws.com", 31 };
	h[1] = (struct sigv4_header){ "Content-Type", 12, "application/x-amz-json-1.1", 26 };
	h[2] = (struct sigv4_header){ "X-Amz-Target", 12, "Kinesis_20131202.PutRecords", 27 };
	h[3] = (struct sigv4_header){ "X-Amz-Date", 10, date, SIGV4_AMZ_DATE_LEN };
	h[4] = (struct sigv4_header){ "X-Amz-Security-Token", 20, "FwoGZXIvYXdzEXAMPLE", 19 };
	r = (struct sigv4_request){ "POST", "/", NULL, h, 5, hash, 1 };

	for (int i = 0; i < RUNS; i++) {
		double t0 = now_s(), t1, t2, t3;

		sigv4_payload_hash(body, sizeof body, hash);
		t1 = now_s();
		n = sigv4_authorization(&s, &r, date, auth, sizeof auth, NULL);
		t2 = now_s();
		for (int j = 0; j < AUTH_REPEAT; j++)
			n = sigv4_authorization(&s, &r, date, auth, sizeof auth, NULL);
		t3 = now_s();
		if (n < 0) {
			fprintf(stderr, "bench_sigv4: signing failed\n");
			return 1;
		}
		hash_only[i] = t1 - t0;
		sign[i] = t2 - t0;
		auth_only[i] = (t3 - t2) / AUTH_REPEAT;
	}
	printf("sigv4: sign 5 MiB PutRecords body (payload hash + Authorization): %.2f ms "
	       "(median of %d)\n", median(sign, RUNS) * 1e3, RUNS);
	printf("sigv4: Authorization alone (key cached, 5 signed headers): %.2f us\n",
	       median(auth_only, RUNS) * 1e6);
	printf("sigv4: SHA-256 payload hash (%s): %.0f MB/s (%.0f MiB/s)\n",
	       sigv4_sha256_engine_name(sigv4_sha256_engine()),
	       (double)BODY_LEN / median(hash_only, RUNS) / 1e6,
	       (double)BODY_LEN / median(hash_only, RUNS) / (1024.0 * 1024.0));
	/* Every engine this CPU runs, and BearSSL's portable SHA-256 (what telkin used before). */
	for (int e = 0; e <= SIGV4_SHA256_ENGINES; e++) {
		const char *name = e < SIGV4_SHA256_ENGINES ?
		                   sigv4_sha256_engine_name((enum sigv4_sha256_engine)e) : "BearSSL";
		if (e < SIGV4_SHA256_ENGINES && sigv4_sha256_select((enum sigv4_sha256_engine)e) < 0)
			continue;
		for (int i = 0; i < RUNS; i++) {
			double t0 = now_s();
			if (e < SIGV4_SHA256_ENGINES) {
				sigv4_payload_hash(body, sizeof body, hash);
			} else {
				br_sha256_context bc;
				unsigned char d[32];
				br_sha256_init(&bc);
				br_sha256_update(&bc, body, sizeof body);
				br_sha256_out(&bc, d);
			}
			hash_only[i] = now_s() - t0;
		}
		printf("sigv4: SHA-256 engine %-20s %6.0f MB/s\n", name,
		       (double)BODY_LEN / median(hash_only, RUNS) / 1e6);
	}
	return 0;
}
