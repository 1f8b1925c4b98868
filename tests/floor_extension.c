/*
 * floor_extension - the "floor" for telkin's cold start and memory figures (make bench).
 *
 * A do-nothing Lambda external extension: register (its name is its file name), bind a telemetry
 * listener on 127.0.0.1:$TELKIN_LISTEN_PORT (default 4243), subscribe to the Telemetry API, call
 * /event/next; then answer telemetry POSTs with 200 and wait for the next event, exiting 0 on
 * SHUTDOWN. Plain blocking sockets, one keep-alive connection to the Runtime API, poll() only to
 * serve the listener while /event/next is outstanding. No configuration, no checks beyond what is
 * needed to not hang. Built with telkin's toolchain and flags (tests/bench.mk).
 *
 * FLOOR_WAIT_RUNTIME_DONE=1 (the per-invoke calibration of make bench): after an INVOKE, call
 * /event/next only once a telemetry POST carrying platform.runtimeDone has been answered, as
 * telkin does; the least any extension that waits for the end of the invocation can do.
 *
 * FLOOR_FUNCTION_LOGS=1 (the answer-time floor of make bench): subscribe to function logs too,
 * with telkin's buffering (1000 items, 1 MiB, 25 ms), so that the floor is sent the same burst as
 * telkin and its answer times are what the machine and the simulator add.
 */
#define _GNU_SOURCE /* strcasestr, memmem */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[1 << 16];   /* one response head + body; a telemetry request head */
static char id[128];        /* Lambda-Extension-Identifier */
static char host[64];       /* AWS_LAMBDA_RUNTIME_API */

static void die(const char *what)
{
	fprintf(stderr, "floor_extension: %s\n", what);
	exit(1);
}

/* Read one HTTP message head from fd into buf; its length, or 0 when the peer closed. */
static size_t read_msg(int fd, size_t *head_len, size_t *body_len)
{
	size_t len = 0;
	char *end, *cl;

	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return 0;
		len += (size_t)n;
		buf[len] = 0;
		if ((end = strstr(buf, "\r\n\r\n")))
			break;
	}
	*head_len = (size_t)(end + 4 - buf);
	cl = strcasestr(buf, "\r\nContent-Length:");
	*body_len = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
	return len;
}

static const char done_type[] = "\"platform.runtimeDone\"";

/* Read and discard the rest of a request body; *done set when it names platform.runtimeDone. */
static void read_body(int fd, size_t have, size_t want, int *done)
{
	while (have < want) {
		size_t room = sizeof(buf) - 1;
		ssize_t n = read(fd, buf, want - have < room ? want - have : room);
		if (n <= 0)
			die("connection closed");
		have += (size_t)n;
		if (memmem(buf, (size_t)n, done_type, sizeof(done_type) - 1))
			*done = 1;
	}
}

static void send_req(int fd, const char *method, const char *path, const char *extra,
                     const char *body)
{
	char req[1024];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%sContent-Length: "
	                 "%zu\r\n\r\n%s", method, path, host, id[0] ? "Lambda-Extension-Identifier: "
	                 : "", id, id[0] ? "\r\n" : "", extra, strlen(body), body);
	if (write(fd, req, (size_t)n) != n)
		die("write");
}

/* Complete the response on the API connection: head + body in buf; returns the status. */
static int api_response(int fd)
{
	size_t hl, bl, len = read_msg(fd, &hl, &bl);
	if (!len)
		die("Runtime API connection closed");
	if (hl + bl >= sizeof(buf))
		die("Runtime API response too large");
	while (len < hl + bl) {
		ssize_t n = read(fd, buf + len, hl + bl - len);
		if (n <= 0)
			die("Runtime API connection closed");
		len += (size_t)n;
	}
	buf[len] = 0;
	return atoi(buf + 9);
}

/* One telemetry POST on a listener connection: read it, answer 200. 0, 1 when it carried a
 * platform.runtimeDone, or -1 when the connection closed. */
