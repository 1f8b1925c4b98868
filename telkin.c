/*
 * telkin - an AWS Lambda external extension that ships every Telemetry API event into an Amazon
 * Kinesis Data Stream.
 *
 * One process, one thread, one poll() loop. Three non-blocking connections live in it:
 *   - the Extensions API long-poll (/event/next), which Lambda answers with INVOKE or SHUTDOWN;
 *   - the telemetry listener, an HTTP/1.1 server Lambda POSTs event batches to;
 *   - the Kinesis connection, an HTTP/1.1 client sending signed PutRecords requests.
 *
 * Data flows one way, and the file reads in that order:
 *   listener_read -> ingest_batch (json_min tokenizer) -> queue_push -> batch_build ->
 *   kinesis_sign (sigv4) -> http client -> kinesis_on_response
 *
 * Memory is allocated once at start from the configuration and never grows; nothing on the hot
 * path calls malloc. Every buffer's bound is a named constant below or a configured value.
 *
 * Lambda freezes the sandbox as soon as the extension calls /event/next, so everything an
 * invocation produced up to platform.runtimeDone is shipped before that call, within a budget.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/ucontext.h>
#include <time.h>
#include <unistd.h>

#include <bearssl.h>

#include "json_min.h"
#include "sigv4.h"

/* Trust anchors compiled in: Amazon Root CA 1-4 and Starfield Services Root CA G2, generated at
 * build time from Debian's ca-certificates by tests/gen_trust_anchors.c (see the Makefile). */
#ifndef TELKIN_NO_BUILTIN_ANCHORS
#include "trust_anchors.h"
#else
static const br_x509_trust_anchor BUILTIN_ANCHORS[1];
#define BUILTIN_ANCHORS_NUM 0
#endif

/* ------------------------------------------------------------------------------------------ */
/* Limits. One constant per limit, with where the number comes from.                          */

/* Kinesis PutRecords (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html) */
#define KINESIS_MAX_RECORDS        500             /* records per request */
#define KINESIS_MAX_REQUEST_BYTES  (5u << 20)      /* data + partition keys per request */
#define KINESIS_MAX_RECORD_BYTES   (1u << 20)      /* data + partition key per record */
#define KINESIS_MAX_PARTITION_KEY  256             /* Unicode chars; we only send ASCII */
#define KINESIS_MAX_STREAM_NAME    128
#define KINESIS_MAX_STREAM_ARN     2048

/* Telemetry API subscription ranges (https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html) */
#define TELEMETRY_ITEMS_MIN        1000
#define TELEMETRY_ITEMS_MAX        10000
#define TELEMETRY_BYTES_MIN        262144
#define TELEMETRY_BYTES_MAX        1048576
#define TELEMETRY_TIMEOUT_MIN      25
#define TELEMETRY_TIMEOUT_MAX      30000

/* Listener bounds. A batch can exceed maxBytes by its JSON framing, hence 2x plus slack. */
#define LISTEN_HEAD_MAX            8192            /* request line + headers; each slot's buffer */
#define LISTEN_BODY_SLACK          (64u << 10)
#define LISTEN_SLOTS_MAX           2048            /* connections: 1000+ hostile ones and Lambda's */
#define LISTEN_SLOTS_MIN           8               /* when RLIMIT_NOFILE leaves less */
#define LISTEN_FD_RESERVE          32              /* descriptors left for all but the slots */
#define LISTEN_BODY_BUFS           4               /* large buffers lent to requests with a body */
#define LISTEN_BACKLOG             4096            /* a burst of connects must not lose a SYN */
#define LISTEN_BODY_STALL_MS       20              /* a borrower silent this long can lose its buffer */
#define LISTEN_BODY_STALL_READY_MS 2               /* ... to a request whose whole body is in */
#define LISTEN_EVICT_GRACE_MS      100             /* a new connection's time to send its head */
#define LISTEN_LOG_REJECTS         20              /* rejections logged as warnings; then debug */
#define LISTEN_ACCEPT_BATCH        32              /* accepts per loop turn: then serve the others */
#define LISTEN_DRAIN_READS         4               /* discarding reads per connection per turn */
#define LISTEN_DISCARD_BYTES       (64u << 10)
#define LISTEN_SLOW_REQUEST_MS     10000           /* a started request must finish within this */
#define LISTEN_DRAIN_MS            1000            /* after an error reply, read and discard */
#define LISTEN_MAX_EVENTS          TELEMETRY_ITEMS_MAX /* events per batch, the API's maxItems cap */
#define EVENT_MAX_TOKENS           512             /* tokens for one event, emit depth 2 */
/* Tokens per event a batch is tokenized with, to depth 3 (an event's members and its record's:
 * a Lambda event has 3 or 4 members, a record up to ~6 at that depth). A batch that needs more
 * is tokenized to depth 1 and each event again on its own (ingest_batch). */
#define BATCH_TOKENS_PER_EVENT     16
#define JSON_MAX_DEPTH             128             /* deeper documents are rejected */

/* Client side. */
#define CLIENT_HEAD_MAX            8192            /* request head incl. a session token */
#define API_RESPONSE_MAX           (64u << 10)     /* Extensions/Telemetry API responses */
/* A transparent huge page on x86_64 and on arm64 with 4 KiB pages (one PMD: 512 x 4 KiB). */
#define HUGE_PAGE_BYTES            (2u << 20)
/* The start of each large buffer kept on 4 KiB pages (buffer_map): what light use touches. */
#define BUFFER_SMALL_LEAD          (64u << 10)
#define KINESIS_RESPONSE_MAX       (256u << 10)    /* PutRecords response for 500 records */
#define KINESIS_RESPONSE_TOKENS    (KINESIS_MAX_RECORDS * 16 + 64) /* up to 7 members a record */
#define KINESIS_REQUEST_TIMEOUT_MS 5000            /* one PutRecords round trip */
#define API_REQUEST_TIMEOUT_MS     5000            /* register, subscribe, error reports */
#define RETRY_BASE_MS              25              /* exponential backoff, full jitter */
#define RETRY_CAP_MS               2000
#define RETRY_LEFT_SHARE           2               /* a wait takes at most 1/2 of the time left
                                                      before the deadline: several attempts fit */

/* Time budget around a freeze and the end. */
#define DEADLINE_MARGIN_MS         150             /* stop this long before any deadlineMs */
#define SHUTDOWN_QUIET_MIN_MS      100             /* telemetry silence that ends SHUTDOWN early */
/* SnapStart and provisioned concurrency: how long the end-of-init /event/next may wait for
 * platform.initRuntimeDone. Waiting costs nothing while the runtime still initializes (init ends
 * when the runtime and every extension are in /event/next); the bound only matters if telemetry
 * never comes. Then TELKIN_FLUSH_TIMEOUT_MS to ship what init produced. */
#define INIT_TELEMETRY_WAIT_MS     30000
/* A kept-alive Kinesis connection idle this long is not trusted after a freeze: reopened before
 * the next request. Well under the 60 s idle timeouts of AWS load balancers and SDK HTTP clients
 * (AWS SDK for Java 2.x connectionMaxIdleTime); a reconnect costs one resumed TLS handshake. */
#define KINESIS_IDLE_REUSE_MS      20000
/* The first request on a connection kept across a freeze must be acknowledged by the peer's
 * TCP within this many smoothed round trips (never less than the minimum), else the path lost
 * the connection while we were frozen (nothing answers, not even a reset) and the request is
 * resent on a new one at once: a dead connection costs a few round trips, not
 * KINESIS_REQUEST_TIMEOUT_MS. Acknowledgements, not answers: a slow server is not a dead one.
 * The minimum is above the 200 ms a Linux peer may delay an ACK (TCP_DELACK_MAX). */
#define KINESIS_PROBE_RTTS         4
#define KINESIS_PROBE_MIN_MS       300
/* Managed Instances: a failed /event/next is retried after this, never fatal (an extension that
 * exits marks the whole environment unhealthy). */
#define API_RETRY_MS               1000
#define SHUTDOWN_REPORT_MS         10              /* pause before the last request (the loss
                                                      report): its shard refills a little */
#define SHUTDOWN_GUARD_MAX_MS      300             /* the last request starts at most this long
                                                      before the deadline (two round trips and
                                                      the pause; a Kinesis round trip is ~20 ms) */

/* Queue entries: fixed header, then partition key, then data; 8-byte aligned. */
#define QUEUE_MIN_BYTES            (2u << 20)
#define QUEUE_MAX_BYTES            (1u << 30)
#define QUEUE_DEFAULT_BYTES        (8u << 20)

/* The PutRecords body: base64 of at most 5 MiB, plus per-record framing and the stream names. */
#define RECORD_FRAMING_BYTES       (sizeof("{\"Data\":\"\",\"PartitionKey\":\"\"},") + 4)
#define REQUEST_BODY_MAX           (BASE64_ENCODED_LEN(KINESIS_MAX_REQUEST_BYTES) + \
                                    KINESIS_MAX_RECORDS * (RECORD_FRAMING_BYTES + 4) + \
                                    KINESIS_MAX_STREAM_NAME + KINESIS_MAX_STREAM_ARN + 128)

/* Events in one request: 500 records, several events each with TELKIN_RECORD=ndjson. */
#define BATCH_SLICE_BYTES          (128u << 10)    /* PutRecords body built per slice, then poll() */
#define INFLIGHT_MAX_ENTRIES       16384
#define SANDBOX_ID_LEN             32              /* hex of 128 random bits */
#define REQUEST_ID_MAX             128
#define IDENTITY_MAX               1024            /* the members appended to every record */
/* ,"seq":<20 digits>} and the record's newline: the end of every event telkin ships. */
#define SEQ_TAIL_MAX               (sizeof(",\"seq\":}\n") - 1 + 20)
/* "requestId":"<id>", added to function and extension events (REQUEST_ID_MAX - 1 bytes). */
#define REQUEST_ID_MEMBER_MAX      (sizeof("\"requestId\":\"\",") - 1 + REQUEST_ID_MAX - 1)
/* [lo,hi] runs of sequence numbers one telkin.dropped record names; more runs are merged (the
 * last run widens), so a report may cover numbers that were delivered too: README, record format. */
#define DROP_REPORT_RANGES         64
#define DROP_REPORT_MAX            (512 + DROP_REPORT_RANGES * 44)

#define EXTENSION_NAME_DEFAULT     "telkin"
#define LISTEN_HOST                "sandbox.localdomain"

/* ------------------------------------------------------------------------------------------ */
/* Logging and time.                                                                           */

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
static int g_log_level = LOG_INFO;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void log_msg(int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char line[1024];
	va_list ap;
	int n;

	if (level > g_log_level)
		return;
	n = snprintf(line, sizeof(line), "[telkin] %s: ", names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	/* One write per line so that Lambda keeps lines whole. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A Unix-milliseconds deadline from Lambda, as a point on the monotonic clock. */
static int64_t deadline_from_wall(int64_t deadline_wall_ms)
{
	return now_ms() + (deadline_wall_ms - wall_ms());
}

/* xorshift64*: jitter and random partition keys; seeded from getrandom(). */
static uint64_t g_rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
	uint64_t x = g_rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	g_rng_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static void random_hex(char *out, size_t hex_len)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t raw[64];
	size_t n = (hex_len + 1) / 2, i;

	if (n > sizeof(raw))
		n = sizeof(raw);
	if (getrandom(raw, n, 0) != (ssize_t)n) {
		for (i = 0; i < n; i++)
			raw[i] = (uint8_t)rng_next();
	}
	for (i = 0; i < hex_len && i / 2 < n; i++)
		out[i] = digits[(raw[i / 2] >> ((i & 1) ? 0 : 4)) & 15];
	out[hex_len] = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Configuration: environment variables, validated at start.                                   */

enum event_class { CLASS_PLATFORM = 1, CLASS_FUNCTION = 2, CLASS_EXTENSION = 4 };
enum pk_mode { PK_SANDBOX, PK_REQUEST, PK_RANDOM };
enum flush_mode { FLUSH_END, FLUSH_PERIODIC, FLUSH_AUTO };
enum record_mode { RECORD_EVENT, RECORD_NDJSON };

#define TYPES_MAX_NAMES         16         /* platform event names in TELKIN_TYPES */
#define TYPE_NAME_MAX           48
#define RECORD_MAX_DEFAULT      25600      /* 25 KiB: one Kinesis PUT payload unit */
#define AUTO_FREQUENT_MS        2000       /* auto: invocations this close -> periodic */
#define AUTO_RARE_MS            10000      /* auto: this far apart -> back to end */
#define AUTO_PERIOD_MS          1000       /* auto: the period while periodic */
#define METRICS_INTERVAL_MS     60000      /* EMF line at most once a minute (and at exit) */

/* JSON log levels, lowest first (Lambda's advanced logging controls, plus common aliases). */
static const char *const LOG_LEVELS[] = { "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL" };
#define LOG_LEVEL_COUNT 6

struct endpoint {
	int tls;                  /* https */
	char host[256];
	char port[8];
	char host_header[270];    /* host, or host:port when the port is not the scheme's default */
	char path[256];           /* credentials URI only; "/" otherwise */
};

/* Credentials: the environment's, or the container provider's (refreshed before expiry). */
#define CRED_KEY_MAX        128
#define CRED_TOKEN_MAX      4096
#define CRED_RESPONSE_MAX   (16u << 10)
#define CRED_TIMEOUT_MS     2000
#define CRED_REFRESH_EARLY_MS (5 * 60 * 1000)  /* as the AWS SDKs do */
#define CRED_RETRY_MS       10000

struct credentials {
	char access_key_id[CRED_KEY_MAX + 1];
	char secret_access_key[CRED_KEY_MAX + 1];
	char session_token[CRED_TOKEN_MAX + 1];   /* "" when none */
	int64_t expires_wall_ms;                 /* 0: never (the environment's) */
};

/* Forget credentials, member by member (gcc 12 takes the struct's address for its first). */
static void creds_wipe(struct credentials *cr)
{
	explicit_bzero(cr->access_key_id, sizeof(cr->access_key_id));
	explicit_bzero(cr->secret_access_key, sizeof(cr->secret_access_key));
	explicit_bzero(cr->session_token, sizeof(cr->session_token));
	cr->expires_wall_ms = 0;
}

struct config {
	char stream_name[KINESIS_MAX_STREAM_NAME + 1];
	char stream_arn[KINESIS_MAX_STREAM_ARN + 1]; /* "" when a name was given */
	char region[64];          /* the stream's: an ARN's region, else AWS_REGION */
	char function_region[64]; /* AWS_REGION: where the function runs (the record's "region") */
	struct endpoint kinesis;
	const char *ca_file;      /* TELKIN_CA_FILE: extra PEM trust anchors; NULL when none */
	struct credentials creds;
	int container_creds;      /* from AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI */
	struct endpoint creds_uri;
	char function_name[256];
	char function_version[64];
	unsigned listen_port;
	unsigned buffer_items;
	unsigned buffer_bytes;
	unsigned buffer_timeout_ms;
	unsigned types;           /* enum event_class bits forwarded */
	char platform_names[TYPES_MAX_NAMES][TYPE_NAME_MAX]; /* platform.* events forwarded by name */
	unsigned n_platform_names;
	int min_level;            /* JSON function logs below this LOG_LEVELS index dropped; -1 */
	enum flush_mode flush_mode;
	unsigned flush_period_ms; /* periodic:<ms> */
	enum record_mode record_mode;
	size_t record_max_bytes;  /* ndjson: data + partition key per record */
	int metrics;              /* TELKIN_METRICS: EMF lines on stdout */
	int record_newline;       /* TELKIN_RECORD_NEWLINE: every event ends with \n */
	int huge_pages;           /* TELKIN_HUGE_PAGES: the large buffers may take 2 MiB pages */
	size_t queue_bytes;
	enum pk_mode pk_mode;
	unsigned flush_timeout_ms;
	int cpu_pin;              /* TELKIN_CPU_PIN: CPU_PIN_AUTO, CPU_PIN_OFF or a CPU number */
	unsigned long memory_mb;  /* AWS_LAMBDA_FUNCTION_MEMORY_SIZE; 0 when unset or not a number */
};

/* Parse a decimal in [lo, hi]. 0 or -1 (then err says why). */
static int config_uint(const char *name, const char *value, unsigned long long lo,
                       unsigned long long hi, unsigned long long *out, char *err, size_t errcap)
{
	unsigned long long v = 0;
	const char *p = value;

	if (!*p)
		goto bad;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (ULLONG_MAX - 9) / 10)
			goto bad;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v < lo || v > hi)
		goto bad;
	*out = v;
	return 0;
bad:
	snprintf(err, errcap, "%s=%.64s: expected a whole number from %llu to %llu", name, value,
	         lo, hi);
	return -1;
}

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return (v && *v) ? v : fallback;
}

/* An AWS SDK style boolean: unset or "false" 0, "true" 1, anything else -1 with err. */
static int env_flag(const char *name, char *err, size_t errcap)
{
	const char *v = env_or(name, "false");
	if (!strcasecmp(v, "true"))
		return 1;
	if (!strcasecmp(v, "false"))
		return 0;
	snprintf(err, errcap, "%s=%.32s: expected true or false", name, v);
	return -1;
}

/* Copy src into dst[cap]; -1 when it does not fit. */
static int copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		return -1;
	memcpy(dst, src, n + 1);
	return 0;
}

/* "http[s]://host[:port][/]" -> endpoint; with allow_path, any path after the host too. */
static int endpoint_parse(struct endpoint *ep, const char *url, int allow_path, char *err,
                          size_t errcap)
{
	const char *p, *host, *host_end, *port = NULL;
	size_t host_len, port_len = 0;

	memset(ep, 0, sizeof(*ep));
	if (strncmp(url, "http://", 7) == 0) {
		p = url + 7;
	} else if (strncmp(url, "https://", 8) == 0) {
		ep->tls = 1;
		p = url + 8;
	} else {
		snprintf(err, errcap, "endpoint %.128s: expected http:// or https://", url);
		return -1;
	}
	host = p;
	if (*p == '[') { /* IPv6 literal */
		host_end = strchr(p, ']');
		if (!host_end)
			goto bad;
		host++;
		p = host_end + 1;
	} else {
		while (*p && *p != ':' && *p != '/')
			p++;
		host_end = p;
	}
	host_len = (size_t)(host_end - host);
	if (*p == ':') {
		port = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		port_len = (size_t)(p - port);
		if (port_len == 0 || port_len > 5 || atoi(port) < 1 || atoi(port) > 65535)
			goto bad;
	}
	if (allow_path && *p == '/' && strlen(p) < sizeof(ep->path) && !strpbrk(p, " \r\n")) {
		strcpy(ep->path, p);
		p += strlen(p);
	} else {
		strcpy(ep->path, "/");
		if (*p == '/')
			p++;
	}
	if (*p || host_len == 0 || host_len >= sizeof(ep->host))
		goto bad;
	memcpy(ep->host, host, host_len);
	if (port) {
		memcpy(ep->port, port, port_len);
	} else {
		strcpy(ep->port, ep->tls ? "443" : "80");
	}
	if (port && strcmp(ep->port, ep->tls ? "443" : "80") != 0)
		snprintf(ep->host_header, sizeof(ep->host_header), "%s%s%s:%s",
		         host[-1] == '[' ? "[" : "", ep->host, host[-1] == '[' ? "]" : "", ep->port);
	else
		snprintf(ep->host_header, sizeof(ep->host_header), "%s%s%s",
		         host[-1] == '[' ? "[" : "", ep->host, host[-1] == '[' ? "]" : "");
	return 0;
bad:
	snprintf(err, errcap, "endpoint %.128s: expected scheme://host[:port] with no path", url);
	return -1;
}

/* A platform event name: "platform." and letters. */
static int platform_name_ok(const char *p, size_t n)
{
	if (n <= 9 || n >= TYPE_NAME_MAX || strncmp(p, "platform.", 9) != 0)
		return 0;
	for (size_t i = 9; i < n; i++)
		if (!isalpha((unsigned char)p[i]))
			return 0;
	return 1;
}

/* "platform,function", or names of platform events: "platform.report,function". */
static int config_types(struct config *c, const char *value, char *err, size_t errcap)
{
	const char *p = value;

	c->types = 0;
	c->n_platform_names = 0;
	while (*p) {
		size_t n = strcspn(p, ",");
		const char *next = p + n + (p[n] == ',');
		while (n && *p == ' ') { p++; n--; }
		while (n && p[n - 1] == ' ') n--;
		if (n == 8 && strncmp(p, "platform", 8) == 0) {
			c->types |= CLASS_PLATFORM;
		} else if (n == 8 && strncmp(p, "function", 8) == 0) {
			c->types |= CLASS_FUNCTION;
		} else if (n == 9 && strncmp(p, "extension", 9) == 0) {
			c->types |= CLASS_EXTENSION;
		} else if (platform_name_ok(p, n) && c->n_platform_names < TYPES_MAX_NAMES) {
			memcpy(c->platform_names[c->n_platform_names], p, n);
			c->platform_names[c->n_platform_names++][n] = 0;
		} else {
			snprintf(err, errcap, "TELKIN_TYPES=%.64s: expected a list of platform, function, "
			         "extension or platform event names (platform.report, at most %d)", value,
			         TYPES_MAX_NAMES);
			return -1;
		}
		p = next;
	}
	if (!c->types && !c->n_platform_names) {
		snprintf(err, errcap, "TELKIN_TYPES is empty: name at least one of platform, "
		         "function, extension");
		return -1;
	}
	return 0;
}

/* TELKIN_FLUSH: end, periodic:<ms>, auto. */
static int config_flush(struct config *c, const char *v, char *err, size_t errcap)
{
	unsigned long long ms;
	c->flush_period_ms = AUTO_PERIOD_MS;
	if (!strcmp(v, "end")) {
		c->flush_mode = FLUSH_END;
	} else if (!strcmp(v, "auto")) {
		c->flush_mode = FLUSH_AUTO;
	} else if (!strncmp(v, "periodic:", 9) &&
	           config_uint("TELKIN_FLUSH periodic", v + 9, 10, 3600000, &ms, err, errcap) == 0) {
		c->flush_mode = FLUSH_PERIODIC;
		c->flush_period_ms = (unsigned)ms;
	} else {
		snprintf(err, errcap, "TELKIN_FLUSH=%.32s: expected end, periodic:<ms> (10 to "
		         "3600000) or auto", v);
		return -1;
	}
	return 0;
}

static int level_index(const char *s, size_t n)
{
	for (int i = 0; i < LOG_LEVEL_COUNT; i++)
		if (strlen(LOG_LEVELS[i]) == n && !strncasecmp(s, LOG_LEVELS[i], n))
			return i;
	if (n == 7 && !strncasecmp(s, "WARNING", 7))
		return 3;
	if (n == 8 && !strncasecmp(s, "CRITICAL", 8))
		return 5;
	return -1;
}

/*
 * TELKIN_STREAM: a name, or arn:<partition>:kinesis:<region>:<account>:stream/<name>.
 * An ARN's region wins over AWS_REGION (a cross-region stream).
 */
static int config_stream(struct config *c, const char *value, char *err, size_t errcap)
{
	if (strncmp(value, "arn:", 4) == 0) {
		const char *f[6];
		const char *p = value;
		int i;
		for (i = 0; i < 6; i++) {
			f[i] = p;
			p = strchr(p, ':');
			if (!p && i < 5)
				goto bad_arn;
			if (p)
				p++;
		}
		/* f[2] service, f[3] region, f[5] "stream/<name>" */
		if (strncmp(f[2], "kinesis:", 8) != 0 || strncmp(f[5], "stream/", 7) != 0)
			goto bad_arn;
		if (copy_str(c->stream_arn, sizeof(c->stream_arn), value) ||
		    copy_str(c->stream_name, sizeof(c->stream_name), f[5] + 7) || !f[5][7])
			goto bad_arn;
		if (f[4] - f[3] > 1) {
			size_t n = (size_t)(f[4] - f[3] - 1);
			if (n >= sizeof(c->region))
				goto bad_arn;
			memcpy(c->region, f[3], n);
			c->region[n] = 0;
		}
		return 0;
	bad_arn:
		snprintf(err, errcap, "TELKIN_STREAM=%.128s: not a Kinesis stream ARN "
		         "(arn:aws:kinesis:<region>:<account>:stream/<name>)", value);
		return -1;
	}
	if (copy_str(c->stream_name, sizeof(c->stream_name), value)) {
		snprintf(err, errcap, "TELKIN_STREAM: a stream name has at most %d characters",
		         KINESIS_MAX_STREAM_NAME);
		return -1;
	}
	for (const char *p = value; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.') {
			snprintf(err, errcap, "TELKIN_STREAM=%.128s: a stream name has only letters, "
			         "digits, '_', '-' and '.'", value);
			return -1;
		}
	}
	return 0;
}

/*
 * The container provider may only be reached over loopback or the link-local addresses ECS and
 * EKS use (the AWS SDKs' rule): the token it is sent must not leave the host.
 */
static int creds_host_allowed(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6, ecs6;
	if (!strcmp(host, "localhost"))
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127 || !strcmp(host, "169.254.170.2") ||
		       !strcmp(host, "169.254.170.23");
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		inet_pton(AF_INET6, "fd00:ec2::23", &ecs6);
		return IN6_IS_ADDR_LOOPBACK(&a6) || !memcmp(&a6, &ecs6, sizeof(a6));
	}
	return 0;
}

/* The environment's credentials, else the container provider's address (fetched at start). */
static int config_credentials(struct config *c, char *err, size_t errcap)
{
	const char *id = env_or("AWS_ACCESS_KEY_ID", NULL);
	const char *secret = env_or("AWS_SECRET_ACCESS_KEY", NULL);
	const char *token = env_or("AWS_SESSION_TOKEN", "");
	const char *full = env_or("AWS_CONTAINER_CREDENTIALS_FULL_URI", NULL);
	const char *rel = env_or("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", NULL);
	char url[512];

	if (id && secret) {
		if (copy_str(c->creds.access_key_id, sizeof(c->creds.access_key_id), id) ||
		    copy_str(c->creds.secret_access_key, sizeof(c->creds.secret_access_key), secret) ||
		    copy_str(c->creds.session_token, sizeof(c->creds.session_token), token)) {
			snprintf(err, errcap, "AWS credentials in the environment are longer than "
			         "expected");
			return -1;
		}
		return 0;
	}
	if (!full && !rel) {
		snprintf(err, errcap, "no AWS credentials: set AWS_ACCESS_KEY_ID and "
		         "AWS_SECRET_ACCESS_KEY (Lambda sets them from the function's role), or "
		         "AWS_CONTAINER_CREDENTIALS_FULL_URI");
		return -1;
	}
	if (!full) {
		snprintf(url, sizeof(url), "http://169.254.170.2%s", rel);
		full = url;
	}
	if (endpoint_parse(&c->creds_uri, full, 1, err, errcap))
		return -1;
	if (c->creds_uri.tls || !creds_host_allowed(c->creds_uri.host)) {
		snprintf(err, errcap, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%.128s: must be http:// to "
		         "a loopback address or 169.254.170.2/.23", full);
		return -1;
	}
	c->container_creds = 1;
	return 0;
}

/*
 * CPU pinning (TELKIN_CPU_PIN). A function under 1,769 MB has less than one vCPU's time, spread
 * by a CPU quota over two vCPUs; each vCPU draws the quota in slices, so a process that moves
 * between them strands part of a slice on the one it left and is throttled sooner (measured in
 * README, "The telemetry listener under a flood"). Pinned to one vCPU, telkin draws its share
 * in one place. The masks are the kernel's: bit n of word n / CPU_MASK_WORD_BITS is CPU n.
 */
#define LAMBDA_MB_PER_VCPU 1769                    /* configuration-memory.html: one vCPU */
#define CPU_PIN_MAX        1024                    /* CPUs a mask covers: glibc's CPU_SETSIZE */
#define CPU_MASK_WORD_BITS (8 * sizeof(unsigned long))
#define CPU_MASK_WORDS     (CPU_PIN_MAX / CPU_MASK_WORD_BITS)
#define CPU_PIN_AUTO       (-1)                    /* the last allowed CPU, under one vCPU's share */
#define CPU_PIN_OFF        (-2)

/* The CPUs this process may run on (sched_getaffinity); 0 words when the kernel will not say. */
static size_t cpu_allowed(unsigned long mask[CPU_MASK_WORDS])
{
	long n;

	memset(mask, 0, CPU_MASK_WORDS * sizeof(unsigned long));
	n = syscall(SYS_sched_getaffinity, 0L, CPU_MASK_WORDS * sizeof(unsigned long), mask);
	return n > 0 ? (size_t)n / sizeof(unsigned long) : 0;
}

static int cpu_in(const unsigned long *mask, size_t words, unsigned cpu)
{
	return cpu / CPU_MASK_WORD_BITS < words &&
	       (mask[cpu / CPU_MASK_WORD_BITS] >> (cpu % CPU_MASK_WORD_BITS) & 1UL);
}

/* TELKIN_CPU_PIN: auto, off, or a CPU this process may run on. */
static int config_cpu_pin(struct config *c, const char *v, char *err, size_t errcap)
{
	unsigned long mask[CPU_MASK_WORDS];
	unsigned long long n;
	size_t words;

	if (!strcmp(v, "auto") || !strcmp(v, "off")) {
		c->cpu_pin = v[0] == 'a' ? CPU_PIN_AUTO : CPU_PIN_OFF;
		return 0;
	}
	if (config_uint("TELKIN_CPU_PIN", v, 0, CPU_PIN_MAX - 1, &n, err, errcap) < 0) {
		snprintf(err, errcap, "TELKIN_CPU_PIN=%.32s: expected auto, off or a CPU number", v);
		return -1;
	}
	words = cpu_allowed(mask);
	if (words && !cpu_in(mask, words, (unsigned)n)) {
		snprintf(err, errcap, "TELKIN_CPU_PIN=%llu: not one of the CPUs this process may run "
		         "on", n);
		return -1;
	}
	c->cpu_pin = (int)n;
	return 0;
}

