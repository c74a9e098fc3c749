/*
 * test_audit_fetch.c — an auditor's export of a node's audit log
 * (audit/fetch.c) against a fake node: a real evhttp server on 127.0.0.1,
 * on its own thread and event base, since audit_fetch blocks in
 * api_client_call on a base of its own. The fake node serves
 * GET /v1/audit/key, /v1/audit/checkpoint and /v1/audit/entries?start=&end=
 * for a log of made-up entries signed by a test key, and answers one page
 * (the one starting at fault_start) the way a case chooses: short, 500,
 * 403, too large, or never.
 *
 * What is checked: a whole export (checkpoint byte for byte, every entry in
 * order, modes 0600 and 0700, no ".part" left), pages split at
 * API_AUDIT_PAGE_MAX, and for every refusal its status and that the
 * export directory is absent afterwards (or, when it existed, untouched).
 * Also api_client_init's rule that plain http goes to loopback only.
 *
 * Each case has its own mkdtemp directory (token file, export) and its own
 * server; teardown stops the server and removes the directory even when an
 * assertion failed. Timeouts are asserted by outcome, never by how long
 * anything took.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "api/api.h"
#include "api/client.h"
#include "audit/checkpoint.h"
#include "audit/fetch.h"
#include "audit/store.h"
#include "audit/verify.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

#define KEY_NAME "domicile-cn-test-1"
#define ORIGIN KEY_NAME "/audit"
#define TOKEN "auditor-test-token"
#define CHECKPOINT_TIME_MS INT64_C(1732400000123)
/* Over any bound audit_fetch can set for a page (fetch.h: API_AUDIT_PAGE_MAX
 * entries of AUDIT_ENTRY_MAX bytes in base64, about 21 MB). */
#define HUGE_PAGE_BYTES ((size_t)24 << 20)
#define HUGE_CHUNK_BYTES ((size_t)1 << 20)
/* How long the fake node keeps a request it never means to answer: far
 * past the client's deadline, so that a client that ignores its deadline
 * fails the case instead of hanging the suite. */
#define HOLD_S 30
/* More than any case asks for: 2500 entries are three pages. */
#define PAGES_SEEN_MAX 16
/* Large enough for any file an export holds in these cases. */
#define EXPORT_READ_MAX ((size_t)64 << 20)

/* How the fake node answers the page that starts at fault_start. */
enum answer {
	ANSWER_ENTRIES,      /* the entries asked for */
	ANSWER_ONE_SHORT,    /* one entry fewer than asked */
	ANSWER_SERVER_ERROR, /* 500 with control characters in its error text */
	ANSWER_FORBIDDEN,    /* 403 */
	ANSWER_HUGE,         /* HUGE_PAGE_BYTES with a Content-Length */
	ANSWER_HUGE_CHUNKED, /* HUGE_PAGE_BYTES in chunks, no Content-Length */
	ANSWER_NOTHING,      /* the request is kept and never answered */
};

struct page_range {
	uint64_t start, end;
};

/* The fake node. What it serves is fixed before node_start (the server
 * thread only reads it); what it saw is read after node_stop (the join
 * orders it before the reads). */
struct node {
	struct dm_buf key_text;   /* GET /v1/audit/key */
	struct dm_buf checkpoint; /* GET /v1/audit/checkpoint */
	uint64_t size;            /* entries 0 .. size - 1 exist */
	size_t entry_len;         /* 0: small entries; else every entry this long */
	enum answer answer;
	uint64_t fault_start;

	struct event_base *base;
	struct evhttp *http;
	struct event *stop;
	struct event *give_up; /* ends ANSWER_NOTHING after HOLD_S */
	pthread_t thread;
	int running;
	int port;

	struct evhttp_request *held; /* ANSWER_NOTHING: answered by give_up or node_stop */
	unsigned key_calls, checkpoint_calls, page_calls, refused_calls;
	struct page_range pages[PAGES_SEEN_MAX];
};

