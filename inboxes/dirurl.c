/*
 * dirurl.c - ldap:// and ldaps:// key directory URLs.  See dirurl.h.
 */
#include "dirurl.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

bool ss_dirurl_is_ldap(const char *directory)
{
    return !strncasecmp(directory, "ldap://", 7) || !strncasecmp(directory, "ldaps://", 8);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* host[:port] between the scheme and the first '/'. */
static int parse_hostport(const char *text, const char *p, size_t n, ss_dirurl *u, ss_error *e)
{
    if (n == 0)
        return ss_err(e, SS_E_CONF,
                      "'%s' names no host: write ldap://HOST[:PORT]/BASE-DN (sitespool has no "
                      "default directory server)",
                      text);
    if (memchr(p, '@', n))
        return ss_err(e, SS_E_CONF,
                      "'%s' has a user part (user@host): put the bind DN in directory_bind_dn "
                      "and its password in directory_password_file, never in the URL",
                      text);
    size_t hostlen;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close || close == p + 1)
            return ss_err(e, SS_E_CONF, "'%s': an IPv6 address must be written [ADDRESS]", text);
        hostlen = (size_t)(close - p) + 1;
        for (const char *q = p + 1; q < close; q++)
            if (hexval(*q) < 0 && *q != ':' && *q != '.')
                return ss_err(e, SS_E_CONF, "'%s': '%.*s' is not an IPv6 address", text,
                              (int)hostlen, p);
    } else {
        hostlen = strcspn(p, ":/");
        if (hostlen > n) hostlen = n;
        for (size_t i = 0; i < hostlen; i++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", p[i]))
                return ss_err(e, SS_E_CONF,
                              "'%s': the host '%.*s' may hold only letters, digits, '.' and '-'",
                              text, (int)hostlen, p);
        if (hostlen == 0) return ss_err(e, SS_E_CONF, "'%s' names no host", text);
    }
    if (hostlen > SS_DIRURL_HOST_MAX)
        return ss_err(e, SS_E_CONF, "'%s': the host is too long", text);
    memcpy(u->host, p, hostlen);
    u->host[hostlen] = '\0';
    if (hostlen == n) return 0;
    if (p[hostlen] != ':')
        return ss_err(e, SS_E_CONF, "'%s': expected ':PORT' or '/' after the host", text);
    const char *port = p + hostlen + 1;
    size_t plen = n - hostlen - 1;
    unsigned v = 0;
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") < plen)
        return ss_err(e, SS_E_CONF, "'%s': the port must be a number from 1 to 65535", text);
    for (size_t i = 0; i < plen; i++)
        v = v * 10 + (unsigned)(port[i] - '0');
    if (v == 0 || v > 65535)
        return ss_err(e, SS_E_CONF, "'%s': the port must be a number from 1 to 65535", text);
    u->port = v;
    return 0;
}

/* The base DN: percent-decoded (RFC 4516), nothing after it. */
static int parse_dn(const char *text, const char *p, ss_dirurl *u, ss_error *e)
{
    size_t o = 0;
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '?' || c == '#')
            return ss_err(e, SS_E_CONF,
                          "'%s': only the base DN may follow the host; remove '%c...' (sitespool "
                          "chooses the attributes, scope and filter itself; a literal '%c' in a "
                          "DN is written %%%02X)",
                          text, c, c, c);
        if (c == '%') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (lo < 0)
                return ss_err(e, SS_E_CONF,
                              "'%s': '%%' must be followed by two hex digits (%%2C for ',', %%20 "
                              "for a space)",
                              text);
            c = (unsigned char)(hi * 16 + lo);
            p += 2;
            if (c < 0x20 || c == 0x7f)
                return ss_err(e, SS_E_CONF, "'%s': the base DN decodes to a control character",
                              text);
        } else if (c <= 0x20 || c >= 0x7f) {
            return ss_err(e, SS_E_CONF,
                          "'%s': a space or a character outside ASCII in the base DN must be "
                          "percent-encoded (a space is %%20)",
                          text);
        }
        if (o >= SS_DIRURL_DN_MAX)
            return ss_err(e, SS_E_CONF, "'%s': the base DN is too long", text);
        u->base_dn[o++] = (char)c;
    }
    u->base_dn[o] = '\0';
    if (o == 0 || !strchr(u->base_dn, '='))
        return ss_err(e, SS_E_CONF,
                      "'%s' names no base DN: write ldap://HOST[:PORT]/BASE-DN, e.g. "
                      "ldap://ldap.example.org/ou=sites,dc=example,dc=org",
                      text);
    return 0;
}

int ss_dirurl_parse(const char *text, ss_dirurl *u, ss_error *e)
{
    memset(u, 0, sizeof *u);
    size_t skip;
    if (!strncasecmp(text, "ldaps://", 8)) {
        u->ldaps = true;
        skip = 8;
    } else if (!strncasecmp(text, "ldap://", 7)) {
        skip = 7;
    } else {
        return ss_err(e, SS_E_CONF, "'%s' is not an ldap:// or ldaps:// URL", text);
    }
    u->port = u->ldaps ? 636 : 389;
    const char *hp = text + skip, *slash = strchr(hp, '/');
    if (!slash)
        return ss_err(e, SS_E_CONF,
                      "'%s' names no base DN: write ldap://HOST[:PORT]/BASE-DN, e.g. "
                      "ldap://ldap.example.org/ou=sites,dc=example,dc=org",
                      text);
    if (parse_hostport(text, hp, (size_t)(slash - hp), u, e) != 0) return -1;
    if (parse_dn(text, slash + 1, u, e) != 0) return -1;
    snprintf(u->server, sizeof u->server, "%s://%s:%u", u->ldaps ? "ldaps" : "ldap", u->host,
             u->port);
    return 0;
}