/* The whole configuration. 0, or -1 with a message for init/error. */
static int config_load(struct config *c, char *err, size_t errcap)
{
	unsigned long long v;
	const char *s;

	memset(c, 0, sizeof(*c));
	s = env_or("TELKIN_LOG_LEVEL", "info");
	if (!strcmp(s, "error")) g_log_level = LOG_ERROR;
	else if (!strcmp(s, "warn")) g_log_level = LOG_WARN;
	else if (!strcmp(s, "info")) g_log_level = LOG_INFO;
	else if (!strcmp(s, "debug")) g_log_level = LOG_DEBUG;
	else {
		snprintf(err, errcap, "TELKIN_LOG_LEVEL=%.32s: expected error, warn, info or debug", s);
		return -1;
	}

	copy_str(c->region, sizeof(c->region), env_or("AWS_REGION", env_or("AWS_DEFAULT_REGION", "")));
	memcpy(c->function_region, c->region, sizeof(c->region));
	s = env_or("TELKIN_STREAM", NULL);
	if (!s) {
		snprintf(err, errcap, "TELKIN_STREAM is not set: name the Kinesis stream (a name or "
		         "an ARN)");
		return -1;
	}
	if (config_stream(c, s, err, errcap))
		return -1;
	if (!c->region[0]) {
		snprintf(err, errcap, "AWS_REGION is not set and TELKIN_STREAM is not an ARN");
		return -1;
	}
	for (const char *p = c->region; *p; p++) {
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-') {
			snprintf(err, errcap, "AWS_REGION=%.64s: not a region name", c->region);
			return -1;
		}
	}

	/* Endpoint: the most specific setting wins. */
	s = env_or("TELKIN_ENDPOINT", env_or("AWS_ENDPOINT_URL_KINESIS", env_or("AWS_ENDPOINT_URL",
	           NULL)));
	if (s) {
		if (endpoint_parse(&c->kinesis, s, 0, err, errcap))
			return -1;
	} else {
		/* docs.aws.amazon.com/general/latest/gr/ak.html; FIPS and dual-stack per the SDKs. */
		int cn = strncmp(c->region, "cn-", 3) == 0, fips, dual;
		char url[160];
		if ((fips = env_flag("AWS_USE_FIPS_ENDPOINT", err, errcap)) < 0 ||
		    (dual = env_flag("AWS_USE_DUALSTACK_ENDPOINT", err, errcap)) < 0)
			return -1;
		snprintf(url, sizeof(url), "https://kinesis%s.%s.%s", fips ? "-fips" : "", c->region,
		         dual ? (cn ? "api.amazonwebservices.com.cn" : "api.aws") :
		         (cn ? "amazonaws.com.cn" : "amazonaws.com"));
		if (endpoint_parse(&c->kinesis, url, 0, err, errcap))
			return -1;
	}
	c->ca_file = env_or("TELKIN_CA_FILE", NULL);

	if (config_credentials(c, err, errcap))
		return -1;

	copy_str(c->function_name, sizeof(c->function_name),
	         env_or("AWS_LAMBDA_FUNCTION_NAME", ""));
	copy_str(c->function_version, sizeof(c->function_version),
	         env_or("AWS_LAMBDA_FUNCTION_VERSION", ""));

	if (config_uint("TELKIN_LISTEN_PORT", env_or("TELKIN_LISTEN_PORT", "4243"), 1024, 65535,
	                &v, err, errcap))
		return -1;
	c->listen_port = (unsigned)v;
	if (config_uint("TELKIN_BUFFER_ITEMS", env_or("TELKIN_BUFFER_ITEMS", "1000"),
	                TELEMETRY_ITEMS_MIN, TELEMETRY_ITEMS_MAX, &v, err, errcap))
		return -1;
	c->buffer_items = (unsigned)v;
	if (config_uint("TELKIN_BUFFER_BYTES", env_or("TELKIN_BUFFER_BYTES", "1048576"),
	                TELEMETRY_BYTES_MIN, TELEMETRY_BYTES_MAX, &v, err, errcap))
		return -1;
	c->buffer_bytes = (unsigned)v;
	if (config_uint("TELKIN_BUFFER_TIMEOUT_MS", env_or("TELKIN_BUFFER_TIMEOUT_MS", "25"),
	                TELEMETRY_TIMEOUT_MIN, TELEMETRY_TIMEOUT_MAX, &v, err, errcap))
		return -1;
	c->buffer_timeout_ms = (unsigned)v;
	if (config_types(c, env_or("TELKIN_TYPES", "platform,function"), err, errcap))
		return -1;
	s = env_or("TELKIN_MIN_LEVEL", NULL);
	c->min_level = s ? level_index(s, strlen(s)) : -1;
	if (s && c->min_level < 0) {
		snprintf(err, errcap, "TELKIN_MIN_LEVEL=%.32s: expected TRACE, DEBUG, INFO, WARN, "
		         "ERROR or FATAL", s);
		return -1;
	}
	if (config_flush(c, env_or("TELKIN_FLUSH", "auto"), err, errcap))
		return -1;
	s = env_or("TELKIN_RECORD", "event");
	if (!strcmp(s, "event")) c->record_mode = RECORD_EVENT;
	else if (!strcmp(s, "ndjson")) c->record_mode = RECORD_NDJSON;
	else {
		snprintf(err, errcap, "TELKIN_RECORD=%.32s: expected event or ndjson", s);
		return -1;
	}
	if (config_uint("TELKIN_RECORD_MAX_BYTES", env_or("TELKIN_RECORD_MAX_BYTES", "25600"), 1024,
	                KINESIS_MAX_RECORD_BYTES, &v, err, errcap))
		return -1;
	c->record_max_bytes = (size_t)v;
	s = env_or("TELKIN_METRICS", "1");
	if (strcmp(s, "0") && strcmp(s, "1")) {
		snprintf(err, errcap, "TELKIN_METRICS=%.32s: expected 1 (on) or 0 (off)", s);
		return -1;
	}
	c->metrics = s[0] == '1';
	s = env_or("TELKIN_RECORD_NEWLINE", "1");
	if (strcmp(s, "0") && strcmp(s, "1")) {
		snprintf(err, errcap, "TELKIN_RECORD_NEWLINE=%.32s: expected 1 (on) or 0 (off)", s);
		return -1;
	}
	c->record_newline = s[0] == '1';
	s = env_or("TELKIN_HUGE_PAGES", "1");
	if (strcmp(s, "0") && strcmp(s, "1")) {
		snprintf(err, errcap, "TELKIN_HUGE_PAGES=%.32s: expected 1 (on) or 0 (off)", s);
		return -1;
	}
	c->huge_pages = s[0] == '1';
	if (config_uint("TELKIN_QUEUE_BYTES", env_or("TELKIN_QUEUE_BYTES", "8388608"),
	                QUEUE_MIN_BYTES, QUEUE_MAX_BYTES, &v, err, errcap))
		return -1;
	c->queue_bytes = (size_t)v;
	s = env_or("TELKIN_PARTITION_KEY", "sandbox");
	if (!strcmp(s, "sandbox")) c->pk_mode = PK_SANDBOX;
	else if (!strcmp(s, "request")) c->pk_mode = PK_REQUEST;
	else if (!strcmp(s, "random")) c->pk_mode = PK_RANDOM;
	else {
		snprintf(err, errcap, "TELKIN_PARTITION_KEY=%.32s: expected sandbox, request or random",
		         s);
		return -1;
	}
	if (config_uint("TELKIN_FLUSH_TIMEOUT_MS", env_or("TELKIN_FLUSH_TIMEOUT_MS", "1000"), 10,
	                60000, &v, err, errcap))
		return -1;
	c->flush_timeout_ms = (unsigned)v;
	s = env_or("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "");
	if (config_uint("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", s, 1, 1UL << 20, &v, err, errcap) == 0)
		c->memory_mb = (unsigned long)v;     /* else 0: unknown, and no error */
	return config_cpu_pin(c, env_or("TELKIN_CPU_PIN", "auto"), err, errcap);
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP/1.1 message heads (both directions), parsed in place like picohttpparser.             */

struct http_head {
	size_t head_len;          /* bytes up to and including the blank line */
	int status;               /* responses */
	const char *method;       /* requests: spans into the buffer */
	size_t method_len;
	const char *path;
	size_t path_len;
	long long content_length; /* -1 when absent */
	int chunked;              /* Transfer-Encoding: chunked */
	int close;                /* Connection: close, or HTTP/1.0 without keep-alive */
	int expect_continue;      /* Expect: 100-continue */
};

static int span_ieq(const char *a, size_t n, const char *b)
{
	return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* The end of the head ("\r\n\r\n"), or NULL. Bare "\n\n" is not accepted: HTTP needs CRLF. */
static const char *http_head_end(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;
	while (p + 3 < end) {
		const char *cr = memchr(p, '\r', (size_t)(end - p - 3));
		if (!cr)
			return NULL;
		if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n')
			return cr + 4;
		p = cr + 1;
	}
	return NULL;
}

/* Find a header's value (trimmed) in a parsed head. NULL when absent. */
static const char *http_header(const char *buf, size_t head_len, const char *name, size_t *vlen)
{
	const char *p = memchr(buf, '\n', head_len), *end = buf + head_len;
	size_t name_len = strlen(name);

	while (p && ++p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *colon;
		if (!eol)
			break;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon && (size_t)(colon - p) == name_len && strncasecmp(p, name, name_len) == 0) {
			const char *v = colon + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

/*
 * Parse a request (is_request) or response head. 1 complete, 0 incomplete, -1 malformed.
 * Only what telkin acts on is interpreted; every header line must still be well formed.
 */
static int http_parse_head(const char *buf, size_t len, int is_request, struct http_head *h)
{
	const char *end = http_head_end(buf, len), *p, *eol, *sp;
	int http10;

	memset(h, 0, sizeof(*h));
	h->content_length = -1;
	if (!end)
		return 0;
	h->head_len = (size_t)(end - buf);
	eol = memchr(buf, '\r', h->head_len);
	if (is_request) {
		/* METHOD SP path SP HTTP/1.x */
		sp = memchr(buf, ' ', (size_t)(eol - buf));
		if (!sp || sp == buf)
			return -1;
		h->method = buf;
		h->method_len = (size_t)(sp - buf);
		h->path = sp + 1;
		sp = memchr(h->path, ' ', (size_t)(eol - h->path));
		if (!sp || sp == h->path)
			return -1;
		h->path_len = (size_t)(sp - h->path);
		p = sp + 1;
		if (eol - p != 8 || strncmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
			return -1;
		http10 = p[7] == '0';
	} else {
		/* HTTP/1.x SP 3DIGIT [SP reason] */
		if (eol - buf < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
		    !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
		    !isdigit((unsigned char)buf[11]) || (eol - buf > 12 && buf[12] != ' '))
			return -1;
		http10 = buf[7] == '0';
		h->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	}
	h->close = http10;
	/* Header lines: name ':' value CRLF; no obsolete line folding. */
	for (p = eol + 2; p < end - 2; p = eol + 2) {
		const char *colon, *v;
		size_t vlen;
		eol = memchr(p, '\r', (size_t)(end - p));
		if (!eol || eol[1] != '\n')
			return -1;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p || *p == ' ' || *p == '\t')
			return -1;
		for (const char *c = p; c < colon; c++)
			if (*c <= ' ' || *c >= 127)
				return -1;
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		vlen = (size_t)(eol - v);
		while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (span_ieq(p, (size_t)(colon - p), "content-length")) {
			long long cl = 0;
			if (vlen == 0 || vlen > 15 || h->content_length >= 0)
				return -1; /* absent, absurd, or repeated: refuse to guess */
			for (size_t i = 0; i < vlen; i++) {
				if (!isdigit((unsigned char)v[i]))
					return -1;
				cl = cl * 10 + (v[i] - '0');
			}
			h->content_length = cl;
		} else if (span_ieq(p, (size_t)(colon - p), "transfer-encoding")) {
			if (!span_ieq(v, vlen, "chunked"))
				return -1; /* only chunked is understood */
			h->chunked = 1;
		} else if (span_ieq(p, (size_t)(colon - p), "connection")) {
			if (span_ieq(v, vlen, "close"))
				h->close = 1;
			else if (span_ieq(v, vlen, "keep-alive"))
				h->close = 0;
		} else if (span_ieq(p, (size_t)(colon - p), "expect")) {
			h->expect_continue = span_ieq(v, vlen, "100-continue");
		}
	}
	if (h->chunked && h->content_length >= 0)
		return -1; /* RFC 9112 6.3: a smuggling vector; refuse */
	return 1;
}

/*
 * Chunked body in body[0..len). When the last chunk and trailers are all there, the data is
 * compacted in place to body[0..*data_len) and *consumed is the framed length: returns 1.
 * Returns 0 when more bytes are needed (nothing modified), CHUNKED_MALFORMED, or
 * CHUNKED_TOO_LARGE when the data would exceed limit.
 */
#define CHUNKED_MALFORMED (-1)
#define CHUNKED_TOO_LARGE (-2)
static int chunked_decode(char *body, size_t len, size_t limit, size_t *data_len, size_t *consumed)
{
	size_t pos = 0, total = 0, out;

	for (int pass = 0; pass < 2; pass++) {
		pos = 0;
		out = 0;
		for (;;) {
			size_t size = 0, digits = 0;
			while (pos < len && isxdigit((unsigned char)body[pos])) {
				int c = body[pos++];
				if (++digits > 8)
					return -1;
				size = size * 16 + (size_t)(isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));
			}
			if (pos >= len)
				return 0;
			if (digits == 0)
				return -1;
			while (pos < len && body[pos] != '\r') { /* chunk extensions are ignored */
				if (body[pos] == '\n')
					return -1;
				pos++;
			}
			if (pos + 1 >= len)
				return 0;
			if (body[pos + 1] != '\n')
				return -1;
			pos += 2;
			if (size == 0)
				break;
			if (pass == 0 && (size > limit || total + size > limit))
				return CHUNKED_TOO_LARGE;
			if (len - pos < size + 2)
				return 0;
			if (body[pos + size] != '\r' || body[pos + size + 1] != '\n')
				return -1;
			if (pass == 1)
				memmove(body + out, body + pos, size);
			else
				total += size;
			out += size;
			pos += size + 2;
		}
		/* Trailers: lines until an empty one. */
		for (;;) {
			const char *eol = memchr(body + pos, '\n', len - pos);
			if (!eol)
				return 0;
			if (eol == body + pos || eol[-1] != '\r')
				return -1;
			if (eol == body + pos + 1) {
				pos += 2;
				break;
			}
			pos = (size_t)(eol - body) + 1;
		}
	}
	*data_len = total;
	*consumed = pos;
	return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Sockets.                                                                                    */

static int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Start a non-blocking connect. fd, or -1 (errno set). *in_progress is 1 while connecting. */
static int net_connect(const char *host, const char *port, int *in_progress)
{
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		log_msg(LOG_WARN, "resolving %s: %s", host, gai_strerror(rc));
		errno = EHOSTUNREACH;
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		set_nonblocking(fd);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			*in_progress = 0;
			break;
		}
		if (errno == EINPROGRESS) {
			*in_progress = 1;
			break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* TLS: BearSSL's engine, stepped by the same poll() loop. TLS 1.2 only, ECDHE with AES-GCM or  */
/* ChaCha20-Poly1305, RSA or ECDSA server keys; the chain is checked against the compiled-in     */
/* anchors and TELKIN_CA_FILE's, and the name against the endpoint's host.                      */

#define TLS_CA_FILE_MAX   (256u << 10)   /* TELKIN_CA_FILE: a bundle, not a system store */
#define TLS_EXTRA_ANCHORS 32
#define TLS_ANCHOR_BYTES  (32u << 10)    /* DNs and keys of TELKIN_CA_FILE's anchors */
#define TLS_CERT_MAX      (16u << 10)    /* one DER certificate in a PEM file */

struct trust_store {
	br_x509_trust_anchor anchors[BUILTIN_ANCHORS_NUM + TLS_EXTRA_ANCHORS];
	size_t count;
	unsigned char *bytes;                 /* TLS_ANCHOR_BYTES: DN and key copies */
	size_t used;
};

struct tls_conn {
	br_ssl_client_context sc;
	br_x509_minimal_context xc;
	unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
	const char *server_name;
};

static const char *tls_error_text(int err)
{
	switch (err) {
	case BR_ERR_X509_NOT_TRUSTED:
		return "TLS: server certificate chain is not trusted (unknown CA)";
	case BR_ERR_X509_BAD_SERVER_NAME:
		return "TLS: server certificate does not match the host name";
	case BR_ERR_X509_EXPIRED:
		return "TLS: server certificate has expired or is not yet valid";
	case BR_ERR_UNSUPPORTED_VERSION:
	case BR_ERR_BAD_VERSION:
		return "TLS: server does not speak TLS 1.2";
	case BR_ERR_BAD_CIPHER_SUITE:
		return "TLS: no cipher suite in common with the server";
	case BR_ERR_X509_WEAK_PUBLIC_KEY:
		return "TLS: server key is too weak";
	case BR_ERR_BAD_SIGNATURE:
	case BR_ERR_X509_BAD_SIGNATURE:
		return "TLS: bad signature in the handshake or chain";
	case BR_ERR_OK:
		return "TLS: connection closed by peer";
	case BR_ERR_RECV_FATAL_ALERT + 40: /* handshake_failure: e.g. a TLS 1.0-only server */
		return "TLS: server refused TLS 1.2 with our cipher suites";
	case BR_ERR_RECV_FATAL_ALERT + 70: /* protocol_version */
		return "TLS: server does not speak TLS 1.2 (alert)";
	default:
		if (err >= BR_ERR_SEND_FATAL_ALERT)
			return "TLS: handshake failed (alert sent)";
		if (err >= BR_ERR_RECV_FATAL_ALERT)
			return "TLS: the server refused the handshake (fatal alert)";
		if (err >= BR_ERR_X509_OK)
			return "TLS: server certificate rejected";
		return "TLS: protocol error";
	}
}

/* Bytes into the store's own memory. */
static void *trust_copy(struct trust_store *ts, const void *p, size_t n)
{
	void *dst;
	if (n > TLS_ANCHOR_BYTES - ts->used)
		return NULL;
	dst = ts->bytes + ts->used;
	memcpy(dst, p, n);
	ts->used += n;
	return dst;
}

struct dn_buf {
	unsigned char data[1024];
	size_t len;
	int overflow;
};

static void dn_append(void *ctx, const void *buf, size_t len)
{
	struct dn_buf *d = ctx;
	if (len > sizeof(d->data) - d->len) {
		d->overflow = 1;
		return;
	}
	memcpy(d->data + d->len, buf, len);
	d->len += len;
}

/* A DER certificate as a trust anchor (its subject and key). 0 or -1. */
static int trust_add_der(struct trust_store *ts, const unsigned char *der, size_t len)
{
	br_x509_decoder_context dc;
	struct dn_buf dn;
	br_x509_trust_anchor *ta;
	const br_x509_pkey *pk;

	if (ts->count >= sizeof(ts->anchors) / sizeof(ts->anchors[0]))
		return -1;
	dn.len = 0;
	dn.overflow = 0;
	br_x509_decoder_init(&dc, dn_append, &dn);
	br_x509_decoder_push(&dc, der, len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk || dn.overflow || br_x509_decoder_last_error(&dc) != 0)
		return -1;
	ta = &ts->anchors[ts->count];
	memset(ta, 0, sizeof(*ta));
	ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
	if (!(ta->dn.data = trust_copy(ts, dn.data, dn.len)))
		return -1;
	ta->dn.len = dn.len;
	ta->pkey.key_type = pk->key_type;
	if (pk->key_type == BR_KEYTYPE_RSA) {
		ta->pkey.key.rsa.n = trust_copy(ts, pk->key.rsa.n, pk->key.rsa.nlen);
		ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
		ta->pkey.key.rsa.e = trust_copy(ts, pk->key.rsa.e, pk->key.rsa.elen);
		ta->pkey.key.rsa.elen = pk->key.rsa.elen;
		if (!ta->pkey.key.rsa.n || !ta->pkey.key.rsa.e)
			return -1;
	} else if (pk->key_type == BR_KEYTYPE_EC) {
		ta->pkey.key.ec.curve = pk->key.ec.curve;
		ta->pkey.key.ec.q = trust_copy(ts, pk->key.ec.q, pk->key.ec.qlen);
		ta->pkey.key.ec.qlen = pk->key.ec.qlen;
		if (!ta->pkey.key.ec.q)
			return -1;
	} else {
		return -1;
	}
	ts->count++;
	return 0;
}

struct der_buf {
	unsigned char *data;                  /* TLS_CERT_MAX */
	size_t len;
	int overflow;
};

static void der_append(void *ctx, const void *buf, size_t len)
{
	struct der_buf *d = ctx;
	if (len > TLS_CERT_MAX - d->len) {
		d->overflow = 1;
		return;
	}
	memcpy(d->data + d->len, buf, len);
	d->len += len;
}

/* Every CERTIFICATE in a PEM text as an anchor. The number added, or -1 with err set. */
static int trust_add_pem(struct trust_store *ts, const char *pem, size_t len,
                         unsigned char *scratch, char *err, size_t errcap)
{
	br_pem_decoder_context pc;
	struct der_buf der = { scratch, 0, 0 };
	int added = 0, in_cert = 0;
	size_t off = 0;

	br_pem_decoder_init(&pc);
	while (off < len) {
		off += br_pem_decoder_push(&pc, pem + off, len - off);
		switch (br_pem_decoder_event(&pc)) {
		case BR_PEM_BEGIN_OBJ:
			in_cert = !strcmp(br_pem_decoder_name(&pc), "CERTIFICATE") ||
			          !strcmp(br_pem_decoder_name(&pc), "X509 CERTIFICATE");
			der.len = 0;
			der.overflow = 0;
			br_pem_decoder_setdest(&pc, in_cert ? der_append : NULL, &der);
			break;
		case BR_PEM_END_OBJ:
			if (in_cert) {
				if (der.overflow || trust_add_der(ts, der.data, der.len) < 0) {
					snprintf(err, errcap, "certificate %d is not usable as a trust "
					         "anchor (malformed, too large, or too many)", added + 1);
					return -1;
				}
				added++;
			}
			in_cert = 0;
			break;
		case BR_PEM_ERROR:
			snprintf(err, errcap, "malformed PEM");
			return -1;
		default:
			break;
		}
	}
	if (!added)
		snprintf(err, errcap, "no CERTIFICATE in the PEM text");
	return added ? added : -1;
}

/* The client context: our suites and algorithms only, then the anchors. */
static void tls_setup(struct tls_conn *tc, const struct trust_store *ts, const char *server_name)
{
	/* AES-GCM first where the CPU has AES instructions BearSSL uses (x86 AES-NI), else
	 * ChaCha20-Poly1305, which is several times faster than constant-time software AES. */
	static const uint16_t aes_first[] = {
		BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	};
	static const uint16_t chacha_first[] = {
		BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	};
	const uint16_t *suites = br_aes_x86ni_ctr_get_vtable() ? aes_first : chacha_first;
	/* Hashes for the handshake and for certificate signatures (SHA-1 for old chains only). */
	static const br_hash_class *const hashes[] = {
		&br_sha1_vtable, &br_sha224_vtable, &br_sha256_vtable, &br_sha384_vtable,
		&br_sha512_vtable,
	};
	static const int hash_ids[] = { br_sha1_ID, br_sha224_ID, br_sha256_ID, br_sha384_ID,
	                                br_sha512_ID };
	br_ssl_client_context *sc = &tc->sc;
	br_x509_minimal_context *xc = &tc->xc;

	br_ssl_client_zero(sc);
	br_ssl_engine_set_versions(&sc->eng, BR_TLS12, BR_TLS12);
	br_x509_minimal_init(xc, &br_sha256_vtable, ts->anchors, ts->count);
	br_ssl_engine_set_suites(&sc->eng, suites, sizeof(aes_first) / sizeof(aes_first[0]));
	br_ssl_engine_set_default_rsavrfy(&sc->eng);
	br_ssl_engine_set_default_ecdsa(&sc->eng);
	br_x509_minimal_set_rsa(xc, br_ssl_engine_get_rsavrfy(&sc->eng));
	br_x509_minimal_set_ecdsa(xc, br_ssl_engine_get_ec(&sc->eng),
	                          br_ssl_engine_get_ecdsa(&sc->eng));
	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
		br_ssl_engine_set_hash(&sc->eng, hash_ids[i], hashes[i]);
		br_x509_minimal_set_hash(xc, hash_ids[i], hashes[i]);
	}
	br_ssl_engine_set_x509(&sc->eng, &xc->vtable);
	br_ssl_engine_set_prf_sha256(&sc->eng, &br_tls12_sha256_prf);
	br_ssl_engine_set_prf_sha384(&sc->eng, &br_tls12_sha384_prf);
	br_ssl_engine_set_default_aes_gcm(&sc->eng);
	br_ssl_engine_set_default_chapol(&sc->eng);
	br_ssl_engine_set_buffer(&sc->eng, tc->iobuf, sizeof(tc->iobuf), 1);
	tc->server_name = server_name;
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP client: one connection, one request at a time, a non-blocking state machine stepped by  */
/* poll(). Used for the Extensions/Telemetry API and for Kinesis.                               */

enum hc_state { HC_IDLE, HC_CONNECTING, HC_SENDING, HC_RECEIVING, HC_DONE, HC_FAILED };

struct http_client {
	const char *name;         /* for log lines */
	char host[256];
	char port[8];
	int fd;
	enum hc_state state;
	struct iovec iov[2];      /* head, body: sent without copying */
	int iov_count;
	char *buf;                /* response; cap bytes, allocated at start */
	size_t cap;
	size_t len;
	struct http_head head;
	char *body;               /* response body (de-chunked in place) */
	size_t body_len;
	int64_t deadline;         /* monotonic ms; 0 = none (the long-poll) */
	int probe;                /* the next request checks that a kept-alive peer still listens */
	int64_t probe_deadline;   /* when the peer must have acknowledged it; 0 = no check */
	int64_t started;          /* monotonic ms the request started */
	int reused;               /* the request went out on a kept-alive connection */
	struct tls_conn *tls;     /* NULL: plain HTTP */
	int tls_failed;           /* the last failure was the TLS handshake or verification */
	uint64_t connects;        /* TCP connections opened */
	uint64_t handshakes;      /* TLS handshakes started */
	char error[96];           /* why the last request failed */
};

/* A client of host:port receiving into buf[cap]; it connects with its first request. */
static void hc_init(struct http_client *hc, const char *name, const char *host, const char *port,
                    char *buf, size_t cap)
{
	memset(hc, 0, sizeof(*hc));
	hc->fd = -1;
	hc->name = name;
	snprintf(hc->host, sizeof(hc->host), "%s", host);
	snprintf(hc->port, sizeof(hc->port), "%s", port);
	hc->buf = buf;
	hc->cap = cap;
}

static void hc_close(struct http_client *hc)
{
	if (hc->fd >= 0)
		close(hc->fd);
	hc->fd = -1;
}

static void hc_fail(struct http_client *hc, const char *why)
{
	snprintf(hc->error, sizeof(hc->error), "%s", why);
	hc_close(hc);
	hc->state = HC_FAILED;
}

/* The TCP connection is up: start the TLS handshake (resuming the last session if any). */
static void hc_connected(struct http_client *hc)
{
	hc->state = HC_SENDING;
	if (hc->tls) {
		if (!br_ssl_client_reset(&hc->tls->sc, hc->tls->server_name, 1)) {
			hc_fail(hc, "TLS: could not start a handshake");
			return;
		}
		hc->handshakes++;
	}
}

/*
 * The start of Linux's struct tcp_info (include/uapi/linux/tcp.h), as far as telkin reads it;
 * getsockopt(TCP_INFO) fills what the length asks for. (musl shows its own only to _GNU_SOURCE.)
 */
struct tcp_ack_info {
	uint8_t state[8];         /* tcpi_state .. tcpi_options, wscale, flags */
	uint32_t rto, ato, snd_mss, rcv_mss;
	uint32_t unacked;         /* segments sent and not acknowledged */
	uint32_t sacked, lost, retrans, fackets;
	uint32_t last_data_sent, last_ack_sent, last_data_recv;
	uint32_t last_ack_recv;   /* ms since the peer last acknowledged anything */
	uint32_t pmtu, rcv_ssthresh;
	uint32_t rtt;             /* smoothed round trip, us */
};

static int tcp_ack_info(int fd, struct tcp_ack_info *ti)
{
	socklen_t len = sizeof(*ti);
	memset(ti, 0, sizeof(*ti));
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) == 0 && len == sizeof(*ti) ? 0 : -1;
}

/* Bytes wait for the peer's acknowledgement, and none came for ms. */
static int tcp_unacknowledged(const struct tcp_ack_info *ti, unsigned ms)
{
	return ti->unacked > 0 && ti->last_ack_recv >= ms;
}

/* When a request starting now on this kept-alive connection must have been acknowledged. */
static int64_t hc_probe_deadline(const struct http_client *hc)
{
	struct tcp_ack_info ti;
	int64_t ms;

	if (tcp_ack_info(hc->fd, &ti) < 0)
		return 0; /* not TCP: nothing to check */
	ms = (int64_t)KINESIS_PROBE_RTTS * ti.rtt / 1000;
	return now_ms() + (ms < KINESIS_PROBE_MIN_MS ? KINESIS_PROBE_MIN_MS : ms);
}

/* Did the peer acknowledge nothing of the request since it started? */
static int hc_peer_gone(const struct http_client *hc, int64_t now)
{
	struct tcp_ack_info ti;

	if (tcp_ack_info(hc->fd, &ti) < 0)
		return 0;
	return tcp_unacknowledged(&ti, (unsigned)(now - hc->started));
}

/* Begin a request; head and body must stay valid until DONE or FAILED. */
static void hc_start(struct http_client *hc, const char *head, size_t head_len, const char *body,
                     size_t body_len, int64_t deadline)
{
	int in_progress = 0;

	hc->iov[0].iov_base = (void *)head;
	hc->iov[0].iov_len = head_len;
	hc->iov[1].iov_base = (void *)body;
	hc->iov[1].iov_len = body_len;
	hc->iov_count = body_len ? 2 : 1;
	hc->len = 0;
	hc->body = NULL;
	hc->body_len = 0;
	hc->deadline = deadline;
	hc->started = now_ms();
	hc->probe_deadline = hc->probe && hc->fd >= 0 ? hc_probe_deadline(hc) : 0;
	hc->probe = 0;
	hc->error[0] = 0;
	hc->tls_failed = 0;
	hc->reused = hc->fd >= 0;
	if (hc->fd < 0) {
		hc->connects++;
		hc->fd = net_connect(hc->host, hc->port, &in_progress);
		if (hc->fd < 0) {
			char why[96];
			snprintf(why, sizeof(why), "connect to %.40s:%s: %s", hc->host, hc->port,
			         strerror(errno));
			hc_fail(hc, why);
			return;
		}
	}
	if (hc->reused) {
		hc->state = HC_SENDING; /* the TLS session, if any, is already up */
		return;
	}
	hc->state = HC_CONNECTING;
	if (!in_progress)
		hc_connected(hc);
}

static short hc_poll_events(const struct http_client *hc)
{
	if (hc->tls && (hc->state == HC_SENDING || hc->state == HC_RECEIVING)) {
		unsigned st = br_ssl_engine_current_state(&hc->tls->sc.eng);
		/* Request bytes the engine can take now: wake at once (the socket is writable). */
		int feed = hc->state == HC_SENDING && (st & BR_SSL_SENDAPP);
		return (short)(((st & BR_SSL_SENDREC) || feed ? POLLOUT : 0) |
		               ((st & BR_SSL_RECVREC) ? POLLIN : 0));
	}
	switch (hc->state) {
	case HC_CONNECTING:
	case HC_SENDING:
		return POLLOUT;
	case HC_RECEIVING:
		return POLLIN;
	case HC_IDLE:
		return hc->fd >= 0 ? POLLIN : 0; /* a kept-alive peer closing */
	default:
		return 0;
	}
}

/* Is the response in buf complete? 1 yes, 0 not yet, -1 malformed. Sets body/body_len. */
static int hc_response_complete(struct http_client *hc, int eof)
{
	int rc;

	if (!hc->head.head_len) {
		rc = http_parse_head(hc->buf, hc->len, 0, &hc->head);
		/* An interim 1xx (100 Continue) precedes the real answer (RFC 9110 15.2): skip it. */
		while (rc == 1 && hc->head.status / 100 == 1 && hc->head.status != 101) {
			size_t skip = hc->head.head_len;
			memmove(hc->buf, hc->buf + skip, hc->len - skip);
			hc->len -= skip;
			rc = http_parse_head(hc->buf, hc->len, 0, &hc->head);
		}
		if (rc <= 0) {
			hc->head.head_len = 0;
			return rc;
		}
	}
	hc->body = hc->buf + hc->head.head_len;
	if (hc->head.status == 204 || hc->head.status == 304 || hc->head.status == 101) {
		hc->body_len = 0;
		return 1;
	}
	if (hc->head.chunked) {
		size_t data_len, consumed;
		rc = chunked_decode(hc->body, hc->len - hc->head.head_len,
		                    hc->cap - hc->head.head_len, &data_len, &consumed);
		if (rc == 1)
			hc->body_len = data_len;
		return rc < 0 ? -1 : rc; /* too large for the buffer: as unusable as malformed */
	}
	if (hc->head.content_length >= 0) {
		if (hc->len - hc->head.head_len < (size_t)hc->head.content_length)
			return 0;
		hc->body_len = (size_t)hc->head.content_length;
		return 1;
	}
	/* Neither: the body ends when the peer closes. */
	if (!eof)
		return 0;
	hc->body_len = hc->len - hc->head.head_len;
	hc->head.close = 1;
	return 1;
}

/* Bytes arrived (or the peer closed): 1 when that ended the exchange (DONE or FAILED). */
static int hc_check_response(struct http_client *hc, int eof)
{
	int rc = hc_response_complete(hc, eof);
	if (rc < 0) {
		hc_fail(hc, "malformed HTTP response");
		return 1;
	}
	if (rc == 1) {
		if (hc->head.close)
			hc_close(hc);
		hc->state = HC_DONE;
		return 1;
	}
	return 0;
}

/* The whole request is out: wait for the answer. */
static void hc_sent(struct http_client *hc)
{
	hc->state = HC_RECEIVING;
	memset(&hc->head, 0, sizeof(hc->head));
}

/* Plain bytes of the request into the engine; 1 when all of them are in. */
static int tls_feed_request(struct http_client *hc, br_ssl_engine_context *eng)
{
	size_t room;
	unsigned char *buf = br_ssl_engine_sendapp_buf(eng, &room);
	size_t put = 0;

	for (int i = 0; i < hc->iov_count && put < room; i++) {
		size_t n = hc->iov[i].iov_len < room - put ? hc->iov[i].iov_len : room - put;
		memcpy(buf + put, hc->iov[i].iov_base, n);
		hc->iov[i].iov_base = (char *)hc->iov[i].iov_base + n;
		hc->iov[i].iov_len -= n;
		put += n;
	}
	br_ssl_engine_sendapp_ack(eng, put);
	for (int i = 0; i < hc->iov_count; i++)
		if (hc->iov[i].iov_len)
			return 0;
	br_ssl_engine_flush(eng, 0);
	return 1;
}

/* Move bytes between the socket, the engine and the request/response until nothing moves. */
static void tls_step(struct http_client *hc)
{
	br_ssl_engine_context *eng = &hc->tls->sc.eng;

	for (;;) {
		unsigned st = br_ssl_engine_current_state(eng);
		int progress = 0;
		unsigned char *buf;
		size_t len;
		ssize_t n;

		if (st & BR_SSL_CLOSED) {
			int err = br_ssl_engine_last_error(eng);
			if (err == BR_ERR_OK && hc->state == HC_RECEIVING &&
			    hc_response_complete(hc, 1) == 1) {
				hc_close(hc);
				hc->state = HC_DONE;
				return;
			}
			hc_fail(hc, err == BR_ERR_OK && hc->len ? "connection closed mid-response" :
			        tls_error_text(err));
			hc->tls_failed = err != BR_ERR_OK;
			return;
		}
		if ((st & BR_SSL_SENDAPP) && hc->state == HC_SENDING) {
			if (tls_feed_request(hc, eng))
				hc_sent(hc);
			progress = 1;
		}
		if (st & BR_SSL_RECVAPP) {
			buf = br_ssl_engine_recvapp_buf(eng, &len);
			if (hc->state != HC_RECEIVING || hc->len == hc->cap) {
				hc_fail(hc, hc->state != HC_RECEIVING ? "data before the request" :
				        "response too large");
				return;
			}
			if (len > hc->cap - hc->len)
				len = hc->cap - hc->len;
			memcpy(hc->buf + hc->len, buf, len);
			hc->len += len;
			br_ssl_engine_recvapp_ack(eng, len);
			if (hc_check_response(hc, 0))
				return;
			progress = 1;
		}
		if (st & BR_SSL_SENDREC) {
			buf = br_ssl_engine_sendrec_buf(eng, &len);
			n = send(hc->fd, buf, len, MSG_NOSIGNAL);
			if (n > 0) {
				br_ssl_engine_sendrec_ack(eng, (size_t)n);
				progress = 1;
			} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				hc_fail(hc, "connection closed by peer while sending");
				return;
			}
		}
		if (st & BR_SSL_RECVREC) {
			buf = br_ssl_engine_recvrec_buf(eng, &len);
			n = read(hc->fd, buf, len);
			if (n > 0) {
				br_ssl_engine_recvrec_ack(eng, (size_t)n);
				progress = 1;
			} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
				hc_fail(hc, hc->len ? "connection closed mid-response" :
				        "connection closed before a response");
				return;
			}
		}
		if (!progress)
			return;
	}
}

/* Advance on poll events (revents) or a deadline. */
static void hc_step(struct http_client *hc, short revents, int64_t now)
{
	if (hc->state == HC_IDLE) {
		if (hc->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR)))
			hc_close(hc); /* the peer closed a kept-alive connection (or sent junk) */
		return;
	}
	if (hc->state == HC_CONNECTING && revents) {
		int err = 0;
		socklen_t sl = sizeof(err);
		getsockopt(hc->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err) {
			char why[96];
			snprintf(why, sizeof(why), "connect to %.40s:%s: %s", hc->host, hc->port,
			         strerror(err));
			hc_fail(hc, why);
			return;
		}
		hc_connected(hc);
	}
	if (hc->tls) {
		if (hc->state == HC_SENDING || hc->state == HC_RECEIVING)
			tls_step(hc);
	} else if (hc->state == HC_SENDING && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		for (;;) {
			ssize_t n;
			struct iovec *iov = hc->iov;
			int cnt = hc->iov_count;
			while (cnt && iov->iov_len == 0) {
				iov++;
				cnt--;
			}
			if (!cnt) {
				hc_sent(hc);
				break;
			}
			n = writev(hc->fd, iov, cnt);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				if (errno == EINTR)
					continue;
				hc_fail(hc, errno == EPIPE || errno == ECONNRESET ?
				        "connection closed by peer while sending" : "send failed");
				return;
			}
			for (; n > 0 && cnt; iov++, cnt--) {
				size_t take = (size_t)n < iov->iov_len ? (size_t)n : iov->iov_len;
				iov->iov_base = (char *)iov->iov_base + take;
				iov->iov_len -= take;
				n -= (ssize_t)take;
			}
		}
	}
	if (!hc->tls && hc->state == HC_RECEIVING && (revents & (POLLIN | POLLHUP | POLLERR))) {
		for (;;) {
			ssize_t n;
			if (hc->len == hc->cap) {
				hc_fail(hc, "response too large");
				return;
			}
			n = read(hc->fd, hc->buf + hc->len, hc->cap - hc->len);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				if (errno == EINTR)
					continue;
				hc_fail(hc, hc->len ? "connection reset mid-response" :
				        "connection reset before a response");
				return;
			}
			if (n > 0)
				hc->len += (size_t)n;
			if (hc_check_response(hc, n == 0))
				return;
			if (n == 0) {
				hc_fail(hc, hc->len ? "connection closed mid-response" :
				        "connection closed before a response");
				return;
			}
		}
	}
	if (hc->deadline && now >= hc->deadline &&
	    (hc->state == HC_CONNECTING || hc->state == HC_SENDING || hc->state == HC_RECEIVING))
		hc_fail(hc, "timed out");
	else if (hc->probe_deadline && now >= hc->probe_deadline) {
		/* Once: acknowledged means alive, however slow the answer. */
		hc->probe_deadline = 0;
		if ((hc->state == HC_SENDING || hc->state == HC_RECEIVING) && hc->len == 0 &&
		    hc_peer_gone(hc, now))
			hc_fail(hc, "nothing acknowledged on a connection kept across a freeze");
	}
}

