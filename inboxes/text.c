/*
 * text.c - escaping peer-supplied text.  See text.h.
 */
#include "text.h"

#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

size_t ss_utf8_seq(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xC2 && c <= 0xDF   ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (!n) return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    /* Overlong three- and four-byte forms, UTF-16 surrogates, > U+10FFFF. */
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] > 0x8F))
        return 0;
    return n;
}

void ss_text_safe(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p;) {
        size_t n = ss_utf8_seq(p);
        bool escape = n == 0 || *p < 0x20 || *p == 0x7f;
        size_t need = escape ? 4 : n;
        if (o + need >= cap) break;
        if (escape) {
            snprintf(out + o, cap - o, "\\x%02X", *p);
            p++;
        } else {
            memcpy(out + o, p, n);
            p += n;
        }
        o += need;
    }
    out[o] = '\0';
}

locale_t ss_utf8_locale(void)
{
    return newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

locale_t ss_locale_enter(locale_t l)
{
    return l ? uselocale(l) : (locale_t)0;
}

void ss_locale_leave(locale_t previous)
{
    if (previous) uselocale(previous);
}

void ss_time_text(int64_t t, char *out, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(out, len, "%s", t <= 0 ? "never" : "?");
}

/* "N unit" or "N units", appended at *at. */
static void add_unit(char *out, size_t len, size_t *at, int64_t n, const char *unit)
{
    if (*at >= len) return;
    int k = snprintf(out + *at, len - *at, "%s%lld %s%s", *at ? " " : "", (long long)n, unit,
                     n == 1 ? "" : "s");
    if (k > 0) *at += (size_t)k;
}

void ss_duration_text(int64_t seconds, char *out, size_t len)
{
    static const struct {
        int64_t size;
        const char *name;
    } units[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
    size_t at = 0;
    int used = 0;
    if (seconds < 0) seconds = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof units / sizeof units[0] && used < 2; i++) {
        int64_t n = seconds / units[i].size;
        if (n == 0 && !(used == 0 && units[i].size == 1)) {
            if (used) break; /* "2 days 4 hours", never "2 days 0 hours 5 minutes" */
            continue;
        }
        add_unit(out, len, &at, n, units[i].name);
        seconds -= n * units[i].size;
        used++;
    }
}
