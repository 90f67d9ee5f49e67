/*
 * docfmt.c - escaping for man pages and markdown tables.  See docfmt.h.
 *
 * roff reads control lines ('.' or '\'' first) and escapes ('\'), and may
 * typeset '-' as a hyphen (U+2010) that breaks a copied option; the
 * catalogue and the settings table are plain UTF-8, so each of these is
 * neutralised and the generated page source stays ASCII (no preconv).
 */
#include "docfmt.h"
#include "../inboxes/text.h"

#include <stdint.h>

static uint32_t utf8_decode(const unsigned char *p, size_t n)
{
    static const unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    uint32_t cp = p[0] & lead_mask[n];
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (p[i] & 0x3f);
    return cp;
}

static void roff_ascii(FILE *f, unsigned char c)
{
    if (c == '\\')
        fputs("\\e", f);
    else if (c == '-')
        fputs("\\-", f);
    else if (c < 0x20 || c == 0x7f)
        fputc(' ', f);
    else
        fputc(c, f);
}

void doc_roff_text(FILE *f, const char *s, bool at_line_start)
{
    const unsigned char *p = (const unsigned char *)s;
    if (at_line_start && (*p == '.' || *p == '\'')) fputs("\\&", f);
    while (*p) {
        size_t n = *p < 0x80 ? 1 : ss_utf8_seq(p);
        if (n == 0) { /* not UTF-8: the replacement character */
            fputs("\\[uFFFD]", f);
            n = 1;
        } else if (n > 1) {
            fprintf(f, "\\[u%04X]", (unsigned)utf8_decode(p, n));
        } else {
            roff_ascii(f, *p);
        }
        p += n;
    }
}

void doc_markdown_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '\n')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}