struct fixture {
	char dir[64];
	char export_dir[96];
	char token_file[96];
	struct audit_key *key;   /* the site's key, which the auditor holds */
	struct audit_key *other; /* another key of the same name */
	struct api_client client;
	struct node node;
};

/* ---- the entries of the fake log ---- */

/* Entry index of the log into out: small JSON whose pad makes its length
 * cycle through every base64 padding, or exactly entry_len bytes. */
static int make_entry(uint64_t index, size_t entry_len, struct dm_buf *out)
{
	dm_buf_reset(out);
	if (entry_len == 0)
		return dm_buf_printf(
		    out, "{\"index\":%" PRIu64 ",\"action\":\"audit.test\",\"pad\":\"%.*s\"}",
		    index, (int)(index % 3), "xx");
	int rc = dm_buf_printf(out, "{\"index\":%" PRIu64 ",\"pad\":\"", index);
	while (rc == DM_OK && out->len < entry_len - 2)
		rc = dm_buf_append(out, "x", 1);
	if (rc == DM_OK)
		rc = dm_buf_append(out, "\"}", 2);
	return rc;
}

/* ---- the fake node (server thread) ---- */

static void reply(struct evhttp_request *req, int status, const char *type, const void *bytes,
                  size_t len)
{
	struct evbuffer *body = evbuffer_new();
	if (body)
		evbuffer_add(body, bytes, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_send_reply(req, status, NULL, body);
	if (body)
		evbuffer_free(body);
}

static void reply_json(struct evhttp_request *req, int status, const char *json)
{
	reply(req, status, "application/json", json, strlen(json));
}

static int query_u64(struct evkeyvalq *params, const char *name, uint64_t *out)
{
	const char *text = evhttp_find_header(params, name);
	if (!text || text[0] < '0' || text[0] > '9')
		return 0;
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno || *end)
		return 0;
	*out = value;
	return 1;
}