static int serve(int fd)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	size_t hl, bl, len = read_msg(fd, &hl, &bl);
	int done = 0;

	if (!len)
		return -1;
	if (memmem(buf + hl, len - hl, done_type, sizeof(done_type) - 1))
		done = 1;
	read_body(fd, len - hl, bl, &done);
	return write(fd, ok, sizeof(ok) - 1) == sizeof(ok) - 1 ? done : -1;
}

int main(int argc, char **argv)
{
	const char *api = getenv("AWS_LAMBDA_RUNTIME_API"), *lp = getenv("TELKIN_LISTEN_PORT");
	const char *name = strrchr(argv[0], '/');
	unsigned port = lp ? (unsigned)atoi(lp) : 4243;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char extra[160], body[320], *colon, *h;
	int fd, lfd, conn = -1, one = 1, next_out = 0, invoked = 0, r;
	int wait_done = getenv("FLOOR_WAIT_RUNTIME_DONE") != NULL;
	int logs = getenv("FLOOR_FUNCTION_LOGS") != NULL;

	(void)argc;
	name = name ? name + 1 : argv[0];
	if (!api || strlen(api) >= sizeof(host) || !(colon = strrchr(api, ':')))
		die("AWS_LAMBDA_RUNTIME_API is not host:port");
	strcpy(host, api);
	host[colon - api] = 0;
	sa.sin_port = htons((unsigned short)atoi(colon + 1));
	inet_pton(AF_INET, host, &sa.sin_addr);
	host[colon - api] = ':';

	/* Register. */
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect to the Runtime API");
	snprintf(extra, sizeof(extra), "Lambda-Extension-Name: %s\r\n", name);
	send_req(fd, "POST", "/2020-01-01/extension/register", extra,
	         "{\"events\":[\"INVOKE\",\"SHUTDOWN\"]}");
	if (api_response(fd) != 200 || !(h = strcasestr(buf, "\r\nLambda-Extension-Identifier:")))
		die("register");
	h += 30;
	while (*h == ' ')
		h++;
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(h, "\r\n"), h);

	/* Listener, then subscribe. */
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0)
		die("telemetry listener");
	snprintf(body, sizeof(body), "{\"schemaVersion\":\"2022-12-13\",\"destination\":{\"protocol\":"
	         "\"HTTP\",\"URI\":\"http://sandbox.localdomain:%u\"},\"types\":[\"platform\"%s],"
	         "\"buffering\":{\"maxItems\":1000,\"maxBytes\":%s,\"timeoutMs\":25}}", port,
	         logs ? ",\"function\"" : "", logs ? "1048576" : "262144");
	send_req(fd, "PUT", "/2022-07-01/telemetry", "Content-Type: application/json\r\n", body);
	if (api_response(fd) != 200)
		die("subscribe");

	/* The event loop: /event/next out (after runtimeDone when waiting), telemetry served. */
	for (;;) {
		struct pollfd p[3] = { { -1, POLLIN, 0 }, { lfd, POLLIN, 0 }, { conn, POLLIN, 0 } };
		if (!next_out && !(wait_done && invoked)) {
			send_req(fd, "GET", "/2020-01-01/extension/event/next", "", "");
			next_out = 1;
		}
		p[0].fd = next_out ? fd : -1;
		if (poll(p, 3, -1) < 0)
			continue;
		if (p[1].revents) {
			if (conn >= 0)
				close(conn);
			conn = accept(lfd, NULL, NULL);
		}
		if (p[2].revents && (r = serve(conn)) != 0) {
			if (r < 0) {
				close(conn);
				conn = -1;
			} else {
				invoked = 0;
			}
		}
		if (p[0].revents) {
			if (api_response(fd) != 200)
				die("event/next");
			if (strstr(buf, "\"SHUTDOWN\""))
				return 0;
			next_out = 0;
			invoked = 1;
		}
	}
}
