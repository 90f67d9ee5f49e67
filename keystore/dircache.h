/*
 * dircache.h - the despooler's view of a key directory server: what each
 * site's entry said at most rescan_interval ago, and whether the directory
 * answers.  One per despooler (its context owns it, ss_keyctx.dir points to
 * it); nothing here is global.
 *
 * The cost rule: at most one search per site per rescan_interval, whatever
 * the number of pairs - a batch of 2,000 pairs from 20 sites costs 20
 * searches - and a record that changed is seen within rescan_interval.
 * Failures are cached too: once the directory failed (down, slow, TLS, a
 * refused bind) it is not asked again, for any site, until rescan_interval
 * has passed, so a dead server costs one directory_timeout per
 * rescan_interval, never one per pair.  New records for sites with waiting
 * pairs are found by the despooler's per-scan re-ask of those sites
 * (despooler/waiting.c) through this cache, i.e. within rescan_interval:
 * the mechanism chosen instead of an LDAP persistent search or syncrepl,
 * because it needs no extension a directory may lack (persistent search is
 * a draft that OpenLDAP implements only as syncrepl; Active Directory and
 * 389-ds differ), holds no long-lived connection and state that a restart
 * or a failover would lose, and has one behaviour for the folder backend,
 * the directory server and a server that is down.
 *
 * Security stance: fail closed.  A directory that cannot be asked finds no
 * key: the pair waits as for a missing key (4405) and nothing is
 * quarantined for a directory fault; stale records are never used once
 * their time is up and the directory fails.
 * Diagnostics: 4441 (could not be searched) and 4442 (bind refused) once
 * per outage - raised on a change of state, not per pair - and 4443 when
 * it answers again; each failed attempt and each unusable value of an
 * entry is logged in despool.log.
 */
#ifndef SS_DIRCACHE_H
#define SS_DIRCACHE_H

#include "ldapdir.h"
#include "status.h"

typedef struct ss_dircache ss_dircache;

/* conf is read at each look-up (a reloaded directory setting is obeyed:
 * the cache starts afresh).  NULL when out of memory. */
ss_dircache *ss_dircache_new(const char *root, const ss_conf *conf, ss_reporter *rep);
void ss_dircache_free(ss_dircache *c);

/* site's entry: 1 (*rec: valid until the next call), 0 none (or the
 * directory is not a server), -1 the directory could not be asked. */
int ss_dircache_get(ss_dircache *c, const char *site, const ss_dirrec **rec);

/* Whether the last attempt to ask the directory failed (a pair that found
 * no key meanwhile does not use up its key lookups). */
bool ss_dircache_faulted(const ss_dircache *c);

/* Searches made since creation (tests, benchmarks). */
unsigned long ss_dircache_searches(const ss_dircache *c);

#endif