static void free_bytes(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

/* HUGE_PAGE_BYTES shaped like a page: {"entries":["AAAA…"]}. */
static struct evbuffer *huge_page(void)
{
	static const char head[] = "{\"entries\":[\"", tail[] = "\"]}";
	char *bytes = malloc(HUGE_PAGE_BYTES);
	struct evbuffer *body = evbuffer_new();
	if (!bytes || !body) {
		free(bytes);
		if (body)
			evbuffer_free(body);
		return NULL;
	}
	memset(bytes, 'A', HUGE_PAGE_BYTES);
	memcpy(bytes, head, sizeof head - 1);
	memcpy(bytes + HUGE_PAGE_BYTES - (sizeof tail - 1), tail, sizeof tail - 1);
	evbuffer_add_reference(body, bytes, HUGE_PAGE_BYTES, free_bytes, NULL);
	return body;
}

static void reply_huge(struct evhttp_request *req, int chunked)
{
	struct evbuffer *body = huge_page();
	if (!body) {
		reply_json(req, 500, "{\"error\": \"the fake node is out of memory\"}");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	if (!chunked) {
		evhttp_send_reply(req, 200, NULL, body);
	} else {
		/* Many chunks, so that the bound is met while reading the body,
		 * not from a length announced up front. */
		evhttp_send_reply_start(req, 200, NULL);
		struct evbuffer *chunk = evbuffer_new();
		while (chunk && evbuffer_get_length(body) > 0) {
			evbuffer_remove_buffer(body, chunk, HUGE_CHUNK_BYTES);
			evhttp_send_reply_chunk(req, chunk);
		}
		evhttp_send_reply_end(req);
		if (chunk)
			evbuffer_free(chunk);
	}
	evbuffer_free(body);
}

/* {"entries": [...]} of entries [start, end). */
static void reply_entries(struct node *node, struct evhttp_request *req, uint64_t start,
                          uint64_t end)
{
	struct evbuffer *body = evbuffer_new();
	struct dm_buf entry = {0}, b64 = {0};
	int rc = body ? evbuffer_add_printf(body, "{\"entries\": [") < 0 : -1;
	for (uint64_t i = start; rc == 0 && i < end; i++) {
		dm_buf_reset(&b64);
		rc = make_entry(i, node->entry_len, &entry);
		if (rc == DM_OK)
			rc = audit_base64_encode(entry.data, entry.len, &b64);
		if (rc == DM_OK)
			rc = evbuffer_add_printf(body, "%s\"%s\"", i > start ? ", " : "",
			                         (const char *)b64.data) < 0;
	}
	if (rc == 0)
		rc = evbuffer_add_printf(body, "]}\n") < 0;
	dm_buf_free(&entry);
	dm_buf_free(&b64);
	if (rc != 0) {
		reply_json(req, 500, "{\"error\": \"the fake node is out of memory\"}");
	} else {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		                  "application/json");
		evhttp_send_reply(req, 200, NULL, body);
	}
	if (body)
		evbuffer_free(body);
}

static void answer_page(struct node *node, struct evhttp_request *req, const char *query)
{
	struct evkeyvalq params;
	uint64_t start = 0, end = 0;
	int ok = query && evhttp_parse_query_str(query, &params) == 0;
	if (ok) {
		ok = query_u64(&params, "start", &start) && query_u64(&params, "end", &end);
		evhttp_clear_headers(&params);
	}
	/* The real node's rules: a range within the log, one page at most. */
	if (!ok || end < start || end - start > API_AUDIT_PAGE_MAX || end > node->size) {
		reply_json(req, 400, "{\"error\": \"bad range\"}");
		return;
	}
	if (node->page_calls < PAGES_SEEN_MAX)
		node->pages[node->page_calls] = (struct page_range){start, end};
	node->page_calls++;
	switch (start == node->fault_start ? node->answer : ANSWER_ENTRIES) {
	case ANSWER_ENTRIES:
		reply_entries(node, req, start, end);
		break;
	case ANSWER_ONE_SHORT:
		reply_entries(node, req, start, end > start ? end - 1 : end);
		break;
	case ANSWER_SERVER_ERROR:
		reply_json(req, 500, "{\"error\": \"bad\\u001b[2J\\r\\nthing\"}");
		break;
	case ANSWER_FORBIDDEN:
		reply_json(req, 403, "{\"error\": \"not an auditor\"}");
		break;
	case ANSWER_HUGE:
		reply_huge(req, 0);
		break;
	case ANSWER_HUGE_CHUNKED:
		reply_huge(req, 1);
		break;
	case ANSWER_NOTHING:
		if (node->held) {
			reply_json(req, 503, "{\"error\": \"busy\"}");
		} else {
			struct timeval hold = {HOLD_S, 0};
			node->held = req;
			evtimer_add(node->give_up, &hold);
		}
		break;
	}
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct node *node = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *auth =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (!auth || strcmp(auth, "Bearer " TOKEN) != 0) {
		node->refused_calls++;
		reply_json(req, 401, "{\"error\": \"no valid token\"}");
	} else if (!path || evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		reply_json(req, 404, "{\"error\": \"no such route\"}");
	} else if (strcmp(path, "/v1/audit/key") == 0) {
		node->key_calls++;
		reply(req, 200, "text/plain", node->key_text.data, node->key_text.len);
	} else if (strcmp(path, "/v1/audit/checkpoint") == 0) {
		node->checkpoint_calls++;
		reply(req, 200, "text/plain", node->checkpoint.data, node->checkpoint.len);
	} else if (strcmp(path, "/v1/audit/entries") == 0) {
		answer_page(node, req, evhttp_uri_get_query(uri));
	} else {
		reply_json(req, 404, "{\"error\": \"no such route\"}");
	}
}

/* The client kept waiting past its deadline: answered now, the fetch ends
 * with a status the case does not expect. */
static void on_give_up(evutil_socket_t fd, short what, void *arg)
{
	struct node *node = arg;
	if (node->held)
		evhttp_send_error(node->held, 503, NULL);
	node->held = NULL;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void *serve(void *arg)
{
	event_base_dispatch(arg);
	return NULL;
}

/* ---- the fake node (test thread) ---- */

/* The node serves verifier key_of's key and a checkpoint of size entries
 * signed by signer. */
static void node_serve(struct node *node, const struct audit_key *key_of,
                       const struct audit_key *signer, uint64_t size)
{
	static const uint8_t root[MERKLE_HASH_LEN] = {0x5a, 0x11, 0xed, 0x07};
	node->size = size;
	dm_buf_reset(&node->key_text);
	dm_buf_reset(&node->checkpoint);
	assert_int_equal(audit_verifier_format(audit_key_verifier(key_of), &node->key_text), DM_OK);
	assert_int_equal(dm_buf_append(&node->key_text, "\n", 1), DM_OK);
	assert_int_equal(audit_checkpoint_sign(signer, ORIGIN, size, root, CHECKPOINT_TIME_MS,
	                                       &node->checkpoint),
	                 DM_OK);
}

/* Listens on a free port of 127.0.0.1 and serves on a new thread; the
 * client (with the fixture's token) is pointed at it. */
static void node_start(struct fixture *f)
{
	struct node *node = &f->node;
	node->base = event_base_new();
	assert_non_null(node->base);
	node->http = evhttp_new(node->base);
	assert_non_null(node->http);
	evhttp_set_gencb(node->http, on_request, node);
	struct evhttp_bound_socket *bound =
	    evhttp_bind_socket_with_handle(node->http, "127.0.0.1", 0);
	assert_non_null(bound);
	struct sockaddr_in addr;
	socklen_t addr_len = sizeof addr;
	assert_int_equal(
	    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr, &addr_len), 0);
	node->port = ntohs(addr.sin_port);
	/* Activated from the test thread to stop the loop; unlike a
	 * loopbreak, an activation made before the loop runs is not lost. */
	node->stop = event_new(node->base, -1, 0, on_stop, node->base);
	assert_non_null(node->stop);
	node->give_up = evtimer_new(node->base, on_give_up, node);
	assert_non_null(node->give_up);
	assert_int_equal(pthread_create(&node->thread, NULL, serve, node->base), 0);
	node->running = 1;

	char url[64], err[256];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", node->port);
	assert_int_equal(api_client_init(&f->client, url, f->token_file, NULL, err, sizeof err),
	                 DM_OK);
}

/* Stops the server thread and frees the server; a request it kept is
 * answered (or, if its connection is gone, freed) first. Idempotent. */
static void node_stop(struct node *node)
{
	if (node->running) {
		event_active(node->stop, EV_READ, 0);
		pthread_join(node->thread, NULL);
		node->running = 0;
	}
	if (node->held) {
		evhttp_send_error(node->held, 503, NULL);
		node->held = NULL;
	}
	if (node->http)
		evhttp_free(node->http);
	if (node->stop)
		event_free(node->stop);
	if (node->give_up)
		event_free(node->give_up);
	if (node->base)
		event_base_free(node->base);
	node->http = NULL;
	node->stop = NULL;
	node->give_up = NULL;
	node->base = NULL;
}

/* ---- fixture ---- */

static int teardown(void **state);

/* cmocka runs no teardown after a failed setup: undo it here. */
static int undo_setup(void **state)
{
	teardown(state);
	*state = NULL;
	return -1;
}

static int setup(void **state)
{
	static const uint8_t seed[AUDIT_KEY_SEED_LEN] = {
	    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
	    0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
	    0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20};
	uint8_t other_seed[AUDIT_KEY_SEED_LEN];
	memset(other_seed, 0xa5, sizeof other_seed);
	struct fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	*state = f;
	snprintf(f->dir, sizeof f->dir, "/tmp/domicile-test-audit-fetch.XXXXXX");
	if (!mkdtemp(f->dir)) {
		f->dir[0] = '\0';
		return undo_setup(state);
	}
	snprintf(f->export_dir, sizeof f->export_dir, "%s/export", f->dir);
	snprintf(f->token_file, sizeof f->token_file, "%s/token", f->dir);
	FILE *token = fopen(f->token_file, "w");
	if (!token)
		return undo_setup(state);
	int written = fputs(TOKEN "\n", token) >= 0;
	if (fclose(token) != 0 || !written)
		return undo_setup(state);
	if (audit_key_from_seed(seed, KEY_NAME, &f->key) != DM_OK ||
	    audit_key_from_seed(other_seed, KEY_NAME, &f->other) != DM_OK)
		return undo_setup(state);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	node_stop(&f->node);
	dm_buf_free(&f->node.key_text);
	dm_buf_free(&f->node.checkpoint);
	audit_key_free(f->key);
	audit_key_free(f->other);
	int rc = 0;
	if (f->dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
		rc = system(cmd) == 0 ? 0 : -1;
	}
	free(f);
	return rc;
}

/* ---- helpers ---- */

static int fetch(struct fixture *f, const char *dir, uint64_t *size, char *err, size_t err_len)
{
	return audit_fetch(&f->client, audit_key_verifier(f->key), dir, size, err, err_len);
}

static int exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* The export is absent and nothing else was left beside the token. */
static void assert_no_export(const struct fixture *f)
{
	assert_false(exists(f->export_dir));
	DIR *dir = opendir(f->dir);
	assert_non_null(dir);
	struct dirent *ent;
	while ((ent = readdir(dir)) != NULL) {
		if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0)
			assert_string_equal(ent->d_name, "token");
	}
	closedir(dir);
}

