/*
 * bench_tls.c - figures, not assertions: what TLS costs telkin. In one process, without sockets,
 * telkin's own client engine (tls_setup, the anchors built in plus a CA loaded with trust_add_pem
 * as TELKIN_CA_FILE does) and a BearSSL server engine pass records to each other through memory:
 *
 *   1. CPU time of a full TLS 1.2 handshake and of a resumed one (session cache on the server,
 *      br_ssl_client_reset(..., 1) on the client), ECDSA P-256 and RSA-2048 server keys; the
 *      median of up to HS_RUNS handshakes, client and server separately (each engine's calls are
 *      timed on the thread CPU clock; copying records between them is counted for neither).
 *   2. MB/s of one 1 MiB and one 5 MiB application write (PutRecords-sized) through the
 *      established session, for each suite telkin offers.
 *   3. Bytes of memory TLS adds to telkin.
 *
 * The CA and server certificates (DNS:localhost) are made at run time with the openssl CLI in a
 * temporary directory; without openssl the benchmark says so and exits 0.
 *
 *   make build/host/bench_tls && build/host/bench_tls
 */
/* With TELKIN_TEST, main() is left out: the functions only it reaches go unused. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "telkin.c"
#pragma GCC diagnostic pop

#define HS_RUNS        51            /* handshakes per figure (an odd count: a true median) */
#define HS_BUDGET_S    1.5           /* ... or fewer, when they take longer than this */
#define TPUT_RUNS      5             /* bulk writes per size */
#define TPUT_BUDGET_S  1.5
#define PEM_MAX        (64u << 10)
#define CACHE_BYTES    (16u << 10)   /* server session cache: about 160 sessions */

/* ------------------------------------------------------------------------------------------ */
/* Clocks and medians. */

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
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
	if (!n)
		return 0;
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Two engines joined by memory. */

struct peer {
	const char *name;
	br_ssl_engine_context *eng;
	double cpu;         /* seconds spent in this engine's calls */
	size_t rec_out;     /* record bytes it sent */
	size_t app_in;      /* application bytes it received (and discarded) */
};

#define TIMED(p, stmt) do { double t0_ = cpu_now(); stmt; (p)->cpu += cpu_now() - t0_; } while (0)

/* Records from one engine's output into the other's input: 1 when bytes moved. */
static int xfer(struct peer *from, struct peer *to)
{
	unsigned char *src, *dst;
	size_t a, b;

	if (!(br_ssl_engine_current_state(from->eng) & BR_SSL_SENDREC) ||
	    !(br_ssl_engine_current_state(to->eng) & BR_SSL_RECVREC))
		return 0;
	src = br_ssl_engine_sendrec_buf(from->eng, &a);
	dst = br_ssl_engine_recvrec_buf(to->eng, &b);
	if (b < a)
		a = b;
	memcpy(dst, src, a);
	TIMED(from, br_ssl_engine_sendrec_ack(from->eng, a));
	TIMED(to, br_ssl_engine_recvrec_ack(to->eng, a));
	from->rec_out += a;
	return 1;
}

static int drain(struct peer *p)
{
	size_t len;

	if (!(br_ssl_engine_current_state(p->eng) & BR_SSL_RECVAPP))
		return 0;
	br_ssl_engine_recvapp_buf(p->eng, &len);
	TIMED(p, br_ssl_engine_recvapp_ack(p->eng, len));
	p->app_in += len;
	return 1;
}

static int closed(const struct peer *p)
{
	return (br_ssl_engine_current_state(p->eng) & BR_SSL_CLOSED) != 0;
}

/* Until nothing moves. 0, or -1 when an engine closed. */
static int pump(struct peer *c, struct peer *s)
{
	for (;;) {
		int moved = xfer(c, s);
		moved |= xfer(s, c);
		moved |= drain(c);
		moved |= drain(s);
		if (closed(c) || closed(s))
			return -1;
		if (!moved)
			return 0;
	}
}