/* The sooner of the exchange's deadlines (0: none). */
static int64_t hc_next_deadline(const struct http_client *hc)
{
	if (hc->probe_deadline && (!hc->deadline || hc->probe_deadline < hc->deadline))
		return hc->probe_deadline;
	return hc->deadline;
}

/*
 * May an idle kept-alive connection carry the next request? Not when the peer closed it, reset
 * it or sent anything unasked (a TLS alert) while we were not looking (frozen): then a new one.
 */
static int hc_idle_usable(const struct http_client *hc)
{
	char c;
	ssize_t n;

	if (hc->fd < 0)
		return 0;
	n = recv(hc->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Run one request to completion, blocking (start-up calls only: nothing else is running yet). */
static int hc_run(struct http_client *hc, const char *head, size_t head_len, const char *body,
                  size_t body_len, int timeout_ms)
{
	hc_start(hc, head, head_len, body, body_len, now_ms() + timeout_ms);
	while (hc->state != HC_DONE && hc->state != HC_FAILED) {
		struct pollfd pfd = { .fd = hc->fd, .events = hc_poll_events(hc) };
		int64_t wait = hc->deadline - now_ms();
		int rc = poll(&pfd, 1, wait > 0 ? (int)wait : 0);
		if (rc < 0 && errno != EINTR) {
			hc_fail(hc, "poll failed");
			break;
		}
		hc_step(hc, rc > 0 ? pfd.revents : 0, now_ms());
	}
	return hc->state == HC_DONE ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Queue: a ring of records ready for Kinesis, allocated once (TELKIN_QUEUE_BYTES).            */
/* Entry: header, partition key, data (the record exactly as shipped), padded to 8 bytes.      */
/* An entry never wraps: when it does not fit at the end, a wrap marker sends it to offset 0.  */

enum entry_state { ENTRY_PENDING = 1, ENTRY_DONE = 2, ENTRY_WRAP = 3 };

struct queue_entry {
	uint32_t data_len;
	uint16_t pk_len;
	uint8_t state;            /* enum entry_state */
	uint8_t kind;             /* enum event_class, for drop accounting */
	uint32_t queued_at;       /* monotonic ms (low 32 bits): the age periodic shipping uses */
	uint32_t report;          /* 1: telkin's own telkin.dropped record, not an event */
	uint64_t seq;             /* the event's "seq": what a drop report names */
};

struct queue {
	uint8_t *mem;
	size_t cap;               /* a multiple of 8 */
	size_t head;              /* oldest entry */
	size_t tail;              /* where the next entry goes */
	size_t count;             /* entries */
	size_t high_water;        /* most bytes ever used */
	size_t window_high_water; /* most bytes used since the last metrics line */
};

#define QUEUE_ALIGN(n) (((n) + 7) & ~(size_t)7)

static char *append(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define APPEND_LIT(p, lit) append((p), (lit), sizeof(lit) - 1)

static size_t entry_size(const struct queue_entry *e)
{
	return QUEUE_ALIGN(sizeof(*e) + e->pk_len + e->data_len);
}

static char *entry_pk(struct queue_entry *e)
{
	return (char *)(e + 1);
}

static char *entry_data(struct queue_entry *e)
{
	return (char *)(e + 1) + e->pk_len;
}

static struct queue_entry *queue_at(const struct queue *q, size_t off)
{
	return (struct queue_entry *)(void *)(q->mem + off);
}

/* Offset of the entry after the one at off, following a wrap; SIZE_MAX past the last. */
static size_t queue_next(const struct queue *q, size_t off)
{
	off += entry_size(queue_at(q, off));
	if (off == q->tail)
		return SIZE_MAX;
	if (off + sizeof(struct queue_entry) > q->cap || queue_at(q, off)->state == ENTRY_WRAP)
		off = 0;
	return off == q->tail ? SIZE_MAX : off;
}

static size_t queue_first(const struct queue *q)
{
	return q->count ? q->head : SIZE_MAX;
}

/* Bytes between head and tail, going round (wrap gaps included). */
static size_t queue_used(const struct queue *q)
{
	if (!q->count)
		return 0;
	return q->tail > q->head ? q->tail - q->head : q->cap - q->head + q->tail;
}

/*
 * Room for an entry with pk_len + data_len bytes: returns it with its header filled (the caller
 * writes key and data), or NULL when the queue is full. now: when it arrived (now_ms(); a whole
 * Telemetry batch has one time, read once), the age periodic shipping uses.
 */
static struct queue_entry *queue_push(struct queue *q, size_t pk_len, size_t data_len,
                                      unsigned kind, int64_t now)
{
	size_t need = QUEUE_ALIGN(sizeof(struct queue_entry) + pk_len + data_len);
	size_t at, used;
	struct queue_entry *e;

	if (need > q->cap)
		return NULL;
	if (!q->count)
		q->head = q->tail = 0;
	at = q->tail;
	if (q->count && q->tail <= q->head) {
		/* The free space is [tail, head). */
		if (q->head - q->tail < need)
			return NULL;
	} else {
		/* The free space is [tail, cap) and [0, head). */
		if (q->cap - q->tail < need) {
			if (q->head < need)
				return NULL;
			if (q->cap - q->tail >= sizeof(struct queue_entry))
				queue_at(q, q->tail)->state = ENTRY_WRAP;
			at = 0;
		}
	}
	e = queue_at(q, at);
	e->data_len = (uint32_t)data_len;
	e->pk_len = (uint16_t)pk_len;
	e->state = ENTRY_PENDING;
	e->kind = (uint8_t)kind;
	e->queued_at = (uint32_t)now;
	e->report = 0;
	e->seq = 0;
	if (!q->count)
		q->head = at;
	q->tail = at + need;
	if (q->tail == q->cap)
		q->tail = 0;
	q->count++;
	used = queue_used(q);
	if (used > q->high_water)
		q->high_water = used;
	if (used > q->window_high_water)
		q->window_high_water = used;
	return e;
}

/* Release the entries at the head that Kinesis has taken (or that were given up). */
static void queue_pop_done(struct queue *q)
{
	while (q->count && queue_at(q, q->head)->state == ENTRY_DONE) {
		size_t next = queue_next(q, q->head);
		q->count--;
		q->head = next == SIZE_MAX ? q->tail : next;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Process state: one struct, passed everywhere.                                               */

enum phase {
	PHASE_INIT,               /* SnapStart, provisioned: init telemetry ships before /event/next */
	PHASE_WAIT_EVENT,         /* /event/next is out: Lambda may freeze us at any moment */
	PHASE_INVOKE,             /* the function runs: ship as telemetry arrives */
	PHASE_FLUSH,              /* runtimeDone seen: ship the rest, then /event/next */
	PHASE_SHUTDOWN            /* ship everything, exit before deadlineMs */
};

struct listen_conn {
	int fd;                   /* -1: free slot */
	char *head;               /* the slot's own LISTEN_HEAD_MAX bytes */
	char *buf;                /* head, or the lent body buffer (LISTEN_HEAD_MAX + body_limit) */
	size_t cap;               /* of buf */
	size_t len;
	int body;                 /* index of the lent body buffer; -1: none */
	int64_t accepted;
	int64_t request_started;  /* first byte of the current request; 0 between requests */
	int64_t last_used;        /* last byte read: eviction order, stalled borrowers */
	int head_done;            /* a valid head arrived: a request in progress, never evicted */
	int waiting;              /* needs a body buffer; not read until one is free */
	size_t need;              /* head + Content-Length of the request; 0: chunked (unknown) */
	int continue_sent;
	int draining;             /* replied and half-closed: discard input until EOF or timeout */
	int served;               /* a request was answered on it (a client's keep-alive connection) */
};

/* Base64 over several pieces (an ndjson record's events): up to 2 bytes wait for the next. */
struct b64_stream {
	uint8_t carry[2];
	size_t n;
};

/*
 * Events dropped and not yet reported downstream, for one reason: counts by class, and the
 * sequence numbers as at most DROP_REPORT_RANGES [lo,hi] runs (drop_note merges beyond that).
 */
enum drop_reason { DROP_QUEUE_FULL, DROP_REJECTED, DROP_REASONS };

struct drop_account {
	uint64_t records[3];      /* by class: platform, function, extension */
	uint64_t bytes[3];
	uint64_t range[DROP_REPORT_RANGES][2];
	unsigned n_ranges;
};

struct stats {
	uint64_t events_received;
	uint64_t events_queued;
	uint64_t events_filtered;
	uint64_t events_truncated;
	uint64_t dropped_records[3];  /* by class: platform, function, extension */
	uint64_t dropped_bytes[3];
	uint64_t batches_received;
	uint64_t batches_rejected;    /* malformed or oversized POSTs */
	uint64_t events_shipped;
	uint64_t bytes_shipped;
	uint64_t kinesis_records;     /* records Kinesis took (events, or ndjson packs) */
	uint64_t events_retried;
	uint64_t events_rejected;     /* non-retryable Kinesis errors */
	uint64_t putrecords_calls;
	uint64_t putrecords_errors;
	uint64_t reconnects;
	uint64_t credential_refreshes;
	uint64_t lost_at_exit;
	uint64_t api_failures;        /* /event/next failures survived (Managed Instances) */
	uint64_t restores;            /* SnapStart restores (0 or 1 in one process) */
	uint64_t listener_evictions;  /* connections closed to make room for a new one */
	uint64_t longest_turn_ms;     /* the longest loop turn (poll() return to the next poll()) */
	uint64_t platform_logs_dropped;   /* platform.logsDropped events received */
	uint64_t platform_dropped_records; /* the records they say the platform dropped */
	uint64_t lost_unanswered;     /* of those, in a request with no answer: they may have arrived */
	uint64_t throttled_records;   /* records Kinesis answered ProvisionedThroughputExceeded */
};

/*
 * What the stream takes, learned from its throttling (see Pacer). Capacity is counted in
 * thousandths of one shard's write limits: 1000 is one shard, 4000 four (random keys spread
 * records over every shard; one key writes to one).
 */
struct pacer {
	uint32_t mshards;         /* the estimate; 0: never throttled, requests are not paced */
	int64_t next_at;          /* virtual clock: the next request may go when now >= next_at */
	int64_t dry_at;           /* a response showed a shard's bucket empty then; 0: not known */
	uint64_t acc_records;     /* accepted since dry_at */
	uint64_t acc_bytes;
	size_t max_records;       /* the next request's size; 0: Kinesis's limits only */
	size_t max_bytes;
	int capped;               /* the request out was cut to the pacer's size */
};

/*
 * How Lambda runs this environment: AWS_LAMBDA_INITIALIZATION_TYPE (docs.aws.amazon.com/lambda/
 * latest/dg/configuration-envvars.html). Managed Instances: SHUTDOWN-only registration, schema
 * 2025-01-29, many concurrent invocations and no freeze. SnapStart: init runs once, then every
 * restored environment is a memory copy of this process. Provisioned: init long before use.
 */
enum exec_mode { MODE_ON_DEMAND, MODE_PROVISIONED, MODE_SNAPSTART, MODE_MANAGED };

struct telkin {
	struct config cfg;
	int cpu_pinned;                        /* the CPU telkin is pinned to; -1 when it is not */
	char runtime_api[256];                 /* AWS_LAMBDA_RUNTIME_API: host:port */
	char extension_name[64];
	char extension_id[128];
	char registered_function[256];         /* from the register response */
	char registered_version[64];
	char sandbox_id[SANDBOX_ID_LEN + 1];
	char identity[IDENTITY_MAX];  /* "function":..,"version":..,"region":..,"sandbox":.. */
	size_t identity_len;
	uint64_t seq;                 /* the last "seq" given in this sandbox (0: none yet) */

	/* Lifecycle. */
	enum exec_mode mode;
	enum phase phase;
	int init_runtime_done;                 /* platform.initRuntimeDone seen */
	int64_t init_deadline;                 /* PHASE_INIT: stop waiting for initRuntimeDone */
	int snapshot_pending;                  /* SnapStart: the next wake-up is a restore */
	int64_t api_retry_at;                  /* Managed Instances: /event/next again after a failure */
	char request_id[REQUEST_ID_MAX];       /* the invocation under way */
	char runtime_done_id[REQUEST_ID_MAX];  /* the last platform.runtimeDone's requestId */
	char stream_request_id[REQUEST_ID_MAX]; /* telemetry between platform.start and runtimeDone */
	int64_t invoke_deadline;
	int64_t flush_deadline;
	int64_t shutdown_deadline;
	int64_t last_telemetry;
	struct http_client api;
	char api_head[1024];

	/* Listener -> tokenizer. */
	int listen_fd;
	size_t body_limit;
	struct listen_conn *conns;             /* n_conns slots (listener_slots) */
	size_t n_conns;
	size_t conns_hi;                       /* slots at and above this index are free */
	size_t conns_made;                     /* slots set up so far (listener_slot_make) */
	char *listen_heads;                    /* n_conns x LISTEN_HEAD_MAX */
	char *body_bufs[LISTEN_BODY_BUFS];     /* LISTEN_HEAD_MAX + body_limit each */
	struct listen_conn *body_owner[LISTEN_BODY_BUFS];
	size_t n_waiting;                      /* connections waiting for a body buffer */
	int ready_waiting;                     /* one of them has its whole request in */
	struct pollfd *pfd;                    /* 3 + n_conns */
	char discard[LISTEN_DISCARD_BYTES];    /* what draining connections still send */
	struct json_token *batch_toks;         /* batch_tok_cap */
	size_t batch_tok_cap;                  /* (maxItems + 1) x BATCH_TOKENS_PER_EVENT, at least
	                                          LISTEN_MAX_EVENTS + 1 */
	struct json_token event_toks[EVENT_MAX_TOKENS];

	/* Queue. Drops not yet reported downstream, by reason (enum drop_reason). */
	struct queue q;
	struct drop_account unreported[DROP_REASONS];

	/* Batcher -> signer -> Kinesis. */
	struct http_client kin;
	struct trust_store trust;
	struct sigv4_signer signer;
	char *req_body;                        /* REQUEST_BODY_MAX */
	size_t req_body_len;
	char req_head[CLIENT_HEAD_MAX];
	size_t req_head_len;
	size_t inflight_count;                 /* Kinesis records in the request */
	size_t inflight_bytes;                 /* their data and partition keys */
	size_t inflight_end[KINESIS_MAX_RECORDS];  /* record i ends before this entry index */
	size_t *inflight_entries;              /* queue offsets of the request's events */
	struct batch_cursor {                  /* a body being built in slices (batch_build_step) */
		int active;
		size_t last;                       /* queue offset of the last entry taken; SIZE_MAX */
		size_t n, bytes, rec_bytes;        /* entries taken, data + key bytes, open record's */
		size_t max_records, max_bytes;     /* this request's size: Kinesis's, or the pacer's */
		struct queue_entry *open;          /* the record being packed (ndjson) */
		struct b64_stream b64;
		char *p;                           /* end of the body so far */
		size_t hashed;                     /* body bytes hashed so far */
		struct sigv4_sha256 sha;
	} build;
	char payload_hash[SIGV4_HASH_HEX_LEN + 1];
	int request_out;                       /* a PutRecords is in flight */
	int resent;                            /* the current request was resent on a new connection */
	unsigned attempt;                      /* consecutive failed attempts */
	int64_t retry_at;
	struct json_token *resp_toks;          /* KINESIS_RESPONSE_TOKENS */
	int creds_stale;                       /* Kinesis said the token expired */
	int64_t request_sent_at;               /* for the PutRecords latency */
	int64_t kin_used_at;                   /* monotonic ms of the last answer on the connection */
	int64_t kin_used_wall;                 /* the same, wall clock (a freeze may stop either) */
	int kin_frozen;                        /* the connection may have lived through a freeze */
	int64_t rtt_ms;                        /* PutRecords round trip, recent average */
	struct pacer pace;
	int shutdown_cut;                      /* 1: what was left is counted lost (and reported) */

	/* Shipping strategy (TELKIN_FLUSH=auto resolves to end or periodic by invocation rate). */
	enum flush_mode auto_mode;
	int64_t last_invoke_at;
	int64_t invoke_gap_ewma;

	/* Self-metrics (CloudWatch EMF on stdout). */
	struct stats metrics_base;             /* counters at the last line */
	uint32_t latency_hist[16];             /* PutRecords round trips: bucket b holds < 2^b ms */
	int64_t metrics_at;
	uint64_t metrics_handshakes;
	int64_t creds_retry_at;
	char logged_errors[8][64];             /* error types already logged once */

	struct stats stats;
};

static const char *class_name(unsigned kind)
{
	return kind == CLASS_FUNCTION ? "function" : kind == CLASS_EXTENSION ? "extension" :
	       "platform";
}

static unsigned class_index(unsigned kind)
{
	return kind == CLASS_FUNCTION ? 1 : kind == CLASS_EXTENSION ? 2 : 0;
}

/* The deadline the lifecycle (and shipping) works towards now: the invocation's, the flush
 * budget, SHUTDOWN's; INT64_MAX when none. */
static int64_t lifecycle_deadline(const struct telkin *t)
{
	switch (t->phase) {
	case PHASE_INVOKE:
		return t->invoke_deadline;
	case PHASE_FLUSH:
		return t->flush_deadline;
	case PHASE_SHUTDOWN:
		return t->shutdown_deadline;
	default:
		return INT64_MAX;
	}
}

static void restore_from_snapshot(struct telkin *t, const char *why);

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer -> queue: one Telemetry API batch becomes records.                                */

/* "2026-11-22T20:30:23.123Z" */
static size_t iso_time(char *out, size_t cap)
{
	int64_t ms = wall_ms();
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	return (size_t)snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	                        (int)(ms % 1000));
}

/* The event class from its "type": "function", "extension", or a platform.* event. */
static unsigned event_class(const char *ev, const struct json_token *type)
{
	if (!type || type->type != JSON_STRING)
		return CLASS_PLATFORM;
	if (json_string_eq(ev, type, "function"))
		return CLASS_FUNCTION;
	if (json_string_eq(ev, type, "extension"))
		return CLASS_EXTENSION;
	return CLASS_PLATFORM;
}

/* A requestId usable as a partition key: printable ASCII, no quote or backslash. */
static int usable_key(const char *s, size_t n)
{
	if (n == 0 || n > KINESIS_MAX_PARTITION_KEY || n >= REQUEST_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
			return 0;
	return 1;
}

/* Decimal digits of v. */
static size_t u64_digits(uint64_t v)
{
	size_t n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

static char *append_u64(char *p, uint64_t v)
{
	char d[20];
	size_t n = 0;
	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = d[--n];
	return p;
}

/*
 * The members telkin appends to every event it ships, after the event's own members and their
 * comma: "requestId":"<id>", (function and extension events, when known), the identity,
 * "seq":N, the closing brace, and a newline unless TELKIN_RECORD_NEWLINE=0 (README, record
 * format). record_tail_len is its length; it is at most REQUEST_ID_MEMBER_MAX + identity_len +
 * SEQ_TAIL_MAX.
 */
static size_t record_tail_len(const struct telkin *t, size_t rid_len, uint64_t seq)
{
	return (rid_len ? sizeof("\"requestId\":\"\",") - 1 + rid_len : 0) + t->identity_len +
	       sizeof(",\"seq\":}") - 1 + u64_digits(seq) + (size_t)t->cfg.record_newline;
}

static char *record_tail(const struct telkin *t, char *p, const char *rid, size_t rid_len,
                         uint64_t seq)
{
	if (rid_len) {
		p = APPEND_LIT(p, "\"requestId\":\"");
		p = append(p, rid, rid_len);
		p = APPEND_LIT(p, "\",");
	}
	p = append(p, t->identity, t->identity_len);
	p = APPEND_LIT(p, ",\"seq\":");
	p = append_u64(p, seq);
	*p++ = '}';
	if (t->cfg.record_newline)
		*p++ = '\n';
	return p;
}

/*
 * Sequence number seq (an event of class kind, bytes long) dropped for a reason: kept for the
 * next telkin.dropped record. Runs of consecutive numbers share one range; past
 * DROP_REPORT_RANGES runs the last range widens to take seq in (it may then cover numbers that
 * were delivered; droppedRecords stays exact).
 */
static void drop_range(struct drop_account *a, uint64_t lo, uint64_t hi)
{
	uint64_t *last = a->n_ranges ? a->range[a->n_ranges - 1] : NULL;

	if (!lo || hi < lo)
		return;
	if (last && lo == last[1] + 1) {
		last[1] = hi;
	} else if (a->n_ranges < DROP_REPORT_RANGES) {
		a->range[a->n_ranges][0] = lo;
		a->range[a->n_ranges][1] = hi;
		a->n_ranges++;
	} else {
		if (lo < last[0])
			last[0] = lo;
		if (hi > last[1])
			last[1] = hi;
	}
}

static void drop_note(struct drop_account *a, unsigned kind, size_t bytes, uint64_t seq)
{
	unsigned i = class_index(kind);

	a->records[i]++;
	a->bytes[i] += bytes;
	drop_range(a, seq, seq);
}

static uint64_t drop_count(const struct drop_account *a)
{
	return a->records[0] + a->records[1] + a->records[2];
}

static uint64_t drop_bytes(const struct drop_account *a)
{
	return a->bytes[0] + a->bytes[1] + a->bytes[2];
}

/* Account for an event that did not fit in the queue. */
static void drop_record(struct telkin *t, unsigned kind, size_t bytes, uint64_t seq)
{
	unsigned i = class_index(kind);
	t->stats.dropped_records[i]++;
	t->stats.dropped_bytes[i] += bytes;
	drop_note(&t->unreported[DROP_QUEUE_FULL], kind, bytes, seq);
}

/*
 * telkin's own event that reports events it could not ship, queued for Kinesis, numbered like
 * any event:
 * {"time":..,"type":"telkin.dropped","record":{"droppedRecords":N,"droppedBytes":B,
 * "platform":..,"function":..,"extension":..,"reason":..,"seqRanges":[[lo,hi],..]},..}.
 * 0 when queued, -1 when the queue is full.
 */
static int queue_drop_report(struct telkin *t, const struct drop_account *a, const char *reason)
{
	char rec[DROP_REPORT_MAX], *p;
	size_t n, pk_len = strlen(t->sandbox_id);
	struct queue_entry *e;

	n = (size_t)snprintf(rec, sizeof(rec), "{\"time\":\"");
	n += iso_time(rec + n, sizeof(rec) - n);
	n += (size_t)snprintf(rec + n, sizeof(rec) - n,
	                      "\",\"type\":\"telkin.dropped\",\"record\":{\"droppedRecords\":%llu,"
	                      "\"droppedBytes\":%llu,\"platform\":%llu,\"function\":%llu,"
	                      "\"extension\":%llu,\"reason\":\"%s\",\"seqRanges\":[",
	                      (unsigned long long)drop_count(a),
	                      (unsigned long long)drop_bytes(a),
	                      (unsigned long long)a->records[0], (unsigned long long)a->records[1],
	                      (unsigned long long)a->records[2], reason);
	p = rec + n;
	for (unsigned i = 0; i < a->n_ranges; i++) {
		if (i)
			*p++ = ',';
		*p++ = '[';
		p = append_u64(p, a->range[i][0]);
		*p++ = ',';
		p = append_u64(p, a->range[i][1]);
		*p++ = ']';
	}
	p = APPEND_LIT(p, "]},");
	n = (size_t)(p - rec);
	e = queue_push(&t->q, pk_len, n + record_tail_len(t, 0, t->seq + 1), CLASS_PLATFORM,
	               now_ms());
	if (!e)
		return -1;
	e->report = 1;
	e->seq = ++t->seq;
	memcpy(entry_pk(e), t->sandbox_id, pk_len);
	memcpy(entry_data(e), rec, n);
	record_tail(t, entry_data(e) + n, NULL, 0, e->seq);
	return 0;
}

/* Report drops downstream, as soon as the queue has room for the report. */
static void report_drops(struct telkin *t)
{
	static const char *const reasons[DROP_REASONS] = { "queue full", "rejected by Kinesis" };

	for (int r = 0; r < DROP_REASONS; r++) {
		struct drop_account *a = &t->unreported[r];
		uint64_t records = drop_count(a);
		if (!records || queue_drop_report(t, a, reasons[r]) < 0)
			continue;
		log_msg(LOG_WARN, "%s: dropped %llu events (%llu bytes); reported downstream",
		        reasons[r], (unsigned long long)records,
		        (unsigned long long)drop_bytes(a));
		memset(a, 0, sizeof(*a));
	}
}

/* s as the inside of a JSON string into out: at most max bytes, cut between characters. */
static size_t escape_bounded(char *out, const char *s, size_t max)
{
	size_t keep = json_escape_fit(s, strlen(s), max);
	return json_escape(out, max, s, keep);
}

/*
 * An event too large for one record: keep its type and time, and as much of its text as fits,
 * as a JSON string, marked "truncated":true. It keeps its sequence number and request id.
 */
static void queue_truncated(struct telkin *t, const char *ev, size_t len,
                            const struct json_token *type, const struct json_token *time,
                            const char *pk, size_t pk_len, unsigned kind,
                            const char *rid, size_t rid_len, uint64_t seq)
{
	char head[512];
	size_t n, budget, keep, tail = record_tail_len(t, rid_len, seq);
	struct queue_entry *e;

	n = (size_t)snprintf(head, sizeof(head), "{\"type\":");
	if (type && type->type == JSON_STRING && type->end - type->start < 200)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "\"%.*s\"",
		                      (int)(type->end - type->start), ev + type->start);
	else
		n += (size_t)snprintf(head + n, sizeof(head) - n, "null");
	n += (size_t)snprintf(head + n, sizeof(head) - n, ",\"time\":");
	if (time && time->type == JSON_STRING && time->end - time->start < 64)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "\"%.*s\"",
		                      (int)(time->end - time->start), ev + time->start);
	else
		n += (size_t)snprintf(head + n, sizeof(head) - n, "null");
	n += (size_t)snprintf(head + n, sizeof(head) - n,
	                      ",\"truncated\":true,\"originalBytes\":%zu,\"record\":\"", len);
	/* head + escaped prefix + "\"," + the appended members + pk within the record limit */
	budget = KINESIS_MAX_RECORD_BYTES - pk_len - n - 2 - tail;
	keep = json_escape_fit(ev, len, budget);
	{
		size_t esc = json_escaped_len(ev, keep);
		size_t data_len = n + esc + 2 + tail;
		char *d;
		e = queue_push(&t->q, pk_len, data_len, kind, t->last_telemetry);
		if (!e) {
			drop_record(t, kind, len, seq);
			return;
		}
		e->seq = seq;
		memcpy(entry_pk(e), pk, pk_len);
		d = entry_data(e);
		memcpy(d, head, n);
		json_escape(d + n, esc, ev, keep);
		memcpy(d + n + esc, "\",", 2);
		record_tail(t, d + n + esc + 2, rid, rid_len, seq);
	}
	t->stats.events_truncated++;
	t->stats.events_queued++;
	log_msg(LOG_WARN, "a %s event of %zu bytes was truncated to fit a Kinesis record",
	        class_name(kind), len);
}

/* TELKIN_TYPES (classes, or platform events by name) and TELKIN_MIN_LEVEL for JSON logs. */
static int event_forwarded(const struct config *c, const char *ev, const struct json_token *type,
                           const struct json_token *level, unsigned kind)
{
	if (kind == CLASS_PLATFORM && !(c->types & CLASS_PLATFORM)) {
		for (unsigned i = 0; type && i < c->n_platform_names; i++)
			if (json_string_eq(ev, type, c->platform_names[i]))
				return 1;
		return 0;
	}
	if (!(kind & c->types))
		return 0;
	if (kind == CLASS_FUNCTION && c->min_level >= 0 && level) {
		int l = level_index(ev + level->start, level->end - level->start);
		if (l >= 0 && l < c->min_level)
			return 0;
	}
	return 1;
}

/*
 * platform.logsDropped: the platform could not deliver telemetry (to telkin, or anywhere). It is
 * forwarded like any platform event; counted here so the exit summary and the EMF line show it.
 */
static void count_logs_dropped(struct telkin *t, const char *ev, const struct json_token *tk,
                               int n)
{
	int rec = n > 0 ? json_object_get(ev, tk, 0, "record") : -1;
	int i = rec >= 0 && tk[rec].type == JSON_OBJECT ?
	        json_object_get(ev, tk, rec, "droppedRecords") : -1;
	int64_t v;

	t->stats.platform_logs_dropped++;
	if (i >= 0 && json_int64(ev, &tk[i], &v) == 0 && v > 0)
		t->stats.platform_dropped_records += (uint64_t)v;
	log_msg(LOG_WARN, "the platform reports dropped telemetry (platform.logsDropped)");
}

/*
 * The request id a function or extension event belongs to (README, record format): its own
 * record.requestId (a JSON log), else the invocation the telemetry stream is in (between
 * platform.start and platform.runtimeDone; never on Managed Instances, where invocations
 * interleave). Returns its length (0: unknown, or the event has a top-level requestId already).
 */
static size_t event_request_id(const struct telkin *t, const char *ev,
                               const struct json_token *tk, int n, const struct json_token *own,
                               const char **rid)
{
	if (n > 0 && json_object_get(ev, tk, 0, "requestId") >= 0)
		return 0;
	if (own && own->end - own->start < REQUEST_ID_MAX) {
		*rid = ev + own->start;  /* the raw contents of a valid JSON string */
		return own->end - own->start;
	}
	*rid = t->stream_request_id;
	return strlen(t->stream_request_id);
}

/* telkin's own needs from platform events: the invocation the stream is in, init's end, drops. */
static void ingest_platform_event(struct telkin *t, const char *ev, const struct json_token *tk,
                                  int n, const struct json_token *type,
                                  const struct json_token *rid)
{
	int usable = rid && usable_key(ev + rid->start, rid->end - rid->start) &&
	             rid->end - rid->start < REQUEST_ID_MAX;

	if (json_string_eq(ev, type, "platform.start")) {
		t->stream_request_id[0] = 0;
		if (usable && t->mode != MODE_MANAGED)
			json_string_copy(ev, rid, t->stream_request_id, sizeof(t->stream_request_id));
	} else if (json_string_eq(ev, type, "platform.runtimeDone")) {
		t->stream_request_id[0] = 0;
		if (usable)
			json_string_copy(ev, rid, t->runtime_done_id, sizeof(t->runtime_done_id));
	} else if (json_string_eq(ev, type, "platform.initRuntimeDone")) {
		t->init_runtime_done = 1;
	} else if (json_string_eq(ev, type, "platform.logsDropped")) {
		count_logs_dropped(t, ev, tk, n);
	}
}

/*
 * One event object (ev[0..len), already validated) into the queue, or counted as dropped: the
 * event as received, then the members telkin appends (record_tail). pre: its tokens from the
 * batch's tokenization to depth 3 (npre of them, offsets in the batch), or NULL to tokenize it
 * here.
 */
static void ingest_event(struct telkin *t, const char *ev, size_t len,
                         const struct json_token *pre, int npre)
{
	struct json_token *tk = t->event_toks;
	const struct json_token *type = NULL, *time = NULL, *rid = NULL, *own_rid = NULL;
	const struct json_token *level = NULL;
	char pk_buf[SANDBOX_ID_LEN + 1];
	const char *pk = t->sandbox_id, *erid = NULL;
	size_t pk_len = SANDBOX_ID_LEN, data_len, body_end, erid_len = 0;
	uint64_t seq;
	unsigned kind;
	int n, i, empty;
	struct queue_entry *e;

	/* Depth 2 reaches record.requestId. The batch's tokens, rebased to the event, when it has
	 * them; else tokenized here (an event with very many members falls back to depth 1).
	 * ingest_batch has checked the whole batch: strings are not checked again. */
	if (pre && npre <= EVENT_MAX_TOKENS) {
		uint32_t base = pre[0].start, first = (uint32_t)(pre - t->batch_toks);
		for (i = 0; i < npre; i++) {
			tk[i] = pre[i];
			tk[i].start -= base;
			tk[i].end -= base;
			tk[i].next -= first;
		}
		n = npre;
	} else {
		n = json_parse_accepted(ev, len, tk, EVENT_MAX_TOKENS, JSON_MAX_DEPTH, 2);
		if (n < 0)
			n = json_parse_accepted(ev, len, tk, EVENT_MAX_TOKENS, JSON_MAX_DEPTH, 1);
	}
	if (n > 0) {
		int rec;
		i = json_object_get(ev, tk, 0, "type");
		type = i >= 0 ? &tk[i] : NULL;
		i = json_object_get(ev, tk, 0, "time");
		time = i >= 0 ? &tk[i] : NULL;
		rec = json_object_get(ev, tk, 0, "record");
		if (rec >= 0 && tk[rec].type == JSON_OBJECT) {
			i = json_object_get(ev, tk, rec, "requestId");
			if (i >= 0 && tk[i].type == JSON_STRING) {
				own_rid = &tk[i];
				if (!(tk[i].flags & JSON_ESCAPED))
					rid = &tk[i];
			}
			i = json_object_get(ev, tk, rec, "level");
			if (i >= 0 && tk[i].type == JSON_STRING)
				level = &tk[i];
		}
	}
	kind = event_class(ev, type);
	/* SnapStart: the first event of a restored copy. Its records carry the new identity. */
	if (t->snapshot_pending && type && json_string_eq(ev, type, "platform.restoreStart"))
		restore_from_snapshot(t, "platform.restoreStart");
	t->stats.events_received++;
	if (kind == CLASS_PLATFORM && type)
		ingest_platform_event(t, ev, tk, n, type, rid);
	if (!event_forwarded(&t->cfg, ev, type, level, kind)) {
		t->stats.events_filtered++;  /* not numbered: it leaves no gap */
		return;
	}
	seq = ++t->seq;
	if (kind == CLASS_FUNCTION || kind == CLASS_EXTENSION)
		erid_len = event_request_id(t, ev, tk, n, own_rid, &erid);

	if (t->cfg.pk_mode == PK_REQUEST) {
		if (rid && usable_key(ev + rid->start, rid->end - rid->start)) {
			pk = ev + rid->start;
			pk_len = rid->end - rid->start;
		} else if (t->stream_request_id[0]) {
			pk = t->stream_request_id;  /* text logs carry no requestId: the stream's */
			pk_len = strlen(pk);
		} else if (t->request_id[0] && t->phase != PHASE_SHUTDOWN &&
		           t->mode != MODE_MANAGED) {
			pk = t->request_id;   /* else the invocation's */
			pk_len = strlen(pk);
		}
	} else if (t->cfg.pk_mode == PK_RANDOM) {
		random_hex(pk_buf, 16);
		pk = pk_buf;
		pk_len = 16;
	}

	/* The record: the event as received, with telkin's members appended. */
	body_end = len - 1; /* the closing brace */
	empty = 1;
	for (size_t j = body_end; j-- > 0;) {
		char c = ev[j];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		empty = c == '{';
		break;
	}
	data_len = body_end + (empty ? 0 : 1) + record_tail_len(t, erid_len, seq);
	if (data_len + pk_len > KINESIS_MAX_RECORD_BYTES) {
		queue_truncated(t, ev, len, type, time, pk, pk_len, kind, erid, erid_len, seq);
		return;
	}
	e = queue_push(&t->q, pk_len, data_len, kind, t->last_telemetry); /* the batch's arrival */
	if (!e) {
		drop_record(t, kind, data_len, seq);
		return;
	}
	e->seq = seq;
	memcpy(entry_pk(e), pk, pk_len);
	memcpy(entry_data(e), ev, body_end);
	if (!empty)
		entry_data(e)[body_end] = ',';
	record_tail(t, entry_data(e) + body_end + (empty ? 0 : 1), erid, erid_len, seq);
	t->stats.events_queued++;
}

/*
 * A Telemetry API POST body: a JSON array of event objects. The whole batch is validated before
 * anything is queued, so a rejected batch (which Lambda may resend) leaves no partial copy.
 * 0, or -1 with a reason for the 400 response.
 */
static int ingest_batch(struct telkin *t, const char *body, size_t len, char *err, size_t errcap)
{
	struct json_token *tk = t->batch_toks;
	size_t off = 0;
	int n, i, deep = 1;

	/* Once, to depth 3, for the events' own tokens; a batch that needs more tokens than that,
	 * to depth 1 (its events are then tokenized one by one). */
	n = json_parse(body, len, tk, t->batch_tok_cap, JSON_MAX_DEPTH, 3, &off);
	if (n == JSON_ERR_NOMEM) {
		deep = 0;
		n = json_parse(body, len, tk, LISTEN_MAX_EVENTS + 1, JSON_MAX_DEPTH, 1, &off);
	}
	if (n < 0) {
		if (n == JSON_ERR_NOMEM)
			snprintf(err, errcap, "more than %d events in one batch", LISTEN_MAX_EVENTS);
		else
			snprintf(err, errcap, "invalid JSON at byte %zu: %s", off, json_strerror(n));
		return -1;
	}
	if (tk[0].type != JSON_ARRAY) {
		snprintf(err, errcap, "expected a JSON array of telemetry events");
		return -1;
	}
	if (tk[0].size > LISTEN_MAX_EVENTS) { /* the depth-3 tokens may have had room for more */
		snprintf(err, errcap, "more than %d events in one batch", LISTEN_MAX_EVENTS);
		return -1;
	}
	for (i = 1; i < n; i = (int)tk[i].next) {
		if (tk[i].type != JSON_OBJECT) {
			snprintf(err, errcap, "event at byte %u is not a JSON object", tk[i].start);
			return -1;
		}
	}
	t->stats.batches_received++;
	t->last_telemetry = now_ms();
	report_drops(t);
	for (i = 1; i < n; i = (int)tk[i].next)
		ingest_event(t, body + tk[i].start, tk[i].end - tk[i].start, deep ? &tk[i] : NULL,
		             (int)tk[i].next - i);
	report_drops(t);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Telemetry listener: an HTTP/1.1 server for Lambda's POSTs. Keep-alive, Content-Length and  */
/* chunked bodies, a body limit, slow requests timed out.                                      */
/*                                                                                             */
/* Any process in the sandbox can connect, so slots are many and cheap: each connection has    */
/* only a LISTEN_HEAD_MAX buffer, enough for a request head and a small body. A request whose  */
/* valid head (POST /, acceptable length) announces more is lent one of LISTEN_BODY_BUFS large */
/* buffers; a borrower that stops sending loses it to the next request that needs one. When    */
/* every slot is taken, a new connection evicts, in this order: one draining after an error   */
/* reply, one whose head never finished (older first, new ones last), an idle keep-alive      */
/* connection; never a request whose head has arrived (Lambda's deliveries are such requests  */
/* from their first read on).                                                                  */

/* The buffer a connection reads into: its own head buffer, or a lent body buffer. */
static void listener_use_head(struct telkin *t, struct listen_conn *c)
{
	if (c->body >= 0) {
		t->body_owner[c->body] = NULL;
		if (c->len <= LISTEN_HEAD_MAX)
			memcpy(c->head, c->buf, c->len);
		else
			c->len = 0; /* only when the connection is being closed or drained */
	}
	c->body = -1;
	c->buf = c->head;
	c->cap = LISTEN_HEAD_MAX;
}

/* Drop what was read of the current request (closing or draining): no buffer, no wait. */
static void listener_forget_request(struct telkin *t, struct listen_conn *c)
{
	c->len = 0;
	listener_use_head(t, c);
	if (c->waiting)
		t->n_waiting--;
	c->waiting = 0;
	c->head_done = 0;
}

static void listener_close(struct telkin *t, struct listen_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	while (t->conns_hi && t->conns[t->conns_hi - 1].fd < 0)
		t->conns_hi--;
	listener_forget_request(t, c);
	c->request_started = 0;
	c->continue_sent = 0;
	c->draining = 0;
}

/*
 * Close after an error reply without losing the reply: closing with unread input makes the
 * kernel send a reset, which can destroy the reply before the client reads it. So half-close,
 * then read and discard what the client still sends, for LISTEN_DRAIN_MS at most.
 */
static void listener_drain(struct telkin *t, struct listen_conn *c)
{
	shutdown(c->fd, SHUT_WR);
	listener_forget_request(t, c);
	c->draining = 1;
	c->request_started = now_ms();
}

/* Responses are small: one non-blocking send; a peer that cannot take them is dropped. */
static int listener_respond(struct telkin *t, struct listen_conn *c, int status,
                            const char *reason, const char *message, int close_after)
{
	char resp[512];
	char body[300];
	size_t blen = 0;
	int n;

	if (message) {
		size_t esc;
		memcpy(body, "{\"errorMessage\":\"", 17);
		esc = escape_bounded(body + 17, message, 200);
		memcpy(body + 17 + esc, "\"}", 2);
		blen = 17 + esc + 2;
	}
	n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s%s\r\n",
	             status, reason, blen, blen ? "Content-Type: application/json\r\n" : "",
	             close_after ? "Connection: close\r\n" : "");
	if (blen)
		memcpy(resp + n, body, blen);
	if (send(c->fd, resp, (size_t)n + blen, MSG_NOSIGNAL) != (ssize_t)((size_t)n + blen)) {
		listener_close(t, c);
		return -1;
	}
	if (close_after)
		listener_drain(t, c);
	return close_after ? -1 : 0;
}

/* Reject a request, count it and say why. -1 when the connection was closed. */
static int listener_reject(struct telkin *t, struct listen_conn *c, int status,
                           const char *reason, const char *message, int close_after)
{
	t->stats.batches_rejected++;
	log_msg(t->stats.batches_rejected <= LISTEN_LOG_REJECTS ? LOG_WARN : LOG_DEBUG,
	        "telemetry request rejected: %d %s", status, message);
	return listener_respond(t, c, status, reason, message, close_after);
}

/*
 * How ready c is to fill a body buffer: 2 when the rest of its request is already in the
 * socket (Lambda's sender writes a request at once), 1 when some input waits, 0 when none.
 */
static int listener_readiness(const struct listen_conn *c)
{
	int avail = 0;

	if (ioctl(c->fd, FIONREAD, &avail) < 0 || avail <= 0)
		return 0;
	return c->need && c->len + (size_t)avail >= c->need ? 2 : 1;
}

/*
 * A body buffer for c: a free one, else, when c has input waiting, one taken back from the
 * borrower that has sent nothing for longest (nothing unread, silent for LISTEN_BODY_STALL_MS,
 * or LISTEN_BODY_STALL_READY_MS when c's whole request is in): it is answered 408.
 * -1 when every buffer is in use by a request still sending.
 */
static int listener_body_find(struct telkin *t, const struct listen_conn *c)
{
	struct listen_conn *victim = NULL;
	int64_t now = now_ms(), stall;
	int ready;

	for (int b = 0; b < LISTEN_BODY_BUFS; b++)
		if (!t->body_owner[b])
			return b;
	ready = listener_readiness(c);
	if (!ready)
		return -1;
	stall = ready == 2 ? LISTEN_BODY_STALL_READY_MS : LISTEN_BODY_STALL_MS;
	for (int b = 0; b < LISTEN_BODY_BUFS; b++) {
		struct listen_conn *o = t->body_owner[b];
		if (o != c && now - o->last_used >= stall &&
		    (!victim || o->last_used < victim->last_used) && !listener_readiness(o))
			victim = o;
	}
	if (!victim)
		return -1;
	listener_reject(t, victim, 408, "Request Timeout", "request body stalled while another "
	                "request needed its buffer", 1);
	for (int b = 0; b < LISTEN_BODY_BUFS; b++)
		if (!t->body_owner[b])
			return b;
	return -1;
}

/* A valid head announces more than the head buffer holds: lend a body buffer, or wait. */
static void listener_lend(struct telkin *t, struct listen_conn *c)
{
	int b = listener_body_find(t, c);

	if (b < 0) {
		if (!c->waiting)
			t->n_waiting++;
		if (listener_readiness(c) == 2)
			t->ready_waiting = 1;
		c->waiting = 1;   /* not read until a buffer is free (listener_resume) */
		return;
	}
	if (c->waiting)
		t->n_waiting--;
	c->waiting = 0;
	memcpy(t->body_bufs[b], c->buf, c->len);
	t->body_owner[b] = c;
	c->body = b;
	c->buf = t->body_bufs[b];
	c->cap = LISTEN_HEAD_MAX + t->body_limit;
}

/*
 * Handle every complete request in the connection's buffer (pipelining allowed).
 * Returns -1 when the connection was closed.
 */
static int listener_process(struct telkin *t, struct listen_conn *c)
{
	while (c->len) {
		struct http_head h;
		char *body;
		size_t body_len, consumed, have;
		char err[160];
		int rc = http_parse_head(c->buf, c->len, 1, &h);

		if (rc == 0) {
			if (c->len >= LISTEN_HEAD_MAX) {
				listener_reject(t, c, 431, "Request Header Fields Too Large",
				                "request head over 8 KiB", 1);
				return -1;
			}
			return 0;
		}
		if (rc > 0 && h.head_len > LISTEN_HEAD_MAX) {
			listener_reject(t, c, 431, "Request Header Fields Too Large",
			                "request head over 8 KiB", 1);
			return -1;
		}
		if (rc < 0) {
			listener_reject(t, c, 400, "Bad Request", "malformed HTTP request", 1);
			return -1;
		}
		if (!span_ieq(h.method, h.method_len, "POST")) {
			listener_reject(t, c, 405, "Method Not Allowed", "only POST is accepted", 1);
			return -1;
		}
		if (h.path_len != 1 || h.path[0] != '/') {
			listener_reject(t, c, 404, "Not Found", "telemetry is posted to /", 1);
			return -1;
		}
		if (!h.chunked && h.content_length < 0) {
			listener_reject(t, c, 411, "Length Required", "Content-Length or chunked body "
			                "required", 1);
			return -1;
		}
		if (h.content_length > (long long)t->body_limit) {
			snprintf(err, sizeof(err), "body over %zu bytes", t->body_limit);
			listener_reject(t, c, 413, "Payload Too Large", err, 1);
			return -1;
		}
		c->head_done = 1; /* a request in progress: never evicted */
		if (h.expect_continue && !c->continue_sent) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			if (send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL) != sizeof(cont) - 1) {
				listener_close(t, c);
				return -1;
			}
			c->continue_sent = 1;
		}
		body = c->buf + h.head_len;
		have = c->len - h.head_len;
		if (h.chunked) {
			rc = chunked_decode(body, have, t->body_limit, &body_len, &consumed);
			if (rc == CHUNKED_TOO_LARGE) {
				snprintf(err, sizeof(err), "chunked body over %zu bytes", t->body_limit);
				listener_reject(t, c, 413, "Payload Too Large", err, 1);
				return -1;
			}
			if (rc < 0) {
				listener_reject(t, c, 400, "Bad Request", "malformed chunked body", 1);
				return -1;
			}
			if (rc == 0) {
				if (c->len < c->cap)
					return 0;
				c->need = 0;
				if (c->body >= 0) {
					listener_reject(t, c, 413, "Payload Too Large", "chunked body over "
					                "the limit", 1);
					return -1;
				}
				listener_lend(t, c);
				return 0;
			}
		} else {
			body_len = (size_t)h.content_length;
			if (have < body_len) {
				c->need = h.head_len + body_len;
				if (c->need > c->cap)
					listener_lend(t, c);
				return 0;
			}
			consumed = body_len;
		}

		if (ingest_batch(t, body, body_len, err, sizeof(err)) < 0) {
			if (listener_reject(t, c, 400, "Bad Request", err, h.close) < 0)
				return -1;
		} else if (listener_respond(t, c, 200, "OK", NULL, h.close) < 0) {
			return -1;
		}
		c->served = 1;
		c->head_done = 0;
		/* Keep what follows (a pipelined request). */
		consumed += h.head_len;
		memmove(c->buf, c->buf + consumed, c->len - consumed);
		c->len -= consumed;
		if (c->body >= 0 && c->len <= LISTEN_HEAD_MAX)
			listener_use_head(t, c);
		c->continue_sent = 0;
		c->request_started = c->len ? now_ms() : 0;
	}
	return 0;
}

static void listener_read(struct telkin *t, struct listen_conn *c)
{
	/* A bounded amount per turn: a client streaming megabytes must not hold the loop. */
	for (int reads = 0; c->draining && reads < LISTEN_DRAIN_READS; reads++) {
		ssize_t n = read(c->fd, t->discard, sizeof(t->discard));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			listener_close(t, c);
			return;
		}
	}
	if (c->draining)
		return;
	while (!c->waiting) {
		ssize_t n;
		if (c->len == c->cap) {
			listener_reject(t, c, 413, "Payload Too Large", "request over the limit", 1);
			return;
		}
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			listener_close(t, c);
			return;
		}
		if (!c->request_started)
			c->request_started = now_ms();
		c->last_used = now_ms();
		c->len += (size_t)n;
		if (listener_process(t, c) < 0)
			return;
	}
}

/*
 * Requests waiting for a body buffer get one (listener_body_find: free, or taken back from a
 * stalled borrower): those whose whole request is in first, then those with input, then the
 * oldest. A request that announced a body and stopped sending is served last.
 */
static void listener_resume(struct telkin *t)
{
	for (size_t tries = 0; t->n_waiting && tries < t->n_conns; tries++) {
		struct listen_conn *next = NULL;
		int next_pending = 0;

		for (size_t i = 0; i < t->conns_hi; i++) {
			struct listen_conn *c = &t->conns[i];
			int pending;
			if (c->fd < 0 || !c->waiting)
				continue;
			pending = listener_readiness(c);
			if (!next || pending > next_pending ||
			    (pending == next_pending && c->request_started < next->request_started)) {
				next = c;
				next_pending = pending;
			}
		}
		if (!next) {
			t->n_waiting = 0;
			return;
		}
		t->ready_waiting = next_pending == 2;
		listener_lend(t, next);
		if (next->waiting)
			return; /* no buffer for the best candidate: none for the others */
		if (listener_process(t, next) == 0)
			listener_read(t, next);
	}
}

/*
 * Which connection a new one may replace, lowest rank first; -1: never (a request whose head
 * has arrived). Within a rank the one idle longest goes first.
 */
static int listener_evict_rank(const struct listen_conn *c, int64_t now)
{
	if (c->draining)
		return 0;
	if (c->head_done || c->waiting || c->body >= 0)
		return -1;
	if (c->served && !c->len)
		return 3;   /* a client's idle keep-alive connection: Lambda's sender keeps one */
	if (now - c->accepted < LISTEN_EVICT_GRACE_MS)
		return 2;   /* may not have had the time to send its head yet */
	return 1;       /* a head that never finished, or never started */
}

/*
 * The next slot never used, set up free. Slots are set up on first use, not at start: all of
 * them at start touched 2 048 x 104 bytes, 52 pages, each a first-touch fault (~12 us on this
 * project's VMs) on the way to the subscription.
 */
static struct listen_conn *listener_slot_make(struct telkin *t)
{
	struct listen_conn *c = &t->conns[t->conns_made];

	c->fd = -1;
	c->body = -1;
	c->head = t->listen_heads + t->conns_made * LISTEN_HEAD_MAX;
	c->buf = c->head;
	c->cap = LISTEN_HEAD_MAX;
	t->conns_made++;
	return c;
}

/*
 * New connections, at most LISTEN_ACCEPT_BATCH per loop turn (the rest after the connections
 * already open are served): a free slot, else evict (listener_evict_rank), else 503.
 */
static void listener_accept(struct telkin *t)
{
	for (int accepted = 0; accepted < LISTEN_ACCEPT_BATCH; accepted++) {
		struct listen_conn *slot = NULL;
		int rank = 4;
		int64_t now;
		int fd = accept(t->listen_fd, NULL, NULL);
		if (fd < 0)
			return;
		set_nonblocking(fd);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		now = now_ms();
		for (size_t i = 0; i < t->conns_made && !slot; i++)
			if (t->conns[i].fd < 0)
				slot = &t->conns[i];
		if (!slot && t->conns_made < t->n_conns)
			slot = listener_slot_make(t);
		for (size_t i = 0; i < t->conns_hi && rank && !(slot && slot->fd < 0); i++) {
			struct listen_conn *c = &t->conns[i];
			int r = listener_evict_rank(c, now);
			if (r >= 0 && (r < rank || (r == rank && c->last_used < slot->last_used))) {
				slot = c;
				rank = r;
			}
		}
		if (!slot) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
			                           "Content-Length: 0\r\nConnection: close\r\n\r\n";
			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL) < 0)
				log_msg(LOG_DEBUG, "busy response not sent");
			close(fd);
			t->stats.batches_rejected++;
			continue;
		}
		if (slot->fd >= 0)
			t->stats.listener_evictions++;
		listener_close(t, slot);
		slot->fd = fd;
		if ((size_t)(slot - t->conns) >= t->conns_hi)
			t->conns_hi = (size_t)(slot - t->conns) + 1;
		slot->served = 0;
		slot->accepted = now;
		slot->last_used = now;
		/* A request already sent marks the connection busy now, before the next accept. */
		listener_read(t, slot);
	}
}