/* The names in path, other than . and .., as "a,b," in sorted order. */
static void list_names(const char *path, char *out, size_t out_len)
{
	struct dirent **names;
	int count = scandir(path, &names, NULL, alphasort);
	assert_true(count >= 0);
	out[0] = '\0';
	for (int i = 0; i < count; i++) {
		if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
			size_t used = strlen(out);
			snprintf(out + used, out_len - used, "%s,", names[i]->d_name);
		}
		free(names[i]);
	}
	free(names);
}

static void assert_mode(const char *path, mode_t type, mode_t mode)
{
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & S_IFMT, type);
	assert_int_equal(st.st_mode & 07777, mode);
}

/* The export in dir is whole: the served checkpoint byte for byte, the
 * node's `size` entries in order, the modes, no ".part" left. */
static void assert_export(const struct fixture *f, const char *dir, uint64_t size)
{
	char path[160], err[256], names[256];
	list_names(dir, names, sizeof names);
	assert_string_equal(names, "checkpoint,entries.json,");
	assert_mode(dir, S_IFDIR, 0700);

	snprintf(path, sizeof path, "%s/checkpoint", dir);
	assert_mode(path, S_IFREG, 0600);
	struct dm_buf text = {0};
	assert_int_equal(dm_read_file(path, EXPORT_READ_MAX, &text, err, sizeof err), DM_OK);
	assert_int_equal(text.len, f->node.checkpoint.len);
	assert_memory_equal(text.data, f->node.checkpoint.data, text.len);

	snprintf(path, sizeof path, "%s/entries.json", dir);
	assert_mode(path, S_IFREG, 0600);
	dm_buf_reset(&text);
	assert_int_equal(dm_read_file(path, EXPORT_READ_MAX, &text, err, sizeof err), DM_OK);
	struct audit_entries entries = {0};
	assert_int_equal(audit_entries_add_export(&entries, text.len ? (const char *)text.data : "",
	                                          text.len, "entries.json", err, sizeof err),
	                 DM_OK);
	assert_int_equal(entries.count, size);
	struct dm_buf want = {0};
	for (uint64_t i = 0; i < size; i++) {
		const uint8_t *got;
		size_t len;
		audit_entries_get(&entries, i, &got, &len);
		assert_int_equal(make_entry(i, f->node.entry_len, &want), DM_OK);
		assert_int_equal(len, want.len);
		assert_memory_equal(got, want.data, len);
	}
	dm_buf_free(&want);
	audit_entries_free(&entries);
	dm_buf_free(&text);
}