static void fail_tls(const struct peer *c, const struct peer *s, const char *what)
{
	fprintf(stderr, "bench_tls: %s failed: client error %d (%s), server error %d\n", what,
	        br_ssl_engine_last_error(c->eng), tls_error_text(br_ssl_engine_last_error(c->eng)),
	        br_ssl_engine_last_error(s->eng));
	exit(1);
}

/* ------------------------------------------------------------------------------------------ */
/* Credentials made by openssl. */

struct creds {
	br_x509_certificate chain[1];
	br_skey_decoder_context key;   /* holds the decoded private key */
	char *ca_pem;
	size_t ca_len;
};

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(PEM_MAX);
	size_t n = 0;

	if (f && buf)
		n = fread(buf, 1, PEM_MAX, f);
	if (f)
		fclose(f);
	if (!n || n == PEM_MAX) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

struct grow {
	unsigned char *data;
	size_t len, cap;
};

static void grow_append(void *ctx, const void *buf, size_t len)
{
	struct grow *g = ctx;

	if (len > g->cap - g->len)
		return;
	memcpy(g->data + g->len, buf, len);
	g->len += len;
}

/* The first PEM object whose name contains `want`, as DER (malloc'd). */
static unsigned char *pem_first(const char *pem, size_t len, const char *want, size_t *der_len)
{
	br_pem_decoder_context pc;
	struct grow g = { malloc(PEM_MAX), 0, PEM_MAX };
	size_t off = 0;
	int in = 0;

	if (!g.data)
		return NULL;
	br_pem_decoder_init(&pc);
	while (off < len) {
		off += br_pem_decoder_push(&pc, pem + off, len - off);
		switch (br_pem_decoder_event(&pc)) {
		case BR_PEM_BEGIN_OBJ:
			in = strstr(br_pem_decoder_name(&pc), want) != NULL;
			g.len = 0;
			br_pem_decoder_setdest(&pc, in ? grow_append : NULL, &g);
			break;
		case BR_PEM_END_OBJ:
			if (in && g.len) {
				*der_len = g.len;
				return g.data;
			}
			break;
		case BR_PEM_ERROR:
			free(g.data);
			return NULL;
		default:
			break;
		}
	}
	free(g.data);
	return NULL;
}

static int run_quiet(const char *dir, const char *cmd)
{
	char line[1536];

	snprintf(line, sizeof(line), "cd '%s' && (%s) >/dev/null 2>&1", dir, cmd);
	return system(line) == 0 ? 0 : -1;
}