/* Drop connections whose request has stalled (slowloris), and drained ones. */
static void listener_expire(struct telkin *t, int64_t now)
{
	for (size_t i = 0; i < t->conns_hi; i++) {
		struct listen_conn *c = &t->conns[i];
		if (c->fd >= 0 && c->draining && now - c->request_started >= LISTEN_DRAIN_MS) {
			listener_close(t, c);
		} else if (c->fd >= 0 && !c->draining && c->request_started &&
		    now - c->request_started >= LISTEN_SLOW_REQUEST_MS) {
			listener_reject(t, c, 408, "Request Timeout", "request not completed in time", 1);
		}
	}
}

/*
 * The nearest time listener_expire or listener_resume has something to do; INT64_MAX when none.
 * While requests wait for a body buffer, a borrower may turn stalled at any time.
 */
static int64_t listener_next_deadline(const struct telkin *t, int64_t now)
{
	int64_t next = !t->n_waiting ? INT64_MAX :
	               now + (t->ready_waiting ? LISTEN_BODY_STALL_READY_MS : LISTEN_BODY_STALL_MS);
	for (size_t i = 0; i < t->conns_hi; i++) {
		const struct listen_conn *c = &t->conns[i];
		int64_t at;
		if (c->fd < 0 || !c->request_started)
			continue;
		at = c->request_started + (c->draining ? LISTEN_DRAIN_MS : LISTEN_SLOW_REQUEST_MS);
		if (at < next)
			next = at;
	}
	return next;
}