/* The node was asked for pages [0, 1000), [1000, 2000), ... up to size. */
static void assert_pages(const struct node *node, uint64_t size)
{
	uint64_t pages = (size + API_AUDIT_PAGE_MAX - 1) / API_AUDIT_PAGE_MAX;
	assert_int_equal(node->page_calls, pages);
	for (uint64_t i = 0; i < pages && i < PAGES_SEEN_MAX; i++) {
		uint64_t end = (i + 1) * API_AUDIT_PAGE_MAX;
		assert_int_equal(node->pages[i].start, i * API_AUDIT_PAGE_MAX);
		assert_int_equal(node->pages[i].end, end < size ? end : size);
	}
}

/* A fetch of a 2500-entry log whose second page the node answers with
 * `answer`: audit_fetch's status, with the message in err. */
static int fetch_with_fault(struct fixture *f, enum answer answer, char *err, size_t err_len)
{
	f->node.answer = answer;
	f->node.fault_start = API_AUDIT_PAGE_MAX;
	node_serve(&f->node, f->key, f->key, 2500);
	node_start(f);
	uint64_t size = 99;
	int rc = fetch(f, f->export_dir, &size, err, err_len);
	node_stop(&f->node);
	assert_int_equal(size, 0);
	/* The first page came and was written before the fault. */
	assert_int_equal(f->node.page_calls, 2);
	return rc;
}

