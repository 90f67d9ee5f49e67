/*
 * suggest.h - "did you mean" for the command line: the nearest of a list
 * of names to a mistyped command or subcommand (Damerau-Levenshtein
 * distance, optimal string alignment, case ignored; or a prefix), and the
 * site code a code typed in lower case was meant to be.
 *
 * Header only (small, pure functions): main.c and the subcommands that
 * dispatch on a name share it without a library of their own.
 */
#ifndef SS_SUGGEST_H
#define SS_SUGGEST_H

#include "cli.h"
#include "../inboxes/site.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SUGGEST_MAX_LEN 32

/* Edits (insert, delete, substitute, swap two neighbours) turning a into
 * b, case ignored; SUGGEST_MAX_LEN + 1 when either is longer than that. */
static inline size_t suggest_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > SUGGEST_MAX_LEN || m > SUGGEST_MAX_LEN) return SUGGEST_MAX_LEN + 1;
    size_t d[SUGGEST_MAX_LEN + 1][SUGGEST_MAX_LEN + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ai != bj);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == bj && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/* The name in names[0..n) closest to typed: at most 2 edits away (1 for
 * words of up to 3 letters), or typed is its first 2 letters or more;
 * the first of equally close ones.  NULL when none is close. */
static inline const char *suggest_name(const char *typed, const char *const *names, size_t n)
{
    size_t len = strlen(typed), limit = len <= 3 ? 1 : 2, best_d = limit + 1;
    const char *best = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = suggest_distance(typed, names[i]);
        if (len >= 2 && strncasecmp(typed, names[i], len) == 0 && d > 1) d = 1;
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    return best;
}

/* "; did you mean PS1?" when code is a site code typed in lower (or
 * mixed) case, else "". */
static inline void suggest_site_code(const char *code, char *out, size_t len)
{
    char upper[16];
    size_t n = strlen(code);
    out[0] = '\0';
    if (n >= sizeof upper) return;
    for (size_t i = 0; i <= n; i++)
        upper[i] = (char)toupper((unsigned char)code[i]);
    if (strcmp(upper, code) != 0 && ss_site_code_valid(upper))
        snprintf(out, len, "; did you mean %s?", upper);
}

/* The usage error for a bad site code: what a code is, and the hint. */
static inline int suggest_bad_site(const char *usage_text, const char *what, const char *code)
{
    char hint[32];
    suggest_site_code(code, hint, sizeof hint);
    return cli_usage(usage_text,
                     "%s '%s' is not a site code (3-8 characters of A-Z and 0-9, upper case)%s",
                     what, code, hint);
}

/* The usage error for an unknown (sub)command: with a close name, one
 * line saying which was meant and where the list is; without one, the
 * usage text (the list itself).  Exit code 2 either way. */
static inline int suggest_unknown(const char *usage_text, const char *what, const char *typed,
                                  const char *const *names, size_t n, const char *help)
{
    const char *near = suggest_name(typed, names, n);
    if (!near) return cli_usage(usage_text, "unknown %s '%s'", what, typed);
    fprintf(stderr, "sitespool: unknown %s '%s'; did you mean '%s'? ('%s' lists them)\n", what,
            typed, near, help);
    return EXIT_USAGE;
}

#endif
