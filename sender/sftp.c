/*
 * sftp.c - a pipelined SFTP version 3 client.  See sftp.h.
 *
 * Requests are appended to an output buffer and written to the channel in
 * large pieces; replies are read into an input buffer and dispatched by
 * request id through a table of pending requests.  The number of requests
 * and bytes in flight is bounded, so the replies we owe a read always fit
 * in libssh's channel window and neither side can stall the other.
 */
#include "sftp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Packet types (draft-ietf-secsh-filexfer-02). */
enum {
    FXP_INIT = 1,
    FXP_VERSION = 2,
    FXP_OPEN = 3,
    FXP_CLOSE = 4,
    FXP_WRITE = 6,
    FXP_LSTAT = 7,
    FXP_REMOVE = 13,
    FXP_RENAME = 18,
    FXP_STATUS = 101,
    FXP_HANDLE = 102,
    FXP_ATTRS = 105,
    FXP_EXTENDED = 200,
    FXP_EXTENDED_REPLY = 201,
};
enum { FXF_READ = 0x01, FXF_WRITE = 0x02, FXF_CREAT = 0x08, FXF_EXCL = 0x20 };
enum { ATTR_SIZE = 0x01, ATTR_UIDGID = 0x02, ATTR_PERMISSIONS = 0x04, ATTR_ACMODTIME = 0x08 };

#define PENDING_CAP 1024u         /* requests in flight at most */
#define HANDLES_DEFAULT 64u       /* files open at once without limits@openssh.com */
#define HANDLES_MAX 256u          /* ... and with it */
#define WRITE_DEFAULT 32768u      /* bytes per write every server takes */
#define WRITE_MAX (255u * 1024u)  /* OpenSSH's limit is 256 KiB per packet */
#define INFLIGHT_BYTES (8u << 20) /* unacknowledged write data */
#define OUT_FLUSH (256u * 1024u)  /* write the output buffer to the channel past this */
#define PACKET_MAX (256u * 1024u) /* largest reply accepted */

/* What a pending request was for. */
enum req_kind { REQ_NONE, REQ_OPEN, REQ_WRITE, REQ_FSYNC, REQ_CLOSE, REQ_OP, REQ_LIMITS };

struct pending {
    uint32_t id;
    uint8_t kind; /* enum req_kind; REQ_NONE when free */
    uint32_t item;
    uint32_t bytes; /* write: data length */
};

struct buf {
    unsigned char *p;
    size_t len, cap;
};

struct ss_sftp {
    ssh_session session;
    ssh_channel ch;
    int timeout_ms;
    bool failed;
    char failure[300];
    uint32_t next_id;
    size_t in_flight; /* requests */
    uint64_t bytes_in_flight;
    struct pending pend[PENDING_CAP];
    struct buf out, in;
    bool has_fsync, has_limits;
    uint32_t write_len;
    unsigned max_handles;
    /* the batch being run */
    ss_sftp_put *puts;
    ss_sftp_op *ops;
    enum ss_sftp_opkind op_kind;
    unsigned handles_open;
    bool stop_opening;
    /* a folder sync: its handle, kept for the session */
    char dir_path[1100];
    char dir_handle[256];
    uint32_t dir_handle_len;
    int dir_status;
};

/* -------------------------------------------------------------- buffers */

static int buf_reserve(struct buf *b, size_t more)
{
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more)
        cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A request being composed at the end of the output buffer. */
struct packet {
    struct buf *b;
    size_t start;
    bool nomem;
};

static void pk_bytes(struct packet *k, const void *data, size_t len)
{
    if (k->nomem || buf_reserve(k->b, len) != 0) {
        k->nomem = true;
        return;
    }
    memcpy(k->b->p + k->b->len, data, len);
    k->b->len += len;
}

static void pk_u32(struct packet *k, uint32_t v)
{
    unsigned char p[4];
    put_u32(p, v);
    pk_bytes(k, p, 4);
}

static void pk_u64(struct packet *k, uint64_t v)
{
    pk_u32(k, (uint32_t)(v >> 32));
    pk_u32(k, (uint32_t)v);
}

static void pk_str(struct packet *k, const void *s, size_t len)
{
    pk_u32(k, (uint32_t)len);
    pk_bytes(k, s, len);
}

static void pk_begin(struct packet *k, struct buf *b, uint8_t type)
{
    k->b = b;
    k->start = b->len;
    k->nomem = false;
    pk_u32(k, 0); /* length, set at the end */
    pk_bytes(k, &type, 1);
}

