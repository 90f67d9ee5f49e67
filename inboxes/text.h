/*
 * text.h - making peer-supplied text safe to store and show: control
 * characters (C0, DEL) and bytes that are not valid UTF-8 become visible
 * \xHH escapes, so an insertion string can neither forge lines in a .why
 * file or a log, nor send escape sequences to the terminal of whoever runs
 * `sitespool status`, nor make `status --json` invalid.
 */
#ifndef SS_TEXT_H
#define SS_TEXT_H

#include <locale.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1-4) of the valid UTF-8 sequence starting at p, 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
size_t ss_utf8_seq(const unsigned char *p);
/* Copies in into out (cap > 0 bytes, always terminated, cut at a character
 * boundary) with control characters and invalid bytes escaped as \xHH. */
void ss_text_safe(const char *in, char *out, size_t cap);

/* File names inside tar bundles are UTF-8; libarchive converts them with
 * the calling thread's locale, so bundle code runs in C.UTF-8 for this
 * thread only: ss_utf8_locale() makes it ((locale_t)0 if the C library
 * has none: then the caller's locale applies), ss_locale_enter() switches
 * to it and returns what to give ss_locale_leave() afterwards. */
locale_t ss_utf8_locale(void);
locale_t ss_locale_enter(locale_t l);
void ss_locale_leave(locale_t previous);

/* Times and durations as administrators read them in status messages and
 * files: "2026-12-01 10:23:45 UTC" (the same at every site, whatever its
 * time zone; "never" for 0), and "1 minute", "5 minutes", "3 hours 20
 * minutes", "2 days 4 hours" (two units at most, singular for one). */
void ss_time_text(int64_t t, char *out, size_t len);
void ss_duration_text(int64_t seconds, char *out, size_t len);

#endif
