/*
 * text.c - escaping peer-supplied text.  See text.h.
 */
#include "text.h"

#include <stdio.h>
#include <stdbool.h>
#include <string.h>

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
