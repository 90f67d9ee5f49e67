/*
 * json.c - JSON string escaping.  See json.h.  Bytes that are not valid
 * UTF-8 become U+FFFD, so the output is always valid JSON.
 */
#include "json.h"
#include "text.h"

void ss_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = ss_utf8_seq(p);
        if (n == 0) {
            fputs("\\ufffd", f);
            p++;
            continue;
        }
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fwrite(p, 1, n, f);
        p += n;
    }
    fputc('"', f);
}
