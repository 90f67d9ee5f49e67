/*
 * docfmt.h - writing text into documentation formats: roff text lines for
 * the man pages (doc/sitespool.8, doc/sitespool.conf.5) and markdown table
 * cells for the README.  Used by `sitespool settings` and
 * `sitespool status --catalogue --roff`.
 */
#ifndef SS_DOCFMT_H
#define SS_DOCFMT_H

#include <stdbool.h>
#include <stdio.h>

/* Writes s as (part of) a roff text line: backslashes as \e, hyphens as \-
 * (options and commands stay copyable), characters beyond ASCII as
 * \[uXXXX], control characters as spaces, and a leading '.' or '\''
 * guarded with \& when at_line_start (s begins the output line). */
void doc_roff_text(FILE *f, const char *s, bool at_line_start);

/* Writes s as a markdown table cell: '|' as \|, '<' and '>' as entities
 * (so "<SITE>.pub" is not taken for HTML), line breaks as spaces. */
void doc_markdown_cell(FILE *f, const char *s);

#endif