/*
 * Slots from RLIMIT_NOFILE: the soft limit is raised to the hard one when that gives more
 * (the default soft limit is often 1024), LISTEN_FD_RESERVE descriptors are left for the rest.
 */
static size_t listener_slots(void)
{
	struct rlimit rl;
	rlim_t want = LISTEN_SLOTS_MAX + LISTEN_FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return LISTEN_SLOTS_MIN;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		struct rlimit raised = rl;
		raised.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return LISTEN_SLOTS_MAX;
	if (rl.rlim_cur < LISTEN_SLOTS_MIN + LISTEN_FD_RESERVE)
		return LISTEN_SLOTS_MIN;
	return (size_t)rl.rlim_cur - LISTEN_FD_RESERVE;
}

/* What buffer_map maps for size bytes: the small lead, then whole huge pages to the end. */
static size_t buffer_map_len(size_t size)
{
	size_t rest = size > BUFFER_SMALL_LEAD ? size - BUFFER_SMALL_LEAD : 1;

	return BUFFER_SMALL_LEAD + ((rest + HUGE_PAGE_BYTES - 1) & ~(size_t)(HUGE_PAGE_BYTES - 1));
}

/*
 * A large buffer whose pages are touched as it fills from its start (the queue, which starts
 * again at 0 whenever it empties; the request body; the listener's body buffers): anonymous
 * memory placed so that its first BUFFER_SMALL_LEAD bytes end on a HUGE_PAGE_BYTES boundary.
 * Those stay on 4 KiB pages: light use touches nothing else, so a quiet function's resident set
 * stays small. With huge (TELKIN_HUGE_PAGES=1), the rest is advised MADV_HUGEPAGE: where THP is
 * "always" or "madvise" (elsewhere the advice is ignored) a burst's pass through it takes one
 * page fault per 2 MiB instead of 512. Page faults were the largest cost of a first burst on this
 * project's build machines (~12 us each; README, performance). NULL on failure.
 */
static void *buffer_map(size_t size, int huge)
{
	size_t len = buffer_map_len(size);
	size_t span = len + HUGE_PAGE_BYTES, lead, end;
	uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *b, *p;

	if (m == MAP_FAILED)
		return NULL;
	/* The first boundary with room for the lead below it. */
	b = (uint8_t *)(((uintptr_t)m + BUFFER_SMALL_LEAD + HUGE_PAGE_BYTES - 1) &
	                ~(uintptr_t)(HUGE_PAGE_BYTES - 1));
	p = b - BUFFER_SMALL_LEAD;
	lead = (size_t)(p - m);
	end = lead + len;
	if (lead)
		munmap(m, lead);
	munmap(m + end, span - end);
	if (huge)
		madvise(b, len - BUFFER_SMALL_LEAD, MADV_HUGEPAGE);
	return p;
}

#ifdef TELKIN_TEST /* telkin keeps its buffers until it exits; tests give them back */
static void buffer_unmap(void *p, size_t size)
{
	if (p)
		munmap(p, buffer_map_len(size));
}
#endif

/* The slots (set up on first use: listener_slot_make), their head buffers, the body buffers and
 * the poll array: allocated once, at start. */
static int listener_alloc(struct telkin *t)
{
	t->n_conns = listener_slots();
	t->conns = calloc(t->n_conns, sizeof(*t->conns));
	t->listen_heads = malloc(t->n_conns * LISTEN_HEAD_MAX);
	t->pfd = malloc((3 + t->n_conns) * sizeof(*t->pfd));
	if (!t->conns || !t->listen_heads || !t->pfd)
		return -1;
	t->conns_made = 0;
	for (int b = 0; b < LISTEN_BODY_BUFS; b++) {
		t->body_bufs[b] = buffer_map(LISTEN_HEAD_MAX + t->body_limit, t->cfg.huge_pages);
		if (!t->body_bufs[b])
			return -1;
	}
	return 0;
}