/* A CA and a server certificate for DNS:localhost signed by it, `alg` = "ec" or "rsa". */
static int make_creds(const char *dir, const char *alg, struct creds *cr)
{
	char cmd[768], path[512];
	const char *newkey = !strcmp(alg, "ec") ? "-newkey ec -pkeyopt ec_paramgen_curve:P-256"
	                                        : "-newkey rsa:2048";
	char *pem;
	size_t len, der_len;
	unsigned char *der;

	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 %s -nodes -keyout %s-ca.key -out %s-ca.pem -days 2 "
	         "-subj /CN=telkin-bench-ca-%s -addext basicConstraints=critical,CA:TRUE "
	         "-addext keyUsage=critical,keyCertSign,cRLSign && "
	         "openssl req -new %s -nodes -keyout %s-srv.key -out %s-srv.csr -subj /CN=localhost && "
	         "printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > %s-ext.cnf && "
	         "openssl x509 -req -in %s-srv.csr -CA %s-ca.pem -CAkey %s-ca.key -set_serial 2 "
	         "-days 2 -sha256 -extfile %s-ext.cnf -out %s-srv.pem",
	         newkey, alg, alg, alg, newkey, alg, alg, alg, alg, alg, alg, alg, alg);
	if (run_quiet(dir, cmd)) {
		fprintf(stderr, "bench_tls: openssl could not make the %s certificates\n", alg);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s-ca.pem", dir, alg);
	if (!(cr->ca_pem = read_file(path, &cr->ca_len)))
		return -1;
	snprintf(path, sizeof(path), "%s/%s-srv.pem", dir, alg);
	if (!(pem = read_file(path, &len)) || !(der = pem_first(pem, len, "CERTIFICATE", &der_len)))
		return -1;
	free(pem);
	cr->chain[0].data = der;
	cr->chain[0].data_len = der_len;
	snprintf(path, sizeof(path), "%s/%s-srv.key", dir, alg);
	if (!(pem = read_file(path, &len)) || !(der = pem_first(pem, len, "PRIVATE KEY", &der_len)))
		return -1;
	free(pem);
	br_skey_decoder_init(&cr->key);
	br_skey_decoder_push(&cr->key, der, der_len);
	free(der);
	if (br_skey_decoder_last_error(&cr->key) != 0) {
		fprintf(stderr, "bench_tls: BearSSL cannot decode the %s key\n", alg);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The server: BearSSL's full profile, our credentials, a session cache that counts its hits. */

struct counting_cache {
	const br_ssl_session_cache_class *vtable;
	br_ssl_session_cache_lru lru;
	unsigned hits, misses;
};

static void cache_save(const br_ssl_session_cache_class **ctx, br_ssl_server_context *sc,
                       const br_ssl_session_parameters *params)
{
	struct counting_cache *cc = (struct counting_cache *)(void *)ctx;

	cc->lru.vtable->save(&cc->lru.vtable, sc, params);
}

static int cache_load(const br_ssl_session_cache_class **ctx, br_ssl_server_context *sc,
                      br_ssl_session_parameters *params)
{
	struct counting_cache *cc = (struct counting_cache *)(void *)ctx;
	int hit = cc->lru.vtable->load(&cc->lru.vtable, sc, params);

	if (hit)
		cc->hits++;
	else
		cc->misses++;
	return hit;
}

static const br_ssl_session_cache_class counting_cache_vtable = {
	sizeof(struct counting_cache), cache_save, cache_load
};

struct server {
	br_ssl_server_context sc;
	unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
	struct counting_cache cache;
	unsigned char cache_store[CACHE_BYTES];
};

static void server_init(struct server *sv, struct creds *cr)
{
	if (br_skey_decoder_key_type(&cr->key) == BR_KEYTYPE_EC)
		br_ssl_server_init_full_ec(&sv->sc, cr->chain, 1, BR_KEYTYPE_EC,
		                           br_skey_decoder_get_ec(&cr->key));
	else
		br_ssl_server_init_full_rsa(&sv->sc, cr->chain, 1, br_skey_decoder_get_rsa(&cr->key));
	br_ssl_engine_set_buffer(&sv->sc.eng, sv->iobuf, sizeof(sv->iobuf), 1);
	br_ssl_session_cache_lru_init(&sv->cache.lru, sv->cache_store, sizeof(sv->cache_store));
	sv->cache.vtable = &counting_cache_vtable;
	sv->cache.hits = sv->cache.misses = 0;
	br_ssl_server_set_cache(&sv->sc, &sv->cache.vtable);
}

/* ------------------------------------------------------------------------------------------ */
/* Figures. */

struct hs_figures {
	double client_ms, server_ms;  /* medians */
	size_t runs;
	size_t bytes;                 /* record bytes both ways, last handshake */
	int same_session;             /* resumed: session id unchanged by every handshake */
	unsigned hits;                /* server cache hits during these handshakes */
	uint16_t suite;
};

/* One handshake: 0, or exits on failure. */
static void handshake(struct tls_conn *tc, struct server *sv, int resume, struct peer *c,
                      struct peer *s)
{
	c->cpu = s->cpu = 0;
	c->rec_out = s->rec_out = 0;
	TIMED(s, br_ssl_server_reset(&sv->sc));
	TIMED(c, br_ssl_client_reset(&tc->sc, tc->server_name, resume));
	if (pump(c, s) < 0)
		fail_tls(c, s, resume ? "resumed handshake" : "full handshake");
	if (!(br_ssl_engine_current_state(c->eng) & BR_SSL_SENDAPP) ||
	    !(br_ssl_engine_current_state(s->eng) & BR_SSL_SENDAPP))
		fail_tls(c, s, "handshake (stalled)");
}

static void run_handshakes(struct tls_conn *tc, struct server *sv, int resume,
                           struct hs_figures *f)
{
	struct peer c = { "client", &tc->sc.eng, 0, 0, 0 }, s = { "server", &sv->sc.eng, 0, 0, 0 };
	double cms[HS_RUNS], sms[HS_RUNS], start;
	br_ssl_session_parameters before, after;
	unsigned hits0;
	size_t i;

	if (resume)
		handshake(tc, sv, 0, &c, &s); /* a session to resume */
	hits0 = sv->cache.hits;
	f->same_session = 1;
	start = wall_now();
	for (i = 0; i < HS_RUNS && (i < 5 || wall_now() - start < HS_BUDGET_S); i++) {
		br_ssl_engine_get_session_parameters(c.eng, &before);
		handshake(tc, sv, resume, &c, &s);
		br_ssl_engine_get_session_parameters(c.eng, &after);
		if (before.session_id_len != after.session_id_len || !after.session_id_len ||
		    memcmp(before.session_id, after.session_id, after.session_id_len))
			f->same_session = 0;
		cms[i] = c.cpu * 1e3;
		sms[i] = s.cpu * 1e3;
		f->bytes = c.rec_out + s.rec_out;
	}
	f->runs = i;
	f->client_ms = median(cms, i);
	f->server_ms = median(sms, i);
	f->hits = sv->cache.hits - hits0;
	f->suite = after.cipher_suite;
}

struct tput_figures {
	double client_mbs, server_mbs, wall_mbs;   /* medians, MB = 10^6 bytes */
	double overhead;                           /* record bytes / application bytes - 1 */
	size_t runs;
};

static void run_tput(struct tls_conn *tc, struct server *sv, const unsigned char *payload,
                     size_t total, struct tput_figures *f)
{
	struct peer c = { "client", &tc->sc.eng, 0, 0, 0 }, s = { "server", &sv->sc.eng, 0, 0, 0 };
	double cm[TPUT_RUNS], sm[TPUT_RUNS], wm[TPUT_RUNS], start = wall_now();
	size_t i;

	for (i = 0; i < TPUT_RUNS && (i < 1 || wall_now() - start < TPUT_BUDGET_S); i++) {
		size_t sent = 0;
		double w0;

		c.cpu = s.cpu = 0;
		c.rec_out = s.rec_out = s.app_in = 0;
		w0 = wall_now();
		while (sent < total) {
			unsigned st = br_ssl_engine_current_state(c.eng);
			if (st & BR_SSL_SENDAPP) {
				size_t room, n;
				unsigned char *buf = br_ssl_engine_sendapp_buf(c.eng, &room);
				n = total - sent < room ? total - sent : room;
				/* The copy is telkin's too (tls_feed_request): the client's time. */
				TIMED(&c, memcpy(buf, payload + sent, n); br_ssl_engine_sendapp_ack(c.eng, n));
				sent += n;
			}
			if (pump(&c, &s) < 0)
				fail_tls(&c, &s, "application write");
		}
		TIMED(&c, br_ssl_engine_flush(c.eng, 0));
		if (pump(&c, &s) < 0 || s.app_in != total)
			fail_tls(&c, &s, "application write (flush)");
		wm[i] = (double)total / 1e6 / (wall_now() - w0);
		cm[i] = (double)total / 1e6 / c.cpu;
		sm[i] = (double)total / 1e6 / s.cpu;
		f->overhead = (double)c.rec_out / (double)total - 1;
	}
	f->runs = i;
	f->client_mbs = median(cm, i);
	f->server_mbs = median(sm, i);
	f->wall_mbs = median(wm, i);
}

static const char *suite_name(uint16_t s)
{
	switch (s) {
	case BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       return "ECDHE-ECDSA-AES128-GCM";
	case BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         return "ECDHE-RSA-AES128-GCM";
	case BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: return "ECDHE-ECDSA-CHACHA20-POLY1305";
	case BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   return "ECDHE-RSA-CHACHA20-POLY1305";
	case BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       return "ECDHE-ECDSA-AES256-GCM";
	case BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         return "ECDHE-RSA-AES256-GCM";
	default:                                               return "?";
	}
}

static void cleanup_dir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_tls: could not remove %s\n", dir);
}

int main(void)
{
	static const char *const algs[] = { "ec", "rsa" };
	static const char *const alg_names[] = { "ECDSA P-256", "RSA-2048" };
	static const uint16_t bulk_suites[] = {
		BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	};
	static const size_t sizes[] = { 1u << 20, 5u << 20 };
	static struct creds creds[2];
	static struct server sv;
	static struct tls_conn tc;
	static struct trust_store ts;
	char dir[] = "/tmp/bench_tls.XXXXXX", why[160];
	unsigned char *scratch, *payload;
	double t_start = wall_now();

	if (system("command -v openssl >/dev/null 2>&1") != 0) {
		printf("bench_tls: skipped: the openssl command is not installed (it makes the test "
		       "certificates; apt-get install openssl)\n");
		return 0;
	}
	if (!mkdtemp(dir)) {
		perror("bench_tls: mkdtemp");
		return 1;
	}
	for (int k = 0; k < 2; k++)
		if (make_creds(dir, algs[k], &creds[k])) {
			cleanup_dir(dir);
			printf("bench_tls: skipped: could not make or load the test certificates\n");
			return 0;
		}
	cleanup_dir(dir);

	/* telkin's trust store as tls_init builds it: the compiled-in anchors, then the CA file. */
	ts.bytes = malloc(TLS_ANCHOR_BYTES);
	scratch = malloc(TLS_CERT_MAX);
	payload = malloc(5u << 20);
	if (!ts.bytes || !scratch || !payload) {
		fprintf(stderr, "bench_tls: out of memory\n");
		return 1;
	}
	memcpy(ts.anchors, BUILTIN_ANCHORS, BUILTIN_ANCHORS_NUM * sizeof(ts.anchors[0]));
	ts.count = BUILTIN_ANCHORS_NUM;
	for (int k = 0; k < 2; k++)
		if (trust_add_pem(&ts, creds[k].ca_pem, creds[k].ca_len, scratch, why, sizeof(why)) != 1) {
			fprintf(stderr, "bench_tls: trust_add_pem: %s\n", why);
			return 1;
		}
	free(scratch);
	for (size_t i = 0; i < 5u << 20; i++) /* a PutRecords-like body: base64-ish text */
		payload[i] = (unsigned char)"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		             [(i * 2654435761u >> 7) & 63];

	printf("TLS 1.2 in memory: telkin's client (tls_setup, %zu anchors, name \"localhost\") <-> "
	       "BearSSL server (full profile, LRU session cache)\n", ts.count);
	printf("AES-NI/PCLMUL: %s; times are thread CPU time in each engine's calls, "
	       "median of N\n\n", br_aes_x86ni_ctr_get_vtable() && br_ghash_pclmul_get() ? "yes" : "no");

	printf("%-12s %-9s %-30s %4s %10s %10s %7s  %s\n", "server key", "handshake", "suite", "N",
	       "client ms", "server ms", "bytes", "resumed?");
	for (int k = 0; k < 2; k++) {
		struct hs_figures full, res;

		server_init(&sv, &creds[k]);
		tls_setup(&tc, &ts, "localhost");
		run_handshakes(&tc, &sv, 0, &full);
		run_handshakes(&tc, &sv, 1, &res);
		printf("%-12s %-9s %-30s %4zu %10.3f %10.3f %7zu  %s (cache hits %u)\n", alg_names[k],
		       "full", suite_name(full.suite), full.runs, full.client_ms, full.server_ms,
		       full.bytes, full.hits ? "YES?" : "no", full.hits);
		printf("%-12s %-9s %-30s %4zu %10.3f %10.3f %7zu  %s (cache hits %u/%zu, "
		       "session id %s)\n", alg_names[k], "resumed", suite_name(res.suite), res.runs,
		       res.client_ms, res.server_ms, res.bytes,
		       res.hits == res.runs && res.same_session ? "yes" : "NO", res.hits, res.runs,
		       res.same_session ? "kept" : "CHANGED");
	}

	/* The chain and name checks run: the same server under another name is refused. */
	{
		struct peer c = { "client", &tc.sc.eng, 0, 0, 0 }, s = { "server", &sv.sc.eng, 0, 0, 0 };
		int err;

		tls_setup(&tc, &ts, "not-localhost.example");
		br_ssl_server_reset(&sv.sc);
		br_ssl_client_reset(&tc.sc, tc.server_name, 0);
		pump(&c, &s);
		err = br_ssl_engine_last_error(&tc.sc.eng);
		printf("check: the same server as \"not-localhost.example\": %s (error %d: %s)\n",
		       err == BR_ERR_X509_BAD_SERVER_NAME ? "refused" : "NOT REFUSED AS EXPECTED", err,
		       tls_error_text(err));
	}

	printf("\n%-30s %8s %3s %12s %12s %12s %9s\n", "bulk write (ECDSA session)", "size", "N",
	       "client MB/s", "server MB/s", "e2e MB/s", "overhead");
	server_init(&sv, &creds[0]);
	tls_setup(&tc, &ts, "localhost");
	for (size_t q = 0; q < sizeof(bulk_suites) / sizeof(bulk_suites[0]); q++) {
		struct peer c = { "client", &tc.sc.eng, 0, 0, 0 }, s = { "server", &sv.sc.eng, 0, 0, 0 };
		br_ssl_session_parameters pp;

		/* The server accepts one suite only: each of telkin's, in turn. */
		br_ssl_engine_set_suites(&sv.sc.eng, &bulk_suites[q], 1);
		handshake(&tc, &sv, 0, &c, &s);
		br_ssl_engine_get_session_parameters(&tc.sc.eng, &pp);
		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
			struct tput_figures f;
			run_tput(&tc, &sv, payload, sizes[z], &f);
			printf("%-30s %4zu MiB %3zu %12.1f %12.1f %12.1f %8.3f%%\n",
			       suite_name(pp.cipher_suite), sizes[z] >> 20, f.runs, f.client_mbs,
			       f.server_mbs, f.wall_mbs, f.overhead * 100);
		}
	}

	printf("\n%-58s %9s\n", "memory TLS adds to telkin", "bytes");
	printf("%-58s %9zu\n", "struct tls_conn (malloc'd at start, https only)", sizeof(struct tls_conn));
	printf("%-58s %9zu\n", "  of which iobuf BR_SSL_BUFSIZE_BIDI", (size_t)BR_SSL_BUFSIZE_BIDI);
	printf("%-58s %9zu\n", "  of which br_ssl_client_context", sizeof(br_ssl_client_context));
	printf("%-58s %9zu\n", "  of which br_x509_minimal_context", sizeof(br_x509_minimal_context));
	printf("%-58s %9zu\n", "struct trust_store (in struct telkin, always)", sizeof(struct trust_store));
	printf("%-58s %9u\n", "TLS_ANCHOR_BYTES (malloc'd at start, https only)", TLS_ANCHOR_BYTES);
	printf("%-58s %9zu\n", "total, allocated for the process's life",
	       sizeof(struct tls_conn) + sizeof(struct trust_store) + TLS_ANCHOR_BYTES);
	printf("%-58s %9u\n", "with TELKIN_CA_FILE, at start only (read buffer + scratch)",
	       TLS_CA_FILE_MAX + 1 + TLS_CERT_MAX);
	printf("%-58s %9s\n", "stripped binary: TLS share", "n/a");
	printf("  (not measured here: it needs a second musl build with the TLS code cut out)\n");
	printf("\nclient/server: CPU in that engine's calls (client includes copying the payload in);"
	       "\ne2e: wall time for both engines plus the in-memory copies; bytes: records both ways;"
	       "\noverhead: record bytes over application bytes. MB = 10^6 bytes.\n");
	printf("\nbench_tls: %.1f s; make build/host/bench_tls && build/host/bench_tls\n",
	       wall_now() - t_start);
	for (int k = 0; k < 2; k++) {
		free(creds[k].ca_pem);
		free((void *)creds[k].chain[0].data);
	}
	free(payload);
	free(ts.bytes);
	return 0;
}
