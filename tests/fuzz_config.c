/*
 * tests/fuzz_config.c - libFuzzer target: configuration from the environment (config_load).
 *
 * Input: byte 0 sizes the error buffer (1..256 bytes, an exact heap block); then lines, each a
 * variable selector byte followed by its value (an empty value unsets it), applied on top of a
 * minimal valid environment. Checked:
 *   - config_load returns 0 or -1, never crashes, never writes past the error buffer;
 *   - -1 comes with a non-empty, NUL-terminated message;
 *   - 0 means every value is inside its documented range: stream name 1..128 characters, region
 *     [a-z0-9-]+, an endpoint with a host and a numeric port 1..65535, listen port, buffering,
 *     queue size, flush timeout, at least one event class or platform event name.
 */
#include "tests/fuzz_telkin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
	"TELKIN_STREAM", "AWS_REGION", "AWS_DEFAULT_REGION", "TELKIN_ENDPOINT",
	"AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
	"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "TELKIN_LISTEN_PORT", "TELKIN_BUFFER_ITEMS",
	"TELKIN_BUFFER_BYTES", "TELKIN_BUFFER_TIMEOUT_MS", "TELKIN_TYPES", "TELKIN_QUEUE_BYTES",
	"TELKIN_PARTITION_KEY", "TELKIN_FLUSH_TIMEOUT_MS", "TELKIN_LOG_LEVEL", "TELKIN_CA_FILE",
	"AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_LAMBDA_FUNCTION_NAME",
	"AWS_LAMBDA_FUNCTION_VERSION", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "TELKIN_MIN_LEVEL", "TELKIN_FLUSH", "TELKIN_RECORD",
	"TELKIN_RECORD_MAX_BYTES", "TELKIN_METRICS", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
};
#define NAMES (sizeof(names) / sizeof(names[0]))

/*
 * Set or unset a variable without allocating: glibc's setenv keeps every old value (by design),
 * which over millions of runs is gigabytes. Each variable owns one static "NAME=value" buffer.
 */
static void env_put(size_t i, const char *value)
{
	static char buf[NAMES][64 + 8192];
	if (!value || !value[0]) {
		unsetenv(names[i]);
		return;
	}
	snprintf(buf[i], sizeof(buf[i]), "%s=%s", names[i], value);
	putenv(buf[i]);
}

static void env_minimal(void)
{
	for (size_t i = 0; i < NAMES; i++)
		env_put(i, NULL);
	env_put(0, "s1");                      /* TELKIN_STREAM */
	env_put(1, "eu-west-1");               /* AWS_REGION */
	env_put(4, "http://127.0.0.1:4567");   /* AWS_ENDPOINT_URL_KINESIS */
	env_put(6, "AKIDEXAMPLE");             /* AWS_ACCESS_KEY_ID */
	env_put(7, "secret");                  /* AWS_SECRET_ACCESS_KEY */
}

static int is_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config c;
	size_t errcap, off;
	char *err, value[8192];
	int rc;

	if (size < 1)
		return 0;
	errcap = (size_t)data[0] + 1;
	env_minimal();
	for (off = 1; off < size;) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (data + off)) : size - off;
		if (n >= 1) {
			size_t vlen = n - 1 < sizeof(value) - 1 ? n - 1 : sizeof(value) - 1;
			memcpy(value, data + off + 1, vlen);
			value[vlen] = 0; /* a NUL inside ends the value, as in a real environment */
			env_put(data[off] % NAMES, value);
		}
		off += n + 1;
	}

	err = malloc(errcap);
	FZ_CHECK(err != NULL);
	memset(err, 'x', errcap);
	rc = config_load(&c, err, errcap);
	g_log_level = -1;
	FZ_CHECK(rc == 0 || rc == -1);
	if (rc < 0) {
		FZ_CHECK(memchr(err, 0, errcap) != NULL);
		FZ_CHECK(errcap == 1 || err[0] != 0);
	} else {
		size_t sl = strnlen(c.stream_name, sizeof(c.stream_name));
		FZ_CHECK(sl >= 1 && sl <= KINESIS_MAX_STREAM_NAME);
		FZ_CHECK(memchr(c.stream_arn, 0, sizeof(c.stream_arn)) != NULL);
		FZ_CHECK(c.region[0] && memchr(c.region, 0, sizeof(c.region)));
		for (const char *p = c.region; *p; p++)
			FZ_CHECK((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-');
		FZ_CHECK(c.kinesis.host[0] && memchr(c.kinesis.host, 0, sizeof(c.kinesis.host)));
		FZ_CHECK(memchr(c.kinesis.port, 0, sizeof(c.kinesis.port)) && is_digits(c.kinesis.port));
		FZ_CHECK(atoi(c.kinesis.port) >= 1 && atoi(c.kinesis.port) <= 65535);
		FZ_CHECK(memchr(c.kinesis.host_header, 0, sizeof(c.kinesis.host_header)) != NULL);
		FZ_CHECK(c.container_creds || (c.creds.access_key_id[0] && c.creds.secret_access_key[0]));
		if (c.container_creds)
			FZ_CHECK(!c.creds_uri.tls && c.creds_uri.host[0] && creds_host_allowed(c.creds_uri.host));
		FZ_CHECK(c.listen_port >= 1024 && c.listen_port <= 65535);
		FZ_CHECK(c.buffer_items >= TELEMETRY_ITEMS_MIN && c.buffer_items <= TELEMETRY_ITEMS_MAX);
		FZ_CHECK(c.buffer_bytes >= TELEMETRY_BYTES_MIN && c.buffer_bytes <= TELEMETRY_BYTES_MAX);
		FZ_CHECK(c.buffer_timeout_ms >= TELEMETRY_TIMEOUT_MIN &&
		         c.buffer_timeout_ms <= TELEMETRY_TIMEOUT_MAX);
		FZ_CHECK(c.queue_bytes >= QUEUE_MIN_BYTES && c.queue_bytes <= QUEUE_MAX_BYTES);
		FZ_CHECK(c.flush_timeout_ms >= 10 && c.flush_timeout_ms <= 60000);
		FZ_CHECK((c.types || c.n_platform_names) && c.n_platform_names <= TYPES_MAX_NAMES);
		FZ_CHECK(!(c.types & ~(unsigned)(CLASS_PLATFORM | CLASS_FUNCTION |
		                                             CLASS_EXTENSION)));
		FZ_CHECK(c.record_max_bytes >= 1024 && c.record_max_bytes <= KINESIS_MAX_RECORD_BYTES);
		FZ_CHECK(c.pk_mode == PK_SANDBOX || c.pk_mode == PK_REQUEST || c.pk_mode == PK_RANDOM);
	}
	free(err);
	return 0;
}
