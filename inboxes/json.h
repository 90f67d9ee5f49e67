/*
 * json.h - the one JSON string writer (for --json output and stored
 * insertion strings).  Escapes quotes, backslashes and control characters.
 */
#ifndef SS_JSON_H
#define SS_JSON_H

#include <stdio.h>

void ss_json_string(FILE *f, const char *s);

#endif