/* ---- cases ---- */

static void test_fetch_exports_every_entry_the_checkpoint_signs(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	node_serve(&f->node, f->key, f->key, 2500);
	node_start(f);
	uint64_t size = 0;
	int rc = fetch(f, f->export_dir, &size, err, sizeof err);
	node_stop(&f->node);
	if (rc != DM_OK)
		print_error("audit_fetch: %s\n", err);
	assert_int_equal(rc, DM_OK);
	assert_int_equal(size, 2500);
	assert_int_equal(f->node.key_calls, 1);
	assert_int_equal(f->node.checkpoint_calls, 1);
	assert_pages(&f->node, 2500);
	assert_export(f, f->export_dir, 2500);
}

/* Around the page limit: no page for an empty log, one for up to
 * API_AUDIT_PAGE_MAX entries, two from one more. */
static void test_fetch_splits_pages_at_the_page_limit(void **state)
{
	static const uint64_t sizes[] = {0, 1, API_AUDIT_PAGE_MAX - 1, API_AUDIT_PAGE_MAX,
	                                 API_AUDIT_PAGE_MAX + 1};
	struct fixture *f = *state;
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		char dir[128], err[512] = "";
		snprintf(dir, sizeof dir, "%s/export-%" PRIu64, f->dir, sizes[i]);
		f->node.page_calls = 0;
		node_serve(&f->node, f->key, f->key, sizes[i]);
		node_start(f);
		uint64_t size = 99;
		int rc = fetch(f, dir, &size, err, sizeof err);
		node_stop(&f->node);
		if (rc != DM_OK)
			print_error("audit_fetch of %" PRIu64 ": %s\n", sizes[i], err);
		assert_int_equal(rc, DM_OK);
		assert_int_equal(size, sizes[i]);
		assert_pages(&f->node, sizes[i]);
		assert_export(f, dir, sizes[i]);
	}
}

/* The bound of a page leaves room for a page of the largest entries. */
static void test_fetch_takes_a_full_page_of_the_largest_entries(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	f->node.entry_len = AUDIT_ENTRY_MAX;
	node_serve(&f->node, f->key, f->key, API_AUDIT_PAGE_MAX);
	node_start(f);
	uint64_t size = 0;
	int rc = fetch(f, f->export_dir, &size, err, sizeof err);
	node_stop(&f->node);
	if (rc != DM_OK)
		print_error("audit_fetch: %s\n", err);
	assert_int_equal(rc, DM_OK);
	assert_int_equal(size, API_AUDIT_PAGE_MAX);
	assert_pages(&f->node, API_AUDIT_PAGE_MAX);
	assert_export(f, f->export_dir, API_AUDIT_PAGE_MAX);
}