/* The address sandbox.localdomain resolves to: /etc/hosts, then the resolver; else loopback. */
static int listener_open(struct telkin *t, char *err, size_t errcap)
{
	struct sockaddr_in sa;
	struct addrinfo hints, *res = NULL;
	int one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)t->cfg.listen_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(LISTEN_HOST, NULL, &hints, &res) == 0 && res) {
		sa.sin_addr = ((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr;
		freeaddrinfo(res);
	}
	t->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->listen_fd < 0)
		goto fail;
	setsockopt(t->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(t->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(t->listen_fd, LISTEN_BACKLOG) < 0)
		goto fail;
	log_msg(LOG_DEBUG, "listening on %s:%u", inet_ntoa(sa.sin_addr), t->cfg.listen_port);
	return 0;
fail:
	snprintf(err, errcap, "telemetry listener on %s:%u: %s", inet_ntoa(sa.sin_addr),
	         t->cfg.listen_port, strerror(errno));
	return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Pacer: how fast the stream takes records, learned from its throttling.                      */
/*                                                                                             */
/* A Kinesis shard takes 1 000 records and 1 MiB a second; beyond that its records fail with   */
/* ProvisionedThroughputExceededException while the rest of the request goes through. telkin   */
/* may not call ListShards, so it learns the capacity as the Kinesis Producer Library's shard  */
/* limiter would hold it: a response in which a shard's records nearly all failed from its    */
/* first throttled one on (Kinesis takes them in order) shows that shard's bucket empty; what  */
/* Kinesis accepted between two such responses, in shard-seconds of                            */
/* those limits, over the time between them, is the capacity (a fraction of a shard for one    */
/* key when other writers share it, N shards for random keys). Requests are then sized and     */
/* timed to 1/8 above it, so the shards stay busy, growth shows, and the records that fail     */
/* wait in the queue at their places (oldest first) without stopping the others.              */
/* One estimate for the stream, not one per shard: with one key (sandbox) it is that shard's;  */
/* with random keys every request spreads evenly over the shards; with request keys the queue  */
/* is mostly one invocation, on one shard. ShardIds only tell shards apart within a response.  */

#define SHARD_RECORDS_PER_S  1000          /* Kinesis write limits per shard (Kinesis Data     */
#define SHARD_BYTES_PER_S    (1u << 20)    /* Streams quotas: 1 000 records/s, 1 MiB/s)        */
#define PACE_SLICE_MS        100           /* a paced request carries this much of the rate    */
#define PACE_BURST_MS        1000          /* idle time credited at most: a shard's bucket     */
                                           /* holds about one second of its limits             */
#define PACE_SAMPLE_MS       100           /* a capacity sample spans at least this long       */
#define PACE_PROBE_DIV       8             /* offer 1/PACE_PROBE_DIV above the estimate        */
#define PACE_MIN_MSHARDS     100           /* estimate floor: a tenth of a shard               */
#define PACE_MAX_MSHARDS     (1u << 24)    /* ceiling: far above any stream's 10 000 shards    */
#define PACE_DRY_RUN         5             /* a shard's bucket ran dry in a response when from */
                                           /* its first throttled record on nearly all failed  */
                                           /* (at most 1 in PACE_PROBE_DIV passed: a smaller   */
                                           /* record may still fit), this many or at least     */
                                           /* 1/PACE_PROBE_DIV of its records; else the        */
                                           /* throttling was random, not the shard's limits    */
#define PACE_DRY_MIN         2             /* ...and never fewer: one throttled record at the  */
                                           /* end of a short request is as likely random       */
#define PACE_SLOTS           16            /* shards told apart in a response (ShardId mod 16) */

/* A shard's records in one response: Kinesis takes them in order. */
struct pace_shard {
	uint16_t seen;            /* records for the shard */
	uint16_t failed;          /* throttled, from the first throttled one on */
	uint16_t passed;          /* taken after the first throttled one */
};

/* Did the shard's bucket run dry in this response? */
static int pace_dry(const struct pace_shard *s)
{
	return s->failed >= PACE_DRY_MIN && s->passed * PACE_PROBE_DIV <= s->failed &&
	       (s->failed >= PACE_DRY_RUN || s->failed * PACE_PROBE_DIV >= s->seen);
}

/* A shard's number in "shardId-000000000003" (within s[0..n)), mod PACE_SLOTS; 0 if none. */
static unsigned shard_slot(const char *s, size_t n)
{
	static const char tag[] = "shardId-";
	unsigned v = 0;
	for (size_t i = 0; i + sizeof(tag) - 1 <= n; i++) {
		if (memcmp(s + i, tag, sizeof(tag) - 1))
			continue;
		for (i += sizeof(tag) - 1; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			v = (v * 10 + (unsigned)(s[i] - '0')) % PACE_SLOTS;
		return v;
	}
	return 0;
}

/* The estimate with the probe on top, in thousandths of a shard. */
static uint64_t pace_offer(const struct pacer *p)
{
	return (uint64_t)p->mshards + p->mshards / PACE_PROBE_DIV;
}

/* Size the next request: what the estimate allows for the time since the last one. */
static void pace_size(struct pacer *p, int64_t now)
{
	int64_t credit = now - p->next_at;
	uint64_t offer = pace_offer(p);

	p->max_records = p->max_bytes = 0;
	if (!p->mshards)
		return;
	if (credit < PACE_SLICE_MS)
		credit = PACE_SLICE_MS;
	if (credit > PACE_BURST_MS)
		credit = PACE_BURST_MS;
	p->max_records = (size_t)(SHARD_RECORDS_PER_S * offer * (uint64_t)credit / 1000000u) + 1;
	p->max_bytes = (size_t)(SHARD_BYTES_PER_S * offer * (uint64_t)credit / 1000000u) + 1;
}

/* A request of records and bytes went out: the next waits for the time it takes the stream. */
static void pace_spend(struct pacer *p, int64_t now, size_t records, size_t bytes)
{
	uint64_t ms_r = (uint64_t)records * 1000u / SHARD_RECORDS_PER_S;
	uint64_t ms_b = (uint64_t)bytes * 1000u / SHARD_BYTES_PER_S;
	int64_t base = p->next_at > now - PACE_BURST_MS ? p->next_at : now - PACE_BURST_MS;

	if (!p->mshards)
		return;
	p->next_at = base + (int64_t)((ms_r > ms_b ? ms_r : ms_b) * 1000u / pace_offer(p));
}

/*
 * Learn from a PutRecords answer: records and bytes Kinesis accepted, and whether a shard's
 * bucket was seen empty (dry). A sample needs two dry answers PACE_SAMPLE_MS apart or more.
 */
static void pace_learn(struct pacer *p, int64_t now, size_t records, size_t bytes, int dry)
{
	if (!dry) {
		p->dry_at = 0;
		if (p->mshards && p->capped) /* the pacer held the request back, and the stream took it */
			p->mshards = p->mshards + p->mshards / PACE_PROBE_DIV > PACE_MAX_MSHARDS ?
			             PACE_MAX_MSHARDS : p->mshards + p->mshards / PACE_PROBE_DIV;
		return;
	}
	p->acc_records += records;
	p->acc_bytes += bytes;
	if (p->dry_at && now - p->dry_at >= PACE_SAMPLE_MS) {
		uint64_t ms_r = p->acc_records * 1000u / SHARD_RECORDS_PER_S;
		uint64_t ms_b = p->acc_bytes * 1000u / SHARD_BYTES_PER_S;
		uint64_t sample = (ms_r > ms_b ? ms_r : ms_b) * 1000u / (uint64_t)(now - p->dry_at);
		sample = p->mshards ? (p->mshards + sample) / 2 : sample;
		p->mshards = sample < PACE_MIN_MSHARDS ? PACE_MIN_MSHARDS :
		             sample > PACE_MAX_MSHARDS ? PACE_MAX_MSHARDS : (uint32_t)sample;
		log_msg(LOG_DEBUG, "pace: the stream takes %u.%03u shards' limits",
		        (unsigned)(p->mshards / 1000), (unsigned)(p->mshards % 1000));
	}
	if (!p->dry_at || now - p->dry_at >= PACE_SAMPLE_MS) {
		p->dry_at = now;
		p->acc_records = p->acc_bytes = 0;
	}
	if (!p->mshards)              /* first sight: let the shards refill, then one full request */
		p->next_at = now + PACE_SAMPLE_MS;
	else if (p->next_at < now)    /* empty now: no idle credit */
		p->next_at = now;
}

/* ------------------------------------------------------------------------------------------ */
/* Batcher: the queue's pending records -> one PutRecords body (<= 500 records, <= 5 MiB).     */

static char *b64_put(struct b64_stream *b, char *out, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t full;

	if (!len)
		return out;
	while (b->n && len) {
		uint8_t g[3];
		if (b->n + len < 3) {
			memcpy(b->carry + b->n, p, len);
			b->n += len;
			return out;
		}
		memcpy(g, b->carry, b->n);
		memcpy(g + b->n, p, 3 - b->n);
		p += 3 - b->n;
		len -= 3 - b->n;
		b->n = 0;
		out += base64_encode(out, 4, g, 3);
	}
	full = len / 3 * 3;
	out += base64_encode(out, BASE64_ENCODED_LEN(full), p, full);
	memcpy(b->carry, p + full, len - full);
	b->n = len - full;
	return out;
}

static char *b64_end(struct b64_stream *b, char *out)
{
	out += base64_encode(out, 4, b->carry, b->n);
	b->n = 0;
	return out;
}

/*
 * Pending records from the head of the queue into one PutRecords body: at most 500 Kinesis
 * records and 5 MiB of data and keys. With TELKIN_RECORD=ndjson, consecutive events with the
 * same partition key share a record, newline-separated, up to TELKIN_RECORD_MAX_BYTES.
 * Kinesis record i carries the queue entries inflight_entries[inflight_end[i-1]..end[i]).
 * The pacer may ask for less (pace.max_records, pace.max_bytes); the first record always goes.
 *
 * Built in slices so that the listener is answered between them (a 5 MiB body takes several
 * milliseconds, more at a small function's CPU share): batch_begin, then batch_build_step until
 * it returns 1, each call writing about `budget` bytes of body and hashing them (the SigV4
 * payload hash, ready in t->payload_hash at the end). Between steps the queue only grows at its
 * tail (nothing leaves it while no request is out), so the cursor stays valid.
 */
static void batch_begin(struct telkin *t)
{
	struct batch_cursor *bc = &t->build;
	char *p = t->req_body;

	memset(bc, 0, sizeof(*bc));
	bc->active = 1;
	bc->last = SIZE_MAX;
	bc->max_records = KINESIS_MAX_RECORDS;
	bc->max_bytes = KINESIS_MAX_REQUEST_BYTES;
	if (t->pace.max_records && t->pace.max_records < bc->max_records)
		bc->max_records = t->pace.max_records;
	if (t->pace.max_bytes && t->pace.max_bytes < bc->max_bytes)
		bc->max_bytes = t->pace.max_bytes;
	t->pace.capped = 0;
	t->inflight_count = 0;
	p = APPEND_LIT(p, "{\"StreamName\":\"");
	p = append(p, t->cfg.stream_name, strlen(t->cfg.stream_name));
	if (t->cfg.stream_arn[0]) {
		p = APPEND_LIT(p, "\",\"StreamARN\":\"");
		p = append(p, t->cfg.stream_arn, strlen(t->cfg.stream_arn));
	}
	p = APPEND_LIT(p, "\",\"Records\":[");
	bc->p = p;
	sigv4_sha256_init(&bc->sha);
}

/* 1: the body is complete (t->inflight_count records, maybe 0); 0: call again. */
static int batch_build_step(struct telkin *t, size_t budget)
{
	struct batch_cursor *bc = &t->build;
	char *p = bc->p, *from = t->req_body + bc->hashed;
	int pack = t->cfg.record_mode == RECORD_NDJSON;
	size_t sep = !t->cfg.record_newline; /* ndjson: events end with \n, or are joined by one */
	size_t off = bc->last == SIZE_MAX ? queue_first(&t->q) : queue_next(&t->q, bc->last);

	for (; off != SIZE_MAX; off = queue_next(&t->q, off)) {
		struct queue_entry *e = queue_at(&t->q, off);
		size_t size = (size_t)e->data_len + e->pk_len;
		if (e->state != ENTRY_PENDING)
			continue;
		if (bc->n == INFLIGHT_MAX_ENTRIES)
			break;
		if ((size_t)(p - from) >= budget) {
			bc->p = p;
			sigv4_sha256_update(&bc->sha, from, (size_t)(p - from));
			bc->hashed = (size_t)(p - t->req_body);
			return 0;
		}
		if (pack && bc->open && bc->open->pk_len == e->pk_len &&
		    !memcmp(entry_pk(bc->open), entry_pk(e), e->pk_len) &&
		    bc->rec_bytes + sep + e->data_len <= t->cfg.record_max_bytes &&
		    bc->bytes + sep + e->data_len <= bc->max_bytes) {
			p = b64_put(&bc->b64, p, "\n", sep);
			p = b64_put(&bc->b64, p, entry_data(e), e->data_len);
			bc->rec_bytes += sep + e->data_len;
			bc->bytes += sep + e->data_len;
		} else {
			if (t->inflight_count == bc->max_records ||
			    (t->inflight_count && bc->bytes + size > bc->max_bytes)) {
				t->pace.capped = t->inflight_count < KINESIS_MAX_RECORDS &&
				                 bc->bytes + size <= KINESIS_MAX_REQUEST_BYTES;
				break;
			}
			if (bc->open) { /* close the previous record */
				p = b64_end(&bc->b64, p);
				p = APPEND_LIT(p, "\",\"PartitionKey\":\"");
				p = append(p, entry_pk(bc->open), bc->open->pk_len);
				p = APPEND_LIT(p, "\"},");
			}
			p = APPEND_LIT(p, "{\"Data\":\"");
			p = b64_put(&bc->b64, p, entry_data(e), e->data_len);
			bc->open = e;
			bc->rec_bytes = size;
			bc->bytes += size;
			t->inflight_count++;
		}
		t->inflight_entries[bc->n++] = off;
		t->inflight_end[t->inflight_count - 1] = bc->n;
		bc->last = off;
	}
	if (bc->open) {
		p = b64_end(&bc->b64, p);
		p = APPEND_LIT(p, "\",\"PartitionKey\":\"");
		p = append(p, entry_pk(bc->open), bc->open->pk_len);
		p = APPEND_LIT(p, "\"}");
	}
	p = APPEND_LIT(p, "]}");
	t->req_body_len = (size_t)(p - t->req_body);
	t->inflight_bytes = bc->bytes;
	sigv4_sha256_update(&bc->sha, from, (size_t)(p - from));
	sigv4_sha256_out_hex(&bc->sha, t->payload_hash);
	bc->active = 0;
	return 1;
}

#ifdef TELKIN_TEST
/* The whole body at once (tests, fuzzers). Returns the number of Kinesis records. */
static size_t batch_build(struct telkin *t)
{
	batch_begin(t);
	batch_build_step(t, SIZE_MAX);
	return t->inflight_count;
}
#endif

/* The queue entries of Kinesis record i of the request. */
static size_t inflight_first(const struct telkin *t, size_t i)
{
	return i ? t->inflight_end[i - 1] : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Signer: the request head with a SigV4 Authorization.                                        */

static int kinesis_sign(struct telkin *t)
{
	static const char target[] = "Kinesis_20131202.PutRecords";
	static const char ctype[] = "application/x-amz-json-1.1";
	char amz_date[SIGV4_AMZ_DATE_LEN + 1], auth[512];
	struct sigv4_header hs[5];
	struct sigv4_request r;
	const char *token = t->cfg.creds.session_token[0] ? t->cfg.creds.session_token : NULL;
	size_t nh = 0;
	int n;

	sigv4_amz_date(time(NULL), amz_date);
#define HDR(n_, v_) (hs[nh++] = (struct sigv4_header){ n_, strlen(n_), v_, strlen(v_) })
	HDR("Host", t->cfg.kinesis.host_header);
	HDR("Content-Type", ctype);
	HDR("X-Amz-Date", amz_date);
	HDR("X-Amz-Target", target);
	if (token)
		HDR("X-Amz-Security-Token", token);
#undef HDR
	memset(&r, 0, sizeof(r));
	r.method = "POST";
	r.path = "/";
	r.query = "";
	r.headers = hs;
	r.n_headers = nh;
	r.payload_hash = t->payload_hash; /* batch_build_step hashed the body */
	r.normalize_path = 1;
	if (sigv4_authorization(&t->signer, &r, amz_date, auth, sizeof(auth), NULL) < 0)
		return -1;
	n = snprintf(t->req_head, sizeof(t->req_head),
	             "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nX-Amz-Target: %s\r\n"
	             "X-Amz-Date: %s\r\n%s%s%sAuthorization: %s\r\nContent-Length: %zu\r\n"
	             "User-Agent: telkin/1.0\r\n\r\n",
	             t->cfg.kinesis.host_header, ctype, target, amz_date,
	             token ? "X-Amz-Security-Token: " : "", token ? token : "", token ? "\r\n" : "",
	             auth, t->req_body_len);
	if (n < 0 || (size_t)n >= sizeof(t->req_head))
		return -1;
	t->req_head_len = (size_t)n;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Kinesis: send, then act on the answer. At-least-once: a record leaves the queue only when   */
/* Kinesis has taken it (or refused it for good).                                              */

/* Printable ASCII without spaces: what may go into a header value we build. */
static int header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/* Digits of s[0..n) as a number, or -1. */
static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* "2026-11-22T21:00:00Z" (what follows the seconds is ignored) -> Unix ms; -1 if malformed. */
static int64_t iso_to_ms(const char *s)
{
	struct tm tm;

	if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':')
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = digits(s, 4) - 1900;
	tm.tm_mon = digits(s + 5, 2) - 1;
	tm.tm_mday = digits(s + 8, 2);
	tm.tm_hour = digits(s + 11, 2);
	tm.tm_min = digits(s + 14, 2);
	tm.tm_sec = digits(s + 17, 2);
	if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_hour < 0 || tm.tm_min < 0 ||
	    tm.tm_sec < 0)
		return -1;
	return (int64_t)timegm(&tm) * 1000;
}

/*
 * The container credentials provider (Lambda SnapStart, Managed Instances, ECS): GET the URI with
 * the authorization token, read AccessKeyId/SecretAccessKey/Token/Expiration. Blocking, bounded
 * by CRED_TIMEOUT_MS: the provider is local. Secrets go only into t->cfg.creds.
 */
static int creds_fetch(struct telkin *t, int timeout_ms, char *err, size_t errcap)
{
	static char resp[CRED_RESPONSE_MAX];
	struct config *c = &t->cfg;
	struct http_client hc;
	struct json_token tk[64];
	char head[1024], auth[2048] = "", expiry[40] = "";
	const char *token_file = env_or("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", NULL);
	int n, i, k, s, tok;
	size_t len;

	if (token_file) {
		FILE *f = fopen(token_file, "rb");
		size_t got = f ? fread(auth, 1, sizeof(auth) - 1, f) : 0;
		if (f)
			fclose(f);
		if (!f) {
			snprintf(err, errcap, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %s", strerror(errno));
			return -1;
		}
		auth[got] = 0;
		while (got && (auth[got - 1] == '\n' || auth[got - 1] == '\r' || auth[got - 1] == ' '))
			auth[--got] = 0;
	} else {
		copy_str(auth, sizeof(auth), env_or("AWS_CONTAINER_AUTHORIZATION_TOKEN", ""));
	}
	if (strpbrk(auth, "\r\n")) {
		snprintf(err, errcap, "the container authorization token has a line break");
		return -1;
	}
	n = snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s%s"
	             "Accept: application/json\r\nConnection: close\r\n\r\n", c->creds_uri.path,
	             c->creds_uri.host_header, auth[0] ? "Authorization: " : "", auth,
	             auth[0] ? "\r\n" : "");
	explicit_bzero(auth, sizeof(auth));
	if (n < 0 || (size_t)n >= sizeof(head)) {
		snprintf(err, errcap, "credentials request too large");
		return -1;
	}
	hc_init(&hc, "credentials", c->creds_uri.host, c->creds_uri.port, resp, sizeof(resp));
	len = (size_t)n;
	if (hc_run(&hc, head, len, NULL, 0, timeout_ms) < 0) {
		snprintf(err, errcap, "credentials provider %.64s: %s", c->creds_uri.host_header,
		         hc.error);
		explicit_bzero(head, sizeof(head));
		return -1;
	}
	explicit_bzero(head, sizeof(head));
	hc_close(&hc);
	n = json_parse(hc.body, hc.body_len, tk, 64, JSON_MAX_DEPTH, 1, NULL);
	if (hc.head.status != 200 || n < 0 || tk[0].type != JSON_OBJECT ||
	    (i = json_object_get(hc.body, tk, 0, "AccessKeyId")) < 0 ||
	    (s = json_object_get(hc.body, tk, 0, "SecretAccessKey")) < 0) {
		snprintf(err, errcap, "credentials provider %.64s answered HTTP %d without credentials",
		         c->creds_uri.host_header, hc.head.status);
		explicit_bzero(resp, sizeof(resp));
		return -1;
	}
	tok = json_object_get(hc.body, tk, 0, "Token");
	k = json_object_get(hc.body, tk, 0, "Expiration");
	if (json_string_copy(hc.body, &tk[i], c->creds.access_key_id,
	                     sizeof(c->creds.access_key_id)) < 0 ||
	    json_string_copy(hc.body, &tk[s], c->creds.secret_access_key,
	                     sizeof(c->creds.secret_access_key)) < 0 ||
	    (tok >= 0 && json_string_copy(hc.body, &tk[tok], c->creds.session_token,
	                                  sizeof(c->creds.session_token)) < 0)) {
		snprintf(err, errcap, "credentials from %.64s are malformed", c->creds_uri.host_header);
		explicit_bzero(resp, sizeof(resp));
		return -1;
	}
	if (tok < 0)
		c->creds.session_token[0] = 0;
	/* They go into HTTP headers: printable ASCII only (no header injection). */
	if (!header_safe(c->creds.access_key_id) || !header_safe(c->creds.secret_access_key) ||
	    !header_safe(c->creds.session_token) || !c->creds.access_key_id[0]) {
		snprintf(err, errcap, "credentials from %.64s are malformed", c->creds_uri.host_header);
		creds_wipe(&c->creds);
		explicit_bzero(resp, sizeof(resp));
		return -1;
	}
	c->creds.expires_wall_ms = 0;
	if (k >= 0 && json_string_copy(hc.body, &tk[k], expiry, sizeof(expiry)) >= 0)
		c->creds.expires_wall_ms = iso_to_ms(expiry);
	if (c->creds.expires_wall_ms < 0)
		c->creds.expires_wall_ms = 0;
	explicit_bzero(resp, sizeof(resp));
	sigv4_set_credentials(&t->signer, c->creds.access_key_id, c->creds.secret_access_key);
	return 0;
}

/*
 * Refresh container credentials ahead of their expiry (and after an ExpiredToken or a restore).
 * The fetch blocks, so it never takes longer than the lifecycle's deadline allows.
 */
static void creds_refresh(struct telkin *t, int64_t now)
{
	char err[320];
	int64_t left = lifecycle_deadline(t) - now;

	if (!t->cfg.container_creds || now < t->creds_retry_at)
		return;
	if (!t->creds_stale && (!t->cfg.creds.expires_wall_ms ||
	                        wall_ms() < t->cfg.creds.expires_wall_ms - CRED_REFRESH_EARLY_MS))
		return;
	if (left <= 0)
		return;
	if (creds_fetch(t, left < CRED_TIMEOUT_MS ? (int)left : CRED_TIMEOUT_MS, err,
	                sizeof(err)) < 0) {
		log_msg(LOG_WARN, "credentials refresh failed: %s; retrying in %d s", err,
		        CRED_RETRY_MS / 1000);
		t->creds_retry_at = now + CRED_RETRY_MS;
		return;
	}
	t->creds_stale = 0;
	t->stats.credential_refreshes++;
}

/*
 * Before a request on a kept-alive connection: may it still be used? A connection idle longer
 * than a server keeps one, or closed while we were frozen, is replaced now; one that lived
 * through a freeze must see the request acknowledged within a few round trips (a dead one
 * costs that, not a timeout).
 */
static void kinesis_connection_check(struct telkin *t, int64_t now)
{
	struct http_client *hc = &t->kin;
	int64_t idle = now - t->kin_used_at, idle_wall = wall_ms() - t->kin_used_wall;

	hc->probe = 0;
	if (hc->fd >= 0) {
		if (idle_wall > idle)
			idle = idle_wall;
		if (idle > KINESIS_IDLE_REUSE_MS || !hc_idle_usable(hc)) {
			hc_close(hc);
			t->stats.reconnects++;
		} else {
			hc->probe = t->kin_frozen;
		}
	}
	t->kin_frozen = 0;
}

static void kinesis_send(struct telkin *t, int64_t now)
{
	if (!t->build.active) {
		creds_refresh(t, now);
		if (t->cfg.container_creds && !t->cfg.creds.access_key_id[0]) {
			/* None since a restore: nothing can be signed until the provider answers. */
			t->retry_at = t->creds_retry_at > now ? t->creds_retry_at : now + CRED_RETRY_MS;
			return;
		}
		pace_size(&t->pace, now);
		batch_begin(t);
	}
	if (!batch_build_step(t, BATCH_SLICE_BYTES))
		return; /* the rest after poll(): the listener is served in between */
	if (!t->inflight_count)
		return;
	if (kinesis_sign(t) < 0) {
		log_msg(LOG_ERROR, "could not sign a PutRecords request");
		t->retry_at = now + RETRY_CAP_MS;
		return;
	}
	kinesis_connection_check(t, now);
	t->stats.putrecords_calls++;
	t->request_sent_at = now;
	t->request_out = 1;
	t->resent = 0;
	pace_spend(&t->pace, now, t->inflight_count, t->inflight_bytes);
	if (t->shutdown_cut)
		t->shutdown_cut = 2;     /* that was the last request */
	hc_start(&t->kin, t->req_head, t->req_head_len, t->req_body, t->req_body_len,
	         now + KINESIS_REQUEST_TIMEOUT_MS);
}

/* When the next PutRecords may start: after a backoff, and when the pacer allows. */
static int64_t kinesis_ready_at(const struct telkin *t)
{
	return t->retry_at > t->pace.next_at ? t->retry_at : t->pace.next_at;
}

/*
 * Every wait fits the time left: at most 1/RETRY_LEFT_SHARE of it (but RETRY_BASE_MS), so
 * several attempts fit and none waits past the deadline.
 */
static void kinesis_wait_fit(struct telkin *t, int64_t now)
{
	int64_t d = lifecycle_deadline(t), cap;
	if (d == INT64_MAX)
		return;
	cap = (d - now) / RETRY_LEFT_SHARE;
	cap = now + (cap < RETRY_BASE_MS ? RETRY_BASE_MS : cap);
	if (cap > d)
		cap = d > now ? d : now;
	if (t->retry_at > cap)
		t->retry_at = cap;
	if (t->pace.next_at > cap)
		t->pace.next_at = cap;
}

/* TELKIN_FLUSH as it applies now: auto follows the invocation rate. */
static enum flush_mode flush_effective(const struct telkin *t)
{
	return t->cfg.flush_mode == FLUSH_AUTO ? t->auto_mode : t->cfg.flush_mode;
}

/* end: how long an invocation's first events (the previous one's platform.report, delivered
 * alone at the thaw) wait for the rest before a PutRecords of their own. */
#define END_GATHER_MS 100

/* When the oldest queued event becomes a period old (periodic; END_GATHER_MS with end). */
static int64_t oldest_due_at(const struct telkin *t, int64_t now)
{
	const struct queue_entry *e = queue_at(&t->q, t->q.head);
	/* Signed: an entry queued later in the loop turn that took now is younger than now. */
	int64_t age = (int64_t)(int32_t)((uint32_t)now - e->queued_at);
	return now - age + (flush_effective(t) == FLUSH_PERIODIC ? t->cfg.flush_period_ms :
	                    END_GATHER_MS);
}

/*
 * Is a PutRecords due? Always while flushing (before /event/next with end, and for SHUTDOWN).
 * While the function runs: end ships once the oldest event has waited END_GATHER_MS (sending
 * while the function runs hides the round trips; the short wait gathers events into fewer
 * requests), periodic once it is a period old; either as soon as a full request waits.
 */
static int ship_due(const struct telkin *t, int64_t now)
{
	if (t->request_out || !t->q.count || now < kinesis_ready_at(t) || t->shutdown_cut == 2)
		return 0;
	if (t->phase == PHASE_FLUSH || t->phase == PHASE_SHUTDOWN)
		return 1;
	return now >= oldest_due_at(t, now) || t->q.count >= KINESIS_MAX_RECORDS ||
	       queue_used(&t->q) >= KINESIS_MAX_REQUEST_BYTES;
}

/* auto: periodic while invocations come often, end when they thin out (hysteresis). */
static void flush_auto_update(struct telkin *t, int64_t now)
{
	if (t->last_invoke_at) {
		int64_t gap = now - t->last_invoke_at;
		t->invoke_gap_ewma = t->invoke_gap_ewma ? (3 * t->invoke_gap_ewma + gap) / 4 : gap;
		if (t->auto_mode == FLUSH_END && t->invoke_gap_ewma <= AUTO_FREQUENT_MS)
			t->auto_mode = FLUSH_PERIODIC;
		else if (t->auto_mode == FLUSH_PERIODIC &&
		         (t->invoke_gap_ewma > AUTO_RARE_MS || gap > AUTO_RARE_MS))
			t->auto_mode = FLUSH_END;
	}
	t->last_invoke_at = now;
}

/* Wait before the next attempt: exponential backoff with full jitter, fitted to the deadline. */
static void kinesis_backoff(struct telkin *t, int64_t now)
{
	uint64_t ceiling = RETRY_BASE_MS;
	for (unsigned i = 0; i < t->attempt && ceiling < RETRY_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > RETRY_CAP_MS)
		ceiling = RETRY_CAP_MS;
	t->attempt++;
	t->retry_at = now + (int64_t)(rng_next() % (ceiling + 1));
	kinesis_wait_fit(t, now);
}

/*
 * Every error PutRecords may answer, for the whole request ("__type") or for one record
 * ("ErrorCode"), and what telkin does with it. Sources, under docs.aws.amazon.com/kinesis/
 * latest/APIReference/: [P] API_PutRecords.html, Errors; [E] API_PutRecordsResultEntry.html
 * (ErrorCode: ProvisionedThroughputExceededException or InternalFailure); [C] CommonErrors.html,
 * the errors common to all actions (older and newer editions of the list). [S] is not in those
 * pages: names the AWS SDKs' retry handlers treat as transient, kept for compatible services.
 * Answers not in the table: HTTP 5xx, 429 and 408 are retried, any other request-level error is
 * refused; an unknown per-record code is retried (Kinesis documents only the two above).
 */
enum kinesis_error_class {
	KERR_REFUSE,              /* not retryable: the records are dropped, counted, logged once */
	KERR_RETRY,               /* transient: retried (a whole request after a backoff) */
	KERR_THROTTLE,            /* throttled: retried; per record, ProvisionedThroughput paces */
	KERR_CREDS                /* expired credentials: refetched (container credentials) */
};

static const struct kinesis_error {
	const char *type;
	unsigned char what;       /* enum kinesis_error_class */
} kinesis_errors[] = {
	{ "AccessDeniedException", KERR_REFUSE },                   /* [P][C] 400 */
	{ "ExpiredToken", KERR_CREDS },                             /* [S] STS's spelling */
	{ "ExpiredTokenException", KERR_CREDS },                    /* [C] 403 */
	{ "IncompleteSignature", KERR_REFUSE },                     /* [C] 400 */
	{ "InternalFailure", KERR_RETRY },                          /* [C] 500, [E] */
	{ "InternalFailureException", KERR_RETRY },                 /* [S] */
	{ "InvalidAction", KERR_REFUSE },                           /* [C] 400 */
	{ "InvalidArgumentException", KERR_REFUSE },                /* [P] 400 */
	{ "InvalidClientTokenId", KERR_REFUSE },                    /* [C] 403 */
	{ "InvalidParameterCombination", KERR_REFUSE },             /* [C] 400 */
	{ "InvalidParameterValue", KERR_REFUSE },                   /* [C] 400 */
	{ "InvalidQueryParameter", KERR_REFUSE },                   /* [C] 400 */
	{ "KMSAccessDeniedException", KERR_REFUSE },                /* [P] 400 */
	{ "KMSDisabledException", KERR_REFUSE },                    /* [P] 400 */
	{ "KMSInvalidStateException", KERR_REFUSE },                /* [P] 400 */
	{ "KMSNotFoundException", KERR_REFUSE },                    /* [P] 400 */
	{ "KMSOptInRequired", KERR_REFUSE },                        /* [P] 400 */
	{ "KMSThrottlingException", KERR_THROTTLE },                /* [P] 400 */
	{ "LimitExceededException", KERR_THROTTLE },                /* [S] Kinesis control plane */
	{ "MalformedHttpRequestException", KERR_REFUSE },           /* [C] 400 */
	{ "MalformedQueryString", KERR_REFUSE },                    /* [C] 404 */
	{ "MissingAction", KERR_REFUSE },                           /* [C] 400 */
	{ "MissingAuthenticationToken", KERR_REFUSE },              /* [C] 403 */
	{ "MissingParameter", KERR_REFUSE },                        /* [C] 400 */
	{ "NotAuthorized", KERR_REFUSE },                           /* [C] 400 */
	{ "OptInRequired", KERR_REFUSE },                           /* [C] 403 */
	{ "ProvisionedThroughputExceededException", KERR_THROTTLE },/* [P] 400, [E] */
	{ "RequestAbortedException", KERR_RETRY },                  /* [C] 400 */
	{ "RequestEntityTooLargeException", KERR_REFUSE },          /* [C] 413 */
	{ "RequestExpired", KERR_RETRY },                           /* [C] 400: signed anew */
	{ "RequestLimitExceeded", KERR_THROTTLE },                  /* [S] */
	{ "RequestTimeout", KERR_RETRY },                           /* [S] */
	{ "RequestTimeoutException", KERR_RETRY },                  /* [C] 408 */
	{ "ResourceNotFoundException", KERR_REFUSE },               /* [P] 400 */
	{ "ServiceUnavailable", KERR_RETRY },                       /* [C] 503 */
	{ "ServiceUnavailableException", KERR_RETRY },              /* [S] */
	{ "SlowDown", KERR_THROTTLE },                              /* [S] */
	{ "Throttling", KERR_THROTTLE },                            /* [S] */
	{ "ThrottlingException", KERR_THROTTLE },                   /* [C] 400 */
	{ "UnknownOperationException", KERR_REFUSE },               /* [C] 404 */
	{ "UnrecognizedClientException", KERR_REFUSE },             /* [C] 403 */
	{ "ValidationError", KERR_REFUSE },                         /* [C] 400 */
	{ "ValidationException", KERR_REFUSE },                     /* [C] 400 */
};

/* The class of an error name (without a "namespace#" prefix); -1 when not in the table. */
static int kinesis_error_class(const char *type)
{
	for (size_t i = 0; i < sizeof(kinesis_errors) / sizeof(kinesis_errors[0]); i++)
		if (!strcmp(type, kinesis_errors[i].type))
			return kinesis_errors[i].what;
	return -1;
}

/* What to do with a whole-request failure: HTTP status and error type. */
static int kinesis_classify(int status, const char *type)
{
	int c = kinesis_error_class(type);
	if (status >= 500 || status == 429 || status == 408)
		return c == KERR_THROTTLE ? KERR_THROTTLE : KERR_RETRY;
	return c < 0 ? KERR_REFUSE : c;
}

/* 1 the first time an error kind is seen: a broken permission must not flood the logs. */
static int first_time(struct telkin *t, const char *kind)
{
	size_t cap = sizeof(t->logged_errors[0]), i;
	for (i = 0; i < 8 && t->logged_errors[i][0]; i++)
		if (!strncmp(t->logged_errors[i], kind, cap - 1))
			return 0;
	if (i == 8)
		return 0; /* eight kinds already said: enough */
	snprintf(t->logged_errors[i], cap, "%s", kind);
	return 1;
}

/* Events in the request (its Kinesis records may pack several). */
static size_t inflight_events(const struct telkin *t)
{
	return t->inflight_count ? t->inflight_end[t->inflight_count - 1] : 0;
}

/*
 * A telkin.dropped record Kinesis refused in its turn: it is owed again, and so is everything it
 * named (its counts and seqRanges, read back from its data): the next report names both.
 */
static void drop_note_report(struct telkin *t, struct drop_account *a, struct queue_entry *e)
{
	static const char *const classes[3] = { "platform", "function", "extension" };
	const char *d = entry_data(e);
	struct json_token *tk = t->event_toks;
	int n = json_parse(d, e->data_len, tk, EVENT_MAX_TOKENS, JSON_MAX_DEPTH, 4, NULL);
	int rec = n > 0 ? json_object_get(d, tk, 0, "record") : -1, i, arr = -1;
	int64_t v, lo, hi;

	if (rec >= 0 && tk[rec].type == JSON_OBJECT) {
		for (int c = 0; c < 3; c++) {
			i = json_object_get(d, tk, rec, classes[c]);
			if (i >= 0 && json_int64(d, &tk[i], &v) == 0 && v > 0)
				a->records[c] += (uint64_t)v;
		}
		i = json_object_get(d, tk, rec, "droppedBytes");
		if (i >= 0 && json_int64(d, &tk[i], &v) == 0 && v > 0)
			a->bytes[0] += (uint64_t)v;
		arr = json_object_get(d, tk, rec, "seqRanges");
	}
	if (arr >= 0 && tk[arr].type == JSON_ARRAY) {
		uint32_t k;
		for (k = 0, i = arr + 1; k < tk[arr].size && i < n; k++, i = (int)tk[i].next)
			if (tk[i].type == JSON_ARRAY && tk[i].size == 2 &&
			    !json_int64(d, &tk[i + 1], &lo) && !json_int64(d, &tk[tk[i + 1].next], &hi))
				drop_range(a, (uint64_t)lo, (uint64_t)hi);
	}
	drop_note(a, CLASS_PLATFORM, e->data_len, e->seq); /* the report itself, after them */
}

/* An event Kinesis refused for good leaves the queue, counted, owed a telkin.dropped report. */
static void inflight_refuse_entry(struct telkin *t, struct queue_entry *e)
{
	e->state = ENTRY_DONE;
	t->stats.events_rejected++;
	if (e->report)
		drop_note_report(t, &t->unreported[DROP_REJECTED], e);
	else
		drop_note(&t->unreported[DROP_REJECTED], e->kind, e->data_len, e->seq);
}

/* Kinesis refused the request for good: its events leave the queue, counted. */
static void inflight_refused(struct telkin *t)
{
	for (size_t i = 0; i < inflight_events(t); i++)
		inflight_refuse_entry(t, queue_at(&t->q, t->inflight_entries[i]));
	t->inflight_count = 0;
	queue_pop_done(&t->q);
	report_drops(t);
}

/* Every event of the request stays queued for another attempt. */
static void inflight_retry(struct telkin *t, int64_t now)
{
	t->stats.events_retried += inflight_events(t);
	t->inflight_count = 0;
	kinesis_backoff(t, now);
}

/* Kinesis record k of the request refused for good: its events leave the queue, counted. */
static void inflight_refuse_record(struct telkin *t, size_t k)
{
	for (size_t j = inflight_first(t, k); j < t->inflight_end[k]; j++)
		inflight_refuse_entry(t, queue_at(&t->q, t->inflight_entries[j]));
}

/* Kinesis record k of the request was taken: its events are shipped. Returns its bytes. */
static size_t inflight_took_record(struct telkin *t, size_t k)
{
	size_t first = inflight_first(t, k), bytes = queue_at(&t->q, t->inflight_entries[first])->pk_len;
	t->stats.kinesis_records++;
	for (size_t j = first; j < t->inflight_end[k]; j++) {
		struct queue_entry *e = queue_at(&t->q, t->inflight_entries[j]);
		t->stats.events_shipped++;
		t->stats.bytes_shipped += e->data_len;
		bytes += e->data_len + (j > first && !t->cfg.record_newline); /* ndjson: a joining \n */
		e->state = ENTRY_DONE;
	}
	return bytes;
}

/*
 * A 200 PutRecords answer: mark what Kinesis took, keep what failed for a retry at its place in
 * the queue (oldest first), drop what failed for good. The pacer learns from the throttled
 * records: a shard whose records nearly all failed from the first throttled one on has an
 * empty bucket (pace_dry). A response that moved nothing, without that sign, backs off like a
 * failed request.
 */
static int kinesis_on_success(struct telkin *t, int64_t now)
{
	struct json_token *tk = t->resp_toks;
	const char *js = t->kin.body;
	struct pace_shard shard[PACE_SLOTS];
	size_t k = 0, took = 0, took_bytes = 0, refused = 0;
	int n, recs, failed = 0, dry = 0, i;

	memset(shard, 0, sizeof(shard));
	n = json_parse(js, t->kin.body_len, tk, KINESIS_RESPONSE_TOKENS, JSON_MAX_DEPTH, 3, NULL);
	if (n < 0 || tk[0].type != JSON_OBJECT)
		return -1;
	recs = json_object_get(js, tk, 0, "Records");
	if (recs < 0 || tk[recs].type != JSON_ARRAY || tk[recs].size != t->inflight_count)
		return -1;
	for (i = recs + 1; k < t->inflight_count; i = (int)tk[i].next, k++) {
		int code = tk[i].type == JSON_OBJECT ? json_object_get(js, tk, i, "ErrorCode") : -1;
		unsigned slot;
		if (code >= 0 && tk[code].type == JSON_STRING) {
			char type[64] = "", msg[160] = "";
			int m = json_object_get(js, tk, i, "ErrorMessage"), cls;
			json_string_copy(js, &tk[code], type, sizeof(type));
			if (m >= 0)
				json_string_copy(js, &tk[m], msg, sizeof(msg));
			cls = kinesis_error_class(type);
			slot = shard_slot(msg, strlen(msg));
			shard[slot].seen++;
			if (cls == KERR_REFUSE || cls == KERR_CREDS) {
				if (first_time(t, type))
					log_msg(LOG_ERROR, "PutRecords refused a record: %s: %s; such records "
					        "are dropped and counted", type, msg);
				inflight_refuse_record(t, k);
				refused++;
				continue;
			}
			if (!strcmp(type, "ProvisionedThroughputExceededException")) {
				shard[slot].failed++;
				t->stats.throttled_records++;
			}
			log_msg(LOG_DEBUG, "record failed: %s: %s", type, msg);
			failed++;
			t->stats.events_retried += t->inflight_end[k] - inflight_first(t, k);
			continue; /* its events stay pending */
		}
		code = tk[i].type == JSON_OBJECT ? json_object_get(js, tk, i, "ShardId") : -1;
		slot = code >= 0 ? shard_slot(js + tk[code].start, tk[code].end - tk[code].start) : 0;
		shard[slot].seen++;
		shard[slot].passed += shard[slot].failed > 0;
		took++;
		took_bytes += inflight_took_record(t, k);
	}
	for (unsigned s = 0; s < PACE_SLOTS; s++)
		dry |= pace_dry(&shard[s]);
	t->inflight_count = 0;
	queue_pop_done(&t->q);
	report_drops(t);
	pace_learn(&t->pace, now, took, took_bytes, dry);
	if (took || refused)
		t->attempt = 0;
	else if (failed && !dry)
		kinesis_backoff(t, now);
	return 0;
}

/* Act on the end of a PutRecords exchange (DONE or FAILED). */
static void kinesis_on_response(struct telkin *t, int64_t now)
{
	struct http_client *hc = &t->kin;

	if (hc->state == HC_FAILED) {
		/* A kept-alive connection the peer had closed: resend once on a new one, at once. */
		if (hc->reused && hc->len == 0 && !t->resent) {
			t->resent = 1;
			t->stats.reconnects++;
			hc_start(hc, t->req_head, t->req_head_len, t->req_body, t->req_body_len,
			         now + KINESIS_REQUEST_TIMEOUT_MS);
			return;
		}
		if (hc->tls_failed && first_time(t, hc->error))
			log_msg(LOG_ERROR, "Kinesis endpoint %s: %s; nothing was sent, retrying",
			        t->cfg.kinesis.host, hc->error);
		else
			log_msg(LOG_DEBUG, "PutRecords failed: %s; retrying", hc->error);
		t->stats.putrecords_errors++;
		t->request_out = 0;
		hc->state = HC_IDLE;
		inflight_retry(t, now);
		return;
	}
	t->request_out = 0;
	hc->state = HC_IDLE;
	{
		int64_t ms = now - t->request_sent_at;
		unsigned b = 0;
		while (b < 15 && ms >= ((int64_t)1 << b))
			b++;
		t->latency_hist[b]++;
		t->kin_used_at = now;
		t->kin_used_wall = wall_ms();
		t->rtt_ms = t->rtt_ms ? (t->rtt_ms + ms + 1) / 2 : ms;
	}
	if (hc->head.status == 200) {
		if (kinesis_on_success(t, now) == 0)
			return;
		log_msg(LOG_WARN, "PutRecords answered 200 with an unexpected body; retrying");
		t->stats.putrecords_errors++;
	} else {
		char type[96] = "", msg[256] = "";
		struct json_token *tk = t->resp_toks;
		int cls, n = json_parse(hc->body, hc->body_len, tk, KINESIS_RESPONSE_TOKENS,
		                   JSON_MAX_DEPTH, 1, NULL);
		if (n > 0 && tk[0].type == JSON_OBJECT) {
			int ty = json_object_get(hc->body, tk, 0, "__type");
			int m = json_object_get(hc->body, tk, 0, "message");
			if (m < 0)
				m = json_object_get(hc->body, tk, 0, "Message");
			if (ty >= 0)
				json_string_copy(hc->body, &tk[ty], type, sizeof(type));
			if (m >= 0)
				json_string_copy(hc->body, &tk[m], msg, sizeof(msg));
		}
		/* "__type" may be namespaced: "com.amazon.coral.service#ThrottlingException". */
		if (strchr(type, '#'))
			memmove(type, strchr(type, '#') + 1, strlen(strchr(type, '#')));
		if (!type[0])
			snprintf(type, sizeof(type), "HTTP%d", hc->head.status);
		t->stats.putrecords_errors++;
		cls = kinesis_classify(hc->head.status, type);
		if (t->cfg.container_creds && cls == KERR_CREDS) {
			t->creds_stale = 1;     /* fetch new ones, then send again */
			t->creds_retry_at = 0;
		} else if (cls == KERR_REFUSE || cls == KERR_CREDS) {
			if (first_time(t, type))
				log_msg(LOG_ERROR, "PutRecords refused: %s: %s; records in such requests "
				        "are dropped and counted", type, msg);
			inflight_refused(t);
			return;
		}
		log_msg(LOG_DEBUG, "PutRecords %d %s: %s; retrying", hc->head.status, type, msg);
	}
	inflight_retry(t, now);
}

/* ------------------------------------------------------------------------------------------ */
/* Extensions API and Telemetry API (docs.aws.amazon.com/lambda/latest/dg/                    */
/* runtimes-extensions-api.html and telemetry-api.html).                                       */

#define API_REGISTER     "/2020-01-01/extension/register"
#define API_NEXT         "/2020-01-01/extension/event/next"
#define API_INIT_ERROR   "/2020-01-01/extension/init/error"
#define API_EXIT_ERROR   "/2020-01-01/extension/exit/error"
#define API_TELEMETRY    "/2022-07-01/telemetry"
/* Managed Instances accept only 2025-01-29 (2022-12-13 gets 400); elsewhere 2022-12-13. */
#define TELEMETRY_SCHEMA "2022-12-13"
#define TELEMETRY_SCHEMA_MANAGED "2025-01-29"

static const struct {
	const char *name;         /* AWS_LAMBDA_INITIALIZATION_TYPE */
	enum exec_mode mode;
} exec_modes[] = {
	{ "on-demand", MODE_ON_DEMAND },
	{ "provisioned-concurrency", MODE_PROVISIONED },
	{ "snap-start", MODE_SNAPSTART },
	{ "lambda-managed-instances", MODE_MANAGED },
};

static const char *mode_name(enum exec_mode m)
{
	for (size_t i = 0; i < sizeof(exec_modes) / sizeof(exec_modes[0]); i++)
		if (exec_modes[i].mode == m)
			return exec_modes[i].name;
	return "on-demand";
}

/* AWS_LAMBDA_INITIALIZATION_TYPE; an unknown value runs as on-demand, said once. */
static enum exec_mode mode_detect(void)
{
	const char *v = getenv("AWS_LAMBDA_INITIALIZATION_TYPE");

	if (!v || !*v)
		return MODE_ON_DEMAND;
	for (size_t i = 0; i < sizeof(exec_modes) / sizeof(exec_modes[0]); i++)
		if (!strcmp(v, exec_modes[i].name))
			return exec_modes[i].mode;
	log_msg(LOG_WARN, "AWS_LAMBDA_INITIALIZATION_TYPE=%.64s is not one telkin knows: running as "
	        "on-demand", v);
	return MODE_ON_DEMAND;
}

static size_t api_build_head(struct telkin *t, char *out, size_t cap, const char *method,
                             const char *path, const char *extra, size_t body_len)
{
	int n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s", method, path,
	                 t->runtime_api, t->extension_id[0] ? "Lambda-Extension-Identifier: " : "",
	                 t->extension_id, t->extension_id[0] ? "\r\n" : "", extra ? extra : "");
	if (n > 0 && (size_t)n < cap && strcmp(method, "GET") != 0)
		n += snprintf(out + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
	if (n > 0 && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, "\r\n");
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* A string member of an API error body ({"errorMessage":..,"errorType":..}); 0, or -1. */
static int api_error_member(const struct http_client *hc, const char *name, char *out, size_t cap)
{
	struct json_token tk[32];
	int n, m;

	n = json_parse(hc->body, hc->body_len, tk, 32, JSON_MAX_DEPTH, 1, NULL);
	if (n <= 0 || tk[0].type != JSON_OBJECT || (m = json_object_get(hc->body, tk, 0, name)) < 0)
		return -1;
	return json_string_copy(hc->body, &tk[m], out, cap) < 0 ? -1 : 0;
}

/* The errorMessage of an API error body, for our own messages. */
static void api_error_message(struct http_client *hc, char *out, size_t cap)
{
	size_t k = (size_t)snprintf(out, cap, "HTTP %d: ", hc->head.status);

	if (k >= cap || api_error_member(hc, "errorMessage", out + k, cap - k) < 0)
		snprintf(out, cap, "HTTP %d", hc->head.status);
}

/*
 * POST /register. The name must be the executable's file name. INVOKE and SHUTDOWN, except on
 * Managed Instances, which allow SHUTDOWN only: a platform that refuses INVOKE with
 * Extension.InvalidEventType is taken for Managed Instances, whatever the environment said.
 */
static int api_register(struct telkin *t, char *err, size_t errcap)
{
	static const char both[] = "{\"events\":[\"INVOKE\",\"SHUTDOWN\"]}";
	static const char shutdown_only[] = "{\"events\":[\"SHUTDOWN\"]}";
	const char *body = t->mode == MODE_MANAGED ? shutdown_only : both;
	char extra[160], type[64];
	size_t len, id_len;
	const char *id;
	struct json_token tk[32];
	int n, i;

	snprintf(extra, sizeof(extra), "Lambda-Extension-Name: %s\r\n"
	         "Content-Type: application/json\r\n", t->extension_name);
	len = api_build_head(t, t->api_head, sizeof(t->api_head), "POST", API_REGISTER, extra,
	                     strlen(body));
	if (hc_run(&t->api, t->api_head, len, body, strlen(body), API_REQUEST_TIMEOUT_MS)) {
		snprintf(err, errcap, "register: %s", t->api.error);
		return -1;
	}
	if (t->api.head.status == 403 && t->mode != MODE_MANAGED &&
	    api_error_member(&t->api, "errorType", type, sizeof(type)) == 0 &&
	    !strcmp(type, "Extension.InvalidEventType")) {
		log_msg(LOG_WARN, "register: INVOKE refused (%s): registering for SHUTDOWN only, as on "
		        "Lambda Managed Instances", type);
		t->api.state = HC_IDLE;
		t->mode = MODE_MANAGED;
		return api_register(t, err, errcap);
	}
	if (t->api.head.status != 200) {
		char msg[200];
		api_error_message(&t->api, msg, sizeof(msg));
		snprintf(err, errcap, "register: %s", msg);
		return -1;
	}
	id = http_header(t->api.buf, t->api.head.head_len, "Lambda-Extension-Identifier", &id_len);
	if (!id || id_len == 0 || id_len >= sizeof(t->extension_id)) {
		snprintf(err, errcap, "register: no Lambda-Extension-Identifier in the response");
		return -1;
	}
	memcpy(t->extension_id, id, id_len);
	t->extension_id[id_len] = 0;
	n = json_parse(t->api.body, t->api.body_len, tk, 32, JSON_MAX_DEPTH, 1, NULL);
	if (n > 0 && tk[0].type == JSON_OBJECT) {
		if ((i = json_object_get(t->api.body, tk, 0, "functionName")) >= 0)
			json_string_copy(t->api.body, &tk[i], t->registered_function,
			                 sizeof(t->registered_function));
		if ((i = json_object_get(t->api.body, tk, 0, "functionVersion")) >= 0)
			json_string_copy(t->api.body, &tk[i], t->registered_version,
			                 sizeof(t->registered_version));
	}
	t->api.state = HC_IDLE;
	return 0;
}

/* PUT /telemetry: platform events always (telkin needs runtimeDone), plus what is forwarded. */
static int api_subscribe(struct telkin *t, char *err, size_t errcap)
{
	char body[512];
	unsigned types = t->cfg.types | CLASS_PLATFORM;
	size_t len;
	int n;

	n = snprintf(body, sizeof(body),
	             "{\"schemaVersion\":\"%s\",\"destination\":{\"protocol\":"
	             "\"HTTP\",\"URI\":\"http://" LISTEN_HOST ":%u\"},\"types\":[%s%s%s%s%s],"
	             "\"buffering\":{\"maxItems\":%u,\"maxBytes\":%u,\"timeoutMs\":%u}}",
	             t->mode == MODE_MANAGED ? TELEMETRY_SCHEMA_MANAGED : TELEMETRY_SCHEMA,
	             t->cfg.listen_port, "\"platform\"",
	             types & CLASS_FUNCTION ? "," : "", types & CLASS_FUNCTION ? "\"function\"" : "",
	             types & CLASS_EXTENSION ? "," : "",
	             types & CLASS_EXTENSION ? "\"extension\"" : "",
	             t->cfg.buffer_items, t->cfg.buffer_bytes, t->cfg.buffer_timeout_ms);
	len = api_build_head(t, t->api_head, sizeof(t->api_head), "PUT", API_TELEMETRY,
	                     "Content-Type: application/json\r\n", (size_t)n);
	if (hc_run(&t->api, t->api_head, len, body, (size_t)n, API_REQUEST_TIMEOUT_MS)) {
		snprintf(err, errcap, "telemetry subscription: %s", t->api.error);
		return -1;
	}
	t->api.state = HC_IDLE;
	if (t->api.head.status != 200) {
		char msg[200];
		api_error_message(&t->api, msg, sizeof(msg));
		snprintf(err, errcap, "telemetry subscription refused: %s", msg);
		return -1;
	}
	return 0;
}

/*
 * POST /init/error or /exit/error. Lambda then reports the failure (init) or resets the
 * environment (exit). Also logged, since the caller exits right after.
 */
static void api_report_error(struct telkin *t, const char *path, const char *type,
                             const char *message)
{
	char head[1024], body[1024], extra[128], rbuf[2048];
	struct http_client hc;
	size_t len;
	int n;

	log_msg(LOG_ERROR, "%s: %s", type, message);
	if (!t->extension_id[0])
		return; /* not registered: Lambda reports the failed extension itself */
	n = snprintf(body, sizeof(body), "{\"errorMessage\":\"");
	n += (int)escape_bounded(body + n, message, 800);
	n += snprintf(body + n, sizeof(body) - (size_t)n, "\",\"errorType\":\"%s\","
	              "\"stackTrace\":[]}", type);
	snprintf(extra, sizeof(extra), "Lambda-Extension-Function-Error-Type: %s\r\n"
	         "Content-Type: application/json\r\n", type);
	len = api_build_head(t, head, sizeof(head), "POST", path, extra, (size_t)n);
	hc_init(&hc, "lambda", t->api.host, t->api.port, rbuf, sizeof(rbuf));
	if (hc_run(&hc, head, len, body, (size_t)n, API_REQUEST_TIMEOUT_MS) < 0)
		log_msg(LOG_ERROR, "reporting the error to Lambda failed: %s", hc.error);
	hc_close(&hc);
}

/* GET /event/next: no client timeout, it blocks while the sandbox is frozen. */
static void api_next(struct telkin *t)
{
	size_t len = api_build_head(t, t->api_head, sizeof(t->api_head), "GET", API_NEXT, NULL, 0);
	t->phase = PHASE_WAIT_EVENT;   /* request_id stays: with periodic the invocation runs on */
	hc_start(&t->api, t->api_head, len, NULL, 0, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Lifecycle.                                                                                  */

static const char *sandbox_state(void);
static unsigned long long sandbox_denied(void);

static void print_summary(const struct telkin *t)
{
	const struct stats *s = &t->stats;
	char cpu[16] = "any";

	if (t->cpu_pinned >= 0)
		snprintf(cpu, sizeof(cpu), "%d", t->cpu_pinned);
	log_msg(LOG_INFO, "events received %llu, queued %llu, filtered %llu, truncated %llu; "
	        "shipped %llu (%llu bytes) in %llu records and %llu PutRecords calls (%llu failed), "
	        "retried %llu (throttled %llu), refused %llu; dropped platform %llu function %llu extension %llu; "
	        "batches rejected %llu; queue high-water %zu bytes; connections %llu "
	        "(TLS handshakes %llu); lost at exit %llu (unanswered %llu); platform logsDropped %llu "
	        "(%llu records); listener evictions %llu; longest loop turn %llu ms; sandbox %s, "
	        "system calls denied %llu; cpu %s; last seq %llu of sandbox %s",
	        (unsigned long long)s->events_received, (unsigned long long)s->events_queued,
	        (unsigned long long)s->events_filtered, (unsigned long long)s->events_truncated,
	        (unsigned long long)s->events_shipped, (unsigned long long)s->bytes_shipped,
	        (unsigned long long)s->kinesis_records,
	        (unsigned long long)s->putrecords_calls, (unsigned long long)s->putrecords_errors,
	        (unsigned long long)s->events_retried, (unsigned long long)s->throttled_records,
	        (unsigned long long)s->events_rejected,
	        (unsigned long long)s->dropped_records[0], (unsigned long long)s->dropped_records[1],
	        (unsigned long long)s->dropped_records[2], (unsigned long long)s->batches_rejected,
	        t->q.high_water, (unsigned long long)t->kin.connects,
	        (unsigned long long)t->kin.handshakes, (unsigned long long)s->lost_at_exit,
	        (unsigned long long)s->lost_unanswered,
	        (unsigned long long)s->platform_logs_dropped,
	        (unsigned long long)s->platform_dropped_records,
	        (unsigned long long)s->listener_evictions, (unsigned long long)s->longest_turn_ms,
	        sandbox_state(), sandbox_denied(), cpu, (unsigned long long)t->seq, t->sandbox_id);
}

/* Telemetry silence that ends SHUTDOWN early: two buffering periods and some slack. */
static int64_t shutdown_quiet_ms(const struct telkin *t)
{
	int64_t quiet = 2 * (int64_t)t->cfg.buffer_timeout_ms + 50;
	return quiet < SHUTDOWN_QUIET_MIN_MS ? SHUTDOWN_QUIET_MIN_MS : quiet;
}

static int drained(const struct telkin *t)
{
	return t->q.count == 0 && !t->request_out;
}

/* The Extensions API answered /event/next. */
static void api_on_event(struct telkin *t)
{
	struct json_token *tk = t->event_toks;
	struct http_client *hc = &t->api;
	char type[32] = "", reason[32] = "";
	int64_t deadline = 0;
	int n, i;

	if (hc->state == HC_FAILED || hc->head.status != 200) {
		char msg[200];
		if (hc->state == HC_FAILED)
			snprintf(msg, sizeof(msg), "event/next: %s", hc->error);
		else
			api_error_message(hc, msg, sizeof(msg));
		if (t->mode == MODE_MANAGED) {
			/* An extension that exits takes the whole environment down: keep going. */
			t->stats.api_failures++;
			if (first_time(t, "event/next"))
				log_msg(LOG_ERROR, "%s; retrying every %d ms", msg, API_RETRY_MS);
			hc_close(hc);
			hc->state = HC_IDLE;
			t->api_retry_at = now_ms() + API_RETRY_MS;
			return;
		}
		api_report_error(t, API_EXIT_ERROR, "Extension.EventNextFailed", msg);
		print_summary(t);
		exit(1);
	}
	hc->state = HC_IDLE;
	n = json_parse(hc->body, hc->body_len, tk, EVENT_MAX_TOKENS, JSON_MAX_DEPTH, 1, NULL);
	if (n > 0 && tk[0].type == JSON_OBJECT) {
		if ((i = json_object_get(hc->body, tk, 0, "eventType")) >= 0)
			json_string_copy(hc->body, &tk[i], type, sizeof(type));
		if ((i = json_object_get(hc->body, tk, 0, "deadlineMs")) >= 0 &&
		    json_int64(hc->body, &tk[i], &deadline) < 0)
			deadline = 0;
		if ((i = json_object_get(hc->body, tk, 0, "requestId")) >= 0 &&
		    json_string_copy(hc->body, &tk[i], t->request_id, sizeof(t->request_id)) < 0)
			t->request_id[0] = 0;
		if ((i = json_object_get(hc->body, tk, 0, "shutdownReason")) >= 0)
			json_string_copy(hc->body, &tk[i], reason, sizeof(reason));
	}
	if (!deadline) /* Lambda always sends one; be safe if it does not */
		deadline = wall_ms() + 2000;
	if (t->snapshot_pending)
		restore_from_snapshot(t, "first event after the snapshot");
	/* We waited in /event/next: frozen, perhaps for hours. */
	t->kin_frozen = t->mode != MODE_MANAGED;
	if (!strcasecmp(type, "INVOKE")) {
		flush_auto_update(t, now_ms());
		t->phase = PHASE_INVOKE;
		t->invoke_deadline = deadline_from_wall(deadline) - DEADLINE_MARGIN_MS;
		log_msg(LOG_DEBUG, "INVOKE %s", t->request_id);
	} else if (!strcasecmp(type, "SHUTDOWN")) {
		t->phase = PHASE_SHUTDOWN;
		t->shutdown_deadline = deadline_from_wall(deadline) - DEADLINE_MARGIN_MS;
		log_msg(LOG_DEBUG, "SHUTDOWN (%s)", reason);
	} else {
		log_msg(LOG_WARN, "unknown event type '%s' ignored", type);
		api_next(t);
	}
}

/* p-th percentile (0-100) of the latency histogram: the bucket's upper bound in ms. */
static unsigned latency_percentile(const uint32_t *hist, unsigned p)
{
	uint64_t total = 0, seen = 0;
	for (int b = 0; b < 16; b++)
		total += hist[b];
	if (!total)
		return 0;
	for (int b = 0; b < 16; b++) {
		seen += hist[b];
		if (seen * 100 >= total * p)
			return 1u << b;
	}
	return 1u << 15;
}

/*
 * One CloudWatch Embedded Metric Format line on stdout: CloudWatch Logs turns it into metrics
 * in namespace "telkin", with no API call and no permission. Counts are since the last line.
 */
static void metrics_emit(struct telkin *t, int64_t now)
{
	static const char *const names[] = {
		"EventsReceived", "EventsShipped", "EventsDropped", "EventsTruncated", "EventsRetried",
		"PutRecordsCalls", "PutRecordsErrors", "Reconnects", "TLSHandshakes", "EventsLost",
		"RecordsThrottled", "PlatformLogsDropped", "PlatformRecordsDropped",
	};
	const struct stats *s = &t->stats, *b = &t->metrics_base;
	uint64_t dropped = 0, values[sizeof(names) / sizeof(names[0])];
	char line[2048];
	size_t n = 0;

	for (int i = 0; i < 3; i++)
		dropped += (s->dropped_records[i] - b->dropped_records[i]);
	values[0] = s->events_received - b->events_received;
	values[1] = s->events_shipped - b->events_shipped;
	values[2] = dropped;
	values[3] = s->events_truncated - b->events_truncated;
	values[4] = s->events_retried - b->events_retried;
	values[5] = s->putrecords_calls - b->putrecords_calls;
	values[6] = s->putrecords_errors - b->putrecords_errors;
	values[7] = s->reconnects - b->reconnects;
	values[8] = t->kin.handshakes - t->metrics_handshakes;
	values[9] = s->lost_at_exit - b->lost_at_exit;
	values[10] = s->throttled_records - b->throttled_records;
	values[11] = s->platform_logs_dropped - b->platform_logs_dropped;
	values[12] = s->platform_dropped_records - b->platform_dropped_records;
#define OUT(...) (n += (size_t)snprintf(line + n, n < sizeof(line) ? sizeof(line) - n : 0, \
                                       __VA_ARGS__))
	OUT("{\"_aws\":{\"Timestamp\":%lld,\"CloudWatchMetrics\":[{\"Namespace\":\"telkin\","
	    "\"Dimensions\":[[\"FunctionName\"]],\"Metrics\":[", (long long)wall_ms());
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		OUT("{\"Name\":\"%s\",\"Unit\":\"Count\"},", names[i]);
	OUT("{\"Name\":\"PutRecordsLatencyP50\",\"Unit\":\"Milliseconds\"},"
	    "{\"Name\":\"PutRecordsLatencyP99\",\"Unit\":\"Milliseconds\"},"
	    "{\"Name\":\"QueueHighWaterBytes\",\"Unit\":\"Bytes\"}]}]},\"FunctionName\":\"");
	if (n < sizeof(line) && json_escaped_len(t->cfg.function_name, strlen(t->cfg.function_name))
	    < sizeof(line) - n - 600)
		n += json_escape(line + n, sizeof(line) - n, t->cfg.function_name,
		                 strlen(t->cfg.function_name));
	OUT("\"");
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		OUT(",\"%s\":%llu", names[i], (unsigned long long)values[i]);
	OUT(",\"PutRecordsLatencyP50\":%u,\"PutRecordsLatencyP99\":%u,\"QueueHighWaterBytes\":%zu}\n",
	    latency_percentile(t->latency_hist, 50), latency_percentile(t->latency_hist, 99),
	    t->q.window_high_water);
#undef OUT
	if (n < sizeof(line) && write(STDOUT_FILENO, line, n) < 0)
		log_msg(LOG_DEBUG, "metrics line not written");
	t->metrics_base = t->stats;
	t->metrics_handshakes = t->kin.handshakes;
	memset(t->latency_hist, 0, sizeof(t->latency_hist));
	t->q.window_high_water = queue_used(&t->q);
	t->metrics_at = now;
}

/* The last moment a request may start before SHUTDOWN's deadline and be answered in time. */
static int64_t shutdown_cut_at(const struct telkin *t)
{
	int64_t guard = 2 * t->rtt_ms + SHUTDOWN_REPORT_MS;
	return t->shutdown_deadline - (guard > SHUTDOWN_GUARD_MAX_MS ? SHUTDOWN_GUARD_MAX_MS : guard);
}

/*
 * SHUTDOWN, out of time: the events still queued cannot reach Kinesis before the deadline
 * (more than the shards take). They are counted lost, exactly, and one telkin.dropped record
 * that says so is the last request, after SHUTDOWN_REPORT_MS. Events that come later are
 * counted at exit.
 */
static void shutdown_give_up(struct telkin *t, int64_t now)
{
	struct drop_account lost;

	if (t->phase != PHASE_SHUTDOWN || t->shutdown_cut || t->request_out || !t->q.count ||
	    now < shutdown_cut_at(t))
		return;
	t->shutdown_cut = 1;
	memset(&lost, 0, sizeof(lost));
	for (size_t off = queue_first(&t->q); off != SIZE_MAX; off = queue_next(&t->q, off)) {
		struct queue_entry *e = queue_at(&t->q, off);
		if (e->state != ENTRY_PENDING || e->report)
			continue;
		e->state = ENTRY_DONE;
		drop_note(&lost, e->kind, e->data_len, e->seq);
		t->stats.lost_at_exit++;
	}
	queue_pop_done(&t->q);
	if (drop_count(&lost) && queue_drop_report(t, &lost, "shutdown deadline") == 0) {
		t->pace.next_at = now + SHUTDOWN_REPORT_MS;
		t->retry_at = 0;
	}
	report_drops(t); /* reports still owed go with it */
}

/*
 * When SHUTDOWN's time is up: its deadline, or with a request out, half the margin later (an
 * answer that comes says what arrived; without one its records are counted lost, unanswered).
 */
static int64_t shutdown_exit_at(const struct telkin *t)
{
	return t->shutdown_deadline + (t->request_out ? DEADLINE_MARGIN_MS / 2 : 0);
}

/* Shipped everything, or out of time: report and exit. */
static void finish(struct telkin *t)
{
	for (size_t off = queue_first(&t->q); off != SIZE_MAX; off = queue_next(&t->q, off))
		if (queue_at(&t->q, off)->state == ENTRY_PENDING && !queue_at(&t->q, off)->report)
			t->stats.lost_at_exit++;
	for (int r = 0; r < DROP_REASONS; r++)
		t->stats.lost_at_exit += drop_count(&t->unreported[r]);
	for (size_t i = 0; t->request_out && i < inflight_events(t); i++)
		t->stats.lost_unanswered += !queue_at(&t->q, t->inflight_entries[i])->report;
	if (t->stats.lost_at_exit)
		log_msg(LOG_ERROR, "%llu records could not be shipped before the shutdown deadline "
		        "(%llu of them in a request not answered in time)",
		        (unsigned long long)t->stats.lost_at_exit,
		        (unsigned long long)t->stats.lost_unanswered);
	if (t->cfg.metrics)
		metrics_emit(t, now_ms());
	print_summary(t);
	exit(0);
}

/* The invocation (or init) is over: ship until drained or the budget is spent, then next. */
static void lifecycle_flush(struct telkin *t, int64_t now)
{
	if (!drained(t) && now < t->flush_deadline)
		return;
	if (!drained(t) && flush_effective(t) != FLUSH_PERIODIC)
		log_msg(LOG_DEBUG, "flush budget spent with %zu records queued", t->q.count);
	if (t->cfg.metrics && now - t->metrics_at >= METRICS_INTERVAL_MS)
		metrics_emit(t, now);
	api_next(t);
}

/* Decide what the lifecycle needs now: end init or an invocation, or end the process. */
static void lifecycle_step(struct telkin *t, int64_t now)
{
	switch (t->phase) {
	case PHASE_INIT:
		if (!t->init_runtime_done && now < t->init_deadline)
			break;
		if (!t->init_runtime_done)
			log_msg(LOG_WARN, "no platform.initRuntimeDone within %d s: init telemetry not "
			        "shipped yet goes after the next thaw", INIT_TELEMETRY_WAIT_MS / 1000);
		/* Nobody waits on this init: ship all of it, so that no copy of a snapshot ships it
		 * again and no provisioned environment sits frozen on it. */
		t->phase = PHASE_FLUSH;
		t->flush_deadline = now + t->cfg.flush_timeout_ms;
		lifecycle_flush(t, now);
		break;
	case PHASE_INVOKE:
		if (flush_effective(t) == FLUSH_PERIODIC) {
			/* periodic never holds the freeze: /event/next at once, not after runtimeDone
			 * (Lambda bills the wait for it); shipping goes on until the freeze comes, and
			 * what waits then goes at the next thaw. */
			t->phase = PHASE_FLUSH;
			t->flush_deadline = now;
		} else if (t->request_id[0] && !strcmp(t->runtime_done_id, t->request_id)) {
			t->phase = PHASE_FLUSH;
			t->flush_deadline = now + t->cfg.flush_timeout_ms;
			if (t->flush_deadline > t->invoke_deadline)
				t->flush_deadline = t->invoke_deadline;
		} else if (now >= t->invoke_deadline) {
			log_msg(LOG_WARN, "no platform.runtimeDone for %s before its deadline",
			        t->request_id);
			t->phase = PHASE_FLUSH;
			t->flush_deadline = now;
		}
		if (t->phase == PHASE_FLUSH)
			lifecycle_flush(t, now);
		break;
	case PHASE_FLUSH:
		lifecycle_flush(t, now);
		break;
	case PHASE_SHUTDOWN:
		if ((drained(t) && now - t->last_telemetry >= shutdown_quiet_ms(t)) ||
		    now >= shutdown_exit_at(t))
			finish(t);
		break;
	case PHASE_WAIT_EVENT:
		/* Managed Instances never freeze: metrics once a minute, /event/next after a failure. */
		if (t->mode == MODE_MANAGED && t->cfg.metrics &&
		    now - t->metrics_at >= METRICS_INTERVAL_MS)
			metrics_emit(t, now);
		if (t->api_retry_at && now >= t->api_retry_at) {
			t->api_retry_at = 0;
			api_next(t);
		}
		break;
	}
}

/* How long poll() may sleep: until the nearest thing that has a time. */
static int poll_timeout(const struct telkin *t, int64_t now)
{
	int64_t next = INT64_MAX;

#define SOONER(x) do { if ((x) < next) next = (x); } while (0)
	if (t->build.active) /* a PutRecords body half built: the next slice after the listener */
		SOONER(now);
	if (t->request_out && hc_next_deadline(&t->kin))
		SOONER(hc_next_deadline(&t->kin));
	else if (!t->q.count || t->shutdown_cut == 2)
		; /* nothing to ship, or no more time to */
	else if (ship_due(t, now))
		SOONER(now);
	else if (now < kinesis_ready_at(t))
		SOONER(kinesis_ready_at(t));
	else
		SOONER(oldest_due_at(t, now));
	if (t->phase == PHASE_INIT)
		SOONER(t->init_deadline);
	if (t->phase == PHASE_WAIT_EVENT && t->api_retry_at)
		SOONER(t->api_retry_at);
	if (t->phase == PHASE_WAIT_EVENT && t->mode == MODE_MANAGED && t->cfg.metrics)
		SOONER(t->metrics_at + METRICS_INTERVAL_MS);
	if (t->phase == PHASE_INVOKE)
		SOONER(t->invoke_deadline);
	if (t->phase == PHASE_FLUSH)
		SOONER(t->flush_deadline);
	if (t->phase == PHASE_SHUTDOWN) {
		SOONER(shutdown_exit_at(t));
		if (t->q.count && !t->shutdown_cut)
			SOONER(shutdown_cut_at(t));
		if (drained(t)) /* else the quiet period is not what ends the wait */
			SOONER(t->last_telemetry + shutdown_quiet_ms(t));
	}
	SOONER(listener_next_deadline(t, now));
#undef SOONER
	if (next == INT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return next - now > 60000 ? 60000 : (int)(next - now);
}

/* The loop: every connection is a state machine stepped by poll(). */
static void run(struct telkin *t)
{
	struct pollfd *pfd = t->pfd;
	int64_t turn_started = 0; /* how long the listener may wait for a turn: longest_turn_ms */

	for (;;) {
		int64_t now = now_ms();
		int n = 0, api_i = -1, kin_i = -1, lis_i;

		lifecycle_step(t, now);
		shutdown_give_up(t, now);
		kinesis_wait_fit(t, now);
		if (t->build.active || ship_due(t, now))
			kinesis_send(t, now);
		if (t->request_out && t->kin.state == HC_FAILED) {
			kinesis_on_response(t, now);
			continue;
		}

		if (t->api.fd >= 0 && hc_poll_events(&t->api)) {
			api_i = n;
			pfd[n++] = (struct pollfd){ .fd = t->api.fd, .events = hc_poll_events(&t->api) };
		}
		if (t->kin.fd >= 0 && hc_poll_events(&t->kin)) {
			kin_i = n;
			pfd[n++] = (struct pollfd){ .fd = t->kin.fd, .events = hc_poll_events(&t->kin) };
		}
		lis_i = n;
		pfd[n++] = (struct pollfd){ .fd = t->listen_fd, .events = POLLIN };
		for (size_t i = 0; i < t->conns_hi; i++)
			pfd[n++] = (struct pollfd){ .fd = t->conns[i].fd,
			                            .events = t->conns[i].waiting ? 0 : POLLIN };

		if (turn_started && (uint64_t)(now_ms() - turn_started) > t->stats.longest_turn_ms)
			t->stats.longest_turn_ms = (uint64_t)(now_ms() - turn_started);
		if (poll(pfd, (nfds_t)n, poll_timeout(t, now)) < 0 && errno != EINTR) {
			if (t->mode != MODE_MANAGED) {
				api_report_error(t, API_EXIT_ERROR, "Extension.PollFailed", strerror(errno));
				exit(1);
			}
			/* Managed Instances: never exit on our own; pause and go on. */
			if (first_time(t, "poll"))
				log_msg(LOG_ERROR, "poll: %s; going on", strerror(errno));
			nanosleep(&(struct timespec){ 0, API_RETRY_MS * 1000000L / 10 }, NULL);
			continue;
		}
		now = now_ms();
		turn_started = now;

		/* Telemetry first: a batch may carry the runtimeDone the lifecycle waits for. */
		if (pfd[lis_i].revents)
			listener_accept(t);
		for (size_t i = 0; i < t->conns_hi && lis_i + 1 + i < (size_t)n; i++) {
			struct listen_conn *c = &t->conns[i];
			if (!pfd[lis_i + 1 + i].revents || c->fd != pfd[lis_i + 1 + i].fd)
				continue;
			if (c->waiting) /* polled for nothing: the peer is gone */
				listener_close(t, c);
			else
				listener_read(t, c);
		}
		listener_resume(t);
		listener_expire(t, now);

		if (t->kin.state != HC_IDLE || kin_i >= 0) {
			hc_step(&t->kin, kin_i >= 0 ? pfd[kin_i].revents : 0, now);
			if (t->request_out && (t->kin.state == HC_DONE || t->kin.state == HC_FAILED))
				kinesis_on_response(t, now);
		}
		if (api_i >= 0 || t->api.state != HC_IDLE) {
			hc_step(&t->api, api_i >= 0 ? pfd[api_i].revents : 0, now);
			if (t->phase == PHASE_WAIT_EVENT && t->api.state == HC_FAILED &&
			    t->api.reused && t->api.len == 0) {
				api_next(t); /* the kept-alive connection was closed: once more, anew */
			} else if (t->phase == PHASE_WAIT_EVENT &&
			           (t->api.state == HC_DONE || t->api.state == HC_FAILED)) {
				api_on_event(t);
			}
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Least privilege. Once start-up is done (configuration read, trust anchors loaded, listener   */
/* bound, registered and subscribed; the first /event/next out), before the loop reads a byte, */
/* telkin gives up what its loop never needs: resource                                          */
/* limits, then PR_SET_NO_NEW_PRIVS and a seccomp filter allowing exactly the loop's system     */
/* calls. A parser bug can then not become a shell, a child process, a file written, a listening */
/* TCP port or a signal to another process. A refused call fails with EPERM, which every caller */
/* already handles: it never kills (on Managed Instances a dead extension takes the whole        */
/* environment down). What the filter cannot see (paths, addresses) is listed in SECURITY.md.    */

/*
 * Constants of the kernel's uapi headers (musl-gcc sees no kernel headers), with their source.
 * include/uapi/linux/bpf_common.h, classic BPF opcodes:
 */
#define SB_LD_ABS     0x20                 /* BPF_LD | BPF_W | BPF_ABS */
#define SB_JEQ        0x15                 /* BPF_JMP | BPF_JEQ | BPF_K */
#define SB_JGT        0x25                 /* BPF_JMP | BPF_JGT | BPF_K */
#define SB_JGE        0x35                 /* BPF_JMP | BPF_JGE | BPF_K */
#define SB_JSET       0x45                 /* BPF_JMP | BPF_JSET | BPF_K */
#define SB_AND        0x54                 /* BPF_ALU | BPF_AND | BPF_K */
#define SB_RET        0x06                 /* BPF_RET | BPF_K */
/* include/uapi/linux/seccomp.h */
#define SB_MODE_FILTER 2                   /* SECCOMP_MODE_FILTER */
#define SB_RET_ALLOW  0x7fff0000u          /* SECCOMP_RET_ALLOW */
#define SB_RET_TRAP   0x00030000u          /* SECCOMP_RET_TRAP; the low 16 bits reach si_errno */
#define SB_OFF_NR     0                    /* struct seccomp_data: int nr */
#define SB_OFF_ARCH   4                    /* __u32 arch */
#define SB_OFF_ARG(i) (16 + 8 * (i))       /* __u64 args[6]: the low 32 bits (little-endian) */
/* include/uapi/linux/audit.h: EM_X86_64 / EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE */
#define SB_AUDIT_ARCH_X86_64  0xc000003eu
#define SB_AUDIT_ARCH_AARCH64 0xc00000b7u
/* arch/x86/include/uapi/asm/unistd.h: __X32_SYSCALL_BIT, the x32 ABI's system calls */
#define SB_X32_SYSCALL_BIT    0x40000000u
/*
 * Argument values, the same on x86_64 and arm64. include/uapi/asm-generic/fcntl.h: an open that
 * could write or create (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND), O_PATH and __O_TMPFILE;
 * F_GETFD..F_SETFL. asm-generic/mman-common.h: PROT_EXEC. include/linux/socket.h: AF_INET,
 * AF_INET6. include/linux/net.h: SOCK_STREAM, SOCK_DGRAM, SOCK_TYPE_MASK; SOCK_NONBLOCK and
 * SOCK_CLOEXEC are O_NONBLOCK and O_CLOEXEC.
 */
#define SB_OPEN_REFUSED  (01u | 02u | 0100u | 01000u | 02000u | 010000000u | 020000000u)
#define SB_F_GETFD       1
#define SB_F_SETFL       4
#define SB_PROT_EXEC     0x4u
#define SB_AF_INET       2
#define SB_AF_INET6      10
#define SB_SOCK_STREAM   1
#define SB_SOCK_DGRAM    2
#define SB_SOCK_TYPE_MASK 0xfu
#define SB_SOCK_FLAGS    (04000u | 02000000u)
#define SB_FIONREAD      0x541Bu           /* include/uapi/asm-generic/ioctls.h (both arches) */

struct sb_insn {                           /* struct sock_filter */
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};

struct sb_prog {                           /* struct sock_fprog */
	unsigned short len;
	struct sb_insn *filter;
};

/* System calls allowed only with some arguments: the check, and which argument it reads. */
enum sb_check { SB_OPEN_READ_ONLY, SB_NO_EXEC, SB_SOCKET_INET, SB_FCNTL_FLAGS, SB_IOCTL_FIONREAD };
static const uint8_t SB_CHECK_LEN[] = { 2, 2, 8, 3, 2 };   /* instructions of each, below */

struct sb_checked {
	uint16_t nr;
	uint8_t check;                         /* enum sb_check */
	uint8_t arg;
};

#define SB_COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct sandbox_arch {
	const char *name;
	uint32_t audit_arch;
	uint32_t refused_bits;                 /* a number with any of these: refused (x32) */
	const uint16_t *allowed;               /* whatever the arguments */
	size_t n_allowed;
	const struct sb_checked *checked;
	size_t n_checked;
};

/*
 * What the loop calls, from musl's sources and `strace -f` of the test suites (SECURITY.md):
 * sockets and their I/O (Extensions API, listener, Kinesis, the credentials provider), the
 * credentials token file (read at each fetch), musl's resolver for the Kinesis host at each
 * connect (/etc/hosts, resolv.conf, a UDP socket it binds to port 0 and sends from, and a
 * connected UDP socket per address to sort them: RFC 6724), malloc inside getaddrinfo and
 * fopen (brk, mmap, munmap, madvise), clocks and sleeps, getrandom (SnapStart restore), exit, and
 * rt_sigreturn / restart_syscall, which the kernel's signal and restart paths use.
 * Each build holds its own architecture's table; the unit tests hold both.
 * x86_64: arch/x86/entry/syscalls/syscall_64.tbl.
 */
#if defined(__x86_64__) || defined(TELKIN_TEST)
static const uint16_t SB_X86_64_ALLOWED[] = {
	0 /* read */, 1 /* write */, 3 /* close */, 7 /* poll */, 8 /* lseek */, 11 /* munmap */,
	12 /* brk */, 15 /* rt_sigreturn */, 19 /* readv */, 20 /* writev */, 28 /* madvise */,
	35 /* nanosleep */, 42 /* connect */, 43 /* accept */, 44 /* sendto */, 45 /* recvfrom */,
	48 /* shutdown */, 49 /* bind */, 51 /* getsockname */, 54 /* setsockopt */,
	55 /* getsockopt */, 60 /* exit */, 219 /* restart_syscall */, 228 /* clock_gettime */,
	230 /* clock_nanosleep */, 231 /* exit_group */, 288 /* accept4 */, 318 /* getrandom */,
};
static const struct sb_checked SB_X86_64_CHECKED[] = {
	{ 2 /* open */, SB_OPEN_READ_ONLY, 1 }, { 257 /* openat */, SB_OPEN_READ_ONLY, 2 },
	{ 9 /* mmap */, SB_NO_EXEC, 2 }, { 10 /* mprotect */, SB_NO_EXEC, 2 },
	{ 41 /* socket */, SB_SOCKET_INET, 0 }, { 72 /* fcntl */, SB_FCNTL_FLAGS, 1 },
	{ 16 /* ioctl */, SB_IOCTL_FIONREAD, 1 },
};
static const struct sandbox_arch SANDBOX_X86_64 = {
	"x86_64", SB_AUDIT_ARCH_X86_64, SB_X32_SYSCALL_BIT,
	SB_X86_64_ALLOWED, SB_COUNT(SB_X86_64_ALLOWED), SB_X86_64_CHECKED, SB_COUNT(SB_X86_64_CHECKED),
};
#endif
/* arm64: include/uapi/asm-generic/unistd.h (no open, poll or fork: openat, ppoll, clone). */
#if defined(__aarch64__) || defined(TELKIN_TEST)
static const uint16_t SB_AARCH64_ALLOWED[] = {
	57 /* close */, 62 /* lseek */, 63 /* read */, 64 /* write */, 65 /* readv */,
	66 /* writev */, 73 /* ppoll */, 93 /* exit */, 94 /* exit_group */, 101 /* nanosleep */,
	113 /* clock_gettime */, 115 /* clock_nanosleep */, 128 /* restart_syscall */,
	139 /* rt_sigreturn */, 200 /* bind */, 202 /* accept */, 203 /* connect */,
	204 /* getsockname */, 206 /* sendto */, 207 /* recvfrom */, 208 /* setsockopt */,
	209 /* getsockopt */, 210 /* shutdown */, 214 /* brk */, 215 /* munmap */, 233 /* madvise */,
	242 /* accept4 */, 278 /* getrandom */,
};
static const struct sb_checked SB_AARCH64_CHECKED[] = {
	{ 56 /* openat */, SB_OPEN_READ_ONLY, 2 }, { 222 /* mmap */, SB_NO_EXEC, 2 },
	{ 226 /* mprotect */, SB_NO_EXEC, 2 }, { 198 /* socket */, SB_SOCKET_INET, 0 },
	{ 25 /* fcntl */, SB_FCNTL_FLAGS, 1 }, { 29 /* ioctl */, SB_IOCTL_FIONREAD, 1 },
};
static const struct sandbox_arch SANDBOX_AARCH64 = {
	"arm64", SB_AUDIT_ARCH_AARCH64, 0,
	SB_AARCH64_ALLOWED, SB_COUNT(SB_AARCH64_ALLOWED), SB_AARCH64_CHECKED,
	SB_COUNT(SB_AARCH64_CHECKED),
};
#endif

#if defined(__x86_64__)
#define SANDBOX_NATIVE (&SANDBOX_X86_64)
#elif defined(__aarch64__)
#define SANDBOX_NATIVE (&SANDBOX_AARCH64)
#endif

/* Instructions in a filter: both architectures' fit with room (jump offsets are 8-bit). */
#define SB_FILTER_MAX 128

/*
 * The filter for an architecture into f[cap]: its length, or 0 when it does not fit. Another
 * architecture's calls (i386's int 0x80 on x86_64) and x32's are refused, not allowed; the
 * syscall number is then compared with each allowed one; a checked one runs its argument check.
 * Every jump goes forward to the next test, to ALLOW (the last but one) or to DENY (the last).
 */
static size_t sandbox_filter(const struct sandbox_arch *a, struct sb_insn *f, size_t cap)
{
	size_t total = 3 + (a->refused_bits != 0) + a->n_allowed + 3, n = 0, allow, deny, i;

	for (i = 0; i < a->n_checked; i++)
		total += 1 + SB_CHECK_LEN[a->checked[i].check];
	if (total > cap || total > SB_FILTER_MAX)
		return 0;
	allow = total - 2;
	deny = total - 1;
#define EMIT(c, t, f_, k_) (f[n] = (struct sb_insn){ (c), (uint8_t)(t), (uint8_t)(f_), (k_) }, n++)
#define TO(x) ((x) - n - 1)
	EMIT(SB_LD_ABS, 0, 0, SB_OFF_ARCH);
	EMIT(SB_JEQ, 0, TO(deny), a->audit_arch);
	EMIT(SB_LD_ABS, 0, 0, SB_OFF_NR);
	if (a->refused_bits)
		EMIT(SB_JSET, TO(deny), 0, a->refused_bits);
	for (i = 0; i < a->n_allowed; i++)
		EMIT(SB_JEQ, TO(allow), 0, a->allowed[i]);
	for (i = 0; i < a->n_checked; i++) {
		const struct sb_checked *c = &a->checked[i];
		EMIT(SB_JEQ, 0, SB_CHECK_LEN[c->check], c->nr);   /* not this one: skip its check */
		EMIT(SB_LD_ABS, 0, 0, SB_OFF_ARG(c->arg));
		switch (c->check) {
		case SB_OPEN_READ_ONLY:
			EMIT(SB_JSET, TO(deny), TO(allow), SB_OPEN_REFUSED);
			break;
		case SB_NO_EXEC:
			EMIT(SB_JSET, TO(deny), TO(allow), SB_PROT_EXEC);
			break;
		case SB_IOCTL_FIONREAD:                /* the listener: is a whole body waiting? */
			EMIT(SB_JEQ, TO(allow), TO(deny), SB_FIONREAD);
			break;
		case SB_FCNTL_FLAGS:                   /* F_GETFD, F_SETFD, F_GETFL, F_SETFL */
			EMIT(SB_JGE, 0, TO(deny), SB_F_GETFD);
			EMIT(SB_JGT, TO(deny), TO(allow), SB_F_SETFL);
			break;
		default:                               /* SB_SOCKET_INET: TCP or UDP over IP */
			EMIT(SB_JEQ, 1, 0, SB_AF_INET);
			EMIT(SB_JEQ, 0, TO(deny), SB_AF_INET6);
			EMIT(SB_LD_ABS, 0, 0, SB_OFF_ARG(c->arg + 1));
			EMIT(SB_JSET, TO(deny), 0, ~(SB_SOCK_TYPE_MASK | SB_SOCK_FLAGS));
			EMIT(SB_AND, 0, 0, SB_SOCK_TYPE_MASK);
			EMIT(SB_JEQ, TO(allow), 0, SB_SOCK_STREAM);
			EMIT(SB_JEQ, TO(allow), TO(deny), SB_SOCK_DGRAM);
			break;
		}
	}
	EMIT(SB_RET, 0, 0, SB_RET_TRAP | EPERM);            /* none of the above */
	EMIT(SB_RET, 0, 0, SB_RET_ALLOW);
	EMIT(SB_RET, 0, 0, SB_RET_TRAP | EPERM);
#undef TO
#undef EMIT
	return n;
}

/*
 * Descriptors the loop may hold at once besides the listener's t->n_conns connections (sized
 * from RLIMIT_NOFILE at start, listener_slots): RLIMIT_NOFILE becomes their sum. stdin, stdout,
 * stderr; the listener; the one accepted before a slot is freed for it; the Extensions API and
 * Kinesis clients; a container credentials fetch's client and its token file; an error report's
 * own client (api_report_error); the resolver's one at a time (/etc/hosts or resolv.conf, then
 * its UDP socket). Descriptors inherited from whoever started telkin are added when it applies.
 */
#define SANDBOX_FDS_FIXED (3 + 1 + 1 + 2 + 2 + 1 + 1)

/* How long the first /event/next may take to go out before the filter goes on regardless. */
#define SANDBOX_NEXT_WAIT_MS 100

/* Descriptors sandbox_limits asks poll() about at once: 2 KiB of stack. poll() refuses more
 * than RLIMIT_NOFILE (EINVAL); sandbox_limits then asks fcntl() about them one by one. */
#define SANDBOX_PROBE_FDS 256

/* Distinct refused system calls logged; further ones are only counted. */
#define SANDBOX_LOGGED_MAX 16

/*
 * The sandbox's state. A global, unlike the rest of the process state, because the SIGSYS
 * handler writes it and a handler cannot be given the process struct.
 */
static struct {
	int wanted;                            /* TELKIN_SANDBOX=1 */
	const char *state;                     /* "off", "on", "refused" (the kernel said no) */
	volatile sig_atomic_t denied;          /* calls refused */
	volatile sig_atomic_t n_logged;
	int logged[SANDBOX_LOGGED_MAX];        /* their numbers */
} g_sandbox = { 1, "off", 0, 0, { 0 } };

static const char *sandbox_state(void)
{
	return g_sandbox.state;
}

static unsigned long long sandbox_denied(void)
{
	return (unsigned long long)g_sandbox.denied;
}

/* Decimal of v at p; the end. Async-signal-safe (the handler cannot use snprintf). */
static char *sb_put_uint(char *p, unsigned long v)
{
	char d[24];
	int n = 0;
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < (int)sizeof(d));
	while (n)
		*p++ = d[--n];
	return p;
}

/*
 * SIGSYS from the filter (SECCOMP_RET_TRAP): the call was not made. Make it return -EPERM (the
 * errno the filter put in si_errno), count it and log each new number once. Only write() here.
 * RET_TRAP rather than RET_ERRNO, which would be silent: this is how a refusal is known.
 */
static void sandbox_sigsys(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	long ret = -(long)(si->si_errno ? si->si_errno : EPERM);
	int saved = errno, i, n = g_sandbox.n_logged;
	static const char head[] = "[telkin] error: sandbox: system call ";
	static const char tail[] = " refused (EPERM); further refusals of it are only counted\n";
	char line[sizeof(head) + sizeof(tail) + 24], *p;

	(void)sig;
	if (si->si_code != 1) /* SYS_SECCOMP: else sent by a process, not the filter: ignored */
		return;
#if defined(__x86_64__)
	uc->uc_mcontext.gregs[13] = ret;       /* REG_RAX (glibc hides the name without _GNU_SOURCE) */
#elif defined(__aarch64__)
	uc->uc_mcontext.regs[0] = (unsigned long)ret;
#else
	(void)uc;
	(void)ret;
#endif
	g_sandbox.denied++;
	for (i = 0; i < n && g_sandbox.logged[i] != si->si_syscall; i++)
		;
	if (i == n && n < SANDBOX_LOGGED_MAX) {
		g_sandbox.logged[n] = si->si_syscall;
		g_sandbox.n_logged = n + 1;
		memcpy(line, head, sizeof(head) - 1);
		p = sb_put_uint(line + sizeof(head) - 1, (unsigned long)(unsigned)si->si_syscall);
		memcpy(p, tail, sizeof(tail) - 1);
		p += sizeof(tail) - 1;
		if (write(STDERR_FILENO, line, (size_t)(p - line)) < 0) {
			/* stderr is gone: the refusal is still counted */
		}
	}
	errno = saved;
}

/*
 * The descriptors the loop may hold: SANDBOX_FDS_FIXED and the slots, plus each inherited one that
 * sits below that (the count grows as they are found). SANDBOX_PROBE_FDS at a time: poll() marks
 * a closed one POLLNVAL, in one call where fcntl() takes one each (2 048 slots: 2.5 ms at 1.2 us a
 * call on this project's VMs, against 0.02 ms).
 */
static rlim_t sandbox_fds_needed(const struct telkin *t)
{
	rlim_t fds = SANDBOX_FDS_FIXED + t->n_conns;
	struct pollfd probe[SANDBOX_PROBE_FDS];

	for (int fd = STDERR_FILENO + 1; fd < (int)fds;) {
		int n = 0, polled;
		for (; n < SANDBOX_PROBE_FDS && fd + n < (int)fds; n++)
			probe[n] = (struct pollfd){ .fd = fd + n };
		polled = poll(probe, (nfds_t)n, 0) >= 0;
		for (int i = 0; i < n; i++, fd++)
			if (fd != t->listen_fd && fd != t->api.fd && fd != t->kin.fd &&
			    (polled ? !(probe[i].revents & POLLNVAL) : fcntl(fd, F_GETFD) >= 0))
				fds++;
	}
	return fds;
}

/*
 * Resource limits, before the filter (they hold under qemu too, where the filter is refused):
 * no core dump (it would hold the credentials), no new process (RLIMIT_NPROC 0; root is exempt,
 * the filter is not), and no more descriptors than the loop holds (sandbox_fds_needed).
 * RLIMIT_FSIZE is left alone: with stderr redirected to a file, the first log line would raise
 * SIGXFSZ, which kills.
 */
static void sandbox_limits(const struct telkin *t)
{
	struct rlimit none = { 0, 0 }, files;
	rlim_t fds = sandbox_fds_needed(t);

	if (setrlimit(RLIMIT_CORE, &none) < 0 || setrlimit(RLIMIT_NPROC, &none) < 0)
		log_msg(LOG_WARN, "sandbox: setrlimit: %s", strerror(errno));
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_max > fds) {
		files.rlim_cur = files.rlim_max = fds;
		if (setrlimit(RLIMIT_NOFILE, &files) < 0)
			log_msg(LOG_WARN, "sandbox: RLIMIT_NOFILE: %s", strerror(errno));
	}
}

/* The SIGSYS handler, then no new privileges and the filter. 0, or -1 (errno set). */
static int sandbox_filter_install(void)
{
#ifdef SANDBOX_NATIVE
	struct sb_insn f[SB_FILTER_MAX];
	struct sb_prog prog = { 0, f };
	struct sigaction sa;
	sigset_t sys;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sandbox_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	prog.len = (unsigned short)sandbox_filter(SANDBOX_NATIVE, f, SB_FILTER_MAX);
	if (!prog.len) {
		errno = E2BIG;
		return -1;
	}
	/* A blocked SIGSYS would make the kernel kill at the first refusal: unblock it. */
	if (sigaction(SIGSYS, &sa, NULL) < 0 || sigprocmask(SIG_UNBLOCK, &sys, NULL) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) < 0 ||
	    prctl(PR_SET_SECCOMP, (unsigned long)SB_MODE_FILTER, (unsigned long)&prog, 0UL, 0UL) < 0)
		return -1;
	return 0;
#else
	errno = ENOSYS;
	return -1;
#endif
}

#ifdef TELKIN_TEST_ESCAPE

/*
 * Test builds only (make sandbox-test; never the shipped binary): what injected code would try
 * first, once the sandbox is on. TELKIN_TEST_ESCAPE names a directory for the files an allowed
 * attempt would leave behind. Each attempt's outcome is logged for the test to read.
 */
static void sandbox_escape_report(const char *what, int refused)
{
	log_msg(LOG_INFO, "escape test: %s: %s", what, refused ? strerror(errno) : "ALLOWED");
}

static void sandbox_escape_attempts(void)
{
	const char *dir = getenv("TELKIN_TEST_ESCAPE");
	char written[200], cmd[240];
	char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	struct sockaddr_in sa;
	void *m;
	int fd, rc;
	pid_t pid;

	if (!dir)
		return;
	snprintf(written, sizeof(written), "%s/written", dir);
	snprintf(cmd, sizeof(cmd), "echo escaped > %s/exec", dir);
	execve(argv[0], argv, NULL);
	sandbox_escape_report("execve /bin/sh", 1);
	pid = fork();
	if (pid == 0)
		_exit(0);
	sandbox_escape_report("fork", pid < 0);
	rc = (int)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
	if (rc == 0)
		_exit(0);
	sandbox_escape_report("clone", rc < 0);
	fd = open(written, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	sandbox_escape_report("open for writing", fd < 0);
	if (fd >= 0)
		close(fd);
	fd = open(written, O_RDONLY | O_CREAT, 0600);
	sandbox_escape_report("open read-only with O_CREAT", fd < 0);
	if (fd >= 0)
		close(fd);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	rc = rc < 0 ? -1 : listen(fd, 1);
	sandbox_escape_report("listening TCP socket", rc < 0);
	if (fd >= 0)
		close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	sandbox_escape_report("AF_UNIX socket", fd < 0);
	if (fd >= 0)
		close(fd);
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sandbox_escape_report("executable mapping", m == MAP_FAILED);
	rc = (int)syscall(SYS_kill, 1L, 0L);
	sandbox_escape_report("kill", rc < 0);
	rc = (int)syscall(SYS_ptrace, 16L /* PTRACE_ATTACH */, 1L, 0L, 0L);
	sandbox_escape_report("ptrace", rc < 0);
	rc = (int)syscall(SYS_sched_setaffinity, 0L, sizeof(unsigned long), (unsigned long[]){ 1UL });
	sandbox_escape_report("sched_setaffinity", rc < 0);
	/* Still possible by design (SECURITY.md): reading a file. */
	fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
	sandbox_escape_report("open read-only /proc/self/environ", fd < 0);
	if (fd >= 0)
		close(fd);
}
#endif

/* TELKIN_SANDBOX, read with the configuration: 0, or -1 with err (not 0 or 1). */
static int sandbox_config(char *err, size_t errcap)
{
	const char *v = env_or("TELKIN_SANDBOX", "1");

	if (strcmp(v, "0") && strcmp(v, "1")) {
		snprintf(err, errcap, "TELKIN_SANDBOX=%.32s: expected 1 (on) or 0 (off)", v);
		return -1;
	}
	g_sandbox.wanted = v[0] == '1';
	return 0;
}

/*
 * Put the first /event/next on the wire before the filter goes on. The kernel takes 0.1-0.3 ms to
 * install a filter (it compiles it and precomputes its answers), which would otherwise be added
 * to every cold start (exec to the first /event/next). Only the API connection is stepped, for at
 * most SANDBOX_NEXT_WAIT_MS: nothing is read from the listener or parsed meanwhile; the loop
 * takes the exchange from wherever it is.
 */
static void sandbox_next_out(struct telkin *t)
{
	int64_t until = now_ms() + SANDBOX_NEXT_WAIT_MS, now;

	while ((t->api.state == HC_CONNECTING || t->api.state == HC_SENDING) &&
	       (now = now_ms()) < until) {
		struct pollfd pfd = { .fd = t->api.fd, .events = hc_poll_events(&t->api) };
		int rc = poll(&pfd, 1, (int)(until - now));
		if (rc < 0 && errno != EINTR)
			return;
		hc_step(&t->api, rc > 0 ? pfd.revents : 0, now_ms());
	}
}

/*
 * Once start-up is done and the first /event/next is out (lifecycle_start, sandbox_next_out in
 * main; under SnapStart and provisioned concurrency, none is yet): the limits and the filter,
 * unless TELKIN_SANDBOX=0. A filter the kernel refuses (qemu-user answers EINVAL; a kernel
 * without seccomp) leaves telkin running unfiltered, said once and in the exit summary.
 */
static void sandbox_apply(struct telkin *t)
{
	if (!g_sandbox.wanted) {
		g_sandbox.state = "off";
		log_msg(LOG_WARN, "TELKIN_SANDBOX=0: running without the seccomp filter and limits");
		return;
	}
	sandbox_limits(t);
	if (sandbox_filter_install() < 0) {
		g_sandbox.state = "refused";
		log_msg(LOG_WARN, "sandbox: the kernel refused the seccomp filter (%s): running "
		        "without it", strerror(errno));
	} else {
		g_sandbox.state = "on";
	}
#ifdef TELKIN_TEST_ESCAPE
	sandbox_escape_attempts();
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* Start-up.                                                                                   */

/* "function":"..","version":"..","region":"..","sandbox":"..": appended to every event. */
static int identity_build(struct telkin *t)
{
	const char *names[4] = { "function", "version", "region", "sandbox" };
	const char *values[4] = { t->cfg.function_name, t->cfg.function_version,
	                          t->cfg.function_region, t->sandbox_id };
	char *p = t->identity, *end = t->identity + sizeof(t->identity);

	for (int i = 0; i < 4; i++) {
		size_t vlen = strlen(values[i]), esc = json_escaped_len(values[i], vlen);
		size_t nlen = strlen(names[i]);
		if ((size_t)(end - p) < nlen + esc + 8)
			return -1;
		if (i)
			*p++ = ',';
		*p++ = '"';
		p = append(p, names[i], nlen);
		p = APPEND_LIT(p, "\":\"");
		p += json_escape(p, esc, values[i], vlen);
		*p++ = '"';
	}
	t->identity_len = (size_t)(p - t->identity);
	return 0;
}

/*
 * SnapStart: this process is one of many copies of one snapshot, all with the same memory.
 * Nothing made before may stay shared: a new sandbox id (the identity of every record from now
 * on), fresh seeds for the jitter PRNG and for BearSSL's DRBG (else every copy would send the
 * same TLS randoms and ECDHE secrets), no connection or TLS session from before the snapshot,
 * and no cached credentials (the provider's new ones are fetched before the next request).
 */
static void restore_from_snapshot(struct telkin *t, const char *why)
{
	uint8_t seed[32];
	uint64_t s64;

	t->snapshot_pending = 0;
	t->stats.restores++;
	if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		log_msg(LOG_ERROR, "getrandom after a restore: %s", strerror(errno));
	memcpy(&s64, seed, sizeof(s64));
	g_rng_state ^= s64 | 1;
	report_drops(t);  /* owed drops are numbered in the old sandbox: reported under its name */
	for (int r = 0; r < DROP_REASONS; r++) {
		if (drop_count(&t->unreported[r]))
			log_msg(LOG_ERROR, "%llu dropped events of the snapshot's sandbox could not be "
			        "reported", (unsigned long long)drop_count(&t->unreported[r]));
		memset(&t->unreported[r], 0, sizeof(t->unreported[r]));
	}
	random_hex(t->sandbox_id, SANDBOX_ID_LEN);
	identity_build(t); /* the same lengths as at start: it fits */
	t->seq = 0;       /* a new sandbox counts from 1 */
	t->stream_request_id[0] = 0;
	if (t->kin.tls) {
		br_ssl_engine_inject_entropy(&t->kin.tls->sc.eng, seed, sizeof(seed));
		br_ssl_client_forget_session(&t->kin.tls->sc);
	}
	explicit_bzero(seed, sizeof(seed));
	if (t->request_out && t->kin.state != HC_FAILED)
		hc_fail(&t->kin, "restored from a snapshot"); /* resent on a new connection */
	else
		hc_close(&t->kin);
	for (size_t i = 0; i < t->conns_hi; i++)
		if (t->conns[i].fd >= 0 && !t->conns[i].request_started)
			listener_close(t, &t->conns[i]);
	if (t->cfg.container_creds) {
		creds_wipe(&t->cfg.creds);
		sigv4_set_credentials(&t->signer, t->cfg.creds.access_key_id,
		                      t->cfg.creds.secret_access_key);
		t->creds_stale = 1;
		t->creds_retry_at = 0;
	}
	log_msg(LOG_INFO, "restored from a snapshot (%s): sandbox %s", why, t->sandbox_id);
}

/* Every buffer, once, sized from the configuration. Pages are touched only when used. */
static int buffers_alloc(struct telkin *t)
{
	t->body_limit = 2 * (size_t)t->cfg.buffer_bytes + LISTEN_BODY_SLACK;
	t->q.cap = t->cfg.queue_bytes & ~(size_t)7;
	t->q.mem = buffer_map(t->q.cap, t->cfg.huge_pages);
	t->req_body = buffer_map(REQUEST_BODY_MAX, t->cfg.huge_pages);
	t->kin.buf = malloc(KINESIS_RESPONSE_MAX);
	t->kin.cap = KINESIS_RESPONSE_MAX;
	t->batch_tok_cap = ((size_t)t->cfg.buffer_items + 1) * BATCH_TOKENS_PER_EVENT;
	if (t->batch_tok_cap < LISTEN_MAX_EVENTS + 1)
		t->batch_tok_cap = LISTEN_MAX_EVENTS + 1;
	t->batch_toks = malloc(t->batch_tok_cap * sizeof(struct json_token));
	t->inflight_entries = malloc(INFLIGHT_MAX_ENTRIES * sizeof(size_t));
	t->resp_toks = malloc(KINESIS_RESPONSE_TOKENS * sizeof(struct json_token));
	if (!t->q.mem || !t->req_body || !t->kin.buf || !t->batch_toks || !t->resp_toks ||
	    !t->inflight_entries)
		return -1;
	return listener_alloc(t);
}

/* For an https endpoint: the anchors (built in, plus TELKIN_CA_FILE's) and the TLS context. */
static int tls_init(struct telkin *t, char *err, size_t errcap)
{
	struct trust_store *ts = &t->trust;

	if (!t->cfg.kinesis.tls)
		return 0;
	/* Room for TELKIN_CA_FILE's anchors only when there is one: the built-ins are static. */
	ts->bytes = t->cfg.ca_file ? malloc(TLS_ANCHOR_BYTES) : NULL;
	t->kin.tls = malloc(sizeof(*t->kin.tls));
	if ((t->cfg.ca_file && !ts->bytes) || !t->kin.tls) {
		snprintf(err, errcap, "out of memory for TLS");
		return -1;
	}
	memcpy(ts->anchors, BUILTIN_ANCHORS, BUILTIN_ANCHORS_NUM * sizeof(ts->anchors[0]));
	ts->count = BUILTIN_ANCHORS_NUM;
	if (t->cfg.ca_file) {
		/* Read once at start; the temporary buffers go back before the loop runs. */
		char *pem = malloc(TLS_CA_FILE_MAX + 1), why[160];
		unsigned char *scratch = malloc(TLS_CERT_MAX);
		FILE *f = fopen(t->cfg.ca_file, "rb");
		size_t n = 0;
		int rc = -1;
		if (!pem || !scratch)
			snprintf(why, sizeof(why), "out of memory");
		else if (!f)
			snprintf(why, sizeof(why), "%s", strerror(errno));
		else if ((n = fread(pem, 1, TLS_CA_FILE_MAX + 1, f)) > TLS_CA_FILE_MAX)
			snprintf(why, sizeof(why), "larger than %u bytes", TLS_CA_FILE_MAX);
		else
			rc = trust_add_pem(ts, pem, n, scratch, why, sizeof(why));
		if (f)
			fclose(f);
		free(pem);
		free(scratch);
		if (rc < 0) {
			snprintf(err, errcap, "TELKIN_CA_FILE=%.128s: %s", t->cfg.ca_file, why);
			return -1;
		}
	}
	tls_setup(t->kin.tls, ts, t->cfg.kinesis.host);
	return 0;
}

/* host:port of AWS_LAMBDA_RUNTIME_API into the API client. */
static int runtime_api_parse(struct telkin *t, const char *value)
{
	const char *colon = strrchr(value, ':');
	size_t hlen;

	if (copy_str(t->runtime_api, sizeof(t->runtime_api), value) || !colon || !colon[1] ||
	    strlen(colon + 1) >= sizeof(t->api.port))
		return -1;
	hlen = (size_t)(colon - value);
	if (hlen >= sizeof(t->api.host))
		return -1;
	memcpy(t->api.host, value, hlen);
	t->api.host[hlen] = 0;
	strcpy(t->api.port, colon + 1);
	return 0;
}

static int telkin_init(struct telkin *t, const char *argv0)
{
	char err[320];
	const char *name = strrchr(argv0, '/');
	const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
	uint64_t seed;

	name = name ? name + 1 : argv0;
	t->mode = mode_detect();
	if (copy_str(t->extension_name, sizeof(t->extension_name), name))
		copy_str(t->extension_name, sizeof(t->extension_name), EXTENSION_NAME_DEFAULT);
	if (getrandom(&seed, sizeof(seed), 0) == sizeof(seed))
		g_rng_state ^= seed;
	random_hex(t->sandbox_id, SANDBOX_ID_LEN);
	t->listen_fd = t->cpu_pinned = -1;
	t->api.fd = t->kin.fd = -1;
	t->api.name = "lambda";
	t->kin.name = "kinesis";
	if (!api || runtime_api_parse(t, api)) {
		log_msg(LOG_ERROR, "AWS_LAMBDA_RUNTIME_API is not set to host:port: telkin runs as an "
		        "AWS Lambda extension (see README)");
		return -1;
	}
	t->api.buf = malloc(API_RESPONSE_MAX);
	t->api.cap = API_RESPONSE_MAX;
	if (!t->api.buf)
		return -1;
	if (api_register(t, err, sizeof(err))) {
		log_msg(LOG_ERROR, "%s", err);
		return -1;
	}
	if (config_load(&t->cfg, err, sizeof(err))) {
		api_report_error(t, API_INIT_ERROR, "Extension.ConfigInvalid", err);
		return -1;
	}
	if (!t->cfg.function_name[0])
		copy_str(t->cfg.function_name, sizeof(t->cfg.function_name), t->registered_function);
	if (!t->cfg.function_version[0])
		copy_str(t->cfg.function_version, sizeof(t->cfg.function_version),
		         t->registered_version);
	if (identity_build(t) || buffers_alloc(t)) {
		api_report_error(t, API_INIT_ERROR, "Extension.OutOfMemory",
		                 "could not allocate telkin's buffers (see TELKIN_QUEUE_BYTES)");
		return -1;
	}
	memcpy(t->kin.host, t->cfg.kinesis.host, sizeof(t->kin.host));
	memcpy(t->kin.port, t->cfg.kinesis.port, sizeof(t->kin.port));
	if (tls_init(t, err, sizeof(err))) {
		api_report_error(t, API_INIT_ERROR, "Extension.ConfigInvalid", err);
		return -1;
	}
	if (t->cfg.container_creds && creds_fetch(t, CRED_TIMEOUT_MS, err, sizeof(err))) {
		api_report_error(t, API_INIT_ERROR, "Extension.CredentialsFailed", err);
		return -1;
	}
	sigv4_init(&t->signer, t->cfg.region, "kinesis", t->cfg.creds.access_key_id,
	           t->cfg.creds.secret_access_key);
	if (listener_open(t, err, sizeof(err))) {
		api_report_error(t, API_INIT_ERROR, "Extension.ListenerFailed", err);
		return -1;
	}
	if (api_subscribe(t, err, sizeof(err))) {
		api_report_error(t, API_INIT_ERROR, "Extension.SubscribeFailed", err);
		return -1;
	}
	if (sandbox_config(err, sizeof(err))) {
		api_report_error(t, API_INIT_ERROR, "Extension.ConfigInvalid", err);
		return -1;
	}
	t->last_telemetry = t->metrics_at = now_ms();
	return 0;
}

/*
 * Initialized: end init. On demand and on Managed Instances at once (the first invocation, or
 * SHUTDOWN, is what comes next). SnapStart and provisioned concurrency first ship what init
 * produced (PHASE_INIT); under SnapStart the next wake-up is in a restored copy.
 */
static void lifecycle_start(struct telkin *t)
{
	if (t->mode == MODE_SNAPSTART || t->mode == MODE_PROVISIONED) {
		t->phase = PHASE_INIT;
		t->init_deadline = now_ms() + INIT_TELEMETRY_WAIT_MS;
		t->snapshot_pending = t->mode == MODE_SNAPSTART;
	} else {
		api_next(t);
	}
}

/*
 * The CPU to pin to (TELKIN_CPU_PIN), or -1: off; a number as given when it is allowed; auto pins
 * to the last allowed CPU when the function's share is under one vCPU, known from its memory
 * size, and there are two or more to choose from. The last because the first takes most device
 * interrupts. Never on Managed Instances, where many invocations share several vCPUs.
 */
static int cpu_pin_choose(int setting, enum exec_mode mode, unsigned long memory_mb,
                          const unsigned long *allowed, size_t words)
{
	int last = -1, count = 0;

	if (setting >= 0)
		return cpu_in(allowed, words, (unsigned)setting) ? setting : -1;
	if (setting != CPU_PIN_AUTO || mode == MODE_MANAGED || memory_mb == 0 ||
	    memory_mb >= LAMBDA_MB_PER_VCPU)
		return -1;
	for (unsigned cpu = 0; cpu < words * CPU_MASK_WORD_BITS; cpu++)
		if (cpu_in(allowed, words, cpu)) {
			last = (int)cpu;
			count++;
		}
	return count < 2 ? -1 : last;
}

/*
 * Pin (once, at start, once the first /event/next is on the wire, and before the filter:
 * sched_setaffinity is not among its calls).
 */
static void cpu_pin_apply(struct telkin *t)
{
	unsigned long mask[CPU_MASK_WORDS];
	size_t words = cpu_allowed(mask);
	int cpu;

	t->cpu_pinned = -1;
	cpu = cpu_pin_choose(t->cfg.cpu_pin, t->mode, t->cfg.memory_mb, mask, words);
	if (cpu < 0) {
		if (t->cfg.cpu_pin >= 0)
			log_msg(LOG_WARN, "TELKIN_CPU_PIN=%d: the kernel does not list that CPU now: "
			        "not pinned", t->cfg.cpu_pin);
		return;
	}
	memset(mask, 0, sizeof(mask));
	mask[(unsigned)cpu / CPU_MASK_WORD_BITS] = 1UL << ((unsigned)cpu % CPU_MASK_WORD_BITS);
	if (syscall(SYS_sched_setaffinity, 0L, sizeof(mask), mask) < 0) {
		log_msg(LOG_WARN, "could not pin to CPU %d (%s): not pinned", cpu, strerror(errno));
		return;
	}
	t->cpu_pinned = cpu;
}

#ifndef TELKIN_TEST
static struct telkin g_telkin;

int main(int argc, char **argv)
{
	char pin[32] = "";

	(void)argc;
	signal(SIGPIPE, SIG_IGN);
	if (telkin_init(&g_telkin, argv[0]) < 0)
		return 1;
	lifecycle_start(&g_telkin);
	sandbox_next_out(&g_telkin);    /* what follows is off the cold-start path */
	cpu_pin_apply(&g_telkin);
	sandbox_apply(&g_telkin);
	/* Said after the first /event/next is out: the line is not on the cold-start path. */
	if (g_telkin.cpu_pinned >= 0)
		snprintf(pin, sizeof(pin), "; pinned to CPU %d", g_telkin.cpu_pinned);
	log_msg(LOG_INFO, "%s: shipping %s%s%sto stream %s via %s:%s (%s)%s",
	        mode_name(g_telkin.mode),
	        g_telkin.cfg.types & CLASS_PLATFORM ? "platform " :
	        g_telkin.cfg.n_platform_names ? "platform (by name) " : "",
	        g_telkin.cfg.types & CLASS_FUNCTION ? "function " : "",
	        g_telkin.cfg.types & CLASS_EXTENSION ? "extension " : "", g_telkin.cfg.stream_name,
	        g_telkin.cfg.kinesis.host, g_telkin.cfg.kinesis.port,
	        g_telkin.cfg.kinesis.tls ? "TLS" : "plain HTTP",
	        pin);
	run(&g_telkin);
	return 0;
}
#endif