static int pk_end(ss_sftp *c, struct packet *k)
{
    if (k->nomem) {
        c->out.len = k->start;
        c->failed = true;
        snprintf(c->failure, sizeof c->failure, "out of memory composing an SFTP request");
        return -1;
    }
    put_u32(c->out.p + k->start, (uint32_t)(c->out.len - k->start - 4));
    return 0;
}

/* ------------------------------------------------------------ the channel */

/* Ends the session's usefulness: what, then detail when given. */
static int fail(ss_sftp *c, const char *what, const char *detail)
{
    if (!c->failed) {
        c->failed = true;
        snprintf(c->failure, sizeof c->failure, "%s%s%s", what, detail ? ": " : "",
                 detail ? detail : "");
    }
    return -1;
}

static int flush_out(ss_sftp *c)
{
    size_t off = 0;
    while (off < c->out.len && !c->failed) {
        size_t chunk = c->out.len - off > 65536 ? 65536 : c->out.len - off;
        int n = ssh_channel_write(c->ch, c->out.p + off, (uint32_t)chunk);
        if (n == SSH_ERROR || n <= 0)
            return fail(c, "the SFTP connection failed while sending", ssh_get_error(c->session));
        off += (size_t)n;
    }
    c->out.len = 0;
    return c->failed ? -1 : 0;
}

/* Reads what the channel has; waits up to the timeout when block. */
static int read_in(ss_sftp *c, bool block)
{
    if (buf_reserve(&c->in, 65536) != 0) return fail(c, "out of memory reading SFTP replies", NULL);
    int n = block ? ssh_channel_read_timeout(c->ch, c->in.p + c->in.len, 65536, 0, c->timeout_ms)
                  : ssh_channel_read_nonblocking(c->ch, c->in.p + c->in.len, 65536, 0);
    if (n == SSH_EOF || (n < 0 && ssh_channel_is_eof(c->ch)))
        return fail(c, "the SFTP server closed the connection", NULL);
    if (n < 0) return fail(c, "the SFTP connection failed", ssh_get_error(c->session));
    if (n == 0 && block) {
        if (ssh_channel_is_eof(c->ch) || ssh_channel_is_closed(c->ch))
            return fail(c, "the SFTP server closed the connection", NULL);
        char t[64];
        snprintf(t, sizeof t, "the SFTP server did not answer within %d s", c->timeout_ms / 1000);
        return fail(c, t, NULL);
    }
    if (n > 0) c->in.len += (size_t)n;
    return 0;
}

/* ------------------------------------------------------------- requests */

/* A free id whose slot is free, or 0 when the table is full. */
static bool reserve_slot(ss_sftp *c, uint32_t *id)
{
    if (c->in_flight >= PENDING_CAP) return false;
    uint32_t candidate = c->next_id;
    if (c->pend[candidate % PENDING_CAP].kind != REQ_NONE) return false;
    c->next_id++;
    *id = candidate;
    return true;
}

static void track(ss_sftp *c, uint32_t id, enum req_kind kind, uint32_t item, uint32_t bytes)
{
    struct pending *p = &c->pend[id % PENDING_CAP];
    p->id = id;
    p->kind = (uint8_t)kind;
    p->item = item;
    p->bytes = bytes;
    c->in_flight++;
    c->bytes_in_flight += bytes;
}

/* A request with a handle and nothing else (close), or an extension
 * naming one (fsync@openssh.com). */
static int send_handle_request(ss_sftp *c, enum req_kind kind, uint32_t item, const char *handle,
                               uint32_t handle_len)
{
    uint32_t id;
    if (!reserve_slot(c, &id)) return 1;
    struct packet k;
    pk_begin(&k, &c->out, kind == REQ_CLOSE ? FXP_CLOSE : FXP_EXTENDED);
    pk_u32(&k, id);
    if (kind == REQ_FSYNC) pk_str(&k, "fsync@openssh.com", strlen("fsync@openssh.com"));
    pk_str(&k, handle, handle_len);
    if (pk_end(c, &k) != 0) return -1;
    track(c, id, kind, item, 0);
    return 0;
}

