/*
 * address.c - parsing a peer's inbox address.  See address.h.
 */
#include "address.h"

#include <stdio.h>
#include <string.h>

static bool printable_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) return false;
    return true;
}

/* Letters, digits and "-._" - what a login name or a host name holds. */
static bool plain_word(const char *s, const char *extra)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("-._", *s) || (extra && strchr(extra, *s))))
            return false;
    return true;
}

/* [user@]host[:port] of an sftp:// address, up to the path's slash. */
static int parse_authority(const char *auth, size_t len, ss_address *a, ss_error *e)
{
    char buf[400];
    if (len >= sizeof buf)
        return ss_err(e, SS_E_FORMAT, "the host part of %s is too long", a->text);
    memcpy(buf, auth, len);
    buf[len] = '\0';
    char *host = buf, *at = strrchr(buf, '@');
    if (at) {
        *at = '\0';
        if (strchr(buf, ':'))
            return ss_err(e, SS_E_FORMAT,
                          "%s holds a password; sitespool authenticates with the key file named "
                          "by the setting sftp_identity, never a password",
                          a->text);
        if (!plain_word(buf, NULL) || strlen(buf) >= sizeof a->user)
            return ss_err(e, SS_E_FORMAT, "'%s' in %s is not a login name", buf, a->text);
        snprintf(a->user, sizeof a->user, "%s", buf);
        host = at + 1;
    }
    char *port = NULL;
    if (host[0] == '[') { /* [IPv6] */
        char *close = strchr(host, ']');
        if (!close || (close[1] && close[1] != ':'))
            return ss_err(e, SS_E_FORMAT, "the IPv6 address in %s lacks its ']'", a->text);
        *close = '\0';
        if (close[1] == ':') port = close + 2;
        host++;
        if (!plain_word(host, ":")) /* hex digits, ':' and '.' */
            return ss_err(e, SS_E_FORMAT, "'%s' in %s is not an IPv6 address", host, a->text);
    } else {
        port = strchr(host, ':');
        if (port) *port++ = '\0';
        if (!plain_word(host, NULL))
            return ss_err(e, SS_E_FORMAT, "'%s' in %s is not a host name or address", host,
                          a->text);
    }
    if (strlen(host) >= sizeof a->host)
        return ss_err(e, SS_E_FORMAT, "the host name in %s is too long", a->text);
    snprintf(a->host, sizeof a->host, "%s", host);
    a->port = 22;
    if (port) {
        unsigned long p = 0;
        const char *c = port;
        for (; *c >= '0' && *c <= '9' && p <= 65535; c++)
            p = p * 10 + (unsigned long)(*c - '0');
        if (!*port || *c || p == 0 || p > 65535)
            return ss_err(e, SS_E_FORMAT, "'%s' in %s is not a port (1-65535)", port, a->text);
        a->port = (unsigned)p;
    }
    if (a->port == 22)
        snprintf(a->host_label, sizeof a->host_label, "%s", a->host);
    else
        snprintf(a->host_label, sizeof a->host_label, "[%s]:%u", a->host, a->port);
    return 0;
}

static int parse_sftp(const char *text, ss_address *a, ss_error *e)
{
    const char *auth = text + strlen("sftp://");
    const char *slash = strchr(auth, '/');
    if (!slash || slash == auth)
        return ss_err(e, SS_E_FORMAT,
                      "%s names no host and path; write sftp://user@host[:port]/path/to/receive",
                      text);
    if (strpbrk(text, "?#%"))
        return ss_err(e, SS_E_FORMAT,
                      "%s holds '?', '#' or '%%'; an SFTP address is "
                      "sftp://user@host[:port]/path, without query, fragment or escapes",
                      text);
    if (parse_authority(auth, (size_t)(slash - auth), a, e) != 0) return -1;
    /* sftp://h/srv/x and sftp://h//srv/x both mean /srv/x. */
    while (slash[1] == '/')
        slash++;
    snprintf(a->path, sizeof a->path, "%s", slash);
    size_t n = strlen(a->path);
    while (n > 1 && a->path[n - 1] == '/')
        a->path[--n] = '\0';
    if (n <= 1) return ss_err(e, SS_E_FORMAT, "%s names no folder on the host", text);
    a->remote = true;
    return 0;
}

int ss_address_parse(const char *text, ss_address *out, ss_error *e)
{
    memset(out, 0, sizeof *out);
    if (strlen(text) > SS_PEER_ADDRESS_MAX)
        return ss_err(e, SS_E_FORMAT, "an inbox address is at most %d characters",
                      SS_PEER_ADDRESS_MAX);
    snprintf(out->text, sizeof out->text, "%s", text);
    if (!strncmp(text, "sftp://", 7)) {
        if (!printable_ascii(text))
            return ss_err(e, SS_E_FORMAT,
                          "%s holds spaces or control characters; SFTP addresses are plain ASCII",
                          text);
        return parse_sftp(text, out, e);
    }
    if (strstr(text, "://"))
        return ss_err(e, SS_E_FORMAT,
                      "'%s': sitespool delivers to a local path or to sftp://user@host/path", text);
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return ss_err(e, SS_E_FORMAT, "the inbox path holds a control character");
    if (text[0] != '/') return ss_err(e, SS_E_FORMAT, "the inbox must be an absolute path");
    snprintf(out->path, sizeof out->path, "%s", text);
    return 0;
}