static void test_fetch_refuses_a_directory_that_exists(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", names[256];
	assert_int_equal(mkdir(f->export_dir, 0755), 0);
	struct stat before, after;
	assert_int_equal(lstat(f->export_dir, &before), 0);
	node_serve(&f->node, f->key, f->key, 2500);
	node_start(f);
	uint64_t size = 99;
	int rc = fetch(f, f->export_dir, &size, err, sizeof err);
	node_stop(&f->node);
	assert_int_equal(rc, DM_ERR_EXISTS);
	assert_int_equal(size, 0);
	assert_non_null(strstr(err, "exists"));
	assert_int_equal(f->node.page_calls, 0);
	list_names(f->export_dir, names, sizeof names);
	assert_string_equal(names, "");
	assert_int_equal(lstat(f->export_dir, &after), 0);
	assert_int_equal(after.st_mode, before.st_mode);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	assert_int_equal(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
	assert_int_equal(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
}

/* Starts the node as served, fetches, and checks the fetch was refused for
 * its key or checkpoint: DM_ERR_CRYPTO before any page, nothing left. */
static void assert_refused_before_pages(struct fixture *f)
{
	char err[512] = "";
	node_start(f);
	uint64_t size = 99;
	int rc = fetch(f, f->export_dir, &size, err, sizeof err);
	node_stop(&f->node);
	assert_int_equal(rc, DM_ERR_CRYPTO);
	assert_int_equal(size, 0);
	/* An unsigned size, or another log's, decides nothing. */
	assert_int_equal(f->node.page_calls, 0);
	assert_no_export(f);
}

static void test_fetch_refuses_a_node_with_another_key(void **state)
{
	struct fixture *f = *state;
	node_serve(&f->node, f->other, f->key, 2500);
	assert_refused_before_pages(f);
	/* Nothing is fetched from a node that is not the one audited. */
	assert_int_equal(f->node.checkpoint_calls, 0);
}

static void test_fetch_refuses_a_checkpoint_signed_by_another_key(void **state)
{
	struct fixture *f = *state;
	node_serve(&f->node, f->key, f->other, 2500);
	assert_refused_before_pages(f);
}

/* The site's key, signing a checkpoint of another log than the site's
 * audit log: not the export asked for. */
static void test_fetch_refuses_a_checkpoint_of_another_log(void **state)
{
	struct fixture *f = *state;
	static const uint8_t root[MERKLE_HASH_LEN] = {0x5a};
	node_serve(&f->node, f->key, f->key, 10);
	dm_buf_reset(&f->node.checkpoint);
	assert_int_equal(audit_checkpoint_sign(f->key, KEY_NAME "/exports", 10, root,
	                                       CHECKPOINT_TIME_MS, &f->node.checkpoint),
	                 DM_OK);
	assert_refused_before_pages(f);
}

static void test_fetch_leaves_nothing_when_a_page_is_one_entry_short(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	assert_int_equal(fetch_with_fault(f, ANSWER_ONE_SHORT, err, sizeof err), DM_ERR_MALFORMED);
	assert_non_null(strstr(err, "999 entries, not 1000"));
	assert_no_export(f);
}

static void test_fetch_reports_a_server_error_in_printable_text(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	assert_int_equal(fetch_with_fault(f, ANSWER_SERVER_ERROR, err, sizeof err),
	                 DM_ERR_MALFORMED);
	assert_non_null(strstr(err, "HTTP 500"));
	for (const char *c = err; *c; c++) {
		assert_true((unsigned char)*c >= 0x20);
		assert_true((unsigned char)*c <= 0x7e);
	}
	assert_non_null(strstr(err, "bad?[2J??thing"));
	assert_no_export(f);
}

static void test_fetch_reports_a_forbidden_page_as_denied(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	assert_int_equal(fetch_with_fault(f, ANSWER_FORBIDDEN, err, sizeof err), DM_ERR_DENIED);
	assert_non_null(strstr(err, "HTTP 403"));
	assert_no_export(f);
}

static void test_fetch_reports_a_wrong_token_as_denied(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	node_serve(&f->node, f->key, f->key, 2500);
	node_start(f);
	snprintf(f->client.token, sizeof f->client.token, "not-the-token");
	uint64_t size = 99;
	int rc = fetch(f, f->export_dir, &size, err, sizeof err);
	node_stop(&f->node);
	assert_int_equal(rc, DM_ERR_DENIED);
	assert_int_equal(f->node.refused_calls, 1);
	assert_no_export(f);
}

static void test_fetch_drops_a_page_over_its_bound(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	assert_int_equal(fetch_with_fault(f, ANSWER_HUGE, err, sizeof err), DM_ERR_TOO_LARGE);
	assert_no_export(f);
}

static void test_fetch_drops_a_chunked_page_over_its_bound(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	assert_int_equal(fetch_with_fault(f, ANSWER_HUGE_CHUNKED, err, sizeof err),
	                 DM_ERR_TOO_LARGE);
	assert_no_export(f);
}

static void test_fetch_gives_up_on_a_node_that_never_answers(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	f->node.answer = ANSWER_NOTHING;
	f->node.fault_start = API_AUDIT_PAGE_MAX;
	node_serve(&f->node, f->key, f->key, 2500);
	node_start(f);
	f->client.deadline_s = 1;
	uint64_t size = 99;
	int rc = fetch(f, f->export_dir, &size, err, sizeof err);
	/* Read before node_stop answers the kept request. */
	assert_int_equal(rc, DM_ERR_IO);
	assert_int_equal(size, 0);
	assert_no_export(f);
	node_stop(&f->node);
	assert_int_equal(f->node.page_calls, 2);
}

/* No token in clear off this machine; https may go anywhere. */
static void test_client_sends_plain_http_only_to_loopback(void **state)
{
	struct fixture *f = *state;
	struct api_client client;
	char err[512] = "";
	assert_int_equal(
	    api_client_init(&client, "http://10.1.2.3:8080", f->token_file, NULL, err, sizeof err),
	    DM_ERR_INVALID);
	assert_non_null(strstr(err, "10.1.2.3"));
	err[0] = '\0';
	assert_int_equal(
	    api_client_init(&client, "https://10.1.2.3:8080", f->token_file, NULL, err, sizeof err),
	    DM_OK);
	assert_true(client.https);
	assert_string_equal(client.host, "10.1.2.3");
	assert_int_equal(client.port, 8080);
	assert_string_equal(client.token, TOKEN);
}

int main(void)
{
	/* Before any event base: the fake node's base is stopped from the
	 * test thread. */
	evthread_use_pthreads();
	/* A client that drops a huge answer closes while the node writes. */
	signal(SIGPIPE, SIG_IGN);
	dm_log_set_level(DM_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fetch_exports_every_entry_the_checkpoint_signs,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_splits_pages_at_the_page_limit, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_takes_a_full_page_of_the_largest_entries,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_refuses_a_checkpoint_of_another_log, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_refuses_a_directory_that_exists, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_refuses_a_node_with_another_key, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_refuses_a_checkpoint_signed_by_another_key,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_fetch_leaves_nothing_when_a_page_is_one_entry_short, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_reports_a_server_error_in_printable_text,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_reports_a_forbidden_page_as_denied, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_reports_a_wrong_token_as_denied, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_drops_a_page_over_its_bound, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_drops_a_chunked_page_over_its_bound, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_gives_up_on_a_node_that_never_answers, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_client_sends_plain_http_only_to_loopback, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