static int send_open(ss_sftp *c, uint32_t item, const char *path, uint32_t pflags, uint32_t mode)
{
    uint32_t id;
    if (!reserve_slot(c, &id)) return 1;
    struct packet k;
    pk_begin(&k, &c->out, FXP_OPEN);
    pk_u32(&k, id);
    pk_str(&k, path, strlen(path));
    pk_u32(&k, pflags);
    pk_u32(&k, mode ? ATTR_PERMISSIONS : 0);
    if (mode) pk_u32(&k, mode);
    if (pk_end(c, &k) != 0) return -1;
    track(c, id, REQ_OPEN, item, 0);
    return 0;
}

/* ------------------------------------------------------------- replies */

struct reply {
    uint8_t type;
    uint32_t id;
    const unsigned char *body; /* after the id */
    uint32_t len;
};

/* Status code and message of an FXP_STATUS reply. */
static int parse_status(const struct reply *r, char *msg, size_t msg_len)
{
    if (r->len < 4) return SS_FX_FAILURE;
    uint32_t code = get_u32(r->body);
    msg[0] = '\0';
    if (r->len >= 8) {
        uint32_t n = get_u32(r->body + 4);
        if (n <= r->len - 8) {
            size_t shown = n < msg_len - 1 ? n : msg_len - 1;
            for (size_t i = 0; i < shown; i++) {
                unsigned char ch = r->body[8 + i];
                msg[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
            }
            msg[shown] = '\0';
        }
    }
    return (int)code;
}

static const char *status_word(int code)
{
    switch (code) {
    case 1:
        return "end of file";
    case 2:
        return "no such file";
    case 3:
        return "permission denied";
    case 4:
        return "failure";
    case 5:
        return "bad message";
    case 8:
        return "operation unsupported";
    default:
        return "error";
    }
}

/* Records the first failure of an upload. */
static void put_failed(ss_sftp_put *f, int code, const char *what, const char *msg)
{
    if (f->status != SS_FX_OK) return;
    f->status = code ? code : SS_FX_FAILURE;
    snprintf(f->error, sizeof f->error, "%s %s: %s%s%s", what, f->path, status_word(code),
             msg[0] ? " - " : "", msg);
}

enum { PH_IDLE, PH_OPENING, PH_WRITING, PH_SYNCING, PH_CLOSING, PH_DONE };

static int on_put_reply(ss_sftp *c, const struct pending *p, const struct reply *r)
{
    ss_sftp_put *f = &c->puts[p->item];
    char msg[120];
    if (p->kind == REQ_OPEN) {
        if (r->type == FXP_HANDLE && r->len >= 4 && get_u32(r->body) <= 256 &&
            get_u32(r->body) + 4 <= r->len) {
            f->handle_len = get_u32(r->body);
            memcpy(f->handle, r->body + 4, f->handle_len);
            f->created = true;
            f->phase = PH_WRITING;
            return 0;
        }
        if (r->type != FXP_STATUS) return fail(c, "the SFTP server answered an open oddly", NULL);
        put_failed(f, parse_status(r, msg, sizeof msg), "cannot create", msg);
        f->phase = PH_DONE;
        c->handles_open--;
        c->stop_opening = true;
        return 0;
    }
    if (r->type != FXP_STATUS) return fail(c, "the SFTP server answered a write oddly", NULL);
    int code = parse_status(r, msg, sizeof msg);
    if (p->kind == REQ_WRITE) {
        f->acks_due--;
        if (code != SS_FX_OK) put_failed(f, code, "cannot write", msg);
    } else if (p->kind == REQ_FSYNC) {
        if (code != SS_FX_OK) put_failed(f, code, "cannot fsync", msg);
    } else if (p->kind == REQ_CLOSE) {
        if (code != SS_FX_OK) put_failed(f, code, "cannot close", msg);
        f->phase = PH_DONE;
        f->done = f->status == SS_FX_OK;
    }
    if (f->status != SS_FX_OK) c->stop_opening = true;
    return 0;
}

static int on_op_reply(ss_sftp *c, const struct pending *p, const struct reply *r)
{
    ss_sftp_op *op = &c->ops[p->item];
    if (c->op_kind == SS_SFTP_LSTAT && r->type == FXP_ATTRS) {
        op->status = SS_FX_OK;
        op->exists = true;
        if (r->len >= 12 && (get_u32(r->body) & ATTR_SIZE))
            op->size = (uint64_t)get_u32(r->body + 4) << 32 | get_u32(r->body + 8);
        return 0;
    }
    if (r->type != FXP_STATUS) return fail(c, "the SFTP server answered a request oddly", NULL);
    char msg[120];
    int code = parse_status(r, msg, sizeof msg);
    op->status = code;
    if (c->op_kind == SS_SFTP_LSTAT && code == SS_FX_NO_SUCH_FILE) {
        op->status = SS_FX_OK;
        op->exists = false;
    } else if (code != SS_FX_OK) {
        snprintf(op->error, sizeof op->error, "%s: %s%s%s", op->from, status_word(code),
                 msg[0] ? " - " : "", msg);
    }
    return 0;
}

static int on_misc_reply(ss_sftp *c, const struct pending *p, const struct reply *r)
{
    char msg[120];
    if (p->kind == REQ_LIMITS) { /* max packet, read, write, open handles */
        if (r->type == FXP_EXTENDED_REPLY && r->len >= 32) {
            uint64_t max_write = (uint64_t)get_u32(r->body + 16) << 32 | get_u32(r->body + 20);
            uint64_t handles = (uint64_t)get_u32(r->body + 24) << 32 | get_u32(r->body + 28);
            if (max_write >= 1024)
                c->write_len = max_write < WRITE_MAX ? (uint32_t)max_write : WRITE_MAX;
            if (handles >= 8)
                c->max_handles = handles / 2 < HANDLES_MAX ? (unsigned)(handles / 2) : HANDLES_MAX;
        }
        return 0;
    }
    /* a folder sync: open, fsync, close */
    if (p->kind == REQ_OPEN && r->type == FXP_HANDLE && r->len >= 4 && get_u32(r->body) <= 256 &&
        get_u32(r->body) + 4 <= r->len) {
        c->dir_handle_len = get_u32(r->body);
        memcpy(c->dir_handle, r->body + 4, c->dir_handle_len);
        return 0;
    }
    if (r->type != FXP_STATUS) return fail(c, "the SFTP server answered a request oddly", NULL);
    int code = parse_status(r, msg, sizeof msg);
    if (code != SS_FX_OK && c->dir_status == SS_FX_OK) c->dir_status = code;
    return 0;
}

/* Dispatches one complete reply packet. */
static int dispatch(ss_sftp *c, const unsigned char *pkt, uint32_t len)
{
    if (len < 5) return fail(c, "the SFTP server sent a short packet", NULL);
    struct reply r = {.type = pkt[0], .id = get_u32(pkt + 1), .body = pkt + 5, .len = len - 5};
    struct pending *p = &c->pend[r.id % PENDING_CAP];
    if (p->kind == REQ_NONE || p->id != r.id)
        return fail(c, "the SFTP server answered a request that was not made", NULL);
    struct pending done = *p;
    p->kind = REQ_NONE;
    c->in_flight--;
    c->bytes_in_flight -= done.bytes;
    if (c->puts && done.item != UINT32_MAX) return on_put_reply(c, &done, &r);
    if (c->ops && done.item != UINT32_MAX) return on_op_reply(c, &done, &r);
    return on_misc_reply(c, &done, &r);
}

/* Handles every complete packet in the input buffer. */
static int drain(ss_sftp *c)
{
    size_t off = 0;
    while (!c->failed && c->in.len - off >= 4) {
        uint32_t len = get_u32(c->in.p + off);
        if (len > PACKET_MAX) return fail(c, "the SFTP server sent an oversized packet", NULL);
        if (c->in.len - off - 4 < len) break;
        if (dispatch(c, c->in.p + off + 4, len) != 0) return -1;
        off += 4 + (size_t)len;
    }
    memmove(c->in.p, c->in.p + off, c->in.len - off);
    c->in.len -= off;
    return c->failed ? -1 : 0;
}

/* Sends what is composed and handles replies; waits for at least one
 * when block. */
static int pump(ss_sftp *c, bool block)
{
    if (flush_out(c) != 0) return -1;
    size_t before = c->in_flight;
    if (read_in(c, false) != 0 || drain(c) != 0) return -1;
    while (block && c->in_flight == before && c->in_flight > 0) {
        if (read_in(c, true) != 0 || drain(c) != 0) return -1;
    }
    return 0;
}

/* Waits for every request in flight. */
static int settle(ss_sftp *c)
{
    while (c->in_flight > 0 && !c->failed)
        if (pump(c, true) != 0) return -1;
    return c->failed ? -1 : 0;
}

/* --------------------------------------------------------------- session */

static int parse_version(ss_sftp *c, const unsigned char *p, uint32_t len)
{
    if (len < 5 || p[0] != FXP_VERSION) return fail(c, "the server does not speak SFTP", NULL);
    if (get_u32(p + 1) < 3)
        return fail(c, "the SFTP server speaks a protocol version older than 3", NULL);
    uint32_t off = 5;
    while (off + 4 <= len) { /* extension name, data */
        uint32_t n = get_u32(p + off);
        if (n > len - off - 4) break;
        const char *name = (const char *)p + off + 4;
        if (n == strlen("fsync@openssh.com") && !memcmp(name, "fsync@openssh.com", n))
            c->has_fsync = true;
        if (n == strlen("limits@openssh.com") && !memcmp(name, "limits@openssh.com", n))
            c->has_limits = true;
        off += 4 + n;
        if (off + 4 > len) break;
        uint32_t d = get_u32(p + off);
        if (d > len - off - 4) break;
        off += 4 + d;
    }
    return 0;
}

static int handshake(ss_sftp *c)
{
    struct packet k;
    pk_begin(&k, &c->out, FXP_INIT);
    pk_u32(&k, 3);
    if (pk_end(c, &k) != 0 || flush_out(c) != 0) return -1;
    while (!c->failed) {
        if (c->in.len >= 4) {
            uint32_t len = get_u32(c->in.p);
            if (len > PACKET_MAX) return fail(c, "the server does not speak SFTP", NULL);
            if (c->in.len - 4 >= len) {
                int rc = parse_version(c, c->in.p + 4, len);
                memmove(c->in.p, c->in.p + 4 + len, c->in.len - 4 - len);
                c->in.len -= 4 + len;
                return rc;
            }
        }
        if (read_in(c, true) != 0) return -1;
    }
    return -1;
}

/* Asks limits@openssh.com for the largest write and the open-file limit. */
static int ask_limits(ss_sftp *c)
{
    uint32_t id;
    if (!c->has_limits || !reserve_slot(c, &id)) return 0;
    struct packet k;
    pk_begin(&k, &c->out, FXP_EXTENDED);
    pk_u32(&k, id);
    pk_str(&k, "limits@openssh.com", strlen("limits@openssh.com"));
    if (pk_end(c, &k) != 0) return -1;
    track(c, id, REQ_LIMITS, UINT32_MAX, 0);
    return settle(c);
}

int ss_sftp_start(ssh_session session, int timeout_ms, ss_sftp **out, ss_error *e)
{
    ss_sftp *c = calloc(1, sizeof *c);
    if (!c) return ss_err(e, SS_E_NOMEM, "out of memory");
    c->session = session;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    c->write_len = WRITE_DEFAULT;
    c->max_handles = HANDLES_DEFAULT;
    c->next_id = 1;
    c->ch = ssh_channel_new(session);
    if (!c->ch || ssh_channel_open_session(c->ch) != SSH_OK ||
        ssh_channel_request_subsystem(c->ch, "sftp") != SSH_OK) {
        ss_err(e, SS_E_IO, "the server refused the sftp subsystem: %s", ssh_get_error(session));
        ss_sftp_end(c);
        return -1;
    }
    if (handshake(c) != 0 || ask_limits(c) != 0) {
        ss_err(e, SS_E_IO, "%s", c->failure);
        ss_sftp_end(c);
        return -1;
    }
    *out = c;
    return 0;
}

void ss_sftp_end(ss_sftp *c)
{
    if (!c) return;
    if (c->ch) {
        if (!c->failed && ssh_channel_is_open(c->ch)) {
            (void)ssh_channel_send_eof(c->ch);
            (void)ssh_channel_close(c->ch);
        }
        ssh_channel_free(c->ch);
    }
    free(c->out.p);
    free(c->in.p);
    free(c);
}

bool ss_sftp_can_fsync(const ss_sftp *c)
{
    return c->has_fsync;
}

bool ss_sftp_alive(const ss_sftp *c)
{
    return !c->failed;
}

/* --------------------------------------------------------------- uploads */

/* Sends the next write of f (1: nothing more now, 0: sent, -1: failed). */
static int send_write(ss_sftp *c, uint32_t item, ss_sftp_put *f)
{
    uint64_t left = f->size - f->sent;
    uint32_t len = left < c->write_len ? (uint32_t)left : c->write_len;
    uint32_t id;
    if (c->bytes_in_flight + len > INFLIGHT_BYTES || !reserve_slot(c, &id)) return 1;
    struct packet k;
    pk_begin(&k, &c->out, FXP_WRITE);
    pk_u32(&k, id);
    pk_str(&k, f->handle, f->handle_len);
    pk_u64(&k, f->sent);
    pk_u32(&k, len);
    if (k.nomem || buf_reserve(&c->out, len) != 0) {
        k.nomem = true;
        return pk_end(c, &k);
    }
    ssize_t got = pread(f->fd, c->out.p + c->out.len, len, (off_t)f->sent);
    if (got != (ssize_t)len) {
        c->out.len = k.start;
        put_failed(f, SS_FX_FAILURE, "cannot read the local copy of",
                   got < 0 ? strerror(errno) : "it is shorter than when it was queued");
        c->stop_opening = true;
        f->sent = f->size; /* close it without further writes */
        return 0;
    }
    c->out.len += len;
    if (pk_end(c, &k) != 0) return -1;
    track(c, id, REQ_WRITE, item, len);
    f->sent += len;
    f->acks_due++;
    return 0;
}

/* The next thing to send for f: open, a write, or fsync + close. */
static int advance_put(ss_sftp *c, uint32_t item, ss_sftp_put *f)
{
    if (f->phase == PH_IDLE) {
        if (c->stop_opening) {
            f->phase = PH_DONE;
            return 0;
        }
        if (c->handles_open >= c->max_handles) return 1;
        int rc = send_open(c, item, f->path, FXF_WRITE | FXF_CREAT | FXF_EXCL, 0640);
        if (rc == 0) {
            f->phase = PH_OPENING;
            c->handles_open++; /* counted from the request: replies come later */
        }
        return rc;
    }
    if (f->phase == PH_WRITING && f->sent < f->size && f->status == SS_FX_OK)
        return send_write(c, item, f);
    /* The server handles one file's requests in order: fsync and close
     * follow the writes without waiting for their replies. */
    if (f->phase == PH_WRITING && c->has_fsync && f->status == SS_FX_OK) {
        int rc = send_handle_request(c, REQ_FSYNC, item, f->handle, f->handle_len);
        if (rc == 0) f->phase = PH_SYNCING;
        return rc;
    }
    if (f->phase != PH_WRITING && f->phase != PH_SYNCING) return 1;
    int rc = send_handle_request(c, REQ_CLOSE, item, f->handle, f->handle_len);
    if (rc == 0) {
        f->phase = PH_CLOSING;
        /* The server handles the channel's requests in order: it has closed
         * this file before it reads our next OPEN, so the handle counts as
         * free now (and max_handles is half the server's limit anyway). */
        c->handles_open--;
    }
    return rc;
}

/* Sends as much as the bounds allow; 1 when nothing could be sent. */
static int send_puts(ss_sftp *c, ss_sftp_put *files, size_t n, size_t *first_open)
{
    bool sent_any = false;
    while (*first_open < n && files[*first_open].phase == PH_DONE)
        (*first_open)++;
    for (size_t i = *first_open; i < n && !c->failed; i++) {
        int rc;
        while ((rc = advance_put(c, (uint32_t)i, &files[i])) == 0) {
            sent_any = true;
            if (c->out.len >= OUT_FLUSH && flush_out(c) != 0) return -1;
        }
        if (rc < 0) return -1;
        if (files[i].phase == PH_IDLE && c->handles_open >= c->max_handles) break;
        if (c->in_flight >= PENDING_CAP || c->bytes_in_flight >= INFLIGHT_BYTES) break;
    }
    return sent_any ? 0 : 1;
}

int ss_sftp_put_files(ss_sftp *c, ss_sftp_put *files, size_t n, ss_error *e)
{
    if (c->failed) return ss_err(e, SS_E_IO, "%s", c->failure);
    for (size_t i = 0; i < n; i++) {
        ss_sftp_put *f = &files[i];
        f->created = f->done = false;
        f->status = SS_FX_OK;
        f->error[0] = '\0';
        f->phase = PH_IDLE;
        f->sent = 0;
        f->acks_due = 0;
        f->handle_len = 0;
    }
    c->puts = files;
    c->handles_open = 0;
    c->stop_opening = false;
    size_t first_open = 0;
    for (;;) {
        int rc = send_puts(c, files, n, &first_open);
        if (rc < 0) break;
        if (c->in_flight == 0) {
            if (rc == 1) break; /* nothing sent, nothing awaited: finished */
            continue;
        }
        if (pump(c, rc == 1) != 0) break;
    }
    if (!c->failed) (void)settle(c);
    c->puts = NULL;
    if (c->failed) return ss_err(e, SS_E_IO, "%s", c->failure);
    for (size_t i = 0; i < n; i++)
        if (!files[i].done)
            return ss_err(e, SS_E_IO, "%s",
                          files[i].error[0] ? files[i].error : "an upload did not finish");
    return 0;
}

/* ---------------------------------------------------------- name requests */

static int send_op(ss_sftp *c, enum ss_sftp_opkind kind, uint32_t item, const ss_sftp_op *op)
{
    uint32_t id;
    if (!reserve_slot(c, &id)) return 1;
    struct packet k;
    pk_begin(&k, &c->out,
             kind == SS_SFTP_RENAME   ? FXP_RENAME
             : kind == SS_SFTP_REMOVE ? FXP_REMOVE
                                      : FXP_LSTAT);
    pk_u32(&k, id);
    pk_str(&k, op->from, strlen(op->from));
    if (kind == SS_SFTP_RENAME) pk_str(&k, op->to, strlen(op->to));
    if (pk_end(c, &k) != 0) return -1;
    track(c, id, REQ_OP, item, 0);
    return 0;
}

int ss_sftp_ops(ss_sftp *c, enum ss_sftp_opkind kind, ss_sftp_op *ops, size_t n, ss_error *e)
{
    if (c->failed) return ss_err(e, SS_E_IO, "%s", c->failure);
    c->ops = ops;
    c->op_kind = kind;
    for (size_t i = 0; i < n; i++) {
        ops[i].status = SS_FX_PENDING;
        ops[i].exists = false;
        ops[i].size = 0;
        ops[i].error[0] = '\0';
    }
    for (size_t i = 0; i < n && !c->failed;) {
        int rc = send_op(c, kind, (uint32_t)i, &ops[i]);
        if (rc < 0) break;
        if (rc == 0) {
            i++;
            if (c->out.len >= OUT_FLUSH && pump(c, false) != 0) break;
        } else if (pump(c, true) != 0) {
            break;
        }
    }
    if (!c->failed) (void)settle(c);
    c->ops = NULL;
    return c->failed ? ss_err(e, SS_E_IO, "%s", c->failure) : 0;
}

/* The folder's handle, opened once per session (a round trip saved on
 * every later batch). */
static int open_dir_handle(ss_sftp *c, const char *path, ss_error *e)
{
    if (c->dir_handle_len && !strcmp(c->dir_path, path)) return 0;
    if (c->dir_handle_len) { /* another folder: the old handle goes */
        (void)send_handle_request(c, REQ_CLOSE, UINT32_MAX, c->dir_handle, c->dir_handle_len);
        c->dir_handle_len = 0;
    }
    c->dir_status = SS_FX_OK;
    if (send_open(c, UINT32_MAX, path, FXF_READ, 0) != 0 || settle(c) != 0)
        return ss_err(e, SS_E_IO, "%s", c->failed ? c->failure : "cannot open the folder");
    if (c->dir_status != SS_FX_OK || !c->dir_handle_len)
        return ss_err(e, SS_E_IO, "cannot open the folder %s to fsync it: %s", path,
                      status_word(c->dir_status));
    snprintf(c->dir_path, sizeof c->dir_path, "%s", path);
    return 0;
}

int ss_sftp_sync_dir(ss_sftp *c, const char *path, ss_error *e)
{
    if (c->failed) return ss_err(e, SS_E_IO, "%s", c->failure);
    if (!c->has_fsync)
        return ss_err(e, SS_E_IO, "the SFTP server does not offer fsync@openssh.com");
    if (open_dir_handle(c, path, e) != 0) return -1;
    c->dir_status = SS_FX_OK;
    if (send_handle_request(c, REQ_FSYNC, UINT32_MAX, c->dir_handle, c->dir_handle_len) != 0 ||
        settle(c) != 0)
        return ss_err(e, SS_E_IO, "%s", c->failed ? c->failure : "cannot fsync the folder");
    if (c->dir_status != SS_FX_OK)
        return ss_err(e, SS_E_IO, "cannot fsync the folder %s: %s", path,
                      status_word(c->dir_status));
    return 0;
}
